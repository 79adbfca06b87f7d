//! The server over its Unix socket, through the Rust client (`docdb-client`): one
//! connection per worker, each operation one request acknowledged after the fsync the
//! server's mode requires.
//!
//! A run either uses a server that is already running (`--socket`) or starts its own
//! (`docdb serve`) on the run directory with a configuration written for the run (see
//! [`ServerSpec`]), and stops it with SIGTERM at the end. Every database of a run
//! shares the one server and one admin client (preloads, counts, metrics).

use std::fs::File;
use std::io::{Read as _, Seek as _, SeekFrom};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use anyhow::Context as _;
use docdb_client::{Batch, Client, Database, DbInfo, Error};
use docdb_core::{FsyncMode, GroupCommitStats};

use super::{
    preload_in_chunks, query_collection, EngineStats, OpError, OpResult, QuerySession, QueryTarget,
    Row, RowDoc, Session, Target, PLAIN_COLLECTION, QUERY_COLLECTION, QUERY_LIMIT,
};
use crate::cli::TargetKind;

/// Largest preload transaction, in documents and in payload bytes (a frame holds at
/// most 16 MiB).
const PRELOAD_BATCH_DOCS: usize = 1000;
const PRELOAD_BATCH_BYTES: usize = 4 * 1024 * 1024;
/// How long a started server may take to accept connections.
const START_TIMEOUT: Duration = Duration::from_secs(60);
/// How long a server may take to exit after SIGTERM before it is killed.
const STOP_TIMEOUT: Duration = Duration::from_secs(60);
/// Unix socket paths longer than this do not fit `sockaddr_un`.
const MAX_SOCKET_PATH: usize = 100;

/// How to start a server for a run.
#[derive(Debug, Clone)]
pub struct ServerSpec {
    /// The `docdb` binary.
    pub bin: PathBuf,
    pub fsync_mode: FsyncMode,
    /// Scheduler policy (`fair`, `deepest`, `round_robin`), or the server's default.
    pub policy: Option<String>,
    /// Scheduler workers kept alive (0 = the server's auto), if set.
    pub workers: Option<usize>,
    /// `memory.global_capacity_mb` and `memory.per_db_limit_mb`, if set.
    pub memory_mb: Option<u64>,
    /// `db.max_open_dbs`, if set; else the server's own (sized from its file
    /// descriptors and memory), so a run measures what a user gets.
    pub max_open_dbs: Option<usize>,
    /// `memory.shared_cache_mb` (the read cache all the server's databases share), if
    /// set.
    pub cache_mb: Option<u64>,
    /// Client connections the run opens: `max_connections` is raised to it only when
    /// the server's default would refuse some.
    pub connections: usize,
    /// `auth.mode = "token"`: the run issues itself an admin token (preloads, counts,
    /// metrics) and a write token (the workers) for every database, and each
    /// connection authenticates with its token before anything else.
    pub auth_token: bool,
}

/// The server's default `max_connections`.
const DEFAULT_MAX_CONNECTIONS: usize = 1024;

impl ServerSpec {
    /// Every setting of the run's configuration that is not the server's default
    /// (`key = value`, as written), besides where its files and socket are: what the
    /// report must print so a figure is never mistaken for the defaults'.
    pub fn non_default(&self) -> Vec<String> {
        let mut v = vec!["log_level = \"warn\"".to_owned()];
        if self.connections > DEFAULT_MAX_CONNECTIONS {
            v.push(format!("max_connections = {}", self.connections));
        }
        if let Some(mb) = self.memory_mb {
            v.push(format!("memory.global_capacity_mb = {mb}"));
            v.push(format!("memory.per_db_limit_mb = {mb}"));
        }
        if let Some(mb) = self.cache_mb {
            v.push(format!("memory.shared_cache_mb = {mb}"));
        }
        if let Some(n) = self.max_open_dbs {
            v.push(format!("db.max_open_dbs = {n}"));
        }
        if let Some(p) = &self.policy {
            v.push(format!("sched.policy = {p:?}"));
        }
        if let Some(w) = self.workers {
            v.push(format!("sched.workers = {w}"));
        }
        if self.auth_token {
            v.push("auth.mode = \"token\"".to_owned());
        }
        if self.fsync_mode != FsyncMode::Group {
            v.push(format!(
                "wal.fsync.mode = {:?}",
                format!("{:?}", self.fsync_mode).to_lowercase()
            ));
        }
        v
    }

    /// The TOML configuration of a server for one run: where its files are, then
    /// [`ServerSpec::non_default`].
    fn config(&self, data_dir: &Path, socket: &Path) -> String {
        let mut t = format!(
            "data_dir = {data:?}\nsocket = {socket:?}\n",
            data = data_dir.display().to_string(),
            socket = socket.display().to_string(),
        );
        let mut section = String::new();
        for line in self.non_default() {
            let (key, value) = line.split_once(" = ").unwrap_or((&line, ""));
            let (sect, key) = key.rsplit_once('.').unwrap_or(("", key));
            if sect != section {
                t += &format!("\n[{sect}]\n");
                section = sect.to_owned();
            }
            t += &format!("{key} = {value}\n");
        }
        t
    }
}

/// Where the `docdb` binary is: `DOCDB_BIN`, else next to this executable (or one
/// directory up, for test binaries in `target/<profile>/deps`), else `docdb` on `PATH`.
pub fn find_server_bin() -> PathBuf {
    if let Some(p) = std::env::var_os("DOCDB_BIN") {
        return PathBuf::from(p);
    }
    if let Ok(me) = std::env::current_exe() {
        for dir in me.ancestors().skip(1).take(2) {
            let candidate = dir.join("docdb");
            if candidate.is_file() {
                return candidate;
            }
        }
    }
    PathBuf::from("docdb")
}

/// A server the bench talks to: started by it, or already running.
pub struct DocdbServer {
    socket: PathBuf,
    /// The started server (`None` for `--socket`, or once stopped).
    child: Mutex<KillOnDrop>,
    log: Option<PathBuf>,
    admin: Client,
    /// The token each worker's connection authenticates with, if the server wants one.
    worker_token: Option<String>,
    /// Prefix of database names (unique per run on a shared server).
    prefix: String,
    /// The server's figures as of the last [`DocdbServer::refresh`]: one ListDBs and
    /// one metrics call serve every database of the run (a run may have thousands).
    figures: Mutex<Option<Arc<Figures>>>,
}

struct Figures {
    dbs: Vec<DbInfo>,
    metrics: String,
}

impl DocdbServer {
    /// Uses the server listening on `socket`, authenticating every connection with
    /// `token` if given (it must reach the run's databases and carry the admin right:
    /// the run reads ListDBs and the metrics). Database names get a prefix unique to
    /// this run so they never collide with existing ones.
    pub fn existing(socket: &Path, token: Option<&str>) -> anyhow::Result<Arc<Self>> {
        let admin = connect(socket, token)
            .with_context(|| format!("connecting to the server at {}", socket.display()))?;
        static RUN: AtomicU64 = AtomicU64::new(0);
        let secs = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_secs());
        let prefix = format!(
            "bench-{secs}-{}-{}-",
            std::process::id(),
            RUN.fetch_add(1, Ordering::Relaxed)
        );
        Ok(Arc::new(DocdbServer {
            socket: socket.to_path_buf(),
            child: Mutex::new(KillOnDrop(None)),
            log: None,
            admin,
            worker_token: token.map(str::to_owned),
            prefix,
            figures: Mutex::new(None),
        }))
    }

    /// Starts `docdb serve` on `dir` (data in `dir/data`, its log in
    /// `dir/server.log`) and waits until it accepts connections.
    pub fn start(spec: &ServerSpec, dir: &Path) -> anyhow::Result<Arc<Self>> {
        let data = dir.join("data");
        let mut socket = dir.join("docdb.sock");
        if socket.as_os_str().len() > MAX_SOCKET_PATH {
            static N: AtomicU64 = AtomicU64::new(0);
            socket = std::env::temp_dir().join(format!(
                "docdb-bench-{}-{}.sock",
                std::process::id(),
                N.fetch_add(1, Ordering::Relaxed)
            ));
        }
        let config = dir.join("server.toml");
        std::fs::write(&config, spec.config(&data, &socket))
            .with_context(|| format!("writing {}", config.display()))?;
        let tokens = if spec.auth_token {
            Some((
                issue_token(&spec.bin, &data, "admin")?,
                issue_token(&spec.bin, &data, "write")?,
            ))
        } else {
            None
        };
        let (admin_token, worker_token) = tokens.unzip();
        let log = dir.join("server.log");
        let out = File::create(&log).with_context(|| format!("creating {}", log.display()))?;
        let err = out.try_clone().context("duplicating the log file handle")?;
        let child = Command::new(&spec.bin)
            .arg("serve")
            .arg("--config")
            .arg(&config)
            .stdin(Stdio::null())
            .stdout(out)
            .stderr(err)
            .spawn()
            .with_context(|| {
                format!(
                    "starting the server {} (give its path with --server-bin or DOCDB_BIN)",
                    spec.bin.display()
                )
            })?;
        // Killed if it never comes up.
        let mut child = KillOnDrop(Some(child));
        let deadline = Instant::now() + START_TIMEOUT;
        let admin = loop {
            if let Some(status) = child.0.as_mut().and_then(|c| c.try_wait().ok().flatten()) {
                anyhow::bail!("the server exited at start ({status}): {}", log_tail(&log));
            }
            match connect(&socket, admin_token.as_deref()) {
                Ok(c) => break c,
                Err(_) if Instant::now() < deadline => {
                    std::thread::sleep(Duration::from_millis(20));
                }
                Err(e) => anyhow::bail!(
                    "the server did not accept connections within {START_TIMEOUT:?}: {e}; {}",
                    log_tail(&log)
                ),
            }
        };
        Ok(Arc::new(DocdbServer {
            socket,
            child: Mutex::new(KillOnDrop(child.0.take())),
            log: Some(log),
            admin,
            worker_token,
            prefix: String::new(),
            figures: Mutex::new(None),
        }))
    }

    /// A new connection for one worker, opening database `name` on it: under
    /// `--auth token` a connection may only use the databases it opened itself.
    fn worker(&self, name: &str) -> anyhow::Result<Database> {
        let client =
            connect(&self.socket, self.worker_token.as_deref()).context("connecting a worker")?;
        client
            .open_db(name)
            .with_context(|| format!("opening database {name} on a worker's connection"))
    }

    /// Resident and peak resident memory of a started server, bytes.
    pub fn rss(&self) -> Option<(u64, u64)> {
        let pid = lock(&self.child).0.as_ref()?.id();
        let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
        let field = |name: &str| -> Option<u64> {
            let line = status.lines().find(|l| l.starts_with(name))?;
            let kb: u64 = line[name.len()..]
                .trim()
                .trim_end_matches("kB")
                .trim()
                .parse()
                .ok()?;
            Some(kb * 1024)
        };
        Some((field("VmRSS:")?, field("VmHWM:")?))
    }

    /// Opens (creating) the database of index `index`.
    pub fn open(self: &Arc<Self>, index: usize) -> anyhow::Result<DocdbTarget> {
        let name = format!("{}db{index}", self.prefix);
        let db = self
            .admin
            .open_db(&name)
            .with_context(|| format!("opening database {name} on the server"))?;
        Ok(DocdbTarget {
            server: self.clone(),
            db,
            name,
        })
    }

    /// Stops a started server: SIGTERM, then waits for a clean exit (SIGKILL after
    /// [`STOP_TIMEOUT`]). A server that does not exit 0 is an error.
    pub fn stop(&self) -> anyhow::Result<()> {
        let Some(mut child) = lock(&self.child).0.take() else {
            return Ok(());
        };
        let pid = libc::pid_t::try_from(child.id()).context("server pid out of range")?;
        // SAFETY: plain kill(2) on our own child, which has not been reaped yet (so
        // the pid cannot have been reused).
        unsafe { libc::kill(pid, libc::SIGTERM) };
        let deadline = Instant::now() + STOP_TIMEOUT;
        let status = loop {
            match child.try_wait().context("waiting for the server")? {
                Some(s) => break s,
                None if Instant::now() < deadline => {
                    std::thread::sleep(Duration::from_millis(20));
                }
                None => {
                    let _ = child.kill();
                    let _ = child.wait();
                    anyhow::bail!(
                        "the server did not exit within {STOP_TIMEOUT:?} of SIGTERM: {}",
                        self.log_tail()
                    );
                }
            }
        };
        anyhow::ensure!(
            status.success(),
            "the server exited with {status}: {}",
            self.log_tail()
        );
        Ok(())
    }

    fn log_tail(&self) -> String {
        self.log.as_deref().map(log_tail).unwrap_or_default()
    }

    /// Reads the server's figures (ListDBs and metrics) for the next
    /// [`Target::count`] and [`Target::engine_stats`] calls.
    pub fn refresh(&self) -> anyhow::Result<()> {
        let dbs = self.admin.list_dbs().context("ListDBs")?;
        let metrics = self.admin.metrics().context("Metrics")?;
        *lock(&self.figures) = Some(Arc::new(Figures { dbs, metrics }));
        Ok(())
    }

    fn figures(&self) -> anyhow::Result<Arc<Figures>> {
        if let Some(f) = lock(&self.figures).clone() {
            return Ok(f);
        }
        self.refresh()?;
        lock(&self.figures)
            .clone()
            .context("the server's figures were just read")
    }

    /// Database `db`'s line of the last ListDBs read (see [`DocdbServer::refresh`]).
    fn info(&self, db: &Database) -> anyhow::Result<DbInfo> {
        self.figures()?
            .dbs
            .iter()
            .find(|d| d.id == db.id())
            .cloned()
            .with_context(|| format!("database {} is not in ListDBs", db.name()))
    }

    /// Group-commit figures of database `id` from the server's metrics (zeros when
    /// they cannot be read).
    fn group_commit(&self, text: &str, id: u64) -> GroupCommitStats {
        let label = format!("{{db=\"{id}\"}} ");
        let get = |metric: &str| -> f64 {
            let prefix = format!("{metric}{label}");
            text.lines()
                .find_map(|l| l.strip_prefix(&prefix))
                .and_then(|v| v.trim().parse().ok())
                .unwrap_or(0.0)
        };
        GroupCommitStats {
            total_batches: get("docdb_wal_group_commit_batches_total") as u64,
            total_records: get("docdb_wal_group_commit_records_total") as u64,
            avg_batch_size: get("docdb_wal_group_commit_avg_batch_size"),
            max_batch_size: get("docdb_wal_group_commit_max_batch_size") as u64,
            avg_batch_latency_ns: (get("docdb_wal_group_commit_avg_batch_latency_seconds") * 1e9)
                as u64,
            max_batch_latency_ns: (get("docdb_wal_group_commit_max_batch_latency_seconds") * 1e9)
                as u64,
            last_flush_time_unix_ns: 0,
        }
    }
}

/// One connection to the server at `socket`, authenticated with `token` if given.
fn connect(socket: &Path, token: Option<&str>) -> docdb_client::Result<Client> {
    match token {
        Some(t) => Client::with_options(socket, docdb_client::ClientOptions::new().token(t)),
        None => Client::connect(socket),
    }
}

/// A token for every database with `rights`, from `docdb token issue` on `data`
/// (which creates the signing key on first use).
fn issue_token(bin: &Path, data: &Path, rights: &str) -> anyhow::Result<String> {
    let out = Command::new(bin)
        .args([
            "token",
            "issue",
            "--db",
            "*",
            "--rights",
            rights,
            "--data-dir",
        ])
        .arg(data)
        .stdin(Stdio::null())
        .output()
        .with_context(|| format!("running {} token issue", bin.display()))?;
    anyhow::ensure!(
        out.status.success(),
        "{} token issue failed ({}): {}",
        bin.display(),
        out.status,
        String::from_utf8_lossy(&out.stderr).trim()
    );
    let token = String::from_utf8(out.stdout).context("the token is not UTF-8")?;
    Ok(token.trim().to_owned())
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

/// A child process killed (and reaped) when dropped unless taken out.
struct KillOnDrop(Option<Child>);

impl Drop for KillOnDrop {
    fn drop(&mut self) {
        if let Some(mut child) = self.0.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

/// The end of the server's log, for an error message.
fn log_tail(path: &Path) -> String {
    let mut text = String::new();
    if let Ok(mut f) = File::open(path) {
        let len = f.metadata().map_or(0, |m| m.len());
        let _ = f.seek(SeekFrom::Start(len.saturating_sub(2000)));
        let _ = f.read_to_string(&mut text);
    }
    format!("server log {}: {}", path.display(), text.trim())
}

/// Writes `docs` into `collection` of `db` (`""` = `_default`) in transactions of at
/// most [`PRELOAD_BATCH_DOCS`] documents and [`PRELOAD_BATCH_BYTES`].
fn load(
    db: &Database,
    collection: &str,
    docs: &mut dyn Iterator<Item = (u64, Vec<u8>)>,
    progress: &dyn Fn(u64),
) -> anyhow::Result<u64> {
    preload_in_chunks(
        docs,
        (PRELOAD_BATCH_DOCS, PRELOAD_BATCH_BYTES),
        progress,
        |chunk| {
            let first = chunk.first().map_or(0, |c| c.0);
            let last = chunk.last().map_or(0, |c| c.0);
            let batch = chunk
                .into_iter()
                .fold(Batch::new().collection(collection), |b, (id, body)| {
                    b.create(id, body)
                });
            db.transaction(&batch).map(drop).with_context(|| {
                format!(
                    "loading documents {first}..={last} into {} on the server",
                    db.name()
                )
            })
        },
    )
}

fn classify(e: Error) -> OpError {
    match e {
        Error::NotFound(_) => OpError::NotFound,
        Error::Conflict(t) if t == "document already exists" => OpError::AlreadyExists,
        Error::Conflict(_) => OpError::Conflict,
        Error::MemoryLimit(_) => OpError::MemoryLimit,
        e => OpError::Other(e.to_string()),
    }
}

/// One database on the server.
pub struct DocdbTarget {
    server: Arc<DocdbServer>,
    db: Database,
    name: String,
}

/// One worker's connection.
pub struct DocdbSession {
    db: Database,
}

impl Session for DocdbSession {
    fn create(&mut self, id: u64, body: &[u8]) -> OpResult<()> {
        self.db.create(id, body).map_err(classify)
    }

    fn read(&mut self, id: u64) -> OpResult<Vec<u8>> {
        self.db.read(id).map_err(classify)
    }

    fn update(&mut self, id: u64, body: &[u8]) -> OpResult<()> {
        self.db.update(id, body).map_err(classify)
    }

    fn delete(&mut self, id: u64) -> OpResult<()> {
        self.db.delete(id).map_err(classify)
    }
}

impl Target for DocdbTarget {
    fn kind(&self) -> TargetKind {
        TargetKind::Docdb
    }

    fn session(&self) -> anyhow::Result<Box<dyn Session>> {
        Ok(Box::new(DocdbSession {
            db: self.server.worker(&self.name)?,
        }))
    }

    fn preload(
        &self,
        docs: &mut dyn Iterator<Item = (u64, Vec<u8>)>,
        progress: &dyn Fn(u64),
    ) -> anyhow::Result<u64> {
        load(&self.db, "", docs, progress)
    }

    fn count(&self) -> anyhow::Result<u64> {
        Ok(self.server.info(&self.db)?.docs_live)
    }

    fn engine_stats(&self) -> Option<EngineStats> {
        let f = self.server.figures().ok()?;
        let info = self.server.info(&self.db).ok()?;
        Some(EngineStats {
            group_commit: self.server.group_commit(&f.metrics, self.db.id()),
            wal_bytes: info.wal_size,
            wal_growth_bytes: 0,
            data_bytes: 0,
            live_docs: info.docs_live,
        })
    }

    fn close(self: Box<Self>) -> anyhow::Result<()> {
        Ok(())
    }
}

/// The `query` scenario's database on the server.
pub struct DocdbQuery {
    server: Arc<DocdbServer>,
    db: Database,
}

impl DocdbQuery {
    /// Opens database 0 of the run and creates the query collection in it.
    pub fn open(server: &Arc<DocdbServer>) -> anyhow::Result<Self> {
        let t = server.open(0)?;
        for c in [QUERY_COLLECTION, PLAIN_COLLECTION] {
            t.db.create_collection(c)
                .with_context(|| format!("creating collection {c} on the server"))?;
        }
        Ok(DocdbQuery {
            server: server.clone(),
            db: t.db,
        })
    }
}

/// One worker's connection in the `query` scenario.
pub struct DocdbQuerySession {
    db: Database,
}

fn eq_query(db: &Database, field: &str, value: &str) -> docdb_client::Query {
    db.collection(QUERY_COLLECTION)
        .query()
        .filter(serde_json::json!({ field: value }))
        .limit(QUERY_LIMIT)
}

fn range_query(db: &Database, field: &str, lo: i64, hi: i64) -> docdb_client::Query {
    db.collection(QUERY_COLLECTION)
        .query()
        .filter(serde_json::json!({ field: {"$gte": lo, "$lt": hi} }))
        .limit(QUERY_LIMIT)
}

/// A page's rows as the server's JSON text, like a by-id read's (the run checks them
/// by parsing; timing a parse into `Value` would measure serde_json).
fn rows(q: docdb_client::Query) -> OpResult<Vec<Row>> {
    let page = q
        .page_as::<Box<serde_json::value::RawValue>>()
        .map_err(classify)?;
    Ok(page
        .rows
        .into_iter()
        .map(|r| Row {
            id: r.id,
            doc: RowDoc::Text(r.doc.get().as_bytes().to_vec()),
        })
        .collect())
}

impl QuerySession for DocdbQuerySession {
    fn create(&mut self, indexed: bool, id: u64, body: &[u8]) -> OpResult<()> {
        self.db
            .collection(query_collection(indexed))
            .create(id, body)
            .map_err(classify)
    }

    fn read(&mut self, id: u64) -> OpResult<Vec<u8>> {
        self.db
            .collection(QUERY_COLLECTION)
            .read(id)
            .map_err(classify)
    }

    fn find_eq(&mut self, field: &str, value: &str) -> OpResult<Vec<Row>> {
        rows(eq_query(&self.db, field, value))
    }

    fn find_range(&mut self, field: &str, lo: i64, hi: i64) -> OpResult<Vec<Row>> {
        rows(range_query(&self.db, field, lo, hi))
    }
}

impl QueryTarget for DocdbQuery {
    fn load(
        &self,
        docs: &mut dyn Iterator<Item = (u64, Vec<u8>)>,
        progress: &dyn Fn(u64),
    ) -> anyhow::Result<u64> {
        load(&self.db, QUERY_COLLECTION, docs, progress)
    }

    fn create_indexes(&self, fields: &[&str]) -> anyhow::Result<()> {
        for f in fields {
            let spec = docdb_client::IndexSpec::new(format!("by_{f}")).asc(*f);
            self.db
                .create_index(QUERY_COLLECTION, &spec)
                .with_context(|| format!("creating the index on {f} on the server"))?;
        }
        Ok(())
    }

    fn session(&self) -> anyhow::Result<Box<dyn QuerySession>> {
        Ok(Box::new(DocdbQuerySession {
            db: self.server.worker(self.db.name())?,
        }))
    }

    fn count(&self) -> anyhow::Result<u64> {
        self.server.refresh()?;
        Ok(self.server.info(&self.db)?.docs_live)
    }

    fn memory_used(&self) -> Option<u64> {
        self.server.refresh().ok()?;
        Some(self.server.info(&self.db).ok()?.memory_used)
    }

    fn explain(&self, eq: (&str, &str), range: (&str, i64, i64)) -> Vec<String> {
        let indexes = match self.db.list_indexes(QUERY_COLLECTION) {
            Ok(list) => list
                .iter()
                .map(|i| {
                    format!(
                        "{}: {} entries, {:.1} MiB counted towards the memory limit",
                        i.name,
                        i.entries,
                        i.memory_bytes as f64 / (1024.0 * 1024.0)
                    )
                })
                .collect::<Vec<_>>()
                .join("; "),
            Err(e) => format!("ListIndexes: {e}"),
        };
        [
            ("equality", eq_query(&self.db, eq.0, eq.1)),
            ("range", range_query(&self.db, range.0, range.1, range.2)),
        ]
        .into_iter()
        .map(|(what, q)| match q.explain(true).page() {
            Ok(p) => format!(
                "{what} plan: {}",
                p.plan.map(|p| p.to_string()).unwrap_or_default()
            ),
            Err(e) => format!("{what} plan: {e}"),
        })
        .chain([format!("indexes: {indexes}")])
        .collect()
    }

    fn close(self: Box<Self>) -> anyhow::Result<()> {
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec() -> ServerSpec {
        ServerSpec {
            bin: PathBuf::from("docdb"),
            fsync_mode: FsyncMode::Group,
            policy: None,
            workers: None,
            memory_mb: None,
            max_open_dbs: None,
            cache_mb: None,
            connections: 34,
            auth_token: false,
        }
    }

    #[test]
    fn a_run_on_the_defaults_changes_only_the_log_level() {
        let s = spec();
        assert_eq!(s.non_default(), ["log_level = \"warn\""]);
        let t = s.config(Path::new("/d"), Path::new("/s.sock"));
        assert_eq!(
            t,
            "data_dir = \"/d\"\nsocket = \"/s.sock\"\nlog_level = \"warn\"\n"
        );
    }

    #[test]
    fn every_setting_the_run_changes_is_listed_and_written_in_its_section() {
        let s = ServerSpec {
            fsync_mode: FsyncMode::Always,
            policy: Some("deepest".into()),
            workers: Some(3),
            memory_mb: Some(64),
            cache_mb: Some(0),
            connections: 2004,
            auth_token: true,
            ..spec()
        };
        let v = s.non_default();
        for want in [
            "max_connections = 2004",
            "memory.global_capacity_mb = 64",
            "memory.per_db_limit_mb = 64",
            "memory.shared_cache_mb = 0",
            "sched.policy = \"deepest\"",
            "sched.workers = 3",
            "wal.fsync.mode = \"always\"",
            "auth.mode = \"token\"",
        ] {
            assert!(v.iter().any(|l| l == want), "{want} missing from {v:?}");
        }
        let t = s.config(Path::new("/d"), Path::new("/s"));
        assert!(t.contains("max_connections = 2004\n\n[memory]\nglobal_capacity_mb = 64\n"));
        assert!(t.contains("\n[sched]\npolicy = \"deepest\"\nworkers = 3\n"));
        assert!(t.ends_with("\n[wal.fsync]\nmode = \"always\"\n"));
        assert_eq!(t.matches("[memory]").count(), 1);
    }
}
