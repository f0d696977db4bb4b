//! Requests per client id, for the status page's busiest clients.
//!
//! Off unless asked for (`ProxyConfig::status_show_clients`): when on, each
//! cacheable request adds to its client's two counters. A client id is not
//! a secret, but the caller chooses it before anything checks it, so only
//! the first [`MAX_CLIENTS`] ids are tracked: a stream of made-up ids
//! cannot grow the table.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{PoisonError, RwLock};

/// Client ids tracked at most; later ones are not counted.
pub(crate) const MAX_CLIENTS: usize = 1000;

/// Shards, so that clients counted at once on different threads seldom
/// share a lock.
const SHARDS: usize = 16;

#[derive(Default)]
struct Counts {
    requests: AtomicU64,
    saved: AtomicU64,
}

/// One client's counts.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct ClientCount {
    /// The client id.
    pub(crate) client_id: String,
    /// Its cacheable token requests.
    pub(crate) requests: u64,
    /// Of them, those that did not go upstream.
    pub(crate) saved: u64,
}

/// Requests per client id, sharded.
#[derive(Default)]
pub(crate) struct ClientCounts {
    shards: [RwLock<HashMap<Box<str>, Counts>>; SHARDS],
    tracked: AtomicUsize,
}

impl std::fmt::Debug for ClientCounts {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ClientCounts")
            .field("tracked", &self.tracked.load(Ordering::Relaxed))
            .finish_non_exhaustive()
    }
}

impl ClientCounts {
    /// Counts one request of `client_id`; `saved` when it did not go
    /// upstream.
    pub(crate) fn record(&self, client_id: &str, saved: bool) {
        let shard = &self.shards[shard_of(client_id)];
        let add = |counts: &Counts| {
            counts.requests.fetch_add(1, Ordering::Relaxed);
            if saved {
                counts.saved.fetch_add(1, Ordering::Relaxed);
            }
        };
        // A known client: a read lock and two atomic adds, no allocation.
        if let Some(counts) = shard
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .get(client_id)
        {
            add(counts);
            return;
        }
        if self.tracked.load(Ordering::Relaxed) >= MAX_CLIENTS {
            return;
        }
        let mut shard = shard.write().unwrap_or_else(PoisonError::into_inner);
        if !shard.contains_key(client_id) {
            // Checked again under the lock: another thread may have filled
            // the table meanwhile (the cap may be passed by a few, no more).
            if self.tracked.fetch_add(1, Ordering::Relaxed) >= MAX_CLIENTS {
                self.tracked.fetch_sub(1, Ordering::Relaxed);
                return;
            }
            shard.insert(client_id.into(), Counts::default());
        }
        if let Some(counts) = shard.get(client_id) {
            add(counts);
        }
    }

    /// The `n` clients with the most requests, most first.
    pub(crate) fn busiest(&self, n: usize) -> Vec<ClientCount> {
        let mut all: Vec<ClientCount> = self
            .shards
            .iter()
            .flat_map(|shard| {
                shard
                    .read()
                    .unwrap_or_else(PoisonError::into_inner)
                    .iter()
                    .map(|(client_id, counts)| ClientCount {
                        client_id: client_id.to_string(),
                        requests: counts.requests.load(Ordering::Relaxed),
                        saved: counts.saved.load(Ordering::Relaxed),
                    })
                    .collect::<Vec<_>>()
            })
            .collect();
        all.sort_by(|a, b| {
            b.requests
                .cmp(&a.requests)
                .then_with(|| a.client_id.cmp(&b.client_id))
        });
        all.truncate(n);
        all
    }
}

/// FNV-1a: a client id's shard (any spread will do; no hashing DoS matters
/// with 16 shards of at most 1000 ids in all).
fn shard_of(client_id: &str) -> usize {
    let hash = client_id
        .bytes()
        .fold(0xcbf2_9ce4_8422_2325_u64, |hash, byte| {
            (hash ^ u64::from(byte)).wrapping_mul(0x0100_0000_01b3)
        });
    // The remainder is below SHARDS, so it fits.
    usize::try_from(hash % SHARDS as u64).unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_per_client_busiest_first() {
        let counts = ClientCounts::default();
        for _ in 0..3 {
            counts.record("a", true);
        }
        counts.record("b", false);
        counts.record("a", false);
        assert_eq!(
            counts.busiest(5),
            [
                ClientCount {
                    client_id: "a".into(),
                    requests: 4,
                    saved: 3
                },
                ClientCount {
                    client_id: "b".into(),
                    requests: 1,
                    saved: 0
                },
            ]
        );
        assert_eq!(counts.busiest(1).len(), 1);
    }

    #[test]
    fn made_up_ids_cannot_grow_the_table() {
        let counts = ClientCounts::default();
        for n in 0..MAX_CLIENTS + 50 {
            counts.record(&format!("client-{n}"), true);
        }
        assert_eq!(counts.busiest(usize::MAX).len(), MAX_CLIENTS);
        // A known client is still counted.
        counts.record("client-0", true);
        assert!(counts.busiest(usize::MAX).iter().any(|c| c.requests == 2));
    }
}
