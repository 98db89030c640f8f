//! Symmetric flow hashing, so both directions of a flow land on one worker.
//!
//! [`toeplitz`] is the RSS hash of Microsoft's RSS specification (what NICs compute);
//! with the repeating key [`SYMMETRIC_KEY`] (0x6d5a…, Woo & Park, "Scalable TCP
//! Session Monitoring with Symmetric Receive-side Scaling", 2012) its value is the
//! same for (src, dst) and (dst, src). [`flow_v4`]/[`flow_v6`] are a cheaper
//! symmetric software hash for software RSS: endpoints are ordered before mixing.

/// 40-byte Toeplitz key that makes the RSS hash symmetric.
pub const SYMMETRIC_KEY: [u8; 40] = [
    0x6d, 0x5a, 0x6d, 0x5a, 0x6d, 0x5a, 0x6d, 0x5a, 0x6d, 0x5a, 0x6d, 0x5a, 0x6d, 0x5a, 0x6d, 0x5a,
    0x6d, 0x5a, 0x6d, 0x5a, 0x6d, 0x5a, 0x6d, 0x5a, 0x6d, 0x5a, 0x6d, 0x5a, 0x6d, 0x5a, 0x6d, 0x5a,
    0x6d, 0x5a, 0x6d, 0x5a, 0x6d, 0x5a, 0x6d, 0x5a,
];

/// Toeplitz hash of `input` under `key` (key must be at least input.len() + 4 bytes;
/// missing key bytes count as zero).
pub fn toeplitz(key: &[u8], input: &[u8]) -> u32 {
    let mut result = 0u32;
    let k = |i: usize| key.get(i).copied().unwrap_or(0);
    let mut window = u32::from_be_bytes([k(0), k(1), k(2), k(3)]);
    for (i, byte) in input.iter().enumerate() {
        let next = k(i + 4);
        for bit in 0..8 {
            if byte & (0x80 >> bit) != 0 {
                result ^= window;
            }
            window = (window << 1) | ((next >> (7 - bit)) & 1) as u32;
        }
    }
    result
}

/// RSS input for IPv4 with ports: src, dst, sport, dport (big endian), hashed with
/// the symmetric key.
pub fn rss_v4(src: [u8; 4], dst: [u8; 4], sport: u16, dport: u16) -> u32 {
    let mut b = [0u8; 12];
    b[..4].copy_from_slice(&src);
    b[4..8].copy_from_slice(&dst);
    b[8..10].copy_from_slice(&sport.to_be_bytes());
    b[10..12].copy_from_slice(&dport.to_be_bytes());
    toeplitz(&SYMMETRIC_KEY, &b)
}

#[inline(always)]
fn mix64(mut x: u64) -> u32 {
    // splitmix64 finaliser
    x ^= x >> 30;
    x = x.wrapping_mul(0xbf58_476d_1ce4_e5b9);
    x ^= x >> 27;
    x = x.wrapping_mul(0x94d0_49bb_1331_11eb);
    x ^= x >> 31;
    x as u32
}

/// Symmetric software hash of an IPv4 flow (addresses as host-order u32).
#[inline(always)]
pub fn flow_v4(src: u32, dst: u32, proto: u8, sport: u16, dport: u16) -> u32 {
    let (a, pa, b, pb) = if (src, sport) <= (dst, dport) {
        (src, sport, dst, dport)
    } else {
        (dst, dport, src, sport)
    };
    let x = ((a as u64) << 32 | b as u64) ^ ((pa as u64) << 48 | (pb as u64) << 32 | proto as u64);
    mix64(x ^ (b as u64).rotate_left(17))
}

/// Symmetric software hash of an IPv6 flow.
#[inline]
pub fn flow_v6(src: [u8; 16], dst: [u8; 16], proto: u8, sport: u16, dport: u16) -> u32 {
    let (a, pa, b, pb) = if (src, sport) <= (dst, dport) {
        (src, sport, dst, dport)
    } else {
        (dst, dport, src, sport)
    };
    let fold = |x: [u8; 16]| {
        let [h, l] = [
            u64::from_be_bytes([x[0], x[1], x[2], x[3], x[4], x[5], x[6], x[7]]),
            u64::from_be_bytes([x[8], x[9], x[10], x[11], x[12], x[13], x[14], x[15]]),
        ];
        h ^ l.rotate_left(29)
    };
    mix64(fold(a) ^ fold(b).rotate_left(7) ^ ((pa as u64) << 40 | (pb as u64) << 16 | proto as u64))
}

/// Symmetric hash of an Ethernet frame's flow: IPv4/IPv6 addresses, protocol and
/// TCP/UDP ports (after up to two VLAN tags); other frames hash their MAC pair.
/// This is what a NIC's symmetric RSS computes to pick a receive queue.
#[inline]
pub fn frame_hash(frame: &[u8]) -> u32 {
    let Ok(l2) = crate::proto::ethernet::walk_vlans(frame) else {
        return 0;
    };
    let ip = frame.get(l2.l3_offset..).unwrap_or(&[]);
    let ports = |l4: &[u8]| -> (u16, u16) {
        match l4.get(0..4) {
            Some(&[a, b, c, d]) => (u16::from_be_bytes([a, b]), u16::from_be_bytes([c, d])),
            _ => (0, 0),
        }
    };
    match l2.ethertype.0 {
        0x0800 if ip.len() >= 20 => {
            let hl = usize::from(ip[0] & 0x0f) * 4;
            let proto = ip[9];
            let s = u32::from_be_bytes([ip[12], ip[13], ip[14], ip[15]]);
            let d = u32::from_be_bytes([ip[16], ip[17], ip[18], ip[19]]);
            let frag = u16::from_be_bytes([ip[6], ip[7]]) & 0x3fff != 0;
            let (sp, dp) = if !frag && (proto == 6 || proto == 17) {
                ports(ip.get(hl..).unwrap_or(&[]))
            } else {
                (0, 0)
            };
            flow_v4(s, d, proto, sp, dp)
        }
        0x86dd if ip.len() >= 40 => {
            let mut s = [0u8; 16];
            let mut d = [0u8; 16];
            s.copy_from_slice(&ip[8..24]);
            d.copy_from_slice(&ip[24..40]);
            let proto = ip[6];
            let (sp, dp) = if proto == 6 || proto == 17 {
                ports(ip.get(40..).unwrap_or(&[]))
            } else {
                (0, 0)
            };
            flow_v6(s, d, proto, sp, dp)
        }
        _ => {
            let m = |r: core::ops::Range<usize>| {
                let mut b = [0u8; 8];
                if let Some(x) = frame.get(r) {
                    b[2..].copy_from_slice(x);
                }
                u64::from_be_bytes(b)
            };
            let (a, b) = (m(0..6), m(6..12));
            let (lo, hi) = if a <= b { (a, b) } else { (b, a) };
            mix64(lo ^ hi.rotate_left(24))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn toeplitz_matches_rss_spec_vector() {
        // Microsoft RSS verification suite, IPv4 with TCP ports, standard key:
        // 66.9.149.187:2794 -> 161.142.100.80:1766 gives 0x51ccc178.
        let key: [u8; 40] = [
            0x6d, 0x5a, 0x56, 0xda, 0x25, 0x5b, 0x0e, 0xc2, 0x41, 0x67, 0x25, 0x3d, 0x43, 0xa3,
            0x8f, 0xb0, 0xd0, 0xca, 0x2b, 0xcb, 0xae, 0x7b, 0x30, 0xb4, 0x77, 0xcb, 0x2d, 0xa3,
            0x80, 0x30, 0xf2, 0x0c, 0x6a, 0x42, 0xb7, 0x3b, 0xbe, 0xac, 0x01, 0xfa,
        ];
        let mut input = [0u8; 12];
        input[..4].copy_from_slice(&[66, 9, 149, 187]);
        input[4..8].copy_from_slice(&[161, 142, 100, 80]);
        input[8..10].copy_from_slice(&2794u16.to_be_bytes());
        input[10..12].copy_from_slice(&1766u16.to_be_bytes());
        assert_eq!(toeplitz(&key, &input), 0x51cc_c178);
    }

    #[test]
    fn symmetric_both_ways() {
        let a = [10, 0, 0, 1];
        let b = [192, 0, 2, 7];
        assert_eq!(rss_v4(a, b, 1234, 80), rss_v4(b, a, 80, 1234));
        assert_eq!(flow_v4(1, 2, 6, 10, 20), flow_v4(2, 1, 6, 20, 10));
        assert_ne!(flow_v4(1, 2, 6, 10, 20), flow_v4(1, 2, 6, 10, 21));
        let x = [1u8; 16];
        let y = [2u8; 16];
        assert_eq!(flow_v6(x, y, 17, 5, 6), flow_v6(y, x, 17, 6, 5));
    }
}
