//! An in-process [`SharedStore`]: the shared-store contract over a map.
//!
//! Proxies in one process (tests, the benchmark) share tokens through it
//! exactly as a fleet shares them through Redis, leases included; it never
//! leaves the process, so it holds only what a real shared store would
//! (sealed bytes under opaque keys).

use std::collections::HashMap;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use tokencache_core::{
    ClientTag, Clock, LeaseOwner, PurgeLog, PurgeMark, PurgeScope, SharedStore, StoreError,
    StoreFuture, StoreKey, UnixMillis,
};

#[derive(Debug, Default)]
struct Maps {
    entries: HashMap<StoreKey, (Vec<u8>, UnixMillis)>,
    leases: HashMap<StoreKey, (LeaseOwner, UnixMillis)>,
    purges: PurgeLog,
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
}
