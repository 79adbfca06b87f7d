//! Appends record batches to the active WAL segment, rolls segments at the configured
//! size, and fsyncs. Owned by whoever holds the database's I/O lock (the group-commit
//! syncer, a checkpoint, a compaction); never touched concurrently.
//!
//! The segment is zero-filled ahead of the records (DECISIONS 21): an fdatasync after
//! an append that grows the file must also commit the file system's journal (new size,
//! new blocks), while one after overwriting blocks already written flushes only the
//! data — half the latency and less than half the CPU here. So when a batch would pass
//! the written-ahead space, the writer first writes zeros past it, in chunks that grow
//! with the segment (64 KiB up to 1 MiB, never past the segment's size), and the next
//! fsync makes them durable with the batch. Replay reads zeros where a record header
//! should be as the clean end of the log; continuing a segment, rolling past it and
//! closing the database truncate the zeros away. Records the shared log makes durable
//! ([`WalWriter::append_logged`]) get no zeros: this file's fsync comes only later.
//!
//! A roll that cannot create the next segment because the process has no file
//! descriptor left (EMFILE/ENFILE) is not a failure: the batch goes on the end of the
//! current segment, which grows past its size, and the roll is retried after
//! [`ROLL_RETRY`]. Only a real write or fsync error fails the append.

use std::io;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use super::segment::{encode_header, segment_path, HEADER_LEN};
use crate::fsutil::out_of_fds;
use crate::storage::{OpenMode, Storage, StorageFile};

/// How long after a roll failed for want of file descriptors it is tried again.
const ROLL_RETRY: Duration = Duration::from_millis(100);

/// A position in the log: segment number and byte offset in it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct WalPos {
    pub segment: u64,
    pub offset: u64,
}

pub(crate) struct WalWriter {
    storage: Arc<dyn Storage>,
    dir: PathBuf,
    segment: u64,
    file: Arc<dyn StorageFile>,
    /// End of the records written.
    len: u64,
    /// End of the file: `len` plus zeros written ahead.
    allocated: u64,
    max_len: u64,
    /// Set when a roll was put off for want of file descriptors: not retried before.
    roll_deferred_until: Option<Instant>,
}

impl WalWriter {
    /// Continues `segment` at `len` (everything past it was dropped by replay).
    pub(crate) fn open_existing(
        storage: Arc<dyn Storage>,
        dir: &Path,
        segment: u64,
        len: u64,
        max_len: u64,
    ) -> io::Result<Self> {
        let file = storage.open(&segment_path(dir, segment), OpenMode::ReadWrite)?;
        file.set_len(len)?;
        Ok(WalWriter {
            storage,
            dir: dir.to_path_buf(),
            segment,
            file,
            len,
            allocated: len,
            max_len,
            roll_deferred_until: None,
        })
    }

    /// Starts a fresh segment numbered `segment`.
    pub(crate) fn create(
        storage: Arc<dyn Storage>,
        dir: &Path,
        segment: u64,
        max_len: u64,
    ) -> io::Result<Self> {
        let file = new_segment(&*storage, dir, segment)?;
        Ok(WalWriter {
            storage,
            dir: dir.to_path_buf(),
            segment,
            file,
            len: HEADER_LEN,
            allocated: HEADER_LEN,
            max_len,
            roll_deferred_until: None,
        })
    }

    pub(crate) fn position(&self) -> WalPos {
        WalPos {
            segment: self.segment,
            offset: self.len,
        }
    }

    /// The active segment's file.
    pub(crate) fn file(&self) -> Arc<dyn StorageFile> {
        self.file.clone()
    }

    /// Appends whole records. Rolls to a new segment first when the active one is full,
    /// so a batch never straddles two segments. Returns where the records start.
    pub(crate) fn append(&mut self, bytes: &[u8]) -> io::Result<WalPos> {
        self.append_with(bytes, true)
    }

    /// [`WalWriter::append`] for records another log makes durable (the shared log):
    /// this file is fsynced only later (the log's trim, a roll, a close), so zeros
    /// written ahead would buy no cheaper fsync, only a second write of each block
    /// (DECISIONS 78).
    pub(crate) fn append_logged(&mut self, bytes: &[u8]) -> io::Result<WalPos> {
        self.append_with(bytes, false)
    }

    fn append_with(&mut self, bytes: &[u8], zero_fill: bool) -> io::Result<WalPos> {
        if self.len >= self.max_len && self.len > HEADER_LEN && self.roll_due() {
            match self.roll() {
                Ok(()) => self.roll_deferred_until = None,
                Err(e) if out_of_fds(&e) => {
                    // The current segment is intact and durable up to here: keep
                    // appending to it and roll when descriptors are free again.
                    if self.roll_deferred_until.is_none() {
                        tracing::warn!(dir = %self.dir.display(), segment = self.segment,
                            error = %e, "cannot start the next WAL segment; \
                            continuing the current one and retrying");
                    }
                    self.roll_deferred_until = Some(Instant::now() + ROLL_RETRY);
                }
                Err(e) => return Err(e),
            }
        }
        let end = self.len + bytes.len() as u64;
        if zero_fill && end > self.allocated {
            if let Err(e) = self.write_ahead(end) {
                // A nearly full disk (or a file-size limit) may have room for the
                // records but not for the zeros: append without them, and let the
                // records' own write decide.
                tracing::debug!(segment = self.segment, error = %e,
                    "could not zero-fill ahead of the WAL; appending without");
                self.allocated = self.file.len().unwrap_or(self.len).max(self.len);
            }
        }
        let at = self.position();
        self.file.write_all_at(bytes, self.len)?;
        self.len = end;
        // INVARIANT: `allocated >= len`. After a failed zero-fill `allocated` may lie
        // behind the records just written; zero-filling from there would overwrite
        // them (acknowledged records, once synced).
        self.allocated = self.allocated.max(end);
        Ok(at)
    }

    /// Zero-fills the file from its end to past `need`, so later appends overwrite
    /// written blocks (see the module comment).
    fn write_ahead(&mut self, need: u64) -> io::Result<()> {
        const MIN_CHUNK: u64 = 64 * 1024;
        const MAX_CHUNK: u64 = 1024 * 1024;
        static ZEROS: [u8; 64 * 1024] = [0; 64 * 1024];
        let chunk = self.len.clamp(MIN_CHUNK, MAX_CHUNK);
        let target = (need + chunk).min(self.max_len.max(need));
        // Never below `len`: what lies there is records, not zeros.
        let mut at = self.allocated.max(self.len);
        while at < target {
            let n = (target - at).min(ZEROS.len() as u64) as usize;
            self.file.write_all_at(&ZEROS[..n], at)?;
            at += n as u64;
        }
        self.allocated = target;
        Ok(())
    }

    /// Cuts the zeros written ahead, leaving the file exactly the records written.
    pub(crate) fn release_ahead(&mut self) -> io::Result<()> {
        if self.allocated > self.len {
            self.file.set_len(self.len)?;
            self.allocated = self.len;
        }
        Ok(())
    }

    /// Makes everything appended so far durable.
    pub(crate) fn sync(&self) -> io::Result<()> {
        self.file.sync_data()
    }

    fn roll_due(&self) -> bool {
        !matches!(self.roll_deferred_until, Some(at) if Instant::now() < at)
    }

    /// Ends the active segment (truncated to its records and fsynced) and starts the
    /// next one.
    pub(crate) fn roll(&mut self) -> io::Result<()> {
        // IMPORTANT: the old segment must be durable before records land in the next
        // one, or a power cut could keep a later batch and lose an earlier one.
        self.release_ahead()?;
        self.sync()?;
        let next = self.segment + 1;
        // INVARIANT: a failure here leaves `self` on the old segment, whole: at worst
        // the next one exists with only its header, which replay reads as empty and
        // the retry recreates.
        self.file = new_segment(&*self.storage, &self.dir, next)?;
        self.segment = next;
        self.len = HEADER_LEN;
        self.allocated = HEADER_LEN;
        Ok(())
    }
}

fn new_segment(
    storage: &dyn Storage,
    dir: &Path,
    segment: u64,
) -> io::Result<Arc<dyn StorageFile>> {
    let file = storage.open(&segment_path(dir, segment), OpenMode::CreateTruncate)?;
    file.write_all_at(&encode_header(segment), 0)?;
    file.sync_all()?;
    storage.sync_dir(dir)?;
    Ok(file)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::storage::default_storage;

    /// Records the shared log makes durable are appended with no zeros ahead (the file
    /// ends at the records); records this file's own fsync makes durable still get them,
    /// and the zeros start after the last record whichever kind came before.
    #[test]
    fn only_records_fsynced_here_are_zero_filled_ahead() {
        let dir = tempfile::tempdir().unwrap();
        let mut w = WalWriter::create(default_storage(), dir.path(), 1, 64 << 20).unwrap();
        let rec = [7u8; 1000];
        let file_len = |w: &WalWriter| w.file().len().unwrap();
        for _ in 0..3 {
            w.append_logged(&rec).unwrap();
        }
        assert_eq!(w.len, HEADER_LEN + 3000);
        assert_eq!(file_len(&w), w.len, "no zeros ahead of logged records");
        let at = w.append(&rec).unwrap();
        assert_eq!(at.offset, HEADER_LEN + 3000);
        assert!(
            file_len(&w) >= w.len + 64 * 1024,
            "zeros ahead of an own-fsync append"
        );
        let mut tail = vec![1u8; (file_len(&w) - w.len) as usize];
        w.file().read_exact_at(&mut tail, w.len).unwrap();
        assert!(
            tail.iter().all(|&b| b == 0),
            "what follows the records is zeros"
        );
        // A logged append into the zeroed space overwrites it; the file does not grow.
        let before = file_len(&w);
        w.append_logged(&rec).unwrap();
        assert_eq!(file_len(&w), before);
        let mut got = vec![0u8; 4000];
        w.file().read_exact_at(&mut got, HEADER_LEN).unwrap();
        assert!(
            got.iter().all(|&b| b == 7),
            "every record is where it was written"
        );
    }
}
