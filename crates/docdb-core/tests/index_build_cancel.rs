//! `Database::create_index_with`: a build its caller cancels leaves nothing (no
//! entries, no memory, no definition after reopen); a build in progress is listed as
//! building; two builds of one database run at once and both finish.

#![allow(clippy::unwrap_used)]

use std::cell::Cell;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Barrier};

use docdb_core::{Config, Database, Error, IndexDef};
use serde_json::json;

fn def(name: &str, field: &str, unique: bool) -> IndexDef {
    IndexDef {
        name: name.into(),
        fields: vec![(field.into(), 1)],
        unique,
    }
}

fn fill(db: &Database, n: u64) {
    let mut b = db.batch();
    for i in 0..n {
        let doc = json!({"a": i % 97, "b": i});
        b.create("", i, doc.to_string().as_bytes()).unwrap();
    }
    b.finish().unwrap();
}

#[test]
fn a_cancelled_build_leaves_nothing_and_a_running_one_is_listed_building() {
    let dir = tempfile::tempdir().unwrap();
    let db = Database::open(dir.path(), Config::default()).unwrap();
    fill(&db, 5000);
    let used_before = db.stats().memory_used;

    // The cancel check sees the index listed as building; the third check cancels.
    let checks = Cell::new(0);
    let seen = Cell::new(false);
    let r = db.create_index_with("", def("by_a", "a", false), &|| {
        checks.set(checks.get() + 1);
        let list = db.list_indexes("").unwrap();
        seen.set(list.len() == 1 && list[0].building && list[0].memory_bytes == 0);
        checks.get() >= 3
    });
    assert!(
        matches!(r, Err(Error::IndexBuildCancelled { ref name }) if name == "by_a"),
        "{r:?}"
    );
    assert!(seen.get(), "a building index is listed as building");
    assert!(db.list_indexes("").unwrap().is_empty());
    assert_eq!(db.stats().memory_used, used_before);
    // The name is free again, and a write after it maintains nothing stale.
    db.create("", 9999, br#"{"a": 1}"#).unwrap();
    db.create_index("", def("by_a", "a", false)).unwrap();
    let l = db.list_indexes("").unwrap();
    assert_eq!((l.len(), l[0].entries, l[0].building), (1, 5001, false));
    db.drop_index("", "by_a").unwrap();

    // Cancelled at the last check (after the fill, before it is readable): nothing
    // written to INDEXES either, so a reopen has no index.
    let calls = Cell::new(0);
    let r = db.create_index_with("", def("by_b", "b", true), &|| {
        calls.set(calls.get() + 1);
        calls.get() > 5 // 5001 documents: checks at 0, 1024, 2048, 3072, 4096; then the end
    });
    assert!(matches!(r, Err(Error::IndexBuildCancelled { .. })), "{r:?}");
    assert_eq!(calls.get(), 6);
    assert!(db.verify().unwrap().problems.is_empty());
    db.close().unwrap();
    let db = Database::open(dir.path(), Config::default()).unwrap();
    assert!(db.list_indexes("").unwrap().is_empty());
}

#[test]
fn two_builds_of_one_database_run_at_once_while_writes_continue() {
    let dir = tempfile::tempdir().unwrap();
    let db = Arc::new(Database::open(dir.path(), Config::default()).unwrap());
    fill(&db, 20_000);
    // Each build waits at its first check until the other has started: they overlap.
    let both = Arc::new(Barrier::new(2));
    let writes = Arc::new(AtomicUsize::new(0));
    let mut builds = Vec::new();
    for (name, field) in [("by_a", "a"), ("by_b", "b")] {
        let (db, both, writes) = (db.clone(), both.clone(), writes.clone());
        builds.push(std::thread::spawn(move || {
            let first = Cell::new(true);
            db.create_index_with("", def(name, field, field == "b"), &|| {
                if first.replace(false) {
                    both.wait();
                }
                // A write between checks: made during the build, indexed once.
                let n = writes.fetch_add(1, Ordering::SeqCst) as u64;
                let doc = json!({"a": 1, "b": 1_000_000 + n});
                db.create("", 1_000_000 + n, doc.to_string().as_bytes())
                    .unwrap();
                false
            })
        }));
    }
    for b in builds {
        b.join().unwrap().unwrap();
    }
    let docs = 20_000 + writes.load(Ordering::SeqCst) as u64;
    let l = db.list_indexes("").unwrap();
    assert_eq!(l.len(), 2);
    for i in &l {
        assert_eq!((i.entries, i.building), (docs, false), "{}", i.name);
    }
    assert!(db.verify().unwrap().problems.is_empty());
    drop(l);
    let db = Arc::try_unwrap(db).ok().unwrap();
    db.close().unwrap();
    let db = Database::open(dir.path(), Config::default()).unwrap();
    assert_eq!(db.list_indexes("").unwrap().len(), 2);
}
