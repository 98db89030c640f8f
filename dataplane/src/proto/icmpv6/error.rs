//! Building ICMPv6 errors (RFC 4443 §2.4): when an error may be sent (§2.4(e)) and
//! the complete IPv6 + ICMPv6 error quoting as much of the invoking packet as fits
//! the minimum MTU (§2.4(c)).

use super::*;

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
