//! Fault injection for tests: make the Nth WAL write or fsync fail, the way a full or
//! failing disk would. Production code passes `None` and pays one branch.

use std::io;
use std::sync::atomic::{AtomicI64, Ordering};

/// Counters that, when they reach zero, turn the next write or sync into an error.
#[derive(Debug)]
pub struct Faults {
    writes_left: AtomicI64,
    syncs_left: AtomicI64,
    /// Creations of a new WAL segment that fail with EMFILE, as when the process has
    /// no file descriptor left.
    creates_failing: AtomicI64,
}

impl Faults {
    /// Fail the WAL write after `writes` successful ones and the fsync after `syncs`
    /// successful ones; a negative count never fails.
    pub fn new(writes: i64, syncs: i64) -> Self {
        Faults {
            writes_left: AtomicI64::new(writes),
            syncs_left: AtomicI64::new(syncs),
            creates_failing: AtomicI64::new(0),
        }
    }

    /// Also make the next `n` WAL segment creations fail with EMFILE ("too many open
    /// files"); adds to any still pending.
    pub fn fail_segment_creates(&self, n: i64) {
        self.creates_failing.fetch_add(n, Ordering::Relaxed);
    }

    fn tick(counter: &AtomicI64, what: &str) -> io::Result<()> {
        if counter.load(Ordering::Relaxed) < 0 {
            return Ok(());
        }
        if counter.fetch_sub(1, Ordering::Relaxed) == 0 {
            return Err(io::Error::other(format!("injected {what} failure")));
        }
        Ok(())
    }

    pub(crate) fn on_write(f: &Option<std::sync::Arc<Faults>>) -> io::Result<()> {
        f.as_ref()
            .map_or(Ok(()), |f| Self::tick(&f.writes_left, "write"))
    }

    pub(crate) fn on_create(f: &Option<std::sync::Arc<Faults>>) -> io::Result<()> {
        let Some(f) = f else { return Ok(()) };
        let left = f.creates_failing.fetch_sub(1, Ordering::Relaxed);
        if left > 0 {
            return Err(io::Error::from_raw_os_error(libc::EMFILE));
        }
        f.creates_failing.fetch_add(1, Ordering::Relaxed);
        Ok(())
    }

    pub(crate) fn on_sync(f: &Option<std::sync::Arc<Faults>>) -> io::Result<()> {
        f.as_ref()
            .map_or(Ok(()), |f| Self::tick(&f.syncs_left, "fsync"))
    }
}
