//! Fuzz target: see `vbng_fuzz::exercise_fastpath`.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    vbng_fuzz::exercise_fastpath(data);
});
