//! The DHCPv6 server's datagrams: a client's IPv6 datagram (RFC 8200; extension
//! headers walked, fragments refused) carrying UDP (RFC 768) to port 547 with a valid
//! checksum is taken apart for [`Server::handle`](super::Server::handle), and a
//! [`Reply`] is wrapped in IPv6/UDP from the server's link-local address to the
//! request's source, port 546 to a client or 547 to a relay agent (RFC 8415 §7.2,
//! §18.3.10: the reply goes to the address the request came from). The datagram-level
//! functions suit PPPoE (the caller wraps the datagram in PPP, RFC 5072); [`decap`]
//! and [`encap`] add Ethernet with up to two VLAN tags for IPoE. Control path only:
//! the builders allocate.

use super::Reply;
use alloc::vec::Vec;
use core::net::Ipv6Addr;
use dataplane::proto::checksum::PseudoHeader;
use dataplane::proto::dhcp6::SERVER_PORT;
use dataplane::proto::ethernet::{self, Frame, MacAddr, Vlans};
use dataplane::proto::{ipv6, udp, Error, EtherType, IpProtocol, Result};

/// A DHCPv6 request taken out of its IPv6 datagram.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Request<'a> {
    /// The IPv6 source (the client's link-local address, or a relay agent).
    pub src: Ipv6Addr,
    /// The IPv6 destination (`ff02::1:2`, or the server for unicast).
    pub dst: Ipv6Addr,
    /// The UDP source port (546 from a client, 547 from a relay agent).
    pub src_port: u16,
    /// The DHCPv6 message (UDP payload).
    pub message: &'a [u8],
}

/// A request taken out of an Ethernet frame.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FrameRequest<'a> {
    /// The access line's VLANs.
    pub vlans: Vlans,
    /// The frame's source MAC address.
    pub src_mac: MacAddr,
    /// The datagram's contents.
    pub request: Request<'a>,
}

/// `fe80::` with the modified EUI-64 interface identifier of `mac` (RFC 4291 §2.5.6,
/// Appendix A): the server's source address on a link.
pub fn link_local(mac: MacAddr) -> Ipv6Addr {
    let m = mac.0;
    Ipv6Addr::from([
        0xfe,
        0x80,
        0,
        0,
        0,
        0,
        0,
        0,
        m[0] ^ 0x02,
        m[1],
        m[2],
        0xff,
        0xfe,
        m[3],
        m[4],
        m[5],
    ])
}

/// Takes an IPv6 datagram apart: extension headers walked, no fragment, UDP to port
/// 547 with a valid checksum (zero is invalid over IPv6, RFC 8200 §8.1). Anything
/// else is `Unsupported` (not for the DHCPv6 server) or the view's error.
pub fn decap_ipv6(datagram: &[u8]) -> Result<Request<'_>> {
    let ip = ipv6::Packet::new_checked(datagram)?;
    let ext = ip.walk_ext()?;
    if ext.next_header != IpProtocol::UDP || ext.frag.is_some() {
        return Err(Error::Unsupported);
    }
    let l4 = datagram
        .get(ext.l4_offset..ip.total_len())
        .ok_or(Error::Truncated)?;
    let u = udp::Packet::new_checked(l4)?;
    if u.dst_port() != SERVER_PORT {
        return Err(Error::Unsupported);
    }
    let (src, dst) = (ip.src_addr(), ip.dst_addr());
    if !u.verify_checksum(&PseudoHeader::V6 { src, dst }) {
        return Err(Error::Checksum);
    }
    let at = udp::HEADER_LEN;
    let message = l4.get(at..at + u.payload().len()).ok_or(Error::Truncated)?;
    Ok(Request {
        src,
        dst,
        src_port: u.src_port(),
        message,
    })
}

/// Takes an Ethernet frame (at most two VLAN tags) apart, then as [`decap_ipv6`].
pub fn decap(frame: &[u8]) -> Result<FrameRequest<'_>> {
    let f = Frame::new_checked(frame)?;
    let l2 = ethernet::walk_vlans(frame)?;
    if l2.ethertype != EtherType::IPV6 {
        return Err(Error::Unsupported);
    }
    let request = decap_ipv6(frame.get(l2.l3_offset..).unwrap_or(&[]))?;
    Ok(FrameRequest {
        vlans: Vlans::from_stack(&l2.vlans),
        src_mac: f.src_addr(),
        request,
    })
}

/// Hop limit of the server's datagrams (they stay on the link or go to a relay).
pub const HOP_LIMIT: u8 = 255;

/// The reply as an IPv6 datagram from `src` (the server's link-local address, e.g.
/// [`link_local`] of the access port's MAC) to `reply.dst`, UDP 547 → `reply.dst_port`,
/// with checksum. `Malformed` if the message does not fit a UDP datagram.
pub fn encap_ipv6(reply: &Reply, src: Ipv6Addr) -> Result<Vec<u8>> {
    let mut v = Vec::new();
    encap_into(reply, src, &mut v)?;
    Ok(v)
}

fn encap_into(reply: &Reply, src: Ipv6Addr, out: &mut Vec<u8>) -> Result<()> {
    let udp_len = udp::HEADER_LEN + reply.message.len();
    if udp_len > usize::from(u16::MAX) {
        return Err(Error::Malformed);
    }
    let start = out.len();
    out.resize(start + ipv6::HEADER_LEN + udp_len, 0);
    let ipr = ipv6::Repr {
        src_addr: src,
        dst_addr: reply.dst,
        next_header: IpProtocol::UDP,
        payload_len: udp_len,
        hop_limit: HOP_LIMIT,
        traffic_class: 0,
        flow_label: 0,
    };
    ipr.emit(&mut ipv6::Packet::new_unchecked(&mut out[start..]))?;
    let ur = udp::Repr {
        src_port: SERVER_PORT,
        dst_port: reply.dst_port,
        payload_len: reply.message.len(),
    };
    let mut u = udp::Packet::new_unchecked(&mut out[start + ipv6::HEADER_LEN..]);
    ur.emit(&mut u)?;
    u.payload_mut().copy_from_slice(&reply.message);
    u.fill_checksum(&PseudoHeader::V6 {
        src,
        dst: reply.dst,
    });
    Ok(())
}

/// The reply as an Ethernet frame from `src_mac` to `dst_mac` (the client's MAC, from
/// its request) on `vlans`, the datagram as [`encap_ipv6`] with `src` the link-local
/// address of `src_mac`.
pub fn encap(reply: &Reply, src_mac: MacAddr, dst_mac: MacAddr, vlans: Vlans) -> Result<Vec<u8>> {
    let eth = ethernet::Repr {
        src_addr: src_mac,
        dst_addr: dst_mac,
        vlans: vlans.to_stack(),
        ethertype: EtherType::IPV6,
    };
    let l3 = eth.buffer_len();
    let mut f = alloc::vec![0u8; l3];
    eth.emit(&mut Frame::new_unchecked(&mut f[..]))?;
    encap_into(reply, link_local(src_mac), &mut f)?;
    Ok(f)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::dhcp6::LineKey;
    use dataplane::proto::dhcp6::{MessageType, CLIENT_PORT};

    #[test]
    fn link_local_is_modified_eui64() {
        assert_eq!(
            link_local(MacAddr([0x02, 0, 0, 0, 0, 0x0c])),
            "fe80::ff:fe00:c".parse::<Ipv6Addr>().unwrap()
        );
        assert_eq!(
            link_local(MacAddr([0x52, 0x54, 0, 0x12, 0x34, 0x56])),
            "fe80::5054:ff:fe12:3456".parse::<Ipv6Addr>().unwrap()
        );
    }

    #[test]
    fn encap_decap_round_trip() {
        let client = link_local(MacAddr([2, 0, 0, 0, 0, 9]));
        let reply = Reply {
            message: alloc::vec![7; 120],
            dst: client,
            dst_port: CLIENT_PORT,
            line: LineKey::default(),
            kind: MessageType::Reply,
            inner_kind: MessageType::Reply,
        };
        let vlans = Vlans {
            svlan: 100,
            cvlan: 7,
        };
        let mut f = encap(
            &reply,
            MacAddr([2, 0, 0, 0, 0, 1]),
            MacAddr([2, 0, 0, 0, 0, 9]),
            vlans,
        )
        .unwrap();
        assert_eq!(f.len(), 14 + 8 + 40 + 8 + 120);
        assert_eq!(&f[..6], &[2, 0, 0, 0, 0, 9]);
        // Our own frame goes to port 546: not a request. Make it one.
        assert_eq!(decap(&f), Err(Error::Unsupported));
        let at = 22 + 40;
        let mut u = udp::Packet::new_unchecked(&mut f[at..]);
        u.set_dst_port_update_checksum(SERVER_PORT);
        let r = decap(&f).unwrap();
        assert_eq!(r.vlans, vlans);
        assert_eq!(r.src_mac, MacAddr([2, 0, 0, 0, 0, 1]));
        assert_eq!(r.request.src, link_local(MacAddr([2, 0, 0, 0, 0, 1])));
        assert_eq!(r.request.dst, client);
        assert_eq!(r.request.message, &reply.message[..]);
        // The datagram-level API on the same bytes.
        assert_eq!(decap_ipv6(&f[22..]).unwrap(), r.request);
        // A broken UDP checksum, and a zero one, are refused.
        f[at + 6] ^= 1;
        assert_eq!(decap(&f), Err(Error::Checksum));
        f[at + 6..at + 8].copy_from_slice(&[0, 0]);
        assert_eq!(decap(&f), Err(Error::Checksum));
        assert_eq!(decap(&f[..30]).unwrap_err(), Error::Truncated);
        assert_eq!(decap_ipv6(&f[22..50]).unwrap_err(), Error::Truncated);
    }
}
