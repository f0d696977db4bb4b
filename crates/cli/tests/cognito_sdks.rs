//! Cognito's native API through the `tokencache` binary, with real AWS
//! clients: boto3 (`endpoint_url`) and the AWS CLI
//! (`AWS_ENDPOINT_URL_COGNITO_IDENTITY_PROVIDER`), against moto's server (a
//! third-party `cognito-idp`) and against the mock IdP. The scenario is in
//! `peers/aws/cognito_peer.py`; `peers/install` installs boto3 and the
//! CLI, `scripts/test` moto. A missing one fails the test, saying so.
#![allow(clippy::unwrap_used, clippy::expect_used)]
// Child processes are waited on in real time.
#![allow(clippy::disallowed_methods)]

use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;
use tokencache_test_support::answers::metric;
use tokencache_test_support::moto::MotoServer;

mod common;

use common::{BIN, Running, log_field};

/// How long the peer may run (200 concurrent sign-ins, the CLI's start-up).
const PEER_TIMEOUT: Duration = Duration::from_secs(120);

fn repo_root() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .ancestors()
        .nth(2)
        .unwrap()
}

fn installed(relative: &str) -> PathBuf {
    let path = repo_root().join(relative);
    assert!(
        path.exists(),
        "{} is missing: run peers/install (it installs boto3 and the AWS CLI)",
        path.display()
    );
    path
}

/// `tokencache serve` in front of `upstream`'s native API, with `extra`
/// flags; its token and admin URLs.
fn serve(upstream: &str, extra: &[&str]) -> (Running, String, String) {
    let mut command = Command::new(BIN);
    command
        .args([
            "serve",
            "--listen",
            "127.0.0.1:0",
            "--admin-listen",
            "127.0.0.1:0",
        ])
        .args(["--log-format", "json", "--cognito-idp-upstream", upstream])
        .args(extra);
    let mut proxy = Running::start(&mut command);
    let line = proxy.wait_for_line("tokencache serving");
    let url = format!("http://{}", log_field(&line, "listen"));
    let admin = format!("http://{}", log_field(&line, "admin"));
    (proxy, url, admin)
}

fn peer(args: &[&str]) -> Command {
    let mut command = Command::new(installed("target/peers-venv/bin/python"));
    command
        .arg(repo_root().join("peers/aws/cognito_peer.py"))
        .args(args);
    command
}

/// Runs the peer to completion; its stdout's last line as JSON.
fn run(mut command: Command) -> Value {
    let child = command
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let output = wait(child);
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(
        output.status.success(),
        "the peer failed\nstdout: {stdout}\nstderr: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    serde_json::from_str(stdout.lines().last().unwrap()).unwrap()
}

fn wait(mut child: std::process::Child) -> std::process::Output {
    let deadline = Instant::now() + PEER_TIMEOUT;
    while child.try_wait().unwrap().is_none() {
        if Instant::now() > deadline {
            let _ = child.kill();
            panic!("the peer ran past {PEER_TIMEOUT:?}");
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    child.wait_with_output().unwrap()
}

async fn metrics(admin: &str) -> String {
    reqwest::get(format!("{admin}/metrics"))
        .await
        .unwrap()
        .text()
        .await
        .unwrap()
}

#[tokio::test(flavor = "multi_thread")]
async fn boto3_and_the_aws_cli_get_cached_tokens_from_moto_through_the_proxy() {
    let moto = MotoServer::start().await;
    let (_proxy, url, admin) = serve(&moto.endpoint_url(), &[]);
    let aws = installed("target/peers-venv/bin/aws");
    let facts = tokio::task::spawn_blocking({
        let (moto_url, aws) = (moto.endpoint_url(), aws.display().to_string());
        move || {
            run(peer(&[
                "moto", "--moto", &moto_url, "--proxy", &url, "--aws", &aws,
            ]))
        }
    })
    .await
    .unwrap();
    assert_eq!(facts["wrong_password"], "NotAuthorizedException");
    assert_eq!(facts["admin"], "InvalidParameterException");
    assert_eq!(facts["concurrent_tokens"], 1);
    // What went upstream: one sign-in, one refresh, two challenges, one
    // sign-in for the 200 concurrent callers; one wrong password (the
    // CLI's repeat of it came from the negative cache). Nothing signed.
    let metrics = metrics(&admin).await;
    assert_eq!(
        metric(
            &metrics,
            r#"tokencache_upstream_requests_total{status="2xx"}"#
        ),
        Some(5),
        "{metrics}"
    );
    assert_eq!(
        metric(
            &metrics,
            r#"tokencache_upstream_requests_total{status="4xx"}"#
        ),
        Some(1)
    );
    assert_eq!(
        metric(&metrics, r#"tokencache_requests_total{outcome="negative"}"#),
        Some(1)
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn client_tokens_and_aws_errors_round_trip_through_boto3() {
    // Cognito's API wants client secrets of 24 characters or more, and
    // boto3 checks: clients of the peer's own.
    let clients = std::env::temp_dir().join(format!(
        "tokencache-cognito-sdks-{}.toml",
        std::process::id()
    ));
    std::fs::write(
        &clients,
        r#"
        [[clients]]
        id = "svc-client"
        secret = "Svc+secret+0123456789abcdef"
        scopes = ["api/read", "api/write"]
        [[clients]]
        id = "other-client"
        secret = "Other+secret+0123456789abcdef"
        scopes = ["api/read"]
        "#,
    )
    .unwrap();
    let mut idp = Running::start(Command::new(BIN).args([
        "mock-idp",
        "--listen",
        "127.0.0.1:0",
        "--log-format",
        "json",
        "--clients",
        clients.to_str().unwrap(),
    ]));
    let line = idp.wait_for_line("mock IdP serving");
    let _ = std::fs::remove_file(&clients);
    let idp_url = log_field(&line, "token_url");
    let base = idp_url.trim_end_matches("/oauth2/token").to_owned();
    // A throttle reaches the SDK before the mock IdP's bucket (one a
    // second) refills: the proxy gives up waiting after half a second.
    let (_proxy, url, _admin) = serve(
        &base,
        &["--retry-attempts", "1", "--load-deadline", "500ms"],
    );
    let mut command = peer(&["mock", "--proxy", &url]);
    let mut child = command
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut stdout = BufReader::new(child.stdout.take().unwrap());
    let mut line = String::new();
    stdout.read_line(&mut line).unwrap();
    if !line.contains("ready_for_throttle") {
        let output = wait(child);
        panic!(
            "the peer stopped early: {line}\n{}",
            String::from_utf8_lossy(&output.stderr)
        );
    }
    let control = reqwest::Client::new()
        .post(format!("{base}/control"))
        .body(r#"{"rate_limit_per_sec": 1}"#)
        .send()
        .await
        .unwrap();
    assert!(control.status().is_success());
    // Spend the bucket's one token.
    reqwest::Client::new()
        .post(format!("{base}/"))
        .header(
            "x-amz-target",
            "AWSCognitoIdentityProviderService.GetClientToken",
        )
        .body("{}")
        .send()
        .await
        .unwrap();
    child.stdin.take().unwrap().write_all(b"go\n").unwrap();
    let mut rest = String::new();
    std::io::Read::read_to_string(&mut stdout, &mut rest).unwrap();
    let output = wait(child);
    assert!(
        output.status.success(),
        "the peer failed: {rest}\n{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let facts: Value = serde_json::from_str(rest.lines().last().unwrap()).unwrap();
    assert_eq!(facts["wrong_secret"], "NotAuthorizedException");
    assert_eq!(facts["throttled"], "TooManyRequestsException");
    drop(idp);
}

#[tokio::test(flavor = "multi_thread")]
async fn the_javascript_sdk_finds_the_proxy_through_the_one_variable() {
    let (_idp, idp_url) = common::start_mock_idp();
    let base = idp_url.trim_end_matches("/oauth2/token").to_owned();
    let (_proxy, url, admin) = serve(&base, &[]);
    installed("peers/aws-js/node_modules/@aws-sdk/client-cognito-identity-provider");
    let mut command = Command::new("node");
    command
        .arg(repo_root().join("peers/aws-js/peer.mjs"))
        .args(["demo-user", "demo-password", "demo-client", "demo-secret"])
        .env("AWS_ENDPOINT_URL_COGNITO_IDENTITY_PROVIDER", &url)
        // Nothing else may lead the SDK to the proxy, or away from it.
        .env_remove("AWS_ENDPOINT_URL")
        .env_remove("AWS_PROFILE");
    let facts = tokio::task::spawn_blocking(move || run(command))
        .await
        .unwrap();
    assert_eq!(facts["cached"], true);
    assert_eq!(facts["wrong_password"], "NotAuthorizedException");
    let metrics = metrics(&admin).await;
    assert_eq!(
        metric(&metrics, r#"tokencache_requests_total{outcome="hit"}"#),
        Some(1),
        "{metrics}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn the_rust_sdk_gets_cached_tokens_and_its_modelled_errors() {
    use aws_sdk_cognitoidentityprovider::config::{Credentials, Region};
    use aws_sdk_cognitoidentityprovider::types::AuthFlowType;
    use tokencache_mock_idp::secret_hash;

    let (_idp, idp_url) = common::start_mock_idp();
    let base = idp_url.trim_end_matches("/oauth2/token").to_owned();
    let (_proxy, url, admin) = serve(&base, &[]);
    let config = aws_config::defaults(aws_config::BehaviorVersion::latest())
        .region(Region::new("eu-west-1"))
        .credentials_provider(Credentials::new("testing", "testing", None, None, "test"))
        .endpoint_url(&url)
        .load()
        .await;
    let client = aws_sdk_cognitoidentityprovider::Client::new(&config);
    let sign_in = |password: &str| {
        client
            .initiate_auth()
            .client_id("demo-client")
            .auth_flow(AuthFlowType::UserPasswordAuth)
            .auth_parameters("USERNAME", "demo-user")
            .auth_parameters("PASSWORD", password)
            .auth_parameters(
                "SECRET_HASH",
                secret_hash("demo-secret", "demo-user", "demo-client"),
            )
            .send()
    };
    let first = sign_in("demo-password").await.unwrap();
    let second = sign_in("demo-password").await.unwrap();
    let token =
        |answer: &aws_sdk_cognitoidentityprovider::operation::initiate_auth::InitiateAuthOutput| {
            answer
                .authentication_result()
                .and_then(|result| result.access_token())
                .unwrap()
                .to_owned()
        };
    assert_eq!(token(&first), token(&second));
    let refused = sign_in("wrong").await.unwrap_err().into_service_error();
    assert!(refused.is_not_authorized_exception(), "{refused:?}");
    let metrics = metrics(&admin).await;
    assert_eq!(
        metric(&metrics, r#"tokencache_requests_total{outcome="hit"}"#),
        Some(1),
        "{metrics}"
    );
}
