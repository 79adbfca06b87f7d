//! `docdb restore`: load what `docdb dump` wrote (a directory of
//! `<db>/<collection>.jsonl`, or the single-stream form on stdin) into a data
//! directory. Databases and collections are created as needed. A document that already
//! exists is an error that stops the restore before anything changes,
//! unless `--force` (then it is replaced). Index definitions in the dump are created
//! after the documents are loaded.

use std::collections::BTreeMap;
use std::fs;
use std::io::BufRead;
use std::path::Path;

use docdb_core::{Database, Error, IndexDef, OpenOptions};
use serde::Deserialize;

use crate::catalog::Catalog;
use crate::config::ServerConfig;
use crate::datadir::DataDirLock;

/// A stream line: a document (`id` + `doc`) or an index definition (`index`).
#[derive(Deserialize)]
struct StreamLine {
    db: String,
    collection: String,
    #[serde(default)]
    id: Option<u64>,
    /// Present whenever the key is, even for the document `null` (which a plain
    /// `Option` would read as absent).
    #[serde(default, deserialize_with = "present")]
    doc: Option<Box<serde_json::value::RawValue>>,
    #[serde(default)]
    index: Option<IndexDef>,
}

fn present<'de, D: serde::Deserializer<'de>>(
    d: D,
) -> Result<Option<Box<serde_json::value::RawValue>>, D::Error> {
    Box::<serde_json::value::RawValue>::deserialize(d).map(Some)
}

#[derive(Deserialize)]
struct FileLine {
    id: u64,
    doc: Box<serde_json::value::RawValue>,
}

/// Documents to load: db → collection → (id, json).
type Plan = BTreeMap<String, BTreeMap<String, Vec<(u64, Vec<u8>)>>>;
/// Index definitions to create once the documents are in: db → (collection, def).
type IndexPlan = BTreeMap<String, Vec<(String, IndexDef)>>;

/// Totals of a restore.
#[derive(Debug, Default)]
pub struct RestoreSummary {
    pub databases: usize,
    pub documents: u64,
    pub indexes: usize,
}

fn read_dir_plan(dir: &Path) -> anyhow::Result<(Plan, IndexPlan)> {
    let mut plan = Plan::new();
    let mut index_plan = IndexPlan::new();
    let at = |p: &Path, e: std::io::Error| anyhow::anyhow!("--from {}: {e}", p.display());
    for db in fs::read_dir(dir).map_err(|e| at(dir, e))? {
        let db = db.map_err(|e| at(dir, e))?;
        if !db.file_type().map_err(|e| at(&db.path(), e))?.is_dir() {
            continue;
        }
        let name = db.file_name().to_string_lossy().into_owned();
        let defs_path = db.path().join(super::dump::INDEXES_FILE);
        if defs_path.exists() {
            let defs: Vec<super::dump::DumpedIndex> =
                serde_json::from_slice(&fs::read(&defs_path)?)
                    .map_err(|e| anyhow::anyhow!("{}: {e}", defs_path.display()))?;
            index_plan
                .entry(name.clone())
                .or_default()
                .extend(defs.into_iter().map(|d| (d.collection, d.def)));
        }
        let colls = plan.entry(name.clone()).or_default();
        for f in fs::read_dir(db.path()).map_err(|e| at(&db.path(), e))? {
            let f = f.map_err(|e| at(&db.path(), e))?;
            let fname = f.file_name().to_string_lossy().into_owned();
            let Some(coll) = fname.strip_suffix(".jsonl") else {
                continue;
            };
            let docs = colls.entry(coll.to_owned()).or_default();
            let file = fs::File::open(f.path()).map_err(|e| at(&f.path(), e))?;
            let reader = std::io::BufReader::new(file);
            for (n, line) in reader.lines().enumerate() {
                let line = line.map_err(|e| at(&f.path(), e))?;
                if line.trim().is_empty() {
                    continue;
                }
                let l: FileLine = serde_json::from_str(&line)
                    .map_err(|e| anyhow::anyhow!("{}:{}: {e}", f.path().display(), n + 1))?;
                docs.push((l.id, l.doc.get().as_bytes().to_vec()));
            }
        }
    }
    Ok((plan, index_plan))
}

fn read_stream_plan(input: &mut impl BufRead) -> anyhow::Result<(Plan, IndexPlan)> {
    let mut plan = Plan::new();
    let mut index_plan = IndexPlan::new();
    for (n, line) in input.lines().enumerate() {
        let line = line?;
        if line.trim().is_empty() {
            continue;
        }
        let l: StreamLine =
            serde_json::from_str(&line).map_err(|e| anyhow::anyhow!("stdin:{}: {e}", n + 1))?;
        let colls = plan.entry(l.db.clone()).or_default();
        let docs = colls.entry(l.collection.clone()).or_default();
        match (l.id, l.doc, l.index) {
            (Some(id), Some(doc), None) => docs.push((id, doc.get().as_bytes().to_vec())),
            (None, None, Some(def)) => index_plan
                .entry(l.db)
                .or_default()
                .push((l.collection, def)),
            _ => anyhow::bail!(
                "stdin:{}: a line holds either \"id\" and \"doc\", or \"index\"",
                n + 1
            ),
        }
    }
    Ok((plan, index_plan))
}

fn open(cfg: &ServerConfig, entry: &crate::catalog::Entry) -> anyhow::Result<Database> {
    let (dir, wal_dir) = super::db_dirs(cfg, entry);
    Database::open_with(
        &dir,
        cfg.engine(),
        OpenOptions {
            wal_dir,
            ..OpenOptions::default()
        },
    )
    .map_err(|e| anyhow::anyhow!("opening {}: {e}", entry.name))
}

/// Restores from `from_dir`, or from `stdin` when it is None.
pub fn run(
    cfg: &ServerConfig,
    from_dir: Option<&Path>,
    stdin: &mut impl BufRead,
    force: bool,
) -> anyhow::Result<RestoreSummary> {
    // First, so a live server is named before anything else can fail.
    let _lock = DataDirLock::acquire(cfg)?;
    let (plan, index_plan) = match from_dir {
        Some(d) => read_dir_plan(d)?,
        None => read_stream_plan(stdin)?,
    };
    let catalog = Catalog::open(&cfg.data_dir)?;
    // Before any database opens: what only the shared log made durable goes into the
    // databases' WALs (as at a server's start).
    crate::shared_log::drain(cfg, &catalog)?;
    // Refuse before writing anything, so a refused restore changes nothing anywhere.
    let max_depth = cfg.limits.engine.max_depth;
    for (name, colls) in &plan {
        docdb_core::name::validate_db_name(name)?;
        for (coll, def) in index_plan.get(name).into_iter().flatten() {
            def.validate()
                .map_err(|e| anyhow::anyhow!("{name}/{coll}: {e}; nothing was restored"))?;
        }
        for (coll, docs) in colls {
            for (id, doc) in docs {
                if docdb_core::json::nesting_depth(doc, max_depth) > max_depth {
                    anyhow::bail!(
                        "{name}/{coll}/{id}: {}; nothing was restored",
                        Error::TooDeep { max: max_depth }
                    );
                }
            }
        }
        if force {
            continue;
        }
        let Some(entry) = catalog.list().into_iter().find(|e| &e.name == name) else {
            continue; // a new database cannot hold conflicting documents
        };
        let db = open(cfg, &entry)?;
        for (coll, docs) in colls {
            if !db.list_collections().contains(coll) {
                continue;
            }
            for (id, _) in docs {
                match db.read(coll, *id) {
                    Ok(_) => anyhow::bail!(
                        "{name}/{coll}/{id} already exists; nothing was restored (use --force to replace existing documents)"
                    ),
                    Err(Error::NotFound) => {}
                    Err(e) => return Err(e.into()),
                }
            }
        }
    }
    let mut sum = RestoreSummary::default();
    for (name, colls) in plan {
        let (entry, _) = catalog.get_or_create(&name)?;
        let db = open(cfg, &entry)?;
        for (coll, docs) in &colls {
            match db.create_collection(coll) {
                Ok(()) | Err(Error::CollectionExists) => {}
                Err(e) => return Err(anyhow::anyhow!("{name}/{coll}: {e}")),
            }
            for chunk in docs.chunks(512) {
                let mut b = db.batch();
                for (id, doc) in chunk {
                    match b.create(coll, *id, doc) {
                        Ok(()) => {}
                        Err(Error::AlreadyExists) if force => b.update(coll, *id, doc)?,
                        Err(e) => return Err(anyhow::anyhow!("{name}/{coll}/{id}: {e}")),
                    }
                    sum.documents += 1;
                }
                b.finish()?;
            }
        }
        // Indexes last: each is built once over the loaded documents. One that exists
        // with the same definition (a restore run again) is kept.
        for (coll, def) in index_plan.get(&name).into_iter().flatten() {
            match db.create_index(coll, def.clone()) {
                Ok(()) => sum.indexes += 1,
                Err(Error::IndexExists { .. })
                    if db.list_indexes(coll)?.iter().any(|i| {
                        i.name == def.name && i.fields == def.fields && i.unique == def.unique
                    }) => {}
                Err(e) => return Err(anyhow::anyhow!("{name}/{coll}: index {}: {e}", def.name)),
            }
        }
        db.close()?;
        sum.databases += 1;
    }
    Ok(sum)
}
