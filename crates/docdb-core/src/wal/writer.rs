//! Appends record batches to the active WAL segment, rolls segments at the configured
//! size, and fsyncs. Owned by whoever holds the database's I/O lock (the group-commit
//! syncer, a checkpoint, a compaction); never touched concurrently.

use std::fs::{File, OpenOptions};
use std::io::{self, Write};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use super::segment::{encode_header, segment_path, HEADER_LEN};
use crate::faults::Faults;
use crate::fsutil::sync_dir;

/// A position in the log: segment number and byte offset in it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct WalPos {
    pub segment: u64,
    pub offset: u64,
}

pub(crate) struct WalWriter {
    dir: PathBuf,
    segment: u64,
    file: File,
    len: u64,
    max_len: u64,
    faults: Option<Arc<Faults>>,
}

impl WalWriter {
    /// Continues `segment` at `len` (everything past it was dropped by replay).
    pub(crate) fn open_existing(
        dir: &Path,
        segment: u64,
        len: u64,
        max_len: u64,
        faults: Option<Arc<Faults>>,
    ) -> io::Result<Self> {
        let file = OpenOptions::new()
            .write(true)
            .open(segment_path(dir, segment))?;
        file.set_len(len)?;
        let mut w = WalWriter {
            dir: dir.to_path_buf(),
            segment,
            file,
            len,
            max_len,
            faults,
        };
        w.seek_end()?;
        Ok(w)
    }

    /// Starts a fresh segment numbered `segment`.
    pub(crate) fn create(
        dir: &Path,
        segment: u64,
        max_len: u64,
        faults: Option<Arc<Faults>>,
    ) -> io::Result<Self> {
        let file = new_segment(dir, segment)?;
        Ok(WalWriter {
            dir: dir.to_path_buf(),
            segment,
            file,
            len: HEADER_LEN,
            max_len,
            faults,
        })
    }

    fn seek_end(&mut self) -> io::Result<()> {
        use std::io::Seek;
        self.file.seek(io::SeekFrom::Start(self.len))?;
        Ok(())
    }

    pub(crate) fn position(&self) -> WalPos {
        WalPos {
            segment: self.segment,
            offset: self.len,
        }
    }

    /// Appends whole records. Rolls to a new segment first when the active one is full,
    /// so a batch never straddles two segments.
    pub(crate) fn append(&mut self, bytes: &[u8]) -> io::Result<()> {
        if self.len >= self.max_len && self.len > HEADER_LEN {
            self.roll()?;
        }
        Faults::on_write(&self.faults)?;
        self.file.write_all(bytes)?;
        self.len += bytes.len() as u64;
        Ok(())
    }

    /// Makes everything appended so far durable.
    pub(crate) fn sync(&mut self) -> io::Result<()> {
        Faults::on_sync(&self.faults)?;
        self.file.sync_data()
    }

    fn roll(&mut self) -> io::Result<()> {
        // IMPORTANT: the old segment must be durable before records land in the next
        // one, or a power cut could keep a later batch and lose an earlier one.
        self.sync()?;
        let next = self.segment + 1;
        self.file = new_segment(&self.dir, next)?;
        self.segment = next;
        self.len = HEADER_LEN;
        Ok(())
    }
}

fn new_segment(dir: &Path, segment: u64) -> io::Result<File> {
    let path = segment_path(dir, segment);
    let mut file = OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .open(&path)?;
    file.write_all(&encode_header(segment))?;
    file.sync_all()?;
    sync_dir(dir)?;
    Ok(file)
}
