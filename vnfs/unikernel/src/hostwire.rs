//! The host stack's wire decisions, kept free of the platform so the fuzz target
//! `hostwire` (vnfs/unikernel/fuzz) runs them on arbitrary input: which received
//! frames the stack takes ([`classify`]: Ethernet II (IEEE 802.3 §3.2.6), ARP (RFC
//! 826), IPv4 (RFC 791 §3.1), UDP (RFC 768) and TCP (RFC 9293 §3.1) headers), the
//! request line of an HTTP/1.1 request head ([`parse_request`], RFC 9112 §3) and the
//! length of its body ([`body_length`], RFC 9112 §6.2–§6.3).

/// What the divert does with a received frame.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Verdict {
    /// To the fast path only.
    Pass,
    /// To the stack only.
    Stack,
    /// A copy to the stack, the frame to the fast path.
    Both,
}

/// Classify a frame received on the stack's port (see the module docs).
pub fn classify(f: &[u8], addr: [u8; 4], exclusive: bool) -> Verdict {
    if exclusive {
        return Verdict::Stack;
    }
    let Some(et) = f.get(12..14) else {
        return Verdict::Pass;
    };
    match u16::from_be_bytes([et[0], et[1]]) {
        // ARP (RFC 826) over Ethernet/IPv4: an opcode 2 reply whose target is us.
        0x0806 => {
            if f.get(14..22) == Some(&[0, 1, 8, 0, 6, 4, 0, 2][..]) && f.get(38..42) == Some(&addr[..]) {
                Verdict::Both
            } else {
                Verdict::Pass
            }
        }
        0x0800 => {
            let Some(ip) = f.get(14..34) else {
                return Verdict::Pass;
            };
            let ihl = usize::from(ip[0] & 0x0f) * 4;
            let frag = u16::from_be_bytes([ip[6], ip[7]]) & 0x3fff;
            if ip[0] >> 4 != 4 || ihl < 20 || frag != 0 || ip[16..20] != addr {
                return Verdict::Pass;
            }
            match ip[9] {
                6 => Verdict::Stack,
                17 => match f.get(14 + ihl + 2..14 + ihl + 4) {
                    Some(p) if !matches!(u16::from_be_bytes([p[0], p[1]]), 67 | 68) => Verdict::Stack,
                    _ => Verdict::Pass,
                },
                _ => Verdict::Pass,
            }
        }
        _ => Verdict::Pass,
    }
}

/// A request head that is not HTTP/1.x (bad request line, not UTF-8).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BadRequest;

/// The request line of a complete head: `Ok(None)` while incomplete.
pub fn parse_request(b: &[u8]) -> Result<Option<(&str, &str, &str)>, BadRequest> {
    let Some(end) = b.windows(4).position(|w| w == b"\r\n\r\n") else {
        return Ok(None);
    };
    let head = core::str::from_utf8(&b[..end]).map_err(|_| BadRequest)?;
    let line = head.lines().next().ok_or(BadRequest)?;
    let mut it = line.split(' ');
    let (Some(m), Some(target), Some(v), None) = (it.next(), it.next(), it.next(), it.next()) else {
        return Err(BadRequest);
    };
    if !v.starts_with("HTTP/1.") || m.is_empty() || !target.starts_with('/') {
        return Err(BadRequest);
    }
    let (p, q) = target.split_once('?').unwrap_or((target, ""));
    Ok(Some((m, p, q)))
}

/// Why a request's body cannot be read.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BodyError {
    /// `Transfer-Encoding` (chunked bodies are not taken, RFC 9112 §6.3 rule 4's
    /// "411 Length Required" is answered instead).
    Chunked,
    /// A `Content-Length` that is not one decimal number, or several that differ
    /// (RFC 9112 §6.3 rule 5).
    BadLength,
    /// Larger than the server takes.
    TooLarge,
}

/// The body length of a complete request head `b` (up to and including the blank
/// line): `Content-Length`, 0 without it; refused above `max`.
pub fn body_length(b: &[u8], max: usize) -> Result<usize, BodyError> {
    let Some(end) = b.windows(4).position(|w| w == b"\r\n\r\n") else {
        return Ok(0);
    };
    let Ok(head) = core::str::from_utf8(&b[..end]) else {
        return Err(BodyError::BadLength);
    };
    let mut len: Option<usize> = None;
    for line in head.split("\r\n").skip(1) {
        let Some((name, value)) = line.split_once(':') else {
            continue;
        };
        let value = value.trim_matches(|c| c == ' ' || c == '\t');
        if name.eq_ignore_ascii_case("transfer-encoding") {
            return Err(BodyError::Chunked);
        }
        if name.eq_ignore_ascii_case("content-length") {
            if value.is_empty() || !value.bytes().all(|c| c.is_ascii_digit()) {
                return Err(BodyError::BadLength);
            }
            // More digits than any size we take: too large, not an overflow.
            let n = if value.len() > 12 {
                usize::MAX
            } else {
                value.parse::<usize>().map_err(|_| BodyError::BadLength)?
            };
            if len.is_some_and(|l| l != n) {
                return Err(BodyError::BadLength);
            }
            len = Some(n);
        }
    }
    match len {
        Some(n) if n > max => Err(BodyError::TooLarge),
        Some(n) => Ok(n),
        None => Ok(0),
    }
}
