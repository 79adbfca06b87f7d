//! `docdb shell` driven through stdin against a real server: every command's `OK` /
//! `ERROR` output (results on stdout, errors on stderr), pretty JSON on read, usage and
//! JSON errors, multi-line input, and the exit code of a script.
#![allow(clippy::unwrap_used)]

mod common;

use std::io::Write;
use std::process::{Command, Stdio};

use common::Server;

fn shell(server: &Server, script: &str) -> (i32, String) {
    let (code, out, _) = shell_err(server, script);
    (code, out)
}

/// Exit code, stdout, stderr.
fn shell_err(server: &Server, script: &str) -> (i32, String, String) {
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
        String::from_utf8(out.stderr).unwrap(),
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
fn failures_are_errors_on_stderr_and_make_the_exit_code_non_zero() {
    let s = Server::start(&[]);
    let (code, out, err) = shell_err(
        &s,
        ".read 1\n.open shop\n.create 1 raw:abc\n.create 1 hex:00\n.create 1 {broken}\n.create 1 {}\n.create 1 {}\n.read 2\n.read\n.read x\n.drop-collection nope\n.nonsense\n",
    );
    assert_eq!(code, 1);
    // Results stay on stdout, errors go to stderr.
    assert_eq!(out, "OK\ndatabase shop (id 1)\nOK\n", "{out}");
    let text = err;
    let json_only = "payload must be valid JSON (forbidden prefixes: raw: hex:)";
    assert!(
        text.starts_with("ERROR\nno database open: use .open <db> first\n"),
        "{text}"
    );
    assert_eq!(text.matches(json_only).count(), 2, "{text}");
    assert!(
        text.contains("ERROR\ninvalid JSON: key must be a string at line 1 column 2\n"),
        "{text}"
    );
    assert!(text.contains("ERROR\ndocument already exists\n"), "{text}");
    assert!(text.contains("ERROR\ndocument not found\n"), "{text}");
    assert!(text.contains("ERROR\nusage: .read <id>\n"), "{text}");
    assert!(text.contains("ERROR\ninvalid document id \"x\""), "{text}");
    assert!(text.contains("ERROR\ncollection not found\n"), "{text}");
    assert!(text.contains("ERROR\nunknown command .nonsense"), "{text}");
    assert!(!text.contains("OK\n"), "{text}");
}

#[test]
fn json_errors_say_what_is_wrong_and_where() {
    let s = Server::start(&[]);
    let (code, out, err) = shell_err(
        &s,
        ".open j\n.create 1 {name: bad}\n.create 2 {\"a\":1\n.create 3 '{\"q\":1}'\n",
    );
    assert_eq!(code, 1, "{out}{err}");
    assert!(!err.contains("forbidden prefixes"), "{err}");
    let blocks: Vec<&str> = err.split("ERROR\n").skip(1).collect();
    assert_eq!(blocks.len(), 3, "{err}");
    assert!(
        blocks[0].starts_with("invalid JSON: key must be a string at line 1 column 2\n"),
        "{err}"
    );
    assert!(
        blocks[0].contains("hint: object keys need double quotes"),
        "{err}"
    );
    // The unclosed object: the next line is a command, not more JSON, so it ran alone.
    assert!(
        blocks[1].starts_with("invalid JSON: EOF while parsing an object at line 1 column 6\n"),
        "{err}"
    );
    assert!(
        blocks[1].contains("hint: a bracket, brace or string is not closed"),
        "{err}"
    );
    assert!(
        blocks[2].starts_with("invalid JSON: expected value at line 1 column 1\n"),
        "{err}"
    );
    assert!(blocks[2].contains("hint: drop the single quotes"), "{err}");
    // Once the brace is closed on the next line, the document goes in.
    let (code, out, err) = shell_err(&s, ".open j\n.create 4 {\"a\":1\n}\n.read 4\n");
    assert_eq!(code, 0, "{out}{err}");
    assert!(out.ends_with("OK\nOK\n{\n  \"a\": 1\n}\n"), "{out}");
}

#[test]
fn multi_line_json_in_a_script() {
    let s = Server::start(&[]);
    let (code, out, err) = shell_err(
        &s,
        ".open m\n.create 1 {\n  \"name\": \"ada\",\n  \"tags\": [\n    \"x\", \"}\"\n  ]\n}\n.patch 1 [\n {\"op\":\"add\",\"path\":\"/n\",\"value\":1},\n {\"op\":\"remove\",\"path\":\"/tags\"}\n]\n.read 1\n",
    );
    assert_eq!(code, 0, "{out}{err}");
    assert_eq!(err, "");
    assert!(
        out.ends_with("OK\n{\n  \"n\": 1,\n  \"name\": \"ada\"\n}\n"),
        "{out}"
    );
}

#[test]
fn patch_errors_name_the_op_and_every_op_works() {
    let s = Server::start(&[]);
    let (code, out, err) = shell_err(
        &s,
        r#".open p
.create 1 {"a":1,"b":[1,2]}
.patch 1 [{"op":"set","path":"/x","value":1},{"op":"sett","path":"/a","value":2}]
.patch 1 [{"op":"replace","value":2}]
.patch 1 {"op":"set","path":"/a","value":2}
.patch 1 [{"op":"replace","path":"/missing","value":2}]
.patch 1 [{"op":"set","path":"/s/t","value":1},{"op":"insert","path":"/b/0","value":0},{"op":"add","path":"/c","value":3},{"op":"replace","path":"/a","value":10},{"op":"copy","from":"/a","path":"/d"},{"op":"move","from":"/d","path":"/e"},{"op":"test","path":"/e","value":10},{"op":"remove","path":"/c"},{"op":"delete","path":"/s"}]
"#,
    );
    assert_eq!(code, 1, "{out}{err}");
    assert!(
        err.contains(
            "ERROR\nops[1]: unknown op \"sett\" (one of set, insert, delete, add, remove, replace, move, copy, test)\n"
        ),
        "{err}"
    );
    assert!(
        err.contains("ERROR\nops[0]: replace: missing \"path\", a JSON Pointer such as \"/a/b\"\n"),
        "{err}"
    );
    assert!(
        err.contains("ERROR\npatch ops must be a JSON array: wrap the op in [ ]\n"),
        "{err}"
    );
    assert!(err.contains("ERROR\ninvalid JSON path\nhint: "), "{err}");
    assert!(!err.contains("invalid patch operations"), "{err}");
    // Nothing half-applied; then the nine-op patch applies.
    assert!(
        out.ends_with(
            "OK\n{\n  \"a\": 10,\n  \"b\": [\n    0,\n    1,\n    2\n  ],\n  \"e\": 10\n}\n"
        ),
        "{out}"
    );
}

#[test]
fn aliases_names_with_spaces_and_list_dbs() {
    let s = Server::start(&[]);
    let (code, out, err) = shell_err(
        &s,
        "help\n.open with space\n.open alpha\n.create-collection two words\n.open a-much-longer-name\n.list-dbs\nquit\n.read 1\n",
    );
    assert_eq!(code, 1, "{out}{err}");
    assert!(out.starts_with("OK\n.help"), "{out}");
    assert!(
        err.contains("ERROR\ninvalid database name \"with space\""),
        "{err}"
    );
    assert!(!err.contains("usage: .open"), "{err}");
    assert!(
        err.contains("ERROR\ninvalid collection name \"two words\""),
        "{err}"
    );
    let table: Vec<&str> = out.rsplit("OK\n").next().unwrap().lines().collect();
    assert_eq!(table.len(), 3, "{out}");
    assert!(
        table[0].starts_with("ID  NAME                CREATED  "),
        "{out}"
    );
    // Columns line up: every row has the created time at the same offset, in UTC seconds.
    let at = table[0].find("CREATED").unwrap();
    for row in &table[1..] {
        let t = &row[at..at + 23];
        assert!(t.ends_with(" UTC") && t.as_bytes()[10] == b' ', "{row:?}");
        assert_eq!(row.len(), table[0].len(), "{table:?}");
    }
    // `quit` left before the last line ran.
    assert!(!err.contains("no database open"), "{err}");
    let (code, _, _) = shell_err(&s, "exit\n.nonsense\n");
    assert_eq!(code, 0);
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
        "OK\ndatabase a (id 1)\n"
    );
    assert_eq!(
        String::from_utf8(out.stderr).unwrap(),
        "ERROR\ndocument not found\n"
    );
}
