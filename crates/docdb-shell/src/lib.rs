//! `docdbsh`, the DocDB shell: line editing, history and tab completion when
//! interactive, a script runner when stdin is not a terminal (or with `-c`), exiting
//! non-zero if any command failed.
//!
//! # Layout
//! - [`cli`]: flags, the interactive loop (rustyline) and the script runner.
//! - [`commands`]: every command's syntax and help (how to add one is written there).
//! - [`input`]: JSON payloads and their errors, and multi-line continuation.
//! - [`patch`]: the patch operations, checked before sending so errors name the op.
//! - [`admin`]: `docdb db list|drop`, one-shot admin commands for a running server.
//! - [`complete`]: tab completion of commands and database/collection names.
//! - [`Shell`]: the state (connection, current database and collection) and
//!   [`Shell::execute`], which runs one line and returns its output lines.

pub mod admin;
pub mod cli;
pub mod commands;
pub mod complete;
pub mod input;
pub mod patch;
mod table;

use docdb_client::{Client, Database};
use serde_json::Value;

use crate::complete::SharedNames;
use crate::input::payload;
pub use crate::input::JSON_ONLY;

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
    /// A person types the commands: `.drop` asks for `--yes` (a script has none to ask).
    interactive: bool,
    /// Database and collection names for tab completion.
    names: SharedNames,
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
        let shell = Shell {
            client,
            db: None,
            collection: "_default".into(),
            interactive: false,
            names: SharedNames::default(),
        };
        shell.refresh_dbs();
        shell
    }

    /// The names tab completion offers; the shell keeps them current.
    pub fn names(&self) -> SharedNames {
        self.names.clone()
    }

    /// Reloads the database names (best effort: completion only).
    fn refresh_dbs(&self) {
        if let Ok(dbs) = self.client.list_dbs() {
            self.names.borrow_mut().dbs = dbs.into_iter().map(|d| d.name).collect();
        }
    }

    /// Reloads the current database's collection names (best effort: completion only).
    fn refresh_collections(&self) {
        let names = match &self.db {
            Some(db) => db.list_collections().unwrap_or_default(),
            None => vec![],
        };
        self.names.borrow_mut().collections = names;
    }

    /// Marks the shell as typed into by a person: destructive commands (`.drop`) then
    /// need `--yes`.
    pub fn set_interactive(&mut self, on: bool) {
        self.interactive = on;
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
        Some(match self.run(commands::resolve(cmd), rest) {
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
        // `<name>`: everything after the command, so a name with a space reaches the
        // server and gets its "invalid name" text rather than a usage line.
        let name = || -> Result<&str, String> {
            if rest.is_empty() {
                Err(commands::usage(cmd))
            } else {
                Ok(rest)
            }
        };
        // `<id> <json...>`: the JSON is everything after the id (it may span lines).
        let id_and_json = || -> Result<(u64, Vec<u8>, Value), String> {
            let (id, json) = rest
                .split_once(char::is_whitespace)
                .ok_or_else(|| commands::usage(cmd))?;
            let id = parse_id(id)?;
            let (bytes, value) = payload(json)?;
            Ok((id, bytes, value))
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
                let db = self.client.open_db(name()?).map_err(e)?;
                let line = format!("database {} (id {})", db.name(), db.id());
                self.db = Some(db);
                self.collection = "_default".into();
                self.refresh_dbs();
                self.refresh_collections();
                Ok(Outcome::ok(vec![line]))
            }
            ".close" => {
                need(0)?;
                let db = self.db.take().ok_or("no database open")?;
                self.refresh_collections();
                db.close().map_err(e)?;
                Ok(Outcome::ok(vec![format!("closed {}", db.name())]))
            }
            ".use-collection" => {
                let wanted = name()?;
                let db = self.db()?;
                let names = db.list_collections().map_err(e)?;
                let found = names.iter().any(|n| n == wanted);
                self.names.borrow_mut().collections = names;
                if !found {
                    return Err(format!("collection not found: {wanted}"));
                }
                self.collection = wanted.to_string();
                Ok(Outcome::ok(vec![format!("using collection {wanted}")]))
            }
            ".create" | ".update" => {
                let (id, json, _) = id_and_json()?;
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
                let (id, ops, parsed) = id_and_json()?;
                patch::check(&parsed)?;
                let db = self.db()?;
                let c = db.collection(&self.collection);
                c.patch_raw(id, ops).map_err(|err| {
                    let text = err.to_string();
                    if text == docdb_client::protocol::text::INVALID_PATH {
                        format!("{text}\nhint: remove, replace, move, copy and test need their path (and from) to exist; set creates missing objects; array indexes must be in range")
                    } else {
                        text
                    }
                })?;
                let doc = c.read(id).map_err(e)?;
                Ok(Outcome::ok(pretty(&doc)))
            }
            ".create-collection" | ".drop-collection" => {
                let wanted = name()?;
                let db = self.db()?;
                let done = if cmd == ".create-collection" {
                    db.create_collection(wanted)
                } else {
                    db.delete_collection(wanted)
                };
                self.refresh_collections();
                done.map_err(e)?;
                if cmd == ".drop-collection" && self.collection == wanted {
                    self.collection = "_default".into();
                }
                Ok(Outcome::ok(vec![]))
            }
            ".list-collections" => {
                need(0)?;
                let names = self.db()?.list_collections().map_err(e)?;
                self.names.borrow_mut().collections = names.clone();
                Ok(Outcome::ok(names))
            }
            ".drop" => {
                let (name, yes) = match args.as_slice() {
                    [name] => (*name, false),
                    [name, "--yes"] | ["--yes", name] => (*name, true),
                    _ => return Err(commands::usage(cmd)),
                };
                if self.interactive && !yes {
                    return Err(format!(
                        "this removes database {name} and every document in it, for good; \
                         to confirm: .drop {name} --yes"
                    ));
                }
                self.client.drop_db(name).map_err(e)?;
                if self.db.as_ref().is_some_and(|d| d.name() == name) {
                    self.db = None;
                    self.collection = "_default".into();
                }
                Ok(Outcome::ok(vec![format!("dropped {name}")]))
            }
            ".list-dbs" => {
                need(0)?;
                let dbs = self.client.list_dbs().map_err(e)?;
                self.names.borrow_mut().dbs = dbs.iter().map(|d| d.name.clone()).collect();
                Ok(Outcome::ok(table::list_dbs(&dbs)))
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
                            "{}\t{}\t{}\t{} entries{}",
                            i.name,
                            fields.join(","),
                            if i.unique { "unique" } else { "-" },
                            i.entries,
                            if i.building { " (building)" } else { "" }
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
            ".find" => {
                let f = parse_find(rest).map_err(|m| format!("{m}\n{}", commands::usage(cmd)))?;
                let db = self.db()?;
                let mut q = db.collection(&f.collection).query().filter(f.filter);
                for (path, desc) in &f.sort {
                    q = if *desc {
                        q.sort_desc(path)
                    } else {
                        q.sort_asc(path)
                    };
                }
                if let Some(n) = f.limit {
                    q = q.limit(n);
                }
                let page = q.page().map_err(e)?;
                let mut lines: Vec<String> = page
                    .rows
                    .iter()
                    .map(|r| format!("{}\t{}", r.id, r.doc))
                    .collect();
                lines.push(format!(
                    "({} document(s){})",
                    page.rows.len(),
                    if page.next.is_some() {
                        "; more follow"
                    } else {
                        ""
                    }
                ));
                Ok(Outcome::ok(lines))
            }
            other if other.starts_with('.') => {
                Err(format!("unknown command {other}; .help lists the commands"))
            }
            _ => Err("commands start with '.'; .help lists them".into()),
        }
    }
}

/// The arguments of `.find`.
#[derive(Debug, PartialEq)]
struct Find {
    collection: String,
    filter: serde_json::Value,
    /// `(path, descending)`.
    sort: Vec<(String, bool)>,
    limit: Option<usize>,
}

/// Parses `<collection> <filter-json> [sort <path>[:-1] ...] [limit <n>]`; the filter
/// is one JSON value and may contain spaces.
fn parse_find(rest: &str) -> Result<Find, String> {
    let rest = rest.trim_start();
    let (collection, after) = rest
        .split_once(char::is_whitespace)
        .ok_or("a collection and a filter are needed")?;
    let mut values = serde_json::Deserializer::from_str(after).into_iter::<serde_json::Value>();
    let filter = match values.next() {
        Some(Ok(v)) => v,
        _ => return Err("the filter must be JSON, e.g. {\"age\":{\"$gt\":30}}".into()),
    };
    let tail = &after[values.byte_offset()..];
    let mut f = Find {
        collection: collection.to_owned(),
        filter,
        sort: Vec::new(),
        limit: None,
    };
    let mut words = tail.split_whitespace().peekable();
    while let Some(w) = words.next() {
        match w {
            "sort" => {
                while let Some(p) = words.next_if(|p| *p != "limit" && *p != "sort") {
                    let (path, desc) = match p.rsplit_once(':') {
                        Some((path, "-1")) => (path, true),
                        Some((path, "1")) => (path, false),
                        Some(_) => return Err(format!("sort direction in {p} must be 1 or -1")),
                        None => (p, false),
                    };
                    f.sort.push((path.to_owned(), desc));
                }
            }
            "limit" => {
                let n = words
                    .next()
                    .and_then(|n| n.parse::<usize>().ok())
                    .filter(|n| (1..=1000).contains(n))
                    .ok_or("limit must be between 1 and 1000")?;
                f.limit = Some(n);
            }
            other => return Err(format!("unexpected {other:?} (expected sort or limit)")),
        }
    }
    Ok(f)
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
    fn find_arguments() {
        let f = parse_find(r#"users {"age": {"$gt": 30}} sort age:-1 name limit 5"#).unwrap();
        assert_eq!(
            f,
            Find {
                collection: "users".into(),
                filter: serde_json::json!({"age": {"$gt": 30}}),
                sort: vec![("age".into(), true), ("name".into(), false)],
                limit: Some(5),
            }
        );
        assert!(parse_find("users").is_err());
        assert!(parse_find("users {oops").is_err());
        assert!(parse_find("users {} limit 0").is_err());
        assert!(parse_find("users {} sort a:2").is_err());
        assert!(parse_find("users {} bogus").is_err());
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
