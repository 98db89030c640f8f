//! Fuzz target: DHCPv4 view, option walk, Repr parse → emit → parse round trip and the
//! relay agent's option 82 insert/remove, on the input as a message and as options.
#![no_main]

use dataplane_fuzz::exercise::exercise_dhcp4_all;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    exercise_dhcp4_all(data);
});
