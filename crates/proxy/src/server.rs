//! Serving the proxy: both listeners, connection limits, TLS,
//! housekeeping, graceful shutdown.

use std::future::Future;
use std::io;
use std::sync::Arc;
use std::time::Duration;

use hyper_util::service::TowerToHyperService;
use tokio::net::TcpListener;
use tokio::sync::watch;

use crate::config::Limits;
use crate::connections::Connections;
use crate::listener::{Listener, serve_listener};
use crate::proxy::Proxy;
use crate::tls::ReloadableTls;

/// How often expired entries are dropped and metrics drained.
const HOUSEKEEPING_EVERY: Duration = Duration::from_secs(15);

/// How the token listener is served.
#[derive(Debug, Clone, Default)]
pub struct ServeOptions {
    /// Connection and request limits.
    pub limits: Limits,
    /// HTTPS for the token listener; plain HTTP when `None`. (The admin
    /// listener is always plain HTTP: keep it on a private interface.)
    pub tls: Option<ReloadableTls>,
    /// Threads that serve the token listener, each with a single-threaded
    /// runtime of its own (thread per core: no work stealing and no
    /// cross-thread wake-ups on the hit path). The caller's runtime accepts
    /// and hands each connection to the thread serving the fewest. 0 serves
    /// the listener on the caller's runtime. Default 0.
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
    let main = tokio::spawn(serve_listener(
        listener,
        token_listener,
        options.workers,
        stop_rx,
        grace,
    ));
    let admin = admin.map(|admin| {
        // `/readyz` reports when the token listener is saturated.
        let router = proxy
            .admin_router()
            .layer(axum::Extension(Arc::clone(&token_connections)));
        tokio::spawn(serve_listener(
            admin,
            Listener {
                service: TowerToHyperService::new(router),
                metrics: None,
                connections: Arc::new(Connections::new(limits.connections())),
                tls: None,
                limits,
            },
            0,
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
