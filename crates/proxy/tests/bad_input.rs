//! End-to-end: malformed and hostile requests to the proxy.
//!
//! Each is refused by the proxy itself with an RFC 6749 error that never
//! echoes the client secret; none reaches the mock IdP, none is cached, and
//! the proxy keeps serving good requests afterwards.
//!
//! Requests an HTTP client can send are rows of [`refusals`]; requests only
//! a hand-written byte stream can make (bodies over the limit, garbage,
//! bodies cut short) have tests of their own below it.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use reqwest::Method;
use serde_json::Value;
use tokencache_mock_idp::{MockIdp, MockIdpConfig};
use tokencache_proxy::ProxyConfig;
use tokencache_test_support::answers::metric;
use tokencache_test_support::{ManualClock, MockIdpServer, ProxyServer};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

const CC: &str = "grant_type=client_credentials";
const FORM: &str = "application/x-www-form-urlencoded";
const TOKEN_PATH: &str = "/oauth2/token";

/// A client secret distinctive enough that finding it in an answer can only
/// mean the proxy echoed it.
const SECRET: &str = "sekrit-7f3c-do-not-echo";

/// The start of [`SECRET`] in base64, as an `Authorization: Basic` value
/// without a colon carries it: an answer quoting the header would show it.
const SECRET_IN_BASE64: &str = "c2Vrcml0";

/// The proxy's limit on request bodies (its default).
const MAX_BODY: usize = 16 << 10;

// ---- The table ------------------------------------------------------------

/// What a request says about who is asking.
#[derive(Debug, Clone, Copy)]
enum Credentials {
    /// `Authorization: Basic` for `demo-client` with this secret.
    Basic(&'static str),
    /// This `Authorization` value, as is.
    Header(&'static str),
    /// No `Authorization` header.
    Absent,
}

/// The pieces of one request to the proxy's token listener.
#[derive(Debug, Clone)]
struct Request {
    method: Method,
    /// Path and query.
    target: &'static str,
    credentials: Credentials,
    content_type: Option<&'static str>,
    body: Vec<u8>,
}

impl Request {
    /// A form `POST` to the token path as `demo-client` with [`SECRET`].
    fn form(body: impl Into<Vec<u8>>) -> Self {
        Self {
            method: Method::POST,
            target: TOKEN_PATH,
            credentials: Credentials::Basic(SECRET),
            content_type: Some(FORM),
            body: body.into(),
        }
    }

    async fn send(self, proxy: &ProxyServer) -> reqwest::Response {
        let mut request = proxy
            .http
            .request(self.method, format!("http://{}{}", proxy.addr, self.target))
            .body(self.body);
        request = match self.credentials {
            Credentials::Basic(secret) => request.basic_auth("demo-client", Some(secret)),
            Credentials::Header(value) => request.header("authorization", value),
            Credentials::Absent => request,
        };
        if let Some(content_type) = self.content_type {
            request = request.header("content-type", content_type);
        }
        request.send().await.unwrap()
    }
}

/// A request the proxy must refuse, and how.
struct Refusal {
    /// What is wrong with the request (for failure messages).
    name: &'static str,
    request: Request,
    status: u16,
    error: &'static str,
    /// A word the `error_description` must contain, naming what is wrong.
    mentions: Option<&'static str>,
}

/// Every malformed request an HTTP client can send, one row each.
fn refusals() -> Vec<Refusal> {
    let refused = |name, request, mentions| Refusal {
        name,
        request,
        status: 400,
        error: "invalid_request",
        mentions,
    };
    // A good body under an `Authorization` value of our choosing, so the
    // header is the only thing wrong.
    let with_authorization = |value| Request {
        credentials: Credentials::Header(value),
        ..Request::form(format!("{CC}&scope=api%2Fread"))
    };
    vec![
        Refusal {
            status: 405,
            ..refused(
                "GET on the token path (405, allowing POST)",
                Request {
                    method: Method::GET,
                    credentials: Credentials::Absent,
                    content_type: None,
                    ..Request::form("")
                },
                None,
            )
        },
        Refusal {
            status: 404,
            ..refused(
                "an unknown path",
                Request {
                    target: "/nope",
                    ..Request::form(CC)
                },
                None,
            )
        },
        refused(
            "a JSON content type",
            Request {
                content_type: Some("application/json"),
                ..Request::form(format!(
                    r#"{{"grant_type":"client_credentials","client_secret":"{SECRET}"}}"#
                ))
            },
            Some("content type"),
        ),
        refused(
            "no content type",
            Request {
                content_type: None,
                ..Request::form(CC)
            },
            None,
        ),
        refused(
            "a malformed percent escape",
            Request::form(format!("{CC}&scope=%zz")),
            None,
        ),
        refused(
            "percent-encoded invalid UTF-8",
            Request::form(format!("{CC}&scope=%FF")),
            None,
        ),
        refused(
            "raw invalid UTF-8",
            Request::form([format!("{CC}&scope=api").as_bytes(), b"\xff\xfe"].concat()),
            None,
        ),
        refused(
            "scope twice in the body",
            Request::form(format!("{CC}&scope=api%2Fread&scope=api%2Fwrite")),
            Some("scope"),
        ),
        refused(
            "scope in the body and the query",
            Request {
                target: "/oauth2/token?scope=api%2Fread",
                ..Request::form(format!("{CC}&scope=api%2Fwrite"))
            },
            Some("scope"),
        ),
        refused(
            "client_secret twice in the body",
            Request {
                credentials: Credentials::Absent,
                ..Request::form(format!(
                    "{CC}&client_id=demo-client&client_secret={SECRET}&client_secret={SECRET}"
                ))
            },
            Some("client_secret"),
        ),
        refused(
            "a Basic header that is not base64",
            with_authorization("Basic !!!notbase64"),
            None,
        ),
        refused(
            "a Basic header without a colon",
            // base64 of SECRET alone: no `:` between an id and a secret.
            with_authorization("Basic c2Vrcml0LTdmM2MtZG8tbm90LWVjaG8="),
            None,
        ),
        refused(
            "a Basic header without credentials",
            with_authorization("Basic"),
            None,
        ),
        refused(
            "credentials in the header and the body",
            Request::form(format!("{CC}&client_id=demo-client&client_secret={SECRET}")),
            None,
        ),
        refused(
            "no grant_type",
            Request::form("scope=api%2Fread"),
            Some("grant_type"),
        ),
    ]
}

#[tokio::test]
async fn malformed_requests_are_refused_by_the_proxy_itself() {
    for Refusal {
        name,
        request,
        status,
        error,
        mentions,
    } in refusals()
    {
        // A proxy per case: each starts with an empty cache and an IdP that
        // has seen nothing.
        let (idp, proxy) = setup().await;
        let response = request.send(&proxy).await;
        if status == 405 {
            assert_eq!(response.headers()["allow"], "POST", "{name}");
        }
        let body = assert_proxy_error(name, response, status, error).await;
        if let Some(word) = mentions {
            let description = body["error_description"].as_str().unwrap();
            assert!(description.contains(word), "{name}: {body}");
        }
        assert_untouched_and_serving(name, &idp, &proxy).await;
    }
}

// ---- Shared steps ---------------------------------------------------------

/// A mock IdP and a proxy in front of it, sharing one manual clock.
async fn setup() -> (MockIdpServer, ProxyServer) {
    setup_with(|_| {}).await
}

/// As [`setup`], with the proxy's configuration changed by `configure`.
async fn setup_with(configure: impl FnOnce(&mut ProxyConfig)) -> (MockIdpServer, ProxyServer) {
    let clock = ManualClock::starting_now();
    let idp = MockIdpServer::start_with(MockIdp::with_clock(
        MockIdpConfig::default(),
        Arc::new(clock.clone()),
    ))
    .await;
    let mut config = ProxyServer::config_for(&idp);
    configure(&mut config);
    let proxy = ProxyServer::start(config, clock).await;
    (idp, proxy)
}

/// Checks a proxy-made error answer and returns its JSON body.
async fn assert_proxy_error(
    name: &str,
    response: reqwest::Response,
    status: u16,
    code: &str,
) -> Value {
    assert_eq!(response.status().as_u16(), status, "{name}");
    let headers = response.headers().clone();
    let text = response.text().await.unwrap();
    assert_no_echo(name, &text);
    assert_eq!(headers["cache-control"], "no-store", "{name}: {text}");
    let content_type = headers["content-type"].to_str().unwrap();
    assert!(
        content_type.starts_with("application/json"),
        "{name}: content type {content_type}: {text}"
    );
    let body: Value = serde_json::from_str(&text).unwrap();
    assert_eq!(body["error"], code, "{name}: {body}");
    assert!(
        body["error_description"]
            .as_str()
            .is_some_and(|d| !d.is_empty()),
        "{name}: {body}"
    );
    body
}

/// The answer quotes neither the secret nor the header that carried it.
fn assert_no_echo(name: &str, answer: &str) {
    for secret in [SECRET, SECRET_IN_BASE64] {
        assert!(
            !answer.contains(secret),
            "{name}: the answer echoes {secret}: {answer}"
        );
    }
}

/// Nothing reached the IdP, nothing was cached, and the proxy still answers
/// a good request.
async fn assert_untouched_and_serving(name: &str, idp: &MockIdpServer, proxy: &ProxyServer) {
    assert_eq!(
        idp.idp.token_requests(),
        0,
        "{name}: a bad request reached the IdP"
    );
    assert_eq!(
        proxy.proxy.cached_entries(),
        0,
        "{name}: a bad request was cached"
    );
    let good = proxy.token_request("demo-client", "demo-secret", CC).await;
    assert_eq!(good.status(), 200, "{name}");
    let body: Value = good.json().await.unwrap();
    assert!(body["access_token"].is_string(), "{name}: {body}");
    assert_eq!(idp.idp.token_requests(), 1, "{name}");
}

/// `tokencache_requests_total{outcome="error"}` from the admin listener.
async fn proxy_errors(proxy: &ProxyServer) -> u64 {
    metric(
        &proxy.metrics().await,
        r#"tokencache_requests_total{outcome="error"}"#,
    )
    .unwrap_or(0)
}

// ---- Requests on the wire -------------------------------------------------

/// Writes `request` on a fresh connection and returns every byte the proxy
/// sends back before closing (bounded, so a proxy that keeps the connection
/// open fails the test instead of hanging it).
async fn raw_exchange(addr: SocketAddr, request: &[u8]) -> Vec<u8> {
    let mut stream = TcpStream::connect(addr).await.unwrap();
    // The proxy may answer and close before it has read everything (a body
    // over the limit); what matters is its answer, not whether our write
    // completed.
    let _ = stream.write_all(request).await;
    read_until_closed(&mut stream).await
}

async fn read_until_closed(stream: &mut TcpStream) -> Vec<u8> {
    let mut received = Vec::new();
    let mut chunk = [0_u8; 4096];
    loop {
        match tokio::time::timeout(Duration::from_secs(10), stream.read(&mut chunk)).await {
            Ok(Ok(0) | Err(_)) => break,
            Ok(Ok(n)) => received.extend_from_slice(&chunk[..n]),
            Err(_) => panic!("the proxy neither answered nor closed the connection"),
        }
    }
    received
}

/// The status code and body of a raw HTTP/1.1 answer.
fn parse_raw_answer(raw: &[u8]) -> (u16, Vec<u8>) {
    let text = String::from_utf8_lossy(raw);
    let status = text
        .strip_prefix("HTTP/1.1 ")
        .and_then(|rest| rest.get(..3))
        .and_then(|code| code.parse().ok())
        .unwrap_or_else(|| panic!("not an HTTP/1.1 answer: {text:?}"));
    let body_start = raw
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .map(|at| at + 4)
        .unwrap_or_else(|| panic!("answer without a header end: {text:?}"));
    (status, raw[body_start..].to_vec())
}

/// Checks a raw answer's status and its `invalid_request` JSON body.
fn assert_raw_refusal(name: &str, raw: &[u8], status: u16) {
    let (got, body) = parse_raw_answer(raw);
    assert_eq!(got, status, "{name}: {}", String::from_utf8_lossy(raw));
    assert_no_echo(name, &String::from_utf8_lossy(&body));
    let body: Value = serde_json::from_slice(&body).unwrap();
    assert_eq!(body["error"], "invalid_request", "{name}: {body}");
}

fn raw_head(addr: SocketAddr, extra_headers: &str) -> String {
    format!(
        "POST {TOKEN_PATH} HTTP/1.1\r\n\
         Host: {addr}\r\n\
         Content-Type: {FORM}\r\n\
         Authorization: Basic ZGVtby1jbGllbnQ6ZGVtby1zZWNyZXQ=\r\n\
         Connection: close\r\n\
         {extra_headers}\r\n"
    )
}

/// A valid token request padded past the body limit.
fn oversized_body() -> Vec<u8> {
    let mut body = format!("{CC}&client_secret={SECRET}&pad=").into_bytes();
    body.resize(MAX_BODY + 1024, b'a');
    body
}

/// Writes an oversized token request to the proxy at an address.
type Framing = fn(SocketAddr) -> Vec<u8>;

/// An oversized body announced with `Content-Length`.
fn with_content_length(addr: SocketAddr) -> Vec<u8> {
    let body = oversized_body();
    let mut request = raw_head(addr, &format!("Content-Length: {}\r\n", body.len())).into_bytes();
    request.extend_from_slice(&body);
    request
}

/// An oversized body in chunks, its size known only once read.
fn chunked(addr: SocketAddr) -> Vec<u8> {
    let mut request = raw_head(addr, "Transfer-Encoding: chunked\r\n").into_bytes();
    for chunk in oversized_body().chunks(1000) {
        request.extend_from_slice(format!("{:x}\r\n", chunk.len()).as_bytes());
        request.extend_from_slice(chunk);
        request.extend_from_slice(b"\r\n");
    }
    request.extend_from_slice(b"0\r\n\r\n");
    request
}

#[tokio::test]
async fn bodies_over_the_limit_are_413_however_framed() {
    let framings: [(&str, Framing); 2] = [
        ("with Content-Length", with_content_length),
        ("chunked", chunked),
    ];
    for (name, request) in framings {
        let (idp, proxy) = setup().await;
        let raw = raw_exchange(proxy.addr, &request(proxy.addr)).await;
        assert_raw_refusal(name, &raw, 413);
        assert_untouched_and_serving(name, &idp, &proxy).await;
    }
}

#[tokio::test]
async fn body_at_the_limit_is_accepted() {
    let (idp, proxy) = setup().await;
    let mut body = format!("{CC}&pad=").into_bytes();
    body.resize(MAX_BODY, b'a');
    let response = Request {
        credentials: Credentials::Basic("demo-secret"),
        ..Request::form(body)
    }
    .send(&proxy)
    .await;
    // Reached the IdP (which ignores the unknown parameter).
    assert_eq!(response.status(), 200);
    assert_eq!(idp.idp.token_requests(), 1);
}

#[tokio::test]
async fn wrong_secret_is_passed_through_and_never_cached() {
    // With the negative cache off, every wrong-secret request goes upstream
    // (the negative cache's own behaviour is tested in resilience.rs).
    let (idp, proxy) = setup_with(|config| config.negative_ttl = Duration::ZERO).await;
    for attempt in 1..=3 {
        let response = proxy.token_request("demo-client", "wrong", CC).await;
        assert_eq!(response.status(), 400);
        let cache_status = response.headers()["cache-status"]
            .to_str()
            .unwrap()
            .to_owned();
        assert!(cache_status.contains("fwd=miss"), "{cache_status}");
        assert!(!cache_status.contains("stored"), "{cache_status}");
        let body: Value = response.json().await.unwrap();
        assert_eq!(body["error"], "invalid_client", "{body}");
        assert_eq!(idp.idp.token_requests(), attempt);
        assert_eq!(idp.idp.token_requests_for("demo-client"), attempt);
        assert_eq!(proxy.proxy.cached_entries(), 0);
    }
    let response = proxy.token_request("demo-client", "demo-secret", CC).await;
    assert_eq!(response.status(), 200);
    let body: Value = response.json().await.unwrap();
    assert!(body["access_token"].is_string(), "{body}");
    assert_eq!(idp.idp.token_requests(), 4);
}

#[tokio::test]
async fn garbage_request_line_does_not_hurt_the_proxy() {
    let (idp, proxy) = setup().await;
    let raw = raw_exchange(
        proxy.addr,
        b"\x00\x01GARBAGE \xff\xfe/oauth2/token HTTTP/9.9\r\nno colon here\r\n\r\n",
    )
    .await;
    // hyper refuses it before the proxy's code sees anything.
    let (status, _) = parse_raw_answer(&raw);
    assert_eq!(status, 400, "{}", String::from_utf8_lossy(&raw));
    assert_untouched_and_serving("garbage", &idp, &proxy).await;
}

/// Sends a head announcing 100 bytes more than `body` and then `body`, on a
/// fresh connection.
async fn truncated(proxy: &ProxyServer, body: &str) -> TcpStream {
    let head = raw_head(
        proxy.addr,
        &format!("Content-Length: {}\r\n", body.len() + 100),
    );
    let mut stream = TcpStream::connect(proxy.addr).await.unwrap();
    stream.write_all(head.as_bytes()).await.unwrap();
    stream.write_all(body.as_bytes()).await.unwrap();
    stream
}

#[tokio::test]
async fn truncated_body_then_half_close_does_not_hurt_the_proxy() {
    let (idp, proxy) = setup().await;
    let mut stream = truncated(&proxy, &format!("{CC}&client_secret={SECRET}")).await;
    stream.shutdown().await.unwrap();
    let raw = read_until_closed(&mut stream).await;
    // The caller is still listening, so it hears why: the body is unreadable.
    assert_raw_refusal("half-closed", &raw, 400);
    assert_eq!(proxy_errors(&proxy).await, 1);
    assert_untouched_and_serving("half-closed", &idp, &proxy).await;
}

#[tokio::test]
async fn truncated_body_then_close_does_not_hurt_the_proxy() {
    let (idp, proxy) = setup().await;
    drop(truncated(&proxy, CC).await);
    // The proxy sees the body end early and answers (to no one) with an
    // error of its own; wait until it has, so the good request below comes
    // after it.
    let mut polls = 0;
    while proxy_errors(&proxy).await == 0 {
        polls += 1;
        assert!(
            polls < 500,
            "the proxy never finished the truncated request"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_untouched_and_serving("closed", &idp, &proxy).await;
}
