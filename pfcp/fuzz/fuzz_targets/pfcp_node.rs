//! Fuzz target: a PFCP node fed hostile datagrams (`pfcp_fuzz::exercise_pfcp_node`).
#![no_main]

use libfuzzer_sys::fuzz_target;
use pfcp_fuzz::exercise_pfcp_node;

fuzz_target!(|data: &[u8]| {
    exercise_pfcp_node(data);
});
