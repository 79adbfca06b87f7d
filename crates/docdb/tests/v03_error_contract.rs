#![allow(clippy::unwrap_used)]
//! The v0.3 error contract (SPEC §8, issue 13 item 5), pinned by raw bytes: every v0.3
//! client (Go pkg/client, docdbsh, the TS client) reads the data of any non-OK reply
//! as UTF-8 error text and the data of an OK Execute as `[u32 n]([u32 len][bytes])*`.
//! So a failing Execute or Transaction answers the first failed op's status with that
//! op's text alone — never "\x01\0\0\0\x17\0\0\0document already exists" — and the
//! per-op statuses our own clients need come only with the flag 0x80 on the command
//! byte (docs/PROTOCOL.md, "Per-op statuses").

mod common;
mod support;

use common::{Client, Server};
use docdb_protocol::{Command as Cmd, Op, Response, PER_OP_STATUS};
use support::*;

const BAD_PATCH: &str = "invalid patch operations";

fn patch_op(id: u64, ops: &str) -> Op {
    Op::patch("", id, ops.as_bytes().to_vec())
}

/// Sends one request as raw frame bytes and returns its reply.
fn raw(c: &mut Client, id: u64, db: u64, command: u8, ops: Vec<Op>) -> Response {
    c.send_raw(&frame(id, db, command, ops));
    let r = c.recv().expect("a reply");
    assert_eq!(r.request_id, id);
    r
}

/// The reply is `status` with exactly `text` as its data: the whole response frame
/// is `u32 len, u64 id, u8 status, u32 text_len, text`.
fn assert_text(r: &Response, status: u8, want: &str) {
    assert_eq!(
        (r.status, String::from_utf8_lossy(&r.data).as_ref()),
        (status, want),
        "data bytes {:?}",
        r.data
    );
    let mut wire = Vec::new();
    docdb_protocol::encode_response(r, &mut wire);
    let mut expect = ((13 + want.len()) as u32).to_le_bytes().to_vec();
    expect.extend_from_slice(&r.request_id.to_le_bytes());
    expect.push(status);
    expect.extend_from_slice(&(want.len() as u32).to_le_bytes());
    expect.extend_from_slice(want.as_bytes());
    assert_eq!(wire, expect);
}

/// `u32 n`, then per op `u8 status, u32 len, bytes`, decoded by hand.
fn statuses(r: &Response) -> Vec<(u8, String)> {
    assert_eq!(r.status, 0, "{}", text(r));
    let d = &r.data;
    let n = u32::from_le_bytes(d[0..4].try_into().unwrap()) as usize;
    let mut at = 4;
    let mut out = Vec::new();
    for _ in 0..n {
        let st = d[at];
        let len = u32::from_le_bytes(d[at + 1..at + 5].try_into().unwrap()) as usize;
        out.push((
            st,
            String::from_utf8_lossy(&d[at + 5..at + 5 + len]).into_owned(),
        ));
        at += 5 + len;
    }
    assert_eq!(at, d.len(), "no trailing bytes");
    out
}

fn owned(v: &[(u8, &str)]) -> Vec<(u8, String)> {
    v.iter().map(|(s, t)| (*s, t.to_string())).collect()
}

#[test]
fn non_ok_replies_are_plain_text_and_ok_execute_keeps_its_shape() {
    let s = Server::start(&[]);
    let mut c = s.connect();
    let db = c.open_db("contract");
    let ex = Cmd::Execute as u8;

    // OK Execute: unchanged `[u32 n]([u32 len][bytes])*`.
    let r = raw(
        &mut c,
        1,
        db,
        ex,
        vec![create_op("", 1, r#"{"a":1}"#), read_op("", 1)],
    );
    assert_eq!(r.status, 0);
    let mut want = 2u32.to_le_bytes().to_vec();
    want.extend_from_slice(&0u32.to_le_bytes());
    want.extend_from_slice(&7u32.to_le_bytes());
    want.extend_from_slice(br#"{"a":1}"#);
    assert_eq!(r.data, want);

    // Failing Executes: the first failed op's status and its text alone.
    let cases: Vec<(Vec<Op>, u8, &str)> = vec![
        (vec![create_op("", 1, "{}")], 3, "document already exists"),
        (vec![read_op("", 99)], 2, "document not found"),
        (vec![patch_op(1, "not json")], 1, BAD_PATCH),
        (vec![read_op("nope", 1)], 1, "collection not found"),
        (vec![create_op("nope", 5, "{}")], 1, "collection not found"),
        (
            vec![create_op("", 6, "raw:xx")],
            1,
            "payload must be valid JSON (forbidden prefixes: raw: hex:)",
        ),
        (vec![raw_op(5, "", 1, b"")], 1, "unknown operation type"),
        // Several ops: the first failure by position answers; the others ran.
        (
            vec![
                read_op("", 1),
                create_op("", 1, "{}"),
                read_op("", 99),
                create_op("", 2, "{}"),
            ],
            3,
            "document already exists",
        ),
    ];
    for (i, (ops, status, want)) in cases.into_iter().enumerate() {
        let r = raw(&mut c, 10 + i as u64, db, ex, ops);
        assert_text(&r, status, want);
    }
    // The op after the failures of the last case ran.
    assert_eq!(c.read(db, "", 2), (0, b"{}".to_vec()));

    // A failing Transaction: the failing op's text alone, nothing applied.
    let r = raw(
        &mut c,
        30,
        db,
        Cmd::Transaction as u8,
        vec![create_op("", 7, "{}"), create_op("", 1, "{}")],
    );
    assert_text(&r, 3, "document already exists");
    let r = raw(
        &mut c,
        31,
        db,
        Cmd::Transaction as u8,
        vec![update_op("", 1, "[]"), read_op("", 98)],
    );
    assert_text(&r, 2, "document not found");
    assert_eq!(c.read(db, "", 7).0, 2, "the transaction applied nothing");
    assert_eq!(c.read(db, "", 1), (0, br#"{"a":1}"#.to_vec()));

    // Other non-OK replies, v0.3 texts kept where v0.3 had one.
    let others: Vec<(u64, u8, Vec<Op>, &str)> = vec![
        (
            db,
            Cmd::DeleteCollection as u8,
            vec![coll_op("_default")],
            "cannot delete default collection",
        ),
        (
            db,
            Cmd::DeleteCollection as u8,
            vec![coll_op("nope")],
            "collection not found",
        ),
        (
            db,
            Cmd::CreateCollection as u8,
            vec![coll_op("")],
            "collection already exists",
        ),
        (db + 100, ex, vec![read_op("", 1)], "database not open"),
        (
            db + 100,
            Cmd::Transaction as u8,
            vec![read_op("", 1)],
            "database not open",
        ),
        (db, 99, vec![read_op("", 1)], "unknown command"),
        // The flag is only valid on Execute and Transaction.
        (
            0,
            Cmd::Stats as u8 | PER_OP_STATUS,
            vec![],
            "unknown command",
        ),
        (db, PER_OP_STATUS, vec![], "unknown command"),
    ];
    for (i, (target, cmd, ops, want)) in others.into_iter().enumerate() {
        let r = raw(&mut c, 40 + i as u64, target, cmd, ops);
        assert_text(&r, 1, want);
    }
    // An invalid database name: plain text too (the name's own message).
    let r = raw(
        &mut c,
        60,
        0,
        Cmd::OpenDb as u8,
        vec![create_op("", 0, "../x")],
    );
    assert_eq!(r.status, 1);
    let t = std::str::from_utf8(&r.data).expect("UTF-8 text");
    assert!(t.starts_with("invalid database name"), "{t}");
    assert!(!t.contains('\0'), "{t:?}");
}

#[test]
fn the_per_op_status_flag_gives_each_op_its_status() {
    let s = Server::start(&[]);
    let mut c = s.connect();
    let db = c.open_db("flagged");
    assert_eq!(c.create(db, "", 1, r#"{"a":1}"#).0, 0);
    let ex = Cmd::Execute as u8 | PER_OP_STATUS;
    let tx = Cmd::Transaction as u8 | PER_OP_STATUS;
    assert_eq!(ex, 131);
    assert_eq!(tx, 141);

    // Execute: OK, each op with its own status, the failed ops' texts.
    let r = raw(
        &mut c,
        1,
        db,
        ex,
        vec![
            create_op("", 1, "{}"),
            read_op("", 1),
            read_op("", 99),
            patch_op(1, "not json"),
            read_op("nope", 1),
            create_op("", 2, "[2]"),
        ],
    );
    assert_eq!(
        statuses(&r),
        owned(&[
            (3, "document already exists"),
            (0, r#"{"a":1}"#),
            (2, "document not found"),
            (1, BAD_PATCH),
            (1, "collection not found"),
            (0, ""),
        ])
    );
    // The first result's bytes: status 3, u32 length 23, the text.
    assert_eq!(&r.data[0..9], &[6, 0, 0, 0, 3, 23, 0, 0, 0]);
    assert_eq!(c.read(db, "", 2), (0, b"[2]".to_vec()), "the last op ran");

    // Transaction that fails at op 1: the failing op's status and text, the others
    // "transaction not applied: op 1 failed"; nothing applied.
    let r = raw(
        &mut c,
        2,
        db,
        tx,
        vec![
            create_op("", 3, "{}"),
            create_op("", 1, "{}"),
            read_op("", 1),
        ],
    );
    let na = "transaction not applied: op 1 failed";
    assert_eq!(
        statuses(&r),
        owned(&[(1, na), (3, "document already exists"), (1, na)])
    );
    assert_eq!(c.read(db, "", 3).0, 2, "nothing applied");

    // A transaction that commits: every op OK with its result.
    let r = raw(
        &mut c,
        3,
        db,
        tx,
        vec![create_op("", 3, "{}"), read_op("", 1)],
    );
    assert_eq!(statuses(&r), owned(&[(0, ""), (0, r#"{"a":1}"#)]));

    // A request-level error stays plain text with its own status.
    let r = raw(&mut c, 4, db + 100, ex, vec![read_op("", 1)]);
    assert_text(&r, 1, "database not open");
    let r = raw(&mut c, 5, db + 100, tx, vec![read_op("", 1)]);
    assert_text(&r, 1, "database not open");
}
