//! Zero-copy protocol views in the smoltcp shape.
//!
//! Every protocol lives in its own file and offers two types:
//!
//! * a view `Packet<T: AsRef<[u8]>>` (Ethernet calls it [`ethernet::Frame`]) over the
//!   wire bytes. `new_checked` validates the lengths once; the getters (and, for
//!   `T: AsMut<[u8]>`, the setters) then read fixed byte ranges named in a private
//!   `mod field`. Accessors never panic: on a view built with `new_unchecked` over a too
//!   short buffer a getter reads zero and a setter writes nothing.
//! * an owned `Repr` with `parse(&view) -> Result<Repr, Error>` and
//!   `emit(&self, &mut view)`: the only place that validates field values.
//!
//! Nothing here uses `std`; it links into the unikernel unchanged. The views and
//! parsers never allocate, except [`dhcp4::Repr::parse`] and [`dhcp6::Repr::parse`],
//! which own the decoded options. The emitters of the control protocols a BNG terminates
//! ([`pppoe::DiscoveryRepr::emit`], the [`ppp`] control-packet emitters,
//! [`radius::Builder`], [`dhcp4::Repr::emit`], [`dhcp6::Repr::emit`]) append to a `Vec` (`alloc`): they run
//! on the control path, never per forwarded packet.
//! [`checksum`] holds the RFC 1071 internet checksum, the pseudo-header sums and the
//! RFC 1624 incremental update.
//!
//! - [`ethernet`]: Ethernet II with IEEE 802.1Q / 802.1ad (QinQ) tags; the one VLAN tag
//!   walker ([`ethernet::walk_vlans`]) and the TR-101 access-line VLAN pair
//!   ([`ethernet::Vlans`])
//! - [`arp`], [`ipv4`], [`ipv6`], [`icmpv4`], [`icmpv6`], [`tcp`], [`udp`]: see each
//!   module
//! - [`pppoe`]: PPPoE discovery and session stages (RFC 2516 §4–§5, Appendix A; RFC 4638)
//! - [`ppp`]: PPP in PPPoE and the LCP-family control packets and options (RFC 1661
//!   §5–§6, RFC 1332, RFC 1877, RFC 5072), PAP (RFC 1334 §2.2), CHAP (RFC 1994 §4)
//! - [`radius`]: RADIUS packets, attributes and authenticators (RFC 2865 §3–§5,
//!   RFC 2866, RFC 2869, RFC 3579 §3.2, RFC 5176)
//! - [`dhcp4`]: DHCPv4 messages and options (RFC 2131 §2–§3, RFC 2132, RFC 3046 relay
//!   agent information, RFC 3396 long options, RFC 3442 classless static routes)
//! - [`dhcp6`]: DHCPv6 client/server and relay messages and options (RFC 8415 §8, §9,
//!   §11, §21: DUIDs, IA_NA, IA_PD, status codes, ...; RFC 3646 DNS servers)
//! - [`memif`]: memif 2.0 control messages and ring layout (libmemif / DPDK
//!   `net_memif` `memif.h`), parsed for the memif port
//! - [`vhost_user`]: vhost-user messages (QEMU `docs/interop/vhost-user.rst`) and the
//!   split-virtqueue layout (VIRTIO 1.1 §2.6), parsed for the vhost-user port

pub mod arp;
pub mod checksum;
pub mod decode;
pub mod dhcp4;
pub mod dhcp6;
pub mod ethernet;
pub mod icmpv4;
pub mod icmpv6;
pub mod ipv4;
pub mod ipv6;
pub mod memif;
pub mod ppp;
pub mod pppoe;
pub mod radius;
pub mod tcp;
pub mod udp;
pub mod vhost_user;

use core::fmt;

/// Why a packet could not be viewed, parsed or built. Each variant maps to one drop
/// reason counter in the stages.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Error {
    /// The buffer is shorter than a header or than a length field says.
    Truncated,
    /// A field holds a value the protocol forbids (bad version, length below minimum,
    /// zero-length option, ...).
    Malformed,
    /// Well-formed but not handled here (unknown message type, more than two VLAN tags,
    /// ARP for another hardware/protocol pair, ...).
    Unsupported,
    /// The checksum does not verify.
    Checksum,
    /// The output buffer is too small to emit into.
    BufferTooSmall,
}

impl Error {
    /// A short static name, usable as a drop-reason label.
    pub const fn as_str(self) -> &'static str {
        match self {
            Error::Truncated => "truncated",
            Error::Malformed => "malformed",
            Error::Unsupported => "unsupported",
            Error::Checksum => "bad checksum",
            Error::BufferTooSmall => "buffer too small",
        }
    }
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl core::error::Error for Error {}

/// Result type of this module.
pub type Result<T> = core::result::Result<T, Error>;

/// An EtherType (IEEE 802 numbers, <https://www.iana.org/assignments/ieee-802-numbers>).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct EtherType(pub u16);

impl EtherType {
    pub const IPV4: EtherType = EtherType(0x0800);
    pub const ARP: EtherType = EtherType(0x0806);
    /// IEEE 802.1Q customer VLAN tag (C-tag).
    pub const VLAN: EtherType = EtherType(0x8100);
    pub const IPV6: EtherType = EtherType(0x86DD);
    pub const PPPOE_DISCOVERY: EtherType = EtherType(0x8863);
    pub const PPPOE_SESSION: EtherType = EtherType(0x8864);
    pub const MPLS: EtherType = EtherType(0x8847);
    /// IEEE 802.1ad service VLAN tag (S-tag, QinQ).
    pub const QINQ: EtherType = EtherType(0x88A8);
    /// Pre-standard QinQ S-tag still seen in the field.
    pub const QINQ_OLD: EtherType = EtherType(0x9100);
    pub const LLDP: EtherType = EtherType(0x88CC);

    /// True for the TPIDs that announce a VLAN tag (0x8100, 0x88A8, 0x9100).
    #[inline]
    pub const fn is_vlan_tpid(self) -> bool {
        matches!(self.0, 0x8100 | 0x88A8 | 0x9100)
    }
}

impl From<u16> for EtherType {
    #[inline]
    fn from(v: u16) -> Self {
        EtherType(v)
    }
}

impl From<EtherType> for u16 {
    #[inline]
    fn from(v: EtherType) -> Self {
        v.0
    }
}

/// An IP protocol / IPv6 next-header number
/// (<https://www.iana.org/assignments/protocol-numbers>).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct IpProtocol(pub u8);

impl IpProtocol {
    /// IPv6 Hop-by-Hop Options (RFC 8200 §4.3).
    pub const HOPOPT: IpProtocol = IpProtocol(0);
    pub const ICMP: IpProtocol = IpProtocol(1);
    pub const IGMP: IpProtocol = IpProtocol(2);
    pub const IPV4: IpProtocol = IpProtocol(4);
    pub const TCP: IpProtocol = IpProtocol(6);
    pub const UDP: IpProtocol = IpProtocol(17);
    pub const IPV6: IpProtocol = IpProtocol(41);
    /// IPv6 Routing header (RFC 8200 §4.4).
    pub const IPV6_ROUTE: IpProtocol = IpProtocol(43);
    /// IPv6 Fragment header (RFC 8200 §4.5).
    pub const IPV6_FRAG: IpProtocol = IpProtocol(44);
    pub const GRE: IpProtocol = IpProtocol(47);
    /// Encapsulating Security Payload (RFC 4303).
    pub const ESP: IpProtocol = IpProtocol(50);
    /// Authentication Header (RFC 4302).
    pub const AH: IpProtocol = IpProtocol(51);
    pub const ICMPV6: IpProtocol = IpProtocol(58);
    /// IPv6 No Next Header (RFC 8200 §4.7).
    pub const IPV6_NONXT: IpProtocol = IpProtocol(59);
    /// IPv6 Destination Options (RFC 8200 §4.6).
    pub const IPV6_OPTS: IpProtocol = IpProtocol(60);
    pub const SCTP: IpProtocol = IpProtocol(132);
    /// Mobility header (RFC 6275), same length rule as the options headers.
    pub const MOBILITY: IpProtocol = IpProtocol(135);
}

impl From<u8> for IpProtocol {
    #[inline]
    fn from(v: u8) -> Self {
        IpProtocol(v)
    }
}

impl From<IpProtocol> for u8 {
    #[inline]
    fn from(v: IpProtocol) -> Self {
        v.0
    }
}

/// Panic-free big-endian field access shared by the views. A range that does not fit
/// the buffer reads as zero and ignores writes; `new_checked` guarantees it fits.
/// [`be16`](bytes::be16) and [`be32`](bytes::be32) are the checked reads of the
/// parsers that walk variable-length data (tags, options, attributes): they fail with
/// [`Error::Truncated`] instead of reading zero.
pub(crate) mod bytes {
    use super::{Error, Result};

    pub(crate) type Field = core::ops::Range<usize>;
    pub(crate) type Rest = core::ops::RangeFrom<usize>;

    /// Big-endian u16 at `off`, or `Truncated`.
    #[inline]
    pub(crate) fn be16(b: &[u8], off: usize) -> Result<u16> {
        match b.get(off..).and_then(|s| s.get(..2)) {
            Some(&[x, y]) => Ok(u16::from_be_bytes([x, y])),
            _ => Err(Error::Truncated),
        }
    }

    /// Big-endian u32 at `off`, or `Truncated`.
    #[inline]
    pub(crate) fn be32(b: &[u8], off: usize) -> Result<u32> {
        match b.get(off..).and_then(|s| s.get(..4)) {
            Some(&[w, x, y, z]) => Ok(u32::from_be_bytes([w, x, y, z])),
            _ => Err(Error::Truncated),
        }
    }

    /// Appends a big-endian u16 (control-path emitters).
    #[inline]
    pub(crate) fn put16(v: &mut alloc::vec::Vec<u8>, x: u16) {
        v.extend_from_slice(&x.to_be_bytes());
    }

    #[inline(always)]
    pub(crate) fn u8_at(b: &[u8], at: usize) -> u8 {
        match b.get(at) {
            Some(v) => *v,
            None => 0,
        }
    }

    #[inline(always)]
    pub(crate) fn set_u8_at(b: &mut [u8], at: usize, v: u8) {
        if let Some(d) = b.get_mut(at) {
            *d = v;
        }
    }

    #[inline(always)]
    pub(crate) fn u16_at(b: &[u8], f: Field) -> u16 {
        match b.get(f) {
            Some(&[x, y]) => u16::from_be_bytes([x, y]),
            _ => 0,
        }
    }

    #[inline(always)]
    pub(crate) fn set_u16_at(b: &mut [u8], f: Field, v: u16) {
        if let Some(d) = b.get_mut(f) {
            if d.len() == 2 {
                d.copy_from_slice(&v.to_be_bytes());
            }
        }
    }

    #[inline(always)]
    pub(crate) fn u32_at(b: &[u8], f: Field) -> u32 {
        match b.get(f) {
            Some(&[a, c, d, e]) => u32::from_be_bytes([a, c, d, e]),
            _ => 0,
        }
    }

    #[inline(always)]
    pub(crate) fn set_u32_at(b: &mut [u8], f: Field, v: u32) {
        if let Some(d) = b.get_mut(f) {
            if d.len() == 4 {
                d.copy_from_slice(&v.to_be_bytes());
            }
        }
    }

    #[inline(always)]
    pub(crate) fn array_at<const N: usize>(b: &[u8], f: Field) -> [u8; N] {
        let mut out = [0u8; N];
        if let Some(s) = b.get(f) {
            if s.len() == N {
                out.copy_from_slice(s);
            }
        }
        out
    }

    #[inline(always)]
    pub(crate) fn set_bytes_at(b: &mut [u8], f: Field, v: &[u8]) {
        if let Some(d) = b.get_mut(f) {
            if d.len() == v.len() {
                d.copy_from_slice(v);
            }
        }
    }

    /// `b[f]`, or an empty slice if `f` does not fit.
    #[inline(always)]
    pub(crate) fn slice(b: &[u8], f: Field) -> &[u8] {
        b.get(f).unwrap_or(&[])
    }

    /// `&mut b[f]`, or an empty slice if `f` does not fit.
    #[inline(always)]
    pub(crate) fn slice_mut(b: &mut [u8], f: Field) -> &mut [u8] {
        b.get_mut(f).unwrap_or(&mut [])
    }
}
