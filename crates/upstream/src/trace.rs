//! Distributed tracing of the upstream exchange: the W3C trace context
//! (`traceparent`, `tracestate`) read from a caller's headers and written
//! on the requests the proxy sends, and the spans of each attempt and
//! budget wait.
//!
//! The spans are `tracing` spans at `DEBUG`, under this crate's target:
//! nothing records them unless the binary exports traces (or logs at
//! `debug`), and then a disabled span costs a level check. They carry no
//! secret: no URL (an upstream URL may hold credentials), no header, no
//! body; the host and port, the attempt's number, the backoff before it,
//! the answer's status or the kind of failure.
//!
//! The context goes through `opentelemetry`'s global propagator, which the
//! binary sets when it exports traces; until then it is the no-op one, and
//! nothing is read or written.

use std::time::Duration;

use http::HeaderMap;
use opentelemetry::trace::TraceContextExt as _;
use opentelemetry_http::{HeaderExtractor, HeaderInjector};
use reqwest::Url;
use tracing::Span;
use tracing::field::Empty;
use tracing_opentelemetry::OpenTelemetrySpanExt as _;

use crate::budget::Priority;
use crate::client::UpstreamResponse;
use crate::error::UpstreamError;

/// Makes `span` a child of the trace the caller's `headers` name (its
/// `traceparent`), if they name one; otherwise `span` keeps the parent it
/// has. Does nothing for a disabled span (and is inlined, so that costs
/// the hit path one check).
#[inline]
pub fn continue_trace(span: &Span, headers: &HeaderMap) {
    if span.is_disabled() {
        return;
    }
    let parent = opentelemetry::global::get_text_map_propagator(|propagator| {
        propagator.extract(&HeaderExtractor(headers))
    });
    if parent.span().span_context().is_valid() {
        // Only fails when no OpenTelemetry layer is installed (traces off,
        // a debug log on): there is no trace to continue then.
        let _ = span.set_parent(parent);
    }
}

/// Writes the current span's context (`traceparent`, `tracestate`) into
/// `headers`, replacing any the caller sent, so the upstream's own spans
/// join the proxy's trace. Leaves `headers` alone when the current span is
/// disabled (traces off).
pub(crate) fn inject_current(headers: &mut HeaderMap) {
    let span = Span::current();
    if span.is_disabled() {
        return;
    }
    let context = span.context();
    opentelemetry::global::get_text_map_propagator(|propagator| {
        propagator.inject_context(&context, &mut HeaderInjector(headers));
    });
}

/// The span of one attempt to reach the upstream at `url`: `number` counts
/// from 1; `backoff` is what the retry waited before it.
pub(crate) fn attempt_span(url: &Url, number: u32, backoff: Duration) -> Span {
    tracing::debug_span!(
        "upstream_attempt",
        otel.kind = "client",
        otel.status_code = Empty,
        server.address = url.host_str().unwrap_or(""),
        server.port = url.port_or_known_default(),
        tokencache.attempt = number,
        tokencache.backoff_ms = u64::try_from(backoff.as_millis()).unwrap_or(u64::MAX),
        http.response.status_code = Empty,
        error.type = Empty,
    )
}

/// The span of one wait for the request budget.
pub(crate) fn budget_wait_span(priority: Priority) -> Span {
    let priority = match priority {
        Priority::Caller => "caller",
        Priority::Background => "background",
    };
    tracing::debug_span!("budget_wait", tokencache.priority = priority)
}

/// Records how an attempt ended on the current span (the attempt's): the
/// answer's status, or the kind of failure. An error status (4xx, 5xx) or
/// no answer marks the span as failed, as OpenTelemetry's HTTP client
/// conventions say.
pub(crate) fn record_attempt(sent: &Result<UpstreamResponse, UpstreamError>) {
    let span = Span::current();
    if span.is_disabled() {
        return;
    }
    match sent {
        Ok(answer) => {
            let status = answer.status.as_u16();
            span.record("http.response.status_code", status);
            if status >= 400 {
                span.record("otel.status_code", "error");
                span.record("error.type", answer.status.as_str());
            }
        }
        Err(error) => {
            span.record("otel.status_code", "error");
            span.record("error.type", failure_kind(error));
        }
    }
}

/// Records on the current span (the attempt's) that the attempt never
/// left the proxy: refused by the budget (`budget_exhausted`) or the
/// breaker (`circuit_open`).
pub(crate) fn record_refused(kind: &'static str) {
    let span = Span::current();
    span.record("otel.status_code", "error");
    span.record("error.type", kind);
}

/// A short, fixed name for a failure: never a message that could carry
/// what the upstream or a library said.
fn failure_kind(error: &UpstreamError) -> &'static str {
    match error {
        UpstreamError::Config(_) => "config",
        UpstreamError::Connect(_) => "connect",
        UpstreamError::Timeout(_) => "timeout",
        UpstreamError::Transport(_) => "transport",
        UpstreamError::ResponseTooLarge { .. } => "response_too_large",
    }
}

#[cfg(test)]
mod tests {
    use http::HeaderValue;

    use super::*;

    #[test]
    fn nothing_is_written_or_read_while_traces_are_off() {
        let mut headers = HeaderMap::new();
        let caller = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01";
        headers.insert("traceparent", HeaderValue::from_static(caller));
        let span = Span::none();
        continue_trace(&span, &headers);
        let _entered = span.enter();
        inject_current(&mut headers);
        assert_eq!(headers.len(), 1);
        assert_eq!(headers["traceparent"], caller, "left as the caller sent it");
    }

    #[test]
    fn failures_are_named_by_kind_only() {
        let cases = [
            (UpstreamError::Timeout("slow".into()), "timeout"),
            (UpstreamError::Connect("refused".into()), "connect"),
            (UpstreamError::Transport("reset".into()), "transport"),
            (
                UpstreamError::ResponseTooLarge { limit: 1 },
                "response_too_large",
            ),
        ];
        for (error, kind) in cases {
            assert_eq!(failure_kind(&error), kind, "{error:?}");
        }
    }
}
