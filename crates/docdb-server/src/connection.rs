//! One client connection: a reader that frames and dispatches requests (many may be
//! in flight: pipelining) and a writer that sends responses as they complete, matched
//! by request id.
//!
//! A response is written straight to the socket by the thread that produced it (a
//! scheduler worker, usually) when nothing is queued ahead of it and the socket takes
//! it whole; otherwise it is queued for the connection's writer task, which drains the
//! queue in order. Frames never interleave. Writing directly saves a wake-up of the
//! I/O thread and two system calls per response, which is most of what a small
//! request costs. Both write through the one socket (one file descriptor). A direct
//! write sends the header and the reply's data in one `writev`, without copying the
//! data into a frame buffer, and counts the answer as kept under the same lock.
//!
//! The same code serves the Unix socket and TCP (`--listen`): a plain TCP socket is
//! written directly like a Unix one; a TLS connection cannot be (its bytes must go
//! through rustls, which one task owns), so every reply of a TLS connection is queued
//! for its writer task, which encrypts and writes it. Everything else (pipelining,
//! the bounds, the timeouts, answering what was dispatched before a close) is the
//! same code for all three. A TCP connection always needs a token (its session is
//! `Session::new(true, ..)`); until it has authenticated, `frame_timeout` of silence
//! closes it, as silence in a TLS handshake does, and so does not having
//! authenticated `auth_timeout` after it was accepted (however busy it keeps the
//! server with requests that are refused).
//!
//! Bounds (SPEC §8.2, `[net]`): at most `max_inflight` requests read and not answered
//! and `max_unsent_mb` of replies the socket has not taken; past either the reader
//! stops reading this socket until it drains (backpressure: nothing is refused, other
//! connections go on). Server-wide commands share a few slots over all connections. A
//! connection silent for `frame_timeout` in the middle of a frame is closed, and one
//! silent for `idle_timeout` (if set) between frames with nothing in flight.
//!
//! The length prefix is checked before anything is allocated; a frame over the limit
//! or one that does not decode gets an Error response (with its request id when
//! readable) and the connection is closed once every request already dispatched has
//! been answered. Other connections are not affected. At shutdown, requests the client
//! already sent but the server had not read yet are answered `server is shutting
//! down`; none is left without a reply. A frame half-sent at shutdown is waited for
//! only a moment.

use std::collections::VecDeque;
use std::io;
use std::sync::Arc;
use std::time::{Duration, Instant};

use docdb_protocol::{
    decode_request, encode_response, request_header, text, Command, Request, Response, Status,
    MAX_FRAME, MAX_REPLY_DATA, RESPONSE_HEADER,
};
use parking_lot::Mutex;
use tokio::io::{AsyncBufReadExt, AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt, BufReader};
use tokio::net::{TcpStream, UnixStream};
use tokio::sync::{watch, Notify};
use tokio_rustls::TlsAcceptor;

use crate::auth::token::unix_now;
use crate::auth::Session;
use crate::cmd;
use crate::config::NetSection;
use crate::context::Context;
use crate::errors::Category;
use crate::global_pool::GlobalPool;
use crate::reply::{Reply, ReplyTo, Sink, Task};
use crate::scheduler::Rejected;

/// How long a draining connection may stay quiet before it is closed.
const DRAIN_QUIET: Duration = Duration::from_millis(100);

/// Replies smaller than this are appended to the last queued buffer (one system call
/// for many small replies); bigger ones are queued as they are (no copy, and the
/// queue gives memory back as the socket takes each one).
const COALESCE: usize = 64 * 1024;

/// What one connection may hold of the server (SPEC §8.2, `[net]`).
#[derive(Debug, Clone, Copy)]
struct Bounds {
    max_inflight: usize,
    max_unsent: usize,
}

/// The write half of a socket that replies can be written to directly, without
/// waiting, from whichever thread produced them: a Unix or a plain TCP socket.
enum Direct {
    Unix(tokio::net::unix::OwnedWriteHalf),
    Tcp(tokio::net::tcp::OwnedWriteHalf),
}

impl Direct {
    fn try_write(&self, buf: &[u8]) -> io::Result<usize> {
        match self {
            Direct::Unix(w) => w.try_write(buf),
            Direct::Tcp(w) => w.try_write(buf),
        }
    }

    fn try_write_vectored(&self, bufs: &[io::IoSlice<'_>]) -> io::Result<usize> {
        match self {
            Direct::Unix(w) => w.try_write_vectored(bufs),
            Direct::Tcp(w) => w.try_write_vectored(bufs),
        }
    }

    async fn writable(&self) -> io::Result<()> {
        match self {
            Direct::Unix(w) => w.writable().await,
            Direct::Tcp(w) => w.writable().await,
        }
    }

    fn raw_fd(&self) -> std::os::fd::RawFd {
        use std::os::fd::AsRawFd;
        match self {
            Direct::Unix(w) => w.as_ref().as_raw_fd(),
            Direct::Tcp(w) => w.as_ref().as_raw_fd(),
        }
    }
}

/// The write side of a connection, shared by everything that answers its requests.
///
/// It owns the socket's write half when replies can be written directly ([`Direct`]):
/// direct writes (`try_write`, non-blocking) and the writer task's writes go through
/// the same file descriptor, so a connection costs one descriptor, and the descriptor
/// cannot be closed (and its number reused by another client) while anything can
/// still write to it. A TLS connection has no `direct`: its writer task owns the TLS
/// stream's write half and writes every reply.
struct ConnWriter {
    direct: Option<Direct>,
    bounds: Bounds,
    state: Mutex<WriterState>,
    /// Wakes the writer task: bytes were queued, or the last answer owed was sent.
    wake: Notify,
    /// Wakes the reader parked by backpressure: answers were sent or taken by the
    /// socket, or the connection broke.
    resume: Notify,
}

#[derive(Default)]
struct WriterState {
    /// Encoded replies waiting for the writer task, in order.
    queued: VecDeque<Vec<u8>>,
    /// Bytes of replies not yet taken by the socket: `queued` plus the buffer the
    /// writer task is writing.
    unsent: usize,
    /// The writer task is writing a buffer it took from `queued`.
    busy: bool,
    /// A write failed (the client left): responses are dropped.
    broken: bool,
    /// Answers promised ([`ReplyTo`]s alive) and not yet sent.
    owed: usize,
    /// The reader stopped: no more requests will come.
    reader_done: bool,
    /// The reader waits for `owed` or `unsent` to fall below the bounds.
    reader_parked: bool,
}

impl WriterState {
    /// Whether the reader may read another request (SPEC §8.2 backpressure).
    fn may_read(&self, b: Bounds) -> bool {
        self.owed < b.max_inflight && self.unsent < b.max_unsent
    }
}

impl ConnWriter {
    /// A promise to answer `request_id`; the connection stays open until it is kept.
    fn reply_to(self: &Arc<Self>, request_id: u64) -> ReplyTo {
        self.state.lock().owed += 1;
        ReplyTo::new(self.clone(), request_id)
    }

    /// Sends one response and, if `settle`, counts its answer as kept, under one
    /// lock. When nothing is queued ahead, the response goes out directly: header
    /// and data in one `writev`, the data not copied; only what the socket does not
    /// take is encoded and queued for the writer task.
    ///
    /// The lock is held across the direct write (frames never interleave). Measured:
    /// releasing it during the write (a claim flag instead) made the I/O thread
    /// sleep in `epoll_wait` twice as often and cost more CPU per request, not less.
    fn send_response(&self, resp: &Response, settle: bool) {
        let mut st = self.state.lock();
        let mut wake = false;
        if !st.broken {
            let rest = if st.busy || !st.queued.is_empty() || self.direct.is_none() {
                let mut buf = Vec::with_capacity(resp.data.len() + 32);
                encode_response(resp, &mut buf);
                Ok(Some(buf))
            } else {
                self.write_direct(resp)
            };
            match rest {
                Err(()) => self.break_off(&mut st),
                Ok(None) => {}
                Ok(Some(buf)) => {
                    self.enqueue(&mut st, buf);
                    wake = true;
                }
            }
        }
        if settle && self.settle(&mut st) {
            wake = true;
        }
        drop(st);
        if wake {
            self.wake.notify_one();
        }
    }

    /// Writes `resp` to the socket without blocking (the caller holds the lock and
    /// nothing is queued). `Ok(None)`: all of it was taken; `Ok(Some(rest))`: the
    /// bytes the socket did not take; `Err`: the client is gone.
    fn write_direct(&self, resp: &Response) -> Result<Option<Vec<u8>>, ()> {
        let Some(direct) = &self.direct else {
            return Err(());
        };
        if resp.data.len() > MAX_REPLY_DATA {
            // Refused by the encoder (a reply over the frame limit): rare, copy it.
            let mut buf = Vec::new();
            encode_response(resp, &mut buf);
            return self.write_buf(buf);
        }
        let mut head = [0u8; 4 + RESPONSE_HEADER];
        head[..4].copy_from_slice(&((RESPONSE_HEADER + resp.data.len()) as u32).to_le_bytes());
        head[4..12].copy_from_slice(&resp.request_id.to_le_bytes());
        head[12] = resp.status;
        head[13..].copy_from_slice(&(resp.data.len() as u32).to_le_bytes());
        let total = head.len() + resp.data.len();
        let n = loop {
            let bufs = [io::IoSlice::new(&head), io::IoSlice::new(&resp.data)];
            match direct.try_write_vectored(&bufs) {
                Ok(n) => break n,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => break 0,
                Err(_) => return Err(()),
            }
        };
        if n == total {
            return Ok(None);
        }
        // The socket is full: the rest waits for the writer task.
        let mut rest = Vec::with_capacity(total - n);
        if n < head.len() {
            rest.extend_from_slice(&head[n..]);
            rest.extend_from_slice(&resp.data);
        } else {
            rest.extend_from_slice(&resp.data[n - head.len()..]);
        }
        Ok(Some(rest))
    }

    /// Like [`ConnWriter::write_direct`], for encoded bytes.
    fn write_buf(&self, mut buf: Vec<u8>) -> Result<Option<Vec<u8>>, ()> {
        let Some(direct) = &self.direct else {
            return Err(());
        };
        loop {
            match direct.try_write(&buf) {
                Ok(n) if n == buf.len() => return Ok(None),
                Ok(n) => {
                    buf.drain(..n);
                    return Ok(Some(buf));
                }
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Ok(Some(buf)),
                Err(_) => return Err(()),
            }
        }
    }

    /// Queues encoded bytes for the writer task (with the lock held). Small replies
    /// are appended to the last queued buffer (one system call for many); bigger
    /// ones are queued as they are (no copy, and the queue gives memory back as the
    /// socket takes each one).
    fn enqueue(&self, st: &mut WriterState, buf: Vec<u8>) {
        st.unsent += buf.len();
        match st.queued.back_mut() {
            Some(last) if buf.len() < COALESCE && last.len() < COALESCE => {
                last.extend_from_slice(&buf)
            }
            _ => st.queued.push_back(buf),
        }
    }

    /// One promised answer was sent or given up on (with the lock held). True: it
    /// was the last one owed after the reader stopped (the writer task may finish).
    fn settle(&self, st: &mut WriterState) -> bool {
        st.owed -= 1;
        self.maybe_resume(st);
        st.owed == 0 && st.reader_done
    }

    /// The client is gone: drop what is queued and wake whoever waits.
    fn break_off(&self, st: &mut WriterState) {
        st.broken = true;
        st.queued = VecDeque::new();
        st.unsent = 0;
        self.resume.notify_one();
        self.wake.notify_one();
    }

    fn finish_reading(&self) {
        self.state.lock().reader_done = true;
        self.wake.notify_one();
    }

    /// Waits until the reader may read another request under the connection's
    /// bounds. False: the connection broke.
    async fn wait_room(&self) -> bool {
        loop {
            {
                let mut st = self.state.lock();
                if st.broken {
                    return false;
                }
                if st.may_read(self.bounds) {
                    st.reader_parked = false;
                    return true;
                }
                st.reader_parked = true;
            }
            // `notify_one` keeps a permit when nobody waits yet: no lost wake-up.
            self.resume.notified().await;
        }
    }

    /// Wakes the parked reader once there is room again (call with the lock held).
    fn maybe_resume(&self, st: &mut WriterState) {
        if st.reader_parked && st.may_read(self.bounds) {
            st.reader_parked = false;
            self.resume.notify_one();
        }
    }

    /// Writes one buffer whole, waiting for the socket to take it: directly, or
    /// through `out` (TLS).
    async fn write_out<W: AsyncWrite + Unpin>(
        &self,
        out: &mut Option<W>,
        bytes: &[u8],
    ) -> io::Result<()> {
        let Some(direct) = &self.direct else {
            let Some(w) = out else {
                return Err(io::ErrorKind::NotConnected.into());
            };
            w.write_all(bytes).await?;
            return w.flush().await;
        };
        let mut at = 0;
        while at < bytes.len() {
            direct.writable().await?;
            match direct.try_write(&bytes[at..]) {
                Ok(n) => at += n,
                Err(e)
                    if matches!(
                        e.kind(),
                        io::ErrorKind::WouldBlock | io::ErrorKind::Interrupted
                    ) => {}
                Err(e) => return Err(e),
            }
        }
        Ok(())
    }

    /// The writer task: writes what could not be written directly (on TLS: every
    /// reply, through `out`), in order, until the reader is done and every answer
    /// owed has been sent.
    async fn drain<W: AsyncWrite + Unpin>(
        self: Arc<Self>,
        mut out: Option<W>,
        close_wait: Duration,
    ) {
        loop {
            let chunk = {
                let mut st = self.state.lock();
                if st.broken {
                    break;
                }
                match st.queued.pop_front() {
                    None => {
                        st.busy = false;
                        if st.reader_done && st.owed == 0 {
                            break;
                        }
                        None
                    }
                    Some(b) => {
                        st.busy = true;
                        Some(b)
                    }
                }
            };
            match chunk {
                None => self.wake.notified().await,
                Some(bytes) => {
                    let res = self.write_out(&mut out, &bytes).await;
                    let mut st = self.state.lock();
                    if res.is_err() {
                        self.break_off(&mut st);
                        break;
                    }
                    st.unsent -= bytes.len();
                    self.maybe_resume(&mut st);
                }
            }
        }
        // Tell the client we are done; the descriptor itself closes when the last
        // holder of this writer lets go.
        if let Some(direct) = &self.direct {
            let fd = direct.raw_fd();
            // SAFETY: `fd` is owned by `self.direct`, which is alive here.
            unsafe {
                libc::shutdown(fd, libc::SHUT_WR);
            }
        } else if let Some(mut w) = out {
            // TLS: close_notify, then the socket's write side; a client that reads
            // nothing is not waited for beyond `close_wait`.
            let _ = tokio::time::timeout(close_wait, w.shutdown()).await;
        }
    }
}

impl Sink for ConnWriter {
    fn send(&self, resp: Response) {
        self.send_response(&resp, false);
    }

    fn settled(&self) {
        let mut st = self.state.lock();
        let last = self.settle(&mut st);
        drop(st);
        if last {
            self.wake.notify_one();
        }
    }

    fn send_settled(&self, resp: Response) {
        self.send_response(&resp, true);
    }
}

/// Why the reader stopped reading a frame.
enum Stop {
    /// End of stream, a reset, or a read error: the client is gone.
    Gone,
    /// Silent for `net.frame_timeout` in the middle of a frame (or for a moment while
    /// the server shuts down).
    Stalled,
}

/// The read side of one connection: frames requests, with the `[net]` timeouts.
struct Reader<R> {
    rd: BufReader<R>,
    shutdown: watch::Receiver<bool>,
    /// The server is shutting down: read what the client already sent, then stop.
    draining: bool,
    frame_timeout: Duration,
    idle_timeout: Duration,
}

impl<R: AsyncRead + Unpin> Reader<R> {
    /// Waits for the next frame to begin; false at end of stream, when idle for
    /// `net.idle_timeout` with nothing owed, or quiet for a moment while draining.
    async fn next_frame_begins(&mut self, tx: &ConnWriter) -> bool {
        loop {
            if self.draining {
                return matches!(
                    tokio::time::timeout(DRAIN_QUIET, self.rd.fill_buf()).await,
                    Ok(Ok(b)) if !b.is_empty()
                );
            }
            // `fill_buf` is cancel-safe, so racing it against the signal or a timer
            // loses no bytes.
            let idle = self.idle_timeout;
            let begun = async {
                if idle.is_zero() {
                    Some(self.rd.fill_buf().await)
                } else {
                    tokio::time::timeout(idle, self.rd.fill_buf()).await.ok()
                }
            };
            tokio::select! {
                biased;
                r = begun => match r {
                    Some(r) => return matches!(r, Ok(b) if !b.is_empty()),
                    None => {
                        // Idle: close only if nothing is in flight either (a client
                        // waiting for a slow answer is not idle).
                        let st = tx.state.lock();
                        if st.owed == 0 && st.unsent == 0 {
                            tracing::info!(after = ?idle, "closing an idle connection");
                            return false;
                        }
                    }
                },
                _ = self.shutdown.changed() => self.draining = true,
            }
        }
    }

    /// Fills `buf` from the socket. Silence for `net.frame_timeout` (after shutdown
    /// began: for a moment) is [`Stop::Stalled`].
    async fn read_full(&mut self, buf: &mut [u8]) -> Result<(), Stop> {
        // Fast path: the whole of it is buffered already (small pipelined requests).
        if self.rd.buffer().len() >= buf.len() {
            buf.copy_from_slice(&self.rd.buffer()[..buf.len()]);
            self.rd.consume(buf.len());
            return Ok(());
        }
        let mut got = 0;
        while got < buf.len() {
            let quiet = if self.draining {
                DRAIN_QUIET
            } else {
                self.frame_timeout
            };
            let read = tokio::time::timeout(quiet, self.rd.read(&mut buf[got..]));
            tokio::select! {
                biased;
                r = read => match r {
                    Err(_) => return Err(Stop::Stalled),
                    Ok(Ok(0)) => return Err(Stop::Gone),
                    Ok(Ok(n)) => got += n,
                    Ok(Err(e)) if e.kind() == io::ErrorKind::Interrupted => {}
                    Ok(Err(_)) => return Err(Stop::Gone),
                },
                // Shutting down: a half-sent frame is waited for only a moment.
                _ = self.shutdown.changed(), if !self.draining => self.draining = true,
            }
        }
        Ok(())
    }
}

/// Serves one Unix-socket connection until the client leaves, its frames go bad or
/// stall, or the server shuts down. `global` bounds the server-wide commands running
/// at once (shared by every connection).
pub async fn serve(
    stream: UnixStream,
    ctx: Arc<Context>,
    shutdown: watch::Receiver<bool>,
    global: Arc<GlobalPool>,
) {
    // Access control (`[auth]`): the peer's uid matters only in peer mode.
    let uid = stream.peer_cred().ok().map(|c| c.uid());
    let session = Session::for_unix(&ctx.cfg.auth, uid);
    let (rd, wr) = stream.into_split();
    let conn = Conn {
        direct: Some(Direct::Unix(wr)),
        session,
        until_auth: false,
    };
    run(rd, None::<tokio::io::Sink>, conn, ctx, shutdown, global).await;
}

/// Serves one TCP connection (`--listen`), through TLS when `tls` is given. The
/// session always needs a token, whatever `auth.mode` is (peer credentials are a
/// Unix-socket thing). A handshake silent for `net.frame_timeout` is given up.
pub async fn serve_tcp(
    stream: TcpStream,
    tls: Option<TlsAcceptor>,
    ctx: Arc<Context>,
    mut shutdown: watch::Receiver<bool>,
    global: Arc<GlobalPool>,
) {
    let session = Session::new(true, ctx.cfg.auth.max_opened);
    let Some(acceptor) = tls else {
        let (rd, wr) = stream.into_split();
        let conn = Conn {
            direct: Some(Direct::Tcp(wr)),
            session,
            until_auth: true,
        };
        return run(rd, None::<tokio::io::Sink>, conn, ctx, shutdown, global).await;
    };
    let limit = ctx.cfg.net.frame_timeout;
    let tls = tokio::select! {
        r = tokio::time::timeout(limit, acceptor.accept(stream)) => match r {
            Ok(Ok(s)) => s,
            Ok(Err(e)) => {
                tracing::debug!(error = %e, "TLS handshake failed");
                ctx.metrics.error(Category::Network);
                return;
            }
            Err(_) => {
                tracing::info!(timeout = ?limit, "closing a connection whose TLS handshake did not finish");
                ctx.metrics.error(Category::Network);
                return;
            }
        },
        _ = shutdown.changed() => return,
    };
    let (rd, wr) = tokio::io::split(tls);
    let conn = Conn {
        direct: None,
        session,
        until_auth: true,
    };
    run(rd, Some(wr), conn, ctx, shutdown, global).await;
}

/// What differs between transports, for [`run`].
struct Conn {
    /// The socket replies are written to directly; `None` (TLS): by the writer task.
    direct: Option<Direct>,
    session: Session,
    /// Until the session has a scope, `frame_timeout` of silence closes the
    /// connection, and so does `auth_timeout` from the start (TCP: a client that
    /// never authenticates holds no slot for long).
    until_auth: bool,
}

/// The connection loop, the same for every transport: `rd` is what the client sends,
/// `out` the writer of a TLS connection (see [`Conn::direct`]).
async fn run<R, W>(
    rd: R,
    out: Option<W>,
    conn: Conn,
    ctx: Arc<Context>,
    shutdown: watch::Receiver<bool>,
    global: Arc<GlobalPool>,
) where
    R: AsyncRead + Unpin,
    W: AsyncWrite + Unpin + Send + 'static,
{
    let net: &NetSection = &ctx.cfg.net;
    let bounds = Bounds {
        max_inflight: net.max_inflight.max(1),
        max_unsent: net.max_unsent_bytes().max(1),
    };
    let Conn {
        direct,
        mut session,
        until_auth,
    } = conn;
    let tx = Arc::new(ConnWriter {
        direct,
        bounds,
        state: Mutex::new(WriterState::default()),
        wake: Notify::new(),
        resume: Notify::new(),
    });
    ctx.metrics.connections.inc();
    let writer = tokio::spawn(tx.clone().drain(out, net.frame_timeout));
    // After the shutdown signal the connection drains: frames the client had already
    // sent are read and answered `server is shutting down` (with their request ids)
    // instead of being cut off, until the client has been quiet for a moment.
    let mut r = Reader {
        rd: BufReader::with_capacity(64 * 1024, rd),
        shutdown,
        draining: false,
        frame_timeout: net.frame_timeout,
        idle_timeout: net.idle_timeout,
    };
    // A connection that must authenticate has `net.auth_timeout` from now to do it:
    // refused requests do not keep an unauthenticated client's slot.
    let auth_deadline = until_auth.then(|| Instant::now() + net.auth_timeout);
    loop {
        // Backpressure (SPEC §8.2): with `max_inflight` requests unanswered or
        // `max_unsent_mb` of replies the client has not taken, read nothing more from
        // this socket until it drains. The kernel then stops the client's writes.
        if !tx.wait_room().await {
            break;
        }
        if let Some(deadline) = auth_deadline {
            r.idle_timeout = if session.scope().is_none() {
                let left = deadline.saturating_duration_since(Instant::now());
                if left.is_zero() {
                    tracing::info!(timeout = ?net.auth_timeout,
                        "closing a connection that did not authenticate in time");
                    ctx.metrics.error(Category::Network);
                    break;
                }
                net.frame_timeout.min(left)
            } else {
                net.idle_timeout
            };
        }
        if !r.next_frame_begins(&tx).await {
            break; // EOF, reset, idle, or quiet while draining
        }
        let mut len = [0u8; 4];
        if let Err(stop) = r.read_full(&mut len).await {
            stalled(&ctx, stop, "length prefix");
            break;
        }
        let len = u32::from_le_bytes(len) as usize;
        if len > MAX_FRAME {
            tx.send(Response::new(
                0,
                Status::Error,
                text::FRAME_TOO_LARGE.as_bytes().to_vec(),
            ));
            ctx.metrics.error(Category::Validation);
            break;
        }
        let mut frame = vec![0u8; len];
        if let Err(stop) = r.read_full(&mut frame).await {
            stalled(&ctx, stop, "frame");
            break;
        }
        // Refuse a request of too many ops before decoding them: an op costs the
        // server ~90 bytes however few it takes on the wire. The frame is whole, so
        // the connection goes on.
        if let Some((request_id, n)) = request_header(&frame) {
            let max = ctx.cfg.limits.max_ops_per_request;
            if n as usize > max {
                tx.send(Response::new(
                    request_id,
                    Status::Error,
                    text::too_many_ops(n, max).into_bytes(),
                ));
                ctx.metrics.error(Category::Validation);
                continue;
            }
        }
        let req = match decode_request(&frame) {
            Ok(r) => r,
            Err(e) => {
                tx.send(Response::new(
                    e.request_id.unwrap_or(0),
                    Status::Error,
                    e.to_string().into_bytes(),
                ));
                ctx.metrics.error(Category::Validation);
                break;
            }
        };
        drop(frame);
        if r.draining {
            tx.send(Response::new(
                req.request_id,
                Status::Error,
                text::SHUTTING_DOWN.as_bytes().to_vec(),
            ));
            continue;
        }
        dispatch(&ctx, req, &tx, &global, &mut session).await;
    }
    tx.finish_reading();
    let _ = writer.await;
    ctx.metrics.connections.dec();
}

/// Logs (and counts) a connection closed in the middle of a frame.
fn stalled(ctx: &Context, stop: Stop, part: &str) {
    if let Stop::Stalled = stop {
        tracing::info!(
            part,
            timeout = ?ctx.cfg.net.frame_timeout,
            "closing a connection stalled in the middle of a frame"
        );
        ctx.metrics.error(Category::Network);
    }
}

async fn dispatch(
    ctx: &Arc<Context>,
    req: Request,
    tx: &Arc<ConnWriter>,
    global: &GlobalPool,
    session: &mut Session,
) {
    // Access control (SPEC §9.1): skipped whole while the session is unrestricted
    // (auth.mode none, no Auth), so v0.3 clients see exactly what they always did.
    if !session.unrestricted() {
        if let Err(text) = session.check(&req, cmd::need(req.command), unix_now()) {
            let reply = Reply::new(Status::Denied, text.into_bytes());
            let to = tx.reply_to(req.request_id);
            cmd::answer(ctx, cmd::lookup(&req), Instant::now(), to, reply);
            return;
        }
    }
    let Some(spec) = cmd::lookup(&req) else {
        tx.send(Response::new(
            req.request_id,
            Status::Error,
            text::UNKNOWN_COMMAND.as_bytes().to_vec(),
        ));
        return;
    };
    match spec.command {
        Command::Auth => {
            let started = Instant::now();
            let reply = cmd::auth::run(ctx, session, &req);
            cmd::answer(ctx, Some(spec), started, tx.reply_to(req.request_id), reply);
            return;
        }
        Command::OpenDb if !session.unrestricted() => {
            return open_scoped(ctx, req, tx, global, session).await;
        }
        Command::ListDbs if session.scope().is_some() => {
            let glob = session.scope().map(|s| s.db.clone());
            let (ctx2, reply) = (ctx.clone(), tx.reply_to(req.request_id));
            let job = global.run(move || {
                let started = Instant::now();
                let r = cmd::list_dbs::run_in(&ctx2, glob.as_ref());
                cmd::answer(&ctx2, Some(spec), started, reply, r);
            });
            if job.await.is_err() {
                tracing::debug!("server-wide command refused: the pool is stopped");
            }
            return;
        }
        Command::CloseDb => session.closed(req.db_id),
        _ => {}
    }
    if !spec.per_db() {
        // OpenDB may open (recover) a database and ListDBs reads every database's
        // stats: keep them off the I/O threads.
        // A fixed pool of threads runs them; waiting for a slot holds up only this
        // connection's reading.
        let ctx2 = ctx.clone();
        let reply = tx.reply_to(req.request_id);
        let job = global.run(move || cmd::serve_global(&ctx2, &req, reply));
        if job.await.is_err() {
            // Stopped: the job (and its ReplyTo) was dropped, which answered it.
            tracing::debug!("server-wide command refused: the pool is stopped");
        }
        return;
    }
    if ctx.pool.catalog().get(req.db_id).is_none() {
        let why = if ctx.pool.catalog().was_deleted(req.db_id) {
            text::DB_DROPPED
        } else {
            text::DB_NOT_OPEN
        };
        tx.send(Response::new(
            req.request_id,
            Status::Error,
            why.as_bytes().to_vec(),
        ));
        return;
    }
    let (db, rid) = (req.db_id, req.request_id);
    let task = Task::new(req, tx.reply_to(rid));
    if let Err((why, task)) = ctx.scheduler().enqueue(db, task) {
        let why = match why {
            Rejected::QueueFull => text::QUEUE_FULL,
            Rejected::Stopped => text::POOL_STOPPED,
        };
        cmd::refuse(ctx, Some(spec), task.enqueued, task.reply, why);
    }
}

/// OpenDB under a scope (the name was checked against it): opens on the server-wide
/// pool as usual, then records the id as this connection's. The reader waits for the
/// id before it reads another frame, so a request naming the id, even one already
/// pipelined, is checked after the id is recorded.
async fn open_scoped(
    ctx: &Arc<Context>,
    req: Request,
    tx: &Arc<ConnWriter>,
    global: &GlobalPool,
    session: &mut Session,
) {
    let to = tx.reply_to(req.request_id);
    let name = req
        .ops
        .first()
        .map(|op| String::from_utf8_lossy(&op.payload).into_owned())
        .unwrap_or_default();
    if let Err(text) = session.may_open(&name) {
        let spec = cmd::lookup(&req);
        let reply = Reply::new(Status::Denied, text.into_bytes());
        cmd::answer(ctx, spec, Instant::now(), to, reply);
        return;
    }
    // The job only starts on the pool: wait for its id (none if it failed or died).
    let (done, opened) = tokio::sync::oneshot::channel();
    let ctx2 = ctx.clone();
    let job = global.run(move || {
        let started = Instant::now();
        let reply = cmd::open_db::run(&ctx2, &req);
        let id = (reply.status == Status::Ok)
            .then(|| <[u8; 8]>::try_from(reply.data.as_slice()).ok())
            .flatten()
            .map(u64::from_le_bytes);
        // Sent before the reply, so a died job is told apart from a failed open.
        let _ = done.send(id);
        cmd::answer(&ctx2, cmd::lookup(&req), started, to, reply);
    });
    if job.await.is_err() {
        tracing::debug!("server-wide command refused: the pool is stopped");
        return;
    }
    if let Ok(Some(id)) = opened.await {
        session.opened(id, &name);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::AsyncReadExt;

    /// Replies written directly (header and data in one `writev`) and replies the
    /// socket could not take at once (the rest queued for the writer task, later ones
    /// behind it) reach the client as whole frames, byte for byte what the encoder
    /// makes, in the order they were sent; every answer owed is settled.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn direct_and_queued_replies_arrive_whole_and_in_order() {
        let (server, mut client) = UnixStream::pair().expect("socketpair");
        let bounds = Bounds {
            max_inflight: 1000,
            max_unsent: 1 << 30,
        };
        let (_rd, wr) = server.into_split();
        let tx = Arc::new(ConnWriter {
            direct: Some(Direct::Unix(wr)),
            bounds,
            state: Mutex::new(WriterState::default()),
            wake: Notify::new(),
            resume: Notify::new(),
        });
        let no_tls: Option<tokio::net::unix::OwnedWriteHalf> = None;
        let writer = tokio::spawn(tx.clone().drain(no_tls, Duration::from_secs(1)));
        // Sizes around the socket buffer: a reply larger than it is partly written
        // directly, and those after it queue behind its rest.
        let sizes = [0usize, 1, 1024, 3 << 20, 17, 5000, 2 << 20, 64 * 1024, 3];
        let mut want = Vec::new();
        let mut promised = Vec::new();
        for (i, &n) in sizes.iter().enumerate() {
            let data: Vec<u8> = (0..n).map(|b| (b * 7 + i) as u8).collect();
            let resp = Response::new(i as u64, Status::Ok, data);
            encode_response(&resp, &mut want);
            promised.push((tx.reply_to(i as u64), resp));
        }
        let sender = std::thread::spawn(move || {
            for (to, resp) in promised {
                to.send(Reply::ok(resp.data));
            }
        });
        let mut got = vec![0u8; want.len()];
        let read = tokio::time::timeout(Duration::from_secs(10), client.read_exact(&mut got));
        read.await
            .expect("the replies never all arrived")
            .expect("read replies");
        sender.join().expect("sender");
        assert!(got == want, "the frames differ from what was sent");
        assert_eq!(tx.state.lock().owed, 0, "every answer settled");
        tx.finish_reading();
        writer.await.expect("writer task");
        let mut rest = Vec::new();
        client.read_to_end(&mut rest).await.expect("end of stream");
        assert!(rest.is_empty(), "nothing after the last reply");
    }
}
