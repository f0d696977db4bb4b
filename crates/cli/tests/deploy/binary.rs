//! What the binary reads and where it listens by default, as `tokencache
//! serve --help` says: the deployment files are held against this.

use std::collections::BTreeSet;
use std::process::Command;
use std::sync::OnceLock;

use crate::common::BIN;
use crate::tools::{bounded, succeeded};

/// Variables the binary reads that `serve --help` cannot name: the AWS
/// SDK's default chain (aws-config, linked into the binary for the
/// DynamoDB store and KMS) takes the region from this one.
const AWS_VARIABLES: [&str; 1] = ["AWS_REGION"];

/// `serve`'s variables and default addresses.
pub struct Surface {
    /// Every `TOKENCACHE_` variable `serve --help` names: each setting's,
    /// and those its help mentions (`TOKENCACHE_ADMIN_TOKEN` …).
    pub variables: BTreeSet<String>,
    /// `--listen`'s default.
    pub listen: String,
    /// `--admin-listen`'s default.
    pub admin_listen: String,
}

impl Surface {
    /// Whether `serve` reads the variable `name`.
    pub fn reads(&self, name: &str) -> bool {
        self.variables.contains(name) || AWS_VARIABLES.contains(&name)
    }

    /// Fails unless `serve` reads every variable in `names`.
    pub fn assert_reads_all<'a>(&self, place: &str, names: impl IntoIterator<Item = &'a str>) {
        let unknown: Vec<&str> = names.into_iter().filter(|name| !self.reads(name)).collect();
        assert!(
            unknown.is_empty(),
            "{place} sets variables `tokencache serve` does not read: {unknown:?}"
        );
    }
}

/// Read once from the binary.
pub fn surface() -> &'static Surface {
    static SURFACE: OnceLock<Surface> = OnceLock::new();
    SURFACE.get_or_init(|| {
        // Without the test's environment: --help would show set values.
        let output = bounded(
            Command::new(BIN)
                .args(["serve", "--help"])
                .env_clear()
                .env("COLUMNS", "100"),
        );
        let help = succeeded("tokencache serve --help", &output);
        let words = help
            .split(|c: char| !(c.is_ascii_uppercase() || c.is_ascii_digit() || c == '_'))
            .filter(|word| word.starts_with("TOKENCACHE_"))
            .map(str::to_owned)
            .collect();
        let flat = help.split_whitespace().collect::<Vec<_>>().join(" ");
        Surface {
            variables: words,
            listen: default_of(&flat, "--listen <"),
            admin_listen: default_of(&flat, "--admin-listen <"),
        }
    })
}

/// The `[default: …]` after a flag in the help.
fn default_of(help: &str, flag: &str) -> String {
    let after = &help[help
        .find(flag)
        .unwrap_or_else(|| panic!("no {flag} in help"))..];
    let start = after.find("[default: ").unwrap() + "[default: ".len();
    after[start..start + after[start..].find(']').unwrap()].to_owned()
}

#[test]
fn the_surface_is_read_from_the_help() {
    let surface = surface();
    for name in [
        "TOKENCACHE_LISTEN",
        "TOKENCACHE_CONFIG",
        "TOKENCACHE_ADMIN_TOKEN",
        "TOKENCACHE_ENCRYPTION_KEY",
    ] {
        assert!(surface.reads(name), "{name}: {:?}", surface.variables);
    }
    assert!(
        !surface.reads("TOKENCACHE_CLIENT_SECRET"),
        "a `token` variable"
    );
    for address in [&surface.listen, &surface.admin_listen] {
        assert!(address.parse::<std::net::SocketAddr>().is_ok(), "{address}");
    }
}
