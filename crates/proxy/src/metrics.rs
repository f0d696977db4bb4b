//! The proxy's metrics: handles registered once, so the hit path only adds
//! to an atomic.

use std::sync::Arc;
use std::time::Duration;

use metrics::{
    Counter, Gauge, Histogram, Key, KeyName, Label, Metadata, Recorder, SharedString, Unit,
};
use metrics_exporter_prometheus::{
    Matcher, PrometheusBuilder, PrometheusHandle, PrometheusRecorder,
};

use crate::striped::StripedCounter;

static METADATA: Metadata<'static> =
    Metadata::new(module_path!(), metrics::Level::INFO, Some(module_path!()));

const UPSTREAM_LATENCY: &str = "tokencache_upstream_request_duration_seconds";

/// Upstream latency buckets: Cognito answers in tens of milliseconds; the
/// long tail up to the request timeout is what an operator looks for.
const LATENCY_BUCKETS: [f64; 12] = [
    0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0,
];

/// How a token request was answered.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Outcome {
    /// From cache, fresh.
    Hit,
    /// Fetched upstream for this caller.
    Miss,
    /// From cache, aging, with a refresh in the background.
    Stale,
    /// Waited for another caller's fetch.
    Collapsed,
    /// Not cacheable; passed through.
    Bypass,
    /// Answered from the negative cache.
    Negative,
    /// Answered from the shared tier.
    Shared,
    /// Answered with an error of the proxy's own.
    Error,
}

/// What the token listener did with a new connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum ConnectionEvent {
    /// Served.
    Accepted,
    /// Served in the place of an idle connection, which was closed.
    Reclaimed,
    /// Closed at once: its address had too many connections open.
    RefusedPerIp,
    /// Closed at once: every connection had a request in flight.
    RefusedSaturated,
}

/// The proxy's metrics, each registered once with its own recorder (not the
/// process-global one, so several proxies in one test process stay apart).
#[derive(Debug, Clone)]
pub(crate) struct ProxyMetrics {
    handle: PrometheusHandle,
    /// Per-outcome counts, striped (the hit path counts every request);
    /// published to `outcome_counters` when metrics are rendered.
    outcomes: Arc<[StripedCounter; 8]>,
    outcome_counters: [Counter; 8],
    upstream_2xx: Counter,
    upstream_3xx: Counter,
    upstream_4xx: Counter,
    upstream_5xx: Counter,
    upstream_failed: Counter,
    upstream_latency: Histogram,
    refreshes_ok: Counter,
    refreshes_failed: Counter,
    retries_transport: Counter,
    retries_answer: Counter,
    throttled: Counter,
    budget_waits: Counter,
    budget_wait_micros: Counter,
    budget_rejections: Counter,
    negative_hits: Counter,
    breaker_rejections: Counter,
    store_unreadable: Counter,
    /// By [`ConnectionEvent`], in its order.
    connections: [Counter; 4],
    entries: Gauge,
    bytes: Gauge,
    recorder: Arc<PrometheusRecorder>,
}

impl ProxyMetrics {
    pub(crate) fn new() -> Self {
        let recorder = PrometheusBuilder::new()
            .set_buckets_for_metric(Matcher::Full(UPSTREAM_LATENCY.into()), &LATENCY_BUCKETS)
            // Only an empty bucket list is refused, and this one is not.
            .unwrap_or_else(|_| PrometheusBuilder::new())
            .build_recorder();
        describe(&recorder);
        let outcome =
            |value: &'static str| counter(&recorder, "tokencache_requests_total", "outcome", value);
        let upstream = |value: &'static str| {
            counter(
                &recorder,
                "tokencache_upstream_requests_total",
                "status",
                value,
            )
        };
        let refresh =
            |value: &'static str| counter(&recorder, "tokencache_refreshes_total", "result", value);
        let connection = |value: &'static str| {
            counter(&recorder, "tokencache_connections_total", "result", value)
        };
        Self {
            handle: recorder.handle(),
            outcomes: Arc::default(),
            outcome_counters: [
                outcome("hit"),
                outcome("miss"),
                outcome("stale"),
                outcome("collapsed"),
                outcome("bypass"),
                outcome("error"),
                outcome("negative"),
                outcome("shared"),
            ],
            upstream_2xx: upstream("2xx"),
            upstream_3xx: upstream("3xx"),
            upstream_4xx: upstream("4xx"),
            upstream_5xx: upstream("5xx"),
            upstream_failed: upstream("failed"),
            upstream_latency: recorder
                .register_histogram(&Key::from_name(UPSTREAM_LATENCY), &METADATA),
            refreshes_ok: refresh("ok"),
            refreshes_failed: refresh("failed"),
            retries_transport: counter(
                &recorder,
                "tokencache_upstream_retries_total",
                "reason",
                "transport",
            ),
            retries_answer: counter(
                &recorder,
                "tokencache_upstream_retries_total",
                "reason",
                "answer",
            ),
            throttled: plain_counter(&recorder, "tokencache_upstream_throttled_total"),
            budget_waits: plain_counter(&recorder, "tokencache_budget_waits_total"),
            budget_wait_micros: plain_counter(
                &recorder,
                "tokencache_budget_wait_microseconds_total",
            ),
            budget_rejections: plain_counter(&recorder, "tokencache_budget_rejections_total"),
            negative_hits: plain_counter(&recorder, "tokencache_negative_cache_hits_total"),
            breaker_rejections: plain_counter(&recorder, "tokencache_breaker_rejections_total"),
            store_unreadable: plain_counter(&recorder, "tokencache_store_unreadable_total"),
            connections: [
                connection("accepted"),
                connection("reclaimed"),
                connection("refused_per_ip"),
                connection("refused_saturated"),
            ],
            entries: recorder
                .register_gauge(&Key::from_name("tokencache_cache_entries"), &METADATA),
            bytes: recorder.register_gauge(&Key::from_name("tokencache_cache_bytes"), &METADATA),
            recorder: Arc::new(recorder),
        }
    }

    /// The breaker-state gauge of one route (0 closed, 1 open, 2 half-open).
    pub(crate) fn breaker_gauge(&self, route: &str) -> Gauge {
        let key = Key::from_parts(
            "tokencache_breaker_state",
            vec![Label::new("route", route.to_owned())],
        );
        self.recorder.register_gauge(&key, &METADATA)
    }

    pub(crate) fn retry(&self, transport: bool) {
        if transport {
            self.retries_transport.increment(1);
        } else {
            self.retries_answer.increment(1);
        }
    }

    pub(crate) fn throttled(&self) {
        self.throttled.increment(1);
    }

    pub(crate) fn budget_wait(&self, waited: Duration) {
        self.budget_waits.increment(1);
        // Counters are integers: whole microseconds.
        self.budget_wait_micros
            .increment(u64::try_from(waited.as_micros()).unwrap_or(u64::MAX));
    }

    pub(crate) fn budget_rejected(&self) {
        self.budget_rejections.increment(1);
    }

    pub(crate) fn negative_hit(&self) {
        self.negative_hits.increment(1);
    }

    /// A shared-store operation failed.
    pub(crate) fn store_error(&self, op: &'static str) {
        let key = Key::from_parts(
            "tokencache_store_errors_total",
            vec![Label::from_static_parts("op", op)],
        );
        // Registration is idempotent; failures are rare, so the lookup is
        // off the hit path.
        self.recorder.register_counter(&key, &METADATA).increment(1);
    }

    /// The token listener admitted or refused a connection.
    pub(crate) fn connection(&self, event: ConnectionEvent) {
        self.connections[event as usize].increment(1);
    }

    /// A shared entry could not be opened (tampered, unknown key).
    pub(crate) fn store_unreadable(&self) {
        self.store_unreadable.increment(1);
    }

    pub(crate) fn breaker_rejected(&self) {
        self.breaker_rejections.increment(1);
    }

    pub(crate) fn request(&self, outcome: Outcome) {
        let index = match outcome {
            Outcome::Hit => 0,
            Outcome::Miss => 1,
            Outcome::Stale => 2,
            Outcome::Collapsed => 3,
            Outcome::Bypass => 4,
            Outcome::Error => 5,
            Outcome::Negative => 6,
            Outcome::Shared => 7,
        };
        self.outcomes[index].add(1);
    }

    /// One upstream exchange: its status (`None` when no answer came) and
    /// how long it took.
    pub(crate) fn upstream(&self, status: Option<http::StatusCode>, elapsed: Duration) {
        let counter = match status.map(|status| status.as_u16() / 100) {
            Some(2) => &self.upstream_2xx,
            Some(3) => &self.upstream_3xx,
            Some(4) => &self.upstream_4xx,
            Some(5) => &self.upstream_5xx,
            _ => &self.upstream_failed,
        };
        counter.increment(1);
        self.upstream_latency.record(elapsed.as_secs_f64());
    }

    pub(crate) fn refresh(&self, succeeded: bool) {
        if succeeded {
            self.refreshes_ok.increment(1);
        } else {
            self.refreshes_failed.increment(1);
        }
    }

    /// The Prometheus text, with the store's size read now.
    #[allow(clippy::cast_precision_loss)] // counts far below 2^53
    pub(crate) fn render(&self, entries: usize, bytes: usize) -> String {
        for (striped, counter) in self.outcomes.iter().zip(&self.outcome_counters) {
            counter.absolute(striped.sum());
        }
        self.entries.set(entries as f64);
        self.bytes.set(bytes as f64);
        self.handle.render()
    }

    /// Drains histogram samples into their buckets; run now and then.
    pub(crate) fn upkeep(&self) {
        self.handle.run_upkeep();
    }
}

fn counter(
    recorder: &PrometheusRecorder,
    name: &'static str,
    label: &'static str,
    value: &'static str,
) -> Counter {
    let key = Key::from_parts(name, vec![Label::from_static_parts(label, value)]);
    recorder.register_counter(&key, &METADATA)
}

fn plain_counter(recorder: &PrometheusRecorder, name: &'static str) -> Counter {
    recorder.register_counter(&Key::from_name(name), &METADATA)
}

fn describe(recorder: &PrometheusRecorder) {
    let help = |text: &'static str| SharedString::from(text);
    recorder.describe_counter(
        KeyName::from_const_str("tokencache_requests_total"),
        Some(Unit::Count),
        help("Token requests by outcome: hit, miss, stale (served while refreshing), collapsed (waited for another caller's fetch), bypass (not cacheable), error, negative (a remembered client error), shared (read from the shared store)."),
    );
    recorder.describe_counter(
        KeyName::from_const_str("tokencache_upstream_requests_total"),
        Some(Unit::Count),
        help("Requests to token endpoints by status class; `failed` when no answer came."),
    );
    recorder.describe_histogram(
        KeyName::from_const_str(UPSTREAM_LATENCY),
        Some(Unit::Seconds),
        help("Time for a token endpoint to answer."),
    );
    recorder.describe_counter(
        KeyName::from_const_str("tokencache_connections_total"),
        Some(Unit::Count),
        help("Connections to the token listener by what became of them: accepted, reclaimed (accepted in the place of an idle connection, which was closed), refused_per_ip (too many from one address), refused_saturated (every connection busy)."),
    );
    recorder.describe_counter(
        KeyName::from_const_str("tokencache_refreshes_total"),
        Some(Unit::Count),
        help("Background refreshes of aging tokens by result."),
    );
    recorder.describe_counter(
        KeyName::from_const_str("tokencache_upstream_retries_total"),
        Some(Unit::Count),
        help("Upstream attempts retried, by reason: transport (no answer) or answer (throttled, 5xx, not a token)."),
    );
    recorder.describe_counter(
        KeyName::from_const_str("tokencache_upstream_throttled_total"),
        Some(Unit::Count),
        help("Upstream answers that were throttles (429, or Cognito's TooManyRequestsException)."),
    );
    recorder.describe_counter(
        KeyName::from_const_str("tokencache_budget_waits_total"),
        Some(Unit::Count),
        help("Upstream requests that queued for the request budget."),
    );
    recorder.describe_counter(
        KeyName::from_const_str("tokencache_budget_wait_microseconds_total"),
        Some(Unit::Microseconds),
        help("Time spent queuing for the request budget, in microseconds."),
    );
    recorder.describe_counter(
        KeyName::from_const_str("tokencache_budget_rejections_total"),
        Some(Unit::Count),
        help("Requests refused because no budget slot was free before their deadline (callers get 503)."),
    );
    recorder.describe_counter(
        KeyName::from_const_str("tokencache_negative_cache_hits_total"),
        Some(Unit::Count),
        help("Requests answered from the negative cache (a remembered invalid_client, invalid_scope or unauthorized_client)."),
    );
    recorder.describe_counter(
        KeyName::from_const_str("tokencache_breaker_rejections_total"),
        Some(Unit::Count),
        help("Requests failed fast because a circuit breaker was open."),
    );
    recorder.describe_counter(
        KeyName::from_const_str("tokencache_store_errors_total"),
        Some(Unit::Count),
        help("Shared-store operations that failed or timed out, by operation; the proxy carried on without the store."),
    );
    recorder.describe_counter(
        KeyName::from_const_str("tokencache_store_unreadable_total"),
        Some(Unit::Count),
        help("Shared entries that could not be opened (tampered, or sealed with a key not in the ring); treated as misses."),
    );
    recorder.describe_gauge(
        KeyName::from_const_str("tokencache_breaker_state"),
        None,
        help("Circuit breaker state per route: 0 closed, 1 open, 2 half-open."),
    );
    recorder.describe_gauge(
        KeyName::from_const_str("tokencache_cache_entries"),
        Some(Unit::Count),
        help("Tokens in the memory store."),
    );
    recorder.describe_gauge(
        KeyName::from_const_str("tokencache_cache_bytes"),
        Some(Unit::Bytes),
        help("Bytes the memory store's entries take."),
    );
}
