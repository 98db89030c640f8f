//! IPv4 headers (RFC 791 §3.1) with options, fragments (MF flag, fragment offset),
//! the header checksum (RFC 791, RFC 1071) and the forwarding TTL decrement with the
//! RFC 1624 incremental checksum update (RFC 1812 §5.3.1).

use super::bytes::{self, Field};
use super::checksum;
use super::{Error, IpProtocol, Result};
use core::net::Ipv4Addr;

mod field {
    use super::Field;
    pub const VER_IHL: usize = 0;
    pub const DSCP_ECN: usize = 1;
    pub const LENGTH: Field = 2..4;
    pub const IDENT: Field = 4..6;
    pub const FLG_OFF: Field = 6..8;
    pub const TTL: usize = 8;
    pub const PROTOCOL: usize = 9;
    /// TTL and protocol as the 16-bit word the checksum sees.
    pub const TTL_PROTO: Field = 8..10;
    pub const CHECKSUM: Field = 10..12;
    pub const SRC_ADDR: Field = 12..16;
    pub const DST_ADDR: Field = 16..20;
}

/// Length of a header without options.
pub const HEADER_LEN: usize = 20;
/// Longest header (IHL 15).
pub const MAX_HEADER_LEN: usize = 60;

const FLAG_DF: u16 = 0x4000;
const FLAG_MF: u16 = 0x2000;
const FLAG_RESERVED: u16 = 0x8000;
const OFFSET_MASK: u16 = 0x1fff;

/// A view over an IPv4 packet (header, options, payload up to the total length).
#[derive(Debug, Clone)]
pub struct Packet<T: AsRef<[u8]>> {
    buffer: T,
}

impl<T: AsRef<[u8]>> Packet<T> {
    /// Wraps a buffer without checks (getters on a short buffer read zero).
    #[inline]
    pub const fn new_unchecked(buffer: T) -> Packet<T> {
        Packet { buffer }
    }

    /// Wraps a buffer after checking: version 4, IHL ≥ 5, header ≤ total length ≤
    /// buffer length. The buffer may be longer than the total length (Ethernet
    /// padding); [`Packet::payload`] stops at the total length.
    #[inline]
    pub fn new_checked(buffer: T) -> Result<Packet<T>> {
        let p = Packet { buffer };
        p.check_len()?;
        Ok(p)
    }

    /// The checks of [`Packet::new_checked`].
    #[inline]
    pub fn check_len(&self) -> Result<()> {
        let len = self.buffer.as_ref().len();
        if len < HEADER_LEN {
            return Err(Error::Truncated);
        }
        if self.version() != 4 {
            return Err(Error::Malformed);
        }
        let hl = self.header_len();
        let tl = usize::from(self.total_len());
        if hl < HEADER_LEN || tl < hl {
            return Err(Error::Malformed);
        }
        if len < tl {
            return Err(Error::Truncated);
        }
        Ok(())
    }

    #[inline]
    pub fn into_inner(self) -> T {
        self.buffer
    }

    #[inline]
    pub fn version(&self) -> u8 {
        bytes::u8_at(self.buffer.as_ref(), field::VER_IHL) >> 4
    }

    /// Header length in bytes (IHL × 4).
    #[inline]
    pub fn header_len(&self) -> usize {
        usize::from(bytes::u8_at(self.buffer.as_ref(), field::VER_IHL) & 0x0f) * 4
    }

    #[inline]
    pub fn dscp(&self) -> u8 {
        bytes::u8_at(self.buffer.as_ref(), field::DSCP_ECN) >> 2
    }

    #[inline]
    pub fn ecn(&self) -> u8 {
        bytes::u8_at(self.buffer.as_ref(), field::DSCP_ECN) & 0x03
    }

    #[inline]
    pub fn total_len(&self) -> u16 {
        bytes::u16_at(self.buffer.as_ref(), field::LENGTH)
    }

    #[inline]
    pub fn ident(&self) -> u16 {
        bytes::u16_at(self.buffer.as_ref(), field::IDENT)
    }

    #[inline]
    fn flags_offset(&self) -> u16 {
        bytes::u16_at(self.buffer.as_ref(), field::FLG_OFF)
    }

    /// The reserved flag bit (must be zero, RFC 791).
    #[inline]
    pub fn reserved_flag(&self) -> bool {
        self.flags_offset() & FLAG_RESERVED != 0
    }

    #[inline]
    pub fn dont_frag(&self) -> bool {
        self.flags_offset() & FLAG_DF != 0
    }

    #[inline]
    pub fn more_frags(&self) -> bool {
        self.flags_offset() & FLAG_MF != 0
    }

    /// Fragment offset in bytes (the field × 8).
    #[inline]
    pub fn frag_offset(&self) -> u16 {
        (self.flags_offset() & OFFSET_MASK) << 3
    }

    /// True for any fragment: MF set or a non-zero offset.
    #[inline]
    pub fn is_fragment(&self) -> bool {
        self.flags_offset() & (FLAG_MF | OFFSET_MASK) != 0
    }

    /// True for a fragment other than the first (its payload has no L4 header).
    #[inline]
    pub fn is_non_first_fragment(&self) -> bool {
        self.flags_offset() & OFFSET_MASK != 0
    }

    #[inline]
    pub fn ttl(&self) -> u8 {
        bytes::u8_at(self.buffer.as_ref(), field::TTL)
    }

    #[inline]
    pub fn protocol(&self) -> IpProtocol {
        IpProtocol(bytes::u8_at(self.buffer.as_ref(), field::PROTOCOL))
    }

    #[inline]
    pub fn checksum(&self) -> u16 {
        bytes::u16_at(self.buffer.as_ref(), field::CHECKSUM)
    }

    #[inline]
    pub fn src_addr(&self) -> Ipv4Addr {
        Ipv4Addr::from(bytes::u32_at(self.buffer.as_ref(), field::SRC_ADDR))
    }

    #[inline]
    pub fn dst_addr(&self) -> Ipv4Addr {
        Ipv4Addr::from(bytes::u32_at(self.buffer.as_ref(), field::DST_ADDR))
    }

    /// The header including options.
    #[inline]
    pub fn header(&self) -> &[u8] {
        bytes::slice(self.buffer.as_ref(), 0..self.header_len())
    }

    /// The option bytes (empty for IHL 5).
    #[inline]
    pub fn options(&self) -> &[u8] {
        bytes::slice(self.buffer.as_ref(), HEADER_LEN..self.header_len())
    }

    /// The payload: from the end of the header to the total length.
    #[inline]
    pub fn payload(&self) -> &[u8] {
        bytes::slice(
            self.buffer.as_ref(),
            self.header_len()..usize::from(self.total_len()),
        )
    }

    /// True when the header checksum verifies.
    #[inline]
    pub fn verify_checksum(&self) -> bool {
        checksum::verify(self.header())
    }
}

impl<T: AsRef<[u8]> + AsMut<[u8]>> Packet<T> {
    /// Sets version 4 and the header length in bytes (a multiple of 4, 20..=60).
    #[inline]
    pub fn set_version_and_header_len(&mut self, header_len: usize) {
        let ihl = ((header_len / 4) & 0x0f) as u8;
        bytes::set_u8_at(self.buffer.as_mut(), field::VER_IHL, 0x40 | ihl);
    }

    #[inline]
    pub fn set_dscp_ecn(&mut self, dscp: u8, ecn: u8) {
        bytes::set_u8_at(
            self.buffer.as_mut(),
            field::DSCP_ECN,
            (dscp << 2) | (ecn & 3),
        );
    }

    #[inline]
    pub fn set_total_len(&mut self, v: u16) {
        bytes::set_u16_at(self.buffer.as_mut(), field::LENGTH, v);
    }

    #[inline]
    pub fn set_ident(&mut self, v: u16) {
        bytes::set_u16_at(self.buffer.as_mut(), field::IDENT, v);
    }

    /// Sets DF, MF and the fragment offset in bytes (rounded down to 8).
    #[inline]
    pub fn set_flags_and_offset(&mut self, dont_frag: bool, more_frags: bool, offset: u16) {
        let mut v = (offset >> 3) & OFFSET_MASK;
        if dont_frag {
            v |= FLAG_DF;
        }
        if more_frags {
            v |= FLAG_MF;
        }
        bytes::set_u16_at(self.buffer.as_mut(), field::FLG_OFF, v);
    }

    #[inline]
    pub fn set_ttl(&mut self, v: u8) {
        bytes::set_u8_at(self.buffer.as_mut(), field::TTL, v);
    }

    #[inline]
    pub fn set_protocol(&mut self, v: IpProtocol) {
        bytes::set_u8_at(self.buffer.as_mut(), field::PROTOCOL, v.0);
    }

    #[inline]
    pub fn set_checksum(&mut self, v: u16) {
        bytes::set_u16_at(self.buffer.as_mut(), field::CHECKSUM, v);
    }

    #[inline]
    pub fn set_src_addr(&mut self, a: Ipv4Addr) {
        bytes::set_u32_at(self.buffer.as_mut(), field::SRC_ADDR, u32::from(a));
    }

    #[inline]
    pub fn set_dst_addr(&mut self, a: Ipv4Addr) {
        bytes::set_u32_at(self.buffer.as_mut(), field::DST_ADDR, u32::from(a));
    }

    /// Recomputes the header checksum over the header including options.
    #[inline]
    pub fn fill_checksum(&mut self) {
        self.set_checksum(0);
        let c = checksum::internet(self.header());
        self.set_checksum(c);
    }

    /// Forwarding step of RFC 1812 §5.3.1: decrements the TTL and updates the header
    /// checksum incrementally (RFC 1624). Returns the new TTL, or `None` (packet
    /// unchanged) if the TTL was already 0 or 1 and the packet must not be forwarded.
    #[inline]
    pub fn decrement_ttl(&mut self) -> Option<u8> {
        let ttl = self.ttl();
        if ttl <= 1 {
            return None;
        }
        let old = bytes::u16_at(self.buffer.as_ref(), field::TTL_PROTO);
        let new = old - 0x0100;
        bytes::set_u16_at(self.buffer.as_mut(), field::TTL_PROTO, new);
        let hc = checksum::update16(self.checksum(), old, new);
        self.set_checksum(hc);
        Some(ttl - 1)
    }

    /// Rewrites the source address with an incremental checksum update (NAT). The
    /// L4 checksum, which also covers the address, is the caller's.
    #[inline]
    pub fn set_src_addr_update_checksum(&mut self, a: Ipv4Addr) {
        let old = u32::from(self.src_addr());
        self.set_src_addr(a);
        let hc = checksum::update32(self.checksum(), old, u32::from(a));
        self.set_checksum(hc);
    }

    /// Rewrites the destination address with an incremental checksum update.
    #[inline]
    pub fn set_dst_addr_update_checksum(&mut self, a: Ipv4Addr) {
        let old = u32::from(self.dst_addr());
        self.set_dst_addr(a);
        let hc = checksum::update32(self.checksum(), old, u32::from(a));
        self.set_checksum(hc);
    }

    /// The option bytes, mutable.
    #[inline]
    pub fn options_mut(&mut self) -> &mut [u8] {
        let hl = self.header_len();
        bytes::slice_mut(self.buffer.as_mut(), HEADER_LEN..hl)
    }

    /// The payload, mutable.
    #[inline]
    pub fn payload_mut(&mut self) -> &mut [u8] {
        let r = self.header_len()..usize::from(self.total_len());
        bytes::slice_mut(self.buffer.as_mut(), r)
    }
}

impl<T: AsRef<[u8]>> AsRef<[u8]> for Packet<T> {
    fn as_ref(&self) -> &[u8] {
        self.buffer.as_ref()
    }
}

/// An owned IPv4 header (without options).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Repr {
    pub src_addr: Ipv4Addr,
    pub dst_addr: Ipv4Addr,
    pub protocol: IpProtocol,
    /// Payload length (total length − header length).
    pub payload_len: usize,
    pub ttl: u8,
    pub dscp: u8,
    pub ecn: u8,
    pub ident: u16,
    pub dont_frag: bool,
    pub more_frags: bool,
    /// Fragment offset in bytes.
    pub frag_offset: u16,
}

impl Repr {
    /// Parses a header: lengths as [`Packet::new_checked`], reserved flag clear
    /// (`Malformed`) and a valid header checksum (`Checksum`). Options are skipped.
    pub fn parse<T: AsRef<[u8]>>(p: &Packet<T>) -> Result<Repr> {
        p.check_len()?;
        if p.reserved_flag() {
            return Err(Error::Malformed);
        }
        if !p.verify_checksum() {
            return Err(Error::Checksum);
        }
        Ok(Repr {
            src_addr: p.src_addr(),
            dst_addr: p.dst_addr(),
            protocol: p.protocol(),
            payload_len: usize::from(p.total_len()) - p.header_len(),
            ttl: p.ttl(),
            dscp: p.dscp(),
            ecn: p.ecn(),
            ident: p.ident(),
            dont_frag: p.dont_frag(),
            more_frags: p.more_frags(),
            frag_offset: p.frag_offset(),
        })
    }

    /// Header length when emitted (no options).
    #[inline]
    pub const fn buffer_len(&self) -> usize {
        HEADER_LEN
    }

    /// Writes a 20-byte header with a filled checksum. The buffer needs only the
    /// header; the payload is the caller's.
    pub fn emit<T: AsRef<[u8]> + AsMut<[u8]>>(&self, p: &mut Packet<T>) -> Result<()> {
        if p.buffer.as_ref().len() < HEADER_LEN {
            return Err(Error::BufferTooSmall);
        }
        let total = u16::try_from(HEADER_LEN + self.payload_len).map_err(|_| Error::Malformed)?;
        p.set_version_and_header_len(HEADER_LEN);
        p.set_dscp_ecn(self.dscp, self.ecn);
        p.set_total_len(total);
        p.set_ident(self.ident);
        p.set_flags_and_offset(self.dont_frag, self.more_frags, self.frag_offset);
        p.set_ttl(self.ttl);
        p.set_protocol(self.protocol);
        p.set_src_addr(self.src_addr);
        p.set_dst_addr(self.dst_addr);
        p.fill_checksum();
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use etherparse::Ipv4HeaderSlice;

    // UDP 192.168.0.1 -> 192.168.0.199, total length 0x73, TTL 64, DF, checksum b861.
    const HDR: [u8; 20] = [
        0x45, 0x00, 0x00, 0x73, 0x00, 0x00, 0x40, 0x00, 0x40, 0x11, 0xb8, 0x61, 0xc0, 0xa8, 0x00,
        0x01, 0xc0, 0xa8, 0x00, 0xc7,
    ];

    fn packet() -> [u8; 0x73] {
        let mut b = [0u8; 0x73];
        b[..20].copy_from_slice(&HDR);
        for (i, x) in b[20..].iter_mut().enumerate() {
            *x = i as u8;
        }
        b
    }

    fn repr() -> Repr {
        Repr {
            src_addr: Ipv4Addr::new(192, 168, 0, 1),
            dst_addr: Ipv4Addr::new(192, 168, 0, 199),
            protocol: IpProtocol::UDP,
            payload_len: 0x73 - 20,
            ttl: 64,
            dscp: 0,
            ecn: 0,
            ident: 0,
            dont_frag: true,
            more_frags: false,
            frag_offset: 0,
        }
    }

    #[test]
    fn deconstruct() {
        let b = packet();
        let p = Packet::new_checked(&b[..]).unwrap();
        assert_eq!(p.version(), 4);
        assert_eq!(p.header_len(), 20);
        assert_eq!(p.total_len(), 0x73);
        assert!(p.dont_frag() && !p.more_frags() && !p.is_fragment());
        assert_eq!(p.ttl(), 64);
        assert_eq!(p.protocol(), IpProtocol::UDP);
        assert!(p.verify_checksum());
        assert_eq!(p.payload().len(), 0x73 - 20);
        assert_eq!(Repr::parse(&p).unwrap(), repr());
        let e = Ipv4HeaderSlice::from_slice(&b).unwrap();
        assert_eq!(e.source(), p.src_addr().octets());
        assert_eq!(e.destination(), p.dst_addr().octets());
        assert_eq!(e.total_len(), p.total_len());
        assert_eq!(e.header_checksum(), p.checksum());
        assert_eq!(e.ttl(), p.ttl());
        assert_eq!(e.protocol().0, p.protocol().0);
    }

    #[test]
    fn construct() {
        let mut b = [0xffu8; 20];
        repr().emit(&mut Packet::new_unchecked(&mut b[..])).unwrap();
        assert_eq!(b, HDR);
        // etherparse builds the same header.
        let mut h = etherparse::Ipv4Header::new(
            0x73 - 20,
            64,
            etherparse::IpNumber::UDP,
            [192, 168, 0, 1],
            [192, 168, 0, 199],
        )
        .unwrap();
        h.dont_fragment = true;
        h.header_checksum = h.calc_header_checksum();
        assert_eq!(h.to_bytes().as_slice(), &HDR);
    }

    #[test]
    fn options_and_fragments() {
        // IHL 6 with a 4-byte option (NOP NOP NOP EOL), MF set, offset 1480 bytes.
        let mut b = [0u8; 28];
        b[0] = 0x46;
        b[2..4].copy_from_slice(&28u16.to_be_bytes());
        b[6..8].copy_from_slice(&(0x2000u16 | (1480 / 8)).to_be_bytes());
        b[8] = 9;
        b[9] = 6;
        b[12..16].copy_from_slice(&[10, 0, 0, 1]);
        b[16..20].copy_from_slice(&[10, 0, 0, 2]);
        b[20..24].copy_from_slice(&[1, 1, 1, 0]);
        let mut p = Packet::new_checked(&mut b[..]).unwrap();
        p.fill_checksum();
        assert_eq!(p.header_len(), 24);
        assert_eq!(p.options(), &[1, 1, 1, 0]);
        assert_eq!(p.payload().len(), 4);
        assert!(p.more_frags() && p.is_fragment() && p.is_non_first_fragment());
        assert_eq!(p.frag_offset(), 1480);
        let r = Repr::parse(&p).unwrap();
        assert_eq!(
            (r.more_frags, r.frag_offset, r.payload_len),
            (true, 1480, 4)
        );
        let e = Ipv4HeaderSlice::from_slice(&b).unwrap();
        assert_eq!(e.options(), &[1, 1, 1, 0]);
        assert_eq!(e.fragments_offset().value() * 8, 1480);
        assert!(e.more_fragments());
        assert_eq!(e.to_header().calc_header_checksum(), e.header_checksum());
    }

    #[test]
    fn ttl_and_nat_incremental() {
        let mut b = packet();
        let mut p = Packet::new_checked(&mut b[..]).unwrap();
        assert_eq!(p.decrement_ttl(), Some(63));
        assert!(p.verify_checksum());
        p.set_src_addr_update_checksum(Ipv4Addr::new(100, 64, 1, 2));
        p.set_dst_addr_update_checksum(Ipv4Addr::new(8, 8, 8, 8));
        assert!(p.verify_checksum());
        let c = p.checksum();
        p.fill_checksum();
        assert_eq!(c, p.checksum());
        p.set_ttl(1);
        p.fill_checksum();
        assert_eq!(p.decrement_ttl(), None);
        assert_eq!(p.ttl(), 1);
    }

    #[test]
    fn errors() {
        let b = packet();
        assert_eq!(Packet::new_checked(&b[..19]).err(), Some(Error::Truncated));
        assert_eq!(
            Packet::new_checked(&b[..0x72]).err(),
            Some(Error::Truncated)
        );
        let mut v6 = b;
        v6[0] = 0x65;
        assert_eq!(Packet::new_checked(&v6[..]).err(), Some(Error::Malformed));
        let mut ihl = b;
        ihl[0] = 0x44;
        assert_eq!(Packet::new_checked(&ihl[..]).err(), Some(Error::Malformed));
        let mut tl = b;
        tl[2..4].copy_from_slice(&19u16.to_be_bytes());
        assert_eq!(Packet::new_checked(&tl[..]).err(), Some(Error::Malformed));
        let mut bad = b;
        bad[11] ^= 1;
        assert_eq!(
            Repr::parse(&Packet::new_checked(&bad[..]).unwrap()),
            Err(Error::Checksum)
        );
        // Ethernet padding after the total length is ignored.
        let mut padded = [0u8; 0x80];
        padded[..0x73].copy_from_slice(&b);
        assert_eq!(
            Packet::new_checked(&padded[..]).unwrap().payload().len(),
            0x73 - 20
        );
    }
}
