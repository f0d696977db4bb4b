//! The conformance suite every [`SharedStore`] passes.

// A test suite: a failed store operation is a failed check, so it panics.
#![allow(clippy::unwrap_used)]

use std::sync::Arc;
use std::time::Duration;

use tokencache_core::{
    CacheKey, Clock, HmacKey, KeyDeriver, LeaseOwner, PurgeScope, SharedStore, StoreKey,
    SystemClock,
};

/// A key no other test run uses.
fn fresh_key() -> StoreKey {
    StoreKey::of(&CacheKey::from_bytes(rand::random()))
}

/// Runs every check against `store`. Panics on the first failure, naming it.
///
/// Expiry checks wait about a second of real time: stores expire entries by
/// the wall clock.
///
/// # Panics
/// When the store breaks the contract.
pub async fn check_store(store: Arc<dyn SharedStore>) {
    get_put_delete(&*store).await;
    put_replaces(&*store).await;
    binary_and_large_values(&*store).await;
    entries_expire(&*store).await;
    leases_exclude_and_expire(&*store).await;
    concurrent_leases_have_one_winner(Arc::clone(&store)).await;
    clear_removes_entries(&*store).await;
    clear_client_removes_only_that_clients_entries(&*store).await;
    purges_are_logged_in_order(&*store).await;
    concurrent_purges_are_all_logged(Arc::clone(&store)).await;
    clear_leaves_the_purge_log(&*store).await;
}

async fn purges_are_logged_in_order(store: &dyn SharedStore) {
    let name = store.name();
    let before = store.purge_log().await.unwrap();
    let seen = before.mark();
    let tag = KeyDeriver::new(&HmacKey::from_bytes(rand::random())).client_tag("revoked");
    let first = store
        .announce_purge(&PurgeScope::Client(tag))
        .await
        .unwrap();
    assert_eq!(first.generation, seen.generation + 1, "{name}: counted");
    assert!(!first.epoch.is_empty(), "{name}: the log has an epoch");
    let log = store.purge_log().await.unwrap();
    assert_eq!(log.mark(), first, "{name}: the log as announced");
    assert_eq!(
        log.since(&seen),
        [PurgeScope::Client(tag)],
        "{name}: one client purged"
    );
    let second = store.announce_purge(&PurgeScope::All).await.unwrap();
    assert_eq!(
        (second.epoch.as_str(), second.generation),
        (first.epoch.as_str(), first.generation + 1),
        "{name}: same epoch, next generation"
    );
    let log = store.purge_log().await.unwrap();
    assert_eq!(log.since(&first), [PurgeScope::All], "{name}: all purged");
    assert!(log.since(&second).is_empty(), "{name}: nothing new");
}

async fn concurrent_purges_are_all_logged(store: Arc<dyn SharedStore>) {
    let before = store.purge_log().await.unwrap().generation;
    let announcers: Vec<_> = (0..5)
        .map(|_| {
            let store = Arc::clone(&store);
            tokio::spawn(async move { store.announce_purge(&PurgeScope::All).await.unwrap() })
        })
        .collect();
    let mut generations = Vec::new();
    for announcer in announcers {
        generations.push(announcer.await.unwrap().generation);
    }
    generations.sort_unstable();
    assert_eq!(
        generations,
        (before + 1..=before + 5).collect::<Vec<_>>(),
        "{}: every purge has its own generation",
        store.name()
    );
}

async fn clear_leaves_the_purge_log(store: &dyn SharedStore) {
    let mark = store.announce_purge(&PurgeScope::All).await.unwrap();
    store.clear().await.unwrap();
    assert_eq!(
        store.purge_log().await.unwrap().mark(),
        mark,
        "{}: a purge of the entries keeps the log that tells the fleet",
        store.name()
    );
}

async fn clear_client_removes_only_that_clients_entries(store: &dyn SharedStore) {
    let name = store.name();
    let later = SystemClock.now().plus_millis(60_000);
    let deriver = KeyDeriver::new(&HmacKey::from_bytes(rand::random()));
    let (mine, theirs) = (deriver.client_tag("mine"), deriver.client_tag("theirs"));
    let my_keys: Vec<StoreKey> = (0..3)
        .map(|_| StoreKey::tagged(&mine, &CacheKey::from_bytes(rand::random())))
        .collect();
    let their_key = StoreKey::tagged(&theirs, &CacheKey::from_bytes(rand::random()));
    let untagged = fresh_key();
    for key in my_keys.iter().chain([&their_key, &untagged]) {
        store.put(key, b"x", later).await.unwrap();
    }
    let removed = store.clear_client(&mine).await.unwrap();
    if let Some(removed) = removed {
        assert_eq!(removed, 3, "{name}: cleared one client's entries");
    }
    for key in &my_keys {
        assert_eq!(
            store.get(key).await.unwrap(),
            None,
            "{name}: the client's entry"
        );
    }
    assert!(
        store.get(&their_key).await.unwrap().is_some(),
        "{name}: another client's entry"
    );
    assert!(
        store.get(&untagged).await.unwrap().is_some(),
        "{name}: an untagged entry"
    );
    store.delete(&their_key).await.unwrap();
    store.delete(&untagged).await.unwrap();
}

async fn get_put_delete(store: &dyn SharedStore) {
    let key = fresh_key();
    let name = store.name();
    assert_eq!(
        store.get(&key).await.unwrap(),
        None,
        "{name}: a missing key"
    );
    let later = SystemClock.now().plus_millis(60_000);
    store.put(&key, b"sealed-1", later).await.unwrap();
    assert_eq!(
        store.get(&key).await.unwrap().as_deref(),
        Some(&b"sealed-1"[..]),
        "{name}: put then get"
    );
    store.delete(&key).await.unwrap();
    assert_eq!(store.get(&key).await.unwrap(), None, "{name}: deleted");
    store.delete(&key).await.unwrap();
}

async fn put_replaces(store: &dyn SharedStore) {
    let key = fresh_key();
    let later = SystemClock.now().plus_millis(60_000);
    store.put(&key, b"first", later).await.unwrap();
    store.put(&key, b"second", later).await.unwrap();
    assert_eq!(
        store.get(&key).await.unwrap().as_deref(),
        Some(&b"second"[..]),
        "{}: put replaces",
        store.name()
    );
    store.delete(&key).await.unwrap();
}

async fn binary_and_large_values(store: &dyn SharedStore) {
    let key = fresh_key();
    let value: Vec<u8> = (0..16_384u32).map(|i| (i % 256) as u8).collect();
    let later = SystemClock.now().plus_millis(60_000);
    store.put(&key, &value, later).await.unwrap();
    assert_eq!(
        store.get(&key).await.unwrap(),
        Some(value),
        "{}: 16 KiB of binary",
        store.name()
    );
    store.delete(&key).await.unwrap();
}

async fn entries_expire(store: &dyn SharedStore) {
    let name = store.name();
    let past = fresh_key();
    let now = SystemClock.now();
    store
        .put(&past, b"stale", tokencache_core::UnixMillis(now.0 - 1_000))
        .await
        .unwrap();
    assert_eq!(
        store.get(&past).await.unwrap(),
        None,
        "{name}: expiry in the past"
    );
    let soon = fresh_key();
    store
        .put(&soon, b"brief", now.plus_millis(700))
        .await
        .unwrap();
    assert!(
        store.get(&soon).await.unwrap().is_some(),
        "{name}: before expiry"
    );
    tokio::time::sleep(Duration::from_millis(1_300)).await;
    assert_eq!(
        store.get(&soon).await.unwrap(),
        None,
        "{name}: after expiry"
    );
}

async fn leases_exclude_and_expire(store: &dyn SharedStore) {
    let name = store.name();
    let key = fresh_key();
    let (a, b) = (LeaseOwner::new("owner-a"), LeaseOwner::new("owner-b"));
    let ttl = Duration::from_secs(30);
    assert!(
        store.try_lease(&key, &a, ttl).await.unwrap(),
        "{name}: a free lease"
    );
    assert!(
        !store.try_lease(&key, &b, ttl).await.unwrap(),
        "{name}: a held lease"
    );
    assert!(
        store.try_lease(&key, &a, ttl).await.unwrap(),
        "{name}: the holder again"
    );
    store.release_lease(&key, &b).await.unwrap();
    assert!(
        !store.try_lease(&key, &b, ttl).await.unwrap(),
        "{name}: a non-holder cannot release"
    );
    store.release_lease(&key, &a).await.unwrap();
    assert!(
        store.try_lease(&key, &b, ttl).await.unwrap(),
        "{name}: released"
    );
    store.release_lease(&key, &b).await.unwrap();

    // A lease whose holder vanished expires.
    let brief = fresh_key();
    assert!(
        store
            .try_lease(&brief, &a, Duration::from_millis(500))
            .await
            .unwrap()
    );
    tokio::time::sleep(Duration::from_millis(1_200)).await;
    assert!(
        store.try_lease(&brief, &b, ttl).await.unwrap(),
        "{name}: an expired lease is free"
    );
    store.release_lease(&brief, &b).await.unwrap();
    // The lease does not shadow the entry under the same key.
    let later = SystemClock.now().plus_millis(60_000);
    assert!(store.try_lease(&key, &a, ttl).await.unwrap());
    store.put(&key, b"value", later).await.unwrap();
    assert_eq!(
        store.get(&key).await.unwrap().as_deref(),
        Some(&b"value"[..])
    );
    store.release_lease(&key, &a).await.unwrap();
    assert_eq!(
        store.get(&key).await.unwrap().as_deref(),
        Some(&b"value"[..])
    );
    store.delete(&key).await.unwrap();
}

async fn concurrent_leases_have_one_winner(store: Arc<dyn SharedStore>) {
    let key = fresh_key();
    let contenders: Vec<_> = (0..16)
        .map(|n| {
            let store = Arc::clone(&store);
            let key = key.clone();
            tokio::spawn(async move {
                let owner = LeaseOwner::new(format!("contender-{n}"));
                store
                    .try_lease(&key, &owner, Duration::from_secs(30))
                    .await
                    .unwrap()
            })
        })
        .collect();
    let mut winners = 0;
    for contender in contenders {
        if contender.await.unwrap() {
            winners += 1;
        }
    }
    assert_eq!(winners, 1, "{}: one lease holder at a time", store.name());
}

async fn clear_removes_entries(store: &dyn SharedStore) {
    let later = SystemClock.now().plus_millis(60_000);
    let keys: Vec<StoreKey> = (0..3).map(|_| fresh_key()).collect();
    for key in &keys {
        store.put(key, b"x", later).await.unwrap();
    }
    let removed = store.clear().await.unwrap();
    if let Some(removed) = removed {
        assert!(removed >= 3, "{}: cleared {removed}", store.name());
    }
    for key in &keys {
        assert_eq!(
            store.get(key).await.unwrap(),
            None,
            "{}: cleared",
            store.name()
        );
    }
}
