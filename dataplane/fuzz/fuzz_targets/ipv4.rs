//! Fuzz target: IPv4 view, Repr, TTL/NAT rewrites, ICMPv4 error builder, then the L4 parsers.
#![no_main]

use dataplane_fuzz::exercise::exercise_ipv4;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    exercise_ipv4(data);
});
