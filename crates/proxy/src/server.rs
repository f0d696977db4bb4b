//! Serving the proxy: both listeners, housekeeping, graceful shutdown.

use std::future::{Future, IntoFuture};
use std::io;
use std::time::Duration;

use tokio::net::TcpListener;
use tokio::sync::watch;

use crate::proxy::Proxy;

/// How often expired entries are dropped and metrics drained.
const HOUSEKEEPING_EVERY: Duration = Duration::from_secs(15);

/// Serves `proxy` on `listener` (and its admin endpoints on `admin`) until
/// `shutdown` completes; then stops accepting, marks itself not ready, and
/// lets requests in progress finish for at most `grace`.
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
    let (stop_tx, stop_rx) = watch::channel(false);
    let stopped = move |mut rx: watch::Receiver<bool>| async move {
        // An error means the sender is gone, which also means stop.
        let _ = rx.wait_for(|stop| *stop).await;
    };

    let main = axum::serve(listener, proxy.router())
        .with_graceful_shutdown(stopped(stop_rx.clone()))
        .into_future();
    let mut main = tokio::spawn(main);
    let mut admin_task = admin.map(|admin| {
        let admin = axum::serve(admin, proxy.admin_router())
            .with_graceful_shutdown(stopped(stop_rx.clone()))
            .into_future();
        tokio::spawn(admin)
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

    tokio::select! {
        () = shutdown => {}
        result = &mut main => {
            // The server stopped by itself: a listener error.
            housekeeping.abort();
            return result.unwrap_or_else(|join| Err(io::Error::other(join)));
        }
    }

    tracing::info!(
        grace_secs = grace.as_secs_f64(),
        "shutting down: draining requests in progress"
    );
    proxy.set_ready(false);
    let _ = stop_tx.send(true);
    let drained = tokio::time::timeout(grace, async {
        let main_result = (&mut main).await;
        if let Some(admin) = admin_task.as_mut() {
            let _ = admin.await;
        }
        main_result
    })
    .await;
    housekeeping.abort();
    match drained {
        Ok(result) => {
            tracing::info!("shut down cleanly");
            result.unwrap_or_else(|join| Err(io::Error::other(join)))
        }
        Err(_) => {
            tracing::warn!("grace period over; closing the remaining connections");
            main.abort();
            if let Some(admin) = admin_task {
                admin.abort();
            }
            Ok(())
        }
    }
}
