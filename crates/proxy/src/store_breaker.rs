//! The shared store's breaker: after a run of failed operations the
//! request path stops asking the store (memory tier and upstream only, no
//! store timeout to pay) until a background probe finds it answering
//! again, which closes the breaker at once.
//!
//! It is not the upstream's breaker (`tokencache-upstream`): that one
//! fails callers fast and half-opens on a timer; this one never fails a
//! caller (the store is an optimisation) and is closed only by a probe
//! that succeeded, so no caller pays for finding out.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};

/// What recording an outcome did to the breaker.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Change {
    /// Nothing worth a log line.
    None,
    /// This failure opened it.
    Opened,
    /// This success closed it.
    Closed,
}

/// Counts consecutive failures; opens at the threshold.
#[derive(Debug)]
pub(crate) struct StoreBreaker {
    /// Failures in a row that open it; 0 never does.
    threshold: u64,
    consecutive: AtomicU64,
    open: AtomicBool,
}

impl StoreBreaker {
    pub(crate) fn new(threshold: u32) -> Self {
        Self {
            threshold: u64::from(threshold),
            consecutive: AtomicU64::new(0),
            open: AtomicBool::new(false),
        }
    }

    /// Whether the request path should leave the store alone.
    pub(crate) fn is_open(&self) -> bool {
        self.open.load(Ordering::Relaxed)
    }

    /// Failures since the last success.
    pub(crate) fn consecutive_failures(&self) -> u64 {
        self.consecutive.load(Ordering::Relaxed)
    }

    /// An operation (or a probe) succeeded: the store answers.
    pub(crate) fn success(&self) -> Change {
        self.consecutive.store(0, Ordering::Relaxed);
        if self.open.swap(false, Ordering::Relaxed) {
            Change::Closed
        } else {
            Change::None
        }
    }

    /// An operation failed or timed out.
    pub(crate) fn failure(&self) -> Change {
        let failures = self.consecutive.fetch_add(1, Ordering::Relaxed) + 1;
        if self.threshold > 0
            && failures >= self.threshold
            && !self.open.swap(true, Ordering::Relaxed)
        {
            Change::Opened
        } else {
            Change::None
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn opens_after_the_threshold_and_closes_on_a_success() {
        let breaker = StoreBreaker::new(3);
        assert_eq!(breaker.failure(), Change::None);
        assert_eq!(breaker.failure(), Change::None);
        assert!(!breaker.is_open());
        assert_eq!(breaker.failure(), Change::Opened);
        assert!(breaker.is_open());
        assert_eq!(breaker.failure(), Change::None, "already open");
        assert_eq!(breaker.consecutive_failures(), 4);
        assert_eq!(breaker.success(), Change::Closed);
        assert!(!breaker.is_open());
        assert_eq!(breaker.consecutive_failures(), 0);
        assert_eq!(breaker.success(), Change::None);
    }

    #[test]
    fn a_success_in_between_starts_the_count_again() {
        let breaker = StoreBreaker::new(2);
        breaker.failure();
        breaker.success();
        assert_eq!(breaker.failure(), Change::None);
        assert_eq!(breaker.failure(), Change::Opened);
    }

    #[test]
    fn a_zero_threshold_never_opens() {
        let breaker = StoreBreaker::new(0);
        for _ in 0..100 {
            assert_eq!(breaker.failure(), Change::None);
        }
        assert!(!breaker.is_open());
    }
}
