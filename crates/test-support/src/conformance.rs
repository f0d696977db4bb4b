//! The conformance suite every [`SharedStore`] passes, request budgets
//! ([`BudgetStore`]) included.

// A test suite: a failed store operation is a failed check, so it panics.
#![allow(clippy::unwrap_used)]

use std::sync::Arc;
use std::time::Duration;

use tokencache_core::budget::{BudgetLimits, SlotDecision, SlotRequest, ThrottleReport};
use tokencache_core::{
    BudgetStore, CacheKey, Clock, HmacKey, KeyDeriver, LeaseOwner, PurgeScope, SharedStore,
    StoreKey, SystemClock,
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
    let budgets = Arc::clone(&store).budgets().unwrap_or_else(|| {
        panic!(
            "{}: every store of this workspace keeps budgets",
            store.name()
        )
    });
    check_budget_store(&*budgets).await;
}

/// Runs every check of the budget contract against `store`, in groups no
/// other run uses; every store decides on its own clock, so the checks
/// allow for the few milliseconds between two decisions.
///
/// # Panics
/// When the store breaks the contract.
pub async fn check_budget_store(store: &dyn BudgetStore) {
    slots_burst_then_pace(store).await;
    a_throttle_lowers_the_fleets_rate_once_per_round(store).await;
    retry_after_pauses_the_group(store).await;
    heartbeats_count_the_live_replicas(store).await;
}

fn fresh_group() -> String {
    format!("group-{:016x}.example", rand::random::<u64>())
}

fn caller(max_wait: Duration) -> SlotRequest {
    SlotRequest {
        background: false,
        max_wait_micros: u64::try_from(max_wait.as_micros()).unwrap(),
    }
}

const BACKGROUND: SlotRequest = SlotRequest {
    background: true,
    max_wait_micros: 0,
};

async fn slots_burst_then_pace(store: &dyn BudgetStore) {
    // Two a second: slots half a second apart, far more than a slow store
    // (moto) takes to decide, so timings can be checked against the clock.
    let group = fresh_group();
    let limits = BudgetLimits {
        rate_per_sec: 2.0,
        burst: 3,
    };
    let first = tokio::time::Instant::now();
    for i in 0..3 {
        let answer = store
            .take_slot(&group, &limits, &caller(Duration::ZERO), 0)
            .await
            .unwrap();
        assert_eq!(
            answer.decision,
            SlotDecision::Granted { wait_micros: 0 },
            "slot {i} of the burst"
        );
        assert!((answer.standing.rate_per_sec - 2.0).abs() < 1e-9);
    }
    // The burst is spent: the next slot is half a second after the first.
    // A caller that cannot wait is refused, and reserves nothing.
    let refused = store
        .take_slot(&group, &limits, &caller(Duration::from_millis(10)), 0)
        .await
        .unwrap();
    let SlotDecision::Refused { retry_after_micros } = refused.decision else {
        panic!("no slot was free: {refused:?}");
    };
    assert!(
        (300_000..=500_000).contains(&retry_after_micros),
        "{retry_after_micros}"
    );
    assert!(
        matches!(
            store
                .take_slot(&group, &limits, &BACKGROUND, 0)
                .await
                .unwrap()
                .decision,
            SlotDecision::Refused { .. }
        ),
        "a refresh takes no slot from an empty bucket"
    );
    // Callers that can wait get the slots, half a second apart.
    for (n, due) in [(4, 500), (5, 1000)] {
        let asked = tokio::time::Instant::now();
        let answer = store
            .take_slot(&group, &limits, &caller(Duration::from_secs(2)), 0)
            .await
            .unwrap();
        let SlotDecision::Granted { wait_micros } = answer.decision else {
            panic!("a caller that can wait gets slot {n}: {answer:?}");
        };
        let slot = asked + Duration::from_micros(wait_micros);
        let due = first + Duration::from_millis(due);
        assert!(
            slot + Duration::from_millis(150) >= due && slot <= due + Duration::from_millis(20),
            "slot {n} is {:?} from the first, not {:?}",
            slot - first,
            due - first
        );
    }
    // Another group is another budget.
    let other = store
        .take_slot(&fresh_group(), &limits, &caller(Duration::ZERO), 0)
        .await
        .unwrap();
    assert_eq!(other.decision, SlotDecision::Granted { wait_micros: 0 });
}

async fn a_throttle_lowers_the_fleets_rate_once_per_round(store: &dyn BudgetStore) {
    let group = fresh_group();
    let limits = BudgetLimits {
        rate_per_sec: 100.0,
        burst: 1,
    };
    // Twenty answers were accepted (told with the next slot).
    store
        .take_slot(&group, &limits, &caller(Duration::ZERO), 20)
        .await
        .unwrap();
    let throttle = ThrottleReport {
        sent_micros_ago: 0,
        retry_after_micros: None,
    };
    let lowered = store
        .report_throttle(&group, &limits, &throttle, 0)
        .await
        .unwrap();
    assert!(
        (lowered.rate_per_sec - 14.0).abs() < 0.01,
        "0.7 × the 20/s accepted: {lowered:?}"
    );
    assert_eq!(lowered.epoch, 1);
    // A request sent before that decrease says nothing new.
    let stale = store
        .report_throttle(
            &group,
            &limits,
            &ThrottleReport {
                sent_micros_ago: 60_000_000,
                retry_after_micros: None,
            },
            0,
        )
        .await
        .unwrap();
    assert_eq!(stale.epoch, 1, "{stale:?}");
    assert!(stale.rate_per_sec > 13.9, "{stale:?}");
    // Every replica sees the lowered rate.
    let seen = store
        .take_slot(&group, &limits, &caller(Duration::from_secs(1)), 0)
        .await
        .unwrap();
    assert!(seen.standing.rate_per_sec < 15.0, "{seen:?}");
    assert_eq!(seen.standing.epoch, 1);
}

async fn retry_after_pauses_the_group(store: &dyn BudgetStore) {
    let group = fresh_group();
    let limits = BudgetLimits {
        rate_per_sec: 50.0,
        burst: 5,
    };
    let paused = store
        .report_throttle(
            &group,
            &limits,
            &ThrottleReport {
                sent_micros_ago: 0,
                retry_after_micros: Some(1_000_000),
            },
            0,
        )
        .await
        .unwrap();
    assert_eq!(paused.epoch, 2, "a decrease and a pause: {paused:?}");
    let refused = store
        .take_slot(&group, &limits, &caller(Duration::from_millis(500)), 0)
        .await
        .unwrap();
    let SlotDecision::Refused { retry_after_micros } = refused.decision else {
        panic!("the group is paused: {refused:?}");
    };
    assert!(retry_after_micros > 800_000, "{retry_after_micros}");
    let granted = store
        .take_slot(&group, &limits, &caller(Duration::from_secs(2)), 0)
        .await
        .unwrap();
    let SlotDecision::Granted { wait_micros } = granted.decision else {
        panic!("{granted:?}");
    };
    assert!(
        (800_000..=1_000_000).contains(&wait_micros),
        "{wait_micros}"
    );
}

async fn heartbeats_count_the_live_replicas(store: &dyn BudgetStore) {
    let (a, b, c) = (
        LeaseOwner::random(),
        LeaseOwner::random(),
        LeaseOwner::random(),
    );
    let ttl = Duration::from_millis(600);
    assert_eq!(store.heartbeat(&a, ttl).await.unwrap(), 1);
    assert_eq!(store.heartbeat(&b, ttl).await.unwrap(), 2);
    assert_eq!(store.heartbeat(&a, ttl).await.unwrap(), 2, "a again");
    tokio::time::sleep(ttl + Duration::from_millis(400)).await;
    assert_eq!(
        store.heartbeat(&c, ttl).await.unwrap(),
        1,
        "a and b stopped beating"
    );
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
