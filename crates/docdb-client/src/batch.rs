//! [`Batch`]: several operations in one request, sent as an Execute (each op on its
//! own, per-op results) or a Transaction (all or nothing), and the decoding of their
//! replies.
//!
//! Both are sent with the per-op status flag ([`docdb_protocol::PER_OP_STATUS`]): an OK
//! reply carries per op its own status and bytes (a read's document, a failed op's
//! error text, else nothing); a non-OK reply is a request-level error, plain text.

use docdb_protocol::frame::decode_status_results;
use docdb_protocol::{text, Op, OpType, Response};
use serde::Serialize;

use crate::error::{Error, Result};

/// The outcome of one op of a batch: `Some(document)` for a read, `None` for a write.
pub type OpResult = Result<Option<Vec<u8>>, Error>;

/// Operations to run in one request, built by chaining:
///
/// ```
/// use docdb_client::{Batch, PatchOp};
/// let batch = Batch::new()
///     .create(1, r#"{"n":1}"#)
///     .patch(1, &[PatchOp::set("/n", 2)])
///     .read(1)
///     .collection("users") // the ops below go to `users`
///     .delete(7);
/// assert_eq!(batch.len(), 4);
/// ```
#[derive(Debug, Clone, Default)]
pub struct Batch {
    ops: Vec<Op>,
    /// Collection of the ops added next (empty = `_default`).
    collection: String,
    /// The first serde helper failure, reported when the batch is sent.
    json_error: Option<String>,
}

impl Batch {
    pub fn new() -> Self {
        Self::default()
    }

    /// Ops added after this call go to collection `name` (`""` = `_default`, where a
    /// batch starts).
    pub fn collection(mut self, name: &str) -> Self {
        name.clone_into(&mut self.collection);
        self
    }

    /// Inserts a document; fails with Conflict if the id exists.
    pub fn create(self, id: u64, doc: impl AsRef<[u8]>) -> Self {
        self.push(OpType::Create, id, doc.as_ref().to_vec())
    }

    /// Inserts `value` serialized as JSON.
    pub fn create_json<T: Serialize + ?Sized>(self, id: u64, value: &T) -> Self {
        self.push_json(OpType::Create, id, value)
    }

    /// Reads a document; its result is `Some(bytes)`.
    pub fn read(self, id: u64) -> Self {
        self.push(OpType::Read, id, Vec::new())
    }

    /// Replaces an existing document.
    pub fn update(self, id: u64, doc: impl AsRef<[u8]>) -> Self {
        self.push(OpType::Update, id, doc.as_ref().to_vec())
    }

    /// Replaces an existing document with `value` serialized as JSON.
    pub fn update_json<T: Serialize + ?Sized>(self, id: u64, value: &T) -> Self {
        self.push_json(OpType::Update, id, value)
    }

    /// Deletes an existing document.
    pub fn delete(self, id: u64) -> Self {
        self.push(OpType::Delete, id, Vec::new())
    }

    /// Patches an existing document: `ops` is anything that serializes to the patch
    /// array, e.g. `&[PatchOp]` or a `serde_json::json!([...])`.
    pub fn patch<P: Serialize + ?Sized>(mut self, id: u64, ops: &P) -> Self {
        match serde_json::to_vec(ops) {
            Ok(bytes) => self.patch_raw(id, bytes),
            Err(e) => {
                self.json_error.get_or_insert(e.to_string());
                self
            }
        }
    }

    /// Patches with the operations' JSON bytes as they are.
    pub fn patch_raw(mut self, id: u64, ops: impl AsRef<[u8]>) -> Self {
        self.ops
            .push(Op::patch(&self.collection, id, ops.as_ref().to_vec()));
        self
    }

    pub fn len(&self) -> usize {
        self.ops.len()
    }

    pub fn is_empty(&self) -> bool {
        self.ops.is_empty()
    }

    fn push(mut self, kind: OpType, id: u64, payload: Vec<u8>) -> Self {
        self.ops.push(Op::new(kind, &self.collection, id, payload));
        self
    }

    fn push_json<T: Serialize + ?Sized>(mut self, kind: OpType, id: u64, value: &T) -> Self {
        match serde_json::to_vec(value) {
            Ok(bytes) => self.push(kind, id, bytes),
            Err(e) => {
                self.json_error.get_or_insert(e.to_string());
                self
            }
        }
    }

    /// The ops to send and their types (to decode the reply), or the serde helper
    /// failure recorded while building.
    pub(crate) fn to_request(&self) -> Result<(Vec<Op>, Vec<u8>)> {
        if let Some(e) = &self.json_error {
            return Err(Error::Json(serde::ser::Error::custom(e)));
        }
        let kinds = self.ops.iter().map(|o| o.op_type).collect();
        Ok((self.ops.clone(), kinds))
    }
}

fn success(kind: u8, result: Vec<u8>) -> Option<Vec<u8>> {
    (kind == OpType::Read as u8).then_some(result)
}

/// The per-op results of a reply to a request sent with the per-op status flag: an OK
/// reply carries each op's status and bytes; any other reply is a request-level error
/// (`database not open`, `request queue is full`, ...) whose data is plain text.
fn results_of(kinds: &[u8], resp: Response) -> Result<Vec<(u8, Vec<u8>)>> {
    if resp.status != 0 {
        return Err(Error::from_status(resp.status, &resp.data));
    }
    let results =
        decode_status_results(&resp.data).map_err(|e| Error::protocol(format!("results: {e}")))?;
    if results.len() != kinds.len() {
        return Err(Error::protocol(format!(
            "{} results for {} ops",
            results.len(),
            kinds.len()
        )));
    }
    Ok(results)
}

/// Decodes an Execute reply: one result per op, each with its own status.
pub(crate) fn execute_results(kinds: &[u8], resp: Response) -> Result<Vec<OpResult>> {
    Ok(results_of(kinds, resp)?
        .into_iter()
        .zip(kinds)
        .map(|((status, result), &kind)| {
            if status == 0 {
                Ok(success(kind, result))
            } else {
                Err(Error::from_status(status, &result))
            }
        })
        .collect())
}

/// Decodes a Transaction reply: every op's result, or the error of the op that
/// aborted it (the other ops say `transaction not applied: op N failed`).
pub(crate) fn transaction_results(kinds: &[u8], resp: Response) -> Result<Vec<Option<Vec<u8>>>> {
    let results = results_of(kinds, resp)?;
    let failed = |(status, _): &&(u8, Vec<u8>)| *status != 0;
    let cause = results
        .iter()
        .filter(failed)
        .find(|(_, text)| !text.starts_with(text::TX_NOT_APPLIED.as_bytes()))
        .or_else(|| results.iter().find(failed));
    if let Some((status, text)) = cause {
        return Err(Error::from_status(*status, text));
    }
    Ok(results
        .into_iter()
        .zip(kinds)
        .map(|((_, r), &kind)| success(kind, r))
        .collect())
}

/// Decodes the reply of a single-op Execute.
pub(crate) fn single_result(kind: OpType, resp: Response) -> Result<Option<Vec<u8>>> {
    execute_results(&[kind as u8], resp)?
        .pop()
        .unwrap_or_else(|| Err(Error::protocol("no result for the op")))
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use docdb_protocol::frame::encode_status_results;

    const R: u8 = OpType::Read as u8;
    const C: u8 = OpType::Create as u8;

    fn resp(results: &[(u8, &[u8])]) -> Response {
        let results: Vec<(u8, Vec<u8>)> = results.iter().map(|(s, r)| (*s, r.to_vec())).collect();
        Response {
            request_id: 1,
            status: 0,
            data: encode_status_results(&results),
        }
    }

    #[test]
    fn execute_results_keep_each_ops_status() {
        let r = resp(&[
            (0, b""),
            (2, b"document not found"),
            (0, br#"{"a":1}"#),
            (3, b"document already exists"),
            (0, b"null"),
            (1, b"invalid patch operations"),
        ]);
        let out = execute_results(&[C, R, R, C, R, C], r).unwrap();
        assert!(matches!(out[0], Ok(None)));
        assert!(out[1].as_ref().unwrap_err().is_not_found());
        assert_eq!(
            out[2].as_ref().unwrap().as_deref(),
            Some(&br#"{"a":1}"#[..])
        );
        assert!(out[3].as_ref().unwrap_err().is_conflict());
        assert_eq!(out[4].as_ref().unwrap().as_deref(), Some(&b"null"[..]));
        assert_eq!(
            out[5].as_ref().unwrap_err().server_text(),
            Some("invalid patch operations")
        );
    }

    #[test]
    fn request_level_errors_and_malformed_replies() {
        let plain = Response {
            request_id: 1,
            status: 1,
            data: b"database not open".to_vec(),
        };
        let e = execute_results(&[C], plain).unwrap_err();
        assert_eq!(e.server_text(), Some("database not open"));
        let short = Response {
            request_id: 1,
            status: 0,
            data: vec![1, 0],
        };
        assert!(execute_results(&[C], short).unwrap_err().is_protocol());
        let wrong_count = resp(&[(0, b""), (0, b"")]);
        assert!(execute_results(&[C], wrong_count)
            .unwrap_err()
            .is_protocol());
        assert!(single_result(OpType::Read, resp(&[])).is_err());
    }

    #[test]
    fn a_failed_transaction_reports_the_failing_op() {
        let r = resp(&[
            (1, b"transaction not applied: op 2 failed"),
            (1, b"transaction not applied: op 2 failed"),
            (2, b"document not found"),
            (1, b"transaction not applied: op 2 failed"),
        ]);
        let e = transaction_results(&[R, C, R, C], r).unwrap_err();
        assert!(e.is_not_found(), "{e}");
        let all = resp(&[(3, b"transaction conflict"), (3, b"transaction conflict")]);
        assert!(transaction_results(&[C, C], all).unwrap_err().is_conflict());
        let ok = resp(&[(0, b""), (0, b"[1]")]);
        assert_eq!(
            transaction_results(&[C, R], ok).unwrap(),
            vec![None, Some(b"[1]".to_vec())]
        );
    }

    #[test]
    fn serde_failures_surface_when_sent() {
        let mut bad = std::collections::HashMap::new();
        bad.insert(vec![1u8], 2);
        let b = Batch::new().create_json(1, &bad).read(1);
        assert!(matches!(b.to_request(), Err(Error::Json(_))));
    }
}
