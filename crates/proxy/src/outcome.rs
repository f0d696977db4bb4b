//! How a token request was answered: the `outcome` label of the request
//! metrics. Data only, below the metrics that count it.

/// How many [`Outcome`]s there are.
pub(crate) const OUTCOMES: usize = 8;

/// How a token request was answered.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Outcome {
    /// From cache, fresh.
    Hit,
    /// Fetched upstream for this caller.
    Miss,
    /// From cache, aging, with a refresh in the background.
    Stale,
    /// Waited for another caller's fetch.
    Collapsed,
    /// Not cacheable; passed through.
    Bypass,
    /// Answered from the negative cache.
    Negative,
    /// Answered from the shared tier.
    Shared,
    /// Answered with an error of the proxy's own.
    Error,
}

impl Outcome {
    /// Every outcome, in the order of [`index`](Self::index).
    pub(crate) const ALL: [Self; OUTCOMES] = [
        Self::Hit,
        Self::Miss,
        Self::Stale,
        Self::Collapsed,
        Self::Bypass,
        Self::Error,
        Self::Negative,
        Self::Shared,
    ];

    /// Its place in per-outcome arrays.
    pub(crate) const fn index(self) -> usize {
        match self {
            Self::Hit => 0,
            Self::Miss => 1,
            Self::Stale => 2,
            Self::Collapsed => 3,
            Self::Bypass => 4,
            Self::Error => 5,
            Self::Negative => 6,
            Self::Shared => 7,
        }
    }

    /// Its `outcome` label.
    pub(crate) const fn label(self) -> &'static str {
        match self {
            Self::Hit => "hit",
            Self::Miss => "miss",
            Self::Stale => "stale",
            Self::Collapsed => "collapsed",
            Self::Bypass => "bypass",
            Self::Error => "error",
            Self::Negative => "negative",
            Self::Shared => "shared",
        }
    }

    /// Whether the answer did not send this caller's request upstream:
    /// the requests the cache saved.
    pub(crate) const fn is_saved(self) -> bool {
        matches!(
            self,
            Self::Hit | Self::Stale | Self::Collapsed | Self::Negative | Self::Shared
        )
    }

    /// The outcome an answer's `Cache-Status` value names; an answer
    /// without one is the proxy's own error. Byte comparisons only: it runs
    /// on the hit path.
    pub(crate) fn of_cache_status(value: Option<&[u8]>) -> Self {
        let Some(value) = value else {
            return Self::Error;
        };
        let has = |needle: &[u8]| value.windows(needle.len()).any(|window| window == needle);
        if value.starts_with(b"tokencache; hit") {
            if has(b"detail=negative") {
                Self::Negative
            } else if has(b"detail=refreshing") {
                Self::Stale
            } else if has(b"detail=shared") {
                Self::Shared
            } else {
                Self::Hit
            }
        } else if value.starts_with(b"tokencache; fwd=bypass") {
            Self::Bypass
        } else if has(b"collapsed") {
            Self::Collapsed
        } else if value.starts_with(b"tokencache; fwd=miss") {
            Self::Miss
        } else {
            Self::Error
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cache_status_names_its_outcome() {
        let cases: [(Option<&[u8]>, Outcome); 9] = [
            (Some(b"tokencache; hit; ttl=42"), Outcome::Hit),
            (
                Some(b"tokencache; hit; ttl=7; detail=refreshing"),
                Outcome::Stale,
            ),
            (Some(b"tokencache; hit; detail=negative"), Outcome::Negative),
            (
                Some(b"tokencache; hit; ttl=3; detail=shared"),
                Outcome::Shared,
            ),
            (Some(b"tokencache; fwd=miss; stored"), Outcome::Miss),
            (
                Some(b"tokencache; fwd=miss; detail=too-large"),
                Outcome::Miss,
            ),
            (Some(b"tokencache; fwd=miss; collapsed"), Outcome::Collapsed),
            (Some(b"tokencache; fwd=bypass"), Outcome::Bypass),
            (None, Outcome::Error),
        ];
        for (value, outcome) in cases {
            assert_eq!(Outcome::of_cache_status(value), outcome, "{value:?}");
        }
    }
}
