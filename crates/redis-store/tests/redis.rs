//! The Redis store against real servers: standalone, a three-node cluster,
//! and TLS with an ACL user; raw contents, outages, refusals.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::sync::Arc;
use std::time::Duration;

use tokencache_core::{
    CacheKey, Clock, LeaseOwner, SharedStore, StoreError, StoreKey, SystemClock,
};
use tokencache_redis_store::{RedisConfig, RedisStore};
use tokencache_test_support::conformance::check_store;
use tokencache_test_support::redis::{RedisCluster, RedisServer};

fn fresh_key() -> StoreKey {
    StoreKey::of(&CacheKey::from_bytes(rand::random()))
}

async fn store_for(url: &str) -> RedisStore {
    RedisStore::connect(RedisConfig::parse(url).unwrap())
        .await
        .unwrap()
}

async fn tls_store(server: &RedisServer) -> RedisStore {
    let mut config = RedisConfig::parse(&server.url()).unwrap();
    config.ca_file = server.ca_file().map(Into::into);
    RedisStore::connect(config).await.unwrap()
}

fn stdout(output: &std::process::Output) -> String {
    assert!(output.status.success(), "redis-cli: {output:?}");
    String::from_utf8_lossy(&output.stdout).into_owned()
}

/// `tokencache:{` + 64 lowercase hex + `}`.
fn is_entry_key(key: &str) -> bool {
    key.strip_prefix("tokencache:{")
        .and_then(|rest| rest.strip_suffix('}'))
        .is_some_and(|hex| {
            hex.len() == 64
                && hex
                    .bytes()
                    .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
        })
}

#[tokio::test]
async fn standalone_conforms() {
    let server = RedisServer::start();
    check_store(Arc::new(store_for(&server.url()).await)).await;
}

#[tokio::test]
async fn cluster_conforms_and_clears_every_node() {
    let cluster = RedisCluster::start(3);
    let store = Arc::new(store_for(&cluster.url()).await);
    check_store(Arc::clone(&store) as Arc<dyn SharedStore>).await;

    // Enough keys to land on every primary; clear finds them all.
    let later = SystemClock.now().plus_millis(60_000);
    let keys: Vec<StoreKey> = (0..30).map(|_| fresh_key()).collect();
    for key in &keys {
        store.put(key, b"sealed", later).await.unwrap();
    }
    for port in cluster.ports() {
        let output = std::process::Command::new("redis-cli")
            .args(["-h", "127.0.0.1", "-p", &port.to_string(), "DBSIZE"])
            .output()
            .unwrap();
        let size: u64 = stdout(&output).trim().parse().unwrap();
        assert!(
            size > 0,
            "node {port} holds no key: the keys did not spread"
        );
    }
    assert_eq!(store.clear().await.unwrap(), Some(30));
    for key in &keys {
        assert_eq!(store.get(key).await.unwrap(), None);
    }
}

#[tokio::test]
async fn tls_cluster_conforms() {
    let cluster = RedisCluster::start_tls(3);
    assert!(cluster.url().starts_with("rediss-cluster://"));
    let mut config = RedisConfig::parse(&cluster.url()).unwrap();
    config.ca_file = cluster.ca_file().map(Into::into);
    check_store(Arc::new(RedisStore::connect(config).await.unwrap())).await;
}

#[tokio::test]
async fn entry_and_lease_share_a_cluster_slot() {
    let cluster = RedisCluster::start(3);
    let store = store_for(&cluster.url()).await;
    let key = fresh_key();
    let owner = LeaseOwner::random();
    store
        .put(&key, b"sealed", SystemClock.now().plus_millis(60_000))
        .await
        .unwrap();
    assert!(
        store
            .try_lease(&key, &owner, Duration::from_secs(30))
            .await
            .unwrap()
    );
    let entry = format!("tokencache:{{{}}}", key.as_str());
    let lease = format!("{entry}:lease");
    let slot = |name: &str| {
        stdout(&cluster.cli(&["CLUSTER", "KEYSLOT", name]))
            .trim()
            .to_owned()
    };
    assert_eq!(slot(&entry), slot(&lease));
    assert_eq!(
        stdout(&cluster.cli(&["GET", &lease])).trim(),
        owner.as_str(),
        "the lease holds its owner id"
    );
}

#[tokio::test]
async fn tls_with_an_acl_user_conforms() {
    let server = RedisServer::start_tls_acl();
    assert!(server.url().starts_with("rediss://tokencache:"));
    check_store(Arc::new(tls_store(&server).await)).await;
}

#[tokio::test]
async fn a_wrong_password_is_refused_without_echoing_it() {
    let server = RedisServer::start_tls_acl();
    let wrong = "Wr0ngPassw0rdXyz";
    let url = format!("rediss://tokencache:{wrong}@127.0.0.1:{}", server.port());
    let mut config = RedisConfig::parse(&url).unwrap();
    config.ca_file = server.ca_file().map(Into::into);
    let error = RedisStore::connect(config).await.unwrap_err();
    let message = error.to_string();
    assert!(matches!(error, StoreError::Refused(_)), "{error:?}");
    assert!(!message.contains(wrong), "{message}");
    assert!(!message.contains(server.password().unwrap()), "{message}");
}

#[tokio::test]
async fn an_untrusted_certificate_is_not_accepted() {
    let server = RedisServer::start_tls_acl();
    // The system roots alone do not know the test CA.
    let config = RedisConfig::parse(&server.url()).unwrap();
    let error = RedisStore::connect(config).await.unwrap_err();
    assert!(
        matches!(error, StoreError::Unavailable(_) | StoreError::Refused(_)),
        "{error:?}"
    );
    assert!(!error.to_string().contains(server.password().unwrap()));
}

#[tokio::test]
async fn redis_holds_only_opaque_keys_and_sealed_bytes() {
    let server = RedisServer::start();
    let store = store_for(&server.url()).await;
    let later = SystemClock.now().plus_millis(60_000);
    let keys: Vec<StoreKey> = (0..5).map(|_| fresh_key()).collect();
    for key in &keys {
        store.put(key, b"\x01sealed-bytes", later).await.unwrap();
    }
    let listed = stdout(&server.cli(&["--scan"]));
    let listed: Vec<&str> = listed.lines().collect();
    assert_eq!(listed.len(), 5, "{listed:?}");
    assert!(listed.iter().all(|key| is_entry_key(key)), "{listed:?}");

    // The expiry is the one asked for (PXAT), to the millisecond.
    let entry = format!("tokencache:{{{}}}", keys[0].as_str());
    let expiry: u64 = stdout(&server.cli(&["PEXPIRETIME", &entry]))
        .trim()
        .parse()
        .unwrap();
    assert_eq!(expiry, later.0);
}

#[tokio::test]
async fn a_put_already_expired_leaves_nothing_readable() {
    let server = RedisServer::start();
    let store = store_for(&server.url()).await;
    let key = fresh_key();
    let now = SystemClock.now();
    store
        .put(&key, b"old", now.plus_millis(60_000))
        .await
        .unwrap();
    store
        .put(&key, b"new", tokencache_core::UnixMillis(now.0 - 1))
        .await
        .unwrap();
    assert_eq!(store.get(&key).await.unwrap(), None);
    assert_eq!(stdout(&server.cli(&["DBSIZE"])).trim(), "0");
}

#[tokio::test]
async fn a_custom_prefix_is_used_and_cleared() {
    let server = RedisServer::start();
    let mut config = RedisConfig::parse(&server.url()).unwrap();
    config.prefix = "fleet-a:".into();
    let store = RedisStore::connect(config).await.unwrap();
    let other = store_for(&server.url()).await;
    let later = SystemClock.now().plus_millis(60_000);
    let (mine, theirs) = (fresh_key(), fresh_key());
    store.put(&mine, b"a", later).await.unwrap();
    other.put(&theirs, b"b", later).await.unwrap();
    let listed = stdout(&server.cli(&["--scan", "--pattern", "fleet-a:*"]));
    assert_eq!(listed.trim(), format!("fleet-a:{{{}}}", mine.as_str()));
    assert_eq!(store.clear().await.unwrap(), Some(1));
    assert_eq!(
        other.get(&theirs).await.unwrap().as_deref(),
        Some(&b"b"[..])
    );
}

#[tokio::test]
async fn an_outage_fails_fast_and_the_store_recovers_on_its_own() {
    let mut server = RedisServer::start();
    let mut config = RedisConfig::parse(&server.url()).unwrap();
    config.op_timeout = Duration::from_millis(250);
    let store = RedisStore::connect(config).await.unwrap();
    let key = fresh_key();
    let later = SystemClock.now().plus_millis(60_000);
    store.put(&key, b"before", later).await.unwrap();

    server.stop();
    for _ in 0..5 {
        let started = tokio::time::Instant::now();
        let got = store.get(&key).await;
        assert!(matches!(got, Err(StoreError::Unavailable(_))), "{got:?}");
        let put = store.put(&key, b"during", later).await;
        assert!(matches!(put, Err(StoreError::Unavailable(_))), "{put:?}");
        // Both calls bounded by op_timeout, with slack for a busy machine.
        assert!(
            started.elapsed() < Duration::from_millis(1_500),
            "took {:?}",
            started.elapsed()
        );
    }

    server.restart();
    // The same store value reconnects by itself: give it a few seconds of
    // attempts (its reconnect backoff is capped at a second).
    let mut recovered = false;
    for _ in 0..40 {
        if store.put(&key, b"after", later).await.is_ok() {
            recovered = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(recovered, "the store did not reconnect after the restart");
    assert_eq!(
        store.get(&key).await.unwrap().as_deref(),
        Some(&b"after"[..])
    );
}

#[tokio::test]
async fn a_lazy_store_starts_without_redis_and_uses_it_once_up() {
    let mut server = RedisServer::start();
    let url = server.url();
    server.stop();
    let store = RedisStore::connect_lazy(RedisConfig::parse(&url).unwrap())
        .await
        .unwrap();
    let key = fresh_key();
    assert!(matches!(
        store.get(&key).await,
        Err(StoreError::Unavailable(_))
    ));
    server.restart();
    let mut answered = false;
    for _ in 0..40 {
        if store.get(&key).await.is_ok() {
            answered = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(answered, "the lazy store never connected");
}

#[tokio::test]
async fn connecting_to_nothing_fails_within_the_connect_timeout() {
    let port = tokencache_test_support::redis::free_port();
    let mut config = RedisConfig::parse(&format!("redis://127.0.0.1:{port}")).unwrap();
    config.connect_timeout = Duration::from_millis(500);
    let started = tokio::time::Instant::now();
    let error = RedisStore::connect(config).await.unwrap_err();
    assert!(matches!(error, StoreError::Unavailable(_)), "{error:?}");
    assert!(
        started.elapsed() < Duration::from_secs(3),
        "{:?}",
        started.elapsed()
    );
}

#[tokio::test]
async fn debug_output_has_no_password() {
    let server = RedisServer::start_tls_acl();
    let store = tls_store(&server).await;
    let debug = format!("{store:?}");
    assert!(!debug.contains(server.password().unwrap()), "{debug}");
    assert!(debug.contains("[redacted]"), "{debug}");
}

/// The budget script against a real server: eight clients, each its own
/// connection, hammer one group for two seconds with callers that cannot
/// wait. Slots are decided on Redis's clock, so every admitted request lies
/// between the first ask and the last answer: no more than `rate × t +
/// burst` of them, and in no second more than `rate + burst`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn eight_clients_hammering_one_group_never_pass_rate_and_burst() {
    use tokencache_core::BudgetStore;
    use tokencache_core::budget::{BudgetLimits, SlotDecision, SlotRequest};

    const RATE: f64 = 50.0;
    const BURST: u32 = 10;
    let server = RedisServer::start();
    let limits = BudgetLimits {
        rate_per_sec: RATE,
        burst: BURST,
    };
    let started = tokio::time::Instant::now();
    let run_for = Duration::from_secs(2);
    let clients: Vec<_> = (0..8)
        .map(|_| {
            let url = server.url();
            tokio::spawn(async move {
                let store = store_for(&url).await;
                let now_only = SlotRequest {
                    background: false,
                    max_wait_micros: 0,
                };
                let (mut admitted, mut refused) = (Vec::new(), 0_u32);
                for _ in 0..200_000 {
                    if started.elapsed() >= run_for {
                        break;
                    }
                    let answer = store
                        .take_slot("hammered", &limits, &now_only, 0)
                        .await
                        .unwrap();
                    match answer.decision {
                        SlotDecision::Granted { wait_micros } => {
                            assert_eq!(wait_micros, 0, "no wait was allowed");
                            admitted.push(started.elapsed());
                        }
                        SlotDecision::Refused { .. } => refused += 1,
                    }
                }
                (admitted, refused)
            })
        })
        .collect();
    let mut admitted = Vec::new();
    let mut refused = 0;
    for client in clients {
        let (times, refusals) = client.await.unwrap();
        admitted.extend(times);
        refused += refusals;
    }
    let elapsed = started.elapsed().as_secs_f64();
    admitted.sort_unstable();
    let count = admitted.len();
    let bound = RATE * elapsed + f64::from(BURST);
    #[allow(clippy::cast_precision_loss)]
    let admitted_f = count as f64;
    assert!(
        admitted_f <= bound,
        "{count} admitted in {elapsed:.3} s, more than {bound:.1}"
    );
    assert!(
        admitted_f >= RATE * 2.0 * 0.8,
        "{count} admitted: the budget starved its callers"
    );
    assert!(refused > 100, "the clients hammered: {refused} refusals");
    // In any one second (as the clients saw the answers arrive, a
    // millisecond or two after Redis decided): rate + burst, and one more
    // for that skew.
    for (i, start) in admitted.iter().enumerate() {
        let in_window = admitted[i..]
            .iter()
            .take_while(|at| at.saturating_sub(*start) < Duration::from_secs(1))
            .count();
        assert!(
            in_window <= 50 + 10 + 1,
            "{in_window} admitted within one second from {start:?}"
        );
    }
}
