//! One multiplexed connection: many requests in flight, matched to their responses by
//! request id.
//!
//! Callers encode their frame, register a one-shot channel under a fresh request id,
//! then write the frame while holding the writer mutex (frames never interleave). A
//! background reader thread reads response frames and hands each to the channel
//! registered under its id. When the stream ends or breaks, the reader marks the
//! connection dead and fails every waiting request; a dead connection never accepts a
//! new registration, so no caller can wait forever.
//!
//! Writing to a connection the server closed fails with `EPIPE`, which Rust programs
//! see as an error because the Rust runtime ignores `SIGPIPE`; a host program that
//! restores the default `SIGPIPE` action would be killed instead.

use std::collections::HashMap;
use std::io::{self, BufReader};
use std::net::Shutdown;
use std::os::unix::net::UnixStream;
use std::path::Path;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::mpsc::{self, Receiver, RecvTimeoutError, SyncSender};
use std::sync::{Arc, Mutex, MutexGuard};
use std::thread::JoinHandle;
use std::time::Duration;

use docdb_protocol::io::{read_frame, write_all};
use docdb_protocol::{decode_response, encode_request, Request, Response, MAX_FRAME};

use crate::error::{text, Error, Result};

/// Locks a mutex, ignoring poisoning: every critical section here leaves its data
/// consistent, so a panic elsewhere must not turn into panics in every caller.
pub(crate) fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}

type Reply = SyncSender<Result<Response>>;

/// State shared by the callers and the reader thread.
struct Shared {
    state: Mutex<State>,
    /// Set once the connection can no longer be used (mirrors `State::closed`, for a
    /// lock-free check).
    dead: AtomicBool,
}

struct State {
    waiting: HashMap<u64, Reply>,
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
    /// Marks the connection dead and fails every waiting request.
    fn close(&self, why: Closed) {
        let (waiting, closed) = {
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
            (std::mem::take(&mut st.waiting), closed)
        };
        for (_, reply) in waiting {
            // A caller that stopped waiting dropped its receiver; nothing to do.
            let _ = reply.send(Err(closed.to_error()));
        }
    }

    fn complete(&self, resp: Response) {
        let reply = {
            let mut st = lock(&self.state);
            match st.waiting.remove(&resp.request_id) {
                Some(reply) => reply,
                None => {
                    if resp.status != 0 {
                        st.note = Some(String::from_utf8_lossy(&resp.data).into_owned());
                    }
                    return;
                }
            }
        };
        let _ = reply.send(Ok(resp));
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

/// An open connection to the server.
pub(crate) struct Connection {
    /// The write half (a clone of the socket the reader reads). The mutex keeps
    /// frames whole.
    writer: Mutex<UnixStream>,
    shared: Arc<Shared>,
    next_id: AtomicU64,
    reader: Mutex<Option<JoinHandle<()>>>,
}

impl Connection {
    /// Connects once (no retries) and starts the reader thread. `write_timeout`
    /// bounds how long a frame may take to hand to a server that stopped reading.
    pub(crate) fn open(path: &Path, write_timeout: Option<Duration>) -> io::Result<Connection> {
        let stream = UnixStream::connect(path)?;
        stream.set_write_timeout(write_timeout)?;
        let read_half = stream.try_clone()?;
        let shared = Arc::new(Shared {
            state: Mutex::new(State {
                waiting: HashMap::new(),
                closed: None,
                note: None,
            }),
            dead: AtomicBool::new(false),
        });
        let reader_shared = shared.clone();
        let reader = std::thread::Builder::new()
            .name("docdb-client-reader".into())
            .spawn(move || read_loop(read_half, &reader_shared))?;
        Ok(Connection {
            writer: Mutex::new(stream),
            shared,
            next_id: AtomicU64::new(1),
            reader: Mutex::new(Some(reader)),
        })
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
        let (tx, rx) = mpsc::sync_channel(1);
        {
            let mut st = lock(&self.shared.state);
            if let Some(closed) = &st.closed {
                return Err(SendError::NotSent(closed.to_error()));
            }
            st.waiting.insert(req.request_id, tx);
        }
        let written = {
            let mut w = lock(&self.writer);
            write_all(&mut *w, &buf)
        };
        if let Err(e) = written {
            lock(&self.shared.state).waiting.remove(&req.request_id);
            // IMPORTANT: part of the frame may have been written; nothing more can go
            // on this stream. Shutting it down also wakes the reader, which fails the
            // other requests in flight.
            self.shutdown();
            self.shared
                .close(Closed::Io(e.kind(), format!("connection lost: {e}")));
            return Err(SendError::NotSent(Error::Io(e)));
        }
        Ok(Ticket {
            id: req.request_id,
            rx,
        })
    }

    /// Waits for the response of a sent request.
    pub(crate) fn wait(&self, ticket: Ticket, timeout: Option<Duration>) -> Result<Response> {
        let got = match timeout {
            None => ticket.rx.recv().map_err(|_| RecvTimeoutError::Disconnected),
            Some(t) => ticket.rx.recv_timeout(t),
        };
        match got {
            Ok(r) => r,
            Err(RecvTimeoutError::Timeout) => {
                lock(&self.shared.state).waiting.remove(&ticket.id);
                Err(Error::Io(io::Error::new(
                    io::ErrorKind::TimedOut,
                    "no response within the request timeout",
                )))
            }
            // The reader always answers before dropping a sender; this is defensive.
            Err(RecvTimeoutError::Disconnected) => Err(Error::Io(io::Error::new(
                io::ErrorKind::ConnectionAborted,
                "connection closed before the response arrived",
            ))),
        }
    }

    fn shutdown(&self) {
        let _ = lock(&self.writer).shutdown(Shutdown::Both);
    }
}

impl Drop for Connection {
    fn drop(&mut self) {
        // Wakes the reader (its read returns end of stream) and lets it exit.
        self.shutdown();
        if let Some(reader) = lock(&self.reader).take() {
            let _ = reader.join();
        }
    }
}

/// A request in flight: its id and the channel its response arrives on.
pub(crate) struct Ticket {
    id: u64,
    rx: Receiver<Result<Response>>,
}

/// The reader thread: frames in, responses out to their waiters, until the stream
/// ends.
fn read_loop(stream: UnixStream, shared: &Shared) {
    let mut rd = BufReader::with_capacity(64 * 1024, &stream);
    let why = loop {
        match read_frame(&mut rd) {
            Ok(Some(frame)) => match decode_response(&frame) {
                Ok(resp) => shared.complete(resp),
                Err(e) => break Closed::Protocol(format!("malformed response: {e}")),
            },
            Ok(None) => {
                break Closed::Io(
                    io::ErrorKind::ConnectionAborted,
                    "connection closed by the server".into(),
                )
            }
            Err(e) if e.kind() == io::ErrorKind::InvalidData => {
                break Closed::Protocol(format!("malformed response: {e}"))
            }
            Err(e) => break Closed::Io(e.kind(), format!("connection lost: {e}")),
        }
    };
    // After a malformed reply the stream cannot be trusted: drop it.
    let _ = stream.shutdown(Shutdown::Both);
    shared.close(why);
}
