//! OpenTelemetry traces end to end: the real `tokencache serve` with the
//! standard `OTEL_*` variables, the mock IdP as its upstream, and an OTLP
//! receiver (the `opentelemetry-proto` messages and gRPC service) on
//! loopback, over http/protobuf and over gRPC.
//!
//! A miss must arrive as a tree (the request, its load, the upstream
//! attempt, its budget wait) under the caller's `traceparent`, with its
//! attributes; the mock IdP must see a `traceparent` of the same trace,
//! naming the attempt; the caller's `traceparent` must change neither the
//! key nor cacheability; a request passed through must reach the upstream
//! with the proxy's `traceparent` in place of the caller's; no attribute
//! may hold a secret; and spans still buffered at SIGTERM must be exported
//! before the process exits.
#![allow(clippy::unwrap_used, clippy::expect_used)]
// Waiting on child processes is bounded by real time.
#![allow(clippy::disallowed_methods)]

#[path = "../common/mod.rs"]
mod common;
mod receiver;

use std::process::Command;
use std::time::Duration;

use opentelemetry_proto::tonic::trace::v1::span::SpanKind;
use serde_json::Value;

use common::{BIN, Running, log_field, start_mock_idp};
use receiver::{OtlpReceiver, ReceivedSpan, Transport};

const SECRET: &str = "demo-secret";
/// `demo-client:demo-secret` in Basic form.
const BASIC: &str = "ZGVtby1jbGllbnQ6ZGVtby1zZWNyZXQ=";
/// The caller's trace and span.
const CALLER_TRACE: &str = "4bf92f3577b34da6a3ce929d0e0e4736";
const CALLER_SPAN: &str = "00f067aa0ba902b7";
const WITHIN: Duration = Duration::from_secs(10);

/// A proxy in front of a mock IdP, exporting to `receiver` with `protocol`
/// every `delay_ms`.
struct Traced {
    proxy: Running,
    _idp: Running,
    idp_url: String,
    token_url: String,
}

impl Traced {
    fn start(
        receiver: &OtlpReceiver,
        protocol: &str,
        delay_ms: u32,
        extra: &[(&str, &str)],
    ) -> Self {
        let (idp, idp_url) = start_mock_idp();
        let mut command = Command::new(BIN);
        command
            .arg("serve")
            .env("TOKENCACHE_LISTEN", "127.0.0.1:0")
            .env("TOKENCACHE_ADMIN_LISTEN", "127.0.0.1:0")
            .env("TOKENCACHE_UPSTREAM", &idp_url)
            .env("TOKENCACHE_LOG_FORMAT", "json")
            .env("OTEL_EXPORTER_OTLP_ENDPOINT", receiver.endpoint())
            .env("OTEL_EXPORTER_OTLP_PROTOCOL", protocol)
            .env("OTEL_BSP_SCHEDULE_DELAY", delay_ms.to_string())
            .env("OTEL_SERVICE_NAME", "tokencache-under-test")
            .env(
                "OTEL_RESOURCE_ATTRIBUTES",
                "deployment.environment.name=test",
            );
        // Whatever the developer's shell holds must not decide the test.
        for name in [
            "OTEL_SDK_DISABLED",
            "OTEL_TRACES_EXPORTER",
            "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT",
            "OTEL_EXPORTER_OTLP_TRACES_PROTOCOL",
            "OTEL_TRACES_SAMPLER",
            "OTEL_TRACES_SAMPLER_ARG",
            "TOKENCACHE_LOG",
            "RUST_LOG",
        ] {
            command.env_remove(name);
        }
        for (name, value) in extra {
            command.env(name, value);
        }
        let mut proxy = Running::start(&mut command);
        let line = proxy.wait_for_line("tokencache serving");
        let token_url = format!("http://{}/oauth2/token", log_field(&line, "listen"));
        Self {
            proxy,
            _idp: idp,
            idp_url,
            token_url,
        }
    }

    /// A cacheable request with `traceparent`; its `Cache-Status` and
    /// answer.
    async fn token(&self, traceparent: Option<String>) -> (String, Value) {
        let mut request = reqwest::Client::new()
            .post(&self.token_url)
            .basic_auth("demo-client", Some(SECRET))
            .form(&[("grant_type", "client_credentials"), ("scope", "api/read")]);
        if let Some(traceparent) = traceparent {
            request = request.header("traceparent", traceparent);
        }
        let response = request.send().await.unwrap();
        assert_eq!(response.status(), 200);
        let cache_status = response.headers()["cache-status"]
            .to_str()
            .unwrap()
            .to_owned();
        (cache_status, response.json().await.unwrap())
    }

    /// A request that is passed through (a refresh-token grant, which the
    /// mock IdP refuses), with `traceparent`; its `Cache-Status`.
    async fn passed_through(&self, traceparent: &str) -> String {
        let response = reqwest::Client::new()
            .post(&self.token_url)
            .basic_auth("demo-client", Some(SECRET))
            .header("traceparent", traceparent)
            .form(&[
                ("grant_type", "refresh_token"),
                ("refresh_token", "unknown"),
            ])
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), 400);
        response.headers()["cache-status"]
            .to_str()
            .unwrap()
            .to_owned()
    }

    /// The `traceparent` the mock IdP saw last.
    async fn upstream_traceparent(&self) -> Option<String> {
        let stats_url = self.idp_url.replace("/oauth2/token", "/stats");
        let stats: Value = reqwest::get(stats_url).await.unwrap().json().await.unwrap();
        stats["last_traceparent"].as_str().map(str::to_owned)
    }
}

fn caller_traceparent() -> String {
    format!("00-{CALLER_TRACE}-{CALLER_SPAN}-01")
}

fn named<'s>(spans: &'s [ReceivedSpan], name: &str) -> Vec<&'s ReceivedSpan> {
    spans.iter().filter(|span| span.name == name).collect()
}

fn the<'s>(spans: &'s [ReceivedSpan], name: &str) -> &'s ReceivedSpan {
    match named(spans, name)[..] {
        [span] => span,
        ref found => panic!("{} spans named {name}: {spans:#?}", found.len()),
    }
}

/// The trace of the request passed through.
const PASSED_THROUGH_TRACE: &str = "33333333333333333333333333333333";

/// Whether the spans of a miss, a hit and a request passed through are all
/// in.
fn all_received(spans: &[ReceivedSpan]) -> bool {
    named(spans, "token_request").len() >= 3
        && named(spans, "upstream_attempt").len() >= 2
        && named(spans, "budget_wait").len() >= 2
        && !named(spans, "load").is_empty()
}

/// A miss under the caller's trace, then a hit under another: checks the
/// tree, the attributes, what the upstream saw, and that no secret is in
/// any attribute.
async fn a_miss_is_traced(transport: Transport, protocol: &str) {
    let receiver = OtlpReceiver::start().await;
    let traced = Traced::start(&receiver, protocol, 100, &[]);

    let (cache_status, first) = traced.token(Some(caller_traceparent())).await;
    assert_eq!(cache_status, "tokencache; fwd=miss; stored");
    // Another caller's trace: still the same key, still a hit.
    let other = "00-11111111111111111111111111111111-2222222222222222-01";
    let (cache_status, second) = traced.token(Some(other.to_owned())).await;
    assert!(
        cache_status.starts_with("tokencache; hit"),
        "{cache_status}"
    );
    assert_eq!(first["access_token"], second["access_token"]);
    let seen_for_the_miss = traced.upstream_traceparent().await;
    let caller = format!("00-{PASSED_THROUGH_TRACE}-4444444444444444-01");
    assert_eq!(
        traced.passed_through(&caller).await,
        "tokencache; fwd=bypass"
    );
    let seen_passed_through = traced.upstream_traceparent().await;

    let spans = receiver.wait_for(WITHIN, all_received).await;
    assert!(
        spans.iter().all(|span| span.transport == transport),
        "{spans:#?}"
    );
    let requests = named(&spans, "token_request");
    let miss = requests
        .iter()
        .find(|span| span.trace_id == CALLER_TRACE)
        .unwrap_or_else(|| panic!("no request span in the caller's trace: {spans:#?}"));
    assert_eq!(
        miss.parent_span_id, CALLER_SPAN,
        "the caller's span is its parent"
    );
    assert_eq!(miss.kind, SpanKind::Server);
    assert_eq!(miss.attribute("tokencache.cache_status"), "miss");
    assert_eq!(miss.attribute("http.route"), "/oauth2/token");
    assert_eq!(miss.attribute("tokencache.route"), "/oauth2/token");
    assert_eq!(miss.attribute("http.response.status_code"), "200");
    let fingerprint = miss.attribute("tokencache.key");
    assert!(
        fingerprint.len() == 8 && fingerprint.bytes().all(|b| b.is_ascii_hexdigit()),
        "a short hex fingerprint: {fingerprint}"
    );
    assert_eq!(miss.resource["service.name"], "tokencache-under-test");
    assert_eq!(miss.resource["deployment.environment.name"], "test");

    let load = the(&spans, "load");
    assert_eq!(
        (load.trace_id.as_str(), load.parent_span_id.as_str()),
        (CALLER_TRACE, miss.span_id.as_str()),
        "the load is the request's child"
    );
    assert_eq!(load.attribute("tokencache.purpose"), "load");
    assert_eq!(load.attribute("tokencache.load_outcome"), "stored");
    assert_eq!(load.attribute("tokencache.key"), fingerprint);

    let attempts = named(&spans, "upstream_attempt");
    let attempt = attempts
        .iter()
        .find(|span| span.trace_id == CALLER_TRACE)
        .unwrap_or_else(|| panic!("no attempt in the caller's trace: {spans:#?}"));
    assert_eq!(
        attempt.parent_span_id, load.span_id,
        "the attempt is the load's child"
    );
    assert_eq!(attempt.trace_id, CALLER_TRACE);
    assert_eq!(attempt.kind, SpanKind::Client);
    assert_eq!(attempt.attribute("tokencache.attempt"), "1");
    assert_eq!(attempt.attribute("tokencache.backoff_ms"), "0");
    assert_eq!(attempt.attribute("http.response.status_code"), "200");
    assert_eq!(attempt.attribute("server.address"), "127.0.0.1");

    let budget_wait = named(&spans, "budget_wait")
        .into_iter()
        .find(|span| span.parent_span_id == attempt.span_id)
        .unwrap_or_else(|| panic!("no budget wait under the attempt: {spans:#?}"));
    assert_eq!(budget_wait.attribute("tokencache.priority"), "caller");

    // The upstream was sent the attempt's context, in the caller's trace.
    let seen = seen_for_the_miss.expect("a traceparent upstream");
    assert_eq!(seen, format!("00-{CALLER_TRACE}-{}-01", attempt.span_id));

    let hit = requests
        .iter()
        .find(|span| span.trace_id == "11111111111111111111111111111111")
        .unwrap_or_else(|| panic!("no request span in the second caller's trace: {spans:#?}"));
    assert_eq!(hit.attribute("tokencache.cache_status"), "hit");
    assert_eq!(hit.attribute("tokencache.key"), fingerprint, "the same key");
    assert!(
        spans.iter().all(|span| span.parent_span_id != hit.span_id),
        "a hit has no children"
    );

    // Passed through: the caller's headers travel, but its traceparent is
    // replaced by the attempt's, a child of the request's span.
    let bypass = requests
        .iter()
        .find(|span| span.trace_id == PASSED_THROUGH_TRACE)
        .unwrap_or_else(|| panic!("no span for the request passed through: {spans:#?}"));
    assert_eq!(bypass.attribute("tokencache.cache_status"), "bypass");
    assert_eq!(bypass.attribute("http.response.status_code"), "400");
    let bypass_attempt = attempts
        .iter()
        .find(|span| span.trace_id == PASSED_THROUGH_TRACE)
        .unwrap_or_else(|| panic!("no attempt passed through: {spans:#?}"));
    assert_eq!(bypass_attempt.parent_span_id, bypass.span_id);
    assert_eq!(bypass_attempt.attribute("http.response.status_code"), "400");
    let expected = format!("00-{PASSED_THROUGH_TRACE}-{}-01", bypass_attempt.span_id);
    assert_eq!(seen_passed_through, Some(expected));

    let (code, output) = traced.proxy.terminate();
    assert_eq!(code, 0, "{output:#?}");
    // The fingerprint is the one the logs show for the same load.
    let logged = output
        .iter()
        .find(|line| line.contains("token fetched and cached"))
        .unwrap_or_else(|| panic!("no fetch logged: {output:#?}"));
    assert_eq!(log_field(logged, "key"), fingerprint);
    assert_no_secret(&spans, &first);
}

/// No attribute of any span or resource holds the client secret, the
/// Basic credentials or the token.
fn assert_no_secret(spans: &[ReceivedSpan], answer: &Value) {
    let token = answer["access_token"].as_str().unwrap();
    let values: Vec<&String> = spans
        .iter()
        .flat_map(|span| span.attributes.values().chain(span.resource.values()))
        .collect();
    assert!(values.len() > 20, "the attributes were read: {values:?}");
    for secret in [SECRET, BASIC, token] {
        for value in &values {
            assert!(
                !value.contains(secret),
                "an attribute holds a secret: {value}"
            );
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_miss_is_traced_over_http_protobuf() {
    a_miss_is_traced(Transport::HttpProtobuf, "http/protobuf").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_miss_is_traced_over_grpc() {
    a_miss_is_traced(Transport::Grpc, "grpc").await;
}

/// With a batch delay far longer than the test, spans reach the receiver
/// only because SIGTERM flushes them.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn spans_still_buffered_are_exported_at_shutdown() {
    let receiver = OtlpReceiver::start().await;
    let traced = Traced::start(&receiver, "grpc", 600_000, &[]);
    traced.token(None).await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(
        receiver.spans().is_empty(),
        "nothing exported before the delay"
    );
    let (code, output) = traced.proxy.terminate();
    assert_eq!(code, 0, "{output:#?}");
    let spans = receiver
        .wait_for(WITHIN, |spans| !named(spans, "token_request").is_empty())
        .await;
    let request = the(&spans, "token_request");
    assert!(
        request.parent_span_id.is_empty(),
        "a root without a caller's traceparent"
    );
}

/// `OTEL_SDK_DISABLED=true` wins over an endpoint: nothing is exported,
/// and the upstream sees no `traceparent` (the caller's is not part of
/// what a cacheable load sends).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn disabled_traces_export_nothing_and_send_nothing_upstream() {
    let receiver = OtlpReceiver::start().await;
    let traced = Traced::start(
        &receiver,
        "http/protobuf",
        100,
        &[("OTEL_SDK_DISABLED", "true")],
    );
    let (cache_status, _) = traced.token(Some(caller_traceparent())).await;
    assert_eq!(cache_status, "tokencache; fwd=miss; stored");
    let (cache_status, _) = traced.token(None).await;
    assert!(
        cache_status.starts_with("tokencache; hit"),
        "{cache_status}"
    );
    assert_eq!(traced.upstream_traceparent().await, None);
    let (code, output) = traced.proxy.terminate();
    assert_eq!(code, 0, "{output:#?}");
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(receiver.spans().is_empty(), "{:#?}", receiver.spans());
}
