//! Batches: many independent writes staged back to back and made durable by one
//! group-commit wait. The server's workers use this to turn a database's queued
//! requests into one large group commit instead of one fsync each.
//!
//! Each write is its own commit (atomic on its own, not with the others). A write's
//! success is only final once [`Batch::flush`] (or [`Batch::finish`]) returns Ok; if
//! the flush fails, every write staged since the previous flush failed. Reads and
//! patches flush first, so operations of a batch take effect in the order given.

use crate::commit::{DocKind, StagedOp};
use crate::db::{validate_json, Database};
use crate::error::Result;

/// A sequence of operations against one database sharing group commits.
pub struct Batch<'db> {
    db: &'db Database,
    /// Highest staged sequence number not yet known durable.
    unflushed: Option<u64>,
}

impl<'db> Batch<'db> {
    pub(crate) fn new(db: &'db Database) -> Self {
        Batch {
            db,
            unflushed: None,
        }
    }

    fn stage(&mut self, collection: &str, id: u64, kind: DocKind, payload: Vec<u8>) -> Result<()> {
        let coll = self.db.inner.collection(collection)?;
        let op = StagedOp::Doc {
            coll,
            id,
            kind,
            payload,
            not_after: None,
        };
        let seq = {
            let mut c = self.db.inner.commit.lock();
            self.db.inner.stage(&mut c, std::slice::from_ref(&op))?
        };
        self.unflushed = Some(seq);
        Ok(())
    }

    /// Stages a create (validated now, durable at the next flush).
    pub fn create(&mut self, collection: &str, id: u64, json: &[u8]) -> Result<()> {
        validate_json(json)?;
        self.stage(collection, id, DocKind::Create, json.to_vec())
    }

    pub fn update(&mut self, collection: &str, id: u64, json: &[u8]) -> Result<()> {
        validate_json(json)?;
        self.stage(collection, id, DocKind::Update, json.to_vec())
    }

    pub fn delete(&mut self, collection: &str, id: u64) -> Result<()> {
        self.stage(collection, id, DocKind::Delete, Vec::new())
    }

    /// Reads after making earlier writes of the batch durable and visible.
    pub fn read(&mut self, collection: &str, id: u64) -> Result<Vec<u8>> {
        self.flush()?;
        self.db.read(collection, id)
    }

    /// Patches (a commit of its own) after flushing earlier writes.
    pub fn patch(&mut self, collection: &str, id: u64, ops: &[u8]) -> Result<Vec<u8>> {
        self.flush()?;
        self.db.patch(collection, id, ops)
    }

    /// True when writes are staged but not yet durable.
    pub fn has_unflushed(&self) -> bool {
        self.unflushed.is_some()
    }

    /// Waits until every staged write is durable and visible.
    pub fn flush(&mut self) -> Result<()> {
        if let Some(seq) = self.unflushed.take() {
            self.db.inner.wait_durable(seq)?;
        }
        Ok(())
    }

    pub fn finish(mut self) -> Result<()> {
        self.flush()
    }
}

impl Drop for Batch<'_> {
    fn drop(&mut self) {
        // Staged commits are in the log buffer either way; make sure they do not sit
        // there unsynced if the caller forgot to flush.
        let _ = self.flush();
    }
}

impl Database {
    /// Starts a batch of independent writes that share group commits.
    pub fn batch(&self) -> Batch<'_> {
        Batch::new(self)
    }
}
