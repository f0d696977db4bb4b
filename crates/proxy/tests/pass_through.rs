//! End-to-end: what crosses the proxy to a token endpoint and back.
//!
//! A scripted upstream (a real axum server on loopback) records every request
//! it receives and answers as each test tells it; the mock IdP stands in for
//! the authorization-code grant.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::Router;
use axum::body::Body;
use axum::extract::{Request, State};
use axum::response::Response;
use bytes::Bytes;
use http::{HeaderMap, HeaderName, HeaderValue, StatusCode};
use serde_json::Value;
use tokencache_mock_idp::MockIdpConfig;
use tokencache_proxy::{ProxyConfig, RouteConfig};
use tokencache_test_support::{ManualClock, MockIdpServer, ProxyServer};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::Barrier;

const CC: &str = "grant_type=client_credentials";
const FORM: &str = "application/x-www-form-urlencoded";
const JSON: &str = "application/json;charset=UTF-8";

/// The upstream's path, unlike the proxy's, so a test sees the route was
/// followed.
const UPSTREAM_PATH: &str = "/idp/oauth2/token";

/// One request as the upstream received it.
#[derive(Debug, Clone)]
struct Received {
    path: String,
    query: Option<String>,
    headers: HeaderMap,
    body: Bytes,
}

/// What the upstream answers.
#[derive(Debug, Clone)]
enum Reply {
    /// This status, these headers, this body (with a Content-Length).
    Answer {
        status: StatusCode,
        headers: Vec<(&'static str, &'static str)>,
        body: Bytes,
    },
    /// A 200 of `len` bytes in 1 KiB chunks, without a Content-Length.
    Streamed { len: usize },
    /// Never answers.
    Hang,
    /// Waits until the barrier's other parties arrive, then answers.
    AfterBarrier(Arc<Barrier>, Box<Reply>),
}

impl Reply {
    fn new(status: u16, headers: &[(&'static str, &'static str)], body: &[u8]) -> Self {
        Self::Answer {
            status: StatusCode::from_u16(status).unwrap(),
            headers: headers.to_vec(),
            body: Bytes::copy_from_slice(body),
        }
    }

    fn json(status: u16, body: &str) -> Self {
        Self::new(status, &[("content-type", JSON)], body.as_bytes())
    }

    fn token() -> Self {
        Self::json(
            200,
            r#"{"access_token":"t1","expires_in":300,"token_type":"Bearer","scope":"a"}"#,
        )
    }
}

/// A token endpoint that records every request and answers as scripted.
#[derive(Debug, Clone)]
struct Upstream {
    addr: SocketAddr,
    received: Arc<Mutex<Vec<Received>>>,
    reply: Arc<Mutex<Reply>>,
}

impl Upstream {
    async fn start(reply: Reply) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        Self::start_on(listener, reply)
    }

    fn start_on(listener: TcpListener, reply: Reply) -> Self {
        let upstream = Self {
            addr: listener.local_addr().unwrap(),
            received: Arc::default(),
            reply: Arc::new(Mutex::new(reply)),
        };
        let app = Router::new().fallback(answer).with_state(upstream.clone());
        tokio::spawn(async move { axum::serve(listener, app).await });
        upstream
    }

    fn url(&self) -> String {
        format!("http://{}{UPSTREAM_PATH}", self.addr)
    }

    fn set_reply(&self, reply: Reply) {
        *self.reply.lock().unwrap() = reply;
    }

    fn received(&self) -> Vec<Received> {
        self.received.lock().unwrap().clone()
    }

    fn count(&self) -> usize {
        self.received.lock().unwrap().len()
    }
}

async fn answer(State(upstream): State<Upstream>, request: Request) -> Response {
    let (parts, body) = request.into_parts();
    let body = axum::body::to_bytes(body, usize::MAX).await.unwrap();
    upstream.received.lock().unwrap().push(Received {
        path: parts.uri.path().to_owned(),
        query: parts.uri.query().map(str::to_owned),
        headers: parts.headers,
        body,
    });
    let reply = upstream.reply.lock().unwrap().clone();
    render(reply).await
}

async fn render(reply: Reply) -> Response {
    match reply {
        Reply::Answer {
            status,
            headers,
            body,
        } => {
            let mut response = Response::new(Body::from(body));
            *response.status_mut() = status;
            for (name, value) in headers {
                response.headers_mut().append(
                    HeaderName::from_static(name),
                    HeaderValue::from_static(value),
                );
            }
            response
        }
        Reply::Streamed { len } => {
            let chunks = (0..len.div_ceil(1024))
                .map(move |i| Ok::<_, std::io::Error>(vec![b'x'; 1024.min(len - i * 1024)]));
            let mut response = Response::new(Body::from_stream(futures::stream::iter(chunks)));
            response
                .headers_mut()
                .insert("content-type", HeaderValue::from_static(JSON));
            response
        }
        Reply::Hang => std::future::pending().await,
        Reply::AfterBarrier(barrier, then) => {
            barrier.wait().await;
            Box::pin(render(*then)).await
        }
    }
}

/// A route with retries, the circuit breaker and the negative cache off,
/// so each request makes exactly one upstream exchange (those features are
/// tested in resilience.rs).
fn route_to(url: &str) -> ProxyConfig {
    let mut config = ProxyConfig::new(vec![RouteConfig::new(
        "/oauth2/token",
        url.parse().unwrap(),
    )]);
    config.resilience.backoff =
        tokencache_proxy::Backoff::new(Duration::from_millis(10), Duration::from_millis(10), 1);
    config.resilience.breaker.failure_threshold = 0;
    config.negative_ttl = Duration::ZERO;
    config
}

async fn proxy_for(upstream: &Upstream) -> ProxyServer {
    ProxyServer::start(route_to(&upstream.url()), ManualClock::starting_now()).await
}

fn cache_status(response: &reqwest::Response) -> String {
    response
        .headers()
        .get("cache-status")
        .map(|v| v.to_str().unwrap().to_owned())
        .unwrap_or_default()
}

/// Checks a proxy-made `temporarily_unavailable` answer.
async fn assert_unavailable(response: reqwest::Response, status: u16) {
    assert_eq!(response.status().as_u16(), status);
    assert_eq!(response.headers()["cache-control"], "no-store");
    let content_type = response.headers()["content-type"].to_str().unwrap();
    assert!(
        content_type.starts_with("application/json"),
        "{content_type}"
    );
    let body: Value = response.json().await.unwrap();
    assert_eq!(body["error"], "temporarily_unavailable", "{body}");
}

// ---- What travels upstream ----------------------------------------------

/// Reads one HTTP/1.1 answer with a Content-Length from a kept-alive
/// connection: (status, headers text, body).
async fn read_raw_answer(stream: &mut TcpStream) -> (u16, String, Vec<u8>) {
    let mut received = Vec::new();
    let mut chunk = [0_u8; 4096];
    let read = async {
        loop {
            if let Some(end) = received.windows(4).position(|w| w == b"\r\n\r\n") {
                let head = String::from_utf8_lossy(&received[..end]).into_owned();
                let length: usize = head
                    .lines()
                    .find_map(|line| {
                        let (name, value) = line.split_once(':')?;
                        name.eq_ignore_ascii_case("content-length")
                            .then(|| value.trim().parse().unwrap())
                    })
                    .unwrap_or_else(|| panic!("no Content-Length: {head}"));
                if received.len() >= end + 4 + length {
                    let status = head[9..12].parse().unwrap();
                    return (status, head, received[end + 4..end + 4 + length].to_vec());
                }
            }
            let n = stream.read(&mut chunk).await.unwrap();
            assert!(n > 0, "connection closed mid-answer");
            received.extend_from_slice(&chunk[..n]);
        }
    };
    tokio::time::timeout(Duration::from_secs(10), read)
        .await
        .expect("no answer from the proxy")
}

/// A raw HTTP/1.1 request to the proxy with `body` and these extra header
/// lines; the answer's status.
async fn send_raw(proxy: &ProxyServer, extra_headers: &str, body: &str) -> u16 {
    let request = format!(
        "POST /oauth2/token HTTP/1.1\r\n\
         Host: {addr}\r\n\
         Authorization: Basic YXBwOmFwcC1zZWNyZXQ=\r\n\
         User-Agent: e2e-agent/1.0\r\n\
         X-Request-Id: req-42\r\n\
         Content-Type: {FORM}\r\n\
         Content-Length: {length}\r\n\
         {extra_headers}\
         \r\n\
         {body}",
        addr = proxy.addr,
        length = body.len(),
    );
    let mut stream = TcpStream::connect(proxy.addr).await.unwrap();
    stream.write_all(request.as_bytes()).await.unwrap();
    let (status, head, _) = read_raw_answer(&mut stream).await;
    assert!(status != 0, "{head}");
    status
}

const HOP_BY_HOP: &str = "Connection: keep-alive, x-hop\r\n\
                          X-Hop: secret-hop\r\n\
                          Keep-Alive: timeout=5\r\n\
                          TE: trailers\r\n\
                          Proxy-Authorization: Basic cHJveHk6cHc=\r\n\
                          Accept-Encoding: gzip, br\r\n";

#[tokio::test]
async fn a_pass_through_request_keeps_its_end_to_end_headers_only() {
    let upstream = Upstream::start(Reply::token()).await;
    let proxy = proxy_for(&upstream).await;
    let status = send_raw(&proxy, HOP_BY_HOP, "grant_type=authorization_code&code=c1").await;
    assert_eq!(status, 200);

    let received = upstream.received();
    assert_eq!(received.len(), 1);
    let headers = &received[0].headers;
    assert_eq!(headers["authorization"], "Basic YXBwOmFwcC1zZWNyZXQ=");
    assert_eq!(headers["user-agent"], "e2e-agent/1.0");
    assert_eq!(headers["x-request-id"], "req-42");
    assert_eq!(headers["content-type"], FORM);
    assert_eq!(received[0].body, "grant_type=authorization_code&code=c1");
    for name in [
        "x-hop",
        "keep-alive",
        "te",
        "proxy-authorization",
        "accept-encoding",
    ] {
        assert!(
            !headers.contains_key(name),
            "{name} reached the upstream: {headers:?}"
        );
    }
    // The caller's Connection header is about its own hop only.
    assert!(
        headers
            .get_all("connection")
            .iter()
            .all(|v| !v.to_str().unwrap().contains("x-hop")),
        "{headers:?}"
    );
}

#[tokio::test]
async fn a_cacheable_request_is_rebuilt_from_what_was_keyed() {
    let upstream = Upstream::start(Reply::token()).await;
    let proxy = proxy_for(&upstream).await;
    // Valid, but full of things a re-encoder changes, a scope in the query,
    // an empty parameter, and headers of the caller's own.
    let body = "grant_type=client_credentials&resource=https%3A%2F%2Fapi.example%2Fv1\
                &aws_client_metadata=%7B%22k%22%3A%22v+w%22%7D&x=a+b%20c&&tilde=~*._-&empty=";
    let response = proxy
        .http
        .post(format!(
            "{}?scope=api%2Fwrite+api%2Fread",
            proxy.token_url()
        ))
        .basic_auth("app", Some("app-secret"))
        .header("content-type", FORM)
        .header("x-request-id", "req-42")
        .header("user-agent", "e2e-agent/1.0")
        .body(body)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    let received = upstream.received();
    assert_eq!(received.len(), 1);
    assert_eq!(received[0].path, UPSTREAM_PATH);
    // Everything in the body, serialised from the parsed parameters: scope
    // set sorted, empty parameter omitted, extras sorted by name.
    assert_eq!(received[0].query, None);
    assert_eq!(
        received[0].body,
        "grant_type=client_credentials&scope=api%2Fread+api%2Fwrite\
         &aws_client_metadata=%7B%22k%22%3A%22v+w%22%7D\
         &resource=https%3A%2F%2Fapi.example%2Fv1&tilde=%7E*._-&x=a+b+c"
    );
    // Only the proxy's own headers and the credentials it rebuilt.
    let headers = &received[0].headers;
    assert_eq!(headers["authorization"], "Basic YXBwOmFwcC1zZWNyZXQ=");
    assert_eq!(headers["content-type"], FORM);
    assert_eq!(headers["accept"], "application/json");
    assert!(
        headers["user-agent"]
            .to_str()
            .unwrap()
            .starts_with("tokencache/"),
        "{headers:?}"
    );
    assert!(!headers.contains_key("x-request-id"), "{headers:?}");
    // A hop-by-hop-laden raw request is rebuilt the same way.
    let status = send_raw(&proxy, HOP_BY_HOP, "grant_type=client_credentials&scope=z").await;
    assert_eq!(status, 200);
    let received = upstream.received();
    let headers = &received[1].headers;
    let mut names: Vec<_> = headers.keys().map(HeaderName::as_str).collect();
    names.sort_unstable();
    names.retain(|name| !matches!(*name, "host" | "content-length"));
    assert_eq!(
        names,
        ["accept", "authorization", "content-type", "user-agent"]
    );
}

// ---- Answers passed through, never cached --------------------------------

/// Sends the same cacheable request twice; both times the upstream is asked
/// and its answer comes back as it was, marked as not stored.
async fn assert_passed_through_uncached(
    reply: Reply,
    content_type: &str,
    kept_headers: &[(&str, &str)],
) {
    let Reply::Answer { status, body, .. } = reply.clone() else {
        unreachable!("a plain answer")
    };
    let upstream = Upstream::start(reply).await;
    let proxy = proxy_for(&upstream).await;
    for attempt in 1..=2 {
        let response = proxy.token_request("app", "app-secret", CC).await;
        assert_eq!(response.status(), status);
        assert_eq!(response.headers()["content-type"], content_type);
        for (name, value) in kept_headers {
            assert_eq!(response.headers()[*name], *value, "{name}");
        }
        let cache_status = cache_status(&response);
        assert_eq!(
            cache_status, "tokencache; fwd=miss; detail=uncacheable",
            "attempt {attempt}"
        );
        assert_eq!(response.bytes().await.unwrap(), body);
        assert_eq!(
            upstream.count(),
            attempt,
            "attempt {attempt} was not sent upstream"
        );
        assert_eq!(proxy.proxy.cached_entries(), 0);
    }
}

#[tokio::test]
async fn unauthorized_with_www_authenticate_is_passed_through() {
    let reply = Reply::new(
        401,
        &[
            ("content-type", JSON),
            ("www-authenticate", r#"Basic realm="x""#),
        ],
        br#"{"error":"invalid_client","error_description":"who are you"}"#,
    );
    assert_passed_through_uncached(reply, JSON, &[("www-authenticate", r#"Basic realm="x""#)])
        .await;
}

/// A throttle whose `Retry-After` outlasts the caller's deadline: passed
/// through as it came, never cached, and it pauses the route, so the next
/// caller gets a 503 at once instead of throttling the upstream again.
#[tokio::test]
async fn throttle_with_retry_after_is_passed_through_and_pauses_the_route() {
    let body = br#"{"error":"too_many_requests"}"#;
    let reply = Reply::new(429, &[("content-type", JSON), ("retry-after", "30")], body);
    let upstream = Upstream::start(reply).await;
    let proxy = proxy_for(&upstream).await;
    let response = proxy.token_request("app", "app-secret", CC).await;
    assert_eq!(response.status(), 429);
    assert_eq!(response.headers()["retry-after"], "30");
    assert_eq!(
        cache_status(&response),
        "tokencache; fwd=miss; detail=uncacheable"
    );
    assert_eq!(response.bytes().await.unwrap(), &body[..]);
    assert_eq!(upstream.count(), 1);

    let response = proxy.token_request("app", "app-secret", CC).await;
    let retry_after: u64 = response.headers()["retry-after"]
        .to_str()
        .unwrap()
        .parse()
        .unwrap();
    assert!((1..=30).contains(&retry_after), "{retry_after}");
    assert_unavailable(response, 503).await;
    assert_eq!(upstream.count(), 1, "the paused route sent nothing");
    assert_eq!(proxy.proxy.cached_entries(), 0);
}

/// Sends the same cacheable request twice; both times the upstream is asked,
/// and its failed answer, which is not an OAuth error, is replaced by one
/// with `status`, keeping `Retry-After`.
async fn assert_replaced_by_an_oauth_error(reply: Reply, status: u16) {
    let upstream = Upstream::start(reply).await;
    let proxy = proxy_for(&upstream).await;
    for attempt in 1..=2 {
        let response = proxy.token_request("app", "app-secret", CC).await;
        assert_eq!(
            cache_status(&response),
            "tokencache; fwd=miss; detail=uncacheable"
        );
        assert_unavailable(response, status).await;
        assert_eq!(
            upstream.count(),
            attempt,
            "attempt {attempt} was not sent upstream"
        );
        assert_eq!(proxy.proxy.cached_entries(), 0);
    }
}

#[tokio::test]
async fn service_unavailable_text_becomes_an_oauth_error_with_its_status() {
    let reply = Reply::new(
        503,
        &[("content-type", "text/plain; charset=utf-8")],
        b"down for maintenance\n",
    );
    assert_replaced_by_an_oauth_error(reply, 503).await;
}

#[tokio::test]
async fn ok_html_becomes_a_bad_gateway_oauth_error() {
    let reply = Reply::new(
        200,
        &[("content-type", "text/html")],
        b"<html><body>login here</body></html>",
    );
    assert_replaced_by_an_oauth_error(reply, 502).await;
}

#[tokio::test]
async fn ok_json_without_expires_in_is_passed_through() {
    let reply = Reply::json(200, r#"{"access_token":"t1","token_type":"Bearer"}"#);
    assert_passed_through_uncached(reply, JSON, &[]).await;
}

#[tokio::test]
async fn ok_json_with_zero_expires_in_is_passed_through() {
    let reply = Reply::json(
        200,
        r#"{"access_token":"t1","expires_in":0,"token_type":"Bearer"}"#,
    );
    assert_passed_through_uncached(reply, JSON, &[]).await;
}

#[tokio::test]
async fn ok_garbage_token_answer_becomes_a_bad_gateway_oauth_error() {
    let reply = Reply::new(
        200,
        &[("content-type", JSON), ("x-upstream", "1")],
        b"\x00\xff{\"access_token\":\"t1\",\"expires_in\":300\x7f not json",
    );
    assert_replaced_by_an_oauth_error(reply, 502).await;
}

// ---- Other grants bypass the cache ---------------------------------------

const CODE_GRANT: &str =
    "grant_type=authorization_code&code=abc&redirect_uri=http%3A%2F%2Flocalhost%2Fcb";

#[tokio::test]
async fn other_grants_bypass_the_cache_one_by_one() {
    let upstream = Upstream::start(Reply::token()).await;
    let proxy = proxy_for(&upstream).await;
    for attempt in 1..=3 {
        let response = proxy.token_request("app", "app-secret", CODE_GRANT).await;
        assert_eq!(response.status(), 200);
        assert_eq!(cache_status(&response), "tokencache; fwd=bypass");
        assert_eq!(response.headers()["content-type"], JSON);
        let body: Value = response.json().await.unwrap();
        // As the upstream sent it: expires_in untouched.
        assert_eq!(body["expires_in"], 300);
        assert_eq!(upstream.count(), attempt);
    }
    assert_eq!(proxy.proxy.cached_entries(), 0);
    for received in upstream.received() {
        assert_eq!(received.body, CODE_GRANT.as_bytes());
    }
}

#[tokio::test]
async fn concurrent_other_grants_are_not_coalesced() {
    const CALLERS: usize = 3;
    // The upstream answers only once every caller's request has arrived, so
    // if the proxy collapsed them into fewer upstream requests this would
    // never finish.
    let barrier = Arc::new(Barrier::new(CALLERS));
    let upstream = Upstream::start(Reply::AfterBarrier(barrier, Box::new(Reply::token()))).await;
    let proxy = proxy_for(&upstream).await;
    let calls = (0..CALLERS).map(|_| proxy.token_request("app", "app-secret", CODE_GRANT));
    let responses = tokio::time::timeout(Duration::from_secs(30), futures::future::join_all(calls))
        .await
        .expect("the upstream saw fewer requests than were sent: coalesced");
    for response in responses {
        assert_eq!(response.status(), 200);
        assert_eq!(cache_status(&response), "tokencache; fwd=bypass");
    }
    assert_eq!(upstream.count(), CALLERS);
    assert_eq!(proxy.proxy.cached_entries(), 0);
}

// ---- A cacheable answer is cached -----------------------------------------

#[tokio::test]
async fn cacheable_answer_is_served_from_cache() {
    let upstream = Upstream::start(Reply::token()).await;
    let proxy = proxy_for(&upstream).await;
    let first = proxy.token_request("app", "app-secret", CC).await;
    assert_eq!(first.status(), 200);
    assert_eq!(cache_status(&first), "tokencache; fwd=miss; stored");
    let first: Value = first.json().await.unwrap();

    let second = proxy.token_request("app", "app-secret", CC).await;
    assert_eq!(second.status(), 200);
    let status = cache_status(&second);
    assert!(status.starts_with("tokencache; hit"), "{status}");
    let second: Value = second.json().await.unwrap();
    assert_eq!(upstream.count(), 1);
    assert_eq!(proxy.proxy.cached_entries(), 1);

    for body in [&first, &second] {
        assert_eq!(body["access_token"], "t1", "{body}");
        assert_eq!(body["token_type"], "Bearer", "{body}");
        assert_eq!(body["scope"], "a", "{body}");
        let expires_in = body["expires_in"].as_u64().unwrap();
        assert!((1..=300).contains(&expires_in), "{body}");
    }
    assert_eq!(
        first.as_object().unwrap().keys().collect::<Vec<_>>(),
        second.as_object().unwrap().keys().collect::<Vec<_>>()
    );
}

// ---- Upstream failures ----------------------------------------------------

#[tokio::test]
async fn unreachable_upstream_is_502_and_not_remembered() {
    // Bind, note the port, close it: nothing listens there.
    let port = {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        listener.local_addr().unwrap().port()
    };
    let url = format!("http://127.0.0.1:{port}{UPSTREAM_PATH}");
    let proxy = ProxyServer::start(route_to(&url), ManualClock::starting_now()).await;
    for _ in 0..2 {
        let response = proxy.token_request("app", "app-secret", CC).await;
        assert!(!cache_status(&response).contains("stored"));
        assert_unavailable(response, 502).await;
        assert_eq!(proxy.proxy.cached_entries(), 0);
    }
    let bypassed = proxy.token_request("app", "app-secret", CODE_GRANT).await;
    assert_unavailable(bypassed, 502).await;

    // The upstream comes up on that port: the next request reaches it.
    let listener = TcpListener::bind(("127.0.0.1", port)).await.unwrap();
    let upstream = Upstream::start_on(listener, Reply::token());
    let response = proxy.token_request("app", "app-secret", CC).await;
    assert_eq!(response.status(), 200);
    assert_eq!(cache_status(&response), "tokencache; fwd=miss; stored");
    assert_eq!(upstream.count(), 1);
}

#[tokio::test]
async fn hanging_upstream_is_504_and_not_remembered() {
    let upstream = Upstream::start(Reply::Hang).await;
    let mut config = route_to(&upstream.url());
    config.upstream.request_timeout = Duration::from_millis(500);
    let proxy = ProxyServer::start(config, ManualClock::starting_now()).await;

    let response = proxy.token_request("app", "app-secret", CC).await;
    assert!(!cache_status(&response).contains("stored"));
    assert_unavailable(response, 504).await;
    assert_eq!(upstream.count(), 1);
    assert_eq!(proxy.proxy.cached_entries(), 0);

    let bypassed = proxy.token_request("app", "app-secret", CODE_GRANT).await;
    assert_unavailable(bypassed, 504).await;
    assert_eq!(upstream.count(), 2);

    upstream.set_reply(Reply::token());
    let response = proxy.token_request("app", "app-secret", CC).await;
    assert_eq!(response.status(), 200);
    assert_eq!(cache_status(&response), "tokencache; fwd=miss; stored");
    assert_eq!(upstream.count(), 3);
}

async fn assert_oversized_answer_is_502(reply: Reply) {
    let upstream = Upstream::start(reply).await;
    let mut config = route_to(&upstream.url());
    config.upstream.max_response_bytes = 1024;
    let proxy = ProxyServer::start(config, ManualClock::starting_now()).await;
    for attempt in 1..=2 {
        let response = proxy.token_request("app", "app-secret", CC).await;
        assert_unavailable(response, 502).await;
        assert_eq!(upstream.count(), attempt);
        assert_eq!(proxy.proxy.cached_entries(), 0);
    }
    let bypassed = proxy.token_request("app", "app-secret", CODE_GRANT).await;
    assert_unavailable(bypassed, 502).await;
}

#[tokio::test]
async fn answer_over_the_size_limit_with_content_length_is_502() {
    let mut body = br#"{"access_token":""#.to_vec();
    body.resize(4096, b'x');
    body.extend_from_slice(br#"","expires_in":300}"#);
    assert_oversized_answer_is_502(Reply::Answer {
        status: StatusCode::OK,
        headers: vec![("content-type", JSON)],
        body: body.into(),
    })
    .await;
}

#[tokio::test]
async fn streamed_answer_over_the_size_limit_is_502() {
    assert_oversized_answer_is_502(Reply::Streamed { len: 4096 }).await;
}

// ---- The real mock IdP: authorization codes stay single-use -------------

#[tokio::test]
async fn authorization_code_passes_through_and_stays_single_use() {
    let idp = MockIdpServer::start(MockIdpConfig::default()).await;
    let proxy = ProxyServer::start_for(&idp, ManualClock::starting_now()).await;

    let browser = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap();
    let authorize = browser
        .get(format!(
            "http://{}/oauth2/authorize?response_type=code&client_id=demo-client\
             &redirect_uri=http://localhost/cb&state=s",
            idp.addr
        ))
        .send()
        .await
        .unwrap();
    assert_eq!(authorize.status(), 302);
    let location: reqwest::Url = authorize.headers()["location"]
        .to_str()
        .unwrap()
        .parse()
        .unwrap();
    let code = location
        .query_pairs()
        .find(|(name, _)| name == "code")
        .map(|(_, code)| code.into_owned())
        .unwrap_or_else(|| panic!("no code in {location}"));
    assert!(
        location
            .query_pairs()
            .any(|(name, value)| name == "state" && value == "s")
    );

    let exchange =
        format!("grant_type=authorization_code&code={code}&redirect_uri=http://localhost/cb");
    let first = proxy
        .token_request("demo-client", "demo-secret", &exchange)
        .await;
    assert_eq!(first.status(), 200);
    assert_eq!(cache_status(&first), "tokencache; fwd=bypass");
    let tokens: Value = first.json().await.unwrap();
    assert!(tokens["access_token"].is_string(), "{tokens}");
    assert!(tokens["refresh_token"].is_string(), "{tokens}");

    let again = proxy
        .token_request("demo-client", "demo-secret", &exchange)
        .await;
    assert_eq!(again.status(), 400);
    assert_eq!(cache_status(&again), "tokencache; fwd=bypass");
    let error: Value = again.json().await.unwrap();
    assert_eq!(error["error"], "invalid_grant", "{error}");

    assert_eq!(idp.idp.token_requests(), 2);
    assert_eq!(idp.idp.token_requests_for("demo-client"), 2);
    assert_eq!(proxy.proxy.cached_entries(), 0);
}
