//! The fault modes of `POST /oauth2/token`, seen the way a client sees
//! them: over a real socket, with reqwest. Time for the rate limit comes
//! from a manual clock, so pacing is exact and nothing sleeps.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use serde_json::{Value, json};
use tokencache_core::{Clock, UnixMillis};
use tokencache_mock_idp::{ControlUpdate, MockIdp, MockIdpConfig, Stats, ThrottleStyle};
use tokio::sync::oneshot;
use tokio::task::JoinHandle;

/// A clock that moves only when told to.
#[derive(Debug)]
struct TestClock(AtomicU64);

impl TestClock {
    fn advance_millis(&self, millis: u64) {
        self.0.fetch_add(millis, Ordering::SeqCst);
    }
}

impl Clock for TestClock {
    fn now(&self) -> UnixMillis {
        UnixMillis(self.0.load(Ordering::SeqCst))
    }
}

/// A mock IdP serving on loopback.
struct Running {
    idp: MockIdp,
    clock: Arc<TestClock>,
    base: String,
    http: reqwest::Client,
    stop: oneshot::Sender<()>,
    server: JoinHandle<std::io::Result<()>>,
}

impl Running {
    async fn start() -> Self {
        let clock = Arc::new(TestClock(AtomicU64::new(1_700_000_000_000)));
        let idp = MockIdp::with_clock(MockIdpConfig::default(), clock.clone());
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let base = format!("http://{}", listener.local_addr().unwrap());
        let (stop, stopped) = oneshot::channel::<()>();
        let server = tokio::spawn(idp.clone().serve(listener, async {
            let _ = stopped.await;
        }));
        Self {
            idp,
            clock,
            base,
            http: reqwest::Client::new(),
            stop,
            server,
        }
    }

    /// A `client_credentials` request as demo-client, not yet sent.
    fn token_with(&self, http: &reqwest::Client) -> reqwest::RequestBuilder {
        http.post(format!("{}/oauth2/token", self.base))
            .basic_auth("demo-client", Some("demo-secret"))
            .form(&[("grant_type", "client_credentials")])
    }

    async fn token(&self) -> Result<reqwest::Response, reqwest::Error> {
        self.token_with(&self.http).send().await
    }

    async fn control(&self, body: Value) -> reqwest::Response {
        self.http
            .post(format!("{}/control", self.base))
            .json(&body)
            .send()
            .await
            .unwrap()
    }

    async fn stats(&self) -> Stats {
        let stats: Stats = self
            .http
            .get(format!("{}/stats", self.base))
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        assert_eq!(stats, self.idp.stats());
        stats
    }

    /// Signals shutdown and checks that the server stops, and cleanly.
    async fn stop(self) {
        self.stop.send(()).unwrap();
        tokio::time::timeout(Duration::from_secs(10), self.server)
            .await
            .expect("the server stops after the shutdown signal")
            .unwrap()
            .unwrap();
    }
}

async fn assert_token(response: reqwest::Response) {
    assert_eq!(response.status(), 200);
    let body: Value = response.json().await.unwrap();
    assert!(body["access_token"].is_string(), "{body}");
}

#[tokio::test]
async fn reset_closes_the_connection_without_an_answer() {
    let idp = Running::start().await;
    let answer = idp.control(json!({"reset_rate": 1.0})).await;
    assert_eq!(answer.status(), 200);
    assert_eq!(answer.json::<Value>().await.unwrap()["reset_rate"], 1.0);

    for _ in 0..3 {
        let error = idp.token().await.unwrap_err();
        assert!(!error.is_timeout(), "{error:?}");
        assert!(error.is_request(), "{error:?}");
    }
    // Only the token endpoint is faulted, and the server survives.
    let stats = idp.stats().await;
    assert_eq!((stats.token_requests, stats.resets), (3, 3));
    assert!(stats.by_status.is_empty(), "{stats:?}");

    idp.control(json!({"reset_rate": 0})).await;
    assert_token(idp.token().await.unwrap()).await;
    idp.stop().await;
}

#[tokio::test]
async fn reset_writes_not_a_byte() {
    use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};

    let idp = Running::start().await;
    idp.control(json!({"reset_rate": 1.0})).await;
    let body = "grant_type=client_credentials&client_id=demo-client&client_secret=demo-secret";
    let request = format!(
        "POST /oauth2/token HTTP/1.1\r\nHost: idp\r\n\
         Content-Type: application/x-www-form-urlencoded\r\n\
         Content-Length: {}\r\n\r\n{body}",
        body.len()
    );
    let mut stream = tokio::net::TcpStream::connect(idp.base.trim_start_matches("http://"))
        .await
        .unwrap();
    stream.write_all(request.as_bytes()).await.unwrap();
    let mut answer = Vec::new();
    // End of stream or a reset, either way with nothing before it.
    let _ = stream.read_to_end(&mut answer).await;
    assert_eq!(String::from_utf8_lossy(&answer), "");
    assert_eq!(idp.stats().await.resets, 1);
    idp.stop().await;
}

#[tokio::test]
async fn garbage_is_a_200_that_is_not_a_token() {
    let idp = Running::start().await;
    idp.idp.apply(&ControlUpdate {
        garbage_rate: Some(1.0),
        ..ControlUpdate::default()
    });
    let response = idp.token().await.unwrap();
    assert_eq!(response.status(), 200);
    assert_eq!(response.headers()["content-type"], "text/html");
    let body = response.text().await.unwrap();
    assert!(serde_json::from_str::<Value>(&body).is_err(), "{body}");
    assert_eq!(body, "<html>upstream garbage</html>");
    let stats = idp.stats().await;
    assert_eq!((stats.garbage, stats.tokens_issued), (1, 0));
    assert_eq!(stats.by_status[&200], 1);
    idp.stop().await;
}

#[tokio::test]
async fn server_errors_alternate_500_and_503() {
    let idp = Running::start().await;
    idp.control(json!({"error_rate": 1})).await;
    let mut statuses = Vec::new();
    for _ in 0..4 {
        let response = idp.token().await.unwrap();
        statuses.push(response.status().as_u16());
        let body: Value = response.json().await.unwrap();
        assert_eq!(body, json!({"error": "server_error"}));
    }
    assert_eq!(statuses, [500, 503, 500, 503]);
    let stats = idp.stats().await;
    assert_eq!(stats.server_errors, 4);
    assert_eq!((stats.by_status[&500], stats.by_status[&503]), (2, 2));
    idp.stop().await;
}

#[tokio::test]
async fn hang_is_ended_by_the_client_timeout_and_shutdown_still_completes() {
    let idp = Running::start().await;
    idp.control(json!({"hang_rate": 1.0})).await;

    let impatient = reqwest::Client::builder()
        .timeout(Duration::from_millis(300))
        .build()
        .unwrap();
    let error = idp.token_with(&impatient).send().await.unwrap_err();
    assert!(error.is_timeout(), "{error:?}");

    // A patient client would wait for ever; stopping the server lets it go.
    let patient = tokio::spawn(idp.token_with(&reqwest::Client::new()).send());
    while idp.idp.stats().hangs < 2 {
        tokio::task::yield_now().await;
    }
    let stats = idp.stats().await;
    assert_eq!((stats.token_requests, stats.hangs), (2, 2));
    assert!(stats.by_status.is_empty(), "{stats:?}");
    idp.stop().await;
    let error = patient.await.unwrap().unwrap_err();
    assert!(!error.is_timeout(), "{error:?}");
}

#[tokio::test]
async fn shutdown_lets_in_flight_requests_finish() {
    let idp = Running::start().await;
    idp.idp.set_latency(Duration::from_millis(300));
    let in_flight = tokio::spawn(idp.token_with(&reqwest::Client::new()).send());
    while idp.idp.token_requests() < 1 {
        tokio::task::yield_now().await;
    }
    idp.stop().await;
    assert_token(in_flight.await.unwrap().unwrap()).await;
}

#[tokio::test]
async fn throttles_in_both_styles() {
    let idp = Running::start().await;
    idp.control(json!({"rate_limit_per_sec": 1})).await;
    assert_token(idp.token().await.unwrap()).await;

    let throttled = idp.token().await.unwrap();
    assert_eq!(throttled.status(), 429);
    assert_eq!(throttled.headers()["retry-after"], "1");
    assert_eq!(
        throttled.headers()["content-type"],
        "application/json;charset=UTF-8"
    );
    assert_eq!(
        throttled.json::<Value>().await.unwrap(),
        json!({"error": "too_many_requests", "error_description": "Rate exceeded"})
    );

    let answer = idp
        .control(json!({"throttle_style": "cognito400"}))
        .await
        .json::<Value>()
        .await
        .unwrap();
    assert_eq!(answer["throttle_style"], "cognito400");
    assert_eq!(answer["rate_limit_per_sec"], 1);
    let throttled = idp.token().await.unwrap();
    assert_eq!(throttled.status(), 400);
    assert!(throttled.headers().get("retry-after").is_none());
    assert_eq!(
        throttled.json::<Value>().await.unwrap(),
        json!({"error": "TooManyRequestsException", "error_description": "Rate exceeded"})
    );

    // A second later the bucket holds a token again.
    idp.clock.advance_millis(1000);
    assert_token(idp.token().await.unwrap()).await;
    let stats = idp.stats().await;
    assert_eq!((stats.throttled, stats.tokens_issued), (2, 2));
    assert_eq!((stats.by_status[&429], stats.by_status[&400]), (1, 1));
    idp.stop().await;
}

/// Sends `count` requests one after the other, `interval_millis` apart on
/// the IdP's clock; returns how many were throttled.
async fn paced(idp: &Running, count: u32, interval_millis: u64) -> u32 {
    let mut throttled = 0;
    for _ in 0..count {
        let response = idp.token().await.unwrap();
        match response.status().as_u16() {
            200 => {}
            429 => throttled += 1,
            other => panic!("status {other}"),
        }
        idp.clock.advance_millis(interval_millis);
    }
    throttled
}

#[tokio::test]
async fn below_the_rate_limit_is_never_throttled() {
    let idp = Running::start().await;
    idp.idp.apply(&ControlUpdate {
        rate_limit_per_sec: Some(50),
        ..ControlUpdate::default()
    });
    // 40 a second: the 40 of the first second, then nine more seconds of
    // them, well past the burst.
    assert_eq!(paced(&idp, 40, 25).await, 0);
    assert_eq!(paced(&idp, 360, 25).await, 0);
    let stats = idp.stats().await;
    assert_eq!(stats.throttled, 0);
    assert!(!stats.by_status.contains_key(&429), "{stats:?}");
    assert_eq!(stats.tokens_issued, 400);
    idp.stop().await;
}

#[tokio::test]
async fn above_the_rate_limit_is_throttled() {
    let idp = Running::start().await;
    idp.control(json!({"rate_limit_per_sec": 50})).await;
    // 100 a second for four seconds: the burst of 50, then 50 a second.
    let throttled = paced(&idp, 400, 10).await;
    assert!((145..=155).contains(&throttled), "{throttled}");
    assert_eq!(u64::from(throttled), idp.stats().await.throttled);
    idp.stop().await;
}

#[tokio::test]
async fn a_burst_gets_the_rate_and_healthy_lifts_the_limit() {
    let idp = Running::start().await;
    idp.control(json!({"rate_limit_per_sec": 50})).await;
    let burst: Vec<_> = (0..200)
        .map(|_| tokio::spawn(idp.token_with(&idp.http).send()))
        .collect();
    let mut statuses = Vec::new();
    for request in burst {
        statuses.push(request.await.unwrap().unwrap().status().as_u16());
    }
    let ok = statuses.iter().filter(|status| **status == 200).count();
    let throttled = statuses.iter().filter(|status| **status == 429).count();
    // The clock stands still: exactly the burst gets through.
    assert_eq!((ok, throttled), (50, 150));

    let settings = idp
        .control(serde_json::to_value(ControlUpdate::healthy()).unwrap())
        .await
        .json::<Value>()
        .await
        .unwrap();
    assert_eq!(settings["rate_limit_per_sec"], Value::Null);
    assert_eq!(paced(&idp, 100, 0).await, 0);
    idp.stop().await;
}

#[tokio::test]
async fn healthy_turns_every_fault_off() {
    let idp = Running::start().await;
    let faulty = idp
        .control(json!({
            "rate_limit_per_sec": 1, "throttle_style": "cognito400",
            "error_rate": 1, "reset_rate": 1, "garbage_rate": 1, "hang_rate": 1,
        }))
        .await;
    assert_eq!(faulty.status(), 200);
    let settings = idp.idp.apply(&ControlUpdate::healthy());
    assert_eq!(settings.rate_limit_per_sec, None);
    assert_eq!(settings.throttle_style, ThrottleStyle::Cognito400);
    for _ in 0..5 {
        assert_token(idp.token().await.unwrap()).await;
    }
    let stats = idp.stats().await;
    assert_eq!(
        (
            stats.throttled,
            stats.resets,
            stats.hangs,
            stats.server_errors,
            stats.garbage
        ),
        (0, 0, 0, 0, 0)
    );
    idp.stop().await;
}

#[tokio::test]
async fn control_refuses_a_share_out_of_range() {
    let idp = Running::start().await;
    let before = idp.idp.settings();
    for body in [
        json!({"error_rate": 1.5}),
        json!({"reset_rate": -0.1}),
        json!({"hang_rate": 0.5, "garbage_rate": 2}),
        json!({"throttle_style": "http503"}),
    ] {
        let answer = idp.control(body.clone()).await;
        assert_eq!(answer.status(), 400, "{body}");
        let error: Value = answer.json().await.unwrap();
        assert_eq!(error["error"], "invalid_request", "{body}");
    }
    assert_eq!(idp.idp.settings(), before);
    idp.stop().await;
}

#[tokio::test]
async fn serves_http2_by_prior_knowledge() {
    let idp = Running::start().await;
    let h2 = reqwest::Client::builder()
        .http2_prior_knowledge()
        .build()
        .unwrap();
    let response = idp.token_with(&h2).send().await.unwrap();
    assert_eq!(response.version(), reqwest::Version::HTTP_2);
    assert_token(response).await;

    // A reset on HTTP/2 resets the stream; the connection lives on.
    idp.idp.apply(&ControlUpdate {
        reset_rate: Some(1.0),
        ..ControlUpdate::default()
    });
    let error = idp.token_with(&h2).send().await.unwrap_err();
    assert!(!error.is_timeout(), "{error:?}");
    idp.idp.apply(&ControlUpdate::healthy());
    assert_token(idp.token_with(&h2).send().await.unwrap()).await;
    idp.stop().await;
}
