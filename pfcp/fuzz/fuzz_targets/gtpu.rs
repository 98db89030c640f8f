//! Fuzz target: the GTP-U parsers and redirect decapsulation (`pfcp_fuzz::exercise_gtpu`).
#![no_main]

use libfuzzer_sys::fuzz_target;
use pfcp_fuzz::exercise_gtpu;

fuzz_target!(|data: &[u8]| {
    exercise_gtpu(data);
});
