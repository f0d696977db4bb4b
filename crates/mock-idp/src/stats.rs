//! Counters of token requests, by client, grant type and status.

use std::collections::{BTreeMap, VecDeque};
use std::sync::{Mutex, PoisonError};
use std::time::Duration;

use tokio::time::Instant;

use serde::{Deserialize, Serialize};

use crate::faults::Fault;

/// The grant label of a token request that named no grant type.
pub const NO_GRANT: &str = "none";

/// A snapshot of the token-endpoint counters (`GET /stats`).
///
/// A request is counted in `token_requests`, `by_client` and `by_grant` when
/// it arrives, before the configured latency, whatever its outcome, and in
/// the fault counters (`throttled` to `garbage`) as soon as its fault is
/// drawn, also on arrival; it is counted in `by_status` (and
/// `tokens_issued`, if it got a token) when it is answered. So while
/// requests are in flight the sum of `by_status` is less than
/// `token_requests`, and a request whose caller hung up during the latency,
/// or that was reset or left hanging, never reaches `by_status`.
#[derive(Debug, Clone, Serialize, Deserialize, Default, PartialEq, Eq)]
pub struct Stats {
    /// Every `POST /oauth2/token`.
    pub token_requests: u64,
    /// Access tokens issued (answers with status 200).
    pub tokens_issued: u64,
    /// Requests by the client id they claimed (from `Authorization: Basic` or
    /// the body's `client_id`), authenticated or not. Requests that claimed
    /// none are not in this map.
    pub by_client: BTreeMap<String, u64>,
    /// Requests by their `grant_type`, or [`NO_GRANT`] when they had none
    /// (or their parameters could not be read).
    pub by_grant: BTreeMap<String, u64>,
    /// Answers by HTTP status code.
    pub by_status: BTreeMap<u16, u64>,
    /// Requests refused by the rate limit (`429`, or `400
    /// TooManyRequestsException`).
    #[serde(default)]
    pub throttled: u64,
    /// Requests whose connection was closed without an answer.
    #[serde(default)]
    pub resets: u64,
    /// Requests left hanging, never answered.
    #[serde(default)]
    pub hangs: u64,
    /// Requests answered `500` or `503` on purpose.
    #[serde(default)]
    pub server_errors: u64,
    /// Requests answered `200` with a body that is not a token.
    #[serde(default)]
    pub garbage: u64,
    /// The most token requests that arrived within any one second (a
    /// sliding window over arrival times): what a rate limit upstream of
    /// the IdP let through at its busiest.
    #[serde(default)]
    pub peak_per_second: u64,
    /// Token requests by whole second since the first (the first hour),
    /// to see where a peak was.
    #[serde(default)]
    pub per_second: Vec<u64>,
    /// The W3C `traceparent` header of the last token request that carried
    /// one: a proxy exporting traces sends its span's context upstream.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_traceparent: Option<String>,
}

/// The seconds [`Stats::per_second`] counts.
const PER_SECOND_KEPT: usize = 3600;

/// The live counters behind [`Stats`].
#[derive(Debug, Default)]
pub(crate) struct StatsRecorder {
    // One lock for all counters, so a snapshot is consistent. The mock IdP is
    // not on the proxy's hit path; its throughput is bounded by RSA signing.
    stats: Mutex<Stats>,
    /// Arrival times of the token requests of the last second, and when
    /// the first arrived.
    recent: Mutex<(VecDeque<Instant>, Option<Instant>)>,
}

impl StatsRecorder {
    fn with<T>(&self, f: impl FnOnce(&mut Stats) -> T) -> T {
        // Counters stay meaningful after a panic elsewhere: ignore poisoning.
        f(&mut self.stats.lock().unwrap_or_else(PoisonError::into_inner))
    }

    /// Counts an arriving token request.
    pub(crate) fn record_request(&self, client_id: Option<&str>, grant_type: Option<&str>) {
        let (in_last_second, second) = {
            let now = Instant::now();
            let mut guard = self.recent.lock().unwrap_or_else(PoisonError::into_inner);
            let (recent, first) = &mut *guard;
            while recent
                .front()
                .is_some_and(|at| now.duration_since(*at) >= Duration::from_secs(1))
            {
                recent.pop_front();
            }
            recent.push_back(now);
            let first = *first.get_or_insert(now);
            let second = usize::try_from(now.duration_since(first).as_secs()).unwrap_or(usize::MAX);
            (recent.len() as u64, second)
        };
        self.with(|stats| {
            stats.peak_per_second = stats.peak_per_second.max(in_last_second);
            if second < PER_SECOND_KEPT {
                if stats.per_second.len() <= second {
                    stats.per_second.resize(second + 1, 0);
                }
                stats.per_second[second] += 1;
            }
            stats.token_requests += 1;
            if let Some(client_id) = client_id {
                *stats.by_client.entry(client_id.to_owned()).or_default() += 1;
            }
            *stats
                .by_grant
                .entry(grant_type.unwrap_or(NO_GRANT).to_owned())
                .or_default() += 1;
        });
    }

    /// Keeps a token request's `traceparent`.
    pub(crate) fn record_traceparent(&self, traceparent: &str) {
        self.with(|stats| stats.last_traceparent = Some(traceparent.to_owned()));
    }

    /// Counts the fault drawn for a token request.
    pub(crate) fn record_fault(&self, fault: &Fault) {
        self.with(|stats| {
            let counter = match fault {
                Fault::Throttled { .. } => &mut stats.throttled,
                Fault::Reset => &mut stats.resets,
                Fault::Hang => &mut stats.hangs,
                Fault::ServerError(_) => &mut stats.server_errors,
                Fault::Garbage => &mut stats.garbage,
            };
            *counter += 1;
        });
    }

    /// Counts the answer to a token request, and the token if it got one.
    pub(crate) fn record_answer(&self, status: u16, token_issued: bool) {
        self.with(|stats| {
            *stats.by_status.entry(status).or_default() += 1;
            if token_issued {
                stats.tokens_issued += 1;
            }
        });
    }

    pub(crate) fn snapshot(&self) -> Stats {
        self.with(|stats| stats.clone())
    }

    pub(crate) fn reset(&self) {
        *self.recent.lock().unwrap_or_else(PoisonError::into_inner) = (VecDeque::new(), None);
        self.with(|stats| *stats = Stats::default());
    }

    pub(crate) fn token_requests(&self) -> u64 {
        self.with(|stats| stats.token_requests)
    }

    pub(crate) fn token_requests_for(&self, client_id: &str) -> u64 {
        self.with(|stats| stats.by_client.get(client_id).copied().unwrap_or(0))
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;

    #[test]
    fn the_busiest_second_is_remembered() {
        let recorder = StatsRecorder::default();
        for _ in 0..5 {
            recorder.record_request(None, None);
        }
        assert_eq!(recorder.snapshot().peak_per_second, 5);
        recorder.reset();
        recorder.record_request(None, None);
        assert_eq!(recorder.snapshot().peak_per_second, 1);
    }

    #[test]
    fn counts_and_resets() {
        let recorder = StatsRecorder::default();
        recorder.record_request(Some("a"), Some("client_credentials"));
        recorder.record_answer(200, true);
        recorder.record_request(Some("a"), None);
        recorder.record_answer(400, false);
        recorder.record_request(None, Some("password"));
        assert_eq!(recorder.token_requests(), 3);
        assert_eq!(recorder.token_requests_for("a"), 2);
        assert_eq!(recorder.token_requests_for("b"), 0);
        let stats = recorder.snapshot();
        assert_eq!(stats.tokens_issued, 1);
        assert_eq!(stats.by_grant["client_credentials"], 1);
        assert_eq!(stats.by_grant["none"], 1);
        assert_eq!(stats.by_grant["password"], 1);
        assert_eq!(stats.by_status[&200], 1);
        assert_eq!(stats.by_status[&400], 1);
        recorder.reset();
        assert_eq!(recorder.snapshot(), Stats::default());
    }

    #[test]
    fn counts_faults() {
        let recorder = StatsRecorder::default();
        for fault in [
            Fault::Throttled {
                style: crate::ThrottleStyle::Http429,
                retry_after_secs: 1,
            },
            Fault::Reset,
            Fault::Reset,
            Fault::Hang,
            Fault::ServerError(axum::http::StatusCode::SERVICE_UNAVAILABLE),
            Fault::Garbage,
        ] {
            recorder.record_fault(&fault);
        }
        // Garbage is a 200 but not a token.
        recorder.record_answer(200, false);
        let stats = recorder.snapshot();
        assert_eq!(
            (stats.throttled, stats.resets, stats.hangs),
            (1, 2, 1),
            "{stats:?}"
        );
        assert_eq!((stats.server_errors, stats.garbage), (1, 1), "{stats:?}");
        assert_eq!(stats.tokens_issued, 0);
        assert_eq!(stats.by_status[&200], 1);
    }

    #[test]
    fn json_round_trip() {
        let recorder = StatsRecorder::default();
        recorder.record_request(Some("a"), Some("client_credentials"));
        recorder.record_answer(200, true);
        recorder.record_fault(&Fault::Hang);
        let without_traceparent = serde_json::to_string(&recorder.snapshot()).unwrap();
        assert!(
            !without_traceparent.contains("traceparent"),
            "{without_traceparent}"
        );
        let traceparent = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01";
        recorder.record_traceparent(traceparent);
        let stats = recorder.snapshot();
        assert_eq!(stats.last_traceparent.as_deref(), Some(traceparent));
        let json = serde_json::to_string(&stats).unwrap();
        assert!(json.contains(r#""by_status":{"200":1}"#), "{json}");
        assert!(json.contains(r#""hangs":1"#), "{json}");
        assert_eq!(serde_json::from_str::<Stats>(&json).unwrap(), stats);
    }
}
