//! `docdb-bench`: DocDB's load tester.
//!
//! It drives a workload against one or more *targets* — today the storage engine
//! in-process (`embedded`) and SQLite as the baseline; later the server over its
//! socket — measures throughput and HDR latency percentiles, validates what it reads,
//! and reports in Markdown and JSON.
//!
//! ```text
//! docdb-bench engine --scenario creates --compare
//! docdb-bench engine --scenario mix --dbs 3 --workers-per-db 10 --json mix.json
//! docdb-bench engine --scenario replay --wal-mb 1024
//! ```
//!
//! # Layout
//! - [`cli`]: the flags (clap derive); the library takes them as its configuration.
//! - [`scenario`]: `creates`, `reads`, `mix`, `replay`, one file each, and the run
//!   directory, engine configuration and preloading they share.
//! - [`target`]: the [`Target`](target::Target) trait (one database) with per-worker
//!   [`Session`](target::Session)s; `embedded.rs` and `sqlite.rs`.
//! - [`workload`]: operation kinds, the CRUD mix, seeded randomness, document bodies.
//! - [`runner`]: worker threads, common start, deadline, per-worker recorders.
//! - [`report`]: percentiles, tables, Markdown and JSON. [`meta`]: date, nproc, git.
//! - [`progress`]: the live progress line.

pub mod cli;
pub mod meta;
pub mod progress;
pub mod report;
pub mod runner;
pub mod scenario;
pub mod target;
pub mod workload;

pub use cli::{Cli, Command, EngineArgs, Scenario, TargetKind};
pub use report::Report;

/// Runs one invocation: the measurements, and the `--markdown`/`--json` files.
pub fn run(cli: &Cli) -> anyhow::Result<Report> {
    match &cli.command {
        Command::Engine(args) => scenario::run_engine(args),
    }
}
