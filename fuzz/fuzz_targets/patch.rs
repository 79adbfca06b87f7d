//! Fuzzes `checks::patch` (see ../checks.rs, shared with the stable corpus replay).
#![no_main]

use libfuzzer_sys::fuzz_target;

#[path = "../checks.rs"]
#[allow(dead_code)]
mod checks;

fuzz_target!(|data: &[u8]| {
    let _ = checks::patch(data);
});
