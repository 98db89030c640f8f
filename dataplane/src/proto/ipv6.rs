//! IPv6 (RFC 8200): the 40-byte fixed header (§3) and the extension-header walk (§4):
//! Hop-by-Hop Options (§4.3, only directly after the fixed header), Routing (§4.4),
//! Fragment (§4.5), Destination Options (§4.6), Mobility (RFC 6275, same length rule)
//! and the Authentication Header, whose length field counts 4-octet units minus two
//! (RFC 4302 §2.2). [`Packet::walk_ext`] returns the final next header, the L4 offset
//! and fragment information, never reading past the payload length.

use super::bytes::{self, Field};
use super::{Error, IpProtocol, Result};
use core::net::Ipv6Addr;

mod field {
    use super::Field;
    pub const VER_TC_FLOW: Field = 0..4;
    pub const LENGTH: Field = 4..6;
    pub const NXT_HDR: usize = 6;
    pub const HOP_LIMIT: usize = 7;
    pub const SRC_ADDR: Field = 8..24;
    pub const DST_ADDR: Field = 24..40;

    // Inside an extension header.
    pub const EXT_NXT_HDR: usize = 0;
    pub const EXT_LEN: usize = 1;
    // Inside a fragment header.
    pub const FRAG_OFF_M: Field = 2..4;
    pub const FRAG_IDENT: Field = 4..8;
}

/// Length of the fixed header.
pub const HEADER_LEN: usize = 40;
/// Length of a fragment header.
pub const FRAG_HEADER_LEN: usize = 8;
/// Most extension headers [`Packet::walk_ext`] follows before giving up
/// (`Unsupported`); bounds the work per packet.
pub const MAX_EXT_HEADERS: usize = 8;
/// The IPv6 minimum link MTU (RFC 8200 §5).
pub const MIN_MTU: usize = 1280;

/// A view over an IPv6 packet.
#[derive(Debug, Clone)]
pub struct Packet<T: AsRef<[u8]>> {
    buffer: T,
}

/// Fragment header contents (RFC 8200 §4.5).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FragInfo {
    /// Fragment offset in bytes.
    pub offset: u16,
    pub more_frags: bool,
    pub ident: u32,
    /// Offset of the fragment header from the start of the IPv6 header.
    pub header_offset: usize,
}

impl FragInfo {
    /// A non-first fragment carries no upper-layer header.
    #[inline]
    pub fn is_non_first(&self) -> bool {
        self.offset != 0
    }
}

/// The outcome of the extension-header walk.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ExtInfo {
    /// The first header that is not an extension header (TCP, UDP, ICMPv6, ESP,
    /// No Next Header, ...). For a non-first fragment, the header that would follow.
    pub next_header: IpProtocol,
    /// Offset of that header (or of the fragment data) from the start of the IPv6
    /// header; `l4_offset <= HEADER_LEN + payload_len`.
    pub l4_offset: usize,
    /// Present when a fragment header was crossed.
    pub frag: Option<FragInfo>,
}

/// True for the next-header values [`Packet::walk_ext`] steps over.
#[inline]
pub const fn is_extension(nh: IpProtocol) -> bool {
    matches!(nh.0, 0 | 43 | 44 | 51 | 60 | 135)
}

impl<T: AsRef<[u8]>> Packet<T> {
    /// Wraps a buffer without checks (getters on a short buffer read zero).
    #[inline]
    pub const fn new_unchecked(buffer: T) -> Packet<T> {
        Packet { buffer }
    }

    /// Wraps a buffer after checking: version 6 (`Malformed`), 40 bytes plus the
    /// payload length present (`Truncated`). A longer buffer (padding) is allowed.
    #[inline]
    pub fn new_checked(buffer: T) -> Result<Packet<T>> {
        let p = Packet { buffer };
        p.check_len()?;
        Ok(p)
    }

    #[inline]
    pub fn check_len(&self) -> Result<()> {
        let len = self.buffer.as_ref().len();
        if len < HEADER_LEN {
            return Err(Error::Truncated);
        }
        if self.version() != 6 {
            return Err(Error::Malformed);
        }
        if len < self.total_len() {
            return Err(Error::Truncated);
        }
        Ok(())
    }

    #[inline]
    pub fn into_inner(self) -> T {
        self.buffer
    }

    #[inline]
    fn vtf(&self) -> u32 {
        bytes::u32_at(self.buffer.as_ref(), field::VER_TC_FLOW)
    }

    #[inline]
    pub fn version(&self) -> u8 {
        (self.vtf() >> 28) as u8
    }

    #[inline]
    pub fn traffic_class(&self) -> u8 {
        (self.vtf() >> 20) as u8
    }

    #[inline]
    pub fn flow_label(&self) -> u32 {
        self.vtf() & 0x000f_ffff
    }

    #[inline]
    pub fn payload_len(&self) -> u16 {
        bytes::u16_at(self.buffer.as_ref(), field::LENGTH)
    }

    /// Fixed header plus payload length.
    #[inline]
    pub fn total_len(&self) -> usize {
        HEADER_LEN + usize::from(self.payload_len())
    }

    #[inline]
    pub fn next_header(&self) -> IpProtocol {
        IpProtocol(bytes::u8_at(self.buffer.as_ref(), field::NXT_HDR))
    }

    #[inline]
    pub fn hop_limit(&self) -> u8 {
        bytes::u8_at(self.buffer.as_ref(), field::HOP_LIMIT)
    }

    #[inline]
    pub fn src_addr(&self) -> Ipv6Addr {
        Ipv6Addr::from(bytes::array_at::<16>(self.buffer.as_ref(), field::SRC_ADDR))
    }

    #[inline]
    pub fn dst_addr(&self) -> Ipv6Addr {
        Ipv6Addr::from(bytes::array_at::<16>(self.buffer.as_ref(), field::DST_ADDR))
    }

    /// Everything after the fixed header up to the payload length.
    #[inline]
    pub fn payload(&self) -> &[u8] {
        bytes::slice(self.buffer.as_ref(), HEADER_LEN..self.total_len())
    }

    /// Walks the extension headers (see the module docs). Errors: a header cut short
    /// or running past the payload length is `Truncated`; Hop-by-Hop anywhere but
    /// first is `Malformed`; more than [`MAX_EXT_HEADERS`] is `Unsupported`.
    pub fn walk_ext(&self) -> Result<ExtInfo> {
        let pkt = bytes::slice(self.buffer.as_ref(), 0..self.total_len());
        let mut nh = self.next_header();
        let mut off = HEADER_LEN;
        let mut frag = None;
        let mut count = 0;
        while is_extension(nh) {
            if count == MAX_EXT_HEADERS {
                return Err(Error::Unsupported);
            }
            if nh == IpProtocol::HOPOPT && count != 0 {
                return Err(Error::Malformed);
            }
            count += 1;
            let hdr = pkt.get(off..off + 2).ok_or(Error::Truncated)?;
            let next = IpProtocol(bytes::u8_at(hdr, field::EXT_NXT_HDR));
            let ext_len = usize::from(bytes::u8_at(hdr, field::EXT_LEN));
            let len = match nh {
                IpProtocol::IPV6_FRAG => FRAG_HEADER_LEN,
                IpProtocol::AH => (ext_len + 2) * 4,
                _ => (ext_len + 1) * 8,
            };
            let body = pkt.get(off..off + len).ok_or(Error::Truncated)?;
            if nh == IpProtocol::IPV6_FRAG {
                let om = bytes::u16_at(body, field::FRAG_OFF_M);
                let info = FragInfo {
                    offset: om & 0xfff8,
                    more_frags: om & 1 != 0,
                    ident: bytes::u32_at(body, field::FRAG_IDENT),
                    header_offset: off,
                };
                frag = Some(info);
                off += len;
                nh = next;
                if info.is_non_first() {
                    // The rest is fragment data, not headers (RFC 8200 §4.5).
                    break;
                }
                continue;
            }
            off += len;
            nh = next;
        }
        Ok(ExtInfo {
            next_header: nh,
            l4_offset: off,
            frag,
        })
    }
}

impl<T: AsRef<[u8]> + AsMut<[u8]>> Packet<T> {
    /// Sets version 6, the traffic class and the flow label.
    #[inline]
    pub fn set_version_tc_flow(&mut self, traffic_class: u8, flow_label: u32) {
        let v = (6u32 << 28) | (u32::from(traffic_class) << 20) | (flow_label & 0x000f_ffff);
        bytes::set_u32_at(self.buffer.as_mut(), field::VER_TC_FLOW, v);
    }

    #[inline]
    pub fn set_payload_len(&mut self, v: u16) {
        bytes::set_u16_at(self.buffer.as_mut(), field::LENGTH, v);
    }

    #[inline]
    pub fn set_next_header(&mut self, v: IpProtocol) {
        bytes::set_u8_at(self.buffer.as_mut(), field::NXT_HDR, v.0);
    }

    #[inline]
    pub fn set_hop_limit(&mut self, v: u8) {
        bytes::set_u8_at(self.buffer.as_mut(), field::HOP_LIMIT, v);
    }

    /// Forwarding step (RFC 8200 §3): decrements the hop limit; `None` (unchanged)
    /// when it is 0 or 1 and the packet must not be forwarded.
    #[inline]
    pub fn decrement_hop_limit(&mut self) -> Option<u8> {
        let h = self.hop_limit();
        if h <= 1 {
            return None;
        }
        self.set_hop_limit(h - 1);
        Some(h - 1)
    }

    #[inline]
    pub fn set_src_addr(&mut self, a: &Ipv6Addr) {
        bytes::set_bytes_at(self.buffer.as_mut(), field::SRC_ADDR, &a.octets());
    }

    #[inline]
    pub fn set_dst_addr(&mut self, a: &Ipv6Addr) {
        bytes::set_bytes_at(self.buffer.as_mut(), field::DST_ADDR, &a.octets());
    }

    #[inline]
    pub fn payload_mut(&mut self) -> &mut [u8] {
        let end = self.total_len();
        bytes::slice_mut(self.buffer.as_mut(), HEADER_LEN..end)
    }
}

impl<T: AsRef<[u8]>> AsRef<[u8]> for Packet<T> {
    fn as_ref(&self) -> &[u8] {
        self.buffer.as_ref()
    }
}

/// An owned fixed IPv6 header.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Repr {
    pub src_addr: Ipv6Addr,
    pub dst_addr: Ipv6Addr,
    /// Next header of the fixed header (may be an extension header).
    pub next_header: IpProtocol,
    pub payload_len: usize,
    pub hop_limit: u8,
    pub traffic_class: u8,
    pub flow_label: u32,
}

impl Repr {
    /// Parses the fixed header (lengths as [`Packet::new_checked`]).
    pub fn parse<T: AsRef<[u8]>>(p: &Packet<T>) -> Result<Repr> {
        p.check_len()?;
        Ok(Repr {
            src_addr: p.src_addr(),
            dst_addr: p.dst_addr(),
            next_header: p.next_header(),
            payload_len: usize::from(p.payload_len()),
            hop_limit: p.hop_limit(),
            traffic_class: p.traffic_class(),
            flow_label: p.flow_label(),
        })
    }

    #[inline]
    pub const fn buffer_len(&self) -> usize {
        HEADER_LEN
    }

    /// Writes the 40-byte fixed header; the payload is the caller's.
    pub fn emit<T: AsRef<[u8]> + AsMut<[u8]>>(&self, p: &mut Packet<T>) -> Result<()> {
        if p.buffer.as_ref().len() < HEADER_LEN {
            return Err(Error::BufferTooSmall);
        }
        let pl = u16::try_from(self.payload_len).map_err(|_| Error::Malformed)?;
        p.set_version_tc_flow(self.traffic_class, self.flow_label);
        p.set_payload_len(pl);
        p.set_next_header(self.next_header);
        p.set_hop_limit(self.hop_limit);
        p.set_src_addr(&self.src_addr);
        p.set_dst_addr(&self.dst_addr);
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use etherparse::{Ipv6ExtensionsSlice, Ipv6HeaderSlice};

    // fe80::1 -> ff02::1, UDP, 8-byte payload, hop limit 255, tc 0xb8, flow 0x12345.
    const UDP6: [u8; 48] = [
        0x6b, 0x81, 0x23, 0x45, 0x00, 0x08, 0x11, 0xff, 0xfe, 0x80, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,
        0, 0, 0, 0x01, 0xff, 0x02, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0x01, 0x02, 0x22, 0x02,
        0x23, 0x00, 0x08, 0x00, 0x00,
    ];

    fn with_ext(exts: &[u8], first_nh: u8) -> [u8; 128] {
        let mut b = [0u8; 128];
        b[..40].copy_from_slice(&UDP6[..40]);
        b[4..6].copy_from_slice(&((exts.len() + 8) as u16).to_be_bytes());
        b[6] = first_nh;
        b[40..40 + exts.len()].copy_from_slice(exts);
        b
    }

    #[test]
    fn deconstruct() {
        let p = Packet::new_checked(&UDP6[..]).unwrap();
        assert_eq!(p.version(), 6);
        assert_eq!(p.traffic_class(), 0xb8);
        assert_eq!(p.flow_label(), 0x12345);
        assert_eq!(p.payload_len(), 8);
        assert_eq!(p.next_header(), IpProtocol::UDP);
        assert_eq!(p.src_addr(), "fe80::1".parse::<Ipv6Addr>().unwrap());
        assert_eq!(p.dst_addr(), "ff02::1".parse::<Ipv6Addr>().unwrap());
        let e = Ipv6HeaderSlice::from_slice(&UDP6).unwrap();
        assert_eq!(e.traffic_class(), p.traffic_class());
        assert_eq!(e.flow_label().value(), p.flow_label());
        assert_eq!(e.source(), p.src_addr().octets());
        assert_eq!(e.destination(), p.dst_addr().octets());
        let w = p.walk_ext().unwrap();
        assert_eq!(
            (w.next_header, w.l4_offset, w.frag),
            (IpProtocol::UDP, 40, None)
        );
    }

    #[test]
    fn construct() {
        let r = Repr::parse(&Packet::new_checked(&UDP6[..]).unwrap()).unwrap();
        let mut b = [0u8; 40];
        r.emit(&mut Packet::new_unchecked(&mut b[..])).unwrap();
        assert_eq!(b, UDP6[..40]);
    }

    #[test]
    fn walk_chain() {
        // HBH (8 bytes: PadN) -> Routing type 0 segs 0 (8 bytes... len 0) -> AH (len 4
        // => 24 bytes) -> DstOpts (8) -> UDP.
        let mut ext = [0u8; 48];
        ext[0] = 43; // HBH next = routing
        ext[1] = 0;
        ext[2] = 1; // PadN
        ext[3] = 4;
        ext[8] = 51; // routing next = AH
        ext[9] = 0;
        ext[16] = 60; // AH next = dstopts
        ext[17] = 4; // (4 + 2) * 4 = 24 bytes
        ext[40] = 17; // dstopts next = UDP
        ext[41] = 0;
        ext[42] = 1;
        ext[43] = 4;
        let b = with_ext(&ext, 0);
        let p = Packet::new_checked(&b[..]).unwrap();
        let w = p.walk_ext().unwrap();
        assert_eq!(w.next_header, IpProtocol::UDP);
        assert_eq!(w.l4_offset, 40 + 48);
        // etherparse agrees on the chain length and final header.
        let (exts, nh, rest) =
            Ipv6ExtensionsSlice::from_slice(etherparse::IpNumber(0), &b[40..40 + 56]).unwrap();
        assert_eq!(nh.0, 17);
        assert_eq!(exts.slice().len(), 48);
        assert_eq!(rest.len(), 8);
    }

    #[test]
    fn walk_fragments() {
        // First fragment: frag header -> UDP.
        let mut ext = [0u8; 8];
        ext[0] = 17;
        ext[2..4].copy_from_slice(&1u16.to_be_bytes()); // offset 0, M=1
        ext[4..8].copy_from_slice(&0xdead_beefu32.to_be_bytes());
        let b = with_ext(&ext, 44);
        let w = Packet::new_checked(&b[..]).unwrap().walk_ext().unwrap();
        assert_eq!(w.next_header, IpProtocol::UDP);
        assert_eq!(w.l4_offset, 48);
        let f = w.frag.unwrap();
        assert!(f.more_frags && !f.is_non_first());
        assert_eq!((f.ident, f.header_offset), (0xdead_beef, 40));
        // Non-first fragment whose data looks like an extension header: not walked.
        ext[0] = 60;
        ext[2..4].copy_from_slice(&(1480u16 | 1).to_be_bytes());
        let b = with_ext(&ext, 44);
        let w = Packet::new_checked(&b[..]).unwrap().walk_ext().unwrap();
        assert_eq!(w.next_header, IpProtocol::IPV6_OPTS);
        assert_eq!(w.l4_offset, 48);
        assert_eq!(w.frag.unwrap().offset, 1480);
    }

    #[test]
    fn walk_errors() {
        // Hop-by-hop after the first header.
        let mut ext = [0u8; 16];
        ext[0] = 0; // dstopts -> HBH
        ext[8] = 17;
        let b = with_ext(&ext, 60);
        assert_eq!(
            Packet::new_checked(&b[..]).unwrap().walk_ext(),
            Err(Error::Malformed)
        );
        // Extension header longer than the payload length.
        let mut ext = [0u8; 8];
        ext[0] = 17;
        ext[1] = 5; // 48 bytes, payload has 16
        let b = with_ext(&ext, 60);
        assert_eq!(
            Packet::new_checked(&b[..]).unwrap().walk_ext(),
            Err(Error::Truncated)
        );
        // Too many headers.
        let mut ext = [0u8; 80];
        for i in 0..10 {
            ext[i * 8] = 60;
        }
        let b = with_ext(&ext, 60);
        assert_eq!(
            Packet::new_checked(&b[..]).unwrap().walk_ext(),
            Err(Error::Unsupported)
        );
        // Fixed header errors.
        assert_eq!(
            Packet::new_checked(&UDP6[..39]).err(),
            Some(Error::Truncated)
        );
        assert_eq!(
            Packet::new_checked(&UDP6[..47]).err(),
            Some(Error::Truncated)
        );
        let mut v4 = UDP6;
        v4[0] = 0x45;
        assert_eq!(Packet::new_checked(&v4[..]).err(), Some(Error::Malformed));
    }

    #[test]
    fn hop_limit() {
        let mut b = UDP6;
        let mut p = Packet::new_checked(&mut b[..]).unwrap();
        assert_eq!(p.decrement_hop_limit(), Some(254));
        p.set_hop_limit(1);
        assert_eq!(p.decrement_hop_limit(), None);
    }
}
