//! Running out of file descriptors when the WAL rolls to its next segment is a
//! shortage, not a disk failure: the write still succeeds (on the end of the current
//! segment), the database stays writable, the roll happens once descriptors are back,
//! and everything survives a reopen.

#![allow(clippy::unwrap_used)]

use std::time::{Duration, Instant};

use docdb_core::storage::testing::{Fault, FaultKind, FaultStorage, FileKind, OpClass};
use docdb_core::{Config, Database, OpenOptions};

fn segments(dir: &std::path::Path) -> usize {
    std::fs::read_dir(dir.join("wal"))
        .unwrap()
        .filter(|e| {
            e.as_ref()
                .unwrap()
                .file_name()
                .to_string_lossy()
                .ends_with(".wal")
        })
        .count()
}

#[test]
fn emfile_on_segment_roll_is_retried_not_a_poison() {
    let d = tempfile::tempdir().unwrap();
    let mut cfg = Config::default();
    cfg.wal.max_file_size_mb = 1;
    let faults = FaultStorage::std();
    let opts = OpenOptions {
        storage: Some(faults.handle()),
        ..Default::default()
    };
    let db = Database::open_with(d.path(), cfg.clone(), opts).unwrap();
    // Every segment creation fails for now, as under `ulimit -n` with the
    // descriptors all taken.
    faults.arm(Fault::after(OpClass::Open, 0, FaultKind::Emfile).on(FileKind::Wal));
    let doc = format!("{{\"pad\":\"{}\"}}", "x".repeat(64 * 1024));
    let mut id = 0u64;
    // 3 MiB: three times past where the segment should have rolled.
    for _ in 0..48 {
        id += 1;
        db.create("", id, doc.as_bytes())
            .expect("a write that triggers a failed roll still succeeds");
    }
    assert_eq!(segments(d.path()), 1, "no segment could be created");
    assert!(db.stats().wal_bytes > 3 << 20);

    // Descriptors are back: the next roll (at most ~100 ms later) starts a segment.
    assert!(faults.failures() > 0, "segment creations were tried");
    faults.disarm();
    let deadline = Instant::now() + Duration::from_secs(10);
    while segments(d.path()) < 2 {
        assert!(Instant::now() < deadline, "the roll was never retried");
        std::thread::sleep(Duration::from_millis(20));
        id += 1;
        db.create("", id, doc.as_bytes()).unwrap();
    }
    db.close().unwrap();

    let db = Database::open(d.path(), cfg).unwrap();
    assert_eq!(db.stats().live_docs, id);
    for i in 1..=id {
        assert_eq!(db.read("", i).unwrap(), doc.as_bytes(), "doc {i}");
    }
}

#[test]
fn a_failed_fsync_still_makes_the_database_read_only() {
    let d = tempfile::tempdir().unwrap();
    let faults = FaultStorage::std();
    let opts = OpenOptions {
        storage: Some(faults.handle()),
        ..Default::default()
    };
    let db = Database::open_with(d.path(), Config::default(), opts).unwrap();
    faults.arm(Fault::first(OpClass::Sync, 1, FaultKind::Eio).on(FileKind::Wal));
    let e = db.create("", 1, b"1").unwrap_err();
    assert!(
        matches!(e, docdb_core::Error::OutcomeUnknown { .. }),
        "{e:?}"
    );
    let e = db.create("", 2, b"2").unwrap_err();
    assert!(matches!(e, docdb_core::Error::ReadOnly), "{e:?}");
    assert!(
        e.to_string()
            .starts_with("database is read-only after a failed write or fsync"),
        "{e}"
    );
}
