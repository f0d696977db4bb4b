//! A counter that many threads add to without sharing a cache line.
//!
//! Every hit counts its outcome. One atomic for all worker threads would
//! bounce its cache line between cores on every request; each thread adds
//! to its own padded cell instead, and the cells are summed when metrics
//! are rendered.

use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};

const CELLS: usize = 16;

/// One cell per cache line (128 bytes covers adjacent-line prefetching).
#[repr(align(128))]
#[derive(Default)]
struct Cell(AtomicU64);

#[derive(Default)]
pub(crate) struct StripedCounter {
    cells: [Cell; CELLS],
}

impl std::fmt::Debug for StripedCounter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_tuple("StripedCounter").field(&self.sum()).finish()
    }
}

impl StripedCounter {
    pub(crate) fn add(&self, n: u64) {
        self.cells[thread_cell()].0.fetch_add(n, Ordering::Relaxed);
    }

    pub(crate) fn sum(&self) -> u64 {
        self.cells
            .iter()
            .map(|cell| cell.0.load(Ordering::Relaxed))
            .fold(0, u64::wrapping_add)
    }
}

/// This thread's cell: threads take cells in turn as they first count.
/// This thread's stripe of `CELLS`: threads take them in turn, so a few
/// busy threads seldom share one.
pub(crate) fn thread_cell() -> usize {
    static NEXT: AtomicUsize = AtomicUsize::new(0);
    thread_local! {
        static CELL: usize = NEXT.fetch_add(1, Ordering::Relaxed) % CELLS;
    }
    CELL.with(|cell| *cell)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;

    #[test]
    fn sums_every_threads_additions() {
        let counter = Arc::new(StripedCounter::default());
        let threads: Vec<_> = (0..8)
            .map(|_| {
                let counter = Arc::clone(&counter);
                std::thread::spawn(move || {
                    for _ in 0..1000 {
                        counter.add(1);
                    }
                })
            })
            .collect();
        for thread in threads {
            thread.join().unwrap();
        }
        assert_eq!(counter.sum(), 8000);
    }
}
