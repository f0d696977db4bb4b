//! A store that cannot be reached, or never answers, fails fast with
//! `Unavailable`: the proxy degrades instead of hanging.

use std::time::Duration;

use tokencache_core::{CacheKey, LeaseOwner, SharedStore, StoreError, StoreKey, UnixMillis};
use tokencache_dynamodb_store::{AwsCredentials, DynamoDbConfig, DynamoDbStore, create_table};
use tokencache_test_support::bind_loopback;

/// Far above the default budget (2 attempts of 500 ms plus backoff): only
/// a hang reaches it.
const HANG: Duration = Duration::from_secs(20);

fn config(endpoint: String) -> DynamoDbConfig {
    DynamoDbConfig::default()
        .with_region("us-east-1")
        .with_endpoint_url(endpoint)
        .with_credentials(AwsCredentials::new("testing", "testing"))
}

async fn assert_unavailable<T: std::fmt::Debug>(
    what: &str,
    call: impl Future<Output = Result<T, StoreError>>,
) {
    match tokio::time::timeout(HANG, call).await {
        Ok(Err(StoreError::Unavailable(message))) => {
            assert!(!message.contains("testing"), "{what}: {message}");
        }
        Ok(other) => panic!("{what}: expected Unavailable, got {other:?}"),
        Err(_) => panic!("{what}: no answer within {HANG:?}"),
    }
}

async fn exercise(store: &DynamoDbStore) {
    let key = StoreKey::of(&CacheKey::from_bytes([5; 32]));
    let owner = LeaseOwner::new("owner");
    // Concurrently: each call is bounded on its own.
    tokio::join!(
        assert_unavailable("get", store.get(&key)),
        assert_unavailable("put", store.put(&key, b"x", UnixMillis(4_000_000_000_000))),
        assert_unavailable("delete", store.delete(&key)),
        assert_unavailable(
            "try_lease",
            store.try_lease(&key, &owner, Duration::from_secs(5))
        ),
        assert_unavailable("release_lease", store.release_lease(&key, &owner)),
        assert_unavailable("clear", store.clear()),
    );
}

#[tokio::test]
async fn a_closed_port_is_unavailable_quickly() {
    // A port that was free a moment ago and has no listener now.
    let (listener, addr) = bind_loopback().await;
    drop(listener);
    let config = config(format!("http://{addr}"));
    let store = DynamoDbStore::connect("tokencache", config.clone())
        .await
        .unwrap();
    exercise(&store).await;
    assert_unavailable("create_table", create_table("tokencache", &config)).await;
}

#[tokio::test]
async fn a_silent_store_times_out() {
    // Accepts connections and never answers: a store that hangs.
    let (listener, addr) = bind_loopback().await;
    let held = tokio::spawn(async move {
        let mut open = Vec::new();
        while let Ok((socket, _)) = listener.accept().await {
            open.push(socket);
        }
    });
    let store = DynamoDbStore::connect("tokencache", config(format!("http://{addr}")))
        .await
        .unwrap();
    exercise(&store).await;
    held.abort();
}

#[tokio::test]
async fn bad_table_names_are_refused_before_any_call() {
    let error = DynamoDbStore::connect("a/b", config("http://127.0.0.1:9".into()))
        .await
        .unwrap_err();
    assert!(matches!(error, StoreError::Refused(_)), "{error:?}");
}
