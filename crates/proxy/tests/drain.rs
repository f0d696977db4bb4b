//! End-to-end: a drain seen from the admin listener. From the first moment
//! of the shutdown `/readyz` answers 503, and it keeps answering until the
//! token listener has drained, so a load balancer learns of the drain from
//! the probe rather than from refused connections.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::sync::Arc;
use std::time::Duration;

use tokencache_mock_idp::{MockIdp, MockIdpConfig};
use tokencache_test_support::{ManualClock, MockIdpServer, ProxyServer};
use tokio::time::Instant;

const CC: &str = "grant_type=client_credentials";

/// What one `/readyz` poll saw, and when.
#[derive(Debug, Clone, Copy)]
struct Probe {
    at: Instant,
    /// `None` when the admin listener refused or dropped the connection.
    status: Option<u16>,
}

#[tokio::test]
async fn readyz_answers_503_through_the_drain_until_exit() {
    let clock = ManualClock::starting_now();
    let latency = Duration::from_millis(800);
    let idp = MockIdpServer::start_with(MockIdp::with_clock(
        MockIdpConfig {
            latency,
            ..MockIdpConfig::default()
        },
        Arc::new(clock.clone()),
    ))
    .await;
    let proxy =
        ProxyServer::start_with_grace(ProxyServer::config_for(&idp), clock, Duration::from_secs(5))
            .await;
    let readyz = proxy.admin_url("/readyz");
    let token_url = proxy.token_url();

    // Requests in flight (three keys, three upstream requests held by the
    // IdP) when the shutdown starts.
    let in_flight: Vec<_> = ["api/read", "api/write", "api/read+api/write"]
        .into_iter()
        .map(|scope| {
            let (http, url) = (proxy.http.clone(), token_url.clone());
            tokio::spawn(async move {
                let answer = http
                    .post(url)
                    .basic_auth("demo-client", Some("demo-secret"))
                    .header("content-type", "application/x-www-form-urlencoded")
                    .body(format!("{CC}&scope={scope}"))
                    .send()
                    .await
                    .unwrap();
                (answer.status().as_u16(), Instant::now())
            })
        })
        .collect();
    let mut polls = 0;
    while idp.idp.token_requests() < 3 {
        polls += 1;
        assert!(polls < 500, "the IdP never saw the three requests");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }

    // A load balancer's probe, every 10 ms, on its own connection pool,
    // until the admin listener is gone (bounded: 10 s).
    let poller = tokio::spawn(async move {
        let http = reqwest::Client::builder()
            .timeout(Duration::from_secs(1))
            .build()
            .unwrap();
        let mut probes = Vec::new();
        for _ in 0..1000 {
            let status = http
                .get(&readyz)
                .send()
                .await
                .ok()
                .map(|answer| answer.status().as_u16());
            probes.push(Probe {
                at: Instant::now(),
                status,
            });
            if status.is_none() {
                break;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        probes
    });
    tokio::time::sleep(Duration::from_millis(50)).await;
    let shutdown_started = Instant::now();
    proxy.shutdown().await.unwrap();
    let exited = Instant::now();

    let mut answered = Vec::new();
    for request in in_flight {
        let (status, at) = request.await.unwrap();
        assert_eq!(status, 200, "a request in flight was drained, not dropped");
        answered.push(at);
    }
    let probes = poller.await.unwrap();
    assert!(
        probes
            .iter()
            .any(|p| p.at < shutdown_started && p.status == Some(200)),
        "ready before the shutdown: {probes:?}"
    );
    let first_503 = probes
        .iter()
        .find(|p| p.status == Some(503))
        .unwrap_or_else(|| panic!("/readyz never answered 503: {probes:?}"));
    assert!(
        first_503.at < exited,
        "503 seen before the process exited: {probes:?}"
    );
    let last_answer = answered.iter().max().copied().unwrap();
    assert!(
        first_503.at < last_answer,
        "503 seen while requests were still in flight: {probes:?}"
    );
    // From the first 503 on, every answer that came was a 503 (never ready
    // again), and the listener went away only at the end.
    let after: Vec<_> = probes.iter().filter(|p| p.at >= first_503.at).collect();
    assert!(
        after
            .iter()
            .all(|p| p.status == Some(503) || p.status.is_none()),
        "{after:?}"
    );
    assert!(
        probes.iter().filter(|p| p.status == Some(503)).count() >= 5,
        "the admin listener kept answering through the drain: {probes:?}"
    );
}
