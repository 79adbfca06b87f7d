#![allow(clippy::unwrap_used, clippy::expect_used)]
//! Access control over the Unix socket (SPEC §8.1, §9.1): every command × every kind
//! of token with `--auth token`, ids opened by another connection, tokens across a
//! restart and a key rotation, peer mode, and `--auth none` left as v0.3 had it.

mod common;
mod support;

use std::time::Duration;

use common::{run_docdb, Client, Server};
use docdb_protocol::{Op, OpType, Request, Response};
use serde_json::Value;
use support::*;

const DENIED: u8 = 5;

fn issue(data_dir: &std::path::Path, db: &str, rights: &str, expires: Option<&str>) -> String {
    let dir = data_dir.display().to_string();
    let mut args = vec![
        "token",
        "issue",
        "--data-dir",
        &dir,
        "--db",
        db,
        "--rights",
        rights,
    ];
    if let Some(e) = expires {
        args.extend(["--expires", e]);
    }
    let out = run_docdb(&args);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap().trim().to_string()
}

fn call(c: &mut Client, db: u64, code: u8, ops: Vec<Op>) -> Response {
    c.send(&Request {
        request_id: 77,
        db_id: db,
        command: code,
        ops,
    });
    let r = c.recv().expect("a reply, not a closed connection");
    assert_eq!(r.request_id, 77);
    r
}

fn name_op(name: &str) -> Op {
    Op::new(OpType::Create, "", 0, name.as_bytes().to_vec())
}

fn auth(c: &mut Client, token: &str) -> Response {
    call(c, 0, 16, vec![name_op(token)])
}

fn text(r: &Response) -> String {
    String::from_utf8_lossy(&r.data).into_owned()
}

/// What a command must get under one token.
#[derive(Clone, Copy, Debug)]
enum Expect {
    /// Not refused by access control (its own outcome may still be an error).
    Allowed,
    /// Status 5 with a text containing this.
    Denied(&'static str),
}

const AUTH_REQUIRED: Expect = Expect::Denied("authentication required");
const NEEDS_WRITE: Expect = Expect::Denied("needs write rights");
const NEEDS_ADMIN: Expect = Expect::Denied("needs admin rights");
const OUTSIDE: Expect = Expect::Denied("outside this connection's scope");
const NOT_OPENED: Expect = Expect::Denied("was not opened by this connection");

/// Every command once, in an order that works for a token that may do everything:
/// (name, code, needs a db id, ops). `tag` keeps names apart between tokens.
fn commands(tag: &str) -> Vec<(&'static str, u8, bool, Vec<Op>)> {
    let coll = format!("c_{tag}");
    vec![
        ("open_in_scope", 1, false, vec![name_op("t-a")]),
        ("open_out_of_scope", 1, false, vec![name_op("other")]),
        ("execute_read", 3, true, vec![read_op("_default", 1)]),
        (
            "execute_write",
            3,
            true,
            vec![create_op("_default", 100 + tag.len() as u64 * 7, "{}")],
        ),
        (
            "transaction_write",
            13,
            true,
            vec![create_op("_default", 200 + tag.len() as u64 * 7, "{}")],
        ),
        (
            "scan",
            15,
            true,
            vec![Op::new(
                OpType::Create,
                "_default",
                0,
                br#"{"limit":5}"#.to_vec(),
            )],
        ),
        ("create_collection", 5, true, vec![coll_op(&coll)]),
        ("list_collections", 7, true, vec![]),
        ("delete_collection", 6, true, vec![coll_op(&coll)]),
        ("heal", 9, true, vec![read_op("_default", 1)]),
        ("heal_all", 10, true, vec![]),
        ("heal_stats", 11, true, vec![]),
        ("list_dbs", 8, false, vec![]),
        ("stats", 4, false, vec![]),
        ("metrics", 12, false, vec![]),
        ("scheduler_stats", 14, false, vec![]),
        ("drop_db", 17, false, vec![name_op("t-a")]),
        ("close_db", 2, true, vec![]),
    ]
}

/// Runs every command on a fresh connection after `token` (None: no Auth) and checks
/// each against `expect`. `foreign` is an id of t-a opened by another connection:
/// used when this connection could not open t-a itself.
fn run_matrix(
    s: &Server,
    tag: &str,
    token: Option<&str>,
    auth_ok: bool,
    foreign: u64,
    expect: impl Fn(&str) -> Expect,
) {
    let mut c = s.connect();
    if let Some(t) = token {
        let r = auth(&mut c, t);
        if auth_ok {
            assert_eq!(r.status, 0, "{tag}: auth: {}", text(&r));
        } else {
            assert_eq!(r.status, DENIED, "{tag}: auth: {}", text(&r));
            assert!(
                text(&r).starts_with("permission denied: "),
                "{tag}: {}",
                text(&r)
            );
        }
    }
    let mut db = foreign;
    for (name, code, per_db, ops) in commands(tag) {
        let r = call(&mut c, if per_db { db } else { 0 }, code, ops);
        if name == "open_in_scope" && r.status == 0 {
            db = u64::from_le_bytes(r.data[..8].try_into().unwrap());
        }
        match expect(name) {
            Expect::Allowed => {
                assert_ne!(r.status, DENIED, "{tag}: {name} was refused: {}", text(&r))
            }
            Expect::Denied(want) => {
                assert_eq!(r.status, DENIED, "{tag}: {name}: {}", text(&r));
                assert!(
                    text(&r).contains(want),
                    "{tag}: {name}: {:?} lacks {want:?}",
                    text(&r)
                );
            }
        }
        if name == "list_dbs" && r.status == 0 {
            let rows: Vec<Value> = serde_json::from_slice(&r.data).unwrap();
            let names: Vec<&str> = rows.iter().map(|r| r["Name"].as_str().unwrap()).collect();
            // Only the databases in the token's scope are listed.
            let (t_a, other) = match tag {
                "admin" => (true, true),
                "out_of_scope" => (false, false),
                _ => (true, false),
            };
            assert_eq!(names.contains(&"t-a"), t_a, "{tag}: {names:?}");
            assert_eq!(names.contains(&"other"), other, "{tag}: {names:?}");
        }
    }
}

#[test]
fn every_command_under_every_kind_of_token() {
    let s = Server::start(&["--auth", "token"]);
    let data = s.data_dir();
    let admin = issue(&data, "*", "admin", Some("1h"));
    let read = issue(&data, "t-*", "read", None);
    let write = issue(&data, "t-*", "write", Some("30d"));
    let out_of_scope = issue(&data, "zzz-*", "admin", None);
    let expired = issue(&data, "*", "admin", Some("1s"));
    let other_dir = tempfile::tempdir().unwrap();
    let other_key = issue(other_dir.path(), "*", "admin", None);
    // The write token's claims with "admin" for "write", its signature kept.
    let tampered = {
        use base64::Engine;
        let b64 = base64::engine::general_purpose::URL_SAFE_NO_PAD;
        let mut parts: Vec<String> = write.split('.').map(String::from).collect();
        let claims = String::from_utf8(b64.decode(&parts[1]).unwrap()).unwrap();
        parts[1] = b64.encode(claims.replace("\"write\"", "\"admin\""));
        parts.join(".")
    };
    assert_ne!(tampered, write);

    // Set-up by an admin: t-a and other exist, t-a has document 1.
    let mut setup = s.connect();
    let r = auth(&mut setup, &admin);
    assert_eq!(r.status, 0, "{}", text(&r));
    let reply: Value = serde_json::from_slice(&r.data).unwrap();
    assert_eq!(reply["db"], "*");
    assert_eq!(reply["rights"], "admin");
    assert!(reply["expires"].as_u64().unwrap() > common_now());
    let ta = setup.open_db("t-a");
    setup.open_db("other");
    assert_eq!(setup.create(ta, "_default", 1, r#"{"x":1}"#).0, 0);

    std::thread::sleep(Duration::from_millis(2100)); // `expired` is now past its exp

    let refused = |_: &str| AUTH_REQUIRED;
    run_matrix(&s, "none", None, false, ta, refused);
    run_matrix(&s, "garbage", Some("not-a-token"), false, ta, refused);
    run_matrix(&s, "expired", Some(&expired), false, ta, refused);
    run_matrix(&s, "tampered", Some(&tampered), false, ta, refused);
    run_matrix(&s, "other_key", Some(&other_key), false, ta, refused);
    run_matrix(&s, "read", Some(&read), true, ta, |name| match name {
        "open_out_of_scope" => OUTSIDE,
        "execute_write" | "transaction_write" | "create_collection" | "delete_collection"
        | "heal" => NEEDS_WRITE,
        "heal_all" | "stats" | "metrics" | "scheduler_stats" | "drop_db" => NEEDS_ADMIN,
        _ => Expect::Allowed,
    });
    run_matrix(&s, "write", Some(&write), true, ta, |name| match name {
        "open_out_of_scope" => OUTSIDE,
        "heal_all" | "stats" | "metrics" | "scheduler_stats" | "drop_db" => NEEDS_ADMIN,
        _ => Expect::Allowed,
    });
    run_matrix(&s, "admin", Some(&admin), true, ta, |_| Expect::Allowed);
    run_matrix(
        &s,
        "out_of_scope",
        Some(&out_of_scope),
        true,
        ta,
        |name| match name {
            "open_in_scope" | "open_out_of_scope" | "drop_db" => OUTSIDE,
            "list_dbs" | "stats" | "metrics" | "scheduler_stats" => Expect::Allowed,
            _ => NOT_OPENED,
        },
    );

    // The texts of a refused Auth name the reason.
    let mut c = s.connect();
    for (token, want) in [
        (expired.as_str(), "permission denied: token expired"),
        (tampered.as_str(), "permission denied: bad signature"),
        (
            other_key.as_str(),
            "permission denied: bad signature: the token was signed with another key",
        ),
        ("a.b", "permission denied: malformed token"),
    ] {
        let r = auth(&mut c, token);
        assert_eq!(r.status, DENIED);
        assert!(text(&r).starts_with(want), "{:?} vs {want:?}", text(&r));
    }
}

fn common_now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs()
}

#[test]
fn an_id_opened_by_another_connection_grants_nothing() {
    let s = Server::start(&["--auth", "token"]);
    let write = issue(&s.data_dir(), "t-*", "write", None);
    let mut a = s.connect();
    assert_eq!(auth(&mut a, &write).status, 0);
    let id = a.open_db("t-a");
    assert_eq!(a.create(id, "_default", 1, "{}").0, 0);

    let mut b = s.connect();
    assert_eq!(auth(&mut b, &write).status, 0);
    let r = call(&mut b, id, 3, vec![read_op("_default", 1)]);
    assert_eq!(r.status, DENIED, "{}", text(&r));
    assert!(text(&r).contains(&format!("database id {id} was not opened")));
    // Once b opens it within its scope, the same id works for b too.
    assert_eq!(b.open_db("t-a"), id);
    assert_eq!(b.read(id, "_default", 1).0, 0);
    // A second Auth replaces the scope: ids outside the new one are dropped.
    let narrow = issue(&s.data_dir(), "t-b", "read", None);
    let r = auth(&mut b, &narrow);
    assert_eq!(r.status, 0);
    assert_eq!(text(&r), r#"{"db":"t-b","expires":null,"rights":"read"}"#);
    assert_eq!(
        call(&mut b, id, 3, vec![read_op("_default", 1)]).status,
        DENIED
    );
    // After CloseDB the id is no longer this connection's.
    assert_eq!(call(&mut a, id, 2, vec![]).status, 0);
    assert_eq!(
        call(&mut a, id, 3, vec![read_op("_default", 1)]).status,
        DENIED
    );
}

#[test]
fn tokens_survive_a_restart_and_a_rotation_revokes_them() {
    let mut s = Server::start(&["--auth", "token"]);
    let data = s.data_dir();
    let old = issue(&data, "*", "write", None);
    s.stop();
    s.spawn();
    let mut c = s.connect();
    assert_eq!(auth(&mut c, &old).status, 0, "the key outlives the process");
    c.open_db("kept");

    // Rotate while the server runs: the old token fails at its next Auth.
    let out = run_docdb(&["token", "rotate", "--data-dir", &data.display().to_string()]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let mut c2 = s.connect();
    let r = auth(&mut c2, &old);
    assert_eq!(r.status, DENIED);
    assert!(text(&r).contains("another key"), "{}", text(&r));
    let new = issue(&data, "*", "write", None);
    assert_eq!(auth(&mut c2, &new).status, 0);
}

#[test]
fn peer_mode_maps_the_uid_to_its_scope() {
    let uid = unsafe { libc::getuid() };
    let s = Server::start_with_config(
        &format!("[auth]\nmode = \"peer\"\n[auth.peer]\n\"{uid}\" = {{ db = \"p-*\", rights = \"read\" }}\n"),
        &[],
    );
    let mut c = s.connect();
    let id = c.open_db("p-1");
    assert_eq!(
        c.read(id, "_default", 1).0,
        2,
        "a read is let through: NotFound"
    );
    let r = call(&mut c, id, 3, vec![create_op("_default", 1, "{}")]);
    assert_eq!(r.status, DENIED);
    assert_eq!(call(&mut c, 0, 1, vec![name_op("q-1")]).status, DENIED);

    let other = Server::start_with_config(
        "[auth]\nmode = \"peer\"\n[auth.peer]\n\"4000000\" = { db = \"*\", rights = \"admin\" }\n",
        &[],
    );
    let mut c = other.connect();
    let r = call(&mut c, 0, 8, vec![]);
    assert_eq!(r.status, DENIED);
    assert_eq!(
        text(&r),
        format!("permission denied: uid {uid} has no [auth.peer] entry")
    );
}

#[test]
fn auth_none_is_v0_3_unchanged() {
    let s = Server::start(&[]);
    let mut c = s.connect();
    // Raw v0.3 frames, no Auth: everything works as before, server-wide commands too.
    c.send_raw(&frame(1, 0, 1, vec![name_op("anything")]));
    let r = c.recv().unwrap();
    assert_eq!(r.status, 0);
    let id = u64::from_le_bytes(r.data[..8].try_into().unwrap());
    c.send_raw(&frame(2, id, 3, vec![create_op("_default", 1, "{}")]));
    assert_eq!(c.recv().unwrap().status, 0);
    for code in [4u8, 8, 12, 14] {
        c.send_raw(&frame(3, 0, code, vec![]));
        assert_eq!(c.recv().unwrap().status, 0, "command {code}");
    }
    // An id needs no opening by this connection.
    let mut d = s.connect();
    d.send_raw(&frame(4, id, 3, vec![read_op("_default", 1)]));
    assert_eq!(d.recv().unwrap().status, 0);
}

#[test]
fn the_rust_client_authenticates_every_connection_and_types_denied() {
    let mut s = Server::start(&["--auth", "token"]);
    let write = issue(&s.data_dir(), "t-*", "write", None);
    let read = issue(&s.data_dir(), "t-*", "read", None);

    let c = docdb_client::Client::connect(&s.socket).unwrap();
    let e = c.open_db("t-a").unwrap_err();
    assert!(e.is_denied(), "{e:?}");
    assert_eq!(e.server_text(), Some("authentication required"));
    let info = c.auth(&write).unwrap();
    assert_eq!(
        (info.db.as_str(), info.rights.as_str(), info.expires),
        ("t-*", "write", None)
    );

    // Three connections, all authenticated, each having opened the database.
    let opts = docdb_client::ClientOptions::new()
        .connections(3)
        .token(write.clone());
    let pool = docdb_client::Client::with_options(&s.socket, opts).unwrap();
    let db = pool.open_db("t-a").unwrap();
    for id in 1..=6 {
        db.create(id, b"{}").unwrap();
    }
    // After a restart each new connection authenticates and reopens by itself.
    s.stop();
    s.spawn();
    for id in 1..=6 {
        assert_eq!(db.read(id).unwrap(), b"{}");
    }

    let r = docdb_client::Client::with_options(
        &s.socket,
        docdb_client::ClientOptions::new().token(read),
    )
    .unwrap();
    let e = r.open_db("t-a").unwrap().create(99, b"{}").unwrap_err();
    assert!(e.is_denied(), "{e:?}");
    assert!(r.open_db("u-1").unwrap_err().is_denied());
    let bad = docdb_client::Client::with_options(
        &s.socket,
        docdb_client::ClientOptions::new().token("garbage"),
    )
    .unwrap_err();
    assert!(bad.is_denied(), "{bad:?}");
}

/// `docdb shell --socket S <extra>` with `env`, `script` on stdin: (exit code, stdout,
/// stderr).
fn shell(s: &Server, extra: &[&str], env: &[(&str, &str)], script: &str) -> (i32, String, String) {
    use std::io::Write;
    use std::process::{Command, Stdio};
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_docdb"));
    cmd.arg("shell")
        .arg("--socket")
        .arg(&s.socket)
        .args(extra)
        .env_remove("DOCDB_TOKEN")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    for (k, v) in env {
        cmd.env(k, v);
    }
    let mut child = cmd.spawn().unwrap();
    child
        .stdin
        .take()
        .unwrap()
        .write_all(script.as_bytes())
        .unwrap();
    let out = child.wait_with_output().unwrap();
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[test]
fn the_shell_authenticates_with_a_flag_or_docdb_token() {
    let s = Server::start(&["--auth", "token"]);
    let write = issue(&s.data_dir(), "t-*", "write", None);
    let script = ".open t-a\n.create 1 {\"a\":1}\n.read 1\n";
    let (code, out, err) = shell(&s, &[], &[], script);
    assert_ne!(code, 0);
    // Errors go to stderr (DECISIONS 54).
    assert!(err.contains("authentication required"), "{out}{err}");
    let (code, out, err) = shell(&s, &["--token", &write], &[], script);
    assert_eq!(code, 0, "{out}{err}");
    assert!(out.contains(r#""a": 1"#), "{out}");
    let (code, out, err) = shell(&s, &[], &[("DOCDB_TOKEN", &write)], ".open t-a\n.read 1\n");
    assert_eq!(code, 0, "{out}{err}");
    let (code, _, err) = shell(&s, &["--token", "nope"], &[], ".list-dbs\n");
    assert_eq!(code, 2);
    assert!(
        err.contains("authentication failed: permission denied: malformed token"),
        "{err}"
    );
}

#[test]
fn the_admin_cli_authenticates_and_drop_needs_admin() {
    let s = Server::start(&["--auth", "token"]);
    let admin = issue(&s.data_dir(), "*", "admin", None);
    let write = issue(&s.data_dir(), "*", "write", None);
    let sock = s.socket.display().to_string();
    let db = |args: &[&str], token: Option<&str>| {
        let mut cmd = std::process::Command::new(env!("CARGO_BIN_EXE_docdb"));
        cmd.arg("db").args(args).args(["--socket", &sock]);
        cmd.env_remove("DOCDB_TOKEN");
        if let Some(t) = token {
            cmd.env("DOCDB_TOKEN", t);
        }
        let out = cmd.output().unwrap();
        (
            out.status.code(),
            String::from_utf8_lossy(&out.stdout).into_owned(),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        )
    };
    let mut c = s.connect();
    assert_eq!(auth(&mut c, &admin).status, 0);
    c.open_db("victim");

    let (code, out, err) = db(&["list"], None);
    assert_eq!(code, Some(1), "{out}{err}");
    assert!(err.contains("authentication required"), "{err}");
    let (code, out, err) = db(&["drop", "victim"], Some(&write));
    assert_eq!(code, Some(1), "{out}{err}");
    assert!(err.contains("permission denied"), "{err}");
    let (code, _, err) = db(&["list", "--token", "garbage"], None);
    assert_eq!(code, Some(2), "{err}");
    assert!(err.contains("authentication failed"), "{err}");
    let (code, out, err) = db(&["list"], Some(&admin));
    assert_eq!(code, Some(0), "{out}{err}");
    assert!(out.contains("victim"), "{out}");
    let (code, out, err) = db(&["drop", "victim", "--token", &admin], None);
    assert_eq!(
        (code, out.as_str()),
        (Some(0), "OK\ndropped victim\n"),
        "{err}"
    );
}

#[test]
fn auth_max_opened_bounds_the_ids_one_connection_holds() {
    let s = Server::start_with_config("[auth]\nmode = \"token\"\nmax_opened = 2\n", &[]);
    let write = issue(&s.data_dir(), "t-*", "write", None);
    let mut c = s.connect();
    assert_eq!(auth(&mut c, &write).status, 0);
    let a = c.open_db("t-a");
    c.open_db("t-b");
    // A name the connection holds already is not one more: it opens again.
    assert_eq!(c.open_db("t-a"), a);
    let r = call(&mut c, 0, 1, vec![name_op("t-c")]);
    assert_eq!(r.status, DENIED, "{}", text(&r));
    assert_eq!(
        text(&r),
        "permission denied: this connection has 2 databases open (auth.max_opened); close one first"
    );
    // Closing one makes room.
    assert_eq!(call(&mut c, a, 2, vec![]).status, 0);
    c.open_db("t-c");
}
