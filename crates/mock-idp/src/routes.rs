//! The HTTP interface: which path goes to which handler, and the small
//! handlers of the admin endpoints (`/stats`, `/control`, the JWKS).

use axum::Router;
use axum::body::Bytes;
use axum::extract::State;
use axum::http::StatusCode;
use axum::middleware::map_response;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};

use crate::control::ControlUpdate;
use crate::response::{OAuthError, json_response, no_store};
use crate::{MockIdp, authorize, native, token_endpoint};

/// The router of `idp`. See the crate docs for the endpoints.
pub(crate) fn router(idp: MockIdp) -> Router {
    Router::new()
        .route("/", post(native::native))
        .route("/oauth2/token", post(token_endpoint::token))
        .route("/oauth2/authorize", get(authorize::authorize))
        .route("/.well-known/jwks.json", get(jwks))
        .route("/stats", get(stats))
        .route("/stats/reset", post(reset_stats))
        .route("/control", get(settings).post(control))
        .fallback(not_found)
        // After every route: it applies to the routes already added.
        .method_not_allowed_fallback(method_not_allowed)
        .layer(map_response(no_store))
        .with_state(idp)
}

async fn jwks(State(idp): State<MockIdp>) -> Response {
    json_response(StatusCode::OK, &idp.jwks())
}

async fn stats(State(idp): State<MockIdp>) -> Response {
    json_response(StatusCode::OK, &idp.stats())
}

async fn reset_stats(State(idp): State<MockIdp>) -> StatusCode {
    idp.reset_stats();
    StatusCode::NO_CONTENT
}

async fn settings(State(idp): State<MockIdp>) -> Response {
    json_response(StatusCode::OK, &idp.settings())
}

/// `POST /control`: a JSON [`ControlUpdate`]; an empty body changes nothing.
/// Answers the settings in force afterwards. An update with a value out of
/// range changes nothing.
async fn control(State(idp): State<MockIdp>, body: Bytes) -> Response {
    let update = if body.iter().all(u8::is_ascii_whitespace) {
        ControlUpdate::default()
    } else {
        match parse_update(&body) {
            Ok(update) => update,
            Err(err) => {
                return OAuthError::invalid_request(format!("invalid control request: {err}"))
                    .into_response();
            }
        }
    };
    if let Err(err) = update.validate() {
        return OAuthError::invalid_request(format!("invalid control request: {err}"))
            .into_response();
    }
    let settings = idp.apply(&update);
    tracing::info!(?settings, "mock IdP settings changed");
    json_response(StatusCode::OK, &settings)
}

/// A JSON object as a [`ControlUpdate`]. Serde would also take an array of
/// the fields in order; only the object form is documented, so only it is
/// accepted.
fn parse_update(body: &[u8]) -> Result<ControlUpdate, serde_json::Error> {
    let value: serde_json::Value = serde_json::from_slice(body)?;
    if !value.is_object() {
        return Err(serde::de::Error::custom("expected a JSON object"));
    }
    serde_json::from_value(value)
}

async fn not_found() -> OAuthError {
    OAuthError::not_found()
}

async fn method_not_allowed() -> OAuthError {
    OAuthError::method_not_allowed()
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use axum::body::Body;
    use axum::http::Request;
    use axum::http::header::{ALLOW, CACHE_CONTROL, CONTENT_TYPE, PRAGMA};

    use super::*;
    use crate::MockIdpConfig;
    use crate::test_client::{demo_token, send};

    fn idp() -> MockIdp {
        MockIdp::new(MockIdpConfig::default())
    }

    fn get(uri: &str) -> Request<Body> {
        Request::get(uri).body(Body::empty()).unwrap()
    }

    fn post_json(uri: &str, body: &str) -> Request<Body> {
        Request::post(uri)
            .header(CONTENT_TYPE, "application/json")
            .body(Body::from(body.to_owned()))
            .unwrap()
    }

    #[tokio::test]
    async fn jwks_serves_the_public_key() {
        let idp = idp();
        let answer = send(&idp, get("/.well-known/jwks.json")).await;
        assert_eq!(answer.status, StatusCode::OK);
        assert_eq!(
            answer.headers[CONTENT_TYPE],
            "application/json;charset=UTF-8"
        );
        let jwks = answer.json();
        assert_eq!(jwks, idp.jwks());
        let key = &jwks["keys"][0];
        assert_eq!(key["kty"], "RSA");
        assert_eq!(key["alg"], "RS256");
        assert_eq!(key["use"], "sig");
        assert_eq!(key["kid"], idp.key_id());

        // A token verifies against the published JWK.
        let token = demo_token(&idp, "grant_type=client_credentials")
            .await
            .access_token();
        let jwk: jsonwebtoken::jwk::Jwk = serde_json::from_value(key.clone()).unwrap();
        let decoding = jsonwebtoken::DecodingKey::from_jwk(&jwk).unwrap();
        let validation = jsonwebtoken::Validation::new(jsonwebtoken::Algorithm::RS256);
        jsonwebtoken::decode::<serde_json::Value>(&token, &decoding, &validation).unwrap();
    }

    #[tokio::test]
    async fn stats_and_reset() {
        let idp = idp();
        demo_token(&idp, "grant_type=client_credentials").await;
        let answer = send(&idp, get("/stats")).await;
        assert_eq!(answer.status, StatusCode::OK);
        let stats: crate::Stats = serde_json::from_slice(&answer.body).unwrap();
        assert_eq!(stats, idp.stats());
        assert_eq!(stats.token_requests, 1);
        assert_eq!(stats.by_client["demo-client"], 1);
        assert_eq!(answer.json()["by_status"]["200"], 1);

        let reset = send(
            &idp,
            Request::post("/stats/reset").body(Body::empty()).unwrap(),
        )
        .await;
        assert_eq!(reset.status, StatusCode::NO_CONTENT);
        assert!(reset.body.is_empty());
        assert_eq!(idp.stats(), crate::Stats::default());
    }

    #[tokio::test]
    async fn control_changes_the_lifetime() {
        let idp = idp();
        let answer = send(
            &idp,
            post_json("/control", r#"{"token_lifetime_secs": 120}"#),
        )
        .await;
        assert_eq!(answer.status, StatusCode::OK);
        let json = answer.json();
        assert_eq!(json["latency_ms"], 0);
        assert_eq!(json["token_lifetime_secs"], 120);
        let token = demo_token(&idp, "grant_type=client_credentials").await;
        assert_eq!(token.json()["expires_in"], 120);

        let answer = send(&idp, post_json("/control", r#"{"latency_ms": 25}"#)).await;
        let json = answer.json();
        assert_eq!(json["latency_ms"], 25);
        assert_eq!(json["token_lifetime_secs"], 120);
        assert_eq!(idp.settings().latency, std::time::Duration::from_millis(25));
        assert_eq!(send(&idp, get("/control")).await.json(), answer.json());
        assert_eq!(
            send(&idp, post_json("/control", "")).await.json(),
            answer.json()
        );
    }

    #[tokio::test]
    async fn control_sets_and_clears_faults() {
        let idp = idp();
        let answer = send(
            &idp,
            post_json(
                "/control",
                r#"{"rate_limit_per_sec": 50, "throttle_style": "cognito400",
                    "error_rate": 0.25, "reset_rate": 0.5, "garbage_rate": 1, "hang_rate": 0}"#,
            ),
        )
        .await;
        assert_eq!(answer.status, StatusCode::OK);
        assert_eq!(
            answer.json(),
            serde_json::json!({
                "latency_ms": 0, "token_lifetime_secs": 3600,
                "rate_limit_per_sec": 50, "throttle_style": "cognito400",
                "error_rate": 0.25, "reset_rate": 0.5, "garbage_rate": 1.0, "hang_rate": 0.0,
            })
        );
        let settings = idp.settings();
        assert_eq!(settings.rate_limit_per_sec, std::num::NonZeroU32::new(50));
        assert_eq!(settings.throttle_style, crate::ThrottleStyle::Cognito400);

        let answer = send(
            &idp,
            post_json("/control", r#"{"rate_limit_per_sec": null}"#),
        )
        .await;
        assert_eq!(answer.json()["rate_limit_per_sec"], serde_json::Value::Null);
        assert_eq!(answer.json()["reset_rate"], 0.5);
        let healthy = serde_json::to_string(&ControlUpdate::healthy()).unwrap();
        let answer = send(&idp, post_json("/control", &healthy)).await;
        assert_eq!(answer.json()["garbage_rate"], 0.0);
        assert_eq!(answer.json()["throttle_style"], "cognito400");
    }

    #[tokio::test]
    async fn control_refuses_bad_bodies() {
        let idp = idp();
        for body in [
            "{",
            r#"{"latency":1}"#,
            r#"{"latency_ms":-1}"#,
            "[]",
            r#"{"error_rate":1.5}"#,
            r#"{"latency_ms":5,"hang_rate":-0.5}"#,
            r#"{"rate_limit_per_sec":-1}"#,
            r#"{"throttle_style":"http503"}"#,
        ] {
            let answer = send(&idp, post_json("/control", body)).await;
            assert_eq!(answer.status, StatusCode::BAD_REQUEST, "{body}");
            assert_eq!(answer.error(), "invalid_request", "{body}");
        }
        assert_eq!(
            idp.settings(),
            MockIdp::new(MockIdpConfig::default()).settings()
        );
    }

    #[tokio::test]
    async fn unknown_paths_are_404_json() {
        let answer = send(&idp(), get("/nope")).await;
        assert_eq!(answer.status, StatusCode::NOT_FOUND);
        assert_eq!(answer.error(), "not_found");
        assert_eq!(
            answer.headers[CONTENT_TYPE],
            "application/json;charset=UTF-8"
        );
        assert_eq!(answer.headers[CACHE_CONTROL], "no-store");
        assert_eq!(answer.headers[PRAGMA], "no-cache");
    }

    #[tokio::test]
    async fn wrong_methods_are_405() {
        let idp = idp();
        for (method, uri) in [
            ("GET", "/oauth2/token"),
            ("POST", "/oauth2/authorize"),
            ("DELETE", "/stats"),
            ("GET", "/stats/reset"),
            ("PUT", "/control"),
            ("POST", "/.well-known/jwks.json"),
        ] {
            let request = Request::builder()
                .method(method)
                .uri(uri)
                .body(Body::empty())
                .unwrap();
            let answer = send(&idp, request).await;
            assert_eq!(
                answer.status,
                StatusCode::METHOD_NOT_ALLOWED,
                "{method} {uri}"
            );
            assert_eq!(answer.error(), "method_not_allowed");
            assert!(answer.headers.contains_key(ALLOW), "{method} {uri}");
        }
        // A GET of the token endpoint is not a token request.
        assert_eq!(idp.token_requests(), 0);
    }
}
