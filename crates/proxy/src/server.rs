//! Serving the proxy: both listeners, connection limits, TLS,
//! housekeeping, graceful shutdown.

use std::future::Future;
use std::io;
use std::pin::pin;
use std::sync::Arc;
use std::time::Duration;

use hyper::body::Incoming;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto::Builder;
use hyper_util::server::graceful::GracefulConnection;
use hyper_util::service::TowerToHyperService;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;
use tokio::task::JoinSet;

use crate::activity::Ticks;
use crate::config::Limits;
use crate::connections::{Admission, ConnectionLimits, Connections, Ticket};
use crate::in_flight::CountInFlight;
use crate::metrics::{ConnectionEvent, ProxyMetrics};
use crate::proxy::Proxy;
use crate::tls::ReloadableTls;
use crate::watchdog::{self, Close, IdleRules};

/// How often expired entries are dropped and metrics drained.
const HOUSEKEEPING_EVERY: Duration = Duration::from_secs(15);

impl Limits {
    fn connections(&self) -> ConnectionLimits {
        ConnectionLimits {
            max: self.max_connections,
            per_ip: self.max_connections_per_ip,
        }
    }

    fn idle_rules(&self) -> IdleRules {
        IdleRules {
            first_request: self.header_read_timeout,
            between_requests: self.idle_timeout,
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
    /// Threads that serve the token listener, each with a single-threaded
    /// runtime of its own accepting from the same socket (thread per core:
    /// no work stealing and no cross-thread wake-ups on the hit path). 0
    /// serves it on the caller's runtime. Default 0.
    pub workers: usize,
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

/// Serves `proxy` until `shutdown` completes; then marks itself not ready
/// (`/readyz` answers 503 from that moment), stops accepting on the token
/// listener, and lets requests in progress finish for at most `grace`. The
/// admin listener keeps answering (metrics, `/readyz`) until the token
/// listener has drained, so a load balancer sees the drain rather than
/// refused connections; then it closes too.
///
/// With a shared store it also follows the fleet
/// ([`Proxy::watch_fleet`]) while it serves.
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
    // The admin listener stops on its own signal, sent once the token
    // listener has drained.
    let (admin_stop_tx, admin_stop_rx) = watch::channel(false);
    let limits = options.limits;
    let token_connections = Arc::new(Connections::new(limits.connections()));
    let token_listener = Listener {
        service: proxy.token_service(&limits),
        metrics: Some(proxy.metrics()),
        connections: Arc::clone(&token_connections),
        tls: options.tls,
        limits,
    };
    let main = match options.workers {
        0 => tokio::spawn(accept_loop(listener, token_listener, stop_rx, grace)),
        workers => tokio::spawn(serve_on_workers(
            listener,
            token_listener,
            workers,
            stop_rx,
            grace,
        )),
    };
    let admin = admin.map(|admin| {
        // `/readyz` reports when the token listener is saturated.
        let router = proxy
            .admin_router()
            .layer(axum::Extension(Arc::clone(&token_connections)));
        tokio::spawn(accept_loop(
            admin,
            Listener {
                service: TowerToHyperService::new(router),
                metrics: None,
                connections: Arc::new(Connections::new(limits.connections())),
                tls: None,
                limits,
            },
            admin_stop_rx,
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
    let fleet = tokio::spawn({
        let proxy = proxy.clone();
        async move { proxy.watch_fleet().await }
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
    let _ = admin_stop_tx.send(true);
    if let Some(admin) = admin {
        let _ = admin.await;
    }
    housekeeping.abort();
    fleet.abort();
    result
}

/// What one listener serves, and how.
#[derive(Clone)]
struct Listener<S> {
    service: S,
    /// Where connections are counted (the token listener's only).
    metrics: Option<ProxyMetrics>,
    connections: Arc<Connections>,
    tls: Option<ReloadableTls>,
    limits: Limits,
}

/// The HTTP/1.1 and HTTP/2 settings of a listener.
fn http_builder(limits: &Limits) -> Builder<TokioExecutor> {
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
        .max_header_list_size(u32::try_from(limits.max_header_bytes).unwrap_or(u32::MAX))
        .max_concurrent_streams(limits.max_concurrent_streams.max(1))
        // Rapid reset (CVE-2023-44487): a stream the client opens and
        // cancels at once stops counting against the concurrent streams,
        // so that limit alone does not bound a flood. hyper drops the
        // request future of a stream reset after we accepted it; the two
        // limits below bound the rest, and past either the connection gets
        // GOAWAY (ENHANCE_YOUR_CALM). Set here rather than
        // left to h2's defaults, so a dependency update cannot loosen them
        // unnoticed.
        .max_pending_accept_reset_streams(MAX_PENDING_ACCEPT_RESET_STREAMS)
        .max_local_error_reset_streams(MAX_LOCAL_ERROR_RESET_STREAMS);
    builder
}

/// Streams the client reset before we accepted them, waiting to be
/// accepted (h2's own default since the rapid-reset fix). A legitimate
/// client cancels the odd request; twenty unaccepted at once is a flood.
const MAX_PENDING_ACCEPT_RESET_STREAMS: usize = 20;

/// Streams we had to reset because the client broke the protocol, over a
/// connection's life (the "MadeYouReset" variant: the client makes the
/// server do the resetting). A well-behaved client causes none; h2's
/// default is 1024, more than a token client ever needs.
const MAX_LOCAL_ERROR_RESET_STREAMS: usize = 128;

/// Serves `listener` on `workers` threads, each running [`accept_loop`] on
/// a single-threaded runtime of its own, all accepting from the same socket
/// (the kernel hands each connection to one of them). Loads a worker
/// starts run on its runtime; callers on other workers wait for them like
/// any caller does.
async fn serve_on_workers<S, B>(
    listener: TcpListener,
    served: Listener<S>,
    workers: usize,
    stop: watch::Receiver<bool>,
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
    let listener = listener.into_std()?;
    let mut finished = Vec::with_capacity(workers);
    for index in 0..workers {
        let socket = listener.try_clone()?;
        let (served, stop) = (served.clone(), stop.clone());
        let (done, finish) = tokio::sync::oneshot::channel();
        std::thread::Builder::new()
            .name(format!("tokencache-worker-{index}"))
            .spawn(move || {
                let result = tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build()
                    .and_then(|runtime| {
                        runtime.block_on(async move {
                            let listener = TcpListener::from_std(socket)?;
                            accept_loop(listener, served, stop, grace).await
                        })
                    });
                let _ = done.send(result);
            })?;
        finished.push(finish);
    }
    drop(listener);
    let mut result = Ok(());
    for finish in finished {
        let outcome = finish
            .await
            .unwrap_or_else(|_| Err(io::Error::other("a worker thread panicked")));
        if result.is_ok() {
            result = outcome;
        }
    }
    result
}

/// Accepts connections until told to stop, then drains them for at most
/// `grace`.
async fn accept_loop<S, B>(
    listener: TcpListener,
    served: Listener<S>,
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
    let builder = Arc::new(http_builder(&served.limits));
    let mut connections = JoinSet::new();
    loop {
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
        // Forget the connections that have ended.
        while connections.try_join_next().is_some() {}
        let (ticket, event) = match served.connections.admit(peer.ip()) {
            Admission::Admitted(ticket) if ticket.reclaimed() => {
                (Some(ticket), ConnectionEvent::Reclaimed)
            }
            Admission::Admitted(ticket) => (Some(ticket), ConnectionEvent::Accepted),
            Admission::OverPerIpLimit => {
                tracing::debug!(%peer, "connection refused: too many from this address");
                (None, ConnectionEvent::RefusedPerIp)
            }
            Admission::Saturated => {
                tracing::debug!(%peer, "connection refused: every connection is busy");
                (None, ConnectionEvent::RefusedSaturated)
            }
        };
        if let Some(metrics) = &served.metrics {
            metrics.connection(event);
        }
        // A refused stream is dropped here, which closes it at once.
        let Some(ticket) = ticket else { continue };
        let _ = stream.set_nodelay(true);
        let connection = Connection {
            builder: Arc::clone(&builder),
            ticket,
            ticks: served.connections.ticks(),
            limits: served.limits,
            stop: stop.clone(),
        };
        let service = served.service.clone();
        let acceptor = served.tls.as_ref().map(ReloadableTls::acceptor);
        connections.spawn(async move {
            if let Err(error) = connection.serve(stream, acceptor, service).await {
                tracing::debug!(%peer, %error, "connection ended with an error");
            }
        });
    }
    drop(listener);
    let drained = tokio::time::timeout(grace, async {
        while connections.join_next().await.is_some() {}
    });
    if drained.await.is_ok() {
        tracing::info!("shut down cleanly");
    } else {
        tracing::warn!("grace period over; closing the remaining connections");
        connections.shutdown().await;
    }
    Ok(())
}

/// Completes once the stop signal is set (or its sender is gone).
async fn stopped(stop: &mut watch::Receiver<bool>) {
    // The guard `wait_for` returns is dropped here, before any await of
    // the caller: it must not live across one.
    let _ = stop.wait_for(|stop| *stop).await.map(|_| ());
}

type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// One accepted connection, with what it needs to serve itself.
struct Connection {
    builder: Arc<Builder<TokioExecutor>>,
    ticket: Ticket,
    ticks: Ticks,
    limits: Limits,
    stop: watch::Receiver<bool>,
}

impl Connection {
    /// Serves the connection until it ends or its watchdog closes it.
    async fn serve<S, B>(
        mut self,
        stream: TcpStream,
        acceptor: Option<tokio_rustls::TlsAcceptor>,
        service: S,
    ) -> Result<(), BoxError>
    where
        S: hyper::service::Service<http::Request<Incoming>, Response = http::Response<B>>
            + Send
            + 'static,
        S::Future: Send + 'static,
        S::Error: Into<BoxError>,
        B: http_body::Body + Send + 'static,
        B::Data: Send,
        B::Error: Into<BoxError>,
    {
        let activity = Arc::clone(self.ticket.activity());
        let service = CountInFlight::new(service, Arc::clone(&activity));
        let builder = Arc::clone(&self.builder);
        match acceptor {
            None => {
                let connection = builder.serve_connection(TokioIo::new(stream), service);
                self.drive(connection).await
            }
            Some(acceptor) => {
                let handshake = tokio::time::timeout(
                    self.limits.tls_handshake_timeout,
                    acceptor.accept(stream),
                );
                let tls = tokio::select! {
                    tls = handshake => tls.map_err(|_| "TLS handshake timed out")??,
                    () = activity.close_asked() => return Ok(()),
                    () = stopped(&mut self.stop) => return Ok(()),
                };
                // The time to send a request head starts now.
                activity.restart_idle_clock();
                let connection = builder.serve_connection(TokioIo::new(tls), service);
                self.drive(connection).await
            }
        }
    }

    /// Runs `connection` beside its watchdog; when the watchdog says so,
    /// closes it.
    async fn drive<C>(&mut self, connection: C) -> Result<(), BoxError>
    where
        C: GracefulConnection,
        C::Error: Into<BoxError>,
    {
        let activity = self.ticket.activity();
        let mut connection = pin!(connection);
        let watchdog = watchdog::watch(
            activity,
            self.ticks,
            self.limits.idle_rules(),
            stopped(&mut self.stop),
        );
        let reason = tokio::select! {
            result = connection.as_mut() => return result.map_err(Into::into),
            reason = watchdog => reason,
        };
        if activity.snapshot().requests == 0 {
            // Nothing was ever answered on it, so nothing is left to
            // flush: drop it. (A graceful close would wait for an HTTP/2
            // handshake that the client may never finish.)
            tracing::debug!(?reason, "closing a connection that sent no request");
            return Ok(());
        }
        // HTTP/1.1 finishes the answer it is writing, HTTP/2 sends GOAWAY
        // and finishes its streams.
        connection.as_mut().graceful_shutdown();
        if reason == Close::Shutdown {
            // The server's grace period bounds the requests in progress.
            return connection.await.map_err(Into::into);
        }
        tracing::debug!(?reason, "closing connection");
        loop {
            match tokio::time::timeout(CLOSE_WITHIN, connection.as_mut()).await {
                Ok(result) => return result.map_err(Into::into),
                // A request that slipped in as the close was decided: its
                // own timeouts bound it.
                Err(_) if activity.snapshot().in_flight > 0 => {}
                // Nothing in flight, and still not closed (a client that
                // does not read, a half-sent head): drop it.
                Err(_) => return Ok(()),
            }
        }
    }
}

/// How long a connection being closed with no request in flight may take
/// to flush what it was writing.
const CLOSE_WITHIN: Duration = Duration::from_secs(1);
