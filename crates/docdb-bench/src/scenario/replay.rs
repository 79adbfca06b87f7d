//! `replay`: how fast the engine reopens after a crash. Writes `--wal-mb` of WAL
//! (creates of new documents, fsync mode `none`, no checkpoint — `checkpoint.interval_mb`
//! is huge — in 64 MiB segments), drops the database without `close` so the whole WAL
//! must be replayed, flushes the files to disk (untimed, so the reopen does not pay for
//! the write phase's writeback), optionally drops the page cache, then times
//! `Database::open`.
//!
//! Checks: the reopened database holds exactly the acknowledged documents, and a
//! sample of them reads back byte for byte.

use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Instant;

use anyhow::Context as _;
use docdb_core::{Config, Database, FsyncMode};

use crate::cli::{Scenario, TargetKind};
use crate::report::{ReplayStats, RunResult};
use crate::runner::{run_timed, Worker};
use crate::target::{EmbeddedTarget, Session, Target};
use crate::workload::{Op, Rng};

use super::Ctx;

const MIB: u64 = 1024 * 1024;
/// A lower bound of the WAL bytes a single-document create adds beyond its payload
/// (the commit record's framing), so the write phase never stops short of the goal.
const WAL_OVERHEAD: u64 = 32;
/// Documents read back after the reopen.
const SAMPLE: u64 = 1000;

fn replay_config(ctx: &Ctx<'_>) -> Config {
    let mut c = Config::default();
    c.wal.fsync.mode = FsyncMode::None;
    c.wal.max_file_size_mb = 64;
    c.checkpoint.interval_mb = 1_000_000;
    c.memory.per_db_limit_mb = ctx
        .args
        .memory_per_db_mb
        .unwrap_or(crate::cli::EMBEDDED_MEMORY_MB);
    c
}

/// fsyncs every file under `dir`, so no writeback of the write phase is left.
fn sync_tree(dir: &Path) -> anyhow::Result<()> {
    for e in std::fs::read_dir(dir).with_context(|| format!("listing {}", dir.display()))? {
        let e = e?;
        let path = e.path();
        if e.file_type()?.is_dir() {
            sync_tree(&path)?;
        } else {
            std::fs::File::open(&path)
                .and_then(|f| f.sync_all())
                .with_context(|| format!("syncing {}", path.display()))?;
        }
    }
    Ok(())
}

fn drop_page_cache() -> anyhow::Result<()> {
    std::fs::write("/proc/sys/vm/drop_caches", "3\n")
        .context("--drop-caches: writing /proc/sys/vm/drop_caches (needs root)")
}

pub fn run(ctx: &Ctx<'_>) -> anyhow::Result<RunResult> {
    let a = ctx.args;
    let threads = a.threads_or(4).max(1);
    let goal = a.wal_mb.max(1) * MIB;
    let dir = ctx.run_dir(Scenario::Replay, TargetKind::Embedded)?;
    let db_dir = dir.path.join("db0");
    let config = replay_config(ctx);
    let gen = ctx.docs();
    let mut result = RunResult::new(Scenario::Replay, TargetKind::Embedded);
    result
        .set("wal_mb", a.wal_mb)
        .set("doc_size", a.doc_size())
        .set("writer_threads", threads)
        .set("seed", a.common.seed)
        .set(
            "config",
            "fsync=none, wal.max_file_size_mb=64, checkpoint.interval_mb=1000000",
        );

    // Write phase.
    let target = EmbeddedTarget::open(&db_dir, config.clone())?;
    let written = AtomicU64::new(0);
    let label = "replay/embedded";
    let bar = ctx
        .progress
        .counting(&format!("{label} write"), goal / MIB, "MiB");
    let mut sessions: Vec<Box<dyn Session>> = (0..threads)
        .map(|_| target.session())
        .collect::<anyhow::Result<_>>()?;
    let workers = sessions
        .iter_mut()
        .enumerate()
        .map(|(t, s)| {
            let (gen, written, bar) = (&gen, &written, &bar);
            Worker {
                db: 0,
                run: Box::new(move |rec| {
                    let mut body = Vec::with_capacity(gen.size() + 64);
                    let mut id = t as u64 + 1;
                    while rec.running() && written.load(Ordering::Relaxed) < goal {
                        gen.body_into(id, 0, &mut body);
                        if rec.time(Op::Create, || s.create(id, &body)).is_ok() {
                            let w = written
                                .fetch_add(body.len() as u64 + WAL_OVERHEAD, Ordering::Relaxed);
                            if t == 0 {
                                bar.set_position(w / MIB);
                            }
                        }
                        id += threads as u64;
                    }
                    Ok(())
                }),
            }
        })
        .collect();
    let timed = run_timed(&format!("{label} write"), None, &ctx.progress, workers)?;
    bar.finish_and_clear();
    drop(sessions);
    let before = target.engine_stats().unwrap_or_default();
    result.absorb(&timed, vec![Some(before.clone())])?;
    let acked = result.ops;

    // The crash: drop the handle without close, so no final checkpoint is written.
    let db: Arc<Database> = target.into_database();
    anyhow::ensure!(
        Arc::strong_count(&db) == 1,
        "a session still holds the database"
    );
    drop(db);
    sync_tree(&dir.path)?;
    if a.drop_caches {
        drop_page_cache()?;
    }

    // The timed reopen.
    let spinner = ctx.progress.spinner(&format!("{label} reopen"));
    let started = Instant::now();
    let db = Database::open(&db_dir, config).context("reopening after the simulated crash")?;
    let open_secs = started.elapsed().as_secs_f64();
    spinner.finish_and_clear();
    let rr = db.recovery_report();
    let live_after = db.stats().live_docs;

    if live_after != acked {
        result.validation_failures += 1;
        result.failure_examples.push(format!(
            "{acked} creates acknowledged before the crash, {live_after} documents after the reopen"
        ));
    }
    if !rr.dropped.is_empty() {
        result
            .notes
            .extend(rr.dropped.iter().map(|d| format!("recovery dropped: {d}")));
    }
    // Read back a sample of what was acknowledged. Thread t wrote ids t+1, t+1+T, ...;
    // the count per thread is not known here, so sample ids that exist per the count
    // of each thread's successful creates.
    let per_thread: Vec<u64> = timed
        .workers
        .iter()
        .map(|w| w.latency[Op::Create.index()].len())
        .collect();
    let mut rng = Rng::for_worker(a.common.seed, 0xbeef);
    let mut scratch = Vec::new();
    for _ in 0..SAMPLE.min(acked) {
        let t = rng.below(threads as u64);
        let Some(&n) = per_thread.get(t as usize) else {
            continue;
        };
        if n == 0 {
            continue;
        }
        let id = t + 1 + rng.below(n) * threads as u64;
        gen.body_into(id, 0, &mut scratch);
        match db.read("", id) {
            Ok(got) if got == scratch => {}
            Ok(got) => {
                result.validation_failures += 1;
                result.failure_examples.push(format!(
                    "{id}: {} bytes that differ after the reopen",
                    got.len()
                ));
            }
            Err(e) => {
                result.validation_failures += 1;
                result
                    .failure_examples
                    .push(format!("{id} after the reopen: {e}"));
            }
        }
    }
    db.close().context("closing the reopened database")?;

    result.replay = Some(ReplayStats {
        wal_bytes_written: before.wal_bytes,
        docs_written: acked,
        write_secs: timed.elapsed.as_secs_f64(),
        cold_cache: a.drop_caches,
        open_secs,
        recovery_secs: rr.duration.as_secs_f64(),
        replayed_bytes: rr.replayed_bytes,
        replayed_records: rr.replayed_records,
        replay_mib_per_sec: if open_secs > 0.0 {
            rr.replayed_bytes as f64 / MIB as f64 / open_secs
        } else {
            0.0
        },
        live_docs_after: live_after,
    });
    Ok(result)
}
