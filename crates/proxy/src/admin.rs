//! The admin listener: metrics, health and readiness (open, for scrapers
//! and probes), and purges (behind the admin bearer token).

use std::sync::Arc;
use std::sync::atomic::Ordering;

use axum::Router;
use axum::extract::{Query, State};
use axum::response::{IntoResponse, Response};
use axum::routing::{delete, get, post};
use http::{HeaderMap, HeaderValue, StatusCode, header};

use crate::answer::text;
use crate::proxy::Shared;

pub(crate) fn router(shared: Arc<Shared>) -> Router {
    Router::new()
        .route("/metrics", get(metrics))
        .route("/healthz", get(healthz))
        .route("/readyz", get(readyz))
        .route("/purge", post(purge))
        .route("/cache", delete(delete_cache))
        .with_state(shared)
}

/// The purges change what every client gets: they need the admin token.
/// The 401 to answer when the request does not carry it.
fn refusal(shared: &Shared, headers: &HeaderMap) -> Option<Response> {
    let presented = headers
        .get(header::AUTHORIZATION)
        .map(HeaderValue::as_bytes);
    match &shared.admin_token {
        Some(token) if token.admits(presented) => None,
        configured => {
            let description = if configured.is_some() {
                "a valid admin bearer token is required"
            } else {
                "the admin API is disabled: no admin token is configured"
            };
            let mut response = (
                StatusCode::UNAUTHORIZED,
                axum::Json(serde_json::json!({
                    "error": "invalid_token",
                    "error_description": description,
                })),
            )
                .into_response();
            response.headers_mut().insert(
                header::WWW_AUTHENTICATE,
                HeaderValue::from_static("Bearer realm=\"tokencache-admin\""),
            );
            Some(response)
        }
    }
}

#[derive(serde::Deserialize)]
struct CacheQuery {
    client_id: Option<String>,
}

/// `DELETE /cache` drops every token; `DELETE /cache?client_id=ID` drops
/// one client's (after a secret rotation or a revocation).
async fn delete_cache(
    State(shared): State<Arc<Shared>>,
    headers: HeaderMap,
    Query(query): Query<CacheQuery>,
) -> Response {
    if let Some(refused) = refusal(&shared, &headers) {
        return refused;
    }
    let purged = match query.client_id.as_deref() {
        Some(client_id) if !client_id.is_empty() => {
            crate::proxy::purge_client(&shared, client_id).await
        }
        _ => crate::proxy::purge(&shared).await,
    };
    axum::Json(serde_json::json!({ "purged": purged })).into_response()
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
async fn purge(State(shared): State<Arc<Shared>>, headers: HeaderMap) -> Response {
    if let Some(refused) = refusal(&shared, &headers) {
        return refused;
    }
    let purged = crate::proxy::purge(&shared).await;
    axum::Json(serde_json::json!({ "purged": purged })).into_response()
}
