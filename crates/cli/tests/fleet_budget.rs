//! One request budget for the whole fleet: three `tokencache serve`
//! processes on one store draw on one budget per group, learn the identity
//! provider's limit from its throttles together, and keep to their share
//! of it while the store is away.
//!
//! The tests of this file run one at a time: each measures rates, and two
//! fleets at once on two cores would measure each other.
#![allow(clippy::unwrap_used, clippy::expect_used)]
// Waiting on child processes is bounded by real time.
#![allow(clippy::disallowed_methods)]

mod common;

use std::process::Command;
use std::sync::Arc;
use std::time::Duration;

use serde_json::Value;
use tokencache_test_support::answers::metric;
use tokencache_test_support::moto::MotoServer;
use tokencache_test_support::redis::RedisServer;

use common::{BIN, Running, aws_env, start_mock_idp};

/// One test at a time (see the module docs).
static ONE_AT_A_TIME: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

const KEY: [u8; 32] = [0x5b; 32];

/// The budget group of the mock IdP's routes: its host.
const GROUP: &str = "127.0.0.1";

struct Replica {
    _process: Running,
    token_url: String,
    admin_url: String,
}

fn replica(store: &str, idp_url: &str, configure: &dyn Fn(&mut Command)) -> Replica {
    let (process, token_url, admin_url) =
        common::replica(store, idp_url, KEY, &|command: &mut Command| {
            // Callers that queue for a slow budget wait for it.
            command.args(["--load-deadline", "40s"]);
            configure(command);
        });
    Replica {
        _process: process,
        token_url,
        admin_url,
    }
}

/// Three replicas, once each has counted the three by their heartbeats.
async fn fleet(store: &str, idp_url: &str, configure: &dyn Fn(&mut Command)) -> Vec<Replica> {
    let fleet: Vec<Replica> = (0..3).map(|_| replica(store, idp_url, configure)).collect();
    let counted = format!("tokencache_budget_replicas{{group=\"{GROUP}\"}}");
    for replica in &fleet {
        let mut seen = None;
        for _ in 0..100 {
            seen = metric(&metrics(replica).await, &counted);
            if seen == Some(3) {
                break;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        assert_eq!(seen, Some(3), "the replicas did not count each other");
    }
    fleet
}

async fn control(idp_url: &str, settings: Value) {
    let response = reqwest::Client::new()
        .post(idp_url.replace("/oauth2/token", "/control"))
        .json(&settings)
        .send()
        .await
        .unwrap();
    assert!(response.status().is_success());
}

async fn idp_stats(idp_url: &str) -> Value {
    reqwest::get(idp_url.replace("/oauth2/token", "/stats"))
        .await
        .unwrap()
        .json()
        .await
        .unwrap()
}

async fn metrics(replica: &Replica) -> String {
    reqwest::get(format!("{}/metrics", replica.admin_url))
        .await
        .unwrap()
        .text()
        .await
        .unwrap()
}

fn token_urls(fleet: &[Replica]) -> Vec<String> {
    fleet
        .iter()
        .map(|replica| replica.token_url.clone())
        .collect()
}

/// Asks for `keys` distinct cold keys, key `n` through replica `n % 3`,
/// the first `n / per_second` seconds in (all at once for `None`); the
/// statuses, by key.
async fn cold_keys(urls: Vec<String>, keys: usize, per_second: Option<f64>) -> Vec<u16> {
    let client = reqwest::Client::builder()
        .timeout(Duration::from_secs(60))
        .build()
        .unwrap();
    let started = tokio::time::Instant::now();
    let callers: Vec<_> = (0..keys)
        .map(|n| {
            let client = client.clone();
            let url = urls[n % urls.len()].clone();
            #[allow(clippy::cast_precision_loss)]
            let at = per_second.map(|rate| started + Duration::from_secs_f64(n as f64 / rate));
            tokio::spawn(async move {
                if let Some(at) = at {
                    tokio::time::sleep_until(at).await;
                }
                let response = client
                    .post(&url)
                    .basic_auth("demo-client", Some("demo-secret"))
                    .form(&[
                        ("grant_type", "client_credentials"),
                        ("resource", &format!("urn:key:{n}")),
                    ])
                    .send()
                    .await;
                response.map_or(0, |response| response.status().as_u16())
            })
        })
        .collect();
    let mut statuses = Vec::with_capacity(keys);
    for caller in callers {
        statuses.push(caller.await.unwrap());
    }
    statuses
}

fn assert_all_got_a_token(statuses: &[u16], stats: &Value) {
    let failed: Vec<(usize, u16)> = statuses
        .iter()
        .copied()
        .enumerate()
        .filter(|(_, status)| *status != 200)
        .collect();
    assert!(
        failed.is_empty(),
        "{} of {} callers got no token: {:?}…; the IdP saw {stats}",
        failed.len(),
        statuses.len(),
        &failed[..failed.len().min(10)]
    );
}

/// How hard a fleet test pushes: cold keys at once, the group's rate and
/// burst, and the IdP's own limit above them; and how late a replica may
/// send for its slot (see [`three_replicas_keep_one_budget`]).
struct Burst {
    keys: usize,
    rate: u64,
    burst: u64,
    idp_limit: u64,
    late: Duration,
}

/// `burst.keys` cold keys spread over three replicas, one group: every
/// caller gets a token, the IdP throttles nothing, and in no second does
/// it see more than the group's rate and burst.
async fn three_replicas_keep_one_budget(
    store: &str,
    burst: &Burst,
    configure: &dyn Fn(&mut Command),
) {
    let (_idp, idp_url) = start_mock_idp();
    control(
        &idp_url,
        serde_json::json!({ "rate_limit_per_sec": burst.idp_limit }),
    )
    .await;
    let (rate, size) = (burst.rate.to_string(), burst.burst.to_string());
    let fleet = fleet(store, &idp_url, &|c: &mut Command| {
        configure(c);
        c.args(["--budget-rate", &rate, "--budget-burst", &size]);
    })
    .await;
    let statuses = cold_keys(token_urls(&fleet), burst.keys, None).await;
    let stats = idp_stats(&idp_url).await;
    assert_all_got_a_token(&statuses, &stats);
    assert_eq!(stats["throttled"], 0, "{stats}");
    let peak = stats["peak_per_second"].as_u64().unwrap();
    // The store decides every slot on one clock, and a replica sends when
    // the store's answer is back: late by that answer's latency (and the
    // machine's scheduling), never early. So a second as the IdP sees it
    // holds at most the slots of a second and that lateness: the burst,
    // and the rate over `1 s + late`.
    #[allow(
        clippy::cast_possible_truncation,
        clippy::cast_sign_loss,
        clippy::cast_precision_loss
    )]
    let bound = burst.burst + (burst.rate as f64 * (1.0 + burst.late.as_secs_f64())).ceil() as u64;
    assert!(
        peak <= bound,
        "the IdP saw {peak} requests in one second (at most {bound}): {stats}"
    );
    // Every replica took its part of the slots from the shared budget.
    let mut slots = 0;
    for replica in &fleet {
        let text = metrics(replica).await;
        let taken = metric(
            &text,
            &format!("tokencache_budget_slots_total{{group=\"{GROUP}\"}}"),
        )
        .unwrap();
        assert!(
            taken > burst.keys as u64 / 6,
            "a replica took only {taken} slots"
        );
        slots += taken;
        assert_eq!(
            metric(
                &text,
                &format!("tokencache_budget_fallback{{group=\"{GROUP}\"}}")
            ),
            Some(0)
        );
    }
    assert_eq!(slots, stats["token_requests"].as_u64().unwrap());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_replicas_on_one_redis_keep_one_budget() {
    let _one = ONE_AT_A_TIME.lock().await;
    let redis = RedisServer::start();
    // Redis answers in a tenth of a millisecond; the lateness is the cold
    // start itself: 600 connections, three replicas and the IdP on two
    // cores, which delays the first second's slots by up to a few hundred
    // milliseconds (the IdP's per-second counts stay 50, 40, 40, …).
    let burst = Burst {
        keys: 600,
        rate: 40,
        burst: 10,
        idp_limit: 50,
        late: Duration::from_millis(250),
    };
    three_replicas_keep_one_budget(&redis.url(), &burst, &|_| {}).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_replicas_on_one_dynamodb_table_keep_one_budget() {
    let _one = ONE_AT_A_TIME.lock().await;
    let moto = Arc::new(MotoServer::start().await);
    let store = "dynamodb://tokencache-budget";
    let mut init = Command::new(BIN);
    init.args(["store", "init", store]);
    aws_env(&mut init, &moto);
    assert!(init.status().unwrap().success(), "store init failed");
    let configure = |c: &mut Command| {
        aws_env(c, &moto);
        // moto answers in milliseconds, not DynamoDB's single digits, and
        // a slot is a read and a conditional write.
        c.args(["--store-timeout", "3s"]);
    };
    // moto, DynamoDB emulated in Python, answers a few hundred requests a
    // second: the fleet's own cache traffic (a read and a lease per cold
    // key) at a cold start of 600 would time it out. A third of the keys
    // at half the rate: the same property, as long.
    // (moto's answers take 5 to 200 ms under this load; an IdP limit of
    // 25/s that throttles nothing is the check that does not depend on it.)
    let burst = Burst {
        keys: 200,
        rate: 20,
        burst: 5,
        idp_limit: 25,
        late: Duration::from_millis(300),
    };
    three_replicas_keep_one_budget(store, &burst, &configure).await;
}

/// Three replicas at the default budget (100/s) against an IdP that allows
/// 20/s: the fleet learns the limit together, every caller gets a token,
/// and the IdP's throttles stay as few as one replica's would.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_replicas_learn_the_idps_limit_together() {
    let _one = ONE_AT_A_TIME.lock().await;
    let redis = RedisServer::start();
    let (_idp, idp_url) = start_mock_idp();
    control(&idp_url, serde_json::json!({ "rate_limit_per_sec": 20 })).await;
    let fleet = fleet(&redis.url(), &idp_url, &|_| {}).await;
    let statuses = cold_keys(token_urls(&fleet), 300, None).await;
    let stats = idp_stats(&idp_url).await;
    assert_all_got_a_token(&statuses, &stats);
    let received = stats["token_requests"].as_u64().unwrap();
    let throttled = stats["throttled"].as_u64().unwrap();
    assert!(
        throttled * 100 <= received * 15,
        "{throttled} throttled of {received} received"
    );
    // They learned the limit together.
    for replica in &fleet {
        let learned = learned_limit(&metrics(replica).await);
        assert!(learned < 25.0, "a replica learned a limit of {learned}/s");
    }
}

fn learned_limit(metrics: &str) -> f64 {
    let series = format!("tokencache_budget_rate{{group=\"{GROUP}\",kind=\"learned\"}} ");
    metrics
        .lines()
        .find_map(|line| line.strip_prefix(&series))
        .unwrap_or_else(|| panic!("no {series} in {metrics}"))
        .trim()
        .parse()
        .unwrap()
}

/// Redis dies in the middle of a stream of cold keys that asks for more
/// than the budget: each replica keeps to its share (rate / 3, the count
/// the heartbeats showed), so the fleet stays within the budget; after
/// Redis is back, the replicas use the shared budget again.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_redis_outage_leaves_each_replica_its_share() {
    let _one = ONE_AT_A_TIME.lock().await;
    let mut redis = RedisServer::start();
    let (_idp, idp_url) = start_mock_idp();
    let fleet = fleet(&redis.url(), &idp_url, &|c: &mut Command| {
        c.args(["--budget-rate", "30", "--budget-burst", "3"]);
        c.args(["--store-timeout", "300ms"]);
    })
    .await;
    // 45 new keys a second for 12 s, against a budget of 30/s; Redis is
    // down from 4 s to 8 s.
    let stream = tokio::spawn(cold_keys(token_urls(&fleet), 540, Some(45.0)));
    tokio::time::sleep(Duration::from_secs(4)).await;
    redis.stop();
    let stopped = tokio::time::Instant::now();
    // The stream keeps every replica asking: each notices within a store
    // timeout or two.
    let fallback = format!("tokencache_budget_fallback{{group=\"{GROUP}\"}}");
    let mut fell_back = 0;
    while stopped.elapsed() < Duration::from_secs(4) {
        fell_back = 0;
        for replica in &fleet {
            if metric(&metrics(replica).await, &fallback) == Some(1) {
                fell_back += 1;
            }
        }
        if fell_back == 3 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(fell_back, 3, "every replica keeps to its share");
    // Down for four seconds in all.
    tokio::time::sleep_until(stopped + Duration::from_secs(4)).await;
    redis.restart();
    let statuses = stream.await.unwrap();
    let stats = idp_stats(&idp_url).await;
    assert_all_got_a_token(&statuses, &stats);
    let peak = stats["peak_per_second"].as_u64().unwrap();
    // 30/s and the burst, the fallback's three bursts of one included.
    assert!(
        peak <= 30 + 3 + 3,
        "the IdP saw {peak} requests in one second: {stats}"
    );

    // Back on the shared budget: a few more keys through each replica, a
    // second apart so each replica's probe comes.
    for round in 0..3 {
        tokio::time::sleep(Duration::from_millis(1100)).await;
        let client = reqwest::Client::new();
        for (i, replica) in fleet.iter().enumerate() {
            let response = client
                .post(&replica.token_url)
                .basic_auth("demo-client", Some("demo-secret"))
                .form(&[
                    ("grant_type", "client_credentials"),
                    ("resource", &format!("urn:after:{round}:{i}")),
                ])
                .send()
                .await
                .unwrap();
            assert_eq!(response.status(), 200);
        }
    }
    for replica in &fleet {
        let text = metrics(replica).await;
        assert_eq!(
            metric(
                &text,
                &format!("tokencache_budget_fallback{{group=\"{GROUP}\"}}")
            ),
            Some(0),
            "back on the shared budget"
        );
    }
}
