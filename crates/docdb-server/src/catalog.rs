//! The catalog: logical database names ⇄ ids, with creation time and status, stored in
//! `<data_dir>/catalog.json` and replaced atomically on every change (temp file, fsync,
//! rename, fsync directory). Ids start at 1 and are never reused.

use std::collections::BTreeMap;
use std::fs::{self, File, OpenOptions};
use std::io::Write;
use std::path::{Path, PathBuf};

use parking_lot::Mutex;
use serde::{Deserialize, Serialize};

/// Whether a database is in use.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum DbStatus {
    Active,
    Deleted,
}

/// One database of the catalog.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Entry {
    pub name: String,
    pub id: u64,
    /// Creation time, RFC 3339.
    pub created_at: String,
    pub status: DbStatus,
}

#[derive(Debug, Default, Serialize, Deserialize)]
struct Stored {
    next_id: u64,
    databases: Vec<Entry>,
}

#[derive(Debug)]
struct State {
    next_id: u64,
    by_id: BTreeMap<u64, Entry>,
}

/// The catalog of one data directory.
#[derive(Debug)]
pub struct Catalog {
    path: PathBuf,
    state: Mutex<State>,
}

impl Catalog {
    /// Loads `<data_dir>/catalog.json`, or starts an empty catalog.
    pub fn open(data_dir: &Path) -> anyhow::Result<Catalog> {
        let path = data_dir.join("catalog.json");
        let stored: Stored = match fs::read(&path) {
            Ok(bytes) => serde_json::from_slice(&bytes).map_err(|e| {
                anyhow::anyhow!(
                    "{} is damaged ({e}); restore it from a backup",
                    path.display()
                )
            })?,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Stored {
                next_id: 1,
                databases: Vec::new(),
            },
            Err(e) => return Err(anyhow::anyhow!("reading {}: {e}", path.display())),
        };
        let mut by_id = BTreeMap::new();
        let mut max_id = 0;
        for e in stored.databases {
            max_id = max_id.max(e.id);
            by_id.insert(e.id, e);
        }
        Ok(Catalog {
            path,
            state: Mutex::new(State {
                next_id: stored.next_id.max(max_id + 1).max(1),
                by_id,
            }),
        })
    }

    fn persist(&self, s: &State) -> std::io::Result<()> {
        let stored = Stored {
            next_id: s.next_id,
            databases: s.by_id.values().cloned().collect(),
        };
        let bytes = serde_json::to_vec_pretty(&stored).map_err(std::io::Error::other)?;
        let dir = self.path.parent().unwrap_or(Path::new("."));
        let tmp = self.path.with_extension("json.tmp");
        {
            let mut f = OpenOptions::new()
                .write(true)
                .create(true)
                .truncate(true)
                .open(&tmp)?;
            f.write_all(&bytes)?;
            f.sync_all()?;
        }
        fs::rename(&tmp, &self.path)?;
        File::open(dir)?.sync_all()
    }

    /// The active database called `name`, creating it (durably) if needed. Returns the
    /// entry and whether it was created.
    pub fn get_or_create(&self, name: &str) -> std::io::Result<(Entry, bool)> {
        let mut s = self.state.lock();
        if let Some(e) = s
            .by_id
            .values()
            .find(|e| e.name == name && e.status == DbStatus::Active)
        {
            return Ok((e.clone(), false));
        }
        let id = s.next_id;
        let entry = Entry {
            name: name.to_owned(),
            id,
            created_at: now_rfc3339(),
            status: DbStatus::Active,
        };
        s.next_id += 1;
        s.by_id.insert(id, entry.clone());
        if let Err(e) = self.persist(&s) {
            // Not durable, so not created: undo (the id stays burnt, never reused).
            s.by_id.remove(&id);
            return Err(e);
        }
        Ok((entry, true))
    }

    pub fn get(&self, id: u64) -> Option<Entry> {
        self.state
            .lock()
            .by_id
            .get(&id)
            .filter(|e| e.status == DbStatus::Active)
            .cloned()
    }

    /// Active databases, by id.
    pub fn list(&self) -> Vec<Entry> {
        self.state
            .lock()
            .by_id
            .values()
            .filter(|e| e.status == DbStatus::Active)
            .cloned()
            .collect()
    }
}

fn now_rfc3339() -> String {
    time::OffsetDateTime::now_utc()
        .format(&time::format_description::well_known::Rfc3339)
        .unwrap_or_else(|_| "1970-01-01T00:00:00Z".into())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_survive_reopen_and_are_never_reused() {
        let d = tempfile::tempdir().unwrap();
        let c = Catalog::open(d.path()).unwrap();
        let (a, created) = c.get_or_create("alpha").unwrap();
        assert!(created);
        assert_eq!(a.id, 1);
        let (b, _) = c.get_or_create("beta").unwrap();
        assert_eq!(b.id, 2);
        assert_eq!(c.get_or_create("alpha").unwrap(), (a.clone(), false));
        drop(c);
        let c = Catalog::open(d.path()).unwrap();
        assert_eq!(c.get(1), Some(a));
        assert_eq!(c.get_or_create("gamma").unwrap().0.id, 3);
        assert!(c.list().iter().all(|e| e.created_at.ends_with('Z')));
    }

    #[test]
    fn a_damaged_catalog_is_a_clear_error() {
        let d = tempfile::tempdir().unwrap();
        fs::write(d.path().join("catalog.json"), b"{not json").unwrap();
        let e = Catalog::open(d.path()).unwrap_err().to_string();
        assert!(e.contains("catalog.json") && e.contains("damaged"), "{e}");
    }
}
