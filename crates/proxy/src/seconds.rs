//! Header values that count whole seconds (`Age`, `Cache-Status: …; ttl=N`),
//! taken from tables built once per process: a hit answers with them
//! without formatting, allocating, or touching a shared reference count.

use std::sync::OnceLock;

use http::HeaderValue;

/// Values up to this many seconds come from the tables (beyond: formatted).
/// An hour covers Cognito's default token lifetime.
const TABLED: u64 = 3_600;

struct Tables {
    age: Vec<HeaderValue>,
    hit: Vec<HeaderValue>,
}

fn tables() -> &'static Tables {
    static TABLES: OnceLock<Tables> = OnceLock::new();
    TABLES.get_or_init(|| {
        // Leaked once, on purpose: `'static` bytes make every clone of
        // these values a plain copy (no reference count shared between
        // the worker threads). About 140 KB for the life of the process.
        let leak = |text: String| HeaderValue::from_static(Box::leak(text.into_boxed_str()));
        Tables {
            age: (0..=TABLED).map(|n| leak(n.to_string())).collect(),
            hit: (0..=TABLED)
                .map(|n| leak(format!("tokencache; hit; ttl={n}")))
                .collect(),
        }
    })
}

fn index(seconds: u64) -> Option<usize> {
    (seconds <= TABLED)
        .then(|| usize::try_from(seconds).ok())
        .flatten()
}

/// The `Age` value for `seconds`.
pub(crate) fn age(seconds: u64) -> HeaderValue {
    match index(seconds) {
        Some(i) => tables().age[i].clone(),
        None => HeaderValue::from(seconds),
    }
}

/// `tokencache; hit; ttl=<seconds>`.
pub(crate) fn hit(seconds: u64) -> Option<HeaderValue> {
    index(seconds).map(|i| tables().hit[i].clone())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tabled_and_formatted_values_agree() {
        assert_eq!(age(0), "0");
        assert_eq!(age(3_600), "3600");
        assert_eq!(age(86_400), "86400");
        assert_eq!(hit(42).unwrap(), "tokencache; hit; ttl=42");
        assert!(hit(3_601).is_none());
    }
}
