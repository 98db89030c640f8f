//! UDP sockets for the CUPS datagrams ([`Datagram`]): PFCP on port 8805 (3GPP TS
//! 29.244 §7.2.1) and GTP-U on port 2152 (TS 29.281 §4.4.2.3), bound to one local IPv4
//! address. A GTP-U [`Datagram`] is a whole IPv4/UDP packet (as `pfcp::gtpu`
//! builds and checks it): the socket sends its UDP payload to the packet's
//! destination and wraps what it receives back into such a packet (checksums filled)
//! with the sender's address, so the sans-IO ends do not change.
//!
//! The sockets need `std`; the two conversions ([`gtpu_payload`], [`ipv4_udp`]) do
//! not (the unikernel's user plane uses them over its host stack's sockets).

#[cfg(feature = "std")]
use super::Datagram;
use alloc::vec;
use alloc::vec::Vec;
use core::net::Ipv4Addr;
use dataplane::proto::checksum::PseudoHeader;
use dataplane::proto::{ipv4, udp, IpProtocol};
#[cfg(feature = "std")]
use std::io;
#[cfg(feature = "std")]
use std::net::{SocketAddr, SocketAddrV4, UdpSocket};

/// The two sockets of one CUPS node.
#[cfg(feature = "std")]
#[derive(Debug)]
pub struct UdpLink {
    local: Ipv4Addr,
    pfcp: UdpSocket,
    gtpu: UdpSocket,
    gtpu_port: u16,
    /// Datagrams received that could not be turned into a [`Datagram`] or sent.
    pub errors: u64,
}

#[cfg(feature = "std")]
impl UdpLink {
    /// Binds `local`:8805 and `local`:2152 (non-blocking).
    pub fn bind(local: Ipv4Addr) -> io::Result<UdpLink> {
        UdpLink::bind_ports(local, pfcp::msg::PORT, pfcp::gtpu::PORT)
    }

    /// Binds other ports (tests; peers must use the same ones).
    pub fn bind_ports(local: Ipv4Addr, pfcp_port: u16, gtpu_port: u16) -> io::Result<UdpLink> {
        let pfcp = UdpSocket::bind((local, pfcp_port))?;
        let gtpu = UdpSocket::bind((local, gtpu_port))?;
        pfcp.set_nonblocking(true)?;
        gtpu.set_nonblocking(true)?;
        Ok(UdpLink {
            local,
            pfcp,
            gtpu,
            gtpu_port,
            errors: 0,
        })
    }

    /// Sends datagrams; one that cannot be sent is counted in `errors`.
    pub fn send(&mut self, ds: impl IntoIterator<Item = Datagram>) {
        for d in ds {
            let ok = match &d {
                Datagram::Pfcp { dst, data, .. } => self.pfcp.send_to(data, dst).is_ok(),
                Datagram::Gtpu(p) => match gtpu_payload(p) {
                    Some((dst, payload)) => self
                        .gtpu
                        .send_to(payload, SocketAddrV4::new(dst, self.gtpu_port))
                        .is_ok(),
                    None => false,
                },
            };
            if !ok {
                self.errors += 1;
            }
        }
    }

    /// Everything waiting on both sockets.
    pub fn recv(&mut self) -> Vec<Datagram> {
        let mut out = Vec::new();
        let mut buf = vec![0u8; 65535];
        loop {
            match self.pfcp.recv_from(&mut buf) {
                Ok((n, src)) => out.push(Datagram::Pfcp {
                    src,
                    dst: SocketAddr::from((self.local, pfcp::msg::PORT)),
                    data: buf[..n].to_vec(),
                }),
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                Err(_) => {
                    self.errors += 1;
                    break;
                }
            }
        }
        loop {
            match self.gtpu.recv_from(&mut buf) {
                Ok((n, SocketAddr::V4(src))) => match ipv4_udp(*src.ip(), self.local, &buf[..n]) {
                    Some(p) => out.push(Datagram::Gtpu(p)),
                    None => self.errors += 1,
                },
                Ok(_) => self.errors += 1,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                Err(_) => {
                    self.errors += 1;
                    break;
                }
            }
        }
        out
    }
}

/// The destination and UDP payload of an IPv4/UDP packet (a GTP-U [`super::Datagram`]).
pub fn gtpu_payload(p: &[u8]) -> Option<(Ipv4Addr, &[u8])> {
    let ip = ipv4::Packet::new_checked(p).ok()?;
    if ip.protocol() != IpProtocol::UDP {
        return None;
    }
    let dst = ip.dst_addr();
    let l4 = p.get(ip.header_len()..usize::from(ip.total_len()))?;
    let u = udp::Packet::new_checked(l4).ok()?;
    Some((dst, l4.get(8..usize::from(u.len()))?))
}

/// `payload` in UDP (port 2152 both ways) in IPv4 from `src` to `dst` (a GTP-U
/// [`super::Datagram`] from a datagram a socket received).
pub fn ipv4_udp(src: Ipv4Addr, dst: Ipv4Addr, payload: &[u8]) -> Option<Vec<u8>> {
    let ulen = 8 + payload.len();
    let repr = ipv4::Repr {
        src_addr: src,
        dst_addr: dst,
        protocol: IpProtocol::UDP,
        payload_len: ulen,
        ttl: 64,
        dscp: 0,
        ecn: 0,
        ident: 0,
        dont_frag: true,
        more_frags: false,
        frag_offset: 0,
    };
    if repr.buffer_len() + ulen > usize::from(u16::MAX) {
        return None;
    }
    let mut p = vec![0u8; repr.buffer_len() + ulen];
    repr.emit(&mut ipv4::Packet::new_unchecked(&mut p[..]))
        .ok()?;
    let mut u = udp::Packet::new_unchecked(&mut p[20..]);
    udp::Repr {
        src_port: pfcp::gtpu::PORT,
        dst_port: pfcp::gtpu::PORT,
        payload_len: payload.len(),
    }
    .emit(&mut u)
    .ok()?;
    u.payload_mut().copy_from_slice(payload);
    u.fill_checksum(&PseudoHeader::V4 { src, dst });
    Some(p)
}
