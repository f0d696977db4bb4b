//! Parsing an OAuth 2.0 token request (RFC 6749 §4.4) strictly.

use std::borrow::Cow;

use base64::Engine as _;
use base64::engine::{DecodePaddingMode, GeneralPurpose, GeneralPurposeConfig};

use crate::form::{self, FormError};
use crate::secret::ClientSecret;

/// The only grant whose answers are cached.
pub const CLIENT_CREDENTIALS: &str = "client_credentials";

/// Standard base64 that accepts Basic credentials with or without padding,
/// as clients in the wild send both.
const BASIC_BASE64: GeneralPurpose = GeneralPurpose::new(
    &base64::alphabet::STANDARD,
    GeneralPurposeConfig::new().with_decode_padding_mode(DecodePaddingMode::Indifferent),
);

/// Where the client authenticated itself.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum CredentialSource {
    /// `Authorization: Basic` (RFC 6749 §2.3.1, `client_secret_basic`).
    BasicHeader,
    /// `client_id` (and `client_secret`) in the body (`client_secret_post`).
    Body,
    /// An `Authorization` header with another scheme; the proxy does not
    /// interpret it, so such a request is never cached.
    ForeignHeader,
    /// No client authentication at all.
    None,
}

/// Why a token request was rejected; every variant is an RFC 6749
/// `invalid_request`, and its text is safe to show the caller (it never
/// holds a credential).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum RequestError {
    /// The body is not `application/x-www-form-urlencoded`.
    #[error("content type must be application/x-www-form-urlencoded")]
    UnsupportedContentType,
    /// The form (body or query string) could not be decoded.
    #[error("{0}")]
    MalformedForm(&'static str),
    /// A parameter appeared more than once (RFC 6749 §3.2), empty copies
    /// and copies split between the query string and the body included.
    #[error("parameter `{0}` is given more than once")]
    DuplicateParameter(String),
    /// A header that must appear at most once (`Authorization`,
    /// `Content-Type`) appeared more than once: a proxy and an upstream could
    /// each read a different one.
    #[error("header `{0}` is given more than once")]
    RepeatedHeader(&'static str),
    /// The `Authorization: Basic` header could not be decoded.
    #[error("malformed Basic authorization header: {0}")]
    MalformedBasicAuth(&'static str),
    /// Credentials came both in the header and in the body (RFC 6749 §2.3).
    #[error("client credentials must not be sent both in the Authorization header and in the body")]
    CredentialsInHeaderAndBody,
    /// `grant_type` is missing.
    #[error("missing grant_type")]
    MissingGrantType,
}

impl From<FormError> for RequestError {
    fn from(error: FormError) -> Self {
        Self::MalformedForm(error.describe())
    }
}

/// A parsed token request.
///
/// Values borrow from the body and query string where no decoding was
/// needed, so the hit path copies little.
#[derive(Debug)]
pub struct TokenRequest<'a> {
    grant_type: Cow<'a, str>,
    client_id: Option<Cow<'a, str>>,
    client_secret: Option<ClientSecret>,
    credential_source: CredentialSource,
    scope: Option<Cow<'a, str>>,
    /// Every other parameter, sorted by name, each name once.
    extra: Vec<(Cow<'a, str>, Cow<'a, str>)>,
}

impl<'a> TokenRequest<'a> {
    /// Parses a token request from its content type, `Authorization` header,
    /// query string and body.
    ///
    /// Parameters may come in the body or the query string (some API-Gateway
    /// style clients put `scope` there); a name given twice, in either or
    /// across both, is an error, even when a copy is empty (`scope=a&scope=`
    /// is ambiguous: an upstream that takes the last value reads no scope).
    /// A parameter given once with an empty value is treated as omitted
    /// (RFC 6749 §3.1).
    ///
    /// # Errors
    /// A [`RequestError`] naming what is wrong, for an `invalid_request`.
    pub fn parse(
        content_type: Option<&[u8]>,
        authorization: Option<&'a [u8]>,
        query: Option<&'a str>,
        body: &'a [u8],
    ) -> Result<Self, RequestError> {
        if !content_type.is_some_and(is_form_content_type) {
            return Err(RequestError::UnsupportedContentType);
        }
        let mut params: Vec<(Cow<'a, str>, Cow<'a, str>)> = Vec::with_capacity(8);
        let mut collect = |name: Cow<'a, str>, value: Cow<'a, str>| {
            params.push((name, value));
            Ok(())
        };
        form::for_each_pair(body, &mut collect)?;
        if let Some(query) = query {
            form::for_each_pair(query.as_bytes(), &mut collect)?;
        }
        params.sort_unstable_by(|a, b| a.0.cmp(&b.0));
        // Duplicates are found before empty values are dropped: an empty
        // copy is still a second copy.
        if let Some(pair) = params.windows(2).find(|pair| pair[0].0 == pair[1].0) {
            return Err(RequestError::DuplicateParameter(printable_name(&pair[0].0)));
        }
        params.retain(|(_, value)| !value.is_empty());

        // Take the four known parameters out, keep the rest (already sorted)
        // in the same allocation.
        let mut grant_type = None;
        let mut client_id = None;
        let mut client_secret = None;
        let mut scope = None;
        let mut extra = params;
        extra.retain_mut(|(name, value)| {
            let slot = match &**name {
                "grant_type" => &mut grant_type,
                "client_id" => &mut client_id,
                "scope" => &mut scope,
                "client_secret" => {
                    client_secret = Some(ClientSecret::new(std::mem::take(value).into_owned()));
                    return false;
                }
                _ => return true,
            };
            *slot = Some(std::mem::take(value));
            false
        });
        let grant_type = grant_type.ok_or(RequestError::MissingGrantType)?;

        let credential_source = match authorization {
            Some(header) => match parse_basic(header)? {
                Some((id, secret)) => {
                    if client_id.is_some() || client_secret.is_some() {
                        return Err(RequestError::CredentialsInHeaderAndBody);
                    }
                    client_id = Some(Cow::Owned(id));
                    client_secret = Some(secret);
                    CredentialSource::BasicHeader
                }
                None => CredentialSource::ForeignHeader,
            },
            None if client_id.is_some() => CredentialSource::Body,
            None => CredentialSource::None,
        };

        Ok(Self {
            grant_type,
            client_id,
            client_secret,
            credential_source,
            scope,
            extra,
        })
    }

    /// Whether the answer to this request may be cached: a
    /// `client_credentials` grant whose client authenticated with a secret
    /// the proxy can see (Basic or body).
    #[must_use]
    pub fn is_cacheable(&self) -> bool {
        self.grant_type == CLIENT_CREDENTIALS
            && self.client_id.is_some()
            && matches!(
                self.credential_source,
                CredentialSource::BasicHeader | CredentialSource::Body
            )
    }

    /// The `grant_type` parameter.
    #[must_use]
    pub fn grant_type(&self) -> &str {
        &self.grant_type
    }

    /// The client id, from the Basic header or the body.
    #[must_use]
    pub fn client_id(&self) -> Option<&str> {
        self.client_id.as_deref()
    }

    /// The client secret, from the Basic header or the body.
    #[must_use]
    pub fn client_secret(&self) -> Option<&ClientSecret> {
        self.client_secret.as_ref()
    }

    /// Where the client's credentials came from.
    #[must_use]
    pub fn credential_source(&self) -> CredentialSource {
        self.credential_source
    }

    /// The requested scopes as a set: sorted, without duplicates (scope
    /// order carries no meaning, RFC 6749 §3.3).
    #[must_use]
    pub fn scopes(&self) -> Vec<&str> {
        let mut scopes: Vec<&str> = self
            .scope
            .as_deref()
            .map(|scope| scope.split(' ').filter(|s| !s.is_empty()).collect())
            .unwrap_or_default();
        scopes.sort_unstable();
        scopes.dedup();
        scopes
    }

    /// Calls `visit` with the scope set (see [`scopes`](Self::scopes)),
    /// built on the stack when there are at most 16 scopes.
    pub fn with_scopes<R>(&self, visit: impl FnOnce(&[&str]) -> R) -> R {
        const ON_STACK: usize = 16;
        let scope = self.scope.as_deref().unwrap_or_default();
        let mut buffer: [&str; ON_STACK] = [""; ON_STACK];
        let mut count = 0;
        for token in scope.split(' ').filter(|s| !s.is_empty()) {
            if count == ON_STACK {
                return visit(&self.scopes());
            }
            buffer[count] = token;
            count += 1;
        }
        let scopes = &mut buffer[..count];
        scopes.sort_unstable();
        let mut unique = 0;
        for index in 0..scopes.len() {
            if unique == 0 || scopes[index] != scopes[unique - 1] {
                scopes[unique] = scopes[index];
                unique += 1;
            }
        }
        visit(&scopes[..unique])
    }

    /// Every parameter other than `grant_type`, `client_id`,
    /// `client_secret` and `scope`, sorted by name.
    pub fn extra_params(&self) -> impl ExactSizeIterator<Item = (&str, &str)> {
        self.extra.iter().map(|(name, value)| (&**name, &**value))
    }

    /// The request to send upstream, built from exactly the values the cache
    /// key is derived from: the form body from the parsed parameters (empty
    /// ones omitted, the scope set normalised, nothing in the query string)
    /// and the credentials where the client put them. `None` for a foreign
    /// `Authorization` scheme, which the proxy does not read and so cannot
    /// rebuild (such a request is never cached).
    #[must_use]
    pub fn canonical(&self) -> Option<CanonicalRequest> {
        let mut body = form::Encoder::with_capacity(256);
        body.pair("grant_type", &self.grant_type);
        let mut authorization = None;
        match self.credential_source {
            CredentialSource::ForeignHeader => return None,
            CredentialSource::BasicHeader => {
                let id = self.client_id.as_deref().unwrap_or_default();
                let secret = self.client_secret.as_ref().map_or("", ClientSecret::secret);
                authorization = Some(basic_authorization(id, secret));
            }
            CredentialSource::Body | CredentialSource::None => {
                if let Some(id) = &self.client_id {
                    body.pair("client_id", id);
                }
                if let Some(secret) = &self.client_secret {
                    body.pair("client_secret", secret.secret());
                }
            }
        }
        self.with_scopes(|scopes| {
            if !scopes.is_empty() {
                body.pair_joined("scope", scopes, ' ');
            }
        });
        for (name, value) in self.extra_params() {
            body.pair(name, value);
        }
        Some(CanonicalRequest {
            body: body.finish(),
            authorization,
        })
    }
}

/// A token request rebuilt from its parsed form ([`TokenRequest::canonical`]):
/// what goes upstream for a cacheable load. Both parts can hold the client
/// secret, so `Debug` shows neither and both are wiped on drop.
pub struct CanonicalRequest {
    body: zeroize::Zeroizing<String>,
    authorization: Option<zeroize::Zeroizing<String>>,
}

impl CanonicalRequest {
    /// The `application/x-www-form-urlencoded` body.
    #[must_use]
    pub fn body(&self) -> &str {
        &self.body
    }

    /// The `Authorization: Basic` value, when the client authenticated with
    /// it (`client_secret_basic`).
    #[must_use]
    pub fn authorization(&self) -> Option<&str> {
        self.authorization.as_deref().map(String::as_str)
    }
}

impl std::fmt::Debug for CanonicalRequest {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CanonicalRequest")
            .field("body", &"[redacted]")
            .field(
                "authorization",
                &self.authorization.as_ref().map(|_| "[redacted]"),
            )
            .finish()
    }
}

/// `Basic base64(id ":" secret)`, escaping only what a reader following
/// RFC 6749 §2.3.1 would otherwise decode differently (`%`, `+`, space, and
/// `:` in the id). Everything else goes as the client sent it, so an
/// identity provider that does not form-decode Basic credentials (many do
/// not) still sees the bytes it issued.
fn basic_authorization(id: &str, secret: &str) -> zeroize::Zeroizing<String> {
    // Room for every byte escaped, so the buffer never reallocates and
    // leaves an unwiped copy of the secret behind.
    let mut raw = zeroize::Zeroizing::new(String::with_capacity(3 * (id.len() + secret.len()) + 1));
    form::escape_basic_component(&mut raw, id, true);
    raw.push(':');
    form::escape_basic_component(&mut raw, secret, false);
    let mut header = zeroize::Zeroizing::new(String::with_capacity(8 + raw.len() * 4 / 3 + 4));
    header.push_str("Basic ");
    base64::engine::general_purpose::STANDARD.encode_string(raw.as_bytes(), &mut header);
    header
}

/// Whether a `Content-Type` value is `application/x-www-form-urlencoded`,
/// ignoring case, surrounding space and parameters such as `charset`.
fn is_form_content_type(value: &[u8]) -> bool {
    let essence = value.split(|&b| b == b';').next().unwrap_or_default();
    essence
        .trim_ascii()
        .eq_ignore_ascii_case(b"application/x-www-form-urlencoded")
}

/// Decodes `Authorization: Basic`; `Ok(None)` for another scheme.
fn parse_basic(header: &[u8]) -> Result<Option<(String, ClientSecret)>, RequestError> {
    let header = header.trim_ascii();
    let (scheme, rest) = match header.iter().position(|&b| b == b' ') {
        Some(space) => (&header[..space], header[space..].trim_ascii_start()),
        None => (header, &header[header.len()..]),
    };
    if !scheme.eq_ignore_ascii_case(b"basic") {
        return Ok(None);
    }
    if rest.is_empty() {
        return Err(RequestError::MalformedBasicAuth("no credentials"));
    }
    let mut decoded = zeroize::Zeroizing::new(
        BASIC_BASE64
            .decode(rest)
            .map_err(|_| RequestError::MalformedBasicAuth("not base64"))?,
    );
    let colon = decoded
        .iter()
        .position(|&b| b == b':')
        .ok_or(RequestError::MalformedBasicAuth(
            "no `:` between id and secret",
        ))?;
    // RFC 6749 §2.3.1: both halves are form-urlencoded before base64.
    let id = form::decode_component(&decoded[..colon])
        .map_err(|e| RequestError::MalformedBasicAuth(e.describe()))?
        .into_owned();
    if id.is_empty() {
        return Err(RequestError::MalformedBasicAuth("empty client id"));
    }
    let secret = match form::decode_component(&decoded[colon + 1..])
        .map_err(|e| RequestError::MalformedBasicAuth(e.describe()))?
    {
        std::borrow::Cow::Owned(secret) => secret,
        // Nothing to decode: the decoded buffer becomes the secret, with no
        // second copy of it in memory.
        std::borrow::Cow::Borrowed(_) => {
            let mut bytes = std::mem::take(&mut *decoded);
            bytes.drain(..=colon);
            String::from_utf8(bytes)
                .map_err(|_| RequestError::MalformedBasicAuth("form is not valid UTF-8"))?
        }
    };
    Ok(Some((id, ClientSecret::new(secret))))
}

/// A parameter name fit for an error message: printable ASCII, bounded.
fn printable_name(name: &str) -> String {
    name.chars()
        .filter(|c| c.is_ascii_graphic())
        .take(40)
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    const FORM: Option<&[u8]> = Some(b"application/x-www-form-urlencoded");

    fn basic(id: &str, secret: &str) -> Vec<u8> {
        let raw = format!("{id}:{secret}");
        format!(
            "Basic {}",
            base64::engine::general_purpose::STANDARD.encode(raw)
        )
        .into_bytes()
    }

    #[test]
    fn basic_credentials_are_form_decoded() {
        let header = basic("my%20client", "s%3Acret+x");
        let request =
            TokenRequest::parse(FORM, Some(&header), None, b"grant_type=client_credentials")
                .unwrap();
        assert_eq!(request.client_id(), Some("my client"));
        assert_eq!(request.client_secret().unwrap().secret(), "s:cret x");
        assert_eq!(request.credential_source(), CredentialSource::BasicHeader);
        assert!(request.is_cacheable());
    }

    #[test]
    fn basic_without_padding_and_mixed_case_scheme() {
        // "a:b" is YTpi in base64, which needs no padding; "ab:c" is YWI6Yw==.
        let request = TokenRequest::parse(
            FORM,
            Some(b"bAsIc   YWI6Yw"),
            None,
            b"grant_type=client_credentials",
        )
        .unwrap();
        assert_eq!(request.client_id(), Some("ab"));
    }

    #[test]
    fn body_credentials() {
        let request = TokenRequest::parse(
            Some(b"Application/X-WWW-Form-Urlencoded; charset=UTF-8"),
            None,
            None,
            b"grant_type=client_credentials&client_id=c&client_secret=s&scope=b+a+b",
        )
        .unwrap();
        assert_eq!(request.credential_source(), CredentialSource::Body);
        assert_eq!(request.scopes(), vec!["a", "b"]);
        assert!(request.is_cacheable());
    }

    #[test]
    fn scope_from_query_string() {
        let header = basic("c", "s");
        let request = TokenRequest::parse(
            FORM,
            Some(&header),
            Some("scope=api%2Fread"),
            b"grant_type=client_credentials",
        )
        .unwrap();
        assert_eq!(request.scopes(), vec!["api/read"]);
    }

    #[test]
    fn extra_params_sorted() {
        let request = TokenRequest::parse(
            FORM,
            None,
            None,
            b"resource=r&grant_type=client_credentials&aws_client_metadata=%7B%7D&client_id=c",
        )
        .unwrap();
        let extra: Vec<_> = request.extra_params().collect();
        assert_eq!(
            extra,
            vec![("aws_client_metadata", "{}"), ("resource", "r")]
        );
    }

    #[test]
    fn rejections() {
        let header = basic("c", "s");
        // (content type, authorization, query, body, expected error)
        type Case<'a> = (
            Option<&'a [u8]>,
            Option<&'a [u8]>,
            Option<&'a str>,
            &'a [u8],
            RequestError,
        );
        let cases: Vec<Case<'_>> = vec![
            (
                Some(b"application/json"),
                None,
                None,
                b"grant_type=client_credentials",
                RequestError::UnsupportedContentType,
            ),
            (
                None,
                None,
                None,
                b"grant_type=client_credentials",
                RequestError::UnsupportedContentType,
            ),
            (
                FORM,
                None,
                None,
                b"grant_type=client_credentials&scope=a&scope=b",
                RequestError::DuplicateParameter("scope".into()),
            ),
            (
                FORM,
                None,
                Some("scope=a"),
                b"grant_type=client_credentials&scope=b",
                RequestError::DuplicateParameter("scope".into()),
            ),
            (
                FORM,
                None,
                None,
                b"grant_type=client_credentials&scope=api/read&scope=",
                RequestError::DuplicateParameter("scope".into()),
            ),
            (
                FORM,
                None,
                Some("scope=api/write"),
                b"grant_type=client_credentials&scope=",
                RequestError::DuplicateParameter("scope".into()),
            ),
            (
                FORM,
                None,
                None,
                b"grant_type=client_credentials&resource=r9&resource",
                RequestError::DuplicateParameter("resource".into()),
            ),
            (
                FORM,
                None,
                None,
                b"grant_type=client_credentials&client_id=c&client_secret=s&client_id=",
                RequestError::DuplicateParameter("client_id".into()),
            ),
            (
                FORM,
                Some(&header),
                None,
                b"grant_type=client_credentials&client_id=c",
                RequestError::CredentialsInHeaderAndBody,
            ),
            (
                FORM,
                Some(b"Basic !!!"),
                None,
                b"grant_type=client_credentials",
                RequestError::MalformedBasicAuth("not base64"),
            ),
            (
                FORM,
                Some(b"Basic"),
                None,
                b"grant_type=client_credentials",
                RequestError::MalformedBasicAuth("no credentials"),
            ),
            (
                FORM,
                Some(b"Basic YWJj"), // "abc"
                None,
                b"grant_type=client_credentials",
                RequestError::MalformedBasicAuth("no `:` between id and secret"),
            ),
            (FORM, None, None, b"scope=a", RequestError::MissingGrantType),
            (
                FORM,
                None,
                None,
                b"grant_type=%zz",
                RequestError::MalformedForm("malformed percent-encoding in form"),
            ),
        ];
        for (content_type, auth, query, body, expected) in cases {
            let got = TokenRequest::parse(content_type, auth, query, body).unwrap_err();
            assert_eq!(got, expected, "body {:?}", String::from_utf8_lossy(body));
        }
    }

    #[test]
    fn error_text_never_holds_the_secret() {
        let header = basic("c", "topsecret");
        let error = TokenRequest::parse(
            FORM,
            Some(&header),
            None,
            b"grant_type=client_credentials&client_secret=topsecret",
        )
        .unwrap_err();
        assert!(!error.to_string().contains("topsecret"));
        assert!(!format!("{error:?}").contains("topsecret"));
    }

    #[test]
    fn not_cacheable_cases() {
        let header = basic("c", "s");
        let code = TokenRequest::parse(
            FORM,
            Some(&header),
            None,
            b"grant_type=authorization_code&code=x",
        )
        .unwrap();
        assert!(!code.is_cacheable());
        let anonymous =
            TokenRequest::parse(FORM, None, None, b"grant_type=client_credentials").unwrap();
        assert!(!anonymous.is_cacheable());
        let bearer = TokenRequest::parse(
            FORM,
            Some(b"Bearer abc"),
            None,
            b"grant_type=client_credentials&client_id=c",
        )
        .unwrap();
        assert_eq!(bearer.credential_source(), CredentialSource::ForeignHeader);
        assert!(!bearer.is_cacheable());
    }

    #[test]
    fn scope_sets_on_the_stack_and_on_the_heap_agree() {
        let many: Vec<String> = (0..20).rev().map(|n| format!("s{n:02}")).collect();
        for scope in ["b a b c", "", "one", &many.join("+")] {
            let body = format!("grant_type=client_credentials&client_id=c&scope={scope}");
            let request = TokenRequest::parse(FORM, None, None, body.as_bytes()).unwrap();
            let expected = request.scopes();
            request.with_scopes(|set| assert_eq!(set, expected.as_slice(), "{scope}"));
        }
    }

    /// Parses `(authorization, query, body)` and rebuilds it.
    fn reparse_canonical(request: &TokenRequest<'_>) -> (Vec<u8>, Option<String>) {
        let canonical = request.canonical().unwrap();
        (
            canonical.body().as_bytes().to_vec(),
            canonical.authorization().map(str::to_owned),
        )
    }

    fn same_request(a: &TokenRequest<'_>, b: &TokenRequest<'_>) {
        assert_eq!(a.grant_type(), b.grant_type());
        assert_eq!(a.client_id(), b.client_id());
        assert_eq!(
            a.client_secret().map(ClientSecret::secret),
            b.client_secret().map(ClientSecret::secret)
        );
        assert_eq!(a.credential_source(), b.credential_source());
        assert_eq!(a.scopes(), b.scopes());
        assert_eq!(
            a.extra_params().collect::<Vec<_>>(),
            b.extra_params().collect::<Vec<_>>()
        );
    }

    #[test]
    fn canonical_form_is_built_from_the_parsed_values() {
        let header = basic("my%20client", "s%3Acret+x/=");
        let request = TokenRequest::parse(
            FORM,
            Some(&header),
            Some("scope=b+a"),
            b"grant_type=client_credentials&resource=r&aws_client_metadata=&x=%26",
        )
        .unwrap();
        let canonical = request.canonical().unwrap();
        assert_eq!(
            canonical.body(),
            "grant_type=client_credentials&scope=a+b&resource=r&x=%26"
        );
        // "my%20client:s:cret%20x/=" (the secret's `+` was a space).
        assert_eq!(
            canonical.authorization(),
            Some("Basic bXklMjBjbGllbnQ6czpjcmV0JTIweC89")
        );
        assert!(!format!("{canonical:?}").contains("cret"));
        let (body, authorization) = reparse_canonical(&request);
        let again = TokenRequest::parse(
            FORM,
            authorization.as_deref().map(str::as_bytes),
            None,
            &body,
        )
        .unwrap();
        same_request(&request, &again);

        let body_credentials = TokenRequest::parse(
            FORM,
            None,
            None,
            b"client_secret=s+1&grant_type=client_credentials&client_id=c",
        )
        .unwrap();
        let canonical = body_credentials.canonical().unwrap();
        assert_eq!(
            canonical.body(),
            "grant_type=client_credentials&client_id=c&client_secret=s+1"
        );
        assert_eq!(canonical.authorization(), None);

        let foreign = TokenRequest::parse(
            FORM,
            Some(b"Bearer x"),
            None,
            b"grant_type=client_credentials",
        )
        .unwrap();
        assert!(foreign.canonical().is_none());
    }

    proptest::proptest! {
        /// Whatever parses, rebuilt and parsed again, is the same request.
        #[test]
        fn canonical_form_round_trips(
            id in "[ -~é]{1,12}",
            secret in "[ -~é]{0,12}",
            scopes in proptest::collection::vec("[!-~]{1,6}", 0..4),
            extra in proptest::collection::btree_map("[a-z_]{1,8}", "[ -~]{0,8}", 0..3),
            in_header: bool,
        ) {
            let encode = |value: &str| {
                let mut encoder = form::Encoder::with_capacity(16);
                encoder.pair("v", value);
                encoder.finish()[2..].to_owned()
            };
            let mut body = String::from("grant_type=client_credentials");
            let header = if in_header {
                let mut raw = String::new();
                form::escape_basic_component(&mut raw, &id, true);
                raw.push(':');
                form::escape_basic_component(&mut raw, &secret, false);
                Some(format!(
                    "Basic {}",
                    base64::engine::general_purpose::STANDARD.encode(raw)
                ))
            } else {
                body.push_str(&format!("&client_id={}&client_secret={}", encode(&id), encode(&secret)));
                None
            };
            body.push_str(&format!("&scope={}", encode(&scopes.join(" "))));
            for (name, value) in &extra {
                if !["grant_type", "client_id", "client_secret", "scope"].contains(&name.as_str()) {
                    body.push_str(&format!("&{name}={}", encode(value)));
                }
            }
            let Ok(request) = TokenRequest::parse(
                FORM,
                header.as_deref().map(str::as_bytes),
                None,
                body.as_bytes(),
            ) else {
                // Only an id that decodes to nothing is refused here.
                proptest::prop_assert!(id.trim().is_empty() || in_header);
                return Ok(());
            };
            let (body, authorization) = reparse_canonical(&request);
            let again =
                TokenRequest::parse(FORM, authorization.as_deref().map(str::as_bytes), None, &body)
                    .unwrap();
            same_request(&request, &again);
        }
    }

    #[test]
    fn empty_values_are_omitted() {
        let request = TokenRequest::parse(
            FORM,
            None,
            None,
            b"grant_type=client_credentials&client_id=c&scope=&resource=",
        )
        .unwrap();
        assert!(request.scopes().is_empty());
        assert_eq!(request.extra_params().len(), 0);
    }
}
