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

use crate::clock::UnixMillis;
use crate::key::CacheKey;

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
        for byte in key.as_bytes() {
            hex.push(char::from(HEX[usize::from(byte >> 4)]));
            hex.push(char::from(HEX[usize::from(byte & 0xf)]));
        }
        Self(hex)
    }

    /// The key as text (64 hex digits).
    #[must_use]
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

const HEX: &[u8; 16] = b"0123456789abcdef";

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
/// `tokencache-test-support`: get, put with expiry, delete, and a lease
/// with an owner and an expiry for cross-replica single-flight.
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
    fn owners_are_random() {
        assert_ne!(LeaseOwner::random(), LeaseOwner::random());
        assert_eq!(LeaseOwner::random().as_str().len(), 32);
    }
}
