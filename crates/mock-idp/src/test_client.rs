//! In-crate test support: requests through `oneshot`, and a manual clock.

use std::sync::atomic::{AtomicU64, Ordering};

use axum::body::Body;
use axum::http::{HeaderMap, Request, StatusCode};
use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use tokencache_core::{Clock, UnixMillis};
use tower::ServiceExt as _;

use crate::MockIdp;

/// A decoded answer.
#[derive(Debug)]
pub(crate) struct Answer {
    pub(crate) status: StatusCode,
    pub(crate) headers: HeaderMap,
    pub(crate) body: Vec<u8>,
}

impl Answer {
    pub(crate) fn json(&self) -> serde_json::Value {
        serde_json::from_slice(&self.body).unwrap_or_else(|err| {
            panic!(
                "not JSON ({err}): {:?}",
                String::from_utf8_lossy(&self.body)
            )
        })
    }

    pub(crate) fn error(&self) -> String {
        self.json()["error"].as_str().unwrap_or_default().to_owned()
    }

    pub(crate) fn access_token(&self) -> String {
        assert_eq!(self.status, StatusCode::OK, "{:?}", self.json());
        self.json()["access_token"]
            .as_str()
            .unwrap_or_default()
            .to_owned()
    }
}

/// Sends `request` through `idp`'s router.
pub(crate) async fn send(idp: &MockIdp, request: Request<Body>) -> Answer {
    let response = idp
        .router()
        .oneshot(request)
        .await
        .unwrap_or_else(|e| match e {});
    let status = response.status();
    let headers = response.headers().clone();
    let body = axum::body::to_bytes(response.into_body(), usize::MAX)
        .await
        .unwrap_or_else(|err| panic!("body: {err}"))
        .to_vec();
    Answer {
        status,
        headers,
        body,
    }
}

/// `Basic base64(urlenc(id):urlenc(secret))`.
pub(crate) fn basic(id: &str, secret: &str) -> String {
    let encode = |s: &str| {
        serde_urlencoded::to_string([("", s)])
            .unwrap_or_default()
            .trim_start_matches('=')
            .to_owned()
    };
    format!(
        "Basic {}",
        STANDARD.encode(format!("{}:{}", encode(id), encode(secret)))
    )
}

/// A `POST /oauth2/token` with a form body, Basic credentials if given,
/// and `query` appended to the path if given.
pub(crate) fn token_request(
    credentials: Option<(&str, &str)>,
    query: Option<&str>,
    body: &str,
) -> Request<Body> {
    let uri = match query {
        Some(query) => format!("/oauth2/token?{query}"),
        None => "/oauth2/token".to_owned(),
    };
    let mut builder =
        Request::post(uri).header("content-type", "application/x-www-form-urlencoded");
    if let Some((id, secret)) = credentials {
        builder = builder.header("authorization", basic(id, secret));
    }
    builder
        .body(Body::from(body.to_owned()))
        .unwrap_or_else(|err| panic!("request: {err}"))
}

/// `POST /oauth2/token` as `demo-client` (Basic) with `body`.
pub(crate) async fn demo_token(idp: &MockIdp, body: &str) -> Answer {
    send(
        idp,
        token_request(Some(("demo-client", "demo-secret")), None, body),
    )
    .await
}

/// A clock that moves only when told to.
#[derive(Debug)]
pub(crate) struct ManualClock(AtomicU64);

impl ManualClock {
    pub(crate) fn new(at: UnixMillis) -> Self {
        Self(AtomicU64::new(at.0))
    }

    pub(crate) fn advance_millis(&self, millis: u64) {
        self.0.fetch_add(millis, Ordering::SeqCst);
    }
}

impl Clock for ManualClock {
    fn now(&self) -> UnixMillis {
        UnixMillis(self.0.load(Ordering::SeqCst))
    }
}
