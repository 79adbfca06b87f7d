//! [`PowerLossStorage`]: real files through [`StdStorage`], plus a simulated power cut
//! (in the spirit of LazyFS and SQLite's crash tests). For tests only.
//!
//! # The model
//! The backend remembers what a disk would still hold if the power went out now:
//! - per file, the length at its last `sync_data`/`sync_all` and, for every 512-byte
//!   sector written (or cut off by `set_len`, or emptied by `CreateTruncate`) since,
//!   that sector's synced content (captured the first time the sector changes);
//! - per directory, the entry changes since its last `sync_dir`, oldest first: files
//!   created, renamed into it (with the file a rename replaced, if any) and removed
//!   (with their content, so the removal can be undone).
//!
//! A cut then rewrites the real files to one state such a disk could hold:
//! - every synced byte is kept;
//! - each directory keeps a prefix of its unsynced entry changes (all, some, none); the
//!   rest is undone newest first: a created file vanishes, a rename goes back (the
//!   file's content follows it, and the file it replaced comes back), a removed file
//!   comes back. Syncing a file does not make its directory entry durable (on ext4 a
//!   new file whose directory was not synced may still vanish);
//! - each file whose length changed since its sync keeps the new length or goes back to
//!   the synced one;
//! - each unsynced sector is kept or reverted to its synced content (zeros where the
//!   file had no synced bytes), independently: a write may vanish, survive or be torn
//!   at any 512-byte boundary.
//!
//! [`PowerLossStorage::cut`] draws those choices from a seeded RNG (the same seed on the
//! same history gives the same disk); [`PowerLossStorage::cut_keep_nothing_unsynced`]
//! and [`PowerLossStorage::cut_keep_everything`] are the two extremes.
//!
//! After a cut, the machine that ran before it is dead: every file it opened and the
//! storage handle it used refuse all calls with an error (the database still holding
//! them fails its writes; nothing it does any more reaches the disk), and the locks it
//! held are released. [`PowerLossStorage::restart`] gives the handle of the next
//! machine, which reopens the database on what the cut left.
//!
//! Simplifications: the real files are never fsynced (the model, not the kernel, decides
//! what survives); directories made by `create_dir` are durable at once; a rename across
//! directories is recorded in the destination directory only; a removed file's content
//! is taken when it is removed (later writes through a handle still open on it are not
//! in it); a file that existed before the backend first saw it counts as synced.

use std::collections::{BTreeMap, HashMap};
use std::ffi::OsString;
use std::fs;
use std::io;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use parking_lot::Mutex;
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

use super::{LockGuard, OpenMode, StdStorage, Storage, StorageFile};

/// The unit a cut keeps or reverts: a write may be torn at any multiple of it.
pub const SECTOR: u64 = 512;

type FileId = u64;

/// A storage that can lose, at a simulated power cut, what was not synced. See the
/// module documentation for what a cut keeps.
#[derive(Debug)]
pub struct PowerLossStorage {
    disk: Arc<Disk>,
    /// The machine this handle belongs to: the number of cuts before it was made.
    machine: u64,
}

/// What a cut did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct CutReport {
    /// Unsynced directory entry changes that survived.
    pub entry_changes_kept: usize,
    /// Unsynced directory entry changes undone.
    pub entry_changes_undone: usize,
    /// Unsynced sectors that kept their new content.
    pub sectors_kept: usize,
    /// Unsynced sectors put back to their synced content.
    pub sectors_reverted: usize,
    /// Files whose length went back to the synced one.
    pub lengths_reverted: usize,
}

#[derive(Debug, Default)]
struct Disk {
    /// Number of cuts so far: the current machine.
    machine: AtomicU64,
    state: Mutex<State>,
}

#[derive(Debug, Default)]
struct State {
    next_id: FileId,
    /// The files the model knows, by their current path.
    names: BTreeMap<PathBuf, FileId>,
    files: HashMap<FileId, FileState>,
    /// Entry changes per directory since its last `sync_dir`, oldest first.
    dirs: BTreeMap<PathBuf, Vec<EntryChange>>,
    /// The real locks the current machine holds.
    locks: HashMap<u64, LockGuard>,
    next_lock: u64,
}

#[derive(Debug, Default)]
struct FileState {
    /// The length at the last sync.
    synced_len: u64,
    /// Sector number → its synced content (shorter than a sector where the synced file
    /// ended inside it; empty past its end).
    dirty: BTreeMap<u64, Vec<u8>>,
}

/// A file gone from a path, kept so that its removal can be undone.
#[derive(Debug)]
struct Gone {
    id: FileId,
    bytes: Vec<u8>,
}

#[derive(Debug)]
enum EntryChange {
    Created {
        path: PathBuf,
    },
    Renamed {
        from: PathBuf,
        to: PathBuf,
        id: FileId,
        replaced: Option<Gone>,
    },
    Removed {
        path: PathBuf,
        gone: Gone,
    },
}

fn dead() -> io::Error {
    io::Error::other("the power was cut: this handle belongs to the machine before the cut")
}

/// `a/./b/` → `a/b`, so the same path always has the same key.
fn norm(p: &Path) -> PathBuf {
    p.components().collect()
}

fn parent(p: &Path) -> PathBuf {
    p.parent().map(Path::to_path_buf).unwrap_or_default()
}

impl PowerLossStorage {
    /// A fresh model over the real file system; everything already on disk counts as
    /// synced.
    pub fn new() -> Arc<PowerLossStorage> {
        Arc::new(PowerLossStorage {
            disk: Arc::new(Disk::default()),
            machine: 0,
        })
    }

    /// The handle of the machine running now (after the last cut): reopen the database
    /// with it.
    pub fn restart(&self) -> Arc<PowerLossStorage> {
        Arc::new(PowerLossStorage {
            disk: self.disk.clone(),
            machine: self.disk.machine.load(Ordering::Acquire),
        })
    }

    /// Cuts the power: keeps or loses each unsynced change as drawn from `seed`.
    pub fn cut(&self, seed: u64) -> io::Result<CutReport> {
        self.cut_with(Chooser::Random(Box::new(StdRng::seed_from_u64(seed))))
    }

    /// Cuts the power losing everything not synced.
    pub fn cut_keep_nothing_unsynced(&self) -> io::Result<CutReport> {
        self.cut_with(Chooser::Nothing)
    }

    /// Cuts the power keeping everything (as a process crash would).
    pub fn cut_keep_everything(&self) -> io::Result<CutReport> {
        self.cut_with(Chooser::Everything)
    }

    fn alive(&self) -> io::Result<()> {
        if self.disk.machine.load(Ordering::Acquire) == self.machine {
            Ok(())
        } else {
            Err(dead())
        }
    }

    fn cut_with(&self, mut ch: Chooser) -> io::Result<CutReport> {
        let mut st = self.disk.state.lock();
        // The machine dies first: whatever follows, none of its handles reaches the disk
        // any more, and its locks go with it.
        self.disk.machine.fetch_add(1, Ordering::AcqRel);
        st.locks.clear();
        let mut report = CutReport::default();
        let dirs = std::mem::take(&mut st.dirs);
        for (_, changes) in dirs {
            let keep = ch.prefix(changes.len());
            report.entry_changes_kept += keep;
            report.entry_changes_undone += changes.len() - keep;
            for change in changes.into_iter().skip(keep).rev() {
                st.undo(change)?;
            }
        }
        let names = std::mem::take(&mut st.names);
        let files = std::mem::take(&mut st.files);
        for (path, id) in &names {
            if let Some(f) = files.get(id) {
                f.cut(path, &mut ch, &mut report)?;
            }
        }
        *st = State::default();
        Ok(report)
    }
}

/// Where a cut's choices come from.
enum Chooser {
    Random(Box<StdRng>),
    Nothing,
    Everything,
}

impl Chooser {
    fn keep(&mut self) -> bool {
        match self {
            Chooser::Random(r) => r.random_bool(0.5),
            Chooser::Nothing => false,
            Chooser::Everything => true,
        }
    }

    /// How many of `n` ordered changes survive.
    fn prefix(&mut self, n: usize) -> usize {
        match self {
            Chooser::Random(r) => r.random_range(0..=n),
            Chooser::Nothing => 0,
            Chooser::Everything => n,
        }
    }
}

impl State {
    fn new_file(&mut self, path: PathBuf, synced_len: u64) -> FileId {
        let id = self.next_id;
        self.next_id += 1;
        self.names.insert(path, id);
        self.files.insert(
            id,
            FileState {
                synced_len,
                dirty: BTreeMap::new(),
            },
        );
        id
    }

    /// The model's file at `path`, registering a file it has not seen (as synced).
    fn id_of(&mut self, path: &Path) -> io::Result<FileId> {
        match self.names.get(path) {
            Some(&id) => Ok(id),
            None => {
                let len = fs::metadata(path)?.len();
                Ok(self.new_file(path.to_path_buf(), len))
            }
        }
    }

    fn file(&mut self, id: FileId) -> io::Result<&mut FileState> {
        self.files
            .get_mut(&id)
            .ok_or_else(|| io::Error::other("power-loss storage: file not in the model"))
    }

    fn record(&mut self, dir: PathBuf, change: EntryChange) {
        self.dirs.entry(dir).or_default().push(change);
    }

    fn undo(&mut self, change: EntryChange) -> io::Result<()> {
        match change {
            EntryChange::Created { path } => {
                match fs::remove_file(&path) {
                    Ok(()) => {}
                    Err(e) if e.kind() == io::ErrorKind::NotFound => {}
                    Err(e) => return Err(e),
                }
                self.names.remove(&path);
            }
            EntryChange::Renamed {
                from,
                to,
                id,
                replaced,
            } => {
                fs::rename(&to, &from)?;
                self.names.remove(&to);
                self.names.insert(from, id);
                if let Some(gone) = replaced {
                    restore(&to, &gone.bytes)?;
                    self.names.insert(to, gone.id);
                }
            }
            EntryChange::Removed { path, gone } => {
                restore(&path, &gone.bytes)?;
                self.names.insert(path, gone.id);
            }
        }
        Ok(())
    }
}

/// Puts a removed or replaced file back at `path`.
fn restore(path: &Path, bytes: &[u8]) -> io::Result<()> {
    let f = StdStorage.open(path, OpenMode::CreateTruncate)?;
    f.write_all_at(bytes, 0)
}

impl FileState {
    /// Remembers the synced content of every sector of `start..end` not yet changed
    /// since the sync. `len` is the file's length now.
    fn capture(&mut self, f: &dyn StorageFile, start: u64, end: u64, len: u64) -> io::Result<()> {
        if end <= start {
            return Ok(());
        }
        let (first, last) = (start / SECTOR, (end - 1) / SECTOR);
        if (first..=last).all(|s| self.dirty.contains_key(&s)) {
            return Ok(());
        }
        // One read for the whole span (a sector at a time made the matrix test slow).
        let from = first * SECTOR;
        let to = ((last + 1) * SECTOR).min(len);
        let mut span = vec![0u8; to.saturating_sub(from) as usize];
        f.read_exact_at(&mut span, from)?;
        for s in first..=last {
            if self.dirty.contains_key(&s) {
                continue;
            }
            let a = s * SECTOR;
            let b = (a + SECTOR).min(len);
            let old = if b > a {
                span[(a - from) as usize..(b - from) as usize].to_vec()
            } else {
                Vec::new()
            };
            self.dirty.insert(s, old);
        }
        Ok(())
    }

    /// Rewrites the real file at `path` to what the cut keeps of it.
    fn cut(&self, path: &Path, ch: &mut Chooser, report: &mut CutReport) -> io::Result<()> {
        let f = StdStorage.open(path, OpenMode::ReadWrite)?;
        let now = f.len()?;
        let len = if now == self.synced_len || ch.keep() {
            now
        } else {
            report.lengths_reverted += 1;
            self.synced_len
        };
        for (&s, old) in &self.dirty {
            let a = s * SECTOR;
            if a >= len {
                continue;
            }
            if ch.keep() {
                report.sectors_kept += 1;
                continue;
            }
            report.sectors_reverted += 1;
            let mut sector = vec![0u8; ((a + SECTOR).min(len) - a) as usize];
            let n = old.len().min(sector.len());
            sector[..n].copy_from_slice(&old[..n]);
            f.write_all_at(&sector, a)?;
        }
        f.set_len(len)
    }
}

impl Storage for PowerLossStorage {
    fn open(&self, path: &Path, mode: OpenMode) -> io::Result<Arc<dyn StorageFile>> {
        let path = norm(path);
        let mut st = self.disk.state.lock();
        self.alive()?;
        let known = st.names.get(&path).copied();
        let existed = known.is_some() || fs::symlink_metadata(&path).is_ok();
        // Truncation is an unsynced change like any other: done below, through the model.
        let real_mode = match mode {
            OpenMode::CreateTruncate => OpenMode::Create,
            m => m,
        };
        let inner = StdStorage.open(&path, real_mode)?;
        let id = match known {
            Some(id) => id,
            None if existed => {
                let len = inner.len()?;
                st.new_file(path.clone(), len)
            }
            None => {
                let id = st.new_file(path.clone(), 0);
                st.record(parent(&path), EntryChange::Created { path: path.clone() });
                id
            }
        };
        let file = PowerLossFile {
            disk: self.disk.clone(),
            machine: self.machine,
            id,
            inner,
        };
        if mode == OpenMode::CreateTruncate {
            file.set_len_locked(&mut st, 0)?;
        }
        Ok(Arc::new(file))
    }

    fn list(&self, dir: &Path) -> io::Result<Vec<OsString>> {
        self.alive()?;
        StdStorage.list(dir)
    }

    fn file_len(&self, path: &Path) -> io::Result<u64> {
        self.alive()?;
        StdStorage.file_len(path)
    }

    fn remove_file(&self, path: &Path) -> io::Result<()> {
        let path = norm(path);
        let mut st = self.disk.state.lock();
        self.alive()?;
        let id = st.id_of(&path)?;
        let bytes = fs::read(&path)?;
        fs::remove_file(&path)?;
        st.names.remove(&path);
        st.record(
            parent(&path),
            EntryChange::Removed {
                path,
                gone: Gone { id, bytes },
            },
        );
        Ok(())
    }

    /// The model keeps no directory entries of directories: only an empty directory
    /// whose own entry changes are synced may go (a cut could not put back files into
    /// a directory that no longer exists).
    fn remove_dir(&self, dir: &Path) -> io::Result<()> {
        let dir = norm(dir);
        let st = self.disk.state.lock();
        self.alive()?;
        if st.dirs.get(&dir).is_some_and(|c| !c.is_empty()) {
            return Err(io::Error::other(format!(
                "{}: removing a directory with unsynced entry changes",
                dir.display()
            )));
        }
        fs::remove_dir(&dir)
    }

    fn rename(&self, from: &Path, to: &Path) -> io::Result<()> {
        let (from, to) = (norm(from), norm(to));
        let mut st = self.disk.state.lock();
        self.alive()?;
        if from == to {
            return StdStorage.rename(&from, &to);
        }
        let id = st.id_of(&from)?;
        let replaced = if st.names.contains_key(&to) || fs::symlink_metadata(&to).is_ok() {
            let rid = st.id_of(&to)?;
            Some(Gone {
                id: rid,
                bytes: fs::read(&to)?,
            })
        } else {
            None
        };
        fs::rename(&from, &to)?;
        st.names.remove(&from);
        st.names.insert(to.clone(), id);
        st.record(
            parent(&to),
            EntryChange::Renamed {
                from,
                to,
                id,
                replaced,
            },
        );
        Ok(())
    }

    fn create_dir(&self, dir: &Path) -> io::Result<bool> {
        self.alive()?;
        StdStorage.create_dir(dir)
    }

    fn sync_dir(&self, dir: &Path) -> io::Result<()> {
        let dir = norm(dir);
        let mut st = self.disk.state.lock();
        self.alive()?;
        // The real directory is not synced: the model decides what a cut keeps.
        fs::metadata(&dir)?;
        st.dirs.remove(&dir);
        Ok(())
    }

    fn lock(&self, path: &Path) -> io::Result<LockGuard> {
        let mut st = self.disk.state.lock();
        self.alive()?;
        let real = StdStorage.lock(path)?;
        let id = st.next_lock;
        st.next_lock += 1;
        st.locks.insert(id, real);
        Ok(LockGuard::new(LockToken {
            disk: self.disk.clone(),
            machine: self.machine,
            id,
        }))
    }
}

/// Holds a real lock kept in the model, so that a cut can release it.
struct LockToken {
    disk: Arc<Disk>,
    machine: u64,
    id: u64,
}

impl Drop for LockToken {
    fn drop(&mut self) {
        let mut st = self.disk.state.lock();
        if self.disk.machine.load(Ordering::Acquire) == self.machine {
            st.locks.remove(&self.id);
        }
    }
}

/// A file of [`PowerLossStorage`].
#[derive(Debug)]
struct PowerLossFile {
    disk: Arc<Disk>,
    machine: u64,
    id: FileId,
    inner: Arc<dyn StorageFile>,
}

impl PowerLossFile {
    fn alive(&self) -> io::Result<()> {
        if self.disk.machine.load(Ordering::Acquire) == self.machine {
            Ok(())
        } else {
            Err(dead())
        }
    }

    fn set_len_locked(&self, st: &mut State, len: u64) -> io::Result<()> {
        let now = self.inner.len()?;
        if len < now {
            st.file(self.id)?.capture(&*self.inner, len, now, now)?;
        }
        self.inner.set_len(len)
    }

    fn sync(&self) -> io::Result<()> {
        let mut st = self.disk.state.lock();
        self.alive()?;
        let len = self.inner.len()?;
        let f = st.file(self.id)?;
        f.dirty.clear();
        f.synced_len = len;
        Ok(())
    }
}

impl StorageFile for PowerLossFile {
    fn read_at(&self, buf: &mut [u8], offset: u64) -> io::Result<usize> {
        self.alive()?;
        self.inner.read_at(buf, offset)
    }

    fn write_at(&self, buf: &[u8], offset: u64) -> io::Result<usize> {
        let mut st = self.disk.state.lock();
        self.alive()?;
        if buf.is_empty() {
            return Ok(0);
        }
        let len = self.inner.len()?;
        st.file(self.id)?.capture(
            &*self.inner,
            offset,
            offset.saturating_add(buf.len() as u64),
            len,
        )?;
        self.inner.write_at(buf, offset)
    }

    fn len(&self) -> io::Result<u64> {
        self.alive()?;
        self.inner.len()
    }

    fn set_len(&self, len: u64) -> io::Result<()> {
        let mut st = self.disk.state.lock();
        self.alive()?;
        self.set_len_locked(&mut st, len)
    }

    fn sync_data(&self) -> io::Result<()> {
        self.sync()
    }

    fn sync_all(&self) -> io::Result<()> {
        self.sync()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const S: usize = SECTOR as usize;

    /// A synced file `name` in `dir` (directory synced too) holding `bytes`.
    fn synced(s: &PowerLossStorage, dir: &Path, name: &str, bytes: &[u8]) -> Arc<dyn StorageFile> {
        let f = s.open(&dir.join(name), OpenMode::CreateNew).unwrap();
        f.write_all_at(bytes, 0).unwrap();
        f.sync_data().unwrap();
        s.sync_dir(dir).unwrap();
        f
    }

    #[test]
    fn synced_bytes_survive_and_unsynced_ones_go_only_when_the_cut_says_so() {
        for keep_all in [false, true] {
            let d = tempfile::tempdir().unwrap();
            let s = PowerLossStorage::new();
            let f = synced(&s, d.path(), "f", b"synced");
            f.write_all_at(b" and not", 6).unwrap();
            f.write_all_at(b"S", 0).unwrap();
            let r = if keep_all {
                s.cut_keep_everything().unwrap()
            } else {
                s.cut_keep_nothing_unsynced().unwrap()
            };
            let got = fs::read(d.path().join("f")).unwrap();
            if keep_all {
                assert_eq!(got, b"Synced and not");
                assert_eq!(r.sectors_reverted, 0);
            } else {
                assert_eq!(got, b"synced");
                assert_eq!(r.lengths_reverted, 1);
            }
        }
    }

    #[test]
    fn an_unsynced_write_is_torn_at_sector_boundaries_as_the_seed_says() {
        let run = |seed: u64| {
            let d = tempfile::tempdir().unwrap();
            let s = PowerLossStorage::new();
            let f = synced(&s, d.path(), "f", &[0xAA; 8 * S]);
            f.write_all_at(&[0xBB; 8 * S], 0).unwrap();
            let r = s.cut(seed).unwrap();
            (fs::read(d.path().join("f")).unwrap(), r)
        };
        let (got, r) = run(7);
        assert_eq!(got.len(), 8 * S);
        // Each sector is wholly old or wholly new: torn only at 512-byte boundaries.
        let kept: Vec<bool> = got
            .chunks(S)
            .map(|c| {
                assert!(c.iter().all(|&b| b == c[0]), "a sector was torn inside");
                c[0] == 0xBB
            })
            .collect();
        assert!(
            kept.contains(&true) && kept.contains(&false),
            "seed 7 tears: {kept:?}"
        );
        assert_eq!(r.sectors_kept + r.sectors_reverted, 8);
        assert_eq!(r.sectors_kept, kept.iter().filter(|&&k| k).count());
        // The same seed on the same history gives the same disk.
        assert_eq!(run(7).0, got);
    }

    #[test]
    fn a_write_past_the_end_and_an_unsynced_set_len_may_revert() {
        let d = tempfile::tempdir().unwrap();
        let s = PowerLossStorage::new();
        let f = synced(&s, d.path(), "grow", &[1; 100]);
        f.write_all_at(&[2; 10], 3000).unwrap();
        let g = synced(&s, d.path(), "shrink", &[3; 2000]);
        g.set_len(10).unwrap();
        g.write_all_at(&[4; 5], 5).unwrap();
        s.cut_keep_nothing_unsynced().unwrap();
        assert_eq!(fs::read(d.path().join("grow")).unwrap(), [1; 100]);
        assert_eq!(fs::read(d.path().join("shrink")).unwrap(), [3; 2000]);

        // Length kept but data lost: the file's unsynced part reads as zeros.
        let d = tempfile::tempdir().unwrap();
        let s = PowerLossStorage::new();
        let f = synced(&s, d.path(), "grow", &[1; 100]);
        f.write_all_at(&[2; 10], 3000).unwrap();
        let seen: Vec<Vec<u8>> = (0..16)
            .map(|seed| {
                let d2 = tempfile::tempdir().unwrap();
                let s2 = PowerLossStorage::new();
                let f2 = synced(&s2, d2.path(), "grow", &[1; 100]);
                f2.write_all_at(&[2; 10], 3000).unwrap();
                s2.cut(seed).unwrap();
                fs::read(d2.path().join("grow")).unwrap()
            })
            .collect();
        for got in &seen {
            assert!(got.len() == 100 || got.len() == 3010, "{}", got.len());
            assert_eq!(got[..100], [1; 100]);
            assert!(got[100..got.len().min(3000)].iter().all(|&b| b == 0));
        }
        assert!(seen.iter().any(|g| g.len() == 100) && seen.iter().any(|g| g.len() == 3010));
        drop((f, s));
    }

    #[test]
    fn truncating_open_loses_the_old_content_only_once_synced() {
        let d = tempfile::tempdir().unwrap();
        let s = PowerLossStorage::new();
        synced(&s, d.path(), "f", b"old content");
        let f = s
            .open(&d.path().join("f"), OpenMode::CreateTruncate)
            .unwrap();
        f.write_all_at(b"new", 0).unwrap();
        assert_eq!(fs::read(d.path().join("f")).unwrap(), b"new");
        s.cut_keep_nothing_unsynced().unwrap();
        assert_eq!(fs::read(d.path().join("f")).unwrap(), b"old content");

        let s = s.restart();
        let f = s
            .open(&d.path().join("f"), OpenMode::CreateTruncate)
            .unwrap();
        f.write_all_at(b"new", 0).unwrap();
        f.sync_data().unwrap();
        s.cut_keep_nothing_unsynced().unwrap();
        assert_eq!(fs::read(d.path().join("f")).unwrap(), b"new");
    }

    #[test]
    fn a_synced_file_whose_directory_was_not_synced_may_vanish() {
        let d = tempfile::tempdir().unwrap();
        let s = PowerLossStorage::new();
        let f = s.open(&d.path().join("new"), OpenMode::CreateNew).unwrap();
        f.write_all_at(b"data", 0).unwrap();
        f.sync_all().unwrap();
        let r = s.cut_keep_nothing_unsynced().unwrap();
        assert!(!d.path().join("new").exists());
        assert_eq!(r.entry_changes_undone, 1);

        let s = s.restart();
        let f = s.open(&d.path().join("new"), OpenMode::CreateNew).unwrap();
        f.write_all_at(b"data", 0).unwrap();
        s.sync_dir(d.path()).unwrap();
        // The entry is durable, its data is not: an empty file (ext4's classic).
        s.cut_keep_nothing_unsynced().unwrap();
        assert_eq!(fs::read(d.path().join("new")).unwrap(), b"");
    }

    #[test]
    fn an_undone_rename_brings_back_the_file_it_replaced() {
        let d = tempfile::tempdir().unwrap();
        let (tmp, dst) = (d.path().join("CHECKPOINT.tmp"), d.path().join("CHECKPOINT"));
        let s = PowerLossStorage::new();
        synced(&s, d.path(), "CHECKPOINT", b"old");
        synced(&s, d.path(), "CHECKPOINT.tmp", b"new");
        s.rename(&tmp, &dst).unwrap();
        assert_eq!(fs::read(&dst).unwrap(), b"new");
        s.cut_keep_nothing_unsynced().unwrap();
        // The content followed the name back.
        assert_eq!(fs::read(&dst).unwrap(), b"old");
        assert_eq!(fs::read(&tmp).unwrap(), b"new");

        let s = s.restart();
        s.rename(&tmp, &dst).unwrap();
        s.sync_dir(d.path()).unwrap();
        s.cut_keep_nothing_unsynced().unwrap();
        assert_eq!(fs::read(&dst).unwrap(), b"new");
        assert!(!tmp.exists());
    }

    #[test]
    fn an_unsynced_removal_may_be_undone_and_random_cuts_keep_a_prefix() {
        let d = tempfile::tempdir().unwrap();
        let s = PowerLossStorage::new();
        let f = synced(&s, d.path(), "seg1", b"segment one");
        s.remove_file(&d.path().join("seg1")).unwrap();
        assert!(f.len().is_ok(), "a handle on a removed file still works");
        s.cut_keep_nothing_unsynced().unwrap();
        assert_eq!(fs::read(d.path().join("seg1")).unwrap(), b"segment one");

        // create a, create b, remove a: a cut keeps a prefix of these, so "b exists"
        // implies "a was created", and "a is gone" implies "b exists".
        let mut states = std::collections::BTreeSet::new();
        for seed in 0..32 {
            let d = tempfile::tempdir().unwrap();
            let s = PowerLossStorage::new();
            for n in ["a", "b"] {
                let f = s.open(&d.path().join(n), OpenMode::CreateNew).unwrap();
                f.write_all_at(n.as_bytes(), 0).unwrap();
                f.sync_data().unwrap();
            }
            s.remove_file(&d.path().join("a")).unwrap();
            s.cut(seed).unwrap();
            let a = d.path().join("a").exists();
            let b = d.path().join("b").exists();
            states.insert((a, b));
        }
        // Prefixes: none (no a, no b), [a], [a, b], [a, b, remove a].
        assert_eq!(
            states,
            [(false, false), (true, false), (true, true), (false, true)].into()
        );
    }

    #[test]
    fn handles_of_the_machine_before_the_cut_refuse_and_its_locks_are_released() {
        let d = tempfile::tempdir().unwrap();
        let s = PowerLossStorage::new();
        let _lock = s.lock(&d.path().join("LOCK")).unwrap();
        let f = synced(&s, d.path(), "f", b"x");
        s.cut_keep_everything().unwrap();
        assert!(f.write_at(b"y", 0).is_err());
        assert!(f.read_at(&mut [0u8; 1], 0).is_err());
        assert!(f.sync_data().is_err());
        assert!(s.open(&d.path().join("g"), OpenMode::Create).is_err());
        assert!(s.remove_file(&d.path().join("f")).is_err());
        assert!(!d.path().join("g").exists());

        let s2 = s.restart();
        let _lock2 = s2.lock(&d.path().join("LOCK")).unwrap();
        assert_eq!(s2.read(&d.path().join("f")).unwrap(), b"x");
        // The dead machine's lock guard dropping later does not free the new one.
        drop(_lock);
        assert_eq!(
            StdStorage.lock(&d.path().join("LOCK")).unwrap_err().kind(),
            io::ErrorKind::WouldBlock
        );
    }

    #[derive(Debug, Clone)]
    enum Op {
        Write(u64, usize, u8),
        SetLen(u64),
        Sync,
    }

    fn op() -> impl proptest::strategy::Strategy<Value = Op> {
        use proptest::prelude::*;
        prop_oneof![
            4 => (0u64..4096, 1usize..1500, any::<u8>()).prop_map(|(o, n, b)| Op::Write(o, n, b)),
            1 => (0u64..5000).prop_map(Op::SetLen),
            1 => Just(Op::Sync),
        ]
    }

    proptest::proptest! {
        #![proptest_config(proptest::prelude::ProptestConfig::with_cases(64))]

        /// Whatever the history, after a random cut the file has its synced length or
        /// its latest, and each sector holds its synced or its latest content.
        #[test]
        fn each_sector_is_synced_or_latest_after_a_random_cut(
            ops in proptest::collection::vec(op(), 1..24),
            seed in 0u64..1000,
        ) {
            let d = tempfile::tempdir().unwrap();
            let s = PowerLossStorage::new();
            let f = synced(&s, d.path(), "f", &[7; 700]);
            let (mut durable, mut latest) = (vec![7u8; 700], vec![7u8; 700]);
            for op in &ops {
                match *op {
                    Op::Write(o, n, b) => {
                        f.write_all_at(&vec![b; n], o).unwrap();
                        let end = o as usize + n;
                        if latest.len() < end {
                            latest.resize(end, 0);
                        }
                        latest[o as usize..end].fill(b);
                    }
                    Op::SetLen(l) => {
                        f.set_len(l).unwrap();
                        latest.resize(l as usize, 0);
                    }
                    Op::Sync => {
                        f.sync_data().unwrap();
                        durable = latest.clone();
                    }
                }
            }
            s.cut(seed).unwrap();
            let got = fs::read(d.path().join("f")).unwrap();
            proptest::prop_assert!(got.len() == durable.len() || got.len() == latest.len());
            let sector = |v: &[u8], a: usize| -> Vec<u8> {
                let mut x: Vec<u8> = v.get(a..).unwrap_or(&[]).iter().take(S).copied().collect();
                x.resize((got.len() - a).min(S), 0);
                x
            };
            for a in (0..got.len()).step_by(S) {
                let g = &got[a..(a + S).min(got.len())];
                proptest::prop_assert!(
                    g == sector(&durable, a) || g == sector(&latest, a),
                    "sector at {} is neither synced nor latest", a
                );
            }
        }
    }
}
