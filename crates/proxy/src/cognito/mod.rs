//! Cognito's native API on the token listener: `POST /` with an
//! `X-Amz-Target` (AWS JSON 1.1), so that every AWS SDK pointed at the
//! proxy (`AWS_ENDPOINT_URL_COGNITO_IDENTITY_PROVIDER`) gets cached
//! tokens.
//!
//! A request is parsed strictly ([`NativeRequest`]); a cacheable one
//! (`InitiateAuth` with `USER_PASSWORD_AUTH` or `REFRESH_TOKEN_AUTH`,
//! `GetClientToken`) is keyed over its canonical body and served by the
//! same machinery as the OAuth routes ([`Route::serve_keyed`]: hit path,
//! negative cache, refresh ahead, one load per key, the shared tier), with
//! that canonical body as the upstream request. Any other unsigned
//! operation passes through unchanged; a signed one is refused, since its
//! signature covers the host.

pub(crate) mod error;

use axum::response::Response;
use bytes::Bytes;
use http::header::{AUTHORIZATION, CONTENT_TYPE};
use http::{HeaderMap, HeaderName, HeaderValue, Method};
use tokencache_core::KeyDeriver;
use tokencache_core::cognito::{
    CanonicalNativeRequest, NativeRequest, NativeRequestError, parse_target,
};
use tokencache_upstream::FetchRequest;

use self::error::NativeError;
use crate::error::ProxyError;
use crate::loader::Forward;
use crate::metrics::{Outcome, ProxyMetrics};
use crate::route::{Answered, RequestLimits, Route, read_body, single_header};

/// The header that names the operation.
pub(crate) static X_AMZ_TARGET: HeaderName = HeaderName::from_static("x-amz-target");

/// The name the native route goes by in logs, metrics and cache keys.
pub(crate) const NAME: &str = "cognito-idp";

/// The native API's route.
pub(crate) struct CognitoRoute {
    route: Route,
    deriver: KeyDeriver,
    metrics: ProxyMetrics,
}

impl CognitoRoute {
    /// The native route over `route` (its endpoint, cache and loader),
    /// keying requests with `deriver`.
    pub(crate) fn new(route: Route, deriver: KeyDeriver, metrics: ProxyMetrics) -> Self {
        Self {
            route,
            deriver,
            metrics,
        }
    }

    /// Answers a native-API request; every refusal is an AWS-shaped error.
    pub(crate) async fn answer<B>(
        &self,
        request: http::Request<B>,
        limits: RequestLimits,
    ) -> Response
    where
        B: http_body::Body<Data = Bytes> + Send + Unpin,
    {
        let started = tokio::time::Instant::now();
        self.answer_native(request, limits)
            .await
            .unwrap_or_else(|error| {
                if matches!(error, NativeError::Proxy(ProxyError::Internal)) {
                    tracing::error!(route = NAME, "internal error answering a native request");
                } else {
                    tracing::debug!(route = NAME, %error, "native request rejected");
                }
                Answered::new(error.into_response(), Outcome::Error)
            })
            .counted(&self.metrics, started)
    }

    async fn answer_native<B>(
        &self,
        request: http::Request<B>,
        limits: RequestLimits,
    ) -> Result<Answered, NativeError>
    where
        B: http_body::Body<Data = Bytes> + Send + Unpin,
    {
        let (parts, body) = request.into_parts();
        if parts.method != Method::POST {
            return Err(ProxyError::MethodNotAllowed.into());
        }
        if is_signed(&parts.headers, parts.uri.query()) {
            return Err(NativeError::Signed);
        }
        let target = single_header(&parts.headers, &X_AMZ_TARGET)?
            .ok_or(NativeRequestError::UnknownTarget)?;
        let operation = parse_target(target)?;
        let body = read_body(body, &parts.headers, limits).await?;
        let request = NativeRequest::parse(operation, &body)?;
        let is_json = single_header(&parts.headers, &CONTENT_TYPE)?.is_some_and(is_aws_json);
        let canonical = match request.cacheable() {
            Ok(canonical) if is_json => canonical,
            judged => {
                tracing::debug!(
                    route = NAME,
                    operation,
                    auth_flow = request.auth_flow().unwrap_or(""),
                    reason = judged.err().map_or("content-type", |r| r.as_str()),
                    "native request passed through uncached"
                );
                drop(request);
                return Ok(self
                    .route
                    .bypass(parts.uri.query(), &parts.headers, body)
                    .await?);
            }
        };
        let key = self.deriver.derive_native(NAME, canonical);
        Ok(self.route.serve_keyed(key, || forward(canonical)).await?)
    }
}

/// The upstream request of a cacheable load: the canonical body, byte for
/// byte what was keyed, with the proxy's own headers only.
fn forward(canonical: &CanonicalNativeRequest) -> Result<Forward, ProxyError> {
    // The target is the fixed prefix and an operation of ASCII letters.
    let target = HeaderValue::from_str(&canonical.target()).map_err(|_| ProxyError::Internal)?;
    Ok(Forward {
        request: FetchRequest::aws_json(target, Bytes::copy_from_slice(canonical.body())),
        client_id: Some(canonical.client_id().to_owned()),
    })
}

/// Whether a request carries a signature or credentials: SigV4 in a
/// header (`Authorization`, `X-Amz-Security-Token`) or in the query
/// string (a presigned URL).
fn is_signed(headers: &HeaderMap, query: Option<&str>) -> bool {
    headers.contains_key(AUTHORIZATION)
        || headers.contains_key("x-amz-security-token")
        || query.is_some_and(|query| {
            query
                .split('&')
                .any(|pair| pair.to_ascii_lowercase().starts_with("x-amz-signature="))
        })
}

/// Whether a `Content-Type` is the AWS JSON 1.1 protocol's, ignoring case,
/// space and parameters.
fn is_aws_json(value: &[u8]) -> bool {
    let essence = value.split(|&b| b == b';').next().unwrap_or_default();
    essence
        .trim_ascii()
        .eq_ignore_ascii_case(error::CONTENT_TYPE.as_bytes())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn signed_requests_are_recognised() {
        let mut headers = HeaderMap::new();
        assert!(!is_signed(&headers, None));
        assert!(!is_signed(&headers, Some("a=b")));
        assert!(is_signed(&headers, Some("a=b&X-Amz-Signature=abc")));
        headers.insert(
            AUTHORIZATION,
            HeaderValue::from_static("AWS4-HMAC-SHA256 Credential=x"),
        );
        assert!(is_signed(&headers, None));
        let mut token = HeaderMap::new();
        token.insert("x-amz-security-token", HeaderValue::from_static("t"));
        assert!(is_signed(&token, None));
    }

    #[test]
    fn content_types() {
        assert!(is_aws_json(b"application/x-amz-json-1.1"));
        assert!(is_aws_json(b" Application/X-Amz-Json-1.1 ; charset=utf-8"));
        assert!(!is_aws_json(b"application/json"));
        assert!(!is_aws_json(b"application/x-amz-json-1.0"));
    }
}
