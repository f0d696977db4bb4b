//! The `tokencache` binary end to end: settings from flags, environment
//! and file; the demo; the mock IdP; exit codes and graceful shutdown.
#![allow(clippy::unwrap_used, clippy::expect_used)]
// Waiting on child processes is bounded by real time.
#![allow(clippy::disallowed_methods)]

use std::process::Command;

use serde_json::Value;

mod common;

use common::{BIN, Running, log_field, start_mock_idp};

async fn post_token(url: &str, secret: &str) -> (u16, String, Value) {
    let response = reqwest::Client::new()
        .post(url)
        .basic_auth("demo-client", Some(secret))
        .form(&[("grant_type", "client_credentials"), ("scope", "api/read")])
        .send()
        .await
        .unwrap();
    let status = response.status().as_u16();
    let cache_status = response.headers()["cache-status"]
        .to_str()
        .unwrap()
        .to_owned();
    (status, cache_status, response.json().await.unwrap())
}

#[tokio::test]
async fn serve_from_environment_caches_and_shuts_down_cleanly() {
    let (_idp, idp_url) = start_mock_idp();
    let mut proxy = Running::start(
        Command::new(BIN)
            .arg("serve")
            .env("TOKENCACHE_LISTEN", "127.0.0.1:0")
            .env("TOKENCACHE_ADMIN_LISTEN", "127.0.0.1:0")
            .env("TOKENCACHE_UPSTREAM", &idp_url)
            .env("TOKENCACHE_LOG_FORMAT", "json")
            .env("TOKENCACHE_LOG", "debug"),
    );
    let line = proxy.wait_for_line("tokencache serving");
    let listen = log_field(&line, "listen");
    let admin = log_field(&line, "admin");
    let url = format!("http://{listen}/oauth2/token");

    let (status, cache_status, first) = post_token(&url, "demo-secret").await;
    assert_eq!(status, 200, "{first}");
    assert_eq!(cache_status, "tokencache; fwd=miss; stored");
    let (_, cache_status, second) = post_token(&url, "demo-secret").await;
    assert!(
        cache_status.starts_with("tokencache; hit"),
        "{cache_status}"
    );
    assert_eq!(first["access_token"], second["access_token"]);
    let (status, _, error) = post_token(&url, "wrong-secret-value").await;
    assert_eq!(
        (status, error["error"].as_str()),
        (400, Some("invalid_client"))
    );

    let health = reqwest::get(format!("http://{admin}/healthz"))
        .await
        .unwrap();
    assert_eq!(health.status(), 200);
    let ready = reqwest::get(format!("http://{admin}/readyz"))
        .await
        .unwrap();
    assert_eq!(ready.status(), 200);

    let (code, output) = proxy.terminate();
    assert_eq!(code, 0, "{output:#?}");
    let all = output.join("\n");
    assert!(all.contains("shut down cleanly"), "{all}");
    // Nothing secret in the logs, even at debug level.
    let token = first["access_token"].as_str().unwrap();
    for secret in ["demo-secret", "wrong-secret-value", token] {
        assert!(!all.contains(secret), "the log holds a secret: {all}");
    }
    assert!(
        !all.contains("ZGVtby1jbGllbnQ6"),
        "the log holds a Basic header: {all}"
    );
}

#[tokio::test]
async fn config_file_declares_several_routes() {
    let (_idp, idp_url) = start_mock_idp();
    let dir = std::env::temp_dir().join(format!("tokencache-cli-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let config = dir.join("tokencache.toml");
    std::fs::write(
        &config,
        format!(
            r#"
listen = "127.0.0.1:0"
admin_listen = "127.0.0.1:0"
log_format = "json"
refresh_at = 0.5

[[routes]]
path = "/pool-a/oauth2/token"
upstream = "{idp_url}"

[[routes]]
path = "/pool-b/oauth2/token"
upstream = "{idp_url}"
"#
        ),
    )
    .unwrap();
    let mut proxy = Running::start(Command::new(BIN).args(["serve", "--config"]).arg(&config));
    let line = proxy.wait_for_line("tokencache serving");
    let listen = log_field(&line, "listen");

    let (status, _, a) = post_token(
        &format!("http://{listen}/pool-a/oauth2/token"),
        "demo-secret",
    )
    .await;
    assert_eq!(status, 200);
    let (status, cache_status, b) = post_token(
        &format!("http://{listen}/pool-b/oauth2/token"),
        "demo-secret",
    )
    .await;
    assert_eq!(status, 200);
    // Another route is another identity provider: its own key, its own token.
    assert_eq!(cache_status, "tokencache; fwd=miss; stored");
    assert_ne!(a["access_token"], b["access_token"]);
    let missing = reqwest::Client::new()
        .post(format!("http://{listen}/oauth2/token"))
        .send()
        .await
        .unwrap();
    assert_eq!(missing.status(), 404);
    let (code, _) = proxy.terminate();
    assert_eq!(code, 0);
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn unusable_configuration_exits_64() {
    for args in [
        vec!["serve"],
        vec!["serve", "--upstream", "not a url"],
        vec![
            "serve",
            "--upstream",
            "http://127.0.0.1:1/t",
            "--refresh-at",
            "2",
        ],
        vec!["serve", "--config", "/nonexistent/tokencache.toml"],
    ] {
        let output = Command::new(BIN).args(&args).output().unwrap();
        assert_eq!(output.status.code(), Some(64), "{args:?}");
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert!(
            stderr.contains("invalid configuration"),
            "{args:?}: {stderr}"
        );
    }
}

#[test]
fn help_explains_every_flag() {
    let output = Command::new(BIN)
        .args(["serve", "--help"])
        .output()
        .unwrap();
    assert!(output.status.success());
    let help = String::from_utf8_lossy(&output.stdout);
    for flag in [
        "--listen",
        "--admin-listen",
        "--upstream",
        "--config",
        "--refresh-at",
        "--min-remaining",
        "--cache-max-bytes",
        "--log-format",
        "TOKENCACHE_UPSTREAM",
    ] {
        assert!(help.contains(flag), "serve --help lacks {flag}:\n{help}");
    }
    for command in [
        vec!["--help"],
        vec!["demo", "--help"],
        vec!["mock-idp", "--help"],
    ] {
        let output = Command::new(BIN).args(&command).output().unwrap();
        assert!(output.status.success(), "{command:?}");
    }
}

#[tokio::test]
async fn demo_prints_a_curl_that_works_twice() {
    let mut demo = Running::start(Command::new(BIN).args([
        "demo",
        "--listen",
        "127.0.0.1:0",
        "--admin-listen",
        "127.0.0.1:0",
        "--idp-listen",
        "127.0.0.1:0",
        "--idp-latency",
        "0",
    ]));
    let curl = demo.wait_for_line("curl -s");
    let url = curl.split_whitespace().last().unwrap().to_owned();
    assert!(url.starts_with("http://127.0.0.1:"), "{curl}");
    let (status, first, _) = post_token(&url, "demo-secret").await;
    assert_eq!(
        (status, first.as_str()),
        (200, "tokencache; fwd=miss; stored")
    );
    let (status, second, _) = post_token(&url, "demo-secret").await;
    assert_eq!(status, 200);
    assert!(second.starts_with("tokencache; hit"), "{second}");
    let (code, _) = demo.terminate();
    assert_eq!(code, 0);
}

/// A CA and a certificate for localhost signed by it, written to `dir`;
/// returns the CA certificate (PEM).
fn write_certificate(dir: &std::path::Path) -> String {
    use rcgen::{BasicConstraints, CertificateParams, IsCa, Issuer, KeyPair};
    let mut ca_params = CertificateParams::new(Vec::<String>::new()).unwrap();
    ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    let ca_key = KeyPair::generate().unwrap();
    let ca_cert = ca_params.self_signed(&ca_key).unwrap();
    let issuer = Issuer::new(ca_params, ca_key);
    let leaf_key = KeyPair::generate().unwrap();
    let leaf = CertificateParams::new(vec!["localhost".to_owned()])
        .unwrap()
        .signed_by(&leaf_key, &issuer)
        .unwrap();
    std::fs::write(dir.join("cert.pem"), leaf.pem()).unwrap();
    std::fs::write(dir.join("key.pem"), leaf_key.serialize_pem()).unwrap();
    ca_cert.pem()
}

#[tokio::test]
async fn https_certificates_reload_on_sighup() {
    let (_idp, idp_url) = start_mock_idp();
    let dir = std::env::temp_dir().join(format!("tokencache-cli-tls-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let first_ca = write_certificate(&dir);
    let mut proxy = Running::start(
        Command::new(BIN)
            .args([
                "serve",
                "--listen",
                "127.0.0.1:0",
                "--admin-listen",
                "127.0.0.1:0",
            ])
            .args(["--log-format", "json", "--upstream", &idp_url])
            .arg("--tls-cert")
            .arg(dir.join("cert.pem"))
            .arg("--tls-key")
            .arg(dir.join("key.pem")),
    );
    let line = proxy.wait_for_line("tokencache serving");
    let port = log_field(&line, "listen")
        .rsplit(':')
        .next()
        .unwrap()
        .to_owned();
    let url = format!("https://localhost:{port}/oauth2/token");
    let client = |ca: &str| {
        reqwest::Client::builder()
            .tls_certs_only([reqwest::Certificate::from_pem(ca.as_bytes()).unwrap()])
            .build()
            .unwrap()
    };
    let post = |client: reqwest::Client| {
        let url = url.clone();
        async move {
            client
                .post(&url)
                .basic_auth("demo-client", Some("demo-secret"))
                .form(&[("grant_type", "client_credentials")])
                .send()
                .await
        }
    };
    assert_eq!(post(client(&first_ca)).await.unwrap().status(), 200);

    let second_ca = write_certificate(&dir);
    let pid = proxy.child.id().to_string();
    assert!(
        Command::new("kill")
            .args(["-HUP", &pid])
            .status()
            .unwrap()
            .success()
    );
    proxy.wait_for_line("TLS certificate reloaded");
    assert_eq!(post(client(&second_ca)).await.unwrap().status(), 200);
    assert!(post(client(&first_ca)).await.is_err());
    let (code, _) = proxy.terminate();
    assert_eq!(code, 0);
    let _ = std::fs::remove_dir_all(&dir);
}
