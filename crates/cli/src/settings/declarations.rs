//! Every setting of `serve`, declared once: flag, variable, file key, help
//! text, and the field that holds it (whose default is the library's own).
//!
//! The names follow one rule, checked by a test: the variable is
//! `TOKENCACHE_` and the flag in capitals; the file key is the flag in
//! snake case, in its section, without the section's name in front
//! (`--store-timeout` is `[store] timeout`). `--store` is `[store] url`.
//! The README's configuration table is checked against this list.

use std::net::SocketAddr;
use std::num::NonZero;
use std::path::PathBuf;
use std::time::Duration;

use tokencache_core::MinRemaining;

use crate::settings::setting::{Declared, FileKey, Setting};
use crate::settings::value::{
    ByteSize, LogFormat, NonZeroDuration, Price, Rate, UrlText, WorkerThreads,
};
use crate::store::StoreSpec;

/// `--config`.
pub const CONFIG: Setting<PathBuf> = Setting {
    name: "config",
    env: "TOKENCACHE_CONFIG",
    file: FileKey::None,
    help: "A TOML config file; may declare several routes (see the README).",
    unset: "none",
    secret: false,
    get: |d| d.config.clone(),
    set: |d, v| d.config = Some(v),
};

/// `--listen`.
pub const LISTEN: Setting<SocketAddr> = Setting {
    name: "listen",
    env: "TOKENCACHE_LISTEN",
    file: FileKey::Top("listen"),
    help: "Address to serve token requests on.",
    unset: "",
    secret: false,
    get: |d| Some(d.listen),
    set: |d, v| d.listen = v,
};

/// `--admin-listen`.
pub const ADMIN_LISTEN: Setting<SocketAddr> = Setting {
    name: "admin-listen",
    env: "TOKENCACHE_ADMIN_LISTEN",
    file: FileKey::Top("admin_listen"),
    help: "Address of the admin listener: /metrics, /healthz, /readyz, /purge. \
           Keep it off the public network.",
    unset: "",
    secret: false,
    get: |d| Some(d.admin_listen),
    set: |d, v| d.admin_listen = v,
};

/// `--upstream`.
pub const UPSTREAM: Setting<UrlText> = Setting {
    name: "upstream",
    env: "TOKENCACHE_UPSTREAM",
    file: FileKey::Route("upstream"),
    help: "The upstream token endpoint, e.g. \
           https://DOMAIN.auth.REGION.amazoncognito.com/oauth2/token. \
           Defines the route at --path; the config file can declare more.",
    unset: "none",
    // A URL may carry credentials.
    secret: true,
    get: |d| d.upstream.clone().map(UrlText),
    set: |d, v| d.upstream = Some(v.0),
};

/// `--path`.
pub const PATH: Setting<String> = Setting {
    name: "path",
    env: "TOKENCACHE_PATH",
    file: FileKey::Route("path"),
    help: "The path the --upstream route answers on.",
    unset: "",
    secret: false,
    get: |d| Some(d.path.clone()),
    set: |d, v| d.path = v,
};

/// `--cognito-idp-upstream`.
pub const COGNITO_IDP_UPSTREAM: Setting<UrlText> = Setting {
    name: "cognito-idp-upstream",
    env: "TOKENCACHE_COGNITO_IDP_UPSTREAM",
    file: FileKey::RouteKind("cognito-idp"),
    help: "Cognito's native API, e.g. https://cognito-idp.REGION.amazonaws.com: \
           the token listener then also answers AWS JSON requests (X-Amz-Target) \
           at /, caching InitiateAuth and GetClientToken.",
    unset: "none",
    secret: true,
    get: |d| d.cognito_idp_upstream.clone().map(UrlText),
    set: |d, v| d.cognito_idp_upstream = Some(v.0),
};

/// `--cognito-strip-refresh-token`.
pub const COGNITO_STRIP_REFRESH_TOKEN: Setting<bool> = Setting {
    name: "cognito-strip-refresh-token",
    env: "TOKENCACHE_COGNITO_STRIP_REFRESH_TOKEN",
    file: FileKey::Top("cognito_strip_refresh_token"),
    help: "Leave RefreshToken out of cached native answers (for pools that rotate \
           refresh tokens).",
    unset: "",
    secret: false,
    get: |d| Some(d.cognito_strip_refresh_token),
    set: |d, v| d.cognito_strip_refresh_token = v,
};

/// `--cognito-budget-rate`.
pub const COGNITO_BUDGET_RATE: Setting<Rate> = Setting {
    name: "cognito-budget-rate",
    env: "TOKENCACHE_COGNITO_BUDGET_RATE",
    file: FileKey::Top("cognito_budget_rate"),
    help: "Request budget of the native API (Cognito's UserAuthentication quota, \
           120/s by default): requests per second; 0 means unlimited.",
    unset: "",
    secret: false,
    get: |d| Some(Rate(d.cognito_budget.rate_per_sec)),
    set: |d, v| d.cognito_budget.rate_per_sec = v.0,
};

/// `--refresh-at`.
pub const REFRESH_AT: Setting<f64> = Setting {
    name: "refresh-at",
    env: "TOKENCACHE_REFRESH_AT",
    file: FileKey::Top("refresh_at"),
    help: "Share of a token's lifetime after which it is refreshed in the background.",
    unset: "",
    secret: false,
    get: |d| Some(d.refresh_at),
    set: |d, v| d.refresh_at = v,
};

/// `--min-remaining`.
pub const MIN_REMAINING: Setting<MinRemaining> = Setting {
    name: "min-remaining",
    env: "TOKENCACHE_MIN_REMAINING",
    file: FileKey::Top("min_remaining"),
    help: "How long before its end a token stops being served: a share of its \
           lifetime (`10%`) or a duration (`5m`, `30s`).",
    unset: "",
    secret: false,
    get: |d| Some(d.min_remaining),
    set: |d, v| d.min_remaining = v,
};

/// `--max-ttl`.
pub const MAX_TTL: Setting<NonZeroDuration> = Setting {
    name: "max-ttl",
    env: "TOKENCACHE_MAX_TTL",
    file: FileKey::Top("max_ttl"),
    help: "The longest a token is cached, whatever its `expires_in` says; the \
           answer's `expires_in` never exceeds what is left of it.",
    unset: "",
    secret: false,
    get: |d| Some(NonZeroDuration(d.max_ttl)),
    set: |d, v| d.max_ttl = v.0,
};

/// `--cache-max-bytes`.
pub const CACHE_MAX_BYTES: Setting<ByteSize> = Setting {
    name: "cache-max-bytes",
    env: "TOKENCACHE_CACHE_MAX_BYTES",
    file: FileKey::Top("cache_max_bytes"),
    help: "Memory budget of the token cache: bytes, or with a unit \
           (`64MiB`, `512KiB`, `1GiB`).",
    unset: "",
    secret: false,
    get: |d| Some(ByteSize(d.proxy.cache_max_bytes)),
    set: |d, v| d.proxy.cache_max_bytes = v.0,
};

/// `--max-entry-bytes`.
pub const MAX_ENTRY_BYTES: Setting<ByteSize> = Setting {
    name: "max-entry-bytes",
    env: "TOKENCACHE_MAX_ENTRY_BYTES",
    file: FileKey::Top("max_entry_bytes"),
    help: "The largest token answer kept in the cache; a larger one is passed \
           through uncached rather than evicting others.",
    unset: "",
    secret: false,
    get: |d| Some(ByteSize(d.proxy.max_entry_bytes)),
    set: |d, v| d.proxy.max_entry_bytes = v.0,
};

/// `--max-body-bytes`.
pub const MAX_BODY_BYTES: Setting<ByteSize> = Setting {
    name: "max-body-bytes",
    env: "TOKENCACHE_MAX_BODY_BYTES",
    file: FileKey::Top("max_body_bytes"),
    help: "Largest token request body accepted; larger ones get 413.",
    unset: "",
    secret: false,
    get: |d| Some(ByteSize(d.proxy.max_body_bytes)),
    set: |d, v| d.proxy.max_body_bytes = v.0,
};

/// `--hmac-key-file`.
pub const HMAC_KEY_FILE: Setting<PathBuf> = Setting {
    name: "hmac-key-file",
    env: "TOKENCACHE_HMAC_KEY_FILE",
    file: FileKey::Top("hmac_key_file"),
    help: "File holding the cache-key HMAC key (32 bytes, raw or base64). \
           Without it (and without TOKENCACHE_HMAC_KEY) the key is random per \
           process, which suits the memory store.",
    unset: "random per process",
    secret: false,
    get: |d| d.hmac_key_file.clone(),
    set: |d, v| d.hmac_key_file = Some(v),
};

/// `--admin-token-file`.
pub const ADMIN_TOKEN_FILE: Setting<PathBuf> = Setting {
    name: "admin-token-file",
    env: "TOKENCACHE_ADMIN_TOKEN_FILE",
    file: FileKey::Top("admin_token_file"),
    help: "File holding the admin API's bearer token (purges need it; without a \
           token they answer 401). TOKENCACHE_ADMIN_TOKEN also works.",
    unset: "none: purges answer 401",
    secret: false,
    get: |d| d.admin_token_file.clone(),
    set: |d, v| d.admin_token_file = Some(v),
};

/// `--load-deadline`.
pub const LOAD_DEADLINE: Setting<Duration> = Setting {
    name: "load-deadline",
    env: "TOKENCACHE_LOAD_DEADLINE",
    file: FileKey::Top("load_deadline"),
    help: "How long a caller waits for a token on a miss, budget queueing and \
           retries included.",
    unset: "",
    secret: false,
    get: |d| Some(d.proxy.load_deadline),
    set: |d, v| d.proxy.load_deadline = v,
};

/// `--negative-ttl`.
pub const NEGATIVE_TTL: Setting<Duration> = Setting {
    name: "negative-ttl",
    env: "TOKENCACHE_NEGATIVE_TTL",
    file: FileKey::Top("negative_ttl"),
    help: "How long an invalid_client, invalid_scope or unauthorized_client \
           answer is remembered per key; 0s disables.",
    unset: "",
    secret: false,
    get: |d| Some(d.proxy.negative_ttl),
    set: |d, v| d.proxy.negative_ttl = v,
};

/// `--shutdown-grace`.
pub const SHUTDOWN_GRACE: Setting<Duration> = Setting {
    name: "shutdown-grace",
    env: "TOKENCACHE_SHUTDOWN_GRACE",
    file: FileKey::Top("shutdown_grace"),
    help: "On SIGTERM/SIGINT, how long requests in progress may take to finish.",
    unset: "",
    secret: false,
    get: |d| Some(d.shutdown_grace),
    set: |d, v| d.shutdown_grace = v,
};

/// `--log-format`.
pub const LOG_FORMAT: Setting<LogFormat> = Setting {
    name: "log-format",
    env: "TOKENCACHE_LOG_FORMAT",
    file: FileKey::Top("log_format"),
    help: "Log format: `human` or `json` (one object per line), to stderr.",
    unset: "",
    secret: false,
    get: |d| Some(d.log.format),
    set: |d, v| d.log.format = v,
};

/// `--log`.
pub const LOG: Setting<String> = Setting {
    name: "log",
    env: "TOKENCACHE_LOG",
    file: FileKey::Top("log"),
    help: "Log filter, in `tracing` syntax: a level (`info`, `debug`) or \
           per-module directives (`info,tokencache_proxy=debug`). \
           Without it (flag, variable or file key), RUST_LOG is read.",
    unset: "",
    secret: false,
    get: |d| Some(d.log.filter.clone()),
    set: |d, v| d.log.filter = v,
};

const UPSTREAM_SECTION: &str = "upstream";

/// `--connect-timeout`.
pub const CONNECT_TIMEOUT: Setting<Duration> = Setting {
    name: "connect-timeout",
    env: "TOKENCACHE_CONNECT_TIMEOUT",
    file: FileKey::In {
        section: UPSTREAM_SECTION,
        key: "connect_timeout",
        old: None,
    },
    help: "Time allowed to connect to the upstream.",
    unset: "",
    secret: false,
    get: |d| Some(d.proxy.upstream.connect_timeout),
    set: |d, v| d.proxy.upstream.connect_timeout = v,
};

/// `--request-timeout`.
pub const REQUEST_TIMEOUT: Setting<Duration> = Setting {
    name: "request-timeout",
    env: "TOKENCACHE_REQUEST_TIMEOUT",
    file: FileKey::In {
        section: UPSTREAM_SECTION,
        key: "request_timeout",
        old: None,
    },
    help: "Time allowed for a whole upstream exchange; beyond it the caller gets 504.",
    unset: "",
    secret: false,
    get: |d| Some(d.proxy.upstream.request_timeout),
    set: |d, v| d.proxy.upstream.request_timeout = v,
};

/// `--ca-file`.
pub const CA_FILE: Setting<PathBuf> = Setting {
    name: "ca-file",
    env: "TOKENCACHE_CA_FILE",
    file: FileKey::In {
        section: UPSTREAM_SECTION,
        key: "ca_file",
        old: None,
    },
    help: "PEM file of extra root certificates for the upstream (a private \
           identity provider).",
    unset: "platform roots",
    secret: false,
    get: |d| d.proxy.upstream.ca_file.clone(),
    set: |d, v| d.proxy.upstream.ca_file = Some(v),
};

/// `--retry-attempts`.
pub const RETRY_ATTEMPTS: Setting<NonZero<u32>> = Setting {
    name: "retry-attempts",
    env: "TOKENCACHE_RETRY_ATTEMPTS",
    file: FileKey::In {
        section: UPSTREAM_SECTION,
        key: "retry_attempts",
        old: None,
    },
    help: "Attempts per upstream load, the first included; retries follow \
           connect errors, timeouts, 429, 5xx and Cognito's throttling answers.",
    unset: "",
    secret: false,
    get: |d| NonZero::new(d.retry_attempts),
    set: |d, v| d.retry_attempts = v.get(),
};

/// `--retry-base`.
pub const RETRY_BASE: Setting<Duration> = Setting {
    name: "retry-base",
    env: "TOKENCACHE_RETRY_BASE",
    file: FileKey::In {
        section: UPSTREAM_SECTION,
        key: "retry_base",
        old: None,
    },
    help: "First retry delay ceiling; it doubles per retry, with full jitter.",
    unset: "",
    secret: false,
    get: |d| Some(d.retry_base),
    set: |d, v| d.retry_base = v,
};

/// `--retry-cap`.
pub const RETRY_CAP: Setting<Duration> = Setting {
    name: "retry-cap",
    env: "TOKENCACHE_RETRY_CAP",
    file: FileKey::In {
        section: UPSTREAM_SECTION,
        key: "retry_cap",
        old: None,
    },
    help: "Largest retry delay ceiling.",
    unset: "",
    secret: false,
    get: |d| Some(d.retry_cap),
    set: |d, v| d.retry_cap = v,
};

/// `--upstream-price-per-1000`.
pub const UPSTREAM_PRICE_PER_1000: Setting<Price> = Setting {
    name: "upstream-price-per-1000",
    env: "TOKENCACHE_UPSTREAM_PRICE_PER_1000",
    file: FileKey::In {
        section: UPSTREAM_SECTION,
        key: "price_per_1000",
        old: None,
    },
    help: "What the identity provider charges per 1000 token requests; the status \
           page then shows what the cache saved.",
    unset: "none",
    secret: false,
    get: |d| d.proxy.upstream_price_per_1000.map(Price),
    set: |d, v| d.proxy.upstream_price_per_1000 = Some(v.0),
};

/// `--status-show-clients`.
pub const STATUS_SHOW_CLIENTS: Setting<bool> = Setting {
    name: "status-show-clients",
    env: "TOKENCACHE_STATUS_SHOW_CLIENTS",
    file: FileKey::Top("status_show_clients"),
    help: "List the busiest client ids (with their request counts and hit ratios) \
           on the admin listener's status page. Default: on when --admin-listen is \
           a loopback address.",
    unset: "on for a loopback `--admin-listen`",
    secret: false,
    get: |d| d.proxy.status_show_clients,
    set: |d, v| d.proxy.status_show_clients = Some(v),
};

/// `--budget-rate`.
pub const BUDGET_RATE: Setting<Rate> = Setting {
    name: "budget-rate",
    env: "TOKENCACHE_BUDGET_RATE",
    file: FileKey::In {
        section: UPSTREAM_SECTION,
        key: "budget_rate",
        old: None,
    },
    help: "Request budget of each upstream host's group (routes to one host share it; \
           [budgets.NAME] declares others): sustained requests per second; 0 means unlimited. \
           With a shared store, the whole fleet shares each group's budget.",
    unset: "",
    secret: false,
    get: |d| Some(Rate(d.proxy.resilience.budget.rate_per_sec)),
    set: |d, v| d.proxy.resilience.budget.rate_per_sec = v.0,
};

/// `--budget-burst`.
pub const BUDGET_BURST: Setting<NonZero<u32>> = Setting {
    name: "budget-burst",
    env: "TOKENCACHE_BUDGET_BURST",
    file: FileKey::In {
        section: UPSTREAM_SECTION,
        key: "budget_burst",
        old: None,
    },
    help: "Request budget of each upstream host's group: requests that may go at once after a \
           quiet spell.",
    unset: "",
    secret: false,
    get: |d| NonZero::new(d.proxy.resilience.budget.burst),
    set: |d, v| d.proxy.resilience.budget.burst = v.get(),
};

/// `--budget-replicas`.
pub const BUDGET_REPLICAS: Setting<NonZero<u32>> = Setting {
    name: "budget-replicas",
    env: "TOKENCACHE_BUDGET_REPLICAS",
    file: FileKey::In {
        section: UPSTREAM_SECTION,
        key: "budget_replicas",
        old: None,
    },
    help: "The fleet's size, for the share of each shared budget (rate / replicas) a replica \
           keeps to while the store is unreachable; unset, the replicas count themselves by \
           heartbeats in the store.",
    unset: "counted",
    secret: false,
    get: |d| d.proxy.budget_replicas,
    set: |d, v| d.proxy.budget_replicas = Some(v),
};

/// `--breaker-threshold`.
pub const BREAKER_THRESHOLD: Setting<u32> = Setting {
    name: "breaker-threshold",
    env: "TOKENCACHE_BREAKER_THRESHOLD",
    file: FileKey::In {
        section: UPSTREAM_SECTION,
        key: "breaker_threshold",
        old: None,
    },
    help: "Consecutive upstream failures that open the circuit breaker; 0 disables it.",
    unset: "",
    secret: false,
    get: |d| Some(d.proxy.resilience.breaker.failure_threshold),
    set: |d, v| d.proxy.resilience.breaker.failure_threshold = v,
};

/// `--breaker-cool-down`.
pub const BREAKER_COOL_DOWN: Setting<Duration> = Setting {
    name: "breaker-cool-down",
    env: "TOKENCACHE_BREAKER_COOL_DOWN",
    file: FileKey::In {
        section: UPSTREAM_SECTION,
        key: "breaker_cool_down",
        old: None,
    },
    help: "How long an open breaker fails misses fast before a probe.",
    unset: "",
    secret: false,
    get: |d| Some(d.proxy.resilience.breaker.cool_down),
    set: |d, v| d.proxy.resilience.breaker.cool_down = v,
};

const SERVER_SECTION: &str = "server";

/// `--tls-cert`.
pub const TLS_CERT: Setting<PathBuf> = Setting {
    name: "tls-cert",
    env: "TOKENCACHE_TLS_CERT",
    file: FileKey::In {
        section: SERVER_SECTION,
        key: "tls_cert",
        old: None,
    },
    help: "PEM certificate chain: serve HTTPS (HTTP/2 and HTTP/1.1 by ALPN). \
           Reloaded with the key on SIGHUP, without dropping connections. \
           Needs --tls-key.",
    unset: "plain HTTP",
    secret: false,
    get: |d| d.tls_cert.clone(),
    set: |d, v| d.tls_cert = Some(v),
};

/// `--tls-key`.
pub const TLS_KEY: Setting<PathBuf> = Setting {
    name: "tls-key",
    env: "TOKENCACHE_TLS_KEY",
    file: FileKey::In {
        section: SERVER_SECTION,
        key: "tls_key",
        old: None,
    },
    help: "PEM private key for --tls-cert.",
    unset: "plain HTTP",
    secret: false,
    get: |d| d.tls_key.clone(),
    set: |d, v| d.tls_key = Some(v),
};

/// `--max-connections`.
pub const MAX_CONNECTIONS: Setting<NonZero<usize>> = Setting {
    name: "max-connections",
    env: "TOKENCACHE_MAX_CONNECTIONS",
    file: FileKey::In {
        section: SERVER_SECTION,
        key: "max_connections",
        old: None,
    },
    help: "Connections served at once; beyond it a new connection replaces the \
           one idle longest, or is closed when every one is busy (and /readyz \
           reports saturation).",
    unset: "",
    secret: false,
    get: |d| NonZero::new(d.limits.max_connections),
    set: |d, v| d.limits.max_connections = v.get(),
};

/// `--max-connections-per-ip`.
pub const MAX_CONNECTIONS_PER_IP: Setting<usize> = Setting {
    name: "max-connections-per-ip",
    env: "TOKENCACHE_MAX_CONNECTIONS_PER_IP",
    file: FileKey::In {
        section: SERVER_SECTION,
        key: "max_connections_per_ip",
        old: None,
    },
    help: "Connections from one IP address; more are closed at once; 0: no limit.",
    unset: "",
    secret: false,
    get: |d| Some(d.limits.max_connections_per_ip),
    set: |d, v| d.limits.max_connections_per_ip = v,
};

/// `--workers`.
pub const WORKERS: Setting<WorkerThreads> = Setting {
    name: "workers",
    env: "TOKENCACHE_WORKERS",
    file: FileKey::In {
        section: SERVER_SECTION,
        key: "workers",
        old: None,
    },
    help: "Threads serving the token listener, each with a runtime of its own; each new \
           connection goes to the one serving the fewest: auto (one per core), a count, or 0 for \
           one shared runtime.",
    unset: "",
    secret: false,
    get: |d| Some(d.workers),
    set: |d, v| d.workers = v,
};

/// `--header-read-timeout`.
pub const HEADER_READ_TIMEOUT: Setting<NonZeroDuration> = Setting {
    name: "header-read-timeout",
    env: "TOKENCACHE_HEADER_READ_TIMEOUT",
    file: FileKey::In {
        section: SERVER_SECTION,
        key: "header_read_timeout",
        old: None,
    },
    help: "Time a connection has to send a complete request head: the first \
           from being accepted, each later HTTP/1.1 one from the previous answer.",
    unset: "",
    secret: false,
    get: |d| Some(NonZeroDuration(d.limits.header_read_timeout)),
    set: |d, v| d.limits.header_read_timeout = v.0,
};

/// `--idle-timeout`.
pub const IDLE_TIMEOUT: Setting<NonZeroDuration> = Setting {
    name: "idle-timeout",
    env: "TOKENCACHE_IDLE_TIMEOUT",
    file: FileKey::In {
        section: SERVER_SECTION,
        key: "idle_timeout",
        old: None,
    },
    help: "Time a connection may idle between requests before it is closed \
           (HTTP/2; HTTP/1.1 when --header-read-timeout is longer).",
    unset: "",
    secret: false,
    get: |d| Some(NonZeroDuration(d.limits.idle_timeout)),
    set: |d, v| d.limits.idle_timeout = v.0,
};

/// `--client-request-timeout`.
pub const CLIENT_REQUEST_TIMEOUT: Setting<Duration> = Setting {
    name: "client-request-timeout",
    env: "TOKENCACHE_CLIENT_REQUEST_TIMEOUT",
    file: FileKey::In {
        section: SERVER_SECTION,
        key: "client_request_timeout",
        old: Some("request_timeout"),
    },
    help: "Time a whole request may take; past it, 408.",
    unset: "",
    secret: false,
    get: |d| Some(d.limits.request_timeout),
    set: |d, v| d.limits.request_timeout = v,
};

/// `--max-header-bytes`.
pub const MAX_HEADER_BYTES: Setting<ByteSize> = Setting {
    name: "max-header-bytes",
    env: "TOKENCACHE_MAX_HEADER_BYTES",
    file: FileKey::In {
        section: SERVER_SECTION,
        key: "max_header_bytes",
        old: None,
    },
    help: "Bytes of request headers accepted (at least 8KiB); more get 431.",
    unset: "",
    secret: false,
    get: |d| Some(ByteSize(d.limits.max_header_bytes)),
    set: |d, v| d.limits.max_header_bytes = v.0,
};

/// `--max-headers`.
pub const MAX_HEADERS: Setting<NonZero<usize>> = Setting {
    name: "max-headers",
    env: "TOKENCACHE_MAX_HEADERS",
    file: FileKey::In {
        section: SERVER_SECTION,
        key: "max_headers",
        old: None,
    },
    help: "Request headers accepted (HTTP/1.1 and HTTP/2); more get 431.",
    unset: "",
    secret: false,
    get: |d| NonZero::new(d.limits.max_headers),
    set: |d, v| d.limits.max_headers = v.get(),
};

/// `--max-concurrent-streams`.
pub const MAX_CONCURRENT_STREAMS: Setting<NonZero<u32>> = Setting {
    name: "max-concurrent-streams",
    env: "TOKENCACHE_MAX_CONCURRENT_STREAMS",
    file: FileKey::In {
        section: SERVER_SECTION,
        key: "max_concurrent_streams",
        old: None,
    },
    help: "HTTP/2 streams one connection may have open at once.",
    unset: "",
    secret: false,
    get: |d| NonZero::new(d.limits.max_concurrent_streams),
    set: |d, v| d.limits.max_concurrent_streams = v.get(),
};

const STORE_SECTION: &str = "store";

/// `--store`.
pub const STORE: Setting<StoreSpec> = Setting {
    name: "store",
    env: "TOKENCACHE_STORE",
    file: FileKey::In {
        section: STORE_SECTION,
        key: "url",
        old: None,
    },
    help: "Where tokens are kept: memory, redis://[user:pass@]host:port[/db], \
           rediss://… (TLS), redis-cluster://host:port,host:port,…, \
           rediss-cluster://…, or dynamodb://TABLE. Shared stores hold only \
           sealed entries.",
    unset: "",
    // A Redis URL may hold a password.
    secret: true,
    get: |d| Some(d.store.spec.clone()),
    set: |d, v| d.store.spec = v,
};

/// `--store-ca-file`.
pub const STORE_CA_FILE: Setting<PathBuf> = Setting {
    name: "store-ca-file",
    env: "TOKENCACHE_STORE_CA_FILE",
    file: FileKey::In {
        section: STORE_SECTION,
        key: "ca_file",
        old: None,
    },
    help: "CA certificates (PEM) for a rediss:// store with a private CA.",
    unset: "platform roots",
    secret: false,
    get: |d| d.store.ca_file.clone(),
    set: |d, v| d.store.ca_file = Some(v),
};

/// `--redis-prefix`.
pub const REDIS_PREFIX: Setting<String> = Setting {
    name: "redis-prefix",
    env: "TOKENCACHE_REDIS_PREFIX",
    file: FileKey::In {
        section: STORE_SECTION,
        key: "redis_prefix",
        old: Some("prefix"),
    },
    help: "Key prefix in Redis.",
    unset: "",
    secret: false,
    get: |d| Some(d.store.prefix.clone()),
    set: |d, v| d.store.prefix = v,
};

/// `--encryption-key-file`.
pub const ENCRYPTION_KEY_FILE: Setting<PathBuf> = Setting {
    name: "encryption-key-file",
    env: "TOKENCACHE_ENCRYPTION_KEY_FILE",
    file: FileKey::In {
        section: STORE_SECTION,
        key: "encryption_key_file",
        old: None,
    },
    help: "File of AES-256 keys sealing shared-store entries: base64, one per \
           line, the first active, the others still read (rotation); or 32 raw \
           bytes. TOKENCACHE_ENCRYPTION_KEY (base64, comma-separated) also works.",
    unset: "none",
    secret: false,
    get: |d| d.encryption_key_file.clone(),
    set: |d, v| d.encryption_key_file = Some(v),
};

/// `--encryption-key-kms`.
pub const ENCRYPTION_KEY_KMS: Setting<PathBuf> = Setting {
    name: "encryption-key-kms",
    env: "TOKENCACHE_ENCRYPTION_KEY_KMS",
    file: FileKey::In {
        section: STORE_SECTION,
        key: "encryption_key_kms",
        old: None,
    },
    help: "File of KMS-encrypted data keys (base64 ciphertext blobs, one per \
           line, the first active), decrypted through AWS KMS at start-up. Not \
           with --encryption-key-file.",
    unset: "none",
    secret: false,
    get: |d| d.encryption_key_kms.clone(),
    set: |d, v| d.encryption_key_kms = Some(v),
};

/// `--l1-ttl`.
pub const L1_TTL: Setting<Duration> = Setting {
    name: "l1-ttl",
    env: "TOKENCACHE_L1_TTL",
    file: FileKey::In {
        section: STORE_SECTION,
        key: "l1_ttl",
        old: None,
    },
    help: "With a shared store: how long the memory tier keeps an entry before \
           asking the store again.",
    unset: "",
    secret: false,
    get: |d| Some(d.store.l1_ttl),
    set: |d, v| d.store.l1_ttl = v,
};

/// `--store-lease-ttl`.
pub const STORE_LEASE_TTL: Setting<NonZeroDuration> = Setting {
    name: "store-lease-ttl",
    env: "TOKENCACHE_STORE_LEASE_TTL",
    file: FileKey::In {
        section: STORE_SECTION,
        key: "lease_ttl",
        old: None,
    },
    help: "With a shared store: how long a load's lease lasts; its holder renews it \
           every third of this, so a replica that dies mid-load gives the key up \
           within it.",
    unset: "",
    secret: false,
    get: |d| Some(NonZeroDuration(d.store.lease_ttl)),
    set: |d, v| d.store.lease_ttl = v.0,
};

/// `--store-purge-poll`.
pub const STORE_PURGE_POLL: Setting<NonZeroDuration> = Setting {
    name: "store-purge-poll",
    env: "TOKENCACHE_STORE_PURGE_POLL",
    file: FileKey::In {
        section: STORE_SECTION,
        key: "purge_poll",
        old: None,
    },
    help: "With a shared store: how often each replica reads the fleet's purge log \
           (and probes the store while its breaker is open); a purge reaches every \
           replica within this plus one store operation.",
    unset: "",
    secret: false,
    get: |d| Some(NonZeroDuration(d.store.purge_poll)),
    set: |d, v| d.store.purge_poll = v.0,
};

/// `--store-breaker-failures`.
pub const STORE_BREAKER_FAILURES: Setting<u32> = Setting {
    name: "store-breaker-failures",
    env: "TOKENCACHE_STORE_BREAKER_FAILURES",
    file: FileKey::In {
        section: STORE_SECTION,
        key: "breaker_failures",
        old: None,
    },
    help: "With a shared store: consecutive store failures (timeouts included) after \
           which requests stop waiting on the store until a probe succeeds; 0 never \
           opens it.",
    unset: "",
    secret: false,
    get: |d| Some(d.store.breaker_failures),
    set: |d, v| d.store.breaker_failures = v,
};

/// `--store-timeout`.
pub const STORE_TIMEOUT: Setting<Duration> = Setting {
    name: "store-timeout",
    env: "TOKENCACHE_STORE_TIMEOUT",
    file: FileKey::In {
        section: STORE_SECTION,
        key: "timeout",
        old: None,
    },
    help: "The longest one shared-store operation may take before the proxy \
           carries on without it. When set, it also bounds each Redis command \
           (otherwise the Redis client's own, shorter bound applies).",
    unset: "",
    secret: false,
    get: |d| Some(d.store.op_timeout),
    set: |d, v| {
        d.store.op_timeout = v;
        d.store.redis_op_timeout = Some(v);
    },
};

/// The logging settings, which every subcommand has.
pub static LOGGING: [&dyn Declared; 2] = [&LOG_FORMAT, &LOG];

/// Every setting of `serve`, in `--help` order.
pub static SERVE: [&dyn Declared; 55] = [
    &CONFIG,
    &LISTEN,
    &ADMIN_LISTEN,
    &UPSTREAM,
    &PATH,
    &COGNITO_IDP_UPSTREAM,
    &COGNITO_STRIP_REFRESH_TOKEN,
    &COGNITO_BUDGET_RATE,
    &REFRESH_AT,
    &MIN_REMAINING,
    &MAX_TTL,
    &CACHE_MAX_BYTES,
    &MAX_ENTRY_BYTES,
    &MAX_BODY_BYTES,
    &HMAC_KEY_FILE,
    &CONNECT_TIMEOUT,
    &REQUEST_TIMEOUT,
    &CA_FILE,
    &RETRY_ATTEMPTS,
    &RETRY_BASE,
    &RETRY_CAP,
    &BUDGET_RATE,
    &BUDGET_BURST,
    &BUDGET_REPLICAS,
    &UPSTREAM_PRICE_PER_1000,
    &STATUS_SHOW_CLIENTS,
    &BREAKER_THRESHOLD,
    &BREAKER_COOL_DOWN,
    &LOAD_DEADLINE,
    &NEGATIVE_TTL,
    &ADMIN_TOKEN_FILE,
    &STORE,
    &STORE_CA_FILE,
    &REDIS_PREFIX,
    &ENCRYPTION_KEY_FILE,
    &ENCRYPTION_KEY_KMS,
    &L1_TTL,
    &STORE_TIMEOUT,
    &STORE_LEASE_TTL,
    &STORE_PURGE_POLL,
    &STORE_BREAKER_FAILURES,
    &TLS_CERT,
    &TLS_KEY,
    &MAX_CONNECTIONS,
    &MAX_CONNECTIONS_PER_IP,
    &HEADER_READ_TIMEOUT,
    &IDLE_TIMEOUT,
    &CLIENT_REQUEST_TIMEOUT,
    &MAX_HEADER_BYTES,
    &MAX_HEADERS,
    &MAX_CONCURRENT_STREAMS,
    &WORKERS,
    &SHUTDOWN_GRACE,
    &LOG_FORMAT,
    &LOG,
];

#[cfg(test)]
mod tests {
    use std::collections::HashSet;

    use super::*;

    /// The file key's section, or `None` at the top.
    fn section(file: FileKey) -> Option<&'static str> {
        match file {
            FileKey::In { section, .. } => Some(section),
            FileKey::None | FileKey::Top(_) | FileKey::Route(_) | FileKey::RouteKind(_) => None,
        }
    }

    #[test]
    fn names_follow_one_rule() {
        for setting in SERVE {
            let name = setting.name();
            let snake = name.replace('-', "_");
            assert_eq!(
                setting.env(),
                format!("TOKENCACHE_{}", snake.to_ascii_uppercase()),
                "--{name}"
            );
            let expected = match section(setting.file()) {
                // The one exception: `--store` is the section itself.
                Some("store") if name == "store" => "url".to_owned(),
                Some(section) => snake
                    .strip_prefix(&format!("{section}_"))
                    .unwrap_or(&snake)
                    .to_owned(),
                None => snake.clone(),
            };
            match setting.file() {
                FileKey::None => assert_eq!(name, "config", "only --config has no file key"),
                // The upstream of a route of its own kind.
                FileKey::RouteKind(kind) => assert_eq!(name, format!("{kind}-upstream")),
                FileKey::Top(key) | FileKey::Route(key) | FileKey::In { key, .. } => {
                    assert_eq!(key, expected, "--{name}");
                }
            }
        }
    }

    #[test]
    fn every_name_is_declared_once() {
        let mut names = HashSet::new();
        let mut keys = HashSet::new();
        for setting in SERVE {
            assert!(names.insert(setting.name()), "--{} twice", setting.name());
            assert!(
                !setting.help().is_empty() && setting.help().ends_with('.'),
                "--{}: help is a sentence",
                setting.name()
            );
            if !matches!(setting.file(), FileKey::None) {
                assert!(
                    keys.insert(setting.file().to_string()),
                    "{}",
                    setting.file()
                );
            }
        }
        for setting in LOGGING {
            assert!(names.contains(setting.name()), "--{}", setting.name());
        }
    }
}
