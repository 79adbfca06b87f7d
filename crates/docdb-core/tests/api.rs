//! The embedded API as a user sees it: every operation, its outcomes, and that data
//! survives a clean reopen.

#![allow(clippy::unwrap_used)]

use docdb_core::{Config, Database, Error};

fn open(dir: &std::path::Path) -> Database {
    Database::open(dir, Config::default()).unwrap()
}

/// Opens with a fault injector: the WAL fsync after the first `good_syncs` (from
/// when the database is open) fails.
fn open_failing_sync(dir: &std::path::Path, good_syncs: u64) -> Database {
    use docdb_core::storage::testing::{Fault, FaultKind, FaultStorage, FileKind, OpClass};
    let fs = FaultStorage::std();
    let opts = docdb_core::OpenOptions {
        storage: Some(fs.handle()),
        ..Default::default()
    };
    let db = Database::open_with(dir, Config::default(), opts).unwrap();
    fs.arm(Fault::once_after(OpClass::Sync, good_syncs, FaultKind::Eio).on(FileKind::Wal));
    db
}

#[test]
fn crud_round_trip_and_reopen() {
    let d = tempfile::tempdir().unwrap();
    let db = open(d.path());
    db.create("", 1, br#"{"a":1}"#).unwrap();
    assert!(matches!(db.create("", 1, b"{}"), Err(Error::AlreadyExists)));
    assert_eq!(db.read("_default", 1).unwrap(), br#"{"a":1}"#);
    db.update("", 1, br#"[1,2,3]"#).unwrap();
    assert_eq!(db.read("", 1).unwrap(), b"[1,2,3]");
    assert!(matches!(db.update("", 2, b"1"), Err(Error::NotFound)));
    assert!(matches!(db.delete("", 2), Err(Error::NotFound)));
    db.create("", 2, b"\"two\"").unwrap();
    db.delete("", 1).unwrap();
    assert!(matches!(db.read("", 1), Err(Error::NotFound)));
    db.create("", 1, b"null").unwrap();
    let s = db.stats();
    assert_eq!(s.live_docs, 2);
    assert_eq!(s.tx_count, 5, "failed writes are not transactions");
    db.close().unwrap();

    let db = open(d.path());
    assert_eq!(db.read("", 1).unwrap(), b"null");
    assert_eq!(db.read("", 2).unwrap(), b"\"two\"");
    assert_eq!(db.stats().live_docs, 2);
}

#[test]
fn invalid_input_is_rejected_and_changes_nothing() {
    let d = tempfile::tempdir().unwrap();
    let db = open(d.path());
    for bad in [
        &b"raw:abc"[..],
        b"hex:00",
        b"{",
        b"",
        b"{} {}",
        b"\xff",
        b"{\"a\":\"\xff\"}",
    ] {
        assert!(
            matches!(db.create("", 1, bad), Err(Error::InvalidJson)),
            "{bad:?}"
        );
    }
    let big = vec![b' '; 16 * 1024 * 1024 + 1];
    assert!(matches!(
        db.create("", 1, &big),
        Err(Error::PayloadTooLarge)
    ));
    assert!(matches!(
        db.create("../x", 1, b"1"),
        Err(Error::InvalidName { .. })
    ));
    assert!(matches!(
        db.create("nope", 1, b"1"),
        Err(Error::CollectionNotFound)
    ));
    assert_eq!(db.stats().tx_count, 0);
    assert!(matches!(db.read("", 1), Err(Error::NotFound)));
}

#[test]
fn patch_applies_atomically() {
    let d = tempfile::tempdir().unwrap();
    let db = open(d.path());
    db.create("", 1, br#"{"a":{"b":1},"list":[1,2,3]}"#)
        .unwrap();
    let new = db
        .patch(
            "",
            1,
            br#"[{"op":"set","path":"/a/c","value":2},{"op":"remove","path":"/list/0"}]"#,
        )
        .unwrap();
    let v: serde_json::Value = serde_json::from_slice(&new).unwrap();
    assert_eq!(v, serde_json::json!({"a":{"b":1,"c":2},"list":[2,3]}));
    assert!(matches!(
        db.patch(
            "",
            1,
            br#"[{"op":"set","path":"/x","value":1},{"op":"delete","path":"/missing"}]"#
        ),
        Err(Error::InvalidPath)
    ));
    assert_eq!(db.read("", 1).unwrap(), new, "failed patch changed nothing");
    assert!(matches!(
        db.patch("", 9, br#"[{"op":"set","path":"/a","value":1}]"#),
        Err(Error::NotFound)
    ));
    db.create("", 2, b"[1]").unwrap();
    assert!(matches!(
        db.patch("", 2, br#"[{"op":"set","path":"/a","value":1}]"#),
        Err(Error::NotAnObject)
    ));
}

#[test]
fn collections_lifecycle() {
    let d = tempfile::tempdir().unwrap();
    let db = open(d.path());
    db.create_collection("users").unwrap();
    assert!(matches!(
        db.create_collection("users"),
        Err(Error::CollectionExists)
    ));
    assert_eq!(db.list_collections(), vec!["_default", "users"]);
    db.create("users", 5, b"{}").unwrap();
    assert!(matches!(
        db.delete_collection("users"),
        Err(Error::CollectionNotEmpty)
    ));
    assert!(matches!(
        db.delete_collection(""),
        Err(Error::DefaultCollection)
    ));
    db.delete("users", 5).unwrap();
    db.delete_collection("users").unwrap();
    assert!(matches!(
        db.read("users", 5),
        Err(Error::CollectionNotFound)
    ));
    db.create_collection("users").unwrap();
    assert!(matches!(db.read("users", 5), Err(Error::NotFound)));
    db.create("users", 6, b"6").unwrap();
    drop(db);
    let db = open(d.path());
    assert_eq!(db.list_collections(), vec!["_default", "users"]);
    assert!(matches!(db.read("users", 5), Err(Error::NotFound)));
    assert_eq!(db.read("users", 6).unwrap(), b"6");
}

#[test]
fn scan_pages_in_id_order() {
    let d = tempfile::tempdir().unwrap();
    let db = open(d.path());
    for id in (1..=25u64).rev() {
        db.create("", id * 2, format!("{id}").as_bytes()).unwrap();
    }
    db.delete("", 10).unwrap();
    let mut seen = Vec::new();
    let mut after = 0;
    loop {
        let page = db.scan("", after, 7).unwrap();
        seen.extend(page.iter().map(|(id, _)| *id));
        if page.len() < 7 {
            break;
        }
        after = page.last().unwrap().0;
    }
    let want: Vec<u64> = (1..=25).map(|i| i * 2).filter(|&i| i != 10).collect();
    assert_eq!(seen, want);
    assert_eq!(db.scan("", u64::MAX, 10).unwrap().len(), 0);
    db.create("", 0, b"0").unwrap();
    let first = db.scan("", 0, 2).unwrap();
    assert_eq!(
        first.iter().map(|(id, _)| *id).collect::<Vec<_>>(),
        vec![0, 2],
        "0 = from the start"
    );
}

#[test]
fn transactions_see_one_snapshot_and_conflict_instead_of_losing_updates() {
    let d = tempfile::tempdir().unwrap();
    let db = open(d.path());
    db.create("", 1, b"1").unwrap();
    let mut t1 = db.begin();
    let mut t2 = db.begin();
    assert_eq!(t1.read("", 1).unwrap(), b"1");
    db.update("", 1, b"2").unwrap();
    assert_eq!(t1.read("", 1).unwrap(), b"1", "snapshot read");
    t1.update("", 1, b"10").unwrap();
    assert!(matches!(t1.commit(), Err(Error::Conflict)));
    assert_eq!(db.read("", 1).unwrap(), b"2");
    t2.create("", 7, b"7").unwrap();
    t2.create("", 8, b"8").unwrap();
    assert_eq!(t2.read("", 7).unwrap(), b"7");
    assert!(matches!(db.read("", 7), Err(Error::NotFound)));
    t2.commit().unwrap();
    assert_eq!(db.read("", 8).unwrap(), b"8");
    let mut t3 = db.begin();
    t3.delete("", 7).unwrap();
    t3.rollback();
    assert_eq!(db.read("", 7).unwrap(), b"7");
    assert_eq!(db.stats().open_snapshots, 0);
}

#[test]
fn memory_limits_refuse_writes_and_change_nothing() {
    let d = tempfile::tempdir().unwrap();
    let mut cfg = Config::default();
    cfg.memory.per_db_limit_mb = 1;
    let db = Database::open(d.path(), cfg).unwrap();
    let doc = format!("\"{}\"", "x".repeat(400 * 1024));
    db.create("", 1, doc.as_bytes()).unwrap();
    db.create("", 2, doc.as_bytes()).unwrap();
    assert!(matches!(
        db.create("", 3, doc.as_bytes()),
        Err(Error::MemoryLimit)
    ));
    assert!(matches!(db.read("", 3), Err(Error::NotFound)));
    db.delete("", 1).unwrap();
    db.create("", 3, doc.as_bytes()).unwrap();

    let shared = docdb_core::MemoryBudget::new(1024 * 1024);
    let opts = docdb_core::OpenOptions {
        global_memory: Some(shared.clone()),
        ..Default::default()
    };
    let d2 = tempfile::tempdir().unwrap();
    let d3 = tempfile::tempdir().unwrap();
    let a = Database::open_with(d2.path(), Config::default(), opts.clone()).unwrap();
    let b = Database::open_with(d3.path(), Config::default(), opts).unwrap();
    a.create("", 1, doc.as_bytes()).unwrap();
    b.create("", 1, doc.as_bytes()).unwrap();
    assert!(matches!(
        a.create("", 2, doc.as_bytes()),
        Err(Error::MemoryLimit)
    ));
    assert!(shared.used() <= 1024 * 1024);
    drop(a);
    b.create("", 2, doc.as_bytes()).unwrap();
}

#[test]
fn many_threads_write_and_read_one_database() {
    let d = tempfile::tempdir().unwrap();
    let db = std::sync::Arc::new(open(d.path()));
    let threads: Vec<_> = (0..8u64)
        .map(|t| {
            let db = db.clone();
            std::thread::spawn(move || {
                for i in 0..200u64 {
                    let id = t * 1000 + i;
                    db.create("", id, format!("{{\"t\":{t},\"i\":{i}}}").as_bytes())
                        .unwrap();
                    assert!(db.read("", id).is_ok(), "read-your-write");
                    if i % 3 == 0 {
                        db.patch(
                            "",
                            t * 1000,
                            format!(r#"[{{"op":"set","path":"/n{i}","value":{i}}}]"#).as_bytes(),
                        )
                        .unwrap();
                    }
                }
            })
        })
        .collect();
    for t in threads {
        t.join().unwrap();
    }
    let s = db.stats();
    assert_eq!(s.live_docs, 1600);
    assert!(s.group_commit.total_batches > 0);
    let v: serde_json::Value = serde_json::from_slice(&db.read("", 3000).unwrap()).unwrap();
    assert_eq!(v.as_object().unwrap().len(), 2 + 67, "no patch was lost");
}

#[test]
fn a_second_open_of_the_same_directory_is_refused() {
    let d = tempfile::tempdir().unwrap();
    let _db = open(d.path());
    let e = Database::open(d.path(), Config::default()).err().unwrap();
    assert!(e.to_string().contains("in use"), "{e}");
}

#[test]
fn after_a_failed_fsync_writes_are_refused_until_restart_or_reset() {
    let d = tempfile::tempdir().unwrap();
    let db = open_failing_sync(d.path(), 3);
    for i in 0..3 {
        db.create("", i, b"1").unwrap();
    }
    // The write whose fsync failed may or may not be on disk, and says so.
    let e = db.create("", 3, b"1").unwrap_err();
    assert!(matches!(e, Error::OutcomeUnknown { .. }), "{e:?}");
    assert!(e.to_string().starts_with("write outcome unknown"), "{e}");
    assert!(e.to_string().contains("WAL fsync"), "{e}");
    let e = db.create("", 4, b"1").unwrap_err();
    assert!(matches!(e, Error::ReadOnly), "{e:?}");
    assert_eq!(db.read("", 2).unwrap(), b"1", "reads keep working");
    assert!(db.is_read_only());
    // Closing does not clear it: pages the kernel dropped after the failed fsync would
    // otherwise be trusted by a reopen in this process (DECISIONS 38).
    assert!(
        db.close().is_err(),
        "close cannot checkpoint a failed database"
    );
    let e = Database::open(d.path(), Config::default()).err().unwrap();
    assert!(matches!(e, Error::FailedEarlier { .. }), "{e:?}");
    assert!(e.to_string().contains("WAL fsync"), "{e}");
    assert!(docdb_core::failure::failed(d.path()).is_some());
    // The explicit reset (after a check) lets it open and write again, with every
    // acknowledged write present; the unknown one may be either.
    let report = docdb_core::verify_offline(d.path(), None).unwrap();
    assert!(report.is_ok(), "{report:?}");
    assert!(docdb_core::failure::reset(d.path()));
    let db = open(d.path());
    for i in 0..3 {
        assert_eq!(db.read("", i).unwrap(), b"1");
    }
    assert!(
        matches!(db.read("", 4), Err(Error::NotFound)),
        "refused, absent"
    );
    db.create("", 4, b"1").unwrap();
    assert!(!db.is_read_only());
}

#[test]
fn checkpoint_compact_and_verify_keep_every_document() {
    let d = tempfile::tempdir().unwrap();
    let mut cfg = Config::default();
    cfg.wal.max_file_size_mb = 1;
    cfg.wal.keep_segments = 1;
    cfg.checkpoint.interval_mb = 1;
    let db = Database::open(d.path(), cfg.clone()).unwrap();
    let doc = format!("{{\"pad\":\"{}\"}}", "p".repeat(1000));
    for i in 0..3000u64 {
        db.create("", i, doc.as_bytes()).unwrap();
    }
    for i in 0..3000u64 {
        if i % 2 == 0 {
            db.delete("", i).unwrap();
        } else {
            db.update("", i, format!("{{\"i\":{i}}}").as_bytes())
                .unwrap();
        }
    }
    let before = db.stats();
    let snap_tx = db.begin();
    let reclaimed = db.compact().unwrap();
    assert!(reclaimed > 2_000_000, "reclaimed {reclaimed}");
    assert!(db.stats().data_bytes < before.data_bytes / 5);
    db.checkpoint().unwrap();
    drop(snap_tx);
    let r = db.verify().unwrap();
    assert!(r.is_ok(), "{:?}", r.problems);
    let segs = std::fs::read_dir(d.path().join("wal")).unwrap().count();
    assert!(segs <= 3, "trimmed to keep_segments: {segs}");
    for i in 0..3000u64 {
        let got = db.read("", i);
        if i % 2 == 0 {
            assert!(matches!(got, Err(Error::NotFound)));
        } else {
            assert_eq!(got.unwrap(), format!("{{\"i\":{i}}}").as_bytes());
        }
    }
    db.close().unwrap();
    let db = Database::open(d.path(), cfg).unwrap();
    assert_eq!(db.stats().live_docs, 1500);
    assert_eq!(db.read("", 2999).unwrap(), b"{\"i\":2999}");
    assert!(db.recovery_report().dropped.is_empty());
}

#[test]
fn a_batch_shares_one_fsync_and_keeps_order() {
    let d = tempfile::tempdir().unwrap();
    let db = open(d.path());
    let before = db.stats().group_commit.total_batches;
    let mut b = db.batch();
    for i in 0..50u64 {
        b.create("", i, b"1").unwrap();
    }
    assert!(matches!(b.create("", 3, b"1"), Err(Error::AlreadyExists)));
    b.update("", 3, b"2").unwrap();
    assert_eq!(
        b.read("", 3).unwrap(),
        b"2",
        "a read sees earlier writes of the batch"
    );
    b.delete("", 4).unwrap();
    b.finish().unwrap();
    assert!(matches!(db.read("", 4), Err(Error::NotFound)));
    let batches = db.stats().group_commit.total_batches - before;
    assert_eq!(batches, 2, "one fsync before the read, one at the end");
}

#[test]
fn a_batch_read_of_an_untouched_document_does_not_wait_for_its_writes() {
    let d = tempfile::tempdir().unwrap();
    let db = open(d.path());
    db.create("", 1000, b"\"old\"").unwrap();
    let before = db.stats().group_commit.total_batches;
    let mut b = db.batch();
    for i in 0..20u64 {
        b.create("", i, b"1").unwrap();
        // Reads of other documents see what is durable, without a flush each.
        assert_eq!(b.read("", 1000).unwrap(), b"\"old\"");
        assert!(
            matches!(b.read("", i + 1), Err(Error::NotFound)),
            "an unwritten id stays not found"
        );
    }
    assert!(b.has_unflushed(), "nothing flushed so far");
    assert_eq!(
        db.stats().group_commit.total_batches,
        before,
        "no fsync before the end"
    );
    // A read of a document the batch wrote flushes first and sees the write.
    b.update("", 1000, b"\"new\"").unwrap();
    assert_eq!(b.read("", 1000).unwrap(), b"\"new\"");
    assert!(!b.has_unflushed());
    b.finish().unwrap();
    assert_eq!(db.stats().live_docs, 21);
}

#[test]
fn a_detached_batch_is_acknowledged_after_wait_flushed_and_read_in_order_by_the_next() {
    let d = tempfile::tempdir().unwrap();
    let db = open(d.path());
    db.create("", 1, b"1").unwrap();
    let mut first = db.batch();
    first.update("", 1, b"2").unwrap();
    first.create("", 2, b"2").unwrap();
    let pending = first.detach().expect("writes to wait for");
    // The next batch (another server worker) reads in staging order: the staged
    // update is made durable first and seen.
    let mut next = db.batch();
    assert_eq!(next.read("", 1).unwrap(), b"2");
    next.finish().unwrap();
    db.wait_flushed(pending).unwrap();
    assert_eq!(db.read("", 2).unwrap(), b"2");
    // A scan-like reader waits for everything staged by anyone.
    let mut third = db.batch();
    let staged = {
        let mut b = db.batch();
        b.create("", 3, b"3").unwrap();
        b.detach().expect("a write")
    };
    third.flush_all().unwrap();
    assert_eq!(db.read("", 3).unwrap(), b"3");
    db.wait_flushed(staged).unwrap();
    assert!(
        db.batch().detach().is_none(),
        "an empty batch has nothing to wait for"
    );
}

#[test]
fn durability_callbacks_and_blocking_writers_share_group_commits_and_each_runs_once() {
    use std::sync::atomic::{AtomicU64, Ordering};
    use std::sync::Arc;
    let d = tempfile::tempdir().unwrap();
    let db = Arc::new(open(d.path()));
    let called = Arc::new(AtomicU64::new(0));
    std::thread::scope(|s| {
        for t in 0..8u64 {
            let (db, called) = (db.clone(), called.clone());
            s.spawn(move || {
                for i in 0..200u64 {
                    let id = t * 1000 + i;
                    if t % 2 == 0 {
                        // A server worker: stage, detach, answer from the driver.
                        let mut b = db.batch();
                        b.create("", id, b"1").unwrap();
                        let pending = b.detach().unwrap();
                        let (c, db2) = (called.clone(), db.clone());
                        db.when_flushed(pending, move |r| {
                            r.unwrap();
                            // Durable and visible when the callback runs.
                            assert_eq!(db2.read("", id).unwrap(), b"1");
                            c.fetch_add(1, Ordering::Relaxed);
                        });
                    } else {
                        db.create("", id, b"1").unwrap();
                    }
                }
            });
        }
    });
    // Every callback ran exactly once, on some thread, before its writer moved on or
    // later: wait for the stragglers a driver may still be answering.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    while called.load(Ordering::Relaxed) < 800 {
        assert!(std::time::Instant::now() < deadline, "callbacks missing");
        std::thread::sleep(std::time::Duration::from_millis(5));
    }
    assert_eq!(called.load(Ordering::Relaxed), 800);
    let gc = db.stats().group_commit;
    assert!(
        gc.total_records >= 1600 && gc.total_batches < 1600,
        "{gc:?}"
    );
    drop(db);
    let db = open(d.path());
    assert_eq!(db.stats().live_docs, 1600);
}

#[test]
fn a_failed_fsync_fails_the_waiting_callbacks_and_later_ones_at_once() {
    let d = tempfile::tempdir().unwrap();
    let db = open_failing_sync(d.path(), 1);
    db.create("", 1, b"1").unwrap();
    let (tx, rx) = std::sync::mpsc::channel();
    let mut b = db.batch();
    b.create("", 2, b"2").unwrap();
    let tx2 = tx.clone();
    db.when_flushed(b.detach().unwrap(), move |r| tx2.send(r).unwrap());
    let r = rx.recv().unwrap();
    assert!(matches!(r, Err(Error::OutcomeUnknown { .. })), "{r:?}");
    // The database is read-only now: a new write is refused when staged.
    let mut b = db.batch();
    assert!(matches!(b.create("", 3, b"3"), Err(Error::ReadOnly)));
    assert!(b.detach().is_none());
    assert_eq!(
        db.read("", 1).unwrap(),
        b"1",
        "what was durable stays readable"
    );
    assert!(
        matches!(db.read("", 2), Err(Error::NotFound)),
        "the failed write is not visible"
    );
}

#[test]
fn a_transaction_and_collection_commands_staged_in_a_batch_share_its_completion() {
    let d = tempfile::tempdir().unwrap();
    let db = open(d.path());
    db.create("", 1, b"1").unwrap();
    let mut b = db.batch();
    b.create_collection("c").unwrap();
    // Visible to the ops staged after it, before it is durable.
    b.create("c", 7, b"7").unwrap();
    assert!(matches!(
        b.create_collection("c"),
        Err(Error::CollectionExists)
    ));
    assert!(matches!(
        b.delete_collection("c"),
        Err(Error::CollectionNotEmpty)
    ));
    let mut tx = b.database().begin();
    tx.update("", 1, b"2").unwrap();
    tx.create("", 2, b"2").unwrap();
    tx.commit_in(&mut b).unwrap();
    // Staged, not durable: a snapshot reader does not see the transaction yet.
    assert_eq!(db.read("", 1).unwrap(), b"1");
    let (send, recv) = std::sync::mpsc::channel();
    db.when_flushed(b.detach().expect("staged writes"), move |r| {
        send.send(r).unwrap()
    });
    recv.recv().unwrap().unwrap();
    assert_eq!(db.read("", 1).unwrap(), b"2");
    assert_eq!(db.read("", 2).unwrap(), b"2");
    assert_eq!(db.read("c", 7).unwrap(), b"7");
    // A transaction that conflicts with a write staged after its snapshot changes
    // nothing, and a read-only one stages nothing.
    let mut stale = db.begin();
    stale.update("", 2, b"4").unwrap();
    db.update("", 2, b"3").unwrap();
    let mut b = db.batch();
    assert!(matches!(stale.commit_in(&mut b), Err(Error::Conflict)));
    let ro = db.begin();
    assert_eq!(ro.read("", 2).unwrap(), b"3");
    ro.commit_in(&mut b).unwrap();
    assert!(b.detach().is_none(), "nothing was staged");
    drop(db);
    let db = open(d.path());
    assert_eq!(db.read("", 2).unwrap(), b"3");
    assert_eq!(db.list_collections(), ["_default", "c"]);
}

#[test]
fn a_transaction_staged_in_a_batch_fails_with_the_batch_fsync() {
    let d = tempfile::tempdir().unwrap();
    let db = open_failing_sync(d.path(), 0);
    let mut b = db.batch();
    let mut tx = b.database().begin();
    tx.create("", 1, b"1").unwrap();
    tx.commit_in(&mut b).unwrap();
    let (send, recv) = std::sync::mpsc::channel();
    db.when_flushed(b.detach().expect("staged"), move |r| send.send(r).unwrap());
    let r = recv.recv().unwrap();
    assert!(matches!(r, Err(Error::OutcomeUnknown { .. })), "{r:?}");
    assert!(matches!(db.read("", 1), Err(Error::NotFound)));
}
