//! Serving one listening socket: accepting and admitting connections,
//! placing them on the runtime that serves them, each beside its watchdog,
//! and draining them on shutdown.
//!
//! With worker threads, one acceptor hands every admitted connection to the
//! worker serving the fewest. (Letting every worker accept from the shared
//! socket is cheaper by one hand-off per connection, but whichever worker
//! wakes first takes a whole burst of connections: measured, one of two
//! workers served all 128 connections of a benchmark run while the other
//! idled, at 0.77× the throughput of an even split. The hand-off is once per
//! connection; requests then stay on their worker.)

use std::future::Future;
use std::io;
use std::net::SocketAddr;
use std::pin::pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use hyper::body::Incoming;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto::Builder;
use hyper_util::server::graceful::GracefulConnection;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{mpsc, watch};
use tokio::task::JoinSet;

use crate::activity::Ticks;
use crate::config::Limits;
use crate::connections::{Admission, ConnectionLimits, Connections, Ticket};
use crate::in_flight::CountInFlight;
use crate::metrics::{ConnectionEvent, ProxyMetrics};
use crate::tls::ReloadableTls;
use crate::watchdog::{self, Close, IdleRules};
use crate::woken_only::WokenOnly;

type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// What a listener serves: a hyper service that every connection clones
/// and whose answers may be sent from any worker thread. (A trait with a
/// blanket impl, so the bounds are written once.)
pub(crate) trait HttpService:
    hyper::service::Service<
        http::Request<Incoming>,
        Response = http::Response<Self::Body>,
        Future = Self::Answer,
        Error = Self::Failure,
    > + Clone
    + Send
    + Sync
    + 'static
{
    /// Its answers' body.
    type Body: SendBody;
    /// The service's future.
    type Answer: Future<Output = Result<http::Response<Self::Body>, Self::Failure>> + Send + 'static;
    /// The service's error.
    type Failure: Into<BoxError>;
}

impl<S, B> HttpService for S
where
    S: hyper::service::Service<http::Request<Incoming>, Response = http::Response<B>>
        + Clone
        + Send
        + Sync
        + 'static,
    S::Future: Send + 'static,
    S::Error: Into<BoxError>,
    B: SendBody,
{
    type Body = B;
    type Answer = S::Future;
    type Failure = S::Error;
}

/// An answer's body hyper can send from any thread.
pub(crate) trait SendBody:
    http_body::Body<Data = Self::Chunk, Error = Self::Failure> + Send + 'static
{
    /// Its data frames.
    type Chunk: bytes::Buf + Send;
    /// Its error.
    type Failure: Into<BoxError>;
}

impl<B> SendBody for B
where
    B: http_body::Body + Send + 'static,
    B::Data: Send,
    B::Error: Into<BoxError>,
{
    type Chunk = B::Data;
    type Failure = B::Error;
}

impl Limits {
    pub(crate) fn connections(&self) -> ConnectionLimits {
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

/// What one listener serves, and how.
#[derive(Clone)]
pub(crate) struct Listener<S> {
    pub(crate) service: S,
    /// Where connections are counted (the token listener's only).
    pub(crate) metrics: Option<ProxyMetrics>,
    pub(crate) connections: Arc<Connections>,
    pub(crate) tls: Option<ReloadableTls>,
    pub(crate) limits: Limits,
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

/// How long a connection being closed with no request in flight may take
/// to flush what it was writing.
const CLOSE_WITHIN: Duration = Duration::from_secs(1);

/// Serves `socket` until told to stop, then lets the connections in
/// progress finish for at most `grace`: on the caller's runtime when
/// `workers` is 0, else on that many threads, each with a single-threaded
/// runtime of its own (thread per core: no work stealing and no
/// cross-thread wake-ups on the hit path). Loads a worker starts run on its
/// runtime; callers on other workers wait for them like any caller does.
pub(crate) async fn serve_listener<S>(
    socket: TcpListener,
    served: Listener<S>,
    workers: usize,
    stop: watch::Receiver<bool>,
    grace: Duration,
) -> io::Result<()>
where
    S: HttpService,
{
    if workers == 0 {
        let mut connections = ServedConnections::new(served.clone(), stop.clone());
        accept_until_stopped(&socket, &served, stop, |admitted| {
            connections.spawn(admitted, None);
        })
        .await;
        drop(socket);
        connections.drain(grace).await;
        return Ok(());
    }
    let pool = WorkerPool::start(&served, workers, &stop, grace)?;
    accept_until_stopped(&socket, &served, stop, |admitted| pool.place(admitted)).await;
    drop(socket);
    pool.finish().await
}

/// A connection the listener admitted, with its place in the registry: on
/// a runtime's reactor, or (a `std` stream) on its way to a worker's.
struct Admitted<Stream = TcpStream> {
    stream: Stream,
    peer: SocketAddr,
    ticket: Ticket,
}

/// An admitted connection on its way to a worker: a socket no runtime
/// watches yet.
type HandedOff = Admitted<std::net::TcpStream>;

/// Accepts connections until the stop signal, admits or refuses each, and
/// hands the admitted ones to `place`.
async fn accept_until_stopped<S>(
    socket: &TcpListener,
    served: &Listener<S>,
    mut stop: watch::Receiver<bool>,
    mut place: impl FnMut(Admitted),
) {
    loop {
        let (stream, peer) = tokio::select! {
            accepted = socket.accept() => match accepted {
                Ok(accepted) => accepted,
                Err(error) => {
                    // Out of file descriptors and the like: pause, go on.
                    tracing::warn!(%error, "accept failed");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                    continue;
                }
            },
            () = stopped(&mut stop) => return,
        };
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
        place(Admitted {
            stream,
            peer,
            ticket,
        });
    }
}

/// The connections one runtime serves.
struct ServedConnections<S> {
    served: Listener<S>,
    builder: Arc<Builder<TokioExecutor>>,
    stop: watch::Receiver<bool>,
    tasks: JoinSet<()>,
}

impl<S: HttpService> ServedConnections<S> {
    fn new(served: Listener<S>, stop: watch::Receiver<bool>) -> Self {
        Self {
            builder: Arc::new(http_builder(&served.limits)),
            served,
            stop,
            tasks: JoinSet::new(),
        }
    }

    /// Serves `admitted` on this runtime; `open` counts it while it lives.
    fn spawn(&mut self, admitted: Admitted, open: Option<OpenConnection>) {
        // Forget the connections that have ended.
        while self.tasks.try_join_next().is_some() {}
        let Admitted {
            stream,
            peer,
            ticket,
        } = admitted;
        let connection = Connection {
            builder: Arc::clone(&self.builder),
            ticket,
            ticks: self.served.connections.ticks(),
            limits: self.served.limits,
            stop: self.stop.clone(),
        };
        let service = self.served.service.clone();
        let acceptor = self.served.tls.as_ref().map(ReloadableTls::acceptor);
        self.tasks.spawn(async move {
            let _open = open;
            if let Err(error) = connection.serve(stream, acceptor, service).await {
                tracing::debug!(%peer, %error, "connection ended with an error");
            }
        });
    }

    /// Lets the connections finish for at most `grace` (they were told to
    /// close by the stop signal), then drops the rest.
    async fn drain(mut self, grace: Duration) {
        let drained = tokio::time::timeout(grace, async {
            while self.tasks.join_next().await.is_some() {}
        });
        if drained.await.is_ok() {
            tracing::info!("shut down cleanly");
        } else {
            tracing::warn!("grace period over; closing the remaining connections");
            self.tasks.shutdown().await;
        }
    }
}

/// Counts one connection on its worker while it is open.
struct OpenConnection(Arc<AtomicUsize>);

impl Drop for OpenConnection {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::Relaxed);
    }
}

/// One worker thread, as the acceptor sees it.
struct Worker {
    handoff: mpsc::UnboundedSender<HandedOff>,
    /// Connections it serves now.
    open: Arc<AtomicUsize>,
    finished: tokio::sync::oneshot::Receiver<io::Result<()>>,
}

/// The worker threads serving one listener.
struct WorkerPool {
    workers: Vec<Worker>,
}

impl WorkerPool {
    /// Starts `count` worker threads serving what the acceptor hands them.
    fn start<S>(
        served: &Listener<S>,
        count: usize,
        stop: &watch::Receiver<bool>,
        grace: Duration,
    ) -> io::Result<Self>
    where
        S: HttpService,
    {
        let mut workers = Vec::with_capacity(count);
        for index in 0..count {
            let (handoff, arrivals) = mpsc::unbounded_channel();
            let (done, finished) = tokio::sync::oneshot::channel();
            let open = Arc::new(AtomicUsize::new(0));
            let (served, stop, counted) = (served.clone(), stop.clone(), Arc::clone(&open));
            std::thread::Builder::new()
                .name(format!("tokencache-worker-{index}"))
                .spawn(move || {
                    let result = tokio::runtime::Builder::new_current_thread()
                        .enable_all()
                        .build()
                        .map(|runtime| {
                            runtime
                                .block_on(serve_handed_off(arrivals, served, counted, stop, grace));
                        });
                    let _ = done.send(result);
                })?;
            workers.push(Worker {
                handoff,
                open,
                finished,
            });
        }
        Ok(Self { workers })
    }

    /// Hands `admitted` to the worker serving the fewest connections (or,
    /// should that one's thread be gone, to the next fewest).
    fn place(&self, admitted: Admitted) {
        let Admitted {
            stream,
            peer,
            ticket,
        } = admitted;
        // Detached from this runtime's reactor; the worker registers it
        // with its own.
        let mut handed = match stream.into_std() {
            Ok(stream) => HandedOff {
                stream,
                peer,
                ticket,
            },
            Err(error) => {
                tracing::debug!(%peer, %error, "could not hand a connection to a worker");
                return;
            }
        };
        // A worker whose thread is gone has closed its end; a send to it
        // fails and hands the connection back, for the next least busy.
        while let Some(worker) = self
            .workers
            .iter()
            .filter(|worker| !worker.handoff.is_closed())
            .min_by_key(|worker| worker.open.load(Ordering::Relaxed))
        {
            worker.open.fetch_add(1, Ordering::Relaxed);
            match worker.handoff.send(handed) {
                Ok(()) => return,
                Err(mpsc::error::SendError(back)) => {
                    worker.open.fetch_sub(1, Ordering::Relaxed);
                    handed = back;
                }
            }
        }
        // The connection closes as the hand-off drops.
        tracing::error!(%peer, "no worker thread left to serve a connection; closed");
    }

    /// Tells the workers nothing more comes and waits for them to drain.
    async fn finish(self) -> io::Result<()> {
        let mut result = Ok(());
        let mut finished = Vec::with_capacity(self.workers.len());
        for worker in self.workers {
            drop(worker.handoff);
            finished.push(worker.finished);
        }
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
}

/// A worker's life: serves the connections handed to it until the acceptor
/// stops handing them, then drains them.
async fn serve_handed_off<S>(
    mut arrivals: mpsc::UnboundedReceiver<HandedOff>,
    served: Listener<S>,
    open: Arc<AtomicUsize>,
    stop: watch::Receiver<bool>,
    grace: Duration,
) where
    S: HttpService,
{
    let mut connections = ServedConnections::new(served, stop);
    while let Some(HandedOff {
        stream,
        peer,
        ticket,
    }) = arrivals.recv().await
    {
        let counted = OpenConnection(Arc::clone(&open));
        match TcpStream::from_std(stream) {
            Ok(stream) => connections.spawn(
                Admitted {
                    stream,
                    peer,
                    ticket,
                },
                Some(counted),
            ),
            Err(error) => tracing::debug!(%peer, %error, "could not serve a handed-off connection"),
        }
    }
    connections.drain(grace).await;
}

/// Completes once the stop signal is set (or its sender is gone).
async fn stopped(stop: &mut watch::Receiver<bool>) {
    // The guard `wait_for` returns is dropped here, before any await of
    // the caller: it must not live across one.
    let _ = stop.wait_for(|stop| *stop).await.map(|_| ());
}

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
        // Polled only when its own timer or signals fire, not on every
        // readiness of the connection.
        let watchdog = WokenOnly::new(watchdog::watch(
            activity,
            self.ticks,
            self.limits.idle_rules(),
            stopped(&mut self.stop),
        ));
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

#[cfg(test)]
mod tests {
    use std::convert::Infallible;

    use bytes::Bytes;
    use http_body_util::Full;
    use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};

    use super::*;

    /// Answers every request with the name of the thread that served it.
    fn thread_name_service() -> Listener<
        impl hyper::service::Service<
            http::Request<Incoming>,
            Response = http::Response<Full<Bytes>>,
            Error = Infallible,
            Future: Send + 'static,
        > + Clone
        + Send
        + Sync
        + 'static,
    > {
        let limits = Limits::default();
        Listener {
            service: hyper::service::service_fn(|_request| async {
                let name = std::thread::current().name().unwrap_or("").to_owned();
                Ok::<_, Infallible>(http::Response::new(Full::new(Bytes::from(name))))
            }),
            metrics: None,
            connections: Arc::new(Connections::new(limits.connections())),
            tls: None,
            limits,
        }
    }

    /// One keep-alive request on `stream`; the answer's body.
    async fn ask(stream: &mut TcpStream) -> String {
        stream
            .write_all(b"GET / HTTP/1.1\r\nhost: x\r\n\r\n")
            .await
            .unwrap();
        let mut answer = Vec::new();
        let mut buffer = [0u8; 1024];
        loop {
            let read = stream.read(&mut buffer).await.unwrap();
            assert!(read > 0, "connection closed before the answer");
            answer.extend_from_slice(&buffer[..read]);
            let text = String::from_utf8_lossy(&answer);
            if let Some((head, body)) = text.split_once("\r\n\r\n") {
                let length: usize = head
                    .lines()
                    .find_map(|line| line.strip_prefix("content-length: "))
                    .and_then(|length| length.parse().ok())
                    .unwrap();
                if body.len() >= length {
                    return body[..length].to_owned();
                }
            }
        }
    }

    #[tokio::test]
    async fn workers_share_the_connections_evenly_and_drain_on_stop() {
        let socket = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = socket.local_addr().unwrap();
        let (stop_tx, stop_rx) = watch::channel(false);
        let serving = tokio::spawn(serve_listener(
            socket,
            thread_name_service(),
            2,
            stop_rx,
            Duration::from_secs(1),
        ));

        // Opened one after another and kept open: each goes to the worker
        // with fewer, so they alternate whatever the timing.
        let mut streams = Vec::new();
        let mut served_by = std::collections::HashMap::<String, usize>::new();
        for _ in 0..8 {
            let mut stream = TcpStream::connect(addr).await.unwrap();
            *served_by.entry(ask(&mut stream).await).or_default() += 1;
            streams.push(stream);
        }
        let expected: std::collections::HashMap<String, usize> = [
            ("tokencache-worker-0".to_owned(), 4),
            ("tokencache-worker-1".to_owned(), 4),
        ]
        .into();
        assert_eq!(served_by, expected);
        // A connection keeps its worker for every request.
        let first = ask(&mut streams[0]).await;
        assert_eq!(ask(&mut streams[0]).await, first);

        // Closing four of one worker's connections sends the next ones there.
        let (mut kept, mut closed) = (Vec::new(), 0);
        for mut stream in streams {
            if closed < 4 && ask(&mut stream).await == "tokencache-worker-0" {
                closed += 1;
            } else {
                kept.push(stream);
            }
        }
        assert_eq!(closed, 4);
        let mut stream = TcpStream::connect(addr).await.unwrap();
        // The worker notices the closes as it reads them: wait for that.
        let mut placed = ask(&mut stream).await;
        for _ in 0..50 {
            if placed == "tokencache-worker-0" {
                break;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
            stream = TcpStream::connect(addr).await.unwrap();
            placed = ask(&mut stream).await;
        }
        assert_eq!(placed, "tokencache-worker-0");

        stop_tx.send(true).unwrap();
        tokio::time::timeout(Duration::from_secs(5), serving)
            .await
            .expect("drained within the grace period")
            .unwrap()
            .unwrap();
    }
}
