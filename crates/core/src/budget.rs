//! The request budget's arithmetic, on plain numbers: GCRA (the generic
//! cell rate algorithm) with a rate that adapts to the upstream's
//! throttles.
//!
//! One algorithm for every place a budget is kept: a process's own (the
//! upstream crate's `RequestBudget`), a fleet's in DynamoDB or in the
//! in-process test store, and (mirrored line by line in its Lua script) a
//! fleet's in Redis. Time is whole microseconds on whatever clock the keeper
//! has — a process's monotonic clock, Redis's `TIME` — so a [`BudgetState`]
//! is a handful of numbers a store can keep as they are.
//!
//! **Pacing.** One instant, the theoretical arrival time of the next request
//! ([`BudgetState::next_arrival`]), says when the bucket next has room. A
//! caller *reserves* its slot and sleeps until it, so a cold start of many
//! keys queues in order; a caller whose slot lies past its deadline is
//! refused without reserving. A background refresh only takes a slot that is
//! free now: it yields to callers.
//!
//! **Adapting.** A throttle is a rate signal, not a failure. It sets the
//! rate to [`DECREASE`] times what the upstream was seen to accept over the
//! last second (never more than the rate in force), at most once per round
//! of requests (a throttle of a request sent before the last decrease says
//! nothing new), and spends the burst; a `Retry-After` on it pauses every
//! request until then. Without throttles the rate recovers along a cubic
//! curve (CUBIC, as in the AWS SDKs' adaptive retry mode): quickly back to
//! near the rate that was throttled, flat for a while, then probing above
//! it, never past the configured rate.

/// A throttle sets the rate to this share of the accepted rate (the AWS
/// SDKs' adaptive retry mode uses the same β).
pub const DECREASE: f64 = 0.7;

/// The cubic recovery's scale, requests per second per second³ (the AWS
/// SDKs' `C`).
pub const CUBIC_SCALE: f64 = 0.4;

/// A second, in the microseconds budgets count in.
pub const SECOND_MICROS: u64 = 1_000_000;

/// Rate and burst of a request budget: what it is configured to allow.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct BudgetLimits {
    /// Requests per second, sustained (the highest rate the budget adapts
    /// up to). Must be finite and above zero.
    pub rate_per_sec: f64,
    /// Requests that may go at once after a quiet spell; at least 1.
    pub burst: u32,
}

/// Microseconds between requests at `rate_per_sec` (at least one),
/// truncated as the Redis script does (`math.floor`).
#[must_use]
pub fn interval_micros(rate_per_sec: f64) -> u64 {
    #[allow(
        clippy::cast_possible_truncation,
        clippy::cast_sign_loss,
        reason = "a positive rate above the floor: at most ten seconds"
    )]
    let micros = (1e6 / rate_per_sec) as u64;
    micros.max(1)
}

impl BudgetLimits {
    /// The lowest rate throttles can bring the budget to: 1 % of the
    /// configured rate, and never below one request in ten seconds.
    #[must_use]
    pub fn floor(&self) -> f64 {
        (self.rate_per_sec / 100.0).max(0.1)
    }

    fn burst(&self) -> u64 {
        u64::from(self.burst.max(1))
    }
}

/// What asks for a slot.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SlotRequest {
    /// A background refresh (nobody waits; it only takes a slot that is
    /// free now) rather than a waiting caller.
    pub background: bool,
    /// The longest the caller can wait for its slot, in microseconds.
    pub max_wait_micros: u64,
}

/// What the budget decided.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SlotDecision {
    /// A slot is reserved this many microseconds from now (0: go now).
    Granted {
        /// Microseconds to wait before sending.
        wait_micros: u64,
    },
    /// No slot within the wait allowed (for a background refresh: none free
    /// now); asking again after this long could succeed. Nothing was
    /// reserved.
    Refused {
        /// Microseconds until a slot could be free.
        retry_after_micros: u64,
    },
}

/// Where a budget stands: its rate, the limit it learned, and its epoch.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct BudgetStanding {
    /// The rate in force, per second.
    pub rate_per_sec: f64,
    /// The limit learned from throttles: the rate the upstream was last
    /// throttled at (the plateau the rate recovers to and probes above), or
    /// the rate in force when it never was.
    pub limit_per_sec: f64,
    /// The budget's epoch: bumped by every throttle that changes the rate or
    /// pauses, so a slot reserved in an earlier epoch was reckoned at a rate
    /// no longer in force and its holder asks again.
    pub epoch: u64,
}

/// A slot decision and where the budget stands after it.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct SlotAnswer {
    /// Granted or refused.
    pub decision: SlotDecision,
    /// Where the budget stands.
    pub standing: BudgetStanding,
}

/// A throttle to record.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ThrottleReport {
    /// How long before now the throttled request was sent, in
    /// microseconds.
    pub sent_micros_ago: u64,
    /// The `Retry-After` of the throttle, in microseconds, if it had one.
    pub retry_after_micros: Option<u64>,
}

/// A request budget's state: what a keeper stores between decisions.
///
/// Times are microseconds on the keeper's clock; zero means "never" for
/// [`decreased_at`](Self::decreased_at) and
/// [`paused_until`](Self::paused_until).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct BudgetState {
    /// The theoretical arrival time of the next request.
    pub next_arrival: u64,
    /// The rate in force, per second.
    pub rate_per_sec: f64,
    /// When the last throttle lowered the rate (0: no decrease in force).
    pub decreased_at: u64,
    /// The rate the last throttle lowered (the cubic curve's plateau); kept
    /// after the rate recovered, as the limit learned. 0: never throttled.
    pub throttled_rate: f64,
    /// No request goes before this (a throttle's `Retry-After`; 0: none).
    pub paused_until: u64,
    /// Answers that were not throttles, in the current second.
    pub accepted_now: u32,
    /// Answers that were not throttles, in the second before.
    pub accepted_before: u32,
    /// When the current second began.
    pub accepted_since: u64,
    /// Bumped by every throttle that changes the rate or pauses.
    pub epoch: u64,
}

impl BudgetState {
    /// A budget nobody has used yet: full, at the configured rate.
    #[must_use]
    pub fn new(limits: &BudgetLimits, now: u64) -> Self {
        Self {
            next_arrival: now,
            rate_per_sec: limits.rate_per_sec,
            decreased_at: 0,
            throttled_rate: 0.0,
            paused_until: 0,
            accepted_now: 0,
            accepted_before: 0,
            accepted_since: now,
            epoch: 0,
        }
    }

    /// A budget whose first slot is at `at` and whose burst is spent: what a
    /// replica falls back to while slots it reserved elsewhere still come.
    #[must_use]
    pub fn empty_until(limits: &BudgetLimits, at: u64) -> Self {
        let mut state = Self::new(limits, at);
        state.next_arrival = at + state.interval() * (limits.burst() - 1);
        state
    }

    /// The rate in force at `now`, per second, after the recovery since
    /// the last throttle.
    #[must_use]
    pub fn rate_at(&self, limits: &BudgetLimits, now: u64) -> f64 {
        let mut state = *self;
        state.recover(limits, now);
        state.rate_per_sec
    }

    /// Counts `answers` the upstream gave that were not throttles (what it
    /// accepts is measured from these).
    pub fn record_accepted(&mut self, now: u64, answers: u32) {
        self.roll(now);
        self.accepted_now = self.accepted_now.saturating_add(answers);
    }

    /// Asks for a slot at `now`.
    pub fn take_slot(
        &mut self,
        limits: &BudgetLimits,
        request: &SlotRequest,
        now: u64,
    ) -> SlotAnswer {
        self.recover(limits, now);
        let interval = self.interval();
        // How far ahead of the sustained rate a burst may run.
        let tolerance = interval * (limits.burst() - 1);
        let arrival = self.next_arrival.max(now);
        // The earliest instant this request conforms to the rate and burst,
        // then to a pause a throttle asked for.
        let paced_at = arrival.saturating_sub(tolerance).max(now);
        if self.paused_until <= now {
            self.paused_until = 0;
        }
        let held_by_pause = self.paused_until > paced_at;
        let allowed_at = if held_by_pause {
            self.paused_until
        } else {
            paced_at
        };
        let wait = allowed_at - now;
        let refused = (request.background && wait > 0)
            || (!request.background && wait > request.max_wait_micros);
        let decision = if refused {
            SlotDecision::Refused {
                retry_after_micros: wait.max(interval),
            }
        } else {
            self.next_arrival = if held_by_pause {
                // Right after a pause the bucket starts empty: no burst into
                // an upstream that just asked for quiet.
                self.paused_until + tolerance + interval
            } else {
                arrival + interval
            };
            SlotDecision::Granted { wait_micros: wait }
        };
        SlotAnswer {
            decision,
            standing: self.standing(),
        }
    }

    /// Where the budget stands (its rate as last brought up to date).
    #[must_use]
    pub fn standing(&self) -> BudgetStanding {
        BudgetStanding {
            rate_per_sec: self.rate_per_sec,
            limit_per_sec: if self.throttled_rate > 0.0 {
                self.throttled_rate
            } else {
                self.rate_per_sec
            },
            epoch: self.epoch,
        }
    }

    /// Where the budget stands at `now`, after the recovery since the last
    /// throttle.
    #[must_use]
    pub fn standing_at(&self, limits: &BudgetLimits, now: u64) -> BudgetStanding {
        let mut state = *self;
        state.recover(limits, now);
        state.standing()
    }

    /// Records a throttle seen at `now`: lowers the rate (unless a decrease
    /// after the throttled request was sent already did) and pauses every
    /// request for its `Retry-After`.
    pub fn throttled(&mut self, limits: &BudgetLimits, report: &ThrottleReport, now: u64) {
        let sent_at = now.saturating_sub(report.sent_micros_ago);
        if self.decreased_at == 0 || sent_at > self.decreased_at {
            self.recover(limits, now);
            self.roll(now);
            // What the upstream let through over about the last second: the
            // previous second's count, or this one's if it is larger (a
            // first second, or a rising rate). Nothing measured yet: the
            // rate in force is all there is.
            let measured = f64::from(self.accepted_now.max(self.accepted_before));
            let throttled_at = if measured > 0.0 {
                self.rate_per_sec.min(measured)
            } else {
                self.rate_per_sec
            };
            self.rate_per_sec = (throttled_at * DECREASE).max(limits.floor());
            self.decreased_at = now.max(1);
            self.throttled_rate = throttled_at;
            // The burst is spent: the next request waits a whole interval at
            // the new rate, so a throttled upstream is not hit again at once
            // (and a background refresh takes no slot for now).
            let interval = self.interval();
            self.next_arrival = now + interval * (limits.burst() - 1) + interval;
            self.epoch += 1;
        }
        if let Some(wait) = report.retry_after_micros {
            let until = now + wait;
            if self.paused_until < until {
                self.paused_until = until;
                self.epoch += 1;
            }
        }
    }

    /// Microseconds between requests at the rate in force.
    fn interval(&self) -> u64 {
        interval_micros(self.rate_per_sec)
    }

    /// Brings the rate up along the cubic curve since the last decrease:
    /// `C·(t − K)³ + W`, where `W` is the rate that was throttled and `K`
    /// the time the curve takes to climb back to it. A rate above a
    /// configured rate that was lowered since comes down to it.
    fn recover(&mut self, limits: &BudgetLimits, now: u64) {
        if self.decreased_at == 0 {
            self.rate_per_sec = limits.rate_per_sec;
            return;
        }
        #[allow(clippy::cast_precision_loss, reason = "microseconds below 2^53")]
        let elapsed = now.saturating_sub(self.decreased_at) as f64 / 1e6;
        let climb = (self.throttled_rate * (1.0 - DECREASE) / CUBIC_SCALE).cbrt();
        let curve = CUBIC_SCALE * (elapsed - climb).powi(3) + self.throttled_rate;
        self.rate_per_sec = curve.clamp(limits.floor(), limits.rate_per_sec);
        if self.rate_per_sec >= limits.rate_per_sec {
            self.decreased_at = 0;
        }
    }

    /// Moves the per-second counts of accepted answers on to `now`'s
    /// second.
    fn roll(&mut self, now: u64) {
        let elapsed = now.saturating_sub(self.accepted_since);
        if elapsed >= 2 * SECOND_MICROS {
            self.accepted_now = 0;
            self.accepted_before = 0;
            self.accepted_since = now;
        } else if elapsed >= SECOND_MICROS {
            self.accepted_before = self.accepted_now;
            self.accepted_now = 0;
            self.accepted_since += SECOND_MICROS;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MS: u64 = 1_000;
    const START: u64 = 1_000_000_000;

    fn limits(rate: f64, burst: u32) -> BudgetLimits {
        BudgetLimits {
            rate_per_sec: rate,
            burst,
        }
    }

    fn caller(max_wait_micros: u64) -> SlotRequest {
        SlotRequest {
            background: false,
            max_wait_micros,
        }
    }

    const BACKGROUND: SlotRequest = SlotRequest {
        background: true,
        max_wait_micros: 0,
    };

    fn wait_of(answer: SlotAnswer) -> u64 {
        match answer.decision {
            SlotDecision::Granted { wait_micros } => wait_micros,
            SlotDecision::Refused { .. } => panic!("refused: {answer:?}"),
        }
    }

    #[test]
    fn bursts_then_paces_at_the_rate() {
        let limits = limits(10.0, 3);
        let mut state = BudgetState::new(&limits, START);
        let waits: Vec<u64> = (0..6)
            .map(|_| wait_of(state.take_slot(&limits, &caller(u64::MAX), START)))
            .collect();
        assert_eq!(waits, [0, 0, 0, 100 * MS, 200 * MS, 300 * MS]);
    }

    #[test]
    fn an_empty_budget_paces_from_its_first_slot() {
        let limits = limits(10.0, 3);
        let mut state = BudgetState::empty_until(&limits, START + SECOND_MICROS);
        let waits: Vec<u64> = (0..3)
            .map(|_| wait_of(state.take_slot(&limits, &caller(u64::MAX), START)))
            .collect();
        assert_eq!(
            waits,
            [
                SECOND_MICROS,
                SECOND_MICROS + 100 * MS,
                SECOND_MICROS + 200 * MS
            ]
        );
    }

    #[test]
    fn a_refusal_reserves_nothing_and_a_refresh_takes_only_a_free_slot() {
        let limits = limits(10.0, 1);
        let mut state = BudgetState::new(&limits, START);
        assert_eq!(wait_of(state.take_slot(&limits, &caller(0), START)), 0);
        assert_eq!(
            state.take_slot(&limits, &caller(50 * MS), START).decision,
            SlotDecision::Refused {
                retry_after_micros: 100 * MS
            }
        );
        assert!(matches!(
            state.take_slot(&limits, &BACKGROUND, START).decision,
            SlotDecision::Refused { .. }
        ));
        assert_eq!(
            wait_of(state.take_slot(&limits, &caller(u64::MAX), START)),
            100 * MS
        );
    }

    #[test]
    fn a_throttle_lowers_the_rate_to_what_was_accepted_once_per_round() {
        let limits = limits(100.0, 1);
        let mut state = BudgetState::new(&limits, START);
        state.record_accepted(START, 20);
        let report = ThrottleReport {
            sent_micros_ago: 0,
            retry_after_micros: None,
        };
        for _ in 0..3 {
            state.throttled(&limits, &report, START);
        }
        assert!((state.rate_at(&limits, START) - 14.0).abs() < 1e-9);
        assert_eq!(state.epoch, 1);
        // A request sent after the decrease is throttled too: another.
        let later = START + 10 * MS;
        let before = state.rate_at(&limits, later);
        state.throttled(&limits, &report, later);
        assert!((state.rate_at(&limits, later) - before * DECREASE).abs() < 1e-9);
        assert_eq!(state.epoch, 2);
        assert!((state.standing().limit_per_sec - before).abs() < 1e-9);
    }

    #[test]
    fn the_rate_recovers_along_the_cubic_curve_up_to_the_configured() {
        let limits = limits(100.0, 1);
        let mut state = BudgetState::new(&limits, START);
        state.record_accepted(START, 20);
        state.throttled(
            &limits,
            &ThrottleReport {
                sent_micros_ago: 0,
                retry_after_micros: None,
            },
            START,
        );
        let climb = (20.0_f64 * 0.3 / CUBIC_SCALE).cbrt();
        #[allow(clippy::cast_possible_truncation, clippy::cast_sign_loss)]
        let back = START + (climb * 1e6) as u64;
        assert!((state.rate_at(&limits, back) - 20.0).abs() < 1e-3);
        assert!((state.rate_at(&limits, START + 60 * SECOND_MICROS) - 100.0).abs() < 1e-9);
        // A lower configured rate caps a rate that recovered past it.
        let lowered = BudgetLimits {
            rate_per_sec: 10.0,
            burst: 1,
        };
        assert!((state.rate_at(&lowered, START + 60 * SECOND_MICROS) - 10.0).abs() < 1e-9);
    }

    #[test]
    fn retry_after_pauses_every_slot_and_the_bucket_restarts_empty() {
        let limits = limits(10.0, 5);
        let mut state = BudgetState::new(&limits, START);
        state.throttled(
            &limits,
            &ThrottleReport {
                sent_micros_ago: 0,
                retry_after_micros: Some(SECOND_MICROS),
            },
            START,
        );
        assert_eq!(
            wait_of(state.take_slot(&limits, &caller(u64::MAX), START)),
            SECOND_MICROS
        );
        let next = wait_of(state.take_slot(&limits, &caller(u64::MAX), START));
        assert!(next > SECOND_MICROS + 90 * MS, "{next}");
        assert!(matches!(
            state.take_slot(&limits, &caller(500 * MS), START).decision,
            SlotDecision::Refused { .. }
        ));
    }
}
