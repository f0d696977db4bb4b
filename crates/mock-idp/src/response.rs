//! How the mock IdP answers: JSON bodies with Cognito's headers, and RFC 6749
//! error bodies.

use std::borrow::Cow;

use axum::http::header::{CACHE_CONTROL, CONTENT_TYPE, PRAGMA};
use axum::http::{HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use serde::Serialize;

/// The content type of every JSON answer, spelt as Cognito spells it.
pub(crate) const JSON_CONTENT_TYPE: &str = "application/json;charset=UTF-8";

/// A JSON answer with `status`.
pub(crate) fn json_response(status: StatusCode, body: &impl Serialize) -> Response {
    match serde_json::to_vec(body) {
        Ok(bytes) => (
            status,
            [(CONTENT_TYPE, HeaderValue::from_static(JSON_CONTENT_TYPE))],
            bytes,
        )
            .into_response(),
        // Our bodies are plain structs and maps with string keys, which always
        // serialise; answer 500 rather than panic should that ever change.
        Err(err) => {
            tracing::error!(error = %err, "cannot serialise a response body");
            OAuthError::server_error().into_response()
        }
    }
}

/// Middleware: marks every answer uncacheable, as RFC 6749 §5.1 asks of token
/// responses and as Cognito does for all of its answers.
pub(crate) async fn no_store(mut response: Response) -> Response {
    let headers = response.headers_mut();
    headers.insert(CACHE_CONTROL, HeaderValue::from_static("no-store"));
    headers.insert(PRAGMA, HeaderValue::from_static("no-cache"));
    response
}

/// An OAuth 2.0 error answer: `{"error":"...","error_description":"..."}`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct OAuthError {
    pub(crate) status: StatusCode,
    pub(crate) error: &'static str,
    pub(crate) description: Option<Cow<'static, str>>,
}

#[derive(Serialize)]
struct ErrorBody<'a> {
    error: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    error_description: Option<&'a str>,
}

impl OAuthError {
    fn new(
        status: StatusCode,
        error: &'static str,
        description: impl Into<Cow<'static, str>>,
    ) -> Self {
        Self {
            status,
            error,
            description: Some(description.into()),
        }
    }

    /// A malformed request: 400 `invalid_request`.
    pub(crate) fn invalid_request(description: impl Into<Cow<'static, str>>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, "invalid_request", description)
    }

    /// Client authentication failed: 400 `invalid_client`. Cognito answers
    /// 400, not the 401 that RFC 6749 suggests for Basic authentication.
    pub(crate) fn invalid_client(description: impl Into<Cow<'static, str>>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, "invalid_client", description)
    }

    /// A code or refresh token that is unknown, used or not this client's:
    /// 400 `invalid_grant`.
    pub(crate) fn invalid_grant(description: impl Into<Cow<'static, str>>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, "invalid_grant", description)
    }

    /// A scope the client may not have: 400 `invalid_scope`.
    pub(crate) fn invalid_scope(description: impl Into<Cow<'static, str>>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, "invalid_scope", description)
    }

    /// A grant type this IdP does not support: 400 `unsupported_grant_type`.
    pub(crate) fn unsupported_grant_type(description: impl Into<Cow<'static, str>>) -> Self {
        Self::new(
            StatusCode::BAD_REQUEST,
            "unsupported_grant_type",
            description,
        )
    }

    /// No such path: 404.
    pub(crate) fn not_found() -> Self {
        Self::new(StatusCode::NOT_FOUND, "not_found", "no such endpoint")
    }

    /// A path that exists, asked with the wrong method: 405.
    pub(crate) fn method_not_allowed() -> Self {
        Self::new(
            StatusCode::METHOD_NOT_ALLOWED,
            "method_not_allowed",
            "this endpoint does not accept that method",
        )
    }

    /// Over the rate limit, HTTP's way: 429 `too_many_requests`. The caller
    /// adds `Retry-After`.
    pub(crate) fn too_many_requests() -> Self {
        Self::new(
            StatusCode::TOO_MANY_REQUESTS,
            "too_many_requests",
            "Rate exceeded",
        )
    }

    /// Over the rate limit, the way some of Cognito's throttles look: 400
    /// `TooManyRequestsException`.
    pub(crate) fn cognito_throttle() -> Self {
        Self::new(
            StatusCode::BAD_REQUEST,
            "TooManyRequestsException",
            "Rate exceeded",
        )
    }

    /// A failure of the IdP itself: 500 `server_error`, without detail.
    pub(crate) fn server_error() -> Self {
        Self {
            status: StatusCode::INTERNAL_SERVER_ERROR,
            error: "server_error",
            description: None,
        }
    }
}

impl IntoResponse for OAuthError {
    fn into_response(self) -> Response {
        let body = ErrorBody {
            error: self.error,
            error_description: self.description.as_deref(),
        };
        match serde_json::to_vec(&body) {
            Ok(bytes) => (
                self.status,
                [(CONTENT_TYPE, HeaderValue::from_static(JSON_CONTENT_TYPE))],
                bytes,
            )
                .into_response(),
            // Two strings always serialise; stay total all the same.
            Err(_) => StatusCode::INTERNAL_SERVER_ERROR.into_response(),
        }
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn error_body_and_headers() {
        let response = OAuthError::invalid_scope("nope").into_response();
        assert_eq!(response.status(), StatusCode::BAD_REQUEST);
        assert_eq!(response.headers()[CONTENT_TYPE], JSON_CONTENT_TYPE);
        let body = axum::body::to_bytes(response.into_body(), usize::MAX)
            .await
            .unwrap();
        assert_eq!(
            &body[..],
            br#"{"error":"invalid_scope","error_description":"nope"}"#
        );
    }

    #[tokio::test]
    async fn description_is_optional() {
        let response = OAuthError::server_error().into_response();
        let body = axum::body::to_bytes(response.into_body(), usize::MAX)
            .await
            .unwrap();
        assert_eq!(&body[..], br#"{"error":"server_error"}"#);
    }
}
