//! moto's server (DynamoDB, KMS and the rest of AWS, emulated in Python) on
//! a free loopback port, for the AWS store's tests.
//!
//! `scripts/test` installs it into `target/test-venv` (`pip install
//! 'moto[server]'`); `TOKENCACHE_MOTO_SERVER` points at another
//! `moto_server` executable.

use std::fs::File;
use std::io::Read;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use crate::ports::free_port;

/// How long moto may take to answer after it is spawned (Python imports
/// take a few seconds on a busy machine).
const READY_WITHIN: Duration = Duration::from_secs(60);
/// Spawns tried before giving up: another process may take the free port
/// between our probe and moto's bind.
const SPAWNS: usize = 3;

/// A moto server on `127.0.0.1`, killed when dropped. Each one holds its
/// own empty state, so tests do not see each other's tables and keys.
#[derive(Debug)]
pub struct MotoServer {
    child: Child,
    port: u16,
    log: PathBuf,
}

impl MotoServer {
    /// Starts moto on a free loopback port and waits until it answers.
    ///
    /// # Panics
    /// When `moto_server` is not installed, or does not answer in time.
    pub async fn start() -> Self {
        let executable = Self::executable();
        assert!(
            executable.is_file(),
            "moto_server not found at {}: run scripts/test once, or \
             `python3 -m venv target/test-venv && target/test-venv/bin/pip install 'moto[server]'`, \
             or set TOKENCACHE_MOTO_SERVER",
            executable.display()
        );
        let mut last_log = String::new();
        for _ in 0..SPAWNS {
            let mut server = Self::spawn(&executable);
            if server.wait_until_ready().await {
                return server;
            }
            last_log = server.log_tail();
        }
        panic!("moto_server did not start; its last output:\n{last_log}");
    }

    /// The moto server this run uses: `$TOKENCACHE_MOTO_SERVER`, else
    /// `target/test-venv/bin/moto_server` in the workspace.
    #[must_use]
    pub fn executable() -> PathBuf {
        std::env::var_os("TOKENCACHE_MOTO_SERVER").map_or_else(
            || {
                PathBuf::from(env!("CARGO_MANIFEST_DIR"))
                    .join("../../target/test-venv/bin/moto_server")
            },
            PathBuf::from,
        )
    }

    /// The endpoint of every emulated service (`http://127.0.0.1:PORT`).
    #[must_use]
    pub fn endpoint_url(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    /// The port it listens on.
    #[must_use]
    pub const fn port(&self) -> u16 {
        self.port
    }

    fn spawn(executable: &PathBuf) -> Self {
        let port = free_port();
        let log =
            std::env::temp_dir().join(format!("tokencache-moto-{}-{port}.log", std::process::id()));
        let output = File::create(&log)
            .unwrap_or_else(|error| panic!("creating {}: {error}", log.display()));
        let errors = output
            .try_clone()
            .unwrap_or_else(|error| panic!("cloning the log handle: {error}"));
        let child = Command::new(executable)
            .args(["-H", "127.0.0.1", "-p", &port.to_string()])
            .stdin(Stdio::null())
            .stdout(output)
            .stderr(errors)
            .spawn()
            .unwrap_or_else(|error| panic!("spawning {}: {error}", executable.display()));
        Self { child, port, log }
    }

    /// Whether the server answered HTTP before it exited or time ran out.
    async fn wait_until_ready(&mut self) -> bool {
        let client = reqwest::Client::builder()
            .timeout(Duration::from_secs(2))
            .build()
            .unwrap_or_else(|error| panic!("building an HTTP client: {error}"));
        let probe = format!("{}/moto-api/", self.endpoint_url());
        let deadline = tokio::time::Instant::now() + READY_WITHIN;
        while tokio::time::Instant::now() < deadline {
            if matches!(self.child.try_wait(), Ok(Some(_))) {
                return false;
            }
            // Any HTTP answer means moto is serving.
            if client.get(&probe).send().await.is_ok() {
                return true;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        false
    }

    fn log_tail(&self) -> String {
        let mut text = String::new();
        if let Ok(mut file) = File::open(&self.log) {
            let _ = file.read_to_string(&mut text);
        }
        let start = text.len().saturating_sub(2_000);
        text.get(start..).unwrap_or_default().to_owned()
    }
}

impl Drop for MotoServer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = std::fs::remove_file(&self.log);
    }
}
