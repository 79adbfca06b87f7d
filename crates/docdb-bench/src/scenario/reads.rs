//! `reads`: preload `--preload` documents, read every one of them once (warm-up, each
//! body checked byte for byte), then `--threads` readers do uniformly random point
//! reads of ids that exist for the duration.
//!
//! In the timed phase every read's length is checked and every 16th read's bytes, so
//! validation costs the readers little of the CPU they are being measured on.

use crate::cli::{Scenario, TargetKind};
use crate::report::RunResult;
use crate::runner::{run_timed, Worker};
use crate::target::{OpError, Session};
use crate::workload::{DocGen, Op, Rng};

use super::Ctx;

/// One in this many timed reads is compared byte for byte.
const FULL_CHECK_EVERY: u64 = 16;

fn check(
    rec: &mut crate::runner::Recorder,
    gen: &DocGen,
    id: u64,
    got: Result<Vec<u8>, OpError>,
    full: bool,
    scratch: &mut Vec<u8>,
) {
    match got {
        Ok(b) if full => {
            gen.body_into(id, 0, scratch);
            if b != *scratch {
                rec.validation_failure(|| {
                    format!(
                        "read of {id}: {} bytes that differ from what was written",
                        b.len()
                    )
                });
            }
        }
        Ok(b) if b.len() != gen.len_of(id, 0) => rec.validation_failure(|| {
            format!(
                "read of {id}: {} bytes, want {}",
                b.len(),
                gen.len_of(id, 0)
            )
        }),
        Ok(_) => {}
        Err(e) => rec.validation_failure(|| format!("read of existing {id}: {e}")),
    }
}

pub fn run(ctx: &Ctx<'_>, kind: TargetKind) -> anyhow::Result<RunResult> {
    let threads = ctx.args.threads_or(2).max(1);
    let preload = ctx.args.preload_or(100_000);
    anyhow::ensure!(
        preload > 0,
        "reads needs documents to read: --preload must be > 0"
    );
    let duration = ctx.duration()?;
    let dir = ctx.run_dir(Scenario::Reads, kind)?;
    let backend = ctx.backend(kind, &dir.path)?;
    let target = backend.open(&dir.path, 0)?;
    let gen = ctx.docs();
    let mut result = ctx.base_result(Scenario::Reads, kind);
    result
        .set("threads", threads)
        .set("preload", preload)
        .set("dbs", 1);
    let label = format!("reads/{}", kind.name());
    ctx.preload(&*target, &format!("{label} preload"), preload)?;

    let mut sessions: Vec<Box<dyn Session>> = (0..threads)
        .map(|_| target.session())
        .collect::<anyhow::Result<_>>()?;

    // Warm-up: every document once, checked in full (its latencies are not reported).
    let warm: Vec<Worker<'_>> = sessions
        .iter_mut()
        .enumerate()
        .map(|(t, s)| {
            let gen = &gen;
            Worker {
                db: 0,
                run: Box::new(move |rec| {
                    let mut scratch = Vec::new();
                    for id in (1 + t as u64..=preload).step_by(threads) {
                        let got = s.read(id);
                        check(rec, gen, id, got, true, &mut scratch);
                    }
                    Ok(())
                }),
            }
        })
        .collect();
    let warmed = run_timed(&format!("{label} warm-up"), None, &ctx.progress, warm)?;
    let warm_failures: u64 = warmed.workers.iter().map(|w| w.validation_failures).sum();

    let seed = ctx.args.common.seed;
    let workers: Vec<Worker<'_>> = sessions
        .iter_mut()
        .enumerate()
        .map(|(t, s)| {
            let gen = &gen;
            Worker {
                db: 0,
                run: Box::new(move |rec| {
                    let mut rng = Rng::for_worker(seed, t as u64);
                    let mut scratch = Vec::new();
                    let mut n = 0u64;
                    while rec.running() {
                        let id = rng.below(preload) + 1;
                        let got = rec.time(Op::Read, || s.read(id));
                        n += 1;
                        check(
                            rec,
                            gen,
                            id,
                            got,
                            n.is_multiple_of(FULL_CHECK_EVERY),
                            &mut scratch,
                        );
                    }
                    Ok(())
                }),
            }
        })
        .collect();
    let timed = run_timed(&label, Some(duration), &ctx.progress, workers)?;
    drop(sessions);
    backend.refresh()?;
    let engine = target.engine_stats();
    target.close()?;
    ctx.finish(backend, &mut result)?;
    result.absorb(&timed, vec![engine])?;
    if warm_failures > 0 {
        result.validation_failures += warm_failures;
        result.failure_examples.extend(
            warmed
                .workers
                .iter()
                .flat_map(|w| w.failures.iter().map(|f| format!("warm-up: {f}")))
                .take(5),
        );
    }
    result.notes.push(format!(
        "warm-up read all {preload} documents once ({:.2} s), each checked byte for byte",
        warmed.elapsed.as_secs_f64()
    ));
    Ok(result)
}
