//! Test certificates: a private CA and a `localhost` leaf it signed.

use std::path::Path;

use rcgen::{BasicConstraints, CertificateParams, IsCa, Issuer, KeyPair};

/// Writes `cert.pem` and `key.pem` (a leaf for `localhost` and `127.0.0.1`,
/// signed by a fresh private CA) into `dir`; the CA's PEM, for clients to
/// trust.
///
/// # Panics
/// When a certificate cannot be made or written (the test cannot run).
#[must_use]
pub fn write_localhost_certificate(dir: &Path) -> String {
    let made = || -> Result<String, Box<dyn std::error::Error>> {
        let mut ca_params = CertificateParams::new(Vec::<String>::new())?;
        ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        let ca_key = KeyPair::generate()?;
        let ca_cert = ca_params.self_signed(&ca_key)?;
        let issuer = Issuer::new(ca_params, ca_key);
        let leaf_key = KeyPair::generate()?;
        let leaf = CertificateParams::new(vec!["localhost".to_owned(), "127.0.0.1".to_owned()])?
            .signed_by(&leaf_key, &issuer)?;
        std::fs::write(dir.join("cert.pem"), leaf.pem())?;
        std::fs::write(dir.join("key.pem"), leaf_key.serialize_pem())?;
        Ok(ca_cert.pem())
    };
    made().unwrap_or_else(|error| panic!("writing a test certificate: {error}"))
}
