//! OpenTelemetry traces: off by default, exported over OTLP when the
//! standard `OTEL_*` variables ask for them.
//!
//! Traces are on when an endpoint is given (`OTEL_EXPORTER_OTLP_ENDPOINT`
//! or `OTEL_EXPORTER_OTLP_TRACES_ENDPOINT`) or `OTEL_TRACES_EXPORTER=otlp`,
//! and off when `OTEL_SDK_DISABLED=true` or `OTEL_TRACES_EXPORTER=none`.
//! The protocol (`OTEL_EXPORTER_OTLP_TRACES_PROTOCOL`, else
//! `OTEL_EXPORTER_OTLP_PROTOCOL`) is `http/protobuf` (the default) or
//! `grpc`; the sampler is `OTEL_TRACES_SAMPLER` with
//! `OTEL_TRACES_SAMPLER_ARG` (default `parentbased_always_on`); the service
//! is `OTEL_SERVICE_NAME`, else `service.name` in
//! `OTEL_RESOURCE_ATTRIBUTES`, else `tokencache`. These are read here,
//! through [`Environment`], and a value this SDK cannot honour is a
//! configuration error (exit 64) rather than a silent fallback. The rest
//! of the standard variables (the endpoint itself, `_HEADERS`, `_TIMEOUT`,
//! `_COMPRESSION`, `OTEL_RESOURCE_ATTRIBUTES`, `OTEL_BSP_*`) are read by
//! the OpenTelemetry SDK from the process environment, as its
//! documentation says.
//!
//! The spans exported are the `tokencache*` crates' `tracing` spans and
//! nothing else: no log event, no library's span (so the exporter's own
//! HTTP client never traces itself).

use std::time::Duration;

use opentelemetry::KeyValue;
use opentelemetry::trace::TracerProvider as _;
use opentelemetry_otlp::{Protocol, WithExportConfig as _, WithTonicConfig as _};
use opentelemetry_sdk::Resource;
use opentelemetry_sdk::propagation::TraceContextPropagator;
use opentelemetry_sdk::resource::{EnvResourceDetector, TelemetryResourceDetector};
use opentelemetry_sdk::trace::{BatchSpanProcessor, Sampler, SdkTracerProvider};
use tracing::Level;
use tracing_subscriber::Layer;
use tracing_subscriber::filter::filter_fn;
use tracing_subscriber::registry::LookupSpan;

use crate::environment::Environment;

/// How long the spans still buffered at exit may take to go out.
const FLUSH_WITHIN: Duration = Duration::from_secs(5);

/// The service name when the environment names none.
const DEFAULT_SERVICE_NAME: &str = "tokencache";

/// What the environment asks for.
#[derive(Debug, Clone, PartialEq)]
pub enum TraceExport {
    /// No traces (the default).
    Off,
    /// Spans exported over OTLP.
    Otlp(OtlpSettings),
}

/// The settings of an OTLP trace export that are read here.
#[derive(Debug, Clone, PartialEq)]
pub struct OtlpSettings {
    /// `http/protobuf` or `grpc`.
    pub protocol: OtlpProtocol,
    /// Which traces are recorded.
    pub sampler: SamplerChoice,
    /// `OTEL_SERVICE_NAME`, if set.
    pub service_name: Option<String>,
    /// Whether the export goes over TLS (gRPC then needs roots set up).
    pub tls: bool,
}

/// The OTLP transports this build speaks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OtlpProtocol {
    /// Protobuf over HTTP (`POST /v1/traces`).
    HttpProtobuf,
    /// gRPC (`TraceService/Export`).
    Grpc,
}

/// The standard samplers, as `OTEL_TRACES_SAMPLER` names them.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum SamplerChoice {
    /// `always_on`.
    AlwaysOn,
    /// `always_off`.
    AlwaysOff,
    /// `traceidratio` with its ratio.
    Ratio(f64),
    /// `parentbased_always_on` (the default).
    ParentBasedAlwaysOn,
    /// `parentbased_always_off`.
    ParentBasedAlwaysOff,
    /// `parentbased_traceidratio` with its ratio.
    ParentBasedRatio(f64),
}

impl SamplerChoice {
    fn sampler(self) -> Sampler {
        match self {
            Self::AlwaysOn => Sampler::AlwaysOn,
            Self::AlwaysOff => Sampler::AlwaysOff,
            Self::Ratio(ratio) => Sampler::TraceIdRatioBased(ratio),
            Self::ParentBasedAlwaysOn => Sampler::ParentBased(Box::new(Sampler::AlwaysOn)),
            Self::ParentBasedAlwaysOff => Sampler::ParentBased(Box::new(Sampler::AlwaysOff)),
            Self::ParentBasedRatio(ratio) => {
                Sampler::ParentBased(Box::new(Sampler::TraceIdRatioBased(ratio)))
            }
        }
    }
}

impl TraceExport {
    /// Reads the standard variables.
    ///
    /// # Errors
    /// A value this build cannot honour (an exporter other than `otlp`, the
    /// `http/json` protocol, an unknown sampler, a ratio outside 0..=1),
    /// naming the variable.
    pub fn from_environment(env: &impl Environment) -> Result<Self, String> {
        let var = |name: &str| env.var(name).filter(|value| !value.trim().is_empty());
        if var("OTEL_SDK_DISABLED").is_some_and(|value| value.trim().eq_ignore_ascii_case("true")) {
            return Ok(Self::Off);
        }
        let endpoint = var("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT")
            .or_else(|| var("OTEL_EXPORTER_OTLP_ENDPOINT"));
        match var("OTEL_TRACES_EXPORTER").as_deref().map(str::trim) {
            Some("none") => return Ok(Self::Off),
            Some("otlp") => {}
            Some(other) => {
                return Err(format!(
                    "OTEL_TRACES_EXPORTER={other}: this build exports traces over OTLP only \
                     (`otlp`, or `none`)"
                ));
            }
            None if endpoint.is_none() => return Ok(Self::Off),
            None => {}
        }
        let protocol = match var("OTEL_EXPORTER_OTLP_TRACES_PROTOCOL")
            .map(|value| ("OTEL_EXPORTER_OTLP_TRACES_PROTOCOL", value))
            .or_else(|| {
                var("OTEL_EXPORTER_OTLP_PROTOCOL")
                    .map(|value| ("OTEL_EXPORTER_OTLP_PROTOCOL", value))
            }) {
            None => OtlpProtocol::HttpProtobuf,
            Some((name, value)) => match value.trim() {
                "http/protobuf" => OtlpProtocol::HttpProtobuf,
                "grpc" => OtlpProtocol::Grpc,
                other => {
                    return Err(format!(
                        "{name}={other}: use `http/protobuf` or `grpc` (this build has no `http/json`)"
                    ));
                }
            },
        };
        Ok(Self::Otlp(OtlpSettings {
            protocol,
            sampler: sampler(var("OTEL_TRACES_SAMPLER"), var("OTEL_TRACES_SAMPLER_ARG"))?,
            service_name: var("OTEL_SERVICE_NAME"),
            tls: endpoint.is_some_and(|url| {
                let insecure = var("OTEL_EXPORTER_OTLP_TRACES_INSECURE")
                    .or_else(|| var("OTEL_EXPORTER_OTLP_INSECURE"))
                    .is_some_and(|value| value.trim().eq_ignore_ascii_case("true"));
                uses_tls(&url, insecure)
            }),
        }))
    }
}

/// Whether an export to `endpoint` uses TLS: `https://`, or no scheme at
/// all unless `insecure` (`OTEL_EXPORTER_OTLP_INSECURE`), as the SDK reads
/// it.
fn uses_tls(endpoint: &str, insecure: bool) -> bool {
    let endpoint = endpoint.trim().to_ascii_lowercase();
    if endpoint.starts_with("https://") {
        true
    } else if endpoint.starts_with("http://") {
        false
    } else {
        !insecure
    }
}

/// The sampler `OTEL_TRACES_SAMPLER` and `OTEL_TRACES_SAMPLER_ARG` name.
fn sampler(name: Option<String>, arg: Option<String>) -> Result<SamplerChoice, String> {
    let ratio = || match arg.as_deref().map(str::trim) {
        // The specification's default.
        None => Ok(1.0),
        Some(text) => text
            .parse::<f64>()
            .ok()
            .filter(|ratio| (0.0..=1.0).contains(ratio))
            .ok_or_else(|| format!("OTEL_TRACES_SAMPLER_ARG={text}: a ratio from 0 to 1")),
    };
    Ok(match name.as_deref().map(str::trim) {
        None | Some("parentbased_always_on") => SamplerChoice::ParentBasedAlwaysOn,
        Some("always_on") => SamplerChoice::AlwaysOn,
        Some("always_off") => SamplerChoice::AlwaysOff,
        Some("traceidratio") => SamplerChoice::Ratio(ratio()?),
        Some("parentbased_always_off") => SamplerChoice::ParentBasedAlwaysOff,
        Some("parentbased_traceidratio") => SamplerChoice::ParentBasedRatio(ratio()?),
        Some(other) => {
            return Err(format!(
                "OTEL_TRACES_SAMPLER={other}: use always_on, always_off, traceidratio, \
                 parentbased_always_on, parentbased_always_off or parentbased_traceidratio"
            ));
        }
    })
}

/// The running export: flush it before the process exits.
#[derive(Debug)]
pub struct TraceExporter {
    provider: SdkTracerProvider,
}

impl TraceExporter {
    /// Starts the export `settings` describe and sets the W3C trace-context
    /// propagator, so callers' `traceparent` is continued and sent
    /// upstream. Must run inside the Tokio runtime (the gRPC channel is
    /// bound to it).
    ///
    /// # Errors
    /// When the exporter cannot be built (an endpoint that is not a URL).
    pub fn start(settings: &OtlpSettings) -> Result<Self, String> {
        let exporter = match settings.protocol {
            OtlpProtocol::HttpProtobuf => opentelemetry_otlp::SpanExporter::builder()
                .with_http()
                .with_protocol(Protocol::HttpBinary)
                .build(),
            OtlpProtocol::Grpc => {
                let builder = opentelemetry_otlp::SpanExporter::builder()
                    .with_tonic()
                    .with_protocol(Protocol::Grpc);
                if settings.tls {
                    // tonic trusts no root unless told to: the platform's.
                    let tls = opentelemetry_otlp::tonic_types::transport::ClientTlsConfig::new()
                        .with_native_roots();
                    builder.with_tls_config(tls).build()
                } else {
                    builder.build()
                }
            }
        }
        .map_err(|error| format!("OTLP trace exporter: {error}"))?;
        let provider = SdkTracerProvider::builder()
            .with_span_processor(BatchSpanProcessor::builder(exporter).build())
            .with_sampler(settings.sampler.sampler())
            .with_resource(resource(settings.service_name.as_deref()))
            .build();
        opentelemetry::global::set_text_map_propagator(TraceContextPropagator::new());
        Ok(Self { provider })
    }

    /// The `tracing` layer that hands the `tokencache*` crates' spans to
    /// the export. It sees spans only (log lines stay logs), and only
    /// tokencache's own; they are at `DEBUG`, so `DEBUG` is its ceiling.
    pub fn layer<S>(&self) -> impl Layer<S> + Send + Sync + 'static
    where
        S: tracing::Subscriber + for<'span> LookupSpan<'span> + Send + Sync,
    {
        let tracer = self.provider.tracer("tokencache");
        tracing_opentelemetry::layer()
            .with_tracer(tracer)
            // The spans are made by small constructor functions, so their
            // source location and module say nothing about the request.
            .with_location(false)
            .with_target(false)
            .with_filter(
                filter_fn(|metadata| {
                    metadata.is_span() && metadata.target().starts_with("tokencache")
                })
                .with_max_level_hint(Level::DEBUG),
            )
    }

    /// Sends what is still buffered and stops, within a few seconds (a
    /// collector that is down must not hold the exit up).
    pub async fn shutdown(self) {
        let provider = self.provider;
        // The SDK's shutdown blocks on its export thread.
        let flushed =
            tokio::task::spawn_blocking(move || provider.shutdown_with_timeout(FLUSH_WITHIN)).await;
        match flushed {
            Ok(Ok(())) => tracing::debug!("traces flushed"),
            Ok(Err(error)) => tracing::warn!(%error, "traces not all exported at exit"),
            Err(error) => tracing::warn!(%error, "traces not all exported at exit"),
        }
    }
}

/// `service.name` (from `OTEL_SERVICE_NAME`, else `OTEL_RESOURCE_ATTRIBUTES`,
/// else tokencache's own), `service.version`, the resource attributes of
/// `OTEL_RESOURCE_ATTRIBUTES`, and the SDK's `telemetry.sdk.*`.
fn resource(service_name: Option<&str>) -> Resource {
    let builder = Resource::builder_empty()
        .with_attributes([
            KeyValue::new("service.name", DEFAULT_SERVICE_NAME),
            KeyValue::new("service.version", env!("CARGO_PKG_VERSION")),
        ])
        // Later attributes win: the environment's over tokencache's.
        .with_detector(Box::new(EnvResourceDetector::new()))
        .with_detector(Box::new(TelemetryResourceDetector));
    match service_name {
        Some(name) => builder.with_service_name(name.to_owned()).build(),
        None => builder.build(),
    }
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;

    use super::*;

    fn export(vars: &[(&str, &str)]) -> Result<TraceExport, String> {
        let env: HashMap<String, String> = vars
            .iter()
            .map(|(name, value)| ((*name).to_owned(), (*value).to_owned()))
            .collect();
        TraceExport::from_environment(&env)
    }

    fn otlp(vars: &[(&str, &str)]) -> OtlpSettings {
        match export(vars) {
            Ok(TraceExport::Otlp(settings)) => settings,
            other => panic!("not an OTLP export: {other:?}"),
        }
    }

    const ENDPOINT: (&str, &str) = ("OTEL_EXPORTER_OTLP_ENDPOINT", "http://127.0.0.1:4318");

    #[test]
    fn off_unless_asked_for() {
        assert_eq!(export(&[]), Ok(TraceExport::Off));
        assert_eq!(
            export(&[
                ("OTEL_SERVICE_NAME", "svc"),
                ("OTEL_TRACES_SAMPLER", "always_on")
            ]),
            Ok(TraceExport::Off),
            "naming a service or a sampler is not asking for an export"
        );
        assert_eq!(
            export(&[("OTEL_EXPORTER_OTLP_ENDPOINT", "")]),
            Ok(TraceExport::Off)
        );
    }

    #[test]
    fn on_with_an_endpoint_or_the_otlp_exporter() {
        assert_eq!(otlp(&[ENDPOINT]).protocol, OtlpProtocol::HttpProtobuf);
        let traces_only = otlp(&[(
            "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT",
            "https://collector:4318/v1/traces",
        )]);
        assert!(traces_only.tls);
        assert!(!otlp(&[ENDPOINT]).tls);
        assert!(!otlp(&[("OTEL_TRACES_EXPORTER", "otlp")]).tls);
        let no_scheme = ("OTEL_EXPORTER_OTLP_ENDPOINT", "collector:4317");
        assert!(otlp(&[no_scheme]).tls, "TLS unless told otherwise");
        assert!(!otlp(&[no_scheme, ("OTEL_EXPORTER_OTLP_INSECURE", "true")]).tls);
    }

    #[test]
    fn disabled_or_none_wins_over_an_endpoint() {
        for off in [
            ("OTEL_SDK_DISABLED", "true"),
            ("OTEL_SDK_DISABLED", "TRUE"),
            ("OTEL_TRACES_EXPORTER", "none"),
        ] {
            assert_eq!(export(&[ENDPOINT, off]), Ok(TraceExport::Off), "{off:?}");
        }
        assert!(matches!(
            export(&[ENDPOINT, ("OTEL_SDK_DISABLED", "false")]),
            Ok(TraceExport::Otlp(_))
        ));
    }

    #[test]
    fn the_traces_protocol_wins_over_the_general_one() {
        let grpc = otlp(&[ENDPOINT, ("OTEL_EXPORTER_OTLP_PROTOCOL", "grpc")]);
        assert_eq!(grpc.protocol, OtlpProtocol::Grpc);
        let http = otlp(&[
            ENDPOINT,
            ("OTEL_EXPORTER_OTLP_PROTOCOL", "grpc"),
            ("OTEL_EXPORTER_OTLP_TRACES_PROTOCOL", "http/protobuf"),
        ]);
        assert_eq!(http.protocol, OtlpProtocol::HttpProtobuf);
    }

    #[test]
    fn samplers_and_their_ratios() {
        let cases = [
            (None, None, SamplerChoice::ParentBasedAlwaysOn),
            (Some("always_on"), None, SamplerChoice::AlwaysOn),
            (Some("always_off"), None, SamplerChoice::AlwaysOff),
            (
                Some("traceidratio"),
                Some("0.25"),
                SamplerChoice::Ratio(0.25),
            ),
            (Some("traceidratio"), None, SamplerChoice::Ratio(1.0)),
            (
                Some("parentbased_traceidratio"),
                Some("0"),
                SamplerChoice::ParentBasedRatio(0.0),
            ),
            (
                Some("parentbased_always_off"),
                None,
                SamplerChoice::ParentBasedAlwaysOff,
            ),
        ];
        for (name, arg, expected) in cases {
            let mut vars = vec![ENDPOINT];
            vars.extend(name.map(|name| ("OTEL_TRACES_SAMPLER", name)));
            vars.extend(arg.map(|arg| ("OTEL_TRACES_SAMPLER_ARG", arg)));
            assert_eq!(otlp(&vars).sampler, expected, "{name:?} {arg:?}");
        }
    }

    #[test]
    fn what_this_build_cannot_honour_is_refused_by_name() {
        let cases = [
            (
                ("OTEL_EXPORTER_OTLP_PROTOCOL", "http/json"),
                "OTEL_EXPORTER_OTLP_PROTOCOL",
            ),
            (("OTEL_TRACES_EXPORTER", "zipkin"), "OTEL_TRACES_EXPORTER"),
            (("OTEL_TRACES_SAMPLER", "xray"), "OTEL_TRACES_SAMPLER"),
            (("OTEL_TRACES_SAMPLER", "sometimes"), "OTEL_TRACES_SAMPLER"),
        ];
        for (var, named) in cases {
            let error = export(&[ENDPOINT, var]).unwrap_err();
            assert!(error.contains(named), "{var:?}: {error}");
        }
        let error = export(&[
            ENDPOINT,
            ("OTEL_TRACES_SAMPLER", "traceidratio"),
            ("OTEL_TRACES_SAMPLER_ARG", "1.5"),
        ])
        .unwrap_err();
        assert!(error.contains("OTEL_TRACES_SAMPLER_ARG"), "{error}");
    }
}
