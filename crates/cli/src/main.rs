//! `tokencache`: a caching proxy for OAuth 2.0 token endpoints.
//!
//! ```text
//! tokencache serve --listen 127.0.0.1:8080 --upstream https://<domain>/oauth2/token
//! tokencache demo
//! tokencache mock-idp --listen 127.0.0.1:8081
//! tokencache token --token-url URL --client-id ID --scope api/read
//! ```
//!
//! `main` only wires: logging, settings (exit 64 when unusable), build,
//! bind, log the addresses, serve until a signal, drain under a timeout.

// The doc comments of the command-line types are clap's --help text, read
// in a terminal, not rustdoc markup: URLs and <placeholders> stay as typed.
#![allow(
    rustdoc::bare_urls,
    rustdoc::invalid_html_tags,
    rustdoc::broken_intra_doc_links
)]

mod cli;
mod demo;
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

use crate::cli::{Cli, Command, MockIdpArgs, ServeArgs, StoreCommand};
use crate::settings::{FileConfig, ProcessEnvironment, ServeSettings, SettingsError};

/// `EX_USAGE` from sysexits(3): the configuration is unusable.
const EXIT_CONFIG: u8 = 64;

fn main() -> ExitCode {
    let cli = Cli::parse();
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
            Command::Serve(args) => serve(*args).await,
            Command::Demo(args) => demo::run(args).await.map_err(Failure::Run),
            Command::MockIdp(args) => mock_idp(args).await.map_err(Failure::Run),
            Command::Token(args) => token_command::run(args).await.map_err(Failure::Run),
            Command::Store(StoreCommand::Init { store, log }) => {
                logging::init(&log).map_err(Failure::Config)?;
                store::init(&store).await.map_err(Failure::Run)
            }
        }
    });
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(Failure::Config(error)) => {
            eprintln!("tokencache: invalid configuration: {error}");
            ExitCode::from(EXIT_CONFIG)
        }
        Err(Failure::Run(error)) => {
            tracing::error!("{error:#}");
            eprintln!("tokencache: {error:#}");
            ExitCode::FAILURE
        }
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

async fn serve(args: ServeArgs) -> Result<(), Failure> {
    let file = match &args.config {
        Some(path) => FileConfig::load(path)?,
        None => FileConfig::default(),
    };
    let mut settings = ServeSettings::resolve(args, file, &ProcessEnvironment)?;
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
    logging::init(&args.log).map_err(anyhow::Error::msg)?;
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
