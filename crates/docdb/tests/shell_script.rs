//! `docdb shell` driven through stdin against a real server: every command's `OK` /
//! `ERROR` output, pretty JSON on read, usage errors, and the exit code of a script.
#![allow(clippy::unwrap_used)]

mod common;

use std::io::Write;
use std::process::{Command, Stdio};

use common::Server;

fn shell(server: &Server, script: &str) -> (i32, String) {
    let mut child = Command::new(env!("CARGO_BIN_EXE_docdb"))
        .arg("shell")
        .arg("--socket")
        .arg(&server.socket)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    child
        .stdin
        .take()
        .unwrap()
        .write_all(script.as_bytes())
        .unwrap();
    let out = child.wait_with_output().unwrap();
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8(out.stdout).unwrap(),
    )
}

#[test]
fn a_script_prints_ok_or_error_for_every_command() {
    let s = Server::start(&[]);
    let (code, out) = shell(
        &s,
        r#".open shop
.create 1 {"name":"ada","tags":["x"]}
.read 1
.update 1 json:{"name":"grace"}
.patch 1 [{"op":"set","path":"/age","value":36}]
.create-collection orders
.use-collection orders
.create 7 [1,2,3]
.scan
.list-collections
.delete 7
.use-collection _default
.drop-collection orders
.heal 1
.heal-all
.stats
.exit
.read 1
"#,
    );
    assert_eq!(code, 0, "{out}");
    let expected_start = "OK\ndatabase shop (id 1)\nOK\nOK\n{\n  \"name\": \"ada\",\n  \"tags\": [\n    \"x\"\n  ]\n}\nOK\nOK\n{\n  \"age\": 36,\n  \"name\": \"grace\"\n}\n";
    assert!(out.starts_with(expected_start), "{out}");
    assert!(out.contains("OK\n7\t[1,2,3]\n(1 document(s))\n"), "{out}");
    assert!(out.contains("OK\n_default\norders\n"), "{out}");
    assert!(out.contains("OK\nhealed: []\n"), "{out}");
    assert!(out.contains("total_dbs: 1\n"), "{out}");
    assert!(!out.contains("ERROR"), "{out}");
    // `.exit` stops the script: the last read never ran.
    assert_eq!(out.matches("\"grace\"").count(), 1, "{out}");
}

#[test]
fn failures_are_errors_and_make_the_exit_code_non_zero() {
    let s = Server::start(&[]);
    let (code, out) = shell(
        &s,
        ".read 1\n.open shop\n.create 1 raw:abc\n.create 1 hex:00\n.create 1 {broken\n.create 1 {}\n.create 1 {}\n.read 2\n.read\n.read x\n.drop-collection nope\n.nonsense\n",
    );
    assert_eq!(code, 1);
    let blocks: Vec<&str> = out.split_inclusive('\n').collect();
    let text = blocks.concat();
    let json_only = "payload must be valid JSON (forbidden prefixes: raw: hex:)";
    assert!(
        text.starts_with("ERROR\nno database open: use .open <db> first\n"),
        "{text}"
    );
    assert_eq!(text.matches(json_only).count(), 3, "{text}");
    assert!(text.contains("ERROR\ndocument already exists\n"), "{text}");
    assert!(text.contains("ERROR\ndocument not found\n"), "{text}");
    assert!(text.contains("ERROR\nusage: .read <id>\n"), "{text}");
    assert!(text.contains("ERROR\ninvalid document id \"x\""), "{text}");
    assert!(text.contains("ERROR\ncollection not found\n"), "{text}");
    assert!(text.contains("ERROR\nunknown command .nonsense"), "{text}");
}

#[test]
fn help_lists_every_command_with_its_syntax() {
    let s = Server::start(&[]);
    let (code, out) = shell(&s, ".help\n");
    assert_eq!(code, 0);
    for c in [
        ".help",
        ".exit",
        ".clear",
        ".open <db>",
        ".close",
        ".create <id> <json>",
        ".read <id>",
        ".update <id> <json>",
        ".delete <id>",
        ".patch <id> <ops-json>",
        ".create-collection <name>",
        ".drop-collection <name>",
        ".list-collections",
        ".use-collection <name>",
        ".list-dbs",
        ".stats",
        ".mem",
        ".wal",
        ".heal <id>",
        ".heal-all",
        ".heal-stats",
        ".metrics",
        ".scan",
    ] {
        assert!(out.contains(c), "{c} missing from .help:\n{out}");
    }
}

#[test]
fn dash_c_runs_commands_and_reports_failure() {
    let s = Server::start(&[]);
    let out = Command::new(env!("CARGO_BIN_EXE_docdb"))
        .args(["shell", "--socket"])
        .arg(&s.socket)
        .args(["-c", ".open a", "-c", ".read 9"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    assert_eq!(
        String::from_utf8(out.stdout).unwrap(),
        "OK\ndatabase a (id 1)\nERROR\ndocument not found\n"
    );
}
