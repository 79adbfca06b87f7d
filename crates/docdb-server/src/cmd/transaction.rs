//! Transaction (13, new): the ops of the request are applied all or none, at one
//! snapshot. A write-write conflict with a concurrent commit is retried (the client
//! sent no reads it could have acted on), up to 16 times, then reported as Conflict.
//! Reply as Execute.
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
use docdb_protocol::{text, Command, OpType, Request};

use super::execute::{repeated, Results};
use super::{answer, collection, maybe_inject_panic, spec_of, Deferred};
use crate::context::Context;
use crate::reply::{Reply, Task};

/// The error text of a transaction rolled back because its reply would pass the frame
/// limit.
pub fn over_limit_text() -> String {
    format!("{}: the transaction was not applied", text::REPLY_TOO_LARGE)
}

pub fn run(ctx: &Context, batch: &mut Batch<'_>, task: Task) -> Option<Deferred> {
    let n = task.req.ops.len();
    let mut outcome = Attempt::Conflict;
    for _ in 0..16 {
        outcome = attempt(ctx, batch, &task.req);
        if !matches!(outcome, Attempt::Conflict) {
            break;
        }
    }
    let spec = spec_of(Command::Transaction);
    match outcome {
        Attempt::Staged(ok) => Some(Deferred::Whole {
            command: Command::Transaction,
            to: task.reply,
            started: task.enqueued,
            ok,
            fail: failed,
            ops: n,
        }),
        Attempt::Done(reply) => {
            answer(ctx, spec, task.enqueued, task.reply, reply);
            None
        }
        Attempt::Conflict => {
            answer(
                ctx,
                spec,
                task.enqueued,
                task.reply,
                failed(&Error::Conflict, n),
            );
            None
        }
    }
}

/// The reply to a transaction of `n` ops whose commit failed with `e`.
fn failed(e: &Error, n: usize) -> Reply {
    every_op(Reply::from(e), n)
}

enum Attempt {
    Conflict,
    /// Its commit is staged: this is its reply once durable.
    Staged(Reply),
    /// Answered now (it failed, or wrote nothing).
    Done(Reply),
}

/// `failed` as the result of each of `n` ops (see [`repeated`]).
fn every_op(mut failed: Reply, n: usize) -> Reply {
    failed.data = repeated(&failed.data, n);
    failed
}

/// `failed` as the reply to a transaction stopped at an op (see [`failed_at`]).
fn stopped(mut failed: Reply, results: Results, remaining: usize) -> Attempt {
    failed.data = failed_at(results, std::mem::take(&mut failed.data), remaining);
    Attempt::Done(failed)
}

/// Reply data for a transaction that stopped at op `failed` with `text`: the results
/// so far, `text`, then an empty result per op not run; or `text` alone if that
/// would not fit the frame limit.
fn failed_at(mut results: Results, text: Vec<u8>, remaining: usize) -> Vec<u8> {
    if !results.fits(text.len().saturating_add(4usize.saturating_mul(remaining))) {
        return text;
    }
    results.push(&text);
    for _ in 0..remaining {
        results.push(&[]);
    }
    results.finish()
}

fn over_limit() -> Attempt {
    // The transaction is dropped (rolled back) by the caller's return.
    Attempt::Done(Reply::error(over_limit_text()))
}

fn attempt(ctx: &Context, batch: &mut Batch<'_>, req: &Request) -> Attempt {
    let mut tx = batch.database().begin();
    let mut results = Results::new();
    let total = req.ops.len();
    for (i, op) in req.ops.iter().enumerate() {
        let remaining = total - i - 1;
        let Some(kind) = op.kind() else {
            return stopped(Reply::error(text::UNKNOWN_OP), results, remaining);
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
                results.push(&data);
            }
            Err(e) => {
                // All or nothing: the transaction is dropped (rolled back) here.
                return stopped(Reply::from(&e), results, remaining);
            }
        }
    }
    let reply = Reply::ok(results.finish());
    if tx.is_empty() {
        // Reads only: at a snapshot of what is durable, so answerable now.
        return Attempt::Done(reply);
    }
    match tx.commit_in(batch) {
        Ok(()) => Attempt::Staged(reply),
        Err(Error::Conflict) => Attempt::Conflict,
        Err(e) => Attempt::Done(failed(&e, total)),
    }
}
