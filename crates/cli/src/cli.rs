//! The command line: subcommands and flags. Every flag of `serve` can also
//! come from a `TOKENCACHE_*` environment variable or the config file.

use std::net::SocketAddr;
use std::path::PathBuf;

use clap::{Args, Parser, Subcommand, ValueEnum};

/// A caching proxy for OAuth 2.0 token endpoints (Amazon Cognito and
/// others): apps change only their token URL, and a fleet stops being
/// throttled by the token endpoint.
#[derive(Debug, Parser)]
#[command(name = "tokencache", version, propagate_version = true)]
pub struct Cli {
    /// What to run.
    #[command(subcommand)]
    pub command: Command,
}

/// The subcommands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run the caching proxy in front of one or more token endpoints.
    Serve(Box<ServeArgs>),
    /// Start a mock identity provider and the proxy in front of it on
    /// loopback, and print a curl command to try it.
    Demo(DemoArgs),
    /// Run the mock identity provider alone: a Cognito-shaped token endpoint
    /// for local development and tests.
    MockIdp(MockIdpArgs),
    /// Manage a shared store.
    #[command(subcommand)]
    Store(StoreCommand),
    /// Print an access token from a token endpoint (client credentials).
    /// The secret comes from TOKENCACHE_CLIENT_SECRET or standard input,
    /// never from the command line.
    Token(crate::token_command::TokenArgs),
}

/// `tokencache store …`.
#[derive(Debug, Subcommand)]
pub enum StoreCommand {
    /// Create the store's table (dynamodb://TABLE), with TTL enabled on its
    /// expiry attribute. Idempotent. Region and credentials come from the
    /// standard AWS chain.
    Init {
        /// The store, e.g. dynamodb://tokencache.
        store: String,
        /// Logging.
        #[command(flatten)]
        log: LogArgs,
    },
}

/// Log line format.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    /// Human-readable lines.
    Human,
    /// One JSON object per line, for log pipelines.
    Json,
}

/// Logging flags, shared by every subcommand.
#[derive(Debug, Clone, Args)]
pub struct LogArgs {
    /// Log format [default: human].
    #[arg(long, env = "TOKENCACHE_LOG_FORMAT", value_enum)]
    pub log_format: Option<LogFormat>,

    /// Log filter, in `tracing` syntax: a level (`info`, `debug`) or
    /// per-module directives (`info,tokencache_proxy=debug`)
    /// [default: info].
    #[arg(long, env = "TOKENCACHE_LOG")]
    pub log: Option<String>,
}

/// `tokencache serve`. A flag overrides its environment variable, which
/// overrides the config file, which overrides the default.
#[derive(Debug, Clone, Args)]
pub struct ServeArgs {
    /// A TOML config file; may declare several routes (see the README).
    #[arg(long, short = 'c', env = "TOKENCACHE_CONFIG")]
    pub config: Option<PathBuf>,

    /// Address to serve token requests on [default: 127.0.0.1:8080].
    #[arg(long, env = "TOKENCACHE_LISTEN")]
    pub listen: Option<SocketAddr>,

    /// Address of the admin listener: /metrics, /healthz, /readyz, /purge
    /// [default: 127.0.0.1:9090]. Keep it off the public network.
    #[arg(long, env = "TOKENCACHE_ADMIN_LISTEN")]
    pub admin_listen: Option<SocketAddr>,

    /// The upstream token endpoint, e.g.
    /// https://DOMAIN.auth.REGION.amazoncognito.com/oauth2/token.
    /// Defines the route at --path; the config file can declare more.
    #[arg(long, env = "TOKENCACHE_UPSTREAM")]
    pub upstream: Option<String>,

    /// The path the --upstream route answers on [default: /oauth2/token].
    #[arg(long, env = "TOKENCACHE_PATH")]
    pub path: Option<String>,

    /// Share of a token's lifetime after which it is refreshed in the
    /// background [default: 0.75].
    #[arg(long, env = "TOKENCACHE_REFRESH_AT")]
    pub refresh_at: Option<f64>,

    /// How long before its end a token stops being served: a share of its
    /// lifetime (`10%`) or a duration (`5m`, `30s`) [default: 10%].
    #[arg(long, env = "TOKENCACHE_MIN_REMAINING")]
    pub min_remaining: Option<String>,

    /// Memory budget of the token cache: bytes, or with a unit
    /// (`64MiB`, `512KiB`, `1GiB`) [default: 64MiB].
    #[arg(long, env = "TOKENCACHE_CACHE_MAX_BYTES")]
    pub cache_max_bytes: Option<String>,

    /// File holding the cache-key HMAC key (32 bytes, raw or base64).
    /// Without it (and without TOKENCACHE_HMAC_KEY) the key is random per
    /// process, which suits the memory store.
    #[arg(long, env = "TOKENCACHE_HMAC_KEY_FILE")]
    pub hmac_key_file: Option<PathBuf>,

    /// Where tokens are kept: memory (the default), redis://[user:pass@]host:port[/db],
    /// rediss://… (TLS), redis-cluster://host:port,host:port,…, rediss-cluster://…,
    /// or dynamodb://TABLE. Shared stores hold only sealed entries.
    #[arg(long, env = "TOKENCACHE_STORE")]
    pub store: Option<String>,

    /// CA certificates (PEM) for a rediss:// store with a private CA.
    #[arg(long, env = "TOKENCACHE_STORE_CA_FILE")]
    pub store_ca_file: Option<PathBuf>,

    /// Key prefix in Redis [default: tokencache:].
    #[arg(long, env = "TOKENCACHE_REDIS_PREFIX")]
    pub redis_prefix: Option<String>,

    /// File of AES-256 keys sealing shared-store entries: base64, one per
    /// line, the first active, the others still read (rotation); or 32 raw
    /// bytes. TOKENCACHE_ENCRYPTION_KEY (base64, comma-separated) also works.
    #[arg(long, env = "TOKENCACHE_ENCRYPTION_KEY_FILE")]
    pub encryption_key_file: Option<PathBuf>,

    /// File of KMS-encrypted data keys (base64 ciphertext blobs, one per
    /// line, the first active), decrypted through AWS KMS at start-up.
    #[arg(
        long,
        env = "TOKENCACHE_ENCRYPTION_KEY_KMS",
        conflicts_with = "encryption_key_file"
    )]
    pub encryption_key_kms: Option<PathBuf>,

    /// With a shared store: how long the memory tier keeps an entry before
    /// asking the store again [default: 30s].
    #[arg(long, env = "TOKENCACHE_L1_TTL")]
    pub l1_ttl: Option<humantime::Duration>,

    /// The longest one shared-store operation may take before the proxy
    /// carries on without it [default: 500ms].
    #[arg(long, env = "TOKENCACHE_STORE_TIMEOUT")]
    pub store_timeout: Option<humantime::Duration>,

    /// File holding the admin API's bearer token (purges need it; without a
    /// token they answer 401). TOKENCACHE_ADMIN_TOKEN also works.
    #[arg(long, env = "TOKENCACHE_ADMIN_TOKEN_FILE")]
    pub admin_token_file: Option<PathBuf>,

    /// Time allowed to connect to the upstream [default: 5s].
    #[arg(long, env = "TOKENCACHE_CONNECT_TIMEOUT")]
    pub connect_timeout: Option<humantime::Duration>,

    /// Time allowed for a whole upstream exchange [default: 10s].
    #[arg(long, env = "TOKENCACHE_REQUEST_TIMEOUT")]
    pub request_timeout: Option<humantime::Duration>,

    /// PEM file of extra root certificates for the upstream (a private
    /// identity provider).
    #[arg(long, env = "TOKENCACHE_CA_FILE")]
    pub ca_file: Option<PathBuf>,

    /// Attempts per upstream load, the first included; retries follow
    /// connect errors, timeouts, 429, 5xx and Cognito's throttling answers
    /// [default: 4].
    #[arg(long, env = "TOKENCACHE_RETRY_ATTEMPTS")]
    pub retry_attempts: Option<u32>,

    /// First retry delay ceiling; it doubles per retry, with full jitter
    /// [default: 100ms].
    #[arg(long, env = "TOKENCACHE_RETRY_BASE")]
    pub retry_base: Option<humantime::Duration>,

    /// Largest retry delay ceiling [default: 5s].
    #[arg(long, env = "TOKENCACHE_RETRY_CAP")]
    pub retry_cap: Option<humantime::Duration>,

    /// Request budget per upstream: sustained requests per second; 0 means
    /// unlimited [default: 100].
    #[arg(long, env = "TOKENCACHE_BUDGET_RATE")]
    pub budget_rate: Option<f64>,

    /// Request budget per upstream: requests that may go at once after a
    /// quiet spell [default: 20].
    #[arg(long, env = "TOKENCACHE_BUDGET_BURST")]
    pub budget_burst: Option<u32>,

    /// Consecutive upstream failures that open the circuit breaker; 0
    /// disables it [default: 5].
    #[arg(long, env = "TOKENCACHE_BREAKER_THRESHOLD")]
    pub breaker_threshold: Option<u32>,

    /// How long an open breaker fails misses fast before a probe
    /// [default: 5s].
    #[arg(long, env = "TOKENCACHE_BREAKER_COOL_DOWN")]
    pub breaker_cool_down: Option<humantime::Duration>,

    /// How long a caller waits for a token on a miss, budget queueing and
    /// retries included [default: 15s].
    #[arg(long, env = "TOKENCACHE_LOAD_DEADLINE")]
    pub load_deadline: Option<humantime::Duration>,

    /// How long an invalid_client, invalid_scope or unauthorized_client
    /// answer is remembered per key; 0s disables [default: 5s].
    #[arg(long, env = "TOKENCACHE_NEGATIVE_TTL")]
    pub negative_ttl: Option<humantime::Duration>,

    /// PEM certificate chain: serve HTTPS (HTTP/2 and HTTP/1.1 by ALPN).
    /// Reloaded with the key on SIGHUP, without dropping connections.
    #[arg(long, env = "TOKENCACHE_TLS_CERT", requires = "tls_key")]
    pub tls_cert: Option<PathBuf>,

    /// PEM private key for --tls-cert.
    #[arg(long, env = "TOKENCACHE_TLS_KEY", requires = "tls_cert")]
    pub tls_key: Option<PathBuf>,

    /// Connections served at once; more wait in the kernel's backlog
    /// [default: 4096].
    #[arg(long, env = "TOKENCACHE_MAX_CONNECTIONS")]
    pub max_connections: Option<usize>,

    /// Time a client has to send its request headers [default: 5s].
    #[arg(long, env = "TOKENCACHE_HEADER_READ_TIMEOUT")]
    pub header_read_timeout: Option<humantime::Duration>,

    /// Time a whole request may take; past it, 408 [default: 30s].
    #[arg(long, env = "TOKENCACHE_CLIENT_REQUEST_TIMEOUT")]
    pub client_request_timeout: Option<humantime::Duration>,

    /// Bytes of request headers accepted; more get 431 [default: 16KiB].
    #[arg(long, env = "TOKENCACHE_MAX_HEADER_BYTES")]
    pub max_header_bytes: Option<String>,

    /// Request headers accepted; more get 431 [default: 64].
    #[arg(long, env = "TOKENCACHE_MAX_HEADERS")]
    pub max_headers: Option<usize>,

    /// Largest token request body accepted, in bytes [default: 16KiB].
    #[arg(long, env = "TOKENCACHE_MAX_BODY_BYTES")]
    pub max_body_bytes: Option<String>,

    /// On SIGTERM/SIGINT, how long requests in progress may take to finish
    /// [default: 10s].
    #[arg(long, env = "TOKENCACHE_SHUTDOWN_GRACE")]
    pub shutdown_grace: Option<humantime::Duration>,

    /// Logging.
    #[command(flatten)]
    pub log: LogArgs,
}

/// `tokencache demo`.
#[derive(Debug, Clone, Args)]
pub struct DemoArgs {
    /// Address of the proxy; a busy default port falls back to a free one.
    #[arg(long, default_value = "127.0.0.1:8080")]
    pub listen: SocketAddr,

    /// Address of the proxy's admin listener.
    #[arg(long, default_value = "127.0.0.1:9090")]
    pub admin_listen: SocketAddr,

    /// Address of the mock identity provider.
    #[arg(long, default_value = "127.0.0.1:8081")]
    pub idp_listen: SocketAddr,

    /// Lifetime of the mock IdP's tokens, in seconds.
    #[arg(long, default_value_t = 3600)]
    pub token_lifetime: u64,

    /// Added latency of the mock IdP, in milliseconds, to make the
    /// difference between a miss and a hit visible.
    #[arg(long, default_value_t = 50)]
    pub idp_latency: u64,

    /// Logging.
    #[command(flatten)]
    pub log: LogArgs,
}

/// `tokencache mock-idp`.
#[derive(Debug, Clone, Args)]
pub struct MockIdpArgs {
    /// Address to listen on.
    #[arg(
        long,
        env = "TOKENCACHE_MOCK_IDP_LISTEN",
        default_value = "127.0.0.1:8081"
    )]
    pub listen: SocketAddr,

    /// Lifetime of issued access tokens, in seconds.
    #[arg(long, default_value_t = 3600)]
    pub token_lifetime: u64,

    /// Added latency before each token answer, in milliseconds.
    #[arg(long, default_value_t = 0)]
    pub latency: u64,

    /// TOML file of clients (`[[clients]] id, secret, scopes`); without it,
    /// the demo clients demo-client/demo-secret and other-client/other-secret.
    #[arg(long)]
    pub clients: Option<PathBuf>,

    /// Logging.
    #[command(flatten)]
    pub log: LogArgs,
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::CommandFactory;

    #[test]
    fn the_command_line_is_well_formed() {
        Cli::command().debug_assert();
    }

    #[test]
    fn serve_flags_parse() {
        let cli = Cli::try_parse_from([
            "tokencache",
            "serve",
            "--listen",
            "127.0.0.1:1",
            "--upstream",
            "https://idp.example/oauth2/token",
            "--min-remaining",
            "30s",
            "--request-timeout",
            "2s",
        ])
        .unwrap();
        let Command::Serve(args) = cli.command else {
            panic!("not serve");
        };
        assert_eq!(args.listen, Some("127.0.0.1:1".parse().unwrap()));
        assert_eq!(args.min_remaining.as_deref(), Some("30s"));
        assert_eq!(
            args.request_timeout.map(Into::into),
            Some(std::time::Duration::from_secs(2))
        );
    }
}
