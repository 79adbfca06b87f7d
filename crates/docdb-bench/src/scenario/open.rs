//! `open`: how long the first request to a big database waits after a clean stop.
//! For each size of `--open-docs`, creates a database of that many small documents
//! through the embedded engine (kept in `<--dir>/open-cache/<n>` when `--dir` is
//! given, and reused by later runs), closes it cleanly, then times `Database::open`
//! plus the first point read, five times, and reports the median.
//!
//! Checks: the reopened database holds `n` documents and the read returns the
//! document written.

use std::time::Instant;

use anyhow::Context as _;
use docdb_core::{Config, Database};

use crate::cli::{Scenario, TargetKind};
use crate::report::RunResult;

use super::Ctx;

const REPS: usize = 5;

pub fn run(ctx: &Ctx<'_>) -> anyhow::Result<RunResult> {
    let a = ctx.args;
    let mut result = RunResult::new(Scenario::Open, TargetKind::Embedded);
    result
        .set("doc_size", a.doc_size())
        .set("repetitions", REPS)
        .set(
            "memory_per_db_mb",
            a.memory_per_db_mb.unwrap_or(crate::cli::EMBEDDED_MEMORY_MB),
        )
        .set("without_index", a.open_without_index);
    let run_dir = ctx.run_dir(Scenario::Open, TargetKind::Embedded)?;
    let gen = ctx.docs();
    let mut config = Config::default();
    config.memory.per_db_limit_mb = a.memory_per_db_mb.unwrap_or(crate::cli::EMBEDDED_MEMORY_MB);
    for &n in &a.open_docs {
        let dir = match &a.common.dir {
            Some(d) => d.join("open-cache").join(n.to_string()),
            None => run_dir.path.join(n.to_string()),
        };
        let db = Database::open(&dir, config.clone())
            .with_context(|| format!("opening {}", dir.display()))?;
        let have = db.stats().live_docs;
        if have != n {
            anyhow::ensure!(have == 0, "{}: {have} documents, want {n}", dir.display());
            let bar = ctx
                .progress
                .counting(&format!("open: creating {n}"), n, "docs");
            let mut id = 1;
            while id <= n {
                let mut tx = db.begin();
                for i in id..(id + 10_000).min(n + 1) {
                    tx.create("", i, &gen.body(i, 0)).context("create")?;
                }
                tx.commit().context("commit")?;
                id += 10_000;
                bar.set_position(id - 1);
            }
            bar.finish_and_clear();
        }
        db.close().context("close")?;
        let probe = n / 2 + 1;
        let mut times = Vec::new();
        let mut scanned = 0;
        for _ in 0..REPS {
            if a.open_without_index {
                let _ = std::fs::remove_file(dir.join("INDEX"));
            }
            let t = Instant::now();
            let db = Database::open(&dir, config.clone()).context("timed open")?;
            let got = db.read("", probe).context("first read")?;
            times.push(t.elapsed().as_secs_f64() * 1000.0);
            scanned = db.recovery_report().data_records;
            if got != gen.body(probe, 0) || db.stats().live_docs != n {
                result.validation_failures += 1;
                result
                    .failure_examples
                    .push(format!("{n} docs: wrong contents after the reopen"));
            }
            db.close().context("close")?;
        }
        times.sort_by(f64::total_cmp);
        let median = times[times.len() / 2];
        let key: &'static str = Box::leak(format!("open_first_read_ms_{n}").into_boxed_str());
        result.set(key, format!("{median:.1}"));
        result.notes.push(format!(
            "{n} docs: open + first read median {median:.1} ms (min {:.1}, max {:.1}); {scanned} data records scanned",
            times[0],
            times[times.len() - 1]
        ));
        println!("open {n} docs: median {median:.1} ms");
    }
    Ok(result)
}
