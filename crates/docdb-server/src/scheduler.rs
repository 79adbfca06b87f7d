//! The scheduler: a bounded request queue per database and an elastic pool of worker
//! threads serving them (the original's ants pool, done right).
//!
//! - `enqueue` never blocks: a full queue answers `request queue is full` at once.
//! - A worker takes one database's queue *exclusively* and drains up to `max_batch`
//!   requests from it (ending at a Query: [`Task::ends_batch`]) as one batch, so the engine's group commit covers all their
//!   writes with one fsync, and requests of one database are staged in arrival order.
//!   The handler may return an [`AfterRelease`] step (waiting for that fsync and
//!   answering the writes): the worker runs it after handing the queue back, so the
//!   database's next requests are served meanwhile.
//! - Other databases are served by other workers meanwhile: a read is never stuck
//!   behind another database's fsync as long as a worker is free, and when none is,
//!   the pool grows up to `max_workers`. Ready databases wake workers one each but
//!   only a few at once (one per core): a worker that takes a database with more still
//!   ready wakes the next before it serves, and workers loop from batch to batch, so a
//!   burst does not wake a thread per database only for most to find nothing left. An
//!   idle worker parks on its own; the most recently idle is woken first (LIFO: warm
//!   caches, and the others stay idle), and workers above `workers` that stay idle for
//!   `worker_expiry` exit, so a pool grown by a burst shrinks back under a light load.
//! - Which ready queue a free worker takes is the policy: `fair` (least service so
//!   far, so a quiet database is served as soon as it has work however hot another
//!   one is), `deepest` (longest queue, the original) or `round_robin`.
//! - A panic while serving a batch is caught; its unanswered requests get `internal
//!   error` (see `ReplyTo`), it is logged and counted, and the worker lives on.

use std::cmp::Reverse;
use std::collections::{BinaryHeap, HashMap, VecDeque};
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use parking_lot::{Condvar, Mutex};
use serde::Serialize;

use crate::config::{Policy, SchedSection};
use crate::reply::Task;

/// Serves one batch of one database's requests. Must answer every task, directly or
/// in the step it returns.
pub type Handler = dyn Fn(u64, Vec<Task>) -> Option<AfterRelease> + Send + Sync;

/// The rest of a batch's work, run once its database's queue is free for the next
/// worker.
pub type AfterRelease = Box<dyn FnOnce() + Send>;

#[derive(Default)]
struct DbQueue {
    tasks: VecDeque<Task>,
    /// A worker is serving this database.
    busy: bool,
    /// In `Queues::ready`.
    ready: bool,
    /// Requests served so far, plus catch-up (the `fair` policy's virtual time).
    vtime: u64,
    depth_sum: u64,
    depth_samples: u64,
}

#[derive(Default)]
struct Queues {
    dbs: HashMap<u64, DbQueue>,
    /// Databases with queued work and no worker.
    ready: Ready,
    /// Virtual time of the last database picked (`fair`).
    vclock: u64,
    /// Threads alive.
    workers: usize,
    /// Threads waiting for work, the most recently idle last: the one woken next (its
    /// stack and caches are the warmest, and the ones below it expire when the pool
    /// has more workers than the load needs).
    idle: Vec<Arc<Idle>>,
    /// Workers woken (or started) to look for work that have not looked yet. Ready
    /// databases wake workers only up to [`Scheduler::looking_limit`] of these (plus the
    /// polling worker); the rest are taken by workers as they loop, and each worker
    /// that takes a database with more still ready tops this up again.
    waking: usize,
    queued: usize,
    stopping: bool,
}

/// An idle worker's entry in [`Queues::idle`].
struct Idle {
    thread: std::thread::Thread,
    /// Set, under the queue lock, by whoever takes the entry off the stack to wake it.
    woken: AtomicBool,
}

/// The databases with queued work and no worker, kept so that the policy's pick is
/// cheap with thousands of them: `fair` pops the least-served from a heap (a ready
/// database's virtual time does not change until it is picked), `round_robin` the
/// oldest from a queue; `deepest` scans the queue for the longest (queue lengths change
/// all the time; it is the original's policy, kept for comparison).
#[derive(Default)]
struct Ready {
    fifo: VecDeque<u64>,
    /// (virtual time, arrival number, database): ties go to the earlier arrival.
    by_vtime: BinaryHeap<Reverse<(u64, u64, u64)>>,
    arrivals: u64,
}

impl Ready {
    fn push(&mut self, policy: Policy, db: u64, vtime: u64) {
        match policy {
            Policy::Fair => {
                self.arrivals += 1;
                self.by_vtime.push(Reverse((vtime, self.arrivals, db)));
            }
            Policy::RoundRobin | Policy::Deepest => self.fifo.push_back(db),
        }
    }

    fn is_empty(&self) -> bool {
        self.fifo.is_empty() && self.by_vtime.is_empty()
    }

    fn len(&self) -> usize {
        self.fifo.len() + self.by_vtime.len()
    }

    fn pop(&mut self, policy: Policy, dbs: &HashMap<u64, DbQueue>) -> Option<u64> {
        match policy {
            Policy::Fair => self.by_vtime.pop().map(|Reverse((_, _, db))| db),
            Policy::RoundRobin => self.fifo.pop_front(),
            Policy::Deepest => {
                let i = (0..self.fifo.len())
                    .max_by_key(|&i| dbs.get(&self.fifo[i]).map_or(0, |d| d.tasks.len()))?;
                self.fifo.remove(i)
            }
        }
    }
}

/// How many workers may be woken to look for work at once: one per core, at least two.
/// One made the 3 × 10 mix 5 % slower (its three databases' fsyncs overlapped less);
/// two and four measured alike there and at 200 × 1 (DECISIONS 76).
fn looking_limit() -> usize {
    std::thread::available_parallelism().map_or(2, |n| n.get().max(2))
}

/// Whom to wake once the queue lock is released: idle workers taken off the stack,
/// and how many workers to start (already counted in `Queues::workers`).
#[derive(Default)]
struct Wake {
    woken: Vec<Arc<Idle>>,
    spawn: usize,
}

impl Wake {
    fn is_empty(&self) -> bool {
        self.woken.is_empty() && self.spawn == 0
    }
}

/// Why a request was not queued.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Rejected {
    QueueFull,
    Stopped,
}

/// The scheduler. Cheap to share (`Arc`).
pub struct Scheduler {
    cfg: SchedSection,
    /// `cfg.min_workers()`, resolved once.
    min_workers: usize,
    /// How many workers may be on their way to ready databases at once
    /// ([`looking_limit`]).
    looking_limit: usize,
    q: Mutex<Queues>,
    all_exited: Condvar,
    handler: Arc<Handler>,
    panics: AtomicU64,
    me: std::sync::Weak<Scheduler>,
    /// A worker is polling for work before it sleeps (at most one at a time).
    spinning: AtomicBool,
    /// Some database may be ready (set when one is queued; cleared by the pick that
    /// empties the ready set). Read without the lock by the spinning worker.
    ready_hint: AtomicBool,
}

/// Pool figures as SchedulerStats reports them.
#[derive(Debug, Clone, Serialize)]
pub struct WorkerPoolStats {
    pub running_workers: u64,
    pub waiting_tasks: u64,
    pub free_workers: u64,
    pub pool_capacity: u64,
}

/// A snapshot of the scheduler.
#[derive(Debug, Clone, Serialize)]
pub struct SchedStats {
    pub queue_depths: HashMap<u64, u64>,
    pub avg_queue_depth: HashMap<u64, f64>,
    pub worker_count: u64,
    pub policy: &'static str,
    pub panics: u64,
    pub worker_pool: WorkerPoolStats,
}

impl Scheduler {
    pub fn new(cfg: SchedSection, handler: Arc<Handler>) -> Arc<Scheduler> {
        let s = Arc::new_cyclic(|me| Scheduler {
            min_workers: cfg.min_workers(),
            looking_limit: looking_limit(),
            cfg,
            q: Mutex::new(Queues::default()),
            all_exited: Condvar::new(),
            handler,
            panics: AtomicU64::new(0),
            me: me.clone(),
            spinning: AtomicBool::new(false),
            ready_hint: AtomicBool::new(false),
        });
        let start = if s.cfg.prealloc {
            s.cfg.max_workers
        } else {
            s.min_workers
        };
        for _ in 0..start {
            s.q.lock().workers += 1;
            s.spawn_worker(false);
        }
        s
    }

    /// Starts a worker counted in `q.workers`; `looking`: also counted in `q.waking`.
    fn spawn_worker(&self, looking: bool) {
        let Some(me) = self.me.upgrade() else { return };
        let r = std::thread::Builder::new()
            .name("docdb-worker".into())
            .spawn(move || me.worker(looking));
        if let Err(e) = r {
            tracing::error!(error = %e, "could not start a worker thread");
            let mut q = self.q.lock();
            q.workers -= 1;
            if looking {
                q.waking -= 1;
            }
            if q.workers == 0 {
                self.all_exited.notify_all();
            }
        }
    }

    /// Queues `task` for database `db`, or hands it back.
    pub fn enqueue(&self, db: u64, task: Task) -> Result<(), (Rejected, Task)> {
        let mut q = self.q.lock();
        let wake = self.queue(&mut q, db, task)?;
        drop(q);
        self.wake(wake);
        Ok(())
    }

    /// [`Scheduler::enqueue`] under the queue lock; returns whom to wake once it is
    /// released.
    fn queue(&self, q: &mut Queues, db: u64, task: Task) -> Result<Wake, (Rejected, Task)> {
        if q.stopping {
            return Err((Rejected::Stopped, task));
        }
        let dq = q.dbs.entry(db).or_default();
        if dq.tasks.len() >= self.cfg.queue_depth {
            return Err((Rejected::QueueFull, task));
        }
        dq.tasks.push_back(task);
        dq.depth_sum += dq.tasks.len() as u64;
        dq.depth_samples += 1;
        q.queued += 1;
        if dq.busy || dq.ready {
            // The worker serving this database (or the ready entry) takes it.
            return Ok(Wake::default());
        }
        dq.ready = true;
        // A database that was idle does not bank service it never asked for.
        dq.vtime = dq.vtime.max(q.vclock);
        q.ready.push(self.cfg.policy, db, dq.vtime);
        self.ready_hint.store(true, Ordering::Release);
        Ok(self.top_up(q))
    }

    /// Makes sure enough workers are on their way to the ready databases: one per
    /// ready database, but at most [`Scheduler::looking_limit`] looking at once (the
    /// polling worker counts as one). Returns the idle workers to wake (most recently
    /// idle first) and how many to start (counted in `q.workers` here, started by
    /// [`Scheduler::wake`] once the lock is released).
    ///
    /// Why a limit: a burst of N ready databases used to wake N workers, most of which
    /// found every database already taken by a worker that looped on to the next, and
    /// went back to sleep — two context switches each for nothing, and a pool that kept
    /// growing and expiring. Why it cannot strand a database: a worker that takes one
    /// with more still ready calls this again, before it serves its batch, so while
    /// any database is ready some worker is looking, however long the batches block.
    fn top_up(&self, q: &mut Queues) -> Wake {
        let looking = q.waking + usize::from(self.spinning.load(Ordering::Acquire));
        let n = q
            .ready
            .len()
            .min(self.looking_limit)
            .saturating_sub(looking);
        if n == 0 {
            return Wake::default();
        }
        let woken = Self::take_idle(q, n);
        let spawn = (n - woken.len()).min(self.cfg.max_workers.saturating_sub(q.workers));
        q.workers += spawn;
        q.waking += spawn;
        Wake { woken, spawn }
    }

    /// Takes up to `n` idle workers off the stack, the most recently idle first, and
    /// marks them woken (each counts in `q.waking` until it looks for work).
    fn take_idle(q: &mut Queues, n: usize) -> Vec<Arc<Idle>> {
        let from = q.idle.len().saturating_sub(n);
        let woken: Vec<_> = q.idle.drain(from..).rev().collect();
        for w in &woken {
            w.woken.store(true, Ordering::Release);
        }
        q.waking += woken.len();
        woken
    }

    /// Carries out a [`Wake`], without the queue lock.
    fn wake(&self, Wake { woken, spawn }: Wake) {
        for w in woken {
            w.thread.unpark();
        }
        for _ in 0..spawn {
            self.spawn_worker(true);
        }
    }

    /// Picks the next database to serve per the policy and takes its batch.
    fn pick(&self, q: &mut Queues) -> Option<(u64, Vec<Task>)> {
        let Queues { ready, dbs, .. } = q;
        let db = ready.pop(self.cfg.policy, dbs)?;
        if ready.is_empty() {
            self.ready_hint.store(false, Ordering::Release);
        }
        let dq = q.dbs.get_mut(&db)?;
        dq.ready = false;
        dq.busy = true;
        let mut n = dq.tasks.len().min(self.cfg.max_batch);
        if let Some(i) = dq.tasks.iter().take(n).position(Task::ends_batch) {
            n = i + 1;
        }
        let tasks: Vec<Task> = dq.tasks.drain(..n).collect();
        dq.vtime += n as u64;
        let vt = dq.vtime;
        q.vclock = q.vclock.max(vt.saturating_sub(n as u64));
        q.queued -= n;
        Some((db, tasks))
    }

    /// A worker's life; `looking`: it was started to look for work (counted in
    /// `q.waking`).
    fn worker(self: Arc<Self>, mut looking: bool) {
        let me = Arc::new(Idle {
            thread: std::thread::current(),
            woken: AtomicBool::new(false),
        });
        let mut q = self.q.lock();
        let mut spun = false;
        loop {
            if std::mem::take(&mut looking) {
                q.waking -= 1;
            }
            if let Some((db, tasks)) = self.pick(&mut q) {
                // More ready than workers looking: send the next one before serving
                // this batch, which may block.
                let wake = if q.ready.is_empty() {
                    Wake::default()
                } else {
                    self.top_up(&mut q)
                };
                spun = false;
                drop(q);
                self.wake(wake);
                let h = self.handler.clone();
                // Unanswered tasks of a panicking step were dropped during unwinding
                // and answered `internal error` by their ReplyTo guards.
                let after = catch_unwind(AssertUnwindSafe(|| h(db, tasks))).unwrap_or_else(|_| {
                    self.panicked(db);
                    None
                });
                q = self.q.lock();
                if Self::hand_back(&mut q, self.cfg.policy, db) {
                    self.ready_hint.store(true, Ordering::Release);
                    let wake = self.top_up(&mut q);
                    if !wake.is_empty() {
                        drop(q);
                        self.wake(wake);
                        q = self.q.lock();
                    }
                }
                if let Some(after) = after {
                    drop(q);
                    if catch_unwind(AssertUnwindSafe(after)).is_err() {
                        self.panicked(db);
                    }
                    q = self.q.lock();
                }
                continue;
            }
            if q.stopping && q.queued == 0 {
                break;
            }
            // Before sleeping, one worker at a time polls for a while: work that arrives
            // meanwhile costs no futex wake-up and no context switch (DECISIONS 24).
            // It polls once per idle spell (`spun`), and re-picks under the lock.
            if !spun
                && !self.cfg.spin.is_zero()
                && !q.stopping
                && !self.spinning.swap(true, Ordering::AcqRel)
            {
                drop(q);
                let until = Instant::now() + self.cfg.spin;
                while !self.ready_hint.load(Ordering::Acquire) && Instant::now() < until {
                    std::thread::yield_now();
                }
                self.spinning.store(false, Ordering::Release);
                q = self.q.lock();
                spun = true;
                continue;
            }
            spun = false;
            me.woken.store(false, Ordering::Relaxed);
            q.idle.push(me.clone());
            drop(q);
            let deadline = Instant::now() + self.cfg.worker_expiry;
            loop {
                if me.woken.load(Ordering::Acquire) {
                    break;
                }
                let now = Instant::now();
                if now >= deadline {
                    break;
                }
                std::thread::park_timeout(deadline - now);
            }
            q = self.q.lock();
            // Under the lock: an entry taken off the stack was woken, even if this
            // worker's wait timed out first.
            let timed_out = !me.woken.load(Ordering::Acquire);
            if timed_out {
                q.idle.retain(|i| !Arc::ptr_eq(i, &me));
            } else {
                looking = true;
            }
            if timed_out && q.ready.is_empty() && q.workers > self.min_workers && !q.stopping {
                break;
            }
        }
        q.workers -= 1;
        if q.workers == 0 {
            self.all_exited.notify_all();
        }
    }

    /// Ends a batch of `db`: it is free again, and ready if requests came meanwhile
    /// (returns true: a worker should be woken).
    fn hand_back(q: &mut Queues, policy: Policy, db: u64) -> bool {
        let Some(dq) = q.dbs.get_mut(&db) else {
            return false;
        };
        dq.busy = false;
        let again = !dq.tasks.is_empty();
        if again {
            dq.ready = true;
            let vtime = dq.vtime;
            q.ready.push(policy, db, vtime);
        } else if dq.depth_samples > 1_000_000 {
            dq.depth_sum /= 2;
            dq.depth_samples /= 2;
        }
        again
    }

    fn panicked(&self, db: u64) {
        self.panics.fetch_add(1, Ordering::Relaxed);
        tracing::error!(db, "panic while serving a request; answered internal error");
    }

    /// Stops taking requests, serves everything queued, and waits for the workers to
    /// exit (at most `timeout`). Returns false on timeout.
    pub fn shutdown(&self, timeout: Duration) -> bool {
        let mut q = self.q.lock();
        q.stopping = true;
        let all = q.idle.len();
        let woken = Self::take_idle(&mut q, all);
        drop(q);
        self.wake(Wake { woken, spawn: 0 });
        q = self.q.lock();
        // Queued work needs a worker even if all expired.
        if q.queued > 0 && q.workers == 0 {
            q.workers += 1;
            drop(q);
            self.spawn_worker(false);
            q = self.q.lock();
        }
        let deadline = Instant::now() + timeout;
        while q.workers > 0 {
            if self.all_exited.wait_until(&mut q, deadline).timed_out() {
                return false;
            }
        }
        true
    }

    /// Whether database `db` has requests queued or a worker serving it.
    pub fn has_work(&self, db: u64) -> bool {
        self.q
            .lock()
            .dbs
            .get(&db)
            .is_some_and(|d| d.busy || !d.tasks.is_empty())
    }

    pub fn policy(&self) -> Policy {
        self.cfg.policy
    }

    pub fn stats(&self) -> SchedStats {
        let q = self.q.lock();
        let busy = q.dbs.values().filter(|d| d.busy).count() as u64;
        SchedStats {
            queue_depths: q
                .dbs
                .iter()
                .map(|(&id, d)| (id, d.tasks.len() as u64))
                .collect(),
            avg_queue_depth: q
                .dbs
                .iter()
                .map(|(&id, d)| {
                    let avg = if d.depth_samples == 0 {
                        0.0
                    } else {
                        d.depth_sum as f64 / d.depth_samples as f64
                    };
                    (id, avg)
                })
                .collect(),
            worker_count: q.workers as u64,
            policy: self.cfg.policy.name(),
            panics: self.panics.load(Ordering::Relaxed),
            worker_pool: WorkerPoolStats {
                running_workers: busy,
                waiting_tasks: q.queued as u64,
                free_workers: q.idle.len() as u64,
                pool_capacity: self.cfg.max_workers as u64,
            },
        }
    }

    /// Counts a panic that a handler caught itself (around one request).
    pub fn record_panic(&self) {
        self.panics.fetch_add(1, Ordering::Relaxed);
    }

    pub fn panics(&self) -> u64 {
        self.panics.load(Ordering::Relaxed)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::reply::ReplyTo;
    use docdb_protocol::{Request, Response};
    use tokio::sync::mpsc;

    /// Polls `done` every 5 ms; fails the test with `what` after 10 s.
    fn eventually(what: &str, mut done: impl FnMut() -> bool) {
        let deadline = Instant::now() + Duration::from_secs(10);
        while !done() {
            assert!(Instant::now() < deadline, "{what}");
            std::thread::sleep(Duration::from_millis(5));
        }
    }

    fn cfg(policy: Policy) -> SchedSection {
        SchedSection {
            queue_depth: 4,
            workers: 1,
            max_workers: 2,
            worker_expiry: Duration::from_millis(50),
            prealloc: false,
            policy,
            max_batch: 8,
            spin: Duration::from_micros(200),
        }
    }

    fn task(id: u64, tx: &mpsc::UnboundedSender<Response>) -> Task {
        Task::new(
            Request {
                request_id: id,
                ..Request::default()
            },
            ReplyTo::new(Arc::new(tx.clone()), id),
        )
    }

    /// Serves database 0's one request with a single worker that blocks in it until
    /// `queued` has been enqueued ((database, requests), in that arrival order), then
    /// lets the worker go: returns the batches it served after, in order, as
    /// (database, batch size). One worker, so the order is the policy's alone.
    fn serve_order(policy: Policy, max_batch: usize, queued: &[(u64, u64)]) -> Vec<(u64, usize)> {
        let gate = Arc::new(Mutex::new(()));
        let log = Arc::new(Mutex::new(Vec::new()));
        let (g2, l2) = (gate.clone(), log.clone());
        let handler: Arc<Handler> = Arc::new(move |db, tasks: Vec<Task>| {
            l2.lock().push((db, tasks.len()));
            let _g = g2.lock();
            for t in tasks {
                t.reply.ok(Vec::new());
            }
            None
        });
        let s = Scheduler::new(
            SchedSection {
                queue_depth: 10,
                workers: 1,
                max_workers: 1,
                max_batch,
                ..cfg(policy)
            },
            handler,
        );
        let (tx, mut rx) = mpsc::unbounded_channel();
        let hold = gate.lock();
        s.enqueue(0, task(0, &tx)).map_err(|e| e.0).unwrap();
        eventually("the worker never took the first request", || {
            log.lock().len() == 1
        });
        let mut id = 1;
        for &(db, n) in queued {
            for _ in 0..n {
                s.enqueue(db, task(id, &tx)).map_err(|e| e.0).unwrap();
                id += 1;
            }
        }
        assert_eq!(s.stats().worker_count, 1, "one worker serves them all");
        drop(hold);
        for _ in 0..id {
            assert_eq!(rx.blocking_recv().unwrap().status, 0);
        }
        assert!(s.shutdown(Duration::from_secs(5)));
        let mut order = log.lock().clone();
        assert_eq!(order.remove(0), (0, 1));
        order
    }

    #[test]
    fn deepest_serves_the_longest_queue_first() {
        // Arrival order 1, 2, 3; depths 1, 3, 2. Each batch takes a whole queue.
        let queued = [(1, 1), (2, 3), (3, 2)];
        assert_eq!(
            serve_order(Policy::Deepest, 8, &queued),
            vec![(2, 3), (3, 2), (1, 1)]
        );
        // One request per batch: every pick is a longest queue at that moment.
        let queued = [(1, 1), (2, 5), (3, 3)];
        let order = serve_order(Policy::Deepest, 1, &queued);
        let mut left: HashMap<u64, usize> = queued.iter().map(|&(d, n)| (d, n as usize)).collect();
        for (i, &(db, n)) in order.iter().enumerate() {
            assert_eq!(n, 1);
            let deepest = *left.values().max().unwrap();
            assert_eq!(
                left[&db], deepest,
                "pick {i} took database {db} with {left:?} queued: {order:?}"
            );
            *left.get_mut(&db).unwrap() -= 1;
        }
        assert!(left.values().all(|&n| n == 0), "{left:?}");
        // The deep queue is served alone until it is no deeper than the next.
        assert_eq!(order[..2], [(2, 1), (2, 1)], "{order:?}");
    }

    #[test]
    fn round_robin_serves_ready_databases_in_turn_whatever_their_depth() {
        // Whole queues: arrival order, not depth.
        let queued = [(1, 1), (2, 3), (3, 2)];
        assert_eq!(
            serve_order(Policy::RoundRobin, 8, &queued),
            vec![(1, 1), (2, 3), (3, 2)]
        );
        // One request per batch: a database with more to do goes to the back of the
        // line, behind every database that was already waiting.
        let order: Vec<u64> = serve_order(Policy::RoundRobin, 1, &queued)
            .into_iter()
            .map(|(db, n)| {
                assert_eq!(n, 1);
                db
            })
            .collect();
        assert_eq!(order, vec![1, 2, 3, 2, 3, 2]);
    }

    #[test]
    fn full_queue_rejects_at_once_and_panics_are_answered() {
        let gate = Arc::new(Mutex::new(()));
        let g2 = gate.clone();
        let handler: Arc<Handler> = Arc::new(move |_db, tasks: Vec<Task>| {
            let _g = g2.lock();
            for t in tasks {
                if t.req.request_id == 666 {
                    panic!("injected");
                }
                t.reply.ok(Vec::new());
            }
            None
        });
        let s = Scheduler::new(cfg(Policy::Fair), handler);
        let (tx, mut rx) = mpsc::unbounded_channel();
        let hold = gate.lock();
        // The first task is taken by a worker that then blocks on the gate.
        s.enqueue(1, task(1, &tx)).map_err(|e| e.0).unwrap();
        eventually("no worker took the first task", || {
            s.stats().queue_depths.get(&1) == Some(&0)
        });
        for i in 2..6 {
            s.enqueue(1, task(i, &tx)).map_err(|e| e.0).unwrap();
        }
        let (why, rejected) = s.enqueue(1, task(9, &tx)).err().unwrap();
        assert_eq!(why, Rejected::QueueFull);
        rejected.reply.error("request queue is full");
        drop(hold);
        let mut got: Vec<(u64, u8)> = (0..6)
            .map(|_| {
                let r = rx.blocking_recv().unwrap();
                (r.request_id, r.status)
            })
            .collect();
        got.sort();
        assert_eq!(got, vec![(1, 0), (2, 0), (3, 0), (4, 0), (5, 0), (9, 1)]);
        s.enqueue(2, task(666, &tx)).map_err(|e| e.0).unwrap();
        let r = rx.blocking_recv().unwrap();
        assert_eq!((r.request_id, r.status), (666, 1));
        assert_eq!(r.data, b"internal error");
        s.enqueue(2, task(7, &tx)).map_err(|e| e.0).unwrap();
        assert_eq!(
            rx.blocking_recv().unwrap().request_id,
            7,
            "the pool lives on"
        );
        assert_eq!(s.panics(), 1);
        assert!(s.shutdown(Duration::from_secs(5)));
        assert_eq!(
            s.enqueue(1, task(8, &tx)).err().map(|e| e.0),
            Some(Rejected::Stopped)
        );
    }

    #[test]
    fn idle_workers_above_the_minimum_expire() {
        let gate = Arc::new(Mutex::new(()));
        let g2 = gate.clone();
        let handler: Arc<Handler> = Arc::new(move |_db, tasks: Vec<Task>| {
            let _g = g2.lock();
            for t in tasks {
                t.reply.ok(Vec::new());
            }
            None
        });
        let s = Scheduler::new(cfg(Policy::Deepest), handler);
        let (tx, mut rx) = mpsc::unbounded_channel();
        let hold = gate.lock();
        s.enqueue(0, task(0, &tx)).map_err(|e| e.0).unwrap();
        // Once the only worker is busy, more work makes the pool grow.
        eventually("the worker never took the task", || {
            s.stats().worker_pool.free_workers == 0
        });
        s.enqueue(1, task(1, &tx)).map_err(|e| e.0).unwrap();
        assert_eq!(s.stats().worker_count, 2);
        drop(hold);
        rx.blocking_recv().unwrap();
        rx.blocking_recv().unwrap();
        // The extra worker expires (worker_expiry 50 ms); the minimum stays.
        eventually("the extra worker never expired", || {
            s.stats().worker_count == 1
        });
        assert!(s.shutdown(Duration::from_secs(5)));
    }

    /// A pool grown by a burst shrinks back under a light steady load: the most
    /// recently idle worker is woken first, so the others stay idle and expire. (Woken
    /// oldest first, as a condition variable does, every worker would be woken within
    /// its expiry and the pool would keep its peak size.)
    #[test]
    fn a_pool_grown_by_a_burst_shrinks_under_a_light_steady_load() {
        let gate = Arc::new(Mutex::new(()));
        let g2 = gate.clone();
        let served_by = Arc::new(Mutex::new(std::collections::HashSet::new()));
        let by = served_by.clone();
        let handler: Arc<Handler> = Arc::new(move |_db, tasks: Vec<Task>| {
            let _g = g2.lock();
            by.lock().insert(std::thread::current().id());
            for t in tasks {
                t.reply.ok(Vec::new());
            }
            None
        });
        let cfg = SchedSection {
            max_workers: 8,
            worker_expiry: Duration::from_millis(300),
            spin: Duration::ZERO,
            ..cfg(Policy::Fair)
        };
        let s = Scheduler::new(cfg, handler);
        let (tx, mut rx) = mpsc::unbounded_channel();
        // A burst: eight databases at once while the handler is held, eight workers.
        let hold = gate.lock();
        for db in 0..8 {
            s.enqueue(db, task(db, &tx)).map_err(|e| e.0).unwrap();
        }
        eventually("the pool never grew to 8", || s.stats().worker_count == 8);
        drop(hold);
        for _ in 0..8 {
            rx.blocking_recv().unwrap();
        }
        // Then one request at a time, every 20 ms, for well past the expiry.
        served_by.lock().clear();
        let until = Instant::now() + Duration::from_millis(1200);
        let mut n = 0u64;
        while Instant::now() < until {
            s.enqueue(n % 8, task(n, &tx)).map_err(|e| e.0).unwrap();
            rx.blocking_recv().unwrap();
            n += 1;
            std::thread::sleep(Duration::from_millis(20));
        }
        let workers = s.stats().worker_count;
        let distinct = served_by.lock().len();
        assert!(
            workers <= 2,
            "{workers} workers left after {n} requests one at a time ({distinct} served them)"
        );
        assert!(s.shutdown(Duration::from_secs(5)));
    }

    /// Voluntary context switches (the thread slept) of this process's worker
    /// threads so far, from `/proc/self/task`.
    fn worker_sleeps() -> u64 {
        let mut n = 0;
        for t in std::fs::read_dir("/proc/self/task").unwrap().flatten() {
            let p = t.path();
            let comm = std::fs::read_to_string(p.join("comm")).unwrap_or_default();
            if comm.trim() != "docdb-worker" {
                continue;
            }
            let status = std::fs::read_to_string(p.join("status")).unwrap_or_default();
            n += status
                .lines()
                .find_map(|l| l.strip_prefix("voluntary_ctxt_switches:"))
                .map_or(0, |v| v.trim().parse::<u64>().unwrap());
        }
        n
    }

    /// A burst of ready databases whose batches do not block is served by a few
    /// workers looping from one to the next, not by a worker woken per database that
    /// mostly finds its database already taken and goes back to sleep. Counted as the
    /// workers' sleeps (voluntary context switches): waking one per database, as
    /// before, they slept about once per database.
    #[test]
    fn a_burst_of_quick_batches_does_not_wake_a_worker_per_database() {
        const BURST: u64 = 512;
        let gate = Arc::new(Mutex::new(()));
        let g2 = gate.clone();
        let handler: Arc<Handler> = Arc::new(move |db, tasks: Vec<Task>| {
            if db == 0 {
                let _g = g2.lock();
            }
            for t in tasks {
                t.reply.ok(Vec::new());
            }
            None
        });
        let cfg = SchedSection {
            max_workers: 256,
            prealloc: true,
            worker_expiry: Duration::from_secs(60),
            spin: Duration::ZERO,
            ..cfg(Policy::Fair)
        };
        let s = Scheduler::new(cfg, handler);
        let (tx, mut rx) = mpsc::unbounded_channel();
        eventually("the pool never went idle", || {
            s.stats().worker_pool.free_workers == 256
        });
        // One worker is held by database 0; then the burst, one database at a time.
        let hold = gate.lock();
        s.enqueue(0, task(0, &tx)).map_err(|e| e.0).unwrap();
        eventually("no worker took the first request", || {
            s.stats().worker_pool.running_workers == 1
        });
        // The burst arrives at once, as the requests of many clients answered by one
        // shared-log round do: queued under one hold of the lock, woken after.
        let before = worker_sleeps();
        let mut q = s.q.lock();
        let mut wake = Vec::new();
        for db in 1..=BURST {
            wake.push(s.queue(&mut q, db, task(db, &tx)).map_err(|e| e.0).unwrap());
        }
        drop(q);
        for w in wake {
            s.wake(w);
        }
        for _ in 1..=BURST {
            assert_eq!(rx.blocking_recv().unwrap().status, 0);
        }
        eventually("the workers never went back to sleep", || {
            s.stats().worker_pool.free_workers == 255
        });
        let sleeps = worker_sleeps() - before;
        assert!(
            sleeps < 128,
            "the workers slept {sleeps} times serving {BURST} quick batches"
        );
        drop(hold);
        rx.blocking_recv().unwrap();
        assert!(s.shutdown(Duration::from_secs(5)));
    }

    #[test]
    fn the_step_after_a_batch_runs_once_the_database_is_free_for_the_next() {
        // The first request's step blocks (as a group commit would); the database's
        // next request is served meanwhile by another worker.
        let gate = Arc::new(Mutex::new(()));
        let g2 = gate.clone();
        let handler: Arc<Handler> = Arc::new(move |_db, tasks: Vec<Task>| {
            let mut steps = Vec::new();
            for t in tasks {
                if t.req.request_id == 1 {
                    let g = g2.clone();
                    steps.push(t);
                    return Some(Box::new(move || {
                        let _g = g.lock();
                        for t in steps {
                            t.reply.ok(Vec::new());
                        }
                    }) as AfterRelease);
                }
                t.reply.ok(Vec::new());
            }
            None
        });
        let s = Scheduler::new(cfg(Policy::Fair), handler);
        let (tx, mut rx) = mpsc::unbounded_channel();
        let hold = gate.lock();
        s.enqueue(7, task(1, &tx)).map_err(|e| e.0).unwrap();
        // Wait until the first request's step holds a worker.
        eventually("the first request was never taken", || {
            s.stats().worker_pool.running_workers == 0 && s.stats().queue_depths[&7] == 0
        });
        s.enqueue(7, task(2, &tx)).map_err(|e| e.0).unwrap();
        let r = rx.blocking_recv().unwrap();
        assert_eq!(r.request_id, 2, "served while the first one's step waits");
        drop(hold);
        assert_eq!(rx.blocking_recv().unwrap().request_id, 1);
        assert!(s.shutdown(Duration::from_secs(5)));
    }
}
