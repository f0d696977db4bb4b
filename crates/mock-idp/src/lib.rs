//! A mock OAuth 2.0 identity provider that behaves like Amazon Cognito's
//! token endpoint: a real HTTP server (axum on tokio) for tokencache's
//! demo, end-to-end tests and benchmarks.
//!
//! # Endpoints
//!
//! | endpoint | what it does |
//! | --- | --- |
//! | `POST /oauth2/token` | `client_credentials`, `authorization_code` and `refresh_token` grants, with Cognito's answers and errors |
//! | `GET /oauth2/authorize` | approves at once: `302` to `redirect_uri?code=...&state=...` |
//! | `GET /.well-known/jwks.json` | the public key that verifies the tokens |
//! | `GET /stats`, `POST /stats/reset` | the request counters ([`Stats`]) |
//! | `GET /control`, `POST /control` | read or change the run-time [`Settings`] with a JSON [`ControlUpdate`] |
//!
//! The token endpoint, like Cognito's:
//! - needs `Content-Type: application/x-www-form-urlencoded`; reads
//!   parameters from the body and the query string together, refuses a
//!   parameter given twice, and treats an empty one as absent;
//! - authenticates the client with `Authorization: Basic` (id and secret
//!   form-urlencoded, then base64, as RFC 6749 §2.3.1 says) *or*
//!   `client_id` + `client_secret` in the body, not both; failures are
//!   `400 invalid_client`;
//! - grants the requested scopes (all of the client's when `scope` is
//!   absent) or refuses with `invalid_scope`;
//! - answers `{"access_token","expires_in","token_type":"Bearer"}` (plus
//!   `refresh_token` for an authorization code), with
//!   `Content-Type: application/json;charset=UTF-8`, `Cache-Control: no-store`
//!   and `Pragma: no-cache`; errors are
//!   `{"error","error_description"}`.
//!
//! Access tokens are RS256 JWTs signed with a fixed, committed **test** key
//! (see [`MockIdp::decoding_key_pem`]), with Cognito's claims (`sub`,
//! `client_id`, `token_use`, `scope`, `iss`, `iat`, `exp`, `jti`,
//! `version`) and three more that let tests see what a token was issued
//! for: `client_metadata` (the raw `aws_client_metadata` parameter), `aud`
//! (the `resource` parameter) and `extra_params` (every other parameter the
//! IdP does not interpret).
//!
//! # Example
//!
//! ```
//! use tokencache_mock_idp::{MockIdp, MockIdpConfig, decode_claims_unverified};
//!
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() -> Result<(), Box<dyn std::error::Error>> {
//! let idp = MockIdp::new(MockIdpConfig::default());
//! let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
//! let url = format!("http://{}/oauth2/token", listener.local_addr()?);
//! let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
//! let server = tokio::spawn(idp.clone().serve(listener, async {
//!     let _ = stopped.await;
//! }));
//!
//! let answer: serde_json::Value = reqwest::Client::new()
//!     .post(&url)
//!     .basic_auth("demo-client", Some("demo-secret"))
//!     .form(&[("grant_type", "client_credentials"), ("scope", "api/read")])
//!     .send()
//!     .await?
//!     .json()
//!     .await?;
//! assert_eq!(answer["expires_in"], 3600);
//! let token = answer["access_token"].as_str().unwrap_or_default();
//! assert_eq!(decode_claims_unverified(token).unwrap()["scope"], "api/read");
//! assert!(idp.verify_access_token(token).is_ok());
//! assert_eq!(idp.token_requests_for("demo-client"), 1);
//!
//! let _ = stop.send(());
//! server.await??;
//! # Ok(())
//! # }
//! ```
//!
//! Tests without a socket call [`MockIdp::router`] with
//! `tower::ServiceExt::oneshot`. Time for `iat`/`exp` comes from a
//! [`tokencache_core::Clock`]; [`MockIdp::with_clock`] takes a manual one.
//!
//! This crate has no feature flags.

mod authorize;
mod config;
mod control;
mod error;
mod grants;
mod idp;
mod keys;
mod response;
mod routes;
mod scope;
mod stats;
#[cfg(test)]
mod test_client;
mod token;
mod token_endpoint;
mod token_request;

pub use config::{
    ClientRecord, DEFAULT_ISSUER, DEFAULT_TOKEN_LIFETIME, MockIdpConfig, demo_clients,
};
pub use control::{ControlUpdate, Settings};
pub use error::MockIdpError;
pub use idp::MockIdp;
pub use keys::PUBLIC_KEY_PEM;
pub use stats::{NO_GRANT, Stats};
pub use token::decode_claims_unverified;
