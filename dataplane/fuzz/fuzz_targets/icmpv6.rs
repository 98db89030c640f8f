//! Fuzz target: ICMPv6 + Neighbor Discovery view, options walk, Repr (emit/parse round
//! trip), pseudo-header checksum. The first 32 bytes, when present, are the IPv6
//! source and destination addresses.
#![no_main]

use core::net::Ipv6Addr;
use dataplane_fuzz::exercise::exercise_icmpv6;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let (src, dst, msg) = match (data.get(..16), data.get(16..32), data.get(32..)) {
        (Some(s), Some(d), Some(m)) => {
            let s: [u8; 16] = s.try_into().unwrap_or([0; 16]);
            let d: [u8; 16] = d.try_into().unwrap_or([0; 16]);
            (Ipv6Addr::from(s), Ipv6Addr::from(d), m)
        }
        _ => (Ipv6Addr::UNSPECIFIED, Ipv6Addr::UNSPECIFIED, data),
    };
    exercise_icmpv6(msg, &src, &dst);
});
