//! [`Batch`]: several operations in one request, sent as an Execute (each op on its
//! own, per-op results) or a Transaction (all or nothing), and the decoding of their
//! replies.
//!
//! The reply carries one status (the first failed op's) and per op its bytes: a read's
//! document, a failed op's error text, else nothing. A failed op is recognised by its
//! bytes: a write's result is empty unless it failed; a read's result is a stored
//! document — always valid JSON — unless it failed (error texts are not JSON).

use docdb_protocol::frame::decode_results;
use docdb_protocol::{Op, OpType, Response};
use serde::de::IgnoredAny;
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

/// Whether the result bytes of an op of type `kind` are an error text.
fn failed(kind: u8, result: &[u8]) -> bool {
    if kind == OpType::Read as u8 {
        serde_json::from_slice::<IgnoredAny>(result).is_err()
    } else {
        !result.is_empty()
    }
}

fn success(kind: u8, result: Vec<u8>) -> Option<Vec<u8>> {
    (kind == OpType::Read as u8).then_some(result)
}

/// The per-op results, when the reply carries them (`None` for a request-level error
/// such as `database not open`, whose data is plain text).
fn results_of(kinds: &[u8], resp: &Response) -> Result<Option<Vec<Vec<u8>>>> {
    match decode_results(&resp.data) {
        Ok(results) if results.len() == kinds.len() => Ok(Some(results)),
        Ok(results) => Err(Error::protocol(format!(
            "{} results for {} ops",
            results.len(),
            kinds.len()
        ))),
        Err(e) if resp.status == 0 => Err(Error::protocol(format!("results: {e}"))),
        Err(_) => Ok(None),
    }
}

/// Decodes an Execute reply: one result per op.
pub(crate) fn execute_results(kinds: &[u8], resp: Response) -> Result<Vec<OpResult>> {
    let Some(results) = results_of(kinds, &resp)? else {
        return Err(Error::from_status(resp.status, &resp.data));
    };
    let mut first_failure = true;
    Ok(results
        .into_iter()
        .zip(kinds)
        .map(|(result, &kind)| {
            if resp.status == 0 || !failed(kind, &result) {
                Ok(success(kind, result))
            } else if std::mem::take(&mut first_failure) {
                // The reply's status is the first failed op's.
                Err(Error::from_status(resp.status, &result))
            } else {
                Err(Error::from_op_text(&result))
            }
        })
        .collect())
}

/// Decodes a Transaction reply: every op's result, or the error that aborted it.
pub(crate) fn transaction_results(kinds: &[u8], resp: Response) -> Result<Vec<Option<Vec<u8>>>> {
    let Some(results) = results_of(kinds, &resp)? else {
        return Err(Error::from_status(resp.status, &resp.data));
    };
    if resp.status == 0 {
        return Ok(results
            .into_iter()
            .zip(kinds)
            .map(|(r, &kind)| success(kind, r))
            .collect());
    }
    let text = results
        .iter()
        .zip(kinds)
        .find(|(r, &kind)| failed(kind, r))
        .map_or(&b"transaction failed"[..], |(r, _)| r.as_slice());
    Err(Error::from_status(resp.status, text))
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
    use docdb_protocol::frame::encode_results;

    const R: u8 = OpType::Read as u8;
    const C: u8 = OpType::Create as u8;

    fn resp(status: u8, results: &[&[u8]]) -> Response {
        let results: Vec<Vec<u8>> = results.iter().map(|r| r.to_vec()).collect();
        Response {
            request_id: 1,
            status,
            data: encode_results(&results),
        }
    }

    #[test]
    fn execute_failures_are_told_from_documents() {
        let r = resp(
            2,
            &[
                b"",
                b"document not found",
                br#"{"a":1}"#,
                b"document already exists",
                b"null",
            ],
        );
        let out = execute_results(&[C, R, R, C, R], r).unwrap();
        assert!(matches!(out[0], Ok(None)));
        assert!(out[1].as_ref().unwrap_err().is_not_found());
        assert_eq!(
            out[2].as_ref().unwrap().as_deref(),
            Some(&br#"{"a":1}"#[..])
        );
        assert!(out[3].as_ref().unwrap_err().is_conflict());
        assert_eq!(out[4].as_ref().unwrap().as_deref(), Some(&b"null"[..]));
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
        let wrong_count = resp(0, &[b"", b""]);
        assert!(execute_results(&[C], wrong_count)
            .unwrap_err()
            .is_protocol());
        assert!(single_result(OpType::Read, resp(0, &[])).is_err());
    }

    #[test]
    fn a_failed_transaction_reports_the_failing_op() {
        let r = resp(2, &[br#"{"x":1}"#, b"", b"document not found", b""]);
        let e = transaction_results(&[R, C, R, C], r).unwrap_err();
        assert!(e.is_not_found(), "{e}");
        let all = resp(3, &[b"transaction conflict", b"transaction conflict"]);
        assert!(transaction_results(&[C, C], all).unwrap_err().is_conflict());
        let ok = resp(0, &[b"", b"[1]"]);
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
