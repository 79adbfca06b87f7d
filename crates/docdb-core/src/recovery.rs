//! Opening a database, in steps: take the directory lock, load the checkpoint, choose
//! the data generation, rebuild the index (from the `INDEX` snapshot plus a scan of the
//! data file past it, or from a scan of the whole data file), replay the WAL since the
//! checkpoint in one pass, make the result durable (data file, `CHECKPOINT`, maybe a
//! fresh `INDEX`), and construct the database. docs/FORMAT.md "Recovery, step by step"
//! says the same in prose.
//!
//! Replay is idempotent per key: a logged operation is applied only when its sequence
//! number is newer than what the data file already holds for that document or
//! collection. That makes recovery correct from any checkpoint, and from none.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Instant;

use crate::checkpoint::Checkpoint;
use crate::config::Config;
use crate::data::file::{data_path, list_generations, DataFile, HEADER_LEN as DATA_HEADER};
use crate::data::record::{self as drec, Kind, FIXED};
use crate::db::{Database, Inner, OpenOptions, Recovered, RecoveryReport};
use crate::error::{Error, Result};
use crate::index::{Chain, Collection, Version};
use crate::index_snapshot::{self as snap, OnDisk, SnapshotKey};
use crate::memory::{MemoryAccount, MemoryBudget};
use crate::name::DEFAULT_COLLECTION;
use crate::rebuild::{Rebuild, RebuiltColl};
use crate::storage::{self, LockGuard, Storage};
use crate::wal::record::WalOp;
use crate::wal::replay::replay;
use crate::wal::segment::{list_segments, HEADER_LEN as WAL_HEADER};
use crate::wal::writer::WalWriter;
use crate::wal::WalPos;

/// Where one database's files live, and what reads and writes them.
struct Paths {
    dir: PathBuf,
    wal_dir: PathBuf,
    data_dir: PathBuf,
    storage: Arc<dyn Storage>,
}

/// The index rebuilt from the data file, and where the WAL replay must start.
struct Rebuilt {
    rb: Rebuild,
    /// End of the trusted part of the data file: replay appends from here.
    durable_len: u64,
    replay_from: WalPos,
    /// The commit replay expects first (`None`: whatever comes).
    first_seq: Option<u64>,
    /// Records were unreadable or missing: no snapshot may describe this file.
    damaged: bool,
    /// The `INDEX` on disk, when it is true for this data generation.
    snapshot: Option<OnDisk>,
    /// `CHECKPOINT` existed (else step 6 must write one).
    had_checkpoint: bool,
}

/// What the WAL replay left.
struct Replayed {
    wal: WalWriter,
    /// End of the data file after replay.
    end: u64,
    /// Replay wrote to the data file or changed its length.
    wrote: bool,
}

pub(crate) fn open(dir: &Path, config: Config, opts: OpenOptions) -> Result<Database> {
    config.validate()?;
    if let Some(f) = crate::failure::failed(dir) {
        return Err(Error::FailedEarlier { detail: f.what });
    }
    let started = Instant::now();
    let paths = Paths {
        dir: dir.to_path_buf(),
        wal_dir: opts.wal_dir.clone().unwrap_or_else(|| dir.join("wal")),
        data_dir: dir.join("data"),
        storage: opts
            .storage
            .clone()
            .unwrap_or_else(storage::default_storage),
    };
    let lock = lock_dirs(&paths)?;
    let mut report = RecoveryReport::default();
    let (ckpt, had_checkpoint) = load_checkpoint(&paths, &mut report)?;
    let data = choose_data_generation(&paths, &ckpt)?;
    let t_files = started.elapsed();
    let mut idx = rebuild_index(&paths, &data, &ckpt, had_checkpoint, &mut report)?;
    let t_index = started.elapsed();
    let replayed = replay_wal(&paths, &data, &ckpt, &mut idx, &config, &mut report)?;
    let t_replay = started.elapsed();
    let (colls, new_ckpt, snapshot) = make_durable(&paths, &data, &ckpt, idx, &replayed)?;
    let t_durable = started.elapsed();
    report.duration = t_durable;
    let db = construct(
        paths, config, opts, lock, data, colls, new_ckpt, snapshot, replayed, report,
    )?;
    crate::secondary::build::load_at_open(&db)?;
    let t_construct = started.elapsed();
    // Where open's time goes (docs/PERFORMANCE.md "Open after a clean stop").
    tracing::debug!(db = %dir.display(), files = ?t_files, index = ?t_index,
        replay = ?t_replay, durable = ?t_durable, constructed = ?t_construct,
        "opened (elapsed at the end of each step)");
    Ok(db)
}

/// Step 1: create the directories (private) and take `LOCK`.
fn lock_dirs(p: &Paths) -> Result<LockGuard> {
    let s = &*p.storage;
    for d in [&p.dir, &p.wal_dir, &p.data_dir] {
        if s.create_dir(d)? {
            tracing::info!(dir = %d.display(), "narrowed the directory's mode to 0700");
        }
    }
    match s.lock(&p.dir.join("LOCK")) {
        Ok(l) => Ok(l),
        Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => Err(Error::Format(format!(
            "{} is in use by another process",
            p.dir.display()
        ))),
        Err(e) => Err(e.into()),
    }
}

/// Step 2: read `CHECKPOINT` (absent: start from the newest data file and the first WAL
/// segment; damaged: refuse to open). Returns it and whether the file existed.
fn load_checkpoint(p: &Paths, report: &mut RecoveryReport) -> Result<(Checkpoint, bool)> {
    let s = &*p.storage;
    Ok(match Checkpoint::load(s, &p.dir)? {
        Some(c) => (c, true),
        None => (
            initial_checkpoint(s, &p.dir, &p.data_dir, &p.wal_dir, report)?,
            false,
        ),
    })
}

/// Step 3: keep only the checkpoint's data generation and open it.
fn choose_data_generation(p: &Paths, ckpt: &Checkpoint) -> Result<DataFile> {
    // Other generations are leftovers of a compaction that finished (older) or never
    // got recorded (newer); the checkpoint names the one that holds the data.
    let s = &*p.storage;
    for g in list_generations(s, &p.data_dir)? {
        if g != ckpt.data_generation {
            s.remove_file(&data_path(&p.data_dir, g))?;
        }
    }
    remove_temp_files(s, &p.data_dir)?;
    let path = data_path(&p.data_dir, ckpt.data_generation);
    match DataFile::open(s, &p.data_dir, ckpt.data_generation) {
        Ok(f) => Ok(f),
        // Missing, or too short to hold more than its header (the creation of a new
        // database's first data file failed or was cut before its header was synced):
        // nothing was checkpointed into it, so it holds nothing to lose. Make it anew;
        // replay rewrites everything past the checkpoint.
        Err(e)
            if ckpt.data_len <= DATA_HEADER
                && (e.kind() == std::io::ErrorKind::NotFound
                    || (e.kind() == std::io::ErrorKind::InvalidData
                        && s.file_len(&path).is_ok_and(|l| l <= DATA_HEADER))) =>
        {
            if e.kind() != std::io::ErrorKind::NotFound {
                tracing::warn!(file = %path.display(), error = %e,
                    "data file holds no record and has no valid header; recreating it");
            }
            Ok(DataFile::create(
                s,
                &p.data_dir,
                ckpt.data_generation,
                path,
            )?)
        }
        Err(e) => Err(Error::Format(e.to_string())),
    }
}

/// Step 4: the newest version of every document and collection in the checkpointed
/// part of the data file: from `INDEX` and a scan of the bytes after it when the
/// snapshot stands for this checkpoint, else from a scan of the whole part (saying
/// why in the log and the report).
fn rebuild_index(
    p: &Paths,
    data: &DataFile,
    ckpt: &Checkpoint,
    had_checkpoint: bool,
    report: &mut RecoveryReport,
) -> Result<Rebuilt> {
    let file_len = data.len()?;
    let short = file_len < ckpt.data_len;
    if short {
        report.dropped.push(format!(
            "{}: {file_len} bytes, but the checkpoint says {} were durable; documents in the missing part are lost unless the WAL still has them",
            data.path.display(),
            ckpt.data_len
        ));
    }
    // Bytes past the checkpoint were never fsynced as a whole, so they are not
    // trusted: replay rewrites them from the WAL (see `put_chunk`).
    let durable_len = ckpt.data_len.min(file_len);

    let storage = &*p.storage;
    let loaded = if !had_checkpoint {
        Err("no CHECKPOINT to check it against".to_string())
    } else if short {
        Err("the data file is shorter than the checkpoint".to_string())
    } else {
        snap::load(storage, &p.dir, ckpt, data)
    };
    let (mut rb, scan_from, mut snapshot) = match loaded {
        Ok(Some(l)) => {
            report.snapshot_entries = l.entries;
            (l.rebuild, l.on_disk.key.data_len, Some(l.on_disk))
        }
        other => {
            let why = match other {
                Err(why) => Some(why),
                // A database that never checkpointed a record has nothing to snapshot.
                _ => (ckpt.data_len > DATA_HEADER).then(|| "no INDEX file".to_string()),
            };
            if let Some(why) = why {
                tracing::warn!(db = %p.dir.display(), reason = %why,
                    "index snapshot not used; scanning the whole data file");
                report.snapshot_fallback = Some(why);
            }
            (Rebuild::default(), DATA_HEADER, None)
        }
    };
    rb.max_seq = rb.max_seq.max(ckpt.seq);
    let mut gaps: Vec<(u64, u64)> = Vec::new();
    report.data_records = rb.scan(data, scan_from, durable_len, |from, to| {
        gaps.push((from, to))
    })?;
    let damaged = !gaps.is_empty() || short;
    if damaged || (snapshot.is_none() && !had_checkpoint) {
        // IMPORTANT: before any byte of the data file changes below a checkpointed
        // length, no snapshot may describe it any more (index_snapshot's INVARIANT).
        snap::remove(storage, &p.dir)?;
        snapshot = None;
    }
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
    let (replay_from, first_seq) = if !damaged {
        (ckpt.wal, had_checkpoint.then_some(ckpt.seq + 1))
    } else {
        for (a, b) in &gaps {
            report.dropped.push(format!(
                "{}: damaged bytes {a}..{b} skipped; documents whose newest version was there are restored from the WAL if it still holds them, else they may be missing or stale",
                data.path.display()
            ));
        }
        let first = list_segments(&*p.storage, &p.wal_dir)?
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
    Ok(Rebuilt {
        rb,
        durable_len,
        replay_from,
        first_seq,
        damaged,
        snapshot,
        had_checkpoint,
    })
}

/// Step 5: replay the WAL from where step 4 says, appending to the data file what it
/// lacks, and resume the WAL where replay ended (or in a fresh segment).
fn replay_wal(
    p: &Paths,
    data: &DataFile,
    ckpt: &Checkpoint,
    idx: &mut Rebuilt,
    config: &Config,
    report: &mut RecoveryReport,
) -> Result<Replayed> {
    let generation = data.generation;
    let rb = &mut idx.rb;
    let mut end = idx.durable_len;
    let mut buf: Vec<u8> = Vec::new();
    let mut wrote = false;
    let outcome = replay(
        &*p.storage,
        &p.wal_dir,
        idx.replay_from,
        idx.first_seq,
        |rec| {
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
                wrote = true;
                put_chunk(data, &buf, end)?;
                end += buf.len() as u64;
                buf.clear();
            }
            Ok(())
        },
    )?;
    wrote |= !buf.is_empty();
    put_chunk(data, &buf, end)?;
    end += buf.len() as u64;
    // INVARIANT: the file ends where replay ended; nothing untrusted stays behind it.
    if data.len()? != end {
        wrote = true;
        data.set_len(end)?;
    }
    report.replayed_records = outcome.records;
    report.replayed_bytes = outcome.bytes;
    report.dropped.extend(outcome.dropped);

    let max_len = config.wal_segment_bytes();
    let st = p.storage.clone();
    let wal = match outcome.end {
        Some(pos) => WalWriter::open_existing(st, &p.wal_dir, pos.segment, pos.offset, max_len)?,
        None => {
            let next = ckpt.wal.segment.max(outcome.last_segment_seen + 1);
            WalWriter::create(st, &p.wal_dir, next, max_len)?
        }
    };
    Ok(Replayed { wal, end, wrote })
}

/// Step 6: everything replayed is now in the data file: make it durable, start the
/// next recovery here (a new `CHECKPOINT` unless it is the same), and write a fresh
/// `INDEX` when the one on disk would leave the next open much to scan.
fn make_durable(
    p: &Paths,
    data: &DataFile,
    ckpt: &Checkpoint,
    idx: Rebuilt,
    replayed: &Replayed,
) -> Result<(Vec<RebuiltColl>, Checkpoint, Option<OnDisk>)> {
    // Nothing to sync when the file is exactly what the checkpoint found durable: its
    // bytes were synced before that CHECKPOINT was written, and this open wrote none
    // and left none past it (DECISIONS 38: bytes past a checkpoint are always
    // rewritten from the WAL, so they would count as written). Saves an fdatasync on
    // every open after a clean stop.
    let untouched =
        idx.had_checkpoint && !idx.damaged && !replayed.wrote && replayed.end == ckpt.data_len;
    if !untouched {
        data.sync()?;
    }
    let (colls, max_seq) = idx.rb.finish();
    let new_ckpt = Checkpoint {
        seq: max_seq,
        wal: replayed.wal.position(),
        data_generation: data.generation,
        data_len: replayed.end,
    };
    if new_ckpt != *ckpt || !idx.had_checkpoint {
        new_ckpt.store(&*p.storage, &p.dir)?;
    }
    let mut snapshot = idx.snapshot;
    let key = SnapshotKey::of(&new_ckpt);
    if !idx.damaged && snap::worth_rewriting(snapshot, key, false) {
        let stored = snap::tail_crc(data, key.data_len).and_then(|tail| {
            let bytes = snap::encode(key, tail, &colls);
            snap::store(&*p.storage, &p.dir, &bytes).map(|()| bytes.len() as u64)
        });
        match stored {
            Ok(file_len) => snapshot = Some(OnDisk { key, file_len }),
            // The snapshot only saves time: the next open scans instead.
            Err(e) => tracing::warn!(db = %p.dir.display(), error = %e,
                "could not write the index snapshot"),
        }
    }
    Ok((colls, new_ckpt, snapshot))
}

/// Step 7: the in-memory index from the newest versions, and the database around it.
#[allow(clippy::too_many_arguments)]
fn construct(
    paths: Paths,
    config: Config,
    opts: OpenOptions,
    lock: LockGuard,
    data: DataFile,
    colls: Vec<RebuiltColl>,
    new_ckpt: Checkpoint,
    index_snapshot: Option<OnDisk>,
    replayed: Replayed,
    mut report: RecoveryReport,
) -> Result<Database> {
    let Paths {
        dir,
        wal_dir,
        data_dir,
        storage,
    } = paths;
    let s = &*storage;
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
    for c in &colls {
        let Some(st) = c.state else { continue };
        if st.exists && c.name != DEFAULT_COLLECTION {
            collections.insert(
                Arc::from(c.name.as_str()),
                Arc::new(Collection::new(&c.name, st.seq)),
            );
        }
    }
    // A collection with live documents but no create or delete record lost that
    // record to damage: it exists (a deleted collection held no live documents).
    for c in &colls {
        if c.state.is_none()
            && c.name != DEFAULT_COLLECTION
            && c.docs.iter().any(|(_, v)| !v.tombstone)
        {
            report.dropped.push(format!(
                "collection {}: its creation record is unreadable; recreated from its documents",
                c.name
            ));
            collections.insert(
                Arc::from(c.name.as_str()),
                Arc::new(Collection::new(&c.name, 0)),
            );
        }
    }
    let mut live_bytes = 0u64;
    let mut mem = 0u64;
    for c in colls {
        let Some(coll) = collections.get(c.name.as_str()) else {
            continue;
        };
        let name_len = c.name.len();
        // Sorted input lets the map be built in bulk rather than by insertion.
        let map: std::collections::BTreeMap<u64, Chain> = c
            .docs
            .into_iter()
            .filter(|(_, v)| !v.tombstone && v.seq >= coll.created_seq)
            .map(|(id, v)| {
                live_bytes += (FIXED + name_len) as u64 + v.len as u64;
                mem += v.len as u64 + crate::memory::INDEX_ENTRY_BYTES;
                (id, Chain::One(v))
            })
            .collect();
        coll.live
            .store(map.len() as u64, std::sync::atomic::Ordering::Relaxed);
        *coll.docs.write() = map;
    }
    memory.force_add(mem);

    let wal_bytes: u64 = list_segments(s, &wal_dir)?
        .iter()
        .filter_map(|&n| {
            s.file_len(&crate::wal::segment::segment_path(&wal_dir, n))
                .ok()
        })
        .sum();
    if !report.dropped.is_empty() {
        tracing::warn!(db = %dir.display(), dropped = ?report.dropped, "recovery dropped damaged data");
    }
    let shared = match &opts.shared_log {
        Some(log)
            if matches!(
                config.wal.fsync.mode,
                crate::config::FsyncMode::Always | crate::config::FsyncMode::Group
            ) =>
        {
            Some(crate::shared_log::Member {
                log: log.clone(),
                id: crate::shared_log::load_or_create_id(s, &dir)?,
                dep: Arc::default(),
            })
        }
        _ => None,
    };
    let inner = Inner::new(Recovered {
        storage,
        dir,
        wal_dir,
        data_dir,
        config,
        lock,
        collections,
        memory,
        live_bytes,
        wal: replayed.wal,
        data,
        data_len: replayed.end,
        checkpoint: new_ckpt,
        index_snapshot,
        wal_bytes,
        report,
        shared,
        cache: opts.cache.clone(),
    });
    Ok(Database::from_inner(inner))
}

/// Writes a replayed chunk at `at`. It never compares with what the file already holds
/// there: bytes past the checkpoint were not written and synced by this process, and
/// after a failed fsync the page cache can hold bytes that never reached the disk and
/// that a later fsync would not write again (DECISIONS 38). Rewriting dirties them, so
/// the checkpoint's fsync that follows makes them durable for real.
fn put_chunk(data: &DataFile, chunk: &[u8], at: u64) -> Result<()> {
    if !chunk.is_empty() {
        data.write_at(chunk, at)?;
    }
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
