//! The latency a miss pays for a budget slot: one group kept in a shared
//! store (Redis, or DynamoDB through moto or AWS) against the same group
//! kept in this process.
//!
//! The group's rate is far above what the run asks (a million a second),
//! so no slot waits and what is timed is the decision itself: one caller
//! at a time (a lone miss), then `--concurrency` at once (a cold start,
//! where a replica's callers take their turn). Prints one JSON object with
//! p50 and p99 in microseconds for each.
//!
//! ```text
//! budget_slot --store redis://127.0.0.1:6379 --slots 2000
//! budget_slot --store dynamodb://tokencache-bench --slots 500   # AWS_* from the environment
//! ```

#![allow(clippy::print_stdout)] // a command-line tool that reports on stdout

use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context as _, bail};
use clap::Parser;
use serde_json::json;
use tokencache_core::BudgetStore;
use tokencache_dynamodb_store::{DynamoDbConfig, DynamoDbStore};
use tokencache_redis_store::{RedisConfig, RedisStore};
use tokencache_upstream::{BudgetConfig, BudgetGroup, Fleet, FleetConfig, Priority};
use tokio::time::Instant;

#[derive(Debug, Parser)]
struct Args {
    /// `redis://…` or `dynamodb://TABLE`.
    #[arg(long)]
    store: String,
    /// Slots to take in each phase.
    #[arg(long, default_value_t = 2000)]
    slots: usize,
    /// Callers at once in the concurrent phase.
    #[arg(long, default_value_t = 16)]
    concurrency: usize,
}

/// A rate no run reaches: no slot ever waits.
const UNREACHED: BudgetConfig = BudgetConfig {
    rate_per_sec: 1e6,
    burst: 10_000,
};

#[tokio::main(flavor = "current_thread")]
async fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    let store: Arc<dyn BudgetStore> = if args.store.starts_with("redis") {
        Arc::new(
            RedisStore::connect(RedisConfig::parse(&args.store)?)
                .await
                .context("redis")?,
        )
    } else if let Some(table) = args.store.strip_prefix("dynamodb://") {
        Arc::new(
            DynamoDbStore::connect(
                table,
                DynamoDbConfig::default().with_attempt_timeout(Duration::from_secs(5)),
            )
            .await
            .context("dynamodb")?,
        )
    } else {
        bail!("--store must be redis://… or dynamodb://TABLE");
    };
    let fleet = Arc::new(Fleet::new(
        store,
        FleetConfig {
            op_timeout: Duration::from_secs(5),
            ..FleetConfig::default()
        },
    ));
    let group = format!("bench-{:x}", std::process::id());
    let shared = Arc::new(BudgetGroup::shared(&group, UNREACHED, fleet));
    let local = Arc::new(BudgetGroup::local(&group, UNREACHED));
    // One slot first: connections, script loading, the item's creation.
    acquire(&shared).await?;
    let report = json!({
        "store": args.store.split(':').next(),
        "slots": args.slots,
        "concurrency": args.concurrency,
        "shared": {
            "alone": percentiles(alone(&shared, args.slots).await?),
            "concurrent": percentiles(concurrent(&shared, args.slots, args.concurrency).await?),
        },
        "local": {
            "alone": percentiles(alone(&local, args.slots).await?),
            "concurrent": percentiles(concurrent(&local, args.slots, args.concurrency).await?),
        },
        "fell_back": shared.in_fallback(),
    });
    println!("{report}");
    if shared.in_fallback() {
        bail!("the store did not answer in time: the figures are the fallback's");
    }
    Ok(())
}

/// One slot, timed.
async fn acquire(group: &BudgetGroup) -> anyhow::Result<Duration> {
    let started = Instant::now();
    let far = started + Duration::from_secs(30);
    match group.acquire(Priority::Caller, far).await {
        Ok(_) => Ok(started.elapsed()),
        Err(retry_after) => bail!("refused a slot (retry after {retry_after:?})"),
    }
}

async fn alone(group: &BudgetGroup, slots: usize) -> anyhow::Result<Vec<Duration>> {
    let mut times = Vec::with_capacity(slots);
    for _ in 0..slots {
        times.push(acquire(group).await?);
    }
    Ok(times)
}

async fn concurrent(
    group: &Arc<BudgetGroup>,
    slots: usize,
    concurrency: usize,
) -> anyhow::Result<Vec<Duration>> {
    let per_caller = slots.div_ceil(concurrency.max(1));
    let callers: Vec<_> = (0..concurrency.max(1))
        .map(|_| {
            let group = Arc::clone(group);
            tokio::spawn(async move { alone(&group, per_caller).await })
        })
        .collect();
    let mut times = Vec::with_capacity(slots);
    for caller in callers {
        times.extend(caller.await??);
    }
    Ok(times)
}

fn percentiles(mut times: Vec<Duration>) -> serde_json::Value {
    times.sort_unstable();
    let at = |q: f64| {
        #[allow(
            clippy::cast_possible_truncation,
            clippy::cast_sign_loss,
            clippy::cast_precision_loss
        )]
        let index = ((times.len() as f64 - 1.0) * q).round() as usize;
        times.get(index).map_or(0.0, |t| t.as_secs_f64() * 1e6)
    };
    json!({ "p50_us": at(0.5), "p99_us": at(0.99), "max_us": at(1.0) })
}
