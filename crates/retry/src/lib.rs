//! One async retry loop, shared by everything in tokencache that asks a
//! token endpoint more than once: the proxy's upstream and the client
//! library.
//!
//! [`Retry`] runs attempts until the caller's classifier says stop, waiting
//! between them as core's [`Backoff`] says (exponential, full jitter, an
//! attempt limit), never less than a `Retry-After` the classifier reports,
//! and never past the caller's deadline: a wait that would end at or after
//! the deadline is not started, and the last outcome is returned instead.
//!
//! The loop knows nothing of HTTP or tokens. The caller decides, from each
//! outcome, with a [`Verdict`]: stop, retry, retry no sooner than a given
//! delay, or stop and keep the previous attempt's outcome (for an attempt
//! that says less than the one before, such as a local refusal).
//!
//! # Example
//!
//! ```
//! use std::time::Duration;
//!
//! use tokencache_core::Backoff;
//! use tokencache_retry::{Retry, Verdict};
//! use tokio::time::Instant;
//!
//! # #[tokio::main(flavor = "current_thread", start_paused = true)]
//! # async fn main() {
//! // An endpoint that is busy twice, then answers.
//! let answers = [Err("busy"), Err("busy"), Ok("token")];
//! let started = Instant::now();
//! let outcome = Retry::new(Backoff::new(Duration::from_millis(100), Duration::from_secs(5), 4))
//!     .deadline(started + Duration::from_secs(30))
//!     .run(
//!         |attempt| std::future::ready(answers[attempt as usize]),
//!         |outcome| match outcome {
//!             Ok(_) => Verdict::Stop,
//!             Err(_) => Verdict::Retry,
//!         },
//!         |_outcome, retrying| println!("retry in {:?}", retrying.delay),
//!     )
//!     .await;
//! assert_eq!(outcome, Ok("token"));
//! // Two waits, each below its ceiling (100 ms, then 200 ms).
//! assert!(started.elapsed() < Duration::from_millis(300));
//! # }
//! ```
//!
//! Time is Tokio's, so tests pause it and script the attempts.
//!
//! This crate has no feature flags.

use std::future::Future;
use std::time::Duration;

use tokencache_core::Backoff;
use tokio::time::Instant;

/// What to do after an attempt, as the caller's classifier decides.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    /// Done: return this outcome (a success, or a failure that asking again
    /// cannot fix).
    Stop,
    /// Worth another attempt, after the backoff's delay.
    Retry,
    /// Worth another attempt, but not before this long (a `Retry-After`):
    /// a floor under the backoff's delay.
    RetryAfter(Duration),
    /// Worth another attempt at once, and not counted against the attempt
    /// limit: the attempt paces itself (a throttled request goes back to a
    /// request budget that already slowed down). Bounded by the deadline
    /// and by [`MAX_UNCOUNTED`] in a row.
    Again,
    /// Done, and this outcome says less than the previous attempt's (say,
    /// the attempt was refused locally, by a budget or a circuit breaker,
    /// before it reached anyone): return the previous outcome if there was
    /// one, else this one.
    Discard,
}

/// The most [`Verdict::Again`] retries in a row; beyond it they count as
/// [`Verdict::Retry`], so a source that never stops asking cannot spin.
pub const MAX_UNCOUNTED: u32 = 64;

/// A retry about to wait, as shown to the `before_retry` hook of
/// [`Retry::run`] (for logs and metrics).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub struct Retrying {
    /// Attempts made so far (1 before the first retry).
    pub attempts: u32,
    /// The wait before the next attempt.
    pub delay: Duration,
}

/// The retry policy of one run: a [`Backoff`], an optional deadline, and
/// where the jitter comes from. Cheap to build, so build one per run.
#[derive(Debug, Clone, Copy)]
pub struct Retry {
    backoff: Backoff,
    deadline: Option<Instant>,
    jitter: fn() -> f64,
}

impl Retry {
    /// Retries as `backoff` says, with no deadline, jittered by
    /// [`rand::random`].
    #[must_use]
    pub fn new(backoff: Backoff) -> Self {
        Self {
            backoff,
            deadline: None,
            jitter: rand::random::<f64>,
        }
    }

    /// No wait may end at or after `deadline`: when the next one would,
    /// the run ends with the last outcome instead. (Bounding each attempt
    /// by the deadline is the attempt's business.)
    #[must_use]
    pub fn deadline(mut self, deadline: Instant) -> Self {
        self.deadline = Some(deadline);
        self
    }

    /// Where the jitter comes from: a number in `[0, 1)` per wait. Tests
    /// pass a constant to make delays exact.
    #[must_use]
    pub fn jitter(mut self, jitter: fn() -> f64) -> Self {
        self.jitter = jitter;
        self
    }

    /// Runs `attempt` (given the attempt's index, 0 for the first) until
    /// `classify` stops it, the backoff's attempt limit is reached, or the
    /// next wait would pass the deadline; returns the outcome the
    /// [`Verdict`] names, or else the last one. `before_retry` sees each
    /// outcome that is about to be retried, and the wait.
    pub async fn run<T, A, Fut, C, B>(
        &self,
        mut attempt: A,
        mut classify: C,
        mut before_retry: B,
    ) -> T
    where
        A: FnMut(u32) -> Fut,
        Fut: Future<Output = T>,
        C: FnMut(&T) -> Verdict,
        B: FnMut(&T, Retrying),
    {
        let mut previous = None;
        let mut attempts = 0u32;
        let mut made = 0u32;
        let mut uncounted = 0u32;
        loop {
            let outcome = attempt(made).await;
            made = made.saturating_add(1);
            let floor = match classify(&outcome) {
                Verdict::Stop => return outcome,
                Verdict::Discard => return previous.unwrap_or(outcome),
                Verdict::Again if uncounted < MAX_UNCOUNTED => {
                    if self
                        .deadline
                        .is_some_and(|deadline| Instant::now() >= deadline)
                    {
                        return outcome;
                    }
                    uncounted += 1;
                    before_retry(
                        &outcome,
                        Retrying {
                            attempts,
                            delay: Duration::ZERO,
                        },
                    );
                    previous = Some(outcome);
                    continue;
                }
                Verdict::Retry | Verdict::Again => None,
                Verdict::RetryAfter(floor) => Some(floor),
            };
            uncounted = 0;
            attempts = attempts.saturating_add(1);
            let Some(delay) = self.next_delay(attempts, floor) else {
                return outcome;
            };
            before_retry(&outcome, Retrying { attempts, delay });
            tokio::time::sleep(delay).await;
            previous = Some(outcome);
        }
    }

    /// The wait before the next attempt, or `None` when there is to be no
    /// next attempt.
    fn next_delay(&self, attempts_made: u32, floor: Option<Duration>) -> Option<Duration> {
        if !self.backoff.may_retry(attempts_made) {
            return None;
        }
        let delay =
            self.backoff
                .delay_honouring(attempts_made.saturating_sub(1), (self.jitter)(), floor);
        if let Some(deadline) = self.deadline {
            // A `Retry-After` of years overflows the clock: past any deadline.
            let resumes = Instant::now().checked_add(delay)?;
            if resumes >= deadline {
                return None;
            }
        }
        Some(delay)
    }
}

#[cfg(test)]
mod tests {
    use std::cell::RefCell;

    use super::*;

    fn ms(millis: u64) -> Duration {
        Duration::from_millis(millis)
    }

    /// 100 ms base, 1 s cap, `attempts` in all, half of each ceiling.
    fn half(attempts: u32) -> Retry {
        Retry::new(Backoff::new(ms(100), ms(1000), attempts)).jitter(|| 0.5)
    }

    /// Runs `policy` over scripted outcomes (attempt `n` gets `script[n]`),
    /// classifying with `classify`; returns the outcome, the waits and the
    /// attempts made.
    async fn scripted(
        policy: Retry,
        script: &[&'static str],
        classify: impl FnMut(&&'static str) -> Verdict,
    ) -> (&'static str, Vec<Duration>, u32) {
        let waits = RefCell::new(Vec::new());
        let made = RefCell::new(0);
        let outcome = policy
            .run(
                |n| {
                    *made.borrow_mut() += 1;
                    std::future::ready(script[n as usize])
                },
                classify,
                |_, retrying| waits.borrow_mut().push(retrying.delay),
            )
            .await;
        (outcome, waits.into_inner(), made.into_inner())
    }

    fn until_ok(outcome: &&str) -> Verdict {
        if *outcome == "ok" {
            Verdict::Stop
        } else {
            Verdict::Retry
        }
    }

    #[tokio::test(start_paused = true)]
    async fn retries_until_stopped_with_doubling_delays() {
        let started = Instant::now();
        let (outcome, waits, made) =
            scripted(half(5), &["busy", "busy", "busy", "ok", "unused"], until_ok).await;
        assert_eq!(outcome, "ok");
        assert_eq!(made, 4);
        assert_eq!(waits, [ms(50), ms(100), ms(200)]);
        assert_eq!(started.elapsed(), ms(350));
    }

    #[tokio::test(start_paused = true)]
    async fn delays_stop_growing_at_the_cap() {
        let script = ["busy"; 8];
        let (_, waits, _) = scripted(half(8), &script, until_ok).await;
        assert_eq!(
            waits,
            [ms(50), ms(100), ms(200), ms(400), ms(500), ms(500), ms(500)]
        );
    }

    #[tokio::test(start_paused = true)]
    async fn stop_is_not_retried() {
        let (outcome, waits, made) = scripted(half(5), &["refused", "ok"], |_| Verdict::Stop).await;
        assert_eq!((outcome, made), ("refused", 1));
        assert!(waits.is_empty());
    }

    #[tokio::test(start_paused = true)]
    async fn the_attempt_limit_returns_the_last_outcome() {
        let (outcome, waits, made) = scripted(half(3), &["a", "b", "c", "ok"], until_ok).await;
        assert_eq!((outcome, made), ("c", 3));
        assert_eq!(waits.len(), 2);
    }

    #[tokio::test(start_paused = true)]
    async fn retry_after_is_a_floor_not_a_ceiling() {
        let started = Instant::now();
        let (outcome, waits, _) =
            scripted(
                half(5),
                &["throttled", "busy", "busy", "ok"],
                |o| match *o {
                    "throttled" => Verdict::RetryAfter(Duration::from_secs(3)),
                    "busy" => Verdict::RetryAfter(ms(10)),
                    _ => Verdict::Stop,
                },
            )
            .await;
        assert_eq!(outcome, "ok");
        // 3 s asked; then the backoff's own 100 and 200 ms beat the 10 ms asked.
        assert_eq!(waits, [Duration::from_secs(3), ms(100), ms(200)]);
        assert_eq!(started.elapsed(), ms(3300));
    }

    #[tokio::test(start_paused = true)]
    async fn no_wait_may_reach_the_deadline() {
        let started = Instant::now();
        let policy = half(5).deadline(started + Duration::from_secs(30));
        let (outcome, waits, made) = scripted(policy, &["throttled", "ok"], |o| match *o {
            "throttled" => Verdict::RetryAfter(Duration::from_secs(60)),
            _ => Verdict::Stop,
        })
        .await;
        assert_eq!((outcome, made), ("throttled", 1));
        assert!(waits.is_empty());
        assert_eq!(
            started.elapsed(),
            Duration::ZERO,
            "returned without waiting"
        );

        // A wait ending exactly at the deadline is not started either.
        let policy = half(5).deadline(Instant::now() + ms(50));
        let (outcome, _, made) = scripted(policy, &["busy", "ok"], until_ok).await;
        assert_eq!((outcome, made), ("busy", 1));
    }

    #[tokio::test(start_paused = true)]
    async fn an_enormous_retry_after_ends_the_run_instead_of_overflowing() {
        let policy = half(5).deadline(Instant::now() + Duration::from_secs(30));
        let (outcome, _, made) = scripted(policy, &["throttled", "ok"], |o| match *o {
            "throttled" => Verdict::RetryAfter(Duration::MAX),
            _ => Verdict::Stop,
        })
        .await;
        assert_eq!((outcome, made), ("throttled", 1));
    }

    #[tokio::test(start_paused = true)]
    async fn discard_returns_the_previous_outcome() {
        let classify = |o: &&str| match *o {
            "refused" => Verdict::Discard,
            "ok" => Verdict::Stop,
            _ => Verdict::Retry,
        };
        let (outcome, _, made) = scripted(half(5), &["503", "refused", "ok"], classify).await;
        assert_eq!((outcome, made), ("503", 2));
        // With no previous attempt, the refusal itself.
        let (outcome, _, made) = scripted(half(5), &["refused", "ok"], classify).await;
        assert_eq!((outcome, made), ("refused", 1));
    }

    #[tokio::test(start_paused = true)]
    async fn default_jitter_stays_under_the_ceiling() {
        let started = Instant::now();
        let policy = Retry::new(Backoff::new(ms(100), ms(1000), 3));
        let (_, waits, _) = scripted(policy, &["busy", "busy", "busy"], until_ok).await;
        assert!(waits[0] <= ms(100) && waits[1] <= ms(200), "{waits:?}");
        assert!(started.elapsed() <= ms(300));
    }

    #[tokio::test(start_paused = true)]
    async fn again_retries_at_once_without_using_up_attempts() {
        // One attempt allowed in all, yet two throttles are waited out.
        let (outcome, waits, made) = scripted(
            half(1),
            &["throttled", "throttled", "ok"],
            |outcome| match *outcome {
                "ok" => Verdict::Stop,
                _ => Verdict::Again,
            },
        )
        .await;
        assert_eq!((outcome, made), ("ok", 3));
        assert_eq!(waits, [Duration::ZERO, Duration::ZERO]);
    }

    #[tokio::test(start_paused = true)]
    async fn again_is_bounded_in_a_row() {
        let script = ["throttled"; MAX_UNCOUNTED as usize + 2];
        let (outcome, _, made) = scripted(half(1), &script, |_| Verdict::Again).await;
        assert_eq!(outcome, "throttled");
        // The uncounted ones, then one counted attempt with no retry left.
        assert_eq!(made, MAX_UNCOUNTED + 1);
    }
}
