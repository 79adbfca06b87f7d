//! What a new user reads when something is off (issue 16): the startup line says the
//! version, the absolute data dir, the real HTTP port and `fsync=group` as the flag
//! spells it; a bad flag value names the flag and is printed once; a failed start is
//! printed once; `restore --from` a missing directory names it; a client with no
//! server, or a regular file at the socket path, is told so and what to do.
#![allow(clippy::unwrap_used)]

mod common;

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};

use common::run_docdb;

#[test]
fn the_startup_line_says_what_a_user_needs() {
    let dir = tempfile::tempdir().unwrap();
    let sock = dir.path().join("s.sock");
    // A relative data dir: the line must print it absolute.
    let mut child = Command::new(env!("CARGO_BIN_EXE_docdb"))
        .current_dir(dir.path())
        .args([
            "serve",
            "--data-dir",
            "rel-data",
            "--http",
            "127.0.0.1:0",
            "--socket",
        ])
        .arg(&sock)
        .env("DOCDB_LOG", "info")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut lines = BufReader::new(child.stderr.take().unwrap()).lines();
    let line = loop {
        match lines.next() {
            Some(Ok(l)) if l.contains("docdb listening") => break l,
            Some(Ok(_)) => continue,
            other => {
                let _ = child.kill();
                panic!("no startup line: {other:?}");
            }
        }
    };
    let _ = child.kill();
    let _ = child.wait();
    assert!(
        line.contains(&format!("version={}", env!("CARGO_PKG_VERSION"))),
        "{line}"
    );
    let abs = dir.path().canonicalize().unwrap().join("rel-data");
    let abs_raw = dir.path().join("rel-data");
    assert!(
        line.contains(&format!("data_dir={}", abs.display()))
            || line.contains(&format!("data_dir={}", abs_raw.display())),
        "{line}"
    );
    assert!(line.contains("fsync=group"), "{line}");
    let http = line
        .split_whitespace()
        .find_map(|w| w.strip_prefix("http=http://127.0.0.1:"))
        .unwrap_or_else(|| panic!("no http address: {line}"));
    let port: u16 = http.trim_end_matches("/metrics").parse().unwrap();
    assert_ne!(port, 0, "{line}");
}

#[test]
fn a_bad_flag_names_the_flag_once_and_a_failed_start_prints_once() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let sock = dir.path().join("s.sock");
    let base = [
        "serve",
        "--data-dir",
        data.to_str().unwrap(),
        "--socket",
        sock.to_str().unwrap(),
    ];
    let out = run_docdb(&[&base[..], &["--compact-ratio", "2"]].concat());
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{err}");
    assert_eq!(err.matches("--compact-ratio: ").count(), 1, "{err}");
    assert!(!err.contains("tombstone_ratio"), "{err}");

    // A failure inside start-up (the HTTP address is taken) is printed once.
    let busy = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = busy.local_addr().unwrap().to_string();
    let out = run_docdb(&[&base[..], &["--http", &addr]].concat());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "{err}");
    assert_eq!(err.matches("cannot listen").count(), 1, "{err}");
}

#[test]
fn restore_from_a_missing_directory_names_it() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let missing = dir.path().join("no-such-backup");
    let out = run_docdb(&[
        "restore",
        "--data-dir",
        data.to_str().unwrap(),
        "--from",
        missing.to_str().unwrap(),
    ]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "{err}");
    assert!(err.contains(&missing.display().to_string()), "{err}");
}

#[test]
fn the_shell_without_a_server_says_how_to_start_one() {
    let dir = tempfile::tempdir().unwrap();
    let sock = dir.path().join("none.sock");
    let out = run_docdb(&["shell", "--socket", sock.to_str().unwrap(), "-c", ".stats"]);
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(!out.status.success(), "{text}");
    assert!(
        text.contains(&format!(
            "is the server running? start it with `docdb serve --socket {}`",
            sock.display()
        )),
        "{text}"
    );
    let file = dir.path().join("file.sock");
    std::fs::write(&file, b"not a socket").unwrap();
    let out = run_docdb(&["shell", "--socket", file.to_str().unwrap(), "-c", ".stats"]);
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(text.contains("is not a socket"), "{text}");
}
