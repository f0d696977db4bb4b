//! Cognito's native answers as cache entries: a token is the
//! `AuthenticationResult` of `InitiateAuth` or the
//! `ClientAuthenticationResult` of `GetClientToken`, with a positive
//! `ExpiresIn`; a challenge, or anything else, is not.

use serde_json::{Map, Value};

use crate::clock::UnixMillis;
use crate::freshness::FreshnessPolicy;
use crate::token::{
    AnswerShape, CachedToken, Uncacheable, jwt_expiry, object_prefix, positive_seconds,
};

/// The members that hold a native answer's tokens.
const RESULT_MEMBERS: [&str; 2] = ["AuthenticationResult", "ClientAuthenticationResult"];

/// What of a native answer is kept.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct NativeAnswerOptions {
    /// Drop `RefreshToken` from cached answers, for pools that rotate
    /// refresh tokens (each caller of a shared answer would otherwise hold
    /// the same single-use token).
    pub strip_refresh_token: bool,
}

impl CachedToken {
    /// Builds a cache entry from a native API's 200 answer, fetched at
    /// `now`.
    ///
    /// The token ends at `now + ExpiresIn`, or at the JWT `exp` of the
    /// access or id token if earlier, never later than the policy's
    /// `max_ttl` after `now`. Served, the answer is the upstream's JSON
    /// with `ExpiresIn` set to what is left.
    ///
    /// # Errors
    /// [`Uncacheable`]: a challenge, an answer with `NewDeviceMetadata`, no
    /// result object, no access token, no positive lifetime.
    pub fn from_native_response(
        body: &[u8],
        now: UnixMillis,
        policy: &FreshnessPolicy,
        options: NativeAnswerOptions,
    ) -> Result<Self, Uncacheable> {
        let Ok(Value::Object(mut top)) = serde_json::from_slice::<Value>(body) else {
            return Err(Uncacheable::NotJsonObject);
        };
        let is_set = |value: Option<&Value>| value.is_some_and(|v| !v.is_null());
        if is_set(top.get("ChallengeName")) || is_set(top.get("Session")) {
            return Err(Uncacheable::Challenge);
        }
        let Some((name, mut result)) = take_result(&mut top) else {
            return Err(Uncacheable::MissingAccessToken);
        };
        let access_token = match result.get("AccessToken") {
            Some(Value::String(token)) if !token.is_empty() => token,
            _ => return Err(Uncacheable::MissingAccessToken),
        };
        if is_set(result.get("NewDeviceMetadata")) {
            return Err(Uncacheable::NewDevice);
        }
        let id_token = result.get("IdToken").and_then(Value::as_str);
        let jwt_exp = [Some(access_token.as_str()), id_token]
            .into_iter()
            .flatten()
            .filter_map(jwt_expiry)
            .min();
        let expires_in_secs = result
            .remove("ExpiresIn")
            .as_ref()
            .and_then(positive_seconds)
            .ok_or(Uncacheable::NoLifetime)?;
        if options.strip_refresh_token {
            result.remove("RefreshToken");
        }
        let mut expires_at = now.plus_millis(expires_in_secs.saturating_mul(1000));
        if let Some(exp) = jwt_exp {
            expires_at = expires_at.min(exp);
        }
        let prefix = nested_prefix(&top, name, &result);
        Self::from_parts(prefix, AnswerShape::CognitoNative, now, expires_at, policy)
    }
}

/// Takes the one result object out of `top`.
fn take_result(top: &mut Map<String, Value>) -> Option<(&'static str, Map<String, Value>)> {
    let mut found = RESULT_MEMBERS
        .iter()
        .filter(|name| top.get(**name).is_some_and(Value::is_object));
    let name = *found.next()?;
    if found.next().is_some() {
        return None;
    }
    match top.remove(name) {
        Some(Value::Object(result)) => Some((name, result)),
        _ => None,
    }
}

/// `{…top…,"NAME":{…result…` without either closing brace, so that
/// `,"ExpiresIn":N}}` completes it.
fn nested_prefix(top: &Map<String, Value>, name: &str, result: &Map<String, Value>) -> Box<[u8]> {
    let mut out = object_prefix(top).into_vec();
    if !top.is_empty() {
        out.push(b',');
    }
    // A string serialises without fail.
    let _ = serde_json::to_writer(&mut out, name);
    out.push(b':');
    // The result holds at least `AccessToken`, so its prefix is `{"…":…`.
    out.extend_from_slice(&object_prefix(result));
    out.into_boxed_slice()
}

/// Whether a native 200 answer is neither a token nor a challenge: a body
/// worth retrying (garbage from a broken hop), not an answer to pass on.
#[must_use]
pub fn is_not_a_native_answer(body: &[u8]) -> bool {
    let Ok(Value::Object(top)) = serde_json::from_slice::<Value>(body) else {
        return true;
    };
    let challenge = top.get("ChallengeName").is_some_and(|v| !v.is_null());
    let result = RESULT_MEMBERS
        .iter()
        .any(|name| top.get(*name).is_some_and(Value::is_object));
    !(challenge || result)
}

#[cfg(test)]
mod tests {
    use super::*;
    use base64::Engine as _;
    use proptest::prelude::*;

    const T0: UnixMillis = UnixMillis(1_700_000_000_000);

    fn entry(body: &str) -> Result<CachedToken, Uncacheable> {
        CachedToken::from_native_response(
            body.as_bytes(),
            T0,
            &FreshnessPolicy::default(),
            NativeAnswerOptions::default(),
        )
    }

    fn jwt(exp: u64) -> String {
        let b64 = |s: &str| base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(s);
        format!(
            "{}.{}.sig",
            b64(r#"{"alg":"RS256"}"#),
            b64(&format!(r#"{{"exp":{exp}}}"#))
        )
    }

    #[test]
    fn an_authentication_result_renders_with_the_remaining_lifetime() {
        let token = entry(
            r#"{"ChallengeParameters":{},"AuthenticationResult":{"AccessToken":"a","ExpiresIn":3600,"TokenType":"Bearer","RefreshToken":"r","IdToken":"i"}}"#,
        )
        .unwrap();
        let later = T0.plus_millis(1_000_500);
        let body: Value = serde_json::from_slice(&token.render_body(later)).unwrap();
        assert_eq!(
            body,
            serde_json::json!({"ChallengeParameters":{},"AuthenticationResult":{
                "AccessToken":"a","ExpiresIn":2599,"TokenType":"Bearer","RefreshToken":"r","IdToken":"i"}})
        );
        let decoded = CachedToken::decode(&token.encode(), &FreshnessPolicy::default()).unwrap();
        assert_eq!(decoded, token);
        assert_eq!(decoded.render_body(later), token.render_body(later));
    }

    #[test]
    fn a_client_authentication_result_alone_renders_too() {
        let token = entry(
            r#"{"ClientAuthenticationResult":{"AccessToken":"a","ExpiresIn":60,"TokenType":"Bearer"}}"#,
        )
        .unwrap();
        let body: Value = serde_json::from_slice(&token.render_body(T0)).unwrap();
        assert_eq!(
            body,
            serde_json::json!({"ClientAuthenticationResult":{"AccessToken":"a","ExpiresIn":60,"TokenType":"Bearer"}})
        );
    }

    #[test]
    fn the_earlier_jwt_exp_ends_the_life() {
        let exp = T0.0 / 1000 + 600;
        let body = format!(
            r#"{{"AuthenticationResult":{{"AccessToken":"{}","IdToken":"{}","ExpiresIn":3600}}}}"#,
            jwt(exp + 100),
            jwt(exp)
        );
        assert_eq!(entry(&body).unwrap().expires_in(T0), 600);
    }

    #[test]
    fn the_refresh_token_can_be_stripped() {
        let token = CachedToken::from_native_response(
            br#"{"AuthenticationResult":{"AccessToken":"a","RefreshToken":"r","ExpiresIn":60}}"#,
            T0,
            &FreshnessPolicy::default(),
            NativeAnswerOptions {
                strip_refresh_token: true,
            },
        )
        .unwrap();
        let body: Value = serde_json::from_slice(&token.render_body(T0)).unwrap();
        assert!(body["AuthenticationResult"].get("RefreshToken").is_none());
    }

    #[test]
    fn what_is_never_cached() {
        let cases = [
            ("nope", Uncacheable::NotJsonObject),
            (
                r#"{"ChallengeName":"NEW_PASSWORD_REQUIRED","Session":"s","ChallengeParameters":{}}"#,
                Uncacheable::Challenge,
            ),
            (
                r#"{"Session":"s","AuthenticationResult":{"AccessToken":"a","ExpiresIn":60}}"#,
                Uncacheable::Challenge,
            ),
            (
                r#"{"ChallengeParameters":{}}"#,
                Uncacheable::MissingAccessToken,
            ),
            (
                r#"{"AuthenticationResult":{"IdToken":"i","ExpiresIn":60}}"#,
                Uncacheable::MissingAccessToken,
            ),
            (
                r#"{"AuthenticationResult":{"AccessToken":"a"}}"#,
                Uncacheable::NoLifetime,
            ),
            (
                r#"{"AuthenticationResult":{"AccessToken":"a","ExpiresIn":0}}"#,
                Uncacheable::NoLifetime,
            ),
            (
                r#"{"AuthenticationResult":{"AccessToken":"a","ExpiresIn":60,"NewDeviceMetadata":{"DeviceKey":"k"}}}"#,
                Uncacheable::NewDevice,
            ),
            (
                r#"{"AuthenticationResult":{"AccessToken":"a","ExpiresIn":60},"ClientAuthenticationResult":{"AccessToken":"b","ExpiresIn":60}}"#,
                Uncacheable::MissingAccessToken,
            ),
        ];
        for (body, expected) in cases {
            assert_eq!(entry(body), Err(expected), "{body}");
        }
    }

    #[test]
    fn garbage_is_told_from_answers() {
        assert!(is_not_a_native_answer(b"<html>"));
        assert!(is_not_a_native_answer(b"{}"));
        assert!(!is_not_a_native_answer(
            br#"{"ChallengeName":"NEW_PASSWORD_REQUIRED","Session":"s"}"#
        ));
        assert!(!is_not_a_native_answer(
            br#"{"AuthenticationResult":{"AccessToken":"a"}}"#
        ));
    }

    proptest! {
        #[test]
        fn rendered_answers_round_trip(
            tokens in proptest::collection::btree_map("[A-Z][a-zA-Z]{0,10}", "[ -~]{0,20}", 0..4),
            top in proptest::collection::btree_map("[a-z]{1,6}", "[ -~]{0,10}", 0..3),
            lifetime in 1u64..86_400,
            elapsed in 0u64..100_000_000,
            client in any::<bool>(),
        ) {
            let mut result: Map<String, Value> = tokens
                .iter()
                .map(|(k, v)| (k.clone(), Value::String(v.clone())))
                .collect();
            result.insert("AccessToken".into(), Value::String("token".into()));
            result.insert("ExpiresIn".into(), Value::from(lifetime));
            result.remove("IdToken");
            result.remove("NewDeviceMetadata");
            let mut object: Map<String, Value> = top
                .iter()
                .map(|(k, v)| (k.clone(), Value::String(v.clone())))
                .collect();
            let name = if client { "ClientAuthenticationResult" } else { "AuthenticationResult" };
            object.insert(name.into(), Value::Object(result.clone()));
            let body = serde_json::to_vec(&object).unwrap();
            let policy = FreshnessPolicy::new(0.75, crate::MinRemaining::Fraction(0.0)).unwrap();
            let cached = CachedToken::from_native_response(
                &body, T0, &policy, NativeAnswerOptions::default()).unwrap();
            let now = T0.plus_millis(elapsed);
            let rendered: Value = serde_json::from_slice(&cached.render_body(now)).unwrap();
            let left = (lifetime * 1000).saturating_sub(elapsed) / 1000;
            let mut expected = object.clone();
            let mut expected_result = result;
            expected_result.insert("ExpiresIn".into(), Value::from(left));
            expected.insert(name.into(), Value::Object(expected_result));
            prop_assert_eq!(rendered, Value::Object(expected));
        }

        #[test]
        fn arbitrary_answers_never_panic(body in proptest::collection::vec(any::<u8>(), 0..200)) {
            let _ = entry(&String::from_utf8_lossy(&body));
            let _ = is_not_a_native_answer(&body);
        }
    }
}
