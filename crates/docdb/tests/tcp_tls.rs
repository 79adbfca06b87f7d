#![allow(clippy::unwrap_used, clippy::expect_used)]
//! The server over TCP (`--listen`), through TLS with certificates made here (rcgen)
//! and a tiny raw-frame rustls client: a token is always required (whatever
//! `auth.mode`), the auth matrix holds as on the Unix socket, start-up refuses unsafe
//! or broken set-ups naming the flag or file, silent clients and stalled handshakes
//! are closed, `max_connections` counts TCP connections, and pipelined requests and a
//! large reply arrive intact.

mod common;
mod support;

use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use common::{run_docdb, Server};
use docdb_protocol::{decode_response, encode_request, Op, OpType, Request, Response};
use serde_json::Value;
use support::*;

const DENIED: u8 = 5;

/// A self-signed certificate for localhost / 127.0.0.1, written as PEM files.
struct Certs {
    cert: PathBuf,
    key: PathBuf,
    der: Vec<u8>,
}

fn make_certs(dir: &Path) -> Certs {
    let ck =
        rcgen::generate_simple_self_signed(vec!["localhost".into(), "127.0.0.1".into()]).unwrap();
    let cert = dir.join("cert.pem");
    let key = dir.join("key.pem");
    std::fs::write(&cert, ck.cert.pem()).unwrap();
    std::fs::write(&key, ck.signing_key.serialize_pem()).unwrap();
    Certs {
        cert,
        key,
        der: ck.cert.der().to_vec(),
    }
}

/// A port nobody listens on right now (the server binds it a moment later).
fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// A server with `--listen` over TLS (plus `args`); returns it, its port and certs.
fn tls_server(args: &[&str]) -> (Server, u16, Certs) {
    let dir = tempfile::tempdir().unwrap();
    let certs = make_certs(dir.path());
    let port = free_port();
    let listen = format!("127.0.0.1:{port}");
    let (c, k) = (
        certs.cert.display().to_string(),
        certs.key.display().to_string(),
    );
    let mut all = vec!["--listen", &listen, "--tls-cert", &c, "--tls-key", &k];
    all.extend_from_slice(args);
    let s = Server::start(&all);
    // The certificates' directory must outlive the test only until start-up.
    std::mem::forget(dir);
    wait_tcp(port);
    (s, port, certs)
}

fn wait_tcp(port: u16) {
    assert!(
        wait_for(Duration::from_secs(10), || TcpStream::connect((
            "127.0.0.1",
            port
        ))
        .is_ok()),
        "nothing listens on port {port}"
    );
}

/// Raw frames over any byte stream (TLS or plain TCP).
struct Wire<S: Read + Write> {
    s: S,
}

type Tls = rustls::StreamOwned<rustls::ClientConnection, TcpStream>;

fn tls_connect(port: u16, certs: &Certs) -> Wire<Tls> {
    let mut roots = rustls::RootCertStore::empty();
    roots.add(certs.der.clone().into()).unwrap();
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let cfg = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_root_certificates(roots)
        .with_no_client_auth();
    let name = "localhost".try_into().unwrap();
    let conn = rustls::ClientConnection::new(Arc::new(cfg), name).unwrap();
    let tcp = TcpStream::connect(("127.0.0.1", port)).unwrap();
    tcp.set_read_timeout(Some(Duration::from_secs(20))).unwrap();
    Wire {
        s: rustls::StreamOwned::new(conn, tcp),
    }
}

impl<S: Read + Write> Wire<S> {
    fn send(&mut self, req: &Request) {
        let mut buf = Vec::new();
        encode_request(req, &mut buf);
        self.s.write_all(&buf).unwrap();
        self.s.flush().unwrap();
    }

    fn recv(&mut self) -> Option<Response> {
        let mut len = [0u8; 4];
        self.s.read_exact(&mut len).ok()?;
        let mut frame = vec![0u8; u32::from_le_bytes(len) as usize];
        self.s.read_exact(&mut frame).ok()?;
        Some(decode_response(&frame).unwrap())
    }

    fn call(&mut self, db: u64, code: u8, ops: Vec<Op>) -> Response {
        self.send(&Request {
            request_id: 77,
            db_id: db,
            command: code,
            ops,
        });
        let r = self.recv().expect("a reply, not a closed connection");
        assert_eq!(r.request_id, 77);
        r
    }

    fn auth(&mut self, token: &str) -> Response {
        self.call(0, 16, vec![name_op(token)])
    }

    fn open_db(&mut self, name: &str) -> u64 {
        let r = self.call(0, 1, vec![name_op(name)]);
        assert_eq!(r.status, 0, "open {name}: {}", text(&r));
        u64::from_le_bytes(r.data[..8].try_into().unwrap())
    }
}

/// A new plain-TCP connection authenticated with `token`, or None if the server
/// refused it (the refusal frame, or a reset when it closed before reading the Auth).
fn try_auth(port: u16, token: &str) -> Option<Wire<TcpStream>> {
    let mut w = Wire {
        s: TcpStream::connect(("127.0.0.1", port)).ok()?,
    };
    w.s.set_read_timeout(Some(Duration::from_secs(10))).ok()?;
    let mut buf = Vec::new();
    encode_request(
        &Request {
            request_id: 77,
            db_id: 0,
            command: 16,
            ops: vec![name_op(token)],
        },
        &mut buf,
    );
    w.s.write_all(&buf).ok()?;
    let r = w.recv()?;
    (r.request_id == 77 && r.status == 0).then_some(w)
}

fn name_op(name: &str) -> Op {
    Op::new(OpType::Create, "", 0, name.as_bytes().to_vec())
}

fn issue(data_dir: &Path, db: &str, rights: &str, expires: Option<&str>) -> String {
    let dir = data_dir.display().to_string();
    let mut args = vec![
        "token",
        "issue",
        "--data-dir",
        &dir,
        "--db",
        db,
        "--rights",
        rights,
    ];
    if let Some(e) = expires {
        args.extend(["--expires", e]);
    }
    let out = run_docdb(&args);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap().trim().to_string()
}

/// What a command must get under one token (as in auth.rs, over the Unix socket).
#[derive(Clone, Copy, Debug)]
enum Expect {
    Allowed,
    Denied(&'static str),
}

const AUTH_REQUIRED: Expect = Expect::Denied("authentication required");
const NEEDS_WRITE: Expect = Expect::Denied("needs write rights");
const NEEDS_ADMIN: Expect = Expect::Denied("needs admin rights");
const OUTSIDE: Expect = Expect::Denied("outside this connection's scope");
const NOT_OPENED: Expect = Expect::Denied("was not opened by this connection");

/// Every command once, in an order that works for a token that may do everything.
fn commands(tag: &str) -> Vec<(&'static str, u8, bool, Vec<Op>)> {
    let coll = format!("c_{tag}");
    let n = tag.len() as u64 * 7;
    let scan = Op::new(OpType::Create, "_default", 0, br#"{"limit":5}"#.to_vec());
    vec![
        ("open_in_scope", 1, false, vec![name_op("t-a")]),
        ("open_out_of_scope", 1, false, vec![name_op("other")]),
        ("execute_read", 3, true, vec![read_op("_default", 1)]),
        (
            "execute_write",
            3,
            true,
            vec![create_op("_default", 100 + n, "{}")],
        ),
        (
            "transaction_write",
            13,
            true,
            vec![create_op("_default", 200 + n, "{}")],
        ),
        ("scan", 15, true, vec![scan]),
        ("create_collection", 5, true, vec![coll_op(&coll)]),
        ("list_collections", 7, true, vec![]),
        ("delete_collection", 6, true, vec![coll_op(&coll)]),
        ("heal", 9, true, vec![read_op("_default", 1)]),
        ("heal_all", 10, true, vec![]),
        ("heal_stats", 11, true, vec![]),
        ("list_dbs", 8, false, vec![]),
        ("stats", 4, false, vec![]),
        ("metrics", 12, false, vec![]),
        ("scheduler_stats", 14, false, vec![]),
        ("drop_db", 17, false, vec![name_op("t-a")]),
        ("close_db", 2, true, vec![]),
    ]
}

fn run_matrix(
    port: u16,
    certs: &Certs,
    tag: &str,
    token: Option<&str>,
    auth_ok: bool,
    foreign: u64,
    expect: impl Fn(&str) -> Expect,
) {
    let mut c = tls_connect(port, certs);
    if let Some(t) = token {
        let r = c.auth(t);
        let want = if auth_ok { 0 } else { DENIED };
        assert_eq!(r.status, want, "{tag}: auth: {}", text(&r));
    }
    let mut db = foreign;
    for (name, code, per_db, ops) in commands(tag) {
        let r = c.call(if per_db { db } else { 0 }, code, ops);
        if name == "open_in_scope" && r.status == 0 {
            db = u64::from_le_bytes(r.data[..8].try_into().unwrap());
        }
        match expect(name) {
            Expect::Allowed => {
                assert_ne!(r.status, DENIED, "{tag}: {name} was refused: {}", text(&r))
            }
            Expect::Denied(want) => {
                assert_eq!(r.status, DENIED, "{tag}: {name}: {}", text(&r));
                assert!(text(&r).contains(want), "{tag}: {name}: {:?}", text(&r));
            }
        }
        if name == "list_dbs" && r.status == 0 {
            let rows: Vec<Value> = serde_json::from_slice(&r.data).unwrap();
            let names: Vec<&str> = rows.iter().map(|r| r["Name"].as_str().unwrap()).collect();
            assert_eq!(names.contains(&"other"), tag == "admin", "{tag}: {names:?}");
        }
    }
}

/// With the default `auth.mode = none` (the Unix socket needs no token), every
/// command over TLS is checked exactly as `--auth token` checks it on the socket.
#[test]
fn every_command_under_every_kind_of_token_over_tls_even_with_auth_none() {
    let (s, port, certs) = tls_server(&[]);
    let data = s.data_dir();
    let admin = issue(&data, "*", "admin", Some("1h"));
    let read = issue(&data, "t-*", "read", None);
    let write = issue(&data, "t-*", "write", None);
    let out_of_scope = issue(&data, "zzz-*", "admin", None);
    let expired = issue(&data, "*", "admin", Some("1s"));
    let other_dir = tempfile::tempdir().unwrap();
    let other_key = issue(other_dir.path(), "*", "admin", None);
    let tampered = {
        use base64::Engine;
        let b64 = base64::engine::general_purpose::URL_SAFE_NO_PAD;
        let mut parts: Vec<String> = write.split('.').map(String::from).collect();
        let claims = String::from_utf8(b64.decode(&parts[1]).unwrap()).unwrap();
        parts[1] = b64.encode(claims.replace("\"write\"", "\"admin\""));
        parts.join(".")
    };

    // The Unix socket is as v0.3 had it: no token needed.
    let mut unix = s.connect();
    let ta = unix.open_db("t-a");
    unix.open_db("other");
    assert_eq!(unix.create(ta, "_default", 1, r#"{"x":1}"#).0, 0);

    std::thread::sleep(Duration::from_millis(2100)); // `expired` is now past its exp

    let refused = |_: &str| AUTH_REQUIRED;
    run_matrix(port, &certs, "none", None, false, ta, refused);
    run_matrix(port, &certs, "garbage", Some("x"), false, ta, refused);
    run_matrix(port, &certs, "expired", Some(&expired), false, ta, refused);
    run_matrix(
        port,
        &certs,
        "tampered",
        Some(&tampered),
        false,
        ta,
        refused,
    );
    run_matrix(
        port,
        &certs,
        "other_key",
        Some(&other_key),
        false,
        ta,
        refused,
    );
    run_matrix(
        port,
        &certs,
        "read",
        Some(&read),
        true,
        ta,
        |name| match name {
            "open_out_of_scope" => OUTSIDE,
            "execute_write" | "transaction_write" | "create_collection" | "delete_collection"
            | "heal" => NEEDS_WRITE,
            "heal_all" | "stats" | "metrics" | "scheduler_stats" | "drop_db" => NEEDS_ADMIN,
            _ => Expect::Allowed,
        },
    );
    run_matrix(
        port,
        &certs,
        "write",
        Some(&write),
        true,
        ta,
        |name| match name {
            "open_out_of_scope" => OUTSIDE,
            "heal_all" | "stats" | "metrics" | "scheduler_stats" | "drop_db" => NEEDS_ADMIN,
            _ => Expect::Allowed,
        },
    );
    run_matrix(
        port,
        &certs,
        "out_of_scope",
        Some(&out_of_scope),
        true,
        ta,
        |name| match name {
            "open_in_scope" | "open_out_of_scope" | "drop_db" => OUTSIDE,
            "list_dbs" | "stats" | "metrics" | "scheduler_stats" => Expect::Allowed,
            _ => NOT_OPENED,
        },
    );
    run_matrix(port, &certs, "admin", Some(&admin), true, ta, |_| {
        Expect::Allowed
    });
}

#[test]
fn unsafe_or_broken_tcp_set_ups_refuse_to_start_naming_the_flag_or_file() {
    let dir = tempfile::tempdir().unwrap();
    let certs = make_certs(dir.path());
    let data = dir.path().join("data").display().to_string();
    let sock = dir.path().join("s.sock").display().to_string();
    let (cert, key) = (
        certs.cert.display().to_string(),
        certs.key.display().to_string(),
    );
    let missing = dir.path().join("missing.pem").display().to_string();
    let base = ["--data-dir", data.as_str(), "--socket", sock.as_str()];
    let cases: Vec<(Vec<&str>, &str)> = vec![
        (
            vec!["--listen", "0.0.0.0:0", "--insecure-tcp"],
            "--insecure-tcp: plain TCP (--insecure-tcp) is allowed only on a loopback address",
        ),
        (vec!["--listen", "127.0.0.1:0"], "--listen: TCP needs TLS"),
        (
            vec![
                "--listen",
                "127.0.0.1:0",
                "--tls-cert",
                &missing,
                "--tls-key",
                &key,
            ],
            "--tls-cert",
        ),
        (
            vec![
                "--listen",
                "127.0.0.1:0",
                "--tls-cert",
                &key,
                "--tls-key",
                &key,
            ],
            "no PEM certificate",
        ),
        (
            vec![
                "--listen",
                "127.0.0.1:0",
                "--tls-cert",
                &cert,
                "--tls-key",
                &cert,
            ],
            "--tls-key",
        ),
        (
            vec!["--listen", "127.0.0.1:0", "--tls-cert", &cert],
            "--tls-key",
        ),
    ];
    for (args, want) in cases {
        let mut all = base.to_vec();
        all.extend(args.iter().copied());
        let e = run_serve_expect_exit(&all, Duration::from_secs(20));
        assert!(!e.status.success(), "{args:?} started");
        assert!(e.stderr.contains(want), "{args:?}: {:?}", e.stderr);
        if want.ends_with(".pem") || args.contains(&missing.as_str()) {
            assert!(e.stderr.contains(&missing), "{args:?}: {:?}", e.stderr);
        }
        assert!(!Path::new(&sock).exists(), "{args:?} left a socket behind");
    }
}

/// Reads until the server closes `s` (a read timeout is not a close); how long that
/// took, which must be under `limit`.
fn closed_within(s: &mut impl Read, limit: Duration) -> Duration {
    let started = Instant::now();
    let mut buf = [0u8; 256];
    loop {
        match s.read(&mut buf) {
            Ok(0) => break,
            Err(e)
                if matches!(
                    e.kind(),
                    std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                ) =>
            {
                panic!("still open after {:?}", started.elapsed())
            }
            Err(_) => break,
            Ok(_) => {}
        }
    }
    let took = started.elapsed();
    assert!(took < limit, "closed only after {took:?}");
    took
}

#[test]
fn silent_tcp_clients_and_stalled_handshakes_are_closed_after_frame_timeout() {
    let cfg = "[net]\nframe_timeout = \"1s\"\n";
    // Plain TCP (loopback, --insecure-tcp): connected, says nothing.
    let port = free_port();
    let listen = format!("127.0.0.1:{port}");
    let _plain = Server::start_with_config(cfg, &["--listen", &listen, "--insecure-tcp"]);
    wait_tcp(port);
    let mut silent = TcpStream::connect(("127.0.0.1", port)).unwrap();
    silent
        .set_read_timeout(Some(Duration::from_secs(9)))
        .unwrap();
    let took = closed_within(&mut silent, Duration::from_secs(8));
    assert!(
        took >= Duration::from_millis(800),
        "closed too soon: {took:?}"
    );
    // An authenticated one is not: it is under net.idle_timeout (0 = never).
    let token = issue(&_plain.data_dir(), "*", "read", None);
    let mut w = Wire {
        s: TcpStream::connect(("127.0.0.1", port)).unwrap(),
    };
    assert_eq!(w.auth(&token).status, 0);
    std::thread::sleep(Duration::from_millis(2500));
    assert_eq!(w.call(0, 8, vec![]).status, 0, "closed while authenticated");

    // TLS: nothing sent, and a handshake begun but never finished.
    let dir = tempfile::tempdir().unwrap();
    let certs = make_certs(dir.path());
    let port = free_port();
    let listen = format!("127.0.0.1:{port}");
    let (c, k) = (
        certs.cert.display().to_string(),
        certs.key.display().to_string(),
    );
    let _tls = Server::start_with_config(
        cfg,
        &["--listen", &listen, "--tls-cert", &c, "--tls-key", &k],
    );
    wait_tcp(port);
    let mut silent = TcpStream::connect(("127.0.0.1", port)).unwrap();
    silent
        .set_read_timeout(Some(Duration::from_secs(9)))
        .unwrap();
    closed_within(&mut silent, Duration::from_secs(8));
    let mut half = TcpStream::connect(("127.0.0.1", port)).unwrap();
    half.set_read_timeout(Some(Duration::from_secs(9))).unwrap();
    // The first bytes of a TLS record header (handshake, TLS 1.0 record version).
    half.write_all(&[0x16, 0x03, 0x01, 0x00]).unwrap();
    closed_within(&mut half, Duration::from_secs(8));
}

#[test]
fn a_tcp_client_that_never_authenticates_is_closed_after_auth_timeout_however_busy() {
    // frame_timeout far away: only auth_timeout can close it.
    let cfg = "[net]\nauth_timeout = \"1s\"\nframe_timeout = \"30s\"\n";
    let port = free_port();
    let listen = format!("127.0.0.1:{port}");
    let s = Server::start_with_config(cfg, &["--listen", &listen, "--insecure-tcp"]);
    wait_tcp(port);
    let tcp = TcpStream::connect(("127.0.0.1", port)).unwrap();
    tcp.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    let mut w = Wire { s: tcp };
    let started = Instant::now();
    let mut refused = 0;
    // ListDBs every 100 ms without a token: each is refused, none keeps it open.
    let closed_after = loop {
        let mut frame = Vec::new();
        encode_request(
            &Request {
                request_id: 5,
                db_id: 0,
                command: 8,
                ops: vec![],
            },
            &mut frame,
        );
        if w.s.write_all(&frame).is_err() {
            break started.elapsed();
        }
        match w.recv() {
            Some(r) => {
                assert_ne!(r.status, 0, "ListDBs answered without a token");
                refused += 1;
            }
            None => break started.elapsed(),
        }
        assert!(
            started.elapsed() < Duration::from_secs(8),
            "still open after {:?} and {refused} refused requests",
            started.elapsed()
        );
        std::thread::sleep(Duration::from_millis(100));
    };
    assert!(
        closed_after >= Duration::from_millis(800),
        "closed too soon: {closed_after:?}"
    );
    assert!(
        refused >= 5,
        "only {refused} requests answered before the close"
    );
    // One that authenticates in time stays open past auth_timeout.
    let token = issue(&s.data_dir(), "*", "read", None);
    let mut w = Wire {
        s: TcpStream::connect(("127.0.0.1", port)).unwrap(),
    };
    assert_eq!(w.auth(&token).status, 0);
    std::thread::sleep(Duration::from_millis(1500));
    assert_eq!(w.call(0, 8, vec![]).status, 0, "closed while authenticated");
}

#[test]
fn max_connections_counts_tcp_connections() {
    let port = free_port();
    let listen = format!("127.0.0.1:{port}");
    let s = Server::start(&[
        "--listen",
        &listen,
        "--insecure-tcp",
        "--max-connections",
        "3",
    ]);
    wait_tcp(port);
    let token = issue(&s.data_dir(), "*", "read", None);
    // The harness's start-up probes hold slots until the server sees them close,
    // which may be a moment later: one Unix and two TCP connections take the three
    // slots, each retried while it is refused (a refusal may also come as a reset).
    let deadline = Instant::now() + Duration::from_secs(5);
    let admitted = |what: &str, attempt: &mut dyn FnMut() -> bool| {
        while !attempt() {
            assert!(Instant::now() < deadline, "no free slot for {what} in 5 s");
            std::thread::sleep(Duration::from_millis(20));
        }
    };
    let mut unix = None;
    admitted("the Unix connection", &mut || {
        let mut c = s.connect();
        let mut buf = Vec::new();
        encode_request(
            &Request {
                request_id: 9,
                db_id: 0,
                command: 1,
                ops: vec![name_op("u")],
            },
            &mut buf,
        );
        let ok = c.stream.write_all(&buf).is_ok()
            && c.recv().is_some_and(|r| r.request_id == 9 && r.status == 0);
        if ok {
            unix = Some(c);
        }
        ok
    });
    let mut unix = unix.unwrap();
    let mut held: Vec<Wire<TcpStream>> = Vec::new();
    while held.len() < 2 {
        admitted("a TCP connection", &mut || match try_auth(port, &token) {
            Some(w) => {
                held.push(w);
                true
            }
            None => false,
        });
    }
    let fds = |pid: i32| {
        std::fs::read_dir(format!("/proc/{pid}/fd"))
            .unwrap()
            .count()
    };
    let before = fds(s.pid());
    for _ in 0..20 {
        let mut w = Wire {
            s: TcpStream::connect(("127.0.0.1", port)).unwrap(),
        };
        w.s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
        let r = w.recv().expect("an error frame");
        assert_eq!(text(&r), "too many connections");
        assert!(w.recv().is_none(), "closed after the refusal");
    }
    // The refused ones hold nothing in the real process.
    assert!(fds(s.pid()) <= before, "{} > {before}", fds(s.pid()));
    // A freed slot is taken again.
    drop(held.pop());
    assert!(wait_for(Duration::from_secs(5), || try_auth(port, &token).is_some()));
    assert_eq!(unix.open_db("u"), unix.open_db("u"));
}

#[test]
fn pipelined_requests_and_a_large_reply_arrive_intact_over_tls() {
    // The queue holds what max_inflight (128) lets one connection have in flight.
    let (s, port, certs) = tls_server(&["--queue-depth", "1000"]);
    let token = issue(&s.data_dir(), "*", "write", None);
    let mut c = tls_connect(port, &certs);
    assert_eq!(c.auth(&token).status, 0);
    let db = c.open_db("big");
    // 300 writes then 300 reads in one go, answered by id.
    let mut burst = Vec::new();
    for i in 0..600u64 {
        let op = if i < 300 {
            create_op("_default", i, &format!("{{\"n\":{i}}}"))
        } else {
            read_op("_default", i - 300)
        };
        encode_request(
            &Request {
                request_id: 1000 + i,
                db_id: db,
                command: 3,
                ops: vec![op],
            },
            &mut burst,
        );
    }
    c.s.write_all(&burst).unwrap();
    c.s.flush().unwrap();
    let mut seen = std::collections::BTreeMap::new();
    for _ in 0..600 {
        let r = c.recv().expect("a reply");
        assert_eq!(r.status, 0, "{}", text(&r));
        seen.insert(r.request_id, r);
    }
    for i in 300..600u64 {
        let r = &seen[&(1000 + i)];
        let want = format!("{{\"n\":{}}}", i - 300);
        assert!(
            common::find_all(&r.data, want.as_bytes()).len() == 1,
            "read {} got {:?}",
            i - 300,
            String::from_utf8_lossy(&r.data)
        );
    }
    // A document of 15 MiB, read back whole through TLS.
    let big = format!("{{\"s\":\"{}\"}}", "x".repeat(15 << 20));
    let r = c.call(db, 3, vec![create_op("_default", 9999, &big)]);
    assert_eq!(r.status, 0, "{}", text(&r));
    let r = c.call(db, 3, vec![read_op("_default", 9999)]);
    assert_eq!(r.status, 0, "{}", text(&r));
    assert!(r.data.len() > 15 << 20);
    assert_eq!(common::find_all(&r.data, big.as_bytes()).len(), 1);
}
