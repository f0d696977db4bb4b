//! The table's rules, with loads on paused Tokio time and cooldowns on a
//! manual clock.

use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};
use std::time::Duration;

use tokio::time::sleep;

use super::*;

/// A clock that moves only when told.
#[derive(Debug, Default)]
struct ManualClock(AtomicU64);

impl ManualClock {
    fn advance(&self, by: Duration) {
        let millis = u64::try_from(by.as_millis()).unwrap();
        self.0.fetch_add(millis, Ordering::SeqCst);
    }
}

impl Clock for ManualClock {
    fn now(&self) -> UnixMillis {
        UnixMillis(self.0.load(Ordering::SeqCst))
    }
}

fn ms(millis: u64) -> Duration {
    Duration::from_millis(millis)
}

/// A table of `bool` outcomes (`true`: success) cooling down from 100 ms
/// to at most 400 ms on `clock`.
fn table(clock: &Arc<ManualClock>) -> SingleFlight<&'static str, bool> {
    SingleFlight::builder()
        .refresh_backoff(Backoff::new(ms(100), ms(400), 1))
        .clock(Arc::clone(clock) as Arc<dyn Clock>)
        .classify(|succeeded| {
            if *succeeded {
                Outcome::Success
            } else {
                Outcome::Failure { retry_after: None }
            }
        })
        .build()
}

/// A load that counts its runs, takes a second, and yields `value`.
fn counted(
    runs: &Arc<AtomicU32>,
    value: bool,
) -> impl FnOnce() -> BoxFuture<'static, bool> + use<> {
    let runs = Arc::clone(runs);
    move || {
        async move {
            runs.fetch_add(1, Ordering::SeqCst);
            sleep(Duration::from_secs(1)).await;
            value
        }
        .boxed()
    }
}

#[tokio::test(start_paused = true)]
async fn concurrent_joins_share_one_load() {
    let flights = table(&Arc::default());
    let runs = Arc::new(AtomicU32::new(0));
    let joined: Vec<_> = (0..100)
        .map(|_| flights.join("key", counted(&runs, true)).unwrap())
        .collect();
    assert_eq!(joined.iter().filter(|flight| flight.is_leader()).count(), 1);
    assert_eq!(flights.in_flight(), 1);
    for flight in joined {
        assert_eq!(flight.await, Ok(true));
    }
    assert_eq!(runs.load(Ordering::SeqCst), 1);
}

#[tokio::test(start_paused = true)]
async fn other_keys_load_apart() {
    let flights = table(&Arc::default());
    let runs = Arc::new(AtomicU32::new(0));
    let a = flights.join("a", counted(&runs, true)).unwrap();
    let b = flights.join("b", counted(&runs, true)).unwrap();
    assert!(a.is_leader() && b.is_leader());
    assert_eq!(flights.in_flight(), 2);
    assert_eq!((a.await, b.await), (Ok(true), Ok(true)));
    assert_eq!(runs.load(Ordering::SeqCst), 2);
}

#[tokio::test(start_paused = true)]
async fn a_cancelled_caller_does_not_cancel_the_load() {
    let flights = table(&Arc::default());
    let runs = Arc::new(AtomicU32::new(0));
    let finished = Arc::new(AtomicU32::new(0));
    let done = Arc::clone(&finished);
    let leader = flights
        .join("key", move || async move {
            sleep(Duration::from_secs(1)).await;
            done.fetch_add(1, Ordering::SeqCst);
            true
        })
        .unwrap();
    let waiter = flights.join("key", counted(&runs, false)).unwrap();
    // Both give up half-way: a client that disconnected, a timeout.
    assert!(tokio::time::timeout(ms(500), leader).await.is_err());
    assert!(tokio::time::timeout(ms(1), waiter).await.is_err());

    // A caller that comes now still joins the load in progress.
    let late = flights.join("key", counted(&runs, false)).unwrap();
    assert!(!late.is_leader());
    assert_eq!(late.await, Ok(true));
    assert_eq!(finished.load(Ordering::SeqCst), 1);
    assert_eq!(runs.load(Ordering::SeqCst), 0, "no second load");
}

#[tokio::test(start_paused = true)]
async fn a_load_nobody_awaits_still_finishes() {
    let flights = table(&Arc::default());
    let finished = Arc::new(AtomicU32::new(0));
    let done = Arc::clone(&finished);
    drop(
        flights
            .join("key", move || async move {
                sleep(Duration::from_secs(1)).await;
                done.fetch_add(1, Ordering::SeqCst);
                true
            })
            .unwrap(),
    );
    sleep(Duration::from_secs(2)).await;
    assert_eq!(finished.load(Ordering::SeqCst), 1);
    assert_eq!(flights.in_flight(), 0);
}

#[tokio::test(start_paused = true)]
async fn a_panicking_load_frees_its_waiters_with_an_error() {
    let flights = table(&Arc::default());
    let panicking = || async {
        sleep(Duration::from_secs(1)).await;
        panic!("the load broke");
    };
    let leader = flights.join("key", panicking).unwrap();
    let waiter = flights.join("key", panicking).unwrap();
    assert_eq!(leader.await, Err(Error::Panicked));
    assert_eq!(waiter.await, Err(Error::Panicked));
    assert_eq!(flights.in_flight(), 0, "the guard removed the key");

    // The next caller starts afresh.
    let runs = Arc::new(AtomicU32::new(0));
    let next = flights.join("key", counted(&runs, true)).unwrap();
    assert!(next.is_leader());
    assert_eq!(next.await, Ok(true));
}

#[tokio::test(start_paused = true)]
async fn a_panic_while_building_the_load_frees_the_key() {
    let flights = table(&Arc::default());
    let caught = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        flights.join("key", || -> std::future::Ready<bool> {
            panic!("could not build the load")
        })
    }));
    assert!(caught.is_err());
    assert_eq!(flights.in_flight(), 0);
    let runs = Arc::new(AtomicU32::new(0));
    assert!(
        flights
            .join("key", counted(&runs, true))
            .unwrap()
            .is_leader()
    );
}

#[tokio::test(start_paused = true)]
async fn a_finished_load_is_removed() {
    let flights = table(&Arc::default());
    let runs = Arc::new(AtomicU32::new(0));
    assert_eq!(
        flights.join("key", counted(&runs, true)).unwrap().await,
        Ok(true)
    );
    assert_eq!(flights.in_flight(), 0);

    let again = flights.join("key", counted(&runs, true)).unwrap();
    assert!(again.is_leader(), "a finished load is not joined");
    assert_eq!(again.await, Ok(true));
    assert_eq!(runs.load(Ordering::SeqCst), 2);
}

#[tokio::test(start_paused = true)]
async fn found_is_asked_only_when_nothing_is_running() {
    let flights = table(&Arc::default());
    let runs = Arc::new(AtomicU32::new(0));
    let joined = flights
        .join_unless("key", || Some("cached"), counted(&runs, true))
        .unwrap();
    assert!(matches!(joined, Joined::Found("cached")));
    assert_eq!(flights.in_flight(), 0, "nothing started");

    let Joined::Flight(leader) = flights
        .join_unless("key", || None::<&str>, counted(&runs, true))
        .unwrap()
    else {
        panic!("nothing was found, so a load starts");
    };
    let joined = flights
        .join_unless(
            "key",
            || -> Option<&str> { panic!("not asked") },
            counted(&runs, true),
        )
        .unwrap();
    assert!(matches!(joined, Joined::Flight(ref waiter) if !waiter.is_leader()));
    assert_eq!(leader.await, Ok(true));
    assert_eq!(runs.load(Ordering::SeqCst), 1);
}

#[tokio::test(start_paused = true)]
async fn a_refresh_runs_in_the_background_and_callers_join_it() {
    let flights = table(&Arc::default());
    let runs = Arc::new(AtomicU32::new(0));
    assert_eq!(
        flights.refresh("key", counted(&runs, true)),
        Ok(Refresh::Started)
    );
    assert_eq!(
        flights.refresh("key", counted(&runs, true)),
        Ok(Refresh::Running)
    );
    let waiter = flights.join("key", counted(&runs, true)).unwrap();
    assert!(!waiter.is_leader());
    assert_eq!(waiter.await, Ok(true));
    assert_eq!(runs.load(Ordering::SeqCst), 1);
    assert_eq!(flights.in_flight(), 0);
}

/// Fails a refresh of "key" and waits for it to end.
async fn fail_a_refresh(flights: &SingleFlight<&'static str, bool>) {
    let runs = Arc::new(AtomicU32::new(0));
    assert_eq!(
        flights.refresh("key", counted(&runs, false)),
        Ok(Refresh::Started)
    );
    let refresh = flights.join("key", counted(&runs, false)).unwrap();
    assert_eq!(refresh.await, Ok(false));
}

#[tokio::test(start_paused = true)]
async fn refresh_cooldowns_grow_are_capped_and_clear_on_success() {
    let clock = Arc::new(ManualClock::default());
    let flights = table(&clock);
    let runs = Arc::new(AtomicU32::new(0));
    for (failures, ceiling) in [(1, 100), (2, 200), (3, 400), (4, 400), (5, 400)] {
        fail_a_refresh(&flights).await;
        let cooldown = flights.cooldown(&"key").unwrap();
        assert_eq!(cooldown.failures, failures);
        let wait = cooldown.until.millis_since(clock.now());
        assert!(
            (ceiling / 2..=ceiling).contains(&wait),
            "failure {failures}: {wait} ms, ceiling {ceiling} ms"
        );
        assert_eq!(
            flights.refresh("key", counted(&runs, true)),
            Ok(Refresh::CoolingDown)
        );
        clock.advance(ms(wait));
    }
    assert_eq!(
        runs.load(Ordering::SeqCst),
        0,
        "no refresh while cooling down"
    );

    assert_eq!(
        flights.refresh("key", counted(&runs, true)),
        Ok(Refresh::Started)
    );
    assert_eq!(
        flights.join("key", counted(&runs, true)).unwrap().await,
        Ok(true)
    );
    assert_eq!(
        flights.cooldown(&"key"),
        None,
        "a success clears the cooldown"
    );
    assert_eq!(
        flights.refresh("key", counted(&runs, true)),
        Ok(Refresh::Started)
    );
}

#[tokio::test(start_paused = true)]
async fn callers_never_wait_for_a_cooldown() {
    let clock = Arc::new(ManualClock::default());
    let flights = table(&clock);
    fail_a_refresh(&flights).await;
    let runs = Arc::new(AtomicU32::new(0));
    let caller = flights.join("key", counted(&runs, true)).unwrap();
    assert!(
        caller.is_leader(),
        "a caller's load starts despite the cooldown"
    );
    assert_eq!(caller.await, Ok(true));
    assert_eq!(flights.cooldown(&"key"), None, "and its success clears it");
}

#[tokio::test(start_paused = true)]
async fn failed_loads_callers_wait_for_do_not_cool_down() {
    let clock = Arc::new(ManualClock::default());
    let flights = table(&clock);
    let runs = Arc::new(AtomicU32::new(0));
    assert_eq!(
        flights.join("key", counted(&runs, false)).unwrap().await,
        Ok(false)
    );
    assert_eq!(flights.cooldown(&"key"), None);
    assert_eq!(
        flights.refresh("key", counted(&runs, true)),
        Ok(Refresh::Started)
    );
}

#[tokio::test(start_paused = true)]
async fn a_panicking_refresh_cools_down() {
    let clock = Arc::new(ManualClock::default());
    let flights = table(&clock);
    let refreshed = flights.refresh("key", || async {
        sleep(Duration::from_secs(1)).await;
        panic!("the refresh broke");
    });
    assert_eq!(refreshed, Ok(Refresh::Started));
    sleep(Duration::from_secs(2)).await;
    assert_eq!(flights.in_flight(), 0);
    assert_eq!(flights.cooldown(&"key").map(|c| c.failures), Some(1));
}

#[tokio::test(start_paused = true)]
async fn retry_after_is_a_floor_under_the_cooldown() {
    let clock = Arc::new(ManualClock::default());
    let flights: SingleFlight<&str, bool> = SingleFlight::builder()
        .refresh_backoff(Backoff::new(ms(100), ms(400), 1))
        .clock(Arc::clone(&clock) as Arc<dyn Clock>)
        .classify(|_| Outcome::Failure {
            retry_after: Some(Duration::from_secs(10)),
        })
        .build();
    fail_a_refresh(&flights).await;
    let cooldown = flights.cooldown(&"key").unwrap();
    assert_eq!(cooldown.until, clock.now().plus_millis(10_000));
}

#[tokio::test(start_paused = true)]
async fn prune_forgets_cooldowns_long_over() {
    let clock = Arc::new(ManualClock::default());
    let flights = table(&clock);
    fail_a_refresh(&flights).await;
    let until = flights.cooldown(&"key").unwrap().until;
    clock.advance(ms(until.millis_since(clock.now()) + 399));
    flights.prune();
    assert!(
        flights.cooldown(&"key").is_some(),
        "over for less than the cap"
    );
    clock.advance(ms(1));
    flights.prune();
    assert_eq!(flights.cooldown(&"key"), None);
}

#[test]
fn outside_a_runtime_a_load_cannot_start() {
    let flights = table(&Arc::default());
    let runs = Arc::new(AtomicU32::new(0));
    assert_eq!(
        flights.join("key", counted(&runs, true)).unwrap_err(),
        Error::NoRuntime
    );
    assert_eq!(
        flights.refresh("key", counted(&runs, true)),
        Err(Error::NoRuntime)
    );
    assert_eq!(flights.in_flight(), 0, "nothing reserved");
}

#[test]
fn a_runtime_shutting_down_cancels_its_loads() {
    let flights = table(&Arc::default());
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_time()
        .build()
        .unwrap();
    let runs = Arc::new(AtomicU32::new(0));
    let flight = {
        let _entered = runtime.enter();
        flights.join("key", counted(&runs, true)).unwrap()
    };
    drop(runtime);
    assert_eq!(flights.in_flight(), 0, "the dropped task's guard ran");
    let outcome = tokio::runtime::Builder::new_current_thread()
        .build()
        .unwrap()
        .block_on(flight);
    assert_eq!(outcome, Err(Error::Cancelled));
}
