//! The four fsync modes, told apart by what a power cut keeps (SPEC §4).
//!
//! A SIGKILL keeps the page cache, so a crash test cannot tell `always` from `none`.
//! Here every file operation goes through [`PowerLossStorage`], seen through taps of
//! this test's own (`Tapped`: a count of WAL fsyncs, each taking 2 ms as on a disk, and
//! a power cut armed to land just before a chosen change to the disk). The tests
//! - count the WAL fsyncs each mode makes while writing: `always` one per commit,
//!   `group` fewer than its concurrent commits, `interval` about one per period and far
//!   fewer than its commits, `none` none;
//! - cut the power after acknowledged writes and reopen: `always` and `group` keep every
//!   acknowledged write (creates, updates, deletes, transactions) whatever the cut keeps
//!   of what was not synced (several seeds), and so does `always` when the cut lands
//!   right after a checkpoint or a compaction, or just before any one of the disk
//!   changes a checkpoint or a compaction makes; `none`, with a cut that keeps nothing
//!   unsynced, loses some — the control that shows the test can tell the modes apart.
//!
//! These need an engine that routes every file operation through
//! `OpenOptions::storage`; one that ignores it fails the fsync counts and the control.

#![allow(clippy::unwrap_used)]

use std::collections::BTreeMap;
use std::ffi::OsString;
use std::io;
use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use docdb_core::storage::testing::PowerLossStorage;
use docdb_core::storage::{LockGuard, OpenMode, Storage, StorageFile};
use docdb_core::{Config, Database, Error, FsyncMode, OpenOptions};

/// Time one WAL fsync takes on this pretend disk: enough for concurrent writers to
/// queue behind it, as they do behind a real one.
const SYNC_TIME: Duration = Duration::from_millis(2);

/// What the test sees of the disk: WAL syncs so far, and a power cut armed to come
/// just before a chosen call that changes the disk.
#[derive(Debug, Default)]
struct Taps {
    /// Syncs of WAL segment files (`*.wal`).
    wal_syncs: AtomicU64,
    /// Calls that change the disk (writes, truncations, syncs, creations, renames,
    /// removals, directory syncs) so far.
    changes: AtomicU64,
    /// Cut the power just before change number `cut_at` (1-based; 0: never).
    cut_at: AtomicU64,
    /// The seed of that cut; [`KEEP_NOTHING`]: keep nothing unsynced.
    cut_seed: AtomicU64,
}

const KEEP_NOTHING: u64 = u64::MAX;

/// [`PowerLossStorage`] seen through [`Taps`].
#[derive(Debug)]
struct Tapped {
    disk: Arc<PowerLossStorage>,
    taps: Arc<Taps>,
}

#[derive(Debug)]
struct TappedFile {
    inner: Arc<dyn StorageFile>,
    disk: Arc<PowerLossStorage>,
    taps: Arc<Taps>,
    wal: bool,
}

/// Counts one change; at the armed one, cuts the power first (the call then fails:
/// the machine making it is dead).
fn change(disk: &PowerLossStorage, taps: &Taps) -> io::Result<()> {
    let n = taps.changes.fetch_add(1, Ordering::SeqCst) + 1;
    if n == taps.cut_at.load(Ordering::SeqCst) {
        match taps.cut_seed.load(Ordering::SeqCst) {
            KEEP_NOTHING => disk.cut_keep_nothing_unsynced()?,
            seed => disk.cut(seed)?,
        };
    }
    Ok(())
}

impl TappedFile {
    fn sync(&self) -> io::Result<()> {
        change(&self.disk, &self.taps)?;
        if self.wal {
            self.taps.wal_syncs.fetch_add(1, Ordering::SeqCst);
            std::thread::sleep(SYNC_TIME);
        }
        Ok(())
    }
}

impl StorageFile for TappedFile {
    fn read_at(&self, buf: &mut [u8], offset: u64) -> io::Result<usize> {
        self.inner.read_at(buf, offset)
    }
    fn write_at(&self, buf: &[u8], offset: u64) -> io::Result<usize> {
        change(&self.disk, &self.taps)?;
        self.inner.write_at(buf, offset)
    }
    fn len(&self) -> io::Result<u64> {
        self.inner.len()
    }
    fn set_len(&self, len: u64) -> io::Result<()> {
        change(&self.disk, &self.taps)?;
        self.inner.set_len(len)
    }
    fn sync_data(&self) -> io::Result<()> {
        self.sync()?;
        self.inner.sync_data()
    }
    fn sync_all(&self) -> io::Result<()> {
        self.sync()?;
        self.inner.sync_all()
    }
}

impl Storage for Tapped {
    fn open(&self, path: &Path, mode: OpenMode) -> io::Result<Arc<dyn StorageFile>> {
        if !matches!(mode, OpenMode::Read | OpenMode::ReadWrite) {
            change(&self.disk, &self.taps)?;
        }
        Ok(Arc::new(TappedFile {
            inner: self.disk.open(path, mode)?,
            disk: self.disk.clone(),
            taps: self.taps.clone(),
            wal: path.extension().is_some_and(|e| e == "wal"),
        }))
    }
    fn list(&self, dir: &Path) -> io::Result<Vec<OsString>> {
        self.disk.list(dir)
    }
    fn file_len(&self, path: &Path) -> io::Result<u64> {
        self.disk.file_len(path)
    }
    fn remove_file(&self, path: &Path) -> io::Result<()> {
        change(&self.disk, &self.taps)?;
        self.disk.remove_file(path)
    }
    fn remove_dir(&self, dir: &Path) -> io::Result<()> {
        change(&self.disk, &self.taps)?;
        self.disk.remove_dir(dir)
    }
    fn rename(&self, from: &Path, to: &Path) -> io::Result<()> {
        change(&self.disk, &self.taps)?;
        self.disk.rename(from, to)
    }
    fn create_dir(&self, dir: &Path) -> io::Result<bool> {
        self.disk.create_dir(dir)
    }
    fn sync_dir(&self, dir: &Path) -> io::Result<()> {
        change(&self.disk, &self.taps)?;
        self.disk.sync_dir(dir)
    }
    fn lock(&self, path: &Path) -> io::Result<LockGuard> {
        self.disk.lock(path)
    }
}

fn config(mode: FsyncMode) -> Config {
    let mut c = Config::default();
    c.wal.fsync.mode = mode;
    c.wal.fsync.interval_ms = 50;
    c
}

fn open_on(dir: &Path, mode: FsyncMode, storage: Arc<dyn Storage>) -> Database {
    let opts = OpenOptions {
        storage: Some(storage),
        ..Default::default()
    };
    Database::open_with(dir, config(mode), opts).unwrap()
}

/// A database on a fresh power-loss disk, the disk and its taps.
fn open_tapped(dir: &Path, mode: FsyncMode) -> (Database, Arc<PowerLossStorage>, Arc<Taps>) {
    let disk = PowerLossStorage::new();
    let taps = Arc::new(Taps::default());
    let storage = Arc::new(Tapped {
        disk: disk.clone(),
        taps: taps.clone(),
    });
    (open_on(dir, mode, storage), disk, taps)
}

/// The WAL syncs so far.
fn wal_syncs(taps: &Taps) -> u64 {
    taps.wal_syncs.load(Ordering::SeqCst)
}

fn doc(id: u64, version: u64) -> Vec<u8> {
    format!(r#"{{"id":{id},"v":{version},"pad":"{}"}}"#, "x".repeat(100)).into_bytes()
}

#[test]
fn always_fsyncs_the_wal_once_per_commit() {
    let d = tempfile::tempdir().unwrap();
    let (db, _disk, taps) = open_tapped(d.path(), FsyncMode::Always);
    let before = wal_syncs(&taps);
    for id in 0..100 {
        db.create("", id, &doc(id, 0)).unwrap();
    }
    for id in 0..20 {
        db.update("", id, &doc(id, 1)).unwrap();
    }
    let n = wal_syncs(&taps) - before;
    assert_eq!(
        n, 120,
        "120 sequential commits in `always` made {n} WAL fsyncs"
    );
}

/// `threads` writers each commit `per_thread` creates at once; returns the commits.
fn concurrent_creates(db: &Database, threads: u64, per_thread: u64) -> u64 {
    std::thread::scope(|s| {
        for t in 0..threads {
            s.spawn(move || {
                for i in 0..per_thread {
                    let id = t * 1_000_000 + i;
                    db.create("", id, &doc(id, 0)).unwrap();
                }
            });
        }
    });
    threads * per_thread
}

#[test]
fn group_shares_one_fsync_among_concurrent_commits() {
    let d = tempfile::tempdir().unwrap();
    let (db, _disk, taps) = open_tapped(d.path(), FsyncMode::Group);
    let before = wal_syncs(&taps);
    let batches_before = db.stats().group_commit.total_batches;
    let commits = concurrent_creates(&db, 8, 40);
    let n = wal_syncs(&taps) - before;
    let batches = db.stats().group_commit.total_batches - batches_before;
    println!("group: {commits} concurrent commits in {batches} batches, {n} WAL fsyncs");
    assert!(
        n <= batches,
        "{n} WAL fsyncs for {batches} group-commit batches"
    );
    assert!(
        n >= 1,
        "group acknowledged {commits} commits without any fsync"
    );
    assert!(
        n < commits,
        "group made {n} WAL fsyncs for {commits} concurrent commits: none was shared"
    );
}

#[test]
fn interval_fsyncs_on_its_timer_not_per_commit() {
    let d = tempfile::tempdir().unwrap();
    let (db, _disk, taps) = open_tapped(d.path(), FsyncMode::Interval);
    let before = wal_syncs(&taps);
    let start = Instant::now();
    let mut commits = 0u64;
    while start.elapsed() < Duration::from_millis(1000) {
        db.create("", commits, &doc(commits, 0)).unwrap();
        commits += 1;
    }
    let n = wal_syncs(&taps) - before;
    let elapsed = start.elapsed();
    let periods = elapsed.as_millis() as u64 / 50;
    println!("interval: {commits} commits in {elapsed:?}, {n} WAL fsyncs, {periods} periods");
    // The timer fires about once per period; a loaded machine may delay it (at least a
    // quarter of them) but never makes it fire more often (twice the periods, plus one).
    assert!(
        n >= periods / 4,
        "only {n} WAL fsyncs in {periods} periods of 50 ms"
    );
    assert!(
        n <= 2 * periods + 1,
        "{n} WAL fsyncs in {periods} periods of 50 ms"
    );
    assert!(
        n * 4 < commits,
        "{n} WAL fsyncs for {commits} commits: interval fsyncs per commit"
    );
}

#[test]
fn none_never_fsyncs_the_wal_while_writing() {
    let d = tempfile::tempdir().unwrap();
    let (db, _disk, taps) = open_tapped(d.path(), FsyncMode::None);
    let before = wal_syncs(&taps);
    concurrent_creates(&db, 4, 50);
    for id in 0..50 {
        db.update("", id, &doc(id, 1)).unwrap();
    }
    assert_eq!(wal_syncs(&taps) - before, 0);
}

/// What every acknowledged write left: id → its document, or `None` once deleted.
type Model = BTreeMap<u64, Option<Vec<u8>>>;

/// `threads` writers each create, update, delete and commit small transactions on
/// their own ids; returns what was acknowledged.
fn acknowledged_workload(db: &Database, threads: u64, per_thread: u64) -> Model {
    let models: Vec<Model> = std::thread::scope(|s| {
        let hs: Vec<_> = (0..threads)
            .map(|t| {
                s.spawn(move || {
                    let mut m = Model::new();
                    for i in 0..per_thread {
                        let id = t * 1_000_000 + i;
                        db.create("", id, &doc(id, 0)).unwrap();
                        m.insert(id, Some(doc(id, 0)));
                        if i % 3 == 1 {
                            db.update("", id - 1, &doc(id - 1, 1)).unwrap();
                            m.insert(id - 1, Some(doc(id - 1, 1)));
                        }
                        if i % 7 == 6 {
                            db.delete("", id - 2).unwrap();
                            m.insert(id - 2, None);
                        }
                        if i % 5 == 4 {
                            let (a, b) = (id + 500_000, id + 500_001);
                            let mut tx = db.begin();
                            tx.create("", a, &doc(a, 0)).unwrap();
                            tx.create("", b, &doc(b, 0)).unwrap();
                            tx.commit().unwrap();
                            m.insert(a, Some(doc(a, 0)));
                            m.insert(b, Some(doc(b, 0)));
                        }
                    }
                    m
                })
            })
            .collect();
        hs.into_iter().map(|h| h.join().unwrap()).collect()
    });
    models.into_iter().flatten().collect()
}

/// Ids whose acknowledged state the reopened database does not show.
fn lost(db: &Database, model: &Model) -> Vec<u64> {
    model
        .iter()
        .filter(|(&id, want)| match (db.read("", id), want) {
            (Ok(got), Some(want)) => &got != want,
            (Err(Error::NotFound), None) => false,
            _ => true,
        })
        .map(|(&id, _)| id)
        .collect()
}

/// The machine restarts after a cut: the dead process's record of the writes and
/// fsyncs that failed when its disk went away goes with it (DECISIONS 38).
fn reboot(dir: &Path) {
    docdb_core::failure::reset(dir);
}

/// Cuts the power under the running `db`, lets it go, and reopens on what the disk kept.
fn cut_and_reopen(
    dir: &Path,
    mode: FsyncMode,
    db: Database,
    disk: &PowerLossStorage,
    seed: Option<u64>,
) -> Database {
    match seed {
        Some(seed) => disk.cut(seed).unwrap(),
        None => disk.cut_keep_nothing_unsynced().unwrap(),
    };
    drop(db);
    reboot(dir);
    open_on(dir, mode, disk.restart())
}

#[test]
fn durable_modes_keep_every_acknowledged_write_through_a_power_cut() {
    for mode in [FsyncMode::Always, FsyncMode::Group] {
        for seed in 0..4 {
            let d = tempfile::tempdir().unwrap();
            let disk = PowerLossStorage::new();
            let db = open_on(d.path(), mode, disk.clone());
            let model = acknowledged_workload(&db, 4, 30);
            let db = cut_and_reopen(d.path(), mode, db, &disk, Some(seed));
            let lost = lost(&db, &model);
            assert!(
                lost.is_empty(),
                "{mode:?}, seed {seed}: {} of {} acknowledged documents lost or wrong: {lost:?}",
                lost.len(),
                model.len()
            );
            let v = db.verify().unwrap();
            assert!(v.is_ok(), "{:?}", v.problems);
            // And the survivor takes writes again.
            db.create("", u64::MAX - 1, b"{}").unwrap();
        }
    }
}

#[test]
fn none_loses_acknowledged_writes_when_the_cut_keeps_nothing_unsynced() {
    let d = tempfile::tempdir().unwrap();
    let disk = PowerLossStorage::new();
    let db = open_on(d.path(), FsyncMode::None, disk.clone());
    let model = acknowledged_workload(&db, 2, 30);
    let db = cut_and_reopen(d.path(), FsyncMode::None, db, &disk, None);
    let lost = lost(&db, &model);
    println!(
        "none: {} of {} acknowledged documents lost",
        lost.len(),
        model.len()
    );
    assert!(
        !lost.is_empty(),
        "`none` kept all {} unsynced acknowledged writes: the power cut did not cut",
        model.len()
    );
}

/// Sequential writes on `db` (ids from `first`), some updating earlier ones, so a
/// compaction has dead versions to drop.
fn sequential_writes(db: &Database, model: &mut Model, first: u64, n: u64) {
    for id in first..first + n {
        db.create("", id, &doc(id, 0)).unwrap();
        model.insert(id, Some(doc(id, 0)));
        if id % 2 == 1 {
            db.update("", id - 1, &doc(id - 1, id)).unwrap();
            model.insert(id - 1, Some(doc(id - 1, id)));
        }
        if id % 9 == 8 {
            db.delete("", id - 3).unwrap();
            model.insert(id - 3, None);
        }
    }
}

#[test]
fn always_keeps_every_acknowledged_write_through_a_cut_after_checkpoint_or_compaction() {
    for compact in [false, true] {
        for seed in 0..3 {
            let d = tempfile::tempdir().unwrap();
            let disk = PowerLossStorage::new();
            let db = open_on(d.path(), FsyncMode::Always, disk.clone());
            let mut model = Model::new();
            sequential_writes(&db, &mut model, 0, 80);
            if compact {
                db.compact().unwrap();
            } else {
                db.checkpoint().unwrap();
            }
            sequential_writes(&db, &mut model, 1000, 10);
            let db = cut_and_reopen(d.path(), FsyncMode::Always, db, &disk, Some(seed));
            let lost = lost(&db, &model);
            assert!(
                lost.is_empty(),
                "compact={compact}, seed {seed}: lost or wrong: {lost:?}"
            );
            let v = db.verify().unwrap();
            assert!(v.is_ok(), "{:?}", v.problems);
        }
    }
}

/// Which maintenance a cut lands in.
#[derive(Debug, Clone, Copy)]
enum Maintenance {
    Checkpoint,
    Compaction,
}

impl Maintenance {
    fn run(self, db: &Database) -> docdb_core::Result<()> {
        match self {
            Maintenance::Checkpoint => db.checkpoint(),
            Maintenance::Compaction => db.compact().map(|_| ()),
        }
    }
}

/// Acknowledged writes in `always`, then `op` with the power cut (keeping what `seed`
/// draws) just before its change number `cut_at` (0: no cut). Returns the model, the
/// changes `op` made (when not cut) and the reopened database.
fn cut_during(
    dir: &Path,
    op: Maintenance,
    cut_at: u64,
    seed: u64,
) -> (Model, u64, Option<Database>) {
    let (db, disk, taps) = open_tapped(dir, FsyncMode::Always);
    let mut model = Model::new();
    sequential_writes(&db, &mut model, 0, 60);
    let before = taps.changes.load(Ordering::SeqCst);
    taps.cut_seed.store(seed, Ordering::SeqCst);
    if cut_at > 0 {
        taps.cut_at.store(before + cut_at, Ordering::SeqCst);
    }
    let r = op.run(&db);
    let made = taps.changes.load(Ordering::SeqCst) - before;
    if cut_at == 0 {
        r.unwrap();
        return (model, made, None);
    }
    // The cut is certain (the change numbered `cut_at` is one `op` makes). A checkpoint
    // cut while it writes the optional INDEX snapshot still succeeds: the snapshot
    // only saves the next open a scan, and its failure is logged, not returned.
    assert!(
        made >= cut_at,
        "{op:?} made only {made} changes, cut at {cut_at}"
    );
    if r.is_ok() {
        assert!(
            matches!(op, Maintenance::Checkpoint),
            "{op:?} went on after the power was cut"
        );
    }
    drop(db);
    reboot(dir);
    let db = open_on(dir, FsyncMode::Always, disk.restart());
    (model, made, Some(db))
}

#[test]
fn always_keeps_every_acknowledged_write_through_a_cut_inside_checkpoint_or_compaction() {
    for op in [Maintenance::Checkpoint, Maintenance::Compaction] {
        let d = tempfile::tempdir().unwrap();
        let (_, changes, _) = cut_during(d.path(), op, 0, 0);
        assert!(
            changes >= 3,
            "{op:?} made only {changes} changes to the disk"
        );
        // A cut just before each of its changes, each with a seed of its own (and one
        // that keeps nothing unsynced at every third).
        for k in 1..=changes {
            let d = tempfile::tempdir().unwrap();
            let seed = if k % 3 == 0 { KEEP_NOTHING } else { k };
            let (model, _, db) = cut_during(d.path(), op, k, seed);
            let db = db.unwrap();
            let lost = lost(&db, &model);
            assert!(
                lost.is_empty(),
                "{op:?} cut before its change {k} of {changes}: lost or wrong: {lost:?}"
            );
            let v = db.verify().unwrap();
            assert!(v.is_ok(), "{op:?} cut before change {k}: {:?}", v.problems);
        }
        println!("{op:?}: cut before each of its {changes} changes");
    }
}

#[test]
fn interval_keeps_through_a_power_cut_what_its_timer_synced() {
    let d = tempfile::tempdir().unwrap();
    let (db, disk, taps) = open_tapped(d.path(), FsyncMode::Interval);
    let mut synced = Model::new();
    sequential_writes(&db, &mut synced, 0, 40);
    // Wait for a timer fsync that began after the last of those writes returned.
    let seen = wal_syncs(&taps);
    let deadline = Instant::now() + Duration::from_secs(10);
    while wal_syncs(&taps) < seen + 2 {
        assert!(Instant::now() < deadline, "no interval fsync in 10 s");
        std::thread::sleep(Duration::from_millis(5));
    }
    // Writes after it may be lost (up to one period of them): not in the model.
    let mut recent = Model::new();
    sequential_writes(&db, &mut recent, 1000, 10);
    let db = cut_and_reopen(d.path(), FsyncMode::Interval, db, &disk, None);
    let lost = lost(&db, &synced);
    assert!(
        lost.is_empty(),
        "lost or wrong after their interval fsync: {lost:?}"
    );
}
