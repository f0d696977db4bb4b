//! The caching proxy for OAuth 2.0 token endpoints.
//!
//! Apps change only their token URL. For each `client_credentials` request
//! the proxy derives a cache key from everything that can change the token
//! (see [`tokencache_core::KeyDeriver`]) and answers from its memory store
//! while the token is fresh; while it is aging it still answers from the
//! store and refreshes in the background, once; when nothing servable is
//! cached, one upstream request per key is made however many callers wait
//! for it. Everything else (other grants, errors, throttles, bodies that are
//! not tokens) passes through unchanged and is never cached.
//!
//! The app is a value ([`Proxy`]) with two routers, so `main` and the tests
//! serve the same thing:
//!
//! ```no_run
//! use std::sync::Arc;
//! use std::time::Duration;
//! use tokencache_core::SystemClock;
//! use tokencache_proxy::{Proxy, ProxyConfig, RouteConfig, serve};
//!
//! # async fn run() -> Result<(), Box<dyn std::error::Error>> {
//! let config = ProxyConfig::new(vec![RouteConfig::new(
//!     "/oauth2/token",
//!     "https://my-pool.auth.eu-west-1.amazoncognito.com/oauth2/token".parse()?,
//! )]);
//! let proxy = Proxy::new(config, Arc::new(SystemClock))?;
//! let listener = tokio::net::TcpListener::bind("127.0.0.1:8080").await?;
//! let admin = tokio::net::TcpListener::bind("127.0.0.1:9090").await?;
//! let shutdown = async {
//!     let _ = tokio::signal::ctrl_c().await;
//! };
//! serve(proxy, listener, Some(admin), shutdown, Duration::from_secs(10)).await?;
//! # Ok(())
//! # }
//! ```
//!
//! With [`ProxyConfig::cognito_idp`] set, the token listener also speaks
//! Cognito's native API (AWS JSON 1.1: `POST /` with `X-Amz-Target`), so
//! `AWS_ENDPOINT_URL_COGNITO_IDENTITY_PROVIDER` pointed at the proxy gives
//! every AWS SDK cached `InitiateAuth` and `GetClientToken` answers, with
//! errors in the AWS shape.
//!
//! Each token request is a `tracing` span at `DEBUG` (`token_request`, with
//! children for its `load` and the shared-store operations; the upstream
//! crate adds each attempt and budget wait) that continues a caller's W3C
//! `traceparent`. The binary exports them as OpenTelemetry traces when asked;
//! otherwise they are disabled at their callsites and cost the hit path one
//! level check.
//!
//! Answers carry RFC 9211 `Cache-Status` (`tokencache; hit; ttl=N`,
//! `tokencache; fwd=miss; stored`, `tokencache; fwd=miss; collapsed`,
//! `tokencache; fwd=bypass`), `Age`, and `Cache-Control: no-store`.
//!
//! This crate has no feature flags.

mod activity;
mod admin;
mod answer;
mod answer_format;
mod answer_latency;
mod cache;
mod cache_status;
mod client_counts;
mod client_index;
mod cognito;
mod config;
mod connections;
mod dialect;
mod endpoint;
mod error;
mod in_flight;
mod listener;
mod loader;
mod metrics;
mod negative;
mod observe;
mod outcome;
mod process_metrics;
mod proxy;
mod route;
mod seconds;
mod server;
mod service;
mod shared_tier;
mod spans;
mod status;
mod status_page;
mod store_breaker;
mod striped;
mod tls;
mod watchdog;
mod woken_only;

pub use config::{AdminToken, CognitoIdpConfig, ConfigError, Limits, ProxyConfig, RouteConfig};
pub use error::ProxyError;
pub use proxy::Proxy;
pub use server::{ServeOptions, serve, serve_with};
pub use shared_tier::SharedStoreConfig;
pub use tls::{ReloadableTls, TlsFiles};
pub use tokencache_core::Backoff;
pub use tokencache_upstream::{BreakerConfig, BudgetConfig, ResilienceConfig, UpstreamConfig};
