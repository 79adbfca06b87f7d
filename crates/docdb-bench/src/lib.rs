//! `docdb-bench`: DocDB's load tester.
//!
//! It drives a workload against one or more *targets* — the server over its socket
//! (`docdb`), the storage engine in-process (`embedded`) and SQLite as the baseline —
//! measures throughput and HDR latency percentiles, validates what it reads, and
//! reports in Markdown and JSON.
//!
//! ```text
//! docdb-bench --dbs 3 --workers-per-db 10 --compare docdb,embedded,sqlite
//! docdb-bench --dbs 3 --workers-per-db 10 --hot-db-share 0.9 --policy deepest
//! docdb-bench --scenario creates --compare embedded,sqlite
//! docdb-bench --scenario replay --target embedded --wal-mb 1024
//! docdb-bench --scenario query --compare docdb,embedded,sqlite --preload 1000000
//! ```
//!
//! # Layout
//! - [`cli`]: the flags (clap derive); the library takes them as its configuration.
//! - [`scenario`]: `creates`, `reads`, `mix`, `replay`, `open`, `query`, one file
//!   each, and the run directory, engine configuration and preloading they share.
//! - [`target`]: the [`Target`](target::Target) trait (one database) with per-worker
//!   [`Session`](target::Session)s, and for `query` the
//!   [`QueryTarget`](target::QueryTarget)/[`QuerySession`](target::QuerySession) pair;
//!   `docdb.rs` (the server, started or running), `embedded.rs` and `sqlite.rs`
//!   implement both.
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

pub use cli::{BenchArgs, Cli, Command, Scenario, TargetKind};
pub use report::Report;

/// Runs one invocation: the measurements, and the `--markdown`/`--json` files.
pub fn run(cli: &Cli) -> anyhow::Result<Report> {
    scenario::run(cli.bench_args())
}
