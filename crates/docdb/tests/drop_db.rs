#![allow(clippy::unwrap_used)]
//! DropDB (17, SPEC §8.1): a dropped database's files are gone, its id answers
//! `database was dropped` (also to requests queued or pipelined when it was dropped),
//! a new OpenDB of the name makes a new, empty database with a new id, and a neighbour
//! with the same prefix is untouched. A drop survives a restart, and a crash (the
//! process ends abruptly) in the middle of one leaves the database whole or gone, as
//! `docdb check` and a restart agree.

mod common;
mod support;

use std::os::unix::net::UnixStream;
use std::path::Path;
use std::time::{Duration, Instant};

use common::{run_docdb, Client, Server};
use docdb_protocol::{Command as Cmd, Op, OpType};
use support::*;

fn name_op(name: &str) -> Vec<Op> {
    vec![Op::new(OpType::Create, "", 0, name.as_bytes().to_vec())]
}

fn drop_db(c: &mut Client, name: &str) -> docdb_protocol::Response {
    c.call(0, Cmd::DropDb, name_op(name))
}

fn list_names(c: &mut Client) -> Vec<(String, u64)> {
    let v = json_call(c, 0, Cmd::ListDbs, vec![]);
    v.as_array()
        .unwrap()
        .iter()
        .map(|r| {
            (
                r["Name"].as_str().unwrap().to_owned(),
                r["ID"].as_u64().unwrap(),
            )
        })
        .collect()
}

/// Entries of `dbs/` (database directories and leftovers of drops).
fn dbs_entries(data: &Path) -> Vec<String> {
    let mut v: Vec<String> = std::fs::read_dir(data.join("dbs"))
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    v.sort();
    v
}

#[test]
fn drop_then_reopen_is_empty_with_a_new_id_and_neighbours_are_untouched() {
    let s = Server::start(&[]);
    let mut c = s.connect();
    let a = c.open_db("a");
    let ab = c.open_db("ab");
    for id in 1..=20 {
        assert_eq!(c.create(a, "", id, r#"{"in":"a"}"#).0, 0);
        assert_eq!(c.create(ab, "", id, r#"{"in":"ab"}"#).0, 0);
    }
    c.create_collection(a, "extra");
    assert_eq!(dbs_entries(&s.data_dir()), ["a", "ab"]);

    assert_reply(&drop_db(&mut c, "a"), 0, "");
    assert_eq!(dbs_entries(&s.data_dir()), ["ab"], "files of a removed");
    assert_eq!(list_names(&mut c), [("ab".to_owned(), ab)]);
    // The old id is refused with a clear error, never served by anything else.
    let r = c.call(a, Cmd::Execute, vec![read_op("", 1)]);
    assert_reply(&r, 1, "database was dropped");
    // Unknown names (and a second drop) are NotFound.
    assert_reply(&drop_db(&mut c, "a"), 2, "database not found");
    assert_reply(&drop_db(&mut c, "never-was"), 2, "database not found");
    assert_eq!(drop_db(&mut c, "../x").status, 1);

    let a2 = c.open_db("a");
    assert!(a2 > ab, "ids are never reused: {a2} after {a} and {ab}");
    assert_eq!(c.read(a2, "", 1).0, 2, "the new database is empty");
    assert!(!c.list_collections(a2).contains(&"extra".to_owned()));
    let r = c.call(a, Cmd::Execute, vec![read_op("", 1)]);
    assert_reply(&r, 1, "database was dropped");
    for id in 1..=20 {
        assert_eq!(c.read(ab, "", id), (0, br#"{"in":"ab"}"#.to_vec()));
    }
    assert_eq!(c.create(a2, "", 1, r#"{"new":true}"#).0, 0);
}

/// Requests each writer pipelines at a time (4 writers stay under the queue depth).
const BATCH: u64 = 16;

#[test]
fn drop_while_other_connections_use_the_database() {
    let s = Server::start(&[]);
    let mut admin = s.connect();
    let db = admin.open_db("busy");
    let other = admin.open_db("other");
    let socket = s.socket.clone();
    let writers: Vec<_> = (0..4u64)
        .map(|t| {
            let socket = socket.clone();
            std::thread::spawn(move || {
                let mut st = UnixStream::connect(&socket).unwrap();
                let deadline = Instant::now() + Duration::from_secs(15);
                let (mut ok, mut dropped, mut rid) = (0u64, 0u64, 0u64);
                // Replies may arrive in another order than their requests (a write's
                // OK waits for its fsync, a refusal does not): the order that counts is
                // the requests'. The highest id served and the lowest refused.
                let (mut last_served, mut first_dropped) = (0u64, u64::MAX);
                // Pipelined batches of writes and reads until the drop shows, then one
                // more batch: every reply is OK or `database was dropped`.
                let mut after = 0;
                while after < 2 {
                    assert!(Instant::now() < deadline, "the drop never showed");
                    let mut out = Vec::new();
                    for _ in 0..BATCH {
                        rid += 1;
                        let doc = format!(r#"{{"t":{t},"n":{rid}}}"#);
                        let op = if rid % 3 == 0 {
                            read_op("", t * 1_000_000 + rid - 1)
                        } else {
                            create_op("", t * 1_000_000 + rid, &doc)
                        };
                        out.extend(frame(rid, db, Cmd::Execute as u8, vec![op]));
                    }
                    std::io::Write::write_all(&mut st, &out).unwrap();
                    for _ in 0..BATCH {
                        let r = match read_reply(&mut st, deadline) {
                            Reply::Frame(r) => r,
                            other => panic!("no reply: {other:?}"),
                        };
                        match (r.status, text(&r).as_str()) {
                            // 2: a read of a document whose create failed.
                            (0 | 2, _) => {
                                ok += 1;
                                last_served = last_served.max(r.request_id);
                            }
                            (1, "database was dropped") => {
                                dropped += 1;
                                first_dropped = first_dropped.min(r.request_id);
                            }
                            (st, t) => panic!("unexpected reply {st} {t:?}"),
                        }
                        assert!(
                            last_served < first_dropped,
                            "request {last_served} served after request {first_dropped} \
                             was refused as dropped"
                        );
                    }
                    if dropped > 0 {
                        after += 1;
                    }
                }
                (ok, dropped)
            })
        })
        .collect();
    // Let the writers get going, then drop under them.
    std::thread::sleep(Duration::from_millis(300));
    assert_reply(&drop_db(&mut admin, "busy"), 0, "");
    let mut total_ok = 0;
    for w in writers {
        let (ok, dropped) = w.join().unwrap();
        assert!(
            dropped >= BATCH,
            "later requests answered dropped: {dropped}"
        );
        total_ok += ok;
    }
    assert!(total_ok > 0, "writes went through before the drop");
    // The server lives on, the other database works, the name makes a new database.
    assert_eq!(admin.create(other, "", 1, "{}").0, 0);
    let again = admin.open_db("busy");
    assert!(again > other);
    assert_eq!(admin.scan_all(again, "").len(), 0);
    let left = dbs_entries(&s.data_dir());
    assert!(!left.iter().any(|e| e.starts_with('.')), "{left:?}");
}

#[test]
fn a_drop_survives_a_restart_and_ids_stay_unused() {
    let mut s = Server::start(&[]);
    let mut c = s.connect();
    let a = c.open_db("gone");
    let keep = c.open_db("gone2");
    assert_eq!(c.create(a, "", 7, r#"{"x":1}"#).0, 0);
    assert_eq!(c.create(keep, "", 7, r#"{"y":2}"#).0, 0);
    assert_reply(&drop_db(&mut c, "gone"), 0, "");
    drop(c);
    s.kill();
    s.spawn();
    let mut c = s.connect();
    assert_eq!(list_names(&mut c), [("gone2".to_owned(), keep)]);
    assert_reply(
        &c.call(a, Cmd::Execute, vec![read_op("", 7)]),
        1,
        "database was dropped",
    );
    assert_eq!(c.read(keep, "", 7), (0, br#"{"y":2}"#.to_vec()));
    let new = c.open_db("gone");
    assert!(new > keep, "a new id after restart: {new}");
    assert_eq!(c.read(new, "", 7).0, 2);
}

/// The server dies at a step of DropDB (test hook: `_exit`, as kill -9 would leave
/// it); after a restart the database is gone, its files removed, `docdb check` agrees
/// before and after, and the neighbour keeps its data.
#[test]
fn a_crash_in_the_middle_of_a_drop_ends_whole_or_gone() {
    for step in ["after-move", "after-mark"] {
        let mut s = Server::start_with_env(&[], &[("DOCDB_TEST_DROP_CRASH", step)]);
        let mut c = s.connect();
        let a = c.open_db("victim");
        let n = c.open_db("victim_neighbour");
        for id in 1..=10 {
            assert_eq!(c.create(a, "", id, r#"{"v":1}"#).0, 0);
            assert_eq!(c.create(n, "", id, r#"{"n":1}"#).0, 0);
        }
        let mut raw = UnixStream::connect(&s.socket).unwrap();
        std::io::Write::write_all(&mut raw, &frame(1, 0, Cmd::DropDb as u8, name_op("victim")))
            .unwrap();
        match read_reply(&mut raw, Instant::now() + Duration::from_secs(15)) {
            Reply::Closed => {}
            other => panic!("{step}: the server was to die mid-drop, got {other:?}"),
        }
        let st = s.child.as_mut().unwrap().wait().unwrap();
        assert_eq!(st.code(), Some(137), "{step}");
        s.child = None;
        let data = s.data_dir();
        assert!(
            dbs_entries(&data)
                .iter()
                .any(|e| e.starts_with(".dropped-")),
            "{step}: files moved aside, not yet removed: {:?}",
            dbs_entries(&data)
        );
        let out = run_docdb(&["check", "--data-dir", data.to_str().unwrap()]);
        let report = String::from_utf8_lossy(&out.stdout);
        assert!(out.status.success(), "{step}: {report}");
        assert!(
            report.contains("victim (id 1): dropped"),
            "{step}: {report}"
        );
        assert!(report.contains("checked 1 database(s)"), "{step}: {report}");

        s.envs.clear();
        s.spawn();
        assert_eq!(dbs_entries(&data), ["victim_neighbour"], "{step}");
        let mut c = s.connect();
        assert_eq!(list_names(&mut c), [("victim_neighbour".to_owned(), n)]);
        assert_reply(
            &c.call(a, Cmd::Execute, vec![read_op("", 1)]),
            1,
            "database was dropped",
        );
        assert_eq!(c.read(n, "", 10), (0, br#"{"n":1}"#.to_vec()));
        let again = c.open_db("victim");
        assert!(again > n, "{step}");
        assert_eq!(
            c.read(again, "", 1).0,
            2,
            "{step}: the new database is empty"
        );
        drop(c);
        s.terminate(Duration::from_secs(20));
        let out = run_docdb(&["check", "--data-dir", data.to_str().unwrap()]);
        let report = String::from_utf8_lossy(&out.stdout);
        assert!(out.status.success(), "{step}: {report}");
        assert!(!report.contains("dropped"), "{step}: {report}");
    }
}

/// `docdb db list|drop --socket S` and the shell's `.drop` (a script needs no `--yes`).
#[test]
fn the_admin_cli_and_the_shell_drop_databases() {
    let s = Server::start(&[]);
    let mut c = s.connect();
    let t1 = c.open_db("tenant1");
    c.open_db("tenant2");
    assert_eq!(c.create(t1, "", 1, "{}").0, 0);
    let sock = s.socket.to_str().unwrap();

    let out = run_docdb(&["db", "list", "--socket", sock]);
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{text}");
    assert!(
        text.starts_with("OK\n") && text.contains("\ttenant1\t") && text.contains("\ttenant2\t"),
        "{text}"
    );

    let out = run_docdb(&["db", "drop", "tenant1", "--socket", sock]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stdout)
    );
    assert_eq!(
        String::from_utf8_lossy(&out.stdout),
        "OK\ndropped tenant1\n"
    );
    let out = run_docdb(&["db", "drop", "tenant1", "--socket", sock]);
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("database not found"));

    let out = common::run_docdb_with_stdin(
        &["shell", "--socket", sock],
        Some(b".open tenant2\n.drop tenant2\n.create 1 {}\n.list-dbs\n"),
    );
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.contains("OK\ndropped tenant2"), "{text}");
    // The shell let go of the dropped database it was using (errors on stderr).
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("no database open"), "{text}{err}");
    assert_eq!(list_names(&mut c), []);
}
