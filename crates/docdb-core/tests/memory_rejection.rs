#![allow(clippy::unwrap_used, clippy::expect_used)]
//! A write refused for memory (`memory.per_db_limit_mb`) leaves no trace (issue 15):
//! `memory_used`, the WAL's size, the live-document and transaction counts are what
//! they were; the refused document is absent (an update's target keeps its old bytes),
//! also after a reopen; and the budget it did not take is still there for the next
//! write. Single creates, updates and a transaction whose second write is the one over
//! the limit. (The same through an Execute and a Transaction command: the end-to-end
//! `crates/docdb/tests/memory_rejection.rs`.)

use docdb_core::{Config, Database, Error, Stats};

const KIB: usize = 1024;

fn config() -> Config {
    let mut c = Config::default();
    c.memory.per_db_limit_mb = 1;
    c
}

/// A JSON document of exactly `len` bytes.
fn doc(id: u64, len: usize) -> Vec<u8> {
    let head = format!(r#"{{"id":{id},"pad":""#);
    let pad = "p".repeat(len - head.len() - 2);
    format!("{head}{pad}\"}}").into_bytes()
}

/// The counters a refused write must not move.
fn trace(s: &Stats) -> (u64, u64, u64, u64) {
    (s.memory_used, s.wal_bytes, s.live_docs, s.tx_count)
}

fn refused<T: std::fmt::Debug>(r: docdb_core::Result<T>, what: &str) {
    assert!(
        matches!(r, Err(Error::MemoryLimit)),
        "{what}: expected MemoryLimit, got {r:?}"
    );
}

#[test]
fn a_write_refused_for_memory_leaves_no_trace() {
    let dir = tempfile::tempdir().unwrap();
    let db = Database::open(dir.path(), config()).unwrap();
    // 4 × 200 KiB of the 1 MiB: about 220 KiB left.
    for id in 1..=4 {
        db.create("_default", id, &doc(id, 200 * KIB)).unwrap();
    }
    let before = trace(&db.stats());
    assert!(before.0 >= 800 * KIB as u64, "memory_used {}", before.0);

    refused(
        db.create("_default", 10, &doc(10, 300 * KIB)),
        "create over the limit",
    );
    assert_eq!(trace(&db.stats()), before, "a refused create left a trace");
    assert!(matches!(db.read("_default", 10), Err(Error::NotFound)));

    refused(
        db.update("_default", 1, &doc(1, 500 * KIB)),
        "update growing past the limit",
    );
    assert_eq!(trace(&db.stats()), before, "a refused update left a trace");
    assert_eq!(db.read("_default", 1).unwrap(), doc(1, 200 * KIB));

    // A transaction whose first write fits and whose second does not: neither lands.
    let mut tx = db.begin();
    tx.create("_default", 20, &doc(20, KIB)).unwrap();
    let staged = tx.create("_default", 21, &doc(21, 300 * KIB));
    match staged {
        Ok(()) => refused(tx.commit(), "transaction over the limit"),
        Err(e) => {
            assert!(matches!(e, Error::MemoryLimit), "{e:?}");
            tx.rollback();
        }
    }
    assert_eq!(
        trace(&db.stats()),
        before,
        "a refused transaction left a trace"
    );
    for id in [20, 21] {
        assert!(matches!(db.read("_default", id), Err(Error::NotFound)));
    }

    // What was refused took nothing: the remaining budget still takes 200 KiB.
    db.create("_default", 5, &doc(5, 200 * KIB)).unwrap();
    let after_ok = db.stats();
    assert_eq!(after_ok.live_docs, 5);
    assert!(after_ok.memory_used > before.0);
    let memory = after_ok.memory_used;
    db.close().unwrap();

    // After a reopen: the refused writes are nowhere, the accepted ones all there, and
    // the accounting rebuilt from the files agrees.
    let db = Database::open(dir.path(), config()).unwrap();
    for id in [10, 20, 21] {
        assert!(
            matches!(db.read("_default", id), Err(Error::NotFound)),
            "refused document {id} exists after reopen"
        );
    }
    assert_eq!(db.read("_default", 1).unwrap(), doc(1, 200 * KIB));
    for id in 1..=5 {
        assert_eq!(db.read("_default", id).unwrap().len(), 200 * KIB);
    }
    let s = db.stats();
    assert_eq!((s.live_docs, s.memory_used), (5, memory));
    assert!(db.verify().unwrap().is_ok());
}
