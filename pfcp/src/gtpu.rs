//! GTP-U (3GPP TS 29.281) for the TR-459 control packet redirect between a BNG user
//! plane and its control plane.
//!
//! The header (§5.1):
//!
//! ```text
//! octet 1:  Version (3 bits, = 1) | PT (= 1) | spare | E | S | PN
//! octet 2:  Message Type
//! 3–4:      Length (octets after the first 8)
//! 5–8:      TEID
//! 9–10:     Sequence Number      } present (all four octets) when
//! 11:       N-PDU Number         } any of E, S, PN is set; meaningful
//! 12:       Next Extension Type  } only when its own flag is set
//! ```
//!
//! and extension headers (§5.2: length in 4-octet units, content, next type). Messages
//! (§7): Echo Request/Response (§7.2.1, §7.2.2, with the Recovery IE §8.2), Error
//! Indication (§7.3.1, TEID Data I §8.3 and GTP-U Peer Address §8.4), End Marker
//! (§7.3.2) and the G-PDU (type 255) that carries user data.
//!
//! [`encap_frame`] and [`decap_frame`] carry a subscriber's whole Ethernet frame (its
//! S-/C-VLAN tags, i.e. the TR-101 access line identity, included) in a G-PDU over
//! UDP port 2152 and IPv4, the shape of TR-459's control packet redirect; the TEID
//! names the redirect tunnel (one per UP logical port or per session, as the control
//! plane assigned it in the PDR's F-TEID over PFCP). TR-459's optional NSH metadata
//! (BBF Outer Header Creation "CPR-NSH") is not implemented.

use crate::bytes::{be16, be32};
use crate::{Error, Result};
use alloc::vec::Vec;
use core::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use dataplane::proto::checksum::PseudoHeader;
use dataplane::proto::{ipv4, udp, IpProtocol};

/// UDP port of GTP-U (§4.4.2.3).
pub const PORT: u16 = 2152;
/// Length of the mandatory header.
pub const HEADER_LEN: usize = 8;
/// Deepest chain of extension headers accepted.
pub const MAX_EXT_HEADERS: usize = 8;

/// Message types (TS 29.281 Table 6.1-1).
pub mod msg_type {
    pub const ECHO_REQUEST: u8 = 1;
    pub const ECHO_RESPONSE: u8 = 2;
    pub const ERROR_INDICATION: u8 = 26;
    pub const SUPPORTED_EXTENSION_HEADERS_NOTIFICATION: u8 = 31;
    pub const END_MARKER: u8 = 254;
    pub const G_PDU: u8 = 255;
}

/// Information element types (TS 29.281 §8).
pub mod ie {
    /// Recovery (TV, 1 octet of value; §8.2).
    pub const RECOVERY: u8 = 14;
    /// Tunnel Endpoint Identifier Data I (TV, 4 octets; §8.3).
    pub const TEID_DATA_I: u8 = 16;
    /// GTP-U Peer Address (TLV; §8.4).
    pub const PEER_ADDRESS: u8 = 133;
}

/// An extension header (§5.2): its type (the "next extension header type" that
/// announced it) and content (4n − 2 octets).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct ExtHeader {
    pub ty: u8,
    pub content: Vec<u8>,
}

/// A GTP-U header.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Header {
    pub msg_type: u8,
    pub teid: u32,
    pub seq: Option<u16>,
    pub npdu: Option<u8>,
    pub ext: Vec<ExtHeader>,
}

impl Header {
    /// A header with neither sequence number nor extension headers.
    pub fn new(msg_type: u8, teid: u32) -> Header {
        Header {
            msg_type,
            teid,
            seq: None,
            npdu: None,
            ext: Vec::new(),
        }
    }

    /// Parses a GTP-U message: header and the payload (the message's IEs, or the
    /// T-PDU of a G-PDU). Bytes after the length the header announces are ignored.
    pub fn parse(b: &[u8]) -> Result<(Header, &[u8])> {
        let f = *b.first().ok_or(Error::InvalidLength)?;
        let version = f >> 5;
        if version != 1 {
            return Err(Error::BadVersion(version));
        }
        if f & 0x10 == 0 {
            return Err(Error::BadHeader);
        }
        let msg_type = *b.get(1).ok_or(Error::InvalidLength)?;
        let len = usize::from(be16(b, 2).ok_or(Error::InvalidLength)?);
        let teid = be32(b, 4).ok_or(Error::InvalidLength)?;
        let msg = b.get(..HEADER_LEN + len).ok_or(Error::InvalidLength)?;
        let (e, s, pn) = (f & 0x04 != 0, f & 0x02 != 0, f & 0x01 != 0);
        let mut h = Header::new(msg_type, teid);
        let mut at = HEADER_LEN;
        if e || s || pn {
            let opt = msg.get(8..12).ok_or(Error::InvalidLength)?;
            h.seq = s.then(|| u16::from_be_bytes([opt[0], opt[1]]));
            h.npdu = pn.then_some(opt[2]);
            at = 12;
            let mut next = if e { opt[3] } else { 0 };
            while next != 0 {
                if h.ext.len() == MAX_EXT_HEADERS {
                    return Err(Error::BadHeader);
                }
                let units = usize::from(*msg.get(at).ok_or(Error::InvalidLength)?);
                if units == 0 {
                    return Err(Error::BadHeader);
                }
                let eh = msg.get(at..at + 4 * units).ok_or(Error::InvalidLength)?;
                h.ext.push(ExtHeader {
                    ty: next,
                    content: eh[1..eh.len() - 1].to_vec(),
                });
                next = eh[eh.len() - 1];
                at += 4 * units;
            }
        }
        Ok((h, &msg[at..]))
    }

    /// Appends the header and `payload`.
    pub fn emit(&self, payload: &[u8], out: &mut Vec<u8>) -> Result<()> {
        let e = !self.ext.is_empty();
        let optional = e || self.seq.is_some() || self.npdu.is_some();
        let mut body = Vec::new();
        if optional {
            body.extend_from_slice(&self.seq.unwrap_or(0).to_be_bytes());
            body.push(self.npdu.unwrap_or(0));
            body.push(self.ext.first().map_or(0, |x| x.ty));
            for (i, x) in self.ext.iter().enumerate() {
                if x.ty == 0 || (x.content.len() + 2) % 4 != 0 || self.ext.len() > MAX_EXT_HEADERS {
                    return Err(Error::BadHeader);
                }
                let units = u8::try_from((x.content.len() + 2) / 4).map_err(|_| Error::TooLong)?;
                body.push(units);
                body.extend_from_slice(&x.content);
                body.push(self.ext.get(i + 1).map_or(0, |n| n.ty));
            }
        }
        let len = u16::try_from(body.len() + payload.len()).map_err(|_| Error::TooLong)?;
        out.push(
            0x20 | 0x10
                | u8::from(e) << 2
                | u8::from(self.seq.is_some()) << 1
                | u8::from(self.npdu.is_some()),
        );
        out.push(self.msg_type);
        out.extend_from_slice(&len.to_be_bytes());
        out.extend_from_slice(&self.teid.to_be_bytes());
        out.extend_from_slice(&body);
        out.extend_from_slice(payload);
        Ok(())
    }
}

/// An Echo Request (§7.2.1): TEID 0, a sequence number.
pub fn echo_request(seq: u16) -> Vec<u8> {
    let mut v = Vec::new();
    let h = Header {
        seq: Some(seq),
        ..Header::new(msg_type::ECHO_REQUEST, 0)
    };
    // A header without extension headers always fits.
    let _ = h.emit(&[], &mut v);
    v
}

/// The Echo Response (§7.2.2) to a request with sequence number `seq`: the Recovery
/// IE with restart counter 0, as §7.2.2 asks of GTP-U.
pub fn echo_response(seq: u16) -> Vec<u8> {
    let mut v = Vec::new();
    let h = Header {
        seq: Some(seq),
        ..Header::new(msg_type::ECHO_RESPONSE, 0)
    };
    let _ = h.emit(&[ie::RECOVERY, 0], &mut v);
    v
}

/// An End Marker (§7.3.2) for tunnel `teid`.
pub fn end_marker(teid: u32) -> Vec<u8> {
    let mut v = Vec::new();
    let _ = Header::new(msg_type::END_MARKER, teid).emit(&[], &mut v);
    v
}

/// An Error Indication (§7.3.1) for a G-PDU received on unknown tunnel `teid` at our
/// address `addr`. It carries a sequence number (S = 1), as §7.3.1 asks.
pub fn error_indication(teid: u32, addr: IpAddr, seq: u16) -> Vec<u8> {
    let mut p = Vec::new();
    p.push(ie::TEID_DATA_I);
    p.extend_from_slice(&teid.to_be_bytes());
    p.push(ie::PEER_ADDRESS);
    match addr {
        IpAddr::V4(a) => {
            p.extend_from_slice(&4u16.to_be_bytes());
            p.extend_from_slice(&a.octets());
        }
        IpAddr::V6(a) => {
            p.extend_from_slice(&16u16.to_be_bytes());
            p.extend_from_slice(&a.octets());
        }
    }
    let mut v = Vec::new();
    let h = Header {
        seq: Some(seq),
        ..Header::new(msg_type::ERROR_INDICATION, 0)
    };
    let _ = h.emit(&p, &mut v);
    v
}

/// Parses an Error Indication's IEs: the TEID and the address it names.
pub fn parse_error_indication(payload: &[u8]) -> Result<(u32, IpAddr)> {
    let mut teid = None;
    let mut addr = None;
    let mut at = 0;
    while at < payload.len() {
        match payload[at] {
            ie::TEID_DATA_I => {
                teid = Some(be32(payload, at + 1).ok_or(Error::InvalidLength)?);
                at += 5;
            }
            ie::RECOVERY => at += 2,
            t if t >= 128 => {
                let l = usize::from(be16(payload, at + 1).ok_or(Error::InvalidLength)?);
                let v = payload
                    .get(at + 3..at + 3 + l)
                    .ok_or(Error::InvalidLength)?;
                if t == ie::PEER_ADDRESS {
                    addr = Some(match l {
                        4 => IpAddr::V4(Ipv4Addr::new(v[0], v[1], v[2], v[3])),
                        16 => {
                            let a: [u8; 16] = v.try_into().map_err(|_| Error::BadIe {
                                ie: u16::from(ie::PEER_ADDRESS),
                            })?;
                            IpAddr::V6(Ipv6Addr::from(a))
                        }
                        _ => {
                            return Err(Error::BadIe {
                                ie: u16::from(ie::PEER_ADDRESS),
                            })
                        }
                    });
                }
                at += 3 + l;
            }
            // A TV IE this parser does not know: its length is unknown.
            t => return Err(Error::BadIe { ie: u16::from(t) }),
        }
    }
    match (teid, addr) {
        (Some(t), Some(a)) => Ok((t, a)),
        (None, _) => Err(Error::MissingIe {
            ie: u16::from(ie::TEID_DATA_I),
        }),
        (_, None) => Err(Error::MissingIe {
            ie: u16::from(ie::PEER_ADDRESS),
        }),
    }
}

/// The outer addressing of a redirect tunnel.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Tunnel {
    pub src: Ipv4Addr,
    pub dst: Ipv4Addr,
    /// UDP source port (the destination is always [`PORT`]).
    pub src_port: u16,
    pub teid: u32,
}

/// A decapsulated redirect packet.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Decap<'a> {
    pub tunnel: Tunnel,
    pub seq: Option<u16>,
    /// The subscriber's Ethernet frame.
    pub frame: &'a [u8],
}

/// Wraps `frame` (a whole Ethernet frame) in a G-PDU on `t` in UDP/IPv4 (DF set, TTL
/// 64, UDP checksum filled); `seq` is the optional GTP-U sequence number. Returns the
/// IPv4 packet.
pub fn encap_frame(t: &Tunnel, seq: Option<u16>, frame: &[u8]) -> Result<Vec<u8>> {
    let h = Header {
        seq,
        ..Header::new(msg_type::G_PDU, t.teid)
    };
    let mut gtp = Vec::new();
    h.emit(frame, &mut gtp)?;
    let ulen = 8 + gtp.len();
    let ip = ipv4::Repr {
        src_addr: t.src,
        dst_addr: t.dst,
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
    if ip.buffer_len() + ulen > usize::from(u16::MAX) {
        return Err(Error::TooLong);
    }
    let mut pkt = alloc::vec![0u8; ip.buffer_len() + ulen];
    ip.emit(&mut ipv4::Packet::new_unchecked(&mut pkt[..]))
        .map_err(|_| Error::TooLong)?;
    let mut u = udp::Packet::new_unchecked(&mut pkt[20..]);
    udp::Repr {
        src_port: t.src_port,
        dst_port: PORT,
        payload_len: gtp.len(),
    }
    .emit(&mut u)
    .map_err(|_| Error::TooLong)?;
    u.payload_mut().copy_from_slice(&gtp);
    u.fill_checksum(&PseudoHeader::V4 {
        src: t.src,
        dst: t.dst,
    });
    Ok(pkt)
}

/// Unwraps an IPv4 packet built by [`encap_frame`] (or any peer's G-PDU to port
/// 2152): checks the IPv4 header and checksum, UDP (length, checksum when not 0,
/// destination port) and the GTP-U header, and returns the frame it carries.
/// Fragments and other message types are refused.
pub fn decap_frame(pkt: &[u8]) -> Result<Decap<'_>> {
    let p = ipv4::Packet::new_checked(pkt).map_err(|_| Error::InvalidLength)?;
    let ip = ipv4::Repr::parse(&p).map_err(|_| Error::BadHeader)?;
    if ip.protocol != IpProtocol::UDP || ip.more_frags || ip.frag_offset != 0 {
        return Err(Error::BadHeader);
    }
    let l4 = pkt
        .get(p.header_len()..usize::from(p.total_len()))
        .ok_or(Error::InvalidLength)?;
    let u = udp::Packet::new_checked(l4).map_err(|_| Error::InvalidLength)?;
    if u.dst_port() != PORT {
        return Err(Error::BadHeader);
    }
    if u.checksum() != 0
        && !u.verify_checksum(&PseudoHeader::V4 {
            src: ip.src_addr,
            dst: ip.dst_addr,
        })
    {
        return Err(Error::BadHeader);
    }
    let src_port = u.src_port();
    let gtp = l4
        .get(8..usize::from(u.len()))
        .ok_or(Error::InvalidLength)?;
    let (h, frame) = Header::parse(gtp)?;
    if h.msg_type != msg_type::G_PDU {
        return Err(Error::UnknownMessage(h.msg_type));
    }
    Ok(Decap {
        tunnel: Tunnel {
            src: ip.src_addr,
            dst: ip.dst_addr,
            src_port,
            teid: h.teid,
        },
        seq: h.seq,
        frame,
    })
}
