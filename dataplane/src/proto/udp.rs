//! UDP datagrams (RFC 768) with the checksum over the IPv4 or IPv6 pseudo-header
//! (RFC 768, RFC 8200 §8.1: a zero checksum means "none" over IPv4 and is invalid
//! over IPv6; a computed zero is sent as 0xffff).

use super::bytes::{self, Field};
use super::checksum::{self, PseudoHeader};
use super::{Error, IpProtocol, Result};

mod field {
    use super::Field;
    pub const SRC_PORT: Field = 0..2;
    pub const DST_PORT: Field = 2..4;
    pub const LENGTH: Field = 4..6;
    pub const CHECKSUM: Field = 6..8;
}

/// Length of the UDP header.
pub const HEADER_LEN: usize = 8;

/// A view over a UDP datagram.
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

    /// Wraps a buffer after checking: 8 ≤ length field (`Malformed`) ≤ buffer length
    /// (`Truncated`).
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
        let l = usize::from(self.len());
        if l < HEADER_LEN {
            return Err(Error::Malformed);
        }
        if len < l {
            return Err(Error::Truncated);
        }
        Ok(())
    }

    #[inline]
    pub fn into_inner(self) -> T {
        self.buffer
    }

    #[inline]
    pub fn src_port(&self) -> u16 {
        bytes::u16_at(self.buffer.as_ref(), field::SRC_PORT)
    }

    #[inline]
    pub fn dst_port(&self) -> u16 {
        bytes::u16_at(self.buffer.as_ref(), field::DST_PORT)
    }

    /// The length field (header + payload).
    #[inline]
    pub fn len(&self) -> u16 {
        bytes::u16_at(self.buffer.as_ref(), field::LENGTH)
    }

    /// True when the length field says there is no payload.
    #[inline]
    pub fn is_empty(&self) -> bool {
        usize::from(self.len()) <= HEADER_LEN
    }

    #[inline]
    pub fn checksum(&self) -> u16 {
        bytes::u16_at(self.buffer.as_ref(), field::CHECKSUM)
    }

    /// The payload up to the length field.
    #[inline]
    pub fn payload(&self) -> &[u8] {
        bytes::slice(self.buffer.as_ref(), HEADER_LEN..usize::from(self.len()))
    }

    /// Header and payload up to the length field.
    #[inline]
    fn datagram(&self) -> &[u8] {
        bytes::slice(self.buffer.as_ref(), 0..usize::from(self.len()))
    }

    /// Verifies the checksum. Over IPv4 a zero field means "not computed" and
    /// verifies; over IPv6 it is invalid.
    #[inline]
    pub fn verify_checksum(&self, ph: &PseudoHeader) -> bool {
        if self.checksum() == 0 {
            return !ph.is_v6();
        }
        let ps = ph.sum(IpProtocol::UDP, u32::from(self.len()));
        checksum::add(ps, checksum::data(self.datagram())) == 0xffff
    }
}

impl<T: AsRef<[u8]> + AsMut<[u8]>> Packet<T> {
    #[inline]
    pub fn set_src_port(&mut self, v: u16) {
        bytes::set_u16_at(self.buffer.as_mut(), field::SRC_PORT, v);
    }

    #[inline]
    pub fn set_dst_port(&mut self, v: u16) {
        bytes::set_u16_at(self.buffer.as_mut(), field::DST_PORT, v);
    }

    #[inline]
    pub fn set_len(&mut self, v: u16) {
        bytes::set_u16_at(self.buffer.as_mut(), field::LENGTH, v);
    }

    #[inline]
    pub fn set_checksum(&mut self, v: u16) {
        bytes::set_u16_at(self.buffer.as_mut(), field::CHECKSUM, v);
    }

    /// Computes and stores the checksum over the pseudo-header, header and payload
    /// (up to the length field). A result of zero is stored as 0xffff.
    #[inline]
    pub fn fill_checksum(&mut self, ph: &PseudoHeader) {
        self.set_checksum(0);
        let ps = ph.sum(IpProtocol::UDP, u32::from(self.len()));
        let c = !checksum::add(ps, checksum::data(self.datagram()));
        self.set_checksum(if c == 0 { 0xffff } else { c });
    }

    /// Rewrites the source port with an incremental checksum update (NAPT). A zero
    /// (absent, IPv4) checksum stays zero.
    #[inline]
    pub fn set_src_port_update_checksum(&mut self, v: u16) {
        let old = self.src_port();
        self.set_src_port(v);
        self.update_checksum16(old, v);
    }

    /// Rewrites the destination port with an incremental checksum update.
    #[inline]
    pub fn set_dst_port_update_checksum(&mut self, v: u16) {
        let old = self.dst_port();
        self.set_dst_port(v);
        self.update_checksum16(old, v);
    }

    /// Applies RFC 1624 for a 16-bit word of the datagram or pseudo-header that
    /// changed from `old` to `new`; keeps an absent (zero) checksum absent.
    #[inline]
    pub fn update_checksum16(&mut self, old: u16, new: u16) {
        let c = self.checksum();
        if c != 0 {
            let n = checksum::update16(c, old, new);
            self.set_checksum(if n == 0 { 0xffff } else { n });
        }
    }

    /// Applies RFC 1624 for a 32-bit pseudo-header field (an IPv4 address under NAT).
    #[inline]
    pub fn update_checksum32(&mut self, old: u32, new: u32) {
        let c = self.checksum();
        if c != 0 {
            let n = checksum::update32(c, old, new);
            self.set_checksum(if n == 0 { 0xffff } else { n });
        }
    }

    #[inline]
    pub fn payload_mut(&mut self) -> &mut [u8] {
        let end = usize::from(self.len());
        bytes::slice_mut(self.buffer.as_mut(), HEADER_LEN..end)
    }
}

impl<T: AsRef<[u8]>> AsRef<[u8]> for Packet<T> {
    fn as_ref(&self) -> &[u8] {
        self.buffer.as_ref()
    }
}

/// An owned UDP header.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Repr {
    pub src_port: u16,
    pub dst_port: u16,
    pub payload_len: usize,
}

impl Repr {
    /// Parses the header. The destination port must not be zero (`Malformed`); the
    /// checksum is verified separately with [`Packet::verify_checksum`], which needs
    /// the IP addresses.
    pub fn parse<T: AsRef<[u8]>>(p: &Packet<T>) -> Result<Repr> {
        p.check_len()?;
        if p.dst_port() == 0 {
            return Err(Error::Malformed);
        }
        Ok(Repr {
            src_port: p.src_port(),
            dst_port: p.dst_port(),
            payload_len: usize::from(p.len()) - HEADER_LEN,
        })
    }

    #[inline]
    pub const fn header_len(&self) -> usize {
        HEADER_LEN
    }

    #[inline]
    pub const fn buffer_len(&self) -> usize {
        HEADER_LEN + self.payload_len
    }

    /// Writes the header with a zero checksum; copy the payload in, then call
    /// [`Packet::fill_checksum`].
    pub fn emit<T: AsRef<[u8]> + AsMut<[u8]>>(&self, p: &mut Packet<T>) -> Result<()> {
        if p.buffer.as_ref().len() < HEADER_LEN {
            return Err(Error::BufferTooSmall);
        }
        let l = u16::try_from(self.buffer_len()).map_err(|_| Error::Malformed)?;
        p.set_src_port(self.src_port);
        p.set_dst_port(self.dst_port);
        p.set_len(l);
        p.set_checksum(0);
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use core::net::{Ipv4Addr, Ipv6Addr};
    use etherparse::{PacketBuilder, UdpHeaderSlice};

    const SRC4: Ipv4Addr = Ipv4Addr::new(192, 168, 1, 10);
    const DST4: Ipv4Addr = Ipv4Addr::new(192, 168, 1, 1);

    /// DNS-looking datagram built by etherparse (IPv4 + UDP), as bytes.
    fn etherparse_v4(payload: &[u8]) -> alloc::vec::Vec<u8> {
        let b = PacketBuilder::ipv4(SRC4.octets(), DST4.octets(), 64).udp(51000, 53);
        let mut out = alloc::vec::Vec::new();
        b.write(&mut out, payload).unwrap();
        out
    }

    #[test]
    fn deconstruct_v4() {
        let payload = b"\x12\x34\x01\x00\x00\x01\x00\x00\x00\x00\x00\x00\x07example\x03com\x00\x00\x01\x00\x01";
        let bytes = etherparse_v4(payload);
        let udp = &bytes[20..];
        let p = Packet::new_checked(udp).unwrap();
        assert_eq!((p.src_port(), p.dst_port()), (51000, 53));
        assert_eq!(usize::from(p.len()), 8 + payload.len());
        assert_eq!(p.payload(), payload);
        let ph = PseudoHeader::V4 {
            src: SRC4,
            dst: DST4,
        };
        assert!(p.verify_checksum(&ph));
        let e = UdpHeaderSlice::from_slice(udp).unwrap();
        assert_eq!(e.checksum(), p.checksum());
        let r = Repr::parse(&p).unwrap();
        assert_eq!(
            r,
            Repr {
                src_port: 51000,
                dst_port: 53,
                payload_len: payload.len()
            }
        );
        let wrong = PseudoHeader::V4 {
            src: SRC4,
            dst: Ipv4Addr::new(192, 168, 1, 2),
        };
        assert!(!p.verify_checksum(&wrong));
    }

    #[test]
    fn construct_v4_matches_etherparse() {
        let payload = [1u8, 2, 3, 4, 5];
        let want = etherparse_v4(&payload);
        let r = Repr {
            src_port: 51000,
            dst_port: 53,
            payload_len: 5,
        };
        let mut buf = [0u8; 13];
        let mut p = Packet::new_unchecked(&mut buf[..]);
        r.emit(&mut p).unwrap();
        p.payload_mut().copy_from_slice(&payload);
        p.fill_checksum(&PseudoHeader::V4 {
            src: SRC4,
            dst: DST4,
        });
        assert_eq!(&buf[..], &want[20..]);
    }

    #[test]
    fn v6_checksum_and_zero() {
        let src: Ipv6Addr = "2001:db8::1".parse().unwrap();
        let dst: Ipv6Addr = "2001:db8::2".parse().unwrap();
        let b = PacketBuilder::ipv6(src.octets(), dst.octets(), 64).udp(546, 547);
        let mut out = alloc::vec::Vec::new();
        b.write(&mut out, &[9, 8, 7]).unwrap();
        let ph = PseudoHeader::V6 { src, dst };
        let mut udp = out[40..].to_vec();
        let mut p = Packet::new_checked(&mut udp[..]).unwrap();
        assert!(p.verify_checksum(&ph));
        p.set_checksum(0);
        assert!(
            !p.verify_checksum(&ph),
            "zero checksum is invalid over IPv6"
        );
        assert!(p.verify_checksum(&PseudoHeader::V4 {
            src: SRC4,
            dst: DST4
        }));
        p.fill_checksum(&ph);
        assert_eq!(&udp[..], &out[40..]);
    }

    #[test]
    fn napt_incremental() {
        let mut bytes = etherparse_v4(b"hello");
        let ph2 = PseudoHeader::V4 {
            src: Ipv4Addr::new(100, 64, 0, 1),
            dst: DST4,
        };
        let mut p = Packet::new_checked(&mut bytes[20..]).unwrap();
        p.set_src_port_update_checksum(40000);
        p.update_checksum32(u32::from(SRC4), u32::from(Ipv4Addr::new(100, 64, 0, 1)));
        assert!(p.verify_checksum(&ph2));
    }

    #[test]
    fn errors() {
        let bytes = etherparse_v4(b"abc");
        let udp = &bytes[20..];
        assert_eq!(Packet::new_checked(&udp[..7]).err(), Some(Error::Truncated));
        assert_eq!(
            Packet::new_checked(&udp[..10]).err(),
            Some(Error::Truncated)
        );
        let mut bad = udp.to_vec();
        bad[4..6].copy_from_slice(&7u16.to_be_bytes());
        assert_eq!(Packet::new_checked(&bad[..]).err(), Some(Error::Malformed));
        let mut zero = udp.to_vec();
        zero[2..4].copy_from_slice(&[0, 0]);
        assert_eq!(
            Repr::parse(&Packet::new_checked(&zero[..]).unwrap()),
            Err(Error::Malformed)
        );
    }
}
