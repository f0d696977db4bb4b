//! One token endpoint the proxy fronts: the hit path, and what happens when
//! it misses (one load per key, however many callers ask; a background
//! refresh when an entry ages).

use std::sync::Arc;
use std::task::Poll;
use std::time::Duration;

use axum::response::{IntoResponse, Response};
use bytes::{Bytes, BytesMut};
use http::header::{AUTHORIZATION, CONTENT_LENGTH, CONTENT_TYPE};
use http::{HeaderMap, HeaderName, HeaderValue};
use http_body_util::BodyExt;
use tokencache_core::{CacheKey, Freshness, RequestError, TokenRequest};
use tokencache_single_flight::{Joined, SingleFlight};
use tokencache_upstream::FetchRequest;
use tracing::Instrument as _;

use crate::answer;
use crate::cache::TokenCache;
use crate::cache_status::CacheStatus;
use crate::dialect::Dialect;
use crate::endpoint::TokenEndpoint;
use crate::error::ProxyError;
use crate::loader::{Forward, LoadOutcome, Loader, Purpose};
use crate::metrics::{Outcome, ProxyMetrics};
use crate::spans;

/// The loads in progress, by key; one table for every route (a key names
/// its route).
pub(crate) type Flights = SingleFlight<CacheKey, Arc<LoadOutcome>>;

/// An answer and how the cache took part in it, counted once where the
/// request ends (rather than read back from the `Cache-Status` header).
pub(crate) struct Answered {
    pub(crate) response: Response,
    pub(crate) outcome: Outcome,
}

impl Answered {
    pub(crate) fn new(response: Response, outcome: Outcome) -> Self {
        Self { response, outcome }
    }

    /// Counts the request and how long it took since `started` (tokio's
    /// clock, the one tests can pause) in `metrics`; the response to send.
    pub(crate) fn counted(self, metrics: &ProxyMetrics, started: tokio::time::Instant) -> Response {
        metrics.request(self.outcome);
        metrics.answered(self.outcome, started.elapsed());
        self.response
    }
}

/// What a route needs from the listener serving it.
#[derive(Debug, Clone, Copy)]
pub(crate) struct RequestLimits {
    /// The largest request body accepted.
    pub(crate) max_body_bytes: usize,
    /// Time a client has to send its whole request body.
    pub(crate) body_timeout: Duration,
}

/// One route: a path, its endpoint, and the proxy's cache and loader.
pub(crate) struct Route {
    path: Arc<str>,
    /// How its answers are written (OAuth 2.0, or the AWS JSON protocol of
    /// Cognito's native API).
    dialect: Dialect,
    endpoint: Arc<dyn TokenEndpoint>,
    cache: Arc<TokenCache>,
    loader: Arc<Loader>,
    flights: Flights,
    metrics: ProxyMetrics,
}

impl Route {
    pub(crate) fn new(
        path: &str,
        endpoint: Arc<dyn TokenEndpoint>,
        cache: Arc<TokenCache>,
        loader: Arc<Loader>,
        flights: Flights,
        metrics: ProxyMetrics,
    ) -> Self {
        Self {
            path: path.into(),
            dialect: Dialect::OAuth,
            endpoint,
            cache,
            loader,
            flights,
            metrics,
        }
    }

    /// The same route, writing its answers in `dialect`.
    pub(crate) fn with_dialect(mut self, dialect: Dialect) -> Self {
        self.dialect = dialect;
        self
    }

    /// The path the route answers on.
    pub(crate) fn path(&self) -> &str {
        &self.path
    }

    /// Answers a token request, whatever its body type (axum's, or hyper's
    /// straight from the connection).
    pub(crate) async fn answer<B>(
        &self,
        request: http::Request<B>,
        limits: RequestLimits,
    ) -> Response
    where
        B: http_body::Body<Data = Bytes> + Send + Unpin,
    {
        let started = tokio::time::Instant::now();
        self.answer_token_request(request, limits)
            .await
            .unwrap_or_else(|error| {
                if matches!(error, ProxyError::Internal) {
                    tracing::error!(route = %self.path, "internal error answering a token request");
                } else {
                    tracing::debug!(route = %self.path, %error, "token request rejected");
                }
                Answered::new(error.into_response(), Outcome::Error)
            })
            .counted(&self.metrics, started)
    }

    async fn answer_token_request<B>(
        &self,
        request: http::Request<B>,
        limits: RequestLimits,
    ) -> Result<Answered, ProxyError>
    where
        B: http_body::Body<Data = Bytes> + Send + Unpin,
    {
        let (parts, body) = request.into_parts();
        let body = read_body(body, &parts.headers, limits).await?;
        let parsed = TokenRequest::parse(
            single_header(&parts.headers, &CONTENT_TYPE)?,
            single_header(&parts.headers, &AUTHORIZATION)?,
            parts.uri.query(),
            &body,
        )?;
        if !parsed.is_cacheable() {
            drop(parsed);
            // Boxed: the cold path's state would otherwise make every
            // request's future larger, and every move of it dearer.
            return Box::pin(self.bypass(parts.uri.query(), &parts.headers, body)).await;
        }
        let key = self.cache.key(&self.path, &parsed);
        let answered = self.serve_keyed(key, || Forward::of(&parsed)).await;
        if let (Ok(answered), Some(client_id)) = (&answered, parsed.client_id()) {
            self.metrics.client(client_id, answered.outcome);
        }
        answered
    }

    /// Answers a cacheable request whose key is `key`: from the memory
    /// tier while fresh (the hit path), else the negative cache, else the
    /// aging entry with a background refresh, else a load. `forward`
    /// builds the upstream request, from the value the key was derived
    /// from; it runs only when the hit path misses.
    pub(crate) async fn serve_keyed(
        &self,
        key: CacheKey,
        forward: impl FnOnce() -> Result<Forward, ProxyError>,
    ) -> Result<Answered, ProxyError> {
        spans::record_key(&key);
        let cache = &*self.cache;
        let dialect = self.dialect;
        let now = cache.now();
        // The hit path: answered under the shard's read lock, no Arc touched.
        let hit = cache.memory().with_entry(&key, now, |token| {
            (token.freshness(now) == Freshness::Fresh).then(|| {
                let ttl = answer::hit_ttl(token, now);
                dialect.token(answer::cached(token, now, CacheStatus::Hit { ttl }))
            })
        });
        if let Some(Some(response)) = hit {
            return Ok(Answered::new(response, Outcome::Hit));
        }
        let cached = cache.memory().get(&key, now);
        if let Some(rejection) = cache.rejection(&key, now) {
            self.metrics.negative_hit();
            return Ok(Answered::new(
                answer::passed_through(&rejection, CacheStatus::NegativeHit),
                Outcome::Negative,
            ));
        }
        let forward = forward()?;
        if let Some(token) = cached.filter(|token| token.freshness(now) == Freshness::Aging) {
            self.refresh(key, forward);
            let ttl = answer::hit_ttl(&token, now);
            let response = dialect.token(answer::cached(
                &token,
                now,
                CacheStatus::HitRefreshing { ttl },
            ));
            return Ok(Answered::new(response, Outcome::Stale));
        }
        // Boxed: a miss's state (the flight it waits for) would otherwise
        // make every hit's future larger, and every move of it dearer.
        Box::pin(self.load(key, forward)).await
    }

    /// The load of `key`, started by a caller that waits for it.
    fn start_load(
        &self,
        key: CacheKey,
        forward: Forward,
        purpose: Purpose,
    ) -> impl Future<Output = Arc<LoadOutcome>> + Send + 'static {
        let (loader, endpoint, path) = (
            Arc::clone(&self.loader),
            Arc::clone(&self.endpoint),
            Arc::clone(&self.path),
        );
        let metrics = self.metrics.clone();
        // Made here, in the caller's request span, which becomes its parent.
        let span = spans::load(purpose.label(), &key);
        async move {
            let outcome = loader.load(&path, &*endpoint, key, forward, purpose).await;
            spans::record_load(outcome.label(), outcome.is_failure());
            if purpose == Purpose::Refresh {
                metrics.refresh(outcome.is_success());
            }
            Arc::new(outcome)
        }
        .instrument(span)
    }

    /// Starts a background refresh of `key` unless one is running or the
    /// last ones failed too recently.
    fn refresh(&self, key: CacheKey, forward: Forward) {
        let started = self
            .flights
            .refresh(key, || self.start_load(key, forward, Purpose::Refresh));
        if let Err(error) = started {
            tracing::error!(route = %self.path, %error, "could not start a refresh");
        }
    }

    /// A miss: join or start the key's load and answer with its outcome.
    async fn load(&self, key: CacheKey, forward: Forward) -> Result<Answered, ProxyError> {
        let cache = &*self.cache;
        // Re-read under the table's lock: a load puts its token in the
        // store *before* it leaves the table, so a caller that finds
        // neither a load nor an entry knows it must load.
        let servable = || {
            let now = cache.now();
            cache
                .memory()
                .get(&key, now)
                .filter(|token| token.freshness(now) != Freshness::Expired)
        };
        let joined = self
            .flights
            .join_unless(key, servable, || {
                self.start_load(key, forward, Purpose::Load)
            })
            .map_err(|error| {
                tracing::error!(route = %self.path, %error, "could not start a load");
                ProxyError::Internal
            })?;
        let flight = match joined {
            Joined::Found(token) => {
                let now = cache.now();
                let ttl = answer::hit_ttl(&token, now);
                let response =
                    self.dialect
                        .token(answer::cached(&token, now, CacheStatus::Hit { ttl }));
                return Ok(Answered::new(response, Outcome::Hit));
            }
            Joined::Flight(flight) => flight,
        };
        let leader = flight.is_leader();
        let outcome = flight.await.map_err(|error| {
            tracing::error!(route = %self.path, %error, "a token load failed");
            ProxyError::Internal
        })?;
        let now = cache.now();
        let (stored, uncacheable, too_large) = if leader {
            (
                CacheStatus::MissStored,
                CacheStatus::MissUncacheable,
                CacheStatus::MissTooLarge,
            )
        } else {
            (
                CacheStatus::Collapsed,
                CacheStatus::CollapsedUncacheable,
                CacheStatus::CollapsedTooLarge,
            )
        };
        let counted = match (&*outcome, leader) {
            (LoadOutcome::Failed(_) | LoadOutcome::Deferred, _) => Outcome::Error,
            (LoadOutcome::FromShared(_), _) => Outcome::Shared,
            (_, true) => Outcome::Miss,
            (_, false) => Outcome::Collapsed,
        };
        let dialect = self.dialect;
        let response = match &*outcome {
            LoadOutcome::Stored(fetched) => dialect.token(fetched.answer(now, stored)),
            LoadOutcome::PassThrough(answer) => answer::passed_through(answer, uncacheable),
            LoadOutcome::TooLarge(answer) => answer::passed_through(answer, too_large),
            LoadOutcome::FailedAnswer(answer) => dialect.failed(answer, uncacheable),
            LoadOutcome::Failed(error) => dialect.error(error.clone(), uncacheable),
            LoadOutcome::FromShared(token) => {
                let ttl = answer::hit_ttl(token, now);
                dialect.token(answer::cached(token, now, CacheStatus::SharedHit { ttl }))
            }
            // Only background refreshes defer to another replica; a load that
            // a caller waits for never does. Reaching this is a bug.
            LoadOutcome::Deferred => return Err(ProxyError::Internal),
        };
        Ok(Answered::new(response, counted))
    }

    /// A request that may not be cached goes upstream as it came, once (an
    /// authorization code is single-use, so it is never retried), and its
    /// answer comes back as it came.
    pub(crate) async fn bypass(
        &self,
        query: Option<&str>,
        headers: &HeaderMap,
        body: Bytes,
    ) -> Result<Answered, ProxyError> {
        let request = FetchRequest {
            query: query.map(str::to_owned),
            headers: tokencache_upstream::forwardable_headers(headers),
            body,
        };
        let deadline = tokio::time::Instant::now() + self.loader.deadline();
        let answer = self
            .endpoint
            .send_once(&request, deadline)
            .await
            .map_err(|error| {
                tracing::warn!(route = %self.path, %error, "pass-through request failed");
                ProxyError::from_fetch(error)
            })?;
        Ok(Answered::new(
            answer::passed_through(&answer, CacheStatus::Bypass),
            Outcome::Bypass,
        ))
    }
}

/// The one value of a header that must not be repeated: two
/// `Authorization` headers could be read one way for the key and another
/// way by the upstream, so they are refused, never resolved.
pub(crate) fn single_header<'h>(
    headers: &'h HeaderMap,
    name: &'static HeaderName,
) -> Result<Option<&'h [u8]>, ProxyError> {
    let mut values = headers.get_all(name).iter();
    let first = values.next();
    if values.next().is_some() {
        return Err(RequestError::RepeatedHeader(name.as_str()).into());
    }
    Ok(first.map(HeaderValue::as_bytes))
}

/// Reads the whole body, refusing more than the limit, within the body
/// timeout. A token request's body usually arrives with its headers: then
/// it is read at once, without arming a timer (the hit path's common case).
pub(crate) async fn read_body<B>(
    body: B,
    headers: &HeaderMap,
    limits: RequestLimits,
) -> Result<Bytes, ProxyError>
where
    B: http_body::Body<Data = Bytes> + Send + Unpin,
{
    let limit = limits.max_body_bytes;
    let declared = headers
        .get(CONTENT_LENGTH)
        .and_then(|value| value.to_str().ok())
        .and_then(|value| value.parse::<u64>().ok());
    if declared.is_some_and(|length| length > limit as u64) {
        return Err(ProxyError::BodyTooLarge(limit));
    }
    let mut reading = std::pin::pin!(read_all(body, limit));
    if let Poll::Ready(result) = futures::poll!(reading.as_mut()) {
        return result;
    }
    tokio::time::timeout(limits.body_timeout, reading)
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
