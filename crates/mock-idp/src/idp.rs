//! The mock IdP itself: shared state, the control surface for tests, and
//! the server loop.

use std::collections::HashMap;
use std::fmt;
use std::future::Future;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use tokencache_core::{Clock, SystemClock, UnixMillis};

use crate::control::{ControlUpdate, Settings};
use crate::faults::{Fault, FaultInjector};
use crate::grants::GrantStore;
use crate::keys::{PUBLIC_KEY_PEM, SigningKeys};
use crate::native_state::{NativeState, NativeStats, UserRecord, demo_users};
use crate::stats::{Stats, StatsRecorder};
use crate::{ClientRecord, MockIdpConfig, MockIdpError, routes, server, token};

/// A running mock identity provider's state. Cheap to clone: clones share
/// everything (clients, settings, counters, issued codes).
///
/// Build one with [`MockIdp::new`], then either mount [`MockIdp::router`]
/// in a test or run it on a socket with [`MockIdp::serve`]. The counters
/// and settings can be read and changed from the test through this handle
/// while the server runs.
#[derive(Clone)]
pub struct MockIdp {
    inner: Arc<Inner>,
}

struct Inner {
    clients: HashMap<String, ClientRecord>,
    issuer: String,
    settings: Mutex<Settings>,
    faults: FaultInjector,
    stats: StatsRecorder,
    grants: GrantStore,
    native: NativeState,
    keys: &'static SigningKeys,
    clock: Arc<dyn Clock>,
}

impl fmt::Debug for MockIdp {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut clients: Vec<&str> = self.inner.clients.keys().map(String::as_str).collect();
        clients.sort_unstable();
        f.debug_struct("MockIdp")
            .field("issuer", &self.inner.issuer)
            .field("clients", &clients)
            .field("settings", &self.settings())
            .finish_non_exhaustive()
    }
}

impl MockIdp {
    /// A mock IdP with `config`, reading time from the system clock.
    #[must_use]
    pub fn new(config: MockIdpConfig) -> Self {
        Self::with_clock(config, Arc::new(SystemClock))
    }

    /// A mock IdP that reads time (for `iat`, `exp`, code expiry and the
    /// rate limit) from `clock`, so tests on a manual clock get tokens
    /// consistent with it and drive the rate limit without sleeping.
    #[must_use]
    pub fn with_clock(config: MockIdpConfig, clock: Arc<dyn Clock>) -> Self {
        let MockIdpConfig {
            clients,
            token_lifetime,
            latency,
            issuer,
        } = config;
        Self {
            inner: Arc::new(Inner {
                clients: clients
                    .into_iter()
                    .map(|client| (client.id.clone(), client))
                    .collect(),
                issuer,
                settings: Mutex::new(Settings::healthy(latency, token_lifetime)),
                faults: FaultInjector::default(),
                stats: StatsRecorder::default(),
                grants: GrantStore::default(),
                native: NativeState::with_users(demo_users()),
                keys: SigningKeys::embedded(),
                clock,
            }),
        }
    }

    /// The whole HTTP interface, for `oneshot` tests or for mounting in
    /// another router.
    pub fn router(&self) -> axum::Router {
        routes::router(self.clone())
    }

    /// Serves [`MockIdp::router`] on `listener` until `shutdown` completes,
    /// then stops accepting, lets in-flight requests finish and returns.
    /// Requests left hanging by the hang fault are dropped at that point,
    /// so they do not hold the shutdown open.
    ///
    /// Connections are served with hyper directly (HTTP/1.1, or HTTP/2 by
    /// prior knowledge), so the reset fault can close one without an
    /// answer; a reset ends only that connection, never the server.
    ///
    /// # Errors
    ///
    /// None at present: like `axum::serve`, the loop skips accept errors
    /// about one connection and retries others (out of file descriptors,
    /// say) a second later. The `Result` is kept for callers that spawn it.
    pub async fn serve(
        self,
        listener: tokio::net::TcpListener,
        shutdown: impl Future<Output = ()> + Send + 'static,
    ) -> std::io::Result<()> {
        if let Ok(addr) = listener.local_addr() {
            tracing::info!(%addr, issuer = %self.inner.issuer, "mock IdP listening");
        }
        server::serve(self.router(), listener, shutdown).await;
        Ok(())
    }

    /// A snapshot of the counters.
    #[must_use]
    pub fn stats(&self) -> Stats {
        self.inner.stats.snapshot()
    }

    /// The number of `POST /oauth2/token` requests so far, whatever their
    /// outcome.
    #[must_use]
    pub fn token_requests(&self) -> u64 {
        self.inner.stats.token_requests()
    }

    /// The number of `POST /oauth2/token` requests that claimed to come from
    /// `client_id` (in `Authorization: Basic` or the body), whatever their
    /// outcome.
    #[must_use]
    pub fn token_requests_for(&self, client_id: &str) -> u64 {
        self.inner.stats.token_requests_for(client_id)
    }

    /// Sets every counter back to zero, the native API's included.
    pub fn reset_stats(&self) {
        self.inner.stats.reset();
        self.inner.native.reset_stats();
    }

    /// Adds a user to the native API's user pool (or replaces the one of
    /// the same name). The pool starts with the
    /// [`demo_users`](crate::demo_users).
    pub fn add_user(&self, user: UserRecord) {
        self.inner.native.put_user(user);
    }

    /// A snapshot of the native API's counters.
    #[must_use]
    pub fn native_stats(&self) -> NativeStats {
        self.inner.native.stats()
    }

    /// The current run-time settings.
    #[must_use]
    pub fn settings(&self) -> Settings {
        self.lock_settings().clone()
    }

    /// Applies `update` to the run-time settings (as `POST /control` does)
    /// and returns the new settings.
    ///
    /// Shares outside `[0, 1]` are clamped into it (see [`Settings::apply`]);
    /// call [`ControlUpdate::validate`] first to refuse them instead. An
    /// update that sets `rate_limit_per_sec` starts the limit over with a
    /// full bucket.
    pub fn apply(&self, update: &ControlUpdate) -> Settings {
        let mut settings = self.lock_settings();
        settings.apply(update);
        if update.rate_limit_per_sec.is_some() {
            self.inner.faults.reset_rate_limit();
        }
        settings.clone()
    }

    /// Sets the delay added before every answer of `/oauth2/token`.
    pub fn set_latency(&self, latency: Duration) {
        self.lock_settings().latency = latency;
    }

    /// Sets the lifetime of access tokens issued from now on (whole
    /// seconds).
    pub fn set_token_lifetime(&self, lifetime: Duration) {
        self.lock_settings().token_lifetime = lifetime;
    }

    /// The `iss` claim of issued tokens.
    #[must_use]
    pub fn issuer(&self) -> &str {
        &self.inner.issuer
    }

    /// The public key that verifies issued tokens, as SPKI PEM
    /// (`-----BEGIN PUBLIC KEY-----`). It is a fixed test key, the same for
    /// every mock IdP.
    #[must_use]
    pub fn decoding_key_pem(&self) -> &str {
        PUBLIC_KEY_PEM
    }

    /// The `kid` header of issued tokens.
    #[must_use]
    pub fn key_id(&self) -> &str {
        &self.inner.keys.kid
    }

    /// The JWKS document served at `/.well-known/jwks.json`.
    #[must_use]
    pub fn jwks(&self) -> serde_json::Value {
        serde_json::to_value(&self.inner.keys.jwks).unwrap_or_default()
    }

    /// Checks that `token` is an access token signed by this mock IdP (key
    /// and issuer) and returns its claims. Expiry is *not* checked, so
    /// tests on a manual clock can use it.
    ///
    /// # Errors
    ///
    /// [`MockIdpError::InvalidToken`] if the signature, key id or issuer is
    /// wrong or the token is malformed.
    pub fn verify_access_token(&self, token: &str) -> Result<serde_json::Value, MockIdpError> {
        token::verify(self.inner.keys, &self.inner.issuer, token)
    }

    fn lock_settings(&self) -> std::sync::MutexGuard<'_, Settings> {
        // Settings are plain values, valid even if a holder panicked.
        self.inner
            .settings
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
    }

    pub(crate) fn client(&self, id: &str) -> Option<&ClientRecord> {
        self.inner.clients.get(id)
    }

    pub(crate) fn now(&self) -> UnixMillis {
        self.inner.clock.now()
    }

    /// The fault, if any, for a token request arriving now under
    /// `settings`.
    pub(crate) fn draw_fault(&self, settings: &Settings) -> Option<Fault> {
        self.inner.faults.draw(settings, self.now())
    }

    pub(crate) fn keys(&self) -> &'static SigningKeys {
        self.inner.keys
    }

    pub(crate) fn stats_recorder(&self) -> &StatsRecorder {
        &self.inner.stats
    }

    pub(crate) fn grants(&self) -> &GrantStore {
        &self.inner.grants
    }

    pub(crate) fn native(&self) -> &NativeState {
        &self.inner.native
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;
    use crate::decode_claims_unverified;

    #[test]
    fn debug_shows_no_secrets() {
        let idp = MockIdp::new(MockIdpConfig::default());
        let printed = format!("{idp:?}");
        assert!(printed.contains("demo-client"), "{printed}");
        assert!(!printed.contains("secret"), "{printed}");
    }

    #[test]
    fn clones_share_state() {
        let idp = MockIdp::new(MockIdpConfig::default());
        let clone = idp.clone();
        clone.set_latency(Duration::from_millis(10));
        clone.set_token_lifetime(Duration::from_secs(5));
        assert_eq!(
            idp.settings(),
            Settings::healthy(Duration::from_millis(10), Duration::from_secs(5))
        );
        let settings = idp.apply(&ControlUpdate {
            latency_ms: Some(0),
            ..ControlUpdate::default()
        });
        assert_eq!(settings.latency, Duration::ZERO);
        assert_eq!(clone.settings(), settings);
    }

    #[test]
    fn public_key_is_pem() {
        let idp = MockIdp::new(MockIdpConfig::default());
        assert!(
            idp.decoding_key_pem()
                .starts_with("-----BEGIN PUBLIC KEY-----")
        );
        assert_eq!(idp.issuer(), crate::DEFAULT_ISSUER);
    }

    /// The real thing: a socket, `serve`, an HTTP client, a graceful stop.
    #[tokio::test]
    async fn serves_on_a_socket_until_shutdown() {
        let idp = MockIdp::new(MockIdpConfig::default());
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let base = format!("http://{}", listener.local_addr().unwrap());
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let server = tokio::spawn(idp.clone().serve(listener, async {
            let _ = stopped.await;
        }));

        let client = reqwest::Client::new();
        let response = client
            .post(format!("{base}/oauth2/token?scope=api%2Fread"))
            .basic_auth("demo-client", Some("demo-secret"))
            .form(&[("grant_type", "client_credentials"), ("tenant", "t1")])
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), 200);
        assert_eq!(
            response.headers()["content-type"],
            "application/json;charset=UTF-8"
        );
        assert_eq!(response.headers()["cache-control"], "no-store");
        let body: serde_json::Value = response.json().await.unwrap();
        let token = body["access_token"].as_str().unwrap();
        let claims = idp.verify_access_token(token).unwrap();
        assert_eq!(claims, decode_claims_unverified(token).unwrap());
        assert_eq!(claims["scope"], "api/read");
        assert_eq!(claims["extra_params"]["tenant"], "t1");

        let refused = client
            .post(format!("{base}/oauth2/token"))
            .basic_auth("demo-client", Some("wrong"))
            .form(&[("grant_type", "client_credentials")])
            .send()
            .await
            .unwrap();
        assert_eq!(refused.status(), 400);
        let error: serde_json::Value = refused.json().await.unwrap();
        assert_eq!(error["error"], "invalid_client");

        let stats: Stats = client
            .get(format!("{base}/stats"))
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        assert_eq!(stats.token_requests, 2);
        assert_eq!(stats.tokens_issued, 1);
        assert_eq!(idp.token_requests_for("demo-client"), 2);

        stop.send(()).unwrap();
        tokio::time::timeout(Duration::from_secs(10), server)
            .await
            .expect("the server stops after the shutdown signal")
            .unwrap()
            .unwrap();
    }
}
