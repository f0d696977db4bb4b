//! Resolving `serve`'s settings: flag, then environment variable, then
//! config file, then default.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use base64::Engine as _;
use serde::Deserialize;
use tokencache_core::{Backoff, FreshnessPolicy, HmacKey, MinRemaining};
use tokencache_proxy::{AdminToken, Limits, ProxyConfig, RouteConfig, TlsFiles};

use crate::cli::{LogArgs, LogFormat, ServeArgs};
use crate::store::{ENCRYPTION_KEY_VAR, KeySource, StoreSettings, StoreSpec};

/// The environment variable holding the cache-key HMAC key (base64).
pub const HMAC_KEY_VAR: &str = "TOKENCACHE_HMAC_KEY";

/// The environment variable holding the admin API's bearer token.
pub const ADMIN_TOKEN_VAR: &str = "TOKENCACHE_ADMIN_TOKEN";

/// Reads environment variables; tests pass a map instead of touching the
/// process environment.
pub trait Environment {
    /// The variable's value, if set and Unicode.
    fn var(&self, name: &str) -> Option<String>;
}

/// The process environment.
#[derive(Debug, Clone, Copy)]
pub struct ProcessEnvironment;

impl Environment for ProcessEnvironment {
    fn var(&self, name: &str) -> Option<String> {
        std::env::var(name).ok()
    }
}

impl Environment for HashMap<String, String> {
    fn var(&self, name: &str) -> Option<String> {
        self.get(name).cloned()
    }
}

/// A configuration `serve` cannot start with (exit code 64).
#[derive(Debug, thiserror::Error)]
pub enum SettingsError {
    /// The config file could not be read.
    #[error("reading config file {path}: {source}")]
    ReadFile {
        /// The file.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// The config file is not valid.
    #[error("config file {path}: {message}")]
    ParseFile {
        /// The file.
        path: PathBuf,
        /// What is wrong, with its place.
        message: String,
    },
    /// A setting has an unusable value.
    #[error("{setting}: {message}")]
    Invalid {
        /// The setting's name.
        setting: &'static str,
        /// What is wrong.
        message: String,
    },
    /// The proxy rejected the assembled configuration.
    #[error(transparent)]
    Proxy(#[from] tokencache_proxy::ConfigError),
}

fn invalid(setting: &'static str, message: impl Into<String>) -> SettingsError {
    SettingsError::Invalid {
        setting,
        message: message.into(),
    }
}

/// The config file (`--config`), every field optional.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FileConfig {
    listen: Option<SocketAddr>,
    admin_listen: Option<SocketAddr>,
    refresh_at: Option<f64>,
    min_remaining: Option<String>,
    cache_max_bytes: Option<ByteSize>,
    max_body_bytes: Option<ByteSize>,
    hmac_key_file: Option<PathBuf>,
    admin_token_file: Option<PathBuf>,
    shutdown_grace: Option<String>,
    load_deadline: Option<String>,
    negative_ttl: Option<String>,
    #[serde(default)]
    server: FileServer,
    #[serde(default)]
    store: FileStore,
    log_format: Option<LogFormat>,
    log: Option<String>,
    #[serde(default)]
    upstream: FileUpstream,
    #[serde(default)]
    routes: Vec<FileRoute>,
}

/// `[upstream]`: how token endpoints are reached.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct FileUpstream {
    connect_timeout: Option<String>,
    request_timeout: Option<String>,
    ca_file: Option<PathBuf>,
    retry_attempts: Option<u32>,
    retry_base: Option<String>,
    retry_cap: Option<String>,
    budget_rate: Option<f64>,
    budget_burst: Option<u32>,
    breaker_threshold: Option<u32>,
    breaker_cool_down: Option<String>,
}

/// `[server]`: TLS and the limits of the token listener.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct FileServer {
    tls_cert: Option<PathBuf>,
    tls_key: Option<PathBuf>,
    max_connections: Option<usize>,
    header_read_timeout: Option<String>,
    request_timeout: Option<String>,
    max_header_bytes: Option<ByteSize>,
    max_headers: Option<usize>,
}

/// `[store]`: the shared store and its keys.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct FileStore {
    url: Option<String>,
    ca_file: Option<PathBuf>,
    prefix: Option<String>,
    encryption_key_file: Option<PathBuf>,
    encryption_key_kms: Option<PathBuf>,
    l1_ttl: Option<String>,
    timeout: Option<String>,
}

/// `[[routes]]`: a path and the token endpoint behind it.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct FileRoute {
    path: String,
    upstream: String,
}

/// A size written as a number of bytes or a string with a unit.
#[derive(Debug, Deserialize)]
#[serde(untagged)]
enum ByteSize {
    Bytes(u64),
    Text(String),
}

impl FileConfig {
    /// Reads and parses a config file.
    ///
    /// # Errors
    /// [`SettingsError`] when it cannot be read or is not valid.
    pub fn load(path: &Path) -> Result<Self, SettingsError> {
        let text = std::fs::read_to_string(path).map_err(|source| SettingsError::ReadFile {
            path: path.to_owned(),
            source,
        })?;
        Self::parse(&text, path)
    }

    fn parse(text: &str, path: &Path) -> Result<Self, SettingsError> {
        toml::from_str(text).map_err(|error| SettingsError::ParseFile {
            path: path.to_owned(),
            message: error.to_string(),
        })
    }
}

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
    /// Limits of the token listener.
    pub limits: Limits,
    /// HTTPS certificate and key.
    pub tls: Option<TlsFiles>,
    /// The shared store, if any.
    pub store: StoreSettings,
    /// Logging.
    pub log: LogArgs,
}

impl ServeSettings {
    /// Merges flags (with their environment variables, which clap has
    /// read), the config file and defaults.
    ///
    /// # Errors
    /// [`SettingsError`] for the first unusable setting.
    pub fn resolve(
        args: ServeArgs,
        file: FileConfig,
        env: &impl Environment,
    ) -> Result<Self, SettingsError> {
        let mut routes: Vec<RouteConfig> = file
            .routes
            .into_iter()
            .map(|route| route_config(route.path, &route.upstream))
            .collect::<Result<_, _>>()?;
        if let Some(upstream) = &args.upstream {
            let path = args.path.clone().unwrap_or_else(|| "/oauth2/token".into());
            // The flag's route replaces a file route on the same path.
            routes.retain(|route| route.path != path);
            routes.insert(0, route_config(path, upstream)?);
        } else if args.path.is_some() {
            return Err(invalid("--path", "needs --upstream"));
        }

        let refresh_at = args.refresh_at.or(file.refresh_at).unwrap_or(0.75);
        let min_remaining = match args
            .min_remaining
            .as_deref()
            .or(file.min_remaining.as_deref())
        {
            Some(text) => parse_min_remaining(text)?,
            None => MinRemaining::Fraction(0.10),
        };
        let freshness = FreshnessPolicy::new(refresh_at, min_remaining)
            .map_err(|error| invalid("refresh-at/min-remaining", error.to_string()))?;

        let mut proxy = ProxyConfig::new(routes);
        proxy.freshness = freshness;
        resolve_resilience(&mut proxy, &args, &file.upstream)?;
        let limits = resolve_limits(&args, &file.server)?;
        let store = resolve_store(&args, &file.store, env)?;
        let tls = match (
            args.tls_cert.clone().or(file.server.tls_cert),
            args.tls_key.clone().or(file.server.tls_key),
        ) {
            (Some(cert), Some(key)) => Some(TlsFiles { cert, key }),
            (None, None) => None,
            _ => return Err(invalid("tls", "give both a certificate and a key")),
        };

        if let Some(size) = args
            .cache_max_bytes
            .map(ByteSize::Text)
            .or(file.cache_max_bytes)
        {
            proxy.cache_max_bytes = size.bytes("cache-max-bytes")?;
        }
        if let Some(size) = args
            .max_body_bytes
            .map(ByteSize::Text)
            .or(file.max_body_bytes)
        {
            proxy.max_body_bytes = size.bytes("max-body-bytes")?;
        }
        proxy.hmac_key = hmac_key(args.hmac_key_file.or(file.hmac_key_file), env)?;
        proxy.admin_token = admin_token(args.admin_token_file.or(file.admin_token_file), env)?;
        if let Some(timeout) = duration_setting(
            "connect-timeout",
            args.connect_timeout,
            file.upstream.connect_timeout,
        )? {
            proxy.upstream.connect_timeout = timeout;
        }
        if let Some(timeout) = duration_setting(
            "request-timeout",
            args.request_timeout,
            file.upstream.request_timeout,
        )? {
            proxy.upstream.request_timeout = timeout;
        }
        proxy.upstream.ca_file = args.ca_file.or(file.upstream.ca_file);
        if let Some(deadline) =
            duration_setting("load-deadline", args.load_deadline, file.load_deadline)?
        {
            proxy.load_deadline = deadline;
        }
        if let Some(ttl) = duration_setting("negative-ttl", args.negative_ttl, file.negative_ttl)? {
            proxy.negative_ttl = ttl;
        }
        proxy.validate()?;

        Ok(Self {
            limits,
            tls,
            store,
            listen: args
                .listen
                .or(file.listen)
                .unwrap_or_else(|| SocketAddr::from(([127, 0, 0, 1], 8080))),
            admin_listen: args
                .admin_listen
                .or(file.admin_listen)
                .unwrap_or_else(|| SocketAddr::from(([127, 0, 0, 1], 9090))),
            proxy,
            shutdown_grace: duration_setting(
                "shutdown-grace",
                args.shutdown_grace,
                file.shutdown_grace,
            )?
            .unwrap_or(Duration::from_secs(10)),
            log: LogArgs {
                log_format: args.log.log_format.or(file.log_format),
                log: args.log.log.or(file.log),
            },
        })
    }
}

/// The shared store: flag, then `[store]` in the file.
fn resolve_store(
    args: &ServeArgs,
    file: &FileStore,
    env: &impl Environment,
) -> Result<StoreSettings, SettingsError> {
    let spec = match args.store.as_deref().or(file.url.as_deref()) {
        Some(text) => StoreSpec::parse(text)?,
        None => StoreSpec::Memory,
    };
    let keys = match (
        args.encryption_key_file
            .clone()
            .or(file.encryption_key_file.clone()),
        args.encryption_key_kms
            .clone()
            .or(file.encryption_key_kms.clone()),
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
    let settings = StoreSettings {
        spec,
        keys,
        ca_file: args.store_ca_file.clone().or(file.ca_file.clone()),
        prefix: args.redis_prefix.clone().or(file.prefix.clone()),
        l1_ttl: duration_setting("l1-ttl", args.l1_ttl, file.l1_ttl.clone())?
            .unwrap_or(Duration::from_secs(30)),
        op_timeout: duration_setting("store-timeout", args.store_timeout, file.timeout.clone())?
            .unwrap_or(Duration::from_millis(500)),
    };
    settings.validate(env)?;
    Ok(settings)
}

/// Limits of the token listener: flag, then `[server]` in the file.
fn resolve_limits(args: &ServeArgs, file: &FileServer) -> Result<Limits, SettingsError> {
    let mut limits = Limits::default();
    if let Some(max) = args.max_connections.or(file.max_connections) {
        if max == 0 {
            return Err(invalid("max-connections", "must be at least 1"));
        }
        limits.max_connections = max;
    }
    if let Some(timeout) = duration_setting(
        "header-read-timeout",
        args.header_read_timeout,
        file.header_read_timeout.clone(),
    )? {
        limits.header_read_timeout = timeout;
    }
    if let Some(timeout) = duration_setting(
        "client-request-timeout",
        args.client_request_timeout,
        file.request_timeout.clone(),
    )? {
        limits.request_timeout = timeout;
    }
    let header_bytes = match (&args.max_header_bytes, &file.max_header_bytes) {
        (Some(text), _) => Some(ByteSize::Text(text.clone()).bytes("max-header-bytes")?),
        (None, Some(ByteSize::Bytes(n))) => Some(usize::try_from(*n).unwrap_or(usize::MAX)),
        (None, Some(ByteSize::Text(text))) => {
            Some(ByteSize::Text(text.clone()).bytes("max-header-bytes")?)
        }
        (None, None) => None,
    };
    if let Some(bytes) = header_bytes {
        if bytes < 8192 {
            return Err(invalid("max-header-bytes", "must be at least 8KiB"));
        }
        limits.max_header_bytes = bytes;
    }
    if let Some(max) = args.max_headers.or(file.max_headers) {
        limits.max_headers = max.max(1);
    }
    Ok(limits)
}

/// Retries, budget and breaker: flag, then `[upstream]` in the file.
fn resolve_resilience(
    proxy: &mut ProxyConfig,
    args: &ServeArgs,
    file: &FileUpstream,
) -> Result<(), SettingsError> {
    let defaults = proxy.resilience.backoff;
    let base = duration_setting("retry-base", args.retry_base, file.retry_base.clone())?
        .unwrap_or(defaults.base());
    let cap = duration_setting("retry-cap", args.retry_cap, file.retry_cap.clone())?
        .unwrap_or(defaults.cap());
    let attempts = args
        .retry_attempts
        .or(file.retry_attempts)
        .unwrap_or(defaults.max_attempts());
    if attempts == 0 {
        return Err(invalid(
            "retry-attempts",
            "must be at least 1 (the first attempt)",
        ));
    }
    proxy.resilience.backoff = Backoff::new(base, cap, attempts);
    if let Some(rate) = args.budget_rate.or(file.budget_rate) {
        if !(rate.is_finite() && rate >= 0.0) {
            return Err(invalid(
                "budget-rate",
                "must be a non-negative number (0: unlimited)",
            ));
        }
        proxy.resilience.budget.rate_per_sec = rate;
    }
    if let Some(burst) = args.budget_burst.or(file.budget_burst) {
        if burst == 0 {
            return Err(invalid("budget-burst", "must be at least 1"));
        }
        proxy.resilience.budget.burst = burst;
    }
    if let Some(threshold) = args.breaker_threshold.or(file.breaker_threshold) {
        proxy.resilience.breaker.failure_threshold = threshold;
    }
    if let Some(cool_down) = duration_setting(
        "breaker-cool-down",
        args.breaker_cool_down,
        file.breaker_cool_down.clone(),
    )? {
        proxy.resilience.breaker.cool_down = cool_down;
    }
    Ok(())
}

fn route_config(path: String, upstream: &str) -> Result<RouteConfig, SettingsError> {
    let upstream = upstream
        .parse()
        .map_err(|error| invalid("upstream", format!("`{upstream}` is not a URL: {error}")))?;
    Ok(RouteConfig { path, upstream })
}

fn duration_setting(
    setting: &'static str,
    flag: Option<humantime::Duration>,
    file: Option<String>,
) -> Result<Option<Duration>, SettingsError> {
    if let Some(duration) = flag {
        return Ok(Some(duration.into()));
    }
    file.map(|text| {
        humantime::parse_duration(&text)
            .map_err(|error| invalid(setting, format!("`{text}`: {error}")))
    })
    .transpose()
}

/// `10%` or a duration such as `30s`.
fn parse_min_remaining(text: &str) -> Result<MinRemaining, SettingsError> {
    let text = text.trim();
    if let Some(percent) = text.strip_suffix('%') {
        let value: f64 = percent
            .trim()
            .parse()
            .map_err(|_| invalid("min-remaining", format!("`{text}` is not a percentage")))?;
        return Ok(MinRemaining::Fraction(value / 100.0));
    }
    humantime::parse_duration(text)
        .map(MinRemaining::Duration)
        .map_err(|_| {
            invalid(
                "min-remaining",
                format!("`{text}` is neither a percentage (10%) nor a duration (30s)"),
            )
        })
}

impl ByteSize {
    fn bytes(self, setting: &'static str) -> Result<usize, SettingsError> {
        let bytes = match self {
            Self::Bytes(bytes) => bytes,
            Self::Text(text) => parse_byte_size(&text)
                .ok_or_else(|| invalid(setting, format!("`{text}` is not a size such as 64MiB")))?,
        };
        usize::try_from(bytes).map_err(|_| invalid(setting, "too large"))
    }
}

/// `1048576`, `512KiB`, `64MiB`, `1GiB` (also `K`, `M`, `G`, `KB`, `MB`,
/// `GB` as powers of 1024, which is what a memory budget means).
fn parse_byte_size(text: &str) -> Option<u64> {
    let text = text.trim();
    let split = text
        .find(|c: char| !c.is_ascii_digit())
        .unwrap_or(text.len());
    let (number, unit) = text.split_at(split);
    let number: u64 = number.parse().ok()?;
    let shift = match unit.trim().to_ascii_lowercase().as_str() {
        "" | "b" => 0,
        "k" | "kb" | "kib" => 10,
        "m" | "mb" | "mib" => 20,
        "g" | "gb" | "gib" => 30,
        _ => return None,
    };
    number.checked_mul(1 << shift)
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
    use super::*;
    use clap::Parser;

    use crate::cli::{Cli, Command};

    fn serve_args(args: &[&str]) -> ServeArgs {
        let mut argv = vec!["tokencache", "serve"];
        argv.extend_from_slice(args);
        match Cli::try_parse_from(argv).unwrap().command {
            Command::Serve(args) => *args,
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
        assert_eq!(settings.shutdown_grace, Duration::from_secs(10));
        assert!(settings.proxy.hmac_key.is_none());
        assert_eq!(
            settings.proxy.resilience,
            tokencache_proxy::ResilienceConfig::default()
        );
        assert_eq!(settings.proxy.load_deadline, Duration::from_secs(15));
        assert_eq!(settings.proxy.negative_ttl, Duration::from_secs(5));
    }

    #[test]
    fn file_routes_and_flag_precedence() {
        let config = file(
            r#"
            listen = "127.0.0.1:7000"
            refresh_at = 0.5
            min_remaining = "2m"
            cache_max_bytes = "1MiB"
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
        let cases: [(&[&str], &str); 8] = [
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
        ];
        for (args, expected) in cases {
            let error = ServeSettings::resolve(serve_args(args), FileConfig::default(), &no_env())
                .unwrap_err();
            assert!(error.to_string().contains(expected), "{args:?}: {error}");
        }
        assert!(FileConfig::parse("listen = 5", Path::new("x.toml")).is_err());
        assert!(FileConfig::parse("unknown_setting = 1", Path::new("x.toml")).is_err());
    }

    #[test]
    fn byte_sizes() {
        assert_eq!(parse_byte_size("1024"), Some(1024));
        assert_eq!(parse_byte_size("16KiB"), Some(16 << 10));
        assert_eq!(parse_byte_size("64 MiB"), Some(64 << 20));
        assert_eq!(parse_byte_size("1g"), Some(1 << 30));
        assert_eq!(parse_byte_size("MiB"), None);
        assert_eq!(parse_byte_size("-1"), None);
    }

    #[test]
    fn min_remaining_forms() {
        assert_eq!(
            parse_min_remaining("10%").unwrap(),
            MinRemaining::Fraction(0.1)
        );
        assert_eq!(
            parse_min_remaining("90s").unwrap(),
            MinRemaining::Duration(Duration::from_secs(90))
        );
    }
}
