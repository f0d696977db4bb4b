//! The token cache the proxy keeps: the memory tier, the shared tier behind
//! it, the negative cache and the index of which keys belong to which
//! client, on one clock and one freshness policy.
//!
//! This is the bottom of the proxy's centre: it knows nothing of HTTP,
//! routes or loads; the loader fills it, the routes read it, the admin API
//! purges it.

use std::sync::Arc;

use tokencache_core::{
    CacheKey, CachedToken, Clock, FreshnessPolicy, KeyDeriver, StoreKey, TokenRequest, UnixMillis,
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

    /// Clears both tiers; how many entries the memory tier held.
    pub(crate) async fn purge(&self) -> usize {
        let purged = self.memory.clear();
        self.clients.clear();
        if let Some(tier) = &self.tier {
            let removed = tier.clear().await;
            tracing::info!(memory = purged, shared = ?removed, store = tier.name(), "cache purged");
        } else {
            tracing::info!(memory = purged, "cache purged");
        }
        purged
    }

    /// Drops one client's tokens: from this replica's memory tier (the keys
    /// it noted for the client) and, through the client's tag, from the
    /// shared store for the whole fleet (whose memory tiers let go within
    /// their bound). How many entries, the larger of the two counts.
    pub(crate) async fn purge_client(&self, client_id: &str) -> usize {
        let keys = self.clients.take(client_id);
        for key in &keys {
            self.memory.remove(key);
        }
        let mut purged = keys.len();
        if let Some(tier) = &self.tier {
            let tag = self.deriver.client_tag(client_id);
            if let Some(removed) = tier.clear_client(&tag).await {
                purged = purged.max(usize::try_from(removed).unwrap_or(usize::MAX));
            }
        }
        tracing::info!(client_id, purged, "client's tokens purged");
        purged
    }
}
