//! Command-line flags. Every flag is documented once, here, with its default; the
//! library takes these structs as its configuration, so tests build them with
//! [`clap::Parser::try_parse_from`] exactly as a user types them.

use std::path::PathBuf;

use clap::{Args, Parser, Subcommand, ValueEnum};
use docdb_core::FsyncMode;

use crate::workload::Mix;

/// DocDB's load tester.
#[derive(Debug, Clone, Parser)]
#[command(name = "docdb-bench", version, about)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Clone, Subcommand)]
pub enum Command {
    /// Drive the storage engine in-process (and SQLite as a baseline) with no server
    /// in between.
    Engine(EngineArgs),
}

/// What `docdb-bench engine` measures.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Scenario {
    /// `--threads` writers (default 32) creating new documents in one database.
    Creates,
    /// Preload, then `--threads` readers (default 2) doing random point reads.
    Reads,
    /// `--dbs` × `--workers-per-db` workers running the `--mix` of CRUD operations,
    /// every result validated.
    Mix,
    /// Write `--wal-mb` of WAL, drop the database without closing it, time the reopen
    /// (WAL replay). Embedded only.
    Replay,
}

impl Scenario {
    pub fn name(self) -> &'static str {
        match self {
            Scenario::Creates => "creates",
            Scenario::Reads => "reads",
            Scenario::Mix => "mix",
            Scenario::Replay => "replay",
        }
    }
}

/// What the workload runs against.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, ValueEnum, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum TargetKind {
    /// `docdb-core` in this process: one `Database` per database, shared by its workers.
    Embedded,
    /// SQLite (bundled): one file per database, WAL journal, `synchronous=FULL`, one
    /// connection per worker, every operation its own transaction.
    Sqlite,
}

impl TargetKind {
    pub fn name(self) -> &'static str {
        match self {
            TargetKind::Embedded => "embedded",
            TargetKind::Sqlite => "sqlite",
        }
    }
}

/// Flags every subcommand shares.
#[derive(Debug, Clone, Args)]
pub struct CommonArgs {
    /// Directory for the databases. A fresh subdirectory is made inside it and removed
    /// at the end (see `--keep-data`). Default: a temporary directory.
    #[arg(long)]
    pub dir: Option<PathBuf>,

    /// Keep the data files instead of removing them at the end.
    #[arg(long)]
    pub keep_data: bool,

    /// Seed of every random choice (ids, op mix, document contents); `--compare` runs
    /// each target with the same seed.
    #[arg(long, default_value_t = 0x5eed)]
    pub seed: u64,

    /// Append a Markdown report (command line, date, nproc, git commit, tables).
    #[arg(long, value_name = "FILE")]
    pub markdown: Option<PathBuf>,

    /// Write a JSON report (same content as the Markdown one).
    #[arg(long, value_name = "FILE")]
    pub json: Option<PathBuf>,

    /// No live progress line on stderr.
    #[arg(long, short)]
    pub quiet: bool,
}

/// `docdb-bench engine`.
#[derive(Debug, Clone, Args)]
pub struct EngineArgs {
    /// Which workload to run.
    #[arg(long, value_enum)]
    pub scenario: Scenario,

    /// Targets to run, one after the other (comma-separated or repeated).
    #[arg(long, value_enum, value_delimiter = ',', default_value = "embedded")]
    pub target: Vec<TargetKind>,

    /// Run the embedded engine and SQLite back to back with the same seed and print
    /// the ratio (overrides `--target`).
    #[arg(long)]
    pub compare: bool,

    /// Worker threads of `creates` (default 32), `reads` (default 2) and the writers
    /// that fill the WAL in `replay` (default 4). `mix` uses `--dbs` × `--workers-per-db`.
    #[arg(long)]
    pub threads: Option<usize>,

    /// Seconds each timed phase runs (fractions allowed).
    #[arg(long, default_value_t = 10.0)]
    pub duration: f64,

    /// Bytes of JSON per document.
    #[arg(long, default_value_t = 1024)]
    pub doc_size: usize,

    /// Documents written before the timed phase: per database for `mix` (default
    /// 10,000), in total for `reads` (default 100,000).
    #[arg(long)]
    pub preload: Option<u64>,

    /// Databases in `mix`.
    #[arg(long, default_value_t = 3)]
    pub dbs: usize,

    /// Workers per database in `mix`.
    #[arg(long, default_value_t = 10)]
    pub workers_per_db: usize,

    /// Percentages of read,create,update,delete in `mix`; must sum to 100.
    #[arg(long, default_value = "40,30,20,10")]
    pub mix: Mix,

    /// MiB of WAL `replay` writes before dropping the database.
    #[arg(long, default_value_t = 1024)]
    pub wal_mb: u64,

    /// Drop the page cache before the timed reopen of `replay` (needs root), so the
    /// WAL is read from the disk rather than from memory.
    #[arg(long)]
    pub drop_caches: bool,

    /// Fsync mode of the embedded engine (`replay` always uses `none`).
    #[arg(long, default_value = "group", value_parser = parse_fsync_mode)]
    pub fsync_mode: FsyncMode,

    /// Per-database memory limit of the embedded engine, MiB. The default is
    /// effectively unlimited so a long `creates` run never hits `memory limit exceeded`.
    #[arg(long, default_value_t = 1 << 20)]
    pub memory_per_db_mb: u64,
    /// Engine read cache per database, MiB (0 = off) [default: the engine's].
    #[arg(long)]
    pub cache_mb: Option<u64>,

    #[command(flatten)]
    pub common: CommonArgs,
}

fn parse_fsync_mode(s: &str) -> Result<FsyncMode, String> {
    s.parse()
}

impl EngineArgs {
    /// The targets this invocation runs, in order.
    pub fn targets(&self) -> Vec<TargetKind> {
        if self.compare {
            return vec![TargetKind::Embedded, TargetKind::Sqlite];
        }
        let mut out: Vec<TargetKind> = Vec::new();
        for t in &self.target {
            if !out.contains(t) {
                out.push(*t);
            }
        }
        out
    }

    pub fn threads_or(&self, default: usize) -> usize {
        self.threads.unwrap_or(default)
    }

    pub fn preload_or(&self, default: u64) -> u64 {
        self.preload.unwrap_or(default)
    }
}
