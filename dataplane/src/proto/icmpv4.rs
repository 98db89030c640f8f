//! ICMP for IPv4 (RFC 792): echo request/reply, destination unreachable (with the
//! RFC 1191 next-hop MTU for "fragmentation needed"), time exceeded and parameter
//! problem. [`build_error`] builds a complete IPv4 + ICMP error that quotes the
//! offending datagram: its IP header + 8 bytes (RFC 792) or as much as fits in 576
//! bytes (RFC 1812 §4.3.2.3), and refuses the cases RFC 1812 §4.3.2.7 forbids.

use super::bytes::{self, Field};
use super::checksum;
use super::ipv4;
use super::{Error, IpProtocol, Result};
use core::net::Ipv4Addr;

mod field {
    use super::Field;
    pub const TYPE: usize = 0;
    pub const CODE: usize = 1;
    pub const CHECKSUM: Field = 2..4;
    /// Type and code as the 16-bit word the checksum sees.
    pub const TYPE_CODE: Field = 0..2;
    pub const ECHO_IDENT: Field = 4..6;
    pub const ECHO_SEQNO: Field = 6..8;
    pub const UNUSED: Field = 4..8;
    pub const NEXT_HOP_MTU: Field = 6..8;
    pub const POINTER: usize = 4;
}

/// Length of the ICMP header (type, code, checksum, 4 bytes of rest-of-header).
pub const HEADER_LEN: usize = 8;
/// RFC 1812 §4.3.2.3: an ICMP error datagram should not exceed 576 bytes.
pub const RFC1812_MAX_ERROR_LEN: usize = 576;

/// Message types.
pub mod msg {
    pub const ECHO_REPLY: u8 = 0;
    pub const DST_UNREACHABLE: u8 = 3;
    pub const REDIRECT: u8 = 5;
    pub const ECHO_REQUEST: u8 = 8;
    pub const TIME_EXCEEDED: u8 = 11;
    pub const PARAM_PROBLEM: u8 = 12;
    pub const TIMESTAMP: u8 = 13;
    pub const TIMESTAMP_REPLY: u8 = 14;

    /// True for the error messages (which never trigger another error).
    #[inline]
    pub const fn is_error(t: u8) -> bool {
        matches!(
            t,
            DST_UNREACHABLE | REDIRECT | TIME_EXCEEDED | PARAM_PROBLEM | 4
        )
    }
}

/// Destination unreachable codes (RFC 792, RFC 1812 §5.2.7.1).
pub mod unreachable {
    pub const NET: u8 = 0;
    pub const HOST: u8 = 1;
    pub const PROTOCOL: u8 = 2;
    pub const PORT: u8 = 3;
    /// Fragmentation needed and DF set (carries the next-hop MTU, RFC 1191).
    pub const FRAG_NEEDED: u8 = 4;
    pub const SRC_ROUTE_FAILED: u8 = 5;
    pub const NET_UNKNOWN: u8 = 6;
    pub const HOST_UNKNOWN: u8 = 7;
    pub const ADMIN_PROHIBITED: u8 = 13;
}

/// Time exceeded codes.
pub mod time_exceeded {
    pub const TTL: u8 = 0;
    pub const REASSEMBLY: u8 = 1;
}

/// A view over an ICMP message (the IPv4 payload).
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

    /// Wraps a buffer after checking it holds the 8-byte header.
    #[inline]
    pub fn new_checked(buffer: T) -> Result<Packet<T>> {
        let p = Packet { buffer };
        p.check_len()?;
        Ok(p)
    }

    #[inline]
    pub fn check_len(&self) -> Result<()> {
        if self.buffer.as_ref().len() < HEADER_LEN {
            Err(Error::Truncated)
        } else {
            Ok(())
        }
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

    /// Next-hop MTU of a "fragmentation needed" message (RFC 1191).
    #[inline]
    pub fn next_hop_mtu(&self) -> u16 {
        bytes::u16_at(self.buffer.as_ref(), field::NEXT_HOP_MTU)
    }

    /// Pointer of a parameter problem message.
    #[inline]
    pub fn pointer(&self) -> u8 {
        bytes::u8_at(self.buffer.as_ref(), field::POINTER)
    }

    /// Everything after the 8-byte header (echo data, or the quoted datagram).
    #[inline]
    pub fn data(&self) -> &[u8] {
        self.buffer.as_ref().get(HEADER_LEN..).unwrap_or(&[])
    }

    /// True when the checksum over the whole message verifies.
    #[inline]
    pub fn verify_checksum(&self) -> bool {
        checksum::verify(self.buffer.as_ref())
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

    /// Zeroes the 4 rest-of-header bytes (unused field of error messages).
    #[inline]
    pub fn clear_rest_of_header(&mut self) {
        bytes::set_u32_at(self.buffer.as_mut(), field::UNUSED, 0);
    }

    #[inline]
    pub fn set_next_hop_mtu(&mut self, v: u16) {
        bytes::set_u16_at(self.buffer.as_mut(), field::NEXT_HOP_MTU, v);
    }

    #[inline]
    pub fn set_pointer(&mut self, v: u8) {
        bytes::set_u8_at(self.buffer.as_mut(), field::POINTER, v);
    }

    #[inline]
    pub fn data_mut(&mut self) -> &mut [u8] {
        self.buffer
            .as_mut()
            .get_mut(HEADER_LEN..)
            .unwrap_or(&mut [])
    }

    /// Computes and stores the checksum over the whole message.
    #[inline]
    pub fn fill_checksum(&mut self) {
        self.set_checksum(0);
        let c = checksum::internet(self.buffer.as_ref());
        self.set_checksum(c);
    }

    /// Turns an echo request into an echo reply in place (type 8 → 0) with an
    /// incremental checksum update. Returns `false` (unchanged) if it is not an
    /// echo request.
    #[inline]
    pub fn echo_request_to_reply(&mut self) -> bool {
        if self.msg_type() != msg::ECHO_REQUEST {
            return false;
        }
        let old = bytes::u16_at(self.buffer.as_ref(), field::TYPE_CODE);
        self.set_msg_type(msg::ECHO_REPLY);
        let new = bytes::u16_at(self.buffer.as_ref(), field::TYPE_CODE);
        let c = checksum::update16(self.checksum(), old, new);
        if c == 0 {
            // RFC 1624 §3: eqn. 3 yields +0 (0x0000) where the message's words sum
            // to zero (an all-zero echo reply), but such a message needs 0xFFFF;
            // there is no non-zero header word in ICMP to rule that out, so compute
            // it in full.
            self.fill_checksum();
        } else {
            self.set_checksum(c);
        }
        true
    }
}

impl<T: AsRef<[u8]>> AsRef<[u8]> for Packet<T> {
    fn as_ref(&self) -> &[u8] {
        self.buffer.as_ref()
    }
}

/// An owned (borrowing its data) ICMP message.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Repr<'a> {
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
    /// `next_hop_mtu` is meaningful for [`unreachable::FRAG_NEEDED`] only.
    DstUnreachable {
        code: u8,
        next_hop_mtu: u16,
        quote: &'a [u8],
    },
    TimeExceeded {
        code: u8,
        quote: &'a [u8],
    },
    ParamProblem {
        code: u8,
        pointer: u8,
        quote: &'a [u8],
    },
}

impl<'a> Repr<'a> {
    /// Parses a message after verifying its checksum (`Checksum`). Other types are
    /// `Unsupported`; a non-zero code on echo or an unknown code is `Malformed`.
    pub fn parse<T: AsRef<[u8]> + ?Sized>(p: &Packet<&'a T>) -> Result<Repr<'a>> {
        p.check_len()?;
        if !p.verify_checksum() {
            return Err(Error::Checksum);
        }
        let code = p.msg_code();
        let whole: &'a [u8] = <T as AsRef<[u8]>>::as_ref(p.buffer);
        let data = whole.get(HEADER_LEN..).unwrap_or(&[]);
        match p.msg_type() {
            msg::ECHO_REQUEST | msg::ECHO_REPLY if code != 0 => Err(Error::Malformed),
            msg::ECHO_REQUEST => Ok(Repr::EchoRequest {
                ident: p.echo_ident(),
                seq_no: p.echo_seq_no(),
                data,
            }),
            msg::ECHO_REPLY => Ok(Repr::EchoReply {
                ident: p.echo_ident(),
                seq_no: p.echo_seq_no(),
                data,
            }),
            msg::DST_UNREACHABLE if code > 15 => Err(Error::Malformed),
            msg::DST_UNREACHABLE => Ok(Repr::DstUnreachable {
                code,
                next_hop_mtu: if code == unreachable::FRAG_NEEDED {
                    p.next_hop_mtu()
                } else {
                    0
                },
                quote: data,
            }),
            msg::TIME_EXCEEDED if code > 1 => Err(Error::Malformed),
            msg::TIME_EXCEEDED => Ok(Repr::TimeExceeded { code, quote: data }),
            msg::PARAM_PROBLEM if code > 2 => Err(Error::Malformed),
            msg::PARAM_PROBLEM => Ok(Repr::ParamProblem {
                code,
                pointer: p.pointer(),
                quote: data,
            }),
            _ => Err(Error::Unsupported),
        }
    }

    fn data(&self) -> &'a [u8] {
        match *self {
            Repr::EchoRequest { data, .. } | Repr::EchoReply { data, .. } => data,
            Repr::DstUnreachable { quote, .. }
            | Repr::TimeExceeded { quote, .. }
            | Repr::ParamProblem { quote, .. } => quote,
        }
    }

    /// Length of the emitted message.
    #[inline]
    pub fn buffer_len(&self) -> usize {
        HEADER_LEN + self.data().len()
    }

    /// Writes the message with its checksum into the start of the view's buffer.
    pub fn emit<T: AsRef<[u8]> + AsMut<[u8]>>(&self, p: &mut Packet<T>) -> Result<()> {
        let n = self.buffer_len();
        let buf = p
            .buffer
            .as_mut()
            .get_mut(..n)
            .ok_or(Error::BufferTooSmall)?;
        let mut q = Packet::new_unchecked(buf);
        q.clear_rest_of_header();
        match *self {
            Repr::EchoRequest { ident, seq_no, .. } | Repr::EchoReply { ident, seq_no, .. } => {
                let t = if matches!(self, Repr::EchoRequest { .. }) {
                    msg::ECHO_REQUEST
                } else {
                    msg::ECHO_REPLY
                };
                q.set_msg_type(t);
                q.set_msg_code(0);
                q.set_echo_ident(ident);
                q.set_echo_seq_no(seq_no);
            }
            Repr::DstUnreachable {
                code, next_hop_mtu, ..
            } => {
                q.set_msg_type(msg::DST_UNREACHABLE);
                q.set_msg_code(code);
                if code == unreachable::FRAG_NEEDED {
                    q.set_next_hop_mtu(next_hop_mtu);
                }
            }
            Repr::TimeExceeded { code, .. } => {
                q.set_msg_type(msg::TIME_EXCEEDED);
                q.set_msg_code(code);
            }
            Repr::ParamProblem { code, pointer, .. } => {
                q.set_msg_type(msg::PARAM_PROBLEM);
                q.set_msg_code(code);
                q.set_pointer(pointer);
            }
        }
        q.data_mut().copy_from_slice(self.data());
        q.fill_checksum();
        Ok(())
    }
}

/// How much of the offending datagram an error quotes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum QuoteLimit {
    /// The IP header (with options) + the first 8 data bytes (RFC 792).
    HeaderPlus8,
    /// As much as keeps the error datagram within 576 bytes (RFC 1812 §4.3.2.3).
    Rfc1812,
}

/// The error to build with [`build_error`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ErrorKind {
    DstUnreachable { code: u8, next_hop_mtu: u16 },
    TimeExceeded { code: u8 },
    ParamProblem { pointer: u8 },
}

/// RFC 1812 §4.3.2.7: whether an ICMP error may be sent about `offending` (a
/// validated IPv4 packet): not about an ICMP error, a non-first fragment, a packet to
/// a broadcast/multicast address, or from an address that is not a host's unicast
/// address (0.0.0.0, loopback, multicast, broadcast, class E).
pub fn error_allowed<T: AsRef<[u8]>>(offending: &ipv4::Packet<T>) -> bool {
    if offending.is_non_first_fragment() {
        return false;
    }
    let (s, d) = (offending.src_addr(), offending.dst_addr());
    if d.is_broadcast() || d.is_multicast() {
        return false;
    }
    if s.is_unspecified() || s.is_loopback() || s.is_multicast() || s.is_broadcast() {
        return false;
    }
    if s.octets()[0] >= 240 {
        return false;
    }
    if offending.protocol() == IpProtocol::ICMP {
        let t = bytes::u8_at(offending.payload(), field::TYPE);
        if offending.payload().is_empty() || msg::is_error(t) {
            return false;
        }
    }
    true
}

/// Builds into `out` a complete IPv4 datagram (20-byte header from `src`, TTL `ttl`,
/// precedence 6 = DSCP CS6 per RFC 1812 §4.3.2.5) carrying an ICMP error about
/// `offending` (an IPv4 packet starting at its header), sent back to its source.
/// Returns the length written. Errors: `offending` invalid (its view error),
/// `Unsupported` when [`error_allowed`] says no, `BufferTooSmall`.
pub fn build_error(
    out: &mut [u8],
    offending: &[u8],
    src: Ipv4Addr,
    ttl: u8,
    kind: ErrorKind,
    limit: QuoteLimit,
) -> Result<usize> {
    let orig = ipv4::Packet::new_checked(offending)?;
    if !error_allowed(&orig) {
        return Err(Error::Unsupported);
    }
    let avail = usize::from(orig.total_len());
    let want = match limit {
        QuoteLimit::HeaderPlus8 => orig.header_len() + 8,
        QuoteLimit::Rfc1812 => RFC1812_MAX_ERROR_LEN - ipv4::HEADER_LEN - HEADER_LEN,
    };
    let quote = offending.get(..want.min(avail)).ok_or(Error::Truncated)?;
    let icmp = match kind {
        ErrorKind::DstUnreachable { code, next_hop_mtu } => Repr::DstUnreachable {
            code,
            next_hop_mtu,
            quote,
        },
        ErrorKind::TimeExceeded { code } => Repr::TimeExceeded { code, quote },
        ErrorKind::ParamProblem { pointer } => Repr::ParamProblem {
            code: 0,
            pointer,
            quote,
        },
    };
    let total = ipv4::HEADER_LEN + icmp.buffer_len();
    let out = out.get_mut(..total).ok_or(Error::BufferTooSmall)?;
    let ip = ipv4::Repr {
        src_addr: src,
        dst_addr: orig.src_addr(),
        protocol: IpProtocol::ICMP,
        payload_len: icmp.buffer_len(),
        ttl,
        dscp: 48,
        ecn: 0,
        ident: 0,
        dont_frag: false,
        more_frags: false,
        frag_offset: 0,
    };
    let mut ipp = ipv4::Packet::new_unchecked(&mut *out);
    ip.emit(&mut ipp)?;
    let body = out
        .get_mut(ipv4::HEADER_LEN..)
        .ok_or(Error::BufferTooSmall)?;
    icmp.emit(&mut Packet::new_unchecked(body))?;
    Ok(total)
}

#[cfg(test)]
mod tests {
    use super::*;
    use etherparse::{Icmpv4Slice, Icmpv4Type, PacketBuilder};

    // A Linux ping: id 0x1c46, seq 1, 16 bytes of data; checksum computed by etherparse.
    fn echo_request() -> alloc::vec::Vec<u8> {
        let b =
            PacketBuilder::ipv4([10, 0, 0, 1], [10, 0, 0, 2], 64).icmpv4_echo_request(0x1c46, 1);
        let mut out = alloc::vec::Vec::new();
        b.write(&mut out, b"abcdefghijklmnop").unwrap();
        out
    }

    #[test]
    fn deconstruct_echo() {
        let pkt = echo_request();
        let icmp = &pkt[20..];
        let p = Packet::new_checked(icmp).unwrap();
        assert_eq!(p.msg_type(), msg::ECHO_REQUEST);
        assert_eq!((p.echo_ident(), p.echo_seq_no()), (0x1c46, 1));
        assert!(p.verify_checksum());
        let r = Repr::parse(&p).unwrap();
        assert_eq!(
            r,
            Repr::EchoRequest {
                ident: 0x1c46,
                seq_no: 1,
                data: b"abcdefghijklmnop"
            }
        );
        let e = Icmpv4Slice::from_slice(icmp).unwrap();
        assert_eq!(e.checksum(), p.checksum());
    }

    #[test]
    fn echo_reply_of_all_zero_message_verifies() {
        // found by the fuzzer: type 8, checksum 0xf7ff, zero body
        let mut b = [8u8, 0, 0xf7, 0xff, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0];
        let mut p = Packet::new_checked(&mut b[..]).unwrap();
        assert!(p.verify_checksum());
        assert!(p.echo_request_to_reply());
        assert!(p.verify_checksum());
        assert_eq!(p.checksum(), 0xffff);
    }

    #[test]
    fn construct_echo_and_reply() {
        let pkt = echo_request();
        let r = Repr::EchoRequest {
            ident: 0x1c46,
            seq_no: 1,
            data: b"abcdefghijklmnop",
        };
        let mut b = [0u8; 24];
        r.emit(&mut Packet::new_unchecked(&mut b[..])).unwrap();
        assert_eq!(&b[..], &pkt[20..]);
        let mut p = Packet::new_checked(&mut b[..]).unwrap();
        assert!(p.echo_request_to_reply());
        assert!(p.verify_checksum());
        assert!(!p.echo_request_to_reply());
        let e = Icmpv4Slice::from_slice(&b).unwrap();
        assert!(matches!(e.icmp_type(), Icmpv4Type::EchoReply(h) if h.id == 0x1c46 && h.seq == 1));
    }

    fn udp_datagram(len: usize) -> alloc::vec::Vec<u8> {
        let b = PacketBuilder::ipv4([192, 0, 2, 7], [198, 51, 100, 1], 1).udp(4000, 33434);
        let mut out = alloc::vec::Vec::new();
        b.write(&mut out, &alloc::vec![0x55u8; len]).unwrap();
        out
    }

    #[test]
    fn time_exceeded_quotes_header_plus_8() {
        let orig = udp_datagram(100);
        let mut out = [0u8; 600];
        let n = build_error(
            &mut out,
            &orig,
            Ipv4Addr::new(203, 0, 113, 1),
            64,
            ErrorKind::TimeExceeded {
                code: time_exceeded::TTL,
            },
            QuoteLimit::HeaderPlus8,
        )
        .unwrap();
        assert_eq!(n, 20 + 8 + 28);
        let ip = ipv4::Packet::new_checked(&out[..n]).unwrap();
        assert!(ip.verify_checksum());
        assert_eq!(ip.dst_addr(), Ipv4Addr::new(192, 0, 2, 7));
        assert_eq!(ip.protocol(), IpProtocol::ICMP);
        let p = Packet::new_checked(ip.payload()).unwrap();
        let r = Repr::parse(&p).unwrap();
        assert_eq!(
            r,
            Repr::TimeExceeded {
                code: 0,
                quote: &orig[..28]
            }
        );
        // etherparse reads the same message.
        let e = Icmpv4Slice::from_slice(ip.payload()).unwrap();
        assert!(matches!(e.icmp_type(), Icmpv4Type::TimeExceeded(_)));
        assert_eq!(e.payload(), &orig[..28]);
    }

    #[test]
    fn frag_needed_rfc1812_quote() {
        let orig = udp_datagram(1400);
        let mut out = [0u8; 1600];
        let n = build_error(
            &mut out,
            &orig,
            Ipv4Addr::new(203, 0, 113, 1),
            255,
            ErrorKind::DstUnreachable {
                code: unreachable::FRAG_NEEDED,
                next_hop_mtu: 1400,
            },
            QuoteLimit::Rfc1812,
        )
        .unwrap();
        assert_eq!(n, 576);
        let ip = ipv4::Packet::new_checked(&out[..n]).unwrap();
        let p = Packet::new_checked(ip.payload()).unwrap();
        assert_eq!(p.next_hop_mtu(), 1400);
        match Repr::parse(&p).unwrap() {
            Repr::DstUnreachable {
                code: 4,
                next_hop_mtu: 1400,
                quote,
            } => {
                assert_eq!(quote, &orig[..548]);
            }
            other => panic!("unexpected {other:?}"),
        }
        // A short datagram is quoted whole.
        let small = udp_datagram(4);
        let n = build_error(
            &mut out,
            &small,
            Ipv4Addr::new(203, 0, 113, 1),
            64,
            ErrorKind::DstUnreachable {
                code: unreachable::PORT,
                next_hop_mtu: 0,
            },
            QuoteLimit::Rfc1812,
        )
        .unwrap();
        assert_eq!(n, 20 + 8 + small.len());
    }

    #[test]
    fn error_suppression() {
        let src = Ipv4Addr::new(203, 0, 113, 1);
        let kind = ErrorKind::TimeExceeded { code: 0 };
        let mut out = [0u8; 600];
        // About an ICMP error: no.
        let orig = udp_datagram(10);
        let n = build_error(&mut out, &orig, src, 64, kind, QuoteLimit::HeaderPlus8).unwrap();
        let err_pkt = out[..n].to_vec();
        assert_eq!(
            build_error(&mut out, &err_pkt, src, 64, kind, QuoteLimit::HeaderPlus8),
            Err(Error::Unsupported)
        );
        // About an echo request: yes.
        let echo = echo_request();
        assert!(build_error(&mut out, &echo, src, 64, kind, QuoteLimit::HeaderPlus8).is_ok());
        // Multicast destination or non-first fragment: no.
        let mut mc = orig.clone();
        mc[16] = 224;
        let mut ipp = ipv4::Packet::new_checked(&mut mc[..]).unwrap();
        ipp.fill_checksum();
        assert_eq!(
            build_error(&mut out, &mc, src, 64, kind, QuoteLimit::HeaderPlus8),
            Err(Error::Unsupported)
        );
        let mut frag = orig.clone();
        let mut ipp = ipv4::Packet::new_checked(&mut frag[..]).unwrap();
        ipp.set_flags_and_offset(false, false, 1480);
        assert_eq!(
            build_error(&mut out, &frag, src, 64, kind, QuoteLimit::HeaderPlus8),
            Err(Error::Unsupported)
        );
        // Too small an output buffer.
        let mut tiny = [0u8; 40];
        assert_eq!(
            build_error(&mut tiny, &orig, src, 64, kind, QuoteLimit::HeaderPlus8),
            Err(Error::BufferTooSmall)
        );
    }

    #[test]
    fn parse_errors() {
        let pkt = echo_request();
        let mut icmp = pkt[20..].to_vec();
        assert_eq!(
            Packet::new_checked(&icmp[..7]).err(),
            Some(Error::Truncated)
        );
        icmp[10] ^= 0xff;
        assert_eq!(
            Repr::parse(&Packet::new_checked(&icmp[..]).unwrap()),
            Err(Error::Checksum)
        );
        let mut redirect = [5u8, 0, 0, 0, 0, 0, 0, 0];
        Packet::new_unchecked(&mut redirect[..]).fill_checksum();
        assert_eq!(
            Repr::parse(&Packet::new_checked(&redirect[..]).unwrap()),
            Err(Error::Unsupported)
        );
    }
}
