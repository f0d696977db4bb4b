//! Fixtures for the client's end-to-end tests: the mock IdP on loopback, a
//! front for it that throttles on demand, and a small API that refuses the
//! first bearer token it sees. All real HTTP servers on `127.0.0.1:0`.
#![allow(dead_code, clippy::unwrap_used, clippy::expect_used)]

use std::net::SocketAddr;
use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use axum::Router;
use axum::extract::{Request, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use tokencache_client::{
    AccessToken, Backoff, BoxFuture, ClientCredentials, ClientCredentialsBuilder, Error,
    TokenOptions, TokenSource,
};
use tokencache_mock_idp::{MockIdp, MockIdpConfig};
use tokencache_test_support::{ManualClock, MockIdpServer, bind_loopback};
use tokio::sync::oneshot;

/// A builder for the mock IdP's demo client.
pub fn demo_source(token_url: &str) -> ClientCredentialsBuilder {
    ClientCredentials::builder()
        .token_url(token_url)
        .client_id("demo-client")
        .client_secret("demo-secret")
        .scopes(["api/read"])
}

/// Quick retries, so failing tests fail fast.
pub fn quick_backoff(attempts: u32) -> Backoff {
    Backoff::new(Duration::from_millis(1), Duration::from_millis(5), attempts)
}

/// `clock` as the client library's clock, which speaks `SystemTime`: the
/// source and the IdP then share one manual time.
pub fn client_clock(clock: &ManualClock) -> Arc<dyn tokencache_client::Clock> {
    Arc::new(ClientClock(clock.clone()))
}

#[derive(Debug)]
struct ClientClock(ManualClock);

impl tokencache_client::Clock for ClientClock {
    fn now(&self) -> SystemTime {
        UNIX_EPOCH + Duration::from_millis(tokencache_core::Clock::now(&self.0).0)
    }
}

/// A mock IdP on a manual clock, issuing tokens that live `lifetime`.
pub async fn idp_on(clock: &ManualClock, lifetime: Duration) -> MockIdpServer {
    let config = MockIdpConfig {
        token_lifetime: lifetime,
        ..MockIdpConfig::default()
    };
    MockIdpServer::start_with(MockIdp::with_clock(config, Arc::new(clock.clone()))).await
}

/// Polls `condition` every 10 ms for up to 10 s.
pub async fn eventually(what: &str, mut condition: impl FnMut() -> bool) {
    for _ in 0..1000 {
        if condition() {
            return;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    panic!("timed out waiting for: {what}");
}

/// A server on loopback running `app` until dropped.
pub struct Served {
    pub addr: SocketAddr,
    _stop: oneshot::Sender<()>,
}

pub async fn serve(app: Router) -> Served {
    let (listener, addr) = bind_loopback().await;
    let (stop, stopped) = oneshot::channel::<()>();
    tokio::spawn(async move {
        axum::serve(listener, app)
            .with_graceful_shutdown(async move {
                let _ = stopped.await;
            })
            .await
            .unwrap();
    });
    Served { addr, _stop: stop }
}

/// The mock IdP behind a front that answers `429 Retry-After: 1` to the
/// next N token requests (the mock's own rate limit is a token bucket, which
/// cannot say "exactly the first two").
pub struct ThrottlingFront {
    pub idp: MockIdp,
    faults: Arc<FrontState>,
    served: Served,
}

#[derive(Default)]
struct FrontState {
    requests: AtomicU64,
    throttle_next: AtomicU32,
}

impl ThrottlingFront {
    pub async fn start() -> Self {
        let idp = MockIdp::new(MockIdpConfig::default());
        let faults = Arc::new(FrontState::default());
        let app = idp
            .router()
            .layer(middleware::from_fn_with_state(faults.clone(), throttle));
        Self {
            idp,
            faults,
            served: serve(app).await,
        }
    }

    pub fn token_url(&self) -> String {
        format!("http://{}/oauth2/token", self.served.addr)
    }

    /// Throttles the next `n` token requests.
    pub fn throttle_next(&self, n: u32) {
        self.faults.throttle_next.store(n, Ordering::SeqCst);
    }

    /// Token requests that reached the front, throttled or not.
    pub fn requests(&self) -> u64 {
        self.faults.requests.load(Ordering::SeqCst)
    }
}

async fn throttle(State(front): State<Arc<FrontState>>, request: Request, next: Next) -> Response {
    if request.uri().path() != "/oauth2/token" {
        return next.run(request).await;
    }
    front.requests.fetch_add(1, Ordering::SeqCst);
    let throttled = front
        .throttle_next
        .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| n.checked_sub(1))
        .is_ok();
    if throttled {
        return (
            StatusCode::TOO_MANY_REQUESTS,
            [(header::RETRY_AFTER, "1")],
            r#"{"error":"too_many_requests","error_description":"Rate exceeded"}"#,
        )
            .into_response();
    }
    next.run(request).await
}

/// An API that answers `401` to requests without a bearer token, to the
/// first token it sees (as if it had been revoked since), and to every
/// token when told to; `200` otherwise.
pub struct TestApi {
    state: Arc<ApiState>,
    served: Served,
}

#[derive(Default)]
struct ApiState {
    hits: AtomicU64,
    first_token: Mutex<Option<String>>,
    seen: Mutex<Vec<String>>,
    refuse_all: std::sync::atomic::AtomicBool,
}

impl TestApi {
    pub async fn start() -> Self {
        let state = Arc::new(ApiState::default());
        let app = Router::new().fallback(api).with_state(state.clone());
        Self {
            state,
            served: serve(app).await,
        }
    }

    pub fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.served.addr)
    }

    pub fn hits(&self) -> u64 {
        self.state.hits.load(Ordering::SeqCst)
    }

    /// The bearer tokens received, in order.
    pub fn seen(&self) -> Vec<String> {
        self.state.seen.lock().unwrap().clone()
    }

    pub fn refuse_all(&self) {
        self.state.refuse_all.store(true, Ordering::SeqCst);
    }
}

async fn api(State(api): State<Arc<ApiState>>, headers: HeaderMap) -> Response {
    api.hits.fetch_add(1, Ordering::SeqCst);
    let Some(token) = headers
        .get(header::AUTHORIZATION)
        .and_then(|value| value.to_str().ok())
        .and_then(|value| value.strip_prefix("Bearer "))
        .map(str::to_owned)
    else {
        return StatusCode::UNAUTHORIZED.into_response();
    };
    api.seen.lock().unwrap().push(token.clone());
    let mut first = api.first_token.lock().unwrap();
    let refused = match first.as_deref() {
        None => {
            *first = Some(token);
            true
        }
        Some(revoked) => revoked == token,
    };
    if refused || api.refuse_all.load(Ordering::SeqCst) {
        return (
            StatusCode::UNAUTHORIZED,
            [(header::WWW_AUTHENTICATE, r#"Bearer error="invalid_token""#)],
        )
            .into_response();
    }
    (StatusCode::OK, "ok").into_response()
}

/// A fake token source: numbered tokens (`fake1`, `fake2`, …) of a given
/// type; it records the options it was asked with and the tokens it was
/// told were refused.
pub struct FakeSource {
    token_type: &'static str,
    issued: AtomicU32,
    pub asked: Mutex<Vec<TokenOptions>>,
    pub refused: Mutex<Vec<String>>,
}

impl FakeSource {
    pub fn new(token_type: &'static str) -> Arc<Self> {
        Arc::new(Self {
            token_type,
            issued: AtomicU32::new(0),
            asked: Mutex::default(),
            refused: Mutex::default(),
        })
    }
}

impl TokenSource for FakeSource {
    fn token_with(&self, options: TokenOptions) -> BoxFuture<'_, Result<AccessToken, Error>> {
        self.asked.lock().unwrap().push(options);
        let n = self.issued.fetch_add(1, Ordering::SeqCst) + 1;
        let answer = format!(
            r#"{{"access_token":"fake{n}","token_type":"{}","expires_in":60}}"#,
            self.token_type
        );
        let token = AccessToken::from_response(answer.as_bytes(), UNIX_EPOCH);
        Box::pin(std::future::ready(token))
    }

    fn invalidate_token(&self, token: &AccessToken) {
        self.refused.lock().unwrap().push(token.secret().to_owned());
    }
}
