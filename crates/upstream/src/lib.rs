//! The HTTP client tokencache uses to reach a token endpoint.
//!
//! One pooled [`reqwest`] client per process (HTTP/1.1 and HTTP/2 by ALPN,
//! rustls with the platform's roots plus an optional private CA), with
//! connect and request timeouts, a cap on the answer's size, and the
//! hop-by-hop hygiene of a proxy: [`forwardable_headers`] decides what of a
//! caller's request travels on, [`UpstreamResponse`] what of the answer
//! travels back.
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
//! This crate has no feature flags.

mod client;
mod error;
mod headers;

pub use client::{UpstreamClient, UpstreamConfig, UpstreamRequest, UpstreamResponse};
pub use error::UpstreamError;
pub use headers::{forwardable_headers, strip_hop_by_hop};
pub use reqwest::Url;
