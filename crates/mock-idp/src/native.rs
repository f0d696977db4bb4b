//! `POST /` with `X-Amz-Target`: Cognito's native API (AWS JSON 1.1), the
//! operations a service account uses.
//!
//! - `InitiateAuth` with `USER_PASSWORD_AUTH` (the `NEW_PASSWORD_REQUIRED`
//!   challenge for a user that must change its password) and
//!   `REFRESH_TOKEN_AUTH` / `REFRESH_TOKEN`; `SECRET_HASH` is required and
//!   checked for every client with a secret (Base64(HMAC-SHA256(secret,
//!   USERNAME + ClientId))).
//! - `RespondToAuthChallenge` with `NEW_PASSWORD_REQUIRED`.
//! - `GetClientToken`: `ClientId`, `Secret`, `Scopes`.
//!
//! Errors are Cognito's: `400 {"__type","message"}` with
//! `X-Amzn-ErrorType`; throttling (the `/control` rate limit) is
//! `TooManyRequestsException`, server errors `InternalErrorException`.

use axum::Extension;
use axum::body::Bytes;
use axum::extract::State;
use axum::http::header::CONTENT_TYPE;
use axum::http::{HeaderMap, HeaderName, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use base64::Engine as _;
use hmac::{Hmac, KeyInit, Mac};
use serde::Serialize;
use serde_json::{Map, Value, json};
use sha2::Sha256;
use subtle::ConstantTimeEq as _;

use crate::faults::Fault;
use crate::grants::random_token;
use crate::keys::ALGORITHM;
use crate::native_state::{Holder, UserStatus};
use crate::scope::grant_scopes;
use crate::server::ServerStopping;
use crate::token::{TokenSpec, mint};
use crate::{ClientRecord, MockIdp, MockIdpError};

const TARGET_PREFIX: &str = "AWSCognitoIdentityProviderService.";
const AWS_JSON: &str = "application/x-amz-json-1.1";

/// A Cognito error answer.
#[derive(Debug)]
pub(crate) struct NativeError {
    status: StatusCode,
    kind: &'static str,
    message: String,
}

impl NativeError {
    fn new(kind: &'static str, message: impl Into<String>) -> Self {
        Self {
            status: StatusCode::BAD_REQUEST,
            kind,
            message: message.into(),
        }
    }

    fn not_authorized(message: impl Into<String>) -> Self {
        Self::new("NotAuthorizedException", message)
    }

    fn invalid(message: impl Into<String>) -> Self {
        Self::new("InvalidParameterException", message)
    }

    fn internal(status: StatusCode) -> Self {
        Self {
            status,
            kind: "InternalErrorException",
            message: "Internal server error".into(),
        }
    }
}

impl IntoResponse for NativeError {
    fn into_response(self) -> Response {
        let body = json!({"__type": self.kind, "message": self.message});
        (
            self.status,
            [
                (CONTENT_TYPE, HeaderValue::from_static(AWS_JSON)),
                (
                    HeaderName::from_static("x-amzn-errortype"),
                    HeaderValue::from_static(self.kind),
                ),
            ],
            body.to_string(),
        )
            .into_response()
    }
}

fn answer(body: &Value) -> Response {
    (
        StatusCode::OK,
        [(CONTENT_TYPE, HeaderValue::from_static(AWS_JSON))],
        body.to_string(),
    )
        .into_response()
}

/// The handler: counts the request, draws its fault (the same faults and
/// rate limit as the token endpoint, in Cognito's shapes), waits the
/// configured latency, then answers.
pub(crate) async fn native(
    State(idp): State<MockIdp>,
    stopping: Option<Extension<ServerStopping>>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let settings = idp.settings();
    let operation = headers
        .get("x-amz-target")
        .and_then(|value| value.to_str().ok())
        .and_then(|target| target.strip_prefix(TARGET_PREFIX))
        .unwrap_or_default()
        .to_owned();
    let request = serde_json::from_slice::<Value>(&body).ok();
    idp.native().record(
        &operation,
        request
            .as_ref()
            .and_then(|r| user_named(&idp, r))
            .as_deref(),
    );
    let fault = idp.draw_fault(&settings);
    if let Some(fault) = &fault {
        idp.stats_recorder().record_fault(fault);
    }
    if !settings.latency.is_zero() {
        tokio::time::sleep(settings.latency).await;
    }
    if let Some(fault) = fault {
        let stopping = stopping.as_ref().map(|Extension(stopping)| stopping);
        return deliver_fault(fault, stopping).await;
    }
    let Some(Value::Object(request)) = request else {
        return NativeError::new("SerializationException", "the body is not a JSON object")
            .into_response();
    };
    let result = match operation.as_str() {
        "InitiateAuth" => initiate_auth(&idp, &request),
        "RespondToAuthChallenge" => respond_to_auth_challenge(&idp, &request),
        "GetClientToken" => get_client_token(&idp, &request),
        "" => Err(NativeError::new(
            "UnknownOperationException",
            "X-Amz-Target names no operation",
        )),
        other => Err(NativeError::new(
            "UnknownOperationException",
            format!("the mock IdP does not implement {other}"),
        )),
    };
    match result {
        Ok(body) => {
            idp.native().record_issued_if(&body);
            answer(&body)
        }
        Err(error) => error.into_response(),
    }
}

/// The user a sign-in names, for the counters.
fn user_named(idp: &MockIdp, request: &Value) -> Option<String> {
    let parameters = request
        .get("AuthParameters")
        .or_else(|| request.get("ChallengeResponses"))?;
    if let Some(user) = parameters.get("USERNAME").and_then(Value::as_str) {
        return Some(user.to_owned());
    }
    let token = parameters.get("REFRESH_TOKEN").and_then(Value::as_str)?;
    idp.native()
        .refresh_holder(token)
        .map(|holder| holder.username)
}

async fn deliver_fault(fault: Fault, stopping: Option<&ServerStopping>) -> Response {
    tracing::debug!(?fault, "native request faulted on purpose");
    match fault {
        Fault::Throttled { .. } => {
            NativeError::new("TooManyRequestsException", "Rate exceeded").into_response()
        }
        Fault::ServerError(status) => NativeError::internal(status).into_response(),
        other => other.deliver(stopping).await,
    }
}

fn string<'a>(object: &'a Map<String, Value>, name: &str) -> Option<&'a str> {
    object.get(name).and_then(Value::as_str)
}

fn object<'a>(request: &'a Map<String, Value>, name: &str) -> Option<&'a Map<String, Value>> {
    request.get(name).and_then(Value::as_object)
}

fn client<'a>(
    idp: &'a MockIdp,
    request: &Map<String, Value>,
) -> Result<&'a ClientRecord, NativeError> {
    let id = string(request, "ClientId")
        .ok_or_else(|| NativeError::invalid("1 validation error detected: ClientId is null"))?;
    idp.client(id).ok_or_else(|| {
        NativeError::new(
            "ResourceNotFoundException",
            format!("User pool client {id} does not exist."),
        )
    })
}

/// `SECRET_HASH` for `username` and `client`: Base64(HMAC-SHA256(key =
/// the client secret, message = username + client id)).
#[must_use]
pub fn secret_hash(client_secret: &str, username: &str, client_id: &str) -> String {
    // HMAC takes keys of any length.
    let Ok(mut mac) = <Hmac<Sha256> as KeyInit>::new_from_slice(client_secret.as_bytes()) else {
        return String::new();
    };
    mac.update(username.as_bytes());
    mac.update(client_id.as_bytes());
    base64::engine::general_purpose::STANDARD.encode(mac.finalize().into_bytes())
}

/// Checks `SECRET_HASH` for a client that has a secret.
fn check_secret_hash(
    client: &ClientRecord,
    username: &str,
    given: Option<&str>,
) -> Result<(), NativeError> {
    if client.secret.is_empty() {
        return Ok(());
    }
    let expected = secret_hash(&client.secret, username, &client.id);
    match given {
        Some(given) if bool::from(given.as_bytes().ct_eq(expected.as_bytes())) => Ok(()),
        _ => Err(NativeError::not_authorized(format!(
            "Unable to verify secret hash for client {}",
            client.id
        ))),
    }
}

fn initiate_auth(idp: &MockIdp, request: &Map<String, Value>) -> Result<Value, NativeError> {
    let client = client(idp, request)?;
    let flow = string(request, "AuthFlow")
        .ok_or_else(|| NativeError::invalid("1 validation error detected: AuthFlow is null"))?;
    let parameters = object(request, "AuthParameters")
        .cloned()
        .unwrap_or_default();
    let metadata = object(request, "ClientMetadata");
    match flow {
        "USER_PASSWORD_AUTH" => {
            let username = string(&parameters, "USERNAME")
                .ok_or_else(|| NativeError::invalid("Missing required parameter USERNAME"))?;
            let password = string(&parameters, "PASSWORD")
                .ok_or_else(|| NativeError::invalid("Missing required parameter PASSWORD"))?;
            check_secret_hash(client, username, string(&parameters, "SECRET_HASH"))?;
            let user = idp
                .native()
                .user(username)
                .ok_or_else(|| NativeError::new("UserNotFoundException", "User does not exist."))?;
            if !bool::from(user.password.as_bytes().ct_eq(password.as_bytes())) {
                return Err(NativeError::not_authorized(
                    "Incorrect username or password.",
                ));
            }
            let holder = Holder {
                username: user.username.clone(),
                client_id: client.id.clone(),
            };
            if user.status == UserStatus::ForceChangePassword {
                let session = idp.native().open_session(holder);
                return Ok(json!({
                    "ChallengeName": "NEW_PASSWORD_REQUIRED",
                    "Session": session,
                    "ChallengeParameters": {
                        "USER_ID_FOR_SRP": user.username,
                        "requiredAttributes": "[]",
                        "userAttributes": "{}",
                    },
                }));
            }
            user_tokens(idp, &holder, metadata, true)
        }
        "REFRESH_TOKEN_AUTH" | "REFRESH_TOKEN" => {
            let token = string(&parameters, "REFRESH_TOKEN")
                .ok_or_else(|| NativeError::invalid("Missing required parameter REFRESH_TOKEN"))?;
            let holder = idp
                .native()
                .refresh_holder(token)
                .filter(|holder| holder.client_id == client.id)
                .ok_or_else(|| NativeError::not_authorized("Invalid Refresh Token"))?;
            check_secret_hash(client, &holder.username, string(&parameters, "SECRET_HASH"))?;
            user_tokens(idp, &holder, metadata, false)
        }
        other => Err(NativeError::invalid(format!(
            "the mock IdP does not support AuthFlow {other}"
        ))),
    }
}

fn respond_to_auth_challenge(
    idp: &MockIdp,
    request: &Map<String, Value>,
) -> Result<Value, NativeError> {
    let client = client(idp, request)?;
    if string(request, "ChallengeName") != Some("NEW_PASSWORD_REQUIRED") {
        return Err(NativeError::invalid(
            "the mock IdP answers NEW_PASSWORD_REQUIRED only",
        ));
    }
    let responses = object(request, "ChallengeResponses")
        .cloned()
        .unwrap_or_default();
    let holder = string(request, "Session")
        .and_then(|session| idp.native().take_session(session))
        .filter(|holder| holder.client_id == client.id)
        .ok_or_else(|| NativeError::not_authorized("Invalid session for the user."))?;
    check_secret_hash(client, &holder.username, string(&responses, "SECRET_HASH"))?;
    let password = string(&responses, "NEW_PASSWORD")
        .ok_or_else(|| NativeError::invalid("Missing required parameter NEW_PASSWORD"))?;
    idp.add_user(crate::UserRecord::new(
        holder.username.clone(),
        password,
        UserStatus::Confirmed,
    ));
    user_tokens(idp, &holder, object(request, "ClientMetadata"), true)
}

fn get_client_token(idp: &MockIdp, request: &Map<String, Value>) -> Result<Value, NativeError> {
    let client = client(idp, request)?;
    let secret = string(request, "Secret").unwrap_or_default();
    if !bool::from(secret.as_bytes().ct_eq(client.secret.as_bytes())) {
        return Err(NativeError::not_authorized("Incorrect client secret."));
    }
    let requested = request
        .get("Scopes")
        .and_then(Value::as_array)
        .map(|scopes| {
            scopes
                .iter()
                .filter_map(Value::as_str)
                .collect::<Vec<_>>()
                .join(" ")
        });
    let scopes = grant_scopes(requested.as_deref(), &client.scopes)
        .map_err(|_| NativeError::invalid("Invalid scope requested."))?;
    let settings = idp.settings();
    let metadata = object(request, "ClientMetadata").map(|m| Value::Object(m.clone()).to_string());
    let extra = std::collections::BTreeMap::new();
    let token = mint(
        idp.keys(),
        &TokenSpec {
            client_id: &client.id,
            scopes: &scopes,
            issuer: idp.issuer(),
            now: idp.now(),
            lifetime: settings.token_lifetime,
            client_metadata: metadata.as_deref(),
            resource: None,
            extra_params: &extra,
        },
    )
    .map_err(|_| NativeError::internal(StatusCode::INTERNAL_SERVER_ERROR))?;
    Ok(json!({
        "ClientAuthenticationResult": {
            "AccessToken": token,
            "ExpiresIn": settings.token_lifetime.as_secs(),
            "TokenType": "Bearer",
        }
    }))
}

/// The claims of a user's access or id token.
#[derive(Serialize)]
struct UserClaims<'a> {
    sub: String,
    token_use: &'static str,
    #[serde(skip_serializing_if = "Option::is_none")]
    client_id: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    aud: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    username: Option<&'a str>,
    #[serde(rename = "cognito:username", skip_serializing_if = "Option::is_none")]
    cognito_username: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    scope: Option<&'static str>,
    iss: &'a str,
    iat: u64,
    exp: u64,
    auth_time: u64,
    jti: String,
    /// The request's `ClientMetadata`, as a Lambda trigger would see it.
    #[serde(skip_serializing_if = "Option::is_none")]
    client_metadata: Option<&'a Map<String, Value>>,
}

/// An `AuthenticationResult` for `holder`; with a new refresh token for a
/// sign-in, without one for a refresh.
fn user_tokens(
    idp: &MockIdp,
    holder: &Holder,
    metadata: Option<&Map<String, Value>>,
    with_refresh_token: bool,
) -> Result<Value, NativeError> {
    let lifetime = idp.settings().token_lifetime.as_secs();
    let iat = idp.now().0 / 1000;
    let claims = |token_use: &'static str| UserClaims {
        sub: format!("sub-{}", holder.username),
        token_use,
        client_id: (token_use == "access").then_some(holder.client_id.as_str()),
        aud: (token_use == "id").then_some(holder.client_id.as_str()),
        username: (token_use == "access").then_some(holder.username.as_str()),
        cognito_username: (token_use == "id").then_some(holder.username.as_str()),
        scope: (token_use == "access").then_some("aws.cognito.signin.user.admin"),
        iss: idp.issuer(),
        iat,
        exp: iat.saturating_add(lifetime),
        auth_time: iat,
        jti: random_token(16),
        client_metadata: metadata,
    };
    let internal = |_: MockIdpError| NativeError::internal(StatusCode::INTERNAL_SERVER_ERROR);
    let access = sign(idp, &claims("access")).map_err(internal)?;
    let id = sign(idp, &claims("id")).map_err(internal)?;
    let mut result = json!({
        "AccessToken": access,
        "ExpiresIn": lifetime,
        "TokenType": "Bearer",
        "IdToken": id,
    });
    if with_refresh_token && let Some(result) = result.as_object_mut() {
        let refresh = idp.native().issue_refresh_token(holder.clone());
        result.insert("RefreshToken".into(), Value::String(refresh));
    }
    Ok(json!({"ChallengeParameters": {}, "AuthenticationResult": result}))
}

fn sign(idp: &MockIdp, claims: &UserClaims<'_>) -> Result<String, MockIdpError> {
    let keys = idp.keys();
    let mut header = jsonwebtoken::Header::new(ALGORITHM);
    header.kid = Some(keys.kid.clone());
    jsonwebtoken::encode(&header, claims, &keys.encoding)
        .map_err(|err| MockIdpError::SigningKey(Box::new(err)))
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use axum::body::Body;
    use axum::http::Request;

    use super::*;
    use crate::test_client::{Answer, send};
    use crate::{ControlUpdate, MockIdpConfig, ThrottleStyle, decode_claims_unverified};

    fn idp() -> MockIdp {
        MockIdp::new(MockIdpConfig::default())
    }

    async fn call(idp: &MockIdp, operation: &str, body: Value) -> Answer {
        let request = Request::post("/")
            .header("content-type", AWS_JSON)
            .header("x-amz-target", format!("{TARGET_PREFIX}{operation}"))
            .body(Body::from(body.to_string()))
            .unwrap();
        send(idp, request).await
    }

    fn sign_in(user: &str, password: &str) -> Value {
        json!({
            "AuthFlow": "USER_PASSWORD_AUTH",
            "ClientId": "demo-client",
            "AuthParameters": {
                "USERNAME": user,
                "PASSWORD": password,
                "SECRET_HASH": secret_hash("demo-secret", user, "demo-client"),
            },
            "ClientMetadata": {"tenant": "t1"},
        })
    }

    fn error_type(answer: &Answer) -> String {
        assert_eq!(
            answer.headers["x-amzn-errortype"],
            answer.json()["__type"].as_str().unwrap()
        );
        answer.json()["__type"].as_str().unwrap().to_owned()
    }

    #[tokio::test]
    async fn a_password_sign_in_then_a_refresh() {
        let idp = idp();
        let answer = call(&idp, "InitiateAuth", sign_in("demo-user", "demo-password")).await;
        assert_eq!(answer.status, StatusCode::OK, "{:?}", answer.json());
        assert_eq!(answer.headers[CONTENT_TYPE], AWS_JSON);
        let result = &answer.json()["AuthenticationResult"];
        assert_eq!(result["ExpiresIn"], 3600);
        assert_eq!(result["TokenType"], "Bearer");
        let access = result["AccessToken"].as_str().unwrap();
        let claims = idp.verify_access_token(access).unwrap();
        assert_eq!(claims["username"], "demo-user");
        assert_eq!(claims["client_metadata"]["tenant"], "t1");
        let id = decode_claims_unverified(result["IdToken"].as_str().unwrap()).unwrap();
        assert_eq!(id["aud"], "demo-client");

        let refresh = result["RefreshToken"].as_str().unwrap();
        let again = call(
            &idp,
            "InitiateAuth",
            json!({
                "AuthFlow": "REFRESH_TOKEN_AUTH",
                "ClientId": "demo-client",
                "AuthParameters": {
                    "REFRESH_TOKEN": refresh,
                    "SECRET_HASH": secret_hash("demo-secret", "demo-user", "demo-client"),
                },
            }),
        )
        .await;
        assert_eq!(again.status, StatusCode::OK, "{:?}", again.json());
        assert!(
            again.json()["AuthenticationResult"]
                .get("RefreshToken")
                .is_none()
        );
        let stats = idp.native_stats();
        assert_eq!(stats.by_operation["InitiateAuth"], 2);
        assert_eq!(stats.by_user["demo-user"], 2);
        assert_eq!(stats.tokens_issued, 2);
    }

    #[tokio::test]
    async fn refusals_have_cognitos_types() {
        let idp = idp();
        let mut no_hash = sign_in("demo-user", "demo-password");
        no_hash["AuthParameters"]
            .as_object_mut()
            .unwrap()
            .remove("SECRET_HASH");
        let mut unknown_client = sign_in("demo-user", "demo-password");
        unknown_client["ClientId"] = "nope".into();
        let cases = [
            (
                "InitiateAuth",
                sign_in("demo-user", "wrong"),
                "NotAuthorizedException",
            ),
            (
                "InitiateAuth",
                sign_in("ghost", "x"),
                "UserNotFoundException",
            ),
            ("InitiateAuth", no_hash, "NotAuthorizedException"),
            ("InitiateAuth", unknown_client, "ResourceNotFoundException"),
            (
                "InitiateAuth",
                json!({"AuthFlow":"REFRESH_TOKEN_AUTH","ClientId":"demo-client","AuthParameters":{"REFRESH_TOKEN":"forged"}}),
                "NotAuthorizedException",
            ),
            (
                "GetClientToken",
                json!({"ClientId":"demo-client","Secret":"wrong"}),
                "NotAuthorizedException",
            ),
            (
                "GetClientToken",
                json!({"ClientId":"demo-client","Secret":"demo-secret","Scopes":["api/admin"]}),
                "InvalidParameterException",
            ),
            ("SignUp", json!({}), "UnknownOperationException"),
        ];
        for (operation, body, expected) in cases {
            let answer = call(&idp, operation, body.clone()).await;
            assert_eq!(answer.status, StatusCode::BAD_REQUEST, "{body}");
            assert_eq!(error_type(&answer), expected, "{body}");
        }
    }

    #[tokio::test]
    async fn a_user_that_must_change_its_password_is_challenged() {
        let idp = idp();
        let answer = call(&idp, "InitiateAuth", sign_in("new-user", "temp-password")).await;
        assert_eq!(answer.status, StatusCode::OK);
        let challenge = answer.json();
        assert_eq!(challenge["ChallengeName"], "NEW_PASSWORD_REQUIRED");
        assert!(challenge.get("AuthenticationResult").is_none());
        let session = challenge["Session"].as_str().unwrap().to_owned();
        let respond = json!({
            "ChallengeName": "NEW_PASSWORD_REQUIRED",
            "ClientId": "demo-client",
            "Session": session,
            "ChallengeResponses": {
                "USERNAME": "new-user",
                "NEW_PASSWORD": "chosen-password",
                "SECRET_HASH": secret_hash("demo-secret", "new-user", "demo-client"),
            },
        });
        let answer = call(&idp, "RespondToAuthChallenge", respond.clone()).await;
        assert_eq!(answer.status, StatusCode::OK, "{:?}", answer.json());
        assert!(answer.json()["AuthenticationResult"]["AccessToken"].is_string());
        // A session is single-use.
        let again = call(&idp, "RespondToAuthChallenge", respond).await;
        assert_eq!(error_type(&again), "NotAuthorizedException");
        let answer = call(&idp, "InitiateAuth", sign_in("new-user", "chosen-password")).await;
        assert_eq!(answer.status, StatusCode::OK);
    }

    #[tokio::test]
    async fn client_tokens_carry_the_scopes_asked_for() {
        let idp = idp();
        let answer = call(
            &idp,
            "GetClientToken",
            json!({"ClientId":"demo-client","Secret":"demo-secret","Scopes":["api/read"]}),
        )
        .await;
        assert_eq!(answer.status, StatusCode::OK, "{:?}", answer.json());
        let result = &answer.json()["ClientAuthenticationResult"];
        assert_eq!(result["ExpiresIn"], 3600);
        let claims = decode_claims_unverified(result["AccessToken"].as_str().unwrap()).unwrap();
        assert_eq!(claims["scope"], "api/read");
    }

    #[tokio::test]
    async fn throttling_and_server_errors_look_like_cognitos() {
        let idp = idp();
        idp.apply(&ControlUpdate {
            rate_limit_per_sec: Some(1),
            throttle_style: Some(ThrottleStyle::Http429),
            ..ControlUpdate::default()
        });
        let first = call(&idp, "InitiateAuth", sign_in("demo-user", "demo-password")).await;
        assert_eq!(first.status, StatusCode::OK);
        let second = call(&idp, "InitiateAuth", sign_in("demo-user", "demo-password")).await;
        assert_eq!(second.status, StatusCode::BAD_REQUEST);
        assert_eq!(error_type(&second), "TooManyRequestsException");
        idp.apply(&ControlUpdate {
            error_rate: Some(1.0),
            ..ControlUpdate::healthy()
        });
        let failed = call(&idp, "GetClientToken", json!({"ClientId":"demo-client"})).await;
        assert_eq!(failed.status, StatusCode::INTERNAL_SERVER_ERROR);
        assert_eq!(error_type(&failed), "InternalErrorException");
    }

    #[test]
    fn secret_hash_matches_the_documented_recipe() {
        // Base64(HMAC-SHA256(key = "secret", "user" + "client")), computed
        // independently with `openssl dgst -sha256 -hmac secret -binary`.
        assert_eq!(
            secret_hash("secret", "user", "client"),
            "wvW87lzZoI+qQCVGmWVBJLlucdJ65huAVP1z+0MgA6E="
        );
    }
}
