//! A token endpoint that reads requests the *other* way: where a parameter
//! or the `Authorization` header is repeated, the last copy wins, and an
//! empty copy counts. Many real servers read requests like this, so a proxy
//! that keyed the first copy and forwarded both would be caught here.
//!
//! It records what it received and how it read it, and issues opaque tokens
//! whose "claims" (client, requested scopes, other parameters) a test can
//! decode with [`claims`], to check a token answers exactly the request
//! that was keyed.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex, PoisonError};

use axum::Router;
use axum::body::Bytes;
use axum::extract::{Request, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use base64::Engine as _;
use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use serde::{Deserialize, Serialize};
use tokio::sync::oneshot;

use crate::bind_loopback;

/// The clients this endpoint knows: `(id, secret, allowed scopes)`.
pub const LAST_VALUE_CLIENTS: [(&str, &str, &[&str]); 2] = [
    ("svc-a", "secret-a", &["api/read", "api/write"]),
    ("svc-b", "secret-b", &["api/read", "api/write", "admin"]),
];

/// How the endpoint read one request, last copies winning.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReadAs {
    /// `grant_type`.
    pub grant_type: Option<String>,
    /// The client id: from the last `Authorization: Basic`, else the last
    /// `client_id` parameter.
    pub client_id: Option<String>,
    /// The secret, read the same way.
    pub client_secret: Option<String>,
    /// The scope set requested (sorted, unique); empty when none.
    pub scopes: Vec<String>,
    /// Every other parameter, non-empty values only (RFC 6749 §3.1).
    pub extra: BTreeMap<String, String>,
}

/// One request as received.
#[derive(Debug, Clone)]
pub struct Received {
    /// The query string.
    pub query: Option<String>,
    /// The headers, in order, repeats kept.
    pub headers: HeaderMap,
    /// The body.
    pub body: Bytes,
    /// How the endpoint read it.
    pub read_as: ReadAs,
}

/// What the tokens this endpoint issues say about their request.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Claims {
    /// The client the token was issued to.
    pub client_id: String,
    /// The scopes requested (sorted, unique); empty when none.
    pub requested_scopes: Vec<String>,
    /// The scopes granted: the requested ones, or all the client's when
    /// none were requested (as Cognito does).
    pub granted_scopes: Vec<String>,
    /// Every other non-empty parameter.
    pub extra: BTreeMap<String, String>,
    /// A serial number: two tokens with the same one are the same token.
    pub jti: u64,
}

/// The claims of a token this endpoint issued; `None` for any other.
#[must_use]
pub fn claims(access_token: &str) -> Option<Claims> {
    let json = URL_SAFE_NO_PAD
        .decode(access_token.strip_prefix("lv.")?)
        .ok()?;
    serde_json::from_slice(&json).ok()
}

/// What a 200 answer looks like: the `expires_in` value and padding that
/// makes the answer larger.
#[derive(Debug, Clone)]
pub struct Issuing {
    /// The `expires_in` of each answer (any JSON: a huge number, a string).
    pub expires_in: serde_json::Value,
    /// Bytes of padding in a `padding` field of each answer.
    pub padding: usize,
}

impl Default for Issuing {
    fn default() -> Self {
        Self {
            expires_in: serde_json::Value::from(3600),
            padding: 0,
        }
    }
}

#[derive(Debug, Default)]
struct Inner {
    received: Vec<Received>,
    issuing: Issuing,
    issued: u64,
}

/// The last-value token endpoint, on loopback until dropped.
#[derive(Debug)]
pub struct LastValueIdp {
    /// Where it listens.
    pub addr: SocketAddr,
    inner: Arc<Mutex<Inner>>,
    _stop: oneshot::Sender<()>,
}

impl LastValueIdp {
    /// Starts one that issues as `issuing` says.
    pub async fn start(issuing: Issuing) -> Self {
        let inner = Arc::new(Mutex::new(Inner {
            issuing,
            ..Inner::default()
        }));
        let (listener, addr) = bind_loopback().await;
        let (stop, stopped) = oneshot::channel::<()>();
        let app = Router::new()
            .fallback(answer)
            .with_state(Arc::clone(&inner));
        tokio::spawn(async move {
            let _ = axum::serve(listener, app)
                .with_graceful_shutdown(async move {
                    let _ = stopped.await;
                })
                .await;
        });
        Self {
            addr,
            inner,
            _stop: stop,
        }
    }

    /// Its token endpoint.
    #[must_use]
    pub fn token_url(&self) -> String {
        format!("http://{}/oauth2/token", self.addr)
    }

    /// Every request received so far.
    #[must_use]
    pub fn received(&self) -> Vec<Received> {
        self.lock().received.clone()
    }

    /// How many requests it received.
    #[must_use]
    pub fn count(&self) -> usize {
        self.lock().received.len()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

async fn answer(State(inner): State<Arc<Mutex<Inner>>>, request: Request) -> Response {
    let (parts, body) = request.into_parts();
    let Ok(body) = axum::body::to_bytes(body, 1 << 20).await else {
        return oauth_error(StatusCode::BAD_REQUEST, "invalid_request");
    };
    let read_as = read_last_values(&parts.headers, parts.uri.query(), &body);
    let mut inner = inner.lock().unwrap_or_else(PoisonError::into_inner);
    inner.received.push(Received {
        query: parts.uri.query().map(str::to_owned),
        headers: parts.headers,
        body,
        read_as: read_as.clone(),
    });
    if read_as.grant_type.as_deref() != Some("client_credentials") {
        return oauth_error(StatusCode::BAD_REQUEST, "unsupported_grant_type");
    }
    let client = LAST_VALUE_CLIENTS.iter().find(|(id, secret, _)| {
        read_as.client_id.as_deref() == Some(id) && read_as.client_secret.as_deref() == Some(secret)
    });
    let Some((id, _, allowed)) = client else {
        return oauth_error(StatusCode::BAD_REQUEST, "invalid_client");
    };
    if !read_as
        .scopes
        .iter()
        .all(|scope| allowed.contains(&scope.as_str()))
    {
        return oauth_error(StatusCode::BAD_REQUEST, "invalid_scope");
    }
    let granted = if read_as.scopes.is_empty() {
        allowed.iter().map(|s| (*s).to_owned()).collect()
    } else {
        read_as.scopes.clone()
    };
    inner.issued += 1;
    let claims = Claims {
        client_id: (*id).to_owned(),
        requested_scopes: read_as.scopes,
        granted_scopes: granted,
        extra: read_as.extra,
        jti: inner.issued,
    };
    let token = format!(
        "lv.{}",
        URL_SAFE_NO_PAD.encode(serde_json::to_vec(&claims).unwrap_or_default())
    );
    let body = serde_json::json!({
        "access_token": token,
        "token_type": "Bearer",
        "expires_in": inner.issuing.expires_in,
        "padding": "p".repeat(inner.issuing.padding),
    });
    (
        StatusCode::OK,
        [(header::CONTENT_TYPE, "application/json")],
        body.to_string(),
    )
        .into_response()
}

fn oauth_error(status: StatusCode, error: &str) -> Response {
    (
        status,
        [(header::CONTENT_TYPE, "application/json")],
        format!(r#"{{"error":"{error}"}}"#),
    )
        .into_response()
}

/// Reads a request the lenient way: query then body, last copy wins, an
/// empty copy counts (and then means "not given").
fn read_last_values(headers: &HeaderMap, query: Option<&str>, body: &[u8]) -> ReadAs {
    let mut params: BTreeMap<String, String> = BTreeMap::new();
    let pairs =
        form_urlencoded::parse(query.unwrap_or("").as_bytes()).chain(form_urlencoded::parse(body));
    for (name, value) in pairs {
        params.insert(name.into_owned(), value.into_owned());
    }
    let mut take = |name: &str| params.remove(name).filter(|value| !value.is_empty());
    let grant_type = take("grant_type");
    let body_id = take("client_id");
    let body_secret = take("client_secret");
    let scope = take("scope");
    let (client_id, client_secret) = match headers
        .get_all(header::AUTHORIZATION)
        .iter()
        .next_back()
        .and_then(|value| value.to_str().ok())
        .and_then(read_basic)
    {
        Some((id, secret)) => (Some(id), Some(secret)),
        None => (body_id, body_secret),
    };
    let mut scopes: Vec<String> = scope
        .unwrap_or_default()
        .split(' ')
        .filter(|s| !s.is_empty())
        .map(str::to_owned)
        .collect();
    scopes.sort_unstable();
    scopes.dedup();
    params.retain(|_, value| !value.is_empty());
    ReadAs {
        grant_type,
        client_id,
        client_secret,
        scopes,
        extra: params,
    }
}

fn read_basic(value: &str) -> Option<(String, String)> {
    let (scheme, encoded) = value.trim().split_once(' ')?;
    if !scheme.eq_ignore_ascii_case("basic") {
        return None;
    }
    let decoded = String::from_utf8(STANDARD.decode(encoded.trim()).ok()?).ok()?;
    let (id, secret) = decoded.split_once(':')?;
    let decode = |part: &str| {
        percent_encoding::percent_decode_str(&part.replace('+', " "))
            .decode_utf8()
            .ok()
            .map(|value| value.into_owned())
    };
    Some((decode(id)?, decode(secret)?))
}
