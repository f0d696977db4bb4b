//! What `serve` will run with, while the layers are laid on: every field
//! starts at its default, and each given setting overwrites its field.

use std::net::{Ipv4Addr, SocketAddr};
use std::path::PathBuf;
use std::time::Duration;

use tokencache_core::MinRemaining;
use tokencache_proxy::{BudgetConfig, CognitoIdpConfig, Limits, ProxyConfig};

use crate::environment::Environment;
use crate::settings::value::{LogFormat, WorkerThreads};
use crate::store::StoreSettings;

/// How logs are written.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LogSettings {
    /// Human lines or JSON.
    pub format: LogFormat,
    /// A `tracing` filter.
    pub filter: String,
}

/// Every setting's value, before the parts that must agree are checked
/// together and assembled. Where a library has a configuration struct, the
/// draft holds that struct, so its defaults are the library's own.
#[derive(Debug, Clone)]
pub struct Draft {
    /// The config file.
    pub config: Option<PathBuf>,
    /// The token listener.
    pub listen: SocketAddr,
    /// The admin listener.
    pub admin_listen: SocketAddr,
    /// The upstream of the route given by flag or variable.
    pub upstream: Option<String>,
    /// The path of that route.
    pub path: String,
    /// The upstream of Cognito's native API, given by flag or variable.
    pub cognito_idp_upstream: Option<String>,
    /// Whether cached native answers leave out `RefreshToken`.
    pub cognito_strip_refresh_token: bool,
    /// The native API's request budget.
    pub cognito_budget: BudgetConfig,
    /// Parts of the freshness policy, which checks them together.
    pub refresh_at: f64,
    /// See [`Draft::refresh_at`].
    pub min_remaining: MinRemaining,
    /// See [`Draft::refresh_at`].
    pub max_ttl: Duration,
    /// Parts of the retry backoff, which is built from all three.
    pub retry_attempts: u32,
    /// See [`Draft::retry_attempts`].
    pub retry_base: Duration,
    /// See [`Draft::retry_attempts`].
    pub retry_cap: Duration,
    /// The proxy; routes, keys and the freshness policy come later.
    pub proxy: ProxyConfig,
    /// Limits of the token listener.
    pub limits: Limits,
    /// The file of the cache-key HMAC key.
    pub hmac_key_file: Option<PathBuf>,
    /// The file of the admin API's token.
    pub admin_token_file: Option<PathBuf>,
    /// HTTPS certificate chain.
    pub tls_cert: Option<PathBuf>,
    /// HTTPS private key.
    pub tls_key: Option<PathBuf>,
    /// The shared store; its keys' source comes later.
    pub store: StoreSettings,
    /// A file of encryption keys.
    pub encryption_key_file: Option<PathBuf>,
    /// A file of KMS-encrypted encryption keys.
    pub encryption_key_kms: Option<PathBuf>,
    /// Drain time on shutdown.
    pub shutdown_grace: Duration,
    /// Threads serving the token listener.
    pub workers: WorkerThreads,
    /// Logging.
    pub log: LogSettings,
}

impl Draft {
    /// The defaults, with what the environment says in place of the
    /// binary's own where a convention beyond tokencache's names exists:
    /// the log filter is `RUST_LOG` when set (Rust's usual variable, read
    /// only when `--log`, `TOKENCACHE_LOG` and the file's `log` are not
    /// given, as each of those overwrites it).
    pub fn from_environment(env: &impl Environment) -> Self {
        let mut draft = Self::default();
        if let Some(filter) = env
            .var("RUST_LOG")
            .filter(|filter| !filter.trim().is_empty())
        {
            draft.log.filter = filter;
        }
        draft
    }
}

impl Default for Draft {
    /// The libraries' defaults, and the binary's own for what only the
    /// binary has (listeners, shutdown, logging).
    fn default() -> Self {
        let proxy = ProxyConfig::new(Vec::new());
        let freshness = proxy.freshness;
        let backoff = proxy.resilience.backoff;
        Self {
            config: None,
            // Loopback: nothing is exposed until the user says so.
            listen: SocketAddr::from((Ipv4Addr::LOCALHOST, 8080)),
            admin_listen: SocketAddr::from((Ipv4Addr::LOCALHOST, 9090)),
            upstream: None,
            // Cognito's path, so that apps change only the host.
            path: "/oauth2/token".to_owned(),
            cognito_idp_upstream: None,
            cognito_strip_refresh_token: false,
            cognito_budget: CognitoIdpConfig::DEFAULT_BUDGET,
            refresh_at: freshness.refresh_at(),
            min_remaining: freshness.min_remaining(),
            max_ttl: freshness.max_ttl(),
            retry_attempts: backoff.max_attempts(),
            retry_base: backoff.base(),
            retry_cap: backoff.cap(),
            proxy,
            limits: Limits::default(),
            hmac_key_file: None,
            admin_token_file: None,
            tls_cert: None,
            tls_key: None,
            store: StoreSettings::default(),
            encryption_key_file: None,
            encryption_key_kms: None,
            // Longer than a token request takes, shorter than the 30 s an
            // orchestrator usually waits before it kills.
            shutdown_grace: Duration::from_secs(10),
            // Thread per core: no work stealing, no cross-thread wake-ups
            // on the hit path (see BENCHMARKS.md).
            workers: WorkerThreads::Auto,
            log: LogSettings {
                format: LogFormat::Human,
                filter: "info".to_owned(),
            },
        }
    }
}
