//! PPPoE packets (RFC 2516 §4 header, §5 discovery stage codes, §6 session stage,
//! Appendix A tags) and the PPP-Max-Payload tag (RFC 4638 §4).
//!
//! [`Packet`] is the view over the header (its getters read zero on a short
//! `new_unchecked` buffer); [`DiscoveryRepr`] parses the tags a BNG acts on and emits
//! discovery packets into a `Vec` (control path).
//!
//! ```text
//!  0                   1                   2                   3
//!  0 1 2 3 4 5 6 7 8 9 0 1 2 3 4 5 6 7 8 9 0 1 2 3 4 5 6 7 8 9 0 1
//! |  VER  | TYPE  |      CODE     |          SESSION_ID           |
//! |            LENGTH             |           payload             ~
//! ```

use super::bytes::{self, be16};
use super::{Error, Result};
use alloc::vec::Vec;

mod field {
    use super::bytes::Field;
    pub const VER_TYPE: usize = 0;
    pub const CODE: usize = 1;
    pub const SESSION: Field = 2..4;
    pub const LENGTH: Field = 4..6;
    pub const PAYLOAD: usize = 6;
}

/// Length of the PPPoE header.
pub const HEADER_LEN: usize = field::PAYLOAD;

/// PPPoE codes (RFC 2516 §5).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u8)]
pub enum Code {
    /// Session data (§6).
    Session = 0x00,
    /// PPPoE Active Discovery Offer.
    Pado = 0x07,
    /// PPPoE Active Discovery Initiation.
    Padi = 0x09,
    /// PPPoE Active Discovery Request.
    Padr = 0x19,
    /// PPPoE Active Discovery Session-confirmation.
    Pads = 0x65,
    /// PPPoE Active Discovery Terminate.
    Padt = 0xa7,
}

impl Code {
    /// Map a wire value to a code.
    pub fn from_u8(v: u8) -> Option<Code> {
        Some(match v {
            0x00 => Code::Session,
            0x07 => Code::Pado,
            0x09 => Code::Padi,
            0x19 => Code::Padr,
            0x65 => Code::Pads,
            0xa7 => Code::Padt,
            _ => return None,
        })
    }
}

/// Tag types (RFC 2516 Appendix A, RFC 4638 §4).
pub mod tag {
    /// End-Of-List.
    pub const END_OF_LIST: u16 = 0x0000;
    /// Service-Name.
    pub const SERVICE_NAME: u16 = 0x0101;
    /// AC-Name.
    pub const AC_NAME: u16 = 0x0102;
    /// Host-Uniq.
    pub const HOST_UNIQ: u16 = 0x0103;
    /// AC-Cookie.
    pub const AC_COOKIE: u16 = 0x0104;
    /// Vendor-Specific.
    pub const VENDOR_SPECIFIC: u16 = 0x0105;
    /// Relay-Session-Id.
    pub const RELAY_SESSION_ID: u16 = 0x0110;
    /// PPP-Max-Payload (RFC 4638).
    pub const PPP_MAX_PAYLOAD: u16 = 0x0120;
    /// Service-Name-Error.
    pub const SERVICE_NAME_ERROR: u16 = 0x0201;
    /// AC-System-Error.
    pub const AC_SYSTEM_ERROR: u16 = 0x0202;
    /// Generic-Error.
    pub const GENERIC_ERROR: u16 = 0x0203;
}

/// A checked view of a PPPoE packet (header + payload).
#[derive(Debug)]
pub struct Packet<T: AsRef<[u8]>> {
    buffer: T,
}

impl<T: AsRef<[u8]>> Packet<T> {
    /// Wrap without checks.
    pub const fn new_unchecked(buffer: T) -> Packet<T> {
        Packet { buffer }
    }

    /// Wrap and check that the header fits, VER=TYPE=1 and LENGTH fits the buffer.
    /// Bytes after LENGTH (Ethernet padding) are ignored by [`Packet::payload`].
    pub fn new_checked(buffer: T) -> Result<Packet<T>> {
        let p = Packet { buffer };
        let b = p.buffer.as_ref();
        if b.len() < HEADER_LEN {
            return Err(Error::Truncated);
        }
        if bytes::u8_at(b, field::VER_TYPE) != 0x11 {
            return Err(Error::Malformed);
        }
        if HEADER_LEN + usize::from(p.length()) > b.len() {
            return Err(Error::Truncated);
        }
        Ok(p)
    }

    /// The CODE field.
    #[inline]
    pub fn code(&self) -> u8 {
        bytes::u8_at(self.buffer.as_ref(), field::CODE)
    }

    /// The SESSION_ID field.
    #[inline]
    pub fn session_id(&self) -> u16 {
        bytes::u16_at(self.buffer.as_ref(), field::SESSION)
    }

    /// The LENGTH field (payload length).
    #[inline]
    pub fn length(&self) -> u16 {
        bytes::u16_at(self.buffer.as_ref(), field::LENGTH)
    }

    /// The payload, LENGTH bytes long (shorter if the buffer is).
    #[inline]
    pub fn payload(&self) -> &[u8] {
        let b = self.buffer.as_ref();
        let end = (HEADER_LEN + usize::from(self.length())).min(b.len());
        b.get(HEADER_LEN..end).unwrap_or(&[])
    }
}

impl<T: AsRef<[u8]> + AsMut<[u8]>> Packet<T> {
    /// Write the header fields (VER=TYPE=1); nothing is written into a buffer shorter
    /// than the header.
    pub fn set_header(&mut self, code: u8, session_id: u16, length: u16) {
        let b = self.buffer.as_mut();
        if b.len() < HEADER_LEN {
            return;
        }
        bytes::set_u8_at(b, field::VER_TYPE, 0x11);
        bytes::set_u8_at(b, field::CODE, code);
        bytes::set_u16_at(b, field::SESSION, session_id);
        bytes::set_u16_at(b, field::LENGTH, length);
    }
}

/// Iterator over the TLV tags of a discovery payload (RFC 2516 Appendix A).
/// Yields `Err(Truncated)` once and stops if a tag overruns the payload.
pub struct Tags<'a> {
    rest: &'a [u8],
}

impl<'a> Tags<'a> {
    /// Iterate over `payload`.
    pub fn new(payload: &'a [u8]) -> Self {
        Tags { rest: payload }
    }
}

impl<'a> Iterator for Tags<'a> {
    type Item = Result<(u16, &'a [u8])>;
    fn next(&mut self) -> Option<Self::Item> {
        if self.rest.is_empty() {
            return None;
        }
        let t = match be16(self.rest, 0) {
            Ok(t) => t,
            Err(e) => {
                self.rest = &[];
                return Some(Err(e));
            }
        };
        let l = match be16(self.rest, 2) {
            Ok(l) => usize::from(l),
            Err(e) => {
                self.rest = &[];
                return Some(Err(e));
            }
        };
        let Some(v) = self.rest.get(4..4 + l) else {
            self.rest = &[];
            return Some(Err(Error::Truncated));
        };
        if t == tag::END_OF_LIST {
            self.rest = &[];
            return None;
        }
        self.rest = &self.rest[4 + l..];
        Some(Ok((t, v)))
    }
}

/// The tags of a discovery packet we act on. Unknown tags are skipped (RFC 2516 says
/// unknown tags MUST be ignored). Tag values borrow from the packet.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct DiscoveryTags<'a> {
    /// Service-Name (empty value = any service).
    pub service_name: Option<&'a [u8]>,
    /// AC-Name.
    pub ac_name: Option<&'a [u8]>,
    /// Host-Uniq (opaque; echoed).
    pub host_uniq: Option<&'a [u8]>,
    /// AC-Cookie (opaque to the host; echoed in PADR).
    pub ac_cookie: Option<&'a [u8]>,
    /// Relay-Session-Id (opaque; echoed).
    pub relay_session_id: Option<&'a [u8]>,
    /// PPP-Max-Payload (RFC 4638).
    pub ppp_max_payload: Option<u16>,
    /// Service-Name-Error / AC-System-Error / Generic-Error: (tag, text).
    pub error: Option<(u16, &'a [u8])>,
}

/// A discovery packet as the program sees it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DiscoveryRepr<'a> {
    /// PADI/PADO/PADR/PADS/PADT.
    pub code: Code,
    /// Session id (0 except in PADS and PADT).
    pub session_id: u16,
    /// Tags.
    pub tags: DiscoveryTags<'a>,
}

impl<'a> DiscoveryRepr<'a> {
    /// Parse a discovery packet. Session data (code 0) is `Malformed` here.
    pub fn parse(p: &Packet<&'a [u8]>) -> Result<DiscoveryRepr<'a>> {
        let code = Code::from_u8(p.code()).ok_or(Error::Malformed)?;
        if code == Code::Session {
            return Err(Error::Malformed);
        }
        let b: &'a [u8] = p.buffer;
        let end = HEADER_LEN + usize::from(p.length());
        let payload = b.get(HEADER_LEN..end).ok_or(Error::Truncated)?;
        let mut tags = DiscoveryTags::default();
        for t in Tags::new(payload) {
            let (ty, v) = t?;
            match ty {
                tag::SERVICE_NAME => tags.service_name = tags.service_name.or(Some(v)),
                tag::AC_NAME => tags.ac_name = Some(v),
                tag::HOST_UNIQ => tags.host_uniq = Some(v),
                tag::AC_COOKIE => tags.ac_cookie = Some(v),
                tag::RELAY_SESSION_ID => tags.relay_session_id = Some(v),
                tag::PPP_MAX_PAYLOAD => {
                    tags.ppp_max_payload = Some(be16(v, 0).map_err(|_| Error::Malformed)?)
                }
                tag::SERVICE_NAME_ERROR | tag::AC_SYSTEM_ERROR | tag::GENERIC_ERROR => {
                    tags.error = Some((ty, v))
                }
                _ => {}
            }
        }
        Ok(DiscoveryRepr {
            code,
            session_id: p.session_id(),
            tags,
        })
    }

    /// Append the PPPoE header and tags (in a fixed order) to `out`.
    pub fn emit(&self, out: &mut Vec<u8>) -> Result<()> {
        let start = out.len();
        out.extend_from_slice(&[0x11, self.code as u8]);
        out.extend_from_slice(&self.session_id.to_be_bytes());
        out.extend_from_slice(&[0, 0]);
        let t = &self.tags;
        let mut put = |ty: u16, v: &[u8]| -> Result<()> {
            let l = u16::try_from(v.len()).map_err(|_| Error::BufferTooSmall)?;
            out.extend_from_slice(&ty.to_be_bytes());
            out.extend_from_slice(&l.to_be_bytes());
            out.extend_from_slice(v);
            Ok(())
        };
        if let Some(v) = t.service_name {
            put(tag::SERVICE_NAME, v)?;
        }
        if let Some(v) = t.ac_name {
            put(tag::AC_NAME, v)?;
        }
        if let Some(v) = t.host_uniq {
            put(tag::HOST_UNIQ, v)?;
        }
        if let Some(v) = t.ac_cookie {
            put(tag::AC_COOKIE, v)?;
        }
        if let Some(v) = t.relay_session_id {
            put(tag::RELAY_SESSION_ID, v)?;
        }
        if let Some(m) = t.ppp_max_payload {
            put(tag::PPP_MAX_PAYLOAD, &m.to_be_bytes())?;
        }
        if let Some((ty, v)) = t.error {
            put(ty, v)?;
        }
        let len = out.len() - start - HEADER_LEN;
        let len = u16::try_from(len).map_err(|_| Error::BufferTooSmall)?;
        out[start + 4..start + 6].copy_from_slice(&len.to_be_bytes());
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    // A PADI from a Linux pppd client (rp-pppoe plugin): Service-Name "" and Host-Uniq.
    const PADI: [u8; 20] = [
        0x11, 0x09, 0x00, 0x00, 0x00, 0x0e, 0x01, 0x01, 0x00, 0x00, 0x01, 0x03, 0x00, 0x06, 0xde,
        0xad, 0xbe, 0xef, 0x00, 0x01,
    ];

    #[test]
    fn parse_padi() {
        let p = Packet::new_checked(&PADI[..]).unwrap();
        let r = DiscoveryRepr::parse(&p).unwrap();
        assert_eq!(r.code, Code::Padi);
        assert_eq!(r.session_id, 0);
        assert_eq!(r.tags.service_name, Some(&b""[..]));
        assert_eq!(r.tags.host_uniq, Some(&[0xde, 0xad, 0xbe, 0xef, 0, 1][..]));
        let mut out = Vec::new();
        r.emit(&mut out).unwrap();
        assert_eq!(out, PADI);
    }

    #[test]
    fn pads_roundtrip_with_all_tags() {
        let r = DiscoveryRepr {
            code: Code::Pads,
            session_id: 0x1234,
            tags: DiscoveryTags {
                service_name: Some(b"internet"),
                ac_name: Some(b"vbng"),
                host_uniq: Some(b"hu"),
                ac_cookie: Some(&[1; 20]),
                relay_session_id: Some(b"rs"),
                ppp_max_payload: Some(1500),
                error: None,
            },
        };
        let mut out = Vec::new();
        r.emit(&mut out).unwrap();
        let p = Packet::new_checked(&out[..]).unwrap();
        assert_eq!(p.session_id(), 0x1234);
        assert_eq!(DiscoveryRepr::parse(&p).unwrap(), r);
    }

    #[test]
    fn malformed() {
        assert_eq!(
            Packet::new_checked(&PADI[..5]).err(),
            Some(Error::Truncated)
        );
        let mut bad = PADI;
        bad[0] = 0x12;
        assert_eq!(Packet::new_checked(&bad[..]).err(), Some(Error::Malformed));
        let mut long = PADI;
        long[5] = 0x40;
        assert_eq!(Packet::new_checked(&long[..]).err(), Some(Error::Truncated));
        // A tag whose length overruns the payload.
        let mut over = PADI;
        over[13] = 0x20;
        let p = Packet::new_checked(&over[..]).unwrap();
        assert_eq!(DiscoveryRepr::parse(&p), Err(Error::Truncated));
        let mut code = PADI;
        code[1] = 0x42;
        let p = Packet::new_checked(&code[..]).unwrap();
        assert_eq!(DiscoveryRepr::parse(&p), Err(Error::Malformed));
    }
}
