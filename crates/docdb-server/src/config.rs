//! Server configuration: embedded defaults, overridden by a TOML file (`--config`),
//! overridden by flags. Every key is documented once, here, with its default; a bad
//! value fails at start with a message naming the key.
//!
//! The example file `docdb.example.toml` (shipped beside this crate, printed by
//! `docdb serve --help` as [`EXAMPLE`]) lists every key with its default; a test
//! checks that it parses to exactly the defaults below.

use std::path::PathBuf;
use std::time::Duration;

use docdb_core::config::{CheckpointConfig, CompactionConfig, HealingConfig, WalConfig};
use serde::{Deserialize, Deserializer};

/// Every configuration key with its default and meaning, as TOML.
pub const EXAMPLE: &str = include_str!("../docdb.example.toml");

/// Everything `docdb serve` needs.
#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ServerConfig {
    pub data_dir: PathBuf,
    pub socket: PathBuf,
    #[serde(deserialize_with = "octal")]
    pub socket_mode: u32,
    pub wal_dir: Option<PathBuf>,
    pub max_connections: usize,
    pub http: Option<String>,
    pub log_level: String,
    pub log_format: String,
    pub memory: MemorySection,
    pub db: DbSection,
    pub net: NetSection,
    pub limits: LimitsSection,
    pub sched: SchedSection,
    pub wal: WalConfig,
    pub checkpoint: CheckpointConfig,
    pub compaction: CompactionConfig,
    pub healing: HealingConfig,
}

/// `[memory]`
#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct MemorySection {
    pub global_capacity_mb: u64,
    pub per_db_limit_mb: u64,
    /// Hot-document read cache per open database, MiB (0 = off).
    pub cache_mb: u64,
}

/// `[db]`
#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct DbSection {
    /// Open databases at most; past it the least-recently-used idle ones (none with
    /// queued requests) are closed and reopen on next use. 0 (default) = sized at start
    /// from the file descriptors left after the connections' share and from the
    /// memory budget (see `resources.rs`); the figure is logged.
    pub max_open_dbs: usize,
    #[serde(deserialize_with = "duration")]
    pub idle_timeout: Duration,
}

/// `[net]`: what one connection may hold of the server (SPEC §8.2).
#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct NetSection {
    /// A Scan page stops before its reply would pass this many MiB. Default 8.
    pub reply_budget_mb: u64,
    /// Requests read from one connection and not yet answered; past it the server
    /// stops reading that socket until answers are sent. Default 128.
    pub max_inflight: usize,
    /// MiB of replies not yet taken by one connection's socket; past it the server
    /// stops reading that socket until the client reads. Default 32.
    pub max_unsent_mb: u64,
    /// A connection silent this long in the middle of a frame is closed. Default 10 s.
    #[serde(deserialize_with = "duration")]
    pub frame_timeout: Duration,
    /// A connection silent this long between frames is closed; 0 = never (default).
    #[serde(deserialize_with = "duration")]
    pub idle_timeout: Duration,
}

impl NetSection {
    pub fn reply_budget_bytes(&self) -> usize {
        mib(self.reply_budget_mb)
    }

    pub fn max_unsent_bytes(&self) -> usize {
        mib(self.max_unsent_mb)
    }
}

fn mib(n: u64) -> usize {
    usize::try_from(n.saturating_mul(1 << 20)).unwrap_or(usize::MAX)
}

/// `[limits]`: what one client may ask of the engine and the catalog (SPEC §8.2).
#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct LimitsSection {
    /// Nesting of arrays and objects in a stored document. Default 128.
    pub max_depth: usize,
    /// Operations in one JSON Patch. Default 1000.
    pub max_patch_ops: usize,
    /// Collections per database, `_default` included. Default 1024.
    pub max_collections: usize,
    /// Databases in the catalog; OpenDB of a new name past it fails. Default 100000.
    pub max_databases: usize,
    /// Ops in one request; a request with more is answered with an error before its
    /// ops are decoded (they cost ~90 bytes of memory each, however small on the
    /// wire). Default 100000.
    pub max_ops_per_request: usize,
}

/// Queue-choice policy of the scheduler.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Policy {
    /// Serve the ready database that has received the least service (default).
    Fair,
    /// Serve the longest queue first (the original).
    Deepest,
    /// Serve ready databases in turn.
    RoundRobin,
}

impl Policy {
    pub fn name(self) -> &'static str {
        match self {
            Policy::Fair => "fair",
            Policy::Deepest => "deepest",
            Policy::RoundRobin => "round_robin",
        }
    }
}

impl std::str::FromStr for Policy {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "fair" => Ok(Policy::Fair),
            "deepest" => Ok(Policy::Deepest),
            "round_robin" => Ok(Policy::RoundRobin),
            _ => Err(format!(
                "unknown policy {s:?} (expected fair, deepest or round_robin)"
            )),
        }
    }
}

/// `[sched]`
#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct SchedSection {
    pub queue_depth: usize,
    pub workers: usize,
    pub max_workers: usize,
    #[serde(deserialize_with = "duration")]
    pub worker_expiry: Duration,
    pub prealloc: bool,
    pub policy: Policy,
    pub max_batch: usize,
    /// How long one idle worker polls for work before it sleeps (DECISIONS 24).
    #[serde(deserialize_with = "duration")]
    pub spin: Duration,
}

impl Default for ServerConfig {
    fn default() -> Self {
        ServerConfig {
            data_dir: PathBuf::from("./data"),
            socket: PathBuf::from("/tmp/docdb.sock"),
            socket_mode: 0o600,
            wal_dir: None,
            max_connections: 1024,
            http: None,
            log_level: "info".into(),
            log_format: "text".into(),
            memory: MemorySection::default(),
            db: DbSection::default(),
            net: NetSection::default(),
            limits: LimitsSection::default(),
            sched: SchedSection::default(),
            wal: WalConfig::default(),
            checkpoint: CheckpointConfig::default(),
            compaction: CompactionConfig::default(),
            healing: HealingConfig::default(),
        }
    }
}

impl Default for MemorySection {
    fn default() -> Self {
        MemorySection {
            global_capacity_mb: 1024,
            per_db_limit_mb: 256,
            // Off: with thousands of databases a per-database cache would dominate
            // RSS, and over the socket the round trip, not the pread, bounds a read.
            cache_mb: 0,
        }
    }
}

impl Default for DbSection {
    fn default() -> Self {
        DbSection {
            max_open_dbs: 0,
            idle_timeout: Duration::from_secs(300),
        }
    }
}

impl Default for NetSection {
    fn default() -> Self {
        NetSection {
            reply_budget_mb: 8,
            max_inflight: 128,
            max_unsent_mb: 32,
            frame_timeout: Duration::from_secs(10),
            idle_timeout: Duration::ZERO,
        }
    }
}

impl Default for LimitsSection {
    fn default() -> Self {
        let engine = docdb_core::config::LimitsConfig::default();
        LimitsSection {
            max_depth: engine.max_depth,
            max_patch_ops: engine.max_patch_ops,
            max_collections: engine.max_collections,
            max_databases: 100_000,
            max_ops_per_request: 100_000,
        }
    }
}

impl Default for SchedSection {
    fn default() -> Self {
        SchedSection {
            queue_depth: 100,
            workers: 0,
            max_workers: 256,
            worker_expiry: Duration::from_secs(1),
            prealloc: false,
            policy: Policy::Fair,
            max_batch: 256,
            spin: Duration::from_micros(200),
        }
    }
}

fn duration<'de, D: Deserializer<'de>>(d: D) -> Result<Duration, D::Error> {
    let s = String::deserialize(d)?;
    humantime::parse_duration(&s).map_err(serde::de::Error::custom)
}

fn octal<'de, D: Deserializer<'de>>(d: D) -> Result<u32, D::Error> {
    let s = String::deserialize(d)?;
    parse_mode(&s).map_err(serde::de::Error::custom)
}

/// Parses an octal permission string such as `0600`.
pub fn parse_mode(s: &str) -> Result<u32, String> {
    u32::from_str_radix(s.trim_start_matches("0o"), 8)
        .ok()
        .filter(|m| *m <= 0o777)
        .ok_or_else(|| format!("{s:?} is not an octal file mode like 0600"))
}

/// A configuration error naming the key.
#[derive(Debug, thiserror::Error)]
#[error("invalid configuration: {key}: {reason}")]
pub struct ConfigError {
    pub key: String,
    pub reason: String,
}

fn bad(key: &str, reason: impl Into<String>) -> ConfigError {
    ConfigError {
        key: key.into(),
        reason: reason.into(),
    }
}

impl ServerConfig {
    /// Parses a TOML file's text. Unknown keys are errors (a typo must not be ignored).
    pub fn from_toml(text: &str) -> Result<ServerConfig, ConfigError> {
        // The full rendering names the line and shows the `key = value` at fault.
        toml::from_str(text).map_err(|e| bad("config file", e.to_string().trim_end().to_string()))
    }

    /// The engine configuration each database is opened with.
    pub fn engine(&self) -> docdb_core::Config {
        docdb_core::Config {
            wal: self.wal.clone(),
            checkpoint: self.checkpoint.clone(),
            compaction: self.compaction.clone(),
            memory: docdb_core::config::MemoryConfig {
                per_db_limit_mb: self.memory.per_db_limit_mb,
                cache_mb: self.memory.cache_mb,
            },
            healing: self.healing.clone(),
            limits: docdb_core::config::LimitsConfig {
                max_depth: self.limits.max_depth,
                max_patch_ops: self.limits.max_patch_ops,
                max_collections: self.limits.max_collections,
            },
        }
    }

    /// Workers kept alive (resolving 0 = auto).
    pub fn min_workers(&self) -> usize {
        let auto = std::thread::available_parallelism().map_or(2, |n| n.get()) * 2;
        let w = if self.sched.workers == 0 {
            auto.max(4)
        } else {
            self.sched.workers
        };
        w.min(self.sched.max_workers)
    }

    /// Checks every value; the error names the key.
    pub fn validate(&self) -> Result<(), ConfigError> {
        if self.data_dir.as_os_str().is_empty() {
            return Err(bad("data_dir", "must not be empty"));
        }
        if self.socket.as_os_str().is_empty() {
            return Err(bad("socket", "must not be empty"));
        }
        // sun_path is 108 bytes including the NUL.
        if self.socket.as_os_str().len() > 107 {
            return Err(bad("socket", "path longer than 107 bytes"));
        }
        if self.memory.global_capacity_mb == 0 {
            return Err(bad("memory.global_capacity_mb", "must be at least 1"));
        }
        if self.memory.per_db_limit_mb == 0 {
            return Err(bad("memory.per_db_limit_mb", "must be at least 1"));
        }
        if self.db.idle_timeout.is_zero() {
            return Err(bad("db.idle_timeout", "must be longer than 0"));
        }
        // The reply budget must leave room under the 16 MiB frame limit for the
        // reply's own framing.
        if !(1..=15).contains(&self.net.reply_budget_mb) {
            return Err(bad("net.reply_budget_mb", "must be between 1 and 15"));
        }
        if !(1..=65_536).contains(&self.net.max_inflight) {
            return Err(bad("net.max_inflight", "must be between 1 and 65536"));
        }
        if !(1..=4096).contains(&self.net.max_unsent_mb) {
            return Err(bad("net.max_unsent_mb", "must be between 1 and 4096"));
        }
        if self.net.frame_timeout.is_zero() {
            return Err(bad("net.frame_timeout", "must be longer than 0"));
        }
        if self.limits.max_databases == 0 {
            return Err(bad("limits.max_databases", "must be at least 1"));
        }
        if !(1..=1_200_000).contains(&self.limits.max_ops_per_request) {
            // A 16 MiB frame holds at most ~1.1 M ops of 15 bytes.
            return Err(bad(
                "limits.max_ops_per_request",
                "must be between 1 and 1200000",
            ));
        }
        if self.sched.queue_depth == 0 || self.sched.queue_depth > 1_000_000 {
            return Err(bad("sched.queue_depth", "must be between 1 and 1000000"));
        }
        if self.sched.max_workers == 0 || self.sched.max_workers > 4096 {
            return Err(bad("sched.max_workers", "must be between 1 and 4096"));
        }
        if self.sched.workers > self.sched.max_workers {
            return Err(bad("sched.workers", "must not exceed sched.max_workers"));
        }
        if self.sched.worker_expiry.is_zero() {
            return Err(bad("sched.worker_expiry", "must be longer than 0"));
        }
        if self.sched.spin > Duration::from_millis(10) {
            return Err(bad("sched.spin", "must be at most 10ms"));
        }
        if self.sched.max_batch == 0 {
            return Err(bad("sched.max_batch", "must be at least 1"));
        }
        if !["error", "warn", "info", "debug", "trace"].contains(&self.log_level.as_str()) {
            return Err(bad(
                "log_level",
                "must be one of error, warn, info, debug, trace",
            ));
        }
        if !["text", "json"].contains(&self.log_format.as_str()) {
            return Err(bad("log_format", "must be text or json"));
        }
        if let Some(addr) = &self.http {
            addr.parse::<std::net::SocketAddr>().map_err(|_| {
                bad(
                    "http",
                    format!("{addr:?} is not an address like 127.0.0.1:9187"),
                )
            })?;
        }
        self.engine().validate().map_err(|e| match e {
            docdb_core::Error::Config { key, reason } => bad(key, reason),
            other => bad("engine", other.to_string()),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_match_the_spec() {
        let c = ServerConfig::default();
        c.validate().unwrap();
        assert_eq!(c.socket, PathBuf::from("/tmp/docdb.sock"));
        assert_eq!(c.data_dir, PathBuf::from("./data"));
        assert_eq!(c.sched.queue_depth, 100);
        assert_eq!(c.sched.policy, Policy::Fair);
        assert_eq!(c.sched.spin, Duration::from_micros(200));
        assert_eq!(c.db.idle_timeout, Duration::from_secs(300));
        assert_eq!(c.socket_mode, 0o600);
        assert_eq!(c.net.reply_budget_mb, 8);
        assert_eq!(c.net.max_inflight, 128);
        assert_eq!(c.net.max_unsent_mb, 32);
        assert_eq!(c.net.frame_timeout, Duration::from_secs(10));
        assert!(c.net.idle_timeout.is_zero());
        assert_eq!(c.limits.max_depth, 128);
        assert_eq!(c.limits.max_patch_ops, 1000);
    }

    #[test]
    fn the_documented_example_is_the_defaults() {
        // The shipped example is what `docdb serve --help` prints: every key in it
        // must parse and give the defaults.
        let example = EXAMPLE;
        let c = ServerConfig::from_toml(example).unwrap();
        c.validate().unwrap();
        let d = ServerConfig::default();
        assert_eq!(format!("{c:?}"), format!("{d:?}"));
    }

    #[test]
    fn toml_overrides_and_names_bad_keys() {
        let c = ServerConfig::from_toml(
            "socket = \"/tmp/x.sock\"\n[sched]\npolicy = \"deepest\"\nworker_expiry = \"250ms\"\nspin = \"0s\"\n[wal.fsync]\nmode = \"always\"\n",
        )
        .unwrap();
        assert_eq!(c.sched.policy, Policy::Deepest);
        assert_eq!(c.sched.worker_expiry, Duration::from_millis(250));
        assert!(c.sched.spin.is_zero());
        assert_eq!(c.wal.fsync.mode, docdb_core::FsyncMode::Always);
        let e = ServerConfig::from_toml("[sched]\nqueue_dept = 5\n").unwrap_err();
        assert!(e.to_string().contains("queue_dept"), "{e}");
        let e = ServerConfig::from_toml("[compaction]\ntombstone_ratio = 3.0\n")
            .unwrap()
            .validate()
            .unwrap_err();
        assert!(e.to_string().contains("compaction.tombstone_ratio"), "{e}");
        let e = ServerConfig::from_toml("[db]\nidle_timeout = \"soon\"\n").unwrap_err();
        assert!(
            e.to_string().contains("idle_timeout") || e.to_string().contains("soon"),
            "{e}"
        );
    }
}
