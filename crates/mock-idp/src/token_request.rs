//! Reading a `POST /oauth2/token` request: content type, parameters from the
//! query string and the form body, and `Authorization: Basic` credentials.
//!
//! This is written independently of `tokencache-core`'s parser on purpose:
//! the mock IdP is what the proxy is tested against, so it must not share the
//! proxy's reading of a request (and its bugs).

use std::collections::BTreeMap;
use std::fmt;

use axum::http::HeaderMap;
use axum::http::header::{AUTHORIZATION, CONTENT_TYPE};
use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;

use crate::response::OAuthError;

/// The parameters the token endpoint understands; any other parameter is
/// "extra" and lands in the token's `extra_params` claim.
pub(crate) const KNOWN_PARAMS: &[&str] = &[
    "grant_type",
    "client_id",
    "client_secret",
    "scope",
    "code",
    "redirect_uri",
    "refresh_token",
    "aws_client_metadata",
    "resource",
];

/// What a request claims to be, read on a best-effort basis even when the
/// request turns out to be malformed, for the counters.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub(crate) struct Claimed {
    pub(crate) client_id: Option<String>,
    pub(crate) grant_type: Option<String>,
}

/// Client credentials: an id and a secret.
#[derive(Clone, PartialEq, Eq)]
pub(crate) struct Credentials {
    pub(crate) id: String,
    pub(crate) secret: String,
}

impl fmt::Debug for Credentials {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Credentials")
            .field("id", &self.id)
            .field("secret", &"[redacted]")
            .finish()
    }
}

/// The `Authorization` header of a token request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Authorization {
    /// No `Authorization` header.
    None,
    /// Well-formed `Basic` credentials.
    Basic(Credentials),
    /// A header that is not readable `Basic` credentials.
    Malformed(&'static str),
}

/// A token request whose parameters were read without conflict.
#[derive(Debug)]
pub(crate) struct TokenRequest {
    /// Query-string and body parameters together. RFC 6749 §3.2: a parameter
    /// sent without a value is treated as omitted, so none here is empty.
    params: BTreeMap<String, String>,
    pub(crate) authorization: Authorization,
}

impl TokenRequest {
    /// Reads a request. The [`Claimed`] part is filled in as far as the
    /// request could be read, also when it is refused.
    pub(crate) fn parse(
        headers: &HeaderMap,
        query: Option<&str>,
        body: &[u8],
    ) -> (Claimed, Result<Self, OAuthError>) {
        let authorization = read_authorization(headers);
        let form_ok = is_form(headers);
        let query_pairs = read_pairs(query.unwrap_or("").as_bytes());
        let body_pairs = if form_ok {
            read_pairs(body)
        } else {
            Ok(Vec::new())
        };
        let all_pairs = || {
            query_pairs
                .iter()
                .chain(&body_pairs)
                .flatten()
                .filter(|(_, value)| !value.is_empty())
        };
        let first = |name: &str| {
            all_pairs()
                .find(|(key, _)| key == name)
                .map(|(_, value)| value.clone())
        };
        let claimed = Claimed {
            client_id: match &authorization {
                Authorization::Basic(credentials) => Some(credentials.id.clone()),
                _ => first("client_id"),
            },
            grant_type: first("grant_type"),
        };

        if !form_ok {
            return (
                claimed,
                Err(OAuthError::invalid_request(
                    "Content-Type must be application/x-www-form-urlencoded",
                )),
            );
        }
        if query_pairs.is_err() || body_pairs.is_err() {
            return (
                claimed,
                Err(OAuthError::invalid_request("malformed form parameters")),
            );
        }
        // RFC 6749 §3.2 and §2.3: a parameter, or the Authorization header,
        // may be given once. An empty copy still counts: two readers could
        // take different copies, so it is refused, not resolved.
        if headers.get_all(AUTHORIZATION).iter().count() > 1 {
            return (
                claimed,
                Err(OAuthError::invalid_request(
                    "the Authorization header is given more than once",
                )),
            );
        }
        let mut seen = std::collections::BTreeSet::new();
        for (name, _) in query_pairs.iter().chain(&body_pairs).flatten() {
            if !seen.insert(name.as_str()) {
                return (
                    claimed,
                    Err(OAuthError::invalid_request(format!(
                        "parameter {name} is given more than once"
                    ))),
                );
            }
        }
        let params: BTreeMap<String, String> = all_pairs().cloned().collect();
        (
            claimed,
            Ok(Self {
                params,
                authorization,
            }),
        )
    }

    /// The value of parameter `name`, if it was given (non-empty).
    pub(crate) fn get(&self, name: &str) -> Option<&str> {
        self.params.get(name).map(String::as_str)
    }

    /// The parameters this IdP does not interpret, by name.
    pub(crate) fn extra_params(&self) -> BTreeMap<String, String> {
        self.params
            .iter()
            .filter(|(name, _)| !KNOWN_PARAMS.contains(&name.as_str()))
            .map(|(name, value)| (name.clone(), value.clone()))
            .collect()
    }
}

/// Whether the request has a form content type. Parameters such as
/// `charset` are allowed; the comparison ignores case.
fn is_form(headers: &HeaderMap) -> bool {
    let mut values = headers.get_all(CONTENT_TYPE).iter();
    let (Some(value), None) = (values.next(), values.next()) else {
        return false;
    };
    value.to_str().is_ok_and(|value| {
        let essence = value.split(';').next().unwrap_or_default().trim();
        essence.eq_ignore_ascii_case("application/x-www-form-urlencoded")
    })
}

/// Decodes `application/x-www-form-urlencoded` pairs, in order.
fn read_pairs(input: &[u8]) -> Result<Vec<(String, String)>, serde_urlencoded::de::Error> {
    serde_urlencoded::from_bytes(input)
}

/// Reads `Authorization: Basic base64(urlenc(id) ":" urlenc(secret))`, as
/// RFC 6749 §2.3.1 defines it (both parts form-urlencoded before encoding).
fn read_authorization(headers: &HeaderMap) -> Authorization {
    let mut values = headers.get_all(AUTHORIZATION).iter();
    let value = match (values.next(), values.next()) {
        (None, _) => return Authorization::None,
        (Some(value), None) => value,
        (Some(_), Some(_)) => {
            return Authorization::Malformed("more than one Authorization header");
        }
    };
    let Ok(value) = value.to_str() else {
        return Authorization::Malformed("unreadable Authorization header");
    };
    let Some((scheme, encoded)) = value.trim().split_once(' ') else {
        return Authorization::Malformed("Authorization header without credentials");
    };
    if !scheme.eq_ignore_ascii_case("basic") {
        return Authorization::Malformed("only Basic client authentication is supported");
    }
    let Ok(decoded) = STANDARD.decode(encoded.trim()) else {
        return Authorization::Malformed("Basic credentials are not valid base64");
    };
    let Ok(decoded) = String::from_utf8(decoded) else {
        return Authorization::Malformed("Basic credentials are not UTF-8");
    };
    let Some((id, secret)) = decoded.split_once(':') else {
        return Authorization::Malformed("Basic credentials have no ':'");
    };
    match (form_decode(id), form_decode(secret)) {
        (Some(id), Some(secret)) if !id.is_empty() => {
            Authorization::Basic(Credentials { id, secret })
        }
        (Some(_), Some(_)) => Authorization::Malformed("Basic credentials have an empty client id"),
        _ => Authorization::Malformed("Basic credentials are not form-urlencoded UTF-8"),
    }
}

/// Decodes one form-urlencoded component: `+` is a space, `%XX` a byte.
fn form_decode(component: &str) -> Option<String> {
    // A literal `+` in the original is sent as `%2B`, so every raw `+` here
    // stands for a space.
    let spaced = component.replace('+', " ");
    percent_encoding::percent_decode_str(&spaced)
        .decode_utf8()
        .ok()
        .map(|decoded| decoded.into_owned())
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use axum::http::HeaderValue;

    use super::*;

    fn headers(pairs: &[(&'static str, &str)]) -> HeaderMap {
        let mut map = HeaderMap::new();
        for (name, value) in pairs {
            map.append(*name, HeaderValue::from_str(value).unwrap());
        }
        map
    }

    fn basic(raw: &str) -> String {
        format!("Basic {}", STANDARD.encode(raw))
    }

    const FORM: (&str, &str) = ("content-type", "application/x-www-form-urlencoded");

    #[test]
    fn content_type_may_have_parameters_and_any_case() {
        for value in [
            "application/x-www-form-urlencoded",
            "Application/X-WWW-Form-URLEncoded; charset=UTF-8",
            " application/x-www-form-urlencoded ;charset=utf-8",
        ] {
            assert!(is_form(&headers(&[("content-type", value)])), "{value}");
        }
        for value in [
            "application/json",
            "text/plain",
            "application/x-www-form-urlencodedx",
        ] {
            assert!(!is_form(&headers(&[("content-type", value)])), "{value}");
        }
        assert!(!is_form(&HeaderMap::new()));
    }

    #[test]
    fn wrong_content_type_still_claims_what_it_can() {
        let (claimed, result) = TokenRequest::parse(
            &headers(&[
                ("content-type", "application/json"),
                ("authorization", &basic("a:b")),
            ]),
            Some("grant_type=client_credentials"),
            b"{}",
        );
        assert_eq!(result.unwrap_err().error, "invalid_request");
        assert_eq!(claimed.client_id.as_deref(), Some("a"));
        assert_eq!(claimed.grant_type.as_deref(), Some("client_credentials"));
    }

    #[test]
    fn merges_query_and_body() {
        let (claimed, result) = TokenRequest::parse(
            &headers(&[FORM]),
            Some("scope=api%2Fread+api/write"),
            b"grant_type=client_credentials&client_id=me&client_secret=s&foo=bar&empty=",
        );
        let request = result.unwrap();
        assert_eq!(claimed.client_id.as_deref(), Some("me"));
        assert_eq!(request.get("scope"), Some("api/read api/write"));
        assert_eq!(request.get("grant_type"), Some("client_credentials"));
        assert_eq!(request.get("empty"), None);
        assert_eq!(
            request.extra_params(),
            BTreeMap::from([("foo".to_owned(), "bar".to_owned())])
        );
        assert_eq!(request.authorization, Authorization::None);
    }

    #[test]
    fn a_parameter_given_twice_is_refused() {
        for (query, body) in [
            (None, &b"scope=a&scope=b&grant_type=client_credentials"[..]),
            (
                Some("scope=a"),
                &b"scope=a&grant_type=client_credentials"[..],
            ),
            (Some("grant_type=x&grant_type=y"), &b""[..]),
        ] {
            let (_, result) = TokenRequest::parse(&headers(&[FORM]), query, body);
            let err = result.unwrap_err();
            assert_eq!(err.error, "invalid_request", "{query:?} {body:?}");
        }
        // An empty copy is still a copy: `scope=a&scope=` is refused, not
        // read as `scope=a` (another reader would take the last, empty one).
        for (query, body) in [
            (Some("scope="), &b"scope=a"[..]),
            (None, &b"grant_type=client_credentials&scope=a&scope="[..]),
            (
                None,
                &b"grant_type=client_credentials&resource=r9&resource="[..],
            ),
        ] {
            let (_, result) = TokenRequest::parse(&headers(&[FORM]), query, body);
            assert_eq!(result.unwrap_err().error, "invalid_request", "{body:?}");
        }
        // A parameter given once with an empty value counts as omitted.
        let (_, result) = TokenRequest::parse(&headers(&[FORM]), None, b"scope=&x=1");
        assert_eq!(result.unwrap().get("scope"), None);
    }

    #[test]
    fn two_authorization_headers_are_an_invalid_request() {
        let two = headers(&[
            FORM,
            ("authorization", &basic("a:b")),
            ("authorization", &basic("c:d")),
        ]);
        let (_, result) = TokenRequest::parse(&two, None, b"grant_type=client_credentials");
        assert_eq!(result.unwrap_err().error, "invalid_request");
    }

    #[test]
    fn basic_credentials_are_form_decoded() {
        // id "my client:1", secret "p+ss wörd%" urlencoded, then base64.
        let raw = "my+client%3A1:p%2Bss+w%C3%B6rd%25";
        let auth = read_authorization(&headers(&[("authorization", &basic(raw))]));
        assert_eq!(
            auth,
            Authorization::Basic(Credentials {
                id: "my client:1".to_owned(),
                secret: "p+ss wörd%".to_owned(),
            })
        );
        let auth = read_authorization(&headers(&[(
            "authorization",
            &format!("bAsIc  {}", STANDARD.encode("a:")),
        )]));
        assert!(matches!(auth, Authorization::Basic(c) if c.id == "a" && c.secret.is_empty()));
    }

    #[test]
    fn malformed_basic_credentials() {
        for value in [
            "Basic".to_owned(),
            "Bearer abc".to_owned(),
            "Basic !!!".to_owned(),
            basic("no-colon"),
            basic(":secret"),
            basic("a%FF:b"),
            format!("Basic {}", STANDARD.encode([0xff, b':', b'a'])),
        ] {
            let auth = read_authorization(&headers(&[("authorization", &value)]));
            assert!(
                matches!(auth, Authorization::Malformed(_)),
                "{value}: {auth:?}"
            );
        }
        let two = headers(&[
            ("authorization", &basic("a:b")),
            ("authorization", &basic("a:b")),
        ]);
        assert!(matches!(
            read_authorization(&two),
            Authorization::Malformed(_)
        ));
    }

    #[test]
    fn debug_redacts_the_secret() {
        let credentials = Credentials {
            id: "a".to_owned(),
            secret: "hunter2".to_owned(),
        };
        assert!(!format!("{credentials:?}").contains("hunter2"));
    }
}
