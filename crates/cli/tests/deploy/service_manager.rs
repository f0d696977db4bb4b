//! The binary's side of `Type=notify`, with a datagram socket of the
//! test's own as `NOTIFY_SOCKET`: READY=1 once the listeners are bound,
//! WATCHDOG=1 at half of `WATCHDOG_USEC`, STOPPING=1 on SIGTERM; and
//! SIGHUP (`systemctl reload`) that does not stop the service.

use std::os::unix::net::UnixDatagram;
use std::process::Command;
use std::time::Duration;

use crate::common::{BIN, Running, wait_with_timeout};
use crate::tools::{http_status, scratch_dir};

/// The watchdog timeout the test asks for: pings every 100 ms.
const WATCHDOG_USEC: &str = "200000";

fn receive(socket: &UnixDatagram) -> String {
    let mut buffer = [0; 1024];
    let length = socket
        .recv(&mut buffer)
        .expect("a notification within the read timeout");
    String::from_utf8(buffer[..length].to_vec()).unwrap()
}

/// `serve` with the test's notification socket; nothing upstream is asked.
fn serve_notifying(socket: &std::path::Path) -> Running {
    Running::start(
        Command::new(BIN)
            .arg("serve")
            .env("NOTIFY_SOCKET", socket)
            .env("WATCHDOG_USEC", WATCHDOG_USEC)
            .env_remove("WATCHDOG_PID")
            .env("TOKENCACHE_LISTEN", "127.0.0.1:0")
            .env("TOKENCACHE_ADMIN_LISTEN", "127.0.0.1:0")
            .env("TOKENCACHE_UPSTREAM", "http://127.0.0.1:9/oauth2/token")
            .env("TOKENCACHE_LOG_FORMAT", "json"),
    )
}

fn signal(proxy: &Running, name: &str) {
    let pid = proxy.child.id().to_string();
    assert!(
        Command::new("kill")
            .args([name, &pid])
            .status()
            .unwrap()
            .success()
    );
}

#[test]
fn ready_once_bound_then_watchdog_pings_then_stopping() {
    let dir = scratch_dir("notify");
    let path = dir.join("notify.sock");
    let socket = UnixDatagram::bind(&path).unwrap();
    socket
        .set_read_timeout(Some(Duration::from_secs(30)))
        .unwrap();
    let mut proxy = serve_notifying(&path);

    let ready = receive(&socket);
    let status = ready
        .strip_prefix("READY=1\nSTATUS=serving tokens on ")
        .unwrap_or_else(|| panic!("the first notification is READY=1: {ready:?}"));
    let (listen, admin) = status.split_once(", admin on ").unwrap();
    // Bound when READY=1 was sent: both answer at once, with no retry.
    std::net::TcpStream::connect(listen).expect("the token listener is bound");
    assert_eq!(http_status(admin, "/healthz"), 200);

    socket
        .set_read_timeout(Some(Duration::from_secs(5)))
        .unwrap();
    for _ in 0..3 {
        assert_eq!(receive(&socket), "WATCHDOG=1");
    }

    signal(&proxy, "-TERM");
    let stopping = loop {
        let message = receive(&socket);
        if message != "WATCHDOG=1" {
            break message;
        }
    };
    assert!(stopping.starts_with("STOPPING=1"), "{stopping:?}");
    assert_eq!(
        wait_with_timeout(&mut proxy.child, Duration::from_secs(20)),
        0
    );
    std::fs::remove_dir_all(&dir).unwrap();
}

/// ExecReload sends SIGHUP; without TLS there is nothing to reload, and the
/// service must go on serving (SIGHUP's default action would end it).
#[test]
fn sighup_without_tls_keeps_serving() {
    let dir = scratch_dir("sighup");
    let path = dir.join("notify.sock");
    let socket = UnixDatagram::bind(&path).unwrap();
    socket
        .set_read_timeout(Some(Duration::from_secs(30)))
        .unwrap();
    let mut proxy = serve_notifying(&path);
    let ready = receive(&socket);
    let admin = ready.rsplit_once(", admin on ").unwrap().1.to_owned();

    signal(&proxy, "-HUP");
    proxy.wait_for_line("nothing to reload");
    assert_eq!(http_status(&admin, "/healthz"), 200);
    assert!(proxy.child.try_wait().unwrap().is_none(), "still running");
    let (code, output) = proxy.terminate();
    assert_eq!(code, 0, "{output:#?}");
    std::fs::remove_dir_all(&dir).unwrap();
}
