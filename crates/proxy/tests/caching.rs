#![allow(clippy::unwrap_used, clippy::expect_used)]
//! End-to-end: the proxy in front of the mock IdP, over real sockets.

use std::sync::Arc;
use std::time::Duration;

use serde_json::Value;
use tokencache_mock_idp::{MockIdp, MockIdpConfig, decode_claims_unverified};
use tokencache_test_support::answers::{answer_of, metric};
use tokencache_test_support::{ManualClock, MockIdpServer, ProxyServer};

const CC: &str = "grant_type=client_credentials";

/// A mock IdP and a proxy sharing one manual clock, so JWT `exp` and the
/// proxy's idea of now agree.
async fn setup() -> (MockIdpServer, ProxyServer, ManualClock) {
    let clock = ManualClock::starting_now();
    let idp = MockIdpServer::start_with(MockIdp::with_clock(
        MockIdpConfig::default(),
        Arc::new(clock.clone()),
    ))
    .await;
    let proxy = ProxyServer::start_for(&idp, clock.clone()).await;
    (idp, proxy, clock)
}

#[tokio::test]
async fn many_sequential_hits_make_one_upstream_call() {
    let (idp, proxy, _clock) = setup().await;
    let (status, cache_status, first) = demo_token(&proxy).await;
    assert_eq!(status, 200, "{first}");
    assert_eq!(cache_status, "tokencache; fwd=miss; stored");
    for _ in 0..50 {
        let (status, cache_status, body) = demo_token(&proxy).await;
        assert_eq!(status, 200);
        assert!(
            cache_status.starts_with("tokencache; hit; ttl="),
            "{cache_status}"
        );
        assert_eq!(body["access_token"], first["access_token"]);
    }
    assert_eq!(idp.idp.token_requests(), 1);
}

#[tokio::test]
async fn expires_in_shrinks_as_the_entry_ages() {
    let (_idp, proxy, clock) = setup().await;
    let (_, _, first) = demo_token(&proxy).await;
    assert_eq!(first["expires_in"], 3600);
    clock.advance(Duration::from_secs(1000));
    let response = proxy.token_request("demo-client", "demo-secret", CC).await;
    assert_eq!(response.headers()["age"], "1000");
    assert_eq!(response.headers()["cache-control"], "no-store");
    assert_eq!(response.headers()["pragma"], "no-cache");
    let (_, cache_status, later) = answer_of(response).await;
    assert_eq!(later["expires_in"], 2600);
    assert_eq!(later["access_token"], first["access_token"]);
    assert_eq!(cache_status, "tokencache; hit; ttl=2240");
}

#[tokio::test]
async fn two_clients_never_get_each_others_token() {
    let (idp, proxy, _clock) = setup().await;
    for _ in 0..3 {
        for client in ["demo-client", "other-client"] {
            let secret = client.replace("-client", "-secret");
            let (status, _, body) = answer_of(
                proxy
                    .token_request(
                        client,
                        &secret,
                        "grant_type=client_credentials&scope=api/read",
                    )
                    .await,
            )
            .await;
            assert_eq!(status, 200);
            let claims = decode_claims_unverified(body["access_token"].as_str().unwrap()).unwrap();
            assert_eq!(claims["client_id"], client);
            assert_eq!(claims["scope"], "api/read");
        }
    }
    assert_eq!(idp.idp.token_requests_for("demo-client"), 1);
    assert_eq!(idp.idp.token_requests_for("other-client"), 1);
}

#[tokio::test]
async fn every_token_shaping_parameter_gets_its_own_token() {
    let (idp, proxy, _clock) = setup().await;
    let bodies = [
        "grant_type=client_credentials",
        "grant_type=client_credentials&scope=api/read",
        "grant_type=client_credentials&scope=api/write",
        "grant_type=client_credentials&scope=api/read+api/write",
        "grant_type=client_credentials&scope=api/read&resource=https%3A%2F%2Fapi.example",
        "grant_type=client_credentials&scope=api/read&aws_client_metadata=%7B%22tenant%22%3A%22a%22%7D",
        "grant_type=client_credentials&scope=api/read&aws_client_metadata=%7B%22tenant%22%3A%22b%22%7D",
    ];
    let mut tokens = std::collections::HashSet::new();
    for body in bodies {
        let (status, cache_status, answer) = answer_of(
            proxy
                .token_request("demo-client", "demo-secret", body)
                .await,
        )
        .await;
        assert_eq!(status, 200, "{body}: {answer}");
        assert_eq!(cache_status, "tokencache; fwd=miss; stored", "{body}");
        tokens.insert(answer["access_token"].as_str().unwrap().to_owned());
    }
    assert_eq!(tokens.len(), bodies.len());
    // The tenant-b token was issued for tenant b.
    let (_, _, answer) = answer_of(
        proxy
            .token_request("demo-client", "demo-secret", bodies[6])
            .await,
    )
    .await;
    let claims = decode_claims_unverified(answer["access_token"].as_str().unwrap()).unwrap();
    assert_eq!(claims["client_metadata"], r#"{"tenant":"b"}"#);
    assert_eq!(idp.idp.token_requests(), bodies.len() as u64);
}

#[tokio::test]
async fn scope_order_and_placement_share_one_token() {
    let (idp, proxy, _clock) = setup().await;
    let (_, _, first) = answer_of(
        proxy
            .token_request(
                "demo-client",
                "demo-secret",
                "grant_type=client_credentials&scope=api/write+api/read",
            )
            .await,
    )
    .await;
    let (_, cache_status, reordered) = answer_of(
        proxy
            .token_request(
                "demo-client",
                "demo-secret",
                "grant_type=client_credentials&scope=api/read%20api/write",
            )
            .await,
    )
    .await;
    assert!(cache_status.contains("hit"), "{cache_status}");
    assert_eq!(first["access_token"], reordered["access_token"]);
    // Scope in the query string, credentials in the body.
    let response = proxy
        .http
        .post(format!(
            "{}?scope=api%2Fread+api%2Fwrite",
            proxy.token_url()
        ))
        .header("content-type", "application/x-www-form-urlencoded")
        .body("grant_type=client_credentials&client_id=demo-client&client_secret=demo-secret")
        .send()
        .await
        .unwrap();
    let (status, cache_status, in_query) = answer_of(response).await;
    assert_eq!(status, 200);
    assert!(cache_status.contains("hit"), "{cache_status}");
    assert_eq!(first["access_token"], in_query["access_token"]);
    assert_eq!(idp.idp.token_requests(), 1);
}

#[tokio::test]
async fn a_rotated_secret_is_a_different_key() {
    let clock = ManualClock::starting_now();
    let mut config = MockIdpConfig::default();
    let idp =
        MockIdpServer::start_with(MockIdp::with_clock(config.clone(), Arc::new(clock.clone())))
            .await;
    let proxy = ProxyServer::start_for(&idp, clock.clone()).await;
    let (status, _, _) = demo_token(&proxy).await;
    assert_eq!(status, 200);
    // The IdP now knows the client by a new secret; the old one fails there
    // but is still cached here, the new one is fetched at once.
    config.clients[0].secret = "rotated-secret".into();
    let rotated =
        MockIdpServer::start_with(MockIdp::with_clock(config, Arc::new(clock.clone()))).await;
    let proxy = ProxyServer::start_for(&rotated, clock.clone()).await;
    let (status, _, body) = demo_token(&proxy).await;
    assert_eq!(
        (status, body["error"].as_str()),
        (400, Some("invalid_client"))
    );
    let (status, cache_status, _) = answer_of(
        proxy
            .token_request("demo-client", "rotated-secret", CC)
            .await,
    )
    .await;
    assert_eq!(status, 200);
    assert_eq!(cache_status, "tokencache; fwd=miss; stored");
}

#[tokio::test]
async fn concurrent_cold_requests_make_one_upstream_request() {
    let (idp, proxy, _clock) = setup().await;
    // Latency keeps the fetch open while all 200 callers arrive.
    idp.idp.set_latency(Duration::from_millis(300));
    let proxy = Arc::new(proxy);
    let callers: Vec<_> = (0..200)
        .map(|_| {
            let proxy = Arc::clone(&proxy);
            tokio::spawn(async move { demo_token(&proxy).await })
        })
        .collect();
    let mut tokens = std::collections::HashSet::new();
    let mut statuses = std::collections::HashMap::<String, usize>::new();
    for caller in callers {
        let (status, cache_status, body) = caller.await.unwrap();
        assert_eq!(status, 200, "{body}");
        tokens.insert(body["access_token"].as_str().unwrap().to_owned());
        *statuses.entry(cache_status).or_default() += 1;
    }
    assert_eq!(idp.idp.token_requests(), 1, "cache statuses: {statuses:?}");
    assert_eq!(tokens.len(), 1);
    assert_eq!(
        statuses.get("tokencache; fwd=miss; stored"),
        Some(&1),
        "{statuses:?}"
    );
    let metrics = proxy.metrics().await;
    assert_eq!(
        metric(
            &metrics,
            r#"tokencache_upstream_requests_total{status="2xx"}"#
        ),
        Some(1),
        "{metrics}"
    );
}

#[tokio::test]
async fn aging_tokens_are_refreshed_in_the_background_once() {
    let (idp, proxy, clock) = setup().await;
    let (_, _, first) = demo_token(&proxy).await;
    // Past 75 % of the hour: aging. The IdP is slow, so the refresh is still
    // running while the callers below are answered.
    idp.idp.set_latency(Duration::from_millis(500));
    clock.advance(Duration::from_secs(2800));
    for _ in 0..20 {
        let (status, cache_status, body) = demo_token(&proxy).await;
        assert_eq!(status, 200);
        assert!(
            cache_status.ends_with("detail=refreshing"),
            "{cache_status}"
        );
        assert_eq!(body["access_token"], first["access_token"]);
        assert_eq!(body["expires_in"], 800);
    }
    // Exactly one refresh went upstream; wait (bounded) for it to land.
    let refreshed = wait_for_token_change(&proxy, &first).await;
    assert_eq!(idp.idp.token_requests(), 2);
    assert_eq!(refreshed["expires_in"], 3600);
    let metrics = proxy.metrics().await;
    assert_eq!(
        metric(&metrics, r#"tokencache_refreshes_total{result="ok"}"#),
        Some(1),
        "{metrics}"
    );
    let stale = metric(&metrics, r#"tokencache_requests_total{outcome="stale"}"#);
    assert!(stale.is_some_and(|stale| stale >= 20), "{metrics}");
}

/// Polls (bounded) until the proxy answers with a token other than `old`.
async fn wait_for_token_change(proxy: &ProxyServer, old: &Value) -> Value {
    for _ in 0..100 {
        let (_, _, body) = demo_token(proxy).await;
        if body["access_token"] != old["access_token"] {
            return body;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("the token was not refreshed within 5 s");
}

#[tokio::test]
async fn expired_tokens_are_never_served() {
    let (idp, proxy, clock) = setup().await;
    let (_, _, first) = demo_token(&proxy).await;
    // Past 90 % of the hour: expired for the cache, though the token has
    // six minutes left; the caller waits for a new one.
    clock.advance(Duration::from_secs(3300));
    let (status, cache_status, body) = demo_token(&proxy).await;
    assert_eq!(status, 200);
    assert_eq!(cache_status, "tokencache; fwd=miss; stored");
    assert_ne!(body["access_token"], first["access_token"]);
    assert_eq!(body["expires_in"], 3600);
    assert_eq!(idp.idp.token_requests(), 2);
}

#[tokio::test]
async fn short_lived_tokens_are_refreshed_ahead_and_callers_never_wait() {
    // A 4-second token is fresh for 3 s and aging until 3.6 s. A caller
    // asks every 100 ms of manual time for 6.5 s: two lifetimes' worth.
    let (idp, proxy, clock) = setup().await;
    idp.idp.set_token_lifetime(Duration::from_secs(4));
    let (status, cache_status, mut current) = demo_token(&proxy).await;
    assert_eq!(status, 200, "{current}");
    assert_eq!(cache_status, "tokencache; fwd=miss; stored");
    let mut refreshes = 0;
    for step in 1..=65 {
        clock.advance(Duration::from_millis(100));
        let (status, cache_status, body) = demo_token(&proxy).await;
        assert_eq!(status, 200, "step {step}: {body}");
        // Every answer comes from the cache, the one that starts a refresh
        // included: it carries the token already held, not the one being
        // fetched, so no caller waited for the IdP.
        assert!(
            cache_status.starts_with("tokencache; hit;"),
            "step {step}: {cache_status}"
        );
        assert_eq!(body["access_token"], current["access_token"], "step {step}");
        if cache_status.ends_with("detail=refreshing") {
            refreshes += 1;
            current = wait_for_refresh(&proxy, refreshes, &current).await;
        }
    }
    // Entering the aging window at 3 s and 6 s: one refresh each, and
    // nothing else went upstream.
    assert_eq!(refreshes, 2);
    assert_eq!(idp.idp.token_requests(), 3);
}

/// Waits (bounded, in real time) until background refresh number `n` has
/// stored its token, and returns the answer that serves it.
///
/// The manual clock stands still meanwhile, so however slow the machine,
/// the entry cannot leave its aging window before the refresh lands: the
/// test checks the order of events, not their speed.
async fn wait_for_refresh(proxy: &ProxyServer, n: u64, old: &Value) -> Value {
    let series = r#"tokencache_refreshes_total{result="ok"}"#;
    let mut polls = 0;
    while metric(&proxy.metrics().await, series) != Some(n) {
        polls += 1;
        assert!(polls < 1000, "refresh {n} did not land within 10 s");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    // The new token replaces the old one: a hit, with its whole lifetime
    // ahead (the clock has not moved since it was issued).
    let (status, cache_status, body) = demo_token(proxy).await;
    assert_eq!(status, 200, "{body}");
    assert!(
        cache_status.starts_with("tokencache; hit;") && !cache_status.contains("refreshing"),
        "after refresh {n}: {cache_status}"
    );
    assert_ne!(body["access_token"], old["access_token"], "refresh {n}");
    assert_eq!(body["expires_in"], 4, "refresh {n}: {body}");
    body
}

/// The demo client's plain `client_credentials` request, answered.
async fn demo_token(proxy: &ProxyServer) -> (u16, String, Value) {
    answer_of(proxy.token_request("demo-client", "demo-secret", CC).await).await
}
