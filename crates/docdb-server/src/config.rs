//! Server configuration: embedded defaults, overridden by a TOML file (`--config`),
//! overridden by flags.
//!
//! One struct per TOML section, each key documented once, next to its field, with its
//! default written once, in the section's `Default` impl; a bad value fails at start
//! with a message naming the key ([`ServerConfig::validate`]). The engine's sections
//! are `docdb_core::config`'s structs, used as they are: `[wal]`, `[checkpoint]`,
//! `[compaction]` and `[healing]` directly, and `[memory]` / `[limits]` flattened into
//! the server's section of the same name beside the keys only the server reads.
//! `*Section` types are the server's, `*Config` types the engine's.
//!
//! Durations are strings parsed by one function, [`duration`] (`"10s"`, `"200us"`,
//! `"5m"`); sizes are integer `_mb` keys counted in MiB ([`docdb_core::config::mib`]).
//!
//! The example file `docdb.example.toml` (shipped beside this crate, printed by
//! `docdb serve --help` as [`EXAMPLE`]) lists every key with its default; tests check
//! that it names exactly the keys of these structs and parses to exactly the defaults.

use std::path::PathBuf;
use std::time::Duration;

use docdb_core::config::{
    mib, CheckpointConfig, CompactionConfig, HealingConfig, LimitsConfig, MemoryConfig, WalConfig,
};
use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// Every configuration key with its default and meaning, as TOML.
pub const EXAMPLE: &str = include_str!("../docdb.example.toml");

/// Everything `docdb serve` needs: the top-level keys, then one field per section.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ServerConfig {
    /// Databases live under `<data_dir>/dbs/<name>`. Default `./data`.
    pub data_dir: PathBuf,
    /// The Unix socket clients connect to. Default `/tmp/docdb.sock`.
    pub socket: PathBuf,
    /// Permission bits of the socket file, an octal string. Default `"0600"`.
    #[serde(serialize_with = "ser_octal", deserialize_with = "octal")]
    pub socket_mode: u32,
    /// The WAL of database `<name>` in `<wal_dir>/<name>`; unset (default): beside its
    /// data file.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub wal_dir: Option<PathBuf>,
    /// Concurrent clients; 0 = unlimited. Default 1024.
    pub max_connections: usize,
    /// Serve `GET /metrics` and `/healthz` on this address; unset (default): off.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub http: Option<String>,
    /// `error | warn | info | debug | trace`. Default `info`.
    pub log_level: String,
    /// `text | json`. Default `text`.
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
    pub auth: AuthSection,
}

/// `[memory]`: the engine's per-database keys plus the budget all databases share.
/// (Read by [`split_section`]; unknown keys are errors.)
#[derive(Debug, Clone, Serialize)]
pub struct MemorySection {
    /// Live-document bytes of all databases together, MiB. Default 1024.
    pub global_capacity_mb: u64,
    /// One cache of hot documents' bytes that every open database's reads share,
    /// MiB; 0 turns it off. Default 64. Its bytes are outside the two limits above.
    pub shared_cache_mb: u64,
    /// `per_db_limit_mb` and `cache_mb` (see [`MemoryConfig`]). The server's default
    /// for `cache_mb` is 0, not the engine's 16: with thousands of databases a
    /// cache per database would dominate RSS; they share `shared_cache_mb` instead.
    /// Both at once is a configuration error.
    #[serde(flatten)]
    pub engine: MemoryConfig,
}

impl MemorySection {
    pub fn global_capacity_bytes(&self) -> u64 {
        mib(self.global_capacity_mb)
    }
}

/// `[db]`: how many databases stay open, and for how long.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct DbSection {
    /// Open databases at most; past it the least-recently-used idle ones (none with
    /// queued requests) are closed and reopen on next use. 0 (default) = sized at start
    /// from the file descriptors left after the connections' share and from the
    /// memory budget (see `resources.rs`); the figure is logged.
    pub max_open_dbs: usize,
    /// A database unused this long is closed. Default 5 min.
    #[serde(with = "duration")]
    pub idle_timeout: Duration,
}

/// `[net]`: what one connection may hold of the server (SPEC §8.2).
#[derive(Debug, Clone, Serialize, Deserialize)]
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
    #[serde(with = "duration")]
    pub frame_timeout: Duration,
    /// A connection silent this long between frames is closed; 0 = never (default).
    #[serde(with = "duration")]
    pub idle_timeout: Duration,
    /// A TCP connection not authenticated this long after it was accepted is closed,
    /// whatever it sends meanwhile. Default 10 s.
    #[serde(with = "duration")]
    pub auth_timeout: Duration,
    /// Also serve the protocol over TCP on this `IP:PORT` (port 0: any free port,
    /// logged); "" (default) = off. A TCP connection always needs a token (Auth),
    /// whatever `auth.mode` is; a TLS handshake, and a connection that has not
    /// authenticated yet, is closed after `frame_timeout` of silence.
    pub listen: String,
    /// PEM certificate chain for TLS on `listen`; "" (default) = no TLS.
    pub tls_cert: PathBuf,
    /// PEM private key (PKCS#8, PKCS#1 or SEC1) of `tls_cert`; "" (default) = no TLS.
    pub tls_key: PathBuf,
    /// Plain TCP on `listen`, no TLS: allowed only on a loopback address. Default false.
    pub insecure_tcp: bool,
}

impl NetSection {
    pub fn reply_budget_bytes(&self) -> usize {
        usize_bytes(self.reply_budget_mb)
    }

    pub fn max_unsent_bytes(&self) -> usize {
        usize_bytes(self.max_unsent_mb)
    }
}

impl NetSection {
    /// The TCP address to serve on, if any (`listen` parsed).
    pub fn listen_addr(&self) -> Option<std::net::SocketAddr> {
        self.listen.parse().ok()
    }

    /// Whether TCP connections use TLS (a certificate and key are configured).
    pub fn tls(&self) -> bool {
        !self.tls_cert.as_os_str().is_empty()
    }

    /// `listen` with its TLS keys: TLS, or plain TCP on loopback by explicit choice.
    fn validate_listen(&self) -> Result<(), ConfigError> {
        let cert = !self.tls_cert.as_os_str().is_empty();
        let key = !self.tls_key.as_os_str().is_empty();
        if self.listen.is_empty() {
            if cert || key {
                let k = if cert { "net.tls_cert" } else { "net.tls_key" };
                return Err(bad(k, "set without net.listen (--listen)"));
            }
            if self.insecure_tcp {
                return Err(bad("net.insecure_tcp", "set without net.listen (--listen)"));
            }
            return Ok(());
        }
        let addr: std::net::SocketAddr = self.listen.parse().map_err(|_| {
            bad(
                "net.listen",
                format!(
                    "{:?} is not an address like 127.0.0.1:7070 or [::1]:7070",
                    self.listen
                ),
            )
        })?;
        match (cert, key, self.insecure_tcp) {
            (true, false, _) => Err(bad(
                "net.tls_key",
                "net.tls_cert (--tls-cert) is set but no key (--tls-key)",
            )),
            (false, true, _) => Err(bad(
                "net.tls_cert",
                "net.tls_key (--tls-key) is set but no certificate (--tls-cert)",
            )),
            (true, true, true) => Err(bad(
                "net.insecure_tcp",
                "plain TCP was asked for together with a TLS certificate; choose one",
            )),
            (true, true, false) => Ok(()),
            (false, false, false) => Err(bad(
                "net.listen",
                "TCP needs TLS (--tls-cert and --tls-key), or --insecure-tcp on a loopback address",
            )),
            (false, false, true) if !addr.ip().is_loopback() => Err(bad(
                "net.insecure_tcp",
                format!(
                    "plain TCP (--insecure-tcp) is allowed only on a loopback address, not {}; \
                     use TLS (--tls-cert, --tls-key)",
                    addr.ip()
                ),
            )),
            (false, false, true) => Ok(()),
        }
    }
}

fn usize_bytes(mb: u64) -> usize {
    usize::try_from(mib(mb)).unwrap_or(usize::MAX)
}

/// `[limits]`: what one client may ask of the engine and the catalog (SPEC §8.2): the
/// engine's per-write bounds plus the server's. (Read by [`split_section`]; unknown
/// keys are errors.)
#[derive(Debug, Clone, Serialize)]
pub struct LimitsSection {
    /// `max_depth`, `max_patch_ops`, `max_collections` and `max_indexes` (see
    /// [`LimitsConfig`]).
    #[serde(flatten)]
    pub engine: LimitsConfig,
    /// Databases in the catalog; OpenDB of a new name past it fails. Default 100000.
    pub max_databases: usize,
    /// Ops in one request; a request with more is answered with an error before its
    /// ops are decoded (they cost ~90 bytes of memory each, however small on the
    /// wire). Default 100000.
    pub max_ops_per_request: usize,
    /// Index builds (CreateIndex) running at once, server-wide, each on a thread of its
    /// own off its database's queue; one more is answered with an error naming this
    /// key. 1 to 64; default 2.
    pub max_index_builds: usize,
}

/// `[auth]`: who may do what (SPEC §9.1, docs/SECURITY.md).
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct AuthSection {
    /// `none` (default: anyone who can open the 0600 socket may do anything, as v0.3),
    /// `peer` (the connecting process's uid is looked up in `[auth.peer]`) or `token`
    /// (every command before a successful Auth is refused).
    pub mode: AuthMode,
    /// Databases one connection may have open under a scope; OpenDB past it is
    /// Denied until it closes one. Default 1024.
    pub max_opened: usize,
    /// `peer` mode: uid → scope, e.g. `"1000" = { db = "tenant-*", rights = "write" }`.
    /// Default: empty (every uid refused).
    #[serde(skip_serializing_if = "std::collections::BTreeMap::is_empty")]
    pub peer: std::collections::BTreeMap<String, PeerScope>,
}

/// `auth.mode`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum AuthMode {
    None,
    Peer,
    Token,
}

impl std::str::FromStr for AuthMode {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "none" => Ok(AuthMode::None),
            "peer" => Ok(AuthMode::Peer),
            "token" => Ok(AuthMode::Token),
            _ => Err(format!(
                "unknown auth mode {s:?} (expected none, peer or token)"
            )),
        }
    }
}

/// One `[auth.peer]` entry: the scope of a uid.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PeerScope {
    /// Database-name pattern (`*`, `?`, `[..]`).
    pub db: String,
    pub rights: crate::auth::Rights,
}

impl Default for AuthSection {
    fn default() -> Self {
        AuthSection {
            mode: AuthMode::None,
            max_opened: 1024,
            peer: Default::default(),
        }
    }
}

/// Queue-choice policy of the scheduler.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
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

impl<'de> Deserialize<'de> for MemorySection {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let def = MemorySection::default();
        let (engine, mut own) =
            split_section(d, &def.engine, &["global_capacity_mb", "shared_cache_mb"])?;
        Ok(MemorySection {
            global_capacity_mb: take(&mut own, "global_capacity_mb", def.global_capacity_mb)?,
            shared_cache_mb: take(&mut own, "shared_cache_mb", def.shared_cache_mb)?,
            engine,
        })
    }
}

impl<'de> Deserialize<'de> for LimitsSection {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let def = LimitsSection::default();
        let own_keys = ["max_databases", "max_ops_per_request", "max_index_builds"];
        let (engine, mut own) = split_section(d, &def.engine, &own_keys)?;
        Ok(LimitsSection {
            engine,
            max_databases: take(&mut own, "max_databases", def.max_databases)?,
            max_ops_per_request: take(&mut own, "max_ops_per_request", def.max_ops_per_request)?,
            max_index_builds: take(&mut own, "max_index_builds", def.max_index_builds)?,
        })
    }
}

/// Reads a section made of an engine section `E` plus the server's `own_keys`: returns
/// the engine part, its missing keys taken from `default` (the server's defaults, which
/// may differ from the engine's), and the table of the server's keys present.
///
/// Not serde's `flatten`: that buffers the values, so a type error no longer names its
/// key, and it would fill missing engine keys with the engine's defaults.
fn split_section<'de, D, E>(
    d: D,
    default: &E,
    own_keys: &[&str],
) -> Result<(E, toml::Table), D::Error>
where
    D: Deserializer<'de>,
    E: Serialize + serde::de::DeserializeOwned,
{
    use serde::de::Error;
    let mut given = toml::Table::deserialize(d)?;
    let own = own_keys
        .iter()
        .filter_map(|k| given.remove_entry(*k))
        .collect::<toml::Table>();
    let mut engine = toml::Table::try_from(default).map_err(D::Error::custom)?;
    engine.extend(given);
    // The engine's struct denies unknown keys and names the key of a bad value.
    let engine = E::deserialize(toml::Value::Table(engine)).map_err(D::Error::custom)?;
    Ok((engine, own))
}

/// The value of `key` in `t`, or `default` when absent; a bad value names the key.
fn take<T: serde::de::DeserializeOwned, E: serde::de::Error>(
    t: &mut toml::Table,
    key: &str,
    default: T,
) -> Result<T, E> {
    match t.remove(key) {
        None => Ok(default),
        Some(v) => T::deserialize(v).map_err(|e| E::custom(format!("{e}in `{key}`"))),
    }
}

/// `[sched]`: the scheduler's request queues and worker pool (see `scheduler.rs`).
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct SchedSection {
    /// Requests queued per database; past it a request is answered `request queue is
    /// full`. Default 100.
    pub queue_depth: usize,
    /// Workers kept alive; 0 (default) = auto, 2 x cores and at least 4
    /// ([`SchedSection::min_workers`]).
    pub workers: usize,
    /// The pool grows to this under load. Default 256.
    pub max_workers: usize,
    /// Idle workers above `workers` exit after this. Default 1 s.
    #[serde(with = "duration")]
    pub worker_expiry: Duration,
    /// Start all `max_workers` workers up front. Default false.
    pub prealloc: bool,
    /// Which ready queue a free worker takes. Default `fair`.
    pub policy: Policy,
    /// Requests one worker takes from a queue at once. Default 256.
    pub max_batch: usize,
    /// How long one idle worker polls for work before it sleeps (DECISIONS 24); zero:
    /// never. Default 200 us.
    #[serde(with = "duration")]
    pub spin: Duration,
}

impl SchedSection {
    /// Workers kept alive (resolving 0 = auto).
    pub fn min_workers(&self) -> usize {
        let auto = std::thread::available_parallelism().map_or(2, |n| n.get()) * 2;
        let w = if self.workers == 0 {
            auto.max(4)
        } else {
            self.workers
        };
        w.min(self.max_workers)
    }
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
            auth: AuthSection::default(),
        }
    }
}

impl Default for MemorySection {
    fn default() -> Self {
        MemorySection {
            global_capacity_mb: 1024,
            shared_cache_mb: 64,
            // IMPORTANT: the one server default that differs from the engine's (see
            // the field's doc comment).
            engine: MemoryConfig {
                cache_mb: 0,
                ..MemoryConfig::default()
            },
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
            auth_timeout: Duration::from_secs(10),
            listen: String::new(),
            tls_cert: PathBuf::new(),
            tls_key: PathBuf::new(),
            insecure_tcp: false,
        }
    }
}

impl Default for LimitsSection {
    fn default() -> Self {
        LimitsSection {
            engine: LimitsConfig::default(),
            max_databases: 100_000,
            max_ops_per_request: 100_000,
            max_index_builds: 2,
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

/// Every duration key: a string such as `"10s"`, `"250ms"`, `"200us"`, `"5m"` or
/// `"1h 30m"` (humantime's syntax), written back in the same syntax.
pub mod duration {
    use std::time::Duration;

    use serde::{Deserialize, Deserializer, Serializer};

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Duration, D::Error> {
        let s = String::deserialize(d)?;
        parse(&s).map_err(serde::de::Error::custom)
    }

    pub fn serialize<S: Serializer>(v: &Duration, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(&humantime::format_duration(*v))
    }

    /// Parses one duration as the configuration file writes it.
    pub fn parse(s: &str) -> Result<Duration, String> {
        humantime::parse_duration(s)
            .map_err(|e| format!("{s:?} is not a duration like \"10s\": {e}"))
    }
}

fn ser_octal<S: Serializer>(v: &u32, s: S) -> Result<S::Ok, S::Error> {
    s.collect_str(&format_args!("{v:04o}"))
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

    /// The engine configuration each database is opened with: the engine's sections
    /// as the file gave them.
    pub fn engine(&self) -> docdb_core::Config {
        docdb_core::Config {
            wal: self.wal.clone(),
            checkpoint: self.checkpoint.clone(),
            compaction: self.compaction.clone(),
            memory: self.memory.engine.clone(),
            healing: self.healing.clone(),
            limits: self.limits.engine.clone(),
        }
    }

    /// The default of the key at dotted path `key` (`"memory.per_db_limit_mb"`), as the
    /// file would write it; `None` for an unknown key or an optional one unset by
    /// default. Flags' help texts are built from it.
    pub fn default_value(key: &str) -> Option<String> {
        let defaults = toml::Table::try_from(ServerConfig::default()).ok()?;
        let mut parts = key.split('.');
        let mut v = defaults.get(parts.next()?)?;
        for p in parts {
            v = v.get(p)?;
        }
        Some(match v {
            toml::Value::String(s) => s.clone(),
            other => other.to_string(),
        })
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
        if self.memory.shared_cache_mb > 65_536 {
            return Err(bad("memory.shared_cache_mb", "must be at most 65536"));
        }
        if self.memory.shared_cache_mb > 0 && self.memory.engine.cache_mb > 0 {
            return Err(bad(
                "memory.cache_mb",
                "a cache per database and the shared cache (memory.shared_cache_mb) are \
                 exclusive: set one of them to 0",
            ));
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
        if self.net.auth_timeout.is_zero() {
            return Err(bad("net.auth_timeout", "must be longer than 0"));
        }
        self.net.validate_listen()?;
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
        if !(1..=64).contains(&self.limits.max_index_builds) {
            return Err(bad("limits.max_index_builds", "must be between 1 and 64"));
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
        if !(1..=1_000_000).contains(&self.auth.max_opened) {
            return Err(bad("auth.max_opened", "must be between 1 and 1000000"));
        }
        for (uid, p) in &self.auth.peer {
            let key = format!("auth.peer.{uid}");
            uid.parse::<u32>()
                .map_err(|_| bad(&key, "the key must be a numeric uid"))?;
            crate::auth::glob::Glob::new(&p.db).map_err(|e| bad(&format!("{key}.db"), e))?;
        }
        // The engine's sections are checked by the engine, with the same key names.
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
        assert_eq!(c.limits.engine.max_depth, 128);
        assert_eq!(c.limits.engine.max_patch_ops, 1000);
    }

    #[test]
    fn listen_needs_tls_or_plain_tcp_on_loopback() {
        let net = |listen: &str, cert: &str, key: &str, insecure: bool| {
            let mut c = ServerConfig::default();
            c.net.listen = listen.into();
            c.net.tls_cert = cert.into();
            c.net.tls_key = key.into();
            c.net.insecure_tcp = insecure;
            c.validate().map_err(|e| e.key)
        };
        assert_eq!(net("", "", "", false), Ok(()));
        assert_eq!(net("127.0.0.1:0", "c.pem", "k.pem", false), Ok(()));
        assert_eq!(net("0.0.0.0:7070", "c.pem", "k.pem", false), Ok(()));
        assert_eq!(net("127.0.0.1:0", "", "", true), Ok(()));
        assert_eq!(net("[::1]:0", "", "", true), Ok(()));
        let refused = [
            (net("0.0.0.0:0", "", "", true), "net.insecure_tcp"),
            (net("10.1.2.3:0", "", "", true), "net.insecure_tcp"),
            (net("127.0.0.1:0", "", "", false), "net.listen"),
            (net("localhost:0", "c.pem", "k.pem", false), "net.listen"),
            (net("127.0.0.1:0", "c.pem", "", false), "net.tls_key"),
            (net("127.0.0.1:0", "", "k.pem", false), "net.tls_cert"),
            (
                net("127.0.0.1:0", "c.pem", "k.pem", true),
                "net.insecure_tcp",
            ),
            (net("", "c.pem", "k.pem", false), "net.tls_cert"),
            (net("", "", "", true), "net.insecure_tcp"),
        ];
        for (got, key) in refused {
            assert_eq!(got, Err(key.to_string()));
        }
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
    fn every_key_of_the_example_says_what_it_means() {
        // A key line (commented-out optional keys included) carries a `# meaning`
        // after its value; a section header may carry one too.
        for line in EXAMPLE.lines() {
            let key_line = line.trim_start_matches("# ");
            let is_key = key_line.split_once(" = ").is_some_and(|(k, _)| {
                !k.is_empty() && k.chars().all(|c| c.is_ascii_lowercase() || c == '_')
            });
            if is_key {
                let (_, rest) = key_line.split_once(" = ").unwrap_or_default();
                assert!(rest.contains(" # "), "no meaning for: {line}");
            }
        }
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

    /// Dotted paths of every leaf key of a TOML table (`wal.fsync.mode`, ...).
    fn leaf_keys(t: &toml::Table, prefix: &str, out: &mut std::collections::BTreeSet<String>) {
        for (k, v) in t {
            let path = format!("{prefix}{k}");
            match v {
                toml::Value::Table(sub) => leaf_keys(sub, &format!("{path}."), out),
                _ => {
                    out.insert(path);
                }
            }
        }
    }

    /// The example with its commented-out keys (`# wal_dir = ...`: optional keys
    /// unset by default) switched on.
    fn example_with_optional_keys() -> String {
        EXAMPLE
            .lines()
            .map(|line| match line.strip_prefix("# ") {
                Some(rest)
                    if rest.split_once(" = ").is_some_and(|(k, _)| {
                        !k.is_empty() && k.bytes().all(|b| b.is_ascii_lowercase() || b == b'_')
                    }) =>
                {
                    rest
                }
                _ => line,
            })
            .collect::<Vec<_>>()
            .join("\n")
    }

    #[test]
    fn the_example_names_every_key_of_the_config_structs_and_no_other() {
        // The structs' keys: every field serialized, the optional ones set.
        let mut all = ServerConfig {
            wal_dir: Some("/wal".into()),
            http: Some("127.0.0.1:9187".into()),
            ..ServerConfig::default()
        };
        all.healing.on_read_corruption = false;
        let t = toml::Table::try_from(&all).unwrap();
        let mut struct_keys = std::collections::BTreeSet::new();
        leaf_keys(&t, "", &mut struct_keys);

        let example = example_with_optional_keys();
        let t: toml::Table = toml::from_str(&example).unwrap();
        let mut example_keys = std::collections::BTreeSet::new();
        leaf_keys(&t, "", &mut example_keys);

        let missing: Vec<_> = struct_keys.difference(&example_keys).collect();
        let extra: Vec<_> = example_keys.difference(&struct_keys).collect();
        assert!(
            missing.is_empty() && extra.is_empty(),
            "docdb.example.toml has drifted from the config structs: keys missing from \
             the example: {missing:?}; keys in the example no struct has: {extra:?}"
        );
        // The commented-out keys are real keys with valid example values.
        let c = ServerConfig::from_toml(&example).unwrap();
        c.validate().unwrap();
        assert!(c.wal_dir.is_some() && c.http.is_some());
        assert!(struct_keys.len() >= 40, "{struct_keys:?}");
    }

    #[test]
    fn a_config_written_out_reads_back_the_same() {
        // Durations, octal modes and the flattened sections use one syntax both ways.
        let d = ServerConfig::default();
        let text = toml::to_string(&d).unwrap();
        assert!(text.contains("spin = \"200us\""), "{text}");
        assert!(text.contains("socket_mode = \"0600\""), "{text}");
        let back = ServerConfig::from_toml(&text).unwrap();
        assert_eq!(format!("{back:?}"), format!("{d:?}"));
    }

    #[test]
    fn the_engine_sections_are_the_engines_structs_with_the_servers_defaults() {
        let c = ServerConfig::default();
        let e = c.engine();
        // Every engine default is the engine's, except the documented cache_mb.
        let mut expected = docdb_core::Config::default();
        expected.memory.cache_mb = 0;
        assert_eq!(e, expected);
        let c = ServerConfig::from_toml(
            "[memory]\nper_db_limit_mb = 7\ncache_mb = 3\nshared_cache_mb = 0\nglobal_capacity_mb = 9\n\
             [limits]\nmax_depth = 12\nmax_databases = 5\n",
        )
        .unwrap();
        assert_eq!(c.engine().memory.per_db_limit_mb, 7);
        assert_eq!(c.engine().memory.cache_mb, 3);
        assert_eq!(c.engine().limits.max_depth, 12);
        assert_eq!(c.engine().limits.max_patch_ops, 1000);
        assert_eq!(c.memory.global_capacity_bytes(), 9 << 20);
        assert_eq!(c.limits.max_databases, 5);
        // A key left out of a section keeps the server's default, not the engine's.
        let c = ServerConfig::from_toml("[memory]\nper_db_limit_mb = 7\n").unwrap();
        assert_eq!(c.engine().memory.cache_mb, 0);
        assert_eq!(c.memory.global_capacity_mb, 1024);
    }

    #[test]
    fn a_bad_key_in_a_section_shared_with_the_engine_is_named() {
        for (text, key) in [
            (
                "[memory]\nglobal_capacity_mb = \"big\"\n",
                "global_capacity_mb",
            ),
            ("[limits]\nmax_databases = -1\n", "max_databases"),
            ("[memory]\nper_db_limt_mb = 7\n", "per_db_limt_mb"),
            ("[limits]\nmax_dept = 7\n", "max_dept"),
            ("[limits]\nmax_depth = \"deep\"\n", "max_depth"),
            ("[memory]\ncache_mb = -1\n", "cache_mb"),
        ] {
            let e = ServerConfig::from_toml(text).unwrap_err().to_string();
            assert!(e.contains(key), "{text}: {e}");
        }
        let e = ServerConfig::from_toml("[memory]\nper_db_limit_mb = 0\n")
            .unwrap()
            .validate()
            .unwrap_err();
        assert!(e.to_string().contains("memory.per_db_limit_mb"), "{e}");
    }

    #[test]
    fn the_shared_cache_is_on_by_default_and_excludes_a_cache_per_database() {
        let c = ServerConfig::default();
        assert_eq!(
            (c.memory.shared_cache_mb, c.engine().memory.cache_mb),
            (64, 0)
        );
        let c = ServerConfig::from_toml(
            "[memory]
shared_cache_mb = 0
cache_mb = 8
",
        )
        .unwrap();
        c.validate().unwrap();
        assert_eq!(c.engine().memory.cache_mb, 8);
        // A cache per database on top of the shared one is refused, naming both keys.
        let e = ServerConfig::from_toml(
            "[memory]
cache_mb = 8
",
        )
        .unwrap()
        .validate()
        .unwrap_err()
        .to_string();
        assert!(
            e.contains("memory.cache_mb") && e.contains("memory.shared_cache_mb"),
            "{e}"
        );
        let e = ServerConfig::from_toml(
            "[memory]
shared_cache_mb = 70000
",
        )
        .unwrap()
        .validate()
        .unwrap_err()
        .to_string();
        assert!(e.contains("memory.shared_cache_mb"), "{e}");
        let e = ServerConfig::from_toml(
            "[memory]
shared_cache_mb = \"lots\"
",
        )
        .unwrap_err()
        .to_string();
        assert!(e.contains("shared_cache_mb"), "{e}");
    }

    #[test]
    fn max_index_builds_is_read_and_bounded() {
        assert_eq!(ServerConfig::default().limits.max_index_builds, 2);
        let c = ServerConfig::from_toml("[limits]\nmax_index_builds = 5\n").unwrap();
        assert_eq!(c.limits.max_index_builds, 5);
        c.validate().unwrap();
        for bad in [0, 65] {
            let text = format!("[limits]\nmax_index_builds = {bad}\n");
            let e = ServerConfig::from_toml(&text)
                .unwrap()
                .validate()
                .unwrap_err();
            assert!(e.to_string().contains("limits.max_index_builds"), "{e}");
        }
    }
}
