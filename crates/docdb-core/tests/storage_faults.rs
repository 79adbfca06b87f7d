//! A disk that says no, through the storage seam (`storage::testing::FaultStorage`):
//! when the first data-file write, data-file fsync, CHECKPOINT rename or directory
//! fsync fails (EIO, ENOSPC, EMFILE or a short write), the operation that needed it
//! reports an error, nothing panics, and the database reopens on the real file system
//! with every acknowledged write. And a failure at any call of an open is an error,
//! never a panic or a lost document.

#![allow(clippy::unwrap_used)]

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;
use std::sync::atomic::{AtomicUsize, Ordering};

use docdb_core::storage::testing::{Fault, FaultKind, FaultStorage, FileKind, OpClass};
use docdb_core::{Config, Database, Error, OpenOptions};

static PANICS: AtomicUsize = AtomicUsize::new(0);

/// Counts panics on every thread (background threads included) while still printing
/// them.
fn count_panics() {
    static ONCE: std::sync::Once = std::sync::Once::new();
    ONCE.call_once(|| {
        let default = std::panic::take_hook();
        std::panic::set_hook(Box::new(move |info| {
            PANICS.fetch_add(1, Ordering::SeqCst);
            default(info);
        }));
    });
}

fn open_on(dir: &Path, fs: &FaultStorage) -> Result<Database, Error> {
    let opts = OpenOptions {
        storage: Some(fs.handle()),
        ..Default::default()
    };
    Database::open_with(dir, Config::default(), opts)
}

fn doc(i: u64) -> Vec<u8> {
    format!("{{\"i\":{i},\"pad\":\"{}\"}}", "d".repeat(300)).into_bytes()
}

/// What the user was told: documents acknowledged present (`Some`) or deleted
/// (`None`), and ids whose last write failed (either outcome is allowed).
#[derive(Default)]
struct Model {
    acked: BTreeMap<u64, Option<Vec<u8>>>,
    unknown: BTreeSet<u64>,
    errors: Vec<String>,
}

impl Model {
    fn note<T>(&mut self, id: Option<u64>, r: Result<T, Error>, after: impl FnOnce(&mut Self)) {
        match r {
            Ok(_) => after(self),
            Err(e) => {
                self.errors.push(e.to_string());
                if let Some(id) = id {
                    self.unknown.insert(id);
                }
            }
        }
    }

    /// Reopens on the real file system and checks every acknowledged write.
    fn check(&self, dir: &Path, what: &str) {
        // A failed write or fsync keeps the database closed to this process until a
        // restart (DECISIONS 38): stand in for one.
        docdb_core::failure::reset(dir);
        let db = Database::open(dir, Config::default())
            .unwrap_or_else(|e| panic!("{what}: reopen failed: {e}"));
        for (&id, want) in &self.acked {
            if self.unknown.contains(&id) {
                continue;
            }
            match (want, db.read("", id)) {
                (Some(w), Ok(got)) => assert_eq!(&got, w, "{what}: doc {id}"),
                (None, Err(Error::NotFound)) => {}
                (w, got) => panic!(
                    "{what}: doc {id}: acknowledged {}, read {got:?}",
                    if w.is_some() { "present" } else { "deleted" }
                ),
            }
        }
        let never = 1_000_000;
        assert!(matches!(db.read("", never), Err(Error::NotFound)));
        let v = db.verify().unwrap();
        assert!(v.is_ok(), "{what}: verify after reopen: {:?}", v.problems);
        db.close().unwrap();
    }
}

/// Opens, writes 20 documents, arms `fault`, then runs creates, deletes, a
/// checkpoint, a compaction, more creates and a close; checks that the fault was hit,
/// that some operation reported it, and that a reopen keeps every acknowledged write.
fn run(fault: Fault, what: &str) {
    count_panics();
    let d = tempfile::tempdir().unwrap();
    let fs = FaultStorage::std();
    let db = open_on(d.path(), &fs).unwrap();
    let mut m = Model::default();
    for i in 1..=20 {
        db.create("", i, &doc(i)).unwrap();
        m.acked.insert(i, Some(doc(i)));
    }
    fs.arm(fault);
    for i in 21..=60 {
        m.note(Some(i), db.create("", i, &doc(i)), |m| {
            m.acked.insert(i, Some(doc(i)));
        });
    }
    for i in 1..=10 {
        m.note(Some(i), db.delete("", i), |m| {
            m.acked.insert(i, None);
        });
    }
    m.note(None, db.checkpoint(), |_| {});
    m.note(None, db.compact(), |_| {});
    for i in 61..=70 {
        m.note(Some(i), db.create("", i, &doc(i)), |m| {
            m.acked.insert(i, Some(doc(i)));
        });
    }
    m.note(None, db.close(), |_| {});
    assert_eq!(fs.failures(), 1, "{what}: the fault was hit once");
    assert!(
        !m.errors.is_empty(),
        "{what}: no operation reported the failure"
    );
    m.check(d.path(), what);
    assert_eq!(
        PANICS.load(Ordering::SeqCst),
        0,
        "{what}: something panicked"
    );
}

fn each_kind(class: OpClass, file: Option<FileKind>) {
    for kind in FaultKind::ALL {
        let mut f = Fault::first(class, 1, kind);
        f.file = file;
        run(f, &format!("{kind:?} on the first {class:?} of {file:?}"));
    }
}

#[test]
fn a_failed_data_file_write_is_reported_and_loses_nothing_acknowledged() {
    each_kind(OpClass::Write, Some(FileKind::Data));
}

#[test]
fn a_failed_data_file_fsync_is_reported_and_loses_nothing_acknowledged() {
    each_kind(OpClass::Sync, Some(FileKind::Data));
}

#[test]
fn a_failed_checkpoint_rename_is_reported_and_loses_nothing_acknowledged() {
    each_kind(OpClass::Rename, Some(FileKind::Checkpoint));
}

#[test]
fn a_failed_directory_fsync_is_reported_and_loses_nothing_acknowledged() {
    each_kind(OpClass::SyncDir, None);
}

/// Every call an open of an existing database makes, failed in turn with each kind:
/// the open reports an error or succeeds, and a later open on the real file system
/// has every document.
#[test]
fn a_failure_at_any_call_of_an_open_is_an_error_and_loses_nothing() {
    count_panics();
    let d = tempfile::tempdir().unwrap();
    let db = Database::open(d.path(), Config::default()).unwrap();
    let mut m = Model::default();
    for i in 1..=30 {
        db.create("", i, &doc(i)).unwrap();
        m.acked.insert(i, Some(doc(i)));
    }
    // Dropped without close: the next open replays the WAL. Every round starts from
    // a copy of this state.
    drop(db);
    let probe_dir = tempfile::tempdir().unwrap();
    copy_dir(d.path(), probe_dir.path());
    let probe = FaultStorage::std();
    drop(open_on(probe_dir.path(), &probe).unwrap());
    let calls = probe.calls();
    assert!(calls > 10, "an open makes a dozen calls or more ({calls})");
    let mut failed_opens = 0;
    for n in 1..=calls {
        for kind in FaultKind::ALL {
            let round = tempfile::tempdir().unwrap();
            copy_dir(d.path(), round.path());
            let fs = FaultStorage::std();
            fs.fail_call(n, kind);
            match open_on(round.path(), &fs) {
                Ok(db) => drop(db),
                Err(e) => {
                    failed_opens += 1;
                    assert!(!e.to_string().is_empty());
                }
            }
            assert_eq!(fs.failures(), 1, "call {n} was made and failed");
            m.check(round.path(), &format!("{kind:?} at call {n} of {calls}"));
        }
    }
    assert!(failed_opens > 0);
    assert_eq!(PANICS.load(Ordering::SeqCst), 0, "something panicked");
    eprintln!("open matrix: {calls} calls x 4 kinds, {failed_opens} opens failed");
}

fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for e in std::fs::read_dir(from).unwrap() {
        let e = e.unwrap();
        let dest = to.join(e.file_name());
        if e.file_type().unwrap().is_dir() {
            copy_dir(&e.path(), &dest);
        } else {
            std::fs::copy(e.path(), dest).unwrap();
        }
    }
}

/// `verify_offline_with` reads through the storage it is given: a failing read is an
/// error (not a panic, not a clean report), and the same database then verifies clean.
#[test]
fn offline_verify_goes_through_the_storage_it_is_given() {
    let d = tempfile::tempdir().unwrap();
    let db = Database::open(d.path(), Config::default()).unwrap();
    for i in 1..=5 {
        db.create("", i, &doc(i)).unwrap();
    }
    db.close().unwrap();
    let fs = FaultStorage::std();
    let r = docdb_core::verify_offline_with(&fs, d.path(), None).unwrap();
    assert!(r.is_ok(), "{:?}", r.problems);
    assert!(fs.count_on(OpClass::Read, FileKind::Wal) > 0);
    assert!(fs.count_on(OpClass::Read, FileKind::Data) > 0);
    for file in [FileKind::Wal, FileKind::Data] {
        let fs = FaultStorage::std();
        fs.arm(Fault::after(OpClass::Read, 0, FaultKind::Eio).on(file));
        let outcome = docdb_core::verify_offline_with(&fs, d.path(), None);
        assert!(
            outcome.as_ref().map_or(true, |r| !r.is_ok()),
            "{file:?}: a failed read must not verify clean: {outcome:?}"
        );
    }
    assert!(docdb_core::verify_offline(d.path(), None).unwrap().is_ok());
}
