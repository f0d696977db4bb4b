//! The protocol a route speaks, which decides how the answers the proxy
//! writes itself look: OAuth 2.0 (RFC 6749 JSON) or the AWS JSON 1.1
//! protocol of Cognito's native API. Answers passed through from the
//! upstream are the upstream's whatever the dialect.

use axum::response::Response;
use http::header::{self, HeaderValue};
use tokencache_upstream::UpstreamResponse;

use crate::answer;
use crate::cache_status::CacheStatus;
use crate::cognito::error as aws;
use crate::error::ProxyError;

/// How a route writes its own answers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Dialect {
    /// RFC 6749: `application/json`, `{"error","error_description"}`.
    OAuth,
    /// AWS JSON 1.1: `application/x-amz-json-1.1`, `{"__type","message"}`
    /// and `X-Amzn-ErrorType`, so an AWS SDK raises the right exception.
    AwsJson,
}

impl Dialect {
    /// A token answer rendered from the cache, with this dialect's
    /// content type.
    pub(crate) fn token(self, mut response: Response) -> Response {
        if self == Self::AwsJson {
            response.headers_mut().insert(
                header::CONTENT_TYPE,
                HeaderValue::from_static(aws::CONTENT_TYPE),
            );
        }
        response
    }

    /// The last failed answer once retries ran out: passed through when
    /// the caller can read it as an error of this dialect, otherwise
    /// replaced by one (keeping the status and `Retry-After`).
    pub(crate) fn failed(self, upstream: &UpstreamResponse, status: CacheStatus) -> Response {
        match self {
            Self::OAuth => answer::failed(upstream, status),
            Self::AwsJson => aws::failed(upstream, status),
        }
    }

    /// An error of the proxy's own.
    pub(crate) fn error(self, error: ProxyError, status: CacheStatus) -> Response {
        match self {
            Self::OAuth => error.into_response_with(status),
            Self::AwsJson => aws::proxy_error(&error, status),
        }
    }
}
