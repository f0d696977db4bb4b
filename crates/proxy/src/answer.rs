//! Rendering answers: from the cache, passed through, and the headers that
//! say how the cache took part.

use std::fmt::Write as _;

use std::sync::Arc;

use axum::body::Body;
use axum::response::Response;
use bytes::Bytes;
use http::StatusCode;
use http::header::{self, HeaderName, HeaderValue};
use tokencache_core::{CachedToken, UnixMillis};
use tokencache_upstream::UpstreamResponse;

use crate::error::ProxyError;

/// RFC 6749 §5.1: token answers must not be cached by anything downstream.
pub(crate) const NO_CACHE_HEADERS: [(HeaderName, HeaderValue); 2] = [
    (header::CACHE_CONTROL, HeaderValue::from_static("no-store")),
    (header::PRAGMA, HeaderValue::from_static("no-cache")),
];

const JSON: HeaderValue = HeaderValue::from_static("application/json;charset=UTF-8");

/// How the cache took part in an answer, for the RFC 9211 `Cache-Status`
/// header.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum CacheStatus {
    /// Answered from cache; `ttl` seconds of service left.
    Hit { ttl: u64 },
    /// Answered from cache while a refresh runs in the background.
    HitRefreshing { ttl: u64 },
    /// Fetched upstream for this caller and stored.
    MissStored,
    /// Waited for another caller's fetch of the same key.
    Collapsed,
    /// Fetched upstream for this caller; the answer could not be cached.
    MissUncacheable,
    /// Waited for another caller's fetch, whose answer could not be cached.
    CollapsedUncacheable,
    /// Fetched upstream without trying the cache (not a cacheable request).
    Bypass,
    /// A remembered rejection of these credentials (negative cache).
    NegativeHit,
    /// Read from the shared tier (fetched by another replica, or by this
    /// one before the memory tier let it go).
    SharedHit { ttl: u64 },
}

impl CacheStatus {
    pub(crate) fn header_name(self) -> HeaderName {
        HeaderName::from_static("cache-status")
    }

    pub(crate) fn header_value(self) -> HeaderValue {
        match self {
            Self::Hit { ttl } => crate::seconds::hit(ttl)
                .unwrap_or_else(|| ttl_value("tokencache; hit; ttl=", ttl, "")),
            Self::HitRefreshing { ttl } => {
                ttl_value("tokencache; hit; ttl=", ttl, "; detail=refreshing")
            }
            Self::MissStored => HeaderValue::from_static("tokencache; fwd=miss; stored"),
            Self::Collapsed => HeaderValue::from_static("tokencache; fwd=miss; collapsed"),
            Self::MissUncacheable => {
                HeaderValue::from_static("tokencache; fwd=miss; detail=uncacheable")
            }
            Self::CollapsedUncacheable => {
                HeaderValue::from_static("tokencache; fwd=miss; collapsed; detail=uncacheable")
            }
            Self::Bypass => HeaderValue::from_static("tokencache; fwd=bypass"),
            Self::NegativeHit => HeaderValue::from_static("tokencache; hit; detail=negative"),
            Self::SharedHit { ttl } => ttl_value("tokencache; hit; ttl=", ttl, "; detail=shared"),
        }
    }
}

fn ttl_value(prefix: &str, ttl: u64, suffix: &str) -> HeaderValue {
    let mut text = String::with_capacity(prefix.len() + 20 + suffix.len());
    text.push_str(prefix);
    // Writing to a String cannot fail.
    let _ = write!(text, "{ttl}");
    text.push_str(suffix);
    HeaderValue::try_from(text).unwrap_or_else(|_| HeaderValue::from_static("tokencache; hit"))
}

/// A cached token as a 200 answer at `now`: the upstream's JSON with the
/// remaining `expires_in`, and `Age`.
pub(crate) fn cached(token: &CachedToken, now: UnixMillis, status: CacheStatus) -> Response {
    cached_body(token, Bytes::from(token.render_body(now)), now, status)
}

/// A freshly fetched token, with its body rendered once for every caller
/// that waited for it (they are answered in the same instant; rendering
/// once keeps a burst of waiters cheap).
#[derive(Debug)]
pub(crate) struct Fetched {
    pub(crate) token: Arc<CachedToken>,
    expires_in: u64,
    body: Bytes,
}

impl Fetched {
    pub(crate) fn new(token: Arc<CachedToken>, now: UnixMillis) -> Self {
        Self {
            expires_in: token.expires_in(now),
            body: Bytes::from(token.render_body(now)),
            token,
        }
    }

    /// The answer at `now`: the shared body while `expires_in` is unchanged.
    pub(crate) fn answer(&self, now: UnixMillis, status: CacheStatus) -> Response {
        if self.token.expires_in(now) == self.expires_in {
            cached_body(&self.token, self.body.clone(), now, status)
        } else {
            cached(&self.token, now, status)
        }
    }
}

fn cached_body(token: &CachedToken, body: Bytes, now: UnixMillis, status: CacheStatus) -> Response {
    let mut response = Response::new(Body::from(body));
    let headers = response.headers_mut();
    // Five headers: one allocation for the map, none for the values.
    headers.reserve(5);
    headers.insert(header::CONTENT_TYPE, JSON);
    for (name, value) in NO_CACHE_HEADERS {
        headers.insert(name, value);
    }
    headers.insert(header::AGE, crate::seconds::age(token.age_secs(now)));
    headers.insert(status.header_name(), status.header_value());
    response
}

/// The ttl of a hit: whole seconds until the entry stops being served.
pub(crate) fn hit_ttl(token: &CachedToken, now: UnixMillis) -> u64 {
    token.serve_until().whole_secs_since(now)
}

/// The upstream's answer as it came (status, end-to-end headers, body),
/// plus `Cache-Status`.
pub(crate) fn passed_through(answer: &UpstreamResponse, status: CacheStatus) -> Response {
    let mut response = Response::new(Body::from(answer.body.clone()));
    *response.status_mut() = answer.status;
    *response.headers_mut() = answer.headers.clone();
    response
        .headers_mut()
        .insert(status.header_name(), status.header_value());
    response
}

/// The last failed answer once retries ran out: passed through when it is
/// an OAuth error the client can read, otherwise replaced by one (keeping
/// the status and `Retry-After` of a throttle or 5xx).
pub(crate) fn failed(answer: &UpstreamResponse, status: CacheStatus) -> Response {
    if is_oauth_error(&answer.body) {
        return passed_through(answer, status);
    }
    let mut response = ProxyError::FailedAnswer(answer.status).into_response_with(status);
    if let Some(retry_after) = answer.headers.get(header::RETRY_AFTER) {
        response
            .headers_mut()
            .insert(header::RETRY_AFTER, retry_after.clone());
    }
    response
}

fn is_oauth_error(body: &[u8]) -> bool {
    #[derive(serde::Deserialize)]
    struct ErrorBody {
        #[allow(dead_code)] // only its presence matters
        error: String,
    }
    serde_json::from_slice::<ErrorBody>(body).is_ok()
}

/// A plain-text answer for the admin listener.
pub(crate) fn text(status: StatusCode, body: String) -> Response {
    let mut response = Response::new(Body::from(body));
    *response.status_mut() = status;
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/plain; charset=utf-8"),
    );
    response
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cache_status_values() {
        assert_eq!(
            CacheStatus::Hit { ttl: 42 }.header_value(),
            "tokencache; hit; ttl=42"
        );
        assert_eq!(
            CacheStatus::HitRefreshing { ttl: 7 }.header_value(),
            "tokencache; hit; ttl=7; detail=refreshing"
        );
        assert_eq!(CacheStatus::Bypass.header_value(), "tokencache; fwd=bypass");
    }
}
