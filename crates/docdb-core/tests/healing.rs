//! Healing as SPEC §5 says: HealAll repairs many corrupt documents a batch at a time
//! (one commit, one WAL fsync per `healing.max_batch_size` documents, in every fsync
//! mode), and HealStats counts each corrupt document once however often it is found.
//!
//! Each test writes documents, closes the database, flips one byte in the payload of
//! chosen documents' data-file records, and reopens it.

use std::fs;
use std::path::{Path, PathBuf};

use docdb_core::data::record::{decode_header, Kind};
use docdb_core::{Config, Database, Error, FsyncMode};

const DATA_HEADER: usize = 24;

fn doc(id: u64) -> Vec<u8> {
    format!(
        r#"{{"id":{id},"pad":"{}"}}"#,
        "h".repeat(100 + (id as usize % 50))
    )
    .into_bytes()
}

fn data_file(dir: &Path) -> PathBuf {
    let mut files: Vec<PathBuf> = fs::read_dir(dir.join("data"))
        .expect("data dir")
        .map(|e| e.expect("dir entry").path())
        .filter(|p| p.extension().is_some_and(|x| x == "data"))
        .collect();
    files.sort();
    files.pop().expect("a data file")
}

/// Flips a byte in the payload of the newest Put record of each of `ids` in `_default`.
fn corrupt_payloads(dir: &Path, ids: &[u64]) {
    let path = data_file(dir);
    let mut buf = fs::read(&path).expect("read data file");
    let mut newest = std::collections::HashMap::new();
    let mut pos = DATA_HEADER;
    while pos < buf.len() {
        let h = decode_header(&buf[pos..]).expect("an undamaged data file parses");
        if h.kind == Kind::Put && h.collection == "_default" {
            newest.insert(h.doc_id, pos + h.header_len() + h.payload_len as usize / 2);
        }
        pos += h.total_len();
    }
    for id in ids {
        let at = newest[id];
        buf[at] ^= 0x20;
    }
    fs::write(&path, buf).expect("write damaged data file");
}

fn config(mode: FsyncMode, batch: usize, heal_on_read: bool) -> Config {
    let mut c = Config::default();
    c.wal.fsync.mode = mode;
    c.healing.max_batch_size = batch;
    c.healing.on_read_corruption = heal_on_read;
    c
}

/// Writes documents 1..=n in one transaction-sized batch and closes the database.
fn write_docs(dir: &Path, n: u64) {
    let db = Database::open(dir, Config::default()).expect("open a new database");
    let mut b = db.batch();
    for id in 1..=n {
        b.create("_default", id, &doc(id)).expect("create");
    }
    b.finish().expect("batch durable");
    db.close().expect("close");
}

/// HealAll of N corrupt documents with `fsync = always` costs ⌈N / max_batch_size⌉ WAL
/// fsyncs (a syncer round each), not one per document; every document reads back
/// whole, and the statistics count each once.
#[test]
fn heal_all_commits_a_batch_of_repairs_with_one_fsync() {
    let d = tempfile::tempdir().expect("tempdir");
    let n = 250u64;
    let batch = 100usize;
    write_docs(d.path(), n + 50);
    let damaged: Vec<u64> = (1..=n).collect();
    corrupt_payloads(d.path(), &damaged);

    let db = Database::open(d.path(), config(FsyncMode::Always, batch, false)).expect("reopen");
    assert!(matches!(db.read("_default", 7), Err(Error::Corrupt { .. })));
    let before = db.stats().group_commit.total_batches;
    let report = db.heal_all().expect("heal all");
    let rounds = db.stats().group_commit.total_batches - before;
    assert_eq!(report.scanned, n + 50);
    assert_eq!(report.healed.len() as u64, n, "{report:?}");
    assert!(report.unrecoverable.is_empty(), "{report:?}");
    let bound = n.div_ceil(batch as u64) + 1;
    eprintln!("healed {n} documents with {rounds} WAL fsync rounds (bound {bound})");
    assert!(
        rounds <= bound,
        "{rounds} fsync rounds for {n} repairs (batch {batch}); at most {bound} expected"
    );
    for id in 1..=n + 50 {
        assert_eq!(
            db.read("_default", id).expect("read healed"),
            doc(id),
            "doc {id}"
        );
    }
    let st = db.heal_stats();
    assert_eq!(st.documents_corrupted, n, "{st:?}");
    assert_eq!(st.documents_healed, n, "{st:?}");
    assert_eq!(st.on_demand_healings, n, "{st:?}");
    assert_eq!(db.heal_all().expect("second heal all").healed.len(), 0);
    db.close().expect("close");

    // The repairs are durable: a reopen reads every document without healing.
    let db = Database::open(d.path(), config(FsyncMode::Always, batch, false)).expect("reopen");
    for id in 1..=n + 50 {
        assert_eq!(db.read("_default", id).expect("read after reopen"), doc(id));
    }
    assert!(db.verify().expect("verify").corrupt_documents.is_empty());
}

/// A corrupt document found by several reads and then by two scans counts once as
/// corrupt and once as healed; so does one found by many concurrent healing reads.
#[test]
fn heal_stats_count_distinct_documents() {
    let d = tempfile::tempdir().expect("tempdir");
    write_docs(d.path(), 20);
    corrupt_payloads(d.path(), &[3, 11]);

    // Healing on read off: each read of 3 finds it corrupt and fails.
    let db = Database::open(d.path(), config(FsyncMode::Group, 100, false)).expect("reopen");
    for _ in 0..3 {
        assert!(matches!(db.read("_default", 3), Err(Error::Corrupt { .. })));
    }
    let st = db.heal_stats();
    assert_eq!(
        st.documents_corrupted, 0,
        "reads that do not heal do not count: {st:?}"
    );
    let report = db.heal_all().expect("heal all");
    assert_eq!(report.healed.len(), 2, "{report:?}");
    assert_eq!(db.heal_all().expect("heal all again").healed.len(), 0);
    let st = db.heal_stats();
    assert_eq!(st.documents_corrupted, 2, "{st:?}");
    assert_eq!(st.documents_healed, 2, "{st:?}");
    assert_eq!(st.total_scans, 2, "{st:?}");
    db.close().expect("close");

    // Healing on read on: eight threads read the same corrupt document at once.
    corrupt_payloads(d.path(), &[5]);
    let db = Database::open(d.path(), config(FsyncMode::Group, 100, true)).expect("reopen");
    let start = std::sync::Barrier::new(8);
    std::thread::scope(|s| {
        for _ in 0..8 {
            s.spawn(|| {
                start.wait();
                for _ in 0..4 {
                    assert_eq!(db.read("_default", 5).expect("healing read"), doc(5));
                }
            });
        }
    });
    assert_eq!(db.heal_all().expect("heal all").healed.len(), 0);
    let st = db.heal_stats();
    assert_eq!(st.documents_corrupted, 1, "{st:?}");
    assert_eq!(st.documents_healed, 1, "{st:?}");
    assert_eq!(st.on_demand_healings, 1, "{st:?}");
}

/// A corrupt document with no intact copy left counts once, however often it is
/// read or scanned, and stays reported as unrecoverable.
#[test]
fn an_unrecoverable_document_counts_once() {
    let d = tempfile::tempdir().expect("tempdir");
    write_docs(d.path(), 10);
    // Remove every WAL copy: the checkpoint at close covers all of it.
    for e in fs::read_dir(d.path().join("wal")).expect("wal dir") {
        fs::remove_file(e.expect("entry").path()).expect("remove segment");
    }
    corrupt_payloads(d.path(), &[4]);
    let db = Database::open(d.path(), config(FsyncMode::Group, 100, true)).expect("reopen");
    for _ in 0..3 {
        assert!(matches!(db.read("_default", 4), Err(Error::Corrupt { .. })));
    }
    for _ in 0..2 {
        let r = db.heal_all().expect("heal all");
        assert_eq!(r.unrecoverable, vec![("_default".to_owned(), 4)]);
    }
    let st = db.heal_stats();
    assert_eq!(st.documents_corrupted, 1, "{st:?}");
    assert_eq!(st.documents_healed, 0, "{st:?}");
    assert_eq!(st.unrecoverable, vec![("_default".to_owned(), 4)]);
}
