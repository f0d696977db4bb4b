//! The metrics follow Prometheus' naming rules, the README's table names
//! exactly the metrics a running proxy exports, and (where `promtool` is
//! installed) `promtool check metrics` finds nothing to say.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::BTreeSet;
use std::io::Write as _;
use std::process::{Command, Stdio};

use tokencache_mock_idp::MockIdpConfig;
use tokencache_test_support::{ManualClock, MockIdpServer, ProxyServer};

/// Exported only once they have something to count: a store operation,
/// a failed one.
const ONLY_AFTER_AN_EVENT: [&str; 2] = [
    "tokencache_store_errors_total",
    "tokencache_store_operation_duration_seconds",
];

/// The metric names (histograms by their base name) of a Prometheus text.
fn exported(metrics: &str) -> BTreeSet<String> {
    metrics
        .lines()
        .filter_map(|line| line.strip_prefix("# TYPE "))
        .filter_map(|line| line.split_whitespace().next())
        .map(str::to_owned)
        .collect()
}

/// The names in the first column of the README's metrics table.
fn documented() -> BTreeSet<String> {
    let readme =
        std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/../../README.md")).unwrap();
    let section = readme
        .split("\n## Operating it")
        .nth(1)
        .and_then(|rest| rest.split("\n## ").next())
        .unwrap();
    section
        .lines()
        .filter_map(|line| line.trim().strip_prefix("| `"))
        .filter_map(|rest| rest.split('`').next())
        .map(str::to_owned)
        .collect()
}

async fn scrape() -> String {
    let idp = MockIdpServer::start(MockIdpConfig::default()).await;
    let proxy = ProxyServer::start_for(&idp, ManualClock::starting_now()).await;
    for _ in 0..3 {
        let answer = proxy
            .token_request(
                "demo-client",
                "demo-secret",
                "grant_type=client_credentials",
            )
            .await;
        assert_eq!(answer.status(), 200);
    }
    proxy.metrics().await
}

#[tokio::test]
async fn the_readme_table_names_what_metrics_exports() {
    let metrics = scrape().await;
    let exported = exported(&metrics);
    let documented = documented();
    assert!(
        documented.contains("tokencache_requests_total"),
        "the table was read: {documented:?}"
    );
    let undocumented: Vec<_> = exported.difference(&documented).collect();
    assert!(
        undocumented.is_empty(),
        "not in the README: {undocumented:?}"
    );
    let missing: Vec<_> = documented
        .difference(&exported)
        .filter(|name| !ONLY_AFTER_AN_EVENT.contains(&name.as_str()))
        .collect();
    assert!(
        missing.is_empty(),
        "in the README, not exported: {missing:?}"
    );
}

#[tokio::test]
async fn names_follow_the_prometheus_rules() {
    let metrics = scrape().await;
    assert!(!metrics.contains("microseconds"), "{metrics}");
    for line in metrics
        .lines()
        .filter_map(|line| line.strip_prefix("# TYPE "))
    {
        let (name, kind) = line.split_once(' ').unwrap();
        assert!(
            name.starts_with("tokencache_") || name.starts_with("process_"),
            "{line}"
        );
        assert_eq!(kind == "counter", name.ends_with("_total"), "{line}");
    }
    assert!(
        metrics.contains(r#"tokencache_requests_total{outcome="hit",route="/oauth2/token"} 2"#),
        "{metrics}"
    );
    assert!(
        metrics.contains(
            r#"tokencache_request_duration_seconds_count{outcome="miss",route="/oauth2/token"} 1"#
        ),
        "{metrics}"
    );
    assert!(
        metrics.contains(r#"tokencache_breaker_state{route="/oauth2/token",state="closed"} 1"#),
        "{metrics}"
    );
    assert!(
        metrics.contains("tokencache_build_info{version=\""),
        "{metrics}"
    );
    if cfg!(target_os = "linux") {
        assert!(metrics.contains("\nprocess_open_fds "), "{metrics}");
    }
}

/// `promtool check metrics` (Debian's `prometheus` package; the test script
/// installs it) lints names, units and help texts.
#[tokio::test]
async fn promtool_finds_nothing_to_say() {
    if Command::new("promtool").arg("--version").output().is_err() {
        eprintln!("promtool is not installed: skipped (scripts/test installs it)");
        return;
    }
    let metrics = scrape().await;
    let mut child = Command::new("promtool")
        .args(["check", "metrics"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    child
        .stdin
        .take()
        .unwrap()
        .write_all(metrics.as_bytes())
        .unwrap();
    let output = child.wait_with_output().unwrap();
    assert!(
        output.status.success(),
        "promtool: {}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
}

fn deploy_file(path: &str) -> String {
    std::fs::read_to_string(format!(
        "{}/../../deploy/{path}",
        env!("CARGO_MANIFEST_DIR")
    ))
    .unwrap()
}

/// The metric names a PromQL expression reads: the names of this proxy
/// (`tokencache_*`, `process_*`), a histogram's series by its base name.
fn names_in(expr: &str) -> Vec<String> {
    let mut names = Vec::new();
    let mut rest = expr;
    while let Some(start) = ["tokencache_", "process_"]
        .iter()
        .filter_map(|prefix| rest.find(prefix))
        .min()
    {
        let word: String = rest[start..]
            .chars()
            .take_while(|c| c.is_ascii_alphanumeric() || *c == '_')
            .collect();
        rest = &rest[start + word.len()..];
        let base = ["_bucket", "_sum", "_count"]
            .iter()
            .find_map(|suffix| word.strip_suffix(suffix))
            .unwrap_or(&word);
        names.push(base.to_owned());
    }
    names
}

/// Every `expr` of the Grafana dashboard and the alerting rules.
fn deploy_queries() -> Vec<String> {
    let dashboard: serde_json::Value =
        serde_json::from_str(&deploy_file("grafana/tokencache-dashboard.json")).unwrap();
    let mut exprs: Vec<String> = dashboard["panels"]
        .as_array()
        .unwrap()
        .iter()
        .flat_map(|panel| panel["targets"].as_array().unwrap().clone())
        .map(|target| target["expr"].as_str().unwrap().to_owned())
        .collect();
    // The rules keep each expression on its own `expr:` line.
    exprs.extend(
        deploy_file("prometheus/tokencache-alerts.yml")
            .lines()
            .filter_map(|line| line.trim().strip_prefix("expr: "))
            .map(str::to_owned),
    );
    exprs
}

#[tokio::test]
async fn the_dashboard_and_the_alerts_read_metrics_the_proxy_exports() {
    let exported = exported(&scrape().await);
    let queries = deploy_queries();
    assert!(queries.len() > 20, "{queries:?}");
    let mut read = BTreeSet::new();
    for expr in &queries {
        let names = names_in(expr);
        assert!(!names.is_empty(), "no metric in {expr}");
        read.extend(names);
    }
    let unknown: Vec<_> = read
        .iter()
        .filter(|name| !exported.contains(*name) && !ONLY_AFTER_AN_EVENT.contains(&name.as_str()))
        .collect();
    assert!(unknown.is_empty(), "not exported: {unknown:?}");
}

#[test]
fn promtool_accepts_and_tests_the_alerting_rules() {
    if Command::new("promtool").arg("--version").output().is_err() {
        eprintln!("promtool is not installed: skipped (scripts/test installs it)");
        return;
    }
    let dir = concat!(env!("CARGO_MANIFEST_DIR"), "/../../deploy/prometheus");
    for args in [
        ["check", "rules", "tokencache-alerts.yml"],
        ["test", "rules", "tokencache-alerts.test.yml"],
    ] {
        let output = Command::new("promtool")
            .args(args)
            .current_dir(dir)
            .output()
            .unwrap();
        assert!(
            output.status.success(),
            "promtool {args:?}: {}{}",
            String::from_utf8_lossy(&output.stdout),
            String::from_utf8_lossy(&output.stderr)
        );
    }
}
