//! Running timed workers: one thread per worker, a common start (a gate), a shared
//! deadline, a [`Recorder`] per worker for latencies and outcomes, and a live progress
//! line fed by per-worker counters.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Condvar, Mutex};
use std::time::{Duration, Instant};

use anyhow::Context as _;
use hdrhistogram::Histogram;

use crate::progress::Progress;
use crate::target::{OpError, OpResult};
use crate::workload::Op;

/// How many validation messages a worker keeps for the report.
const KEEP_FAILURES: usize = 5;

/// A counter on its own cache line, so workers do not slow each other down.
#[repr(align(128))]
#[derive(Default)]
struct Padded(AtomicU64);

/// What one worker measured.
#[derive(Debug)]
pub struct WorkerOutput {
    /// Database this worker used (index within the run).
    pub db: usize,
    /// Latencies of successful operations, in nanoseconds, indexed by [`Op::index`].
    pub latency: [Histogram<u64>; 4],
    pub errors: BTreeMap<&'static str, u64>,
    pub validation_failures: u64,
    /// The first few validation failures, described.
    pub failures: Vec<String>,
}

/// Records one worker's operations. Only successful operations enter the latency
/// histograms and the throughput; failures are counted by kind.
pub struct Recorder {
    out: WorkerOutput,
    counter: Arc<[Padded]>,
    slot: usize,
    /// Operations this worker finished (what its counter slot shows).
    done: u64,
    deadline: Instant,
    last: Instant,
    abort: Arc<AtomicBool>,
}

impl Recorder {
    /// Times one operation.
    #[inline]
    pub fn time<T>(&mut self, op: Op, f: impl FnOnce() -> OpResult<T>) -> OpResult<T> {
        let t0 = Instant::now();
        let r = f();
        let t1 = Instant::now();
        self.last = t1;
        // Only this worker writes its slot: a plain store, no read-modify-write.
        self.done += 1;
        self.counter[self.slot]
            .0
            .store(self.done, Ordering::Relaxed);
        match &r {
            Ok(_) => {
                let ns = t1.duration_since(t0).as_nanos().clamp(1, u64::MAX as u128) as u64;
                let h = &mut self.out.latency[op.index()];
                // IMPORTANT: `record`, not `saturating_record`: only `record` grows an
                // auto-resizing histogram; `saturating_record` clamps to its current top.
                if h.record(ns).is_err() {
                    h.saturating_record(ns);
                }
            }
            Err(e) => self.error(e),
        }
        r
    }

    /// Counts a failed operation by its kind.
    pub fn error(&mut self, e: &OpError) {
        *self.out.errors.entry(e.kind()).or_insert(0) += 1;
    }

    /// Counts a result that differs from what the worker knows it must be.
    pub fn validation_failure(&mut self, describe: impl FnOnce() -> String) {
        self.out.validation_failures += 1;
        if self.out.failures.len() < KEEP_FAILURES {
            self.out.failures.push(describe());
        }
    }

    /// False once the deadline has passed (as of the last operation) or the run was
    /// aborted.
    #[inline]
    pub fn running(&self) -> bool {
        self.last < self.deadline && !self.abort.load(Ordering::Relaxed)
    }
}

/// The outcome of a timed phase.
#[derive(Debug)]
pub struct Timed {
    /// From the common start until the last worker stopped.
    pub elapsed: Duration,
    pub workers: Vec<WorkerOutput>,
}

/// A worker's body: runs operations through the recorder while [`Recorder::running`].
pub type WorkerFn<'a> = Box<dyn FnOnce(&mut Recorder) -> anyhow::Result<()> + Send + 'a>;

/// A worker: the index of the database it uses, and its body.
pub struct Worker<'a> {
    pub db: usize,
    pub run: WorkerFn<'a>,
}

/// The common start: workers wait here until every thread is spawned, then all get
/// the same deadline (or `None`: the run was cancelled before it began).
#[derive(Default)]
struct Gate {
    state: Mutex<Option<Option<Instant>>>,
    cv: Condvar,
}

impl Gate {
    fn open(&self, deadline: Option<Instant>) {
        let mut st = self.state.lock().unwrap_or_else(|p| p.into_inner());
        *st = Some(deadline);
        self.cv.notify_all();
    }

    fn wait(&self) -> Option<Instant> {
        let mut st = self.state.lock().unwrap_or_else(|p| p.into_inner());
        loop {
            if let Some(d) = *st {
                return d;
            }
            st = self.cv.wait(st).unwrap_or_else(|p| p.into_inner());
        }
    }
}

fn new_histogram() -> anyhow::Result<Histogram<u64>> {
    // Auto-resizing, 3 significant digits: exact enough for p99.9, small until needed.
    Histogram::new(3).context("creating a latency histogram")
}

/// Deadline of a phase that ends when its workers are done.
const UNTIL_DONE: Duration = Duration::from_secs(365 * 24 * 3600);

/// Runs `workers` on their own threads after a common start, for `duration` or, with
/// `None`, until every worker returns by itself.
pub fn run_timed(
    label: &str,
    duration: Option<Duration>,
    progress: &Progress,
    workers: Vec<Worker<'_>>,
) -> anyhow::Result<Timed> {
    let n = workers.len();
    anyhow::ensure!(n > 0, "{label}: no workers");
    let counter: Arc<[Padded]> = (0..n).map(|_| Padded::default()).collect();
    let abort = Arc::new(AtomicBool::new(false));
    let finished = AtomicBool::new(false);
    let mut recorders = Vec::with_capacity(n);
    for (slot, w) in workers.iter().enumerate() {
        let now = Instant::now();
        recorders.push(Recorder {
            out: WorkerOutput {
                db: w.db,
                latency: [
                    new_histogram()?,
                    new_histogram()?,
                    new_histogram()?,
                    new_histogram()?,
                ],
                errors: BTreeMap::new(),
                validation_failures: 0,
                failures: Vec::new(),
            },
            counter: counter.clone(),
            slot,
            done: 0,
            deadline: now,
            last: now,
            abort: abort.clone(),
        });
    }

    let gate = Gate::default();
    std::thread::scope(|s| {
        let mut handles = Vec::with_capacity(n);
        for (w, mut rec) in workers.into_iter().zip(recorders) {
            let (gate, abort) = (&gate, &abort);
            let spawned = std::thread::Builder::new()
                .name(format!("bench-{label}"))
                .spawn_scoped(s, move || {
                    let Some(deadline) = gate.wait() else {
                        return Err(anyhow::anyhow!("cancelled before the start"));
                    };
                    rec.deadline = deadline;
                    rec.last = Instant::now();
                    let r = (w.run)(&mut rec);
                    if r.is_err() {
                        abort.store(true, Ordering::Relaxed);
                    }
                    r.map(|()| rec.out)
                });
            match spawned {
                Ok(h) => handles.push(h),
                Err(e) => {
                    gate.open(None);
                    for h in handles {
                        let _ = h.join();
                    }
                    return Err(anyhow::Error::new(e).context("spawning a worker thread"));
                }
            }
        }
        let bar = match duration {
            Some(d) => progress.timed(label, d),
            None => progress.spinner(label),
        };
        let ticker = {
            let (counter, finished, bar) = (&counter, &finished, bar.clone());
            s.spawn(move || {
                let started = Instant::now();
                let (mut prev, mut prev_t) = (0u64, started);
                while !finished.load(Ordering::Relaxed) {
                    std::thread::sleep(Duration::from_millis(250));
                    let total: u64 = counter.iter().map(|c| c.0.load(Ordering::Relaxed)).sum();
                    let now = Instant::now();
                    let dt = now.duration_since(prev_t).as_secs_f64();
                    if dt >= 1.0 {
                        let rate = (total - prev) as f64 / dt;
                        bar.set_message(format!("{total} ops, {rate:.0} ops/s"));
                        (prev, prev_t) = (total, now);
                    }
                    bar.set_position(now.duration_since(started).as_millis() as u64);
                }
            })
        };
        let start = Instant::now();
        gate.open(Some(start + duration.unwrap_or(UNTIL_DONE)));
        let mut outputs = Vec::with_capacity(n);
        let mut first_err = None;
        for h in handles {
            match h.join() {
                Ok(Ok(out)) => outputs.push(out),
                Ok(Err(e)) => {
                    first_err.get_or_insert(e);
                }
                Err(_) => {
                    first_err.get_or_insert(anyhow::anyhow!("{label}: a worker panicked"));
                }
            }
        }
        let elapsed = start.elapsed();
        finished.store(true, Ordering::Relaxed);
        let _ = ticker.join();
        bar.finish_and_clear();
        match first_err {
            Some(e) => Err(e.context(format!("{label}: a worker failed"))),
            None => Ok(Timed {
                elapsed,
                workers: outputs,
            }),
        }
    })
}
