//! The server loop: connections served with hyper directly, rather than with
//! `axum::serve`, so a handler can have its connection dropped without an
//! answer (the reset and hang faults), and so requests left hanging are let
//! go when the server stops instead of holding the drain open for ever.
//!
//! A handler asks for its connection to be dropped by answering
//! [`drop_connection`]; the per-connection service turns that answer into a
//! service error, on which hyper closes the connection without writing a
//! byte of response (HTTP/1.1), or resets the stream (HTTP/2).

use std::future::Future;
use std::io;
use std::time::Duration;

use axum::Router;
use axum::body::{Body, Bytes};
use axum::http::{Request, StatusCode};
use axum::response::{IntoResponse, Response};
use hyper::body::Incoming;
use hyper_util::rt::{TokioExecutor, TokioIo};
use hyper_util::server::conn::auto;
use hyper_util::server::graceful::GracefulShutdown;
use tokio::net::TcpListener;
use tokio::sync::watch;
use tower::ServiceExt as _;

/// How long a request hangs when it is not served by [`serve`] (through
/// `MockIdp::router` in a test, say), where nothing tells it the server is
/// stopping: long enough to outlast any client timeout, short enough not to
/// hold someone else's graceful shutdown for ever.
const HANG_WITHOUT_SERVER: Duration = Duration::from_secs(3600);

/// Set on every request by [`serve`]: completes when the server starts to
/// stop, so hanging requests can let their connections go.
#[derive(Debug, Clone)]
pub(crate) struct ServerStopping(watch::Receiver<bool>);

impl ServerStopping {
    /// Waits until the server is stopping (or gone).
    async fn wait(&self) {
        let mut stopping = self.0.clone();
        // An error means the sender is gone: the server has stopped.
        let _ = stopping.wait_for(|stopping| *stopping).await;
    }
}

/// The marker on an answer that must never reach the client: the
/// connection is dropped instead.
#[derive(Debug, Clone, Copy)]
struct DropConnection;

/// The service error that makes hyper drop a connection.
#[derive(Debug, thiserror::Error)]
#[error("connection dropped on purpose (fault injection)")]
struct ConnectionDropped;

/// An answer that drops the connection instead of answering.
///
/// Under [`serve`] the client sees the connection closed with no response.
/// Anywhere else (a `oneshot` test, another server), the answer is a `500`
/// whose body fails to read with a connection-reset I/O error, which is as
/// near as a response can come.
pub(crate) fn drop_connection() -> Response {
    let body = futures::stream::once(async {
        Err::<Bytes, _>(io::Error::new(
            io::ErrorKind::ConnectionReset,
            "connection dropped on purpose (fault injection)",
        ))
    });
    let mut response = (StatusCode::INTERNAL_SERVER_ERROR, Body::from_stream(body)).into_response();
    response.extensions_mut().insert(DropConnection);
    response
}

/// Waits until the server serving this request stops (or, without one, for
/// [`HANG_WITHOUT_SERVER`]), then drops the connection.
pub(crate) async fn hang(stopping: Option<&ServerStopping>) -> Response {
    match stopping {
        Some(stopping) => stopping.wait().await,
        None => tokio::time::sleep(HANG_WITHOUT_SERVER).await,
    }
    drop_connection()
}

/// Serves `router` on `listener` until `shutdown` completes; then stops
/// accepting, lets hanging requests go, and waits for in-flight requests
/// to finish.
///
/// Accept errors never end the loop: those about one connection are
/// skipped, others (out of file descriptors, say) are logged and retried a
/// second later, as `axum::serve` does.
pub(crate) async fn serve(
    router: Router,
    listener: TcpListener,
    shutdown: impl Future<Output = ()> + Send + 'static,
) {
    let (stop_hangs, stopping) = watch::channel(false);
    let stopping = ServerStopping(stopping);
    let graceful = GracefulShutdown::new();
    let builder = auto::Builder::new(TokioExecutor::new());
    let mut shutdown = std::pin::pin!(shutdown);
    loop {
        let accepted = tokio::select! {
            accepted = listener.accept() => accepted,
            () = &mut shutdown => break,
        };
        let (stream, peer) = match accepted {
            Ok(accepted) => accepted,
            Err(err) if is_connection_error(&err) => continue,
            Err(err) => {
                tracing::error!(error = %err, "mock IdP accept error");
                tokio::select! {
                    () = tokio::time::sleep(Duration::from_secs(1)) => continue,
                    () = &mut shutdown => break,
                }
            }
        };
        // Small answers; no reason to let Nagle hold them back.
        let _ = stream.set_nodelay(true);
        let router = router.clone();
        let stopping = stopping.clone();
        let service = hyper::service::service_fn(move |request: Request<Incoming>| {
            handle(router.clone(), stopping.clone(), request)
        });
        let connection = builder
            .serve_connection(TokioIo::new(stream), service)
            .into_owned();
        let connection = graceful.watch(connection);
        tokio::spawn(async move {
            if let Err(err) = connection.await {
                tracing::debug!(%peer, error = %err, "mock IdP connection ended");
            }
        });
    }
    drop(listener);
    // A hanging request would hold its connection, and so the drain below,
    // open for ever.
    stop_hangs.send_replace(true);
    graceful.shutdown().await;
}

/// One request through `router`, with the [`ServerStopping`] signal in its
/// extensions; an answer marked [`DropConnection`] becomes an error.
async fn handle(
    router: Router,
    stopping: ServerStopping,
    mut request: Request<Incoming>,
) -> Result<Response, ConnectionDropped> {
    request.extensions_mut().insert(stopping);
    let response = router
        .oneshot(request)
        .await
        .unwrap_or_else(|never| match never {});
    if response.extensions().get::<DropConnection>().is_some() {
        return Err(ConnectionDropped);
    }
    Ok(response)
}

/// Errors about one connection, which say nothing about the listener.
fn is_connection_error(err: &io::Error) -> bool {
    matches!(
        err.kind(),
        io::ErrorKind::ConnectionRefused
            | io::ErrorKind::ConnectionAborted
            | io::ErrorKind::ConnectionReset
    )
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_dropped_connection_is_an_unreadable_body_without_a_server() {
        let response = drop_connection();
        assert!(response.extensions().get::<DropConnection>().is_some());
        let error = axum::body::to_bytes(response.into_body(), usize::MAX)
            .await
            .unwrap_err();
        assert!(error.to_string().contains("dropped on purpose"), "{error}");
    }

    #[tokio::test(start_paused = true)]
    async fn hanging_without_a_server_ends_after_an_hour() {
        let started = tokio::time::Instant::now();
        let response = hang(None).await;
        assert!(response.extensions().get::<DropConnection>().is_some());
        assert_eq!(started.elapsed(), HANG_WITHOUT_SERVER);
    }

    #[tokio::test]
    async fn hanging_ends_when_the_server_stops() {
        let (stop, stopping) = watch::channel(false);
        let stopping = ServerStopping(stopping);
        let hanging = tokio::spawn(async move { hang(Some(&stopping)).await });
        tokio::task::yield_now().await;
        assert!(!hanging.is_finished());
        stop.send_replace(true);
        let response = hanging.await.unwrap();
        assert!(response.extensions().get::<DropConnection>().is_some());

        // A server already gone releases at once.
        let (stop, stopping) = watch::channel(false);
        drop(stop);
        hang(Some(&ServerStopping(stopping))).await;
    }
}
