//! Telling the service manager how `serve` is doing (`sd_notify(3)`):
//! `READY=1` once the listeners are bound, `WATCHDOG=1` keep-alives while
//! the runtime runs, `STOPPING=1` when a shutdown begins.
//!
//! The protocol is one datagram of `KEY=VALUE` lines to the Unix socket
//! that `$NOTIFY_SOCKET` names (a path, or `@name` in Linux's abstract
//! namespace): a few lines over std's `UnixDatagram`, not worth a crate.
//! Without `$NOTIFY_SOCKET` (not started by systemd with `Type=notify`)
//! every call does nothing.

use std::io;
use std::path::PathBuf;
use std::time::Duration;

use crate::environment::Environment;

/// The socket the service manager listens on.
pub const NOTIFY_SOCKET_VAR: &str = "NOTIFY_SOCKET";
/// The watchdog timeout, in microseconds (`WatchdogSec=`).
pub const WATCHDOG_USEC_VAR: &str = "WATCHDOG_USEC";
/// The process the watchdog timeout is meant for.
pub const WATCHDOG_PID_VAR: &str = "WATCHDOG_PID";

/// Where notifications go.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Destination {
    /// A socket file.
    Path(PathBuf),
    /// A name in Linux's abstract socket namespace (`@name`).
    Abstract(Vec<u8>),
}

/// Sends notifications to the service manager, if there is one.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Notifier {
    destination: Option<Destination>,
    keep_alive_every: Option<Duration>,
}

impl Notifier {
    /// The notifier the environment asks for (`NOTIFY_SOCKET`,
    /// `WATCHDOG_USEC`, `WATCHDOG_PID`), for the process `pid`.
    #[must_use]
    pub fn from_environment(env: &impl Environment, pid: u32) -> Self {
        let destination = env.var(NOTIFY_SOCKET_VAR).and_then(|text| {
            let parsed = destination(&text);
            if parsed.is_none() {
                tracing::warn!(
                    socket = %text,
                    "NOTIFY_SOCKET is neither a path nor an abstract name; not notifying"
                );
            }
            parsed
        });
        let keep_alive_every = destination
            .as_ref()
            .and_then(|_| keep_alive_interval(env, pid));
        Self {
            destination,
            keep_alive_every,
        }
    }

    /// `READY=1`: the listeners are bound. `status` is what
    /// `systemctl status` shows.
    pub fn ready(&self, status: &str) {
        self.notify(&format!("READY=1\nSTATUS={status}"));
    }

    /// `STOPPING=1`: a shutdown has begun; requests in progress drain.
    pub fn stopping(&self) {
        self.notify("STOPPING=1\nSTATUS=draining");
    }

    /// `WATCHDOG=1`: still alive.
    pub fn keep_alive(&self) {
        self.notify("WATCHDOG=1");
    }

    /// Sends keep-alives for as long as the runtime runs, if the watchdog
    /// is on. They come from a task on the runtime that serves requests, so
    /// a runtime that stops making progress stops them too, and the service
    /// manager restarts the service.
    pub fn spawn_watchdog(&self) {
        let Some(every) = self.keep_alive_every else {
            return;
        };
        let notifier = self.clone();
        tokio::spawn(async move {
            let mut ticks = tokio::time::interval(every);
            // After a stall, one keep-alive, not a burst of the missed ones.
            ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                ticks.tick().await;
                notifier.keep_alive();
            }
        });
    }

    fn notify(&self, message: &str) {
        let Some(destination) = &self.destination else {
            return;
        };
        if let Err(error) = send(destination, message) {
            let kind = message.split('=').next().unwrap_or_default();
            tracing::warn!(%error, notification = kind, "cannot notify the service manager");
        }
    }
}

/// `NOTIFY_SOCKET`'s value as a destination; `None` for what this does not
/// speak (systemd also knows `vsock:` addresses, for virtual machines).
fn destination(text: &str) -> Option<Destination> {
    if let Some(name) = text.strip_prefix('@') {
        (!name.is_empty()).then(|| Destination::Abstract(name.as_bytes().to_vec()))
    } else if text.starts_with('/') {
        Some(Destination::Path(PathBuf::from(text)))
    } else {
        None
    }
}

/// Half the watchdog timeout, as sd_watchdog_enabled(3) advises, when the
/// timeout is set and meant for this process.
fn keep_alive_interval(env: &impl Environment, pid: u32) -> Option<Duration> {
    let timeout_usec: u64 = env.var(WATCHDOG_USEC_VAR)?.trim().parse().ok()?;
    if timeout_usec == 0 {
        return None;
    }
    // A variable inherited from a parent that was itself watched is not ours.
    if let Some(owner) = env.var(WATCHDOG_PID_VAR)
        && owner.trim().parse::<u32>().ok() != Some(pid)
    {
        return None;
    }
    Some(Duration::from_micros((timeout_usec / 2).max(1)))
}

#[cfg(unix)]
fn send(destination: &Destination, message: &str) -> io::Result<()> {
    use std::os::unix::net::UnixDatagram;

    let socket = UnixDatagram::unbound()?;
    // A full queue must not stall a runtime thread: the message is dropped
    // (and logged) instead, and the next keep-alive tries again.
    socket.set_nonblocking(true)?;
    let sent = match destination {
        Destination::Path(path) => socket.send_to(message.as_bytes(), path)?,
        Destination::Abstract(name) => send_to_abstract(&socket, name, message.as_bytes())?,
    };
    if sent == message.len() {
        Ok(())
    } else {
        Err(io::Error::new(
            io::ErrorKind::WriteZero,
            "the notification was cut short",
        ))
    }
}

#[cfg(target_os = "linux")]
fn send_to_abstract(
    socket: &std::os::unix::net::UnixDatagram,
    name: &[u8],
    message: &[u8],
) -> io::Result<usize> {
    use std::os::linux::net::SocketAddrExt as _;
    let address = std::os::unix::net::SocketAddr::from_abstract_name(name)?;
    socket.send_to_addr(message, &address)
}

#[cfg(all(unix, not(target_os = "linux")))]
fn send_to_abstract(
    _socket: &std::os::unix::net::UnixDatagram,
    _name: &[u8],
    _message: &[u8],
) -> io::Result<usize> {
    Err(io::Error::new(
        io::ErrorKind::Unsupported,
        "abstract socket names exist only on Linux",
    ))
}

#[cfg(not(unix))]
fn send(_destination: &Destination, _message: &str) -> io::Result<()> {
    Err(io::Error::new(
        io::ErrorKind::Unsupported,
        "the notification socket is a Unix socket",
    ))
}

#[cfg(all(test, unix))]
mod tests {
    use std::collections::HashMap;
    use std::os::unix::net::UnixDatagram;

    use super::*;

    fn env(pairs: &[(&str, &str)]) -> HashMap<String, String> {
        pairs
            .iter()
            .map(|(name, value)| ((*name).to_owned(), (*value).to_owned()))
            .collect()
    }

    #[test]
    fn without_a_socket_nothing_is_sent_and_no_watchdog_runs() {
        let notifier = Notifier::from_environment(&env(&[(WATCHDOG_USEC_VAR, "1000000")]), 7);
        assert_eq!(
            notifier,
            Notifier {
                destination: None,
                keep_alive_every: None
            }
        );
        notifier.ready("ignored");
    }

    #[test]
    fn destinations_are_paths_or_abstract_names() {
        assert_eq!(
            destination("/run/systemd/notify"),
            Some(Destination::Path("/run/systemd/notify".into()))
        );
        assert_eq!(
            destination("@sd-notify"),
            Some(Destination::Abstract(b"sd-notify".to_vec()))
        );
        for unsupported in ["", "@", "relative/path", "vsock:2:1234"] {
            assert_eq!(destination(unsupported), None, "{unsupported:?}");
        }
    }

    #[test]
    fn the_watchdog_pings_at_half_its_timeout_when_it_is_ours() {
        // The variables, and the keep-alive interval they give.
        type Case = (&'static [(&'static str, &'static str)], Option<Duration>);
        let cases: &[Case] = &[
            (
                &[(WATCHDOG_USEC_VAR, "30000000")],
                Some(Duration::from_secs(15)),
            ),
            (
                &[(WATCHDOG_USEC_VAR, "200000"), (WATCHDOG_PID_VAR, "42")],
                Some(Duration::from_millis(100)),
            ),
            (&[(WATCHDOG_USEC_VAR, "1")], Some(Duration::from_micros(1))),
            // Meant for another process.
            (
                &[(WATCHDOG_USEC_VAR, "200000"), (WATCHDOG_PID_VAR, "41")],
                None,
            ),
            (&[(WATCHDOG_USEC_VAR, "0")], None),
            (&[(WATCHDOG_USEC_VAR, "soon")], None),
            (&[], None),
        ];
        for (pairs, expected) in cases {
            let mut vars = env(pairs);
            vars.insert(NOTIFY_SOCKET_VAR.into(), "/run/systemd/notify".into());
            let notifier = Notifier::from_environment(&vars, 42);
            assert_eq!(notifier.keep_alive_every, *expected, "{pairs:?}");
        }
    }

    fn receive(socket: &UnixDatagram) -> std::io::Result<String> {
        let mut buffer = [0; 512];
        let length = socket.recv(&mut buffer)?;
        Ok(String::from_utf8_lossy(&buffer[..length]).into_owned())
    }

    #[test]
    fn notifications_reach_a_socket_file() {
        let dir = std::env::temp_dir().join(format!("tokencache-notify-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("notify.sock");
        let _ = std::fs::remove_file(&path);
        let socket = UnixDatagram::bind(&path).unwrap();
        socket
            .set_read_timeout(Some(Duration::from_secs(5)))
            .unwrap();
        let notifier =
            Notifier::from_environment(&env(&[(NOTIFY_SOCKET_VAR, path.to_str().unwrap())]), 1);

        notifier.ready("serving");
        notifier.keep_alive();
        notifier.stopping();

        assert_eq!(receive(&socket).unwrap(), "READY=1\nSTATUS=serving");
        assert_eq!(receive(&socket).unwrap(), "WATCHDOG=1");
        assert_eq!(receive(&socket).unwrap(), "STOPPING=1\nSTATUS=draining");
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[cfg(target_os = "linux")]
    #[test]
    fn notifications_reach_an_abstract_socket() {
        use std::os::linux::net::SocketAddrExt as _;
        let name = format!("tokencache-notify-test-{}", std::process::id());
        let address = std::os::unix::net::SocketAddr::from_abstract_name(name.as_bytes()).unwrap();
        let socket = UnixDatagram::bind_addr(&address).unwrap();
        socket
            .set_read_timeout(Some(Duration::from_secs(5)))
            .unwrap();
        let notifier =
            Notifier::from_environment(&env(&[(NOTIFY_SOCKET_VAR, &format!("@{name}"))]), 1);

        notifier.ready("serving");

        assert_eq!(receive(&socket).unwrap(), "READY=1\nSTATUS=serving");
    }

    #[test]
    fn a_missing_socket_is_logged_not_fatal() {
        let notifier = Notifier::from_environment(
            &env(&[(NOTIFY_SOCKET_VAR, "/nonexistent/tokencache/notify.sock")]),
            1,
        );
        notifier.ready("serving");
    }
}
