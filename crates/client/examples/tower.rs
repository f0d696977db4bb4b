//! A hyper client wrapped in `BearerLayer`: every request gets
//! `Authorization: Bearer <token>` from a cached, refreshed-ahead
//! `ClientCredentials` source. The same layer fits tonic channels.
//!
//! ```text
//! cargo run -p tokencache-client --features tower --example tower
//! ```
//!
//! It starts a mock Cognito token endpoint and a small API on loopback.
#![allow(clippy::print_stdout)]

use std::error::Error;

use axum::Router;
use axum::http::{HeaderMap, StatusCode, header};
use bytes::Bytes;
use http_body_util::{BodyExt as _, Full};
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;
use tokencache_client::{BearerLayer, ClientCredentials};
use tokencache_mock_idp::{MockIdp, MockIdpConfig};
use tower::{ServiceBuilder, ServiceExt as _};

#[tokio::main]
async fn main() -> Result<(), Box<dyn Error + Send + Sync>> {
    let (idp, token_url, api_url) = start_demo_servers().await?;

    let source = ClientCredentials::builder()
        .token_url(token_url)
        .client_id("demo-client")
        .client_secret("demo-secret")
        .scopes(["api/read", "api/write"])
        .build()?;

    let http = Client::builder(TokioExecutor::new()).build_http::<Full<Bytes>>();
    let client = ServiceBuilder::new()
        .layer(BearerLayer::new(source))
        .service(http);

    for attempt in 1..=3 {
        let request = http::Request::get(&api_url).body(Full::new(Bytes::new()))?;
        // `oneshot` waits for readiness, then calls; the service is cheap to
        // clone (it shares the source and hyper's pool).
        let answer = client.clone().oneshot(request).await?;
        let status = answer.status();
        let body = answer.into_body().collect().await?.to_bytes();
        println!(
            "call {attempt}: {status} {}",
            String::from_utf8_lossy(&body)
        );
    }
    println!("token requests to the IdP: {}", idp.token_requests());
    Ok(())
}

/// The mock IdP and an API that checks its tokens, on loopback.
async fn start_demo_servers() -> Result<(MockIdp, String, String), Box<dyn Error + Send + Sync>> {
    let idp = MockIdp::new(MockIdpConfig::default());
    let idp_listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let token_url = format!("http://{}/oauth2/token", idp_listener.local_addr()?);
    tokio::spawn(idp.clone().serve(idp_listener, std::future::pending()));

    let verifier = idp.clone();
    let app = Router::new().fallback(move |headers: HeaderMap| async move {
        let bearer = headers
            .get(header::AUTHORIZATION)
            .and_then(|value| value.to_str().ok())
            .and_then(|value| value.strip_prefix("Bearer "));
        match bearer.map(|token| verifier.verify_access_token(token)) {
            Some(Ok(claims)) => (StatusCode::OK, format!("scopes: {}", claims["scope"])),
            _ => (StatusCode::UNAUTHORIZED, "no valid token".to_owned()),
        }
    });
    let api_listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let api_url = format!("http://{}/orders", api_listener.local_addr()?);
    tokio::spawn(async move { axum::serve(api_listener, app).await });
    Ok((idp, token_url, api_url))
}
