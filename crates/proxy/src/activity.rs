//! What one connection is doing, in a few atomics shared by the three
//! parties that care: the request counter in its service (which writes
//! them), its watchdog (which decides when it has idled too long) and the
//! connection registry (which picks a connection to reclaim when full).
//!
//! Times are whole milliseconds on a [`Ticks`] clock, so they fit in an
//! atomic and compare across connections.

use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, Ordering};

use tokio::sync::Notify;
use tokio::time::{Duration, Instant};

/// Milliseconds since a fixed instant, on tokio's clock (which tests can
/// pause). One per listener, so every connection's times compare.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Ticks {
    epoch: Instant,
}

impl Ticks {
    /// A clock that starts now.
    pub(crate) fn start() -> Self {
        Self {
            epoch: Instant::now(),
        }
    }

    /// Milliseconds since the start.
    pub(crate) fn now(self) -> u64 {
        u64::try_from(self.epoch.elapsed().as_millis()).unwrap_or(u64::MAX)
    }

    /// The instant `ms` milliseconds after the start.
    pub(crate) fn instant(self, ms: u64) -> Instant {
        self.epoch + Duration::from_millis(ms)
    }
}

/// One connection's activity.
#[derive(Debug)]
pub(crate) struct Activity {
    ticks: Ticks,
    /// Requests started on the connection, ever (zero: it never sent a
    /// complete request head).
    requests: AtomicU64,
    /// Requests whose answer is not ready yet.
    in_flight: AtomicU32,
    /// When the connection was accepted or its last request ended: the
    /// watchdog's idle clock, and how the registry ranks reclaim
    /// candidates.
    idle_since: AtomicU64,
    /// Set while the watchdog waits for the requests in flight to end, so
    /// that only then does the end of one cost a wake-up.
    waiting_for_idle: AtomicBool,
    /// Set once the registry has asked the connection to close.
    close_asked: AtomicBool,
    /// Wakes the watchdog when the last request in flight ends.
    became_idle: Notify,
    /// Wakes the watchdog when the registry asks the connection to close.
    close: Notify,
}

/// A reading of an [`Activity`]. Each field is read once, so they may come
/// from slightly different moments; but `idle_since` is read after
/// `in_flight`, so a connection seen idle is never seen idle for longer
/// than it was.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Snapshot {
    /// Requests started, ever.
    pub(crate) requests: u64,
    /// Requests whose answer is not ready yet.
    pub(crate) in_flight: u32,
    /// When the connection was accepted or its last request ended, in
    /// [`Ticks`].
    pub(crate) idle_since: u64,
    /// Whether the registry has asked it to close.
    pub(crate) close_asked: bool,
}

impl Activity {
    /// A connection accepted now, on `ticks`.
    pub(crate) fn new(ticks: Ticks) -> Self {
        Self {
            ticks,
            requests: AtomicU64::new(0),
            in_flight: AtomicU32::new(0),
            idle_since: AtomicU64::new(ticks.now()),
            waiting_for_idle: AtomicBool::new(false),
            close_asked: AtomicBool::new(false),
            became_idle: Notify::new(),
            close: Notify::new(),
        }
    }

    /// Reads the activity.
    pub(crate) fn snapshot(&self) -> Snapshot {
        let requests = self.requests.load(Ordering::Acquire);
        // Before `idle_since`: see `request_ended`.
        let in_flight = self.in_flight.load(Ordering::SeqCst);
        Snapshot {
            requests,
            in_flight,
            idle_since: self.idle_since.load(Ordering::Relaxed),
            close_asked: self.close_asked.load(Ordering::Acquire),
        }
    }

    /// A request has started: on the hit path, so two atomic additions
    /// and nothing else.
    pub(crate) fn request_started(&self) {
        self.in_flight.fetch_add(1, Ordering::SeqCst);
        self.requests.fetch_add(1, Ordering::Release);
    }

    /// A request's answer is ready (or the request was cancelled): on the
    /// hit path too, so a clock read, two atomic updates and a load; the
    /// watchdog is woken only when it waits for this.
    pub(crate) fn request_ended(&self) {
        // Before the count goes down, so that whoever sees the count at
        // zero sees this time too. The latest end wins when several
        // requests of an HTTP/2 connection end at once.
        self.idle_since
            .fetch_max(self.ticks.now(), Ordering::Relaxed);
        if self.in_flight.fetch_sub(1, Ordering::SeqCst) == 1
            && self.waiting_for_idle.load(Ordering::SeqCst)
        {
            // A stored permit if the watchdog is not polling yet: the
            // wake-up is never lost.
            self.became_idle.notify_one();
        }
    }

    /// Completes once no request is in flight (at once if none is).
    pub(crate) async fn idle(&self) {
        loop {
            // Flag, then count: with `request_ended`'s count, then flag
            // (all sequentially consistent), one of the two sides sees the
            // other, so the last end is never missed.
            self.waiting_for_idle.store(true, Ordering::SeqCst);
            if self.in_flight.load(Ordering::SeqCst) == 0 {
                break;
            }
            // Possibly a stale permit: the loop looks again.
            self.became_idle.notified().await;
        }
        self.waiting_for_idle.store(false, Ordering::SeqCst);
    }

    /// Restarts the idle clock now (at the end of a TLS handshake: the
    /// time to send a request head starts there).
    pub(crate) fn restart_idle_clock(&self) {
        self.idle_since.store(self.ticks.now(), Ordering::Relaxed);
    }

    /// Asks the connection to close (it is being reclaimed).
    pub(crate) fn ask_to_close(&self) {
        self.close_asked.store(true, Ordering::Release);
        self.close.notify_one();
    }

    /// Completes once the connection has been asked to close.
    pub(crate) async fn close_asked(&self) {
        // The flag, not only the permit: a second waiter (the watchdog
        // after the TLS handshake's) must see a request the first took.
        if !self.close_asked.load(Ordering::Acquire) {
            self.close.notified().await;
        }
    }

    /// Sets when the connection became idle: tests of the reclaim order.
    #[cfg(test)]
    pub(crate) fn set_idle_since(&self, at: u64) {
        self.idle_since.store(at, Ordering::Relaxed);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(start_paused = true)]
    async fn requests_are_counted_in_flight_and_ever_and_their_end_is_the_idle_time() {
        let ticks = Ticks::start();
        tokio::time::advance(Duration::from_millis(7)).await;
        let activity = Activity::new(ticks);
        assert_eq!(
            activity.snapshot(),
            Snapshot {
                requests: 0,
                in_flight: 0,
                idle_since: 7,
                close_asked: false
            }
        );
        activity.request_started();
        activity.request_started();
        tokio::time::advance(Duration::from_millis(10)).await;
        activity.request_ended();
        let snapshot = activity.snapshot();
        assert_eq!((snapshot.requests, snapshot.in_flight), (2, 1));
        tokio::time::advance(Duration::from_millis(10)).await;
        activity.request_ended();
        let snapshot = activity.snapshot();
        assert_eq!((snapshot.in_flight, snapshot.idle_since), (0, 27));
    }

    #[tokio::test(start_paused = true)]
    async fn waiting_for_idle_ends_with_the_last_request() {
        let activity = Activity::new(Ticks::start());
        // None in flight: at once.
        activity.idle().await;

        activity.request_started();
        activity.request_started();
        let mut idle = std::pin::pin!(activity.idle());
        assert!(futures::poll!(&mut idle).is_pending());
        activity.request_ended();
        assert!(futures::poll!(&mut idle).is_pending());
        activity.request_ended();
        assert!(futures::poll!(&mut idle).is_ready());
    }

    #[tokio::test]
    async fn a_close_request_is_seen_before_and_after_waiting() {
        let activity = Activity::new(Ticks::start());
        activity.ask_to_close();
        tokio::time::timeout(Duration::from_secs(1), activity.close_asked())
            .await
            .expect("seen");
        assert!(activity.snapshot().close_asked);
    }
}
