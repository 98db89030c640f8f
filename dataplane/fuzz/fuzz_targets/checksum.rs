//! Fuzz target: RFC 1071 fast sum vs the reference loop, RFC 1624 updates vs recomputation.
#![no_main]

use dataplane_fuzz::exercise::exercise_checksum;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    exercise_checksum(data);
});
