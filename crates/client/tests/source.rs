//! End-to-end: the token source against the mock IdP over real sockets.
//!
//! Token lifetimes run on a manual clock shared by the IdP and the source,
//! so "80 seconds later" takes no time; only backoff delays (a second each,
//! where the endpoint asks for it with `Retry-After`) are real.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::time::Duration;

use common::{ThrottlingFront, client_clock, demo_source, eventually, idp_on, quick_backoff};
use tokencache_client::{AuthMethod, Error, MinRemaining, TokenOptions};
use tokencache_mock_idp::{ControlUpdate, MockIdpConfig, decode_claims_unverified};
use tokencache_test_support::{ManualClock, MockIdpServer};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_thousand_concurrent_callers_cause_one_request() {
    let idp = MockIdpServer::start(MockIdpConfig::default()).await;
    // A slow answer, so that every caller arrives while the fetch runs.
    idp.idp.set_latency(Duration::from_millis(200));
    let source = demo_source(&idp.token_url()).build().unwrap();

    let callers: Vec<_> = (0..1000)
        .map(|_| {
            let source = source.clone();
            tokio::spawn(async move { source.token().await })
        })
        .collect();
    let mut secrets = Vec::with_capacity(callers.len());
    for caller in callers {
        secrets.push(caller.await.unwrap().unwrap().secret().to_owned());
    }

    assert_eq!(idp.idp.token_requests(), 1);
    assert!(secrets.iter().all(|secret| *secret == secrets[0]));
    let claims = idp.idp.verify_access_token(&secrets[0]).unwrap();
    assert_eq!(claims["scope"], "api/read");
}

#[tokio::test]
async fn a_caller_that_gives_up_does_not_cancel_the_fetch() {
    let idp = MockIdpServer::start(MockIdpConfig::default()).await;
    idp.idp.set_latency(Duration::from_millis(300));
    let source = demo_source(&idp.token_url()).build().unwrap();

    let impatient = tokio::time::timeout(Duration::from_millis(20), source.token()).await;
    assert!(impatient.is_err(), "the first caller gave up");
    // The next caller joins the fetch still in flight.
    source.token().await.unwrap();
    assert_eq!(idp.idp.token_requests(), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn aging_tokens_are_returned_at_once_and_refreshed_once_in_the_background() {
    let clock = ManualClock::starting_now();
    let idp = idp_on(&clock, Duration::from_secs(100)).await;
    let source = demo_source(&idp.token_url())
        .clock(client_clock(&clock))
        .refresh_jitter(0.0)
        .build()
        .unwrap();

    let first = source.token().await.unwrap();
    clock.advance(Duration::from_secs(50));
    assert_eq!(source.token().await.unwrap().secret(), first.secret());
    assert_eq!(idp.idp.token_requests(), 1, "fresh: no request");

    // Aging from 75 s. The refresh is slow, so every caller below would
    // have to wait for it if it were not returned the old token at once.
    idp.idp.set_latency(Duration::from_millis(500));
    clock.advance(Duration::from_secs(30));
    let callers: Vec<_> = (0..100)
        .map(|_| {
            let source = source.clone();
            tokio::spawn(async move { source.token().await })
        })
        .collect();
    for caller in callers {
        assert_eq!(caller.await.unwrap().unwrap().secret(), first.secret());
    }

    let mut refreshed = None;
    for _ in 0..1000 {
        let token = source.token().await.unwrap();
        if token.secret() != first.secret() {
            refreshed = Some(token);
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let refreshed = refreshed.expect("the background refresh replaced the token");
    assert_eq!(idp.idp.token_requests(), 2, "one background refresh");
    assert!(refreshed.expires_at() > first.expires_at());
    assert_eq!(
        refreshed
            .expires_at()
            .duration_since(refreshed.fetched_at())
            .unwrap(),
        Duration::from_secs(100)
    );
}

#[tokio::test]
async fn expired_tokens_are_not_served() {
    let clock = ManualClock::starting_now();
    let idp = idp_on(&clock, Duration::from_secs(100)).await;
    let source = demo_source(&idp.token_url())
        .clock(client_clock(&clock))
        .min_remaining(MinRemaining::Duration(Duration::from_secs(30)))
        .build()
        .unwrap();

    let first = source.token().await.unwrap();
    clock.advance(Duration::from_secs(70));
    let second = source.token().await.unwrap();
    assert_ne!(second.secret(), first.secret(), "waited for a new token");
    assert_eq!(idp.idp.token_requests(), 2);
}

#[tokio::test]
async fn stale_if_error_until_serve_until_then_an_error() {
    let clock = ManualClock::starting_now();
    let idp = idp_on(&clock, Duration::from_secs(100)).await;
    let source = demo_source(&idp.token_url())
        .clock(client_clock(&clock))
        .refresh_jitter(0.0)
        .backoff(quick_backoff(2))
        .build()
        .unwrap();
    let first = source.token().await.unwrap();

    idp.idp.apply(&ControlUpdate {
        error_rate: Some(1.0),
        ..ControlUpdate::default()
    });
    clock.advance(Duration::from_secs(80));
    assert_eq!(source.token().await.unwrap().secret(), first.secret());
    eventually("the background refresh's two attempts", || {
        idp.idp.token_requests() == 3
    })
    .await;

    clock.advance(Duration::from_secs(9));
    assert_eq!(
        source.token().await.unwrap().secret(),
        first.secret(),
        "still served at 89 s, after a failed refresh"
    );

    // Served until 90 % of the lifetime; then callers wait, and get the error.
    clock.advance(Duration::from_secs(1));
    let error = source.token().await.unwrap_err();
    assert!(
        matches!(&error, Error::OAuth { status: 500 | 503, error, .. } if error == "server_error"),
        "{error:?}"
    );
    assert!(error.is_retryable());

    // And it recovers.
    idp.idp.apply(&ControlUpdate::healthy());
    let recovered = source.token().await.unwrap();
    assert_ne!(recovered.secret(), first.secret());
}

#[tokio::test]
async fn throttling_is_retried_after_retry_after() {
    let front = ThrottlingFront::start().await;
    front.throttle_next(2);
    let source = demo_source(&front.token_url()).build().unwrap();

    let token = source.token().await.unwrap();
    assert_eq!(front.requests(), 3);
    assert_eq!(front.idp.token_requests(), 1);
    assert!(front.idp.verify_access_token(token.secret()).is_ok());
}

#[tokio::test]
async fn throttling_past_the_attempt_limit_is_a_throttled_error() {
    let front = ThrottlingFront::start().await;
    front.throttle_next(5);
    let source = demo_source(&front.token_url())
        .backoff(quick_backoff(2))
        .build()
        .unwrap();

    let error = source.token().await.unwrap_err();
    assert!(
        matches!(
            error,
            Error::Throttled { status: 429, retry_after: Some(after) }
                if after == Duration::from_secs(1)
        ),
        "{error:?}"
    );
    assert!(error.is_retryable());
    assert_eq!(front.requests(), 2);
}

#[tokio::test]
async fn a_refused_client_is_not_retried() {
    let idp = MockIdpServer::start(MockIdpConfig::default()).await;
    let source = demo_source(&idp.token_url())
        .client_secret("wrong-secret")
        .build()
        .unwrap();

    let error = source.token().await.unwrap_err();
    assert!(
        matches!(
            &error,
            Error::OAuth { status: 400, error, error_description: Some(_) } if error == "invalid_client"
        ),
        "{error:?}"
    );
    assert!(!error.is_retryable());
    assert_eq!(idp.idp.token_requests(), 1);
    let printed = format!("{error} {error:?}");
    assert!(!printed.contains("wrong-secret"), "{printed}");
}

#[tokio::test]
async fn body_authentication_and_extra_parameters() {
    let idp = MockIdpServer::start(MockIdpConfig::default()).await;
    let source = demo_source(&idp.token_url())
        .scopes(["api/write"])
        .auth_method(AuthMethod::Body)
        .param("aws_client_metadata", r#"{"tenant":"t1"}"#)
        .param("resource", "https://api.example")
        .build()
        .unwrap();

    let token = source.token().await.unwrap();
    let claims = decode_claims_unverified(token.secret()).unwrap();
    assert_eq!(claims["scope"], "api/read api/write");
    assert_eq!(claims["client_metadata"], r#"{"tenant":"t1"}"#);
    assert_eq!(claims["aud"], "https://api.example");
    assert_eq!(token.scopes(), ["api/read", "api/write"]);
}

#[tokio::test]
async fn per_call_scopes_and_resource_get_tokens_of_their_own() {
    let idp = MockIdpServer::start(MockIdpConfig::default()).await;
    let source = demo_source(&idp.token_url()).build().unwrap();
    let writer = || {
        TokenOptions::new()
            .scopes(["api/write"])
            .resource("https://api.example")
    };

    let usual = source.token().await.unwrap();
    let written = source.token_with(writer()).await.unwrap();
    let claims = decode_claims_unverified(written.secret()).unwrap();
    assert_eq!(claims["scope"], "api/write");
    assert_eq!(claims["aud"], "https://api.example");
    assert_eq!(written.scopes(), ["api/write"]);
    let usual_claims = decode_claims_unverified(usual.secret()).unwrap();
    assert_eq!(usual_claims["scope"], "api/read");

    // Each is cached apart.
    assert_eq!(source.token().await.unwrap().secret(), usual.secret());
    let again = source.token_with(writer()).await.unwrap();
    assert_eq!(again.secret(), written.secret());
    assert_eq!(idp.idp.token_requests(), 2);

    // A forced renewal fetches, once, and is what is cached next.
    let renewed = source
        .token_with(TokenOptions::new().force_refresh())
        .await
        .unwrap();
    assert_ne!(renewed.secret(), usual.secret());
    assert_eq!(source.token().await.unwrap().secret(), renewed.secret());
    assert_eq!(idp.idp.token_requests(), 3);
}

#[tokio::test]
async fn invalidate_drops_the_cached_token() {
    let idp = MockIdpServer::start(MockIdpConfig::default()).await;
    let source = demo_source(&idp.token_url()).build().unwrap();
    let first = source.token().await.unwrap();

    // Dropping a token that is no longer cached changes nothing...
    let second = {
        source.invalidate();
        source.token().await.unwrap()
    };
    source.invalidate_token(&first);
    assert_eq!(source.token().await.unwrap().secret(), second.secret());
    // ...dropping the cached one does.
    source.invalidate_token(&second);
    assert_ne!(source.token().await.unwrap().secret(), second.secret());
    assert_eq!(idp.idp.token_requests(), 3);
}

#[tokio::test]
async fn an_unreachable_endpoint_is_a_transport_error() {
    // Bind then drop, so the port is (almost certainly) closed.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let source = demo_source(&format!("http://127.0.0.1:{port}/oauth2/token"))
        .backoff(quick_backoff(2))
        .build()
        .unwrap();
    let error = source.token().await.unwrap_err();
    assert!(matches!(error, Error::Http { .. }), "{error:?}");
    assert!(error.is_retryable());
}

#[tokio::test]
async fn debug_output_holds_no_secret_and_no_token() {
    let idp = MockIdpServer::start(MockIdpConfig::default()).await;
    let source = demo_source(&idp.token_url()).build().unwrap();
    let token = source.token().await.unwrap();

    let printed = format!("{source:?} {token:?}");
    assert!(!printed.contains("demo-secret"), "{printed}");
    assert!(!printed.contains(token.secret()), "{printed}");
    assert!(printed.contains("demo-client"), "{printed}");
    assert!(printed.contains("[redacted]"), "{printed}");
}
