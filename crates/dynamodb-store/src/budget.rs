//! The fleet's request budgets in DynamoDB: one item per group (or a few,
//! for high rates), read and then written back conditionally on its version.
//!
//! # Items
//!
//! | `pk` | attributes |
//! | --- | --- |
//! | `tokencache#budget#<group>#<shard>` | `ver` (N), the [`BudgetState`] fields (N), `exp` (the TTL attribute: an hour after use) |
//! | `tokencache#replicas` | `r` (M): replica id → heartbeat expiry in epoch ms |
//!
//! # Clocks
//!
//! DynamoDB has no clock to lend, so each decision is reckoned on the
//! deciding replica's clock. A replica whose clock runs δ ahead of the
//! others may send up to δ early, so the fleet's count in a window can
//! exceed `rate × t + burst` by at most `rate × δ`; one that runs behind
//! waits longer than it needs to. With NTP-synchronised hosts (chrony on EC2
//! keeps well under a millisecond) the excess is below one request at the
//! rates a token endpoint allows; hosts skewed by seconds would be a
//! misconfiguration that the redis store, which decides on Redis's clock,
//! does not share.
//!
//! # Shards
//!
//! While a group is busy (its queue reaches past now, no throttle in
//! force) a slot is one conditional `UpdateItem` that adds an interval to
//! the next arrival, which DynamoDB serialises per item, so many replicas
//! queue without racing; otherwise a decision reads the item and writes it
//! back conditionally on its version. Every slot is one write to the
//! group's item, and one
//! DynamoDB partition takes about 1,000 writes a second, fewer under
//! contention. A group whose rate is above [`SHARD_RATE`] is split into
//! `⌈rate / SHARD_RATE⌉` items, each with its share of the rate and burst;
//! a store takes its slots from them in turn, and a throttle lowers every
//! shard.

use std::collections::HashMap;
use std::time::Duration;

use aws_sdk_dynamodb::error::ProvideErrorMetadata;
use aws_sdk_dynamodb::operation::update_item::UpdateItemError;
use aws_sdk_dynamodb::types::{AttributeValue, ReturnValue, ReturnValuesOnConditionCheckFailure};
use tokencache_core::budget::{
    BudgetLimits, BudgetStanding, BudgetState, SlotAnswer, SlotDecision, SlotRequest,
    ThrottleReport, interval_micros,
};
use tokencache_core::{BudgetStore, LeaseOwner, StoreError, StoreFuture, UnixMillis};

use crate::error::from_sdk;
use crate::item::{EXP, PK, number};
use crate::store::DynamoDbStore;

/// The highest rate one item serves; above it a group is sharded.
pub const SHARD_RATE: f64 = 250.0;

/// Rounds of read and conditional write one decision may take while other
/// replicas decide on the same item.
const DECIDE_ROUNDS: usize = 32;

/// How long an unused budget item lives (its learned rate is forgotten).
const BUDGET_LIFETIME: Duration = Duration::from_secs(3600);

const VERSION: &str = "ver";
const REPLICAS_PK: &str = "tokencache#replicas";
const REPLICAS: &str = "r";

/// The attribute names of a [`BudgetState`]'s fields.
const FIELDS: [&str; 9] = ["na", "rate", "dec", "wr", "pause", "an", "ab", "as", "ep"];

/// How many items a group of this rate is kept in.
fn shards(limits: &BudgetLimits) -> usize {
    #[allow(
        clippy::cast_possible_truncation,
        clippy::cast_sign_loss,
        reason = "a positive rate; capped below"
    )]
    let shards = (limits.rate_per_sec / SHARD_RATE).ceil().clamp(1.0, 64.0) as usize;
    shards
}

/// One shard's share of the group's limits.
fn shard_limits(limits: &BudgetLimits, shards: usize) -> BudgetLimits {
    let shards_u32 = u32::try_from(shards).unwrap_or(1);
    #[allow(clippy::cast_precision_loss, reason = "at most 64")]
    BudgetLimits {
        rate_per_sec: limits.rate_per_sec / shards as f64,
        burst: (limits.burst / shards_u32).max(1),
    }
}

/// What the busy case's single update came to.
enum Queued {
    /// A slot at the end of the queue.
    Slot(SlotAnswer),
    /// The condition did not hold; the item as it was, if there was one.
    Declined(Option<HashMap<String, AttributeValue>>),
}

fn lost_the_race() -> StoreError {
    StoreError::Unavailable(format!(
        "dynamodb budget: lost the race {DECIDE_ROUNDS} times"
    ))
}

fn budget_pk(group: &str, shard: usize) -> AttributeValue {
    AttributeValue::S(format!("tokencache#budget#{group}#{shard}"))
}

fn real(x: f64) -> AttributeValue {
    AttributeValue::N(x.to_string())
}

fn read_state(item: &HashMap<String, AttributeValue>) -> Result<(BudgetState, u64), StoreError> {
    let field = |name: &str| -> Result<&str, StoreError> {
        match item.get(name) {
            Some(AttributeValue::N(n)) => Ok(n),
            _ => Err(StoreError::Protocol(format!(
                "dynamodb budget: the item has no number `{name}`"
            ))),
        }
    };
    let int = |name: &str| -> Result<u64, StoreError> {
        field(name)?.parse().map_err(|_| {
            StoreError::Protocol(format!("dynamodb budget: `{name}` is not a whole number"))
        })
    };
    let float = |name: &str| -> Result<f64, StoreError> {
        field(name)?
            .parse()
            .map_err(|_| StoreError::Protocol(format!("dynamodb budget: `{name}` is not a number")))
    };
    let count = |name: &str| -> Result<u32, StoreError> {
        u32::try_from(int(name)?)
            .map_err(|_| StoreError::Protocol(format!("dynamodb budget: `{name}` is out of range")))
    };
    let state = BudgetState {
        next_arrival: int("na")?,
        rate_per_sec: float("rate")?,
        decreased_at: int("dec")?,
        throttled_rate: float("wr")?,
        paused_until: int("pause")?,
        accepted_now: count("an")?,
        accepted_before: count("ab")?,
        accepted_since: int("as")?,
        epoch: int("ep")?,
    };
    Ok((state, int(VERSION)?))
}

fn state_item(
    pk: AttributeValue,
    state: &BudgetState,
    version: u64,
    now: UnixMillis,
) -> HashMap<String, AttributeValue> {
    let values = [
        number(state.next_arrival),
        real(state.rate_per_sec),
        number(state.decreased_at),
        real(state.throttled_rate),
        number(state.paused_until),
        number(u64::from(state.accepted_now)),
        number(u64::from(state.accepted_before)),
        number(state.accepted_since),
        number(state.epoch),
    ];
    let mut item: HashMap<String, AttributeValue> = FIELDS
        .iter()
        .map(|name| (*name).to_owned())
        .zip(values)
        .collect();
    item.insert(PK.to_owned(), pk);
    item.insert(VERSION.to_owned(), number(version));
    item.insert(
        EXP.to_owned(),
        number(now.plus(BUDGET_LIFETIME).0.div_ceil(1000)),
    );
    item
}

impl BudgetStore for DynamoDbStore {
    fn take_slot<'a>(
        &'a self,
        group: &'a str,
        limits: &'a BudgetLimits,
        request: &'a SlotRequest,
        accepted: u32,
    ) -> StoreFuture<'a, SlotAnswer> {
        Box::pin(self.take_budget_slot(group, limits, request, accepted))
    }

    fn report_throttle<'a>(
        &'a self,
        group: &'a str,
        limits: &'a BudgetLimits,
        report: &'a ThrottleReport,
        accepted: u32,
    ) -> StoreFuture<'a, BudgetStanding> {
        Box::pin(self.report_budget_throttle(group, limits, report, accepted))
    }

    fn heartbeat<'a>(&'a self, replica: &'a LeaseOwner, ttl: Duration) -> StoreFuture<'a, u32> {
        Box::pin(self.beat(replica, ttl))
    }
}

impl DynamoDbStore {
    /// Decides on one shard's item: a consistent read, the decision, then a
    /// write conditional on the version read, again while another replica
    /// wrote in between.
    async fn decide<T>(
        &self,
        pk: AttributeValue,
        limits: &BudgetLimits,
        decide: impl Fn(&mut BudgetState, u64) -> T,
    ) -> Result<T, StoreError> {
        for _ in 0..DECIDE_ROUNDS {
            let read = self
                .client()
                .get_item()
                .table_name(self.table())
                .key(PK, pk.clone())
                .consistent_read(true)
                .send()
                .await
                .map_err(|error| from_sdk("GetItem (budget)", &error))?;
            if let Some(decided) = self
                .decide_on(pk.clone(), limits, read.item.as_ref(), &decide)
                .await?
            {
                return Ok(decided);
            }
        }
        Err(lost_the_race())
    }

    /// Decides on `item` as read (`None`: no item yet) and writes the state
    /// back if nobody wrote since; `None` if somebody did.
    async fn decide_on<T>(
        &self,
        pk: AttributeValue,
        limits: &BudgetLimits,
        item: Option<&HashMap<String, AttributeValue>>,
        decide: impl Fn(&mut BudgetState, u64) -> T,
    ) -> Result<Option<T>, StoreError> {
        let now = self.clock().now();
        let micros = now.0.saturating_mul(1000);
        let (mut state, version) = match item {
            Some(item) => read_state(item)?,
            None => (BudgetState::new(limits, micros), 0),
        };
        let decided = decide(&mut state, micros);
        let put = self
            .client()
            .put_item()
            .table_name(self.table())
            .set_item(Some(state_item(pk, &state, version + 1, now)));
        let put = if version == 0 {
            put.condition_expression("attribute_not_exists(#pk)")
                .expression_attribute_names("#pk", PK)
        } else {
            put.condition_expression("#ver = :read")
                .expression_attribute_names("#ver", VERSION)
                .expression_attribute_values(":read", number(version))
        };
        match put.send().await {
            Ok(_) => Ok(Some(decided)),
            Err(error)
                if error
                    .as_service_error()
                    .is_some_and(|e| e.is_conditional_check_failed_exception()) =>
            {
                Ok(None)
            }
            Err(error) => Err(from_sdk("PutItem (budget)", &error)),
        }
    }

    async fn take_budget_slot(
        &self,
        group: &str,
        limits: &BudgetLimits,
        request: &SlotRequest,
        accepted: u32,
    ) -> Result<SlotAnswer, StoreError> {
        let shards = shards(limits);
        let shard = self.next_shard(shards);
        let limits = shard_limits(limits, shards);
        let pk = budget_pk(group, shard);
        let mut answer = None;
        for _ in 0..DECIDE_ROUNDS {
            answer = match self
                .queue_slot(pk.clone(), &limits, request, accepted)
                .await?
            {
                Queued::Slot(slot) => Some(slot),
                // The busy case did not hold: decide on the item as the
                // failed condition returned it (a new second to count in,
                // an idle or throttled group, a refusal).
                Queued::Declined(item) => {
                    self.decide_on(pk.clone(), &limits, item.as_ref(), |state, now| {
                        state.record_accepted(now, accepted);
                        state.take_slot(&limits, request, now)
                    })
                    .await?
                }
            };
            if answer.is_some() {
                break;
            }
        }
        let mut answer = answer.ok_or_else(lost_the_race)?;
        // The group's rate is every shard's.
        #[allow(clippy::cast_precision_loss, reason = "at most 64")]
        {
            answer.standing.rate_per_sec *= shards as f64;
            answer.standing.limit_per_sec *= shards as f64;
        }
        Ok(answer)
    }

    /// The busy case in one conditional `UpdateItem`: while the group's
    /// queue reaches past now (and no throttle's decrease or pause is in
    /// force, nor has the accepted count's second ended), a slot is the
    /// next arrival plus one interval, and DynamoDB serialises the updates
    /// of one item, so a cold start of many keys does not race on reads.
    /// When the condition does not hold, the item as it was (DynamoDB
    /// returns it with the failure), for the caller to decide on.
    async fn queue_slot(
        &self,
        pk: AttributeValue,
        limits: &BudgetLimits,
        request: &SlotRequest,
        accepted: u32,
    ) -> Result<Queued, StoreError> {
        let now_millis = self.clock().now();
        let now = now_millis.0.saturating_mul(1000);
        let interval = interval_micros(limits.rate_per_sec);
        let tolerance = interval * u64::from(limits.burst.max(1) - 1);
        // The slot is `next_arrival - tolerance`; it must come within the
        // wait allowed (for a refresh: now).
        let latest = now
            .saturating_add(request.max_wait_micros)
            .saturating_add(tolerance);
        let update = self
            .client()
            .update_item()
            .table_name(self.table())
            .key(PK, pk)
            .condition_expression(
                "attribute_exists(#pk) AND #dec = :zero AND #pause <= :now \
                 AND #na >= :now AND #na <= :latest AND #as > :second_ago",
            )
            .update_expression(
                "SET #na = #na + :interval, #rate = :rate, #ver = #ver + :one, #exp = :exp \
                 ADD #an :accepted",
            )
            .expression_attribute_names("#pk", PK)
            .expression_attribute_names("#dec", "dec")
            .expression_attribute_names("#pause", "pause")
            .expression_attribute_names("#na", "na")
            .expression_attribute_names("#as", "as")
            .expression_attribute_names("#rate", "rate")
            .expression_attribute_names("#ver", VERSION)
            .expression_attribute_names("#exp", EXP)
            .expression_attribute_names("#an", "an")
            .expression_attribute_values(":zero", number(0))
            .expression_attribute_values(":now", number(now))
            .expression_attribute_values(":latest", number(latest))
            .expression_attribute_values(
                ":second_ago",
                number(now.saturating_sub(tokencache_core::budget::SECOND_MICROS)),
            )
            .expression_attribute_values(":interval", number(interval))
            .expression_attribute_values(":rate", real(limits.rate_per_sec))
            .expression_attribute_values(":one", number(1))
            .expression_attribute_values(
                ":exp",
                number(now_millis.plus(BUDGET_LIFETIME).0.div_ceil(1000)),
            )
            .expression_attribute_values(":accepted", number(u64::from(accepted)))
            .return_values(ReturnValue::AllNew)
            .return_values_on_condition_check_failure(ReturnValuesOnConditionCheckFailure::AllOld)
            .send()
            .await;
        let item = match update {
            Ok(output) => output.attributes.unwrap_or_default(),
            Err(error) => {
                return match error.as_service_error() {
                    Some(UpdateItemError::ConditionalCheckFailedException(failed)) => {
                        Ok(Queued::Declined(failed.item().cloned()))
                    }
                    _ => Err(from_sdk("UpdateItem (budget)", &error)),
                };
            }
        };
        let (state, _) = read_state(&item)?;
        // The arrival this slot took was the one before the update.
        let arrival = state.next_arrival - interval;
        let slot = arrival.saturating_sub(tolerance).max(now);
        Ok(Queued::Slot(SlotAnswer {
            decision: SlotDecision::Granted {
                wait_micros: slot - now,
            },
            standing: state.standing(),
        }))
    }

    async fn report_budget_throttle(
        &self,
        group: &str,
        limits: &BudgetLimits,
        report: &ThrottleReport,
        accepted: u32,
    ) -> Result<BudgetStanding, StoreError> {
        let shards = shards(limits);
        let shard_limits = shard_limits(limits, shards);
        let mut standing = BudgetStanding {
            rate_per_sec: 0.0,
            limit_per_sec: 0.0,
            epoch: 0,
        };
        for shard in 0..shards {
            // The accepted count is what this replica saw of the group:
            // each shard measures its share of it.
            let share = if shard == 0 { accepted } else { 0 };
            let shard_standing = self
                .decide(budget_pk(group, shard), &shard_limits, |state, now| {
                    state.record_accepted(now, share);
                    state.throttled(&shard_limits, report, now);
                    state.standing()
                })
                .await?;
            standing.rate_per_sec += shard_standing.rate_per_sec;
            standing.limit_per_sec += shard_standing.limit_per_sec;
            standing.epoch = standing.epoch.max(shard_standing.epoch);
        }
        Ok(standing)
    }

    /// Marks `replica` alive in the replicas' item and counts the live
    /// ones; forgets those whose heartbeat expired.
    async fn beat(&self, replica: &LeaseOwner, ttl: Duration) -> Result<u32, StoreError> {
        let now = self.clock().now();
        let key = AttributeValue::S(REPLICAS_PK.to_owned());
        let mark = self
            .client()
            .update_item()
            .table_name(self.table())
            .key(PK, key.clone())
            .update_expression("SET #r.#me = :until")
            .expression_attribute_names("#r", REPLICAS)
            .expression_attribute_names("#me", replica.as_str())
            .expression_attribute_values(":until", number(now.plus(ttl).0))
            .return_values(ReturnValue::AllNew)
            .send()
            .await;
        let replicas = match mark {
            Ok(output) => output.attributes.and_then(|mut item| item.remove(REPLICAS)),
            // The map does not exist yet (the first heartbeat of a fleet):
            // create it with this replica, unless another just did.
            Err(error)
                if error
                    .as_service_error()
                    .and_then(ProvideErrorMetadata::code)
                    .is_some_and(|code| code == "ValidationException") =>
            {
                let create = self
                    .client()
                    .update_item()
                    .table_name(self.table())
                    .key(PK, key.clone())
                    .update_expression("SET #r = :mine")
                    .condition_expression("attribute_not_exists(#r)")
                    .expression_attribute_names("#r", REPLICAS)
                    .expression_attribute_values(
                        ":mine",
                        AttributeValue::M(HashMap::from([(
                            replica.as_str().to_owned(),
                            number(now.plus(ttl).0),
                        )])),
                    )
                    .return_values(ReturnValue::AllNew)
                    .send()
                    .await;
                match create {
                    Ok(output) => output.attributes.and_then(|mut item| item.remove(REPLICAS)),
                    Err(create_error)
                        if create_error
                            .as_service_error()
                            .is_some_and(|e| e.is_conditional_check_failed_exception()) =>
                    {
                        // Another replica created it a moment ago: this
                        // beat counts nothing (the fleet keeps the counts it
                        // had), the next one writes into the map.
                        return Err(StoreError::Unavailable(
                            "dynamodb replicas: the item was being created; counted next beat"
                                .to_owned(),
                        ));
                    }
                    Err(create_error) => {
                        return Err(from_sdk("UpdateItem (replicas)", &create_error));
                    }
                }
            }
            Err(error) => return Err(from_sdk("UpdateItem (replicas)", &error)),
        };
        let Some(AttributeValue::M(replicas)) = replicas else {
            return Err(StoreError::Protocol(
                "dynamodb replicas: the item has no map `r`".to_owned(),
            ));
        };
        let mut live = 0_u32;
        let mut expired = Vec::new();
        for (id, until) in &replicas {
            match until {
                AttributeValue::N(n) if n.parse::<u64>().is_ok_and(|until| until > now.0) => {
                    live += 1;
                }
                _ => expired.push(id.clone()),
            }
        }
        if !expired.is_empty() {
            self.forget_replicas(&key, &expired).await;
        }
        Ok(live.max(1))
    }

    /// Removes expired heartbeats; best effort (the next beat tries again).
    async fn forget_replicas(&self, key: &AttributeValue, expired: &[String]) {
        let mut update = self
            .client()
            .update_item()
            .table_name(self.table())
            .key(PK, key.clone())
            .expression_attribute_names("#r", REPLICAS);
        let mut paths = Vec::with_capacity(expired.len());
        for (i, id) in expired.iter().take(50).enumerate() {
            let name = format!("#x{i}");
            paths.push(format!("#r.{name}"));
            update = update.expression_attribute_names(name, id);
        }
        let result = update
            .update_expression(format!("REMOVE {}", paths.join(", ")))
            .send()
            .await;
        if let Err(error) = result {
            tracing::debug!(error = %from_sdk("UpdateItem (replicas)", &error),
                "could not forget expired replicas");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn high_rates_are_sharded_with_their_share_of_rate_and_burst() {
        let limits = BudgetLimits {
            rate_per_sec: 1000.0,
            burst: 40,
        };
        assert_eq!(shards(&limits), 4);
        let share = shard_limits(&limits, 4);
        assert!((share.rate_per_sec - 250.0).abs() < 1e-9);
        assert_eq!(share.burst, 10);
        let small = BudgetLimits {
            rate_per_sec: 40.0,
            burst: 10,
        };
        assert_eq!(shards(&small), 1);
        assert_eq!(shard_limits(&small, 1), small);
    }

    #[test]
    fn a_state_round_trips_through_an_item() {
        let limits = BudgetLimits {
            rate_per_sec: 40.0,
            burst: 10,
        };
        let mut state = BudgetState::new(&limits, 1_700_000_000_000_000);
        state.record_accepted(1_700_000_000_000_000, 3);
        state.throttled(
            &limits,
            &ThrottleReport {
                sent_micros_ago: 0,
                retry_after_micros: Some(1_000_000),
            },
            1_700_000_000_100_000,
        );
        let item = state_item(budget_pk("g", 0), &state, 7, UnixMillis(1_700_000_000_000));
        let (back, version) = read_state(&item).unwrap();
        assert_eq!(back, state);
        assert_eq!(version, 7);
    }
}
