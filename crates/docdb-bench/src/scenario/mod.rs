//! The scenarios of `docdb-bench`, one file each, and what they share: the directory
//! each run gets, the engine and server configuration, preloading.

mod creates;
mod mix;
mod open;
pub mod query;
mod reads;
mod replay;

use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::Context as _;
use docdb_core::Config;

use crate::cli::{BenchArgs, Scenario, TargetKind};
use crate::meta::Meta;
use crate::progress::Progress;
use crate::report::{Report, RunResult};
use crate::target::{find_server_bin, Backend, DocdbServer, ServerSpec, Target};
use crate::workload::DocGen;

/// What every scenario needs.
pub struct Ctx<'a> {
    pub args: &'a BenchArgs,
    pub progress: Progress,
    root: PathBuf,
}

/// The directory of one run; removed when dropped unless `--keep-data`.
pub struct RunDir {
    pub path: PathBuf,
    keep: bool,
}

impl Drop for RunDir {
    fn drop(&mut self) {
        if !self.keep {
            let _ = std::fs::remove_dir_all(&self.path);
        }
    }
}

impl Ctx<'_> {
    /// A fresh, empty directory for one scenario against one target.
    pub fn run_dir(&self, scenario: Scenario, target: TargetKind) -> anyhow::Result<RunDir> {
        let path = self
            .root
            .join(format!("{}-{}", scenario.name(), target.name()));
        if path.exists() {
            std::fs::remove_dir_all(&path)
                .with_context(|| format!("clearing {}", path.display()))?;
        }
        std::fs::create_dir_all(&path).with_context(|| format!("creating {}", path.display()))?;
        Ok(RunDir {
            path,
            keep: self.args.common.keep_data,
        })
    }

    /// The timed phase's length.
    pub fn duration(&self) -> anyhow::Result<Duration> {
        Duration::try_from_secs_f64(self.args.duration)
            .ok()
            .filter(|d| !d.is_zero())
            .ok_or_else(|| anyhow::anyhow!("--duration must be a positive number of seconds"))
    }

    pub fn docs(&self) -> DocGen {
        DocGen::new(self.args.common.seed, self.args.doc_size())
    }

    /// Configuration of the embedded engine for the timed scenarios.
    pub fn engine_config(&self) -> Config {
        let mut c = Config::default();
        c.wal.fsync.mode = self.args.fsync_mode;
        c.memory.per_db_limit_mb = self
            .args
            .memory_per_db_mb
            .unwrap_or(crate::cli::EMBEDDED_MEMORY_MB);
        if let Some(mb) = self.args.cache_mb {
            c.memory.cache_mb = mb;
        }
        c
    }

    /// What opens the databases of one run of `kind` in `dir`: for the server, a
    /// server started on `dir` with its default settings (or the one at `--socket`).
    pub fn backend(&self, kind: TargetKind, dir: &Path) -> anyhow::Result<Backend> {
        let a = self.args;
        Ok(match kind {
            TargetKind::Embedded => Backend::Embedded(self.engine_config()),
            TargetKind::Sqlite => Backend::Sqlite,
            TargetKind::Docdb => Backend::Docdb(match &a.socket {
                Some(socket) => DocdbServer::existing(socket, a.token.as_deref())?,
                None => DocdbServer::start(&self.server_spec(), dir)?,
            }),
        })
    }

    /// The server a run starts: its defaults, but for what the user asked for on the
    /// command line and the connections the run needs.
    pub fn server_spec(&self) -> ServerSpec {
        let a = self.args;
        ServerSpec {
            bin: a.server_bin.clone().unwrap_or_else(find_server_bin),
            fsync_mode: a.fsync_mode,
            policy: a.policy.clone(),
            workers: a.server_workers,
            memory_mb: a.memory_per_db_mb,
            max_open_dbs: None,
            cache_mb: a.cache_mb,
            connections: self.connections(),
            auth_token: a.auth == "token",
        }
    }

    /// Client connections a run of the `docdb` target may open: one per worker of its
    /// scenario (`--dbs` × `--workers-per-db`, or `--threads`, 32 at most by default),
    /// plus the admin client and spares.
    fn connections(&self) -> usize {
        let a = self.args;
        let mix = a.dbs.max(1).saturating_mul(a.workers_per_db.max(1));
        let query = a.write_threads.saturating_add(a.threads.unwrap_or(2));
        mix.max(a.threads.unwrap_or(32))
            .max(query)
            .saturating_add(4)
    }

    /// Settings every timed result lists.
    pub fn base_result(&self, scenario: Scenario, target: TargetKind) -> RunResult {
        let a = self.args;
        let mut r = RunResult::new(scenario, target);
        r.set("duration_s", a.duration)
            .set("doc_size", a.doc_size())
            .set("seed", a.common.seed);
        match target {
            TargetKind::Sqlite => {
                r.set("sqlite", "journal_mode=WAL, synchronous=FULL, autocommit");
            }
            TargetKind::Embedded => {
                r.set("fsync_mode", format!("{:?}", a.fsync_mode).to_lowercase());
            }
            TargetKind::Docdb => {
                match &a.socket {
                    Some(s) => r.set(
                        "server",
                        format!("running at {} (its settings unknown)", s.display()),
                    ),
                    None => {
                        let changed = self.server_spec().non_default();
                        r.set("server", "started for the run").set(
                            "server_non_default",
                            if changed.is_empty() {
                                "none (every setting the server's default)".to_owned()
                            } else {
                                changed.join("; ")
                            },
                        )
                    }
                };
            }
        }
        r
    }

    /// Ends a run's backend, noting a started server's memory in `result` first.
    pub fn finish(&self, backend: Backend, result: &mut RunResult) -> anyhow::Result<()> {
        if let Some((rss, peak)) = backend.server().and_then(|s| s.rss()) {
            const MIB: f64 = 1024.0 * 1024.0;
            result.server_rss_mib = Some(rss as f64 / MIB);
            result.server_peak_rss_mib = Some(peak as f64 / MIB);
        }
        backend.finish().context("stopping the server")
    }

    /// Writes documents `1..=n` (version 0) untimed, with a progress line.
    pub fn preload(&self, target: &dyn Target, label: &str, n: u64) -> anyhow::Result<()> {
        if n == 0 {
            return Ok(());
        }
        let gen = self.docs();
        let bar = self.progress.counting(label, n, "docs");
        let mut docs = (1..=n).map(|id| (id, gen.body(id, 0)));
        let written = target.preload(&mut docs, &|done| bar.set_position(done))?;
        bar.finish_and_clear();
        anyhow::ensure!(
            written == n,
            "{label}: preloaded {written} of {n} documents"
        );
        Ok(())
    }
}

/// Runs the scenario of `args` against each of its targets, with each target's ratio
/// to SQLite when SQLite ran too. Writes the `--markdown` and `--json` files.
pub fn run(args: &BenchArgs) -> anyhow::Result<Report> {
    let targets = args.targets();
    anyhow::ensure!(!targets.is_empty(), "no --target given");
    if args.scenario == Scenario::Replay && targets != [TargetKind::Embedded] {
        anyhow::bail!("the replay scenario measures the engine's WAL replay in-process: use --target embedded");
    }
    let mut report = Report::new(Meta::collect());
    let tmp = match &args.common.dir {
        Some(d) => {
            std::fs::create_dir_all(d).with_context(|| format!("creating {}", d.display()))?;
            tempfile::Builder::new()
                .prefix("docdb-bench-")
                .tempdir_in(d)
        }
        None => tempfile::Builder::new().prefix("docdb-bench-").tempdir(),
    }
    .context("creating the data directory")?;
    let root = tmp.path().to_path_buf();
    let ctx = Ctx {
        args,
        progress: Progress::new(args.common.quiet),
        root,
    };
    for target in targets {
        let result = match args.scenario {
            Scenario::Creates => creates::run(&ctx, target),
            Scenario::Reads => reads::run(&ctx, target),
            Scenario::Mix => mix::run(&ctx, target),
            Scenario::Replay => replay::run(&ctx),
            Scenario::Open => open::run(&ctx),
            Scenario::Query => query::run(&ctx, target),
        }
        .with_context(|| format!("{} against {}", args.scenario.name(), target.name()))?;
        report.runs.push(result);
    }
    report.compare();
    if args.common.keep_data {
        let kept = tmp.keep();
        eprintln!("data kept in {}", kept.display());
    }
    report.write_files(args.common.markdown.as_deref(), args.common.json.as_deref())?;
    Ok(report)
}
