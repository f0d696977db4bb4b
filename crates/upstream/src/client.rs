//! The pooled client and one request/answer exchange.

use std::path::PathBuf;
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use http::{HeaderMap, StatusCode};
use reqwest::Url;

use crate::error::UpstreamError;
use crate::headers::strip_hop_by_hop;

/// How the client reaches token endpoints.
#[derive(Debug, Clone)]
pub struct UpstreamConfig {
    /// Time allowed to open a connection (TCP and TLS). Default 5 s.
    pub connect_timeout: Duration,
    /// Time allowed for a whole exchange, connection included. Default 10 s:
    /// Cognito answers in tens of milliseconds; a caller waiting longer is
    /// better served by an error it can act on.
    pub request_timeout: Duration,
    /// The largest answer read, in bytes. Default 1 MiB; token answers are a
    /// few kilobytes.
    pub max_response_bytes: usize,
    /// Idle pooled connections are closed after this long. Default 90 s.
    pub pool_idle_timeout: Duration,
    /// A PEM file of extra root certificates, for private identity providers.
    pub ca_file: Option<PathBuf>,
}

impl Default for UpstreamConfig {
    fn default() -> Self {
        Self {
            connect_timeout: Duration::from_secs(5),
            request_timeout: Duration::from_secs(10),
            max_response_bytes: 1 << 20,
            pool_idle_timeout: Duration::from_secs(90),
            ca_file: None,
        }
    }
}

/// One request to a token endpoint.
#[derive(Debug)]
pub struct UpstreamRequest<'a> {
    /// The token endpoint.
    pub url: &'a Url,
    /// The caller's query string, appended to the endpoint's own.
    pub query: Option<&'a str>,
    /// Headers to send, already filtered by
    /// [`forwardable_headers`](crate::forwardable_headers).
    pub headers: HeaderMap,
    /// The form body, sent as the caller sent it.
    pub body: Bytes,
}

/// The token endpoint's answer, hop-by-hop headers removed.
#[derive(Debug, Clone)]
pub struct UpstreamResponse {
    /// The status.
    pub status: StatusCode,
    /// The end-to-end headers.
    pub headers: HeaderMap,
    /// The whole body.
    pub body: Bytes,
}

/// A pooled HTTP client for token endpoints; clones share the pool.
#[derive(Debug, Clone)]
pub struct UpstreamClient {
    http: reqwest::Client,
    max_response_bytes: usize,
}

impl UpstreamClient {
    /// Builds a client.
    ///
    /// # Errors
    /// [`UpstreamError::Config`] when the CA file cannot be read or parsed,
    /// or TLS cannot be set up.
    pub fn new(config: &UpstreamConfig) -> Result<Self, UpstreamError> {
        let mut builder = reqwest::Client::builder()
            .connect_timeout(config.connect_timeout)
            .timeout(config.request_timeout)
            .pool_idle_timeout(config.pool_idle_timeout)
            // A token endpoint that redirects is answered as it answered;
            // following it would resend the credentials elsewhere.
            .redirect(reqwest::redirect::Policy::none())
            .tcp_nodelay(true);
        if let Some(path) = &config.ca_file {
            let pem = std::fs::read(path).map_err(|error| {
                UpstreamError::Config(format!("reading CA file {}: {error}", path.display()))
            })?;
            let certificates = reqwest::Certificate::from_pem_bundle(&pem).map_err(|error| {
                UpstreamError::Config(format!("parsing CA file {}: {error}", path.display()))
            })?;
            for certificate in certificates {
                builder = builder.add_root_certificate(certificate);
            }
        }
        let http = builder
            .build()
            .map_err(|error| UpstreamError::Config(error.to_string()))?;
        Ok(Self {
            http,
            max_response_bytes: config.max_response_bytes,
        })
    }

    /// Sends a `POST` to the token endpoint and reads the whole answer.
    ///
    /// # Errors
    /// An [`UpstreamError`] when no complete answer came back.
    pub async fn send(
        &self,
        request: UpstreamRequest<'_>,
    ) -> Result<UpstreamResponse, UpstreamError> {
        let url = with_query(request.url, request.query);
        let mut response = self
            .http
            .post(url)
            .headers(request.headers)
            .body(request.body)
            .send()
            .await
            .map_err(UpstreamError::from_reqwest)?;
        let status = response.status();
        let limit = self.max_response_bytes;
        if response
            .content_length()
            .is_some_and(|length| length > limit as u64)
        {
            return Err(UpstreamError::ResponseTooLarge { limit });
        }
        let mut body = BytesMut::new();
        while let Some(chunk) = response
            .chunk()
            .await
            .map_err(UpstreamError::from_reqwest)?
        {
            if body.len() + chunk.len() > limit {
                return Err(UpstreamError::ResponseTooLarge { limit });
            }
            body.extend_from_slice(&chunk);
        }
        let mut headers = std::mem::take(response.headers_mut());
        strip_hop_by_hop(&mut headers);
        Ok(UpstreamResponse {
            status,
            headers,
            body: body.freeze(),
        })
    }
}

/// The endpoint URL with the caller's query string appended.
fn with_query(url: &Url, query: Option<&str>) -> Url {
    let mut url = url.clone();
    if let Some(extra) = query.filter(|q| !q.is_empty()) {
        let merged = match url.query() {
            Some(own) if !own.is_empty() => format!("{own}&{extra}"),
            _ => extra.to_owned(),
        };
        url.set_query(Some(&merged));
    }
    url
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn query_is_appended() {
        let url: Url = "https://idp.example/oauth2/token".parse().unwrap();
        assert_eq!(
            with_query(&url, None).as_str(),
            "https://idp.example/oauth2/token"
        );
        assert_eq!(
            with_query(&url, Some("scope=a%2Fb")).as_str(),
            "https://idp.example/oauth2/token?scope=a%2Fb"
        );
        let with_own: Url = "https://idp.example/t?x=1".parse().unwrap();
        assert_eq!(
            with_query(&with_own, Some("y=2")).as_str(),
            "https://idp.example/t?x=1&y=2"
        );
    }

    #[tokio::test]
    async fn unreachable_is_a_retryable_connect_error() {
        // Bind then drop, so the port is (almost certainly) closed.
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let client = UpstreamClient::new(&UpstreamConfig::default()).unwrap();
        let url: Url = format!("http://127.0.0.1:{port}/oauth2/token")
            .parse()
            .unwrap();
        let error = client
            .send(UpstreamRequest {
                url: &url,
                query: None,
                headers: HeaderMap::new(),
                body: Bytes::new(),
            })
            .await
            .unwrap_err();
        assert!(matches!(error, UpstreamError::Connect(_)), "{error:?}");
        assert!(error.is_retryable());
        assert!(!error.is_timeout());
    }

    #[test]
    fn bad_ca_file_is_a_config_error() {
        let config = UpstreamConfig {
            ca_file: Some("/nonexistent/ca.pem".into()),
            ..UpstreamConfig::default()
        };
        assert!(matches!(
            UpstreamClient::new(&config),
            Err(UpstreamError::Config(_))
        ));
    }
}
