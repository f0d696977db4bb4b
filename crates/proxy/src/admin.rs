//! The admin listener: metrics, health, readiness, purge.

use std::sync::Arc;
use std::sync::atomic::Ordering;

use axum::Router;
use axum::extract::State;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use http::{HeaderValue, StatusCode, header};

use crate::answer::text;
use crate::proxy::Shared;

pub(crate) fn router(shared: Arc<Shared>) -> Router {
    Router::new()
        .route("/metrics", get(metrics))
        .route("/healthz", get(healthz))
        .route("/readyz", get(readyz))
        .route("/purge", post(purge))
        .with_state(shared)
}

async fn metrics(State(shared): State<Arc<Shared>>) -> Response {
    let body = shared
        .metrics
        .render(shared.store.len(), shared.store.bytes());
    let mut response = body.into_response();
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/plain; version=0.0.4; charset=utf-8"),
    );
    response
}

/// Alive: the process answers.
async fn healthz() -> Response {
    text(StatusCode::OK, "ok\n")
}

/// Ready: serving, not draining for shutdown.
async fn readyz(State(shared): State<Arc<Shared>>) -> Response {
    if shared.ready.load(Ordering::Relaxed) {
        text(StatusCode::OK, "ready\n")
    } else {
        text(StatusCode::SERVICE_UNAVAILABLE, "draining\n")
    }
}

/// Drops every cached token (after a credential leak, say).
async fn purge(State(shared): State<Arc<Shared>>) -> Response {
    let purged = shared.store.clear();
    tracing::info!(purged, "cache purged");
    axum::Json(serde_json::json!({ "purged": purged })).into_response()
}
