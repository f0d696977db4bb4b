//! Cache keys: an HMAC over the canonical form of a token request.

use std::fmt;

use hmac::{Hmac, KeyInit, Mac};
use sha2::Sha256;

use crate::cognito::CanonicalNativeRequest;
use crate::request::TokenRequest;
use crate::secret::HmacKey;

/// Names the canonical-form version, so a change of layout can never make
/// an old key collide with a new one.
const DOMAIN: &[u8] = b"tokencache/cache-key/v1";

/// The domain of native-API keys: no native request can share a key with
/// an OAuth one, whatever their bytes.
const NATIVE_DOMAIN: &[u8] = b"tokencache/cognito-native-key/v1";

/// A cache key: 32 bytes of HMAC-SHA256.
///
/// It reveals nothing of the credentials or parameters behind it, so it may
/// go to a shared store and, shortened to a [fingerprint](Self::fingerprint),
/// to logs.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct CacheKey([u8; 32]);

impl CacheKey {
    /// A key from its raw bytes.
    #[must_use]
    pub const fn from_bytes(bytes: [u8; 32]) -> Self {
        Self(bytes)
    }

    /// The raw bytes.
    #[must_use]
    pub const fn as_bytes(&self) -> &[u8; 32] {
        &self.0
    }

    /// The first eight bytes as a number: uniformly distributed, so good
    /// enough as a hash or shard index without hashing again.
    #[must_use]
    pub fn prefix_u64(&self) -> u64 {
        let mut head = [0u8; 8];
        head.copy_from_slice(&self.0[..8]);
        u64::from_le_bytes(head)
    }

    /// A short hexadecimal fingerprint (the first four bytes) for logs.
    #[must_use]
    pub fn fingerprint(&self) -> Fingerprint {
        let mut head = [0u8; 4];
        head.copy_from_slice(&self.0[..4]);
        Fingerprint(head)
    }
}

impl fmt::Debug for CacheKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "CacheKey({}…)", self.fingerprint())
    }
}

/// The short form of a [`CacheKey`] shown in logs.
#[derive(Clone, Copy, PartialEq, Eq)]
pub struct Fingerprint([u8; 4]);

impl fmt::Display for Fingerprint {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for byte in self.0 {
            write!(f, "{byte:02x}")?;
        }
        Ok(())
    }
}

impl fmt::Debug for Fingerprint {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(self, f)
    }
}

/// Derives cache keys under one HMAC key.
///
/// The canonical form covers the route, `grant_type`, client id, client
/// secret, the scopes as a sorted set and every other parameter sorted by
/// name, each field length-prefixed so no two different requests encode to
/// the same bytes. Including the secret means a rotated secret gets its own
/// entry at once and a wrong secret never reads a right one's token.
#[derive(Clone)]
pub struct KeyDeriver {
    /// Keyed once; cloning the keyed state per request skips the key schedule.
    keyed: Hmac<Sha256>,
}

impl KeyDeriver {
    /// A deriver keyed with `key`.
    #[must_use]
    pub fn new(key: &HmacKey) -> Self {
        // HMAC accepts keys of any length, so this cannot fail.
        #[allow(clippy::expect_used)]
        let keyed = <Hmac<Sha256> as KeyInit>::new_from_slice(key.secret())
            .expect("HMAC takes keys of any length");
        Self { keyed }
    }

    /// The key of `request` on `route` (the proxy path it arrived on, since
    /// two routes may front two different identity providers).
    #[must_use]
    pub fn derive(&self, route: &str, request: &TokenRequest<'_>) -> CacheKey {
        let mut mac = self.keyed.clone();
        field(&mut mac, DOMAIN);
        field(&mut mac, route.as_bytes());
        field(&mut mac, request.grant_type().as_bytes());
        optional_field(&mut mac, request.client_id().map(str::as_bytes));
        optional_field(
            &mut mac,
            request
                .client_secret()
                .map(|secret| secret.secret().as_bytes()),
        );
        request.with_scopes(|scopes| {
            count(&mut mac, scopes.len());
            for scope in scopes {
                field(&mut mac, scope.as_bytes());
            }
        });
        let extra = request.extra_params();
        count(&mut mac, extra.len());
        for (name, value) in extra {
            field(&mut mac, name.as_bytes());
            field(&mut mac, value.as_bytes());
        }
        CacheKey(mac.finalize().into_bytes().into())
    }
}

impl KeyDeriver {
    /// The key of a cacheable native-API request on `route`: over the
    /// operation and the canonical body, which holds every member of the
    /// request (`ClientId`, `AuthFlow`, every `AuthParameters` entry,
    /// `ClientMetadata`, `AnalyticsMetadata`, `Secret`, the `Scopes` set),
    /// and which is exactly what goes upstream.
    #[must_use]
    pub fn derive_native(&self, route: &str, request: &CanonicalNativeRequest) -> CacheKey {
        let mut mac = self.keyed.clone();
        field(&mut mac, NATIVE_DOMAIN);
        field(&mut mac, route.as_bytes());
        field(&mut mac, request.operation().as_bytes());
        field(&mut mac, request.body());
        CacheKey(mac.finalize().into_bytes().into())
    }

    /// The opaque tag of `client_id` that prefixes its entries' store keys.
    #[must_use]
    pub fn client_tag(&self, client_id: &str) -> ClientTag {
        let mut mac = self.keyed.clone();
        field(&mut mac, b"tokencache/client-tag/v1");
        field(&mut mac, client_id.as_bytes());
        let digest = mac.finalize().into_bytes();
        let mut tag = [0u8; 8];
        tag.copy_from_slice(&digest[..8]);
        ClientTag(tag)
    }
}

impl fmt::Debug for KeyDeriver {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("KeyDeriver([redacted])")
    }
}

fn count(mac: &mut Hmac<Sha256>, n: usize) {
    mac.update(&u64::try_from(n).unwrap_or(u64::MAX).to_be_bytes());
}

fn field(mac: &mut Hmac<Sha256>, bytes: &[u8]) {
    count(mac, bytes.len());
    mac.update(bytes);
}

/// An absent value and an empty one must differ.
fn optional_field(mac: &mut Hmac<Sha256>, bytes: Option<&[u8]>) {
    match bytes {
        Some(bytes) => {
            mac.update(&[1]);
            field(mac, bytes);
        }
        None => mac.update(&[0]),
    }
}

/// An opaque tag of a client id (an HMAC, like the cache key), prefixed to
/// its entries' store keys so one client's entries can be purged across a
/// fleet without the store ever seeing the client id.
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct ClientTag(pub(crate) [u8; 8]);

impl ClientTag {
    /// The tag as 16 lowercase hex digits.
    #[must_use]
    pub fn as_hex(&self) -> String {
        let mut hex = String::with_capacity(16);
        push_hex(&mut hex, &self.0);
        hex
    }
}

impl fmt::Debug for ClientTag {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "ClientTag({})", self.as_hex())
    }
}

/// Appends `bytes` as lowercase hex digits.
pub(crate) fn push_hex(out: &mut String, bytes: &[u8]) {
    const HEX: &[u8; 16] = b"0123456789abcdef";
    for byte in bytes {
        out.push(char::from(HEX[usize::from(byte >> 4)]));
        out.push(char::from(HEX[usize::from(byte & 0xf)]));
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    const FORM: Option<&[u8]> = Some(b"application/x-www-form-urlencoded");

    fn key_of(deriver: &KeyDeriver, route: &str, auth: Option<&[u8]>, body: &str) -> CacheKey {
        let request = TokenRequest::parse(FORM, auth, None, body.as_bytes()).unwrap();
        deriver.derive(route, &request)
    }

    fn deriver() -> KeyDeriver {
        KeyDeriver::new(&HmacKey::from_bytes([9; 32]))
    }

    #[test]
    fn same_request_different_credential_placement_is_the_same_token_request() {
        // Basic "c:s" and body credentials name the same client and secret:
        // the token they get is the same, so they may share it.
        let d = deriver();
        let basic = key_of(
            &d,
            "/t",
            Some(b"Basic Yzpz"),
            "grant_type=client_credentials",
        );
        let body = key_of(
            &d,
            "/t",
            None,
            "grant_type=client_credentials&client_id=c&client_secret=s",
        );
        assert_eq!(basic, body);
    }

    #[test]
    fn route_and_hmac_key_matter() {
        let body = "grant_type=client_credentials&client_id=c&client_secret=s";
        let d = deriver();
        assert_ne!(key_of(&d, "/a", None, body), key_of(&d, "/b", None, body));
        let other = KeyDeriver::new(&HmacKey::from_bytes([8; 32]));
        assert_ne!(
            key_of(&d, "/a", None, body),
            key_of(&other, "/a", None, body)
        );
    }

    #[test]
    fn absent_secret_differs_from_empty_context() {
        let d = deriver();
        assert_ne!(
            key_of(&d, "/t", None, "grant_type=client_credentials&client_id=c"),
            key_of(
                &d,
                "/t",
                Some(b"Basic Yzo="),
                "grant_type=client_credentials"
            ),
        );
    }

    #[test]
    fn client_tags_are_keyed_and_distinct() {
        let d = deriver();
        assert_eq!(d.client_tag("a"), d.client_tag("a"));
        assert_ne!(d.client_tag("a"), d.client_tag("b"));
        let other = KeyDeriver::new(&HmacKey::from_bytes([8; 32]));
        assert_ne!(d.client_tag("a"), other.client_tag("a"));
    }

    #[test]
    fn debug_shows_only_a_fingerprint() {
        let key = CacheKey::from_bytes([0xab; 32]);
        assert_eq!(format!("{key:?}"), "CacheKey(abababab…)");
    }

    fn scope_token() -> impl Strategy<Value = String> {
        "[a-z]{1,6}(/[a-z]{1,6})?"
    }

    fn value() -> impl Strategy<Value = String> {
        "[a-zA-Z0-9 ]{1,8}"
    }

    fn encode(value: &str) -> String {
        value.replace(' ', "+")
    }

    proptest! {
        #[test]
        fn scope_order_and_duplicates_share_a_key(
            scopes in proptest::collection::vec(scope_token(), 1..6),
            seed in any::<u64>(),
        ) {
            let d = deriver();
            let mut shuffled = scopes.clone();
            // A deterministic permutation from the seed, plus a duplicate.
            let n = shuffled.len();
            shuffled.rotate_left((seed as usize) % n);
            shuffled.push(scopes[(seed as usize / 7) % n].clone());
            let a = key_of(&d, "/t", None, &format!(
                "grant_type=client_credentials&client_id=c&client_secret=s&scope={}",
                scopes.join("+")));
            let b = key_of(&d, "/t", None, &format!(
                "grant_type=client_credentials&client_id=c&client_secret=s&scope={}",
                shuffled.join("+")));
            prop_assert_eq!(a, b);
        }

        #[test]
        fn any_changed_field_changes_the_key(
            id in value(), secret in value(), scope in scope_token(),
            extra_name in "[a-z_]{1,10}", extra_value in value(),
            which in 0usize..6, changed in value(),
        ) {
            prop_assume!(!["grant_type", "client_id", "client_secret", "scope"]
                .contains(&extra_name.as_str()));
            let d = deriver();
            let mut fields = [
                "client_credentials".to_owned(), id, secret, scope, extra_name, extra_value,
            ];
            let body = |f: &[String; 6]| format!(
                "grant_type={}&client_id={}&client_secret={}&scope={}&{}={}",
                encode(&f[0]), encode(&f[1]), encode(&f[2]), encode(&f[3]), f[4], encode(&f[5]));
            let original = key_of(&d, "/t", None, &body(&fields));
            let replacement = match which {
                3 => format!("{changed}x").replace(' ', "_"),
                4 => format!("{}x", fields[4]),
                _ => format!("{}{}", fields[which], changed),
            };
            prop_assume!(replacement != fields[which]);
            fields[which] = replacement;
            prop_assume!(!["grant_type", "client_id", "client_secret", "scope"]
                .contains(&fields[4].as_str()));
            let other = key_of(&d, "/t", None, &body(&fields));
            prop_assert_ne!(original, other);
        }
    }

    mod native {
        use super::*;
        use crate::cognito::NativeRequest;

        fn key(operation: &str, body: &str) -> CacheKey {
            let request = NativeRequest::parse(operation, body.as_bytes()).unwrap();
            deriver().derive_native("/", request.cacheable().unwrap())
        }

        fn sign_in(members: &[(&str, &str)], parameters: &[(&str, &str)]) -> String {
            let mut body = serde_json::Map::new();
            for (name, value) in members {
                body.insert((*name).into(), (*value).into());
            }
            let parameters: serde_json::Map<_, _> = parameters
                .iter()
                .map(|(n, v)| ((*n).to_owned(), serde_json::Value::from(*v)))
                .collect();
            body.insert("AuthParameters".into(), parameters.into());
            serde_json::Value::Object(body).to_string()
        }

        #[test]
        fn a_wrong_password_is_another_key() {
            let members = [("AuthFlow", "USER_PASSWORD_AUTH"), ("ClientId", "c")];
            let right = key(
                "InitiateAuth",
                &sign_in(&members, &[("USERNAME", "u"), ("PASSWORD", "right")]),
            );
            let wrong = key(
                "InitiateAuth",
                &sign_in(&members, &[("USERNAME", "u"), ("PASSWORD", "wrong")]),
            );
            assert_ne!(right, wrong);
        }

        #[test]
        fn native_and_oauth_keys_never_meet() {
            let native = key("GetClientToken", r#"{"ClientId":"c","Secret":"s"}"#);
            let oauth = key_of(
                &deriver(),
                "/",
                None,
                "grant_type=client_credentials&client_id=c&client_secret=s",
            );
            assert_ne!(native, oauth);
        }

        fn text() -> impl Strategy<Value = String> {
            "[ -~é\\\"]{0,10}"
        }

        proptest! {
            /// Member order, white space and escapes do not change the key.
            #[test]
            fn the_same_request_written_differently_shares_a_key(
                parameters in proptest::collection::btree_map("[A-Z_]{1,12}", text(), 1..5),
                metadata in proptest::collection::btree_map("[a-z]{1,6}", text(), 0..3),
                client in "[a-z0-9]{1,12}",
            ) {
                let mut body = serde_json::Map::new();
                body.insert("AuthFlow".into(), "REFRESH_TOKEN_AUTH".into());
                body.insert("ClientId".into(), client.into());
                let mut parameters: serde_json::Map<String, serde_json::Value> = parameters
                    .into_iter().map(|(k, v)| (k, v.into())).collect();
                parameters.insert("REFRESH_TOKEN".into(), "r".into());
                body.insert("AuthParameters".into(), parameters.into());
                body.insert("ClientMetadata".into(), serde_json::Value::Object(
                    metadata.into_iter().map(|(k, v)| (k, v.into())).collect()));
                let compact = serde_json::Value::Object(body.clone()).to_string();
                // Pretty, with members in reverse order and ASCII escaped.
                let mut reversed = String::from("{\n");
                let members: Vec<_> = body.iter().rev().collect();
                for (index, (name, value)) in members.iter().enumerate() {
                    let value = serde_json::to_string_pretty(value).unwrap();
                    let value: String = value.chars().map(|c| if c == 'é' {
                        "\\u00e9".to_owned() } else { c.to_string() }).collect();
                    reversed.push_str(&format!("  \"{name}\" :  {value}"));
                    reversed.push_str(if index + 1 < members.len() { ",\n" } else { "\n" });
                }
                reversed.push('}');
                prop_assert_eq!(key("InitiateAuth", &compact), key("InitiateAuth", &reversed));
                // The canonical form is a fixed point.
                let request = NativeRequest::parse("InitiateAuth", compact.as_bytes()).unwrap();
                let canonical = request.cacheable().unwrap().body().to_vec();
                let again = NativeRequest::parse("InitiateAuth", &canonical).unwrap();
                prop_assert_eq!(&canonical[..], again.cacheable().unwrap().body());
            }

            /// Any changed member, parameter or metadata entry changes the key.
            #[test]
            fn any_change_changes_the_key(
                username in "[a-z]{1,8}", password in text(), hash in text(),
                metadata in text(), which in 0usize..6, changed in "[a-z]{1,4}",
            ) {
                let build = |fields: &[String; 6]| {
                    serde_json::json!({
                        "AuthFlow": fields[0], "ClientId": fields[1],
                        "AuthParameters": {"USERNAME": fields[2], "PASSWORD": fields[3], "SECRET_HASH": fields[4]},
                        "ClientMetadata": {"tenant": fields[5]},
                    }).to_string()
                };
                let mut fields = [
                    "USER_PASSWORD_AUTH".to_owned(), "client".to_owned(),
                    username, password, hash, metadata,
                ];
                let original = key("InitiateAuth", &build(&fields));
                if which == 0 {
                    fields[0] = "REFRESH_TOKEN_AUTH".to_owned();
                    let body = build(&fields).replace("\"USERNAME\"", "\"REFRESH_TOKEN\"");
                    prop_assert_ne!(original, key("InitiateAuth", &body));
                } else {
                    fields[which].push_str(&changed);
                    prop_assert_ne!(original, key("InitiateAuth", &build(&fields)));
                }
            }

            #[test]
            fn scope_order_and_repeats_share_a_key(
                scopes in proptest::collection::vec("[a-z]{1,5}(/[a-z]{1,5})?", 1..6),
                seed in any::<usize>(),
            ) {
                let mut shuffled = scopes.clone();
                let n = shuffled.len();
                shuffled.rotate_left(seed % n);
                shuffled.push(scopes[seed % n].clone());
                let body = |scopes: &[String]| serde_json::json!(
                    {"ClientId": "c", "Secret": "s", "Scopes": scopes}).to_string();
                prop_assert_eq!(key("GetClientToken", &body(&scopes)), key("GetClientToken", &body(&shuffled)));
            }
        }
    }
}
