//! Fuzz target: IPv6 view, extension-header walk, ICMPv6 error builder, then the L4 parsers.
#![no_main]

use dataplane_fuzz::exercise::exercise_ipv6;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    exercise_ipv6(data);
});
