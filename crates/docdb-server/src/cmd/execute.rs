//! Execute (3): run the ops in order, each atomic on its own; reply `u32 n` then per op
//! `u32 len, bytes` (a read's document, a failed op's error text, else empty). The
//! overall status is the first failed op's status (the original always said OK).
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
use docdb_protocol::frame::{decode_results, encode_results};
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

/// Execute (and Transaction) reply data built as results arrive, within
/// [`MAX_REPLY_DATA`].
pub(crate) struct Results {
    /// `u32 n` (patched at the end), then `u32 len, bytes` per op so far.
    out: Vec<u8>,
    n: u32,
}

impl Results {
    pub(crate) fn new() -> Self {
        Results {
            out: 0u32.to_le_bytes().to_vec(),
            n: 0,
        }
    }

    /// Whether a result of `len` bytes still fits.
    pub(crate) fn fits(&self, len: usize) -> bool {
        self.out.len().saturating_add(4).saturating_add(len) <= MAX_REPLY_DATA
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

    /// Appends a result the caller checked [`Results::fits`].
    pub(crate) fn push(&mut self, r: &[u8]) {
        // INVARIANT: r.len() ≤ MAX_REPLY_DATA (checked by `fits`), so it fits a u32.
        self.out.extend_from_slice(&(r.len() as u32).to_le_bytes());
        self.out.extend_from_slice(r);
        self.n += 1;
    }

    pub(crate) fn finish(mut self) -> Vec<u8> {
        self.out[0..4].copy_from_slice(&self.n.to_le_bytes());
        self.out
    }
}

/// Reply data of `n` results that are all `text`, or `text` alone (plain, as a
/// non-OK reply may be) when they would not fit the frame limit.
pub(crate) fn repeated(text: &[u8], n: usize) -> Vec<u8> {
    let size = (4 + text.len()).saturating_mul(n).saturating_add(4);
    if size > MAX_REPLY_DATA {
        return text.to_vec();
    }
    let mut r = Results::new();
    for _ in 0..n {
        r.push(text);
    }
    r.finish()
}

/// An Execute whose staged writes await the batch's flush.
pub struct Deferred {
    reply: ReplyTo,
    results: Results,
    status: Status,
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
            status,
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
                    None => Reply::new(status, results.finish()),
                }
            }
            Some(e) => {
                let failed = Reply::from(e);
                for &(_, name) in &staged {
                    tally.op(name, failed.status);
                }
                flush_failed(results, status, &staged, over_limit, failed)
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
    results: Results,
    status: Status,
    staged: &[(usize, &'static str)],
    over_limit: Option<String>,
    failed: Reply,
) -> Reply {
    if over_limit.is_some() {
        // Every write that ran failed; the request as a whole failed with it.
        return failed;
    }
    // Rare path: rebuild the results with the staged writes' error text, as long
    // as that still fits; else the flush error alone answers.
    let data = results.finish();
    let Ok(mut all) = decode_results(&data) else {
        return failed;
    };
    for &(i, _) in staged {
        if let Some(r) = all.get_mut(i) {
            r.clone_from(&failed.data);
        }
    }
    let size = 4 + all.iter().map(|r| 4 + r.len()).sum::<usize>();
    if size > MAX_REPLY_DATA {
        return failed;
    }
    let status = if status == Status::Ok {
        failed.status
    } else {
        status
    };
    let mut reply = failed;
    reply.status = status;
    reply.data = encode_results(&all);
    reply
}

/// Runs one Execute request inside `batch`. Returns it as deferred when it staged
/// writes; otherwise it has been answered.
pub fn run(ctx: &Context, batch: &mut Batch<'_>, task: Task) -> Option<super::Deferred> {
    let Task {
        req,
        reply,
        enqueued,
    } = task;
    let mut results = Results::new();
    let mut status = Status::Ok;
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
            results.push(text::UNKNOWN_OP.as_bytes());
            if status == Status::Ok {
                status = Status::Error;
            }
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
                results.push(&doc);
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
                results.push(&[]);
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
                results.push(&text);
                if status == Status::Ok {
                    status = st;
                }
            }
        }
    }
    let d = Deferred {
        reply,
        results,
        status,
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
