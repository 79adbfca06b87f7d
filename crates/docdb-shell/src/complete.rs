//! Tab completion: command names, and for a command's first argument the names it takes
//! (databases for `<db>`, collections for `<name>`/`<collection>`), read from
//! [`Names`], a cache the shell refreshes after the commands that change or list them.
//! Document ids are not completed: that would need a scan of the collection per
//! keypress.

use std::cell::RefCell;
use std::rc::Rc;

use rustyline::completion::{Completer, Pair};
use rustyline::highlight::Highlighter;
use rustyline::hint::Hinter;
use rustyline::validate::Validator;
use rustyline::{Context, Helper};

use crate::commands;

/// The names the shell last saw on the server.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Names {
    /// Every database (from `.list-dbs` or `.open`).
    pub dbs: Vec<String>,
    /// The current database's collections (empty when none is open).
    pub collections: Vec<String>,
}

/// The cache shared by the shell (which fills it) and the line editor (which reads it).
pub type SharedNames = Rc<RefCell<Names>>;

/// What a command's first argument names, from its syntax in [`commands::COMMANDS`].
fn arg_kind(cmd: &str) -> Option<fn(&Names) -> &[String]> {
    let spec = commands::COMMANDS.iter().find(|c| c.name == cmd)?;
    let first = spec.args.split_whitespace().next()?;
    match first {
        "<db>" => Some(|n: &Names| n.dbs.as_slice()),
        "<name>" | "<collection>" => Some(|n: &Names| n.collections.as_slice()),
        _ => None,
    }
}

/// The candidates for the word before `pos` in `line`: where it starts and the full
/// words, sorted. Commands complete with a trailing space.
pub fn candidates(line: &str, pos: usize, names: &Names) -> (usize, Vec<String>) {
    let head = line.get(..pos).unwrap_or(line);
    let start = head.rfind(char::is_whitespace).map(|i| i + 1).unwrap_or(0);
    let word = &head[start..];
    let before: Vec<&str> = head[..start].split_whitespace().collect();
    let mut out: Vec<String> = match before.as_slice() {
        [] => commands::COMMANDS
            .iter()
            .map(|c| c.name)
            .chain(commands::ALIASES.iter().map(|(a, _)| *a))
            .filter(|n| n.starts_with(word))
            .map(|n| format!("{n} "))
            .collect(),
        [cmd] => match arg_kind(cmd) {
            Some(list) => list(names)
                .iter()
                .filter(|n| n.starts_with(word))
                .cloned()
                .collect(),
            None => vec![],
        },
        _ => vec![],
    };
    out.sort();
    out.dedup();
    (start, out)
}

/// The rustyline helper: completion only.
pub struct ShellHelper {
    pub names: SharedNames,
}

impl Completer for ShellHelper {
    type Candidate = Pair;

    fn complete(
        &self,
        line: &str,
        pos: usize,
        _ctx: &Context<'_>,
    ) -> rustyline::Result<(usize, Vec<Pair>)> {
        let (start, words) = candidates(line, pos, &self.names.borrow());
        Ok((
            start,
            words
                .into_iter()
                .map(|w| Pair {
                    display: w.trim_end().to_string(),
                    replacement: w,
                })
                .collect(),
        ))
    }
}

impl Hinter for ShellHelper {
    type Hint = String;
}
impl Highlighter for ShellHelper {}
impl Validator for ShellHelper {}
impl Helper for ShellHelper {}

#[cfg(test)]
mod tests {
    use super::*;

    fn names() -> Names {
        Names {
            dbs: vec!["shop".into(), "shipping".into()],
            collections: vec!["_default".into(), "orders".into(), "owners".into()],
        }
    }

    #[test]
    fn commands_complete_from_the_table() {
        let n = names();
        assert_eq!(
            candidates(".he", 3, &n),
            (
                0,
                vec![
                    ".heal ".into(),
                    ".heal-all ".into(),
                    ".heal-stats ".into(),
                    ".help ".into()
                ]
            )
        );
        assert_eq!(
            candidates(".create-c", 9, &n),
            (0, vec![".create-collection ".into()])
        );
        assert_eq!(candidates("qu", 2, &n), (0, vec!["quit ".into()]));
        assert_eq!(candidates("  .ex", 5, &n), (2, vec![".exit ".into()]));
        assert!(candidates(".nope", 5, &n).1.is_empty());
    }

    #[test]
    fn arguments_complete_from_the_cache() {
        let n = names();
        assert_eq!(
            candidates(".use-collection o", 17, &n),
            (16, vec!["orders".into(), "owners".into()])
        );
        assert_eq!(
            candidates(".drop-collection or", 19, &n),
            (17, vec!["orders".into()])
        );
        assert_eq!(
            candidates(".open sh", 8, &n),
            (6, vec!["shipping".into(), "shop".into()])
        );
        // Ids and JSON are not completed; nor a second argument.
        assert!(candidates(".read 1", 7, &n).1.is_empty());
        assert!(candidates(".create-collection orders o", 27, &n)
            .1
            .is_empty());
        // The cursor in the middle of the line: only what is before it counts.
        assert_eq!(
            candidates(".use-collection ow rest", 18, &n),
            (16, vec!["owners".into()])
        );
    }
}
