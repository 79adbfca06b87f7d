//! `docdb shell` driven through a pseudo-terminal against a real server, as a user types:
//! Tab completion of commands and of database and collection names (from the server),
//! a JSON document typed over several lines (`...> ` continuation prompt), and history
//! recalled with the up arrow, also in a new session (saved in `$HOME`).
#![allow(clippy::unwrap_used)]

mod common;

use std::path::Path;
use std::process::Command;

use common::Server;
use rexpect::reader::Options;
use rexpect::session::{spawn_with_options, PtySession};

const UP: &str = "\x1b[A";

fn start_shell(server: &Server, home: &Path) -> PtySession {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_docdb"));
    cmd.arg("shell")
        .arg("--socket")
        .arg(&server.socket)
        .env("HOME", home)
        .env_remove("XDG_STATE_HOME")
        .env("TERM", "xterm");
    let mut p = spawn_with_options(
        cmd,
        Options {
            timeout_ms: Some(15_000),
            strip_ansi_escape_codes: true,
        },
    )
    .unwrap();
    p.exp_string("Tab completes").unwrap();
    p.exp_string("docdb> ").unwrap();
    p
}

#[test]
fn completion_multi_line_input_and_history_through_a_terminal() {
    let s = Server::start(&[]);
    let home = tempfile::tempdir().unwrap();

    let mut p = start_shell(&s, home.path());
    // A command completed with Tab.
    p.send(".op\t").unwrap();
    p.flush().unwrap();
    p.exp_string(".open ").unwrap();
    p.send_line("shop").unwrap();
    p.exp_string("database shop (id 1)").unwrap();
    p.exp_string("docdb:shop/_default> ").unwrap();
    p.send_line(".create-collection orders").unwrap();
    p.exp_string("docdb:shop/_default> ").unwrap();
    // A collection name completed from what the server has.
    p.send(".use-collection or\t").unwrap();
    p.flush().unwrap();
    p.exp_string("orders").unwrap();
    p.send_line("").unwrap();
    p.exp_string("using collection orders").unwrap();
    p.exp_string("docdb:shop/orders> ").unwrap();
    // A document over three lines: the brackets left open continue the command.
    p.send_line(".create 1 {\"a\":").unwrap();
    p.exp_string("...> ").unwrap();
    p.send_line("  [1,").unwrap();
    p.exp_string("...> ").unwrap();
    p.send_line("   2]}").unwrap();
    p.exp_string("OK").unwrap();
    p.exp_string("docdb:shop/orders> ").unwrap();
    p.send_line(".read 1").unwrap();
    p.exp_regex(r#""a": \[\s+1,\s+2\s+\]"#).unwrap();
    p.exp_string("docdb:shop/orders> ").unwrap();
    // Up arrow, Enter: the last command runs again.
    p.send(UP).unwrap();
    p.send("\r").unwrap();
    p.flush().unwrap();
    p.exp_regex(r#""a": \[\s+1,\s+2\s+\]"#).unwrap();
    p.exp_string("docdb:shop/orders> ").unwrap();
    p.send_control('d').unwrap();
    p.exp_eof().unwrap();

    let saved = std::fs::read_to_string(home.path().join(".docdb_history")).unwrap();
    assert!(saved.contains(".read 1\n"), "{saved}");
    assert!(saved.contains(".create 1 {\"a\":"), "{saved}");

    // A new session: the database name completes, and the history is still there.
    let mut p = start_shell(&s, home.path());
    p.send(".open sh\t").unwrap();
    p.flush().unwrap();
    p.exp_string("shop").unwrap();
    p.send_line("").unwrap();
    p.exp_string("docdb:shop/_default> ").unwrap();
    p.send_line(".use-collection orders").unwrap();
    p.exp_string("docdb:shop/orders> ").unwrap();
    // History: .use-collection orders, .open shop, then the previous session's .read 1.
    p.send(UP).unwrap();
    p.send(UP).unwrap();
    p.send(UP).unwrap();
    p.send("\r").unwrap();
    p.flush().unwrap();
    p.exp_regex(r#""a": \[\s+1,\s+2\s+\]"#).unwrap();
    p.exp_string("docdb:shop/orders> ").unwrap();
    p.send_line("quit").unwrap();
    p.exp_eof().unwrap();
}
