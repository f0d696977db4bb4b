//! Reading what a proxy answered: a token answer's status, `Cache-Status`
//! and JSON body in one call, and one series of its Prometheus metrics.
//!
//! ```no_run
//! use tokencache_test_support::answers::{answer_of, metric};
//! # async fn example(proxy: tokencache_test_support::ProxyServer) {
//! let (status, cache_status, body) =
//!     answer_of(proxy.token_request("demo-client", "demo-secret", "grant_type=client_credentials").await)
//!         .await;
//! assert_eq!((status, cache_status.as_str()), (200, "tokencache; fwd=miss; stored"));
//! assert!(body["access_token"].is_string());
//! let misses = metric(&proxy.metrics().await, r#"tokencache_requests_total{outcome="miss"}"#);
//! assert_eq!(misses, Some(1));
//! # }
//! ```

use serde_json::Value;

/// The status, the `Cache-Status` header (empty when there is none) and the
/// JSON body of `response`.
///
/// The proxy answers JSON on every path, its own errors included, so a body
/// that is not JSON fails the test here, with the text in the message.
///
/// # Panics
/// If `Cache-Status` is not visible ASCII, or the body cannot be read or is
/// not JSON.
pub async fn answer_of(response: reqwest::Response) -> (u16, String, Value) {
    let status = response.status().as_u16();
    let cache_status = response
        .headers()
        .get("cache-status")
        .map(|value| {
            value
                .to_str()
                .unwrap_or_else(|error| panic!("Cache-Status is not text: {error}"))
                .to_owned()
        })
        .unwrap_or_default();
    let text = response
        .text()
        .await
        .unwrap_or_else(|error| panic!("reading a {status} answer: {error}"));
    let body = serde_json::from_str(&text)
        .unwrap_or_else(|error| panic!("a {status} answer that is not JSON ({error}): {text:?}"));
    (status, cache_status, body)
}

/// The value of `series` in the Prometheus text `metrics`: its name and
/// labels as the exporter prints them, e.g.
/// `tokencache_refreshes_total{result="ok"}`, or `None` when no series
/// matches or a value is not a whole number.
///
/// The labels given need not be all of a series' labels: the values of
/// every series of that name carrying them are summed, so
/// `tokencache_requests_total{outcome="miss"}` counts the misses of every
/// route. A name without labels matches only a series without labels.
#[must_use]
pub fn metric(metrics: &str, series: &str) -> Option<u64> {
    let (name, wanted) = match series.split_once('{') {
        Some((name, labels)) => (name, Some(labels.trim_end_matches('}'))),
        None => (series, None),
    };
    let wanted: Vec<&str> = wanted.map_or_else(Vec::new, |labels| labels.split(',').collect());
    let mut total = None;
    for line in metrics.lines().filter(|line| !line.starts_with('#')) {
        let Some((key, value)) = line.rsplit_once(' ') else {
            continue;
        };
        let matches = match key.split_once('{') {
            // Label values holding `,` are not used by the proxy.
            Some((found, labels)) => {
                let labels: Vec<&str> = labels.trim_end_matches('}').split(',').collect();
                found == name
                    && !wanted.is_empty()
                    && wanted.iter().all(|label| labels.contains(label))
            }
            None => key == name && wanted.is_empty(),
        };
        if matches {
            let value: u64 = value.trim().parse().ok()?;
            total = Some(total.unwrap_or(0) + value);
        }
    }
    total
}

#[cfg(test)]
mod tests {
    use super::metric;

    const TEXT: &str = "\
# HELP tokencache_requests_total Token requests by outcome.
# TYPE tokencache_requests_total counter
tokencache_requests_total{outcome=\"hit\"} 41
tokencache_requests_total{outcome=\"miss\"} 2
tokencache_requests_total{outcome=\"miss\",route=\"/b\"} 3
tokencache_cache_entries_bytes 512
tokencache_cache_entries 1
";

    #[test]
    fn reads_the_series_named_and_no_other() {
        assert_eq!(
            metric(TEXT, r#"tokencache_requests_total{outcome="miss"}"#),
            Some(5)
        );
        assert_eq!(
            metric(TEXT, r#"tokencache_requests_total{outcome="hit"}"#),
            Some(41)
        );
        assert_eq!(metric(TEXT, "tokencache_cache_entries"), Some(1));
        assert_eq!(
            metric(TEXT, r#"tokencache_requests_total{route="/b"}"#),
            Some(3)
        );
    }

    #[test]
    fn an_absent_series_is_none() {
        assert_eq!(
            metric(TEXT, r#"tokencache_requests_total{outcome="error"}"#),
            None
        );
        assert_eq!(metric(TEXT, "tokencache_requests_total"), None);
    }
}
