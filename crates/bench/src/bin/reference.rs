//! The reference server: the physical limit of the box for the hit path.
//!
//! It asks tokencache once for a cached token answer (`--capture`), then
//! answers every request with those same status, headers and body bytes:
//! a multi-threaded tokio runtime, hyper 1, HTTP/1.1 keep-alive, the body
//! read and thrown away. Whatever tokencache spends beyond this is the cost
//! of its own work (parsing, key derivation, lookup, rendering, metrics).
//!
//! ```text
//! reference --listen 127.0.0.1:18000 \
//!     --capture http://127.0.0.1:18001/oauth2/token --body 'grant_type=client_credentials&resource=k0'
//! ```
//!
//! `--auto` and `--header-read-timeout-ms` switch on what tokencache's
//! listener uses (hyper-util's HTTP/1-or-2 auto builder, a header-read
//! timer on every request), so their cost can be measured apart from the
//! proxy's own work; the benchmark's reference uses neither.

#![allow(clippy::print_stdout)] // a command-line tool that reports on stdout

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context as _, bail};
use bytes::Bytes;
use clap::Parser;
use http::{HeaderMap, Request, Response, StatusCode, header};
use http_body_util::{BodyExt as _, Full};
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto::Builder as AutoBuilder;
use tokencache_bench::Endpoint;
use tokio::net::TcpListener;

#[derive(Debug, Parser)]
struct Args {
    /// Address to serve on.
    #[arg(long)]
    listen: SocketAddr,
    /// tokencache's token URL to read the answer from (a hit, once warm).
    #[arg(long)]
    capture: String,
    /// Form body of the captured request.
    #[arg(long, default_value = "grant_type=client_credentials&resource=k0")]
    body: String,
    /// Client id and secret for Basic auth.
    #[arg(long, default_value = "demo-client:demo-secret")]
    basic: String,
    /// Serve through hyper-util's auto (HTTP/1 or HTTP/2) builder.
    #[arg(long)]
    auto: bool,
    /// Arm hyper's header-read timeout (with tokio's timer) on every request.
    #[arg(long)]
    header_read_timeout_ms: Option<u64>,
}

/// The answer replayed to every request.
struct Canned {
    status: StatusCode,
    headers: HeaderMap,
    body: Bytes,
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    let canned = Arc::new(capture(&args).await?);
    let listener = TcpListener::bind(args.listen)
        .await
        .with_context(|| format!("bind {}", args.listen))?;
    println!(
        "reference listening on {} ({} bytes of body, {} headers)",
        listener.local_addr()?,
        canned.body.len(),
        canned.headers.len()
    );
    loop {
        let (stream, _) = listener.accept().await?;
        stream.set_nodelay(true)?;
        let canned = Arc::clone(&canned);
        let header_timeout = args.header_read_timeout_ms.map(Duration::from_millis);
        let auto = args.auto;
        tokio::spawn(async move {
            let service = service_fn(move |request: Request<Incoming>| {
                let canned = Arc::clone(&canned);
                async move { Ok::<_, Infallible>(answer(&canned, request).await) }
            });
            let io = TokioIo::new(stream);
            // A client that hangs up ends its connection; nothing to report.
            if auto {
                let mut builder = AutoBuilder::new(TokioExecutor::new());
                if let Some(timeout) = header_timeout {
                    builder
                        .http1()
                        .timer(TokioTimer::new())
                        .header_read_timeout(timeout);
                }
                let _ = builder.serve_connection(io, service).await;
            } else {
                let mut builder = hyper::server::conn::http1::Builder::new();
                if let Some(timeout) = header_timeout {
                    builder
                        .timer(TokioTimer::new())
                        .header_read_timeout(timeout);
                }
                let _ = builder.serve_connection(io, service).await;
            }
        });
    }
}

async fn answer(canned: &Canned, request: Request<Incoming>) -> Response<Full<Bytes>> {
    // Read the body as tokencache does, so both do the same socket work.
    let _ = request.into_body().collect().await;
    let mut response = Response::new(Full::new(canned.body.clone()));
    *response.status_mut() = canned.status;
    *response.headers_mut() = canned.headers.clone();
    response
}

/// Asks tokencache once and keeps its answer, less the headers hyper writes
/// itself (`date`, `content-length`) or that describe the connection.
async fn capture(args: &Args) -> anyhow::Result<Canned> {
    let endpoint = Endpoint::new(&args.capture, &args.basic)?;
    let mut connection = endpoint.connect().await?;
    let answer = connection.post(Bytes::from(args.body.clone())).await?;
    if answer.status != StatusCode::OK || answer.cache_class() != "hit" {
        bail!(
            "expected a cache hit from {}, got {} with Cache-Status {:?}",
            args.capture,
            answer.status,
            answer.cache_status
        );
    }
    let mut headers = answer.headers;
    for name in [
        header::DATE,
        header::CONTENT_LENGTH,
        header::CONNECTION,
        header::TRANSFER_ENCODING,
    ] {
        headers.remove(name);
    }
    Ok(Canned {
        status: answer.status,
        headers,
        body: answer.body,
    })
}
