//! Stamps the commit the proxy is built from into `tokencache_build_info`:
//! `TOKENCACHE_COMMIT` when set (a build with no `.git`, such as a
//! container image or a packaged crate), else `git rev-parse`, else
//! "unknown".

use std::path::Path;
use std::process::Command;

fn main() {
    println!("cargo:rerun-if-env-changed=TOKENCACHE_COMMIT");
    // Rebuild on a new commit or checkout; only paths that exist, since a
    // missing one makes cargo rerun the script on every build.
    for path in ["../../.git/HEAD", "../../.git/refs/heads"] {
        if Path::new(path).exists() {
            println!("cargo:rerun-if-changed={path}");
        }
    }
    let commit = std::env::var("TOKENCACHE_COMMIT")
        .ok()
        .filter(|commit| !commit.is_empty())
        .or_else(git_commit)
        .unwrap_or_else(|| "unknown".to_owned());
    println!("cargo:rustc-env=TOKENCACHE_COMMIT={commit}");
}

fn git_commit() -> Option<String> {
    let output = Command::new("git")
        .args(["rev-parse", "--short=12", "HEAD"])
        .output()
        .ok()?;
    let commit = String::from_utf8(output.stdout).ok()?.trim().to_owned();
    (output.status.success() && !commit.is_empty()).then_some(commit)
}
