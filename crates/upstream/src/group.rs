//! Budget groups: one request budget for every upstream that draws on the
//! same quota, kept in this process or, with a [`Fleet`], in the shared
//! store for every replica at once.
//!
//! Cognito's quotas are per account and region, shared by every user pool,
//! app client and replica: the budget belongs to that group, not to a
//! route. Without a fleet a group is a [`RequestBudget`] in this process.
//! With one, every slot is decided by the store ([`BudgetStore`]) on one
//! state for the whole fleet, throttles lower the rate the whole fleet
//! draws at, and a `Retry-After` pauses the whole fleet.
//!
//! Inside a replica, callers still take their turn in order (one store
//! decision at a time per group, first come first served), and a background
//! refresh never waits for a turn: it asks only when no caller is asking or
//! sleeping, and the store grants it only a slot that is free now.
//!
//! **When the store fails** (an error, or no answer within its operation
//! timeout) the group falls back to a bucket in this process at `rate /
//! replicas`: `replicas` is [`FleetConfig::replicas`] when set, else the
//! most live replicas the last few heartbeats counted (a store that
//! restarts empty has the replicas count themselves again over one beat),
//! else [`UNKNOWN_FLEET_SIZE`] — never `rate` per replica. The bucket's
//! first slot comes after the last slot the store granted this replica, so
//! the slots reserved before the failure and the fallback's do not add up.
//! Once a second, when no caller is queued on the bucket (its slots were
//! promised outside the shared budget), one request asks the store again;
//! the first answer returns the group to the shared budget.
//!
//! A slot's wait counts from when the store's answer arrived, not from
//! when it was asked: a replica slow to send (or to hear back) is late for
//! its slot, never early.

use std::num::NonZeroU32;
use std::sync::atomic::{AtomicU32, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use tokencache_core::budget::{
    BudgetLimits, BudgetStanding, SlotAnswer, SlotRequest, ThrottleReport,
};
use tokencache_core::{BudgetStore, LeaseOwner};
use tokio::time::Instant;

use crate::budget::{BudgetConfig, Grant, Priority, RequestBudget, grant_of, micros_of};

/// The fleet size a replica assumes for its fallback before any heartbeat
/// was answered (and without [`FleetConfig::replicas`]): the replica count
/// of the shipped Kubernetes deployment.
pub const UNKNOWN_FLEET_SIZE: u32 = 3;

/// How often a group in fallback asks the store again.
const PROBE_EVERY: Duration = Duration::from_secs(1);

/// How a fleet shares its budgets.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FleetConfig {
    /// The longest a budget decision may take in the store before the
    /// replica falls back to its own bucket.
    pub op_timeout: Duration,
    /// The fleet's size for the fallback bucket; `None` counts the replicas
    /// by their heartbeats.
    pub replicas: Option<NonZeroU32>,
    /// How often each replica renews its heartbeat; it expires after three
    /// of these.
    pub heartbeat_every: Duration,
}

impl Default for FleetConfig {
    /// 500 ms per decision, replicas counted, a heartbeat a second.
    fn default() -> Self {
        Self {
            op_timeout: Duration::from_millis(500),
            replicas: None,
            heartbeat_every: Duration::from_secs(1),
        }
    }
}

/// The replicas sharing budgets through one store.
#[derive(Debug)]
pub struct Fleet {
    store: Arc<dyn BudgetStore>,
    config: FleetConfig,
    me: LeaseOwner,
    /// The live counts the last [`BEATS_REMEMBERED`] heartbeats showed,
    /// newest first (0: none answered yet).
    live: Mutex<[u32; BEATS_REMEMBERED]>,
}

/// How many heartbeats' counts a replica goes by: the most of them, so a
/// store that restarted empty (where the replicas count themselves again
/// over one beat) does not make a replica believe it is alone.
const BEATS_REMEMBERED: usize = 4;

impl Fleet {
    /// A fleet whose budgets `store` keeps.
    #[must_use]
    pub fn new(store: Arc<dyn BudgetStore>, config: FleetConfig) -> Self {
        Self {
            store,
            config,
            me: LeaseOwner::random(),
            live: Mutex::new([0; BEATS_REMEMBERED]),
        }
    }

    /// The fleet's size as the fallback reckons it: the configured count,
    /// else the most the last few heartbeats counted, else
    /// [`UNKNOWN_FLEET_SIZE`].
    #[must_use]
    pub fn replicas(&self) -> u32 {
        let counted = self
            .live
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .iter()
            .copied()
            .max()
            .unwrap_or(0);
        match (self.config.replicas, counted) {
            (Some(fixed), _) => fixed.get(),
            (None, 0) => UNKNOWN_FLEET_SIZE,
            (None, counted) => counted,
        }
    }

    /// Renews this replica's heartbeat and reads the live count; a store
    /// that does not answer leaves the last count in force.
    pub async fn heartbeat(&self) {
        let ttl = self.config.heartbeat_every.saturating_mul(3);
        let beat =
            tokio::time::timeout(self.config.op_timeout, self.store.heartbeat(&self.me, ttl));
        match beat.await {
            Ok(Ok(live)) => {
                let mut counts = self.live.lock().unwrap_or_else(PoisonError::into_inner);
                counts.rotate_right(1);
                counts[0] = live.max(1);
            }
            Ok(Err(error)) => tracing::debug!(%error, "budget heartbeat failed"),
            Err(_) => tracing::debug!("budget heartbeat timed out"),
        }
    }

    /// Renews the heartbeat every [`FleetConfig::heartbeat_every`], until
    /// dropped.
    pub async fn keep_heartbeat(&self) {
        let mut tick = tokio::time::interval(self.config.heartbeat_every);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tick.tick().await;
            self.heartbeat().await;
        }
    }
}

/// One budget group: its name, limits and where its budget is kept.
#[derive(Debug)]
pub struct BudgetGroup {
    name: Arc<str>,
    config: BudgetConfig,
    /// The budget when the group is kept in this process.
    local: RequestBudget,
    /// The fleet's link, when the group is kept in a shared store.
    shared: Option<SharedLink>,
    slots: AtomicU64,
    throttles: AtomicU64,
}

/// A group's link to the fleet's budget in the store.
#[derive(Debug)]
struct SharedLink {
    fleet: Arc<Fleet>,
    limits: BudgetLimits,
    /// Callers take their turn to ask the store, in order.
    turn: tokio::sync::Mutex<()>,
    /// Callers asking or sleeping until their slot: refreshes keep out.
    callers: AtomicUsize,
    /// Answers that were not throttles, not yet told to the store.
    accepted: AtomicU32,
    /// The highest epoch the store has shown: a slot granted in an earlier
    /// one is asked for again.
    epoch: AtomicU64,
    /// The rate the store last reported (f64 bits).
    rate: AtomicU64,
    /// The limit the store last reported as learned (f64 bits).
    limit: AtomicU64,
    /// The latest slot the store granted this replica: a fallback bucket
    /// starts after it, so the slots reserved before the store failed and
    /// the fallback's do not add up.
    reserved_until: Mutex<Option<Instant>>,
    fallback: Mutex<Fallback>,
}

/// A group's fallback to a bucket of its own.
#[derive(Debug, Default)]
struct Fallback {
    /// Since when the store has failed (`None`: the shared budget is used).
    since: Option<Instant>,
    /// When a request next asks the store again.
    next_probe: Option<Instant>,
    /// The bucket, and the fleet size it was sized for.
    bucket: Option<(u32, Arc<RequestBudget>)>,
}

impl BudgetGroup {
    /// A group kept in this process.
    #[must_use]
    pub fn local(name: &str, config: BudgetConfig) -> Self {
        Self {
            name: name.into(),
            config,
            local: RequestBudget::new(config),
            shared: None,
            slots: AtomicU64::new(0),
            throttles: AtomicU64::new(0),
        }
    }

    /// A group the fleet shares through its store (kept in this process
    /// when `config` is unlimited: there is nothing to share).
    #[must_use]
    pub fn shared(name: &str, config: BudgetConfig, fleet: Arc<Fleet>) -> Self {
        let mut group = Self::local(name, config);
        if group.local.is_limited() {
            group.shared = Some(SharedLink {
                fleet,
                limits: BudgetLimits {
                    rate_per_sec: config.rate_per_sec,
                    burst: config.burst.max(1),
                },
                turn: tokio::sync::Mutex::new(()),
                callers: AtomicUsize::new(0),
                accepted: AtomicU32::new(0),
                epoch: AtomicU64::new(0),
                rate: AtomicU64::new(config.rate_per_sec.to_bits()),
                limit: AtomicU64::new(config.rate_per_sec.to_bits()),
                reserved_until: Mutex::new(None),
                fallback: Mutex::default(),
            });
        }
        group
    }

    /// The group's name.
    #[must_use]
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The configured rate, per second (`f64::INFINITY` when unlimited).
    #[must_use]
    pub fn configured_rate(&self) -> f64 {
        if self.local.is_limited() {
            self.config.rate_per_sec
        } else {
            f64::INFINITY
        }
    }

    /// The configured burst.
    #[must_use]
    pub fn burst(&self) -> u32 {
        self.config.burst
    }

    /// Whether requests are paced at all.
    #[must_use]
    pub fn is_limited(&self) -> bool {
        self.local.is_limited()
    }

    /// Whether the group is kept in the fleet's store.
    #[must_use]
    pub fn is_shared(&self) -> bool {
        self.shared.is_some()
    }

    /// The rate in force, per second, as learned from throttles: the
    /// fleet's when shared (its fallback share times the fleet's size while
    /// the store is away), else this process's.
    #[must_use]
    pub fn rate(&self) -> f64 {
        let now = Instant::now();
        match &self.shared {
            None => self.local.rate(now),
            Some(link) => match link.fallback_bucket() {
                Some((replicas, bucket)) => bucket.rate(now) * f64::from(replicas),
                None => f64::from_bits(link.rate.load(Ordering::Relaxed)),
            },
        }
    }

    /// The limit learned from throttles, per second: the rate the upstream
    /// was last throttled at (by any replica, when shared), or the rate in
    /// force when it never was.
    #[must_use]
    pub fn learned_limit(&self) -> f64 {
        let now = Instant::now();
        match &self.shared {
            None => self.local.learned_limit(now),
            Some(link) => match link.fallback_bucket() {
                Some((replicas, bucket)) => bucket.learned_limit(now) * f64::from(replicas),
                None => f64::from_bits(link.limit.load(Ordering::Relaxed)),
            },
        }
    }

    /// Whether the group has fallen back to a bucket of its own because the
    /// store failed.
    #[must_use]
    pub fn in_fallback(&self) -> bool {
        self.shared
            .as_ref()
            .is_some_and(|link| link.lock_fallback().since.is_some())
    }

    /// The fleet's size as the fallback reckons it (1 when not shared).
    #[must_use]
    pub fn replicas(&self) -> u32 {
        self.shared.as_ref().map_or(1, |link| link.fleet.replicas())
    }

    /// Slots taken since start, by this replica.
    #[must_use]
    pub fn slots_taken(&self) -> u64 {
        self.slots.load(Ordering::Relaxed)
    }

    /// Throttles this replica saw since start.
    #[must_use]
    pub fn throttles(&self) -> u64 {
        self.throttles.load(Ordering::Relaxed)
    }

    /// Takes a slot, sleeping for it if need be; how long it waited.
    ///
    /// # Errors
    /// The wait after which a slot could be free, when none is free before
    /// `deadline` (for a background refresh: none free now).
    pub async fn acquire(
        &self,
        priority: Priority,
        deadline: Instant,
    ) -> Result<Duration, Duration> {
        let taken = match &self.shared {
            None => self.local.acquire(priority, deadline).await,
            Some(link) => link.acquire(&self.name, priority, deadline).await,
        };
        if taken.is_ok() {
            self.slots.fetch_add(1, Ordering::Relaxed);
        }
        taken
    }

    /// The upstream answered with something other than a throttle.
    pub fn accepted(&self, now: Instant) {
        match &self.shared {
            None => self.local.accepted(now),
            Some(link) => {
                link.accepted.fetch_add(1, Ordering::Relaxed);
                if let Some((_, bucket)) = link.fallback_bucket() {
                    bucket.accepted(now);
                }
            }
        }
    }

    /// The upstream throttled a request sent at `sent_at`: the group slows
    /// down (the whole fleet, when shared) and pauses for `retry_after`.
    pub async fn throttled(&self, sent_at: Instant, now: Instant, retry_after: Option<Duration>) {
        self.throttles.fetch_add(1, Ordering::Relaxed);
        match &self.shared {
            None => self.local.throttled(sent_at, now, retry_after),
            Some(link) => link.throttled(&self.name, sent_at, now, retry_after).await,
        }
    }
}

impl SharedLink {
    fn lock_fallback(&self) -> std::sync::MutexGuard<'_, Fallback> {
        self.fallback.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// The fallback bucket while the store is away.
    fn fallback_bucket(&self) -> Option<(u32, Arc<RequestBudget>)> {
        let fallback = self.lock_fallback();
        fallback.since?;
        fallback.bucket.clone()
    }

    /// Whether to skip the store for now: in fallback, until the next probe
    /// (which this call then makes). A replica whose callers still wait on
    /// its fallback bucket keeps to it until they have gone, so the slots it
    /// promised and the shared budget's do not add up.
    fn skips_store(&self, now: Instant) -> bool {
        let mut fallback = self.lock_fallback();
        if fallback.since.is_none() {
            return false;
        }
        let draining = fallback
            .bucket
            .as_ref()
            .is_some_and(|(_, bucket)| bucket.has_waiting_callers());
        match fallback.next_probe {
            Some(probe) if now >= probe && !draining => {
                // This request probes; the others keep to the bucket.
                fallback.next_probe = Some(now + PROBE_EVERY);
                false
            }
            _ => true,
        }
    }

    /// The store failed: fall back (or stay), with a bucket sized for the
    /// fleet now.
    fn store_failed(&self, group: &str, now: Instant) -> Arc<RequestBudget> {
        let replicas = self.fleet.replicas();
        let mut fallback = self.lock_fallback();
        if fallback.since.is_none() {
            tracing::warn!(
                group,
                replicas,
                "the shared request budget is unreachable; \
                each replica falls back to its share of it"
            );
            fallback.since = Some(now);
        }
        fallback.next_probe = Some(now + PROBE_EVERY);
        match &fallback.bucket {
            Some((sized_for, bucket)) if *sized_for == replicas => Arc::clone(bucket),
            _ => {
                let share = share_of(
                    &self.limits,
                    f64::from_bits(self.rate.load(Ordering::Relaxed)),
                    replicas,
                );
                let reserved = *self
                    .reserved_until
                    .lock()
                    .unwrap_or_else(PoisonError::into_inner);
                let bucket = Arc::new(match reserved.filter(|until| *until > now) {
                    Some(until) => RequestBudget::empty_until(share, until),
                    None => RequestBudget::new(share),
                });
                fallback.bucket = Some((replicas, Arc::clone(&bucket)));
                bucket
            }
        }
    }

    /// The store answered: back to the shared budget if it had failed.
    fn store_answered(&self, group: &str, standing: &BudgetStanding) {
        self.rate
            .store(standing.rate_per_sec.to_bits(), Ordering::Relaxed);
        self.limit
            .store(standing.limit_per_sec.to_bits(), Ordering::Relaxed);
        self.epoch.fetch_max(standing.epoch, Ordering::AcqRel);
        let mut fallback = self.lock_fallback();
        if let Some(since) = fallback.since.take() {
            tracing::info!(group, after = ?since.elapsed(), "the shared request budget is back");
            fallback.next_probe = None;
        }
    }

    async fn acquire(
        &self,
        group: &str,
        priority: Priority,
        deadline: Instant,
    ) -> Result<Duration, Duration> {
        let started = Instant::now();
        let background = priority == Priority::Background;
        let _caller = (!background).then(|| Counted::enter(&self.callers));
        loop {
            let now = Instant::now();
            if self.skips_store(now) {
                return self
                    .store_failed(group, now)
                    .acquire(priority, deadline)
                    .await;
            }
            // A caller waits its turn (bounded by its deadline); a refresh
            // asks only when nobody else is asking or waiting.
            let turn = if background {
                if self.callers.load(Ordering::Acquire) > 0 {
                    return Err(self.interval());
                }
                match self.turn.try_lock() {
                    Ok(turn) => turn,
                    Err(_) => return Err(self.interval()),
                }
            } else {
                match tokio::time::timeout_at(deadline, self.turn.lock()).await {
                    Ok(turn) => turn,
                    Err(_) => return Err(self.interval()),
                }
            };
            let now = Instant::now();
            let request = SlotRequest {
                background,
                max_wait_micros: micros_of(deadline.saturating_duration_since(now)),
            };
            let accepted = self.accepted.swap(0, Ordering::AcqRel);
            let asked = tokio::time::timeout(
                self.fleet.config.op_timeout,
                self.fleet
                    .store
                    .take_slot(group, &self.limits, &request, accepted),
            )
            .await;
            drop(turn);
            let answer: SlotAnswer = match asked {
                Ok(Ok(answer)) => answer,
                Ok(Err(error)) => {
                    tracing::debug!(group, %error, "budget slot: the store failed");
                    self.accepted.fetch_add(accepted, Ordering::AcqRel);
                    return self
                        .store_failed(group, now)
                        .acquire(priority, deadline)
                        .await;
                }
                Err(_) => {
                    tracing::debug!(group, "budget slot: the store did not answer in time");
                    self.accepted.fetch_add(accepted, Ordering::AcqRel);
                    return self
                        .store_failed(group, now)
                        .acquire(priority, deadline)
                        .await;
                }
            };
            self.store_answered(group, &answer.standing);
            // The wait counts from when the store decided, somewhere between
            // the ask and the answer: from the answer, so a replica slow to
            // send (or to hear back) is late for its slot, never early.
            let answered = Instant::now();
            match grant_of(answer.decision, answered) {
                Grant::Now => return Ok(answered - started),
                Grant::At(at) => {
                    {
                        let mut reserved = self
                            .reserved_until
                            .lock()
                            .unwrap_or_else(PoisonError::into_inner);
                        *reserved = Some(reserved.map_or(at, |until| until.max(at)));
                    }
                    tokio::time::sleep_until(at).await;
                    // A throttle seen since (by any replica whose answer
                    // reached this one) voids a slot reckoned before it.
                    if self.epoch.load(Ordering::Acquire) <= answer.standing.epoch {
                        return Ok(at - started);
                    }
                }
                Grant::Refused { retry_after } => return Err(retry_after),
            }
        }
    }

    async fn throttled(
        &self,
        group: &str,
        sent_at: Instant,
        now: Instant,
        retry_after: Option<Duration>,
    ) {
        if let Some((_, bucket)) = self.fallback_bucket() {
            bucket.throttled(sent_at, now, retry_after);
            return;
        }
        let report = ThrottleReport {
            sent_micros_ago: micros_of(now.saturating_duration_since(sent_at)),
            retry_after_micros: retry_after.map(micros_of),
        };
        let accepted = self.accepted.swap(0, Ordering::AcqRel);
        let told = tokio::time::timeout(
            self.fleet.config.op_timeout,
            self.fleet
                .store
                .report_throttle(group, &self.limits, &report, accepted),
        )
        .await;
        match told {
            Ok(Ok(standing)) => self.store_answered(group, &standing),
            _ => {
                tracing::debug!(group, "budget throttle: the store did not take it");
                self.accepted.fetch_add(accepted, Ordering::AcqRel);
                self.store_failed(group, now)
                    .throttled(sent_at, now, retry_after);
            }
        }
    }

    /// One interval at the rate last reported.
    fn interval(&self) -> Duration {
        let rate = f64::from_bits(self.rate.load(Ordering::Relaxed));
        Duration::from_secs_f64(1.0 / rate.max(self.limits.floor()))
    }
}

/// One replica's share of a group whose rate is `rate` now: `rate /
/// replicas`, and the burst split likewise (at least one).
fn share_of(limits: &BudgetLimits, rate: f64, replicas: u32) -> BudgetConfig {
    let replicas = replicas.max(1);
    BudgetConfig {
        rate_per_sec: rate.clamp(limits.floor(), limits.rate_per_sec) / f64::from(replicas),
        burst: (limits.burst / replicas).max(1),
    }
}

/// Counts itself in while it lives.
struct Counted<'a>(&'a AtomicUsize);

impl<'a> Counted<'a> {
    fn enter(counter: &'a AtomicUsize) -> Self {
        counter.fetch_add(1, Ordering::AcqRel);
        Self(counter)
    }
}

impl Drop for Counted<'_> {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::AcqRel);
    }
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;
    use std::sync::atomic::AtomicBool;

    use tokencache_core::budget::BudgetState;
    use tokencache_core::{StoreError, StoreFuture};

    use super::*;

    /// A store keeping budgets in a map on tokio's (paused) clock, that can
    /// be made to fail.
    #[derive(Debug)]
    struct ScriptedStore {
        origin: Instant,
        budgets: Mutex<HashMap<String, BudgetState>>,
        failing: AtomicBool,
        replicas: AtomicU32,
    }

    impl ScriptedStore {
        fn new() -> Arc<Self> {
            Arc::new(Self {
                origin: Instant::now(),
                budgets: Mutex::default(),
                failing: AtomicBool::new(false),
                replicas: AtomicU32::new(5),
            })
        }

        fn decide<T: Send + 'static>(
            &self,
            group: &str,
            limits: &BudgetLimits,
            decide: impl FnOnce(&mut BudgetState, u64) -> T,
        ) -> StoreFuture<'static, T> {
            if self.failing.load(Ordering::Relaxed) {
                return Box::pin(std::future::ready(Err(StoreError::Unavailable(
                    "down".into(),
                ))));
            }
            let now = micros_of(Instant::now() - self.origin);
            let mut budgets = self.budgets.lock().unwrap();
            let state = budgets
                .entry(group.to_owned())
                .or_insert_with(|| BudgetState::new(limits, now));
            let decided = decide(state, now);
            Box::pin(std::future::ready(Ok(decided)))
        }
    }

    impl BudgetStore for ScriptedStore {
        fn take_slot<'a>(
            &'a self,
            group: &'a str,
            limits: &'a BudgetLimits,
            request: &'a SlotRequest,
            accepted: u32,
        ) -> StoreFuture<'a, SlotAnswer> {
            self.decide(group, limits, |state, now| {
                state.record_accepted(now, accepted);
                state.take_slot(limits, request, now)
            })
        }

        fn report_throttle<'a>(
            &'a self,
            group: &'a str,
            limits: &'a BudgetLimits,
            report: &'a ThrottleReport,
            accepted: u32,
        ) -> StoreFuture<'a, BudgetStanding> {
            self.decide(group, limits, |state, now| {
                state.record_accepted(now, accepted);
                state.throttled(limits, report, now);
                state.standing()
            })
        }

        fn heartbeat<'a>(&'a self, _: &'a LeaseOwner, _: Duration) -> StoreFuture<'a, u32> {
            Box::pin(std::future::ready(Ok(self
                .replicas
                .load(Ordering::Relaxed))))
        }
    }

    const CONFIG: BudgetConfig = BudgetConfig {
        rate_per_sec: 30.0,
        burst: 3,
    };

    /// Two replicas' groups on one store.
    fn two_replicas(store: &Arc<ScriptedStore>) -> (BudgetGroup, BudgetGroup) {
        let replica = || {
            let fleet = Arc::new(Fleet::new(
                Arc::clone(store) as Arc<dyn BudgetStore>,
                FleetConfig {
                    replicas: NonZeroU32::new(3),
                    ..FleetConfig::default()
                },
            ));
            BudgetGroup::shared("idp.example", CONFIG, fleet)
        };
        (replica(), replica())
    }

    fn far() -> Instant {
        Instant::now() + Duration::from_secs(60)
    }

    #[tokio::test(start_paused = true)]
    async fn replicas_draw_on_one_budget() {
        let store = ScriptedStore::new();
        let (a, b) = two_replicas(&store);
        for _ in 0..3 {
            assert_eq!(a.acquire(Priority::Caller, far()).await, Ok(Duration::ZERO));
        }
        // A's burst spent the fleet's: B waits one interval.
        let waited = b.acquire(Priority::Caller, far()).await.unwrap();
        assert!(
            (Duration::from_millis(33)..=Duration::from_millis(34)).contains(&waited),
            "{waited:?}"
        );
        assert!(b.acquire(Priority::Background, far()).await.is_err());
        assert_eq!(a.slots_taken() + b.slots_taken(), 4);
        assert!(a.is_shared() && !a.in_fallback());
    }

    #[tokio::test(start_paused = true)]
    async fn a_throttle_on_one_replica_slows_the_other() {
        let store = ScriptedStore::new();
        let (a, b) = two_replicas(&store);
        let now = Instant::now();
        for _ in 0..10 {
            a.accepted(now);
        }
        assert_eq!(a.acquire(Priority::Caller, far()).await, Ok(Duration::ZERO));
        a.throttled(now, Instant::now(), Some(Duration::from_secs(1)))
            .await;
        assert!(
            (a.rate() - 7.0).abs() < 1e-6,
            "0.7 × 10 accepted: {}",
            a.rate()
        );
        // B learns the rate and the pause with its next slot.
        let waited = b.acquire(Priority::Caller, far()).await.unwrap();
        assert!(waited >= Duration::from_secs(1), "{waited:?}");
        assert!(b.rate() < 8.0, "{}", b.rate());
        assert_eq!(a.throttles(), 1);
    }

    #[tokio::test(start_paused = true)]
    async fn a_failed_store_leaves_each_replica_its_share_until_it_is_back() {
        let store = ScriptedStore::new();
        let (a, _) = two_replicas(&store);
        store.failing.store(true, Ordering::Relaxed);
        // 30/s over 3 replicas: 10/s, a burst of 1.
        let start = Instant::now();
        for _ in 0..5 {
            a.acquire(Priority::Caller, far()).await.unwrap();
        }
        let took = Instant::now() - start;
        assert!(
            (Duration::from_millis(399)..=Duration::from_millis(401)).contains(&took),
            "5 slots at 10/s: {took:?}"
        );
        assert!(a.in_fallback());
        assert!(
            (a.rate() - 30.0).abs() < 1e-6,
            "the fleet's rate: {}",
            a.rate()
        );
        // Back: the next probe (a second on) returns to the shared budget.
        store.failing.store(false, Ordering::Relaxed);
        tokio::time::sleep(PROBE_EVERY).await;
        a.acquire(Priority::Caller, far()).await.unwrap();
        assert!(!a.in_fallback());
    }

    #[tokio::test(start_paused = true)]
    async fn a_fallback_starts_after_the_slots_already_reserved() {
        let store = ScriptedStore::new();
        let (a, _) = two_replicas(&store);
        // Three at once, then three reserved 33 ms apart: the last is 100 ms
        // away.
        for _ in 0..6 {
            let budget = &a;
            let _ = tokio::time::timeout(
                Duration::from_millis(1),
                budget.acquire(Priority::Caller, far()),
            )
            .await;
        }
        store.failing.store(true, Ordering::Relaxed);
        let start = Instant::now();
        a.acquire(Priority::Caller, far()).await.unwrap();
        assert!(
            Instant::now() - start >= Duration::from_millis(95),
            "the fallback's first slot is after the last reserved one: {:?}",
            Instant::now() - start
        );
    }

    #[tokio::test(start_paused = true)]
    async fn without_a_heartbeat_or_a_count_the_fleet_is_assumed_three() {
        let store = ScriptedStore::new();
        let fleet = Fleet::new(
            Arc::clone(&store) as Arc<dyn BudgetStore>,
            FleetConfig::default(),
        );
        assert_eq!(fleet.replicas(), UNKNOWN_FLEET_SIZE);
        fleet.heartbeat().await;
        assert_eq!(fleet.replicas(), 5, "what the store counted");
        // The store restarts empty: the replicas count themselves again, one
        // by one; the most of the last beats is what counts.
        store.replicas.store(1, Ordering::Relaxed);
        fleet.heartbeat().await;
        assert_eq!(fleet.replicas(), 5);
        for _ in 0..BEATS_REMEMBERED {
            fleet.heartbeat().await;
        }
        assert_eq!(fleet.replicas(), 1, "the fleet did shrink");
    }
}
