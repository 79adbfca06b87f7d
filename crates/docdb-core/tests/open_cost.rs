//! What an open after a clean stop costs in I/O (docs/PERFORMANCE.md "Open after a
//! clean stop"): it reads `INDEX` and only the WAL past the checkpoint (not the whole
//! segment the checkpoint points into), and it writes and syncs nothing, because
//! nothing past the checkpoint was replayed or left behind. An open that did replay
//! still makes the data file durable.

use std::ffi::OsString;
use std::io;
use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use docdb_core::storage::{default_storage, LockGuard, OpenMode, Storage, StorageFile};
use docdb_core::{Config, Database, OpenOptions};

/// What a [`Counting`] storage saw.
#[derive(Debug, Default)]
struct Seen {
    wal_bytes_read: AtomicU64,
    writes: AtomicU64,
    /// `sync_data`, `sync_all` and `sync_dir`.
    syncs: AtomicU64,
    data_syncs: AtomicU64,
}

/// The real file system, counting reads of WAL segments, writes and syncs.
#[derive(Debug)]
struct Counting {
    inner: Arc<dyn Storage>,
    seen: Arc<Seen>,
}

#[derive(Debug)]
struct CountingFile {
    inner: Arc<dyn StorageFile>,
    seen: Arc<Seen>,
    wal: bool,
    data: bool,
}

fn ends_with(path: &Path, ext: &str) -> bool {
    path.extension().is_some_and(|e| e == ext)
}

impl Storage for Counting {
    fn open(&self, path: &Path, mode: OpenMode) -> io::Result<Arc<dyn StorageFile>> {
        Ok(Arc::new(CountingFile {
            inner: self.inner.open(path, mode)?,
            seen: self.seen.clone(),
            wal: ends_with(path, "wal"),
            data: ends_with(path, "data"),
        }))
    }
    fn list(&self, dir: &Path) -> io::Result<Vec<OsString>> {
        self.inner.list(dir)
    }
    fn file_len(&self, path: &Path) -> io::Result<u64> {
        self.inner.file_len(path)
    }
    fn remove_file(&self, path: &Path) -> io::Result<()> {
        self.seen.writes.fetch_add(1, Ordering::SeqCst);
        self.inner.remove_file(path)
    }
    fn remove_dir(&self, dir: &Path) -> io::Result<()> {
        self.seen.writes.fetch_add(1, Ordering::SeqCst);
        self.inner.remove_dir(dir)
    }
    fn rename(&self, from: &Path, to: &Path) -> io::Result<()> {
        self.seen.writes.fetch_add(1, Ordering::SeqCst);
        self.inner.rename(from, to)
    }
    fn create_dir(&self, dir: &Path) -> io::Result<bool> {
        self.inner.create_dir(dir)
    }
    fn sync_dir(&self, dir: &Path) -> io::Result<()> {
        self.seen.syncs.fetch_add(1, Ordering::SeqCst);
        self.inner.sync_dir(dir)
    }
    fn lock(&self, path: &Path) -> io::Result<LockGuard> {
        self.inner.lock(path)
    }
}

impl CountingFile {
    fn synced(&self) {
        self.seen.syncs.fetch_add(1, Ordering::SeqCst);
        if self.data {
            self.seen.data_syncs.fetch_add(1, Ordering::SeqCst);
        }
    }
}

impl StorageFile for CountingFile {
    fn read_at(&self, buf: &mut [u8], offset: u64) -> io::Result<usize> {
        let n = self.inner.read_at(buf, offset)?;
        if self.wal {
            self.seen
                .wal_bytes_read
                .fetch_add(n as u64, Ordering::SeqCst);
        }
        Ok(n)
    }
    fn write_at(&self, buf: &[u8], offset: u64) -> io::Result<usize> {
        self.seen.writes.fetch_add(1, Ordering::SeqCst);
        self.inner.write_at(buf, offset)
    }
    fn len(&self) -> io::Result<u64> {
        self.inner.len()
    }
    fn set_len(&self, len: u64) -> io::Result<()> {
        self.inner.set_len(len)
    }
    fn sync_data(&self) -> io::Result<()> {
        self.synced();
        self.inner.sync_data()
    }
    fn sync_all(&self) -> io::Result<()> {
        self.synced();
        self.inner.sync_all()
    }
}

fn open_counting(dir: &Path) -> (Database, Arc<Seen>) {
    let seen = Arc::new(Seen::default());
    let storage = Counting {
        inner: default_storage(),
        seen: seen.clone(),
    };
    let opts = OpenOptions {
        storage: Some(Arc::new(storage)),
        ..Default::default()
    };
    let db = Database::open_with(dir, Config::default(), opts).expect("open");
    (db, seen)
}

fn doc(id: u64, v: u64) -> Vec<u8> {
    format!(r#"{{"id":{id},"v":{v},"pad":"{}"}}"#, "x".repeat(1000)).into_bytes()
}

/// 3,000 documents of ~1 KB (a 3 MB WAL segment), closed cleanly.
fn fixture(dir: &Path) {
    let db = Database::open(dir, Config::default()).expect("open");
    for chunk in (0..3000u64).collect::<Vec<_>>().chunks(500) {
        let mut tx = db.begin();
        for &id in chunk {
            tx.create("", id, &doc(id, 0)).expect("create");
        }
        tx.commit().expect("commit");
    }
    db.close().expect("close");
}

#[test]
fn a_clean_reopen_reads_only_the_wal_tail_and_writes_and_syncs_nothing() {
    let dir = tempfile::tempdir().expect("tempdir");
    fixture(dir.path());
    let wal_len: u64 = std::fs::read_dir(dir.path().join("wal"))
        .expect("wal dir")
        .map(|e| e.expect("entry").metadata().expect("metadata").len())
        .sum();
    assert!(wal_len > 2 << 20, "the fixture's WAL is {wal_len} bytes");

    let (db, seen) = open_counting(dir.path());
    assert_eq!(db.read("", 1234).expect("read"), doc(1234, 0));
    let report = db.recovery_report();
    assert_eq!(
        (report.replayed_records, report.data_records),
        (0, 0),
        "a clean stop leaves nothing to replay or scan"
    );
    let wal_read = seen.wal_bytes_read.load(Ordering::SeqCst);
    assert!(
        wal_read < 4096,
        "open read {wal_read} bytes of a {wal_len}-byte WAL whose records the checkpoint covers"
    );
    let (writes, syncs) = (
        seen.writes.load(Ordering::SeqCst),
        seen.syncs.load(Ordering::SeqCst),
    );
    assert_eq!(
        (writes, syncs),
        (0, 0),
        "a clean reopen wrote {writes} times and synced {syncs} times"
    );
    db.close().expect("close");
}

#[test]
fn a_reopen_that_replays_still_syncs_the_data_file() {
    let dir = tempfile::tempdir().expect("tempdir");
    fixture(dir.path());
    {
        let db = Database::open(dir.path(), Config::default()).expect("open");
        db.update("", 7, &doc(7, 1)).expect("update");
        // Dropped without close: the update is only in the WAL.
        drop(db);
    }
    let (db, seen) = open_counting(dir.path());
    assert_eq!(db.recovery_report().replayed_records, 1);
    assert!(
        seen.data_syncs.load(Ordering::SeqCst) >= 1,
        "replayed records reached the data file without an fsync"
    );
    assert_eq!(db.read("", 7).expect("read"), doc(7, 1));
    db.close().expect("close");
}
