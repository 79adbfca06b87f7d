//! The index snapshot `INDEX`: open after a clean close reads it and scans nothing;
//! a damaged, truncated, stale or foreign one is not used (the whole data file is
//! scanned, the report says why) and nothing is lost; random writes, checkpoints,
//! compactions and crashes give the same contents with and without it.

use std::collections::BTreeMap;
use std::fs;
use std::path::Path;

use docdb_core::{Config, Database};

type Model = BTreeMap<String, BTreeMap<u64, Vec<u8>>>;

fn config() -> Config {
    let mut c = Config::default();
    c.wal.max_file_size_mb = 1;
    c
}

fn contents(db: &Database) -> Model {
    let mut m = Model::new();
    for coll in db.list_collections() {
        let mut docs = BTreeMap::new();
        let mut after = 0;
        loop {
            let page = db.scan(&coll, after, 1000).expect("scan");
            let Some(&(last, _)) = page.last() else { break };
            docs.extend(page);
            after = last;
        }
        m.insert(coll, docs);
    }
    m
}

fn doc(id: u64, v: u64) -> Vec<u8> {
    format!(
        r#"{{"id":{id},"v":{v},"pad":"{}"}}"#,
        "x".repeat((id % 7) as usize * 30)
    )
    .into_bytes()
}

/// A database with two collections, updates, deletes, a deleted collection, closed.
fn fixture(dir: &Path) -> Model {
    let db = Database::open(dir, config()).expect("open");
    db.create_collection("users").expect("create users");
    db.create_collection("gone").expect("create gone");
    for id in 0..2000 {
        db.create("", id, &doc(id, 0)).expect("create");
        if id % 3 == 0 {
            db.create("users", id, &doc(id, 1)).expect("create");
        }
    }
    db.checkpoint().expect("checkpoint");
    for id in (0..2000).step_by(5) {
        db.update("", id, &doc(id, 2)).expect("update");
    }
    for id in (0..2000).step_by(11) {
        db.delete("", id).expect("delete");
    }
    db.delete_collection("gone").expect("delete gone");
    let m = contents(&db);
    db.close().expect("close");
    m
}

#[test]
fn open_after_a_clean_close_reads_the_snapshot_and_scans_nothing() {
    let dir = tempfile::tempdir().expect("tempdir");
    let want = fixture(dir.path());
    assert!(dir.path().join("INDEX").exists(), "close writes INDEX");
    let db = Database::open(dir.path(), config()).expect("reopen");
    let r = db.recovery_report();
    assert_eq!(r.snapshot_fallback, None);
    assert!(r.snapshot_entries >= 2000, "{r:?}");
    assert_eq!(
        r.data_records, 0,
        "nothing past the snapshot to scan: {r:?}"
    );
    assert_eq!(contents(&db), want);
    // Writable, and the next open agrees.
    db.create("users", 99_999, b"{}")
        .expect("create after reopen");
    let mut want = want;
    want.get_mut("users")
        .expect("users")
        .insert(99_999, b"{}".to_vec());
    db.close().expect("close");
    let db = Database::open(dir.path(), config()).expect("reopen");
    assert_eq!(contents(&db), want);
}

fn reopen_falls_back(dir: &Path, want: &Model, what: &str, reason: &str) {
    let db = Database::open(dir, config()).unwrap_or_else(|e| panic!("{what}: open: {e}"));
    let r = db.recovery_report();
    let why = r
        .snapshot_fallback
        .clone()
        .unwrap_or_else(|| panic!("{what}: the snapshot was used: {r:?}"));
    assert!(
        why.contains(reason),
        "{what}: reason {why:?} lacks {reason:?}"
    );
    assert_eq!(r.snapshot_entries, 0, "{what}");
    assert!(
        r.data_records > 2000,
        "{what}: the whole file was scanned: {r:?}"
    );
    assert_eq!(&contents(&db), want, "{what}");
    db.close().expect("close");
}

#[test]
fn a_damaged_stale_or_foreign_snapshot_falls_back_and_loses_nothing() {
    let dir = tempfile::tempdir().expect("tempdir");
    let want = fixture(dir.path());
    let index = dir.path().join("INDEX");
    let good = fs::read(&index).expect("read INDEX");

    // A flipped byte anywhere: header, a collection, a document, the trailer.
    for at in [3, 20, 49, 60, good.len() / 2, good.len() - 2] {
        let mut b = good.clone();
        b[at] ^= 0x04;
        fs::write(&index, &b).expect("write");
        reopen_falls_back(dir.path(), &want, &format!("flip at {at}"), "INDEX");
        // The close rewrote a good one.
        assert_eq!(
            fs::read(&index).expect("read"),
            good,
            "flip at {at}: rewritten"
        );
    }
    // Truncated, and extended.
    fs::write(&index, &good[..good.len() - 100]).expect("write");
    reopen_falls_back(dir.path(), &want, "truncated", "truncated");
    let mut longer = good.clone();
    longer.extend_from_slice(&[0; 8]);
    fs::write(&index, &longer).expect("write");
    reopen_falls_back(dir.path(), &want, "extended", "truncated or extended");

    // Another generation: the snapshot from before a compaction.
    let db = Database::open(dir.path(), config()).expect("open");
    db.compact().expect("compact");
    db.close().expect("close");
    let compacted = fs::read(&index).expect("read");
    fs::write(&index, &good).expect("write");
    reopen_falls_back(dir.path(), &want, "older generation", "generation");
    assert_eq!(fs::read(&index).expect("read"), compacted);

    // Older than CHECKPOINT, same generation: a snapshot of a prefix stays true for
    // it (bytes below a checkpointed length never change), so it is used, and only
    // the data past it is scanned.
    let db = Database::open(dir.path(), config()).expect("open");
    db.create("", 500_000, b"{}").expect("create");
    db.close().expect("close");
    fs::write(&index, &compacted).expect("write");
    let db = Database::open(dir.path(), config()).expect("open");
    let r = db.recovery_report();
    assert_eq!(r.snapshot_fallback, None, "{r:?}");
    assert_eq!(
        r.data_records, 1,
        "only the record after the snapshot: {r:?}"
    );
    let mut want = want;
    want.get_mut("_default")
        .expect("_default")
        .insert(500_000, b"{}".to_vec());
    assert_eq!(contents(&db), want);
    db.close().expect("close");
}

#[test]
fn a_foreign_snapshot_of_the_same_generation_and_length_is_refused() {
    // Two databases with the same history except one document's contents: same
    // generation, same lengths, same sequence numbers.
    let a = tempfile::tempdir().expect("tempdir");
    let b = tempfile::tempdir().expect("tempdir");
    for (dir, v) in [(a.path(), 1u64), (b.path(), 2)] {
        let db = Database::open(dir, config()).expect("open");
        for id in 0..3000 {
            db.create("", id, &doc(id, if id == 2999 { v } else { 0 }))
                .expect("create");
        }
        db.close().expect("close");
    }
    fs::copy(a.path().join("INDEX"), b.path().join("INDEX")).expect("copy");
    let db = Database::open(b.path(), config()).expect("open");
    let r = db.recovery_report();
    assert!(
        r.snapshot_fallback
            .as_deref()
            .is_some_and(|w| w.contains("other bytes")),
        "{r:?}"
    );
    assert_eq!(db.read("", 2999).expect("read"), doc(2999, 2));
}

/// A tiny deterministic generator (xorshift).
struct Rng(u64);
impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
}

fn copy_dir(from: &Path, to: &Path) {
    fs::create_dir_all(to).expect("mkdir");
    for e in fs::read_dir(from).expect("read_dir") {
        let e = e.expect("entry");
        let p = e.path();
        if e.file_type().expect("type").is_dir() {
            copy_dir(&p, &to.join(e.file_name()));
        } else if e.file_name() != "LOCK" {
            fs::copy(&p, to.join(e.file_name())).expect("copy");
        }
    }
}

#[test]
fn random_histories_open_the_same_with_and_without_the_snapshot() {
    let seeds: u64 = if std::env::var("DOCDB_LONG_TESTS").is_ok() {
        40
    } else {
        6
    };
    for seed in 1..=seeds {
        let dir = tempfile::tempdir().expect("tempdir");
        let mut rng = Rng(seed.wrapping_mul(0x9e37_79b9_7f4a_7c15));
        let mut model = Model::new();
        model.insert("_default".into(), BTreeMap::new());
        let colls = ["_default", "a", "b"];
        // No fsync per write: this test is about contents, not durability.
        let mut cfg = config();
        cfg.wal.fsync.mode = docdb_core::FsyncMode::None;
        for round in 0..4 {
            let db = Database::open(dir.path(), cfg.clone()).expect("open");
            assert_eq!(contents(&db), model, "seed {seed} round {round}: reopen");
            for _ in 0..600 {
                let c = colls[rng.below(3) as usize];
                if !model.contains_key(c) {
                    if rng.below(4) == 0 {
                        db.create_collection(c).expect("create collection");
                        model.insert(c.into(), BTreeMap::new());
                    }
                    continue;
                }
                let id = rng.below(300);
                let exists = model[c].contains_key(&id);
                match rng.below(20) {
                    0 if c != "_default" && model[c].is_empty() => {
                        db.delete_collection(c).expect("delete collection");
                        model.remove(c);
                    }
                    1 => db.checkpoint().expect("checkpoint"),
                    2 if rng.below(4) == 0 => {
                        db.compact().expect("compact");
                    }
                    3..=6 if exists => {
                        db.delete(c, id).expect("delete");
                        model.get_mut(c).expect("coll").remove(&id);
                    }
                    _ => {
                        let body = doc(id, rng.next() % 1000);
                        if exists {
                            db.update(c, id, &body).expect("update");
                        } else {
                            db.create(c, id, &body).expect("create");
                        }
                        model.get_mut(c).expect("coll").insert(id, body);
                    }
                }
            }
            // Closed cleanly, or dropped as if the process died.
            if rng.below(2) == 0 {
                db.close().expect("close");
            } else {
                drop(db);
            }
            // The same files without INDEX open to the same contents.
            let bare = tempfile::tempdir().expect("tempdir");
            copy_dir(dir.path(), bare.path());
            let _ = fs::remove_file(bare.path().join("INDEX"));
            let db = Database::open(bare.path(), cfg.clone()).expect("open without INDEX");
            assert_eq!(contents(&db), model, "seed {seed} round {round}: no INDEX");
        }
    }
}
