//! What a token request pays for tracing while traces are off, under the
//! subscriber `tokencache serve` installs without `OTEL_*` variables (logs
//! at `info`, no export):
//!
//! - `request_span`: the request span as `crates/proxy/src/spans.rs`
//!   declares it (`DEBUG`, the same fields, inlined), disabled at its
//!   callsite; the service then runs the request without the
//!   `Instrumented` wrapper;
//! - `level_check`: the check `spans::record_key` makes on the hit path
//!   before it looks for a span.
//!
//! A hit costs 11–16 µs of CPU in the hit-path benchmark; these are a few
//! nanoseconds.

#![allow(missing_docs, clippy::unwrap_used, clippy::expect_used)] // a benchmark

use std::hint::black_box;
use std::time::Duration;

use criterion::{Criterion, criterion_group, criterion_main};
use tracing::field::Empty;
use tracing::{Level, Span};

/// The request span of `crates/proxy/src/spans.rs`.
#[inline]
fn request_span(route: &str) -> Span {
    tracing::debug_span!(
        "token_request",
        otel.kind = "server",
        otel.status_code = Empty,
        http.request.method = "POST",
        http.route = route,
        tokencache.route = route,
        tokencache.key = Empty,
        tokencache.cache_status = Empty,
        http.response.status_code = Empty,
    )
}

fn span_off(c: &mut Criterion) {
    // As `tokencache serve` without OTEL_* variables: logs at info.
    tracing_subscriber::fmt()
        .with_env_filter("info")
        .with_writer(std::io::sink)
        .init();
    let route = black_box("/oauth2/token");
    assert!(request_span(route).is_disabled());
    let mut group = c.benchmark_group("span_off");
    group.bench_function("request_span", |b| {
        b.iter(|| black_box(request_span(route).is_disabled()));
    });
    group.bench_function("level_check", |b| {
        b.iter(|| black_box(tracing::level_enabled!(black_box(Level::DEBUG))));
    });
    group.finish();
}

criterion_group! {
    name = benches;
    config = Criterion::default()
        .warm_up_time(Duration::from_millis(500))
        .measurement_time(Duration::from_secs(2));
    targets = span_off
}
criterion_main!(benches);
