//! The shared tier: a store shared by a fleet (Redis, DynamoDB) behind the
//! memory tier, holding sealed entries, with leases so a fleet fetches each
//! key once, and a purge log so a purge reaches every replica.
//!
//! Every failure of the shared store degrades to what a lone proxy does
//! (memory tier and upstream); none fails a request. Failures are counted,
//! logged and shown in `/readyz`; after a run of them the store's breaker
//! opens and the request path stops waiting on the store, until the
//! background poll of the purge log (which doubles as the breaker's probe)
//! finds it answering again.

use std::convert::Infallible;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use tokencache_core::{
    CachedToken, ClientTag, FreshnessPolicy, KeyRing, LeaseOwner, PurgeMark, PurgeScope,
    SharedStore, StoreError, StoreKey, UnixMillis,
};

use tokio::time::Instant;
use tracing::Instrument as _;

use crate::metrics::ProxyMetrics;
use crate::spans;
use crate::store_breaker::{Change, StoreBreaker};

/// A shared store and how the proxy uses it.
#[derive(Clone)]
pub struct SharedStoreConfig {
    /// The store.
    pub store: Arc<dyn SharedStore>,
    /// The keys entries are sealed with.
    pub keys: KeyRing,
    /// How long the memory tier keeps an entry before asking the shared
    /// store again (never past the entry's own end of service). Default
    /// 30 s: a refresh or purge by another replica is seen within it, and
    /// the hit path rarely leaves the process.
    pub l1_ttl: Duration,
    /// The longest a shared-store operation may take before the proxy
    /// carries on without it. Default 500 ms. A store that answers more
    /// slowly than this is treated as a failing one.
    pub op_timeout: Duration,
    /// How long a load's lease lasts. The holder renews it every third of
    /// this while its load runs, so a holder that dies gives the key up
    /// within this time and a waiting replica takes over. Default 3 s.
    pub lease_ttl: Duration,
    /// How often each replica reads the fleet's purge log, which also
    /// probes the store while the breaker is open. A purge on one replica
    /// leaves every replica's memory tier within this plus one store
    /// operation. Default 500 ms.
    pub purge_poll: Duration,
    /// Consecutive failed (or timed-out) store operations that open the
    /// breaker: then requests stop waiting on the store until a probe
    /// succeeds. 0 never opens it. Default 3.
    pub breaker_failures: u32,
}

impl SharedStoreConfig {
    /// A configuration with the default timings.
    #[must_use]
    pub fn new(store: Arc<dyn SharedStore>, keys: KeyRing) -> Self {
        Self {
            store,
            keys,
            l1_ttl: Duration::from_secs(30),
            op_timeout: Duration::from_millis(500),
            lease_ttl: Duration::from_secs(3),
            purge_poll: Duration::from_millis(500),
            breaker_failures: 3,
        }
    }
}

impl std::fmt::Debug for SharedStoreConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SharedStoreConfig")
            .field("store", &self.store.name())
            .field(
                "active_key_id",
                &format_args!("{:08x}", self.keys.active_id()),
            )
            .field("l1_ttl", &self.l1_ttl)
            .field("op_timeout", &self.op_timeout)
            .field("lease_ttl", &self.lease_ttl)
            .field("purge_poll", &self.purge_poll)
            .field("breaker_failures", &self.breaker_failures)
            .finish()
    }
}

/// How long a purge's store operations may take (a scan of every entry on
/// every node, and the announcement to the fleet).
const PURGE_WITHIN: Duration = Duration::from_secs(10);

/// What taking a lease gave.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Lease {
    /// This process holds it: fetch, write, release.
    Held,
    /// Another replica holds it: wait for its value.
    Busy,
    /// The store did not answer: carry on alone.
    Unavailable,
}

pub(crate) struct SharedTier {
    store: Arc<dyn SharedStore>,
    keys: KeyRing,
    owner: LeaseOwner,
    pub(crate) l1_ttl: Duration,
    op_timeout: Duration,
    lease_ttl: Duration,
    purge_poll: Duration,
    metrics: ProxyMetrics,
    breaker: StoreBreaker,
    last_error: Mutex<Option<String>>,
    /// The purge log as this replica last read it; `None` until the first
    /// read. Held across a read or an announcement, so the two never
    /// interleave (purges are rare; the wait is one store operation).
    seen: tokio::sync::Mutex<Option<PurgeMark>>,
    /// When the purge log was last read (the breaker's probe), so the
    /// request path can tell whether anyone is probing.
    last_probe: Mutex<Option<Instant>>,
}

impl SharedTier {
    pub(crate) fn new(config: SharedStoreConfig, metrics: ProxyMetrics) -> Self {
        Self {
            store: config.store,
            keys: config.keys,
            owner: LeaseOwner::random(),
            l1_ttl: config.l1_ttl,
            op_timeout: config.op_timeout,
            // A lease shorter than a few renewals would lapse under a live
            // holder whenever one renewal is slow.
            lease_ttl: config.lease_ttl.max(Duration::from_millis(300)),
            purge_poll: config.purge_poll.max(Duration::from_millis(10)),
            metrics,
            breaker: StoreBreaker::new(config.breaker_failures),
            last_error: Mutex::new(None),
            seen: tokio::sync::Mutex::new(None),
            last_probe: Mutex::new(None),
        }
    }

    pub(crate) fn name(&self) -> &'static str {
        self.store.name()
    }

    /// How often the purge log is read (and the store probed).
    pub(crate) fn purge_poll(&self) -> Duration {
        self.purge_poll
    }

    /// Runs one store operation of the request path: not at all while the
    /// breaker is open (`None` at once, no timeout paid; unless nobody
    /// probes, see [`probe_on_the_request_path`](Self::probe_on_the_request_path)),
    /// else as [`run_anyway`](Self::run_anyway).
    async fn run<'a, T, F>(&self, op: &'static str, call: impl FnOnce() -> F) -> Option<T>
    where
        F: std::future::Future<Output = Result<T, StoreError>> + 'a,
    {
        if self.breaker.is_open() && !self.probe_on_the_request_path() {
            return None;
        }
        self.run_anyway(op, call()).await
    }

    /// Runs one store operation under the operation timeout, whatever the
    /// breaker says (probes), and records its outcome.
    async fn run_anyway<T>(
        &self,
        op: &'static str,
        future: impl std::future::Future<Output = Result<T, StoreError>>,
    ) -> Option<T> {
        self.run_within(op, self.op_timeout, future).await
    }

    /// A purge's store operation: an operator waits for it, not a caller,
    /// and it may scan the whole store, so it gets longer than one request
    /// operation.
    async fn run_purge<T>(
        &self,
        op: &'static str,
        future: impl std::future::Future<Output = Result<T, StoreError>>,
    ) -> Option<T> {
        self.run_within(op, self.op_timeout.max(PURGE_WITHIN), future)
            .await
    }

    /// Runs one store operation within `limit` and records its outcome.
    async fn run_within<T>(
        &self,
        op: &'static str,
        limit: Duration,
        future: impl std::future::Future<Output = Result<T, StoreError>>,
    ) -> Option<T> {
        let span = spans::store_operation(self.name(), op);
        let timed = tokio::time::timeout(limit, future).instrument(span.clone());
        let started = tokio::time::Instant::now();
        let answered = timed.await;
        self.metrics.store_operation(
            op,
            started.elapsed(),
            answered.as_ref().is_ok_and(Result::is_ok),
        );
        let result = match answered {
            Ok(result) => result,
            Err(_) => Err(StoreError::Unavailable(format!(
                "no answer within {limit:?}"
            ))),
        };
        match result {
            Ok(value) => {
                let failures = self.breaker.consecutive_failures();
                if self.breaker.success() == Change::Closed {
                    self.metrics.store_breaker(false);
                    tracing::info!(
                        store = self.name(),
                        failures,
                        "shared store is answering again; its breaker is closed"
                    );
                } else if failures > 0 {
                    tracing::info!(store = self.name(), "shared store is answering again");
                }
                Some(value)
            }
            Err(error) => {
                spans::record_store_failure(&span, &error);
                self.metrics.store_error(op);
                let change = self.breaker.failure();
                let failures = self.breaker.consecutive_failures();
                if change == Change::Opened {
                    self.metrics.store_breaker(true);
                    tracing::warn!(
                        store = self.name(), op, failures, %error,
                        probe_every_ms = self.purge_poll.as_millis(),
                        "shared store breaker open: serving from memory and upstream \
                         without waiting on the store until a probe succeeds"
                    );
                } else if failures == 1 || failures.is_power_of_two() {
                    tracing::warn!(
                        store = self.name(), op, failures, %error,
                        "shared store failed; serving from memory and upstream"
                    );
                }
                *self
                    .last_error
                    .lock()
                    .unwrap_or_else(PoisonError::into_inner) = Some(format!("{op}: {error}"));
                None
            }
        }
    }

    /// The entry under `key`, opened and scheduled by `policy`; `None` when
    /// absent, unreadable (counted) or the store failed.
    pub(crate) async fn read(
        &self,
        store_key: &StoreKey,
        policy: &FreshnessPolicy,
    ) -> Option<CachedToken> {
        let sealed = self.run("get", || self.store.get(store_key)).await??;
        let plain = match self.keys.open(store_key, &sealed) {
            Ok(plain) => plain,
            Err(error) => {
                self.metrics.store_unreadable();
                tracing::warn!(store = self.name(), key = ?store_key, %error,
                    "shared entry cannot be opened; treated as a miss");
                return None;
            }
        };
        match CachedToken::decode(&plain, policy) {
            Ok(token) => Some(token),
            Err(error) => {
                tracing::debug!(key = ?store_key, %error, "shared entry not servable");
                None
            }
        }
    }

    /// Seals and writes `token` under `key`, kept until the token expires.
    pub(crate) async fn write(&self, store_key: &StoreKey, token: &CachedToken) {
        let sealed = self.keys.seal(store_key, &token.encode());
        self.run("put", || {
            self.store.put(store_key, &sealed, token.expires_at())
        })
        .await;
    }

    /// Deletes every entry of the client tagged `tag`: `None` when the
    /// store failed, else how many when the store can tell.
    pub(crate) async fn clear_client(&self, tag: &ClientTag) -> Option<Option<u64>> {
        self.run_purge("clear", self.store.clear_client(tag)).await
    }

    /// Takes the lease of `key` for the lease time.
    pub(crate) async fn lease(&self, store_key: &StoreKey) -> Lease {
        match self
            .run("lease", || {
                self.store.try_lease(store_key, &self.owner, self.lease_ttl)
            })
            .await
        {
            Some(true) => Lease::Held,
            Some(false) => Lease::Busy,
            None => Lease::Unavailable,
        }
    }

    /// Renews the lease of `key` every third of its time, for as long as
    /// it is polled: run it beside the load that holds the lease, and drop
    /// it when the load ends. A renewal that fails is logged; the load
    /// carries on (at worst another replica fetches the key too).
    pub(crate) async fn keep_lease(&self, store_key: &StoreKey) -> Infallible {
        let every = self.lease_ttl / 3;
        loop {
            tokio::time::sleep(every).await;
            if self.lease(store_key).await != Lease::Held {
                tracing::debug!(store = self.name(), key = ?store_key,
                    "lease not renewed; another replica may fetch this key too");
            }
        }
    }

    pub(crate) async fn release(&self, store_key: &StoreKey) {
        self.run("release", || {
            self.store.release_lease(store_key, &self.owner)
        })
        .await;
    }

    /// Waits (bounded by `deadline`) for another replica's fetch of `key`
    /// to land: polls with growing pauses (at most 100 ms apart), and takes
    /// the lease itself if the holder gave it up or died (its lease lapses
    /// within the lease time once it stops renewing).
    pub(crate) async fn wait_for(
        &self,
        key: &StoreKey,
        policy: &FreshnessPolicy,
        now: impl Fn() -> UnixMillis,
        deadline: Instant,
    ) -> Waited {
        let mut pause = Duration::from_millis(10);
        while Instant::now() + pause < deadline {
            tokio::time::sleep(pause).await;
            pause = (pause * 2).min(Duration::from_millis(100));
            if let Some(token) = self.read(key, policy).await
                && token.serve_until() > now()
            {
                return Waited::Arrived(token);
            }
            match self.lease(key).await {
                Lease::Held => return Waited::LeaseTaken,
                Lease::Unavailable => return Waited::GaveUp,
                Lease::Busy => {}
            }
        }
        Waited::GaveUp
    }

    /// Removes every shared entry (a purge): `None` when the store failed,
    /// else how many when the store can tell.
    pub(crate) async fn clear(&self) -> Option<Option<u64>> {
        self.run_purge("clear", self.store.clear()).await
    }

    /// Tells the fleet about a purge through the store's purge log; whether
    /// the store took it.
    pub(crate) async fn announce(&self, scope: PurgeScope) -> bool {
        let mut seen = self.seen.lock().await;
        let Some(mark) = self
            .run_purge("announce_purge", self.store.announce_purge(&scope))
            .await
        else {
            return false;
        };
        // This replica dropped what the purge covers already: when its
        // purge is the only one it has not seen, it need not see it again.
        if let Some(last) = seen.as_ref()
            && (mark.generation == 1
                || (last.epoch == mark.epoch && last.generation + 1 == mark.generation))
        {
            *seen = Some(mark);
        }
        true
    }

    /// Reads the purge log (this is also the breaker's probe): the purges
    /// announced since the last read, which this replica's memory tier must
    /// drop; `None` when the store did not answer. The first read only
    /// notes where the log stands.
    pub(crate) async fn purges_since_last_read(&self) -> Option<Vec<PurgeScope>> {
        let mut seen = self.seen.lock().await;
        self.noted_probe();
        let log = self.run_anyway("purge_log", self.store.purge_log()).await?;
        let news = seen
            .as_ref()
            .map(|mark| log.since(mark))
            .unwrap_or_default();
        *seen = Some(log.mark());
        for _ in &news {
            self.metrics.fleet_purge();
        }
        Some(news)
    }

    /// Whether a request must probe the open breaker itself: only when
    /// nobody has read the purge log for a few polls (an embedder that
    /// serves the routers without [`Proxy::watch_fleet`](crate::Proxy::watch_fleet)),
    /// and then one request per poll, so the store is not skipped forever.
    fn probe_on_the_request_path(&self) -> bool {
        let mut last = self
            .last_probe
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        let now = Instant::now();
        let stale =
            last.is_none_or(|at| now.duration_since(at) > self.purge_poll * 3 + self.op_timeout);
        if stale {
            *last = Some(now);
        }
        stale
    }

    fn noted_probe(&self) {
        *self
            .last_probe
            .lock()
            .unwrap_or_else(PoisonError::into_inner) = Some(Instant::now());
    }

    /// `None` when healthy, else what went wrong last.
    pub(crate) fn trouble(&self) -> Option<String> {
        let failures = self.breaker.consecutive_failures();
        if failures == 0 {
            return None;
        }
        let last = self
            .last_error
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
            .unwrap_or_default();
        let breaker = if self.breaker.is_open() {
            format!(
                "breaker open (requests skip the store; probing every {} ms), ",
                self.purge_poll.as_millis()
            )
        } else {
            String::new()
        };
        Some(format!(
            "{} store degraded: {breaker}{failures} consecutive failures, last {last}",
            self.name()
        ))
    }
}

/// How waiting for another replica's fetch ended.
pub(crate) enum Waited {
    /// Its token arrived.
    Arrived(CachedToken),
    /// The lease became free and is now this process's: fetch.
    LeaseTaken,
    /// Time ran out or the store failed: fetch without the lease.
    GaveUp,
}

#[cfg(test)]
mod tests {
    //! The breaker and the purge log against an in-process store that can
    //! be taken down or slowed, on tokio's paused clock.
    #![allow(clippy::unwrap_used, clippy::expect_used)]

    use std::sync::atomic::{AtomicU8, AtomicUsize, Ordering};

    use tokencache_core::{
        CacheKey, EncryptionKey, HmacKey, KeyDeriver, PurgeLog, StoreFuture, SystemClock,
    };
    use tokencache_memory_store::InProcessSharedStore;
    use tokio::time::Instant;

    use super::*;

    const UP: u8 = 0;
    const DOWN: u8 = 1;
    const SLOW: u8 = 2;

    /// An in-process store that can be up, down or slow (2 s an answer),
    /// and counts the operations it was asked for.
    #[derive(Debug)]
    struct Switchable {
        inner: InProcessSharedStore,
        mode: AtomicU8,
        calls: AtomicUsize,
    }

    impl Switchable {
        fn new() -> Arc<Self> {
            Arc::new(Self {
                inner: InProcessSharedStore::new(Arc::new(SystemClock)),
                mode: AtomicU8::new(UP),
                calls: AtomicUsize::new(0),
            })
        }

        fn set(&self, mode: u8) {
            self.mode.store(mode, Ordering::SeqCst);
        }

        fn calls(&self) -> usize {
            self.calls.load(Ordering::SeqCst)
        }

        fn gate<'a, T: Send + 'a>(&'a self, call: StoreFuture<'a, T>) -> StoreFuture<'a, T> {
            self.calls.fetch_add(1, Ordering::SeqCst);
            let mode = self.mode.load(Ordering::SeqCst);
            Box::pin(async move {
                match mode {
                    DOWN => Err(StoreError::Unavailable("connection refused".into())),
                    SLOW => {
                        tokio::time::sleep(Duration::from_secs(2)).await;
                        call.await
                    }
                    _ => call.await,
                }
            })
        }
    }

    impl SharedStore for Switchable {
        fn name(&self) -> &'static str {
            "switchable"
        }
        fn get<'a>(&'a self, key: &'a StoreKey) -> StoreFuture<'a, Option<Vec<u8>>> {
            self.gate(self.inner.get(key))
        }
        fn put<'a>(
            &'a self,
            key: &'a StoreKey,
            sealed: &'a [u8],
            expires_at: UnixMillis,
        ) -> StoreFuture<'a, ()> {
            self.gate(self.inner.put(key, sealed, expires_at))
        }
        fn delete<'a>(&'a self, key: &'a StoreKey) -> StoreFuture<'a, ()> {
            self.gate(self.inner.delete(key))
        }
        fn try_lease<'a>(
            &'a self,
            key: &'a StoreKey,
            owner: &'a LeaseOwner,
            ttl: Duration,
        ) -> StoreFuture<'a, bool> {
            self.gate(self.inner.try_lease(key, owner, ttl))
        }
        fn release_lease<'a>(
            &'a self,
            key: &'a StoreKey,
            owner: &'a LeaseOwner,
        ) -> StoreFuture<'a, ()> {
            self.gate(self.inner.release_lease(key, owner))
        }
        fn clear(&self) -> StoreFuture<'_, Option<u64>> {
            self.gate(self.inner.clear())
        }
        fn clear_client<'a>(&'a self, tag: &'a ClientTag) -> StoreFuture<'a, Option<u64>> {
            self.gate(self.inner.clear_client(tag))
        }
        fn purge_log(&self) -> StoreFuture<'_, PurgeLog> {
            self.gate(self.inner.purge_log())
        }
        fn announce_purge<'a>(&'a self, scope: &'a PurgeScope) -> StoreFuture<'a, PurgeMark> {
            self.gate(self.inner.announce_purge(scope))
        }
    }

    fn tier(store: Arc<dyn SharedStore>) -> SharedTier {
        let keys = KeyRing::new(EncryptionKey::from_bytes([3; 32]), Vec::new());
        SharedTier::new(SharedStoreConfig::new(store, keys), ProxyMetrics::new())
    }

    fn key() -> StoreKey {
        StoreKey::of(&CacheKey::from_bytes([9; 32]))
    }

    #[tokio::test(start_paused = true)]
    async fn after_three_failures_requests_skip_the_store_until_a_probe_succeeds() {
        let store = Switchable::new();
        let tier = tier(Arc::clone(&store) as Arc<dyn SharedStore>);
        let policy = FreshnessPolicy::default();
        // The fleet watcher's first read, as a served proxy makes at once.
        assert_eq!(tier.purges_since_last_read().await, Some(Vec::new()));
        store.set(DOWN);
        for _ in 0..3 {
            assert!(tier.read(&key(), &policy).await.is_none());
        }
        assert!(tier.trouble().unwrap().contains("breaker open"));
        let asked = store.calls();
        let started = Instant::now();
        assert!(tier.read(&key(), &policy).await.is_none());
        assert_eq!(tier.lease(&key()).await, Lease::Unavailable);
        assert_eq!(started.elapsed(), Duration::ZERO, "no store time paid");
        assert_eq!(store.calls(), asked, "the store was not asked");

        // Probes go through while it is open; one that succeeds closes it.
        assert!(tier.purges_since_last_read().await.is_none());
        store.set(UP);
        assert_eq!(tier.purges_since_last_read().await, Some(Vec::new()));
        assert!(tier.trouble().is_none());
        assert_eq!(tier.lease(&key()).await, Lease::Held);
    }

    #[tokio::test(start_paused = true)]
    async fn without_a_watcher_one_request_a_poll_probes_the_open_breaker() {
        let store = Switchable::new();
        let tier = tier(Arc::clone(&store) as Arc<dyn SharedStore>);
        let policy = FreshnessPolicy::default();
        store.set(DOWN);
        for _ in 0..4 {
            assert!(tier.read(&key(), &policy).await.is_none());
        }
        assert!(tier.trouble().unwrap().contains("breaker open"));
        let asked = store.calls();
        assert!(tier.read(&key(), &policy).await.is_none());
        assert_eq!(store.calls(), asked, "probed a moment ago");
        // Nobody reads the purge log: after a few polls a request probes,
        // finds the store back, and closes the breaker.
        store.set(UP);
        tokio::time::sleep(Duration::from_secs(3)).await;
        assert!(tier.read(&key(), &policy).await.is_none(), "no entry");
        assert_eq!(store.calls(), asked + 1);
        assert!(tier.trouble().is_none());
    }

    #[tokio::test(start_paused = true)]
    async fn a_slow_store_opens_the_breaker_like_a_failing_one() {
        let store = Switchable::new();
        let tier = tier(Arc::clone(&store) as Arc<dyn SharedStore>);
        let policy = FreshnessPolicy::default();
        assert_eq!(tier.purges_since_last_read().await, Some(Vec::new()));
        store.set(SLOW);
        let started = Instant::now();
        for _ in 0..3 {
            assert!(tier.read(&key(), &policy).await.is_none());
        }
        // Each call cut off at the op timeout, not the store's 2 s.
        assert_eq!(started.elapsed(), Duration::from_millis(1_500));
        let started = Instant::now();
        assert!(tier.read(&key(), &policy).await.is_none());
        assert_eq!(started.elapsed(), Duration::ZERO);
        assert!(tier.trouble().unwrap().contains("no answer within"));
    }

    #[tokio::test]
    async fn a_purge_reaches_the_other_replica_once() {
        let store: Arc<dyn SharedStore> =
            Arc::new(InProcessSharedStore::new(Arc::new(SystemClock)));
        let (a, b) = (tier(Arc::clone(&store)), tier(store));
        // The first read only notes where the log stands.
        assert_eq!(b.purges_since_last_read().await, Some(Vec::new()));
        assert_eq!(a.purges_since_last_read().await, Some(Vec::new()));
        let tag = KeyDeriver::new(&HmacKey::from_bytes([1; 32])).client_tag("app");
        assert!(a.announce(PurgeScope::Client(tag)).await);
        assert_eq!(
            b.purges_since_last_read().await,
            Some(vec![PurgeScope::Client(tag)])
        );
        assert_eq!(b.purges_since_last_read().await, Some(Vec::new()));
        assert_eq!(
            a.purges_since_last_read().await,
            Some(Vec::new()),
            "A applied its own purge already"
        );
    }

    #[test]
    fn the_defaults_keep_the_fleets_bounds() {
        let store: Arc<dyn SharedStore> =
            Arc::new(InProcessSharedStore::new(Arc::new(SystemClock)));
        let keys = KeyRing::new(EncryptionKey::from_bytes([3; 32]), vec![]);
        let config = SharedStoreConfig::new(store, keys);
        // A dead holder's key is taken over within 3 s; a purge reaches
        // every replica within a second; the breaker opens.
        assert!(config.lease_ttl <= Duration::from_secs(3));
        assert!(config.purge_poll + config.op_timeout <= Duration::from_secs(1));
        assert!(config.breaker_failures > 0);
    }
}
