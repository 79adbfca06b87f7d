//! The write path: validate and stage a commit under the commit lock, then wait for
//! group commit to make it durable, then publish it to readers.
//!
//! Staging assigns the commit's sequence number, encodes its WAL record and data-file
//! records into in-memory buffers, and links its versions into the index as *pending*
//! (above the visible number, so no reader sees them). Durability is group commit
//! (okaywal's `synchronize_locked` pattern): the first waiter to find no syncer running
//! becomes the syncer, takes every staged commit (up to `max_batch_size`), writes and
//! fsyncs them with no lock held that a writer needs, then publishes the highest
//! sequence number and wakes everyone. Others that arrive meanwhile stage into the
//! next batch. There is no sleep anywhere: an idle system syncs at once. When the last
//! batch had several commits, the syncer yields the CPU once before cutting the next,
//! so writers that are ready to run can stage into it first.
//!
//! With a shared log, a batch of one commit is not fsynced here: the syncer hands it,
//! with the syncer role, to the log and returns ([`Round::Handed`]); the log's round
//! leader runs its completion ([`Inner::logged`]), which records the outcome, answers
//! the callbacks and drives on while callbacks are left. Until then the I/O state is
//! the batch's: [`crate::files::Files::io`] waits for it (DECISIONS 74).

use std::collections::VecDeque;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Instant;

use crate::config::FsyncMode;
use crate::data::record::{self as drec, Kind, FIXED};
use crate::db::Inner;
use crate::error::{Error, Result};
use crate::index::{Chain, Collection, Version};
use crate::lock_order::{Level, OrderedGuard, OrderedMutex};
use crate::memory::INDEX_ENTRY_BYTES;
use crate::name::DEFAULT_COLLECTION;
use crate::secondary::stage::Prepared;
use crate::shared_log::{NotLogged, Then};
use crate::stats::GroupCounters;
use crate::wal::record::{CommitEncoder, WalOp, MAX_BODY};
use parking_lot::Condvar;

/// What a document write requires of the current state.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum DocKind {
    /// Insert; the document must not exist.
    Create,
    /// Replace; the document must exist.
    Update,
    /// Tombstone; the document must exist.
    Delete,
    /// Write unconditionally (transactions check with a guard instead).
    Put,
    /// Tombstone unconditionally if it exists (transactions).
    Remove,
}

/// One operation of a commit.
pub(crate) enum StagedOp {
    Doc {
        coll: Arc<Collection>,
        id: u64,
        kind: DocKind,
        payload: Vec<u8>,
        /// Fail with Conflict if the newest version is newer than this.
        not_after: Option<u64>,
    },
    CreateCollection(String),
    DeleteCollection(String),
}

/// A staged commit that no syncer has taken yet.
pub(crate) struct Pending {
    seq: u64,
    wal_end: usize,
    data_end: usize,
}

/// State guarded by the commit lock.
pub(crate) struct CommitState {
    next_seq: u64,
    wal_buf: Vec<u8>,
    data_buf: Vec<u8>,
    /// Data-file offset where `data_buf[0]` will be written.
    data_base: u64,
    /// Generation new versions are written to.
    generation: u64,
    pending: VecDeque<Pending>,
    /// Bytes of data-file records that the newest live versions point at.
    live_bytes: u64,
}

impl CommitState {
    /// The data file's length once every staged commit is written.
    pub(crate) fn data_size(&self) -> u64 {
        self.data_base + self.data_buf.len() as u64
    }

    /// Bytes of data-file records that the newest live versions point at.
    pub(crate) fn live_bytes(&self) -> u64 {
        self.live_bytes
    }

    /// Staged-but-unwritten records go to `generation` from `data_base` on (a
    /// compaction's switch; the caller holds the I/O lock, so nothing is mid-write).
    pub(crate) fn switch_generation(&mut self, generation: u64, data_base: u64) {
        self.generation = generation;
        self.data_base = data_base;
    }
}

/// Group commit: staging (the commit lock), the syncer hand-off (the sync lock and
/// its condvar) and the batch counters. The syncer loop itself is `Inner`'s
/// (`wait_durable`, `when_durable`, `drive`), as it writes through [`crate::files`].
///
/// Lock order: the commit lock ([`Level::Commit`]) may be taken holding the
/// maintenance lock and `io`, never the sync lock, a collection's `docs` or the
/// readable generations; staging takes the collections and `docs` under it. The sync
/// lock ([`Level::Sync`]) may be taken holding any lock; under it only leaf locks are
/// taken (publishing the visible number, the failure registry) — the syncer releases
/// it for its round.
pub(crate) struct GroupCommit {
    commit: OrderedMutex<CommitState>,
    sync: OrderedMutex<SyncState>,
    cv: Condvar,
    counters: GroupCounters,
}

impl GroupCommit {
    /// After recovery: `seq` is the newest durable commit, new records go to the data
    /// file `generation` from `data_end` on.
    pub(crate) fn new(seq: u64, data_end: u64, generation: u64, live_bytes: u64) -> Self {
        GroupCommit {
            commit: OrderedMutex::new(
                Level::Commit,
                CommitState {
                    next_seq: seq + 1,
                    wal_buf: Vec::new(),
                    data_buf: Vec::new(),
                    data_base: data_end,
                    generation,
                    pending: VecDeque::new(),
                    live_bytes,
                },
            ),
            sync: OrderedMutex::new(
                Level::Sync,
                SyncState {
                    durable: seq,
                    ..SyncState::default()
                },
            ),
            cv: Condvar::new(),
            counters: GroupCounters::default(),
        }
    }

    /// The commit lock: hold it to stage ([`Inner::stage`]) or to pause staging.
    pub(crate) fn lock_commit(&self) -> OrderedGuard<'_, CommitState> {
        self.commit.lock()
    }

    /// Marks the database failed outside a syncer round (a checkpoint's or
    /// compaction's write): waiters stop waiting, later commits are refused.
    pub(crate) fn mark_failed(&self) {
        self.sync.lock().failed = true;
    }

    pub(crate) fn stats(&self) -> crate::stats::GroupCommitStats {
        self.counters.snapshot()
    }
}

/// Called once a commit is durable (`Ok`) or can no longer become durable.
pub(crate) type OnDurable = Box<dyn FnOnce(Result<()>) + Send>;

/// State of the syncer handoff, guarded by `Inner::sync`.
#[derive(Default)]
pub(crate) struct SyncState {
    syncing: bool,
    /// The syncer is a [`Inner::when_durable`] caller that keeps syncing until no
    /// callback is left (rather than a blocked waiter that stops once its own commit
    /// is durable).
    driver: bool,
    durable: u64,
    failed: bool,
    /// Commits up to here were in a batch whose WAL write or fsync failed: whether
    /// they are durable is unknown (their writers are told so).
    unknown_through: u64,
    /// What failed, for those writers' error text.
    failure: Option<Arc<str>>,
    /// Commits in the last batch written: more than one means several writers are
    /// active, and waiting for the ready ones before cutting a batch pays.
    last_batch: usize,
    /// Callbacks of staged commits that are not durable yet.
    callbacks: Vec<(u64, OnDurable)>,
}

/// When a syncer stops driving.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Until {
    /// A blocked waiter: once its commit is durable (or failed).
    Durable(u64),
    /// A callback's registrant: once no callback is left.
    Drained,
}

/// A syncer round whose write or fsync failed: which, and the last commit of its batch
/// (every commit up to it has an unknown outcome).
struct BatchFailed {
    what: &'static str,
    error: std::io::Error,
    last: u64,
}

/// How the commits handed to callbacks ended: a copy of the sync state's outcome
/// fields, taken under its lock, read after it is released.
struct Outcomes {
    durable: u64,
    unknown_through: u64,
    failure: Option<Arc<str>>,
}

impl Outcomes {
    /// Commit `seq`'s result: durable; in a failed batch (unknown); or refused because
    /// an earlier batch failed (it never reached the log).
    fn of(&self, seq: u64) -> Result<()> {
        if seq <= self.durable {
            Ok(())
        } else if seq <= self.unknown_through {
            Err(Error::OutcomeUnknown {
                detail: self.failure.as_deref().unwrap_or("I/O error").to_owned(),
            })
        } else {
            Err(Error::ReadOnly)
        }
    }
}

impl SyncState {
    fn outcomes(&self) -> Outcomes {
        Outcomes {
            durable: self.durable,
            unknown_through: self.unknown_through,
            failure: self.failure.clone(),
        }
    }

    /// Takes the callbacks that can run now: durable ones, or every one once the
    /// database has failed.
    fn take_ready(&mut self) -> Vec<(u64, OnDurable)> {
        if self.callbacks.is_empty() {
            return Vec::new();
        }
        let durable = self.durable;
        if self.failed {
            return std::mem::take(&mut self.callbacks);
        }
        let (ready, rest) = std::mem::take(&mut self.callbacks)
            .into_iter()
            .partition(|(seq, _)| *seq <= durable);
        self.callbacks = rest;
        ready
    }
}

/// Held by the syncer across a round (which releases the sync lock meanwhile): if a
/// panic unwinds out of the round, it clears `syncing`/`driver` and wakes the waiters,
/// so one of them becomes the syncer instead of every later writer waiting forever.
/// Disarmed when the round returns normally (the syncer then clears the flags itself).
struct SyncerGuard<'a> {
    sync: &'a OrderedMutex<SyncState>,
    cv: &'a Condvar,
}

impl<'a> SyncerGuard<'a> {
    fn new(sync: &'a OrderedMutex<SyncState>, cv: &'a Condvar) -> Self {
        SyncerGuard { sync, cv }
    }

    fn disarm(self) {
        std::mem::forget(self);
    }
}

impl Drop for SyncerGuard<'_> {
    fn drop(&mut self) {
        // IMPORTANT: the round's own lock guard was dropped when its frame unwound, so
        // taking the lock here cannot deadlock (parking_lot locks do not poison).
        let mut s = self.sync.lock();
        s.syncing = false;
        s.driver = false;
        self.cv.notify_all();
    }
}

/// Runs callbacks with no lock held. A panicking callback is a bug of its caller; it
/// must not leave the database without a syncer, so it is contained and logged.
fn run_callbacks(ready: Vec<(u64, OnDurable)>, outcomes: &Outcomes) {
    for (seq, cb) in ready {
        let result = outcomes.of(seq);
        if std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| cb(result))).is_err() {
            tracing::error!(seq, "a durability callback panicked");
        }
    }
}

/// Batch buffers larger than this are freed rather than kept for the next batch: a
/// database that once wrote a huge transaction does not hold its memory.
const MAX_SPARE: usize = 64 * 1024;

fn record_len(coll: &str, payload_len: usize) -> u64 {
    (FIXED + coll.len() + payload_len) as u64
}

/// What a commit's validation measured: the index memory it adds and frees, and the
/// size of its WAL record body.
struct Cost {
    grow: u64,
    shrink: u64,
    wal_size: usize,
}

/// True for the kinds that write a new document version (the others tombstone).
fn is_put(kind: DocKind) -> bool {
    matches!(kind, DocKind::Create | DocKind::Update | DocKind::Put)
}

/// Step 1 of staging: checks every operation against the current state (collections,
/// existence, conflicts, limits) and measures the commit. Changes nothing.
fn validate_ops(
    colls: &std::collections::HashMap<Arc<str>, Arc<Collection>>,
    max_collections: usize,
    ops: &[StagedOp],
) -> Result<Cost> {
    let mut cost = Cost {
        grow: 0,
        shrink: 0,
        wal_size: 32,
    };
    for op in ops {
        match op {
            StagedOp::Doc {
                coll,
                id,
                kind,
                payload,
                not_after,
            } => {
                if !colls.get(&*coll.name).is_some_and(|c| Arc::ptr_eq(c, coll)) {
                    return Err(Error::CollectionNotFound);
                }
                let latest = coll.latest(*id);
                if let (Some(limit), Some(v)) = (not_after, latest) {
                    if v.seq > *limit {
                        return Err(Error::Conflict);
                    }
                }
                let live = latest.filter(Version::is_live);
                match (kind, live) {
                    (DocKind::Create, Some(_)) => return Err(Error::AlreadyExists),
                    (DocKind::Update | DocKind::Delete, None) => return Err(Error::NotFound),
                    _ => {}
                }
                if is_put(*kind) {
                    cost.grow += payload.len() as u64 + INDEX_ENTRY_BYTES;
                }
                cost.shrink += live.map_or(0, |v| v.len as u64 + INDEX_ENTRY_BYTES);
                cost.wal_size += 15 + coll.name.len() + payload.len();
            }
            StagedOp::CreateCollection(name) => {
                if colls.contains_key(name.as_str()) {
                    return Err(Error::CollectionExists);
                }
                if colls.len() >= max_collections {
                    return Err(Error::TooManyCollections {
                        max: max_collections,
                    });
                }
            }
            StagedOp::DeleteCollection(name) => {
                if name == DEFAULT_COLLECTION {
                    return Err(Error::DefaultCollection);
                }
                match colls.get(name.as_str()) {
                    None => return Err(Error::CollectionNotFound),
                    Some(c) if c.live() > 0 => return Err(Error::CollectionNotEmpty),
                    Some(_) => {}
                }
            }
        }
    }
    Ok(cost)
}

/// Step 3 of staging: appends the commit's WAL record to the batch's WAL buffer.
fn encode_wal(wal_buf: &mut Vec<u8>, seq: u64, ops: &[StagedOp]) {
    let mut enc = CommitEncoder::begin(wal_buf, seq);
    for op in ops {
        match op {
            StagedOp::Doc {
                coll,
                id,
                kind,
                payload,
                ..
            } => {
                let wop = match kind {
                    DocKind::Create => WalOp::Create,
                    DocKind::Update | DocKind::Put => WalOp::Update,
                    DocKind::Delete | DocKind::Remove => WalOp::Delete,
                };
                let body: &[u8] = if is_put(*kind) { payload } else { &[] };
                enc.op(wop, &coll.name, *id, body);
            }
            StagedOp::CreateCollection(name) => enc.op(WalOp::CreateCollection, name, 0, &[]),
            StagedOp::DeleteCollection(name) => enc.op(WalOp::DeleteCollection, name, 0, &[]),
        }
    }
    enc.finish();
}

/// Step 4 of staging, for one document: appends its data-file record (a put or a
/// tombstone) to the batch's data buffer and returns the version that points at it.
fn encode_data_record(
    c: &mut CommitState,
    seq: u64,
    coll: &Collection,
    id: u64,
    put: bool,
    payload: &[u8],
) -> Version {
    let offset = c.data_base + c.data_buf.len() as u64;
    let (rkind, body): (Kind, &[u8]) = if put {
        (Kind::Put, payload)
    } else {
        (Kind::Tombstone, &[])
    };
    drec::encode(&mut c.data_buf, rkind, &coll.name, id, seq, body);
    Version {
        seq,
        generation: c.generation,
        offset,
        len: body.len() as u32,
        tombstone: !put,
    }
}

/// Step 5 of staging, for one document: links `v` into the index as the newest
/// (pending) version, pruning versions no snapshot at or after `oldest` can see.
/// Returns the version it replaced when that one was live.
fn link_version(coll: &Collection, id: u64, v: Version, oldest: u64) -> Option<Version> {
    let mut docs = coll.docs.write();
    match docs.get_mut(&id) {
        Some(chain) => {
            let old = *chain.latest();
            chain.push(v, oldest);
            old.is_live().then_some(old)
        }
        None => {
            docs.insert(id, Chain::One(v));
            None
        }
    }
}

/// Step 6 of staging, for one document: keeps the collection's live count and the
/// live-bytes total (compaction's trigger) true after `new` replaced `was_live`.
fn account_live(c: &mut CommitState, coll: &Collection, was_live: Option<Version>, new: &Version) {
    let put = !new.tombstone;
    if let Some(old) = was_live {
        c.live_bytes -= record_len(&coll.name, old.len as usize);
        if !put {
            coll.live.fetch_sub(1, Ordering::Relaxed);
        }
    } else if put {
        coll.live.fetch_add(1, Ordering::Relaxed);
    }
    if put {
        c.live_bytes += record_len(&coll.name, new.len as usize);
    }
}

impl Inner {
    /// Validates and stages one commit; returns its sequence number. Nothing changes
    /// when it fails. The steps: validate and reserve memory (may fail), then — from
    /// there on nothing fails — assign the sequence number, encode the WAL record,
    /// encode the data records and link their versions into the index (pending)
    /// keeping the live accounting true, and queue the commit for the syncer.
    pub(crate) fn stage(&self, c: &mut CommitState, ops: &[StagedOp]) -> Result<u64> {
        self.stage_prepared(c, ops, Prepared::default())
    }

    /// [`Inner::stage`] with the index keys `prepared` computed before the commit
    /// lock was taken ([`Prepared::of`]).
    pub(crate) fn stage_prepared(
        &self,
        c: &mut CommitState,
        ops: &[StagedOp],
        prepared: Prepared,
    ) -> Result<u64> {
        self.check_writable()?;
        // Step 1 and 2: validate (secondary index keys and unique indexes included),
        // then reserve the index memory, under the collections read lock so no
        // collection appears or goes meanwhile.
        let plan = {
            let colls = self.collections.read();
            let cost = validate_ops(&colls, self.config.limits.max_collections, ops)?;
            if cost.wal_size > MAX_BODY {
                return Err(Error::TransactionTooLarge);
            }
            let plan = crate::secondary::stage::Plan::of(ops, prepared)?;
            if !self
                .memory
                .try_apply(cost.grow + plan.grow, cost.shrink + plan.shrink)
            {
                return Err(Error::MemoryLimit);
            }
            plan
        };

        // Validation passed: from here on nothing fails.
        let seq = c.next_seq;
        c.next_seq += 1;
        let oldest = self.snapshots.oldest();
        encode_wal(&mut c.wal_buf, seq, ops);
        for op in ops {
            self.stage_data(c, seq, oldest, op);
        }
        plan.apply(seq, oldest);
        c.pending.push_back(Pending {
            seq,
            wal_end: c.wal_buf.len(),
            data_end: c.data_buf.len(),
        });
        self.counters.commits.fetch_add(1, Ordering::Relaxed);
        Ok(seq)
    }

    /// Steps 4–6 of staging for one validated operation: its data-file record, its
    /// index entry (or collection), and the live accounting.
    fn stage_data(&self, c: &mut CommitState, seq: u64, oldest: u64, op: &StagedOp) {
        match op {
            StagedOp::Doc {
                coll,
                id,
                kind,
                payload,
                ..
            } => {
                let v = encode_data_record(c, seq, coll, *id, is_put(*kind), payload);
                let was_live = link_version(coll, *id, v, oldest);
                account_live(c, coll, was_live, &v);
            }
            StagedOp::CreateCollection(name) => {
                drec::encode(&mut c.data_buf, Kind::CreateCollection, name, 0, seq, &[]);
                self.collections.write().insert(
                    Arc::from(name.as_str()),
                    Arc::new(Collection::new(name, seq)),
                );
            }
            StagedOp::DeleteCollection(name) => {
                drec::encode(&mut c.data_buf, Kind::DeleteCollection, name, 0, seq, &[]);
                self.collections.write().remove(name.as_str());
            }
        }
    }

    /// Stages one commit and waits until it is durable and visible.
    pub(crate) fn commit(&self, ops: &[StagedOp]) -> Result<u64> {
        let prepared = Prepared::of(ops);
        let seq = {
            let mut c = self.group_commit.lock_commit();
            self.stage_prepared(&mut c, ops, prepared)?
        };
        self.wait_durable(seq)?;
        Ok(seq)
    }

    /// The sequence number of the newest staged commit, holding the commit lock.
    pub(crate) fn last_staged_locked(&self, c: &CommitState) -> u64 {
        c.next_seq - 1
    }

    /// The sequence number of the newest staged commit.
    pub(crate) fn last_staged(&self) -> u64 {
        self.group_commit.lock_commit().next_seq - 1
    }

    /// Blocks until commit `seq` is durable (per the fsync mode) and visible, or can no
    /// longer be, becoming the syncer when nobody else is.
    pub(crate) fn wait_durable(&self, seq: u64) -> Result<()> {
        let mut s = self.group_commit.sync.lock();
        loop {
            if s.durable >= seq || s.failed {
                return s.outcomes().of(seq);
            }
            if s.syncing {
                s.wait(&self.group_commit.cv);
                continue;
            }
            s.syncing = true;
            s = self.drive(s, Until::Durable(seq));
        }
    }

    /// Calls `done` once commit `seq` is durable and visible (or can no longer be),
    /// without blocking on another thread's fsync: if a syncer is running, `done` runs
    /// on it. Otherwise this thread becomes the syncer and keeps syncing, running every
    /// callback that becomes ready, until none is left — so a server worker can hand
    /// its database to the next batch and let one thread drive its group commits.
    pub(crate) fn when_durable(&self, seq: u64, done: OnDurable) {
        let mut s = self.group_commit.sync.lock();
        loop {
            if s.durable >= seq || s.failed {
                let outcomes = s.outcomes();
                drop(s);
                run_callbacks(vec![(seq, done)], &outcomes);
                return;
            }
            if !s.syncing {
                break;
            }
            if s.driver {
                s.callbacks.push((seq, done));
                return;
            }
            // A blocked waiter is syncing and stops once its own commit is durable:
            // wait for its round, then drive.
            s.wait(&self.group_commit.cv);
        }
        s.callbacks.push((seq, done));
        s.syncing = true;
        drop(self.drive(s, Until::Drained));
    }

    /// The syncer's loop, shared by both ways of waiting: the caller has set `syncing`;
    /// runs rounds until `until` holds, waking blocked waiters and running the
    /// callbacks that became ready (with no lock held) after each round. Returns with
    /// the sync lock held and the syncer role given up — or handed on with a batch to
    /// the shared log, whose completion ([`Inner::logged`]) drives from there.
    fn drive<'a>(
        &'a self,
        mut s: OrderedGuard<'a, SyncState>,
        until: Until,
    ) -> OrderedGuard<'a, SyncState> {
        let gc = &self.group_commit;
        // A driver's callbacks are run by whoever syncs; a blocked waiter stops at its
        // own commit, so callbacks registered meanwhile wait for it and then drive.
        s.driver = until == Until::Drained;
        loop {
            let guard = SyncerGuard::new(&gc.sync, &gc.cv);
            let round = self.sync_round(s);
            guard.disarm();
            s = gc.sync.lock();
            match round {
                Round::Handed => return s,
                Round::Empty => {}
                Round::Ended(result) => self.end_round(&mut s, result),
            }
            let done;
            (s, done) = self.settle(s, until);
            if done {
                return s;
            }
        }
    }

    /// After a round's outcome is recorded: takes the callbacks it made ready, gives
    /// the syncer role up if `until` holds (the `bool`), wakes the blocked waiters and
    /// runs those callbacks with no lock held. Returns with the sync lock held.
    fn settle<'a>(
        &'a self,
        mut s: OrderedGuard<'a, SyncState>,
        until: Until,
    ) -> (OrderedGuard<'a, SyncState>, bool) {
        let gc = &self.group_commit;
        let ready = s.take_ready();
        let done = match until {
            Until::Durable(seq) => s.durable >= seq || s.failed,
            Until::Drained => s.callbacks.is_empty(),
        };
        if done {
            s.syncing = false;
            s.driver = false;
        }
        gc.cv.notify_all();
        if !ready.is_empty() {
            let outcomes = s.outcomes();
            drop(s);
            run_callbacks(ready, &outcomes);
            s = gc.sync.lock();
        }
        (s, done)
    }

    /// One syncer round, entered holding the sync lock (released for the round):
    /// write the next batch and make it durable, or hand it to the shared log.
    fn sync_round<'a>(&'a self, s: OrderedGuard<'a, SyncState>) -> Round {
        let concurrent = s.last_batch > 1;
        drop(s);
        if concurrent {
            // Several writers are active: let those ready to run stage their commits
            // first, so this batch is larger and fsyncs fewer. With one writer it would
            // only add the wait for every other runnable thread. No sleep: nobody waits
            // for a timer (DECISIONS 19).
            std::thread::yield_now();
        }
        self.run_batch(concurrent)
    }

    /// Records the outcome of one syncer round.
    fn end_round(&self, s: &mut SyncState, result: Result<(u64, usize), BatchFailed>) {
        match result {
            Ok((last, n)) => {
                s.last_batch = n;
                s.durable = s.durable.max(last);
                // IMPORTANT: publish before waking anyone, so an acknowledged write is
                // visible to every read that starts after the ack.
                self.snapshots.publish(last);
            }
            Err(BatchFailed { what, error, last }) => {
                let what = format!("{what}: {error}");
                self.record_failure(&what);
                s.failed = true;
                s.unknown_through = s.unknown_through.max(last);
                s.failure.get_or_insert_with(|| what.into());
            }
        }
    }

    /// Takes the next batch of staged commits and writes its WAL and data bytes; then
    /// fsyncs the WAL (per mode), or hands the batch to the shared log when it takes it.
    fn run_batch(&self, concurrent: bool) -> Round {
        let mut io = self.files.io();
        let max = match self.config.wal.fsync.mode {
            FsyncMode::Always => 1,
            _ => self.config.wal.fsync.max_batch_size,
        };
        let (wal, data, base, last, count) = {
            let mut c = self.group_commit.lock_commit();
            let take = c.pending.len();
            if take == 0 {
                return Round::Empty;
            }
            let n = take.min(max);
            let cut = &c.pending[n - 1];
            let (last, wal_end, data_end) = (cut.seq, cut.wal_end, cut.data_end);
            let base = c.data_base;
            let (wal, data) = if n == take {
                c.pending.clear();
                let (spare_wal, spare_data) = std::mem::take(&mut io.spare);
                (
                    std::mem::replace(&mut c.wal_buf, spare_wal),
                    std::mem::replace(&mut c.data_buf, spare_data),
                )
            } else {
                c.pending.drain(..n);
                for p in c.pending.iter_mut() {
                    p.wal_end -= wal_end;
                    p.data_end -= data_end;
                }
                let rest_wal = c.wal_buf.split_off(wal_end);
                let rest_data = c.data_buf.split_off(data_end);
                (
                    std::mem::replace(&mut c.wal_buf, rest_wal),
                    std::mem::replace(&mut c.data_buf, rest_data),
                )
            };
            c.data_base += data.len() as u64;
            (wal, data, base, last, n)
        };
        let started = Instant::now();
        let failed =
            |what: &'static str| move |error: std::io::Error| BatchFailed { what, error, last };
        let durable_here = matches!(
            self.config.wal.fsync.mode,
            FsyncMode::Always | FsyncMode::Group
        );
        // Decided before the write: a batch the log takes needs no zeros ahead.
        let log = durable_here
            .then(|| self.log_for(count, concurrent, wal.len()))
            .flatten();
        let appended = if log.is_some() {
            io.wal.append_logged(&wal)
        } else {
            io.wal.append(&wal)
        };
        let at = match appended {
            Ok(at) => at,
            Err(e) => return Round::Ended(Err(failed("WAL write")(e))),
        };
        if let Err(e) = io.data.write_at(&data, base) {
            return Round::Ended(Err(failed("data file write")(e)));
        }
        let batch = Written {
            data_end: base + data.len() as u64,
            wal,
            data,
            last,
            count,
            started,
        };
        if durable_here {
            if let Some((m, me)) = log.zip(self.self_ref.upgrade()) {
                // The trim fsyncs this file before it removes the log's records of it
                // (a roll fsynced the segments before it).
                m.dep.set(Some(io.wal.file()));
                // Until the completion, whoever else wants the I/O state waits: what
                // is written is not yet durable (a checkpoint must not cover it).
                io.in_flight = true;
                drop(io);
                // The syncer role goes with the batch: the completion runs the
                // callbacks and drives on, so callbacks registered meanwhile are left
                // to it rather than waiting for it.
                self.group_commit.sync.lock().driver = true;
                // The log gives the WAL buffer back to the completion, to be reused
                // as the next batch's (`Io::spare`).
                let mut batch = batch;
                let wal = std::mem::take(&mut batch.wal);
                m.log.commit_then(
                    m.id,
                    &m.dep,
                    at,
                    wal,
                    Box::new(move |r, wal| Inner::logged(me, r, Written { wal, ..batch })),
                );
                return Round::Handed;
            }
            if let Err(e) = io.wal.sync() {
                return Round::Ended(Err(failed("WAL fsync")(e)));
            }
        }
        let done = self.finish_batch(&mut io, batch);
        drop(io);
        self.maybe_checkpoint();
        Round::Ended(Ok(done))
    }

    /// The shared log, if it takes a batch of `count` commits and `wal_len` WAL bytes.
    /// Only a batch of one commit goes through the log, and not one right after a batch
    /// of several (`concurrent`): a database whose writers already share its fsync
    /// gains nothing from sharing it further, and would wait for another database's
    /// round to end before its own began (measured: the 3 × 10 mix lost 15-25 % with
    /// every batch logged; docs/DECISIONS.md 57).
    fn log_for(
        &self,
        count: usize,
        concurrent: bool,
        wal_len: usize,
    ) -> Option<&crate::shared_log::Member> {
        self.shared
            .as_ref()
            .filter(|m| count == 1 && !concurrent && m.log.takes(wal_len))
    }

    /// A batch's end once written and durable: the I/O state, counters and spare
    /// buffers. Returns the batch's last sequence number and size.
    fn finish_batch(&self, io: &mut crate::files::Io, batch: Written) -> (u64, usize) {
        let Written {
            mut wal,
            mut data,
            data_end,
            last,
            count,
            started,
        } = batch;
        io.data_len = data_end;
        io.data.write_behind(io.data_len);
        io.last_written_seq = last;
        self.counters
            .wal_bytes
            .fetch_add(wal.len() as u64, Ordering::Relaxed);
        self.group_commit
            .counters
            .record(count as u64, started.elapsed());
        self.counters
            .wal_since_checkpoint
            .fetch_add(wal.len() as u64, Ordering::Relaxed);
        if wal.capacity() <= MAX_SPARE && data.capacity() <= MAX_SPARE {
            wal.clear();
            data.clear();
            io.spare = (wal, data);
        }
        (last, count)
    }

    /// Asks for a checkpoint once the WAL written since the last one reaches its bound.
    fn maybe_checkpoint(&self) {
        let since = self.counters.wal_since_checkpoint.load(Ordering::Relaxed);
        if since >= self.config.checkpoint_bytes() {
            self.request_maintenance();
        }
    }

    /// The completion of a batch handed to the shared log: settles the I/O state
    /// (fsyncing the WAL itself when the log turned off before taking the batch),
    /// records the outcome and, holding the syncer role the batch carried, runs the
    /// callbacks it made ready. Runs on the thread that led the log's round, holding
    /// no lock of this database. While callbacks are left, the role stays held and
    /// the returned work drives on (after the round's other completions).
    fn logged(
        self: Arc<Self>,
        r: std::result::Result<(), NotLogged>,
        batch: Written,
    ) -> Option<Then> {
        let gc = &self.group_commit;
        let guard = SyncerGuard::new(&gc.sync, &gc.cv);
        let last = batch.last;
        let result = {
            let mut io = self.files.io_in_flight();
            let synced = match r {
                Ok(()) => Ok(()),
                // The log was off when the batch reached it: the WAL holds the bytes.
                Err(NotLogged::Fallback) => io.wal.sync().map_err(|e| ("WAL fsync", e)),
                Err(NotLogged::Failed(e)) => Err(("shared log fsync", e)),
            };
            match synced {
                Ok(()) => Ok(self.finish_batch(&mut io, batch)),
                Err((what, error)) => Err(BatchFailed { what, error, last }),
            }
        };
        self.maybe_checkpoint();
        let mut s = gc.sync.lock();
        self.end_round(&mut s, result);
        let (s, done) = self.settle(s, Until::Drained);
        drop(s);
        guard.disarm();
        if done {
            return None;
        }
        Some(Box::new(move || {
            let s = self.group_commit.sync.lock();
            drop(self.drive(s, Until::Drained));
        }))
    }
}

/// What a syncer round came to.
enum Round {
    /// Nothing was staged.
    Empty,
    /// Written and durable, or failed.
    Ended(Result<(u64, usize), BatchFailed>),
    /// Written and handed to the shared log with the syncer role.
    Handed,
}

/// A batch written to the WAL and the data file, until its end.
struct Written {
    wal: Vec<u8>,
    data: Vec<u8>,
    /// The data file's length with the batch.
    data_end: u64,
    last: u64,
    count: usize,
    started: Instant,
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A panic inside a syncer round must not leave `syncing` set: every later writer
    /// would wait for a syncer that no longer exists.
    #[test]
    fn a_panicking_round_releases_the_syncer_role() {
        let sync = OrderedMutex::new(Level::Sync, SyncState::default());
        let cv = Condvar::new();
        let r = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            let mut s = sync.lock();
            s.syncing = true;
            s.driver = true;
            let _guard = SyncerGuard::new(&sync, &cv);
            drop(s);
            panic!("injected panic in a syncer round");
        }));
        assert!(r.is_err());
        let s = sync.lock();
        assert!(!s.syncing && !s.driver);
        drop(s);
        // A normal round disarms it: the flags are the syncer's to clear.
        sync.lock().syncing = true;
        SyncerGuard::new(&sync, &cv).disarm();
        assert!(sync.lock().syncing);
    }
}
