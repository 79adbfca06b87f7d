//! `docdb check`: verify every checksum of every database (WAL records, data-file
//! record headers and payloads, checkpoint) without changing a byte. Prints a report;
//! the caller exits non-zero when anything is corrupt.

use std::io::Write;

use crate::catalog::DbStatus;
use crate::config::ServerConfig;

use super::{db_dirs, existing_catalog_read_only};

/// Totals of a check run.
#[derive(Debug, Default)]
pub struct CheckSummary {
    pub databases: usize,
    pub corrupt_databases: usize,
    pub problems: usize,
}

pub fn run(cfg: &ServerConfig, out: &mut impl Write) -> anyhow::Result<CheckSummary> {
    let (catalog, _lock) = existing_catalog_read_only(cfg)?;
    let mut sum = CheckSummary::default();
    let dbs = cfg.data_dir.join("dbs");
    let dropped = |id: u64| dbs.join(format!("{}{id}", crate::pool::DROPPED_PREFIX));
    for e in catalog.all() {
        if e.status == DbStatus::Deleted {
            if dropped(e.id).exists() {
                writeln!(
                    out,
                    "{} (id {}): dropped; its files are removed at the next start",
                    e.name, e.id
                )?;
            }
            continue;
        }
        if dropped(e.id).exists() {
            // Moved away by a DropDB that a crash stopped before its catalog record:
            // the next start finishes the drop.
            writeln!(
                out,
                "{} (id {}): dropped (interrupted drop; the next start finishes it)",
                e.name, e.id
            )?;
            continue;
        }
        sum.databases += 1;
        let (dir, wal) = db_dirs(cfg, &e);
        if !dir.exists() {
            writeln!(
                out,
                "{} (id {}): no files yet (never written)",
                e.name, e.id
            )?;
            continue;
        }
        let r = docdb_core::verify_offline(&dir, wal.as_deref())
            .map_err(|err| anyhow::anyhow!("{} (id {}): {err}", e.name, e.id))?;
        if r.is_ok() {
            writeln!(
                out,
                "{} (id {}): OK — {} WAL records in {} segments, {} data records",
                e.name, e.id, r.wal_records, r.wal_segments, r.data_records
            )?;
        } else {
            sum.corrupt_databases += 1;
            sum.problems += r.problems.len();
            writeln!(
                out,
                "{} (id {}): CORRUPT — {} problem(s)",
                e.name,
                e.id,
                r.problems.len()
            )?;
            for p in &r.problems {
                writeln!(out, "  {p}")?;
            }
            for (coll, id) in &r.corrupt_documents {
                writeln!(out, "  corrupt document: {coll}/{id} (HealAll repairs it while its WAL copy exists)")?;
            }
        }
        for n in &r.notes {
            writeln!(out, "  note: {n}")?;
        }
    }
    writeln!(
        out,
        "checked {} database(s): {} corrupt, {} problem(s)",
        sum.databases, sum.corrupt_databases, sum.problems
    )?;
    Ok(sum)
}
