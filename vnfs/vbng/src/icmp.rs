//! ICMP messages the BNG originates (RFC 792), built with the engine's
//! `dataplane::proto::icmpv4` code:
//!
//! * Time Exceeded (type 11 code 0) when a forwarded datagram's TTL expires
//!   (RFC 1812 §5.3.1), in both directions: upstream the error goes back to the
//!   subscriber inside its PPPoE session (source: the gateway address announced in
//!   IPCP), downstream to the previous hop on the core link (source: `core_ip`).
//! * Destination Unreachable / Fragmentation Needed (type 3 code 4) carrying the
//!   session's MTU in the Next-Hop MTU field (RFC 1191 §4) when a DF datagram does
//!   not fit the subscriber's PPP MTU downstream.
//! * Echo Reply (type 0) to an Echo Request for one of our addresses, answered in
//!   place in the request's buffer.
//!
//! Errors are never sent about ICMP errors, non-first fragments, broadcast or
//! multicast datagrams or from non-unicast sources (RFC 1812 §4.3.2.7,
//! `icmpv4::error_allowed`); they quote as much of the datagram as keeps the error
//! within 576 bytes (§4.3.2.3) when the session's MTU allows, else the header + 8
//! bytes (RFC 792), and are rate limited by a token bucket (§4.3.2.8, the engine's
//! `ip4::RateLimit`). Error buffers come from the worker's packet pool; nothing here
//! touches the heap.

use core::net::Ipv4Addr;
use dataplane::buf::Pkt;
use dataplane::proto::icmpv4::{self, ErrorKind, QuoteLimit};
use dataplane::proto::{ipv4, IpProtocol};

/// TTL of the datagrams we originate.
pub const TTL: u8 = 64;

pub use crate::access::{AccessHdr, MAX_ACCESS_HDR};

/// Why no error was sent.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NotSent {
    /// RFC 1812 §4.3.2.7 forbids it (or the datagram is not valid IPv4).
    NotAllowed,
    /// No source address configured for that side.
    NoSource,
    /// The token bucket is empty (§4.3.2.8).
    RateLimited,
    /// No packet buffer free, or it is too small.
    NoBuffer,
}

/// Whether an error about the datagram `ip` may be sent (RFC 1812 §4.3.2.7).
pub fn allowed(ip: &[u8]) -> bool {
    ipv4::Packet::new_checked(ip).is_ok_and(|v| icmpv4::error_allowed(&v))
}

/// How much to quote in an error that must fit a link MTU of `mtu` bytes.
pub fn quote_for(mtu: u16) -> QuoteLimit {
    if usize::from(mtu) >= icmpv4::RFC1812_MAX_ERROR_LEN {
        QuoteLimit::Rfc1812
    } else {
        QuoteLimit::HeaderPlus8
    }
}

/// Build into `e` (reset first) a frame with header `hdr_len` bytes written by `hdr`
/// followed by an ICMP error about `offending` from `src`. Returns false when the
/// buffer is too small or the error cannot be built.
fn build(
    e: &mut Pkt,
    offending: &[u8],
    src: Ipv4Addr,
    kind: ErrorKind,
    quote: QuoteLimit,
    hdr_len: usize,
    hdr: impl FnOnce(&mut [u8], usize) -> Option<usize>,
) -> bool {
    e.reset();
    let room = hdr_len + icmpv4::RFC1812_MAX_ERROR_LEN;
    let Ok(buf) = e.append(room) else {
        return false;
    };
    let Some(body) = buf.get_mut(hdr_len..) else {
        return false;
    };
    let Ok(n) = icmpv4::build_error(body, offending, src, TTL, kind, quote) else {
        return false;
    };
    if hdr(buf, n).is_none() {
        return false;
    }
    e.set_len(hdr_len + n).is_ok()
}

/// Build into `e` an ICMP error from `src` about `offending` (an IPv4 datagram from
/// the subscriber), framed for the subscriber's PPPoE session.
pub fn build_access_error(
    e: &mut Pkt,
    hdr: &AccessHdr,
    offending: &[u8],
    src: Ipv4Addr,
    kind: ErrorKind,
    mtu: u16,
) -> bool {
    build(
        e,
        offending,
        src,
        kind,
        quote_for(mtu),
        hdr.len(),
        |b, n| hdr.write(b, n, false),
    )
}

/// Build into `e` an ICMP error from `src` about `offending` (an IPv4 datagram from
/// the core), framed as untagged Ethernet from `our_mac` to `dst_mac`.
pub fn build_core_error(
    e: &mut Pkt,
    dst_mac: [u8; 6],
    our_mac: [u8; 6],
    offending: &[u8],
    src: Ipv4Addr,
    kind: ErrorKind,
) -> bool {
    build(e, offending, src, kind, QuoteLimit::Rfc1812, 14, |b, _| {
        let h = b.get_mut(..14)?;
        h[0..6].copy_from_slice(&dst_mac);
        h[6..12].copy_from_slice(&our_mac);
        h[12..14].copy_from_slice(&[0x08, 0x00]);
        Some(14)
    })
}

/// Whether `ip` (an IPv4 datagram) is an ICMP Echo Request (first fragment only).
#[inline]
pub fn is_echo_request(ip: &[u8]) -> bool {
    let Some(h) = ip.get(..20) else {
        return false;
    };
    let hl = usize::from(h[0] & 0x0f) * 4;
    h[9] == 1
        && u16::from_be_bytes([h[6], h[7]]) & 0x3fff == 0
        && ip.get(hl) == Some(&icmpv4::msg::ECHO_REQUEST)
}

/// Turn the Echo Request `ip` into its Echo Reply in place (RFC 792): type 8 → 0 with
/// an incremental ICMP checksum update, addresses swapped, TTL reset, header checksum
/// recomputed. False (nothing changed) when it is not a valid, unfragmented echo
/// request with a correct ICMP checksum.
pub fn echo_reply_in_place(ip: &mut [u8]) -> bool {
    let Ok(mut v) = ipv4::Packet::new_checked(&mut *ip) else {
        return false;
    };
    if v.protocol() != IpProtocol::ICMP || v.is_fragment() {
        return false;
    }
    let (s, t) = (v.src_addr(), v.dst_addr());
    {
        let Ok(mut ic) = icmpv4::Packet::new_checked(v.payload_mut()) else {
            return false;
        };
        if !ic.verify_checksum() || !ic.echo_request_to_reply() {
            return false;
        }
    }
    v.set_src_addr(t);
    v.set_dst_addr(s);
    v.set_ttl(TTL);
    v.fill_checksum();
    true
}

#[cfg(test)]
mod tests {
    use super::*;
    use dataplane::buf::Pool;
    use dataplane::proto::checksum;
    use dataplane::proto::ethernet::Vlans;

    fn datagram(proto: u8, payload: &[u8], df: bool) -> alloc::vec::Vec<u8> {
        let len = 20 + payload.len();
        let mut v = alloc::vec![
            0x45,
            0,
            (len >> 8) as u8,
            len as u8,
            0,
            1,
            if df { 0x40 } else { 0 },
            0,
            1,
            proto,
            0,
            0,
            100,
            64,
            0,
            5,
            8,
            8,
            8,
            8
        ];
        let c = checksum::internet(&v);
        v[10..12].copy_from_slice(&c.to_be_bytes());
        v.extend_from_slice(payload);
        v
    }

    #[test]
    fn access_error_is_framed_in_the_session() {
        let pool = Pool::new(4).unwrap();
        let mut e = pool.alloc().unwrap();
        let hdr = AccessHdr {
            dst: [2, 1, 1, 1, 1, 1],
            src: [2, 0, 0, 0, 0, 0xa],
            vlans: Vlans {
                svlan: 10,
                cvlan: 20,
            },
            sid: 0x55,
        };
        let off = datagram(17, &[0xab; 1000], false);
        let gw = Ipv4Addr::new(100, 64, 0, 1);
        assert!(build_access_error(
            &mut e,
            &hdr,
            &off,
            gw,
            ErrorKind::TimeExceeded { code: 0 },
            1492
        ));
        let d = e.data();
        assert_eq!(d.len(), 30 + 576);
        assert_eq!(&d[12..14], &[0x88, 0xa8]);
        assert_eq!(&d[16..18], &[0x81, 0x00]);
        assert_eq!(&d[20..22], &[0x88, 0x64]);
        assert_eq!(u16::from_be_bytes([d[24], d[25]]), 0x55);
        assert_eq!(usize::from(u16::from_be_bytes([d[26], d[27]])), 2 + 576);
        let ip = &d[30..];
        assert!(checksum::verify(&ip[..20]));
        assert_eq!(&ip[12..16], &gw.octets());
        assert_eq!(&ip[16..20], &[100, 64, 0, 5]);
        assert_eq!((ip[20], ip[21]), (11, 0));
        assert!(checksum::verify(&ip[20..]));
        // A small MTU quotes only header + 8.
        assert!(build_access_error(
            &mut e,
            &hdr,
            &off,
            gw,
            ErrorKind::TimeExceeded { code: 0 },
            300
        ));
        assert_eq!(e.len(), 30 + 20 + 8 + 28);
        // Never about an ICMP error.
        let err = datagram(1, &[3, 4, 0, 0, 0, 0, 0, 0], false);
        assert!(!allowed(&err));
        assert!(!build_access_error(
            &mut e,
            &hdr,
            &err,
            gw,
            ErrorKind::TimeExceeded { code: 0 },
            1492
        ));
        assert!(allowed(&off));
        pool.free(e);
    }

    #[test]
    fn echo_in_place() {
        let mut icmp = alloc::vec![8, 0, 0, 0, 0, 7, 0, 1, 1, 2, 3];
        let c = checksum::internet(&icmp);
        icmp[2..4].copy_from_slice(&c.to_be_bytes());
        let mut ip = datagram(1, &icmp, false);
        assert!(is_echo_request(&ip));
        assert!(echo_reply_in_place(&mut ip));
        assert!(!is_echo_request(&ip));
        assert_eq!(&ip[12..16], &[8, 8, 8, 8]);
        assert_eq!(&ip[16..20], &[100, 64, 0, 5]);
        assert_eq!(ip[8], TTL);
        assert!(checksum::verify(&ip[..20]));
        assert_eq!(ip[20], 0);
        assert!(checksum::verify(&ip[20..]));
        // Bad ICMP checksum: unchanged.
        let mut bad = datagram(1, &icmp, false);
        bad[22] ^= 1;
        assert!(!echo_reply_in_place(&mut bad));
        let mut udp = datagram(17, &[0; 8], false);
        assert!(!echo_reply_in_place(&mut udp));
    }
}
