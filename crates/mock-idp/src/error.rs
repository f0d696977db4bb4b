//! The crate's error type.

use std::path::PathBuf;

/// What can go wrong when setting up the mock IdP, changing its settings or
/// checking one of its tokens.
///
/// HTTP callers never see this type: the server answers them with RFC 6749
/// error bodies instead.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum MockIdpError {
    /// The clients file could not be read.
    #[error("cannot read clients file {}", path.display())]
    ReadClients {
        /// The file that was asked for.
        path: PathBuf,
        /// Why it could not be read.
        #[source]
        source: std::io::Error,
    },
    /// The clients file is not valid TOML of the expected shape.
    ///
    /// Only the parser's message and the line are kept, not the parser's
    /// rendering of the offending line, which could show a client secret.
    #[error("cannot parse clients file {}{}: {message}", path.display(), line.map(|l| format!(" (line {l})")).unwrap_or_default())]
    ParseClients {
        /// The file that was parsed.
        path: PathBuf,
        /// The line (1-based) the parser stopped at, when it says.
        line: Option<usize>,
        /// What the parser objected to.
        message: String,
    },
    /// The clients file parsed but describes an unusable set of clients
    /// (an empty id, a duplicate id, a malformed scope).
    #[error("invalid clients file {}: {reason}", path.display())]
    InvalidClients {
        /// The file that was checked.
        path: PathBuf,
        /// What is wrong with it.
        reason: String,
    },
    /// A run-time setting is out of range (a fault share outside `[0, 1]`,
    /// say); see [`ControlUpdate::validate`].
    ///
    /// [`ControlUpdate::validate`]: crate::ControlUpdate::validate
    #[error("invalid setting: {reason}")]
    InvalidSetting {
        /// Which setting, and what is wrong with its value.
        reason: String,
    },
    /// The embedded signing key could not be loaded, or signing failed.
    #[error("the signing key cannot be loaded or used")]
    SigningKey(#[source] Box<dyn std::error::Error + Send + Sync>),
    /// A token presented to [`MockIdp::verify_access_token`] was not issued by
    /// this mock IdP (bad signature, wrong key id or issuer, malformed).
    ///
    /// [`MockIdp::verify_access_token`]: crate::MockIdp::verify_access_token
    #[error("the access token is not valid: {reason}")]
    InvalidToken {
        /// Why the token was rejected.
        reason: String,
    },
}
