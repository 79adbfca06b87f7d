//! Transaction (13, new): the ops of the request are applied all or none, at one
//! snapshot. A write-write conflict with a concurrent commit is retried (the client
//! sent no reads it could have acted on), up to 16 times, then reported as Conflict.
//! Reply as Execute.
//!
//! The reply never passes the frame limit: results are counted as they are produced
//! (a read by its stored length, before it is read), and a transaction whose results
//! would pass it is rolled back and answered with one Error text (plain, as v0.3
//! clients read a non-OK reply) saying nothing was applied.

use docdb_core::error::msg;
use docdb_core::{Database, Error};
use docdb_protocol::{OpType, Request, Status};

use super::execute::{repeated, Results};
use super::{collection, engine_error, maybe_inject_panic};
use crate::context::Context;

/// The error text of a transaction rolled back because its reply would pass the frame
/// limit.
pub fn over_limit_text() -> String {
    format!("{}: the transaction was not applied", msg::REPLY_TOO_LARGE)
}

pub fn run(ctx: &Context, db: &Database, req: &Request) -> (Status, Vec<u8>) {
    for _ in 0..16 {
        match attempt(ctx, db, req) {
            Attempt::Conflict => continue,
            Attempt::Done(status, data) => return (status, data),
        }
    }
    let (st, text) = engine_error(ctx, &Error::Conflict);
    (st, repeated(&text, req.ops.len()))
}

enum Attempt {
    Conflict,
    Done(Status, Vec<u8>),
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
    Attempt::Done(Status::Error, over_limit_text().into_bytes())
}

fn attempt(ctx: &Context, db: &Database, req: &Request) -> Attempt {
    let mut tx = db.begin();
    let mut results = Results::new();
    let total = req.ops.len();
    for (i, op) in req.ops.iter().enumerate() {
        let remaining = total - i - 1;
        let Some(kind) = op.kind() else {
            let text = msg::UNKNOWN_OP.as_bytes().to_vec();
            return Attempt::Done(Status::Error, failed_at(results, text, remaining));
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
                let (st, text) = engine_error(ctx, &e);
                return Attempt::Done(st, failed_at(results, text, remaining));
            }
        }
    }
    match tx.commit() {
        Ok(()) => Attempt::Done(Status::Ok, results.finish()),
        Err(Error::Conflict) => Attempt::Conflict,
        Err(e) => {
            let (st, text) = engine_error(ctx, &e);
            Attempt::Done(st, repeated(&text, total))
        }
    }
}
