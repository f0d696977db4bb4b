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

/// Arguments, variables, and what the refusal names.
type Refusal<'a> = (&'a [&'a str], &'a [(&'a str, &'a str)], &'a str);

/// Runs the binary with `args` and `env` (only for the child) to its end.
fn run(args: &[&str], env: &[(&str, &str)]) -> (Option<i32>, String, String) {
    let output = Command::new(BIN)
        .args(args)
        .envs(env.iter().copied())
        .output()
        .unwrap();
    (
        output.status.code(),
        String::from_utf8_lossy(&output.stdout).into_owned(),
        String::from_utf8_lossy(&output.stderr).into_owned(),
    )
}

#[test]
fn unusable_configuration_exits_64() {
    let dir = std::env::temp_dir().join(format!("tokencache-cli-bad-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let unknown_key = dir.join("unknown.toml");
    std::fs::write(&unknown_key, "[server]\nmax_conections = 5\n").unwrap();
    let unknown_key = unknown_key.to_str().unwrap();
    let upstream = "http://127.0.0.1:1/t";
    // Settings the proxy cannot run with, whether a flag, a variable or the
    // file gave them: (arguments, variables, what the message names).
    let cases: &[Refusal<'_>] = &[
        (&["serve"], &[], "no route"),
        (&["serve", "--upstream", "not a url"], &[], "not a URL"),
        (
            &["serve", "--upstream", upstream, "--refresh-at", "2"],
            &[],
            "refresh-at",
        ),
        (
            &["serve", "--config", "/nonexistent/tokencache.toml"],
            &[],
            "config file",
        ),
        (&["serve", "--config", unknown_key], &[], "max_conections"),
        (
            &["serve", "--upstream", upstream, "--listen", "nowhere"],
            &[],
            "--listen",
        ),
        (
            &["serve", "--upstream", upstream, "--retry-cap", "soon"],
            &[],
            "--retry-cap",
        ),
        (
            &["serve", "--upstream", upstream],
            &[("TOKENCACHE_MAX_HEADERS", "many")],
            "TOKENCACHE_MAX_HEADERS",
        ),
        (
            &["serve", "--upstream", upstream, "--tls-cert", "cert.pem"],
            &[],
            "tls",
        ),
    ];
    for (args, env, named) in cases {
        let (code, _, stderr) = run(args, env);
        assert_eq!(code, Some(64), "{args:?} {env:?}: {stderr}");
        assert!(
            stderr.contains("invalid configuration"),
            "{args:?}: {stderr}"
        );
        assert!(stderr.contains(named), "{args:?}: {stderr}");
    }
    // What clap itself refuses exits 64 too, not clap's 2.
    for args in [
        &["serve", "--no-such-flag"][..],
        &["serve", "--listen"],
        &["no-such-command"],
        &[
            "token",
            "--token-url",
            upstream,
            "--client-id",
            "c",
            "--auth-method",
            "telepathy",
        ],
        &["mock-idp", "--latency", "slow"],
        &["demo", "--listen", "nowhere"],
    ] {
        let (code, _, stderr) = run(args, &[]);
        assert_eq!(code, Some(64), "{args:?}: {stderr}");
        assert!(stderr.contains("error:"), "{args:?}: {stderr}");
    }
    let (code, _, stderr) = run(&[], &[]);
    assert_eq!(
        code,
        Some(64),
        "no command: usage, as for any other usage error"
    );
    assert!(stderr.contains("Usage:"), "{stderr}");
    for args in [&["--help"][..], &["serve", "--help"], &["--version"]] {
        let (code, stdout, _) = run(args, &[]);
        assert_eq!(code, Some(0), "{args:?}");
        assert!(!stdout.is_empty(), "{args:?}");
    }
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn a_flag_beats_its_variable_which_beats_the_file() {
    let dir = std::env::temp_dir().join(format!("tokencache-cli-layers-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let config = dir.join("tokencache.toml");
    std::fs::write(&config, "refresh_at = 0.5\n").unwrap();
    let config = config.to_str().unwrap();
    // No route, so that a run that gets past the settings stops at once;
    // which error comes first shows which layer was read.
    let bad_variable = [("TOKENCACHE_REFRESH_AT", "often")];
    let (code, _, stderr) = run(&["serve", "--config", config], &bad_variable);
    assert_eq!(code, Some(64));
    assert!(
        stderr.contains("TOKENCACHE_REFRESH_AT"),
        "the variable over the file: {stderr}"
    );
    let (code, _, stderr) = run(
        &["serve", "--config", config, "--refresh-at", "0.6"],
        &bad_variable,
    );
    assert_eq!(code, Some(64));
    assert!(
        stderr.contains("no route"),
        "the flag over the variable: {stderr}"
    );
    let (_, _, stderr) = run(
        &["serve", "--config", config],
        &[("TOKENCACHE_CONFIG", "/nonexistent")],
    );
    assert!(
        stderr.contains("no route"),
        "--config over TOKENCACHE_CONFIG: {stderr}"
    );
    let _ = std::fs::remove_dir_all(&dir);
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
        // The real defaults, the libraries' own.
        "[default: 127.0.0.1:8080]",
        "[default: 0.75]",
        "[default: 10%]",
        "[default: 1d]",
        "[default: 64MiB]",
        "[default: 500ms]",
        "[default: tokencache:]",
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

#[test]
fn help_never_prints_a_secret_variable() {
    let secrets = [
        (
            "TOKENCACHE_STORE",
            "rediss://tokencache:store-pw-1@cache.example:6380",
        ),
        (
            "TOKENCACHE_UPSTREAM",
            "https://user:upstream-pw-2@idp.example/oauth2/token",
        ),
        (
            "TOKENCACHE_TOKEN_URL",
            "https://user:token-url-pw-3@idp.example/oauth2/token",
        ),
        ("TOKENCACHE_ENCRYPTION_KEY", "ZW5jcnlwdGlvbi1rZXktNA=="),
        ("TOKENCACHE_HMAC_KEY", "aG1hYy1rZXktNQ=="),
        ("TOKENCACHE_ADMIN_TOKEN", "admin-token-6"),
        ("TOKENCACHE_CLIENT_SECRET", "client-secret-7"),
    ];
    // A variable that is no secret is shown: proof that the values were in
    // the children's environment and that help prints such values.
    let control = ("TOKENCACHE_LISTEN", "127.0.0.1:4321");
    let env: Vec<_> = secrets.iter().copied().chain([control]).collect();
    let mut seen_control = false;
    for args in [
        &["serve", "--help"][..],
        &["serve", "-h"],
        &["token", "--help"],
        &["--help"],
        &["help", "serve"],
        &["demo", "--help"],
        &["mock-idp", "--help"],
        &["store", "init", "--help"],
    ] {
        let (code, stdout, stderr) = run(args, &env);
        assert_eq!(code, Some(0), "{args:?}: {stderr}");
        let output = format!("{stdout}{stderr}");
        seen_control |= output.contains(control.1);
        for (name, value) in secrets {
            assert!(!output.contains(value), "{args:?} prints {name}:\n{output}");
        }
        // Nor any part of one (a password alone).
        for part in ["store-pw-1", "upstream-pw-2", "token-url-pw-3"] {
            assert!(!output.contains(part), "{args:?}:\n{output}");
        }
    }
    assert!(seen_control, "no help printed TOKENCACHE_LISTEN's value");
    let (_, serve_help, _) = run(&["serve", "--help"], &env);
    assert!(
        serve_help.contains("[env: TOKENCACHE_STORE]"),
        "the variable is named, its value hidden:\n{serve_help}"
    );
    // Nor does a refusal of such a value.
    let (code, _, stderr) = run(
        &["serve", "--upstream", "http://127.0.0.1:1/t"],
        &[("TOKENCACHE_STORE", "redis://:store-pw-8@")],
    );
    assert_eq!(code, Some(64), "{stderr}");
    assert!(stderr.contains("TOKENCACHE_STORE"), "{stderr}");
    assert!(!stderr.contains("store-pw-8"), "{stderr}");
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

#[tokio::test]
async fn https_certificates_reload_on_sighup() {
    let (_idp, idp_url) = start_mock_idp();
    let dir = std::env::temp_dir().join(format!("tokencache-cli-tls-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let first_ca = tokencache_test_support::certificates::write_localhost_certificate(&dir);
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

    let second_ca = tokencache_test_support::certificates::write_localhost_certificate(&dir);
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

/// A drain waits for the requests in progress; a second SIGTERM does not.
#[tokio::test]
async fn a_second_sigterm_ends_the_drain_at_once() {
    let mut idp = Running::start(Command::new(BIN).args([
        "mock-idp",
        "--listen",
        "127.0.0.1:0",
        "--log-format",
        "json",
        "--latency",
        "30000",
    ]));
    // The drain would wait for this request as long as the IdP holds it.
    let idp_url = log_field(&idp.wait_for_line("mock IdP serving"), "token_url");
    let mut proxy = Running::start(Command::new(BIN).args([
        "serve",
        "--listen",
        "127.0.0.1:0",
        "--admin-listen",
        "127.0.0.1:0",
        "--log-format",
        "json",
        "--shutdown-grace",
        "60s",
        "--upstream",
        &idp_url,
    ]));
    let listen = log_field(&proxy.wait_for_line("tokencache serving"), "listen");
    // A request the slow IdP holds: the drain would wait for it.
    let url = format!("http://{listen}/oauth2/token");
    let in_flight = tokio::spawn(post_token_lenient(url));
    let stats = idp_url.replace("/oauth2/token", "/stats");
    let reached = tokio::time::timeout(std::time::Duration::from_secs(10), async {
        loop {
            let seen: Value = reqwest::get(&stats).await.unwrap().json().await.unwrap();
            if seen["token_requests"].as_u64() >= Some(1) {
                break;
            }
            tokio::time::sleep(std::time::Duration::from_millis(20)).await;
        }
    });
    reached.await.expect("the request reached the IdP");
    let pid = proxy.child.id().to_string();
    let signal = |name: &str| {
        assert!(
            Command::new("kill")
                .args([name, &pid])
                .status()
                .unwrap()
                .success()
        );
    };
    signal("-TERM");
    proxy.wait_for_line("shutting down");
    // Still draining a moment later...
    std::thread::sleep(std::time::Duration::from_millis(300));
    assert!(
        proxy.child.try_wait().unwrap().is_none(),
        "the drain ended early"
    );
    // ...until asked again.
    let asked = std::time::Instant::now();
    signal("-TERM");
    let code = common::wait_with_timeout(&mut proxy.child, std::time::Duration::from_secs(5));
    assert_eq!(code, 143);
    assert!(asked.elapsed() < std::time::Duration::from_secs(3));
    in_flight.abort();
}

/// Sends a token request and ignores how it ends.
async fn post_token_lenient(url: String) {
    let _ = reqwest::Client::new()
        .post(url)
        .basic_auth("demo-client", Some("demo-secret"))
        .form(&[("grant_type", "client_credentials")])
        .send()
        .await;
}
