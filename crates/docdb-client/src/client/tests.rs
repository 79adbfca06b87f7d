//! The client against scripted fake servers: replies out of order, malformed replies,
//! dropped connections, reconnects. (The real server is exercised by the `client_*`
//! tests of the `docdb` crate.)
#![allow(clippy::unwrap_used)]

use std::io::Write;
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::PathBuf;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use docdb_protocol::io::read_frame;
use docdb_protocol::{decode_request, encode_response, Request, Response, Status};

use super::*;

/// A fake server on a fresh socket path, running `script` on its listener.
struct Fake {
    path: PathBuf,
    thread: Option<JoinHandle<()>>,
}

impl Fake {
    fn start(script: impl FnOnce(UnixListener) + Send + 'static) -> Fake {
        static N: AtomicUsize = AtomicUsize::new(0);
        let path = std::env::temp_dir().join(format!(
            "docdb-client-test-{}-{}.sock",
            std::process::id(),
            N.fetch_add(1, Ordering::Relaxed)
        ));
        let _ = std::fs::remove_file(&path);
        let listener = UnixListener::bind(&path).unwrap();
        let thread = std::thread::spawn(move || script(listener));
        Fake {
            path,
            thread: Some(thread),
        }
    }

    fn join(mut self) {
        self.thread.take().unwrap().join().unwrap();
    }
}

impl Drop for Fake {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.path);
    }
}

fn recv(s: &mut UnixStream) -> Request {
    decode_request(&read_frame(s).unwrap().unwrap()).unwrap()
}

fn reply(s: &mut UnixStream, id: u64, status: Status, data: &[u8]) {
    let mut buf = Vec::new();
    encode_response(&Response::new(id, status, data.to_vec()), &mut buf);
    s.write_all(&buf).unwrap();
}

/// Answers every request on `s` with OK and its request id as data, until EOF.
fn echo(mut s: UnixStream) {
    while let Ok(Some(frame)) = read_frame(&mut s) {
        let req = decode_request(&frame).unwrap();
        reply(
            &mut s,
            req.request_id,
            Status::Ok,
            &req.request_id.to_le_bytes(),
        );
    }
}

fn metrics_call(c: &Client) -> Result<String> {
    c.metrics()
}

#[test]
fn handles_can_be_shared_between_threads() {
    fn shared<T: Clone + Send + Sync>() {}
    fn sendable<T: Send>() {}
    shared::<Client>();
    shared::<Database>();
    sendable::<Pending<Vec<crate::OpResult>>>();
    sendable::<crate::Scan>();
    sendable::<Error>();
}

#[test]
fn responses_are_matched_by_id_in_any_order() {
    let fake = Fake::start(|l| {
        let (mut s, _) = l.accept().unwrap();
        let reqs: Vec<Request> = (0..3).map(|_| recv(&mut s)).collect();
        for r in reqs.iter().rev() {
            reply(
                &mut s,
                r.request_id,
                Status::Ok,
                format!("m{}", r.db_id).as_bytes(),
            );
        }
    });
    let c = Client::connect(&fake.path).unwrap();
    let pending: Vec<_> = (1..=3)
        .map(|db| c.submit(db, Command::Metrics, Vec::new()).unwrap())
        .collect();
    for (db, p) in (1..=3).zip(pending) {
        assert_eq!(p.wait().unwrap().data, format!("m{db}").into_bytes());
    }
    fake.join();
}

#[test]
fn a_malformed_reply_is_a_protocol_error_and_the_next_call_reconnects() {
    let fake = Fake::start(|l| {
        let (mut s, _) = l.accept().unwrap();
        recv(&mut s);
        // A 3-byte frame: shorter than a response header.
        s.write_all(&[3, 0, 0, 0, 1, 2, 3]).unwrap();
        let (s, _) = l.accept().unwrap();
        echo(s);
    });
    let c = Client::connect(&fake.path).unwrap();
    let e = metrics_call(&c).unwrap_err();
    assert!(e.is_protocol(), "{e}");
    assert_eq!(metrics_call(&c).unwrap(), "\u{1}\0\0\0\0\0\0\0");
    drop(c);
    fake.join();
}

#[test]
fn an_oversized_reply_length_is_refused_before_allocating() {
    let fake = Fake::start(|l| {
        let (mut s, _) = l.accept().unwrap();
        recv(&mut s);
        s.write_all(&u32::MAX.to_le_bytes()).unwrap();
        let _ = read_frame(&mut s);
    });
    let c = Client::connect(&fake.path).unwrap();
    let e = c.stats().unwrap_err();
    assert!(e.is_protocol(), "{e}");
    drop(c);
    fake.join();
}

#[test]
fn replies_of_the_wrong_shape_are_protocol_errors() {
    let fake = Fake::start(|l| {
        let (mut s, _) = l.accept().unwrap();
        for data in [&b"short"[..], b"not json", &[0xff, 0xfe]] {
            let r = recv(&mut s);
            reply(&mut s, r.request_id, Status::Ok, data);
        }
    });
    let c = Client::connect(&fake.path).unwrap();
    assert!(c.stats().unwrap_err().is_protocol());
    assert!(c.list_dbs().unwrap_err().is_protocol());
    assert!(c.metrics().unwrap_err().is_protocol());
    drop(c);
    fake.join();
}

#[test]
fn a_dropped_connection_fails_requests_in_flight_with_io_and_says_why() {
    let fake = Fake::start(|l| {
        let (mut s, _) = l.accept().unwrap();
        recv(&mut s);
        drop(s);
        let (mut s, _) = l.accept().unwrap();
        recv(&mut s);
        reply(&mut s, 0, Status::Error, b"too many connections");
    });
    let c = Client::connect(&fake.path).unwrap();
    let e = c.stats().unwrap_err();
    assert!(e.is_io(), "{e}");
    let e = c.stats().unwrap_err();
    assert!(e.is_io(), "{e}");
    assert!(e.to_string().contains("too many connections"), "{e}");
    fake.join();
}

#[test]
fn an_oversized_request_is_refused_locally_and_the_connection_lives_on() {
    let fake = Fake::start(|l| {
        let (s, _) = l.accept().unwrap();
        echo(s);
    });
    let c = Client::connect(&fake.path).unwrap();
    let db = Database::new(c.clone(), 1, "x");
    let e = db
        .create(1, vec![b' '; docdb_protocol::MAX_FRAME])
        .unwrap_err();
    assert_eq!(e.server_text(), Some("frame size exceeds maximum"));
    assert!(metrics_call(&c).is_ok());
    drop((c, db));
    fake.join();
}

#[test]
fn reconnecting_gives_up_after_the_timeout() {
    let fake = Fake::start(|l| {
        let (mut s, _) = l.accept().unwrap();
        recv(&mut s);
        // Close the connection and stop listening.
    });
    let opts = ClientOptions::new().reconnect_timeout(Duration::from_millis(300));
    let c = Client::with_options(&fake.path, opts).unwrap();
    assert!(c.stats().unwrap_err().is_io());
    let path = fake.path.clone();
    fake.join();
    let _ = std::fs::remove_file(&path);
    let t = Instant::now();
    let e = c.stats().unwrap_err();
    assert!(e.is_io(), "{e}");
    let waited = t.elapsed();
    assert!(
        waited >= Duration::from_millis(250) && waited < Duration::from_secs(2),
        "{waited:?}"
    );
}

#[test]
fn a_request_timeout_leaves_the_connection_usable() {
    let fake = Fake::start(|l| {
        let (mut s, _) = l.accept().unwrap();
        let slow = recv(&mut s);
        let fast = recv(&mut s);
        reply(&mut s, fast.request_id, Status::Ok, b"fast");
        reply(&mut s, slow.request_id, Status::Ok, b"late");
        echo(s);
    });
    let opts = ClientOptions::new().request_timeout(Some(Duration::from_millis(100)));
    let c = Client::with_options(&fake.path, opts).unwrap();
    let e = c.metrics().unwrap_err();
    assert!(
        matches!(&e, Error::Io(io) if io.kind() == io::ErrorKind::TimedOut),
        "{e}"
    );
    assert_eq!(c.metrics().unwrap(), "fast");
    // The late reply was discarded; the next one is matched to its request.
    assert_eq!(c.metrics().unwrap().len(), 8);
    drop(c);
    fake.join();
}
