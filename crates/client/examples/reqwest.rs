//! A `reqwest` client that sends a bearer token with every request, with
//! tokens from a cached, refreshed-ahead `ClientCredentials` source.
//!
//! ```text
//! cargo run -p tokencache-client --features middleware --example reqwest
//! ```
//!
//! It starts a mock Cognito token endpoint and a small API on loopback, and
//! calls the API a few times: one token request serves them all. To use a
//! real endpoint instead, set `TOKEN_URL`, `CLIENT_ID`, `CLIENT_SECRET`,
//! `SCOPE` and `API_URL` (the mock API is then not started).
#![allow(clippy::print_stdout)]

use std::error::Error;

use axum::Router;
use axum::http::{HeaderMap, StatusCode, header};
use reqwest_middleware::ClientBuilder;
use tokencache_client::{BearerMiddleware, ClientCredentials};
use tokencache_mock_idp::{MockIdp, MockIdpConfig};

#[tokio::main]
async fn main() -> Result<(), Box<dyn Error>> {
    let (settings, idp) = match Settings::from_env() {
        Some(settings) => (settings, None),
        None => {
            let (settings, idp) = Settings::local_demo().await?;
            (settings, Some(idp))
        }
    };

    // Build the source once; clone it wherever tokens are needed.
    let source = ClientCredentials::builder()
        .token_url(&settings.token_url)
        .client_id(&settings.client_id)
        .client_secret(settings.client_secret)
        .scopes(settings.scope.split_whitespace())
        .build()?;

    // Give the middleware a client that talks only to the API the token is
    // for: every request through it carries the token.
    let api = ClientBuilder::new(reqwest::Client::new())
        .with(BearerMiddleware::new(source.clone()))
        .build();

    for attempt in 1..=3 {
        let answer = api.get(&settings.api_url).send().await?;
        let status = answer.status();
        println!("call {attempt}: {status} {}", answer.text().await?);
    }

    let token = source.token().await?;
    let lifetime = token
        .expires_at()
        .duration_since(token.fetched_at())
        .unwrap_or_default();
    println!(
        "token: {} scopes {:?}, good for {lifetime:?} (the token itself stays secret: {token:?})",
        token.token_type(),
        token.scopes(),
    );
    if let Some(idp) = idp {
        println!("token requests to the IdP: {}", idp.token_requests());
    }
    Ok(())
}

struct Settings {
    token_url: String,
    client_id: String,
    client_secret: String,
    scope: String,
    api_url: String,
}

impl Settings {
    fn from_env() -> Option<Self> {
        let var = |name| std::env::var(name).ok();
        Some(Self {
            token_url: var("TOKEN_URL")?,
            client_id: var("CLIENT_ID")?,
            client_secret: var("CLIENT_SECRET")?,
            scope: var("SCOPE").unwrap_or_default(),
            api_url: var("API_URL")?,
        })
    }

    /// The mock IdP and an API that checks its tokens, on loopback.
    async fn local_demo() -> Result<(Self, MockIdp), Box<dyn Error>> {
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
                Some(Ok(claims)) => (StatusCode::OK, format!("hello, {}", claims["client_id"])),
                _ => (StatusCode::UNAUTHORIZED, "no valid token".to_owned()),
            }
        });
        let api_listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
        let api_url = format!("http://{}/orders", api_listener.local_addr()?);
        tokio::spawn(async move { axum::serve(api_listener, app).await });

        let settings = Self {
            token_url,
            client_id: "demo-client".to_owned(),
            client_secret: "demo-secret".to_owned(),
            scope: "api/read".to_owned(),
            api_url,
        };
        Ok((settings, idp))
    }
}
