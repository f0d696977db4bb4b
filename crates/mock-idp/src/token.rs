//! Access tokens: RS256-signed JWTs shaped like Cognito's.

use std::collections::BTreeMap;
use std::time::Duration;

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use jsonwebtoken::{Header, Validation};
use serde::Serialize;
use tokencache_core::UnixMillis;

use crate::MockIdpError;
use crate::grants::random_token;
use crate::keys::{ALGORITHM, SigningKeys};

/// What one access token is issued for.
#[derive(Debug)]
pub(crate) struct TokenSpec<'a> {
    pub(crate) client_id: &'a str,
    pub(crate) scopes: &'a [String],
    pub(crate) issuer: &'a str,
    pub(crate) now: UnixMillis,
    pub(crate) lifetime: Duration,
    /// The raw `aws_client_metadata` parameter, if any.
    pub(crate) client_metadata: Option<&'a str>,
    /// The `resource` parameter, if any; becomes `aud`.
    pub(crate) resource: Option<&'a str>,
    /// Parameters the IdP does not interpret, by name.
    pub(crate) extra_params: &'a BTreeMap<String, String>,
}

/// The claims of an access token, in Cognito's vocabulary.
#[derive(Serialize)]
struct AccessClaims<'a> {
    sub: &'a str,
    client_id: &'a str,
    token_use: &'static str,
    scope: String,
    auth_time: u64,
    iss: &'a str,
    iat: u64,
    exp: u64,
    jti: String,
    version: u8,
    #[serde(skip_serializing_if = "Option::is_none")]
    aud: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    client_metadata: Option<&'a str>,
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    extra_params: &'a BTreeMap<String, String>,
}

/// Signs an access token for `spec`. `iat` is `spec.now` in whole seconds
/// and `exp` is `iat` plus the lifetime in whole seconds, so
/// `exp - iat == expires_in`.
pub(crate) fn mint(keys: &SigningKeys, spec: &TokenSpec<'_>) -> Result<String, MockIdpError> {
    let iat = spec.now.0 / 1000;
    let claims = AccessClaims {
        sub: spec.client_id,
        client_id: spec.client_id,
        token_use: "access",
        scope: spec.scopes.join(" "),
        auth_time: iat,
        iss: spec.issuer,
        iat,
        exp: iat.saturating_add(spec.lifetime.as_secs()),
        jti: random_token(16),
        version: 2,
        aud: spec.resource,
        client_metadata: spec.client_metadata,
        extra_params: spec.extra_params,
    };
    let mut header = Header::new(ALGORITHM);
    header.kid = Some(keys.kid.clone());
    jsonwebtoken::encode(&header, &claims, &keys.encoding)
        .map_err(|err| MockIdpError::SigningKey(Box::new(err)))
}

/// The claims of a JWT, decoded **without** checking its signature.
///
/// For tests that want to see what a token says (its `scope`, `exp`,
/// `extra_params`, ...). `None` if `token` is not three dot-separated
/// base64url segments whose middle one is a JSON object.
///
/// ```
/// let payload = r#"{"sub":"demo-client","exp":1700003600}"#;
/// # use base64::Engine as _;
/// let token = format!(
///     "e30.{}.sig",
///     base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(payload)
/// );
/// let claims = tokencache_mock_idp::decode_claims_unverified(&token).unwrap();
/// assert_eq!(claims["exp"], 1_700_003_600);
/// ```
#[must_use]
pub fn decode_claims_unverified(token: &str) -> Option<serde_json::Value> {
    let mut segments = token.split('.');
    let (Some(_header), Some(payload), Some(_signature), None) = (
        segments.next(),
        segments.next(),
        segments.next(),
        segments.next(),
    ) else {
        return None;
    };
    let bytes = URL_SAFE_NO_PAD.decode(payload.trim_end_matches('=')).ok()?;
    let claims: serde_json::Value = serde_json::from_slice(&bytes).ok()?;
    claims.is_object().then_some(claims)
}

/// Checks that `token` was signed by `keys` for `issuer` and returns its
/// claims. Expiry is not checked: tests run on manual clocks.
pub(crate) fn verify(
    keys: &SigningKeys,
    issuer: &str,
    token: &str,
) -> Result<serde_json::Value, MockIdpError> {
    let invalid = |reason: String| MockIdpError::InvalidToken { reason };
    let header = jsonwebtoken::decode_header(token).map_err(|err| invalid(err.to_string()))?;
    if header.kid.as_deref() != Some(keys.kid.as_str()) {
        return Err(invalid("unknown key id".to_owned()));
    }
    let mut validation = Validation::new(ALGORITHM);
    validation.validate_exp = false;
    validation.validate_aud = false;
    validation.set_required_spec_claims(&["iss", "exp", "sub"]);
    validation.set_issuer(&[issuer]);
    jsonwebtoken::decode::<serde_json::Value>(token, &keys.decoding, &validation)
        .map(|data| data.claims)
        .map_err(|err| invalid(err.to_string()))
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;

    fn spec<'a>(extra: &'a BTreeMap<String, String>, scopes: &'a [String]) -> TokenSpec<'a> {
        TokenSpec {
            client_id: "demo-client",
            scopes,
            issuer: "http://issuer",
            now: UnixMillis(1_700_000_000_999),
            lifetime: Duration::from_secs(3600),
            client_metadata: None,
            resource: None,
            extra_params: extra,
        }
    }

    #[test]
    fn minted_tokens_verify_and_carry_the_claims() {
        let keys = SigningKeys::embedded();
        let extra = BTreeMap::new();
        let scopes = ["api/read".to_owned(), "api/write".to_owned()];
        let token = mint(keys, &spec(&extra, &scopes)).unwrap();
        let claims = verify(keys, "http://issuer", &token).unwrap();
        assert_eq!(claims, decode_claims_unverified(&token).unwrap());
        assert_eq!(claims["sub"], "demo-client");
        assert_eq!(claims["client_id"], "demo-client");
        assert_eq!(claims["token_use"], "access");
        assert_eq!(claims["scope"], "api/read api/write");
        assert_eq!(claims["iss"], "http://issuer");
        assert_eq!(claims["iat"], 1_700_000_000);
        assert_eq!(claims["exp"], 1_700_003_600);
        assert_eq!(claims["version"], 2);
        assert!(claims.get("aud").is_none());
        assert!(claims.get("client_metadata").is_none());
        assert!(claims.get("extra_params").is_none());
        let header = jsonwebtoken::decode_header(&token).unwrap();
        assert_eq!(header.kid.as_deref(), Some(keys.kid.as_str()));
        assert_eq!(header.alg, ALGORITHM);
    }

    #[test]
    fn optional_claims() {
        let keys = SigningKeys::embedded();
        let extra = BTreeMap::from([("tenant".to_owned(), "t1".to_owned())]);
        let token = mint(
            keys,
            &TokenSpec {
                client_metadata: Some(r#"{"k":"v"}"#),
                resource: Some("https://api.example"),
                ..spec(&extra, &[])
            },
        )
        .unwrap();
        let claims = decode_claims_unverified(&token).unwrap();
        assert_eq!(claims["client_metadata"], r#"{"k":"v"}"#);
        assert_eq!(claims["aud"], "https://api.example");
        assert_eq!(claims["extra_params"], serde_json::json!({"tenant": "t1"}));
    }

    #[test]
    fn every_token_has_its_own_jti() {
        let keys = SigningKeys::embedded();
        let extra = BTreeMap::new();
        let a = decode_claims_unverified(&mint(keys, &spec(&extra, &[])).unwrap()).unwrap();
        let b = decode_claims_unverified(&mint(keys, &spec(&extra, &[])).unwrap()).unwrap();
        assert_ne!(a["jti"], b["jti"]);
    }

    #[test]
    fn verify_rejects_foreign_and_tampered_tokens() {
        let keys = SigningKeys::embedded();
        let extra = BTreeMap::new();
        let token = mint(keys, &spec(&extra, &[])).unwrap();
        assert!(verify(keys, "http://other", &token).is_err());
        let mut parts: Vec<&str> = token.split('.').collect();
        let forged = URL_SAFE_NO_PAD.encode(r#"{"sub":"x","iss":"http://issuer","exp":1}"#);
        parts[1] = &forged;
        assert!(verify(keys, "http://issuer", &parts.join(".")).is_err());
        assert!(verify(keys, "http://issuer", "garbage").is_err());
    }

    #[test]
    fn decode_unverified_rejects_non_jwts() {
        for token in ["", "a.b", "a.b.c.d", "a.!!!.c", "e30.WzFd.c"] {
            assert_eq!(decode_claims_unverified(token), None, "{token}");
        }
    }
}
