//! The data-file record header decoder (index rebuild, verify) must never panic.
#![no_main]

use docdb_core::data::record::{decode_header, payload_ok};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(h) = decode_header(data) {
        if let Some(p) = data.get(h.header_len()..h.total_len()) {
            let _ = payload_ok(&h, p);
        }
    }
});
