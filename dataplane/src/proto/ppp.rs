//! PPP in PPPoE (RFC 2516 §7: no address/control field, 2-byte protocol field) and the
//! control protocols: the LCP-family packet format (RFC 1661 §5: Code, Identifier,
//! Length, Data) with its configuration options (RFC 1661 §6), IPCP options (RFC 1332
//! §3, RFC 1877 §1), IPv6CP options (RFC 5072 §4), PAP (RFC 1334 §2.2) and CHAP
//! (RFC 1994 §4).
//!
//! The parsers borrow from the frame and never allocate; the emitters append whole PPP
//! frames to a `Vec` (control path).

use super::bytes::{be16, put16};
use super::{Error, Result};
use alloc::vec::Vec;

/// PPP protocol numbers (RFC 1661 §2, IANA "PPP DLL protocol numbers").
pub mod proto {
    /// IPv4 datagram.
    pub const IPV4: u16 = 0x0021;
    /// IPv6 datagram.
    pub const IPV6: u16 = 0x0057;
    /// IP Control Protocol.
    pub const IPCP: u16 = 0x8021;
    /// IPv6 Control Protocol.
    pub const IPV6CP: u16 = 0x8057;
    /// Link Control Protocol.
    pub const LCP: u16 = 0xc021;
    /// Password Authentication Protocol.
    pub const PAP: u16 = 0xc023;
    /// Challenge Handshake Authentication Protocol.
    pub const CHAP: u16 = 0xc223;
}

/// LCP-family codes (RFC 1661 §5).
pub mod code {
    /// Configure-Request.
    pub const CONF_REQ: u8 = 1;
    /// Configure-Ack.
    pub const CONF_ACK: u8 = 2;
    /// Configure-Nak.
    pub const CONF_NAK: u8 = 3;
    /// Configure-Reject.
    pub const CONF_REJ: u8 = 4;
    /// Terminate-Request.
    pub const TERM_REQ: u8 = 5;
    /// Terminate-Ack.
    pub const TERM_ACK: u8 = 6;
    /// Code-Reject.
    pub const CODE_REJ: u8 = 7;
    /// Protocol-Reject (LCP only).
    pub const PROTO_REJ: u8 = 8;
    /// Echo-Request (LCP only).
    pub const ECHO_REQ: u8 = 9;
    /// Echo-Reply (LCP only).
    pub const ECHO_REPLY: u8 = 10;
    /// Discard-Request (LCP only).
    pub const DISCARD_REQ: u8 = 11;
}

/// LCP configuration option types (RFC 1661 §6).
pub mod lcp_opt {
    /// Maximum-Receive-Unit.
    pub const MRU: u8 = 1;
    /// Authentication-Protocol.
    pub const AUTH: u8 = 3;
    /// Magic-Number.
    pub const MAGIC: u8 = 5;
    /// Protocol-Field-Compression.
    pub const PFC: u8 = 7;
    /// Address-and-Control-Field-Compression.
    pub const ACFC: u8 = 8;
}

/// IPCP option types (RFC 1332 §3, RFC 1877 §1).
pub mod ipcp_opt {
    /// IP-Address.
    pub const IP_ADDRESS: u8 = 3;
    /// Primary DNS server address.
    pub const PRIMARY_DNS: u8 = 129;
    /// Secondary DNS server address.
    pub const SECONDARY_DNS: u8 = 131;
}

/// IPv6CP option types (RFC 5072 §4).
pub mod ipv6cp_opt {
    /// Interface-Identifier.
    pub const INTERFACE_ID: u8 = 1;
}

/// CHAP algorithm MD5 (RFC 1994 §2.2).
pub const CHAP_MD5: u8 = 5;

/// Split a PPP frame (as carried in PPPoE) into protocol and information field.
pub fn split_protocol(frame: &[u8]) -> Result<(u16, &[u8])> {
    let p = be16(frame, 0)?;
    Ok((p, &frame[2..]))
}

/// A checked view of an LCP-family control packet (RFC 1661 §5).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ControlPacket<'a> {
    /// Code.
    pub code: u8,
    /// Identifier.
    pub id: u8,
    /// Data, exactly Length-4 bytes (padding after Length is dropped, §5).
    pub data: &'a [u8],
}

impl<'a> ControlPacket<'a> {
    /// Parse the information field of a control protocol frame.
    pub fn parse(b: &'a [u8]) -> Result<ControlPacket<'a>> {
        let len = usize::from(be16(b, 2)?);
        if len < 4 {
            return Err(Error::Malformed);
        }
        let data = b.get(4..len).ok_or(Error::Truncated)?;
        Ok(ControlPacket {
            code: b[0],
            id: b[1],
            data,
        })
    }

    /// Append protocol + Code/Id/Length + data to `out` (a PPP frame without PPPoE).
    pub fn emit_frame(protocol: u16, code: u8, id: u8, data: &[u8], out: &mut Vec<u8>) {
        put16(out, protocol);
        out.push(code);
        out.push(id);
        put16(out, (data.len() + 4).min(0xffff) as u16);
        out.extend_from_slice(data);
    }
}

/// Iterator over configuration options (type, value) (RFC 1661 §6). A bad option
/// length yields one `Err(Malformed)` and ends the iteration.
pub struct Options<'a> {
    rest: &'a [u8],
}

impl<'a> Options<'a> {
    /// Iterate over the options in `data`.
    pub fn new(data: &'a [u8]) -> Self {
        Options { rest: data }
    }

    /// Check that all options are well formed.
    pub fn validate(data: &'a [u8]) -> Result<()> {
        for o in Options::new(data) {
            o?;
        }
        Ok(())
    }
}

impl<'a> Iterator for Options<'a> {
    type Item = Result<(u8, &'a [u8])>;
    fn next(&mut self) -> Option<Self::Item> {
        if self.rest.is_empty() {
            return None;
        }
        let (Some(&t), Some(&l)) = (self.rest.first(), self.rest.get(1)) else {
            self.rest = &[];
            return Some(Err(Error::Truncated));
        };
        let l = usize::from(l);
        if l < 2 {
            self.rest = &[];
            return Some(Err(Error::Malformed));
        }
        let Some(v) = self.rest.get(2..l) else {
            self.rest = &[];
            return Some(Err(Error::Truncated));
        };
        self.rest = &self.rest[l..];
        Some(Ok((t, v)))
    }
}

/// Append one option (type, value) to `out`.
pub fn put_option(out: &mut Vec<u8>, ty: u8, value: &[u8]) {
    out.push(ty);
    out.push((value.len() + 2).min(255) as u8);
    out.extend_from_slice(&value[..value.len().min(253)]);
}

/// A PAP packet (RFC 1334 §2.2).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PapRepr<'a> {
    /// Authenticate-Request (code 1).
    Request {
        /// Peer-ID.
        peer_id: &'a [u8],
        /// Password.
        password: &'a [u8],
    },
    /// Authenticate-Ack (code 2).
    Ack(&'a [u8]),
    /// Authenticate-Nak (code 3).
    Nak(&'a [u8]),
}

fn len_prefixed(b: &[u8], off: usize) -> Result<(&[u8], usize)> {
    let l = usize::from(*b.get(off).ok_or(Error::Truncated)?);
    let v = b.get(off + 1..off + 1 + l).ok_or(Error::Truncated)?;
    Ok((v, off + 1 + l))
}

impl<'a> PapRepr<'a> {
    /// Parse from a control packet.
    pub fn parse(p: &ControlPacket<'a>) -> Result<PapRepr<'a>> {
        match p.code {
            1 => {
                let (peer_id, off) = len_prefixed(p.data, 0)?;
                let (password, _) = len_prefixed(p.data, off)?;
                Ok(PapRepr::Request { peer_id, password })
            }
            2 | 3 => {
                let msg = if p.data.is_empty() {
                    &[][..]
                } else {
                    len_prefixed(p.data, 0)?.0
                };
                Ok(if p.code == 2 {
                    PapRepr::Ack(msg)
                } else {
                    PapRepr::Nak(msg)
                })
            }
            _ => Err(Error::Malformed),
        }
    }

    /// Append the whole PPP frame (protocol PAP) to `out`.
    pub fn emit_frame(&self, id: u8, out: &mut Vec<u8>) {
        let mut d = Vec::new();
        let code = match self {
            PapRepr::Request { peer_id, password } => {
                d.push(peer_id.len().min(255) as u8);
                d.extend_from_slice(&peer_id[..peer_id.len().min(255)]);
                d.push(password.len().min(255) as u8);
                d.extend_from_slice(&password[..password.len().min(255)]);
                1
            }
            PapRepr::Ack(m) | PapRepr::Nak(m) => {
                d.push(m.len().min(255) as u8);
                d.extend_from_slice(&m[..m.len().min(255)]);
                if matches!(self, PapRepr::Ack(_)) {
                    2
                } else {
                    3
                }
            }
        };
        ControlPacket::emit_frame(proto::PAP, code, id, &d, out);
    }
}

/// A CHAP packet (RFC 1994 §4).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ChapRepr<'a> {
    /// Challenge (code 1).
    Challenge {
        /// Challenge value.
        value: &'a [u8],
        /// Authenticator name.
        name: &'a [u8],
    },
    /// Response (code 2).
    Response {
        /// Response value (16 bytes for MD5).
        value: &'a [u8],
        /// Peer name.
        name: &'a [u8],
    },
    /// Success (code 3) with message.
    Success(&'a [u8]),
    /// Failure (code 4) with message.
    Failure(&'a [u8]),
}

impl<'a> ChapRepr<'a> {
    /// Parse from a control packet.
    pub fn parse(p: &ControlPacket<'a>) -> Result<ChapRepr<'a>> {
        match p.code {
            1 | 2 => {
                let (value, off) = len_prefixed(p.data, 0)?;
                let name = p.data.get(off..).ok_or(Error::Truncated)?;
                Ok(if p.code == 1 {
                    ChapRepr::Challenge { value, name }
                } else {
                    ChapRepr::Response { value, name }
                })
            }
            3 => Ok(ChapRepr::Success(p.data)),
            4 => Ok(ChapRepr::Failure(p.data)),
            _ => Err(Error::Malformed),
        }
    }

    /// Append the whole PPP frame (protocol CHAP) to `out`.
    pub fn emit_frame(&self, id: u8, out: &mut Vec<u8>) {
        let mut d = Vec::new();
        let code = match self {
            ChapRepr::Challenge { value, name } | ChapRepr::Response { value, name } => {
                d.push(value.len().min(255) as u8);
                d.extend_from_slice(&value[..value.len().min(255)]);
                d.extend_from_slice(name);
                if matches!(self, ChapRepr::Challenge { .. }) {
                    1
                } else {
                    2
                }
            }
            ChapRepr::Success(m) => {
                d.extend_from_slice(m);
                3
            }
            ChapRepr::Failure(m) => {
                d.extend_from_slice(m);
                4
            }
        };
        ControlPacket::emit_frame(proto::CHAP, code, id, &d, out);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    // LCP Configure-Request from pppd: MRU 1492, Magic 0x1f2e3d4c.
    const LCP_CR: [u8; 16] = [
        0xc0, 0x21, 0x01, 0x01, 0x00, 0x0e, 0x01, 0x04, 0x05, 0xd4, 0x05, 0x06, 0x1f, 0x2e, 0x3d,
        0x4c,
    ];

    #[test]
    fn lcp_conf_req() {
        let (p, info) = split_protocol(&LCP_CR).unwrap();
        assert_eq!(p, proto::LCP);
        let c = ControlPacket::parse(info).unwrap();
        assert_eq!((c.code, c.id), (code::CONF_REQ, 1));
        let opts: Vec<_> = Options::new(c.data).collect::<Result<_>>().unwrap();
        assert_eq!(
            opts,
            [
                (lcp_opt::MRU, &[0x05, 0xd4][..]),
                (lcp_opt::MAGIC, &[0x1f, 0x2e, 0x3d, 0x4c][..])
            ]
        );
        let mut out = Vec::new();
        ControlPacket::emit_frame(proto::LCP, c.code, c.id, c.data, &mut out);
        assert_eq!(out, LCP_CR);
    }

    #[test]
    fn bad_options_and_lengths() {
        assert_eq!(ControlPacket::parse(&[1, 1, 0, 3]), Err(Error::Malformed));
        assert_eq!(
            ControlPacket::parse(&[1, 1, 0, 9, 0]),
            Err(Error::Truncated)
        );
        assert_eq!(Options::validate(&[1, 1]), Err(Error::Malformed));
        assert_eq!(Options::validate(&[1, 4, 0]), Err(Error::Truncated));
        assert_eq!(Options::validate(&[1]), Err(Error::Truncated));
    }

    #[test]
    fn pap_and_chap_roundtrip() {
        let mut out = Vec::new();
        PapRepr::Request {
            peer_id: b"alice",
            password: b"secret",
        }
        .emit_frame(7, &mut out);
        let c = ControlPacket::parse(&out[2..]).unwrap();
        assert_eq!(
            PapRepr::parse(&c).unwrap(),
            PapRepr::Request {
                peer_id: b"alice",
                password: b"secret"
            }
        );
        out.clear();
        ChapRepr::Challenge {
            value: &[9; 16],
            name: b"vbng",
        }
        .emit_frame(3, &mut out);
        let c = ControlPacket::parse(&out[2..]).unwrap();
        assert_eq!(
            ChapRepr::parse(&c).unwrap(),
            ChapRepr::Challenge {
                value: &[9; 16],
                name: b"vbng"
            }
        );
        // PAP request whose password length overruns.
        let c = ControlPacket {
            code: 1,
            id: 1,
            data: &[1, b'a', 5, b'x'],
        };
        assert_eq!(PapRepr::parse(&c), Err(Error::Truncated));
    }
}
