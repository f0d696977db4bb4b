//! Secret hygiene on Cognito's native API, as `secret_hygiene.rs` checks
//! the token endpoint: a scenario at the most verbose log level (sign-ins
//! from cache and not, a wrong password twice, a refresh, a challenge, a
//! client token, malformed and signed requests holding a password, an
//! upstream failure, a purge). No password, `SECRET_HASH`, refresh token,
//! client secret or token is in the logs, the metrics, the proxy's own
//! error bodies or the raw shared store; every "absent" has a positive
//! control showing the place was really looked at.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::io::Write;
use std::sync::{Arc, Mutex};

use serde_json::{Value, json};
use tokencache_core::{EncryptionKey, KeyRing};
use tokencache_memory_store::InProcessSharedStore;
use tokencache_mock_idp::{
    ClientRecord, ControlUpdate, MockIdp, MockIdpConfig, UserRecord, UserStatus, secret_hash,
};
use tokencache_proxy::SharedStoreConfig;
use tokencache_test_support::native::{self, TARGET_PREFIX};
use tokencache_test_support::{ADMIN_TOKEN, ManualClock, MockIdpServer, ProxyServer};

const CLIENT: &str = "hygiene-client";
const CLIENT_SECRET: &str = "Cl1ent-s3cret-Value-4b7e";
const USER: &str = "hygiene-user";
const PASSWORD: &str = "Passw0rd-Value-3c9d";
const BAD_PASSWORD: &str = "Wr0ng-Passw0rd-Value-81f0";

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

fn sign_in(password: &str) -> Value {
    json!({
        "AuthFlow": "USER_PASSWORD_AUTH",
        "ClientId": CLIENT,
        "AuthParameters": {
            "USERNAME": USER,
            "PASSWORD": password,
            "SECRET_HASH": secret_hash(CLIENT_SECRET, USER, CLIENT),
        },
    })
}

#[tokio::test]
async fn nothing_secret_leaves_the_native_route() {
    let captured = Captured::default();
    let writer = captured.clone();
    tracing_subscriber::fmt()
        .with_max_level(tracing::Level::TRACE)
        .with_writer(move || writer.clone())
        .with_ansi(false)
        .init();

    let clock = ManualClock::starting_now();
    let idp = MockIdp::with_clock(
        MockIdpConfig {
            clients: vec![ClientRecord::new(CLIENT, CLIENT_SECRET, ["api/read"])],
            ..MockIdpConfig::default()
        },
        Arc::new(clock.clone()),
    );
    idp.add_user(UserRecord::new(USER, PASSWORD, UserStatus::Confirmed));
    idp.add_user(UserRecord::new(
        "hygiene-newbie",
        PASSWORD,
        UserStatus::ForceChangePassword,
    ));
    let idp = MockIdpServer::start_with(idp).await;
    let store = InProcessSharedStore::new(Arc::new(clock.clone()));
    let mut config = native::config_for(&idp);
    config.shared_store = Some(SharedStoreConfig::new(
        Arc::new(store.clone()),
        KeyRing::new(EncryptionKey::from_bytes([9; 32]), vec![]),
    ));
    let proxy = ProxyServer::start(config, clock.clone()).await;

    let mut secrets: Vec<String> = vec![
        CLIENT_SECRET.into(),
        PASSWORD.into(),
        BAD_PASSWORD.into(),
        secret_hash(CLIENT_SECRET, USER, CLIENT),
        ADMIN_TOKEN.into(),
    ];
    let mut errors = Vec::new();
    let remember = |answer: &Value, secrets: &mut Vec<String>| {
        for result in ["AuthenticationResult", "ClientAuthenticationResult"] {
            for name in ["AccessToken", "IdToken", "RefreshToken"] {
                if let Some(token) = answer[result][name].as_str() {
                    secrets.push(token.to_owned());
                }
            }
        }
    };
    let call = async |operation: &str, body: String, headers: &[(&str, &str)]| {
        let response = native::post(&proxy, operation, body, headers).await;
        let status = response.status();
        let text = response.text().await.unwrap();
        (
            status,
            serde_json::from_str::<Value>(&text).unwrap_or(Value::Null),
            text,
        )
    };

    // Miss, hit, a wrong password twice (the second from the negative cache).
    for password in [PASSWORD, PASSWORD, BAD_PASSWORD, BAD_PASSWORD] {
        let (_, answer, text) = call("InitiateAuth", sign_in(password).to_string(), &[]).await;
        remember(&answer, &mut secrets);
        if answer.get("__type").is_some() {
            errors.push(text);
        }
    }
    let refresh_token = secrets
        .iter()
        .find(|s| !s.contains('.') && s.len() > 30)
        .cloned()
        .expect("a refresh token was issued");
    let refresh = json!({
        "AuthFlow": "REFRESH_TOKEN_AUTH",
        "ClientId": CLIENT,
        "AuthParameters": {
            "REFRESH_TOKEN": refresh_token,
            "SECRET_HASH": secret_hash(CLIENT_SECRET, USER, CLIENT),
        },
    });
    let (_, answer, _) = call("InitiateAuth", refresh.to_string(), &[]).await;
    remember(&answer, &mut secrets);
    let mut challenge = sign_in(PASSWORD);
    challenge["AuthParameters"]["USERNAME"] = "hygiene-newbie".into();
    challenge["AuthParameters"]["SECRET_HASH"] =
        secret_hash(CLIENT_SECRET, "hygiene-newbie", CLIENT).into();
    let (_, answer, _) = call("InitiateAuth", challenge.to_string(), &[]).await;
    secrets.push(answer["Session"].as_str().unwrap().to_owned());
    let client_token = json!({"ClientId": CLIENT, "Secret": CLIENT_SECRET, "Scopes": ["api/read"]});
    let (_, answer, _) = call("GetClientToken", client_token.to_string(), &[]).await;
    remember(&answer, &mut secrets);

    // The proxy's own errors, each with a password in the request.
    let duplicate =
        sign_in(PASSWORD)
            .to_string()
            .replacen('{', &format!(r#"{{"ClientId":"{PASSWORD}","#), 1);
    let signature = format!("AWS4-HMAC-SHA256 Credential=x, Signature={PASSWORD}");
    for (operation, body, headers) in [
        ("InitiateAuth", duplicate, vec![]),
        (
            "InitiateAuth",
            format!(r#"{{"PASSWORD":"{PASSWORD}""#),
            vec![],
        ),
        (
            "AdminInitiateAuth",
            sign_in(PASSWORD).to_string(),
            vec![("authorization", signature.as_str())],
        ),
    ] {
        let (status, answer, text) = call(operation, body, &headers).await;
        assert_eq!(status, 400, "{text}");
        assert!(answer["__type"].is_string(), "{text}");
        errors.push(text);
    }

    // The upstream fails: the proxy answers in the AWS shape, from cache
    // where it can.
    idp.idp.apply(&ControlUpdate {
        error_rate: Some(1.0),
        ..ControlUpdate::default()
    });
    let mut other = sign_in(PASSWORD);
    other["ClientMetadata"] = json!({"tenant": "t"});
    let (_, _, text) = call("InitiateAuth", other.to_string(), &[]).await;
    errors.push(text);
    idp.idp.apply(&ControlUpdate::healthy());
    let raw_store: Vec<String> = store
        .raw_entries()
        .into_iter()
        .map(|(key, value)| format!("{key} {}", String::from_utf8_lossy(&value)))
        .collect();
    let purge = proxy
        .http
        .delete(proxy.admin_url(&format!("/cache?client_id={CLIENT}")))
        .bearer_auth(ADMIN_TOKEN)
        .send()
        .await
        .unwrap();
    assert_eq!(purge.status(), 200);
    let (_, answer, _) = call("InitiateAuth", sign_in(PASSWORD).to_string(), &[]).await;
    remember(&answer, &mut secrets);

    let metrics = proxy.metrics().await;
    let logs = String::from_utf8_lossy(&captured.0.lock().unwrap()).into_owned();
    // Positive controls: each place was really looked at.
    assert!(
        logs.contains("token fetched and cached"),
        "the scenario was logged"
    );
    assert!(logs.contains(CLIENT), "client ids are logged");
    assert!(
        logs.contains("native request rejected"),
        "refusals were logged"
    );
    assert!(metrics.contains("tokencache_requests_total"), "{metrics}");
    assert!(errors.len() >= 5, "{errors:?}");
    assert!(errors.iter().all(|e| e.contains("__type")), "{errors:?}");
    assert!(!raw_store.is_empty(), "the store was written");
    assert!(secrets.len() > 10, "{} secrets", secrets.len());
    assert!(TARGET_PREFIX.starts_with("AWSCognito"));

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
        for error in &errors {
            assert!(
                !error.contains(secret.as_str()),
                "an error body holds a secret: {error}"
            );
        }
        for entry in &raw_store {
            assert!(
                !entry.contains(secret.as_str()),
                "the shared store holds a secret"
            );
        }
    }
    // Nor a JWT's payload, which would give the claims away.
    for token in secrets.iter().filter(|s| s.matches('.').count() == 2) {
        let payload = token.split('.').nth(1).unwrap();
        assert!(!logs.contains(&payload[..24]));
        for entry in &raw_store {
            assert!(
                !entry.contains(&payload[..24]),
                "the shared store holds a claim"
            );
        }
    }
}
