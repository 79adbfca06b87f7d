//! `docdb check`: verify every checksum of every database (WAL records, data-file
//! record headers and payloads, checkpoint) without changing a byte. Prints a report;
//! the caller exits non-zero when anything is corrupt.
//!
//! With a server running on the data directory, `check` still verifies every database
//! the server does not have open (holding that database's lock while it reads, so the
//! server waits for it), skips the ones it has open, and says so: those are checked
//! online with the shell's `.heal-all` ([`CheckSummary::server`]).

use std::io::Write;

use crate::catalog::DbStatus;
use crate::config::ServerConfig;

use super::{db_dirs, existing_catalog_read_only};
use crate::catalog::Catalog;
use crate::datadir::DataDirBusy;

/// Totals of a check run.
#[derive(Debug, Default)]
pub struct CheckSummary {
    pub databases: usize,
    pub corrupt_databases: usize,
    pub problems: usize,
    /// Databases not verified because the running server has them open.
    pub skipped_databases: usize,
    /// Set when a running server holds the data directory (who holds it).
    pub server: Option<String>,
}

/// The core's refusal for a database whose `LOCK` a running server holds.
const OPEN_IN_SERVER: &str = "is open in a running server";

pub fn run(cfg: &ServerConfig, out: &mut impl Write) -> anyhow::Result<CheckSummary> {
    let mut sum = CheckSummary::default();
    // A running server holds the data directory: check what it does not have open.
    let (catalog, _lock) = match existing_catalog_read_only(cfg) {
        Ok((c, l)) => (c, Some(l)),
        Err(e) => match e.downcast_ref::<DataDirBusy>() {
            Some(busy) => {
                sum.server = Some(busy.who.clone());
                (Catalog::open_read_only(&cfg.data_dir)?, None)
            }
            None => return Err(e),
        },
    };
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
        let r = match docdb_core::verify_offline(&dir, wal.as_deref()) {
            Ok(r) => r,
            Err(err) if sum.server.is_some() && err.to_string().contains(OPEN_IN_SERVER) => {
                sum.skipped_databases += 1;
                writeln!(
                    out,
                    "{} (id {}): SKIPPED — open in the running server",
                    e.name, e.id
                )?;
                continue;
            }
            Err(err) => return Err(anyhow::anyhow!("{} (id {}): {err}", e.name, e.id)),
        };
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
                writeln!(out, "  corrupt document: {coll}/{id} (the shell's .heal-all repairs it while its WAL copy exists)")?;
            }
        }
        for n in &r.notes {
            writeln!(out, "  note: {n}")?;
        }
    }
    writeln!(
        out,
        "checked {} database(s): {} corrupt, {} problem(s)",
        sum.databases - sum.skipped_databases,
        sum.corrupt_databases,
        sum.problems
    )?;
    if let Some(who) = &sum.server {
        writeln!(
            out,
            "note: a running server ({who}) holds data directory {}; {} database(s) open in it \
             were skipped. Check those online: `docdb shell --socket <its socket>`, then \
             `.open <db>` and `.heal-all`; or stop the server and run `docdb check` again.",
            cfg.data_dir.display(),
            sum.skipped_databases
        )?;
    }
    Ok(sum)
}
