//! The spans a token request makes, and the ones it does not: with traces
//! off and logs at `info` (the binary's defaults) the hit path creates no
//! span at all, while a subscriber that wants `DEBUG` spans (what the
//! binary's trace export installs) gets the request, its load and the
//! upstream attempt. The export itself is tested end to end against the
//! binary (`crates/cli/tests/traces`).
//!
//! One test in this file: the maximum level is global, so the two
//! subscribers are installed one after the other.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::sync::{Arc, Mutex};

use tokencache_test_support::{ManualClock, MockIdpServer, ProxyServer};
use tower::ServiceExt as _;
use tracing::Level;
use tracing::span::{Attributes, Id};
use tracing_subscriber::Layer;
use tracing_subscriber::filter::LevelFilter;
use tracing_subscriber::layer::{Context, SubscriberExt as _};

const CC: &str = "grant_type=client_credentials&scope=api/read";

/// Records the name of every span created.
#[derive(Clone, Default)]
struct SpanNames(Arc<Mutex<Vec<&'static str>>>);

impl<S: tracing::Subscriber> Layer<S> for SpanNames {
    fn on_new_span(&self, attributes: &Attributes<'_>, _: &Id, _: Context<'_, S>) {
        self.0.lock().unwrap().push(attributes.metadata().name());
    }
}

/// The spans created while a fresh proxy answers one miss and then `hits`
/// hits, under a subscriber that records spans up to `level`.
async fn spans_created(level: Level, hits: usize) -> Vec<&'static str> {
    let names = SpanNames::default();
    let subscriber =
        tracing_subscriber::registry().with(names.clone().with_filter(LevelFilter::from(level)));
    // This thread's subscriber; the test runtime runs every task on it.
    let _subscribed = tracing::subscriber::set_default(subscriber);
    let idp = MockIdpServer::start(tokencache_mock_idp::MockIdpConfig::default()).await;
    let proxy = ProxyServer::start_for(&idp, ManualClock::starting_now()).await;
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
    names.0.lock().unwrap().clone()
}

#[tokio::test]
async fn with_traces_off_the_hit_path_creates_no_span() {
    let hits = 3;
    let at_info = spans_created(Level::INFO, hits).await;
    assert!(at_info.is_empty(), "spans at info: {at_info:?}");

    let at_debug = spans_created(Level::DEBUG, hits).await;
    let count = |name| at_debug.iter().filter(|created| **created == name).count();
    assert_eq!(count("token_request"), hits + 1, "{at_debug:?}");
    assert_eq!(count("load"), 1, "{at_debug:?}");
    assert_eq!(count("upstream_attempt"), 1, "{at_debug:?}");
    assert_eq!(count("budget_wait"), 1, "{at_debug:?}");
}
