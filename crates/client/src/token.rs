//! An access token, read from a token endpoint's 200 answer.

use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use http::HeaderValue;
use serde_json::{Map, Value};
use tokencache_core::{CachedToken, FreshnessPolicy, Schedule, UnixMillis};
use zeroize::Zeroizing;

use crate::Error;

/// An access token and what the token endpoint said about it.
///
/// Cheap to clone (clones share one allocation). The token itself is
/// reached only through [`AccessToken::secret`] (or the ready-made
/// [`AccessToken::authorization_header`]); `Debug` prints it as
/// `[redacted]`, and the memory holding it is wiped when the last clone is
/// dropped.
#[derive(Clone)]
pub struct AccessToken(Arc<Inner>);

struct Inner {
    secret: Zeroizing<String>,
    authorization: HeaderValue,
    token_type: String,
    scopes: Vec<String>,
    fetched_at: UnixMillis,
    expires_at: UnixMillis,
    response: Zeroizing<String>,
}

impl AccessToken {
    /// The access token, to send as `Authorization: Bearer <token>`.
    #[must_use]
    pub fn secret(&self) -> &str {
        &self.0.secret
    }

    /// `Bearer <token>`, ready for an `Authorization` header, and marked
    /// sensitive so that HTTP libraries keep it out of their logs.
    #[must_use]
    pub fn authorization_header(&self) -> &HeaderValue {
        &self.0.authorization
    }

    /// The `token_type` of the answer (`Bearer` when the answer has none).
    #[must_use]
    pub fn token_type(&self) -> &str {
        &self.0.token_type
    }

    /// The granted scopes: the answer's `scope`, or the requested scopes
    /// when the answer leaves it out (RFC 6749 §5.1: the scope is then the
    /// one requested).
    #[must_use]
    pub fn scopes(&self) -> &[String] {
        &self.0.scopes
    }

    /// When the request that got this token was sent. Lifetimes count from
    /// here, not from the answer's arrival, so they are never overstated.
    #[must_use]
    pub fn fetched_at(&self) -> UnixMillis {
        self.0.fetched_at
    }

    /// When the token expires: `expires_in` after [`fetched_at`], or the
    /// JWT's `exp` if that is earlier.
    ///
    /// [`fetched_at`]: AccessToken::fetched_at
    #[must_use]
    pub fn expires_at(&self) -> UnixMillis {
        self.0.expires_at
    }

    /// The lifetime left at `now` (zero once expired).
    #[must_use]
    pub fn expires_in(&self, now: UnixMillis) -> Duration {
        Duration::from_millis(self.0.expires_at.millis_since(now))
    }

    /// The token endpoint's whole JSON answer, as it came. It holds the
    /// token: treat it as a secret.
    #[must_use]
    pub fn response_json(&self) -> &str {
        &self.0.response
    }

    /// Whether `other` is this very token (a clone of it), not merely an
    /// equal one.
    pub(crate) fn same_as(&self, other: &Self) -> bool {
        Arc::ptr_eq(&self.0, &other.0)
    }
}

impl fmt::Debug for AccessToken {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("AccessToken")
            .field("secret", &"[redacted]")
            .field("token_type", &self.0.token_type)
            .field("scopes", &self.0.scopes)
            .field("fetched_at", &self.0.fetched_at)
            .field("expires_at", &self.0.expires_at)
            .finish_non_exhaustive()
    }
}

/// A token just fetched, with the schedule the freshness policy gives it.
#[derive(Debug)]
pub(crate) struct Fetched {
    pub(crate) token: AccessToken,
    pub(crate) schedule: Schedule,
}

/// Reads a 200 answer's body, for a request sent at `sent_at`.
///
/// The lifetime and the schedule come from the same core code as the
/// proxy's ([`CachedToken::from_response`]), so both agree on what a token
/// is worth.
pub(crate) fn parse(
    body: &[u8],
    sent_at: UnixMillis,
    policy: &FreshnessPolicy,
    requested_scopes: &[String],
) -> Result<Fetched, Error> {
    let cached = CachedToken::from_response(body, sent_at, policy)
        .map_err(|why| Error::invalid_response(why.to_string()))?;
    let Ok(Value::Object(fields)) = serde_json::from_slice::<Value>(body) else {
        return Err(Error::invalid_response("body is not a JSON object"));
    };
    let secret = Zeroizing::new(string_field(&fields, "access_token").unwrap_or_default());
    let mut authorization = header_value(&secret)?;
    authorization.set_sensitive(true);
    let token_type = string_field(&fields, "token_type").unwrap_or_else(|| "Bearer".to_owned());
    let scopes = string_field(&fields, "scope").map_or_else(
        || requested_scopes.to_vec(),
        |granted| granted.split_whitespace().map(str::to_owned).collect(),
    );
    // The body parsed as JSON, so it is UTF-8.
    let response = Zeroizing::new(String::from_utf8_lossy(body).into_owned());
    Ok(Fetched {
        schedule: Schedule {
            refresh_at: cached.refresh_at(),
            serve_until: cached.serve_until(),
        },
        token: AccessToken(Arc::new(Inner {
            secret,
            authorization,
            token_type,
            scopes,
            fetched_at: sent_at,
            expires_at: cached.expires_at(),
            response,
        })),
    })
}

fn string_field(fields: &Map<String, Value>, name: &str) -> Option<String> {
    match fields.get(name) {
        Some(Value::String(value)) => Some(value.clone()),
        _ => None,
    }
}

/// `Bearer <token>`. A token must be visible ASCII (RFC 6750's `b64token`
/// is a subset) to travel in a header at all.
fn header_value(secret: &str) -> Result<HeaderValue, Error> {
    if !secret.bytes().all(|byte| byte.is_ascii_graphic()) {
        return Err(Error::invalid_response(
            "access_token holds characters a header cannot carry",
        ));
    }
    let value = Zeroizing::new(format!("Bearer {secret}"));
    HeaderValue::from_str(&value)
        .map_err(|_| Error::invalid_response("access_token is not a valid header value"))
}

#[cfg(test)]
mod tests {
    use super::*;

    const T0: UnixMillis = UnixMillis(1_700_000_000_000);

    fn parse_str(body: &str) -> Result<Fetched, Error> {
        parse(
            body.as_bytes(),
            T0,
            &FreshnessPolicy::default(),
            &["api/read".to_owned()],
        )
    }

    #[test]
    fn reads_a_token_answer() {
        let fetched =
            parse_str(r#"{"access_token":"abc.def","expires_in":3600,"token_type":"Bearer"}"#)
                .unwrap();
        let token = &fetched.token;
        assert_eq!(token.secret(), "abc.def");
        assert_eq!(token.authorization_header(), "Bearer abc.def");
        assert!(token.authorization_header().is_sensitive());
        assert_eq!(token.token_type(), "Bearer");
        assert_eq!(token.scopes(), ["api/read"]);
        assert_eq!(token.fetched_at(), T0);
        assert_eq!(token.expires_at(), T0.plus_millis(3_600_000));
        assert_eq!(
            token.expires_in(T0.plus_millis(600_000)),
            Duration::from_secs(3000)
        );
        assert_eq!(fetched.schedule.refresh_at, T0.plus_millis(2_700_000));
        assert_eq!(fetched.schedule.serve_until, T0.plus_millis(3_240_000));
        assert!(token.response_json().contains("\"expires_in\":3600"));
    }

    #[test]
    fn granted_scope_wins_and_token_type_defaults() {
        let token = parse_str(r#"{"access_token":"t","expires_in":60,"scope":"a b"}"#)
            .unwrap()
            .token;
        assert_eq!(token.scopes(), ["a", "b"]);
        assert_eq!(token.token_type(), "Bearer");
    }

    #[test]
    fn refuses_unusable_answers() {
        for body in [
            "not json",
            "[]",
            r#"{"expires_in":60}"#,
            r#"{"access_token":"t"}"#,
            r#"{"access_token":"t","expires_in":0}"#,
            r#"{"access_token":"has space","expires_in":60}"#,
            r#"{"access_token":"new\nline","expires_in":60}"#,
        ] {
            assert!(
                matches!(parse_str(body), Err(Error::InvalidResponse { .. })),
                "{body}"
            );
        }
    }

    #[test]
    fn debug_is_redacted() {
        let token = parse_str(r#"{"access_token":"very-secret","expires_in":60}"#)
            .unwrap()
            .token;
        let printed = format!("{token:?}");
        assert!(!printed.contains("very-secret"), "{printed}");
        assert!(printed.contains("[redacted]"));
    }
}
