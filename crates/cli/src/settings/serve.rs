//! Resolving `serve`'s settings: the layers laid on the defaults, then the
//! parts that must agree checked together and assembled into what the
//! proxy, the listeners and the store take.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use base64::Engine as _;
use tokencache_core::{Backoff, FreshnessPolicy, HmacKey};
use tokencache_proxy::{AdminToken, Limits, ProxyConfig, RouteConfig, TlsFiles};

use crate::environment::Environment;
use crate::settings::cognito;
use crate::settings::command_line::ServeArgs;
use crate::settings::declarations::{MAX_HEADER_BYTES, PATH, SERVE};
use crate::settings::draft::{Draft, LogSettings};
use crate::settings::error::{SettingsError, invalid};
use crate::settings::file::{FileConfig, FileRoute};
use crate::store::{ENCRYPTION_KEY_VAR, KeySource, StoreSettings};

/// The environment variable holding the cache-key HMAC key (base64).
pub const HMAC_KEY_VAR: &str = "TOKENCACHE_HMAC_KEY";

/// The environment variable holding the admin API's bearer token.
pub const ADMIN_TOKEN_VAR: &str = "TOKENCACHE_ADMIN_TOKEN";

/// The fewest header bytes hyper's HTTP/1.1 reader works with.
const MIN_HEADER_BYTES: usize = 8 << 10;

/// Everything `serve` runs with.
#[derive(Debug)]
pub struct ServeSettings {
    /// The token listener.
    pub listen: SocketAddr,
    /// The admin listener.
    pub admin_listen: SocketAddr,
    /// The proxy.
    pub proxy: ProxyConfig,
    /// Drain time on shutdown.
    pub shutdown_grace: Duration,
    /// Threads serving the token listener (0: the shared runtime).
    pub workers: usize,
    /// Limits of the token listener.
    pub limits: Limits,
    /// HTTPS certificate and key.
    pub tls: Option<TlsFiles>,
    /// The shared store, if any.
    pub store: StoreSettings,
    /// Logging.
    pub log: LogSettings,
}

impl ServeSettings {
    /// Reads the config file the flags or variables name, if any, and
    /// resolves.
    ///
    /// # Errors
    /// [`SettingsError`] for an unreadable file or the first unusable
    /// setting.
    pub fn load(args: ServeArgs, env: &impl Environment) -> Result<Self, SettingsError> {
        let file = match args.config_file() {
            Some(path) => FileConfig::load(&path)?,
            None => FileConfig::default(),
        };
        Self::resolve(args, file, env)
    }

    /// Lays flags and variables (which clap has read), then the config
    /// file, on the defaults, and assembles the result.
    ///
    /// # Errors
    /// [`SettingsError`] for the first unusable setting.
    pub fn resolve(
        args: ServeArgs,
        file: FileConfig,
        env: &impl Environment,
    ) -> Result<Self, SettingsError> {
        let mut draft = Draft::from_environment(env);
        for setting in &SERVE {
            if !args.given.apply(*setting, &mut draft)? {
                file.apply(*setting, &mut draft)?;
            }
        }
        let path_given = args.given.text(&PATH).is_some();
        let mut proxy = draft.proxy.clone();
        // Client ids on the status page only where just this host sees it,
        // unless told otherwise.
        proxy
            .status_show_clients
            .get_or_insert(draft.admin_listen.ip().is_loopback());
        proxy.budgets = file.budgets;
        proxy.routes = routes(&draft, path_given, file.routes)?;
        proxy.cognito_idp = cognito::native_api(&draft, &file.native_routes)?;
        proxy.freshness = FreshnessPolicy::new(draft.refresh_at, draft.min_remaining)
            .map_err(|error| invalid("refresh-at/min-remaining", error.to_string()))?
            .with_max_ttl(draft.max_ttl);
        proxy.resilience.backoff =
            Backoff::new(draft.retry_base, draft.retry_cap, draft.retry_attempts);
        proxy.hmac_key = hmac_key(draft.hmac_key_file.take(), env)?;
        proxy.admin_token = admin_token(draft.admin_token_file.take(), env)?;
        proxy.validate()?;
        if draft.limits.max_header_bytes < MIN_HEADER_BYTES {
            return Err(invalid(MAX_HEADER_BYTES.name, "must be at least 8KiB"));
        }
        let tls = match (draft.tls_cert.take(), draft.tls_key.take()) {
            (Some(cert), Some(key)) => Some(TlsFiles { cert, key }),
            (None, None) => None,
            _ => return Err(invalid("tls", "give both a certificate and a key")),
        };
        Ok(Self {
            listen: draft.listen,
            admin_listen: draft.admin_listen,
            proxy,
            shutdown_grace: draft.shutdown_grace,
            workers: draft.workers.resolve(),
            limits: draft.limits,
            tls,
            store: store(&mut draft, env)?,
            log: draft.log,
        })
    }
}

/// The file's routes, with the one of `--upstream` first (replacing a file
/// route on the same path).
fn routes(
    draft: &Draft,
    path_given: bool,
    file: Vec<FileRoute>,
) -> Result<Vec<RouteConfig>, SettingsError> {
    let mut routes: Vec<RouteConfig> = file
        .into_iter()
        .map(|route| {
            let mut config = route_config(route.path, &route.upstream)?;
            config.budget = route.budget;
            Ok(config)
        })
        .collect::<Result<_, SettingsError>>()?;
    match &draft.upstream {
        Some(upstream) => {
            routes.retain(|route| route.path != draft.path);
            routes.insert(0, route_config(draft.path.clone(), upstream)?);
        }
        None if path_given => return Err(invalid("--path", "needs --upstream")),
        None => {}
    }
    Ok(routes)
}

fn route_config(path: String, upstream: &str) -> Result<RouteConfig, SettingsError> {
    // The message does not quote the URL: it may carry credentials.
    let upstream = upstream
        .parse()
        .map_err(|error| invalid(format!("upstream of {path}"), format!("not a URL: {error}")))?;
    Ok(RouteConfig::new(path, upstream))
}

/// The shared store, with its keys' source; checked.
fn store(draft: &mut Draft, env: &impl Environment) -> Result<StoreSettings, SettingsError> {
    let mut store = draft.store.clone();
    store.keys = match (
        draft.encryption_key_file.take(),
        draft.encryption_key_kms.take(),
    ) {
        (Some(_), Some(_)) => {
            return Err(invalid(
                "encryption key",
                "give a key file or a KMS key file, not both",
            ));
        }
        (Some(path), None) => Some(KeySource::File(path)),
        (None, Some(path)) => Some(KeySource::Kms(path)),
        (None, None) => env.var(ENCRYPTION_KEY_VAR).map(|_| KeySource::Environment),
    };
    store.validate(env)?;
    Ok(store)
}

/// The HMAC key from a file (raw 32 bytes or base64) or the environment
/// (base64); `None` for a random per-process key.
fn hmac_key(
    file: Option<PathBuf>,
    env: &impl Environment,
) -> Result<Option<HmacKey>, SettingsError> {
    let bytes = if let Some(path) = file {
        let raw = std::fs::read(&path)
            .map_err(|error| invalid("hmac-key-file", format!("{}: {error}", path.display())))?;
        if raw.len() == 32 {
            raw
        } else {
            decode_base64_key(String::from_utf8_lossy(&raw).trim(), "hmac-key-file")?
        }
    } else if let Some(text) = env.var(HMAC_KEY_VAR) {
        decode_base64_key(text.trim(), HMAC_KEY_VAR)?
    } else {
        return Ok(None);
    };
    let bytes: [u8; 32] = bytes
        .try_into()
        .map_err(|_| invalid("hmac key", "must be exactly 32 bytes"))?;
    Ok(Some(HmacKey::from_bytes(bytes)))
}

/// The admin token from a file or the environment; `None` leaves the
/// admin API's purges closed.
fn admin_token(
    file: Option<PathBuf>,
    env: &impl Environment,
) -> Result<Option<AdminToken>, SettingsError> {
    let text = match file {
        Some(path) => std::fs::read_to_string(&path)
            .map_err(|error| invalid("admin-token-file", format!("{}: {error}", path.display())))?,
        None => match env.var(ADMIN_TOKEN_VAR) {
            Some(text) => text,
            None => return Ok(None),
        },
    };
    match AdminToken::new(text) {
        Some(token) => Ok(Some(token)),
        None => Err(invalid("admin token", "is empty")),
    }
}

fn decode_base64_key(text: &str, setting: &'static str) -> Result<Vec<u8>, SettingsError> {
    // The message never echoes the value: it is a secret.
    base64::engine::general_purpose::STANDARD
        .decode(text)
        .map_err(|_| invalid(setting, "is not base64 (expected 32 bytes, base64-encoded)"))
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;
    use std::num::NonZero;
    use std::path::Path;

    use clap::Parser;
    use tokencache_core::MinRemaining;

    use super::*;
    use crate::cli::{Cli, Command};
    use crate::settings::value::LogFormat;
    use crate::store::StoreSpec;

    fn serve_args(args: &[&str]) -> ServeArgs {
        let mut argv = vec!["tokencache", "serve"];
        argv.extend_from_slice(args);
        match Cli::try_parse_from(argv).unwrap().command {
            Command::Serve(args) => args,
            other => panic!("{other:?}"),
        }
    }

    fn no_env() -> HashMap<String, String> {
        HashMap::new()
    }

    fn file(text: &str) -> FileConfig {
        FileConfig::parse(text, Path::new("test.toml")).unwrap()
    }

    #[test]
    fn defaults_with_one_upstream() {
        let settings = ServeSettings::resolve(
            serve_args(&["--upstream", "https://idp.example/oauth2/token"]),
            FileConfig::default(),
            &no_env(),
        )
        .unwrap();
        assert_eq!(settings.listen, "127.0.0.1:8080".parse().unwrap());
        assert_eq!(settings.admin_listen, "127.0.0.1:9090".parse().unwrap());
        assert_eq!(settings.proxy.routes.len(), 1);
        assert_eq!(settings.proxy.routes[0].path, "/oauth2/token");
        assert_eq!(settings.proxy.freshness, FreshnessPolicy::default());
        assert_eq!(settings.proxy.cache_max_bytes, 64 << 20);
        assert_eq!(settings.proxy.max_entry_bytes, 64 << 10);
        assert_eq!(settings.shutdown_grace, Duration::from_secs(10));
        assert!(settings.proxy.hmac_key.is_none());
        assert_eq!(
            settings.proxy.resilience,
            tokencache_proxy::ResilienceConfig::default()
        );
        assert_eq!(settings.proxy.load_deadline, Duration::from_secs(15));
        assert_eq!(settings.proxy.negative_ttl, Duration::from_secs(5));
        assert_eq!(settings.limits, Limits::default());
        assert_eq!(
            settings.log,
            LogSettings {
                format: LogFormat::Human,
                filter: "info".into()
            }
        );
        assert_eq!(settings.store.spec, StoreSpec::Memory);
        assert_eq!(settings.store.redis_op_timeout, None);
    }

    #[test]
    fn defaults_are_the_libraries_own() {
        let draft = Draft::default();
        let proxy = ProxyConfig::new(Vec::new());
        assert_eq!(draft.proxy.cache_max_bytes, proxy.cache_max_bytes);
        assert_eq!(
            draft.proxy.max_entry_bytes,
            tokencache_memory_store::DEFAULT_MAX_ENTRY_BYTES
        );
        assert_eq!(draft.max_ttl, tokencache_core::DEFAULT_MAX_TTL);
        let freshness = FreshnessPolicy::default();
        assert_eq!(
            (draft.refresh_at, draft.min_remaining),
            (freshness.refresh_at(), freshness.min_remaining())
        );
        assert_eq!(
            Backoff::new(draft.retry_base, draft.retry_cap, draft.retry_attempts),
            tokencache_proxy::ResilienceConfig::default().backoff
        );
        assert_eq!(draft.limits, Limits::default());
        assert_eq!(draft.store.prefix, tokencache_redis_store::DEFAULT_PREFIX);
    }

    #[test]
    fn file_routes_and_flag_precedence() {
        let config = file(
            r#"
            listen = "127.0.0.1:7000"
            refresh_at = 0.5
            min_remaining = "2m"
            cache_max_bytes = "1MiB"
            max_entry_bytes = "8KiB"
            max_ttl = "12h"
            shutdown_grace = "3s"
            load_deadline = "20s"
            [upstream]
            request_timeout = "4s"
            retry_attempts = 2
            retry_base = "50ms"
            budget_rate = 10.0
            budget_burst = 3
            breaker_threshold = 0
            [[routes]]
            path = "/pool-a/oauth2/token"
            upstream = "https://a.example/oauth2/token"
            [[routes]]
            path = "/pool-b/oauth2/token"
            upstream = "https://b.example/oauth2/token"
            "#,
        );
        let settings = ServeSettings::resolve(
            serve_args(&[
                "--listen",
                "127.0.0.1:7001",
                "--refresh-at",
                "0.6",
                "--budget-rate",
                "40",
                "--negative-ttl",
                "0s",
            ]),
            config,
            &no_env(),
        )
        .unwrap();
        assert_eq!(settings.listen, "127.0.0.1:7001".parse().unwrap());
        let paths: Vec<_> = settings
            .proxy
            .routes
            .iter()
            .map(|r| r.path.as_str())
            .collect();
        assert_eq!(paths, ["/pool-a/oauth2/token", "/pool-b/oauth2/token"]);
        assert!((settings.proxy.freshness.refresh_at() - 0.6).abs() < f64::EPSILON);
        assert_eq!(
            settings.proxy.freshness.min_remaining(),
            MinRemaining::Duration(Duration::from_secs(120))
        );
        assert_eq!(settings.proxy.cache_max_bytes, 1 << 20);
        assert_eq!(settings.proxy.max_entry_bytes, 8 << 10);
        assert_eq!(
            settings.proxy.freshness.max_ttl(),
            Duration::from_secs(12 * 3600)
        );
        assert_eq!(
            settings.proxy.upstream.request_timeout,
            Duration::from_secs(4)
        );
        assert_eq!(settings.shutdown_grace, Duration::from_secs(3));
        let resilience = settings.proxy.resilience;
        assert_eq!(resilience.backoff.max_attempts(), 2);
        assert_eq!(resilience.backoff.base(), Duration::from_millis(50));
        assert_eq!(resilience.backoff.cap(), Duration::from_secs(5));
        assert!((resilience.budget.rate_per_sec - 40.0).abs() < f64::EPSILON);
        assert_eq!(resilience.budget.burst, 3);
        assert_eq!(resilience.breaker.failure_threshold, 0);
        assert_eq!(settings.proxy.load_deadline, Duration::from_secs(20));
        assert_eq!(settings.proxy.negative_ttl, Duration::ZERO);
    }

    #[test]
    fn flag_route_replaces_file_route_on_same_path() {
        let config = file(
            r#"
            [[routes]]
            path = "/oauth2/token"
            upstream = "https://file.example/oauth2/token"
            "#,
        );
        let settings = ServeSettings::resolve(
            serve_args(&["--upstream", "https://flag.example/oauth2/token"]),
            config,
            &no_env(),
        )
        .unwrap();
        assert_eq!(settings.proxy.routes.len(), 1);
        assert_eq!(
            settings.proxy.routes[0].upstream.host_str(),
            Some("flag.example")
        );
    }

    #[test]
    fn routes_join_named_budget_groups() {
        let config = file(
            r#"
            [[routes]]
            path = "/a"
            upstream = "https://a.example/oauth2/token"
            budget = "account"

            [[routes]]
            path = "/b"
            upstream = "https://b.example/oauth2/token"

            [budgets.account]
            rate = 40
            burst = 10
            "#,
        );
        let settings =
            ServeSettings::resolve(serve_args(&["--budget-replicas", "3"]), config, &no_env())
                .unwrap();
        let proxy = &settings.proxy;
        assert_eq!(proxy.routes[0].budget_group(), "account");
        assert_eq!(proxy.routes[1].budget_group(), "b.example");
        let account = proxy.budgets["account"];
        assert!((account.rate_per_sec - 40.0).abs() < f64::EPSILON);
        assert_eq!(account.burst, 10);
        assert_eq!(proxy.budget_replicas.map(NonZero::get), Some(3));
        // A group nobody declared, a burst of 0, a rate that is no rate.
        for bad in [
            "[[routes]]\npath = \"/a\"\nupstream = \"https://a/\"\nbudget = \"nope\"",
            "[budgets.g]\nrate = 1\nburst = 0",
            "[budgets.g]\nrate = -1",
            "[budgets.g]\nrat = 1",
        ] {
            let refused = FileConfig::parse(bad, Path::new("t.toml")).map_or(true, |file| {
                ServeSettings::resolve(serve_args(&[]), file, &no_env()).is_err()
            });
            assert!(refused, "{bad}");
        }
    }

    #[test]
    fn connection_limits_from_flags_and_file() {
        let upstream = ["--upstream", "https://idp.example/t"];
        let defaults =
            ServeSettings::resolve(serve_args(&upstream), FileConfig::default(), &no_env())
                .unwrap();
        assert_eq!(defaults.limits, Limits::default());

        let config = file(
            r#"
            [server]
            max_connections_per_ip = 0
            idle_timeout = "90s"
            max_concurrent_streams = 20
            "#,
        );
        let args = serve_args(&[&upstream[..], &["--idle-timeout", "15s"]].concat());
        let limits = ServeSettings::resolve(args, config, &no_env())
            .unwrap()
            .limits;
        assert_eq!(limits.max_connections_per_ip, 0, "0: no per-address limit");
        assert_eq!(
            limits.idle_timeout,
            Duration::from_secs(15),
            "the flag wins"
        );
        assert_eq!(limits.max_concurrent_streams, 20);

        for (flag, value) in [
            ("--max-concurrent-streams", "0"),
            ("--idle-timeout", "0s"),
            ("--header-read-timeout", "0s"),
        ] {
            let args = serve_args(&[&upstream[..], &[flag, value]].concat());
            let error = ServeSettings::resolve(args, FileConfig::default(), &no_env()).unwrap_err();
            assert!(error.to_string().contains(&flag[2..]), "{flag}: {error}");
        }
    }

    #[test]
    fn old_file_keys_still_read() {
        let upstream = serve_args(&["--upstream", "https://idp.example/t"]);
        let settings = ServeSettings::resolve(
            upstream.clone(),
            file(
                r#"
                [server]
                request_timeout = "7s"
                [store]
                prefix = "old:"
                "#,
            ),
            &no_env(),
        )
        .unwrap();
        assert_eq!(settings.limits.request_timeout, Duration::from_secs(7));
        assert_eq!(settings.store.prefix, "old:");
        let settings = ServeSettings::resolve(
            upstream,
            file(
                r#"
                [server]
                client_request_timeout = "8s"
                [store]
                redis_prefix = "new:"
                "#,
            ),
            &no_env(),
        )
        .unwrap();
        assert_eq!(settings.limits.request_timeout, Duration::from_secs(8));
        assert_eq!(settings.store.prefix, "new:");
        let both = "[store]\nprefix = \"a:\"\nredis_prefix = \"b:\"\n";
        let error = FileConfig::parse(both, Path::new("x.toml")).unwrap_err();
        assert!(error.to_string().contains("twice"), "{error}");
    }

    #[test]
    fn hmac_key_from_environment() {
        let mut env = no_env();
        env.insert(
            HMAC_KEY_VAR.into(),
            base64::engine::general_purpose::STANDARD.encode([7u8; 32]),
        );
        let settings = ServeSettings::resolve(
            serve_args(&["--upstream", "https://idp.example/t"]),
            FileConfig::default(),
            &env,
        )
        .unwrap();
        assert_eq!(settings.proxy.hmac_key.unwrap().secret(), &[7u8; 32]);
        env.insert(HMAC_KEY_VAR.into(), "c2hvcnQ=".into());
        let error = ServeSettings::resolve(
            serve_args(&["--upstream", "https://idp.example/t"]),
            FileConfig::default(),
            &env,
        )
        .unwrap_err();
        assert!(error.to_string().contains("32 bytes"), "{error}");
        assert!(!error.to_string().contains("c2hvcnQ"));
    }

    #[test]
    fn rust_log_is_the_filter_unless_a_setting_gives_one() {
        let upstream = ["--upstream", "https://idp.example/t"];
        let filter = |args: &[&str], file_text: &str, rust_log: Option<&str>| {
            let mut env = no_env();
            if let Some(rust_log) = rust_log {
                env.insert("RUST_LOG".into(), rust_log.into());
            }
            let mut argv = upstream.to_vec();
            argv.extend_from_slice(args);
            ServeSettings::resolve(serve_args(&argv), file(file_text), &env)
                .unwrap()
                .log
                .filter
        };
        assert_eq!(filter(&[], "", None), "info");
        assert_eq!(
            filter(&[], "", Some("tokencache_proxy=debug")),
            "tokencache_proxy=debug"
        );
        assert_eq!(
            filter(&[], "", Some(" ")),
            "info",
            "a blank RUST_LOG is unset"
        );
        assert_eq!(filter(&["--log", "warn"], "", Some("debug")), "warn");
        assert_eq!(filter(&[], "log = \"error\"", Some("debug")), "error");
    }

    #[test]
    fn shared_store_settings() {
        let key = base64::engine::general_purpose::STANDARD.encode([5u8; 32]);
        let mut env = no_env();
        env.insert(ENCRYPTION_KEY_VAR.into(), key);
        let settings = ServeSettings::resolve(
            serve_args(&[
                "--upstream",
                "https://idp.example/t",
                "--store",
                "redis://127.0.0.1:6379",
                "--l1-ttl",
                "10s",
            ]),
            FileConfig::default(),
            &env,
        )
        .unwrap();
        assert_eq!(
            settings.store.spec,
            StoreSpec::Redis("redis://127.0.0.1:6379".into())
        );
        assert_eq!(settings.store.keys, Some(KeySource::Environment));
        assert_eq!(settings.store.l1_ttl, Duration::from_secs(10));
        assert_eq!(
            settings.store.redis_op_timeout, None,
            "Redis keeps its own bound unless --store-timeout is given"
        );
        // Without a key, a shared store refuses to start.
        let error = ServeSettings::resolve(
            serve_args(&[
                "--upstream",
                "https://idp.example/t",
                "--store",
                "dynamodb://t",
            ]),
            FileConfig::default(),
            &no_env(),
        )
        .unwrap_err();
        assert!(error.to_string().contains("encryption key"), "{error}");
        let from_file = file(
            r#"
            [store]
            url = "dynamodb://tokens"
            encryption_key_file = "/etc/tokencache/keys"
            timeout = "200ms"
            "#,
        );
        let settings = ServeSettings::resolve(
            serve_args(&["--upstream", "https://idp.example/t"]),
            from_file,
            &no_env(),
        )
        .unwrap();
        assert_eq!(settings.store.spec, StoreSpec::DynamoDb("tokens".into()));
        assert_eq!(settings.store.op_timeout, Duration::from_millis(200));
        assert_eq!(
            settings.store.redis_op_timeout,
            Some(Duration::from_millis(200))
        );
    }

    #[test]
    fn admin_token_from_environment() {
        let mut env = no_env();
        env.insert(ADMIN_TOKEN_VAR.into(), "admin-s3cret\n".into());
        let settings = ServeSettings::resolve(
            serve_args(&["--upstream", "https://idp.example/t"]),
            FileConfig::default(),
            &env,
        )
        .unwrap();
        let token = settings.proxy.admin_token.unwrap();
        assert!(token.admits(Some(b"Bearer admin-s3cret")));
        env.insert(ADMIN_TOKEN_VAR.into(), " ".into());
        assert!(
            ServeSettings::resolve(
                serve_args(&["--upstream", "https://idp.example/t"]),
                FileConfig::default(),
                &env,
            )
            .is_err()
        );
    }

    #[test]
    fn rejections() {
        let cases: &[(&[&str], &str)] = &[
            (&[], "no route"),
            (&["--path", "/x"], "needs --upstream"),
            (&["--upstream", "not a url"], "not a URL"),
            (
                &["--upstream", "https://i/t", "--refresh-at", "1.5"],
                "refresh-at",
            ),
            (
                &["--upstream", "https://i/t", "--min-remaining", "lots"],
                "min-remaining",
            ),
            (
                &["--upstream", "https://i/t", "--cache-max-bytes", "12XB"],
                "cache-max-bytes",
            ),
            (
                &["--upstream", "https://i/t", "--retry-attempts", "0"],
                "retry-attempts",
            ),
            (
                &["--upstream", "https://i/t", "--budget-burst", "0"],
                "budget-burst",
            ),
            (
                &["--upstream", "https://i/t", "--listen", "nowhere"],
                "--listen",
            ),
            (
                &["--upstream", "https://i/t", "--max-header-bytes", "1KiB"],
                "max-header-bytes",
            ),
            (&["--upstream", "https://i/t", "--tls-cert", "c.pem"], "tls"),
            (
                &[
                    "--upstream",
                    "https://i/t",
                    "--encryption-key-file",
                    "a",
                    "--encryption-key-kms",
                    "b",
                ],
                "not both",
            ),
            (
                &["--upstream", "https://i/t", "--store", "redis://:hunter2@"],
                "--store",
            ),
        ];
        for (args, expected) in cases {
            let error = ServeSettings::resolve(serve_args(args), FileConfig::default(), &no_env())
                .unwrap_err();
            let message = error.to_string();
            assert!(message.contains(expected), "{args:?}: {message}");
            assert!(!message.contains("hunter2"), "{message}");
        }
        for bad in [
            "listen = 5",
            "unknown_setting = 1",
            "[server]\nlisten = \"127.0.0.1:1\"",
            "[upstream]\nretry_attempts = 0",
            "max_ttl = true",
            "[[routes]]\npath = \"/t\"",
        ] {
            let error = FileConfig::parse(bad, Path::new("x.toml")).unwrap_err();
            assert!(error.to_string().contains("x.toml"), "{bad}: {error}");
        }
    }
}
