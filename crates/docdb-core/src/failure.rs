//! Databases whose write or fsync failed in this process (DECISIONS 38).
//!
//! After a failed fsync Linux may drop the dirty pages or mark them clean: the bytes a
//! later read returns come from memory, not from the disk, and a later fsync that
//! succeeds proves nothing about them. So a database that saw a write or fsync fail
//! never accepts writes again in this process, even after it is closed: reopening it
//! here is refused until the process restarts (a new process's recovery rewrites the
//! unsynced tail from the WAL instead of trusting it) or an operator calls [`reset`]
//! after checking the files (`docdb check`).

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::LazyLock;
use std::time::SystemTime;

use parking_lot::Mutex;

/// What failed, and when.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Failure {
    pub at: SystemTime,
    /// The operation and the error, e.g. "WAL fsync: Input/output error (os error 5)".
    pub what: String,
}

static FAILED: LazyLock<Mutex<HashMap<PathBuf, Failure>>> =
    LazyLock::new(|| Mutex::new(HashMap::new()));

/// The key a database directory is known by: its canonical path when it exists (two
/// spellings of one directory are one database), else the path as given.
pub(crate) fn key(dir: &Path) -> PathBuf {
    dir.canonicalize().unwrap_or_else(|_| dir.to_path_buf())
}

/// Records that `dir`'s write or fsync failed. The first failure is kept.
pub(crate) fn record(key: &Path, what: String) {
    FAILED.lock().entry(key.to_path_buf()).or_insert(Failure {
        at: SystemTime::now(),
        what,
    });
}

/// The failure recorded for the database in `dir` in this process, if any.
pub fn failed(dir: &Path) -> Option<Failure> {
    FAILED.lock().get(&key(dir)).cloned()
}

/// Forgets the failure of the database in `dir`, so it can be opened (and written)
/// again in this process. Call it only once the database is closed and its files have
/// been checked (`docdb check`, [`crate::verify_offline`]): opening it then rewrites
/// everything past its last checkpoint from the WAL. Returns whether a failure was
/// recorded.
pub fn reset(dir: &Path) -> bool {
    FAILED.lock().remove(&key(dir)).is_some()
}
