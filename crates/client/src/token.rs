//! An access token, read from a token endpoint's 200 answer.

use std::fmt;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use http::HeaderValue;
use serde::de::DeserializeOwned;
use serde_json::{Map, Value};
use tokencache_core::{CachedToken, FreshnessPolicy, Schedule, UnixMillis};
use zeroize::Zeroizing;

use crate::clock::{system_time, unix_millis};
use crate::error::Error;

/// The members of a token answer that RFC 6749 §5.1 defines: every other
/// one is an extra field.
const STANDARD_FIELDS: [&str; 5] = [
    "access_token",
    "token_type",
    "expires_in",
    "refresh_token",
    "scope",
];

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
    extra: Map<String, Value>,
    response: Zeroizing<String>,
}

impl AccessToken {
    /// Reads a token endpoint's 200 answer (RFC 6749 §5.1), for a request
    /// sent at `sent_at`: for a [`TokenSource`](crate::TokenSource) of your
    /// own, or a fake one in tests.
    ///
    /// ```
    /// use std::time::{Duration, SystemTime};
    /// use tokencache_client::AccessToken;
    ///
    /// let sent_at = SystemTime::UNIX_EPOCH + Duration::from_secs(1_700_000_000);
    /// let token = AccessToken::from_response(
    ///     br#"{"access_token":"abc","token_type":"DPoP","expires_in":300,"tenant":"t1"}"#,
    ///     sent_at,
    /// )?;
    /// assert_eq!(token.authorization_header(), "DPoP abc");
    /// assert_eq!(token.expires_at(), sent_at + Duration::from_secs(300));
    /// assert_eq!(token.extra::<String>("tenant")?.as_deref(), Some("t1"));
    /// # Ok::<(), tokencache_client::Error>(())
    /// ```
    ///
    /// # Errors
    ///
    /// [`Error::InvalidResponse`] when the answer is not a usable token
    /// answer: not JSON, no `access_token`, no usable lifetime, or a token
    /// or token type that cannot travel in a header.
    pub fn from_response(body: &[u8], sent_at: SystemTime) -> Result<Self, Error> {
        parse(body, unix_millis(sent_at), &FreshnessPolicy::default(), &[]).map(|f| f.token)
    }

    /// The access token, to send as `Authorization: <token type> <token>`.
    #[must_use]
    pub fn secret(&self) -> &str {
        &self.0.secret
    }

    /// `<token type> <token>` (`Bearer <token>` unless the answer said
    /// otherwise), ready for an `Authorization` header, and marked
    /// sensitive so that HTTP libraries keep it out of their logs.
    ///
    /// The scheme is the answer's `token_type`, with `bearer` and `dpop`
    /// spelt as their RFCs do (`Bearer`, `DPoP`): some servers compare it
    /// case-sensitively. A `DPoP` token also needs a `DPoP` proof header
    /// for each request, which this crate does not make.
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

    /// When the request that got this token was sent (to the millisecond).
    /// Lifetimes count from here, not from the answer's arrival, so they
    /// are never overstated.
    #[must_use]
    pub fn fetched_at(&self) -> SystemTime {
        system_time(self.0.fetched_at)
    }

    /// When the token expires: `expires_in` after [`fetched_at`], or the
    /// JWT's `exp` if that is earlier.
    ///
    /// [`fetched_at`]: AccessToken::fetched_at
    #[must_use]
    pub fn expires_at(&self) -> SystemTime {
        system_time(self.0.expires_at)
    }

    /// The lifetime left at `now` (zero once expired).
    #[must_use]
    pub fn expires_in(&self, now: SystemTime) -> Duration {
        Duration::from_millis(self.0.expires_at.millis_since(unix_millis(now)))
    }

    /// The answer's members beyond those RFC 6749 §5.1 defines
    /// (`access_token`, `token_type`, `expires_in`, `refresh_token`,
    /// `scope`): `ext_expires_in`, an `id_token`, a provider's own fields.
    /// Their values can be private: keep them out of logs.
    #[must_use]
    pub fn extra_fields(&self) -> &Map<String, Value> {
        &self.0.extra
    }

    /// The extra field `name` (see [`extra_fields`](Self::extra_fields)) as
    /// a `T`, or `None` when the answer has no such field.
    ///
    /// # Errors
    ///
    /// [`Error::InvalidResponse`] when the field is there but is not a `T`
    /// (the message names the field and the type, never the value).
    pub fn extra<T: DeserializeOwned>(&self, name: &str) -> Result<Option<T>, Error> {
        let Some(value) = self.0.extra.get(name) else {
            return Ok(None);
        };
        T::deserialize(value).map(Some).map_err(|_| {
            Error::invalid_response(format!(
                "the field `{name}` is not a {}",
                std::any::type_name::<T>()
            ))
        })
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

    /// When the request that got this token was sent, in core's time.
    pub(crate) fn fetched_at_millis(&self) -> UnixMillis {
        self.0.fetched_at
    }

    /// When the token expires, in core's time.
    pub(crate) fn expires_at_millis(&self) -> UnixMillis {
        self.0.expires_at
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
            // Names only: the values can be private.
            .field("extra_fields", &self.0.extra.keys().collect::<Vec<_>>())
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
    let Ok(Value::Object(mut fields)) = serde_json::from_slice::<Value>(body) else {
        return Err(Error::invalid_response("body is not a JSON object"));
    };
    let secret = Zeroizing::new(string_field(&fields, "access_token").unwrap_or_default());
    let token_type = string_field(&fields, "token_type")
        .filter(|token_type| !token_type.is_empty())
        .unwrap_or_else(|| "Bearer".to_owned());
    let mut authorization = header_value(&token_type, &secret)?;
    authorization.set_sensitive(true);
    let scopes = string_field(&fields, "scope").map_or_else(
        || requested_scopes.to_vec(),
        |granted| granted.split_whitespace().map(str::to_owned).collect(),
    );
    for name in STANDARD_FIELDS {
        if let Some(Value::String(mut value)) = fields.remove(name) {
            // Zeroize the copy of the token (and of a refresh token)
            // that the map held.
            zeroize::Zeroize::zeroize(&mut value);
        }
    }
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
            extra: fields,
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

/// `<scheme> <token>`. A token must be visible ASCII (RFC 6750's
/// `b64token` is a subset) to travel in a header at all.
fn header_value(token_type: &str, secret: &str) -> Result<HeaderValue, Error> {
    if !secret.bytes().all(|byte| byte.is_ascii_graphic()) {
        return Err(Error::invalid_response(
            "access_token holds characters a header cannot carry",
        ));
    }
    let value = Zeroizing::new(format!("{} {secret}", scheme(token_type)?));
    HeaderValue::from_str(&value)
        .map_err(|_| Error::invalid_response("access_token is not a valid header value"))
}

/// The `Authorization` scheme for a `token_type`: an RFC 9110 token
/// (`tchar`s), the registered ones spelt as their RFCs do.
fn scheme(token_type: &str) -> Result<&str, Error> {
    if token_type.eq_ignore_ascii_case("bearer") {
        return Ok("Bearer");
    }
    if token_type.eq_ignore_ascii_case("dpop") {
        return Ok("DPoP");
    }
    let is_tchar = |byte: u8| byte.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&byte);
    if token_type.bytes().all(is_tchar) {
        Ok(token_type)
    } else {
        Err(Error::invalid_response(
            "token_type is not a scheme an Authorization header can carry",
        ))
    }
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
        assert_eq!(token.fetched_at(), system_time(T0));
        assert_eq!(token.expires_at(), system_time(T0.plus_millis(3_600_000)));
        assert_eq!(
            token.expires_in(system_time(T0.plus_millis(600_000))),
            Duration::from_secs(3000)
        );
        assert_eq!(
            token.expires_in(system_time(T0.plus_millis(4_000_000))),
            Duration::ZERO
        );
        assert!(token.extra_fields().is_empty());
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
    fn the_token_type_is_the_header_s_scheme() {
        for (token_type, header) in [
            ("Bearer", "Bearer t"),
            ("bearer", "Bearer t"),
            ("dpop", "DPoP t"),
            ("N_A", "N_A t"),
            ("", "Bearer t"),
        ] {
            let body =
                format!(r#"{{"access_token":"t","expires_in":60,"token_type":"{token_type}"}}"#);
            let token = parse_str(&body).unwrap().token;
            assert_eq!(token.authorization_header(), header, "{token_type:?}");
        }
        let token = parse_str(r#"{"access_token":"t","expires_in":60,"token_type":"bearer"}"#)
            .unwrap()
            .token;
        assert_eq!(token.token_type(), "bearer", "as the answer said");
        for token_type in ["Bearer x", "Béarer", "a:b"] {
            let body =
                format!(r#"{{"access_token":"t","expires_in":60,"token_type":"{token_type}"}}"#);
            assert!(
                matches!(parse_str(&body), Err(Error::InvalidResponse { .. })),
                "{token_type}"
            );
        }
    }

    #[test]
    fn extra_fields_are_typed_and_leave_out_the_standard_ones() {
        let token = parse_str(
            r#"{"access_token":"t","expires_in":60,"token_type":"Bearer","scope":"a",
                "refresh_token":"r","ext_expires_in":120,"tenant":{"id":"t1"}}"#,
        )
        .unwrap()
        .token;
        let mut names: Vec<_> = token.extra_fields().keys().collect();
        names.sort_unstable();
        assert_eq!(names, ["ext_expires_in", "tenant"]);
        assert_eq!(token.extra::<u64>("ext_expires_in").unwrap(), Some(120));
        assert_eq!(token.extra::<u64>("missing").unwrap(), None);
        let tenant: serde_json::Value = token.extra("tenant").unwrap().unwrap();
        assert_eq!(tenant["id"], "t1");
        let wrong = token.extra::<String>("ext_expires_in").unwrap_err();
        assert!(wrong.to_string().contains("`ext_expires_in`"), "{wrong}");
        assert!(
            !wrong.to_string().contains("120"),
            "no value in the message: {wrong}"
        );
        assert!(format!("{token:?}").contains("tenant"));
    }

    #[test]
    fn from_response_reads_an_answer_for_custom_sources() {
        let sent_at = system_time(T0);
        let token = AccessToken::from_response(br#"{"access_token":"t","expires_in":60}"#, sent_at)
            .unwrap();
        assert_eq!(token.fetched_at(), sent_at);
        assert_eq!(token.expires_at(), sent_at + Duration::from_secs(60));
        assert!(AccessToken::from_response(b"{}", sent_at).is_err());
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
