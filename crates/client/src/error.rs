//! What can go wrong getting a token, kept apart by who is to blame: the
//! token endpoint's answer, the way to it, or the configuration.

use std::error::Error as StdError;
use std::fmt;
use std::sync::Arc;
use std::time::Duration;

/// Why no token could be had.
///
/// Nothing secret is ever part of it: no client secret, no token, no request
/// body. `Clone`, because one failed fetch is the answer of every caller
/// that waited for it.
#[derive(Debug, Clone, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// The token endpoint refused with an RFC 6749 error answer
    /// (`{"error": "...", "error_description": "..."}`), such as
    /// `invalid_client` or `invalid_scope`.
    #[error("the token endpoint answered {status} {error}{}", describe(.error_description.as_deref()))]
    OAuth {
        /// The HTTP status.
        status: u16,
        /// The `error` code.
        error: String,
        /// The `error_description`, if any.
        error_description: Option<String>,
    },
    /// The token endpoint throttled the request: a 429, or Cognito's
    /// `TooManyRequestsException`. Returned once the retries ran out.
    #[error("the token endpoint throttled the request (HTTP {status})")]
    Throttled {
        /// The HTTP status.
        status: u16,
        /// How long the endpoint asked to wait (`Retry-After`).
        retry_after: Option<Duration>,
    },
    /// The token endpoint answered with an error status and a body that is
    /// not an OAuth error (a proxy's 502 page, say).
    #[error("the token endpoint answered HTTP {status}")]
    Status {
        /// The HTTP status.
        status: u16,
    },
    /// The token endpoint could not be reached, or the exchange broke off.
    #[error("the token endpoint could not be reached")]
    Http {
        /// What the transport reported.
        #[source]
        source: TransportError,
    },
    /// The token endpoint did not answer in time (one attempt, or the whole
    /// fetch with its retries).
    #[error("the token endpoint did not answer in time")]
    Timeout {
        /// What the transport reported, when it was the one to give up.
        #[source]
        source: Option<TransportError>,
    },
    /// A 200 answer that is not a usable token response.
    #[error("the token endpoint's answer is not a usable token response: {reason}")]
    InvalidResponse {
        /// What is wrong with it.
        reason: String,
    },
    /// The fetch stopped before it finished (its task was cancelled, as when
    /// the runtime shuts down).
    #[error("the token fetch stopped before it finished")]
    Interrupted,
    /// The source is misconfigured.
    #[error("invalid token source configuration: {0}")]
    Config(String),
}

fn describe(description: Option<&str>) -> String {
    description.map_or_else(String::new, |text| format!(": {text}"))
}

impl Error {
    /// Whether asking again later may succeed: throttling, 5xx answers,
    /// transport failures and timeouts. A refused client, a bad scope or a
    /// malformed answer will be the same next time.
    #[must_use]
    pub fn is_retryable(&self) -> bool {
        match self {
            Self::OAuth { status, .. } | Self::Status { status } => {
                *status == 429 || *status >= 500
            }
            Self::Throttled { .. } | Self::Timeout { .. } | Self::Interrupted => true,
            Self::Http { source } => source.is_retryable(),
            Self::InvalidResponse { .. } | Self::Config(_) => false,
        }
    }

    pub(crate) fn invalid_response(reason: impl Into<String>) -> Self {
        Self::InvalidResponse {
            reason: reason.into(),
        }
    }

    pub(crate) fn from_transport(error: TransportError) -> Self {
        if error.is_timeout() {
            Self::Timeout {
                source: Some(error),
            }
        } else {
            Self::Http { source: error }
        }
    }
}

/// A failure of a [`Transport`](crate::Transport): the HTTP client's own
/// error, kept behind [`source`](StdError::source) so that no third-party
/// type appears in this crate's API.
#[derive(Clone)]
pub struct TransportError {
    kind: TransportErrorKind,
    source: Arc<dyn StdError + Send + Sync>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum TransportErrorKind {
    Retryable,
    Timeout,
    Permanent,
}

impl TransportError {
    /// A failure that may pass (a refused or reset connection, a broken
    /// body): the exchange is retried.
    pub fn new(source: impl Into<Box<dyn StdError + Send + Sync>>) -> Self {
        Self::with_kind(TransportErrorKind::Retryable, source)
    }

    /// The transport gave up waiting: retried.
    pub fn timeout(source: impl Into<Box<dyn StdError + Send + Sync>>) -> Self {
        Self::with_kind(TransportErrorKind::Timeout, source)
    }

    /// A failure that sending again cannot fix (a request the client cannot
    /// build, a TLS configuration error): not retried.
    pub fn permanent(source: impl Into<Box<dyn StdError + Send + Sync>>) -> Self {
        Self::with_kind(TransportErrorKind::Permanent, source)
    }

    fn with_kind(
        kind: TransportErrorKind,
        source: impl Into<Box<dyn StdError + Send + Sync>>,
    ) -> Self {
        Self {
            kind,
            source: Arc::from(source.into()),
        }
    }

    /// Whether the transport gave up waiting.
    #[must_use]
    pub fn is_timeout(&self) -> bool {
        self.kind == TransportErrorKind::Timeout
    }

    /// Whether sending again may succeed.
    #[must_use]
    pub fn is_retryable(&self) -> bool {
        self.kind != TransportErrorKind::Permanent
    }
}

impl fmt::Debug for TransportError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TransportError")
            .field("kind", &self.kind)
            .field("source", &self.source)
            .finish()
    }
}

impl fmt::Display for TransportError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // The source's own text is reached through `source()`, as error
        // reporters walk the chain; repeating it here would print it twice.
        f.write_str(match self.kind {
            TransportErrorKind::Retryable => "transport error",
            TransportErrorKind::Timeout => "transport timed out",
            TransportErrorKind::Permanent => "transport error (not retryable)",
        })
    }
}

impl StdError for TransportError {
    fn source(&self) -> Option<&(dyn StdError + 'static)> {
        Some(&*self.source)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn display_keeps_the_oauth_fields() {
        let error = Error::OAuth {
            status: 400,
            error: "invalid_client".into(),
            error_description: Some("Client authentication failed".into()),
        };
        assert_eq!(
            error.to_string(),
            "the token endpoint answered 400 invalid_client: Client authentication failed"
        );
        assert!(!error.is_retryable());
        let bare = Error::OAuth {
            status: 503,
            error: "server_error".into(),
            error_description: None,
        };
        assert_eq!(
            bare.to_string(),
            "the token endpoint answered 503 server_error"
        );
        assert!(bare.is_retryable());
    }

    #[test]
    fn retryable_kinds() {
        let io = || std::io::Error::other("connection reset");
        assert!(Error::from_transport(TransportError::new(io())).is_retryable());
        assert!(matches!(
            Error::from_transport(TransportError::timeout(io())),
            Error::Timeout { source: Some(_) }
        ));
        assert!(!Error::from_transport(TransportError::permanent(io())).is_retryable());
        assert!(
            Error::Throttled {
                status: 429,
                retry_after: None
            }
            .is_retryable()
        );
        assert!(Error::Status { status: 502 }.is_retryable());
        assert!(!Error::Status { status: 404 }.is_retryable());
        assert!(!Error::invalid_response("x").is_retryable());
        assert!(!Error::Config("x".into()).is_retryable());
    }

    #[test]
    fn transport_source_is_reachable() {
        let error = Error::from_transport(TransportError::new(std::io::Error::other("reset")));
        let transport = error.source().and_then(StdError::source);
        assert_eq!(transport.map(ToString::to_string).as_deref(), Some("reset"));
    }
}
