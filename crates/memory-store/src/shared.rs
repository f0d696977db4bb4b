//! An in-process [`SharedStore`]: the shared-store contract over a map.
//!
//! Proxies in one process (tests, the benchmark) share tokens through it
//! exactly as a fleet shares them through Redis, leases included; it never
//! leaves the process, so it holds only what a real shared store would
//! (sealed bytes under opaque keys).

use std::collections::HashMap;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use tokencache_core::budget::{
    BudgetLimits, BudgetStanding, BudgetState, SlotAnswer, SlotRequest, ThrottleReport,
};
use tokencache_core::{
    BudgetStore, ClientTag, Clock, LeaseOwner, PurgeLog, PurgeMark, PurgeScope, SharedStore,
    StoreError, StoreFuture, StoreKey, UnixMillis,
};

#[derive(Debug, Default)]
struct Maps {
    entries: HashMap<StoreKey, (Vec<u8>, UnixMillis)>,
    leases: HashMap<StoreKey, (LeaseOwner, UnixMillis)>,
    purges: PurgeLog,
    budgets: HashMap<String, BudgetState>,
    replicas: HashMap<LeaseOwner, UnixMillis>,
}

/// A shared store living in this process.
#[derive(Debug, Clone)]
pub struct InProcessSharedStore {
    maps: Arc<Mutex<Maps>>,
    clock: Arc<dyn Clock>,
}

impl InProcessSharedStore {
    /// An empty store reading time from `clock`.
    #[must_use]
    pub fn new(clock: Arc<dyn Clock>) -> Self {
        Self {
            maps: Arc::default(),
            clock,
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Maps> {
        self.maps.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Replaces the raw bytes under the key whose text is `key` (as
    /// [`raw_entries`](Self::raw_entries) lists it): what an attacker with
    /// write access to a store could do, for tests of tampering.
    pub fn replace_raw(&self, key: &str, value: Vec<u8>) -> bool {
        let mut maps = self.lock();
        match maps.entries.iter_mut().find(|(k, _)| k.as_str() == key) {
            Some((_, (bytes, _))) => {
                *bytes = value;
                true
            }
            None => false,
        }
    }

    /// Every live entry's raw bytes, as a store operator would see them.
    #[must_use]
    pub fn raw_entries(&self) -> Vec<(String, Vec<u8>)> {
        let now = self.clock.now();
        self.lock()
            .entries
            .iter()
            .filter(|(_, (_, until))| now < *until)
            .map(|(key, (value, _))| (key.as_str().to_owned(), value.clone()))
            .collect()
    }
}

fn ready<'a, T: Send + 'a>(value: T) -> StoreFuture<'a, T> {
    Box::pin(std::future::ready(Ok::<T, StoreError>(value)))
}

impl SharedStore for InProcessSharedStore {
    fn name(&self) -> &'static str {
        "in-process"
    }

    fn get<'a>(&'a self, key: &'a StoreKey) -> StoreFuture<'a, Option<Vec<u8>>> {
        let now = self.clock.now();
        let value = self
            .lock()
            .entries
            .get(key)
            .filter(|(_, until)| now < *until)
            .map(|(value, _)| value.clone());
        ready(value)
    }

    fn put<'a>(
        &'a self,
        key: &'a StoreKey,
        sealed: &'a [u8],
        expires_at: UnixMillis,
    ) -> StoreFuture<'a, ()> {
        let mut maps = self.lock();
        if expires_at <= self.clock.now() {
            maps.entries.remove(key);
        } else {
            maps.entries
                .insert(key.clone(), (sealed.to_vec(), expires_at));
        }
        ready(())
    }

    fn delete<'a>(&'a self, key: &'a StoreKey) -> StoreFuture<'a, ()> {
        self.lock().entries.remove(key);
        ready(())
    }

    fn try_lease<'a>(
        &'a self,
        key: &'a StoreKey,
        owner: &'a LeaseOwner,
        ttl: Duration,
    ) -> StoreFuture<'a, bool> {
        let now = self.clock.now();
        let mut maps = self.lock();
        let free = maps
            .leases
            .get(key)
            .is_none_or(|(holder, until)| holder == owner || *until <= now);
        if free {
            maps.leases
                .insert(key.clone(), (owner.clone(), now.plus(ttl)));
        }
        ready(free)
    }

    fn release_lease<'a>(
        &'a self,
        key: &'a StoreKey,
        owner: &'a LeaseOwner,
    ) -> StoreFuture<'a, ()> {
        let mut maps = self.lock();
        if maps
            .leases
            .get(key)
            .is_some_and(|(holder, _)| holder == owner)
        {
            maps.leases.remove(key);
        }
        ready(())
    }

    fn clear(&self) -> StoreFuture<'_, Option<u64>> {
        let mut maps = self.lock();
        let removed = u64::try_from(maps.entries.len()).unwrap_or(u64::MAX);
        maps.entries.clear();
        ready(Some(removed))
    }

    fn clear_client<'a>(&'a self, tag: &'a ClientTag) -> StoreFuture<'a, Option<u64>> {
        let prefix = format!("{}.", tag.as_hex());
        let mut maps = self.lock();
        let before = maps.entries.len();
        maps.entries
            .retain(|key, _| !key.as_str().starts_with(&prefix));
        let removed = u64::try_from(before - maps.entries.len()).unwrap_or(u64::MAX);
        ready(Some(removed))
    }

    fn purge_log(&self) -> StoreFuture<'_, PurgeLog> {
        ready(self.lock().purges.clone())
    }

    fn announce_purge<'a>(&'a self, scope: &'a PurgeScope) -> StoreFuture<'a, PurgeMark> {
        // The lock makes the append atomic; no compare-and-set needed.
        let mut maps = self.lock();
        maps.purges = maps.purges.appended(*scope);
        ready(maps.purges.mark())
    }

    fn budgets(self: Arc<Self>) -> Option<Arc<dyn BudgetStore>> {
        Some(self)
    }
}

impl InProcessSharedStore {
    /// The clock in the microseconds budgets count in.
    fn micros(&self) -> u64 {
        self.clock.now().0.saturating_mul(1_000)
    }

    /// The group's budget, made on first use; the lock makes each decision
    /// atomic.
    fn with_budget<T>(
        &self,
        group: &str,
        limits: &BudgetLimits,
        decide: impl FnOnce(&mut BudgetState, u64) -> T,
    ) -> T {
        let now = self.micros();
        let mut maps = self.lock();
        let state = maps
            .budgets
            .entry(group.to_owned())
            .or_insert_with(|| BudgetState::new(limits, now));
        decide(state, now)
    }
}

impl BudgetStore for InProcessSharedStore {
    fn take_slot<'a>(
        &'a self,
        group: &'a str,
        limits: &'a BudgetLimits,
        request: &'a SlotRequest,
        accepted: u32,
    ) -> StoreFuture<'a, SlotAnswer> {
        ready(self.with_budget(group, limits, |state, now| {
            state.record_accepted(now, accepted);
            state.take_slot(limits, request, now)
        }))
    }

    fn report_throttle<'a>(
        &'a self,
        group: &'a str,
        limits: &'a BudgetLimits,
        report: &'a ThrottleReport,
        accepted: u32,
    ) -> StoreFuture<'a, BudgetStanding> {
        ready(self.with_budget(group, limits, |state, now| {
            state.record_accepted(now, accepted);
            state.throttled(limits, report, now);
            state.standing()
        }))
    }

    fn heartbeat<'a>(&'a self, replica: &'a LeaseOwner, ttl: Duration) -> StoreFuture<'a, u32> {
        let now = self.clock.now();
        let mut maps = self.lock();
        maps.replicas.insert(replica.clone(), now.plus(ttl));
        maps.replicas.retain(|_, until| now < *until);
        ready(u32::try_from(maps.replicas.len()).unwrap_or(u32::MAX))
    }
}
