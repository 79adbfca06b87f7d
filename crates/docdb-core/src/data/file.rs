//! One data file generation: `data/<generation, 20 digits>.data`, a header followed by
//! records (see `record.rs`). Appends come from the single group-commit syncer;
//! reads are positioned (`pread`) and take no lock, so readers never wait for writers.
//!
//! ```text
//! header := magic "DOCDBDAT"  version:u32(=1)  generation:u64  crc:u32 (crc32c of the 20 bytes before)
//! ```

use std::io;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use super::record::{decode_header, payload_ok, Header, HeaderError, FIXED, MAGIC};
use crate::codec::Reader;
use crate::storage::{OpenMode, Storage, StorageFile};

const FILE_MAGIC: &[u8; 8] = b"DOCDBDAT";
const VERSION: u32 = 1;
pub(crate) const HEADER_LEN: u64 = 24;

/// Bytes appended between two starts of write-back (see [`DataFile::write_behind`]).
const WRITE_BEHIND: u64 = 1024 * 1024;

pub(crate) fn data_path(dir: &Path, generation: u64) -> PathBuf {
    dir.join(format!("{generation:020}.data"))
}

/// Generations of data files present in `dir`.
pub(crate) fn list_generations(storage: &dyn Storage, dir: &Path) -> io::Result<Vec<u64>> {
    let mut out = Vec::new();
    for name in storage.list(dir)? {
        if let Some(n) = name.to_str().and_then(|n| n.strip_suffix(".data")) {
            if let (20, Ok(g)) = (n.len(), n.parse::<u64>()) {
                out.push(g);
            }
        }
    }
    out.sort_unstable();
    Ok(out)
}

fn encode_file_header(generation: u64) -> [u8; HEADER_LEN as usize] {
    let mut h = [0u8; HEADER_LEN as usize];
    h[0..8].copy_from_slice(FILE_MAGIC);
    h[8..12].copy_from_slice(&VERSION.to_le_bytes());
    h[12..20].copy_from_slice(&generation.to_le_bytes());
    let crc = crc32c::crc32c(&h[0..20]);
    h[20..24].copy_from_slice(&crc.to_le_bytes());
    h
}

fn decode_file_header(buf: &[u8]) -> Option<u64> {
    let mut r = Reader::new(buf);
    if r.bytes(8)? != FILE_MAGIC || r.u32()? != VERSION {
        return None;
    }
    let g = r.u64()?;
    let crc = r.u32()?;
    (crc32c::crc32c(buf.get(0..20)?) == crc).then_some(g)
}

/// Why a document's record could not be read.
#[derive(Debug)]
pub(crate) enum ReadError {
    Io(io::Error),
    /// The bytes at the indexed position are not the expected, intact record.
    Corrupt(String),
}

/// An open data file generation.
#[derive(Debug)]
pub(crate) struct DataFile {
    pub generation: u64,
    pub path: PathBuf,
    file: Arc<dyn StorageFile>,
    /// End of the bytes handed to the kernel's write-back so far.
    behind: AtomicU64,
}

impl DataFile {
    /// Creates `path` with a header; durable (file and directory entry) on return.
    pub(crate) fn create(
        storage: &dyn Storage,
        dir: &Path,
        generation: u64,
        path: PathBuf,
    ) -> io::Result<DataFile> {
        let file = storage.open(&path, OpenMode::CreateTruncate)?;
        file.write_all_at(&encode_file_header(generation), 0)?;
        file.sync_all()?;
        storage.sync_dir(dir)?;
        Ok(DataFile {
            generation,
            path,
            file,
            behind: AtomicU64::new(HEADER_LEN),
        })
    }

    /// Opens an existing generation, checking its header.
    pub(crate) fn open(storage: &dyn Storage, dir: &Path, generation: u64) -> io::Result<DataFile> {
        let path = data_path(dir, generation);
        let file = storage.open(&path, OpenMode::ReadWrite)?;
        let mut h = [0u8; HEADER_LEN as usize];
        let ok = file.read_exact_at(&mut h, 0).is_ok();
        if !ok || decode_file_header(&h) != Some(generation) {
            return Err(io::Error::new(
                io::ErrorKind::InvalidData,
                format!("{}: invalid data file header", path.display()),
            ));
        }
        let behind = AtomicU64::new(file.len()?);
        Ok(DataFile {
            generation,
            path,
            file,
            behind,
        })
    }

    pub(crate) fn len(&self) -> io::Result<u64> {
        self.file.len()
    }

    pub(crate) fn set_len(&self, len: u64) -> io::Result<()> {
        self.file.set_len(len)
    }

    pub(crate) fn write_at(&self, bytes: &[u8], offset: u64) -> io::Result<()> {
        self.file.write_all_at(bytes, offset)
    }

    pub(crate) fn sync(&self) -> io::Result<()> {
        self.file.sync_data()
    }

    /// Called by the appender (one at a time) with the end of what it wrote: once a
    /// megabyte has accumulated, starts writing it to disk without waiting for it.
    /// The data file is made durable only by a checkpoint's fsync, and without this
    /// that fsync finds everything since the last one dirty — 64 MiB at once, a burst
    /// the WAL fsyncs of every database queue behind (60–140 ms stalls in the 3 × 10
    /// mix). RocksDB's `bytes_per_sync` and PostgreSQL's `*_flush_after` do the same.
    pub(crate) fn write_behind(&self, end: u64) {
        let from = self.behind.load(Ordering::Relaxed);
        if end < from.saturating_add(WRITE_BEHIND) {
            return;
        }
        self.behind.store(end, Ordering::Relaxed);
        // Advisory: a failure is not acted on, the checkpoint's fsync writes the same
        // range and reports any error.
        self.file.write_behind(from, end - from);
    }

    /// Raw bytes at `offset`.
    pub(crate) fn read_raw(&self, offset: u64, len: usize) -> io::Result<Vec<u8>> {
        let mut buf = vec![0u8; len];
        self.file.read_exact_at(&mut buf, offset)?;
        Ok(buf)
    }

    /// Reads the payload of the put record at `offset`, checking that it is the record
    /// the index expects and that both checksums hold.
    pub(crate) fn read_payload(
        &self,
        offset: u64,
        collection: &str,
        doc_id: u64,
        seq: u64,
        payload_len: u32,
    ) -> Result<Vec<u8>, ReadError> {
        let hlen = FIXED + collection.len();
        let mut buf = vec![0u8; hlen + payload_len as usize];
        match self.file.read_exact_at(&mut buf, offset) {
            Ok(()) => {}
            Err(e) if e.kind() == io::ErrorKind::UnexpectedEof => {
                return Err(ReadError::Corrupt(format!(
                    "record at offset {offset} of {} is cut short",
                    self.path.display()
                )))
            }
            Err(e) => return Err(ReadError::Io(e)),
        }
        let corrupt = |what: &str| {
            ReadError::Corrupt(format!(
                "{what} of {collection}/{doc_id} at offset {offset} of {}",
                self.path.display()
            ))
        };
        let h = decode_header(&buf).map_err(|_| corrupt("damaged record header"))?;
        if h.collection != collection || h.doc_id != doc_id || h.seq != seq {
            return Err(corrupt("unexpected record"));
        }
        if !payload_ok(&h, &buf[hlen..]) {
            return Err(corrupt("payload checksum mismatch"));
        }
        buf.drain(..hlen);
        Ok(buf)
    }

    /// Walks the records in `[HEADER_LEN, end)`. Damaged headers are skipped by
    /// searching for the next valid one (each gap is reported through `on_gap`). With
    /// `check_payloads` the payload bytes are read and passed (with their checksum
    /// verdict); otherwise only headers are read.
    pub(crate) fn scan(
        &self,
        end: u64,
        check_payloads: bool,
        on_record: impl FnMut(u64, &Header<'_>, Option<(&[u8], bool)>) -> crate::Result<()>,
        on_gap: impl FnMut(u64, u64),
    ) -> crate::Result<()> {
        self.scan_from(HEADER_LEN, end, check_payloads, on_record, on_gap)
    }

    /// As [`DataFile::scan`], over `[from, end)`: `from` must be where a record starts
    /// (the end of a checkpointed prefix).
    pub(crate) fn scan_from(
        &self,
        from: u64,
        end: u64,
        check_payloads: bool,
        mut on_record: impl FnMut(u64, &Header<'_>, Option<(&[u8], bool)>) -> crate::Result<()>,
        mut on_gap: impl FnMut(u64, u64),
    ) -> crate::Result<()> {
        let mut w = Window::new(&*self.file, end);
        let mut pos = from.max(HEADER_LEN);
        while pos < end {
            let avail = w.fill(pos, FIXED + 64)?;
            let total = match decode_header(avail) {
                Ok(h) if pos + h.total_len() as u64 <= end => h.total_len(),
                Ok(_) | Err(HeaderError::Short) | Err(HeaderError::Invalid) => {
                    let next = self.resync(&mut w, pos + 1, end)?;
                    on_gap(pos, next);
                    pos = next;
                    continue;
                }
            };
            let rec = w.fill(pos, if check_payloads { total } else { FIXED + 64 })?;
            // The same bytes decoded a moment ago; the window only moved.
            let Ok(h) = decode_header(rec) else {
                return Err(crate::Error::Format(
                    "data file changed during a scan".into(),
                ));
            };
            let payload = check_payloads.then(|| {
                let p = rec.get(h.header_len()..total).unwrap_or(&[]);
                (p, payload_ok(&h, p))
            });
            on_record(pos, &h, payload)?;
            pos += total as u64;
        }
        Ok(())
    }

    /// The offset of the next record with a valid header at or after `from`, or `end`.
    fn resync(&self, w: &mut Window<'_>, from: u64, end: u64) -> io::Result<u64> {
        let magic = MAGIC.to_le_bytes();
        let mut pos = from;
        while pos + (FIXED as u64) <= end {
            let buf = w.fill(pos, FIXED + 64)?;
            match buf.windows(4).position(|x| x == magic) {
                None => pos += buf.len().saturating_sub(3).max(1) as u64,
                Some(i) => {
                    let at = pos + i as u64;
                    let cand = w.fill(at, FIXED + 64)?;
                    if let Ok(h) = decode_header(cand) {
                        if at + h.total_len() as u64 <= end {
                            return Ok(at);
                        }
                    }
                    pos = at + 1;
                }
            }
        }
        Ok(end)
    }
}

/// A sliding read buffer over a file for sequential scans.
struct Window<'a> {
    file: &'a dyn StorageFile,
    end: u64,
    base: u64,
    buf: Vec<u8>,
}

const WINDOW: usize = 8 * 1024 * 1024;

impl<'a> Window<'a> {
    fn new(file: &'a dyn StorageFile, end: u64) -> Self {
        Window {
            file,
            end,
            base: 0,
            buf: Vec::new(),
        }
    }

    /// Returns the bytes from `pos` on: at least `want` of them unless the end comes
    /// first.
    fn fill(&mut self, pos: u64, want: usize) -> io::Result<&[u8]> {
        let have_end = self.base + self.buf.len() as u64;
        let want_end = (pos + want as u64).min(self.end);
        if pos < self.base || want_end > have_end {
            let len = (self.end - pos).min(want.max(WINDOW) as u64) as usize;
            self.buf.resize(len, 0);
            self.file.read_exact_at(&mut self.buf, pos)?;
            self.base = pos;
        }
        let start = (pos - self.base) as usize;
        Ok(&self.buf[start..])
    }
}

#[cfg(test)]
mod tests {
    use super::super::record::{encode, Kind};
    use super::*;

    #[test]
    fn file_header_round_trip_and_flip() {
        let h = encode_file_header(5);
        assert_eq!(decode_file_header(&h), Some(5));
        for i in 0..h.len() {
            let mut b = h;
            b[i] ^= 1;
            assert_eq!(decode_file_header(&b), None);
        }
    }

    #[test]
    fn scan_skips_a_damaged_header_and_keeps_the_rest() {
        let d = tempfile::tempdir().unwrap();
        let s = crate::storage::StdStorage;
        let f = DataFile::create(&s, d.path(), 1, data_path(d.path(), 1)).unwrap();
        let mut buf = Vec::new();
        let mut offs = Vec::new();
        for i in 0..10u64 {
            offs.push(HEADER_LEN + buf.len() as u64);
            encode(
                &mut buf,
                Kind::Put,
                "c",
                i,
                i + 1,
                format!("{{\"i\":{i}}}").as_bytes(),
            );
        }
        buf[(offs[4] - HEADER_LEN) as usize + 9] ^= 0xff; // coll_len of record 4
        f.write_at(&buf, HEADER_LEN).unwrap();
        let end = f.len().unwrap();
        let mut seen = Vec::new();
        let mut gaps = Vec::new();
        f.scan(
            end,
            true,
            |_, h, p| {
                assert!(p.unwrap().1);
                seen.push(h.doc_id);
                Ok(())
            },
            |a, b| gaps.push((a, b)),
        )
        .unwrap();
        assert_eq!(seen, vec![0, 1, 2, 3, 5, 6, 7, 8, 9]);
        assert_eq!(gaps, vec![(offs[4], offs[5])]);
        let p = f.read_payload(offs[7], "c", 7, 8, 7).unwrap();
        assert_eq!(p, br#"{"i":7}"#);
        assert!(matches!(
            f.read_payload(offs[7], "c", 7, 9, 7),
            Err(ReadError::Corrupt(_))
        ));
    }
}
