//! The status page and `/status.json`: after known traffic (50 requests,
//! 3 of them misses) they show the same counts as `/metrics`, hold no
//! secret and no token, and the page renders those numbers in a real
//! browser (headless Chromium, when installed) with nothing fetched from
//! outside the admin listener.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::path::PathBuf;
use std::process::Command;
use std::sync::Arc;
use std::time::Duration;

use serde_json::Value;
use tokencache_mock_idp::MockIdpConfig;
use tokencache_test_support::answers::{answer_of, metric};
use tokencache_test_support::{ManualClock, MockIdpServer, ProxyServer};

const SCOPES: [&str; 3] = ["", "&scope=api%2Fread", "&scope=api%2Fwrite"];

/// A proxy (listing its busiest clients or not) that answered 50 requests, 3 of them misses, over 50 seconds of
/// its clock with a housekeeping tick every 10 (so the page has a history
/// to chart); the tokens it gave.
async fn with_traffic(show_clients: bool) -> (MockIdpServer, ProxyServer, Vec<String>) {
    let idp = MockIdpServer::start(MockIdpConfig::default()).await;
    let clock = ManualClock::starting_now();
    let mut config = ProxyServer::config_for(&idp);
    config.status_show_clients = Some(show_clients);
    let proxy = ProxyServer::start(config, clock.clone()).await;
    // The first sample, at 0 s and before any traffic (else serve's first
    // housekeeping tick, which races the first requests, would take it).
    get(&proxy, "/status.json").await;
    let mut tokens = Vec::new();
    let mut n = 0;
    for round in [4, 6, 9, 12, 19] {
        for _ in 0..round {
            let body = format!("grant_type=client_credentials{}", SCOPES[n % 3]);
            let (status, _, answer) = answer_of(
                proxy
                    .token_request("demo-client", "demo-secret", &body)
                    .await,
            )
            .await;
            assert_eq!(status, 200, "{answer}");
            tokens.push(answer["access_token"].as_str().unwrap().to_owned());
            n += 1;
        }
        clock.advance(Duration::from_secs(10));
        proxy.proxy.housekeeping();
    }
    tokens.sort();
    tokens.dedup();
    assert_eq!(tokens.len(), 3);
    (idp, proxy, tokens)
}

async fn get(proxy: &ProxyServer, path: &str) -> reqwest::Response {
    let answer = reqwest::get(proxy.admin_url(path)).await.unwrap();
    assert_eq!(answer.status(), 200, "{path}");
    answer
}

#[tokio::test]
async fn status_json_counts_what_metrics_counts_and_holds_no_secret() {
    let (_idp, proxy, tokens) = with_traffic(false).await;
    let text = get(&proxy, "/status.json").await.text().await.unwrap();
    let status: Value = serde_json::from_str(&text).unwrap();
    let metrics = proxy.metrics().await;
    let hits = metric(&metrics, r#"tokencache_requests_total{outcome="hit"}"#).unwrap();
    let misses = metric(&metrics, r#"tokencache_requests_total{outcome="miss"}"#).unwrap();
    let upstream = metric(
        &metrics,
        r#"tokencache_upstream_requests_total{status="2xx"}"#,
    );
    assert_eq!((hits, misses, upstream), (47, 3, Some(3)));

    assert_eq!(status["requests"], 50, "{status:#}");
    assert_eq!(status["saved"], hits);
    assert_eq!(status["upstream_requests"], 3);
    assert_eq!(status["hit_ratio"], 0.94);
    assert!(status["price_per_1000"].is_null());
    assert_eq!(status["uptime_seconds"], 50);
    // Samples at 0, 10, 20, 30, 40 and 50 s: five
    // intervals, and none yet from the last sample to now.
    let history = status["history"].as_array().unwrap();
    assert_eq!(history.len(), 5, "{history:?}");
    assert_eq!(history[0]["requests_per_second"], 0.4);
    assert_eq!(history[0]["upstream_per_second"], 0.3);
    assert_eq!(history[0]["hit_ratio"], 0.25);
    assert_eq!(history[4]["requests_per_second"], 1.9);
    assert_eq!(history[4]["hit_ratio"], 1.0);
    assert_eq!(history[4]["seconds_ago"], 0);
    let route = &status["routes"][0];
    assert_eq!(route["route"], "/oauth2/token");
    assert_eq!(route["requests"], 50);
    assert_eq!(route["outcomes"]["hit"], 47);
    assert_eq!(route["outcomes"]["miss"], 3);
    assert_eq!(route["upstream_requests"], 3);
    assert_eq!(route["breaker"], "closed");
    assert!(route["last_upstream_error"].is_null());
    assert_eq!(route["budget_per_second"], 100.0);
    assert_eq!(route["budget_group"], "127.0.0.1");
    assert_eq!(route["current_per_second"], 100.0);
    let group = &status["budget_groups"][0];
    assert_eq!(group["name"], "127.0.0.1");
    assert_eq!(
        (
            group["configured_per_second"].as_f64(),
            group["learned_per_second"].as_f64()
        ),
        (Some(100.0), Some(100.0))
    );
    assert_eq!(
        (group["shared"].as_bool(), group["fallback"].as_bool()),
        (Some(false), Some(false))
    );
    assert_eq!(
        (group["burst"].as_u64(), group["replicas"].as_u64()),
        (Some(20), Some(1))
    );
    assert_eq!(group["slots"], 3);
    assert_eq!(group["throttles"], 0);
    // No sample was taken before this request: no rate yet.
    assert!(route["upstream_per_second"].is_null());
    let cache = &status["cache"];
    assert_eq!(
        (cache["entries"].as_u64(), cache["fresh"].as_u64()),
        (Some(3), Some(3))
    );
    assert!(cache["bytes"].as_u64().unwrap() > 0);
    assert!(cache["max_bytes"].as_u64().unwrap() >= cache["bytes"].as_u64().unwrap());
    assert_eq!(
        cache["next_refreshes_in_seconds"].as_array().unwrap().len(),
        3
    );
    assert!(status["shared_store"].is_null());
    assert!(
        status["clients"].is_null(),
        "client ids only when asked for"
    );

    for page in [text, get(&proxy, "/").await.text().await.unwrap()] {
        // Positive control: the text is the status, not an empty answer.
        assert!(page.contains("/oauth2/token"), "{page}");
        assert!(!page.contains("demo-secret"));
        for token in &tokens {
            assert!(!page.contains(token.as_str()), "a token in {page}");
        }
    }
}

#[tokio::test]
async fn the_page_is_self_contained() {
    let (_idp, proxy, _) = with_traffic(false).await;
    let answer = get(&proxy, "/").await;
    let headers = answer.headers().clone();
    assert!(
        headers["content-type"]
            .to_str()
            .unwrap()
            .starts_with("text/html")
    );
    let policy = headers["content-security-policy"].to_str().unwrap();
    assert!(policy.starts_with("default-src 'none'"), "{policy}");
    let page = answer.text().await.unwrap();
    for external in ["src=", "href=", "@import", "url("] {
        assert!(!page.contains(external), "{external} in the page");
    }
    assert!(page.contains("<svg"));
}

/// Where Chromium is, or `None` (the test script installs Debian's).
fn chromium() -> Option<&'static str> {
    ["chromium", "chromium-browser", "google-chrome"]
        .into_iter()
        .find(|name| Command::new(name).arg("--version").output().is_ok())
}

fn chromium_run(browser: &str, profile: &std::path::Path, extra: &[String], url: &str) -> String {
    let output = Command::new(browser)
        .args([
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-dev-shm-usage",
            "--no-first-run",
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-sync",
            // Let the page's script run (and one refresh land) before the
            // DOM is dumped.
            "--virtual-time-budget=6000",
        ])
        .arg(format!("--user-data-dir={}", profile.display()))
        .args(extra)
        .arg(url)
        .output()
        .unwrap();
    assert!(
        output.status.success(),
        "chromium: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8(output.stdout).unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn chromium_renders_the_numbers_of_metrics() {
    let Some(browser) = chromium() else {
        eprintln!("chromium is not installed: skipped (scripts/test installs it)");
        return;
    };
    let (_idp, proxy, tokens) = with_traffic(true).await;
    let status: Value = get(&proxy, "/status.json").await.json().await.unwrap();
    assert_eq!(
        status["clients"],
        serde_json::json!([{"client_id": "demo-client", "requests": 50, "hit_ratio": 0.94}])
    );
    let url = proxy.admin_url("/");
    let target = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../target");
    let profile = target.join(format!("chromium-profile-{}", std::process::id()));
    let screenshot = target.join("status-page.png");
    let (dom, _) = tokio::task::spawn_blocking({
        let (profile, screenshot) = (profile.clone(), screenshot.clone());
        move || {
            let dom = chromium_run(browser, &profile, &["--dump-dom".to_owned()], &url);
            let shot = chromium_run(
                browser,
                &profile,
                &[
                    format!("--screenshot={}", screenshot.display()),
                    "--window-size=1280,900".to_owned(),
                ],
                &url,
            );
            (dom, shot)
        }
    })
    .await
    .unwrap();
    let _ = std::fs::remove_dir_all(&profile);
    for shown in [
        r#"id="requests">50<"#,
        r#"id="saved">47<"#,
        r#"id="upstream">3<"#,
        r#"id="hit-ratio">94.0 %<"#,
        "<td>/oauth2/token</td>",
        r#"class="closed">closed<"#,
        // The chart: one line of requests/s, one of the hit ratio.
        "<polyline",
        "<td>demo-client</td><td>50</td><td>94.0 %</td>",
        r#"id="max-rate">1.90<"#,
    ] {
        assert!(
            dom.contains(shown),
            "no {shown} in the rendered page:\n{dom}"
        );
    }
    for token in &tokens {
        assert!(!dom.contains(token.as_str()));
    }
    assert!(std::fs::metadata(&screenshot).is_ok_and(|file| file.len() > 1000));
}

/// With a shared store, the page shows its kind, health, latency and
/// errors, and the budget group the fleet shares.
#[tokio::test]
async fn the_shared_store_and_the_fleet_budget_are_shown() {
    use tokencache_memory_store::InProcessSharedStore;
    use tokencache_test_support::fleet::replica;

    let idp = MockIdpServer::start(MockIdpConfig::default()).await;
    let store = Arc::new(InProcessSharedStore::new(Arc::new(
        tokencache_core::SystemClock,
    )));
    let proxy = replica(&idp, store).await;
    let (status, _, _) = answer_of(
        proxy
            .token_request(
                "demo-client",
                "demo-secret",
                "grant_type=client_credentials",
            )
            .await,
    )
    .await;
    assert_eq!(status, 200);
    let status: Value = get(&proxy, "/status.json").await.json().await.unwrap();
    let store = &status["shared_store"];
    assert_eq!(store["kind"], "in-process");
    assert_eq!(store["healthy"], true);
    assert!(store["operations"].as_u64().unwrap() >= 2, "{store}");
    assert_eq!(store["errors"], 0);
    assert!(store["latency_ms"].as_f64().unwrap() >= 0.0);
    let group = &status["budget_groups"][0];
    assert_eq!(
        (group["shared"].as_bool(), group["fallback"].as_bool()),
        (Some(true), Some(false))
    );
    assert_eq!(group["slots"], 1);
    let metrics = proxy.metrics().await;
    assert!(
        metrics.contains(r#"tokencache_store_operation_duration_seconds_count{op="get"}"#),
        "{metrics}"
    );
}
