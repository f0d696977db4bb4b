//! The proxy's metrics: handles registered once, so the hit path only adds
//! to an atomic.
//!
//! Names follow Prometheus' rules: base units (seconds, bytes), `_total`
//! on every counter, a `route` label on what a route does, and one gauge
//! per state where a thing has states.

use std::sync::atomic::{AtomicU8, AtomicU16, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, OnceLock, PoisonError};
use std::time::Duration;

use metrics::{
    Counter, Gauge, Histogram, Key, KeyName, Label, Metadata, Recorder, SharedString, Unit,
};
use metrics_exporter_prometheus::{
    Matcher, PrometheusBuilder, PrometheusHandle, PrometheusRecorder,
};
use tokencache_upstream::{BreakerState, BudgetGroup};

use crate::answer_latency::{self, AnswerLatency};
use crate::client_counts::{ClientCount, ClientCounts};
pub(crate) use crate::outcome::{OUTCOMES, Outcome};
use crate::process_metrics::ProcessSample;
use crate::striped::StripedCounter;

static METADATA: Metadata<'static> =
    Metadata::new(module_path!(), metrics::Level::INFO, Some(module_path!()));

const UPSTREAM_LATENCY: &str = "tokencache_upstream_request_duration_seconds";
const BUDGET_WAIT: &str = "tokencache_budget_wait_seconds";
const STORE_LATENCY: &str = "tokencache_store_operation_duration_seconds";

/// Shared-store operations: Redis answers in a fraction of a millisecond,
/// DynamoDB in a few; the tail up to the operation timeout is what an
/// operator looks for.
const STORE_LATENCY_BUCKETS: [f64; 11] = [
    0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0,
];

/// Upstream latency buckets: Cognito answers in tens of milliseconds; the
/// long tail up to the request timeout is what an operator looks for.
const LATENCY_BUCKETS: [f64; 12] = [
    0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0,
];

/// Budget waits: a slot frees within one refill interval, milliseconds at
/// the usual rates; seconds mean the budget is saturated.
const BUDGET_WAIT_BUCKETS: [f64; 12] = [
    0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
];

/// The `route` label of what is counted before a request reaches a route
/// (an unknown path, a body that is not a token request).
const UNROUTED: &str = "unrouted";

/// The commit the binary was built from (see `build.rs`).
const COMMIT: &str = env!("TOKENCACHE_COMMIT");

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

/// The metrics of one route, each series labelled with its path.
#[derive(Debug)]
struct RouteMetrics {
    name: Arc<str>,
    /// Per-outcome counts, striped (the hit path counts every request);
    /// published to `outcome_counters` when metrics are rendered.
    outcomes: [StripedCounter; OUTCOMES],
    outcome_counters: [Counter; OUTCOMES],
    latency: AnswerLatency,
    /// 2xx, 3xx, 4xx, 5xx, failed.
    upstream: [Counter; 5],
    upstream_latency: Histogram,
    refreshes_ok: Counter,
    refreshes_failed: Counter,
    retries_transport: Counter,
    retries_answer: Counter,
    throttled: Counter,
    budget_waits: Counter,
    budget_wait: Histogram,
    budget_rejections: Counter,
    /// For the status page, which cannot read the exporter's counters.
    upstream_total: AtomicU64,
    throttles: AtomicU64,
    /// The last upstream failure: 0 none yet, 1 no answer, else the status.
    last_error: AtomicU16,
    /// The breaker's state as [`BreakerState::as_gauge`] numbers it.
    breaker: AtomicU8,
}

/// What the status page shows of a route: counts since start.
#[derive(Debug, Clone)]
pub(crate) struct RouteSnapshot {
    /// The route's path (or [`UNROUTED`]).
    pub(crate) name: Arc<str>,
    /// Requests by [`Outcome::index`].
    pub(crate) outcomes: [u64; OUTCOMES],
    /// Upstream attempts.
    pub(crate) upstream: u64,
    /// Upstream throttles.
    pub(crate) throttles: u64,
    /// The last upstream failure: `Some(None)` when no answer came,
    /// `Some(Some(status))` for an error status.
    pub(crate) last_error: Option<Option<u16>>,
    /// `closed`, `open` or `half_open`.
    pub(crate) breaker: &'static str,
}

impl RouteMetrics {
    /// The metrics of route `name`, whose upstream draws on budget `group`
    /// (empty for what no route answers).
    fn new(recorder: &PrometheusRecorder, name: &str, group: &str) -> Self {
        let labelled = |metric: &'static str, label: &'static str, value: &'static str| {
            let key = Key::from_parts(
                metric,
                vec![
                    Label::from_static_parts(label, value),
                    Label::new("route", name.to_owned()),
                ],
            );
            recorder.register_counter(&key, &METADATA)
        };
        let route_key = |metric: &'static str| {
            Key::from_parts(metric, vec![Label::new("route", name.to_owned())])
        };
        // What the budget does is labelled with its group too, so a
        // group's waits and throttles add up over its routes.
        let group_key = |metric: &'static str| {
            Key::from_parts(
                metric,
                vec![
                    Label::new("route", name.to_owned()),
                    Label::new("group", group.to_owned()),
                ],
            )
        };
        let group_counter =
            |metric: &'static str| recorder.register_counter(&group_key(metric), &METADATA);
        let outcome = |o: Outcome| labelled("tokencache_requests_total", "outcome", o.label());
        let upstream = |status| labelled("tokencache_upstream_requests_total", "status", status);
        let retries = |reason| labelled("tokencache_upstream_retries_total", "reason", reason);
        Self {
            name: name.into(),
            outcomes: Default::default(),
            outcome_counters: Outcome::ALL.map(outcome),
            latency: AnswerLatency::default(),
            upstream: ["2xx", "3xx", "4xx", "5xx", "failed"].map(upstream),
            upstream_latency: recorder.register_histogram(&route_key(UPSTREAM_LATENCY), &METADATA),
            refreshes_ok: labelled("tokencache_refreshes_total", "result", "ok"),
            refreshes_failed: labelled("tokencache_refreshes_total", "result", "failed"),
            retries_transport: retries("transport"),
            retries_answer: retries("answer"),
            throttled: group_counter("tokencache_upstream_throttled_total"),
            budget_waits: group_counter("tokencache_budget_waits_total"),
            budget_wait: recorder.register_histogram(&group_key(BUDGET_WAIT), &METADATA),
            budget_rejections: group_counter("tokencache_budget_rejections_total"),
            upstream_total: AtomicU64::new(0),
            throttles: AtomicU64::new(0),
            last_error: AtomicU16::new(0),
            breaker: AtomicU8::new(BreakerState::Closed.as_gauge()),
        }
    }
}

/// A route's breaker state: one gauge per state, 1 for the current one.
#[derive(Debug)]
pub(crate) struct BreakerGauges {
    route: Arc<RouteMetrics>,
    closed: Gauge,
    open: Gauge,
    half_open: Gauge,
}

impl BreakerGauges {
    /// Records that the breaker is now in `state`.
    pub(crate) fn set(&self, state: BreakerState) {
        let is = |s: BreakerState| if s == state { 1.0 } else { 0.0 };
        self.closed.set(is(BreakerState::Closed));
        self.open.set(is(BreakerState::Open));
        self.half_open.set(is(BreakerState::HalfOpen));
        self.route
            .breaker
            .store(state.as_gauge(), Ordering::Relaxed);
    }
}

/// A budget group's gauges, set from the group when scraped.
#[derive(Debug)]
struct GroupGauges {
    group: Arc<BudgetGroup>,
    configured: Gauge,
    current: Gauge,
    learned: Gauge,
    slots: Counter,
    throttles: Counter,
    fallback: Gauge,
    replicas: Gauge,
}

impl GroupGauges {
    fn new(recorder: &PrometheusRecorder, group: Arc<BudgetGroup>) -> Self {
        let key = |metric: &'static str| {
            Key::from_parts(metric, vec![Label::new("group", group.name().to_owned())])
        };
        let rate = |kind: &'static str| {
            let key = Key::from_parts(
                "tokencache_budget_rate",
                vec![
                    Label::new("group", group.name().to_owned()),
                    Label::from_static_parts("kind", kind),
                ],
            );
            recorder.register_gauge(&key, &METADATA)
        };
        Self {
            configured: rate("configured"),
            current: rate("current"),
            learned: rate("learned"),
            slots: recorder.register_counter(&key("tokencache_budget_slots_total"), &METADATA),
            throttles: recorder
                .register_counter(&key("tokencache_budget_throttles_total"), &METADATA),
            fallback: recorder.register_gauge(&key("tokencache_budget_fallback"), &METADATA),
            replicas: recorder.register_gauge(&key("tokencache_budget_replicas"), &METADATA),
            group,
        }
    }

    /// Sets every series from the group now. An unlimited group's rates
    /// read 0 (Prometheus has no use for +Inf here).
    #[allow(clippy::cast_precision_loss)] // counts far below 2^53
    fn publish(&self) {
        let finite = |rate: f64| if rate.is_finite() { rate } else { 0.0 };
        self.configured.set(finite(self.group.configured_rate()));
        self.current.set(finite(self.group.rate()));
        self.learned.set(finite(self.group.learned_limit()));
        self.slots.absolute(self.group.slots_taken());
        self.throttles.absolute(self.group.throttles());
        self.fallback
            .set(if self.group.in_fallback() { 1.0 } else { 0.0 });
        self.replicas.set(f64::from(self.group.replicas()));
    }
}

/// The shared store's health as the status page shows it.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) struct StoreHealth {
    /// Operations since start.
    pub(crate) operations: u64,
    /// Of them, those that failed or timed out.
    pub(crate) errors: u64,
    /// Recent latency (an exponentially weighted mean over about the last
    /// twenty operations), in milliseconds; `None` before the first.
    pub(crate) recent_latency_ms: Option<f64>,
}

/// Counts behind [`StoreHealth`]: atomics, updated without a lock (two
/// operations racing on the mean lose one sample, which a mean can spare).
#[derive(Debug, Default)]
struct StoreHealthRecorder {
    operations: AtomicU64,
    errors: AtomicU64,
    /// f64 bits of the mean in milliseconds; 0 bits before the first.
    recent_latency_ms: AtomicU64,
}

impl StoreHealthRecorder {
    /// The weight of the newest operation in the mean.
    const WEIGHT: f64 = 0.05;

    fn record(&self, elapsed: Duration, succeeded: bool) {
        let first = self.operations.fetch_add(1, Ordering::Relaxed) == 0;
        if !succeeded {
            self.errors.fetch_add(1, Ordering::Relaxed);
        }
        let millis = elapsed.as_secs_f64() * 1000.0;
        let mean = if first {
            millis
        } else {
            let before = f64::from_bits(self.recent_latency_ms.load(Ordering::Relaxed));
            before + (millis - before) * Self::WEIGHT
        };
        self.recent_latency_ms
            .store(mean.to_bits(), Ordering::Relaxed);
    }

    fn read(&self) -> StoreHealth {
        let operations = self.operations.load(Ordering::Relaxed);
        StoreHealth {
            operations,
            errors: self.errors.load(Ordering::Relaxed),
            recent_latency_ms: (operations > 0)
                .then(|| f64::from_bits(self.recent_latency_ms.load(Ordering::Relaxed))),
        }
    }
}

/// What every clone of [`ProxyMetrics`] shares.
struct Registry {
    handle: PrometheusHandle,
    recorder: PrometheusRecorder,
    /// Every route's metrics, for the striped counts and the answer
    /// latencies to be written out when scraped.
    routes: Mutex<Vec<Arc<RouteMetrics>>>,
    /// Every budget group's gauges.
    groups: OnceLock<Vec<GroupGauges>>,
    /// The shared store's operations, for the status page.
    store_health: StoreHealthRecorder,
    negative_hits: Counter,
    breaker_rejections: Counter,
    store_unreadable: Counter,
    store_breaker: Gauge,
    fleet_purges: Counter,
    /// By [`ConnectionEvent`], in its order.
    connections: [Counter; 4],
    entries: Gauge,
    bytes: Gauge,
    /// Requests per client id, once [`ProxyMetrics::count_clients`] asked.
    clients: OnceLock<ClientCounts>,
}

impl Registry {
    /// The metrics of route `name` (drawing on budget `group`), registered
    /// on first use.
    fn route(&self, name: &str, group: &str) -> Arc<RouteMetrics> {
        let mut routes = self.routes.lock().unwrap_or_else(PoisonError::into_inner);
        if let Some(found) = routes.iter().find(|route| &*route.name == name) {
            return Arc::clone(found);
        }
        let route = Arc::new(RouteMetrics::new(&self.recorder, name, group));
        routes.push(Arc::clone(&route));
        route
    }
}

/// The proxy's metrics, each registered once with its own recorder (not the
/// process-global one, so several proxies in one test process stay apart).
///
/// A clone made with [`for_route`](Self::for_route) labels what it counts
/// with that route; the others count under `route="unrouted"`.
#[derive(Clone)]
pub(crate) struct ProxyMetrics {
    registry: Arc<Registry>,
    route_name: Arc<str>,
    /// This clone's route, registered when first counted in (an unrouted
    /// clone may never count a request).
    route: Arc<OnceLock<Arc<RouteMetrics>>>,
}

impl std::fmt::Debug for ProxyMetrics {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ProxyMetrics")
            .field("route", &self.route_name)
            .finish_non_exhaustive()
    }
}

impl ProxyMetrics {
    pub(crate) fn new() -> Self {
        let recorder = PrometheusBuilder::new()
            .set_buckets_for_metric(Matcher::Full(UPSTREAM_LATENCY.into()), &LATENCY_BUCKETS)
            .and_then(|builder| {
                builder
                    .set_buckets_for_metric(Matcher::Full(BUDGET_WAIT.into()), &BUDGET_WAIT_BUCKETS)
            })
            .and_then(|builder| {
                builder.set_buckets_for_metric(
                    Matcher::Full(STORE_LATENCY.into()),
                    &STORE_LATENCY_BUCKETS,
                )
            })
            // Only an empty bucket list is refused, and these are not.
            .unwrap_or_else(|_| PrometheusBuilder::new())
            .build_recorder();
        describe(&recorder);
        let plain =
            |name: &'static str| recorder.register_counter(&Key::from_name(name), &METADATA);
        let connection = |value: &'static str| {
            let key = Key::from_parts(
                "tokencache_connections_total",
                vec![Label::from_static_parts("result", value)],
            );
            recorder.register_counter(&key, &METADATA)
        };
        let build_info = Key::from_parts(
            "tokencache_build_info",
            vec![
                Label::from_static_parts("version", env!("CARGO_PKG_VERSION")),
                Label::from_static_parts("commit", COMMIT),
            ],
        );
        recorder.register_gauge(&build_info, &METADATA).set(1.0);
        let registry = Registry {
            handle: recorder.handle(),
            routes: Mutex::default(),
            groups: OnceLock::new(),
            store_health: StoreHealthRecorder::default(),
            negative_hits: plain("tokencache_negative_cache_hits_total"),
            breaker_rejections: plain("tokencache_breaker_rejections_total"),
            store_unreadable: plain("tokencache_store_unreadable_total"),
            store_breaker: recorder
                .register_gauge(&Key::from_name("tokencache_store_breaker_open"), &METADATA),
            fleet_purges: plain("tokencache_fleet_purges_total"),
            connections: [
                connection("accepted"),
                connection("reclaimed"),
                connection("refused_per_ip"),
                connection("refused_saturated"),
            ],
            entries: recorder
                .register_gauge(&Key::from_name("tokencache_cache_entries"), &METADATA),
            bytes: recorder.register_gauge(&Key::from_name("tokencache_cache_bytes"), &METADATA),
            clients: OnceLock::new(),
            recorder,
        };
        Self {
            registry: Arc::new(registry),
            route_name: UNROUTED.into(),
            route: Arc::default(),
        }
    }

    /// The same metrics, counting what a route does under `route="path"`
    /// (and what its budget does under `group` too). Its series are
    /// registered now, so they read 0 before any traffic.
    pub(crate) fn for_route(&self, route: &str, group: &str) -> Self {
        let metrics = self.registry.route(route, group);
        Self {
            registry: Arc::clone(&self.registry),
            route_name: route.into(),
            route: Arc::new(OnceLock::from(metrics)),
        }
    }

    fn route(&self) -> &RouteMetrics {
        self.route
            .get_or_init(|| self.registry.route(&self.route_name, ""))
    }

    /// Publishes the budget groups' rates, slots, throttles, fallback and
    /// fleet size when scraped. (Once: the groups are made with the proxy.)
    pub(crate) fn watch_budgets(&self, groups: &[Arc<BudgetGroup>]) {
        let recorder = &self.registry.recorder;
        let _ = self.registry.groups.set(
            groups
                .iter()
                .map(|group| GroupGauges::new(recorder, Arc::clone(group)))
                .collect(),
        );
    }

    /// The breaker-state gauges of one route, starting closed.
    pub(crate) fn breaker_gauge(&self, route: &str) -> BreakerGauges {
        let gauge = |state: &'static str| {
            let key = Key::from_parts(
                "tokencache_breaker_state",
                vec![
                    Label::new("route", route.to_owned()),
                    Label::from_static_parts("state", state),
                ],
            );
            self.registry.recorder.register_gauge(&key, &METADATA)
        };
        let gauges = BreakerGauges {
            route: self.registry.route(route, ""),
            closed: gauge("closed"),
            open: gauge("open"),
            half_open: gauge("half_open"),
        };
        gauges.set(BreakerState::Closed);
        gauges
    }

    pub(crate) fn retry(&self, transport: bool) {
        let route = self.route();
        if transport {
            route.retries_transport.increment(1);
        } else {
            route.retries_answer.increment(1);
        }
    }

    pub(crate) fn throttled(&self) {
        let route = self.route();
        route.throttled.increment(1);
        route.throttles.fetch_add(1, Ordering::Relaxed);
    }

    pub(crate) fn budget_wait(&self, waited: Duration) {
        let route = self.route();
        route.budget_waits.increment(1);
        route.budget_wait.record(waited.as_secs_f64());
    }

    pub(crate) fn budget_rejected(&self) {
        self.route().budget_rejections.increment(1);
    }

    pub(crate) fn negative_hit(&self) {
        self.registry.negative_hits.increment(1);
    }

    /// A shared-store operation failed.
    /// A shared-store operation took `elapsed` and `succeeded` (or failed,
    /// or timed out): its latency, by operation, and the status page's
    /// running figures.
    pub(crate) fn store_operation(&self, op: &'static str, elapsed: Duration, succeeded: bool) {
        let key = Key::from_parts(STORE_LATENCY, vec![Label::from_static_parts("op", op)]);
        // Off the hit path (misses, and a memory entry's occasional look
        // at the store): the lookup by name costs nothing that shows.
        self.registry
            .recorder
            .register_histogram(&key, &METADATA)
            .record(elapsed.as_secs_f64());
        self.registry.store_health.record(elapsed, succeeded);
    }

    /// The shared store's latency and errors, for the status page.
    pub(crate) fn store_health(&self) -> StoreHealth {
        self.registry.store_health.read()
    }

    pub(crate) fn store_error(&self, op: &'static str) {
        let key = Key::from_parts(
            "tokencache_store_errors_total",
            vec![Label::from_static_parts("op", op)],
        );
        // Registration is idempotent; failures are rare, so the lookup is
        // off the hit path.
        self.registry
            .recorder
            .register_counter(&key, &METADATA)
            .increment(1);
    }

    /// The token listener admitted or refused a connection.
    pub(crate) fn connection(&self, event: ConnectionEvent) {
        self.registry.connections[event as usize].increment(1);
    }

    /// A shared entry could not be opened (tampered, unknown key).
    pub(crate) fn store_unreadable(&self) {
        self.registry.store_unreadable.increment(1);
    }

    /// The shared store's breaker opened (`true`) or closed.
    pub(crate) fn store_breaker(&self, open: bool) {
        self.registry
            .store_breaker
            .set(if open { 1.0 } else { 0.0 });
    }

    /// A purge announced by another replica was applied here.
    pub(crate) fn fleet_purge(&self) {
        self.registry.fleet_purges.increment(1);
    }

    pub(crate) fn breaker_rejected(&self) {
        self.registry.breaker_rejections.increment(1);
    }

    pub(crate) fn request(&self, outcome: Outcome) {
        self.route().outcomes[outcome.index()].add(1);
    }

    /// Starts counting requests per client id (for the status page; never
    /// a metric label, whose values would grow without bound).
    pub(crate) fn count_clients(&self) {
        self.registry.clients.get_or_init(ClientCounts::default);
    }

    /// Counts a cacheable request of `client_id` answered with `outcome`,
    /// when clients are counted.
    pub(crate) fn client(&self, client_id: &str, outcome: Outcome) {
        if let Some(clients) = self.registry.clients.get() {
            clients.record(client_id, outcome.is_saved());
        }
    }

    /// The `n` busiest clients, or `None` when clients are not counted.
    pub(crate) fn busiest_clients(&self, n: usize) -> Option<Vec<ClientCount>> {
        self.registry
            .clients
            .get()
            .map(|clients| clients.busiest(n))
    }

    /// The token listener answered, with `outcome`, `elapsed` after the
    /// request arrived.
    pub(crate) fn answered(&self, outcome: Outcome, elapsed: Duration) {
        self.route().latency.record(outcome, elapsed);
    }

    /// One upstream exchange: its status (`None` when no answer came) and
    /// how long it took.
    pub(crate) fn upstream(&self, status: Option<http::StatusCode>, elapsed: Duration) {
        let route = self.route();
        let index = match status.map(|status| status.as_u16() / 100) {
            Some(2) => 0,
            Some(3) => 1,
            Some(4) => 2,
            Some(5) => 3,
            _ => 4,
        };
        route.upstream[index].increment(1);
        route.upstream_latency.record(elapsed.as_secs_f64());
        route.upstream_total.fetch_add(1, Ordering::Relaxed);
        match status {
            None => route.last_error.store(1, Ordering::Relaxed),
            Some(status) if status.is_client_error() || status.is_server_error() => {
                route.last_error.store(status.as_u16(), Ordering::Relaxed);
            }
            Some(_) => {}
        }
    }

    pub(crate) fn refresh(&self, succeeded: bool) {
        let route = self.route();
        if succeeded {
            route.refreshes_ok.increment(1);
        } else {
            route.refreshes_failed.increment(1);
        }
    }

    /// What every route counted so far, in the order routes registered.
    pub(crate) fn snapshot(&self) -> Vec<RouteSnapshot> {
        self.routes()
            .iter()
            .map(|route| RouteSnapshot {
                name: Arc::clone(&route.name),
                outcomes: Outcome::ALL.map(|o| route.outcomes[o.index()].sum()),
                upstream: route.upstream_total.load(Ordering::Relaxed),
                throttles: route.throttles.load(Ordering::Relaxed),
                last_error: match route.last_error.load(Ordering::Relaxed) {
                    0 => None,
                    1 => Some(None),
                    status => Some(Some(status)),
                },
                breaker: match route.breaker.load(Ordering::Relaxed) {
                    1 => "open",
                    2 => "half_open",
                    _ => "closed",
                },
            })
            .collect()
    }

    fn routes(&self) -> Vec<Arc<RouteMetrics>> {
        self.registry
            .routes
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }

    /// The Prometheus text, with the store's size read now.
    #[allow(clippy::cast_precision_loss)] // counts far below 2^53
    pub(crate) fn render(&self, entries: usize, bytes: usize) -> String {
        let routes = self.routes();
        for route in &routes {
            for (striped, counter) in route.outcomes.iter().zip(&route.outcome_counters) {
                counter.absolute(striped.sum());
            }
        }
        self.registry.entries.set(entries as f64);
        self.registry.bytes.set(bytes as f64);
        for group in self.registry.groups.get().into_iter().flatten() {
            group.publish();
        }
        let mut text = self.registry.handle.render();
        if !routes.is_empty() {
            answer_latency::header(&mut text);
            for route in &routes {
                route.latency.render(&route.name, &mut text);
            }
        }
        if let Some(sample) = ProcessSample::read() {
            sample.render(&mut text);
        }
        text
    }

    /// Drains histogram samples into their buckets; run now and then.
    pub(crate) fn upkeep(&self) {
        self.registry.handle.run_upkeep();
    }
}

fn describe(recorder: &PrometheusRecorder) {
    let help = |text: &'static str| SharedString::from(text);
    let counter = |name: &'static str, text: &'static str| {
        recorder.describe_counter(KeyName::from_const_str(name), Some(Unit::Count), help(text));
    };
    let gauge = |name: &'static str, unit: Option<Unit>, text: &'static str| {
        recorder.describe_gauge(KeyName::from_const_str(name), unit, help(text));
    };
    counter(
        "tokencache_requests_total",
        "Token requests by route and outcome: hit, miss, stale (served while refreshing), collapsed (waited for another caller's fetch), bypass (not cacheable), error, negative (a remembered client error), shared (read from the shared store).",
    );
    counter(
        "tokencache_upstream_requests_total",
        "Requests to token endpoints by route and status class; `failed` when no answer came.",
    );
    recorder.describe_histogram(
        KeyName::from_const_str(UPSTREAM_LATENCY),
        Some(Unit::Seconds),
        help("Time for a token endpoint to answer, by route."),
    );
    counter(
        "tokencache_connections_total",
        "Connections to the token listener by what became of them: accepted, reclaimed (accepted in the place of an idle connection, which was closed), refused_per_ip (too many from one address), refused_saturated (every connection busy).",
    );
    counter(
        "tokencache_refreshes_total",
        "Background refreshes of aging tokens by route and result.",
    );
    counter(
        "tokencache_upstream_retries_total",
        "Upstream attempts retried, by route and reason: transport (no answer) or answer (throttled, 5xx, not a token).",
    );
    counter(
        "tokencache_upstream_throttled_total",
        "Upstream answers that were throttles (429, or Cognito's TooManyRequestsException), by route and budget group.",
    );
    counter(
        "tokencache_budget_waits_total",
        "Upstream requests that queued for the request budget, by route and budget group.",
    );
    recorder.describe_histogram(
        KeyName::from_const_str(BUDGET_WAIT),
        Some(Unit::Seconds),
        help("Time upstream requests queued for the request budget, by route and budget group."),
    );
    counter(
        "tokencache_budget_rejections_total",
        "Requests refused because no budget slot was free before their deadline (callers get 503), by route and budget group.",
    );
    gauge(
        "tokencache_budget_rate",
        None,
        "A budget group's rate in requests per second: kind=configured (the most it allows), kind=current (in force now: lowered by throttles, recovering between them), kind=learned (the limit learned from throttles: the rate the upstream last throttled at; the rate in force if it never has); the fleet's when shared.",
    );
    counter(
        "tokencache_budget_slots_total",
        "Upstream requests this replica sent under a budget group's slots.",
    );
    counter(
        "tokencache_budget_throttles_total",
        "Throttles this replica saw from a budget group's upstreams (each lowers the group's rate).",
    );
    gauge(
        "tokencache_budget_fallback",
        None,
        "1 while a shared budget group's store is unreachable and this replica draws on its own share (rate / replicas), else 0.",
    );
    gauge(
        "tokencache_budget_replicas",
        Some(Unit::Count),
        "The fleet's size a budget group's fallback share is reckoned with (heartbeats in the store, or --budget-replicas); 1 when not shared.",
    );
    counter(
        "tokencache_negative_cache_hits_total",
        "Requests answered from the negative cache (a remembered invalid_client, invalid_scope or unauthorized_client).",
    );
    counter(
        "tokencache_breaker_rejections_total",
        "Requests failed fast because a circuit breaker was open.",
    );
    counter(
        "tokencache_store_errors_total",
        "Shared-store operations that failed or timed out, by operation; the proxy carried on without the store.",
    );
    recorder.describe_histogram(
        KeyName::from_const_str(STORE_LATENCY),
        Some(Unit::Seconds),
        help(
            "Time shared-store operations took (failed and timed-out ones included), by operation.",
        ),
    );
    counter(
        "tokencache_store_unreadable_total",
        "Shared entries that could not be opened (tampered, or sealed with a key not in the ring); treated as misses.",
    );
    gauge(
        "tokencache_store_breaker_open",
        None,
        "1 while the shared store's breaker is open (requests skip the store until a background probe succeeds), else 0.",
    );
    counter(
        "tokencache_fleet_purges_total",
        "Purges read from the fleet's purge log and applied to this replica's memory tier.",
    );
    gauge(
        "tokencache_breaker_state",
        None,
        "Upstream circuit breaker state per route: 1 for the current state (closed, open, half_open), 0 for the others.",
    );
    gauge(
        "tokencache_cache_entries",
        Some(Unit::Count),
        "Tokens in the memory store.",
    );
    gauge(
        "tokencache_cache_bytes",
        Some(Unit::Bytes),
        "Bytes the memory store's entries take.",
    );
    gauge(
        "tokencache_build_info",
        None,
        "Always 1; the labels say which version and commit this binary was built from.",
    );
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn routes_are_labelled_and_counters_end_in_total() {
        let metrics = ProxyMetrics::new();
        let route = metrics.for_route("/oauth2/token", "idp.example");
        route.request(Outcome::Hit);
        route
            .for_route("/oauth2/token", "idp.example")
            .request(Outcome::Hit);
        route.answered(Outcome::Hit, Duration::from_micros(20));
        route.budget_wait(Duration::from_millis(30));
        route.upkeep();
        let text = metrics.render(0, 0);
        assert!(
            text.contains(r#"tokencache_requests_total{outcome="hit",route="/oauth2/token"} 2"#),
            "{text}"
        );
        assert!(
            text.contains(
                r#"tokencache_budget_wait_seconds_count{route="/oauth2/token",group="idp.example"} 1"#
            ),
            "{text}"
        );
        assert!(text.contains("tokencache_build_info{version=\""));
        assert!(!text.contains("microseconds"));
        for line in text.lines().filter_map(|l| l.strip_prefix("# TYPE ")) {
            let (name, kind) = line.split_once(' ').unwrap();
            assert_eq!(kind == "counter", name.ends_with("_total"), "{line}");
        }
    }
}
