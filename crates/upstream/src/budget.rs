//! The request budget kept in this process: a token bucket shared by every
//! key of a budget group.
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

use tokencache_core::budget::{
    BudgetLimits, BudgetState, SlotDecision, SlotRequest, ThrottleReport,
};
pub use tokencache_core::budget::{CUBIC_SCALE, DECREASE};
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

/// A token bucket kept in this process, whose rate adapts to the
/// upstream's throttles: the arithmetic of
/// [`BudgetState`](tokencache_core::budget::BudgetState) on this process's
/// monotonic clock.
///
/// A throttle sets the rate to [`DECREASE`] (0.7) times what the upstream
/// was seen to accept over the last second (never more than the rate in
/// force), at most once per round of requests, and spends the burst; a
/// `Retry-After` on it pauses every request until then. Without throttles
/// the rate recovers along a cubic curve (CUBIC, as in the AWS SDKs'
/// adaptive retry mode), never past the configured rate.
#[derive(Debug)]
pub struct RequestBudget {
    limits: BudgetLimits,
    /// The instant the state's microseconds count from.
    origin: Instant,
    state: Mutex<BudgetState>,
    /// Callers sleeping until their reserved slot.
    callers_waiting: AtomicUsize,
    unlimited: bool,
}

impl RequestBudget {
    /// A budget; a rate of 0 or less (or not finite) means unlimited.
    #[must_use]
    pub fn new(config: BudgetConfig) -> Self {
        let unlimited = !(config.rate_per_sec.is_finite() && config.rate_per_sec > 0.0);
        let limits = BudgetLimits {
            rate_per_sec: if unlimited { 1.0 } else { config.rate_per_sec },
            burst: config.burst.max(1),
        };
        Self {
            limits,
            origin: Instant::now(),
            state: Mutex::new(BudgetState::new(&limits, 0)),
            callers_waiting: AtomicUsize::new(0),
            unlimited,
        }
    }

    /// A budget whose burst is spent and whose first slot is at `first`
    /// (unlimited like [`new`](Self::new) for a rate of 0).
    #[must_use]
    pub fn empty_until(config: BudgetConfig, first: Instant) -> Self {
        let budget = Self::new(config);
        let at = budget.micros(first);
        *budget.lock() = BudgetState::empty_until(&budget.limits, at);
        budget
    }

    /// Whether requests are paced at all (a budget of rate 0 is not).
    #[must_use]
    pub fn is_limited(&self) -> bool {
        !self.unlimited
    }

    /// Whether callers are sleeping until their reserved slot here.
    pub(crate) fn has_waiting_callers(&self) -> bool {
        self.callers_waiting.load(Ordering::Acquire) > 0
    }

    /// The rate now, per second: the configured one, or lower after
    /// throttles (`f64::INFINITY` when unlimited).
    #[must_use]
    pub fn rate(&self, now: Instant) -> f64 {
        if self.unlimited {
            return f64::INFINITY;
        }
        self.lock().rate_at(&self.limits, self.micros(now))
    }

    /// The limit learned from throttles, per second: the rate the upstream
    /// was last throttled at, or the rate in force when it never was
    /// (`f64::INFINITY` when unlimited).
    #[must_use]
    pub fn learned_limit(&self, now: Instant) -> f64 {
        if self.unlimited {
            return f64::INFINITY;
        }
        self.lock()
            .standing_at(&self.limits, self.micros(now))
            .limit_per_sec
    }

    /// The upstream answered a request with something other than a
    /// throttle: what it accepts is measured from these.
    pub fn accepted(&self, now: Instant) {
        if self.unlimited {
            return;
        }
        let now = self.micros(now);
        self.lock().record_accepted(now, 1);
    }

    /// The upstream throttled a request sent at `sent_at`: lower the rate
    /// (unless a decrease after that request already did), and pause every
    /// request for `retry_after` when the throttle asked for it.
    pub fn throttled(&self, sent_at: Instant, now: Instant, retry_after: Option<Duration>) {
        if self.unlimited {
            return;
        }
        let report = ThrottleReport {
            sent_micros_ago: micros_of(now.saturating_duration_since(sent_at)),
            retry_after_micros: retry_after.map(micros_of),
        };
        let now = self.micros(now);
        self.lock().throttled(&self.limits, &report, now);
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, BudgetState> {
        // Plain numbers: consistent even if a holder panicked.
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// `now` in the state's microseconds.
    fn micros(&self, now: Instant) -> u64 {
        micros_of(now.saturating_duration_since(self.origin))
    }

    /// Asks for a slot at `now` for a request that must start by `deadline`.
    pub fn request(&self, priority: Priority, now: Instant, deadline: Instant) -> Grant {
        self.request_in_epoch(priority, now, deadline).0
    }

    /// [`request`](Self::request), and the epoch the grant belongs to.
    fn request_in_epoch(
        &self,
        priority: Priority,
        now: Instant,
        deadline: Instant,
    ) -> (Grant, u64) {
        if self.unlimited {
            return (Grant::Now, 0);
        }
        let background = priority == Priority::Background;
        let request = SlotRequest {
            // A refresh also yields to callers already sleeping until their
            // slot, whose time may have come.
            background,
            max_wait_micros: micros_of(deadline.saturating_duration_since(now)),
        };
        let at = self.micros(now);
        let mut state = self.lock();
        if background && self.has_waiting_callers() {
            let interval = Duration::from_secs_f64(1.0 / state.rate_at(&self.limits, at));
            return (
                Grant::Refused {
                    retry_after: interval,
                },
                state.epoch,
            );
        }
        let answer = state.take_slot(&self.limits, &request, at);
        (grant_of(answer.decision, now), answer.standing.epoch)
    }

    /// The epoch now (see [`BudgetStanding::epoch`]).
    fn epoch(&self) -> u64 {
        self.lock().epoch
    }

    /// Takes a slot, sleeping for it if need be; how long it waited.
    ///
    /// A slot reserved before a throttle changed the rate (or paused the
    /// upstream) was reckoned at a rate no longer in force: its holder asks
    /// again when it comes, rather than sending into the throttle.
    ///
    /// # Errors
    /// The wait after which a slot could be free, when none is free before
    /// `deadline` (for a background refresh: none free now).
    pub async fn acquire(
        &self,
        priority: Priority,
        deadline: Instant,
    ) -> Result<Duration, Duration> {
        let started = Instant::now();
        loop {
            let now = Instant::now();
            match self.request_in_epoch(priority, now, deadline) {
                (Grant::Now, _) => return Ok(now - started),
                (Grant::At(at), epoch) => {
                    let _waiting = WaitingCaller::enter(&self.callers_waiting);
                    tokio::time::sleep_until(at).await;
                    if self.epoch() == epoch {
                        return Ok(at - started);
                    }
                }
                (Grant::Refused { retry_after }, _) => return Err(retry_after),
            }
        }
    }
}

/// A duration in whole microseconds (saturating).
pub(crate) fn micros_of(duration: Duration) -> u64 {
    u64::try_from(duration.as_micros()).unwrap_or(u64::MAX)
}

/// A slot decision as a [`Grant`] at `now`.
pub(crate) fn grant_of(decision: SlotDecision, now: Instant) -> Grant {
    match decision {
        SlotDecision::Granted { wait_micros: 0 } => Grant::Now,
        SlotDecision::Granted { wait_micros } => {
            Grant::At(now + Duration::from_micros(wait_micros))
        }
        SlotDecision::Refused { retry_after_micros } => Grant::Refused {
            retry_after: Duration::from_micros(retry_after_micros),
        },
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

    #[tokio::test(start_paused = true)]
    async fn a_throttle_sets_the_rate_below_what_was_accepted_once_per_round() {
        let budget = budget(100.0, 1);
        let start = Instant::now();
        for _ in 0..20 {
            budget.accepted(start);
        }
        // Three requests in flight are throttled: one decrease, to 0.7 of
        // the 20 a second the upstream accepted.
        for _ in 0..3 {
            budget.throttled(start, start, None);
        }
        assert!((budget.rate(start) - 14.0).abs() < 1e-9);
        // A request sent after that decrease, throttled too: another.
        let later = start + Duration::from_millis(10);
        let before = budget.rate(later);
        budget.throttled(later, later, None);
        assert!((budget.rate(later) - before * DECREASE).abs() < 1e-6);
        // Nothing measured: the rate in force is decreased.
        let fresh = RequestBudget::new(BudgetConfig {
            rate_per_sec: 100.0,
            burst: 1,
        });
        fresh.throttled(start, start, None);
        assert!((fresh.rate(start) - 70.0).abs() < 1e-9);
    }

    #[tokio::test(start_paused = true)]
    async fn the_rate_recovers_along_a_cubic_curve_and_never_past_the_configured() {
        let budget = budget(100.0, 1);
        let start = Instant::now();
        for _ in 0..20 {
            budget.accepted(start);
        }
        budget.throttled(start, start, None);
        assert!((budget.rate(start) - 14.0).abs() < 1e-9);
        // Back to the throttled 20 after K = cbrt(20 × 0.3 / 0.4) seconds,
        // flat around it for a while, then probing above.
        let climb = Duration::from_secs_f64((20.0_f64 * 0.3 / CUBIC_SCALE).cbrt());
        assert!((budget.rate(start + climb) - 20.0).abs() < 1e-3);
        let soon = budget.rate(start + climb - Duration::from_millis(500));
        assert!(soon > 19.0 && soon < 20.0, "{soon}");
        let probing = budget.rate(start + climb + Duration::from_secs(5));
        // (Microseconds: the state counts time in them.)
        assert!((probing - 70.0).abs() < 1e-3, "{probing}");
        assert!((budget.rate(start + Duration::from_secs(60)) - 100.0).abs() < 1e-9);
        // Never below the floor, however many throttles.
        let mut now = start + Duration::from_secs(60);
        for _ in 0..100 {
            now += Duration::from_millis(1);
            budget.throttled(now, now, None);
        }
        assert!(budget.rate(now) >= 1.0 - 1e-9);
    }

    #[tokio::test(start_paused = true)]
    async fn retry_after_pauses_every_request_and_then_no_burst() {
        let budget = budget(10.0, 5);
        let now = Instant::now();
        let far = now + Duration::from_secs(60);
        budget.throttled(now, now, Some(Duration::from_secs(1)));
        let resume = now + Duration::from_secs(1);
        // (Nothing was measured, so the rate went from 10 to 7; at the end
        // of the pause the cubic recovery has it back near 10.)
        let rate_then = budget.rate(resume);
        assert_eq!(
            budget.request(Priority::Caller, now, far),
            Grant::At(resume)
        );
        // The next is spaced by the (lowered) rate, not let through at once.
        let next = budget.request(Priority::Caller, now, far);
        let Grant::At(at) = next else {
            panic!("{next:?}")
        };
        // Spaced by about one interval at the recovering rate, not at once.
        let gap = (at - resume).as_secs_f64();
        assert!(gap > 0.9 / rate_then && gap < 1.0 / 7.0 + 1e-6, "{gap}");
        // A caller whose deadline falls inside the pause is refused at once.
        assert!(matches!(
            budget.request(Priority::Caller, now, now + Duration::from_millis(500)),
            Grant::Refused { .. }
        ));
        // A background refresh takes no slot during a pause.
        assert!(matches!(
            budget.request(Priority::Background, now, far),
            Grant::Refused { .. }
        ));
    }
}
