//! Data-file records. Self-describing, so the index can be rebuilt from the file alone,
//! with separate checksums for the header and the payload: a damaged payload leaves the
//! record's identity and length readable (the document can be healed), and a damaged
//! header is skipped by searching for the next magic with a valid header checksum.
//!
//! ```text
//! offset size field
//!  0     4    magic 0x52424444 ("DDBR" little-endian)
//!  4     4    header_crc   crc32c of bytes 8 .. 35+coll_len
//!  8     1    kind         1 put, 2 tombstone, 3 create collection, 4 delete collection
//!  9     2    coll_len     ≤ 64
//! 11     4    payload_len  ≤ 16 MiB (0 unless put)
//! 15     8    seq          commit sequence number (transaction id)
//! 23     8    doc_id       (0 for collection records)
//! 31     4    payload_crc  crc32c of the payload
//! 35     ..   collection name, then payload (the document's JSON bytes, uncompressed)
//! ```

use crate::codec::Reader;
use crate::name::MAX_NAME_LEN;

pub(crate) const MAGIC: u32 = 0x5242_4444;
pub(crate) const FIXED: usize = 35;
/// Largest payload a record may claim; guards allocations when scanning damaged files.
pub(crate) const MAX_PAYLOAD: u32 = 16 * 1024 * 1024;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u8)]
pub enum Kind {
    Put = 1,
    Tombstone = 2,
    CreateCollection = 3,
    DeleteCollection = 4,
}

impl Kind {
    fn from_u8(b: u8) -> Option<Kind> {
        Some(match b {
            1 => Kind::Put,
            2 => Kind::Tombstone,
            3 => Kind::CreateCollection,
            4 => Kind::DeleteCollection,
            _ => return None,
        })
    }
}

/// A decoded, checksum-verified record header.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Header<'a> {
    pub kind: Kind,
    pub collection: &'a str,
    pub payload_len: u32,
    pub seq: u64,
    pub doc_id: u64,
    pub payload_crc: u32,
}

impl Header<'_> {
    /// Bytes before the payload.
    pub fn header_len(&self) -> usize {
        FIXED + self.collection.len()
    }

    pub fn total_len(&self) -> usize {
        self.header_len() + self.payload_len as usize
    }
}

/// Appends one record to `out`; returns its size.
pub(crate) fn encode(
    out: &mut Vec<u8>,
    kind: Kind,
    collection: &str,
    doc_id: u64,
    seq: u64,
    payload: &[u8],
) -> usize {
    let start = out.len();
    out.extend_from_slice(&MAGIC.to_le_bytes());
    out.extend_from_slice(&[0u8; 4]);
    out.push(kind as u8);
    // INVARIANT: names are ≤ 64 bytes and payloads ≤ 16 MiB (validated before commit).
    out.extend_from_slice(&(collection.len() as u16).to_le_bytes());
    out.extend_from_slice(&(payload.len() as u32).to_le_bytes());
    out.extend_from_slice(&seq.to_le_bytes());
    out.extend_from_slice(&doc_id.to_le_bytes());
    out.extend_from_slice(&crc32c::crc32c(payload).to_le_bytes());
    out.extend_from_slice(collection.as_bytes());
    let hcrc = crc32c::crc32c(&out[start + 8..]);
    out[start + 4..start + 8].copy_from_slice(&hcrc.to_le_bytes());
    out.extend_from_slice(payload);
    out.len() - start
}

/// Why a header did not decode.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HeaderError {
    /// Fewer bytes than the header needs.
    Short,
    /// Wrong magic, checksum or field values.
    Invalid,
}

/// Decodes and verifies the header at the start of `buf` (the payload may follow).
pub fn decode_header(buf: &[u8]) -> Result<Header<'_>, HeaderError> {
    if buf.len() < FIXED {
        return Err(HeaderError::Short);
    }
    let mut r = Reader::new(buf);
    let bad = HeaderError::Invalid;
    if r.u32() != Some(MAGIC) {
        return Err(bad);
    }
    let hcrc = r.u32().ok_or(bad)?;
    let kind = r.u8().ok_or(bad)?;
    let clen = r.u16().ok_or(bad)? as usize;
    if clen > MAX_NAME_LEN {
        return Err(bad);
    }
    let payload_len = r.u32().ok_or(bad)?;
    let seq = r.u64().ok_or(bad)?;
    let doc_id = r.u64().ok_or(bad)?;
    let payload_crc = r.u32().ok_or(bad)?;
    let coll = r.bytes(clen).ok_or(HeaderError::Short)?;
    if crc32c::crc32c(&buf[8..FIXED + clen]) != hcrc {
        return Err(bad);
    }
    let kind = Kind::from_u8(kind).ok_or(bad)?;
    if payload_len > MAX_PAYLOAD {
        return Err(bad);
    }
    let collection = std::str::from_utf8(coll).map_err(|_| bad)?;
    Ok(Header {
        kind,
        collection,
        payload_len,
        seq,
        doc_id,
        payload_crc,
    })
}

/// True when `payload` matches the header's checksum.
pub fn payload_ok(h: &Header<'_>, payload: &[u8]) -> bool {
    payload.len() == h.payload_len as usize && crc32c::crc32c(payload) == h.payload_crc
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> Vec<u8> {
        let mut v = Vec::new();
        let n = encode(&mut v, Kind::Put, "users", 12, 99, br#"{"name":"ada"}"#);
        assert_eq!(n, v.len());
        v
    }

    #[test]
    fn round_trip() {
        let v = sample();
        let h = decode_header(&v).unwrap();
        assert_eq!(h.kind, Kind::Put);
        assert_eq!(h.collection, "users");
        assert_eq!((h.doc_id, h.seq), (12, 99));
        assert_eq!(h.total_len(), v.len());
        assert!(payload_ok(&h, &v[h.header_len()..]));
    }

    #[test]
    fn every_flipped_byte_is_detected() {
        let v = sample();
        for i in 0..v.len() {
            let mut b = v.clone();
            b[i] ^= 0x04;
            let detected = match decode_header(&b) {
                Err(_) => true,
                Ok(h) => !payload_ok(&h, &b[h.header_len()..]),
            };
            assert!(detected, "flip of byte {i} went unnoticed");
        }
    }

    #[test]
    fn short_input_is_short() {
        let v = sample();
        assert_eq!(decode_header(&v[..FIXED - 1]), Err(HeaderError::Short));
        assert_eq!(decode_header(&v[..FIXED + 2]), Err(HeaderError::Short));
    }
}
