//! The token endpoint: the hit path, and what happens when it misses.

use std::sync::Arc;

use axum::extract::{Request, State};
use axum::response::{IntoResponse, Response};
use std::sync::atomic::Ordering;
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use http::HeaderMap;
use http::header::{AUTHORIZATION, CONTENT_LENGTH, CONTENT_TYPE};
use http_body_util::BodyExt;
use tokencache_core::{CacheKey, Freshness, TokenRequest};
use tokencache_upstream::FetchRequest;

use crate::answer::{self, CacheStatus};
use crate::error::ProxyError;
use crate::flight::{Flights, Forward, Joined, LoadOutcome};
use crate::metrics::Outcome;
use crate::observe::is_failed_pass_through;
use crate::proxy::{Route, Shared};

/// `POST` on a route's path (the axum handler of [`Proxy::router`]).
///
/// [`Proxy::router`]: crate::Proxy::router
pub(crate) async fn token(State(route): State<Arc<Route>>, request: Request) -> Response {
    serve_token(&route, request).await
}

/// Answers a token request on `route`, whatever its body type (axum's, or
/// hyper's straight from the connection).
pub(crate) async fn serve_token<B>(route: &Arc<Route>, request: http::Request<B>) -> Response
where
    B: http_body::Body<Data = Bytes> + Send + Unpin,
{
    match answer_token_request(route, request).await {
        Ok(response) => response,
        Err(error) => {
            route.shared.metrics.request(Outcome::Error);
            if matches!(error, ProxyError::Internal) {
                tracing::error!(route = %route.path, "internal error answering a token request");
            } else {
                tracing::debug!(route = %route.path, %error, "token request rejected");
            }
            error.into_response()
        }
    }
}

async fn answer_token_request<B>(
    route: &Arc<Route>,
    request: http::Request<B>,
) -> Result<Response, ProxyError>
where
    B: http_body::Body<Data = Bytes> + Send + Unpin,
{
    let shared = &route.shared;
    let (parts, body) = request.into_parts();
    let body = read_body(body, &parts.headers, shared).await?;
    let parsed = TokenRequest::parse(
        parts.headers.get(CONTENT_TYPE).map(|v| v.as_bytes()),
        parts.headers.get(AUTHORIZATION).map(|v| v.as_bytes()),
        parts.uri.query(),
        &body,
    )?;
    if !parsed.is_cacheable() {
        drop(parsed);
        return bypass(route, parts.uri.query(), &parts.headers, body).await;
    }
    let key = shared.deriver.derive(&route.path, &parsed);
    let now = shared.clock.now();
    // The hit path: answered under the shard's read lock, no Arc touched.
    let hit = shared.store.with_entry(&key, now, |token| {
        (token.freshness(now) == Freshness::Fresh).then(|| {
            let ttl = answer::hit_ttl(token, now);
            answer::cached(token, now, CacheStatus::Hit { ttl })
        })
    });
    if let Some(Some(response)) = hit {
        shared.metrics.request(Outcome::Hit);
        return Ok(response);
    }
    let cached = shared.store.get(&key, now);
    if let Some(rejection) = shared.negative.get(&key, now) {
        shared.metrics.request(Outcome::Negative);
        shared.metrics.negative_hit();
        return Ok(answer::passed_through(&rejection, CacheStatus::NegativeHit));
    }
    let client_id = parsed.client_id().map(str::to_owned);
    drop(parsed);
    let forward = Forward {
        query: parts.uri.query().map(str::to_owned),
        client_id,
        headers: parts.headers,
        body,
    };
    if let Some(token) = cached.filter(|token| token.freshness(now) == Freshness::Aging) {
        Flights::refresh(route, key, now, forward);
        shared.metrics.request(Outcome::Stale);
        let ttl = answer::hit_ttl(&token, now);
        return Ok(answer::cached(
            &token,
            now,
            CacheStatus::HitRefreshing { ttl },
        ));
    }
    load(route, key, forward).await
}

/// A miss: join or start the key's fetch and answer with its outcome.
async fn load(route: &Arc<Route>, key: CacheKey, forward: Forward) -> Result<Response, ProxyError> {
    let shared = &route.shared;
    let servable = || {
        let now = shared.clock.now();
        shared
            .store
            .get(&key, now)
            .filter(|token| token.freshness(now) != Freshness::Expired)
    };
    let (load, leader) = match Flights::join(route, key, forward, servable) {
        Joined::Cached(token) => {
            let now = shared.clock.now();
            shared.metrics.request(Outcome::Hit);
            let ttl = answer::hit_ttl(&token, now);
            return Ok(answer::cached(&token, now, CacheStatus::Hit { ttl }));
        }
        Joined::Leader(load) => (load, true),
        Joined::Waiter(load) => (load, false),
    };
    let outcome = load.await;
    let now = shared.clock.now();
    let (stored, uncacheable) = if leader {
        (CacheStatus::MissStored, CacheStatus::MissUncacheable)
    } else {
        (CacheStatus::Collapsed, CacheStatus::CollapsedUncacheable)
    };
    shared.metrics.request(match (&*outcome, leader) {
        (LoadOutcome::Failed(_) | LoadOutcome::Deferred, _) => Outcome::Error,
        (LoadOutcome::FromShared(_), _) => Outcome::Shared,
        (_, true) => Outcome::Miss,
        (_, false) => Outcome::Collapsed,
    });
    Ok(match &*outcome {
        LoadOutcome::Stored(fetched) => fetched.answer(now, stored),
        LoadOutcome::PassThrough(answer) => answer::passed_through(answer, uncacheable),
        LoadOutcome::FailedAnswer(answer) => answer::failed(answer, uncacheable),
        LoadOutcome::Failed(error) => error.clone().into_response_with(uncacheable),
        LoadOutcome::FromShared(token) => {
            let ttl = answer::hit_ttl(token, now);
            answer::cached(token, now, CacheStatus::SharedHit { ttl })
        }
        // Only background refreshes defer to another replica; a load that
        // a caller waits for never does. Reaching this is a bug.
        LoadOutcome::Deferred => return Err(ProxyError::Internal),
    })
}

/// A request that may not be cached goes upstream as it came, once (an
/// authorization code is single-use, so it is never retried), and its
/// answer comes back as it came.
async fn bypass(
    route: &Route,
    query: Option<&str>,
    headers: &HeaderMap,
    body: Bytes,
) -> Result<Response, ProxyError> {
    let shared = &route.shared;
    let request = FetchRequest {
        query: query.map(str::to_owned),
        headers: tokencache_upstream::forwardable_headers(headers),
        body,
    };
    let deadline = tokio::time::Instant::now() + shared.load_deadline;
    let answer = route
        .upstream
        .send_once(&request, deadline, &is_failed_pass_through, &route.observer)
        .await
        .map_err(|error| {
            tracing::warn!(route = %route.path, %error, "pass-through request failed");
            ProxyError::from_fetch(error)
        })?;
    shared.metrics.request(Outcome::Bypass);
    Ok(answer::passed_through(&answer, CacheStatus::Bypass))
}

/// Reads the whole body, refusing more than the limit, within the request
/// timeout. A token request's body usually arrives with its headers: then it
/// is read at once, without arming a timer (the hit path's common case).
async fn read_body<B>(body: B, headers: &HeaderMap, shared: &Shared) -> Result<Bytes, ProxyError>
where
    B: http_body::Body<Data = Bytes> + Send + Unpin,
{
    let limit = shared.max_body_bytes;
    let declared = headers
        .get(CONTENT_LENGTH)
        .and_then(|value| value.to_str().ok())
        .and_then(|value| value.parse::<u64>().ok());
    if declared.is_some_and(|length| length > limit as u64) {
        return Err(ProxyError::BodyTooLarge(limit));
    }
    let mut reading = std::pin::pin!(read_all(body, limit));
    if let std::task::Poll::Ready(result) = futures::poll!(reading.as_mut()) {
        return result;
    }
    let timeout = Duration::from_millis(shared.request_timeout_ms.load(Ordering::Relaxed));
    tokio::time::timeout(timeout, reading)
        .await
        .unwrap_or(Err(ProxyError::RequestTimeout))
}

/// Collects the body's data frames; one frame (the usual case) is returned
/// as it came, without copying.
async fn read_all<B>(mut body: B, limit: usize) -> Result<Bytes, ProxyError>
where
    B: http_body::Body<Data = Bytes> + Send + Unpin,
{
    let mut first: Option<Bytes> = None;
    let mut joined: Option<BytesMut> = None;
    let mut total = 0usize;
    while let Some(frame) = body.frame().await {
        let frame = frame.map_err(|_| ProxyError::BodyUnreadable)?;
        let Ok(data) = frame.into_data() else {
            continue; // trailers
        };
        total += data.len();
        if total > limit {
            return Err(ProxyError::BodyTooLarge(limit));
        }
        match (&mut first, &mut joined) {
            (_, Some(joined)) => joined.extend_from_slice(&data),
            (Some(head), None) => {
                let mut buffer = BytesMut::with_capacity(total);
                buffer.extend_from_slice(head);
                buffer.extend_from_slice(&data);
                joined = Some(buffer);
            }
            (None, None) => first = Some(data),
        }
    }
    Ok(joined.map(BytesMut::freeze).or(first).unwrap_or_default())
}
