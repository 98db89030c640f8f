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

mod nd;
pub use nd::*;
mod error;
pub use error::*;

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

#[cfg(test)]
mod tests;
