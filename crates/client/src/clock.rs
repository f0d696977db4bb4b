//! Wall-clock time, read through one injected source, in
//! [`SystemTime`]: the client's public face of core's millisecond clock.

use std::fmt;
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use tokencache_core::UnixMillis;

/// Where a source reads the time, for token lifetimes and the refresh
/// schedule. Tests pass a manual clock, so "80 seconds later" takes no
/// time. (Backoff delays and timeouts are Tokio timers, which tests pause.)
pub trait Clock: Send + Sync + fmt::Debug + 'static {
    /// The current wall-clock time.
    fn now(&self) -> SystemTime;
}

/// The real clock.
#[derive(Debug, Clone, Copy, Default)]
pub struct SystemClock;

impl Clock for SystemClock {
    fn now(&self) -> SystemTime {
        // Core's clock is the workspace's one reader of the real time.
        system_time(tokencache_core::Clock::now(&tokencache_core::SystemClock))
    }
}

/// A client [`Clock`] seen as core's, for the freshness code the client
/// shares with the proxy.
#[derive(Debug, Clone)]
pub(crate) struct CoreClock(pub(crate) Arc<dyn Clock>);

impl tokencache_core::Clock for CoreClock {
    fn now(&self) -> UnixMillis {
        unix_millis(self.0.now())
    }
}

/// `at` as a [`SystemTime`]; past what the platform can represent (tens of
/// thousands of years on some), the last day of the year 9999.
pub(crate) fn system_time(at: UnixMillis) -> SystemTime {
    const YEAR_9999_ENDS: Duration = Duration::from_secs(253_402_300_799);
    UNIX_EPOCH
        .checked_add(Duration::from_millis(at.0))
        .unwrap_or(UNIX_EPOCH + YEAR_9999_ENDS)
}

/// `at` in milliseconds since the epoch; before the epoch, the epoch.
pub(crate) fn unix_millis(at: SystemTime) -> UnixMillis {
    let since_epoch = at.duration_since(UNIX_EPOCH).unwrap_or(Duration::ZERO);
    UnixMillis(u64::try_from(since_epoch.as_millis()).unwrap_or(u64::MAX))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn conversions_round_trip_and_clamp() {
        let at = UnixMillis(1_700_000_000_123);
        assert_eq!(unix_millis(system_time(at)), at);
        assert_eq!(
            unix_millis(UNIX_EPOCH - Duration::from_secs(5)),
            UnixMillis(0)
        );
        assert!(system_time(UnixMillis(u64::MAX)) > system_time(at));
    }

    #[test]
    fn the_system_clock_is_core_s() {
        let core = tokencache_core::Clock::now(&tokencache_core::SystemClock);
        let ours = unix_millis(SystemClock.now());
        assert!(ours.millis_since(core) < 60_000);
    }
}
