//! An OTLP/HTTP trace sink for the benchmark: tokencache exports its spans
//! here while wrk measures the hit path with traces on, so the export's
//! whole cost (span creation, the batch processor, protobuf encoding, the
//! HTTP exchange) is paid on loopback, and the collector's is not.
//!
//! It answers `POST /v1/traces` with an empty `ExportTraceServiceResponse`
//! (a zero-length protobuf message: success, nothing rejected) after
//! reading the body, and counts exports and their bytes; `GET /stats`
//! returns `{"exports": N, "bytes": N}`.
//!
//! ```text
//! otlp-sink --listen 127.0.0.1:4318
//! OTEL_EXPORTER_OTLP_ENDPOINT=http://127.0.0.1:4318 tokencache serve …
//! ```

#![allow(clippy::print_stdout)] // a command-line tool that reports on stdout

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use anyhow::Context as _;
use bytes::Bytes;
use clap::Parser;
use http::{Method, Request, Response, StatusCode, header};
use http_body_util::{BodyExt as _, Full};
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper_util::rt::TokioIo;
use tokio::net::TcpListener;

#[derive(Debug, Parser)]
struct Args {
    /// Address to serve on.
    #[arg(long)]
    listen: SocketAddr,
}

/// What arrived.
#[derive(Default)]
struct Received {
    exports: AtomicU64,
    bytes: AtomicU64,
}

#[tokio::main(flavor = "current_thread")]
async fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    let received = Arc::new(Received::default());
    let listener = TcpListener::bind(args.listen)
        .await
        .with_context(|| format!("bind {}", args.listen))?;
    println!("otlp-sink listening on {}", listener.local_addr()?);
    loop {
        let (stream, _) = listener.accept().await?;
        let received = Arc::clone(&received);
        tokio::spawn(async move {
            let service = service_fn(move |request: Request<Incoming>| {
                let received = Arc::clone(&received);
                async move { Ok::<_, Infallible>(answer(&received, request).await) }
            });
            // An exporter that hangs up ends its connection; nothing to report.
            let _ = hyper::server::conn::http1::Builder::new()
                .serve_connection(TokioIo::new(stream), service)
                .await;
        });
    }
}

async fn answer(received: &Received, request: Request<Incoming>) -> Response<Full<Bytes>> {
    match (request.method(), request.uri().path()) {
        (&Method::POST, "/v1/traces") => {
            let length = match request.into_body().collect().await {
                Ok(body) => body.to_bytes().len(),
                Err(_) => return reply(StatusCode::BAD_REQUEST, "text/plain", Bytes::new()),
            };
            received.exports.fetch_add(1, Ordering::Relaxed);
            received
                .bytes
                .fetch_add(u64::try_from(length).unwrap_or(u64::MAX), Ordering::Relaxed);
            reply(StatusCode::OK, "application/x-protobuf", Bytes::new())
        }
        (&Method::GET, "/stats") => {
            let stats = serde_json::json!({
                "exports": received.exports.load(Ordering::Relaxed),
                "bytes": received.bytes.load(Ordering::Relaxed),
            });
            reply(
                StatusCode::OK,
                "application/json",
                Bytes::from(stats.to_string()),
            )
        }
        _ => reply(StatusCode::NOT_FOUND, "text/plain", Bytes::new()),
    }
}

fn reply(status: StatusCode, content_type: &'static str, body: Bytes) -> Response<Full<Bytes>> {
    let mut response = Response::new(Full::new(body));
    *response.status_mut() = status;
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        http::HeaderValue::from_static(content_type),
    );
    response
}
