//! Wire-level helpers for the server integration tests (wire_*.rs, bad_frames.rs,
//! pipelining.rs, shutdown_drain.rs, socket_lifecycle.rs, config_errors.rs, ...):
//! raw frame building, replies that tell "closed" from "timed out", and running the
//! binary to see it refuse to start. Kept apart from `common` so the two can grow
//! independently; a test file declares `mod common; mod support;`.
#![allow(dead_code, clippy::unwrap_used, clippy::expect_used)]

use std::io::{ErrorKind, Read, Write};
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::process::{Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

use docdb_protocol::frame::decode_results;
use docdb_protocol::Response;
use docdb_protocol::{decode_response, encode_request, Command as Cmd, Op, OpType, Request};

use crate::common::{Client, Server};

/// `u32 length` + request frame.
pub fn frame(request_id: u64, db_id: u64, command: u8, ops: Vec<Op>) -> Vec<u8> {
    let mut out = Vec::new();
    encode_request(
        &Request {
            request_id,
            db_id,
            command,
            ops,
        },
        &mut out,
    );
    out
}

/// The frame body (no length prefix) of a request.
pub fn body(request_id: u64, db_id: u64, command: u8, ops: Vec<Op>) -> Vec<u8> {
    frame(request_id, db_id, command, ops).split_off(4)
}

/// `u32 length` (the true length of `body`) + `body`.
pub fn prefixed(body: &[u8]) -> Vec<u8> {
    let mut out = (body.len() as u32).to_le_bytes().to_vec();
    out.extend_from_slice(body);
    out
}

pub fn create_op(coll: &str, id: u64, json: &str) -> Op {
    Op::new(OpType::Create, coll, id, json.as_bytes().to_vec())
}

pub fn read_op(coll: &str, id: u64) -> Op {
    Op::new(OpType::Read, coll, id, Vec::new())
}

pub fn update_op(coll: &str, id: u64, json: &str) -> Op {
    Op::new(OpType::Update, coll, id, json.as_bytes().to_vec())
}

pub fn delete_op(coll: &str, id: u64) -> Op {
    Op::new(OpType::Delete, coll, id, Vec::new())
}

/// An op of any raw type (for the reserved and unknown codes).
pub fn raw_op(op_type: u8, coll: &str, id: u64, payload: &[u8]) -> Op {
    Op {
        op_type,
        collection: coll.as_bytes().to_vec(),
        doc_id: id,
        patch: None,
        payload: payload.to_vec(),
    }
}

/// The argument op of a command that takes a collection (CreateCollection, ...).
pub fn coll_op(coll: &str) -> Op {
    Op::new(OpType::Read, coll, 0, Vec::new())
}

/// What reading one reply produced.
#[derive(Debug)]
pub enum Reply {
    Frame(Response),
    /// End of stream (possibly in the middle of a frame) or a reset.
    Closed,
    /// Nothing within the read timeout.
    TimedOut,
}

/// Reads one response frame from `s`, waiting at most until `deadline`.
pub fn read_reply(s: &mut UnixStream, deadline: Instant) -> Reply {
    let mut len = [0u8; 4];
    match read_full(s, &mut len, deadline) {
        Ok(()) => {}
        Err(r) => return r,
    }
    let n = u32::from_le_bytes(len) as usize;
    assert!(n <= 64 << 20, "response length {n} is absurd");
    let mut buf = vec![0u8; n];
    match read_full(s, &mut buf, deadline) {
        Ok(()) => Reply::Frame(decode_response(&buf).expect("well-formed response frame")),
        Err(r) => r,
    }
}

fn read_full(s: &mut UnixStream, buf: &mut [u8], deadline: Instant) -> Result<(), Reply> {
    let mut got = 0;
    while got < buf.len() {
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return Err(Reply::TimedOut);
        }
        s.set_read_timeout(Some(left)).unwrap();
        match s.read(&mut buf[got..]) {
            Ok(0) => return Err(Reply::Closed),
            Ok(n) => got += n,
            Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => {
                return Err(Reply::TimedOut)
            }
            Err(e) if e.kind() == ErrorKind::Interrupted => {}
            Err(_) => return Err(Reply::Closed),
        }
    }
    Ok(())
}

/// Every reply until the server closes the stream (or `deadline`): the frames, and
/// whether the stream was closed (false: timed out).
pub fn read_until_closed(s: &mut UnixStream, deadline: Instant) -> (Vec<Response>, bool) {
    let mut out = Vec::new();
    loop {
        match read_reply(s, deadline) {
            Reply::Frame(r) => out.push(r),
            Reply::Closed => return (out, true),
            Reply::TimedOut => return (out, false),
        }
    }
}

/// The reply data as text.
pub fn text(r: &Response) -> String {
    String::from_utf8_lossy(&r.data).into_owned()
}

/// Execute/Transaction results as text: per op for an OK reply, else the reply's one
/// error text (a non-OK reply's data is plain text, the v0.3 contract).
pub fn results_text(r: &Response) -> Vec<String> {
    if r.status != 0 {
        return vec![text(r)];
    }
    decode_results(&r.data)
        .unwrap_or_else(|e| panic!("bad results in {r:?}: {e}"))
        .into_iter()
        .map(|b| String::from_utf8_lossy(&b).into_owned())
        .collect()
}

/// Asserts status 0 and returns the data.
pub fn ok(r: Response) -> Vec<u8> {
    assert_eq!(r.status, 0, "expected OK, got {} {:?}", r.status, text(&r));
    r.data
}

/// Asserts `status` and exactly `text`.
pub fn assert_reply(r: &Response, status: u8, want: &str) {
    assert_eq!(
        (r.status, text(r).as_str()),
        (status, want),
        "request {}",
        r.request_id
    );
}

/// Stats (4): the five counters.
pub fn stats(c: &mut Client) -> [u64; 5] {
    let d = ok(c.call(0, Cmd::Stats, vec![]));
    assert_eq!(d.len(), 40, "Stats is 5 x u64");
    let mut out = [0u64; 5];
    for (i, v) in out.iter_mut().enumerate() {
        *v = u64::from_le_bytes(d[i * 8..i * 8 + 8].try_into().unwrap());
    }
    out
}

/// A global or per-database command whose OK reply is JSON.
pub fn json_call(c: &mut Client, db: u64, cmd: Cmd, ops: Vec<Op>) -> serde_json::Value {
    let d = ok(c.call(db, cmd, ops));
    serde_json::from_slice(&d).unwrap_or_else(|e| {
        panic!(
            "{cmd:?} reply is not JSON ({e}): {}",
            String::from_utf8_lossy(&d)
        )
    })
}

/// SchedulerStats (14).
pub fn scheduler_stats(c: &mut Client) -> serde_json::Value {
    json_call(c, 0, Cmd::SchedulerStats, vec![])
}

/// Metrics (12) text.
pub fn metrics(c: &mut Client) -> String {
    String::from_utf8(ok(c.call(0, Cmd::Metrics, vec![]))).unwrap()
}

/// A client with a short read timeout (so a hung server fails the test quickly).
pub fn client(s: &Server) -> Client {
    let c = s.connect();
    c.stream
        .set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    c
}

/// A raw stream to the server.
pub fn raw(s: &Server) -> UnixStream {
    UnixStream::connect(&s.socket).unwrap()
}

/// Whether the server process is still running.
pub fn alive(s: &mut Server) -> bool {
    s.child.as_mut().unwrap().try_wait().unwrap().is_none()
}

/// A server set up on its own temp dir and socket but not started (call `spawn`).
pub fn unstarted(args: &[&str]) -> Server {
    Server::unstarted(args)
}

/// The outcome of a `docdb serve` that was expected to stop by itself.
pub struct Exited {
    pub status: ExitStatus,
    pub stderr: String,
    pub elapsed: Duration,
}

/// Runs `docdb serve <args>` (stdout discarded, stderr captured) and waits up to
/// `timeout` for it to exit; kills it and panics if it does not.
pub fn run_serve_expect_exit(args: &[&str], timeout: Duration) -> Exited {
    let started = Instant::now();
    let mut child = Command::new(env!("CARGO_BIN_EXE_docdb"))
        .arg("serve")
        .args(args)
        .env("DOCDB_LOG", "warn")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut err = child.stderr.take().unwrap();
    let reader = std::thread::spawn(move || {
        let mut s = String::new();
        let _ = err.read_to_string(&mut s);
        s
    });
    let status = loop {
        if let Some(st) = child.try_wait().unwrap() {
            break st;
        }
        if started.elapsed() > timeout {
            let _ = child.kill();
            let _ = child.wait();
            panic!("docdb serve {args:?} was still running after {timeout:?}");
        }
        std::thread::sleep(Duration::from_millis(10));
    };
    let elapsed = started.elapsed();
    Exited {
        status,
        stderr: reader.join().unwrap(),
        elapsed,
    }
}

/// Path of a file in the server's temp dir.
pub fn in_dir(s: &Server, name: &str) -> PathBuf {
    s.dir.path().join(name)
}

/// Polls `f` until it is true or `timeout` passes.
pub fn wait_for(timeout: Duration, mut f: impl FnMut() -> bool) -> bool {
    let deadline = Instant::now() + timeout;
    while Instant::now() < deadline {
        if f() {
            return true;
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    f()
}

/// Waits for the server process to exit by itself (at most `timeout`; kills it and
/// panics after that). Returns the status and how long it took.
pub fn wait_exit(s: &mut Server, timeout: Duration) -> (ExitStatus, Duration) {
    let mut child = s.child.take().expect("running");
    let t = Instant::now();
    loop {
        if let Some(st) = child.try_wait().unwrap() {
            return (st, t.elapsed());
        }
        if t.elapsed() > timeout {
            let _ = child.kill();
            let _ = child.wait();
            panic!("docdb still running after {timeout:?}");
        }
        std::thread::sleep(Duration::from_millis(5));
    }
}

/// Sends a signal to the server process.
pub fn signal(s: &Server, sig: i32) {
    unsafe {
        libc::kill(s.pid(), sig);
    }
}

/// A client on its own thread doing create + read round trips on its own database
/// until stopped, checking every answer: proves a misbehaving connection does not
/// disturb anyone else.
pub struct Bystander {
    stop: std::sync::Arc<std::sync::atomic::AtomicBool>,
    done: std::sync::Arc<std::sync::atomic::AtomicU64>,
    handle: std::thread::JoinHandle<u64>,
}

impl Bystander {
    /// Starts it and waits for its first successful round trip.
    pub fn start(socket: &Path, db_name: &str) -> Bystander {
        use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
        let stop = std::sync::Arc::new(AtomicBool::new(false));
        let done = std::sync::Arc::new(AtomicU64::new(0));
        let (flag, count) = (stop.clone(), done.clone());
        let socket = socket.to_path_buf();
        let name = db_name.to_string();
        let handle = std::thread::spawn(move || {
            let mut c = Client::connect(&socket);
            let db = c.open_db(&name);
            let mut n = 0u64;
            while !flag.load(Ordering::Relaxed) {
                n += 1;
                let doc = format!(r#"{{"n":{n}}}"#);
                let t = Instant::now();
                assert_eq!(
                    c.create(db, "", n, &doc),
                    (0, Vec::new()),
                    "bystander create {n}"
                );
                assert_eq!(
                    c.read(db, "", n),
                    (0, doc.into_bytes()),
                    "bystander read {n}"
                );
                assert!(
                    t.elapsed() < Duration::from_secs(2),
                    "bystander round trip took {:?}",
                    t.elapsed()
                );
                count.store(n, Ordering::Relaxed);
                std::thread::sleep(Duration::from_millis(1));
            }
            n
        });
        let b = Bystander { stop, done, handle };
        assert!(
            wait_for(Duration::from_secs(10), || b.count() >= 1
                || b.handle.is_finished()),
            "bystander did not start"
        );
        b
    }

    /// Round trips completed so far.
    pub fn count(&self) -> u64 {
        self.done.load(std::sync::atomic::Ordering::Relaxed)
    }

    /// Waits until it completed `more` further round trips: proof it is still being
    /// served correctly.
    pub fn wait_more(&self, more: u64) {
        let target = self.count() + more;
        assert!(
            wait_for(Duration::from_secs(10), || self.count() >= target
                || self.handle.is_finished()),
            "the bystander stalled at {}",
            self.count()
        );
        assert!(!self.handle.is_finished(), "the bystander client failed");
    }

    /// Waits until it completed `more` further round trips (proof it is still being
    /// served), then stops it; returns the total.
    pub fn stop_after(self, more: u64) -> u64 {
        let target = self.count() + more;
        let progressed = wait_for(Duration::from_secs(10), || {
            self.count() >= target || self.handle.is_finished()
        });
        self.stop.store(true, std::sync::atomic::Ordering::Relaxed);
        let n = self.handle.join().expect("the bystander client failed");
        assert!(progressed, "the bystander stalled at {n} round trips");
        n
    }

    pub fn stop(self) -> u64 {
        self.stop_after(0)
    }
}

/// Percentile (0..=100) of sorted durations.
pub fn percentile(sorted: &[Duration], p: f64) -> Duration {
    assert!(!sorted.is_empty());
    let idx = ((p / 100.0) * (sorted.len() - 1) as f64).round() as usize;
    sorted[idx.min(sorted.len() - 1)]
}

/// Writes all of `bytes`, returning false if the server closed the stream.
pub fn try_write(s: &mut UnixStream, bytes: &[u8]) -> bool {
    s.write_all(bytes).is_ok()
}

/// `GET path` over HTTP/1.1 with `Connection: close`: (status code, body).
pub fn http_get(port: u16, path: &str) -> (u16, String) {
    let mut s = std::net::TcpStream::connect(("127.0.0.1", port)).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    write!(
        s,
        "GET {path} HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n"
    )
    .unwrap();
    let mut out = String::new();
    s.read_to_string(&mut out).unwrap();
    let code = out
        .split_whitespace()
        .nth(1)
        .and_then(|c| c.parse().ok())
        .unwrap_or(0);
    let body = out
        .split_once("\r\n\r\n")
        .map_or("", |(_, b)| b)
        .to_string();
    (code, body)
}
