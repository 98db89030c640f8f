//! Fuzz target: Ethernet II + 802.1Q/QinQ walk, then the L3/L4 parsers the EtherType selects.
#![no_main]

use dataplane_fuzz::exercise::exercise_l2;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    exercise_l2(data);
});
