//! `creates`: `--threads` writers on one database, each creating new documents (ids
//! disjoint per thread) for the duration. Measures write throughput and latency under
//! contention; for the embedded engine, how well group commit batches (`avg_batch_size`).

use crate::cli::{Scenario, TargetKind};
use crate::report::RunResult;
use crate::runner::{run_timed, Worker};
use crate::workload::Op;

use super::Ctx;

pub fn run(ctx: &Ctx<'_>, kind: TargetKind) -> anyhow::Result<RunResult> {
    let threads = ctx.args.threads_or(32).max(1);
    let duration = ctx.duration()?;
    let dir = ctx.run_dir(Scenario::Creates, kind)?;
    let backend = ctx.backend(kind, &dir.path)?;
    let target = backend.open(&dir.path, 0)?;
    let gen = ctx.docs();
    let mut result = ctx.base_result(Scenario::Creates, kind);
    result.set("threads", threads).set("dbs", 1);

    let mut workers = Vec::with_capacity(threads);
    for t in 0..threads as u64 {
        let mut session = target.session()?;
        let gen = &gen;
        workers.push(Worker {
            db: 0,
            run: Box::new(move |rec| {
                let mut body = Vec::with_capacity(gen.size() + 64);
                // INVARIANT: thread t owns the ids ≡ t + 1 (mod threads): no two
                // threads ever create the same id.
                let mut id = t + 1;
                while rec.running() {
                    gen.body_into(id, 0, &mut body);
                    let _ = rec.time(Op::Create, || session.create(id, &body));
                    id += threads as u64;
                }
                Ok(())
            }),
        });
    }
    let label = format!("creates/{}", kind.name());
    let timed = run_timed(&label, Some(duration), &ctx.progress, workers)?;
    backend.refresh()?;
    let engine = target.engine_stats();
    let live = target.count()?;
    target.close()?;
    ctx.finish(backend, &mut result)?;
    result.absorb(&timed, vec![engine])?;
    // Every acknowledged create must be there, and nothing else.
    if live != result.ops {
        result.validation_failures += 1;
        result.failure_examples.push(format!(
            "{} creates acknowledged, but the database holds {live} documents",
            result.ops
        ));
    }
    Ok(result)
}
