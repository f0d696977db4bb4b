//! Serving the proxy: both listeners, connection limits, TLS,
//! housekeeping, graceful shutdown.

use std::future::Future;
use std::io;
use std::sync::Arc;
use std::time::Duration;

use hyper::body::Incoming;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto::Builder;
use hyper_util::server::graceful::{GracefulShutdown, Watcher};
use hyper_util::service::TowerToHyperService;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{Semaphore, watch};

use crate::proxy::Proxy;
use crate::tls::ReloadableTls;

/// How often expired entries are dropped and metrics drained.
const HOUSEKEEPING_EVERY: Duration = Duration::from_secs(15);

/// Protection against clients that hold resources.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// Connections served at once; beyond it new ones wait in the kernel's
    /// backlog. Default 4096.
    pub max_connections: usize,
    /// Time a client has to send its request headers; a slowloris client
    /// is cut off after it. Default 5 s.
    pub header_read_timeout: Duration,
    /// Time a client has to send its whole request body; past it, 408.
    /// Default 30 s.
    pub request_timeout: Duration,
    /// Bytes of request headers accepted (HTTP/1.1 read buffer, HTTP/2
    /// header list); larger headers get 431. Default 16 KiB.
    pub max_header_bytes: usize,
    /// Request headers accepted (HTTP/1.1); more get 431. Default 64.
    pub max_headers: usize,
    /// Time allowed for a TLS handshake. Default 10 s.
    pub tls_handshake_timeout: Duration,
}

impl Default for Limits {
    fn default() -> Self {
        Self {
            max_connections: 4096,
            header_read_timeout: Duration::from_secs(5),
            request_timeout: Duration::from_secs(30),
            max_header_bytes: 16 << 10,
            max_headers: 64,
            tls_handshake_timeout: Duration::from_secs(10),
        }
    }
}

/// How the token listener is served.
#[derive(Debug, Clone, Default)]
pub struct ServeOptions {
    /// Connection and request limits.
    pub limits: Limits,
    /// HTTPS for the token listener; plain HTTP when `None`. (The admin
    /// listener is always plain HTTP: keep it on a private interface.)
    pub tls: Option<ReloadableTls>,
}

/// Serves `proxy` on `listener` (and its admin endpoints on `admin`) with
/// default limits and no TLS, until `shutdown` completes; see [`serve_with`].
///
/// # Errors
/// An I/O error from a listener.
pub async fn serve(
    proxy: Proxy,
    listener: TcpListener,
    admin: Option<TcpListener>,
    shutdown: impl Future<Output = ()> + Send + 'static,
    grace: Duration,
) -> io::Result<()> {
    serve_with(
        proxy,
        listener,
        admin,
        ServeOptions::default(),
        shutdown,
        grace,
    )
    .await
}

/// Serves `proxy` until `shutdown` completes; then stops accepting, marks
/// itself not ready, and lets requests in progress finish for at most
/// `grace`.
///
/// # Errors
/// An I/O error from a listener.
pub async fn serve_with(
    proxy: Proxy,
    listener: TcpListener,
    admin: Option<TcpListener>,
    options: ServeOptions,
    shutdown: impl Future<Output = ()> + Send + 'static,
    grace: Duration,
) -> io::Result<()> {
    let (stop_tx, stop_rx) = watch::channel(false);
    let limits = options.limits;
    proxy.set_request_timeout(limits.request_timeout);
    let main = tokio::spawn(accept_loop(
        listener,
        proxy.token_service(),
        options.tls,
        limits,
        stop_rx.clone(),
        grace,
    ));
    let admin = admin.map(|admin| {
        tokio::spawn(accept_loop(
            admin,
            TowerToHyperService::new(proxy.admin_router()),
            None,
            limits,
            stop_rx.clone(),
            grace,
        ))
    });
    let housekeeping = tokio::spawn({
        let proxy = proxy.clone();
        async move {
            let mut tick = tokio::time::interval(HOUSEKEEPING_EVERY);
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                tick.tick().await;
                proxy.housekeeping();
            }
        }
    });

    shutdown.await;
    tracing::info!(
        grace_secs = grace.as_secs_f64(),
        "shutting down: draining requests in progress"
    );
    proxy.set_ready(false);
    let _ = stop_tx.send(true);
    let result = main
        .await
        .unwrap_or_else(|join| Err(io::Error::other(join)));
    if let Some(admin) = admin {
        let _ = admin.await;
    }
    housekeeping.abort();
    result
}

/// Accepts connections until told to stop, then drains them for at most
/// `grace`.
async fn accept_loop<S, B>(
    listener: TcpListener,
    service: S,
    tls: Option<ReloadableTls>,
    limits: Limits,
    mut stop: watch::Receiver<bool>,
    grace: Duration,
) -> io::Result<()>
where
    S: hyper::service::Service<http::Request<Incoming>, Response = http::Response<B>>
        + Clone
        + Send
        + Sync
        + 'static,
    S::Future: Send + 'static,
    S::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
    B: http_body::Body + Send + 'static,
    B::Data: Send,
    B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
{
    let mut builder = Builder::new(TokioExecutor::new());
    builder
        .http1()
        .timer(TokioTimer::new())
        .header_read_timeout(limits.header_read_timeout)
        .max_buf_size(limits.max_header_bytes.max(8192))
        .max_headers(limits.max_headers);
    builder
        .http2()
        .timer(TokioTimer::new())
        .max_header_list_size(u32::try_from(limits.max_header_bytes).unwrap_or(u32::MAX));
    let builder = Arc::new(builder);
    let connections = Arc::new(Semaphore::new(limits.max_connections.max(1)));
    let graceful = GracefulShutdown::new();

    loop {
        let permit = tokio::select! {
            permit = Arc::clone(&connections).acquire_owned() => permit.map_err(io::Error::other)?,
            () = stopped(&mut stop) => break,
        };
        let (stream, peer) = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok(accepted) => accepted,
                Err(error) => {
                    // Out of file descriptors and the like: pause, go on.
                    tracing::warn!(%error, "accept failed");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                    continue;
                }
            },
            () = stopped(&mut stop) => break,
        };
        let _ = stream.set_nodelay(true);
        let watcher = graceful.watcher();
        let builder = Arc::clone(&builder);
        let service = service.clone();
        let acceptor = tls.as_ref().map(ReloadableTls::acceptor);
        tokio::spawn(async move {
            let _permit = permit;
            let result =
                serve_connection(stream, acceptor, &builder, service, watcher, limits).await;
            if let Err(error) = result {
                tracing::debug!(%peer, %error, "connection ended with an error");
            }
        });
    }
    drop(listener);
    if tokio::time::timeout(grace, graceful.shutdown())
        .await
        .is_ok()
    {
        tracing::info!("shut down cleanly");
    } else {
        tracing::warn!("grace period over; closing the remaining connections");
    }
    Ok(())
}

/// Completes once the stop signal is set (or its sender is gone).
async fn stopped(stop: &mut watch::Receiver<bool>) {
    // The guard `wait_for` returns is dropped here, before any await of
    // the caller: it must not live across one.
    let _ = stop.wait_for(|stop| *stop).await.map(|_| ());
}

async fn serve_connection<S, B>(
    stream: TcpStream,
    acceptor: Option<tokio_rustls::TlsAcceptor>,
    builder: &Builder<TokioExecutor>,
    service: S,
    watcher: Watcher,
    limits: Limits,
) -> Result<(), Box<dyn std::error::Error + Send + Sync>>
where
    S: hyper::service::Service<http::Request<Incoming>, Response = http::Response<B>>
        + Send
        + 'static,
    S::Future: Send + 'static,
    S::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
    B: http_body::Body + Send + 'static,
    B::Data: Send,
    B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
{
    match acceptor {
        None => {
            let connection = builder.serve_connection(TokioIo::new(stream), service);
            watcher.watch(connection.into_owned()).await
        }
        Some(acceptor) => {
            let tls = tokio::time::timeout(limits.tls_handshake_timeout, acceptor.accept(stream))
                .await
                .map_err(|_| "TLS handshake timed out")??;
            let connection = builder.serve_connection(TokioIo::new(tls), service);
            watcher.watch(connection.into_owned()).await
        }
    }
}
