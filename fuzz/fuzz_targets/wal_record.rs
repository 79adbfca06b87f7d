//! WAL replay's record decoder must never panic on damaged or hostile bytes.
#![no_main]

use docdb_core::wal::record::decode;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let mut pos = 0;
    while let Ok((_, n)) = decode(&data[pos..]) {
        pos += n;
    }
});
