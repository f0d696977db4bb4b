//! `deploy/kubernetes/`: each kustomization rendered, validated for every
//! supported Kubernetes version, and held against the binary: probe paths
//! and ports, variables, security context, and its settings served.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;

use serde_json::Value;

use crate::binary::surface;
use crate::common::{BIN, Running, log_field, start_mock_idp};
use crate::dockerfile;
use crate::tools::{
    find_on_path, http_status, port_of, read, repo, run, scratch_dir, succeeded, tool,
    yaml_documents,
};

/// The Kubernetes versions the manifests are validated for: 1.30 is the
/// first where a `preStop` sleep is on by default (native sidecars came in
/// 1.29); 1.37 is the newest kubernetes-validate knows.
const SUPPORTED_VERSIONS: [&str; 8] = [
    "1.30.0", "1.31.0", "1.32.0", "1.33.0", "1.34.0", "1.35.0", "1.36.0", "1.37.0",
];

/// Every kustomization, relative to deploy/kubernetes.
const KUSTOMIZATIONS: [&str; 4] = [
    "base",
    "overlays/redis",
    "overlays/dynamodb",
    "examples/sidecar",
];

/// A kustomization, rendered.
struct Rendered {
    dir: &'static str,
    yaml: String,
    documents: Vec<Value>,
}

impl Rendered {
    fn of_kind<'a>(&'a self, kind: &'a str) -> impl Iterator<Item = &'a Value> {
        self.documents.iter().filter(move |doc| doc["kind"] == kind)
    }

    fn named(&self, kind: &str, name: &str) -> Option<&Value> {
        self.documents
            .iter()
            .find(|doc| doc["kind"] == kind && doc["metadata"]["name"] == name)
    }

    /// Each pod template's spec, with its workload's name.
    fn pods(&self) -> impl Iterator<Item = (&str, &Value)> {
        self.of_kind("Deployment").map(|deployment| {
            (
                deployment["metadata"]["name"].as_str().unwrap(),
                &deployment["spec"]["template"]["spec"],
            )
        })
    }

    /// Every container and init container of every pod, with its pod spec.
    fn containers(&self) -> impl Iterator<Item = (&str, &Value, &Value)> {
        self.pods().flat_map(|(workload, pod)| {
            ["containers", "initContainers"]
                .into_iter()
                .flat_map(move |list| items(&pod[list]))
                .map(move |container| (workload, pod, container))
        })
    }

    /// The containers that run tokencache.
    fn tokencache(&self) -> impl Iterator<Item = (&str, &Value, &Value)> {
        self.containers()
            .filter(|(_, _, container)| container["name"] == "tokencache")
    }
}

fn items(value: &Value) -> &[Value] {
    value.as_array().map(Vec::as_slice).unwrap_or_default()
}

fn kubernetes_dir() -> PathBuf {
    repo().join("deploy/kubernetes")
}

/// `kustomize build DIR`, or kubectl's built-in kustomize.
fn kustomize(dir: &Path) -> String {
    let dir = dir.to_str().unwrap();
    let output = if let Some(kustomize) = find_on_path("kustomize") {
        run(kustomize, &["build", dir])
    } else if let Some(kubectl) = find_on_path("kubectl") {
        run(kubectl, &["kustomize", dir])
    } else {
        panic!("neither `kustomize` nor `kubectl` is on PATH to render {dir}");
    };
    succeeded(&format!("kustomize {dir}"), &output)
}

/// Every kustomization, rendered once for all the tests.
fn rendered() -> &'static [Rendered] {
    static RENDERED: OnceLock<Vec<Rendered>> = OnceLock::new();
    RENDERED.get_or_init(|| {
        KUSTOMIZATIONS
            .iter()
            .map(|dir| {
                let yaml = kustomize(&kubernetes_dir().join(dir));
                let documents = yaml_documents(&yaml);
                assert!(!documents.is_empty(), "{dir} renders nothing");
                Rendered {
                    dir,
                    yaml,
                    documents,
                }
            })
            .collect()
    })
}

#[test]
fn every_manifest_validates_for_every_supported_version() {
    let validate = tool(
        "kubernetes-validate",
        "pip install kubernetes-validate into target/test-venv",
    );
    let dir = scratch_dir("kubernetes");
    let files: Vec<String> = rendered()
        .iter()
        .map(|rendered| {
            let file = dir.join(format!("{}.yaml", rendered.dir.replace('/', "-")));
            std::fs::write(&file, &rendered.yaml).unwrap();
            file.to_str().unwrap().to_owned()
        })
        .collect();
    for version in SUPPORTED_VERSIONS {
        let mut args = vec!["--strict", "--quiet", "-k", version];
        args.extend(files.iter().map(String::as_str));
        let output = run(&validate, &args);
        succeeded(&format!("kubernetes-validate -k {version}"), &output);
    }
    // A positive control: the validator does reject a broken manifest.
    let broken = dir.join("broken.yaml");
    std::fs::write(
        &broken,
        rendered()[0]
            .yaml
            .replace("readOnlyRootFilesystem", "readOnlyRootFileSystem"),
    )
    .unwrap();
    let output = run(
        &validate,
        &[
            "--strict",
            "--quiet",
            "-k",
            SUPPORTED_VERSIONS[0],
            broken.to_str().unwrap(),
        ],
    );
    assert!(!output.status.success(), "a misspelt field passed");
    std::fs::remove_dir_all(&dir).unwrap();
}

/// The file a kustomization names, for files under deploy/kubernetes.
fn referenced_files() -> BTreeSet<PathBuf> {
    let mut files = BTreeSet::new();
    for dir in KUSTOMIZATIONS {
        let dir = kubernetes_dir().join(dir);
        let kustomization = std::fs::read_to_string(dir.join("kustomization.yaml")).unwrap();
        let kustomization = &yaml_documents(&kustomization)[0];
        let named = items(&kustomization["resources"])
            .iter()
            .chain(
                items(&kustomization["patches"])
                    .iter()
                    .map(|patch| &patch["path"]),
            )
            .chain(
                items(&kustomization["configMapGenerator"])
                    .iter()
                    .flat_map(|generator| items(&generator["files"])),
            );
        for name in named {
            let path = dir.join(name.as_str().unwrap()).canonicalize().unwrap();
            if path.is_file() {
                files.insert(path);
            }
        }
        files.insert(dir.join("kustomization.yaml").canonicalize().unwrap());
    }
    files
}

fn files_under(dir: &Path, found: &mut Vec<PathBuf>) {
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            files_under(&path, found);
        } else {
            found.push(path.canonicalize().unwrap());
        }
    }
}

/// So that no manifest escapes validation: each file is rendered by one of
/// the kustomizations above.
#[test]
fn every_file_belongs_to_a_checked_kustomization() {
    let referenced = referenced_files();
    let mut found = Vec::new();
    files_under(&kubernetes_dir(), &mut found);
    let unchecked: Vec<&PathBuf> = found
        .iter()
        .filter(|file| !referenced.contains(*file))
        .collect();
    assert!(
        unchecked.is_empty(),
        "not in a kustomization the tests render: {unchecked:?}"
    );
}

/// A container's variable: its literal value, if it has one.
fn env_value<'a>(container: &'a Value, name: &str) -> Option<&'a str> {
    items(&container["env"])
        .iter()
        .find(|var| var["name"] == name)
        .and_then(|var| var["value"].as_str())
}

/// The volume mounted over `path` in a container, with the mount point.
fn volume_at<'a>(pod: &'a Value, container: &'a Value, path: &str) -> Option<(&'a Value, &'a str)> {
    let mount = items(&container["volumeMounts"]).iter().find(|mount| {
        let at = mount["mountPath"].as_str().unwrap();
        path.starts_with(&format!("{}/", at.trim_end_matches('/')))
    })?;
    let volume = items(&pod["volumes"])
        .iter()
        .find(|volume| volume["name"] == mount["name"])?;
    Some((volume, mount["mountPath"].as_str().unwrap()))
}

/// The config file a tokencache container reads (`TOKENCACHE_CONFIG` in a
/// mounted ConfigMap), as text.
fn config_file(rendered: &Rendered, pod: &Value, container: &Value) -> Option<String> {
    let path = env_value(container, "TOKENCACHE_CONFIG")?;
    let (volume, mount) =
        volume_at(pod, container, path).unwrap_or_else(|| panic!("{path} is in no mounted volume"));
    let name = volume["configMap"]["name"]
        .as_str()
        .unwrap_or_else(|| panic!("{path}: not a ConfigMap"));
    let map = rendered
        .named("ConfigMap", name)
        .unwrap_or_else(|| panic!("no ConfigMap {name} in {}", rendered.dir));
    let key = path[mount.len()..].trim_start_matches('/');
    Some(map["data"][key].as_str().unwrap().to_owned())
}

/// What a tokencache container runs with for a setting: its variable, else
/// its config file's key, else the image's `ENV`, else the binary's default.
fn effective(
    rendered: &Rendered,
    pod: &Value,
    container: &Value,
    variable: &str,
    file_key: &str,
    default: &str,
) -> String {
    if let Some(value) = env_value(container, variable) {
        return value.to_owned();
    }
    if let Some(text) = config_file(rendered, pod, container) {
        let table: toml::Table = toml::from_str(&text).unwrap();
        if let Some(value) = table.get(file_key) {
            return value.as_str().unwrap().to_owned();
        }
    }
    let stages = dockerfile::stages();
    stages
        .last()
        .unwrap()
        .env()
        .get(variable)
        .cloned()
        .unwrap_or_else(|| default.to_owned())
}

/// A probe's or a Service's port: a number, or a container port's name.
fn resolve_port(container: &Value, port: &Value) -> u16 {
    if let Some(number) = port.as_u64() {
        return u16::try_from(number).unwrap();
    }
    let name = port.as_str().unwrap();
    let declared = items(&container["ports"])
        .iter()
        .find(|declared| declared["name"] == name)
        .unwrap_or_else(|| panic!("no container port named {name}"));
    u16::try_from(declared["containerPort"].as_u64().unwrap()).unwrap()
}

fn is_any_address(address: &str) -> bool {
    address.starts_with("0.0.0.0:") || address.starts_with("[::]:")
}

#[test]
fn probes_and_ports_are_the_binarys_defaults() {
    let defaults = surface();
    for rendered in rendered() {
        let mut checked = 0;
        for (workload, pod, container) in rendered.tokencache() {
            let place = format!("{}: {workload}", rendered.dir);
            let admin = effective(
                rendered,
                pod,
                container,
                "TOKENCACHE_ADMIN_LISTEN",
                "admin_listen",
                &defaults.admin_listen,
            );
            let listen = effective(
                rendered,
                pod,
                container,
                "TOKENCACHE_LISTEN",
                "listen",
                &defaults.listen,
            );
            assert_eq!(
                port_of(&admin),
                port_of(&defaults.admin_listen),
                "{place}: {admin}"
            );
            assert_eq!(
                port_of(&listen),
                port_of(&defaults.listen),
                "{place}: {listen}"
            );
            // The kubelet probes the pod's address, not its loopback.
            assert!(is_any_address(&admin), "{place}: admin on {admin}");
            for (probe, paths) in [
                ("livenessProbe", &["/healthz"][..]),
                ("readinessProbe", &["/readyz"][..]),
                ("startupProbe", &["/readyz", "/healthz"][..]),
            ] {
                let Some(get) = container[probe]["httpGet"].as_object() else {
                    assert_ne!(probe, "livenessProbe", "{place}: no liveness probe");
                    assert_ne!(probe, "readinessProbe", "{place}: no readiness probe");
                    continue;
                };
                let path = get["path"].as_str().unwrap();
                assert!(paths.contains(&path), "{place}: {probe} on {path}");
                assert_eq!(
                    resolve_port(container, &get["port"]),
                    port_of(&admin),
                    "{place}: {probe} port"
                );
            }
            if let Some(http) = items(&container["ports"])
                .iter()
                .find(|port| port["name"] == "http")
            {
                assert_eq!(
                    http["containerPort"].as_u64(),
                    Some(u64::from(port_of(&listen)))
                );
                assert!(is_any_address(&listen), "{place}: a port for {listen}");
            }
            checked += 1;
        }
        assert!(checked > 0, "{}: no tokencache container", rendered.dir);
        // Each Service reaches a port its pods declare.
        for service in rendered.of_kind("Service") {
            let selector = &service["spec"]["selector"];
            let (_, _, container) = rendered
                .containers()
                .find(|(workload, _, _)| {
                    let deployment = rendered.named("Deployment", workload).unwrap();
                    selects(
                        selector,
                        &deployment["spec"]["template"]["metadata"]["labels"],
                    )
                })
                .unwrap_or_else(|| panic!("{}: service selects no pod", rendered.dir));
            for port in items(&service["spec"]["ports"]) {
                resolve_port(container, &port["targetPort"]);
            }
        }
    }
}

/// Whether every label of `selector` is on `labels`.
fn selects(selector: &Value, labels: &Value) -> bool {
    selector
        .as_object()
        .unwrap()
        .iter()
        .all(|(key, value)| labels[key] == *value)
}

/// Settings that hold a secret, or name a file that holds one.
const SECRET_VALUES: [&str; 3] = [
    "TOKENCACHE_ADMIN_TOKEN",
    "TOKENCACHE_ENCRYPTION_KEY",
    "TOKENCACHE_HMAC_KEY",
];
const SECRET_FILES: [&str; 4] = [
    "TOKENCACHE_ADMIN_TOKEN_FILE",
    "TOKENCACHE_ENCRYPTION_KEY_FILE",
    "TOKENCACHE_ENCRYPTION_KEY_KMS",
    "TOKENCACHE_HMAC_KEY_FILE",
];

#[test]
fn containers_get_only_variables_the_binary_reads_and_secrets_from_secrets() {
    for rendered in rendered() {
        for (workload, pod, container) in rendered.tokencache() {
            let place = format!("{}: {workload}", rendered.dir);
            assert!(
                container["envFrom"].is_null(),
                "{place}: envFrom hides names"
            );
            // Service links would add TOKENCACHE_SERVICE_HOST and the like.
            assert_eq!(pod["enableServiceLinks"], false, "{place}: service links");
            let env = items(&container["env"]);
            surface().assert_reads_all(&place, env.iter().map(|var| var["name"].as_str().unwrap()));
            for var in env {
                let name = var["name"].as_str().unwrap();
                let literal = var["value"].as_str();
                if SECRET_VALUES.contains(&name) {
                    assert!(literal.is_none(), "{place}: {name} from a Secret");
                }
                // A URL with credentials (a Redis password) is a secret too.
                if let Some(url) =
                    literal.filter(|_| name == "TOKENCACHE_STORE" || name == "TOKENCACHE_UPSTREAM")
                {
                    assert!(!url.contains('@'), "{place}: {name} holds credentials");
                }
                if let Some(reference) = var["valueFrom"].as_object() {
                    assert!(
                        reference.contains_key("secretKeyRef"),
                        "{place}: {name} from a Secret"
                    );
                }
                if SECRET_FILES.contains(&name) {
                    let path = literal.unwrap();
                    let (volume, _) = volume_at(pod, container, path)
                        .unwrap_or_else(|| panic!("{place}: {path} is in no volume"));
                    assert!(
                        volume["secret"].is_object(),
                        "{place}: {path} not in a Secret"
                    );
                }
            }
        }
    }
}

#[test]
fn every_container_is_non_root_read_only_and_bounded() {
    for rendered in rendered() {
        for (workload, pod, container) in rendered.containers() {
            let place = format!("{}: {workload}/{}", rendered.dir, container["name"]);
            let context = &container["securityContext"];
            let pod_context = &pod["securityContext"];
            assert_eq!(context["readOnlyRootFilesystem"], true, "{place}");
            assert_eq!(context["allowPrivilegeEscalation"], false, "{place}");
            assert!(
                items(&context["capabilities"]["drop"]).contains(&Value::from("ALL")),
                "{place}: drop ALL"
            );
            assert!(
                context["runAsNonRoot"] == true || pod_context["runAsNonRoot"] == true,
                "{place}: runAsNonRoot"
            );
            for user in [&context["runAsUser"], &pod_context["runAsUser"]] {
                assert_ne!(user.as_u64(), Some(0), "{place}: root");
            }
            assert_eq!(
                pod_context["seccompProfile"]["type"], "RuntimeDefault",
                "{place}"
            );
            let resources = &container["resources"];
            for (kind, what) in [
                ("requests", "cpu"),
                ("requests", "memory"),
                ("limits", "memory"),
            ] {
                assert!(resources[kind][what].is_string(), "{place}: {kind}.{what}");
            }
            let image = container["image"].as_str().unwrap();
            let tag = image
                .rsplit('/')
                .next()
                .unwrap()
                .split_once(':')
                .map(|(_, tag)| tag);
            assert!(
                tag.is_some_and(|tag| tag != "latest"),
                "{place}: {image} has no pinned tag"
            );
        }
    }
}

#[test]
fn the_tokencache_image_is_this_version() {
    let version = env!("CARGO_PKG_VERSION");
    for rendered in rendered() {
        for (workload, _, container) in rendered.tokencache() {
            let image = container["image"].as_str().unwrap();
            assert!(
                image.ends_with(&format!("/tokencache:{version}")),
                "{}: {workload} runs {image}, not {version}",
                rendered.dir
            );
        }
    }
}

/// The Deployments of tokencache itself (not the sidecar example) spread
/// over zones and nodes, and a PodDisruptionBudget keeps one up.
#[test]
fn fleets_spread_and_keep_a_replica_through_disruptions() {
    for rendered in rendered()
        .iter()
        .filter(|rendered| rendered.dir != "examples/sidecar")
    {
        let deployment = rendered.named("Deployment", "tokencache").unwrap();
        let labels = &deployment["spec"]["template"]["metadata"]["labels"];
        assert!(
            deployment["spec"]["replicas"].as_u64() >= Some(2),
            "{}",
            rendered.dir
        );
        let spread = items(&deployment["spec"]["template"]["spec"]["topologySpreadConstraints"]);
        let keys: BTreeSet<&str> = spread
            .iter()
            .inspect(|constraint| {
                assert!(selects(&constraint["labelSelector"]["matchLabels"], labels));
            })
            .map(|constraint| constraint["topologyKey"].as_str().unwrap())
            .collect();
        assert_eq!(
            keys,
            BTreeSet::from(["kubernetes.io/hostname", "topology.kubernetes.io/zone"]),
            "{}",
            rendered.dir
        );
        let budget = rendered.named("PodDisruptionBudget", "tokencache").unwrap();
        assert!(selects(&budget["spec"]["selector"]["matchLabels"], labels));
    }
}

#[test]
fn the_dynamodb_overlay_names_a_role_with_the_store_readmes_policy() {
    let dynamodb = rendered()
        .iter()
        .find(|rendered| rendered.dir == "overlays/dynamodb")
        .unwrap();
    let account = dynamodb.named("ServiceAccount", "tokencache").unwrap();
    let role = account["metadata"]["annotations"]["eks.amazonaws.com/role-arn"]
        .as_str()
        .unwrap();
    assert!(role.starts_with("arn:aws:iam::"), "{role}");
    let (_, pod, _) = dynamodb.tokencache().next().unwrap();
    assert_eq!(pod["serviceAccountName"], "tokencache");

    let readme = read("crates/dynamodb-store/README.md");
    let section = &readme[readme.find("## Least-privilege IAM policy").unwrap()..];
    let block = &section[section.find("```json").unwrap() + "```json".len()..];
    let block = &block[..block.find("```").unwrap()];
    let documented: Value = serde_json::from_str(block).unwrap();
    let shipped: Value = serde_json::from_str(&read("deploy/aws/iam-policy.json")).unwrap();
    assert_eq!(
        shipped, documented,
        "deploy/aws/iam-policy.json differs from crates/dynamodb-store/README.md's policy"
    );
}

/// The base's settings, given to the binary as the pod gives them (its
/// listeners moved to free loopback ports, its upstream to a mock IdP):
/// it serves tokens, and the probes' paths answer 200.
#[tokio::test]
async fn the_base_settings_serve_and_the_probes_answer() {
    let base = &rendered()[0];
    let (_, pod, container) = base.tokencache().next().unwrap();
    let dir = scratch_dir("kubernetes-base");
    let config = dir.join("tokencache.toml");
    std::fs::write(&config, config_file(base, pod, container).unwrap()).unwrap();
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
    let (listen, admin) = (log_field(&line, "listen"), log_field(&line, "admin"));
    for probe in ["livenessProbe", "readinessProbe"] {
        let path = container[probe]["httpGet"]["path"].as_str().unwrap();
        assert_eq!(http_status(&admin, path), 200, "{probe} {path}");
    }
    let answer = reqwest::Client::new()
        .post(format!("http://{listen}/oauth2/token"))
        .basic_auth("demo-client", Some("demo-secret"))
        .form(&[("grant_type", "client_credentials"), ("scope", "api/read")])
        .send()
        .await
        .unwrap();
    assert_eq!(answer.status(), 200);
    let (code, output) = proxy.terminate();
    assert_eq!(code, 0, "{output:#?}");
    std::fs::remove_dir_all(&dir).unwrap();
}
