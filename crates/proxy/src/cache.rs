//! The token cache the proxy keeps: the memory tier, the shared tier behind
//! it, the negative cache and the index of which keys belong to which
//! client, on one clock and one freshness policy.
//!
//! This is the bottom of the proxy's centre: it knows nothing of HTTP,
//! routes or loads; the loader fills it, the routes read it, the admin API
//! purges it.

use std::sync::Arc;

use tokencache_core::{
    CacheKey, CachedToken, Clock, FreshnessPolicy, KeyDeriver, PurgeScope, StoreKey, TokenRequest,
    UnixMillis,
};
use tokencache_memory_store::MemoryStore;
use tokencache_upstream::UpstreamResponse;

use crate::client_index::ClientIndex;
use crate::negative::NegativeCache;
use crate::shared_tier::SharedTier;

/// Both tiers, the negative cache and the client index.
pub(crate) struct TokenCache {
    memory: MemoryStore,
    tier: Option<SharedTier>,
    negative: NegativeCache,
    clients: ClientIndex,
    deriver: KeyDeriver,
    clock: Arc<dyn Clock>,
    policy: FreshnessPolicy,
}

impl TokenCache {
    pub(crate) fn new(
        memory: MemoryStore,
        tier: Option<SharedTier>,
        negative: NegativeCache,
        deriver: KeyDeriver,
        clock: Arc<dyn Clock>,
        policy: FreshnessPolicy,
    ) -> Self {
        Self {
            memory,
            tier,
            negative,
            clients: ClientIndex::default(),
            deriver,
            clock,
            policy,
        }
    }

    /// Now, on the cache's clock.
    pub(crate) fn now(&self) -> UnixMillis {
        self.clock.now()
    }

    /// The freshness policy entries are scheduled by.
    pub(crate) fn policy(&self) -> &FreshnessPolicy {
        &self.policy
    }

    /// The memory tier.
    pub(crate) fn memory(&self) -> &MemoryStore {
        &self.memory
    }

    /// The shared tier, when the fleet has one.
    pub(crate) fn tier(&self) -> Option<&SharedTier> {
        self.tier.as_ref()
    }

    /// The cache key of `request` on `route`.
    pub(crate) fn key(&self, route: &str, request: &TokenRequest<'_>) -> CacheKey {
        self.deriver.derive(route, request)
    }

    /// The shared-store key of `key`: tagged with its client, so one
    /// client's entries can be purged across the fleet.
    pub(crate) fn store_key(&self, key: &CacheKey, client_id: Option<&str>) -> StoreKey {
        match client_id {
            Some(client_id) => StoreKey::tagged(&self.deriver.client_tag(client_id), key),
            None => StoreKey::of(key),
        }
    }

    /// Puts a token in the memory tier: until its end of service, or for
    /// the memory tier's time when a shared tier stands behind it. Whether
    /// it was stored (a token too large for the store is not).
    pub(crate) fn remember(
        &self,
        key: CacheKey,
        token: Arc<CachedToken>,
        client_id: Option<&str>,
        now: UnixMillis,
    ) -> bool {
        let stored = match &self.tier {
            Some(tier) => self
                .memory
                .insert_until(key, token, now.plus(tier.l1_ttl), now),
            None => self.memory.insert(key, token, now),
        };
        if stored && let Some(client_id) = client_id {
            self.clients.record(client_id, key);
        }
        stored
    }

    /// The remembered rejection of `key`, if still valid.
    pub(crate) fn rejection(
        &self,
        key: &CacheKey,
        now: UnixMillis,
    ) -> Option<Arc<UpstreamResponse>> {
        self.negative.get(key, now)
    }

    /// Remembers a client's rejection under `key` for the negative TTL.
    pub(crate) fn remember_rejection(
        &self,
        key: CacheKey,
        answer: Arc<UpstreamResponse>,
        now: UnixMillis,
    ) {
        self.negative.insert(key, answer, now);
    }

    /// Forgets the rejection of `key` (its credentials now work).
    pub(crate) fn forget_rejection(&self, key: &CacheKey) {
        self.negative.remove(key);
    }

    /// Drops entries that can no longer be served and forgets what points
    /// at them; how many the memory tier dropped.
    pub(crate) fn housekeeping(&self, now: UnixMillis) -> usize {
        let removed = self.memory.remove_expired(now);
        self.clients
            .retain(|key| self.memory.get(key, now).is_some());
        self.negative.prune(now);
        removed
    }

    /// Clears both tiers and tells the fleet, whose memory tiers drop
    /// their copies within the purge poll.
    pub(crate) async fn purge(&self) -> Purged {
        let purged = self.memory.clear();
        self.clients.clear();
        let Some(tier) = &self.tier else {
            tracing::info!(memory = purged, "cache purged");
            return Purged {
                purged,
                shared: None,
            };
        };
        // The store first: a replica that drops its copy on the
        // announcement must not find the old entry in the store.
        let removed = tier.clear().await;
        let told = tier.announce(PurgeScope::All).await;
        let shared = SharedPurge {
            store_cleared: removed.is_some(),
            fleet_told: told,
        };
        shared.log(tier.name(), None, purged);
        Purged {
            purged,
            shared: Some(shared),
        }
    }

    /// Drops one client's tokens: from this replica's memory tier (the keys
    /// it noted for the client), from the shared store through the client's
    /// tag, and through the purge log from every replica's memory tier.
    /// How many entries: the larger of the two counts.
    pub(crate) async fn purge_client(&self, client_id: &str) -> Purged {
        let keys = self.clients.take(client_id);
        for key in &keys {
            self.memory.remove(key);
        }
        let mut purged = keys.len();
        let Some(tier) = &self.tier else {
            tracing::info!(client_id, purged, "client's tokens purged");
            return Purged {
                purged,
                shared: None,
            };
        };
        let tag = self.deriver.client_tag(client_id);
        let removed = tier.clear_client(&tag).await;
        if let Some(Some(removed)) = removed {
            purged = purged.max(usize::try_from(removed).unwrap_or(usize::MAX));
        }
        let told = tier.announce(PurgeScope::Client(tag)).await;
        let shared = SharedPurge {
            store_cleared: removed.is_some(),
            fleet_told: told,
        };
        shared.log(tier.name(), Some(client_id), purged);
        Purged {
            purged,
            shared: Some(shared),
        }
    }

    /// Reads the fleet's purge log once and drops what the purges announced
    /// since cover; also the shared store's breaker probe. Nothing without
    /// a shared tier.
    pub(crate) async fn follow_fleet(&self) {
        let Some(tier) = &self.tier else { return };
        if let Some(news) = tier.purges_since_last_read().await {
            for scope in news {
                self.drop_purged(scope);
            }
        }
    }

    /// Drops from the memory tier what another replica's purge covers; how
    /// many entries.
    pub(crate) fn drop_purged(&self, scope: PurgeScope) -> usize {
        let dropped = match scope {
            PurgeScope::All => {
                self.clients.clear();
                self.memory.clear()
            }
            PurgeScope::Client(tag) => {
                let keys = self
                    .clients
                    .take_where(|client_id| self.deriver.client_tag(client_id) == tag);
                for key in &keys {
                    self.memory.remove(key);
                }
                keys.len()
            }
        };
        tracing::info!(
            scope = %scope.encode(), dropped,
            "purge announced by the fleet applied to the memory tier"
        );
        dropped
    }
}

/// What a purge reached.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Purged {
    /// Entries dropped (the memory tier's count, or the store's when
    /// larger).
    pub(crate) purged: usize,
    /// What it did beyond this replica; `None` without a shared tier.
    pub(crate) shared: Option<SharedPurge>,
}

/// What a purge did through the shared store.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct SharedPurge {
    /// Whether the store's entries were removed.
    pub(crate) store_cleared: bool,
    /// Whether the other replicas were told (through the purge log), so
    /// they drop their memory copies within the purge poll.
    pub(crate) fleet_told: bool,
}

impl SharedPurge {
    fn log(self, store: &'static str, client_id: Option<&str>, purged: usize) {
        let client_id = client_id.unwrap_or("");
        if self.store_cleared && self.fleet_told {
            tracing::info!(store, client_id, purged, "purged across the fleet");
        } else {
            // Whatever failed, the other replicas still let go within
            // --l1-ttl, and a purge can be repeated.
            tracing::warn!(
                store,
                client_id,
                purged,
                store_cleared = self.store_cleared,
                fleet_told = self.fleet_told,
                "purge incomplete: the shared store failed; other replicas drop their copies within --l1-ttl"
            );
        }
    }
}
