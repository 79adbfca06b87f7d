//! What a workload runs against. A [`Target`] is one database of some engine; each
//! worker thread gets its own [`Session`] (a connection, for the server and SQLite; a
//! shared handle, for the embedded engine). A [`Backend`] opens the databases of one
//! run (for the server: the one server they all live on).

mod docdb;
mod embedded;
mod sqlite;

use std::fmt;
use std::path::Path;
use std::sync::Arc;

use docdb_core::{Config, GroupCommitStats};

pub use docdb::{find_server_bin, DocdbServer, DocdbTarget, ServerSpec};
pub use embedded::EmbeddedTarget;
pub use sqlite::SqliteTarget;

/// The collection (SQLite: table) the `query` scenario fills and queries.
pub const QUERY_COLLECTION: &str = "users";
/// The collection (SQLite: table) beside it with no index, for the creates the
/// `query` scenario compares with creates into [`QUERY_COLLECTION`].
pub const PLAIN_COLLECTION: &str = "plain";
/// The collection a create of the `query` scenario goes to.
pub fn query_collection(indexed: bool) -> &'static str {
    if indexed {
        QUERY_COLLECTION
    } else {
        PLAIN_COLLECTION
    }
}
/// Rows one query of the `query` scenario asks for (DocDB's default page).
pub const QUERY_LIMIT: usize = 100;

use crate::cli::TargetKind;

/// Why one operation failed, classified so the report can count errors by kind and a
/// validating worker can tell an expected outcome from a wrong one.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum OpError {
    NotFound,
    AlreadyExists,
    /// Lost a race to another writer (not expected from single-document operations).
    Conflict,
    MemoryLimit,
    /// SQLite: the database was locked for longer than the busy timeout.
    Busy,
    /// Anything else; the operation may or may not have been applied.
    Other(String),
}

impl OpError {
    /// The key this error is counted under.
    pub fn kind(&self) -> &'static str {
        match self {
            OpError::NotFound => "not_found",
            OpError::AlreadyExists => "already_exists",
            OpError::Conflict => "conflict",
            OpError::MemoryLimit => "memory_limit",
            OpError::Busy => "busy",
            OpError::Other(_) => "other",
        }
    }

    /// True when the operation certainly changed nothing.
    pub fn changed_nothing(&self) -> bool {
        !matches!(self, OpError::Other(_))
    }
}

impl fmt::Display for OpError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            OpError::Other(m) => write!(f, "{m}"),
            e => f.write_str(e.kind()),
        }
    }
}

pub type OpResult<T> = Result<T, OpError>;

/// One worker's connection to a database. Every call is one durable operation on one
/// document of the default collection.
pub trait Session: Send {
    fn create(&mut self, id: u64, body: &[u8]) -> OpResult<()>;
    fn read(&mut self, id: u64) -> OpResult<Vec<u8>>;
    fn update(&mut self, id: u64, body: &[u8]) -> OpResult<()>;
    fn delete(&mut self, id: u64) -> OpResult<()>;
}

/// A document a query returned, as its engine hands it over: the Rust client parses
/// the reply's JSON, the embedded engine and SQLite give the stored text.
#[derive(Debug, Clone, PartialEq)]
pub enum RowDoc {
    Parsed(serde_json::Value),
    Text(Vec<u8>),
}

/// One row of a query's result.
#[derive(Debug, Clone, PartialEq)]
pub struct Row {
    pub id: u64,
    pub doc: RowDoc,
}

impl Row {
    /// The document as a JSON value (`None` when its text is not JSON).
    pub fn value(&self) -> Option<serde_json::Value> {
        match &self.doc {
            RowDoc::Parsed(v) => Some(v.clone()),
            RowDoc::Text(t) => serde_json::from_slice(t).ok(),
        }
    }
}

/// One worker's connection in the `query` scenario: single-document writes and reads
/// of [`QUERY_COLLECTION`] and the two query shapes it measures. Every query returns
/// at most [`QUERY_LIMIT`] rows, in id order.
pub trait QuerySession: Send {
    /// Creates in [`QUERY_COLLECTION`] (`indexed`) or [`PLAIN_COLLECTION`].
    fn create(&mut self, indexed: bool, id: u64, body: &[u8]) -> OpResult<()>;
    fn read(&mut self, id: u64) -> OpResult<Vec<u8>>;
    /// Documents whose top-level `field` is the string `value`.
    fn find_eq(&mut self, field: &str, value: &str) -> OpResult<Vec<Row>>;
    /// Documents whose top-level `field` is an integer in `lo..hi`.
    fn find_range(&mut self, field: &str, lo: i64, hi: i64) -> OpResult<Vec<Row>>;
}

/// One database of some engine, holding [`QUERY_COLLECTION`], for the `query`
/// scenario.
pub trait QueryTarget: Send {
    /// Writes documents in large transactions (untimed); returns how many.
    fn load(
        &self,
        docs: &mut dyn Iterator<Item = (u64, Vec<u8>)>,
        progress: &dyn Fn(u64),
    ) -> anyhow::Result<u64>;

    /// Creates one ascending single-field index per field (DocDB `CreateIndex`
    /// named `by_<field>`; SQLite an expression index on `json_extract`).
    fn create_indexes(&self, fields: &[&str]) -> anyhow::Result<()>;

    fn session(&self) -> anyhow::Result<Box<dyn QuerySession>>;

    /// Documents in both collections.
    fn count(&self) -> anyhow::Result<u64>;

    /// Bytes the database charges against its memory limit (documents and indexes),
    /// where the engine has one.
    fn memory_used(&self) -> Option<u64>;

    /// How the engine runs the two query shapes, where it says (SQLite's `EXPLAIN
    /// QUERY PLAN`, DocDB's `explain`), for the report's notes.
    fn explain(&self, eq: (&str, &str), range: (&str, i64, i64)) -> Vec<String>;

    /// Closes cleanly. Every session must be gone.
    fn close(self: Box<Self>) -> anyhow::Result<()>;
}

/// Figures the engine reports (in-process, or the server's through ListDBs and its
/// metrics).
#[derive(Debug, Clone, Default, serde::Serialize)]
pub struct EngineStats {
    pub group_commit: GroupCommitStats,
    /// WAL on disk at the end.
    pub wal_bytes: u64,
    /// WAL written during the timed phase (`mix`; WAL trimmed after a checkpoint
    /// makes it an underestimate).
    pub wal_growth_bytes: u64,
    pub data_bytes: u64,
    pub live_docs: u64,
}

/// One database of some engine.
pub trait Target: Send {
    fn kind(&self) -> TargetKind;

    /// A new session for one worker thread.
    fn session(&self) -> anyhow::Result<Box<dyn Session>>;

    /// Writes documents in large transactions, for setting up a workload (untimed).
    /// `progress` is called with the number of documents written so far.
    fn preload(
        &self,
        docs: &mut dyn Iterator<Item = (u64, Vec<u8>)>,
        progress: &dyn Fn(u64),
    ) -> anyhow::Result<u64>;

    /// Documents that exist (for the server: as of the backend's last refresh).
    fn count(&self) -> anyhow::Result<u64>;

    /// Engine figures (group commit, WAL size), where the engine has them.
    fn engine_stats(&self) -> Option<EngineStats>;

    /// Closes cleanly. Every session must be gone.
    fn close(self: Box<Self>) -> anyhow::Result<()>;
}

/// Feeds a preload's documents to `write` in chunks of at most `max_docs` documents
/// and `max_bytes` payload bytes (one transaction each), reporting progress after
/// each; returns how many were written.
pub(crate) fn preload_in_chunks(
    docs: &mut dyn Iterator<Item = (u64, Vec<u8>)>,
    (max_docs, max_bytes): (usize, usize),
    progress: &dyn Fn(u64),
    mut write: impl FnMut(Vec<(u64, Vec<u8>)>) -> anyhow::Result<()>,
) -> anyhow::Result<u64> {
    let (mut written, mut bytes) = (0u64, 0usize);
    let mut chunk = Vec::new();
    let mut docs = docs.peekable();
    while let Some((id, body)) = docs.next() {
        bytes += body.len();
        chunk.push((id, body));
        if chunk.len() >= max_docs || bytes >= max_bytes || docs.peek().is_none() {
            written += chunk.len() as u64;
            write(std::mem::take(&mut chunk))?;
            bytes = 0;
            progress(written);
        }
    }
    Ok(written)
}

/// What opens the databases of one run.
pub enum Backend {
    /// Embedded databases with this configuration.
    Embedded(Config),
    Sqlite,
    /// Databases on this server.
    Docdb(Arc<DocdbServer>),
}

impl Backend {
    /// Opens (creating) database number `index` of a run, inside `dir`.
    pub fn open(&self, dir: &Path, index: usize) -> anyhow::Result<Box<dyn Target>> {
        Ok(match self {
            Backend::Embedded(config) => Box::new(EmbeddedTarget::open(
                &dir.join(format!("db{index}")),
                config.clone(),
            )?),
            Backend::Sqlite => {
                Box::new(SqliteTarget::open(&dir.join(format!("db{index}.sqlite")))?)
            }
            Backend::Docdb(server) => Box::new(server.open(index)?),
        })
    }

    /// Opens (creating) the `query` scenario's database, inside `dir`, with an empty
    /// [`QUERY_COLLECTION`] and [`PLAIN_COLLECTION`].
    pub fn open_query(&self, dir: &Path) -> anyhow::Result<Box<dyn QueryTarget>> {
        Ok(match self {
            Backend::Embedded(config) => Box::new(embedded::EmbeddedQuery::open(
                &dir.join("query-db"),
                config.clone(),
            )?),
            Backend::Sqlite => Box::new(sqlite::SqliteQuery::open(&dir.join("query.sqlite"))?),
            Backend::Docdb(server) => Box::new(docdb::DocdbQuery::open(server)?),
        })
    }

    /// Ends the run: stops a server the run started (checking it exits cleanly).
    pub fn finish(self) -> anyhow::Result<()> {
        match self {
            Backend::Docdb(server) => server.stop(),
            _ => Ok(()),
        }
    }

    /// Reads the figures `count` and `engine_stats` report from now on (the
    /// server's, all databases at once; the others read them live).
    pub fn refresh(&self) -> anyhow::Result<()> {
        match self {
            Backend::Docdb(s) => s.refresh(),
            _ => Ok(()),
        }
    }

    pub fn server(&self) -> Option<&DocdbServer> {
        match self {
            Backend::Docdb(s) => Some(s),
            _ => None,
        }
    }
}
