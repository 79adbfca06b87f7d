//! Secondary indexes (SPEC §11): per collection, named orderings of its documents by
//! the values at one or more paths, kept in memory and maintained in the same commit
//! as the documents they index.
//!
//! - A definition ([`IndexDef`]) is a name, fields `[[path, 1|-1], ...]` and a unique
//!   flag. Definitions are durable in the `INDEXES` file ([`defs`]); the entries are
//!   not stored: they are rebuilt from the documents when the database opens, so a
//!   document's WAL record is the only record of its index entries and kill -9 can
//!   never leave an index that disagrees with the documents.
//! - A key ([`key::Key`]) is the values at the fields' paths, ordered by
//!   [`crate::order::cmp`] (reversed for a `-1` field), then by document id. A path
//!   walks object members only; with no value there the part is [`KeyPart::Missing`],
//!   or [`KeyPart::ViaArray`] when the walk met an array (a filter fans out there),
//!   both below every value. The value at a path that holds an array is the whole
//!   array (no multikey entries): a filter that matches arrays element-wise cannot be
//!   answered from such an entry, nor from a via-array one, alone (see
//!   [`IndexInfo::array_entries`]).
//! - Entries are versioned like documents ([`tree`]): each `(key, id)` carries the
//!   commit intervals in which it is present, so a reader sees the index as of its
//!   snapshot while writers stage newer commits.
//! - [`stage`]: the per-commit plan (keys, unique checks, memory) checked at staging and
//!   applied with the commit's versions. [`build`]: CreateIndex's online build, the
//!   rebuild at open, DropIndex, the scan API the query planner calls, verification.

pub(crate) mod build;
pub(crate) mod defs;
pub mod key;
pub(crate) mod stage;
pub(crate) mod tree;

use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};

pub use build::{Direction, IndexBuild, IndexHit, IndexRange, IndexScan};
pub use key::KeyPart;

/// Most fields one index may have.
pub const MAX_INDEX_FIELDS: usize = 16;
/// Longest index name and longest field path, in bytes.
pub const MAX_INDEX_NAME: usize = 64;
pub const MAX_INDEX_PATH: usize = 256;

/// An index definition, as CreateIndex receives it and `INDEXES` stores it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct IndexDef {
    pub name: String,
    /// `(dotted path, 1 ascending | -1 descending)`, most significant first.
    pub fields: Vec<(String, i8)>,
    #[serde(default)]
    pub unique: bool,
}

impl IndexDef {
    /// Checks the name (1–64 bytes of `[A-Za-z0-9_.-]`), the fields (1–16, distinct,
    /// non-empty dotted paths of ≤ 256 bytes with no empty segment, direction 1 or -1).
    pub fn validate(&self) -> Result<()> {
        let bad = |reason: String| Err(Error::InvalidIndex { reason });
        if self.name.is_empty() || self.name.len() > MAX_INDEX_NAME {
            return bad(format!("index name must be 1 to {MAX_INDEX_NAME} bytes"));
        }
        if !self
            .name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'-' | b'.'))
        {
            return bad(format!(
                "index name {:?} may hold only letters, digits, '_', '-' and '.'",
                self.name
            ));
        }
        if self.fields.is_empty() || self.fields.len() > MAX_INDEX_FIELDS {
            return bad(format!("an index has 1 to {MAX_INDEX_FIELDS} fields"));
        }
        for (i, (path, dir)) in self.fields.iter().enumerate() {
            if path.is_empty() || path.len() > MAX_INDEX_PATH || path.split('.').any(str::is_empty)
            {
                return bad(format!(
                    "field path {path:?} must be 1 to {MAX_INDEX_PATH} bytes of dot-separated, non-empty names"
                ));
            }
            if *dir != 1 && *dir != -1 {
                return bad(format!("field {path:?}: direction must be 1 or -1"));
            }
            if self.fields[..i].iter().any(|(p, _)| p == path) {
                return bad(format!("field {path:?} appears twice"));
            }
        }
        Ok(())
    }

    /// The descending fields as a bit mask (bit i: field i is `-1`).
    pub(crate) fn desc_mask(&self) -> u32 {
        self.fields
            .iter()
            .enumerate()
            .filter(|(_, (_, d))| *d < 0)
            .fold(0, |m, (i, _)| m | (1 << i))
    }
}

/// What [`crate::Database::list_indexes`] reports of one index.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct IndexInfo {
    pub name: String,
    pub fields: Vec<(String, i8)>,
    pub unique: bool,
    /// Entries (one per live document) in the newest state.
    pub entries: u64,
    /// Of those, entries whose key holds an array (indexed as a whole value) or a
    /// path through one ([`KeyPart::ViaArray`]): while this is non-zero, an equality
    /// filter on the field (which matches elements) must not be answered from the
    /// index alone.
    pub array_entries: u64,
    /// Bytes this index counts towards the memory limit (0 while building).
    pub memory_bytes: u64,
    /// Still building (CreateIndex not yet answered): queries do not use it, and
    /// `entries` counts the documents indexed so far.
    pub building: bool,
}

#[cfg(test)]
mod tests {
    use super::*;

    fn def(name: &str, fields: &[(&str, i8)]) -> IndexDef {
        IndexDef {
            name: name.into(),
            fields: fields.iter().map(|(p, d)| (p.to_string(), *d)).collect(),
            unique: false,
        }
    }

    #[test]
    fn definitions_are_validated_with_a_reason() {
        assert!(def("by_email", &[("email", 1)]).validate().is_ok());
        assert!(def("a.b-c", &[("a.b", -1), ("c", 1)]).validate().is_ok());
        for (d, want) in [
            (def("", &[("a", 1)]), "index name"),
            (def("x y", &[("a", 1)]), "may hold only"),
            (def("x", &[]), "1 to 16 fields"),
            (def("x", &[("a..b", 1)]), "non-empty names"),
            (def("x", &[("a", 2)]), "direction"),
            (def("x", &[("a", 1), ("a", -1)]), "twice"),
        ] {
            let e = d.validate().unwrap_err().to_string();
            assert!(e.contains(want), "{e}");
        }
        assert_eq!(def("x", &[("a", 1), ("b", -1)]).desc_mask(), 2);
    }
}
