//! End-to-end: `BearerLayer` around a hyper client, against the mock IdP
//! and a small API, all over real sockets.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use bytes::Bytes;
use http_body_util::{BodyExt as _, Full};
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;
use tokencache_client::{BearerLayer, TokenOptions};
use tokencache_mock_idp::MockIdpConfig;
use tokencache_test_support::MockIdpServer;
use tower::{ServiceBuilder, ServiceExt as _};

use common::{FakeSource, TestApi, demo_source};

#[tokio::test]
async fn sets_the_header_and_drops_a_refused_token_without_resending() {
    let idp = MockIdpServer::start(MockIdpConfig::default()).await;
    let api = TestApi::start().await;
    let source = demo_source(&idp.token_url()).build().unwrap();
    let http = Client::builder(TokioExecutor::new()).build_http::<Full<Bytes>>();
    let client = ServiceBuilder::new()
        .layer(BearerLayer::new(source.clone()))
        .service(http);
    let request = || {
        http::Request::get(api.url("/orders"))
            .body(Full::new(Bytes::new()))
            .unwrap()
    };

    // The API refuses the first token: the 401 comes back as is...
    let answer = client.clone().oneshot(request()).await.unwrap();
    assert_eq!(answer.status(), 401);
    assert_eq!(api.hits(), 1);

    // ...and the next request carries a fresh token.
    let answer = client.clone().oneshot(request()).await.unwrap();
    assert_eq!(answer.status(), 200);
    let body = answer.into_body().collect().await.unwrap().to_bytes();
    assert_eq!(body, "ok");
    let seen = api.seen();
    assert_eq!(seen.len(), 2);
    assert_ne!(seen[0], seen[1]);
    assert_eq!(idp.idp.token_requests(), 2);
    assert_eq!(source.token().await.unwrap().secret(), seen[1]);
}

#[tokio::test]
async fn a_token_error_is_the_service_error() {
    let idp = MockIdpServer::start(MockIdpConfig::default()).await;
    let api = TestApi::start().await;
    let source = demo_source(&idp.token_url())
        .client_secret("wrong")
        .build()
        .unwrap();
    let http = Client::builder(TokioExecutor::new()).build_http::<Full<Bytes>>();
    let client = ServiceBuilder::new()
        .layer(BearerLayer::new(source))
        .service(http);

    let request = http::Request::get(api.url("/"))
        .body(Full::new(Bytes::new()))
        .unwrap();
    let error = client.oneshot(request).await.unwrap_err();
    let error = error.downcast::<tokencache_client::Error>().unwrap();
    assert!(matches!(*error, tokencache_client::Error::OAuth { .. }));
    assert_eq!(api.hits(), 0);
}

#[tokio::test]
async fn any_source_the_token_type_as_scheme_and_per_request_options() {
    let source = FakeSource::new("DPoP");
    // The API refuses the first token; it echoes the header it got.
    let api = tower::service_fn(|request: http::Request<()>| async move {
        let header = request.headers()[http::header::AUTHORIZATION]
            .to_str()
            .unwrap()
            .to_owned();
        let status = if header.ends_with("fake1") { 401 } else { 200 };
        let answer = http::Response::builder()
            .status(status)
            .body(header)
            .unwrap();
        Ok::<_, std::convert::Infallible>(answer)
    });
    let client = ServiceBuilder::new()
        .layer(BearerLayer::new(source.clone()))
        .service(api);

    let mut request = http::Request::new(());
    let options = TokenOptions::new().scopes(["orders/write"]);
    request.extensions_mut().insert(options.clone());
    let answer = client.clone().oneshot(request).await.unwrap();
    assert_eq!(answer.status(), 401);
    assert_eq!(answer.body(), "DPoP fake1");
    assert_eq!(*source.refused.lock().unwrap(), ["fake1"]);

    let answer = client.oneshot(http::Request::new(())).await.unwrap();
    assert_eq!(answer.status(), 200);
    assert_eq!(answer.body(), "DPoP fake2");
    assert_eq!(
        *source.asked.lock().unwrap(),
        [options, TokenOptions::default()]
    );
}
