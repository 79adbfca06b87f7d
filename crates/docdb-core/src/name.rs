//! Validation of database and collection names (SPEC §1): 1–64 bytes of
//! `[A-Za-z0-9_.-]`, not starting with `.`. Names become file names and log fields, so
//! nothing else may pass: no `/`, no `..`, no NUL, no control characters.

use crate::error::{Error, Result};

/// Longest allowed name, in bytes.
pub const MAX_NAME_LEN: usize = 64;

/// The collection every database has and that cannot be deleted.
pub const DEFAULT_COLLECTION: &str = "_default";

fn check(kind: &'static str, name: &str) -> Result<()> {
    let reason = if name.is_empty() {
        Some("must not be empty")
    } else if name.len() > MAX_NAME_LEN {
        Some("must be at most 64 bytes")
    } else if name.starts_with('.') {
        Some("must not start with '.'")
    } else if !name
        .bytes()
        .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'.' | b'-'))
    {
        Some("may contain only A-Z a-z 0-9 _ . -")
    } else {
        None
    };
    match reason {
        None => Ok(()),
        Some(reason) => Err(Error::InvalidName {
            kind,
            name: name.chars().take(80).collect(),
            reason,
        }),
    }
}

/// Checks a logical database name.
pub fn validate_db_name(name: &str) -> Result<()> {
    check("database", name)
}

/// Checks a collection name and maps the empty name to `_default`.
pub fn resolve_collection(name: &str) -> Result<&str> {
    if name.is_empty() {
        return Ok(DEFAULT_COLLECTION);
    }
    check("collection", name)?;
    Ok(name)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn good_names_pass() {
        for n in ["a", "tenant-1", "my_db.v2", "A_b-C.9", &"x".repeat(64)] {
            validate_db_name(n).unwrap();
            assert_eq!(resolve_collection(n).unwrap(), n);
        }
        assert_eq!(resolve_collection("").unwrap(), "_default");
    }

    #[test]
    fn bad_names_are_rejected_with_a_reason() {
        for n in [
            "",
            ".hidden",
            "..",
            "../x",
            "a/b",
            "a\0b",
            "é",
            "a b",
            &"x".repeat(65),
        ] {
            let e = validate_db_name(n).unwrap_err().to_string();
            assert!(e.starts_with("invalid database name"), "{n:?}: {e}");
        }
        assert!(resolve_collection("../x").is_err());
    }
}
