//! The pool: every logical database of the data directory, opened lazily, closed when
//! idle or least recently used, all sharing one global memory budget.
//!
//! At most `db.max_open_dbs` are open (the server sizes it from file descriptors and
//! memory, see `resources.rs`). Past it, opening one closes the least recently used
//! idle ones — never one with requests queued in the scheduler or a handle in use.
//! Closing one that wrote nothing since its last checkpoint costs no fsync. Each such
//! eviction is counted (`docdb_db_evictions_total`); evicting databases used within
//! the last minute means the working set is larger than the limit, which is logged
//! (once a minute at most).

use std::collections::{HashMap, HashSet};
use std::path::Path;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant, SystemTime};

use docdb_core::{Database, HealStats, MemoryBudget, OpenOptions};
use docdb_protocol::text as msg;
use parking_lot::{Condvar, Mutex};
use prometheus_client::metrics::counter::Counter;

use crate::catalog::{Catalog, CatalogError, Entry};
use crate::config::ServerConfig;
use crate::datadir::DataDirLock;
use crate::errors::retry_transient;

/// Why the pool could not hand out a database.
#[derive(Debug, thiserror::Error)]
pub enum PoolError {
    #[error("{}", msg::DB_NOT_OPEN)]
    NotOpen,
    #[error("{}", msg::POOL_STOPPED)]
    Stopped,
    #[error("{0}")]
    Engine(#[from] docdb_core::Error),
    #[error("{0}")]
    Catalog(#[from] CatalogError),
    /// The id belongs to a database DropDB removed.
    #[error("{}", msg::DB_DROPPED)]
    Dropped,
    /// DropDB of a name with no active database.
    #[error("{}", msg::DB_NOT_FOUND)]
    UnknownName,
    /// DropDB waited too long for the requests holding the database.
    #[error("{}", msg::DB_BUSY)]
    Busy,
    /// DropDB could not move or remove the database's files.
    #[error("dropping the database failed: {0}")]
    DropFailed(String),
}

/// What is remembered about a database while it is closed; also written to
/// `<db dir>/SUMMARY.json` on close, so ListDBs can report it after a restart without
/// opening every database.
#[derive(Debug, Default, Clone, Copy, serde::Serialize, serde::Deserialize)]
struct Remembered {
    wal_bytes: u64,
    live_docs: u64,
}

const SUMMARY: &str = "SUMMARY.json";

/// One database's place in the pool.
#[derive(Default)]
struct Slot {
    db: Mutex<Option<Arc<Database>>>,
    /// Milliseconds since the pool started, at last use.
    last_used: AtomicU64,
    remembered: Mutex<Remembered>,
    /// Healing statistics of the database's earlier openings since the server started,
    /// and of the background healer's offline scans while it was closed (not written:
    /// a restart starts them afresh, as v0.3 did).
    heal: Mutex<HealStats>,
    /// Set by DropDB before it closes the database: `get` refuses the id from then on,
    /// so nothing reopens it while its files go.
    dropped: AtomicBool,
}

/// Adds `b`'s counts to `a`, keeps the later times (not the unrecoverable list: that
/// is the open database's to tell).
fn add_heal_stats(a: &mut HealStats, b: &HealStats) {
    a.total_scans += b.total_scans;
    a.documents_healed += b.documents_healed;
    a.documents_corrupted += b.documents_corrupted;
    a.on_demand_healings += b.on_demand_healings;
    a.background_healings += b.background_healings;
    a.last_scan_time = a.last_scan_time.max(b.last_scan_time);
    a.last_healing_time = a.last_healing_time.max(b.last_healing_time);
}

pub struct Pool {
    cfg: ServerConfig,
    /// Held for the pool's life: no other server or tool uses the data directory.
    _lock: DataDirLock,
    catalog: Catalog,
    global: MemoryBudget,
    slots: Mutex<HashMap<u64, Arc<Slot>>>,
    started: Instant,
    stopped: AtomicBool,
    /// Transactions of databases closed since start (their handles are gone).
    closed_txns: AtomicU64,
    /// Databases open now.
    open: AtomicUsize,
    /// Databases open at most (`db.max_open_dbs`, as the server sized it).
    max_open: usize,
    /// Databases closed to make room for another.
    evictions: Counter,
    /// Evictions of recently used databases since the last warning, and when it was.
    thrash: Mutex<(u64, Option<Instant>)>,
    /// Whether a database has requests queued or being served (the scheduler knows).
    busy: OnceLock<BusyCheck>,
    /// Told the id of a database DropDB is waiting for, so work holding its handle
    /// for long (an index build) lets go.
    drop_hook: OnceLock<DropHook>,
    /// Names being dropped: OpenDB and DropDB of such a name wait until the drop has
    /// moved the old files away and marked the old id deleted, so a new database of
    /// the name never sees them.
    dropping: Mutex<HashSet<String>>,
    dropped_done: Condvar,
    /// The server-wide commit log every database's batches go through
    /// (`wal.shared_log`); drained and opened before any database opens.
    shared_log: Option<docdb_core::SharedLog>,
    /// The read cache every database shares (`memory.shared_cache_mb`), if on.
    cache: Option<Arc<docdb_core::DocCache>>,
}

/// Tells whether database `id` has requests queued or in service.
pub type BusyCheck = Box<dyn Fn(u64) -> bool + Send + Sync>;

/// Asks whatever holds database `id`'s handle for long to let go (DropDB waits).
pub type DropHook = Box<dyn Fn(u64) + Send + Sync>;

/// How long DropDB waits for the requests holding the database to let go.
const DROP_WAIT: Duration = Duration::from_secs(10);

/// Directory-name prefix of a dropped database's files awaiting removal.
pub const DROPPED_PREFIX: &str = ".dropped-";

/// A name held by [`Pool::hold_name`].
struct NameGuard<'a> {
    pool: &'a Pool,
    name: String,
}

impl Drop for NameGuard<'_> {
    fn drop(&mut self) {
        self.pool.dropping.lock().remove(&self.name);
        self.pool.dropped_done.notify_all();
    }
}

/// Renames `from` to `to` and syncs the parent, if `from` exists.
fn move_away(from: &Path, to: &Path) -> std::io::Result<()> {
    match std::fs::rename(from, to) {
        Ok(()) => {}
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(()),
        Err(e) => return Err(e),
    }
    match to.parent() {
        Some(p) => docdb_core::fsutil::sync_dir(p),
        None => Ok(()),
    }
}

/// Test hook (the `test-hooks` feature, then opt-in by environment): with
/// `DOCDB_TEST_DROP_CRASH=after-move` or `after-mark`, the process dies (as kill -9
/// would) at that step of DropDB, so a test can restart it and see the drop finished
/// or not started, never half done.
mod hooks {
    #[cfg(feature = "test-hooks")]
    pub fn crash_point(step: &str) {
        if std::env::var("DOCDB_TEST_DROP_CRASH").as_deref() == Ok(step) {
            // SAFETY: ends the process at once, running nothing (as kill -9 would).
            unsafe { libc::_exit(137) };
        }
    }
    #[cfg(not(feature = "test-hooks"))]
    #[inline(always)]
    pub fn crash_point(_: &str) {}
}

/// A database used this recently and evicted means the working set exceeds the limit.
const THRASH_WINDOW: Duration = Duration::from_secs(60);

/// One row of ListDBs.
#[derive(Debug, Clone)]
pub struct DbInfo {
    pub entry: Entry,
    pub open: bool,
    pub wal_bytes: u64,
    pub memory_used: u64,
    pub live_docs: u64,
    pub group_commit: Option<docdb_core::GroupCommitStats>,
}

impl Pool {
    pub fn open(cfg: ServerConfig) -> anyhow::Result<Pool> {
        let lock = DataDirLock::acquire(&cfg)?;
        let catalog = Catalog::open_with_limit(&cfg.data_dir, cfg.limits.max_databases)?;
        let global = MemoryBudget::new(cfg.memory.global_capacity_bytes());
        let cfg_max_open = cfg.db.max_open_dbs;
        let cfg_shared_cache_mb = cfg.memory.shared_cache_mb;
        let pool = Pool {
            cfg,
            _lock: lock,
            catalog,
            global,
            slots: Mutex::new(HashMap::new()),
            started: Instant::now(),
            stopped: AtomicBool::new(false),
            closed_txns: AtomicU64::new(0),
            open: AtomicUsize::new(0),
            // 0 = auto, which the server resolves before opening the pool
            // (`resources::plan`); a pool opened without it keeps the old default.
            max_open: match cfg_max_open {
                0 => 100,
                n => n,
            },
            evictions: Counter::default(),
            thrash: Mutex::new((0, None)),
            busy: OnceLock::new(),
            drop_hook: OnceLock::new(),
            dropping: Mutex::new(HashSet::new()),
            dropped_done: Condvar::new(),
            shared_log: None,
            cache: (cfg_shared_cache_mb > 0).then(|| {
                Arc::new(docdb_core::DocCache::new(
                    docdb_core::config::mib(cfg_shared_cache_mb) as usize,
                ))
            }),
        };
        let mut pool = pool;
        pool.finish_drops()?;
        // IMPORTANT: before any database opens, its WAL gets back what only the shared
        // log made durable.
        crate::shared_log::drain(&pool.cfg, &pool.catalog)?;
        pool.shared_log = crate::shared_log::open(&pool.cfg)?;
        Ok(pool)
    }

    pub fn catalog(&self) -> &Catalog {
        &self.catalog
    }

    pub fn memory(&self) -> &MemoryBudget {
        &self.global
    }

    /// Lets eviction skip databases with requests queued or in service.
    pub fn set_busy_check(&self, check: BusyCheck) {
        let _ = self.busy.set(check);
    }

    /// The shared read cache's counters, when the server uses one.
    pub fn doc_cache_stats(&self) -> Option<docdb_core::DocCacheStats> {
        self.cache.as_ref().map(|c| c.stats())
    }

    /// The shared commit log's counters, when the server uses one.
    pub fn shared_log_stats(&self) -> Option<docdb_core::SharedLogStats> {
        self.shared_log.as_ref().map(|l| l.stats())
    }

    /// Lets DropDB cancel long holders of the database it drops (index builds).
    pub fn set_drop_hook(&self, hook: DropHook) {
        let _ = self.drop_hook.set(hook);
    }

    /// Databases closed to make room for others since start.
    pub fn evictions(&self) -> &Counter {
        &self.evictions
    }

    /// Databases open now.
    pub fn open_count(&self) -> usize {
        self.open.load(Ordering::Relaxed)
    }

    /// Databases open at most.
    pub fn max_open(&self) -> usize {
        self.max_open
    }

    fn db_dir(&self, name: &str) -> PathBuf {
        self.cfg.data_dir.join("dbs").join(name)
    }

    fn now_ms(&self) -> u64 {
        self.started.elapsed().as_millis() as u64
    }

    /// OpenDB: the id of database `name`, created (durably, in the catalog) on first
    /// use. A new database's files are made when it is first used, not here: creating
    /// 10,000 databases costs 10,000 catalog records (sharing fsyncs), not 10,000 sets
    /// of directories, files and their fsyncs. An existing one is opened now, so a
    /// damaged database is reported at OpenDB.
    pub fn open_db(&self, name: &str) -> Result<u64, PoolError> {
        if self.stopped.load(Ordering::Acquire) {
            return Err(PoolError::Stopped);
        }
        docdb_core::name::validate_db_name(name)?;
        let _name = self.hold_name(name);
        let (entry, created) = self.catalog.get_or_create(name)?;
        if !created {
            self.get(entry.id)?;
        }
        Ok(entry.id)
    }

    /// Why id `id` has no database: dropped, or never was one.
    fn gone(&self, id: u64) -> PoolError {
        if self.catalog.was_deleted(id) {
            PoolError::Dropped
        } else {
            PoolError::NotOpen
        }
    }

    /// Waits until no DropDB of `name` is running, then holds the name (other OpenDBs
    /// and DropDBs of it wait) until the guard is dropped. Holding costs a lock and a
    /// set insert; OpenDB of other names never waits.
    fn hold_name(&self, name: &str) -> NameGuard<'_> {
        let mut set = self.dropping.lock();
        while set.contains(name) {
            self.dropped_done.wait(&mut set);
        }
        set.insert(name.to_owned());
        NameGuard {
            pool: self,
            name: name.to_owned(),
        }
    }

    /// Where a dropped database's files wait for removal: `dbs/.dropped-<id>` (and
    /// `<wal-dir>/.dropped-<id>`). A name never starts with `.`, so this is no name.
    fn dropped_dirs(&self, id: u64) -> (PathBuf, Option<PathBuf>) {
        let leaf = format!("{DROPPED_PREFIX}{id}");
        (
            self.cfg.data_dir.join("dbs").join(&leaf),
            self.cfg.wal_dir.as_ref().map(|w| w.join(&leaf)),
        )
    }

    /// DropDB: closes database `name` (its queued and later requests are answered
    /// `database was dropped`), moves its files out of the name's place, marks it
    /// deleted in the catalog (durably), then removes the files. Returns its id.
    ///
    /// Crash safety (docs/ARCHITECTURE.md "DropDB"): the directories are renamed to
    /// `.dropped-<id>` (parents fsynced) before the catalog record; at start,
    /// [`Pool::finish_drops`] completes a drop that left a `.dropped-<id>` behind,
    /// whichever step it stopped at. So after a crash the database is there whole
    /// (nothing renamed yet) or gone.
    pub fn drop_db(&self, name: &str) -> Result<u64, PoolError> {
        if self.stopped.load(Ordering::Acquire) {
            return Err(PoolError::Stopped);
        }
        docdb_core::name::validate_db_name(name)?;
        let _name = self.hold_name(name);
        let entry = self.catalog.find(name).ok_or(PoolError::UnknownName)?;
        let id = entry.id;
        let slot = self.slots.lock().entry(id).or_default().clone();
        slot.dropped.store(true, Ordering::Release);
        let undo = |e: PoolError| {
            slot.dropped.store(false, Ordering::Release);
            e
        };
        let mut guard = slot.db.lock();
        if let Some(db) = guard.take() {
            // Workers serving a batch, a group commit's answers and the healer hold
            // the handle for a moment; new holders are refused (`dropped`).
            let deadline = Instant::now() + DROP_WAIT;
            let mut db = db;
            loop {
                match Arc::try_unwrap(db) {
                    Ok(owned) => {
                        self.closed_txns
                            .fetch_add(owned.stats().tx_count, Ordering::Relaxed);
                        self.open.fetch_sub(1, Ordering::Relaxed);
                        if let Err(e) = owned.close() {
                            // Its files are about to go: what the close failed to
                            // write does not matter any more.
                            tracing::warn!(id, error = %e, "closing a database being dropped failed");
                        }
                        break;
                    }
                    Err(shared) if Instant::now() < deadline => {
                        db = shared;
                        // Asked again each round: a build may have started from a
                        // request served just before `dropped` was set.
                        if let Some(hook) = self.drop_hook.get() {
                            hook(id);
                        }
                        parking_lot::MutexGuard::unlocked(&mut guard, || {
                            std::thread::sleep(Duration::from_millis(2))
                        });
                    }
                    Err(shared) => {
                        *guard = Some(shared);
                        return Err(undo(PoolError::Busy));
                    }
                }
            }
        }
        let (dir, wal_dir) = (
            self.db_dir(name),
            self.cfg.wal_dir.as_ref().map(|w| w.join(name)),
        );
        // A failure recorded for the old files must not refuse the new database
        // that will live under the same path.
        docdb_core::failure::reset(&dir);
        let (gone, gone_wal) = self.dropped_dirs(id);
        let moved = move_away(&dir, &gone).and_then(|()| match (&wal_dir, &gone_wal) {
            (Some(w), Some(g)) => move_away(w, g),
            _ => Ok(()),
        });
        if let Err(e) = moved {
            // Nothing is marked: whatever was renamed is finished at the next start
            // (a `.dropped-<id>` of an active id completes the drop then).
            tracing::error!(db = %name, id, error = %e, "moving a dropped database's files failed");
            return Err(undo(PoolError::DropFailed(e.to_string())));
        }
        hooks::crash_point("after-move");
        if let Err(e) = self.catalog.mark_deleted(id) {
            tracing::error!(db = %name, id, error = %e, "marking a database deleted failed; the next start finishes the drop");
            return Err(PoolError::Catalog(e));
        }
        hooks::crash_point("after-mark");
        drop(guard);
        self.slots.lock().remove(&id);
        drop(_name);
        self.remove_dropped(id);
        tracing::info!(db = %name, id, "dropped database");
        Ok(id)
    }

    /// Removes the files of dropped database `id` (in `.dropped-<id>`); a failure is
    /// logged and retried at the next start.
    fn remove_dropped(&self, id: u64) {
        let (gone, gone_wal) = self.dropped_dirs(id);
        let s = docdb_core::storage::StdStorage;
        if let Err(e) = docdb_core::remove_database(&s, &gone, gone_wal.as_deref()) {
            tracing::warn!(id, error = %e, "removing a dropped database's files failed; retried at the next start");
        }
    }

    /// At start: finishes drops a crash interrupted. A `.dropped-<id>` directory
    /// whose id is still active was moved away but never marked: the drop is completed
    /// (marked deleted); then every `.dropped-<id>` is removed.
    pub fn finish_drops(&self) -> anyhow::Result<()> {
        let mut ids = std::collections::BTreeSet::new();
        let mut roots = vec![self.cfg.data_dir.join("dbs")];
        roots.extend(self.cfg.wal_dir.clone());
        for root in &roots {
            let Ok(rd) = std::fs::read_dir(root) else {
                continue;
            };
            for e in rd {
                let e = e?;
                let name = e.file_name();
                let Some(id) = name
                    .to_str()
                    .and_then(|n| n.strip_prefix(DROPPED_PREFIX))
                    .and_then(|n| n.parse::<u64>().ok())
                else {
                    continue;
                };
                ids.insert(id);
            }
        }
        for id in ids {
            if self.catalog.get(id).is_some() {
                tracing::warn!(id, "finishing a drop interrupted by a crash");
                self.catalog.mark_deleted(id)?;
            }
            self.remove_dropped(id);
        }
        Ok(())
    }

    /// The open database `id`, opening it if needed.
    pub fn get(&self, id: u64) -> Result<Arc<Database>, PoolError> {
        if self.stopped.load(Ordering::Acquire) {
            return Err(PoolError::Stopped);
        }
        let slot = {
            let mut slots = self.slots.lock();
            match slots.get(&id) {
                Some(s) => s.clone(),
                None => {
                    if self.catalog.get(id).is_none() {
                        return Err(self.gone(id));
                    }
                    slots.entry(id).or_default().clone()
                }
            }
        };
        if slot.dropped.load(Ordering::Acquire) {
            return Err(PoolError::Dropped);
        }
        slot.last_used.store(self.now_ms(), Ordering::Relaxed);
        let mut guard = slot.db.lock();
        if let Some(db) = guard.as_ref() {
            return Ok(db.clone());
        }
        // INVARIANT: DropDB sets `dropped` before it takes this lock, and keeps the
        // lock until the files are moved away: checked again under the lock, nothing
        // reopens a database being dropped.
        if slot.dropped.load(Ordering::Acquire) {
            return Err(PoolError::Dropped);
        }
        let entry = self.catalog.get(id).ok_or_else(|| self.gone(id))?;
        let opts = OpenOptions {
            global_memory: Some(self.global.clone()),
            wal_dir: self.cfg.wal_dir.as_ref().map(|w| w.join(&entry.name)),
            shared_log: self.shared_log.clone(),
            cache: self.cache.clone(),
            ..OpenOptions::default()
        };
        let dir = self.db_dir(&entry.name);
        let engine = self.cfg.engine();
        let db = retry_transient("open database", || {
            Database::open_with(&dir, engine.clone(), opts.clone())
        })?;
        let report = db.recovery_report();
        tracing::info!(db = %entry.name, id, replayed = report.replayed_records,
            ms = report.duration.as_millis() as u64, "opened database");
        let db = Arc::new(db);
        *guard = Some(db.clone());
        self.open.fetch_add(1, Ordering::Relaxed);
        drop(guard);
        self.evict_over_limit(id);
        Ok(db)
    }

    /// Closes least-recently-used idle databases while more than `max_open_dbs` are
    /// open. Never closes `keep`, a database in use, or one with requests queued.
    fn evict_over_limit(&self, keep: u64) {
        // A database just answered may still be held for a moment by the worker that
        // served it (its group commit's answers): a few short retries, only while
        // over the limit (an open already costs more than this).
        let mut retries = 5;
        loop {
            if self.open.load(Ordering::Relaxed) <= self.max_open {
                return;
            }
            let mut candidates: Vec<(u64, Arc<Slot>, u64)> = self
                .slots
                .lock()
                .iter()
                .filter(|(&id, _)| id != keep)
                .map(|(&id, s)| (id, s.clone(), s.last_used.load(Ordering::Relaxed)))
                .collect();
            candidates.sort_unstable_by_key(|c| c.2);
            let now = self.now_ms();
            for (id, slot, used) in candidates {
                if self.open.load(Ordering::Relaxed) <= self.max_open {
                    return;
                }
                if self.busy.get().is_some_and(|busy| busy(id)) {
                    continue;
                }
                if self.try_close(id, &slot) {
                    self.evictions.inc();
                    if now.saturating_sub(used) < THRASH_WINDOW.as_millis() as u64 {
                        self.note_thrash();
                    }
                }
            }
            if retries == 0 || self.open.load(Ordering::Relaxed) <= self.max_open {
                break;
            }
            retries -= 1;
            std::thread::sleep(Duration::from_millis(2));
        }
        // Whatever is over now is busy; the next open tries again.
    }

    /// Logs, once a minute at most, that recently used databases are being evicted.
    fn note_thrash(&self) {
        let mut t = self.thrash.lock();
        t.0 += 1;
        if t.1.is_some_and(|at| at.elapsed() < THRASH_WINDOW) {
            return;
        }
        tracing::warn!(
            max_open_dbs = self.max_open,
            evicted_recently_used = t.0,
            "more databases are in use than db.max_open_dbs: each is closed and reopened \
             as others need the room; raise db.max_open_dbs (and the open-file limit)"
        );
        *t = (0, Some(Instant::now()));
    }

    /// Closes the slot's database if nobody else holds it. Returns true if closed.
    fn try_close(&self, id: u64, slot: &Slot) -> bool {
        let Some(mut guard) = slot.db.try_lock() else {
            return false;
        };
        let Some(db) = guard.take() else { return false };
        if db.is_read_only() && !self.stopped.load(Ordering::Acquire) {
            // A write or fsync failed: the handle is kept for the life of the process
            // (reads go on; writes stay refused), because closing it would let the next
            // use reopen it writable over pages the kernel may have dropped
            // (DECISIONS 38). CloseDB, idle close and eviction all end here; at
            // shutdown it is closed (its close writes nothing).
            *guard = Some(db);
            return false;
        }
        match Arc::try_unwrap(db) {
            Ok(db) => {
                let s = db.stats();
                let r = Remembered {
                    wal_bytes: s.wal_bytes,
                    live_docs: s.live_docs,
                };
                add_heal_stats(&mut slot.heal.lock(), &db.heal_stats());
                *slot.remembered.lock() = r;
                self.closed_txns.fetch_add(s.tx_count, Ordering::Relaxed);
                self.open.fetch_sub(1, Ordering::Relaxed);
                let summary = db.path().join(SUMMARY);
                if let Err(e) = db.close() {
                    tracing::warn!(id, error = %e, "closing database failed");
                }
                // Advisory figures for ListDBs: no fsync, a stale file only shows old
                // numbers until the database is next opened.
                if let Ok(json) = serde_json::to_vec(&r) {
                    let _ = docdb_core::fsutil::write_private(&summary, &json);
                }
                tracing::debug!(id, "closed database");
                true
            }
            Err(db) => {
                *guard = Some(db);
                false
            }
        }
    }

    /// CloseDB: closes the database now if it is idle (else it closes when idle).
    pub fn close_db(&self, id: u64) -> Result<(), PoolError> {
        if self.catalog.get(id).is_none() {
            return Err(PoolError::NotOpen);
        }
        let slot = self.slots.lock().get(&id).cloned();
        if let Some(slot) = slot {
            self.try_close(id, &slot);
        }
        Ok(())
    }

    /// Closes databases unused for `idle_timeout`. Called periodically.
    pub fn close_idle(&self) {
        let limit = self.cfg.db.idle_timeout.as_millis() as u64;
        let now = self.now_ms();
        let idle: Vec<(u64, Arc<Slot>)> = self
            .slots
            .lock()
            .iter()
            .filter(|(_, s)| now.saturating_sub(s.last_used.load(Ordering::Relaxed)) >= limit)
            .map(|(&id, s)| (id, s.clone()))
            .collect();
        for (id, s) in idle {
            self.try_close(id, &s);
        }
    }

    /// Open databases (id, handle).
    pub fn open_dbs(&self) -> Vec<(u64, Arc<Database>)> {
        let slots: Vec<(u64, Arc<Slot>)> = self
            .slots
            .lock()
            .iter()
            .map(|(&id, s)| (id, s.clone()))
            .collect();
        slots
            .into_iter()
            .filter_map(|(id, s)| s.db.lock().as_ref().map(|d| (id, d.clone())))
            .collect()
    }

    /// Healing statistics of database `id` since the server started: its earlier
    /// openings, offline scans while closed, and the open database's own (whose
    /// unrecoverable list it is). `None` if it was not used since the server started.
    pub fn heal_stats(&self, id: u64) -> Option<HealStats> {
        let slot = self.slots.lock().get(&id).cloned()?;
        let open = slot.db.lock().clone();
        let mut s = slot.heal.lock().clone();
        s.unrecoverable.clear();
        if let Some(db) = open {
            let now = db.heal_stats();
            add_heal_stats(&mut s, &now);
            s.unrecoverable = now.unrecoverable;
        }
        Some(s)
    }

    /// When database `id` was last scanned for corrupt documents (HealAll or the
    /// background scan), while open or closed, since the server started.
    pub fn last_scan(&self, id: u64) -> Option<SystemTime> {
        self.heal_stats(id).and_then(|s| s.last_scan_time)
    }

    /// Records a scan of closed database `id` (the background healer's offline verify).
    pub fn note_scan(&self, id: u64, at: SystemTime) {
        let slot = self.slots.lock().entry(id).or_default().clone();
        let mut h = slot.heal.lock();
        h.total_scans += 1;
        h.last_scan_time = h.last_scan_time.max(Some(at));
    }

    /// The handle of database `id` if it is open now (never opens it).
    pub fn get_if_open(&self, id: u64) -> Option<Arc<Database>> {
        let slot = self.slots.lock().get(&id).cloned()?;
        let db = slot.db.lock().clone();
        db
    }

    /// Runs `f` on the directory (and WAL directory) of database `id` while it is
    /// closed, keeping it closed meanwhile: a request that would open it waits until
    /// `f` returns. `None` (and `f` not run) if it is open, unknown, or the pool is
    /// stopping.
    pub fn with_closed<R>(&self, id: u64, f: impl FnOnce(&Path, Option<&Path>) -> R) -> Option<R> {
        if self.is_stopped() {
            return None;
        }
        let entry = self.catalog.get(id)?;
        let slot = self.slots.lock().entry(id).or_default().clone();
        let guard = slot.db.lock();
        if guard.is_some() || self.is_stopped() || slot.dropped.load(Ordering::Acquire) {
            return None;
        }
        let dir = self.db_dir(&entry.name);
        let wal_dir = self.cfg.wal_dir.as_ref().map(|w| w.join(&entry.name));
        let r = f(&dir, wal_dir.as_deref());
        drop(guard);
        Some(r)
    }

    /// Closes database `id` if it is open, idle (no requests queued or in service)
    /// and nobody else holds it. Returns true if closed.
    pub fn close_if_idle(&self, id: u64) -> bool {
        if self.busy.get().is_some_and(|busy| busy(id)) {
            return false;
        }
        let slot = self.slots.lock().get(&id).cloned();
        slot.is_some_and(|s| self.try_close(id, &s))
    }

    /// Open databases that refuse writes after an I/O failure, by id.
    pub fn read_only_dbs(&self) -> Vec<Entry> {
        let mut v: Vec<Entry> = self
            .open_dbs()
            .into_iter()
            .filter(|(_, db)| db.is_read_only())
            .filter_map(|(id, _)| self.catalog.get(id))
            .collect();
        v.sort_by_key(|e| e.id);
        v
    }

    /// Every active database with what is known about it.
    pub fn list(&self) -> Vec<DbInfo> {
        let slots: HashMap<u64, Arc<Slot>> = self.slots.lock().clone();
        self.catalog
            .list()
            .into_iter()
            .map(|entry| {
                let slot = slots.get(&entry.id);
                let db = slot.and_then(|s| s.db.lock().clone());
                match db {
                    Some(db) => {
                        let s = db.stats();
                        DbInfo {
                            entry,
                            open: true,
                            wal_bytes: s.wal_bytes,
                            memory_used: s.memory_used,
                            live_docs: s.live_docs,
                            group_commit: Some(s.group_commit),
                        }
                    }
                    None => {
                        let r = match slot {
                            Some(s) if s.remembered.lock().wal_bytes > 0 => *s.remembered.lock(),
                            _ => std::fs::read(self.db_dir(&entry.name).join(SUMMARY))
                                .ok()
                                .and_then(|b| serde_json::from_slice(&b).ok())
                                .unwrap_or_default(),
                        };
                        DbInfo {
                            entry,
                            open: false,
                            wal_bytes: r.wal_bytes,
                            memory_used: 0,
                            live_docs: r.live_docs,
                            group_commit: None,
                        }
                    }
                }
            })
            .collect()
    }

    /// Transactions committed since the server started.
    pub fn total_txns(&self) -> u64 {
        self.closed_txns.load(Ordering::Relaxed)
            + self
                .open_dbs()
                .iter()
                .map(|(_, d)| d.stats().tx_count)
                .sum::<u64>()
    }

    /// Refuses new work, then checkpoints and closes every database, waiting up to
    /// `timeout` for ones still in use.
    pub fn shutdown(&self, timeout: Duration) {
        self.stopped.store(true, Ordering::Release);
        let deadline = Instant::now() + timeout;
        loop {
            let slots: Vec<(u64, Arc<Slot>)> = self
                .slots
                .lock()
                .iter()
                .map(|(&id, s)| (id, s.clone()))
                .collect();
            let mut remaining = 0;
            for (id, s) in &slots {
                if s.db.lock().is_some() && !self.try_close(*id, s) {
                    remaining += 1;
                }
            }
            if remaining == 0 || Instant::now() >= deadline {
                if let Some(log) = self.shared_log.as_ref().filter(|l| l.is_enabled()) {
                    // Every closed database's checkpoint covers its records (a database
                    // still open gets its WAL fsynced): the next start drains nothing.
                    if let Err(e) = log.trim_now() {
                        tracing::warn!(error = %e, "could not empty the shared log at shutdown; the next start drains it");
                    }
                }
                if remaining > 0 {
                    tracing::warn!(
                        remaining,
                        "databases still in use at shutdown; their acknowledged writes are durable"
                    );
                }
                return;
            }
            std::thread::sleep(Duration::from_millis(10));
        }
    }

    pub fn is_stopped(&self) -> bool {
        self.stopped.load(Ordering::Acquire)
    }
}
