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
use std::fs::File;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;

use parking_lot::{Condvar, Mutex, RwLock};

use crate::commit::{CommitState, DocKind, StagedOp, SyncState};
use crate::config::Config;
use crate::data::file::{DataFile, ReadError};
use crate::error::{Error, Result};
use crate::faults::Faults;
use crate::index::{Collection, Version};
use crate::memory::{MemoryAccount, MemoryBudget};
use crate::name::resolve_collection;
use crate::snapshot::Snapshots;
use crate::stats::{GroupCounters, Stats};
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
    /// Test hook: make WAL writes or fsyncs fail.
    #[doc(hidden)]
    pub faults: Option<Arc<Faults>>,
}

/// What opening found and repaired.
#[derive(Debug, Clone, Default)]
pub struct RecoveryReport {
    /// WAL commit records replayed since the last checkpoint.
    pub replayed_records: u64,
    pub replayed_bytes: u64,
    /// Data-file records read to rebuild the index.
    pub data_records: u64,
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

/// State owned by whoever writes files: the syncer, a checkpoint, a compaction.
pub(crate) struct Io {
    pub wal: WalWriter,
    pub data: Arc<DataFile>,
    /// End of what has been written to `data`.
    pub data_len: u64,
    /// Highest sequence number written to the WAL.
    pub last_written_seq: u64,
    /// Emptied buffers of the last batch written, swapped in for the next batch's WAL
    /// and data bytes so staging does not regrow them from nothing.
    pub spare: (Vec<u8>, Vec<u8>),
    /// The checkpoint last stored: a checkpoint that would store the same one has
    /// nothing to make durable and skips its fsyncs (closing an idle database is free).
    pub checkpointed: crate::checkpoint::Checkpoint,
}

pub(crate) struct Inner {
    pub dir: PathBuf,
    pub wal_dir: PathBuf,
    pub data_dir: PathBuf,
    pub config: Config,
    pub collections: RwLock<HashMap<Arc<str>, Arc<Collection>>>,
    pub snapshots: Snapshots,
    pub commit: Mutex<CommitState>,
    pub sync: Mutex<SyncState>,
    pub sync_cv: Condvar,
    pub io: Mutex<Io>,
    /// Readable data file generations (two while a compaction swaps them).
    pub files: RwLock<Vec<Arc<DataFile>>>,
    pub memory: MemoryAccount,
    pub poisoned: AtomicBool,
    pub closed: AtomicBool,
    pub counters: Counters,
    pub group: GroupCounters,
    /// Serialises checkpoints and compactions.
    pub maintenance_lock: Mutex<()>,
    pub maintenance: Mutex<Option<JoinHandle<()>>>,
    pub maintenance_queued: AtomicBool,
    pub interval_thread: Mutex<Option<JoinHandle<()>>>,
    pub heal: crate::heal::HealState,
    pub cache: crate::cache::DocCache,
    pub opened_at: std::time::SystemTime,
    pub recovery: Mutex<RecoveryReport>,
    /// Set when the handle is dropped or closed; background threads stop.
    pub stopping: AtomicBool,
    pub self_ref: std::sync::Weak<Inner>,
    pub _lock: File,
}

impl Inner {
    pub(crate) fn check_writable(&self) -> Result<()> {
        if self.closed.load(Ordering::Acquire) {
            return Err(Error::Closed);
        }
        if self.poisoned.load(Ordering::Acquire) {
            return Err(Error::ReadOnly);
        }
        Ok(())
    }

    pub(crate) fn collection(&self, name: &str) -> Result<Arc<Collection>> {
        if self.closed.load(Ordering::Acquire) {
            return Err(Error::Closed);
        }
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
        let file = {
            let files = self.files.read();
            files.iter().find(|f| f.generation == v.generation).cloned()
        };
        let Some(file) = file else { return Ok(None) };
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
        let key = (Arc::as_ptr(coll) as usize, id);
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

    pub(crate) fn scan_at(
        &self,
        coll: &Arc<Collection>,
        start_after: u64,
        limit: usize,
        snapshot: Option<u64>,
    ) -> Result<Vec<(u64, Vec<u8>)>> {
        let limit = limit.min(MAX_SCAN_LIMIT);
        'retry: for _ in 0..64 {
            let hits: Vec<(u64, Version)> = {
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
                range
                    .filter_map(|(&id, c)| c.at(snap).filter(|v| v.is_live()).map(|v| (id, *v)))
                    .take(limit)
                    .collect()
            };
            let mut out = Vec::with_capacity(hits.len());
            for (id, v) in hits {
                match self.read_or_heal(coll, id, &v)? {
                    Some(p) => out.push((id, p)),
                    None => continue 'retry,
                }
            }
            return Ok(out);
        }
        Err(Error::Corrupt {
            detail: format!("{}: data file kept moving under the scan", coll.name),
        })
    }
}

/// Checks that `json` is one valid JSON value of allowed size.
pub(crate) fn validate_json(json: &[u8]) -> Result<()> {
    if json.len() > MAX_DOCUMENT_SIZE {
        return Err(Error::PayloadTooLarge);
    }
    // IMPORTANT: skipping a string (IgnoredAny) does not check its UTF-8, so check
    // the whole payload first; a stored document must be readable JSON text.
    std::str::from_utf8(json).map_err(|_| Error::InvalidJson)?;
    serde_json::from_slice::<serde::de::IgnoredAny>(json).map_err(|_| Error::InvalidJson)?;
    Ok(())
}

/// Applies a patch to a stored document's bytes.
pub(crate) fn patch_bytes(current: &[u8], ops: &[u8]) -> Result<Vec<u8>> {
    let doc: serde_json::Value = serde_json::from_slice(current).map_err(|_| Error::Corrupt {
        detail: "stored document is not valid JSON".into(),
    })?;
    let new = crate::patch::apply(&doc, ops)?;
    let bytes = serde_json::to_vec(&new).map_err(|_| Error::InvalidPatch)?;
    if bytes.len() > MAX_DOCUMENT_SIZE {
        return Err(Error::PayloadTooLarge);
    }
    Ok(bytes)
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
        validate_json(json)?;
        self.doc_op(collection, id, DocKind::Create, json.to_vec())
    }

    /// Replaces a document; fails with `NotFound` if it does not exist.
    pub fn update(&self, collection: &str, id: u64, json: &[u8]) -> Result<()> {
        validate_json(json)?;
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
            let new = patch_bytes(&current, ops)?;
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
        let coll = self.inner.collection(collection)?;
        self.inner.scan_at(&coll, start_after, limit, None)
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
            let c = i.commit.lock();
            (c.data_base + c.data_buf.len() as u64, c.live_bytes)
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
            group_commit: i.group.snapshot(),
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

    /// Checks every checksum of the WAL and the data file.
    pub fn verify(&self) -> Result<crate::verify::VerifyReport> {
        crate::verify::verify(&self.inner)
    }

    /// Flushes, checkpoints and closes. Further calls on any handle fail with `Closed`.
    pub fn close(self) -> Result<()> {
        let r = self.inner.checkpoint().and_then(|()| {
            // The zeros written ahead of the log are only of use while it grows.
            Ok(self.inner.io.lock().wal.release_ahead()?)
        });
        self.inner.closed.store(true, Ordering::Release);
        r
    }
}

impl Drop for Database {
    fn drop(&mut self) {
        self.inner.stopping.store(true, Ordering::Release);
        let handle = self.inner.maintenance.lock().take();
        if let Some(h) = handle {
            let _ = h.join();
        }
        if let Some(h) = self.inner.interval_thread.lock().take() {
            let _ = h.join();
        }
    }
}
