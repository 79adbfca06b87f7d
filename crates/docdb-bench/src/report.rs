//! Results: HDR latency percentiles per operation and per database, throughput,
//! errors by kind, validation failures, engine figures; rendered as Markdown (stdout,
//! `--markdown` appends) and JSON (`--json`).

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::io::Write as _;
use std::path::Path;

use anyhow::Context as _;
use hdrhistogram::Histogram;
use serde::Serialize;

use crate::cli::{Scenario, TargetKind};
use crate::meta::Meta;
use crate::runner::{Timed, WorkerOutput};
use crate::target::EngineStats;
use crate::workload::Op;

/// Latency percentiles, microseconds.
#[derive(Debug, Clone, Serialize)]
pub struct Latency {
    pub mean_us: f64,
    pub p50_us: f64,
    pub p95_us: f64,
    pub p99_us: f64,
    pub p999_us: f64,
    pub max_us: f64,
}

impl Latency {
    /// From a histogram of nanoseconds; `None` when it is empty.
    pub fn from_ns(h: &Histogram<u64>) -> Option<Self> {
        if h.is_empty() {
            return None;
        }
        let us = |ns: u64| ns as f64 / 1000.0;
        Some(Latency {
            mean_us: h.mean() / 1000.0,
            p50_us: us(h.value_at_quantile(0.50)),
            p95_us: us(h.value_at_quantile(0.95)),
            p99_us: us(h.value_at_quantile(0.99)),
            p999_us: us(h.value_at_quantile(0.999)),
            max_us: us(h.max()),
        })
    }
}

#[derive(Debug, Clone, Serialize)]
pub struct OpStats {
    pub ops: u64,
    pub ops_per_sec: f64,
    pub latency: Option<Latency>,
}

#[derive(Debug, Clone, Serialize)]
pub struct DbStats {
    pub db: usize,
    /// Workers that used this database.
    pub workers: usize,
    pub ops: u64,
    pub ops_per_sec: f64,
    pub latency: Option<Latency>,
    /// Engine figures (not for SQLite).
    pub engine: Option<EngineStats>,
}

/// The `replay` scenario's figures.
#[derive(Debug, Clone, Default, Serialize)]
pub struct ReplayStats {
    /// WAL on disk when the database was dropped (engine's `wal_bytes`).
    pub wal_bytes_written: u64,
    pub docs_written: u64,
    pub write_secs: f64,
    /// Whether the page cache was dropped before the reopen.
    pub cold_cache: bool,
    /// Wall-clock time of `Database::open`.
    pub open_secs: f64,
    /// The engine's own measure of the same (`RecoveryReport::duration`).
    pub recovery_secs: f64,
    pub replayed_bytes: u64,
    pub replayed_records: u64,
    /// `replayed_bytes` (MiB) / `open_secs`.
    pub replay_mib_per_sec: f64,
    pub live_docs_after: u64,
}

/// One timed phase of a scenario made of several (`query`): every operation of the
/// phase together.
#[derive(Debug, Clone, Serialize)]
pub struct PhaseStats {
    pub name: &'static str,
    /// Worker threads (one session each).
    pub threads: usize,
    /// Successful operations.
    pub ops: u64,
    /// Summed over the phase's rounds when it ran in several.
    pub elapsed_secs: f64,
    pub ops_per_sec: f64,
    pub latency: Option<Latency>,
    /// Rows the phase's queries returned, in total (0 for reads and writes).
    pub rows: u64,
}

/// One scenario against one target.
#[derive(Debug, Clone, Serialize)]
pub struct RunResult {
    pub scenario: Scenario,
    pub target: TargetKind,
    /// The workload's parameters, as `key → value`.
    pub settings: BTreeMap<&'static str, String>,
    pub load_avg_at_start: Option<[f64; 3]>,
    /// Length of the timed phase.
    pub elapsed_secs: f64,
    /// Successful operations in the timed phase.
    pub ops: u64,
    pub ops_per_sec: f64,
    /// Every operation type together.
    pub latency: Option<Latency>,
    pub per_op: BTreeMap<&'static str, OpStats>,
    /// One entry per database (only `mix` has several).
    pub per_db: Vec<DbStats>,
    pub errors: BTreeMap<&'static str, u64>,
    pub validation_failures: u64,
    /// The first few validation failures, described.
    pub failure_examples: Vec<String>,
    pub replay: Option<ReplayStats>,
    /// Resident memory of a server the run started, at the end and at its peak, MiB.
    pub server_rss_mib: Option<f64>,
    pub server_peak_rss_mib: Option<f64>,
    pub notes: Vec<String>,
    /// `query`: its timed phases in the order they ran (the totals above add them up;
    /// `per_op` stays empty).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub phases: Vec<PhaseStats>,
    /// `query`: figures derived from the phases and the untimed steps (ratios, load
    /// rate, index build time), name → value.
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    pub figures: BTreeMap<&'static str, f64>,
}

fn merged<'a>(hs: impl Iterator<Item = &'a Histogram<u64>>) -> anyhow::Result<Histogram<u64>> {
    let mut all = Histogram::<u64>::new(3).context("creating a histogram")?;
    for h in hs {
        all.add(h).context("merging latency histograms")?;
    }
    Ok(all)
}

fn rate(ops: u64, secs: f64) -> f64 {
    if secs > 0.0 {
        ops as f64 / secs
    } else {
        0.0
    }
}

impl RunResult {
    pub fn new(scenario: Scenario, target: TargetKind) -> Self {
        RunResult {
            scenario,
            target,
            settings: BTreeMap::new(),
            load_avg_at_start: crate::meta::load_avg(),
            elapsed_secs: 0.0,
            ops: 0,
            ops_per_sec: 0.0,
            latency: None,
            per_op: BTreeMap::new(),
            per_db: Vec::new(),
            errors: BTreeMap::new(),
            validation_failures: 0,
            failure_examples: Vec::new(),
            replay: None,
            server_rss_mib: None,
            server_peak_rss_mib: None,
            notes: Vec::new(),
            phases: Vec::new(),
            figures: BTreeMap::new(),
        }
    }

    /// Adds a timed phase that ran as `rounds` (its latencies merged, its times
    /// summed), with `rows` rows returned in total, and counts its errors and
    /// validation failures into the run's.
    pub fn absorb_phase(
        &mut self,
        name: &'static str,
        threads: usize,
        rounds: &[Timed],
        rows: u64,
    ) -> anyhow::Result<()> {
        let ws = || rounds.iter().flat_map(|t| t.workers.iter());
        let secs: f64 = rounds.iter().map(|t| t.elapsed.as_secs_f64()).sum();
        let all = merged(ws().flat_map(|w| w.latency.iter()))?;
        let ops = all.len();
        self.phases.push(PhaseStats {
            name,
            threads,
            ops,
            elapsed_secs: secs,
            ops_per_sec: rate(ops, secs),
            latency: Latency::from_ns(&all),
            rows,
        });
        self.ops += ops;
        self.elapsed_secs += secs;
        self.ops_per_sec = rate(self.ops, self.elapsed_secs);
        for w in ws() {
            for (k, n) in &w.errors {
                *self.errors.entry(k).or_insert(0) += n;
            }
            self.validation_failures += w.validation_failures;
            for f in &w.failures {
                if self.failure_examples.len() < 10 {
                    self.failure_examples.push(format!("{name}: {f}"));
                }
            }
        }
        Ok(())
    }

    /// The phase of this name, if it ran.
    pub fn phase(&self, name: &str) -> Option<&PhaseStats> {
        self.phases.iter().find(|p| p.name == name)
    }

    pub fn set(&mut self, key: &'static str, value: impl ToString) -> &mut Self {
        self.settings.insert(key, value.to_string());
        self
    }

    /// Fills throughput, percentiles, errors and validation from a timed phase;
    /// `engine` holds each database's engine figures (by index), where there are any.
    pub fn absorb(
        &mut self,
        timed: &Timed,
        engine: Vec<Option<EngineStats>>,
    ) -> anyhow::Result<()> {
        let secs = timed.elapsed.as_secs_f64();
        let ws = &timed.workers;
        self.elapsed_secs = secs;
        let all = merged(ws.iter().flat_map(|w| w.latency.iter()))?;
        self.ops = all.len();
        self.ops_per_sec = rate(self.ops, secs);
        self.latency = Latency::from_ns(&all);
        for op in Op::ALL {
            let h = merged(ws.iter().map(|w| &w.latency[op.index()]))?;
            if !h.is_empty() {
                self.per_op.insert(
                    op.name(),
                    OpStats {
                        ops: h.len(),
                        ops_per_sec: rate(h.len(), secs),
                        latency: Latency::from_ns(&h),
                    },
                );
            }
        }
        let dbs = ws
            .iter()
            .map(|w| w.db + 1)
            .max()
            .unwrap_or(0)
            .max(engine.len());
        let mut engine = engine.into_iter();
        for db in 0..dbs {
            let mine: Vec<&WorkerOutput> = ws.iter().filter(|w| w.db == db).collect();
            let h = merged(mine.iter().flat_map(|w| w.latency.iter()))?;
            self.per_db.push(DbStats {
                db,
                workers: mine.len(),
                ops: h.len(),
                ops_per_sec: rate(h.len(), secs),
                latency: Latency::from_ns(&h),
                engine: engine.next().flatten(),
            });
        }
        for w in ws {
            for (k, n) in &w.errors {
                *self.errors.entry(k).or_insert(0) += n;
            }
            self.validation_failures += w.validation_failures;
            for f in &w.failures {
                if self.failure_examples.len() < 10 {
                    self.failure_examples.push(format!("db {}: {f}", w.db));
                }
            }
        }
        Ok(())
    }

    fn title(&self) -> String {
        format!("{} · {}", self.scenario.name(), self.target.name())
    }
}

/// One target vs SQLite on one scenario.
#[derive(Debug, Clone, Serialize)]
pub struct Comparison {
    pub scenario: Scenario,
    pub target: TargetKind,
    pub target_ops_per_sec: f64,
    pub sqlite_ops_per_sec: f64,
    /// target / sqlite throughput.
    pub throughput_ratio: f64,
    pub target_p99_us: Option<f64>,
    pub sqlite_p99_us: Option<f64>,
    pub target_p999_us: Option<f64>,
    pub sqlite_p999_us: Option<f64>,
    pub target_max_us: Option<f64>,
    pub sqlite_max_us: Option<f64>,
}

/// One target vs SQLite on one phase of a phased scenario (`query`).
#[derive(Debug, Clone, Serialize)]
pub struct PhaseComparison {
    pub scenario: Scenario,
    pub phase: &'static str,
    pub target: TargetKind,
    pub target_ops_per_sec: f64,
    pub sqlite_ops_per_sec: f64,
    /// target / sqlite throughput.
    pub throughput_ratio: f64,
    pub target_p50_us: Option<f64>,
    pub sqlite_p50_us: Option<f64>,
    pub target_p99_us: Option<f64>,
    pub sqlite_p99_us: Option<f64>,
}

/// One of issue 14's speed targets, as this run measured it.
#[derive(Debug, Clone, Serialize)]
pub struct Goal {
    /// The target, in words.
    pub goal: &'static str,
    pub target: TargetKind,
    pub value: f64,
    /// What `value` counts (`queries/s`, `x`, `ms`, `share`).
    pub unit: &'static str,
    /// The same figure for SQLite in the same run, when it ran.
    pub sqlite: Option<f64>,
    pub met: bool,
}

/// Everything one invocation measured.
#[derive(Debug, Clone, Serialize)]
pub struct Report {
    pub meta: Meta,
    pub runs: Vec<RunResult>,
    pub comparisons: Vec<Comparison>,
    /// Phased scenarios (`query`): each target vs SQLite, phase by phase.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub phase_comparisons: Vec<PhaseComparison>,
    /// `query`: issue 14's speed targets, met or not.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub goals: Vec<Goal>,
}

impl Report {
    pub fn new(meta: Meta) -> Self {
        Report {
            meta,
            runs: Vec::new(),
            comparisons: Vec::new(),
            phase_comparisons: Vec::new(),
            goals: Vec::new(),
        }
    }

    /// Adds each target's ratio to SQLite on every scenario SQLite ran too.
    pub fn compare(&mut self) {
        self.comparisons.clear();
        self.compare_phases();
        for e in self
            .runs
            .iter()
            .filter(|r| r.target != TargetKind::Sqlite && r.phases.is_empty())
        {
            let Some(s) = self
                .runs
                .iter()
                .find(|r| r.target == TargetKind::Sqlite && r.scenario == e.scenario)
            else {
                continue;
            };
            let (el, sl) = (e.latency.as_ref(), s.latency.as_ref());
            self.comparisons.push(Comparison {
                scenario: e.scenario,
                target: e.target,
                target_ops_per_sec: e.ops_per_sec,
                sqlite_ops_per_sec: s.ops_per_sec,
                throughput_ratio: if s.ops_per_sec > 0.0 {
                    e.ops_per_sec / s.ops_per_sec
                } else {
                    f64::INFINITY
                },
                target_p99_us: el.map(|l| l.p99_us),
                sqlite_p99_us: sl.map(|l| l.p99_us),
                target_p999_us: el.map(|l| l.p999_us),
                sqlite_p999_us: sl.map(|l| l.p999_us),
                target_max_us: el.map(|l| l.max_us),
                sqlite_max_us: sl.map(|l| l.max_us),
            });
        }
    }

    /// The phase-by-phase comparisons and issue 14's goals of phased runs.
    fn compare_phases(&mut self) {
        self.phase_comparisons.clear();
        self.goals.clear();
        let sqlite_of = |r: &RunResult| {
            self.runs
                .iter()
                .find(|s| s.target == TargetKind::Sqlite && s.scenario == r.scenario)
        };
        for r in self.runs.iter().filter(|r| !r.phases.is_empty()) {
            if let Some(s) = sqlite_of(r).filter(|_| r.target != TargetKind::Sqlite) {
                for p in &r.phases {
                    let Some(q) = s.phase(p.name) else { continue };
                    let (pl, ql) = (p.latency.as_ref(), q.latency.as_ref());
                    self.phase_comparisons.push(PhaseComparison {
                        scenario: r.scenario,
                        phase: p.name,
                        target: r.target,
                        target_ops_per_sec: p.ops_per_sec,
                        sqlite_ops_per_sec: q.ops_per_sec,
                        throughput_ratio: if q.ops_per_sec > 0.0 {
                            p.ops_per_sec / q.ops_per_sec
                        } else {
                            f64::INFINITY
                        },
                        target_p50_us: pl.map(|l| l.p50_us),
                        sqlite_p50_us: ql.map(|l| l.p50_us),
                        target_p99_us: pl.map(|l| l.p99_us),
                        sqlite_p99_us: ql.map(|l| l.p99_us),
                    });
                }
            }
            if r.scenario != Scenario::Query {
                continue;
            }
            let sqlite = sqlite_of(r);
            let mut goal = |goal: &'static str,
                            unit: &'static str,
                            figure: &dyn Fn(&RunResult) -> Option<f64>,
                            met: fn(f64) -> bool| {
                if let Some(value) = figure(r) {
                    self.goals.push(Goal {
                        goal,
                        target: r.target,
                        value,
                        unit,
                        sqlite: sqlite.and_then(figure),
                        met: met(value),
                    });
                }
            };
            let ops =
                |phase: &'static str| move |r: &RunResult| r.phase(phase).map(|p| p.ops_per_sec);
            match r.target {
                TargetKind::Embedded => goal(
                    "equality on an indexed field, embedded: >= 100,000 queries/s",
                    "queries/s",
                    &ops(crate::scenario::query::FIND_EQ),
                    |v| v >= 100_000.0,
                ),
                TargetKind::Docdb => {
                    goal(
                        "equality over the socket: p50 within 1.5x of a by-id read's p50",
                        "x",
                        &|r| {
                            r.figures
                                .get(crate::scenario::query::EQ_OVER_READ_P50)
                                .copied()
                        },
                        |v| v <= 1.5,
                    );
                    goal(
                        "range of 100 rows, indexed, over the socket: p99 <= 2 ms",
                        "ms",
                        &|r| {
                            r.phase(crate::scenario::query::FIND_RANGE)
                                .and_then(|p| p.latency.as_ref())
                                .map(|l| l.p99_us / 1000.0)
                        },
                        |v| v <= 2.0,
                    );
                }
                TargetKind::Sqlite => continue,
            }
            goal(
                "creates with 2 indexes >= 70 % of creates without",
                "share",
                &|r| {
                    r.figures
                        .get(crate::scenario::query::INDEXED_CREATES_SHARE)
                        .copied()
                },
                |v| v >= 0.7,
            );
        }
    }

    /// Why the run as a whole failed, if it did: any validation failure.
    pub fn failure(&self) -> Option<String> {
        let bad: Vec<String> = self
            .runs
            .iter()
            .filter(|r| r.validation_failures > 0)
            .map(|r| {
                format!(
                    "{}: {} validation failures",
                    r.title(),
                    r.validation_failures
                )
            })
            .collect();
        (!bad.is_empty()).then(|| bad.join("; "))
    }

    pub fn to_json(&self) -> anyhow::Result<String> {
        serde_json::to_string_pretty(self).context("encoding the JSON report")
    }

    pub fn to_markdown(&self) -> String {
        let mut md = String::new();
        let m = &self.meta;
        let scenarios: Vec<&str> = {
            let mut v: Vec<&str> = self.runs.iter().map(|r| r.scenario.name()).collect();
            v.dedup();
            v
        };
        let _ = writeln!(md, "## docdb-bench: {}\n", scenarios.join(", "));
        let _ = writeln!(md, "- command: `{}`", m.command_line);
        let _ = writeln!(
            md,
            "- date: {} · nproc: {} · git: {} · {}",
            m.date,
            m.nproc,
            m.git_commit.as_deref().unwrap_or("unknown"),
            m.tool
        );
        for r in &self.runs {
            render_run(&mut md, r);
        }
        if !self.comparisons.is_empty() {
            let _ = writeln!(md, "\n### vs sqlite (same run, same seed)\n");
            let _ = writeln!(
                md,
                "| scenario | target | ops/s | sqlite ops/s | ratio | p99 µs | p99.9 µs | max µs | sqlite p99 / p99.9 / max µs |"
            );
            let _ = writeln!(md, "|---|---|---:|---:|---:|---:|---:|---:|---|");
            for c in &self.comparisons {
                let _ = writeln!(
                    md,
                    "| {} | {} | {} | {} | **{:.2}×** | {} | {} | {} | {} / {} / {} |",
                    c.scenario.name(),
                    c.target.name(),
                    thousands(c.target_ops_per_sec),
                    thousands(c.sqlite_ops_per_sec),
                    c.throughput_ratio,
                    opt_us(c.target_p99_us),
                    opt_us(c.target_p999_us),
                    opt_us(c.target_max_us),
                    opt_us(c.sqlite_p99_us),
                    opt_us(c.sqlite_p999_us),
                    opt_us(c.sqlite_max_us),
                );
            }
        }
        if !self.phase_comparisons.is_empty() {
            let _ = writeln!(
                md,
                "\n### vs sqlite, phase by phase (same run, same seed)\n"
            );
            let _ = writeln!(
                md,
                "| phase | target | ops/s | sqlite ops/s | ratio | p50 µs | sqlite p50 µs | p99 µs | sqlite p99 µs |"
            );
            let _ = writeln!(md, "|---|---|---:|---:|---:|---:|---:|---:|---:|");
            for c in &self.phase_comparisons {
                let _ = writeln!(
                    md,
                    "| {} | {} | {} | {} | **{}×** | {} | {} | {} | {} |",
                    c.phase,
                    c.target.name(),
                    slow_rate(c.target_ops_per_sec),
                    slow_rate(c.sqlite_ops_per_sec),
                    if c.throughput_ratio >= 0.01 {
                        format!("{:.2}", c.throughput_ratio)
                    } else {
                        format!("{:.5}", c.throughput_ratio)
                    },
                    opt_us(c.target_p50_us),
                    opt_us(c.sqlite_p50_us),
                    opt_us(c.target_p99_us),
                    opt_us(c.sqlite_p99_us),
                );
            }
        }
        if !self.goals.is_empty() {
            let _ = writeln!(md, "\n### issue 14 speed targets\n");
            let _ = writeln!(
                md,
                "| target | measured on | value | sqlite (same run) | met? |"
            );
            let _ = writeln!(md, "|---|---|---:|---:|---|");
            for g in &self.goals {
                let _ = writeln!(
                    md,
                    "| {} | {} | **{}** | {} | {} |",
                    g.goal,
                    g.target.name(),
                    goal_value(g.value, g.unit),
                    g.sqlite
                        .map_or_else(|| "–".into(), |v| goal_value(v, g.unit)),
                    if g.met { "yes" } else { "**no**" },
                );
            }
        }
        md
    }

    /// Writes the JSON report and appends the Markdown one, as asked.
    pub fn write_files(&self, markdown: Option<&Path>, json: Option<&Path>) -> anyhow::Result<()> {
        if let Some(p) = json {
            std::fs::write(p, self.to_json()? + "\n")
                .with_context(|| format!("writing {}", p.display()))?;
        }
        if let Some(p) = markdown {
            let mut f = std::fs::OpenOptions::new()
                .create(true)
                .append(true)
                .open(p)
                .with_context(|| format!("opening {}", p.display()))?;
            writeln!(f, "{}", self.to_markdown())
                .with_context(|| format!("appending to {}", p.display()))?;
        }
        Ok(())
    }
}

/// `1234567.8` → `1,234,568`.
pub fn thousands(x: f64) -> String {
    let s = format!("{:.0}", x.max(0.0));
    let mut out = String::with_capacity(s.len() + s.len() / 3);
    for (i, c) in s.chars().enumerate() {
        if i > 0 && (s.len() - i) % 3 == 0 {
            out.push(',');
        }
        out.push(c);
    }
    out
}

/// A rate, with a decimal when it is below 100 (a phase of full scans runs a
/// handful of queries per second).
fn slow_rate(v: f64) -> String {
    if v < 100.0 {
        format!("{v:.1}")
    } else {
        thousands(v)
    }
}

/// A goal's figure in its unit.
fn goal_value(v: f64, unit: &str) -> String {
    match unit {
        "queries/s" => format!("{} queries/s", slow_rate(v)),
        "x" => format!("{v:.2}×"),
        "ms" => format!("{v:.2} ms"),
        "share" => format!("{:.1} %", v * 100.0),
        _ => format!("{v}"),
    }
}

fn us(x: f64) -> String {
    if x >= 100.0 {
        format!("{x:.0}")
    } else {
        format!("{x:.1}")
    }
}

fn opt_us(x: Option<f64>) -> String {
    x.map_or_else(|| "–".into(), us)
}

fn latency_row(md: &mut String, name: &str, ops: u64, ops_per_sec: f64, l: Option<&Latency>) {
    let cells = l.map_or_else(
        || "– | – | – | – | – | –".to_owned(),
        |l| {
            format!(
                "{} | {} | {} | {} | {} | {}",
                us(l.mean_us),
                us(l.p50_us),
                us(l.p95_us),
                us(l.p99_us),
                us(l.p999_us),
                us(l.max_us)
            )
        },
    );
    let _ = writeln!(
        md,
        "| {name} | {} | {} | {cells} |",
        thousands(ops as f64),
        thousands(ops_per_sec)
    );
}

fn render_run(md: &mut String, r: &RunResult) {
    let _ = writeln!(md, "\n### {}\n", r.title());
    let settings: Vec<String> = r.settings.iter().map(|(k, v)| format!("{k}={v}")).collect();
    let _ = writeln!(md, "- settings: {}", settings.join(", "));
    if let Some([a, b, c]) = r.load_avg_at_start {
        let _ = writeln!(md, "- load average at start: {a:.2} {b:.2} {c:.2}");
    }
    if let Some(rp) = &r.replay {
        render_replay(md, rp);
    } else if !r.phases.is_empty() {
        render_phases(md, r);
    } else {
        let _ = writeln!(md, "- timed phase: {:.2} s\n", r.elapsed_secs);
        let _ = writeln!(
            md,
            "| op | ops | ops/s | mean µs | p50 µs | p95 µs | p99 µs | p99.9 µs | max µs |"
        );
        let _ = writeln!(md, "|---|---:|---:|---:|---:|---:|---:|---:|---:|");
        for (name, s) in &r.per_op {
            latency_row(md, name, s.ops, s.ops_per_sec, s.latency.as_ref());
        }
        if r.per_op.len() > 1 {
            latency_row(md, "**all**", r.ops, r.ops_per_sec, r.latency.as_ref());
        }
        if r.per_db.len() > 1 {
            render_per_db(md, r);
        }
        md.push('\n');
        if let (Some(rss), Some(peak)) = (r.server_rss_mib, r.server_peak_rss_mib) {
            let _ = writeln!(
                md,
                "- server RSS at the end {rss:.1} MiB, peak {peak:.1} MiB"
            );
        }
        // Per-database engine lines only while they stay readable.
        for d in r.per_db.iter().take(MAX_DB_LINES) {
            if let Some(e) = &d.engine {
                let g = &e.group_commit;
                let _ = writeln!(
                    md,
                    "- db {} group commit: avg batch **{:.2}**, max batch {}, {} batches / {} records, avg batch latency {} µs (max {} µs); WAL on disk {:.1} MiB{}",
                    d.db,
                    g.avg_batch_size,
                    g.max_batch_size,
                    g.total_batches,
                    g.total_records,
                    us(g.avg_batch_latency_ns as f64 / 1000.0),
                    us(g.max_batch_latency_ns as f64 / 1000.0),
                    e.wal_bytes as f64 / (1024.0 * 1024.0),
                    if e.wal_growth_bytes > 0 {
                        format!(
                            ", grew {:.1} MiB in the timed phase",
                            e.wal_growth_bytes as f64 / (1024.0 * 1024.0)
                        )
                    } else {
                        String::new()
                    },
                );
            }
        }
    }
    let errors = if r.errors.is_empty() {
        "none".to_owned()
    } else {
        r.errors
            .iter()
            .map(|(k, n)| format!("{k}: {n}"))
            .collect::<Vec<_>>()
            .join(", ")
    };
    let _ = writeln!(
        md,
        "- errors: {errors} · validation failures: {}",
        r.validation_failures
    );
    for f in &r.failure_examples {
        let _ = writeln!(md, "  - {f}");
    }
    for n in &r.notes {
        let _ = writeln!(md, "- note: {n}");
    }
}

/// The phases of a phased run, one row each, then its derived figures.
fn render_phases(md: &mut String, r: &RunResult) {
    let _ = writeln!(
        md,
        "\n| phase | threads | ops | ops/s | rows/op | mean µs | p50 µs | p95 µs | p99 µs | p99.9 µs | max µs |"
    );
    let _ = writeln!(
        md,
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|"
    );
    for p in &r.phases {
        let l = p.latency.as_ref();
        let rows = if p.rows > 0 && p.ops > 0 {
            format!("{:.1}", p.rows as f64 / p.ops as f64)
        } else {
            "–".into()
        };
        let _ = writeln!(
            md,
            "| {} | {} | {} | {} | {rows} | {} | {} | {} | {} | {} | {} |",
            p.name,
            p.threads,
            thousands(p.ops as f64),
            slow_rate(p.ops_per_sec),
            opt_us(l.map(|l| l.mean_us)),
            opt_us(l.map(|l| l.p50_us)),
            opt_us(l.map(|l| l.p95_us)),
            opt_us(l.map(|l| l.p99_us)),
            opt_us(l.map(|l| l.p999_us)),
            opt_us(l.map(|l| l.max_us)),
        );
    }
    md.push('\n');
    for (k, v) in &r.figures {
        let _ = writeln!(md, "- {k}: {}", figure(*v));
    }
    if let (Some(rss), Some(peak)) = (r.server_rss_mib, r.server_peak_rss_mib) {
        let _ = writeln!(
            md,
            "- server RSS at the end {rss:.1} MiB, peak {peak:.1} MiB"
        );
    }
}

/// A derived figure: ratios with 3 decimals, large numbers grouped.
fn figure(v: f64) -> String {
    if v.abs() >= 1000.0 {
        thousands(v)
    } else {
        format!("{v:.3}")
    }
}

/// Databases listed one per row; beyond this, the table shows the spread.
const MAX_DB_LINES: usize = 12;

/// The per-database table: every database when there are few, else the spread
/// (the best, median and worst p99) so 200 databases stay one screen.
fn render_per_db(md: &mut String, r: &RunResult) {
    let _ = writeln!(
        md,
        "\n| db | workers | ops | ops/s | p50 µs | p95 µs | p99 µs | p99.9 µs | max µs | avg batch |"
    );
    let _ = writeln!(md, "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|");
    let row = |md: &mut String, label: String, d: &DbStats| {
        let l = d.latency.as_ref();
        let _ = writeln!(
            md,
            "| {label} | {} | {} | {} | {} | {} | {} | {} | {} | {} |",
            d.workers,
            thousands(d.ops as f64),
            thousands(d.ops_per_sec),
            opt_us(l.map(|l| l.p50_us)),
            opt_us(l.map(|l| l.p95_us)),
            opt_us(l.map(|l| l.p99_us)),
            opt_us(l.map(|l| l.p999_us)),
            opt_us(l.map(|l| l.max_us)),
            d.engine.as_ref().map_or_else(
                || "–".into(),
                |e| format!("{:.2}", e.group_commit.avg_batch_size)
            ),
        );
    };
    if r.per_db.len() <= MAX_DB_LINES {
        for d in &r.per_db {
            row(md, d.db.to_string(), d);
        }
        return;
    }
    let mut by_p99: Vec<&DbStats> = r.per_db.iter().collect();
    by_p99.sort_by(|a, b| {
        let p = |d: &DbStats| d.latency.as_ref().map_or(f64::MAX, |l| l.p99_us);
        p(a).total_cmp(&p(b))
    });
    let n = by_p99.len();
    for (what, i) in [("best p99", 0), ("median p99", n / 2), ("worst p99", n - 1)] {
        let d = by_p99[i];
        row(md, format!("{} ({what} of {n})", d.db), d);
    }
}

fn render_replay(md: &mut String, rp: &ReplayStats) {
    const MIB: f64 = 1024.0 * 1024.0;
    let _ = writeln!(md);
    let _ = writeln!(md, "| figure | value |");
    let _ = writeln!(md, "|---|---:|");
    let rows = [
        (
            "WAL written",
            format!(
                "{:.1} MiB ({} docs)",
                rp.wal_bytes_written as f64 / MIB,
                rp.docs_written
            ),
        ),
        (
            "write phase (fsync none)",
            format!(
                "{:.2} s ({:.0} MiB/s)",
                rp.write_secs,
                rate(rp.wal_bytes_written, rp.write_secs) / MIB
            ),
        ),
        (
            "page cache before reopen",
            if rp.cold_cache { "dropped" } else { "warm" }.into(),
        ),
        (
            "`Database::open` wall time",
            format!("**{:.3} s**", rp.open_secs),
        ),
        (
            "engine's recovery duration",
            format!("{:.3} s", rp.recovery_secs),
        ),
        (
            "WAL replayed",
            format!(
                "{:.1} MiB, {} records",
                rp.replayed_bytes as f64 / MIB,
                rp.replayed_records
            ),
        ),
        (
            "replay rate",
            format!("**{:.0} MiB/s**", rp.replay_mib_per_sec),
        ),
        ("live docs after reopen", rp.live_docs_after.to_string()),
    ];
    for (k, v) in rows {
        let _ = writeln!(md, "| {k} | {v} |");
    }
    md.push('\n');
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn thousands_groups_digits() {
        assert_eq!(thousands(0.0), "0");
        assert_eq!(thousands(999.4), "999");
        assert_eq!(thousands(1000.0), "1,000");
        assert_eq!(thousands(1_234_567.8), "1,234,568");
    }

    #[test]
    fn latency_in_microseconds() {
        let mut h = Histogram::<u64>::new(3).expect("histogram");
        for ns in 1..=1000u64 {
            h.record(ns * 1000).expect("record");
        }
        let l = Latency::from_ns(&h).expect("not empty");
        assert!((l.p50_us - 500.0).abs() < 1.0, "{l:?}");
        assert!((l.max_us - 1000.0).abs() < 1.0, "{l:?}");
        assert!(Latency::from_ns(&Histogram::<u64>::new(3).expect("histogram")).is_none());
    }

    fn phase(name: &'static str, ops_per_sec: f64, p50_us: f64, p99_us: f64) -> PhaseStats {
        PhaseStats {
            name,
            threads: 2,
            ops: ops_per_sec as u64,
            elapsed_secs: 1.0,
            ops_per_sec,
            latency: Some(Latency {
                mean_us: p50_us,
                p50_us,
                p95_us: p99_us,
                p99_us,
                p999_us: p99_us,
                max_us: p99_us,
            }),
            rows: 0,
        }
    }

    fn query_run(target: TargetKind, eq_per_s: f64, range_p99_us: f64, share: f64) -> RunResult {
        use crate::scenario::query as q;
        let mut r = RunResult::new(Scenario::Query, target);
        r.phases = vec![
            phase(q::READ_BY_ID, 20_000.0, 50.0, 100.0),
            phase(q::FIND_EQ, eq_per_s, 70.0, 150.0),
            phase(q::FIND_RANGE, 1_000.0, 500.0, range_p99_us),
        ];
        r.figures.insert(q::EQ_OVER_READ_P50, 70.0 / 50.0);
        r.figures.insert(q::INDEXED_CREATES_SHARE, share);
        r
    }

    #[test]
    fn phased_runs_are_compared_phase_by_phase_and_judged_against_issue_14() {
        let mut report = Report::new(Meta::collect());
        report.runs = vec![
            query_run(TargetKind::Docdb, 10_000.0, 2_500.0, 0.8),
            query_run(TargetKind::Embedded, 99_999.0, 100.0, 0.69),
            query_run(TargetKind::Sqlite, 50_000.0, 30_000.0, 1.0),
        ];
        report.compare();
        assert!(
            report.comparisons.is_empty(),
            "no whole-run ratio of phases"
        );
        assert_eq!(report.phase_comparisons.len(), 6);
        let eq = &report.phase_comparisons[1];
        assert_eq!((eq.phase, eq.target), ("find_eq", TargetKind::Docdb));
        assert!((eq.throughput_ratio - 0.2).abs() < 1e-9, "{eq:?}");
        let goals: Vec<(TargetKind, &str, bool)> = report
            .goals
            .iter()
            .map(|g| (g.target, g.unit, g.met))
            .collect();
        assert_eq!(
            goals,
            [
                (TargetKind::Docdb, "x", true),
                (TargetKind::Docdb, "ms", false),
                (TargetKind::Docdb, "share", true),
                (TargetKind::Embedded, "queries/s", false),
                (TargetKind::Embedded, "share", false),
            ]
        );
        assert_eq!(report.goals[1].value, 2.5);
        assert_eq!(report.goals[1].sqlite, Some(30.0));
        assert_eq!(report.goals[3].sqlite, Some(50_000.0));
        let md = report.to_markdown();
        assert!(
            md.contains("| find_range | docdb | 1,000 | 1,000 | **1.00×** |"),
            "{md}"
        );
        assert!(md.contains("**2.50 ms** | 30.00 ms | **no** |"), "{md}");
        assert!(md.contains("**69.0 %** | 100.0 % | **no** |"), "{md}");
        let json = report.to_json().unwrap_or_default();
        assert!(json.contains("\"phase_comparisons\""), "{json}");
        assert!(json.contains("\"goals\""), "{json}");
    }
}
