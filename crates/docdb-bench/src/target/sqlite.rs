//! The baseline: SQLite (bundled), one file per database, `journal_mode=WAL`,
//! `synchronous=FULL` (an fsync per commit, like DocDB's durability promise), one
//! connection per worker with a 10 s busy timeout, every operation its own
//! (autocommit) transaction, documents in `docs(id INTEGER PRIMARY KEY, body TEXT)`.

use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::Context as _;
use rusqlite::{params, Connection, ErrorCode, OptionalExtension as _};

use super::{
    preload_in_chunks, query_collection, OpError, OpResult, QuerySession, QueryTarget, Row, RowDoc,
    Session, Target, PLAIN_COLLECTION, QUERY_COLLECTION, QUERY_LIMIT,
};
use crate::cli::TargetKind;
use crate::target::EngineStats;

const BUSY_TIMEOUT: Duration = Duration::from_secs(10);
const PRELOAD_BATCH_DOCS: usize = 10_000;

const SCHEMA: &str = "CREATE TABLE IF NOT EXISTS docs(id INTEGER PRIMARY KEY, body TEXT NOT NULL)";
const INSERT: &str = "INSERT INTO docs(id, body) VALUES (?1, ?2)";
const SELECT: &str = "SELECT body FROM docs WHERE id = ?1";
const UPDATE: &str = "UPDATE docs SET body = ?2 WHERE id = ?1";
const DELETE: &str = "DELETE FROM docs WHERE id = ?1";

pub struct SqliteTarget {
    path: PathBuf,
}

/// Opens a connection configured as every connection of the baseline is.
fn connect(path: &Path) -> anyhow::Result<Connection> {
    let conn =
        Connection::open(path).with_context(|| format!("opening SQLite {}", path.display()))?;
    conn.busy_timeout(BUSY_TIMEOUT)
        .context("setting the SQLite busy timeout")?;
    let mode: String = conn
        .query_row("PRAGMA journal_mode=WAL", [], |r| r.get(0))
        .context("setting journal_mode=WAL")?;
    anyhow::ensure!(
        mode.eq_ignore_ascii_case("wal"),
        "SQLite refused journal_mode=WAL (got {mode})"
    );
    conn.execute_batch("PRAGMA synchronous=FULL")
        .context("setting synchronous=FULL")?;
    Ok(conn)
}

impl SqliteTarget {
    pub fn open(path: &Path) -> anyhow::Result<Self> {
        let conn = connect(path)?;
        conn.execute_batch(SCHEMA)
            .context("creating the docs table")?;
        Ok(SqliteTarget {
            path: path.to_path_buf(),
        })
    }
}

fn classify(e: rusqlite::Error) -> OpError {
    match &e {
        rusqlite::Error::QueryReturnedNoRows => OpError::NotFound,
        rusqlite::Error::SqliteFailure(f, _) => match f.code {
            ErrorCode::DatabaseBusy | ErrorCode::DatabaseLocked => OpError::Busy,
            ErrorCode::ConstraintViolation => OpError::AlreadyExists,
            _ => OpError::Other(e.to_string()),
        },
        _ => OpError::Other(e.to_string()),
    }
}

fn text(body: &[u8]) -> OpResult<&str> {
    std::str::from_utf8(body).map_err(|_| OpError::Other("body is not UTF-8".into()))
}

/// One worker's connection.
pub struct SqliteSession {
    conn: Connection,
}

impl SqliteSession {
    /// Runs a statement that must change exactly one row.
    fn change_one(&mut self, sql: &str, id: u64, body: Option<&str>) -> OpResult<()> {
        let mut stmt = self.conn.prepare_cached(sql).map_err(classify)?;
        let id = id as i64;
        let n = match body {
            Some(b) => stmt.execute(params![id, b]),
            None => stmt.execute(params![id]),
        }
        .map_err(classify)?;
        if n == 0 {
            return Err(OpError::NotFound);
        }
        Ok(())
    }
}

impl Session for SqliteSession {
    fn create(&mut self, id: u64, body: &[u8]) -> OpResult<()> {
        self.change_one(INSERT, id, Some(text(body)?))
    }

    fn read(&mut self, id: u64) -> OpResult<Vec<u8>> {
        let mut stmt = self.conn.prepare_cached(SELECT).map_err(classify)?;
        stmt.query_row(params![id as i64], |r| {
            Ok(r.get_ref(0)?.as_bytes().map(<[u8]>::to_vec)?)
        })
        .optional()
        .map_err(classify)?
        .ok_or(OpError::NotFound)
    }

    fn update(&mut self, id: u64, body: &[u8]) -> OpResult<()> {
        self.change_one(UPDATE, id, Some(text(body)?))
    }

    fn delete(&mut self, id: u64) -> OpResult<()> {
        self.change_one(DELETE, id, None)
    }
}

impl Target for SqliteTarget {
    fn kind(&self) -> TargetKind {
        TargetKind::Sqlite
    }

    fn session(&self) -> anyhow::Result<Box<dyn Session>> {
        Ok(Box::new(SqliteSession {
            conn: connect(&self.path)?,
        }))
    }

    fn preload(
        &self,
        docs: &mut dyn Iterator<Item = (u64, Vec<u8>)>,
        progress: &dyn Fn(u64),
    ) -> anyhow::Result<u64> {
        let mut conn = connect(&self.path)?;
        preload_in_chunks(docs, (PRELOAD_BATCH_DOCS, usize::MAX), progress, |chunk| {
            let tx = conn
                .transaction()
                .context("starting a preload transaction")?;
            {
                let mut stmt = tx.prepare_cached(INSERT).context("preparing the insert")?;
                for (id, body) in &chunk {
                    let body = std::str::from_utf8(body).context("body is not UTF-8")?;
                    stmt.execute(params![*id as i64, body])
                        .with_context(|| format!("preloading document {id}"))?;
                }
            }
            tx.commit().context("committing a preload transaction")
        })
    }

    fn count(&self) -> anyhow::Result<u64> {
        let conn = connect(&self.path)?;
        let n: i64 = conn
            .query_row("SELECT count(*) FROM docs", [], |r| r.get(0))
            .context("counting SQLite documents")?;
        Ok(n as u64)
    }

    fn engine_stats(&self) -> Option<EngineStats> {
        None
    }

    fn close(self: Box<Self>) -> anyhow::Result<()> {
        // Checkpoint the WAL into the main file and truncate it, as a clean shutdown
        // would. Every session's connection is closed by now.
        let conn = connect(&self.path)?;
        conn.query_row("PRAGMA wal_checkpoint(TRUNCATE)", [], |_| Ok(()))
            .context("checkpointing SQLite on close")?;
        Ok(())
    }
}

/// The `query` scenario's baseline: one table `users(id INTEGER PRIMARY KEY, doc TEXT
/// NOT NULL)`, the document as JSON text, indexes on `json_extract(doc, '$.<field>')`
/// and queries on the same expression (so SQLite can use the index), `ORDER BY id
/// LIMIT 100` like DocDB's default page.
pub struct SqliteQuery {
    path: PathBuf,
}

/// The JSON path expression of a top-level field. Fields are the scenario's own
/// names; anything but `[a-z_]` is refused rather than spliced into SQL.
fn field_expr(field: &str) -> OpResult<String> {
    if field.is_empty() || !field.bytes().all(|b| b.is_ascii_lowercase() || b == b'_') {
        return Err(OpError::Other(format!("field name {field:?} not allowed")));
    }
    Ok(format!("json_extract(doc, '$.{field}')"))
}

fn eq_sql(field: &str) -> OpResult<String> {
    Ok(format!(
        "SELECT id, doc FROM {QUERY_COLLECTION} WHERE {} = ?1 ORDER BY id LIMIT {QUERY_LIMIT}",
        field_expr(field)?
    ))
}

fn range_sql(field: &str) -> OpResult<String> {
    let e = field_expr(field)?;
    Ok(format!(
        "SELECT id, doc FROM {QUERY_COLLECTION} WHERE {e} >= ?1 AND {e} < ?2 ORDER BY id LIMIT {QUERY_LIMIT}"
    ))
}

impl SqliteQuery {
    pub fn open(path: &Path) -> anyhow::Result<Self> {
        let conn = connect(path)?;
        for t in [QUERY_COLLECTION, PLAIN_COLLECTION] {
            conn.execute_batch(&format!(
                "CREATE TABLE IF NOT EXISTS {t}(id INTEGER PRIMARY KEY, doc TEXT NOT NULL)"
            ))
            .with_context(|| format!("creating table {t}"))?;
        }
        Ok(SqliteQuery {
            path: path.to_path_buf(),
        })
    }
}

/// One worker's connection in the `query` scenario.
pub struct SqliteQuerySession {
    conn: Connection,
    eq: std::collections::HashMap<String, String>,
    range: std::collections::HashMap<String, String>,
}

impl SqliteQuerySession {
    fn rows(&mut self, sql: &str, params: &[&dyn rusqlite::ToSql]) -> OpResult<Vec<Row>> {
        let mut stmt = self.conn.prepare_cached(sql).map_err(classify)?;
        let rows = stmt
            .query_map(params, |r| {
                let id: i64 = r.get(0)?;
                let doc = r.get_ref(1)?.as_bytes()?.to_vec();
                Ok(Row {
                    id: id as u64,
                    doc: RowDoc::Text(doc),
                })
            })
            .map_err(classify)?;
        rows.collect::<Result<Vec<_>, _>>().map_err(classify)
    }

    /// The SQL of a query shape on `field`, built once per session and field.
    fn sql(
        cache: &mut std::collections::HashMap<String, String>,
        field: &str,
        make: fn(&str) -> OpResult<String>,
    ) -> OpResult<String> {
        if let Some(s) = cache.get(field) {
            return Ok(s.clone());
        }
        let s = make(field)?;
        cache.insert(field.to_owned(), s.clone());
        Ok(s)
    }
}

impl QuerySession for SqliteQuerySession {
    fn create(&mut self, indexed: bool, id: u64, body: &[u8]) -> OpResult<()> {
        let sql = format!(
            "INSERT INTO {}(id, doc) VALUES (?1, ?2)",
            query_collection(indexed)
        );
        let mut stmt = self.conn.prepare_cached(&sql).map_err(classify)?;
        stmt.execute(params![id as i64, text(body)?])
            .map_err(classify)?;
        Ok(())
    }

    fn read(&mut self, id: u64) -> OpResult<Vec<u8>> {
        let mut stmt = self
            .conn
            .prepare_cached(&format!("SELECT doc FROM {QUERY_COLLECTION} WHERE id = ?1"))
            .map_err(classify)?;
        stmt.query_row(params![id as i64], |r| {
            Ok(r.get_ref(0)?.as_bytes().map(<[u8]>::to_vec)?)
        })
        .optional()
        .map_err(classify)?
        .ok_or(OpError::NotFound)
    }

    fn find_eq(&mut self, field: &str, value: &str) -> OpResult<Vec<Row>> {
        let sql = Self::sql(&mut self.eq, field, eq_sql)?;
        self.rows(&sql, &[&value])
    }

    fn find_range(&mut self, field: &str, lo: i64, hi: i64) -> OpResult<Vec<Row>> {
        let sql = Self::sql(&mut self.range, field, range_sql)?;
        self.rows(&sql, &[&lo, &hi])
    }
}

impl QueryTarget for SqliteQuery {
    fn load(
        &self,
        docs: &mut dyn Iterator<Item = (u64, Vec<u8>)>,
        progress: &dyn Fn(u64),
    ) -> anyhow::Result<u64> {
        let mut conn = connect(&self.path)?;
        let insert = format!("INSERT INTO {QUERY_COLLECTION}(id, doc) VALUES (?1, ?2)");
        preload_in_chunks(docs, (PRELOAD_BATCH_DOCS, usize::MAX), progress, |chunk| {
            let tx = conn.transaction().context("starting a load transaction")?;
            {
                let mut stmt = tx.prepare_cached(&insert).context("preparing the insert")?;
                for (id, body) in &chunk {
                    let body = std::str::from_utf8(body).context("body is not UTF-8")?;
                    stmt.execute(params![*id as i64, body])
                        .with_context(|| format!("loading document {id}"))?;
                }
            }
            tx.commit().context("committing a load transaction")
        })
    }

    fn create_indexes(&self, fields: &[&str]) -> anyhow::Result<()> {
        let conn = connect(&self.path)?;
        for f in fields {
            let e = field_expr(f).map_err(|e| anyhow::anyhow!("{e}"))?;
            conn.execute_batch(&format!(
                "CREATE INDEX {QUERY_COLLECTION}_{f} ON {QUERY_COLLECTION}({e})"
            ))
            .with_context(|| format!("creating the index on {f}"))?;
        }
        Ok(())
    }

    fn session(&self) -> anyhow::Result<Box<dyn QuerySession>> {
        Ok(Box::new(SqliteQuerySession {
            conn: connect(&self.path)?,
            eq: Default::default(),
            range: Default::default(),
        }))
    }

    fn count(&self) -> anyhow::Result<u64> {
        let conn = connect(&self.path)?;
        let n: i64 = conn
            .query_row(
                &format!(
                    "SELECT (SELECT count(*) FROM {QUERY_COLLECTION}) + (SELECT count(*) FROM {PLAIN_COLLECTION})"
                ),
                [],
                |r| r.get(0),
            )
            .context("counting SQLite documents")?;
        Ok(n as u64)
    }

    fn memory_used(&self) -> Option<u64> {
        None
    }

    fn explain(&self, eq: (&str, &str), range: (&str, i64, i64)) -> Vec<String> {
        let plan = |sql: OpResult<String>| -> anyhow::Result<String> {
            let sql = sql.map_err(|e| anyhow::anyhow!("{e}"))?;
            let conn = connect(&self.path)?;
            let mut stmt = conn.prepare(&format!("EXPLAIN QUERY PLAN {sql}"))?;
            let n = stmt.parameter_count();
            let params: Vec<i64> = vec![0; n];
            let steps = stmt
                .query_map(rusqlite::params_from_iter(params), |r| {
                    r.get::<_, String>(3)
                })?
                .collect::<Result<Vec<_>, _>>()?;
            Ok(steps.join("; "))
        };
        let _ = (eq.1, range.1, range.2);
        [("equality", eq_sql(eq.0)), ("range", range_sql(range.0))]
            .into_iter()
            .map(|(what, sql)| match plan(sql) {
                Ok(p) => format!("sqlite {what} plan: {p}"),
                Err(e) => format!("sqlite {what} plan: {e:#}"),
            })
            .collect()
    }

    fn close(self: Box<Self>) -> anyhow::Result<()> {
        let conn = connect(&self.path)?;
        conn.query_row("PRAGMA wal_checkpoint(TRUNCATE)", [], |_| Ok(()))
            .context("checkpointing SQLite on close")?;
        Ok(())
    }
}
