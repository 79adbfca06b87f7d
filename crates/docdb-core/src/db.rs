//! `Database`: one logical database — collections of JSON documents in a directory,
//! with a WAL and a data file — and its public, thread-safe API.
//!
//! Directory layout (see `docs/FORMAT.md`):
//! ```text
//! <dir>/LOCK                 advisory lock: one process per database
//! <dir>/CHECKPOINT           current data generation + durable length + WAL start
//! <dir>/wal/<n:020>.wal      WAL segments
//! <dir>/data/<g:020>.data    data file (one generation current)
//! ```

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use parking_lot::{Mutex, RwLock};

use crate::commit::{DocKind, GroupCommit, StagedOp};
use crate::config::Config;
use crate::data::file::{DataFile, ReadError};
use crate::error::{Error, Result};
use crate::files::Files;
use crate::files::Io;
use crate::index::{Collection, Version};
use crate::lifecycle::Lifecycle;
use crate::maintenance::Maintenance;
use crate::memory::{MemoryAccount, MemoryBudget};
use crate::name::resolve_collection;
use crate::snapshot::Snapshots;
use crate::stats::Stats;
use crate::wal::writer::WalWriter;

/// Largest document, in bytes.
pub const MAX_DOCUMENT_SIZE: usize = 16 * 1024 * 1024;
/// Most results one scan call returns.
pub const MAX_SCAN_LIMIT: usize = 1000;

/// How to open a database beyond its [`Config`].
#[derive(Debug, Clone, Default)]
pub struct OpenOptions {
    /// Budget shared with other databases; `None` means only the per-database limit.
    pub global_memory: Option<MemoryBudget>,
    /// Put the WAL somewhere else than `<dir>/wal`.
    pub wal_dir: Option<PathBuf>,
    /// Where the files live: `None` is the real file system
    /// ([`crate::storage::StdStorage`]); tests pass backends that fail or lose writes.
    pub storage: Option<Arc<dyn crate::storage::Storage>>,
    /// Make group-commit batches durable through this server-wide log (one fsync for
    /// many databases) in `always` and `group` modes; `None` (default): fsync the
    /// database's own WAL. Drain the log ([`crate::shared_log::drain`]) before opening.
    pub shared_log: Option<crate::shared_log::SharedLog>,
    /// Cache hot documents' bytes in this cache, shared with the other databases
    /// given it (one budget for all); `None` (default): a cache of its own of
    /// `memory.cache_mb`.
    pub cache: Option<Arc<crate::cache::DocCache>>,
}

/// What opening found and repaired.
#[derive(Debug, Clone, Default)]
pub struct RecoveryReport {
    /// WAL commit records replayed since the last checkpoint.
    pub replayed_records: u64,
    pub replayed_bytes: u64,
    /// Data-file records read to rebuild the index (only those past the index
    /// snapshot when it was used).
    pub data_records: u64,
    /// Documents (and tombstones) whose newest version came from the index snapshot
    /// `INDEX`; 0 when it was not used.
    pub snapshot_entries: u64,
    /// Why the index snapshot was not used and the whole data file was scanned
    /// (missing, damaged, stale, another generation); `None` when it was used or the
    /// database had nothing checkpointed to index.
    pub snapshot_fallback: Option<String>,
    /// What was cut or skipped, one line each. Empty after a clean shutdown or crash
    /// that tore nothing.
    pub dropped: Vec<String>,
    pub duration: std::time::Duration,
}

/// A database handle. Thread-safe: share it (`Arc<Database>`) between threads.
/// Dropping it without [`Database::close`] is safe — every acknowledged write is
/// already durable per the fsync mode — but skips the final checkpoint.
pub struct Database {
    pub(crate) inner: Arc<Inner>,
    /// Set by a successful [`Database::close`]: the drop then lets `LOCK` go.
    closed_cleanly: bool,
}

impl Database {
    pub(crate) fn from_inner(inner: Arc<Inner>) -> Database {
        Database {
            inner,
            closed_cleanly: false,
        }
    }
}

/// Counters updated without locks.
#[derive(Debug, Default)]
pub(crate) struct Counters {
    pub commits: AtomicU64,
    pub wal_bytes: AtomicU64,
    pub wal_since_checkpoint: AtomicU64,
    pub checkpoints: AtomicU64,
    pub compactions: AtomicU64,
}

/// One open database's state, in owned parts; each part keeps its own invariants
/// behind private fields and methods, and states on its type which locks may be held
/// when its locks are taken ([`crate::lock_order`] has the whole order and checks it
/// in debug builds). Built in one place, [`Inner::new`], from what recovery found.
pub(crate) struct Inner {
    /// Every file operation goes through it (`OpenOptions::storage`).
    pub storage: Arc<dyn crate::storage::Storage>,
    pub dir: PathBuf,
    pub wal_dir: PathBuf,
    pub data_dir: PathBuf,
    pub config: Config,
    /// The collections by name. Lock order: after the commit lock (staging creates
    /// and deletes under it), before a collection's `docs` and the readable files.
    pub collections: RwLock<HashMap<Arc<str>, Arc<Collection>>>,
    pub snapshots: Snapshots,
    /// Staging, the syncer hand-off and the batch counters.
    pub group_commit: GroupCommit,
    /// The I/O state and the readable data file generations.
    pub files: Files,
    pub memory: MemoryAccount,
    /// Closed, stopping, refusing writes after an I/O failure.
    pub life: Lifecycle,
    pub counters: Counters,
    /// Checkpoint and compaction serialisation and the background threads.
    pub maintenance: Maintenance,
    pub heal: crate::heal::HealState,
    /// Serialises secondary index DDL.
    pub secondary: crate::secondary::build::Registry,
    pub cache: Arc<crate::cache::DocCache>,
    pub opened_at: std::time::SystemTime,
    pub recovery: Mutex<RecoveryReport>,
    /// The shared commit log this database's batches go through, if any.
    pub shared: Option<crate::shared_log::Member>,
    pub self_ref: std::sync::Weak<Inner>,
    /// The directory's `LOCK`, held while open; [`Database::close`] lets it go at
    /// once, since the state may outlive the handle for a moment (a shared-log round's
    /// leader finishing this database's completion) and a reopen must not find it
    /// held.
    lock: Mutex<Option<crate::storage::LockGuard>>,
}

/// What recovery hands to [`Inner::new`]: where the files are, the rebuilt state, and
/// where writing goes on.
pub(crate) struct Recovered {
    pub storage: Arc<dyn crate::storage::Storage>,
    pub dir: PathBuf,
    pub wal_dir: PathBuf,
    pub data_dir: PathBuf,
    pub config: Config,
    pub lock: crate::storage::LockGuard,
    pub collections: HashMap<Arc<str>, Arc<Collection>>,
    pub memory: MemoryAccount,
    /// Bytes of data-file records the live versions point at.
    pub live_bytes: u64,
    /// The WAL writer, positioned after the last replayed commit.
    pub wal: WalWriter,
    pub data: DataFile,
    /// End of the data file after replay.
    pub data_len: u64,
    /// The checkpoint stored at open (its `seq` is the newest durable commit).
    pub checkpoint: crate::checkpoint::Checkpoint,
    pub index_snapshot: Option<crate::index_snapshot::OnDisk>,
    /// Bytes in WAL segments on disk.
    pub wal_bytes: u64,
    pub report: RecoveryReport,
    pub shared: Option<crate::shared_log::Member>,
    pub cache: Option<Arc<crate::cache::DocCache>>,
}

impl Inner {
    /// The one constructor: builds every part from what recovery found and starts the
    /// `interval` mode's fsync thread.
    pub(crate) fn new(r: Recovered) -> Arc<Inner> {
        let data = Arc::new(r.data);
        let seq = r.checkpoint.seq;
        let cache = r.cache.unwrap_or_else(|| {
            let bytes = crate::config::mib(r.config.memory.cache_mb);
            Arc::new(crate::cache::DocCache::new(bytes as usize))
        });
        let inner = Arc::new_cyclic(|weak| Inner {
            life: Lifecycle::new(&r.dir),
            dir: r.dir,
            wal_dir: r.wal_dir,
            data_dir: r.data_dir,
            config: r.config,
            collections: RwLock::new(r.collections),
            snapshots: Snapshots::new(seq),
            group_commit: GroupCommit::new(seq, r.data_len, data.generation, r.live_bytes),
            files: Files::new(Io {
                wal: r.wal,
                data,
                data_len: r.data_len,
                last_written_seq: seq,
                spare: (Vec::new(), Vec::new()),
                checkpointed: r.checkpoint,
                index_snapshot: r.index_snapshot,
                in_flight: false,
            }),
            memory: r.memory,
            storage: r.storage,
            counters: Counters {
                wal_bytes: AtomicU64::new(r.wal_bytes),
                ..Counters::default()
            },
            maintenance: Maintenance::new(),
            heal: Default::default(),
            secondary: Default::default(),
            cache,
            opened_at: std::time::SystemTime::now(),
            recovery: Mutex::new(r.report),
            shared: r.shared,
            self_ref: weak.clone(),
            lock: Mutex::new(Some(r.lock)),
        });
        inner.start_interval_syncer();
        inner
    }

    /// Records that a write or fsync failed (`what`: the operation and the error):
    /// writes are refused from now on, and reopening the database in this process is
    /// refused too (see [`crate::failure`]).
    pub(crate) fn record_failure(&self, what: &str) {
        tracing::error!(db = %self.dir.display(), failure = what,
            "a write or fsync failed; the database refuses writes until the process \
             restarts (check it with `docdb check` first)");
        self.life.poison(what);
    }

    pub(crate) fn check_writable(&self) -> Result<()> {
        self.life.check_writable()
    }

    pub(crate) fn collection(&self, name: &str) -> Result<Arc<Collection>> {
        self.life.check_open()?;
        let name = resolve_collection(name)?;
        self.collections
            .read()
            .get(name)
            .cloned()
            .ok_or(Error::CollectionNotFound)
    }

    /// The version of `id` a reader at `snapshot` sees (`None`: the newest visible).
    pub(crate) fn version_at(
        &self,
        coll: &Collection,
        id: u64,
        snapshot: Option<u64>,
    ) -> Option<Version> {
        let docs = coll.docs.read();
        // Read the visible number under the index lock so pruning (which takes the
        // write lock) cannot drop the version it selects.
        let snap = snapshot.unwrap_or_else(|| self.snapshots.visible());
        docs.get(&id).and_then(|c| c.at(snap)).copied()
    }

    /// Reads a version's payload. `Ok(None)` means its data file generation was
    /// retired by a compaction in the meantime: look the version up again.
    pub(crate) fn read_version(
        &self,
        coll: &Collection,
        id: u64,
        v: &Version,
    ) -> Result<Option<Vec<u8>>> {
        let Some(file) = self.files.readable(v.generation) else {
            return Ok(None);
        };
        match file.read_payload(v.offset, &coll.name, id, v.seq, v.len) {
            Ok(p) => Ok(Some(p)),
            Err(ReadError::Io(e)) => Err(e.into()),
            Err(ReadError::Corrupt(detail)) => Err(Error::Corrupt { detail }),
        }
    }

    /// Reads a version, healing it from the WAL if its record is corrupt and healing
    /// on read is enabled. `Ok(None)`: moved by a compaction, look it up again.
    fn read_or_heal(
        &self,
        coll: &Arc<Collection>,
        id: u64,
        v: &Version,
    ) -> Result<Option<Vec<u8>>> {
        let key = (coll.cache_number, id);
        if let Some(bytes) = self.cache.get(key, v.seq) {
            return Ok(Some(bytes.to_vec()));
        }
        let read = self.read_version(coll, id, v);
        if let Ok(Some(bytes)) = &read {
            self.cache.put(key, v.seq, bytes);
        }
        match read {
            Err(Error::Corrupt { detail }) => {
                if !self.config.healing.on_read_corruption {
                    return Err(Error::Corrupt { detail });
                }
                tracing::warn!(db = %self.dir.display(), collection = %coll.name, id, %detail,
                    "corrupt record found on read; healing from the WAL");
                self.heal_version(coll, id, v, crate::heal::HealTrigger::Read)
                    .map(Some)
            }
            other => other,
        }
    }

    /// Reads `id` at `snapshot` (or the newest visible), retrying across a compaction.
    pub(crate) fn read_doc(
        &self,
        coll: &Arc<Collection>,
        id: u64,
        snapshot: Option<u64>,
    ) -> Result<(Version, Vec<u8>)> {
        for _ in 0..64 {
            let v = self
                .version_at(coll, id, snapshot)
                .filter(Version::is_live)
                .ok_or(Error::NotFound)?;
            if let Some(p) = self.read_or_heal(coll, id, &v)? {
                return Ok((v, p));
            }
        }
        Err(Error::Corrupt {
            detail: format!("{}/{id}: data file kept moving under the read", coll.name),
        })
    }

    /// Up to `limit` live documents after `start_after` at `snapshot`, stopping before
    /// the row that would take the page's cost past `max_bytes` (each row costs its
    /// document's length plus [`SCAN_ROW_OVERHEAD`]), but never before the first row.
    /// The cost is decided from the index, before any document is read.
    pub(crate) fn scan_at(
        &self,
        coll: &Arc<Collection>,
        start_after: u64,
        limit: usize,
        max_bytes: usize,
        snapshot: Option<u64>,
    ) -> Result<ScanPage> {
        let limit = limit.min(MAX_SCAN_LIMIT);
        'retry: for _ in 0..64 {
            let (hits, more) = {
                let docs = coll.docs.read();
                let snap = snapshot.unwrap_or_else(|| self.snapshots.visible());
                // 0 means "from the start" (SPEC §8 command 15), so id 0 is reachable.
                let range = match start_after {
                    0 => docs.range(0..),
                    n => match n.checked_add(1) {
                        Some(from) => docs.range(from..),
                        None => docs.range(u64::MAX..u64::MAX), // after the last id: empty
                    },
                };
                let live = range
                    .filter_map(|(&id, c)| c.at(snap).filter(|v| v.is_live()).map(|v| (id, *v)));
                let mut hits: Vec<(u64, Version)> = Vec::new();
                let mut bytes = 0usize;
                let mut more = false;
                for (id, v) in live {
                    let cost = (v.len as usize).saturating_add(SCAN_ROW_OVERHEAD);
                    if hits.len() >= limit
                        || (!hits.is_empty() && bytes.saturating_add(cost) > max_bytes)
                    {
                        more = true;
                        break;
                    }
                    bytes = bytes.saturating_add(cost);
                    hits.push((id, v));
                }
                (hits, more)
            };
            let mut rows = Vec::with_capacity(hits.len());
            for (id, v) in hits {
                match self.read_or_heal(coll, id, &v)? {
                    Some(p) => rows.push((id, p)),
                    None => continue 'retry,
                }
            }
            return Ok(ScanPage { rows, more });
        }
        Err(Error::Corrupt {
            detail: format!("{}: data file kept moving under the scan", coll.name),
        })
    }
}

/// One page of a scan.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ScanPage {
    /// `(id, document)` in id order.
    pub rows: Vec<(u64, Vec<u8>)>,
    /// True when live documents follow the last row (the page stopped at its row
    /// limit or its byte budget); false when the scan reached the collection's end.
    pub more: bool,
}

/// What one scan row costs in a page's byte budget beyond its document's bytes: room
/// for the reply's framing of the row (`{"id":<20 digits>,"doc":…},` is 35 bytes).
pub const SCAN_ROW_OVERHEAD: usize = 64;

impl Inner {
    /// Checks a document about to be written: valid JSON, ≤ 16 MiB, nested at most
    /// `limits.max_depth` deep.
    pub(crate) fn validate_doc(&self, json: &[u8]) -> Result<()> {
        crate::json::validate(json, self.config.limits.max_depth)
    }

    /// Applies a patch to a stored document's bytes, within `[limits]`.
    pub(crate) fn patch_bytes(&self, current: &[u8], ops: &[u8]) -> Result<Vec<u8>> {
        let limits = &self.config.limits;
        // A document stored before the depth limit existed (or under a larger one) may
        // be too deep to parse safely: refuse it by name, it is not corrupt.
        crate::json::check_depth(current, limits.max_depth)?;
        let doc = crate::patch::parse_bounded(current).map_err(|_| Error::Corrupt {
            detail: "stored document is not valid JSON".into(),
        })?;
        let new = crate::patch::apply_limited(
            &doc,
            ops,
            crate::patch::Limits {
                max_depth: limits.max_depth,
                max_ops: limits.max_patch_ops,
            },
        )?;
        let bytes = serde_json::to_vec(&new).map_err(|_| Error::InvalidPatch)?;
        if bytes.len() > MAX_DOCUMENT_SIZE {
            return Err(Error::PayloadTooLarge);
        }
        Ok(bytes)
    }
}

impl Database {
    /// Opens (creating if needed) the database in `dir`.
    pub fn open(dir: impl AsRef<Path>, config: Config) -> Result<Database> {
        Self::open_with(dir, config, OpenOptions::default())
    }

    /// Opens with a shared memory budget, a separate WAL directory, or test hooks.
    pub fn open_with(dir: impl AsRef<Path>, config: Config, opts: OpenOptions) -> Result<Database> {
        crate::recovery::open(dir.as_ref(), config, opts)
    }

    /// What opening found and repaired.
    pub fn recovery_report(&self) -> RecoveryReport {
        self.inner.recovery.lock().clone()
    }

    /// When this handle opened the database.
    pub fn opened_at(&self) -> std::time::SystemTime {
        self.inner.opened_at
    }

    pub fn config(&self) -> &Config {
        &self.inner.config
    }

    pub fn path(&self) -> &Path {
        &self.inner.dir
    }

    /// True once a failed write or fsync made the database refuse writes for the
    /// rest of the process's life (reads still work); `/healthz` reports it.
    pub fn is_read_only(&self) -> bool {
        self.inner.life.is_poisoned()
    }

    fn doc_op(&self, collection: &str, id: u64, kind: DocKind, payload: Vec<u8>) -> Result<()> {
        let coll = self.inner.collection(collection)?;
        self.inner.commit(&[StagedOp::Doc {
            coll,
            id,
            kind,
            payload,
            not_after: None,
        }])?;
        Ok(())
    }

    /// Inserts a document; fails with `AlreadyExists` if `id` exists.
    pub fn create(&self, collection: &str, id: u64, json: &[u8]) -> Result<()> {
        self.inner.validate_doc(json)?;
        self.doc_op(collection, id, DocKind::Create, json.to_vec())
    }

    /// Replaces a document; fails with `NotFound` if it does not exist.
    pub fn update(&self, collection: &str, id: u64, json: &[u8]) -> Result<()> {
        self.inner.validate_doc(json)?;
        self.doc_op(collection, id, DocKind::Update, json.to_vec())
    }

    /// Deletes a document; fails with `NotFound` if it does not exist.
    pub fn delete(&self, collection: &str, id: u64) -> Result<()> {
        self.doc_op(collection, id, DocKind::Delete, Vec::new())
    }

    /// The newest committed version of a document.
    pub fn read(&self, collection: &str, id: u64) -> Result<Vec<u8>> {
        let coll = self.inner.collection(collection)?;
        Ok(self.inner.read_doc(&coll, id, None)?.1)
    }

    /// Applies patch operations (SPEC §2) to a document, atomically: a concurrent
    /// write to the same document is never lost (the patch is re-applied on top of
    /// it). Returns the new document.
    pub fn patch(&self, collection: &str, id: u64, ops: &[u8]) -> Result<Vec<u8>> {
        let coll = self.inner.collection(collection)?;
        for _ in 0..1000 {
            let (v, current) = self.inner.read_doc(&coll, id, None)?;
            let new = self.inner.patch_bytes(&current, ops)?;
            let op = StagedOp::Doc {
                coll: coll.clone(),
                id,
                kind: DocKind::Update,
                payload: new.clone(),
                not_after: Some(v.seq),
            };
            match self.inner.commit(&[op]) {
                Ok(_) => return Ok(new),
                // Someone wrote the document after our read: wait until their write is
                // visible, then patch again on top of it.
                Err(Error::Conflict) => {
                    let last = self.inner.last_staged();
                    self.inner.wait_durable(last)?;
                }
                Err(e) => return Err(e),
            }
        }
        Err(Error::Conflict)
    }

    /// Up to `limit` (at most 1000) documents with ids greater than `start_after` (0:
    /// from the start, id 0 included), in id order, at one snapshot.
    pub fn scan(
        &self,
        collection: &str,
        start_after: u64,
        limit: usize,
    ) -> Result<Vec<(u64, Vec<u8>)>> {
        Ok(self
            .scan_page(collection, start_after, limit, usize::MAX)?
            .rows)
    }

    /// As [`Database::scan`], but the page also stops before the row that would take
    /// its cost past `max_bytes` (see [`ScanPage`] and [`SCAN_ROW_OVERHEAD`]; the
    /// first row is always included), deciding from the index before reading, and
    /// says whether more documents follow.
    pub fn scan_page(
        &self,
        collection: &str,
        start_after: u64,
        limit: usize,
        max_bytes: usize,
    ) -> Result<ScanPage> {
        let coll = self.inner.collection(collection)?;
        self.inner
            .scan_at(&coll, start_after, limit, max_bytes, None)
    }

    /// One page of a query (SPEC §11) at one snapshot: rows matching its filter, in
    /// its sort order, after its cursor, at most its limit.
    pub fn query(
        &self,
        collection: &str,
        query: &crate::query::Query,
    ) -> Result<crate::query::QueryPage> {
        self.query_page(collection, query, usize::MAX)
    }

    /// As [`Database::query`], but the page also stops before the row that would take
    /// its cost past `max_bytes` (as [`Database::scan_page`]; the first row is always
    /// included), and then says where to resume in `next`.
    pub fn query_page(
        &self,
        collection: &str,
        query: &crate::query::Query,
        max_bytes: usize,
    ) -> Result<crate::query::QueryPage> {
        self.read_at(collection)?.query_page(query, max_bytes)
    }

    /// Fixes a read of `collection` at the snapshot of this moment, to run later
    /// ([`ReadAt::query_page`]): it sees every write made visible before this call and
    /// none after, however long it waits. The snapshot stays open (old versions are
    /// kept) until the `ReadAt` is dropped.
    pub fn read_at(&self, collection: &str) -> Result<ReadAt> {
        let coll = self.inner.collection(collection)?;
        Ok(ReadAt {
            snapshot: OpenSnapshot::open(&self.inner),
            coll,
        })
    }

    pub fn create_collection(&self, name: &str) -> Result<()> {
        let name = crate::name::resolve_collection(name)?.to_owned();
        self.inner.commit(&[StagedOp::CreateCollection(name)])?;
        Ok(())
    }

    /// Deletes an empty collection.
    pub fn delete_collection(&self, name: &str) -> Result<()> {
        let name = crate::name::resolve_collection(name)?.to_owned();
        self.inner.commit(&[StagedOp::DeleteCollection(name)])?;
        Ok(())
    }

    /// Collection names, sorted.
    pub fn list_collections(&self) -> Vec<String> {
        let mut v: Vec<String> = self
            .inner
            .collections
            .read()
            .keys()
            .map(|k| k.to_string())
            .collect();
        v.sort();
        v
    }

    /// Starts a transaction reading at the current snapshot.
    pub fn begin(&self) -> crate::tx::Transaction<'_> {
        crate::tx::Transaction::new(self)
    }

    pub fn stats(&self) -> Stats {
        let i = &self.inner;
        let colls: Vec<Arc<Collection>> = i.collections.read().values().cloned().collect();
        let (mut live, mut tombs) = (0, 0);
        // O(collections), never O(documents): metrics and ListDBs call this for every
        // open database, and counting versions held writers up for a whole scan.
        for c in &colls {
            let l = c.live();
            live += l;
            tombs += (c.docs.read().len() as u64).saturating_sub(l);
        }
        let (data_bytes, live_bytes) = {
            let c = i.group_commit.lock_commit();
            (c.data_size(), c.live_bytes())
        };
        Stats {
            live_docs: live,
            tombstones: tombs,
            collections: colls.len() as u64,
            wal_bytes: i.counters.wal_bytes.load(Ordering::Relaxed),
            data_bytes,
            dead_bytes: data_bytes.saturating_sub(live_bytes + crate::data::file::HEADER_LEN),
            memory_used: i.memory.used(),
            tx_count: i.counters.commits.load(Ordering::Relaxed),
            open_snapshots: i.snapshots.open_count() as u64,
            visible_seq: i.snapshots.visible(),
            checkpoints: i.counters.checkpoints.load(Ordering::Relaxed),
            compactions: i.counters.compactions.load(Ordering::Relaxed),
            group_commit: i.group_commit.stats(),
        }
    }

    /// Makes the data file durable and records the WAL position replay starts from,
    /// then trims WAL segments no longer needed.
    pub fn checkpoint(&self) -> Result<()> {
        self.inner.checkpoint()
    }

    /// Rewrites the data file with only the versions still needed; returns the bytes
    /// reclaimed. Reads and writes continue meanwhile.
    pub fn compact(&self) -> Result<u64> {
        self.inner.compact()
    }

    /// Waits until the background checkpoint or compaction started so far (if any) has
    /// finished. Tests call it after each write to keep the order of file operations
    /// deterministic (the I/O-failure matrix numbers every call).
    #[doc(hidden)]
    pub fn wait_for_maintenance(&self) {
        self.inner.maintenance.wait_current();
    }

    /// Checks every checksum of the WAL and the data file.
    pub fn verify(&self) -> Result<crate::verify::VerifyReport> {
        crate::verify::verify(&self.inner)
    }

    /// Flushes, checkpoints and closes. Further calls on any handle fail with `Closed`.
    pub fn close(mut self) -> Result<()> {
        let r = self.inner.checkpoint_with(true).and_then(|()| {
            // The zeros written ahead of the log are only of use while it grows.
            Ok(self.inner.files.io().wal.release_ahead()?)
        });
        if r.is_ok() {
            if let Some(m) = &self.inner.shared {
                // The checkpoint covers every commit: the shared log's trim need not
                // fsync this WAL (nor keep its file open).
                m.dep.set(None);
            }
        }
        self.inner.life.mark_closed();
        self.closed_cleanly = r.is_ok();
        r
    }
}

impl Drop for Database {
    fn drop(&mut self) {
        self.inner.life.stop();
        self.inner.maintenance.join();
        if self.closed_cleanly {
            // Closed: everything durable and checkpointed, no write accepted, no
            // maintenance running. The directory may be opened again (or dropped) at
            // once, even while a shared-log leader finishes this database's last
            // completion.
            drop(self.inner.lock.lock().take());
        }
    }
}

/// A snapshot kept open until dropped, so no version or index entry it sees is
/// pruned (a query page, an index scan).
pub(crate) struct OpenSnapshot {
    inner: Arc<Inner>,
    pub(crate) seq: u64,
}

impl OpenSnapshot {
    /// Opens one at the newest visible commit.
    pub(crate) fn open(inner: &Arc<Inner>) -> OpenSnapshot {
        OpenSnapshot {
            inner: inner.clone(),
            seq: inner.snapshots.open(),
        }
    }
}

impl Drop for OpenSnapshot {
    fn drop(&mut self) {
        self.inner.snapshots.close(self.seq);
    }
}

/// A read fixed at one snapshot of a collection ([`Database::read_at`]).
pub struct ReadAt {
    snapshot: OpenSnapshot,
    coll: Arc<Collection>,
}

impl ReadAt {
    /// [`Database::query_page`] at this read's snapshot.
    pub fn query_page(
        &self,
        query: &crate::query::Query,
        max_bytes: usize,
    ) -> Result<crate::query::QueryPage> {
        let s = &self.snapshot;
        let page = crate::query::plan::run(&s.inner, &self.coll, query, max_bytes, s.seq, None)?;
        // INVARIANT: a run without a budget never gives up.
        Ok(page.expect("an unbudgeted query run returns a page"))
    }

    /// As [`ReadAt::query_page`], but gives up (`Ok(None)`) once the page has examined
    /// `budget` index entries and documents together, so a caller can answer a light
    /// query at once and hand a heavy one on; run again, it gives the same page (the
    /// snapshot is this read's).
    pub fn query_page_within(
        &self,
        query: &crate::query::Query,
        max_bytes: usize,
        budget: u64,
    ) -> Result<Option<crate::query::QueryPage>> {
        let s = &self.snapshot;
        crate::query::plan::run(&s.inner, &self.coll, query, max_bytes, s.seq, Some(budget))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::storage::testing::{Fault, FaultKind, FaultStorage, FileKind, OpClass};

    /// The crate's unit tests check the lock order (`lock_order.rs`): drive every path
    /// that takes several locks — commits, a batch, a transaction, a patch, a
    /// checkpoint, a compaction, healing, a checkpoint's failed fsync (which marks the
    /// database failed under `io`), close — so a change that takes them out of order
    /// panics here rather than deadlocking somewhere rare.
    #[test]
    fn every_locking_path_keeps_the_lock_order() {
        let d = tempfile::tempdir().unwrap();
        let faults = FaultStorage::std();
        let opts = OpenOptions {
            storage: Some(faults.handle()),
            ..Default::default()
        };
        let mut config = Config::default();
        config.wal.fsync.mode = crate::config::FsyncMode::Interval;
        config.wal.fsync.interval_ms = 1;
        let db = Arc::new(Database::open_with(d.path(), config, opts).unwrap());
        db.create_collection("c").unwrap();
        let writers: Vec<_> = (0..4u64)
            .map(|t| {
                let db = db.clone();
                std::thread::spawn(move || {
                    for i in 0..50 {
                        let id = t * 1000 + i;
                        db.create("c", id, b"{\"a\":1}").unwrap();
                        db.patch("c", id, br#"[{"op":"replace","path":"/a","value":2}]"#)
                            .unwrap();
                        if i % 2 == 0 {
                            db.delete("c", id).unwrap();
                        }
                    }
                })
            })
            .collect();
        for w in writers {
            w.join().unwrap();
        }
        let mut b = db.batch();
        b.create("c", 5000, b"1").unwrap();
        assert_eq!(b.read("c", 5000).unwrap(), b"1");
        b.update("c", 5000, b"4").unwrap();
        let unflushed = b.detach().unwrap();
        let (tx_done, rx_done) = std::sync::mpsc::channel();
        db.when_flushed(unflushed, move |r| tx_done.send(r).unwrap());
        rx_done.recv().unwrap().unwrap();
        let mut tx = db.begin();
        tx.create("c", 5001, b"2").unwrap();
        tx.commit().unwrap();
        db.checkpoint().unwrap();
        db.compact().unwrap();
        assert_eq!(db.read("c", 5001).unwrap(), b"2");
        db.heal_all().unwrap();
        db.heal_scan().unwrap();
        let _ = db.heal("c", 5001).unwrap();
        db.verify().unwrap();
        let _ = db.stats();
        db.create("c", 5002, b"3").unwrap();
        faults.arm(Fault::first(OpClass::Sync, 1, FaultKind::Eio).on(FileKind::Data));
        assert!(db.checkpoint().is_err());
        assert!(db.is_read_only());
        let db = Arc::try_unwrap(db).ok().unwrap();
        let _ = db.close();
    }
}
