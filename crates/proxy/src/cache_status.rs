//! How the cache took part in an answer (RFC 9211 `Cache-Status`), and the
//! headers every answer of the token listener carries. Data only: the
//! answers (`answer`) and the errors (`error`) both build on it.

use std::fmt::Write as _;

use http::header::{self, HeaderName, HeaderValue};

/// RFC 6749 §5.1: token answers must not be cached by anything downstream.
pub(crate) const NO_CACHE_HEADERS: [(HeaderName, HeaderValue); 2] = [
    (header::CACHE_CONTROL, HeaderValue::from_static("no-store")),
    (header::PRAGMA, HeaderValue::from_static("no-cache")),
];

/// How the cache took part in an answer, for the RFC 9211 `Cache-Status`
/// header.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum CacheStatus {
    /// Answered from cache; `ttl` seconds of service left.
    Hit { ttl: u64 },
    /// Answered from cache while a refresh runs in the background.
    HitRefreshing { ttl: u64 },
    /// Fetched upstream for this caller and stored.
    MissStored,
    /// Waited for another caller's fetch of the same key.
    Collapsed,
    /// Fetched upstream for this caller; the answer could not be cached.
    MissUncacheable,
    /// Waited for another caller's fetch, whose answer could not be cached.
    CollapsedUncacheable,
    /// Fetched upstream for this caller; the token was too large to store.
    MissTooLarge,
    /// Waited for another caller's fetch, whose token was too large to store.
    CollapsedTooLarge,
    /// Fetched upstream without trying the cache (not a cacheable request).
    Bypass,
    /// A remembered rejection of these credentials (negative cache).
    NegativeHit,
    /// Read from the shared tier (fetched by another replica, or by this
    /// one before the memory tier let it go).
    SharedHit { ttl: u64 },
}

/// The RFC 9211 header, as a value: looked up on every answer, so never
/// parsed from text on the hit path.
pub(crate) const CACHE_STATUS: HeaderName = HeaderName::from_static("cache-status");

impl CacheStatus {
    pub(crate) fn header_name(self) -> HeaderName {
        CACHE_STATUS
    }

    pub(crate) fn header_value(self) -> HeaderValue {
        match self {
            Self::Hit { ttl } => crate::seconds::hit(ttl)
                .unwrap_or_else(|| ttl_value("tokencache; hit; ttl=", ttl, "")),
            Self::HitRefreshing { ttl } => {
                ttl_value("tokencache; hit; ttl=", ttl, "; detail=refreshing")
            }
            Self::MissStored => HeaderValue::from_static("tokencache; fwd=miss; stored"),
            Self::Collapsed => HeaderValue::from_static("tokencache; fwd=miss; collapsed"),
            Self::MissUncacheable => {
                HeaderValue::from_static("tokencache; fwd=miss; detail=uncacheable")
            }
            Self::CollapsedUncacheable => {
                HeaderValue::from_static("tokencache; fwd=miss; collapsed; detail=uncacheable")
            }
            Self::MissTooLarge => {
                HeaderValue::from_static("tokencache; fwd=miss; detail=too-large")
            }
            Self::CollapsedTooLarge => {
                HeaderValue::from_static("tokencache; fwd=miss; collapsed; detail=too-large")
            }
            Self::Bypass => HeaderValue::from_static("tokencache; fwd=bypass"),
            Self::NegativeHit => HeaderValue::from_static("tokencache; hit; detail=negative"),
            Self::SharedHit { ttl } => ttl_value("tokencache; hit; ttl=", ttl, "; detail=shared"),
        }
    }
}

fn ttl_value(prefix: &str, ttl: u64, suffix: &str) -> HeaderValue {
    let mut text = String::with_capacity(prefix.len() + 20 + suffix.len());
    text.push_str(prefix);
    // Writing to a String cannot fail.
    let _ = write!(text, "{ttl}");
    text.push_str(suffix);
    HeaderValue::try_from(text).unwrap_or_else(|_| HeaderValue::from_static("tokencache; hit"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cache_status_values() {
        assert_eq!(
            CacheStatus::Hit { ttl: 42 }.header_value(),
            "tokencache; hit; ttl=42"
        );
        assert_eq!(
            CacheStatus::HitRefreshing { ttl: 7 }.header_value(),
            "tokencache; hit; ttl=7; detail=refreshing"
        );
        assert_eq!(CacheStatus::Bypass.header_value(), "tokencache; fwd=bypass");
    }
}
