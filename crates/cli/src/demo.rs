//! `tokencache demo`: the mock IdP and the proxy on loopback, and a curl
//! command to try them.

use std::io::Write as _;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context as _;
use tokencache_core::SystemClock;
use tokencache_mock_idp::{MockIdp, MockIdpConfig};
use tokencache_proxy::{Proxy, ProxyConfig, RouteConfig};
use tokio::net::TcpListener;

use crate::cli::DemoArgs;
use crate::shutdown;

/// Runs the demo until SIGINT/SIGTERM (logging already set up).
pub async fn run(args: DemoArgs) -> anyhow::Result<()> {
    let idp_listener = bind_or_any(args.idp_listen).await?;
    let proxy_listener = bind_or_any(args.listen).await?;
    let admin_listener = bind_or_any(args.admin_listen).await?;
    let idp_addr = idp_listener.local_addr()?;
    let proxy_addr = proxy_listener.local_addr()?;
    let admin_addr = admin_listener.local_addr()?;

    let idp = MockIdp::new(MockIdpConfig {
        token_lifetime: Duration::from_secs(args.token_lifetime),
        latency: Duration::from_millis(args.idp_latency),
        ..MockIdpConfig::default()
    });
    let (idp_stop, idp_stopped) = tokio::sync::oneshot::channel::<()>();
    let idp_task = tokio::spawn(idp.serve(idp_listener, async move {
        let _ = idp_stopped.await;
    }));

    let config = ProxyConfig::new(vec![RouteConfig::new(
        "/oauth2/token",
        format!("http://{idp_addr}/oauth2/token")
            .parse()
            .context("mock IdP URL")?,
    )]);
    let proxy = Proxy::new(config, Arc::new(SystemClock))?;

    // Listening for Ctrl-C before saying how to use the demo.
    let stop = shutdown::signal();
    print_instructions(idp_addr, proxy_addr, admin_addr)?;

    tokencache_proxy::serve(
        proxy,
        proxy_listener,
        Some(admin_listener),
        stop,
        Duration::from_secs(5),
    )
    .await?;
    let _ = idp_stop.send(());
    idp_task.await??;
    Ok(())
}

/// Binds `addr`, or a free port on the same interface when it is taken, so
/// the demo starts even where 8080 is in use.
async fn bind_or_any(addr: SocketAddr) -> anyhow::Result<TcpListener> {
    match TcpListener::bind(addr).await {
        Ok(listener) => Ok(listener),
        Err(error) if error.kind() == std::io::ErrorKind::AddrInUse => {
            tracing::warn!(%addr, "address in use; taking a free port instead");
            TcpListener::bind(SocketAddr::new(addr.ip(), 0))
                .await
                .with_context(|| format!("binding {}", addr.ip()))
        }
        Err(error) => Err(error).with_context(|| format!("binding {addr}")),
    }
}

fn print_instructions(idp: SocketAddr, proxy: SocketAddr, admin: SocketAddr) -> anyhow::Result<()> {
    let text = format!(
        "\
tokencache demo

  mock identity provider  http://{idp}/oauth2/token
                          clients: demo-client / demo-secret, other-client / other-secret
  tokencache proxy        http://{proxy}/oauth2/token
  status page             http://{admin}/
  metrics                 http://{admin}/metrics

Fetch a token through the proxy. Run it twice: the first answer was fetched
from the identity provider (Cache-Status: tokencache; fwd=miss; stored), the
second comes from the cache (Cache-Status: tokencache; hit; ttl=...).

  curl -s -D - -u demo-client:demo-secret -d grant_type=client_credentials -d scope=api/read http://{proxy}/oauth2/token

Press Ctrl-C to stop.
"
    );
    let mut stdout = std::io::stdout().lock();
    stdout.write_all(text.as_bytes())?;
    stdout.flush()?;
    Ok(())
}
