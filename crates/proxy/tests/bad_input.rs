//! End-to-end: malformed and hostile requests to the proxy.
//!
//! Each is refused by the proxy itself with an RFC 6749 error that never
//! echoes the client secret; none reaches the mock IdP, none is cached, and
//! the proxy keeps serving good requests afterwards.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use serde_json::Value;
use tokencache_mock_idp::{MockIdp, MockIdpConfig};
use tokencache_test_support::{ManualClock, MockIdpServer, ProxyServer};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

const CC: &str = "grant_type=client_credentials";
const FORM: &str = "application/x-www-form-urlencoded";

/// A client secret distinctive enough that finding it in an answer can only
/// mean the proxy echoed it.
const SECRET: &str = "sekrit-7f3c-do-not-echo";

/// The proxy's limit on request bodies (its default).
const MAX_BODY: usize = 16 << 10;

/// A mock IdP and a proxy in front of it, sharing one manual clock.
async fn setup() -> (MockIdpServer, ProxyServer) {
    let clock = ManualClock::starting_now();
    let idp = MockIdpServer::start_with(MockIdp::with_clock(
        MockIdpConfig::default(),
        Arc::new(clock.clone()),
    ))
    .await;
    let proxy = ProxyServer::start_for(&idp, clock).await;
    (idp, proxy)
}

/// A form post to the proxy's token URL with `demo-client` and [`SECRET`]
/// as Basic credentials, not yet sent.
fn form_post(proxy: &ProxyServer, body: impl Into<reqwest::Body>) -> reqwest::RequestBuilder {
    proxy
        .http
        .post(proxy.token_url())
        .basic_auth("demo-client", Some(SECRET))
        .header("content-type", FORM)
        .body(body)
}

/// Checks a proxy-made error answer and returns its JSON body.
async fn assert_proxy_error(response: reqwest::Response, status: u16, code: &str) -> Value {
    assert_eq!(response.status().as_u16(), status);
    let headers = response.headers().clone();
    let text = response.text().await.unwrap();
    assert!(
        !text.contains(SECRET),
        "the answer echoes the secret: {text}"
    );
    assert_eq!(headers["cache-control"], "no-store", "{text}");
    let content_type = headers["content-type"].to_str().unwrap();
    assert!(
        content_type.starts_with("application/json"),
        "content type {content_type}: {text}"
    );
    let body: Value = serde_json::from_str(&text).unwrap();
    assert_eq!(body["error"], code, "{body}");
    assert!(
        body["error_description"]
            .as_str()
            .is_some_and(|d| !d.is_empty()),
        "{body}"
    );
    body
}

/// Nothing reached the IdP, nothing was cached, and the proxy still answers
/// a good request.
async fn assert_untouched_and_serving(idp: &MockIdpServer, proxy: &ProxyServer) {
    assert_eq!(idp.idp.token_requests(), 0, "a bad request reached the IdP");
    assert_eq!(proxy.proxy.cached_entries(), 0, "a bad request was cached");
    let good = proxy.token_request("demo-client", "demo-secret", CC).await;
    assert_eq!(good.status(), 200);
    let body: Value = good.json().await.unwrap();
    assert!(body["access_token"].is_string(), "{body}");
    assert_eq!(idp.idp.token_requests(), 1);
}

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

fn raw_head(addr: SocketAddr, extra_headers: &str) -> String {
    format!(
        "POST /oauth2/token HTTP/1.1\r\n\
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

fn assert_raw_413(raw: &[u8]) {
    let (status, body) = parse_raw_answer(raw);
    assert_eq!(status, 413, "{}", String::from_utf8_lossy(raw));
    let text = String::from_utf8_lossy(&body);
    assert!(!text.contains(SECRET), "{text}");
    let body: Value = serde_json::from_slice(&body).unwrap();
    assert_eq!(body["error"], "invalid_request", "{body}");
}

#[tokio::test]
async fn get_on_the_token_path_is_405_allowing_post() {
    let (idp, proxy) = setup().await;
    let response = proxy.http.get(proxy.token_url()).send().await.unwrap();
    assert_eq!(response.headers()["allow"], "POST");
    assert_proxy_error(response, 405, "invalid_request").await;
    assert_untouched_and_serving(&idp, &proxy).await;
}

#[tokio::test]
async fn unknown_path_is_404() {
    let (idp, proxy) = setup().await;
    let response = proxy
        .http
        .post(format!("http://{}/nope", proxy.addr))
        .basic_auth("demo-client", Some(SECRET))
        .header("content-type", FORM)
        .body(CC)
        .send()
        .await
        .unwrap();
    assert_proxy_error(response, 404, "invalid_request").await;
    assert_untouched_and_serving(&idp, &proxy).await;
}

#[tokio::test]
async fn json_content_type_is_refused() {
    let (idp, proxy) = setup().await;
    let response = proxy
        .http
        .post(proxy.token_url())
        .basic_auth("demo-client", Some(SECRET))
        .header("content-type", "application/json")
        .body(format!(
            r#"{{"grant_type":"client_credentials","client_secret":"{SECRET}"}}"#
        ))
        .send()
        .await
        .unwrap();
    let body = assert_proxy_error(response, 400, "invalid_request").await;
    assert!(
        body["error_description"]
            .as_str()
            .unwrap()
            .contains("content type"),
        "{body}"
    );
    assert_untouched_and_serving(&idp, &proxy).await;
}

#[tokio::test]
async fn missing_content_type_is_refused() {
    let (idp, proxy) = setup().await;
    let response = proxy
        .http
        .post(proxy.token_url())
        .basic_auth("demo-client", Some(SECRET))
        .body(CC)
        .send()
        .await
        .unwrap();
    assert_proxy_error(response, 400, "invalid_request").await;
    assert_untouched_and_serving(&idp, &proxy).await;
}

#[tokio::test]
async fn malformed_percent_escape_is_refused() {
    let (idp, proxy) = setup().await;
    let response = form_post(&proxy, format!("{CC}&scope=%zz"))
        .send()
        .await
        .unwrap();
    assert_proxy_error(response, 400, "invalid_request").await;
    assert_untouched_and_serving(&idp, &proxy).await;
}

#[tokio::test]
async fn percent_encoded_invalid_utf8_is_refused() {
    let (idp, proxy) = setup().await;
    let response = form_post(&proxy, format!("{CC}&scope=%FF"))
        .send()
        .await
        .unwrap();
    assert_proxy_error(response, 400, "invalid_request").await;
    assert_untouched_and_serving(&idp, &proxy).await;
}

#[tokio::test]
async fn raw_invalid_utf8_is_refused() {
    let (idp, proxy) = setup().await;
    let mut body = format!("{CC}&scope=").into_bytes();
    body.extend_from_slice(b"api\xff\xfe");
    let response = form_post(&proxy, body).send().await.unwrap();
    assert_proxy_error(response, 400, "invalid_request").await;
    assert_untouched_and_serving(&idp, &proxy).await;
}

#[tokio::test]
async fn scope_twice_in_the_body_is_refused_by_name() {
    let (idp, proxy) = setup().await;
    let response = form_post(&proxy, format!("{CC}&scope=api%2Fread&scope=api%2Fwrite"))
        .send()
        .await
        .unwrap();
    let body = assert_proxy_error(response, 400, "invalid_request").await;
    assert!(
        body["error_description"]
            .as_str()
            .unwrap()
            .contains("scope"),
        "{body}"
    );
    assert_untouched_and_serving(&idp, &proxy).await;
}

#[tokio::test]
async fn scope_in_body_and_query_is_refused_by_name() {
    let (idp, proxy) = setup().await;
    let response = proxy
        .http
        .post(format!("{}?scope=api%2Fread", proxy.token_url()))
        .basic_auth("demo-client", Some(SECRET))
        .header("content-type", FORM)
        .body(format!("{CC}&scope=api%2Fwrite"))
        .send()
        .await
        .unwrap();
    let body = assert_proxy_error(response, 400, "invalid_request").await;
    assert!(
        body["error_description"]
            .as_str()
            .unwrap()
            .contains("scope"),
        "{body}"
    );
    assert_untouched_and_serving(&idp, &proxy).await;
}

#[tokio::test]
async fn duplicate_client_secret_is_refused_without_echoing_it() {
    let (idp, proxy) = setup().await;
    let response = proxy
        .http
        .post(proxy.token_url())
        .header("content-type", FORM)
        .body(format!(
            "{CC}&client_id=demo-client&client_secret={SECRET}&client_secret={SECRET}"
        ))
        .send()
        .await
        .unwrap();
    let body = assert_proxy_error(response, 400, "invalid_request").await;
    assert!(
        body["error_description"]
            .as_str()
            .unwrap()
            .contains("client_secret"),
        "{body}"
    );
    assert_untouched_and_serving(&idp, &proxy).await;
}

/// Sends a client_credentials request (with the secret in the body, so an
/// echo would show) under a raw `Authorization` value.
async fn with_authorization(proxy: &ProxyServer, authorization: &str) -> reqwest::Response {
    proxy
        .http
        .post(proxy.token_url())
        .header("authorization", authorization)
        .header("content-type", FORM)
        .body(format!("{CC}&scope=api%2Fread"))
        .send()
        .await
        .unwrap()
}

#[tokio::test]
async fn basic_header_that_is_not_base64_is_refused() {
    let (idp, proxy) = setup().await;
    let response = with_authorization(&proxy, "Basic !!!notbase64").await;
    assert_proxy_error(response, 400, "invalid_request").await;
    assert_untouched_and_serving(&idp, &proxy).await;
}

#[tokio::test]
async fn basic_header_without_colon_is_refused_without_echoing_it() {
    let (idp, proxy) = setup().await;
    // base64 of SECRET alone: no `:` between an id and a secret.
    let response = with_authorization(&proxy, "Basic c2Vrcml0LTdmM2MtZG8tbm90LWVjaG8=").await;
    let body = assert_proxy_error(response, 400, "invalid_request").await;
    assert!(!body.to_string().contains("c2Vrcml0"), "{body}");
    assert_untouched_and_serving(&idp, &proxy).await;
}

#[tokio::test]
async fn basic_header_without_credentials_is_refused() {
    let (idp, proxy) = setup().await;
    let response = with_authorization(&proxy, "Basic").await;
    assert_proxy_error(response, 400, "invalid_request").await;
    assert_untouched_and_serving(&idp, &proxy).await;
}

#[tokio::test]
async fn credentials_in_header_and_body_are_refused() {
    let (idp, proxy) = setup().await;
    let response = form_post(
        &proxy,
        format!("{CC}&client_id=demo-client&client_secret={SECRET}"),
    )
    .send()
    .await
    .unwrap();
    assert_proxy_error(response, 400, "invalid_request").await;
    assert_untouched_and_serving(&idp, &proxy).await;
}

#[tokio::test]
async fn missing_grant_type_is_refused() {
    let (idp, proxy) = setup().await;
    let response = form_post(&proxy, "scope=api%2Fread").send().await.unwrap();
    let body = assert_proxy_error(response, 400, "invalid_request").await;
    assert!(
        body["error_description"]
            .as_str()
            .unwrap()
            .contains("grant_type"),
        "{body}"
    );
    assert_untouched_and_serving(&idp, &proxy).await;
}

#[tokio::test]
async fn body_over_the_limit_with_content_length_is_413() {
    let (idp, proxy) = setup().await;
    let body = oversized_body();
    let mut request =
        raw_head(proxy.addr, &format!("Content-Length: {}\r\n", body.len())).into_bytes();
    request.extend_from_slice(&body);
    let raw = raw_exchange(proxy.addr, &request).await;
    assert_raw_413(&raw);
    assert_untouched_and_serving(&idp, &proxy).await;
}

#[tokio::test]
async fn chunked_body_over_the_limit_is_413() {
    let (idp, proxy) = setup().await;
    let mut request = raw_head(proxy.addr, "Transfer-Encoding: chunked\r\n").into_bytes();
    for chunk in oversized_body().chunks(1000) {
        request.extend_from_slice(format!("{:x}\r\n", chunk.len()).as_bytes());
        request.extend_from_slice(chunk);
        request.extend_from_slice(b"\r\n");
    }
    request.extend_from_slice(b"0\r\n\r\n");
    let raw = raw_exchange(proxy.addr, &request).await;
    assert_raw_413(&raw);
    assert_untouched_and_serving(&idp, &proxy).await;
}

#[tokio::test]
async fn body_at_the_limit_is_accepted() {
    let (idp, proxy) = setup().await;
    let mut body = format!("{CC}&pad=").into_bytes();
    body.resize(MAX_BODY, b'a');
    let response = proxy
        .http
        .post(proxy.token_url())
        .basic_auth("demo-client", Some("demo-secret"))
        .header("content-type", FORM)
        .body(body)
        .send()
        .await
        .unwrap();
    // Reached the IdP (which ignores the unknown parameter).
    assert_eq!(response.status(), 200);
    assert_eq!(idp.idp.token_requests(), 1);
}

#[tokio::test]
async fn wrong_secret_is_passed_through_and_never_cached() {
    // With the negative cache off, every wrong-secret request goes upstream
    // (the negative cache's own behaviour is tested in resilience.rs).
    let clock = ManualClock::starting_now();
    let idp = MockIdpServer::start_with(MockIdp::with_clock(
        MockIdpConfig::default(),
        Arc::new(clock.clone()),
    ))
    .await;
    let mut config = ProxyServer::config_for(&idp);
    config.negative_ttl = std::time::Duration::ZERO;
    let proxy = ProxyServer::start(config, clock).await;
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
    assert_untouched_and_serving(&idp, &proxy).await;
}

#[tokio::test]
async fn truncated_body_then_half_close_does_not_hurt_the_proxy() {
    let (idp, proxy) = setup().await;
    let body = format!("{CC}&client_secret={SECRET}");
    let head = raw_head(
        proxy.addr,
        &format!("Content-Length: {}\r\n", body.len() + 100),
    );
    let mut stream = TcpStream::connect(proxy.addr).await.unwrap();
    stream.write_all(head.as_bytes()).await.unwrap();
    stream.write_all(body.as_bytes()).await.unwrap();
    stream.shutdown().await.unwrap();
    let raw = read_until_closed(&mut stream).await;
    // The caller is still listening, so it hears why: the body is unreadable.
    let (status, answer) = parse_raw_answer(&raw);
    assert_eq!(status, 400, "{}", String::from_utf8_lossy(&raw));
    assert!(!String::from_utf8_lossy(&answer).contains(SECRET));
    let answer: Value = serde_json::from_slice(&answer).unwrap();
    assert_eq!(answer["error"], "invalid_request", "{answer}");
    assert_eq!(proxy_errors(&proxy).await, 1);
    assert_untouched_and_serving(&idp, &proxy).await;
}

#[tokio::test]
async fn truncated_body_then_close_does_not_hurt_the_proxy() {
    let (idp, proxy) = setup().await;
    let body = CC;
    let head = raw_head(
        proxy.addr,
        &format!("Content-Length: {}\r\n", body.len() + 100),
    );
    let mut stream = TcpStream::connect(proxy.addr).await.unwrap();
    stream.write_all(head.as_bytes()).await.unwrap();
    stream.write_all(body.as_bytes()).await.unwrap();
    drop(stream);
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
    assert_untouched_and_serving(&idp, &proxy).await;
}

/// `tokencache_requests_total{outcome="error"}` from the admin listener.
async fn proxy_errors(proxy: &ProxyServer) -> u64 {
    let metrics = proxy.metrics().await;
    metrics
        .lines()
        .find_map(|line| line.strip_prefix(r#"tokencache_requests_total{outcome="error"} "#))
        .map_or(0, |value| value.trim().parse().unwrap())
}
