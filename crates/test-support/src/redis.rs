//! Real Redis servers for tests: standalone, TLS with an ACL user, a
//! three-node cluster (plain or TLS) and a cluster with replicas whose nodes
//! can be killed and restarted (failover), each on free loopback ports in
//! its own temporary directory, killed (and the directory removed) when the
//! guard drops.
//!
//! The launchers run Debian's `redis-server` and `redis-cli`; `scripts/test`
//! installs them when missing. They block the calling thread while a server
//! starts (at most a few seconds), which is fine in a test.
//!
//! ```no_run
//! use tokencache_test_support::redis::{RedisCluster, RedisServer};
//!
//! let plain = RedisServer::start();
//! let secure = RedisServer::start_tls_acl();
//! let cluster = RedisCluster::start(3);
//! println!("{} {} {}", plain.url(), secure.url(), cluster.url());
//! ```

use std::ffi::OsString;
use std::fs;
use std::io::ErrorKind;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::thread::sleep;
use std::time::Duration;

use rand::Rng;
use rand::distr::Alphanumeric;
use rcgen::{
    BasicConstraints, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa, Issuer, KeyPair,
    KeyUsagePurpose,
};

/// The ACL user of [`RedisServer::start_tls_acl`].
pub const ACL_USER: &str = "tokencache";

/// How long a server may take to answer `PING`, and a cluster to agree,
/// and how often to ask.
const STARTUP_LIMIT: Duration = Duration::from_secs(20);
const POLL: Duration = Duration::from_millis(50);

/// A wall-clock deadline for a real process to get ready. No clock is
/// injected here: the thing waited for is a real process.
#[allow(clippy::disallowed_methods)]
fn deadline() -> std::time::Instant {
    std::time::Instant::now() + STARTUP_LIMIT
}

#[allow(clippy::disallowed_methods)]
fn passed(deadline: std::time::Instant) -> bool {
    std::time::Instant::now() > deadline
}

/// A temporary directory, removed when dropped.
#[derive(Debug)]
struct TempDir(PathBuf);

impl TempDir {
    fn new(what: &str) -> Self {
        let suffix: String = rand::rng()
            .sample_iter(Alphanumeric)
            .take(10)
            .map(char::from)
            .collect();
        let path =
            std::env::temp_dir().join(format!("tokencache-{what}-{}-{suffix}", std::process::id()));
        fs::create_dir_all(&path)
            .unwrap_or_else(|error| panic!("creating {}: {error}", path.display()));
        Self(path)
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = fs::remove_dir_all(&self.0);
    }
}

pub use crate::ports::free_port;

/// TLS settings of a server: the files and the client flags.
#[derive(Debug, Clone)]
struct Tls {
    ca: PathBuf,
}

/// How `redis-cli` reaches one server.
#[derive(Debug, Clone)]
struct Access {
    port: u16,
    tls: Option<Tls>,
    user: Option<(String, String)>,
}

impl Access {
    /// `redis-cli` with the flags to reach the server; the password goes
    /// through the environment, not the command line.
    fn cli(&self) -> Command {
        let mut command = Command::new("redis-cli");
        command.args(["-h", "127.0.0.1", "-p", &self.port.to_string()]);
        if let Some(tls) = &self.tls {
            command.arg("--tls").arg("--cacert").arg(&tls.ca);
        }
        if let Some((user, password)) = &self.user {
            command
                .args(["--user", user])
                .env("REDISCLI_AUTH", password);
        }
        command.stdin(Stdio::null());
        command
    }

    fn answers_ping(&self) -> bool {
        self.cli()
            .arg("PING")
            .output()
            .is_ok_and(|output| String::from_utf8_lossy(&output.stdout).trim() == "PONG")
    }
}

/// One `redis-server` process and how to start it again.
#[derive(Debug)]
struct Process {
    args: Vec<OsString>,
    log: PathBuf,
    child: Option<Child>,
}

impl Process {
    fn spawn(args: Vec<OsString>, log: PathBuf) -> Self {
        let mut process = Self {
            args,
            log,
            child: None,
        };
        process.start();
        process
    }

    fn start(&mut self) {
        let log = fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&self.log)
            .unwrap_or_else(|error| panic!("creating {}: {error}", self.log.display()));
        let log_err = log
            .try_clone()
            .unwrap_or_else(|error| panic!("duplicating the log handle: {error}"));
        let child = Command::new("redis-server")
            .args(&self.args)
            .stdin(Stdio::null())
            .stdout(log)
            .stderr(log_err)
            .spawn()
            .unwrap_or_else(|error| {
                if error.kind() == ErrorKind::NotFound {
                    panic!(
                        "redis-server is not installed: run scripts/test, which installs it \
                         (apt-get install -y redis-server redis-tools)"
                    )
                }
                panic!("starting redis-server: {error}")
            });
        self.child = Some(child);
    }

    /// Waits until `ready` holds, or panics with the server's log.
    fn wait_until(&mut self, what: &str, mut ready: impl FnMut() -> bool) {
        let deadline = deadline();
        while !passed(deadline) {
            if ready() {
                return;
            }
            if let Some(child) = &mut self.child
                && let Ok(Some(status)) = child.try_wait()
            {
                self.child = None;
                panic!(
                    "redis-server exited ({status}) before {what}:\n{}",
                    fs::read_to_string(&self.log).unwrap_or_default()
                );
            }
            sleep(POLL);
        }
        panic!(
            "redis-server: no {what} within {STARTUP_LIMIT:?}:\n{}",
            fs::read_to_string(&self.log).unwrap_or_default()
        );
    }

    fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

impl Drop for Process {
    fn drop(&mut self) {
        self.kill();
    }
}

/// A standalone `redis-server` on a free loopback port, killed on drop.
#[derive(Debug)]
pub struct RedisServer {
    access: Access,
    process: Process,
    // Dropped last: the process is killed before its directory goes.
    _dir: TempDir,
}

impl RedisServer {
    /// A plain server: no TLS, no password, no persistence.
    ///
    /// # Panics
    /// If `redis-server` is missing or does not answer `PING` in time.
    #[must_use]
    pub fn start() -> Self {
        require_redis_tools();
        let dir = TempDir::new("redis");
        let port = free_port();
        let mut args = base_args(&dir.0);
        args.extend(["--port".into(), port.to_string().into()]);
        let access = Access {
            port,
            tls: None,
            user: None,
        };
        Self::launch(dir, args, access)
    }

    /// A server that speaks only TLS (a test CA and certificate for
    /// `127.0.0.1`, made now) and admits only the ACL user [`ACL_USER`],
    /// with a random password and rights on `tokencache:*` keys; the
    /// `default` user is disabled.
    ///
    /// # Panics
    /// If `redis-server` is missing, lacks TLS support, or does not answer
    /// in time.
    #[must_use]
    pub fn start_tls_acl() -> Self {
        require_redis_tools();
        let dir = TempDir::new("redis-tls");
        let port = free_port();
        let tls = write_test_certificates(&dir.0);
        let password: String = rand::rng()
            .sample_iter(Alphanumeric)
            .take(32)
            .map(char::from)
            .collect();
        let mut args = base_args(&dir.0);
        args.extend(tls_args(&dir.0, &tls, port));
        args.extend(
            [
                "--user",
                "default",
                "off",
                "--user",
                ACL_USER,
                "on",
                &format!(">{password}"),
                "~tokencache:*",
                "+@all",
            ]
            .map(OsString::from),
        );
        let access = Access {
            port,
            tls: Some(tls),
            user: Some((ACL_USER.to_owned(), password)),
        };
        Self::launch(dir, args, access)
    }

    fn launch(dir: TempDir, args: Vec<OsString>, access: Access) -> Self {
        let process = Process::spawn(args, dir.0.join("redis.log"));
        let mut server = Self {
            access,
            process,
            _dir: dir,
        };
        server.wait_ready();
        server
    }

    fn wait_ready(&mut self) {
        let access = self.access.clone();
        self.process
            .wait_until("an answer to PING", || access.answers_ping());
    }

    /// The store URL: `redis://127.0.0.1:P`, or for the TLS server
    /// `rediss://tokencache:PASSWORD@127.0.0.1:P`.
    #[must_use]
    pub fn url(&self) -> String {
        let scheme = if self.access.tls.is_some() {
            "rediss"
        } else {
            "redis"
        };
        let userinfo = match &self.access.user {
            Some((user, password)) => format!("{user}:{password}@"),
            None => String::new(),
        };
        format!("{scheme}://{userinfo}127.0.0.1:{}", self.access.port)
    }

    /// The port it listens on (the TLS port for the TLS server).
    #[must_use]
    pub fn port(&self) -> u16 {
        self.access.port
    }

    /// The test CA's certificate (PEM), for the TLS server.
    #[must_use]
    pub fn ca_file(&self) -> Option<&Path> {
        self.access.tls.as_ref().map(|tls| tls.ca.as_path())
    }

    /// The ACL user's password, for the TLS server.
    #[must_use]
    pub fn password(&self) -> Option<&str> {
        self.access
            .user
            .as_ref()
            .map(|(_, password)| password.as_str())
    }

    /// Kills the server (an outage). Its data is gone: nothing persists.
    pub fn stop(&mut self) {
        self.process.kill();
    }

    /// Starts it again on the same port, with the same settings, and waits
    /// until it answers.
    ///
    /// # Panics
    /// If it does not come back in time.
    pub fn restart(&mut self) {
        self.process.kill();
        self.process.start();
        self.wait_ready();
    }

    /// Runs `redis-cli` against the server with `args` (TLS and the ACL
    /// user added as needed), as in `server.cli(&["--scan"])`.
    ///
    /// # Panics
    /// If `redis-cli` cannot be run.
    #[must_use]
    pub fn cli(&self, args: &[&str]) -> Output {
        self.access
            .cli()
            .args(args)
            .output()
            .unwrap_or_else(|error| panic!("running redis-cli: {error}"))
    }
}

/// A Redis Cluster on free loopback ports, all killed on drop: primaries
/// alone ([`start`](Self::start)), or primaries with replicas that take
/// over when a primary dies ([`start_with_replicas`](Self::start_with_replicas)).
#[derive(Debug)]
pub struct RedisCluster {
    nodes: Vec<(Access, Process)>,
    replicas: usize,
    dir: TempDir,
}

/// How long a node may be unreachable before the others count it failed,
/// in a cluster with replicas: short, so a failover takes a few seconds,
/// yet long enough that a busy test machine does not fail nodes over.
const FAILOVER_NODE_TIMEOUT_MS: u64 = 2_000;

impl RedisCluster {
    /// Starts `primaries` nodes (at least three, as Redis requires), joins
    /// them with `redis-cli --cluster create`, and waits until every node
    /// reports `cluster_state:ok`.
    ///
    /// # Panics
    /// If fewer than three nodes are asked for, or the cluster does not form
    /// in time.
    #[must_use]
    pub fn start(primaries: usize) -> Self {
        Self::launch(primaries, 0, false)
    }

    /// Starts `primaries` primaries (at least three) with `replicas`
    /// replicas each, and waits until the cluster is ok and every replica
    /// has synced with its primary. A primary that dies is failed over to
    /// its replica within a few seconds (the nodes' timeout is 2 s), which
    /// [`kill_node`](Self::kill_node) and
    /// [`wait_for_failover`](Self::wait_for_failover) exercise.
    ///
    /// # Panics
    /// As [`start`](Self::start).
    #[must_use]
    pub fn start_with_replicas(primaries: usize, replicas: usize) -> Self {
        Self::launch(primaries, replicas, false)
    }

    /// Like [`start`](Self::start), but every node speaks only TLS, to
    /// clients and on the cluster bus (a test CA and a certificate for
    /// `127.0.0.1`, made now; see [`ca_file`](Self::ca_file)).
    ///
    /// # Panics
    /// As [`start`](Self::start).
    #[must_use]
    pub fn start_tls(primaries: usize) -> Self {
        Self::launch(primaries, 0, true)
    }

    fn launch(primaries: usize, replicas: usize, tls: bool) -> Self {
        assert!(
            primaries >= 3,
            "a Redis Cluster needs at least three primaries"
        );
        require_redis_tools();
        let dir = TempDir::new("redis-cluster");
        let tls = tls.then(|| write_test_certificates(&dir.0));
        let count = primaries * (1 + replicas);
        let node_timeout = if replicas > 0 {
            FAILOVER_NODE_TIMEOUT_MS
        } else {
            5_000
        };
        let mut nodes = Vec::with_capacity(count);
        for index in 0..count {
            let node_dir = dir.0.join(format!("node-{index}"));
            fs::create_dir_all(&node_dir)
                .unwrap_or_else(|error| panic!("creating {}: {error}", node_dir.display()));
            let (port, bus) = (free_port(), free_port());
            let mut args = base_args(&node_dir);
            match &tls {
                None => args.extend(["--port".into(), port.to_string().into()]),
                Some(tls) => {
                    args.extend(tls_args(&dir.0, tls, port));
                    args.extend(["--tls-cluster", "yes"].map(OsString::from));
                }
            }
            args.extend(
                [
                    // The bus port is chosen too: port + 10000 may be taken
                    // or past 65535.
                    "--cluster-port",
                    &bus.to_string(),
                    "--cluster-enabled",
                    "yes",
                    "--cluster-config-file",
                    &node_dir.join("nodes.conf").to_string_lossy(),
                    "--cluster-node-timeout",
                    &node_timeout.to_string(),
                ]
                .map(OsString::from),
            );
            let access = Access {
                port,
                tls: tls.clone(),
                user: None,
            };
            let process = Process::spawn(args, node_dir.join("redis.log"));
            nodes.push((access, process));
        }
        for (access, process) in &mut nodes {
            let access = access.clone();
            process.wait_until("an answer to PING", || access.answers_ping());
        }
        let cluster = Self {
            nodes,
            replicas,
            dir,
        };
        cluster.create(&cluster.dir.0);
        cluster.wait_ok();
        cluster.wait_replicas_synced();
        cluster
    }

    /// Joins the nodes. `redis-cli --cluster create` waits for the nodes to
    /// agree without a limit of its own (forever, if they cannot reach
    /// each other's bus), so it runs under the startup limit.
    fn create(&self, dir: &Path) {
        let Some((first, _)) = self.nodes.first() else {
            return;
        };
        let log_path = dir.join("cluster-create.log");
        let log = fs::File::create(&log_path)
            .unwrap_or_else(|error| panic!("creating {}: {error}", log_path.display()));
        let log_err = log
            .try_clone()
            .unwrap_or_else(|error| panic!("duplicating the log handle: {error}"));
        let mut command = first.cli();
        command.arg("--cluster").arg("create");
        for (access, _) in &self.nodes {
            command.arg(format!("127.0.0.1:{}", access.port));
        }
        command
            .args([
                "--cluster-replicas",
                &self.replicas.to_string(),
                "--cluster-yes",
            ])
            .stdout(log)
            .stderr(log_err);
        let mut child = command
            .spawn()
            .unwrap_or_else(|error| panic!("running redis-cli --cluster create: {error}"));
        let deadline = deadline();
        let status = loop {
            match child.try_wait() {
                Ok(Some(status)) => break Some(status),
                Ok(None) if !passed(deadline) => sleep(POLL),
                _ => {
                    let _ = child.kill();
                    let _ = child.wait();
                    break None;
                }
            }
        };
        let output = fs::read_to_string(&log_path).unwrap_or_default();
        match status {
            Some(status) if status.success() => {}
            Some(status) => panic!("redis-cli --cluster create failed ({status}):\n{output}"),
            None => panic!(
                "redis-cli --cluster create did not finish within {STARTUP_LIMIT:?}:\n{output}"
            ),
        }
    }

    fn wait_ok(&self) {
        let deadline = deadline();
        for (access, process) in self.nodes.iter().filter(|(_, p)| p.child.is_some()) {
            loop {
                let info = access.cli().args(["CLUSTER", "INFO"]).output();
                if info.is_ok_and(|output| {
                    String::from_utf8_lossy(&output.stdout).contains("cluster_state:ok")
                }) {
                    break;
                }
                assert!(
                    !passed(deadline),
                    "node 127.0.0.1:{} did not reach cluster_state:ok within {STARTUP_LIMIT:?}:\n{}",
                    access.port,
                    fs::read_to_string(&process.log).unwrap_or_default()
                );
                sleep(POLL);
            }
        }
    }

    /// Waits until every replica reports its link to its primary up, so a
    /// failover has a replica to promote.
    fn wait_replicas_synced(&self) {
        if self.replicas == 0 {
            return;
        }
        let deadline = deadline();
        for (access, _) in &self.nodes {
            loop {
                let info = access
                    .cli()
                    .args(["INFO", "replication"])
                    .output()
                    .map(|output| String::from_utf8_lossy(&output.stdout).into_owned())
                    .unwrap_or_default();
                if info.contains("role:master") || info.contains("master_link_status:up") {
                    break;
                }
                assert!(
                    !passed(deadline),
                    "replica 127.0.0.1:{} did not sync within {STARTUP_LIMIT:?}:\n{info}",
                    access.port
                );
                sleep(POLL);
            }
        }
    }

    /// The client ports of the nodes that serve slots now (the primaries),
    /// as a live node sees the cluster.
    ///
    /// # Panics
    /// If no node answers.
    #[must_use]
    pub fn primary_ports(&self) -> Vec<u16> {
        let nodes = self.cluster_nodes();
        let mut ports: Vec<u16> = nodes
            .lines()
            .filter_map(|line| {
                let fields: Vec<&str> = line.split_whitespace().collect();
                let flags = fields.get(2)?;
                let serves_slots = fields.len() > 8;
                (flags.contains("master") && !flags.contains("fail") && serves_slots)
                    .then(|| port_of(fields.get(1)?))
                    .flatten()
            })
            .collect();
        ports.sort_unstable();
        ports
    }

    /// `CLUSTER NODES` from the first node that answers.
    fn cluster_nodes(&self) -> String {
        for (access, process) in &self.nodes {
            if process.child.is_none() {
                continue;
            }
            if let Ok(output) = access.cli().args(["CLUSTER", "NODES"]).output()
                && output.status.success()
                && !output.stdout.is_empty()
            {
                return String::from_utf8_lossy(&output.stdout).into_owned();
            }
        }
        panic!("no cluster node answers CLUSTER NODES")
    }

    /// Kills the node listening on `port` (as `kill -9` would).
    ///
    /// # Panics
    /// If no node listens on `port`.
    pub fn kill_node(&mut self, port: u16) {
        self.node_mut(port).kill();
    }

    /// Starts the node on `port` again with its old configuration (it
    /// rejoins the cluster, as a replica if it was failed over) and waits
    /// until it answers and the cluster is ok.
    ///
    /// # Panics
    /// If no node listens on `port`, or it does not come back in time.
    pub fn restart_node(&mut self, port: u16) {
        let access = self
            .nodes
            .iter()
            .find(|(access, _)| access.port == port)
            .map(|(access, _)| access.clone())
            .unwrap_or_else(|| panic!("no cluster node on port {port}"));
        let process = self.node_mut(port);
        process.start();
        process.wait_until("an answer to PING", || access.answers_ping());
        self.wait_ok();
    }

    fn node_mut(&mut self, port: u16) -> &mut Process {
        self.nodes
            .iter_mut()
            .find(|(access, _)| access.port == port)
            .map(|(_, process)| process)
            .unwrap_or_else(|| panic!("no cluster node on port {port}"))
    }

    /// Waits until the live nodes agree the cluster is ok and no longer
    /// count `killed` among the primaries (its replica was promoted).
    ///
    /// # Panics
    /// If that does not happen within 20 s.
    pub fn wait_for_failover(&self, killed: u16) {
        let deadline = deadline();
        loop {
            let promoted = !self.primary_ports().contains(&killed);
            let ok = self
                .nodes
                .iter()
                .filter(|(_, process)| process.child.is_some())
                .all(|(access, _)| {
                    access
                        .cli()
                        .args(["CLUSTER", "INFO"])
                        .output()
                        .is_ok_and(|output| {
                            String::from_utf8_lossy(&output.stdout).contains("cluster_state:ok")
                        })
                });
            if promoted && ok {
                return;
            }
            assert!(
                !passed(deadline),
                "no failover of 127.0.0.1:{killed} within {STARTUP_LIMIT:?}:\n{}",
                self.cluster_nodes()
            );
            sleep(POLL);
        }
    }

    /// Runs `redis-cli` against the node on `port` alone (no redirects
    /// followed), as in `cluster.node_cli(port, &["DBSIZE"])`.
    ///
    /// # Panics
    /// If no node listens on `port`, or `redis-cli` cannot be run.
    #[must_use]
    pub fn node_cli(&self, port: u16, args: &[&str]) -> Output {
        let (access, _) = self
            .nodes
            .iter()
            .find(|(access, _)| access.port == port)
            .unwrap_or_else(|| panic!("no cluster node on port {port}"));
        access
            .cli()
            .args(args)
            .output()
            .unwrap_or_else(|error| panic!("running redis-cli: {error}"))
    }

    /// The store URL: `redis-cluster://127.0.0.1:P1,127.0.0.1:P2,…`
    /// (`rediss-cluster://…` for the TLS cluster).
    #[must_use]
    pub fn url(&self) -> String {
        let nodes: Vec<String> = self
            .nodes
            .iter()
            .map(|(access, _)| format!("127.0.0.1:{}", access.port))
            .collect();
        let scheme = if self.ca_file().is_some() {
            "rediss-cluster"
        } else {
            "redis-cluster"
        };
        format!("{scheme}://{}", nodes.join(","))
    }

    /// The test CA's certificate (PEM), for the TLS cluster.
    #[must_use]
    pub fn ca_file(&self) -> Option<&Path> {
        self.nodes
            .first()
            .and_then(|(access, _)| access.tls.as_ref())
            .map(|tls| tls.ca.as_path())
    }

    /// The nodes' client ports.
    #[must_use]
    pub fn ports(&self) -> Vec<u16> {
        self.nodes.iter().map(|(access, _)| access.port).collect()
    }

    /// Runs `redis-cli -c` (following redirects) against the first node.
    ///
    /// # Panics
    /// If `redis-cli` cannot be run.
    #[must_use]
    pub fn cli(&self, args: &[&str]) -> Output {
        let Some((first, _)) = self.nodes.first() else {
            panic!("a cluster without nodes");
        };
        first
            .cli()
            .arg("-c")
            .args(args)
            .output()
            .unwrap_or_else(|error| panic!("running redis-cli: {error}"))
    }
}

/// The port of a `CLUSTER NODES` address, `ip:port@bus`.
fn port_of(address: &str) -> Option<u16> {
    let (_, rest) = address.rsplit_once(':')?;
    rest.split('@').next()?.parse().ok()
}

/// A TLS-only listener on `port` with the test certificates in `dir`;
/// clients need not present certificates.
fn tls_args(dir: &Path, tls: &Tls, port: u16) -> Vec<OsString> {
    [
        "--port",
        "0",
        "--tls-port",
        &port.to_string(),
        "--tls-cert-file",
        &dir.join("server.pem").to_string_lossy(),
        "--tls-key-file",
        &dir.join("server.key").to_string_lossy(),
        "--tls-ca-cert-file",
        &tls.ca.to_string_lossy(),
        "--tls-auth-clients",
        "no",
    ]
    .map(OsString::from)
    .to_vec()
}

/// Panics with the way out when Redis is not installed.
fn require_redis_tools() {
    for tool in ["redis-server", "redis-cli"] {
        let found = Command::new(tool)
            .arg("--version")
            .stdin(Stdio::null())
            .output()
            .is_ok_and(|output| output.status.success());
        assert!(
            found,
            "{tool} is not installed: run scripts/test, which installs it \
             (apt-get install -y redis-server redis-tools)"
        );
    }
}

/// Settings every test server shares: loopback only, nothing on disk but
/// its directory, no persistence.
fn base_args(dir: &Path) -> Vec<OsString> {
    [
        "--bind",
        "127.0.0.1",
        "--save",
        "",
        "--appendonly",
        "no",
        "--protected-mode",
        "yes",
        "--dir",
        &dir.to_string_lossy(),
    ]
    .map(OsString::from)
    .to_vec()
}

/// A test CA and a server certificate for `127.0.0.1` and `localhost`
/// signed by it, written as `ca.pem`, `server.pem` and `server.key`.
fn write_test_certificates(dir: &Path) -> Tls {
    let generated = (|| -> Result<(String, String, String), rcgen::Error> {
        let mut ca_params = CertificateParams::new(Vec::<String>::new())?;
        ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        ca_params
            .distinguished_name
            .push(DnType::CommonName, "tokencache test CA");
        ca_params.key_usages = vec![
            KeyUsagePurpose::KeyCertSign,
            KeyUsagePurpose::CrlSign,
            KeyUsagePurpose::DigitalSignature,
        ];
        let ca_key = KeyPair::generate()?;
        let ca_cert = ca_params.self_signed(&ca_key)?;
        let issuer = Issuer::new(ca_params, ca_key);

        let mut server_params =
            CertificateParams::new(vec!["127.0.0.1".to_owned(), "localhost".to_owned()])?;
        server_params
            .distinguished_name
            .push(DnType::CommonName, "127.0.0.1");
        server_params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
        // Cluster nodes present it to each other as clients too.
        server_params.extended_key_usages = vec![
            ExtendedKeyUsagePurpose::ServerAuth,
            ExtendedKeyUsagePurpose::ClientAuth,
        ];
        server_params.use_authority_key_identifier_extension = true;
        let server_key = KeyPair::generate()?;
        let server_cert = server_params.signed_by(&server_key, &issuer)?;
        Ok((ca_cert.pem(), server_cert.pem(), server_key.serialize_pem()))
    })();
    let (ca, cert, key) =
        generated.unwrap_or_else(|error| panic!("generating test certificates: {error}"));
    let write = |name: &str, contents: &str| {
        let path = dir.join(name);
        fs::write(&path, contents)
            .unwrap_or_else(|error| panic!("writing {}: {error}", path.display()));
        path
    };
    write("server.pem", &cert);
    write("server.key", &key);
    Tls {
        ca: write("ca.pem", &ca),
    }
}
