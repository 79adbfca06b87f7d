#![allow(clippy::unwrap_used)]
//! `--http ADDR` (SPEC §9): `GET /metrics` serves the same Prometheus text as IPC
//! command 12, `GET /healthz` says ok; an address already in use fails start-up.

mod common;
mod support;

use std::net::TcpListener;
use std::time::Duration;

use common::Server;
use support::*;

/// A local port that was free a moment ago.
fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

#[test]
fn metrics_and_healthz_over_http() {
    let port = free_port();
    let addr = format!("127.0.0.1:{port}");
    let s = Server::start(&["--http", &addr]);
    let mut c = s.connect();
    let db = c.open_db("web");
    assert_eq!(c.create(db, "", 1, "{}").0, 0);
    let (code, body) = http_get(port, "/healthz");
    assert_eq!(code, 200, "{body}");
    assert!(body.contains("ok"), "{body}");
    let (code, body) = http_get(port, "/metrics");
    assert_eq!(code, 200);
    for name in [
        "docdb_operations_total",
        "docdb_operation_duration_seconds",
        "docdb_documents",
        "docdb_wal_size_bytes",
        "docdb_worker_pool_capacity",
    ] {
        assert!(body.contains(name), "no {name} in /metrics:\n{body}");
    }
    assert!(
        body.contains(r#"docdb_operations_total{operation="create",status="ok"}"#),
        "{body}"
    );
    let (code, _) = http_get(port, "/nope");
    assert_eq!(code, 404);
    // The socket side is unaffected.
    assert_eq!(c.read(db, "", 1).0, 0);
}

#[test]
fn a_busy_http_address_fails_start_up() {
    let taken = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = taken.local_addr().unwrap().to_string();
    let dir = tempfile::tempdir().unwrap();
    let out = run_serve_expect_exit(
        &[
            "--data-dir",
            dir.path().join("data").to_str().unwrap(),
            "--socket",
            dir.path().join("s.sock").to_str().unwrap(),
            "--http",
            &addr,
        ],
        Duration::from_secs(20),
    );
    assert!(!out.status.success());
    assert!(out.stderr.contains("http"), "{}", out.stderr);
}

/// A server that fails to start leaves no socket file behind.
#[test]
fn a_failed_start_leaves_no_socket_file() {
    let taken = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = taken.local_addr().unwrap().to_string();
    let dir = tempfile::tempdir().unwrap();
    let sock = dir.path().join("s.sock");
    let out = run_serve_expect_exit(
        &[
            "--data-dir",
            dir.path().join("data").to_str().unwrap(),
            "--socket",
            sock.to_str().unwrap(),
            "--http",
            &addr,
        ],
        Duration::from_secs(20),
    );
    assert!(!out.status.success());
    assert!(
        !sock.exists(),
        "socket file left behind: {}",
        sock.display()
    );
}
