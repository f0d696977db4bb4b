//! The Redis shared store of tokencache: a fleet of proxies shares sealed
//! tokens through one Redis server or Redis Cluster (ElastiCache, MemoryDB,
//! Valkey or self-hosted), over TLS (rustls) and with ACL users.
//!
//! [`RedisStore`] implements [`SharedStore`]. It sees only what the contract
//! hands it: an opaque key (an HMAC, in hex), sealed bytes and an expiry.
//!
//! ```no_run
//! use std::sync::Arc;
//! use std::time::Duration;
//! use tokencache_core::SharedStore;
//! use tokencache_redis_store::{RedisConfig, RedisStore};
//!
//! # async fn example() -> Result<(), tokencache_core::StoreError> {
//! let mut config = RedisConfig::parse(
//!     "rediss://tokencache:p%40ssword@my-cache.example.com:6379",
//! )?;
//! config.ca_file = Some("/etc/tokencache/redis-ca.pem".into());
//! config.op_timeout = Duration::from_millis(200);
//! let store: Arc<dyn SharedStore> = Arc::new(RedisStore::connect(config).await?);
//! # Ok(())
//! # }
//! ```
//!
//! # URLs
//! See [`RedisConfig`]: `redis://[user:password@]host[:port][/db]`,
//! `rediss://…` (TLS), `redis-cluster://host:port,host:port,…` and
//! `rediss-cluster://…`.
//!
//! # Key layout
//! ```text
//! {prefix}{<key>}             the sealed entry: a string, SET … PXAT <expiry>
//! {prefix}{<key>}:lease       its load lease: the owner id, SET … NX PX <ttl>
//! {prefix}purges              the fleet's purge log: a hash (epoch,
//!                             generation, log), written compare-and-set
//! {prefix}budget:<group>      a request budget's state: a hash, written
//!                             by one Lua script, expiring an hour after use
//! {prefix}replicas            live replicas: a sorted set of heartbeats
//! ```
//! The prefix is `tokencache:` unless configured. The hex in braces is a
//! Redis Cluster hash tag, so an entry and its lease share a slot. Nothing
//! else is written. A put whose expiry has already passed deletes the
//! entry instead of writing it.
//!
//! # Behaviour
//! - Every operation is bounded by [`RedisConfig::op_timeout`] (250 ms by
//!   default); past it the operation fails with
//!   [`StoreError::Unavailable`], and the caller degrades.
//! - A standalone server is reached through a connection manager, a cluster
//!   through a cluster connection; both reconnect on their own after an
//!   outage, without a new store.
//! - Taking a lease and giving it back are Lua scripts, so a lease is only
//!   extended or released by its holder. Requires Redis 6.2 or later
//!   (`PXAT`).
//! - [`SharedStore::clear`] scans every primary for entries under the
//!   prefix and unlinks them in batches; leases are left to expire, and the
//!   purge log stays (it is what tells the fleet). In a cluster the
//!   primaries are those a live node lists now (`CLUSTER SLOTS`), so a
//!   replica promoted a moment ago is not skipped; a node that fails
//!   mid-purge (a failover in progress) is tried again, up to four rounds.
//! - The purge log is one `HMGET` to read (each replica reads it about
//!   every half second) and a Lua compare-and-set on its generation to
//!   append.
//! - The fleet's request budgets ([`BudgetStore`]): one hash per group,
//!   decided by a Lua script on Redis's clock (`TIME`), so a slot is
//!   atomic across the fleet and no replica's clock matters; replicas
//!   count themselves in a sorted set of heartbeats.
//! - Errors and logs never carry the password; `Debug` redacts it.
//!
//! This crate has no feature flags.

mod budget;
mod config;
mod connection;
mod error;
mod keys;

pub use config::{
    DEFAULT_CONNECT_TIMEOUT, DEFAULT_OP_TIMEOUT, DEFAULT_PORT, DEFAULT_PREFIX, RedisConfig,
    RedisNode, Topology,
};

use std::fmt;
use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use redis::cluster_routing::{RoutingInfo, SingleNodeRoutingInfo};
use redis::{RedisResult, Script, Value};
use tokencache_core::budget::{
    BudgetLimits, BudgetStanding, SlotAnswer, SlotRequest, ThrottleReport,
};
use tokencache_core::{
    BudgetStore, ClientTag, Clock, LeaseOwner, PurgeLog, PurgeMark, PurgeScope, SharedStore,
    StoreError, StoreFuture, StoreKey, SystemClock, UnixMillis,
};

use crate::config::Password;
use crate::connection::Conn;
use crate::error::{store_error, timed_out};
use crate::keys::KeyLayout;

/// Takes a lease if it is free; extends it if the caller already holds it.
/// `KEYS[1]` the lease, `ARGV[1]` the owner, `ARGV[2]` the lifetime in ms.
const TRY_LEASE: &str = r"
if redis.call('SET', KEYS[1], ARGV[1], 'NX', 'PX', ARGV[2]) then
  return 1
end
if redis.call('GET', KEYS[1]) == ARGV[1] then
  redis.call('PEXPIRE', KEYS[1], ARGV[2])
  return 1
end
return 0
";

/// Deletes a lease only if the caller holds it.
/// `KEYS[1]` the lease, `ARGV[1]` the owner.
const RELEASE_LEASE: &str = r"
if redis.call('GET', KEYS[1]) == ARGV[1] then
  return redis.call('DEL', KEYS[1])
end
return 0
";

/// Replaces the purge log if its generation is still the one read.
/// `KEYS[1]` the log, `ARGV[1]` the generation read (`0` for none),
/// `ARGV[2..4]` the new epoch, generation and log text.
const APPEND_PURGE: &str = r"
local current = redis.call('HGET', KEYS[1], 'generation')
if (current or '0') ~= ARGV[1] then
  return 0
end
redis.call('HSET', KEYS[1], 'epoch', ARGV[2], 'generation', ARGV[3], 'log', ARGV[4])
return 1
";

/// Rounds of read and compare-and-set an announcement may take when other
/// replicas announce at the same moment.
const ANNOUNCE_ROUNDS: usize = 16;

/// Rounds a purge of a cluster makes when a node fails (a failover in
/// progress), and the pause before the next, growing with each round.
const CLEAR_ROUNDS: u32 = 4;
const CLEAR_RETRY_PAUSE: Duration = Duration::from_millis(250);

/// Keys asked for per `SCAN` round, and so unlinked per batch, in a purge.
const CLEAR_BATCH: usize = 500;

/// A [`SharedStore`] in Redis: standalone, cluster, TLS, ACL users.
///
/// Cheap to share behind an `Arc`; every operation runs on multiplexed
/// connections, so concurrent callers do not queue behind one another.
pub struct RedisStore {
    conn: Conn,
    keys: KeyLayout,
    op_timeout: Duration,
    password: Option<Password>,
    url: String,
    try_lease: Script,
    release_lease: Script,
    append_purge: Script,
    budget: Script,
    heartbeat: Script,
}

impl RedisStore {
    /// Connects now: the first connection (TCP, TLS, `AUTH`) and a `PING`
    /// must succeed within [`RedisConfig::connect_timeout`], so a wrong
    /// password or an untrusted certificate shows at start-up. Once
    /// connected, the store reconnects on its own.
    ///
    /// # Errors
    /// [`StoreError::Refused`] for invalid settings, a rejected password or
    /// a missing permission; [`StoreError::Unavailable`] when Redis cannot
    /// be reached (or its certificate is not trusted) in time.
    pub async fn connect(config: RedisConfig) -> Result<Self, StoreError> {
        config.validate()?;
        let conn = connection::connect(&config).await?;
        tracing::debug!(url = %config.redacted_url(), prefix = %config.prefix, "redis store connected");
        Ok(Self::with_conn(conn, &config))
    }

    /// Connects on first use: no I/O here, so a proxy starts while Redis is
    /// down, and operations succeed once it answers. Invalid settings (a
    /// bad prefix, an unreadable CA file) still fail here.
    ///
    /// # Errors
    /// [`StoreError::Refused`] for invalid settings.
    pub async fn connect_lazy(config: RedisConfig) -> Result<Self, StoreError> {
        config.validate()?;
        let conn = connection::connect_lazy(&config)?;
        Ok(Self::with_conn(conn, &config))
    }

    fn with_conn(conn: Conn, config: &RedisConfig) -> Self {
        Self {
            conn,
            keys: KeyLayout::new(&config.prefix),
            op_timeout: config.op_timeout,
            password: config.password().cloned(),
            url: config.redacted_url(),
            try_lease: Script::new(TRY_LEASE),
            release_lease: Script::new(RELEASE_LEASE),
            append_purge: Script::new(APPEND_PURGE),
            budget: Script::new(budget::BUDGET_SCRIPT),
            heartbeat: Script::new(budget::HEARTBEAT_SCRIPT),
        }
    }

    /// Runs one operation on its own connection handle, bounded by the
    /// operation timeout; failures are logged at debug (the proxy counts
    /// and reports them) and returned as store errors.
    async fn run<T, F, Fut>(&self, op: &'static str, f: F) -> Result<T, StoreError>
    where
        F: FnOnce(Conn) -> Fut,
        Fut: Future<Output = RedisResult<T>>,
    {
        let scrub = self.password.as_ref().map(Password::secret);
        let result = match tokio::time::timeout(self.op_timeout, f(self.conn.clone())).await {
            Ok(Ok(value)) => return Ok(value),
            Ok(Err(error)) => store_error(op, &error, scrub),
            Err(_) => timed_out(op, self.op_timeout),
        };
        tracing::debug!(store = "redis", op, error = %result, "redis operation failed");
        Err(result)
    }

    /// The purge log: one `HMGET`.
    async fn read_purge_log(&self) -> Result<PurgeLog, StoreError> {
        let key = self.keys.purges();
        let (epoch, generation, log): (Option<String>, Option<u64>, Option<String>) = self
            .run("purge_log", |mut conn| async move {
                redis::cmd("HMGET")
                    .arg(key)
                    .arg("epoch")
                    .arg("generation")
                    .arg("log")
                    .query_async(&mut conn)
                    .await
            })
            .await?;
        let recent =
            PurgeLog::parse_recent(log.as_deref().unwrap_or_default()).ok_or_else(|| {
                StoreError::Protocol("redis purge_log: a line of the log is not a purge".to_owned())
            })?;
        Ok(PurgeLog {
            epoch: epoch.unwrap_or_default(),
            generation: generation.unwrap_or(0),
            recent,
        })
    }

    /// Appends to the purge log: read, then compare-and-set, again while
    /// another replica's append wins the race.
    async fn append_purge_log(&self, scope: PurgeScope) -> Result<PurgeMark, StoreError> {
        for _ in 0..ANNOUNCE_ROUNDS {
            let log = self.read_purge_log().await?;
            let next = log.appended(scope);
            let key = self.keys.purges();
            let text = next.recent_text();
            let (epoch, generation, read) = (&next.epoch, next.generation, log.generation);
            let written: i64 = self
                .run("announce_purge", |mut conn| async move {
                    self.append_purge
                        .key(key)
                        .arg(read)
                        .arg(epoch)
                        .arg(generation)
                        .arg(text)
                        .invoke_async(&mut conn)
                        .await
                })
                .await?;
            if written == 1 {
                return Ok(next.mark());
            }
        }
        Err(StoreError::Unavailable(format!(
            "redis announce_purge: lost the race {ANNOUNCE_ROUNDS} times"
        )))
    }

    /// Unlinks the entries under the prefix (one client's with `tag`) on
    /// every node.
    async fn clear_matching(&self, tag: Option<&ClientTag>) -> Result<u64, StoreError> {
        let removed = match &self.conn {
            Conn::Standalone(_) => self.clear_node(None, tag).await?,
            Conn::Cluster(_) => {
                let mut attempt = 1;
                loop {
                    match self.clear_primaries(tag).await {
                        Ok(removed) => break removed,
                        // Right after a failover the client may still name
                        // the dead primary; the failure makes it read the
                        // cluster's slots again, so the next round finds
                        // the promoted replica. (Clearing is idempotent.)
                        Err(error) if attempt < CLEAR_ROUNDS => {
                            tracing::debug!(store = "redis", attempt, %error,
                                "redis clear failed on a cluster node; trying again");
                            tokio::time::sleep(CLEAR_RETRY_PAUSE * attempt).await;
                            attempt += 1;
                        }
                        Err(error) => return Err(error),
                    }
                }
            }
        };
        tracing::debug!(
            store = "redis",
            removed,
            client = tag.is_some(),
            "redis store cleared"
        );
        Ok(removed)
    }

    /// Unlinks the entries under the prefix on every primary the cluster
    /// has now.
    async fn clear_primaries(&self, tag: Option<&ClientTag>) -> Result<u64, StoreError> {
        let mut removed = 0;
        for primary in self.primaries_now().await? {
            removed += self.clear_node(Some(primary), tag).await?;
        }
        Ok(removed)
    }

    /// Unlinks every entry under the prefix on one server, or on the
    /// cluster primary at `node`.
    async fn clear_node(
        &self,
        node: Option<(String, u16)>,
        tag: Option<&ClientTag>,
    ) -> Result<u64, StoreError> {
        let pattern = self.keys.entry_pattern(tag);
        let mut cursor: u64 = 0;
        let mut removed = 0;
        loop {
            let mut scan = redis::cmd("SCAN");
            scan.arg(cursor)
                .arg("MATCH")
                .arg(&pattern)
                .arg("COUNT")
                .arg(CLEAR_BATCH);
            let (next, found): (u64, Vec<String>) = self
                .run("clear", |conn| async {
                    match (conn, &node) {
                        (Conn::Cluster(mut conn), Some((host, port))) => {
                            // A node the client holds no connection to (a
                            // replica promoted a moment ago) is an error,
                            // on which the client reconnects from its seed
                            // nodes and tries again: never a silent skip.
                            let routing =
                                RoutingInfo::SingleNode(SingleNodeRoutingInfo::ByAddress {
                                    host: host.clone(),
                                    port: *port,
                                });
                            let value = conn.route_command(scan, routing).await?;
                            Ok(redis::from_redis_value(value)?)
                        }
                        (mut conn, _) => scan.query_async(&mut conn).await,
                    }
                })
                .await?;
            if !found.is_empty() {
                // In a cluster the client splits a many-key UNLINK by slot.
                let count: u64 = self
                    .run("clear", |mut conn| async move {
                        redis::cmd("UNLINK")
                            .arg(&found)
                            .query_async(&mut conn)
                            .await
                    })
                    .await?;
                removed += count;
            }
            if next == 0 {
                return Ok(removed);
            }
            cursor = next;
        }
    }

    /// The primaries of the cluster as a live node sees it now (`CLUSTER
    /// SLOTS`). Not the client's own list: that one lags a failover until a
    /// request for a moved slot fails, and a fan-out to it silently skips a
    /// primary it holds no connection to.
    async fn primaries_now(&self) -> Result<Vec<(String, u16)>, StoreError> {
        let answer = self
            .run("clear", |conn| async move {
                let Conn::Cluster(mut conn) = conn else {
                    return Ok(Value::Array(Vec::new()));
                };
                let routing = RoutingInfo::SingleNode(SingleNodeRoutingInfo::Random);
                let mut slots = redis::cmd("CLUSTER");
                slots.arg("SLOTS");
                conn.route_command(slots, routing).await
            })
            .await?;
        let unexpected =
            || StoreError::Protocol("redis clear: unexpected answer to CLUSTER SLOTS".to_owned());
        let Value::Array(ranges) = answer else {
            return Err(unexpected());
        };
        // Each range: [first slot, last slot, [host, port, id, …], replicas…].
        let mut primaries: Vec<(String, u16)> = Vec::new();
        for range in ranges {
            let Value::Array(fields) = range else {
                return Err(unexpected());
            };
            let Some(Value::Array(primary)) = fields.get(2) else {
                return Err(unexpected());
            };
            let (Some(host), Some(Value::Int(port))) = (primary.first(), primary.get(1)) else {
                return Err(unexpected());
            };
            let host: String = redis::from_redis_value(host.clone()).map_err(|_| unexpected())?;
            let port = u16::try_from(*port).map_err(|_| unexpected())?;
            if !primaries.contains(&(host.clone(), port)) {
                primaries.push((host, port));
            }
        }
        if primaries.is_empty() {
            return Err(StoreError::Unavailable(
                "redis clear: the cluster serves no slot".to_owned(),
            ));
        }
        Ok(primaries)
    }
}

impl fmt::Debug for RedisStore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RedisStore")
            .field("url", &self.url)
            .field("keys", &self.keys)
            .field("op_timeout", &self.op_timeout)
            .finish_non_exhaustive()
    }
}

/// A lifetime in whole milliseconds, at least one (`PX 0` is an error).
fn millis(duration: Duration) -> u64 {
    u64::try_from(duration.as_millis())
        .unwrap_or(u64::MAX)
        .max(1)
}

impl SharedStore for RedisStore {
    fn name(&self) -> &'static str {
        "redis"
    }

    fn get<'a>(&'a self, key: &'a StoreKey) -> StoreFuture<'a, Option<Vec<u8>>> {
        Box::pin(async move {
            let entry = self.keys.entry(key);
            self.run("get", |mut conn| async move {
                redis::cmd("GET").arg(entry).query_async(&mut conn).await
            })
            .await
        })
    }

    fn put<'a>(
        &'a self,
        key: &'a StoreKey,
        sealed: &'a [u8],
        expires_at: UnixMillis,
    ) -> StoreFuture<'a, ()> {
        Box::pin(async move {
            let entry = self.keys.entry(key);
            // Redis would drop a past PXAT itself, but only by its own
            // clock; deleting keeps an already-expired put from leaving the
            // previous value readable, whatever the two clocks say.
            if expires_at <= SystemClock.now() {
                return self
                    .run("put", |mut conn| async move {
                        redis::cmd("DEL").arg(entry).query_async(&mut conn).await
                    })
                    .await;
            }
            self.run("put", |mut conn| async move {
                redis::cmd("SET")
                    .arg(entry)
                    .arg(sealed)
                    .arg("PXAT")
                    .arg(expires_at.0)
                    .query_async(&mut conn)
                    .await
            })
            .await
        })
    }

    fn delete<'a>(&'a self, key: &'a StoreKey) -> StoreFuture<'a, ()> {
        Box::pin(async move {
            let entry = self.keys.entry(key);
            self.run("delete", |mut conn| async move {
                redis::cmd("DEL").arg(entry).query_async(&mut conn).await
            })
            .await
        })
    }

    fn try_lease<'a>(
        &'a self,
        key: &'a StoreKey,
        owner: &'a LeaseOwner,
        ttl: Duration,
    ) -> StoreFuture<'a, bool> {
        Box::pin(async move {
            let lease = self.keys.lease(key);
            let taken: i64 = self
                .run("try_lease", |mut conn| async move {
                    self.try_lease
                        .key(lease)
                        .arg(owner.as_str())
                        .arg(millis(ttl))
                        .invoke_async(&mut conn)
                        .await
                })
                .await?;
            Ok(taken == 1)
        })
    }

    fn release_lease<'a>(
        &'a self,
        key: &'a StoreKey,
        owner: &'a LeaseOwner,
    ) -> StoreFuture<'a, ()> {
        Box::pin(async move {
            let lease = self.keys.lease(key);
            let _released: i64 = self
                .run("release_lease", |mut conn| async move {
                    self.release_lease
                        .key(lease)
                        .arg(owner.as_str())
                        .invoke_async(&mut conn)
                        .await
                })
                .await?;
            Ok(())
        })
    }

    fn clear(&self) -> StoreFuture<'_, Option<u64>> {
        Box::pin(async move { self.clear_matching(None).await.map(Some) })
    }

    fn clear_client<'a>(&'a self, tag: &'a ClientTag) -> StoreFuture<'a, Option<u64>> {
        Box::pin(async move { self.clear_matching(Some(tag)).await.map(Some) })
    }

    fn purge_log(&self) -> StoreFuture<'_, PurgeLog> {
        Box::pin(self.read_purge_log())
    }

    fn announce_purge<'a>(&'a self, scope: &'a PurgeScope) -> StoreFuture<'a, PurgeMark> {
        Box::pin(self.append_purge_log(*scope))
    }

    fn budgets(self: Arc<Self>) -> Option<Arc<dyn BudgetStore>> {
        Some(self)
    }
}

impl RedisStore {
    /// Runs the budget script on the group's hash.
    async fn run_budget(
        &self,
        op: &'static str,
        group: &str,
        args: [String; 6],
    ) -> Result<SlotAnswer, StoreError> {
        let key = self.keys.budget(group);
        let reply: Vec<String> = self
            .run(op, |mut conn| async move {
                let mut invocation = self.budget.key(key);
                for arg in &args {
                    invocation.arg(arg);
                }
                invocation.invoke_async(&mut conn).await
            })
            .await?;
        budget::slot_answer(&reply)
    }
}

impl BudgetStore for RedisStore {
    fn take_slot<'a>(
        &'a self,
        group: &'a str,
        limits: &'a BudgetLimits,
        request: &'a SlotRequest,
        accepted: u32,
    ) -> StoreFuture<'a, SlotAnswer> {
        Box::pin(self.run_budget(
            "budget_slot",
            group,
            budget::slot_args(limits, request, accepted),
        ))
    }

    fn report_throttle<'a>(
        &'a self,
        group: &'a str,
        limits: &'a BudgetLimits,
        report: &'a ThrottleReport,
        accepted: u32,
    ) -> StoreFuture<'a, BudgetStanding> {
        Box::pin(async move {
            let answer = self
                .run_budget(
                    "budget_throttle",
                    group,
                    budget::throttle_args(limits, report, accepted),
                )
                .await?;
            Ok(answer.standing)
        })
    }

    fn heartbeat<'a>(&'a self, replica: &'a LeaseOwner, ttl: Duration) -> StoreFuture<'a, u32> {
        Box::pin(async move {
            let key = self.keys.replicas();
            self.run("heartbeat", |mut conn| async move {
                self.heartbeat
                    .key(key)
                    .arg(replica.as_str())
                    .arg(millis(ttl))
                    .invoke_async(&mut conn)
                    .await
            })
            .await
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lifetimes_are_whole_positive_milliseconds() {
        assert_eq!(millis(Duration::ZERO), 1);
        assert_eq!(millis(Duration::from_micros(1500)), 1);
        assert_eq!(millis(Duration::from_secs(30)), 30_000);
    }
}
