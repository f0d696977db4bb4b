//! Fills a cache with `--keys` distinct keys (`resource={prefix}{n}` for n
//! in `--from..--from+--keys`), `--concurrency` requests at a time, each
//! on its own keep-alive connection. Prints one JSON object with the
//! answers by status; exits non-zero if any answer was not 200.
//!
//! ```text
//! loader --url http://127.0.0.1:18001/oauth2/token --prefix k --keys 1000
//! ```

#![allow(clippy::print_stdout)] // a command-line tool that reports on stdout

use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use anyhow::{Context as _, bail};
use bytes::Bytes;
use clap::Parser;
use serde_json::json;
use tokencache_bench::{Endpoint, token_body};
use tokio::time::Instant;

#[derive(Debug, Parser)]
struct Args {
    /// The token URL.
    #[arg(long)]
    url: String,
    /// Prefix of the `resource` values.
    #[arg(long, default_value = "k")]
    prefix: String,
    /// First key number.
    #[arg(long, default_value_t = 0)]
    from: u64,
    /// How many keys.
    #[arg(long)]
    keys: u64,
    /// Requests in flight at once.
    #[arg(long, default_value_t = 16)]
    concurrency: usize,
    /// Client id and secret for Basic auth.
    #[arg(long, default_value = "demo-client:demo-secret")]
    basic: String,
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    let endpoint = Endpoint::new(&args.url, &args.basic)?;
    let next = Arc::new(AtomicU64::new(args.from));
    let end = args.from + args.keys;
    let started = Instant::now();
    let mut workers = Vec::new();
    for mut connection in endpoint.connect_many(args.concurrency).await? {
        let next = Arc::clone(&next);
        let prefix = args.prefix.clone();
        workers.push(tokio::spawn(async move {
            let mut statuses: BTreeMap<u16, u64> = BTreeMap::new();
            loop {
                let n = next.fetch_add(1, Ordering::Relaxed);
                if n >= end {
                    break;
                }
                let answer = connection.post(Bytes::from(token_body(&prefix, n))).await?;
                *statuses.entry(answer.status.as_u16()).or_default() += 1;
            }
            anyhow::Ok(statuses)
        }));
    }
    let mut statuses: BTreeMap<u16, u64> = BTreeMap::new();
    for worker in workers {
        for (status, count) in worker.await.context("worker panicked")?? {
            *statuses.entry(status).or_default() += count;
        }
    }
    let elapsed = started.elapsed().as_secs_f64();
    println!(
        "{}",
        json!({ "keys": args.keys, "statuses": statuses, "seconds": elapsed })
    );
    let ok = statuses.get(&200).copied().unwrap_or_default();
    if ok != args.keys {
        bail!("{} of {} answers were 200", ok, args.keys);
    }
    Ok(())
}
