#![allow(clippy::unwrap_used)]
//! A multi-op Execute with a bad patch in the middle (issue 15): each op of an Execute is
//! atomic on its own and they run in order, so `[update 1, bad patch 1, read 1]`
//! answers Error (the first failure's status) with the patch's error text (the v0.3
//! contract), and with the per-op status flag OK with per-op results `[ok "", error
//! <patch error>, ok <the updated document>]`; the update is durable (there after a SIGKILL), the patch
//! changed nothing. Then the same failing patch pipelined between other requests on one
//! connection (so they share the worker's batches): each reply is its own, the others'
//! writes all land.

mod common;
mod support;

use common::Server;
use docdb_protocol::{Command as Cmd, Op, OpType, Request};
use support::*;

const BAD_PATCH: &str = "invalid patch operations";

fn patch_op(id: u64, ops: &str) -> Op {
    let mut op = Op::new(OpType::Patch, "", id, Vec::new());
    op.patch = Some(ops.as_bytes().to_vec());
    op
}

#[test]
fn an_execute_with_a_bad_patch_runs_the_ops_around_it() {
    let mut s = Server::start(&[]);
    let mut c = s.connect();
    let db = c.open_db("partial");
    assert_eq!(c.create(db, "", 1, r#"{"v":0}"#).0, 0);
    let (st, res) = c.execute(
        db,
        vec![
            update_op("", 1, r#"{"v":1}"#),
            patch_op(1, "not json"),
            read_op("", 1),
        ],
    );
    assert_eq!((st, res), (1, vec![BAD_PATCH.as_bytes().to_vec()]));
    let (st, res) = c.execute_statuses(
        db,
        vec![
            update_op("", 1, r#"{"v":1}"#),
            patch_op(1, "not json"),
            read_op("", 1),
        ],
    );
    assert_eq!(st, 0, "{res:?}");
    assert_eq!(res.len(), 3);
    assert_eq!(res[0], (0, b"".to_vec()));
    assert_eq!(
        (res[1].0, String::from_utf8_lossy(&res[1].1)),
        (1, BAD_PATCH.into())
    );
    assert_eq!(
        res[2],
        (0, br#"{"v":1}"#.to_vec()),
        "the read after the bad patch"
    );

    // Pipelined: create 2, bad patch 1, update 1, create 3; one connection, no waits.
    let reqs: Vec<(Vec<Op>, u8)> = vec![
        (vec![create_op("", 2, r#"{"v":2}"#)], 0),
        (vec![patch_op(1, r#"[{"op":"nope"}]"#)], 1),
        (vec![update_op("", 1, r#"{"v":3}"#)], 0),
        (vec![create_op("", 3, r#"{"v":3}"#)], 0),
    ];
    for (i, (ops, _)) in reqs.iter().enumerate() {
        c.send(&Request {
            request_id: 100 + i as u64,
            db_id: db,
            command: Cmd::Execute as u8,
            ops: ops.clone(),
        });
    }
    let mut replies = Vec::new();
    for _ in &reqs {
        replies.push(c.recv().expect("a reply"));
    }
    replies.sort_by_key(|r| r.request_id);
    for (i, (r, (_, want))) in replies.iter().zip(&reqs).enumerate() {
        assert_eq!(r.request_id, 100 + i as u64);
        assert_eq!(r.status, *want, "request {i}: {}", text(r));
    }

    drop(c);
    s.kill();
    s.spawn();
    let mut c = s.connect();
    let db = c.open_db("partial");
    assert_eq!(c.read(db, "", 1), (0, br#"{"v":3}"#.to_vec()));
    assert_eq!(c.read(db, "", 2), (0, br#"{"v":2}"#.to_vec()));
    assert_eq!(c.read(db, "", 3), (0, br#"{"v":3}"#.to_vec()));
}
