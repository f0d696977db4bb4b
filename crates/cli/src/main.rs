//! `tokencache`: a caching proxy for OAuth 2.0 token endpoints.
//!
//! ```text
//! tokencache serve --listen 127.0.0.1:8080 --upstream https://<domain>/oauth2/token
//! tokencache demo
//! tokencache mock-idp --listen 127.0.0.1:8081
//! tokencache token --token-url URL --client-id ID --scope api/read
//! tokencache completions bash
//! tokencache man --out-dir DIR
//! ```
//!
//! `main` only wires: settings (exit 64 when unusable: a bad flag, value,
//! variable or config file alike), logging, build, bind, log the
//! addresses, tell the service manager (systemd's `Type=notify`), serve
//! until a signal, drain under a timeout, flush the traces.
//!
//! OpenTelemetry traces are exported over OTLP when the standard `OTEL_*`
//! variables ask for them (see `traces.rs` and the README's "Tracing").

// The doc comments of the command-line types are clap's --help text, read
// in a terminal, not rustdoc markup: URLs and <placeholders> stay as typed.
#![allow(
    rustdoc::bare_urls,
    rustdoc::invalid_html_tags,
    rustdoc::broken_intra_doc_links
)]

mod cli;
mod completions;
mod demo;
mod environment;
mod logging;
mod man_pages;
mod service_manager;
mod settings;
mod shutdown;
mod store;
mod token_command;
mod traces;

use std::process::ExitCode;
use std::sync::Arc;

use anyhow::Context as _;
use clap::Parser as _;
use tokencache_core::SystemClock;
use tokencache_mock_idp::{MockIdp, MockIdpConfig};
use tokencache_proxy::{Proxy, ReloadableTls, ServeOptions};
use tokio::net::TcpListener;

use crate::cli::{Cli, Command, ManArgs, MockIdpArgs, StoreCommand};
use crate::environment::ProcessEnvironment;
use crate::service_manager::Notifier;
use crate::settings::{LogArgs, ServeArgs, ServeSettings, SettingsError};
use crate::traces::TraceExport;

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
                let traces = trace_export()?;
                let exporter =
                    logging::init_serving(&args.log.settings(&ProcessEnvironment)?, &traces)
                        .map_err(Failure::Config)?;
                let result = demo::run(args).await.map_err(Failure::Run);
                if let Some(exporter) = exporter {
                    exporter.shutdown().await;
                }
                result
            }
            Command::MockIdp(args) => {
                init_logging(&args.log)?;
                mock_idp(args).await.map_err(Failure::Run)
            }
            Command::Token(args) => token_command::run(args).await.map_err(Failure::Run),
            Command::Completions(args) => {
                completions::write(args.shell, &mut std::io::stdout().lock())
                    .context("writing the completion script")
                    .map_err(Failure::Run)
            }
            Command::Man(args) => man(&args).map_err(Failure::Run),
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
    logging::init(&args.settings(&ProcessEnvironment)?).map_err(Failure::Config)
}

/// The trace export the standard `OTEL_*` variables ask for.
fn trace_export() -> Result<TraceExport, Failure> {
    TraceExport::from_environment(&ProcessEnvironment).map_err(Failure::Config)
}

/// `tokencache serve`: logging and traces, then the proxy until a signal;
/// the spans still buffered are exported before the process exits.
async fn serve(args: ServeArgs) -> Result<(), Failure> {
    let settings = ServeSettings::load(args, &ProcessEnvironment)?;
    let traces = trace_export()?;
    let exporter = logging::init_serving(&settings.log, &traces).map_err(Failure::Config)?;
    let served = run_proxy(settings).await;
    if let Some(exporter) = exporter {
        exporter.shutdown().await;
    }
    served
}

async fn run_proxy(mut settings: ServeSettings) -> Result<(), Failure> {
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
    let (listen_addr, admin_addr) = (local_addr(&listener)?, local_addr(&admin)?);
    // Before the line that says it serves: a stop signal from then on
    // drains rather than killing the process.
    let stop = shutdown::signal();
    tracing::info!(
        listen = %listen_addr,
        admin = %admin_addr,
        tls = tls.is_some(),
        "tokencache serving"
    );
    shutdown::reload_on_hangup(tls.clone());
    // The listeners are bound: connections queue in their backlogs from
    // here on, so the service manager may start the services that need it.
    let notifier = Notifier::from_environment(&ProcessEnvironment, std::process::id());
    notifier.ready(&format!(
        "serving tokens on {listen_addr}, admin on {admin_addr}"
    ));
    notifier.spawn_watchdog();
    let shutdown = async move {
        stop.await;
        notifier.stopping();
    };
    let options = ServeOptions {
        limits: settings.limits,
        tls,
        workers: settings.workers,
    };
    tokencache_proxy::serve_with(
        proxy,
        listener,
        Some(admin),
        options,
        shutdown,
        settings.shutdown_grace,
    )
    .await
    .context("serving")
    .map_err(Failure::Run)
}

fn local_addr(listener: &TcpListener) -> Result<std::net::SocketAddr, Failure> {
    listener
        .local_addr()
        .map_err(|error| Failure::Run(error.into()))
}

/// `tokencache man`: one page to stdout, or every page into a directory.
fn man(args: &ManArgs) -> anyhow::Result<()> {
    match &args.out_dir {
        None => man_pages::write_main(&mut std::io::stdout().lock()).context("writing the page"),
        Some(dir) => std::fs::create_dir_all(dir)
            .and_then(|()| man_pages::write_all(dir))
            .with_context(|| format!("writing the pages into {}", dir.display())),
    }
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
    // Before the line that says it serves, as for `serve`.
    let stop = shutdown::signal();
    tracing::info!(token_url = %format!("http://{addr}/oauth2/token"), "mock IdP serving");
    MockIdp::new(config)
        .serve(listener, stop)
        .await
        .context("serving the mock IdP")
}

async fn bind(addr: std::net::SocketAddr) -> anyhow::Result<TcpListener> {
    TcpListener::bind(addr)
        .await
        .with_context(|| format!("binding {addr}"))
}
