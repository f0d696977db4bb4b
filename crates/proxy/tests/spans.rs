//! The spans a token request makes, and the ones it does not: with traces
//! off and logs at `info` (the binary's defaults) the hit path creates no
//! span at all, while a subscriber that wants `DEBUG` spans (what the
//! binary's trace export installs) gets the request, its load, the
//! upstream attempt and, with a shared store, the store's operations under
//! the load. The export itself is tested end to end against the binary
//! (`crates/cli/tests/traces`).
//!
//! One test in this file: the maximum level is global, so the two
//! subscribers are installed one after the other.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::sync::{Arc, Mutex};

use tokencache_core::{EncryptionKey, KeyRing};
use tokencache_memory_store::InProcessSharedStore;
use tokencache_proxy::SharedStoreConfig;
use tokencache_test_support::{ManualClock, MockIdpServer, ProxyServer};
use tower::ServiceExt as _;
use tracing::Level;
use tracing::span::{Attributes, Id};
use tracing_subscriber::Layer;
use tracing_subscriber::filter::LevelFilter;
use tracing_subscriber::layer::{Context, SubscriberExt as _};
use tracing_subscriber::registry::LookupSpan;

const CC: &str = "grant_type=client_credentials&scope=api/read";

/// A span created: its name and its parent's, if it has one.
type Created = (&'static str, Option<&'static str>);

/// Records every span created.
#[derive(Clone, Default)]
struct SpansCreated(Arc<Mutex<Vec<Created>>>);

impl<S> Layer<S> for SpansCreated
where
    S: tracing::Subscriber + for<'span> LookupSpan<'span>,
{
    fn on_new_span(&self, attributes: &Attributes<'_>, id: &Id, context: Context<'_, S>) {
        let parent = context
            .span(id)
            .and_then(|span| span.parent())
            .map(|parent| parent.name());
        self.0
            .lock()
            .unwrap()
            .push((attributes.metadata().name(), parent));
    }
}

/// The spans created while a fresh proxy (over a shared store when
/// `shared`) answers one miss and then `hits` hits, under a subscriber
/// that records spans up to `level`.
async fn spans_created(level: Level, hits: usize, shared: bool) -> Vec<Created> {
    let created = SpansCreated::default();
    let subscriber =
        tracing_subscriber::registry().with(created.clone().with_filter(LevelFilter::from(level)));
    // This thread's subscriber; the test runtime runs every task on it.
    let _subscribed = tracing::subscriber::set_default(subscriber);
    let idp = MockIdpServer::start(tokencache_mock_idp::MockIdpConfig::default()).await;
    let clock = ManualClock::starting_now();
    let mut config = ProxyServer::config_for(&idp);
    if shared {
        let store = InProcessSharedStore::new(Arc::new(clock.clone()));
        let keys = KeyRing::new(EncryptionKey::from_bytes([1; 32]), Vec::new());
        config.shared_store = Some(SharedStoreConfig::new(Arc::new(store), keys));
    }
    let proxy = ProxyServer::start(config, clock).await;
    let router = proxy.proxy.router();
    for answer in 0..=hits {
        let request = http::Request::post("/oauth2/token")
            .header("authorization", "Basic ZGVtby1jbGllbnQ6ZGVtby1zZWNyZXQ=")
            .header("content-type", "application/x-www-form-urlencoded")
            .body(axum::body::Body::from(CC))
            .unwrap();
        let response = router.clone().oneshot(request).await.unwrap();
        let expected = if answer == 0 { "fwd=miss" } else { "hit" };
        let cache_status = response.headers()["cache-status"].to_str().unwrap();
        assert!(cache_status.contains(expected), "{cache_status}");
    }
    created.0.lock().unwrap().clone()
}

fn count(spans: &[Created], name: &str) -> usize {
    spans.iter().filter(|(created, _)| *created == name).count()
}

#[tokio::test]
async fn with_traces_off_the_hit_path_creates_no_span() {
    let hits = 3;
    for shared in [false, true] {
        let at_info = spans_created(Level::INFO, hits, shared).await;
        assert!(at_info.is_empty(), "spans at info: {at_info:?}");
    }

    let at_debug = spans_created(Level::DEBUG, hits, false).await;
    assert_eq!(count(&at_debug, "token_request"), hits + 1, "{at_debug:?}");
    for (name, parent) in [
        ("load", "token_request"),
        ("upstream_attempt", "load"),
        ("budget_wait", "upstream_attempt"),
    ] {
        assert_eq!(
            at_debug
                .iter()
                .filter(|created| **created == (name, Some(parent)))
                .count(),
            1,
            "one {name} under {parent}: {at_debug:?}"
        );
    }
    assert_eq!(count(&at_debug, "store_operation"), 0, "no shared store");

    let over_a_store = spans_created(Level::DEBUG, hits, true).await;
    let store_operations: Vec<_> = over_a_store
        .iter()
        .filter(|(name, _)| *name == "store_operation")
        .collect();
    // Read, lease, write, release: all the load's, and none for the hits,
    // which the memory tier answers.
    assert!(store_operations.len() >= 4, "{over_a_store:?}");
    assert!(
        store_operations
            .iter()
            .all(|(_, parent)| *parent == Some("load")),
        "{over_a_store:?}"
    );
}
