//! The token endpoint: the hit path, and what happens when it misses.

use std::sync::Arc;

use axum::body::Body;
use axum::extract::{Request, State};
use axum::response::{IntoResponse, Response};
use bytes::Bytes;
use http::HeaderMap;
use http::header::{AUTHORIZATION, CONTENT_LENGTH, CONTENT_TYPE};
use http_body_util::{BodyExt, LengthLimitError, Limited};
use tokencache_core::{CacheKey, Freshness, TokenRequest};
use tokencache_upstream::UpstreamRequest;

use crate::answer::{self, CacheStatus};
use crate::error::ProxyError;
use crate::flight::{Flights, Forward, Joined, LoadOutcome};
use crate::metrics::Outcome;
use crate::proxy::Route;

/// `POST` on a route's path.
pub(crate) async fn token(State(route): State<Arc<Route>>, request: Request) -> Response {
    match answer_token_request(&route, request).await {
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

async fn answer_token_request(
    route: &Arc<Route>,
    request: Request,
) -> Result<Response, ProxyError> {
    let shared = &route.shared;
    let (parts, body) = request.into_parts();
    let body = read_body(body, &parts.headers, shared.max_body_bytes).await?;
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
    let cached = shared.store.get(&key);
    if let Some(token) = &cached
        && token.freshness(now) == Freshness::Fresh
    {
        shared.metrics.request(Outcome::Hit);
        let ttl = answer::hit_ttl(token, now);
        return Ok(answer::cached(token, now, CacheStatus::Hit { ttl }));
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
            .get(&key)
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
    shared.metrics.request(if leader {
        Outcome::Miss
    } else {
        Outcome::Collapsed
    });
    let now = shared.clock.now();
    match &*outcome {
        LoadOutcome::Stored(token) => {
            let status = if leader {
                CacheStatus::MissStored
            } else {
                CacheStatus::Collapsed
            };
            Ok(answer::cached(token, now, status))
        }
        LoadOutcome::Uncacheable(answer) => {
            let status = if leader {
                CacheStatus::MissUncacheable
            } else {
                CacheStatus::CollapsedUncacheable
            };
            Ok(answer::passed_through(answer, status))
        }
        LoadOutcome::Failed(error) => {
            let status = if leader {
                CacheStatus::MissUncacheable
            } else {
                CacheStatus::CollapsedUncacheable
            };
            Ok(ProxyError::Upstream(Arc::clone(error)).into_response_with(status))
        }
        LoadOutcome::Panicked => Err(ProxyError::Internal),
    }
}

/// A request that may not be cached goes upstream as it came, once, and
/// its answer comes back as it came.
async fn bypass(
    route: &Route,
    query: Option<&str>,
    headers: &HeaderMap,
    body: Bytes,
) -> Result<Response, ProxyError> {
    let shared = &route.shared;
    let started = tokio::time::Instant::now();
    let result = shared
        .upstream
        .send(UpstreamRequest {
            url: &route.upstream,
            query,
            headers: tokencache_upstream::forwardable_headers(headers),
            body,
        })
        .await;
    shared
        .metrics
        .upstream(result.as_ref().ok().map(|a| a.status), started.elapsed());
    let answer = result.map_err(|error| {
        tracing::warn!(route = %route.path, %error, "token endpoint failed on a pass-through request");
        ProxyError::Upstream(Arc::new(error))
    })?;
    shared.metrics.request(Outcome::Bypass);
    Ok(answer::passed_through(&answer, CacheStatus::Bypass))
}

/// Reads the whole body, refusing more than `limit` bytes.
async fn read_body(body: Body, headers: &HeaderMap, limit: usize) -> Result<Bytes, ProxyError> {
    let declared = headers
        .get(CONTENT_LENGTH)
        .and_then(|value| value.to_str().ok())
        .and_then(|value| value.parse::<u64>().ok());
    if declared.is_some_and(|length| length > limit as u64) {
        return Err(ProxyError::BodyTooLarge(limit));
    }
    match Limited::new(body, limit).collect().await {
        Ok(collected) => Ok(collected.to_bytes()),
        Err(error) if error.downcast_ref::<LengthLimitError>().is_some() => {
            Err(ProxyError::BodyTooLarge(limit))
        }
        Err(_) => Err(ProxyError::BodyUnreadable),
    }
}
