//! The shell's commands: their syntax (for `.help`, usage errors and tab completion) and
//! how each one runs against the client. Every command prints `OK` or `ERROR` first, then
//! details, one per line.
//!
//! Adding a command: one [`Spec`] in [`COMMANDS`] (`.help`, usage errors and completion of
//! the command name follow; a first argument written `<db>` completes database names,
//! `<name>`/`<collection>` collection names) and one match arm in `Shell::run`.

/// One command's name, argument syntax and summary.
pub struct Spec {
    pub name: &'static str,
    pub args: &'static str,
    pub help: &'static str,
}

/// Every command, in `.help` order.
pub const COMMANDS: &[Spec] = &[
    Spec {
        name: ".help",
        args: "",
        help: "list every command",
    },
    Spec {
        name: ".exit",
        args: "",
        help: "leave the shell",
    },
    Spec {
        name: ".clear",
        args: "",
        help: "clear the screen",
    },
    Spec {
        name: ".open",
        args: "<db>",
        help: "open (creating if needed) a database and use it",
    },
    Spec {
        name: ".close",
        args: "",
        help: "close the current database",
    },
    Spec {
        name: ".create",
        args: "<id> <json>",
        help: "create a document in the current collection",
    },
    Spec {
        name: ".read",
        args: "<id>",
        help: "read a document (pretty-printed)",
    },
    Spec {
        name: ".update",
        args: "<id> <json>",
        help: "replace a document",
    },
    Spec {
        name: ".delete",
        args: "<id>",
        help: "delete a document",
    },
    Spec {
        name: ".patch",
        args: "<id> <ops-json>",
        help: "apply patch operations (listed below), e.g. [{\"op\":\"set\",\"path\":\"/a\",\"value\":1}]",
    },
    Spec {
        name: ".create-collection",
        args: "<name>",
        help: "create a collection",
    },
    Spec {
        name: ".drop-collection",
        args: "<name>",
        help: "delete an empty collection",
    },
    Spec {
        name: ".list-collections",
        args: "",
        help: "list the current database's collections",
    },
    Spec {
        name: ".use-collection",
        args: "<name>",
        help: "use this collection for document commands (default _default)",
    },
    Spec {
        name: ".drop",
        args: "<db> [--yes]",
        help: "drop a database and every document in it (interactive: needs --yes)",
    },
    Spec {
        name: ".list-dbs",
        args: "",
        help: "list every database",
    },
    Spec {
        name: ".stats",
        args: "",
        help: "server statistics",
    },
    Spec {
        name: ".mem",
        args: "",
        help: "memory used, server-wide and by the current database",
    },
    Spec {
        name: ".wal",
        args: "",
        help: "WAL size, server-wide and of the current database",
    },
    Spec {
        name: ".heal",
        args: "<id>",
        help: "heal one document from the WAL if it is corrupt",
    },
    Spec {
        name: ".heal-all",
        args: "",
        help: "verify every document and heal the corrupt ones",
    },
    Spec {
        name: ".heal-stats",
        args: "",
        help: "healing statistics",
    },
    Spec {
        name: ".metrics",
        args: "",
        help: "Prometheus metrics",
    },
    Spec {
        name: ".scan",
        args: "[start-after] [limit]",
        help: "list documents in id order (limit default 100, max 1000)",
    },
    Spec {
        name: ".find",
        args: "<collection> <filter-json> [sort <path>[:-1] ...] [limit <n>]",
        help: "query documents (MongoDB-style filter; limit default 100, max 1000)",
    },
    Spec {
        name: ".index",
        args: "<collection> <name> <fields> [unique]",
        help: "create a secondary index; fields: path[:1|-1],... or [[\"path\",1],...]",
    },
    Spec {
        name: ".indexes",
        args: "<collection>",
        help: "list a collection's indexes",
    },
    Spec {
        name: ".drop-index",
        args: "<collection> <name>",
        help: "drop a secondary index",
    },
];

/// Words accepted without the dot, and the command each one runs.
pub const ALIASES: &[(&str, &str)] = &[("help", ".help"), ("exit", ".exit"), ("quit", ".exit")];

/// The command a typed word names: itself, or what its alias stands for
/// (`.quit` is kept as an undocumented synonym of `.exit`).
pub fn resolve(word: &str) -> &str {
    if word == ".quit" {
        return ".exit";
    }
    ALIASES
        .iter()
        .find(|(a, _)| *a == word)
        .map(|(_, c)| *c)
        .unwrap_or(word)
}

/// The usage line of a command.
pub fn usage(name: &str) -> String {
    COMMANDS
        .iter()
        .find(|c| c.name == name)
        .map(|c| {
            format!("usage: {} {}", c.name, c.args)
                .trim_end()
                .to_string()
        })
        .unwrap_or_default()
}

/// The `.help` text.
pub fn help() -> Vec<String> {
    let width = COMMANDS
        .iter()
        .map(|c| c.name.len() + 1 + c.args.len())
        .max()
        .unwrap_or(0);
    let mut out: Vec<String> = COMMANDS
        .iter()
        .map(|c| {
            let syntax = format!("{} {}", c.name, c.args);
            format!("{:<width$}  {}", syntax.trim_end(), c.help)
        })
        .collect();
    out.push(String::new());
    out.push("help, exit and quit work without the dot; Tab completes commands, database and collection names.".into());
    out.push("JSON may be bare or prefixed json: ; raw: and hex: payloads are refused.".into());
    out.push(
        "A line with brackets or braces still open continues on the next (prompt ...>).".into(),
    );
    out.push(String::new());
    out.push(
        "Patch operations ({\"op\": ..., \"path\": \"/json/pointer\", \"value\" or \"from\"}):"
            .into(),
    );
    let w = crate::patch::OPS
        .iter()
        .map(|(n, _)| n.len())
        .max()
        .unwrap_or(0);
    out.extend(
        crate::patch::OPS
            .iter()
            .map(|(n, h)| format!("  {n:<w$}  {h}")),
    );
    out
}
