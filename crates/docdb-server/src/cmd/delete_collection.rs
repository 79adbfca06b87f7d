//! DeleteCollection (6): ops[0].collection; fails with `collection is not empty` while
//! it holds documents (counting writes staged before it). Empty reply, once durable
//! (staged into the worker's batch: [`super::Deferred`]).

use docdb_core::Batch;
use docdb_protocol::Command;

use super::{collection, defer, first_op, Deferred};
use crate::context::Context;
use crate::reply::{Reply, Task};

pub fn run(ctx: &Context, batch: &mut Batch<'_>, task: Task) -> Option<Deferred> {
    let staged = first_op(&task.req).and_then(|op| {
        collection(op)
            .and_then(|c| batch.delete_collection(c))
            .map_err(|e| Reply::from(&e))
    });
    defer(ctx, Command::DeleteCollection, task, staged)
}
