//! Logs: `tracing` to stderr, human or JSON.

use tracing_subscriber::EnvFilter;

use crate::settings::{LogFormat, LogSettings};

/// Installs the global subscriber. Logs go to stderr so that stdout carries
/// only what a command prints for its user (the demo's instructions).
///
/// # Errors
/// When the filter does not parse.
pub fn init(settings: &LogSettings) -> Result<(), String> {
    let directives = settings.filter.as_str();
    let filter = EnvFilter::try_new(directives)
        .map_err(|error| format!("log filter `{directives}`: {error}"))?;
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    let result = match settings.format {
        LogFormat::Human => builder.try_init(),
        LogFormat::Json => builder.json().flatten_event(true).try_init(),
    };
    result.map_err(|error| error.to_string())
}
