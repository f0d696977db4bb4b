//! What the status page shows (`/status.json`): counts since start, a short
//! history of request rates and hit ratios, each route's upstream, the
//! cache and the shared store.
//!
//! Nothing here can hold a secret or a token: routes are paths, upstream
//! errors are status codes, the cache is counted, never listed.

use std::collections::VecDeque;
use std::sync::{Arc, Mutex, PoisonError};

use serde::Serialize;
use tokencache_core::{Freshness, UnixMillis};
use tokencache_upstream::BudgetGroup;

use crate::cache::TokenCache;
use crate::metrics::{OUTCOMES, Outcome, ProxyMetrics, RouteSnapshot};

/// Samples are at least this far apart (the housekeeping tick and the page's
/// own requests both take them).
const SAMPLE_EVERY_MILLIS: u64 = 10_000;

/// 30 minutes of 10 s samples.
const SAMPLES_KEPT: usize = 180;

/// How many clients the page lists.
const BUSIEST_CLIENTS: usize = 10;

/// How many upcoming refreshes the page lists.
const NEXT_REFRESHES: usize = 5;

/// Totals at one moment, for rates between two of them.
#[derive(Debug, Clone)]
struct Sample {
    at: UnixMillis,
    requests: u64,
    saved: u64,
    upstream: u64,
    /// Upstream requests by route, for each route's rate.
    by_route: Vec<(Arc<str>, u64)>,
}

impl Sample {
    fn of(at: UnixMillis, routes: &[RouteSnapshot]) -> Self {
        let totals = Totals::of(routes);
        Self {
            at,
            requests: totals.requests,
            saved: totals.saved,
            upstream: totals.upstream,
            by_route: routes
                .iter()
                .map(|route| (Arc::clone(&route.name), route.upstream))
                .collect(),
        }
    }

    /// Upstream requests per second of `route` from this sample to `now`.
    fn upstream_rate(&self, route: &RouteSnapshot, now: UnixMillis) -> Option<f64> {
        let millis = now.millis_since(self.at);
        let before = self
            .by_route
            .iter()
            .find(|(name, _)| *name == route.name)
            .map_or(0, |(_, count)| *count);
        (millis > 0)
            .then(|| to_f64(route.upstream.saturating_sub(before)) * 1000.0 / to_f64(millis))
    }
}

/// The status page's memory: when the proxy started, its settings, and a
/// ring of samples.
#[derive(Debug)]
pub(crate) struct StatusBoard {
    started: UnixMillis,
    price_per_1000: Option<f64>,
    /// Each route's budget group.
    route_groups: Vec<(Arc<str>, Arc<BudgetGroup>)>,
    /// Every budget group, once each.
    groups: Vec<Arc<BudgetGroup>>,
    samples: Mutex<VecDeque<Sample>>,
}

impl StatusBoard {
    /// A board for a proxy started at `started`; `route_groups` says which
    /// budget group each route draws on.
    pub(crate) fn new(
        started: UnixMillis,
        price_per_1000: Option<f64>,
        route_groups: Vec<(Arc<str>, Arc<BudgetGroup>)>,
    ) -> Self {
        let mut groups: Vec<Arc<BudgetGroup>> = Vec::new();
        for (_, group) in &route_groups {
            if !groups.iter().any(|known| Arc::ptr_eq(known, group)) {
                groups.push(Arc::clone(group));
            }
        }
        Self {
            started,
            price_per_1000,
            route_groups,
            groups,
            samples: Mutex::new(VecDeque::with_capacity(SAMPLES_KEPT)),
        }
    }

    /// Every budget group, once each, in the order routes joined them.
    pub(crate) fn groups(&self) -> &[Arc<BudgetGroup>] {
        &self.groups
    }

    /// Takes a sample unless the last is under 10 s old.
    pub(crate) fn sample(&self, metrics: &ProxyMetrics, now: UnixMillis) {
        let mut samples = self.samples.lock().unwrap_or_else(PoisonError::into_inner);
        if samples
            .back()
            .is_some_and(|last| now.millis_since(last.at) < SAMPLE_EVERY_MILLIS)
        {
            return;
        }
        if samples.len() == SAMPLES_KEPT {
            samples.pop_front();
        }
        samples.push_back(Sample::of(now, &metrics.snapshot()));
    }

    /// The whole status, read now.
    pub(crate) fn status(&self, metrics: &ProxyMetrics, cache: &TokenCache) -> Status {
        let now = cache.now();
        let routes = metrics.snapshot();
        let totals = Totals::of(&routes);
        let current = Sample::of(now, &routes);
        // Rates against the samples taken before; then this one joins them.
        let (history, last) = self.history(&current);
        self.sample(metrics, now);
        Status {
            version: env!("CARGO_PKG_VERSION"),
            uptime_seconds: now.whole_secs_since(self.started),
            requests: totals.requests,
            saved: totals.saved,
            upstream_requests: totals.upstream,
            hit_ratio: ratio(totals.saved, totals.requests),
            price_per_1000: self.price_per_1000,
            saved_cost: self
                .price_per_1000
                .map(|price| price * to_f64(totals.saved) / 1000.0),
            history,
            routes: routes
                .iter()
                .map(|route| {
                    let group = self
                        .route_groups
                        .iter()
                        .find(|(name, _)| *name == route.name)
                        .map(|(_, group)| group);
                    RouteStatus {
                        upstream_per_second: last
                            .as_ref()
                            .and_then(|last| last.upstream_rate(route, now)),
                        budget_group: group.map(|group| group.name().to_owned()),
                        budget_per_second: group.and_then(|group| finite(group.configured_rate())),
                        current_per_second: group.and_then(|group| finite(group.rate())),
                        learned_per_second: group.and_then(|group| finite(group.learned_limit())),
                        ..RouteStatus::of(route)
                    }
                })
                .collect(),
            budget_groups: self
                .groups
                .iter()
                .map(|group| GroupStatus::of(group))
                .collect(),
            cache: CacheStatus::of(cache, now),
            clients: metrics.busiest_clients(BUSIEST_CLIENTS).map(|clients| {
                clients
                    .into_iter()
                    .map(|client| ClientStatus {
                        hit_ratio: ratio(client.saved, client.requests),
                        client_id: client.client_id,
                        requests: client.requests,
                    })
                    .collect()
            }),
            shared_store: cache.tier().map(|tier| {
                let trouble = tier.trouble();
                let health = metrics.store_health();
                StoreStatus {
                    kind: tier.name(),
                    healthy: trouble.is_none(),
                    trouble,
                    operations: health.operations,
                    errors: health.errors,
                    latency_ms: health.recent_latency_ms,
                }
            }),
        }
    }

    /// Rates between consecutive samples, ending with one from the last
    /// sample to `current`; and that last sample.
    fn history(&self, current: &Sample) -> (Vec<Point>, Option<Sample>) {
        let samples = self.samples.lock().unwrap_or_else(PoisonError::into_inner);
        let points = samples
            .iter()
            .chain(std::iter::once(current))
            .collect::<Vec<_>>()
            .windows(2)
            .filter_map(|pair| {
                let (from, to) = (pair[0], pair[1]);
                let millis = to.at.millis_since(from.at);
                (millis > 0).then(|| {
                    let seconds = to_f64(millis) / 1000.0;
                    let requests = to.requests.saturating_sub(from.requests);
                    Point {
                        seconds_ago: current.at.millis_since(to.at) / 1000,
                        requests_per_second: to_f64(requests) / seconds,
                        upstream_per_second: to_f64(to.upstream.saturating_sub(from.upstream))
                            / seconds,
                        hit_ratio: ratio(to.saved.saturating_sub(from.saved), requests),
                    }
                })
            })
            .collect();
        (points, samples.back().cloned())
    }
}

/// Sums over every route.
struct Totals {
    requests: u64,
    saved: u64,
    upstream: u64,
}

impl Totals {
    fn of(routes: &[RouteSnapshot]) -> Self {
        let mut totals = Self {
            requests: 0,
            saved: 0,
            upstream: 0,
        };
        for route in routes {
            totals.requests += route.outcomes.iter().sum::<u64>();
            totals.saved += saved(&route.outcomes);
            totals.upstream += route.upstream;
        }
        totals
    }
}

fn saved(outcomes: &[u64; OUTCOMES]) -> u64 {
    Outcome::ALL
        .iter()
        .filter(|outcome| outcome.is_saved())
        .map(|outcome| outcomes[outcome.index()])
        .sum()
}

/// `part / whole`, or `None` with nothing to divide.
fn ratio(part: u64, whole: u64) -> Option<f64> {
    (whole > 0).then(|| to_f64(part) / to_f64(whole))
}

#[allow(clippy::cast_precision_loss)] // counts far below 2^53
fn to_f64(value: u64) -> f64 {
    value as f64
}

/// `/status.json`.
#[derive(Debug, Serialize)]
pub(crate) struct Status {
    version: &'static str,
    uptime_seconds: u64,
    /// Token requests answered since start.
    requests: u64,
    /// Of them, those that did not go upstream.
    saved: u64,
    upstream_requests: u64,
    hit_ratio: Option<f64>,
    price_per_1000: Option<f64>,
    /// `saved` at `price_per_1000`.
    saved_cost: Option<f64>,
    /// Oldest first.
    history: Vec<Point>,
    routes: Vec<RouteStatus>,
    budget_groups: Vec<GroupStatus>,
    cache: CacheStatus,
    shared_store: Option<StoreStatus>,
    /// The busiest clients; `None` unless `status_show_clients` is on.
    clients: Option<Vec<ClientStatus>>,
}

/// One client: its id and how its requests were answered, nothing else.
#[derive(Debug, Serialize)]
struct ClientStatus {
    client_id: String,
    requests: u64,
    hit_ratio: Option<f64>,
}

/// Rates over one sample interval.
#[derive(Debug, Serialize)]
struct Point {
    seconds_ago: u64,
    requests_per_second: f64,
    upstream_per_second: f64,
    hit_ratio: Option<f64>,
}

#[derive(Debug, Serialize)]
struct RouteStatus {
    route: String,
    requests: u64,
    /// By outcome label.
    outcomes: serde_json::Map<String, serde_json::Value>,
    hit_ratio: Option<f64>,
    upstream_requests: u64,
    /// Since the last sample; `None` until there is one.
    upstream_per_second: Option<f64>,
    /// The budget group the route's upstream draws on.
    budget_group: Option<String>,
    /// The group's configured rate; `None` when unlimited.
    budget_per_second: Option<f64>,
    /// The group's rate in force, lowered by throttles.
    current_per_second: Option<f64>,
    /// The group's limit learned from throttles.
    learned_per_second: Option<f64>,
    throttles: u64,
    breaker: &'static str,
    /// `"no answer"` or `"HTTP 503"`: never a body.
    last_upstream_error: Option<String>,
}

impl RouteStatus {
    fn of(route: &RouteSnapshot) -> Self {
        let requests = route.outcomes.iter().sum();
        Self {
            route: route.name.to_string(),
            requests,
            outcomes: Outcome::ALL
                .iter()
                .map(|o| (o.label().to_owned(), route.outcomes[o.index()].into()))
                .collect(),
            hit_ratio: ratio(saved(&route.outcomes), requests),
            upstream_requests: route.upstream,
            upstream_per_second: None,
            budget_group: None,
            budget_per_second: None,
            current_per_second: None,
            learned_per_second: None,
            throttles: route.throttles,
            breaker: route.breaker,
            last_upstream_error: route.last_error.map(|error| match error {
                None => "no answer".to_owned(),
                Some(status) => format!("HTTP {status}"),
            }),
        }
    }
}

/// A budget group: its rates and whether the fleet shares it.
#[derive(Debug, Serialize)]
struct GroupStatus {
    name: String,
    /// The configured rate; `None` when unlimited.
    configured_per_second: Option<f64>,
    /// The rate in force (the fleet's, when shared), lowered by throttles.
    current_per_second: Option<f64>,
    /// The limit learned from throttles (the rate the upstream last
    /// throttled at; the rate in force if it never has).
    learned_per_second: Option<f64>,
    burst: u32,
    /// Kept in the shared store for the whole fleet.
    shared: bool,
    /// The store is unreachable: this replica draws on its own share.
    fallback: bool,
    /// The fleet's size the fallback share is reckoned with.
    replicas: u32,
    /// Slots this replica took since start.
    slots: u64,
    /// Throttles this replica saw since start.
    throttles: u64,
}

impl GroupStatus {
    fn of(group: &BudgetGroup) -> Self {
        Self {
            name: group.name().to_owned(),
            configured_per_second: finite(group.configured_rate()),
            current_per_second: finite(group.rate()),
            learned_per_second: finite(group.learned_limit()),
            burst: group.burst(),
            shared: group.is_shared(),
            fallback: group.in_fallback(),
            replicas: group.replicas(),
            slots: group.slots_taken(),
            throttles: group.throttles(),
        }
    }
}

/// A rate, or `None` for an unlimited one.
fn finite(rate: f64) -> Option<f64> {
    rate.is_finite().then_some(rate)
}

#[derive(Debug, Serialize)]
struct CacheStatus {
    entries: usize,
    fresh: usize,
    aging: usize,
    expired: usize,
    bytes: usize,
    max_bytes: usize,
    /// Seconds until the next entries turn aging (and are refreshed when
    /// next asked for), soonest first.
    next_refreshes_in_seconds: Vec<u64>,
}

impl CacheStatus {
    fn of(cache: &TokenCache, now: UnixMillis) -> Self {
        let memory = cache.memory();
        let (mut fresh, mut aging, mut expired) = (0, 0, 0);
        let mut refreshes = Vec::new();
        memory.for_each(|token| match token.freshness(now) {
            Freshness::Fresh => {
                fresh += 1;
                refreshes.push(token.refresh_at().millis_since(now) / 1000);
            }
            Freshness::Aging => aging += 1,
            _ => expired += 1,
        });
        refreshes.sort_unstable();
        refreshes.truncate(NEXT_REFRESHES);
        Self {
            entries: memory.len(),
            fresh,
            aging,
            expired,
            bytes: memory.bytes(),
            max_bytes: memory.max_bytes(),
            next_refreshes_in_seconds: refreshes,
        }
    }
}

#[derive(Debug, Serialize)]
struct StoreStatus {
    kind: &'static str,
    healthy: bool,
    /// What is wrong, when something is (an error kind, never a secret).
    trouble: Option<String>,
    /// Operations since start, and of them those that failed or timed out.
    operations: u64,
    errors: u64,
    /// Recent latency (a mean weighted to the last twenty or so
    /// operations); `None` before the first.
    latency_ms: Option<f64>,
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokencache_upstream::BudgetConfig;

    fn route(name: &str, hits: u64, misses: u64) -> RouteSnapshot {
        let mut outcomes = [0; OUTCOMES];
        outcomes[Outcome::Hit.index()] = hits;
        outcomes[Outcome::Miss.index()] = misses;
        RouteSnapshot {
            name: name.into(),
            outcomes,
            upstream: misses,
            throttles: 0,
            last_error: None,
            breaker: "closed",
        }
    }

    #[test]
    fn rates_are_taken_between_samples() {
        let group = Arc::new(BudgetGroup::local("idp", BudgetConfig::default()));
        let board = StatusBoard::new(UnixMillis(0), None, vec![("/t".into(), group)]);
        assert_eq!(board.groups().len(), 1);
        let before = Sample::of(UnixMillis(10_000), &[route("/t", 10, 10)]);
        board.samples.lock().unwrap().push_back(before);
        let now = [route("/t", 190, 30)];
        let (points, last) = board.history(&Sample::of(UnixMillis(20_000), &now));
        assert_eq!(points.len(), 1);
        let point = &points[0];
        assert!((point.requests_per_second - 20.0).abs() < 1e-9);
        assert!((point.upstream_per_second - 2.0).abs() < 1e-9);
        assert_eq!(point.hit_ratio, Some(0.9));
        let rate = last.unwrap().upstream_rate(&now[0], UnixMillis(20_000));
        assert_eq!(rate, Some(2.0));
    }
}
