//! Cold-miss coalescing: N identical requests for a key nobody has asked
//! for yet, all at once.
//!
//! For each of `--keys` new keys it opens `--concurrency` connections
//! first (so connection setup is not measured), lines up one task per
//! connection on a barrier, releases them together, and records each
//! request's latency (from its own send to its whole answer). The mock
//! IdP's `GET /stats` before and after each burst gives the upstream
//! requests the burst caused. Prints one JSON object.
//!
//! ```text
//! coalesce --url http://127.0.0.1:18001/oauth2/token --stats 127.0.0.1:18002 --prefix c1-
//! ```

#![allow(clippy::print_stdout)] // a command-line tool that reports on stdout

use std::collections::{BTreeMap, BTreeSet};
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context as _;
use bytes::Bytes;
use clap::Parser;
use serde_json::json;
use tokencache_bench::{Endpoint, idp_token_requests, latency_summary, token_body};
use tokio::sync::Barrier;
use tokio::time::Instant;

#[derive(Debug, Parser)]
struct Args {
    /// The token URL (tokencache or nginx).
    #[arg(long)]
    url: String,
    /// The mock IdP's address, for `GET /stats`.
    #[arg(long)]
    stats: SocketAddr,
    /// How many new keys, one burst each.
    #[arg(long, default_value_t = 5)]
    keys: u64,
    /// Concurrent identical requests per key.
    #[arg(long, default_value_t = 200)]
    concurrency: usize,
    /// Prefix of the `resource` values; must be new to the cache.
    #[arg(long)]
    prefix: String,
    /// Client id and secret for Basic auth.
    #[arg(long, default_value = "demo-client:demo-secret")]
    basic: String,
    /// The mock IdP's token URL: when given, five single requests for new
    /// keys go straight to it first, as a baseline of the upstream's own
    /// latency (configured delay plus token signing).
    #[arg(long)]
    direct: Option<String>,
}

struct Outcome {
    latency: Duration,
    since_burst: Duration,
    status: u16,
    token: Option<String>,
    class: &'static str,
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    let endpoint = Endpoint::new(&args.url, &args.basic)?;
    let direct = match &args.direct {
        Some(url) => Some(baseline(&args, &Endpoint::new(url, &args.basic)?).await?),
        None => None,
    };
    let mut bursts = Vec::new();
    for n in 0..args.keys {
        bursts.push(burst(&args, &endpoint, n).await?);
    }
    println!("{}", json!({ "direct": direct, "bursts": bursts }));
    Ok(())
}

/// Single requests straight to the upstream, one at a time.
async fn baseline(args: &Args, upstream: &Endpoint) -> anyhow::Result<serde_json::Value> {
    let mut connection = upstream.connect().await?;
    let mut latencies = Vec::new();
    for n in 0..5 {
        let body = Bytes::from(token_body(&format!("{}direct-", args.prefix), n));
        let start = Instant::now();
        let answer = connection.post(body).await?;
        latencies.push(start.elapsed());
        anyhow::ensure!(answer.status == 200, "upstream answered {}", answer.status);
    }
    Ok(latency_summary(&mut latencies))
}

async fn burst(args: &Args, endpoint: &Endpoint, n: u64) -> anyhow::Result<serde_json::Value> {
    let body = Bytes::from(token_body(&args.prefix, n));
    let connections = endpoint.connect_many(args.concurrency).await?;
    let before = idp_token_requests(args.stats).await?;
    let barrier = Arc::new(Barrier::new(args.concurrency + 1));
    let mut tasks = Vec::with_capacity(args.concurrency);
    for mut connection in connections {
        let barrier = Arc::clone(&barrier);
        let body = body.clone();
        tasks.push(tokio::spawn(async move {
            barrier.wait().await;
            let start = Instant::now();
            let answer = connection.post(body).await;
            (start, answer)
        }));
    }
    barrier.wait().await;
    let burst_start = Instant::now();
    let mut outcomes = Vec::with_capacity(tasks.len());
    for task in tasks {
        let (start, answer) = task.await.context("request task panicked")?;
        let answer = answer?;
        let end = Instant::now();
        outcomes.push(Outcome {
            latency: end - start,
            since_burst: end.saturating_duration_since(burst_start),
            status: answer.status.as_u16(),
            token: answer.access_token(),
            class: answer.cache_class(),
        });
    }
    // Every waiter has its answer, so the upstream fetch is over too.
    let after = idp_token_requests(args.stats).await?;
    Ok(report(n, after - before, &outcomes))
}

fn report(n: u64, upstream: u64, outcomes: &[Outcome]) -> serde_json::Value {
    let mut latencies: Vec<Duration> = outcomes.iter().map(|o| o.latency).collect();
    let last_answer = outcomes.iter().map(|o| o.since_burst).max();
    let tokens: BTreeSet<&str> = outcomes.iter().filter_map(|o| o.token.as_deref()).collect();
    let mut statuses: BTreeMap<u16, u64> = BTreeMap::new();
    let mut classes: BTreeMap<&str, u64> = BTreeMap::new();
    for outcome in outcomes {
        *statuses.entry(outcome.status).or_default() += 1;
        *classes.entry(outcome.class).or_default() += 1;
    }
    json!({
        "key": n,
        "requests": outcomes.len(),
        "upstream_requests": upstream,
        "distinct_tokens": tokens.len(),
        "statuses": statuses,
        "cache_status": classes,
        "latency": latency_summary(&mut latencies),
        "last_answer_ms": last_answer.map(|d| d.as_secs_f64() * 1000.0),
    })
}
