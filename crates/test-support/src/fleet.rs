//! Fleets of proxies over one shared store, and the scenario every shared
//! store runs with them: a purge on one replica stops every replica serving
//! the purged tokens within a bound.
//!
//! ```no_run
//! use std::sync::Arc;
//! use std::time::Duration;
//! use tokencache_core::SharedStore;
//! use tokencache_test_support::MockIdpServer;
//! use tokencache_test_support::fleet::{check_purges_reach_the_fleet, replica};
//!
//! # async fn example(store: Arc<dyn SharedStore>) {
//! let idp = MockIdpServer::start(Default::default()).await;
//! let (a, b) = (replica(&idp, Arc::clone(&store)).await, replica(&idp, store).await);
//! let took = check_purges_reach_the_fleet(&a, &b, Duration::from_secs(2)).await;
//! # let _ = took;
//! # }
//! ```

use std::sync::Arc;
use std::time::Duration;

use serde_json::Value;
use tokencache_core::{EncryptionKey, KeyRing, SharedStore, SystemClock};
use tokencache_mock_idp::ClientRecord;
use tokencache_proxy::{ProxyConfig, SharedStoreConfig};
use tokio::time::Instant;

use crate::answers::answer_of;
use crate::{ADMIN_TOKEN, MockIdpServer, ProxyServer};

const CC: &str = "grant_type=client_credentials";

/// The sealing keys every replica of a test fleet shares (so they derive
/// the same cache keys too).
#[must_use]
pub fn fleet_keys() -> KeyRing {
    KeyRing::new(EncryptionKey::from_bytes([0x5a; 32]), Vec::new())
}

/// The default configuration in front of `idp`, over `store` with the
/// fleet's keys and the default shared-store timings.
#[must_use]
pub fn replica_config(idp: &MockIdpServer, store: Arc<dyn SharedStore>) -> ProxyConfig {
    let mut config = ProxyServer::config_for(idp);
    config.shared_store = Some(SharedStoreConfig::new(store, fleet_keys()));
    config
}

/// A replica on the real clock (shared stores expire by it).
pub async fn replica(idp: &MockIdpServer, store: Arc<dyn SharedStore>) -> ProxyServer {
    ProxyServer::start(replica_config(idp, store), SystemClock).await
}

/// `client-0` … `client-{n-1}` (secret `secret-N`, scope `api/read`), for
/// tests that need many distinct keys: each client is a fresh key.
#[must_use]
pub fn numbered_clients(n: usize) -> Vec<ClientRecord> {
    (0..n)
        .map(|i| ClientRecord::new(format!("client-{i}"), format!("secret-{i}"), ["api/read"]))
        .collect()
}

/// The token of numbered client `i` through `proxy`: status,
/// `Cache-Status` and body.
pub async fn numbered_token(proxy: &ProxyServer, i: usize) -> (u16, String, Value) {
    answer_of(
        proxy
            .token_request(&format!("client-{i}"), &format!("secret-{i}"), CC)
            .await,
    )
    .await
}

/// The access token `proxy` serves `client` now.
async fn served(proxy: &ProxyServer, client: (&str, &str)) -> String {
    let (status, cache_status, body) =
        answer_of(proxy.token_request(client.0, client.1, CC).await).await;
    assert_eq!(status, 200, "{cache_status}: {body}");
    body["access_token"]
        .as_str()
        .unwrap_or_else(|| panic!("no access_token in {body}"))
        .to_owned()
}

/// Asks `proxy` for `client`'s token every 20 ms until it serves another
/// than `old`; how long that took.
///
/// # Panics
/// If it still serves `old` after `within` and a second of slack (the
/// caller asserts the bound itself, with the measurement in the message).
async fn until_replaced(
    proxy: &ProxyServer,
    client: (&str, &str),
    old: &str,
    within: Duration,
) -> Duration {
    let started = Instant::now();
    loop {
        if served(proxy, client).await != old {
            return started.elapsed();
        }
        assert!(
            started.elapsed() < within + Duration::from_secs(1),
            "{}: still serving the purged token after {:?}",
            proxy.addr,
            started.elapsed()
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Sends an admin request; its JSON answer.
async fn admin(proxy: &ProxyServer, method: reqwest::Method, path: &str) -> Value {
    let answer = proxy
        .http
        .request(method, proxy.admin_url(path))
        .bearer_auth(ADMIN_TOKEN)
        .send()
        .await
        .unwrap_or_else(|error| panic!("admin request: {error}"));
    assert_eq!(answer.status(), 200);
    answer
        .json()
        .await
        .unwrap_or_else(|error| panic!("admin answer: {error}"))
}

/// Two replicas of one fleet, both holding `demo-client`'s and
/// `other-client`'s tokens in memory: `DELETE /cache?client_id=demo-client`
/// on `a` stops `b` serving demo-client's token within `within`, while
/// other-client's stays; then `POST /purge` on `b` stops `a` serving
/// other-client's. Returns how long each took to reach the other replica.
///
/// # Panics
/// When a purge does not reach the other replica within `within`.
pub async fn check_purges_reach_the_fleet(
    a: &ProxyServer,
    b: &ProxyServer,
    within: Duration,
) -> [Duration; 2] {
    let demo = ("demo-client", "demo-secret");
    let other = ("other-client", "other-secret");
    let demo_token = served(a, demo).await;
    let other_token = served(a, other).await;
    // B reads both from the store into its memory tier.
    assert_eq!(served(b, demo).await, demo_token);
    assert_eq!(served(b, other).await, other_token);

    let answer = admin(a, reqwest::Method::DELETE, "/cache?client_id=demo-client").await;
    assert_eq!(
        (&answer["store_cleared"], &answer["fleet_notified"]),
        (&Value::Bool(true), &Value::Bool(true)),
        "{answer}"
    );
    let client_purge = until_replaced(b, demo, &demo_token, within).await;
    assert!(
        client_purge <= within,
        "a client's purge reached the other replica after {client_purge:?}"
    );
    assert_eq!(
        served(b, other).await,
        other_token,
        "another client's token stays"
    );
    assert_eq!(served(a, other).await, other_token);

    let answer = admin(b, reqwest::Method::POST, "/purge").await;
    assert_eq!(
        (&answer["store_cleared"], &answer["fleet_notified"]),
        (&Value::Bool(true), &Value::Bool(true)),
        "{answer}"
    );
    let full_purge = until_replaced(a, other, &other_token, within).await;
    assert!(
        full_purge <= within,
        "a purge of everything reached the other replica after {full_purge:?}"
    );
    [client_purge, full_purge]
}
