//! End-to-end: a fleet of proxies sharing one store (the in-process store,
//! which keeps the same contract as Redis and DynamoDB; those stores run
//! the same scenarios in their own crates).
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::sync::Arc;
use std::time::Duration;

use serde_json::Value;
use tokencache_core::{EncryptionKey, HmacKey, KeyRing, SharedStore, StoreKey};
use tokencache_memory_store::InProcessSharedStore;
use tokencache_mock_idp::{MockIdp, MockIdpConfig};
use tokencache_proxy::{ProxyConfig, SharedStoreConfig};
use tokencache_test_support::answers::answer_of;
use tokencache_test_support::fleet::check_purges_reach_the_fleet;
use tokencache_test_support::{FlakyStore, ManualClock, MockIdpServer, ProxyServer};

const CC: &str = "grant_type=client_credentials";

fn ring(active: u8, previous: &[u8]) -> KeyRing {
    KeyRing::new(
        EncryptionKey::from_bytes([active; 32]),
        previous
            .iter()
            .map(|b| EncryptionKey::from_bytes([*b; 32]))
            .collect(),
    )
}

struct Fleet {
    idp: MockIdpServer,
    clock: ManualClock,
    store: InProcessSharedStore,
}

impl Fleet {
    async fn new(latency: Duration) -> Self {
        let clock = ManualClock::starting_now();
        let idp = MockIdpServer::start_with(MockIdp::with_clock(
            MockIdpConfig {
                latency,
                ..MockIdpConfig::default()
            },
            Arc::new(clock.clone()),
        ))
        .await;
        let store = InProcessSharedStore::new(Arc::new(clock.clone()));
        Self { idp, clock, store }
    }

    fn config(&self, store: Arc<dyn SharedStore>, keys: KeyRing) -> ProxyConfig {
        let mut config = ProxyServer::config_for(&self.idp);
        config.shared_store = Some(SharedStoreConfig::new(store, keys));
        config
    }

    async fn replica(&self) -> ProxyServer {
        let config = self.config(Arc::new(self.store.clone()), ring(1, &[]));
        ProxyServer::start(config, self.clock.clone()).await
    }
}

#[tokio::test]
async fn two_replicas_asked_at_once_for_a_cold_key_make_one_upstream_request() {
    let fleet = Fleet::new(Duration::from_millis(300)).await;
    let (a, b) = (fleet.replica().await, fleet.replica().await);
    let (from_a, from_b) = tokio::join!(
        a.token_request("demo-client", "demo-secret", CC),
        b.token_request("demo-client", "demo-secret", CC),
    );
    let (status_a, cache_a, token_a) = answer_of(from_a).await;
    let (status_b, cache_b, token_b) = answer_of(from_b).await;
    assert_eq!((status_a, status_b), (200, 200));
    assert_eq!(token_a["access_token"], token_b["access_token"]);
    assert_eq!(fleet.idp.idp.token_requests(), 1, "{cache_a} / {cache_b}");
    let statuses = [cache_a, cache_b];
    let stored = statuses
        .iter()
        .filter(|s| *s == "tokencache; fwd=miss; stored")
        .count();
    let shared = statuses
        .iter()
        .filter(|s| s.ends_with("detail=shared"))
        .count();
    assert_eq!((stored, shared), (1, 1), "{statuses:?}");
}

#[tokio::test]
async fn a_token_fetched_through_one_replica_is_served_by_another() {
    let fleet = Fleet::new(Duration::ZERO).await;
    let a = fleet.replica().await;
    let (_, _, first) = answer_of(a.token_request("demo-client", "demo-secret", CC).await).await;
    let b = fleet.replica().await;
    let (status, cache_status, second) =
        answer_of(b.token_request("demo-client", "demo-secret", CC).await).await;
    assert_eq!(status, 200);
    assert!(
        cache_status.starts_with("tokencache; hit; ttl="),
        "{cache_status}"
    );
    assert!(cache_status.ends_with("detail=shared"), "{cache_status}");
    assert_eq!(first["access_token"], second["access_token"]);
    // Now in B's memory tier: a plain hit.
    let (_, cache_status, _) =
        answer_of(b.token_request("demo-client", "demo-secret", CC).await).await;
    assert!(!cache_status.contains("shared"), "{cache_status}");
    assert_eq!(fleet.idp.idp.token_requests(), 1);
}

#[tokio::test]
async fn a_restarted_replica_with_a_warm_store_asks_the_upstream_nothing() {
    let fleet = Fleet::new(Duration::ZERO).await;
    let a = fleet.replica().await;
    for scope in ["api/read", "api/write", "api/read+api/write"] {
        let body = format!("{CC}&scope={scope}");
        assert_eq!(
            a.token_request("demo-client", "demo-secret", &body)
                .await
                .status(),
            200
        );
    }
    a.shutdown().await.unwrap();
    fleet.clock.advance(Duration::from_secs(600));
    let restarted = fleet.replica().await;
    for scope in ["api/read", "api/write", "api/read+api/write"] {
        let body = format!("{CC}&scope={scope}");
        let (status, cache_status, _) = answer_of(
            restarted
                .token_request("demo-client", "demo-secret", &body)
                .await,
        )
        .await;
        assert_eq!(status, 200);
        assert!(cache_status.contains("detail=shared"), "{cache_status}");
    }
    assert_eq!(fleet.idp.idp.token_requests(), 3);
}

#[tokio::test]
async fn the_store_holds_only_sealed_bytes_under_opaque_keys() {
    let fleet = Fleet::new(Duration::ZERO).await;
    let a = fleet.replica().await;
    let (_, _, token) = answer_of(a.token_request("demo-client", "demo-secret", CC).await).await;
    let access_token = token["access_token"].as_str().unwrap();
    let raw = fleet.store.raw_entries();
    assert_eq!(raw.len(), 1);
    for (key, value) in raw {
        assert!(StoreKey::is_well_formed(&key), "{key}");
        assert!(!key.contains("demo"), "{key}");
        let text = String::from_utf8_lossy(&value);
        for secret in [
            "demo-client",
            "demo-secret",
            access_token,
            "access_token",
            "Bearer",
        ] {
            assert!(!text.contains(secret), "the store holds `{secret}`");
        }
        // Not even the JWT's segments.
        let payload = access_token.split('.').nth(1).unwrap();
        assert!(!text.contains(&payload[..20]));
    }
}

#[tokio::test]
async fn entries_sealed_with_an_old_key_are_read_after_rotation() {
    let fleet = Fleet::new(Duration::ZERO).await;
    let hmac = || HmacKey::from_bytes([42; 32]);
    let mut old = fleet.config(Arc::new(fleet.store.clone()), ring(1, &[]));
    old.hmac_key = Some(hmac());
    let a = ProxyServer::start(old, fleet.clock.clone()).await;
    let (_, _, first) = answer_of(a.token_request("demo-client", "demo-secret", CC).await).await;

    let mut rotated = fleet.config(Arc::new(fleet.store.clone()), ring(2, &[1]));
    rotated.hmac_key = Some(hmac());
    let b = ProxyServer::start(rotated, fleet.clock.clone()).await;
    let (_, cache_status, second) =
        answer_of(b.token_request("demo-client", "demo-secret", CC).await).await;
    assert!(cache_status.contains("detail=shared"), "{cache_status}");
    assert_eq!(first["access_token"], second["access_token"]);

    // A replica without the old key cannot open it: a miss, not an error.
    let mut new_only = fleet.config(Arc::new(fleet.store.clone()), ring(2, &[]));
    new_only.hmac_key = Some(hmac());
    let c = ProxyServer::start(new_only, fleet.clock.clone()).await;
    let (status, cache_status, _) =
        answer_of(c.token_request("demo-client", "demo-secret", CC).await).await;
    assert_eq!(
        (status, cache_status.as_str()),
        (200, "tokencache; fwd=miss; stored")
    );
    assert!(
        c.metrics()
            .await
            .contains("tokencache_store_unreadable_total 1")
    );
}

#[tokio::test]
async fn a_tampered_entry_is_a_miss_not_an_error() {
    let fleet = Fleet::new(Duration::ZERO).await;
    let a = fleet.replica().await;
    assert_eq!(
        a.token_request("demo-client", "demo-secret", CC)
            .await
            .status(),
        200
    );
    let (key, mut sealed) = fleet.store.raw_entries().pop().unwrap();
    let last = sealed.len() - 1;
    sealed[last] ^= 0x55;
    assert!(fleet.store.replace_raw(&key, sealed));
    let b = fleet.replica().await;
    let (status, cache_status, _) =
        answer_of(b.token_request("demo-client", "demo-secret", CC).await).await;
    assert_eq!(
        (status, cache_status.as_str()),
        (200, "tokencache; fwd=miss; stored")
    );
    assert!(
        b.metrics()
            .await
            .contains("tokencache_store_unreadable_total 1")
    );
}

#[tokio::test]
async fn the_memory_tier_asks_the_store_again_after_its_ttl() {
    let fleet = Fleet::new(Duration::ZERO).await;
    let a = fleet.replica().await;
    let b = fleet.replica().await;
    let (_, _, first) = answer_of(a.token_request("demo-client", "demo-secret", CC).await).await;
    assert_eq!(
        b.token_request("demo-client", "demo-secret", CC)
            .await
            .status(),
        200
    );
    // The entry leaves the store behind the fleet's back (no purge
    // announced, as when it is evicted); B still has the token in memory
    // for up to 30 s, then asks the store, which is empty.
    assert_eq!(fleet.store.clear().await.unwrap(), Some(1));
    let (_, cache_status, _) =
        answer_of(b.token_request("demo-client", "demo-secret", CC).await).await;
    assert!(
        cache_status.starts_with("tokencache; hit"),
        "{cache_status}"
    );
    fleet.clock.advance(Duration::from_secs(31));
    let (_, cache_status, fresh) =
        answer_of(b.token_request("demo-client", "demo-secret", CC).await).await;
    assert_eq!(cache_status, "tokencache; fwd=miss; stored");
    assert_ne!(fresh["access_token"], first["access_token"]);
}

#[tokio::test]
async fn a_fleet_refreshes_an_aging_key_once() {
    let fleet = Fleet::new(Duration::from_millis(200)).await;
    let a = fleet.replica().await;
    let b = fleet.replica().await;
    let (_, _, first) = answer_of(a.token_request("demo-client", "demo-secret", CC).await).await;
    assert_eq!(
        b.token_request("demo-client", "demo-secret", CC)
            .await
            .status(),
        200
    );
    assert_eq!(fleet.idp.idp.token_requests(), 1);
    // Both replicas see the key aging at once (2800 s of 3600 s; the memory
    // tier bound passed too, so both consult the store first).
    fleet.clock.advance(Duration::from_secs(2800));
    let (ra, rb) = tokio::join!(
        a.token_request("demo-client", "demo-secret", CC),
        b.token_request("demo-client", "demo-secret", CC),
    );
    for response in [ra, rb] {
        let (status, _, body) = answer_of(response).await;
        assert_eq!(status, 200);
        assert!(body["access_token"].is_string());
    }
    // Bounded wait for the refresh, then both replicas serve the new token.
    let mut refreshed = None;
    for _ in 0..100 {
        tokio::time::sleep(Duration::from_millis(50)).await;
        let (_, _, body) = answer_of(a.token_request("demo-client", "demo-secret", CC).await).await;
        if body["access_token"] != first["access_token"] {
            refreshed = Some(body);
            break;
        }
    }
    let refreshed = refreshed.expect("refreshed within 5 s");
    fleet.clock.advance(Duration::from_secs(31)); // past B's memory-tier bound
    let (_, _, from_b) = answer_of(b.token_request("demo-client", "demo-secret", CC).await).await;
    assert_eq!(from_b["access_token"], refreshed["access_token"]);
    assert_eq!(
        fleet.idp.idp.token_requests(),
        2,
        "one refresh for the fleet"
    );
}

#[tokio::test]
async fn a_store_outage_degrades_service_and_heals() {
    let fleet = Fleet::new(Duration::ZERO).await;
    let flaky = FlakyStore::new(fleet.store.clone());
    let down = flaky.switch();
    let flaky = Arc::new(flaky);
    let proxy = ProxyServer::start(fleet.config(flaky, ring(1, &[])), fleet.clock.clone()).await;
    assert_eq!(
        proxy
            .token_request("demo-client", "demo-secret", CC)
            .await
            .status(),
        200
    );

    down.set_down(true);
    // Cached keys, new keys, everything still answers.
    for scope in ["api/read", "api/write", "api/read+api/write"] {
        for _ in 0..3 {
            let body = format!("{CC}&scope={scope}");
            let (status, _, body) = answer_of(
                proxy
                    .token_request("demo-client", "demo-secret", &body)
                    .await,
            )
            .await;
            assert_eq!(status, 200, "{body}");
        }
    }
    let ready = proxy
        .http
        .get(proxy.admin_url("/readyz"))
        .send()
        .await
        .unwrap();
    assert_eq!(ready.status(), 200);
    let detail = ready.text().await.unwrap();
    assert!(detail.contains("degraded"), "{detail}");
    assert!(detail.contains("flaky"), "{detail}");
    assert!(detail.contains("breaker open"), "{detail}");
    let metrics = proxy.metrics().await;
    assert!(metrics.contains("tokencache_store_errors_total"));
    assert!(
        metrics.contains("tokencache_store_breaker_open 1"),
        "{metrics}"
    );

    // The background probe finds the store back and closes the breaker,
    // without a request having to fail first.
    down.set_down(false);
    let mut polls = 0;
    loop {
        let ready = proxy
            .http
            .get(proxy.admin_url("/readyz"))
            .send()
            .await
            .unwrap();
        if ready.text().await.unwrap() == "ready\n" {
            break;
        }
        polls += 1;
        assert!(polls < 100, "the breaker did not close within 2 s");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    fleet.clock.advance(Duration::from_secs(31));
    let (status, _, _) = answer_of(
        proxy
            .token_request(
                "demo-client",
                "demo-secret",
                &format!("{CC}&scope=api/write"),
            )
            .await,
    )
    .await;
    assert_eq!(status, 200);
    let ready = proxy
        .http
        .get(proxy.admin_url("/readyz"))
        .send()
        .await
        .unwrap();
    assert_eq!(ready.text().await.unwrap(), "ready\n");
}

#[tokio::test]
async fn one_clients_tokens_are_purged_across_the_fleet() {
    let fleet = Fleet::new(Duration::ZERO).await;
    let a = fleet.replica().await;
    let b = fleet.replica().await;
    for (id, secret) in [
        ("demo-client", "demo-secret"),
        ("other-client", "other-secret"),
    ] {
        assert_eq!(a.token_request(id, secret, CC).await.status(), 200);
        // B reads both from the store.
        let (_, cache_status, _) = answer_of(b.token_request(id, secret, CC).await).await;
        assert!(cache_status.ends_with("detail=shared"), "{cache_status}");
    }
    // Purged through B, which never fetched them itself.
    let purged: Value = b
        .http
        .delete(b.admin_url("/cache?client_id=demo-client"))
        .bearer_auth(tokencache_test_support::ADMIN_TOKEN)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(purged["purged"], 1);
    assert_eq!(
        fleet.store.raw_entries().len(),
        1,
        "only other-client's entry is left"
    );
    // A lets go of its memory copy through the purge log (and in any case
    // within the memory tier's bound).
    fleet.clock.advance(Duration::from_secs(31));
    let (_, demo, _) = answer_of(a.token_request("demo-client", "demo-secret", CC).await).await;
    assert_eq!(demo, "tokencache; fwd=miss; stored");
    let (_, other, _) = answer_of(a.token_request("other-client", "other-secret", CC).await).await;
    assert!(other.ends_with("detail=shared"), "{other}");
}

#[tokio::test]
async fn a_purge_on_one_replica_reaches_the_others_memory_tier_at_once() {
    // The real clock: purges travel on the purge log's poll, in real time.
    let idp = MockIdpServer::start(MockIdpConfig::default()).await;
    let store: Arc<dyn SharedStore> = Arc::new(InProcessSharedStore::new(Arc::new(
        tokencache_core::SystemClock,
    )));
    let a = tokencache_test_support::fleet::replica(&idp, Arc::clone(&store)).await;
    let b = tokencache_test_support::fleet::replica(&idp, store).await;
    let took = check_purges_reach_the_fleet(&a, &b, Duration::from_secs(2)).await;
    // One poll (500 ms) and a request or two: far below the memory tier's
    // 30 s, which is what the other replica would otherwise serve it for.
    for took in took {
        assert!(took < Duration::from_millis(1_500), "{took:?}");
    }
}
