//! Shared fixtures for tokencache's tests.
//!
//! - [`ManualClock`]: time that moves only when a test moves it.
//! - [`MockIdpServer`] and [`ProxyServer`]: the real servers on
//!   `127.0.0.1:0`, stopped when dropped.
//! - [`conformance::check_store`]: the contract every shared store passes.
//! - [`fleet`]: replicas over one shared store, and the purge scenario
//!   every shared store runs with them.
//! - [`answers::answer_of`] and [`answers::metric`]: a token answer's status,
//!   `Cache-Status` and JSON body at once; one series of the metrics text.
//! - [`last_value_idp::LastValueIdp`]: a token endpoint that reads repeated
//!   parameters and headers the other way (last copy wins), to catch a proxy
//!   that keys one reading and forwards another.
//! - [`raw_http::post`]: HTTP/1.1 written by hand, for hostile requests.
//! - [`native`]: a proxy in front of the mock IdP's native API (AWS JSON
//!   1.1), and calls to it.
//! - [`moto::MotoServer`]: moto's AWS emulator (DynamoDB, KMS) on loopback.
//! - [`redis::RedisServer`] and [`redis::RedisCluster`]: real Redis servers
//!   (standalone, TLS with an ACL user, cluster, cluster with replicas and
//!   failover) on free loopback ports.
//! - [`slow_link::SlowLink`]: a TCP forwarder that adds latency, to make a
//!   store slow rather than down.
//!
//! ```no_run
//! use tokencache_test_support::{ManualClock, MockIdpServer, ProxyServer};
//!
//! # async fn example() {
//! let idp = MockIdpServer::start(Default::default()).await;
//! let clock = ManualClock::starting_now();
//! let proxy = ProxyServer::start_for(&idp, clock.clone()).await;
//! let answer = proxy
//!     .token_request("demo-client", "demo-secret", "grant_type=client_credentials")
//!     .await;
//! assert_eq!(answer.status(), 200);
//! # }
//! ```
//!
//! This crate has no feature flags.

pub mod answers;
pub mod certificates;
pub mod conformance;
mod flaky;
pub mod fleet;
pub mod last_value_idp;
pub mod native;
pub mod ports;
pub mod raw_http;
pub mod slow_link;

pub use flaky::{FlakyStore, OutageSwitch};
pub mod moto;
pub mod redis;

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use tokencache_core::{Clock, SystemClock, UnixMillis};
use tokencache_mock_idp::{MockIdp, MockIdpConfig};
use tokencache_proxy::{AdminToken, Limits, Proxy, ProxyConfig, RouteConfig, ServeOptions};
use tokio::net::TcpListener;
use tokio::sync::oneshot;

/// The admin API token of the proxies [`ProxyServer::config_for`] builds.
pub const ADMIN_TOKEN: &str = "test-admin-token";

/// A clock that moves only when told to; clones share the time.
#[derive(Debug, Clone)]
pub struct ManualClock(Arc<AtomicU64>);

impl ManualClock {
    /// A clock set to `start`.
    #[must_use]
    pub fn at(start: UnixMillis) -> Self {
        Self(Arc::new(AtomicU64::new(start.0)))
    }

    /// A clock set to the real time now, rounded down to a whole second:
    /// tokens whose JWT `exp` comes from the real clock keep their meaning,
    /// and lifetimes in whole seconds stay whole.
    #[must_use]
    pub fn starting_now() -> Self {
        Self::at(UnixMillis(SystemClock.now().0 / 1000 * 1000))
    }

    /// Moves the clock forward.
    pub fn advance(&self, by: Duration) {
        let millis = u64::try_from(by.as_millis()).unwrap_or(u64::MAX);
        self.0.fetch_add(millis, Ordering::SeqCst);
    }

    /// Sets the clock.
    pub fn set(&self, to: UnixMillis) {
        self.0.store(to.0, Ordering::SeqCst);
    }
}

impl Clock for ManualClock {
    fn now(&self) -> UnixMillis {
        UnixMillis(self.0.load(Ordering::SeqCst))
    }
}

/// Binds `127.0.0.1:0`.
///
/// # Panics
/// If loopback cannot be bound (the test cannot run).
pub async fn bind_loopback() -> (TcpListener, SocketAddr) {
    let listener = TcpListener::bind("127.0.0.1:0")
        .await
        .unwrap_or_else(|error| panic!("binding loopback: {error}"));
    let addr = listener
        .local_addr()
        .unwrap_or_else(|error| panic!("reading the bound address: {error}"));
    (listener, addr)
}

/// The mock IdP, serving on loopback until dropped.
#[derive(Debug)]
pub struct MockIdpServer {
    /// The IdP, for counters and run-time settings.
    pub idp: MockIdp,
    /// Where it listens.
    pub addr: SocketAddr,
    _stop: oneshot::Sender<()>,
}

impl MockIdpServer {
    /// Starts a mock IdP.
    pub async fn start(config: MockIdpConfig) -> Self {
        Self::start_with(MockIdp::new(config)).await
    }

    /// Serves an IdP built by the caller (with a manual clock, say).
    pub async fn start_with(idp: MockIdp) -> Self {
        let (listener, addr) = bind_loopback().await;
        let (stop, stopped) = oneshot::channel::<()>();
        tokio::spawn(idp.clone().serve(listener, async move {
            let _ = stopped.await;
        }));
        Self {
            idp,
            addr,
            _stop: stop,
        }
    }

    /// Its token endpoint.
    #[must_use]
    pub fn token_url(&self) -> String {
        format!("http://{}/oauth2/token", self.addr)
    }
}

/// The proxy, serving on loopback until dropped.
#[derive(Debug)]
pub struct ProxyServer {
    /// The proxy, for purges and counts.
    pub proxy: Proxy,
    /// The token listener.
    pub addr: SocketAddr,
    /// The admin listener.
    pub admin_addr: SocketAddr,
    /// A client for the tests' requests (no pooling surprises: one per
    /// server).
    pub http: reqwest::Client,
    stop: oneshot::Sender<()>,
    served: tokio::task::JoinHandle<std::io::Result<()>>,
}

impl ProxyServer {
    /// Starts a proxy with `config`, reading time from `clock`.
    ///
    /// # Panics
    /// If the configuration is invalid.
    pub async fn start(config: ProxyConfig, clock: impl Clock) -> Self {
        Self::start_with_grace(config, clock, Duration::from_secs(1)).await
    }

    /// Starts a proxy that drains for at most `grace` on shutdown.
    ///
    /// # Panics
    /// If the configuration is invalid.
    pub async fn start_with_grace(config: ProxyConfig, clock: impl Clock, grace: Duration) -> Self {
        let proxy = Proxy::new(config, Arc::new(clock))
            .unwrap_or_else(|error| panic!("invalid proxy configuration: {error}"));
        let (listener, addr) = bind_loopback().await;
        let (admin, admin_addr) = bind_loopback().await;
        let (stop, stopped) = oneshot::channel::<()>();
        // Every caller of a test is 127.0.0.1, standing in for many hosts:
        // no per-address connection limit (crates/proxy/tests/connections.rs
        // tests it).
        let options = ServeOptions {
            limits: Limits {
                max_connections_per_ip: 0,
                ..Limits::default()
            },
            tls: None,
            workers: 0,
        };
        let served = tokio::spawn(tokencache_proxy::serve_with(
            proxy.clone(),
            listener,
            Some(admin),
            options,
            async move {
                let _ = stopped.await;
            },
            grace,
        ));
        Self {
            proxy,
            addr,
            admin_addr,
            http: reqwest::Client::new(),
            stop,
            served,
        }
    }

    /// Signals shutdown and waits for the server to drain and stop.
    ///
    /// # Errors
    /// What `serve` returned.
    ///
    /// # Panics
    /// If the server task panicked.
    pub async fn shutdown(self) -> std::io::Result<()> {
        let _ = self.stop.send(());
        self.served
            .await
            .unwrap_or_else(|error| panic!("the proxy task failed: {error}"))
    }

    /// Starts a proxy with defaults and one route, `/oauth2/token`, in
    /// front of `idp`.
    pub async fn start_for(idp: &MockIdpServer, clock: impl Clock) -> Self {
        Self::start(Self::config_for(idp), clock).await
    }

    /// The default configuration with one route in front of `idp`, and
    /// [`ADMIN_TOKEN`] as the admin API's token.
    ///
    /// # Panics
    /// Never in practice: the IdP's URL is well formed.
    #[must_use]
    pub fn config_for(idp: &MockIdpServer) -> ProxyConfig {
        let mut config = ProxyConfig::new(vec![RouteConfig::new(
            "/oauth2/token",
            idp.token_url()
                .parse()
                .unwrap_or_else(|error| panic!("mock IdP URL: {error}")),
        )]);
        config.admin_token = AdminToken::new(ADMIN_TOKEN.to_owned());
        config
    }

    /// The proxy's token URL.
    #[must_use]
    pub fn token_url(&self) -> String {
        format!("http://{}/oauth2/token", self.addr)
    }

    /// A URL on the admin listener.
    #[must_use]
    pub fn admin_url(&self, path: &str) -> String {
        format!("http://{}{path}", self.admin_addr)
    }

    /// Posts `body` to the token URL with Basic credentials.
    ///
    /// # Panics
    /// If the request cannot be sent.
    pub async fn token_request(&self, id: &str, secret: &str, body: &str) -> reqwest::Response {
        self.http
            .post(self.token_url())
            .basic_auth(id, Some(secret))
            .header("content-type", "application/x-www-form-urlencoded")
            .body(body.to_owned())
            .send()
            .await
            .unwrap_or_else(|error| panic!("posting to the proxy: {error}"))
    }

    /// The admin `/metrics` text.
    ///
    /// # Panics
    /// If the request fails.
    pub async fn metrics(&self) -> String {
        self.http
            .get(self.admin_url("/metrics"))
            .send()
            .await
            .unwrap_or_else(|error| panic!("metrics: {error}"))
            .text()
            .await
            .unwrap_or_else(|error| panic!("metrics body: {error}"))
    }
}
