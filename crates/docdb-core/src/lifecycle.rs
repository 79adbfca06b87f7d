//! `Lifecycle`: whether a database is open, stopping, or refusing writes after a
//! failed write or fsync. Lock-free (atomics), so it may be read or changed under any
//! lock.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};

use crate::error::{Error, Result};

pub(crate) struct Lifecycle {
    /// Set by `Database::close`: every later call fails with `Closed`.
    closed: AtomicBool,
    /// Set when the handle is dropped or closed: background threads stop.
    stopping: AtomicBool,
    /// Set once a write or fsync failed: writes are refused for the rest of the
    /// process's life, also after a reopen (see [`crate::failure`]).
    poisoned: AtomicBool,
    /// This database's key in [`crate::failure`]'s registry.
    failure_key: PathBuf,
}

impl Lifecycle {
    pub(crate) fn new(dir: &Path) -> Lifecycle {
        Lifecycle {
            closed: AtomicBool::new(false),
            stopping: AtomicBool::new(false),
            poisoned: AtomicBool::new(false),
            failure_key: crate::failure::key(dir),
        }
    }

    /// `Closed` once the database was closed.
    pub(crate) fn check_open(&self) -> Result<()> {
        if self.closed.load(Ordering::Acquire) {
            return Err(Error::Closed);
        }
        Ok(())
    }

    /// `Closed` once closed, `ReadOnly` once a write or fsync failed.
    pub(crate) fn check_writable(&self) -> Result<()> {
        self.check_open()?;
        if self.poisoned.load(Ordering::Acquire) {
            return Err(Error::ReadOnly);
        }
        Ok(())
    }

    pub(crate) fn mark_closed(&self) {
        self.closed.store(true, Ordering::Release);
    }

    /// Tells background threads to stop.
    pub(crate) fn stop(&self) {
        self.stopping.store(true, Ordering::Release);
    }

    pub(crate) fn is_stopping(&self) -> bool {
        self.stopping.load(Ordering::Acquire)
    }

    pub(crate) fn is_poisoned(&self) -> bool {
        self.poisoned.load(Ordering::Acquire)
    }

    /// Records that a write or fsync failed (`what`): writes are refused from now on,
    /// and reopening the database in this process is refused too.
    pub(crate) fn poison(&self, what: &str) {
        crate::failure::record(&self.failure_key, what.to_owned());
        self.poisoned.store(true, Ordering::Release);
    }
}
