//! The server's request frame decoder must never panic, and what it accepts must
//! re-encode to the same bytes.
#![no_main]

use docdb_protocol::{decode_request, encode_request};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(req) = decode_request(data) {
        let mut out = Vec::new();
        encode_request(&req, &mut out);
        assert_eq!(&out[4..], data);
    }
});
