//! Secondary indexes (commands 19–21): a typed definition builder and what
//! ListIndexes reports.
//!
//! ```no_run
//! # fn main() -> docdb_client::Result<()> {
//! use docdb_client::{Client, IndexSpec};
//! let db = Client::connect("/tmp/docdb.sock")?.open_db("shop")?;
//! db.create_index("users", &IndexSpec::new("by_email").asc("email").unique())?;
//! db.create_index("orders", &IndexSpec::new("by_status_date").asc("status").desc("date"))?;
//! for ix in db.list_indexes("users")? {
//!     println!("{} {:?} unique={} entries={}", ix.name, ix.fields, ix.unique, ix.entries);
//! }
//! db.drop_index("orders", "by_status_date")?;
//! # Ok(()) }
//! ```

use serde::{Deserialize, Serialize};

/// An index definition: a name, fields (dotted paths, ascending or descending, most
/// significant first) and whether keys must be unique.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct IndexSpec {
    pub name: String,
    pub fields: Vec<(String, i8)>,
    pub unique: bool,
}

impl IndexSpec {
    pub fn new(name: impl Into<String>) -> Self {
        IndexSpec {
            name: name.into(),
            fields: Vec::new(),
            unique: false,
        }
    }

    /// Adds an ascending field.
    pub fn asc(mut self, path: impl Into<String>) -> Self {
        self.fields.push((path.into(), 1));
        self
    }

    /// Adds a descending field.
    pub fn desc(mut self, path: impl Into<String>) -> Self {
        self.fields.push((path.into(), -1));
        self
    }

    /// Refuse a second document with the same key (Conflict
    /// `duplicate key for unique index NAME`).
    pub fn unique(mut self) -> Self {
        self.unique = true;
        self
    }
}

/// One index as ListIndexes reports it.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct IndexInfo {
    pub name: String,
    pub fields: Vec<(String, i8)>,
    pub unique: bool,
    /// Documents indexed.
    pub entries: u64,
    /// Entries whose key holds an array (indexed as the whole array).
    #[serde(default)]
    pub array_entries: u64,
    /// Bytes the index counts towards the database's memory limit.
    #[serde(default)]
    pub memory_bytes: u64,
    /// Still building (its CreateIndex not answered yet): queries do not use it, and
    /// `entries` counts the documents indexed so far. False from older servers.
    #[serde(default)]
    pub building: bool,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_builder_serialises_to_the_wire_payload() {
        let s = IndexSpec::new("x").asc("a").desc("b.c").unique();
        assert_eq!(
            serde_json::to_string(&s).unwrap(),
            r#"{"name":"x","fields":[["a",1],["b.c",-1]],"unique":true}"#
        );
    }
}
