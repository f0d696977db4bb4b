//! Opening connections: standalone through a connection manager, clusters
//! through a cluster connection; TLS through rustls.

use std::time::Duration;

use base64::Engine as _;
use redis::aio::{ConnectionLike, ConnectionManager, ConnectionManagerConfig};
use redis::cluster::{ClusterClient, ClusterClientBuilder};
use redis::cluster_async::ClusterConnection;
use redis::{
    Client, Cmd, ConnectionAddr, ConnectionInfo, IntoConnectionInfo, Pipeline, RedisConnectionInfo,
    RedisFuture, TlsCertificates, Value,
};
use tokencache_core::StoreError;

use crate::config::{RedisConfig, RedisNode, Topology};
use crate::error::{store_error, timed_out};

/// A live connection of either kind. Clones share the underlying
/// connections (both kinds multiplex), so each operation takes its own.
#[derive(Clone)]
pub(crate) enum Conn {
    /// One server; reconnects on its own after a failure.
    Standalone(ConnectionManager),
    /// A cluster; follows slot moves and reconnects to nodes on its own.
    Cluster(ClusterConnection),
}

impl ConnectionLike for Conn {
    fn req_packed_command<'a>(&'a mut self, cmd: &'a Cmd) -> RedisFuture<'a, Value> {
        match self {
            Self::Standalone(conn) => conn.req_packed_command(cmd),
            Self::Cluster(conn) => conn.req_packed_command(cmd),
        }
    }

    fn req_packed_commands<'a>(
        &'a mut self,
        pipeline: &'a Pipeline,
        offset: usize,
        count: usize,
    ) -> RedisFuture<'a, Vec<Value>> {
        match self {
            Self::Standalone(conn) => conn.req_packed_commands(pipeline, offset, count),
            Self::Cluster(conn) => conn.req_packed_commands(pipeline, offset, count),
        }
    }

    fn get_db(&self) -> i64 {
        match self {
            Self::Standalone(conn) => conn.get_db(),
            Self::Cluster(conn) => conn.get_db(),
        }
    }
}

/// Reconnection after a failure: quick first tries, then at most a second
/// apart, so a restarted server is used again within about a second. Each
/// round of tries that fails is followed by a new round on the next
/// operation.
const RECONNECT_MIN_DELAY: Duration = Duration::from_millis(50);
const RECONNECT_MAX_DELAY: Duration = Duration::from_secs(1);
const RECONNECT_TRIES: usize = 4;

/// Connects now: the first connection, its `AUTH` and a `PING` must
/// succeed within the connect timeout.
pub(crate) async fn connect(config: &RedisConfig) -> Result<Conn, StoreError> {
    let scrub = config.password().map(|password| password.secret());
    let limit = config.connect_timeout;
    let bounded = async {
        match config.topology() {
            Topology::Standalone => {
                let client = standalone_client(config)?;
                // One plain connection first: a wrong password or an
                // untrusted certificate is reported as it is, instead of
                // after the manager's rounds of retries.
                let mut probe = client
                    .get_multiplexed_async_connection_with_config(
                        &redis::AsyncConnectionConfig::new()
                            .set_connection_timeout(Some(limit))
                            .set_response_timeout(Some(limit)),
                    )
                    .await
                    .map_err(|error| store_error("connect", &error, scrub))?;
                redis::cmd("PING")
                    .query_async::<()>(&mut probe)
                    .await
                    .map_err(|error| store_error("connect", &error, scrub))?;
                drop(probe);
                let manager = ConnectionManager::new_with_config(client, manager_config(config))
                    .await
                    .map_err(|error| store_error("connect", &error, scrub))?;
                Ok(Conn::Standalone(manager))
            }
            Topology::Cluster => {
                let client = cluster_client(config)?;
                let mut conn = client
                    .get_async_connection()
                    .await
                    .map_err(|error| store_error("connect", &error, scrub))?;
                redis::cmd("PING")
                    .query_async::<()>(&mut conn)
                    .await
                    .map_err(|error| store_error("connect", &error, scrub))?;
                Ok(Conn::Cluster(conn))
            }
        }
    };
    tokio::time::timeout(limit, bounded)
        .await
        .map_err(|_| timed_out("connect", limit))?
}

/// Connects on first use: no I/O now, so a proxy starts while Redis is down
/// and uses it once it answers.
pub(crate) fn connect_lazy(config: &RedisConfig) -> Result<Conn, StoreError> {
    let scrub = config.password().map(|password| password.secret());
    match config.topology() {
        Topology::Standalone => {
            let client = standalone_client(config)?;
            ConnectionManager::new_lazy_with_config(client, manager_config(config))
                .map(Conn::Standalone)
                .map_err(|error| store_error("connect", &error, scrub))
        }
        Topology::Cluster => {
            let client = cluster_client(config)?;
            Ok(Conn::Cluster(
                client
                    .get_pending_async_connection_with_config(redis::cluster::ClusterConfig::new()),
            ))
        }
    }
}

fn manager_config(config: &RedisConfig) -> ConnectionManagerConfig {
    ConnectionManagerConfig::new()
        .set_connection_timeout(Some(config.connect_timeout))
        .set_response_timeout(Some(config.op_timeout))
        .set_min_delay(RECONNECT_MIN_DELAY)
        .set_max_delay(RECONNECT_MAX_DELAY)
        .set_number_of_retries(RECONNECT_TRIES)
}

fn standalone_client(config: &RedisConfig) -> Result<Client, StoreError> {
    let scrub = config.password().map(|password| password.secret());
    let node = config.nodes().first().ok_or_else(|| {
        // parse() guarantees one node; a config is only made by parse().
        StoreError::Refused("invalid Redis store settings: no node".to_owned())
    })?;
    let info = connection_info(config, node)?;
    let client = match tls_certificates(config)? {
        Some(certificates) => Client::build_with_tls(info, certificates),
        None => Client::open(info),
    };
    client.map_err(|error| store_error("configure", &error, scrub))
}

fn cluster_client(config: &RedisConfig) -> Result<ClusterClient, StoreError> {
    let scrub = config.password().map(|password| password.secret());
    let nodes = config
        .nodes()
        .iter()
        .map(|node| connection_info(config, node))
        .collect::<Result<Vec<_>, _>>()?;
    let mut builder = ClusterClientBuilder::new(nodes)
        .connection_timeout(config.connect_timeout)
        .response_timeout(config.op_timeout)
        .retries(RECONNECT_TRIES as u32)
        .min_retry_wait(RECONNECT_MIN_DELAY.as_millis() as u64)
        .max_retry_wait(RECONNECT_MAX_DELAY.as_millis() as u64);
    if let Some(certificates) = tls_certificates(config)? {
        builder = builder.certs(certificates);
    }
    builder
        .build()
        .map_err(|error| store_error("configure", &error, scrub))
}

/// Address, database and credentials of one node.
fn connection_info(config: &RedisConfig, node: &RedisNode) -> Result<ConnectionInfo, StoreError> {
    let addr = if config.tls() {
        ensure_crypto_provider();
        ConnectionAddr::TcpTls {
            host: node.host.clone(),
            port: node.port,
            insecure: false,
            tls_params: None,
        }
    } else {
        ConnectionAddr::Tcp(node.host.clone(), node.port)
    };
    let mut redis = RedisConnectionInfo::default().set_db(i64::from(config.db()));
    if let Some(user) = config.username() {
        redis = redis.set_username(user);
    }
    if let Some(password) = config.password() {
        redis = redis.set_password(password.secret());
    }
    let info = addr
        .into_connection_info()
        .map_err(|error| store_error("configure", &error, None))?;
    Ok(info.set_redis_settings(redis))
}

/// The trust roots when a CA file is configured: the system roots and the
/// file's certificates, as one PEM bundle. `None` leaves the client on the
/// system roots alone.
fn tls_certificates(config: &RedisConfig) -> Result<Option<TlsCertificates>, StoreError> {
    let Some(path) = &config.ca_file else {
        return Ok(None);
    };
    let unusable =
        |what: String| StoreError::Refused(format!("the Redis CA file {}: {what}", path.display()));
    let file = std::fs::read(path).map_err(|error| unusable(error.to_string()))?;
    let mut bundle = Vec::with_capacity(file.len());
    let mut count = 0usize;
    for certificate in rustls::pki_types::pem::PemObject::pem_slice_iter(&file) {
        let certificate: rustls::pki_types::CertificateDer<'_> =
            certificate.map_err(|error| unusable(format!("not PEM certificates ({error})")))?;
        push_pem(&mut bundle, &certificate);
        count += 1;
    }
    if count == 0 {
        return Err(unusable("holds no certificate".to_owned()));
    }
    let system = rustls_native_certs::load_native_certs();
    if !system.errors.is_empty() {
        tracing::debug!(
            errors = system.errors.len(),
            "some system roots could not be read"
        );
    }
    for certificate in &system.certs {
        push_pem(&mut bundle, certificate);
    }
    tracing::debug!(
        ca_file = %path.display(),
        from_file = count,
        system = system.certs.len(),
        "redis TLS roots"
    );
    Ok(Some(TlsCertificates {
        client_tls: None,
        root_cert: Some(bundle),
    }))
}

fn push_pem(bundle: &mut Vec<u8>, der: &[u8]) {
    let encoded = base64::engine::general_purpose::STANDARD.encode(der);
    bundle.extend_from_slice(b"-----BEGIN CERTIFICATE-----\n");
    for line in encoded.as_bytes().chunks(64) {
        bundle.extend_from_slice(line);
        bundle.push(b'\n');
    }
    bundle.extend_from_slice(b"-----END CERTIFICATE-----\n");
}

/// The Redis client builds its rustls configuration from the process's
/// default crypto provider. The workspace builds aws-lc-rs only; installing
/// it when nobody has chosen one keeps rustls from panicking should another
/// dependency ever enable a second provider.
fn ensure_crypto_provider() {
    if rustls::crypto::CryptoProvider::get_default().is_none() {
        // Losing a race to another installer is fine: any provider will do.
        let _ = rustls::crypto::aws_lc_rs::default_provider().install_default();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pem_round_trips() {
        let der = vec![0x30u8; 100];
        let mut bundle = Vec::new();
        push_pem(&mut bundle, &der);
        let parsed: Vec<rustls::pki_types::CertificateDer<'_>> =
            rustls::pki_types::pem::PemObject::pem_slice_iter(&bundle)
                .collect::<Result<_, _>>()
                .unwrap();
        assert_eq!(parsed.len(), 1);
        assert_eq!(parsed[0].as_ref(), &der[..]);
    }

    #[test]
    fn a_missing_ca_file_is_refused() {
        let mut config = RedisConfig::parse("rediss://:pw@127.0.0.1:1").unwrap();
        config.ca_file = Some("/nonexistent/ca.pem".into());
        let error = tls_certificates(&config).unwrap_err();
        assert!(matches!(&error, StoreError::Refused(m) if m.contains("/nonexistent/ca.pem")));
    }
}
