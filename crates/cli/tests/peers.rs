//! Real peers, end to end: third-party OAuth clients pointed at the proxy's
//! token URL and nothing else changed (Python `authlib` and
//! `requests-oauthlib`, Go's `golang.org/x/oauth2/clientcredentials`, the
//! Rust `oauth2` crate, `curl`), and a real OAuth server upstream
//! (`oidc-provider` from npm).
//!
//! Each client gets a valid token, its second call is answered from cache
//! (the upstream's request count does not move), and a bad secret surfaces
//! as the OAuth error that library raises. `peers/install` installs the
//! peers; a missing one fails its test, saying so. Nothing is skipped.
#![allow(clippy::unwrap_used, clippy::expect_used)]
// Child processes are waited on in real time, and JWT `exp` is compared
// with the wall clock.
#![allow(clippy::disallowed_methods)]

use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::Mutex;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use serde_json::{Value, json};

mod common;

use common::{BIN, Running, log_field};
/// How long one peer process may run.
const PEER_TIMEOUT: Duration = Duration::from_secs(30);
const SCOPE: &str = "api/read";
/// A secret no client has.
const BAD_SECRET: &str = "not-the-secret";

fn repo_root() -> &'static Path {
    // crates/cli → the repository.
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .ancestors()
        .nth(2)
        .unwrap()
}

/// `relative` under the repository root, which `peers/install` creates.
fn installed(relative: &str) -> PathBuf {
    let path = repo_root().join(relative);
    assert!(
        path.exists(),
        "{} is missing: run peers/install (it installs every peer these tests use)",
        path.display()
    );
    path
}

/// `program --version` runs, or the test fails naming the installer.
fn require_program(program: &str) {
    let ok = Command::new(program)
        .arg("--version")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|status| status.success());
    assert!(ok, "`{program}` is not installed: run peers/install");
}

/// Runs a short-lived peer to completion (at most [`PEER_TIMEOUT`]) and
/// returns its stdout; a failure exit panics with its stderr.
fn run_peer(command: &mut Command) -> String {
    let mut child = command
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|err| panic!("cannot start {command:?}: {err} (run peers/install)"));
    let read = |mut stream: Box<dyn Read + Send>| {
        std::thread::spawn(move || {
            let mut text = String::new();
            let _ = stream.read_to_string(&mut text);
            text
        })
    };
    let stdout = read(Box::new(child.stdout.take().unwrap()));
    let stderr = read(Box::new(child.stderr.take().unwrap()));
    let deadline = Instant::now() + PEER_TIMEOUT;
    let status = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break status;
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            panic!("{command:?} ran past {PEER_TIMEOUT:?}");
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    let (stdout, stderr) = (stdout.join().unwrap(), stderr.join().unwrap());
    assert!(
        status.success(),
        "{command:?} failed with {status}\nstdout: {stdout}\nstderr: {stderr}"
    );
    stdout
}

/// Each stdout line of a peer, as JSON.
fn json_lines(stdout: &str) -> Vec<Value> {
    stdout
        .lines()
        .filter(|line| !line.trim().is_empty())
        .map(|line| serde_json::from_str(line).unwrap_or_else(|_| panic!("not JSON: {line}")))
        .collect()
}

/// The claims of a JWT, read without checking its signature.
fn jwt_claims(token: &str) -> Value {
    let payload = token
        .split('.')
        .nth(1)
        .unwrap_or_else(|| panic!("not a JWT: {token}"));
    serde_json::from_slice(&URL_SAFE_NO_PAD.decode(payload).unwrap()).unwrap()
}

fn unix_now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs()
}

/// The proxy in front of `upstream`.
struct Proxy {
    _process: Running,
    url: String,
    admin: String,
}

impl Proxy {
    fn start(upstream: &str) -> Self {
        let mut process = Running::start(Command::new(BIN).args([
            "serve",
            "--listen",
            "127.0.0.1:0",
            "--admin-listen",
            "127.0.0.1:0",
            "--log-format",
            "json",
            "--upstream",
            upstream,
        ]));
        let line = process.wait_for_line("tokencache serving");
        let url = format!("http://{}/oauth2/token", log_field(&line, "listen"));
        let admin = log_field(&line, "admin");
        Self {
            _process: process,
            url,
            admin,
        }
    }

    /// The sum of the `/metrics` samples of `name` carrying `label`
    /// (`result="ok"`, say).
    async fn metric(&self, name: &str, label: &str) -> f64 {
        let text = reqwest::get(format!("http://{}/metrics", self.admin))
            .await
            .unwrap()
            .text()
            .await
            .unwrap();
        text.lines()
            .filter(|line| line.starts_with(&format!("{name}{{")) && line.contains(label))
            .filter_map(|line| line.rsplit(' ').next()?.parse::<f64>().ok())
            .sum()
    }
}

/// The mock IdP and the proxy in front of it.
struct MockStack {
    _idp: Running,
    idp_base: String,
    proxy: Proxy,
}

impl MockStack {
    fn start() -> Self {
        let mut idp = Running::start(Command::new(BIN).args([
            "mock-idp",
            "--listen",
            "127.0.0.1:0",
            "--log-format",
            "json",
        ]));
        let token_url = log_field(&idp.wait_for_line("mock IdP serving"), "token_url");
        let idp_base = token_url
            .strip_suffix("/oauth2/token")
            .unwrap_or_else(|| panic!("unexpected token URL {token_url}"))
            .to_owned();
        let proxy = Proxy::start(&token_url);
        Self {
            _idp: idp,
            idp_base,
            proxy,
        }
    }

    /// Token requests the mock IdP has seen from `client_id`.
    async fn upstream_requests(&self, client_id: &str) -> u64 {
        let stats: Value = reqwest::get(format!("{}/stats", self.idp_base))
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        stats["by_client"][client_id].as_u64().unwrap_or(0)
    }
}

/// Where a client puts its credentials.
#[derive(Debug, Clone, Copy)]
enum Auth {
    /// `Authorization: Basic` (`client_secret_basic`).
    Basic,
    /// `client_id` and `client_secret` in the form body (`client_secret_post`).
    Post,
}

impl Auth {
    fn flag(self) -> &'static str {
        match self {
            Self::Basic => "basic",
            Self::Post => "post",
        }
    }

    /// A mock IdP client per method, so each method's first call is a miss.
    fn client(self) -> (&'static str, &'static str) {
        match self {
            Self::Basic => ("demo-client", "demo-secret"),
            Self::Post => ("other-client", "other-secret"),
        }
    }
}

/// One run of a client peer: `calls` token requests with one credential.
struct Call<'a> {
    url: &'a str,
    auth: Auth,
    client_id: &'a str,
    secret: &'a str,
    calls: u32,
}

impl Call<'_> {
    /// The flags every command-line peer (Python, Go) takes.
    fn args(&self) -> Vec<String> {
        [
            ("--url", self.url),
            ("--auth", self.auth.flag()),
            ("--client-id", self.client_id),
            ("--secret", self.secret),
            ("--scope", SCOPE),
        ]
        .into_iter()
        .flat_map(|(flag, value)| [flag.to_owned(), value.to_owned()])
        .chain(["--calls".to_owned(), self.calls.to_string()])
        .collect()
    }
}

/// Drives a client peer through the proxy, once per credential method: two
/// calls with the right secret (a token, then the same token from cache),
/// then one with a wrong secret (`expected_error_class` with
/// `invalid_client`). `peer` returns one JSON result per call:
/// `{"ok":true,"access_token":…}` or `{"ok":false,"error_class":…,"error":…}`.
async fn exercise_client(
    name: &str,
    expected_error_class: &str,
    peer: impl AsyncFn(&Call<'_>) -> Vec<Value>,
) {
    let stack = MockStack::start();
    for auth in [Auth::Basic, Auth::Post] {
        let (client_id, secret) = auth.client();
        let call = |secret: &'static str, calls: u32| Call {
            url: &stack.proxy.url,
            auth,
            client_id,
            secret,
            calls,
        };
        let results = peer(&call(secret, 2)).await;
        let context = format!("{name} with {auth:?} credentials: {results:#?}");
        assert_eq!(results.len(), 2, "{context}");
        for result in &results {
            assert_eq!(result["ok"], true, "{context}");
        }
        let token = results[0]["access_token"].as_str().unwrap();
        assert_eq!(
            results[1]["access_token"], token,
            "second call got another token: {context}"
        );
        let claims = jwt_claims(token);
        assert_eq!(claims["client_id"], client_id, "{context}");
        assert_eq!(claims["scope"], SCOPE, "{context}");
        assert!(claims["exp"].as_u64().unwrap() > unix_now(), "{context}");
        assert_eq!(
            stack.upstream_requests(client_id).await,
            1,
            "the second call went upstream: {context}"
        );

        let rejected = peer(&call(BAD_SECRET, 1)).await;
        let context = format!("{name} with {auth:?} and a bad secret: {rejected:#?}");
        assert_eq!(rejected.len(), 1, "{context}");
        assert_eq!(rejected[0]["ok"], false, "{context}");
        assert_eq!(rejected[0]["error"], "invalid_client", "{context}");
        assert_eq!(
            rejected[0]["error_class"], expected_error_class,
            "{context}"
        );
        assert_eq!(stack.upstream_requests(client_id).await, 2, "{context}");
    }
}

fn python_peer(library: &'static str) -> impl AsyncFn(&Call<'_>) -> Vec<Value> {
    let python = installed("target/peers-venv/bin/python");
    let script = installed("peers/python/peer.py");
    async move |call: &Call<'_>| {
        json_lines(&run_peer(
            Command::new(&python)
                .arg(&script)
                .args(["--library", library])
                .args(call.args()),
        ))
    }
}

#[tokio::test]
async fn python_authlib_oauth2_session() {
    exercise_client(
        "authlib OAuth2Session",
        "authlib.integrations.base_client.errors.OAuthError",
        python_peer("authlib"),
    )
    .await;
}

#[tokio::test]
async fn python_authlib_async_oauth2_client() {
    exercise_client(
        "authlib AsyncOAuth2Client",
        "authlib.integrations.base_client.errors.OAuthError",
        python_peer("authlib-async"),
    )
    .await;
}

#[tokio::test]
async fn python_requests_oauthlib_backend_application_client() {
    exercise_client(
        "requests-oauthlib BackendApplicationClient",
        "oauthlib.oauth2.rfc6749.errors.InvalidClientError",
        python_peer("requests-oauthlib"),
    )
    .await;
}

#[tokio::test]
async fn go_x_oauth2_clientcredentials() {
    let binary = installed("target/peers/go-peer");
    exercise_client(
        "Go x/oauth2 clientcredentials",
        "*oauth2.RetrieveError",
        async |call: &Call<'_>| {
            let results = json_lines(&run_peer(Command::new(&binary).args(call.args())));
            for result in results.iter().filter(|result| result["ok"] == false) {
                assert_eq!(result["status"], 400, "{result}");
            }
            results
        },
    )
    .await;
}

#[tokio::test]
async fn curl_command_line() {
    require_program("curl");
    exercise_client("curl", "HTTP 400", async |call: &Call<'_>| {
        let mut results = Vec::new();
        for _ in 0..call.calls {
            let mut curl = Command::new("curl");
            curl.args(["-s", "-S", "--max-time", "20", "-D", "-"])
                .args(["-d", "grant_type=client_credentials"])
                .args(["-d", &format!("scope={SCOPE}")]);
            match call.auth {
                Auth::Basic => curl.args(["-u", &format!("{}:{}", call.client_id, call.secret)]),
                Auth::Post => curl
                    .args(["-d", &format!("client_id={}", call.client_id)])
                    .args(["-d", &format!("client_secret={}", call.secret)]),
            };
            let output = run_peer(curl.arg(call.url));
            results.push(curl_result(&output));
        }
        if call.calls == 2 {
            // curl shows the headers, so check the proxy's word as well.
            assert_eq!(results[0]["cache_status"], "tokencache; fwd=miss; stored");
            assert!(
                results[1]["cache_status"]
                    .as_str()
                    .unwrap()
                    .starts_with("tokencache; hit"),
                "{results:#?}"
            );
        }
        results
    })
    .await;
}

/// `curl -D -` output (headers, blank line, body) as a peer result.
fn curl_result(output: &str) -> Value {
    let (head, body) = output
        .split_once("\r\n\r\n")
        .unwrap_or_else(|| panic!("no header block: {output}"));
    let status: u16 = head
        .split_whitespace()
        .nth(1)
        .and_then(|code| code.parse().ok())
        .unwrap_or_else(|| panic!("no status line: {head}"));
    let cache_status = head
        .lines()
        .find_map(|line| {
            let (name, value) = line.split_once(':')?;
            name.eq_ignore_ascii_case("cache-status")
                .then(|| value.trim().to_owned())
        })
        .unwrap_or_default();
    let body: Value = serde_json::from_str(body).unwrap_or_else(|_| panic!("not JSON: {body}"));
    if status == 200 && body["access_token"].is_string() {
        json!({"ok": true, "access_token": body["access_token"], "cache_status": cache_status})
    } else {
        json!({"ok": false, "error_class": format!("HTTP {status}"), "error": body["error"]})
    }
}

#[tokio::test]
async fn rust_oauth2_crate_basic_client() {
    use oauth2::basic::{BasicClient, BasicErrorResponseType};
    use oauth2::{
        AuthType, ClientId, ClientSecret, RequestTokenError, Scope, TokenResponse, TokenUrl,
    };

    // oauth2's own reqwest feature pins reqwest 0.12: its transport is a
    // closure, so it runs on the workspace's reqwest here.
    let http = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap();
    let cache_statuses = Mutex::new(Vec::new());
    let (http, statuses) = (&http, &cache_statuses);
    let send = move |request| transport(http, statuses, request);

    exercise_client(
        "Rust oauth2 BasicClient",
        "RequestTokenError::ServerResponse",
        async |call: &Call<'_>| {
            let client = BasicClient::new(ClientId::new(call.client_id.to_owned()))
                .set_client_secret(ClientSecret::new(call.secret.to_owned()))
                .set_token_uri(TokenUrl::new(call.url.to_owned()).unwrap())
                .set_auth_type(match call.auth {
                    Auth::Basic => AuthType::BasicAuth,
                    Auth::Post => AuthType::RequestBody,
                });
            let mut results = Vec::new();
            for _ in 0..call.calls {
                let answer = client
                    .exchange_client_credentials()
                    .add_scope(Scope::new(SCOPE.to_owned()))
                    .request_async(&send)
                    .await;
                results.push(match answer {
                    Ok(token) => json!({
                        "ok": true,
                        "access_token": token.access_token().secret(),
                    }),
                    Err(RequestTokenError::ServerResponse(error)) => json!({
                        "ok": false,
                        "error_class": "RequestTokenError::ServerResponse",
                        "error": match error.error() {
                            BasicErrorResponseType::InvalidClient => "invalid_client".to_owned(),
                            other => format!("{other:?}"),
                        },
                    }),
                    Err(other) => panic!("not an OAuth error: {other:?}"),
                });
            }
            results
        },
    )
    .await;
    let statuses = cache_statuses.into_inner().unwrap();
    // Per method: miss, hit, then the rejected secret.
    assert_eq!(statuses.len(), 6, "{statuses:#?}");
    for pair in [&statuses[0..2], &statuses[3..5]] {
        assert_eq!(pair[0], "tokencache; fwd=miss; stored", "{statuses:#?}");
        assert!(pair[1].starts_with("tokencache; hit"), "{statuses:#?}");
    }
}

/// The Rust `oauth2` crate's HTTP transport on the workspace's reqwest,
/// noting each answer's `Cache-Status`.
async fn transport(
    http: &reqwest::Client,
    cache_statuses: &Mutex<Vec<String>>,
    request: oauth2::HttpRequest,
) -> Result<oauth2::HttpResponse, reqwest::Error> {
    let (parts, body) = request.into_parts();
    let answer = http
        .request(parts.method, parts.uri.to_string())
        .headers(parts.headers)
        .body(body)
        .timeout(Duration::from_secs(20))
        .send()
        .await?;
    if let Some(value) = answer.headers().get("cache-status") {
        cache_statuses
            .lock()
            .unwrap()
            .push(value.to_str().unwrap().to_owned());
    }
    let (status, headers) = (answer.status(), answer.headers().clone());
    let mut response = oauth2::HttpResponse::new(answer.bytes().await?.to_vec());
    *response.status_mut() = status;
    *response.headers_mut() = headers;
    Ok(response)
}

/// oidc-provider (peers/oidc) on loopback.
struct OidcProvider {
    _process: Running,
    token_url: String,
}

impl OidcProvider {
    const RESOURCE: &str = "urn:tokencache:peer-api";

    fn start(access_token_ttl: u64) -> Self {
        require_program("node");
        installed("peers/oidc/node_modules/oidc-provider/package.json");
        let mut process = Running::start(
            Command::new("node")
                .arg(installed("peers/oidc/server.js"))
                .args(["--ttl", &access_token_ttl.to_string()]),
        );
        let line = process.wait_for_line("oidc-provider serving");
        Self {
            token_url: log_field(&line, "token_url"),
            _process: process,
        }
    }
}

/// One token request; returns the status, `Cache-Status`, `WWW-Authenticate`
/// and the JSON body.
async fn request_token(
    url: &str,
    auth: Auth,
    client_id: &str,
    secret: &str,
) -> (u16, String, Option<String>, Value) {
    let request = reqwest::Client::new()
        .post(url)
        .timeout(Duration::from_secs(20));
    let request = match auth {
        Auth::Basic => request
            .basic_auth(client_id, Some(secret))
            .form(&[("grant_type", "client_credentials")]),
        Auth::Post => request.form(&[
            ("grant_type", "client_credentials"),
            ("client_id", client_id),
            ("client_secret", secret),
        ]),
    };
    let answer = request.send().await.unwrap();
    let header = |name: &str| {
        answer
            .headers()
            .get(name)
            .map(|value| value.to_str().unwrap().to_owned())
    };
    let cache_status = header("cache-status").unwrap_or_default();
    let www_authenticate = header("www-authenticate");
    let status = answer.status().as_u16();
    (
        status,
        cache_status,
        www_authenticate,
        answer.json().await.unwrap(),
    )
}

#[tokio::test]
async fn oidc_provider_upstream_basic_and_body_credentials() {
    let idp = OidcProvider::start(3600);
    let proxy = Proxy::start(&idp.token_url);
    for (auth, client_id) in [(Auth::Basic, "peer-basic"), (Auth::Post, "peer-post")] {
        let secret = format!("{client_id}-secret");
        let (status, first_status, _, first) =
            request_token(&proxy.url, auth, client_id, &secret).await;
        assert_eq!(status, 200, "{auth:?}: {first}");
        assert_eq!(first_status, "tokencache; fwd=miss; stored", "{auth:?}");
        let (status, second_status, _, second) =
            request_token(&proxy.url, auth, client_id, &secret).await;
        assert_eq!(status, 200, "{auth:?}: {second}");
        assert!(
            second_status.starts_with("tokencache; hit"),
            "{auth:?}: {second_status}"
        );
        assert_eq!(first["access_token"], second["access_token"], "{auth:?}");
        let claims = jwt_claims(first["access_token"].as_str().unwrap());
        assert_eq!(claims["client_id"], client_id, "{claims}");
        assert_eq!(claims["aud"], OidcProvider::RESOURCE, "{claims}");
        let lifetime = claims["exp"].as_u64().unwrap() - claims["iat"].as_u64().unwrap();
        assert_eq!(lifetime, 3600, "{claims}");
    }
    let upstream = proxy
        .metric("tokencache_upstream_requests_total", "status=\"2xx\"")
        .await;
    assert_eq!(upstream, 2.0, "one upstream request per client");
}

#[tokio::test]
async fn oidc_provider_short_lifetimes_are_refreshed_ahead() {
    // Long enough that the window between refresh-ahead (75 %) and the end of
    // serving (90 %) spans several polls even on a loaded machine.
    const TTL: u64 = 8;
    let idp = OidcProvider::start(TTL);
    let proxy = Proxy::start(&idp.token_url);
    let fetch = || request_token(&proxy.url, Auth::Basic, "peer-basic", "peer-basic-secret");

    let (status, cache_status, _, first) = fetch().await;
    assert_eq!(
        (status, cache_status.as_str()),
        (200, "tokencache; fwd=miss; stored")
    );
    let old_token = first["access_token"].as_str().unwrap().to_owned();
    let old_exp = jwt_claims(&old_token)["exp"].as_u64().unwrap();

    // Refresh ahead starts at 75 % of the life; the new token must take over
    // while the old one is still valid, and no caller may wait for it.
    let deadline = Instant::now() + Duration::from_secs(10);
    let mut answers = Vec::new();
    let new_token = loop {
        assert!(
            Instant::now() < deadline,
            "no new token within 10 s; answers: {answers:#?}"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
        let (status, cache_status, _, body) = fetch().await;
        let now = unix_now();
        answers.push(format!("{status} {cache_status} at {now}"));
        assert_eq!(status, 200, "{body}; answers: {answers:#?}");
        assert!(
            cache_status.starts_with("tokencache; hit"),
            "a caller was not served from cache: {answers:#?}"
        );
        let expires_in = body["expires_in"].as_u64().unwrap();
        assert!((1..=TTL).contains(&expires_in), "{body}");
        let token = body["access_token"].as_str().unwrap();
        if token != old_token {
            assert!(
                now < old_exp,
                "the new token came only after the old one ended ({now} ≥ {old_exp})"
            );
            break token.to_owned();
        }
    };
    assert!(jwt_claims(&new_token)["exp"].as_u64().unwrap() >= old_exp);
    let refreshes = proxy
        .metric("tokencache_refreshes_total", "result=\"ok\"")
        .await;
    assert!(refreshes >= 1.0, "{refreshes} background refreshes");
}

#[tokio::test]
async fn oidc_provider_invalid_client_passes_through_unchanged() {
    let idp = OidcProvider::start(3600);
    let proxy = Proxy::start(&idp.token_url);
    for (auth, client_id) in [(Auth::Basic, "peer-basic"), (Auth::Post, "peer-post")] {
        let direct = request_token(&idp.token_url, auth, client_id, BAD_SECRET).await;
        assert_eq!(direct.0, 401, "{auth:?}: oidc-provider said {direct:?}");
        assert_eq!(direct.3["error"], "invalid_client");
        // The first answer is fetched; a repeat may come from the negative
        // cache. Both must look exactly like oidc-provider's own.
        for attempt in 0..2 {
            let (status, cache_status, www_authenticate, body) =
                request_token(&proxy.url, auth, client_id, BAD_SECRET).await;
            let context = format!("{auth:?} attempt {attempt}: {cache_status}");
            assert_eq!(status, 401, "{context}: {body}");
            assert_eq!(body, direct.3, "{context}");
            assert_eq!(www_authenticate, direct.2, "{context}");
        }
    }
    // A right secret still works after the rejections.
    let (status, _, _, body) =
        request_token(&proxy.url, Auth::Basic, "peer-basic", "peer-basic-secret").await;
    assert_eq!(status, 200, "{body}");
}
