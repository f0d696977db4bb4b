//! A TCP forwarder on loopback that adds latency, switchable while it runs:
//! put it between a proxy and its store to make the store slow rather than
//! down.
//!
//! Every chunk read from one side is written to the other side `delay`
//! after it arrived (chunks keep their order and do not queue behind each
//! other's delays), in both directions.
//!
//! ```no_run
//! use std::time::Duration;
//! use tokencache_test_support::slow_link::SlowLink;
//!
//! # async fn example(redis: std::net::SocketAddr) {
//! let link = SlowLink::start(redis).await;
//! // Point the store at link.addr(); later:
//! link.set_delay(Duration::from_secs(2));
//! # }
//! ```

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::tcp::{OwnedReadHalf, OwnedWriteHalf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::mpsc;
use tokio::task::{JoinHandle, JoinSet};
use tokio::time::Instant;

/// Forwards connections to a target with a delay; stops when dropped.
#[derive(Debug)]
pub struct SlowLink {
    addr: SocketAddr,
    delay_ms: Arc<AtomicU64>,
    accepting: JoinHandle<()>,
}

impl SlowLink {
    /// Listens on `127.0.0.1:0` and forwards to `target`, with no delay
    /// until [`set_delay`](Self::set_delay).
    ///
    /// # Panics
    /// If loopback cannot be bound.
    pub async fn start(target: SocketAddr) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0")
            .await
            .unwrap_or_else(|error| panic!("binding loopback: {error}"));
        let addr = listener
            .local_addr()
            .unwrap_or_else(|error| panic!("reading the bound address: {error}"));
        let delay_ms = Arc::new(AtomicU64::new(0));
        let accepting = tokio::spawn(accept(listener, target, Arc::clone(&delay_ms)));
        Self {
            addr,
            delay_ms,
            accepting,
        }
    }

    /// Where to connect instead of the target.
    #[must_use]
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// Sets the delay for every chunk read from now on.
    pub fn set_delay(&self, delay: Duration) {
        let millis = u64::try_from(delay.as_millis()).unwrap_or(u64::MAX);
        self.delay_ms.store(millis, Ordering::SeqCst);
    }
}

impl Drop for SlowLink {
    fn drop(&mut self) {
        // The accept task owns the connections' tasks: they go with it.
        self.accepting.abort();
    }
}

async fn accept(listener: TcpListener, target: SocketAddr, delay_ms: Arc<AtomicU64>) {
    let mut links = JoinSet::new();
    while let Ok((client, _)) = listener.accept().await {
        while links.try_join_next().is_some() {}
        let delay_ms = Arc::clone(&delay_ms);
        links.spawn(async move {
            let Ok(server) = TcpStream::connect(target).await else {
                return;
            };
            let _ = client.set_nodelay(true);
            let _ = server.set_nodelay(true);
            let (client_read, client_write) = client.into_split();
            let (server_read, server_write) = server.into_split();
            tokio::join!(
                forward(client_read, server_write, Arc::clone(&delay_ms)),
                forward(server_read, client_write, delay_ms),
            );
        });
    }
}

/// Copies `from` to `to`, each chunk `delay` after it was read.
async fn forward(mut from: OwnedReadHalf, mut to: OwnedWriteHalf, delay_ms: Arc<AtomicU64>) {
    let (chunks, mut due) = mpsc::unbounded_channel::<(Instant, Vec<u8>)>();
    let reading = async move {
        let mut buffer = vec![0u8; 16 * 1024];
        while let Ok(read) = from.read(&mut buffer).await {
            if read == 0 {
                break;
            }
            let delay = Duration::from_millis(delay_ms.load(Ordering::SeqCst));
            if chunks
                .send((Instant::now() + delay, buffer[..read].to_vec()))
                .is_err()
            {
                break;
            }
        }
    };
    let writing = async move {
        while let Some((at, chunk)) = due.recv().await {
            tokio::time::sleep_until(at).await;
            if to.write_all(&chunk).await.is_err() {
                break;
            }
        }
        let _ = to.shutdown().await;
    };
    tokio::join!(reading, writing);
}
