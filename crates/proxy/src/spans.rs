//! The `tracing` spans of a token request, which the binary exports as
//! OpenTelemetry traces: the request, the load it starts or joins, and the
//! shared-store operations of that load (the upstream crate adds each
//! attempt and budget wait under the load).
//!
//! Every span is at `DEBUG`. With traces off and logs at `info` (the
//! default), a span is disabled at its callsite: `debug_span!` checks the
//! maximum level, finds `DEBUG` off and returns a disabled span without
//! calling the subscriber, allocating or evaluating its fields, and the
//! `record_*` functions return at once. The hit path so pays one level
//! check per request, the cost of any disabled log line, and the request
//! span is created only when something will record it.
//!
//! No span carries a secret or a client id: the route, the key's
//! fingerprint (the short hex prefix the logs show, not the key), how the
//! request was answered, statuses and the kinds of failures.

use axum::response::Response;
use http::HeaderMap;
use tokencache_core::{CacheKey, StoreError};
use tracing::field::Empty;
use tracing::{Level, Span};

use crate::cache_status::CACHE_STATUS;
use crate::outcome::Outcome;

/// The span of one token request on `route` (its label in metrics) at
/// `path`; it continues the caller's trace when `headers` carry a
/// `traceparent`. Inlined, so that a disabled span costs the hit path
/// what the macro costs (a few nanoseconds), not a call returning it.
#[inline]
pub(crate) fn token_request(route: &str, path: &str, headers: &HeaderMap) -> Span {
    let span = tracing::debug_span!(
        "token_request",
        otel.kind = "server",
        otel.status_code = Empty,
        http.request.method = "POST",
        http.route = path,
        tokencache.route = route,
        tokencache.key = Empty,
        tokencache.cache_status = Empty,
        http.response.status_code = Empty,
    );
    tokencache_upstream::continue_trace(&span, headers);
    span
}

/// Records on the request's span how it was answered: the `outcome` label
/// of its `Cache-Status` (as in `tokencache_requests_total`) and the HTTP
/// status; a 5xx marks the span as failed.
pub(crate) fn record_answer(span: &Span, response: &Response) {
    if span.is_disabled() {
        return;
    }
    let cache_status = response
        .headers()
        .get(&CACHE_STATUS)
        .map(http::HeaderValue::as_bytes);
    span.record(
        "tokencache.cache_status",
        Outcome::of_cache_status(cache_status).label(),
    );
    span.record("http.response.status_code", response.status().as_u16());
    if response.status().is_server_error() {
        span.record("otel.status_code", "error");
    }
}

/// Records `key`'s fingerprint on the current span (the request's). Called
/// on the hit path, so it first checks the level, which costs nothing
/// measurable, before it looks the current span up.
pub(crate) fn record_key(key: &CacheKey) {
    if !tracing::level_enabled!(Level::DEBUG) {
        return;
    }
    let span = Span::current();
    if !span.is_disabled() {
        span.record("tokencache.key", tracing::field::display(key.fingerprint()));
    }
}

/// The span of one load of `key` for `purpose` (`load`: a caller's miss;
/// `refresh`: a background refresh, whose parent is the request that
/// found the entry aging).
pub(crate) fn load(purpose: &'static str, key: &CacheKey) -> Span {
    tracing::debug_span!(
        "load",
        otel.status_code = Empty,
        tokencache.purpose = purpose,
        tokencache.key = %key.fingerprint(),
        tokencache.load_outcome = Empty,
    )
}

/// Records on the current span (the load's) what the load produced, and
/// whether it failed.
pub(crate) fn record_load(outcome: &'static str, failed: bool) {
    let span = Span::current();
    if span.is_disabled() {
        return;
    }
    span.record("tokencache.load_outcome", outcome);
    if failed {
        span.record("otel.status_code", "error");
    }
}

/// The span of one shared-store operation (`op`: `get`, `put`, `lease`,
/// …) on `store` (`redis`, `dynamodb`, …), inside a request or a load.
/// The store's background work (the purge-log poll every half second)
/// belongs to no request and gets no span, so it makes no trace of its own.
pub(crate) fn store_operation(store: &'static str, op: &'static str) -> Span {
    if !tracing::level_enabled!(Level::DEBUG) || Span::current().is_none() {
        return Span::none();
    }
    tracing::debug_span!(
        "store_operation",
        otel.kind = "client",
        otel.status_code = Empty,
        db.system.name = store,
        db.operation.name = op,
        error.type = Empty,
    )
}

/// Records on a store operation's span that it failed, and how (the kind
/// only: a store's message may name a host or a key).
pub(crate) fn record_store_failure(span: &Span, error: &StoreError) {
    if span.is_disabled() {
        return;
    }
    let kind = match error {
        StoreError::Unavailable(_) => "unavailable",
        StoreError::Protocol(_) => "protocol",
        StoreError::Refused(_) => "refused",
        _ => "other",
    };
    span.record("otel.status_code", "error");
    span.record("error.type", kind);
}
