//! [`Client`]: a cheap, cloneable handle shared by any number of threads, sending every
//! request over one connection (or a few, round-robin) and reconnecting after the
//! connection breaks.
//!
//! Reconnect rules: a request whose connection is found broken *before* its frame
//! left is sent again on a new connection; a request already in flight when the
//! connection broke fails with [`Error::Io`] (it may or may not have been applied —
//! only the caller can decide whether to repeat it). A new connection is attempted
//! with exponential backoff until [`ClientOptions::reconnect_timeout`] has passed.
//! Database ids survive server restarts, so [`Database`] handles stay valid.

use std::fmt;
use std::io;
use std::path::Path;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use docdb_protocol::{Command, Op, OpType, Request, Response};

use crate::connection::{lock, Connection, Endpoint, SendError, Ticket};
use crate::database::Database;
use crate::error::{Error, Result};
use crate::stats::{DbInfo, Stats};
use crate::tls::{TcpTarget, Tls};

/// How a [`Client`] connects and reconnects.
#[derive(Debug, Clone)]
pub struct ClientOptions {
    connections: usize,
    reconnect_timeout: Duration,
    initial_backoff: Duration,
    max_backoff: Duration,
    request_timeout: Option<Duration>,
    connect_timeout: Duration,
    token: Option<String>,
}

impl Default for ClientOptions {
    fn default() -> Self {
        ClientOptions {
            connections: 1,
            reconnect_timeout: Duration::from_secs(2),
            initial_backoff: Duration::from_millis(10),
            max_backoff: Duration::from_millis(500),
            request_timeout: None,
            connect_timeout: Duration::from_secs(5),
            token: None,
        }
    }
}

impl ClientOptions {
    pub fn new() -> Self {
        Self::default()
    }

    /// Authenticate every connection with this token (Auth) as soon as it is made,
    /// reconnects included (servers run with `--auth token`).
    pub fn token(mut self, token: impl Into<String>) -> Self {
        self.token = Some(token.into());
        self
    }

    /// Number of connections, used round-robin (default 1). One connection already
    /// carries many requests in flight; more spread the client-side reading and
    /// writing over several threads.
    pub fn connections(mut self, n: usize) -> Self {
        self.connections = n.max(1);
        self
    }

    /// How long a call keeps trying to re-establish a broken connection before it
    /// fails with [`Error::Io`] (default 2 s).
    pub fn reconnect_timeout(mut self, t: Duration) -> Self {
        self.reconnect_timeout = t;
        self
    }

    /// Delay before the first reconnect retry, doubled after each failure up to `max`
    /// (defaults 10 ms and 500 ms).
    pub fn backoff(mut self, initial: Duration, max: Duration) -> Self {
        self.initial_backoff = initial;
        self.max_backoff = max.max(initial);
        self
    }

    /// Over TCP, how long one attempt to connect may take: the TCP connect to each
    /// address the host resolves to, then the TLS handshake (default 5 s).
    pub fn connect_timeout(mut self, t: Duration) -> Self {
        self.connect_timeout = t;
        self
    }

    /// Fail a call with an [`io::ErrorKind::TimedOut`] error when its response takes
    /// longer than this (default: wait as long as it takes). The connection stays
    /// usable; a late response is discarded. Also bounds the time to write a request
    /// to a server that stopped reading (the connection is then replaced).
    pub fn request_timeout(mut self, t: Option<Duration>) -> Self {
        self.request_timeout = t;
        self
    }
}

/// A connection to a DocDB server. `Clone + Send + Sync`: clones share the connection,
/// and any number of threads may call at once, each request in flight at the same
/// time (pipelining).
#[doc(alias = "Pool")]
#[derive(Clone)]
pub struct Client {
    inner: Arc<Inner>,
}

struct Inner {
    endpoint: Endpoint,
    opts: ClientOptions,
    slots: Box<[Slot]>,
    next_slot: AtomicUsize,
    /// The token of the last successful [`Client::auth`], sent again on every new
    /// connection.
    token: Mutex<Option<String>>,
    /// Databases opened under a token: a server with access control lets a
    /// connection use only ids it opened itself, so every connection (and every
    /// reconnect) opens them too.
    names: Mutex<Vec<String>>,
}

/// What an Auth granted: the server's reply.
#[derive(Debug, Clone, PartialEq, Eq, serde::Deserialize)]
pub struct AuthInfo {
    /// Database-name pattern the connection may reach.
    pub db: String,
    /// `read`, `write` or `admin`.
    pub rights: String,
    /// Unix seconds, or never.
    pub expires: Option<u64>,
}

/// One connection of the client, replaced when it breaks.
struct Slot {
    conn: Mutex<Option<Arc<Connection>>>,
    /// Counts failed reconnect rounds, so threads that waited for one round do not
    /// each start another (N threads × 2 s).
    failures: AtomicU64,
    last_failure: Mutex<Option<(io::ErrorKind, String)>>,
}

impl fmt::Debug for Client {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut d = f.debug_struct("Client");
        match &self.inner.endpoint {
            Endpoint::Unix(p) => d.field("socket", p),
            Endpoint::Tcp(t) => d.field("tcp", t),
        };
        d.field("connections", &self.inner.slots.len()).finish()
    }
}

impl Client {
    /// Connects to the server listening on the Unix socket `path` (one attempt: a
    /// server that is not there is reported at once).
    pub fn connect(path: impl AsRef<Path>) -> Result<Client> {
        Self::with_options(path, ClientOptions::default())
    }

    /// Connects with `n` connections used round-robin.
    pub fn pool(path: impl AsRef<Path>, n: usize) -> Result<Client> {
        Self::with_options(path, ClientOptions::default().connections(n))
    }

    /// Connects with explicit options; every connection is opened up front.
    pub fn with_options(path: impl AsRef<Path>, opts: ClientOptions) -> Result<Client> {
        Self::open(Endpoint::Unix(path.as_ref().to_path_buf()), opts)
    }

    /// Connects to a server listening on TCP (`docdb serve --listen`), `addr` being
    /// `HOST:PORT` (`[::1]:PORT` for IPv6); `tls` says how the connection is secured,
    /// and the host part is the name the server's certificate must carry. The server
    /// answers nothing over TCP before Auth: give the token with
    /// [`ClientOptions::token`] ([`Client::with_options_tcp`]) or call
    /// [`Client::auth`] first.
    ///
    /// A failure is [`Error::ConnectTcp`]: the address unreachable, a bad CA file, a
    /// certificate the CA did not sign or that does not name the host, plain TCP to a
    /// host that is not loopback.
    pub fn connect_tcp(addr: &str, tls: Tls) -> Result<Client> {
        Self::with_options_tcp(addr, tls, ClientOptions::default())
    }

    /// [`Client::connect_tcp`] with explicit options (every connection is opened, its
    /// TLS handshake done and, with a token, authenticated up front).
    pub fn with_options_tcp(addr: &str, tls: Tls, opts: ClientOptions) -> Result<Client> {
        let target = TcpTarget::new(addr, &tls).map_err(|source| Error::ConnectTcp {
            addr: addr.to_string(),
            source,
        })?;
        Self::open(Endpoint::Tcp(target), opts)
    }

    fn open(endpoint: Endpoint, opts: ClientOptions) -> Result<Client> {
        let mut slots = Vec::with_capacity(opts.connections);
        for _ in 0..opts.connections {
            let conn = Connection::open(&endpoint, opts.request_timeout, opts.connect_timeout)
                .map_err(|source| connect_error(&endpoint, source))?;
            slots.push(Slot {
                conn: Mutex::new(Some(Arc::new(conn))),
                failures: AtomicU64::new(0),
                last_failure: Mutex::new(None),
            });
        }
        let token = opts.token.clone();
        let client = Client {
            inner: Arc::new(Inner {
                endpoint,
                opts,
                slots: slots.into_boxed_slice(),
                next_slot: AtomicUsize::new(0),
                token: Mutex::new(None),
                names: Mutex::new(Vec::new()),
            }),
        };
        if let Some(t) = token {
            client.auth(&t)?;
        }
        Ok(client)
    }

    /// Authenticates every connection of this client with `token` (Auth, command
    /// 16); new connections made later are authenticated too. A refused token is
    /// [`Error::Denied`] with the server's reason.
    pub fn auth(&self, token: &str) -> Result<AuthInfo> {
        let mut info = None;
        for slot in self.inner.slots.iter() {
            let conn = self.connection(slot)?;
            let op = Op::new(OpType::Create, "", 0, token.as_bytes().to_vec());
            let data = ok_data(self.call_on(&conn, 0, Command::Auth, vec![op])?)?;
            info = Some(json_reply::<AuthInfo>(&data, "Auth")?);
        }
        *lock(&self.inner.token) = Some(token.to_string());
        info.ok_or_else(|| Error::protocol("a client has at least one connection"))
    }

    /// Sends one request on `conn` and waits for its response.
    fn call_on(
        &self,
        conn: &Arc<Connection>,
        db_id: u64,
        command: Command,
        ops: Vec<Op>,
    ) -> Result<Response> {
        let mut req = Request {
            request_id: 0,
            db_id,
            command: command as u8,
            ops,
        };
        let ticket = conn.send(&mut req).map_err(|e| match e {
            SendError::Refused(e) | SendError::NotSent(e) => e,
        })?;
        conn.wait(ticket, self.inner.opts.request_timeout)
    }

    /// Brings a new connection to the client's state: Auth, then the databases
    /// opened so far.
    fn handshake(&self, conn: &Arc<Connection>) -> Result<()> {
        let Some(token) = lock(&self.inner.token).clone() else {
            return Ok(());
        };
        let op = Op::new(OpType::Create, "", 0, token.into_bytes());
        ok_data(self.call_on(conn, 0, Command::Auth, vec![op])?)?;
        let names = lock(&self.inner.names).clone();
        for name in names {
            let op = Op::new(OpType::Create, "", 0, name.into_bytes());
            ok_data(self.call_on(conn, 0, Command::OpenDb, vec![op])?)?;
        }
        Ok(())
    }

    /// The socket this client connects to (empty for a TCP client).
    pub fn socket_path(&self) -> &Path {
        match &self.inner.endpoint {
            Endpoint::Unix(p) => p,
            Endpoint::Tcp(_) => Path::new(""),
        }
    }

    /// The `HOST:PORT` this client connects to, for a TCP client.
    pub fn tcp_addr(&self) -> Option<&str> {
        match &self.inner.endpoint {
            Endpoint::Unix(_) => None,
            Endpoint::Tcp(t) => Some(&t.addr),
        }
    }

    /// Opens the database `name`, creating it on first use (OpenDB). The handle keeps
    /// the database's id, which stays valid across reconnects and server restarts.
    pub fn open_db(&self, name: &str) -> Result<Database> {
        let op = Op::new(OpType::Create, "", 0, name.as_bytes().to_vec());
        let id = self.request(0, Command::OpenDb, vec![op], |resp| {
            let data = ok_data(resp)?;
            let bytes: [u8; 8] = data.as_slice().try_into().map_err(|_| {
                Error::protocol(format!(
                    "OpenDB reply of {} bytes, expected a u64",
                    data.len()
                ))
            })?;
            Ok(u64::from_le_bytes(bytes))
        })?;
        if lock(&self.inner.token).is_some() {
            // Under access control each connection may use only the ids it opened.
            {
                let mut names = lock(&self.inner.names);
                if !names.iter().any(|n| n == name) {
                    names.push(name.to_string());
                }
            }
            if self.inner.slots.len() > 1 {
                for slot in self.inner.slots.iter() {
                    let conn = self.connection(slot)?;
                    let op = Op::new(OpType::Create, "", 0, name.as_bytes().to_vec());
                    ok_data(self.call_on(&conn, 0, Command::OpenDb, vec![op])?)?;
                }
            }
        }
        Ok(Database::new(self.clone(), id, name))
    }

    /// A handle on the database with id `id` without asking the server (ids are
    /// stable, so one saved earlier stays valid). Its [`Database::name`] is empty.
    /// Requests on an id the server does not know fail with `database not open`.
    pub fn database_by_id(&self, id: u64) -> Database {
        Database::new(self.clone(), id, "")
    }

    /// Drops database `name` (DropDB): the server closes it, answers its pending and
    /// later requests `database was dropped`, removes its files and frees the name (a
    /// later [`Client::open_db`] makes a new, empty database with a new id). An unknown
    /// name is [`Error::NotFound`]. Under token auth it needs an admin token.
    pub fn drop_db(&self, name: &str) -> Result<()> {
        let op = Op::new(OpType::Create, "", 0, name.as_bytes().to_vec());
        self.request(0, Command::DropDb, vec![op], |resp| ok_data(resp).map(drop))
    }

    /// Server-wide counters (Stats).
    pub fn stats(&self) -> Result<Stats> {
        self.request(0, Command::Stats, Vec::new(), |resp| {
            Stats::decode(&ok_data(resp)?)
        })
    }

    /// Every active database with its sizes (ListDBs).
    pub fn list_dbs(&self) -> Result<Vec<DbInfo>> {
        self.request(0, Command::ListDbs, Vec::new(), |resp| {
            json_reply(&ok_data(resp)?, "ListDBs")
        })
    }

    /// The Prometheus text exposition (Metrics).
    pub fn metrics(&self) -> Result<String> {
        self.request(0, Command::Metrics, Vec::new(), |resp| {
            String::from_utf8(ok_data(resp)?)
                .map_err(|_| Error::protocol("Metrics reply is not UTF-8"))
        })
    }

    /// Scheduler, worker-pool and group-commit figures (SchedulerStats), as JSON.
    pub fn scheduler_stats(&self) -> Result<serde_json::Value> {
        self.request(0, Command::SchedulerStats, Vec::new(), |resp| {
            json_reply(&ok_data(resp)?, "SchedulerStats")
        })
    }

    /// Sends a raw request and waits for its raw response, whatever its status:
    /// the escape hatch for tools that speak the protocol directly.
    pub fn call(&self, db_id: u64, command: Command, ops: Vec<Op>) -> Result<Response> {
        self.submit(db_id, command, ops)?.wait()
    }

    /// Sends a raw request without waiting: the response is collected later with
    /// [`Pending::wait`], so one thread can keep many requests in flight.
    pub fn submit(&self, db_id: u64, command: Command, ops: Vec<Op>) -> Result<Pending<Response>> {
        self.submit_with(db_id, command, ops, Ok)
    }

    /// Sends a request; `decode` turns its response into the caller's result.
    pub(crate) fn submit_with<T>(
        &self,
        db_id: u64,
        command: Command,
        ops: Vec<Op>,
        decode: impl FnOnce(Response) -> Result<T> + Send + 'static,
    ) -> Result<Pending<T>> {
        self.submit_code(db_id, command as u8, ops, decode)
    }

    /// [`Client::submit_with`] with a raw command byte (a command with a flag such as
    /// [`docdb_protocol::PER_OP_STATUS`]).
    pub(crate) fn submit_code<T>(
        &self,
        db_id: u64,
        command: u8,
        ops: Vec<Op>,
        decode: impl FnOnce(Response) -> Result<T> + Send + 'static,
    ) -> Result<Pending<T>> {
        let mut req = Request {
            request_id: 0,
            db_id,
            command,
            ops,
        };
        let n = self.inner.slots.len();
        let slot = &self.inner.slots[self.inner.next_slot.fetch_add(1, Ordering::Relaxed) % n];
        // A request that never left is sent again on a fresh connection; each round
        // has its own reconnect budget, and three rounds in a row only happen if the
        // server keeps dropping new connections.
        let mut rounds = 0;
        loop {
            let conn = self.connection(slot)?;
            match conn.send(&mut req) {
                Ok(ticket) => {
                    return Ok(Pending {
                        conn,
                        ticket,
                        timeout: self.inner.opts.request_timeout,
                        decode: Box::new(decode),
                    })
                }
                Err(SendError::Refused(e)) => return Err(e),
                Err(SendError::NotSent(e)) => {
                    rounds += 1;
                    if rounds >= 3 {
                        return Err(e);
                    }
                }
            }
        }
    }

    /// Sends a request and waits for its decoded result.
    pub(crate) fn request<T>(
        &self,
        db_id: u64,
        command: Command,
        ops: Vec<Op>,
        decode: impl FnOnce(Response) -> Result<T> + Send + 'static,
    ) -> Result<T> {
        self.submit_with(db_id, command, ops, decode)?.wait()
    }

    /// The slot's live connection, reconnecting if it broke.
    fn connection(&self, slot: &Slot) -> Result<Arc<Connection>> {
        let failures_seen = slot.failures.load(Ordering::Acquire);
        let mut conn = lock(&slot.conn);
        if let Some(c) = conn.as_ref().filter(|c| c.is_alive()) {
            return Ok(c.clone());
        }
        if slot.failures.load(Ordering::Acquire) != failures_seen {
            // Another thread just spent the reconnect budget while this one waited
            // for the lock: report its failure rather than start over.
            if let Some((kind, msg)) = lock(&slot.last_failure).clone() {
                return Err(Error::Io(io::Error::new(kind, msg)));
            }
        }
        // Drop the dead connection first.
        *conn = None;
        match self.reconnect() {
            Ok(c) => {
                let c = Arc::new(c);
                self.handshake(&c)?;
                *conn = Some(c.clone());
                Ok(c)
            }
            Err(e) => {
                *lock(&slot.last_failure) = Some((e.kind(), e.to_string()));
                slot.failures.fetch_add(1, Ordering::Release);
                Err(Error::Io(e))
            }
        }
    }

    /// Connects with exponential backoff until the reconnect timeout has passed.
    fn reconnect(&self) -> io::Result<Connection> {
        let opts = &self.inner.opts;
        let deadline = Instant::now() + opts.reconnect_timeout;
        let mut delay = opts.initial_backoff;
        loop {
            match Connection::open(
                &self.inner.endpoint,
                opts.request_timeout,
                opts.connect_timeout,
            ) {
                Ok(c) => return Ok(c),
                Err(e) if !retryable(&e) => return Err(e),
                Err(e) => {
                    let now = Instant::now();
                    if now >= deadline {
                        return Err(io::Error::new(
                            e.kind(),
                            format!(
                                "reconnect to {} failed for {:?}: {e}",
                                self.inner.endpoint, opts.reconnect_timeout
                            ),
                        ));
                    }
                    std::thread::sleep(delay.min(deadline - now));
                    delay = (delay * 2).min(opts.max_backoff);
                }
            }
        }
    }
}

/// Errors a server restart produces (socket missing or refusing for a moment), not
/// those that stay (no permission, a bad address, a certificate the CA did not sign).
fn retryable(e: &io::Error) -> bool {
    !matches!(
        e.kind(),
        io::ErrorKind::PermissionDenied | io::ErrorKind::InvalidInput | io::ErrorKind::InvalidData
    )
}

/// The error of a first connection that failed.
fn connect_error(endpoint: &Endpoint, source: io::Error) -> Error {
    match endpoint {
        Endpoint::Unix(path) => Error::Connect {
            path: path.clone(),
            source,
        },
        Endpoint::Tcp(t) => Error::ConnectTcp {
            addr: t.addr.clone(),
            source,
        },
    }
}

/// A request in flight. [`Pending::wait`] blocks until its response arrives.
#[must_use = "the outcome of a request is only known after `wait`"]
pub struct Pending<T> {
    conn: Arc<Connection>,
    ticket: Ticket,
    timeout: Option<Duration>,
    decode: Box<dyn FnOnce(Response) -> Result<T> + Send>,
}

impl<T> Pending<T> {
    /// Waits for the response. Fails with [`Error::Io`] if the connection breaks
    /// first (the request may or may not have been applied).
    pub fn wait(self) -> Result<T> {
        let resp = self.conn.wait(self.ticket, self.timeout)?;
        (self.decode)(resp)
    }
}

impl<T> fmt::Debug for Pending<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Pending").finish_non_exhaustive()
    }
}

/// The data of an OK response, or the error its status stands for.
pub(crate) fn ok_data(resp: Response) -> Result<Vec<u8>> {
    if resp.status == 0 {
        Ok(resp.data)
    } else {
        Err(Error::from_status(resp.status, &resp.data))
    }
}

/// Parses a JSON reply; a reply that does not parse is the server's fault.
pub(crate) fn json_reply<T: serde::de::DeserializeOwned>(data: &[u8], what: &str) -> Result<T> {
    serde_json::from_slice(data).map_err(|e| Error::protocol(format!("{what} reply: {e}")))
}

#[cfg(test)]
mod tests;
