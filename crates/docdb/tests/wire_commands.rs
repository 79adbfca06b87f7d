#![allow(clippy::unwrap_used)]
//! Every wire command (1–15) against the real server, with the exact frame layouts of
//! SPEC §8 and the replies a v0.3 client depends on. Error paths of the same commands
//! are in wire_errors.rs.

mod common;
mod support;

use std::collections::BTreeSet;
use std::io::{Read, Write};
use std::time::Duration;

use common::Server;
use docdb_protocol::{Command as Cmd, Op};
use serde_json::Value;
use support::*;

/// An op by hand: type, collection, doc id, patch (op 7 only), payload.
type HandOp<'a> = (u8, &'a [u8], u64, Option<&'a [u8]>, &'a [u8]);

/// Request bytes built by hand (not with the shared encoder), so the layout itself is
/// pinned: `u32 len, u64 rid, u64 db, u8 cmd, u32 n, ops...`.
fn hand_request(rid: u64, db: u64, cmd: u8, ops: &[HandOp<'_>]) -> Vec<u8> {
    let mut f = Vec::new();
    f.extend_from_slice(&rid.to_le_bytes());
    f.extend_from_slice(&db.to_le_bytes());
    f.push(cmd);
    f.extend_from_slice(&(ops.len() as u32).to_le_bytes());
    for (ty, coll, id, patch, payload) in ops {
        f.push(*ty);
        f.extend_from_slice(&(coll.len() as u16).to_le_bytes());
        f.extend_from_slice(coll);
        f.extend_from_slice(&id.to_le_bytes());
        if let Some(p) = patch {
            f.extend_from_slice(&(p.len() as u32).to_le_bytes());
            f.extend_from_slice(p);
        }
        f.extend_from_slice(&(payload.len() as u32).to_le_bytes());
        f.extend_from_slice(payload);
    }
    prefixed(&f)
}

/// Reads one response by hand: (request id, status, data).
fn hand_response(s: &mut std::os::unix::net::UnixStream) -> (u64, u8, Vec<u8>) {
    let mut len = [0u8; 4];
    s.read_exact(&mut len).unwrap();
    let len = u32::from_le_bytes(len) as usize;
    let mut f = vec![0u8; len];
    s.read_exact(&mut f).unwrap();
    assert!(len >= 13, "response shorter than its header");
    let rid = u64::from_le_bytes(f[0..8].try_into().unwrap());
    let status = f[8];
    let dlen = u32::from_le_bytes(f[9..13].try_into().unwrap()) as usize;
    assert_eq!(
        dlen,
        len - 13,
        "data_len must cover exactly the rest of the frame"
    );
    (rid, status, f[13..].to_vec())
}

/// Splits Execute data by hand: `u32 n`, then `u32 len, bytes` per op.
fn hand_results(d: &[u8]) -> Vec<Vec<u8>> {
    let n = u32::from_le_bytes(d[0..4].try_into().unwrap()) as usize;
    let mut pos = 4;
    let mut out = Vec::new();
    for _ in 0..n {
        let l = u32::from_le_bytes(d[pos..pos + 4].try_into().unwrap()) as usize;
        pos += 4;
        out.push(d[pos..pos + l].to_vec());
        pos += l;
    }
    assert_eq!(pos, d.len(), "no bytes after the last result");
    out
}

#[test]
fn frame_layouts_by_hand() {
    let s = Server::start(&[]);
    let mut st = raw(&s);
    st.set_read_timeout(Some(Duration::from_secs(10))).unwrap();

    // OpenDB: ops[0].payload = name; reply u64 id.
    st.write_all(&hand_request(
        0xA1B2_C3D4_E5F6_0718,
        0,
        1,
        &[(1, b"", 0, None, b"layout")],
    ))
    .unwrap();
    let (rid, status, data) = hand_response(&mut st);
    assert_eq!((rid, status, data.len()), (0xA1B2_C3D4_E5F6_0718, 0, 8));
    let db = u64::from_le_bytes(data.try_into().unwrap());
    assert_eq!(db, 1, "the first database of a fresh data dir has id 1");

    // Execute: create, patch (patch_len + patch come before payload_len), read.
    let patch: &[u8] = br#"[{"op":"set","path":"/b","value":2}]"#;
    st.write_all(&hand_request(
        2,
        db,
        3,
        &[
            (1, b"", 7, None, br#"{"a":1}"#),
            (7, b"", 7, Some(patch), b""),
            (2, b"_default", 7, None, b""),
        ],
    ))
    .unwrap();
    let (rid, status, data) = hand_response(&mut st);
    assert_eq!((rid, status), (2, 0), "{}", String::from_utf8_lossy(&data));
    let res = hand_results(&data);
    assert_eq!(res.len(), 3);
    assert!(
        res[0].is_empty() && res[1].is_empty(),
        "writes answer empty"
    );
    let doc: Value = serde_json::from_slice(&res[2]).unwrap();
    assert_eq!(doc, serde_json::json!({"a":1,"b":2}));

    // An empty collection name means _default.
    st.write_all(&hand_request(3, db, 3, &[(2, b"", 7, None, b"")]))
        .unwrap();
    let (_, status, data) = hand_response(&mut st);
    assert_eq!(status, 0);
    assert_eq!(hand_results(&data)[0], res[2]);

    // Request ids are echoed whatever their value.
    for rid in [0u64, 1, u64::MAX, 0x8000_0000_0000_0000] {
        st.write_all(&hand_request(rid, 0, 4, &[])).unwrap();
        assert_eq!(hand_response(&mut st).0, rid);
    }

    // Stats: 5 x u64, 40 bytes.
    st.write_all(&hand_request(4, 0, 4, &[])).unwrap();
    let (rid, status, data) = hand_response(&mut st);
    assert_eq!((rid, status, data.len()), (4, 0, 40));
}

#[test]
fn open_db_ids_survive_restart_and_are_never_reused() {
    let mut s = Server::start(&[]);
    let mut c = s.connect();
    let a = c.open_db("alpha");
    let b = c.open_db("beta");
    let g = c.open_db("gamma");
    assert_eq!((a, b, g), (1, 2, 3), "ids start at 1 and count up");
    assert_eq!(c.open_db("beta"), b, "opening again returns the same id");
    assert_eq!(c.create(b, "", 1, r#"{"in":"beta"}"#).0, 0);
    drop(c);
    assert!(s.terminate(Duration::from_secs(20)).success());
    s.spawn();
    let mut c = s.connect();
    // Opened in a different order after the restart: the ids stay.
    assert_eq!(c.open_db("gamma"), g);
    assert_eq!(c.open_db("alpha"), a);
    assert_eq!(
        c.read(b, "", 1),
        (0, br#"{"in":"beta"}"#.to_vec()),
        "id usable without OpenDB"
    );
    assert_eq!(c.open_db("beta"), b);
    let d = c.open_db("delta");
    assert!(
        d > g,
        "a new database gets a fresh id ({d}), never a used one"
    );
    // And again after a SIGKILL.
    drop(c);
    s.kill();
    s.spawn();
    let mut c = s.connect();
    assert_eq!(c.open_db("delta"), d);
    let e = c.open_db("epsilon");
    assert!(e > d);
    let ids: BTreeSet<u64> = [a, b, g, d, e].into();
    assert_eq!(ids.len(), 5);
}

#[test]
fn close_db_then_any_request_reopens_transparently() {
    let s = Server::start(&[]);
    let mut c = s.connect();
    let db = c.open_db("closable");
    assert_eq!(c.create(db, "", 1, r#"{"v":1}"#).0, 0);
    let r = c.call(db, Cmd::CloseDb, vec![]);
    assert_eq!((r.status, r.data.len()), (0, 0), "CloseDB: OK, empty");
    // Read, write and a collection command all work right after, on the same id.
    assert_eq!(c.read(db, "", 1), (0, br#"{"v":1}"#.to_vec()));
    ok(c.call(db, Cmd::CloseDb, vec![]));
    assert_eq!(c.create(db, "", 2, r#"{"v":2}"#).0, 0);
    ok(c.call(db, Cmd::CloseDb, vec![]));
    let cols = json_call(&mut c, db, Cmd::ListCollections, vec![]);
    assert_eq!(cols, serde_json::json!(["_default"]));
    assert_eq!(c.read(db, "", 2), (0, br#"{"v":2}"#.to_vec()));
    // CloseDB twice in a row is fine too; another connection is not disturbed.
    ok(c.call(db, Cmd::CloseDb, vec![]));
    ok(c.call(db, Cmd::CloseDb, vec![]));
    let mut other = s.connect();
    assert_eq!(other.read(db, "", 1).0, 0);
    assert_eq!(c.read(db, "", 1).0, 0);
    // Pipelined behind writes: CloseDB runs after them, and they are all answered.
    for i in 10..20 {
        c.send_raw(&frame(
            100 + i,
            db,
            Cmd::Execute as u8,
            vec![create_op("", i, "{}")],
        ));
    }
    c.send_raw(&frame(200, db, Cmd::CloseDb as u8, vec![]));
    c.send_raw(&frame(201, db, Cmd::Execute as u8, vec![read_op("", 19)]));
    let mut got = std::collections::BTreeMap::new();
    for _ in 0..12 {
        let r = c.recv().expect("reply");
        assert_eq!(r.status, 0, "{r:?}");
        got.insert(r.request_id, r);
    }
    assert_eq!(got.len(), 12);
    assert_eq!(results_text(&got[&201]), ["{}"]);
}

/// CloseDB closes the database (SPEC §8; cmd/close_db.rs: "checkpointed and closed once
/// no worker holds it"): Stats' `active_dbs` (open databases) drops, and the next
/// request reopens it.
#[test]
fn close_db_closes_the_database() {
    let s = Server::start(&[]);
    let mut c = s.connect();
    let db = c.open_db("closable");
    assert_eq!(c.create(db, "", 1, r#"{"v":1}"#).0, 0);
    assert_eq!(stats(&mut c)[1], 1, "one database open");
    ok(c.call(db, Cmd::CloseDb, vec![]));
    assert!(
        wait_for(Duration::from_secs(3), || stats(&mut c)[1] == 0),
        "active_dbs is still {} 3 s after CloseDB",
        stats(&mut c)[1]
    );
    assert_eq!(c.read(db, "", 1), (0, br#"{"v":1}"#.to_vec()));
    assert_eq!(stats(&mut c)[1], 1, "reopened by the read");
}

#[test]
fn execute_per_op_results_and_overall_status() {
    let s = Server::start(&[]);
    let mut c = s.connect();
    let db = c.open_db("exec");
    // All succeed: OK, writes empty, reads their document.
    let r = c.call(
        db,
        Cmd::Execute,
        vec![
            create_op("", 1, r#"{"a":1}"#),
            create_op("", 2, "[1,2,3]"),
            create_op("", 3, r#""a string""#),
            create_op("", 4, "42"),
            create_op("", 5, "null"),
            create_op("", 6, "true"),
            read_op("", 1),
            read_op("", 2),
        ],
    );
    assert_eq!(r.status, 0, "{:?}", results_text(&r));
    assert_eq!(
        results_text(&r),
        ["", "", "", "", "", "", r#"{"a":1}"#, "[1,2,3]"]
    );
    for (id, want) in [(3, r#""a string""#), (4, "42"), (5, "null"), (6, "true")] {
        assert_eq!(
            c.read(db, "", id),
            (0, want.as_bytes().to_vec()),
            "any JSON value"
        );
    }
    // Update and delete.
    let r = c.call(
        db,
        Cmd::Execute,
        vec![
            update_op("", 1, r#"{"a":2}"#),
            delete_op("", 2),
            read_op("", 1),
        ],
    );
    assert_eq!(
        (r.status, results_text(&r)),
        (0, vec![String::new(), String::new(), r#"{"a":2}"#.into()])
    );
    assert_eq!(c.read(db, "", 2), (2, b"document not found".to_vec()));

    // Single failures and their statuses.
    assert_eq!(
        c.create(db, "", 1, "{}"),
        (3, b"document already exists".to_vec())
    );
    assert_eq!(c.read(db, "", 99), (2, b"document not found".to_vec()));
    let (st, res) = c.execute(db, vec![update_op("", 99, "{}")]);
    assert_eq!((st, res[0].as_slice()), (2, &b"document not found"[..]));
    let (st, res) = c.execute(db, vec![delete_op("", 99)]);
    assert_eq!((st, res[0].as_slice()), (2, &b"document not found"[..]));

    // Mixed: the overall status is the first failed op's, the data its text alone (the
    // v0.3 error contract); every op ran, and with the per-op status flag every op
    // has its status and result.
    let r = c.call(
        db,
        Cmd::Execute,
        vec![
            create_op("", 10, r#"{"x":10}"#),
            read_op("", 404),
            create_op("", 1, "{}"),
            read_op("", 10),
        ],
    );
    assert_eq!(r.status, 2, "NotFound came first");
    assert_eq!(text(&r), "document not found");
    let (st, res) = c.execute_statuses(
        db,
        vec![
            create_op("", 10, r#"{"x":10}"#),
            read_op("", 404),
            create_op("", 1, "{}"),
            read_op("", 10),
        ],
    );
    assert_eq!(st, 0);
    assert_eq!(
        res,
        [
            (3, b"document already exists".to_vec()),
            (2, b"document not found".to_vec()),
            (3, b"document already exists".to_vec()),
            (0, br#"{"x":10}"#.to_vec())
        ]
    );
    let r = c.call(
        db,
        Cmd::Execute,
        vec![create_op("", 1, "{}"), read_op("", 404)],
    );
    assert_eq!(r.status, 3, "Conflict came first");
    assert_eq!(
        c.read(db, "", 10).0,
        0,
        "a later op's failure does not undo op 1 of Execute"
    );

    // Ops of one Execute apply in order, each seeing the ones before it.
    let (st, res) = c.execute_statuses(
        db,
        vec![
            create_op("", 7, "7"),
            read_op("", 7),
            delete_op("", 7),
            read_op("", 7),
            create_op("", 7, "8"),
            read_op("", 7),
            create_op("", 7, "9"),
        ],
    );
    assert_eq!(st, 0);
    let res: Vec<(u8, String)> = res
        .into_iter()
        .map(|(s, b)| (s, String::from_utf8_lossy(&b).into_owned()))
        .collect();
    assert_eq!(
        res,
        [
            (0, "".to_string()),
            (0, "7".into()),
            (0, "".into()),
            (2, "document not found".into()),
            (0, "".into()),
            (0, "8".into()),
            (3, "document already exists".into())
        ]
    );
    assert_eq!(c.read(db, "", 7), (0, b"8".to_vec()));

    // Zero ops: OK, n = 0.
    let r = c.call(db, Cmd::Execute, vec![]);
    assert_eq!((r.status, r.data.as_slice()), (0, &0u32.to_le_bytes()[..]));
}

#[test]
fn stats_five_counters() {
    let s = Server::start(&[]);
    let mut c = s.connect();
    let before = stats(&mut c);
    assert_eq!(before[0], 0, "no databases yet");
    let a = c.open_db("s1");
    let b = c.open_db("s2");
    for i in 1..=20 {
        assert_eq!(c.create(a, "", i, r#"{"pad":"xxxxxxxxxxxxxxxxxxxx"}"#).0, 0);
    }
    assert_eq!(c.create(b, "", 1, "{}").0, 0);
    let [total, active, txns, wal, mem] = stats(&mut c);
    assert_eq!(total, 2, "total_dbs");
    assert_eq!(active, 2, "active_dbs");
    assert!(txns >= 21, "total_txns counts committed writes: {txns}");
    assert!(wal > 0, "wal_size");
    assert!(
        mem >= 20 * 29,
        "memory_used counts live document bytes: {mem}"
    );
    let (_, _, txns2, wal2, _) = {
        assert_eq!(c.create(a, "", 100, "{}").0, 0);
        let s = stats(&mut c);
        (s[0], s[1], s[2], s[3], s[4])
    };
    assert!(txns2 > txns && wal2 > wal);
}

#[test]
fn collection_commands() {
    let s = Server::start(&[]);
    let mut c = s.connect();
    let db = c.open_db("colls");
    assert_eq!(
        json_call(&mut c, db, Cmd::ListCollections, vec![]),
        serde_json::json!(["_default"])
    );
    let r = c.call(db, Cmd::CreateCollection, vec![coll_op("users")]);
    assert_eq!(
        (r.status, r.data.len()),
        (0, 0),
        "CreateCollection: OK, empty"
    );
    ok(c.call(db, Cmd::CreateCollection, vec![coll_op("a-b.c_9")]));
    assert_reply(
        &c.call(db, Cmd::CreateCollection, vec![coll_op("users")]),
        1,
        "collection already exists",
    );
    assert_eq!(
        json_call(&mut c, db, Cmd::ListCollections, vec![]),
        serde_json::json!(["_default", "a-b.c_9", "users"]),
        "sorted names"
    );
    // Documents of different collections are separate.
    assert_eq!(c.create(db, "users", 1, r#"{"u":1}"#).0, 0);
    assert_eq!(c.create(db, "", 1, r#"{"d":1}"#).0, 0);
    assert_eq!(c.read(db, "users", 1), (0, br#"{"u":1}"#.to_vec()));
    assert_eq!(c.read(db, "_default", 1), (0, br#"{"d":1}"#.to_vec()));
    assert_eq!(c.read(db, "a-b.c_9", 1).0, 2);

    assert_reply(
        &c.call(db, Cmd::DeleteCollection, vec![coll_op("users")]),
        1,
        "collection is not empty",
    );
    assert_reply(
        &c.call(db, Cmd::DeleteCollection, vec![coll_op("nope")]),
        1,
        "collection not found",
    );
    let (st, _) = c.execute(db, vec![delete_op("users", 1)]);
    assert_eq!(st, 0);
    let r = c.call(db, Cmd::DeleteCollection, vec![coll_op("users")]);
    assert_eq!(
        (r.status, r.data.len()),
        (0, 0),
        "DeleteCollection: OK, empty"
    );
    assert_eq!(
        json_call(&mut c, db, Cmd::ListCollections, vec![]),
        serde_json::json!(["_default", "a-b.c_9"])
    );
    // The deleted collection is gone for documents too, and can be created again.
    assert_eq!(
        c.create(db, "users", 2, "{}"),
        (1, b"collection not found".to_vec())
    );
    ok(c.call(db, Cmd::CreateCollection, vec![coll_op("users")]));
    assert_eq!(
        c.read(db, "users", 1).0,
        2,
        "nothing comes back from before the delete"
    );
    assert_eq!(c.create(db, "users", 2, "{}").0, 0);
    // _default always exists and cannot be deleted; "" means _default.
    for name in ["_default", ""] {
        assert_reply(
            &c.call(db, Cmd::DeleteCollection, vec![coll_op(name)]),
            1,
            "cannot delete default collection",
        );
        assert_reply(
            &c.call(db, Cmd::CreateCollection, vec![coll_op(name)]),
            1,
            "collection already exists",
        );
    }
}

/// `YYYY-MM-DDTHH:MM:SS[.frac](Z|±HH:MM)`.
fn is_rfc3339(s: &str) -> bool {
    let b = s.as_bytes();
    let digits =
        |r: std::ops::Range<usize>| b.get(r).is_some_and(|x| x.iter().all(u8::is_ascii_digit));
    if !(b.len() >= 20
        && digits(0..4)
        && b[4] == b'-'
        && digits(5..7)
        && b[7] == b'-'
        && digits(8..10)
        && (b[10] == b'T' || b[10] == b't')
        && digits(11..13)
        && b[13] == b':'
        && digits(14..16)
        && b[16] == b':'
        && digits(17..19))
    {
        return false;
    }
    let mut i = 19;
    if b[i] == b'.' {
        i += 1;
        let start = i;
        while i < b.len() && b[i].is_ascii_digit() {
            i += 1;
        }
        if i == start {
            return false;
        }
    }
    match &b[i..] {
        [b'Z'] | [b'z'] => true,
        [s, h1, h2, b':', m1, m2] => {
            (*s == b'+' || *s == b'-') && [h1, h2, m1, m2].iter().all(|c| c.is_ascii_digit())
        }
        _ => false,
    }
}

/// Checks a ListDBs reply: exactly the v0.3 keys, types, and the figures of `a`.
fn check_list_dbs(v: &Value, names: &[(&str, u64)], a: &str, docs_a: u64, a_open: bool) {
    let rows = v.as_array().expect("ListDBs is a JSON array");
    assert_eq!(rows.len(), names.len(), "{v}");
    for row in rows {
        let keys: BTreeSet<&str> = row
            .as_object()
            .unwrap()
            .keys()
            .map(|k| k.as_str())
            .collect();
        assert_eq!(
            keys,
            [
                "CreatedAt",
                "DocsLive",
                "ID",
                "MemoryUsed",
                "Name",
                "WALSize"
            ]
            .into(),
            "exactly the v0.3 keys: {row}"
        );
        assert!(
            is_rfc3339(row["CreatedAt"].as_str().unwrap()),
            "CreatedAt {row}"
        );
        for k in ["ID", "WALSize", "MemoryUsed", "DocsLive"] {
            assert!(row[k].is_u64(), "{k} is an unsigned number: {row}");
        }
    }
    let by_name = |n: &str| rows.iter().find(|r| r["Name"] == n).unwrap().clone();
    for (n, id) in names {
        assert_eq!(by_name(n)["ID"], *id, "{v}");
    }
    let ra = by_name(a);
    assert_eq!(ra["DocsLive"], docs_a, "{v}");
    assert!(ra["WALSize"].as_u64().unwrap() > 0, "{v}");
    if a_open {
        assert!(ra["MemoryUsed"].as_u64().unwrap() > 0, "{v}");
    }
}

#[test]
fn list_dbs_json_shape() {
    let mut s = Server::start(&[]);
    let mut c = s.connect();
    assert_eq!(
        json_call(&mut c, 0, Cmd::ListDbs, vec![]),
        serde_json::json!([])
    );
    let a = c.open_db("lst-a");
    let b = c.open_db("lst-b");
    for i in 1..=3 {
        assert_eq!(c.create(a, "", i, r#"{"k":"v"}"#).0, 0);
    }
    let names = [("lst-a", a), ("lst-b", b)];
    let v = json_call(&mut c, 0, Cmd::ListDbs, vec![]);
    check_list_dbs(&v, &names, "lst-a", 3, true);
    let row_b = v
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["Name"] == "lst-b")
        .unwrap()
        .clone();
    assert_eq!(row_b["DocsLive"], 0);
    let created = v[0]["CreatedAt"].clone();
    ok(c.call(a, Cmd::CloseDb, vec![]));
    check_list_dbs(
        &json_call(&mut c, 0, Cmd::ListDbs, vec![]),
        &names,
        "lst-a",
        3,
        false,
    );
    drop(c);
    assert!(s.terminate(Duration::from_secs(20)).success());
    s.spawn();
    let mut c = s.connect();
    let v = json_call(&mut c, 0, Cmd::ListDbs, vec![]);
    assert_eq!(
        v.as_array().unwrap().len(),
        2,
        "every database is listed after a restart"
    );
    assert_eq!(
        v[0]["CreatedAt"], created,
        "CreatedAt is stored, not the open time"
    );
    assert_eq!(v[0]["Name"], "lst-a");
}

/// After a restart, a database that has not been opened yet is listed with its real
/// figures, not zeros.
#[test]
fn list_dbs_figures_survive_restart() {
    let mut s = Server::start(&[]);
    let mut c = s.connect();
    let a = c.open_db("lst-a");
    for i in 1..=3 {
        assert_eq!(c.create(a, "", i, r#"{"k":"v"}"#).0, 0);
    }
    drop(c);
    assert!(s.terminate(Duration::from_secs(20)).success());
    s.spawn();
    let mut c = s.connect();
    let v = json_call(&mut c, 0, Cmd::ListDbs, vec![]);
    check_list_dbs(&v, &[("lst-a", a)], "lst-a", 3, false);
}

#[test]
fn heal_commands_reply_shapes() {
    let s = Server::start(&[]);
    let mut c = s.connect();
    let db = c.open_db("healthy");
    for i in 1..=5 {
        assert_eq!(c.create(db, "", i, r#"{"ok":true}"#).0, 0);
    }
    let r = c.call(db, Cmd::Heal, vec![read_op("", 3)]);
    assert_reply(&r, 0, "OK");
    let v = json_call(&mut c, db, Cmd::HealAll, vec![]);
    assert_eq!(v, serde_json::json!([]), "nothing to heal");
    let v = json_call(&mut c, db, Cmd::HealStats, vec![]);
    let obj = v.as_object().expect("HealStats is a JSON object");
    for k in [
        "TotalScans",
        "DocumentsHealed",
        "DocumentsCorrupted",
        "OnDemandHealings",
        "BackgroundHealings",
    ] {
        assert!(obj.get(k).is_some_and(Value::is_u64), "{k}: {v}");
    }
    for k in ["LastScanTime", "LastHealingTime"] {
        let t = obj
            .get(k)
            .and_then(Value::as_str)
            .unwrap_or_else(|| panic!("{k}: {v}"));
        assert!(is_rfc3339(t), "{k} = {t:?}");
    }
    assert_eq!(v["DocumentsHealed"], 0);
    assert_eq!(v["DocumentsCorrupted"], 0);
    assert!(
        v["TotalScans"].as_u64().unwrap() >= 1,
        "HealAll is a scan: {v}"
    );
    // Reads still fine.
    assert_eq!(c.read(db, "", 3), (0, br#"{"ok":true}"#.to_vec()));
}

#[test]
fn metrics_exposition_has_every_family() {
    let s = Server::start(&[]);
    let mut c = s.connect();
    let db = c.open_db("metered");
    assert_eq!(c.create(db, "", 1, "{}").0, 0);
    assert_eq!(c.read(db, "", 1).0, 0);
    assert_eq!(c.read(db, "", 2).0, 2);
    ok(c.call(db, Cmd::HealAll, vec![]));
    let m = metrics(&mut c);
    for name in [
        "docdb_operations_total",
        "docdb_operation_duration_seconds",
        "docdb_documents",
        "docdb_memory_bytes",
        "docdb_wal_size_bytes",
        "docdb_errors_total",
        "docdb_healing_operations_total",
        "docdb_documents_healed_total",
        // Scheduler, worker pool, group commit (SPEC §6).
        "docdb_scheduler_queue_depth",
        "docdb_scheduler_workers",
        "docdb_worker_pool_running_workers",
        "docdb_worker_pool_waiting_tasks",
        "docdb_worker_pool_free_workers",
        "docdb_worker_pool_capacity",
        "docdb_wal_group_commit_batches",
        "docdb_wal_group_commit_records",
        "docdb_wal_group_commit_avg_batch_size",
        "docdb_wal_group_commit_max_batch_size",
        "docdb_wal_group_commit_avg_batch_latency_seconds",
        "docdb_wal_group_commit_max_batch_latency_seconds",
        "docdb_doc_cache_bytes",
        "docdb_doc_cache_hits_total",
        "docdb_doc_cache_misses_total",
    ] {
        assert!(
            m.lines()
                .any(|l| !l.starts_with('#') && l.starts_with(name)),
            "no sample of {name} in:\n{m}"
        );
    }
    assert!(
        m.contains("# TYPE docdb_operation_duration_seconds histogram"),
        "{m}"
    );
    assert!(m.contains("docdb_operation_duration_seconds_bucket"), "{m}");
    let sample = |prefix: &str| -> f64 {
        m.lines()
            .find(|l| l.starts_with(prefix))
            .and_then(|l| l.rsplit(' ').next())
            .and_then(|v| v.parse().ok())
            .unwrap_or_else(|| panic!("no {prefix} in:\n{m}"))
    };
    assert!(sample(r#"docdb_operations_total{operation="create",status="ok"}"#) >= 1.0);
    assert!(sample(r#"docdb_operations_total{operation="read",status="not_found"}"#) >= 1.0);
    assert!(m.contains("docdb_errors_total{category="), "{m}");
    assert!(sample("docdb_healing_operations_total") >= 1.0);
    assert!(m.ends_with("# EOF\n") || m.ends_with('\n'));
}

#[test]
fn transaction_is_all_or_nothing() {
    let s = Server::start(&[]);
    let mut c = s.connect();
    let db = c.open_db("tx");
    assert_eq!(c.create(db, "", 1, r#"{"v":"orig"}"#).0, 0);
    assert_eq!(c.create(db, "", 2, r#"{"v":2}"#).0, 0);
    let txns_before = stats(&mut c)[2];

    // The third op fails: nothing of the first two is applied.
    let r = c.call(
        db,
        Cmd::Transaction,
        vec![
            create_op("", 10, r#"{"new":10}"#),
            update_op("", 1, r#"{"v":"changed"}"#),
            create_op("", 1, "{}"),
        ],
    );
    assert_eq!(r.status, 3, "{:?}", results_text(&r));
    assert_eq!(
        text(&r),
        "document already exists",
        "the failing op's text alone"
    );
    assert_eq!(c.read(db, "", 10).0, 2, "op 1 rolled back");
    assert_eq!(
        c.read(db, "", 1),
        (0, br#"{"v":"orig"}"#.to_vec()),
        "op 2 rolled back"
    );

    // A failing patch, a missing document, invalid JSON, an unknown op type: same.
    for (bad, status, text) in [
        (
            Op::patch("", 2, br#"[{"op":"delete","path":"/missing"}]"#.to_vec()),
            1,
            "invalid JSON path",
        ),
        (update_op("", 404, "{}"), 2, "document not found"),
        (
            create_op("", 11, "raw:zz"),
            1,
            "payload must be valid JSON (forbidden prefixes: raw: hex:)",
        ),
        (raw_op(5, "", 12, b"{}"), 1, "unknown operation type"),
    ] {
        let r = c.call(
            db,
            Cmd::Transaction,
            vec![create_op("", 20, "{}"), delete_op("", 1), bad],
        );
        assert_eq!(r.status, status, "{:?}", results_text(&r));
        assert_eq!(support::text(&r), text);
        assert_eq!(c.read(db, "", 20).0, 2, "nothing applied ({text})");
        assert_eq!(c.read(db, "", 1).0, 0, "nothing applied ({text})");
    }

    // All succeed: every op applied; reads see the transaction's own writes or the
    // snapshot, and the reply is laid out as Execute's.
    let r = c.call(
        db,
        Cmd::Transaction,
        vec![
            create_op("", 30, r#"{"t":30}"#),
            update_op("", 1, r#"{"v":"tx"}"#),
            Op::patch("", 1, br#"[{"op":"set","path":"/w","value":1}]"#.to_vec()),
            create_op("", 31, r#"{"t":31}"#),
            delete_op("", 31),
        ],
    );
    assert_eq!(r.status, 0, "{:?}", results_text(&r));
    assert_eq!(results_text(&r), ["", "", "", "", ""]);
    assert_eq!(c.read(db, "", 30), (0, br#"{"t":30}"#.to_vec()));
    let v: Value = serde_json::from_slice(&c.read(db, "", 1).1).unwrap();
    assert_eq!(v, serde_json::json!({"v":"tx","w":1}));
    assert_eq!(c.read(db, "", 31).0, 2);
    assert!(stats(&mut c)[2] > txns_before);

    // Reads inside a transaction return the documents, its own writes included.
    let r = c.call(
        db,
        Cmd::Transaction,
        vec![read_op("", 30), create_op("", 40, "[40]"), read_op("", 40)],
    );
    assert_eq!(r.status, 0);
    assert_eq!(results_text(&r), [r#"{"t":30}"#, "", "[40]"]);
    // No ops: OK, n = 0.
    let r = c.call(db, Cmd::Transaction, vec![]);
    assert_eq!((r.status, r.data.as_slice()), (0, &0u32.to_le_bytes()[..]));
}

#[test]
fn scheduler_stats_json_shape() {
    let s = Server::start(&[]);
    let mut c = s.connect();
    let a = c.open_db("sch-a");
    let b = c.open_db("sch-b");
    for i in 1..=5 {
        assert_eq!(c.create(a, "", i, "{}").0, 0);
        assert_eq!(c.create(b, "", i, "{}").0, 0);
    }
    let v = scheduler_stats(&mut c);
    let qd = v["queue_depths"]
        .as_object()
        .unwrap_or_else(|| panic!("queue_depths: {v}"));
    for id in [a, b] {
        assert!(
            qd.get(&id.to_string()).is_some_and(Value::is_u64),
            "queue_depths[{id}]: {v}"
        );
    }
    assert!(
        v["avg_queue_depth"].is_number() || v["avg_queue_depth"].is_object(),
        "{v}"
    );
    assert!(v["worker_count"].as_u64().unwrap() >= 1, "{v}");
    assert_eq!(v["policy"], "fair", "the default policy");
    assert_eq!(v["panics"], 0);
    let wp = v["worker_pool"]
        .as_object()
        .unwrap_or_else(|| panic!("worker_pool: {v}"));
    for k in [
        "running_workers",
        "waiting_tasks",
        "free_workers",
        "pool_capacity",
    ] {
        assert!(wp.get(k).is_some_and(Value::is_u64), "worker_pool.{k}: {v}");
    }
    assert_eq!(
        v["worker_pool"]["pool_capacity"], 256,
        "max_workers default"
    );
    let gc = v["wal_group_commit"]
        .as_object()
        .unwrap_or_else(|| panic!("wal_group_commit: {v}"));
    for id in [a, b] {
        let g = gc
            .get(&id.to_string())
            .unwrap_or_else(|| panic!("wal_group_commit[{id}]: {v}"));
        for k in [
            "total_batches",
            "total_records",
            "avg_batch_size",
            "avg_batch_latency_ns",
            "max_batch_size",
            "max_batch_latency_ns",
            "last_flush_time_unix_ns",
        ] {
            assert!(
                g.get(k).is_some_and(Value::is_number),
                "wal_group_commit[{id}].{k}: {v}"
            );
        }
        assert!(g["total_batches"].as_u64().unwrap() >= 1, "{v}");
        assert!(g["total_records"].as_u64().unwrap() >= 5, "{v}");
        assert!(
            g["last_flush_time_unix_ns"].as_u64().unwrap() > 1_600_000_000_000_000_000,
            "{v}"
        );
    }

    // The policy flag shows.
    let s2 = Server::start(&["--policy", "round_robin"]);
    let mut c2 = s2.connect();
    assert_eq!(scheduler_stats(&mut c2)["policy"], "round_robin");
}

#[test]
fn scan_pagination_default_and_max_limit() {
    let s = Server::start(&[]);
    let mut c = s.connect();
    let db = c.open_db("scan");
    ok(c.call(db, Cmd::CreateCollection, vec![coll_op("items")]));
    // 1,200 documents, ids 1..=1200 written out of order, plus one in _default.
    let mut ids: Vec<u64> = (1..=1200).collect();
    ids.reverse();
    for chunk in ids.chunks(200) {
        let ops = chunk
            .iter()
            .map(|&i| create_op("items", i, &format!(r#"{{"i":{i}}}"#)))
            .collect();
        assert_eq!(c.execute(db, ops).0, 0);
    }
    assert_eq!(c.create(db, "", 5, r#"{"other":true}"#).0, 0);
    let scan = |c: &mut common::Client, after: u64, payload: &str| -> Vec<Value> {
        let v = json_call(
            c,
            db,
            Cmd::Scan,
            vec![docdb_protocol::Op::new(
                docdb_protocol::OpType::Read,
                "items",
                after,
                payload.as_bytes().to_vec(),
            )],
        );
        v.as_array().unwrap().clone()
    };
    let check_rows = |rows: &[Value], first: u64| {
        for (k, row) in rows.iter().enumerate() {
            let id = first + k as u64;
            assert_eq!(row, &serde_json::json!({"id": id, "doc": {"i": id}}));
        }
    };
    // Default limit 100 (empty payload and `{}`).
    let rows = scan(&mut c, 0, "");
    assert_eq!(rows.len(), 100);
    check_rows(&rows, 1);
    let rows = scan(&mut c, 0, "{}");
    assert_eq!(rows.len(), 100);
    // An explicit limit; start after.
    let rows = scan(&mut c, 250, r#"{"limit":7}"#);
    assert_eq!(rows.len(), 7);
    check_rows(&rows, 251);
    // The maximum is 1000.
    let rows = scan(&mut c, 0, r#"{"limit":5000}"#);
    assert_eq!(rows.len(), 1000);
    check_rows(&rows, 1);
    // Paginate through everything with limit 333: fewer than the limit means the end.
    let mut after = 0;
    let mut seen = 0u64;
    let mut pages = 0;
    loop {
        let rows = scan(&mut c, after, r#"{"limit":333}"#);
        check_rows(&rows, after + 1);
        seen += rows.len() as u64;
        pages += 1;
        if rows.len() < 333 {
            break;
        }
        after = rows.last().unwrap()["id"].as_u64().unwrap();
    }
    assert_eq!((seen, pages), (1200, 4));
    assert!(
        scan(&mut c, 1200, "").is_empty(),
        "past the end: empty array"
    );
    // Deleted documents are not scanned; updates show their new value.
    assert_eq!(
        c.execute(
            db,
            vec![
                delete_op("items", 2),
                update_op("items", 3, r#"{"i":"three"}"#)
            ]
        )
        .0,
        0
    );
    let rows = scan(&mut c, 0, r#"{"limit":3}"#);
    assert_eq!(
        Value::Array(rows),
        serde_json::json!([{"id":1,"doc":{"i":1}},{"id":3,"doc":{"i":"three"}},{"id":4,"doc":{"i":4}}])
    );
    // Collections are separate.
    let v = json_call(&mut c, db, Cmd::Scan, vec![coll_op("")]);
    assert_eq!(v, serde_json::json!([{"id":5,"doc":{"other":true}}]));
}

#[test]
fn scan_reaches_ids_0_and_u64_max() {
    let s = Server::start(&[]);
    let mut c = s.connect();
    let db = c.open_db("edges");
    for id in [u64::MAX, 0, 1, u64::MAX - 1] {
        assert_eq!(c.create(db, "", id, &format!(r#"{{"id":"{id}"}}"#)).0, 0);
    }
    let ids = |v: Value| -> Vec<u64> {
        v.as_array()
            .unwrap()
            .iter()
            .map(|r| r["id"].as_u64().unwrap())
            .collect()
    };
    let page = |c: &mut common::Client, after: u64, limit: u64| {
        ids(json_call(
            c,
            db,
            Cmd::Scan,
            vec![docdb_protocol::Op::new(
                docdb_protocol::OpType::Read,
                "",
                after,
                format!(r#"{{"limit":{limit}}}"#).into_bytes(),
            )],
        ))
    };
    assert_eq!(
        page(&mut c, 0, 10),
        [0, 1, u64::MAX - 1, u64::MAX],
        "0 = from the start"
    );
    assert_eq!(page(&mut c, 0, 2), [0, 1]);
    assert_eq!(page(&mut c, 1, 2), [u64::MAX - 1, u64::MAX]);
    assert_eq!(page(&mut c, u64::MAX - 1, 2), [u64::MAX]);
    assert!(page(&mut c, u64::MAX, 2).is_empty());
    assert_eq!(c.read(db, "", u64::MAX).0, 0);
    assert_eq!(c.read(db, "", 0).0, 0);
}

#[test]
fn patch_ops_through_execute() {
    let s = Server::start(&[]);
    let mut c = s.connect();
    let db = c.open_db("patch");
    assert_eq!(c.create(db, "", 1, r#"{"a":{"b":1},"arr":[1,2,3]}"#).0, 0);
    let (st, res) = c.execute(
        db,
        vec![Op::patch(
            "",
            1,
            br#"[{"op":"set","path":"/a/c","value":2},
                {"Op":"insert","Path":"/arr/0","Value":0},
                {"op":"delete","path":"/a/b"},
                {"op":"remove","path":"/arr/3"},
                {"op":"set","path":"/x~1y","value":"slash"}]"#
                .to_vec(),
        )],
    );
    assert_eq!(
        (st, res[0].as_slice()),
        (0, &b""[..]),
        "{}",
        String::from_utf8_lossy(&res[0])
    );
    let v: Value = serde_json::from_slice(&c.read(db, "", 1).1).unwrap();
    assert_eq!(
        v,
        serde_json::json!({"a":{"c":2},"arr":[0,1,2],"x/y":"slash"})
    );
}
