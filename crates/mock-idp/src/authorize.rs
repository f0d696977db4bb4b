//! `GET /oauth2/authorize`: the authorization-code front door. There is no
//! user to ask, so every valid request is approved at once.

use std::collections::BTreeMap;

use axum::extract::State;
use axum::http::header::LOCATION;
use axum::http::{HeaderValue, StatusCode, Uri};
use axum::response::{IntoResponse, Response};

use crate::MockIdp;
use crate::grants::CodeGrant;
use crate::response::OAuthError;
use crate::scope::grant_scopes;

/// The handler.
///
/// Problems with `client_id` or `redirect_uri` are answered here with a
/// 400 JSON error (RFC 6749 §4.1.2.1: never redirect to an unchecked URI);
/// other problems are sent to the redirect URI as `error=...`. Redirect URIs
/// are not registered per client: any absolute URI without a fragment is
/// accepted.
pub(crate) async fn authorize(State(idp): State<MockIdp>, uri: Uri) -> Response {
    match approve(&idp, uri.query().unwrap_or_default()) {
        Ok(location) => redirect(&location),
        Err(err) => err.into_response(),
    }
}

/// Checks the request and returns where to redirect the browser.
fn approve(idp: &MockIdp, query: &str) -> Result<String, OAuthError> {
    let pairs: Vec<(String, String)> = serde_urlencoded::from_str(query)
        .map_err(|_| OAuthError::invalid_request("malformed query string"))?;
    let mut params = BTreeMap::new();
    for (name, value) in pairs.into_iter().filter(|(_, value)| !value.is_empty()) {
        if params.contains_key(&name) {
            return Err(OAuthError::invalid_request(format!(
                "parameter {name} is given more than once"
            )));
        }
        params.insert(name, value);
    }
    let get = |name: &str| params.get(name).map(String::as_str);

    let client_id =
        get("client_id").ok_or_else(|| OAuthError::invalid_request("client_id is missing"))?;
    let client = idp
        .client(client_id)
        .ok_or_else(|| OAuthError::invalid_client("unknown client_id"))?;
    let redirect_uri = get("redirect_uri")
        .ok_or_else(|| OAuthError::invalid_request("redirect_uri is missing"))?;
    if !is_absolute_without_fragment(redirect_uri) {
        return Err(OAuthError::invalid_request(
            "redirect_uri must be an absolute URI without a fragment",
        ));
    }

    let mut answer: Vec<(&str, String)> = Vec::new();
    if get("response_type") == Some("code") {
        match grant_scopes(get("scope"), &client.scopes) {
            Ok(scopes) => {
                let code = idp.grants().issue_code(CodeGrant {
                    client_id: client.id.clone(),
                    redirect_uri: redirect_uri.to_owned(),
                    scopes,
                    issued_at: idp.now(),
                });
                answer.push(("code", code));
            }
            Err(err) => answer.push(("error", err.error.to_owned())),
        }
    } else {
        answer.push(("error", "unsupported_response_type".to_owned()));
    }
    if let Some(state) = get("state") {
        answer.push(("state", state.to_owned()));
    }
    let encoded = serde_urlencoded::to_string(&answer).map_err(|_| OAuthError::server_error())?;
    let separator = if redirect_uri.contains('?') { '&' } else { '?' };
    Ok(format!("{redirect_uri}{separator}{encoded}"))
}

/// `scheme:rest` with an RFC 3986 scheme and no `#`.
fn is_absolute_without_fragment(uri: &str) -> bool {
    let Some((scheme, rest)) = uri.split_once(':') else {
        return false;
    };
    let mut chars = scheme.chars();
    chars.next().is_some_and(|c| c.is_ascii_alphabetic())
        && chars.all(|c| c.is_ascii_alphanumeric() || matches!(c, '+' | '-' | '.'))
        && !rest.is_empty()
        && !uri.contains('#')
}

fn redirect(location: &str) -> Response {
    match HeaderValue::from_str(location) {
        Ok(value) => (StatusCode::FOUND, [(LOCATION, value)]).into_response(),
        // The parts came from a decoded query string and could hold control
        // characters that no header may carry.
        Err(_) => {
            OAuthError::invalid_request("redirect_uri cannot be used in a header").into_response()
        }
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use axum::body::Body;
    use axum::http::Request;

    use super::*;
    use crate::MockIdpConfig;
    use crate::test_client::{Answer, send};

    async fn get(query: &str) -> Answer {
        let idp = MockIdp::new(MockIdpConfig::default());
        let request = Request::get(format!("/oauth2/authorize?{query}"))
            .body(Body::empty())
            .unwrap();
        send(&idp, request).await
    }

    fn location_params(answer: &Answer) -> Vec<(String, String)> {
        assert_eq!(answer.status, StatusCode::FOUND);
        let location = answer.headers[LOCATION].to_str().unwrap();
        serde_urlencoded::from_str(location.split_once('?').unwrap().1).unwrap()
    }

    #[tokio::test]
    async fn approves_with_a_redirect() {
        let answer = get(
            "response_type=code&client_id=demo-client&redirect_uri=https%3A%2F%2Fapp.example%2Fcb\
             &scope=api%2Fread&state=a%20b",
        )
        .await;
        let location = answer.headers[LOCATION].to_str().unwrap();
        assert!(
            location.starts_with("https://app.example/cb?code="),
            "{location}"
        );
        let params = location_params(&answer);
        assert_eq!(params[0].0, "code");
        assert!(!params[0].1.is_empty());
        assert_eq!(params[1], ("state".to_owned(), "a b".to_owned()));
        assert_eq!(answer.headers["cache-control"], "no-store");
    }

    #[tokio::test]
    async fn keeps_an_existing_query_in_the_redirect_uri() {
        let answer =
            get("response_type=code&client_id=demo-client&redirect_uri=myapp%3A%2F%2Fcb%3Fx%3D1")
                .await;
        let location = answer.headers[LOCATION].to_str().unwrap();
        assert!(location.starts_with("myapp://cb?x=1&code="), "{location}");
    }

    #[tokio::test]
    async fn client_and_redirect_problems_are_json_errors() {
        for (query, error) in [
            (
                "response_type=code&client_id=nobody&redirect_uri=https%3A%2F%2Fa",
                "invalid_client",
            ),
            (
                "response_type=code&redirect_uri=https%3A%2F%2Fa",
                "invalid_request",
            ),
            (
                "response_type=code&client_id=demo-client",
                "invalid_request",
            ),
            (
                "response_type=code&client_id=demo-client&redirect_uri=relative",
                "invalid_request",
            ),
            (
                "response_type=code&client_id=demo-client&redirect_uri=https%3A%2F%2Fa%23frag",
                "invalid_request",
            ),
            (
                "response_type=code&client_id=demo-client&client_id=demo-client&redirect_uri=https%3A%2F%2Fa",
                "invalid_request",
            ),
        ] {
            let answer = get(query).await;
            assert_eq!(answer.status, StatusCode::BAD_REQUEST, "{query}");
            assert_eq!(answer.error(), error, "{query}");
        }
    }

    #[tokio::test]
    async fn other_problems_go_to_the_redirect_uri() {
        let answer =
            get("response_type=token&client_id=demo-client&redirect_uri=https%3A%2F%2Fa&state=s")
                .await;
        assert_eq!(
            location_params(&answer),
            [
                ("error".to_owned(), "unsupported_response_type".to_owned()),
                ("state".to_owned(), "s".to_owned())
            ]
        );
        let answer = get(
            "response_type=code&client_id=demo-client&redirect_uri=https%3A%2F%2Fa&scope=api%2Fadmin",
        )
        .await;
        assert_eq!(
            location_params(&answer),
            [("error".to_owned(), "invalid_scope".to_owned())]
        );
    }

    #[test]
    fn absolute_uris() {
        for ok in [
            "https://a/cb",
            "http://localhost:8080/x?y=1",
            "com.example.app:/cb",
            "x-y+z.w:q",
        ] {
            assert!(is_absolute_without_fragment(ok), "{ok}");
        }
        for bad in ["", "/cb", "cb", "1http://a", "https://a/#x", "https:", ":x"] {
            assert!(!is_absolute_without_fragment(bad), "{bad}");
        }
    }
}
