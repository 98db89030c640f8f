//! Fuzz target: DHCPv4 view, option walk, Repr parse → emit → parse round trip and the
//! relay agent's option 82 insert/remove.
#![no_main]

use dataplane_fuzz::exercise::exercise_dhcp4;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    exercise_dhcp4(data);
});
