//! `deploy/systemd/`: the unit through `systemd-analyze verify` and
//! `security`, its hardening, and the variables it and its environment file
//! set; the default config file through the binary.

use std::process::Command;

use crate::binary::surface;
use crate::common::{BIN, Running, log_field, start_mock_idp, wait_with_timeout};
use crate::tools::{http_status, read, run, scratch_dir, succeeded, tool};

const UNIT: &str = "deploy/systemd/tokencache.service";

fn systemd_analyze() -> std::path::PathBuf {
    tool("systemd-analyze", "apt-get install systemd")
}

/// The unit with its `ExecStart=` pointing at the binary under test
/// (`verify` checks that the command exists), in a directory of its own.
fn unit_for_this_build(name: &str) -> std::path::PathBuf {
    let dir = scratch_dir(name);
    let unit = dir.join("tokencache.service");
    let text = read(UNIT);
    assert!(text.contains("ExecStart=/usr/bin/tokencache "), "{text}");
    std::fs::write(&unit, text.replace("/usr/bin/tokencache", BIN)).unwrap();
    unit
}

/// The unit's settings in the `[Service]` section, in order.
fn service_settings() -> Vec<(String, String)> {
    read(UNIT)
        .lines()
        .skip_while(|line| line.trim() != "[Service]")
        .skip(1)
        .take_while(|line| !line.starts_with('['))
        .filter(|line| !line.trim().is_empty() && !line.trim_start().starts_with('#'))
        .map(|line| {
            let (key, value) = line.split_once('=').unwrap();
            (key.trim().to_owned(), value.trim().to_owned())
        })
        .collect()
}

#[test]
fn systemd_analyze_verify_finds_nothing() {
    let unit = unit_for_this_build("verify");
    // Without --man=no, verify also wants the man page the package installs
    // (the Debian test checks that one).
    let output = run(
        systemd_analyze(),
        &["verify", "--man=no", unit.to_str().unwrap()],
    );
    succeeded("systemd-analyze verify", &output);
    // verify exits 0 on a setting it ignores, and says so on stderr.
    let said = String::from_utf8_lossy(&output.stderr);
    assert!(said.trim().is_empty(), "systemd-analyze verify: {said}");

    // A positive control: a misspelt value is reported.
    std::fs::write(
        &unit,
        std::fs::read_to_string(&unit)
            .unwrap()
            .replace("Type=notify", "Type=notifyy"),
    )
    .unwrap();
    let output = run(
        systemd_analyze(),
        &["verify", "--man=no", unit.to_str().unwrap()],
    );
    assert!(String::from_utf8_lossy(&output.stderr).contains("notifyy"));
    std::fs::remove_dir_all(unit.parent().unwrap()).unwrap();
}

/// `systemd-analyze security` rates the sandbox; 2.0 of 10 or less is what
/// the unit's settings give (1.2 on systemd 252), so losing one fails.
#[test]
fn the_unit_is_hardened() {
    let unit = unit_for_this_build("security");
    let output = run(
        systemd_analyze(),
        &[
            "security",
            "--offline=yes",
            "--threshold=20",
            "--no-pager",
            unit.to_str().unwrap(),
        ],
    );
    succeeded("systemd-analyze security --threshold=20", &output);
    std::fs::remove_dir_all(unit.parent().unwrap()).unwrap();

    let settings = service_settings();
    let value = |key: &str| -> Vec<&str> {
        settings
            .iter()
            .filter(|(name, _)| name == key)
            .map(|(_, value)| value.as_str())
            .collect()
    };
    for (key, expected) in [
        ("Type", "notify"),
        ("DynamicUser", "yes"),
        ("ProtectSystem", "strict"),
        ("NoNewPrivileges", "yes"),
        ("CapabilityBoundingSet", ""),
        ("SystemCallFilter", "@system-service"),
        ("ExecReload", "/bin/kill -HUP $MAINPID"),
    ] {
        assert!(
            value(key).contains(&expected),
            "{key}={expected}: {:?}",
            value(key)
        );
    }
    // The notification socket is a Unix socket.
    let families = value("RestrictAddressFamilies");
    assert!(
        families.iter().any(|families| families.contains("AF_UNIX")),
        "{families:?}"
    );
    assert!(!value("WatchdogSec").is_empty(), "a watchdog");
}

#[test]
fn the_unit_and_its_environment_file_set_only_variables_the_binary_reads() {
    let settings = service_settings();
    let from_unit = settings
        .iter()
        .filter(|(key, _)| key == "Environment")
        .flat_map(|(_, value)| value.split_whitespace())
        .map(|pair| pair.split_once('=').unwrap().0);
    surface().assert_reads_all(UNIT, from_unit);
    // The file's examples are commented out; they must work once enabled.
    let template = read("deploy/systemd/tokencache.env");
    let from_template: Vec<&str> = template
        .lines()
        .map(|line| line.trim_start_matches('#').trim())
        .filter_map(|line| line.split_once('='))
        .map(|(name, _)| name)
        .filter(|name| !name.is_empty() && name.chars().all(|c| c.is_ascii_uppercase() || c == '_'))
        .collect();
    assert!(from_template.len() >= 3, "{from_template:?}");
    surface().assert_reads_all("deploy/systemd/tokencache.env", from_template);
}

/// The default config file, as the unit runs it: without a route the
/// service refuses to start (64, which the unit does not restart on); with
/// one it serves.
#[test]
fn the_default_config_needs_a_route_then_serves() {
    let config = crate::tools::repo().join("deploy/tokencache.toml");
    let exit_code_without_route = {
        let mut child = Command::new(BIN)
            .arg("serve")
            .env("TOKENCACHE_CONFIG", &config)
            .env("TOKENCACHE_LISTEN", "127.0.0.1:0")
            .env("TOKENCACHE_ADMIN_LISTEN", "127.0.0.1:0")
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .unwrap();
        wait_with_timeout(&mut child, std::time::Duration::from_secs(30))
    };
    assert_eq!(exit_code_without_route, 64);
    let prevented = service_settings()
        .into_iter()
        .find(|(key, _)| key == "RestartPreventExitStatus")
        .map(|(_, value)| value);
    assert_eq!(prevented.as_deref(), Some("64"));

    let (_idp, idp_url) = start_mock_idp();
    let mut proxy = Running::start(
        Command::new(BIN)
            .arg("serve")
            .env("TOKENCACHE_CONFIG", &config)
            .env("TOKENCACHE_LISTEN", "127.0.0.1:0")
            .env("TOKENCACHE_ADMIN_LISTEN", "127.0.0.1:0")
            .env("TOKENCACHE_UPSTREAM", &idp_url),
    );
    let line = proxy.wait_for_line("tokencache serving");
    assert_eq!(http_status(&log_field(&line, "admin"), "/readyz"), 200);
    let (code, output) = proxy.terminate();
    assert_eq!(code, 0, "{output:#?}");
}
