#![allow(clippy::unwrap_used)]
//! `docdb check` (SPEC §10) on a stopped server's data dir:
//! - a clean data dir: exit 0, every database OK;
//! - with a server running, it checks every database the server does not have open,
//!   skips the open ones, says to use the shell's `.heal-all`, and exits 3;
//! - after flipping one byte inside the payload of 5 documents (4 in `_default` of one
//!   database, 1 in a named collection of another): exit 1, and the `corrupt
//!   document:` lines name exactly those 5 documents;
//! - after also flipping a byte inside a WAL record's body in a middle segment: that
//!   segment and offset are reported too;
//! - no run changes any file (every file's bytes and mtime compared before/after).

mod common;

use std::collections::BTreeSet;
use std::path::Path;

use common::{
    corrupt_payload, current_data_file, run_docdb, snapshot_tree, unique_doc, wal_segments, Server,
};

const CONFIG: &str = "\
[wal]
max_file_size_mb = 1
keep_segments = 100
[checkpoint]
interval_mb = 1
";

/// Runs check; asserts it changed no file. Returns (exit code, stdout).
fn check(data_dir: &Path) -> (i32, String) {
    let before = snapshot_tree(data_dir);
    let out = run_docdb(&["check", "--data-dir", data_dir.to_str().unwrap()]);
    let after = snapshot_tree(data_dir);
    assert!(
        before == after,
        "docdb check changed files under {}",
        data_dir.display()
    );
    let stdout = String::from_utf8(out.stdout).unwrap();
    eprintln!(
        "docdb check:\n{stdout}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    (out.status.code().unwrap(), stdout)
}

/// `(collection, id)` of every "corrupt document: <coll>/<id>" line.
fn corrupt_docs(stdout: &str) -> BTreeSet<(String, u64)> {
    stdout
        .lines()
        .filter_map(|l| l.trim().strip_prefix("corrupt document: "))
        .map(|rest| {
            let name = rest.split_whitespace().next().unwrap();
            let (coll, id) = name.rsplit_once('/').unwrap();
            (coll.to_string(), id.parse().unwrap())
        })
        .collect()
}

#[test]
fn check_reports_exactly_the_damage_and_changes_nothing() {
    let mut s = Server::start_with_config(CONFIG, &[]);
    let mut c = s.connect();
    let alpha = c.open_db("alpha");
    let alpha_docs: Vec<(u64, String)> = (1..=1600)
        .map(|id| (id, unique_doc("alpha", id, 2000)))
        .collect();
    c.write_many(alpha, "", &alpha_docs, false);
    let beta = c.open_db("beta");
    c.create_collection(beta, "things");
    let beta_default: Vec<(u64, String)> = (0..10)
        .map(|id| (id, unique_doc("beta", id, 120)))
        .collect();
    let beta_things: Vec<(u64, String)> = (1..=5)
        .map(|id| (id, unique_doc("thing", id, 120)))
        .collect();
    c.write_many(beta, "", &beta_default, false);
    c.write_many(beta, "things", &beta_things, false);
    drop(c);
    s.stop();
    let data = s.data_dir();

    // Clean.
    let (code, out) = check(&data);
    assert_eq!(code, 0, "{out}");
    assert!(out.contains("alpha (id 1): OK"), "{out}");
    assert!(out.contains("beta (id 2): OK"), "{out}");
    assert!(out.contains("checked 2 database(s): 0 corrupt"), "{out}");
    assert!(corrupt_docs(&out).is_empty());

    // Refused while the server holds a database open.
    s.spawn();
    let mut c = s.connect();
    c.open_db("alpha");
    let out = run_docdb(&["check", "--data-dir", data.to_str().unwrap()]);
    let stdout = String::from_utf8_lossy(&out.stdout);
    // Exit 3: the open database was skipped, the other one checked, and the user is
    // told to use the shell's `.heal-all` for the open ones.
    assert_eq!(out.status.code(), Some(3), "{stdout}");
    assert!(stdout.contains("running server"), "{stdout}");
    assert!(stdout.contains("alpha (id 1): SKIPPED"), "{stdout}");
    assert!(stdout.contains("beta (id 2): OK"), "{stdout}");
    assert!(
        stdout.contains(".heal-all") && !stdout.contains("HealAll"),
        "{stdout}"
    );
    drop(c);
    s.stop();

    // Damaged payloads of 5 documents.
    let alpha_file = current_data_file(&s.db_dir("alpha"));
    let mut expected = BTreeSet::new();
    for id in [1u64, 500, 1001, 1600] {
        corrupt_payload(&alpha_file, "_default", &alpha_docs[id as usize - 1].1);
        expected.insert(("_default".to_string(), id));
    }
    corrupt_payload(
        &current_data_file(&s.db_dir("beta")),
        "things",
        &beta_things[2].1,
    );
    expected.insert(("things".to_string(), 3));
    let (code, out) = check(&data);
    assert_eq!(code, 1, "{out}");
    assert_eq!(corrupt_docs(&out), expected, "{out}");
    assert!(
        out.contains("alpha (id 1): CORRUPT — 4 problem(s)"),
        "{out}"
    );
    assert!(out.contains("beta (id 2): CORRUPT — 1 problem(s)"), "{out}");
    assert!(
        out.contains("checked 2 database(s): 2 corrupt, 5 problem(s)"),
        "{out}"
    );
    assert_eq!(out.matches("payload checksum mismatch").count(), 5, "{out}");

    // A damaged WAL record body in a middle segment of alpha.
    let segs = wal_segments(&s.db_dir("alpha"));
    assert!(segs.len() >= 3, "{segs:?}");
    let middle = &segs[segs.len() / 2];
    let mut bytes = std::fs::read(middle).unwrap();
    // Walk the records (24-byte segment header; record = len u32, crc u32, body) to
    // one in the middle of the segment.
    let mut records = Vec::new();
    let mut pos = 24;
    while pos + 8 <= bytes.len() {
        let len = u32::from_le_bytes(bytes[pos..pos + 4].try_into().unwrap()) as usize;
        records.push((pos, len));
        pos += 8 + len;
    }
    assert_eq!(pos, bytes.len(), "the segment ends with a whole record");
    let (at, len) = records[records.len() / 2];
    bytes[at + 8 + len / 2] ^= 0x01;
    std::fs::write(middle, &bytes).unwrap();
    let (code, out) = check(&data);
    assert_eq!(code, 1, "{out}");
    let seg_name = middle.file_name().unwrap().to_str().unwrap();
    assert!(
        out.lines()
            .any(|l| l.contains(seg_name) && l.contains(&format!("at offset {at}"))),
        "the WAL damage is reported: {out}"
    );
    assert!(
        out.contains("alpha (id 1): CORRUPT — 5 problem(s)"),
        "{out}"
    );
    assert_eq!(corrupt_docs(&out), expected, "documents unchanged: {out}");
}
