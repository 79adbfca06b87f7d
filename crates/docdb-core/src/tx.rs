//! Transactions: reads at one snapshot, writes buffered in the transaction, and a
//! commit that applies them all in one WAL record or none. A write-write conflict —
//! another commit wrote a document this transaction writes, after its snapshot —
//! aborts the commit with `Conflict`; there are no silent lost updates.

use std::collections::BTreeMap;
use std::sync::Arc;

use crate::commit::{DocKind, StagedOp};
use crate::db::{Database, ScanPage};
use crate::error::{Error, Result};
use crate::index::Collection;

enum Write {
    Put(Vec<u8>),
    Delete,
}

/// A transaction. Dropping it without [`Transaction::commit`] rolls it back.
pub struct Transaction<'db> {
    db: &'db Database,
    snapshot: u64,
    writes: BTreeMap<(Arc<str>, u64), (Arc<Collection>, Write)>,
    open: bool,
}

impl<'db> Transaction<'db> {
    pub(crate) fn new(db: &'db Database) -> Self {
        let snapshot = db.inner.snapshots.open();
        Transaction {
            db,
            snapshot,
            writes: BTreeMap::new(),
            open: true,
        }
    }

    /// The commit sequence number this transaction reads at.
    pub fn snapshot(&self) -> u64 {
        self.snapshot
    }

    fn current(&self, coll: &Arc<Collection>, id: u64) -> Result<Option<Vec<u8>>> {
        if let Some((_, w)) = self.writes.get(&(coll.name.clone(), id)) {
            return Ok(match w {
                Write::Put(p) => Some(p.clone()),
                Write::Delete => None,
            });
        }
        match self.db.inner.read_doc(coll, id, Some(self.snapshot)) {
            Ok((_, p)) => Ok(Some(p)),
            Err(Error::NotFound) => Ok(None),
            Err(e) => Err(e),
        }
    }

    fn exists(&self, coll: &Arc<Collection>, id: u64) -> Result<bool> {
        if let Some((_, w)) = self.writes.get(&(coll.name.clone(), id)) {
            return Ok(matches!(w, Write::Put(_)));
        }
        Ok(self
            .db
            .inner
            .version_at(coll, id, Some(self.snapshot))
            .is_some_and(|v| v.is_live()))
    }

    fn set(&mut self, coll: Arc<Collection>, id: u64, w: Write) {
        self.writes.insert((coll.name.clone(), id), (coll, w));
    }

    /// Reads a document as of the snapshot, with this transaction's own writes.
    pub fn read(&self, collection: &str, id: u64) -> Result<Vec<u8>> {
        let coll = self.db.inner.collection(collection)?;
        self.current(&coll, id)?.ok_or(Error::NotFound)
    }

    pub fn create(&mut self, collection: &str, id: u64, json: &[u8]) -> Result<()> {
        self.db.inner.validate_doc(json)?;
        let coll = self.db.inner.collection(collection)?;
        if self.exists(&coll, id)? {
            return Err(Error::AlreadyExists);
        }
        self.set(coll, id, Write::Put(json.to_vec()));
        Ok(())
    }

    pub fn update(&mut self, collection: &str, id: u64, json: &[u8]) -> Result<()> {
        self.db.inner.validate_doc(json)?;
        let coll = self.db.inner.collection(collection)?;
        if !self.exists(&coll, id)? {
            return Err(Error::NotFound);
        }
        self.set(coll, id, Write::Put(json.to_vec()));
        Ok(())
    }

    pub fn delete(&mut self, collection: &str, id: u64) -> Result<()> {
        let coll = self.db.inner.collection(collection)?;
        if !self.exists(&coll, id)? {
            return Err(Error::NotFound);
        }
        self.set(coll, id, Write::Delete);
        Ok(())
    }

    /// Patches a document as this transaction sees it; returns the new document.
    pub fn patch(&mut self, collection: &str, id: u64, ops: &[u8]) -> Result<Vec<u8>> {
        let coll = self.db.inner.collection(collection)?;
        let current = self.current(&coll, id)?.ok_or(Error::NotFound)?;
        let new = self.db.inner.patch_bytes(&current, ops)?;
        self.set(coll, id, Write::Put(new.clone()));
        Ok(new)
    }

    /// Up to `limit` documents after `start_after` as of the snapshot. Writes of this
    /// transaction are not included.
    pub fn scan(
        &self,
        collection: &str,
        start_after: u64,
        limit: usize,
    ) -> Result<Vec<(u64, Vec<u8>)>> {
        Ok(self
            .scan_page(collection, start_after, limit, usize::MAX)?
            .rows)
    }

    /// As [`Transaction::scan`], within a byte budget: see [`Database::scan_page`].
    pub fn scan_page(
        &self,
        collection: &str,
        start_after: u64,
        limit: usize,
        max_bytes: usize,
    ) -> Result<ScanPage> {
        let coll = self.db.inner.collection(collection)?;
        self.db
            .inner
            .scan_at(&coll, start_after, limit, max_bytes, Some(self.snapshot))
    }

    /// The length of the document a [`Transaction::read`] would return, from the
    /// index or this transaction's own writes, without reading it (`None`: no such
    /// document).
    pub fn stored_len(&self, collection: &str, id: u64) -> Result<Option<usize>> {
        let coll = self.db.inner.collection(collection)?;
        if let Some((_, w)) = self.writes.get(&(coll.name.clone(), id)) {
            return Ok(match w {
                Write::Put(p) => Some(p.len()),
                Write::Delete => None,
            });
        }
        Ok(self
            .db
            .inner
            .version_at(&coll, id, Some(self.snapshot))
            .filter(|v| v.is_live())
            .map(|v| v.len as usize))
    }

    /// Number of buffered writes.
    pub fn len(&self) -> usize {
        self.writes.len()
    }

    pub fn is_empty(&self) -> bool {
        self.writes.is_empty()
    }

    /// Applies every write atomically and durably, or none of them.
    pub fn commit(mut self) -> Result<()> {
        let ops = self.take_ops();
        if !ops.is_empty() {
            self.db.inner.commit(&ops)?;
        }
        Ok(())
    }

    /// Stages the commit into `batch` instead of waiting for it: the writes are
    /// applied atomically (or the error says none was), and, like the batch's own
    /// writes, durable — and so acknowledgeable — only once the batch is flushed
    /// ([`Batch::flush`], or [`Batch::detach`] then [`Database::when_flushed`]). If that
    /// flush fails, this commit failed with it. A server worker answers a transaction
    /// this way without blocking on its fsync.
    ///
    /// [`Batch::flush`]: crate::Batch::flush
    /// [`Batch::detach`]: crate::Batch::detach
    /// [`Database::when_flushed`]: crate::Database::when_flushed
    pub fn commit_in(mut self, batch: &mut crate::Batch<'_>) -> Result<()> {
        let ops = self.take_ops();
        if !ops.is_empty() {
            batch.stage_ops(&ops)?;
        }
        Ok(())
    }

    /// Ends the transaction's snapshot and turns its buffered writes into one commit.
    fn take_ops(&mut self) -> Vec<StagedOp> {
        self.finish();
        let snapshot = self.snapshot;
        std::mem::take(&mut self.writes)
            .into_iter()
            .map(|((_, id), (coll, w))| {
                let (kind, payload) = match w {
                    Write::Put(p) => (DocKind::Put, p),
                    Write::Delete => (DocKind::Remove, Vec::new()),
                };
                StagedOp::Doc {
                    coll,
                    id,
                    kind,
                    payload,
                    not_after: Some(snapshot),
                }
            })
            .collect()
    }

    /// Discards every buffered write.
    pub fn rollback(mut self) {
        self.finish();
    }

    fn finish(&mut self) {
        if self.open {
            self.open = false;
            self.db.inner.snapshots.close(self.snapshot);
        }
    }
}

impl Drop for Transaction<'_> {
    fn drop(&mut self) {
        self.finish();
    }
}
