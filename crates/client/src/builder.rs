//! Building a [`ClientCredentials`] source, with every setting checked once.

use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use http::Uri;
use tokencache_core::{Backoff, ClientSecret, FreshnessPolicy, MinRemaining};

use crate::clock::{Clock, CoreClock, SystemClock};
use crate::error::Error;
use crate::fetch::Fetcher;
use crate::options::Variant;
use crate::request::{AuthMethod, Endpoint, RESERVED_PARAMS};
use crate::source::{ClientCredentials, SourceParts};
use crate::transport::Transport;

impl ClientCredentials {
    /// A builder; `token_url`, `client_id` and `client_secret` are required.
    #[must_use]
    pub fn builder() -> ClientCredentialsBuilder {
        ClientCredentialsBuilder::default()
    }
}

/// Builds a [`ClientCredentials`] source. Get one from
/// [`ClientCredentials::builder`].
///
/// | setting | default |
/// | --- | --- |
/// | [`token_url`](Self::token_url), [`client_id`](Self::client_id), [`client_secret`](Self::client_secret) | required |
/// | [`scopes`](Self::scopes) | none (the endpoint grants the client's defaults) |
/// | [`auth_method`](Self::auth_method) | [`AuthMethod::Basic`] |
/// | [`refresh_at`](Self::refresh_at) | 0.75 of the lifetime |
/// | [`min_remaining`](Self::min_remaining) | 10 % of the lifetime |
/// | [`refresh_jitter`](Self::refresh_jitter) | up to 5 % of the lifetime earlier |
/// | [`timeout`](Self::timeout) | 30 s for a whole fetch, retries included |
/// | [`attempt_timeout`](Self::attempt_timeout) | 10 s for one exchange |
/// | [`backoff`](Self::backoff) | [`Backoff::default`]: 4 attempts, 100 ms base, 5 s cap |
/// | [`clock`](Self::clock) | the system clock |
/// | [`transport`](Self::transport) | a `reqwest::Client` without redirects (feature `reqwest`) |
pub struct ClientCredentialsBuilder {
    token_url: Option<String>,
    client_id: Option<String>,
    client_secret: Option<ClientSecret>,
    scopes: Vec<String>,
    auth_method: AuthMethod,
    params: Vec<(String, String)>,
    refresh_at: f64,
    min_remaining: MinRemaining,
    refresh_jitter: f64,
    timeout: Duration,
    attempt_timeout: Duration,
    backoff: Backoff,
    clock: Arc<dyn Clock>,
    transport: Option<Arc<dyn Transport>>,
}

impl Default for ClientCredentialsBuilder {
    fn default() -> Self {
        let policy = FreshnessPolicy::default();
        Self {
            token_url: None,
            client_id: None,
            client_secret: None,
            scopes: Vec::new(),
            auth_method: AuthMethod::default(),
            params: Vec::new(),
            refresh_at: policy.refresh_at(),
            min_remaining: policy.min_remaining(),
            refresh_jitter: 0.05,
            timeout: Duration::from_secs(30),
            attempt_timeout: Duration::from_secs(10),
            backoff: Backoff::default(),
            clock: Arc::new(SystemClock),
            transport: None,
        }
    }
}

impl ClientCredentialsBuilder {
    /// The token endpoint, such as
    /// `https://<domain>.auth.<region>.amazoncognito.com/oauth2/token`, or
    /// a tokencache proxy in front of it.
    #[must_use]
    pub fn token_url(mut self, url: impl Into<String>) -> Self {
        self.token_url = Some(url.into());
        self
    }

    /// The client id.
    #[must_use]
    pub fn client_id(mut self, id: impl Into<String>) -> Self {
        self.client_id = Some(id.into());
        self
    }

    /// The client secret. It is kept in a [`ClientSecret`]: redacted in
    /// `Debug`, wiped on drop.
    #[must_use]
    pub fn client_secret(mut self, secret: impl Into<String>) -> Self {
        self.client_secret = Some(ClientSecret::new(secret.into()));
        self
    }

    /// The scopes to ask for (the `scope` parameter, space-separated). Adds
    /// to those given before.
    #[must_use]
    pub fn scopes<S: Into<String>>(mut self, scopes: impl IntoIterator<Item = S>) -> Self {
        self.scopes.extend(scopes.into_iter().map(Into::into));
        self
    }

    /// How the client authenticates: [`AuthMethod::Basic`] (the default)
    /// or [`AuthMethod::Body`].
    #[must_use]
    pub fn auth_method(mut self, method: AuthMethod) -> Self {
        self.auth_method = method;
        self
    }

    /// An extra form parameter, such as Cognito's `aws_client_metadata` or
    /// RFC 8707's `resource`. `grant_type`, `scope`, `client_id` and
    /// `client_secret` are set by the source and refused here.
    #[must_use]
    pub fn param(mut self, name: impl Into<String>, value: impl Into<String>) -> Self {
        self.params.push((name.into(), value.into()));
        self
    }

    /// The share of a token's lifetime after which it is refreshed in the
    /// background, in `(0, 1]`. Default 0.75, as AWS advises for Cognito.
    #[must_use]
    pub fn refresh_at(mut self, fraction: f64) -> Self {
        self.refresh_at = fraction;
        self
    }

    /// How long before its end a token stops being used: callers then wait
    /// for a new one. Default 10 % of the lifetime, which leaves time for
    /// the request that carries it and for clock skew.
    #[must_use]
    pub fn min_remaining(mut self, min_remaining: MinRemaining) -> Self {
        self.min_remaining = min_remaining;
        self
    }

    /// The largest random shift of the refresh point, earlier, as a share
    /// of the lifetime, in `[0, 1)`. Default 0.05. Each token gets its own
    /// shift, so a fleet started together spreads its refreshes. 0 turns it
    /// off.
    #[must_use]
    pub fn refresh_jitter(mut self, fraction: f64) -> Self {
        self.refresh_jitter = fraction;
        self
    }

    /// The longest a fetch may take, retries and backoff included. A
    /// caller waiting for a token waits at most this long. Default 30 s.
    #[must_use]
    pub fn timeout(mut self, timeout: Duration) -> Self {
        self.timeout = timeout;
        self
    }

    /// The longest one exchange with the token endpoint may take before it
    /// is abandoned (and retried, while attempts and time remain). Default
    /// 10 s.
    #[must_use]
    pub fn attempt_timeout(mut self, timeout: Duration) -> Self {
        self.attempt_timeout = timeout;
        self
    }

    /// The retry policy within one fetch, and between failed background
    /// refreshes.
    #[must_use]
    pub fn backoff(mut self, backoff: Backoff) -> Self {
        self.backoff = backoff;
        self
    }

    /// Where the time comes from, for lifetimes, the refresh schedule and
    /// refresh backoff. Tests pass a manual clock. (Backoff delays within a
    /// fetch and timeouts are Tokio timers.)
    #[must_use]
    pub fn clock(mut self, clock: Arc<dyn Clock>) -> Self {
        self.clock = clock;
        self
    }

    /// The HTTP transport. Without one, a default `reqwest::Client` (feature
    /// `reqwest`).
    #[must_use]
    pub fn transport(mut self, transport: impl Transport) -> Self {
        self.transport = Some(Arc::new(transport));
        self
    }

    /// Uses `client` as the transport, to share its connection pool or its
    /// TLS and proxy settings. It should not follow redirects: a redirected
    /// token request carries the credentials elsewhere.
    #[cfg(feature = "reqwest")]
    #[must_use]
    pub fn http_client(self, client: reqwest::Client) -> Self {
        self.transport(client)
    }

    /// Checks the settings and builds the source. No request is sent until
    /// the first [`ClientCredentials::token`] call.
    ///
    /// # Errors
    ///
    /// [`Error::Config`] when a required setting is missing or a setting is
    /// out of range.
    pub fn build(self) -> Result<ClientCredentials, Error> {
        let uri = token_uri(self.token_url.as_deref())?;
        let client_id = self
            .client_id
            .filter(|id| !id.is_empty())
            .ok_or_else(|| config("client_id is required"))?;
        let client_secret = self
            .client_secret
            .filter(|secret| !secret.secret().is_empty())
            .ok_or_else(|| config("client_secret is required"))?;
        if let Some((name, _)) = self
            .params
            .iter()
            .find(|(name, _)| name.is_empty() || RESERVED_PARAMS.contains(&name.as_str()))
        {
            return Err(config(format!(
                "the parameter `{name}` cannot be set as an extra parameter"
            )));
        }
        let policy = FreshnessPolicy::new(self.refresh_at, self.min_remaining)
            .map_err(|error| config(error.to_string()))?;
        if !(0.0..1.0).contains(&self.refresh_jitter) {
            return Err(config(format!(
                "refresh_jitter must be a fraction of the lifetime in [0, 1), got {}",
                self.refresh_jitter
            )));
        }
        if self.timeout.is_zero() || self.attempt_timeout.is_zero() {
            return Err(config("timeouts must be longer than zero"));
        }
        let transport = match self.transport {
            Some(transport) => transport,
            None => default_transport()?,
        };
        let endpoint = Endpoint {
            uri,
            client_id,
            client_secret,
            auth_method: self.auth_method,
            scopes: self.scopes,
            params: self.params,
        };
        // The usual request, built once now so that what cannot be encoded
        // is a configuration error here rather than at the first fetch.
        endpoint.request(&Variant::default())?;
        Ok(ClientCredentials::from_parts(SourceParts {
            fetcher: Fetcher {
                endpoint,
                transport,
                policy,
                backoff: self.backoff,
                timeout: self.timeout,
                attempt_timeout: self.attempt_timeout,
                clock: Arc::new(CoreClock(self.clock)),
            },
            refresh_jitter: self.refresh_jitter,
        }))
    }
}

fn config(message: impl Into<String>) -> Error {
    Error::Config(message.into())
}

/// The token URL: absolute, `http` or `https`.
fn token_uri(url: Option<&str>) -> Result<Uri, Error> {
    let url = url.ok_or_else(|| config("token_url is required"))?;
    let uri: Uri = url
        .parse()
        .map_err(|_| config("token_url is not a valid URL"))?;
    let scheme_ok = matches!(uri.scheme_str(), Some("https" | "http"));
    if !scheme_ok || uri.authority().is_none() {
        return Err(config("token_url must be an absolute http(s) URL"));
    }
    Ok(uri)
}

#[cfg(feature = "reqwest")]
fn default_transport() -> Result<Arc<dyn Transport>, Error> {
    Ok(Arc::new(crate::transport::default_client()?))
}

#[cfg(not(feature = "reqwest"))]
fn default_transport() -> Result<Arc<dyn Transport>, Error> {
    Err(config(
        "no transport: enable the `reqwest` feature or call `.transport(...)`",
    ))
}

impl fmt::Debug for ClientCredentialsBuilder {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ClientCredentialsBuilder")
            .field("token_url", &self.token_url)
            .field("client_id", &self.client_id)
            .field("client_secret", &self.client_secret)
            .field("scopes", &self.scopes)
            .field("auth_method", &self.auth_method)
            .field(
                "params",
                &self.params.iter().map(|(name, _)| name).collect::<Vec<_>>(),
            )
            .field("refresh_at", &self.refresh_at)
            .field("min_remaining", &self.min_remaining)
            .field("refresh_jitter", &self.refresh_jitter)
            .field("timeout", &self.timeout)
            .field("attempt_timeout", &self.attempt_timeout)
            .field("backoff", &self.backoff)
            .field("clock", &self.clock)
            .finish_non_exhaustive()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn valid() -> ClientCredentialsBuilder {
        ClientCredentials::builder()
            .token_url("https://idp.example/oauth2/token")
            .client_id("id")
            .client_secret("hunter2")
    }

    fn config_error(builder: ClientCredentialsBuilder) -> String {
        match builder.build() {
            Err(Error::Config(message)) => message,
            other => panic!("expected a configuration error, got {other:?}"),
        }
    }

    #[tokio::test]
    async fn builds_with_the_required_settings() {
        let source = valid().scopes(["api/read"]).build().unwrap();
        let printed = format!("{source:?}");
        assert!(printed.contains("idp.example"), "{printed}");
        assert!(!printed.contains("hunter2"), "{printed}");
    }

    #[test]
    fn refuses_missing_or_bad_settings() {
        assert!(config_error(ClientCredentials::builder()).contains("token_url"));
        assert!(config_error(valid().token_url("ftp://x/y")).contains("http"));
        assert!(config_error(valid().token_url("/oauth2/token")).contains("absolute"));
        assert!(config_error(valid().client_id("")).contains("client_id"));
        assert!(config_error(valid().client_secret("")).contains("client_secret"));
        assert!(config_error(valid().param("scope", "x")).contains("scope"));
        assert!(config_error(valid().refresh_at(1.5)).contains("refresh-at"));
        assert!(
            config_error(valid().min_remaining(MinRemaining::Fraction(1.0)))
                .contains("min-remaining")
        );
        assert!(config_error(valid().refresh_jitter(1.0)).contains("refresh_jitter"));
        assert!(config_error(valid().timeout(Duration::ZERO)).contains("timeouts"));
    }

    #[test]
    fn builder_debug_is_redacted() {
        let printed = format!("{:?}", valid().param("aws_client_metadata", "private"));
        assert!(!printed.contains("hunter2"), "{printed}");
        assert!(!printed.contains("private"), "{printed}");
        assert!(printed.contains("aws_client_metadata"), "{printed}");
    }
}
