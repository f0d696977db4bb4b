//! The loading policy: what one load of a key does, from the shared tier
//! to the upstream, and what it leaves in the cache.
//!
//! memory tier (the caller looked already) → shared tier (another
//! replica's entry) → the key's lease (one replica fetches for the fleet;
//! the others wait for its entry) → the endpoint (its budget, breaker and
//! retries) → the cache: a token is stored in both tiers, a client's
//! rejection is remembered briefly, nothing else is kept.
//!
//! It runs inside a single-flight load, so one load per key runs at a time
//! in this process; it never sees HTTP requests, only the [`Forward`] built
//! from what was keyed.

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http::{HeaderValue, StatusCode};
use tokencache_core::{AnswerClass, CacheKey, CachedToken, Freshness, TokenRequest};
use tokencache_upstream::{FetchError, FetchRequest, Priority, UpstreamResponse};
use tokio::time::Instant;

use crate::answer::Fetched;
use crate::cache::TokenCache;
use crate::endpoint::TokenEndpoint;
use crate::error::ProxyError;
use crate::metrics::ProxyMetrics;
use crate::shared_tier::{Lease, Waited};

/// Why a load runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Purpose {
    /// A caller is waiting.
    Load,
    /// An aging entry is being replaced; nobody waits.
    Refresh,
}

impl Purpose {
    /// The purpose's name in traces.
    pub(crate) fn label(self) -> &'static str {
        match self {
            Self::Load => "load",
            Self::Refresh => "refresh",
        }
    }
}

/// What a load produced, shared by every caller that waited for it.
#[derive(Debug)]
pub(crate) enum LoadOutcome {
    /// A token, now in the cache.
    Stored(Fetched),
    /// An answer passed on as it came: an OAuth error, or a token that may
    /// not be cached.
    PassThrough(UpstreamResponse),
    /// A token too large for the memory store, passed on uncached.
    TooLarge(UpstreamResponse),
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

impl LoadOutcome {
    /// Whether the key now has a servable token.
    pub(crate) fn is_success(&self) -> bool {
        matches!(self, Self::Stored(_) | Self::FromShared(_))
    }

    /// Whether no usable answer came: the load failed.
    pub(crate) fn is_failure(&self) -> bool {
        matches!(self, Self::FailedAnswer(_) | Self::Failed(_))
    }

    /// The outcome's name in traces.
    pub(crate) fn label(&self) -> &'static str {
        match self {
            Self::Stored(_) => "stored",
            Self::PassThrough(_) => "passed_through",
            Self::TooLarge(_) => "too_large",
            Self::FailedAnswer(_) => "failed_answer",
            Self::Failed(_) => "failed",
            Self::FromShared(_) => "from_shared",
            Self::Deferred => "deferred",
        }
    }
}

/// The upstream request of a cacheable load, built from the parsed request
/// its key was derived from (never from the caller's raw bytes), so the key
/// and what the upstream sees cannot disagree.
#[derive(Debug)]
pub(crate) struct Forward {
    pub(crate) request: FetchRequest,
    /// For logs and the client index.
    pub(crate) client_id: Option<String>,
}

impl Forward {
    /// The forward of `parsed`, which must be cacheable.
    pub(crate) fn of(parsed: &TokenRequest<'_>) -> Result<Self, ProxyError> {
        // A cacheable request has Basic or body credentials, both of which
        // the proxy rebuilds; `None` here would be a bug.
        let canonical = parsed.canonical().ok_or(ProxyError::Internal)?;
        let authorization = canonical
            .authorization()
            .map(HeaderValue::from_str)
            .transpose()
            .map_err(|_| ProxyError::Internal)?;
        Ok(Self {
            request: FetchRequest::token_form(
                Bytes::copy_from_slice(canonical.body().as_bytes()),
                authorization,
            ),
            client_id: parsed.client_id().map(str::to_owned),
        })
    }
}

/// Loads keys into the cache.
pub(crate) struct Loader {
    cache: Arc<TokenCache>,
    metrics: ProxyMetrics,
    /// How long a load may take, budget queueing, retries and waiting for
    /// another replica's lease included.
    deadline: Duration,
}

impl Loader {
    pub(crate) fn new(cache: Arc<TokenCache>, metrics: ProxyMetrics, deadline: Duration) -> Self {
        Self {
            cache,
            metrics,
            deadline,
        }
    }

    /// How long a load may take.
    pub(crate) fn deadline(&self) -> Duration {
        self.deadline
    }

    /// One load of `key` on `route`: through the shared tier when there is
    /// one (its entry, or its lease and then the endpoint), else straight
    /// to the endpoint. Waiting for another replica's lease and the
    /// endpoint's exchange share one deadline.
    pub(crate) async fn load(
        &self,
        route: &str,
        endpoint: &dyn TokenEndpoint,
        key: CacheKey,
        forward: Forward,
        purpose: Purpose,
    ) -> LoadOutcome {
        let cache = &*self.cache;
        let deadline = Instant::now() + self.deadline;
        let Some(tier) = cache.tier() else {
            return self
                .fetch_upstream(route, endpoint, key, forward, purpose, deadline)
                .await;
        };
        let client_id = forward.client_id.clone();
        let store_key = cache.store_key(&key, client_id.as_deref());
        let held_here = cache.memory().get(&key, cache.now());
        if let Some(token) = tier.read(&store_key, cache.policy()).await {
            // Another replica's entry, if it is servable and (for a refresh)
            // newer than the one being refreshed.
            let newer = held_here
                .as_ref()
                .is_none_or(|held| token.fetched_at() > held.fetched_at());
            let now = cache.now();
            let wanted = match purpose {
                Purpose::Load => token.freshness(now) != Freshness::Expired,
                Purpose::Refresh => newer && token.freshness(now) == Freshness::Fresh,
            };
            if wanted {
                let token = Arc::new(token);
                cache.remember(key, Arc::clone(&token), client_id.as_deref(), now);
                return LoadOutcome::FromShared(token);
            }
        }
        match tier.lease(&store_key).await {
            Lease::Held => {}
            Lease::Unavailable => {
                return self
                    .fetch_upstream(route, endpoint, key, forward, purpose, deadline)
                    .await;
            }
            // Another replica is refreshing this key; its token will come
            // through the shared tier. Back off like a failed refresh.
            Lease::Busy if purpose == Purpose::Refresh => return LoadOutcome::Deferred,
            Lease::Busy => {
                let now = || cache.now();
                match tier
                    .wait_for(&store_key, cache.policy(), now, deadline)
                    .await
                {
                    Waited::Arrived(token) => {
                        let token = Arc::new(token);
                        cache.remember(key, Arc::clone(&token), client_id.as_deref(), now());
                        return LoadOutcome::FromShared(token);
                    }
                    Waited::GaveUp => {
                        return self
                            .fetch_upstream(route, endpoint, key, forward, purpose, deadline)
                            .await;
                    }
                    Waited::LeaseTaken => {}
                }
            }
        }
        // The lease is renewed while the fetch runs, so it can be short: a
        // replica that dies here gives the key up within the lease time.
        let fetch = self.fetch_upstream(route, endpoint, key, forward, purpose, deadline);
        let outcome = tokio::select! {
            outcome = fetch => outcome,
            never = tier.keep_lease(&store_key) => match never {},
        };
        if let LoadOutcome::Stored(fetched) = &outcome {
            tier.write(&store_key, &fetched.token).await;
        }
        tier.release(&store_key).await;
        outcome
    }

    /// One exchange with the endpoint, by `deadline`; a cacheable answer
    /// goes into the memory tier before the load ends (so a caller that
    /// finds no load in progress finds the entry).
    async fn fetch_upstream(
        &self,
        route: &str,
        endpoint: &dyn TokenEndpoint,
        key: CacheKey,
        forward: Forward,
        purpose: Purpose,
        deadline: Instant,
    ) -> LoadOutcome {
        let cache = &*self.cache;
        let priority = match purpose {
            Purpose::Load => Priority::Caller,
            Purpose::Refresh => Priority::Background,
        };
        let started = Instant::now();
        let result = endpoint.fetch(&forward.request, priority, deadline).await;
        let elapsed_ms = started.elapsed().as_millis();
        let fingerprint = key.fingerprint();
        let client_id = forward.client_id.as_deref();
        let logged_id = client_id.unwrap_or("");
        let answer = match result {
            Ok(answer) => answer,
            Err(error) => {
                if matches!(error, FetchError::CircuitOpen { .. }) {
                    self.metrics.breaker_rejected();
                }
                tracing::warn!(
                    route, client_id = logged_id, key = %fingerprint, ?purpose, elapsed_ms,
                    error = %error, "no token from the token endpoint"
                );
                return LoadOutcome::Failed(ProxyError::from_fetch(error));
            }
        };
        let now = cache.now();
        if answer.status == StatusCode::OK {
            let format = endpoint.format();
            return match format.entry(&answer.body, now, cache.policy()) {
                Ok(token) if !cache.memory().fits(&token) => {
                    tracing::warn!(
                        route, client_id = logged_id, key = %fingerprint, ?purpose,
                        bytes = answer.body.len(), max_entry_bytes = cache.memory().max_entry_bytes(),
                        "the token answer is too large to cache; passed through"
                    );
                    LoadOutcome::TooLarge(answer)
                }
                Ok(token) => {
                    let token = Arc::new(token);
                    cache.remember(key, Arc::clone(&token), client_id, now);
                    cache.forget_rejection(&key);
                    tracing::info!(
                        route, client_id = logged_id, key = %fingerprint, ?purpose, elapsed_ms,
                        expires_in = token.expires_in(now), "token fetched and cached"
                    );
                    LoadOutcome::Stored(Fetched::new(token, now))
                }
                Err(reason) => {
                    tracing::warn!(
                        route, client_id = logged_id, key = %fingerprint, ?purpose, %reason,
                        "the token endpoint's 200 answer is not cacheable"
                    );
                    if format.is_not_a_token(&answer.body, cache.policy()) {
                        LoadOutcome::FailedAnswer(answer)
                    } else {
                        LoadOutcome::PassThrough(answer)
                    }
                }
            };
        }
        let class = AnswerClass::of(answer.status.as_u16(), &answer.body);
        tracing::info!(
            route, client_id = logged_id, key = %fingerprint, ?purpose, elapsed_ms,
            status = answer.status.as_u16(), ?class, "the token endpoint refused; not cached"
        );
        match class {
            AnswerClass::ClientRejected => {
                let answer = Arc::new(answer);
                cache.remember_rejection(key, Arc::clone(&answer), now);
                LoadOutcome::PassThrough(Arc::unwrap_or_clone(answer))
            }
            AnswerClass::Throttled | AnswerClass::ServerError => LoadOutcome::FailedAnswer(answer),
            _ => LoadOutcome::PassThrough(answer),
        }
    }
}

#[cfg(test)]
mod tests {
    //! The loading policy against scripted endpoints and an in-process
    //! shared store: no sockets, time on a manual clock (and tokio's paused
    //! clock where the shared tier waits).
    #![allow(clippy::unwrap_used, clippy::expect_used)]

    use std::collections::VecDeque;
    use std::sync::Mutex;
    use std::sync::atomic::{AtomicU64, Ordering};

    use futures::future::FutureExt as _;
    use http::HeaderMap;
    use tokencache_core::{
        Clock, EncryptionKey, FreshnessPolicy, HmacKey, KeyDeriver, KeyRing, LeaseOwner,
        SharedStore, UnixMillis,
    };
    use tokencache_memory_store::{InProcessSharedStore, MemoryStore};
    use tokencache_upstream::UpstreamError;

    use super::*;
    use crate::endpoint::Exchange;
    use crate::negative::NegativeCache;
    use crate::shared_tier::{SharedStoreConfig, SharedTier};

    const ROUTE: &str = "/oauth2/token";
    const FORM: &[u8] = b"application/x-www-form-urlencoded";
    const BODY: &[u8] = b"grant_type=client_credentials&client_id=app&client_secret=s&scope=a";

    /// Time that moves only when a test moves it.
    #[derive(Debug, Clone)]
    struct TestClock(Arc<AtomicU64>);

    impl TestClock {
        fn new() -> Self {
            Self(Arc::new(AtomicU64::new(1_700_000_000_000)))
        }

        fn advance(&self, by: Duration) {
            let millis = u64::try_from(by.as_millis()).unwrap();
            self.0.fetch_add(millis, Ordering::SeqCst);
        }
    }

    impl Clock for TestClock {
        fn now(&self) -> UnixMillis {
            UnixMillis(self.0.load(Ordering::SeqCst))
        }
    }

    /// Wall-clock time that follows tokio's clock, so a test on paused
    /// time moves the store's lease expiries too.
    #[derive(Debug)]
    struct TokioClock {
        base: UnixMillis,
        start: Instant,
    }

    impl TokioClock {
        fn shared() -> Arc<dyn Clock> {
            Arc::new(Self {
                base: UnixMillis(1_700_000_000_000),
                start: Instant::now(),
            })
        }
    }

    impl Clock for TokioClock {
        fn now(&self) -> UnixMillis {
            self.base.plus(self.start.elapsed())
        }
    }

    /// An endpoint that answers from a script, after `delay` (or fails at
    /// its deadline, as the real one does), and records what it was sent.
    #[derive(Default)]
    struct Scripted {
        answers: Mutex<VecDeque<Result<UpstreamResponse, FetchError>>>,
        sent: Mutex<Vec<(Bytes, Priority)>>,
        delay: Duration,
    }

    impl Scripted {
        fn with(answers: impl IntoIterator<Item = Result<UpstreamResponse, FetchError>>) -> Self {
            Self {
                answers: Mutex::new(answers.into_iter().collect()),
                sent: Mutex::default(),
                delay: Duration::ZERO,
            }
        }

        fn delayed(mut self, delay: Duration) -> Self {
            self.delay = delay;
            self
        }

        fn sent(&self) -> Vec<(Bytes, Priority)> {
            self.sent.lock().unwrap().clone()
        }
    }

    impl TokenEndpoint for Scripted {
        fn fetch<'a>(
            &'a self,
            request: &'a FetchRequest,
            priority: Priority,
            deadline: Instant,
        ) -> Exchange<'a> {
            self.sent
                .lock()
                .unwrap()
                .push((request.body.clone(), priority));
            let next = self.answers.lock().unwrap().pop_front();
            let delay = self.delay;
            async move {
                if Instant::now() + delay > deadline {
                    tokio::time::sleep_until(deadline).await;
                    return Err(FetchError::Upstream(UpstreamError::Config(
                        "deadline passed".into(),
                    )));
                }
                tokio::time::sleep(delay).await;
                next.expect("the script ran out")
            }
            .boxed()
        }

        fn send_once<'a>(&'a self, request: &'a FetchRequest, deadline: Instant) -> Exchange<'a> {
            self.fetch(request, Priority::Caller, deadline)
        }
    }

    fn answer(
        status: u16,
        headers: &[(&'static str, &'static str)],
        body: &str,
    ) -> UpstreamResponse {
        let mut map = HeaderMap::new();
        for (name, value) in headers {
            map.insert(*name, HeaderValue::from_static(value));
        }
        UpstreamResponse {
            status: StatusCode::from_u16(status).unwrap(),
            headers: map,
            body: Bytes::copy_from_slice(body.as_bytes()),
        }
    }

    fn token(name: &str, expires_in: u64) -> Result<UpstreamResponse, FetchError> {
        Ok(answer(
            200,
            &[],
            &format!(
                r#"{{"access_token":"{name}","expires_in":{expires_in},"token_type":"Bearer"}}"#
            ),
        ))
    }

    /// One replica's cache and loader, over `shared` when given.
    struct Replica {
        cache: Arc<TokenCache>,
        loader: Loader,
        clock: Arc<dyn Clock>,
    }

    impl Replica {
        fn new(clock: &TestClock, shared: Option<Arc<InProcessSharedStore>>) -> Self {
            Self::with_memory(clock, shared, MemoryStore::new(1 << 20))
        }

        fn with_memory(
            clock: &TestClock,
            shared: Option<Arc<InProcessSharedStore>>,
            memory: MemoryStore,
        ) -> Self {
            Self::build(
                Arc::new(clock.clone()),
                shared,
                memory,
                Duration::from_secs(15),
            )
        }

        /// A replica on `clock` over `shared`, whose loads may take
        /// `deadline`.
        fn over(
            clock: &Arc<dyn Clock>,
            shared: &Arc<InProcessSharedStore>,
            deadline: Duration,
        ) -> Self {
            let shared = Some(Arc::clone(shared));
            Self::build(
                Arc::clone(clock),
                shared,
                MemoryStore::new(1 << 20),
                deadline,
            )
        }

        fn build(
            clock: Arc<dyn Clock>,
            shared: Option<Arc<InProcessSharedStore>>,
            memory: MemoryStore,
            deadline: Duration,
        ) -> Self {
            let metrics = ProxyMetrics::new();
            let keys = KeyRing::new(EncryptionKey::from_bytes([3; 32]), Vec::new());
            let tier = shared
                .map(|store| SharedTier::new(SharedStoreConfig::new(store, keys), metrics.clone()));
            let cache = Arc::new(TokenCache::new(
                memory,
                tier,
                NegativeCache::new(Duration::from_secs(5)),
                KeyDeriver::new(&HmacKey::from_bytes([7; 32])),
                Arc::clone(&clock),
                FreshnessPolicy::default(),
            ));
            let loader = Loader::new(Arc::clone(&cache), metrics, deadline);
            Self {
                cache,
                loader,
                clock,
            }
        }

        fn key(&self) -> CacheKey {
            let request = TokenRequest::parse(Some(FORM), None, None, BODY).unwrap();
            self.cache.key(ROUTE, &request)
        }

        async fn load(&self, endpoint: &Scripted, purpose: Purpose) -> LoadOutcome {
            let request = TokenRequest::parse(Some(FORM), None, None, BODY).unwrap();
            let forward = Forward::of(&request).unwrap();
            self.loader
                .load(ROUTE, endpoint, self.key(), forward, purpose)
                .await
        }

        fn cached_token(&self) -> Option<Arc<CachedToken>> {
            self.cache.memory().get(&self.key(), self.clock.now())
        }
    }

    fn in_process_store(clock: &TestClock) -> Arc<InProcessSharedStore> {
        Arc::new(InProcessSharedStore::new(Arc::new(clock.clone())))
    }

    #[tokio::test]
    async fn a_token_is_fetched_with_the_canonical_request_and_stored() {
        let replica = Replica::new(&TestClock::new(), None);
        let endpoint = Scripted::with([token("t1", 3600)]);
        let outcome = replica.load(&endpoint, Purpose::Load).await;
        assert!(matches!(outcome, LoadOutcome::Stored(_)), "{outcome:?}");
        assert!(replica.cached_token().is_some());
        let sent = endpoint.sent();
        assert_eq!(
            sent,
            [(
                Bytes::from_static(
                    b"grant_type=client_credentials&client_id=app&client_secret=s&scope=a"
                ),
                Priority::Caller
            )]
        );
    }

    #[tokio::test]
    async fn another_replicas_entry_in_the_shared_tier_is_used_without_fetching() {
        let clock = TestClock::new();
        let store = in_process_store(&clock);
        let (a, b) = (
            Replica::new(&clock, Some(Arc::clone(&store))),
            Replica::new(&clock, Some(store)),
        );
        let outcome = b
            .load(&Scripted::with([token("from-b", 3600)]), Purpose::Load)
            .await;
        assert!(matches!(outcome, LoadOutcome::Stored(_)));

        let untouched = Scripted::default();
        let outcome = a.load(&untouched, Purpose::Load).await;
        assert!(matches!(outcome, LoadOutcome::FromShared(_)), "{outcome:?}");
        assert!(untouched.sent().is_empty());
        assert!(a.cached_token().is_some(), "kept in A's memory tier");
    }

    #[tokio::test(start_paused = true)]
    async fn a_lease_held_elsewhere_defers_a_refresh_and_makes_a_load_wait_for_its_token() {
        let clock = TestClock::new();
        let store = in_process_store(&clock);
        let (a, b) = (
            Replica::new(&clock, Some(Arc::clone(&store))),
            Replica::new(&clock, Some(store)),
        );
        let tier_b = b.cache.tier().unwrap();
        let store_key = b.cache.store_key(&b.key(), Some("app"));
        assert_eq!(tier_b.lease(&store_key).await, Lease::Held);

        let untouched = Scripted::default();
        let outcome = a.load(&untouched, Purpose::Refresh).await;
        assert!(matches!(outcome, LoadOutcome::Deferred), "{outcome:?}");

        // B's fetch lands in the shared tier while A waits for it.
        let b_token = CachedToken::from_response(
            br#"{"access_token":"from-b","expires_in":3600}"#,
            clock.now(),
            &FreshnessPolicy::default(),
        )
        .unwrap();
        let writer = async {
            tokio::time::sleep(Duration::from_millis(300)).await;
            tier_b.write(&store_key, &b_token).await;
            tier_b.release(&store_key).await;
        };
        let (outcome, ()) = tokio::join!(a.load(&untouched, Purpose::Load), writer);
        assert!(matches!(outcome, LoadOutcome::FromShared(_)), "{outcome:?}");
        assert!(untouched.sent().is_empty(), "A never asked the upstream");
    }

    #[tokio::test]
    async fn a_budget_refusal_is_an_error_and_nothing_is_remembered() {
        let replica = Replica::new(&TestClock::new(), None);
        let endpoint = Scripted::with([
            Err(FetchError::BudgetExhausted {
                retry_after: Duration::from_secs(2),
            }),
            token("t1", 3600),
        ]);
        let outcome = replica.load(&endpoint, Purpose::Load).await;
        assert!(
            matches!(
                outcome,
                LoadOutcome::Failed(ProxyError::BudgetExhausted { .. })
            ),
            "{outcome:?}"
        );
        assert!(replica.cached_token().is_none());
        assert!(
            replica
                .cache
                .rejection(&replica.key(), replica.clock.now())
                .is_none()
        );
        // The next load goes upstream again.
        let outcome = replica.load(&endpoint, Purpose::Load).await;
        assert!(matches!(outcome, LoadOutcome::Stored(_)));
    }

    #[tokio::test]
    async fn a_throttle_is_never_cached_and_the_next_load_succeeds() {
        let replica = Replica::new(&TestClock::new(), None);
        let endpoint = Scripted::with([
            Ok(answer(
                429,
                &[("retry-after", "1")],
                r#"{"error":"slow_down"}"#,
            )),
            token("t1", 3600),
        ]);
        let outcome = replica.load(&endpoint, Purpose::Load).await;
        assert!(
            matches!(outcome, LoadOutcome::FailedAnswer(_)),
            "{outcome:?}"
        );
        assert!(replica.cached_token().is_none());
        assert!(
            replica
                .cache
                .rejection(&replica.key(), replica.clock.now())
                .is_none()
        );
        let outcome = replica.load(&endpoint, Purpose::Load).await;
        assert!(matches!(outcome, LoadOutcome::Stored(_)), "{outcome:?}");
    }

    #[tokio::test]
    async fn a_failed_refresh_leaves_the_aging_token_servable() {
        let clock = TestClock::new();
        let replica = Replica::new(&clock, None);
        let endpoint = Scripted::with([token("old", 100), Ok(answer(503, &[], "unavailable"))]);
        replica.load(&endpoint, Purpose::Load).await;
        let before = replica.cached_token().unwrap();
        clock.advance(Duration::from_secs(80)); // aging
        assert_eq!(before.freshness(clock.now()), Freshness::Aging);
        let outcome = replica.load(&endpoint, Purpose::Refresh).await;
        assert!(!outcome.is_success(), "{outcome:?}");
        assert_eq!(endpoint.sent()[1].1, Priority::Background);
        let after = replica.cached_token().expect("still served while aging");
        assert_eq!(after.fetched_at(), before.fetched_at());
    }

    #[tokio::test]
    async fn a_client_rejection_is_remembered_until_the_credentials_work() {
        let replica = Replica::new(&TestClock::new(), None);
        let endpoint = Scripted::with([
            Ok(answer(400, &[], r#"{"error":"invalid_client"}"#)),
            token("t1", 3600),
        ]);
        let outcome = replica.load(&endpoint, Purpose::Load).await;
        assert!(
            matches!(outcome, LoadOutcome::PassThrough(_)),
            "{outcome:?}"
        );
        let now = replica.clock.now();
        assert!(replica.cache.rejection(&replica.key(), now).is_some());
        let outcome = replica.load(&endpoint, Purpose::Load).await;
        assert!(matches!(outcome, LoadOutcome::Stored(_)));
        assert!(replica.cache.rejection(&replica.key(), now).is_none());
    }

    #[tokio::test]
    async fn a_token_too_large_for_the_store_is_passed_on_uncached() {
        let clock = TestClock::new();
        let replica = Replica::with_memory(
            &clock,
            None,
            MemoryStore::new(1 << 20).with_max_entry_bytes(256),
        );
        let endpoint = Scripted::with([token(&"x".repeat(1024), 3600)]);
        let outcome = replica.load(&endpoint, Purpose::Load).await;
        assert!(matches!(outcome, LoadOutcome::TooLarge(_)), "{outcome:?}");
        assert!(replica.cached_token().is_none());
    }

    /// The lease time of [`SharedStoreConfig::new`].
    const LEASE: Duration = Duration::from_secs(3);

    #[tokio::test(start_paused = true)]
    async fn a_holder_renews_its_lease_while_a_slow_load_runs() {
        let clock = TokioClock::shared();
        let store = Arc::new(InProcessSharedStore::new(Arc::clone(&clock)));
        let deadline = Duration::from_secs(15);
        let (a, b) = (
            Replica::over(&clock, &store, deadline),
            Replica::over(&clock, &store, deadline),
        );
        let slow = Scripted::with([token("from-a", 3600)]).delayed(Duration::from_secs(10));
        let untouched = Scripted::default();
        let store_key = a.cache.store_key(&a.key(), Some("app"));
        let later = async {
            // Well past the lease time: only renewals keep it A's.
            tokio::time::sleep(LEASE * 2 + Duration::from_secs(1)).await;
            let stranger = LeaseOwner::new("stranger");
            let free = store.try_lease(&store_key, &stranger, LEASE).await.unwrap();
            (free, b.load(&untouched, Purpose::Load).await)
        };
        let (from_a, (free, from_b)) = tokio::join!(a.load(&slow, Purpose::Load), later);
        assert!(!free, "the holder's lease was renewed");
        assert!(matches!(from_a, LoadOutcome::Stored(_)), "{from_a:?}");
        assert!(matches!(from_b, LoadOutcome::FromShared(_)), "{from_b:?}");
        assert!(untouched.sent().is_empty(), "B waited for A's token");
        assert_eq!(slow.sent().len(), 1);
    }

    #[tokio::test(start_paused = true)]
    async fn a_waiter_takes_over_within_the_lease_time_when_the_holder_dies() {
        let clock = TokioClock::shared();
        let store = Arc::new(InProcessSharedStore::new(Arc::clone(&clock)));
        let deadline = Duration::from_secs(15);
        let a = Arc::new(Replica::over(&clock, &store, deadline));
        let b = Replica::over(&clock, &store, deadline);
        let hung =
            Arc::new(Scripted::with([token("never", 3600)]).delayed(Duration::from_secs(60)));
        let holder = tokio::spawn({
            let (a, hung) = (Arc::clone(&a), Arc::clone(&hung));
            async move { a.load(&hung, Purpose::Load).await }
        });
        // A dies mid-load, after renewing its lease once: nothing releases it.
        tokio::time::sleep(Duration::from_millis(1_500)).await;
        holder.abort();

        let upstream = Duration::from_secs(3);
        let endpoint = Scripted::with([token("from-b", 3600)]).delayed(upstream);
        let started = Instant::now();
        let outcome = b.load(&endpoint, Purpose::Load).await;
        let waited = started.elapsed();
        assert!(matches!(outcome, LoadOutcome::Stored(_)), "{outcome:?}");
        assert_eq!(
            endpoint.sent().len(),
            1,
            "one upstream request after the takeover"
        );
        assert!(
            waited >= upstream + Duration::from_secs(1),
            "B waited for the lease to lapse: {waited:?}"
        );
        assert!(
            waited <= LEASE + upstream + Duration::from_millis(250),
            "took over within the lease time: {waited:?}"
        );
    }

    #[tokio::test(start_paused = true)]
    async fn a_waiters_whole_load_stays_within_its_deadline() {
        let clock = TokioClock::shared();
        let store = Arc::new(InProcessSharedStore::new(Arc::clone(&clock)));
        // A live holder whose load outlasts B's deadline.
        let a = Replica::over(&clock, &store, Duration::from_secs(120));
        let b = Replica::over(&clock, &store, Duration::from_secs(15));
        let slow = Scripted::with([token("late", 3600)]).delayed(Duration::from_secs(60));
        // Once it gives up waiting, its own fetch has no time left.
        let endpoint = Scripted::with([token("unused", 3600)]).delayed(Duration::from_secs(1));
        let waiter = async {
            tokio::time::sleep(Duration::from_millis(100)).await;
            let started = Instant::now();
            let outcome = b.load(&endpoint, Purpose::Load).await;
            (outcome, started.elapsed())
        };
        let (from_a, (from_b, waited)) = tokio::join!(a.load(&slow, Purpose::Load), waiter);
        assert!(matches!(from_a, LoadOutcome::Stored(_)), "{from_a:?}");
        assert!(matches!(from_b, LoadOutcome::Failed(_)), "{from_b:?}");
        assert!(
            waited <= Duration::from_millis(15_100),
            "the waiter kept to its deadline: {waited:?}"
        );
    }
}
