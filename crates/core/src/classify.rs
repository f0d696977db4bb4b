//! What an upstream answer means for retries and caching.

/// The kind of a token endpoint's answer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum AnswerClass {
    /// 200: a token answer (cached if it parses as one).
    Success,
    /// Throttled: 429, or Cognito's throttling answer (a 400 whose body
    /// names `TooManyRequestsException` or `too_many_requests`). Retried
    /// after a backoff.
    Throttled,
    /// 5xx: retried after a backoff.
    ServerError,
    /// The client itself was refused (`invalid_client`, `invalid_scope`,
    /// `unauthorized_client`): asking again with the same credentials and
    /// parameters gets the same answer, so it may be remembered briefly.
    ClientRejected,
    /// Anything else: passed through, not retried, not remembered.
    Other,
}

impl AnswerClass {
    /// Classifies an answer by its status and body.
    #[must_use]
    pub fn of(status: u16, body: &[u8]) -> Self {
        match status {
            200 => Self::Success,
            429 => Self::Throttled,
            500..=599 => Self::ServerError,
            400 | 401 | 403 if names_throttling(body) => Self::Throttled,
            400 | 401 => match oauth_error_code(body).as_deref() {
                Some("invalid_client" | "invalid_scope" | "unauthorized_client") => {
                    Self::ClientRejected
                }
                _ => match aws_error_type(body).as_deref() {
                    // Cognito's native API: wrong credentials, no such user.
                    Some("NotAuthorizedException" | "UserNotFoundException") => {
                        Self::ClientRejected
                    }
                    _ => Self::Other,
                },
            },
            _ => Self::Other,
        }
    }

    /// Whether the same request may succeed if sent again later.
    #[must_use]
    pub const fn is_retryable(self) -> bool {
        matches!(self, Self::Throttled | Self::ServerError)
    }
}

fn names_throttling(body: &[u8]) -> bool {
    contains(body, b"TooManyRequestsException") || contains(body, b"too_many_requests")
}

fn contains(haystack: &[u8], needle: &[u8]) -> bool {
    haystack
        .windows(needle.len())
        .any(|window| window == needle)
}

/// The `__type` of an AWS JSON error body, without a namespace
/// (`com.amazonaws…#NotAuthorizedException` is `NotAuthorizedException`).
fn aws_error_type(body: &[u8]) -> Option<String> {
    #[derive(serde::Deserialize)]
    struct ErrorBody {
        #[serde(rename = "__type")]
        kind: String,
    }
    let kind = serde_json::from_slice::<ErrorBody>(body).ok()?.kind;
    Some(kind.rsplit('#').next().unwrap_or_default().to_owned())
}

/// The `error` member of an RFC 6749 error body.
fn oauth_error_code(body: &[u8]) -> Option<String> {
    #[derive(serde::Deserialize)]
    struct ErrorBody {
        error: String,
    }
    serde_json::from_slice::<ErrorBody>(body)
        .ok()
        .map(|body| body.error)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn classes() {
        let cases: [(u16, &str, AnswerClass); 11] = [
            (200, "{}", AnswerClass::Success),
            (429, "", AnswerClass::Throttled),
            (
                400,
                r#"{"error":"TooManyRequestsException"}"#,
                AnswerClass::Throttled,
            ),
            (
                400,
                r#"{"__type":"TooManyRequestsException","message":"Rate exceeded"}"#,
                AnswerClass::Throttled,
            ),
            (
                400,
                r#"{"error":"too_many_requests"}"#,
                AnswerClass::Throttled,
            ),
            (503, "busy", AnswerClass::ServerError),
            (500, "", AnswerClass::ServerError),
            (
                400,
                r#"{"error":"invalid_client"}"#,
                AnswerClass::ClientRejected,
            ),
            (
                401,
                r#"{"error":"invalid_client","error_description":"x"}"#,
                AnswerClass::ClientRejected,
            ),
            (400, r#"{"error":"invalid_grant"}"#, AnswerClass::Other),
            (404, "", AnswerClass::Other),
        ];
        for (status, body, expected) in cases {
            assert_eq!(
                AnswerClass::of(status, body.as_bytes()),
                expected,
                "{status} {body}"
            );
        }
        assert_eq!(
            AnswerClass::of(400, br#"{"error":"invalid_scope"}"#),
            AnswerClass::ClientRejected
        );
        assert_eq!(
            AnswerClass::of(400, br#"{"error":"unauthorized_client"}"#),
            AnswerClass::ClientRejected
        );
        for kind in [
            "NotAuthorizedException",
            "UserNotFoundException",
            "x.y#NotAuthorizedException",
        ] {
            let body = format!(r#"{{"__type":"{kind}","message":"m"}}"#);
            assert_eq!(
                AnswerClass::of(400, body.as_bytes()),
                AnswerClass::ClientRejected,
                "{kind}"
            );
        }
        assert_eq!(
            AnswerClass::of(400, br#"{"__type":"InvalidParameterException"}"#),
            AnswerClass::Other
        );
        assert!(AnswerClass::Throttled.is_retryable());
        assert!(AnswerClass::ServerError.is_retryable());
        assert!(!AnswerClass::ClientRejected.is_retryable());
    }
}
