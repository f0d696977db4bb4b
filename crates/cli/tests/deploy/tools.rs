//! Finding the repository's files and the validators, and running them
//! with a bound on their time.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use serde_json::Value;

/// The workspace root.
pub fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../..")
        .canonicalize()
        .unwrap()
}

/// A file of the repository, as text.
pub fn read(relative: &str) -> String {
    let path = repo().join(relative);
    std::fs::read_to_string(&path).unwrap_or_else(|error| panic!("{}: {error}", path.display()))
}

/// A validator: from scripts/test's venv (target/test-venv/bin), else from
/// PATH; a missing one fails the test with what installs it.
pub fn tool(name: &str, installed_by: &str) -> PathBuf {
    let venv = repo().join("target/test-venv/bin").join(name);
    if venv.is_file() {
        return venv;
    }
    find_on_path(name)
        .unwrap_or_else(|| panic!("`{name}` is missing; scripts/test installs it ({installed_by})"))
}

/// `name` on PATH, if it is there.
pub fn find_on_path(name: &str) -> Option<PathBuf> {
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path)
        .map(|dir| dir.join(name))
        .find(|candidate| candidate.is_file())
}

/// Runs `program` under coreutils' `timeout`, so that a hung validator
/// fails the test instead of holding the suite.
pub fn run(program: impl AsRef<std::ffi::OsStr>, args: &[&str]) -> Output {
    bounded(Command::new(program).args(args))
}

/// Runs a prepared command under `timeout` (three minutes).
pub fn bounded(command: &Command) -> Output {
    let mut wrapped = Command::new("timeout");
    wrapped
        .args(["--kill-after=5", "180"])
        .arg(command.get_program())
        .args(command.get_args());
    for (name, value) in command.get_envs() {
        match value {
            Some(value) => wrapped.env(name, value),
            None => wrapped.env_remove(name),
        };
    }
    if let Some(dir) = command.get_current_dir() {
        wrapped.current_dir(dir);
    }
    wrapped.output().unwrap()
}

/// Asserts that a run succeeded; its standard output.
pub fn succeeded(what: &str, output: &Output) -> String {
    let stdout = String::from_utf8_lossy(&output.stdout).into_owned();
    assert!(
        output.status.success(),
        "{what}: {}\nstdout:\n{stdout}\nstderr:\n{}",
        output.status,
        String::from_utf8_lossy(&output.stderr)
    );
    stdout
}

/// A fresh directory under the system's temporary directory.
pub fn scratch_dir(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("tokencache-deploy-{}-{name}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

/// The documents of a YAML stream, as JSON values (PyYAML, which
/// kubernetes-validate brings, reads YAML here).
pub fn yaml_documents(text: &str) -> Vec<Value> {
    let python = tool("python3", "python3 -m venv target/test-venv");
    let mut child = Command::new(python)
        .args([
            "-c",
            "import json, sys, yaml; json.dump([d for d in yaml.safe_load_all(sys.stdin) if d is not None], sys.stdout)",
        ])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    {
        use std::io::Write as _;
        let mut stdin = child.stdin.take().unwrap();
        stdin.write_all(text.as_bytes()).unwrap();
    }
    let output = child.wait_with_output().unwrap();
    let json = succeeded("YAML to JSON (PyYAML)", &output);
    serde_json::from_str(&json).unwrap()
}

/// The port of an address written `host:port`.
pub fn port_of(address: &str) -> u16 {
    address
        .rsplit_once(':')
        .and_then(|(_, port)| port.parse().ok())
        .unwrap_or_else(|| panic!("no port in {address:?}"))
}

/// The status code of a plain `GET`, over a socket of its own.
pub fn http_status(address: &str, path: &str) -> u16 {
    use std::io::{Read as _, Write as _};
    let mut stream = std::net::TcpStream::connect(address).unwrap();
    stream
        .set_read_timeout(Some(std::time::Duration::from_secs(10)))
        .unwrap();
    write!(
        stream,
        "GET {path} HTTP/1.1\r\nHost: {address}\r\nConnection: close\r\n\r\n"
    )
    .unwrap();
    let mut answer = String::new();
    stream.read_to_string(&mut answer).unwrap();
    answer
        .split(' ')
        .nth(1)
        .and_then(|code| code.parse().ok())
        .unwrap_or_else(|| panic!("not an HTTP answer: {answer:?}"))
}
