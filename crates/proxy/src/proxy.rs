//! The proxy as a value: built once from its configuration, then served
//! (`serve`) or embedded (its routers).

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use axum::Router;
use http::header::RETRY_AFTER;
use tokencache_core::cognito::NativeAnswerOptions;
use tokencache_core::{Backoff, Clock, HmacKey, KeyDeriver, parse_retry_after};
use tokencache_memory_store::MemoryStore;
use tokencache_single_flight::{Outcome as FlightOutcome, SingleFlight};
use tokencache_upstream::{
    BudgetConfig, BudgetGroup, Fleet, FleetConfig, ResilienceConfig, Upstream, UpstreamClient,
};

use crate::admin::{self, AdminState};
use crate::answer_format::AnswerFormat;
use crate::cache::TokenCache;
use crate::cognito::{self, CognitoRoute};
use crate::config::{CognitoIdpConfig, ConfigError, Limits, ProxyConfig};
use crate::dialect::Dialect;
use crate::endpoint::UpstreamEndpoint;
use crate::loader::{LoadOutcome, Loader};
use crate::metrics::ProxyMetrics;
use crate::negative::NegativeCache;
use crate::observe::RouteObserver;
use crate::route::{Flights, RequestLimits, Route};
use crate::service::{TokenService, TowerTokenService};
use crate::shared_tier::SharedTier;
use crate::status::StatusBoard;

/// A caching proxy for token endpoints: build it once, then serve its
/// [`router`](Self::router) and [`admin_router`](Self::admin_router).
///
/// Clones share everything (the cache included).
#[derive(Clone)]
pub struct Proxy {
    cache: Arc<TokenCache>,
    routes: Arc<[Arc<Route>]>,
    cognito: Option<Arc<CognitoRoute>>,
    flights: Flights,
    metrics: ProxyMetrics,
    admin: Arc<AdminState>,
    /// The fleet sharing budgets through the store, when there is one.
    fleet: Option<Arc<Fleet>>,
    max_body_bytes: usize,
}

impl std::fmt::Debug for Proxy {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Proxy")
            .field(
                "routes",
                &self.routes.iter().map(|r| r.path()).collect::<Vec<_>>(),
            )
            .field("cached_entries", &self.cache.memory().len())
            .finish_non_exhaustive()
    }
}

impl Proxy {
    /// Builds a proxy reading time from `clock`.
    ///
    /// # Errors
    /// A [`ConfigError`] when the configuration is not usable.
    pub fn new(config: ProxyConfig, clock: Arc<dyn Clock>) -> Result<Self, ConfigError> {
        config.validate()?;
        // A fleet sharing a store must derive equal keys for equal
        // requests: without an explicit key, derive it from the encryption
        // key they share. A lone proxy's keys never leave it: random.
        let hmac_key = match (config.hmac_key, &config.shared_store) {
            (Some(key), _) => key,
            (None, Some(shared)) => shared.keys.derived_hmac_key(),
            (None, None) => HmacKey::random(),
        };
        let client = UpstreamClient::new(&config.upstream)?;
        let metrics = ProxyMetrics::new();
        if config.status_show_clients == Some(true) {
            metrics.count_clients();
        }
        // The store that shares tokens also shares the request budgets.
        let fleet = config.shared_store.as_ref().and_then(|shared| {
            let store = Arc::clone(&shared.store).budgets()?;
            Some(Arc::new(Fleet::new(
                store,
                FleetConfig {
                    op_timeout: shared.op_timeout,
                    replicas: config.budget_replicas,
                    ..FleetConfig::default()
                },
            )))
        });
        let cache = Arc::new(TokenCache::new(
            MemoryStore::new(config.cache_max_bytes).with_max_entry_bytes(config.max_entry_bytes),
            config
                .shared_store
                .map(|shared| SharedTier::new(shared, metrics.clone())),
            NegativeCache::new(config.negative_ttl),
            KeyDeriver::new(&hmac_key),
            Arc::clone(&clock),
            config.freshness,
        ));
        // The native route's keys come from the same HMAC key: a fleet
        // derives the same key for the same request.
        let native_deriver = KeyDeriver::new(&hmac_key);
        let loader = Arc::new(Loader::new(
            Arc::clone(&cache),
            metrics.clone(),
            config.load_deadline,
        ));
        let flights = flights(
            Backoff::new(
                config.refresh_retry_base,
                config.refresh_retry_cap,
                u32::MAX,
            ),
            Arc::clone(&clock),
        );
        let mut groups = BudgetGroups::new(fleet.clone());
        // For the status page: which group each route draws on.
        let mut route_groups = Vec::new();
        let routes = config
            .routes
            .into_iter()
            .map(|route| {
                let group_name = route.budget_group().to_owned();
                let budget = groups.join(&group_name, || {
                    config
                        .budgets
                        .get(&group_name)
                        .copied()
                        .unwrap_or(config.resilience.budget)
                });
                route_groups.push((Arc::from(route.path.as_str()), Arc::clone(&budget)));
                let metrics = metrics.for_route(&route.path, &group_name);
                let observer = RouteObserver {
                    metrics: metrics.clone(),
                    breaker: metrics.breaker_gauge(&route.path),
                };
                let upstream = Upstream::new(
                    route.upstream,
                    client.clone(),
                    &config.resilience,
                    budget,
                    Arc::clone(&clock),
                );
                let endpoint = UpstreamEndpoint::new(upstream, observer, config.freshness);
                Arc::new(Route::new(
                    &route.path,
                    Arc::new(endpoint),
                    Arc::clone(&cache),
                    Arc::clone(&loader),
                    flights.clone(),
                    metrics.clone(),
                ))
            })
            .collect();
        let cognito = config.cognito_idp.map(|native| {
            // The native API's own quota (UserAuthentication), named by its
            // service endpoint's host.
            let group_name = native
                .upstream
                .host_str()
                .unwrap_or(cognito::NAME)
                .to_owned();
            let budget = groups.join(&group_name, || native.budget);
            route_groups.push((cognito::NAME.into(), Arc::clone(&budget)));
            let metrics = metrics.for_route(cognito::NAME, &group_name);
            let route = native_route(
                native,
                NativeRouteParts {
                    budget,
                    client: &client,
                    resilience: &config.resilience,
                    clock: &clock,
                    metrics: &metrics,
                    freshness: config.freshness,
                },
            );
            let route = Route::new(
                cognito::NAME,
                Arc::new(route),
                Arc::clone(&cache),
                Arc::clone(&loader),
                flights.clone(),
                metrics.clone(),
            )
            .with_dialect(Dialect::AwsJson);
            Arc::new(CognitoRoute::new(route, native_deriver, metrics.clone()))
        });
        let admin = Arc::new(AdminState {
            cache: Arc::clone(&cache),
            metrics: metrics.clone(),
            ready: Arc::new(AtomicBool::new(true)),
            admin_token: config.admin_token,
            status: StatusBoard::new(clock.now(), config.upstream_price_per_1000, route_groups),
        });
        metrics.watch_budgets(admin.status.groups());
        Ok(Self {
            cache,
            routes,
            cognito,
            flights,
            metrics,
            admin,
            fleet,
            max_body_bytes: config.max_body_bytes,
        })
    }

    /// The token endpoints (`POST` on each route's path) with the default
    /// [`Limits`]: the same service `serve` runs, as an axum router.
    pub fn router(&self) -> Router {
        self.router_with(&Limits::default())
    }

    /// The token endpoints with these request limits (the body timeout and
    /// the header count; connection limits belong to the listener).
    pub fn router_with(&self, limits: &Limits) -> Router {
        Router::new().fallback_service(TowerTokenService::new(self.token_service(limits)))
    }

    /// The token listener's service, held to `limits`.
    pub(crate) fn token_service(&self, limits: &Limits) -> TokenService {
        TokenService::new(
            Arc::clone(&self.routes),
            self.cognito.clone(),
            self.metrics.clone(),
            RequestLimits {
                max_body_bytes: self.max_body_bytes,
                body_timeout: limits.request_timeout,
            },
            limits.max_headers,
        )
    }

    /// The proxy's metrics, for the listeners to count connections in.
    pub(crate) fn metrics(&self) -> ProxyMetrics {
        self.metrics.clone()
    }

    /// The admin endpoints: `/` (the status page), `/status.json`,
    /// `/metrics`, `/healthz`, `/readyz`, `/purge`, `/cache`.
    pub fn admin_router(&self) -> Router {
        admin::router(Arc::clone(&self.admin))
    }

    /// Drops every cached token, in the memory tier and the shared store,
    /// and tells the fleet (see [`watch_fleet`](Self::watch_fleet)); how
    /// many the memory tier held.
    pub async fn purge(&self) -> usize {
        self.cache.purge().await.purged
    }

    /// Follows the fleet through the shared store, until dropped: reads the
    /// purge log every `purge_poll` (500 ms by default) and drops what other
    /// replicas purged from this memory tier; the same read probes the store
    /// while its breaker is open, and keeps the connection to a restarted
    /// store warm. Beside it, renews this replica's heartbeat every second
    /// (how the fleet counts itself for the budgets' fallback). Returns at
    /// once without a shared store.
    /// [`serve`](crate::serve) runs it; an embedder serving the routers
    /// itself spawns it.
    pub async fn watch_fleet(&self) {
        let Some(every) = self.cache.tier().map(SharedTier::purge_poll) else {
            return;
        };
        let purges = async {
            let mut tick = tokio::time::interval(every);
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                tick.tick().await;
                self.cache.follow_fleet().await;
            }
        };
        match &self.fleet {
            Some(fleet) => tokio::join!(purges, fleet.keep_heartbeat()).0,
            None => purges.await,
        }
    }

    /// The number of cached tokens.
    #[must_use]
    pub fn cached_entries(&self) -> usize {
        self.cache.memory().len()
    }

    /// Marks the proxy ready or not (`/readyz` answers 503 when not), so a
    /// load balancer stops sending traffic before shutdown.
    pub fn set_ready(&self, ready: bool) {
        self.admin.ready.store(ready, Ordering::Relaxed);
    }

    /// Periodic housekeeping: drops entries that can no longer be served,
    /// forgets stale refresh cooldowns, drains metric histograms.
    pub fn housekeeping(&self) {
        let removed = self.cache.housekeeping(self.cache.now());
        self.flights.prune();
        self.metrics.upkeep();
        self.admin.status.sample(&self.metrics, self.cache.now());
        if removed > 0 {
            tracing::debug!(removed, "dropped expired tokens");
        }
    }

    /// The number of upstream fetches in progress.
    #[must_use]
    pub fn loads_in_flight(&self) -> usize {
        self.flights.in_flight()
    }
}

/// What the native route's endpoint is built with.
struct NativeRouteParts<'a> {
    budget: Arc<BudgetGroup>,
    client: &'a UpstreamClient,
    resilience: &'a ResilienceConfig,
    clock: &'a Arc<dyn Clock>,
    metrics: &'a ProxyMetrics,
    freshness: tokencache_core::FreshnessPolicy,
}

/// The endpoint of Cognito's native API: its own budget group (the
/// UserAuthentication quota is not the token endpoint's), the shared
/// retries and breaker settings, native answers.
fn native_route(native: CognitoIdpConfig, parts: NativeRouteParts<'_>) -> UpstreamEndpoint {
    let observer = RouteObserver {
        metrics: parts.metrics.clone(),
        breaker: parts.metrics.breaker_gauge(cognito::NAME),
    };
    let upstream = Upstream::new(
        native.upstream,
        parts.client.clone(),
        parts.resilience,
        parts.budget,
        Arc::clone(parts.clock),
    );
    let format = AnswerFormat::CognitoNative(NativeAnswerOptions {
        strip_refresh_token: native.strip_refresh_token,
    });
    UpstreamEndpoint::new(upstream, observer, parts.freshness).with_format(format)
}

/// The budget groups of a proxy's routes, made as routes join them.
struct BudgetGroups {
    fleet: Option<Arc<Fleet>>,
    groups: Vec<Arc<BudgetGroup>>,
}

impl BudgetGroups {
    fn new(fleet: Option<Arc<Fleet>>) -> Self {
        Self {
            fleet,
            groups: Vec::new(),
        }
    }

    /// The group called `name`, made with `config()` by its first route.
    /// (Routes to one host share the host's group at the default budget.)
    fn join(&mut self, name: &str, config: impl FnOnce() -> BudgetConfig) -> Arc<BudgetGroup> {
        if let Some(group) = self.groups.iter().find(|group| group.name() == name) {
            return Arc::clone(group);
        }
        let config = config();
        let group = Arc::new(match &self.fleet {
            Some(fleet) => BudgetGroup::shared(name, config, Arc::clone(fleet)),
            None => BudgetGroup::local(name, config),
        });
        self.groups.push(Arc::clone(&group));
        group
    }
}

/// The single-flight table of every route: a failed background refresh
/// makes its key cool down (never less than the `Retry-After` of the
/// upstream's last answer), a servable token clears it.
fn flights(backoff: Backoff, clock: Arc<dyn Clock>) -> Flights {
    let classify_clock = Arc::clone(&clock);
    SingleFlight::builder()
        .refresh_backoff(backoff)
        .clock(clock)
        .classify(move |outcome: &Arc<LoadOutcome>| {
            if outcome.is_success() {
                return FlightOutcome::Success;
            }
            let retry_after = match &**outcome {
                LoadOutcome::FailedAnswer(answer) => answer
                    .headers
                    .get(RETRY_AFTER)
                    .and_then(|value| parse_retry_after(value.as_bytes(), classify_clock.now())),
                _ => None,
            };
            FlightOutcome::Failure { retry_after }
        })
        .build()
}
