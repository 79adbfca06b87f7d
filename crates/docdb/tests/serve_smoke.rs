//! The server starts on its own data dir and socket, serves a write and a read, keeps
//! them across a restart, and exits 0 on SIGTERM after removing its socket; it runs
//! without transparent huge pages.

#![allow(clippy::unwrap_used)]

mod common;

use std::time::Duration;

use common::Server;

#[test]
fn write_restart_read_and_clean_exit() {
    let mut s = Server::start(&[]);
    let mut c = s.connect();
    let db = c.open_db("smoke");
    assert_eq!(c.create(db, "", 1, r#"{"hello":"world"}"#).0, 0);
    assert_eq!(c.read(db, "", 1), (0, br#"{"hello":"world"}"#.to_vec()));
    drop(c);
    let st = s.terminate(Duration::from_secs(20));
    assert!(st.success(), "{st}");
    assert!(!s.socket.exists(), "socket removed on shutdown");
    s.spawn();
    let mut c = s.connect();
    assert_eq!(c.open_db("smoke"), db, "ids survive restarts");
    assert_eq!(c.read(db, "", 1), (0, br#"{"hello":"world"}"#.to_vec()));
}

#[test]
fn close_db_closes_and_the_next_request_reopens() {
    use docdb_protocol::Command;
    let s = Server::start(&[]);
    let mut c = s.connect();
    let db = c.open_db("closing");
    assert_eq!(c.create(db, "", 1, "1").0, 0);
    let active = |c: &mut common::Client| {
        let r = c.call(0, Command::Stats, vec![]);
        u64::from_le_bytes(r.data[8..16].try_into().unwrap())
    };
    assert_eq!(active(&mut c), 1);
    assert_eq!(c.call(db, Command::CloseDb, vec![]).status, 0);
    // The reply is sent before the worker lets go of the handle: allow it a moment.
    let deadline = std::time::Instant::now() + Duration::from_secs(3);
    while active(&mut c) != 0 && std::time::Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(10));
    }
    assert_eq!(active(&mut c), 0, "CloseDB closed it");
    assert_eq!(
        c.read(db, "", 1),
        (0, b"1".to_vec()),
        "reopened transparently"
    );
    assert_eq!(active(&mut c), 1);
}

/// The server turns transparent huge pages off for itself (DECISIONS 77): with them,
/// its allocator's fresh regions are zeroed 2 MiB at a time in the thread that first
/// touches them — a fifth of the server's CPU at 200 databases × 1 client.
#[test]
fn the_server_runs_without_transparent_huge_pages() {
    let s = Server::start(&[]);
    let status = std::fs::read_to_string(format!("/proc/{}/status", s.pid())).unwrap();
    let thp = status
        .lines()
        .find_map(|l| l.strip_prefix("THP_enabled:"))
        .map(str::trim);
    assert_eq!(thp, Some("0"), "{status}");
}
