//! The checkpoint file `CHECKPOINT`: which data file generation is current, how much of
//! it is durable, and where in the WAL replay must start. Replaced atomically (temp
//! file, fsync, rename, fsync directory), so it is always one whole checkpoint.
//!
//! ```text
//! magic "DOCDBCKP"  version:u32(=1)  seq:u64  wal_segment:u64  wal_offset:u64
//! data_generation:u64  data_len:u64  crc:u32 (crc32c of the 52 bytes before)
//! ```
//! INVARIANT: every commit before `(wal_segment, wal_offset)` is in the first
//! `data_len` bytes of the data file, and those bytes were fsynced before this file
//! was written.

use std::path::Path;

use crate::codec::Reader;
use crate::error::{Error, Result};
use crate::storage::{self, Storage};
use crate::wal::WalPos;

const MAGIC: &[u8; 8] = b"DOCDBCKP";
const VERSION: u32 = 1;
const LEN: usize = 56;
pub(crate) const FILE_NAME: &str = "CHECKPOINT";

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Checkpoint {
    /// Highest commit sequence number covered.
    pub seq: u64,
    pub wal: WalPos,
    pub data_generation: u64,
    pub data_len: u64,
}

impl Checkpoint {
    pub(crate) fn encode(&self) -> [u8; LEN] {
        let mut b = [0u8; LEN];
        b[0..8].copy_from_slice(MAGIC);
        b[8..12].copy_from_slice(&VERSION.to_le_bytes());
        b[12..20].copy_from_slice(&self.seq.to_le_bytes());
        b[20..28].copy_from_slice(&self.wal.segment.to_le_bytes());
        b[28..36].copy_from_slice(&self.wal.offset.to_le_bytes());
        b[36..44].copy_from_slice(&self.data_generation.to_le_bytes());
        b[44..52].copy_from_slice(&self.data_len.to_le_bytes());
        let crc = crc32c::crc32c(&b[0..52]);
        b[52..56].copy_from_slice(&crc.to_le_bytes());
        b
    }

    pub(crate) fn decode(b: &[u8]) -> Option<Checkpoint> {
        if b.len() != LEN {
            return None;
        }
        let mut r = Reader::new(b);
        if r.bytes(8)? != MAGIC || r.u32()? != VERSION {
            return None;
        }
        let c = Checkpoint {
            seq: r.u64()?,
            wal: WalPos {
                segment: r.u64()?,
                offset: r.u64()?,
            },
            data_generation: r.u64()?,
            data_len: r.u64()?,
        };
        (crc32c::crc32c(&b[0..52]) == r.u32()?).then_some(c)
    }

    pub(crate) fn load(storage: &dyn Storage, dir: &Path) -> Result<Option<Checkpoint>> {
        let path = dir.join(FILE_NAME);
        match storage.read(&path) {
            Ok(b) => Checkpoint::decode(&b).map(Some).ok_or_else(|| {
                Error::Format(format!(
                    "{} is damaged (bad length, magic or checksum)",
                    path.display()
                ))
            }),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(e.into()),
        }
    }

    pub(crate) fn store(&self, storage: &dyn Storage, dir: &Path) -> Result<()> {
        storage::replace_file(storage, &dir.join(FILE_NAME), &self.encode())?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip_and_flip_detection() {
        let c = Checkpoint {
            seq: 9,
            wal: WalPos {
                segment: 3,
                offset: 4096,
            },
            data_generation: 2,
            data_len: 1 << 33,
        };
        let b = c.encode();
        assert_eq!(Checkpoint::decode(&b), Some(c));
        for i in 0..b.len() {
            let mut x = b;
            x[i] ^= 0x20;
            assert_eq!(Checkpoint::decode(&x), None, "byte {i}");
        }
        assert_eq!(Checkpoint::decode(&b[..40]), None);
    }
}
