//! Offline operator tools: `docdb check`, `docdb dump`, `docdb restore`. They work on a
//! data directory whose server is stopped: each takes `<data-dir>/LOCK` for its run (so a
//! live server makes it refuse, and a server cannot start under it).

pub mod check;
pub mod dump;
pub mod restore;

use std::path::PathBuf;

use crate::catalog::{Catalog, Entry};
use crate::config::ServerConfig;
use crate::datadir::DataDirLock;

/// Where one database's files are.
pub(crate) fn db_dirs(cfg: &ServerConfig, e: &Entry) -> (PathBuf, Option<PathBuf>) {
    (
        cfg.data_dir.join("dbs").join(&e.name),
        cfg.wal_dir.as_ref().map(|w| w.join(&e.name)),
    )
}

/// The catalog of an existing data directory (never creates one), with the data
/// directory's lock, held while the tool runs.
pub(crate) fn existing_catalog(cfg: &ServerConfig) -> anyhow::Result<(Catalog, DataDirLock)> {
    existing(cfg, true)
}

/// As [`existing_catalog`], changing no file but the shared log's drain (for `check`).
pub(crate) fn existing_catalog_read_only(
    cfg: &ServerConfig,
) -> anyhow::Result<(Catalog, DataDirLock)> {
    existing(cfg, false)
}

fn existing(cfg: &ServerConfig, write: bool) -> anyhow::Result<(Catalog, DataDirLock)> {
    let d = &cfg.data_dir;
    if !d.join("catalog.json").exists() && !d.join("catalog.log").exists() {
        anyhow::bail!(
            "{} has no catalog: not a DocDB data directory",
            cfg.data_dir.display()
        );
    }
    let (catalog, lock) = if write {
        let lock = DataDirLock::acquire(cfg)?;
        (Catalog::open(&cfg.data_dir)?, lock)
    } else {
        let lock = DataDirLock::acquire_quietly(cfg)?;
        (Catalog::open_read_only(&cfg.data_dir)?, lock)
    };
    // Holding the lock, no server runs: writes only the shared log made durable go
    // into their databases' WALs before the tool reads them (`check` too: a server's
    // start would write the same bytes).
    crate::shared_log::drain(cfg, &catalog)?;
    Ok((catalog, lock))
}
