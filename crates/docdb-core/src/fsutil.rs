//! Private files and crash-safe file replacement, for the server's own files (catalog,
//! data-dir lock, summaries). The engine does its file I/O through
//! [`crate::storage`], whose `StdStorage` uses the helpers and modes here.
//!
//! Every file DocDB creates is mode 0600 and every directory 0700, whatever the process
//! umask: a data directory holds every tenant's documents in plain JSON, so no other
//! local user may read it. The modes are given at creation (never by changing the
//! process umask: the engine is also a library inside other programs).
//!
//! Replacement: write a temp file, fsync it, rename it over the target, fsync the
//! directory. After a crash at any point the target holds either the old or the new
//! contents, never a mix.

use std::fs::{self, DirBuilder, File, OpenOptions};
use std::io::{self, Write};
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt, PermissionsExt};
use std::path::Path;

/// Mode of every file DocDB creates.
pub const FILE_MODE: u32 = 0o600;
/// Mode of every directory DocDB creates.
pub const DIR_MODE: u32 = 0o700;

/// Options that create a file (if missing) with [`FILE_MODE`]; add the access flags.
pub fn private_file() -> OpenOptions {
    let mut o = OpenOptions::new();
    o.mode(FILE_MODE);
    o
}

/// Creates `dir` and its missing parents with [`DIR_MODE`]; an existing `dir` that
/// group or others can access is narrowed to [`DIR_MODE`]. Returns whether it was
/// narrowed (callers log that).
pub fn private_dir(dir: &Path) -> io::Result<bool> {
    DirBuilder::new()
        .recursive(true)
        .mode(DIR_MODE)
        .create(dir)?;
    let mode = fs::metadata(dir)?.permissions().mode();
    if mode & 0o077 == 0 {
        return Ok(false);
    }
    fs::set_permissions(dir, fs::Permissions::from_mode(DIR_MODE))?;
    Ok(true)
}

/// Writes `contents` to a new private file at `path` (replacing one that exists),
/// without fsync.
pub fn write_private(path: &Path, contents: &[u8]) -> io::Result<()> {
    remove_if_exists(path)?;
    private_file()
        .write(true)
        .create_new(true)
        .open(path)?
        .write_all(contents)
}

fn remove_if_exists(path: &Path) -> io::Result<()> {
    match fs::remove_file(path) {
        Err(e) if e.kind() != io::ErrorKind::NotFound => Err(e),
        _ => Ok(()),
    }
}

/// Whether `e` says the process (EMFILE) or the system (ENFILE) has no file descriptor
/// left. That is a transient shortage, not a failing disk: whatever needed a new file
/// can be retried later, and nothing already written is in doubt.
pub(crate) fn out_of_fds(e: &io::Error) -> bool {
    matches!(e.raw_os_error(), Some(libc::EMFILE | libc::ENFILE))
}

/// Makes a directory entry change (create, rename, unlink) durable.
pub fn sync_dir(dir: &Path) -> io::Result<()> {
    File::open(dir)?.sync_all()
}

/// Atomically replaces `path` with `contents` (a private file).
pub fn replace_file(path: &Path, contents: &[u8]) -> io::Result<()> {
    let dir = path
        .parent()
        .ok_or_else(|| io::Error::other("file to replace has no parent directory"))?;
    let mut tmp_name = path.as_os_str().to_owned();
    tmp_name.push(".tmp");
    let tmp = Path::new(&tmp_name);
    // A leftover temp file may have an older, wider mode: start afresh.
    remove_if_exists(tmp)?;
    {
        let mut f = private_file().write(true).create_new(true).open(tmp)?;
        f.write_all(contents)?;
        f.sync_all()?;
    }
    fs::rename(tmp, path)?;
    sync_dir(dir)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn replace_leaves_only_the_new_contents() {
        let d = tempfile::tempdir().unwrap();
        let p = d.path().join("meta");
        replace_file(&p, b"one").unwrap();
        replace_file(&p, b"two").unwrap();
        assert_eq!(fs::read(&p).unwrap(), b"two");
        assert!(!d.path().join("meta.tmp").exists());
        assert_eq!(
            fs::metadata(&p).unwrap().permissions().mode() & 0o777,
            0o600
        );
    }

    #[test]
    fn private_dir_creates_and_narrows() {
        let d = tempfile::tempdir().unwrap();
        let p = d.path().join("a/b");
        assert!(!private_dir(&p).unwrap());
        for q in [d.path().join("a"), p.clone()] {
            assert_eq!(
                fs::metadata(&q).unwrap().permissions().mode() & 0o777,
                0o700
            );
        }
        fs::set_permissions(&p, fs::Permissions::from_mode(0o755)).unwrap();
        assert!(private_dir(&p).unwrap());
        assert_eq!(
            fs::metadata(&p).unwrap().permissions().mode() & 0o777,
            0o700
        );
    }
}
