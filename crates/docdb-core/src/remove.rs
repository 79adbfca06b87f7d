//! Removing a closed database's files (the server's DropDB), through the storage seam.
//!
//! [`remove_database`] takes the database's `LOCK` first, so it refuses a database open
//! in this or another process, then removes the WAL segments, the data files, every
//! other file of the directory (`CHECKPOINT`, `INDEX`, `SUMMARY.json`, leftovers such
//! as `.dropped` WAL tails), `LOCK` last, the directories themselves, and syncs the
//! parent directories so the removal is durable.
//!
//! IMPORTANT: a crash part way leaves a subset of the files, which must not be opened
//! as a database (it could be missing its newest WAL segment). The server therefore
//! first renames the directory out of the namespace (`dbs/.dropped-<id>`) and marks the
//! database dropped in its catalog, and only then calls this; at start it finishes any
//! removal left half done (see `docdb-server`'s pool and docs/ARCHITECTURE.md "DropDB").

use std::io;
use std::path::Path;

use crate::error::{Error, Result};
use crate::storage::Storage;

/// What [`remove_database`] removed.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct RemoveReport {
    pub files: u64,
    pub dirs: u64,
}

/// Nesting a database directory may have (`<dir>/data/<file>`); deeper is not ours.
const MAX_DEPTH: usize = 2;

/// Removes the files and directories of the closed database in `dir` (and its WAL
/// directory `wal_dir`, when it lives elsewhere). A directory that does not exist is
/// not an error (a removal already finished, or never made). Refuses with an error if
/// the database is open (its `LOCK` is held).
pub fn remove_database(
    s: &dyn Storage,
    dir: &Path,
    wal_dir: Option<&Path>,
) -> Result<RemoveReport> {
    let mut r = RemoveReport::default();
    let dir_exists = is_dir(s, dir)?;
    let _lock = if dir_exists {
        match s.lock(&dir.join("LOCK")) {
            Ok(l) => Some(l),
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                return Err(Error::Format(format!(
                    "{} is open; close it before removing it",
                    dir.display()
                )));
            }
            Err(e) => return Err(e.into()),
        }
    } else {
        None
    };
    if let Some(w) = wal_dir {
        if is_dir(s, w)? {
            remove_tree(s, w, 0, &mut r)?;
            sync_parent(s, w)?;
        }
    }
    if dir_exists {
        remove_tree(s, dir, 0, &mut r)?;
        sync_parent(s, dir)?;
    }
    Ok(r)
}

/// Whether `path` is a directory we can list (absent: false).
fn is_dir(s: &dyn Storage, path: &Path) -> Result<bool> {
    match s.list(path) {
        Ok(_) => Ok(true),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(false),
        Err(e) if e.kind() == io::ErrorKind::NotADirectory => Err(Error::Format(format!(
            "{} is a file, not a database directory",
            path.display()
        ))),
        Err(e) => Err(e.into()),
    }
}

/// Removes `dir`'s entries (files; directories recursively, up to [`MAX_DEPTH`]), the
/// `LOCK` file last, syncs `dir`, then removes it.
fn remove_tree(s: &dyn Storage, dir: &Path, depth: usize, r: &mut RemoveReport) -> Result<()> {
    let mut names = s.list(dir)?;
    // LOCK last: while it exists, the lock held on it keeps other openers out.
    names.sort_by_key(|n| n == "LOCK");
    for name in names {
        let path = dir.join(&name);
        match s.list(&path) {
            Ok(_) if depth < MAX_DEPTH => {
                remove_tree(s, &path, depth + 1, r)?;
                continue;
            }
            Ok(_) => {
                return Err(Error::Format(format!(
                    "{}: unexpected nested directory in a database directory; not removed",
                    path.display()
                )))
            }
            Err(e) if e.kind() == io::ErrorKind::NotFound => continue,
            Err(e) if e.kind() == io::ErrorKind::NotADirectory => {}
            Err(e) => return Err(e.into()),
        }
        match s.remove_file(&path) {
            Ok(()) => r.files += 1,
            Err(e) if e.kind() == io::ErrorKind::NotFound => {}
            Err(e) => return Err(e.into()),
        }
    }
    s.sync_dir(dir)?;
    match s.remove_dir(dir) {
        Ok(()) => r.dirs += 1,
        Err(e) if e.kind() == io::ErrorKind::NotFound => {}
        Err(e) => return Err(e.into()),
    }
    Ok(())
}

fn sync_parent(s: &dyn Storage, path: &Path) -> Result<()> {
    match path.parent() {
        Some(p) if !p.as_os_str().is_empty() => Ok(s.sync_dir(p)?),
        _ => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::storage::testing::{FaultStorage, PowerLossStorage};
    use crate::storage::StdStorage;
    use crate::{Config, Database, OpenOptions};
    use std::sync::Arc;

    fn fill(dir: &Path, wal: Option<&Path>) {
        let db = Database::open_with(
            dir,
            Config::default(),
            OpenOptions {
                wal_dir: wal.map(Path::to_path_buf),
                ..OpenOptions::default()
            },
        )
        .unwrap();
        for i in 0..20 {
            db.create("", i, br#"{"a":1}"#).unwrap();
        }
        db.checkpoint().unwrap();
        db.create("", 100, br#"{"after":"checkpoint"}"#).unwrap();
        db.close().unwrap();
    }

    #[test]
    fn removes_every_file_and_leaves_neighbours() {
        let d = tempfile::tempdir().unwrap();
        let (a, ab) = (d.path().join("dbs/a"), d.path().join("dbs/ab"));
        fill(&a, None);
        fill(&ab, None);
        assert!(a.join("CHECKPOINT").exists());
        let r = remove_database(&StdStorage, &a, None).unwrap();
        assert!(!a.exists());
        assert!(r.files >= 4 && r.dirs == 3, "{r:?}");
        // A neighbour with the same prefix is untouched and still opens with its data.
        let db = Database::open(&ab, Config::default()).unwrap();
        assert_eq!(db.read("", 100).unwrap(), br#"{"after":"checkpoint"}"#);
        db.close().unwrap();
        // Removing again (a removal already finished) is not an error.
        assert_eq!(
            remove_database(&StdStorage, &a, None).unwrap(),
            RemoveReport::default()
        );
    }

    #[test]
    fn removes_a_separate_wal_dir_and_refuses_an_open_database() {
        let d = tempfile::tempdir().unwrap();
        let (dir, wal) = (d.path().join("db"), d.path().join("wal/db"));
        fill(&dir, Some(&wal));
        let open = Database::open_with(
            &dir,
            Config::default(),
            OpenOptions {
                wal_dir: Some(wal.clone()),
                ..OpenOptions::default()
            },
        )
        .unwrap();
        let e = remove_database(&StdStorage, &dir, Some(&wal)).unwrap_err();
        assert!(e.to_string().contains("is open"), "{e}");
        assert!(dir.join("CHECKPOINT").exists() && wal.exists());
        open.close().unwrap();
        remove_database(&StdStorage, &dir, Some(&wal)).unwrap();
        assert!(!dir.exists() && !wal.exists());
        assert!(d.path().join("wal").exists());
    }

    #[test]
    fn a_failed_removal_is_an_error_and_can_be_finished() {
        use crate::storage::testing::{Fault, FaultKind, OpClass};
        let d = tempfile::tempdir().unwrap();
        let dir = d.path().join("db");
        fill(&dir, None);
        let faulty = FaultStorage::new(Arc::new(StdStorage));
        faulty.arm(Fault::once_after(OpClass::Remove, 2, FaultKind::Eio));
        assert!(remove_database(&faulty, &dir, None).is_err());
        assert!(dir.exists());
        remove_database(&StdStorage, &dir, None).unwrap();
        assert!(!dir.exists());
    }

    #[test]
    fn the_removal_is_durable_once_it_returns() {
        let d = tempfile::tempdir().unwrap();
        let dir = d.path().join("db");
        fill(&dir, None);
        let s = PowerLossStorage::new();
        remove_database(&*s, &dir, None).unwrap();
        s.cut_keep_nothing_unsynced().unwrap();
        assert!(!dir.exists());
    }
}
