//! The background healer (SPEC §5): every `healing.interval_secs`, every database of
//! the catalog is scanned for corrupt documents, open or closed, one at a time, on a
//! thread of its own at low CPU priority (never a worker's).
//!
//! * An open database runs its healing scan (`Database::heal_scan`).
//! * A closed one is verified offline (`verify_offline`: its files read once, nothing
//!   opened, no memory of the pool's budget taken) while the pool keeps it closed (a
//!   request that would open it waits for the verify). If that finds corrupt
//!   documents, it is opened through the pool to heal them — only while fewer than
//!   `db.max_open_dbs` are open (else it waits for a later pass; the pool itself never
//!   evicts a busy database) — and closed again once healed if nobody started using it.
//!
//! The time of each database's last scan survives its closing in the pool (for the
//! server's life; a restart scans each database one interval after start).

use std::collections::HashSet;
use std::sync::{Arc, Weak};
use std::time::{Duration, Instant, SystemTime};

use crate::catalog::DbStatus;
use crate::context::Context;

/// How often the healer looks for databases due for a scan.
const TICK: Duration = Duration::from_secs(1);

/// Starts the healer thread; it ends once the pool stops (or the server is gone).
pub fn spawn(ctx: &Arc<Context>) -> std::io::Result<()> {
    let weak = Arc::downgrade(ctx);
    std::thread::Builder::new()
        .name("docdb-heal".into())
        .spawn(move || run(&weak))
        .map(|_| ())
}

fn run(ctx: &Weak<Context>) {
    lower_priority();
    let started = SystemTime::now();
    // Closed databases whose offline verify found corrupt documents, to be opened
    // and healed when the pool has room.
    let mut to_heal: HashSet<u64> = HashSet::new();
    loop {
        let next = Instant::now() + TICK;
        {
            let Some(ctx) = ctx.upgrade() else { return };
            if ctx.pool.is_stopped() {
                return;
            }
            pass(&ctx, started, &mut to_heal);
        }
        std::thread::sleep(next.saturating_duration_since(Instant::now()));
    }
}

/// Background work must not take the CPU from client requests: this thread (and the
/// threads a scan starts, which inherit it) runs at nice 10.
fn lower_priority() {
    #[cfg(target_os = "linux")]
    {
        // SAFETY: plain system calls on the calling thread; no memory is passed.
        let r = unsafe {
            let tid = libc::syscall(libc::SYS_gettid) as libc::id_t;
            libc::setpriority(libc::PRIO_PROCESS, tid, 10)
        };
        if r != 0 {
            tracing::debug!(error = %std::io::Error::last_os_error(), "lowering the healer's priority");
        }
    }
}

/// Scans, one at a time, every database due for a scan.
fn pass(ctx: &Context, started: SystemTime, to_heal: &mut HashSet<u64>) {
    let every = Duration::from_secs(ctx.cfg.healing.interval_secs);
    let mut entries = ctx.pool.catalog().list();
    entries.retain(|e| e.status == DbStatus::Active);
    to_heal.retain(|id| entries.iter().any(|e| e.id == *id));
    for entry in entries {
        if ctx.pool.is_stopped() {
            return;
        }
        let id = entry.id;
        if to_heal.contains(&id) {
            if open_and_heal(ctx, id) {
                to_heal.remove(&id);
            }
            continue;
        }
        let open = ctx.pool.get_if_open(id);
        // The first scan is due one interval after the database was opened (or, if
        // it has not been open since, after the server started).
        let since = ctx
            .pool
            .last_scan(id)
            .or_else(|| open.as_ref().map(|db| db.opened_at()))
            .unwrap_or(started);
        if !since.elapsed().is_ok_and(|age| age >= every) {
            continue;
        }
        ctx.metrics.healing_operations.inc();
        match open {
            Some(db) => scan_open(ctx, id, &db),
            None => {
                if scan_closed(ctx, id) {
                    to_heal.insert(id);
                    if open_and_heal(ctx, id) {
                        to_heal.remove(&id);
                    }
                }
            }
        }
    }
}

fn scan_open(ctx: &Context, id: u64, db: &docdb_core::Database) {
    match db.heal_scan() {
        Ok(r) => {
            ctx.metrics.documents_healed.inc_by(r.healed.len() as u64);
            tracing::debug!(
                db = id,
                scanned = r.scanned,
                healed = r.healed.len(),
                "background healing scan"
            );
        }
        Err(e) => tracing::warn!(db = id, error = %e, "background healing scan failed"),
    }
}

/// Verifies closed database `id` offline. Returns true if it has corrupt documents
/// to heal.
fn scan_closed(ctx: &Context, id: u64) -> bool {
    let verified = ctx.pool.with_closed(id, |dir, wal_dir| {
        if !dir.exists() {
            return Ok(None); // created but never used: no files yet
        }
        docdb_core::verify_offline(dir, wal_dir).map(Some)
    });
    let report = match verified {
        // Opened meanwhile: scan it open.
        None => {
            if let Some(db) = ctx.pool.get_if_open(id) {
                scan_open(ctx, id, &db);
            }
            return false;
        }
        Some(Ok(None)) => {
            ctx.pool.note_scan(id, SystemTime::now());
            return false;
        }
        Some(Ok(Some(r))) => r,
        Some(Err(e)) => {
            // Counted as a scan so that a database that cannot be read is not read
            // again every second; the next interval tries again.
            ctx.pool.note_scan(id, SystemTime::now());
            tracing::warn!(db = id, error = %e, "background verify of a closed database failed");
            return false;
        }
    };
    ctx.pool.note_scan(id, SystemTime::now());
    tracing::debug!(
        db = id,
        wal_records = report.wal_records,
        data_records = report.data_records,
        "background verify of a closed database"
    );
    if !report.problems.is_empty() {
        tracing::warn!(db = id, problems = ?report.problems, corrupt = report.corrupt_documents.len(),
            "background verify found damage in a closed database");
    }
    !report.corrupt_documents.is_empty()
}

/// Opens closed database `id` through the pool, if it has room, and heals it; closes
/// it again if nobody else started using it meanwhile. Returns false if it had to
/// wait for room (try again next pass).
fn open_and_heal(ctx: &Context, id: u64) -> bool {
    let was_open = ctx.pool.get_if_open(id).is_some();
    if !was_open && ctx.pool.open_count() >= ctx.pool.max_open() {
        tracing::debug!(
            db = id,
            "corrupt documents to heal; waiting for room under db.max_open_dbs"
        );
        return false;
    }
    match ctx.pool.get(id) {
        Ok(db) => {
            scan_open(ctx, id, &db);
            drop(db);
        }
        Err(e) => {
            tracing::warn!(db = id, error = %e, "opening a database to heal it failed");
            return true;
        }
    }
    if !was_open {
        ctx.pool.close_if_idle(id);
    }
    true
}
