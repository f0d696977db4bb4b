//! `tokencache`: a caching proxy for OAuth 2.0 token endpoints.
//!
//! ```text
//! tokencache serve --listen 127.0.0.1:8080 --upstream https://<domain>/oauth2/token
//! tokencache demo
//! tokencache mock-idp --listen 127.0.0.1:8081
//! tokencache token --token-url URL --client-id ID --scope api/read
//! ```
//!
//! `main` only wires: settings (exit 64 when unusable: a bad flag, value,
//! variable or config file alike), logging, build, bind, log the
//! addresses, serve until a signal, drain under a timeout.

// The doc comments of the command-line types are clap's --help text, read
// in a terminal, not rustdoc markup: URLs and <placeholders> stay as typed.
#![allow(
    rustdoc::bare_urls,
    rustdoc::invalid_html_tags,
    rustdoc::broken_intra_doc_links
)]

mod cli;
mod demo;
mod environment;
mod logging;
mod settings;
mod shutdown;
mod store;
mod token_command;

use std::process::ExitCode;
use std::sync::Arc;

use anyhow::Context as _;
use clap::Parser as _;
use tokencache_core::SystemClock;
use tokencache_mock_idp::{MockIdp, MockIdpConfig};
use tokencache_proxy::{Proxy, ReloadableTls, ServeOptions};
use tokio::net::TcpListener;

use crate::cli::{Cli, Command, MockIdpArgs, StoreCommand};
use crate::environment::ProcessEnvironment;
use crate::settings::{LogArgs, ServeArgs, ServeSettings, SettingsError};

/// `EX_USAGE` from sysexits(3): the command line or the configuration is
/// unusable.
const EXIT_USAGE: u8 = 64;

fn main() -> ExitCode {
    let cli = match Cli::try_parse() {
        Ok(cli) => cli,
        Err(error) => return usage(&error),
    };
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(error) => {
            eprintln!("tokencache: cannot start the async runtime: {error}");
            return ExitCode::FAILURE;
        }
    };
    let result = runtime.block_on(async {
        match cli.command {
            Command::Serve(args) => serve(args).await,
            Command::Demo(args) => {
                init_logging(&args.log)?;
                demo::run(args).await.map_err(Failure::Run)
            }
            Command::MockIdp(args) => {
                init_logging(&args.log)?;
                mock_idp(args).await.map_err(Failure::Run)
            }
            Command::Token(args) => token_command::run(args).await.map_err(Failure::Run),
            Command::Store(StoreCommand::Init { store, log }) => {
                init_logging(&log)?;
                store::init(&store).await.map_err(Failure::Run)
            }
        }
    });
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(Failure::Config(error)) => {
            eprintln!("tokencache: invalid configuration: {error}");
            ExitCode::from(EXIT_USAGE)
        }
        Err(Failure::Run(error)) => {
            tracing::error!("{error:#}");
            eprintln!("tokencache: {error:#}");
            ExitCode::FAILURE
        }
    }
}

/// Prints clap's message: help and version on stdout (exit 0), a bad
/// command line on stderr with exit 64, like a bad configuration, rather
/// than clap's own 2.
fn usage(error: &clap::Error) -> ExitCode {
    // Nothing more can be said if the terminal is gone.
    let _ = error.print();
    if error.use_stderr() {
        ExitCode::from(EXIT_USAGE)
    } else {
        ExitCode::SUCCESS
    }
}

/// Why a command stopped.
enum Failure {
    /// Before anything ran: exit 64.
    Config(String),
    /// While running.
    Run(anyhow::Error),
}

impl From<SettingsError> for Failure {
    fn from(error: SettingsError) -> Self {
        Self::Config(error.to_string())
    }
}

/// Logging for the subcommands other than `serve`, which reads its logging
/// settings with the others (config file included).
fn init_logging(args: &LogArgs) -> Result<(), Failure> {
    logging::init(&args.settings()?).map_err(Failure::Config)
}

async fn serve(args: ServeArgs) -> Result<(), Failure> {
    let mut settings = ServeSettings::load(args, &ProcessEnvironment)?;
    logging::init(&settings.log).map_err(Failure::Config)?;
    settings.proxy.shared_store = settings.store.open(&ProcessEnvironment).await?;
    if let Some(shared) = &settings.proxy.shared_store {
        tracing::info!(store = ?settings.store.spec, keys = ?shared.keys, "shared store");
    }
    let proxy = Proxy::new(settings.proxy.clone(), Arc::new(SystemClock))
        .map_err(|error| Failure::Config(error.to_string()))?;
    let tls = match &settings.tls {
        Some(files) => Some(
            ReloadableTls::load(files.clone())
                .map_err(|error| Failure::Config(format!("tls: {error}")))?,
        ),
        None => None,
    };
    let listener = bind(settings.listen).await.map_err(Failure::Run)?;
    let admin = bind(settings.admin_listen).await.map_err(Failure::Run)?;
    for route in &settings.proxy.routes {
        tracing::info!(path = %route.path, upstream = %route.upstream, "route");
    }
    tracing::info!(
        listen = %listener.local_addr().map_err(|e| Failure::Run(e.into()))?,
        admin = %admin.local_addr().map_err(|e| Failure::Run(e.into()))?,
        tls = tls.is_some(),
        "tokencache serving"
    );
    if let Some(tls) = &tls {
        shutdown::reload_on_hangup(tls.clone());
    }
    let options = ServeOptions {
        limits: settings.limits,
        tls,
    };
    tokencache_proxy::serve_with(
        proxy,
        listener,
        Some(admin),
        options,
        shutdown::signal(),
        settings.shutdown_grace,
    )
    .await
    .context("serving")
    .map_err(Failure::Run)
}

async fn mock_idp(args: MockIdpArgs) -> anyhow::Result<()> {
    let mut config = MockIdpConfig {
        token_lifetime: std::time::Duration::from_secs(args.token_lifetime),
        latency: std::time::Duration::from_millis(args.latency),
        ..MockIdpConfig::default()
    };
    if let Some(path) = &args.clients {
        config.clients = MockIdpConfig::load_clients_file(path)?;
    }
    let listener = bind(args.listen).await?;
    let addr = listener.local_addr()?;
    tracing::info!(token_url = %format!("http://{addr}/oauth2/token"), "mock IdP serving");
    MockIdp::new(config)
        .serve(listener, shutdown::signal())
        .await
        .context("serving the mock IdP")
}

async fn bind(addr: std::net::SocketAddr) -> anyhow::Result<TcpListener> {
    TcpListener::bind(addr)
        .await
        .with_context(|| format!("binding {addr}"))
}
