//! Fuzz target: TCP view, options walk, Repr and MSS clamping (checksum must stay valid).
#![no_main]

use dataplane_fuzz::exercise::exercise_tcp;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    exercise_tcp(data);
});
