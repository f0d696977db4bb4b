//! Which cache keys belong to which client, so one client's tokens can be
//! dropped (a leaked secret, a revoked client) without purging everyone.
//!
//! Keys are HMACs: nothing in a key says whose it is. The proxy notes the
//! client id (not a secret) beside each key it stores, on the miss path
//! only; the hit path never touches this index.

use std::collections::{HashMap, HashSet};
use std::sync::{Mutex, PoisonError};

use tokencache_core::CacheKey;

#[derive(Default)]
pub(crate) struct ClientIndex {
    keys: Mutex<HashMap<Box<str>, HashSet<CacheKey>>>,
}

impl ClientIndex {
    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<Box<str>, HashSet<CacheKey>>> {
        self.keys.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Notes that `key` holds a token of `client_id`.
    pub(crate) fn record(&self, client_id: &str, key: CacheKey) {
        let mut keys = self.lock();
        match keys.get_mut(client_id) {
            Some(set) => {
                set.insert(key);
            }
            None => {
                keys.insert(client_id.into(), HashSet::from([key]));
            }
        }
    }

    /// Forgets and returns every key of `client_id`.
    pub(crate) fn take(&self, client_id: &str) -> Vec<CacheKey> {
        self.lock()
            .remove(client_id)
            .map(|set| set.into_iter().collect())
            .unwrap_or_default()
    }

    /// Forgets and returns every key of the clients for which `matches`
    /// is true (a purge names a client by its tag, not its id).
    pub(crate) fn take_where(&self, mut matches: impl FnMut(&str) -> bool) -> Vec<CacheKey> {
        let mut keys = self.lock();
        let clients: Vec<Box<str>> = keys.keys().filter(|id| matches(id)).cloned().collect();
        clients
            .iter()
            .filter_map(|client| keys.remove(client))
            .flatten()
            .collect()
    }

    /// Forgets every key.
    pub(crate) fn clear(&self) {
        self.lock().clear();
    }

    /// Forgets keys for which `live` is false (their entries are gone).
    pub(crate) fn retain(&self, mut live: impl FnMut(&CacheKey) -> bool) {
        self.lock().retain(|_, set| {
            set.retain(&mut live);
            !set.is_empty()
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn records_takes_and_prunes() {
        let index = ClientIndex::default();
        let (a, b, c) = (
            CacheKey::from_bytes([1; 32]),
            CacheKey::from_bytes([2; 32]),
            CacheKey::from_bytes([3; 32]),
        );
        index.record("one", a);
        index.record("one", b);
        index.record("two", c);
        index.retain(|key| *key != b);
        index.record("three", b);
        assert_eq!(index.take_where(|id| id == "three"), vec![b]);
        assert!(index.take_where(|id| id == "three").is_empty());
        assert_eq!(index.take("one"), vec![a]);
        assert!(index.take("one").is_empty());
        index.clear();
        assert!(index.take("two").is_empty());
    }
}
