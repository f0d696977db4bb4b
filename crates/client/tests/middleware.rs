//! End-to-end: `BearerMiddleware` in a `reqwest-middleware` client, against
//! the mock IdP and a small API, all over real sockets.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use common::{FakeSource, TestApi, demo_source};
use reqwest_middleware::ClientBuilder;
use tokencache_client::{BearerMiddleware, TokenOptions};
use tokencache_mock_idp::MockIdpConfig;
use tokencache_test_support::MockIdpServer;

#[tokio::test]
async fn a_401_drops_the_token_and_retries_once_with_a_fresh_one() {
    let idp = MockIdpServer::start(MockIdpConfig::default()).await;
    let api = TestApi::start().await;
    let source = demo_source(&idp.token_url()).build().unwrap();
    let client = ClientBuilder::new(reqwest::Client::new())
        .with(BearerMiddleware::new(source.clone()))
        .build();

    let answer = client
        .post(api.url("/orders"))
        .body("a clonable body")
        .send()
        .await
        .unwrap();
    assert_eq!(answer.status(), 200);
    assert_eq!(answer.text().await.unwrap(), "ok");

    let seen = api.seen();
    assert_eq!(seen.len(), 2, "the refused request was sent again once");
    assert_ne!(seen[0], seen[1], "with a new token");
    assert_eq!(idp.idp.token_requests(), 2);
    assert_eq!(
        source.token().await.unwrap().secret(),
        seen[1],
        "which is cached"
    );

    // The next request uses the cached token: no fetch, no retry.
    let answer = client.get(api.url("/orders")).send().await.unwrap();
    assert_eq!(answer.status(), 200);
    assert_eq!(api.hits(), 3);
    assert_eq!(idp.idp.token_requests(), 2);
}

#[tokio::test]
async fn a_second_401_is_returned_not_retried_again() {
    let idp = MockIdpServer::start(MockIdpConfig::default()).await;
    let api = TestApi::start().await;
    api.refuse_all();
    let source = demo_source(&idp.token_url()).build().unwrap();
    let client = ClientBuilder::new(reqwest::Client::new())
        .with(BearerMiddleware::new(source))
        .build();

    let answer = client.get(api.url("/orders")).send().await.unwrap();
    assert_eq!(answer.status(), 401);
    assert_eq!(api.hits(), 2);
}

#[tokio::test]
async fn a_token_error_is_a_middleware_error() {
    let idp = MockIdpServer::start(MockIdpConfig::default()).await;
    let api = TestApi::start().await;
    let source = demo_source(&idp.token_url())
        .client_secret("wrong")
        .build()
        .unwrap();
    let client = ClientBuilder::new(reqwest::Client::new())
        .with(BearerMiddleware::new(source))
        .build();

    let error = client.get(api.url("/orders")).send().await.unwrap_err();
    assert!(error.is_middleware());
    assert!(error.to_string().contains("invalid_client"), "{error}");
    assert_eq!(api.hits(), 0);
}

#[tokio::test]
async fn any_source_with_per_request_options() {
    let api = TestApi::start().await;
    let source = FakeSource::new("bearer");
    let client = ClientBuilder::new(reqwest::Client::new())
        .with(BearerMiddleware::new(source.clone()))
        .build();
    let options = TokenOptions::new()
        .scopes(["orders/write"])
        .resource("https://orders.example");

    let answer = client
        .post(api.url("/orders"))
        .with_extension(options.clone())
        .body("a clonable body")
        .send()
        .await
        .unwrap();
    assert_eq!(answer.status(), 200);
    // `bearer` from the source, sent as `Bearer`; the refused token
    // reported to the source, and the resend asked with the same options.
    assert_eq!(api.seen(), ["fake1", "fake2"]);
    assert_eq!(*source.refused.lock().unwrap(), ["fake1"]);
    assert_eq!(*source.asked.lock().unwrap(), [options.clone(), options]);
}
