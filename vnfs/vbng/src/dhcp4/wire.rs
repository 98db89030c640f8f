//! The DHCP server's frames on an access line: a received Ethernet frame (up to two
//! VLAN tags, IEEE 802.1Q/802.1ad) carrying IPv4/UDP to port 67 is taken apart for
//! [`Server::handle`](super::Server::handle), and a [`Reply`] is wrapped in Ethernet
//! (the line's VLANs), IPv4 (RFC 791, from the server identifier) and UDP (RFC 768,
//! with checksum) towards the [`Destination`] that RFC 2131 §4.1 chose. Control path
//! only: both allocate.

use super::{Destination, Reply};
use alloc::vec::Vec;
use core::net::Ipv4Addr;
use dataplane::proto::checksum::PseudoHeader;
use dataplane::proto::dhcp4::{CLIENT_PORT, SERVER_PORT};
use dataplane::proto::ethernet::{self, Frame, MacAddr, Vlans};
use dataplane::proto::{ipv4, udp, Error, EtherType, IpProtocol, Result};

/// A DHCP request taken out of its frame.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Request<'a> {
    /// The access line's VLANs.
    pub vlans: Vlans,
    /// The frame's source MAC address.
    pub src_mac: MacAddr,
    /// The IPv4 destination (broadcast, or the server for a unicast renewal).
    pub dst_ip: Ipv4Addr,
    /// The DHCP message (UDP payload).
    pub message: &'a [u8],
}

/// Takes a frame apart: Ethernet with at most two VLAN tags, IPv4 with a valid header
/// checksum and no fragmentation, UDP to port 67 with a valid (or absent) checksum.
/// Anything else is `Unsupported` (not for the DHCP server) or the view's error.
pub fn decap(frame: &[u8]) -> Result<Request<'_>> {
    let f = Frame::new_checked(frame)?;
    let l2 = ethernet::walk_vlans(frame)?;
    if l2.ethertype != EtherType::IPV4 {
        return Err(Error::Unsupported);
    }
    let ip = ipv4::Packet::new_checked(frame.get(l2.l3_offset..).unwrap_or(&[]))?;
    let ipr = ipv4::Repr::parse(&ip)?;
    if ipr.protocol != IpProtocol::UDP || ip.is_fragment() {
        return Err(Error::Unsupported);
    }
    let u = udp::Packet::new_checked(ip.payload())?;
    if u.dst_port() != SERVER_PORT {
        return Err(Error::Unsupported);
    }
    if !u.verify_checksum(&PseudoHeader::V4 {
        src: ipr.src_addr,
        dst: ipr.dst_addr,
    }) {
        return Err(Error::Checksum);
    }
    let at = l2.l3_offset + ip.header_len() + udp::HEADER_LEN;
    let message = frame
        .get(at..at + u.payload().len())
        .ok_or(Error::Truncated)?;
    Ok(Request {
        vlans: Vlans::from_stack(&l2.vlans),
        src_mac: f.src_addr(),
        dst_ip: ipr.dst_addr,
        message,
    })
}

/// The reply as an Ethernet frame from `src_mac`/`src_ip` (the server identifier) on
/// the reply's VLANs: broadcast to `ff:ff:ff:ff:ff:ff`/255.255.255.255:68, unicast to
/// the client's `chaddr` and address:68, or to the relay agent at `giaddr`:67 via
/// `relay_mac` (the caller resolves it; broadcast when `None`).
pub fn encap(
    reply: &Reply,
    src_mac: MacAddr,
    src_ip: Ipv4Addr,
    relay_mac: Option<MacAddr>,
) -> Vec<u8> {
    let (dst_mac, dst_ip, dst_port) = match reply.dst {
        Destination::Broadcast => (MacAddr::BROADCAST, Ipv4Addr::BROADCAST, CLIENT_PORT),
        Destination::Unicast { ip, mac } => (MacAddr(mac), ip, CLIENT_PORT),
        Destination::Relay(g) => (relay_mac.unwrap_or(MacAddr::BROADCAST), g, SERVER_PORT),
    };
    let eth = ethernet::Repr {
        src_addr: src_mac,
        dst_addr: dst_mac,
        vlans: reply.vlans.to_stack(),
        ethertype: EtherType::IPV4,
    };
    let l3 = eth.buffer_len();
    let udp_len = udp::HEADER_LEN + reply.message.len();
    let mut f = alloc::vec![0u8; l3 + ipv4::HEADER_LEN + udp_len];
    // The lengths are fixed above; emit fails only on a buffer too small.
    let _ = eth.emit(&mut Frame::new_unchecked(&mut f[..]));
    let ipr = ipv4::Repr {
        src_addr: src_ip,
        dst_addr: dst_ip,
        protocol: IpProtocol::UDP,
        payload_len: udp_len,
        ttl: 64,
        dscp: 0,
        ecn: 0,
        ident: 0,
        dont_frag: false,
        more_frags: false,
        frag_offset: 0,
    };
    let _ = ipr.emit(&mut ipv4::Packet::new_unchecked(&mut f[l3..]));
    let at = l3 + ipv4::HEADER_LEN;
    let ur = udp::Repr {
        src_port: SERVER_PORT,
        dst_port,
        payload_len: reply.message.len(),
    };
    let mut u = udp::Packet::new_unchecked(&mut f[at..]);
    let _ = ur.emit(&mut u);
    u.payload_mut().copy_from_slice(&reply.message);
    u.fill_checksum(&PseudoHeader::V4 {
        src: src_ip,
        dst: dst_ip,
    });
    f
}

#[cfg(test)]
mod tests {
    use super::*;
    use dataplane::proto::dhcp4::MessageType;

    #[test]
    fn encap_decap_round_trip() {
        let reply = Reply {
            message: alloc::vec![7; 300],
            dst: Destination::Unicast {
                ip: Ipv4Addr::new(192, 0, 2, 10),
                mac: [2, 0, 0, 0, 0, 9],
            },
            vlans: Vlans {
                svlan: 100,
                cvlan: 7,
            },
            kind: MessageType::Offer,
        };
        let mut f = encap(
            &reply,
            MacAddr([2, 0, 0, 0, 0, 1]),
            Ipv4Addr::new(192, 0, 2, 1),
            None,
        );
        assert_eq!(f.len(), 14 + 8 + 20 + 8 + 300);
        assert_eq!(&f[..6], &[2, 0, 0, 0, 0, 9]);
        // Our own frame goes to port 68: not a request. Make it one.
        let at = 22 + 20;
        f[at + 2..at + 4].copy_from_slice(&SERVER_PORT.to_be_bytes());
        f[at + 6..at + 8].copy_from_slice(&[0, 0]);
        let r = decap(&f).unwrap();
        assert_eq!(r.vlans, reply.vlans);
        assert_eq!(r.src_mac, MacAddr([2, 0, 0, 0, 0, 1]));
        assert_eq!(r.message, &reply.message[..]);
        // A broken UDP checksum is refused.
        f[at + 6] = 1;
        assert_eq!(decap(&f), Err(Error::Checksum));
        assert_eq!(decap(&f[..30]).unwrap_err(), Error::Truncated);
    }
}
