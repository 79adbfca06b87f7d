//! Offline operator tools: `docdb check`, `docdb dump`, `docdb restore`. They work on a
//! data directory whose server is stopped (each database's lock says so).

pub mod check;
pub mod dump;
pub mod restore;

use std::path::PathBuf;

use crate::catalog::{Catalog, Entry};
use crate::config::ServerConfig;

/// Where one database's files are.
pub(crate) fn db_dirs(cfg: &ServerConfig, e: &Entry) -> (PathBuf, Option<PathBuf>) {
    (
        cfg.data_dir.join("dbs").join(&e.name),
        cfg.wal_dir.as_ref().map(|w| w.join(&e.name)),
    )
}

/// The catalog of an existing data directory (never creates one).
pub(crate) fn existing_catalog(cfg: &ServerConfig) -> anyhow::Result<Catalog> {
    if !cfg.data_dir.join("catalog.json").exists() {
        anyhow::bail!(
            "{} has no catalog.json: not a DocDB data directory",
            cfg.data_dir.display()
        );
    }
    Catalog::open(&cfg.data_dir)
}
