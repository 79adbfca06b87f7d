//! The clients' response decoders (frame and Execute results) must never panic.
#![no_main]

use docdb_protocol::frame::decode_results;
use docdb_protocol::{decode_response, encode_response};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(resp) = decode_response(data) {
        let mut out = Vec::new();
        encode_response(&resp, &mut out);
        assert_eq!(&out[4..], data);
        let _ = decode_results(&resp.data);
    }
    let _ = decode_results(data);
});
