//! Fuzz target: ICMPv4 view, Repr (emit/parse round trip) and echo reply rewrite.
#![no_main]

use dataplane_fuzz::exercise::exercise_icmpv4;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    exercise_icmpv4(data);
});
