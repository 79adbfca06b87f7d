//! Checks on the JSON text of a document before it is stored: well-formed, within the
//! size limit, and nested no deeper than `limits.max_depth`.
//!
//! IMPORTANT: nothing here recurses. A 16 MiB payload can nest millions of levels deep;
//! the depth scan is a byte loop with a counter, and `serde_json`'s `IgnoredAny` skips a
//! value with an explicit stack. Only after the depth is known to be bounded may a
//! document be parsed into a tree (patch), whose parse, clone, drop and serialisation
//! all recurse once per level.

use crate::db::MAX_DOCUMENT_SIZE;
use crate::error::{Error, Result};

/// Checks that `json` is one valid JSON value of allowed size, nested at most
/// `max_depth` arrays/objects deep.
pub(crate) fn validate(json: &[u8], max_depth: usize) -> Result<()> {
    if json.len() > MAX_DOCUMENT_SIZE {
        return Err(Error::PayloadTooLarge);
    }
    // IMPORTANT: skipping a string (IgnoredAny) does not check its UTF-8, so check
    // the whole payload first; a stored document must be readable JSON text.
    std::str::from_utf8(json).map_err(|_| Error::InvalidJson)?;
    serde_json::from_slice::<serde::de::IgnoredAny>(json).map_err(|_| Error::InvalidJson)?;
    check_depth(json, max_depth)
}

/// Fails with [`Error::TooDeep`] when `json` nests more than `max` arrays/objects.
pub(crate) fn check_depth(json: &[u8], max: usize) -> Result<()> {
    if nesting_depth(json, max) > max {
        return Err(Error::TooDeep { max });
    }
    Ok(())
}

/// How deeply arrays and objects nest in `json` (`1` for `{"a":1}`, `0` for a scalar),
/// counting no further than `stop + 1`. Brackets inside strings do not count. The text
/// is assumed to be valid JSON; on other bytes the answer is merely some number.
pub fn nesting_depth(json: &[u8], stop: usize) -> usize {
    let (mut depth, mut deepest) = (0usize, 0usize);
    let mut bytes = json.iter();
    while let Some(&b) = bytes.next() {
        match b {
            b'"' => {
                // Skip the string: up to the next quote not escaped by a backslash.
                while let Some(&c) = bytes.next() {
                    match c {
                        b'\\' => {
                            bytes.next();
                        }
                        b'"' => break,
                        _ => {}
                    }
                }
            }
            b'[' | b'{' => {
                depth += 1;
                if depth > deepest {
                    deepest = depth;
                    if deepest > stop {
                        return deepest;
                    }
                }
            }
            b']' | b'}' => depth = depth.saturating_sub(1),
            _ => {}
        }
    }
    deepest
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn depth_counts_containers_not_brackets_in_strings() {
        let cases: [(&str, usize); 8] = [
            ("1", 0),
            ("\"[[[{{{\"", 0),
            ("{}", 1),
            ("[[1],[2,[3]]]", 3),
            (r#"{"a":{"b":[{"c":"]]]\"[[["}]}}"#, 4),
            (r#"["\\", [1]]"#, 2),
            (r#"[["\\\"]"]]"#, 2),
            ("[[],[],{}]", 2),
        ];
        for (text, want) in cases {
            assert_eq!(nesting_depth(text.as_bytes(), 100), want, "{text}");
        }
    }

    #[test]
    fn validate_refuses_past_the_limit_and_accepts_at_it() {
        let nest = |n: usize| format!("{}{}", "[".repeat(n), "]".repeat(n));
        assert!(validate(nest(128).as_bytes(), 128).is_ok());
        let err = validate(nest(129).as_bytes(), 128).map(|_| ()).unwrap_err();
        assert_eq!(
            err.to_string(),
            "document nests deeper than 128 levels (limits.max_depth)"
        );
        // Millions deep: no recursion anywhere, so no stack overflow, even on a
        // small stack.
        let deep = nest(4_000_000);
        let r = std::thread::Builder::new()
            .stack_size(64 * 1024)
            .spawn(move || validate(deep.as_bytes(), 128).is_err())
            .map(|h| h.join());
        assert!(matches!(r, Ok(Ok(true))));
        // Invalid JSON is reported as such, however deep.
        assert!(matches!(validate(b"[[[[", 2), Err(Error::InvalidJson)));
    }
}
