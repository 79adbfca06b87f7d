//! The Rust client survives server restarts: requests in flight when the connection
//! drops fail with `Error::Io`, the next call reconnects on its own, and database
//! handles keep working because ids survive restarts. A request that never left is
//! sent again on a fresh connection; one that was written is never resent.
#![allow(clippy::unwrap_used)]

mod common;

use std::io::Write;
use std::net::Shutdown;
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use common::Server;
use docdb_client::{Batch, Client, ClientOptions};
use docdb_protocol::io::read_frame;
use docdb_protocol::{decode_request, decode_response, Request};

#[test]
fn handles_keep_working_across_a_restart() {
    let mut server = Server::start(&[]);
    let client = Client::connect(&server.socket).unwrap();
    let db = client.open_db("survivor").unwrap();
    let users = db.collection("users");
    db.create_collection("users").unwrap();
    db.create(1, r#"{"before":"restart"}"#).unwrap();
    users.create(1, "1").unwrap();

    let st = server.terminate(Duration::from_secs(20));
    assert!(st.success(), "{st}");
    server.spawn();

    // The same handles, no re-open: the first call reconnects transparently.
    assert_eq!(db.read(1).unwrap(), br#"{"before":"restart"}"#);
    assert_eq!(users.read(1).unwrap(), b"1");
    db.create(2, r#"{"after":"restart"}"#).unwrap();
    assert_eq!(client.open_db("survivor").unwrap().id(), db.id());

    // Twice, with a hard kill this time.
    server.kill();
    server.spawn();
    assert_eq!(db.read(2).unwrap(), br#"{"after":"restart"}"#);
    assert_eq!(client.stats().unwrap().total_dbs, 1);
}

#[test]
fn requests_in_flight_fail_with_io_and_later_ones_succeed() {
    // An fsync per write: 2,000 queued creates take far longer than the kill below, so
    // some of them are certainly still in flight when the server dies.
    let mut server = Server::start(&["--queue-depth", "4096", "--fsync-mode", "always"]);
    let client = Client::connect(&server.socket).unwrap();
    let db = client.open_db("inflight").unwrap();
    let pending: Vec<_> = (1..=2000u64)
        .map(|id| (id, db.submit(&Batch::new().create(id, "{}")).unwrap()))
        .collect();
    server.kill();
    let (mut acked, mut io) = (Vec::new(), 0);
    for (id, p) in pending {
        match p.wait() {
            Ok(r) => {
                assert!(r[0].is_ok(), "{r:?}");
                acked.push(id);
            }
            Err(e) => {
                assert!(e.is_io(), "{e:?}");
                io += 1;
            }
        }
    }
    eprintln!(
        "{} answered before the kill, {io} failed with Io",
        acked.len()
    );
    assert!(
        io >= 1,
        "no request was in flight at the kill: nothing tested"
    );
    server.spawn();
    // Acknowledged writes survived the kill; the connection is back.
    let mut stored = std::collections::HashSet::new();
    for row in db.scan().page_size(1000) {
        let (id, _) = row.unwrap();
        assert!((1..=2000).contains(&id), "unexpected document {id}");
        assert!(stored.insert(id), "document {id} scanned twice");
    }
    let lost: Vec<_> = acked.iter().filter(|id| !stored.contains(id)).collect();
    assert!(lost.is_empty(), "acknowledged but lost: {lost:?}");
    db.create(5000, "{}").unwrap();
    assert_eq!(db.read(5000).unwrap(), b"{}");
}

#[test]
fn a_call_during_a_restart_waits_for_the_server() {
    let mut server = Server::start(&[]);
    let opts = ClientOptions::new().reconnect_timeout(Duration::from_secs(15));
    let client = Client::with_options(&server.socket, opts).unwrap();
    let db = client.open_db("patient").unwrap();
    db.create(1, "1").unwrap();

    server.terminate(Duration::from_secs(20));
    let restarter = std::thread::spawn(move || {
        std::thread::sleep(Duration::from_millis(300));
        server.spawn();
        server
    });
    let t = Instant::now();
    assert_eq!(db.read(1).unwrap(), b"1");
    assert!(
        t.elapsed() >= Duration::from_millis(250),
        "{:?}",
        t.elapsed()
    );
    let _server = restarter.join().unwrap();
}

#[test]
fn a_server_that_stays_down_is_reported_after_the_reconnect_timeout() {
    // One reconnect round lasts ROUND; it is long next to thread start-up, so the eight
    // threads below all wait behind the same round.
    const ROUND: Duration = Duration::from_secs(1);
    let mut server = Server::start(&[]);
    let opts = ClientOptions::new().reconnect_timeout(ROUND);
    let client = Client::with_options(&server.socket, opts).unwrap();
    let db = client.open_db("gone").unwrap();
    server.terminate(Duration::from_secs(20));

    let t = Instant::now();
    let e = db.read(1).unwrap_err();
    assert!(e.is_io(), "{e:?}");
    let one_round = t.elapsed();
    assert!(
        one_round >= ROUND - Duration::from_millis(50),
        "gave up before the reconnect timeout: {one_round:?}"
    );
    assert!(one_round < Duration::from_secs(5), "{one_round:?}");
    // Threads waiting behind a failed reconnect get its error without retrying: all
    // eight are answered after one more round. Were each to retry on its own, the
    // rounds would run one after another (the slot's lock is held while reconnecting):
    // eight rounds, 8 s.
    let t = Instant::now();
    let took: Vec<Duration> = std::thread::scope(|s| {
        let threads: Vec<_> = (0..8)
            .map(|_| {
                s.spawn(|| {
                    assert!(db.read(1).unwrap_err().is_io());
                    t.elapsed()
                })
            })
            .collect();
        threads.into_iter().map(|h| h.join().unwrap()).collect()
    });
    let all = t.elapsed();
    assert!(
        all < ROUND * 4,
        "8 threads took {all:?} ({took:?}): they retried one after another"
    );

    // And a client cannot be created at all without a server.
    assert!(Client::connect(&server.socket).unwrap_err().is_io());
}

/// `u32 length` + `body`: a frame as `read_frame` took it apart.
fn prefixed(body: &[u8]) -> Vec<u8> {
    let mut out = (body.len() as u32).to_le_bytes().to_vec();
    out.extend_from_slice(body);
    out
}

/// A socket in front of the server that the test controls: it forwards every
/// connection to the server, records each request a client sent (connection number,
/// request), and can cut connections or swallow a reply.
struct Proxy {
    path: PathBuf,
    st: Arc<ProxyState>,
    _dir: tempfile::TempDir,
}

struct ProxyState {
    upstream: PathBuf,
    /// (connection number from 0, request) in the order they arrived.
    requests: Mutex<Vec<(usize, Request)>>,
    /// The proxy's end of every client connection accepted so far.
    clients: Mutex<Vec<UnixStream>>,
    /// Forward the next request, then drop its reply and close that connection.
    swallow_next: AtomicBool,
}

impl Proxy {
    fn start(upstream: &Path) -> Proxy {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("proxy.sock");
        let listener = UnixListener::bind(&path).unwrap();
        let st = Arc::new(ProxyState {
            upstream: upstream.to_path_buf(),
            requests: Mutex::new(Vec::new()),
            clients: Mutex::new(Vec::new()),
            swallow_next: AtomicBool::new(false),
        });
        let st2 = st.clone();
        std::thread::spawn(move || {
            for client in listener.incoming() {
                let Ok(client) = client else { return };
                let n = {
                    let mut all = st2.clients.lock().unwrap();
                    all.push(client.try_clone().unwrap());
                    all.len() - 1
                };
                let st = st2.clone();
                std::thread::spawn(move || Proxy::forward(st, n, client));
            }
        });
        Proxy {
            path,
            st,
            _dir: dir,
        }
    }

    /// Pumps one connection, request frame by request frame.
    fn forward(st: Arc<ProxyState>, n: usize, mut client: UnixStream) {
        let Ok(mut server) = UnixStream::connect(&st.upstream) else {
            return;
        };
        let swallow: Arc<Mutex<Option<u64>>> = Arc::default();
        let (mut back_from, mut back_to) =
            (server.try_clone().unwrap(), client.try_clone().unwrap());
        let sw = swallow.clone();
        std::thread::spawn(move || {
            while let Ok(Some(frame)) = read_frame(&mut back_from) {
                let id = decode_response(&frame).unwrap().request_id;
                if *sw.lock().unwrap() == Some(id) {
                    // The server answered; the client never hears of it.
                    let _ = back_to.shutdown(Shutdown::Both);
                    let _ = back_from.shutdown(Shutdown::Both);
                    return;
                }
                if back_to.write_all(&prefixed(&frame)).is_err() {
                    return;
                }
            }
            let _ = back_to.shutdown(Shutdown::Both);
        });
        while let Ok(Some(frame)) = read_frame(&mut client) {
            let req = decode_request(&frame).unwrap();
            if st.swallow_next.swap(false, Ordering::SeqCst) {
                *swallow.lock().unwrap() = Some(req.request_id);
            }
            st.requests.lock().unwrap().push((n, req));
            if server.write_all(&prefixed(&frame)).is_err() {
                break;
            }
        }
        let _ = server.shutdown(Shutdown::Write);
    }

    /// Closes every client connection (the client is not told until it uses it).
    fn cut_all(&self) {
        for c in self.st.clients.lock().unwrap().iter() {
            let _ = c.shutdown(Shutdown::Both);
        }
    }

    fn connections(&self) -> usize {
        self.st.clients.lock().unwrap().len()
    }

    /// The connections on which a request carrying an op on document `id` arrived.
    fn sent_on(&self, id: u64) -> Vec<usize> {
        self.st
            .requests
            .lock()
            .unwrap()
            .iter()
            .filter(|(_, r)| r.ops.iter().any(|o| o.doc_id == id))
            .map(|&(n, _)| n)
            .collect()
    }
}

#[test]
fn a_request_that_never_left_is_resent_on_a_fresh_connection() {
    let server = Server::start(&[]);
    let proxy = Proxy::start(&server.socket);
    let opts = ClientOptions::new().connections(1);
    let client = Client::with_options(&proxy.path, opts).unwrap();
    let db = client.open_db("resend").unwrap();
    db.create(1, "1").unwrap();
    assert_eq!(proxy.connections(), 1);

    // The connection is gone but the client has not noticed: its next write fails,
    // nothing of the request reached the server, so it is sent again on a new one.
    proxy.cut_all();
    db.create(2, "2")
        .expect("a request that never left is resent");
    assert_eq!(proxy.connections(), 2, "one reconnect");
    assert_eq!(
        proxy.sent_on(2),
        vec![1],
        "sent once, on the new connection"
    );
    assert_eq!(db.read(2).unwrap(), b"2");
    assert_eq!(proxy.sent_on(1), vec![0]);
}

#[test]
fn a_request_that_was_sent_fails_with_io_and_is_never_resent() {
    let server = Server::start(&[]);
    let proxy = Proxy::start(&server.socket);
    let opts = ClientOptions::new().connections(1);
    let client = Client::with_options(&proxy.path, opts).unwrap();
    let db = client.open_db("no-resend").unwrap();
    db.create(1, "1").unwrap();

    // The server gets the request and answers; the connection drops before the
    // answer reaches the client. Whether it ran is unknown to the client, so it must
    // fail, not run it again (a resent create would answer "already exists").
    proxy.st.swallow_next.store(true, Ordering::SeqCst);
    let e = db.create(2, "2").unwrap_err();
    assert!(e.is_io(), "{e:?}");
    assert_eq!(proxy.sent_on(2), vec![0], "sent once, never resent");
    // It did run; the next call reconnects and sees it.
    assert_eq!(db.read(2).unwrap(), b"2");
    assert_eq!(proxy.connections(), 2);
    assert_eq!(
        proxy.sent_on(2),
        vec![0, 1],
        "then the read, on the new connection"
    );
}
