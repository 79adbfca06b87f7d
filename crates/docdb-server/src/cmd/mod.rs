//! One file per wire command, each with the same three steps: parse the request,
//! apply it to the pool or database, return a [`Reply`].
//!
//! [`COMMANDS`] is the one table of commands: a command's code, its handler, and
//! whether it is served from its database's queue (Execute, Transaction, Scan, Query,
//! collections, heal, CloseDB; CreateIndex is taken from the queue but its build runs
//! on a thread of its own, [`crate::index_builds`]) or answered server-wide (OpenDB, Stats, ListDBs,
//! Metrics, SchedulerStats, DropDB).
//!
//! Every write a queued request makes is staged into the worker's batch and answered
//! once the batch is durable ([`Deferred`]): the engine's one completion primitive
//! (a commit's sequence number, and a callback queued on it) answers Execute,
//! Transaction and the collection commands alike, from whichever thread's fsync made
//! them durable; no worker blocks on an fsync to answer a write.
//! Dispatch, the metrics labels and the "unknown command"
//! path read it, and every answer goes through [`answer`], the one place commands are
//! counted. Adding a command: its code in `docdb_protocol::types`, one entry here, and
//! its file.

pub mod auth;
pub mod close_db;
pub mod create_collection;
pub mod create_index;
pub mod delete_collection;
pub mod drop_db;
pub mod drop_index;
pub mod execute;
pub mod heal;
pub mod list_collections;
pub mod list_dbs;
pub mod list_indexes;
pub mod metrics;
pub mod open_db;
pub mod query;
pub mod scan;
pub mod scheduler_stats;
pub mod stats;
pub mod transaction;

use std::io::Write as _;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::Arc;
use std::time::Instant;

use docdb_core::{Batch, Database, Unflushed};

use docdb_protocol::{text, Command, Op, Request};

use crate::auth::{Need, Rights};
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
    /// Stages its writes into the worker's batch and is answered after the batch's
    /// group commit ([`Deferred`]), or at once when it staged nothing. `settle`: it
    /// first needs every write staged before it durable (a transaction reads a
    /// snapshot of what is durable).
    Stage {
        run: fn(&Context, &mut Batch<'_>, Task) -> Option<Deferred>,
        settle: bool,
    },
    /// Taken from its database's queue (after the writes staged before it are
    /// durable) but answered later, from elsewhere: it owns the request's
    /// [`ReplyTo`] and must answer through [`answer`]. CreateIndex, whose build runs
    /// on a thread of its own ([`crate::index_builds`]) so the queue goes on.
    Detached(fn(&Arc<Context>, &Arc<Database>, u64, Task)),
    /// Taken from its database's queue (after the writes staged before it are
    /// durable) and fixed there at the snapshot of its place; answered there if light
    /// ([`query::LIGHT_QUERY_WORK`]), else run after the queue is handed on
    /// ([`Late`]), so the database's next requests are served meanwhile. A batch ends
    /// with it ([`runs_late`]). Query.
    Late(fn(&Database, &Request) -> Result<query::Pinned, Reply>),
    /// Answered by the connection itself, from and into its session (Auth).
    Connection,
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
        matches!(
            self.handler,
            Handler::Database(_) | Handler::Stage { .. } | Handler::Detached(_) | Handler::Late(_)
        )
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

const fn detached(command: Command, run: fn(&Arc<Context>, &Arc<Database>, u64, Task)) -> Spec {
    Spec {
        command,
        handler: Handler::Detached(run),
        label: Label::Command,
    }
}

const fn late(
    command: Command,
    pin: fn(&Database, &Request) -> Result<query::Pinned, Reply>,
) -> Spec {
    Spec {
        command,
        handler: Handler::Late(pin),
        label: Label::Command,
    }
}

const fn stage(
    command: Command,
    run: fn(&Context, &mut Batch<'_>, Task) -> Option<Deferred>,
    settle: bool,
) -> Spec {
    Spec {
        command,
        handler: Handler::Stage { run, settle },
        label: Label::Command,
    }
}

/// Every command the server serves. A code missing here is answered `unknown command`.
pub static COMMANDS: &[Spec] = &[
    server(Command::OpenDb, open_db::run),
    database(Command::CloseDb, close_db::run),
    Spec {
        label: Label::PerOp,
        ..stage(Command::Execute, execute::run, false)
    },
    server(Command::Stats, stats::run),
    stage(Command::CreateCollection, create_collection::run, false),
    stage(Command::DeleteCollection, delete_collection::run, false),
    database(Command::ListCollections, list_collections::run),
    server(Command::ListDbs, list_dbs::run),
    database(Command::Heal, heal::heal),
    database(Command::HealAll, heal::heal_all),
    database(Command::HealStats, heal::heal_stats),
    server(Command::Metrics, metrics::run),
    stage(Command::Transaction, transaction::run, true),
    server(Command::SchedulerStats, scheduler_stats::run),
    database(Command::Scan, scan::run),
    Spec {
        command: Command::Auth,
        handler: Handler::Connection,
        label: Label::Command,
    },
    server(Command::DropDb, drop_db::run),
    late(Command::Query, query::pin),
    detached(Command::CreateIndex, create_index::run),
    database(Command::DropIndex, drop_index::run),
    database(Command::ListIndexes, list_indexes::run),
];

/// What each command needs of the connection's session (SPEC §9.1): the one table of
/// rights, read by [`crate::auth::Session::check`]. Server-wide commands need admin,
/// except ListDBs (its rows are filtered to the scope); a write is any op other than
/// Read, a collection change, or Heal. A code not listed (a future command) needs
/// admin until it is classified here.
pub fn need(code: u8) -> Need {
    use Rights::*;
    // The per-op status flag selects a reply form: an Execute is an Execute.
    let Some((c, _)) = Command::decode(code) else {
        return Need::Server(Admin);
    };
    match c {
        Command::Auth => Need::Nothing,
        Command::OpenDb => Need::Name(Read),
        Command::CloseDb
        | Command::ListCollections
        | Command::HealStats
        | Command::Scan
        | Command::Query
        | Command::ListIndexes => Need::Db(Read),
        // An index changes what writes succeed (unique) and what they cost.
        Command::CreateIndex | Command::DropIndex => Need::Db(Write),
        Command::Execute | Command::Transaction => Need::DbOps,
        Command::CreateCollection | Command::DeleteCollection | Command::Heal => Need::Db(Write),
        Command::HealAll => Need::Db(Admin),
        Command::ListDbs => Need::Server(Read),
        Command::Stats | Command::Metrics | Command::SchedulerStats => Need::Server(Admin),
        Command::DropDb => Need::Name(Admin),
    }
}

/// The table entry of a request's command, if the server serves it.
pub fn lookup(req: &Request) -> Option<&'static Spec> {
    // The per-op status flag selects a reply form, not a command.
    let command = req.command()?;
    COMMANDS.iter().find(|s| s.command == command)
}

/// Whether a request may run after its batch hands the queue on ([`Handler::Late`]:
/// a heavy query does): a batch ends with it, so the requests after it go to the next
/// worker and are served beside it instead of after it.
pub fn runs_late(req: &Request) -> bool {
    lookup(req).is_some_and(|s| matches!(s.handler, Handler::Late(_)))
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

/// Test hook (the `test-hooks` feature, then opt-in by environment): the first build
/// of an index named as `DOCDB_TEST_PANIC_INDEX_BUILD` panics at its first cancel
/// check, inside the engine's build, to prove a panicking build leaves nothing
/// registered and a retry succeeds. Without the feature it is nothing.
#[cfg(feature = "test-hooks")]
pub(crate) fn maybe_inject_build_panic(ctx: &Context, index: &str) {
    if let Some((name, fired)) = &ctx.panic_index_build {
        if name == index && !fired.swap(true, std::sync::atomic::Ordering::AcqRel) {
            panic!("injected panic in the build of index {index}");
        }
    }
}

#[cfg(not(feature = "test-hooks"))]
#[inline(always)]
pub(crate) fn maybe_inject_build_panic(_: &Context, _: &str) {}

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
    let (flush, late) = serve_tasks(ctx, db_id, db, tasks);
    if late.is_empty() {
        let flush = flush?;
        return Some(Box::new(move || flush.drive()));
    }
    let ctx = ctx.clone();
    Some(Box::new(move || {
        for l in late {
            l.run(&ctx);
        }
        if let Some(flush) = flush {
            flush.drive();
        }
    }))
}

/// A query fixed at its snapshot while its batch was served, run once the database's
/// queue is handed on (see [`query::Pinned`]).
pub struct Late {
    /// The handle stays held while the read waits and runs (a close waits for its
    /// holders).
    _db: Arc<Database>,
    pinned: query::Pinned,
    spec: Option<&'static Spec>,
    enqueued: Instant,
    reply: ReplyTo,
}

impl Late {
    fn run(self, ctx: &Context) {
        // A panic answers `internal error` (the ReplyTo dropped while unwinding) and
        // the other late reads still run.
        let Late {
            _db,
            pinned,
            spec,
            enqueued,
            reply,
        } = self;
        let out = catch_unwind(AssertUnwindSafe(|| pinned.run(ctx)));
        match out {
            Ok(r) => answer(ctx, spec, enqueued, reply, r),
            Err(_) => {
                ctx.scheduler().record_panic();
                tracing::error!("panic while running a query; answered internal error");
            }
        }
    }
}

/// Writes a batch staged, and the answers owed once they are durable.
pub struct Flush {
    ctx: Arc<Context>,
    db: Arc<Database>,
    unflushed: Unflushed,
    deferred: Vec<Deferred>,
}

impl Flush {
    /// Answers once durable: from the thread driving the database's group commits,
    /// which is this one (blocking) if none is running.
    pub fn drive(self) {
        let Flush {
            ctx,
            db,
            unflushed,
            mut deferred,
        } = self;
        let keep = db.clone();
        db.when_flushed(unflushed, move |flushed| {
            finish_deferred(&ctx, &mut deferred, &flushed);
            drop(keep);
        });
    }
}

/// A request whose writes wait in the worker's batch, answered once they are durable
/// or failed with them.
pub enum Deferred {
    /// An Execute: its own results, with each staged write's outcome.
    Execute(execute::Deferred),
    /// A request answered as a whole: `ok` once durable, else
    /// `fail(error, ops, per_op_status)`.
    Whole {
        command: Command,
        to: ReplyTo,
        started: Instant,
        ok: Reply,
        fail: fn(&docdb_core::Error, usize, bool) -> Reply,
        ops: usize,
        per_op_status: bool,
    },
}

impl Deferred {
    /// Answers: if the flush failed, every staged write failed with it.
    fn finish(self, ctx: &Context, flush_error: Option<&docdb_core::Error>) {
        match self {
            Deferred::Execute(d) => d.finish(ctx, flush_error),
            Deferred::Whole {
                command,
                to,
                started,
                ok,
                fail,
                ops,
                per_op_status,
            } => {
                let reply = match flush_error {
                    None => ok,
                    Some(e) => fail(e, ops, per_op_status),
                };
                answer(ctx, spec_of(command), started, to, reply);
            }
        }
    }
}

/// A collection command's outcome: its write staged (answered empty once durable, or
/// with the flush's error), or refused now with `Err`'s reply.
pub(crate) fn defer(
    ctx: &Context,
    command: Command,
    task: Task,
    staged: Result<(), Reply>,
) -> Option<Deferred> {
    match staged {
        Ok(()) => Some(Deferred::Whole {
            command,
            to: task.reply,
            started: task.enqueued,
            ok: Reply::empty(),
            fail: |e, _, _| Reply::from(e),
            ops: 0,
            per_op_status: false,
        }),
        Err(reply) => {
            answer(ctx, spec_of(command), task.enqueued, task.reply, reply);
            None
        }
    }
}

/// Serves requests of one database in order; returns what must wait for their group
/// commit, if anything.
fn serve_tasks(
    ctx: &Arc<Context>,
    db_id: u64,
    db: Arc<Database>,
    tasks: Vec<Task>,
) -> (Option<Flush>, Vec<Late>) {
    let mut batch = db.batch();
    let mut deferred: Vec<Deferred> = Vec::new();
    let mut late: Vec<Late> = Vec::new();
    let mut close_requested = false;
    for task in tasks {
        // A panic fails only the request that caused it: its ReplyTo, dropped while
        // unwinding, answers `internal error`; the batch goes on with the others.
        let served = catch_unwind(AssertUnwindSafe(|| {
            serve_one(ctx, db_id, &db, &mut batch, &mut deferred, &mut late, task)
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
        for l in late {
            l.run(ctx);
        }
        drop(db);
        // Only now has this worker let go of the handle, so it can be closed.
        ctx.close_requested(db_id);
        return (None, Vec::new());
    }
    let unflushed = batch.detach();
    let Some(unflushed) = unflushed else {
        // Nothing staged, or a read of a written document already made it durable.
        finish_deferred(ctx, &mut deferred, &Ok(()));
        return (None, late);
    };
    let flush = Flush {
        ctx: ctx.clone(),
        db,
        unflushed,
        deferred,
    };
    (Some(flush), late)
}

/// Serves one queued request; returns true if it asked to close the database.
fn serve_one(
    ctx: &Arc<Context>,
    db_id: u64,
    db: &Arc<Database>,
    batch: &mut Batch<'_>,
    deferred: &mut Vec<Deferred>,
    late: &mut Vec<Late>,
    task: Task,
) -> bool {
    let spec = lookup(&task.req);
    let run = match spec.map(|s| s.handler) {
        Some(Handler::Stage { run, settle }) => {
            let task = if settle {
                match settled(ctx, spec, batch, deferred, task) {
                    Some(task) => task,
                    None => return false,
                }
            } else {
                task
            };
            if let Some(d) = run(ctx, batch, task) {
                deferred.push(d);
            }
            return false;
        }
        Some(Handler::Database(run)) => run,
        Some(Handler::Late(pin)) => {
            // Fixed at its snapshot here, in queue order; run after the queue is
            // handed on.
            let pinned = flush_before(ctx, batch, deferred)
                .map_err(|e| Reply::from(&e))
                .and_then(|()| pin(db, &task.req));
            match pinned {
                // A light query costs less than the hand-off would: answered here.
                Ok(pinned) => match pinned.run_light(ctx) {
                    Some(reply) => answer(ctx, spec, task.enqueued, task.reply, reply),
                    None => late.push(Late {
                        _db: db.clone(),
                        pinned,
                        spec,
                        enqueued: task.enqueued,
                        reply: task.reply,
                    }),
                },
                Err(reply) => answer(ctx, spec, task.enqueued, task.reply, reply),
            }
            return false;
        }
        Some(Handler::Detached(run)) => {
            match flush_before(ctx, batch, deferred) {
                Ok(()) => run(ctx, db, db_id, task),
                Err(e) => answer(ctx, spec, task.enqueued, task.reply, Reply::from(&e)),
            }
            return false;
        }
        // A server-wide command is never queued; a code not in the table is unknown.
        Some(Handler::Server(_) | Handler::Connection) | None => {
            let reply = Reply::error(text::UNKNOWN_COMMAND);
            answer(ctx, None, task.enqueued, task.reply, reply);
            return false;
        }
    };
    let closes = task.req.command() == Some(Command::CloseDb);
    // Everything else runs after the writes staged before it (by this batch or an
    // earlier one still waiting for its group commit) are durable.
    let flushed = flush_before(ctx, batch, deferred);
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

/// Waits until every write staged before now (by this batch, whose deferred requests
/// are answered with the outcome, or by an earlier one) is durable.
fn flush_before(
    ctx: &Context,
    batch: &mut Batch<'_>,
    deferred: &mut Vec<Deferred>,
) -> docdb_core::Result<()> {
    let flushed = batch.flush();
    finish_deferred(ctx, deferred, &flushed);
    flushed.and_then(|()| batch.flush_all())
}

/// For a staging command that reads what is durable (`settle`): waits for the writes
/// staged before it; if they failed, answers it with their error (and returns None).
fn settled(
    ctx: &Context,
    spec: Option<&Spec>,
    batch: &mut Batch<'_>,
    deferred: &mut Vec<Deferred>,
    task: Task,
) -> Option<Task> {
    match flush_before(ctx, batch, deferred) {
        Ok(()) => Some(task),
        Err(e) => {
            answer(ctx, spec, task.enqueued, task.reply, Reply::from(&e));
            None
        }
    }
}

/// Answers requests whose writes waited for a flush.
fn finish_deferred(ctx: &Context, deferred: &mut Vec<Deferred>, flushed: &docdb_core::Result<()>) {
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

/// Appends a page's rows as `[{"id":n,"doc":<doc>},...]` (Scan and Query): stored or
/// projected documents are valid JSON, so they are embedded as they are.
pub(crate) fn rows_json(out: &mut Vec<u8>, rows: &[(u64, Vec<u8>)]) {
    out.reserve(2 + rows.iter().map(|(_, d)| d.len() + 36).sum::<usize>());
    out.push(b'[');
    for (i, (id, doc)) in rows.iter().enumerate() {
        if i > 0 {
            out.push(b',');
        }
        out.extend_from_slice(b"{\"id\":");
        // Writing to a Vec cannot fail.
        let _ = write!(out, "{id}");
        out.extend_from_slice(b",\"doc\":");
        out.extend_from_slice(doc);
        out.push(b'}');
    }
    out.push(b']');
}

/// A page's reply: OK with `data`, or the frame-limit error if it would pass the
/// frame limit. A page stops at `net.reply_budget_mb` (its first row always included),
/// so only a budget plus one document of the largest size and its cursor could; it is
/// never sent.
pub(crate) fn page_reply(data: Vec<u8>) -> Reply {
    if data.len() > docdb_protocol::MAX_REPLY_DATA {
        return Reply::error(text::REPLY_TOO_LARGE);
    }
    Reply::ok(data)
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
            [
                "open_db",
                "stats",
                "list_dbs",
                "metrics",
                "scheduler_stats",
                "auth",
                "drop_db"
            ]
        );
        let req = |command| Request {
            request_id: 1,
            db_id: 1,
            command,
            ops: Vec::new(),
        };
        assert!(lookup(&req(0)).is_none());
        assert!(lookup(&req(22)).is_none());
        assert_eq!(lookup(&req(18)).map(Spec::name), Some("query"));
        assert_eq!(lookup(&req(21)).map(Spec::name), Some("list_indexes"));
        assert_eq!(lookup(&req(17)).map(Spec::name), Some("drop_db"));
        assert_eq!(lookup(&req(16)).map(Spec::name), Some("auth"));
        assert_eq!(lookup(&req(15)).map(Spec::name), Some("scan"));
        // The per-op status flag is a reply form of Execute and Transaction only.
        assert_eq!(lookup(&req(131)).map(Spec::name), Some("execute"));
        assert_eq!(lookup(&req(141)).map(Spec::name), Some("transaction"));
        assert!(lookup(&req(128 | 15)).is_none());
        assert!(lookup(&req(128)).is_none());
    }

    #[test]
    fn every_command_has_its_rights() {
        use Rights::*;
        assert_eq!(need(Command::Auth as u8), Need::Nothing);
        assert_eq!(need(Command::OpenDb as u8), Need::Name(Read));
        assert_eq!(need(Command::DropDb as u8), Need::Name(Admin));
        assert_eq!(need(99), Need::Server(Admin));
        assert_eq!(need(Command::ListDbs as u8), Need::Server(Read));
        for c in [Command::Stats, Command::Metrics, Command::SchedulerStats] {
            assert_eq!(need(c as u8), Need::Server(Admin), "{c:?}");
        }
        // Every per-database command checks the db id it names.
        for s in COMMANDS.iter().filter(|s| s.per_db()) {
            assert!(
                matches!(need(s.command as u8), Need::Db(_) | Need::DbOps),
                "{}",
                s.name()
            );
        }
    }
}
