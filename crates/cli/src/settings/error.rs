//! Why `serve` cannot start with its settings.

use std::path::PathBuf;

/// A configuration `serve` cannot start with (exit code 64).
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum SettingsError {
    /// The config file could not be read.
    #[error("reading config file {path}: {source}")]
    ReadFile {
        /// The file.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// The config file is not valid.
    #[error("config file {path}: {message}")]
    ParseFile {
        /// The file.
        path: PathBuf,
        /// What is wrong, with its place.
        message: String,
    },
    /// A setting has an unusable value.
    #[error("{setting}: {message}")]
    Invalid {
        /// Where the value came from: the flag, the variable or the file
        /// key, so the message points at what to change.
        setting: String,
        /// What is wrong. It never holds a secret value.
        message: String,
    },
    /// The proxy rejected the assembled configuration.
    #[error(transparent)]
    Proxy(#[from] tokencache_proxy::ConfigError),
}

/// A [`SettingsError::Invalid`].
pub fn invalid(setting: impl Into<String>, message: impl Into<String>) -> SettingsError {
    SettingsError::Invalid {
        setting: setting.into(),
        message: message.into(),
    }
}
