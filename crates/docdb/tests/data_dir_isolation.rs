#![allow(clippy::unwrap_used)]
//! The data directory belongs to one process, and only to its user (SPEC §9.1 "Files"):
//! - a second server on the same data dir (other socket) refuses, naming the pid;
//!   `check`/`dump`/`restore` refuse while a server runs and work after it stops;
//! - with umask 022, every file and directory the server and the tools make (WAL
//!   rotation, compaction, checkpoint, catalog, dump output, restore) is private;
//! - `--socket` naming a regular file refuses and leaves the file untouched;
//! - `limits.max_databases` refuses new names only;
//! - creating 10,000 databases takes seconds.

mod common;
mod support;

use std::net::TcpListener;
use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::time::{Duration, Instant};

use common::{run_docdb, Server};
use docdb_protocol::Command as Cmd;

fn stderr(out: &std::process::Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

#[test]
fn a_second_server_and_the_tools_refuse_a_live_data_dir() {
    let mut s = Server::start(&[]);
    let mut c = s.connect();
    let db = c.open_db("owner");
    assert_eq!(c.create(db, "", 1, "{\"a\":1}").0, 0);
    let data = s.data_dir();
    let data = data.to_str().unwrap();
    let other_sock = s.dir.path().join("other.sock");
    let out = support::run_serve_expect_exit(
        &["--data-dir", data, "--socket", other_sock.to_str().unwrap()],
        Duration::from_secs(15),
    );
    assert!(!out.status.success());
    let pid = s.pid().to_string();
    assert!(
        out.stderr.contains(&format!("in use by process {pid}")),
        "{}",
        out.stderr
    );
    assert!(!other_sock.exists(), "a refused server leaves no socket");

    let dump_dir = s.dir.path().join("dump");
    let dump_arg = dump_dir.to_str().unwrap();
    // `check` checks what the server does not have open and says so (exit 3,
    // DECISIONS 55); the database the server has open is skipped, not read under it.
    let out = run_docdb(&["check", "--data-dir", data]);
    assert_eq!(out.status.code(), Some(3), "{}", stderr(&out));
    let report = String::from_utf8_lossy(&out.stdout);
    assert!(report.contains("SKIPPED"), "{report}");
    assert!(
        report.contains(&format!("process {pid}")) || report.contains("running server"),
        "{report}"
    );
    for args in [
        vec!["dump", "--data-dir", data],
        vec!["restore", "--data-dir", data, "--from", dump_arg],
    ] {
        let out = run_docdb(&args);
        assert!(!out.status.success(), "{args:?} ran beside a live server");
        assert!(
            stderr(&out).contains("in use by process"),
            "{args:?}: {}",
            stderr(&out)
        );
    }
    // The server is unharmed.
    assert_eq!(c.read(db, "", 1), (0, b"{\"a\":1}".to_vec()));
    drop(c);
    s.stop();
    let out = run_docdb(&["check", "--data-dir", data]);
    assert!(out.status.success(), "{}", stderr(&out));
    let out = run_docdb(&["dump", "--data-dir", data, "--out", dump_arg]);
    assert!(out.status.success(), "{}", stderr(&out));
}

fn assert_private(root: &Path) {
    let mut bad = Vec::new();
    let mut seen = 0;
    let mut stack = vec![root.to_path_buf()];
    while let Some(p) = stack.pop() {
        let m = std::fs::symlink_metadata(&p).unwrap();
        seen += 1;
        if m.permissions().mode() & 0o077 != 0 {
            bad.push(format!(
                "{:o} {}",
                m.permissions().mode() & 0o777,
                p.display()
            ));
        }
        if m.is_dir() {
            for e in std::fs::read_dir(&p).unwrap() {
                stack.push(e.unwrap().path());
            }
        }
    }
    assert!(bad.is_empty(), "group/other can reach:\n{}", bad.join("\n"));
    assert!(
        seen >= 3,
        "walked only {seen} entries of {}",
        root.display()
    );
}

#[test]
fn every_file_is_private_whatever_the_umask() {
    // Children inherit the umask: a permissive one, as on most systems.
    unsafe {
        libc::umask(0o022);
    }
    let tmp = tempfile::tempdir().unwrap();
    let wal = tmp.path().join("wal");
    let wal_arg = wal.to_str().unwrap().to_string();
    let mut s = Server::start_with_config(
        "[wal]\nmax_file_size_mb = 1\n[checkpoint]\ninterval_mb = 1\n\
         [compaction]\nsize_mb = 1\ntombstone_ratio = 0.1\n",
        &["--wal-dir", &wal_arg],
    );
    let mut c = s.connect();
    let db = c.open_db("tenant");
    let big = format!("{{\"pad\":\"{}\"}}", "x".repeat(200_000));
    // Several MiB of writes and updates: WAL rotation, checkpoints, compaction.
    for round in 0..4 {
        for id in 0..8 {
            let op = if round == 0 {
                support::create_op("", id, &big)
            } else {
                support::update_op("", id, &big)
            };
            assert_eq!(c.execute(db, vec![op]).0, 0);
        }
    }
    for id in 0..8 {
        assert_eq!(c.execute(db, vec![support::delete_op("", id)]).0, 0);
    }
    assert_eq!(c.create(db, "", 100, "{\"kept\":true}").0, 0);
    drop(c);
    s.stop();
    let data = s.data_dir();
    let data_arg = data.to_str().unwrap().to_string();
    let dump = tmp.path().join("dump");
    let out = run_docdb(&[
        "dump",
        "--data-dir",
        &data_arg,
        "--wal-dir",
        &wal_arg,
        "--out",
        dump.to_str().unwrap(),
    ]);
    assert!(out.status.success(), "{}", stderr(&out));
    let restored = tmp.path().join("restored");
    let out = run_docdb(&[
        "restore",
        "--data-dir",
        restored.to_str().unwrap(),
        "--from",
        dump.to_str().unwrap(),
    ]);
    assert!(out.status.success(), "{}", stderr(&out));
    for root in [&data, &wal, &dump, &restored] {
        assert_private(root);
    }
}

#[test]
fn a_regular_file_at_the_socket_path_is_refused_and_kept() {
    let tmp = tempfile::tempdir().unwrap();
    let path = tmp.path().join("precious.txt");
    std::fs::write(&path, b"do not delete").unwrap();
    let data = tmp.path().join("data");
    let out = support::run_serve_expect_exit(
        &[
            "--data-dir",
            data.to_str().unwrap(),
            "--socket",
            path.to_str().unwrap(),
        ],
        Duration::from_secs(15),
    );
    assert!(!out.status.success());
    assert!(out.stderr.contains("regular file"), "{}", out.stderr);
    assert_eq!(std::fs::read(&path).unwrap(), b"do not delete");
}

#[test]
fn max_databases_refuses_new_names_only() {
    let s = Server::start_with_config("[limits]\nmax_databases = 3\n", &[]);
    let mut c = s.connect();
    let ids: Vec<u64> = ["a", "b", "c"].iter().map(|n| c.open_db(n)).collect();
    let r = c.call(
        0,
        docdb_protocol::Command::OpenDb,
        vec![support::raw_op(0, "", 0, b"d")],
    );
    assert_ne!(r.status, 0);
    let text = String::from_utf8_lossy(&r.data).into_owned();
    assert!(text.contains("limits.max_databases"), "{text}");
    assert_eq!(c.open_db("b"), ids[1]);
    assert_eq!(c.create(ids[2], "", 1, "{}").0, 0);
}

#[test]
fn creating_10000_databases_takes_seconds() {
    let s = Server::start(&[]);
    let t = Instant::now();
    let threads: Vec<_> = (0..8)
        .map(|k| {
            let mut c = s.connect();
            std::thread::spawn(move || {
                for i in (k..10_000).step_by(8) {
                    c.open_db(&format!("db{i:05}"));
                }
            })
        })
        .collect();
    for t in threads {
        t.join().unwrap();
    }
    let took = t.elapsed();
    eprintln!("10,000 OpenDB of new names over 8 connections: {took:?}");
    // Before: ~n²/2 catalog entries rewritten and 6+ fsyncs per database (3,000 took
    // 109 s). Generous for a loaded 2-core machine.
    assert!(took < Duration::from_secs(20), "took {took:?}");
    let mut c = s.connect();
    assert_eq!(c.open_db("db09999"), c.open_db("db09999"));
}

#[test]
fn healthz_is_503_and_names_a_database_that_refuses_writes() {
    let port = TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let addr = format!("127.0.0.1:{port}");
    let s = Server::start_with_config("[wal]\nmax_file_size_mb = 1\n", &["--http", &addr]);
    let mut c = s.connect();
    let broken = c.open_db("broken-tenant");
    let fine = c.open_db("fine-tenant");
    assert_eq!(c.create(broken, "", 1, "{}").0, 0);
    assert_eq!(c.create(fine, "", 1, "{}").0, 0);
    assert_eq!(
        support::http_get(port, "/healthz"),
        (200, "ok\n".to_string())
    );
    // The next WAL segment's name is taken by a directory: the segment switch fails
    // (as root too, unlike a chmod), and the database turns read-only.
    let wal = s.db_dir("broken-tenant").join("wal");
    let segs = common::wal_segments(&s.db_dir("broken-tenant"));
    let last: u64 = segs
        .last()
        .and_then(|p| p.file_stem()?.to_str()?.parse().ok())
        .unwrap();
    std::fs::create_dir(wal.join(format!("{:020}.wal", last + 1))).unwrap();
    let big = format!("{{\"pad\":\"{}\"}}", "x".repeat(300_000));
    let mut refused = false;
    for id in 2..20 {
        if c.create(broken, "", id, &big).0 != 0 {
            refused = true;
            break;
        }
    }
    assert!(refused, "writes past the segment size kept succeeding");
    let (code, body) = support::http_get(port, "/healthz");
    assert_eq!(code, 503, "{body}");
    assert!(body.contains("broken-tenant"), "{body}");
    assert!(!body.contains("fine-tenant"), "{body}");
    assert_eq!(c.create(fine, "", 2, "{}").0, 0);
    // CloseDB of the read-only database is answered OK, but the database stays open and
    // read-only until the server restarts (DECISIONS 38): still listed, still refusing.
    let r = c.call(broken, Cmd::CloseDb, vec![]);
    assert_eq!(r.status, 0, "{}", String::from_utf8_lossy(&r.data));
    let (code, body) = support::http_get(port, "/healthz");
    assert_eq!(code, 503, "after CloseDB: {body}");
    assert!(body.contains("broken-tenant"), "{body}");
    assert_ne!(c.create(broken, "", 100, "{}").0, 0, "still read-only");
}
