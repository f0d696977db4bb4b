//! The load tools behind `scripts/bench` (see `BENCHMARKS.md`): what wrk
//! cannot do, or the harness needs to control precisely.
//!
//! | binary | what it does |
//! | --- | --- |
//! | `reference` | a minimal hyper server that replays one cached answer of tokencache to every `POST`: the physical limit of the box |
//! | `coalesce` | opens N connections, then sends N identical requests for a new key at once; upstream requests, distinct tokens and waiter latencies per key |
//! | `steady` | paced load for a fixed time, recording every latency and `Cache-Status`, to see what callers feel when tokens are refreshed |
//! | `loader` | fills a cache with N distinct keys at bounded concurrency |
//! | `otlp-sink` | an OTLP/HTTP trace endpoint that answers every export at once and counts them, for the hit path with traces on |
//!
//! Every tool talks plain HTTP/1.1 with keep-alive over its own
//! connections (hyper's low-level client), so connection setup is never in
//! a measured latency, and prints one JSON object on stdout for the harness.
//!
//! Every request is `POST` with `Authorization: Basic` and the form body
//! [`token_body`]: the same bytes wrk's Lua script sends, so a cache warmed
//! by `loader` is hit by wrk, in tokencache and in nginx alike.
//!
//! ```
//! assert_eq!(
//!     tokencache_bench::token_body("k", 7),
//!     "grant_type=client_credentials&resource=k7"
//! );
//! ```
//!
//! This crate has no feature flags.

use std::net::SocketAddr;
use std::time::Duration;

use anyhow::{Context as _, bail};
use base64::Engine as _;
use bytes::Bytes;
use http::{Request, StatusCode, Uri, header};
use http_body_util::{BodyExt as _, Full};
use hyper::client::conn::http1::SendRequest;
use hyper_util::rt::TokioIo;
use tokio::net::TcpStream;

/// The form body for key number `n`: one client, a distinct `resource`
/// parameter per key (the mock IdP accepts it, the proxy keys on it).
#[must_use]
pub fn token_body(prefix: &str, n: u64) -> String {
    format!("grant_type=client_credentials&resource={prefix}{n}")
}

/// The `Authorization` value for `id:secret`.
#[must_use]
pub fn basic_header(id_secret: &str) -> String {
    format!(
        "Basic {}",
        base64::engine::general_purpose::STANDARD.encode(id_secret)
    )
}

/// A token endpoint on loopback: where to connect and what to ask for.
#[derive(Debug, Clone)]
pub struct Endpoint {
    /// The socket address.
    pub addr: SocketAddr,
    /// The `Host` header.
    pub authority: String,
    /// The path and query.
    pub path: String,
    /// The `Authorization` header value.
    pub authorization: String,
}

impl Endpoint {
    /// Parses an `http://IP:PORT/path` URL (no name resolution: the harness
    /// only ever targets loopback addresses it chose).
    ///
    /// # Errors
    /// When the URL is not `http://` with a numeric address and a port.
    pub fn new(url: &str, id_secret: &str) -> anyhow::Result<Self> {
        let uri: Uri = url.parse().with_context(|| format!("bad URL {url}"))?;
        if uri.scheme_str() != Some("http") {
            bail!("only http:// URLs: {url}");
        }
        let authority = uri
            .authority()
            .with_context(|| format!("no host in {url}"))?
            .to_string();
        let addr: SocketAddr = authority
            .parse()
            .with_context(|| format!("the host of {url} must be IP:PORT"))?;
        let path = uri
            .path_and_query()
            .map_or_else(|| "/".to_owned(), ToString::to_string);
        Ok(Self {
            addr,
            authority,
            path,
            authorization: basic_header(id_secret),
        })
    }

    /// Opens one keep-alive HTTP/1.1 connection; its driver runs on a
    /// spawned task until the sender is dropped.
    ///
    /// # Errors
    /// When the connection or the handshake fails.
    pub async fn connect(&self) -> anyhow::Result<Connection> {
        let stream = TcpStream::connect(self.addr)
            .await
            .with_context(|| format!("connect to {}", self.addr))?;
        stream.set_nodelay(true)?;
        let (sender, connection) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
            .await
            .context("HTTP/1 handshake")?;
        tokio::spawn(async move {
            // A closed connection shows up as an error on the next request.
            let _ = connection.await;
        });
        Ok(Connection {
            sender,
            endpoint: self.clone(),
        })
    }

    /// Opens `n` connections, all before any request is sent.
    ///
    /// # Errors
    /// When any connection fails.
    pub async fn connect_many(&self, n: usize) -> anyhow::Result<Vec<Connection>> {
        let mut connections = Vec::with_capacity(n);
        for _ in 0..n {
            connections.push(self.connect().await?);
        }
        Ok(connections)
    }

    /// A `GET` on another path of the same host, on a fresh connection
    /// (for `/stats` and `/metrics`).
    ///
    /// # Errors
    /// When the request fails or the status is not 200.
    pub async fn get(addr: SocketAddr, path: &str) -> anyhow::Result<Bytes> {
        let endpoint = Self {
            addr,
            authority: addr.to_string(),
            path: path.to_owned(),
            authorization: String::new(),
        };
        let mut connection = endpoint.connect().await?;
        let request = Request::get(path)
            .header(header::HOST, &endpoint.authority)
            .body(Full::new(Bytes::new()))?;
        let response = connection.sender.send_request(request).await?;
        let status = response.status();
        let body = response.into_body().collect().await?.to_bytes();
        if status != StatusCode::OK {
            bail!("GET {path}: {status}");
        }
        Ok(body)
    }
}

/// One open connection to an [`Endpoint`].
#[derive(Debug)]
pub struct Connection {
    sender: SendRequest<Full<Bytes>>,
    endpoint: Endpoint,
}

/// What came back for one token request.
#[derive(Debug)]
pub struct Answer {
    /// The status.
    pub status: StatusCode,
    /// The `Cache-Status` header, if any.
    pub cache_status: Option<String>,
    /// The headers.
    pub headers: http::HeaderMap,
    /// The whole body.
    pub body: Bytes,
}

impl Answer {
    /// The `access_token` of a JSON body.
    #[must_use]
    pub fn access_token(&self) -> Option<String> {
        let value: serde_json::Value = serde_json::from_slice(&self.body).ok()?;
        value.get("access_token")?.as_str().map(str::to_owned)
    }

    /// A short class of the `Cache-Status` header: `hit`, `hit-refreshing`,
    /// `miss-stored`, `collapsed`, `other` or `none`.
    #[must_use]
    pub fn cache_class(&self) -> &'static str {
        match self.cache_status.as_deref() {
            None => "none",
            Some(value) if value.contains("; hit") && value.contains("refreshing") => {
                "hit-refreshing"
            }
            Some(value) if value.contains("; hit") => "hit",
            Some(value) if value.contains("collapsed") => "collapsed",
            Some(value) if value.contains("fwd=miss") => "miss-stored",
            Some(_) => "other",
        }
    }
}

impl Connection {
    /// Posts `body` as a form with the endpoint's credentials and reads the
    /// whole answer.
    ///
    /// # Errors
    /// When the connection fails.
    pub async fn post(&mut self, body: Bytes) -> anyhow::Result<Answer> {
        let endpoint = &self.endpoint;
        let request = Request::post(endpoint.path.as_str())
            .header(header::HOST, &endpoint.authority)
            .header(header::AUTHORIZATION, &endpoint.authorization)
            .header(header::CONTENT_TYPE, "application/x-www-form-urlencoded")
            .body(Full::new(body))?;
        self.sender.ready().await.context("connection closed")?;
        let response = self.sender.send_request(request).await?;
        let (parts, body) = response.into_parts();
        let body = body.collect().await?.to_bytes();
        let cache_status = parts
            .headers
            .get("cache-status")
            .and_then(|value| value.to_str().ok())
            .map(str::to_owned);
        Ok(Answer {
            status: parts.status,
            cache_status,
            headers: parts.headers,
            body,
        })
    }
}

/// Latency figures in milliseconds from a list of durations.
#[must_use]
pub fn latency_summary(latencies: &mut [Duration]) -> serde_json::Value {
    latencies.sort_unstable();
    let ms = |d: Duration| d.as_secs_f64() * 1000.0;
    let at = |q: f64| latencies_at(latencies, q).map(ms);
    serde_json::json!({
        "count": latencies.len(),
        "min_ms": latencies.first().copied().map(ms),
        "p50_ms": at(0.50),
        "p90_ms": at(0.90),
        "p99_ms": at(0.99),
        "p999_ms": at(0.999),
        "max_ms": latencies.last().copied().map(ms),
    })
}

/// The `q` quantile (nearest rank) of sorted durations.
#[must_use]
pub fn latencies_at(sorted: &[Duration], q: f64) -> Option<Duration> {
    if sorted.is_empty() {
        return None;
    }
    #[allow(
        clippy::cast_possible_truncation,
        clippy::cast_sign_loss,
        clippy::cast_precision_loss
    )] // q in [0, 1] and len fits an f64 exactly for any list we hold
    let rank = ((q * sorted.len() as f64).ceil() as usize).clamp(1, sorted.len());
    Some(sorted[rank - 1])
}

/// The `token_requests` counter of the mock IdP's `GET /stats`.
///
/// # Errors
/// When the mock IdP does not answer or the JSON lacks the counter.
pub async fn idp_token_requests(stats: SocketAddr) -> anyhow::Result<u64> {
    let body = Endpoint::get(stats, "/stats").await?;
    let value: serde_json::Value = serde_json::from_slice(&body)?;
    value
        .get("token_requests")
        .and_then(serde_json::Value::as_u64)
        .context("no token_requests in /stats")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quantiles_are_nearest_rank() {
        let list: Vec<Duration> = (1..=100).map(Duration::from_millis).collect();
        assert_eq!(latencies_at(&list, 0.5), Some(Duration::from_millis(50)));
        assert_eq!(latencies_at(&list, 0.99), Some(Duration::from_millis(99)));
        assert_eq!(latencies_at(&list, 1.0), Some(Duration::from_millis(100)));
        assert_eq!(latencies_at(&list, 0.0), Some(Duration::from_millis(1)));
        assert_eq!(latencies_at(&[], 0.5), None);
    }

    #[test]
    fn endpoint_from_url() {
        let endpoint = Endpoint::new("http://127.0.0.1:8080/oauth2/token", "a:b").unwrap();
        assert_eq!(endpoint.addr.port(), 8080);
        assert_eq!(endpoint.path, "/oauth2/token");
        assert_eq!(endpoint.authorization, "Basic YTpi");
        assert!(Endpoint::new("https://127.0.0.1:1/x", "a:b").is_err());
        assert!(Endpoint::new("http://localhost:1/x", "a:b").is_err());
    }
}
