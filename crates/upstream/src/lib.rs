//! The HTTP client tokencache uses to reach a token endpoint, and the
//! resilience around it.
//!
//! [`Upstream`] is one token endpoint behind a [`BudgetGroup`] (a token
//! bucket shared by every key of every upstream on the same quota, kept in
//! this process or for the whole [`Fleet`] in its shared store, where
//! background refreshes yield to waiting callers and throttles slow the
//! group down), a [`CircuitBreaker`] (fail fast after consecutive failures,
//! then one probe at a time) and retries with exponential backoff and full
//! jitter that honour `Retry-After` and the caller's deadline.
//!
//! One pooled [`reqwest`] client per process (HTTP/1.1 and HTTP/2 by ALPN,
//! rustls with the platform's roots plus an optional private CA), with
//! connect and request timeouts, a cap on the answer's size, and the
//! hop-by-hop hygiene of a proxy: a cacheable load is sent as
//! [`FetchRequest::token_form`] builds it (from the parsed request, with the
//! proxy's own headers only), a pass-through request with what
//! [`forwardable_headers`] lets travel on, and [`UpstreamResponse`] is what
//! of the answer travels back.
//!
//! ```no_run
//! use bytes::Bytes;
//! use http::HeaderMap;
//! use tokencache_upstream::{UpstreamClient, UpstreamConfig, UpstreamRequest};
//!
//! # async fn example() -> Result<(), Box<dyn std::error::Error>> {
//! let client = UpstreamClient::new(&UpstreamConfig::default())?;
//! let url = "https://example.auth.us-east-1.amazoncognito.com/oauth2/token".parse()?;
//! let mut headers = HeaderMap::new();
//! headers.insert("content-type", "application/x-www-form-urlencoded".parse()?);
//! let answer = client
//!     .send(UpstreamRequest {
//!         url: &url,
//!         query: None,
//!         headers,
//!         body: Bytes::from_static(b"grant_type=client_credentials"),
//!     })
//!     .await?;
//! println!("{}", answer.status);
//! # Ok(())
//! # }
//! ```
//!
//! Every attempt is a `tracing` span (`upstream_attempt`, with a
//! `budget_wait` child) at `DEBUG`, and sends its W3C `traceparent` through
//! `opentelemetry`'s global propagator, a no-op until the binary exports
//! traces; [`continue_trace`] makes a span continue a caller's trace.
//!
//! This crate has no feature flags.

mod breaker;
mod budget;
mod client;
mod error;
mod group;
mod headers;
mod resilient;
mod trace;

pub use breaker::{BreakerConfig, BreakerState, CircuitBreaker, Permit};
pub use budget::{BudgetConfig, CUBIC_SCALE, DECREASE, Grant, Priority, RequestBudget};
pub use client::{UpstreamClient, UpstreamConfig, UpstreamRequest, UpstreamResponse};
pub use error::UpstreamError;
pub use group::{BudgetGroup, Fleet, FleetConfig, UNKNOWN_FLEET_SIZE};
pub use headers::{forwardable_headers, strip_hop_by_hop};
pub use reqwest::Url;
pub use resilient::{
    FetchError, FetchRequest, NoObserver, Observer, ResilienceConfig, RetryReason, Upstream,
};
pub use trace::continue_trace;
