//! The contract every shared token store keeps.
//!
//! A shared store (Redis, DynamoDB) sees only what it must: an opaque key
//! (the hex of a [`CacheKey`], an HMAC), sealed bytes (see
//! [`KeyRing`](crate::KeyRing)) and an expiry. No client id, no token, no
//! secret.

use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::time::Duration;

use std::sync::Arc;

use crate::budget::{BudgetLimits, BudgetStanding, SlotAnswer, SlotRequest, ThrottleReport};
use crate::clock::UnixMillis;
use crate::key::{CacheKey, ClientTag, push_hex};
use crate::purge::{PurgeLog, PurgeMark, PurgeScope};

/// A boxed future, as the object-safe store methods return.
pub type StoreFuture<'a, T> = Pin<Box<dyn Future<Output = Result<T, StoreError>> + Send + 'a>>;

/// A store key: the lowercase hex of a [`CacheKey`]. Stores add their own
/// prefix or layout around it.
#[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct StoreKey(String);

impl StoreKey {
    /// The store key of a cache key.
    #[must_use]
    pub fn of(key: &CacheKey) -> Self {
        let mut hex = String::with_capacity(64);
        push_hex(&mut hex, key.as_bytes());
        Self(hex)
    }

    /// The store key of a cache key that belongs to the client tagged
    /// `tag`: `<16 hex>.<64 hex>`, so a store can drop one client's
    /// entries by prefix.
    #[must_use]
    pub fn tagged(tag: &ClientTag, key: &CacheKey) -> Self {
        let mut text = String::with_capacity(16 + 1 + 64);
        text.push_str(&tag.as_hex());
        text.push('.');
        text.push_str(&Self::of(key).0);
        Self(text)
    }

    /// The key as text: 64 hex digits, or `<16 hex>.<64 hex>` when tagged.
    #[must_use]
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// Whether `text` has the shape of a store key (what a store may
    /// safely treat as one of its entries).
    #[must_use]
    pub fn is_well_formed(text: &str) -> bool {
        let hex = |part: &str, len: usize| {
            part.len() == len && part.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'))
        };
        match text.split_once('.') {
            Some((tag, key)) => hex(tag, 16) && hex(key, 64),
            None => hex(text, 64),
        }
    }
}

impl fmt::Debug for StoreKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // Like a CacheKey: a fingerprint is enough for a log line.
        write!(f, "StoreKey({}…)", &self.0[..self.0.len().min(8)])
    }
}

/// Who holds a lease: one id per process, random, so a crashed replica's
/// lease simply expires.
#[derive(Clone, PartialEq, Eq, Hash)]
pub struct LeaseOwner(String);

impl LeaseOwner {
    /// A fresh random owner id.
    #[must_use]
    pub fn random() -> Self {
        let bytes: [u8; 16] = rand::random();
        Self(bytes.iter().map(|b| format!("{b:02x}")).collect())
    }

    /// An owner id from text (for tests and stores reading one back).
    #[must_use]
    pub fn new(id: impl Into<String>) -> Self {
        Self(id.into())
    }

    /// The id.
    #[must_use]
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for LeaseOwner {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "LeaseOwner({})", self.0)
    }
}

/// A store operation that failed. The proxy degrades on any of them (memory
/// tier and upstream); it never fails a request because of one.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum StoreError {
    /// The store could not be reached or did not answer in time.
    #[error("store unavailable: {0}")]
    Unavailable(String),
    /// The store answered with something unexpected.
    #[error("store protocol error: {0}")]
    Protocol(String),
    /// The store refused the request (permissions, configuration).
    #[error("store refused the request: {0}")]
    Refused(String),
}

/// A shared store of sealed token entries.
///
/// Every implementation passes the conformance suite in
/// `tokencache-test-support`: get, put with expiry, delete, a lease with an
/// owner and an expiry for cross-replica single-flight, and the fleet's
/// purge log.
pub trait SharedStore: Send + Sync + fmt::Debug + 'static {
    /// A short name for logs and metrics (`redis`, `dynamodb`, …).
    fn name(&self) -> &'static str;

    /// The sealed entry under `key`, if present and not past its expiry.
    fn get<'a>(&'a self, key: &'a StoreKey) -> StoreFuture<'a, Option<Vec<u8>>>;

    /// Stores `sealed` under `key` until `expires_at` (wall clock), replacing
    /// any entry.
    fn put<'a>(
        &'a self,
        key: &'a StoreKey,
        sealed: &'a [u8],
        expires_at: UnixMillis,
    ) -> StoreFuture<'a, ()>;

    /// Removes the entry under `key`, if any.
    fn delete<'a>(&'a self, key: &'a StoreKey) -> StoreFuture<'a, ()>;

    /// Takes the load lease of `key` for `ttl` if nobody holds it (or its
    /// holder's lease expired); whether `owner` now holds it. Taking a lease
    /// `owner` already holds succeeds and extends it.
    fn try_lease<'a>(
        &'a self,
        key: &'a StoreKey,
        owner: &'a LeaseOwner,
        ttl: Duration,
    ) -> StoreFuture<'a, bool>;

    /// Gives the lease of `key` back, if `owner` holds it.
    fn release_lease<'a>(&'a self, key: &'a StoreKey, owner: &'a LeaseOwner)
    -> StoreFuture<'a, ()>;

    /// Removes every entry this store holds for tokencache (a purge).
    /// Returns how many were removed when the store can tell.
    fn clear(&self) -> StoreFuture<'_, Option<u64>>;

    /// Removes the entries whose keys carry `tag` (one client's, see
    /// [`StoreKey::tagged`]). Returns how many when the store can tell.
    fn clear_client<'a>(&'a self, tag: &'a ClientTag) -> StoreFuture<'a, Option<u64>>;

    /// The fleet's purge log as it stands (empty before the first purge).
    /// Every replica reads it about every half second, so it must be one
    /// cheap read.
    fn purge_log(&self) -> StoreFuture<'_, PurgeLog>;

    /// Appends `scope` to the purge log ([`PurgeLog::appended`]), atomically
    /// against other replicas appending at once (a compare-and-set on the
    /// generation); where the log stands after it.
    fn announce_purge<'a>(&'a self, scope: &'a PurgeScope) -> StoreFuture<'a, PurgeMark>;

    /// The same store as a keeper of the fleet's request budgets, if it can
    /// keep them (every store of this workspace can). `None`, the default,
    /// leaves each replica to its own budget.
    fn budgets(self: Arc<Self>) -> Option<Arc<dyn BudgetStore>> {
        None
    }
}

/// A store that keeps request budgets for a fleet: every replica draws its
/// upstream requests from one budget per group, kept in the store with the
/// arithmetic of [`BudgetState`](crate::budget::BudgetState), atomically
/// against the other replicas and on one clock.
///
/// `group` names the budget (an upstream host, or a name from the
/// configuration); a store encodes it into its own key layout. Every
/// implementation passes the budget conformance suite in
/// `tokencache-test-support`.
pub trait BudgetStore: Send + Sync + fmt::Debug + 'static {
    /// Records `accepted` answers that were not throttles (since this
    /// replica last told), then asks the group's budget for a slot.
    fn take_slot<'a>(
        &'a self,
        group: &'a str,
        limits: &'a BudgetLimits,
        request: &'a SlotRequest,
        accepted: u32,
    ) -> StoreFuture<'a, SlotAnswer>;

    /// Records `accepted` answers, then a throttle: the group's rate goes
    /// down for the whole fleet, and a `Retry-After` pauses it.
    fn report_throttle<'a>(
        &'a self,
        group: &'a str,
        limits: &'a BudgetLimits,
        report: &'a ThrottleReport,
        accepted: u32,
    ) -> StoreFuture<'a, BudgetStanding>;

    /// Marks `replica` alive for `ttl`; how many replicas are alive now,
    /// this one included.
    fn heartbeat<'a>(&'a self, replica: &'a LeaseOwner, ttl: Duration) -> StoreFuture<'a, u32>;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn store_key_is_the_hex_of_the_cache_key() {
        let mut bytes = [0u8; 32];
        bytes[0] = 0xab;
        bytes[31] = 0x01;
        let key = StoreKey::of(&CacheKey::from_bytes(bytes));
        assert_eq!(key.as_str().len(), 64);
        assert!(key.as_str().starts_with("ab00"));
        assert!(key.as_str().ends_with("01"));
        assert_eq!(format!("{key:?}"), "StoreKey(ab000000…)");
    }

    #[test]
    fn tagged_keys_and_their_shape() {
        let key = CacheKey::from_bytes([0x11; 32]);
        let tag = ClientTag([0xab; 8]);
        let tagged = StoreKey::tagged(&tag, &key);
        assert_eq!(tagged.as_str().len(), 81);
        assert!(tagged.as_str().starts_with("abababababababab.1111"));
        assert!(StoreKey::is_well_formed(tagged.as_str()));
        assert!(StoreKey::is_well_formed(StoreKey::of(&key).as_str()));
        for bad in [
            "",
            "abc",
            "ABAB",
            &format!("{}#lease", StoreKey::of(&key).as_str()),
            "ab.cd",
        ] {
            assert!(!StoreKey::is_well_formed(bad), "{bad}");
        }
    }

    #[test]
    fn owners_are_random() {
        assert_ne!(LeaseOwner::random(), LeaseOwner::random());
        assert_eq!(LeaseOwner::random().as_str().len(), 32);
    }
}
