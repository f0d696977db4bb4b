//! Launching the `tokencache` binary in tests and reading its output.
#![allow(dead_code)] // each test file uses its own part

use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::Duration;

use serde_json::Value;

pub const BIN: &str = env!("CARGO_BIN_EXE_tokencache");

/// A child process whose stderr (JSON log lines) is read on a thread.
pub struct Running {
    pub child: Child,
    lines: mpsc::Receiver<String>,
    seen: Vec<String>,
}

impl Running {
    pub fn start(command: &mut Command) -> Self {
        let mut child = command
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let (tx, lines) = mpsc::channel();
        for stream in [
            Box::new(child.stderr.take().unwrap()) as Box<dyn std::io::Read + Send>,
            Box::new(child.stdout.take().unwrap()),
        ] {
            let tx = tx.clone();
            std::thread::spawn(move || {
                for line in BufReader::new(stream).lines().map_while(Result::ok) {
                    if tx.send(line).is_err() {
                        break;
                    }
                }
            });
        }
        Self {
            child,
            lines,
            seen: Vec::new(),
        }
    }

    /// The first output line containing `needle` (bounded wait).
    pub fn wait_for_line(&mut self, needle: &str) -> String {
        let deadline = std::time::Instant::now() + Duration::from_secs(30);
        while std::time::Instant::now() < deadline {
            if let Ok(line) = self.lines.recv_timeout(Duration::from_millis(200)) {
                self.seen.push(line.clone());
                if line.contains(needle) {
                    return line;
                }
            }
            if let Ok(Some(status)) = self.child.try_wait() {
                panic!(
                    "exited with {status} before `{needle}`; output: {:#?}",
                    self.seen
                );
            }
        }
        panic!("no `{needle}` within 30 s; output: {:#?}", self.seen);
    }

    pub fn terminate(mut self) -> (i32, Vec<String>) {
        let pid = self.child.id().to_string();
        let killed = Command::new("kill").args(["-TERM", &pid]).status().unwrap();
        assert!(killed.success());
        let status = wait_with_timeout(&mut self.child, Duration::from_secs(20));
        while let Ok(line) = self.lines.recv_timeout(Duration::from_millis(100)) {
            self.seen.push(line);
        }
        (status, std::mem::take(&mut self.seen))
    }
}

impl Drop for Running {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

pub fn wait_with_timeout(child: &mut Child, timeout: Duration) -> i32 {
    let deadline = std::time::Instant::now() + timeout;
    loop {
        if let Some(status) = child.try_wait().unwrap() {
            return status.code().unwrap_or(-1);
        }
        assert!(
            std::time::Instant::now() < deadline,
            "did not exit within {timeout:?}"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// A field of the JSON log line containing `message`.
pub fn log_field(line: &str, field: &str) -> String {
    let json: Value = serde_json::from_str(line).unwrap_or_else(|_| panic!("not JSON: {line}"));
    json[field]
        .as_str()
        .unwrap_or_else(|| panic!("no {field} in {line}"))
        .to_owned()
}

pub fn start_mock_idp() -> (Running, String) {
    let mut idp = Running::start(Command::new(BIN).args([
        "mock-idp",
        "--listen",
        "127.0.0.1:0",
        "--log-format",
        "json",
    ]));
    let line = idp.wait_for_line("mock IdP serving");
    let url = log_field(&line, "token_url");
    (idp, url)
}

/// AWS settings pointing at moto, for the child processes only.
pub fn aws_env(command: &mut Command, moto: &tokencache_test_support::moto::MotoServer) {
    command
        .env("AWS_ENDPOINT_URL", moto.endpoint_url())
        .env("AWS_REGION", "us-east-1")
        .env("AWS_ACCESS_KEY_ID", "testing")
        .env("AWS_SECRET_ACCESS_KEY", "testing")
        .env_remove("AWS_PROFILE");
}

/// A `tokencache serve` replica of a fleet sharing `store`, sealing with
/// `key`, in front of `idp_url`, with `configure`'s extra settings; the
/// process, its token URL and its admin URL.
pub fn replica(
    store: &str,
    idp_url: &str,
    key: [u8; 32],
    configure: &dyn Fn(&mut Command),
) -> (Running, String, String) {
    use base64::Engine as _;

    let mut command = Command::new(BIN);
    command
        .args([
            "serve",
            "--listen",
            "127.0.0.1:0",
            "--admin-listen",
            "127.0.0.1:0",
        ])
        .args([
            "--log-format",
            "json",
            "--upstream",
            idp_url,
            "--store",
            store,
        ])
        .env(
            "TOKENCACHE_ENCRYPTION_KEY",
            base64::engine::general_purpose::STANDARD.encode(key),
        );
    configure(&mut command);
    let mut running = Running::start(&mut command);
    let line = running.wait_for_line("tokencache serving");
    let url = format!("http://{}/oauth2/token", log_field(&line, "listen"));
    let admin = format!("http://{}", log_field(&line, "admin"));
    (running, url, admin)
}
