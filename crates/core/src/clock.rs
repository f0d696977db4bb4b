//! Time, read through one injected source.

use std::fmt;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// A point in wall-clock time, in milliseconds since the Unix epoch.
///
/// Wall-clock rather than monotonic because token lifetimes (`expires_in`,
/// a JWT's `exp`) and the expiry a shared store keeps are wall-clock facts
/// that several processes must agree on.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct UnixMillis(pub u64);

impl UnixMillis {
    /// This instant moved `millis` later, saturating.
    #[must_use]
    pub const fn plus_millis(self, millis: u64) -> Self {
        Self(self.0.saturating_add(millis))
    }

    /// This instant moved `duration` later, saturating.
    #[must_use]
    pub fn plus(self, duration: Duration) -> Self {
        self.plus_millis(u64::try_from(duration.as_millis()).unwrap_or(u64::MAX))
    }

    /// Milliseconds from `earlier` to `self`, or zero if `earlier` is later.
    #[must_use]
    pub const fn millis_since(self, earlier: Self) -> u64 {
        self.0.saturating_sub(earlier.0)
    }

    /// Whole seconds from `earlier` to `self`, rounded down, or zero.
    #[must_use]
    pub const fn whole_secs_since(self, earlier: Self) -> u64 {
        self.millis_since(earlier) / 1000
    }
}

impl fmt::Display for UnixMillis {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}ms", self.0)
    }
}

/// The source of the current time.
///
/// Everything that compares against "now" takes a clock (or a `now` read
/// from one), so expiry is tested by moving a manual clock, never by sleeping.
pub trait Clock: Send + Sync + fmt::Debug + 'static {
    /// The current wall-clock time.
    fn now(&self) -> UnixMillis;
}

/// The real clock: [`SystemTime::now`].
#[derive(Debug, Clone, Copy, Default)]
pub struct SystemClock;

impl Clock for SystemClock {
    #[allow(clippy::disallowed_methods)] // the one real clock
    fn now(&self) -> UnixMillis {
        let since_epoch = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap_or(Duration::ZERO);
        UnixMillis(u64::try_from(since_epoch.as_millis()).unwrap_or(u64::MAX))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn arithmetic_saturates() {
        assert_eq!(UnixMillis(u64::MAX).plus_millis(5), UnixMillis(u64::MAX));
        assert_eq!(UnixMillis(5).millis_since(UnixMillis(10)), 0);
        assert_eq!(UnixMillis(10_999).whole_secs_since(UnixMillis(1_000)), 9);
        assert_eq!(
            UnixMillis(1).plus(Duration::from_secs(2)),
            UnixMillis(2_001)
        );
    }

    #[test]
    fn system_clock_is_after_2020() {
        assert!(SystemClock.now() > UnixMillis(1_577_836_800_000));
    }
}
