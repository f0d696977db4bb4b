//! Cognito's native API through the proxy: a proxy configured in front of
//! the mock IdP's native endpoint, and AWS JSON 1.1 calls to it.
//!
//! ```no_run
//! use tokencache_test_support::native::{self, sign_in};
//! use tokencache_test_support::{ManualClock, MockIdpServer, ProxyServer};
//!
//! # async fn example() {
//! let idp = MockIdpServer::start(Default::default()).await;
//! let proxy = ProxyServer::start(native::config_for(&idp), ManualClock::starting_now()).await;
//! let answer = native::call(&proxy, "InitiateAuth", &sign_in("demo-user", "demo-password")).await;
//! assert_eq!(answer.status(), 200);
//! # }
//! ```

use serde_json::{Value, json};
use tokencache_mock_idp::secret_hash;
use tokencache_proxy::{CognitoIdpConfig, ProxyConfig};

use crate::{MockIdpServer, ProxyServer};

/// The `X-Amz-Target` prefix of Cognito user pools.
pub const TARGET_PREFIX: &str = "AWSCognitoIdentityProviderService.";

/// [`ProxyServer::config_for`] with the native API in front of `idp` too.
///
/// # Panics
/// Never in practice: the IdP's URL is well formed.
#[must_use]
pub fn config_for(idp: &MockIdpServer) -> ProxyConfig {
    let mut config = ProxyServer::config_for(idp);
    let upstream = format!("http://{}/", idp.addr)
        .parse()
        .unwrap_or_else(|error| panic!("mock IdP URL: {error}"));
    config.cognito_idp = Some(CognitoIdpConfig::new(upstream));
    config
}

/// Posts `body` to the proxy's `/` as the native `operation`, the way an
/// AWS SDK does.
///
/// # Panics
/// If the request cannot be sent.
pub async fn call(proxy: &ProxyServer, operation: &str, body: &Value) -> reqwest::Response {
    post(proxy, operation, body.to_string(), &[]).await
}

/// Posts raw `body` bytes with extra `headers`.
///
/// # Panics
/// If the request cannot be sent.
pub async fn post(
    proxy: &ProxyServer,
    operation: &str,
    body: impl Into<reqwest::Body>,
    headers: &[(&str, &str)],
) -> reqwest::Response {
    let mut request = proxy
        .http
        .post(format!("http://{}/", proxy.addr))
        .header("content-type", "application/x-amz-json-1.1")
        .header("x-amz-target", format!("{TARGET_PREFIX}{operation}"))
        .body(body);
    for (name, value) in headers {
        request = request.header(*name, *value);
    }
    request
        .send()
        .await
        .unwrap_or_else(|error| panic!("posting to the proxy: {error}"))
}

/// `InitiateAuth` with `USER_PASSWORD_AUTH` for `user` through the mock
/// IdP's `demo-client` (its `SECRET_HASH` included).
#[must_use]
pub fn sign_in(user: &str, password: &str) -> Value {
    json!({
        "AuthFlow": "USER_PASSWORD_AUTH",
        "ClientId": "demo-client",
        "AuthParameters": {
            "USERNAME": user,
            "PASSWORD": password,
            "SECRET_HASH": secret_hash("demo-secret", user, "demo-client"),
        },
    })
}

/// `InitiateAuth` with `REFRESH_TOKEN_AUTH` for `user`'s `refresh_token`.
#[must_use]
pub fn refresh(user: &str, refresh_token: &str) -> Value {
    json!({
        "AuthFlow": "REFRESH_TOKEN_AUTH",
        "ClientId": "demo-client",
        "AuthParameters": {
            "REFRESH_TOKEN": refresh_token,
            "SECRET_HASH": secret_hash("demo-secret", user, "demo-client"),
        },
    })
}
