//! Command-line flags. Every flag is documented once, here, with its default; the
//! library takes these structs as its configuration, so tests build them with
//! [`clap::Parser::try_parse_from`] exactly as a user types them.

use std::path::PathBuf;

use clap::{Args, Parser, Subcommand, ValueEnum};
use docdb_core::FsyncMode;

use crate::workload::Mix;

/// DocDB's load tester: the original's multi-database CRUD mix (and a few focused
/// scenarios) against the server over its socket, the engine in-process and SQLite.
#[derive(Debug, Clone, Parser)]
#[command(
    name = "docdb-bench",
    version,
    about,
    args_conflicts_with_subcommands = true
)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Option<Command>,
    #[command(flatten)]
    pub args: BenchArgs,
}

impl Cli {
    /// The flags of this invocation, with or without the `engine` subcommand.
    pub fn bench_args(&self) -> &BenchArgs {
        match &self.command {
            Some(Command::Engine(a)) => a,
            None => &self.args,
        }
    }
}

#[derive(Debug, Clone, Subcommand)]
pub enum Command {
    /// The same as no subcommand (the name earlier reports' commands use).
    Engine(BenchArgs),
}

/// What `docdb-bench` measures.
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
    /// Create databases of `--open-docs` small documents (cached under `--dir` when
    /// given), close them cleanly, time open + first read (median of 5). Embedded only.
    Open,
    /// Load `--preload` documents (default 1,000,000) with an `email`, a `status` and
    /// an integer `n`, index `email` and `n`, and time, each as its own phase: by-id
    /// reads and equality queries on `email` (alternating), range queries on `n`
    /// returning 100 rows, creates into a collection without indexes and into the
    /// one with the 2 (alternating). Every result is checked against the rows that
    /// must come back.
    Query,
}

impl Scenario {
    pub fn name(self) -> &'static str {
        match self {
            Scenario::Creates => "creates",
            Scenario::Reads => "reads",
            Scenario::Mix => "mix",
            Scenario::Replay => "replay",
            Scenario::Open => "open",
            Scenario::Query => "query",
        }
    }
}

/// What the workload runs against.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, ValueEnum, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum TargetKind {
    /// The server over its Unix socket through the Rust client, one connection per
    /// worker: a running one (`--socket`) or one started for the run (`--server-bin`).
    Docdb,
    /// `docdb-core` in this process: one `Database` per database, shared by its workers.
    Embedded,
    /// SQLite (bundled): one file per database, WAL journal, `synchronous=FULL`, one
    /// connection per worker, every operation its own transaction.
    Sqlite,
}

impl TargetKind {
    pub fn name(self) -> &'static str {
        match self {
            TargetKind::Docdb => "docdb",
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

/// Every flag of a run.
#[derive(Debug, Clone, Args)]
pub struct BenchArgs {
    /// Which workload to run.
    #[arg(long, value_enum, default_value = "mix")]
    pub scenario: Scenario,

    /// Targets to run, one after the other (comma-separated or repeated) [default:
    /// docdb; embedded for `replay`].
    #[arg(long, value_enum, value_delimiter = ',')]
    pub target: Option<Vec<TargetKind>>,

    /// Run these targets back to back with the same seed and print each one's ratio
    /// to SQLite (overrides `--target`; alone: `docdb,sqlite`).
    #[arg(
        long,
        value_enum,
        value_delimiter = ',',
        num_args = 0..=1,
        default_missing_value = "docdb,sqlite"
    )]
    pub compare: Option<Vec<TargetKind>>,

    /// `docdb` target: use the server listening on this socket instead of starting
    /// one (its databases are named `bench-<time>-<pid>-<run>-db<i>` and left there).
    #[arg(long, value_name = "PATH")]
    pub socket: Option<PathBuf>,

    /// `docdb` target: the `docdb` binary to start [default: $DOCDB_BIN, else the
    /// one next to docdb-bench, else `docdb` on PATH].
    #[arg(long, value_name = "PATH")]
    pub server_bin: Option<PathBuf>,

    /// `docdb` target: the started server's `auth.mode`. With `token`, the run
    /// issues itself tokens (`docdb token issue`) and every connection authenticates
    /// and opens its database by name, as a tenant's would.
    #[arg(long, default_value = "none", value_parser = ["none", "token"])]
    pub auth: String,

    /// `docdb` target with `--socket`: the token every connection authenticates with
    /// (admin rights over the run's `bench-*` databases: the run reads ListDBs and
    /// the metrics).
    #[arg(long, requires = "socket")]
    pub token: Option<String>,

    /// `docdb` target: scheduler policy of the started server [default: the
    /// server's].
    #[arg(long, value_parser = ["fair", "deepest", "round_robin"])]
    pub policy: Option<String>,

    /// `docdb` target: scheduler workers of the started server [default: the
    /// server's].
    #[arg(long)]
    pub server_workers: Option<usize>,

    /// `mix` skew: database 0 gets this share of all `--dbs` × `--workers-per-db`
    /// workers, the others split the rest (at least one each).
    #[arg(long, value_name = "SHARE")]
    pub hot_db_share: Option<f64>,

    /// Worker threads of `creates` (default 32), `reads` (default 2), the readers of
    /// `query` (default 2) and the writers that fill the WAL in `replay` (default 4).
    /// `mix` uses `--dbs` × `--workers-per-db`.
    #[arg(long)]
    pub threads: Option<usize>,

    /// Writer threads of `query`'s two creates phases.
    #[arg(long, default_value_t = 16)]
    pub write_threads: usize,

    /// Seconds each timed phase runs (fractions allowed).
    #[arg(long, default_value_t = 10.0)]
    pub duration: f64,

    /// Bytes of JSON per document [default: 1024; 256 for `query`].
    #[arg(long)]
    pub doc_size: Option<usize>,

    /// Documents written before the timed phase: per database for `mix` (default
    /// 10,000), in total for `reads` (default 100,000) and `query` (default
    /// 1,000,000).
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

    /// Database sizes `open` times, in documents (add 5000000 for the large one).
    #[arg(long, value_delimiter = ',', default_value = "100000,1000000")]
    pub open_docs: Vec<u64>,

    /// `open`: delete the index snapshot before each timed open (the full scan: how
    /// open behaved before the snapshot existed).
    #[arg(long)]
    pub open_without_index: bool,

    /// Drop the page cache before the timed reopen of `replay` (needs root), so the
    /// WAL is read from the disk rather than from memory.
    #[arg(long)]
    pub drop_caches: bool,

    /// Fsync mode of the engine and the server (`replay` always uses `none`).
    #[arg(long, default_value = "group", value_parser = parse_fsync_mode)]
    pub fsync_mode: FsyncMode,

    /// Per-database memory limit, MiB: of the embedded engine [default: 1 TiB,
    /// effectively unlimited, so a long run never hits `memory limit exceeded`]; of a
    /// started server, its global and per-database limits [default: the server's own,
    /// as a user gets them].
    #[arg(long)]
    pub memory_per_db_mb: Option<u64>,
    /// Read cache, MiB (0 = off): of each embedded database; of a started server, the
    /// one its databases share (`memory.shared_cache_mb`) [default: the engine's or
    /// server's].
    #[arg(long)]
    pub cache_mb: Option<u64>,

    #[command(flatten)]
    pub common: CommonArgs,
}

fn parse_fsync_mode(s: &str) -> Result<FsyncMode, String> {
    s.parse()
}

impl BenchArgs {
    /// The targets this invocation runs, in order.
    pub fn targets(&self) -> Vec<TargetKind> {
        let default = match self.scenario {
            Scenario::Replay | Scenario::Open => vec![TargetKind::Embedded],
            _ => vec![TargetKind::Docdb],
        };
        let mut out: Vec<TargetKind> = Vec::new();
        for t in self
            .compare
            .as_ref()
            .or(self.target.as_ref())
            .unwrap_or(&default)
        {
            if !out.contains(t) {
                out.push(*t);
            }
        }
        out
    }

    pub fn threads_or(&self, default: usize) -> usize {
        self.threads.unwrap_or(default)
    }

    /// Bytes of JSON per document: `--doc-size`, else the scenario's default.
    pub fn doc_size(&self) -> usize {
        self.doc_size.unwrap_or(match self.scenario {
            Scenario::Query => 256,
            _ => 1024,
        })
    }

    pub fn preload_or(&self, default: u64) -> u64 {
        self.preload.unwrap_or(default)
    }
}

/// The embedded engine's memory limit when `--memory-per-db-mb` is not given: 1 TiB.
pub const EMBEDDED_MEMORY_MB: u64 = 1 << 20;
