//! `docdb-core`: DocDB's storage engine, usable in-process (DocDB's embedded mode).
//!
//! One [`Database`] is one logical database: named collections of JSON documents keyed
//! by `u64` ids, durable through a write-ahead log and an append-only data file,
//! readable at snapshots while writers commit, safe to share between threads.
//!
//! ```no_run
//! # fn main() -> docdb_core::Result<()> {
//! use docdb_core::{Config, Database};
//! let db = Database::open("/tmp/mydb", Config::default())?;
//! db.create("_default", 1, br#"{"name":"ada"}"#)?;
//! assert_eq!(db.read("", 1)?, br#"{"name":"ada"}"#);
//! let mut tx = db.begin();
//! tx.update("", 1, br#"{"name":"ada lovelace"}"#)?;
//! tx.commit()?;
//! db.close()?;
//! # Ok(()) }
//! ```
//!
//! # Layout
//! - [`db`]: the `Database` handle and its read path; [`tx`]: transactions;
//!   [`batch`]: independent writes sharing one group commit (the server's workers).
//! - An open database is `db::Inner`, built of owned parts: `commit::GroupCommit`
//!   (staging and group commit), `files::Files` (the I/O state and readable data
//!   files), `maintenance::Maintenance` (checkpoint, WAL trim, compaction, interval
//!   fsync), `lifecycle::Lifecycle` (closed, stopping, read-only after an I/O
//!   failure); `lock_order`: their lock order, checked in debug builds.
//!   `recovery`: open and replay; [`verify`]; [`remove`]: removing a closed
//!   database's files (DropDB);
//!   [`heal`]: rebuilding corrupt documents from the WAL.
//! - [`wal`]: WAL records, segments, writer, replay. [`data`]: data-file records and
//!   files. `checkpoint`: the `CHECKPOINT` file; `codec`: the bounds-checked reader
//!   of on-disk records; `index_snapshot`: the `INDEX` file
//!   (the index at a checkpoint), `rebuild`: the newest versions the files describe.
//!   [`storage`]: the seam every file operation goes through ([`storage::StdStorage`]
//!   in production). [`failure`]: databases whose write or fsync failed in this
//!   process. [`fsutil`]: private (0600/0700) files and directories, atomic
//!   replacement (the server's own files).
//! - `index` + `snapshot`: versions and MVCC-lite snapshots. [`memory`]: limits.
//! - [`order`]: the one order of JSON values (queries, sort, index keys).
//! - [`query`]: queries (filter, sort, projection, cursor) over one snapshot.
//!   [`secondary`]: secondary indexes (definitions, maintenance at commit, scans).
//! - [`patch`]: the patch language; [`json`]: document checks (size, depth). [`name`], [`config`], [`error`], [`stats`].

pub mod batch;
mod cache;
mod checkpoint;
mod codec;
mod commit;
pub mod config;
pub mod data;
pub mod db;
pub mod error;
pub mod failure;
mod files;
pub mod fsutil;
pub mod heal;
mod index;
mod index_snapshot;
pub mod json;
mod lifecycle;
mod lock_order;
mod maintenance;
pub mod memory;
pub mod name;
pub mod order;
mod partial;
pub mod patch;
pub mod query;
mod rebuild;
mod recovery;
pub mod remove;
pub mod secondary;
pub mod shared_log;
mod snapshot;
pub mod stats;
pub mod storage;
pub mod tx;
pub mod verify;
pub mod wal;

pub use batch::{Batch, Unflushed};
pub use cache::{DocCache, DocCacheStats};
pub use config::{Config, FsyncMode};
pub use db::{
    Database, OpenOptions, ReadAt, RecoveryReport, ScanPage, MAX_DOCUMENT_SIZE, MAX_SCAN_LIMIT,
    SCAN_ROW_OVERHEAD,
};
pub use error::{Error, Result};
pub use heal::{HealReport, HealStats};
pub use memory::MemoryBudget;
pub use query::{Query, QueryPage};
pub use remove::{remove_database, RemoveReport};
pub use secondary::{
    Direction, IndexBuild, IndexDef, IndexHit, IndexInfo, IndexRange, IndexScan, KeyPart,
};
pub use shared_log::{SharedLog, SharedLogStats};
pub use stats::{GroupCommitStats, Stats};
pub use tx::Transaction;
pub use verify::{verify_offline, verify_offline_with, VerifyReport};
