//! How long the token listener took to answer, by cache status: a
//! histogram of fixed buckets in plain atomics.
//!
//! The exporter's own histograms queue every sample in a shared block list
//! that allocates as it grows; this one is an array of counters, so the hit
//! path pays two relaxed atomic adds and never allocates. It is written in
//! the Prometheus text format next to the exporter's output.

use std::fmt::Write as _;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use crate::outcome::{OUTCOMES, Outcome};
use crate::striped::thread_cell;

/// The metric's name.
pub(crate) const NAME: &str = "tokencache_request_duration_seconds";

/// Upper bounds in seconds: hits answer in microseconds, misses in the
/// upstream's tens of milliseconds, and the tail reaches the load deadline.
const BOUNDS: [f64; 16] = [
    0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5,
    5.0, 10.0,
];

/// The same bounds in nanoseconds, compared on the hit path without floats.
const BOUNDS_NANOS: [u64; 16] = [
    100_000,
    250_000,
    500_000,
    1_000_000,
    2_500_000,
    5_000_000,
    10_000_000,
    25_000_000,
    50_000_000,
    100_000_000,
    250_000_000,
    500_000_000,
    1_000_000_000,
    2_500_000_000,
    5_000_000_000,
    10_000_000_000,
];

/// One outcome's samples: a count per bucket (not cumulative; the last
/// cell is `+Inf`) and the sum of durations in nanoseconds.
#[derive(Default)]
struct Series {
    buckets: [AtomicU64; BOUNDS.len() + 1],
    sum_nanos: AtomicU64,
}

/// The answer latencies of one route, by outcome.
/// Stripes of the series, one per few threads: every hit adds to one
/// bucket and the sum, and with one set of counters the cores would pass
/// those cache lines back and forth on every request.
const STRIPES: usize = 4;

/// One thread's set of series, on cache lines of its own.
#[repr(align(128))]
#[derive(Default)]
struct Stripe([Series; OUTCOMES]);

#[derive(Default)]
pub(crate) struct AnswerLatency {
    stripes: [Stripe; STRIPES],
}

impl std::fmt::Debug for AnswerLatency {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AnswerLatency").finish_non_exhaustive()
    }
}

impl AnswerLatency {
    /// Counts one answer.
    pub(crate) fn record(&self, outcome: Outcome, elapsed: Duration) {
        let nanos = u64::try_from(elapsed.as_nanos()).unwrap_or(u64::MAX);
        let series = &self.stripes[thread_cell() % STRIPES].0[outcome.index()];
        let bucket = BOUNDS_NANOS.partition_point(|bound| *bound < nanos);
        series.buckets[bucket].fetch_add(1, Ordering::Relaxed);
        series.sum_nanos.fetch_add(nanos, Ordering::Relaxed);
    }

    /// Writes the series of `route` (without the `# HELP`/`# TYPE` lines,
    /// which [`header`] writes once for every route).
    #[allow(clippy::cast_precision_loss)] // durations far below 2^53 ns
    pub(crate) fn render(&self, route: &str, out: &mut String) {
        for outcome in Outcome::ALL {
            let stripes = self.stripes.iter().map(|stripe| &stripe.0[outcome.index()]);
            let labels = format!(
                "outcome=\"{}\",route=\"{}\"",
                outcome.label(),
                escape(route)
            );
            let mut cumulative = 0u64;
            for index in 0..=BOUNDS.len() {
                cumulative += stripes
                    .clone()
                    .map(|series| series.buckets[index].load(Ordering::Relaxed))
                    .sum::<u64>();
                let le = BOUNDS
                    .get(index)
                    .map_or_else(|| "+Inf".to_owned(), f64::to_string);
                // Writing to a String cannot fail.
                let _ = writeln!(out, "{NAME}_bucket{{{labels},le=\"{le}\"}} {cumulative}");
            }
            let sum = stripes
                .map(|series| series.sum_nanos.load(Ordering::Relaxed))
                .sum::<u64>() as f64
                / 1e9;
            let _ = writeln!(out, "{NAME}_sum{{{labels}}} {sum}");
            let _ = writeln!(out, "{NAME}_count{{{labels}}} {cumulative}");
        }
    }
}

/// The metric's `# HELP` and `# TYPE` lines.
pub(crate) fn header(out: &mut String) {
    let _ = writeln!(
        out,
        "# HELP {NAME} Time from a token request's arrival to its answer, by route and outcome."
    );
    let _ = writeln!(out, "# TYPE {NAME} histogram");
}

/// A label value as the text format wants it.
pub(crate) fn escape(value: &str) -> String {
    value
        .replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn buckets_are_cumulative_and_count_every_answer() {
        let latency = AnswerLatency::default();
        latency.record(Outcome::Hit, Duration::from_micros(50));
        latency.record(Outcome::Hit, Duration::from_millis(3));
        latency.record(Outcome::Miss, Duration::from_secs(60));
        let mut text = String::new();
        latency.render("/t", &mut text);
        assert!(text.contains(
            "tokencache_request_duration_seconds_bucket{outcome=\"hit\",route=\"/t\",le=\"0.0001\"} 1\n"
        ));
        assert!(text.contains(
            "tokencache_request_duration_seconds_bucket{outcome=\"hit\",route=\"/t\",le=\"0.005\"} 2\n"
        ));
        assert!(text.contains(
            "tokencache_request_duration_seconds_count{outcome=\"hit\",route=\"/t\"} 2\n"
        ));
        assert!(text.contains(
            "tokencache_request_duration_seconds_bucket{outcome=\"miss\",route=\"/t\",le=\"10\"} 0\n"
        ));
        assert!(text.contains(
            "tokencache_request_duration_seconds_bucket{outcome=\"miss\",route=\"/t\",le=\"+Inf\"} 1\n"
        ));
    }

    #[test]
    fn every_threads_answers_are_counted() {
        let latency = std::sync::Arc::new(AnswerLatency::default());
        let threads: Vec<_> = (0..8)
            .map(|_| {
                let latency = std::sync::Arc::clone(&latency);
                std::thread::spawn(move || {
                    for _ in 0..100 {
                        latency.record(Outcome::Hit, Duration::from_micros(20));
                    }
                })
            })
            .collect();
        for thread in threads {
            thread.join().unwrap();
        }
        let mut text = String::new();
        latency.render("/t", &mut text);
        assert!(text.contains(
            "tokencache_request_duration_seconds_count{outcome=\"hit\",route=\"/t\"} 800\n"
        ));
    }

    #[test]
    fn the_bounds_agree() {
        for (seconds, nanos) in BOUNDS.iter().zip(BOUNDS_NANOS) {
            assert!((seconds * 1e9 - nanos as f64).abs() < 1.0);
        }
    }
}
