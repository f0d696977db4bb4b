//! End-to-end: the proxy against a failing, throttling identity provider
//! (the mock IdP's fault modes): retries, the request budget,
//! stale-if-error, the negative cache and the circuit breaker.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::sync::Arc;
use std::time::Duration;

use tokencache_core::{Backoff, SystemClock};
use tokencache_mock_idp::{ControlUpdate, MockIdp, MockIdpConfig, ThrottleStyle};
use tokencache_proxy::{BreakerConfig, BudgetConfig, ProxyConfig};
use tokencache_test_support::answers::answer_of;
use tokencache_test_support::{ManualClock, MockIdpServer, ProxyServer};

const CC: &str = "grant_type=client_credentials";

/// Quick retries, no breaker: the tests below look at one thing at a time.
fn fast_config(idp: &MockIdpServer) -> ProxyConfig {
    let mut config = ProxyServer::config_for(idp);
    config.resilience.backoff =
        Backoff::new(Duration::from_millis(10), Duration::from_millis(50), 3);
    config.resilience.breaker.failure_threshold = 0;
    config.upstream.request_timeout = Duration::from_millis(500);
    config.load_deadline = Duration::from_secs(3);
    config
}

#[tokio::test]
async fn a_cold_start_of_500_keys_queues_for_the_budget_instead_of_tripping_the_quota() {
    let idp = MockIdpServer::start(MockIdpConfig::default()).await;
    idp.idp.apply(&ControlUpdate {
        rate_limit_per_sec: Some(50),
        ..ControlUpdate::default()
    });
    let mut config = ProxyServer::config_for(&idp);
    config.resilience.budget = BudgetConfig {
        rate_per_sec: 40.0,
        burst: 5,
    };
    config.load_deadline = Duration::from_secs(40);
    let proxy = Arc::new(ProxyServer::start(config, SystemClock).await);
    let callers: Vec<_> = (0..500)
        .map(|n| {
            let proxy = Arc::clone(&proxy);
            tokio::spawn(async move {
                let body = format!("{CC}&resource=https%3A%2F%2Fapi.example%2F{n}");
                answer_of(
                    proxy
                        .token_request("demo-client", "demo-secret", &body)
                        .await,
                )
                .await
            })
        })
        .collect();
    for caller in callers {
        let (status, _, body) = caller.await.unwrap();
        assert_eq!(status, 200, "{body}");
    }
    let stats = idp.idp.stats();
    assert_eq!(stats.throttled, 0, "the IdP answered 429: {stats:?}");
    assert_eq!(stats.token_requests, 500);
    let metrics = proxy.metrics().await;
    assert!(
        metrics.contains("tokencache_budget_waits_total"),
        "{metrics}"
    );
}

/// Each fault mode, while a token is cached and aging: callers keep getting
/// the cached token until `expires_at − min_remaining`, then a clear OAuth
/// error; after recovery the next request gets a fresh token.
async fn aging_token_outlives_an_outage(fault: ControlUpdate, expected_final_status: &[u16]) {
    aging_token_outlives(fault, expected_final_status, false).await;
}

/// With `spend_limit`, the IdP's rate limit (which reads the manual clock,
/// so it refills only when the test moves time) is spent by a direct
/// request after each move, so every request through the proxy is throttled.
async fn aging_token_outlives(
    fault: ControlUpdate,
    expected_final_status: &[u16],
    spend_limit: bool,
) {
    let clock = ManualClock::starting_now();
    let idp = MockIdpServer::start_with(MockIdp::with_clock(
        MockIdpConfig::default(),
        Arc::new(clock.clone()),
    ))
    .await;
    let proxy = ProxyServer::start(fast_config(&idp), clock.clone()).await;
    let (status, _, first) =
        answer_of(proxy.token_request("demo-client", "demo-secret", CC).await).await;
    assert_eq!(status, 200);

    idp.idp.apply(&fault);
    clock.advance(Duration::from_secs(2800)); // aging: 75 % < 2800/3600 < 90 %
    let direct = if spend_limit {
        spend_rate_limit(&idp).await
    } else {
        0
    };
    for _ in 0..30 {
        let (status, cache_status, body) =
            answer_of(proxy.token_request("demo-client", "demo-secret", CC).await).await;
        assert_eq!(status, 200, "{fault:?}: {body}");
        assert_eq!(body["access_token"], first["access_token"]);
        assert!(cache_status.contains("hit"), "{cache_status}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    // Refreshes were backed off: a handful of attempts, not one per request.
    let attempts = idp.idp.token_requests() - 1 - direct;
    assert!(
        (1..=8).contains(&attempts),
        "{fault:?}: {attempts} upstream requests"
    );

    clock.advance(Duration::from_secs(450)); // 3250 s: past 90 % of the hour
    if spend_limit {
        spend_rate_limit(&idp).await;
    }
    let (status, _, body) =
        answer_of(proxy.token_request("demo-client", "demo-secret", CC).await).await;
    assert!(
        expected_final_status.contains(&status),
        "{fault:?}: {status} {body}"
    );
    assert!(
        body["error"].is_string(),
        "{fault:?}: not an OAuth error: {body}"
    );
    assert_ne!(body.get("access_token"), first.get("access_token"));

    idp.idp.apply(&ControlUpdate::healthy());
    let (status, cache_status, fresh) =
        answer_of(proxy.token_request("demo-client", "demo-secret", CC).await).await;
    assert_eq!(status, 200, "{fault:?}: {fresh}");
    assert_eq!(cache_status, "tokencache; fwd=miss; stored");
    assert_ne!(fresh["access_token"], first["access_token"]);
}

/// Sends token requests straight to the IdP until one is throttled; how
/// many were sent.
async fn spend_rate_limit(idp: &MockIdpServer) -> u64 {
    let http = reqwest::Client::new();
    for sent in 1..=10 {
        let status = http
            .post(idp.token_url())
            .basic_auth("other-client", Some("other-secret"))
            .form(&[("grant_type", "client_credentials")])
            .send()
            .await
            .unwrap()
            .status();
        if status != 200 {
            return sent;
        }
    }
    panic!("the IdP's rate limit never throttled");
}

#[tokio::test]
async fn stale_if_error_through_throttling() {
    let throttle = ControlUpdate {
        rate_limit_per_sec: Some(1),
        throttle_style: Some(ThrottleStyle::Http429),
        ..ControlUpdate::default()
    };
    aging_token_outlives(throttle, &[429], true).await;
}

#[tokio::test]
async fn stale_if_error_through_cognito_style_throttling() {
    let throttle = ControlUpdate {
        rate_limit_per_sec: Some(1),
        throttle_style: Some(ThrottleStyle::Cognito400),
        ..ControlUpdate::default()
    };
    aging_token_outlives(throttle, &[400], true).await;
}

#[tokio::test]
async fn stale_if_error_through_server_errors() {
    aging_token_outlives_an_outage(
        ControlUpdate {
            error_rate: Some(1.0),
            ..ControlUpdate::default()
        },
        &[500, 503],
    )
    .await;
}

#[tokio::test]
async fn stale_if_error_through_connection_resets() {
    aging_token_outlives_an_outage(
        ControlUpdate {
            reset_rate: Some(1.0),
            ..ControlUpdate::default()
        },
        &[502],
    )
    .await;
}

#[tokio::test]
async fn stale_if_error_through_garbage_answers() {
    aging_token_outlives_an_outage(
        ControlUpdate {
            garbage_rate: Some(1.0),
            ..ControlUpdate::default()
        },
        &[502],
    )
    .await;
}

#[tokio::test]
async fn stale_if_error_through_hanging_answers() {
    aging_token_outlives_an_outage(
        ControlUpdate {
            hang_rate: Some(1.0),
            ..ControlUpdate::default()
        },
        &[504],
    )
    .await;
}

#[tokio::test]
async fn a_wrong_secret_hammered_reaches_the_idp_a_handful_of_times() {
    let idp = MockIdpServer::start(MockIdpConfig::default()).await;
    let proxy = Arc::new(ProxyServer::start_for(&idp, SystemClock).await);
    let deadline = tokio::time::Instant::now() + Duration::from_secs(2);
    // 20 callers, 50 requests each, within 2 s.
    let callers: Vec<_> = (0..20)
        .map(|_| {
            let proxy = Arc::clone(&proxy);
            tokio::spawn(async move {
                let mut refused = 0;
                for _ in 0..50 {
                    if tokio::time::Instant::now() >= deadline {
                        break;
                    }
                    let (status, _, body) =
                        answer_of(proxy.token_request("demo-client", "wrong", CC).await).await;
                    assert_eq!(
                        (status, body["error"].as_str()),
                        (400, Some("invalid_client"))
                    );
                    refused += 1;
                }
                refused
            })
        })
        .collect();
    let mut refused = 0;
    for caller in callers {
        refused += caller.await.unwrap();
    }
    assert!(refused >= 200, "only {refused} requests in 2 s");
    let upstream = idp.idp.token_requests_for("demo-client");
    assert!(upstream <= 3, "{upstream} of {refused} reached the IdP");
    let metrics = proxy.metrics().await;
    assert!(
        metrics.contains("tokencache_negative_cache_hits_total"),
        "{metrics}"
    );
    // The right (or a rotated) secret is another key: it works at once.
    let (status, cache_status, _) =
        answer_of(proxy.token_request("demo-client", "demo-secret", CC).await).await;
    assert_eq!(
        (status, cache_status.as_str()),
        (200, "tokencache; fwd=miss; stored")
    );
}

#[tokio::test]
async fn negative_cache_answers_say_so_and_expire() {
    let clock = ManualClock::starting_now();
    let idp = MockIdpServer::start(MockIdpConfig::default()).await;
    let proxy = ProxyServer::start_for(&idp, clock.clone()).await;
    let (_, first, _) = answer_of(proxy.token_request("demo-client", "wrong", CC).await).await;
    assert!(first.contains("fwd=miss"), "{first}");
    let (status, second, body) =
        answer_of(proxy.token_request("demo-client", "wrong", CC).await).await;
    assert_eq!(
        (status, second.as_str()),
        (400, "tokencache; hit; detail=negative")
    );
    assert_eq!(body["error"], "invalid_client");
    assert_eq!(idp.idp.token_requests(), 1);
    clock.advance(Duration::from_secs(5));
    let (_, third, _) = answer_of(proxy.token_request("demo-client", "wrong", CC).await).await;
    assert!(third.contains("fwd=miss"), "{third}");
    assert_eq!(idp.idp.token_requests(), 2);
}

#[tokio::test]
async fn throttled_loads_are_retried_after_retry_after() {
    let idp = MockIdpServer::start(MockIdpConfig::default()).await;
    idp.idp.apply(&ControlUpdate {
        rate_limit_per_sec: Some(1),
        ..ControlUpdate::default()
    });
    let proxy = ProxyServer::start_for(&idp, SystemClock).await;
    // The first key spends the IdP's one request a second; the second key
    // is throttled with Retry-After: 1, waits, and succeeds.
    let (status, _, _) = answer_of(
        proxy
            .token_request(
                "demo-client",
                "demo-secret",
                &format!("{CC}&scope=api/read"),
            )
            .await,
    )
    .await;
    assert_eq!(status, 200);
    let (status, cache_status, body) = answer_of(
        proxy
            .token_request(
                "demo-client",
                "demo-secret",
                &format!("{CC}&scope=api/write"),
            )
            .await,
    )
    .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(cache_status, "tokencache; fwd=miss; stored");
    assert!(idp.idp.stats().throttled >= 1);
    let metrics = proxy.metrics().await;
    assert!(
        metrics.contains(r#"tokencache_upstream_retries_total{reason="answer","#),
        "{metrics}"
    );
    let throttled = tokencache_test_support::answers::metric(
        &metrics,
        r#"tokencache_upstream_throttled_total{route="/oauth2/token",group="127.0.0.1"}"#,
    );
    assert!(throttled >= Some(1), "{metrics}");
}

#[tokio::test]
async fn the_breaker_fails_misses_fast_while_hits_are_served_then_recovers() {
    let idp = MockIdpServer::start(MockIdpConfig::default()).await;
    let mut config = fast_config(&idp);
    config.resilience.backoff =
        Backoff::new(Duration::from_millis(10), Duration::from_millis(10), 1);
    config.resilience.breaker = BreakerConfig {
        failure_threshold: 3,
        cool_down: Duration::from_millis(500),
    };
    let proxy = ProxyServer::start(config, SystemClock).await;
    let scoped = |scope: &str| format!("{CC}&scope={scope}");
    let (status, _, cached) = answer_of(
        proxy
            .token_request("demo-client", "demo-secret", &scoped("api/read"))
            .await,
    )
    .await;
    assert_eq!(status, 200);

    idp.idp.apply(&ControlUpdate {
        error_rate: Some(1.0),
        ..ControlUpdate::default()
    });
    for n in 0..3 {
        let (status, _, _) = answer_of(
            proxy
                .token_request(
                    "other-client",
                    "other-secret",
                    &scoped(&format!("api/read&resource=r{n}")),
                )
                .await,
        )
        .await;
        assert!(status >= 500, "{status}");
    }
    let before = idp.idp.token_requests();
    let response = proxy
        .token_request("other-client", "other-secret", &scoped("api/write"))
        .await;
    assert_eq!(response.status(), 503);
    assert!(response.headers().contains_key("retry-after"));
    let (_, _, body) = answer_of(response).await;
    assert_eq!(body["error"], "temporarily_unavailable");
    assert_eq!(
        idp.idp.token_requests(),
        before,
        "an open breaker sends nothing"
    );
    // Cached tokens are still served.
    let (status, cache_status, hit) = answer_of(
        proxy
            .token_request("demo-client", "demo-secret", &scoped("api/read"))
            .await,
    )
    .await;
    assert_eq!(status, 200);
    assert!(cache_status.contains("hit"));
    assert_eq!(hit["access_token"], cached["access_token"]);
    let metrics = proxy.metrics().await;
    assert!(
        metrics.contains(r#"tokencache_breaker_state{route="/oauth2/token",state="open"} 1"#),
        "{metrics}"
    );

    idp.idp.apply(&ControlUpdate::healthy());
    tokio::time::sleep(Duration::from_millis(600)).await;
    let (status, _, body) = answer_of(
        proxy
            .token_request("other-client", "other-secret", &scoped("api/write"))
            .await,
    )
    .await;
    assert_eq!(status, 200, "the probe succeeds: {body}");
    let metrics = proxy.metrics().await;
    assert!(
        metrics.contains(r#"tokencache_breaker_state{route="/oauth2/token",state="closed"} 1"#),
        "{metrics}"
    );
}

#[tokio::test]
async fn a_caller_that_would_wait_past_its_deadline_gets_503() {
    let idp = MockIdpServer::start(MockIdpConfig::default()).await;
    let mut config = ProxyServer::config_for(&idp);
    config.resilience.budget = BudgetConfig {
        rate_per_sec: 1.0,
        burst: 1,
    };
    config.load_deadline = Duration::from_millis(300);
    let proxy = Arc::new(ProxyServer::start(config, SystemClock).await);
    let callers: Vec<_> = (0..3)
        .map(|n| {
            let proxy = Arc::clone(&proxy);
            tokio::spawn(async move {
                let response = proxy
                    .token_request("demo-client", "demo-secret", &format!("{CC}&resource=r{n}"))
                    .await;
                let retry_after = response.headers().get("retry-after").cloned();
                let (status, _, body) = answer_of(response).await;
                (status, retry_after, body)
            })
        })
        .collect();
    let mut statuses = Vec::new();
    for caller in callers {
        let (status, retry_after, body) = caller.await.unwrap();
        if status == 503 {
            assert_eq!(body["error"], "temporarily_unavailable");
            assert!(retry_after.is_some());
        }
        statuses.push(status);
    }
    statuses.sort_unstable();
    assert_eq!(statuses, [200, 503, 503]);
    assert_eq!(idp.idp.token_requests(), 1);
    let metrics = proxy.metrics().await;
    assert!(
        metrics.contains(
            r#"tokencache_budget_rejections_total{route="/oauth2/token",group="127.0.0.1"} 2"#
        ),
        "{metrics}"
    );
}

/// The budget learns the identity provider's real rate from its throttles:
/// a cold start far above it still serves every caller, and the IdP's
/// throttles stay a small share of what it receives.
#[tokio::test]
async fn a_cold_start_above_the_idps_rate_learns_it_from_throttles() {
    let idp = MockIdpServer::start(MockIdpConfig::default()).await;
    // 20/s, and its throttles carry `Retry-After` (whole seconds: 1).
    idp.idp.apply(&ControlUpdate {
        rate_limit_per_sec: Some(20),
        ..ControlUpdate::default()
    });
    // The default budget (100/s, bursts of 20), five times the IdP's rate.
    let proxy = Arc::new(ProxyServer::start(ProxyServer::config_for(&idp), SystemClock).await);
    let callers: Vec<_> = (0..200)
        .map(|n| {
            let proxy = Arc::clone(&proxy);
            tokio::spawn(async move {
                let response = proxy
                    .token_request("demo-client", "demo-secret", &format!("{CC}&resource=k{n}"))
                    .await;
                response.status().as_u16()
            })
        })
        .collect();
    let mut statuses = Vec::new();
    for caller in callers {
        statuses.push(
            tokio::time::timeout(Duration::from_secs(30), caller)
                .await
                .unwrap()
                .unwrap(),
        );
    }
    let stats = idp.idp.stats();
    assert!(
        statuses.iter().all(|status| *status == 200),
        "{} of 200 callers got no token: {statuses:?} {stats:?}",
        statuses.iter().filter(|status| **status != 200).count()
    );
    let received = stats.token_requests;
    assert!(
        stats.throttled * 100 <= received * 15,
        "{} throttled of {received} received",
        stats.throttled
    );
    let learned = |metrics: &str, kind: &str| -> f64 {
        let series = format!(r#"tokencache_budget_rate{{group="127.0.0.1",kind="{kind}"}} "#);
        metrics
            .lines()
            .find_map(|line| line.strip_prefix(&series))
            .unwrap_or_else(|| panic!("no {series}"))
            .trim()
            .parse()
            .unwrap()
    };
    let limit = learned(&proxy.metrics().await, "learned");
    assert!(limit < 25.0, "learned a limit of {limit}/s");

    // The IdP's limit is lifted: with no throttle the rate climbs back to
    // the configured 100/s along the cubic curve (seconds, not minutes).
    idp.idp.apply(&ControlUpdate {
        rate_limit_per_sec: Some(0),
        ..ControlUpdate::default()
    });
    let mut current = 0.0;
    for _ in 0..150 {
        current = learned(&proxy.metrics().await, "current");
        if current >= 100.0 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(current >= 100.0, "the rate came back to {current}/s only");
}
