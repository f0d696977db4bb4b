//! Micro-benchmarks of the hit path's pure parts: request parsing and
//! canonicalisation, cache-key derivation and answer rendering. (The
//! lookup, `MemoryStore::get`, is in `crates/bench/benches/lookup.rs`.)
//!
//! `cargo bench -p tokencache-core --bench hit_path`; `scripts/bench` runs
//! it and puts the figures in `BENCHMARKS.md`.

#![allow(missing_docs, clippy::unwrap_used, clippy::expect_used)] // a benchmark

use std::hint::black_box;
use std::time::Duration;

use criterion::{Criterion, criterion_group, criterion_main};
use tokencache_core::{
    CachedToken, FreshnessPolicy, HmacKey, KeyDeriver, TokenRequest, UnixMillis,
};

const NOW: UnixMillis = UnixMillis(1_700_000_000_000);
const FORM: Option<&[u8]> = Some(b"application/x-www-form-urlencoded");
// demo-client:demo-secret
const BASIC: &[u8] = b"Basic ZGVtby1jbGllbnQ6ZGVtby1zZWNyZXQ=";
/// What the load scenarios send.
const BODY: &[u8] = b"grant_type=client_credentials&resource=k42";
/// A busier request: scopes out of order, percent-encoding, client metadata.
const RICH_BODY: &[u8] = b"grant_type=client_credentials&scope=api%2Fwrite+api%2Fread&aws_client_metadata=%7B%22tenant%22%3A%22acme%22%7D&resource=https%3A%2F%2Fapi.example.com";

/// A Cognito-sized answer: a ~900-byte JWT-shaped access token.
fn upstream_answer() -> Vec<u8> {
    let token = format!(
        "eyJraWQiOiJrMSIsImFsZyI6IlJTMjU2In0.{}.{}",
        "e".repeat(500),
        "s".repeat(342)
    );
    format!(r#"{{"access_token":"{token}","expires_in":3600,"token_type":"Bearer"}}"#).into_bytes()
}

fn parse(c: &mut Criterion) {
    let mut group = c.benchmark_group("parse");
    group.bench_function("basic_one_param", |b| {
        b.iter(|| {
            TokenRequest::parse(FORM, Some(black_box(BASIC)), None, black_box(BODY)).unwrap()
        });
    });
    group.bench_function("basic_rich", |b| {
        b.iter(|| {
            TokenRequest::parse(FORM, Some(black_box(BASIC)), None, black_box(RICH_BODY)).unwrap()
        });
    });
    group.finish();
}

fn derive(c: &mut Criterion) {
    let deriver = KeyDeriver::new(&HmacKey::from_bytes([7; 32]));
    let mut group = c.benchmark_group("derive");
    let simple = TokenRequest::parse(FORM, Some(BASIC), None, BODY).unwrap();
    group.bench_function("one_param", |b| {
        b.iter(|| deriver.derive(black_box("/oauth2/token"), black_box(&simple)));
    });
    let rich = TokenRequest::parse(FORM, Some(BASIC), None, RICH_BODY).unwrap();
    group.bench_function("rich", |b| {
        b.iter(|| deriver.derive(black_box("/oauth2/token"), black_box(&rich)));
    });
    group.finish();
}

fn render(c: &mut Criterion) {
    let token =
        CachedToken::from_response(&upstream_answer(), NOW, &FreshnessPolicy::default()).unwrap();
    let mut group = c.benchmark_group("render");
    group.bench_function("render_body_1kb", |b| {
        b.iter(|| token.render_body(black_box(NOW.plus_millis(1_234_567))));
    });
    group.finish();
}

/// Parse, derive and render together: the hit path's pure work, without
/// the lookup and without HTTP.
fn together(c: &mut Criterion) {
    let deriver = KeyDeriver::new(&HmacKey::from_bytes([7; 32]));
    let token =
        CachedToken::from_response(&upstream_answer(), NOW, &FreshnessPolicy::default()).unwrap();
    c.bench_function("hit_path_pure/parse_derive_render", |b| {
        b.iter(|| {
            let request =
                TokenRequest::parse(FORM, Some(black_box(BASIC)), None, black_box(BODY)).unwrap();
            let key = deriver.derive("/oauth2/token", &request);
            black_box(key);
            token.render_body(black_box(NOW))
        });
    });
}

criterion_group! {
    name = benches;
    config = Criterion::default()
        .warm_up_time(Duration::from_millis(500))
        .measurement_time(Duration::from_secs(2));
    targets = parse, derive, render, together
}
criterion_main!(benches);
