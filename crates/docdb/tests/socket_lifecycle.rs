#![allow(clippy::unwrap_used)]
//! The socket file (SPEC §9): mode 0600 by default (configurable), a stale file is
//! replaced, a live one makes a second server refuse to start, `--max-connections`
//! turns extra clients away with an Error while the others keep working.

mod common;
mod support;

use std::os::unix::fs::{FileTypeExt, PermissionsExt};
use std::os::unix::net::{UnixListener, UnixStream};
use std::time::{Duration, Instant};

use common::Server;
use support::*;

fn mode(p: &std::path::Path) -> u32 {
    std::fs::metadata(p).unwrap().permissions().mode() & 0o777
}

#[test]
fn socket_mode_defaults_to_0600_and_is_configurable() {
    let s = Server::start(&[]);
    assert!(std::fs::metadata(&s.socket)
        .unwrap()
        .file_type()
        .is_socket());
    assert_eq!(mode(&s.socket), 0o600);
    let s2 = Server::start(&["--socket-mode", "0640"]);
    assert_eq!(mode(&s2.socket), 0o640);
    let s3 = Server::start(&["--socket-mode", "660"]);
    assert_eq!(mode(&s3.socket), 0o660);
    // The mode is applied whatever the umask would have given, and the server works.
    let mut c = s2.connect();
    let db = c.open_db("m");
    assert_eq!(c.create(db, "", 1, "{}").0, 0);
}

#[test]
fn socket_mode_from_the_config_file() {
    let mut s = unstarted(&[]);
    let cfg = in_dir(&s, "docdb.toml");
    std::fs::write(&cfg, "socket_mode = \"0604\"\n").unwrap();
    s.extra_args = vec!["--config".into(), cfg.display().to_string()];
    s.spawn();
    assert_eq!(mode(&s.socket), 0o604);
    // A flag overrides the file.
    s.kill();
    s.extra_args.extend(["--socket-mode".into(), "0600".into()]);
    s.spawn();
    assert_eq!(mode(&s.socket), 0o600);
}

#[test]
fn a_stale_socket_file_is_replaced() {
    let mut s = unstarted(&[]);
    // A socket file left behind by a process that is gone: bound, then the listener
    // dropped without unlinking.
    drop(UnixListener::bind(&s.socket).unwrap());
    assert!(s.socket.exists());
    assert!(
        UnixStream::connect(&s.socket).is_err(),
        "nobody listens on it"
    );
    s.spawn();
    let mut c = s.connect();
    let db = c.open_db("after-stale");
    assert_eq!(c.create(db, "", 1, "{}").0, 0);
    assert_eq!(mode(&s.socket), 0o600);
    // The same after a SIGKILL (which leaves the socket file behind).
    drop(c);
    s.kill();
    assert!(s.socket.exists(), "SIGKILL leaves the socket file");
    s.spawn();
    assert_eq!(s.connect().read(db, "", 1), (0, b"{}".to_vec()));
}

#[test]
fn a_live_socket_makes_a_second_server_refuse_to_start() {
    let mut s = Server::start(&[]);
    let mut c = s.connect();
    let db = c.open_db("first");
    assert_eq!(c.create(db, "", 1, r#"{"first":true}"#).0, 0);
    let other_data = tempfile::tempdir().unwrap();
    let out = run_serve_expect_exit(
        &[
            "--data-dir",
            other_data.path().to_str().unwrap(),
            "--socket",
            s.socket.to_str().unwrap(),
        ],
        Duration::from_secs(20),
    );
    assert!(
        !out.status.success(),
        "the second server started: {}",
        out.status
    );
    assert!(
        out.stderr.to_lowercase().contains("another server"),
        "stderr names the reason: {}",
        out.stderr
    );
    // The first server is untouched: same socket file, still answering, same client.
    assert!(alive(&mut s));
    assert!(s.socket.exists());
    assert_eq!(c.read(db, "", 1), (0, br#"{"first":true}"#.to_vec()));
    let mut c2 = s.connect();
    assert_eq!(c2.read(db, "", 1).0, 0);
    // And the same data dir with the live socket too.
    let out = run_serve_expect_exit(
        &[
            "--data-dir",
            s.data_dir().to_str().unwrap(),
            "--socket",
            s.socket.to_str().unwrap(),
        ],
        Duration::from_secs(20),
    );
    assert!(!out.status.success());
    assert!(alive(&mut s));
    assert_eq!(c.read(db, "", 1).0, 0);
}

/// A connection that has been admitted: it got an answer to Stats. Retries while the
/// server is still releasing the slot of a connection that just closed (the harness's
/// readiness probe, or a client dropped by the test).
fn admitted(s: &Server) -> common::Client {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let mut c = s.connect();
        c.send_raw(&frame(0, 0, docdb_protocol::Command::Stats as u8, vec![]));
        match c.recv() {
            Some(r) if r.status == 0 => return c,
            Some(r) => assert_reply(&r, 1, "too many connections"),
            None => {}
        }
        assert!(Instant::now() < deadline, "no slot became free");
        std::thread::sleep(Duration::from_millis(20));
    }
}

#[test]
fn max_connections_turns_the_extra_client_away() {
    // The server waits 60 s inside a frame (default 10 s): "promptly" below can be
    // generous for a loaded VM and still tell a refusal from a frame timeout.
    let s = Server::start_with_config(
        "[net]\nframe_timeout = \"60s\"\n",
        &["--max-connections", "2"],
    );
    let mut c1 = admitted(&s);
    let mut c2 = admitted(&s);
    let db = c1.open_db("capped");
    assert_eq!(c2.create(db, "", 1, "{}").0, 0);
    // The third gets an Error reply and a close, promptly.
    let mut c3 = raw(&s);
    let t = Instant::now();
    let (replies, closed) = read_until_closed(&mut c3, t + Duration::from_secs(20));
    assert!(closed, "the third connection is closed");
    // Promptly: not after the 60 s frame timeout; 15 s leaves room for a loaded VM.
    assert!(t.elapsed() <= Duration::from_secs(15), "{:?}", t.elapsed());
    assert_eq!(replies.len(), 1, "{replies:?}");
    assert_reply(&replies[0], 1, "too many connections");
    // The first two keep working.
    for i in 2..20 {
        assert_eq!(c1.create(db, "", i, "{}").0, 0);
        assert_eq!(c2.read(db, "", i).0, 0);
    }
    // Once one leaves, a new client gets in.
    drop(c1);
    let mut c4 = admitted(&s);
    assert_eq!(c4.read(db, "", 1).0, 0);
    assert_eq!(c2.read(db, "", 1).0, 0);
    // And the cap still holds.
    let mut c5 = raw(&s);
    let (replies, closed) = read_until_closed(&mut c5, Instant::now() + Duration::from_secs(20));
    assert!(closed && replies.len() == 1, "{replies:?}");
    assert_reply(&replies[0], 1, "too many connections");
}
