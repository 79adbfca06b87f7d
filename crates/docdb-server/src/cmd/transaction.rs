//! Transaction (13, new): the ops of the request are applied all or none, at one
//! snapshot. A write-write conflict with a concurrent commit is retried (the client
//! sent no reads it could have acted on), up to 16 times, then reported as Conflict.
//! Reply as Execute.

use docdb_core::error::msg;
use docdb_core::{Database, Error};
use docdb_protocol::frame::encode_results;
use docdb_protocol::{OpType, Request, Status};

use super::{collection, engine_error, maybe_inject_panic};
use crate::context::Context;

pub fn run(ctx: &Context, db: &Database, req: &Request) -> (Status, Vec<u8>) {
    for _ in 0..16 {
        match attempt(ctx, db, req) {
            Attempt::Conflict => continue,
            Attempt::Done(status, results) => return (status, encode_results(&results)),
        }
    }
    let (st, text) = engine_error(ctx, &Error::Conflict);
    (st, encode_results(&vec![text; req.ops.len()]))
}

enum Attempt {
    Conflict,
    Done(Status, Vec<Vec<u8>>),
}

fn attempt(ctx: &Context, db: &Database, req: &Request) -> Attempt {
    let mut tx = db.begin();
    let mut results = Vec::with_capacity(req.ops.len());
    for op in &req.ops {
        let Some(kind) = op.kind() else {
            results.push(msg::UNKNOWN_OP.as_bytes().to_vec());
            results.resize(req.ops.len(), Vec::new());
            return Attempt::Done(Status::Error, results);
        };
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
            Ok(data) => results.push(data),
            Err(e) => {
                // All or nothing: the transaction is dropped (rolled back) here.
                let (st, text) = engine_error(ctx, &e);
                results.push(text);
                results.resize(req.ops.len(), Vec::new());
                return Attempt::Done(st, results);
            }
        }
    }
    match tx.commit() {
        Ok(()) => Attempt::Done(Status::Ok, results),
        Err(Error::Conflict) => Attempt::Conflict,
        Err(e) => {
            let (st, text) = engine_error(ctx, &e);
            Attempt::Done(st, vec![text; req.ops.len()])
        }
    }
}
