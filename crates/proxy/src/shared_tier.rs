//! The shared tier: a store shared by a fleet (Redis, DynamoDB) behind the
//! memory tier, holding sealed entries, with leases so a fleet fetches each
//! key once.
//!
//! Every failure of the shared store degrades to what a lone proxy does
//! (memory tier and upstream); none fails a request. Failures are counted,
//! logged and shown in `/readyz`, and the tier recovers when the store does.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use tokencache_core::{
    CachedToken, ClientTag, FreshnessPolicy, KeyRing, LeaseOwner, SharedStore, StoreError,
    StoreKey, UnixMillis,
};

use crate::metrics::ProxyMetrics;

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
    /// carries on without it. Default 500 ms.
    pub op_timeout: Duration,
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
            .finish()
    }
}

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
    metrics: ProxyMetrics,
    consecutive_failures: AtomicU64,
    last_error: Mutex<Option<String>>,
}

impl SharedTier {
    pub(crate) fn new(config: SharedStoreConfig, metrics: ProxyMetrics) -> Self {
        Self {
            store: config.store,
            keys: config.keys,
            owner: LeaseOwner::random(),
            l1_ttl: config.l1_ttl,
            op_timeout: config.op_timeout,
            metrics,
            consecutive_failures: AtomicU64::new(0),
            last_error: Mutex::new(None),
        }
    }

    pub(crate) fn name(&self) -> &'static str {
        self.store.name()
    }

    /// Runs one store operation under the timeout, recording its health.
    async fn run<T>(
        &self,
        op: &'static str,
        future: impl std::future::Future<Output = Result<T, StoreError>>,
    ) -> Option<T> {
        let result = match tokio::time::timeout(self.op_timeout, future).await {
            Ok(result) => result,
            Err(_) => Err(StoreError::Unavailable(format!(
                "no answer within {:?}",
                self.op_timeout
            ))),
        };
        match result {
            Ok(value) => {
                if self.consecutive_failures.swap(0, Ordering::Relaxed) > 0 {
                    tracing::info!(store = self.name(), "shared store is answering again");
                }
                Some(value)
            }
            Err(error) => {
                let failures = self.consecutive_failures.fetch_add(1, Ordering::Relaxed) + 1;
                self.metrics.store_error(op);
                if failures == 1 || failures.is_power_of_two() {
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
        let sealed = self.run("get", self.store.get(store_key)).await??;
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
        self.run(
            "put",
            self.store.put(store_key, &sealed, token.expires_at()),
        )
        .await;
    }

    /// Deletes the entry under `key`.
    /// Deletes every entry of the client tagged `tag`.
    pub(crate) async fn clear_client(&self, tag: &ClientTag) -> Option<u64> {
        self.run("clear", self.store.clear_client(tag))
            .await
            .flatten()
    }

    pub(crate) async fn lease(&self, store_key: &StoreKey, ttl: Duration) -> Lease {
        match self
            .run("lease", self.store.try_lease(store_key, &self.owner, ttl))
            .await
        {
            Some(true) => Lease::Held,
            Some(false) => Lease::Busy,
            None => Lease::Unavailable,
        }
    }

    pub(crate) async fn release(&self, store_key: &StoreKey) {
        self.run("release", self.store.release_lease(store_key, &self.owner))
            .await;
    }

    /// Waits (bounded by `deadline`) for another replica's fetch of `key`
    /// to land: polls with growing pauses, and takes the lease itself if
    /// the holder gave it up or vanished.
    pub(crate) async fn wait_for(
        &self,
        key: &StoreKey,
        policy: &FreshnessPolicy,
        now: impl Fn() -> UnixMillis,
        lease_ttl: Duration,
        deadline: tokio::time::Instant,
    ) -> Waited {
        let mut pause = Duration::from_millis(10);
        while tokio::time::Instant::now() + pause < deadline {
            tokio::time::sleep(pause).await;
            pause = (pause * 2).min(Duration::from_millis(100));
            if let Some(token) = self.read(key, policy).await
                && token.serve_until() > now()
            {
                return Waited::Arrived(token);
            }
            match self.lease(key, lease_ttl).await {
                Lease::Held => return Waited::LeaseTaken,
                Lease::Unavailable => return Waited::GaveUp,
                Lease::Busy => {}
            }
        }
        Waited::GaveUp
    }

    /// Removes every shared entry (a purge).
    pub(crate) async fn clear(&self) -> Option<u64> {
        self.run("clear", self.store.clear()).await.flatten()
    }

    /// `None` when healthy, else what went wrong last.
    pub(crate) fn trouble(&self) -> Option<String> {
        let failures = self.consecutive_failures.load(Ordering::Relaxed);
        if failures == 0 {
            return None;
        }
        let last = self
            .last_error
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
            .unwrap_or_default();
        Some(format!(
            "{} store degraded: {failures} consecutive failures, last {last}",
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
