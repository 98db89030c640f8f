//! Fuzz target: memif control-message parser (any datagram), emit → parse round trip
//! of every message that parses, peer-text sanitiser and ring-index check.
#![no_main]

use dataplane_fuzz::exercise::exercise_memif;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    exercise_memif(data);
});
