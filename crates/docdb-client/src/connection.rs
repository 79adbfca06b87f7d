//! One multiplexed connection: many requests in flight, matched to their responses by
//! request id.
//!
//! Callers encode their frame, register under a fresh request id, then write the frame
//! while holding the writer mutex (frames never interleave). There is no reader
//! thread: the callers waiting for responses take turns reading (leader/follower). The
//! first waiter to find nobody reading becomes the reader and reads frames, handing
//! each one to the waiter registered under its id, until its own arrives; then it
//! passes the reading on to another waiter, if any, and returns. A caller with one
//! request in flight thus reads its own response straight off the socket: one thread
//! wake-up per call instead of three.
//!
//! When the stream ends or breaks, the reader marks the connection dead and fails every
//! waiting request; a dead connection never accepts a new registration, so no caller
//! can wait forever. A response the server sends with an id nobody waits for (id 0,
//! `too many connections`, just before it closes) is kept as a note for that error.
//!
//! The transport is an enum: the Unix socket (the benchmarked path, unchanged), plain
//! TCP, or TLS over TCP. With TLS one rustls state serves both directions, behind its
//! own short-held mutex: a writer encrypts under it and writes the records to the
//! socket after releasing it (holding the writer mutex, so records leave in order);
//! the reader first takes plaintext rustls already decrypted, and only when there is
//! none polls the socket, feeds rustls what arrived (perhaps a partial record) and
//! tries again. So a reader never sleeps on a socket while a decrypted response
//! waits in rustls, and a writer blocked on a full socket never keeps the reader from
//! draining responses.
//!
//! Writing to a connection the server closed fails with `EPIPE`, which Rust programs
//! see as an error because the Rust runtime ignores `SIGPIPE`; a host program that
//! restores the default `SIGPIPE` action would be killed instead.

use std::collections::HashMap;
use std::io::{self, Read as _, Write as _};
use std::net::{Shutdown, TcpStream};
use std::os::fd::{AsRawFd, RawFd};
use std::os::unix::net::UnixStream;
use std::path::Path;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::mpsc::{self, Receiver, RecvTimeoutError, SyncSender, TryRecvError};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use docdb_protocol::io::write_all;
use docdb_protocol::{decode_response, encode_request, Request, Response, MAX_FRAME};

use crate::error::{text, Error, Result};
use crate::tls::{Opened, TcpTarget};

/// Locks a mutex, ignoring poisoning: every critical section here leaves its data
/// consistent, so a panic elsewhere must not turn into panics in every caller.
pub(crate) fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}

/// What a waiting caller is told.
enum Msg {
    /// Its response (or why it will never come).
    Done(Result<Response>),
    /// Nobody else is reading: it is the reader now.
    Lead,
}

/// State shared by the callers.
struct Shared {
    state: Mutex<State>,
    /// Set once the connection can no longer be used (mirrors `State::closed`, for a
    /// lock-free check).
    dead: AtomicBool,
}

/// A request in flight.
struct Waiter {
    tx: SyncSender<Msg>,
    /// Its caller is blocked in [`Connection::wait`] (only such a caller can be handed
    /// the turn to read: a pipelining caller may not wait for this one for a while).
    active: bool,
}

struct State {
    /// Requests in flight, by request id. A caller told to lead stays here until its
    /// own response arrives.
    waiting: HashMap<u64, Waiter>,
    /// A caller is reading (or has been told to).
    reading: bool,
    /// Why the connection ended; `Some` means no new request may register.
    closed: Option<Closed>,
    /// An error the server sent with a request id no caller is waiting for (id 0:
    /// `too many connections`, or a frame it could not read) just before closing.
    note: Option<String>,
}

/// Why a connection ended, kept so every waiter can get its own copy of the error.
#[derive(Clone, Debug)]
enum Closed {
    Io(io::ErrorKind, String),
    Protocol(String),
}

impl Closed {
    fn to_error(&self) -> Error {
        match self {
            Closed::Io(kind, msg) => Error::Io(io::Error::new(*kind, msg.clone())),
            Closed::Protocol(msg) => Error::Protocol(msg.clone()),
        }
    }
}

impl Shared {
    /// Marks the connection dead and fails every waiting request; returns why it
    /// ended (with the server's last word, if it sent one).
    fn close(&self, why: Closed) -> Closed {
        let mut st = lock(&self.state);
        let closed = match &st.closed {
            Some(c) => c.clone(),
            None => {
                let c = match (why, &st.note) {
                    (Closed::Io(kind, msg), Some(note)) => {
                        Closed::Io(kind, format!("{msg}; the server said: {note}"))
                    }
                    (why, _) => why,
                };
                st.closed = Some(c.clone());
                c
            }
        };
        self.dead.store(true, Ordering::Release);
        for (_, w) in st.waiting.drain() {
            // A caller that stopped waiting dropped its receiver; nothing to do.
            let _ = w.tx.try_send(Msg::Done(Err(closed.to_error())));
        }
        closed
    }

    /// Hands a response read by the reader to its waiter.
    fn deliver(&self, resp: Response) {
        let mut st = lock(&self.state);
        match st.waiting.remove(&resp.request_id) {
            Some(w) => {
                let _ = w.tx.try_send(Msg::Done(Ok(resp)));
            }
            None => {
                if resp.status != 0 {
                    st.note = Some(String::from_utf8_lossy(&resp.data).into_owned());
                }
            }
        }
    }

    /// The reader stops reading: tell another waiter to take over, if there is one.
    fn pass_lead(&self, st: &mut State) {
        st.reading = false;
        if st.closed.is_some() {
            return;
        }
        if let Some(w) = st.waiting.values().find(|w| w.active) {
            // INVARIANT: a waiter holds at most one message besides Lead (its Done
            // from `close`), and the channel has room for two.
            if w.tx.try_send(Msg::Lead).is_ok() {
                st.reading = true;
            }
        }
    }
}

/// Why a request could not be sent.
pub(crate) enum SendError {
    /// The connection was already broken; the request did not reach the server (or
    /// only part of its frame did, which the server discards), so it is safe to send
    /// it again on a new connection.
    NotSent(Error),
    /// The request itself cannot be sent (too large); retrying will not help.
    Refused(Error),
}

/// Where a connection goes.
#[derive(Debug, Clone)]
pub(crate) enum Endpoint {
    Unix(std::path::PathBuf),
    Tcp(TcpTarget),
}

impl std::fmt::Display for Endpoint {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Endpoint::Unix(p) => write!(f, "{}", p.display()),
            Endpoint::Tcp(t) => f.write_str(&t.addr),
        }
    }
}

/// rustls' state of one TLS connection, shared by its reader and writers.
type TlsState = Arc<Mutex<rustls::ClientConnection>>;

/// Plaintext handed to rustls at a time: small enough that its outgoing buffer never
/// fills between drains.
const TLS_CHUNK: usize = 16 * 1024;

/// The writing side of a connection.
enum WriteHalf {
    Unix(UnixStream),
    Tcp(TcpStream),
    Tls(TcpStream, TlsState),
}

impl WriteHalf {
    /// Writes a whole frame (the caller holds the writer mutex).
    fn write_frame(&mut self, buf: &[u8]) -> io::Result<()> {
        match self {
            WriteHalf::Unix(s) => write_all(s, buf),
            WriteHalf::Tcp(s) => write_all(s, buf),
            WriteHalf::Tls(s, tls) => {
                let mut rest = buf;
                let mut records = Vec::with_capacity(buf.len().min(TLS_CHUNK) + 64);
                loop {
                    {
                        let mut t = lock(tls);
                        if !rest.is_empty() {
                            let n = t.writer().write(&rest[..rest.len().min(TLS_CHUNK)])?;
                            if n == 0 {
                                return Err(io::Error::new(
                                    io::ErrorKind::WriteZero,
                                    "TLS connection no longer accepts data",
                                ));
                            }
                            rest = &rest[n..];
                        }
                        while t.wants_write() {
                            t.write_tls(&mut records)?;
                        }
                    }
                    // Outside rustls' lock: the reader keeps reading meanwhile.
                    write_all(s, &records)?;
                    records.clear();
                    if rest.is_empty() {
                        return Ok(());
                    }
                }
            }
        }
    }

    fn shutdown(&self) {
        let _ = match self {
            WriteHalf::Unix(s) => s.shutdown(Shutdown::Both),
            WriteHalf::Tcp(s) | WriteHalf::Tls(s, _) => s.shutdown(Shutdown::Both),
        };
    }

    fn fd(&self) -> RawFd {
        match self {
            WriteHalf::Unix(s) => s.as_raw_fd(),
            WriteHalf::Tcp(s) | WriteHalf::Tls(s, _) => s.as_raw_fd(),
        }
    }
}

/// The reading side of a connection.
enum ReadHalf {
    Unix(UnixStream),
    Tcp(TcpStream),
    Tls(TcpStream, TlsState),
}

impl ReadHalf {
    /// Reads some bytes into `buf`, waiting until `deadline`; `Ok(0)` is the end of
    /// the stream.
    fn read_some(&mut self, buf: &mut [u8], deadline: Option<Instant>) -> io::Result<usize> {
        match self {
            ReadHalf::Unix(s) => {
                wait_readable(s.as_raw_fd(), deadline)?;
                s.read(buf)
            }
            ReadHalf::Tcp(s) => {
                wait_readable(s.as_raw_fd(), deadline)?;
                s.read(buf)
            }
            ReadHalf::Tls(s, tls) => loop {
                // Plaintext rustls already holds comes first: the socket may have
                // nothing more to say.
                match lock(tls).reader().read(buf) {
                    Ok(n) => return Ok(n),
                    Err(e) if e.kind() == io::ErrorKind::WouldBlock => {}
                    // The TCP stream ended without close_notify: an end like any
                    // other (a cut inside a frame is still caught by the framing).
                    Err(e) if e.kind() == io::ErrorKind::UnexpectedEof => return Ok(0),
                    Err(e) => return Err(e),
                }
                wait_readable(s.as_raw_fd(), deadline)?;
                let mut t = lock(tls);
                // Readable: this read does not block. It may bring only part of a
                // record, in which case no plaintext comes out and we wait again.
                match t.read_tls(&mut &*s) {
                    Ok(_) => {}
                    Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                    Err(e) => return Err(e),
                }
                if let Err(e) = t.process_new_packets() {
                    return Err(io::Error::new(
                        io::ErrorKind::ConnectionAborted,
                        format!("TLS: {e}"),
                    ));
                }
            },
        }
    }

    fn shutdown(&self) {
        let _ = match self {
            ReadHalf::Unix(s) => s.shutdown(Shutdown::Both),
            ReadHalf::Tcp(s) | ReadHalf::Tls(s, _) => s.shutdown(Shutdown::Both),
        };
    }
}

/// Reads whole frames, keeping a partial one across readers (a reader that gives up
/// at its deadline leaves the bytes it read for the next).
struct FrameReader {
    stream: ReadHalf,
    /// Read space, initialized once and reused: zeroing 64 KiB per read cost the
    /// load generator 8 % of its CPU.
    buf: Vec<u8>,
    /// Unconsumed bytes are `buf[start..end]`.
    start: usize,
    end: usize,
}

/// Bytes offered to each `read`.
const READ_CHUNK: usize = 64 * 1024;

impl FrameReader {
    fn new(stream: ReadHalf) -> FrameReader {
        FrameReader {
            stream,
            buf: vec![0; READ_CHUNK],
            start: 0,
            end: 0,
        }
    }

    /// The next frame, reading until `deadline` (forever with `None`). `Ok(None)` is a
    /// clean end of stream between frames.
    fn next(&mut self, deadline: Option<Instant>) -> io::Result<Option<Vec<u8>>> {
        loop {
            let avail = &self.buf[self.start..self.end];
            if avail.len() >= 4 {
                let len = u32::from_le_bytes([avail[0], avail[1], avail[2], avail[3]]) as usize;
                if len > MAX_FRAME {
                    return Err(io::Error::new(
                        io::ErrorKind::InvalidData,
                        "frame size exceeds maximum",
                    ));
                }
                if avail.len() >= 4 + len {
                    let frame = avail[4..4 + len].to_vec();
                    self.start += 4 + len;
                    if self.start == self.end {
                        self.start = 0;
                        self.end = 0;
                        if self.buf.len() > 4 * READ_CHUNK {
                            // A large response grew the space; do not keep it.
                            self.buf.truncate(READ_CHUNK);
                            self.buf.shrink_to_fit();
                        }
                    }
                    return Ok(Some(frame));
                }
            }
            if self.buf.len() - self.end < READ_CHUNK {
                // Move the partial frame to the front, growing only for a frame
                // larger than the space (zeroing just the new part).
                self.buf.copy_within(self.start..self.end, 0);
                self.end -= self.start;
                self.start = 0;
                if self.buf.len() - self.end < READ_CHUNK {
                    self.buf.resize(self.end + READ_CHUNK, 0);
                }
            }
            match self.stream.read_some(&mut self.buf[self.end..], deadline) {
                Ok(0) if self.start == self.end => return Ok(None),
                Ok(0) => {
                    return Err(io::Error::new(
                        io::ErrorKind::UnexpectedEof,
                        "connection closed in the middle of a response",
                    ))
                }
                Ok(n) => self.end += n,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                // No read timeout is set (`wait_readable` keeps the deadline), so a
                // failed read is the connection's failure.
                Err(e) => return Err(e),
            }
        }
    }
}

/// Waits until `stream` has bytes to read (or is closed), at most until `deadline`.
///
/// `poll` for input, not a blocking `read`: a thread asleep in `read` on a Unix socket
/// is also woken each time the server consumes a request this socket sent (the kernel
/// signals "writable" on the same wait queue), so every round trip would cost the
/// caller an extra wake-up and context switch. `poll` wakes only for what it asked
/// (DECISIONS 22).
fn wait_readable(fd: RawFd, deadline: Option<Instant>) -> io::Result<()> {
    loop {
        let timeout_ms: libc::c_int = match deadline {
            None => -1,
            Some(d) => match d.checked_duration_since(Instant::now()) {
                // Rounded up, so a wait never ends before its deadline.
                Some(t) if !t.is_zero() => {
                    t.as_micros().div_ceil(1000).min(i32::MAX as u128) as i32
                }
                _ => return Err(timed_out()),
            },
        };
        let mut fd = libc::pollfd {
            fd,
            events: libc::POLLIN,
            revents: 0,
        };
        // SAFETY: one valid pollfd for the duration of the call.
        let n = unsafe { libc::poll(&mut fd, 1, timeout_ms) };
        if n > 0 {
            // Readable, closed or failed: the read that follows reports which.
            return Ok(());
        }
        if n < 0 {
            let e = io::Error::last_os_error();
            if e.kind() != io::ErrorKind::Interrupted {
                return Err(e);
            }
        }
        // Timed out (checked against the deadline above) or interrupted: wait again.
    }
}

fn timed_out() -> io::Error {
    io::Error::new(
        io::ErrorKind::TimedOut,
        "no response within the request timeout",
    )
}

/// An open connection to the server.
pub(crate) struct Connection {
    /// The write half (a clone of the socket the readers read). The mutex keeps
    /// frames whole.
    writer: Mutex<WriteHalf>,
    /// The socket's descriptor, for [`Connection::peer_closed`].
    fd: RawFd,
    /// Over TCP, a send first checks whether the server closed the connection.
    check_closed: bool,
    reader: Mutex<FrameReader>,
    shared: Arc<Shared>,
    next_id: AtomicU64,
}

impl Connection {
    /// Connects once (no retries). `write_timeout` bounds how long a frame may take
    /// to hand to a server that stopped reading.
    pub(crate) fn open(
        endpoint: &Endpoint,
        write_timeout: Option<Duration>,
        connect_timeout: Duration,
    ) -> io::Result<Connection> {
        let (writer, reader) = match endpoint {
            Endpoint::Unix(path) => Self::open_unix(path, write_timeout)?,
            Endpoint::Tcp(target) => match target.open(connect_timeout)? {
                Opened::Plain(s) => {
                    s.set_write_timeout(write_timeout)?;
                    let r = s.try_clone()?;
                    (WriteHalf::Tcp(s), ReadHalf::Tcp(r))
                }
                Opened::Tls(s, tls) => {
                    s.set_write_timeout(write_timeout)?;
                    let r = s.try_clone()?;
                    let tls: TlsState = Arc::new(Mutex::new(*tls));
                    (WriteHalf::Tls(s, tls.clone()), ReadHalf::Tls(r, tls))
                }
            },
        };
        let check_closed = !matches!(writer, WriteHalf::Unix(_));
        Ok(Connection {
            fd: writer.fd(),
            check_closed,
            writer: Mutex::new(writer),
            reader: Mutex::new(FrameReader::new(reader)),
            shared: Arc::new(Shared {
                state: Mutex::new(State {
                    waiting: HashMap::new(),
                    reading: false,
                    closed: None,
                    note: None,
                }),
                dead: AtomicBool::new(false),
            }),
            next_id: AtomicU64::new(1),
        })
    }

    fn open_unix(
        path: &Path,
        write_timeout: Option<Duration>,
    ) -> io::Result<(WriteHalf, ReadHalf)> {
        let stream = UnixStream::connect(path)?;
        stream.set_write_timeout(write_timeout)?;
        let read_half = stream.try_clone()?;
        Ok((WriteHalf::Unix(stream), ReadHalf::Unix(read_half)))
    }

    /// Whether the server has closed its end (over TCP a write to such a connection
    /// still succeeds, and the request would be lost in flight; over the Unix socket
    /// it fails with `EPIPE` and is sent again).
    fn peer_closed(&self) -> bool {
        let mut fd = libc::pollfd {
            fd: self.fd,
            events: libc::POLLRDHUP,
            revents: 0,
        };
        // SAFETY: one valid pollfd for the duration of the call; zero timeout.
        let n = unsafe { libc::poll(&mut fd, 1, 0) };
        n > 0 && fd.revents & (libc::POLLRDHUP | libc::POLLHUP | libc::POLLERR) != 0
    }

    /// The server closed this connection before `send` wrote to it: read what it
    /// said last (if nobody else is reading) and mark the connection dead.
    fn close_on_peer_close(&self) -> Error {
        let why = match self.reader.try_lock() {
            Ok(mut rd) => {
                // Its last frames and the end are already there: this does not wait.
                let soon = Some(Instant::now() + Duration::from_millis(100));
                loop {
                    match rd.next(soon) {
                        Ok(Some(frame)) => {
                            if let Ok(resp) = decode_response(&frame) {
                                self.shared.deliver(resp);
                            }
                        }
                        Ok(None) => {
                            break Closed::Io(
                                io::ErrorKind::ConnectionAborted,
                                "connection closed by the server".into(),
                            )
                        }
                        Err(e) => break Closed::Io(e.kind(), format!("connection lost: {e}")),
                    }
                }
            }
            Err(_) => Closed::Io(
                io::ErrorKind::ConnectionAborted,
                "connection closed by the server".into(),
            ),
        };
        self.shutdown();
        self.shared.close(why).to_error()
    }

    /// Whether requests can still be sent on this connection.
    pub(crate) fn is_alive(&self) -> bool {
        !self.shared.dead.load(Ordering::Acquire)
    }

    /// Sends `req` under a fresh request id (overwriting `req.request_id`) and returns
    /// the ticket to wait for its response.
    pub(crate) fn send(&self, req: &mut Request) -> Result<Ticket, SendError> {
        req.request_id = self.next_id.fetch_add(1, Ordering::Relaxed);
        let mut buf = Vec::new();
        encode_request(req, &mut buf);
        if buf.len() - 4 > MAX_FRAME {
            // The server would answer this with an error and drop the connection,
            // failing every other request in flight on it; refuse it here with the
            // server's text instead.
            return Err(SendError::Refused(Error::Server(
                text::FRAME_TOO_LARGE.into(),
            )));
        }
        if self.check_closed && self.peer_closed() {
            return Err(SendError::NotSent(self.close_on_peer_close()));
        }
        let (tx, rx) = mpsc::sync_channel(2);
        {
            let mut st = lock(&self.shared.state);
            if let Some(closed) = &st.closed {
                return Err(SendError::NotSent(closed.to_error()));
            }
            st.waiting
                .insert(req.request_id, Waiter { tx, active: false });
        }
        let ticket = Ticket {
            id: req.request_id,
            rx,
            shared: self.shared.clone(),
            settled: false,
        };
        let written = {
            let mut w = lock(&self.writer);
            w.write_frame(&buf)
        };
        if let Err(e) = written {
            // IMPORTANT: part of the frame may have been written; nothing more can go
            // on this stream. Shutting it down also ends any read in progress, and
            // closing fails the other requests in flight.
            self.shutdown();
            let _ = self
                .shared
                .close(Closed::Io(e.kind(), format!("connection lost: {e}")));
            return Err(SendError::NotSent(Error::Io(e)));
        }
        Ok(ticket)
    }

    /// Waits for the response of a sent request, reading it (and others') off the
    /// socket when nobody else is.
    pub(crate) fn wait(&self, mut ticket: Ticket, timeout: Option<Duration>) -> Result<Response> {
        let deadline = timeout.map(|t| Instant::now() + t);
        let mut lead = false;
        {
            let mut st = lock(&self.shared.state);
            // Every message is sent under this lock: what arrived is in the channel.
            match ticket.rx.try_recv() {
                Ok(Msg::Done(r)) => {
                    ticket.settled = true;
                    return r;
                }
                Ok(Msg::Lead) => lead = true,
                Err(_) => {}
            }
            if !lead {
                if let Some(w) = st.waiting.get_mut(&ticket.id) {
                    w.active = true;
                }
                if !st.reading && st.closed.is_none() {
                    st.reading = true;
                    lead = true;
                }
            }
        }
        loop {
            if lead {
                let r = self.read_until(ticket.id, deadline);
                ticket.settled = true;
                let mut st = lock(&self.shared.state);
                st.waiting.remove(&ticket.id);
                self.shared.pass_lead(&mut st);
                return r;
            }
            let got = match deadline {
                None => ticket.rx.recv().map_err(|_| RecvTimeoutError::Disconnected),
                Some(d) => ticket
                    .rx
                    .recv_timeout(d.saturating_duration_since(Instant::now())),
            };
            match got {
                Ok(Msg::Done(r)) => {
                    ticket.settled = true;
                    return r;
                }
                Ok(Msg::Lead) => lead = true,
                Err(RecvTimeoutError::Timeout) => {
                    // Unregister (passing on a Lead that may have just arrived),
                    // unless the response made it in time after all.
                    return match ticket.settle() {
                        Some(r) => r,
                        None => Err(Error::Io(timed_out())),
                    };
                }
                // Every sender is dropped only after answering; this is defensive.
                Err(RecvTimeoutError::Disconnected) => {
                    ticket.settled = true;
                    return Err(Error::Io(io::Error::new(
                        io::ErrorKind::ConnectionAborted,
                        "connection closed before the response arrived",
                    )));
                }
            }
        }
    }

    /// As the reader: reads frames, delivering other callers' responses, until the
    /// one for `id` arrives (or the deadline passes, or the connection ends).
    fn read_until(&self, id: u64, deadline: Option<Instant>) -> Result<Response> {
        let mut rd = lock(&self.reader);
        loop {
            let why = match rd.next(deadline) {
                Ok(Some(frame)) => match decode_response(&frame) {
                    Ok(resp) if resp.request_id == id => return Ok(resp),
                    Ok(resp) => {
                        self.shared.deliver(resp);
                        continue;
                    }
                    Err(e) => Closed::Protocol(format!("malformed response: {e}")),
                },
                Ok(None) => Closed::Io(
                    io::ErrorKind::ConnectionAborted,
                    "connection closed by the server".into(),
                ),
                Err(e) if e.kind() == io::ErrorKind::TimedOut => return Err(Error::Io(e)),
                Err(e) if e.kind() == io::ErrorKind::InvalidData => {
                    Closed::Protocol(format!("malformed response: {e}"))
                }
                Err(e) => Closed::Io(e.kind(), format!("connection lost: {e}")),
            };
            // After a malformed reply the stream cannot be trusted: drop it.
            rd.stream.shutdown();
            return Err(self.shared.close(why).to_error());
        }
    }

    fn shutdown(&self) {
        lock(&self.writer).shutdown();
    }
}

impl Drop for Connection {
    fn drop(&mut self) {
        self.shutdown();
    }
}

/// A request in flight: its id and the channel its response (or the turn to read)
/// arrives on. Dropped unsettled, it unregisters and passes on a turn to read.
pub(crate) struct Ticket {
    id: u64,
    rx: Receiver<Msg>,
    shared: Arc<Shared>,
    settled: bool,
}

impl Ticket {
    /// Unregisters; returns the response if it arrived meanwhile. A turn to read that
    /// was handed to this ticket goes to another waiter.
    fn settle(&mut self) -> Option<Result<Response>> {
        self.settled = true;
        let mut st = lock(&self.shared.state);
        st.waiting.remove(&self.id);
        let mut out = None;
        loop {
            match self.rx.try_recv() {
                Ok(Msg::Done(r)) => out = Some(r),
                Ok(Msg::Lead) => self.shared.pass_lead(&mut st),
                Err(TryRecvError::Empty | TryRecvError::Disconnected) => return out,
            }
        }
    }
}

impl Drop for Ticket {
    fn drop(&mut self) {
        if !self.settled {
            let _ = self.settle();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;

    fn frame(body: &[u8]) -> Vec<u8> {
        let mut f = (body.len() as u32).to_le_bytes().to_vec();
        f.extend_from_slice(body);
        f
    }

    #[test]
    fn frames_split_and_joined_across_reads_come_out_whole() {
        let (mut tx, rx) = UnixStream::pair().unwrap();
        let mut r = FrameReader::new(ReadHalf::Unix(rx));
        let big: Vec<u8> = (0..300_000u32).map(|i| i as u8).collect();
        let mut bytes = frame(b"one");
        bytes.extend(frame(b"two"));
        bytes.extend(frame(&big));
        bytes.extend(frame(b"three"));
        let writer = std::thread::spawn(move || {
            // Odd-sized pieces, so frames straddle reads.
            for piece in bytes.chunks(7_777) {
                tx.write_all(piece).unwrap();
                std::thread::sleep(Duration::from_micros(50));
            }
        });
        assert_eq!(r.next(None).unwrap().unwrap(), b"one");
        assert_eq!(r.next(None).unwrap().unwrap(), b"two");
        assert_eq!(r.next(None).unwrap().unwrap(), big);
        assert_eq!(r.next(None).unwrap().unwrap(), b"three");
        // The space a large frame needed is given back once it is consumed.
        assert!(r.buf.len() <= 4 * READ_CHUNK, "{}", r.buf.len());
        writer.join().unwrap();
        assert!(r.next(None).unwrap().is_none(), "clean end between frames");
    }

    #[test]
    fn a_reader_that_times_out_leaves_the_partial_frame_for_the_next() {
        let (mut tx, rx) = UnixStream::pair().unwrap();
        let mut r = FrameReader::new(ReadHalf::Unix(rx));
        let f = frame(b"hello world");
        tx.write_all(&f[..6]).unwrap();
        let soon = Instant::now() + Duration::from_millis(20);
        assert_eq!(
            r.next(Some(soon)).unwrap_err().kind(),
            io::ErrorKind::TimedOut
        );
        tx.write_all(&f[6..]).unwrap();
        assert_eq!(r.next(None).unwrap().unwrap(), b"hello world");
        drop(tx);
        assert!(r.next(None).unwrap().is_none());
    }

    #[test]
    fn a_stream_that_ends_inside_a_frame_is_an_error() {
        let (mut tx, rx) = UnixStream::pair().unwrap();
        let mut r = FrameReader::new(ReadHalf::Unix(rx));
        tx.write_all(&frame(b"cut short")[..5]).unwrap();
        drop(tx);
        assert_eq!(
            r.next(None).unwrap_err().kind(),
            io::ErrorKind::UnexpectedEof
        );
    }

    /// A TLS server on loopback that runs `script` on its side of the connection once
    /// the handshake is done; returns the client's read half.
    fn tls_pair(
        script: impl FnOnce(&std::net::TcpStream, &mut rustls::ServerConnection) + Send + 'static,
    ) -> (ReadHalf, std::thread::JoinHandle<()>, tempfile::TempDir) {
        let ca = crate::tls::testca::make();
        let dir = tempfile::tempdir().unwrap();
        let ca_file = dir.path().join("ca.pem");
        std::fs::write(&ca_file, &ca.ca_pem).unwrap();
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        let server = ca.server.clone();
        let t = std::thread::spawn(move || {
            let (sock, _) = listener.accept().unwrap();
            let mut conn = rustls::ServerConnection::new(server).unwrap();
            while conn.is_handshaking() {
                conn.complete_io(&mut &sock).unwrap();
            }
            script(&sock, &mut conn);
        });
        let target =
            TcpTarget::new(&format!("localhost:{port}"), &crate::tls::Tls::Ca(ca_file)).unwrap();
        let Ok(Opened::Tls(s, tls)) = target.open(Duration::from_secs(10)) else {
            panic!("TLS connect failed");
        };
        (ReadHalf::Tls(s, Arc::new(Mutex::new(*tls))), t, dir)
    }

    /// Encrypts `plain` as the server and returns the records.
    fn seal(conn: &mut rustls::ServerConnection, plain: &[u8]) -> Vec<u8> {
        let mut out = Vec::new();
        for chunk in plain.chunks(16 * 1024) {
            conn.writer().write_all(chunk).unwrap();
            while conn.wants_write() {
                conn.write_tls(&mut out).unwrap();
            }
        }
        out
    }

    #[test]
    fn tls_plaintext_rustls_already_holds_is_read_without_waiting_for_the_socket() {
        let (done_tx, done_rx) = mpsc::channel::<()>();
        let (mut rd, t, _dir) = tls_pair(move |mut sock, conn| {
            let records = seal(conn, &[7u8; 100]);
            sock.write_all(&records).unwrap();
            // Nothing more on the socket until the client has read all 100 bytes.
            let _ = done_rx.recv();
        });
        let mut got = Vec::new();
        while got.len() < 100 {
            let mut small = [0u8; 10];
            // The socket stays silent after the first record: a reader that polled it
            // before asking rustls would time out here.
            let soon = Some(Instant::now() + Duration::from_secs(2));
            let n = rd.read_some(&mut small, soon).unwrap();
            assert!(n > 0);
            got.extend_from_slice(&small[..n]);
        }
        assert_eq!(got, vec![7u8; 100]);
        done_tx.send(()).unwrap();
        t.join().unwrap();
    }

    #[test]
    fn tls_frames_cut_across_records_and_reads_come_out_whole() {
        let big: Vec<u8> = (0..300_000u32).map(|i| i as u8).collect();
        let want = big.clone();
        let (rd, t, _dir) = tls_pair(move |mut sock, conn| {
            // Two frames in one record, then a large frame whose records arrive in
            // odd-sized pieces (partial records), then one more and close_notify.
            let mut plain = frame(b"one");
            plain.extend(frame(b"two"));
            sock.write_all(&seal(conn, &plain)).unwrap();
            let records = seal(conn, &frame(&big));
            for piece in records.chunks(7_777) {
                sock.write_all(piece).unwrap();
                std::thread::sleep(Duration::from_micros(50));
            }
            sock.write_all(&seal(conn, &frame(b"three"))).unwrap();
            conn.send_close_notify();
            let mut out = Vec::new();
            while conn.wants_write() {
                conn.write_tls(&mut out).unwrap();
            }
            sock.write_all(&out).unwrap();
        });
        let mut r = FrameReader::new(rd);
        let soon = || Some(Instant::now() + Duration::from_secs(10));
        assert_eq!(r.next(soon()).unwrap().unwrap(), b"one");
        assert_eq!(r.next(soon()).unwrap().unwrap(), b"two");
        assert_eq!(r.next(soon()).unwrap().unwrap(), want);
        assert_eq!(r.next(soon()).unwrap().unwrap(), b"three");
        assert!(
            r.next(soon()).unwrap().is_none(),
            "clean end between frames"
        );
        t.join().unwrap();
    }
}
