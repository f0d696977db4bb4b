//! The proxy's shared state and its routers.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Duration;

use axum::Router;
use axum::routing::post;
use tokencache_core::{
    CacheKey, CachedToken, Clock, FreshnessPolicy, HmacKey, KeyDeriver, StoreKey, UnixMillis,
};
use tokencache_memory_store::MemoryStore;
use tokencache_upstream::{Upstream, UpstreamClient};

use crate::client_index::ClientIndex;
use crate::config::AdminToken;
use crate::config::{ConfigError, ProxyConfig};
use crate::error::ProxyError;
use crate::flight::Flights;
use crate::metrics::{Outcome, ProxyMetrics};
use crate::negative::NegativeCache;
use crate::observe::RouteObserver;
use crate::shared_tier::SharedTier;
use crate::{admin, handler};

/// State every route shares.
pub(crate) struct Shared {
    pub(crate) store: MemoryStore,
    pub(crate) deriver: KeyDeriver,
    pub(crate) clock: Arc<dyn Clock>,
    pub(crate) flights: Flights,
    pub(crate) metrics: ProxyMetrics,
    pub(crate) policy: FreshnessPolicy,
    pub(crate) max_body_bytes: usize,
    pub(crate) load_deadline: Duration,
    pub(crate) negative: NegativeCache,
    pub(crate) tier: Option<SharedTier>,
    pub(crate) clients: ClientIndex,
    pub(crate) admin_token: Option<AdminToken>,
    pub(crate) request_timeout_ms: AtomicU64,
    pub(crate) ready: AtomicBool,
}

impl Shared {
    /// The shared-store key of `key`: tagged with its client, so one
    /// client's entries can be purged across the fleet.
    pub(crate) fn store_key(&self, key: &CacheKey, client_id: Option<&str>) -> StoreKey {
        match client_id {
            Some(client_id) => StoreKey::tagged(&self.deriver.client_tag(client_id), key),
            None => StoreKey::of(key),
        }
    }

    /// Puts a token in the memory tier: until its end of service, or for
    /// the memory tier's time when a shared tier stands behind it.
    pub(crate) fn remember(
        &self,
        key: CacheKey,
        token: Arc<CachedToken>,
        client_id: Option<&str>,
        now: UnixMillis,
    ) {
        if let Some(client_id) = client_id {
            self.clients.record(client_id, key);
        }
        match &self.tier {
            Some(tier) => self
                .store
                .insert_until(key, token, now.plus(tier.l1_ttl), now),
            None => self.store.insert(key, token, now),
        }
    }
}

/// One configured route.
pub(crate) struct Route {
    /// The proxy path, part of every cache key of this route.
    pub(crate) path: Box<str>,
    /// The token endpoint with its budget, breaker and retries.
    pub(crate) upstream: Upstream,
    pub(crate) observer: RouteObserver,
    pub(crate) shared: Arc<Shared>,
}

/// A caching proxy for token endpoints: build it once, then serve its
/// [`router`](Self::router) and [`admin_router`](Self::admin_router).
///
/// Clones share everything (the cache included).
#[derive(Clone)]
pub struct Proxy {
    shared: Arc<Shared>,
    routes: Vec<Arc<Route>>,
}

impl std::fmt::Debug for Proxy {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Proxy")
            .field(
                "routes",
                &self.routes.iter().map(|r| &*r.path).collect::<Vec<_>>(),
            )
            .field("cached_entries", &self.shared.store.len())
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
        let tier = config
            .shared_store
            .map(|shared| SharedTier::new(shared, metrics.clone()));
        let shared = Arc::new(Shared {
            store: MemoryStore::new(config.cache_max_bytes),
            deriver: KeyDeriver::new(&hmac_key),
            clock: Arc::clone(&clock),
            flights: Flights::new(config.refresh_retry_base, config.refresh_retry_cap),
            metrics,
            policy: config.freshness,
            max_body_bytes: config.max_body_bytes,
            load_deadline: config.load_deadline,
            negative: NegativeCache::new(config.negative_ttl),
            tier,
            clients: ClientIndex::default(),
            admin_token: config.admin_token,
            request_timeout_ms: AtomicU64::new(30_000),
            ready: AtomicBool::new(true),
        });
        let routes = config
            .routes
            .into_iter()
            .map(|route| {
                let observer = RouteObserver {
                    metrics: shared.metrics.clone(),
                    breaker: shared.metrics.breaker_gauge(&route.path),
                };
                Arc::new(Route {
                    upstream: Upstream::new(
                        route.upstream,
                        client.clone(),
                        &config.resilience,
                        Arc::clone(&clock),
                    ),
                    path: route.path.into_boxed_str(),
                    observer,
                    shared: Arc::clone(&shared),
                })
            })
            .collect();
        Ok(Self { shared, routes })
    }

    /// The token endpoints: `POST` on each route's path.
    pub fn router(&self) -> Router {
        let mut router = Router::new();
        for route in &self.routes {
            router = router.route(
                &route.path,
                post(handler::token).with_state(Arc::clone(route)),
            );
        }
        let not_found = Arc::clone(&self.shared);
        let wrong_method = Arc::clone(&self.shared);
        router
            .fallback(move || async move {
                not_found.metrics.request(Outcome::Error);
                ProxyError::NotFound
            })
            .method_not_allowed_fallback(move || async move {
                wrong_method.metrics.request(Outcome::Error);
                ProxyError::MethodNotAllowed
            })
    }

    /// Bounds the time a client has to send its whole request body: past
    /// it, 408. (Headers are bounded by the listener's header read timeout,
    /// the upstream by the load deadline.) Default 30 s.
    pub fn set_request_timeout(&self, timeout: Duration) {
        let millis = u64::try_from(timeout.as_millis()).unwrap_or(u64::MAX);
        self.shared
            .request_timeout_ms
            .store(millis, Ordering::Relaxed);
    }

    /// The token listener's service as `serve` runs it (the same endpoints
    /// as [`router`](Self::router), routed without axum).
    pub(crate) fn token_service(&self) -> crate::service::TokenService {
        crate::service::TokenService::new(&self.routes, Arc::clone(&self.shared))
    }

    /// The admin endpoints: `/metrics`, `/healthz`, `/readyz`, `/purge`.
    pub fn admin_router(&self) -> Router {
        admin::router(Arc::clone(&self.shared))
    }

    /// Drops every cached token, in the memory tier and the shared store;
    /// how many the memory tier held.
    pub async fn purge(&self) -> usize {
        purge(&self.shared).await
    }

    /// The number of cached tokens.
    #[must_use]
    pub fn cached_entries(&self) -> usize {
        self.shared.store.len()
    }

    /// Marks the proxy ready or not (`/readyz` answers 503 when not), so a
    /// load balancer stops sending traffic before shutdown.
    pub fn set_ready(&self, ready: bool) {
        self.shared.ready.store(ready, Ordering::Relaxed);
    }

    /// Periodic housekeeping: drops entries that can no longer be served,
    /// forgets stale refresh backoffs, drains metric histograms.
    pub fn housekeeping(&self) {
        let now = self.shared.clock.now();
        let removed = self.shared.store.remove_expired(now);
        self.shared
            .clients
            .retain(|key| self.shared.store.get(key, now).is_some());
        self.shared.flights.prune(now);
        self.shared.negative.prune(now);
        self.shared.metrics.upkeep();
        if removed > 0 {
            tracing::debug!(removed, "dropped expired tokens");
        }
    }

    /// The number of upstream fetches in progress.
    #[must_use]
    pub fn loads_in_flight(&self) -> usize {
        self.shared.flights.in_flight()
    }
}

/// Clears both tiers; how many entries the memory tier held.
pub(crate) async fn purge(shared: &Shared) -> usize {
    let purged = shared.store.clear();
    shared.clients.clear();
    if let Some(tier) = &shared.tier {
        let removed = tier.clear().await;
        tracing::info!(memory = purged, shared = ?removed, store = tier.name(), "cache purged");
    } else {
        tracing::info!(memory = purged, "cache purged");
    }
    purged
}

/// Drops one client's tokens: from this replica's memory tier (the keys it
/// noted for the client) and, through the client's tag, from the shared
/// store for the whole fleet (whose memory tiers let go within their bound).
/// How many entries, the larger of the two counts.
pub(crate) async fn purge_client(shared: &Shared, client_id: &str) -> usize {
    let keys = shared.clients.take(client_id);
    for key in &keys {
        shared.store.remove(key);
    }
    let mut purged = keys.len();
    if let Some(tier) = &shared.tier {
        let tag = shared.deriver.client_tag(client_id);
        if let Some(removed) = tier.clear_client(&tag).await {
            purged = purged.max(usize::try_from(removed).unwrap_or(usize::MAX));
        }
    }
    tracing::info!(client_id, purged, "client's tokens purged");
    purged
}
