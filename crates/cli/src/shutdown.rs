//! Signals: shutdown (SIGTERM, SIGINT) and certificate reload (SIGHUP).

use std::future::Future;

/// Exit status after a second signal: 128 + SIGTERM's number, as a shell
/// reports a process killed by it (the drain did not finish).
const EXIT_ON_SECOND_SIGNAL: i32 = 143;

/// Listens for SIGTERM and SIGINT (Ctrl-C) from now on and completes on the
/// first: the drain starts. From then on a second SIGTERM or SIGINT exits
/// at once, without waiting for the requests in progress (an operator who
/// asks twice means it).
///
/// Listening starts when this is called, not when the future is first
/// polled: call it before saying the server is ready, so that a signal sent
/// the moment it is (a quick `systemctl stop`, a test) starts a drain
/// rather than meeting the default action, which ends the process at once.
pub fn signal() -> impl Future<Output = ()> + Send + 'static {
    let mut signals = Signals::listen();
    async move {
        signals.next().await;
        tokio::spawn(async move {
            signals.next().await;
            tracing::warn!("second signal: exiting at once, without finishing the drain");
            std::process::exit(EXIT_ON_SECOND_SIGNAL);
        });
    }
}

/// SIGTERM and SIGINT, each listened for since [`Signals::listen`] (`None`:
/// the handler could not be installed).
#[cfg(unix)]
struct Signals {
    terminate: Option<tokio::signal::unix::Signal>,
    interrupt: Option<tokio::signal::unix::Signal>,
}

#[cfg(unix)]
impl Signals {
    fn listen() -> Self {
        use tokio::signal::unix::{SignalKind, signal};
        let listen = |kind, name: &'static str| {
            signal(kind)
                .map_err(|error| tracing::warn!(%error, signal = name, "cannot listen for a stop signal"))
                .ok()
        };
        Self {
            terminate: listen(SignalKind::terminate(), "SIGTERM"),
            interrupt: listen(SignalKind::interrupt(), "SIGINT"),
        }
    }

    /// Completes on the next SIGTERM or SIGINT.
    async fn next(&mut self) {
        async fn next_of(signal: Option<&mut tokio::signal::unix::Signal>) {
            match signal {
                Some(signal) => {
                    signal.recv().await;
                }
                None => std::future::pending().await,
            }
        }
        tokio::select! {
            () = next_of(self.terminate.as_mut()) => tracing::info!("SIGTERM received"),
            () = next_of(self.interrupt.as_mut()) => tracing::info!("SIGINT received"),
        }
    }
}

/// Ctrl-C, where there are no Unix signals.
#[cfg(not(unix))]
struct Signals;

#[cfg(not(unix))]
impl Signals {
    fn listen() -> Self {
        Self
    }

    async fn next(&mut self) {
        let _ = tokio::signal::ctrl_c().await;
    }
}

/// Handles SIGHUP for as long as the process runs: reloads the TLS
/// certificate and key when there are some (renewals without a restart; a
/// broken renewal keeps the working certificate), and otherwise only says
/// so. The handler is installed even without TLS because SIGHUP's default
/// action ends the process, and `systemctl reload` (the unit's
/// `ExecReload=`) must never stop the service.
pub fn reload_on_hangup(tls: Option<tokencache_proxy::ReloadableTls>) {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{SignalKind, signal};
        let mut hangup = match signal(SignalKind::hangup()) {
            Ok(hangup) => hangup,
            Err(error) => {
                tracing::warn!(%error, "cannot listen for SIGHUP; certificates reload only on restart");
                return;
            }
        };
        tokio::spawn(async move {
            while hangup.recv().await.is_some() {
                match &tls {
                    Some(tls) => match tls.reload() {
                        Ok(()) => tracing::info!("SIGHUP: TLS certificate reloaded"),
                        Err(error) => {
                            tracing::error!(%error, "SIGHUP: keeping the current certificate")
                        }
                    },
                    None => tracing::info!("SIGHUP: nothing to reload (no TLS certificate)"),
                }
            }
        });
    }
    #[cfg(not(unix))]
    {
        let _ = tls;
    }
}
