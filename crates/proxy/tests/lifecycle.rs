//! End-to-end: callers that go away, graceful shutdown, the admin listener.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::sync::Arc;
use std::time::Duration;

use tokencache_mock_idp::{MockIdp, MockIdpConfig};
use tokencache_test_support::{ManualClock, MockIdpServer, ProxyServer};

const CC: &str = "grant_type=client_credentials";

async fn setup(latency: Duration, grace: Duration) -> (MockIdpServer, ProxyServer) {
    let clock = ManualClock::starting_now();
    let idp = MockIdpServer::start_with(MockIdp::with_clock(
        MockIdpConfig {
            latency,
            ..MockIdpConfig::default()
        },
        Arc::new(clock.clone()),
    ))
    .await;
    let config = ProxyServer::config_for(&idp);
    let proxy = ProxyServer::start_with_grace(config, clock, grace).await;
    (idp, proxy)
}

#[tokio::test]
async fn a_caller_that_goes_away_does_not_cancel_the_fetch_for_others() {
    let (idp, proxy) = setup(Duration::from_millis(400), Duration::from_secs(1)).await;
    let proxy = Arc::new(proxy);
    // The first caller gives up after 100 ms, mid-fetch.
    let impatient = tokio::time::timeout(
        Duration::from_millis(100),
        proxy.token_request("demo-client", "demo-secret", CC),
    )
    .await;
    assert!(impatient.is_err(), "the fetch should still be running");
    // The next caller joins the fetch the first one started.
    let answer = proxy.token_request("demo-client", "demo-secret", CC).await;
    assert_eq!(answer.status(), 200);
    assert_eq!(
        answer.headers()["cache-status"],
        "tokencache; fwd=miss; collapsed"
    );
    assert_eq!(idp.idp.token_requests(), 1);
}

#[tokio::test]
async fn shutdown_lets_requests_in_progress_finish() {
    let (idp, proxy) = setup(Duration::from_millis(500), Duration::from_secs(5)).await;
    let http = proxy.http.clone();
    let url = proxy.token_url();
    let in_flight = tokio::spawn(async move {
        http.post(url)
            .basic_auth("demo-client", Some("demo-secret"))
            .header("content-type", "application/x-www-form-urlencoded")
            .body(CC)
            .send()
            .await
    });
    // Shut down once the request has reached the IdP.
    wait_for_token_requests(&idp, 1).await;
    let addr = proxy.addr;
    proxy.shutdown().await.unwrap();
    let answer = in_flight.await.unwrap().unwrap();
    assert_eq!(answer.status(), 200);
    // New connections are refused once the server has stopped.
    assert!(tokio::net::TcpStream::connect(addr).await.is_err());
}

#[tokio::test]
async fn shutdown_gives_up_after_the_grace_period() {
    let grace = Duration::from_millis(300);
    // How late past the grace period the server may stop: time to close the
    // connections left and end its tasks, with room for a loaded machine,
    // yet far below the IdP's 30 s, which a drain that waited for the
    // request would need.
    let margin = Duration::from_secs(2);
    let (idp, proxy) = setup(Duration::from_secs(30), grace).await;
    let http = proxy.http.clone();
    let url = proxy.token_url();
    let stuck = tokio::spawn(async move {
        http.post(url)
            .basic_auth("demo-client", Some("demo-secret"))
            .header("content-type", "application/x-www-form-urlencoded")
            .body(CC)
            .send()
            .await
    });
    // Shut down only once the request is in flight, held by the IdP: a
    // drain with nothing to wait for would end at once and prove nothing.
    wait_for_token_requests(&idp, 1).await;
    let started = tokio::time::Instant::now();
    tokio::time::timeout(grace + margin, proxy.shutdown())
        .await
        .expect("shutdown is bounded by the grace period")
        .unwrap();
    let took = started.elapsed();
    assert!(
        took >= grace,
        "stopped after {took:?}, before the {grace:?} grace period was over"
    );
    // The caller hears the end at once and gets no token: the IdP was still
    // holding its request (whether the proxy closes the connection or
    // answers an error is not the point here).
    let cut_off = tokio::time::timeout(margin, stuck)
        .await
        .expect("the caller is let go when the server stops")
        .unwrap();
    assert!(
        !matches!(&cut_off, Ok(answer) if answer.status().is_success()),
        "{cut_off:?}"
    );
    assert_eq!(idp.idp.stats().tokens_issued, 0);
}

/// Waits (bounded) until the IdP has received `n` token requests.
async fn wait_for_token_requests(idp: &MockIdpServer, n: u64) {
    let mut polls = 0;
    while idp.idp.token_requests() < n {
        polls += 1;
        assert!(
            polls < 1000,
            "the IdP had not seen {n} token requests in 10 s"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert_eq!(idp.idp.token_requests(), n);
}

#[tokio::test]
async fn admin_listener_reports_health_readiness_metrics_and_purges() {
    let (idp, proxy) = setup(Duration::ZERO, Duration::from_secs(1)).await;
    let get = |path: &str| proxy.http.get(proxy.admin_url(path)).send();
    assert_eq!(get("/healthz").await.unwrap().status(), 200);
    assert_eq!(get("/readyz").await.unwrap().status(), 200);
    assert_eq!(
        proxy
            .token_request("demo-client", "demo-secret", CC)
            .await
            .status(),
        200
    );
    let metrics = get("/metrics").await.unwrap();
    assert!(
        metrics.headers()["content-type"]
            .to_str()
            .unwrap()
            .starts_with("text/plain")
    );
    let text = metrics.text().await.unwrap();
    for series in [
        r#"tokencache_requests_total{outcome="miss",route="/oauth2/token"} 1"#,
        r#"tokencache_upstream_requests_total{status="2xx",route="/oauth2/token"} 1"#,
        "tokencache_cache_entries 1",
        "tokencache_upstream_request_duration_seconds_bucket",
        "# HELP tokencache_requests_total",
    ] {
        assert!(text.contains(series), "no {series} in\n{text}");
    }
    assert!(!text.contains("demo-secret"));

    let purged: serde_json::Value = proxy
        .http
        .post(proxy.admin_url("/purge"))
        .bearer_auth(tokencache_test_support::ADMIN_TOKEN)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(purged["purged"], 1);
    assert_eq!(proxy.proxy.cached_entries(), 0);
    let after = proxy.token_request("demo-client", "demo-secret", CC).await;
    assert_eq!(
        after.headers()["cache-status"],
        "tokencache; fwd=miss; stored"
    );
    assert_eq!(idp.idp.token_requests(), 2);

    proxy.proxy.set_ready(false);
    assert_eq!(get("/readyz").await.unwrap().status(), 503);
}

#[tokio::test]
async fn the_admin_api_needs_its_token() {
    let (_idp, proxy) = setup(Duration::ZERO, Duration::from_secs(1)).await;
    assert_eq!(
        proxy
            .token_request("demo-client", "demo-secret", CC)
            .await
            .status(),
        200
    );
    for token in [None, Some("wrong"), Some("test-admin-tokenX")] {
        let mut request = proxy.http.delete(proxy.admin_url("/cache"));
        if let Some(token) = token {
            request = request.bearer_auth(token);
        }
        let response = request.send().await.unwrap();
        assert_eq!(response.status(), 401, "{token:?}");
        assert!(response.headers().contains_key("www-authenticate"));
        let body: serde_json::Value = response.json().await.unwrap();
        assert_eq!(body["error"], "invalid_token");
    }
    let post = proxy
        .http
        .post(proxy.admin_url("/purge"))
        .send()
        .await
        .unwrap();
    assert_eq!(post.status(), 401);
    assert_eq!(
        proxy.proxy.cached_entries(),
        1,
        "nothing purged without the token"
    );
    // Metrics and probes stay open.
    for path in ["/metrics", "/healthz", "/readyz"] {
        let response = proxy.http.get(proxy.admin_url(path)).send().await.unwrap();
        assert_eq!(response.status(), 200, "{path}");
    }
}

#[tokio::test]
async fn without_a_configured_token_the_admin_api_is_closed() {
    let clock = ManualClock::starting_now();
    let idp = MockIdpServer::start(MockIdpConfig::default()).await;
    let mut config = ProxyServer::config_for(&idp);
    config.admin_token = None;
    let proxy = ProxyServer::start(config, clock).await;
    let response = proxy
        .http
        .delete(proxy.admin_url("/cache"))
        .bearer_auth(tokencache_test_support::ADMIN_TOKEN)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 401);
    let body: serde_json::Value = response.json().await.unwrap();
    assert!(
        body["error_description"]
            .as_str()
            .unwrap()
            .contains("disabled")
    );
}

#[tokio::test]
async fn one_clients_tokens_can_be_dropped_alone() {
    let (idp, proxy) = setup(Duration::ZERO, Duration::from_secs(1)).await;
    for scope in ["api/read", "api/write"] {
        let body = format!("{CC}&scope={scope}");
        assert_eq!(
            proxy
                .token_request("demo-client", "demo-secret", &body)
                .await
                .status(),
            200
        );
        assert_eq!(
            proxy
                .token_request("other-client", "other-secret", &body)
                .await
                .status(),
            200
        );
    }
    assert_eq!(proxy.proxy.cached_entries(), 4);
    let purged: serde_json::Value = proxy
        .http
        .delete(proxy.admin_url("/cache?client_id=demo-client"))
        .bearer_auth(tokencache_test_support::ADMIN_TOKEN)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(purged["purged"], 2);
    assert_eq!(proxy.proxy.cached_entries(), 2);
    // The other client's tokens are still hits; demo-client fetches anew.
    let other = proxy
        .token_request(
            "other-client",
            "other-secret",
            &format!("{CC}&scope=api/read"),
        )
        .await;
    assert!(
        other.headers()["cache-status"]
            .to_str()
            .unwrap()
            .contains("hit")
    );
    let demo = proxy
        .token_request(
            "demo-client",
            "demo-secret",
            &format!("{CC}&scope=api/read"),
        )
        .await;
    assert_eq!(
        demo.headers()["cache-status"],
        "tokencache; fwd=miss; stored"
    );
    assert_eq!(idp.idp.token_requests(), 5);
    // DELETE /cache drops the rest.
    let all = proxy
        .http
        .delete(proxy.admin_url("/cache"))
        .bearer_auth(tokencache_test_support::ADMIN_TOKEN)
        .send()
        .await
        .unwrap();
    assert_eq!(all.status(), 200);
    assert_eq!(proxy.proxy.cached_entries(), 0);
}

#[tokio::test]
async fn the_axum_router_serves_the_same_endpoints_without_a_socket() {
    use tower::ServiceExt as _;

    let (idp, proxy) = setup(Duration::ZERO, Duration::from_secs(1)).await;
    let router = proxy.proxy.router();
    let post = || {
        http::Request::post("/oauth2/token")
            .header("authorization", "Basic ZGVtby1jbGllbnQ6ZGVtby1zZWNyZXQ=")
            .header("content-type", "application/x-www-form-urlencoded")
            .body(axum::body::Body::from(CC))
            .unwrap()
    };
    let first = router.clone().oneshot(post()).await.unwrap();
    assert_eq!(first.status(), 200);
    assert_eq!(
        first.headers()["cache-status"],
        "tokencache; fwd=miss; stored"
    );
    let second = router.clone().oneshot(post()).await.unwrap();
    assert!(
        second.headers()["cache-status"]
            .to_str()
            .unwrap()
            .starts_with("tokencache; hit")
    );
    let get = http::Request::get("/oauth2/token")
        .body(axum::body::Body::empty())
        .unwrap();
    let wrong_method = router.clone().oneshot(get).await.unwrap();
    assert_eq!(wrong_method.status(), 405);
    assert_eq!(wrong_method.headers()["allow"], "POST");
    let nowhere = http::Request::post("/elsewhere")
        .body(axum::body::Body::empty())
        .unwrap();
    assert_eq!(router.oneshot(nowhere).await.unwrap().status(), 404);
    assert_eq!(idp.idp.token_requests(), 1);
}
