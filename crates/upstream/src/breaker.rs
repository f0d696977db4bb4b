//! The circuit breaker: after a run of consecutive upstream failures,
//! requests fail fast for a cool-down, then one probe at a time tests
//! recovery.
//!
//! Failing fast spares a struggling identity provider the retries of every
//! cold key at once, and answers callers in microseconds instead of after a
//! timeout; cached tokens are still served meanwhile (the proxy never asks
//! the breaker on a hit).

use std::sync::{Mutex, PoisonError};
use std::time::Duration;

use tokio::time::Instant;

/// When the breaker opens and for how long.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BreakerConfig {
    /// Consecutive failures that open the breaker; 0 disables it.
    /// Default 5.
    pub failure_threshold: u32,
    /// How long an open breaker fails requests before a probe. Default 5 s.
    pub cool_down: Duration,
}

impl Default for BreakerConfig {
    fn default() -> Self {
        Self {
            failure_threshold: 5,
            cool_down: Duration::from_secs(5),
        }
    }
}

/// The breaker's state, for metrics.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BreakerState {
    /// Requests flow.
    Closed,
    /// Requests fail fast.
    Open,
    /// One probe request is testing recovery; the others fail fast.
    HalfOpen,
}

impl BreakerState {
    /// 0 closed, 1 open, 2 half-open: the metric's value.
    #[must_use]
    pub const fn as_gauge(self) -> u8 {
        match self {
            Self::Closed => 0,
            Self::Open => 1,
            Self::HalfOpen => 2,
        }
    }
}

#[derive(Debug, Clone, Copy)]
enum State {
    Closed { failures: u32 },
    Open { until: Instant },
    HalfOpen { probing: bool },
}

/// A circuit breaker for one upstream.
#[derive(Debug)]
pub struct CircuitBreaker {
    config: BreakerConfig,
    state: Mutex<State>,
}

/// Leave to send one request; report its result with
/// [`CircuitBreaker::record`]. A permit dropped unreported counts as a
/// failure, so a cancelled probe cannot leave the breaker half-open forever.
#[derive(Debug)]
#[must_use = "report the request's result with CircuitBreaker::record"]
pub struct Permit<'a> {
    breaker: &'a CircuitBreaker,
    reported: bool,
}

impl CircuitBreaker {
    /// A closed breaker.
    #[must_use]
    pub fn new(config: BreakerConfig) -> Self {
        Self {
            config,
            state: Mutex::new(State::Closed { failures: 0 }),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// The state now (an open breaker past its cool-down reads half-open).
    #[must_use]
    pub fn state(&self, now: Instant) -> BreakerState {
        match *self.lock() {
            State::Closed { .. } => BreakerState::Closed,
            State::Open { until } if now < until => BreakerState::Open,
            State::Open { .. } | State::HalfOpen { .. } => BreakerState::HalfOpen,
        }
    }

    /// Leave to send a request, or how long until asking again makes sense.
    ///
    /// # Errors
    /// The remaining cool-down when the breaker is open, or a short wait
    /// when a probe is already out.
    pub fn admit(&self, now: Instant) -> Result<Permit<'_>, Duration> {
        let mut state = self.lock();
        match *state {
            State::Closed { .. } => {}
            State::Open { until } if now < until => return Err(until - now),
            State::Open { .. } | State::HalfOpen { probing: false } => {
                *state = State::HalfOpen { probing: true };
            }
            State::HalfOpen { probing: true } => return Err(Duration::from_secs(1)),
        }
        Ok(Permit {
            breaker: self,
            reported: false,
        })
    }

    /// Reports the result of a permitted request.
    pub fn record(&self, mut permit: Permit<'_>, succeeded: bool, now: Instant) {
        permit.reported = true;
        self.transition(succeeded, now);
    }

    fn transition(&self, succeeded: bool, now: Instant) {
        if self.config.failure_threshold == 0 {
            return;
        }
        let mut state = self.lock();
        *state = match (*state, succeeded) {
            (_, true) => State::Closed { failures: 0 },
            (State::Closed { failures }, false) if failures + 1 < self.config.failure_threshold => {
                State::Closed {
                    failures: failures + 1,
                }
            }
            // The threshold reached, or a probe failed: open again.
            (_, false) => State::Open {
                until: now + self.config.cool_down,
            },
        };
    }
}

impl Drop for Permit<'_> {
    fn drop(&mut self) {
        if !self.reported {
            self.breaker.transition(false, Instant::now());
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn breaker(threshold: u32) -> CircuitBreaker {
        CircuitBreaker::new(BreakerConfig {
            failure_threshold: threshold,
            cool_down: Duration::from_secs(5),
        })
    }

    fn fail(breaker: &CircuitBreaker, now: Instant) {
        let permit = breaker.admit(now).unwrap();
        breaker.record(permit, false, now);
    }

    #[tokio::test(start_paused = true)]
    async fn opens_after_consecutive_failures_only() {
        let breaker = breaker(3);
        let now = Instant::now();
        fail(&breaker, now);
        fail(&breaker, now);
        let permit = breaker.admit(now).unwrap();
        breaker.record(permit, true, now); // a success resets the run
        fail(&breaker, now);
        fail(&breaker, now);
        assert_eq!(breaker.state(now), BreakerState::Closed);
        fail(&breaker, now);
        assert_eq!(breaker.state(now), BreakerState::Open);
        assert_eq!(breaker.admit(now).unwrap_err(), Duration::from_secs(5));
        let later = now + Duration::from_secs(2);
        assert_eq!(breaker.admit(later).unwrap_err(), Duration::from_secs(3));
    }

    #[tokio::test(start_paused = true)]
    async fn one_probe_at_a_time_after_the_cool_down() {
        let breaker = breaker(1);
        let now = Instant::now();
        fail(&breaker, now);
        let after = now + Duration::from_secs(5);
        assert_eq!(breaker.state(after), BreakerState::HalfOpen);
        let probe = breaker.admit(after).unwrap();
        assert!(breaker.admit(after).is_err(), "a second probe must wait");
        breaker.record(probe, true, after);
        assert_eq!(breaker.state(after), BreakerState::Closed);
        assert!(breaker.admit(after).is_ok());
    }

    #[tokio::test(start_paused = true)]
    async fn a_failed_probe_opens_again() {
        let breaker = breaker(2);
        let now = Instant::now();
        fail(&breaker, now);
        fail(&breaker, now);
        let after = now + Duration::from_secs(6);
        fail(&breaker, after);
        assert_eq!(breaker.state(after), BreakerState::Open);
        assert_eq!(breaker.admit(after).unwrap_err(), Duration::from_secs(5));
    }

    #[tokio::test(start_paused = true)]
    async fn a_dropped_probe_counts_as_failed() {
        let breaker = breaker(1);
        let now = Instant::now();
        fail(&breaker, now);
        let after = now + Duration::from_secs(5);
        drop(breaker.admit(after).unwrap());
        // The drop reads the real (paused) clock: open from now on.
        assert_eq!(breaker.state(Instant::now()), BreakerState::Open);
    }

    #[tokio::test(start_paused = true)]
    async fn threshold_zero_never_opens() {
        let breaker = breaker(0);
        let now = Instant::now();
        for _ in 0..100 {
            fail(&breaker, now);
        }
        assert_eq!(breaker.state(now), BreakerState::Closed);
    }
}
