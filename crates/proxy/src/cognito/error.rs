//! Errors in the AWS JSON 1.1 shape: `{"__type","message"}` with the type
//! in `X-Amzn-ErrorType` as well, so every AWS SDK raises the exception
//! class it would for Cognito itself (boto3's
//! `client.exceptions.TooManyRequestsException`, the JS SDK's
//! `TooManyRequestsException`, the Rust SDK's modelled error variants).

use axum::body::Body;
use axum::response::Response;
use http::StatusCode;
use http::header::{self, HeaderName, HeaderValue};
use tokencache_core::cognito::NativeRequestError;
use tokencache_upstream::UpstreamResponse;

use crate::answer;
use crate::cache_status::{CacheStatus, NO_CACHE_HEADERS};
use crate::error::ProxyError;

/// The content type of the AWS JSON 1.1 protocol.
pub(crate) const CONTENT_TYPE: &str = "application/x-amz-json-1.1";

/// The header that names an AWS error's type.
const ERROR_TYPE: HeaderName = HeaderName::from_static("x-amzn-errortype");

/// Why the native route refused a request itself.
#[derive(Debug, thiserror::Error)]
pub(crate) enum NativeError {
    /// Not a request of the native API (an unknown `X-Amz-Target`), or a
    /// body that is not a strict JSON object.
    #[error(transparent)]
    Request(#[from] NativeRequestError),
    /// A SigV4-signed request (`Admin*` operations): its signature covers
    /// the host, so it cannot be forwarded.
    #[error(
        "tokencache does not forward SigV4-signed requests (the signature covers the host): \
         call Cognito directly for Admin* operations; GetClientToken is cached when sent unsigned"
    )]
    Signed,
    /// Anything the OAuth routes can fail with as well.
    #[error(transparent)]
    Proxy(#[from] ProxyError),
}

impl NativeError {
    /// The answer.
    pub(crate) fn into_response(self) -> Response {
        match self {
            Self::Request(error) => render(
                StatusCode::BAD_REQUEST,
                error.aws_type(),
                &error.to_string(),
                CacheStatus::Bypass,
            ),
            Self::Signed => render(
                StatusCode::BAD_REQUEST,
                "InvalidParameterException",
                &self.to_string(),
                CacheStatus::Bypass,
            ),
            Self::Proxy(error) => proxy_error(&error, CacheStatus::Bypass),
        }
    }
}

/// A proxy error in the AWS shape: the type an SDK retries or raises as
/// it would Cognito's, the status and `Retry-After` of the OAuth answer
/// (but a throttle's status is Cognito's, 400).
pub(crate) fn proxy_error(error: &ProxyError, cache_status: CacheStatus) -> Response {
    let status = match error {
        ProxyError::BudgetExhausted { .. } => StatusCode::BAD_REQUEST,
        other => other.status(),
    };
    let kind = match error {
        ProxyError::BudgetExhausted { .. } => "TooManyRequestsException",
        ProxyError::FailedAnswer(status) if *status == StatusCode::TOO_MANY_REQUESTS => {
            "TooManyRequestsException"
        }
        ProxyError::NotFound | ProxyError::MethodNotAllowed => "UnknownOperationException",
        _ if status.is_server_error() => "InternalErrorException",
        _ => "InvalidParameterException",
    };
    let message = match error {
        ProxyError::Upstream(upstream) => upstream.to_string(),
        other => other.to_string(),
    };
    let mut response = render(status, kind, &message, cache_status);
    if let ProxyError::BudgetExhausted { retry_after } | ProxyError::CircuitOpen { retry_after } =
        error
    {
        // Whole seconds, rounded up, as on the OAuth routes.
        let seconds = retry_after.as_millis().div_ceil(1000).max(1);
        let seconds = u64::try_from(seconds).unwrap_or(u64::MAX);
        response
            .headers_mut()
            .insert(header::RETRY_AFTER, HeaderValue::from(seconds));
    }
    response
}

/// The last failed answer once retries ran out: passed through when it is
/// an AWS error an SDK can read, otherwise replaced by one (keeping the
/// status and `Retry-After` of a throttle or 5xx).
pub(crate) fn failed(upstream: &UpstreamResponse, status: CacheStatus) -> Response {
    if aws_error_type(&upstream.body).is_some() {
        return answer::passed_through(upstream, status);
    }
    let mut response = proxy_error(&ProxyError::FailedAnswer(upstream.status), status);
    if let Some(retry_after) = upstream.headers.get(header::RETRY_AFTER) {
        response
            .headers_mut()
            .insert(header::RETRY_AFTER, retry_after.clone());
    }
    response
}

/// The `__type` of an AWS JSON error body.
fn aws_error_type(body: &[u8]) -> Option<String> {
    #[derive(serde::Deserialize)]
    struct ErrorBody {
        #[serde(rename = "__type")]
        kind: String,
    }
    serde_json::from_slice::<ErrorBody>(body)
        .ok()
        .map(|body| body.kind)
}

fn render(status: StatusCode, kind: &'static str, message: &str, cache: CacheStatus) -> Response {
    let body = serde_json::json!({ "__type": kind, "message": message });
    let mut response = Response::new(Body::from(body.to_string()));
    *response.status_mut() = status;
    let headers = response.headers_mut();
    headers.insert(header::CONTENT_TYPE, HeaderValue::from_static(CONTENT_TYPE));
    headers.insert(ERROR_TYPE, HeaderValue::from_static(kind));
    for (name, value) in NO_CACHE_HEADERS {
        headers.insert(name, value);
    }
    headers.insert(cache.header_name(), cache.header_value());
    response
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use bytes::Bytes;
    use http::HeaderMap;
    use http_body_util::BodyExt as _;

    use super::*;

    async fn read(response: Response) -> (StatusCode, HeaderMap, serde_json::Value) {
        let (parts, body) = response.into_parts();
        let bytes = body.collect().await.unwrap().to_bytes();
        (
            parts.status,
            parts.headers,
            serde_json::from_slice(&bytes).unwrap(),
        )
    }

    #[tokio::test]
    async fn errors_have_the_aws_shape() {
        let cases: Vec<(Response, StatusCode, &str)> = vec![
            (
                NativeError::Request(NativeRequestError::UnknownTarget).into_response(),
                StatusCode::BAD_REQUEST,
                "UnknownOperationException",
            ),
            (
                NativeError::Request(NativeRequestError::NotAnObject).into_response(),
                StatusCode::BAD_REQUEST,
                "SerializationException",
            ),
            (
                NativeError::Signed.into_response(),
                StatusCode::BAD_REQUEST,
                "InvalidParameterException",
            ),
            (
                proxy_error(
                    &ProxyError::BudgetExhausted {
                        retry_after: Duration::from_millis(1_200),
                    },
                    CacheStatus::MissUncacheable,
                ),
                StatusCode::BAD_REQUEST,
                "TooManyRequestsException",
            ),
            (
                proxy_error(&ProxyError::Internal, CacheStatus::Bypass),
                StatusCode::INTERNAL_SERVER_ERROR,
                "InternalErrorException",
            ),
            (
                proxy_error(&ProxyError::BodyTooLarge(16), CacheStatus::Bypass),
                StatusCode::PAYLOAD_TOO_LARGE,
                "InvalidParameterException",
            ),
        ];
        for (response, status, kind) in cases {
            let (got_status, headers, body) = read(response).await;
            assert_eq!(got_status, status, "{kind}");
            assert_eq!(body["__type"], kind);
            assert!(body["message"].as_str().is_some_and(|m| !m.is_empty()));
            assert_eq!(headers["x-amzn-errortype"], kind);
            assert_eq!(headers[header::CONTENT_TYPE], CONTENT_TYPE);
            assert_eq!(headers[header::CACHE_CONTROL], "no-store");
            if kind == "TooManyRequestsException" {
                assert_eq!(headers[header::RETRY_AFTER], "2");
            }
        }
    }

    #[tokio::test]
    async fn an_aws_error_passes_through_and_anything_else_is_replaced() {
        let upstream = |status: u16, body: &'static str| UpstreamResponse {
            status: StatusCode::from_u16(status).unwrap(),
            headers: HeaderMap::new(),
            body: Bytes::from_static(body.as_bytes()),
        };
        let (status, _, body) = read(failed(
            &upstream(
                400,
                r#"{"__type":"TooManyRequestsException","message":"Rate exceeded"}"#,
            ),
            CacheStatus::MissUncacheable,
        ))
        .await;
        assert_eq!(status, StatusCode::BAD_REQUEST);
        assert_eq!(body["message"], "Rate exceeded");
        let (status, headers, body) = read(failed(
            &upstream(503, "<html>"),
            CacheStatus::MissUncacheable,
        ))
        .await;
        assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE);
        assert_eq!(body["__type"], "InternalErrorException");
        assert_eq!(headers["x-amzn-errortype"], "InternalErrorException");
        let (status, _, body) = read(failed(
            &upstream(429, "slow down"),
            CacheStatus::MissUncacheable,
        ))
        .await;
        assert_eq!(status, StatusCode::TOO_MANY_REQUESTS);
        assert_eq!(body["__type"], "TooManyRequestsException");
    }
}
