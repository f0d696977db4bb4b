//! The negative cache: a client's rejection remembered briefly.
//!
//! `invalid_client`, `invalid_scope` and `unauthorized_client` answers are
//! remembered per key for a few seconds, so a crash-looping client with a
//! wrong secret cannot burn the upstream's quota. A different secret is a
//! different key, so a rotated secret works at once.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use tokencache_core::{CacheKey, UnixMillis};
use tokencache_upstream::UpstreamResponse;

/// Remembered rejections at most; beyond it new ones are not remembered
/// (the cache degrades to asking upstream, it does not grow without bound).
const MAX_ENTRIES: usize = 10_000;

pub(crate) struct NegativeCache {
    ttl: Duration,
    entries: Mutex<HashMap<CacheKey, (Arc<UpstreamResponse>, UnixMillis)>>,
}

impl NegativeCache {
    pub(crate) fn new(ttl: Duration) -> Self {
        Self {
            ttl,
            entries: Mutex::new(HashMap::new()),
        }
    }

    fn lock(
        &self,
    ) -> std::sync::MutexGuard<'_, HashMap<CacheKey, (Arc<UpstreamResponse>, UnixMillis)>> {
        self.entries.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// The remembered rejection of `key`, if still valid at `now`.
    pub(crate) fn get(&self, key: &CacheKey, now: UnixMillis) -> Option<Arc<UpstreamResponse>> {
        if self.ttl.is_zero() {
            return None;
        }
        let entries = self.lock();
        let (answer, until) = entries.get(key)?;
        (now < *until).then(|| Arc::clone(answer))
    }

    /// Remembers `answer` for `key` from `now`.
    pub(crate) fn insert(&self, key: CacheKey, answer: Arc<UpstreamResponse>, now: UnixMillis) {
        if self.ttl.is_zero() {
            return;
        }
        let mut entries = self.lock();
        if entries.len() >= MAX_ENTRIES {
            entries.retain(|_, (_, until)| now < *until);
            if entries.len() >= MAX_ENTRIES {
                return;
            }
        }
        entries.insert(key, (answer, now.plus(self.ttl)));
    }

    /// Forgets `key` (its credentials just worked).
    pub(crate) fn remove(&self, key: &CacheKey) {
        if !self.ttl.is_zero() {
            self.lock().remove(key);
        }
    }

    /// Drops expired entries.
    pub(crate) fn prune(&self, now: UnixMillis) {
        self.lock().retain(|_, (_, until)| now < *until);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use bytes::Bytes;
    use http::{HeaderMap, StatusCode};

    fn answer() -> Arc<UpstreamResponse> {
        Arc::new(UpstreamResponse {
            status: StatusCode::BAD_REQUEST,
            headers: HeaderMap::new(),
            body: Bytes::from_static(br#"{"error":"invalid_client"}"#),
        })
    }

    const T0: UnixMillis = UnixMillis(1_000_000);

    #[test]
    fn remembers_for_the_ttl() {
        let cache = NegativeCache::new(Duration::from_secs(5));
        let key = CacheKey::from_bytes([1; 32]);
        cache.insert(key, answer(), T0);
        assert!(cache.get(&key, T0.plus_millis(4_999)).is_some());
        assert!(cache.get(&key, T0.plus_millis(5_000)).is_none());
        cache.prune(T0.plus_millis(5_000));
        assert!(cache.lock().is_empty());
    }

    #[test]
    fn zero_ttl_disables() {
        let cache = NegativeCache::new(Duration::ZERO);
        let key = CacheKey::from_bytes([1; 32]);
        cache.insert(key, answer(), T0);
        assert!(cache.get(&key, T0).is_none());
    }

    #[test]
    fn bounded() {
        let cache = NegativeCache::new(Duration::from_secs(5));
        for n in 0..MAX_ENTRIES + 10 {
            let mut bytes = [0u8; 32];
            bytes[..8].copy_from_slice(&(n as u64).to_le_bytes());
            cache.insert(CacheKey::from_bytes(bytes), answer(), T0);
        }
        assert_eq!(cache.lock().len(), MAX_ENTRIES);
    }
}
