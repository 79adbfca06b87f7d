//! The engine in this process: one `Arc<Database>` per database, shared by that
//! database's workers. Writes are acknowledged after the fsync the configured mode
//! requires (group commit by default), exactly as the server will acknowledge them.

use std::path::Path;
use std::sync::Arc;

use anyhow::Context as _;
use docdb_core::{Config, Database, Error};

use super::{
    preload_in_chunks, query_collection, EngineStats, OpError, OpResult, QuerySession, QueryTarget,
    Row, RowDoc, Session, Target, PLAIN_COLLECTION, QUERY_COLLECTION, QUERY_LIMIT,
};
use crate::cli::TargetKind;

/// Largest preload transaction, in documents and in payload bytes.
const PRELOAD_BATCH_DOCS: usize = 1000;
const PRELOAD_BATCH_BYTES: usize = 8 * 1024 * 1024;

pub struct EmbeddedTarget {
    db: Arc<Database>,
}

impl EmbeddedTarget {
    pub fn open(dir: &Path, config: Config) -> anyhow::Result<Self> {
        let db = Database::open(dir, config)
            .with_context(|| format!("opening embedded database {}", dir.display()))?;
        Ok(EmbeddedTarget { db: Arc::new(db) })
    }

    /// The shared handle (the `replay` scenario drops it without closing).
    pub fn into_database(self) -> Arc<Database> {
        self.db
    }
}

fn classify(e: Error) -> OpError {
    match e {
        Error::NotFound => OpError::NotFound,
        Error::AlreadyExists => OpError::AlreadyExists,
        Error::Conflict => OpError::Conflict,
        Error::MemoryLimit => OpError::MemoryLimit,
        e => OpError::Other(e.to_string()),
    }
}

/// The session of one worker: a clone of the database handle.
pub struct EmbeddedSession {
    db: Arc<Database>,
}

impl Session for EmbeddedSession {
    fn create(&mut self, id: u64, body: &[u8]) -> OpResult<()> {
        self.db.create("", id, body).map_err(classify)
    }

    fn read(&mut self, id: u64) -> OpResult<Vec<u8>> {
        self.db.read("", id).map_err(classify)
    }

    fn update(&mut self, id: u64, body: &[u8]) -> OpResult<()> {
        self.db.update("", id, body).map_err(classify)
    }

    fn delete(&mut self, id: u64) -> OpResult<()> {
        self.db.delete("", id).map_err(classify)
    }
}

impl Target for EmbeddedTarget {
    fn kind(&self) -> TargetKind {
        TargetKind::Embedded
    }

    fn session(&self) -> anyhow::Result<Box<dyn Session>> {
        Ok(Box::new(EmbeddedSession {
            db: self.db.clone(),
        }))
    }

    fn preload(
        &self,
        docs: &mut dyn Iterator<Item = (u64, Vec<u8>)>,
        progress: &dyn Fn(u64),
    ) -> anyhow::Result<u64> {
        preload_in_chunks(
            docs,
            (PRELOAD_BATCH_DOCS, PRELOAD_BATCH_BYTES),
            progress,
            |chunk| {
                let mut tx = self.db.begin();
                for (id, body) in &chunk {
                    tx.create("", *id, body)
                        .with_context(|| format!("preloading document {id}"))?;
                }
                tx.commit().context("committing a preload transaction")
            },
        )
    }

    fn count(&self) -> anyhow::Result<u64> {
        Ok(self.db.stats().live_docs)
    }

    fn engine_stats(&self) -> Option<EngineStats> {
        let s = self.db.stats();
        Some(EngineStats {
            group_commit: s.group_commit,
            wal_bytes: s.wal_bytes,
            wal_growth_bytes: 0,
            data_bytes: s.data_bytes,
            live_docs: s.live_docs,
        })
    }

    fn close(self: Box<Self>) -> anyhow::Result<()> {
        let db = Arc::try_unwrap(self.db)
            .map_err(|_| anyhow::anyhow!("a session still holds the embedded database"))?;
        db.close().context("closing the embedded database")
    }
}

/// The `query` scenario's database in this process.
pub struct EmbeddedQuery {
    db: Arc<Database>,
}

impl EmbeddedQuery {
    pub fn open(dir: &Path, config: Config) -> anyhow::Result<Self> {
        let db = Database::open(dir, config)
            .with_context(|| format!("opening embedded database {}", dir.display()))?;
        for c in [QUERY_COLLECTION, PLAIN_COLLECTION] {
            db.create_collection(c)
                .with_context(|| format!("creating collection {c}"))?;
        }
        Ok(EmbeddedQuery { db: Arc::new(db) })
    }
}

/// What an embedded user runs: the query text parsed, then one page of it.
fn query_page(db: &Database, text: &str) -> OpResult<Vec<Row>> {
    let q = docdb_core::Query::parse(text.as_bytes()).map_err(classify)?;
    let page = db.query(QUERY_COLLECTION, &q).map_err(classify)?;
    Ok(page
        .rows
        .into_iter()
        .map(|(id, doc)| Row {
            id,
            doc: RowDoc::Text(doc),
        })
        .collect())
}

/// `{"filter":{"<field>":<value>},"limit":100}`.
pub(crate) fn eq_query(field: &str, value: &str) -> String {
    let value = serde_json::Value::from(value);
    format!(r#"{{"filter":{{"{field}":{value}}},"limit":{QUERY_LIMIT}}}"#)
}

/// `{"filter":{"<field>":{"$gte":lo,"$lt":hi}},"limit":100}`.
pub(crate) fn range_query(field: &str, lo: i64, hi: i64) -> String {
    format!(r#"{{"filter":{{"{field}":{{"$gte":{lo},"$lt":{hi}}}}},"limit":{QUERY_LIMIT}}}"#)
}

impl QuerySession for EmbeddedSession {
    fn create(&mut self, indexed: bool, id: u64, body: &[u8]) -> OpResult<()> {
        self.db
            .create(query_collection(indexed), id, body)
            .map_err(classify)
    }

    fn read(&mut self, id: u64) -> OpResult<Vec<u8>> {
        self.db.read(QUERY_COLLECTION, id).map_err(classify)
    }

    fn find_eq(&mut self, field: &str, value: &str) -> OpResult<Vec<Row>> {
        query_page(&self.db, &eq_query(field, value))
    }

    fn find_range(&mut self, field: &str, lo: i64, hi: i64) -> OpResult<Vec<Row>> {
        query_page(&self.db, &range_query(field, lo, hi))
    }
}

impl QueryTarget for EmbeddedQuery {
    fn load(
        &self,
        docs: &mut dyn Iterator<Item = (u64, Vec<u8>)>,
        progress: &dyn Fn(u64),
    ) -> anyhow::Result<u64> {
        preload_in_chunks(
            docs,
            (PRELOAD_BATCH_DOCS, PRELOAD_BATCH_BYTES),
            progress,
            |chunk| {
                let mut tx = self.db.begin();
                for (id, body) in &chunk {
                    tx.create(QUERY_COLLECTION, *id, body)
                        .with_context(|| format!("loading document {id}"))?;
                }
                tx.commit().context("committing a load transaction")
            },
        )
    }

    fn create_indexes(&self, fields: &[&str]) -> anyhow::Result<()> {
        for f in fields {
            let def = docdb_core::IndexDef {
                name: format!("by_{f}"),
                fields: vec![((*f).to_owned(), 1)],
                unique: false,
            };
            self.db
                .create_index(QUERY_COLLECTION, def)
                .with_context(|| format!("creating the index on {f}"))?;
        }
        Ok(())
    }

    fn session(&self) -> anyhow::Result<Box<dyn QuerySession>> {
        Ok(Box::new(EmbeddedSession {
            db: self.db.clone(),
        }))
    }

    fn count(&self) -> anyhow::Result<u64> {
        Ok(self.db.stats().live_docs)
    }

    fn memory_used(&self) -> Option<u64> {
        Some(self.db.stats().memory_used)
    }

    fn explain(&self, eq: (&str, &str), range: (&str, i64, i64)) -> Vec<String> {
        [
            ("equality", eq_query(eq.0, eq.1)),
            ("range", range_query(range.0, range.1, range.2)),
        ]
        .into_iter()
        .map(|(what, text)| {
            let text = text.replacen('{', r#"{"explain":true,"#, 1);
            let plan = docdb_core::Query::parse(text.as_bytes())
                .and_then(|q| self.db.query(QUERY_COLLECTION, &q))
                .map(|p| p.plan.map(|p| p.to_json().to_string()).unwrap_or_default());
            match plan {
                Ok(p) => format!("{what} plan: {p}"),
                Err(e) => format!("{what} plan: {e}"),
            }
        })
        .collect()
    }

    fn close(self: Box<Self>) -> anyhow::Result<()> {
        let db = Arc::try_unwrap(self.db)
            .map_err(|_| anyhow::anyhow!("a session still holds the embedded database"))?;
        db.close().context("closing the embedded database")
    }
}
