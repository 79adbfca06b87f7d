//! One client connection: a reader that frames and dispatches requests (many may be
//! in flight: pipelining) and a writer that sends responses as they complete, matched
//! by request id.
//!
//! A response is written straight to the socket by the thread that produced it (a
//! scheduler worker, usually) when nothing is queued ahead of it and the socket takes
//! it whole; otherwise it is queued for the connection's writer task, which drains the
//! queue in order. Frames never interleave. Writing directly saves a wake-up of the
//! I/O thread and two system calls per response, which is most of what a small
//! request costs.
//!
//! The length prefix is checked before anything is allocated; a frame over the limit
//! or one that does not decode gets an Error response (with its request id when
//! readable) and the connection is closed once every request already dispatched has
//! been answered. Other connections are not affected. At shutdown, requests the client
//! already sent but the server had not read yet are answered `server is shutting
//! down`; none is left without a reply.

use std::io::{self, Write as _};
use std::sync::Arc;
use std::time::Duration;

use docdb_core::error::msg;
use docdb_protocol::{decode_request, encode_response, Request, Response, Status, MAX_FRAME};
use parking_lot::Mutex;
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::unix::OwnedWriteHalf;
use tokio::net::UnixStream;
use tokio::sync::{watch, Notify};

use crate::cmd;
use crate::context::Context;
use crate::errors::Category;
use crate::reply::{ReplyTo, Sink, Task};
use crate::scheduler::Rejected;

/// How long a draining connection may stay quiet before it is closed.
const DRAIN_QUIET: Duration = Duration::from_millis(100);

/// The write side of a connection, shared by everything that answers its requests.
struct ConnWriter {
    /// A non-blocking duplicate of the socket, for direct writes.
    direct: std::os::unix::net::UnixStream,
    state: Mutex<WriterState>,
    /// Wakes the writer task: bytes were queued, or the last answer owed was sent.
    wake: Notify,
}

#[derive(Default)]
struct WriterState {
    /// Bytes waiting for the writer task, in order.
    queued: Vec<u8>,
    /// The writer task is writing bytes it took from `queued`.
    busy: bool,
    /// A write failed (the client left): responses are dropped.
    broken: bool,
    /// Answers promised ([`ReplyTo`]s alive) and not yet sent.
    owed: usize,
    /// The reader stopped: no more requests will come.
    reader_done: bool,
}

impl ConnWriter {
    /// A promise to answer `request_id`; the connection stays open until it is kept.
    fn reply_to(self: &Arc<Self>, request_id: u64) -> ReplyTo {
        self.state.lock().owed += 1;
        ReplyTo::new(self.clone(), request_id)
    }

    fn write(&self, mut buf: Vec<u8>) {
        let mut st = self.state.lock();
        if st.broken {
            return;
        }
        if !st.busy && st.queued.is_empty() {
            loop {
                match (&self.direct).write(&buf) {
                    Ok(n) if n == buf.len() => return,
                    Ok(n) => {
                        buf.drain(..n);
                        break;
                    }
                    Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                    Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                    Err(_) => {
                        st.broken = true;
                        return;
                    }
                }
            }
        }
        if st.queued.is_empty() {
            st.queued = buf;
        } else {
            st.queued.extend_from_slice(&buf);
        }
        drop(st);
        self.wake.notify_one();
    }

    fn finish_reading(&self) {
        self.state.lock().reader_done = true;
        self.wake.notify_one();
    }

    /// The writer task: writes what could not be written directly, in order, until
    /// the reader is done and every answer owed has been sent.
    async fn drain(self: Arc<Self>, mut wr: OwnedWriteHalf) {
        loop {
            let chunk = {
                let mut st = self.state.lock();
                if st.broken {
                    break;
                }
                if st.queued.is_empty() {
                    st.busy = false;
                    if st.reader_done && st.owed == 0 {
                        break;
                    }
                    None
                } else {
                    st.busy = true;
                    Some(std::mem::take(&mut st.queued))
                }
            };
            match chunk {
                None => self.wake.notified().await,
                Some(bytes) => {
                    if wr.write_all(&bytes).await.is_err() {
                        self.state.lock().broken = true;
                        break;
                    }
                }
            }
        }
        let _ = wr.shutdown().await;
    }
}

impl Sink for ConnWriter {
    fn send(&self, resp: Response) {
        let mut buf = Vec::with_capacity(resp.data.len() + 32);
        encode_response(&resp, &mut buf);
        self.write(buf);
    }

    fn settled(&self) {
        let mut st = self.state.lock();
        st.owed -= 1;
        let last = st.owed == 0 && st.reader_done;
        drop(st);
        if last {
            self.wake.notify_one();
        }
    }
}

/// Splits a connection into its read half, its write half (for the writer task) and
/// a shared writer with a duplicate of the socket for direct writes.
fn split(
    stream: UnixStream,
) -> io::Result<(
    tokio::net::unix::OwnedReadHalf,
    OwnedWriteHalf,
    Arc<ConnWriter>,
)> {
    let std = stream.into_std()?;
    let direct = std.try_clone()?;
    direct.set_nonblocking(true)?;
    let (rd, wr) = UnixStream::from_std(std)?.into_split();
    let w = Arc::new(ConnWriter {
        direct,
        state: Mutex::new(WriterState::default()),
        wake: Notify::new(),
    });
    Ok((rd, wr, w))
}

pub async fn serve(stream: UnixStream, ctx: Arc<Context>, mut shutdown: watch::Receiver<bool>) {
    let (rd, wr, tx) = match split(stream) {
        Ok(parts) => parts,
        Err(e) => {
            tracing::warn!(error = %e, "could not set up a connection");
            return;
        }
    };
    ctx.metrics.connections.inc();
    let writer = tokio::spawn(tx.clone().drain(wr));
    let mut rd = BufReader::with_capacity(64 * 1024, rd);
    // After the shutdown signal the connection drains: frames the client had already
    // sent are read and answered `server is shutting down` (with their request ids)
    // instead of being cut off, until the client has been quiet for a moment.
    let mut draining = false;
    loop {
        // Wait for the next frame to begin. `fill_buf` is cancel-safe, so racing it
        // against the signal loses no bytes.
        let more = if draining {
            matches!(
                tokio::time::timeout(DRAIN_QUIET, rd.fill_buf()).await,
                Ok(Ok(b)) if !b.is_empty()
            )
        } else {
            tokio::select! {
                biased;
                r = rd.fill_buf() => matches!(r, Ok(b) if !b.is_empty()),
                _ = shutdown.changed() => {
                    draining = true;
                    continue;
                }
            }
        };
        if !more {
            break; // EOF, reset, or quiet while draining
        }
        let Ok(len) = rd.read_u32_le().await else {
            break;
        };
        let len = len as usize;
        if len > MAX_FRAME {
            tx.send(Response::new(
                0,
                Status::Error,
                msg::FRAME_TOO_LARGE.as_bytes().to_vec(),
            ));
            ctx.metrics.error(Category::Validation);
            break;
        }
        let mut frame = vec![0u8; len];
        if rd.read_exact(&mut frame).await.is_err() {
            break;
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
        if draining {
            tx.send(Response::new(
                req.request_id,
                Status::Error,
                msg::SHUTTING_DOWN.as_bytes().to_vec(),
            ));
            continue;
        }
        dispatch(&ctx, req, &tx).await;
    }
    tx.finish_reading();
    let _ = writer.await;
    ctx.metrics.connections.dec();
}

async fn dispatch(ctx: &Arc<Context>, req: Request, tx: &Arc<ConnWriter>) {
    let Some(command) = req.command() else {
        tx.send(Response::new(
            req.request_id,
            Status::Error,
            msg::UNKNOWN_COMMAND.as_bytes().to_vec(),
        ));
        return;
    };
    if !cmd::is_per_db(command) {
        // OpenDB may open (recover) a database and ListDBs reads every database's
        // stats: keep them off the I/O threads.
        let ctx2 = ctx.clone();
        let reply = tx.reply_to(req.request_id);
        tokio::task::spawn_blocking(move || {
            let (status, data) = cmd::serve_global(&ctx2, &req);
            reply.send(status, data);
        });
        return;
    }
    if ctx.pool.catalog().get(req.db_id).is_none() {
        tx.send(Response::new(
            req.request_id,
            Status::Error,
            msg::DB_NOT_OPEN.as_bytes().to_vec(),
        ));
        return;
    }
    let (db, rid) = (req.db_id, req.request_id);
    let task = Task::new(req, tx.reply_to(rid));
    if let Err((why, task)) = ctx.scheduler().enqueue(db, task) {
        let text = match why {
            Rejected::QueueFull => msg::QUEUE_FULL,
            Rejected::Stopped => msg::POOL_STOPPED,
        };
        let op = task.req.command().map_or("unknown", |c| c.name());
        ctx.metrics.record(op, Status::Error, 0.0);
        task.reply.error(text);
    }
}
