//! IPv6 Neighbor Discovery over a PPP link (RFC 5072 §5, RFC 4861), both roles:
//!
//! * The BNG sends Router Advertisements (RFC 4861 §4.2, §6.2) from its link-local
//!   address `fe80::<our IPv6CP interface identifier>` to all-nodes, with a Prefix
//!   Information option (§4.6.2, L=1 A=1: the subscriber forms its address by SLAAC
//!   from the /64 and the identifier IPv6CP agreed, RFC 4862 §5.5.3, RFC 5072 §5), an
//!   MTU option (§4.6.4) and, when DNS servers are configured, an RDNSS option
//!   (RFC 8106 §5.1). It answers Router Solicitations (§6.2.6) and Neighbor
//!   Solicitations for its own link-local address (§7.2.4). PPP has no link-layer
//!   addresses, so no source/target link-layer address options are sent and any
//!   received are ignored (RFC 5072 §5; RFC 4861 §4.1–4.4 make them optional).
//! * The subscriber emulator sends Router Solicitations (§6.3.7) and reads the RA.
//!
//! Echo Requests to the BNG's link-local address get an Echo Reply (RFC 4443 §4.2),
//! so `ping fe80::…%ppp0` works from the subscriber.
//!
//! Received ND messages are checked as RFC 4861 §6.1.1/§6.1.2/§7.1.1 require: hop
//! limit 255, ICMPv6 code 0, valid checksum, length, and (RA) a link-local source.
//! Every builder returns a PPP frame (protocol 0x0057 + IPv6 datagram) ready to be
//! carried in a PPPoE session frame.

use alloc::vec::Vec;
use core::net::Ipv6Addr;
use dataplane::proto::icmpv6::{self, msg};

/// PPP protocol number of IPv6 (RFC 5072 §2).
pub const PPP_IPV6: u16 = 0x0057;
/// All-nodes multicast (RFC 4291 §2.7.1).
pub const ALL_NODES: u128 = 0xff02_0000_0000_0000_0000_0000_0000_0001;
/// All-routers multicast (RFC 4291 §2.7.1).
pub const ALL_ROUTERS: u128 = 0xff02_0000_0000_0000_0000_0000_0000_0002;
const NEXT_ICMPV6: u8 = 58;

/// `fe80::<iid>`.
pub fn link_local(iid: u64) -> u128 {
    (0xfe80u128 << 112) | u128::from(iid)
}

/// Whether `a` is link-local unicast (fe80::/10).
pub fn is_link_local(a: u128) -> bool {
    (a >> 118) == 0x3fa
}

/// What the Router Advertisement announces.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RaParams {
    /// The subscriber's /64 (upper 64 bits); 0 = no Prefix Information option (an
    /// IPoE link whose addresses come from DHCPv6 IA_NA only).
    pub prefix: u64,
    /// Router Lifetime, s (RFC 4861 §4.2; 0 = not a default router).
    pub router_lifetime_s: u16,
    /// Prefix valid lifetime, s (§4.6.2).
    pub valid_s: u32,
    /// Prefix preferred lifetime, s (§4.6.2).
    pub preferred_s: u32,
    /// Link MTU announced (§4.6.4); 0 = no MTU option.
    pub mtu: u32,
    /// Recursive DNS servers (RFC 8106 §5.1), at most 8 are sent.
    pub dns: Vec<Ipv6Addr>,
    /// RDNSS lifetime, s.
    pub dns_lifetime_s: u32,
    /// M flag: addresses by DHCPv6 (RFC 4861 §4.2).
    pub managed: bool,
    /// O flag: other configuration by DHCPv6 (RFC 4861 §4.2).
    pub other: bool,
    /// Our link-layer address on an Ethernet link (IPoE): sent as the Source
    /// Link-Layer Address option (§4.6.1); `None` on PPP.
    pub slla: Option<[u8; 6]>,
}

fn ipv6_frame(src: u128, dst: u128, hop_limit: u8, icmp: &mut [u8], out: &mut Vec<u8>) {
    let (s, d) = (Ipv6Addr::from(src), Ipv6Addr::from(dst));
    icmpv6::Packet::new_unchecked(&mut *icmp).fill_checksum(&s, &d);
    let len = icmp.len() as u16;
    out.extend_from_slice(&PPP_IPV6.to_be_bytes());
    out.extend_from_slice(&[0x60, 0, 0, 0]);
    out.extend_from_slice(&len.to_be_bytes());
    out.extend_from_slice(&[NEXT_ICMPV6, hop_limit]);
    out.extend_from_slice(&src.to_be_bytes());
    out.extend_from_slice(&dst.to_be_bytes());
    out.extend_from_slice(icmp);
}

/// A Router Advertisement from `fe80::<our_iid>` to `dst` (all-nodes, or the
/// soliciting host), as a PPP frame appended to `out`.
pub fn router_advertisement(our_iid: u64, dst: u128, p: &RaParams, out: &mut Vec<u8>) {
    let mut m = Vec::with_capacity(16 + 32 + 8 + 8 + 16 * 8);
    // Type, code, checksum, cur hop limit 64, flags M and O, router lifetime,
    // reachable time 0, retrans timer 0 (unspecified, §4.2).
    let flags = (u8::from(p.managed) << 7) | (u8::from(p.other) << 6);
    m.extend_from_slice(&[msg::ROUTER_ADVERT, 0, 0, 0, 64, flags]);
    m.extend_from_slice(&p.router_lifetime_s.to_be_bytes());
    m.extend_from_slice(&[0; 8]);
    if let Some(mac) = p.slla {
        // Source Link-Layer Address (§4.6.1): type 1, length 1.
        m.extend_from_slice(&[1, 1]);
        m.extend_from_slice(&mac);
    }
    if p.prefix != 0 {
        // Prefix Information (§4.6.2): type 3, length 4 (32 bytes), /64, L=1 A=1.
        m.extend_from_slice(&[3, 4, 64, 0xc0]);
        m.extend_from_slice(&p.valid_s.to_be_bytes());
        m.extend_from_slice(&p.preferred_s.min(p.valid_s).to_be_bytes());
        m.extend_from_slice(&[0; 4]);
        m.extend_from_slice(&(u128::from(p.prefix) << 64).to_be_bytes());
    }
    if p.mtu > 0 {
        // MTU (§4.6.4): type 5, length 1.
        m.extend_from_slice(&[5, 1, 0, 0]);
        m.extend_from_slice(&p.mtu.to_be_bytes());
    }
    if !p.dns.is_empty() {
        // RDNSS (RFC 8106 §5.1): type 25, length 1 + 2·n, reserved, lifetime, addresses.
        let n = p.dns.len().min(8);
        m.extend_from_slice(&[25, (1 + 2 * n) as u8, 0, 0]);
        m.extend_from_slice(&p.dns_lifetime_s.to_be_bytes());
        for a in p.dns.iter().take(n) {
            m.extend_from_slice(&a.octets());
        }
    }
    ipv6_frame(link_local(our_iid), dst, 255, &mut m, out);
}

/// A Router Solicitation from `fe80::<iid>` to all-routers (RFC 4861 §4.1, no source
/// link-layer address option on PPP), as a PPP frame appended to `out`.
pub fn router_solicitation(iid: u64, out: &mut Vec<u8>) {
    let mut m = [msg::ROUTER_SOLICIT, 0, 0, 0, 0, 0, 0, 0];
    ipv6_frame(link_local(iid), ALL_ROUTERS, 255, &mut m, out);
}

/// A solicited Neighbor Advertisement for `target` (our link-local address) to `dst`
/// (RFC 4861 §7.2.4: R=1, S=1 unless `dst` is all-nodes, O=1; no target link-layer
/// address on PPP).
pub fn neighbor_advertisement(target: u128, dst: u128, out: &mut Vec<u8>) {
    neighbor_advertisement_with(target, dst, None, out)
}

/// [`neighbor_advertisement`] on an Ethernet link: with the Target Link-Layer
/// Address option (§4.6.1), which §7.2.4 requires in answer to a multicast
/// solicitation.
pub fn neighbor_advertisement_with(
    target: u128,
    dst: u128,
    tlla: Option<[u8; 6]>,
    out: &mut Vec<u8>,
) {
    let flags = if dst == ALL_NODES { 0xa0 } else { 0xe0 };
    let mut m = Vec::with_capacity(32);
    m.extend_from_slice(&[msg::NEIGHBOR_ADVERT, 0, 0, 0, flags, 0, 0, 0]);
    m.extend_from_slice(&target.to_be_bytes());
    if let Some(mac) = tlla {
        m.extend_from_slice(&[2, 1]);
        m.extend_from_slice(&mac);
    }
    ipv6_frame(target, dst, 255, &mut m, out);
}

/// The Echo Reply (RFC 4443 §4.2) to `ip` if it is a valid Echo Request (RFC 4443 §4.1,
/// checksum verified, no extension headers) addressed to `ours`, as a PPP frame appended
/// to `out`; the reply carries the request's identifier, sequence number and data.
pub fn echo_reply(ip: &[u8], ours: u128, out: &mut Vec<u8>) -> bool {
    let Some(h) = ip.get(..40) else {
        return false;
    };
    let plen = usize::from(u16::from_be_bytes([h[4], h[5]]));
    let (Some(body), Some(src), Some(dst)) = (ip.get(40..40 + plen), u128_at(h, 8), u128_at(h, 24))
    else {
        return false;
    };
    if h[0] >> 4 != 6 || h[6] != NEXT_ICMPV6 || dst != ours || src == 0 || src >> 120 == 0xff {
        return false;
    }
    let Ok(p) = icmpv6::Packet::new_checked(body) else {
        return false;
    };
    if p.msg_type() != msg::ECHO_REQUEST
        || p.msg_code() != 0
        || !p.verify_checksum(&Ipv6Addr::from(src), &Ipv6Addr::from(dst))
    {
        return false;
    }
    let mut m = body.to_vec();
    if let Some(t) = m.first_mut() {
        *t = msg::ECHO_REPLY;
    }
    ipv6_frame(ours, src, 64, &mut m, out);
    true
}

/// Why an IPv6 packet was not accepted as an ND message.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NdError {
    /// Truncated or inconsistent IPv6 header or ICMPv6 message.
    Malformed,
    /// Not ICMPv6 directly after the fixed header, or an ICMPv6 type we do not handle.
    NotNd,
    /// Hop limit ≠ 255 or code ≠ 0 (RFC 4861 §6.1, §7.1).
    Invalid,
    /// ICMPv6 checksum wrong.
    BadChecksum,
}

/// A received ND message (or echo request) we act on.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Nd {
    /// Router Solicitation from `src`.
    RouterSolicit {
        /// Source address (may be unspecified).
        src: u128,
    },
    /// Neighbor Solicitation for `target`.
    NeighborSolicit {
        /// Source address (unspecified during DAD).
        src: u128,
        /// Target address.
        target: u128,
    },
    /// Router Advertisement.
    RouterAdvert {
        /// The router's link-local address.
        src: u128,
        /// Router Lifetime, s.
        lifetime_s: u16,
        /// The first /64 Prefix Information option with A=1 (upper 64 bits).
        slaac_prefix: Option<u64>,
        /// MTU option.
        mtu: Option<u32>,
        /// First RDNSS address.
        dns: Option<u128>,
    },
}

fn u128_at(b: &[u8], at: usize) -> Option<u128> {
    let s: [u8; 16] = b.get(at..at + 16)?.try_into().ok()?;
    Some(u128::from_be_bytes(s))
}

/// Parse an IPv6 datagram (starting at its fixed header) as an ND message. Trailing
/// bytes past the IPv6 payload length are ignored (link padding).
pub fn parse(ip: &[u8]) -> Result<Nd, NdError> {
    let h = ip.get(..40).ok_or(NdError::Malformed)?;
    if h[0] >> 4 != 6 {
        return Err(NdError::Malformed);
    }
    let plen = usize::from(u16::from_be_bytes([h[4], h[5]]));
    let body = ip.get(40..40 + plen).ok_or(NdError::Malformed)?;
    if h[6] != NEXT_ICMPV6 {
        return Err(NdError::NotNd);
    }
    let src = u128_at(h, 8).ok_or(NdError::Malformed)?;
    let dst = u128_at(h, 24).ok_or(NdError::Malformed)?;
    let p = icmpv6::Packet::new_checked(body).map_err(|_| NdError::Malformed)?;
    let t = p.msg_type();
    if !matches!(
        t,
        msg::ROUTER_SOLICIT | msg::ROUTER_ADVERT | msg::NEIGHBOR_SOLICIT
    ) {
        return Err(NdError::NotNd);
    }
    if h[7] != 255 || p.msg_code() != 0 {
        return Err(NdError::Invalid);
    }
    if !p.verify_checksum(&Ipv6Addr::from(src), &Ipv6Addr::from(dst)) {
        return Err(NdError::BadChecksum);
    }
    // Options must each have a non-zero length and fit (RFC 4861 §4.6).
    let opts_at = match t {
        msg::ROUTER_SOLICIT => 8,
        msg::ROUTER_ADVERT => 16,
        _ => 24,
    };
    let mut opts = body.get(opts_at..).ok_or(NdError::Malformed)?;
    let (mut prefix, mut mtu, mut dns) = (None, None, None);
    while !opts.is_empty() {
        let (ty, l) = match opts {
            [ty, l, ..] => (*ty, usize::from(*l) * 8),
            _ => return Err(NdError::Malformed),
        };
        if l == 0 {
            return Err(NdError::Malformed);
        }
        let o = opts.get(..l).ok_or(NdError::Malformed)?;
        match (ty, o) {
            (3, [_, 4, 64, flags, ..]) if flags & 0x40 != 0 && prefix.is_none() => {
                prefix = u128_at(o, 16).map(|a| (a >> 64) as u64);
            }
            (5, [_, 1, _, _, a, b, c, d]) => mtu = Some(u32::from_be_bytes([*a, *b, *c, *d])),
            (25, _) if dns.is_none() => dns = u128_at(o, 8),
            _ => {}
        }
        opts = opts.get(l..).unwrap_or(&[]);
    }
    match t {
        msg::ROUTER_SOLICIT => Ok(Nd::RouterSolicit { src }),
        msg::NEIGHBOR_SOLICIT => Ok(Nd::NeighborSolicit {
            src,
            target: u128_at(body, 8).ok_or(NdError::Malformed)?,
        }),
        _ => {
            // RFC 4861 §6.1.2: the source of an RA must be link-local.
            if !is_link_local(src) {
                return Err(NdError::Invalid);
            }
            Ok(Nd::RouterAdvert {
                src,
                lifetime_s: p.router_lifetime(),
                slaac_prefix: prefix,
                mtu,
                dns,
            })
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn params() -> RaParams {
        RaParams {
            prefix: 0x2001_0db8_0100_0007,
            router_lifetime_s: 1800,
            valid_s: 86400,
            preferred_s: 14400,
            mtu: 1492,
            dns: alloc::vec!["2001:db8::53".parse().unwrap()],
            dns_lifetime_s: 1800,
            managed: false,
            other: true,
            slla: None,
        }
    }

    #[test]
    fn ra_round_trip_with_valid_checksum() {
        let mut f = Vec::new();
        router_advertisement(0x1122_3344_5566_7788, ALL_NODES, &params(), &mut f);
        assert_eq!(&f[..2], &[0x00, 0x57]);
        let ip = &f[2..];
        // 16 RA + 32 PIO + 8 MTU + 24 RDNSS.
        assert_eq!(ip.len(), 40 + 80);
        assert_eq!(ip[7], 255);
        assert_eq!(
            Ipv6Addr::from(u128_at(ip, 8).unwrap()),
            "fe80::1122:3344:5566:7788".parse::<Ipv6Addr>().unwrap()
        );
        let icmp = icmpv6::Packet::new_checked(&ip[40..]).unwrap();
        assert!(icmp.verify_checksum(
            &Ipv6Addr::from(link_local(0x1122_3344_5566_7788)),
            &Ipv6Addr::from(ALL_NODES)
        ));
        // Flags: M clear, O set (RFC 4861 §4.2), as configured.
        assert_eq!(ip[40 + 5], 0x40);
        // The dataplane's own ND parser agrees with ours on the prefix option.
        let r = icmpv6::Repr::parse(&icmp).unwrap();
        assert!(matches!(r, icmpv6::Repr::Ndisc(_)), "{r:?}");
        assert_eq!(
            parse(ip),
            Ok(Nd::RouterAdvert {
                src: link_local(0x1122_3344_5566_7788),
                lifetime_s: 1800,
                slaac_prefix: Some(0x2001_0db8_0100_0007),
                mtu: Some(1492),
                dns: Some(0x2001_0db8_0000_0000_0000_0000_0000_0053),
            })
        );
    }

    #[test]
    fn rs_and_ns_parse_and_reject_bad_ones() {
        let mut f = Vec::new();
        router_solicitation(42, &mut f);
        assert_eq!(
            parse(&f[2..]),
            Ok(Nd::RouterSolicit {
                src: link_local(42)
            })
        );
        // Hop limit below 255: not on-link, discard.
        let mut bad = f[2..].to_vec();
        bad[7] = 64;
        assert_eq!(parse(&bad), Err(NdError::Invalid));
        // Checksum.
        let mut bad = f[2..].to_vec();
        bad[42] ^= 1;
        assert_eq!(parse(&bad), Err(NdError::BadChecksum));
        // Truncation anywhere.
        for n in 0..f.len() - 2 {
            assert!(parse(&f[2..2 + n]).is_err(), "{n}");
        }
        // Padding past the payload length is ignored.
        let mut padded = f[2..].to_vec();
        padded.extend_from_slice(&[0; 10]);
        assert!(parse(&padded).is_ok());
        let mut na = Vec::new();
        neighbor_advertisement(link_local(7), link_local(9), &mut na);
        // An NA is not something we act on.
        assert_eq!(parse(&na[2..]), Err(NdError::NotNd));
        // A zero-length option is malformed (RFC 4861 §4.6).
        let mut ra = Vec::new();
        router_advertisement(1, ALL_NODES, &params(), &mut ra);
        let mut z = ra[2..].to_vec();
        z[40 + 16 + 1] = 0;
        let (s, d) = (
            Ipv6Addr::from(u128_at(&z, 8).unwrap()),
            Ipv6Addr::from(ALL_NODES),
        );
        icmpv6::Packet::new_unchecked(&mut z[40..]).fill_checksum(&s, &d);
        assert_eq!(parse(&z), Err(NdError::Malformed));
    }

    #[test]
    fn echo_request_to_our_link_local_is_answered() {
        let (ours, peer) = (link_local(1), link_local(2));
        let mut m = alloc::vec![msg::ECHO_REQUEST, 0, 0, 0, 0x12, 0x34, 0, 7, 0xaa, 0xbb];
        let mut req = Vec::new();
        ipv6_frame(peer, ours, 64, &mut m, &mut req);
        let mut rep = Vec::new();
        assert!(echo_reply(&req[2..], ours, &mut rep));
        let ip = &rep[2..];
        assert_eq!(u128_at(ip, 8), Some(ours));
        assert_eq!(u128_at(ip, 24), Some(peer));
        assert_eq!(ip[40], msg::ECHO_REPLY);
        assert_eq!(&ip[44..], &[0x12, 0x34, 0, 7, 0xaa, 0xbb]);
        let icmp = icmpv6::Packet::new_checked(&ip[40..]).unwrap();
        assert!(icmp.verify_checksum(&Ipv6Addr::from(ours), &Ipv6Addr::from(peer)));
        // Not for us, bad checksum, not an echo request: no answer.
        let reply = ip.to_vec();
        let mut sink = Vec::new();
        assert!(!echo_reply(&req[2..], link_local(3), &mut sink));
        let mut bad = req[2..].to_vec();
        bad[47] ^= 1;
        assert!(!echo_reply(&bad, ours, &mut sink));
        assert!(!echo_reply(&reply, peer, &mut sink));
        for n in 0..req.len() - 2 {
            assert!(!echo_reply(&req[2..2 + n], ours, &mut sink));
        }
        assert!(sink.is_empty());
    }

    #[test]
    fn addresses() {
        assert!(is_link_local(link_local(1)));
        assert!(!is_link_local(ALL_NODES));
        assert!(!is_link_local(0x2001_0db8 << 96));
    }

    proptest::proptest! {
        #[test]
        fn parse_never_panics(b in proptest::collection::vec(proptest::num::u8::ANY, 0..200)) {
            let _ = parse(&b);
            let _ = echo_reply(&b, link_local(1), &mut Vec::new());
        }
    }
}
