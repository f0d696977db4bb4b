//! Signals: shutdown (SIGTERM, SIGINT) and certificate reload (SIGHUP).

/// Exit status after a second signal: 128 + SIGTERM's number, as a shell
/// reports a process killed by it (the drain did not finish).
const EXIT_ON_SECOND_SIGNAL: i32 = 143;

/// Completes on SIGTERM or SIGINT (Ctrl-C): the drain starts. From then on
/// a second SIGTERM or SIGINT exits at once, without waiting for the
/// requests in progress (an operator who asks twice means it).
pub async fn signal() {
    next_signal().await;
    tokio::spawn(async {
        next_signal().await;
        tracing::warn!("second signal: exiting at once, without finishing the drain");
        std::process::exit(EXIT_ON_SECOND_SIGNAL);
    });
}

/// Completes on the next SIGTERM or SIGINT.
async fn next_signal() {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{SignalKind, signal};
        match signal(SignalKind::terminate()) {
            Ok(mut terminate) => {
                tokio::select! {
                    _ = terminate.recv() => tracing::info!("SIGTERM received"),
                    _ = tokio::signal::ctrl_c() => tracing::info!("SIGINT received"),
                }
            }
            Err(error) => {
                tracing::warn!(%error, "cannot listen for SIGTERM; only Ctrl-C stops the server");
                let _ = tokio::signal::ctrl_c().await;
            }
        }
    }
    #[cfg(not(unix))]
    {
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
