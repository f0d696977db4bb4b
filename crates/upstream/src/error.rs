//! Failures to get an answer from the upstream.

use std::error::Error as StdError;

type Source = Box<dyn StdError + Send + Sync>;

/// Why no answer came back from the token endpoint. An answer with an error
/// status is not an `UpstreamError`: it is an answer, passed through.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum UpstreamError {
    /// The client could not be built (bad CA file, TLS set-up).
    #[error("upstream client configuration: {0}")]
    Config(String),
    /// No connection could be made.
    #[error("could not connect to the token endpoint")]
    Connect(#[source] Source),
    /// The request or the answer took longer than the request timeout.
    #[error("the token endpoint did not answer in time")]
    Timeout(#[source] Source),
    /// The connection failed mid-request or the answer was not valid HTTP.
    #[error("the token endpoint's answer could not be read")]
    Transport(#[source] Source),
    /// The answer was larger than the configured limit.
    #[error("the token endpoint's answer is larger than {limit} bytes")]
    ResponseTooLarge {
        /// The limit in bytes.
        limit: usize,
    },
}

impl UpstreamError {
    /// Whether trying again may succeed.
    #[must_use]
    pub fn is_retryable(&self) -> bool {
        matches!(
            self,
            Self::Connect(_) | Self::Timeout(_) | Self::Transport(_)
        )
    }

    /// Whether the failure was a timeout (the proxy answers 504 rather
    /// than 502).
    #[must_use]
    pub fn is_timeout(&self) -> bool {
        matches!(self, Self::Timeout(_))
    }

    pub(crate) fn from_reqwest(error: reqwest::Error) -> Self {
        if error.is_timeout() {
            Self::Timeout(Box::new(error))
        } else if error.is_connect() {
            Self::Connect(Box::new(error))
        } else {
            Self::Transport(Box::new(error))
        }
    }
}
