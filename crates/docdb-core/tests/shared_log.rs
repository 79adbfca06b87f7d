//! The shared commit log (issue 17): one fsync covers many databases' commits, a power
//! cut after acknowledged writes loses none of them once the log is drained, a database
//! recreated under a dropped one's name never receives the old one's bytes, and a
//! failed shared fsync answers `write outcome unknown` and turns the log off while the
//! other databases go on writing durably through their own WALs.

#![allow(clippy::unwrap_used)]

use std::collections::BTreeMap;
use std::ffi::OsString;
use std::io;
use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Barrier};
use std::time::Duration;

use docdb_core::shared_log::{drain, DbDirs, SharedLog};
use docdb_core::storage::testing::{
    Fault, FaultKind, FaultStorage, FileKind, OpClass, PowerLossStorage,
};
use docdb_core::storage::{LockGuard, OpenMode, Storage, StorageFile};
use docdb_core::{Config, Database, Error, OpenOptions};

const LOG_MB: u64 = 4;

fn open(dir: &Path, storage: Arc<dyn Storage>, log: Option<&SharedLog>) -> Database {
    let opts = OpenOptions {
        storage: Some(storage),
        shared_log: log.cloned(),
        ..Default::default()
    };
    Database::open_with(dir, Config::default(), opts).unwrap()
}

fn dirs(root: &Path, n: usize) -> Vec<DbDirs> {
    (0..n)
        .map(|i| {
            let dir = root.join(format!("db{i}"));
            DbDirs {
                wal_dir: dir.join("wal"),
                dir,
            }
        })
        .collect()
}

/// A shared log in `root/slog` and the `n` databases of [`dirs`] committing through it.
fn logged(root: &Path, storage: &Arc<dyn Storage>, n: usize) -> (SharedLog, Vec<Arc<Database>>) {
    let log = SharedLog::open(storage.clone(), &root.join("slog"), LOG_MB << 20).unwrap();
    let dbs = dirs(root, n)
        .iter()
        .map(|x| Arc::new(open(&x.dir, storage.clone(), Some(&log))))
        .collect();
    (log, dbs)
}

fn doc(id: u64, v: u64) -> Vec<u8> {
    format!(r#"{{"id":{id},"v":{v},"pad":"{}"}}"#, "p".repeat(200)).into_bytes()
}

// --- a disk whose fsyncs take time, counting the WAL ones ----------------------------

/// Real files; every sync sleeps 2 ms (as a disk's would), so commits of other
/// databases arrive while one is in flight, and a database's own WAL segment (outside
/// the shared log's `slog` directory: what a trim fsyncs) `db_wal_sync` more, a
/// shared-log segment `log_sync` more. Counts syncs of `*.wal` files (database WAL
/// segments and shared-log segments alike).
#[derive(Debug)]
struct SlowSync {
    inner: Arc<dyn Storage>,
    wal_syncs: Arc<AtomicU64>,
    db_wal_sync: Duration,
    log_sync: Duration,
}

impl SlowSync {
    fn new(wal_syncs: Arc<AtomicU64>, db_wal_sync: Duration) -> SlowSync {
        SlowSync {
            inner: docdb_core::storage::default_storage(),
            wal_syncs,
            db_wal_sync,
            log_sync: Duration::ZERO,
        }
    }

    /// A disk whose shared-log fsyncs take `log_sync` more.
    fn slow_log(log_sync: Duration) -> Arc<dyn Storage> {
        Arc::new(SlowSync {
            log_sync,
            ..SlowSync::new(Arc::new(AtomicU64::new(0)), Duration::ZERO)
        })
    }
}

#[derive(Debug)]
struct SlowFile {
    inner: Arc<dyn StorageFile>,
    wal: bool,
    wal_syncs: Arc<AtomicU64>,
    extra: Duration,
}

impl SlowFile {
    fn sync(&self) {
        if self.wal {
            self.wal_syncs.fetch_add(1, Ordering::SeqCst);
        }
        std::thread::sleep(Duration::from_millis(2) + self.extra);
    }
}

impl StorageFile for SlowFile {
    fn read_at(&self, buf: &mut [u8], offset: u64) -> io::Result<usize> {
        self.inner.read_at(buf, offset)
    }
    fn write_at(&self, buf: &[u8], offset: u64) -> io::Result<usize> {
        self.inner.write_at(buf, offset)
    }
    fn len(&self) -> io::Result<u64> {
        self.inner.len()
    }
    fn set_len(&self, len: u64) -> io::Result<()> {
        self.inner.set_len(len)
    }
    fn sync_data(&self) -> io::Result<()> {
        self.sync();
        self.inner.sync_data()
    }
    fn sync_all(&self) -> io::Result<()> {
        self.sync();
        self.inner.sync_all()
    }
}

impl Storage for SlowSync {
    fn open(&self, path: &Path, mode: OpenMode) -> io::Result<Arc<dyn StorageFile>> {
        let wal = path.extension().is_some_and(|e| e == "wal");
        let db_wal = wal && !path.components().any(|c| c.as_os_str() == "slog");
        Ok(Arc::new(SlowFile {
            inner: self.inner.open(path, mode)?,
            wal,
            wal_syncs: self.wal_syncs.clone(),
            extra: match (wal, db_wal) {
                (_, true) => self.db_wal_sync,
                (true, false) => self.log_sync,
                _ => Duration::ZERO,
            },
        }))
    }
    fn list(&self, dir: &Path) -> io::Result<Vec<OsString>> {
        self.inner.list(dir)
    }
    fn file_len(&self, path: &Path) -> io::Result<u64> {
        self.inner.file_len(path)
    }
    fn remove_file(&self, path: &Path) -> io::Result<()> {
        self.inner.remove_file(path)
    }
    fn remove_dir(&self, dir: &Path) -> io::Result<()> {
        self.inner.remove_dir(dir)
    }
    fn rename(&self, from: &Path, to: &Path) -> io::Result<()> {
        self.inner.rename(from, to)
    }
    fn create_dir(&self, dir: &Path) -> io::Result<bool> {
        self.inner.create_dir(dir)
    }
    fn sync_dir(&self, dir: &Path) -> io::Result<()> {
        self.inner.sync_dir(dir)
    }
    fn lock(&self, path: &Path) -> io::Result<LockGuard> {
        self.inner.lock(path)
    }
}

/// N databases, one writer each (one commit in flight per database), `rounds` writes
/// each; returns the WAL + shared-log fsyncs the writes made.
fn fsyncs_for_one_writer_per_db(shared: bool, n: usize, rounds: u64) -> u64 {
    let d = tempfile::tempdir().unwrap();
    let wal_syncs = Arc::new(AtomicU64::new(0));
    let storage: Arc<dyn Storage> = Arc::new(SlowSync::new(wal_syncs.clone(), Duration::ZERO));
    let log =
        shared.then(|| SharedLog::open(storage.clone(), &d.path().join("slog"), 64 << 20).unwrap());
    let dbs: Vec<Arc<Database>> = dirs(d.path(), n)
        .iter()
        .map(|x| Arc::new(open(&x.dir, storage.clone(), log.as_ref())))
        .collect();
    let before = wal_syncs.load(Ordering::SeqCst);
    let barrier = Arc::new(Barrier::new(n));
    let threads: Vec<_> = dbs
        .iter()
        .cloned()
        .map(|db| {
            let b = barrier.clone();
            std::thread::spawn(move || {
                b.wait();
                for i in 0..rounds {
                    db.create("_default", i, &doc(i, 0)).unwrap();
                }
            })
        })
        .collect();
    for t in threads {
        t.join().unwrap();
    }
    let syncs = wal_syncs.load(Ordering::SeqCst) - before;
    if let Some(log) = &log {
        assert_eq!(log.stats().records, n as u64 * rounds);
    }
    syncs
}

#[test]
fn one_fsync_covers_the_commits_of_many_databases() {
    let (n, rounds) = (16, 20);
    let writes = n as u64 * rounds;
    let own = fsyncs_for_one_writer_per_db(false, n, rounds);
    let shared = fsyncs_for_one_writer_per_db(true, n, rounds);
    eprintln!("{writes} writes: {own} fsyncs without the shared log, {shared} with it");
    // Without it every write costs its database's own fsync.
    assert!(own >= writes, "own WAL fsyncs: {own} for {writes} writes");
    assert!(
        shared * 4 <= writes,
        "the shared log made {shared} fsyncs for {writes} writes of {n} databases"
    );
}

/// A database's flush does not wait for another database's round: with a shared-log
/// fsync of 300 ms in progress (led by database 0's writer), database 1's
/// `when_flushed` returns at once, and its callback runs later — after its own round,
/// on the thread that led the round in progress (it leads the next while records are
/// queued) — with the write durable and visible.
#[test]
fn a_flush_does_not_wait_for_the_shared_round_in_progress() {
    let d = tempfile::tempdir().unwrap();
    let storage = SlowSync::slow_log(Duration::from_millis(300));
    let (log, dbs) = logged(d.path(), &storage, 2);
    let db0 = dbs[0].clone();
    let leader = std::thread::spawn(move || {
        db0.create("_default", 1, &doc(1, 0)).unwrap();
        std::thread::current().id()
    });
    // Database 0's round is in its fsync.
    std::thread::sleep(Duration::from_millis(100));
    let mut b = dbs[1].batch();
    b.create("_default", 2, &doc(2, 0)).unwrap();
    let (tx, rx) = std::sync::mpsc::channel();
    let started = std::time::Instant::now();
    dbs[1].when_flushed(b.detach().unwrap(), move |r| {
        tx.send((r, std::thread::current().id(), started.elapsed()))
            .unwrap();
    });
    let returned = started.elapsed();
    let (r, on, acked) = rx.recv_timeout(Duration::from_secs(10)).unwrap();
    r.unwrap();
    let leader = leader.join().unwrap();
    assert!(
        returned < Duration::from_millis(150),
        "when_flushed blocked {returned:?} behind another database's round"
    );
    assert!(
        acked >= Duration::from_millis(300),
        "acknowledged after {acked:?}: before its own round's fsync"
    );
    assert_eq!(on, leader, "the round's leader runs the completions");
    assert_eq!(dbs[1].read("_default", 2).unwrap(), doc(2, 0));
    assert_eq!(log.stats().records, 2);
    assert_eq!(log.stats().fsyncs, 2);
}

/// A closed database can be opened again at once, even while the thread that led the
/// shared-log round of its last write is still finishing that write's completion (a
/// slow callback here): the handle's `LOCK` goes with a clean close, not with the
/// last reference to the database's state.
#[test]
fn a_closed_database_reopens_while_its_last_completion_finishes() {
    let d = tempfile::tempdir().unwrap();
    let storage = SlowSync::slow_log(Duration::from_millis(100));
    let log = SharedLog::open(storage.clone(), &d.path().join("slog"), LOG_MB << 20).unwrap();
    let x = dirs(d.path(), 2);
    let db0 = Arc::new(open(&x[0].dir, storage.clone(), Some(&log)));
    let db1 = open(&x[1].dir, storage.clone(), Some(&log));
    // Database 0's writer leads a round; database 1's write joins the next one, whose
    // completion (on database 0's writer's thread) runs a callback that takes 400 ms.
    let leader = std::thread::spawn(move || db0.create("_default", 1, &doc(1, 0)).unwrap());
    std::thread::sleep(Duration::from_millis(30));
    let mut b = db1.batch();
    b.create("_default", 2, &doc(2, 0)).unwrap();
    let (tx, rx) = std::sync::mpsc::channel();
    db1.when_flushed(b.detach().unwrap(), move |r| {
        r.unwrap();
        std::thread::sleep(Duration::from_millis(400));
        tx.send(()).unwrap();
    });
    db1.close().unwrap();
    let reopened = open(&x[1].dir, storage.clone(), Some(&log));
    assert!(
        rx.try_recv().is_err(),
        "the callback had ended: nothing was tested"
    );
    assert_eq!(reopened.read("_default", 2).unwrap(), doc(2, 0));
    rx.recv().unwrap();
    leader.join().unwrap();
}

// --- power cuts ----------------------------------------------------------------------

type Acked = BTreeMap<(usize, u64), u64>;

/// Writes `per_db` updates of ids `0..ids` to every database concurrently; returns the
/// acknowledged (db, id) -> version.
fn write_round(dbs: &[Arc<Database>], base: u64, per_db: u64, ids: u64) -> Acked {
    let threads: Vec<_> = dbs
        .iter()
        .cloned()
        .enumerate()
        .map(|(k, db)| {
            std::thread::spawn(move || {
                let mut acked = Acked::new();
                for i in 0..per_db {
                    let id = i % ids;
                    let v = base + i;
                    let r = if base == 0 && i < ids {
                        db.create("_default", id, &doc(id, v))
                    } else {
                        db.update("_default", id, &doc(id, v))
                    };
                    r.unwrap();
                    acked.insert((k, id), v);
                }
                acked
            })
        })
        .collect();
    let mut all = Acked::new();
    for t in threads {
        all.extend(t.join().unwrap());
    }
    all
}

/// Cuts the power (`seed`; `None`: keep nothing unsynced), drains, reopens and checks
/// every acknowledged write and a clean verify.
fn cut_drain_check(
    root: &Path,
    disk: &Arc<PowerLossStorage>,
    dbs: Vec<Arc<Database>>,
    log: SharedLog,
    acked: &Acked,
    seed: Option<u64>,
) {
    match seed {
        Some(s) => disk.cut(s).unwrap(),
        None => disk.cut_keep_nothing_unsynced().unwrap(),
    };
    drop(dbs);
    drop(log);
    let next: Arc<dyn Storage> = disk.restart();
    let all = dirs(root, 3);
    let report = drain(&*next, &root.join("slog"), &all).unwrap();
    assert!(report.cut.is_empty() || seed.is_some(), "{report:?}");
    for (k, x) in all.iter().enumerate() {
        let db = open(&x.dir, next.clone(), None);
        for ((kk, id), v) in acked.range((k, 0)..(k + 1, 0)) {
            assert_eq!(*kk, k);
            let got = db.read("_default", *id).unwrap_or_else(|e| {
                panic!("seed {seed:?}: db{k} doc {id} (acked v{v}) lost: {e}; drain {report:?}")
            });
            assert_eq!(got, doc(*id, *v), "seed {seed:?}: db{k} doc {id}");
        }
        let rep = db.verify().unwrap();
        assert!(rep.is_ok(), "seed {seed:?}: db{k}: {rep:?}");
    }
}

fn power_cut_case(seed: Option<u64>) {
    let d = tempfile::tempdir().unwrap();
    let root = d.path();
    let disk = PowerLossStorage::new();
    let storage: Arc<dyn Storage> = disk.clone();
    let (log, dbs) = logged(root, &storage, 3);
    let mut acked = write_round(&dbs, 0, 40, 10);
    // A checkpoint of one database and a trim round, then more acknowledged writes
    // that only the shared log made durable.
    dbs[0].checkpoint().unwrap();
    acked.extend(write_round(&dbs, 100, 30, 10));
    log.trim_now().unwrap();
    assert!(log.stats().trimmed_segments >= 1);
    acked.extend(write_round(&dbs, 200, 30, 10));
    dbs[1].checkpoint().unwrap();
    acked.extend(write_round(&dbs, 300, 20, 10));
    cut_drain_check(root, &disk, dbs, log, &acked, seed);
}

#[test]
fn a_power_cut_keeps_every_acknowledged_write_once_drained() {
    power_cut_case(None);
    for seed in 1..=4 {
        power_cut_case(Some(seed));
    }
}

/// Checkpoints run while batches are in the shared log's rounds, then the power is
/// cut: every acknowledged write is back after the drain. (A checkpoint must not cover
/// a batch written to its WAL but not yet durable — it would store the WAL position
/// past the batch without its data, and replay would skip it. `Files::io` waits for
/// the batch's completion; its unit test shows the wait, as this race is rarely hit.)
#[test]
fn checkpoints_racing_logged_writes_keep_every_acknowledged_write() {
    for seed in [None, Some(11), Some(12), Some(13)] {
        let d = tempfile::tempdir().unwrap();
        let root = d.path();
        let disk = PowerLossStorage::new();
        let storage: Arc<dyn Storage> = disk.clone();
        let (log, dbs) = logged(root, &storage, 3);
        let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
        let checkpointers: Vec<_> = dbs
            .iter()
            .cloned()
            .map(|db| {
                let stop = stop.clone();
                std::thread::spawn(move || {
                    let mut n = 0u64;
                    while !stop.load(Ordering::SeqCst) {
                        db.checkpoint().unwrap();
                        n += 1;
                    }
                    n
                })
            })
            .collect();
        let mut acked = write_round(&dbs, 0, 60, 10);
        acked.extend(write_round(&dbs, 100, 60, 10));
        stop.store(true, Ordering::SeqCst);
        let checkpoints: u64 = checkpointers.into_iter().map(|t| t.join().unwrap()).sum();
        assert!(checkpoints >= 3, "{checkpoints} checkpoints");
        assert!(log.stats().records > 0);
        cut_drain_check(root, &disk, dbs, log, &acked, seed);
    }
}

#[test]
fn a_power_cut_right_after_a_trim_round_keeps_every_acknowledged_write() {
    for seed in [None, Some(7), Some(8)] {
        let d = tempfile::tempdir().unwrap();
        let root = d.path();
        let disk = PowerLossStorage::new();
        let storage: Arc<dyn Storage> = disk.clone();
        let (log, dbs) = logged(root, &storage, 3);
        let acked = write_round(&dbs, 0, 40, 10);
        log.trim_now().unwrap();
        cut_drain_check(root, &disk, dbs, log, &acked, seed);
    }
}

// --- drop and recreate ---------------------------------------------------------------

#[test]
fn a_recreated_database_never_receives_the_dropped_ones_records() {
    let d = tempfile::tempdir().unwrap();
    let root = d.path();
    let storage = docdb_core::storage::default_storage();
    let slog = root.join("slog");
    let log = SharedLog::open(storage.clone(), &slog, LOG_MB << 20).unwrap();
    let x = &dirs(root, 1)[0];
    // The old database: ten documents, left with its records in the shared log.
    let old = open(&x.dir, storage.clone(), Some(&log));
    for id in 100..110 {
        old.create("_default", id, &doc(id, 1)).unwrap();
    }
    drop(old);
    docdb_core::remove_database(&*storage, &x.dir, None).unwrap();
    // The new one, same name and path: two documents of the same sizes, so the old
    // records would line up right behind its own.
    let new = open(&x.dir, storage.clone(), Some(&log));
    for id in 100..102 {
        new.create("_default", id, &doc(id, 2)).unwrap();
    }
    drop(new);
    drop(log);
    let report = drain(&*storage, &slog, std::slice::from_ref(x)).unwrap();
    assert_eq!(report.unknown_db, 10, "{report:?}");
    let db = open(&x.dir, storage, None);
    for id in 100..102 {
        assert_eq!(db.read("_default", id).unwrap(), doc(id, 2));
    }
    for id in 102..110 {
        assert!(
            matches!(db.read("_default", id), Err(Error::NotFound)),
            "doc {id} of the dropped database came back"
        );
    }
    assert!(db.verify().unwrap().is_ok());
}

// --- I/O failure ---------------------------------------------------------------------

#[test]
fn a_failed_shared_fsync_is_outcome_unknown_and_the_others_fall_back() {
    let d = tempfile::tempdir().unwrap();
    let root = d.path();
    let faults = FaultStorage::std();
    let storage = faults.handle();
    let slog = root.join("slog");
    let log = SharedLog::open(storage.clone(), &slog, LOG_MB << 20).unwrap();
    let all = dirs(root, 2);
    let a = open(&all[0].dir, storage.clone(), Some(&log));
    let b = open(&all[1].dir, storage.clone(), Some(&log));
    a.create("_default", 1, &doc(1, 1)).unwrap();
    b.create("_default", 1, &doc(1, 1)).unwrap();
    // With the log on, the databases' own WALs are not fsynced by commits: the next
    // WAL-file fsync is the shared log's.
    faults.arm(Fault::first(OpClass::Sync, 1, FaultKind::Eio).on(FileKind::Wal));
    let r = a.create("_default", 2, &doc(2, 1));
    assert!(matches!(r, Err(Error::OutcomeUnknown { .. })), "{r:?}");
    assert!(a.is_read_only());
    assert!(!log.stats().enabled);
    // The other database falls back to its own WAL fsync, one per write.
    let syncs = faults.count_on(OpClass::Sync, FileKind::Wal);
    for id in 2..6 {
        b.create("_default", id, &doc(id, 1)).unwrap();
    }
    assert!(faults.count_on(OpClass::Sync, FileKind::Wal) >= syncs + 4);
    let before = log.stats().records;
    b.create("_default", 6, &doc(6, 1)).unwrap();
    assert_eq!(log.stats().records, before);
    drop(a);
    b.close().unwrap();
    drop(log);
    docdb_core::failure::reset(&all[0].dir);
    let report = drain(&*docdb_core::storage::default_storage(), &slog, &all).unwrap();
    assert!(report.records >= 2, "{report:?}");
    let b = open(&all[1].dir, docdb_core::storage::default_storage(), None);
    for id in 1..7 {
        assert_eq!(b.read("_default", id).unwrap(), doc(id, 1));
    }
    let a = open(&all[0].dir, docdb_core::storage::default_storage(), None);
    assert_eq!(a.read("_default", 1).unwrap(), doc(1, 1));
}

#[test]
fn a_failed_trim_fsync_keeps_the_segment_and_every_acknowledged_write() {
    let d = tempfile::tempdir().unwrap();
    let root = d.path();
    let faults = FaultStorage::std();
    let storage = faults.handle();
    // More databases than one trim syncs at a time.
    let (log, dbs) = logged(root, &storage, 24);
    for (i, db) in dbs.iter().enumerate() {
        for id in 0..5 {
            db.create("_default", id, &doc(id, i as u64)).unwrap();
        }
    }
    // The trim seals the log's segment (one WAL-file fsync), then fsyncs the
    // databases' WALs, several at once; the fourth of those fails. The log's own trim
    // thread, woken by the seal, may be the one that meets the failure: either way the
    // trim asked for reports it.
    faults.arm(Fault::once_after(OpClass::Sync, 4, FaultKind::Eio).on(FileKind::Wal));
    let r = log.trim_now();
    assert!(r.is_err(), "the trim must report the failed fsync");
    assert!(!log.is_enabled());
    // A retried fsync may succeed with the failed pages already dropped: no later
    // round trims the segment, which stays for the next start's drain.
    assert!(
        log.trim_now().is_err(),
        "a trim after the failure went ahead"
    );
    assert_eq!(
        log.stats().trimmed_segments,
        0,
        "a segment went without its WALs synced"
    );
    drop(dbs);
    drop(log);
    let all = dirs(root, 24);
    let report = drain(
        &*docdb_core::storage::default_storage(),
        &root.join("slog"),
        &all,
    )
    .unwrap();
    assert!(report.records >= 24 * 5, "{report:?}");
    for (i, x) in all.iter().enumerate() {
        let db = open(&x.dir, docdb_core::storage::default_storage(), None);
        for id in 0..5 {
            assert_eq!(db.read("_default", id).unwrap(), doc(id, i as u64));
        }
    }
}

#[test]
fn only_a_batch_of_one_commit_goes_through_the_log() {
    let d = tempfile::tempdir().unwrap();
    let storage = docdb_core::storage::default_storage();
    let log = SharedLog::open(storage.clone(), &d.path().join("slog"), LOG_MB << 20).unwrap();
    let x = &dirs(d.path(), 1)[0];
    let db = open(&x.dir, storage.clone(), Some(&log));
    // A lone write: its own group commit of one commit, made durable by the log.
    db.create("_default", 1, &doc(1, 0)).unwrap();
    assert_eq!(log.stats().records, 1);
    // Three writes staged together: one group commit of three commits, which share
    // the database's own WAL fsync and stay out of the log.
    let mut b = db.batch();
    for id in 2..5 {
        b.create("_default", id, &doc(id, 0)).unwrap();
    }
    b.finish().unwrap();
    assert_eq!(
        log.stats().records,
        1,
        "a batch of several commits was logged"
    );
    drop(db);
    drop(log);
    drain(&*storage, &d.path().join("slog"), std::slice::from_ref(x)).unwrap();
    let db = open(&x.dir, storage, None);
    for id in 1..5 {
        assert_eq!(db.read("_default", id).unwrap(), doc(id, 0));
    }
}

/// Bytes of the files in `dir`.
fn dir_bytes(dir: &Path) -> u64 {
    std::fs::read_dir(dir)
        .map(|es| {
            es.filter_map(|e| e.ok()?.metadata().ok())
                .filter(|m| m.is_file())
                .map(|m| m.len())
                .sum()
        })
        .unwrap_or(0)
}

/// The size bound holds when the trim falls behind: each fsync of a database's WAL
/// (what a trim waits for) takes 150 ms, and 8 writers push 16 MiB of records through
/// a log of `LOG_MB` (4 MiB: segments of 1 MiB, 3 sealed at most). Leaders wait for
/// the trim, the log's directory, sampled all along, never holds more than the bound
/// plus one round, and every write is there.
#[test]
fn a_trim_that_falls_behind_holds_the_log_at_its_size_bound() {
    const MIB: u64 = 1 << 20;
    let (n, writes) = (8usize, 256u64);
    let big = |k: usize, id: u64| format!(r#"{{"k":{k},"id":{id},"pad":"{}"}}"#, "q".repeat(8000));
    let tmp = tempfile::tempdir().unwrap();
    let storage: Arc<dyn Storage> = Arc::new(SlowSync::new(
        Arc::new(AtomicU64::new(0)),
        Duration::from_millis(150),
    ));
    let (log, dbs) = logged(tmp.path(), &storage, n);
    let done = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let sampler = {
        let (done, slog) = (done.clone(), tmp.path().join("slog"));
        std::thread::spawn(move || {
            let mut most = 0;
            while !done.load(Ordering::Relaxed) {
                most = dir_bytes(&slog).max(most);
                std::thread::sleep(Duration::from_millis(1));
            }
            most
        })
    };
    let writers: Vec<_> = dbs
        .iter()
        .enumerate()
        .map(|(k, db)| {
            let db = db.clone();
            std::thread::spawn(move || {
                for id in 0..writes {
                    db.create("", id, big(k, id).as_bytes()).unwrap();
                }
            })
        })
        .collect();
    for w in writers {
        w.join().unwrap();
    }
    done.store(true, Ordering::Relaxed);
    let most = sampler.join().unwrap();
    let st = log.stats();
    eprintln!("{st:?}; at most {most} bytes on disk");
    assert!(st.bytes >= 15 * MIB, "{} bytes logged", st.bytes);
    assert!(st.trim_waits > 0, "no leader waited for the trim: {st:?}");
    // Each of the 4 segments may end one round past its size (a round holds at most
    // one record per database: 8 of ~8 KiB).
    assert!(
        most <= LOG_MB * MIB + 4 * 72 * 1024,
        "the log held {most} bytes, bound {LOG_MB} MiB"
    );
    for (k, db) in dbs.iter().enumerate() {
        for id in 0..writes {
            assert_eq!(db.read("", id).unwrap(), big(k, id).into_bytes());
        }
    }
}
