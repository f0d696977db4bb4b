//! The RSA key pair that signs access tokens, and the JWKS that publishes it.
//!
//! The key is a **public test key**, committed in `keys/` and compiled in
//! with `include_str!`: it protects nothing, and anyone can mint tokens that
//! verify against it. It is fixed rather than generated at start-up because
//! generating a 2048-bit RSA key takes seconds in a debug build, and because
//! a fixed key lets tests and other processes verify tokens from a mock IdP
//! they did not start. It was made with
//! `openssl genrsa -traditional -out keys/signing-key.pem 2048` and
//! `openssl rsa -in keys/signing-key.pem -pubout -out keys/signing-key.pub.pem`.

use std::sync::LazyLock;

use jsonwebtoken::jwk::{Jwk, JwkSet, PublicKeyUse, ThumbprintHash};
use jsonwebtoken::{Algorithm, DecodingKey, EncodingKey};

use crate::MockIdpError;

/// The private signing key (PKCS#1 PEM). A public test key: see the module
/// docs.
const PRIVATE_KEY_PEM: &str = include_str!("../keys/signing-key.pem");

/// The public half of the signing key (SPKI PEM), for verifying tokens with
/// any JWT library.
pub const PUBLIC_KEY_PEM: &str = include_str!("../keys/signing-key.pub.pem");

/// The signing algorithm of every access token.
pub(crate) const ALGORITHM: Algorithm = Algorithm::RS256;

/// The loaded key pair, its key id and its JWKS document.
pub(crate) struct SigningKeys {
    pub(crate) encoding: EncodingKey,
    pub(crate) decoding: DecodingKey,
    /// The `kid`: the RFC 7638 SHA-256 thumbprint of the public key, so it
    /// changes exactly when the key does.
    pub(crate) kid: String,
    /// `{"keys":[...]}` as served at `/.well-known/jwks.json`.
    pub(crate) jwks: JwkSet,
}

static EMBEDDED: LazyLock<SigningKeys> = LazyLock::new(|| {
    // The PEM files are constants compiled into the crate and
    // `tests::embedded_key_loads` loads them, so this cannot fail at run
    // time unless that test fails too.
    #[allow(clippy::expect_used)]
    SigningKeys::load(PRIVATE_KEY_PEM, PUBLIC_KEY_PEM).expect("the embedded signing key is valid")
});

impl SigningKeys {
    /// The embedded key pair, loaded once per process.
    pub(crate) fn embedded() -> &'static Self {
        &EMBEDDED
    }

    fn load(private_pem: &str, public_pem: &str) -> Result<Self, MockIdpError> {
        let key_error = |err: jsonwebtoken::errors::Error| MockIdpError::SigningKey(Box::new(err));
        let encoding = EncodingKey::from_rsa_pem(private_pem.as_bytes()).map_err(key_error)?;
        let decoding = DecodingKey::from_rsa_pem(public_pem.as_bytes()).map_err(key_error)?;
        let mut jwk = Jwk::from_encoding_key(&encoding, ALGORITHM).map_err(key_error)?;
        let kid = jwk.thumbprint(ThumbprintHash::SHA256);
        jwk.common.key_id = Some(kid.clone());
        jwk.common.public_key_use = Some(PublicKeyUse::Signature);
        Ok(Self {
            encoding,
            decoding,
            kid,
            jwks: JwkSet { keys: vec![jwk] },
        })
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;

    #[test]
    fn embedded_key_loads() {
        let keys = SigningKeys::load(PRIVATE_KEY_PEM, PUBLIC_KEY_PEM).unwrap();
        assert_eq!(keys.kid, SigningKeys::embedded().kid);
        assert_eq!(keys.kid.len(), 43, "base64url of a SHA-256 digest");
    }

    #[test]
    fn jwks_publishes_the_public_key() {
        let keys = SigningKeys::embedded();
        let jwks = serde_json::to_value(&keys.jwks).unwrap();
        let key = &jwks["keys"][0];
        assert_eq!(key["kty"], "RSA");
        assert_eq!(key["alg"], "RS256");
        assert_eq!(key["use"], "sig");
        assert_eq!(key["kid"], keys.kid.as_str());
        assert_eq!(key["e"], "AQAB");
        // A 2048-bit modulus is 256 bytes: 342 base64url characters.
        assert_eq!(key["n"].as_str().unwrap().len(), 342);
        // The JWK and the PEM are the same key.
        let from_jwk = DecodingKey::from_jwk(&keys.jwks.keys[0]).unwrap();
        let token = jsonwebtoken::encode(
            &jsonwebtoken::Header::new(ALGORITHM),
            &serde_json::json!({"sub": "x"}),
            &keys.encoding,
        )
        .unwrap();
        let mut validation = jsonwebtoken::Validation::new(ALGORITHM);
        validation.required_spec_claims.clear();
        validation.validate_exp = false;
        jsonwebtoken::decode::<serde_json::Value>(&token, &from_jwk, &validation).unwrap();
        jsonwebtoken::decode::<serde_json::Value>(&token, &keys.decoding, &validation).unwrap();
    }

    #[test]
    fn a_bad_key_is_an_error() {
        let err = SigningKeys::load("not a key", PUBLIC_KEY_PEM)
            .err()
            .expect("garbage must not load");
        assert!(matches!(err, MockIdpError::SigningKey(_)));
    }
}
