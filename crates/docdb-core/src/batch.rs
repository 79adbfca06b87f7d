//! Batches: many independent writes staged back to back and made durable by one
//! group-commit wait. The server's workers use this to turn a database's queued
//! requests into one large group commit instead of one fsync each.
//!
//! Each write is its own commit (atomic on its own, not with the others). A write's
//! success is only final once [`Batch::flush`] (or [`Batch::finish`]) returns Ok; if
//! the flush fails, every write staged since the previous flush failed.
//!
//! Operations take effect in the order they were staged, across batches too: a read
//! of a document with a staged, not yet durable write (by this batch or any other)
//! waits until that write is durable and reads it; a patch flushes first. A read of
//! any other document does not wait: it sees what is durable, which is everything
//! acknowledged. So a batch of interleaved reads and writes costs one group commit,
//! not one per read, and a server worker can hand the database to the next batch
//! while its own writes wait ([`Batch::detach`], then [`Database::wait_flushed`] or
//! [`Database::when_flushed`]).

use crate::commit::{DocKind, StagedOp};
use crate::db::Database;
use crate::error::Result;

/// A sequence of operations against one database sharing group commits.
pub struct Batch<'db> {
    db: &'db Database,
    /// Highest staged sequence number not yet known durable.
    unflushed: Option<u64>,
}

/// Writes of a detached batch that may not be durable yet: wait for them with
/// [`Database::wait_flushed`] before acknowledging them.
#[must_use = "the batch's writes are acknowledged only after wait_flushed"]
#[derive(Debug)]
pub struct Unflushed {
    seq: u64,
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
        self.stage_ops(&[StagedOp::Doc {
            coll,
            id,
            kind,
            payload,
            not_after: None,
        }])
    }

    /// Stages one commit of `ops` (all or none) into this batch.
    pub(crate) fn stage_ops(&mut self, ops: &[StagedOp]) -> Result<()> {
        let prepared = crate::secondary::stage::Prepared::of(ops);
        let seq = {
            let mut c = self.db.inner.group_commit.lock_commit();
            self.db.inner.stage_prepared(&mut c, ops, prepared)?
        };
        self.unflushed = Some(seq);
        Ok(())
    }

    /// The database this batch writes to (to begin a transaction whose commit joins
    /// the batch: [`crate::Transaction::commit_in`]).
    pub fn database(&self) -> &'db Database {
        self.db
    }

    /// Stages the creation of a collection (visible to the ops staged after it,
    /// durable at the next flush).
    pub fn create_collection(&mut self, name: &str) -> Result<()> {
        let name = crate::name::resolve_collection(name)?.to_owned();
        self.stage_ops(&[StagedOp::CreateCollection(name)])
    }

    /// Stages the deletion of an empty collection (as of the ops staged before it).
    pub fn delete_collection(&mut self, name: &str) -> Result<()> {
        let name = crate::name::resolve_collection(name)?.to_owned();
        self.stage_ops(&[StagedOp::DeleteCollection(name)])
    }

    /// Stages a create (validated now, durable at the next flush).
    pub fn create(&mut self, collection: &str, id: u64, json: &[u8]) -> Result<()> {
        self.db.inner.validate_doc(json)?;
        self.stage(collection, id, DocKind::Create, json.to_vec())
    }

    pub fn update(&mut self, collection: &str, id: u64, json: &[u8]) -> Result<()> {
        self.db.inner.validate_doc(json)?;
        self.stage(collection, id, DocKind::Update, json.to_vec())
    }

    pub fn delete(&mut self, collection: &str, id: u64) -> Result<()> {
        self.stage(collection, id, DocKind::Delete, Vec::new())
    }

    /// Reads a document, after its newest staged write (if any, by anyone) is durable.
    pub fn read(&mut self, collection: &str, id: u64) -> Result<Vec<u8>> {
        let inner = &self.db.inner;
        let coll = inner.collection(collection)?;
        if let Some(v) = coll.latest(id) {
            if v.seq > inner.snapshots.visible() {
                // A failed flush leaves the durable version in place, which is then
                // the right answer; the writes' own callers get the error.
                let _ = inner.wait_durable(v.seq);
                if self.unflushed.is_some_and(|u| u <= v.seq) {
                    self.unflushed = None;
                }
            }
        }
        Ok(inner.read_doc(&coll, id, None)?.1)
    }

    /// The length of the document a [`Batch::read`] would return now, from the index
    /// without reading it (`None`: no such document). A write staged meanwhile may
    /// change it; the read itself is the authority.
    pub fn stored_len(&self, collection: &str, id: u64) -> Result<Option<usize>> {
        let coll = self.db.inner.collection(collection)?;
        Ok(coll
            .latest(id)
            .filter(|v| v.is_live())
            .map(|v| v.len as usize))
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

    /// Waits until every write of this batch is durable and visible.
    pub fn flush(&mut self) -> Result<()> {
        if let Some(seq) = self.unflushed.take() {
            self.db.inner.wait_durable(seq)?;
        }
        Ok(())
    }

    /// Waits until every write staged in the database so far, by this batch or any
    /// other, is durable and visible (before a scan or a transaction, which read a
    /// snapshot of many documents).
    pub fn flush_all(&mut self) -> Result<()> {
        self.flush()?;
        let last = self.db.inner.last_staged();
        self.db.inner.wait_durable(last)
    }

    /// Ends the batch without waiting: returns what to wait for before acknowledging
    /// its writes, if anything.
    pub fn detach(mut self) -> Option<Unflushed> {
        self.unflushed.take().map(|seq| Unflushed { seq })
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

    /// Waits until the writes of a detached batch are durable and visible. An error
    /// means every one of them failed.
    pub fn wait_flushed(&self, unflushed: Unflushed) -> Result<()> {
        self.inner.wait_durable(unflushed.seq)
    }

    /// Calls `done` once the writes of a detached batch are durable and visible (`Ok`)
    /// or have failed, without waiting for another thread's fsync: when a group commit
    /// is in progress, `done` runs on the thread driving it, later (with a shared log,
    /// on the thread leading the log's round, which may be another database's).
    /// Otherwise this thread drives the group commits, running every callback that
    /// becomes ready, until none is left. `done` must not block for long, nor wait for
    /// a write to become durable: the thread it runs on may be the one that would
    /// make it so.
    pub fn when_flushed(
        &self,
        unflushed: Unflushed,
        done: impl FnOnce(Result<()>) + Send + 'static,
    ) {
        self.inner.when_durable(unflushed.seq, Box::new(done));
    }
}
