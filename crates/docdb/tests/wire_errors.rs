#![allow(clippy::unwrap_used)]
//! Requests that are well-formed frames but wrong: each gets its status and its exact,
//! stable error text (SPEC §2, §8), the connection stays open, and the server stays up.

mod common;
mod support;

use common::Server;
use docdb_protocol::{Command as Cmd, Op, OpType};
use support::*;

const INVALID_JSON: &str = "payload must be valid JSON (forbidden prefixes: raw: hex:)";

#[test]
fn unknown_database_id() {
    let s = Server::start(&[]);
    let mut c = s.connect();
    let db = c.open_db("known");
    for bad in [0, db + 1, 999, u64::MAX] {
        for (cmd, ops) in [
            (Cmd::Execute, vec![read_op("", 1)]),
            (Cmd::Execute, vec![create_op("", 1, "{}")]),
            (Cmd::Transaction, vec![create_op("", 1, "{}")]),
            (Cmd::Scan, vec![coll_op("")]),
            (Cmd::CreateCollection, vec![coll_op("c")]),
            (Cmd::DeleteCollection, vec![coll_op("c")]),
            (Cmd::ListCollections, vec![]),
            (Cmd::Heal, vec![read_op("", 1)]),
            (Cmd::HealAll, vec![]),
            (Cmd::HealStats, vec![]),
            (Cmd::CloseDb, vec![]),
        ] {
            let r = c.call(bad, cmd, ops);
            assert_reply(&r, 1, "database not open");
        }
    }
    // Nothing was created by those requests.
    assert_eq!(stats(&mut c)[0], 1);
    assert_eq!(c.create(db, "", 1, "{}").0, 0, "the connection still works");
}

#[test]
fn unknown_commands_keep_the_connection_open() {
    let s = Server::start(&[]);
    let mut c = s.connect();
    let db = c.open_db("cmds");
    // 16-21 are Auth, DropDB, Query and the index commands (their own tests).
    for cmd in [0u8, 22, 99, 200, 255] {
        for target in [0, db] {
            let id = 1000 + u64::from(cmd);
            c.send_raw(&frame(id, target, cmd, vec![read_op("", 1)]));
            let r = c.recv().expect("a reply, not a close");
            assert_eq!(r.request_id, id);
            assert_reply(&r, 1, "unknown command");
        }
        // The same connection goes on.
        assert_eq!(c.read(db, "", 1).0, 2);
    }
    assert_eq!(c.create(db, "", 1, "{}").0, 0);
}

#[test]
fn invalid_database_names_are_rejected() {
    let mut s = Server::start(&[]);
    let mut c = s.connect();
    let long = "n".repeat(300);
    let just_over = "n".repeat(65);
    let bad: Vec<&[u8]> = vec![
        b"../x",
        b"..",
        b".",
        b"a/b",
        b"/abs",
        long.as_bytes(),
        just_over.as_bytes(),
        b"nul\0byte",
        b"\0",
        b"",
        b".hidden",
        b"sp ace",
        b"tab\t",
        b"new\nline",
        b"\xff\xfe",
        "caf\u{e9}".as_bytes(),
        b"a\\b",
        b"*",
    ];
    for name in &bad {
        let r = c.call(
            0,
            Cmd::OpenDb,
            vec![Op::new(OpType::Create, "", 0, name.to_vec())],
        );
        assert_eq!(
            r.status,
            1,
            "name {:?} accepted: {r:?}",
            String::from_utf8_lossy(name)
        );
        assert!(
            !r.data.is_empty(),
            "a clear error text for {:?}",
            String::from_utf8_lossy(name)
        );
        assert!(
            text(&r).contains("name"),
            "the error says what is wrong: {:?}",
            text(&r)
        );
    }
    // OpenDB without an op at all.
    let r = c.call(0, Cmd::OpenDb, vec![]);
    assert_eq!(r.status, 1);
    assert!(!r.data.is_empty());
    // Nothing was created, in the catalog or on disk, inside the data dir or beside it.
    assert_eq!(stats(&mut c)[0], 0);
    assert!(!s.dir.path().join("x").exists());
    assert!(!s.data_dir().join("x").exists());
    assert!(!s.data_dir().join("a").exists());
    assert!(alive(&mut s));
    // The longest valid name (64 bytes) and every allowed character work.
    let max = "m".repeat(64);
    let a = c.open_db(&max);
    let b = c.open_db("Az09_.-z");
    assert_ne!(a, b);
    assert_eq!(c.create(a, "", 1, "{}").0, 0);
}

#[test]
fn invalid_collection_names_are_rejected() {
    let s = Server::start(&[]);
    let mut c = s.connect();
    let db = c.open_db("cnames");
    let long = "c".repeat(64);
    for name in ["../x", "a/b", "nul\0", ".hidden", "sp ace", "a\\b"] {
        let (st, res) = c.execute(db, vec![create_op(name, 1, "{}")]);
        assert_eq!(st, 1, "collection {name:?} accepted");
        assert!(!res[0].is_empty());
        let r = c.call(db, Cmd::CreateCollection, vec![coll_op(name)]);
        assert_eq!(r.status, 1, "CreateCollection {name:?} accepted");
        assert!(!r.data.is_empty());
        let r = c.call(db, Cmd::Scan, vec![coll_op(name)]);
        assert_eq!(r.status, 1, "Scan {name:?}");
    }
    // Not UTF-8.
    let op = Op {
        op_type: 1,
        collection: vec![0xff, 0xfe],
        doc_id: 1,
        patch: None,
        payload: b"{}".to_vec(),
    };
    let (st, _) = c.execute(db, vec![op]);
    assert_eq!(st, 1);
    // A collection that does not exist.
    assert_eq!(
        c.create(db, "missing", 1, "{}"),
        (1, b"collection not found".to_vec())
    );
    assert_eq!(
        c.read(db, "missing", 1),
        (1, b"collection not found".to_vec())
    );
    assert_reply(
        &c.call(db, Cmd::Scan, vec![coll_op("missing")]),
        1,
        "collection not found",
    );
    // The longest valid one works.
    ok(c.call(db, Cmd::CreateCollection, vec![coll_op(&long)]));
    assert_eq!(c.create(db, &long, 1, "{}").0, 0);
    assert_eq!(
        json_call(&mut c, db, Cmd::ListCollections, vec![]),
        serde_json::json!(["_default", long])
    );
    // Commands that need an op but got none.
    for cmd in [
        Cmd::CreateCollection,
        Cmd::DeleteCollection,
        Cmd::Heal,
        Cmd::Scan,
    ] {
        let r = c.call(db, cmd, vec![]);
        assert_eq!(r.status, 1, "{cmd:?} without an op");
        assert!(!r.data.is_empty());
    }
}

#[test]
fn payloads_must_be_json() {
    let s = Server::start(&[]);
    let mut c = s.connect();
    let db = c.open_db("json");
    assert_eq!(c.create(db, "", 1, r#"{"ok":1}"#).0, 0);
    let bad: Vec<&[u8]> = vec![
        b"raw:hello",
        b"hex:00ff",
        b"{bad",
        b"",
        b"   ",
        br#"{"a":1} trailing"#,
        br#"{"a":1}{"b":2}"#,
        b"undefined",
        b"'single'",
        b"\xff\xfe{}",
        b"NaN",
    ];
    for p in &bad {
        let r = c.call(
            db,
            Cmd::Execute,
            vec![Op::new(OpType::Create, "", 2, p.to_vec())],
        );
        assert_eq!(r.status, 1, "create {:?}", String::from_utf8_lossy(p));
        assert_eq!(
            results_text(&r),
            [INVALID_JSON],
            "create {:?}",
            String::from_utf8_lossy(p)
        );
        let r = c.call(
            db,
            Cmd::Execute,
            vec![Op::new(OpType::Update, "", 1, p.to_vec())],
        );
        assert_eq!(r.status, 1, "update {:?}", String::from_utf8_lossy(p));
        assert_eq!(results_text(&r), [INVALID_JSON]);
    }
    assert_eq!(c.read(db, "", 2).0, 2, "nothing was stored");
    assert_eq!(
        c.read(db, "", 1),
        (0, br#"{"ok":1}"#.to_vec()),
        "nothing was changed"
    );
    // Surrounding whitespace is fine JSON.
    assert_eq!(c.create(db, "", 3, " {\"w\":1}\n").0, 0);
}

#[test]
fn reserved_and_unknown_op_types() {
    let s = Server::start(&[]);
    let mut c = s.connect();
    let db = c.open_db("ops");
    assert_eq!(c.create(db, "", 1, r#"{"a":1}"#).0, 0);
    for ty in [0u8, 5, 6, 8, 9, 10, 200, 255] {
        let r = c.call(db, Cmd::Execute, vec![raw_op(ty, "", 1, b"{}")]);
        assert_eq!(r.status, 1, "op type {ty}");
        assert_eq!(results_text(&r), ["unknown operation type"], "op type {ty}");
        // Mixed with good ops: the v0.3 form answers the first failure's status and
        // text (DECISIONS 49); the per-op status form answers each op.
        let ops = || vec![read_op("", 1), raw_op(ty, "", 2, b"{}"), read_op("", 404)];
        let r = c.call(db, Cmd::Execute, ops());
        assert_eq!(r.status, 1, "op type {ty} failed first");
        assert_eq!(r.data, b"unknown operation type");
        let (st, each) = c.execute_statuses(db, ops());
        assert_eq!(st, 0);
        assert_eq!(
            each,
            [
                (0, br#"{"a":1}"#.to_vec()),
                (1, b"unknown operation type".to_vec()),
                (2, b"document not found".to_vec())
            ]
        );
    }
    assert_eq!(c.read(db, "", 2).0, 2, "no reserved op did anything");
    assert_eq!(c.read(db, "", 1), (0, br#"{"a":1}"#.to_vec()));
}

#[test]
fn patch_errors() {
    let s = Server::start(&[]);
    let mut c = s.connect();
    let db = c.open_db("patcherr");
    let orig = r#"{"a":{"b":1},"arr":[1,2]}"#;
    assert_eq!(c.create(db, "", 1, orig).0, 0);
    assert_eq!(c.create(db, "", 2, "[1,2,3]").0, 0);
    assert_eq!(c.create(db, "", 3, r#""text""#).0, 0);
    let cases: Vec<(u64, &str, u8, &str)> = vec![
        (
            1,
            r#"[{"op":"set","path":"a/b","value":1}]"#,
            1,
            "invalid JSON path",
        ),
        (
            1,
            r#"[{"op":"delete","path":"/nope"}]"#,
            1,
            "invalid JSON path",
        ),
        (
            1,
            r#"[{"op":"insert","path":"/arr/9","value":1}]"#,
            1,
            "invalid JSON path",
        ),
        (
            1,
            r#"[{"op":"remove","path":"/arr/x"}]"#,
            1,
            "invalid JSON path",
        ),
        (
            2,
            r#"[{"op":"set","path":"/a","value":1}]"#,
            1,
            "document is not a JSON object",
        ),
        (
            3,
            r#"[{"op":"set","path":"/a","value":1}]"#,
            1,
            "document is not a JSON object",
        ),
        (
            1,
            r#"{"op":"set","path":"/a","value":1}"#,
            1,
            "invalid patch operations",
        ),
        (1, "[]", 1, "invalid patch operations"),
        (1, "not json", 1, "invalid patch operations"),
        (1, "", 1, "invalid patch operations"),
        (
            1,
            r#"[{"op":"frobnicate","path":"/a","value":1}]"#,
            1,
            "invalid patch operations",
        ),
        (
            1,
            r#"[{"op":"set","path":"/a"}]"#,
            1,
            "invalid patch operations",
        ),
        (1, "[1,2]", 1, "invalid patch operations"),
        (
            404,
            r#"[{"op":"set","path":"/a","value":1}]"#,
            2,
            "document not found",
        ),
    ];
    for (id, patch, status, want) in cases {
        let r = c.call(
            db,
            Cmd::Execute,
            vec![Op::patch("", id, patch.as_bytes().to_vec())],
        );
        assert_eq!(
            (r.status, results_text(&r)),
            (status, vec![want.to_string()]),
            "patch {patch} on {id}"
        );
    }
    // All-or-nothing: a good op before a bad one in the same patch changes nothing.
    let r = c.call(
        db,
        Cmd::Execute,
        vec![Op::patch(
            "",
            1,
            br#"[{"op":"set","path":"/z","value":1},{"op":"delete","path":"/nope"}]"#.to_vec(),
        )],
    );
    assert_eq!(r.status, 1);
    assert_eq!(
        c.read(db, "", 1),
        (0, orig.as_bytes().to_vec()),
        "nothing applied"
    );
    assert_eq!(c.read(db, "", 2), (0, b"[1,2,3]".to_vec()));
}

#[test]
fn scan_options_are_validated() {
    let s = Server::start(&[]);
    let mut c = s.connect();
    let db = c.open_db("scanerr");
    assert_eq!(c.create(db, "", 1, "{}").0, 0);
    for p in [
        r#"{"limit":0}"#,
        r#"{"limit":-1}"#,
        r#"{"limit":"ten"}"#,
        r#"{"limit":1.5}"#,
        r#"{"lmit":5}"#,
        "nope",
        "raw:x",
    ] {
        let r = c.call(
            db,
            Cmd::Scan,
            vec![Op::new(OpType::Read, "", 0, p.as_bytes().to_vec())],
        );
        assert_reply(&r, 1, r#"scan options must be JSON like {"limit":100}"#);
    }
    // Still serving.
    let v = json_call(&mut c, db, Cmd::Scan, vec![coll_op("")]);
    assert_eq!(v, serde_json::json!([{"id":1,"doc":{}}]));
}

/// JSON text is UTF-8 (RFC 8259 §8.1); SPEC §1: documents are UTF-8 and invalid JSON
/// never reaches the WAL.
#[test]
fn invalid_utf8_inside_a_json_string_is_rejected() {
    let s = Server::start(&[]);
    let mut c = s.connect();
    let db = c.open_db("utf8");
    let bad = b"{\"a\":\"\xff\"}".to_vec();
    let r = c.call(
        db,
        Cmd::Execute,
        vec![Op::new(OpType::Create, "", 1, bad.clone())],
    );
    let stored = r.status == 0;
    // Whatever the reply, the server must not hand out non-JSON afterwards.
    let v = c.call(db, Cmd::Scan, vec![coll_op("")]);
    let scan_is_json = serde_json::from_slice::<serde_json::Value>(&v.data).is_ok();
    assert!(
        !stored,
        "stored invalid UTF-8; Scan reply is valid JSON: {scan_is_json}"
    );
    assert_eq!(results_text(&r), [INVALID_JSON]);
    assert_eq!(c.read(db, "", 1).0, 2);
}

/// Scan options are the JSON object `{"limit":n}`; another shape is invalid.
#[test]
fn scan_options_must_be_an_object() {
    let s = Server::start(&[]);
    let mut c = s.connect();
    let db = c.open_db("scanarr");
    assert_eq!(c.create(db, "", 1, "{}").0, 0);
    let r = c.call(
        db,
        Cmd::Scan,
        vec![Op::new(OpType::Read, "", 0, b"[1]".to_vec())],
    );
    assert_reply(&r, 1, r#"scan options must be JSON like {"limit":100}"#);
}

#[test]
fn oversized_payload_is_refused() {
    let s = Server::start(&[]);
    let mut c = s.connect();
    let db = c.open_db("big");
    // A valid JSON string one byte over 16 MiB, in a frame under the frame limit.
    let mut doc = vec![b'a'; 16 * 1024 * 1024 + 1];
    doc[0] = b'"';
    *doc.last_mut().unwrap() = b'"';
    let r = c.call(db, Cmd::Execute, vec![Op::new(OpType::Create, "", 1, doc)]);
    assert_eq!(r.status, 1);
    assert_eq!(results_text(&r), ["payload exceeds maximum size"]);
    assert_eq!(c.read(db, "", 1).0, 2);
    // Exactly 16 MiB is allowed.
    let mut doc = vec![b'b'; 16 * 1024 * 1024];
    doc[0] = b'"';
    *doc.last_mut().unwrap() = b'"';
    let (st, res) = c.execute(db, vec![Op::new(OpType::Create, "", 2, doc.clone())]);
    assert_eq!(st, 0, "{}", String::from_utf8_lossy(&res[0]));
    let (st, got) = c.read(db, "", 2);
    assert_eq!((st, got.len()), (0, doc.len()));
    assert!(got == doc);
}

#[test]
fn memory_limit_is_status_4_and_changes_nothing() {
    let s = Server::start(&["--memory-per-db", "1"]);
    let mut c = s.connect();
    let db = c.open_db("tight");
    let doc = |n: usize| format!("\"{}\"", "x".repeat(n));
    assert_eq!(c.create(db, "", 1, &doc(600_000)).0, 0);
    assert_eq!(
        c.create(db, "", 2, &doc(600_000)),
        (4, b"memory limit exceeded".to_vec())
    );
    assert_eq!(c.read(db, "", 2).0, 2);
    let (st, res) = c.execute(db, vec![update_op("", 1, &doc(1_200_000))]);
    assert_eq!((st, res[0].as_slice()), (4, &b"memory limit exceeded"[..]));
    assert_eq!(
        c.read(db, "", 1).1.len(),
        600_002,
        "the update changed nothing"
    );
    // Freeing space makes room again.
    assert_eq!(c.execute(db, vec![delete_op("", 1)]).0, 0);
    assert_eq!(c.create(db, "", 2, &doc(600_000)).0, 0);
    // Other databases have their own limit.
    let other = c.open_db("roomy");
    assert_eq!(c.create(other, "", 1, &doc(600_000)).0, 0);
}
