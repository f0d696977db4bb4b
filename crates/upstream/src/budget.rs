//! The request budget: a token bucket per upstream, shared by every key.
//!
//! Implemented as GCRA (the generic cell rate algorithm): one instant, the
//! theoretical arrival time of the next request, says when the bucket next
//! has a token. Callers *reserve* their slot and sleep until it, so a cold
//! start of many keys queues in order instead of tripping the upstream's
//! quota; a caller whose slot lies past its deadline is refused at once,
//! without reserving, so it takes nothing from those behind it.
//! Background refreshes only take a slot that is free now and that no
//! waiting caller needs: they yield to callers.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Mutex, PoisonError};
use std::time::Duration;

use tokio::time::Instant;

/// Who is asking for a slot.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Priority {
    /// A caller is waiting for the answer.
    Caller,
    /// A background refresh: nobody waits; it yields to callers.
    Background,
}

/// What the budget granted.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Grant {
    /// Go now.
    Now,
    /// A slot is reserved at this instant; sleep until it, then go.
    At(Instant),
    /// No slot before the deadline (or, for a background refresh, none
    /// free now); the next would be free after this long.
    Refused {
        /// When asking again could succeed.
        retry_after: Duration,
    },
}

/// Rate and burst of a [`RequestBudget`].
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct BudgetConfig {
    /// Requests per second, sustained. Default 100.
    pub rate_per_sec: f64,
    /// Requests that may go at once after a quiet spell. Default 20.
    pub burst: u32,
}

impl Default for BudgetConfig {
    /// 100/s with bursts of 20: below Cognito's default quota for the
    /// client-credentials token endpoint, with room for the rest of the
    /// account.
    fn default() -> Self {
        Self {
            rate_per_sec: 100.0,
            burst: 20,
        }
    }
}

/// A token bucket shared by every request to one upstream.
#[derive(Debug)]
pub struct RequestBudget {
    /// Time between two requests at the sustained rate.
    interval: Duration,
    /// How far ahead of the sustained rate a burst may run.
    tolerance: Duration,
    /// The theoretical arrival time of the next request.
    next_arrival: Mutex<Instant>,
    /// Callers sleeping until their reserved slot.
    callers_waiting: AtomicUsize,
    unlimited: bool,
}

impl RequestBudget {
    /// A budget; a rate of 0 or less (or not finite) means unlimited.
    #[must_use]
    pub fn new(config: BudgetConfig) -> Self {
        let unlimited = !(config.rate_per_sec.is_finite() && config.rate_per_sec > 0.0);
        let interval = if unlimited {
            Duration::ZERO
        } else {
            Duration::from_secs_f64(1.0 / config.rate_per_sec)
        };
        let tolerance = interval.saturating_mul(config.burst.max(1) - 1);
        Self {
            interval,
            tolerance,
            next_arrival: Mutex::new(Instant::now()),
            callers_waiting: AtomicUsize::new(0),
            unlimited,
        }
    }

    /// Asks for a slot at `now` for a request that must start by `deadline`.
    pub fn request(&self, priority: Priority, now: Instant, deadline: Instant) -> Grant {
        if self.unlimited {
            return Grant::Now;
        }
        let mut next_arrival = self
            .next_arrival
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        let arrival = (*next_arrival).max(now);
        // The earliest instant this request conforms to the rate and burst.
        let allowed_at = arrival.checked_sub(self.tolerance).unwrap_or(now).max(now);
        let refused = Grant::Refused {
            retry_after: allowed_at.saturating_duration_since(now).max(self.interval),
        };
        match priority {
            Priority::Background
                if allowed_at > now || self.callers_waiting.load(Ordering::Acquire) > 0 =>
            {
                return refused;
            }
            Priority::Caller if allowed_at > deadline => return refused,
            _ => {}
        }
        *next_arrival = arrival + self.interval;
        if allowed_at > now {
            Grant::At(allowed_at)
        } else {
            Grant::Now
        }
    }

    /// Takes a slot, sleeping for it if need be.
    ///
    /// # Errors
    /// The wait after which a slot could be free, when none is free before
    /// `deadline` (for a background refresh: none free now).
    pub async fn acquire(
        &self,
        priority: Priority,
        deadline: Instant,
    ) -> Result<Duration, Duration> {
        let now = Instant::now();
        match self.request(priority, now, deadline) {
            Grant::Now => Ok(Duration::ZERO),
            Grant::At(at) => {
                let _waiting = WaitingCaller::enter(&self.callers_waiting);
                tokio::time::sleep_until(at).await;
                Ok(at - now)
            }
            Grant::Refused { retry_after } => Err(retry_after),
        }
    }
}

/// Counts a caller as waiting while it lives (so a cancelled wait is not
/// counted forever).
struct WaitingCaller<'a>(&'a AtomicUsize);

impl<'a> WaitingCaller<'a> {
    fn enter(counter: &'a AtomicUsize) -> Self {
        counter.fetch_add(1, Ordering::AcqRel);
        Self(counter)
    }
}

impl Drop for WaitingCaller<'_> {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::AcqRel);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn budget(rate: f64, burst: u32) -> RequestBudget {
        RequestBudget::new(BudgetConfig {
            rate_per_sec: rate,
            burst,
        })
    }

    #[tokio::test(start_paused = true)]
    async fn bursts_then_paces_at_the_rate() {
        let budget = budget(10.0, 3);
        let now = Instant::now();
        let far = now + Duration::from_secs(60);
        let grants: Vec<Grant> = (0..6)
            .map(|_| budget.request(Priority::Caller, now, far))
            .collect();
        assert_eq!(&grants[..3], &[Grant::Now, Grant::Now, Grant::Now]);
        assert_eq!(grants[3], Grant::At(now + Duration::from_millis(100)));
        assert_eq!(grants[4], Grant::At(now + Duration::from_millis(200)));
        assert_eq!(grants[5], Grant::At(now + Duration::from_millis(300)));
    }

    #[tokio::test(start_paused = true)]
    async fn a_quiet_spell_refills_the_burst_but_no_more() {
        let budget = budget(10.0, 2);
        let start = Instant::now();
        let far = start + Duration::from_secs(60);
        for _ in 0..2 {
            assert_eq!(budget.request(Priority::Caller, start, far), Grant::Now);
        }
        let later = start + Duration::from_secs(10);
        assert_eq!(budget.request(Priority::Caller, later, far), Grant::Now);
        assert_eq!(budget.request(Priority::Caller, later, far), Grant::Now);
        assert!(matches!(
            budget.request(Priority::Caller, later, far),
            Grant::At(_)
        ));
    }

    #[tokio::test(start_paused = true)]
    async fn a_slot_past_the_deadline_is_refused_without_reserving() {
        let budget = budget(10.0, 1);
        let now = Instant::now();
        assert_eq!(budget.request(Priority::Caller, now, now), Grant::Now);
        let refused = budget.request(Priority::Caller, now, now + Duration::from_millis(50));
        assert_eq!(
            refused,
            Grant::Refused {
                retry_after: Duration::from_millis(100)
            }
        );
        // Nothing was reserved: the next caller with time to wait gets 100 ms.
        let far = now + Duration::from_secs(1);
        assert_eq!(
            budget.request(Priority::Caller, now, far),
            Grant::At(now + Duration::from_millis(100))
        );
    }

    #[tokio::test(start_paused = true)]
    async fn background_refreshes_yield_to_callers() {
        let budget = budget(10.0, 2);
        let now = Instant::now();
        let far = now + Duration::from_secs(60);
        assert_eq!(budget.request(Priority::Background, now, far), Grant::Now);
        assert_eq!(budget.request(Priority::Caller, now, far), Grant::Now);
        // The bucket is empty: a refresh does not queue, a caller does.
        assert!(matches!(
            budget.request(Priority::Background, now, far),
            Grant::Refused { .. }
        ));
        assert!(matches!(
            budget.request(Priority::Caller, now, far),
            Grant::At(_)
        ));
    }

    #[tokio::test(start_paused = true)]
    async fn a_waiting_caller_keeps_refreshes_out() {
        let budget = std::sync::Arc::new(budget(10.0, 1));
        let far = Instant::now() + Duration::from_secs(60);
        assert_eq!(
            budget.acquire(Priority::Caller, far).await,
            Ok(Duration::ZERO)
        );
        let waiter = tokio::spawn({
            let budget = std::sync::Arc::clone(&budget);
            async move { budget.acquire(Priority::Caller, far).await }
        });
        tokio::task::yield_now().await;
        // Even once the slot time has come, the sleeping caller has it.
        assert!(budget.acquire(Priority::Background, far).await.is_err());
        assert_eq!(waiter.await.unwrap(), Ok(Duration::from_millis(100)));
    }

    #[tokio::test(start_paused = true)]
    async fn zero_rate_is_unlimited() {
        let budget = budget(0.0, 1);
        let now = Instant::now();
        for _ in 0..1000 {
            assert_eq!(budget.request(Priority::Background, now, now), Grant::Now);
        }
    }

    #[tokio::test(start_paused = true)]
    async fn sustained_rate_never_exceeds_the_budget_in_any_second() {
        // 200 callers at once against 40/s with a burst of 5: in any window
        // of one second, at most 5 + 40 slots.
        let budget = budget(40.0, 5);
        let now = Instant::now();
        let far = now + Duration::from_secs(60);
        let slots: Vec<Instant> = (0..200)
            .map(|_| match budget.request(Priority::Caller, now, far) {
                Grant::Now => now,
                Grant::At(at) => at,
                Grant::Refused { .. } => panic!("refused with a far deadline"),
            })
            .collect();
        for (i, start) in slots.iter().enumerate() {
            let in_window = slots[i..]
                .iter()
                .take_while(|slot| slot.duration_since(*start) < Duration::from_secs(1))
                .count();
            assert!(
                in_window <= 45,
                "{in_window} slots in one second from slot {i}"
            );
        }
        assert!(slots[199].duration_since(now) >= Duration::from_millis(4_850));
    }
}
