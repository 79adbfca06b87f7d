//! Execute (3): run the ops in order, each atomic on its own; reply `u32 n` then per op
//! `u32 len, bytes` (a read's document, a failed op's error text, else empty). The
//! overall status is the first failed op's status (the original always said OK).
//!
//! Writes are staged into the worker's batch and answered only after the batch's
//! group commit made them durable.

use std::time::Instant;

use docdb_core::error::msg;
use docdb_core::Batch;
use docdb_protocol::frame::encode_results;
use docdb_protocol::{OpType, Status};

use super::{collection, engine_error, maybe_inject_panic};
use crate::context::Context;
use crate::reply::{ReplyTo, Task};

/// An Execute whose staged writes await the batch's flush.
pub struct Deferred {
    reply: ReplyTo,
    results: Vec<Vec<u8>>,
    status: Status,
    /// Indices of ops that were staged writes, with their op names.
    staged: Vec<(usize, &'static str)>,
    started: Instant,
}

impl Deferred {
    /// Answers: if the flush failed, every staged write failed with it.
    pub fn finish(mut self, ctx: &Context, flush_error: Option<&docdb_core::Error>) {
        let secs = self.started.elapsed().as_secs_f64();
        for &(i, name) in &self.staged {
            let st = match flush_error {
                Some(e) => {
                    let (st, text) = engine_error(ctx, e);
                    self.results[i] = text;
                    if self.status == Status::Ok {
                        self.status = st;
                    }
                    st
                }
                None => Status::Ok,
            };
            ctx.metrics.record(name, st, secs);
        }
        self.reply.send(self.status, encode_results(&self.results));
    }
}

/// Runs one Execute request inside `batch`. Returns it as deferred when it staged
/// writes; otherwise it has been answered.
pub fn run(ctx: &Context, batch: &mut Batch<'_>, task: Task) -> Option<Deferred> {
    let Task {
        req,
        reply,
        enqueued,
    } = task;
    let mut results = Vec::with_capacity(req.ops.len());
    let mut status = Status::Ok;
    let mut staged = Vec::new();
    for (i, op) in req.ops.iter().enumerate() {
        let Some(kind) = op.kind() else {
            results.push(msg::UNKNOWN_OP.as_bytes().to_vec());
            if status == Status::Ok {
                status = Status::Error;
            }
            ctx.metrics.record("unknown", Status::Error, 0.0);
            continue;
        };
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
                ctx.metrics
                    .record(kind.name(), Status::Ok, enqueued.elapsed().as_secs_f64());
                results.push(doc);
            }
            Ok(None) => {
                results.push(Vec::new());
                if matches!(kind, OpType::Create | OpType::Update | OpType::Delete) {
                    staged.push((i, kind.name()));
                } else {
                    ctx.metrics
                        .record(kind.name(), Status::Ok, enqueued.elapsed().as_secs_f64());
                }
            }
            Err(e) => {
                let (st, text) = engine_error(ctx, &e);
                ctx.metrics
                    .record(kind.name(), st, enqueued.elapsed().as_secs_f64());
                results.push(text);
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
        started: enqueued,
    };
    if d.staged.is_empty() {
        d.finish(ctx, None);
        None
    } else {
        Some(d)
    }
}
