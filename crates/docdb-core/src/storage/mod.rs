//! The storage seam: every file operation of the engine goes through [`Storage`] and
//! [`StorageFile`], like SQLite's VFS or redb's `StorageBackend`.
//!
//! Production uses [`StdStorage`] (plain `std::fs`, private modes, positioned I/O).
//! Tests swap in backends that fail chosen calls or simulate a power cut (see
//! `testing`), so the engine's answers to a disk that says no can be checked
//! deterministically, call by call.
//!
//! The trait is small on purpose: positioned reads and writes, length, truncation,
//! data and full syncs on files; open, list, remove (files and empty directories),
//! rename, directory creation and directory sync, and an advisory lock on paths. Everything the engine needs is built
//! from these.

use std::any::Any;
use std::ffi::OsString;
use std::fmt;
use std::io;
use std::path::Path;
use std::sync::Arc;

mod fault;
mod power_loss;
mod std_fs;

pub use std_fs::StdStorage;

/// Backends for tests: [`testing::FaultStorage`] fails chosen calls,
/// [`testing::PowerLossStorage`] simulates a power cut.
#[doc(hidden)]
pub mod testing {
    pub use super::fault::*;
    pub use super::power_loss::{CutReport, PowerLossStorage, SECTOR};
}

/// How [`Storage::open`] opens a file.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OpenMode {
    /// An existing file, for reading only.
    Read,
    /// An existing file, for reading and writing.
    ReadWrite,
    /// Create a private (0600) file, or open the existing one keeping its contents;
    /// read and write.
    Create,
    /// Create a private (0600) file, emptying one that exists; read and write.
    CreateTruncate,
    /// Create a private (0600) file that must not exist yet; read and write.
    CreateNew,
}

/// What the engine needs from a file system.
pub trait Storage: Send + Sync + fmt::Debug {
    /// Opens `path`.
    fn open(&self, path: &Path, mode: OpenMode) -> io::Result<Arc<dyn StorageFile>>;

    /// Names of the entries of `dir` (files and directories), in no order.
    fn list(&self, dir: &Path) -> io::Result<Vec<OsString>>;

    /// The length of the file at `path` (following no symlink semantics beyond the
    /// platform's `metadata`).
    fn file_len(&self, path: &Path) -> io::Result<u64>;

    fn remove_file(&self, path: &Path) -> io::Result<()>;

    /// Removes the empty directory `dir` (its removal is durable once its parent is
    /// synced).
    fn remove_dir(&self, dir: &Path) -> io::Result<()>;

    /// Atomically renames `from` to `to`, replacing `to`.
    fn rename(&self, from: &Path, to: &Path) -> io::Result<()>;

    /// Creates `dir` and its missing parents, private (0700); narrows an existing
    /// directory that group or others can reach. Returns whether it narrowed one.
    fn create_dir(&self, dir: &Path) -> io::Result<bool>;

    /// Makes the creations, renames and removals of entries in `dir` durable.
    fn sync_dir(&self, dir: &Path) -> io::Result<()>;

    /// Takes an exclusive advisory lock on `path` (created if missing) for as long as
    /// the returned guard lives. Held by someone else: `ErrorKind::WouldBlock`.
    fn lock(&self, path: &Path) -> io::Result<LockGuard>;

    /// The whole contents of `path`.
    fn read(&self, path: &Path) -> io::Result<Vec<u8>> {
        let f = self.open(path, OpenMode::Read)?;
        let len = f.len()?;
        let mut buf = vec![0u8; usize::try_from(len).map_err(io::Error::other)?];
        f.read_exact_at(&mut buf, 0)?;
        Ok(buf)
    }

    /// Whether `path` exists (an error other than "not found" counts as existing, so a
    /// caller goes on to open it and reports the real error).
    fn exists(&self, path: &Path) -> bool {
        match self.file_len(path) {
            Ok(_) => true,
            Err(e) => e.kind() != io::ErrorKind::NotFound,
        }
    }
}

/// An open file. Positioned I/O only: there is no cursor to share or forget.
// `len` is a file size that can fail to be read, not a collection length.
#[allow(clippy::len_without_is_empty)]
pub trait StorageFile: Send + Sync + fmt::Debug {
    /// Reads up to `buf.len()` bytes at `offset`; fewer only at the end of the file.
    fn read_at(&self, buf: &mut [u8], offset: u64) -> io::Result<usize>;

    /// Writes up to `buf.len()` bytes at `offset`; returns how many were written.
    fn write_at(&self, buf: &[u8], offset: u64) -> io::Result<usize>;

    fn len(&self) -> io::Result<u64>;

    fn set_len(&self, len: u64) -> io::Result<()>;

    /// Makes the file's data (and the size, when it changed) durable: `fdatasync`.
    fn sync_data(&self) -> io::Result<()>;

    /// Makes the data and all metadata durable: `fsync`.
    fn sync_all(&self) -> io::Result<()>;

    /// Advisory: start writing back `len` bytes at `offset` now, without waiting
    /// (`sync_file_range(WRITE)`). Durability still needs a sync; failures are
    /// ignored.
    fn write_behind(&self, _offset: u64, _len: u64) {}

    /// Reads exactly `buf.len()` bytes at `offset` (`UnexpectedEof` if the file ends
    /// first).
    fn read_exact_at(&self, mut buf: &mut [u8], mut offset: u64) -> io::Result<()> {
        while !buf.is_empty() {
            match self.read_at(buf, offset) {
                Ok(0) => {
                    return Err(io::Error::new(
                        io::ErrorKind::UnexpectedEof,
                        "file ended before the bytes expected",
                    ))
                }
                Ok(n) => {
                    buf = &mut buf[n..];
                    offset += n as u64;
                }
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Err(e),
            }
        }
        Ok(())
    }

    /// Writes all of `buf` at `offset`.
    fn write_all_at(&self, mut buf: &[u8], mut offset: u64) -> io::Result<()> {
        while !buf.is_empty() {
            match self.write_at(buf, offset) {
                Ok(0) => {
                    return Err(io::Error::new(
                        io::ErrorKind::WriteZero,
                        "the file system wrote nothing",
                    ))
                }
                Ok(n) => {
                    buf = &buf[n..];
                    offset += n as u64;
                }
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Err(e),
            }
        }
        Ok(())
    }
}

/// Holds a [`Storage::lock`] until dropped.
pub struct LockGuard(#[allow(dead_code)] Box<dyn Any + Send + Sync>);

impl LockGuard {
    /// Wraps whatever keeps the lock held (an open file, a test token).
    pub fn new(holder: impl Any + Send + Sync) -> Self {
        LockGuard(Box::new(holder))
    }
}

impl fmt::Debug for LockGuard {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("LockGuard")
    }
}

/// The storage a database opens with when none is given: [`StdStorage`].
pub fn default_storage() -> Arc<dyn Storage> {
    Arc::new(StdStorage)
}

/// Removes `path`; one that does not exist is not an error.
pub(crate) fn remove_if_exists(storage: &dyn Storage, path: &Path) -> io::Result<()> {
    match storage.remove_file(path) {
        Err(e) if e.kind() != io::ErrorKind::NotFound => Err(e),
        _ => Ok(()),
    }
}

/// Writes `contents` to a new private file at `path` (replacing one that exists, so a
/// leftover with a wider mode is not reused), without a sync.
pub(crate) fn write_new(
    storage: &dyn Storage,
    path: &Path,
    contents: &[u8],
) -> io::Result<Arc<dyn StorageFile>> {
    remove_if_exists(storage, path)?;
    let f = storage.open(path, OpenMode::CreateNew)?;
    f.write_all_at(contents, 0)?;
    Ok(f)
}

/// Atomically replaces `path` with `contents`: a temp file `<path>.tmp` written and
/// synced, renamed over `path`, then the directory synced. After a crash at any point
/// `path` holds the old or the new contents, never a mix.
pub(crate) fn replace_file(storage: &dyn Storage, path: &Path, contents: &[u8]) -> io::Result<()> {
    let dir = path
        .parent()
        .ok_or_else(|| io::Error::other("file to replace has no parent directory"))?;
    let mut tmp = path.as_os_str().to_owned();
    tmp.push(".tmp");
    let tmp = Path::new(&tmp);
    write_new(storage, tmp, contents)?.sync_all()?;
    storage.rename(tmp, path)?;
    storage.sync_dir(dir)
}
