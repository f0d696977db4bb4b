//! End-to-end: the connection layer of the token listener. Idle and slow
//! connections are bounded from accept, one address cannot take every
//! slot, `/readyz` reports saturation, and HTTP/2 (cleartext and over TLS)
//! is held to the same limits as HTTP/1.1, rapid resets included.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use tokencache_mock_idp::MockIdpConfig;
use tokencache_proxy::{Limits, Proxy, ReloadableTls, ServeOptions, TlsFiles};
use tokencache_test_support::{ManualClock, MockIdpServer, ProxyServer, bind_loopback};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::sync::oneshot;
use tokio::time::Instant;

const CC: &str = "grant_type=client_credentials";
const BASIC: &str = "Basic ZGVtby1jbGllbnQ6ZGVtby1zZWNyZXQ="; // demo-client:demo-secret

/// A proxy in front of `idp` with both listeners, stopped when dropped.
struct Served {
    addr: SocketAddr,
    admin: SocketAddr,
    _stop: oneshot::Sender<()>,
}

impl Served {
    async fn start(idp: &MockIdpServer, limits: Limits, tls: Option<ReloadableTls>) -> Self {
        let proxy = Proxy::new(
            ProxyServer::config_for(idp),
            Arc::new(ManualClock::starting_now()),
        )
        .unwrap();
        let (listener, addr) = bind_loopback().await;
        let (admin_listener, admin) = bind_loopback().await;
        let (stop, stopped) = oneshot::channel::<()>();
        tokio::spawn(tokencache_proxy::serve_with(
            proxy,
            listener,
            Some(admin_listener),
            ServeOptions {
                limits,
                tls,
                workers: 0,
            },
            async move {
                let _ = stopped.await;
            },
            Duration::from_secs(1),
        ));
        Self {
            addr,
            admin,
            _stop: stop,
        }
    }

    fn token_url(&self) -> String {
        format!("http://{}/oauth2/token", self.addr)
    }

    /// The admin listener's `/metrics` text.
    async fn metrics(&self) -> String {
        client()
            .get(format!("http://{}/metrics", self.admin))
            .send()
            .await
            .unwrap()
            .text()
            .await
            .unwrap()
    }

    /// `/readyz`: its status and body.
    async fn readyz(&self) -> (u16, String) {
        let answer = client()
            .get(format!("http://{}/readyz", self.admin))
            .send()
            .await
            .unwrap();
        (answer.status().as_u16(), answer.text().await.unwrap())
    }
}

fn limits(change: impl FnOnce(&mut Limits)) -> Limits {
    let mut limits = Limits::default();
    change(&mut limits);
    limits
}

/// A `reqwest` client whose every request gives up after 5 s.
fn client_builder() -> reqwest::ClientBuilder {
    reqwest::Client::builder().timeout(Duration::from_secs(5))
}

fn client() -> reqwest::Client {
    client_builder().build().unwrap()
}

/// A token request with Basic credentials, with `reqwest`.
fn post_token(client: &reqwest::Client, url: &str) -> reqwest::RequestBuilder {
    client
        .post(url)
        .basic_auth("demo-client", Some("demo-secret"))
        .header("content-type", "application/x-www-form-urlencoded")
        .body(CC)
}

/// The HTTP/1.1 bytes of a keep-alive token request.
fn token_request_bytes() -> Vec<u8> {
    format!(
        "POST /oauth2/token HTTP/1.1\r\nHost: x\r\nAuthorization: {BASIC}\r\n\
         Content-Type: application/x-www-form-urlencoded\r\nContent-Length: {}\r\n\r\n{CC}",
        CC.len()
    )
    .into_bytes()
}

/// Whether the server closes `stream` (end of stream or reset) by `deadline`.
async fn closed_by(stream: &mut TcpStream, deadline: Instant) -> bool {
    let mut buffer = [0u8; 1024];
    loop {
        match tokio::time::timeout_at(deadline, stream.read(&mut buffer)).await {
            Err(_) => return false,
            Ok(Ok(0) | Err(_)) => return true,
            // Bytes (an answer the test did not read): keep reading.
            Ok(Ok(_)) => {}
        }
    }
}

/// One HTTP/1.1 exchange on a kept-alive connection: the answer's status,
/// once its whole body is read (`Content-Length`), within 5 s.
async fn http1_exchange(stream: &mut TcpStream) -> u16 {
    stream.write_all(&token_request_bytes()).await.unwrap();
    tokio::time::timeout(Duration::from_secs(5), read_http1_answer(stream))
        .await
        .expect("answered in time")
}

async fn read_http1_answer(stream: &mut TcpStream) -> u16 {
    let mut received = Vec::new();
    let mut buffer = [0u8; 4096];
    let head_end = loop {
        let read = stream.read(&mut buffer).await.unwrap();
        assert!(read > 0, "closed before an answer");
        received.extend_from_slice(&buffer[..read]);
        if let Some(end) = received.windows(4).position(|w| w == b"\r\n\r\n") {
            break end + 4;
        }
    };
    let head = String::from_utf8_lossy(&received[..head_end]).to_ascii_lowercase();
    let status = head[9..12].parse().unwrap();
    let length: usize = head
        .lines()
        .find_map(|line| line.strip_prefix("content-length:"))
        .map_or(0, |value| value.trim().parse().unwrap());
    while received.len() < head_end + length {
        let read = stream.read(&mut buffer).await.unwrap();
        assert!(read > 0, "closed mid-answer");
        received.extend_from_slice(&buffer[..read]);
    }
    status
}

/// An HTTP/2 connection made with the `h2` crate (prior knowledge), and
/// the task driving it, which ends when the server closes it.
struct H2Connection {
    send: h2::client::SendRequest<Bytes>,
    driver: tokio::task::JoinHandle<Result<(), h2::Error>>,
}

impl H2Connection {
    async fn open(addr: SocketAddr) -> Self {
        let tcp = TcpStream::connect(addr).await.unwrap();
        let (send, connection) = h2::client::handshake(tcp).await.unwrap();
        Self {
            send,
            driver: tokio::spawn(connection),
        }
    }

    fn token_request(addr: SocketAddr) -> http::Request<()> {
        http::Request::post(format!("http://{addr}/oauth2/token"))
            .header("authorization", BASIC)
            .header("content-type", "application/x-www-form-urlencoded")
            .body(())
            .unwrap()
    }

    /// One token request: its status, once its whole body is read.
    async fn exchange(&mut self, addr: SocketAddr) -> u16 {
        let exchange = async {
            let ready = self.send.clone().ready().await.unwrap();
            self.send = ready;
            let (answer, mut body) = self
                .send
                .send_request(Self::token_request(addr), false)
                .unwrap();
            body.send_data(Bytes::from_static(CC.as_bytes()), true)
                .unwrap();
            let answer = answer.await.unwrap();
            let status = answer.status().as_u16();
            let mut body = answer.into_body();
            while let Some(chunk) = body.data().await {
                let chunk = chunk.unwrap();
                let _ = body.flow_control().release_capacity(chunk.len());
            }
            status
        };
        tokio::time::timeout(Duration::from_secs(5), exchange)
            .await
            .expect("answered in time")
    }

    /// Whether the server closes the connection by `deadline`.
    async fn closed_by(&mut self, deadline: Instant) -> bool {
        tokio::time::timeout_at(deadline, &mut self.driver)
            .await
            .is_ok()
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn idle_sockets_do_not_lock_callers_out_and_are_closed_in_time() {
    let header_read_timeout = Duration::from_secs(1);
    let idp = MockIdpServer::start(MockIdpConfig::default()).await;
    let served = Served::start(
        &idp,
        limits(|l| {
            l.max_connections = 64;
            l.header_read_timeout = header_read_timeout;
        }),
        None,
    )
    .await;
    let mut idle = Vec::new();
    for _ in 0..200 {
        idle.push(TcpStream::connect(served.addr).await.unwrap());
    }

    let asked = Instant::now();
    let bound = header_read_timeout + Duration::from_secs(1);
    let answer = tokio::time::timeout(bound, post_token(&client(), &served.token_url()).send())
        .await
        .expect("answered within the header read timeout + 1 s")
        .unwrap();
    assert_eq!(answer.status(), 200);

    let deadline = asked + bound;
    let closed = futures::future::join_all(
        idle.iter_mut()
            .map(|stream| async move { closed_by(stream, deadline).await }),
    )
    .await;
    let open = closed.iter().filter(|closed| !**closed).count();
    assert_eq!(open, 0, "{open} of 200 idle sockets still open");
}

#[tokio::test]
async fn a_connection_that_never_completes_its_first_head_is_closed() {
    let header_read_timeout = Duration::from_millis(500);
    let idp = MockIdpServer::start(MockIdpConfig::default()).await;
    let served = Served::start(
        &idp,
        limits(|l| l.header_read_timeout = header_read_timeout),
        None,
    )
    .await;
    // What each client sends before going silent.
    let table: [(&str, &[u8]); 4] = [
        ("nothing", b""),
        // Still ambiguous between HTTP/1.1 and the HTTP/2 preface.
        ("one byte", b"P"),
        (
            "half an HTTP/1.1 head",
            b"POST /oauth2/token HTTP/1.1\r\nHost: x\r\n",
        ),
        (
            "the HTTP/2 preface alone",
            b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n",
        ),
    ];
    for (case, sent) in table {
        let mut stream = TcpStream::connect(served.addr).await.unwrap();
        stream.write_all(sent).await.unwrap();
        let opened = Instant::now();
        assert!(
            closed_by(
                &mut stream,
                opened + header_read_timeout + Duration::from_secs(1)
            )
            .await,
            "{case}: still open"
        );
        assert!(
            opened.elapsed() >= header_read_timeout - Duration::from_millis(50),
            "{case}: closed early, after {:?}",
            opened.elapsed()
        );
    }
}

#[tokio::test]
async fn at_the_limit_a_silent_socket_makes_room_before_a_kept_alive_client() {
    let idp = MockIdpServer::start(MockIdpConfig::default()).await;
    let served = Served::start(
        &idp,
        limits(|l| {
            l.max_connections = 2;
            l.header_read_timeout = Duration::from_secs(30);
        }),
        None,
    )
    .await;
    let mut kept_alive = TcpStream::connect(served.addr).await.unwrap();
    assert_eq!(http1_exchange(&mut kept_alive).await, 200);
    let mut silent = TcpStream::connect(served.addr).await.unwrap();
    tokio::time::sleep(Duration::from_millis(100)).await;

    // A third caller is served at once, in the silent socket's place...
    let mut third = TcpStream::connect(served.addr).await.unwrap();
    assert_eq!(http1_exchange(&mut third).await, 200);
    assert!(
        closed_by(&mut silent, Instant::now() + Duration::from_secs(1)).await,
        "the silent socket was kept"
    );
    // ...and the kept-alive client is still served.
    assert_eq!(http1_exchange(&mut kept_alive).await, 200);
}

#[tokio::test]
async fn one_address_cannot_take_more_than_its_share_of_connections() {
    let per_ip = 3;
    let idp = MockIdpServer::start(MockIdpConfig::default()).await;
    let served = Served::start(
        &idp,
        limits(|l| {
            l.max_connections_per_ip = per_ip;
            l.header_read_timeout = Duration::from_secs(30);
        }),
        None,
    )
    .await;
    let mut allowed = Vec::new();
    for _ in 0..per_ip {
        allowed.push(TcpStream::connect(served.addr).await.unwrap());
    }
    // One more from 127.0.0.1 is closed at once...
    let mut over = TcpStream::connect(served.addr).await.unwrap();
    assert!(
        closed_by(&mut over, Instant::now() + Duration::from_millis(500)).await,
        "the connection over the per-address limit was kept"
    );
    // ...while the first ones are served,
    for stream in &mut allowed {
        assert_eq!(http1_exchange(stream).await, 200);
    }
    // and a slot freed is a slot again.
    drop(allowed.pop());
    tokio::time::sleep(Duration::from_millis(100)).await;
    let mut again = TcpStream::connect(served.addr).await.unwrap();
    assert_eq!(http1_exchange(&mut again).await, 200);
    // The operator sees what happened.
    let metrics = served.metrics().await;
    assert_eq!(
        tokencache_test_support::answers::metric(
            &metrics,
            r#"tokencache_connections_total{result="refused_per_ip"}"#
        ),
        Some(1),
        "{metrics}"
    );
    assert_eq!(
        tokencache_test_support::answers::metric(
            &metrics,
            r#"tokencache_connections_total{result="accepted"}"#
        ),
        Some(4),
        "{metrics}"
    );
}

/// One kept-alive connection, over either protocol.
enum KeptAlive {
    Http1(TcpStream),
    H2c(H2Connection),
}

impl KeptAlive {
    async fn exchange(&mut self, addr: SocketAddr) -> u16 {
        match self {
            Self::Http1(stream) => http1_exchange(stream).await,
            Self::H2c(connection) => connection.exchange(addr).await,
        }
    }

    async fn closed_by(&mut self, deadline: Instant) -> bool {
        match self {
            Self::Http1(stream) => closed_by(stream, deadline).await,
            Self::H2c(connection) => connection.closed_by(deadline).await,
        }
    }
}

#[tokio::test]
async fn a_kept_alive_connection_is_closed_after_the_idle_timeout() {
    let idle_timeout = Duration::from_millis(800);
    let idp = MockIdpServer::start(MockIdpConfig::default()).await;
    // hyper's own HTTP/1.1 header timer is longer, to see this one work.
    let served = Served::start(
        &idp,
        limits(|l| {
            l.idle_timeout = idle_timeout;
            l.header_read_timeout = Duration::from_secs(30);
        }),
        None,
    )
    .await;
    let addr = served.addr;
    let table = [
        (
            "HTTP/1.1",
            KeptAlive::Http1(TcpStream::connect(addr).await.unwrap()),
        ),
        ("h2c", KeptAlive::H2c(H2Connection::open(addr).await)),
    ];
    for (wire, mut connection) in table {
        assert_eq!(connection.exchange(addr).await, 200, "{wire}");
        // Idle for less than the limit: still usable.
        tokio::time::sleep(idle_timeout / 2).await;
        assert_eq!(connection.exchange(addr).await, 200, "{wire}");
        let answered = Instant::now();
        assert!(
            !connection.closed_by(answered + idle_timeout / 2).await,
            "{wire}: closed before the idle timeout"
        );
        assert!(
            connection
                .closed_by(answered + idle_timeout + Duration::from_secs(1))
                .await,
            "{wire}: still open after the idle timeout"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn readyz_reports_saturation_while_every_connection_is_busy() {
    let idp = MockIdpServer::start(MockIdpConfig {
        latency: Duration::from_millis(1_500),
        ..MockIdpConfig::default()
    })
    .await;
    let served = Served::start(&idp, limits(|l| l.max_connections = 2), None).await;
    assert_eq!(served.readyz().await, (200, "ready\n".to_owned()));

    // Two callers, one connection each, both waiting for the IdP.
    let busy: Vec<_> = (0..2)
        .map(|_| {
            let request = post_token(&client(), &served.token_url()).send();
            tokio::spawn(request)
        })
        .collect();
    let mut readiness = served.readyz().await;
    let give_up = Instant::now() + Duration::from_secs(1);
    while readiness.0 == 200 && Instant::now() < give_up {
        tokio::time::sleep(Duration::from_millis(20)).await;
        readiness = served.readyz().await;
    }
    assert_eq!(readiness.0, 503, "{readiness:?}");
    assert!(readiness.1.starts_with("saturated"), "{readiness:?}");
    // A third connection is closed at once rather than left waiting.
    let mut third = TcpStream::connect(served.addr).await.unwrap();
    assert!(closed_by(&mut third, Instant::now() + Duration::from_millis(500)).await);

    for answer in busy {
        assert_eq!(answer.await.unwrap().unwrap().status(), 200);
    }
    assert_eq!(served.readyz().await, (200, "ready\n".to_owned()));
}

#[tokio::test]
async fn http2_is_held_to_the_same_header_count_as_http1() {
    let dir = std::env::temp_dir().join(format!("tokencache-h2-limits-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let ca = tokencache_test_support::certificates::write_localhost_certificate(&dir);
    let tls = ReloadableTls::load(TlsFiles {
        cert: dir.join("cert.pem"),
        key: dir.join("key.pem"),
    })
    .unwrap();
    let idp = MockIdpServer::start(MockIdpConfig::default()).await;
    let plain = Served::start(&idp, Limits::default(), None).await;
    let https = Served::start(&idp, Limits::default(), Some(tls)).await;

    let http1 = client_builder().http1_only().build().unwrap();
    let h2c = client_builder().http2_prior_knowledge().build().unwrap();
    let h2_tls = client_builder()
        .tls_certs_only([reqwest::Certificate::from_pem(ca.as_bytes()).unwrap()])
        .build()
        .unwrap();
    let plain_url = plain.token_url();
    let https_url = format!("https://localhost:{}/oauth2/token", https.addr.port());
    // (wire, client, url, protocol, extra headers, status)
    let http_1_1 = reqwest::Version::HTTP_11;
    let http_2 = reqwest::Version::HTTP_2;
    let table = [
        ("HTTP/1.1", &http1, &plain_url, http_1_1, 70, 431),
        ("HTTP/1.1", &http1, &plain_url, http_1_1, 3, 200),
        ("h2c", &h2c, &plain_url, http_2, 70, 431),
        ("h2c", &h2c, &plain_url, http_2, 3, 200),
        ("h2 over TLS", &h2_tls, &https_url, http_2, 70, 431),
        ("h2 over TLS", &h2_tls, &https_url, http_2, 3, 200),
    ];
    for (wire, client, url, version, extra, status) in table {
        let mut request = post_token(client, url);
        for n in 0..extra {
            request = request.header(format!("x-extra-{n}"), n);
        }
        let answer = request.send().await.unwrap();
        assert_eq!(answer.version(), version, "{wire}");
        assert_eq!(answer.status(), status, "{wire} with {extra} extra headers");
        if version == http_2 && status == 431 {
            // The proxy's own refusal: an RFC 6749 error, like the others.
            let body = answer.text().await.unwrap();
            assert!(
                body.contains(r#""error":"invalid_request""#),
                "{wire}: {body}"
            );
        }
    }
    let _ = std::fs::remove_dir_all(&dir);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_rapid_reset_flood_does_not_slow_other_callers() {
    let idp = MockIdpServer::start(MockIdpConfig::default()).await;
    let served = Served::start(&idp, Limits::default(), None).await;
    let caller = client();
    let url = served.token_url();
    // Warm the cache: the caller's requests are hits from here on.
    assert_eq!(
        post_token(&caller, &url).send().await.unwrap().status(),
        200
    );

    let addr = served.addr;
    let flood = tokio::spawn(async move {
        let began = Instant::now();
        let stop_at = began + Duration::from_secs(2);
        let (mut streams, mut connections) = (0u32, 0u32);
        'connect: while streams < 10_000 && Instant::now() < stop_at {
            let Ok(tcp) = TcpStream::connect(addr).await else {
                continue;
            };
            let Ok((mut send, connection)) = h2::client::handshake(tcp).await else {
                continue;
            };
            connections += 1;
            let driver = tokio::spawn(connection);
            while streams < 10_000 && Instant::now() < stop_at {
                // After a GOAWAY, the next stream fails: connect again.
                let Ok(ready) = send.ready().await else {
                    driver.abort();
                    continue 'connect;
                };
                send = ready;
                // A whole token request (the proxy can start on it at
                // once), cancelled as soon as it is sent.
                let Ok((_answer, mut stream)) =
                    send.send_request(H2Connection::token_request(addr), false)
                else {
                    driver.abort();
                    continue 'connect;
                };
                let _ = stream.send_data(Bytes::from_static(CC.as_bytes()), true);
                stream.send_reset(h2::Reason::CANCEL);
                streams += 1;
            }
            driver.abort();
        }
        (streams, connections, began.elapsed())
    });

    // Meanwhile, the other caller's hits, timed, back to back for as long
    // as the flood lasts (2 s at most), and at least 20 of them: a median,
    // not a sample.
    let mut latencies = Vec::new();
    while (!flood.is_finished() || latencies.len() < 20) && latencies.len() < 5_000 {
        let started = Instant::now();
        let answer = post_token(&caller, &url).send().await.unwrap();
        assert_eq!(answer.status(), 200);
        let _ = answer.bytes().await.unwrap();
        latencies.push(started.elapsed());
    }
    let (streams, connections, lasted) = flood.await.unwrap();
    latencies.sort();
    let median = latencies[latencies.len() / 2];
    assert!(
        streams >= 1_000,
        "the flood did not run: {streams} streams on {connections} connections"
    );
    assert!(
        median < Duration::from_millis(50),
        "median latency {median:?} over {} requests, under a flood of {streams} \
         reset streams on {connections} connections for {lasted:?}",
        latencies.len()
    );
}
