//! One file per wire command, each with the same three steps: parse the request,
//! apply it to the pool or database, return a [`Reply`].
//!
//! [`COMMANDS`] is the one table of commands: a command's code, its handler, and
//! whether it is served from its database's queue (Execute, Transaction, Scan,
//! collections, heal, CloseDB) or answered server-wide (OpenDB, Stats, ListDBs,
//! Metrics, SchedulerStats). Dispatch, the metrics labels and the "unknown command"
//! path read it, and every answer goes through [`answer`], the one place commands are
//! counted. Adding a command: its code in `docdb_protocol::types`, one entry here, and
//! its file.

pub mod close_db;
pub mod create_collection;
pub mod create_index;
pub mod delete_collection;
pub mod drop_index;
pub mod execute;
pub mod heal;
pub mod list_collections;
pub mod list_dbs;
pub mod list_indexes;
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

use docdb_protocol::{text, Command, Op, Request};

use crate::context::Context;
use crate::reply::{Reply, ReplyTo, Task};
use crate::scheduler::AfterRelease;

/// How a command is served.
#[derive(Clone, Copy)]
pub enum Handler {
    /// Answered server-wide (on the global pool's threads), without a database.
    Server(fn(&Context, &Request) -> Reply),
    /// Served from its database's queue, after the writes staged before it are
    /// durable.
    Database(fn(&Context, &Database, &Request) -> Reply),
    /// Execute: its writes are staged into the worker's batch and answered after the
    /// batch's group commit ([`execute::Deferred`]).
    Batch(fn(&Context, &mut Batch<'_>, Task) -> Option<execute::Deferred>),
}

/// How a command's answers are counted in `docdb_operations_total` and
/// `docdb_operation_duration_seconds`.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum Label {
    /// One sample per request, labelled with the command's name.
    Command,
    /// One sample per op, labelled with the op's name (`create`, `read`, ...).
    PerOp,
}

/// One wire command.
pub struct Spec {
    pub command: Command,
    pub handler: Handler,
    pub label: Label,
}

impl Spec {
    /// Whether the command is served from its database's queue (and so needs an open
    /// database id); else it is server-wide.
    pub fn per_db(&self) -> bool {
        !matches!(self.handler, Handler::Server(_))
    }

    pub fn name(&self) -> &'static str {
        self.command.name()
    }
}

const fn server(command: Command, run: fn(&Context, &Request) -> Reply) -> Spec {
    Spec {
        command,
        handler: Handler::Server(run),
        label: Label::Command,
    }
}

const fn database(command: Command, run: fn(&Context, &Database, &Request) -> Reply) -> Spec {
    Spec {
        command,
        handler: Handler::Database(run),
        label: Label::Command,
    }
}

/// Every command the server serves. A code missing here is answered `unknown command`.
pub static COMMANDS: &[Spec] = &[
    server(Command::OpenDb, open_db::run),
    database(Command::CloseDb, close_db::run),
    Spec {
        command: Command::Execute,
        handler: Handler::Batch(execute::run),
        label: Label::PerOp,
    },
    server(Command::Stats, stats::run),
    database(Command::CreateCollection, create_collection::run),
    database(Command::DeleteCollection, delete_collection::run),
    database(Command::ListCollections, list_collections::run),
    server(Command::ListDbs, list_dbs::run),
    database(Command::Heal, heal::heal),
    database(Command::HealAll, heal::heal_all),
    database(Command::HealStats, heal::heal_stats),
    server(Command::Metrics, metrics::run),
    database(Command::Transaction, transaction::run),
    server(Command::SchedulerStats, scheduler_stats::run),
    database(Command::Scan, scan::run),
    database(Command::CreateIndex, create_index::run),
    database(Command::DropIndex, drop_index::run),
    database(Command::ListIndexes, list_indexes::run),
];

/// The table entry of a request's command, if the server serves it.
pub fn lookup(req: &Request) -> Option<&'static Spec> {
    let code = req.command;
    COMMANDS.iter().find(|s| s.command as u8 == code)
}

/// The table entry of `command`, if the server serves it.
pub fn spec_of(command: Command) -> Option<&'static Spec> {
    COMMANDS.iter().find(|s| s.command == command)
}

/// Sends `reply` for a request of `spec` (`None`: a command the server does not
/// serve, which is not counted) and records it: the one place requests are counted
/// in the metrics, with the time since `started`.
pub(crate) fn answer(
    ctx: &Context,
    spec: Option<&Spec>,
    started: Instant,
    to: ReplyTo,
    reply: Reply,
) {
    let secs = started.elapsed().as_secs_f64();
    let m = &ctx.metrics;
    if let Some(spec) = spec {
        match spec.label {
            Label::Command => m.record(spec.name(), reply.status, secs),
            Label::PerOp => {
                for &(op, status) in &reply.tally.ops {
                    m.record(op, status, secs);
                }
            }
        }
    }
    for &category in &reply.tally.errors {
        m.error(category);
    }
    to.send(reply);
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
pub(crate) fn first_op(req: &Request) -> Result<&Op, Reply> {
    req.ops
        .first()
        .ok_or_else(|| Reply::error(text::MISSING_OP))
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
                refuse(ctx, lookup(&t.req), t.enqueued, t.reply, &text);
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
    let spec = lookup(&task.req);
    let run = match spec.map(|s| s.handler) {
        Some(Handler::Batch(run)) => {
            if let Some(d) = run(ctx, batch, task) {
                deferred.push(d);
            }
            return false;
        }
        Some(Handler::Database(run)) => run,
        // A server-wide command is never queued; a code not in the table is unknown.
        Some(Handler::Server(_)) | None => {
            let reply = Reply::error(text::UNKNOWN_COMMAND);
            answer(ctx, None, task.enqueued, task.reply, reply);
            return false;
        }
    };
    let closes = task.req.command() == Some(Command::CloseDb);
    // Everything else runs after the writes staged before it (by this batch or an
    // earlier one still waiting for its group commit) are durable.
    let flushed = batch.flush();
    finish_deferred(ctx, deferred, &flushed);
    let flushed = flushed.and_then(|()| batch.flush_all());
    if let Err(e) = flushed {
        if closes {
            // The writes that failed were answered with their error. A database
            // read-only after an I/O failure stays open, read-only, until restart
            // (the pool keeps it: DECISIONS 38); the client's CloseDB is done: OK.
            tracing::debug!(error = %e, "closing a database whose last writes failed");
            answer(ctx, spec, task.enqueued, task.reply, Reply::empty());
            return true;
        }
        answer(ctx, spec, task.enqueued, task.reply, Reply::from(&e));
        return false;
    }
    let reply = run(ctx, db, &task.req);
    answer(ctx, spec, task.enqueued, task.reply, reply);
    closes
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

/// Answers a server-wide request (run on the global pool's threads).
pub fn serve_global(ctx: &Context, req: &Request, to: ReplyTo) {
    let started = Instant::now();
    let spec = lookup(req);
    match spec.map(|s| s.handler) {
        Some(Handler::Server(run)) => answer(ctx, spec, started, to, run(ctx, req)),
        _ => answer(ctx, None, started, to, Reply::error(text::UNKNOWN_COMMAND)),
    }
}

/// Answers `text` (status Error) to a request refused before its handler ran (queue
/// full, pool stopped, database gone): counted under the command's name, whatever its
/// label.
pub(crate) fn refuse(
    ctx: &Context,
    spec: Option<&Spec>,
    started: Instant,
    to: ReplyTo,
    text: &str,
) {
    let whole = spec.map(|s| Spec {
        label: Label::Command,
        ..*s
    });
    answer(ctx, whole.as_ref(), started, to, Reply::error(text));
}

/// JSON bytes of a value that cannot fail to serialize.
pub(crate) fn json<T: serde::Serialize>(v: &T) -> Vec<u8> {
    serde_json::to_vec(v).unwrap_or_else(|_| b"null".to_vec())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_protocol_command_has_one_entry() {
        for &c in Command::ALL {
            let n = COMMANDS.iter().filter(|s| s.command == c).count();
            assert_eq!(n, 1, "{c:?}");
        }
        let server_wide: Vec<_> = COMMANDS
            .iter()
            .filter(|s| !s.per_db())
            .map(Spec::name)
            .collect();
        assert_eq!(
            server_wide,
            ["open_db", "stats", "list_dbs", "metrics", "scheduler_stats"]
        );
        let req = |command| Request {
            request_id: 1,
            db_id: 1,
            command,
            ops: Vec::new(),
        };
        assert!(lookup(&req(0)).is_none());
        assert!(lookup(&req(16)).is_none());
        assert_eq!(lookup(&req(15)).map(Spec::name), Some("scan"));
    }
}
