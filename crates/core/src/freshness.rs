//! When a cached token is fresh, aging or expired.

use std::time::Duration;

use crate::clock::UnixMillis;

/// How long before its end a token stops being served.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum MinRemaining {
    /// A share of the token's lifetime, in `[0, 1)`.
    Fraction(f64),
    /// A fixed duration.
    Duration(Duration),
}

/// When cached tokens are refreshed and when they stop being served.
///
/// An entry is *fresh* until `refresh_at` (by default 75 % of its lifetime),
/// *aging* until `expires_at − min_remaining` (by default 10 % of the
/// lifetime before its end, so it is served until 90 % of its life), then
/// *expired*. The margin before the real expiry leaves the caller time to
/// use the token, allowing for clock skew and request latency.
///
/// No token is kept longer than [`max_ttl`](Self::max_ttl) (default one
/// day, Cognito's longest access-token life): an upstream answering
/// `expires_in: 1e12` does not fill the cache for millennia.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct FreshnessPolicy {
    refresh_at: f64,
    min_remaining: MinRemaining,
    max_ttl: Duration,
}

/// The default [`FreshnessPolicy::max_ttl`]: one day.
pub const DEFAULT_MAX_TTL: Duration = Duration::from_secs(24 * 60 * 60);

/// A [`FreshnessPolicy`] setting out of range.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[non_exhaustive]
pub enum PolicyError {
    /// `refresh_at` must be in `(0, 1]`.
    #[error("refresh-at must be a fraction of the lifetime in (0, 1], got {0}")]
    RefreshAt(f64),
    /// A fractional `min_remaining` must be in `[0, 1)`.
    #[error("min-remaining must be a fraction of the lifetime in [0, 1), got {0}")]
    MinRemaining(f64),
}

impl Default for FreshnessPolicy {
    fn default() -> Self {
        Self {
            refresh_at: 0.75,
            min_remaining: MinRemaining::Fraction(0.10),
            max_ttl: DEFAULT_MAX_TTL,
        }
    }
}

/// The stages of a cached entry's life.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Freshness {
    /// Served as is.
    Fresh,
    /// Served, and a background refresh should run.
    Aging,
    /// Never served; callers wait for a new token.
    Expired,
}

/// The instants at which an entry changes stage.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Schedule {
    /// Fresh before this instant.
    pub refresh_at: UnixMillis,
    /// Aging before this instant, expired from it on.
    pub serve_until: UnixMillis,
}

impl FreshnessPolicy {
    /// A policy refreshing at `refresh_at` of the lifetime and serving until
    /// `min_remaining` before the end.
    ///
    /// # Errors
    /// A [`PolicyError`] when a fraction is out of range.
    pub fn new(refresh_at: f64, min_remaining: MinRemaining) -> Result<Self, PolicyError> {
        if !(refresh_at > 0.0 && refresh_at <= 1.0) {
            return Err(PolicyError::RefreshAt(refresh_at));
        }
        if let MinRemaining::Fraction(fraction) = min_remaining
            && !(0.0..1.0).contains(&fraction)
        {
            return Err(PolicyError::MinRemaining(fraction));
        }
        Ok(Self {
            refresh_at,
            min_remaining,
            max_ttl: DEFAULT_MAX_TTL,
        })
    }

    /// This policy with another longest cached life (zero is taken as one
    /// millisecond: nothing is ever cached).
    #[must_use]
    pub const fn with_max_ttl(mut self, max_ttl: Duration) -> Self {
        self.max_ttl = max_ttl;
        self
    }

    /// The longest a token is kept, whatever its `expires_in` says.
    #[must_use]
    pub const fn max_ttl(&self) -> Duration {
        self.max_ttl
    }

    /// `expires_at`, brought forward to at most [`max_ttl`](Self::max_ttl)
    /// after `fetched_at`: the end of life the cache keeps and answers with.
    #[must_use]
    pub fn capped_expiry(&self, fetched_at: UnixMillis, expires_at: UnixMillis) -> UnixMillis {
        let max_millis = u64::try_from(self.max_ttl.as_millis())
            .unwrap_or(u64::MAX)
            .max(1);
        expires_at.min(fetched_at.plus_millis(max_millis))
    }

    /// The share of the lifetime after which a refresh starts.
    #[must_use]
    pub const fn refresh_at(&self) -> f64 {
        self.refresh_at
    }

    /// How long before its end a token stops being served.
    #[must_use]
    pub const fn min_remaining(&self) -> MinRemaining {
        self.min_remaining
    }

    /// The schedule of a token fetched at `fetched_at` that expires at
    /// `expires_at`, or `None` when it would never be servable.
    #[must_use]
    pub fn schedule(&self, fetched_at: UnixMillis, expires_at: UnixMillis) -> Option<Schedule> {
        let lifetime = expires_at.millis_since(fetched_at);
        let margin = match self.min_remaining {
            MinRemaining::Fraction(fraction) => share(lifetime, fraction),
            MinRemaining::Duration(duration) => {
                u64::try_from(duration.as_millis()).unwrap_or(u64::MAX)
            }
        };
        let serve_until = UnixMillis(expires_at.0.saturating_sub(margin));
        if serve_until <= fetched_at {
            return None;
        }
        let refresh_at = fetched_at
            .plus_millis(share(lifetime, self.refresh_at))
            .min(serve_until);
        Some(Schedule {
            refresh_at,
            serve_until,
        })
    }
}

impl Schedule {
    /// The stage at `now`.
    #[must_use]
    pub fn freshness(&self, now: UnixMillis) -> Freshness {
        if now < self.refresh_at {
            Freshness::Fresh
        } else if now < self.serve_until {
            Freshness::Aging
        } else {
            Freshness::Expired
        }
    }
}

/// `fraction` of `millis`, rounded down. Lifetimes fit f64's 53-bit
/// mantissa exactly (2^53 ms is 285,000 years).
#[allow(
    clippy::cast_precision_loss,
    clippy::cast_possible_truncation,
    clippy::cast_sign_loss
)]
fn share(millis: u64, fraction: f64) -> u64 {
    (millis as f64 * fraction) as u64
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    const T0: UnixMillis = UnixMillis(1_700_000_000_000);

    #[test]
    fn default_schedule_of_an_hour() {
        let schedule = FreshnessPolicy::default()
            .schedule(T0, T0.plus_millis(3_600_000))
            .unwrap();
        assert_eq!(schedule.refresh_at, T0.plus_millis(2_700_000));
        assert_eq!(schedule.serve_until, T0.plus_millis(3_240_000));
        assert_eq!(schedule.freshness(T0), Freshness::Fresh);
        assert_eq!(
            schedule.freshness(T0.plus_millis(2_699_999)),
            Freshness::Fresh
        );
        assert_eq!(
            schedule.freshness(T0.plus_millis(2_700_000)),
            Freshness::Aging
        );
        assert_eq!(
            schedule.freshness(T0.plus_millis(3_239_999)),
            Freshness::Aging
        );
        assert_eq!(
            schedule.freshness(T0.plus_millis(3_240_000)),
            Freshness::Expired
        );
    }

    #[test]
    fn absolute_margin() {
        let policy =
            FreshnessPolicy::new(0.5, MinRemaining::Duration(Duration::from_secs(60))).unwrap();
        let schedule = policy.schedule(T0, T0.plus_millis(600_000)).unwrap();
        assert_eq!(schedule.refresh_at, T0.plus_millis(300_000));
        assert_eq!(schedule.serve_until, T0.plus_millis(540_000));
        // A margin longer than the lifetime leaves nothing to serve.
        assert_eq!(policy.schedule(T0, T0.plus_millis(60_000)), None);
        // The refresh point never passes the end of service.
        let late = FreshnessPolicy::new(1.0, MinRemaining::Duration(Duration::from_secs(60)))
            .unwrap()
            .schedule(T0, T0.plus_millis(600_000))
            .unwrap();
        assert_eq!(late.refresh_at, late.serve_until);
    }

    #[test]
    fn lifetimes_are_capped_at_max_ttl() {
        let policy = FreshnessPolicy::default();
        assert_eq!(policy.max_ttl(), DEFAULT_MAX_TTL);
        let far = T0.plus_millis(1_000_000_000_000_000);
        assert_eq!(policy.capped_expiry(T0, far), T0.plus_millis(86_400_000));
        let near = T0.plus_millis(3_600_000);
        assert_eq!(policy.capped_expiry(T0, near), near);
        let short = policy.with_max_ttl(Duration::from_secs(60));
        assert_eq!(short.capped_expiry(T0, near), T0.plus_millis(60_000));
    }

    #[test]
    fn rejects_out_of_range() {
        assert!(FreshnessPolicy::new(0.0, MinRemaining::Fraction(0.1)).is_err());
        assert!(FreshnessPolicy::new(1.5, MinRemaining::Fraction(0.1)).is_err());
        assert!(FreshnessPolicy::new(f64::NAN, MinRemaining::Fraction(0.1)).is_err());
        assert!(FreshnessPolicy::new(0.7, MinRemaining::Fraction(1.0)).is_err());
        assert!(FreshnessPolicy::new(0.7, MinRemaining::Fraction(-0.1)).is_err());
    }

    proptest! {
        #[test]
        fn stages_are_ordered(
            lifetime in 1u64..10_000_000_000,
            refresh in 0.01f64..=1.0,
            margin in 0.0f64..0.99,
            probe in any::<u64>(),
        ) {
            let policy = FreshnessPolicy::new(refresh, MinRemaining::Fraction(margin)).unwrap();
            let expires_at = T0.plus_millis(lifetime);
            if let Some(schedule) = policy.schedule(T0, expires_at) {
                prop_assert!(T0 <= schedule.refresh_at);
                prop_assert!(schedule.refresh_at <= schedule.serve_until);
                prop_assert!(schedule.serve_until <= expires_at);
                let now = T0.plus_millis(probe % (lifetime * 2));
                let stage = schedule.freshness(now);
                // Never served at or past the real expiry.
                if now >= expires_at {
                    prop_assert_eq!(stage, Freshness::Expired);
                }
                // Stages only move forward.
                let later = schedule.freshness(now.plus_millis(1));
                prop_assert!(rank(later) >= rank(stage));
            }
        }
    }

    fn rank(stage: Freshness) -> u8 {
        match stage {
            Freshness::Fresh => 0,
            Freshness::Aging => 1,
            Freshness::Expired => 2,
        }
    }
}
