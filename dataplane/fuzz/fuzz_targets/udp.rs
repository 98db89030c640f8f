//! Fuzz target: UDP view, Repr and checksum rewrites.
#![no_main]

use dataplane_fuzz::exercise::exercise_udp;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    exercise_udp(data);
});
