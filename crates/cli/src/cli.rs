//! The command line: subcommands and their flags. `serve`'s flags are
//! declared with its settings (`crate::settings::declarations`), where each
//! also has an environment variable and a config file key.

use std::net::SocketAddr;
use std::path::PathBuf;

use clap::{Args, Parser, Subcommand};
use clap_complete::Shell;
use tokencache_mock_idp::DEFAULT_TOKEN_LIFETIME;

use crate::settings::{LogArgs, ServeArgs};
use crate::token_command::TokenArgs;

/// A caching proxy for OAuth 2.0 token endpoints (Amazon Cognito and
/// others): apps change only their token URL, and a fleet stops being
/// throttled by the token endpoint.
#[derive(Debug, Parser)]
#[command(name = "tokencache", version, propagate_version = true)]
pub struct Cli {
    /// What to run.
    #[command(subcommand)]
    pub command: Command,
}

/// The end of `serve --help`: the standard variables that are not
/// settings of tokencache's own, read by OpenTelemetry's conventions.
const TRACES_HELP: &str = "\
OpenTelemetry traces (off by default) follow the standard variables: \
OTEL_EXPORTER_OTLP_ENDPOINT or OTEL_EXPORTER_OTLP_TRACES_ENDPOINT (or \
OTEL_TRACES_EXPORTER=otlp) turn them on, OTEL_SDK_DISABLED=true or \
OTEL_TRACES_EXPORTER=none off; OTEL_EXPORTER_OTLP_PROTOCOL is http/protobuf \
(default) or grpc; OTEL_SERVICE_NAME, OTEL_RESOURCE_ATTRIBUTES, \
OTEL_TRACES_SAMPLER and OTEL_TRACES_SAMPLER_ARG, OTEL_EXPORTER_OTLP_HEADERS \
and OTEL_BSP_* as the OpenTelemetry specification says. A caller's W3C \
traceparent is continued and sent upstream. RUST_LOG is the log filter when \
--log, TOKENCACHE_LOG and the file give none. See the README's \"Tracing\".";

/// The subcommands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run the caching proxy in front of one or more token endpoints.
    #[command(after_help = TRACES_HELP)]
    Serve(ServeArgs),
    /// Start a mock identity provider and the proxy in front of it on
    /// loopback, and print a curl command to try it.
    Demo(DemoArgs),
    /// Run the mock identity provider alone: a Cognito-shaped token endpoint
    /// for local development and tests.
    MockIdp(MockIdpArgs),
    /// Manage a shared store.
    #[command(subcommand)]
    Store(StoreCommand),
    /// Print an access token from a token endpoint (client credentials).
    /// The secret comes from TOKENCACHE_CLIENT_SECRET or standard input,
    /// never from the command line.
    Token(TokenArgs),
    /// Print a shell completion script, e.g. `tokencache completions bash >
    /// /usr/share/bash-completion/completions/tokencache`.
    Completions(CompletionsArgs),
    /// Write the manual pages: tokencache(1) to standard output, or with
    /// --out-dir one page per command into a directory.
    Man(ManArgs),
}

/// `tokencache completions`.
#[derive(Debug, Clone, Args)]
pub struct CompletionsArgs {
    /// The shell.
    #[arg(value_enum)]
    pub shell: Shell,
}

/// `tokencache man`.
#[derive(Debug, Clone, Args)]
pub struct ManArgs {
    /// Write every page (tokencache.1, tokencache-serve.1, …) into this
    /// directory, created if missing, instead of tokencache.1 to standard
    /// output.
    #[arg(long)]
    pub out_dir: Option<PathBuf>,
}

/// `tokencache store …`.
#[derive(Debug, Subcommand)]
pub enum StoreCommand {
    /// Create the store's table (dynamodb://TABLE), with TTL enabled on its
    /// expiry attribute. Idempotent. Region and credentials come from the
    /// standard AWS chain.
    Init {
        /// The store, e.g. dynamodb://tokencache.
        store: String,
        /// Logging.
        #[command(flatten)]
        log: LogArgs,
    },
}

/// `tokencache demo`.
#[derive(Debug, Clone, Args)]
pub struct DemoArgs {
    /// Address of the proxy; a busy default port falls back to a free one.
    #[arg(long, default_value = "127.0.0.1:8080")]
    pub listen: SocketAddr,

    /// Address of the proxy's admin listener.
    #[arg(long, default_value = "127.0.0.1:9090")]
    pub admin_listen: SocketAddr,

    /// Address of the mock identity provider.
    #[arg(long, default_value = "127.0.0.1:8081")]
    pub idp_listen: SocketAddr,

    /// Lifetime of the mock IdP's tokens, in seconds.
    #[arg(long, default_value_t = DEFAULT_TOKEN_LIFETIME.as_secs())]
    pub token_lifetime: u64,

    /// Added latency of the mock IdP, in milliseconds, to make the
    /// difference between a miss and a hit visible.
    #[arg(long, default_value_t = 50)]
    pub idp_latency: u64,

    /// Logging.
    #[command(flatten)]
    pub log: LogArgs,
}

/// `tokencache mock-idp`.
#[derive(Debug, Clone, Args)]
pub struct MockIdpArgs {
    /// Address to listen on.
    #[arg(
        long,
        env = "TOKENCACHE_MOCK_IDP_LISTEN",
        default_value = "127.0.0.1:8081"
    )]
    pub listen: SocketAddr,

    /// Lifetime of issued access tokens, in seconds.
    #[arg(long, default_value_t = DEFAULT_TOKEN_LIFETIME.as_secs())]
    pub token_lifetime: u64,

    /// Added latency before each token answer, in milliseconds.
    #[arg(long, default_value_t = 0)]
    pub latency: u64,

    /// TOML file of clients (`[[clients]] id, secret, scopes`); without it,
    /// the demo clients demo-client/demo-secret and other-client/other-secret.
    #[arg(long)]
    pub clients: Option<PathBuf>,

    /// Logging.
    #[command(flatten)]
    pub log: LogArgs,
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::settings::declarations::{LISTEN, MIN_REMAINING, REFRESH_AT, REQUEST_TIMEOUT};
    use clap::CommandFactory;

    #[test]
    fn the_command_line_is_well_formed() {
        Cli::command().debug_assert();
    }

    #[test]
    fn serve_flags_parse() {
        let cli = Cli::try_parse_from([
            "tokencache",
            "serve",
            "--listen",
            "127.0.0.1:1",
            "--upstream",
            "https://idp.example/oauth2/token",
            "--min-remaining",
            "30s",
            "--request-timeout",
            "2s",
        ])
        .unwrap();
        let Command::Serve(args) = cli.command else {
            panic!("not serve");
        };
        assert_eq!(args.given.text(&LISTEN), Some("127.0.0.1:1"));
        assert_eq!(args.given.text(&MIN_REMAINING), Some("30s"));
        assert_eq!(args.given.text(&REQUEST_TIMEOUT), Some("2s"));
        assert_eq!(args.given.text(&REFRESH_AT), None);
    }
}
