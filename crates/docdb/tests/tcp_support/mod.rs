//! TCP + TLS test helpers: a certificate authority and server certificates made in the
//! test (rcgen), and a TLS terminator in front of a real `docdb serve` on its Unix
//! socket that records the requests it forwards and can drop connections.
#![allow(dead_code, clippy::unwrap_used, clippy::expect_used)]

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use docdb_protocol::{decode_request, decode_response, Request};
use rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// A CA and one server certificate it signed, as PEM files in a temporary directory.
pub struct TestCa {
    pub dir: tempfile::TempDir,
    /// The CA certificate (what `--tls-ca` / `Tls::Ca` take).
    pub ca_file: PathBuf,
    pub cert_file: PathBuf,
    pub key_file: PathBuf,
    cert: CertificateDer<'static>,
    key_der: Vec<u8>,
}

impl TestCa {
    /// A fresh CA and a server certificate for `names` (DNS names or IP addresses).
    pub fn new(names: &[&str]) -> TestCa {
        let ca_key = rcgen::KeyPair::generate().unwrap();
        let mut ca_params = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
        ca_params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
        ca_params
            .distinguished_name
            .push(rcgen::DnType::CommonName, "docdb test CA");
        let ca = rcgen::CertifiedIssuer::self_signed(ca_params, ca_key).unwrap();
        let key = rcgen::KeyPair::generate().unwrap();
        let names: Vec<String> = names.iter().map(|s| s.to_string()).collect();
        let cert = rcgen::CertificateParams::new(names)
            .unwrap()
            .signed_by(&key, &ca)
            .unwrap();
        let dir = tempfile::tempdir().unwrap();
        let ca_file = dir.path().join("ca.pem");
        let cert_file = dir.path().join("server.pem");
        let key_file = dir.path().join("server.key");
        std::fs::write(&ca_file, ca.pem()).unwrap();
        std::fs::write(&cert_file, cert.pem()).unwrap();
        std::fs::write(&key_file, key.serialize_pem()).unwrap();
        TestCa {
            dir,
            ca_file,
            cert_file,
            key_file,
            cert: cert.der().clone(),
            key_der: key.serialize_der(),
        }
    }

    pub fn server_config(&self) -> Arc<rustls::ServerConfig> {
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let cfg = rustls::ServerConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .unwrap()
            .with_no_client_auth()
            .with_single_cert(
                vec![self.cert.clone()],
                PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(self.key_der.clone())),
            )
            .unwrap();
        Arc::new(cfg)
    }
}

/// `u32 length` + `body`.
fn prefixed(body: &[u8]) -> Vec<u8> {
    let mut out = (body.len() as u32).to_le_bytes().to_vec();
    out.extend_from_slice(body);
    out
}

async fn read_frame<R: AsyncReadExt + Unpin>(r: &mut R) -> Option<Vec<u8>> {
    let mut len = [0u8; 4];
    r.read_exact(&mut len).await.ok()?;
    let mut frame = vec![0u8; u32::from_le_bytes(len) as usize];
    r.read_exact(&mut frame).await.ok()?;
    Some(frame)
}

/// A TLS terminator on 127.0.0.1 in front of a server's Unix socket.
pub struct TlsProxy {
    pub addr: SocketAddr,
    st: Arc<ProxyState>,
    rt: tokio::runtime::Runtime,
}

struct ProxyState {
    upstream: PathBuf,
    /// (connection number from 0, request) in the order they arrived.
    requests: Mutex<Vec<(usize, Request)>>,
    conns: Mutex<Vec<tokio::task::JoinHandle<()>>>,
    /// Forward the next request, then drop its reply and close that connection.
    swallow_next: AtomicBool,
}

impl TlsProxy {
    pub fn start(upstream: &Path, tls: Arc<rustls::ServerConfig>) -> TlsProxy {
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .unwrap();
        let st = Arc::new(ProxyState {
            upstream: upstream.to_path_buf(),
            requests: Mutex::new(Vec::new()),
            conns: Mutex::new(Vec::new()),
            swallow_next: AtomicBool::new(false),
        });
        let listener = rt
            .block_on(tokio::net::TcpListener::bind("127.0.0.1:0"))
            .unwrap();
        let addr = listener.local_addr().unwrap();
        let acceptor = tokio_rustls::TlsAcceptor::from(tls);
        let st2 = st.clone();
        rt.spawn(async move {
            loop {
                let Ok((tcp, _)) = listener.accept().await else {
                    return;
                };
                let mut conns = st2.conns.lock().unwrap();
                let n = conns.len();
                let (st, acceptor) = (st2.clone(), acceptor.clone());
                conns.push(tokio::spawn(async move {
                    // A failed handshake (wrong CA on the client) just ends here.
                    if let Ok(tls) = acceptor.accept(tcp).await {
                        serve(st, n, tls).await;
                    }
                }));
            }
        });
        TlsProxy { addr, st, rt }
    }

    /// `localhost:PORT`.
    pub fn localhost(&self) -> String {
        format!("localhost:{}", self.addr.port())
    }

    /// Drops every connection (TCP closed, no close_notify) and waits until they are
    /// gone; the client is not told until it uses its connection.
    pub fn cut_all(&self) {
        let handles: Vec<_> = self
            .st
            .conns
            .lock()
            .unwrap()
            .iter()
            .map(|h| h.abort_handle())
            .collect();
        for h in handles {
            h.abort();
        }
        self.rt.block_on(async {
            for _ in 0..200 {
                if self
                    .st
                    .conns
                    .lock()
                    .unwrap()
                    .iter()
                    .all(|h| h.is_finished())
                {
                    break;
                }
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
        });
        // Let the FIN reach the client's socket.
        std::thread::sleep(Duration::from_millis(50));
    }

    pub fn swallow_next(&self) {
        self.st.swallow_next.store(true, Ordering::SeqCst);
    }

    pub fn connections(&self) -> usize {
        self.st.conns.lock().unwrap().len()
    }

    /// The connections on which a request carrying an op on document `id` arrived.
    pub fn sent_on(&self, id: u64) -> Vec<usize> {
        self.st
            .requests
            .lock()
            .unwrap()
            .iter()
            .filter(|(_, r)| r.ops.iter().any(|o| o.doc_id == id))
            .map(|&(n, _)| n)
            .collect()
    }

    /// The command bytes connection `n` carried, in order.
    pub fn commands_on(&self, n: usize) -> Vec<u8> {
        self.st
            .requests
            .lock()
            .unwrap()
            .iter()
            .filter(|(c, _)| *c == n)
            .map(|(_, r)| r.command)
            .collect()
    }
}

/// Pumps one connection frame by frame, recording the requests.
async fn serve(
    st: Arc<ProxyState>,
    n: usize,
    tls: tokio_rustls::server::TlsStream<tokio::net::TcpStream>,
) {
    let Ok(server) = tokio::net::UnixStream::connect(&st.upstream).await else {
        return;
    };
    let (mut cr, mut cw) = tokio::io::split(tls);
    let (mut sr, mut sw) = server.into_split();
    let swallow: Arc<Mutex<Option<u64>>> = Arc::default();
    let sw_id = swallow.clone();
    let st_up = st.clone();
    let up = async move {
        while let Some(frame) = read_frame(&mut cr).await {
            let req = decode_request(&frame).unwrap();
            if st_up.swallow_next.swap(false, Ordering::SeqCst) {
                *sw_id.lock().unwrap() = Some(req.request_id);
            }
            st_up.requests.lock().unwrap().push((n, req));
            if sw.write_all(&prefixed(&frame)).await.is_err() {
                return;
            }
        }
    };
    let down = async move {
        while let Some(frame) = read_frame(&mut sr).await {
            let id = decode_response(&frame).unwrap().request_id;
            if *swallow.lock().unwrap() == Some(id) {
                // The server answered; the client never hears of it.
                return;
            }
            if cw.write_all(&prefixed(&frame)).await.is_err() || cw.flush().await.is_err() {
                return;
            }
        }
    };
    tokio::select! {
        _ = up => {}
        _ = down => {}
    }
}

/// `docdb token issue` on `data_dir`.
pub fn issue(data_dir: &Path, db: &str, rights: &str) -> String {
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_docdb"))
        .args(["token", "issue", "--data-dir"])
        .arg(data_dir)
        .args(["--db", db, "--rights", rights])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap().trim().to_string()
}
