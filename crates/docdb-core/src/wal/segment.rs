//! WAL segment files: `wal/<segment number, 20 digits>.wal`, each starting with a
//! header that names its number, followed by records (see `record.rs`).
//!
//! ```text
//! header := magic "DOCDBWAL"  version:u32(=1)  segment:u64  crc:u32 (crc32c of the 20 bytes before)
//! ```

use std::io;
use std::path::{Path, PathBuf};

use crate::codec::Reader;
use crate::storage::Storage;

pub(crate) const MAGIC: &[u8; 8] = b"DOCDBWAL";
pub(crate) const VERSION: u32 = 1;
pub(crate) const HEADER_LEN: u64 = 24;

pub(crate) fn encode_header(segment: u64) -> [u8; HEADER_LEN as usize] {
    let mut h = [0u8; HEADER_LEN as usize];
    h[0..8].copy_from_slice(MAGIC);
    h[8..12].copy_from_slice(&VERSION.to_le_bytes());
    h[12..20].copy_from_slice(&segment.to_le_bytes());
    let crc = crc32c::crc32c(&h[0..20]);
    h[20..24].copy_from_slice(&crc.to_le_bytes());
    h
}

/// The segment number in a valid header, or None.
pub(crate) fn decode_header(buf: &[u8]) -> Option<u64> {
    let mut r = Reader::new(buf);
    if r.bytes(8)? != MAGIC || r.u32()? != VERSION {
        return None;
    }
    let segment = r.u64()?;
    let crc = r.u32()?;
    (crc32c::crc32c(buf.get(0..20)?) == crc).then_some(segment)
}

pub(crate) fn segment_path(dir: &Path, segment: u64) -> PathBuf {
    dir.join(format!("{segment:020}.wal"))
}

/// The segment numbers present in `dir`, ascending. Other files are ignored.
pub(crate) fn list_segments(storage: &dyn Storage, dir: &Path) -> io::Result<Vec<u64>> {
    let mut out = Vec::new();
    for name in storage.list(dir)? {
        let Some(name) = name.to_str() else { continue };
        if let Some(num) = name.strip_suffix(".wal") {
            if num.len() == 20 {
                if let Ok(n) = num.parse::<u64>() {
                    out.push(n);
                }
            }
        }
    }
    out.sort_unstable();
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::fs;

    #[test]
    fn header_round_trip_and_flip_detection() {
        let h = encode_header(77);
        assert_eq!(decode_header(&h), Some(77));
        for i in 0..h.len() {
            let mut b = h;
            b[i] ^= 0x10;
            assert_eq!(decode_header(&b), None, "byte {i}");
        }
        assert_eq!(decode_header(&h[..10]), None);
    }

    #[test]
    fn listing_ignores_foreign_files() {
        let d = tempfile::tempdir().unwrap();
        for n in [3u64, 1, 2] {
            fs::write(segment_path(d.path(), n), b"").unwrap();
        }
        fs::write(d.path().join("notes.txt"), b"").unwrap();
        fs::write(d.path().join("5.wal"), b"").unwrap();
        assert_eq!(
            list_segments(&crate::storage::StdStorage, d.path()).unwrap(),
            vec![1, 2, 3]
        );
    }
}
