//! Execute (3): run the ops in order, each atomic on its own. When every op succeeded
//! the reply is OK with `u32 n` then per op `u32 len, bytes` (a read's document, else
//! empty); otherwise its status is the first failed op's and its data that op's error
//! text alone, plain UTF-8, as every v0.3 client reads a non-OK reply (the original
//! always said OK). With [`docdb_protocol::PER_OP_STATUS`] on the command byte the
//! reply is OK with each op's own status instead ([`Results`]).
//!
//! Writes are staged into the worker's batch and answered only after the batch's
//! group commit made them durable.
//!
//! The reply is encoded as the ops run, and never passes the frame limit
//! ([`MAX_REPLY_DATA`]): every result counts, error texts too. The op whose result
//! would pass it (a read is judged by its stored length, before it is read) is not
//! run, nor are the ops after it, and the whole reply becomes one Error whose text
//! names the limit and how many ops ran — plain text, as v0.3 clients read any
//! non-OK reply (docs/PROTOCOL.md, "Replies and the frame limit").

use std::time::Instant;

use docdb_core::{Batch, MAX_DOCUMENT_SIZE};
use docdb_protocol::{text, Command, OpType, Status, MAX_REPLY_DATA};

use super::{answer, collection, maybe_inject_panic, spec_of};
use crate::context::Context;
use crate::reply::{Reply, ReplyTo, Tally, Task};

/// The error text of an Execute stopped at the frame limit before op `ran` (0-based)
/// of `total`: ops before it ran (their writes are durable once answered), the rest
/// did not.
pub fn over_limit_text(ran: usize, total: usize) -> String {
    format!(
        "{}: the first {ran} of {total} ops ran, the rest did not",
        text::REPLY_TOO_LARGE
    )
}

/// Execute (and Transaction) per-op results gathered as they arrive, counted in the
/// form they will be answered in, within [`MAX_REPLY_DATA`].
///
/// Two forms (docs/PROTOCOL.md): the v0.3 form answers OK with `u32 n`, then per op
/// `u32 len, bytes` when every op succeeded, and otherwise the first failed op's status
/// with its text alone (plain UTF-8, as v0.3 clients read any non-OK reply); the per-op
/// status form (requested with [`docdb_protocol::PER_OP_STATUS`]) answers OK with
/// `u32 n`, then per op `u8 status, u32 len, bytes`.
pub(crate) struct Results {
    /// Each op's status and bytes (a read's document, a failed op's text, else empty).
    entries: Vec<(Status, Vec<u8>)>,
    /// Size of the per-op data so far, in the form answered.
    size: usize,
    per_op_status: bool,
}

impl Results {
    pub(crate) fn new(per_op_status: bool) -> Self {
        Results {
            entries: Vec::new(),
            size: 4,
            per_op_status,
        }
    }

    /// Bytes one result adds besides its own: its length, and its status if sent.
    fn overhead(&self) -> usize {
        if self.per_op_status {
            5
        } else {
            4
        }
    }

    /// Whether a result of `len` bytes still fits.
    pub(crate) fn fits(&self, len: usize) -> bool {
        self.size
            .saturating_add(self.overhead())
            .saturating_add(len)
            <= MAX_REPLY_DATA
    }

    /// Whether a read's document still fits. The stored length is looked up only
    /// when a document of the largest size might not (so a small Execute reads its
    /// index once per read, as before the budget); `None` (no such document) fits, the
    /// read's own error text being counted when it is pushed.
    pub(crate) fn read_fits(&self, stored_len: impl FnOnce() -> Option<usize>) -> bool {
        if self.fits(MAX_DOCUMENT_SIZE) {
            return true;
        }
        match stored_len() {
            Some(len) => self.fits(len),
            None => true,
        }
    }

    /// Appends an op's result the caller checked [`Results::fits`].
    pub(crate) fn push(&mut self, status: Status, r: Vec<u8>) {
        self.size += self.overhead() + r.len();
        self.entries.push((status, r));
    }

    /// Replaces op `i`'s result; false (and nothing changed) if the reply would no
    /// longer fit.
    pub(crate) fn replace(&mut self, i: usize, status: Status, r: &[u8]) -> bool {
        let Some(old) = self.entries.get(i).map(|e| e.1.len()) else {
            return false;
        };
        let size = (self.size - old).saturating_add(r.len());
        if size > MAX_REPLY_DATA {
            return false;
        }
        self.size = size;
        self.entries[i] = (status, r.to_vec());
        true
    }

    /// The first failed op's status and text, if any op failed.
    fn first_failure(&self) -> Option<&(Status, Vec<u8>)> {
        self.entries.iter().find(|(st, _)| *st != Status::Ok)
    }

    /// The reply: see [`Results`] for the two forms.
    pub(crate) fn finish(self) -> Reply {
        if !self.per_op_status {
            if let Some((status, text)) = self.first_failure() {
                return Reply::new(*status, text.clone());
            }
        }
        let mut out = Vec::with_capacity(self.size);
        out.extend_from_slice(&(self.entries.len() as u32).to_le_bytes());
        for (status, r) in &self.entries {
            if self.per_op_status {
                out.push(*status as u8);
            }
            // INVARIANT: r.len() ≤ MAX_REPLY_DATA (checked by `fits`), so it fits a u32.
            out.extend_from_slice(&(r.len() as u32).to_le_bytes());
            out.extend_from_slice(r);
        }
        Reply::ok(out)
    }
}

/// The reply to a request all of whose `n` ops failed with `failed`: in the per-op
/// status form, `n` results carrying its status and text (while they fit the frame
/// limit); else (and in the v0.3 form) `failed` itself, plain text.
pub(crate) fn every_op(failed: Reply, n: usize, per_op_status: bool) -> Reply {
    let size = (5 + failed.data.len()).saturating_mul(n).saturating_add(4);
    if !per_op_status || size > MAX_REPLY_DATA {
        return failed;
    }
    let mut r = Results::new(true);
    for _ in 0..n {
        r.push(failed.status, failed.data.clone());
    }
    r.finish().with_tally(failed.tally)
}

/// An Execute whose staged writes await the batch's flush.
pub struct Deferred {
    reply: ReplyTo,
    results: Results,
    /// Indices of ops that were staged writes, with their op names.
    staged: Vec<(usize, &'static str)>,
    /// Set when the reply reached the frame limit: the error text to answer.
    over_limit: Option<String>,
    /// The ops' outcomes so far, for the metrics.
    tally: Tally,
    started: Instant,
}

impl Deferred {
    /// Answers: if the flush failed, every staged write failed with it.
    pub(super) fn finish(self, ctx: &Context, flush_error: Option<&docdb_core::Error>) {
        let Deferred {
            reply: to,
            results,
            staged,
            over_limit,
            mut tally,
            started,
        } = self;
        let reply = match flush_error {
            None => {
                for &(_, name) in &staged {
                    tally.op(name, Status::Ok);
                }
                match over_limit {
                    Some(text) => Reply::error(text),
                    None => results.finish(),
                }
            }
            Some(e) => {
                let failed = Reply::from(e);
                for &(_, name) in &staged {
                    tally.op(name, failed.status);
                }
                flush_failed(results, &staged, over_limit, failed)
            }
        };
        answer(
            ctx,
            spec_of(Command::Execute),
            started,
            to,
            reply.with_tally(tally),
        );
    }
}

/// The reply of an Execute whose staged writes failed with `failed`.
fn flush_failed(
    mut results: Results,
    staged: &[(usize, &'static str)],
    over_limit: Option<String>,
    failed: Reply,
) -> Reply {
    if over_limit.is_some() {
        // Every write that ran failed; the request as a whole failed with it.
        return failed;
    }
    // Rare path: each staged write's result becomes the flush error, as long as that
    // still fits; else the flush error alone answers.
    for &(i, _) in staged {
        if !results.replace(i, failed.status, &failed.data) {
            return failed;
        }
    }
    results.finish().with_tally(failed.tally)
}

/// Runs one Execute request inside `batch`. Returns it as deferred when it staged
/// writes; otherwise it has been answered.
pub fn run(ctx: &Context, batch: &mut Batch<'_>, task: Task) -> Option<super::Deferred> {
    let Task {
        req,
        reply,
        enqueued,
    } = task;
    let mut results = Results::new(req.per_op_status());
    let mut staged = Vec::new();
    let mut over_limit = None;
    let mut tally = Tally::default();
    let total = req.ops.len();
    for (i, op) in req.ops.iter().enumerate() {
        let Some(kind) = op.kind() else {
            if !results.fits(text::UNKNOWN_OP.len()) {
                over_limit = Some(over_limit_text(i, total));
                break;
            }
            results.push(Status::Error, text::UNKNOWN_OP.as_bytes().to_vec());
            tally.op("unknown", Status::Error);
            continue;
        };
        // A read whose stored document cannot fit is not read at all.
        if kind == OpType::Read
            && !results.read_fits(|| {
                let coll = collection(op).ok()?;
                batch.stored_len(coll, op.doc_id).ok().flatten()
            })
        {
            over_limit = Some(over_limit_text(i, total));
            break;
        }
        let outcome = collection(op).and_then(|coll| {
            maybe_inject_panic(ctx, coll);
            match kind {
                OpType::Create => batch.create(coll, op.doc_id, &op.payload).map(|_| None),
                OpType::Update => batch.update(coll, op.doc_id, &op.payload).map(|_| None),
                OpType::Delete => batch.delete(coll, op.doc_id).map(|_| None),
                OpType::Read => batch.read(coll, op.doc_id).map(Some),
                OpType::Patch => batch
                    .patch(coll, op.doc_id, op.patch.as_deref().unwrap_or(&[]))
                    .map(|_| None),
            }
        });
        match outcome {
            Ok(Some(doc)) => {
                if !results.fits(doc.len()) {
                    // The document grew since its length was looked up.
                    over_limit = Some(over_limit_text(i, total));
                    break;
                }
                tally.op(kind.name(), Status::Ok);
                results.push(Status::Ok, doc);
            }
            Ok(None) => {
                // IMPORTANT: the write has run, so its (empty) result must be
                // counted even at the limit: `ran` below includes it.
                if !results.fits(0) {
                    if matches!(kind, OpType::Create | OpType::Update | OpType::Delete) {
                        staged.push((i, kind.name()));
                    }
                    over_limit = Some(over_limit_text(i + 1, total));
                    break;
                }
                results.push(Status::Ok, Vec::new());
                if matches!(kind, OpType::Create | OpType::Update | OpType::Delete) {
                    staged.push((i, kind.name()));
                } else {
                    tally.op(kind.name(), Status::Ok);
                }
            }
            Err(e) => {
                let failed = Reply::from(&e);
                let (st, text) = (failed.status, failed.data);
                tally.op(kind.name(), st);
                tally.merge(failed.tally);
                if !results.fits(text.len()) {
                    // A failed op changed nothing, so it counts as not run: the
                    // client may send everything from op `i` again.
                    over_limit = Some(over_limit_text(i, total));
                    break;
                }
                results.push(st, text);
            }
        }
    }
    let d = Deferred {
        reply,
        results,
        staged,
        over_limit,
        tally,
        started: enqueued,
    };
    if d.staged.is_empty() {
        d.finish(ctx, None);
        None
    } else {
        Some(super::Deferred::Execute(d))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn three(per_op_status: bool) -> Results {
        let mut r = Results::new(per_op_status);
        r.push(Status::Ok, b"{}".to_vec());
        r.push(Status::NotFound, text::NOT_FOUND.as_bytes().to_vec());
        r.push(Status::Conflict, text::ALREADY_EXISTS.as_bytes().to_vec());
        r
    }

    #[test]
    fn a_failed_op_answers_its_text_alone_unless_per_op_statuses_were_asked_for() {
        let v03 = three(false).finish();
        assert_eq!(
            (v03.status, v03.data.as_slice()),
            (Status::NotFound, text::NOT_FOUND.as_bytes())
        );
        let flagged = three(true).finish();
        assert_eq!(flagged.status, Status::Ok);
        let got = docdb_protocol::frame::decode_status_results(&flagged.data).unwrap_or_default();
        assert_eq!(
            got,
            vec![
                (0, b"{}".to_vec()),
                (2, text::NOT_FOUND.as_bytes().to_vec()),
                (3, text::ALREADY_EXISTS.as_bytes().to_vec()),
            ]
        );
        let mut ok = Results::new(false);
        ok.push(Status::Ok, b"1".to_vec());
        let ok = ok.finish();
        assert_eq!(
            (ok.status, ok.data),
            (Status::Ok, vec![1, 0, 0, 0, 1, 0, 0, 0, b'1'])
        );
    }

    #[test]
    fn a_failed_flush_replaces_staged_results_and_the_first_failure_by_position_answers() {
        let mut r = three(false);
        assert!(r.replace(0, Status::Error, b"disk"));
        let reply = r.finish();
        assert_eq!(
            (reply.status, reply.data.as_slice()),
            (Status::Error, &b"disk"[..])
        );
        let mut r = three(true);
        assert!(!r.replace(0, Status::Error, &vec![b'x'; MAX_REPLY_DATA]));
        assert!(!r.replace(7, Status::Error, b"disk"));
    }

    #[test]
    fn every_op_repeats_the_failure_only_in_the_per_op_form_and_only_while_it_fits() {
        let failed = || Reply::from(&docdb_core::Error::Conflict);
        let v03 = every_op(failed(), 3, false);
        assert_eq!(
            (v03.status, v03.data.as_slice()),
            (Status::Conflict, text::TX_CONFLICT.as_bytes())
        );
        let flagged = every_op(failed(), 2, true);
        assert_eq!(flagged.status, Status::Ok);
        assert_eq!(flagged.data.len(), 4 + 2 * (5 + text::TX_CONFLICT.len()));
        let huge = every_op(failed(), MAX_REPLY_DATA, true);
        assert_eq!(
            (huge.status, huge.data.as_slice()),
            (Status::Conflict, text::TX_CONFLICT.as_bytes())
        );
    }
}
