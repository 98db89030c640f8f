//! ARP (RFC 826) packets. The view reads any hardware/protocol address sizes; [`Repr`]
//! handles the Ethernet/IPv4 pair (htype 1, ptype 0x0800, hlen 6, plen 4), the only one
//! the data plane answers.

use super::bytes::{self, Field};
use super::ethernet::MacAddr;
use super::{Error, EtherType, Result};
use core::net::Ipv4Addr;

mod field {
    use super::Field;
    pub const HTYPE: Field = 0..2;
    pub const PTYPE: Field = 2..4;
    pub const HLEN: usize = 4;
    pub const PLEN: usize = 5;
    pub const OPER: Field = 6..8;

    #[inline]
    pub const fn sha(hlen: usize, _plen: usize) -> Field {
        8..8 + hlen
    }
    #[inline]
    pub const fn spa(hlen: usize, plen: usize) -> Field {
        8 + hlen..8 + hlen + plen
    }
    #[inline]
    pub const fn tha(hlen: usize, plen: usize) -> Field {
        8 + hlen + plen..8 + 2 * hlen + plen
    }
    #[inline]
    pub const fn tpa(hlen: usize, plen: usize) -> Field {
        8 + 2 * hlen + plen..8 + 2 * hlen + 2 * plen
    }
}

/// Fixed part before the addresses.
pub const FIXED_LEN: usize = 8;
/// Length of an Ethernet/IPv4 ARP packet.
pub const ETH_IPV4_LEN: usize = 28;

/// ARP hardware type for Ethernet.
pub const HTYPE_ETHERNET: u16 = 1;

/// The ARP opcode.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Operation(pub u16);

impl Operation {
    pub const REQUEST: Operation = Operation(1);
    pub const REPLY: Operation = Operation(2);
}

/// A view over an ARP packet.
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

    /// Wraps a buffer after checking it holds the fixed part and the four addresses.
    #[inline]
    pub fn new_checked(buffer: T) -> Result<Packet<T>> {
        let p = Packet { buffer };
        p.check_len()?;
        Ok(p)
    }

    #[inline]
    pub fn check_len(&self) -> Result<()> {
        let len = self.buffer.as_ref().len();
        if len < FIXED_LEN {
            return Err(Error::Truncated);
        }
        if len < field::tpa(self.hlen(), self.plen()).end {
            return Err(Error::Truncated);
        }
        Ok(())
    }

    #[inline]
    pub fn into_inner(self) -> T {
        self.buffer
    }

    #[inline]
    pub fn hardware_type(&self) -> u16 {
        bytes::u16_at(self.buffer.as_ref(), field::HTYPE)
    }

    #[inline]
    pub fn protocol_type(&self) -> EtherType {
        EtherType(bytes::u16_at(self.buffer.as_ref(), field::PTYPE))
    }

    #[inline]
    fn hlen(&self) -> usize {
        usize::from(self.hardware_len())
    }

    #[inline]
    fn plen(&self) -> usize {
        usize::from(self.protocol_len())
    }

    #[inline]
    pub fn hardware_len(&self) -> u8 {
        bytes::u8_at(self.buffer.as_ref(), field::HLEN)
    }

    #[inline]
    pub fn protocol_len(&self) -> u8 {
        bytes::u8_at(self.buffer.as_ref(), field::PLEN)
    }

    #[inline]
    pub fn operation(&self) -> Operation {
        Operation(bytes::u16_at(self.buffer.as_ref(), field::OPER))
    }

    #[inline]
    pub fn source_hardware_addr(&self) -> &[u8] {
        bytes::slice(self.buffer.as_ref(), field::sha(self.hlen(), self.plen()))
    }

    #[inline]
    pub fn source_protocol_addr(&self) -> &[u8] {
        bytes::slice(self.buffer.as_ref(), field::spa(self.hlen(), self.plen()))
    }

    #[inline]
    pub fn target_hardware_addr(&self) -> &[u8] {
        bytes::slice(self.buffer.as_ref(), field::tha(self.hlen(), self.plen()))
    }

    #[inline]
    pub fn target_protocol_addr(&self) -> &[u8] {
        bytes::slice(self.buffer.as_ref(), field::tpa(self.hlen(), self.plen()))
    }
}

impl<T: AsRef<[u8]> + AsMut<[u8]>> Packet<T> {
    #[inline]
    pub fn set_hardware_type(&mut self, v: u16) {
        bytes::set_u16_at(self.buffer.as_mut(), field::HTYPE, v);
    }

    #[inline]
    pub fn set_protocol_type(&mut self, v: EtherType) {
        bytes::set_u16_at(self.buffer.as_mut(), field::PTYPE, v.0);
    }

    #[inline]
    pub fn set_hardware_len(&mut self, v: u8) {
        bytes::set_u8_at(self.buffer.as_mut(), field::HLEN, v);
    }

    #[inline]
    pub fn set_protocol_len(&mut self, v: u8) {
        bytes::set_u8_at(self.buffer.as_mut(), field::PLEN, v);
    }

    #[inline]
    pub fn set_operation(&mut self, v: Operation) {
        bytes::set_u16_at(self.buffer.as_mut(), field::OPER, v.0);
    }

    /// Writes the sender hardware address; ignored unless `a` is `hardware_len` long.
    #[inline]
    pub fn set_source_hardware_addr(&mut self, a: &[u8]) {
        let f = field::sha(self.hlen(), self.plen());
        bytes::set_bytes_at(self.buffer.as_mut(), f, a);
    }

    #[inline]
    pub fn set_source_protocol_addr(&mut self, a: &[u8]) {
        let f = field::spa(self.hlen(), self.plen());
        bytes::set_bytes_at(self.buffer.as_mut(), f, a);
    }

    #[inline]
    pub fn set_target_hardware_addr(&mut self, a: &[u8]) {
        let f = field::tha(self.hlen(), self.plen());
        bytes::set_bytes_at(self.buffer.as_mut(), f, a);
    }

    #[inline]
    pub fn set_target_protocol_addr(&mut self, a: &[u8]) {
        let f = field::tpa(self.hlen(), self.plen());
        bytes::set_bytes_at(self.buffer.as_mut(), f, a);
    }
}

/// An Ethernet/IPv4 ARP message.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Repr {
    pub operation: Operation,
    pub source_hardware_addr: MacAddr,
    pub source_protocol_addr: Ipv4Addr,
    pub target_hardware_addr: MacAddr,
    pub target_protocol_addr: Ipv4Addr,
}

impl Repr {
    /// Parses an Ethernet/IPv4 ARP request or reply; other address families or
    /// opcodes are `Unsupported`.
    pub fn parse<T: AsRef<[u8]>>(p: &Packet<T>) -> Result<Repr> {
        p.check_len()?;
        if p.hardware_type() != HTYPE_ETHERNET
            || p.protocol_type() != EtherType::IPV4
            || p.hardware_len() != 6
            || p.protocol_len() != 4
        {
            return Err(Error::Unsupported);
        }
        let operation = p.operation();
        if operation != Operation::REQUEST && operation != Operation::REPLY {
            return Err(Error::Unsupported);
        }
        Ok(Repr {
            operation,
            source_hardware_addr: MacAddr::from_bytes(p.source_hardware_addr())?,
            source_protocol_addr: ipv4_from(p.source_protocol_addr())?,
            target_hardware_addr: MacAddr::from_bytes(p.target_hardware_addr())?,
            target_protocol_addr: ipv4_from(p.target_protocol_addr())?,
        })
    }

    #[inline]
    pub const fn buffer_len(&self) -> usize {
        ETH_IPV4_LEN
    }

    /// Writes the 28-byte message.
    pub fn emit<T: AsRef<[u8]> + AsMut<[u8]>>(&self, p: &mut Packet<T>) -> Result<()> {
        if p.buffer.as_ref().len() < ETH_IPV4_LEN {
            return Err(Error::BufferTooSmall);
        }
        p.set_hardware_type(HTYPE_ETHERNET);
        p.set_protocol_type(EtherType::IPV4);
        p.set_hardware_len(6);
        p.set_protocol_len(4);
        p.set_operation(self.operation);
        p.set_source_hardware_addr(&self.source_hardware_addr.0);
        p.set_source_protocol_addr(&self.source_protocol_addr.octets());
        p.set_target_hardware_addr(&self.target_hardware_addr.0);
        p.set_target_protocol_addr(&self.target_protocol_addr.octets());
        Ok(())
    }

    /// The reply to this request from `our_mac` (RFC 826 "swap ... put local
    /// addresses in the sender fields").
    pub fn reply(&self, our_mac: MacAddr) -> Repr {
        Repr {
            operation: Operation::REPLY,
            source_hardware_addr: our_mac,
            source_protocol_addr: self.target_protocol_addr,
            target_hardware_addr: self.source_hardware_addr,
            target_protocol_addr: self.source_protocol_addr,
        }
    }
}

#[inline]
fn ipv4_from(b: &[u8]) -> Result<Ipv4Addr> {
    let a: [u8; 4] = b.try_into().map_err(|_| Error::Truncated)?;
    Ok(Ipv4Addr::from(a))
}

#[cfg(test)]
mod tests {
    use super::*;
    use etherparse::{ArpHardwareId, EtherType as EpEtherType};

    // Who has 10.0.0.2? Tell 10.0.0.1 (52:54:00:12:34:56).
    const REQUEST: [u8; 28] = [
        0x00, 0x01, 0x08, 0x00, 0x06, 0x04, 0x00, 0x01, 0x52, 0x54, 0x00, 0x12, 0x34, 0x56, 0x0a,
        0x00, 0x00, 0x01, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x0a, 0x00, 0x00, 0x02,
    ];

    fn request_repr() -> Repr {
        Repr {
            operation: Operation::REQUEST,
            source_hardware_addr: MacAddr([0x52, 0x54, 0x00, 0x12, 0x34, 0x56]),
            source_protocol_addr: Ipv4Addr::new(10, 0, 0, 1),
            target_hardware_addr: MacAddr::ZERO,
            target_protocol_addr: Ipv4Addr::new(10, 0, 0, 2),
        }
    }

    #[test]
    fn deconstruct() {
        let p = Packet::new_checked(&REQUEST[..]).unwrap();
        assert_eq!(p.hardware_type(), 1);
        assert_eq!(p.protocol_type(), EtherType::IPV4);
        assert_eq!(p.operation(), Operation::REQUEST);
        assert_eq!(p.target_protocol_addr(), &[10, 0, 0, 2]);
        assert_eq!(Repr::parse(&p).unwrap(), request_repr());
        // etherparse 0.16 has no ARP parser; cross-check the registry numbers.
        assert_eq!(ArpHardwareId::ETHER.0, p.hardware_type());
        assert_eq!(EpEtherType::IPV4.0, p.protocol_type().0);
        assert_eq!(EpEtherType::ARP.0, EtherType::ARP.0);
    }

    #[test]
    fn construct_and_reply() {
        let mut buf = [0xaau8; 28];
        request_repr()
            .emit(&mut Packet::new_unchecked(&mut buf[..]))
            .unwrap();
        assert_eq!(buf, REQUEST);
        let ours = MacAddr([2, 0, 0, 0, 0, 2]);
        let rep = request_repr().reply(ours);
        rep.emit(&mut Packet::new_unchecked(&mut buf[..])).unwrap();
        let back = Repr::parse(&Packet::new_checked(&buf[..]).unwrap()).unwrap();
        assert_eq!(back.operation, Operation::REPLY);
        assert_eq!(back.source_hardware_addr, ours);
        assert_eq!(back.source_protocol_addr, Ipv4Addr::new(10, 0, 0, 2));
        assert_eq!(back.target_protocol_addr, Ipv4Addr::new(10, 0, 0, 1));
    }

    #[test]
    fn errors() {
        assert_eq!(
            Packet::new_checked(&REQUEST[..27]).err(),
            Some(Error::Truncated)
        );
        assert_eq!(
            Packet::new_checked(&REQUEST[..7]).err(),
            Some(Error::Truncated)
        );
        let mut other = REQUEST;
        other[0..2].copy_from_slice(&6u16.to_be_bytes());
        assert_eq!(
            Repr::parse(&Packet::new_checked(&other[..]).unwrap()),
            Err(Error::Unsupported)
        );
        let mut big = REQUEST;
        big[4] = 200; // claims 200-byte hardware addresses
        assert_eq!(Packet::new_checked(&big[..]).err(), Some(Error::Truncated));
        let mut short = [0u8; 20];
        assert_eq!(
            request_repr().emit(&mut Packet::new_unchecked(&mut short[..])),
            Err(Error::BufferTooSmall)
        );
    }
}
