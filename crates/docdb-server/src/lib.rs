//! `docdb-server`: one process hosting many logical databases behind a Unix socket
//! (and, with `--listen`, TCP + TLS).
//!
//! # Layout
//! Data flows socket → [`connection`] (framing, pipelining, routing) → [`scheduler`]
//! (per-database queues, worker pool) → [`cmd`] (one file per wire command, run by a
//! worker on a batch of one database's requests) → [`pool`] (lazy open, LRU, idle
//! close) → `docdb_core::Database`. Server-wide commands skip the scheduler and run
//! on [`global_pool`].
//! - [`server`]: bind, accept, signals, shutdown. [`http`]: `/metrics`, `/healthz`.
//!   [`tls`]: the TLS set-up of `--listen`.
//! - [`config`]: every setting with its default. [`catalog`]: names ⇄ ids on disk.
//!   [`datadir`]: the data directory's `LOCK` (one owner at a time) and its modes.
//! - [`resources`]: the open-file limit, shared between connections and databases.
//! - [`metrics`]: Prometheus. [`errors`]: classification and transient retry.
//! - [`global_pool`]: the fixed threads of server-wide commands. [`healing`]: the
//!   background healer (open and closed databases).
//! - [`index_builds`]: CreateIndex's builds, on threads of their own, bounded and
//!   cancellable.
//! - [`reply`]: a queued request and the guarantee it is answered once.
//! - [`auth`]: sessions, scopes, the rights check, and tokens ([`auth::token`]).
//! - [`tools`]: the offline `check`, `dump` and `restore`.
//! - [`shared_log`]: the server-wide commit log's place, drain and opening.

pub mod auth;
pub mod catalog;
pub mod cmd;
pub mod config;
pub mod connection;
pub mod context;
pub mod datadir;
pub mod errors;
pub mod global_pool;
pub mod healing;
pub mod http;
pub mod index_builds;
pub mod metrics;
pub mod pool;
pub mod reply;
pub mod resources;
pub mod scheduler;
pub mod server;
pub mod shared_log;
pub mod tls;
pub mod tools;

pub use config::ServerConfig;
pub use server::run;
