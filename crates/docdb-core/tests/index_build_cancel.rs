//! `Database::create_index_with`: a build its caller cancels leaves nothing (no
//! entries, no memory, no definition after reopen); a build in progress is listed as
//! building; two builds of one database run at once and both finish; DropIndex of a
//! building index stops its build; a panic in a build leaves nothing registered;
//! `Database::begin_index` registers the index before any fill, and its handle dropped
//! unrun leaves nothing.

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
fn drop_index_of_a_building_index_stops_the_build_and_frees_the_name() {
    let dir = tempfile::tempdir().unwrap();
    let db = Database::open(dir.path(), Config::default()).unwrap();
    fill(&db, 5000);
    let used_before = db.stats().memory_used;
    // The second check drops the index (as another connection's DropIndex would);
    // the build stops at its next check.
    let checks = Cell::new(0);
    let dropped = Cell::new(None);
    let r = db.create_index_with("", def("by_a", "a", false), &|| {
        checks.set(checks.get() + 1);
        if checks.get() == 2 {
            dropped.set(Some(db.drop_index("", "by_a").map_err(|e| e.to_string())));
            // Gone at once: not listed, and writes no longer maintain it.
            assert!(db.list_indexes("").unwrap().is_empty());
            db.create("", 7777, br#"{"a": 3}"#).unwrap();
        }
        false
    });
    assert_eq!(dropped.take(), Some(Ok(())));
    assert!(
        matches!(r, Err(Error::IndexDroppedWhileBuilding { ref name }) if name == "by_a"),
        "{r:?}"
    );
    assert_eq!(
        checks.get(),
        2,
        "the build stopped at the check after the drop"
    );
    assert!(db.list_indexes("").unwrap().is_empty());
    assert_eq!(
        db.stats().memory_used,
        used_before + db_doc_bytes(&db, 7777)
    );
    // A later CreateIndex of the same name builds, and agrees with the documents.
    db.create_index("", def("by_a", "a", false)).unwrap();
    let l = db.list_indexes("").unwrap();
    assert_eq!((l.len(), l[0].entries, l[0].building), (1, 5001, false));
    assert!(db.verify().unwrap().problems.is_empty());
    // A name that is neither built nor building is still not found.
    assert!(matches!(
        db.drop_index("", "nope"),
        Err(Error::IndexNotFound { .. })
    ));
    db.close().unwrap();
    let db = Database::open(dir.path(), Config::default()).unwrap();
    assert_eq!(db.list_indexes("").unwrap().len(), 1);
}

/// The memory document `id` counts (its share of `memory_used`), measured by
/// deleting and restoring nothing: the difference a create made.
fn db_doc_bytes(db: &Database, id: u64) -> u64 {
    let before = db.stats().memory_used;
    let doc = db.read("", id).unwrap();
    db.delete("", id).unwrap();
    let freed = before - db.stats().memory_used;
    db.create("", id, &doc).unwrap();
    freed
}

#[test]
fn a_panic_in_a_build_leaves_nothing_registered_and_a_retry_builds() {
    let dir = tempfile::tempdir().unwrap();
    let db = Database::open(dir.path(), Config::default()).unwrap();
    fill(&db, 5000);
    let used_before = db.stats().memory_used;
    let checks = Cell::new(0);
    let r = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        db.create_index_with("", def("by_a", "b", true), &|| {
            checks.set(checks.get() + 1);
            assert!(checks.get() < 3, "injected panic in the build");
            false
        })
    }));
    assert!(
        r.is_err(),
        "the build panicked: {r:?} after {} checks",
        checks.get()
    );
    assert!(db.list_indexes("").unwrap().is_empty());
    assert_eq!(db.stats().memory_used, used_before);
    // The database goes on: writes, and a retry of the same name builds.
    db.create("", 9999, br#"{"a": 1000}"#).unwrap();
    db.create_index("", def("by_a", "a", false)).unwrap();
    let l = db.list_indexes("").unwrap();
    assert_eq!((l.len(), l[0].entries, l[0].building), (1, 5001, false));
    assert!(db.verify().unwrap().problems.is_empty());
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

#[test]
fn begin_index_registers_the_index_building_and_a_dropped_handle_leaves_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let db = Database::open(dir.path(), Config::default()).unwrap();
    fill(&db, 3000);
    let used_before = db.stats().memory_used;

    // Registered at once, before any document is read: listed building, a second of
    // its name refused, a write maintains it.
    let build = db.begin_index("", def("by_a", "a", false)).unwrap();
    assert_eq!(build.name(), "by_a");
    let l = db.list_indexes("").unwrap();
    assert_eq!(
        (l.len(), l[0].building, l[0].entries),
        (1, true, 0),
        "{l:?}"
    );
    assert!(matches!(
        db.begin_index("", def("by_a", "b", false)),
        Err(Error::IndexExists { ref name }) if name == "by_a"
    ));
    db.create("", 3000, br#"{"a": 5}"#).unwrap();
    assert_eq!(db.list_indexes("").unwrap()[0].entries, 1);
    // Refusals come from begin_index, not from the fill.
    assert!(matches!(
        db.begin_index("nope", def("by_b", "b", false)),
        Err(Error::CollectionNotFound)
    ));

    // Dropped without running: gone, nothing reserved, the name free again.
    let used = db.stats().memory_used;
    assert!(used > used_before);
    drop(build);
    assert!(db.list_indexes("").unwrap().is_empty());
    assert_eq!(db.stats().memory_used, used);
    let build = db.begin_index("", def("by_a", "a", false)).unwrap();
    build.run(&|| false).unwrap();
    let l = db.list_indexes("").unwrap();
    assert_eq!(
        (l.len(), l[0].building, l[0].entries),
        (1, false, 3001),
        "{l:?}"
    );
    drop(db);
    let db = Database::open(dir.path(), Config::default()).unwrap();
    let l = db.list_indexes("").unwrap();
    assert_eq!((l.len(), l[0].entries), (1, 3001), "{l:?}");
}
