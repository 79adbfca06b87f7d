//! The baseline: SQLite (bundled), one file per database, `journal_mode=WAL`,
//! `synchronous=FULL` (an fsync per commit, like DocDB's durability promise), one
//! connection per worker with a 10 s busy timeout, every operation its own
//! (autocommit) transaction, documents in `docs(id INTEGER PRIMARY KEY, body TEXT)`.

use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::Context as _;
use rusqlite::{params, Connection, ErrorCode, OptionalExtension as _};

use super::{preload_in_chunks, OpError, OpResult, Session, Target};
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
