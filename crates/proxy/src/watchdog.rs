//! When a connection has idled too long and must close.
//!
//! Each connection's task runs its watchdog beside hyper's connection
//! future. hyper calls the service, which counts the request (see
//! [`crate::in_flight`]), on that same task, for HTTP/1.1 and HTTP/2 alike,
//! so a request head hyper has taken is always counted by the time the
//! watchdog next looks: it never closes a connection under a request. The
//! rules:
//!
//! - a connection that has not completed a request head within the header
//!   read timeout of being accepted (of its TLS handshake, over HTTPS) is
//!   closed: hyper's own header timer does not start before the first
//!   bytes, for which the protocol detection waits;
//! - a connection that has served a request and has none in flight is
//!   closed after the idle timeout (over HTTP/1.1, hyper's header timer,
//!   which starts again at each answer, closes it first when it is the
//!   shorter; HTTP/2 has nothing else);
//! - a connection with a request in flight is left alone: the request
//!   timeout and the load deadline bound its requests;
//! - a connection the registry reclaims, or every connection on shutdown,
//!   closes at once.

use std::future::Future;
use std::pin::pin;
use std::time::Duration;

use crate::activity::{Activity, Snapshot, Ticks};

/// Why a connection was closed by the proxy.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Close {
    /// No request head completed within the header read timeout.
    NoRequest,
    /// Idle on keep-alive past the idle timeout.
    Idle,
    /// Reclaimed by the registry to make room for a new connection.
    Reclaimed,
    /// The server is shutting down.
    Shutdown,
}

/// How long a connection may idle.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct IdleRules {
    /// Before its first request head is complete.
    pub(crate) first_request: Duration,
    /// Between requests, on keep-alive.
    pub(crate) between_requests: Duration,
}

/// What the watchdog should do next.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Verdict {
    /// A request is in flight: wait until none is.
    Busy,
    /// Idle: look again at this time (in [`Ticks`]), when it may close.
    OpenUntil(u64),
    /// Close now.
    Expired(Close),
}

impl IdleRules {
    /// What to do about a connection seen as `seen` at `now`.
    fn verdict(self, seen: Snapshot, now: u64) -> Verdict {
        if seen.in_flight > 0 {
            return Verdict::Busy;
        }
        let (limit, reason) = if seen.requests == 0 {
            (self.first_request, Close::NoRequest)
        } else {
            (self.between_requests, Close::Idle)
        };
        let limit = u64::try_from(limit.as_millis()).unwrap_or(u64::MAX);
        let deadline = seen.idle_since.saturating_add(limit);
        if now >= deadline {
            return Verdict::Expired(reason);
        }
        if seen.requests == 0 {
            // Requests do not wake the watchdog, and a first request that
            // comes and goes before the next look switches the limit to
            // the idle timeout, which may be the shorter: look again by
            // then.
            let between = u64::try_from(self.between_requests.as_millis()).unwrap_or(u64::MAX);
            return Verdict::OpenUntil(deadline.min(now.saturating_add(between)));
        }
        Verdict::OpenUntil(deadline)
    }
}

/// Watches `activity` and completes with the reason the connection must
/// close; `shutdown` completing is one.
///
/// Requests do not wake the watchdog: each one only moves the idle time
/// later, and a timer that fires early is set again then, so a busy
/// keep-alive connection costs one timer update per idle period, not one
/// per request.
pub(crate) async fn watch(
    activity: &Activity,
    ticks: Ticks,
    rules: IdleRules,
    shutdown: impl Future<Output = ()>,
) -> Close {
    let mut shutdown = pin!(shutdown);
    let mut expiry = pin!(tokio::time::sleep_until(ticks.instant(0)));
    let mut armed = false;
    loop {
        let busy = match rules.verdict(activity.snapshot(), ticks.now()) {
            Verdict::Expired(reason) => return reason,
            Verdict::Busy => true,
            Verdict::OpenUntil(deadline) => {
                let at = ticks.instant(deadline);
                if !armed || expiry.deadline() > at {
                    expiry.as_mut().reset(at);
                    armed = true;
                }
                false
            }
        };
        tokio::select! {
            biased;
            () = &mut shutdown => return Close::Shutdown,
            () = activity.close_asked() => return Close::Reclaimed,
            () = activity.idle(), if busy => {}
            () = &mut expiry, if !busy => armed = false,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const RULES: IdleRules = IdleRules {
        first_request: Duration::from_millis(2_000),
        between_requests: Duration::from_millis(60_000),
    };

    #[test]
    fn the_rules() {
        let seen = |requests, in_flight, idle_since| Snapshot {
            requests,
            in_flight,
            idle_since,
            close_asked: false,
        };
        // (what the watchdog sees, when) → verdict
        let table = [
            // Accepted at 1 s, nothing sent: 2 s to complete a head.
            (seen(0, 0, 1_000), 1_500, Verdict::OpenUntil(3_000)),
            (seen(0, 0, 1_000), 3_000, Verdict::Expired(Close::NoRequest)),
            // A request in flight: busy, however long it takes.
            (seen(1, 1, 1_000), 2_900, Verdict::Busy),
            (seen(1, 1, 1_000), 90_000, Verdict::Busy),
            // Its answer went at 90 s: idle for 60 s from then.
            (seen(1, 0, 90_000), 90_500, Verdict::OpenUntil(150_000)),
            (seen(1, 0, 90_000), 149_999, Verdict::OpenUntil(150_000)),
            (seen(1, 0, 90_000), 150_000, Verdict::Expired(Close::Idle)),
            // More requests since: the last one's end counts.
            (seen(5, 0, 140_000), 150_000, Verdict::OpenUntil(200_000)),
        ];
        for (snapshot, now, verdict) in table {
            assert_eq!(
                RULES.verdict(snapshot, now),
                verdict,
                "{snapshot:?} at {now}"
            );
        }

        // With an idle timeout shorter than the header read timeout, a
        // connection that has sent nothing yet is looked at again within
        // the idle timeout, in case a request comes and goes meanwhile.
        let short_idle = IdleRules {
            first_request: Duration::from_millis(30_000),
            between_requests: Duration::from_millis(800),
        };
        assert_eq!(
            short_idle.verdict(seen(0, 0, 1_000), 1_500),
            Verdict::OpenUntil(2_300)
        );
        assert_eq!(
            short_idle.verdict(seen(1, 0, 2_000), 2_300),
            Verdict::OpenUntil(2_800)
        );
    }

    #[tokio::test(start_paused = true)]
    async fn an_idle_connection_is_closed_and_a_busy_one_is_not() {
        let ticks = Ticks::start();
        let activity = Activity::new(ticks);
        let started = tokio::time::Instant::now();
        let reason = watch(&activity, ticks, RULES, std::future::pending()).await;
        assert_eq!(reason, Close::NoRequest);
        assert_eq!(started.elapsed(), RULES.first_request);

        let activity = Activity::new(ticks);
        activity.request_started();
        let mut watched = pin!(watch(&activity, ticks, RULES, std::future::pending()));
        // Busy for ten minutes: still open.
        assert!(
            tokio::time::timeout(Duration::from_secs(600), &mut watched)
                .await
                .is_err()
        );
        activity.request_ended();
        let idle_from = tokio::time::Instant::now();
        // Requests that come and go push the close back, each from its end.
        for _ in 0..3 {
            tokio::time::advance(RULES.between_requests / 2).await;
            activity.request_started();
            activity.request_ended();
        }
        let last_end = tokio::time::Instant::now();
        assert_eq!(watched.await, Close::Idle);
        assert_eq!(last_end.elapsed(), RULES.between_requests);
        assert!(idle_from.elapsed() > RULES.between_requests);
    }

    #[tokio::test(start_paused = true)]
    async fn a_reclaim_or_a_shutdown_closes_at_once() {
        let ticks = Ticks::start();
        let activity = Activity::new(ticks);
        activity.request_started();
        activity.ask_to_close();
        let reason = watch(&activity, ticks, RULES, std::future::pending()).await;
        assert_eq!(reason, Close::Reclaimed);

        let activity = Activity::new(ticks);
        let reason = watch(&activity, ticks, RULES, std::future::ready(())).await;
        assert_eq!(reason, Close::Shutdown);
    }
}
