//! The Rust client, `docdb shell --host` and `docdb db list --host` against the real
//! server's `--listen` (TLS with a CA made here, a token always required on TCP; plain
//! TCP with `--insecure-tcp` on loopback).
#![allow(clippy::unwrap_used)]

mod common;
mod tcp_support;

use std::process::{Command, Output};
use std::time::Duration;

use common::Server;
use docdb_client::{Client, ClientOptions, Tls};
use tcp_support::{issue, TestCa};

/// A port free a moment ago on 127.0.0.1 (the server binds it right after).
fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// A server listening on 127.0.0.1 with `tls` args (or `--insecure-tcp`).
fn start(ca: Option<&TestCa>) -> (Server, u16) {
    let port = free_port();
    let listen = format!("127.0.0.1:{port}");
    let mut args = vec!["--listen".to_string(), listen.clone()];
    match ca {
        Some(ca) => args.extend([
            "--tls-cert".to_string(),
            ca.cert_file.display().to_string(),
            "--tls-key".to_string(),
            ca.key_file.display().to_string(),
        ]),
        None => args.push("--insecure-tcp".to_string()),
    }
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let server = Server::start(&args);
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    while std::net::TcpStream::connect(&listen).is_err() {
        assert!(
            std::time::Instant::now() < deadline,
            "not listening on {listen}"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    (server, port)
}

fn docdb(args: &[&str], envs: &[(&str, &str)]) -> Output {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_docdb"));
    cmd.args(args).env_remove("DOCDB_TOKEN");
    for (k, v) in envs {
        cmd.env(k, v);
    }
    cmd.output().unwrap()
}

#[test]
fn the_client_over_tls_authenticates_stays_in_scope_and_survives_a_restart() {
    let ca = TestCa::new(&["localhost", "127.0.0.1"]);
    let (mut server, port) = start(Some(&ca));
    let token = issue(&server.data_dir(), "app*", "write");
    let addr = format!("localhost:{port}");
    let tls = Tls::Ca(ca.ca_file.clone());

    let opts = ClientOptions::new()
        .token(token)
        .reconnect_timeout(Duration::from_secs(15));
    let client = Client::with_options_tcp(&addr, tls.clone(), opts).unwrap();
    let db = client.open_db("app1").unwrap();
    db.create(1, r#"{"a":1}"#).unwrap();
    assert_eq!(db.read(1).unwrap(), br#"{"a":1}"#);
    let e = client.open_db("other").unwrap_err();
    assert!(e.is_denied(), "{e:?}");

    // No token: every command is refused.
    let bare = Client::connect_tcp(&addr, tls).unwrap();
    let e = bare.open_db("app1").unwrap_err();
    assert_eq!(e.to_string(), "authentication required");

    // The server restarts on the same port: the handle reconnects, authenticates and
    // re-opens its database by itself.
    server.kill();
    server.spawn();
    assert_eq!(db.read(1).unwrap(), br#"{"a":1}"#);
    db.create(2, "{}").unwrap();
}

#[test]
fn plain_tcp_with_insecure_tcp_on_loopback() {
    let (server, port) = start(None);
    let token = issue(&server.data_dir(), "*", "admin");
    let client = Client::with_options_tcp(
        &format!("127.0.0.1:{port}"),
        Tls::Insecure,
        ClientOptions::new().token(token),
    )
    .unwrap();
    let db = client.open_db("plain").unwrap();
    db.create(1, "7").unwrap();
    assert_eq!(client.list_dbs().unwrap()[0].name, "plain");
    // TLS against a plain server fails clearly, within the connect timeout (the
    // server takes the ClientHello for the start of a frame and waits for the rest).
    let e = Client::with_options_tcp(
        &format!("localhost:{port}"),
        Tls::System,
        ClientOptions::new().connect_timeout(Duration::from_millis(500)),
    )
    .unwrap_err();
    assert!(e.to_string().contains("TLS handshake failed"), "{e}");
}

#[test]
fn shell_and_db_list_over_tls_with_a_token() {
    let ca = TestCa::new(&["127.0.0.1"]);
    let (server, port) = start(Some(&ca));
    let token = issue(&server.data_dir(), "*", "admin");
    let host = format!("127.0.0.1:{port}");
    let ca_file = ca.ca_file.display().to_string();
    let flags = ["--host", host.as_str(), "--tls-ca", ca_file.as_str()];

    // The token from the environment (out of `ps`).
    let mut args = vec!["shell"];
    args.extend(flags);
    args.extend([
        "-c",
        ".open remote",
        "-c",
        ".create 1 {\"x\":1}",
        "-c",
        ".read 1",
    ]);
    let out = docdb(&args, &[("DOCDB_TOKEN", &token)]);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(stdout.contains("database remote (id 1)"), "{stdout}");
    assert!(stdout.contains(r#""x": 1"#), "{stdout}");

    let mut args = vec!["db", "list"];
    args.extend(flags);
    args.extend(["--token", token.as_str()]);
    let out = docdb(&args, &[]);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(stdout.starts_with("OK\n1\tremote\t"), "{stdout}");

    // Without a token: refused before anything is sent, exit 2, saying what to do.
    let mut args = vec!["db", "list"];
    args.extend(flags);
    let out = docdb(&args, &[]);
    assert_eq!(out.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("needs a token"), "{stderr}");

    // The wrong CA: exit 2 with the reason.
    let other = TestCa::new(&["127.0.0.1"]);
    let other_ca = other.ca_file.display().to_string();
    let out = docdb(
        &[
            "shell", "--host", &host, "--tls-ca", &other_ca, "-c", ".open x",
        ],
        &[("DOCDB_TOKEN", &token)],
    );
    assert_eq!(out.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("not signed by the given CA"), "{stderr}");

    // --tls-ca without --host is a usage error, not a silent socket connection.
    let out = docdb(&["db", "list", "--tls-ca", &ca_file], &[]);
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("--tls-ca goes with --host"));
}
