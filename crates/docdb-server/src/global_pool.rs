//! The threads that run server-wide commands (OpenDB, Stats, ListDBs, Metrics,
//! SchedulerStats): a fixed number, started once, whatever clients send.
//!
//! These commands may block (OpenDB recovers a database, ListDBs reads every
//! database's figures), so they stay off the I/O threads. Tokio's blocking pool would
//! bound them only loosely: a thread that has just finished a job is not yet idle when
//! the next job arrives, so bursts keep starting new threads (62 during 6,000
//! pipelined ListDBs on a loaded machine, with 4 allowed at once). Here the number of
//! threads is the number of slots, and a job is handed over only with a slot: a
//! connection that sends more waits for one, which holds up only its own reading.

use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::mpsc;
use std::sync::Arc;

use parking_lot::Mutex;
use tokio::sync::Semaphore;

type Job = Box<dyn FnOnce() + Send>;

/// A fixed set of threads and as many slots for jobs.
pub struct GlobalPool {
    slots: Arc<Semaphore>,
    jobs: Mutex<mpsc::Sender<Job>>,
}

/// The pool stopped taking jobs (the server is shutting down).
#[derive(Debug)]
pub struct Stopped;

impl GlobalPool {
    /// Starts `threads` threads (at least one).
    pub fn start(threads: usize) -> std::io::Result<Arc<GlobalPool>> {
        let threads = threads.max(1);
        let (tx, rx) = mpsc::channel::<Job>();
        let rx = Arc::new(Mutex::new(rx));
        for i in 0..threads {
            let rx = rx.clone();
            std::thread::Builder::new()
                .name(format!("docdb-global-{i}"))
                .spawn(move || loop {
                    // The lock is held only while waiting for the next job.
                    let job = rx.lock().recv();
                    let Ok(job) = job else { return }; // the pool was dropped
                                                       // A panic fails only that command (its ReplyTo answers
                                                       // `internal error` while unwinding); the thread goes on.
                    if catch_unwind(AssertUnwindSafe(job)).is_err() {
                        tracing::error!("panic in a server-wide command; answered internal error");
                    }
                })?;
        }
        Ok(Arc::new(GlobalPool {
            slots: Arc::new(Semaphore::new(threads)),
            jobs: Mutex::new(tx),
        }))
    }

    /// The number of threads and slots the server starts with: twice the cores,
    /// between 4 and 32.
    pub fn default_threads() -> usize {
        let cores = std::thread::available_parallelism().map_or(2, |n| n.get());
        (2 * cores).clamp(4, 32)
    }

    /// Waits for a free slot, then runs `job` on one of the pool's threads.
    pub async fn run(&self, job: impl FnOnce() + Send + 'static) -> Result<(), Stopped> {
        let slot = self
            .slots
            .clone()
            .acquire_owned()
            .await
            .map_err(|_| Stopped)?;
        let job: Job = Box::new(move || {
            job();
            drop(slot);
        });
        self.jobs.lock().send(job).map_err(|_| Stopped)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicUsize, Ordering};

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn jobs_run_on_the_fixed_threads_and_panics_do_not_shrink_the_pool() {
        let pool = GlobalPool::start(2).unwrap();
        let names = Arc::new(Mutex::new(std::collections::HashSet::new()));
        let done = Arc::new(AtomicUsize::new(0));
        for i in 0..200 {
            let names = names.clone();
            let done = done.clone();
            pool.run(move || {
                if i % 50 == 0 {
                    panic!("a job that panics");
                }
                let name = std::thread::current().name().map(str::to_owned);
                names.lock().insert(name);
                done.fetch_add(1, Ordering::SeqCst);
            })
            .await
            .unwrap();
        }
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
        while done.load(Ordering::SeqCst) < 196 && std::time::Instant::now() < deadline {
            tokio::time::sleep(std::time::Duration::from_millis(5)).await;
        }
        assert_eq!(done.load(Ordering::SeqCst), 196);
        let names = names.lock();
        assert!(names.len() <= 2, "{names:?}");
        assert!(names
            .iter()
            .all(|n| n.as_deref().is_some_and(|n| n.starts_with("docdb-global-"))));
    }
}
