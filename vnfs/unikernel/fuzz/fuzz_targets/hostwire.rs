//! Fuzz target: the host stack's divert classification of a received frame (shared
//! and exclusive port), the HTTP request-line parser and the body length of a head.
#![no_main]

use libfuzzer_sys::fuzz_target;
use unikernel_fuzz::hostwire::{body_length, classify, parse_request};

fuzz_target!(|data: &[u8]| {
    let _ = classify(data, [10, 0, 2, 15], false);
    let _ = classify(data, [10, 0, 2, 15], true);
    let _ = parse_request(data);
    let _ = body_length(data, 64 * 1024);
});
