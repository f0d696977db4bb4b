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
    text(StatusCode::OK, "ok\n".into())
}

/// Ready: serving, not draining for shutdown. A degraded shared store does
/// not make the proxy unready (it still answers, from memory and upstream);
/// the body says so for operators.
async fn readyz(State(shared): State<Arc<Shared>>) -> Response {
    if !shared.ready.load(Ordering::Relaxed) {
        return text(StatusCode::SERVICE_UNAVAILABLE, "draining\n".into());
    }
    match shared.tier.as_ref().and_then(|tier| tier.trouble()) {
        Some(trouble) => text(StatusCode::OK, format!("ready (degraded)\n{trouble}\n")),
        None => text(StatusCode::OK, "ready\n".into()),
    }
}

/// Drops every cached token (after a credential leak, say).
async fn purge(State(shared): State<Arc<Shared>>) -> Response {
    let purged = crate::proxy::purge(&shared).await;
    axum::Json(serde_json::json!({ "purged": purged })).into_response()
}
