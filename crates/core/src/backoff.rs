//! Retry delays: exponential backoff with full jitter, and `Retry-After`.
//!
//! Only the arithmetic lives here; the caller supplies the randomness (a
//! number in `[0, 1)`), so the policy is tested with fixed values instead of
//! by sleeping.

use std::time::{Duration, UNIX_EPOCH};

use crate::clock::UnixMillis;

/// Exponential backoff with full jitter: before retry `n` (0 for the first
/// retry) wait a uniformly random time in `[0, min(cap, base · 2ⁿ))`.
///
/// Full jitter spreads a fleet's retries over the whole window, which AWS
/// measured to finish contended work with the fewest calls ("Exponential
/// Backoff And Jitter", AWS Architecture Blog).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Backoff {
    base: Duration,
    cap: Duration,
    max_attempts: u32,
}

impl Default for Backoff {
    /// Base 100 ms, cap 5 s, 4 attempts in all (the first and 3 retries):
    /// a throttled Cognito recovers within seconds, and a caller waiting
    /// longer than that is better served by an error.
    fn default() -> Self {
        Self {
            base: Duration::from_millis(100),
            cap: Duration::from_secs(5),
            max_attempts: 4,
        }
    }
}

impl Backoff {
    /// A policy; `max_attempts` counts the first attempt too (at least 1).
    #[must_use]
    pub fn new(base: Duration, cap: Duration, max_attempts: u32) -> Self {
        Self {
            base,
            cap: cap.max(base),
            max_attempts: max_attempts.max(1),
        }
    }

    /// The first delay's ceiling.
    #[must_use]
    pub const fn base(&self) -> Duration {
        self.base
    }

    /// The largest ceiling.
    #[must_use]
    pub const fn cap(&self) -> Duration {
        self.cap
    }

    /// Attempts in all, the first included.
    #[must_use]
    pub const fn max_attempts(&self) -> u32 {
        self.max_attempts
    }

    /// Whether another attempt may follow `attempts_made`.
    #[must_use]
    pub const fn may_retry(&self, attempts_made: u32) -> bool {
        attempts_made < self.max_attempts
    }

    /// The ceiling before retry `retry` (0-based): `min(cap, base · 2^retry)`.
    #[must_use]
    pub fn ceiling(&self, retry: u32) -> Duration {
        self.base
            .saturating_mul(1u32.checked_shl(retry).unwrap_or(u32::MAX))
            .min(self.cap)
    }

    /// The delay before retry `retry` given `jitter` in `[0, 1)`.
    #[must_use]
    pub fn delay(&self, retry: u32, jitter: f64) -> Duration {
        let jitter = if jitter.is_finite() {
            jitter.clamp(0.0, 1.0)
        } else {
            0.0
        };
        self.ceiling(retry).mul_f64(jitter)
    }

    /// The delay before retry `retry`, but never shorter than what the
    /// upstream asked for with `Retry-After`.
    #[must_use]
    pub fn delay_honouring(
        &self,
        retry: u32,
        jitter: f64,
        retry_after: Option<Duration>,
    ) -> Duration {
        let delay = self.delay(retry, jitter);
        retry_after.map_or(delay, |asked| delay.max(asked))
    }
}

/// Parses a `Retry-After` value (RFC 9110 §10.2.3): whole seconds, or an
/// HTTP date, read against `now`. A date in the past means "now".
#[must_use]
pub fn parse_retry_after(value: &[u8], now: UnixMillis) -> Option<Duration> {
    let text = std::str::from_utf8(value).ok()?.trim();
    if let Ok(seconds) = text.parse::<u64>() {
        return Some(Duration::from_secs(seconds));
    }
    let date = httpdate::parse_http_date(text).ok()?;
    let at = date.duration_since(UNIX_EPOCH).ok()?;
    let at = UnixMillis(u64::try_from(at.as_millis()).ok()?);
    Some(Duration::from_millis(at.millis_since(now)))
}

/// An HTTP date for `at`, as a `Retry-After` or `Date` value.
#[must_use]
pub fn http_date(at: UnixMillis) -> String {
    httpdate::fmt_http_date(UNIX_EPOCH + Duration::from_millis(at.0))
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn ceilings_double_up_to_the_cap() {
        let backoff = Backoff::default();
        let ceilings: Vec<u128> = (0..8).map(|n| backoff.ceiling(n).as_millis()).collect();
        assert_eq!(ceilings, [100, 200, 400, 800, 1600, 3200, 5000, 5000]);
        assert_eq!(backoff.ceiling(400), Duration::from_secs(5));
    }

    #[test]
    fn full_jitter_spans_zero_to_the_ceiling() {
        let backoff = Backoff::default();
        assert_eq!(backoff.delay(2, 0.0), Duration::ZERO);
        assert_eq!(backoff.delay(2, 0.5), Duration::from_millis(200));
        assert_eq!(backoff.delay(2, 0.999), Duration::from_micros(399_600));
        assert_eq!(backoff.delay(2, f64::NAN), Duration::ZERO);
        assert_eq!(backoff.delay(2, 7.0), Duration::from_millis(400));
    }

    #[test]
    fn retry_after_is_a_floor() {
        let backoff = Backoff::default();
        let asked = Some(Duration::from_secs(2));
        assert_eq!(
            backoff.delay_honouring(0, 0.5, asked),
            Duration::from_secs(2)
        );
        assert_eq!(
            backoff.delay_honouring(6, 0.9, asked),
            Duration::from_millis(4500)
        );
        assert_eq!(
            backoff.delay_honouring(0, 0.5, None),
            Duration::from_millis(50)
        );
    }

    #[test]
    fn attempts() {
        let backoff = Backoff::new(Duration::from_millis(10), Duration::from_millis(5), 0);
        assert_eq!(backoff.max_attempts(), 1);
        assert_eq!(backoff.cap(), Duration::from_millis(10));
        assert!(!backoff.may_retry(1));
        assert!(Backoff::default().may_retry(3));
        assert!(!Backoff::default().may_retry(4));
    }

    #[test]
    fn retry_after_forms() {
        let now = UnixMillis(1_700_000_000_000);
        assert_eq!(parse_retry_after(b"7", now), Some(Duration::from_secs(7)));
        assert_eq!(parse_retry_after(b" 0 ", now), Some(Duration::ZERO));
        let in_90s = http_date(now.plus_millis(90_000));
        assert_eq!(
            parse_retry_after(in_90s.as_bytes(), now),
            Some(Duration::from_secs(90))
        );
        let past = http_date(UnixMillis(now.0 - 10_000));
        assert_eq!(
            parse_retry_after(past.as_bytes(), now),
            Some(Duration::ZERO)
        );
        assert_eq!(parse_retry_after(b"soon", now), None);
        assert_eq!(parse_retry_after(b"-3", now), None);
        assert_eq!(parse_retry_after(b"\xff", now), None);
    }

    proptest! {
        #[test]
        fn delays_stay_within_their_ceiling(
            base_ms in 1u64..1000, cap_ms in 1u64..60_000, retry in 0u32..64, jitter in 0.0f64..1.0,
        ) {
            let backoff = Backoff::new(Duration::from_millis(base_ms), Duration::from_millis(cap_ms), 5);
            let delay = backoff.delay(retry, jitter);
            prop_assert!(delay <= backoff.ceiling(retry));
            prop_assert!(backoff.ceiling(retry) <= backoff.cap());
            prop_assert!(backoff.ceiling(retry) >= backoff.ceiling(retry.saturating_sub(1)));
        }
    }
}
