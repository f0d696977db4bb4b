//! A cached token response, and the rules that decide what may be cached.

use std::fmt;

use base64::Engine as _;
use serde_json::{Map, Value};

use crate::clock::UnixMillis;
use crate::freshness::{Freshness, FreshnessPolicy, Schedule};

/// Why an upstream answer cannot be cached (it is passed through instead).
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum Uncacheable {
    /// The body is not a JSON object.
    #[error("body is not a JSON object")]
    NotJsonObject,
    /// There is no string `access_token`.
    #[error("no access_token")]
    MissingAccessToken,
    /// `expires_in` is missing, not a number or not positive.
    #[error("no positive expires_in")]
    NoLifetime,
    /// The token would expire before it could be served (its lifetime is
    /// shorter than the minimum remaining lifetime, or the JWT `exp` has
    /// passed).
    #[error("lifetime too short to cache")]
    LifetimeTooShort,
    /// A Cognito challenge (`ChallengeName`, `Session`): single-use, never
    /// cached.
    #[error("a challenge, not a token")]
    Challenge,
    /// A Cognito answer with `NewDeviceMetadata`: a device key minted for
    /// one sign-in, which must not be handed to other callers.
    #[error("carries new device metadata")]
    NewDevice,
}

/// Where a cached answer's remaining lifetime is written when it is served.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum AnswerShape {
    /// An OAuth 2.0 token answer: `"expires_in"` at the top level.
    OAuth,
    /// A Cognito native-API answer: `"ExpiresIn"` in the result object
    /// (`AuthenticationResult`, `ClientAuthenticationResult`), which is
    /// the last member of the top-level object.
    CognitoNative,
}

/// Why stored bytes are not a cached token.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum DecodeError {
    /// Too short or an unknown format version.
    #[error("not an encoded token entry")]
    Malformed,
    /// The entry can no longer be served under this policy.
    #[error("the entry's lifetime is over")]
    Expired,
}

/// The format version of [`CachedToken::encode`] for OAuth answers.
const ENCODING_VERSION: u8 = 1;
/// The format version for Cognito native-API answers (same layout; the
/// version says where the lifetime goes).
const ENCODING_VERSION_NATIVE: u8 = 2;

/// A successful token response held in the cache.
///
/// The body is kept as the upstream's JSON object without `expires_in` and
/// without its closing brace, so an answer is rendered by appending the
/// remaining lifetime: no JSON is parsed or serialised on the hit path.
#[derive(Clone, PartialEq, Eq)]
pub struct CachedToken {
    body_prefix: Box<[u8]>,
    shape: AnswerShape,
    fetched_at: UnixMillis,
    expires_at: UnixMillis,
    schedule: Schedule,
}

impl CachedToken {
    /// Builds a cache entry from a 200 answer's body, fetched at `now`.
    ///
    /// The token ends at `now + expires_in`, or at the JWT `exp` of the
    /// access token if that is earlier (reading a lifetime hint needs no
    /// signature check), and never later than the policy's
    /// [`max_ttl`](FreshnessPolicy::max_ttl) after `now`.
    ///
    /// # Errors
    /// [`Uncacheable`] when the body is not a usable token response.
    pub fn from_response(
        body: &[u8],
        now: UnixMillis,
        policy: &FreshnessPolicy,
    ) -> Result<Self, Uncacheable> {
        let Ok(Value::Object(mut fields)) = serde_json::from_slice::<Value>(body) else {
            return Err(Uncacheable::NotJsonObject);
        };
        let access_token = match fields.get("access_token") {
            Some(Value::String(token)) if !token.is_empty() => token,
            _ => return Err(Uncacheable::MissingAccessToken),
        };
        let jwt_exp = jwt_expiry(access_token);
        let expires_in_secs = fields
            .remove("expires_in")
            .as_ref()
            .and_then(positive_seconds)
            .ok_or(Uncacheable::NoLifetime)?;
        let mut expires_at = now.plus_millis(expires_in_secs.saturating_mul(1000));
        if let Some(exp) = jwt_exp {
            expires_at = expires_at.min(exp);
        }
        Self::from_parts(
            object_prefix(&fields),
            AnswerShape::OAuth,
            now,
            expires_at,
            policy,
        )
    }

    /// An entry from a body prefix already laid out for `shape`, whose
    /// token ends at `expires_at` (before the policy's cap).
    pub(crate) fn from_parts(
        body_prefix: Box<[u8]>,
        shape: AnswerShape,
        now: UnixMillis,
        expires_at: UnixMillis,
        policy: &FreshnessPolicy,
    ) -> Result<Self, Uncacheable> {
        let expires_at = policy.capped_expiry(now, expires_at);
        let schedule = policy
            .schedule(now, expires_at)
            .ok_or(Uncacheable::LifetimeTooShort)?;
        Ok(Self {
            body_prefix,
            shape,
            fetched_at: now,
            expires_at,
            schedule,
        })
    }

    /// Where this entry's lifetime goes when it is rendered.
    #[must_use]
    pub const fn shape(&self) -> AnswerShape {
        self.shape
    }

    /// The stage of this entry at `now`.
    #[must_use]
    pub fn freshness(&self, now: UnixMillis) -> Freshness {
        self.schedule.freshness(now)
    }

    /// When the upstream answered.
    #[must_use]
    pub const fn fetched_at(&self) -> UnixMillis {
        self.fetched_at
    }

    /// When the token itself expires.
    #[must_use]
    pub const fn expires_at(&self) -> UnixMillis {
        self.expires_at
    }

    /// When this entry starts aging.
    #[must_use]
    pub const fn refresh_at(&self) -> UnixMillis {
        self.schedule.refresh_at
    }

    /// When this entry stops being served.
    #[must_use]
    pub const fn serve_until(&self) -> UnixMillis {
        self.schedule.serve_until
    }

    /// Whole seconds of life left at `now`: the `expires_in` to answer with.
    #[must_use]
    pub const fn expires_in(&self, now: UnixMillis) -> u64 {
        self.expires_at.whole_secs_since(now)
    }

    /// Whole seconds since the upstream answered: the `Age` header.
    #[must_use]
    pub const fn age_secs(&self, now: UnixMillis) -> u64 {
        now.whole_secs_since(self.fetched_at)
    }

    /// The answer's body at `now`: the upstream's JSON with `expires_in`
    /// (Cognito's native API: `ExpiresIn` in the result object) set to the
    /// seconds actually left.
    #[must_use]
    pub fn render_body(&self, now: UnixMillis) -> Vec<u8> {
        const SUFFIX_MAX: usize = r#","ExpiresIn":18446744073709551615}}"#.len();
        let mut body = Vec::with_capacity(self.body_prefix.len() + SUFFIX_MAX);
        body.extend_from_slice(&self.body_prefix);
        let (name, close): (&[u8], &[u8]) = match self.shape {
            AnswerShape::OAuth => (br#","expires_in":"#, b"}"),
            AnswerShape::CognitoNative => (br#","ExpiresIn":"#, b"}}"),
        };
        body.extend_from_slice(name);
        push_decimal(&mut body, self.expires_in(now));
        body.extend_from_slice(close);
        body
    }

    /// The entry as bytes for a shared store (to be sealed: it holds the
    /// token): version, fetch time, expiry, body. The schedule is not kept;
    /// each reader applies its own freshness policy.
    #[must_use]
    pub fn encode(&self) -> zeroize::Zeroizing<Vec<u8>> {
        let mut bytes = Vec::with_capacity(17 + self.body_prefix.len());
        bytes.push(match self.shape {
            AnswerShape::OAuth => ENCODING_VERSION,
            AnswerShape::CognitoNative => ENCODING_VERSION_NATIVE,
        });
        bytes.extend_from_slice(&self.fetched_at.0.to_be_bytes());
        bytes.extend_from_slice(&self.expires_at.0.to_be_bytes());
        bytes.extend_from_slice(&self.body_prefix);
        zeroize::Zeroizing::new(bytes)
    }

    /// An entry from [`encode`](Self::encode)'s bytes, scheduled by `policy`.
    ///
    /// # Errors
    /// [`DecodeError`] when the bytes are not an entry or it is past serving.
    pub fn decode(bytes: &[u8], policy: &FreshnessPolicy) -> Result<Self, DecodeError> {
        if bytes.len() < 18 {
            return Err(DecodeError::Malformed);
        }
        let shape = match bytes[0] {
            ENCODING_VERSION => AnswerShape::OAuth,
            ENCODING_VERSION_NATIVE => AnswerShape::CognitoNative,
            _ => return Err(DecodeError::Malformed),
        };
        let mut word = [0u8; 8];
        word.copy_from_slice(&bytes[1..9]);
        let fetched_at = UnixMillis(u64::from_be_bytes(word));
        word.copy_from_slice(&bytes[9..17]);
        // Another replica may run with a longer max-ttl: this one's cap holds.
        let expires_at = policy.capped_expiry(fetched_at, UnixMillis(u64::from_be_bytes(word)));
        let body_prefix: Box<[u8]> = bytes[17..].into();
        if body_prefix.first() != Some(&b'{') {
            return Err(DecodeError::Malformed);
        }
        let schedule = policy
            .schedule(fetched_at, expires_at)
            .ok_or(DecodeError::Expired)?;
        Ok(Self {
            body_prefix,
            shape,
            fetched_at,
            expires_at,
            schedule,
        })
    }

    /// Bytes this entry holds, for the memory store's budget.
    #[must_use]
    pub fn heap_size(&self) -> usize {
        self.body_prefix.len() + std::mem::size_of::<Self>()
    }
}

impl fmt::Debug for CachedToken {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("CachedToken")
            .field("body", &"[redacted]")
            .field("fetched_at", &self.fetched_at)
            .field("expires_at", &self.expires_at)
            .field("refresh_at", &self.schedule.refresh_at)
            .field("serve_until", &self.schedule.serve_until)
            .finish()
    }
}

/// `expires_in` as whole seconds: a positive integer, a positive float
/// (rounded down) or a numeric string, as some providers send.
pub(crate) fn positive_seconds(value: &Value) -> Option<u64> {
    let seconds = match value {
        Value::Number(number) => number.as_u64().or_else(|| {
            number
                .as_f64()
                .filter(|f| f.is_finite() && *f >= 1.0)
                .map(float_secs)
        }),
        Value::String(text) => text.trim().parse::<u64>().ok(),
        _ => None,
    }?;
    (seconds > 0).then_some(seconds)
}

#[allow(clippy::cast_possible_truncation, clippy::cast_sign_loss)] // checked finite and ≥ 1
fn float_secs(seconds: f64) -> u64 {
    seconds as u64
}

/// The `exp` claim of a JWT, as milliseconds; `None` for opaque tokens.
pub(crate) fn jwt_expiry(token: &str) -> Option<UnixMillis> {
    let mut segments = token.split('.');
    let (_header, payload, _signature) = (segments.next()?, segments.next()?, segments.next()?);
    if segments.next().is_some() {
        return None;
    }
    let json = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(payload.trim_end_matches('='))
        .ok()?;
    let claims: Value = serde_json::from_slice(&json).ok()?;
    let exp = claims.get("exp")?;
    let secs = exp.as_u64().or_else(|| {
        exp.as_f64()
            .filter(|f| f.is_finite() && *f >= 0.0)
            .map(float_secs)
    })?;
    Some(UnixMillis(secs.saturating_mul(1000)))
}

/// The object serialised without its closing brace.
pub(crate) fn object_prefix(fields: &Map<String, Value>) -> Box<[u8]> {
    // Serialising a map of JSON values cannot fail.
    let mut json = serde_json::to_vec(fields).unwrap_or_else(|_| b"{}".to_vec());
    // The object holds at least `access_token`, so what remains after the
    // brace is `{"…":…` and `,"expires_in":N}` can follow it.
    json.pop();
    json.into_boxed_slice()
}

fn push_decimal(out: &mut Vec<u8>, mut value: u64) {
    let mut digits = [0u8; 20];
    let mut start = digits.len();
    loop {
        start -= 1;
        // `value % 10` is below 10, so the cast is exact.
        #[allow(clippy::cast_possible_truncation)]
        let digit = (value % 10) as u8;
        digits[start] = b'0' + digit;
        value /= 10;
        if value == 0 {
            break;
        }
    }
    out.extend_from_slice(&digits[start..]);
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    const T0: UnixMillis = UnixMillis(1_700_000_000_000);

    fn parse(body: &str) -> Result<CachedToken, Uncacheable> {
        CachedToken::from_response(body.as_bytes(), T0, &FreshnessPolicy::default())
    }

    fn jwt(claims: &str) -> String {
        let b64 = |s: &str| base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(s);
        format!("{}.{}.sig", b64(r#"{"alg":"RS256"}"#), b64(claims))
    }

    #[test]
    fn renders_remaining_lifetime() {
        let token =
            parse(r#"{"access_token":"abc","expires_in":3600,"token_type":"Bearer"}"#).unwrap();
        let body: Value = serde_json::from_slice(&token.render_body(T0)).unwrap();
        assert_eq!(body["access_token"], "abc");
        assert_eq!(body["token_type"], "Bearer");
        assert_eq!(body["expires_in"], 3600);
        let later = token.render_body(T0.plus_millis(1_000_500));
        let later: Value = serde_json::from_slice(&later).unwrap();
        assert_eq!(later["expires_in"], 2599);
        assert_eq!(token.age_secs(T0.plus_millis(1_000_500)), 1000);
    }

    #[test]
    fn jwt_exp_ends_life_early() {
        let exp = T0.0 / 1000 + 600;
        let body = format!(
            r#"{{"access_token":"{}","expires_in":3600}}"#,
            jwt(&format!(r#"{{"exp":{exp}}}"#))
        );
        let token = parse(&body).unwrap();
        assert_eq!(token.expires_at(), T0.plus_millis(600_000));
        assert_eq!(token.expires_in(T0), 600);
    }

    #[test]
    fn expired_jwt_is_not_cached() {
        let exp = T0.0 / 1000 - 1;
        let body = format!(
            r#"{{"access_token":"{}","expires_in":3600}}"#,
            jwt(&format!(r#"{{"exp":{exp}}}"#))
        );
        assert_eq!(parse(&body), Err(Uncacheable::LifetimeTooShort));
    }

    #[test]
    fn lifetime_variants() {
        assert!(parse(r#"{"access_token":"a","expires_in":"120"}"#).is_ok());
        assert_eq!(
            parse(r#"{"access_token":"a","expires_in":90.7}"#)
                .unwrap()
                .expires_in(T0),
            90
        );
        for body in [
            r#"{"access_token":"a"}"#,
            r#"{"access_token":"a","expires_in":0}"#,
            r#"{"access_token":"a","expires_in":-5}"#,
            r#"{"access_token":"a","expires_in":"soon"}"#,
            r#"{"access_token":"a","expires_in":null}"#,
        ] {
            assert_eq!(parse(body), Err(Uncacheable::NoLifetime), "{body}");
        }
    }

    #[test]
    fn absurd_lifetimes_are_capped_at_max_ttl() {
        let token = parse(r#"{"access_token":"opaque","expires_in":1000000000000}"#).unwrap();
        assert_eq!(token.expires_in(T0), 86_400);
        assert_eq!(token.expires_at(), T0.plus_millis(86_400_000));
        let body = String::from_utf8(token.render_body(T0)).unwrap();
        assert!(body.ends_with(r#""expires_in":86400}"#), "{body}");
        // An entry written by a replica without the cap is capped on read.
        let lax = FreshnessPolicy::default().with_max_ttl(std::time::Duration::from_secs(1 << 40));
        let long = CachedToken::from_response(
            br#"{"access_token":"opaque","expires_in":1000000000000}"#,
            T0,
            &lax,
        )
        .unwrap();
        let read = CachedToken::decode(&long.encode(), &FreshnessPolicy::default()).unwrap();
        assert_eq!(read.expires_in(T0), 86_400);
    }

    #[test]
    fn unusable_bodies() {
        assert_eq!(parse("not json"), Err(Uncacheable::NotJsonObject));
        assert_eq!(parse("[1]"), Err(Uncacheable::NotJsonObject));
        assert_eq!(
            parse(r#"{"expires_in":5}"#),
            Err(Uncacheable::MissingAccessToken)
        );
        assert_eq!(
            parse(r#"{"access_token":7,"expires_in":5}"#),
            Err(Uncacheable::MissingAccessToken)
        );
        assert_eq!(
            parse(r#"{"access_token":"","expires_in":5}"#),
            Err(Uncacheable::MissingAccessToken)
        );
    }

    #[test]
    fn encode_decode_round_trip() {
        let token = parse(r#"{"access_token":"abc","expires_in":3600,"scope":"a b"}"#).unwrap();
        let bytes = token.encode();
        let decoded = CachedToken::decode(&bytes, &FreshnessPolicy::default()).unwrap();
        assert_eq!(decoded, token);
        assert_eq!(decoded.render_body(T0), token.render_body(T0));
        // Another policy gives another schedule for the same token.
        let eager = FreshnessPolicy::new(0.5, crate::MinRemaining::Fraction(0.1)).unwrap();
        let rescheduled = CachedToken::decode(&bytes, &eager).unwrap();
        assert_eq!(rescheduled.refresh_at(), T0.plus_millis(1_800_000));
        assert_eq!(
            CachedToken::decode(&bytes[..10], &eager),
            Err(DecodeError::Malformed)
        );
        let mut other = bytes.to_vec();
        other[0] = 9;
        assert_eq!(
            CachedToken::decode(&other, &eager),
            Err(DecodeError::Malformed)
        );
    }

    #[test]
    fn debug_hides_the_token() {
        let token = parse(r#"{"access_token":"s3cr3t","expires_in":60}"#).unwrap();
        assert!(!format!("{token:?}").contains("s3cr3t"));
    }

    proptest! {
        #[test]
        fn rendered_body_round_trips(
            token in "[ -~]{1,40}",
            extra in proptest::collection::btree_map("[a-z_]{1,8}", "[ -~]{0,12}", 0..4),
            lifetime in 1u64..86_400,
            elapsed in 0u64..2_000_000_000,
        ) {
            let mut object = Map::new();
            for (name, value) in &extra {
                object.insert(name.clone(), Value::String(value.clone()));
            }
            object.insert("access_token".into(), Value::String(token.clone()));
            object.insert("expires_in".into(), Value::from(lifetime));
            let body = serde_json::to_vec(&object).unwrap();
            let policy = FreshnessPolicy::new(0.75, crate::MinRemaining::Fraction(0.0)).unwrap();
            let cached = CachedToken::from_response(&body, T0, &policy).unwrap();
            let now = T0.plus_millis(elapsed);
            let rendered: Value = serde_json::from_slice(&cached.render_body(now)).unwrap();
            prop_assert_eq!(&rendered["access_token"], &Value::String(token));
            let left = (lifetime * 1000).saturating_sub(elapsed) / 1000;
            prop_assert_eq!(&rendered["expires_in"], &Value::from(left));
            for (name, value) in &extra {
                if name != "access_token" && name != "expires_in" {
                    prop_assert_eq!(&rendered[name], &Value::String(value.clone()));
                }
            }
        }

        #[test]
        fn arbitrary_encodings_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..100)) {
            let _ = CachedToken::decode(&bytes, &FreshnessPolicy::default());
        }

        #[test]
        fn arbitrary_bodies_never_panic(body in proptest::collection::vec(any::<u8>(), 0..200)) {
            let _ = CachedToken::from_response(&body, T0, &FreshnessPolicy::default());
        }
    }
}
