//! `docdbsh`, the DocDB shell: line editing and history when interactive, a script
//! runner when stdin is not a terminal (or with `-c`), exiting non-zero if any command
//! failed.
//!
//! # Layout
//! - [`cli`]: flags, the interactive loop (rustyline) and the script runner.
//! - [`commands`]: every command's syntax and help.
//! - [`Shell`]: the state (connection, current database and collection) and
//!   [`Shell::execute`], which runs one line and returns its output lines.

pub mod cli;
pub mod commands;

use docdb_client::{Client, Database};
use serde_json::Value;

/// The JSON-only refusal, the server's stable text for non-JSON payloads.
pub const JSON_ONLY: &str = "payload must be valid JSON (forbidden prefixes: raw: hex:)";

/// What one line did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Outcome {
    pub ok: bool,
    pub lines: Vec<String>,
    /// The line asked to leave.
    pub exit: bool,
}

impl Outcome {
    fn ok(lines: Vec<String>) -> Outcome {
        Outcome {
            ok: true,
            lines,
            exit: false,
        }
    }
    fn err(msg: impl Into<String>) -> Outcome {
        Outcome {
            ok: false,
            lines: vec![msg.into()],
            exit: false,
        }
    }
    /// The text to print: `OK`/`ERROR`, then the details.
    pub fn render(&self) -> String {
        let mut s = String::from(if self.ok { "OK" } else { "ERROR" });
        for l in &self.lines {
            s.push('\n');
            s.push_str(l);
        }
        s
    }
}

/// The shell's state.
pub struct Shell {
    client: Client,
    db: Option<Database>,
    collection: String,
}

/// Parses a payload: bare JSON or `json:`-prefixed; `raw:`/`hex:` are refused.
fn payload(text: &str) -> Result<Vec<u8>, String> {
    let t = text.trim();
    if t.starts_with("raw:") || t.starts_with("hex:") {
        return Err(JSON_ONLY.into());
    }
    let t = t.strip_prefix("json:").unwrap_or(t).trim();
    serde_json::from_str::<Value>(t)
        .map(|_| t.as_bytes().to_vec())
        .map_err(|_| JSON_ONLY.into())
}

fn pretty(bytes: &[u8]) -> Vec<String> {
    match serde_json::from_slice::<Value>(bytes).and_then(|v| serde_json::to_string_pretty(&v)) {
        Ok(s) => s.lines().map(str::to_owned).collect(),
        Err(_) => vec![String::from_utf8_lossy(bytes).into_owned()],
    }
}

fn parse_id(s: &str) -> Result<u64, String> {
    s.parse::<u64>()
        .map_err(|_| format!("invalid document id {s:?}: expected an unsigned 64-bit integer"))
}

impl Shell {
    pub fn new(client: Client) -> Shell {
        Shell {
            client,
            db: None,
            collection: "_default".into(),
        }
    }

    /// The prompt: `docdb>`, or `docdb:db/collection>` once a database is open.
    pub fn prompt(&self) -> String {
        match &self.db {
            Some(db) => format!("docdb:{}/{}> ", db.name(), self.collection),
            None => "docdb> ".into(),
        }
    }

    fn db(&self) -> Result<&Database, String> {
        self.db
            .as_ref()
            .ok_or_else(|| "no database open: use .open <db> first".to_string())
    }

    /// Runs one line. Empty lines and `#` comments do nothing (and succeed).
    pub fn execute(&mut self, line: &str) -> Option<Outcome> {
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') {
            return None;
        }
        let (cmd, rest) = match line.split_once(char::is_whitespace) {
            Some((c, r)) => (c, r.trim()),
            None => (line, ""),
        };
        Some(match self.run(cmd, rest) {
            Ok(o) => o,
            Err(e) => Outcome::err(e),
        })
    }

    fn run(&mut self, cmd: &str, rest: &str) -> Result<Outcome, String> {
        let e = |err: docdb_client::Error| err.to_string();
        let args: Vec<&str> = rest.split_whitespace().collect();
        let need = |n: usize| -> Result<(), String> {
            if args.len() == n {
                Ok(())
            } else {
                Err(commands::usage(cmd))
            }
        };
        // `<id> <json...>`: the JSON is everything after the id.
        let id_and_json = || -> Result<(u64, Vec<u8>), String> {
            let (id, json) = rest
                .split_once(char::is_whitespace)
                .ok_or_else(|| commands::usage(cmd))?;
            Ok((parse_id(id)?, payload(json)?))
        };
        match cmd {
            ".help" => Ok(Outcome::ok(commands::help())),
            ".exit" | ".quit" => Ok(Outcome {
                ok: true,
                lines: vec![],
                exit: true,
            }),
            ".clear" => Ok(Outcome::ok(vec!["\x1b[2J\x1b[H".into()])),
            ".open" => {
                need(1)?;
                let db = self.client.open_db(args[0]).map_err(e)?;
                let line = format!("database {} (id {})", db.name(), db.id());
                self.db = Some(db);
                self.collection = "_default".into();
                Ok(Outcome::ok(vec![line]))
            }
            ".close" => {
                need(0)?;
                let db = self.db.take().ok_or("no database open")?;
                db.close().map_err(e)?;
                Ok(Outcome::ok(vec![format!("closed {}", db.name())]))
            }
            ".use-collection" => {
                need(1)?;
                let db = self.db()?;
                let names = db.list_collections().map_err(e)?;
                if !names.iter().any(|n| n == args[0]) {
                    return Err(format!("collection not found: {}", args[0]));
                }
                self.collection = args[0].to_string();
                Ok(Outcome::ok(vec![format!("using collection {}", args[0])]))
            }
            ".create" | ".update" => {
                let (id, json) = id_and_json()?;
                let db = self.db()?;
                let c = db.collection(&self.collection);
                if cmd == ".create" {
                    c.create(id, json)
                } else {
                    c.update(id, json)
                }
                .map_err(e)?;
                Ok(Outcome::ok(vec![]))
            }
            ".read" => {
                need(1)?;
                let id = parse_id(args[0])?;
                let doc = self
                    .db()?
                    .collection(&self.collection)
                    .read(id)
                    .map_err(e)?;
                Ok(Outcome::ok(pretty(&doc)))
            }
            ".delete" => {
                need(1)?;
                let id = parse_id(args[0])?;
                self.db()?
                    .collection(&self.collection)
                    .delete(id)
                    .map_err(e)?;
                Ok(Outcome::ok(vec![]))
            }
            ".patch" => {
                let (id, ops) = id_and_json()?;
                let db = self.db()?;
                let c = db.collection(&self.collection);
                c.patch_raw(id, ops).map_err(e)?;
                let doc = c.read(id).map_err(e)?;
                Ok(Outcome::ok(pretty(&doc)))
            }
            ".create-collection" | ".drop-collection" => {
                need(1)?;
                let db = self.db()?;
                if cmd == ".create-collection" {
                    db.create_collection(args[0])
                } else {
                    db.delete_collection(args[0])
                }
                .map_err(e)?;
                if cmd == ".drop-collection" && self.collection == args[0] {
                    self.collection = "_default".into();
                }
                Ok(Outcome::ok(vec![]))
            }
            ".list-collections" => {
                need(0)?;
                Ok(Outcome::ok(self.db()?.list_collections().map_err(e)?))
            }
            ".list-dbs" => {
                need(0)?;
                let dbs = self.client.list_dbs().map_err(e)?;
                Ok(Outcome::ok(
                    dbs.iter()
                        .map(|d| {
                            format!(
                                "{}\t{}\tcreated {}\tdocs {}\twal {} B\tmemory {} B",
                                d.id, d.name, d.created_at, d.docs_live, d.wal_size, d.memory_used
                            )
                        })
                        .collect(),
                ))
            }
            ".stats" => {
                need(0)?;
                let s = self.client.stats().map_err(e)?;
                Ok(Outcome::ok(vec![
                    format!("total_dbs: {}", s.total_dbs),
                    format!("active_dbs: {}", s.active_dbs),
                    format!("total_txns: {}", s.total_txns),
                    format!("wal_size: {}", s.wal_size),
                    format!("memory_used: {}", s.memory_used),
                ]))
            }
            ".mem" | ".wal" => {
                need(0)?;
                let s = self.client.stats().map_err(e)?;
                let mut lines = vec![if cmd == ".mem" {
                    format!("server memory_used: {} bytes", s.memory_used)
                } else {
                    format!("server wal_size: {} bytes", s.wal_size)
                }];
                if let Some(db) = &self.db {
                    let dbs = self.client.list_dbs().map_err(e)?;
                    if let Some(d) = dbs.iter().find(|d| d.id == db.id()) {
                        lines.push(if cmd == ".mem" {
                            format!("{} memory_used: {} bytes", d.name, d.memory_used)
                        } else {
                            format!("{} wal_size: {} bytes", d.name, d.wal_size)
                        });
                    }
                }
                Ok(Outcome::ok(lines))
            }
            ".heal" => {
                need(1)?;
                let id = parse_id(args[0])?;
                self.db()?
                    .collection(&self.collection)
                    .heal(id)
                    .map_err(e)?;
                Ok(Outcome::ok(vec![]))
            }
            ".heal-all" => {
                need(0)?;
                let ids = self.db()?.heal_all().map_err(e)?;
                Ok(Outcome::ok(vec![format!("healed: {ids:?}")]))
            }
            ".heal-stats" => {
                need(0)?;
                let s = self.db()?.heal_stats().map_err(e)?;
                Ok(Outcome::ok(vec![
                    format!("total_scans: {}", s.total_scans),
                    format!("documents_healed: {}", s.documents_healed),
                    format!("documents_corrupted: {}", s.documents_corrupted),
                    format!("on_demand_healings: {}", s.on_demand_healings),
                    format!("background_healings: {}", s.background_healings),
                    format!(
                        "last_scan_time: {}",
                        s.last_scan_time.as_deref().unwrap_or("never")
                    ),
                    format!(
                        "last_healing_time: {}",
                        s.last_healing_time.as_deref().unwrap_or("never")
                    ),
                ]))
            }
            ".metrics" => {
                need(0)?;
                let m = self.client.metrics().map_err(e)?;
                Ok(Outcome::ok(m.lines().map(str::to_owned).collect()))
            }
            ".index" => {
                if !(3..=4).contains(&args.len()) || args.get(3).is_some_and(|u| *u != "unique") {
                    return Err(commands::usage(cmd));
                }
                let mut spec = docdb_client::IndexSpec::new(args[1]);
                spec.fields = parse_index_fields(args[2])?;
                spec.unique = args.len() == 4;
                self.db()?.create_index(args[0], &spec).map_err(e)?;
                Ok(Outcome::ok(vec![format!("index {} created", args[1])]))
            }
            ".indexes" => {
                need(1)?;
                let list = self.db()?.list_indexes(args[0]).map_err(e)?;
                let mut lines: Vec<String> = list
                    .iter()
                    .map(|i| {
                        let fields: Vec<String> =
                            i.fields.iter().map(|(p, d)| format!("{p}:{d}")).collect();
                        format!(
                            "{}\t{}\t{}\t{} entries",
                            i.name,
                            fields.join(","),
                            if i.unique { "unique" } else { "-" },
                            i.entries
                        )
                    })
                    .collect();
                lines.push(format!("({} index(es))", list.len()));
                Ok(Outcome::ok(lines))
            }
            ".drop-index" => {
                need(2)?;
                self.db()?.drop_index(args[0], args[1]).map_err(e)?;
                Ok(Outcome::ok(vec![]))
            }
            ".scan" => {
                if args.len() > 2 {
                    return Err(commands::usage(cmd));
                }
                let after = args.first().map(|a| parse_id(a)).transpose()?.unwrap_or(0);
                let limit = match args.get(1) {
                    Some(l) => l
                        .parse::<usize>()
                        .ok()
                        .filter(|n| (1..=1000).contains(n))
                        .ok_or("limit must be between 1 and 1000")?,
                    None => 100,
                };
                let db = self.db()?;
                let mut lines = Vec::new();
                let scan = db
                    .collection(&self.collection)
                    .scan()
                    .start_after(after)
                    .page_size(limit);
                for item in scan.take(limit) {
                    let (id, doc) = item.map_err(e)?;
                    lines.push(format!("{id}\t{doc}"));
                }
                lines.push(format!("({} document(s))", lines.len()));
                Ok(Outcome::ok(lines))
            }
            other if other.starts_with('.') => {
                Err(format!("unknown command {other}; .help lists the commands"))
            }
            _ => Err("commands start with '.'; .help lists them".into()),
        }
    }
}

/// `.index` fields: `path[:1|-1],...` (ascending when the direction is left out) or
/// the wire form `[["path",1],...]`.
fn parse_index_fields(arg: &str) -> Result<Vec<(String, i8)>, String> {
    let bad = || format!("fields must be path[:1|-1],... or [[\"path\",1],...], not {arg}");
    if arg.starts_with('[') {
        return serde_json::from_str::<Vec<(String, i8)>>(arg).map_err(|_| bad());
    }
    arg.split(',')
        .map(|f| match f.rsplit_once(':') {
            Some((p, "1")) => Ok((p.to_owned(), 1)),
            Some((p, "-1")) => Ok((p.to_owned(), -1)),
            Some(_) => Err(bad()),
            None => Ok((f.to_owned(), 1)),
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn payloads_are_json_only() {
        assert_eq!(payload(r#"{"a":1}"#).unwrap(), br#"{"a":1}"#);
        assert_eq!(payload(r#"json:{"a":1}"#).unwrap(), br#"{"a":1}"#);
        assert_eq!(payload("raw:abc").unwrap_err(), JSON_ONLY);
        assert_eq!(payload("hex:0011").unwrap_err(), JSON_ONLY);
        assert_eq!(payload("{oops").unwrap_err(), JSON_ONLY);
    }

    #[test]
    fn every_command_has_help_and_usage() {
        let h = commands::help().join("\n");
        for c in commands::COMMANDS {
            assert!(h.contains(c.name), "{}", c.name);
        }
        assert_eq!(commands::usage(".create"), "usage: .create <id> <json>");
        assert_eq!(
            parse_index_fields("a,b.c:-1").unwrap(),
            vec![("a".to_string(), 1), ("b.c".to_string(), -1)]
        );
        assert_eq!(
            parse_index_fields(r#"[["a",-1]]"#).unwrap(),
            vec![("a".to_string(), -1)]
        );
        assert!(parse_index_fields("a:2").is_err());
        assert_eq!(commands::usage(".stats"), "usage: .stats");
    }
}
