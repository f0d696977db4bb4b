//! Property: whatever the mix of clients, scopes and parameters, the order
//! and the concurrency, every token a client receives was issued for
//! exactly that client, those scopes and those parameters (read from the
//! mock IdP's JWT claims).
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::BTreeSet;
use std::sync::Arc;

use proptest::prelude::*;
use serde_json::Value;
use tokencache_mock_idp::{ClientRecord, MockIdpConfig, decode_claims_unverified};
use tokencache_test_support::{ManualClock, MockIdpServer, ProxyServer};

const CLIENTS: [(&str, &str, &[&str]); 3] = [
    ("demo-client", "demo-secret", &["api/read", "api/write"]),
    (
        "other-client",
        "other-secret",
        &["api/read", "api/write", "api/admin"],
    ),
    ("third client", "third+secret", &["api/read", "api/admin"]),
];

/// One token request: which client, which scopes (in the order sent, maybe
/// repeated), which extra parameters, and where the credentials go.
#[derive(Debug, Clone)]
struct Ask {
    client: usize,
    scopes: Vec<&'static str>,
    resource: Option<&'static str>,
    metadata: Option<&'static str>,
    in_body: bool,
}

fn ask() -> impl Strategy<Value = Ask> {
    (
        0..CLIENTS.len(),
        proptest::collection::vec(
            proptest::sample::select(&["api/read", "api/write", "api/admin"][..]),
            0..4,
        ),
        proptest::option::of(proptest::sample::select(
            &["https://a.example", "https://b.example"][..],
        )),
        proptest::option::of(proptest::sample::select(
            &[r#"{"t":"1"}"#, r#"{"t":"2"}"#][..],
        )),
        any::<bool>(),
    )
        .prop_map(|(client, scopes, resource, metadata, in_body)| {
            let allowed = CLIENTS[client].2;
            Ask {
                client,
                scopes: scopes.into_iter().filter(|s| allowed.contains(s)).collect(),
                resource,
                metadata,
                in_body,
            }
        })
}

fn encode(text: &str) -> String {
    text.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'.' | b'_' | b'~' => {
                char::from(b).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect()
}

async fn send(proxy: &ProxyServer, ask: &Ask) -> Value {
    let (id, secret, _) = CLIENTS[ask.client];
    let mut body = "grant_type=client_credentials".to_owned();
    if !ask.scopes.is_empty() {
        body.push_str(&format!("&scope={}", encode(&ask.scopes.join(" "))));
    }
    if let Some(resource) = ask.resource {
        body.push_str(&format!("&resource={}", encode(resource)));
    }
    if let Some(metadata) = ask.metadata {
        body.push_str(&format!("&aws_client_metadata={}", encode(metadata)));
    }
    let mut request = proxy
        .http
        .post(proxy.token_url())
        .header("content-type", "application/x-www-form-urlencoded");
    if ask.in_body {
        body.push_str(&format!(
            "&client_id={}&client_secret={}",
            encode(id),
            encode(secret)
        ));
    } else {
        // RFC 6749 §2.3.1: form-encode, then base64.
        use base64::Engine as _;
        let pair = format!("{}:{}", encode(id), encode(secret));
        let basic = base64::engine::general_purpose::STANDARD.encode(pair);
        request = request.header("authorization", format!("Basic {basic}"));
    }
    let response = request.body(body).send().await.unwrap();
    assert_eq!(response.status(), 200, "{ask:?}");
    response.json().await.unwrap()
}

fn check(ask: &Ask, answer: &Value) {
    let (id, _, allowed) = CLIENTS[ask.client];
    let claims = decode_claims_unverified(answer["access_token"].as_str().unwrap()).unwrap();
    assert_eq!(claims["client_id"], id, "{ask:?}");
    let granted: BTreeSet<&str> = claims["scope"].as_str().unwrap().split(' ').collect();
    let asked: BTreeSet<&str> = if ask.scopes.is_empty() {
        allowed.iter().copied().collect()
    } else {
        ask.scopes.iter().copied().collect()
    };
    assert_eq!(granted, asked, "{ask:?}");
    assert_eq!(
        claims.get("aud").and_then(Value::as_str),
        ask.resource,
        "{ask:?}"
    );
    assert_eq!(
        claims.get("client_metadata").and_then(Value::as_str),
        ask.metadata,
        "{ask:?}"
    );
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 12, ..ProptestConfig::default() })]

    #[test]
    fn every_token_belongs_to_exactly_its_request(
        asks in proptest::collection::vec(ask(), 1..40),
        batch in 1usize..12,
    ) {
        let runtime = tokio::runtime::Runtime::new().unwrap();
        runtime.block_on(async {
            let idp = MockIdpServer::start(MockIdpConfig {
                clients: CLIENTS
                    .iter()
                    .map(|(id, secret, scopes)| ClientRecord::new(*id, *secret, scopes.iter().copied()))
                    .collect(),
                ..MockIdpConfig::default()
            })
            .await;
            let proxy = Arc::new(ProxyServer::start_for(&idp, ManualClock::starting_now()).await);
            // Each request twice (the second from cache), in concurrent
            // batches of random size.
            let all: Vec<Ask> = asks.iter().chain(asks.iter()).cloned().collect();
            for chunk in all.chunks(batch) {
                let tasks: Vec<_> = chunk
                    .iter()
                    .cloned()
                    .map(|ask| {
                        let proxy = Arc::clone(&proxy);
                        tokio::spawn(async move {
                            let answer = send(&proxy, &ask).await;
                            (ask, answer)
                        })
                    })
                    .collect();
                for task in tasks {
                    let (ask, answer) = task.await.unwrap();
                    check(&ask, &answer);
                }
            }
        });
    }
}
