//! The few IPv4 (RFC 791) and IPv6 (RFC 8200) header facts ESP needs: header length,
//! the upper-layer protocol and where its field sits, lengths, addresses, fragments,
//! and the ports for policy selectors (RFC 4301 §4.4.1.1). Parsing never panics.

use crate::error::DropReason;
use core::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use dataplane::proto::{checksum, IpProtocol};

pub const PROTO_IPV4: u8 = 4;
pub const PROTO_TCP: u8 = 6;
pub const PROTO_UDP: u8 = 17;
pub const PROTO_IPV6: u8 = 41;
pub const PROTO_ESP: u8 = 50;
pub const PROTO_NONE: u8 = 59;
pub const PROTO_SCTP: u8 = 132;

const EXT_HOP_BY_HOP: u8 = 0;
const EXT_ROUTING: u8 = 43;
const EXT_FRAGMENT: u8 = 44;
const EXT_DEST_OPTS: u8 = 60;

/// Parsed IP header facts.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct IpInfo {
    pub version: u8,
    /// Bytes before the upper-layer header (IPv6: fixed header + the extension headers
    /// that precede ESP in transport mode).
    pub hdr_len: usize,
    /// Upper-layer protocol (IPv4 protocol / last IPv6 next header).
    pub proto: u8,
    /// Offset of the byte that holds `proto`.
    pub proto_off: usize,
    /// Packet length according to the header (≤ buffer length).
    pub total_len: usize,
    pub src: IpAddr,
    pub dst: IpAddr,
    /// Traffic class / TOS byte.
    pub tos: u8,
    pub fragment: bool,
}

#[inline]
pub(crate) fn be16(d: &[u8], off: usize) -> Option<u16> {
    let b = d.get(off..off + 2)?;
    Some(u16::from_be_bytes([b[0], b[1]]))
}

#[inline]
pub(crate) fn be32(d: &[u8], off: usize) -> Option<u32> {
    let b = d.get(off..off + 4)?;
    Some(u32::from_be_bytes([b[0], b[1], b[2], b[3]]))
}

#[inline]
pub(crate) fn put(d: &mut [u8], off: usize, bytes: &[u8]) -> Option<()> {
    d.get_mut(off..off + bytes.len())?.copy_from_slice(bytes);
    Some(())
}

fn v4addr(d: &[u8], off: usize) -> Option<Ipv4Addr> {
    let b: [u8; 4] = d.get(off..off + 4)?.try_into().ok()?;
    Some(Ipv4Addr::from(b))
}

fn v6addr(d: &[u8], off: usize) -> Option<Ipv6Addr> {
    let b: [u8; 16] = d.get(off..off + 16)?.try_into().ok()?;
    Some(Ipv6Addr::from(b))
}

/// Parses the IP header at the start of `d`.
pub fn parse(d: &[u8]) -> Result<IpInfo, DropReason> {
    parse_inner(d).ok_or(DropReason::Malformed)
}

fn parse_inner(d: &[u8]) -> Option<IpInfo> {
    let first = *d.first()?;
    match first >> 4 {
        4 => {
            let ihl = usize::from(first & 0x0f) * 4;
            let total = usize::from(be16(d, 2)?);
            if ihl < 20 || total < ihl || total > d.len() {
                return None;
            }
            let frag = be16(d, 6)?;
            Some(IpInfo {
                version: 4,
                hdr_len: ihl,
                proto: *d.get(9)?,
                proto_off: 9,
                total_len: total,
                src: IpAddr::V4(v4addr(d, 12)?),
                dst: IpAddr::V4(v4addr(d, 16)?),
                tos: *d.get(1)?,
                fragment: frag & 0x3fff != 0,
            })
        }
        6 => {
            let total = 40 + usize::from(be16(d, 4)?);
            if total > d.len() {
                return None;
            }
            let mut proto = *d.get(6)?;
            let mut proto_off = 6;
            let mut off = 40;
            let mut fragment = false;
            // Walk the extension headers that come before ESP (RFC 4303 §3.1.1).
            loop {
                match proto {
                    EXT_HOP_BY_HOP | EXT_ROUTING | EXT_DEST_OPTS => {
                        let len = (usize::from(*d.get(off + 1)?) + 1) * 8;
                        proto_off = off;
                        proto = *d.get(off)?;
                        off += len;
                    }
                    EXT_FRAGMENT => {
                        fragment = true;
                        proto_off = off;
                        proto = *d.get(off)?;
                        off += 8;
                    }
                    _ => break,
                }
                if off > total {
                    return None;
                }
            }
            let tc = ((be16(d, 0)? >> 4) & 0xff) as u8;
            Some(IpInfo {
                version: 6,
                hdr_len: off,
                proto,
                proto_off,
                total_len: total,
                src: IpAddr::V6(v6addr(d, 8)?),
                dst: IpAddr::V6(v6addr(d, 24)?),
                tos: tc,
                fragment,
            })
        }
        _ => None,
    }
}

/// The traffic selector of a packet (RFC 4301 §4.4.1.1): addresses, protocol, ports.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Flow {
    pub src: IpAddr,
    pub dst: IpAddr,
    pub proto: u8,
    /// `None` when the protocol has no ports or the packet is a non-first fragment.
    pub sport: Option<u16>,
    pub dport: Option<u16>,
}

impl Flow {
    pub fn of(d: &[u8]) -> Result<Flow, DropReason> {
        let ip = parse(d)?;
        Ok(Self::from_info(&ip, d))
    }

    pub fn from_info(ip: &IpInfo, d: &[u8]) -> Flow {
        let (sport, dport) = match ip.proto {
            PROTO_TCP | PROTO_UDP | PROTO_SCTP if !ip.fragment => {
                (be16(d, ip.hdr_len), be16(d, ip.hdr_len + 2))
            }
            _ => (None, None),
        };
        Flow {
            src: ip.src,
            dst: ip.dst,
            proto: ip.proto,
            sport,
            dport,
        }
    }
}

/// Recomputes the IPv4 header checksum of the header at the start of `d`.
pub fn fix_ipv4_checksum(d: &mut [u8], ihl: usize) -> Option<()> {
    put(d, 10, &[0, 0])?;
    let c = checksum::internet(d.get(..ihl)?);
    put(d, 10, &c.to_be_bytes())
}

/// The UDP checksum field (RFC 768, RFC 8200 §8.1) of the datagram `seg` between
/// `src` and `dst`: the engine's RFC 1071 sum with the IPv6 pseudo-header, a computed
/// zero sent as `0xffff`.
pub fn udp6_checksum(src: &Ipv6Addr, dst: &Ipv6Addr, seg: &[u8]) -> u16 {
    let ph = checksum::pseudo_header_v6(src, dst, IpProtocol::UDP, seg.len() as u32);
    match !checksum::add(ph, checksum::data(seg)) {
        0 => 0xffff,
        c => c,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ipv4_checksum_of_known_header() {
        // Example header from RFC 1071-style captures: checksum 0xb861.
        let mut h = [
            0x45, 0x00, 0x00, 0x73, 0x00, 0x00, 0x40, 0x00, 0x40, 0x11, 0x00, 0x00, 0xc0, 0xa8,
            0x00, 0x01, 0xc0, 0xa8, 0x00, 0xc7,
        ];
        fix_ipv4_checksum(&mut h, 20).unwrap();
        assert_eq!(&h[10..12], &[0xb8, 0x61]);
    }

    #[test]
    fn truncated_and_bad_headers_are_malformed() {
        assert_eq!(parse(&[]), Err(DropReason::Malformed));
        assert_eq!(parse(&[0x45, 0, 0, 20]), Err(DropReason::Malformed));
        let mut h = [0u8; 20];
        h[0] = 0x44; // IHL 16 bytes
        h[3] = 20;
        assert_eq!(parse(&h), Err(DropReason::Malformed));
        h[0] = 0x45;
        h[3] = 21; // longer than buffer
        assert_eq!(parse(&h), Err(DropReason::Malformed));
        let mut v6 = [0u8; 48];
        v6[0] = 0x60;
        v6[5] = 8;
        v6[6] = 0; // hop-by-hop with length running past the packet
        v6[41] = 5;
        assert_eq!(parse(&v6), Err(DropReason::Malformed));
    }

    #[test]
    fn ipv6_walks_hop_by_hop() {
        let mut p = [0u8; 40 + 8 + 8];
        p[0] = 0x60;
        p[5] = 16;
        p[6] = 0; // HBH
        p[40] = PROTO_UDP;
        p[41] = 0; // 8 bytes
        p[48..50].copy_from_slice(&1234u16.to_be_bytes());
        p[50..52].copy_from_slice(&53u16.to_be_bytes());
        let ip = parse(&p).unwrap();
        assert_eq!((ip.hdr_len, ip.proto, ip.proto_off), (48, PROTO_UDP, 40));
        let f = Flow::from_info(&ip, &p);
        assert_eq!((f.sport, f.dport), (Some(1234), Some(53)));
    }
}
