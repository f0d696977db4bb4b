//! HTTPS for the token listener: rustls, HTTP/1.1 and HTTP/2 by ALPN, and
//! certificates that reload without dropping connections.

use std::io;
use std::path::{Path, PathBuf};
use std::sync::{Arc, PoisonError, RwLock};

use rustls::ServerConfig;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use tokio_rustls::TlsAcceptor;

/// Where the certificate chain and its private key are (PEM).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TlsFiles {
    /// The certificate chain, leaf first.
    pub cert: PathBuf,
    /// The private key (PKCS#8, PKCS#1 or SEC1).
    pub key: PathBuf,
}

/// A TLS configuration that can be replaced while serving: each new
/// connection takes the current one, connections already open keep theirs.
#[derive(Debug, Clone)]
pub struct ReloadableTls {
    files: TlsFiles,
    current: Arc<RwLock<Arc<ServerConfig>>>,
}

impl ReloadableTls {
    /// Loads the files.
    ///
    /// # Errors
    /// When a file cannot be read or holds no usable certificate or key.
    pub fn load(files: TlsFiles) -> io::Result<Self> {
        let config = server_config(&files)?;
        Ok(Self {
            files,
            current: Arc::new(RwLock::new(config)),
        })
    }

    /// Reads the files again (on SIGHUP, after a certificate renewal). On
    /// failure the current configuration stays.
    ///
    /// # Errors
    /// Why the new files are not usable.
    pub fn reload(&self) -> io::Result<()> {
        let config = server_config(&self.files)?;
        *self.current.write().unwrap_or_else(PoisonError::into_inner) = config;
        Ok(())
    }

    pub(crate) fn acceptor(&self) -> TlsAcceptor {
        TlsAcceptor::from(Arc::clone(
            &self.current.read().unwrap_or_else(PoisonError::into_inner),
        ))
    }
}

fn server_config(files: &TlsFiles) -> io::Result<Arc<ServerConfig>> {
    let chain = read_certificates(&files.cert)?;
    let key = PrivateKeyDer::from_pem_file(&files.key).map_err(|error| {
        io::Error::new(
            io::ErrorKind::InvalidData,
            format!("no private key in {}: {error}", files.key.display()),
        )
    })?;
    let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    let mut config = ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(io::Error::other)?
        .with_no_client_auth()
        .with_single_cert(chain, key)
        .map_err(|error| {
            io::Error::new(
                io::ErrorKind::InvalidData,
                format!("certificate and key do not make a TLS identity: {error}"),
            )
        })?;
    config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    Ok(Arc::new(config))
}

fn read_certificates(path: &Path) -> io::Result<Vec<CertificateDer<'static>>> {
    let chain = CertificateDer::pem_file_iter(path)
        .and_then(Iterator::collect::<Result<Vec<_>, _>>)
        .map_err(|error| {
            io::Error::new(
                io::ErrorKind::InvalidData,
                format!("reading certificates from {}: {error}", path.display()),
            )
        })?;
    if chain.is_empty() {
        return Err(io::Error::new(
            io::ErrorKind::InvalidData,
            format!("no certificate in {}", path.display()),
        ));
    }
    Ok(chain)
}
