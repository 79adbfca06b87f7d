//! The Rust client over TCP + TLS, against a TLS terminator (rustls, certificates made
//! here) in front of a real `docdb serve --auth token`: Auth on every connection, the
//! documents round trip, pipelining from threads, reconnecting after the connection
//! drops (a request that never left is resent, one in flight fails with `Error::Io`),
//! and a wrong CA or server name refused with a clear error.
#![allow(clippy::unwrap_used)]

mod common;
mod tcp_support;

use std::time::{Duration, Instant};

use common::Server;
use docdb_client::{Batch, Client, ClientOptions, Tls};
use tcp_support::{issue, TestCa, TlsProxy};

const AUTH: u8 = docdb_protocol::Command::Auth as u8;
const OPEN_DB: u8 = docdb_protocol::Command::OpenDb as u8;

struct Setup {
    server: Server,
    ca: TestCa,
    proxy: TlsProxy,
    token: String,
}

fn setup() -> Setup {
    let server = Server::start(&["--auth", "token", "--queue-depth", "4096"]);
    let token = issue(&server.data_dir(), "*", "admin");
    let ca = TestCa::new(&["localhost"]);
    let proxy = TlsProxy::start(&server.socket, ca.server_config());
    Setup {
        server,
        ca,
        proxy,
        token,
    }
}

impl Setup {
    fn client(&self, opts: ClientOptions) -> Client {
        Client::with_options_tcp(
            &self.proxy.localhost(),
            Tls::Ca(self.ca.ca_file.clone()),
            opts.token(self.token.clone()),
        )
        .unwrap()
    }
}

#[test]
fn over_tls_with_a_token_documents_round_trip() {
    let s = setup();
    let client = s.client(ClientOptions::new());
    assert_eq!(client.tcp_addr(), Some(s.proxy.localhost().as_str()));
    let db = client.open_db("tls").unwrap();
    db.create(1, r#"{"over":"tls"}"#).unwrap();
    assert_eq!(db.read(1).unwrap(), br#"{"over":"tls"}"#);
    assert!(db.create(1, "{}").unwrap_err().is_conflict());
    // A reply larger than a TLS record (16 KiB) and than the client's read space.
    let big = format!(r#"{{"s":"{}"}}"#, "x".repeat(200_000));
    db.create(2, &big).unwrap();
    assert_eq!(db.read(2).unwrap(), big.as_bytes());
    let names: Vec<_> = client
        .list_dbs()
        .unwrap()
        .into_iter()
        .map(|d| d.name)
        .collect();
    assert_eq!(names, vec!["tls"]);
    assert_eq!(s.proxy.commands_on(0)[0], AUTH, "Auth goes first");

    // Without a token the server refuses everything.
    let bare = Client::connect_tcp(&s.proxy.localhost(), Tls::Ca(s.ca.ca_file.clone())).unwrap();
    let e = bare.open_db("tls").unwrap_err();
    assert!(e.is_denied(), "{e:?}");
    assert_eq!(e.to_string(), "authentication required");
    // A bad token is refused at connect time.
    let e = Client::with_options_tcp(
        &s.proxy.localhost(),
        Tls::Ca(s.ca.ca_file.clone()),
        ClientOptions::new().token("garbage"),
    )
    .unwrap_err();
    assert!(e.is_denied(), "{e:?}");
}

#[test]
fn many_threads_pipeline_over_one_and_over_two_tls_connections() {
    let s = setup();
    for (n, conns) in [(0u64, 1), (1, 2)] {
        let client = s.client(ClientOptions::new().connections(conns));
        let db = client.open_db(&format!("pipe{n}")).unwrap();
        let threads: Vec<_> = (0..8u64)
            .map(|t| {
                let db = db.clone();
                std::thread::spawn(move || {
                    // Each thread keeps 50 requests in flight at once.
                    let pending: Vec<_> = (0..200u64)
                        .map(|i| {
                            let id = t * 1000 + i + 1;
                            db.submit(&Batch::new().create(id, format!(r#"{{"id":{id}}}"#)))
                                .unwrap()
                        })
                        .collect::<Vec<_>>();
                    for p in pending {
                        assert!(p.wait().unwrap()[0].is_ok());
                    }
                })
            })
            .collect();
        for t in threads {
            t.join().unwrap();
        }
        let mut count = 0;
        for row in db.scan().page_size(500) {
            let (id, doc) = row.unwrap();
            assert_eq!(doc, serde_json::json!({ "id": id }));
            count += 1;
        }
        assert_eq!(count, 1600);
    }
}

#[test]
fn a_request_that_never_left_is_resent_on_a_new_authenticated_connection() {
    let s = setup();
    let client = s.client(ClientOptions::new());
    let db = client.open_db("resend").unwrap();
    db.create(1, "1").unwrap();
    assert_eq!(s.proxy.connections(), 1);

    // The proxy drops the connection while the client is idle; its next request
    // finds it closed before writing and goes out on a new one, which authenticates
    // and re-opens the database first (the server lets a connection use only ids it
    // opened).
    s.proxy.cut_all();
    db.create(2, "2")
        .expect("a request that never left is resent");
    assert_eq!(s.proxy.connections(), 2, "one reconnect");
    assert_eq!(
        s.proxy.sent_on(2),
        vec![1],
        "sent once, on the new connection"
    );
    assert_eq!(&s.proxy.commands_on(1)[..2], &[AUTH, OPEN_DB]);
    assert_eq!(db.read(2).unwrap(), b"2");
}

#[test]
fn a_request_in_flight_when_the_connection_drops_fails_with_io_and_is_not_resent() {
    let s = setup();
    let client = s.client(ClientOptions::new());
    let db = client.open_db("inflight").unwrap();
    db.create(1, "1").unwrap();
    s.proxy.swallow_next();
    let e = db.create(2, "2").unwrap_err();
    assert!(e.is_io(), "{e:?}");
    assert_eq!(s.proxy.sent_on(2), vec![0], "sent once, never resent");
    // It did run; the next call reconnects (Auth again) and sees it.
    assert_eq!(db.read(2).unwrap(), b"2");
    assert_eq!(s.proxy.connections(), 2);
    assert_eq!(s.proxy.commands_on(1)[0], AUTH);
}

#[test]
fn a_wrong_ca_or_server_name_is_refused_with_a_clear_error() {
    let s = setup();
    let other = TestCa::new(&["localhost"]);
    let t0 = Instant::now();
    let e = Client::connect_tcp(&s.proxy.localhost(), Tls::Ca(other.ca_file.clone())).unwrap_err();
    assert!(e.is_io(), "{e:?}");
    let text = e.to_string();
    assert!(
        text.starts_with(&format!(
            "cannot connect to {}: TLS handshake failed",
            s.proxy.localhost()
        )),
        "{text}"
    );
    assert!(text.contains("not signed by the given CA"), "{text}");

    // The certificate names `localhost`, not 127.0.0.1.
    let by_ip = format!("127.0.0.1:{}", s.proxy.addr.port());
    let e = Client::connect_tcp(&by_ip, Tls::Ca(s.ca.ca_file.clone())).unwrap_err();
    let text = e.to_string();
    assert!(text.contains("does not name the host"), "{text}");

    // Public roots do not know a private CA either.
    let e = Client::connect_tcp(&s.proxy.localhost(), Tls::System).unwrap_err();
    assert!(e.to_string().contains("TLS handshake failed"), "{e}");
    assert!(
        t0.elapsed() < Duration::from_secs(5),
        "refused at once, not retried: {:?}",
        t0.elapsed()
    );
    // Nothing reached the server.
    assert_eq!(s.proxy.commands_on(0), Vec::<u8>::new());
    drop(s.server);
}
