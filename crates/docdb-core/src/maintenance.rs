//! Background upkeep: checkpoints (make the data file durable, move the replay start,
//! trim old WAL segments), online compaction, and the periodic fsync of `interval`
//! mode. Checkpoints and compactions run on a short-lived thread, one at a time, so no
//! writer pays for them.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::Duration;

use parking_lot::Mutex;

use crate::checkpoint::Checkpoint;
use crate::config::FsyncMode;
use crate::data::file::{data_path, DataFile, HEADER_LEN as DATA_HEADER};
use crate::data::record::{self as drec, Kind};
use crate::db::Inner;
use crate::error::{Error, Result};
use crate::index_snapshot::{self, SnapshotKey};
use crate::lock_order::{Level, OrderedGuard, OrderedMutex};
use crate::rebuild::Rebuild;
use crate::wal::segment::{list_segments, segment_path};

/// The background upkeep of one database: the lock that serialises checkpoints and
/// compactions, the maintenance thread (at most one queued or running) and the
/// `interval` mode's fsync thread.
///
/// Lock order: the maintenance lock ([`Level::Maintenance`]) is the first lock taken —
/// nothing may be held when it is; `io`, the commit lock and the rest may be taken
/// under it (a checkpoint waits for durability and writes holding it). The thread
/// slots are leaves: nothing is taken while they are held.
pub(crate) struct Maintenance {
    lock: OrderedMutex<()>,
    thread: Mutex<Option<JoinHandle<()>>>,
    /// Set while a maintenance thread is queued or running.
    queued: AtomicBool,
    interval_thread: Mutex<Option<JoinHandle<()>>>,
}

impl Maintenance {
    pub(crate) fn new() -> Maintenance {
        Maintenance {
            lock: OrderedMutex::new(Level::Maintenance, ()),
            thread: Mutex::new(None),
            queued: AtomicBool::new(false),
            interval_thread: Mutex::new(None),
        }
    }

    /// Held for a whole checkpoint or compaction: they run one at a time.
    fn serialise(&self) -> OrderedGuard<'_, ()> {
        self.lock.lock()
    }

    /// Waits for the checkpoint or compaction thread started so far, if any, to end.
    pub(crate) fn wait_current(&self) {
        let handle = self.thread.lock().take();
        if let Some(h) = handle {
            let _ = h.join();
        }
    }

    /// Waits for the background threads to end (after `Lifecycle::stop`).
    pub(crate) fn join(&self) {
        let handle = self.thread.lock().take();
        if let Some(h) = handle {
            let _ = h.join();
        }
        let handle = self.interval_thread.lock().take();
        if let Some(h) = handle {
            let _ = h.join();
        }
    }
}

impl Inner {
    /// Marks an I/O failure: no more writes in this process (see [`crate::failure`]).
    /// Running out of file descriptors is not one: nothing written is in doubt, the
    /// checkpoint or compaction that needed a file is simply retried later.
    fn poison(&self, what: &str, e: Error) -> Error {
        if e.is_out_of_fds() {
            tracing::warn!(db = %self.dir.display(), error = %e,
                "no file descriptor for a checkpoint or compaction; retrying later");
            return e;
        }
        self.record_failure(&format!("{what}: {e}"));
        self.group_commit.mark_failed();
        e
    }

    /// Starts the maintenance thread unless one is queued or running.
    pub(crate) fn request_maintenance(&self) {
        let m = &self.maintenance;
        if self.life.is_stopping() || m.queued.swap(true, Ordering::AcqRel) {
            return;
        }
        let Some(me) = self.self_ref.upgrade() else {
            return;
        };
        let mut slot = m.thread.lock();
        if let Some(h) = slot.take() {
            // The previous run cleared `queued` as its last step.
            let _ = h.join();
        }
        let spawned = std::thread::Builder::new()
            .name("docdb-maintenance".into())
            .spawn(move || {
                if !me.life.is_stopping() {
                    // A database closed meanwhile needs neither (close checkpoints).
                    match me.checkpoint() {
                        Ok(()) | Err(Error::Closed) => {}
                        Err(e) => {
                            tracing::warn!(db = %me.dir.display(), error = %e, "checkpoint failed")
                        }
                    }
                    if me.compaction_due() {
                        match me.compact() {
                            Ok(_) | Err(Error::Closed) => {}
                            Err(e) => tracing::warn!(db = %me.dir.display(), error = %e,
                                "compaction failed"),
                        }
                    }
                }
                // Cleared last: a set flag means a thread is running or about to.
                me.maintenance.queued.store(false, Ordering::Release);
            });
        match spawned {
            Ok(h) => *slot = Some(h),
            Err(e) => {
                m.queued.store(false, Ordering::Release);
                tracing::warn!(error = %e, "could not start maintenance thread");
            }
        }
    }

    fn compaction_due(&self) -> bool {
        let c = self.group_commit.lock_commit();
        let size = c.data_size();
        let dead = size.saturating_sub(c.live_bytes() + DATA_HEADER);
        size > self.config.compaction_bytes()
            && dead as f64 > self.config.compaction.tombstone_ratio * size as f64
    }

    /// See [`crate::Database::checkpoint`].
    pub(crate) fn checkpoint(&self) -> Result<()> {
        self.checkpoint_with(false)
    }

    /// A checkpoint; `closing` also brings the index snapshot up to date, so the next
    /// open scans nothing.
    pub(crate) fn checkpoint_with(&self, closing: bool) -> Result<()> {
        let _m = self.maintenance.serialise();
        self.check_writable()?;
        self.wait_durable(self.last_staged())?;
        let (file, ckpt, changed) = {
            let io = self.files.io();
            if !matches!(
                self.config.wal.fsync.mode,
                FsyncMode::Always | FsyncMode::Group
            ) {
                io.wal
                    .sync()
                    .map_err(|e| self.poison("WAL fsync", e.into()))?;
            }
            let ckpt = Checkpoint {
                seq: io.last_written_seq,
                wal: io.wal.position(),
                data_generation: io.data.generation,
                data_len: io.data_len,
            };
            // Equal: nothing written since the last checkpoint, nothing to make durable.
            (io.data.clone(), ckpt, ckpt != io.checkpointed)
        };
        if changed {
            // The syncer may append past `data_len` meanwhile; the fsync covers at least
            // everything before it, which is all the checkpoint claims.
            file.sync()
                .map_err(|e| self.poison("data file fsync", e.into()))?;
            self.counters
                .wal_since_checkpoint
                .store(0, Ordering::Relaxed);
            ckpt.store(&*self.storage, &self.dir)
                .map_err(|e| self.poison("CHECKPOINT write", e))?;
            {
                // Checkpoints are serialised by the maintenance lock, so none newer was
                // stored meanwhile.
                let mut io = self.files.io();
                io.checkpointed = ckpt;
            }
            self.counters.checkpoints.fetch_add(1, Ordering::Relaxed);
            self.trim_wal(ckpt.wal.segment)?;
            self.prune_index();
        }
        self.refresh_index_snapshot(&file, &ckpt, closing);
        Ok(())
    }

    /// Writes `INDEX` for the stored checkpoint `ckpt` when worth it
    /// ([`index_snapshot::worth_rewriting`]), built from the data file — the snapshot
    /// on disk plus a scan of the bytes after it, or a scan of the whole checkpointed
    /// part after a compaction — never from the live index, whose pruning forgets
    /// versions a scan would find. Holds no lock but the maintenance lock: writers go
    /// on meanwhile. A failure only costs the next open a longer scan: it is logged,
    /// never an error.
    fn refresh_index_snapshot(&self, file: &DataFile, ckpt: &Checkpoint, closing: bool) {
        let on_disk = self.files.io().index_snapshot;
        let key = SnapshotKey::of(ckpt);
        if !index_snapshot::worth_rewriting(on_disk, key, closing) {
            return;
        }
        let storage = &*self.storage;
        let started = std::time::Instant::now();
        let built = (|| -> Result<Option<Rebuild>> {
            let base = match on_disk {
                Some(d) if d.key.generation == key.generation => {
                    match index_snapshot::load(storage, &self.dir, ckpt, file) {
                        Ok(Some(l)) => Some(l),
                        Ok(None) => None,
                        Err(why) => {
                            tracing::warn!(db = %self.dir.display(), reason = %why,
                                "index snapshot unreadable; rebuilding it from a full scan");
                            None
                        }
                    }
                }
                _ => None,
            };
            let (mut rb, from) = match base {
                Some(l) => (l.rebuild, l.on_disk.key.data_len),
                None => (Rebuild::default(), DATA_HEADER),
            };
            let mut damaged = false;
            rb.scan(file, from, ckpt.data_len, |_, _| damaged = true)?;
            // A damaged stretch: open scans it (and replays the whole WAL) instead.
            Ok((!damaged).then_some(rb))
        })();
        let rb = match built {
            Ok(Some(rb)) => rb,
            Ok(None) => {
                tracing::warn!(db = %self.dir.display(),
                    "data file has damaged records; no index snapshot written");
                return;
            }
            Err(e) => {
                tracing::warn!(db = %self.dir.display(), error = %e,
                    "could not build the index snapshot");
                return;
            }
        };
        let (colls, _) = rb.finish();
        let stored = index_snapshot::tail_crc(file, key.data_len).and_then(|tail| {
            let bytes = index_snapshot::encode(key, tail, &colls);
            index_snapshot::store(storage, &self.dir, &bytes).map(|()| bytes)
        });
        drop(colls);
        match stored {
            Ok(bytes) => {
                self.files.io().index_snapshot = Some(index_snapshot::OnDisk {
                    key,
                    file_len: bytes.len() as u64,
                });
                tracing::debug!(db = %self.dir.display(), bytes = bytes.len(),
                    took = ?started.elapsed(), "index snapshot written");
            }
            Err(e) => tracing::warn!(db = %self.dir.display(), error = %e,
                "could not write the index snapshot"),
        }
    }

    /// Deletes segments wholly before `first_needed`, keeping the newest
    /// `keep_segments` of them (healing reads old copies from them).
    fn trim_wal(&self, first_needed: u64) -> Result<()> {
        let st = &*self.storage;
        let old: Vec<u64> = list_segments(st, &self.wal_dir)?
            .into_iter()
            .filter(|&s| s < first_needed)
            .collect();
        let n = old.len().saturating_sub(self.config.wal.keep_segments);
        for &s in &old[..n] {
            let p = segment_path(&self.wal_dir, s);
            let len = st.file_len(&p).unwrap_or(0);
            st.remove_file(&p)?;
            self.counters.wal_bytes.fetch_sub(
                len.min(self.counters.wal_bytes.load(Ordering::Relaxed)),
                Ordering::Relaxed,
            );
        }
        if n > 0 {
            st.sync_dir(&self.wal_dir)?;
        }
        Ok(())
    }

    /// Drops versions no snapshot can see, and tombstones everyone sees.
    fn prune_index(&self) {
        let oldest = self.snapshots.oldest();
        let colls: Vec<_> = self.collections.read().values().cloned().collect();
        for c in colls {
            c.docs.write().retain(|_, chain| !chain.prune(oldest));
            for index in c.indexes.read().iter() {
                index.write().prune(oldest);
            }
        }
    }

    /// See [`crate::Database::compact`].
    ///
    /// 1. Under the I/O lock, note the cut: the written length of the current file.
    /// 2. Without locks, copy every indexed version below the cut (raw bytes, damage
    ///    included so healing still sees it) into a temp file of the next generation,
    ///    and fsync it.
    /// 3. Under the I/O and commit locks, copy the bytes written since the cut, fsync,
    ///    rename into place, remap the index and the staged-but-unwritten offsets,
    ///    switch writers and readers to the new file, and store a checkpoint naming it.
    /// 4. Delete the old file. A crash before the checkpoint leaves the old generation
    ///    current (the new one is removed at open); after it, the new one.
    pub(crate) fn compact(&self) -> Result<u64> {
        let _m = self.maintenance.serialise();
        self.check_writable()?;
        self.wait_durable(self.last_staged())?;
        self.prune_index();
        let (old, cut) = {
            let io = self.files.io();
            (io.data.clone(), io.data_len)
        };
        let generation = old.generation + 1;
        let final_path = data_path(&self.data_dir, generation);
        let mut tmp_path = final_path.clone().into_os_string();
        tmp_path.push(".tmp");
        let s = &*self.storage;
        let new = DataFile::create(s, &self.data_dir, generation, tmp_path.into())?;

        // Step 2: the bulk copy, concurrent with reads and writes.
        let mut out: Vec<u8> = Vec::new();
        let mut new_len = DATA_HEADER;
        let mut moved: HashMap<u64, u64> = HashMap::new();
        let colls: Vec<_> = self.collections.read().values().cloned().collect();
        for coll in &colls {
            if coll.created_seq > 0 {
                drec::encode(
                    &mut out,
                    Kind::CreateCollection,
                    &coll.name,
                    0,
                    coll.created_seq,
                    &[],
                );
            }
            let versions: Vec<(u64, crate::index::Version)> = coll
                .docs
                .read()
                .iter()
                .flat_map(|(&id, ch)| ch.versions().iter().map(move |v| (id, *v)))
                .filter(|(_, v)| v.generation == old.generation && v.offset < cut)
                .collect();
            for (_, v) in versions {
                let len = drec::FIXED + coll.name.len() + v.len as usize;
                let raw = old.read_raw(v.offset, len)?;
                moved.insert(v.offset, new_len + out.len() as u64);
                out.extend_from_slice(&raw);
                if out.len() >= 8 * 1024 * 1024 {
                    new.write_at(&out, new_len)?;
                    new_len += out.len() as u64;
                    out.clear();
                }
            }
        }
        new.write_at(&out, new_len)?;
        new_len += out.len() as u64;
        // The bulk of the new file is made durable here, with no lock held, so the
        // switch's fsync under the locks covers only the tail written since the cut.
        new.sync()
            .map_err(|e| self.poison("compacted data file fsync", e.into()))?;

        // Step 3: the switch, with writers paused.
        let mut io = self.files.io();
        let mut c = self.group_commit.lock_commit();
        let tail_len = io.data_len - cut;
        if tail_len > 0 {
            let tail = old.read_raw(cut, tail_len as usize)?;
            new.write_at(&tail, new_len)?;
        }
        let tail_start = new_len;
        let remap = |off: u64| -> Option<u64> {
            if off >= cut {
                Some(off - cut + tail_start)
            } else {
                moved.get(&off).copied()
            }
        };
        new.sync()
            .map_err(|e| self.poison("compacted data file fsync", e.into()))?;
        s.rename(&new.path, &final_path)?;
        s.sync_dir(&self.data_dir)?;
        let new = Arc::new(DataFile::open(s, &self.data_dir, generation)?);
        let colls: Vec<_> = self.collections.read().values().cloned().collect();
        for coll in &colls {
            let mut docs = coll.docs.write();
            for chain in docs.values_mut() {
                for v in chain.versions_mut() {
                    if v.generation == old.generation {
                        // Every version below the cut existed in step 2 (records are
                        // never added below it), so it was copied.
                        let Some(off) = remap(v.offset) else {
                            return Err(Error::Format(format!(
                                "compaction lost track of a version at offset {}",
                                v.offset
                            )));
                        };
                        v.offset = off;
                        v.generation = generation;
                    }
                }
            }
        }
        let written_end = tail_start + tail_len;
        let reclaimed = io.data_len.saturating_sub(written_end);
        c.switch_generation(generation, written_end);
        io.data = new.clone();
        io.data_len = written_end;
        self.files.add_readable(new.clone());
        let ckpt = Checkpoint {
            seq: io.last_written_seq,
            wal: io.wal.position(),
            data_generation: generation,
            data_len: written_end,
        };
        ckpt.store(s, &self.dir)
            .map_err(|e| self.poison("CHECKPOINT write", e))?;
        io.checkpointed = ckpt;
        self.files.retire(old.generation);
        drop(c);
        drop(io);
        s.remove_file(&old.path)?;
        s.sync_dir(&self.data_dir)?;
        self.counters.compactions.fetch_add(1, Ordering::Relaxed);
        tracing::info!(db = %self.dir.display(), generation, reclaimed, "compacted data file");
        Ok(reclaimed)
    }

    /// In `interval` mode, fsyncs the WAL every `interval_ms` on a thread of its own.
    pub(crate) fn start_interval_syncer(&self) {
        if self.config.wal.fsync.mode != FsyncMode::Interval {
            return;
        }
        let weak = self.self_ref.clone();
        let period = Duration::from_millis(self.config.wal.fsync.interval_ms);
        let h = std::thread::Builder::new()
            .name("docdb-interval-fsync".into())
            .spawn(move || {
                // Deadlines, not sleeps of `period` after each fsync: under load the
                // lock wait and the fsync would stretch every period (13 fsyncs in 20
                // periods were measured), and an acknowledged write could wait longer
                // than `interval_ms` for its fsync.
                let mut next = std::time::Instant::now() + period;
                loop {
                    let now = std::time::Instant::now();
                    if next > now {
                        std::thread::sleep(next - now);
                    }
                    next = (next + period).max(std::time::Instant::now());
                    if !Self::interval_sync(&weak) {
                        return;
                    }
                }
            });
        match h {
            Ok(h) => *self.maintenance.interval_thread.lock() = Some(h),
            Err(e) => tracing::warn!(error = %e, "could not start the interval fsync thread"),
        }
    }

    /// One fsync of the interval syncer; false once the database is gone or stopping.
    fn interval_sync(weak: &std::sync::Weak<Inner>) -> bool {
        let Some(me) = weak.upgrade() else {
            return false;
        };
        if me.life.is_stopping() {
            return false;
        }
        if me.life.is_poisoned() {
            return true;
        }
        let r = me.files.io().wal.sync();
        if let Err(e) = r {
            me.poison("WAL fsync", e.into());
        }
        true
    }
}
