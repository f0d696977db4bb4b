//! What a proxy is built from.

use std::collections::BTreeMap;
use std::num::NonZeroU32;
use std::time::Duration;

use tokencache_core::{FreshnessPolicy, HmacKey};
use tokencache_upstream::{BudgetConfig, ResilienceConfig, UpstreamConfig, Url};

use crate::shared_tier::SharedStoreConfig;

/// One token endpoint the proxy fronts: requests to `path` go to `upstream`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RouteConfig {
    /// The path the proxy answers on, such as `/oauth2/token`.
    pub path: String,
    /// The token endpoint, such as
    /// `https://my-pool.auth.eu-west-1.amazoncognito.com/oauth2/token`.
    pub upstream: Url,
    /// The budget group the route's upstream requests draw on: a name in
    /// [`ProxyConfig::budgets`]. `None`, the default, is the group of the
    /// upstream's host, at [`ResilienceConfig::budget`].
    pub budget: Option<String>,
}

impl RouteConfig {
    /// A route from `path` to `upstream`, in its host's budget group.
    #[must_use]
    pub fn new(path: impl Into<String>, upstream: Url) -> Self {
        Self {
            path: path.into(),
            upstream,
            budget: None,
        }
    }

    /// The name of the budget group the route draws on.
    #[must_use]
    pub fn budget_group(&self) -> &str {
        match &self.budget {
            Some(name) => name,
            None => self.upstream.host_str().unwrap_or_default(),
        }
    }
}

/// Cognito's native API (AWS JSON 1.1), answered on the token listener at
/// `/` for requests that carry `X-Amz-Target`.
#[derive(Debug, Clone, PartialEq)]
pub struct CognitoIdpConfig {
    /// The user pools' service endpoint, such as
    /// `https://cognito-idp.eu-west-1.amazonaws.com`.
    pub upstream: Url,
    /// Leave `RefreshToken` out of cached answers (for pools that rotate
    /// refresh tokens, where a token shared by many callers would be
    /// spent by the first). Default off: a cached answer carries the
    /// refresh token issued for the same credentials.
    pub strip_refresh_token: bool,
    /// The request budget of Cognito's *UserAuthentication* quota
    /// (`InitiateAuth`, 120 requests/s per account and region by
    /// default), apart from the OAuth routes'. Default 80/s, bursts of 20.
    pub budget: BudgetConfig,
}

impl CognitoIdpConfig {
    /// The default [`budget`](Self::budget): 80 requests/s, bursts of 20,
    /// under the *UserAuthentication* quota's default of 120/s.
    pub const DEFAULT_BUDGET: BudgetConfig = BudgetConfig {
        rate_per_sec: 80.0,
        burst: 20,
    };

    /// The native API at `upstream`, every other setting at its default.
    #[must_use]
    pub fn new(upstream: Url) -> Self {
        Self {
            upstream,
            strip_refresh_token: false,
            budget: Self::DEFAULT_BUDGET,
        }
    }
}

/// Everything a [`Proxy`](crate::Proxy) is built from.
#[derive(Debug, Clone)]
pub struct ProxyConfig {
    /// The OAuth routes; at least one, unless the native API is fronted.
    pub routes: Vec<RouteConfig>,
    /// Cognito's native API, when fronted; `None` by default.
    pub cognito_idp: Option<CognitoIdpConfig>,
    /// When cached tokens are refreshed and stop being served.
    pub freshness: FreshnessPolicy,
    /// The memory store's budget in bytes. Default 64 MiB (about 60,000
    /// Cognito tokens).
    pub cache_max_bytes: usize,
    /// The largest entry the memory store keeps; a larger token answer is
    /// passed through uncached (`Cache-Status: …; detail=too-large`) rather
    /// than evicting others. Default 64 KiB.
    pub max_entry_bytes: usize,
    /// The cache-key HMAC key; random per process when `None`, which is
    /// right for a memory store (its keys never leave the process).
    pub hmac_key: Option<HmacKey>,
    /// How the upstream is reached.
    pub upstream: UpstreamConfig,
    /// Retries and circuit breaker per upstream, and the request budget of
    /// each upstream host's group (routes to one host share it).
    pub resilience: ResilienceConfig,
    /// Named budget groups, for routes whose upstreams draw on one quota
    /// under different hosts (`[budgets.NAME]` in the config file); a
    /// route joins one with [`RouteConfig::budget`]. Empty by default.
    pub budgets: BTreeMap<String, BudgetConfig>,
    /// The fleet's size, for the share of each budget a replica falls back
    /// to when the shared store is away; `None`, the default, counts the
    /// replicas by their heartbeats in the store.
    pub budget_replicas: Option<NonZeroU32>,
    /// How long a caller waits for a token on a miss, budget queueing,
    /// retries and waiting on another replica's lease included; past it the
    /// caller gets an error it can act on.
    /// Default 15 s, above the upstream request timeout so one attempt
    /// always fits.
    pub load_deadline: Duration,
    /// How long an `invalid_client`, `invalid_scope` or
    /// `unauthorized_client` answer is remembered per key; zero disables.
    /// Default 5 s.
    pub negative_ttl: Duration,
    /// A store shared by a fleet, behind the memory tier; `None` (the
    /// default) for memory only.
    pub shared_store: Option<SharedStoreConfig>,
    /// The bearer token the admin API's purges require; without one they
    /// answer 401 (metrics, health and readiness stay open).
    pub admin_token: Option<AdminToken>,
    /// The largest request body accepted. Default 16 KiB: a token request
    /// is a few hundred bytes.
    pub max_body_bytes: usize,
    /// After a failed background refresh, the first wait before the next
    /// attempt for that key; it doubles with each failure. Default 1 s.
    pub refresh_retry_base: Duration,
    /// The longest wait between refresh attempts for one key. Default 30 s.
    pub refresh_retry_cap: Duration,
    /// What the identity provider charges per 1000 token requests, for the
    /// status page to price the requests the cache saved. Default `None`:
    /// no price shown.
    pub upstream_price_per_1000: Option<f64>,
    /// Whether the status page lists the busiest clients (client id,
    /// request count, hit ratio). `None`, the default, is off here; the
    /// binary turns it on when the admin listener is bound to loopback.
    pub status_show_clients: Option<bool>,
}

impl ProxyConfig {
    /// A configuration with one route and every other setting at its
    /// default.
    #[must_use]
    pub fn new(routes: Vec<RouteConfig>) -> Self {
        Self {
            routes,
            cognito_idp: None,
            freshness: FreshnessPolicy::default(),
            cache_max_bytes: 64 << 20,
            max_entry_bytes: tokencache_memory_store::DEFAULT_MAX_ENTRY_BYTES,
            hmac_key: None,
            upstream: UpstreamConfig::default(),
            resilience: ResilienceConfig::default(),
            budgets: BTreeMap::new(),
            budget_replicas: None,
            load_deadline: Duration::from_secs(15),
            negative_ttl: Duration::from_secs(5),
            shared_store: None,
            admin_token: None,
            max_body_bytes: 16 << 10,
            refresh_retry_base: Duration::from_secs(1),
            refresh_retry_cap: Duration::from_secs(30),
            upstream_price_per_1000: None,
            status_show_clients: None,
        }
    }
}

/// Protection against clients that hold resources.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// Connections served at once. The listener keeps accepting beyond it:
    /// a new connection takes the place of the one idle longest (one that
    /// never sent a request first), which is closed; when every connection
    /// has a request in flight, the new one is closed at once and
    /// `/readyz` reports the listener saturated. Default 4096.
    pub max_connections: usize,
    /// Connections from one IP address; more are closed at once, so one
    /// host cannot take every slot. 0 for no limit. Default 256. Behind a
    /// load balancer or NAT that hides callers' addresses, every connection
    /// comes from a few addresses: raise it, or turn it off.
    pub max_connections_per_ip: usize,
    /// Time a connection has to send a complete request head: its first
    /// from being accepted (from its TLS handshake, over HTTPS), and over
    /// HTTP/1.1 each later one from the previous answer (hyper's timer), so
    /// that it also bounds HTTP/1.1 keep-alive. A silent socket or a
    /// slowloris client is cut off after it. Default 5 s.
    pub header_read_timeout: Duration,
    /// Time a connection may idle between requests before it is closed:
    /// HTTP/2 with no stream open (which has no header timer), or HTTP/1.1
    /// keep-alive when the header read timeout is longer. Default 60 s.
    pub idle_timeout: Duration,
    /// Time a client has to send its whole request body; past it, 408.
    /// Default 30 s.
    pub request_timeout: Duration,
    /// Bytes of request headers accepted (HTTP/1.1 read buffer, HTTP/2
    /// header list); larger headers get 431. Default 16 KiB.
    pub max_header_bytes: usize,
    /// Request headers accepted (HTTP/1.1 and HTTP/2); more get 431.
    /// Default 64.
    pub max_headers: usize,
    /// HTTP/2 streams one connection may have open at once. Default 100.
    pub max_concurrent_streams: u32,
    /// Time allowed for a TLS handshake. Default 10 s.
    pub tls_handshake_timeout: Duration,
}

impl Default for Limits {
    fn default() -> Self {
        Self {
            max_connections: 4096,
            max_connections_per_ip: 256,
            header_read_timeout: Duration::from_secs(5),
            idle_timeout: Duration::from_secs(60),
            request_timeout: Duration::from_secs(30),
            max_header_bytes: 16 << 10,
            max_headers: 64,
            max_concurrent_streams: 100,
            tls_handshake_timeout: Duration::from_secs(10),
        }
    }
}

/// The admin API's bearer token: redacted in `Debug`, compared in
/// constant time, wiped on drop.
#[derive(Clone)]
pub struct AdminToken(zeroize::Zeroizing<String>);

impl AdminToken {
    /// Wraps a token; `None` when it is empty (an empty token would let
    /// anyone in).
    #[must_use]
    pub fn new(token: String) -> Option<Self> {
        let token = token.trim().to_owned();
        (!token.is_empty()).then(|| Self(zeroize::Zeroizing::new(token)))
    }

    /// Whether an `Authorization` header value carries this token.
    #[must_use]
    pub fn admits(&self, authorization: Option<&[u8]>) -> bool {
        use subtle::ConstantTimeEq;
        let Some(value) = authorization else {
            return false;
        };
        let Some(presented) = value
            .strip_prefix(b"Bearer ")
            .or_else(|| value.strip_prefix(b"bearer "))
        else {
            return false;
        };
        presented.ct_eq(self.0.as_bytes()).into()
    }
}

impl std::fmt::Debug for AdminToken {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("AdminToken([redacted])")
    }
}

/// A configuration the proxy cannot run with.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ConfigError {
    /// No route was configured.
    #[error(
        "no route: give --upstream or --cognito-idp-upstream, or declare [[routes]] in the config file"
    )]
    NoRoutes,
    /// A route path is not an absolute path.
    #[error("route path `{0}` must start with `/`")]
    BadPath(String),
    /// Two routes share a path.
    #[error("route path `{0}` is declared twice")]
    DuplicatePath(String),
    /// An upstream URL is not http or https.
    #[error("upstream `{0}` must be an http:// or https:// URL")]
    BadUpstream(String),
    /// A route names a budget group that is not declared.
    #[error("route `{route}` names budget group `{group}`, which is not declared in [budgets]")]
    UnknownBudget {
        /// The route's path.
        route: String,
        /// The group it names.
        group: String,
    },
    /// The upstream client could not be built.
    #[error(transparent)]
    Upstream(#[from] tokencache_upstream::UpstreamError),
}

impl ProxyConfig {
    /// Checks the routes.
    ///
    /// # Errors
    /// The first [`ConfigError`] found.
    pub fn validate(&self) -> Result<(), ConfigError> {
        if self.routes.is_empty() && self.cognito_idp.is_none() {
            return Err(ConfigError::NoRoutes);
        }
        if let Some(cognito) = &self.cognito_idp
            && !matches!(cognito.upstream.scheme(), "http" | "https")
        {
            return Err(ConfigError::BadUpstream(cognito.upstream.to_string()));
        }
        let mut seen = std::collections::HashSet::new();
        for route in &self.routes {
            if !route.path.starts_with('/') {
                return Err(ConfigError::BadPath(route.path.clone()));
            }
            if !seen.insert(route.path.as_str()) {
                return Err(ConfigError::DuplicatePath(route.path.clone()));
            }
            if !matches!(route.upstream.scheme(), "http" | "https") {
                return Err(ConfigError::BadUpstream(route.upstream.to_string()));
            }
            if let Some(group) = &route.budget
                && !self.budgets.contains_key(group)
            {
                return Err(ConfigError::UnknownBudget {
                    route: route.path.clone(),
                    group: group.clone(),
                });
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn route(path: &str, upstream: &str) -> RouteConfig {
        RouteConfig::new(path, upstream.parse().unwrap())
    }

    #[test]
    fn admin_token_admits_only_itself() {
        let token = AdminToken::new("s3cret-admin".into()).unwrap();
        assert!(token.admits(Some(b"Bearer s3cret-admin")));
        assert!(!token.admits(Some(b"Bearer s3cret-admiN")));
        assert!(!token.admits(Some(b"Bearer s3cret-admin2")));
        assert!(!token.admits(Some(b"Basic s3cret-admin")));
        assert!(!token.admits(None));
        assert!(AdminToken::new("  ".into()).is_none());
        assert_eq!(format!("{token:?}"), "AdminToken([redacted])");
    }

    #[test]
    fn validation() {
        assert!(matches!(
            ProxyConfig::new(vec![]).validate(),
            Err(ConfigError::NoRoutes)
        ));
        assert!(matches!(
            ProxyConfig::new(vec![route("token", "http://a/")]).validate(),
            Err(ConfigError::BadPath(_))
        ));
        assert!(matches!(
            ProxyConfig::new(vec![route("/t", "http://a/"), route("/t", "http://b/")]).validate(),
            Err(ConfigError::DuplicatePath(_))
        ));
        assert!(matches!(
            ProxyConfig::new(vec![route("/t", "ftp://a/")]).validate(),
            Err(ConfigError::BadUpstream(_))
        ));
        assert!(
            ProxyConfig::new(vec![route("/a", "http://a/"), route("/b", "https://b/")])
                .validate()
                .is_ok()
        );
        let mut native_only = ProxyConfig::new(vec![]);
        native_only.cognito_idp = Some(CognitoIdpConfig::new("https://c/".parse().unwrap()));
        assert!(native_only.validate().is_ok());
        native_only.cognito_idp = Some(CognitoIdpConfig::new("ftp://c/".parse().unwrap()));
        assert!(matches!(
            native_only.validate(),
            Err(ConfigError::BadUpstream(_))
        ));
    }

    #[test]
    fn routes_join_their_hosts_group_or_a_declared_one() {
        let by_host = route(
            "/a",
            "https://pool.auth.eu-west-1.amazoncognito.com/oauth2/token",
        );
        assert_eq!(
            by_host.budget_group(),
            "pool.auth.eu-west-1.amazoncognito.com"
        );
        let named = RouteConfig {
            budget: Some("account-eu".into()),
            ..route("/b", "https://other.example/token")
        };
        assert_eq!(named.budget_group(), "account-eu");
        let mut config = ProxyConfig::new(vec![by_host, named]);
        assert!(matches!(
            config.validate(),
            Err(ConfigError::UnknownBudget { group, .. }) if group == "account-eu"
        ));
        config
            .budgets
            .insert("account-eu".into(), BudgetConfig::default());
        assert!(config.validate().is_ok());
    }
}
