//! The `INDEXES` file: every secondary index definition of the database. Replaced
//! atomically (temp file, fsync, rename, fsync directory) by CreateIndex and DropIndex,
//! so it is always one whole list; the entries themselves are rebuilt from the
//! documents at open.
//!
//! ```text
//! magic "DOCDBIDX"  version:u32(=1)  body_len:u32  body  crc:u32 (crc32c of all before)
//! body: JSON [{"collection","created_seq","name","fields":[[path,1|-1],...],"unique"}]
//! ```
//! `created_seq` names the collection's incarnation: a definition whose collection
//! was deleted (or deleted and created again) is ignored at open and dropped from the
//! file at the next change.

use std::path::Path;

use serde::{Deserialize, Serialize};

use super::IndexDef;
use crate::error::{Error, Result};
use crate::storage::{self, Storage};

const MAGIC: &[u8; 8] = b"DOCDBIDX";
const VERSION: u32 = 1;
pub(crate) const FILE_NAME: &str = "INDEXES";

/// One definition as stored.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct StoredDef {
    pub collection: String,
    pub created_seq: u64,
    #[serde(flatten)]
    pub def: IndexDef,
}

pub(crate) fn encode(defs: &[StoredDef]) -> Vec<u8> {
    // Serialising plain strings and numbers cannot fail; an empty body is still a
    // valid (empty) list on decode.
    let body = serde_json::to_vec(defs).unwrap_or_else(|_| b"[]".to_vec());
    let mut b = Vec::with_capacity(body.len() + 20);
    b.extend_from_slice(MAGIC);
    b.extend_from_slice(&VERSION.to_le_bytes());
    b.extend_from_slice(&(body.len() as u32).to_le_bytes());
    b.extend_from_slice(&body);
    let crc = crc32c::crc32c(&b);
    b.extend_from_slice(&crc.to_le_bytes());
    b
}

pub(crate) fn decode(b: &[u8]) -> Option<Vec<StoredDef>> {
    if b.len() < 20 || &b[..8] != MAGIC {
        return None;
    }
    let version = u32::from_le_bytes(b[8..12].try_into().ok()?);
    let len = u32::from_le_bytes(b[12..16].try_into().ok()?) as usize;
    if version != VERSION || b.len() != 20usize.checked_add(len)? {
        return None;
    }
    let crc = u32::from_le_bytes(b[16 + len..].try_into().ok()?);
    if crc32c::crc32c(&b[..16 + len]) != crc {
        return None;
    }
    let defs: Vec<StoredDef> = serde_json::from_slice(&b[16..16 + len]).ok()?;
    defs.iter()
        .all(|d| d.def.validate().is_ok())
        .then_some(defs)
}

/// The stored definitions; none when the file does not exist.
pub(crate) fn load(s: &dyn Storage, dir: &Path) -> Result<Vec<StoredDef>> {
    let path = dir.join(FILE_NAME);
    match s.read(&path) {
        Ok(b) => decode(&b).ok_or_else(|| {
            Error::Format(format!(
                "{} is damaged (bad length, magic, checksum or definition); the index \
                 definitions it held are needed to open the database: restore it from a \
                 backup, or move it aside to open without secondary indexes",
                path.display()
            ))
        }),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(Vec::new()),
        Err(e) => Err(e.into()),
    }
}

pub(crate) fn store(s: &dyn Storage, dir: &Path, defs: &[StoredDef]) -> Result<()> {
    storage::replace_file(s, &dir.join(FILE_NAME), &encode(defs))?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip_and_flip_detection() {
        let defs = vec![StoredDef {
            collection: "users".into(),
            created_seq: 7,
            def: IndexDef {
                name: "by_email".into(),
                fields: vec![("email".into(), 1), ("a.b".into(), -1)],
                unique: true,
            },
        }];
        let b = encode(&defs);
        assert_eq!(decode(&b), Some(defs));
        for i in 0..b.len() {
            let mut x = b.clone();
            x[i] ^= 0x20;
            assert_eq!(decode(&x), None, "byte {i}");
        }
        assert_eq!(decode(&b[..b.len() - 1]), None);
        assert_eq!(decode(&encode(&[])), Some(vec![]));
    }
}
