//! Requests per client id, for the status page's busiest clients.
//!
//! Off unless asked for (`ProxyConfig::status_show_clients`): when on, each
//! cacheable request adds to its client's two counters. A client id is not
//! a secret, but the caller chooses it before anything checks it, so only
//! the first [`MAX_CLIENTS`] ids are tracked: a stream of made-up ids
//! cannot grow the table.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, PoisonError};

use arc_swap::ArcSwap;

use crate::striped::thread_cell;

/// Client ids tracked at most; later ones are not counted.
pub(crate) const MAX_CLIENTS: usize = 1000;

/// Stripes of each client's counters: with one pair, two cores counting
/// the same client (the usual case: one service, many replicas of it)
/// would pass its cache line back and forth on every request.
const STRIPES: usize = 4;

/// One stripe of a client's counters, on a cache line of its own.
#[repr(align(128))]
#[derive(Default)]
struct Stripe {
    requests: AtomicU64,
    saved: AtomicU64,
}

#[derive(Default)]
struct Counts {
    stripes: [Stripe; STRIPES],
}

impl Counts {
    fn add(&self, saved: bool) {
        let stripe = &self.stripes[thread_cell() % STRIPES];
        stripe.requests.fetch_add(1, Ordering::Relaxed);
        if saved {
            stripe.saved.fetch_add(1, Ordering::Relaxed);
        }
    }

    fn sum(&self) -> (u64, u64) {
        self.stripes
            .iter()
            .fold((0, 0), |(requests, saved), stripe| {
                (
                    requests + stripe.requests.load(Ordering::Relaxed),
                    saved + stripe.saved.load(Ordering::Relaxed),
                )
            })
    }
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

type Table = HashMap<Box<str>, Arc<Counts>>;

/// Requests per client id.
///
/// Counting a known client reads a snapshot of the table (no lock, no
/// write to a shared line) and adds to this thread's stripe. A new client
/// (at most [`MAX_CLIENTS`] of them, ever) copies the table under a lock
/// and publishes the copy.
#[derive(Default)]
pub(crate) struct ClientCounts {
    table: ArcSwap<Table>,
    /// Held while a new client is added, so two additions do not lose one.
    adding: Mutex<()>,
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
        if let Some(counts) = self.table.load().get(client_id) {
            counts.add(saved);
            return;
        }
        if self.tracked.load(Ordering::Relaxed) >= MAX_CLIENTS {
            return;
        }
        let _adding = self.adding.lock().unwrap_or_else(PoisonError::into_inner);
        let table = self.table.load_full();
        // Looked up again under the lock: another thread may have added
        // it, or filled the table, meanwhile.
        let counts = match table.get(client_id) {
            Some(counts) => Arc::clone(counts),
            None if table.len() >= MAX_CLIENTS => return,
            None => {
                let counts = Arc::new(Counts::default());
                let mut grown = Table::clone(&table);
                grown.insert(client_id.into(), Arc::clone(&counts));
                self.tracked.store(grown.len(), Ordering::Relaxed);
                self.table.store(Arc::new(grown));
                counts
            }
        };
        counts.add(saved);
    }

    /// The `n` clients with the most requests, most first.
    pub(crate) fn busiest(&self, n: usize) -> Vec<ClientCount> {
        let mut all: Vec<ClientCount> = self
            .table
            .load()
            .iter()
            .map(|(client_id, counts)| {
                let (requests, saved) = counts.sum();
                ClientCount {
                    client_id: client_id.to_string(),
                    requests,
                    saved,
                }
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
