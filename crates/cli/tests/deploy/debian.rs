//! The Debian package: built by scripts/package-deb (cargo-deb) from this
//! build's binary, so the suite compiles nothing more; installed with
//! dpkg, run, and purged.

use std::io::BufRead as _;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};

use crate::common::{BIN, Running};
use crate::tools::{bounded, read, repo, run, scratch_dir, succeeded, tool};

const PACKAGE: &str = "tokencache";

/// What the package must install.
const CONTENTS: [&str; 12] = [
    "/usr/bin/tokencache",
    "/usr/lib/systemd/system/tokencache.service",
    "/usr/lib/sysusers.d/tokencache.conf",
    "/etc/tokencache/tokencache.toml",
    "/etc/default/tokencache",
    "/usr/share/man/man1/tokencache.1.gz",
    "/usr/share/man/man1/tokencache-serve.1.gz",
    "/usr/share/man/man1/tokencache-completions.1.gz",
    "/usr/share/bash-completion/completions/tokencache",
    "/usr/share/zsh/vendor-completions/_tokencache",
    "/usr/share/fish/vendor_completions.d/tokencache.fish",
    "/usr/share/doc/tokencache/copyright",
];

fn is_root() -> bool {
    let output = run("id", &["-u"]);
    succeeded("id -u", &output).trim() == "0"
}

/// An exclusive lock on this machine's package database for the test,
/// held by flock(1) while this lives, so that two runs of the suite on one
/// machine do not install and purge over each other.
struct MachineLock(Child);

impl MachineLock {
    fn take() -> Self {
        let lock = std::env::temp_dir().join("tokencache-deb-test.lock");
        let mut child = Command::new("flock")
            .args(["--exclusive", "--timeout", "300"])
            .arg(&lock)
            .args(["-c", "echo locked; exec cat"])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .spawn()
            .unwrap();
        let mut line = String::new();
        std::io::BufReader::new(child.stdout.as_mut().unwrap())
            .read_line(&mut line)
            .unwrap();
        assert_eq!(line.trim(), "locked", "flock {}", lock.display());
        Self(child)
    }
}

impl Drop for MachineLock {
    fn drop(&mut self) {
        // Closing cat's input ends it, and flock releases the lock.
        drop(self.0.stdin.take());
        let _ = self.0.wait();
    }
}

/// Purges the package when dropped, so that a failed test leaves no
/// package behind.
struct Installed;

impl Drop for Installed {
    fn drop(&mut self) {
        let _ = run("dpkg", &["--purge", PACKAGE]);
    }
}

fn build_package() -> PathBuf {
    tool("cargo-deb", "cargo install --locked cargo-deb");
    let out = scratch_dir("deb");
    let output = bounded(Command::new(repo().join("scripts/package-deb")).args([
        "--binary",
        BIN,
        "--out",
        out.to_str().unwrap(),
        "--fast",
    ]));
    succeeded("scripts/package-deb", &output);
    std::fs::read_dir(&out)
        .unwrap()
        .map(|entry| entry.unwrap().path())
        .find(|path| path.extension().is_some_and(|extension| extension == "deb"))
        .unwrap_or_else(|| panic!("no .deb in {}", out.display()))
}

fn status() -> String {
    let output = run("dpkg-query", &["-W", "-f=${db:Status-Status}", PACKAGE]);
    String::from_utf8_lossy(&output.stdout).into_owned()
}

#[tokio::test]
async fn the_package_installs_runs_and_purges_cleanly() {
    if !is_root() {
        eprintln!("skipped: installing a Debian package needs root (CI runs as root)");
        return;
    }
    let deb = build_package();
    let deb = deb.to_str().unwrap();
    let listed = succeeded(
        "dpkg-deb --contents",
        &run("dpkg-deb", &["--contents", deb]),
    );
    for path in CONTENTS {
        assert!(
            listed.contains(&format!(".{path}\n")),
            "{path} not in {listed}"
        );
    }

    let _lock = MachineLock::take();
    let installed = Installed;
    succeeded("dpkg -i", &run("dpkg", &["-i", deb]));
    assert_eq!(status(), "installed");
    check_installed();
    serve_the_demo().await;

    succeeded("dpkg --purge", &run("dpkg", &["--purge", PACKAGE]));
    std::mem::forget(installed);
    assert!(
        ["not-installed", ""].contains(&status().as_str()),
        "after purge: {}",
        status()
    );
    for path in CONTENTS.iter().chain(&["/etc/tokencache"]) {
        assert!(!Path::new(path).exists(), "{path} is left after purge");
    }
    std::fs::remove_dir_all(Path::new(deb).parent().unwrap()).unwrap();
}

/// What the package put in place: the binary, its user, a unit that
/// systemd accepts (man page included), completions a shell reads.
fn check_installed() {
    let version = succeeded("--version", &run("/usr/bin/tokencache", &["--version"]));
    assert_eq!(
        version.trim(),
        format!("tokencache {}", env!("CARGO_PKG_VERSION"))
    );
    succeeded(
        "getent passwd tokencache",
        &run("getent", &["passwd", "tokencache"]),
    );
    let unit = "/usr/lib/systemd/system/tokencache.service";
    assert_eq!(
        std::fs::read_to_string(unit).unwrap(),
        read("deploy/systemd/tokencache.service")
    );
    // With the man page check this time: the unit's
    // Documentation=man:tokencache-serve(1) is installed now.
    let output = run("systemd-analyze", &["verify", unit]);
    succeeded("systemd-analyze verify (installed)", &output);
    let said = String::from_utf8_lossy(&output.stderr);
    assert!(said.trim().is_empty(), "systemd-analyze verify: {said}");
    succeeded("man -w", &run("man", &["-w", "tokencache-serve"]));
    let completion = "/usr/share/bash-completion/completions/tokencache";
    let output = run(
        "bash",
        &[
            "-c",
            &format!("source {completion} && complete -p tokencache"),
        ],
    );
    assert!(succeeded("bash completion", &output).contains("_tokencache"));
    use std::os::unix::fs::PermissionsExt as _;
    let mode = std::fs::metadata("/etc/default/tokencache")
        .unwrap()
        .permissions()
        .mode();
    assert_eq!(
        mode & 0o777,
        0o600,
        "/etc/default/tokencache may hold secrets"
    );
}

/// The installed binary runs `tokencache demo`, and a token fetched twice
/// through it is a hit the second time.
async fn serve_the_demo() {
    let mut demo = Running::start(Command::new("/usr/bin/tokencache").args([
        "demo",
        "--listen",
        "127.0.0.1:0",
        "--admin-listen",
        "127.0.0.1:0",
        "--idp-listen",
        "127.0.0.1:0",
        "--idp-latency",
        "0",
    ]));
    let line = demo.wait_for_line("tokencache proxy");
    let url = line.split_whitespace().last().unwrap().to_owned();
    let mut cache_status = Vec::new();
    for _ in 0..2 {
        let answer = reqwest::Client::new()
            .post(&url)
            .basic_auth("demo-client", Some("demo-secret"))
            .form(&[("grant_type", "client_credentials"), ("scope", "api/read")])
            .send()
            .await
            .unwrap();
        assert_eq!(answer.status(), 200);
        cache_status.push(
            answer.headers()["cache-status"]
                .to_str()
                .unwrap()
                .to_owned(),
        );
    }
    assert!(
        cache_status[1].starts_with("tokencache; hit"),
        "{cache_status:?}"
    );
    let (code, output) = demo.terminate();
    assert_eq!(code, 0, "{output:#?}");
}
