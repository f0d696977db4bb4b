//! `POST /oauth2/token`: client authentication and the three grants.

use axum::Extension;
use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use serde::Serialize;
use subtle::ConstantTimeEq as _;

use crate::control::Settings;
use crate::faults::Fault;
use crate::grants::{CodeGrant, RefreshGrant};
use crate::response::{OAuthError, json_response};
use crate::scope::grant_scopes;
use crate::server::ServerStopping;
use crate::token::{TokenSpec, mint};
use crate::token_request::{Authorization, TokenRequest};
use crate::{ClientRecord, MockIdp};

/// A successful token answer.
#[derive(Debug, Serialize)]
struct TokenResponse {
    access_token: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    refresh_token: Option<String>,
    expires_in: u64,
    token_type: &'static str,
}

/// The handler: counts the request, draws its fault, waits the configured
/// latency, then delivers the fault or answers.
pub(crate) async fn token(
    State(idp): State<MockIdp>,
    stopping: Option<Extension<ServerStopping>>,
    headers: HeaderMap,
    uri: Uri,
    body: Bytes,
) -> Response {
    // One snapshot of the settings per request, so a change through
    // `/control` never applies half to a request.
    let settings = idp.settings();
    let (claimed, request) = TokenRequest::parse(&headers, uri.query(), &body);
    let stats = idp.stats_recorder();
    stats.record_request(claimed.client_id.as_deref(), claimed.grant_type.as_deref());
    if let Some(traceparent) = headers
        .get("traceparent")
        .and_then(|value| value.to_str().ok())
    {
        stats.record_traceparent(traceparent);
    }
    // Drawn on arrival, so the rate limit sees arrival times, not arrival
    // times plus latency.
    let fault = idp.draw_fault(&settings);
    if let Some(fault) = &fault {
        stats.record_fault(fault);
    }
    if !settings.latency.is_zero() {
        tokio::time::sleep(settings.latency).await;
    }
    if let Some(fault) = fault {
        let stopping = stopping.as_ref().map(|Extension(stopping)| stopping);
        return deliver_fault(&idp, fault, stopping).await;
    }
    let response = match request.and_then(|request| answer(&idp, &request, &settings)) {
        Ok(body) => json_response(StatusCode::OK, &body),
        Err(err) => {
            tracing::debug!(
                client_id = claimed.client_id.as_deref(),
                grant_type = claimed.grant_type.as_deref(),
                error = err.error,
                description = err.description.as_deref(),
                "token request refused"
            );
            err.into_response()
        }
    };
    let status = response.status();
    stats.record_answer(status.as_u16(), status == StatusCode::OK);
    response
}

/// Answers with `fault` instead of processing the request, and counts the
/// answer if there is one.
async fn deliver_fault(idp: &MockIdp, fault: Fault, stopping: Option<&ServerStopping>) -> Response {
    tracing::debug!(?fault, "token request faulted on purpose");
    let response = fault.deliver(stopping).await;
    // A reset or a hang never answers, whatever the response says.
    if !matches!(fault, Fault::Reset | Fault::Hang) {
        idp.stats_recorder()
            .record_answer(response.status().as_u16(), false);
    }
    response
}

fn answer(
    idp: &MockIdp,
    request: &TokenRequest,
    settings: &Settings,
) -> Result<TokenResponse, OAuthError> {
    let grant_type = request
        .get("grant_type")
        .ok_or_else(|| OAuthError::invalid_request("grant_type is missing"))?;
    let client = authenticate(idp, request)?;
    match grant_type {
        "client_credentials" => {
            let scopes = grant_scopes(request.get("scope"), &client.scopes)?;
            issue(idp, request, settings, client, &scopes, None)
        }
        "authorization_code" => authorization_code(idp, request, settings, client),
        "refresh_token" => refresh_token(idp, request, settings, client),
        other => Err(OAuthError::unsupported_grant_type(format!(
            "grant_type {other} is not supported"
        ))),
    }
}

/// Finds the registered client the request authenticates as.
///
/// Credentials come either from `Authorization: Basic` or from
/// `client_id` + `client_secret` in the parameters, never both. Like
/// Cognito's documented examples, a `client_id` parameter next to Basic
/// credentials is accepted when it names the same client.
fn authenticate<'a>(
    idp: &'a MockIdp,
    request: &TokenRequest,
) -> Result<&'a ClientRecord, OAuthError> {
    let body_id = request.get("client_id");
    let body_secret = request.get("client_secret");
    let (id, secret) = match &request.authorization {
        Authorization::Basic(credentials) => {
            if body_secret.is_some() {
                return Err(OAuthError::invalid_request(
                    "client credentials are given both in the Authorization header and in the body",
                ));
            }
            if body_id.is_some_and(|id| id != credentials.id) {
                return Err(OAuthError::invalid_request(
                    "client_id does not match the Authorization header",
                ));
            }
            (credentials.id.as_str(), credentials.secret.as_str())
        }
        Authorization::Malformed(why) => return Err(OAuthError::invalid_client(*why)),
        Authorization::None => match (body_id, body_secret) {
            (Some(id), Some(secret)) => (id, secret),
            (Some(_), None) => return Err(OAuthError::invalid_client("client_secret is missing")),
            (None, _) => return Err(OAuthError::invalid_client("no client credentials")),
        },
    };
    // The same answer for an unknown client and a wrong secret, and a
    // constant-time comparison, as a real IdP would.
    match idp.client(id) {
        Some(client) if bool::from(client.secret.as_bytes().ct_eq(secret.as_bytes())) => Ok(client),
        _ => Err(OAuthError::invalid_client("client authentication failed")),
    }
}

fn authorization_code(
    idp: &MockIdp,
    request: &TokenRequest,
    settings: &Settings,
    client: &ClientRecord,
) -> Result<TokenResponse, OAuthError> {
    let code = request
        .get("code")
        .ok_or_else(|| OAuthError::invalid_request("code is missing"))?;
    let grant = idp
        .grants()
        .redeem_code(code, idp.now())
        .ok_or_else(|| OAuthError::invalid_grant("the code is unknown, used or expired"))?;
    let CodeGrant {
        client_id,
        redirect_uri,
        scopes,
        ..
    } = grant;
    if client_id != client.id {
        return Err(OAuthError::invalid_grant(
            "the code was issued to another client",
        ));
    }
    if request.get("redirect_uri") != Some(redirect_uri.as_str()) {
        return Err(OAuthError::invalid_grant(
            "redirect_uri does not match the one the code was issued for",
        ));
    }
    let refresh_token = idp.grants().issue_refresh_token(RefreshGrant {
        client_id,
        scopes: scopes.clone(),
    });
    issue(idp, request, settings, client, &scopes, Some(refresh_token))
}

fn refresh_token(
    idp: &MockIdp,
    request: &TokenRequest,
    settings: &Settings,
    client: &ClientRecord,
) -> Result<TokenResponse, OAuthError> {
    let token = request
        .get("refresh_token")
        .ok_or_else(|| OAuthError::invalid_request("refresh_token is missing"))?;
    let grant = idp
        .grants()
        .refresh_grant(token)
        .filter(|grant| grant.client_id == client.id)
        .ok_or_else(|| {
            OAuthError::invalid_grant("the refresh token is not valid for this client")
        })?;
    // RFC 6749 §6: a narrower scope may be asked for, never a wider one.
    let scopes = grant_scopes(request.get("scope"), &grant.scopes)?;
    issue(idp, request, settings, client, &scopes, None)
}

fn issue(
    idp: &MockIdp,
    request: &TokenRequest,
    settings: &Settings,
    client: &ClientRecord,
    scopes: &[String],
    refresh_token: Option<String>,
) -> Result<TokenResponse, OAuthError> {
    let extra_params = request.extra_params();
    let spec = TokenSpec {
        client_id: &client.id,
        scopes,
        issuer: idp.issuer(),
        now: idp.now(),
        lifetime: settings.token_lifetime,
        client_metadata: request.get("aws_client_metadata"),
        resource: request.get("resource"),
        extra_params: &extra_params,
    };
    let access_token = mint(idp.keys(), &spec).map_err(|err| {
        tracing::error!(error = %err, "cannot sign an access token");
        OAuthError::server_error()
    })?;
    Ok(TokenResponse {
        access_token,
        refresh_token,
        expires_in: settings.token_lifetime.as_secs(),
        token_type: "Bearer",
    })
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use std::sync::Arc;
    use std::time::Duration;

    use axum::body::Body;
    use axum::http::Request;
    use axum::http::header::{CACHE_CONTROL, CONTENT_TYPE, PRAGMA};
    use jsonwebtoken::{Algorithm, DecodingKey, Validation};
    use tokencache_core::UnixMillis;

    use super::*;
    use crate::test_client::{Answer, ManualClock, demo_token, send, token_request};
    use crate::{MockIdpConfig, decode_claims_unverified};

    fn idp() -> MockIdp {
        MockIdp::new(MockIdpConfig::default())
    }

    fn claims(answer: &Answer) -> serde_json::Value {
        decode_claims_unverified(&answer.access_token()).unwrap()
    }

    fn assert_error(answer: &Answer, error: &str) {
        assert_eq!(
            answer.status,
            StatusCode::BAD_REQUEST,
            "{:?}",
            answer.json()
        );
        assert_eq!(answer.error(), error, "{:?}", answer.json());
        assert_cognito_headers(answer);
    }

    fn assert_cognito_headers(answer: &Answer) {
        assert_eq!(
            answer.headers[CONTENT_TYPE],
            "application/json;charset=UTF-8"
        );
        assert_eq!(answer.headers[CACHE_CONTROL], "no-store");
        assert_eq!(answer.headers[PRAGMA], "no-cache");
    }

    #[tokio::test]
    async fn client_credentials_with_basic_auth() {
        let idp = idp();
        let answer = demo_token(&idp, "grant_type=client_credentials&scope=api/read").await;
        assert_eq!(answer.status, StatusCode::OK);
        assert_cognito_headers(&answer);
        let json = answer.json();
        assert_eq!(json["token_type"], "Bearer");
        assert_eq!(json["expires_in"], 3600);
        assert!(json.get("refresh_token").is_none());
        assert_eq!(json.as_object().unwrap().len(), 3, "{json}");
        assert_eq!(claims(&answer)["scope"], "api/read");
    }

    #[tokio::test]
    async fn client_credentials_with_body_credentials() {
        let idp = idp();
        let answer = send(
            &idp,
            token_request(
                None,
                None,
                "grant_type=client_credentials&client_id=other-client&client_secret=other-secret",
            ),
        )
        .await;
        let claims = claims(&answer);
        assert_eq!(claims["client_id"], "other-client");
        assert_eq!(claims["scope"], "api/read api/write api/admin");
    }

    #[tokio::test]
    async fn basic_credentials_are_urlencoded_before_base64() {
        let idp = MockIdp::new(MockIdpConfig {
            clients: vec![ClientRecord::new("id:with+odd chars", "sécret:+&=", ["s"])],
            ..MockIdpConfig::default()
        });
        let answer = send(
            &idp,
            token_request(
                Some(("id:with+odd chars", "sécret:+&=")),
                None,
                "grant_type=client_credentials",
            ),
        )
        .await;
        assert_eq!(claims(&answer)["sub"], "id:with+odd chars");
    }

    #[tokio::test]
    async fn credentials_in_both_places_are_refused() {
        let idp = idp();
        let answer = demo_token(
            &idp,
            "grant_type=client_credentials&client_id=demo-client&client_secret=demo-secret",
        )
        .await;
        assert_error(&answer, "invalid_request");
        let answer = demo_token(&idp, "grant_type=client_credentials&client_id=other-client").await;
        assert_error(&answer, "invalid_request");
        // The same client id next to Basic credentials is fine, as in
        // Cognito's documented examples.
        let answer = demo_token(&idp, "grant_type=client_credentials&client_id=demo-client").await;
        assert_eq!(answer.status, StatusCode::OK);
    }

    #[tokio::test]
    async fn bad_credentials_are_invalid_client() {
        let idp = idp();
        for (credentials, body) in [
            (
                Some(("demo-client", "wrong")),
                "grant_type=client_credentials",
            ),
            (
                Some(("nobody", "demo-secret")),
                "grant_type=client_credentials",
            ),
            (
                None,
                "grant_type=client_credentials&client_id=demo-client&client_secret=x",
            ),
            (None, "grant_type=client_credentials&client_id=demo-client"),
            (None, "grant_type=client_credentials"),
        ] {
            let answer = send(&idp, token_request(credentials, None, body)).await;
            assert_error(&answer, "invalid_client");
        }
        let request = Request::post("/oauth2/token")
            .header("content-type", "application/x-www-form-urlencoded")
            .header("authorization", "Basic not-base64!")
            .body(Body::from("grant_type=client_credentials"))
            .unwrap();
        assert_error(&send(&idp, request).await, "invalid_client");
    }

    #[tokio::test]
    async fn scopes() {
        let idp = idp();
        let answer = demo_token(&idp, "grant_type=client_credentials&scope=api/admin").await;
        assert_error(&answer, "invalid_scope");
        let answer = demo_token(&idp, "grant_type=client_credentials&scope=api/read+nope").await;
        assert_error(&answer, "invalid_scope");
        let answer = demo_token(&idp, "grant_type=client_credentials").await;
        assert_eq!(claims(&answer)["scope"], "api/read api/write");
        let answer = demo_token(
            &idp,
            "grant_type=client_credentials&scope=api%2Fwrite%20api%2Fread%20api%2Fwrite",
        )
        .await;
        assert_eq!(claims(&answer)["scope"], "api/write api/read");
    }

    #[tokio::test]
    async fn scope_may_come_in_the_query_string() {
        let idp = idp();
        let answer = send(
            &idp,
            token_request(
                Some(("demo-client", "demo-secret")),
                Some("scope=api%2Fwrite"),
                "grant_type=client_credentials",
            ),
        )
        .await;
        assert_eq!(claims(&answer)["scope"], "api/write");
    }

    #[tokio::test]
    async fn access_token_verifies_with_the_public_key() {
        let idp = idp();
        let answer = demo_token(&idp, "grant_type=client_credentials").await;
        let token = answer.access_token();
        let key = DecodingKey::from_rsa_pem(idp.decoding_key_pem().as_bytes()).unwrap();
        let mut validation = Validation::new(Algorithm::RS256);
        validation.set_issuer(&["http://mock-idp.tokencache.local"]);
        let data = jsonwebtoken::decode::<serde_json::Value>(&token, &key, &validation).unwrap();
        assert_eq!(data.header.kid.as_deref(), Some(idp.key_id()));
        let claims = data.claims;
        assert_eq!(claims["sub"], "demo-client");
        assert_eq!(claims["client_id"], "demo-client");
        assert_eq!(claims["token_use"], "access");
        assert_eq!(claims["version"], 2);
        assert_eq!(claims["iss"], "http://mock-idp.tokencache.local");
        let iat = claims["iat"].as_u64().unwrap();
        assert_eq!(claims["exp"].as_u64().unwrap(), iat + 3600);
        assert!(claims["jti"].as_str().is_some_and(|jti| !jti.is_empty()));
        assert_eq!(idp.verify_access_token(&token).unwrap(), claims);
    }

    #[tokio::test]
    async fn iat_and_exp_follow_the_injected_clock() {
        let clock = Arc::new(ManualClock::new(UnixMillis(1_700_000_000_500)));
        let idp = MockIdp::with_clock(MockIdpConfig::default(), clock.clone());
        let first = claims(&demo_token(&idp, "grant_type=client_credentials").await);
        assert_eq!(first["iat"], 1_700_000_000);
        assert_eq!(first["exp"], 1_700_003_600);
        clock.advance_millis(10_000);
        let second = claims(&demo_token(&idp, "grant_type=client_credentials").await);
        assert_eq!(second["iat"], 1_700_000_010);
        assert_ne!(first["jti"], second["jti"]);
    }

    #[tokio::test]
    async fn metadata_resource_and_extra_params_become_claims() {
        let idp = idp();
        let answer = send(
            &idp,
            token_request(
                Some(("demo-client", "demo-secret")),
                Some("tenant=acme"),
                "grant_type=client_credentials&aws_client_metadata=%7B%22k%22%3A%22v%22%7D\
                 &resource=https%3A%2F%2Fapi.example.com&color=blue",
            ),
        )
        .await;
        let claims = claims(&answer);
        assert_eq!(claims["client_metadata"], r#"{"k":"v"}"#);
        assert_eq!(claims["aud"], "https://api.example.com");
        assert_eq!(
            claims["extra_params"],
            serde_json::json!({"color": "blue", "tenant": "acme"})
        );
        let plain = self::claims(&demo_token(&idp, "grant_type=client_credentials").await);
        for absent in ["client_metadata", "aud", "extra_params"] {
            assert!(plain.get(absent).is_none(), "{absent} in {plain}");
        }
    }

    #[tokio::test]
    async fn grant_types() {
        let idp = idp();
        assert_error(&demo_token(&idp, "scope=api/read").await, "invalid_request");
        assert_error(
            &demo_token(&idp, "grant_type=password").await,
            "unsupported_grant_type",
        );
        assert_error(&demo_token(&idp, "grant_type=").await, "invalid_request");
    }

    #[tokio::test]
    async fn content_type_must_be_a_form() {
        let idp = idp();
        for content_type in [Some("application/json"), Some("text/plain"), None] {
            let mut builder = Request::post("/oauth2/token").header(
                "authorization",
                crate::test_client::basic("demo-client", "demo-secret"),
            );
            if let Some(content_type) = content_type {
                builder = builder.header("content-type", content_type);
            }
            let request = builder
                .body(Body::from("grant_type=client_credentials"))
                .unwrap();
            assert_error(&send(&idp, request).await, "invalid_request");
        }
        let request = Request::post("/oauth2/token")
            .header(
                "authorization",
                crate::test_client::basic("demo-client", "demo-secret"),
            )
            .header(
                "content-type",
                "Application/X-WWW-Form-Urlencoded; Charset=UTF-8",
            )
            .body(Body::from("grant_type=client_credentials"))
            .unwrap();
        assert_eq!(send(&idp, request).await.status, StatusCode::OK);
    }

    #[tokio::test]
    async fn duplicate_parameters_are_refused() {
        let idp = idp();
        let answer = demo_token(
            &idp,
            "grant_type=client_credentials&scope=api/read&scope=api/write",
        )
        .await;
        assert_error(&answer, "invalid_request");
        let answer = send(
            &idp,
            token_request(
                Some(("demo-client", "demo-secret")),
                Some("scope=api/read"),
                "grant_type=client_credentials&scope=api/read",
            ),
        )
        .await;
        assert_error(&answer, "invalid_request");
    }

    /// Runs `/oauth2/authorize` for demo-client and returns the code.
    async fn authorize(idp: &MockIdp, redirect_uri: &str, scope: Option<&str>) -> String {
        let mut query = vec![
            ("response_type", "code"),
            ("client_id", "demo-client"),
            ("redirect_uri", redirect_uri),
            ("state", "xyz"),
        ];
        if let Some(scope) = scope {
            query.push(("scope", scope));
        }
        let uri = format!(
            "/oauth2/authorize?{}",
            serde_urlencoded::to_string(&query).unwrap()
        );
        let answer = send(idp, Request::get(uri).body(Body::empty()).unwrap()).await;
        assert_eq!(answer.status, StatusCode::FOUND);
        let location = answer.headers["location"].to_str().unwrap();
        let (_, query) = location.split_once('?').unwrap();
        let pairs: Vec<(String, String)> = serde_urlencoded::from_str(query).unwrap();
        pairs
            .into_iter()
            .find(|(name, _)| name == "code")
            .map(|(_, code)| code)
            .unwrap()
    }

    fn code_body(code: &str, redirect_uri: &str) -> String {
        serde_urlencoded::to_string([
            ("grant_type", "authorization_code"),
            ("code", code),
            ("redirect_uri", redirect_uri),
        ])
        .unwrap()
    }

    #[tokio::test]
    async fn authorization_code_is_single_use() {
        let idp = idp();
        let redirect_uri = "https://app.example/callback";
        let code = authorize(&idp, redirect_uri, Some("api/write")).await;
        let answer = demo_token(&idp, &code_body(&code, redirect_uri)).await;
        assert_eq!(answer.status, StatusCode::OK, "{:?}", answer.json());
        let json = answer.json();
        assert!(
            json["refresh_token"]
                .as_str()
                .is_some_and(|t| !t.is_empty())
        );
        assert_eq!(json["expires_in"], 3600);
        assert_eq!(claims(&answer)["scope"], "api/write");

        let again = demo_token(&idp, &code_body(&code, redirect_uri)).await;
        assert_error(&again, "invalid_grant");
        assert_error(
            &demo_token(&idp, &code_body("no-such-code", redirect_uri)).await,
            "invalid_grant",
        );
        assert_error(
            &demo_token(&idp, "grant_type=authorization_code&redirect_uri=x:y").await,
            "invalid_request",
        );
    }

    #[tokio::test]
    async fn authorization_code_checks_redirect_uri_and_client() {
        let idp = idp();
        let code = authorize(&idp, "https://app.example/cb", None).await;
        let answer = demo_token(&idp, &code_body(&code, "https://evil.example/cb")).await;
        assert_error(&answer, "invalid_grant");

        let code = authorize(&idp, "https://app.example/cb", None).await;
        let answer = send(
            &idp,
            token_request(
                Some(("other-client", "other-secret")),
                None,
                &code_body(&code, "https://app.example/cb"),
            ),
        )
        .await;
        assert_error(&answer, "invalid_grant");
    }

    #[tokio::test]
    async fn authorization_codes_expire() {
        let clock = Arc::new(ManualClock::new(UnixMillis(1_700_000_000_000)));
        let idp = MockIdp::with_clock(MockIdpConfig::default(), clock.clone());
        let code = authorize(&idp, "https://app.example/cb", None).await;
        clock.advance_millis(300_000);
        let answer = demo_token(&idp, &code_body(&code, "https://app.example/cb")).await;
        assert_error(&answer, "invalid_grant");
    }

    #[tokio::test]
    async fn refresh_token_grant() {
        let idp = idp();
        let code = authorize(&idp, "https://app.example/cb", None).await;
        let answer = demo_token(&idp, &code_body(&code, "https://app.example/cb")).await;
        let refresh = answer.json()["refresh_token"].as_str().unwrap().to_owned();
        let body = |extra: &str| format!("grant_type=refresh_token&refresh_token={refresh}{extra}");

        let refreshed = demo_token(&idp, &body("")).await;
        assert_eq!(refreshed.status, StatusCode::OK);
        let json = refreshed.json();
        assert!(json.get("refresh_token").is_none(), "{json}");
        assert_ne!(refreshed.access_token(), answer.access_token());
        assert_eq!(claims(&refreshed)["scope"], "api/read api/write");
        // Reusable, and may narrow the scope.
        let narrowed = demo_token(&idp, &body("&scope=api/read")).await;
        assert_eq!(claims(&narrowed)["scope"], "api/read");

        let other = send(
            &idp,
            token_request(Some(("other-client", "other-secret")), None, &body("")),
        )
        .await;
        assert_error(&other, "invalid_grant");
        assert_error(
            &demo_token(&idp, "grant_type=refresh_token&refresh_token=unknown").await,
            "invalid_grant",
        );
        assert_error(
            &demo_token(&idp, "grant_type=refresh_token").await,
            "invalid_request",
        );
    }

    #[tokio::test]
    async fn counters_see_every_request() {
        let idp = idp();
        demo_token(&idp, "grant_type=client_credentials").await;
        demo_token(&idp, "grant_type=client_credentials&scope=api/admin").await;
        send(
            &idp,
            token_request(Some(("demo-client", "wrong")), None, "grant_type=x"),
        )
        .await;
        send(
            &idp,
            token_request(
                None,
                None,
                "grant_type=client_credentials&client_id=other-client&client_secret=other-secret",
            ),
        )
        .await;
        send(&idp, token_request(None, None, "")).await;

        assert_eq!(idp.token_requests(), 5);
        assert_eq!(idp.token_requests_for("demo-client"), 3);
        assert_eq!(idp.token_requests_for("other-client"), 1);
        assert_eq!(idp.token_requests_for("nobody"), 0);
        let stats = idp.stats();
        assert_eq!(stats.tokens_issued, 2);
        assert_eq!(stats.by_grant["client_credentials"], 3);
        assert_eq!(stats.by_grant["x"], 1);
        assert_eq!(stats.by_grant["none"], 1);
        assert_eq!(stats.by_status[&200], 2);
        assert_eq!(stats.by_status[&400], 3);

        idp.reset_stats();
        assert_eq!(idp.token_requests(), 0);
        assert_eq!(idp.stats(), crate::Stats::default());
    }

    #[tokio::test]
    async fn lifetime_changes_apply_to_new_tokens() {
        let idp = idp();
        idp.set_token_lifetime(Duration::from_secs(60));
        let answer = demo_token(&idp, "grant_type=client_credentials").await;
        assert_eq!(answer.json()["expires_in"], 60);
        let claims = claims(&answer);
        assert_eq!(
            claims["exp"].as_u64().unwrap() - claims["iat"].as_u64().unwrap(),
            60
        );
    }

    #[tokio::test(start_paused = true)]
    async fn latency_is_applied_before_answering() {
        let idp = MockIdp::new(MockIdpConfig {
            latency: Duration::from_secs(5),
            ..MockIdpConfig::default()
        });
        let started = tokio::time::Instant::now();
        let answer = demo_token(&idp, "grant_type=client_credentials").await;
        assert_eq!(answer.status, StatusCode::OK);
        assert!(started.elapsed() >= Duration::from_secs(5));

        // Errors wait too, and the request is counted on arrival.
        idp.set_latency(Duration::from_millis(700));
        let started = tokio::time::Instant::now();
        let pending = tokio::spawn({
            let idp = idp.clone();
            async move { demo_token(&idp, "grant_type=password").await }
        });
        while idp.token_requests() < 2 {
            tokio::task::yield_now().await;
        }
        assert_eq!(idp.stats().by_status.values().sum::<u64>(), 1);
        let answer = pending.await.unwrap();
        assert_eq!(answer.error(), "unsupported_grant_type");
        let waited = started.elapsed();
        assert!(waited >= Duration::from_millis(700), "{waited:?}");
        assert!(waited < Duration::from_secs(5), "{waited:?}");
        assert_eq!(idp.stats().by_status.values().sum::<u64>(), 2);
    }
}
