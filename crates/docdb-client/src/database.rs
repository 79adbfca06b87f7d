//! [`Database`]: a handle on one logical database (its id), and [`Collection`], the
//! same document operations on a named collection.
//!
//! Handles are cheap to clone and keep working across reconnects and server restarts
//! (database ids are never reused and survive restarts).

use std::fmt;
use std::sync::Arc;

use docdb_protocol::{Command, Op, OpType, PER_OP_STATUS};
use serde::de::DeserializeOwned;
use serde::Serialize;

use crate::batch::{execute_results, single_result, transaction_results, Batch, OpResult};
use crate::client::{json_reply, ok_data, Client, Pending};
use crate::error::{Error, Result};
use crate::scan::Scan;
use crate::stats::HealStats;

/// Document ops go out with the per-op status flag, so each op's result carries its
/// own status (docs/PROTOCOL.md, "Per-op statuses").
const EXECUTE: u8 = Command::Execute as u8 | PER_OP_STATUS;
const TRANSACTION: u8 = Command::Transaction as u8 | PER_OP_STATUS;

/// An open database. Document methods on the handle itself act on the `_default`
/// collection; [`Database::collection`] addresses another.
#[derive(Clone)]
pub struct Database {
    client: Client,
    id: u64,
    name: Arc<str>,
}

impl fmt::Debug for Database {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Database")
            .field("id", &self.id)
            .field("name", &self.name)
            .finish()
    }
}

impl Database {
    pub(crate) fn new(client: Client, id: u64, name: &str) -> Database {
        Database {
            client,
            id,
            name: name.into(),
        }
    }

    /// The database's id (stable across server restarts).
    pub fn id(&self) -> u64 {
        self.id
    }

    /// The name it was opened with.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The client this handle sends through.
    pub fn client(&self) -> &Client {
        &self.client
    }

    /// Document operations on collection `name` (`""` is `_default`).
    pub fn collection<'a>(&'a self, name: &'a str) -> Collection<'a> {
        Collection { db: self, name }
    }

    fn default_collection(&self) -> Collection<'_> {
        self.collection("")
    }

    /// Inserts a document (JSON bytes) into `_default`. See [`Collection::create`].
    pub fn create(&self, id: u64, doc: impl AsRef<[u8]>) -> Result<()> {
        self.default_collection().create(id, doc)
    }

    /// Inserts `value` as JSON into `_default`.
    pub fn create_json<T: Serialize + ?Sized>(&self, id: u64, value: &T) -> Result<()> {
        self.default_collection().create_json(id, value)
    }

    /// Reads a document's JSON bytes from `_default`.
    pub fn read(&self, id: u64) -> Result<Vec<u8>> {
        self.default_collection().read(id)
    }

    /// Reads a document from `_default` as `T`.
    pub fn read_json<T: DeserializeOwned>(&self, id: u64) -> Result<T> {
        self.default_collection().read_json(id)
    }

    /// Replaces a document in `_default`.
    pub fn update(&self, id: u64, doc: impl AsRef<[u8]>) -> Result<()> {
        self.default_collection().update(id, doc)
    }

    /// Replaces a document in `_default` with `value` as JSON.
    pub fn update_json<T: Serialize + ?Sized>(&self, id: u64, value: &T) -> Result<()> {
        self.default_collection().update_json(id, value)
    }

    /// Deletes a document from `_default`.
    pub fn delete(&self, id: u64) -> Result<()> {
        self.default_collection().delete(id)
    }

    /// Patches a document in `_default`. See [`Collection::patch`].
    pub fn patch<P: Serialize + ?Sized>(&self, id: u64, ops: &P) -> Result<()> {
        self.default_collection().patch(id, ops)
    }

    /// Patches a document in `_default` with the operations' JSON bytes.
    pub fn patch_raw(&self, id: u64, ops: impl AsRef<[u8]>) -> Result<()> {
        self.default_collection().patch_raw(id, ops)
    }

    /// Iterates over `_default` in id order. See [`Scan`].
    pub fn scan(&self) -> Scan {
        self.default_collection().scan()
    }

    /// A query on `_default`. See [`crate::Query`].
    pub fn query(&self) -> crate::Query {
        self.default_collection().query()
    }

    /// Rebuilds a corrupt document of `_default` from the WAL. See [`Collection::heal`].
    pub fn heal(&self, id: u64) -> Result<()> {
        self.default_collection().heal(id)
    }

    /// Runs the batch's ops in order, each on its own (Execute): a failed op does not
    /// stop the others. Returns one result per op (`Some(document)` for reads); the
    /// outer error is for the request as a whole (connection, `database not open`,
    /// `request queue is full`, ...).
    pub fn execute(&self, batch: &Batch) -> Result<Vec<OpResult>> {
        self.submit(batch)?.wait()
    }

    /// Sends the batch as an Execute without waiting for it (pipelining).
    pub fn submit(&self, batch: &Batch) -> Result<Pending<Vec<OpResult>>> {
        let (ops, kinds) = batch.to_request()?;
        self.client.submit_code(self.id, EXECUTE, ops, move |resp| {
            execute_results(&kinds, resp)
        })
    }

    /// Applies all of the batch's ops or none (Transaction), at one snapshot. Returns
    /// each op's result (`Some(document)` for reads), or the error of the op that
    /// aborted it; a write-write race with another commit is retried by the server
    /// and reported as [`Error::Conflict`] if it persists.
    pub fn transaction(&self, batch: &Batch) -> Result<Vec<Option<Vec<u8>>>> {
        let (ops, kinds) = batch.to_request()?;
        self.client
            .submit_code(self.id, TRANSACTION, ops, move |resp| {
                transaction_results(&kinds, resp)
            })?
            .wait()
    }

    /// Creates collection `name`; `collection already exists` if it does.
    pub fn create_collection(&self, name: &str) -> Result<()> {
        self.collection_command(Command::CreateCollection, name)
    }

    /// Deletes an empty collection; `collection is not empty` while it holds
    /// documents.
    pub fn delete_collection(&self, name: &str) -> Result<()> {
        self.collection_command(Command::DeleteCollection, name)
    }

    /// Creates a secondary index on `collection` (CreateIndex); returns once it is
    /// built. A unique index over documents sharing a key fails with
    /// [`Error::Conflict`]-status text `duplicate key for unique index NAME`.
    pub fn create_index(&self, collection: &str, spec: &crate::IndexSpec) -> Result<()> {
        let payload = serde_json::to_vec(spec)
            .map_err(|e| Error::protocol(format!("index definition: {e}")))?;
        let op = Op::new(OpType::Create, collection, 0, payload);
        self.client
            .request(self.id, Command::CreateIndex, vec![op], |resp| {
                ok_data(resp).map(drop)
            })
    }

    /// Drops an index (DropIndex); `index not found: NAME` if there is none.
    pub fn drop_index(&self, collection: &str, name: &str) -> Result<()> {
        let payload = serde_json::to_vec(&serde_json::json!({ "name": name }))
            .map_err(|e| Error::protocol(format!("index name: {e}")))?;
        let op = Op::new(OpType::Create, collection, 0, payload);
        self.client
            .request(self.id, Command::DropIndex, vec![op], |resp| {
                ok_data(resp).map(drop)
            })
    }

    /// The indexes of `collection`, by name (ListIndexes).
    pub fn list_indexes(&self, collection: &str) -> Result<Vec<crate::IndexInfo>> {
        let op = Op::new(OpType::Create, collection, 0, Vec::new());
        self.client
            .request(self.id, Command::ListIndexes, vec![op], |resp| {
                json_reply(&ok_data(resp)?, "ListIndexes")
            })
    }

    fn collection_command(&self, command: Command, name: &str) -> Result<()> {
        let op = Op::new(OpType::Create, name, 0, Vec::new());
        self.client
            .request(self.id, command, vec![op], |resp| ok_data(resp).map(drop))
    }

    /// The database's collection names, sorted (`_default` included).
    pub fn list_collections(&self) -> Result<Vec<String>> {
        self.client
            .request(self.id, Command::ListCollections, Vec::new(), |resp| {
                json_reply(&ok_data(resp)?, "ListCollections")
            })
    }

    /// Verifies every live document and rebuilds the corrupt ones (HealAll); returns
    /// the ids healed.
    pub fn heal_all(&self) -> Result<Vec<u64>> {
        self.client
            .request(self.id, Command::HealAll, Vec::new(), |resp| {
                json_reply(&ok_data(resp)?, "HealAll")
            })
    }

    /// The database's healing statistics (HealStats).
    pub fn heal_stats(&self) -> Result<HealStats> {
        self.client
            .request(self.id, Command::HealStats, Vec::new(), |resp| {
                json_reply(&ok_data(resp)?, "HealStats")
            })
    }

    /// Asks the server to checkpoint and close the database (CloseDB). The handle
    /// stays usable: the next request reopens the database.
    pub fn close(&self) -> Result<()> {
        self.client
            .request(self.id, Command::CloseDb, Vec::new(), |resp| {
                ok_data(resp).map(drop)
            })
    }

    /// Sends one document op and decodes its single result.
    fn single(&self, op: Op) -> Result<Option<Vec<u8>>> {
        let kind = op.kind().unwrap_or(OpType::Create);
        self.client
            .submit_code(self.id, EXECUTE, vec![op], move |resp| {
                single_result(kind, resp)
            })?
            .wait()
    }
}

/// Document operations on one collection of a [`Database`].
#[derive(Clone, Copy)]
pub struct Collection<'a> {
    db: &'a Database,
    name: &'a str,
}

impl fmt::Debug for Collection<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Collection")
            .field("db", &self.db.id)
            .field("name", &self.name)
            .finish()
    }
}

impl<'a> Collection<'a> {
    /// The collection's name (`""` is `_default`).
    pub fn name(&self) -> &'a str {
        self.name
    }

    /// The database it belongs to.
    pub fn database(&self) -> &'a Database {
        self.db
    }

    /// Inserts a document; `doc` must be valid JSON. [`Error::Conflict`] if the id
    /// exists, [`Error::MemoryLimit`] over a memory budget.
    pub fn create(&self, id: u64, doc: impl AsRef<[u8]>) -> Result<()> {
        self.write(OpType::Create, id, doc.as_ref().to_vec())
    }

    /// Inserts `value` serialized as JSON.
    pub fn create_json<T: Serialize + ?Sized>(&self, id: u64, value: &T) -> Result<()> {
        self.write(OpType::Create, id, serde_json::to_vec(value)?)
    }

    /// The document's JSON bytes; [`Error::NotFound`] if it does not exist.
    pub fn read(&self, id: u64) -> Result<Vec<u8>> {
        self.db
            .single(Op::new(OpType::Read, self.name, id, Vec::new()))?
            .ok_or_else(|| Error::protocol("read returned no document"))
    }

    /// The document deserialized as `T`; [`Error::Json`] if it does not fit.
    pub fn read_json<T: DeserializeOwned>(&self, id: u64) -> Result<T> {
        Ok(serde_json::from_slice(&self.read(id)?)?)
    }

    /// Replaces an existing document; [`Error::NotFound`] if it does not exist.
    pub fn update(&self, id: u64, doc: impl AsRef<[u8]>) -> Result<()> {
        self.write(OpType::Update, id, doc.as_ref().to_vec())
    }

    /// Replaces an existing document with `value` serialized as JSON.
    pub fn update_json<T: Serialize + ?Sized>(&self, id: u64, value: &T) -> Result<()> {
        self.write(OpType::Update, id, serde_json::to_vec(value)?)
    }

    /// Deletes an existing document; [`Error::NotFound`] if it does not exist.
    pub fn delete(&self, id: u64) -> Result<()> {
        self.write(OpType::Delete, id, Vec::new())
    }

    /// Applies patch operations to an existing JSON object, all or nothing. `ops` is
    /// anything that serializes to the patch array: `&[PatchOp]`, a
    /// `serde_json::json!([...])`, ... Errors: [`Error::NotFound`], or
    /// [`Error::Server`] with `invalid JSON path`, `invalid patch operations`,
    /// `document is not a JSON object`, `patch test failed`.
    ///
    /// [`PatchOp`]: crate::PatchOp
    pub fn patch<P: Serialize + ?Sized>(&self, id: u64, ops: &P) -> Result<()> {
        self.patch_raw(id, serde_json::to_vec(ops)?)
    }

    /// Patches with the operations' JSON bytes as they are.
    pub fn patch_raw(&self, id: u64, ops: impl AsRef<[u8]>) -> Result<()> {
        self.db
            .single(Op::patch(self.name, id, ops.as_ref().to_vec()))
            .map(drop)
    }

    /// Iterates over the collection's documents in id order, a page per request.
    pub fn scan(&self) -> Scan {
        Scan::new(self.db.clone(), self.name)
    }

    /// A query on this collection (filter, sort, projection; see [`crate::Query`]).
    pub fn query(&self) -> crate::Query {
        crate::Query::new(self.db.clone(), self.name)
    }

    /// Rebuilds the document from the newest intact copy in the WAL if it is corrupt
    /// (Heal); succeeds if it was intact.
    pub fn heal(&self, id: u64) -> Result<()> {
        let op = Op::new(OpType::Read, self.name, id, Vec::new());
        self.db
            .client
            .request(self.db.id, Command::Heal, vec![op], |resp| {
                ok_data(resp).map(drop)
            })
    }

    fn write(&self, kind: OpType, id: u64, payload: Vec<u8>) -> Result<()> {
        self.db
            .single(Op::new(kind, self.name, id, payload))
            .map(drop)
    }
}
