//! `--store`: which shared store, with which keys; and `tokencache store
//! init`.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use base64::Engine as _;
use tokencache_core::{EncryptionKey, KeyRing, SharedStore, SystemClock};
use tokencache_dynamodb_store::{DynamoDbConfig, DynamoDbStore};
use tokencache_memory_store::InProcessSharedStore;
use tokencache_proxy::SharedStoreConfig;
use tokencache_redis_store::{RedisConfig, RedisStore};

use crate::environment::Environment;
use crate::settings::error::{SettingsError, invalid};

/// The environment variable holding encryption keys (base64; several,
/// comma-separated, the first active).
pub const ENCRYPTION_KEY_VAR: &str = "TOKENCACHE_ENCRYPTION_KEY";

/// Which store holds the cache.
#[derive(Clone, PartialEq, Eq)]
pub enum StoreSpec {
    /// The proxy's memory only.
    Memory,
    /// Redis or Redis Cluster, by URL (`redis://`, `rediss://`,
    /// `redis-cluster://`, `rediss-cluster://`).
    Redis(String),
    /// A DynamoDB table.
    DynamoDb(String),
}

impl std::fmt::Debug for StoreSpec {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Memory => f.write_str("memory"),
            // The URL may hold a password.
            Self::Redis(url) => match RedisConfig::parse(url) {
                Ok(config) => write!(f, "{}", config.redacted_url()),
                Err(_) => f.write_str("redis://[unparsable]"),
            },
            Self::DynamoDb(table) => write!(f, "dynamodb://{table}"),
        }
    }
}

impl StoreSpec {
    /// Parses `--store`.
    ///
    /// # Errors
    /// What is wrong: an unknown scheme, or a bad Redis URL. The message
    /// never quotes the URL, which may hold a password.
    pub fn parse(text: &str) -> Result<Self, String> {
        let text = text.trim();
        if text.eq_ignore_ascii_case("memory") {
            return Ok(Self::Memory);
        }
        if let Some(table) = text.strip_prefix("dynamodb://") {
            if table.is_empty() || table.contains('/') {
                return Err("expected dynamodb://TABLE".to_owned());
            }
            return Ok(Self::DynamoDb(table.to_owned()));
        }
        let scheme = text.split("://").next().unwrap_or_default();
        if matches!(
            scheme,
            "redis" | "rediss" | "redis-cluster" | "rediss-cluster"
        ) {
            RedisConfig::parse(text).map_err(|error| error.to_string())?;
            return Ok(Self::Redis(text.to_owned()));
        }
        Err(
            "expected memory, redis://, rediss://, redis-cluster://, rediss-cluster:// \
             or dynamodb://TABLE"
                .to_owned(),
        )
    }

    /// Whether this store is shared (and so needs an encryption key).
    #[must_use]
    pub fn is_shared(&self) -> bool {
        !matches!(self, Self::Memory)
    }
}

/// Where the encryption keys come from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum KeySource {
    /// A file of keys, one per line (base64), the first active; or a file of
    /// exactly 32 raw bytes.
    File(PathBuf),
    /// `TOKENCACHE_ENCRYPTION_KEY`.
    Environment,
    /// A file of base64 KMS ciphertext blobs, one per line, the first
    /// active, decrypted through KMS at start-up.
    Kms(PathBuf),
}

/// Everything needed to open the shared store.
#[derive(Debug, Clone)]
pub struct StoreSettings {
    /// The store.
    pub spec: StoreSpec,
    /// Its keys' source; required for a shared store.
    pub keys: Option<KeySource>,
    /// The CA file for `rediss://`.
    pub ca_file: Option<PathBuf>,
    /// The Redis key prefix.
    pub prefix: String,
    /// The memory tier's bound.
    pub l1_ttl: Duration,
    /// The proxy's bound of one store operation.
    pub op_timeout: Duration,
    /// The Redis client's own bound of one operation, when the user set
    /// one; otherwise the client keeps its own default, which is shorter
    /// than the proxy's so that a slow Redis fails before the proxy gives up
    /// on it.
    pub redis_op_timeout: Option<Duration>,
    /// How long a load's lease lasts (renewed by its holder).
    pub lease_ttl: Duration,
    /// How often the fleet's purge log is read (and the store probed).
    pub purge_poll: Duration,
    /// Consecutive store failures that open the store breaker.
    pub breaker_failures: u32,
}

impl Default for StoreSettings {
    /// The memory store, and the libraries' own defaults for everything a
    /// shared store would use.
    fn default() -> Self {
        // The proxy's shared-tier timings exist only inside a
        // `SharedStoreConfig`, which needs a store and keys: an empty
        // in-process store and a throwaway key, dropped at once, stand in.
        // (Constants for them in the proxy crate would make this go away.)
        let timings = SharedStoreConfig::new(
            Arc::new(InProcessSharedStore::new(Arc::new(SystemClock))),
            KeyRing::new(EncryptionKey::from_bytes([0; 32]), Vec::new()),
        );
        Self {
            spec: StoreSpec::Memory,
            keys: None,
            ca_file: None,
            prefix: tokencache_redis_store::DEFAULT_PREFIX.to_owned(),
            l1_ttl: timings.l1_ttl,
            op_timeout: timings.op_timeout,
            redis_op_timeout: None,
            lease_ttl: timings.lease_ttl,
            purge_poll: timings.purge_poll,
            breaker_failures: timings.breaker_failures,
        }
    }
}

impl StoreSettings {
    /// Checks that a shared store has keys: it refuses to start without.
    ///
    /// # Errors
    /// A shared store without a key source.
    pub fn validate(&self, env: &impl Environment) -> Result<(), SettingsError> {
        if self.spec.is_shared() && self.keys.is_none() && env.var(ENCRYPTION_KEY_VAR).is_none() {
            return Err(invalid(
                "store",
                "a shared store needs an encryption key: --encryption-key-file, \
                 TOKENCACHE_ENCRYPTION_KEY or --encryption-key-kms",
            ));
        }
        Ok(())
    }

    /// Opens the store and loads its keys; `None` for the memory store.
    ///
    /// # Errors
    /// When the keys cannot be loaded or the store configured (an
    /// unreachable Redis is not an error: the proxy starts degraded and
    /// connects when it can).
    pub async fn open(
        &self,
        env: &impl Environment,
    ) -> Result<Option<SharedStoreConfig>, SettingsError> {
        let store: Arc<dyn SharedStore> = match &self.spec {
            StoreSpec::Memory => return Ok(None),
            StoreSpec::Redis(url) => {
                let mut config =
                    RedisConfig::parse(url).map_err(|error| invalid("store", error.to_string()))?;
                config.ca_file.clone_from(&self.ca_file);
                config.prefix.clone_from(&self.prefix);
                if let Some(timeout) = self.redis_op_timeout {
                    config.op_timeout = timeout;
                }
                Arc::new(
                    RedisStore::connect_lazy(config)
                        .await
                        .map_err(|error| invalid("store", error.to_string()))?,
                )
            }
            // One attempt may take the whole `--store-timeout` (the proxy
            // bounds each operation by it anyway).
            StoreSpec::DynamoDb(table) => Arc::new(
                DynamoDbStore::connect(
                    table,
                    DynamoDbConfig::default().with_attempt_timeout(self.op_timeout),
                )
                .await
                .map_err(|error| invalid("store", error.to_string()))?,
            ),
        };
        let ring = self.key_ring(env).await?;
        let mut config = SharedStoreConfig::new(store, ring);
        config.l1_ttl = self.l1_ttl;
        config.op_timeout = self.op_timeout;
        config.lease_ttl = self.lease_ttl;
        config.purge_poll = self.purge_poll;
        config.breaker_failures = self.breaker_failures;
        Ok(Some(config))
    }

    async fn key_ring(&self, env: &impl Environment) -> Result<KeyRing, SettingsError> {
        let keys = match &self.keys {
            Some(KeySource::File(path)) => keys_from_file(path)?,
            Some(KeySource::Kms(path)) => {
                let text = std::fs::read_to_string(path).map_err(|error| {
                    invalid("encryption-key-kms", format!("{}: {error}", path.display()))
                })?;
                let mut keys = Vec::new();
                for line in text.lines().map(str::trim).filter(|l| !l.is_empty()) {
                    let blob = base64::engine::general_purpose::STANDARD
                        .decode(line)
                        .map_err(|_| invalid("encryption-key-kms", "a line is not base64"))?;
                    let key = tokencache_dynamodb_store::decrypt_data_key(
                        &blob,
                        &DynamoDbConfig::default(),
                    )
                    .await
                    .map_err(|error| invalid("encryption-key-kms", error.to_string()))?;
                    keys.push(key);
                }
                keys
            }
            Some(KeySource::Environment) | None => match env.var(ENCRYPTION_KEY_VAR) {
                Some(text) => keys_from_lines(text.split(','), ENCRYPTION_KEY_VAR)?,
                None => Vec::new(),
            },
        };
        let mut keys = keys.into_iter().map(EncryptionKey::from_bytes);
        let active = keys
            .next()
            .ok_or_else(|| invalid("encryption key", "no key given"))?;
        Ok(KeyRing::new(active, keys.collect()))
    }
}

fn keys_from_file(path: &Path) -> Result<Vec<[u8; 32]>, SettingsError> {
    let raw = std::fs::read(path).map_err(|error| {
        invalid(
            "encryption-key-file",
            format!("{}: {error}", path.display()),
        )
    })?;
    if raw.len() == 32 {
        let mut key = [0u8; 32];
        key.copy_from_slice(&raw);
        return Ok(vec![key]);
    }
    let text = String::from_utf8_lossy(&raw);
    keys_from_lines(text.lines(), "encryption-key-file")
}

fn keys_from_lines<'a>(
    lines: impl Iterator<Item = &'a str>,
    setting: &'static str,
) -> Result<Vec<[u8; 32]>, SettingsError> {
    let mut keys = Vec::new();
    for line in lines
        .map(str::trim)
        .filter(|line| !line.is_empty() && !line.starts_with('#'))
    {
        // The message never echoes the value: it is a secret.
        let bytes = base64::engine::general_purpose::STANDARD
            .decode(line)
            .map_err(|_| invalid(setting, "a key is not base64"))?;
        let key: [u8; 32] = bytes
            .try_into()
            .map_err(|_| invalid(setting, "a key is not 32 bytes"))?;
        keys.push(key);
    }
    Ok(keys)
}

/// `tokencache store init dynamodb://TABLE`: creates the table with TTL
/// enabled (idempotent).
///
/// # Errors
/// An unknown store, or DynamoDB's refusal.
pub async fn init(store: &str) -> anyhow::Result<()> {
    match StoreSpec::parse(store).map_err(|message| anyhow::anyhow!("store: {message}"))? {
        StoreSpec::DynamoDb(table) => {
            tokencache_dynamodb_store::create_table(&table, &DynamoDbConfig::default()).await?;
            tracing::info!(table, "DynamoDB table ready, TTL enabled on `exp`");
            Ok(())
        }
        StoreSpec::Redis(_) | StoreSpec::Memory => {
            anyhow::bail!("only dynamodb://TABLE needs creating; Redis and memory need nothing")
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    #[test]
    fn store_specs() {
        assert_eq!(StoreSpec::parse("memory").unwrap(), StoreSpec::Memory);
        assert_eq!(
            StoreSpec::parse("dynamodb://tokens").unwrap(),
            StoreSpec::DynamoDb("tokens".into())
        );
        for url in [
            "redis://127.0.0.1:6379",
            "rediss://user:pa%40ss@cache.example:6380/2",
            "redis-cluster://10.0.0.1:7000,10.0.0.2:7000",
            "rediss-cluster://a:7000,b:7000",
        ] {
            assert!(
                matches!(StoreSpec::parse(url).unwrap(), StoreSpec::Redis(_)),
                "{url}"
            );
        }
        for bad in ["memcached://x", "dynamodb://", "redis://", "nonsense"] {
            assert!(StoreSpec::parse(bad).is_err(), "{bad}");
        }
        let debug = format!("{:?}", StoreSpec::parse("rediss://u:hunter2@h:1").unwrap());
        assert!(!debug.contains("hunter2"), "{debug}");
    }

    #[test]
    fn a_shared_store_needs_a_key() {
        let settings = StoreSettings {
            spec: StoreSpec::Redis("redis://127.0.0.1:6379".into()),
            ..StoreSettings::default()
        };
        let none: HashMap<String, String> = HashMap::new();
        let error = settings.validate(&none).unwrap_err();
        assert!(error.to_string().contains("encryption key"), "{error}");
        let mut env = none.clone();
        env.insert(
            ENCRYPTION_KEY_VAR.into(),
            base64::engine::general_purpose::STANDARD.encode([1u8; 32]),
        );
        assert!(settings.validate(&env).is_ok());
    }

    #[tokio::test]
    async fn key_rings_from_the_environment_and_files() {
        let b64 = |byte: u8| base64::engine::general_purpose::STANDARD.encode([byte; 32]);
        let mut env: HashMap<String, String> = HashMap::new();
        env.insert(ENCRYPTION_KEY_VAR.into(), format!("{},{}", b64(2), b64(1)));
        let settings = StoreSettings::default();
        let ring = settings.key_ring(&env).await.unwrap();
        assert_eq!(ring.active_id(), EncryptionKey::from_bytes([2; 32]).id());

        let dir = std::env::temp_dir().join(format!("tokencache-keys-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let file = dir.join("keys");
        std::fs::write(&file, format!("# active first\n{}\n{}\n", b64(3), b64(2))).unwrap();
        let from_file = StoreSettings {
            keys: Some(KeySource::File(file.clone())),
            ..settings.clone()
        };
        let ring = from_file.key_ring(&HashMap::new()).await.unwrap();
        assert_eq!(ring.active_id(), EncryptionKey::from_bytes([3; 32]).id());
        std::fs::write(&file, "c2hvcnQ=\n").unwrap();
        let error = from_file.key_ring(&HashMap::new()).await.unwrap_err();
        assert!(error.to_string().contains("32 bytes"));
        assert!(!error.to_string().contains("c2hvcnQ"));
        let _ = std::fs::remove_dir_all(&dir);
    }
}
