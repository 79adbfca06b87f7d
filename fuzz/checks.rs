//! What each fuzz target checks, in one place: the targets (`fuzz_targets/*.rs`, nightly)
//! and the stable replay of the committed corpora (`crates/docdb/tests/fuzz_corpora.rs`)
//! include this file, so the normal suite checks the corpora exactly as the fuzzer did.
//! Each check panics on a bug and returns how much of the input decoded, so the replay
//! can tell a corpus that exercises the decoder from one that is all rejects.

use docdb_core::data::record::{decode_header, payload_ok};
use docdb_core::wal::record::decode;
use docdb_protocol::frame::decode_results;
use docdb_protocol::{decode_request, decode_response, encode_request, encode_response};

/// The server's request frame decoder never panics, and what it accepts re-encodes to
/// the same bytes. True when `data` decoded.
pub fn request_frame(data: &[u8]) -> bool {
    let Ok(req) = decode_request(data) else {
        return false;
    };
    let mut out = Vec::new();
    encode_request(&req, &mut out);
    assert_eq!(&out[4..], data, "a decoded request re-encodes differently");
    true
}

/// The clients' response decoders (frame and Execute results) never panic; an accepted
/// frame re-encodes to the same bytes. True when `data` decoded as a response.
pub fn response_frame(data: &[u8]) -> bool {
    let ok = match decode_response(data) {
        Ok(resp) => {
            let mut out = Vec::new();
            encode_response(&resp, &mut out);
            assert_eq!(&out[4..], data, "a decoded response re-encodes differently");
            let _ = decode_results(&resp.data);
            true
        }
        Err(_) => false,
    };
    let _ = decode_results(data);
    ok
}

/// WAL replay's record decoder never panics on damaged or hostile bytes, and each
/// record it accepts lies within the input. Returns the number of records decoded.
pub fn wal_record(data: &[u8]) -> usize {
    let mut pos = 0;
    let mut records = 0;
    while let Ok((_, n)) = decode(&data[pos..]) {
        assert!(
            n > 0 && n <= data.len() - pos,
            "a record of {n} bytes at {pos}"
        );
        pos += n;
        records += 1;
    }
    records
}

/// The data-file record header decoder (index rebuild, verify) never panics. True when
/// a whole record (header and payload) decoded with a matching payload checksum.
pub fn data_record(data: &[u8]) -> bool {
    let Ok(h) = decode_header(data) else {
        return false;
    };
    match data.get(h.header_len()..h.total_len()) {
        Some(p) => payload_ok(&h, p),
        None => false,
    }
}
