//! ICMPv6 (RFC 4443) and Neighbor Discovery (RFC 4861).
//!
//! * Messages: destination unreachable, packet too big, time exceeded, parameter
//!   problem, echo request/reply (RFC 4443 §3–4); router solicitation/advertisement
//!   and neighbor solicitation/advertisement (RFC 4861 §4.1–4.4).
//! * ND options (RFC 4861 §4.6): source/target link-layer address, prefix
//!   information, MTU; a zero option length is `Malformed` (§4.6: silently discard).
//! * The checksum covers the IPv6 pseudo-header (RFC 4443 §2.3, RFC 8200 §8.1), so it
//!   is verified with the addresses: [`Packet::verify_checksum`] /
//!   [`Repr::parse_checked`]. [`Repr::parse`] checks everything else.
//! * [`build_error`] builds a complete IPv6 + ICMPv6 error quoting as much of the
//!   invoking packet as fits the minimum MTU of 1280 bytes (RFC 4443 §2.4(c)) and
//!   refuses the cases of §2.4(e).
//!
//! The IP-level ND checks (hop limit 255, RFC 4861 §6.1/§7.1) are the caller's: see
//! [`ND_HOP_LIMIT`].

use super::bytes::{self, Field};
use super::checksum;
use super::ethernet::MacAddr;
use super::ipv6;
use super::{Error, IpProtocol, Result};
use core::net::Ipv6Addr;

mod field {
    use super::Field;
    pub const TYPE: usize = 0;
    pub const CODE: usize = 1;
    pub const CHECKSUM: Field = 2..4;
    pub const TYPE_CODE: Field = 0..2;
    pub const ECHO_IDENT: Field = 4..6;
    pub const ECHO_SEQNO: Field = 6..8;
    /// MTU (packet too big), pointer (parameter problem), or unused.
    pub const REST: Field = 4..8;

    pub const RA_HOP_LIMIT: usize = 4;
    pub const RA_FLAGS: usize = 5;
    pub const RA_LIFETIME: Field = 6..8;
    pub const RA_REACHABLE: Field = 8..12;
    pub const RA_RETRANS: Field = 12..16;
    pub const RA_OPTIONS: usize = 16;

    pub const NA_FLAGS: usize = 4;
    pub const TARGET: Field = 8..24;
    pub const NS_NA_OPTIONS: usize = 24;

    pub const RS_OPTIONS: usize = 8;

    // Prefix information option.
    pub const PI_PREFIX_LEN: usize = 2;
    pub const PI_FLAGS: usize = 3;
    pub const PI_VALID: Field = 4..8;
    pub const PI_PREFERRED: Field = 8..12;
    pub const PI_PREFIX: Field = 16..32;
    // MTU option.
    pub const MTU_VALUE: Field = 4..8;
    // Link-layer address options.
    pub const LLADDR: Field = 2..8;
}

/// Length of the ICMPv6 header (type, code, checksum, 4 bytes).
pub const HEADER_LEN: usize = 8;
/// The hop limit ND messages must carry and be received with (RFC 4861 §6.1, §7.1).
pub const ND_HOP_LIMIT: u8 = 255;
/// Largest ICMPv6 error datagram: the IPv6 minimum MTU (RFC 4443 §2.4(c)).
pub const MAX_ERROR_LEN: usize = ipv6::MIN_MTU;

/// Message types.
pub mod msg {
    pub const DST_UNREACHABLE: u8 = 1;
    pub const PKT_TOO_BIG: u8 = 2;
    pub const TIME_EXCEEDED: u8 = 3;
    pub const PARAM_PROBLEM: u8 = 4;
    pub const ECHO_REQUEST: u8 = 128;
    pub const ECHO_REPLY: u8 = 129;
    pub const ROUTER_SOLICIT: u8 = 133;
    pub const ROUTER_ADVERT: u8 = 134;
    pub const NEIGHBOR_SOLICIT: u8 = 135;
    pub const NEIGHBOR_ADVERT: u8 = 136;
    pub const REDIRECT: u8 = 137;

    /// Error messages have types 0–127 (RFC 4443 §2.1).
    #[inline]
    pub const fn is_error(t: u8) -> bool {
        t < 128
    }
}

/// Destination unreachable codes (RFC 4443 §3.1).
pub mod unreachable {
    pub const NO_ROUTE: u8 = 0;
    pub const ADMIN_PROHIBITED: u8 = 1;
    pub const BEYOND_SCOPE: u8 = 2;
    pub const ADDR: u8 = 3;
    pub const PORT: u8 = 4;
    pub const SRC_POLICY: u8 = 5;
    pub const REJECT_ROUTE: u8 = 6;
}

/// Time exceeded codes (RFC 4443 §3.3).
pub mod time_exceeded {
    pub const HOP_LIMIT: u8 = 0;
    pub const REASSEMBLY: u8 = 1;
}

/// Parameter problem codes (RFC 4443 §3.4).
pub mod param_problem {
    pub const HEADER_FIELD: u8 = 0;
    pub const NEXT_HEADER: u8 = 1;
    pub const OPTION: u8 = 2;
}

/// Router advertisement flags (RFC 4861 §4.2).
pub mod ra_flags {
    pub const MANAGED: u8 = 0x80;
    pub const OTHER: u8 = 0x40;
}

/// Neighbor advertisement flags (RFC 4861 §4.4).
pub mod na_flags {
    pub const ROUTER: u8 = 0x80;
    pub const SOLICITED: u8 = 0x40;
    pub const OVERRIDE: u8 = 0x20;
}

/// ND option types (RFC 4861 §4.6).
pub mod opt {
    pub const SOURCE_LLADDR: u8 = 1;
    pub const TARGET_LLADDR: u8 = 2;
    pub const PREFIX_INFO: u8 = 3;
    pub const REDIRECTED_HDR: u8 = 4;
    pub const MTU: u8 = 5;
}

/// The solicited-node multicast address of `addr` (RFC 4291 §2.7.1).
#[inline]
pub fn solicited_node(addr: &Ipv6Addr) -> Ipv6Addr {
    let o = addr.octets();
    Ipv6Addr::from([
        0xff, 0x02, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1, 0xff, o[13], o[14], o[15],
    ])
}

/// Minimum message length for a type (RFC 4861 §6.1.1, §6.1.2, §7.1.1, §7.1.2).
#[inline]
fn min_len(msg_type: u8) -> usize {
    match msg_type {
        msg::ROUTER_ADVERT => field::RA_OPTIONS,
        msg::NEIGHBOR_SOLICIT | msg::NEIGHBOR_ADVERT => field::NS_NA_OPTIONS,
        msg::REDIRECT => 40,
        _ => HEADER_LEN,
    }
}

/// A view over an ICMPv6 message (the upper-layer payload).
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

    /// Wraps a buffer after checking it holds the header and, for ND messages, the
    /// fixed part of the message.
    #[inline]
    pub fn new_checked(buffer: T) -> Result<Packet<T>> {
        let p = Packet { buffer };
        p.check_len()?;
        Ok(p)
    }

    #[inline]
    pub fn check_len(&self) -> Result<()> {
        let len = self.buffer.as_ref().len();
        if len < HEADER_LEN || len < min_len(self.msg_type()) {
            return Err(Error::Truncated);
        }
        Ok(())
    }

    #[inline]
    pub fn into_inner(self) -> T {
        self.buffer
    }

    #[inline]
    pub fn msg_type(&self) -> u8 {
        bytes::u8_at(self.buffer.as_ref(), field::TYPE)
    }

    #[inline]
    pub fn msg_code(&self) -> u8 {
        bytes::u8_at(self.buffer.as_ref(), field::CODE)
    }

    #[inline]
    pub fn checksum(&self) -> u16 {
        bytes::u16_at(self.buffer.as_ref(), field::CHECKSUM)
    }

    #[inline]
    pub fn echo_ident(&self) -> u16 {
        bytes::u16_at(self.buffer.as_ref(), field::ECHO_IDENT)
    }

    #[inline]
    pub fn echo_seq_no(&self) -> u16 {
        bytes::u16_at(self.buffer.as_ref(), field::ECHO_SEQNO)
    }

    /// MTU of a packet-too-big message.
    #[inline]
    pub fn pkt_too_big_mtu(&self) -> u32 {
        bytes::u32_at(self.buffer.as_ref(), field::REST)
    }

    /// Pointer of a parameter-problem message.
    #[inline]
    pub fn param_problem_ptr(&self) -> u32 {
        bytes::u32_at(self.buffer.as_ref(), field::REST)
    }

    #[inline]
    pub fn current_hop_limit(&self) -> u8 {
        bytes::u8_at(self.buffer.as_ref(), field::RA_HOP_LIMIT)
    }

    #[inline]
    pub fn router_flags(&self) -> u8 {
        bytes::u8_at(self.buffer.as_ref(), field::RA_FLAGS)
    }

    #[inline]
    pub fn router_lifetime(&self) -> u16 {
        bytes::u16_at(self.buffer.as_ref(), field::RA_LIFETIME)
    }

    #[inline]
    pub fn reachable_time(&self) -> u32 {
        bytes::u32_at(self.buffer.as_ref(), field::RA_REACHABLE)
    }

    #[inline]
    pub fn retrans_time(&self) -> u32 {
        bytes::u32_at(self.buffer.as_ref(), field::RA_RETRANS)
    }

    #[inline]
    pub fn neighbor_flags(&self) -> u8 {
        bytes::u8_at(self.buffer.as_ref(), field::NA_FLAGS)
    }

    /// Target address of NS/NA (and redirect).
    #[inline]
    pub fn target_addr(&self) -> Ipv6Addr {
        Ipv6Addr::from(bytes::array_at::<16>(self.buffer.as_ref(), field::TARGET))
    }

    /// Everything after the 8-byte header (echo data, or the invoking packet).
    #[inline]
    pub fn data(&self) -> &[u8] {
        self.buffer.as_ref().get(HEADER_LEN..).unwrap_or(&[])
    }

    /// The ND options area of RS/RA/NS/NA/redirect (empty for other types).
    #[inline]
    pub fn nd_options(&self) -> &[u8] {
        let at = match self.msg_type() {
            msg::ROUTER_SOLICIT => field::RS_OPTIONS,
            msg::ROUTER_ADVERT => field::RA_OPTIONS,
            msg::NEIGHBOR_SOLICIT | msg::NEIGHBOR_ADVERT => field::NS_NA_OPTIONS,
            msg::REDIRECT => 40,
            _ => return &[],
        };
        self.buffer.as_ref().get(at..).unwrap_or(&[])
    }

    /// Walks the ND options.
    #[inline]
    pub fn nd_options_iter(&self) -> NdOptionsIter<'_> {
        NdOptionsIter::new(self.nd_options())
    }

    /// True when the checksum over the pseudo-header and message verifies.
    #[inline]
    pub fn verify_checksum(&self, src: &Ipv6Addr, dst: &Ipv6Addr) -> bool {
        let b = self.buffer.as_ref();
        let Ok(len) = u32::try_from(b.len()) else {
            return false;
        };
        let ph = checksum::pseudo_header_v6(src, dst, IpProtocol::ICMPV6, len);
        checksum::add(ph, checksum::data(b)) == 0xffff
    }
}

impl<T: AsRef<[u8]> + AsMut<[u8]>> Packet<T> {
    #[inline]
    pub fn set_msg_type(&mut self, v: u8) {
        bytes::set_u8_at(self.buffer.as_mut(), field::TYPE, v);
    }

    #[inline]
    pub fn set_msg_code(&mut self, v: u8) {
        bytes::set_u8_at(self.buffer.as_mut(), field::CODE, v);
    }

    #[inline]
    pub fn set_checksum(&mut self, v: u16) {
        bytes::set_u16_at(self.buffer.as_mut(), field::CHECKSUM, v);
    }

    #[inline]
    pub fn set_echo_ident(&mut self, v: u16) {
        bytes::set_u16_at(self.buffer.as_mut(), field::ECHO_IDENT, v);
    }

    #[inline]
    pub fn set_echo_seq_no(&mut self, v: u16) {
        bytes::set_u16_at(self.buffer.as_mut(), field::ECHO_SEQNO, v);
    }

    /// Sets the 32-bit field after the checksum (MTU, pointer, reserved, NA flags +
    /// reserved).
    #[inline]
    pub fn set_rest_of_header(&mut self, v: u32) {
        bytes::set_u32_at(self.buffer.as_mut(), field::REST, v);
    }

    #[inline]
    pub fn set_current_hop_limit(&mut self, v: u8) {
        bytes::set_u8_at(self.buffer.as_mut(), field::RA_HOP_LIMIT, v);
    }

    #[inline]
    pub fn set_router_flags(&mut self, v: u8) {
        bytes::set_u8_at(self.buffer.as_mut(), field::RA_FLAGS, v);
    }

    #[inline]
    pub fn set_router_lifetime(&mut self, v: u16) {
        bytes::set_u16_at(self.buffer.as_mut(), field::RA_LIFETIME, v);
    }

    #[inline]
    pub fn set_reachable_time(&mut self, v: u32) {
        bytes::set_u32_at(self.buffer.as_mut(), field::RA_REACHABLE, v);
    }

    #[inline]
    pub fn set_retrans_time(&mut self, v: u32) {
        bytes::set_u32_at(self.buffer.as_mut(), field::RA_RETRANS, v);
    }

    #[inline]
    pub fn set_neighbor_flags(&mut self, v: u8) {
        bytes::set_u8_at(self.buffer.as_mut(), field::NA_FLAGS, v);
    }

    #[inline]
    pub fn set_target_addr(&mut self, a: &Ipv6Addr) {
        bytes::set_bytes_at(self.buffer.as_mut(), field::TARGET, &a.octets());
    }

    #[inline]
    pub fn data_mut(&mut self) -> &mut [u8] {
        self.buffer
            .as_mut()
            .get_mut(HEADER_LEN..)
            .unwrap_or(&mut [])
    }

    /// Computes and stores the checksum over the pseudo-header and the message.
    #[inline]
    pub fn fill_checksum(&mut self, src: &Ipv6Addr, dst: &Ipv6Addr) {
        self.set_checksum(0);
        let b = self.buffer.as_ref();
        let len = u32::try_from(b.len()).unwrap_or(u32::MAX);
        let ph = checksum::pseudo_header_v6(src, dst, IpProtocol::ICMPV6, len);
        let c = !checksum::add(ph, checksum::data(b));
        self.set_checksum(c);
    }

    /// Turns an echo request into an echo reply in place (type 128 → 129) with an
    /// incremental checksum update; valid when the reply swaps source and destination
    /// (the pseudo-header sum does not change). `false` if not an echo request.
    #[inline]
    pub fn echo_request_to_reply(&mut self) -> bool {
        if self.msg_type() != msg::ECHO_REQUEST {
            return false;
        }
        let old = bytes::u16_at(self.buffer.as_ref(), field::TYPE_CODE);
        self.set_msg_type(msg::ECHO_REPLY);
        let new = bytes::u16_at(self.buffer.as_ref(), field::TYPE_CODE);
        let c = checksum::update16(self.checksum(), old, new);
        self.set_checksum(c);
        true
    }
}

impl<T: AsRef<[u8]>> AsRef<[u8]> for Packet<T> {
    fn as_ref(&self) -> &[u8] {
        self.buffer.as_ref()
    }
}

/// Prefix information option contents (RFC 4861 §4.6.2).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PrefixInfo {
    pub prefix_len: u8,
    /// L flag.
    pub on_link: bool,
    /// A flag (SLAAC).
    pub autonomous: bool,
    pub valid_lifetime: u32,
    pub preferred_lifetime: u32,
    pub prefix: Ipv6Addr,
}

/// One ND option.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NdOption<'a> {
    SourceLinkLayerAddr(MacAddr),
    TargetLinkLayerAddr(MacAddr),
    PrefixInformation(PrefixInfo),
    Mtu(u32),
    /// Any other option, or a link-layer address option that is not 6 bytes; `data`
    /// excludes the type and length bytes.
    Unknown {
        kind: u8,
        data: &'a [u8],
    },
}

impl NdOption<'_> {
    /// Bytes on the wire (a multiple of 8).
    pub fn buffer_len(&self) -> usize {
        match self {
            NdOption::SourceLinkLayerAddr(_) | NdOption::TargetLinkLayerAddr(_) => 8,
            NdOption::PrefixInformation(_) => 32,
            NdOption::Mtu(_) => 8,
            NdOption::Unknown { data, .. } => (2 + data.len()).div_ceil(8) * 8,
        }
    }

    /// Writes the option (zero padded) at the start of `buf`; returns its length.
    pub fn emit(&self, buf: &mut [u8]) -> Result<usize> {
        let n = self.buffer_len();
        let units = u8::try_from(n / 8).map_err(|_| Error::Malformed)?;
        let out = buf.get_mut(..n).ok_or(Error::BufferTooSmall)?;
        out.fill(0);
        bytes::set_u8_at(out, 1, units);
        match *self {
            NdOption::SourceLinkLayerAddr(m) => {
                bytes::set_u8_at(out, 0, opt::SOURCE_LLADDR);
                bytes::set_bytes_at(out, field::LLADDR, &m.0);
            }
            NdOption::TargetLinkLayerAddr(m) => {
                bytes::set_u8_at(out, 0, opt::TARGET_LLADDR);
                bytes::set_bytes_at(out, field::LLADDR, &m.0);
            }
            NdOption::PrefixInformation(pi) => {
                bytes::set_u8_at(out, 0, opt::PREFIX_INFO);
                bytes::set_u8_at(out, field::PI_PREFIX_LEN, pi.prefix_len);
                let flags = (u8::from(pi.on_link) << 7) | (u8::from(pi.autonomous) << 6);
                bytes::set_u8_at(out, field::PI_FLAGS, flags);
                bytes::set_u32_at(out, field::PI_VALID, pi.valid_lifetime);
                bytes::set_u32_at(out, field::PI_PREFERRED, pi.preferred_lifetime);
                bytes::set_bytes_at(out, field::PI_PREFIX, &pi.prefix.octets());
            }
            NdOption::Mtu(m) => {
                bytes::set_u8_at(out, 0, opt::MTU);
                bytes::set_u32_at(out, field::MTU_VALUE, m);
            }
            NdOption::Unknown { kind, data } => {
                bytes::set_u8_at(out, 0, kind);
                bytes::set_bytes_at(out, 2..2 + data.len(), data);
            }
        }
        Ok(n)
    }
}

/// Iterator over ND options; stops after the first error.
#[derive(Debug, Clone)]
pub struct NdOptionsIter<'a> {
    data: &'a [u8],
    failed: bool,
}

impl<'a> NdOptionsIter<'a> {
    pub fn new(data: &'a [u8]) -> NdOptionsIter<'a> {
        NdOptionsIter {
            data,
            failed: false,
        }
    }

    fn parse_one(&mut self) -> Result<NdOption<'a>> {
        let kind = bytes::u8_at(self.data, 0);
        let units = usize::from(*self.data.get(1).ok_or(Error::Truncated)?);
        if units == 0 {
            return Err(Error::Malformed);
        }
        let len = units * 8;
        let o = self.data.get(..len).ok_or(Error::Truncated)?;
        self.data = self.data.get(len..).unwrap_or(&[]);
        let data = o.get(2..).unwrap_or(&[]);
        Ok(match (kind, units) {
            (opt::SOURCE_LLADDR, 1) => {
                NdOption::SourceLinkLayerAddr(MacAddr(bytes::array_at(o, field::LLADDR)))
            }
            (opt::TARGET_LLADDR, 1) => {
                NdOption::TargetLinkLayerAddr(MacAddr(bytes::array_at(o, field::LLADDR)))
            }
            (opt::PREFIX_INFO, 4) => {
                let flags = bytes::u8_at(o, field::PI_FLAGS);
                let prefix_len = bytes::u8_at(o, field::PI_PREFIX_LEN);
                if prefix_len > 128 {
                    return Err(Error::Malformed);
                }
                NdOption::PrefixInformation(PrefixInfo {
                    prefix_len,
                    on_link: flags & 0x80 != 0,
                    autonomous: flags & 0x40 != 0,
                    valid_lifetime: bytes::u32_at(o, field::PI_VALID),
                    preferred_lifetime: bytes::u32_at(o, field::PI_PREFERRED),
                    prefix: Ipv6Addr::from(bytes::array_at::<16>(o, field::PI_PREFIX)),
                })
            }
            (opt::PREFIX_INFO, _) | (opt::MTU, 2..) => return Err(Error::Malformed),
            (opt::MTU, _) => NdOption::Mtu(bytes::u32_at(o, field::MTU_VALUE)),
            _ => NdOption::Unknown { kind, data },
        })
    }
}

impl<'a> Iterator for NdOptionsIter<'a> {
    type Item = Result<NdOption<'a>>;

    fn next(&mut self) -> Option<Self::Item> {
        if self.failed || self.data.is_empty() {
            return None;
        }
        let r = self.parse_one();
        if r.is_err() {
            self.failed = true;
        }
        Some(r)
    }
}

/// A Neighbor Discovery message.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NdiscRepr {
    RouterSolicit {
        lladdr: Option<MacAddr>,
    },
    /// Parsing keeps the first prefix option; walk [`Packet::nd_options_iter`] for
    /// all of them.
    RouterAdvert {
        hop_limit: u8,
        flags: u8,
        router_lifetime: u16,
        reachable_time: u32,
        retrans_time: u32,
        lladdr: Option<MacAddr>,
        mtu: Option<u32>,
        prefix_info: Option<PrefixInfo>,
    },
    NeighborSolicit {
        target_addr: Ipv6Addr,
        lladdr: Option<MacAddr>,
    },
    NeighborAdvert {
        flags: u8,
        target_addr: Ipv6Addr,
        lladdr: Option<MacAddr>,
    },
}

/// An owned (borrowing its data) ICMPv6 message.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Repr<'a> {
    DstUnreachable {
        code: u8,
        quote: &'a [u8],
    },
    PktTooBig {
        mtu: u32,
        quote: &'a [u8],
    },
    TimeExceeded {
        code: u8,
        quote: &'a [u8],
    },
    ParamProblem {
        code: u8,
        pointer: u32,
        quote: &'a [u8],
    },
    EchoRequest {
        ident: u16,
        seq_no: u16,
        data: &'a [u8],
    },
    EchoReply {
        ident: u16,
        seq_no: u16,
        data: &'a [u8],
    },
    Ndisc(NdiscRepr),
}

#[derive(Default)]
struct NdOpts {
    slla: Option<MacAddr>,
    tlla: Option<MacAddr>,
    mtu: Option<u32>,
    prefix: Option<PrefixInfo>,
}

fn collect_nd_options(iter: NdOptionsIter<'_>) -> Result<NdOpts> {
    let mut o = NdOpts::default();
    for opt in iter {
        match opt? {
            NdOption::SourceLinkLayerAddr(m) => o.slla = Some(m),
            NdOption::TargetLinkLayerAddr(m) => o.tlla = Some(m),
            NdOption::Mtu(m) => o.mtu = Some(m),
            NdOption::PrefixInformation(p) => {
                if o.prefix.is_none() {
                    o.prefix = Some(p);
                }
            }
            NdOption::Unknown { .. } => {}
        }
    }
    Ok(o)
}

impl<'a> Repr<'a> {
    /// Verifies the checksum with the IPv6 addresses (`Checksum`), then parses.
    pub fn parse_checked<T: AsRef<[u8]> + ?Sized>(
        p: &Packet<&'a T>,
        src: &Ipv6Addr,
        dst: &Ipv6Addr,
    ) -> Result<Repr<'a>> {
        p.check_len()?;
        if !p.verify_checksum(src, dst) {
            return Err(Error::Checksum);
        }
        Repr::parse(p)
    }

    /// Parses a message without the checksum (which needs the addresses, see
    /// [`Repr::parse_checked`]). ND messages must have code 0, valid options and,
    /// for NS/NA, a non-multicast target (RFC 4861 §7.1.1–7.1.2); violations are
    /// `Malformed`. Redirect and other types are `Unsupported`.
    pub fn parse<T: AsRef<[u8]> + ?Sized>(p: &Packet<&'a T>) -> Result<Repr<'a>> {
        p.check_len()?;
        let whole: &'a [u8] = <T as AsRef<[u8]>>::as_ref(p.buffer);
        let data = whole.get(HEADER_LEN..).unwrap_or(&[]);
        let code = p.msg_code();
        let t = p.msg_type();
        let nd = matches!(
            t,
            msg::ROUTER_SOLICIT | msg::ROUTER_ADVERT | msg::NEIGHBOR_SOLICIT | msg::NEIGHBOR_ADVERT
        );
        if (nd || t == msg::ECHO_REQUEST || t == msg::ECHO_REPLY || t == msg::PKT_TOO_BIG)
            && code != 0
        {
            return Err(Error::Malformed);
        }
        let opts_at = |at: usize| NdOptionsIter::new(whole.get(at..).unwrap_or(&[]));
        Ok(match t {
            msg::DST_UNREACHABLE => Repr::DstUnreachable { code, quote: data },
            msg::PKT_TOO_BIG => Repr::PktTooBig {
                mtu: p.pkt_too_big_mtu(),
                quote: data,
            },
            msg::TIME_EXCEEDED => Repr::TimeExceeded { code, quote: data },
            msg::PARAM_PROBLEM => Repr::ParamProblem {
                code,
                pointer: p.param_problem_ptr(),
                quote: data,
            },
            msg::ECHO_REQUEST => Repr::EchoRequest {
                ident: p.echo_ident(),
                seq_no: p.echo_seq_no(),
                data,
            },
            msg::ECHO_REPLY => Repr::EchoReply {
                ident: p.echo_ident(),
                seq_no: p.echo_seq_no(),
                data,
            },
            msg::ROUTER_SOLICIT => {
                let o = collect_nd_options(opts_at(field::RS_OPTIONS))?;
                Repr::Ndisc(NdiscRepr::RouterSolicit { lladdr: o.slla })
            }
            msg::ROUTER_ADVERT => {
                let o = collect_nd_options(opts_at(field::RA_OPTIONS))?;
                Repr::Ndisc(NdiscRepr::RouterAdvert {
                    hop_limit: p.current_hop_limit(),
                    flags: p.router_flags(),
                    router_lifetime: p.router_lifetime(),
                    reachable_time: p.reachable_time(),
                    retrans_time: p.retrans_time(),
                    lladdr: o.slla,
                    mtu: o.mtu,
                    prefix_info: o.prefix,
                })
            }
            msg::NEIGHBOR_SOLICIT => {
                let target_addr = p.target_addr();
                if target_addr.is_multicast() {
                    return Err(Error::Malformed);
                }
                let o = collect_nd_options(opts_at(field::NS_NA_OPTIONS))?;
                Repr::Ndisc(NdiscRepr::NeighborSolicit {
                    target_addr,
                    lladdr: o.slla,
                })
            }
            msg::NEIGHBOR_ADVERT => {
                let target_addr = p.target_addr();
                if target_addr.is_multicast() {
                    return Err(Error::Malformed);
                }
                let o = collect_nd_options(opts_at(field::NS_NA_OPTIONS))?;
                Repr::Ndisc(NdiscRepr::NeighborAdvert {
                    flags: p.neighbor_flags() & 0xe0,
                    target_addr,
                    lladdr: o.tlla,
                })
            }
            _ => return Err(Error::Unsupported),
        })
    }

    fn data(&self) -> &'a [u8] {
        match *self {
            Repr::DstUnreachable { quote, .. }
            | Repr::PktTooBig { quote, .. }
            | Repr::TimeExceeded { quote, .. }
            | Repr::ParamProblem { quote, .. } => quote,
            Repr::EchoRequest { data, .. } | Repr::EchoReply { data, .. } => data,
            Repr::Ndisc(_) => &[],
        }
    }

    /// Length of the emitted message.
    pub fn buffer_len(&self) -> usize {
        match self {
            Repr::Ndisc(nd) => {
                let ll = |l: &Option<MacAddr>| if l.is_some() { 8 } else { 0 };
                match nd {
                    NdiscRepr::RouterSolicit { lladdr } => field::RS_OPTIONS + ll(lladdr),
                    NdiscRepr::RouterAdvert {
                        lladdr,
                        mtu,
                        prefix_info,
                        ..
                    } => {
                        field::RA_OPTIONS
                            + ll(lladdr)
                            + if mtu.is_some() { 8 } else { 0 }
                            + if prefix_info.is_some() { 32 } else { 0 }
                    }
                    NdiscRepr::NeighborSolicit { lladdr, .. }
                    | NdiscRepr::NeighborAdvert { lladdr, .. } => field::NS_NA_OPTIONS + ll(lladdr),
                }
            }
            _ => HEADER_LEN + self.data().len(),
        }
    }

    /// Writes the message with a zero checksum into the start of the view's buffer;
    /// then call [`Packet::fill_checksum`] with the IPv6 addresses.
    pub fn emit<T: AsRef<[u8]> + AsMut<[u8]>>(&self, p: &mut Packet<T>) -> Result<()> {
        let n = self.buffer_len();
        let buf = p
            .buffer
            .as_mut()
            .get_mut(..n)
            .ok_or(Error::BufferTooSmall)?;
        buf.fill(0);
        let mut q = Packet::new_unchecked(&mut *buf);
        let (t, code, rest) = match *self {
            Repr::DstUnreachable { code, .. } => (msg::DST_UNREACHABLE, code, 0),
            Repr::PktTooBig { mtu, .. } => (msg::PKT_TOO_BIG, 0, mtu),
            Repr::TimeExceeded { code, .. } => (msg::TIME_EXCEEDED, code, 0),
            Repr::ParamProblem { code, pointer, .. } => (msg::PARAM_PROBLEM, code, pointer),
            Repr::EchoRequest { ident, seq_no, .. } => (
                msg::ECHO_REQUEST,
                0,
                (u32::from(ident) << 16) | u32::from(seq_no),
            ),
            Repr::EchoReply { ident, seq_no, .. } => (
                msg::ECHO_REPLY,
                0,
                (u32::from(ident) << 16) | u32::from(seq_no),
            ),
            Repr::Ndisc(nd) => return emit_nd(&nd, buf),
        };
        q.set_msg_type(t);
        q.set_msg_code(code);
        q.set_rest_of_header(rest);
        q.data_mut().copy_from_slice(self.data());
        Ok(())
    }
}

fn emit_nd(nd: &NdiscRepr, buf: &mut [u8]) -> Result<()> {
    let mut q = Packet::new_unchecked(&mut *buf);
    let mut opts: [Option<NdOption<'static>>; 3] = [None, None, None];
    let at = match *nd {
        NdiscRepr::RouterSolicit { lladdr } => {
            q.set_msg_type(msg::ROUTER_SOLICIT);
            opts[0] = lladdr.map(NdOption::SourceLinkLayerAddr);
            field::RS_OPTIONS
        }
        NdiscRepr::RouterAdvert {
            hop_limit,
            flags,
            router_lifetime,
            reachable_time,
            retrans_time,
            lladdr,
            mtu,
            prefix_info,
        } => {
            q.set_msg_type(msg::ROUTER_ADVERT);
            q.set_current_hop_limit(hop_limit);
            q.set_router_flags(flags);
            q.set_router_lifetime(router_lifetime);
            q.set_reachable_time(reachable_time);
            q.set_retrans_time(retrans_time);
            opts[0] = lladdr.map(NdOption::SourceLinkLayerAddr);
            opts[1] = mtu.map(NdOption::Mtu);
            opts[2] = prefix_info.map(NdOption::PrefixInformation);
            field::RA_OPTIONS
        }
        NdiscRepr::NeighborSolicit {
            target_addr,
            lladdr,
        } => {
            q.set_msg_type(msg::NEIGHBOR_SOLICIT);
            q.set_target_addr(&target_addr);
            opts[0] = lladdr.map(NdOption::SourceLinkLayerAddr);
            field::NS_NA_OPTIONS
        }
        NdiscRepr::NeighborAdvert {
            flags,
            target_addr,
            lladdr,
        } => {
            q.set_msg_type(msg::NEIGHBOR_ADVERT);
            q.set_neighbor_flags(flags & 0xe0);
            q.set_target_addr(&target_addr);
            opts[0] = lladdr.map(NdOption::TargetLinkLayerAddr);
            field::NS_NA_OPTIONS
        }
    };
    let mut out = buf.get_mut(at..).ok_or(Error::BufferTooSmall)?;
    for o in opts.iter().flatten() {
        let n = o.emit(out)?;
        out = out.get_mut(n..).ok_or(Error::BufferTooSmall)?;
    }
    Ok(())
}

/// The error to build with [`build_error`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ErrorKind {
    DstUnreachable { code: u8 },
    PktTooBig { mtu: u32 },
    TimeExceeded { code: u8 },
    ParamProblem { code: u8, pointer: u32 },
}

/// RFC 4443 §2.4(e): whether an error may be sent about `offending` (a validated
/// IPv6 packet). Not about an ICMPv6 error or a redirect; not when the source is
/// unspecified or multicast; not to a multicast destination except Packet Too Big
/// and Parameter Problem code 2.
pub fn error_allowed<T: AsRef<[u8]>>(offending: &ipv6::Packet<T>, kind: &ErrorKind) -> bool {
    let (s, d) = (offending.src_addr(), offending.dst_addr());
    if s.is_unspecified() || s.is_multicast() {
        return false;
    }
    let mc_ok = matches!(
        kind,
        ErrorKind::PktTooBig { .. }
            | ErrorKind::ParamProblem {
                code: param_problem::OPTION,
                ..
            }
    );
    if d.is_multicast() && !mc_ok {
        return false;
    }
    if let Ok(w) = offending.walk_ext() {
        let first = w.frag.is_none_or(|f| !f.is_non_first());
        if w.next_header == IpProtocol::ICMPV6 && first {
            let t = bytes::u8_at(
                bytes::slice(offending.as_ref(), w.l4_offset..offending.total_len()),
                0,
            );
            if msg::is_error(t) || t == msg::REDIRECT {
                return false;
            }
        }
    }
    true
}

/// Builds into `out` a complete IPv6 datagram from `src` with hop limit `hop_limit`
/// carrying an ICMPv6 error about `offending` (an IPv6 packet starting at its fixed
/// header), sent back to its source, quoting as much of it as keeps the datagram
/// within 1280 bytes. Returns the length written. Errors: `offending` invalid (its
/// view error), `Unsupported` when [`error_allowed`] says no, `BufferTooSmall`.
pub fn build_error(
    out: &mut [u8],
    offending: &[u8],
    src: &Ipv6Addr,
    hop_limit: u8,
    kind: ErrorKind,
) -> Result<usize> {
    let orig = ipv6::Packet::new_checked(offending)?;
    if !error_allowed(&orig, &kind) {
        return Err(Error::Unsupported);
    }
    let max_quote = MAX_ERROR_LEN - ipv6::HEADER_LEN - HEADER_LEN;
    let quote = offending
        .get(..orig.total_len().min(max_quote))
        .ok_or(Error::Truncated)?;
    let icmp = match kind {
        ErrorKind::DstUnreachable { code } => Repr::DstUnreachable { code, quote },
        ErrorKind::PktTooBig { mtu } => Repr::PktTooBig { mtu, quote },
        ErrorKind::TimeExceeded { code } => Repr::TimeExceeded { code, quote },
        ErrorKind::ParamProblem { code, pointer } => Repr::ParamProblem {
            code,
            pointer,
            quote,
        },
    };
    let icmp_len = icmp.buffer_len();
    let total = ipv6::HEADER_LEN + icmp_len;
    let out = out.get_mut(..total).ok_or(Error::BufferTooSmall)?;
    let dst = orig.src_addr();
    let ip = ipv6::Repr {
        src_addr: *src,
        dst_addr: dst,
        next_header: IpProtocol::ICMPV6,
        payload_len: icmp_len,
        hop_limit,
        traffic_class: 0,
        flow_label: 0,
    };
    ip.emit(&mut ipv6::Packet::new_unchecked(&mut *out))?;
    let body = out
        .get_mut(ipv6::HEADER_LEN..)
        .ok_or(Error::BufferTooSmall)?;
    let mut p = Packet::new_unchecked(body);
    icmp.emit(&mut p)?;
    p.fill_checksum(src, &dst);
    Ok(total)
}

#[cfg(test)]
mod tests {
    use super::*;
    use etherparse::{Icmpv6Slice, Icmpv6Type, PacketBuilder};

    fn a(s: &str) -> Ipv6Addr {
        s.parse().unwrap()
    }

    // A captured-looking NS from fe80::5054:ff:fe12:3456 for 2001:db8::1 with SLLA.
    const NS: [u8; 32] = [
        0x87, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x20, 0x01, 0x0d, 0xb8, 0, 0, 0, 0, 0, 0,
        0, 0, 0, 0, 0, 0x01, 0x01, 0x01, 0x52, 0x54, 0x00, 0x12, 0x34, 0x56,
    ];

    fn ns_with_checksum() -> ([u8; 32], Ipv6Addr, Ipv6Addr) {
        let src = a("fe80::5054:ff:fe12:3456");
        let dst = solicited_node(&a("2001:db8::1"));
        let mut b = NS;
        Packet::new_unchecked(&mut b[..]).fill_checksum(&src, &dst);
        (b, src, dst)
    }

    #[test]
    fn solicited_node_addr() {
        assert_eq!(
            solicited_node(&a("2001:db8::1234:5678")),
            a("ff02::1:ff34:5678")
        );
    }

    #[test]
    fn deconstruct_ns() {
        let (b, src, dst) = ns_with_checksum();
        let p = Packet::new_checked(&b[..]).unwrap();
        assert_eq!(p.msg_type(), msg::NEIGHBOR_SOLICIT);
        assert_eq!(p.target_addr(), a("2001:db8::1"));
        assert!(p.verify_checksum(&src, &dst));
        assert!(!p.verify_checksum(&dst, &a("ff02::1")));
        let r = Repr::parse_checked(&p, &src, &dst).unwrap();
        let mac = MacAddr([0x52, 0x54, 0x00, 0x12, 0x34, 0x56]);
        assert_eq!(
            r,
            Repr::Ndisc(NdiscRepr::NeighborSolicit {
                target_addr: a("2001:db8::1"),
                lladdr: Some(mac)
            })
        );
        // etherparse agrees on type and checksum.
        let e = Icmpv6Slice::from_slice(&b).unwrap();
        assert!(matches!(
            e.icmp_type(),
            Icmpv6Type::Unknown {
                type_u8: 135,
                code_u8: 0,
                ..
            }
        ));
        let want = e
            .icmp_type()
            .calc_checksum(src.octets(), dst.octets(), e.payload())
            .unwrap();
        assert_eq!(want, p.checksum());
    }

    #[test]
    fn construct_ns_na() {
        let (want, src, dst) = ns_with_checksum();
        let r = Repr::Ndisc(NdiscRepr::NeighborSolicit {
            target_addr: a("2001:db8::1"),
            lladdr: Some(MacAddr([0x52, 0x54, 0x00, 0x12, 0x34, 0x56])),
        });
        assert_eq!(r.buffer_len(), 32);
        let mut b = [0xeeu8; 32];
        let mut p = Packet::new_unchecked(&mut b[..]);
        r.emit(&mut p).unwrap();
        p.fill_checksum(&src, &dst);
        assert_eq!(b, want);
        // The NA answer round-trips.
        let na = Repr::Ndisc(NdiscRepr::NeighborAdvert {
            flags: na_flags::ROUTER | na_flags::SOLICITED | na_flags::OVERRIDE,
            target_addr: a("2001:db8::1"),
            lladdr: Some(MacAddr([2, 0, 0, 0, 0, 1])),
        });
        let mut nb = [0u8; 32];
        let mut p = Packet::new_unchecked(&mut nb[..]);
        na.emit(&mut p).unwrap();
        p.fill_checksum(&a("2001:db8::1"), &src);
        let p = Packet::new_checked(&nb[..]).unwrap();
        assert_eq!(
            Repr::parse_checked(&p, &a("2001:db8::1"), &src).unwrap(),
            na
        );
        assert_eq!(nb[4], 0xe0);
    }

    #[test]
    fn router_advert_roundtrip() {
        let ra = Repr::Ndisc(NdiscRepr::RouterAdvert {
            hop_limit: 64,
            flags: ra_flags::OTHER,
            router_lifetime: 1800,
            reachable_time: 0,
            retrans_time: 0,
            lladdr: Some(MacAddr([2, 0, 0, 0, 0, 1])),
            mtu: Some(1492),
            prefix_info: Some(PrefixInfo {
                prefix_len: 64,
                on_link: true,
                autonomous: true,
                valid_lifetime: 86400,
                preferred_lifetime: 14400,
                prefix: a("2001:db8:1:2::"),
            }),
        });
        assert_eq!(ra.buffer_len(), 16 + 8 + 8 + 32);
        let mut b = [0u8; 64];
        let mut p = Packet::new_unchecked(&mut b[..]);
        ra.emit(&mut p).unwrap();
        let (src, dst) = (a("fe80::1"), a("ff02::1"));
        p.fill_checksum(&src, &dst);
        let p = Packet::new_checked(&b[..]).unwrap();
        assert_eq!(Repr::parse_checked(&p, &src, &dst).unwrap(), ra);
        let kinds: alloc::vec::Vec<u8> = p
            .nd_options_iter()
            .map(|o| o.unwrap())
            .map(|o| match o {
                NdOption::SourceLinkLayerAddr(_) => 1,
                NdOption::Mtu(_) => 5,
                NdOption::PrefixInformation(_) => 3,
                _ => 0,
            })
            .collect();
        assert_eq!(kinds, [1, 5, 3]);
        // Bytes of the prefix option as on the wire.
        assert_eq!(&b[32..36], &[3, 4, 64, 0xc0]);
        assert_eq!(&b[36..40], &86400u32.to_be_bytes());
        // etherparse computes the same checksum.
        let e = Icmpv6Slice::from_slice(&b).unwrap();
        assert_eq!(
            e.icmp_type()
                .calc_checksum(src.octets(), dst.octets(), e.payload())
                .unwrap(),
            p.checksum()
        );
        // Router solicitation without options.
        let rs = Repr::Ndisc(NdiscRepr::RouterSolicit { lladdr: None });
        let mut rb = [0u8; 8];
        let mut q = Packet::new_unchecked(&mut rb[..]);
        rs.emit(&mut q).unwrap();
        q.fill_checksum(&src, &a("ff02::2"));
        assert_eq!(
            Repr::parse_checked(&Packet::new_checked(&rb[..]).unwrap(), &src, &a("ff02::2"))
                .unwrap(),
            rs
        );
    }

    #[test]
    fn echo_matches_etherparse() {
        let (src, dst) = (a("2001:db8::1"), a("2001:db8::2"));
        let builder = PacketBuilder::ipv6(src.octets(), dst.octets(), 64).icmpv6_echo_request(7, 9);
        let mut out = alloc::vec::Vec::new();
        builder.write(&mut out, b"ping6").unwrap();
        let icmp = &out[40..];
        let p = Packet::new_checked(icmp).unwrap();
        let r = Repr::parse_checked(&p, &src, &dst).unwrap();
        assert_eq!(
            r,
            Repr::EchoRequest {
                ident: 7,
                seq_no: 9,
                data: b"ping6"
            }
        );
        let mut b = [0u8; 13];
        let mut q = Packet::new_unchecked(&mut b[..]);
        r.emit(&mut q).unwrap();
        q.fill_checksum(&src, &dst);
        assert_eq!(q.as_ref(), icmp);
        assert!(q.echo_request_to_reply());
        assert!(Packet::new_checked(&b[..])
            .unwrap()
            .verify_checksum(&dst, &src));
    }

    fn udp6(len: usize) -> alloc::vec::Vec<u8> {
        let builder =
            PacketBuilder::ipv6(a("2001:db8::7").octets(), a("2001:db8:ff::1").octets(), 1)
                .udp(4000, 33434);
        let mut out = alloc::vec::Vec::new();
        builder.write(&mut out, &alloc::vec![0xabu8; len]).unwrap();
        out
    }

    #[test]
    fn time_exceeded_quotes_up_to_min_mtu() {
        let me = a("2001:db8::fffe");
        let big = udp6(1400);
        let mut out = [0u8; 1500];
        let n = build_error(&mut out, &big, &me, 64, ErrorKind::TimeExceeded { code: 0 }).unwrap();
        assert_eq!(n, 1280);
        let ip = ipv6::Packet::new_checked(&out[..n]).unwrap();
        assert_eq!(ip.dst_addr(), a("2001:db8::7"));
        assert_eq!(ip.next_header(), IpProtocol::ICMPV6);
        let p = Packet::new_checked(ip.payload()).unwrap();
        match Repr::parse_checked(&p, &me, &a("2001:db8::7")).unwrap() {
            Repr::TimeExceeded { code: 0, quote } => assert_eq!(quote, &big[..1232]),
            other => panic!("unexpected {other:?}"),
        }
        // etherparse parses the whole error datagram and agrees on the checksum.
        let sp = etherparse::SlicedPacket::from_ip(&out[..n]).unwrap();
        match sp.transport {
            Some(etherparse::TransportSlice::Icmpv6(i)) => {
                assert!(matches!(i.icmp_type(), Icmpv6Type::TimeExceeded(_)));
                let c = i
                    .icmp_type()
                    .calc_checksum(me.octets(), a("2001:db8::7").octets(), i.payload())
                    .unwrap();
                assert_eq!(c, i.checksum());
            }
            other => panic!("unexpected {other:?}"),
        }
        // A small packet is quoted whole.
        let small = udp6(10);
        let n = build_error(
            &mut out,
            &small,
            &me,
            64,
            ErrorKind::PktTooBig { mtu: 1280 },
        )
        .unwrap();
        assert_eq!(n, 40 + 8 + small.len());
    }

    #[test]
    fn error_suppression() {
        let me = a("2001:db8::fffe");
        let mut out = [0u8; 1500];
        let te = ErrorKind::TimeExceeded { code: 0 };
        let n = build_error(&mut out, &udp6(10), &me, 64, te).unwrap();
        let err = out[..n].to_vec();
        assert_eq!(
            build_error(&mut out, &err, &me, 64, te),
            Err(Error::Unsupported)
        );
        let mut mc = udp6(10);
        mc[24] = 0xff;
        assert_eq!(
            build_error(&mut out, &mc, &me, 64, te),
            Err(Error::Unsupported)
        );
        assert!(build_error(&mut out, &mc, &me, 64, ErrorKind::PktTooBig { mtu: 1280 }).is_ok());
        let mut tiny = [0u8; 60];
        assert_eq!(
            build_error(&mut tiny, &udp6(10), &me, 64, te),
            Err(Error::BufferTooSmall)
        );
    }

    #[test]
    fn nd_errors() {
        let (b, src, dst) = ns_with_checksum();
        // Zero-length option.
        let mut z = b;
        z[25] = 0;
        assert_eq!(
            Repr::parse(&Packet::new_checked(&z[..]).unwrap()),
            Err(Error::Malformed)
        );
        // Option running past the end.
        let mut long = b;
        long[25] = 2;
        assert_eq!(
            Repr::parse(&Packet::new_checked(&long[..]).unwrap()),
            Err(Error::Truncated)
        );
        // Non-zero code.
        let mut c = b;
        c[1] = 1;
        assert_eq!(
            Repr::parse(&Packet::new_checked(&c[..]).unwrap()),
            Err(Error::Malformed)
        );
        // Multicast target.
        let mut m = b;
        m[8] = 0xff;
        assert_eq!(
            Repr::parse(&Packet::new_checked(&m[..]).unwrap()),
            Err(Error::Malformed)
        );
        // Bad checksum, short NS.
        let mut x = b;
        x[30] ^= 1;
        assert_eq!(
            Repr::parse_checked(&Packet::new_checked(&x[..]).unwrap(), &src, &dst),
            Err(Error::Checksum)
        );
        assert_eq!(Packet::new_checked(&b[..23]).err(), Some(Error::Truncated));
        assert_eq!(Packet::new_checked(&b[..7]).err(), Some(Error::Truncated));
    }
}
