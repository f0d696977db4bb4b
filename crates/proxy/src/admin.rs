//! The admin listener: the status page, metrics, health and readiness
//! (open, for people, scrapers and probes), and purges (behind the admin
//! bearer token).

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use axum::extract::{Query, State};
use axum::response::{IntoResponse, Response};
use axum::routing::{delete, get, post};
use axum::{Extension, Router};
use http::{HeaderMap, HeaderValue, StatusCode, header};

use crate::answer::text;
use crate::cache::{Purged, TokenCache};
use crate::config::AdminToken;
use crate::connections::Connections;
use crate::metrics::ProxyMetrics;
use crate::status::StatusBoard;
use crate::status_page;

/// What the admin endpoints read and act on.
pub(crate) struct AdminState {
    pub(crate) cache: Arc<TokenCache>,
    pub(crate) metrics: ProxyMetrics,
    /// Cleared when the proxy starts draining.
    pub(crate) ready: Arc<AtomicBool>,
    /// The bearer token the purges require.
    pub(crate) admin_token: Option<AdminToken>,
    /// What the status page remembers between requests.
    pub(crate) status: StatusBoard,
}

pub(crate) fn router(shared: Arc<AdminState>) -> Router {
    Router::new()
        .route("/", get(status_page))
        .route("/status.json", get(status_json))
        .route("/metrics", get(metrics))
        .route("/healthz", get(healthz))
        .route("/readyz", get(readyz))
        .route("/purge", post(purge))
        .route("/cache", delete(delete_cache))
        .with_state(shared)
}

/// The purges change what every client gets: they need the admin token.
/// The 401 to answer when the request does not carry it.
fn refusal(shared: &AdminState, headers: &HeaderMap) -> Option<Response> {
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
    State(shared): State<Arc<AdminState>>,
    headers: HeaderMap,
    Query(query): Query<CacheQuery>,
) -> Response {
    if let Some(refused) = refusal(&shared, &headers) {
        return refused;
    }
    let purged = match query.client_id.as_deref() {
        Some(client_id) if !client_id.is_empty() => shared.cache.purge_client(client_id).await,
        _ => shared.cache.purge().await,
    };
    purge_answer(purged)
}

/// `{"purged": N}`, and with a shared store `"store_cleared"` (whether its
/// entries were removed) and `"fleet_notified"` (whether the other replicas
/// were told; else they drop their copies only within the memory tier's
/// time). A purge that failed in part can be repeated.
fn purge_answer(purged: Purged) -> Response {
    let mut body = serde_json::json!({ "purged": purged.purged });
    if let Some(shared) = purged.shared {
        body["store_cleared"] = shared.store_cleared.into();
        body["fleet_notified"] = shared.fleet_told.into();
    }
    axum::Json(body).into_response()
}

async fn metrics(State(shared): State<Arc<AdminState>>) -> Response {
    let memory = shared.cache.memory();
    let body = shared.metrics.render(memory.len(), memory.bytes());
    let mut response = body.into_response();
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/plain; version=0.0.4; charset=utf-8"),
    );
    response
}

/// `GET /`: the status page, for people; it holds no secret and no token,
/// so it is as open as `/metrics`.
async fn status_page(State(shared): State<Arc<AdminState>>) -> Response {
    let status = shared.status.status(&shared.metrics, &shared.cache);
    let mut response = status_page::render(&status).into_response();
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/html; charset=utf-8"),
    );
    // Nothing outside the admin listener, even if a value were injected.
    response.headers_mut().insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(
            "default-src 'none'; connect-src 'self'; style-src 'unsafe-inline'; script-src 'unsafe-inline'; img-src 'self'",
        ),
    );
    response
}

/// `GET /status.json`: what the status page shows.
async fn status_json(State(shared): State<Arc<AdminState>>) -> Response {
    axum::Json(shared.status.status(&shared.metrics, &shared.cache)).into_response()
}

/// Alive: the process answers.
async fn healthz() -> Response {
    text(StatusCode::OK, "ok\n".into())
}

/// Ready: serving, not draining for shutdown, and room on the token
/// listener (when served: its connection registry is an extension). A
/// degraded shared store does not make the proxy unready (it still
/// answers, from memory and upstream); the body says so for operators.
async fn readyz(
    State(shared): State<Arc<AdminState>>,
    connections: Option<Extension<Arc<Connections>>>,
) -> Response {
    if !shared.ready.load(Ordering::Relaxed) {
        return text(StatusCode::SERVICE_UNAVAILABLE, "draining\n".into());
    }
    if let Some(saturation) = connections.and_then(|Extension(c)| c.saturation()) {
        return text(StatusCode::SERVICE_UNAVAILABLE, format!("{saturation}\n"));
    }
    match shared.cache.tier().and_then(|tier| tier.trouble()) {
        Some(trouble) => text(StatusCode::OK, format!("ready (degraded)\n{trouble}\n")),
        None => text(StatusCode::OK, "ready\n".into()),
    }
}

/// Drops every cached token (after a credential leak, say).
async fn purge(State(shared): State<Arc<AdminState>>, headers: HeaderMap) -> Response {
    if let Some(refused) = refusal(&shared, &headers) {
        return refused;
    }
    purge_answer(shared.cache.purge().await)
}
