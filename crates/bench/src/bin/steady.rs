//! Steady, paced load for a fixed time, recording every request: what
//! callers feel while tokens are refreshed.
//!
//! After one warming request per key, `--connections` workers each send a
//! request every `--interval-ms` (cycling through `--keys` keys) for
//! `--seconds`, recording the latency and the `Cache-Status` class of each
//! answer. A *refresh point* is the first answer for a key marked
//! `detail=refreshing` after one that was not: the moment the background
//! refresh started. Requests within `--window-ms` after a refresh point are
//! the ones a refresh could slow down; they are summarised apart from the
//! rest. Prints one JSON object.
//!
//! ```text
//! steady --url http://127.0.0.1:18001/oauth2/token --stats 127.0.0.1:18002 --seconds 60
//! ```

#![allow(clippy::print_stdout)] // a command-line tool that reports on stdout

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::time::Duration;

use anyhow::{Context as _, bail};
use bytes::Bytes;
use clap::Parser;
use serde_json::json;
use tokencache_bench::{Endpoint, idp_token_requests, latency_summary, token_body};
use tokio::time::{Instant, MissedTickBehavior};

#[derive(Debug, Parser)]
struct Args {
    /// The token URL.
    #[arg(long)]
    url: String,
    /// The mock IdP's address, for `GET /stats`.
    #[arg(long)]
    stats: SocketAddr,
    /// How long to load, in seconds.
    #[arg(long, default_value_t = 60.0)]
    seconds: f64,
    /// Concurrent connections, one worker each.
    #[arg(long, default_value_t = 8)]
    connections: usize,
    /// Each worker sends one request per this many milliseconds.
    #[arg(long, default_value_t = 5)]
    interval_ms: u64,
    /// Distinct keys, cycled through.
    #[arg(long, default_value_t = 4)]
    keys: u64,
    /// Prefix of the `resource` values; new to the cache.
    #[arg(long, default_value = "r")]
    prefix: String,
    /// Requests this long after a refresh point count as "around a refresh".
    #[arg(long, default_value_t = 1000)]
    window_ms: u64,
    /// Latency above which a request counts as slow, in milliseconds.
    #[arg(long, default_value_t = 10.0)]
    slow_ms: f64,
    /// Client id and secret for Basic auth.
    #[arg(long, default_value = "demo-client:demo-secret")]
    basic: String,
}

#[derive(Debug, Clone, Copy)]
struct Sample {
    at: Duration,
    latency: Duration,
    key: u64,
    ok: bool,
    class: &'static str,
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    let endpoint = Endpoint::new(&args.url, &args.basic)?;
    let bodies: Vec<Bytes> = (0..args.keys)
        .map(|n| Bytes::from(token_body(&args.prefix, n)))
        .collect();
    let mut warm = endpoint.connect().await?;
    for body in &bodies {
        let answer = warm.post(body.clone()).await?;
        if answer.status != 200 {
            bail!("warming request answered {}", answer.status);
        }
    }
    let connections = endpoint.connect_many(args.connections).await?;
    let before = idp_token_requests(args.stats).await?;
    let start = Instant::now();
    let end = start + Duration::from_secs_f64(args.seconds);
    let interval = Duration::from_millis(args.interval_ms.max(1));
    let mut workers = Vec::new();
    for (w, mut connection) in connections.into_iter().enumerate() {
        let bodies = bodies.clone();
        // Spread the workers' ticks over the interval.
        let offset = interval.mul_f64(w as f64 / args.connections as f64);
        workers.push(tokio::spawn(async move {
            let mut ticker = tokio::time::interval_at(start + offset, interval);
            ticker.set_missed_tick_behavior(MissedTickBehavior::Delay);
            let mut samples = Vec::new();
            let mut key = w as u64;
            while Instant::now() < end {
                ticker.tick().await;
                key = (key + 1) % bodies.len() as u64;
                #[allow(clippy::cast_possible_truncation)] // key < bodies.len()
                let body = bodies[key as usize].clone();
                let sent = Instant::now();
                let answer = connection.post(body).await?;
                samples.push(Sample {
                    at: sent - start,
                    latency: sent.elapsed(),
                    key,
                    ok: answer.status == 200,
                    class: answer.cache_class(),
                });
            }
            anyhow::Ok(samples)
        }));
    }
    let mut samples = Vec::new();
    for worker in workers {
        samples.extend(worker.await.context("worker panicked")??);
    }
    let after = idp_token_requests(args.stats).await?;
    samples.sort_by_key(|s| s.at);
    println!(
        "{}",
        report(&args, &samples, after - before, start.elapsed())
    );
    Ok(())
}

fn report(args: &Args, samples: &[Sample], upstream: u64, elapsed: Duration) -> serde_json::Value {
    let refresh_points = refresh_points(samples);
    let window = Duration::from_millis(args.window_ms);
    let near = |s: &Sample| {
        refresh_points
            .iter()
            .any(|&(_, at)| s.at >= at && s.at <= at + window)
    };
    let slow = Duration::from_secs_f64(args.slow_ms / 1000.0);
    let mut all: Vec<Duration> = samples.iter().map(|s| s.latency).collect();
    let mut around: Vec<Duration> = samples
        .iter()
        .filter(|s| near(s))
        .map(|s| s.latency)
        .collect();
    let mut elsewhere: Vec<Duration> = samples
        .iter()
        .filter(|s| !near(s))
        .map(|s| s.latency)
        .collect();
    let slow_around = around.iter().filter(|&&l| l > slow).count();
    let slow_elsewhere = elsewhere.iter().filter(|&&l| l > slow).count();
    let mut classes: BTreeMap<&str, u64> = BTreeMap::new();
    for sample in samples {
        *classes.entry(sample.class).or_default() += 1;
    }
    let waited = samples
        .iter()
        .filter(|s| matches!(s.class, "miss-stored" | "collapsed"))
        .count();
    let mut worst: Vec<&Sample> = samples.iter().collect();
    worst.sort_by_key(|s| std::cmp::Reverse(s.latency));
    let worst: Vec<serde_json::Value> = worst
        .iter()
        .take(5)
        .map(|s| {
            json!({
                "at_s": s.at.as_secs_f64(),
                "latency_ms": s.latency.as_secs_f64() * 1000.0,
                "key": s.key,
                "class": s.class,
                "near_refresh": near(s),
            })
        })
        .collect();
    json!({
        "seconds": elapsed.as_secs_f64(),
        "requests": samples.len(),
        "errors": samples.iter().filter(|s| !s.ok).count(),
        "upstream_requests": upstream,
        "cache_status": classes,
        "waited_on_upstream": waited,
        "refresh_points": refresh_points.len(),
        "latency": latency_summary(&mut all),
        "around_refresh": latency_summary(&mut around),
        "elsewhere": latency_summary(&mut elsewhere),
        "slow_ms": args.slow_ms,
        "slow_around_refresh": slow_around,
        "slow_elsewhere": slow_elsewhere,
        "worst": worst,
    })
}

/// Per key, each moment an answer first said `refreshing` after one that
/// did not.
fn refresh_points(samples: &[Sample]) -> Vec<(u64, Duration)> {
    let mut refreshing: BTreeMap<u64, bool> = BTreeMap::new();
    let mut points = Vec::new();
    for sample in samples {
        let now = sample.class == "hit-refreshing";
        let before = refreshing.insert(sample.key, now).unwrap_or(false);
        if now && !before {
            points.push((sample.key, sample.at));
        }
    }
    points
}
