//! File descriptors: what the server may spend on connections and what it keeps for
//! database files.
//!
//! At start the soft `RLIMIT_NOFILE` is raised to the hard limit, then the descriptors
//! are shared out: those already open, a fixed allowance for the listener and the HTTP
//! endpoint, a headroom for the files a database opens for a moment (the next WAL
//! segment, a checkpoint's temp file, a compaction's new data file, the directories
//! they fsync), then at most three quarters of the rest to connections
//! (`max_connections` is capped to fit) and the remainder to open databases (which
//! sizes `db.max_open_dbs = 0`, together with the memory budget).
//!
//! While running, a connection accepted while descriptors are short of what the open
//! databases may still need is turned away with an error frame rather than served: a
//! database that cannot create its next WAL segment or checkpoint copes (it retries),
//! but it is the tenants' data that the descriptors are for.

use std::os::fd::AsRawFd;

use crate::config::ServerConfig;

/// Descriptors one open database holds: its `LOCK`, its WAL segment, its data file
/// (measured with /proc/PID/fd: 3.0 per database over 500 open ones).
pub const FDS_PER_DB: u64 = 3;
/// Descriptors one connection holds: its socket (`connection.rs` reads and writes
/// through the one descriptor).
pub const FDS_PER_CONNECTION: u64 = 1;
/// The listener, the HTTP listener, signal pipes, catalog writes, the data-dir lock.
const FIXED_ALLOWANCE: u64 = 8;
/// Files databases open for a moment: next WAL segment + its directory, a
/// checkpoint's temp file + directory, a compaction's new data file; twice, for two
/// databases doing so at once.
const HEADROOM: u64 = 8;
/// What an open idle database costs beyond its documents (which the memory budget
/// counts): measured 6.4 KiB of RSS per idle database over 500, plus up to 128 KiB of
/// batch buffers kept between writes (`commit.rs` `MAX_SPARE`, twice). Rounded up.
const MEMORY_PER_OPEN_DB: u64 = 160 * 1024;

/// How the server's descriptors are shared out.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FdPlan {
    /// The soft `RLIMIT_NOFILE` the server runs with.
    pub limit: u64,
    /// Connections at most (the smaller of `max_connections` and what fits).
    pub max_connections: usize,
    /// The descriptors, not `max_connections`, set `max_connections`: a client turned
    /// away for it is told the server is low on descriptors.
    pub capped_by_fds: bool,
    /// Databases open at most.
    pub max_open_dbs: usize,
}

impl FdPlan {
    /// Shares `limit` descriptors, `in_use` of them already open, for `cfg`.
    pub fn new(cfg: &ServerConfig, limit: u64, in_use: u64) -> FdPlan {
        let avail = limit.saturating_sub(in_use + FIXED_ALLOWANCE + HEADROOM);
        let conn_share = avail * 3 / 4 / FDS_PER_CONNECTION;
        let max_connections = match cfg.max_connections {
            0 => conn_share,
            n => (n as u64).min(conn_share),
        }
        .max(1);
        let db_fds = avail.saturating_sub(max_connections * FDS_PER_CONNECTION);
        let by_fds = (db_fds / FDS_PER_DB).max(1);
        let by_memory = cfg.memory.global_capacity_bytes() / MEMORY_PER_OPEN_DB;
        let max_open_dbs = match cfg.db.max_open_dbs {
            0 => by_fds.min(by_memory).max(1),
            n => n as u64,
        };
        FdPlan {
            limit,
            capped_by_fds: cfg.max_connections == 0 || cfg.max_connections as u64 > conn_share,
            max_connections: max_connections as usize,
            max_open_dbs: max_open_dbs as usize,
        }
    }

    /// Descriptors to keep free while `open_dbs` databases are open: room to open the
    /// rest up to the limit, plus the headroom.
    pub fn reserve(&self, open_dbs: usize) -> u64 {
        (self.max_open_dbs.saturating_sub(open_dbs) as u64) * FDS_PER_DB + HEADROOM
    }

    /// Whether a connection that was just given descriptor `fd` should be turned away
    /// to keep `reserve` descriptors free.
    pub fn short_of_fds(&self, fd: &impl AsRawFd, reserve: u64) -> bool {
        let need = reserve + 1;
        // The kernel hands out the lowest free number, so every descriptor below
        // `fd` is open: `fd + 1` is a lower bound of those in use, free to compute.
        let lower = fd.as_raw_fd().max(0) as u64 + 1;
        if lower + need > self.limit {
            return true;
        }
        // Descriptors above `fd` may be open too; count them when it could matter.
        if lower + need + self.limit / 8 > self.limit {
            if let Some(n) = open_fds() {
                return n + need > self.limit;
            }
        }
        false
    }
}

/// Raises the soft `RLIMIT_NOFILE` to the hard limit; returns the soft limit now in
/// force.
pub fn raise_fd_limit() -> u64 {
    let mut rl = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit writes into the struct passed, which outlives the call.
    if unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut rl) } != 0 {
        return 1024;
    }
    let mut want = rl.rlim_max;
    if want == libc::RLIM_INFINITY {
        // Linux refuses a soft limit over fs.nr_open.
        want = std::fs::read_to_string("/proc/sys/fs/nr_open")
            .ok()
            .and_then(|s| s.trim().parse().ok())
            .unwrap_or(1 << 20);
    }
    if want > rl.rlim_cur {
        let new = libc::rlimit {
            rlim_cur: want,
            rlim_max: rl.rlim_max,
        };
        // SAFETY: setrlimit only reads the struct passed.
        if unsafe { libc::setrlimit(libc::RLIMIT_NOFILE, &new) } == 0 {
            tracing::info!(
                from = rl.rlim_cur,
                to = want,
                "raised the open-file limit (RLIMIT_NOFILE) to the hard limit"
            );
            return want;
        }
        tracing::warn!(
            soft = rl.rlim_cur,
            hard = rl.rlim_max,
            "could not raise the open-file limit"
        );
    }
    rl.rlim_cur
}

/// Descriptors the process has open, where `/proc/self/fd` says.
pub fn open_fds() -> Option<u64> {
    let n = std::fs::read_dir("/proc/self/fd").ok()?.count() as u64;
    // Reading the directory took one descriptor.
    Some(n.saturating_sub(1))
}

/// Raises the limit, shares out the descriptors, logs the result, and returns the
/// configuration the server runs with (`max_connections` and `db.max_open_dbs` set to
/// the figures of the plan) with the plan.
pub fn plan(mut cfg: ServerConfig) -> (ServerConfig, FdPlan) {
    let limit = raise_fd_limit();
    let in_use = open_fds().unwrap_or(16);
    let plan = FdPlan::new(&cfg, limit, in_use);
    if cfg.max_connections != 0 && plan.max_connections < cfg.max_connections {
        tracing::warn!(
            max_connections = cfg.max_connections,
            capped_to = plan.max_connections,
            fd_limit = limit,
            "max_connections does not fit the open-file limit with room for databases; capped"
        );
    }
    let fit = FdPlan::new(
        &ServerConfig {
            db: crate::config::DbSection {
                max_open_dbs: 0,
                ..cfg.db.clone()
            },
            ..cfg.clone()
        },
        limit,
        in_use,
    );
    if cfg.db.max_open_dbs > fit.max_open_dbs {
        tracing::warn!(
            max_open_dbs = cfg.db.max_open_dbs,
            fits = fit.max_open_dbs,
            fd_limit = limit,
            "db.max_open_dbs is more than the open-file limit leaves room for"
        );
    }
    tracing::info!(
        fd_limit = limit,
        fds_in_use = in_use,
        max_connections = plan.max_connections,
        max_open_dbs = plan.max_open_dbs,
        auto = cfg.db.max_open_dbs == 0,
        "file descriptors shared out"
    );
    cfg.max_connections = plan.max_connections;
    cfg.db.max_open_dbs = plan.max_open_dbs;
    (cfg, plan)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_small_limit_keeps_room_for_databases() {
        let cfg = ServerConfig::default();
        let p = FdPlan::new(&cfg, 64, 10);
        // 64 - 10 - 16 = 38: 28 for connections, 10 for databases (3).
        assert_eq!(p.max_connections, 28);
        assert_eq!(p.max_open_dbs, 3);
        assert!(p.reserve(0) >= 3 * FDS_PER_DB);
    }

    #[test]
    fn a_normal_limit_keeps_thousands_of_databases_open() {
        let cfg = ServerConfig::default();
        let p = FdPlan::new(&cfg, 65_536, 12);
        assert_eq!(p.max_connections, 1024);
        assert!(p.max_open_dbs >= 5_000, "{p:?}");
        // The memory budget bounds it too: 1 GiB / 160 KiB.
        assert!(p.max_open_dbs <= 6_554, "{p:?}");
    }

    #[test]
    fn an_explicit_max_open_dbs_is_kept() {
        let mut cfg = ServerConfig::default();
        cfg.db.max_open_dbs = 7;
        assert_eq!(FdPlan::new(&cfg, 1 << 20, 12).max_open_dbs, 7);
    }
}
