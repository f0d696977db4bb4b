//! The token-endpoint rate limit: a token bucket whose burst equals its
//! rate, refilled continuously from the injected clock.
//!
//! A bucket rather than a fixed one-second window, because a window lets a
//! client that is well under the limit on average be throttled (or one well
//! over it pass) depending on where its requests fall against the window
//! edges. With a bucket, a client steadily below the rate is never
//! throttled, whatever its phase or jitter within the burst, and one
//! steadily above it is throttled once the burst is spent.

use std::num::NonZeroU32;
use std::sync::{Mutex, PoisonError};

use tokencache_core::UnixMillis;

/// One request's cost, in thousandths of a token. Counting in thousandths
/// makes the refill exact in integers: `rate` tokens a second is `rate`
/// thousandths a millisecond, the clock's resolution.
const COST: u64 = 1000;

/// A token bucket of `rate` tokens refilled at `rate` tokens a second.
///
/// The bucket starts full, and starts over full when the rate changes or
/// [`RateLimiter::reset`] is called.
#[derive(Debug, Default)]
pub(crate) struct RateLimiter {
    bucket: Mutex<Option<Bucket>>,
}

#[derive(Debug)]
struct Bucket {
    rate: NonZeroU32,
    /// Thousandths of a token in the bucket.
    level: u64,
    /// When `level` was last brought up to date.
    updated: UnixMillis,
}

impl Bucket {
    fn full(rate: NonZeroU32, now: UnixMillis) -> Self {
        Self {
            rate,
            level: capacity(rate),
            updated: now,
        }
    }

    fn refill(&mut self, now: UnixMillis) {
        let elapsed = now.millis_since(self.updated);
        let added = elapsed.saturating_mul(u64::from(self.rate.get()));
        self.level = self.level.saturating_add(added).min(capacity(self.rate));
        // A clock that steps back must not refill the bucket twice over the
        // same interval once it moves forward again.
        self.updated = self.updated.max(now);
    }
}

fn capacity(rate: NonZeroU32) -> u64 {
    u64::from(rate.get()) * COST
}

impl RateLimiter {
    /// Takes one token for a request arriving at `now`, under a limit of
    /// `rate` requests a second.
    ///
    /// # Errors
    ///
    /// The bucket is empty: the error holds the whole seconds until it
    /// holds a token again, at least one (the value of `Retry-After`).
    pub(crate) fn try_acquire(&self, rate: NonZeroU32, now: UnixMillis) -> Result<(), u64> {
        // The bucket is plain numbers, consistent even if a holder panicked.
        let mut guard = self.bucket.lock().unwrap_or_else(PoisonError::into_inner);
        let bucket = match guard.as_mut() {
            Some(bucket) if bucket.rate == rate => bucket,
            _ => guard.insert(Bucket::full(rate, now)),
        };
        bucket.refill(now);
        if bucket.level >= COST {
            bucket.level -= COST;
            return Ok(());
        }
        let wait_millis = (COST - bucket.level).div_ceil(u64::from(rate.get()));
        Err(wait_millis.div_ceil(1000).max(1))
    }

    /// Forgets the bucket, so the next request finds a full one.
    pub(crate) fn reset(&self) {
        *self.bucket.lock().unwrap_or_else(PoisonError::into_inner) = None;
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;

    fn rate(per_sec: u32) -> NonZeroU32 {
        NonZeroU32::new(per_sec).unwrap()
    }

    /// Sends `count` requests `interval_millis` apart from `start`; returns
    /// how many were refused.
    fn paced(
        limiter: &RateLimiter,
        limit: u32,
        start: UnixMillis,
        interval_millis: u64,
        count: u64,
    ) -> u64 {
        (0..count)
            .filter(|i| {
                let now = start.plus_millis(i * interval_millis);
                limiter.try_acquire(rate(limit), now).is_err()
            })
            .count() as u64
    }

    #[test]
    fn below_the_rate_is_never_throttled() {
        let limiter = RateLimiter::default();
        // 40/s against 50/s, for ten minutes.
        assert_eq!(paced(&limiter, 50, UnixMillis(1_000), 25, 24_000), 0);
        // Exactly at the rate, too.
        let limiter = RateLimiter::default();
        assert_eq!(paced(&limiter, 50, UnixMillis(1_000), 20, 24_000), 0);
    }

    #[test]
    fn above_the_rate_is_throttled_once_the_burst_is_spent() {
        let limiter = RateLimiter::default();
        // 100/s against 50/s for ten seconds: 50 of burst plus 50 a second.
        let refused = paced(&limiter, 50, UnixMillis(1_000), 10, 1_000);
        assert!((440..=460).contains(&refused), "{refused}");
    }

    #[test]
    fn a_burst_gets_exactly_the_rate() {
        let limiter = RateLimiter::default();
        let now = UnixMillis(5_000);
        let admitted = (0..200)
            .filter(|_| limiter.try_acquire(rate(50), now).is_ok())
            .count();
        assert_eq!(admitted, 50);
        assert_eq!(limiter.try_acquire(rate(50), now), Err(1));
        // 20 ms later one token is back.
        assert_eq!(limiter.try_acquire(rate(50), now.plus_millis(20)), Ok(()));
        assert_eq!(limiter.try_acquire(rate(50), now.plus_millis(20)), Err(1));
    }

    #[test]
    fn retry_after_is_whole_seconds_until_a_token() {
        let limiter = RateLimiter::default();
        let now = UnixMillis(0);
        assert_eq!(limiter.try_acquire(rate(1), now), Ok(()));
        assert_eq!(limiter.try_acquire(rate(1), now), Err(1));
        assert_eq!(limiter.try_acquire(rate(1), now.plus_millis(999)), Err(1));
        assert_eq!(limiter.try_acquire(rate(1), now.plus_millis(1000)), Ok(()));
    }

    #[test]
    fn a_new_rate_or_a_reset_starts_full() {
        let limiter = RateLimiter::default();
        let now = UnixMillis(0);
        for _ in 0..10 {
            limiter.try_acquire(rate(10), now).unwrap();
        }
        assert!(limiter.try_acquire(rate(10), now).is_err());
        for _ in 0..5 {
            limiter.try_acquire(rate(5), now).unwrap();
        }
        assert!(limiter.try_acquire(rate(5), now).is_err());
        limiter.reset();
        for _ in 0..5 {
            limiter.try_acquire(rate(5), now).unwrap();
        }
    }

    #[test]
    fn a_clock_stepping_back_refills_nothing() {
        let limiter = RateLimiter::default();
        let now = UnixMillis(10_000);
        limiter.try_acquire(rate(1), now).unwrap();
        assert!(limiter.try_acquire(rate(1), UnixMillis(5_000)).is_err());
        assert!(limiter.try_acquire(rate(1), now.plus_millis(500)).is_err());
        assert!(limiter.try_acquire(rate(1), now.plus_millis(1000)).is_ok());
    }

    #[test]
    fn huge_rates_and_gaps_do_not_overflow() {
        let limiter = RateLimiter::default();
        limiter.try_acquire(rate(u32::MAX), UnixMillis(0)).unwrap();
        limiter
            .try_acquire(rate(u32::MAX), UnixMillis(u64::MAX))
            .unwrap();
    }
}
