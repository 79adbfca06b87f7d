//! `docdb dump`: every document of every database (or the named ones) as JSON Lines.
//! To stdout, one object per line: `{"db":..,"collection":..,"id":..,"doc":..}`; to a
//! directory: `<dir>/<db>/<collection>.jsonl`, one `{"id":..,"doc":..}` per line (an
//! empty collection gets an empty file, so it is restored too). Each collection is read
//! at one snapshot. A document stored with line breaks (pretty-printed) is written on
//! one line: the same JSON value, compact formatting.
//!
//! Secondary index definitions are dumped too: in the stream form one line
//! `{"db":..,"collection":..,"index":{"name","fields","unique"}}` after the
//! collection's documents; in the directory form `<dir>/<db>/_indexes.json`
//! ([`INDEXES_FILE`]). Restore creates them after loading the documents.

use std::io::{BufWriter, Write};
use std::path::Path;

use docdb_core::fsutil::{private_dir, private_file};
use docdb_core::{Database, IndexDef, OpenOptions};

use super::{db_dirs, existing_catalog};
use crate::config::ServerConfig;

/// Most bytes of documents one page of a dump holds in memory.
const PAGE_BYTES: usize = 8 << 20;

/// Totals of a dump.
#[derive(Debug, Default)]
pub struct DumpSummary {
    pub databases: usize,
    pub collections: usize,
    /// Secondary index definitions written.
    pub indexes: usize,
    pub documents: u64,
}

/// A stored document on one line: whitespace outside strings removed (JSON strings
/// cannot hold a raw newline, so what is left has none). The value is unchanged;
/// only its formatting is.
fn one_line(doc: &[u8]) -> std::borrow::Cow<'_, [u8]> {
    if !doc.iter().any(|b| matches!(b, b'\n' | b'\r')) {
        return std::borrow::Cow::Borrowed(doc);
    }
    let mut out = Vec::with_capacity(doc.len());
    let (mut in_string, mut escaped) = (false, false);
    for &b in doc {
        if in_string {
            out.push(b);
            if escaped {
                escaped = false;
            } else if b == b'\\' {
                escaped = true;
            } else if b == b'"' {
                in_string = false;
            }
        } else if !matches!(b, b' ' | b'\t' | b'\n' | b'\r') {
            in_string = b == b'"';
            out.push(b);
        }
    }
    std::borrow::Cow::Owned(out)
}

/// The directory form's file of a database's index definitions: a JSON array of
/// `{"collection","name","fields","unique"}` (absent when it has none).
pub const INDEXES_FILE: &str = "_indexes.json";

/// One index definition in a dump.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct DumpedIndex {
    pub collection: String,
    #[serde(flatten)]
    pub def: IndexDef,
}

/// Dumps to `out_dir`, or to `stdout` when `out_dir` is None.
pub fn run(
    cfg: &ServerConfig,
    only: &[String],
    out_dir: Option<&Path>,
    stdout: &mut impl Write,
) -> anyhow::Result<DumpSummary> {
    let (catalog, _lock) = existing_catalog(cfg)?;
    let mut sum = DumpSummary::default();
    for e in catalog.list() {
        if !only.is_empty() && !only.contains(&e.name) {
            continue;
        }
        let (dir, wal_dir) = db_dirs(cfg, &e);
        let db = Database::open_with(
            &dir,
            cfg.engine(),
            OpenOptions {
                wal_dir,
                ..OpenOptions::default()
            },
        )
        .map_err(|err| anyhow::anyhow!("opening {}: {err}", e.name))?;
        sum.databases += 1;
        let mut indexes: Vec<DumpedIndex> = Vec::new();
        for coll in db.list_collections() {
            sum.collections += 1;
            let mut file_out = match out_dir {
                Some(d) => {
                    // The dump holds every tenant's documents: private like the data.
                    let p = d.join(&e.name);
                    private_dir(&p)?;
                    Some(BufWriter::new(
                        private_file()
                            .write(true)
                            .create(true)
                            .truncate(true)
                            .open(p.join(format!("{coll}.jsonl")))?,
                    ))
                }
                None => None,
            };
            let tx = db.begin();
            let mut after = 0u64;
            let mut first = true;
            loop {
                // Pages of at most PAGE_BYTES, so a collection of large documents is
                // never held in memory whole.
                let mut page =
                    tx.scan_page(&coll, after, docdb_core::MAX_SCAN_LIMIT, PAGE_BYTES)?;
                if !first && after == 0 && page.rows.len() == 1 && page.more {
                    // Start-after 0 means "from the start": a page that holds only
                    // document 0 again makes no progress; take one more row.
                    page = tx.scan_page(&coll, 0, 2, usize::MAX)?;
                }
                for (id, doc) in &page.rows {
                    // Scan from 0 includes id 0; later pages start strictly after.
                    if !first && *id == after {
                        continue;
                    }
                    let doc = one_line(doc);
                    let doc = String::from_utf8_lossy(&doc);
                    match &mut file_out {
                        Some(f) => writeln!(f, "{{\"id\":{id},\"doc\":{doc}}}")?,
                        None => writeln!(
                            stdout,
                            "{{\"db\":{},\"collection\":{},\"id\":{id},\"doc\":{doc}}}",
                            serde_json::to_string(&e.name)?,
                            serde_json::to_string(&coll)?
                        )?,
                    }
                    sum.documents += 1;
                }
                first = false;
                match page.rows.last() {
                    Some((id, _)) if page.more => after = *id,
                    _ => break,
                }
            }
            if let Some(f) = &mut file_out {
                f.flush()?;
            }
            // Index definitions follow their collection's documents in the stream form;
            // the directory form collects them in `<db>/_indexes.json`.
            for ix in db
                .list_indexes(&coll)?
                .into_iter()
                .filter(|ix| !ix.building)
            {
                let def = IndexDef {
                    name: ix.name,
                    fields: ix.fields,
                    unique: ix.unique,
                };
                sum.indexes += 1;
                match out_dir {
                    Some(_) => indexes.push(DumpedIndex {
                        collection: coll.clone(),
                        def,
                    }),
                    None => writeln!(
                        stdout,
                        "{{\"db\":{},\"collection\":{},\"index\":{}}}",
                        serde_json::to_string(&e.name)?,
                        serde_json::to_string(&coll)?,
                        serde_json::to_string(&def)?
                    )?,
                }
            }
        }
        if let (Some(d), false) = (out_dir, indexes.is_empty()) {
            let mut f = private_file()
                .write(true)
                .create(true)
                .truncate(true)
                .open(d.join(&e.name).join(INDEXES_FILE))?;
            f.write_all(&serde_json::to_vec_pretty(&indexes)?)?;
            f.flush()?;
        }
        drop(db);
    }
    Ok(sum)
}

#[cfg(test)]
mod tests {
    use super::one_line;

    #[test]
    fn one_line_keeps_strings_and_drops_layout() {
        let doc = b"{\n  \"a b\": \"x\\\"\\n y\",\r\n  \"c\": [1, 2]\n}";
        let got = one_line(doc);
        assert_eq!(&*got, &b"{\"a b\":\"x\\\"\\n y\",\"c\":[1,2]}"[..]);
        let v1: serde_json::Value = serde_json::from_slice(doc).unwrap();
        let v2: serde_json::Value = serde_json::from_slice(&got).unwrap();
        assert_eq!(v1, v2);
        assert!(matches!(
            one_line(b"{\"a\": 1}"),
            std::borrow::Cow::Borrowed(_)
        ));
    }
}
