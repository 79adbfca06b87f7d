//! One file per wire command, each with the same three steps: parse the request,
//! apply it to the pool or database, encode the reply.
//!
//! Commands that touch one database (Execute, Transaction, Scan, collections, heal,
//! CloseDB) go through that database's scheduler queue and are served by
//! [`serve_batch`]; the others (OpenDB, Stats, ListDBs, Metrics, SchedulerStats) are
//! answered by the connection directly.

pub mod close_db;
pub mod create_collection;
pub mod delete_collection;
pub mod execute;
pub mod heal;
pub mod list_collections;
pub mod list_dbs;
pub mod metrics;
pub mod open_db;
pub mod scan;
pub mod scheduler_stats;
pub mod stats;
pub mod transaction;

use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::Arc;
use std::time::Instant;

use docdb_core::{Batch, Database, Unflushed};

use docdb_core::error::msg;
use docdb_protocol::{Command, Op, Request, Status};

use crate::context::Context;
use crate::errors::classify;
use crate::reply::Task;
use crate::scheduler::AfterRelease;

/// Whether a command is served from its database's queue.
pub fn is_per_db(cmd: Command) -> bool {
    !matches!(
        cmd,
        Command::OpenDb
            | Command::Stats
            | Command::ListDbs
            | Command::Metrics
            | Command::SchedulerStats
    )
}

/// The collection name of an op as text; the engine validates the name itself.
pub(crate) fn collection(op: &Op) -> Result<&str, docdb_core::Error> {
    std::str::from_utf8(&op.collection).map_err(|_| docdb_core::Error::InvalidName {
        kind: "collection",
        name: String::from_utf8_lossy(&op.collection).into_owned(),
        reason: "must be UTF-8",
    })
}

/// The first op of a request, for commands that carry their argument there.
pub(crate) fn first_op(req: &Request) -> Result<&Op, &'static str> {
    req.ops.first().ok_or(msg::MISSING_OP)
}

/// Status and text of an engine error, counting it by category.
pub(crate) fn engine_error(ctx: &Context, e: &docdb_core::Error) -> (Status, Vec<u8>) {
    ctx.metrics.error(classify(e));
    (e.status(), crate::errors::client_text(e).into_bytes())
}

/// Test hook (compiled only with the `test-hooks` feature, then opt-in by environment):
/// an op on this collection panics, to prove a panic answers `internal error` and the
/// server lives on. Without the feature it is nothing.
#[cfg(feature = "test-hooks")]
pub(crate) fn maybe_inject_panic(ctx: &Context, coll: &str) {
    if ctx.panic_collection.as_deref() == Some(coll) {
        panic!("injected panic for collection {coll}");
    }
}

#[cfg(not(feature = "test-hooks"))]
#[inline(always)]
pub(crate) fn maybe_inject_panic(_: &Context, _: &str) {}

/// Serves a batch of one database's queued requests (called by a scheduler worker):
/// stages its writes and answers everything else, then returns the step that waits
/// for the writes' group commit and answers them, which the worker runs after
/// handing the database's queue to the next batch.
pub fn serve_batch(ctx: &Arc<Context>, db_id: u64, tasks: Vec<Task>) -> Option<AfterRelease> {
    let db = match ctx.pool.get(db_id) {
        Ok(db) => db,
        Err(e) => {
            let text = crate::errors::client_text(&e);
            for t in tasks {
                let op = t.req.command().map_or("unknown", Command::name);
                ctx.metrics
                    .record(op, Status::Error, t.enqueued.elapsed().as_secs_f64());
                t.reply.error(&text);
            }
            return None;
        }
    };
    let flush = serve_tasks(ctx, db_id, db, tasks)?;
    Some(Box::new(move || flush.drive()))
}

/// Writes a batch staged, and the answers owed once they are durable.
pub struct Flush {
    db: Arc<Database>,
    unflushed: Unflushed,
    answer: Box<dyn FnOnce(docdb_core::Result<()>) + Send>,
}

impl Flush {
    /// Answers once durable: from the thread driving the database's group commits,
    /// which is this one (blocking) if none is running.
    pub fn drive(self) {
        let Flush {
            db,
            unflushed,
            answer,
        } = self;
        db.when_flushed(unflushed, answer);
    }
}

/// Serves requests of one database in order; returns what must wait for their group
/// commit, if anything.
fn serve_tasks(
    ctx: &Arc<Context>,
    db_id: u64,
    db: Arc<Database>,
    tasks: Vec<Task>,
) -> Option<Flush> {
    let mut batch = db.batch();
    let mut deferred: Vec<execute::Deferred> = Vec::new();
    let mut close_requested = false;
    for task in tasks {
        // A panic fails only the request that caused it: its ReplyTo, dropped while
        // unwinding, answers `internal error`; the batch goes on with the others.
        let served = catch_unwind(AssertUnwindSafe(|| {
            serve_one(ctx, &db, &mut batch, &mut deferred, task)
        }));
        match served {
            Ok(closes) => close_requested |= closes,
            Err(_) => {
                ctx.scheduler().record_panic();
                tracing::error!(
                    db = db_id,
                    "panic while serving a request; answered internal error"
                );
            }
        }
    }
    if close_requested {
        let flushed = batch.finish();
        finish_deferred(ctx, &mut deferred, &flushed);
        drop(db);
        // Only now has this worker let go of the handle, so it can be closed.
        ctx.close_requested(db_id);
        return None;
    }
    let unflushed = batch.detach();
    let Some(unflushed) = unflushed else {
        // Nothing staged, or a read of a written document already made it durable.
        finish_deferred(ctx, &mut deferred, &Ok(()));
        return None;
    };
    let ctx = ctx.clone();
    let keep = db.clone();
    Some(Flush {
        db,
        unflushed,
        answer: Box::new(move |flushed| {
            finish_deferred(&ctx, &mut deferred, &flushed);
            drop(keep);
        }),
    })
}

/// Serves one queued request; returns true if it asked to close the database.
fn serve_one(
    ctx: &Context,
    db: &Database,
    batch: &mut Batch<'_>,
    deferred: &mut Vec<execute::Deferred>,
    task: Task,
) -> bool {
    let Some(cmd) = task.req.command() else {
        task.reply.error(msg::UNKNOWN_COMMAND);
        return false;
    };
    if cmd == Command::Execute {
        if let Some(d) = execute::run(ctx, batch, task) {
            deferred.push(d);
        }
        return false;
    }
    // Everything else runs after the writes staged before it (by this batch or an
    // earlier one still waiting for its group commit) are durable.
    let flushed = batch.flush();
    finish_deferred(ctx, deferred, &flushed);
    let flushed = flushed.and_then(|()| batch.flush_all());
    if let Err(e) = flushed {
        if cmd == Command::CloseDb {
            // The writes that failed were answered with their error. A database
            // read-only after an I/O failure stays open, read-only, until restart
            // (the pool keeps it: DECISIONS 38); the client's CloseDB is done: OK.
            tracing::debug!(error = %e, "closing a database whose last writes failed");
            ctx.metrics.record(
                cmd.name(),
                Status::Ok,
                task.enqueued.elapsed().as_secs_f64(),
            );
            task.reply.send(Status::Ok, Vec::new());
            return true;
        }
        let (status, text) = engine_error(ctx, &e);
        task.reply.send(status, text);
        return false;
    }
    let started = task.enqueued;
    let (status, data) = match cmd {
        Command::Transaction => transaction::run(ctx, db, &task.req),
        Command::Scan => scan::run(ctx, db, &task.req),
        Command::CreateCollection => create_collection::run(ctx, db, &task.req),
        Command::DeleteCollection => delete_collection::run(ctx, db, &task.req),
        Command::ListCollections => list_collections::run(db),
        Command::Heal => heal::heal(ctx, db, &task.req),
        Command::HealAll => heal::heal_all(ctx, db),
        Command::HealStats => heal::heal_stats(ctx, task.req.db_id, db),
        Command::CloseDb => (Status::Ok, Vec::new()),
        _ => (Status::Error, msg::UNKNOWN_COMMAND.as_bytes().to_vec()),
    };
    ctx.metrics
        .record(cmd.name(), status, started.elapsed().as_secs_f64());
    task.reply.send(status, data);
    cmd == Command::CloseDb
}

/// Answers Execute requests whose writes waited for a flush.
fn finish_deferred(
    ctx: &Context,
    deferred: &mut Vec<execute::Deferred>,
    flushed: &docdb_core::Result<()>,
) {
    for d in deferred.drain(..) {
        d.finish(ctx, flushed.as_ref().err());
    }
}

/// A request answered on the connection rather than through a queue.
pub fn serve_global(ctx: &Context, req: &Request) -> (Status, Vec<u8>) {
    let started = Instant::now();
    let Some(cmd) = req.command() else {
        return (Status::Error, msg::UNKNOWN_COMMAND.as_bytes().to_vec());
    };
    let out = match cmd {
        Command::OpenDb => open_db::run(ctx, req),
        Command::Stats => stats::run(ctx),
        Command::ListDbs => list_dbs::run(ctx),
        Command::Metrics => metrics::run(ctx),
        Command::SchedulerStats => scheduler_stats::run(ctx),
        _ => (Status::Error, msg::UNKNOWN_COMMAND.as_bytes().to_vec()),
    };
    ctx.metrics
        .record(cmd.name(), out.0, started.elapsed().as_secs_f64());
    out
}

/// Shorthand for a database-level engine call's reply.
pub(crate) fn reply_of(ctx: &Context, r: docdb_core::Result<Vec<u8>>) -> (Status, Vec<u8>) {
    match r {
        Ok(data) => (Status::Ok, data),
        Err(e) => engine_error(ctx, &e),
    }
}

/// JSON bytes of a value that cannot fail to serialize.
pub(crate) fn json<T: serde::Serialize>(v: &T) -> Vec<u8> {
    serde_json::to_vec(v).unwrap_or_else(|_| b"null".to_vec())
}
