//! Reaching a server over TCP: the [`Tls`] choice, its rustls configuration (ring
//! backend), and opening one TCP connection with its TLS handshake done.
//!
//! The server's name is the host part of the address (`db.example.com:7070` →
//! `db.example.com`, `[::1]:7070` → `::1`); an IP address is checked against the
//! certificate's IP addresses. Plain TCP ([`Tls::Insecure`]) is refused unless every
//! address the host resolves to is a loopback one: the token would cross the network
//! in clear text otherwise.

use std::fmt;
use std::io;
use std::net::{SocketAddr, TcpStream, ToSocketAddrs};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, ServerName};
use rustls::{ClientConfig, ClientConnection, RootCertStore};

/// How a TCP connection is secured ([`Client::connect_tcp`](crate::Client::connect_tcp)).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Tls {
    /// TLS, the server's certificate checked against the Mozilla root certificates
    /// compiled into the client (`webpki-roots`).
    System,
    /// TLS, the server's certificate checked against the CA certificate(s) in this
    /// PEM file (a private CA, e.g. one made for the server with `openssl` or
    /// `rcgen`).
    Ca(PathBuf),
    /// Plain TCP, no encryption: only to a loopback address (a server started with
    /// `--insecure-tcp`); refused for any other host.
    Insecure,
}

/// A TCP endpoint ready to connect to: the address, and the TLS configuration and
/// server name when TLS is on.
#[derive(Clone)]
pub(crate) struct TcpTarget {
    pub(crate) addr: String,
    tls: Option<(Arc<ClientConfig>, ServerName<'static>)>,
}

impl fmt::Debug for TcpTarget {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TcpTarget")
            .field("addr", &self.addr)
            .field("tls", &self.tls.is_some())
            .finish()
    }
}

/// A freshly opened TCP connection: plain, or with its TLS handshake done.
pub(crate) enum Opened {
    Plain(TcpStream),
    Tls(TcpStream, Box<ClientConnection>),
}

fn invalid(msg: String) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidInput, msg)
}

/// `host` of `host:port` (`[v6]:port` too).
fn host_of(addr: &str) -> io::Result<&str> {
    let bad = || invalid(format!("{addr:?} is not HOST:PORT (e.g. 127.0.0.1:7070)"));
    let (host, port) = if let Some(rest) = addr.strip_prefix('[') {
        let (h, p) = rest.split_once("]:").ok_or_else(bad)?;
        (h, p)
    } else {
        addr.rsplit_once(':').ok_or_else(bad)?
    };
    // An IPv6 address goes in brackets: `::1:7070` is ambiguous.
    let unbracketed_v6 = !addr.starts_with('[') && host.contains(':');
    if host.is_empty() || unbracketed_v6 || port.parse::<u16>().is_err() {
        return Err(bad());
    }
    Ok(host)
}

impl TcpTarget {
    /// Checks the address and builds the TLS configuration (reading the CA file).
    pub(crate) fn new(addr: &str, tls: &Tls) -> io::Result<TcpTarget> {
        let host = host_of(addr)?;
        let roots = match tls {
            Tls::Insecure => {
                return Ok(TcpTarget {
                    addr: addr.to_string(),
                    tls: None,
                })
            }
            Tls::System => RootCertStore {
                roots: webpki_roots::TLS_SERVER_ROOTS.to_vec(),
            },
            Tls::Ca(path) => {
                let p = path.display();
                let bytes = std::fs::read(path).map_err(|e| {
                    io::Error::new(e.kind(), format!("cannot read the CA file {p}: {e}"))
                })?;
                let mut roots = RootCertStore::empty();
                for cert in CertificateDer::pem_slice_iter(&bytes) {
                    let cert = cert
                        .map_err(|e| invalid(format!("the CA file {p} is not valid PEM: {e}")))?;
                    roots.add(cert).map_err(|e| {
                        invalid(format!(
                            "the CA file {p} holds an unusable certificate: {e}"
                        ))
                    })?;
                }
                if roots.is_empty() {
                    return Err(invalid(format!(
                        "the CA file {p} holds no PEM certificate (-----BEGIN CERTIFICATE-----)"
                    )));
                }
                roots
            }
        };
        let name = ServerName::try_from(host.to_string())
            .map_err(|e| invalid(format!("{host:?} is not a valid server name: {e}")))?;
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let config = ClientConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .map_err(|e| invalid(format!("TLS configuration: {e}")))?
            .with_root_certificates(roots)
            .with_no_client_auth();
        Ok(TcpTarget {
            addr: addr.to_string(),
            tls: Some((Arc::new(config), name)),
        })
    }

    /// Connects once (no retries): TCP within `timeout` per resolved address, then the
    /// TLS handshake within `timeout`.
    pub(crate) fn open(&self, timeout: Duration) -> io::Result<Opened> {
        let addrs: Vec<SocketAddr> = self.addr.to_socket_addrs()?.collect();
        if self.tls.is_none() {
            if let Some(a) = addrs.iter().find(|a| !a.ip().is_loopback()) {
                return Err(invalid(format!(
                    "plain TCP (insecure) is only allowed to a loopback address, and {} resolves to {a}; use TLS",
                    self.addr
                )));
            }
        }
        let mut last = None;
        let mut stream = None;
        for a in &addrs {
            match TcpStream::connect_timeout(a, timeout) {
                Ok(s) => {
                    stream = Some(s);
                    break;
                }
                Err(e) => last = Some(e),
            }
        }
        let stream = match stream {
            Some(s) => s,
            None => {
                return Err(last.unwrap_or_else(|| {
                    io::Error::new(io::ErrorKind::NotFound, "the host resolves to no address")
                }))
            }
        };
        // Requests are small frames written whole; do not hold them back.
        stream.set_nodelay(true)?;
        let Some((config, name)) = &self.tls else {
            return Ok(Opened::Plain(stream));
        };
        let mut tls = ClientConnection::new(config.clone(), name.clone())
            .map_err(|e| invalid(format!("TLS: {e}")))?;
        stream.set_read_timeout(Some(timeout))?;
        stream.set_write_timeout(Some(timeout))?;
        let mut s = &stream;
        while tls.is_handshaking() {
            if let Err(e) = tls.complete_io(&mut s) {
                return Err(handshake_error(e));
            }
        }
        stream.set_read_timeout(None)?;
        stream.set_write_timeout(None)?;
        Ok(Opened::Tls(stream, Box::new(tls)))
    }
}

/// The handshake's failure, with the next step for the usual ones. A certificate
/// problem is `InvalidData` (never retried); a timeout or a reset stays what it is.
fn handshake_error(e: io::Error) -> io::Error {
    let kind = match e.kind() {
        io::ErrorKind::WouldBlock => io::ErrorKind::TimedOut,
        k => k,
    };
    let text = e.to_string();
    let hint = if text.contains("UnknownIssuer") || text.contains("BadSignature") {
        " (the server's certificate is not signed by the given CA: is --tls-ca the CA that signed the server's certificate?)"
    } else if text.contains("NotValidForName") || text.contains("not valid for name") {
        " (the certificate does not name the host connected to: connect with a name or IP address it lists)"
    } else if text.contains("xpired") {
        " (the server's certificate has expired)"
    } else if kind == io::ErrorKind::UnexpectedEof || text.contains("CorruptMessage") {
        " (is the server speaking TLS? a server started with --insecure-tcp needs the client's insecure mode)"
    } else {
        ""
    };
    io::Error::new(kind, format!("TLS handshake failed: {text}{hint}"))
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn addresses_split_into_host_and_port() {
        assert_eq!(host_of("127.0.0.1:7070").unwrap(), "127.0.0.1");
        assert_eq!(host_of("db.example.com:1").unwrap(), "db.example.com");
        assert_eq!(host_of("[::1]:7070").unwrap(), "::1");
        for bad in ["localhost", ":7070", "host:", "host:99999", "[::1]", "::1"] {
            let e = host_of(bad).unwrap_err();
            assert!(e.to_string().contains("is not HOST:PORT"), "{bad}: {e}");
        }
    }

    #[test]
    fn a_missing_or_empty_ca_file_is_a_clear_error() {
        let dir = tempfile::tempdir().unwrap();
        let missing = dir.path().join("ca.pem");
        let e = TcpTarget::new("127.0.0.1:1", &Tls::Ca(missing.clone())).unwrap_err();
        assert!(e.to_string().contains("cannot read the CA file"), "{e}");
        std::fs::write(&missing, "not a certificate\n").unwrap();
        let e = TcpTarget::new("127.0.0.1:1", &Tls::Ca(missing)).unwrap_err();
        assert!(e.to_string().contains("holds no PEM certificate"), "{e}");
    }

    #[test]
    fn plain_tcp_is_refused_to_a_host_that_is_not_loopback() {
        let t = TcpTarget::new("192.0.2.1:7070", &Tls::Insecure).unwrap();
        let e = t.open(Duration::from_millis(100)).err().unwrap();
        assert_eq!(e.kind(), io::ErrorKind::InvalidInput);
        assert!(e.to_string().contains("only allowed to a loopback"), "{e}");
    }
}

/// A certificate authority and a server certificate for `localhost` and 127.0.0.1,
/// made fresh for a test.
#[cfg(test)]
pub(crate) mod testca {
    #![allow(clippy::unwrap_used)]
    use std::sync::Arc;

    use rustls::pki_types::{PrivateKeyDer, PrivatePkcs8KeyDer};

    pub(crate) struct TestCa {
        pub(crate) ca_pem: String,
        pub(crate) server: Arc<rustls::ServerConfig>,
    }

    pub(crate) fn make() -> TestCa {
        let ca_key = rcgen::KeyPair::generate().unwrap();
        let mut ca_params = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
        ca_params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
        let ca = rcgen::CertifiedIssuer::self_signed(ca_params, ca_key).unwrap();
        let key = rcgen::KeyPair::generate().unwrap();
        let params =
            rcgen::CertificateParams::new(vec!["localhost".to_string(), "127.0.0.1".to_string()])
                .unwrap();
        let cert = params.signed_by(&key, &ca).unwrap();
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let server = rustls::ServerConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .unwrap()
            .with_no_client_auth()
            .with_single_cert(
                vec![cert.der().clone()],
                PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(key.serialize_der())),
            )
            .unwrap();
        TestCa {
            ca_pem: ca.pem(),
            server: Arc::new(server),
        }
    }
}
