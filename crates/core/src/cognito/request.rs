//! A native-API request (AWS JSON 1.1: `X-Amz-Target` and a JSON body),
//! parsed strictly, judged cacheable or not, and for a cacheable one, its
//! canonical body: the one byte form that is keyed and sent upstream.

use std::collections::BTreeMap;
use std::fmt;

use super::json::{self, Json};

/// The `X-Amz-Target` prefix of Cognito user pools' operations.
pub const TARGET_PREFIX: &str = "AWSCognitoIdentityProviderService.";

/// The `AuthFlow`s whose answers are cached: a sign-in with a password,
/// and a refresh (`REFRESH_TOKEN` is the older name of the same flow).
const CACHED_FLOWS: [&str; 3] = ["USER_PASSWORD_AUTH", "REFRESH_TOKEN_AUTH", "REFRESH_TOKEN"];

/// The members a cacheable `InitiateAuth` may have. Anything else (a
/// member Cognito adds later, `UserContextData`, `Session`) makes it pass
/// through: its effect on the answer is unknown.
const INITIATE_AUTH_MEMBERS: [&str; 5] = [
    "AnalyticsMetadata",
    "AuthFlow",
    "AuthParameters",
    "ClientId",
    "ClientMetadata",
];

/// The members a cacheable `GetClientToken` may have.
const GET_CLIENT_TOKEN_MEMBERS: [&str; 4] = ["ClientId", "ClientMetadata", "Scopes", "Secret"];

/// Why a native-API request was refused; every variant is a client
/// mistake, and its text is safe to show (it never holds a value of the
/// body).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum NativeRequestError {
    /// `X-Amz-Target` is not `AWSCognitoIdentityProviderService.<Operation>`.
    #[error("X-Amz-Target must be AWSCognitoIdentityProviderService.<Operation>")]
    UnknownTarget,
    /// The body is not strict JSON (a syntax error, trailing bytes, a
    /// member given twice in one object).
    #[error("{0}")]
    MalformedJson(String),
    /// The body is JSON but not an object.
    #[error("the request body must be a JSON object")]
    NotAnObject,
}

impl NativeRequestError {
    /// The AWS error type (`__type`) an SDK maps to its exception class.
    #[must_use]
    pub const fn aws_type(&self) -> &'static str {
        match self {
            Self::UnknownTarget => "UnknownOperationException",
            Self::MalformedJson(_) | Self::NotAnObject => "SerializationException",
        }
    }
}

/// The operation an `X-Amz-Target` value names.
///
/// # Errors
/// [`NativeRequestError::UnknownTarget`] unless the value is the user-pool
/// prefix followed by an operation name (ASCII letters).
pub fn parse_target(value: &[u8]) -> Result<&str, NativeRequestError> {
    let value = std::str::from_utf8(value)
        .map_err(|_| NativeRequestError::UnknownTarget)?
        .trim();
    let operation = value
        .strip_prefix(TARGET_PREFIX)
        .ok_or(NativeRequestError::UnknownTarget)?;
    let named = !operation.is_empty()
        && operation.len() <= 64
        && operation.bytes().all(|b| b.is_ascii_alphabetic());
    if named {
        Ok(operation)
    } else {
        Err(NativeRequestError::UnknownTarget)
    }
}

/// Why a well-formed native request is passed through uncached.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum NotCacheable {
    /// An operation whose answers are never cached
    /// (`RespondToAuthChallenge`, `SignUp`, …).
    Operation,
    /// An `InitiateAuth` flow whose answers are never cached (`USER_AUTH`,
    /// `USER_SRP_AUTH`, `CUSTOM_AUTH`, …): challenges and SRP are
    /// single-use.
    AuthFlow,
    /// `UserContextData`: device data that changes per call and feeds
    /// adaptive authentication.
    UserContextData,
    /// A member the proxy does not know, whose effect on the answer it
    /// cannot judge.
    UnknownMember,
    /// A member missing or of the wrong type; Cognito answers it with its
    /// own error.
    Shape,
}

impl NotCacheable {
    /// A word for logs.
    #[must_use]
    pub const fn as_str(self) -> &'static str {
        match self {
            Self::Operation => "operation",
            Self::AuthFlow => "auth-flow",
            Self::UserContextData => "user-context-data",
            Self::UnknownMember => "unknown-member",
            Self::Shape => "shape",
        }
    }
}

/// A parsed native-API request.
#[derive(Debug)]
pub struct NativeRequest {
    operation: Box<str>,
    auth_flow: Option<Box<str>>,
    judged: Result<CanonicalNativeRequest, NotCacheable>,
}

impl NativeRequest {
    /// Parses the body of `operation` (see [`parse_target`]) strictly, and
    /// judges whether its answer may be cached.
    ///
    /// Cached: `InitiateAuth` with `USER_PASSWORD_AUTH`,
    /// `REFRESH_TOKEN_AUTH` or `REFRESH_TOKEN`, and `GetClientToken`, when
    /// every member is one the proxy knows, of the type Cognito takes.
    ///
    /// # Errors
    /// [`NativeRequestError`] when the body is not a strict JSON object.
    pub fn parse(operation: &str, body: &[u8]) -> Result<Self, NativeRequestError> {
        let value =
            json::parse(body).map_err(|error| NativeRequestError::MalformedJson(error.0))?;
        let Json::Object(members) = &value else {
            return Err(NativeRequestError::NotAnObject);
        };
        let auth_flow = members
            .get("AuthFlow")
            .and_then(Json::as_str)
            .map(|flow| flow.chars().take(64).collect::<String>().into_boxed_str());
        let judged = match operation {
            "InitiateAuth" => judge_initiate_auth(members),
            "GetClientToken" => judge_get_client_token(members),
            _ => Err(NotCacheable::Operation),
        }
        .map(|client_id| CanonicalNativeRequest::of(operation, client_id, &value));
        Ok(Self {
            operation: operation.into(),
            auth_flow,
            judged,
        })
    }

    /// The operation, such as `InitiateAuth`.
    #[must_use]
    pub fn operation(&self) -> &str {
        &self.operation
    }

    /// The `AuthFlow` member, when it is a string (for logs).
    #[must_use]
    pub fn auth_flow(&self) -> Option<&str> {
        self.auth_flow.as_deref()
    }

    /// The canonical request when the answer may be cached, or why not.
    ///
    /// # Errors
    /// [`NotCacheable`] for a request that must pass through.
    pub fn cacheable(&self) -> Result<&CanonicalNativeRequest, NotCacheable> {
        self.judged.as_ref().map_err(|reason| *reason)
    }
}

/// The client id of a cacheable `InitiateAuth`, or why it is not one.
fn judge_initiate_auth(members: &BTreeMap<String, Json>) -> Result<String, NotCacheable> {
    if members.contains_key("UserContextData") {
        return Err(NotCacheable::UserContextData);
    }
    let flow = members
        .get("AuthFlow")
        .and_then(Json::as_str)
        .ok_or(NotCacheable::Shape)?;
    if !CACHED_FLOWS.contains(&flow) {
        return Err(NotCacheable::AuthFlow);
    }
    if members
        .keys()
        .any(|name| !INITIATE_AUTH_MEMBERS.contains(&name.as_str()))
    {
        return Err(NotCacheable::UnknownMember);
    }
    let parameters = members
        .get("AuthParameters")
        .filter(|p| p.is_string_map())
        .and_then(Json::as_object)
        .ok_or(NotCacheable::Shape)?;
    let needed: &[&str] = if flow == "USER_PASSWORD_AUTH" {
        &["USERNAME", "PASSWORD"]
    } else {
        &["REFRESH_TOKEN"]
    };
    if !needed.iter().all(|name| parameters.contains_key(*name)) {
        return Err(NotCacheable::Shape);
    }
    if members
        .get("ClientMetadata")
        .is_some_and(|metadata| !metadata.is_string_map())
    {
        return Err(NotCacheable::Shape);
    }
    client_id(members)
}

/// The client id of a cacheable `GetClientToken`, or why it is not one.
fn judge_get_client_token(members: &BTreeMap<String, Json>) -> Result<String, NotCacheable> {
    if members
        .keys()
        .any(|name| !GET_CLIENT_TOKEN_MEMBERS.contains(&name.as_str()))
    {
        return Err(NotCacheable::UnknownMember);
    }
    let scopes_are_strings = match members.get("Scopes") {
        None => true,
        Some(Json::Array(scopes)) => scopes.iter().all(|s| s.as_str().is_some()),
        Some(_) => false,
    };
    let secret_is_string = members.get("Secret").is_none_or(|s| s.as_str().is_some());
    let metadata_is_map = members
        .get("ClientMetadata")
        .is_none_or(Json::is_string_map);
    if !(scopes_are_strings && secret_is_string && metadata_is_map) {
        return Err(NotCacheable::Shape);
    }
    client_id(members)
}

fn client_id(members: &BTreeMap<String, Json>) -> Result<String, NotCacheable> {
    members
        .get("ClientId")
        .and_then(Json::as_str)
        .filter(|id| !id.is_empty())
        .map(str::to_owned)
        .ok_or(NotCacheable::Shape)
}

/// A cacheable native request in its canonical form: what its cache key is
/// derived from and, byte for byte, what goes upstream.
///
/// The body holds passwords, refresh tokens or client secrets: `Debug`
/// does not show it, and it is wiped on drop.
pub struct CanonicalNativeRequest {
    operation: Box<str>,
    client_id: String,
    body: zeroize::Zeroizing<Vec<u8>>,
}

impl CanonicalNativeRequest {
    /// The canonical form of `value`: members sorted by name at every
    /// depth, no white space, and `GetClientToken`'s `Scopes` as a set
    /// (sorted, without repeats: their order carries no meaning).
    fn of(operation: &str, client_id: String, value: &Json) -> Self {
        let body = if operation == "GetClientToken" {
            json::canonical(&with_scope_set(value))
        } else {
            json::canonical(value)
        };
        Self {
            operation: operation.into(),
            client_id,
            body,
        }
    }

    /// The operation, such as `InitiateAuth`.
    #[must_use]
    pub fn operation(&self) -> &str {
        &self.operation
    }

    /// The `X-Amz-Target` value to send upstream.
    #[must_use]
    pub fn target(&self) -> String {
        format!("{TARGET_PREFIX}{}", self.operation)
    }

    /// The `ClientId`.
    #[must_use]
    pub fn client_id(&self) -> &str {
        &self.client_id
    }

    /// The canonical JSON body.
    #[must_use]
    pub fn body(&self) -> &[u8] {
        &self.body
    }
}

impl fmt::Debug for CanonicalNativeRequest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("CanonicalNativeRequest")
            .field("operation", &self.operation)
            .field("client_id", &self.client_id)
            .field("body", &"[redacted]")
            .finish()
    }
}

/// `value` with its `Scopes` array sorted and without repeats.
fn with_scope_set(value: &Json) -> Json {
    let mut value = value.clone();
    if let Json::Object(members) = &mut value
        && let Some(Json::Array(scopes)) = members.get_mut("Scopes")
    {
        scopes.sort_by(|a, b| a.as_str().cmp(&b.as_str()));
        scopes.dedup_by(|a, b| a.as_str() == b.as_str());
    }
    value
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(operation: &str, body: &str) -> NativeRequest {
        NativeRequest::parse(operation, body.as_bytes()).unwrap()
    }

    fn canonical(operation: &str, body: &str) -> String {
        let request = parse(operation, body);
        let canonical = request.cacheable().unwrap();
        String::from_utf8(canonical.body().to_vec()).unwrap()
    }

    #[test]
    fn targets() {
        assert_eq!(
            parse_target(b"AWSCognitoIdentityProviderService.InitiateAuth"),
            Ok("InitiateAuth")
        );
        for bad in [
            &b"InitiateAuth"[..],
            b"AWSCognitoIdentityService.GetId",
            b"AWSCognitoIdentityProviderService.",
            b"AWSCognitoIdentityProviderService.Initiate Auth",
            b"AWSCognitoIdentityProviderService.\xff",
        ] {
            assert_eq!(
                parse_target(bad),
                Err(NativeRequestError::UnknownTarget),
                "{bad:?}"
            );
        }
    }

    #[test]
    fn password_and_refresh_sign_ins_are_cacheable() {
        let body = r#"{"ClientId":"c","AuthFlow":"USER_PASSWORD_AUTH",
            "AuthParameters":{"USERNAME":"u","PASSWORD":"p","SECRET_HASH":"h"},
            "ClientMetadata":{"k":"v"},"AnalyticsMetadata":{"AnalyticsEndpointId":"e"}}"#;
        assert_eq!(
            canonical("InitiateAuth", body),
            r#"{"AnalyticsMetadata":{"AnalyticsEndpointId":"e"},"AuthFlow":"USER_PASSWORD_AUTH","AuthParameters":{"PASSWORD":"p","SECRET_HASH":"h","USERNAME":"u"},"ClientId":"c","ClientMetadata":{"k":"v"}}"#
        );
        let request = parse("InitiateAuth", body);
        assert_eq!(request.cacheable().unwrap().client_id(), "c");
        assert_eq!(request.auth_flow(), Some("USER_PASSWORD_AUTH"));
        for flow in ["REFRESH_TOKEN_AUTH", "REFRESH_TOKEN"] {
            let body = format!(
                r#"{{"ClientId":"c","AuthFlow":"{flow}","AuthParameters":{{"REFRESH_TOKEN":"r"}}}}"#
            );
            assert!(parse("InitiateAuth", &body).cacheable().is_ok(), "{flow}");
        }
    }

    #[test]
    fn what_passes_through() {
        let cases = [
            (
                "RespondToAuthChallenge",
                r#"{"ClientId":"c"}"#,
                NotCacheable::Operation,
            ),
            (
                "AdminInitiateAuth",
                r#"{"ClientId":"c"}"#,
                NotCacheable::Operation,
            ),
            (
                "InitiateAuth",
                r#"{"ClientId":"c","AuthFlow":"USER_SRP_AUTH","AuthParameters":{"USERNAME":"u","SRP_A":"a"}}"#,
                NotCacheable::AuthFlow,
            ),
            (
                "InitiateAuth",
                r#"{"ClientId":"c","AuthFlow":"USER_PASSWORD_AUTH","AuthParameters":{"USERNAME":"u","PASSWORD":"p"},"UserContextData":{"EncodedData":"x"}}"#,
                NotCacheable::UserContextData,
            ),
            (
                "InitiateAuth",
                r#"{"ClientId":"c","AuthFlow":"USER_PASSWORD_AUTH","AuthParameters":{"USERNAME":"u","PASSWORD":"p"},"Session":"s"}"#,
                NotCacheable::UnknownMember,
            ),
            (
                "InitiateAuth",
                r#"{"ClientId":"c","AuthFlow":"USER_PASSWORD_AUTH","AuthParameters":{"USERNAME":"u"}}"#,
                NotCacheable::Shape,
            ),
            (
                "InitiateAuth",
                r#"{"ClientId":"c","AuthFlow":"USER_PASSWORD_AUTH","AuthParameters":{"USERNAME":"u","PASSWORD":7}}"#,
                NotCacheable::Shape,
            ),
            (
                "InitiateAuth",
                r#"{"AuthFlow":"REFRESH_TOKEN_AUTH","AuthParameters":{"REFRESH_TOKEN":"r"}}"#,
                NotCacheable::Shape,
            ),
            ("InitiateAuth", r#"{"ClientId":"c"}"#, NotCacheable::Shape),
            (
                "GetClientToken",
                r#"{"ClientId":"c","Scopes":"a b"}"#,
                NotCacheable::Shape,
            ),
            (
                "GetClientToken",
                r#"{"ClientId":"c","GrantType":"x"}"#,
                NotCacheable::UnknownMember,
            ),
        ];
        for (operation, body, reason) in cases {
            assert_eq!(
                parse(operation, body).cacheable().unwrap_err(),
                reason,
                "{operation} {body}"
            );
        }
    }

    #[test]
    fn client_token_scopes_are_a_set() {
        assert_eq!(
            canonical(
                "GetClientToken",
                r#"{"Scopes":["b","a","b"],"Secret":"s","ClientId":"c"}"#
            ),
            r#"{"ClientId":"c","Scopes":["a","b"],"Secret":"s"}"#
        );
    }

    #[test]
    fn malformed_bodies_are_refused() {
        for (body, expected) in [
            ("[]", NativeRequestError::NotAnObject),
            ("\"x\"", NativeRequestError::NotAnObject),
        ] {
            assert_eq!(
                NativeRequest::parse("InitiateAuth", body.as_bytes()).unwrap_err(),
                expected
            );
        }
        for body in ["", "{", r#"{"ClientId":"a","ClientId":"b"}"#, "{} {}"] {
            let error = NativeRequest::parse("InitiateAuth", body.as_bytes()).unwrap_err();
            assert_eq!(error.aws_type(), "SerializationException", "{body}");
        }
    }

    #[test]
    fn debug_never_shows_a_secret() {
        let request = parse(
            "InitiateAuth",
            r#"{"ClientId":"c","AuthFlow":"USER_PASSWORD_AUTH","AuthParameters":{"USERNAME":"u","PASSWORD":"hunter2"}}"#,
        );
        let printed = format!("{request:?}");
        assert!(!printed.contains("hunter2"), "{printed}");
    }
}
