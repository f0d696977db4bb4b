//! Rendering answers: from the cache, passed through, and the headers that
//! say how the cache took part.

use std::sync::Arc;

use axum::body::Body;
use axum::response::Response;
use bytes::Bytes;
use http::StatusCode;
use http::header::{self, HeaderValue};
use tokencache_core::{CachedToken, UnixMillis};
use tokencache_upstream::UpstreamResponse;

use crate::cache_status::{CacheStatus, NO_CACHE_HEADERS};
use crate::error::ProxyError;

const JSON: HeaderValue = HeaderValue::from_static("application/json;charset=UTF-8");

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
