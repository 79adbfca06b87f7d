//! The Rust client's batches against the real server: an Execute batch reports a
//! result per op, failures included; a transaction applies all of its ops or none.
#![allow(clippy::unwrap_used)]

mod common;

use common::Server;
use docdb_client::{Batch, Client, PatchOp};
use serde_json::{json, Value};

#[test]
fn a_batch_reports_each_op_failures_included() {
    let server = Server::start(&[]);
    let client = Client::connect(&server.socket).unwrap();
    let db = client.open_db("batch").unwrap();
    db.create(1, r#"{"v":1}"#).unwrap();
    db.create_collection("c").unwrap();

    let batch = Batch::new()
        .create(2, r#"{"v":2}"#) // 0 ok
        .create(1, r#"{"v":9}"#) // 1 conflict
        .read(1) // 2 document
        .read(404) // 3 not found
        .update(404, "{}") // 4 not found
        .patch(1, &[PatchOp::set("/w", true)]) // 5 ok
        .patch(2, &[PatchOp::delete("/nope")]) // 6 invalid path
        .create(3, "not json") // 7 invalid JSON
        .delete(2) // 8 ok: sees op 0
        .read(2) // 9 not found: deleted by op 8
        .collection("c")
        .create_json(1, &json!({"in": "c"})) // 10 ok
        .read(1) // 11 document of collection c
        .collection("")
        .read(1); // 12 the patched document
    let out = db.execute(&batch).unwrap();
    assert_eq!(out.len(), 13);
    assert!(matches!(out[0], Ok(None)));
    assert!(out[1].as_ref().unwrap_err().is_conflict());
    assert_eq!(
        out[2].as_ref().unwrap().as_deref(),
        Some(&br#"{"v":1}"#[..])
    );
    assert!(out[3].as_ref().unwrap_err().is_not_found());
    assert!(out[4].as_ref().unwrap_err().is_not_found());
    assert!(matches!(out[5], Ok(None)));
    assert_eq!(
        out[6].as_ref().unwrap_err().server_text(),
        Some("invalid JSON path")
    );
    assert!(out[7].as_ref().unwrap_err().is_server());
    assert!(matches!(out[8], Ok(None)));
    assert!(out[9].as_ref().unwrap_err().is_not_found());
    assert!(matches!(out[10], Ok(None)));
    assert_eq!(
        out[11].as_ref().unwrap().as_deref(),
        Some(&br#"{"in":"c"}"#[..])
    );
    let doc: Value = serde_json::from_slice(out[12].as_ref().unwrap().as_ref().unwrap()).unwrap();
    assert_eq!(doc, json!({"v": 1, "w": true}));

    // The successful writes are durable and visible; the failed ones changed nothing.
    assert!(db.read(2).unwrap_err().is_not_found());
    assert!(db.read(3).unwrap_err().is_not_found());
    assert_eq!(db.collection("c").read(1).unwrap(), br#"{"in":"c"}"#);

    // An all-successful batch, and an empty one.
    let out = db
        .execute(&Batch::new().create(5, "5").read(5).delete(5))
        .unwrap();
    assert_eq!(out.len(), 3);
    assert!(out.iter().all(Result::is_ok));
    assert!(db.execute(&Batch::new()).unwrap().is_empty());
}

#[test]
fn a_transaction_applies_all_or_nothing() {
    let server = Server::start(&[]);
    let client = Client::connect(&server.socket).unwrap();
    let db = client.open_db("tx").unwrap();
    db.create(1, r#"{"balance":100}"#).unwrap();
    db.create(2, r#"{"balance":0}"#).unwrap();

    // Commits: both writes and the read inside it.
    let out = db
        .transaction(
            &Batch::new()
                .update(1, r#"{"balance":60}"#)
                .update(2, r#"{"balance":40}"#)
                .create(3, r#"{"log":"moved 40"}"#)
                .read(1),
        )
        .unwrap();
    assert_eq!(out.len(), 4);
    assert_eq!(out[..3], [None, None, None]);
    assert_eq!(out[3].as_deref(), Some(&br#"{"balance":60}"#[..]));
    assert_eq!(db.read(2).unwrap(), br#"{"balance":40}"#);
    assert_eq!(db.read(3).unwrap(), br#"{"log":"moved 40"}"#);

    // Aborts on the last op: nothing of it is visible, with the failing op's status.
    let e = db
        .transaction(
            &Batch::new()
                .update(1, r#"{"balance":0}"#)
                .update(2, r#"{"balance":100}"#)
                .delete(3)
                .create(4, "{}")
                .create(1, "{}"),
        )
        .unwrap_err();
    assert!(e.is_conflict(), "{e:?}");
    assert_eq!(e.to_string(), "document already exists");
    assert_eq!(db.read(1).unwrap(), br#"{"balance":60}"#);
    assert_eq!(db.read(2).unwrap(), br#"{"balance":40}"#);
    assert!(db.read(3).is_ok());
    assert!(db.read(4).unwrap_err().is_not_found());

    // Other statuses abort too.
    let e = db
        .transaction(&Batch::new().create(5, "{}").read(404))
        .unwrap_err();
    assert!(e.is_not_found(), "{e:?}");
    let e = db
        .transaction(
            &Batch::new()
                .create(5, "{}")
                .patch(1, &[PatchOp::test("/balance", 0)]),
        )
        .unwrap_err();
    assert_eq!(e.server_text(), Some("patch test failed"));
    assert!(db.read(5).unwrap_err().is_not_found());

    // Ops see the transaction's own earlier writes.
    let out = db
        .transaction(
            &Batch::new()
                .create(6, r#"{"n":1}"#)
                .patch(6, &[PatchOp::set("/n", 2)])
                .read(6),
        )
        .unwrap();
    assert_eq!(out[2].as_deref(), Some(&br#"{"n":2}"#[..]));
}

/// A read-modify-write increment of counter `id` as a compare-and-set transaction: the
/// patch tests that `/n` is still the value read, sets it to one more, and creates the
/// marker document `marker`. Ok(true): committed; Ok(false): the counter had moved on
/// (or the server reported a conflict), nothing was applied.
fn try_increment(db: &docdb_client::Database, id: u64, marker: u64) -> Result<bool, String> {
    let doc: Value = serde_json::from_slice(&db.read(id).map_err(|e| format!("{e:?}"))?)
        .map_err(|e| e.to_string())?;
    let n = doc["n"].as_u64().ok_or("counter without n")?;
    let batch = Batch::new()
        .patch(id, &[PatchOp::test("/n", n), PatchOp::set("/n", n + 1)])
        .create(marker, "{}");
    match db.transaction(&batch) {
        Ok(_) => Ok(true),
        Err(e) if e.is_conflict() || e.to_string().contains("patch test failed") => Ok(false),
        Err(e) => Err(format!("{e:?}")),
    }
}

#[test]
fn concurrent_transactions_never_lose_an_update() {
    let server = Server::start(&[]);
    let client = Client::connect(&server.socket).unwrap();
    let db = client.open_db("tx-race").unwrap();
    const COUNTERS: u64 = 3;
    for c in 1..=COUNTERS {
        db.create(c, r#"{"n":0}"#).unwrap();
    }
    // The compare-and-set guard works: an increment based on a stale read is refused
    // and applies nothing (else concurrent increments could silently overwrite).
    let stale = Batch::new()
        .patch(1, &[PatchOp::test("/n", 7), PatchOp::set("/n", 8)])
        .create(999, "{}");
    let e = db.transaction(&stale).unwrap_err();
    assert!(
        e.is_conflict() || e.to_string().contains("patch test failed"),
        "{e:?}"
    );
    assert_eq!(db.read(1).unwrap(), br#"{"n":0}"#.to_vec());
    assert!(db.read(999).unwrap_err().is_not_found());

    // Four threads each commit PER increments spread over the counters, retrying the
    // ones that lost a race; each commit also creates its own marker document.
    const THREADS: u64 = 4;
    const PER: u64 = 40;
    let threads: Vec<_> = (0..THREADS)
        .map(|t| {
            let db = db.clone();
            std::thread::spawn(move || {
                let (mut committed, mut retried) = (0u64, 0u64);
                let mut attempt = 0u64;
                while committed < PER {
                    attempt += 1;
                    assert!(
                        attempt < 50 * PER,
                        "thread {t}: {committed} commits in {attempt} tries"
                    );
                    let counter = 1 + (committed + t) % COUNTERS;
                    let marker = 1000 + t * 1000 + attempt;
                    match try_increment(&db, counter, marker) {
                        Ok(true) => committed += 1,
                        Ok(false) => retried += 1,
                        Err(e) => panic!("thread {t}: {e}"),
                    }
                }
                (committed, retried)
            })
        })
        .collect();
    let (mut committed, mut retried) = (0u64, 0u64);
    for t in threads {
        let (c, r) = t.join().unwrap();
        committed += c;
        retried += r;
    }
    eprintln!("{committed} increments committed, {retried} retried after losing a race");
    assert_eq!(committed, THREADS * PER, "a minimum number of commits");
    let sum: u64 = (1..=COUNTERS)
        .map(|c| {
            let v: Value = serde_json::from_slice(&db.read(c).unwrap()).unwrap();
            v["n"].as_u64().unwrap()
        })
        .sum();
    assert_eq!(
        sum, committed,
        "the counters add up to the committed increments: none was lost"
    );
    let created = db.scan().filter(|r| r.as_ref().unwrap().0 >= 1000).count() as u64;
    assert_eq!(
        created, committed,
        "every commit, and only they, left their create"
    );
}
