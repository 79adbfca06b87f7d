//! The server's shared commit log (`docdb_core::shared_log`, `wal.shared_log`): where it
//! lives (`<data-dir>/shared-log/`), its drain into the databases' WALs — at start
//! before any database opens, and in the offline tools before they read one — and
//! opening it for the pool.

use std::path::PathBuf;

use docdb_core::shared_log::{self, DbDirs, DrainReport, SharedLog};
use docdb_core::FsyncMode;

use crate::catalog::Catalog;
use crate::config::ServerConfig;

/// `<data-dir>/shared-log`.
pub fn dir(cfg: &ServerConfig) -> PathBuf {
    cfg.data_dir.join("shared-log")
}

/// Writes every record of the shared log into its database's WAL and empties the log.
/// Only active databases of `catalog` receive records: those of dropped ones (moved to
/// `.dropped-<id>`, or recreated under the name with a new `DBID`) are skipped. The
/// caller holds the data directory's `LOCK`. A data directory without a shared log
/// (never had one, or `wal.shared_log = false` ever since) costs one directory listing.
pub fn drain(cfg: &ServerConfig, catalog: &Catalog) -> anyhow::Result<DrainReport> {
    let dbs: Vec<DbDirs> = catalog
        .list()
        .into_iter()
        .map(|e| {
            let dir = cfg.data_dir.join("dbs").join(&e.name);
            let wal_dir = match &cfg.wal_dir {
                Some(w) => w.join(&e.name),
                None => dir.join("wal"),
            };
            DbDirs { dir, wal_dir }
        })
        .collect();
    let storage = docdb_core::storage::default_storage();
    shared_log::drain(&*storage, &dir(cfg), &dbs).map_err(|e| {
        anyhow::anyhow!(
            "draining the shared log {} into the databases: {e}",
            dir(cfg).display()
        )
    })
}

/// The log the pool's databases commit through, when `wal.shared_log` is on and the
/// fsync mode is `always` or `group` (the other modes do not fsync per batch). The log
/// must have been drained.
pub fn open(cfg: &ServerConfig) -> anyhow::Result<Option<SharedLog>> {
    if !cfg.wal.shared_log || !matches!(cfg.wal.fsync.mode, FsyncMode::Always | FsyncMode::Group) {
        return Ok(None);
    }
    let log = SharedLog::open(
        docdb_core::storage::default_storage(),
        &dir(cfg),
        cfg.wal.shared_log_max_mb << 20,
    )
    .map_err(|e| anyhow::anyhow!("opening the shared log {}: {e}", dir(cfg).display()))?;
    Ok(Some(log))
}
