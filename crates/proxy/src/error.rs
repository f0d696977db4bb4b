//! Every way a request can fail, as an RFC 6749 error answer.

use std::time::Duration;

use axum::response::{IntoResponse, Response};
use http::{HeaderValue, StatusCode, header};
use tokencache_core::RequestError;
use tokencache_upstream::{FetchError, UpstreamError};

use crate::cache_status::{CacheStatus, NO_CACHE_HEADERS};

/// Why the proxy answered with an error of its own (an upstream's error
/// answer is passed through instead, and is not a `ProxyError`).
#[derive(Debug, Clone, thiserror::Error)]
#[non_exhaustive]
pub enum ProxyError {
    /// The request is malformed.
    #[error(transparent)]
    InvalidRequest(#[from] RequestError),
    /// The body is larger than the limit.
    #[error("request body is larger than {0} bytes")]
    BodyTooLarge(usize),
    /// The request has more headers than the limit.
    #[error("more than {0} request headers")]
    TooManyHeaders(usize),
    /// The body could not be read (the client went away mid-body).
    #[error("request body could not be read")]
    BodyUnreadable,
    /// No route at this path.
    #[error("no token endpoint at this path")]
    NotFound,
    /// The path is a token endpoint but the method is not `POST`.
    #[error("the token endpoint accepts only POST")]
    MethodNotAllowed,
    /// The upstream could not be reached, or its answer could not be read.
    #[error("the token endpoint could not be reached")]
    Upstream(#[source] std::sync::Arc<UpstreamError>),
    /// The request budget had no slot before the caller's deadline.
    #[error("too many token requests to the identity provider; retry later")]
    BudgetExhausted {
        /// When a slot could be free.
        retry_after: Duration,
    },
    /// The circuit breaker is open: the upstream has been failing.
    #[error("the token endpoint is failing; retry later")]
    CircuitOpen {
        /// When the breaker lets a probe through.
        retry_after: Duration,
    },
    /// The upstream kept answering with failures (throttles, 5xx, bodies
    /// that are not tokens) and its last answer is not an OAuth error.
    #[error("the token endpoint answered {0}")]
    FailedAnswer(StatusCode),
    /// The request took longer than the request timeout (a client sending
    /// its body too slowly, say).
    #[error("the request took too long")]
    RequestTimeout,
    /// A bug: a fetch task panicked. Logged; the caller sees a 500.
    #[error("internal error")]
    Internal,
}

impl ProxyError {
    /// The error for a fetch that produced no answer.
    pub(crate) fn from_fetch(error: FetchError) -> Self {
        match error {
            FetchError::BudgetExhausted { retry_after } => Self::BudgetExhausted { retry_after },
            FetchError::CircuitOpen { retry_after } => Self::CircuitOpen { retry_after },
            FetchError::Upstream(error) => Self::Upstream(std::sync::Arc::new(error)),
            // FetchError is non-exhaustive; anything new is an upstream failure.
            other => Self::Upstream(std::sync::Arc::new(UpstreamError::Transport(other.into()))),
        }
    }

    /// The status of the answer.
    #[must_use]
    pub fn status(&self) -> StatusCode {
        match self {
            Self::InvalidRequest(_) | Self::BodyUnreadable => StatusCode::BAD_REQUEST,
            Self::BodyTooLarge(_) => StatusCode::PAYLOAD_TOO_LARGE,
            Self::TooManyHeaders(_) => StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE,
            Self::NotFound => StatusCode::NOT_FOUND,
            Self::RequestTimeout => StatusCode::REQUEST_TIMEOUT,
            Self::MethodNotAllowed => StatusCode::METHOD_NOT_ALLOWED,
            Self::Upstream(error) if error.is_timeout() => StatusCode::GATEWAY_TIMEOUT,
            Self::Upstream(_) => StatusCode::BAD_GATEWAY,
            Self::BudgetExhausted { .. } | Self::CircuitOpen { .. } => {
                StatusCode::SERVICE_UNAVAILABLE
            }
            // A throttle or 5xx keeps its status; a 200 that is not a token
            // is the gateway's problem.
            Self::FailedAnswer(status) if status.is_client_error() || status.is_server_error() => {
                *status
            }
            Self::FailedAnswer(_) => StatusCode::BAD_GATEWAY,
            Self::Internal => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }

    /// The RFC 6749 `error` code.
    #[must_use]
    pub fn code(&self) -> &'static str {
        match self {
            // Clients treat this code as "try again later".
            Self::Upstream(_)
            | Self::BudgetExhausted { .. }
            | Self::CircuitOpen { .. }
            | Self::FailedAnswer(_) => "temporarily_unavailable",
            Self::Internal => "server_error",
            _ => "invalid_request",
        }
    }

    /// The answer, with how the cache took part.
    pub(crate) fn into_response_with(self, cache_status: CacheStatus) -> Response {
        let description = match &self {
            Self::Upstream(error) => error.to_string(),
            other => other.to_string(),
        };
        let body = serde_json::json!({
            "error": self.code(),
            "error_description": description,
        });
        let mut response = (self.status(), axum::Json(body)).into_response();
        let headers = response.headers_mut();
        for (name, value) in NO_CACHE_HEADERS {
            headers.insert(name, value);
        }
        if matches!(self, Self::MethodNotAllowed) {
            headers.insert(header::ALLOW, HeaderValue::from_static("POST"));
        }
        if let Self::BudgetExhausted { retry_after } | Self::CircuitOpen { retry_after } = &self {
            // Whole seconds, rounded up: never tell a client to come back
            // before the slot or the probe.
            let seconds = retry_after.as_millis().div_ceil(1000).max(1);
            let seconds = u64::try_from(seconds).unwrap_or(u64::MAX);
            headers.insert(header::RETRY_AFTER, HeaderValue::from(seconds));
        }
        headers.insert(cache_status.header_name(), cache_status.header_value());
        response
    }
}

impl IntoResponse for ProxyError {
    fn into_response(self) -> Response {
        self.into_response_with(CacheStatus::Bypass)
    }
}
