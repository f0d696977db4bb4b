//! End-to-end: HTTPS with certificate reload, and the limits that keep a
//! misbehaving client from holding the proxy.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use tokencache_mock_idp::MockIdpConfig;
use tokencache_proxy::{Limits, Proxy, ReloadableTls, ServeOptions, TlsFiles};
use tokencache_test_support::{ManualClock, MockIdpServer, ProxyServer, bind_loopback};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::sync::oneshot;

const CC: &str = "grant_type=client_credentials";
const BASIC: &str = "Basic ZGVtby1jbGllbnQ6ZGVtby1zZWNyZXQ="; // demo-client:demo-secret

/// A proxy served with `options`, stopped when the sender drops.
async fn start(idp: &MockIdpServer, options: ServeOptions) -> (SocketAddr, oneshot::Sender<()>) {
    let proxy = Proxy::new(
        ProxyServer::config_for(idp),
        Arc::new(ManualClock::starting_now()),
    )
    .unwrap();
    let (listener, addr) = bind_loopback().await;
    let (stop, stopped) = oneshot::channel::<()>();
    tokio::spawn(tokencache_proxy::serve_with(
        proxy,
        listener,
        None,
        options,
        async move {
            let _ = stopped.await;
        },
        Duration::from_secs(1),
    ));
    (addr, stop)
}

fn limits(change: impl FnOnce(&mut Limits)) -> ServeOptions {
    let mut limits = Limits::default();
    change(&mut limits);
    ServeOptions {
        limits,
        tls: None,
        workers: 0,
    }
}

/// Writes `request` and reads until the server closes or 5 s pass.
async fn exchange(addr: SocketAddr, request: &[u8]) -> String {
    let mut stream = TcpStream::connect(addr).await.unwrap();
    stream.write_all(request).await.unwrap();
    let mut answer = Vec::new();
    let _ = tokio::time::timeout(Duration::from_secs(5), stream.read_to_end(&mut answer)).await;
    String::from_utf8_lossy(&answer).into_owned()
}

fn token_request(extra_headers: &str) -> Vec<u8> {
    format!(
        "POST /oauth2/token HTTP/1.1\r\nHost: x\r\nAuthorization: {BASIC}\r\n\
         Content-Type: application/x-www-form-urlencoded\r\nContent-Length: {}\r\n\
         Connection: close\r\n{extra_headers}\r\n{CC}",
        CC.len()
    )
    .into_bytes()
}

#[tokio::test]
async fn a_slowloris_client_is_cut_off_after_the_header_timeout() {
    let idp = MockIdpServer::start(MockIdpConfig::default()).await;
    let (addr, _stop) = start(
        &idp,
        limits(|l| l.header_read_timeout = Duration::from_millis(300)),
    )
    .await;
    let mut stream = TcpStream::connect(addr).await.unwrap();
    stream
        .write_all(b"POST /oauth2/token HTTP/1.1\r\nHost: x\r\n")
        .await
        .unwrap();
    // Never finish the headers; the server must close the connection.
    let mut answer = Vec::new();
    let closed =
        tokio::time::timeout(Duration::from_secs(5), stream.read_to_end(&mut answer)).await;
    assert!(closed.is_ok(), "the connection was held open");
    // And it still serves everyone else.
    assert!(
        exchange(addr, &token_request(""))
            .await
            .starts_with("HTTP/1.1 200")
    );
}

#[tokio::test]
async fn too_many_or_too_large_headers_get_431() {
    let idp = MockIdpServer::start(MockIdpConfig::default()).await;
    let (addr, _stop) = start(&idp, ServeOptions::default()).await;
    let many: String = (0..100).map(|n| format!("X-Extra-{n}: {n}\r\n")).collect();
    let answer = exchange(addr, &token_request(&many)).await;
    assert!(answer.starts_with("HTTP/1.1 431"), "{answer}");
    let large = format!("X-Large: {}\r\n", "a".repeat(20_000));
    let answer = exchange(addr, &token_request(&large)).await;
    assert!(answer.starts_with("HTTP/1.1 431"), "{answer}");
    assert!(
        exchange(addr, &token_request("X-Fine: 1\r\n"))
            .await
            .starts_with("HTTP/1.1 200")
    );
}

#[tokio::test]
async fn a_trickled_body_times_out_with_408() {
    let idp = MockIdpServer::start(MockIdpConfig::default()).await;
    let (addr, _stop) = start(
        &idp,
        limits(|l| l.request_timeout = Duration::from_millis(300)),
    )
    .await;
    let mut stream = TcpStream::connect(addr).await.unwrap();
    stream
        .write_all(
            b"POST /oauth2/token HTTP/1.1\r\nHost: x\r\n\
              Content-Type: application/x-www-form-urlencoded\r\nContent-Length: 100\r\n\r\ngrant_",
        )
        .await
        .unwrap();
    let mut answer = vec![0u8; 4096];
    let read = tokio::time::timeout(Duration::from_secs(5), stream.read(&mut answer))
        .await
        .expect("answered in time")
        .unwrap();
    let answer = String::from_utf8_lossy(&answer[..read]);
    assert!(answer.starts_with("HTTP/1.1 408"), "{answer}");
    assert!(answer.contains(r#""error":"invalid_request""#), "{answer}");
}

fn client_trusting(ca_pem: &str) -> reqwest::Client {
    reqwest::Client::builder()
        .tls_certs_only([reqwest::Certificate::from_pem(ca_pem.as_bytes()).unwrap()])
        .build()
        .unwrap()
}

#[tokio::test]
async fn https_with_http2_and_a_certificate_reload() {
    let dir = std::env::temp_dir().join(format!("tokencache-tls-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let first_ca = tokencache_test_support::certificates::write_localhost_certificate(&dir);
    let files = TlsFiles {
        cert: dir.join("cert.pem"),
        key: dir.join("key.pem"),
    };
    let tls = ReloadableTls::load(files).unwrap();
    let idp = MockIdpServer::start(MockIdpConfig::default()).await;
    let (addr, _stop) = start(
        &idp,
        ServeOptions {
            limits: Limits::default(),
            tls: Some(tls.clone()),
            workers: 0,
        },
    )
    .await;
    let url = format!("https://localhost:{}/oauth2/token", addr.port());
    let post = |client: &reqwest::Client| {
        client
            .post(&url)
            .basic_auth("demo-client", Some("demo-secret"))
            .header("content-type", "application/x-www-form-urlencoded")
            .body(CC)
            .send()
    };
    let old_client = client_trusting(&first_ca);
    let answer = post(&old_client).await.unwrap();
    assert_eq!(answer.status(), 200);
    assert_eq!(answer.version(), reqwest::Version::HTTP_2, "ALPN chose h2");

    // Renewal: new certificate from a new CA, then reload (what SIGHUP does).
    let second_ca = tokencache_test_support::certificates::write_localhost_certificate(&dir);
    tls.reload().unwrap();
    let new_client = client_trusting(&second_ca);
    assert_eq!(post(&new_client).await.unwrap().status(), 200);
    // The connection opened before the reload is still served.
    assert_eq!(post(&old_client).await.unwrap().status(), 200);
    // A new connection trusting only the old CA is refused.
    assert!(post(&client_trusting(&first_ca)).await.is_err());

    // A broken renewal keeps the working certificate.
    std::fs::write(dir.join("cert.pem"), "not a certificate").unwrap();
    assert!(tls.reload().is_err());
    assert_eq!(
        post(&client_trusting(&second_ca)).await.unwrap().status(),
        200
    );
    let _ = std::fs::remove_dir_all(&dir);
}

/// Served on worker threads (each its own runtime, one shared socket): cold
/// misses coalesce across workers, hits answer, and a stop drains them all.
#[tokio::test]
async fn worker_threads_share_one_cache_and_one_load_per_key() {
    let idp = MockIdpServer::start(MockIdpConfig::default()).await;
    let proxy = Proxy::new(
        ProxyServer::config_for(&idp),
        Arc::new(ManualClock::starting_now()),
    )
    .unwrap();
    let (listener, addr) = bind_loopback().await;
    let (stop, stopped) = oneshot::channel::<()>();
    let served = tokio::spawn(tokencache_proxy::serve_with(
        proxy,
        listener,
        None,
        ServeOptions {
            workers: 2,
            ..ServeOptions::default()
        },
        async move {
            let _ = stopped.await;
        },
        Duration::from_secs(1),
    ));
    // Many connections at once, so both workers take some.
    let request = token_request("");
    let answers = futures::future::join_all((0..40).map(|_| exchange(addr, &request)));
    let answers = tokio::time::timeout(Duration::from_secs(20), answers)
        .await
        .expect("answered");
    for answer in &answers {
        assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
    }
    let tokens: std::collections::HashSet<_> = answers
        .iter()
        .filter_map(|answer| answer.split("\"access_token\":\"").nth(1))
        .filter_map(|rest| rest.split('"').next())
        .collect();
    assert_eq!(tokens.len(), 1, "one token for every caller");
    assert_eq!(idp.idp.stats().token_requests, 1, "one upstream request");
    drop(stop);
    tokio::time::timeout(Duration::from_secs(5), served)
        .await
        .expect("drained in time")
        .unwrap()
        .unwrap();
}
