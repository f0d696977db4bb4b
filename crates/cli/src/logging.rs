//! Logs: `tracing` to stderr, human or JSON.

use tracing_subscriber::EnvFilter;

use crate::cli::{LogArgs, LogFormat};

/// Installs the global subscriber. Logs go to stderr so that stdout carries
/// only what a command prints for its user (the demo's instructions).
///
/// # Errors
/// When the filter does not parse.
pub fn init(args: &LogArgs) -> Result<(), String> {
    let directives = args.log.as_deref().unwrap_or("info");
    let filter = EnvFilter::try_new(directives)
        .map_err(|error| format!("log filter `{directives}`: {error}"))?;
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    let result = match args.log_format.unwrap_or(LogFormat::Human) {
        LogFormat::Human => builder.try_init(),
        LogFormat::Json => builder.json().flatten_event(true).try_init(),
    };
    result.map_err(|error| error.to_string())
}
