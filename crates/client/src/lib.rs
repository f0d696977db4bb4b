//! OAuth 2.0 access tokens for machine-to-machine calls, from the
//! `client_credentials` grant, kept in memory and refreshed ahead of their
//! expiry: for Rust services that call a token endpoint (Amazon Cognito's
//! `/oauth2/token`, or the tokencache proxy in front of it) themselves.
//!
//! Build one [`ClientCredentials`] source, clone it into every task, and
//! call [`token`](ClientCredentials::token) whenever a token is needed:
//!
//! - a token is reused for most of its life: fresh until 75 % of it (less
//!   a random shift of up to 5 %, so pods started together do not refresh
//!   together), then refreshed **in the background** while callers keep
//!   getting it at once, until 10 % of its life is left;
//! - **one fetch at a time** across all clones and tasks: a thousand
//!   concurrent callers without a token cause one request;
//! - throttling (429, Cognito's `TooManyRequestsException`), 5xx answers
//!   and transport errors are **retried** with exponential backoff and full
//!   jitter, honouring `Retry-After`; a refused client is not;
//! - when a background refresh fails, the still-valid token keeps being
//!   served (**stale-if-error**), and refreshes back off;
//! - errors are typed: [`Error::OAuth`] keeps the endpoint's `error`,
//!   `error_description` and status, apart from transport errors;
//! - tokens and secrets are redacted in `Debug` and never logged;
//! - per call, [`TokenOptions`] force a renewal or ask for other scopes or
//!   another resource (each such token cached apart);
//! - the `Authorization` header uses the answer's `token_type` (`Bearer`
//!   unless it says otherwise, `DPoP`…), and the answer's other fields are
//!   at hand, typed: [`AccessToken::extra`];
//! - times are [`std::time::SystemTime`]s.
//!
//! The freshness schedule is the one the tokencache proxy uses
//! ([`tokencache_core::FreshnessPolicy`]), so the two agree.
//!
//! # Example
//!
//! ```
//! use std::time::SystemTime;
//!
//! use tokencache_client::{ClientCredentials, TokenOptions};
//! # use tokencache_mock_idp::{MockIdp, MockIdpConfig};
//!
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() -> Result<(), Box<dyn std::error::Error>> {
//! # // A mock Cognito on loopback stands in for the real endpoint.
//! # let idp = MockIdp::new(MockIdpConfig::default());
//! # let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
//! # let token_url = format!("http://{}/oauth2/token", listener.local_addr()?);
//! # tokio::spawn(idp.clone().serve(listener, std::future::pending()));
//! let source = ClientCredentials::builder()
//!     .token_url(&token_url)
//!     .client_id("demo-client")
//!     .client_secret("demo-secret")
//!     .scopes(["api/read"])
//!     .build()?;
//!
//! let token = source.token().await?;
//! assert_eq!(token.token_type(), "Bearer");
//! // Send it as `Authorization: Bearer <token>`:
//! assert!(token.authorization_header().to_str()?.starts_with("Bearer "));
//! assert!(token.expires_at() > SystemTime::now());
//!
//! // Clones share the cache: no second request.
//! let again = source.clone().token().await?;
//! assert_eq!(again.secret(), token.secret());
//! # assert_eq!(idp.token_requests(), 1);
//!
//! // Another scope for one call: a token of its own, cached apart.
//! let writer = source
//!     .token_with(TokenOptions::new().scopes(["api/write"]))
//!     .await?;
//! assert_eq!(writer.scopes(), ["api/write"]);
//! assert_ne!(writer.secret(), token.secret());
//! // The answer's fields beyond the standard ones, typed (the mock IdP
//! // sends none):
//! assert_eq!(writer.extra::<String>("tenant")?, None);
//! # assert_eq!(idp.token_requests(), 2);
//! # Ok(())
//! # }
//! ```
//!
//! # HTTP clients
//!
//! Both take any [`TokenSource`] (a [`ClientCredentials`], a source of your
//! own, a fake one in tests), and read per-request [`TokenOptions`] from
//! the request's extensions.
//!
//! - `BearerMiddleware` (feature `middleware`) for `reqwest-middleware`
//!   adds the header and, on a 401 from the API, drops the token and sends
//!   the request again once with a fresh one.
//! - `BearerLayer` (feature `tower`) does the same for tower services
//!   (hyper, tonic), without the resend, since their bodies cannot in
//!   general be replayed.
//!
//! # Feature flags
//!
//! | feature | default | what it adds |
//! | --- | --- | --- |
//! | `reqwest` | yes | the default [`Transport`]: a `reqwest` 0.13 client (rustls, HTTP/2) |
//! | `middleware` | no | `BearerMiddleware` for `reqwest-middleware` 0.5 |
//! | `tower` | no | `BearerLayer` for tower 0.5 / `http` 1 services |
//!
//! Without `reqwest`, pass your own [`Transport`] to
//! [`ClientCredentialsBuilder::transport`].
//!
//! # Runtime and MSRV
//!
//! Needs a Tokio runtime (fetches run in spawned tasks, retries sleep on
//! Tokio timers). The minimum supported Rust version is 1.88.

mod builder;
mod clock;
mod error;
mod fetch;
#[cfg(feature = "tower")]
mod layer;
#[cfg(feature = "middleware")]
mod middleware;
mod options;
mod request;
mod source;
mod token;
mod token_source;
mod transport;

pub use builder::ClientCredentialsBuilder;
pub use clock::{Clock, SystemClock};
pub use error::{Error, TransportError};
#[cfg(feature = "tower")]
pub use layer::{BearerLayer, BearerService, BoxError};
#[cfg(feature = "middleware")]
pub use middleware::BearerMiddleware;
pub use options::TokenOptions;
pub use request::AuthMethod;
pub use source::ClientCredentials;
pub use token::AccessToken;
pub use token_source::TokenSource;
pub use tokencache_core::{Backoff, MinRemaining};
pub use transport::{BoxFuture, Transport};
