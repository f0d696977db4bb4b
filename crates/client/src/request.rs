//! The token request: a `client_credentials` form and the client's
//! authentication, built once and sent as often as needed.

use std::fmt;

use base64::Engine as _;
use http::header::{ACCEPT, AUTHORIZATION, CONTENT_TYPE};
use http::{HeaderValue, Method, Uri};
use tokencache_core::ClientSecret;
use zeroize::Zeroizing;

use crate::error::Error;
use crate::options::Variant;

/// How the client proves who it is to the token endpoint (RFC 6749 §2.3.1).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
#[non_exhaustive]
pub enum AuthMethod {
    /// `Authorization: Basic` with the id and secret (`client_secret_basic`).
    /// The default, and what Cognito documents.
    #[default]
    Basic,
    /// `client_id` and `client_secret` in the form body
    /// (`client_secret_post`).
    Body,
}

/// Parameters the source sets itself, which extra parameters may not
/// override.
pub(crate) const RESERVED_PARAMS: [&str; 4] = ["grant_type", "scope", "client_id", "client_secret"];

/// The token endpoint, the client's credentials and its usual scopes and
/// parameters: what every token request of a source is built from.
pub(crate) struct Endpoint {
    pub(crate) uri: Uri,
    pub(crate) client_id: String,
    pub(crate) client_secret: ClientSecret,
    pub(crate) auth_method: AuthMethod,
    pub(crate) scopes: Vec<String>,
    pub(crate) params: Vec<(String, String)>,
}

impl Endpoint {
    /// The request for `variant`, and the scopes it asks for (the token's
    /// scopes when the answer does not say).
    pub(crate) fn request<'a>(
        &'a self,
        variant: &'a Variant,
    ) -> Result<(TokenRequest, &'a [String]), Error> {
        let scopes = variant.scopes.as_deref().unwrap_or(&self.scopes);
        let with_resource: Vec<(String, String)>;
        let params = match &variant.resource {
            None => &self.params,
            Some(resource) => {
                // The call's resource replaces the source's, never joins it.
                with_resource = self
                    .params
                    .iter()
                    .filter(|(name, _)| name != "resource")
                    .cloned()
                    .chain(std::iter::once(("resource".to_owned(), resource.clone())))
                    .collect();
                &with_resource
            }
        };
        let request = TokenRequest::new(&RequestParts {
            uri: self.uri.clone(),
            client_id: &self.client_id,
            client_secret: &self.client_secret,
            scopes,
            params,
            auth_method: self.auth_method,
        })?;
        Ok((request, scopes))
    }
}

impl fmt::Debug for Endpoint {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Endpoint")
            .field("uri", &self.uri)
            .field("client_id", &self.client_id)
            .field("auth_method", &self.auth_method)
            .field("scopes", &self.scopes)
            // Parameter values can be private (`aws_client_metadata`).
            .field(
                "params",
                &self.params.iter().map(|(name, _)| name).collect::<Vec<_>>(),
            )
            .finish_non_exhaustive()
    }
}

/// A ready-to-send token request. The body and the `Authorization` value
/// hold the secret: they are wiped on drop, and `Debug` leaves them out.
pub(crate) struct TokenRequest {
    uri: Uri,
    auth_method: AuthMethod,
    authorization: Option<HeaderValue>,
    body: Zeroizing<Vec<u8>>,
}

/// What a [`TokenRequest`] is built from.
pub(crate) struct RequestParts<'a> {
    pub(crate) uri: Uri,
    pub(crate) client_id: &'a str,
    pub(crate) client_secret: &'a ClientSecret,
    pub(crate) scopes: &'a [String],
    pub(crate) params: &'a [(String, String)],
    pub(crate) auth_method: AuthMethod,
}

impl TokenRequest {
    pub(crate) fn new(parts: &RequestParts<'_>) -> Result<Self, Error> {
        let mut encoded = Zeroizing::new(String::new());
        let mut form = form_urlencoded::Serializer::new(&mut *encoded);
        form.append_pair("grant_type", "client_credentials");
        if !parts.scopes.is_empty() {
            form.append_pair("scope", &parts.scopes.join(" "));
        }
        for (name, value) in parts.params {
            form.append_pair(name, value);
        }
        let authorization = match parts.auth_method {
            AuthMethod::Basic => Some(basic_authorization(
                parts.client_id,
                parts.client_secret.secret(),
            )?),
            AuthMethod::Body => {
                form.append_pair("client_id", parts.client_id);
                form.append_pair("client_secret", parts.client_secret.secret());
                None
            }
        };
        form.finish();
        Ok(Self {
            uri: parts.uri.clone(),
            auth_method: parts.auth_method,
            authorization,
            body: Zeroizing::new(std::mem::take(&mut *encoded).into_bytes()),
        })
    }

    /// The request as an `http::Request`, for one attempt.
    pub(crate) fn to_http(&self) -> Result<http::Request<Vec<u8>>, Error> {
        let mut builder = http::Request::builder()
            .method(Method::POST)
            .uri(self.uri.clone())
            .header(
                CONTENT_TYPE,
                HeaderValue::from_static("application/x-www-form-urlencoded"),
            )
            .header(ACCEPT, HeaderValue::from_static("application/json"));
        if let Some(authorization) = &self.authorization {
            builder = builder.header(AUTHORIZATION, authorization.clone());
        }
        builder
            .body(self.body.to_vec())
            .map_err(|_| Error::Config("the token request cannot be built".to_owned()))
    }
}

impl fmt::Debug for TokenRequest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TokenRequest")
            .field("uri", &self.uri)
            .field("auth_method", &self.auth_method)
            .finish_non_exhaustive()
    }
}

/// `Basic base64(urlencode(id) ":" urlencode(secret))`: RFC 6749 §2.3.1
/// form-urlencodes both before base64, so a `:` in the id or anything
/// outside ASCII in the secret reaches the server intact.
fn basic_authorization(client_id: &str, secret: &str) -> Result<HeaderValue, Error> {
    let mut pair = Zeroizing::new(String::new());
    pair.extend(form_urlencoded::byte_serialize(client_id.as_bytes()));
    pair.push(':');
    pair.extend(form_urlencoded::byte_serialize(secret.as_bytes()));
    let mut value = Zeroizing::new("Basic ".to_owned());
    base64::engine::general_purpose::STANDARD.encode_string(pair.as_bytes(), &mut value);
    let mut header = HeaderValue::from_str(&value)
        .map_err(|_| Error::Config("the client credentials cannot be encoded".to_owned()))?;
    header.set_sensitive(true);
    Ok(header)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn request(auth_method: AuthMethod, id: &str, secret: &str) -> TokenRequest {
        TokenRequest::new(&RequestParts {
            uri: Uri::from_static("https://idp.example/oauth2/token"),
            client_id: id,
            client_secret: &ClientSecret::new(secret.to_owned()),
            scopes: &["api/read".to_owned(), "api/write".to_owned()],
            params: &[("aws_client_metadata".to_owned(), "{\"a\":1}".to_owned())],
            auth_method,
        })
        .unwrap()
    }

    fn body(request: &http::Request<Vec<u8>>) -> &str {
        std::str::from_utf8(request.body()).unwrap()
    }

    #[test]
    fn basic_credentials_are_urlencoded_then_base64() {
        let http = request(AuthMethod::Basic, "my:client", "s3cr ét+/")
            .to_http()
            .unwrap();
        let header = http.headers()[AUTHORIZATION].to_str().unwrap();
        let decoded = base64::engine::general_purpose::STANDARD
            .decode(header.strip_prefix("Basic ").unwrap())
            .unwrap();
        assert_eq!(
            std::str::from_utf8(&decoded).unwrap(),
            "my%3Aclient:s3cr+%C3%A9t%2B%2F"
        );
        assert!(http.headers()[AUTHORIZATION].is_sensitive());
        assert_eq!(
            body(&http),
            "grant_type=client_credentials&scope=api%2Fread+api%2Fwrite\
             &aws_client_metadata=%7B%22a%22%3A1%7D"
        );
        assert_eq!(http.method(), Method::POST);
        assert_eq!(
            http.headers()[CONTENT_TYPE],
            "application/x-www-form-urlencoded"
        );
    }

    #[test]
    fn body_credentials() {
        let http = request(AuthMethod::Body, "id", "p&ss").to_http().unwrap();
        assert!(!http.headers().contains_key(AUTHORIZATION));
        assert!(body(&http).ends_with("&client_id=id&client_secret=p%26ss"));
    }

    fn endpoint() -> Endpoint {
        Endpoint {
            uri: Uri::from_static("https://idp.example/oauth2/token"),
            client_id: "id".to_owned(),
            client_secret: ClientSecret::new("hunter2".to_owned()),
            auth_method: AuthMethod::Basic,
            scopes: vec!["api/read".to_owned()],
            params: vec![
                ("resource".to_owned(), "https://a.example".to_owned()),
                ("aws_client_metadata".to_owned(), "private".to_owned()),
            ],
        }
    }

    #[test]
    fn a_variant_replaces_the_scopes_and_the_resource() {
        let endpoint = endpoint();
        let usual_variant = Variant::default();
        let (usual, scopes) = endpoint.request(&usual_variant).unwrap();
        assert_eq!(scopes, ["api/read"]);
        assert_eq!(
            body(&usual.to_http().unwrap()),
            "grant_type=client_credentials&scope=api%2Fread\
             &resource=https%3A%2F%2Fa.example&aws_client_metadata=private"
        );
        let variant = Variant {
            scopes: Some(vec!["x".to_owned(), "y".to_owned()]),
            resource: Some("https://b.example".to_owned()),
        };
        let (other, scopes) = endpoint.request(&variant).unwrap();
        assert_eq!(scopes, ["x", "y"]);
        assert_eq!(
            body(&other.to_http().unwrap()),
            "grant_type=client_credentials&scope=x+y\
             &aws_client_metadata=private&resource=https%3A%2F%2Fb.example"
        );
        let no_scope = Variant {
            scopes: Some(Vec::new()),
            resource: None,
        };
        let (bare, _) = endpoint.request(&no_scope).unwrap();
        assert!(!body(&bare.to_http().unwrap()).contains("scope="));
        let printed = format!("{endpoint:?}");
        assert!(
            !printed.contains("hunter2") && !printed.contains("private"),
            "{printed}"
        );
    }

    #[test]
    fn debug_leaves_out_the_secret() {
        let printed = format!("{:?}", request(AuthMethod::Body, "id", "hunter2"));
        assert!(!printed.contains("hunter2"), "{printed}");
    }
}
