//! A shared store that fails on demand: outages for tests.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use tokencache_core::{
    ClientTag, LeaseOwner, PurgeLog, PurgeMark, PurgeScope, SharedStore, StoreError, StoreFuture,
    StoreKey, UnixMillis,
};

/// Delegates to `inner`, except while [`OutageSwitch::set_down`] is on,
/// when every operation fails as an unreachable store does.
#[derive(Debug)]
pub struct FlakyStore<S> {
    inner: S,
    down: Arc<AtomicBool>,
}

impl<S: SharedStore> FlakyStore<S> {
    /// A store that works until told otherwise.
    pub fn new(inner: S) -> Self {
        Self {
            inner,
            down: Arc::default(),
        }
    }

    /// A switch for the outage, to keep after the store moves into a proxy.
    #[must_use]
    pub fn switch(&self) -> OutageSwitch {
        OutageSwitch(Arc::clone(&self.down))
    }

    fn gate<'a, T: Send + 'a>(
        &'a self,
        call: impl FnOnce(&'a S) -> StoreFuture<'a, T>,
    ) -> StoreFuture<'a, T> {
        if self.down.load(Ordering::SeqCst) {
            Box::pin(async { Err(StoreError::Unavailable("connection refused".into())) })
        } else {
            call(&self.inner)
        }
    }
}

/// Turns a [`FlakyStore`]'s outage on and off.
#[derive(Debug, Clone)]
pub struct OutageSwitch(Arc<AtomicBool>);

impl OutageSwitch {
    /// Starts (`true`) or ends (`false`) the outage.
    pub fn set_down(&self, down: bool) {
        self.0.store(down, Ordering::SeqCst);
    }
}

impl<S: SharedStore> SharedStore for FlakyStore<S> {
    fn name(&self) -> &'static str {
        "flaky"
    }
    fn get<'a>(&'a self, key: &'a StoreKey) -> StoreFuture<'a, Option<Vec<u8>>> {
        self.gate(|s| s.get(key))
    }
    fn put<'a>(
        &'a self,
        key: &'a StoreKey,
        sealed: &'a [u8],
        expires_at: UnixMillis,
    ) -> StoreFuture<'a, ()> {
        self.gate(|s| s.put(key, sealed, expires_at))
    }
    fn delete<'a>(&'a self, key: &'a StoreKey) -> StoreFuture<'a, ()> {
        self.gate(|s| s.delete(key))
    }
    fn try_lease<'a>(
        &'a self,
        key: &'a StoreKey,
        owner: &'a LeaseOwner,
        ttl: Duration,
    ) -> StoreFuture<'a, bool> {
        self.gate(|s| s.try_lease(key, owner, ttl))
    }
    fn release_lease<'a>(
        &'a self,
        key: &'a StoreKey,
        owner: &'a LeaseOwner,
    ) -> StoreFuture<'a, ()> {
        self.gate(|s| s.release_lease(key, owner))
    }
    fn clear(&self) -> StoreFuture<'_, Option<u64>> {
        self.gate(|s| s.clear())
    }
    fn clear_client<'a>(&'a self, tag: &'a ClientTag) -> StoreFuture<'a, Option<u64>> {
        self.gate(|s| s.clear_client(tag))
    }
    fn purge_log(&self) -> StoreFuture<'_, PurgeLog> {
        self.gate(|s| s.purge_log())
    }
    fn announce_purge<'a>(&'a self, scope: &'a PurgeScope) -> StoreFuture<'a, PurgeMark> {
        self.gate(|s| s.announce_purge(scope))
    }
}
