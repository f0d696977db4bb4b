//! Logs: `tracing` to stderr, human or JSON; and, when the standard
//! `OTEL_*` variables ask for them, OpenTelemetry traces beside them.

use tracing_subscriber::layer::SubscriberExt as _;
use tracing_subscriber::util::SubscriberInitExt as _;
use tracing_subscriber::{EnvFilter, Layer, Registry};

use crate::settings::{LogFormat, LogSettings};
use crate::traces::{TraceExport, TraceExporter};

/// Installs the global subscriber. Logs go to stderr so that stdout carries
/// only what a command prints for its user (the demo's instructions).
///
/// # Errors
/// When the filter does not parse.
pub fn init(settings: &LogSettings) -> Result<(), String> {
    let filter = filter(settings)?;
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    let result = match settings.format {
        LogFormat::Human => builder.try_init(),
        LogFormat::Json => builder.json().flatten_event(true).try_init(),
    };
    result.map_err(|error| error.to_string())
}

/// Installs the global subscriber of a command that serves, with the trace
/// export `traces` asks for. Without one, this is [`init`], so that with
/// traces off the subscriber (and the hit path's cost) is what it always
/// was: one global filter, spans at `DEBUG` disabled at their callsites.
/// With one, the log filter applies to the logs only, and the export has
/// its own filter (the `tokencache*` crates' spans), so `--log warn` does
/// not turn traces off and traces do not fill the logs.
///
/// # Errors
/// When the filter does not parse or the exporter cannot be built.
pub fn init_serving(
    settings: &LogSettings,
    traces: &TraceExport,
) -> Result<Option<TraceExporter>, String> {
    let TraceExport::Otlp(otlp) = traces else {
        init(settings)?;
        return Ok(None);
    };
    // The SDK warns while it builds the exporter (a variable it ignores):
    // through the logs alone, as the export itself is not installed yet.
    let exporter =
        tracing::subscriber::with_default(logs_only(settings)?, || TraceExporter::start(otlp))?;
    let filter = filter(settings)?;
    let logs = match settings.format {
        LogFormat::Human => tracing_subscriber::fmt::layer()
            .with_writer(std::io::stderr)
            .boxed(),
        LogFormat::Json => tracing_subscriber::fmt::layer()
            .json()
            .flatten_event(true)
            .with_writer(std::io::stderr)
            .boxed(),
    };
    Registry::default()
        .with(logs.with_filter(filter))
        .with(exporter.layer())
        .try_init()
        .map_err(|error| error.to_string())?;
    Ok(Some(exporter))
}

/// A subscriber that writes the logs as [`init`] installs them, for a
/// moment before the global one is installed.
fn logs_only(settings: &LogSettings) -> Result<Box<dyn tracing::Subscriber + Send + Sync>, String> {
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter(settings)?)
        .with_writer(std::io::stderr);
    Ok(match settings.format {
        LogFormat::Human => Box::new(builder.finish()),
        LogFormat::Json => Box::new(builder.json().flatten_event(true).finish()),
    })
}

fn filter(settings: &LogSettings) -> Result<EnvFilter, String> {
    let directives = settings.filter.as_str();
    EnvFilter::try_new(directives).map_err(|error| format!("log filter `{directives}`: {error}"))
}
