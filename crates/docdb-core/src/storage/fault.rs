//! [`FaultStorage`]: a test backend that wraps another [`Storage`] and makes chosen
//! calls fail, the way a failing, full or descriptor-starved system would.
//!
//! Every call is numbered (one counter across files and operations, from 1) and
//! classified by [`OpClass`] and by the [`FileKind`] its path names. Tests ask how many
//! calls of a kind a workload made, then rerun it with call N (or a class of calls)
//! failing with a chosen [`FaultKind`]. Deterministic: no randomness, one mutex.
//!
//! `write_behind` is advisory and cannot fail, so it is passed through uncounted.

use std::ffi::OsString;
use std::io;
use std::path::Path;
use std::sync::{Arc, Mutex, MutexGuard};

use super::{LockGuard, OpenMode, Storage, StorageFile};

/// What a call does.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum OpClass {
    Read,
    Write,
    /// `sync_data` and `sync_all`.
    Sync,
    SetLen,
    /// `len` of an open file and `file_len` of a path.
    Stat,
    /// Opening or creating a file.
    Open,
    List,
    Remove,
    Rename,
    CreateDir,
    SyncDir,
    Lock,
}

/// Which of the engine's files a call touches, from its path (a `.tmp` suffix is
/// ignored, so a checkpoint's or compaction's temp file counts as what it becomes;
/// a rename counts as its destination).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum FileKind {
    /// `*.wal`
    Wal,
    /// `*.data`
    Data,
    /// `CHECKPOINT`
    Checkpoint,
    /// Anything else: directories, `LOCK`, dropped WAL tails.
    Other,
}

impl FileKind {
    /// The kind of file `path` names.
    pub fn of(path: &Path) -> FileKind {
        let Some(name) = path.file_name().and_then(|n| n.to_str()) else {
            return FileKind::Other;
        };
        let name = name.strip_suffix(".tmp").unwrap_or(name);
        if name.ends_with(".wal") {
            FileKind::Wal
        } else if name.ends_with(".data") {
            FileKind::Data
        } else if name == "CHECKPOINT" {
            FileKind::Checkpoint
        } else {
            FileKind::Other
        }
    }
}

/// How a failing call fails.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum FaultKind {
    /// `EIO`: the device failed.
    Eio,
    /// `ENOSPC`: the file system is full.
    Enospc,
    /// `EMFILE`: the process has no file descriptor left.
    Emfile,
    /// A write stores a prefix of its bytes (half, rounded down to a multiple of 512)
    /// and then fails with `ENOSPC`. Other calls just fail with `ENOSPC`.
    ShortWrite,
}

impl FaultKind {
    /// Every kind, for loops.
    pub const ALL: [FaultKind; 4] = [
        FaultKind::Eio,
        FaultKind::Enospc,
        FaultKind::Emfile,
        FaultKind::ShortWrite,
    ];

    /// The error a failing call returns.
    pub fn error(self) -> io::Error {
        io::Error::from_raw_os_error(match self {
            FaultKind::Eio => libc::EIO,
            FaultKind::Enospc | FaultKind::ShortWrite => libc::ENOSPC,
            FaultKind::Emfile => libc::EMFILE,
        })
    }
}

/// One call as [`FaultStorage`] saw it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Call {
    /// Its number, from 1, across every file and operation.
    pub n: u64,
    pub class: OpClass,
    pub file: FileKind,
    /// Whether it was made to fail.
    pub failed: bool,
}

/// A rule: which calls fail, and how.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Fault {
    pub kind: FaultKind,
    /// Only calls with this global number (`None`: any).
    pub call: Option<u64>,
    /// Only calls of this class (`None`: any).
    pub class: Option<OpClass>,
    /// Only calls on this kind of file (`None`: any).
    pub file: Option<FileKind>,
    /// Matching calls let through before failing starts.
    pub skip: u64,
    /// Matching calls that fail after the skipped ones (`None`: every one).
    pub count: Option<u64>,
}

impl Fault {
    /// Fails call number `n` (counted from 1 since the storage was made).
    pub fn call(n: u64, kind: FaultKind) -> Fault {
        Fault {
            kind,
            call: Some(n),
            class: None,
            file: None,
            skip: 0,
            count: Some(1),
        }
    }

    /// Fails the next `n` calls of `class` (from when it is armed).
    pub fn first(class: OpClass, n: u64, kind: FaultKind) -> Fault {
        Fault {
            kind,
            call: None,
            class: Some(class),
            file: None,
            skip: 0,
            count: Some(n),
        }
    }

    /// Lets the next `n` calls of `class` through, then fails every later one.
    pub fn after(class: OpClass, n: u64, kind: FaultKind) -> Fault {
        Fault {
            kind,
            call: None,
            class: Some(class),
            file: None,
            skip: n,
            count: None,
        }
    }

    /// Lets the next `n` calls of `class` through and fails the one after them only.
    pub fn once_after(class: OpClass, n: u64, kind: FaultKind) -> Fault {
        Fault {
            skip: n,
            count: Some(1),
            ..Fault::first(class, 1, kind)
        }
    }

    /// Narrows the rule to calls on `file`.
    pub fn on(mut self, file: FileKind) -> Fault {
        self.file = Some(file);
        self
    }

    fn matches(&self, n: u64, class: OpClass, file: FileKind) -> bool {
        self.call.is_none_or(|c| c == n)
            && self.class.is_none_or(|c| c == class)
            && self.file.is_none_or(|f| f == file)
    }
}

#[derive(Debug, Default)]
struct State {
    next: u64,
    calls: Vec<Call>,
    faults: Vec<Fault>,
}

impl State {
    /// Numbers and records a call; the fault it must fail with, if any.
    fn tick(&mut self, class: OpClass, file: FileKind) -> Option<FaultKind> {
        self.next += 1;
        let n = self.next;
        let mut fail = None;
        for f in &mut self.faults {
            if !f.matches(n, class, file) {
                continue;
            }
            if f.skip > 0 {
                f.skip -= 1;
                continue;
            }
            match &mut f.count {
                Some(0) => continue,
                Some(c) => *c -= 1,
                None => {}
            }
            fail.get_or_insert(f.kind);
        }
        self.calls.push(Call {
            n,
            class,
            file,
            failed: fail.is_some(),
        });
        fail
    }
}

/// A [`Storage`] that counts every call and fails the ones its armed [`Fault`]s
/// select. Cheap to clone (shared state).
#[derive(Debug, Clone)]
pub struct FaultStorage {
    inner: Arc<dyn Storage>,
    state: Arc<Mutex<State>>,
}

impl FaultStorage {
    /// Wraps `inner`; nothing fails until a fault is armed.
    pub fn new(inner: Arc<dyn Storage>) -> FaultStorage {
        FaultStorage {
            inner,
            state: Arc::default(),
        }
    }

    /// Wraps the real file system.
    pub fn std() -> FaultStorage {
        FaultStorage::new(super::default_storage())
    }

    /// This storage as the engine takes it (`OpenOptions::storage`).
    pub fn handle(&self) -> Arc<dyn Storage> {
        Arc::new(self.clone())
    }

    fn state(&self) -> MutexGuard<'_, State> {
        // A test that panicked while holding the lock must not hide later results.
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Adds a rule. Calls matching several rules fail with the first one's kind (every
    /// matching rule still counts the call).
    pub fn arm(&self, fault: Fault) {
        self.state().faults.push(fault);
    }

    /// Shorthand for `arm(Fault::call(n, kind))`.
    pub fn fail_call(&self, n: u64, kind: FaultKind) {
        self.arm(Fault::call(n, kind));
    }

    /// Removes every rule: from now on every call goes through.
    pub fn disarm(&self) {
        self.state().faults.clear();
    }

    /// How many calls were made so far (the number of the last one).
    pub fn calls(&self) -> u64 {
        self.state().next
    }

    /// Every call so far, in order.
    pub fn log(&self) -> Vec<Call> {
        self.state().calls.clone()
    }

    /// Calls of `class` so far.
    pub fn count(&self, class: OpClass) -> u64 {
        self.state()
            .calls
            .iter()
            .filter(|c| c.class == class)
            .count() as u64
    }

    /// Calls of `class` on `file` so far ("how many WAL syncs happened").
    pub fn count_on(&self, class: OpClass, file: FileKind) -> u64 {
        self.state()
            .calls
            .iter()
            .filter(|c| c.class == class && c.file == file)
            .count() as u64
    }

    /// Calls that were made to fail so far.
    pub fn failures(&self) -> u64 {
        self.state().calls.iter().filter(|c| c.failed).count() as u64
    }

    fn check(&self, class: OpClass, file: FileKind) -> io::Result<()> {
        match self.state().tick(class, file) {
            Some(k) => Err(k.error()),
            None => Ok(()),
        }
    }
}

impl Storage for FaultStorage {
    fn open(&self, path: &Path, mode: OpenMode) -> io::Result<Arc<dyn StorageFile>> {
        let file = FileKind::of(path);
        self.check(OpClass::Open, file)?;
        Ok(Arc::new(FaultFile {
            inner: self.inner.open(path, mode)?,
            file,
            storage: self.clone(),
        }))
    }

    fn list(&self, dir: &Path) -> io::Result<Vec<OsString>> {
        self.check(OpClass::List, FileKind::of(dir))?;
        self.inner.list(dir)
    }

    fn file_len(&self, path: &Path) -> io::Result<u64> {
        self.check(OpClass::Stat, FileKind::of(path))?;
        self.inner.file_len(path)
    }

    fn remove_file(&self, path: &Path) -> io::Result<()> {
        self.check(OpClass::Remove, FileKind::of(path))?;
        self.inner.remove_file(path)
    }

    fn remove_dir(&self, dir: &Path) -> io::Result<()> {
        self.check(OpClass::Remove, FileKind::of(dir))?;
        self.inner.remove_dir(dir)
    }

    fn rename(&self, from: &Path, to: &Path) -> io::Result<()> {
        self.check(OpClass::Rename, FileKind::of(to))?;
        self.inner.rename(from, to)
    }

    fn create_dir(&self, dir: &Path) -> io::Result<bool> {
        self.check(OpClass::CreateDir, FileKind::of(dir))?;
        self.inner.create_dir(dir)
    }

    fn sync_dir(&self, dir: &Path) -> io::Result<()> {
        self.check(OpClass::SyncDir, FileKind::of(dir))?;
        self.inner.sync_dir(dir)
    }

    fn lock(&self, path: &Path) -> io::Result<LockGuard> {
        self.check(OpClass::Lock, FileKind::of(path))?;
        self.inner.lock(path)
    }
}

/// A file of [`FaultStorage`].
#[derive(Debug)]
struct FaultFile {
    inner: Arc<dyn StorageFile>,
    file: FileKind,
    storage: FaultStorage,
}

impl StorageFile for FaultFile {
    fn read_at(&self, buf: &mut [u8], offset: u64) -> io::Result<usize> {
        self.storage.check(OpClass::Read, self.file)?;
        self.inner.read_at(buf, offset)
    }

    fn write_at(&self, buf: &[u8], offset: u64) -> io::Result<usize> {
        let fault = self.storage.state().tick(OpClass::Write, self.file);
        match fault {
            None => self.inner.write_at(buf, offset),
            Some(FaultKind::ShortWrite) => {
                let keep = (buf.len() / 2) & !511;
                if keep > 0 {
                    self.inner.write_all_at(&buf[..keep], offset)?;
                }
                Err(FaultKind::ShortWrite.error())
            }
            Some(k) => Err(k.error()),
        }
    }

    fn len(&self) -> io::Result<u64> {
        self.storage.check(OpClass::Stat, self.file)?;
        self.inner.len()
    }

    fn set_len(&self, len: u64) -> io::Result<()> {
        self.storage.check(OpClass::SetLen, self.file)?;
        self.inner.set_len(len)
    }

    fn sync_data(&self) -> io::Result<()> {
        self.storage.check(OpClass::Sync, self.file)?;
        self.inner.sync_data()
    }

    fn sync_all(&self) -> io::Result<()> {
        self.storage.check(OpClass::Sync, self.file)?;
        self.inner.sync_all()
    }

    fn write_behind(&self, offset: u64, len: u64) {
        self.inner.write_behind(offset, len)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn raw(e: io::Error) -> Option<i32> {
        e.raw_os_error()
    }

    #[test]
    fn numbers_and_classifies_every_call() {
        let d = tempfile::tempdir().unwrap();
        let s = FaultStorage::std();
        let wal = d.path().join("00000000000000000001.wal");
        let f = s.open(&wal, OpenMode::CreateNew).unwrap();
        f.write_all_at(b"abc", 0).unwrap();
        f.sync_data().unwrap();
        f.sync_all().unwrap();
        let ck = d.path().join("CHECKPOINT.tmp");
        s.open(&ck, OpenMode::CreateNew)
            .unwrap()
            .sync_all()
            .unwrap();
        s.rename(&ck, &d.path().join("CHECKPOINT")).unwrap();
        s.sync_dir(d.path()).unwrap();
        assert_eq!(s.calls(), 8);
        assert_eq!(s.count(OpClass::Sync), 3);
        assert_eq!(s.count_on(OpClass::Sync, FileKind::Wal), 2);
        assert_eq!(s.count_on(OpClass::Sync, FileKind::Checkpoint), 1);
        assert_eq!(s.count_on(OpClass::Rename, FileKind::Checkpoint), 1);
        assert_eq!(s.count_on(OpClass::SyncDir, FileKind::Other), 1);
        let log = s.log();
        assert_eq!(log[0].class, OpClass::Open);
        assert_eq!(log[0].file, FileKind::Wal);
        assert_eq!(
            log.iter().map(|c| c.n).collect::<Vec<_>>(),
            (1..=8).collect::<Vec<_>>()
        );
        assert_eq!(s.failures(), 0);
        assert_eq!(FileKind::of(Path::new("/x/00001.data.tmp")), FileKind::Data);
        assert_eq!(FileKind::of(Path::new("/x/LOCK")), FileKind::Other);
    }

    #[test]
    fn fails_exactly_the_chosen_call_with_each_kind() {
        for kind in FaultKind::ALL {
            let d = tempfile::tempdir().unwrap();
            let s = FaultStorage::std();
            let p = d.path().join("1.data");
            let f = s.open(&p, OpenMode::CreateNew).unwrap(); // call 1
            s.fail_call(3, kind);
            f.write_all_at(&[7u8; 4096], 0).unwrap(); // call 2
            let e = f.write_all_at(&[8u8; 4096], 4096).unwrap_err(); // call 3
            let want = if kind == FaultKind::Emfile {
                libc::EMFILE
            } else if kind == FaultKind::Eio {
                libc::EIO
            } else {
                libc::ENOSPC
            };
            assert_eq!(raw(e), Some(want), "{kind:?}");
            f.write_all_at(&[9u8; 10], 9000).unwrap(); // call 4 goes through
            let bytes = std::fs::read(&p).unwrap();
            // A short write left its first half (2048 bytes) behind.
            let kept = if kind == FaultKind::ShortWrite {
                2048
            } else {
                0
            };
            assert!(bytes[4096..4096 + kept].iter().all(|&b| b == 8), "{kind:?}");
            assert!(bytes[4096 + kept..9000].iter().all(|&b| b == 0), "{kind:?}");
            assert_eq!(s.failures(), 1);
            assert!(s.log()[2].failed);
        }
    }

    #[test]
    fn first_after_and_file_filters() {
        let d = tempfile::tempdir().unwrap();
        let s = FaultStorage::std();
        let w = s
            .open(&d.path().join("1.wal"), OpenMode::CreateNew)
            .unwrap();
        let x = s
            .open(&d.path().join("1.data"), OpenMode::CreateNew)
            .unwrap();
        s.arm(Fault::first(OpClass::Sync, 2, FaultKind::Eio).on(FileKind::Wal));
        assert!(x.sync_data().is_ok(), "a data sync does not match");
        assert!(w.sync_data().is_err());
        assert!(w.sync_all().is_err());
        assert!(w.sync_data().is_ok(), "only the first two fail");
        s.disarm();
        s.arm(Fault::after(OpClass::Open, 1, FaultKind::Emfile));
        assert!(s.open(&d.path().join("2.wal"), OpenMode::Create).is_ok());
        for i in 3..6 {
            let e = s
                .open(&d.path().join(format!("{i}.wal")), OpenMode::Create)
                .unwrap_err();
            assert_eq!(raw(e), Some(libc::EMFILE));
        }
        s.disarm();
        assert!(s.open(&d.path().join("9.wal"), OpenMode::Create).is_ok());
        assert_eq!(s.failures(), 5);
    }
}
