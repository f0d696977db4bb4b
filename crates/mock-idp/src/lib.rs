//! A mock OAuth 2.0 identity provider that behaves like Amazon Cognito's
//! token endpoint: a real HTTP server (axum on tokio) for tokencache's
//! demo, end-to-end tests and benchmarks.
//!
//! # Endpoints
//!
//! | endpoint | what it does |
//! | --- | --- |
//! | `POST /oauth2/token` | `client_credentials`, `authorization_code` and `refresh_token` grants, with Cognito's answers and errors |
//! | `POST /` with `X-Amz-Target` | Cognito's native API (AWS JSON 1.1): `InitiateAuth` (`USER_PASSWORD_AUTH` with the `NEW_PASSWORD_REQUIRED` challenge, `REFRESH_TOKEN_AUTH`), `RespondToAuthChallenge`, `GetClientToken`; [`secret_hash`] checked; users from [`demo_users`] and [`MockIdp::add_user`]; counted in [`MockIdp::native_stats`]; the same faults, as `TooManyRequestsException` and `InternalErrorException` |
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
//! # Faults
//!
//! The token endpoint can be told, at run time, to misbehave the ways real
//! IdPs and the networks in front of them do, through `POST /control` or
//! [`MockIdp::apply`] with a [`ControlUpdate`]:
//!
//! | JSON field (default) | effect on `POST /oauth2/token` |
//! | --- | --- |
//! | `latency_ms` (`0`) | waits this long before every answer, faults included |
//! | `rate_limit_per_sec` (`null`) | at most this many requests a second, all clients together: a token bucket holding `rate` tokens (the burst) refilled at `rate` a second from the IdP's [`Clock`](tokencache_core::Clock); `null` or `0` is unlimited |
//! | `throttle_style` (`"http429"`) | how a request over the limit is refused: `"http429"` is `429`, `Retry-After` (whole seconds until the bucket holds a token, at least 1) and `{"error":"too_many_requests","error_description":"Rate exceeded"}`; `"cognito400"` is `400` and `{"error":"TooManyRequestsException","error_description":"Rate exceeded"}` |
//! | `reset_rate` (`0.0`) | this share of requests have their connection closed with no answer (on HTTP/2, their stream reset) |
//! | `hang_rate` (`0.0`) | this share are never answered: only the client's timeout, or the server stopping, ends them |
//! | `error_rate` (`0.0`) | this share are answered `500`, `503`, `500`, ... in turn, with `{"error":"server_error"}` |
//! | `garbage_rate` (`0.0`) | this share are answered `200` with `Content-Type: text/html` and `<html>upstream garbage</html>` |
//!
//! Each request is first counted in [`Stats`], then meets, in this order,
//! the rate limit, a reset, a hang, a server error, garbage, and only then
//! normal processing; each share (in `[0, 1]`: 0 never, 1 always) is drawn
//! independently among the requests the earlier steps let through. Faults
//! are counted in [`Stats`] (`throttled`, `resets`, `hangs`,
//! `server_errors`, `garbage`) when drawn, so a test can assert, say, that
//! the IdP never throttled. [`ControlUpdate::healthy`] turns every fault
//! off. For example:
//!
//! ```text
//! POST /control
//! {"rate_limit_per_sec": 50, "throttle_style": "cognito400", "error_rate": 0.1}
//! ```
//!
//! answers the settings now in force:
//!
//! ```text
//! {"latency_ms": 0, "token_lifetime_secs": 3600, "rate_limit_per_sec": 50,
//!  "throttle_style": "cognito400", "error_rate": 0.1, "reset_rate": 0.0,
//!  "garbage_rate": 0.0, "hang_rate": 0.0}
//! ```
//!
//! A field that is absent is left as it is; an unknown field, or a share
//! outside `[0, 1]`, is refused with `400 invalid_request` and changes
//! nothing. Resets and hangs need [`MockIdp::serve`], which serves the
//! connections itself: through [`MockIdp::router`] alone a reset is a
//! `500` whose body fails to read, and a hang lasts an hour.
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
//! `tower::ServiceExt::oneshot`. Time for `iat`/`exp` and for the rate
//! limit comes from a [`tokencache_core::Clock`]; [`MockIdp::with_clock`]
//! takes a manual one.
//!
//! This crate has no feature flags.

mod authorize;
mod config;
mod control;
mod error;
mod faults;
mod grants;
mod idp;
mod keys;
mod native;
mod native_state;
mod rate_limit;
mod response;
mod routes;
mod scope;
mod server;
mod stats;
#[cfg(test)]
mod test_client;
mod token;
mod token_endpoint;
mod token_request;

pub use config::{
    ClientRecord, DEFAULT_ISSUER, DEFAULT_TOKEN_LIFETIME, MockIdpConfig, demo_clients,
};
pub use control::{ControlUpdate, Settings, ThrottleStyle};
pub use error::MockIdpError;
pub use idp::MockIdp;
pub use keys::PUBLIC_KEY_PEM;
pub use native::secret_hash;
pub use native_state::{NativeStats, UserRecord, UserStatus, demo_users};
pub use stats::{NO_GRANT, Stats};
pub use token::decode_claims_unverified;
