//! A fleet: two `tokencache serve` processes sharing one store fetch each
//! key once, serve each other's tokens, and keep only ciphertext in it.
#![allow(clippy::unwrap_used, clippy::expect_used)]
// Waiting on child processes is bounded by real time.
#![allow(clippy::disallowed_methods)]

mod common;

use std::process::Command;

use base64::Engine as _;
use serde_json::Value;
use tokencache_test_support::moto::MotoServer;

use common::{BIN, Running, aws_env, start_mock_idp};

const KEY: [u8; 32] = [0x5a; 32];

/// A replica with the fleet's key and admin token.
fn replica(
    store: &str,
    idp_url: &str,
    configure: impl Fn(&mut Command),
) -> (Running, String, String) {
    common::replica(store, idp_url, KEY, &|command: &mut Command| {
        command.env("TOKENCACHE_ADMIN_TOKEN", "fleet-admin");
        configure(command);
    })
}

async fn token(url: &str) -> (String, Value) {
    let response = reqwest::Client::new()
        .post(url)
        .basic_auth("demo-client", Some("demo-secret"))
        .form(&[("grant_type", "client_credentials"), ("scope", "api/read")])
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    let cache_status = response.headers()["cache-status"]
        .to_str()
        .unwrap()
        .to_owned();
    (cache_status, response.json().await.unwrap())
}

/// Opens a replica's connection to its store with another client's token,
/// so a race that follows is not decided by a fresh client's first call.
async fn warm_up(url: &str) {
    let warm = reqwest::Client::new()
        .post(url)
        .basic_auth("other-client", Some("other-secret"))
        .form(&[("grant_type", "client_credentials")])
        .send()
        .await
        .unwrap();
    assert_eq!(warm.status(), 200);
}

async fn idp_token_requests(idp_url: &str) -> u64 {
    let stats_url = idp_url.replace("/oauth2/token", "/stats");
    let stats: Value = reqwest::get(stats_url).await.unwrap().json().await.unwrap();
    stats["token_requests"].as_u64().unwrap()
}

#[tokio::test]
async fn two_proxies_share_a_dynamodb_table() {
    let moto = MotoServer::start().await;
    let (mut idp, idp_url) = start_mock_idp();
    let _ = &mut idp;
    // Make the upstream slow enough that both replicas are asked while the
    // first fetch is still running.
    reqwest::Client::new()
        .post(idp_url.replace("/oauth2/token", "/control"))
        .json(&serde_json::json!({ "latency_ms": 300 }))
        .send()
        .await
        .unwrap();

    let mut init = Command::new(BIN);
    init.args(["store", "init", "dynamodb://tokencache-fleet"]);
    aws_env(&mut init, &moto);
    let status = init.status().unwrap();
    assert!(status.success(), "store init failed");

    let store = "dynamodb://tokencache-fleet";
    // A generous store timeout: a busy test machine can take long over a
    // fresh SDK client's first call, and a timed-out lease is (rightly) a
    // replica fetching on its own.
    let configure = |c: &mut Command| {
        aws_env(c, &moto);
        c.args(["--store-timeout", "3s"]);
    };
    let (_a, url_a, _) = replica(store, &idp_url, configure);
    let (_b, url_b, admin_b) = replica(store, &idp_url, configure);
    // Warm each replica's connection to the table with another client.
    for url in [&url_a, &url_b] {
        warm_up(url).await;
    }
    let before = idp_token_requests(&idp_url).await;

    let ((status_a, token_a), (status_b, token_b)) = tokio::join!(token(&url_a), token(&url_b));
    assert_eq!(token_a["access_token"], token_b["access_token"]);
    assert_eq!(
        idp_token_requests(&idp_url).await,
        before + 1,
        "{status_a} / {status_b}"
    );

    // A third replica, started later, is served from the table.
    let (_c, url_c, _) = replica(store, &idp_url, configure);
    let (cache_status, token_c) = token(&url_c).await;
    assert!(cache_status.ends_with("detail=shared"), "{cache_status}");
    assert_eq!(token_c["access_token"], token_a["access_token"]);
    assert_eq!(idp_token_requests(&idp_url).await, before + 1);

    // The admin API purges the table too.
    let purged = reqwest::Client::new()
        .delete(format!("{admin_b}/cache"))
        .bearer_auth("fleet-admin")
        .send()
        .await
        .unwrap();
    assert_eq!(purged.status(), 200);
}

#[tokio::test]
async fn replicas_seal_with_a_kms_data_key() {
    use aws_sdk_kms::config::{BehaviorVersion, Credentials, Region};
    use tokencache_dynamodb_store::{AwsCredentials, DynamoDbConfig, generate_data_key};

    let moto = MotoServer::start().await;
    let kms = aws_sdk_kms::Client::from_conf(
        aws_sdk_kms::Config::builder()
            .behavior_version(BehaviorVersion::latest())
            .region(Region::new("us-east-1"))
            .endpoint_url(moto.endpoint_url())
            .credentials_provider(Credentials::new("testing", "testing", None, None, "tests"))
            .build(),
    );
    let key_id = kms
        .create_key()
        .description("tokencache fleet test")
        .send()
        .await
        .unwrap()
        .key_metadata
        .unwrap()
        .key_id;
    let config = DynamoDbConfig::default()
        .with_region("us-east-1")
        .with_endpoint_url(moto.endpoint_url())
        .with_credentials(AwsCredentials::new("testing", "testing"));
    let (blob, _) = generate_data_key(&key_id, &config).await.unwrap();
    let dir = std::env::temp_dir().join(format!("tokencache-kms-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let key_file = dir.join("data-key.b64");
    std::fs::write(
        &key_file,
        base64::engine::general_purpose::STANDARD.encode(&blob),
    )
    .unwrap();

    let mut init = Command::new(BIN);
    init.args(["store", "init", "dynamodb://tokencache-kms"]);
    aws_env(&mut init, &moto);
    assert!(init.status().unwrap().success());
    let (_idp, idp_url) = start_mock_idp();
    let with_kms = |c: &mut Command| {
        aws_env(c, &moto);
        c.args(["--store-timeout", "3s"])
            .env_remove("TOKENCACHE_ENCRYPTION_KEY")
            .arg("--encryption-key-kms")
            .arg(&key_file);
    };
    let store = "dynamodb://tokencache-kms";
    let (_a, url_a, _) = replica(store, &idp_url, with_kms);
    let (_, first) = token(&url_a).await;
    let (_b, url_b, _) = replica(store, &idp_url, with_kms);
    let (cache_status, second) = token(&url_b).await;
    assert!(cache_status.ends_with("detail=shared"), "{cache_status}");
    assert_eq!(first["access_token"], second["access_token"]);
    assert_eq!(idp_token_requests(&idp_url).await, 1);
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn a_shared_store_without_a_key_refuses_to_start() {
    let output = Command::new(BIN)
        .args([
            "serve",
            "--upstream",
            "http://127.0.0.1:1/t",
            "--store",
            "dynamodb://t",
        ])
        .env_remove("TOKENCACHE_ENCRYPTION_KEY")
        .output()
        .unwrap();
    assert_eq!(output.status.code(), Some(64));
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("encryption key"), "{stderr}");
}

#[tokio::test]
async fn two_proxies_share_redis_and_ride_out_its_outage() {
    use tokencache_test_support::redis::RedisServer;

    let mut redis = RedisServer::start();
    let (_idp, idp_url) = start_mock_idp();
    reqwest::Client::new()
        .post(idp_url.replace("/oauth2/token", "/control"))
        .json(&serde_json::json!({ "latency_ms": 300 }))
        .send()
        .await
        .unwrap();
    let store = redis.url();
    let short_l1 = |c: &mut Command| {
        c.args(["--l1-ttl", "1s", "--store-timeout", "1s"]);
    };
    let (_a, url_a, _) = replica(&store, &idp_url, short_l1);
    let (_b, url_b, _) = replica(&store, &idp_url, short_l1);
    for url in [&url_a, &url_b] {
        warm_up(url).await;
    }
    let before = idp_token_requests(&idp_url).await;
    let ((_, token_a), (_, token_b)) = tokio::join!(token(&url_a), token(&url_b));
    assert_eq!(token_a["access_token"], token_b["access_token"]);
    assert_eq!(idp_token_requests(&idp_url).await, before + 1);

    // The raw store holds opaque keys and sealed values only.
    let keys = String::from_utf8(redis.cli(&["--scan"]).stdout).unwrap();
    let access_token = token_a["access_token"].as_str().unwrap();
    assert!(!keys.trim().is_empty());
    for key in keys.lines() {
        // Entries, and the fleet's budget state and heartbeats: numbers
        // and random replica ids.
        let value = if key.starts_with("tokencache:{") {
            redis.cli(&["GET", key]).stdout
        } else if key.starts_with("tokencache:budget:") {
            redis.cli(&["HGETALL", key]).stdout
        } else {
            assert_eq!(key, "tokencache:replicas");
            redis.cli(&["ZRANGE", key, "0", "-1"]).stdout
        };
        let text = String::from_utf8_lossy(&value);
        for secret in ["demo-client", "demo-secret", access_token, "access_token"] {
            assert!(
                !text.contains(secret) && !key.contains(secret),
                "the store holds `{secret}`"
            );
        }
    }

    // Redis dies under steady load: no client request fails.
    reqwest::Client::new()
        .post(idp_url.replace("/oauth2/token", "/control"))
        .json(&serde_json::json!({ "latency_ms": 0 }))
        .send()
        .await
        .unwrap();
    let load = tokio::spawn({
        let (url_a, url_b) = (url_a.clone(), url_b.clone());
        async move {
            let client = reqwest::Client::new();
            let mut answered = 0;
            for n in 0..400 {
                let url = if n % 2 == 0 { &url_a } else { &url_b };
                let scope = ["api/read", "api/write"][n % 2];
                let response = client
                    .post(url)
                    .basic_auth("demo-client", Some("demo-secret"))
                    .form(&[("grant_type", "client_credentials"), ("scope", scope)])
                    .send()
                    .await
                    .unwrap();
                assert_eq!(
                    response.status(),
                    200,
                    "request {n} failed during the outage"
                );
                answered += 1;
                tokio::time::sleep(std::time::Duration::from_millis(10)).await;
            }
            answered
        }
    });
    tokio::time::sleep(std::time::Duration::from_millis(500)).await;
    redis.stop();
    tokio::time::sleep(std::time::Duration::from_secs(2)).await;
    redis.restart();
    assert_eq!(load.await.unwrap(), 400);

    // After the restart the replicas use Redis again, on their own: a new
    // key fetched through one is served from Redis by the other.
    let client = reqwest::Client::new();
    let ask = |url: String| {
        let client = client.clone();
        async move {
            let response = client
                .post(url)
                .basic_auth("other-client", Some("other-secret"))
                .form(&[("grant_type", "client_credentials"), ("scope", "api/admin")])
                .send()
                .await
                .unwrap();
            assert_eq!(response.status(), 200);
            response.headers()["cache-status"]
                .to_str()
                .unwrap()
                .to_owned()
        }
    };
    let mut shared = false;
    for _ in 0..50 {
        // Poll until the replica's connection manager has reconnected.
        if redis.cli(&["DBSIZE"]).stdout.starts_with(b"0") {
            let _ = ask(url_a.clone()).await;
        }
        if ask(url_b.clone()).await.ends_with("detail=shared") {
            shared = true;
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    }
    assert!(
        shared,
        "the replicas did not use Redis again after its restart"
    );
}
