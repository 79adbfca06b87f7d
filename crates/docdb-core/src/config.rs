//! Engine configuration: one struct per TOML section, each key documented once, here,
//! with its default written once, in the section's `Default` impl, and checked once,
//! in [`Config::validate`] (the error names the key).
//!
//! The server's configuration (`docdb_server::config`) reuses these structs as they
//! are: `[wal]`, `[checkpoint]`, `[compaction]` and `[healing]` directly, `[memory]` and
//! `[limits]` flattened into the server's section of the same name, which adds the
//! server's own keys. So the server's file and an embedder's `Config` use the same
//! section and key names, parsed by the same code.

use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};

/// Configuration of one database.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Config {
    pub wal: WalConfig,
    pub checkpoint: CheckpointConfig,
    pub compaction: CompactionConfig,
    pub memory: MemoryConfig,
    pub healing: HealingConfig,
    pub limits: LimitsConfig,
}

/// `[limits]`: what one write may ask of the engine. Each bound protects the other
/// tenants of the process from one client's documents (docs/SECURITY.md).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct LimitsConfig {
    /// Deepest nesting of arrays and objects a stored document may have, checked on
    /// every write path (create, update, patch result, transaction, restore).
    /// Default 128, at most 1000: a patch parses the document into a tree, which
    /// recurses once per level (about 700 B of stack each; a worker has 2 MiB).
    pub max_depth: usize,
    /// Most operations one JSON Patch may carry. Default 1000.
    pub max_patch_ops: usize,
    /// Most collections one database may hold, `_default` included. Default 1024.
    pub max_collections: usize,
    /// Most secondary indexes one collection may have. Default 16.
    pub max_indexes: usize,
}

/// Largest `limits.max_depth` accepted (see its doc comment).
const MAX_DEPTH_CAP: usize = 1000;

impl Default for LimitsConfig {
    fn default() -> Self {
        LimitsConfig {
            max_depth: 128,
            max_patch_ops: 1000,
            max_collections: 1024,
            max_indexes: 16,
        }
    }
}

/// `[healing]`
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct HealingConfig {
    /// Rebuild a document whose data-file record fails its checksum from the WAL
    /// during the read that found it. When off, such a read fails. Default true.
    pub on_read_corruption: bool,
    /// Seconds between background scans of every live document (the server runs
    /// them). Default 3600.
    pub interval_secs: u64,
    /// Most documents healed at once. Default 100.
    pub max_batch_size: usize,
}

impl Default for HealingConfig {
    fn default() -> Self {
        HealingConfig {
            on_read_corruption: true,
            interval_secs: 3600,
            max_batch_size: 100,
        }
    }
}

/// When a write is acknowledged relative to the fsync of its WAL record.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum FsyncMode {
    /// fsync before each acknowledgement, one fsync per commit.
    Always,
    /// Concurrent writers share one fsync (group commit); ack after the fsync covering
    /// the record.
    Group,
    /// Ack after write(); a background thread fsyncs every `interval_ms`. Survives a
    /// process crash, may lose up to `interval_ms` of acks on power loss.
    Interval,
    /// Never fsync. Survives a process crash only; for benchmarks.
    None,
}

impl std::str::FromStr for FsyncMode {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "always" => Ok(FsyncMode::Always),
            "group" => Ok(FsyncMode::Group),
            "interval" => Ok(FsyncMode::Interval),
            "none" => Ok(FsyncMode::None),
            _ => Err(format!(
                "unknown fsync mode {s:?} (expected always, group, interval or none)"
            )),
        }
    }
}

/// `[wal]`
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct WalConfig {
    /// The active segment rolls over once it reaches this size. Default 64.
    pub max_file_size_mb: u64,
    /// Segments wholly before the last checkpoint are deleted, keeping this many of the
    /// newest such segments (they feed healing). Default 2.
    pub keep_segments: usize,
    /// Server only: in `always` and `group` modes, make the batches of one commit
    /// (databases with one writer) durable through one server-wide shared commit log,
    /// so one fsync covers the writes of many databases (each database's own files
    /// stay complete; the log is drained into them at start). Batches of several
    /// commits fsync their own WAL. Off: each database fsyncs its own WAL. An embedder
    /// opts in with `OpenOptions::shared_log`. Default true.
    pub shared_log: bool,
    /// Server only: most MiB the shared log holds on disk (segments of a quarter of
    /// it; a full log waits for its trim). Between 4 and 4096. Default 64.
    pub shared_log_max_mb: u64,
    pub fsync: FsyncConfig,
}

/// `[wal.fsync]`
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct FsyncConfig {
    /// `always | group | interval | none`. Default `group`.
    pub mode: FsyncMode,
    /// Period of the background fsync in `interval` mode. Default 10.
    pub interval_ms: u64,
    /// Largest number of commits one group-commit fsync covers. Default 1024.
    pub max_batch_size: usize,
}

/// `[checkpoint]`
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct CheckpointConfig {
    /// A checkpoint is taken after this much WAL since the previous one. Bounds the
    /// work of recovery. Default 64.
    pub interval_mb: u64,
}

/// `[compaction]`
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct CompactionConfig {
    /// Compact a data file once it is larger than this... Default 100.
    pub size_mb: u64,
    /// ...and more than this fraction of it is dead (superseded or deleted). Default 0.3.
    pub tombstone_ratio: f64,
}

/// `[memory]`
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct MemoryConfig {
    /// Cap on the bytes of live documents of one database. Default 256.
    pub per_db_limit_mb: u64,
    /// Cache of verified document bytes for hot reads, per database; 0 disables it.
    /// Default 16.
    pub cache_mb: u64,
}

impl Default for WalConfig {
    fn default() -> Self {
        WalConfig {
            max_file_size_mb: 64,
            keep_segments: 2,
            shared_log: true,
            shared_log_max_mb: 64,
            fsync: FsyncConfig::default(),
        }
    }
}

impl Default for FsyncConfig {
    fn default() -> Self {
        FsyncConfig {
            mode: FsyncMode::Group,
            interval_ms: 10,
            max_batch_size: 1024,
        }
    }
}

impl Default for CheckpointConfig {
    fn default() -> Self {
        CheckpointConfig { interval_mb: 64 }
    }
}

impl Default for CompactionConfig {
    fn default() -> Self {
        CompactionConfig {
            size_mb: 100,
            tombstone_ratio: 0.3,
        }
    }
}

impl Default for MemoryConfig {
    fn default() -> Self {
        MemoryConfig {
            per_db_limit_mb: 256,
            cache_mb: 16,
        }
    }
}

/// Bytes in one MiB: every `_mb` key of the configuration, engine and server alike,
/// counts MiB (a plain integer in the TOML file).
pub const MIB: u64 = 1024 * 1024;

/// `n` MiB in bytes, saturating: how every `_mb` key is turned into bytes.
pub const fn mib(n: u64) -> u64 {
    n.saturating_mul(MIB)
}

impl Config {
    /// Checks every value; the error names the offending key.
    pub fn validate(&self) -> Result<()> {
        fn bad(key: &'static str, reason: impl Into<String>) -> Result<()> {
            Err(Error::Config {
                key,
                reason: reason.into(),
            })
        }
        if !(1..=4096).contains(&self.wal.max_file_size_mb) {
            return bad("wal.max_file_size_mb", "must be between 1 and 4096");
        }
        if !(4..=4096).contains(&self.wal.shared_log_max_mb) {
            return bad("wal.shared_log_max_mb", "must be between 4 and 4096");
        }
        if self.wal.fsync.mode == FsyncMode::Interval && self.wal.fsync.interval_ms == 0 {
            return bad(
                "wal.fsync.interval_ms",
                "must be at least 1 in interval mode",
            );
        }
        if self.wal.fsync.interval_ms > 60_000 {
            return bad("wal.fsync.interval_ms", "must be at most 60000");
        }
        if self.wal.fsync.max_batch_size == 0 {
            return bad("wal.fsync.max_batch_size", "must be at least 1");
        }
        if self.checkpoint.interval_mb == 0 {
            return bad("checkpoint.interval_mb", "must be at least 1");
        }
        if self.compaction.size_mb == 0 {
            return bad("compaction.size_mb", "must be at least 1");
        }
        let r = self.compaction.tombstone_ratio;
        if !(r > 0.0 && r < 1.0) {
            return bad(
                "compaction.tombstone_ratio",
                "must be between 0 and 1 (exclusive)",
            );
        }
        if self.healing.max_batch_size == 0 {
            return bad("healing.max_batch_size", "must be at least 1");
        }
        if self.healing.interval_secs == 0 {
            return bad("healing.interval_secs", "must be at least 1");
        }
        if self.memory.per_db_limit_mb == 0 {
            return bad("memory.per_db_limit_mb", "must be at least 1");
        }
        if self.memory.cache_mb > 65_536 {
            return bad("memory.cache_mb", "must be at most 65536");
        }
        if !(1..=MAX_DEPTH_CAP).contains(&self.limits.max_depth) {
            return bad("limits.max_depth", "must be between 1 and 1000");
        }
        if !(1..=1_000_000).contains(&self.limits.max_patch_ops) {
            return bad("limits.max_patch_ops", "must be between 1 and 1000000");
        }
        if !(1..=1_000_000).contains(&self.limits.max_collections) {
            return bad("limits.max_collections", "must be between 1 and 1000000");
        }
        if !(1..=256).contains(&self.limits.max_indexes) {
            return bad("limits.max_indexes", "must be between 1 and 256");
        }
        Ok(())
    }

    pub(crate) fn wal_segment_bytes(&self) -> u64 {
        mib(self.wal.max_file_size_mb)
    }

    pub(crate) fn checkpoint_bytes(&self) -> u64 {
        mib(self.checkpoint.interval_mb)
    }

    pub(crate) fn per_db_memory_bytes(&self) -> u64 {
        mib(self.memory.per_db_limit_mb)
    }

    pub(crate) fn compaction_bytes(&self) -> u64 {
        mib(self.compaction.size_mb)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_are_valid_and_match_the_spec() {
        let c = Config::default();
        c.validate().unwrap();
        assert_eq!(c.wal.fsync.mode, FsyncMode::Group);
        assert_eq!(c.wal.max_file_size_mb, 64);
        assert_eq!(c.wal.keep_segments, 2);
        assert_eq!(c.compaction.size_mb, 100);
        assert_eq!(c.memory.per_db_limit_mb, 256);
        assert_eq!(c.limits.max_depth, 128);
        assert_eq!(c.limits.max_patch_ops, 1000);
    }

    #[test]
    fn a_bad_value_names_its_key() {
        let mut c = Config::default();
        c.compaction.tombstone_ratio = 1.5;
        let e = c.validate().unwrap_err().to_string();
        assert!(e.contains("compaction.tombstone_ratio"), "{e}");
        let mut c = Config::default();
        c.wal.max_file_size_mb = 0;
        assert!(c
            .validate()
            .unwrap_err()
            .to_string()
            .contains("wal.max_file_size_mb"));
    }

    #[test]
    fn fsync_mode_parses_only_known_names() {
        assert_eq!("group".parse::<FsyncMode>(), Ok(FsyncMode::Group));
        assert!("sometimes".parse::<FsyncMode>().is_err());
    }
}
