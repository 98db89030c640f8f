//! Fuzz target: DHCPv6 view, option walk, Repr parse → emit → parse round trip of
//! client/server and relay messages, and the Relay-forward wrapping.
#![no_main]

use dataplane_fuzz::exercise::exercise_dhcp6;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    exercise_dhcp6(data);
});
