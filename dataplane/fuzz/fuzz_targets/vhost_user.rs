//! Fuzz target: vhost-user message codec (header, every payload kind), emit → parse
//! round trip of every request whose payload parses.
#![no_main]

use dataplane_fuzz::exercise::exercise_vhost_user;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    exercise_vhost_user(data);
});
