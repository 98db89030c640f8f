//! Fuzz target: the PFCP message parser, parse → emit → parse (`pfcp_fuzz::exercise_pfcp_message`).
#![no_main]

use libfuzzer_sys::fuzz_target;
use pfcp_fuzz::exercise_pfcp_message;

fuzz_target!(|data: &[u8]| {
    exercise_pfcp_message(data);
});
