//! `mix`: `--dbs` databases × `--workers-per-db` workers running the `--mix` of
//! read/create/update/delete, every outcome validated.
//!
//! Validation works because ids are partitioned: worker `w` of a database owns the ids
//! `≡ w + 1 (mod workers)`, the preloaded ones included, so it alone writes them and
//! knows exactly what each must hold. A body is a function of `(id, version)`, so the
//! worker keeps one version number per live id. After the timed phase every worker
//! reads back all its ids (live ones must match, deleted ones must be gone) and the
//! database's document count must equal the sum of what the workers hold.

use crate::cli::{Scenario, TargetKind};
use crate::report::RunResult;
use crate::runner::{run_timed, Recorder, Worker};
use crate::target::{OpError, Session, Target};
use crate::workload::{DocGen, Mix, Op, Rng};

use super::Ctx;

/// One worker: its session and what it knows the database holds for its ids.
struct MixWorker {
    db: usize,
    /// Index of this worker within its database.
    w: u64,
    workers: u64,
    session: Box<dyn Session>,
    /// Live ids this worker owns, with the version of their current body.
    live: Vec<(u64, u32)>,
    /// Ids this worker deleted.
    deleted: Vec<u64>,
    /// Next id = `next_k * workers + w + 1`.
    next_k: u64,
    /// Outcomes that leave an id's state unknown (the id is then forgotten).
    uncertain: u64,
    rng: Rng,
}

impl MixWorker {
    fn next_id(&mut self) -> u64 {
        let id = self.next_k * self.workers + self.w + 1;
        self.next_k += 1;
        id
    }

    fn step(&mut self, rec: &mut Recorder, mix: &Mix, gen: &DocGen, body: &mut Vec<u8>) {
        let mut op = mix.pick(self.rng.below(100));
        if self.live.is_empty() {
            op = Op::Create;
        }
        let (db, w) = (self.db, self.w);
        match op {
            Op::Create => {
                let id = self.next_id();
                gen.body_into(id, 0, body);
                let session = &mut self.session;
                match rec.time(Op::Create, || session.create(id, body)) {
                    Ok(()) => self.live.push((id, 0)),
                    Err(OpError::AlreadyExists) => rec.validation_failure(|| {
                        format!("worker {w}: create of new id {id} said it already exists")
                    }),
                    Err(e) if !e.changed_nothing() => self.uncertain += 1,
                    Err(_) => {}
                }
            }
            Op::Read => {
                let i = self.rng.below(self.live.len() as u64) as usize;
                let (id, v) = self.live[i];
                let session = &mut self.session;
                match rec.time(Op::Read, || session.read(id)) {
                    Ok(got) => check_version(rec, gen, body, id, v, &got, || {
                        format!("worker {w} db {db}: read of {id} returned")
                    }),
                    Err(OpError::NotFound) => rec.validation_failure(|| {
                        format!("worker {w}: read of live id {id} (version {v}) found nothing")
                    }),
                    Err(_) => {}
                }
            }
            Op::Update => {
                let i = self.rng.below(self.live.len() as u64) as usize;
                let (id, v) = self.live[i];
                let nv = v.wrapping_add(1);
                gen.body_into(id, nv, body);
                let session = &mut self.session;
                match rec.time(Op::Update, || session.update(id, body)) {
                    Ok(()) => self.live[i].1 = nv,
                    Err(e) => self.failed_write(rec, "update", i, e),
                }
            }
            Op::Delete => {
                let i = self.rng.below(self.live.len() as u64) as usize;
                let id = self.live[i].0;
                let session = &mut self.session;
                match rec.time(Op::Delete, || session.delete(id)) {
                    Ok(()) => {
                        self.live.swap_remove(i);
                        self.deleted.push(id);
                    }
                    Err(e) => self.failed_write(rec, "delete", i, e),
                }
            }
        }
    }

    /// Reads back every id this worker owns and checks it (untimed).
    /// A failed update or delete of the live id at `live[i]`: not found is a
    /// validation failure; an error that may have changed something leaves the id's
    /// state unknown; either way the id is no longer tracked as live.
    fn failed_write(&mut self, rec: &mut Recorder, what: &str, i: usize, e: OpError) {
        let (id, w) = (self.live[i].0, self.w);
        match e {
            OpError::NotFound => {
                rec.validation_failure(|| {
                    format!("worker {w}: {what} of live id {id} found nothing")
                });
            }
            e if !e.changed_nothing() => self.uncertain += 1,
            _ => return,
        }
        self.live.swap_remove(i);
    }

    fn verify(&mut self, rec: &mut Recorder, gen: &DocGen, body: &mut Vec<u8>) {
        let w = self.w;
        for &(id, v) in &self.live {
            match self.session.read(id) {
                Ok(got) => check_version(rec, gen, body, id, v, &got, || {
                    format!("final check, worker {w}: {id} holds")
                }),
                Err(e) => rec.validation_failure(|| {
                    format!("final check, worker {w}: live id {id} (version {v}): {e}")
                }),
            }
        }
        for &id in &self.deleted {
            match self.session.read(id) {
                Err(OpError::NotFound) => {}
                Ok(got) => rec.validation_failure(|| {
                    format!(
                        "final check, worker {w}: deleted id {id} still holds {}",
                        describe(&got)
                    )
                }),
                Err(e) => rec.validation_failure(|| {
                    format!("final check, worker {w}: deleted id {id}: {e}")
                }),
            }
        }
    }
}

/// Counts a validation failure unless `got` is document `id`'s body at version `v`
/// (`body` is scratch space); `what` starts the failure's description.
fn check_version(
    rec: &mut Recorder,
    gen: &DocGen,
    body: &mut Vec<u8>,
    id: u64,
    v: u32,
    got: &[u8],
    what: impl FnOnce() -> String,
) {
    gen.body_into(id, v, body);
    if got != body.as_slice() {
        rec.validation_failure(|| format!("{} {}, want version {v}", what(), describe(got)));
    }
}

/// A short description of a body for a failure message.
fn describe(body: &[u8]) -> String {
    let head = &body[..body.len().min(40)];
    format!(
        "{} bytes starting {:?}",
        body.len(),
        String::from_utf8_lossy(head)
    )
}

/// Workers of each database: `per_db` each, or with a hot share, `share` of them all
/// on database 0 and the rest spread over the others (at least one each).
pub fn layout(dbs: usize, per_db: usize, hot_share: Option<f64>) -> anyhow::Result<Vec<usize>> {
    let (dbs, per_db) = (dbs.max(1), per_db.max(1));
    let Some(share) = hot_share else {
        return Ok(vec![per_db; dbs]);
    };
    anyhow::ensure!(
        share > 0.0 && share < 1.0,
        "--hot-db-share must be between 0 and 1 (exclusive), got {share}"
    );
    anyhow::ensure!(
        dbs >= 2,
        "--hot-db-share needs at least 2 databases (--dbs)"
    );
    let total = dbs * per_db;
    anyhow::ensure!(
        total > dbs,
        "--hot-db-share needs more workers than databases (--workers-per-db > 1)"
    );
    let hot = ((share * total as f64).round() as usize).clamp(1, total - (dbs - 1));
    let (rest, others) = (total - hot, dbs - 1);
    let mut out = vec![hot];
    out.extend((0..others).map(|i| rest / others + usize::from(i < rest % others)));
    Ok(out)
}

pub fn run(ctx: &Ctx<'_>, kind: TargetKind) -> anyhow::Result<RunResult> {
    let a = ctx.args;
    let per_db_workers = layout(a.dbs, a.workers_per_db, a.hot_db_share)?;
    let dbs = per_db_workers.len();
    let preload = a.preload_or(10_000);
    let duration = ctx.duration()?;
    let dir = ctx.run_dir(Scenario::Mix, kind)?;
    let gen = ctx.docs();
    let mut result = ctx.base_result(Scenario::Mix, kind);
    result
        .set("dbs", dbs)
        .set("workers_per_db", a.workers_per_db.max(1))
        .set("mix_read_create_update_delete", a.mix)
        .set("preload_per_db", preload);
    if let Some(share) = a.hot_db_share {
        result.set("hot_db_share", share).set(
            "workers_by_db",
            per_db_workers
                .iter()
                .map(ToString::to_string)
                .collect::<Vec<_>>()
                .join("/"),
        );
    }
    let label = format!("mix/{}", kind.name());

    let backend = ctx.backend(kind, &dir.path)?;
    let mut targets: Vec<Box<dyn Target>> = Vec::with_capacity(dbs);
    let mut workers: Vec<MixWorker> = Vec::with_capacity(per_db_workers.iter().sum());
    for (db, &per_db) in per_db_workers.iter().enumerate() {
        let target = backend.open(&dir.path, db)?;
        ctx.preload(&*target, &format!("{label} preload db{db}"), preload)?;
        let n = per_db as u64;
        for w in 0..n {
            let live = (w + 1..=preload)
                .step_by(per_db)
                .map(|id| (id, 0))
                .collect();
            workers.push(MixWorker {
                db,
                w,
                workers: n,
                session: target.session()?,
                live,
                deleted: Vec::new(),
                next_k: preload.div_ceil(n),
                uncertain: 0,
                rng: Rng::for_worker(a.common.seed, (db as u64) << 32 | w),
            });
        }
        targets.push(target);
    }

    backend.refresh()?;
    let wal_before: Vec<u64> = targets
        .iter()
        .map(|t| t.engine_stats().map_or(0, |e| e.wal_bytes))
        .collect();
    let mix = a.mix;
    let timed_workers = workers
        .iter_mut()
        .map(|mw| {
            let gen = &gen;
            Worker {
                db: mw.db,
                run: Box::new(move |rec: &mut Recorder| {
                    let mut body = Vec::with_capacity(gen.size() + 64);
                    while rec.running() {
                        mw.step(rec, &mix, gen, &mut body);
                    }
                    Ok(())
                }),
            }
        })
        .collect();
    let timed = run_timed(&label, Some(duration), &ctx.progress, timed_workers)?;

    let check_workers = workers
        .iter_mut()
        .map(|mw| {
            let gen = &gen;
            Worker {
                db: mw.db,
                run: Box::new(move |rec: &mut Recorder| {
                    let mut body = Vec::new();
                    mw.verify(rec, gen, &mut body);
                    Ok(())
                }),
            }
        })
        .collect();
    let checked = run_timed(
        &format!("{label} final check"),
        None,
        &ctx.progress,
        check_workers,
    )?;

    backend.refresh()?;
    let engine: Vec<_> = targets.iter().map(|t| t.engine_stats()).collect();
    result.absorb(&timed, engine)?;
    for (d, before) in result.per_db.iter_mut().zip(wal_before) {
        if let Some(e) = &mut d.engine {
            e.wal_growth_bytes = e.wal_bytes.saturating_sub(before);
        }
    }
    for w in &checked.workers {
        result.validation_failures += w.validation_failures;
        result
            .failure_examples
            .extend(w.failures.iter().take(5).cloned());
    }
    let uncertain: u64 = workers.iter().map(|w| w.uncertain).sum();
    for (db, target) in targets.iter().enumerate() {
        let expected: u64 = workers
            .iter()
            .filter(|w| w.db == db)
            .map(|w| w.live.len() as u64)
            .sum();
        let count = target.count()?;
        if uncertain == 0 && count != expected {
            result.validation_failures += 1;
            result.failure_examples.push(format!(
                "db {db}: holds {count} documents, the workers account for {expected}"
            ));
        }
    }
    let idle = result.per_db.iter().filter(|d| d.ops == 0).count();
    if idle > 0 {
        result.notes.push(format!(
            "{idle} of {dbs} databases completed no operation in the timed phase: with {} worker threads on {} cores, some threads may not get a CPU in time (the load generator's limit, not a server error)",
            result.per_db.iter().map(|d| d.workers).sum::<usize>(),
            std::thread::available_parallelism().map_or(1, |n| n.get()),
        ));
    }
    if uncertain > 0 {
        result.notes.push(format!(
            "{uncertain} operations failed in a way that leaves their effect unknown; those ids were not checked"
        ));
    }
    result.notes.push(format!(
        "final check read back all {} live and {} deleted ids ({:.2} s)",
        workers.iter().map(|w| w.live.len()).sum::<usize>(),
        workers.iter().map(|w| w.deleted.len()).sum::<usize>(),
        checked.elapsed.as_secs_f64()
    ));
    drop(workers);
    for t in targets {
        t.close()?;
    }
    ctx.finish(backend, &mut result)?;
    Ok(result)
}

#[cfg(test)]
mod tests {
    use super::layout;

    #[test]
    fn hot_share_puts_most_workers_on_database_zero() {
        assert_eq!(layout(3, 10, None).unwrap(), vec![10, 10, 10]);
        assert_eq!(layout(3, 10, Some(0.9)).unwrap(), vec![27, 2, 1]);
        assert_eq!(layout(2, 2, Some(0.99)).unwrap(), vec![3, 1]);
        // Every database keeps at least one worker.
        assert_eq!(layout(5, 2, Some(0.95)).unwrap(), vec![6, 1, 1, 1, 1]);
        assert!(layout(1, 10, Some(0.9)).is_err());
        assert!(layout(3, 10, Some(1.0)).is_err());
        assert!(layout(3, 1, Some(0.5)).is_err());
    }
}
