//! Single-flight loads: one upstream request per key however many callers
//! ask at once, and background refreshes that never make a caller wait.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use bytes::Bytes;
use futures::future::{BoxFuture, FutureExt, Shared};
use http::HeaderMap;
use tokencache_core::{AnswerClass, Backoff, CacheKey, CachedToken, Freshness, UnixMillis};
use tokencache_upstream::{FetchError, FetchRequest, Priority, UpstreamResponse};
use tokio::time::Instant;

use crate::answer::Fetched;
use crate::error::ProxyError;
use crate::observe::{is_failed_answer, is_not_a_token};
use crate::proxy::Route;
use crate::shared_tier::{Lease, Waited};

/// What a fetch produced, shared by every caller that waited for it.
#[derive(Debug)]
pub(crate) enum LoadOutcome {
    /// A token, now in the store.
    Stored(Fetched),
    /// An answer passed on as it came: an OAuth error, or a token that may
    /// not be cached.
    PassThrough(UpstreamResponse),
    /// The last of a run of failed answers (throttles, 5xx, bodies that are
    /// not tokens) once retries ran out.
    FailedAnswer(UpstreamResponse),
    /// No answer to pass on.
    Failed(ProxyError),
    /// A token another replica fetched, read from the shared tier.
    FromShared(Arc<CachedToken>),
    /// A refresh left to the replica holding the key's lease.
    Deferred,
}

/// A fetch in progress that callers can await; it runs in its own task, so
/// a caller that goes away does not cancel it for the others.
pub(crate) type SharedLoad = Shared<BoxFuture<'static, Arc<LoadOutcome>>>;

/// Everything needed to send a caller's request on to the upstream.
#[derive(Debug)]
pub(crate) struct Forward {
    pub(crate) query: Option<String>,
    pub(crate) headers: HeaderMap,
    pub(crate) body: Bytes,
    /// For logs only.
    pub(crate) client_id: Option<String>,
}

/// How a caller joined a load.
pub(crate) enum Joined {
    /// A servable entry appeared while the caller was deciding.
    Cached(Arc<CachedToken>),
    /// The caller started the fetch.
    Leader(SharedLoad),
    /// The caller waits for a fetch someone else started.
    Waiter(SharedLoad),
}

/// Why a fetch runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Purpose {
    /// A caller is waiting.
    Load,
    /// An aging entry is being replaced; nobody waits.
    Refresh,
}

/// Refresh attempts for a key after failures: when the next may start.
#[derive(Debug, Clone, Copy)]
struct RefreshBackoff {
    failures: u32,
    next_attempt: UnixMillis,
}

#[derive(Default)]
struct FlightTable {
    in_flight: HashMap<CacheKey, SharedLoad>,
    backoff: HashMap<CacheKey, RefreshBackoff>,
}

/// The loads in progress, by key.
///
/// One mutex guards the table: only misses and aging hits touch it, never a
/// fresh hit, and it is held for a map operation, never across an await.
pub(crate) struct Flights {
    table: Mutex<FlightTable>,
    retry_base: Duration,
    retry_cap: Duration,
}

impl Flights {
    pub(crate) fn new(retry_base: Duration, retry_cap: Duration) -> Self {
        Self {
            table: Mutex::new(FlightTable::default()),
            retry_base,
            retry_cap,
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, FlightTable> {
        self.table.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Joins the load of `key`, or starts it.
    ///
    /// `servable` re-reads the store under the table's lock: a fetch puts
    /// its token in the store *before* it leaves the table, so a caller that
    /// finds neither a flight nor an entry knows it must fetch.
    pub(crate) fn join(
        route: &Arc<Route>,
        key: CacheKey,
        forward: Forward,
        servable: impl FnOnce() -> Option<Arc<CachedToken>>,
    ) -> Joined {
        let flights = &route.shared.flights;
        let mut table = flights.lock();
        if let Some(load) = table.in_flight.get(&key) {
            return Joined::Waiter(load.clone());
        }
        if let Some(token) = servable() {
            return Joined::Cached(token);
        }
        let load = spawn_fetch(Arc::clone(route), key, forward, Purpose::Load);
        table.in_flight.insert(key, load.clone());
        Joined::Leader(load)
    }

    /// Starts a background refresh of `key` unless one is running or the
    /// last ones failed too recently.
    pub(crate) fn refresh(route: &Arc<Route>, key: CacheKey, now: UnixMillis, forward: Forward) {
        let flights = &route.shared.flights;
        let mut table = flights.lock();
        if table.in_flight.contains_key(&key) {
            return;
        }
        if table
            .backoff
            .get(&key)
            .is_some_and(|backoff| backoff.next_attempt > now)
        {
            return;
        }
        let load = spawn_fetch(Arc::clone(route), key, forward, Purpose::Refresh);
        table.in_flight.insert(key, load);
    }

    /// Forgets refresh backoffs older than the longest backoff: their keys
    /// are long refreshed, expired or gone.
    pub(crate) fn prune(&self, now: UnixMillis) {
        let cap = u64::try_from(self.retry_cap.as_millis()).unwrap_or(u64::MAX);
        self.lock()
            .backoff
            .retain(|_, backoff| now.millis_since(backoff.next_attempt) < cap);
    }

    /// The number of loads in progress.
    pub(crate) fn in_flight(&self) -> usize {
        self.lock().in_flight.len()
    }

    fn finish(&self, key: CacheKey, purpose: Purpose, succeeded: bool, now: UnixMillis) {
        let mut table = self.lock();
        table.in_flight.remove(&key);
        if succeeded {
            table.backoff.remove(&key);
        } else if purpose == Purpose::Refresh {
            let failures = table.backoff.get(&key).map_or(0, |b| b.failures) + 1;
            // Half to all of the doubling ceiling: a fleet's replicas do not
            // retry a failing refresh in lockstep.
            let delay = Backoff::new(self.retry_base, self.retry_cap, u32::MAX)
                .delay(failures - 1, 0.5 + rand::random::<f64>() / 2.0);
            table.backoff.insert(
                key,
                RefreshBackoff {
                    failures,
                    next_attempt: now.plus(delay),
                },
            );
        }
    }
}

/// Takes a key out of the table when its fetch task ends, however it ends
/// (a panic included), so no caller can wait on a finished fetch.
struct FlightGuard {
    route: Arc<Route>,
    key: CacheKey,
    purpose: Purpose,
    succeeded: bool,
}

impl Drop for FlightGuard {
    fn drop(&mut self) {
        let now = self.route.shared.clock.now();
        self.route
            .shared
            .flights
            .finish(self.key, self.purpose, self.succeeded, now);
    }
}

fn spawn_fetch(route: Arc<Route>, key: CacheKey, forward: Forward, purpose: Purpose) -> SharedLoad {
    let task = tokio::spawn(async move {
        let mut guard = FlightGuard {
            route: Arc::clone(&route),
            key,
            purpose,
            succeeded: false,
        };
        let outcome = fetch(&route, key, forward, purpose).await;
        guard.succeeded = matches!(outcome, LoadOutcome::Stored(_) | LoadOutcome::FromShared(_));
        if purpose == Purpose::Refresh {
            route.shared.metrics.refresh(guard.succeeded);
        }
        Arc::new(outcome)
    });
    async move {
        task.await.unwrap_or_else(|error| {
            tracing::error!(%error, "token fetch task failed");
            Arc::new(LoadOutcome::Failed(ProxyError::Internal))
        })
    }
    .boxed()
    .shared()
}

/// A load or refresh: through the shared tier when there is one (its
/// entry, or its lease and then the upstream), else straight upstream.
async fn fetch(route: &Route, key: CacheKey, forward: Forward, purpose: Purpose) -> LoadOutcome {
    let shared = &route.shared;
    let Some(tier) = &shared.tier else {
        return fetch_upstream(route, key, forward, purpose).await;
    };
    let now = || shared.clock.now();
    let client_id = forward.client_id.clone();
    let store_key = shared.store_key(&key, client_id.as_deref());
    let held_here = shared.store.get(&key, now());
    if let Some(token) = tier.read(&store_key, &shared.policy).await {
        // Another replica's entry, if it is servable and (for a refresh)
        // newer than the one being refreshed.
        let newer = held_here
            .as_ref()
            .is_none_or(|held| token.fetched_at() > held.fetched_at());
        let wanted = match purpose {
            Purpose::Load => token.freshness(now()) != Freshness::Expired,
            Purpose::Refresh => newer && token.freshness(now()) == Freshness::Fresh,
        };
        if wanted {
            let token = Arc::new(token);
            shared.remember(key, Arc::clone(&token), client_id.as_deref(), now());
            return LoadOutcome::FromShared(token);
        }
    }
    let lease_ttl = shared.load_deadline;
    match tier.lease(&store_key, lease_ttl).await {
        Lease::Held => {}
        Lease::Unavailable => return fetch_upstream(route, key, forward, purpose).await,
        // Another replica is refreshing this key; its token will come
        // through the shared tier. Back off like a failed refresh.
        Lease::Busy if purpose == Purpose::Refresh => return LoadOutcome::Deferred,
        Lease::Busy => {
            let deadline = Instant::now() + shared.load_deadline;
            match tier
                .wait_for(&store_key, &shared.policy, now, lease_ttl, deadline)
                .await
            {
                Waited::Arrived(token) => {
                    let token = Arc::new(token);
                    shared.remember(key, Arc::clone(&token), client_id.as_deref(), now());
                    return LoadOutcome::FromShared(token);
                }
                Waited::GaveUp => return fetch_upstream(route, key, forward, purpose).await,
                Waited::LeaseTaken => {}
            }
        }
    }
    let outcome = fetch_upstream(route, key, forward, purpose).await;
    if let LoadOutcome::Stored(fetched) = &outcome {
        tier.write(&store_key, &fetched.token).await;
    }
    tier.release(&store_key).await;
    outcome
}

/// One upstream exchange, retried as the route's resilience allows; a
/// cacheable answer goes into the memory tier before the flight leaves the
/// table.
async fn fetch_upstream(
    route: &Route,
    key: CacheKey,
    forward: Forward,
    purpose: Purpose,
) -> LoadOutcome {
    let shared = &route.shared;
    let request = FetchRequest {
        query: forward.query,
        headers: tokencache_upstream::forwardable_headers(&forward.headers),
        body: forward.body,
    };
    let priority = match purpose {
        Purpose::Load => Priority::Caller,
        Purpose::Refresh => Priority::Background,
    };
    let started = Instant::now();
    let deadline = started + shared.load_deadline;
    let is_failure =
        |answer: &UpstreamResponse| is_failed_answer(answer, &shared.metrics, &shared.policy);
    let result = route
        .upstream
        .fetch(&request, priority, deadline, &is_failure, &route.observer)
        .await;
    let elapsed_ms = started.elapsed().as_millis();
    let fingerprint = key.fingerprint();
    let forward_client_id = forward.client_id;
    let client_id = forward_client_id.as_deref().unwrap_or("");
    let answer = match result {
        Ok(answer) => answer,
        Err(error) => {
            if matches!(error, FetchError::CircuitOpen { .. }) {
                shared.metrics.breaker_rejected();
            }
            tracing::warn!(
                route = %route.path, client_id, key = %fingerprint, ?purpose, elapsed_ms,
                error = %error, "no token from the token endpoint"
            );
            return LoadOutcome::Failed(ProxyError::from_fetch(error));
        }
    };
    let now = shared.clock.now();
    if answer.status == http::StatusCode::OK {
        return match CachedToken::from_response(&answer.body, now, &shared.policy) {
            Ok(token) => {
                let token = Arc::new(token);
                shared.remember(key, Arc::clone(&token), forward_client_id.as_deref(), now);
                shared.negative.remove(&key);
                tracing::info!(
                    route = %route.path, client_id, key = %fingerprint, ?purpose, elapsed_ms,
                    expires_in = token.expires_in(now), "token fetched and cached"
                );
                LoadOutcome::Stored(Fetched::new(token, now))
            }
            Err(reason) => {
                tracing::warn!(
                    route = %route.path, client_id, key = %fingerprint, ?purpose, %reason,
                    "the token endpoint's 200 answer is not cacheable"
                );
                if is_not_a_token(&answer, &shared.policy) {
                    LoadOutcome::FailedAnswer(answer)
                } else {
                    LoadOutcome::PassThrough(answer)
                }
            }
        };
    }
    let class = AnswerClass::of(answer.status.as_u16(), &answer.body);
    tracing::info!(
        route = %route.path, client_id, key = %fingerprint, ?purpose, elapsed_ms,
        status = answer.status.as_u16(), ?class, "the token endpoint refused; not cached"
    );
    match class {
        AnswerClass::ClientRejected => {
            let answer = Arc::new(answer);
            shared.negative.insert(key, Arc::clone(&answer), now);
            LoadOutcome::PassThrough(Arc::unwrap_or_clone(answer))
        }
        AnswerClass::Throttled | AnswerClass::ServerError => LoadOutcome::FailedAnswer(answer),
        _ => LoadOutcome::PassThrough(answer),
    }
}
