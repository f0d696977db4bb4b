//! The in-process token store of tokencache.
//!
//! A map from [`CacheKey`] to [`CachedToken`], split into shards behind
//! their own read-write locks, each split again per thread, so a lookup
//! takes a read lock no other thread touches: no global lock, no shared
//! cache line written, no allocation. It is bounded by
//! bytes; when full it drops expired entries first, then those whose service
//! ends soonest (they are the least worth keeping).
//!
//! ```
//! use std::sync::Arc;
//! use tokencache_core::{CacheKey, CachedToken, FreshnessPolicy, UnixMillis};
//! use tokencache_memory_store::MemoryStore;
//!
//! let store = MemoryStore::new(64 << 20);
//! let now = UnixMillis(1_700_000_000_000);
//! let token = CachedToken::from_response(
//!     br#"{"access_token":"t","expires_in":60}"#,
//!     now,
//!     &FreshnessPolicy::default(),
//! )?;
//! let key = CacheKey::from_bytes([1; 32]);
//! store.insert(key, Arc::new(token), now);
//! assert!(store.get(&key, now).is_some());
//! assert_eq!(store.len(), 1);
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```
//!
//! [`InProcessSharedStore`] implements the shared-store contract in
//! memory, so proxies in one process can share tokens as a fleet does
//! through Redis (tests, benchmarks).
//!
//! This crate has no feature flags.

mod shared;

pub use shared::InProcessSharedStore;

use std::collections::HashMap;
use std::hash::{BuildHasherDefault, Hasher};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, PoisonError};

use crossbeam_utils::sync::ShardedLock;

use tokencache_core::{CacheKey, CachedToken, UnixMillis};

/// Shards: enough that two cores (or thirty-two) rarely meet on one lock.
const SHARDS: usize = 64;

/// What an entry costs beyond its token: the key, the `Arc` header and the
/// hash-table slot. An estimate; it keeps the byte budget honest for many
/// small entries.
const ENTRY_OVERHEAD: usize = 96;

/// A token and the instant this tier stops handing it out: its end of
/// service, or earlier when a shared tier behind this one should be asked
/// again.
#[derive(Debug, Clone)]
struct Held {
    token: Arc<CachedToken>,
    until: UnixMillis,
}

/// A shard's lock is itself split per thread: a reader locks only its own
/// thread's part, so the hit path writes no cache line another core reads.
/// (With one plain read-write lock per shard, two cores looking up random
/// keys each write the lock word of every shard in turn, and about every
/// other lookup waited for that line to come over from the other core.)
/// Writers lock every part; they come with loads, not hits.
type Shard = ShardedLock<HashMap<CacheKey, Held, BuildHasherDefault<KeyHasher>>>;

/// The default [`MemoryStore::max_entry_bytes`]: 64 KiB, some twenty times
/// a Cognito token answer.
pub const DEFAULT_MAX_ENTRY_BYTES: usize = 64 << 10;

/// The in-process token store.
#[derive(Debug)]
pub struct MemoryStore {
    shards: Box<[Shard]>,
    max_bytes: usize,
    max_entry_bytes: usize,
    bytes: AtomicUsize,
    entries: AtomicUsize,
    /// Only one thread evicts at a time; the others carry on inserting.
    evicting: Mutex<()>,
}

impl MemoryStore {
    /// A store holding at most about `max_bytes` of entries, each at most
    /// [`DEFAULT_MAX_ENTRY_BYTES`].
    #[must_use]
    pub fn new(max_bytes: usize) -> Self {
        Self {
            shards: (0..SHARDS).map(|_| Shard::default()).collect(),
            max_bytes,
            max_entry_bytes: DEFAULT_MAX_ENTRY_BYTES,
            bytes: AtomicUsize::new(0),
            entries: AtomicUsize::new(0),
            evicting: Mutex::new(()),
        }
    }

    /// This store with another per-entry limit.
    #[must_use]
    pub const fn with_max_entry_bytes(mut self, max_entry_bytes: usize) -> Self {
        self.max_entry_bytes = max_entry_bytes;
        self
    }

    /// The largest entry stored, in bytes as the budget counts them.
    #[must_use]
    pub const fn max_entry_bytes(&self) -> usize {
        self.max_entry_bytes
    }

    /// Whether `token` may be stored: no larger than the per-entry limit,
    /// nor than the whole budget. A larger one is refused rather than
    /// evicting every other entry to make room for it.
    #[must_use]
    pub fn fits(&self, token: &CachedToken) -> bool {
        let size = entry_size(token);
        size <= self.max_entry_bytes && size <= self.max_bytes
    }

    /// The entry under `key` if this tier still hands it out at `now`
    /// (whatever its freshness: the caller decides what aging means).
    #[must_use]
    pub fn get(&self, key: &CacheKey, now: UnixMillis) -> Option<Arc<CachedToken>> {
        self.shard(key)
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .get(key)
            .filter(|held| now < held.until)
            .map(|held| Arc::clone(&held.token))
    }

    /// Calls `visit` with the entry under `key` if this tier still hands it
    /// out at `now`, under the shard's read lock: no reference count is
    /// touched, which keeps a hot key's cache lines still on the hit path.
    /// `visit` must be short (it holds readers of the shard, not writers,
    /// back).
    pub fn with_entry<R>(
        &self,
        key: &CacheKey,
        now: UnixMillis,
        visit: impl FnOnce(&CachedToken) -> R,
    ) -> Option<R> {
        self.shard(key)
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .get(key)
            .filter(|held| now < held.until)
            .map(|held| visit(&held.token))
    }

    /// Stores `token` under `key` until it stops being served, replacing
    /// any entry there, and evicts if the store is over its budget; whether
    /// it was stored (see [`fits`](Self::fits)).
    pub fn insert(&self, key: CacheKey, token: Arc<CachedToken>, now: UnixMillis) -> bool {
        let until = token.serve_until();
        self.insert_until(key, token, until, now)
    }

    /// Stores `token` under `key`, handed out until `until` at the latest
    /// (never past the token's end of service); whether it was stored (see
    /// [`fits`](Self::fits)). A token that does not fit leaves the entry
    /// under `key`, and every other, as it was.
    pub fn insert_until(
        &self,
        key: CacheKey,
        token: Arc<CachedToken>,
        until: UnixMillis,
        now: UnixMillis,
    ) -> bool {
        if !self.fits(&token) {
            return false;
        }
        let size = entry_size(&token);
        let until = until.min(token.serve_until());
        let replaced = self
            .shard(&key)
            .write()
            .unwrap_or_else(PoisonError::into_inner)
            .insert(key, Held { token, until });
        self.bytes.fetch_add(size, Ordering::Relaxed);
        match replaced {
            Some(old) => self.forget(entry_size(&old.token), 0),
            None => {
                self.entries.fetch_add(1, Ordering::Relaxed);
            }
        }
        if self.bytes() > self.max_bytes {
            self.evict(now);
        }
        true
    }

    /// Removes the entry under `key`; whether there was one.
    pub fn remove(&self, key: &CacheKey) -> bool {
        let removed = self
            .shard(key)
            .write()
            .unwrap_or_else(PoisonError::into_inner)
            .remove(key);
        removed.is_some_and(|old| {
            self.forget(entry_size(&old.token), 1);
            true
        })
    }

    /// Removes every entry; how many there were.
    pub fn clear(&self) -> usize {
        self.retain(|_| false)
    }

    /// Removes the entries this tier no longer hands out at `now`; how many.
    pub fn remove_expired(&self, now: UnixMillis) -> usize {
        self.retain(|held| held.until > now)
    }

    /// The number of entries.
    #[must_use]
    pub fn len(&self) -> usize {
        self.entries.load(Ordering::Relaxed)
    }

    /// Whether the store is empty.
    #[must_use]
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The bytes the entries take, as the budget counts them.
    #[must_use]
    pub fn bytes(&self) -> usize {
        self.bytes.load(Ordering::Relaxed)
    }

    /// The budget in bytes.
    #[must_use]
    pub const fn max_bytes(&self) -> usize {
        self.max_bytes
    }

    /// Calls `visit` with every entry, one shard's read lock at a time (for
    /// a status page: O(entries), never on a request's path).
    pub fn for_each(&self, mut visit: impl FnMut(&CachedToken)) {
        for shard in &*self.shards {
            let shard = shard.read().unwrap_or_else(PoisonError::into_inner);
            for held in shard.values() {
                visit(&held.token);
            }
        }
    }

    fn shard(&self, key: &CacheKey) -> &Shard {
        // Bytes 8.. pick the shard; the table hashes with bytes ..8, so the
        // two stay independent.
        &self.shards[usize::from(key.as_bytes()[8]) % SHARDS]
    }

    fn forget(&self, bytes: usize, entries: usize) {
        self.bytes.fetch_sub(bytes, Ordering::Relaxed);
        self.entries.fetch_sub(entries, Ordering::Relaxed);
    }

    fn retain(&self, mut keep: impl FnMut(&Held) -> bool) -> usize {
        let mut removed = 0;
        for shard in &self.shards {
            let mut map = shard.write().unwrap_or_else(PoisonError::into_inner);
            map.retain(|_, held| {
                let kept = keep(held);
                if !kept {
                    self.forget(entry_size(&held.token), 1);
                    removed += 1;
                }
                kept
            });
        }
        removed
    }

    /// Brings the store under its low-water mark: expired entries first,
    /// then the entries whose service ends soonest.
    fn evict(&self, now: UnixMillis) {
        let Ok(_guard) = self.evicting.try_lock() else {
            return; // someone else is on it
        };
        // Evict down to 90 % of the budget, so a full store does not evict on
        // every insert.
        let low_water = self.max_bytes - self.max_bytes / 10;
        self.remove_expired(now);
        if self.bytes() <= low_water {
            return;
        }
        let mut by_end: Vec<(UnixMillis, CacheKey)> = Vec::with_capacity(self.len());
        for shard in &self.shards {
            let map = shard.read().unwrap_or_else(PoisonError::into_inner);
            by_end.extend(map.iter().map(|(key, held)| (held.until, *key)));
        }
        by_end.sort_unstable();
        for (_, key) in by_end {
            if self.bytes() <= low_water {
                break;
            }
            self.remove(&key);
        }
    }
}

fn entry_size(token: &CachedToken) -> usize {
    token.heap_size() + ENTRY_OVERHEAD
}

/// Cache keys are HMAC outputs, uniformly random already: the hash is their
/// first eight bytes, with no hashing work on the hit path.
#[derive(Default)]
struct KeyHasher(u64);

impl Hasher for KeyHasher {
    fn finish(&self) -> u64 {
        self.0
    }

    fn write(&mut self, bytes: &[u8]) {
        let mut head = [0u8; 8];
        let n = bytes.len().min(8);
        head[..n].copy_from_slice(&bytes[..n]);
        self.0 ^= u64::from_le_bytes(head);
    }

    fn write_usize(&mut self, _length_prefix: usize) {
        // `[u8; 32]` hashes its length first; a constant adds nothing.
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokencache_core::FreshnessPolicy;

    const T0: UnixMillis = UnixMillis(1_700_000_000_000);

    fn token(lifetime_secs: u64) -> Arc<CachedToken> {
        let body = format!(r#"{{"access_token":"tok","expires_in":{lifetime_secs}}}"#);
        Arc::new(
            CachedToken::from_response(body.as_bytes(), T0, &FreshnessPolicy::default()).unwrap(),
        )
    }

    fn key(n: u32) -> CacheKey {
        let mut bytes = [0u8; 32];
        bytes[..4].copy_from_slice(&n.to_le_bytes());
        bytes[8..12].copy_from_slice(&n.wrapping_mul(2_654_435_761).to_le_bytes());
        CacheKey::from_bytes(bytes)
    }

    #[test]
    fn insert_get_replace_remove() {
        let store = MemoryStore::new(1 << 20);
        store.insert(key(1), token(60), T0);
        assert_eq!(store.len(), 1);
        let one = store.bytes();
        store.insert(key(1), token(120), T0);
        assert_eq!(store.len(), 1);
        assert_eq!(store.bytes(), one);
        assert_eq!(store.get(&key(1), T0).unwrap().expires_in(T0), 120);
        assert!(store.get(&key(2), T0).is_none());
        assert!(store.remove(&key(1)));
        assert!(!store.remove(&key(1)));
        assert_eq!((store.len(), store.bytes()), (0, 0));
    }

    #[test]
    fn entries_too_large_are_refused_and_evict_nothing() {
        let big = |bytes: usize| {
            let body = format!(
                r#"{{"access_token":"{}","expires_in":60}}"#,
                "t".repeat(bytes)
            );
            Arc::new(
                CachedToken::from_response(body.as_bytes(), T0, &FreshnessPolicy::default())
                    .unwrap(),
            )
        };
        // Over the per-entry limit, in a roomy store.
        let store = MemoryStore::new(1 << 20).with_max_entry_bytes(4 << 10);
        assert_eq!(store.max_entry_bytes(), 4 << 10);
        assert!(store.insert(key(1), token(60), T0));
        assert!(!store.fits(&big(8 << 10)));
        assert!(!store.insert(key(2), big(8 << 10), T0));
        assert!(
            !store.insert(key(1), big(8 << 10), T0),
            "no replacement either"
        );
        assert_eq!(store.len(), 1);
        assert_eq!(store.get(&key(1), T0).unwrap().expires_in(T0), 60);
        // Over the whole budget, under the per-entry limit.
        let small = MemoryStore::new(2 << 10);
        for n in 0..5 {
            assert!(small.insert(key(n), token(60), T0));
        }
        let before = (small.len(), small.bytes());
        assert!(!small.insert(key(9), big(4 << 10), T0));
        assert_eq!((small.len(), small.bytes()), before, "nothing evicted");
    }

    #[test]
    fn evicts_expired_first_then_soonest_ending() {
        let size = entry_size(&token(60));
        let store = MemoryStore::new(size * 10);
        // Two short-lived entries, then long-lived ones.
        store.insert(key(100), token(10), T0);
        store.insert(key(101), token(20), T0);
        for n in 0..8 {
            store.insert(key(n), token(3600 + u64::from(n)), T0);
        }
        assert_eq!(store.len(), 10);
        // 30 s later the short ones are expired; one more insert overflows.
        let later = T0.plus_millis(30_000);
        store.insert(key(8), token(3600), later);
        assert!(store.get(&key(100), T0).is_none());
        assert!(store.get(&key(101), T0).is_none());
        assert_eq!(store.len(), 9);
        assert!(store.bytes() <= store.max_bytes());
        // Now nothing is expired: the soonest-ending go.
        store.insert(key(9), token(7200), later);
        store.insert(key(10), token(7200), later);
        assert!(store.bytes() <= store.max_bytes());
        assert!(store.get(&key(10), later).is_some());
        assert!(
            store.get(&key(0), later).is_none(),
            "the soonest-ending entry goes first"
        );
    }

    #[test]
    fn a_bounded_entry_is_handed_out_until_its_bound_only() {
        let store = MemoryStore::new(1 << 20);
        store.insert_until(key(1), token(3600), T0.plus_millis(30_000), T0);
        assert!(store.get(&key(1), T0.plus_millis(29_999)).is_some());
        assert!(store.get(&key(1), T0.plus_millis(30_000)).is_none());
        // Never past the token's own end of service.
        store.insert_until(key(2), token(10), T0.plus_millis(60_000), T0);
        assert!(store.get(&key(2), T0.plus_millis(9_000)).is_none());
        assert_eq!(store.remove_expired(T0.plus_millis(30_000)), 2);
    }

    #[test]
    fn remove_expired_and_clear() {
        let store = MemoryStore::new(1 << 20);
        store.insert(key(1), token(10), T0);
        store.insert(key(2), token(1000), T0);
        assert_eq!(store.remove_expired(T0.plus_millis(9_500)), 1);
        assert_eq!(store.len(), 1);
        assert_eq!(store.clear(), 1);
        assert!(store.is_empty());
        assert_eq!(store.bytes(), 0);
    }

    #[test]
    fn concurrent_inserts_keep_counts_right() {
        let store = Arc::new(MemoryStore::new(usize::MAX));
        let threads: Vec<_> = (0..4)
            .map(|t| {
                let store = Arc::clone(&store);
                std::thread::spawn(move || {
                    for n in 0..500 {
                        store.insert(key(t * 1000 + n), token(60), T0);
                        store.insert(key(n), token(60), T0); // shared keys
                    }
                })
            })
            .collect();
        for thread in threads {
            thread.join().unwrap();
        }
        // Thread 0's own keys are the shared ones: 4 × 500 distinct keys.
        assert_eq!(store.len(), 2000);
        assert_eq!(store.bytes(), store.len() * entry_size(&token(60)));
    }
}
