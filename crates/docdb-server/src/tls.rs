//! TLS for `--listen` (`net.tls_cert`, `net.tls_key`): the rustls server configuration,
//! built once at start from PEM files, so a missing or bad file stops the server
//! before it serves anything, with a message naming the key and the file.
//!
//! rustls on the ring provider; TLS 1.2 and 1.3; no client certificates (a client
//! proves who it is with a token, Auth).

use std::path::Path;
use std::sync::Arc;

use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer};
use tokio_rustls::TlsAcceptor;

/// Loads the certificate chain and key and returns the acceptor of TLS connections.
pub fn acceptor(cert_file: &Path, key_file: &Path) -> anyhow::Result<TlsAcceptor> {
    let certs = load_certs(cert_file)?;
    let key = load_key(key_file)?;
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let cfg = rustls::ServerConfig::builder_with_provider(provider)
        .with_protocol_versions(&[&rustls::version::TLS13, &rustls::version::TLS12])
        .map_err(|e| anyhow::anyhow!("TLS set-up: {e}"))?
        .with_no_client_auth()
        .with_single_cert(certs, key)
        .map_err(|e| {
            anyhow::anyhow!(
                "net.tls_cert (--tls-cert) {} and net.tls_key (--tls-key) {} \
                 do not make a usable pair: {e}",
                cert_file.display(),
                key_file.display()
            )
        })?;
    Ok(TlsAcceptor::from(Arc::new(cfg)))
}

fn load_certs(path: &Path) -> anyhow::Result<Vec<CertificateDer<'static>>> {
    let name = || format!("net.tls_cert (--tls-cert) {}", path.display());
    let pem = std::fs::read(path).map_err(|e| anyhow::anyhow!("{}: {e}", name()))?;
    let certs = CertificateDer::pem_slice_iter(&pem)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| anyhow::anyhow!("{}: not a PEM certificate chain: {e}", name()))?;
    if certs.is_empty() {
        anyhow::bail!("{}: no PEM certificate (BEGIN CERTIFICATE) in it", name());
    }
    Ok(certs)
}

fn load_key(path: &Path) -> anyhow::Result<PrivateKeyDer<'static>> {
    let name = || format!("net.tls_key (--tls-key) {}", path.display());
    let pem = std::fs::read(path).map_err(|e| anyhow::anyhow!("{}: {e}", name()))?;
    PrivateKeyDer::from_pem_slice(&pem).map_err(|e| {
        anyhow::anyhow!(
            "{}: no PEM private key (PKCS#8, PKCS#1 or SEC1) in it: {e}",
            name()
        )
    })
}
