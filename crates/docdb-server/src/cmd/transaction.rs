//! Transaction (13, new): the ops of the request are applied all or none, at one
//! snapshot. A write-write conflict with a concurrent commit is retried (the client
//! sent no reads it could have acted on), up to 16 times, then reported as Conflict.
//! Reply as Execute: OK with every op's result, or the failing op's status and text
//! alone; in the per-op status form, OK with every op's status (the failing op's own,
//! the others' [`text::tx_not_applied`]).
//!
//! It runs once the writes staged before it are durable (its snapshot sees them), and
//! its commit is staged into the worker's batch: answered once durable, like Execute's
//! writes, without a worker blocking on the fsync ([`super::Deferred`]).
//!
//! The reply never passes the frame limit: results are counted as they are produced
//! (a read by its stored length, before it is read), and a transaction whose results
//! would pass it is rolled back and answered with one Error text (plain, as v0.3
//! clients read a non-OK reply) saying nothing was applied.

use docdb_core::{Batch, Error};
use docdb_protocol::{text, Command, OpType, Request, Status};

use super::execute::{every_op, Results};
use super::{answer, collection, maybe_inject_panic, spec_of, Deferred};
use crate::context::Context;
use crate::reply::{Reply, Task};

/// The error text of a transaction rolled back because its reply would pass the frame
/// limit.
pub fn over_limit_text() -> String {
    format!("{}: the transaction was not applied", text::REPLY_TOO_LARGE)
}

pub fn run(ctx: &Context, batch: &mut Batch<'_>, task: Task) -> Option<Deferred> {
    let (n, per_op_status) = (task.req.ops.len(), task.req.per_op_status());
    let mut outcome = Attempt::Conflict;
    for _ in 0..16 {
        outcome = attempt(ctx, batch, &task.req);
        if !matches!(outcome, Attempt::Conflict) {
            break;
        }
    }
    let reply = match outcome {
        Attempt::Staged(ok) => {
            return Some(Deferred::Whole {
                command: Command::Transaction,
                to: task.reply,
                started: task.enqueued,
                ok,
                fail: failed,
                ops: n,
                per_op_status,
            })
        }
        Attempt::Done(reply) => reply,
        Attempt::Conflict => failed(&Error::Conflict, n, per_op_status),
    };
    let spec = spec_of(Command::Transaction);
    answer(ctx, spec, task.enqueued, task.reply, reply);
    None
}

/// The reply to a transaction of `n` ops whose commit failed with `e`.
fn failed(e: &Error, n: usize, per_op_status: bool) -> Reply {
    every_op(Reply::from(e), n, per_op_status)
}

enum Attempt {
    Conflict,
    /// Its commit is staged: this is its reply once durable.
    Staged(Reply),
    /// Answered now (it failed, or wrote nothing).
    Done(Reply),
}

/// The reply to a transaction that failed at op `at` with `failed`: in the v0.3 form
/// `failed` itself (plain text); in the per-op status form each op's status (the others
/// as "transaction not applied: op `at` failed"), or `failed` alone if that would not
/// fit the frame limit.
fn stopped(failed: Reply, at: usize, req: &Request) -> Attempt {
    if !req.per_op_status() {
        return Attempt::Done(failed);
    }
    let others = text::tx_not_applied(at);
    let size = (5 + others.len())
        .saturating_mul(req.ops.len())
        .saturating_add(4 + failed.data.len());
    if size > docdb_protocol::MAX_REPLY_DATA {
        return Attempt::Done(failed);
    }
    let mut results = Results::new(true);
    for i in 0..req.ops.len() {
        let (status, text) = if i == at {
            (failed.status, failed.data.as_slice())
        } else {
            (Status::Error, others.as_bytes())
        };
        if !results.fits(text.len()) {
            return Attempt::Done(failed);
        }
        results.push(status, text.to_vec());
    }
    Attempt::Done(results.finish().with_tally(failed.tally))
}

fn over_limit() -> Attempt {
    // The transaction is dropped (rolled back) by the caller's return.
    Attempt::Done(Reply::error(over_limit_text()))
}

fn attempt(ctx: &Context, batch: &mut Batch<'_>, req: &Request) -> Attempt {
    let mut tx = batch.database().begin();
    let mut results = Results::new(req.per_op_status());
    let total = req.ops.len();
    for (i, op) in req.ops.iter().enumerate() {
        let Some(kind) = op.kind() else {
            return stopped(Reply::error(text::UNKNOWN_OP), i, req);
        };
        if kind == OpType::Read
            && !results.read_fits(|| {
                let coll = collection(op).ok()?;
                tx.stored_len(coll, op.doc_id).ok().flatten()
            })
        {
            return over_limit();
        }
        let r = collection(op).and_then(|coll| {
            maybe_inject_panic(ctx, coll);
            match kind {
                OpType::Create => tx.create(coll, op.doc_id, &op.payload).map(|_| Vec::new()),
                OpType::Update => tx.update(coll, op.doc_id, &op.payload).map(|_| Vec::new()),
                OpType::Delete => tx.delete(coll, op.doc_id).map(|_| Vec::new()),
                OpType::Read => tx.read(coll, op.doc_id),
                OpType::Patch => tx
                    .patch(coll, op.doc_id, op.patch.as_deref().unwrap_or(&[]))
                    .map(|_| Vec::new()),
            }
        });
        match r {
            Ok(data) => {
                if !results.fits(data.len()) {
                    return over_limit();
                }
                results.push(Status::Ok, data);
            }
            Err(e) => {
                // All or nothing: the transaction is dropped (rolled back) here.
                return stopped(Reply::from(&e), i, req);
            }
        }
    }
    let reply = results.finish();
    if tx.is_empty() {
        // Reads only: at a snapshot of what is durable, so answerable now.
        return Attempt::Done(reply);
    }
    match tx.commit_in(batch) {
        Ok(()) => Attempt::Staged(reply),
        Err(Error::Conflict) => Attempt::Conflict,
        Err(e) => Attempt::Done(failed(&e, total, req.per_op_status())),
    }
}
