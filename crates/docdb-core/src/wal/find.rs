//! Finding old document copies in the WAL, for healing: one pass over every segment
//! still on disk, collecting the payloads written by the wanted commits.

use std::collections::{HashMap, HashSet};
use std::path::Path;

use super::record::{decode, WalOp};
use super::segment::{decode_header, list_segments, segment_path, HEADER_LEN};
use crate::error::Result;
use crate::storage::Storage;

/// A document version: (collection, id, commit seq).
pub(crate) type VersionKey = (String, u64, u64);

/// Payloads of the wanted versions that an intact WAL record still holds.
pub(crate) fn find_payloads(
    storage: &dyn Storage,
    wal_dir: &Path,
    wanted: &HashSet<VersionKey>,
) -> Result<HashMap<VersionKey, Vec<u8>>> {
    let mut found = HashMap::new();
    if wanted.is_empty() {
        return Ok(found);
    }
    let seqs: HashSet<u64> = wanted.iter().map(|k| k.2).collect();
    for seg in list_segments(storage, wal_dir)? {
        let buf = match storage.read(&segment_path(wal_dir, seg)) {
            Ok(b) => b,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => continue, // trimmed
            Err(e) => return Err(e.into()),
        };
        if decode_header(&buf) != Some(seg) {
            continue;
        }
        let mut pos = HEADER_LEN as usize;
        // A damaged record ends what can be trusted in this segment; later segments
        // may still hold the copy.
        while let Ok((rec, n)) = decode(&buf[pos.min(buf.len())..]) {
            pos += n;
            if !seqs.contains(&rec.seq) {
                continue;
            }
            for op in rec.ops {
                if !matches!(op.op, WalOp::Create | WalOp::Update) {
                    continue;
                }
                let key = (op.collection.to_owned(), op.doc_id, rec.seq);
                if wanted.contains(&key) {
                    found.insert(key, op.payload.to_vec());
                }
            }
        }
        if found.len() == wanted.len() {
            break;
        }
    }
    Ok(found)
}
