//! What the user types, before it reaches the server: JSON payloads (with errors that
//! say what is wrong and where), and whether a line leaves brackets open so the next
//! line continues it (multi-line JSON).

use serde_json::Value;

/// The JSON-only refusal, the server's stable text for non-JSON payloads: what `raw:`
/// and `hex:` payloads get (the shell sends JSON only).
pub const JSON_ONLY: &str = "payload must be valid JSON (forbidden prefixes: raw: hex:)";

/// Longest command the shell accepts, over all its lines: the server's frame limit.
pub const MAX_INPUT: usize = 16 << 20;

/// The error for a command longer than [`MAX_INPUT`].
pub fn too_long() -> String {
    format!("input longer than {MAX_INPUT} bytes (the frame limit): discarded")
}

/// Longest input line echoed under a JSON error with a caret at the column.
const ECHO_MAX: usize = 120;

/// Parses a payload: bare JSON or `json:`-prefixed; `raw:`/`hex:` are refused. Returns
/// the bytes to send and the parsed value.
pub fn payload(text: &str) -> Result<(Vec<u8>, Value), String> {
    let t = text.trim();
    if t.starts_with("raw:") || t.starts_with("hex:") {
        return Err(JSON_ONLY.into());
    }
    let t = t.strip_prefix("json:").unwrap_or(t).trim();
    match serde_json::from_str::<Value>(t) {
        Ok(v) => Ok((t.as_bytes().to_vec(), v)),
        Err(e) => Err(json_error(t, &e)),
    }
}

/// `invalid JSON: <what> at line L column C`, the line with a caret under the column
/// when it is short, and a hint for the usual mistakes.
pub fn json_error(text: &str, e: &serde_json::Error) -> String {
    let mut lines = vec![format!("invalid JSON: {e}")];
    if e.line() > 0 {
        if let Some(src) = text.lines().nth(e.line() - 1) {
            if src.chars().count() <= ECHO_MAX {
                // serde_json counts columns in bytes; the caret goes under characters.
                let byte = e.column().max(1) - 1;
                let pad = src.get(..byte).map_or(byte, |p| p.chars().count());
                lines.push(format!("  {src}"));
                lines.push(format!("  {}^", " ".repeat(pad)));
            }
        }
    }
    if let Some(h) = hint(text, e) {
        lines.push(format!("hint: {h}"));
    }
    lines.join("\n")
}

fn hint(text: &str, e: &serde_json::Error) -> Option<&'static str> {
    let msg = e.to_string();
    if text.starts_with('\'') && text.ends_with('\'') && text.len() > 1 {
        Some("drop the single quotes around the JSON: the shell takes it as typed")
    } else if text.contains('\'') && outside_strings(text, |c| c == '\'') {
        Some("JSON strings and keys use double quotes (\"), not single quotes")
    } else if msg.starts_with("key must be a string") {
        Some("object keys need double quotes: {\"name\": \"ada\"}")
    } else if msg.starts_with("EOF while parsing") {
        Some("a bracket, brace or string is not closed")
    } else if msg.starts_with("trailing characters") {
        Some("one JSON value only; check for an extra closing bracket or brace")
    } else if msg.starts_with("expected value") && !text.starts_with(['{', '[', '"']) {
        Some("strings need double quotes: \"text\"")
    } else {
        None
    }
}

/// Whether `pred` holds for some character outside JSON strings.
fn outside_strings(text: &str, pred: impl Fn(char) -> bool) -> bool {
    let mut scan = Scan::default();
    text.chars().any(|c| {
        let outside = !scan.in_string;
        scan.step(c);
        outside && !scan.in_string && pred(c)
    })
}

/// A JSON-aware bracket counter: strings (with escapes) are skipped.
#[derive(Default)]
struct Scan {
    depth: usize,
    in_string: bool,
    escaped: bool,
}

impl Scan {
    fn step(&mut self, c: char) {
        if self.in_string {
            if self.escaped {
                self.escaped = false;
            } else if c == '\\' {
                self.escaped = true;
            } else if c == '"' {
                self.in_string = false;
            }
            return;
        }
        match c {
            '"' => self.in_string = true,
            '{' | '[' => self.depth += 1,
            '}' | ']' => self.depth = self.depth.saturating_sub(1),
            _ => {}
        }
    }
}

/// Whether `text` ends with brackets or braces still open (outside strings), so the
/// next line continues it. A `#` comment line never continues; an unterminated string
/// does not either (a JSON string cannot span lines, so waiting would not help).
pub fn needs_more(text: &str) -> bool {
    if text.trim_start().starts_with('#') {
        return false;
    }
    let mut scan = Scan::default();
    text.chars().for_each(|c| scan.step(c));
    scan.depth > 0 && !scan.in_string
}

/// Whether a continuation line is a new command instead: it starts with `.`, which no
/// JSON text can (so an unclosed document does not swallow the commands after it).
pub fn starts_command(line: &str) -> bool {
    line.trim_start().starts_with('.')
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn payloads_are_json_only() {
        assert_eq!(payload(r#"{"a":1}"#).unwrap().0, br#"{"a":1}"#);
        assert_eq!(payload(r#"json:{"a":1}"#).unwrap().0, br#"{"a":1}"#);
        assert_eq!(payload("raw:abc").unwrap_err(), JSON_ONLY);
        assert_eq!(payload("hex:0011").unwrap_err(), JSON_ONLY);
    }

    #[test]
    fn json_errors_say_what_and_where_with_a_hint() {
        let e = payload("{name: bad}").unwrap_err();
        assert!(
            e.starts_with("invalid JSON: key must be a string at line 1 column 2"),
            "{e}"
        );
        assert!(e.contains("  {name: bad}\n   ^\n"), "{e}");
        assert!(e.ends_with("hint: object keys need double quotes: {\"name\": \"ada\"}"));

        let e = payload(r#"{"a":1"#).unwrap_err();
        assert!(
            e.contains("EOF while parsing an object at line 1 column 6"),
            "{e}"
        );
        assert!(
            e.ends_with("hint: a bracket, brace or string is not closed"),
            "{e}"
        );

        let e = payload(r#"'{"q":1}'"#).unwrap_err();
        assert!(e.contains("at line 1 column 1"), "{e}");
        assert!(e.contains("drop the single quotes"), "{e}");

        let e = payload("{'q':1}").unwrap_err();
        assert!(e.contains("use double quotes"), "{e}");

        let e = payload("{\"é\":1 2}").unwrap_err();
        assert!(e.contains("  {\"é\":1 2}\n         ^"), "{e}");

        let e = payload("{\"a\":\n  1,,\n}").unwrap_err();
        assert!(e.contains("at line 2 column 5"), "{e}");
        assert!(e.contains("\n    1,,\n      ^"), "{e}");

        for e in [payload("{oops").unwrap_err(), payload("[1]]").unwrap_err()] {
            assert!(!e.contains("forbidden prefixes"), "{e}");
        }
    }

    #[test]
    fn open_brackets_continue_the_line() {
        assert!(needs_more(r#".create 1 {"a":"#));
        assert!(needs_more(r#".create 1 {"a":[1,"#));
        assert!(needs_more(".create 1 {\"a\":\n[1,"));
        assert!(!needs_more(".create 1 {\"a\":\n[1]}"));
        assert!(!needs_more(r#".create 1 {"a":"}{["}"#));
        assert!(needs_more(r#".create 1 {"a\"}":"#));
        assert!(!needs_more(".read 1"));
        assert!(!needs_more("# {"));
        // An unterminated string: JSON strings cannot span lines, so run it (and fail).
        assert!(!needs_more(r#".create 1 {"a"#));
        assert!(starts_command("  .read 1"));
        assert!(!starts_command("  1]}"));
        // More closers than openers: nothing to wait for.
        assert!(!needs_more(".create 1 ]]"));
    }
}
