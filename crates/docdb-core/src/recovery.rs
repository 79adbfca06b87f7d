//! Opening a database: take the directory lock, read the checkpoint, rebuild the index
//! from the data file, replay the WAL since the checkpoint in one pass, and write a
//! fresh checkpoint so the next open starts where this one ended.
//!
//! Replay is idempotent per key: a logged operation is applied only when its sequence
//! number is newer than what the data file already holds for that document or
//! collection. That makes recovery correct from any checkpoint, and from none.

use std::collections::hash_map::Entry;
use std::collections::HashMap;

use rustc_hash::FxHashMap;
use std::path::Path;
use std::sync::atomic::{AtomicBool, AtomicU64};
use std::sync::Arc;
use std::time::Instant;

use parking_lot::{Condvar, Mutex, RwLock};

use crate::checkpoint::Checkpoint;
use crate::commit::{CommitState, SyncState};
use crate::config::Config;
use crate::data::file::{data_path, list_generations, DataFile, HEADER_LEN as DATA_HEADER};
use crate::data::record::{self as drec, Kind, FIXED};
use crate::db::{Counters, Database, Inner, Io, OpenOptions, RecoveryReport};
use crate::error::{Error, Result};
use crate::index::{Chain, Collection, Version};
use crate::memory::{MemoryAccount, MemoryBudget};
use crate::name::DEFAULT_COLLECTION;
use crate::snapshot::Snapshots;
use crate::stats::GroupCounters;
use crate::storage::{self, Storage};
use crate::wal::record::WalOp;
use crate::wal::replay::replay;
use crate::wal::segment::{list_segments, HEADER_LEN as WAL_HEADER};
use crate::wal::writer::WalWriter;
use crate::wal::WalPos;

/// A collection as the files describe it: the newest create or delete wins.
struct CollState {
    seq: u64,
    exists: bool,
}

/// The newest version of every document and collection seen so far.
#[derive(Default)]
struct Rebuild {
    colls: HashMap<String, CollState>,
    // Fx hashing: recovery does a lookup per replayed op, and SipHash dominated it.
    docs: FxHashMap<String, FxHashMap<u64, Version>>,
    max_seq: u64,
}

impl Rebuild {
    fn doc(&mut self, coll: &str, id: u64, v: Version) -> bool {
        self.apply_if_newer(coll, id, v.seq, || v)
    }

    fn coll(&mut self, name: &str, seq: u64, exists: bool) -> bool {
        self.max_seq = self.max_seq.max(seq);
        match self.colls.get(name) {
            Some(c) if c.seq >= seq => false,
            _ => {
                self.colls
                    .insert(name.to_owned(), CollState { seq, exists });
                true
            }
        }
    }

    /// Applies a logged op to `coll/id` if `seq` is newer than what is known:
    /// `make` (which appends the data record) runs only then. One lookup per op.
    fn apply_if_newer(
        &mut self,
        coll: &str,
        id: u64,
        seq: u64,
        make: impl FnOnce() -> Version,
    ) -> bool {
        self.max_seq = self.max_seq.max(seq);
        let m = match self.docs.get_mut(coll) {
            Some(m) => m,
            None => self.docs.entry(coll.to_owned()).or_default(),
        };
        match m.entry(id) {
            Entry::Occupied(e) if e.get().seq >= seq => false,
            Entry::Occupied(mut e) => {
                e.insert(make());
                true
            }
            Entry::Vacant(e) => {
                e.insert(make());
                true
            }
        }
    }
}

pub(crate) fn open(dir: &Path, config: Config, opts: OpenOptions) -> Result<Database> {
    config.validate()?;
    let started = Instant::now();
    let wal_dir = opts.wal_dir.clone().unwrap_or_else(|| dir.join("wal"));
    let data_dir = dir.join("data");
    let st: Arc<dyn Storage> = opts
        .storage
        .clone()
        .unwrap_or_else(storage::default_storage);
    let s = &*st;
    for d in [dir, &wal_dir, &data_dir] {
        if s.create_dir(d)? {
            tracing::info!(dir = %d.display(), "narrowed the directory's mode to 0700");
        }
    }
    let lock = match s.lock(&dir.join("LOCK")) {
        Ok(l) => l,
        Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {
            return Err(Error::Format(format!(
                "{} is in use by another process",
                dir.display()
            )))
        }
        Err(e) => return Err(e.into()),
    };
    let mut report = RecoveryReport::default();
    let loaded = Checkpoint::load(s, dir)?;
    let had_checkpoint = loaded.is_some();
    let ckpt = match loaded {
        Some(c) => c,
        None => initial_checkpoint(s, dir, &data_dir, &wal_dir, &mut report)?,
    };

    // Other generations are leftovers of a compaction that finished (older) or never
    // got recorded (newer); the checkpoint names the one that holds the data.
    for g in list_generations(s, &data_dir)? {
        if g != ckpt.data_generation {
            s.remove_file(&data_path(&data_dir, g))?;
        }
    }
    remove_temp_files(s, &data_dir)?;
    let data = match DataFile::open(s, &data_dir, ckpt.data_generation) {
        Ok(f) => f,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound && ckpt.data_len <= DATA_HEADER => {
            DataFile::create(
                s,
                &data_dir,
                ckpt.data_generation,
                data_path(&data_dir, ckpt.data_generation),
            )?
        }
        Err(e) => return Err(Error::Format(e.to_string())),
    };
    let file_len = data.len()?;
    if file_len < ckpt.data_len {
        report.dropped.push(format!(
            "{}: {file_len} bytes, but the checkpoint says {} were durable; documents in the missing part are lost unless the WAL still has them",
            data.path.display(),
            ckpt.data_len
        ));
    }
    // Bytes past the checkpoint were never fsynced as a whole, so they are not
    // trusted: the WAL rewrites them. After a process crash they are usually intact
    // and identical to what replay produces, so replay compares before it writes
    // (see `put_chunk`) instead of truncating and rewriting them.
    let durable_len = ckpt.data_len.min(file_len);

    let generation = data.generation;
    let mut rb = Rebuild {
        max_seq: ckpt.seq,
        ..Rebuild::default()
    };
    let mut data_records = 0;
    let mut gaps: Vec<(u64, u64)> = Vec::new();
    data.scan(
        durable_len,
        false,
        |offset, h, _| {
            data_records += 1;
            match h.kind {
                Kind::Put | Kind::Tombstone => {
                    rb.doc(
                        h.collection,
                        h.doc_id,
                        Version {
                            seq: h.seq,
                            generation,
                            offset,
                            len: h.payload_len,
                            tombstone: h.kind == Kind::Tombstone,
                        },
                    );
                }
                Kind::CreateCollection => {
                    rb.coll(h.collection, h.seq, true);
                }
                Kind::DeleteCollection => {
                    rb.coll(h.collection, h.seq, false);
                }
            }
            Ok(())
        },
        |from, to| gaps.push((from, to)),
    )?;
    report.data_records = data_records;
    let mut durable_len = durable_len;
    if let Some(&(from, to)) = gaps.last() {
        if to == durable_len {
            // A torn last record: cut it, or its intact header would claim the
            // records appended after it at the next open.
            data.set_len(from)?;
            durable_len = from;
        }
    }
    // Where replay starts. Normally at the checkpoint, expecting the commit after it.
    // If data-file records were unreadable, the versions they held may be newer than
    // what the index now has: replay every WAL segment still on disk (idempotent per
    // key) to bring back whatever the log still holds.
    let data_damaged = !gaps.is_empty() || file_len < ckpt.data_len;
    let (from, first_seq) = if !data_damaged {
        (ckpt.wal, had_checkpoint.then_some(ckpt.seq + 1))
    } else {
        for (a, b) in &gaps {
            report.dropped.push(format!(
                "{}: damaged bytes {a}..{b} skipped; documents whose newest version was there are restored from the WAL if it still holds them, else they may be missing or stale",
                data.path.display()
            ));
        }
        let first = list_segments(s, &wal_dir)?
            .first()
            .copied()
            .unwrap_or(ckpt.wal.segment);
        (
            WalPos {
                segment: first.min(ckpt.wal.segment),
                offset: WAL_HEADER,
            },
            None,
        )
    };

    // Replay the WAL, appending what the data file lacks.
    let mut end = durable_len;
    let mut buf: Vec<u8> = Vec::new();
    // Up to here the file may already hold exactly the bytes replay is about to write.
    let mut reusable_end = data.len()?;
    let outcome = replay(s, &wal_dir, from, first_seq, |rec| {
        for op in &rec.ops {
            match op.op {
                WalOp::Create | WalOp::Update | WalOp::Delete => {
                    let put = op.op != WalOp::Delete;
                    rb.apply_if_newer(op.collection, op.doc_id, rec.seq, || {
                        let kind = if put { Kind::Put } else { Kind::Tombstone };
                        let offset = end + buf.len() as u64;
                        drec::encode(
                            &mut buf,
                            kind,
                            op.collection,
                            op.doc_id,
                            rec.seq,
                            op.payload,
                        );
                        Version {
                            seq: rec.seq,
                            generation,
                            offset,
                            len: op.payload.len() as u32,
                            tombstone: !put,
                        }
                    });
                }
                WalOp::CreateCollection | WalOp::DeleteCollection => {
                    let exists = op.op == WalOp::CreateCollection;
                    if rb.coll(op.collection, rec.seq, exists) {
                        let kind = if exists {
                            Kind::CreateCollection
                        } else {
                            Kind::DeleteCollection
                        };
                        drec::encode(&mut buf, kind, op.collection, 0, rec.seq, &[]);
                    }
                }
            }
        }
        if buf.len() >= 8 * 1024 * 1024 {
            put_chunk(&data, &buf, end, &mut reusable_end)?;
            end += buf.len() as u64;
            buf.clear();
        }
        Ok(())
    })?;
    put_chunk(&data, &buf, end, &mut reusable_end)?;
    end += buf.len() as u64;
    // INVARIANT: the file ends where replay ended; nothing untrusted stays behind it.
    if data.len()? != end {
        data.set_len(end)?;
    }
    report.replayed_records = outcome.records;
    report.replayed_bytes = outcome.bytes;
    report.dropped.extend(outcome.dropped);

    // Resume the WAL where replay ended, or in a fresh segment.
    let max_len = config.wal_segment_bytes();
    let wal = match outcome.end {
        Some(pos) => {
            WalWriter::open_existing(st.clone(), &wal_dir, pos.segment, pos.offset, max_len)?
        }
        None => {
            let next = ckpt.wal.segment.max(outcome.last_segment_seen + 1);
            WalWriter::create(st.clone(), &wal_dir, next, max_len)?
        }
    };
    // Everything replayed is now in the data file: make it durable and start the next
    // recovery here.
    data.sync()?;
    let new_ckpt = Checkpoint {
        seq: rb.max_seq,
        wal: wal.position(),
        data_generation: generation,
        data_len: end,
    };
    new_ckpt.store(s, dir)?;

    // Build the index from the newest versions.
    let global = opts
        .global_memory
        .clone()
        .unwrap_or_else(MemoryBudget::unlimited);
    let memory = MemoryAccount::new(config.per_db_memory_bytes(), global);
    let mut collections = HashMap::new();
    collections.insert(
        Arc::<str>::from(DEFAULT_COLLECTION),
        Arc::new(Collection::new(DEFAULT_COLLECTION, 0)),
    );
    for (name, st) in &rb.colls {
        if st.exists && name != DEFAULT_COLLECTION {
            collections.insert(
                Arc::from(name.as_str()),
                Arc::new(Collection::new(name, st.seq)),
            );
        }
    }
    // A collection with live documents but no create or delete record lost that
    // record to damage: it exists (a deleted collection held no live documents).
    for (name, docs) in &rb.docs {
        let known = rb.colls.contains_key(name) || name == DEFAULT_COLLECTION;
        if !known && docs.values().any(|v| !v.tombstone) {
            report.dropped.push(format!(
                "collection {name}: its creation record is unreadable; recreated from its documents"
            ));
            collections.insert(Arc::from(name.as_str()), Arc::new(Collection::new(name, 0)));
        }
    }
    let mut live_bytes = 0u64;
    let mut mem = 0u64;
    for (name, docs) in rb.docs {
        let Some(coll) = collections.get(name.as_str()) else {
            continue;
        };
        let mut entries: Vec<(u64, Chain)> = docs
            .into_iter()
            .filter(|(_, v)| !v.tombstone && v.seq >= coll.created_seq)
            .map(|(id, v)| {
                live_bytes += (FIXED + name.len()) as u64 + v.len as u64;
                mem += v.len as u64 + crate::memory::INDEX_ENTRY_BYTES;
                (id, Chain::One(v))
            })
            .collect();
        // Sorted input lets the map be built in bulk rather than by insertion.
        entries.sort_unstable_by_key(|(id, _)| *id);
        coll.live
            .store(entries.len() as u64, std::sync::atomic::Ordering::Relaxed);
        *coll.docs.write() = entries.into_iter().collect();
    }
    memory.force_add(mem);

    let wal_bytes: u64 = list_segments(s, &wal_dir)?
        .iter()
        .filter_map(|&n| {
            s.file_len(&crate::wal::segment::segment_path(&wal_dir, n))
                .ok()
        })
        .sum();
    report.duration = started.elapsed();
    if !report.dropped.is_empty() {
        tracing::warn!(db = %dir.display(), dropped = ?report.dropped, "recovery dropped damaged data");
    }
    let data = Arc::new(data);
    let seq = rb.max_seq;
    let cache_bytes = (config.memory.cache_mb << 20) as usize;
    let inner = Arc::new_cyclic(|weak| Inner {
        storage: st,
        dir: dir.to_path_buf(),
        wal_dir,
        data_dir,
        config,
        collections: RwLock::new(collections),
        snapshots: Snapshots::new(seq),
        commit: Mutex::new(CommitState {
            next_seq: seq + 1,
            wal_buf: Vec::new(),
            data_buf: Vec::new(),
            data_base: end,
            generation,
            pending: Default::default(),
            live_bytes,
        }),
        sync: Mutex::new(SyncState {
            durable: seq,
            ..SyncState::default()
        }),
        sync_cv: Condvar::new(),
        io: Mutex::new(Io {
            wal,
            data: data.clone(),
            data_len: end,
            last_written_seq: seq,
            spare: (Vec::new(), Vec::new()),
            checkpointed: new_ckpt,
        }),
        files: RwLock::new(vec![data]),
        memory,
        poisoned: AtomicBool::new(false),
        closed: AtomicBool::new(false),
        counters: Counters {
            wal_bytes: AtomicU64::new(wal_bytes),
            ..Counters::default()
        },
        group: GroupCounters::default(),
        maintenance_lock: Mutex::new(()),
        maintenance: Mutex::new(None),
        maintenance_queued: AtomicBool::new(false),
        interval_thread: Mutex::new(None),
        heal: Default::default(),
        cache: crate::cache::DocCache::new(cache_bytes),
        opened_at: std::time::SystemTime::now(),
        recovery: Mutex::new(report),
        stopping: AtomicBool::new(false),
        self_ref: weak.clone(),
        _lock: lock,
    });
    inner.start_interval_syncer();
    Ok(Database { inner })
}

/// Writes a replayed chunk at `at`, unless the file already holds exactly these bytes
/// there (the unsynced tail a process crash left intact). After the first difference
/// nothing further is reused.
fn put_chunk(data: &DataFile, chunk: &[u8], at: u64, reusable_end: &mut u64) -> Result<()> {
    if chunk.is_empty() {
        return Ok(());
    }
    if at + chunk.len() as u64 <= *reusable_end && data.read_raw(at, chunk.len())? == chunk {
        return Ok(());
    }
    *reusable_end = 0;
    data.write_at(chunk, at)?;
    Ok(())
}

/// A database without a checkpoint: brand new, or one whose first checkpoint was never
/// written. Starts from the newest data file (if any) and the oldest WAL segment.
fn initial_checkpoint(
    s: &dyn Storage,
    dir: &Path,
    data_dir: &Path,
    wal_dir: &Path,
    report: &mut RecoveryReport,
) -> Result<Checkpoint> {
    let gens = list_generations(s, data_dir)?;
    let segs = list_segments(s, wal_dir)?;
    let generation = gens.last().copied().unwrap_or(1);
    let data_len = match gens.last() {
        Some(&g) => s.file_len(&data_path(data_dir, g))?,
        None => {
            DataFile::create(s, data_dir, 1, data_path(data_dir, 1))?;
            DATA_HEADER
        }
    };
    if !gens.is_empty() || !segs.is_empty() {
        report.dropped.push(format!(
            "{}: no CHECKPOINT file; rebuilt from data generation {generation} and every WAL segment",
            dir.display()
        ));
    }
    Ok(Checkpoint {
        seq: 0,
        wal: WalPos {
            segment: segs.first().copied().unwrap_or(1),
            offset: WAL_HEADER,
        },
        data_generation: generation,
        data_len,
    })
}

fn remove_temp_files(s: &dyn Storage, dir: &Path) -> Result<()> {
    for name in s.list(dir)? {
        if name.to_str().is_some_and(|n| n.ends_with(".tmp")) {
            s.remove_file(&dir.join(name))?;
        }
    }
    Ok(())
}
