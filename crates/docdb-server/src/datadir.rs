//! The data directory's owner: `<data-dir>/LOCK`, an exclusive `flock` held for the
//! life of the server (or of an offline tool), with the holder's pid written in it.
//!
//! Two servers on one data directory would both hand out id 1 to different tenants and
//! overwrite each other's catalog; `check`/`dump`/`restore` beside a live server would
//! read half-written files or write under it. So whoever comes second refuses, naming
//! the pid that holds the lock. The kernel drops a `flock` when its holder dies, so a
//! crashed server never leaves a stale lock (the pid left in the file is only a hint).
//!
//! Taking the lock also makes the data directory, its `dbs/` and a separate WAL
//! directory private (0700), narrowing ones an older version left wider.

use std::fs::{File, TryLockError};
use std::io::{Read, Seek, Write};
use std::path::Path;

use docdb_core::fsutil::{private_dir, private_file};

use crate::config::ServerConfig;

/// The lock file's name inside the data directory.
pub const LOCK_FILE: &str = "LOCK";

/// An exclusive hold on a data directory; released when dropped.
#[derive(Debug)]
pub struct DataDirLock {
    _file: File,
}

fn make_private(dir: &Path) -> anyhow::Result<()> {
    let narrowed =
        private_dir(dir).map_err(|e| anyhow::anyhow!("creating {}: {e}", dir.display()))?;
    if narrowed {
        tracing::warn!(dir = %dir.display(), "the directory was readable by other users; its mode is now 0700");
    }
    Ok(())
}

impl DataDirLock {
    /// Creates (privately) the data directory and the WAL directory if missing, and
    /// takes the lock, or fails naming the process that holds it.
    pub fn acquire(cfg: &ServerConfig) -> anyhow::Result<DataDirLock> {
        Self::take(cfg, true)
    }

    /// Takes the lock of an existing data directory without changing any file (no
    /// pid written, no mode narrowed): for `docdb check`, which promises to change
    /// nothing. A server refused meanwhile names no pid.
    pub fn acquire_quietly(cfg: &ServerConfig) -> anyhow::Result<DataDirLock> {
        Self::take(cfg, false)
    }

    fn take(cfg: &ServerConfig, write: bool) -> anyhow::Result<DataDirLock> {
        let dir = &cfg.data_dir;
        if !write {
            let path = dir.join(LOCK_FILE);
            if !path.exists() {
                // Never served by this version: nothing to lock against but a tool.
                let file = File::open(dir)?;
                return lock(file, dir, &path).map(|file| DataDirLock { _file: file });
            }
            let file = File::open(&path)?;
            return lock(file, dir, &path).map(|file| DataDirLock { _file: file });
        }
        make_private(dir)?;
        let path = dir.join(LOCK_FILE);
        let file = private_file()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .open(&path)
            .map_err(|e| anyhow::anyhow!("opening {}: {e}", path.display()))?;
        let mut file = lock(file, dir, &path)?;
        // Ours now: say who holds it (a hint for the refusal above; not fsynced).
        file.set_len(0)?;
        file.rewind()?;
        writeln!(file, "{}", std::process::id())?;
        make_private(&dir.join("dbs"))?;
        if let Some(w) = &cfg.wal_dir {
            make_private(w)?;
        }
        Ok(DataDirLock { _file: file })
    }
}

/// The refusal when another process holds the data directory's lock: a typed error,
/// so `docdb check` can tell "a server is running" from "cannot read".
#[derive(Debug, thiserror::Error)]
#[error("data directory {dir} is in use by {who} (a running server or tool holds {path}); stop it first")]
pub struct DataDirBusy {
    pub dir: String,
    pub who: String,
    pub path: String,
}

/// Takes the exclusive flock of `file`, or fails naming the pid written in it.
fn lock(mut file: File, dir: &Path, path: &Path) -> anyhow::Result<File> {
    match file.try_lock() {
        Ok(()) => Ok(file),
        Err(TryLockError::WouldBlock) => {
            let mut pid = String::new();
            let _ = file.read_to_string(&mut pid);
            let pid = pid.trim();
            let who = if pid.is_empty() {
                "another process".to_owned()
            } else {
                format!("process {pid}")
            };
            Err(DataDirBusy {
                dir: dir.display().to_string(),
                who,
                path: path.display().to_string(),
            }
            .into())
        }
        Err(TryLockError::Error(e)) => anyhow::bail!("locking {}: {e}", path.display()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_second_holder_is_refused_with_the_pid() {
        let d = tempfile::tempdir().unwrap();
        let cfg = ServerConfig {
            data_dir: d.path().join("data"),
            ..ServerConfig::default()
        };
        let first = DataDirLock::acquire(&cfg).unwrap();
        let e = DataDirLock::acquire(&cfg).unwrap_err().to_string();
        assert!(
            e.contains(&format!("process {}", std::process::id())),
            "{e}"
        );
        drop(first);
        DataDirLock::acquire(&cfg).unwrap();
    }
}
