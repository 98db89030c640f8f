//! Fuzz target: ARP view and Ethernet/IPv4 Repr.
#![no_main]

use dataplane_fuzz::exercise::exercise_arp;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    exercise_arp(data);
});
