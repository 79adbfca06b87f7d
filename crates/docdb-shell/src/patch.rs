//! Patch operations checked before they are sent, so a mistake names the bad op and why
//! (the server's wire text is only "invalid patch operations").
//!
//! The rules mirror the engine's (`docdb-core`'s `patch.rs`): a non-empty JSON array of
//! objects; member and op names matched ASCII case-insensitively; `path` (and `from` for
//! move/copy) a JSON Pointer; `value` required by set/insert/add/replace/test. What only
//! the document can decide (a path that does not resolve, a failed `test`) is left to
//! the server.

use serde_json::{Map, Value};

/// Every operation the engine applies, with its one-line meaning (for `.help`).
pub const OPS: &[(&str, &str)] = &[
    ("set", "set path to value, creating missing parent objects"),
    (
        "insert",
        "insert value into an array at path (index or \"-\")",
    ),
    ("delete", "remove the member or array element at path"),
    ("add", "RFC 6902 add: set a member or insert into an array"),
    ("remove", "RFC 6902 remove (same as delete)"),
    ("replace", "RFC 6902 replace: path must exist"),
    ("move", "RFC 6902 move from \"from\" to path"),
    ("copy", "RFC 6902 copy from \"from\" to path"),
    (
        "test",
        "RFC 6902 test: fail the whole patch unless path equals value",
    ),
];

/// The op names, comma-separated.
pub fn op_names() -> String {
    OPS.iter().map(|(n, _)| *n).collect::<Vec<_>>().join(", ")
}

/// Checks a parsed patch; the error names the op by its index (`ops[i]`).
pub fn check(ops: &Value) -> Result<(), String> {
    let items = match ops {
        Value::Array(items) => items,
        Value::Object(m) if member(m, "op").is_some() => {
            return Err("patch ops must be a JSON array: wrap the op in [ ]".into());
        }
        _ => {
            return Err(
                "patch ops must be a JSON array of operations, e.g. [{\"op\":\"set\",\"path\":\"/a\",\"value\":1}]"
                    .into(),
            );
        }
    };
    if items.is_empty() {
        return Err("patch ops are empty: give at least one operation".into());
    }
    for (i, item) in items.iter().enumerate() {
        check_op(item).map_err(|why| format!("ops[{i}]: {why}"))?;
    }
    Ok(())
}

/// A member looked up ASCII case-insensitively, as the engine does.
fn member<'a>(m: &'a Map<String, Value>, name: &str) -> Option<&'a Value> {
    m.iter()
        .find(|(k, _)| k.eq_ignore_ascii_case(name))
        .map(|(_, v)| v)
}

fn check_op(item: &Value) -> Result<(), String> {
    let Value::Object(m) = item else {
        return Err(format!(
            "expected an object like {{\"op\":\"set\",\"path\":\"/a\",\"value\":1}}, got {item}"
        ));
    };
    for name in ["op", "path", "value", "from"] {
        if m.keys().filter(|k| k.eq_ignore_ascii_case(name)).count() > 1 {
            return Err(format!("\"{name}\" given twice (names ignore case)"));
        }
    }
    let op = match member(m, "op") {
        Some(Value::String(s)) => s.to_ascii_lowercase(),
        Some(other) => return Err(format!("\"op\" must be a string, got {other}")),
        None => return Err(format!("missing \"op\" (one of {})", op_names())),
    };
    if !OPS.iter().any(|(n, _)| *n == op) {
        return Err(format!("unknown op {op:?} (one of {})", op_names()));
    }
    pointer(m, "path", &op)?;
    match op.as_str() {
        "move" | "copy" => pointer(m, "from", &op)?,
        "set" | "insert" | "add" | "replace" | "test" if member(m, "value").is_none() => {
            return Err(format!("{op}: missing \"value\""));
        }
        _ => {}
    }
    Ok(())
}

/// `name` must be present and a JSON Pointer: `""` or starting with `/`, `~` only as
/// `~0` or `~1`.
fn pointer(m: &Map<String, Value>, name: &str, op: &str) -> Result<(), String> {
    let p = match member(m, name) {
        Some(Value::String(p)) => p,
        Some(other) => return Err(format!("{op}: \"{name}\" must be a string, got {other}")),
        None => {
            return Err(format!(
                "{op}: missing \"{name}\", a JSON Pointer such as \"/a/b\""
            ));
        }
    };
    if !p.is_empty() && !p.starts_with('/') {
        return Err(format!(
            "{op}: \"{name}\" {p:?} is not a JSON Pointer: start it with / (\"/{p}\")"
        ));
    }
    let bad_tilde = p
        .split('~')
        .skip(1)
        .any(|rest| !rest.starts_with(['0', '1']));
    if bad_tilde {
        return Err(format!(
            "{op}: \"{name}\" {p:?}: ~ must be written ~0 (and / inside a name ~1)"
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn err(text: &str) -> String {
        let v: Value = serde_json::from_str(text).unwrap();
        check(&v).unwrap_err()
    }

    #[test]
    fn good_patches_pass() {
        for text in [
            r#"[{"op":"set","path":"/a","value":1}]"#,
            r#"[{"OP":"Add","Path":"/a/-","value":null},{"op":"remove","path":"/b"}]"#,
            r#"[{"op":"move","from":"/a","path":"/b"},{"op":"delete","path":""}]"#,
            r#"[{"op":"test","path":"/a~1b~0","value":[1]}]"#,
        ] {
            let v: Value = serde_json::from_str(text).unwrap();
            assert_eq!(check(&v), Ok(()), "{text}");
        }
    }

    #[test]
    fn errors_name_the_op_and_why() {
        assert!(err(r#"{"op":"set","path":"/a","value":1}"#).contains("wrap the op in [ ]"));
        assert!(err("[]").contains("empty"));
        assert!(err("7").contains("JSON array of operations"));
        assert!(err("[1]").starts_with("ops[0]: expected an object"));
        let e = err(r#"[{"op":"set","path":"/a","value":1},{"op":"sett","path":"/a"}]"#);
        assert!(
            e.starts_with("ops[1]: unknown op \"sett\" (one of set, insert"),
            "{e}"
        );
        assert_eq!(
            err(r#"[{"path":"/a"}]"#),
            format!("ops[0]: missing \"op\" (one of {})", op_names())
        );
        assert_eq!(
            err(r#"[{"op":"set","value":1}]"#),
            "ops[0]: set: missing \"path\", a JSON Pointer such as \"/a/b\""
        );
        assert_eq!(
            err(r#"[{"op":"replace","path":"/a"}]"#),
            "ops[0]: replace: missing \"value\""
        );
        assert!(err(r#"[{"op":"copy","path":"/a"}]"#).contains("copy: missing \"from\""));
        assert!(err(r#"[{"op":"set","path":"a","value":1}]"#).contains("start it with /"));
        assert!(err(r#"[{"op":"set","path":"/a~","value":1}]"#).contains("~0"));
        assert!(err(r#"[{"op":"set","Op":"set","path":"/a","value":1}]"#).contains("twice"));
        assert!(err(r#"[{"op":1,"path":"/a"}]"#).contains("\"op\" must be a string"));
    }
}
