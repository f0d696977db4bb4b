//! Secret hygiene: a scenario at the most verbose log level (hits, misses,
//! refused and malformed requests, an upstream failure, a shared-store
//! outage, a purge). Nothing the proxy says (logs, metrics, error bodies,
//! the raw shared store) holds a client secret, an access token or an
//! Authorization header value.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::io::Write;
use std::sync::{Arc, Mutex};

use tokencache_core::{EncryptionKey, KeyRing};
use tokencache_memory_store::InProcessSharedStore;
use tokencache_mock_idp::{ClientRecord, ControlUpdate, MockIdp, MockIdpConfig};
use tokencache_proxy::SharedStoreConfig;
use tokencache_test_support::{ADMIN_TOKEN, FlakyStore, ManualClock, MockIdpServer, ProxyServer};

const SECRET: &str = "Sup3r-s3cret-Value-9f2a";
const BAD_SECRET: &str = "Wr0ng-s3cret-Value-77c1";

/// Every log line of this test process, at TRACE for every crate.
#[derive(Clone, Default)]
struct Captured(Arc<Mutex<Vec<u8>>>);

impl Write for Captured {
    fn write(&mut self, bytes: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(bytes);
        Ok(bytes.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

#[tokio::test]
async fn nothing_secret_leaves_the_proxy() {
    let captured = Captured::default();
    let writer = captured.clone();
    tracing_subscriber::fmt()
        .with_max_level(tracing::Level::TRACE)
        .with_writer(move || writer.clone())
        .with_ansi(false)
        .init();

    let clock = ManualClock::starting_now();
    let idp = MockIdpServer::start_with(MockIdp::with_clock(
        MockIdpConfig {
            clients: vec![ClientRecord::new(
                "hygiene-client",
                SECRET,
                ["api/read", "api/write"],
            )],
            ..MockIdpConfig::default()
        },
        Arc::new(clock.clone()),
    ))
    .await;
    let store = InProcessSharedStore::new(Arc::new(clock.clone()));
    let flaky = FlakyStore::new(store.clone());
    let down = flaky.switch();
    let flaky = Arc::new(flaky);
    let mut config = ProxyServer::config_for(&idp);
    config.shared_store = Some(SharedStoreConfig::new(
        flaky,
        KeyRing::new(EncryptionKey::from_bytes([9; 32]), vec![]),
    ));
    let proxy = ProxyServer::start(config, clock.clone()).await;

    let mut secrets: Vec<String> = vec![SECRET.into(), BAD_SECRET.into()];
    let mut bodies = Vec::new();
    let cc = "grant_type=client_credentials";
    // Misses, hits, body credentials, a wrong secret (twice: the second
    // from the negative cache), malformed requests.
    for (id, secret, body) in [
        ("hygiene-client", SECRET, format!("{cc}&scope=api/read")),
        ("hygiene-client", SECRET, format!("{cc}&scope=api/read")),
        ("hygiene-client", BAD_SECRET, cc.to_owned()),
        ("hygiene-client", BAD_SECRET, cc.to_owned()),
        (
            "hygiene-client",
            SECRET,
            format!("{cc}&scope=api/write&scope=api/read"),
        ),
    ] {
        let response = proxy.token_request(id, secret, &body).await;
        let text = response.text().await.unwrap();
        if let Ok(json) = serde_json::from_str::<serde_json::Value>(&text)
            && let Some(token) = json["access_token"].as_str()
        {
            secrets.push(token.to_owned());
        }
        bodies.push(text);
    }
    let in_body = proxy
        .http
        .post(proxy.token_url())
        .header("content-type", "application/x-www-form-urlencoded")
        .body(format!(
            "{cc}&scope=api/write&client_id=hygiene-client&client_secret={SECRET}"
        ))
        .send()
        .await
        .unwrap();
    let json: serde_json::Value = in_body.json().await.unwrap();
    secrets.push(json["access_token"].as_str().unwrap().to_owned());
    let broken = proxy
        .http
        .post(proxy.token_url())
        .header("content-type", "application/x-www-form-urlencoded")
        .header("authorization", format!("Basic {SECRET}"))
        .body(cc)
        .send()
        .await
        .unwrap();
    bodies.push(broken.text().await.unwrap());

    // The store goes away; the upstream fails; tokens are still served.
    down.set_down(true);
    idp.idp.apply(&ControlUpdate {
        error_rate: Some(1.0),
        ..ControlUpdate::default()
    });
    for scope in ["api/read", "api/read+api/write"] {
        let response = proxy
            .token_request("hygiene-client", SECRET, &format!("{cc}&scope={scope}"))
            .await;
        bodies.push(response.text().await.unwrap());
    }
    down.set_down(false);
    idp.idp.apply(&ControlUpdate::healthy());
    let purge = proxy
        .http
        .delete(proxy.admin_url("/cache?client_id=hygiene-client"))
        .bearer_auth(ADMIN_TOKEN)
        .send()
        .await
        .unwrap();
    assert_eq!(purge.status(), 200);
    let refetched = proxy
        .token_request("hygiene-client", SECRET, &format!("{cc}&scope=api/read"))
        .await;
    let json: serde_json::Value = refetched.json().await.unwrap();
    secrets.push(json["access_token"].as_str().unwrap().to_owned());

    use base64::Engine as _;
    for (id, secret) in [("hygiene-client", SECRET), ("hygiene-client", BAD_SECRET)] {
        secrets.push(base64::engine::general_purpose::STANDARD.encode(format!("{id}:{secret}")));
    }
    secrets.push(ADMIN_TOKEN.to_owned());

    let metrics = proxy.metrics().await;
    let raw_store: Vec<String> = store
        .raw_entries()
        .into_iter()
        .map(|(key, value)| format!("{key} {}", String::from_utf8_lossy(&value)))
        .collect();
    let logs = String::from_utf8_lossy(&captured.0.lock().unwrap()).into_owned();
    assert!(
        logs.contains("token fetched and cached"),
        "the scenario was logged"
    );
    assert!(
        logs.contains("shared store failed"),
        "the outage was logged"
    );
    for secret in &secrets {
        assert!(
            !logs.contains(secret.as_str()),
            "the logs hold a secret ({} chars)",
            secret.len()
        );
        assert!(
            !metrics.contains(secret.as_str()),
            "the metrics hold a secret"
        );
        for body in &bodies {
            assert!(
                !body.contains(secret.as_str()) || body.contains("access_token"),
                "an error body holds a secret: {body}"
            );
        }
        for entry in &raw_store {
            assert!(
                !entry.contains(secret.as_str()),
                "the shared store holds a secret"
            );
        }
    }
    // The JWT segments of the tokens are not in the logs either.
    for token in secrets.iter().filter(|s| s.matches('.').count() == 2) {
        let payload = token.split('.').nth(1).unwrap();
        assert!(!logs.contains(&payload[..24]));
    }
}
