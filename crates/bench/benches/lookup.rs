//! The hit path's lookup: `MemoryStore::get` on a store holding 1 and
//! 100,000 entries. (It lives here, not in core's benches, because core
//! cannot depend on the memory store without a cycle.)

#![allow(missing_docs, clippy::unwrap_used, clippy::expect_used)] // a benchmark

use std::hint::black_box;
use std::sync::Arc;
use std::time::Duration;

use criterion::{Criterion, criterion_group, criterion_main};
use tokencache_core::{
    CachedToken, FreshnessPolicy, HmacKey, KeyDeriver, TokenRequest, UnixMillis,
};
use tokencache_memory_store::MemoryStore;

const NOW: UnixMillis = UnixMillis(1_700_000_000_000);
const FORM: Option<&[u8]> = Some(b"application/x-www-form-urlencoded");
// demo-client:demo-secret
const BASIC: &[u8] = b"Basic ZGVtby1jbGllbnQ6ZGVtby1zZWNyZXQ=";

fn filled(entries: u64) -> (MemoryStore, Vec<tokencache_core::CacheKey>) {
    let deriver = KeyDeriver::new(&HmacKey::from_bytes([7; 32]));
    let store = MemoryStore::new(usize::MAX);
    let token = Arc::new(
        CachedToken::from_response(
            format!(
                r#"{{"access_token":"{}","expires_in":3600,"token_type":"Bearer"}}"#,
                "x".repeat(900)
            )
            .as_bytes(),
            NOW,
            &FreshnessPolicy::default(),
        )
        .unwrap(),
    );
    let mut keys = Vec::new();
    for n in 0..entries {
        let body = format!("grant_type=client_credentials&resource=k{n}");
        let request = TokenRequest::parse(FORM, Some(BASIC), None, body.as_bytes()).unwrap();
        let key = deriver.derive("/oauth2/token", &request);
        store.insert(key, Arc::clone(&token), NOW);
        keys.push(key);
    }
    (store, keys)
}

fn lookup(c: &mut Criterion) {
    let mut group = c.benchmark_group("lookup");
    for entries in [1_u64, 100_000] {
        let (store, keys) = filled(entries);
        let mut i = 0;
        group.bench_function(format!("memory_store_get/{entries}_entries"), |b| {
            b.iter(|| {
                i = (i + 1) % keys.len();
                black_box(store.get(black_box(&keys[i]), NOW))
            });
        });
    }
    group.finish();
}

criterion_group! {
    name = benches;
    config = Criterion::default()
        .warm_up_time(Duration::from_millis(500))
        .measurement_time(Duration::from_secs(2));
    targets = lookup
}
criterion_main!(benches);
