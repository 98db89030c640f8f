//! The internet checksum: RFC 1071 (computation), RFC 768/793/8200 §8.1 pseudo-headers,
//! RFC 1624 (incremental update).
//!
//! Sums are kept as the folded one's-complement sum *before* the final inversion
//! (`sum`), so that partial sums (pseudo-header + payload) combine with [`combine`].
//! A field holds `!sum`. A received message verifies when the sum over it (checksum
//! field included) is `0xffff`.
//!
//! [`data`] reads eight bytes at a time in native byte order and adds the two 32-bit
//! halves into four independent 64-bit accumulators (no carry chain, so the loop
//! pipelines and auto-vectorises); RFC 1071 §2(B) makes the byte order irrelevant up to
//! one final byte swap, and 2^16 ≡ 1 (mod 2^16 - 1) makes the word width irrelevant up
//! to the final fold.

use super::IpProtocol;
use core::net::{Ipv4Addr, Ipv6Addr};

/// Folds a 64-bit accumulator of one's-complement partial sums (16-bit words added
/// as integers) to 16 bits (RFC 1071 §4.1's end-around carry). Nonzero sums fold to
/// `1..=0xffff`.
///
/// Two end-around-carry additions: the 32-bit halves (add with carry), then the
/// 16-bit halves by adding the word to itself rotated by 16 bits, whose upper half
/// is then the sum of the halves plus the carry out of the lower one (the fold of
/// Linux's `csum_fold`). Seven instructions for any accumulator.
#[inline(always)]
pub fn fold(acc: u64) -> u16 {
    let (s, carry) = (acc as u32).overflowing_add((acc >> 32) as u32);
    // At most 2^32 - 2 when the addition carried, so adding the carry cannot.
    let s = s + u32::from(carry);
    (s.wrapping_add(s.rotate_right(16)) >> 16) as u16
}

/// Sums `data` in native byte order into a 64-bit accumulator (not folded).
#[inline]
fn accumulate_ne(data: &[u8]) -> u64 {
    let mut a0: u64 = 0;
    let mut a1: u64 = 0;
    let mut a2: u64 = 0;
    let mut a3: u64 = 0;
    let mut chunks = data.chunks_exact(32);
    for c in &mut chunks {
        let mut w = [0u64; 4];
        for (wi, b) in w.iter_mut().zip(c.chunks_exact(8)) {
            let mut x = [0u8; 8];
            x.copy_from_slice(b);
            *wi = u64::from_ne_bytes(x);
        }
        a0 += (w[0] & 0xffff_ffff) + (w[0] >> 32);
        a1 += (w[1] & 0xffff_ffff) + (w[1] >> 32);
        a2 += (w[2] & 0xffff_ffff) + (w[2] >> 32);
        a3 += (w[3] & 0xffff_ffff) + (w[3] >> 32);
    }
    let rest = chunks.remainder();
    let mut words = rest.chunks_exact(8);
    for b in &mut words {
        let mut x = [0u8; 8];
        x.copy_from_slice(b);
        let w = u64::from_ne_bytes(x);
        a0 += (w & 0xffff_ffff) + (w >> 32);
    }
    let mut halves = words.remainder().chunks_exact(2);
    for h in &mut halves {
        if let &[x, y] = h {
            a1 += u64::from(u16::from_ne_bytes([x, y]));
        }
    }
    if let [last] = halves.remainder() {
        // An odd final byte is the high-order byte of a zero-padded word (RFC 1071 §4.1).
        a2 += u64::from(u16::from_ne_bytes([*last, 0]));
    }
    // Each accumulator gains < 2^33 per 32 bytes: the total cannot overflow below
    // 2^29 × 32 bytes, far beyond any packet.
    a0 + a1 + a2 + a3
}

/// The folded one's-complement sum of `data` as 16-bit big-endian words (RFC 1071),
/// not inverted.
#[inline]
pub fn data(data: &[u8]) -> u16 {
    u16::from_be(fold(accumulate_ne(data)))
}

/// One's-complement sum of several partial sums.
#[inline]
pub fn combine(sums: &[u16]) -> u16 {
    let mut acc: u64 = 0;
    for s in sums {
        acc += u64::from(*s);
    }
    fold(acc)
}

/// One's-complement addition of two partial sums.
#[inline(always)]
pub fn add(a: u16, b: u16) -> u16 {
    fold(u64::from(a) + u64::from(b))
}

/// The value to store in a checksum field covering `data` alone: `!sum(data)`.
#[inline]
pub fn internet(bytes: &[u8]) -> u16 {
    !data(bytes)
}

/// True when `bytes`, checksum field included, verify (sum is `0xffff`).
#[inline]
pub fn verify(bytes: &[u8]) -> bool {
    data(bytes) == 0xffff
}

/// The IPv4 pseudo-header sum (RFC 768, RFC 793 §3.1): source, destination, zero,
/// protocol, upper-layer length.
#[inline]
pub fn pseudo_header_v4(src: Ipv4Addr, dst: Ipv4Addr, proto: IpProtocol, len: u16) -> u16 {
    let s = u32::from(src);
    let d = u32::from(dst);
    fold(
        u64::from(s >> 16)
            + u64::from(s & 0xffff)
            + u64::from(d >> 16)
            + u64::from(d & 0xffff)
            + u64::from(proto.0)
            + u64::from(len),
    )
}

/// The IPv6 pseudo-header sum (RFC 8200 §8.1): source, destination, 32-bit
/// upper-layer length, three zero bytes, next header.
#[inline]
pub fn pseudo_header_v6(src: &Ipv6Addr, dst: &Ipv6Addr, next: IpProtocol, len: u32) -> u16 {
    let s = u128::from(*src);
    let d = u128::from(*dst);
    let mut acc: u64 = 0;
    for a in [s, d] {
        acc += (a as u64 & 0xffff_ffff)
            + ((a >> 32) as u64 & 0xffff_ffff)
            + ((a >> 64) as u64 & 0xffff_ffff)
            + ((a >> 96) as u64 & 0xffff_ffff);
    }
    acc += u64::from(len >> 16) + u64::from(len & 0xffff) + u64::from(next.0);
    fold(acc)
}

/// The addresses of an IPv4 or IPv6 pseudo-header, for the upper-layer checksums.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PseudoHeader {
    V4 { src: Ipv4Addr, dst: Ipv4Addr },
    V6 { src: Ipv6Addr, dst: Ipv6Addr },
}

impl PseudoHeader {
    /// The pseudo-header sum for protocol `proto` and upper-layer length `len`.
    #[inline]
    pub fn sum(&self, proto: IpProtocol, len: u32) -> u16 {
        match self {
            PseudoHeader::V4 { src, dst } => {
                // The IPv4 length field is 16 bits; longer lengths fold the same way.
                fold(
                    u64::from(pseudo_header_v4(*src, *dst, proto, 0))
                        + u64::from(len >> 16)
                        + u64::from(len & 0xffff),
                )
            }
            PseudoHeader::V6 { src, dst } => pseudo_header_v6(src, dst, proto, len),
        }
    }

    /// True for the IPv6 variant (where a zero UDP checksum is not allowed).
    #[inline]
    pub fn is_v6(&self) -> bool {
        matches!(self, PseudoHeader::V6 { .. })
    }
}

/// RFC 1624 eqn. 3: the new checksum field after a 16-bit word changes from `old` to
/// `new`: `HC' = ~(~HC + ~m + m')`.
#[inline(always)]
pub fn update16(hc: u16, old: u16, new: u16) -> u16 {
    !fold(u64::from(!hc) + u64::from(!old) + u64::from(new))
}

/// RFC 1624 eqn. 3 for a 32-bit field (an IPv4 address, a TCP sequence number), as two
/// 16-bit words.
#[inline(always)]
pub fn update32(hc: u16, old: u32, new: u32) -> u16 {
    !fold(
        u64::from(!hc)
            + u64::from(!(old >> 16) as u16)
            + u64::from(!(old as u16))
            + u64::from(new >> 16)
            + u64::from(new & 0xffff),
    )
}

/// RFC 1624 eqn. 3 for an even-length region that changed from `old` to `new` (an
/// IPv6 address). The region must start at an even offset of the checksummed data
/// (for an odd offset, swap the bytes of each word first, as
/// [`super::tcp::Packet::update_checksum16_at`] does). Returns `hc` unchanged if the
/// lengths differ or are odd.
#[inline]
pub fn update_bytes(hc: u16, old: &[u8], new: &[u8]) -> u16 {
    if old.len() != new.len() || old.len() & 1 != 0 {
        return hc;
    }
    // ~m summed word by word equals ~(sum of m) in one's complement arithmetic.
    !fold(u64::from(!hc) + u64::from(!data(old)) + u64::from(data(new)))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The textbook RFC 1071 loop, the reference for the fast version.
    fn reference(bytes: &[u8]) -> u16 {
        let mut sum: u32 = 0;
        let mut i = 0;
        while i + 1 < bytes.len() {
            sum += u32::from(u16::from_be_bytes([bytes[i], bytes[i + 1]]));
            i += 2;
        }
        if i < bytes.len() {
            sum += u32::from(bytes[i]) << 8;
        }
        while sum > 0xffff {
            sum = (sum & 0xffff) + (sum >> 16);
        }
        sum as u16
    }

    /// The textbook end-around-carry loop.
    fn fold_reference(mut acc: u64) -> u16 {
        while acc > 0xffff {
            acc = (acc & 0xffff) + (acc >> 16);
        }
        acc as u16
    }

    #[test]
    fn fold_matches_the_loop_for_every_kind_of_accumulator() {
        let mut edges = alloc::vec![
            0u64,
            1,
            0xffff,
            0x1_0000,
            0xffff_ffff,
            0x1_0000_0000,
            u64::MAX
        ];
        for k in 0..64 {
            let b = 1u64 << k;
            edges.extend([b, b - 1, b + 1, !b, u64::MAX - b]);
        }
        for h in [0u64, 1, 0xffff, 0xfffe, 0x1_0000, 0xffff_ffff] {
            for l in [0u64, 1, 0xffff, 0xfffe, 0x1_0000, 0xffff_ffff] {
                edges.push(h << 32 | l);
                edges.push(h << 16 | l);
            }
        }
        let mut x: u64 = 0x9e37_79b9_7f4a_7c15;
        for _ in 0..200_000 {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            edges.push(x);
            edges.push(x >> (x % 64));
        }
        for &a in &edges {
            let f = fold(a);
            assert_eq!(f, fold_reference(a), "{a:#x}");
            // nonzero sums never fold to zero
            assert_eq!(f == 0, a == 0, "{a:#x}");
        }
    }

    #[test]
    fn rfc1071_example() {
        // RFC 1071 §3: bytes 00 01 f2 03 f4 f5 f6 f7 sum to ddf2.
        assert_eq!(
            data(&[0x00, 0x01, 0xf2, 0x03, 0xf4, 0xf5, 0xf6, 0xf7]),
            0xddf2
        );
    }

    #[test]
    fn fast_matches_reference_all_lengths() {
        let mut bytes = [0u8; 300];
        let mut x: u32 = 0x1234_5678;
        for b in bytes.iter_mut() {
            x = x.wrapping_mul(1_664_525).wrapping_add(1_013_904_223);
            *b = (x >> 24) as u8;
        }
        for len in 0..bytes.len() {
            for start in 0..3 {
                let s = &bytes[start..len.max(start)];
                assert_eq!(data(s), reference(s), "len {len} start {start}");
            }
        }
        let ff = [0xffu8; 257];
        assert_eq!(data(&ff), reference(&ff));
    }

    #[test]
    fn ipv4_header_checksum() {
        // A captured IPv4 header (checksum b1e6) from the Wikipedia example.
        let hdr = [
            0x45, 0x00, 0x00, 0x73, 0x00, 0x00, 0x40, 0x00, 0x40, 0x11, 0xb8, 0x61, 0xc0, 0xa8,
            0x00, 0x01, 0xc0, 0xa8, 0x00, 0xc7,
        ];
        assert!(verify(&hdr));
        let mut z = hdr;
        z[10] = 0;
        z[11] = 0;
        assert_eq!(internet(&z), 0xb861);
    }

    #[test]
    fn incremental_matches_recompute() {
        let mut hdr = [
            0x45u8, 0x00, 0x00, 0x73, 0x00, 0x00, 0x40, 0x00, 0x40, 0x11, 0xb8, 0x61, 0xc0, 0xa8,
            0x00, 0x01, 0xc0, 0xa8, 0x00, 0xc7,
        ];
        // TTL 64 -> 63 as a 16-bit word change (TTL, protocol).
        let old = u16::from_be_bytes([hdr[8], hdr[9]]);
        hdr[8] -= 1;
        let new = u16::from_be_bytes([hdr[8], hdr[9]]);
        let hc = update16(0xb861, old, new);
        hdr[10] = 0;
        hdr[11] = 0;
        assert_eq!(hc, internet(&hdr));
        // Source address rewrite (NAT) as a 32-bit change.
        let old_src = u32::from_be_bytes([hdr[12], hdr[13], hdr[14], hdr[15]]);
        let new_src = 0x0a00_0001u32;
        hdr[12..16].copy_from_slice(&new_src.to_be_bytes());
        let hc2 = update32(hc, old_src, new_src);
        assert_eq!(hc2, internet(&hdr));
        // Same change through the byte-region form.
        assert_eq!(
            update_bytes(hc, &old_src.to_be_bytes(), &new_src.to_be_bytes()),
            hc2
        );
    }

    #[test]
    fn pseudo_headers() {
        let s4 = pseudo_header_v4(
            Ipv4Addr::new(192, 168, 0, 1),
            Ipv4Addr::new(192, 168, 0, 199),
            IpProtocol::UDP,
            0x5f,
        );
        let mut raw = [0u8; 12];
        raw[0..4].copy_from_slice(&[192, 168, 0, 1]);
        raw[4..8].copy_from_slice(&[192, 168, 0, 199]);
        raw[9] = 17;
        raw[10..12].copy_from_slice(&0x5fu16.to_be_bytes());
        assert_eq!(s4, reference(&raw));
        let src: Ipv6Addr = "fe80::1".parse().unwrap();
        let dst: Ipv6Addr = "ff02::1:ff00:2".parse().unwrap();
        let mut raw6 = [0u8; 40];
        raw6[0..16].copy_from_slice(&src.octets());
        raw6[16..32].copy_from_slice(&dst.octets());
        raw6[32..36].copy_from_slice(&0x1_0020u32.to_be_bytes());
        raw6[39] = 58;
        assert_eq!(
            pseudo_header_v6(&src, &dst, IpProtocol::ICMPV6, 0x1_0020),
            reference(&raw6)
        );
        let ph = PseudoHeader::V6 { src, dst };
        assert_eq!(ph.sum(IpProtocol::ICMPV6, 0x1_0020), reference(&raw6));
    }
}
