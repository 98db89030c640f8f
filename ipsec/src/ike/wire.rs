//! IKEv2 message codec (RFC 7296 §3): the IKE header (§3.1), the generic payload
//! header and payload chain (§3.2), and the payloads the exchanges here use: SA with
//! proposals, transforms and attributes (§3.3), KE (§3.4), IDi/IDr (§3.5), AUTH
//! (§3.8), Ni/Nr (§3.9), Notify (§3.10), Delete (§3.11), Vendor ID (§3.12), TSi/TSr
//! (§3.13) and the Encrypted payload SK (§3.14; its AES-GCM form is in `ike::sk`).
//!
//! Parsing is strict: every length field is checked against its container, the
//! header length must equal the datagram length, "last substructure" flags must
//! agree with the structure counts, SK must be the last payload, and an unknown
//! payload with the critical bit set is an error (§2.5). Errors are typed
//! ([`ParseError`]); nothing here panics on any input.

use alloc::vec::Vec;
use core::fmt;
use core::net::{IpAddr, Ipv4Addr, Ipv6Addr};

/// Length of the fixed IKE header (§3.1).
pub const HEADER_LEN: usize = 28;
/// Length of the generic payload header (§3.2).
pub const GENERIC_LEN: usize = 4;
/// More payloads than this in one message (or one SK payload) is refused.
pub const MAX_PAYLOADS: usize = 64;

/// Exchange types (§3.1).
pub mod exchange {
    pub const IKE_SA_INIT: u8 = 34;
    pub const IKE_AUTH: u8 = 35;
    pub const CREATE_CHILD_SA: u8 = 36;
    pub const INFORMATIONAL: u8 = 37;
}

/// Header flags (§3.1).
pub mod flags {
    /// Sent by the original initiator of the IKE SA.
    pub const INITIATOR: u8 = 0x08;
    pub const VERSION: u8 = 0x10;
    /// This message is a response.
    pub const RESPONSE: u8 = 0x20;
}

/// Payload type numbers (§3.2).
pub mod payload_type {
    pub const NONE: u8 = 0;
    pub const SA: u8 = 33;
    pub const KE: u8 = 34;
    pub const IDI: u8 = 35;
    pub const IDR: u8 = 36;
    pub const CERT: u8 = 37;
    pub const CERTREQ: u8 = 38;
    pub const AUTH: u8 = 39;
    pub const NONCE: u8 = 40;
    pub const NOTIFY: u8 = 41;
    pub const DELETE: u8 = 42;
    pub const VENDOR: u8 = 43;
    pub const TSI: u8 = 44;
    pub const TSR: u8 = 45;
    pub const SK: u8 = 46;
}

/// Protocol IDs (§3.3.1).
pub mod protocol {
    pub const IKE: u8 = 1;
    pub const AH: u8 = 2;
    pub const ESP: u8 = 3;
}

/// Transform types and the IDs used here (§3.3.2, IANA "IKEv2 Parameters").
pub mod transform {
    pub const ENCR: u8 = 1;
    pub const PRF: u8 = 2;
    pub const INTEG: u8 = 3;
    pub const DH: u8 = 4;
    pub const ESN: u8 = 5;
    /// ENCR_AES_GCM_16 (RFC 5282 §7, RFC 4106 §8.1).
    pub const ENCR_AES_GCM_16: u16 = 20;
    pub const PRF_HMAC_SHA2_256: u16 = 5;
    pub const PRF_HMAC_SHA2_384: u16 = 6;
    pub const INTEG_NONE: u16 = 0;
    /// NONE: no Diffie-Hellman (§3.3.2), offered next to a group when PFS is optional.
    pub const DH_NONE: u16 = 0;
    pub const DH_MODP_2048: u16 = 14;
    pub const DH_ECP_256: u16 = 19;
    pub const DH_CURVE25519: u16 = 31;
    pub const ESN_NO: u16 = 0;
    pub const ESN_YES: u16 = 1;
    /// Attribute type Key Length, always TV format (§3.3.5).
    pub const ATTR_KEY_LENGTH: u16 = 14;
}

/// Notify message types (§3.10.1).
pub mod notify {
    pub const UNSUPPORTED_CRITICAL_PAYLOAD: u16 = 1;
    pub const INVALID_IKE_SPI: u16 = 4;
    pub const INVALID_MAJOR_VERSION: u16 = 5;
    pub const INVALID_SYNTAX: u16 = 7;
    pub const INVALID_MESSAGE_ID: u16 = 9;
    pub const INVALID_SPI: u16 = 11;
    pub const NO_PROPOSAL_CHOSEN: u16 = 14;
    pub const INVALID_KE_PAYLOAD: u16 = 17;
    pub const AUTHENTICATION_FAILED: u16 = 24;
    pub const NO_ADDITIONAL_SAS: u16 = 35;
    pub const TS_UNACCEPTABLE: u16 = 38;
    pub const TEMPORARY_FAILURE: u16 = 43;
    pub const CHILD_SA_NOT_FOUND: u16 = 44;
    pub const INITIAL_CONTACT: u16 = 16384;
    pub const NAT_DETECTION_SOURCE_IP: u16 = 16388;
    pub const NAT_DETECTION_DESTINATION_IP: u16 = 16389;
    pub const COOKIE: u16 = 16390;
    pub const USE_TRANSPORT_MODE: u16 = 16391;
    pub const REKEY_SA: u16 = 16393;
    /// Types below this are errors (§3.10.1).
    pub const FIRST_STATUS: u16 = 16384;
    /// First status type of the private-use range 40960-65535 (§3.10.1), for
    /// extensions such as the key server's (`vnfs/keyserver`).
    pub const FIRST_PRIVATE_STATUS: u16 = 40960;
}

/// Identification types (§3.5).
pub mod id_type {
    pub const IPV4_ADDR: u8 = 1;
    pub const FQDN: u8 = 2;
    pub const RFC822_ADDR: u8 = 3;
    pub const IPV6_ADDR: u8 = 5;
    pub const KEY_ID: u8 = 11;
}

/// Authentication methods (§3.8).
pub mod auth_method {
    pub const SHARED_KEY_MIC: u8 = 2;
}

/// Traffic selector types (§3.13.1).
pub mod ts_type {
    pub const IPV4_ADDR_RANGE: u8 = 7;
    pub const IPV6_ADDR_RANGE: u8 = 8;
}

/// Why a message or payload was refused.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ParseError {
    /// Fewer bytes than the IKE header.
    ShortHeader,
    /// The header's length field differs from the datagram length.
    LengthMismatch { header: u32, datagram: usize },
    /// Major version other than 2 (§2.5: answer INVALID_MAJOR_VERSION).
    MajorVersion(u8),
    /// A payload's length field is below 4 or runs past its container.
    PayloadLength { payload: u8 },
    /// Unknown payload with the critical bit set (§2.5).
    UnsupportedCritical(u8),
    /// A payload body is inconsistent; `what` says which field.
    Malformed { payload: u8, what: &'static str },
    /// The Encrypted payload is not the last one, or appears inside itself.
    MisplacedSk,
    /// More than [`MAX_PAYLOADS`] payloads.
    TooManyPayloads,
}

impl fmt::Display for ParseError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ParseError::ShortHeader => f.write_str("shorter than the 28-byte IKE header"),
            ParseError::LengthMismatch { header, datagram } => {
                write!(f, "header length {header} but datagram of {datagram} bytes")
            }
            ParseError::MajorVersion(v) => write!(f, "unsupported IKE major version {v}"),
            ParseError::PayloadLength { payload } => {
                write!(f, "payload type {payload}: bad length")
            }
            ParseError::UnsupportedCritical(t) => {
                write!(f, "unsupported critical payload type {t}")
            }
            ParseError::Malformed { payload, what } => {
                write!(f, "payload type {payload}: malformed {what}")
            }
            ParseError::MisplacedSk => f.write_str("encrypted payload not last"),
            ParseError::TooManyPayloads => write!(f, "more than {MAX_PAYLOADS} payloads"),
        }
    }
}

impl core::error::Error for ParseError {}

/// The IKE header (§3.1). `length` is filled in by the encoder.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Header {
    pub spi_i: u64,
    pub spi_r: u64,
    pub next_payload: u8,
    pub major: u8,
    pub minor: u8,
    pub exchange: u8,
    pub flags: u8,
    pub message_id: u32,
    pub length: u32,
}

impl Header {
    pub fn new(spi_i: u64, spi_r: u64, exchange: u8, flags: u8, message_id: u32) -> Self {
        Header {
            spi_i,
            spi_r,
            next_payload: 0,
            major: 2,
            minor: 0,
            exchange,
            flags,
            message_id,
            length: 0,
        }
    }

    pub fn is_response(&self) -> bool {
        self.flags & flags::RESPONSE != 0
    }

    pub fn from_initiator(&self) -> bool {
        self.flags & flags::INITIATOR != 0
    }

    /// Parses the fixed header only (no length cross-check).
    pub fn parse(b: &[u8]) -> Result<Header, ParseError> {
        let h = b.get(..HEADER_LEN).ok_or(ParseError::ShortHeader)?;
        let mut r = Reader::new(h, 0);
        let spi_i = r.u64().ok_or(ParseError::ShortHeader)?;
        let spi_r = r.u64().ok_or(ParseError::ShortHeader)?;
        let next_payload = r.u8().ok_or(ParseError::ShortHeader)?;
        let ver = r.u8().ok_or(ParseError::ShortHeader)?;
        let exchange = r.u8().ok_or(ParseError::ShortHeader)?;
        let fl = r.u8().ok_or(ParseError::ShortHeader)?;
        let message_id = r.u32().ok_or(ParseError::ShortHeader)?;
        let length = r.u32().ok_or(ParseError::ShortHeader)?;
        let major = ver >> 4;
        if major != 2 {
            return Err(ParseError::MajorVersion(major));
        }
        Ok(Header {
            spi_i,
            spi_r,
            next_payload,
            major,
            minor: ver & 0x0f,
            exchange,
            flags: fl,
            message_id,
            length,
        })
    }

    pub fn write(&self, out: &mut Vec<u8>) {
        out.extend_from_slice(&self.spi_i.to_be_bytes());
        out.extend_from_slice(&self.spi_r.to_be_bytes());
        out.push(self.next_payload);
        out.push((self.major << 4) | (self.minor & 0x0f));
        out.push(self.exchange);
        out.push(self.flags);
        out.extend_from_slice(&self.message_id.to_be_bytes());
        out.extend_from_slice(&self.length.to_be_bytes());
    }
}

/// A transform attribute (§3.3.5): TV (short, 2-byte value) or TLV.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Attribute {
    Short { kind: u16, value: u16 },
    Long { kind: u16, value: Vec<u8> },
}

/// One transform (§3.3.2).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Transform {
    pub kind: u8,
    pub id: u16,
    pub attributes: Vec<Attribute>,
}

impl Transform {
    pub fn new(kind: u8, id: u16) -> Self {
        Transform {
            kind,
            id,
            attributes: Vec::new(),
        }
    }

    pub fn with_key_len(kind: u8, id: u16, bits: u16) -> Self {
        Transform {
            kind,
            id,
            attributes: alloc::vec![Attribute::Short {
                kind: transform::ATTR_KEY_LENGTH,
                value: bits,
            }],
        }
    }

    /// The Key Length attribute, if present and nothing else is.
    pub fn key_len(&self) -> Option<u16> {
        match self.attributes.as_slice() {
            [Attribute::Short {
                kind: transform::ATTR_KEY_LENGTH,
                value,
            }] => Some(*value),
            _ => None,
        }
    }
}

/// One proposal (§3.3.1).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Proposal {
    pub num: u8,
    pub protocol: u8,
    pub spi: Vec<u8>,
    pub transforms: Vec<Transform>,
}

/// KE payload (§3.4).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct KeyExchange {
    pub group: u16,
    pub data: Vec<u8>,
}

/// IDi / IDr payload (§3.5).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Identification {
    pub id_type: u8,
    pub data: Vec<u8>,
}

impl Identification {
    pub fn fqdn(name: &str) -> Self {
        Identification {
            id_type: id_type::FQDN,
            data: name.as_bytes().to_vec(),
        }
    }

    pub fn addr(a: IpAddr) -> Self {
        match a {
            IpAddr::V4(v) => Identification {
                id_type: id_type::IPV4_ADDR,
                data: v.octets().to_vec(),
            },
            IpAddr::V6(v) => Identification {
                id_type: id_type::IPV6_ADDR,
                data: v.octets().to_vec(),
            },
        }
    }

    /// "RestOfIDPayload" of §2.15: ID type, three reserved bytes, the data.
    pub fn body(&self) -> Vec<u8> {
        let mut v = Vec::with_capacity(4 + self.data.len());
        v.extend_from_slice(&[self.id_type, 0, 0, 0]);
        v.extend_from_slice(&self.data);
        v
    }
}

/// AUTH payload (§3.8).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Auth {
    pub method: u8,
    pub data: Vec<u8>,
}

/// Notify payload (§3.10).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Notify {
    pub protocol: u8,
    pub spi: Vec<u8>,
    pub kind: u16,
    pub data: Vec<u8>,
}

impl Notify {
    /// A notify about the IKE SA (protocol 0, no SPI).
    pub fn new(kind: u16, data: Vec<u8>) -> Self {
        Notify {
            protocol: 0,
            spi: Vec::new(),
            kind,
            data,
        }
    }

    pub fn is_error(&self) -> bool {
        self.kind < notify::FIRST_STATUS
    }
}

/// Delete payload (§3.11). IKE: no SPIs; ESP/AH: 4-byte SPIs.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Delete {
    pub protocol: u8,
    pub spis: Vec<u32>,
}

/// One traffic selector (§3.13.1): an address range, a protocol (0 = any) and a port
/// range. Both addresses are of the same family.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct TrafficSelector {
    pub ip_proto: u8,
    pub start_port: u16,
    pub end_port: u16,
    pub start_addr: IpAddr,
    pub end_addr: IpAddr,
}

/// The Encrypted payload as received: the type of the first inner payload and where
/// its body (IV ‖ ciphertext ‖ ICV) starts in the message.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SkRef {
    pub first_payload: u8,
    /// Offset of SK's generic header in the message: the AAD is everything before
    /// `offset + 4` (RFC 5282 §5.1).
    pub offset: usize,
}

/// A payload. `Unknown` keeps non-critical payloads this codec does not know.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Payload {
    Sa(Vec<Proposal>),
    Ke(KeyExchange),
    IdI(Identification),
    IdR(Identification),
    Auth(Auth),
    Nonce(Vec<u8>),
    Notify(Notify),
    Delete(Delete),
    Vendor(Vec<u8>),
    TsI(Vec<TrafficSelector>),
    TsR(Vec<TrafficSelector>),
    Unknown {
        kind: u8,
        critical: bool,
        body: Vec<u8>,
    },
}

impl Payload {
    pub fn kind(&self) -> u8 {
        use payload_type as t;
        match self {
            Payload::Sa(_) => t::SA,
            Payload::Ke(_) => t::KE,
            Payload::IdI(_) => t::IDI,
            Payload::IdR(_) => t::IDR,
            Payload::Auth(_) => t::AUTH,
            Payload::Nonce(_) => t::NONCE,
            Payload::Notify(_) => t::NOTIFY,
            Payload::Delete(_) => t::DELETE,
            Payload::Vendor(_) => t::VENDOR,
            Payload::TsI(_) => t::TSI,
            Payload::TsR(_) => t::TSR,
            Payload::Unknown { kind, .. } => *kind,
        }
    }

    fn critical(&self) -> bool {
        matches!(self, Payload::Unknown { critical: true, .. })
    }

    fn write_body(&self, out: &mut Vec<u8>) {
        match self {
            Payload::Sa(props) => {
                let n = props.len();
                for (i, p) in props.iter().enumerate() {
                    write_proposal(p, i + 1 == n, out);
                }
            }
            Payload::Ke(ke) => {
                out.extend_from_slice(&ke.group.to_be_bytes());
                out.extend_from_slice(&[0, 0]);
                out.extend_from_slice(&ke.data);
            }
            Payload::IdI(id) | Payload::IdR(id) => out.extend_from_slice(&id.body()),
            Payload::Auth(a) => {
                out.extend_from_slice(&[a.method, 0, 0, 0]);
                out.extend_from_slice(&a.data);
            }
            Payload::Nonce(n) | Payload::Vendor(n) => out.extend_from_slice(n),
            Payload::Notify(n) => {
                out.push(n.protocol);
                out.push(n.spi.len() as u8);
                out.extend_from_slice(&n.kind.to_be_bytes());
                out.extend_from_slice(&n.spi);
                out.extend_from_slice(&n.data);
            }
            Payload::Delete(d) => {
                out.push(d.protocol);
                out.push(if d.protocol == protocol::IKE { 0 } else { 4 });
                out.extend_from_slice(&(d.spis.len() as u16).to_be_bytes());
                for s in &d.spis {
                    out.extend_from_slice(&s.to_be_bytes());
                }
            }
            Payload::TsI(ts) | Payload::TsR(ts) => {
                out.extend_from_slice(&[ts.len() as u8, 0, 0, 0]);
                for t in ts {
                    write_ts(t, out);
                }
            }
            Payload::Unknown { body, .. } => out.extend_from_slice(body),
        }
    }
}

fn write_proposal(p: &Proposal, last: bool, out: &mut Vec<u8>) {
    let start = out.len();
    out.extend_from_slice(&[if last { 0 } else { 2 }, 0, 0, 0]);
    out.push(p.num);
    out.push(p.protocol);
    out.push(p.spi.len() as u8);
    out.push(p.transforms.len() as u8);
    out.extend_from_slice(&p.spi);
    let n = p.transforms.len();
    for (i, t) in p.transforms.iter().enumerate() {
        let ts = out.len();
        out.extend_from_slice(&[if i + 1 == n { 0 } else { 3 }, 0, 0, 0]);
        out.push(t.kind);
        out.push(0);
        out.extend_from_slice(&t.id.to_be_bytes());
        for a in &t.attributes {
            match a {
                Attribute::Short { kind, value } => {
                    out.extend_from_slice(&(kind | 0x8000).to_be_bytes());
                    out.extend_from_slice(&value.to_be_bytes());
                }
                Attribute::Long { kind, value } => {
                    out.extend_from_slice(&(kind & 0x7fff).to_be_bytes());
                    out.extend_from_slice(&(value.len() as u16).to_be_bytes());
                    out.extend_from_slice(value);
                }
            }
        }
        patch_len(out, ts);
    }
    patch_len(out, start);
}

fn write_ts(t: &TrafficSelector, out: &mut Vec<u8>) {
    let (ty, len) = if t.start_addr.is_ipv4() {
        (ts_type::IPV4_ADDR_RANGE, 16u16)
    } else {
        (ts_type::IPV6_ADDR_RANGE, 40u16)
    };
    out.push(ty);
    out.push(t.ip_proto);
    out.extend_from_slice(&len.to_be_bytes());
    out.extend_from_slice(&t.start_port.to_be_bytes());
    out.extend_from_slice(&t.end_port.to_be_bytes());
    for a in [t.start_addr, t.end_addr] {
        match a {
            IpAddr::V4(v) => out.extend_from_slice(&v.octets()),
            IpAddr::V6(v) => out.extend_from_slice(&v.octets()),
        }
    }
}

/// Writes the length of the structure starting at `start` (to the end of `out`) into
/// its 16-bit length field at `start + 2`.
fn patch_len(out: &mut [u8], start: usize) {
    let len = out.len().saturating_sub(start);
    let l = u16::try_from(len).unwrap_or(u16::MAX).to_be_bytes();
    if let Some(d) = out.get_mut(start + 2..start + 4) {
        d.copy_from_slice(&l);
    }
}

/// Appends a payload chain (generic headers with next-payload links) and returns the
/// type of the first payload (0 when empty). `last_next` is the next-payload value of
/// the final payload (0, or SK's type when an Encrypted payload follows).
pub fn write_chain(payloads: &[Payload], last_next: u8, out: &mut Vec<u8>) -> u8 {
    for (i, p) in payloads.iter().enumerate() {
        let next = payloads.get(i + 1).map_or(last_next, Payload::kind);
        let start = out.len();
        out.push(next);
        out.push(if p.critical() { 0x80 } else { 0 });
        out.extend_from_slice(&[0, 0]);
        p.write_body(out);
        patch_len(out, start);
    }
    payloads.first().map_or(last_next, Payload::kind)
}

/// Encodes a message without an Encrypted payload; sets `next_payload` and `length`.
pub fn encode(header: &Header, payloads: &[Payload]) -> Vec<u8> {
    let mut out = Vec::with_capacity(256);
    let mut h = *header;
    h.write(&mut out);
    h.next_payload = write_chain(payloads, payload_type::NONE, &mut out);
    h.length = out.len() as u32;
    let mut hb = Vec::with_capacity(HEADER_LEN);
    h.write(&mut hb);
    if let Some(d) = out.get_mut(..HEADER_LEN) {
        d.copy_from_slice(&hb);
    }
    out
}

/// A parsed message: header, the clear payloads, and the Encrypted payload if any.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Message {
    pub header: Header,
    pub payloads: Vec<Payload>,
    pub sk: Option<SkRef>,
}

impl Message {
    /// Parses a whole datagram (§3.1, §3.2).
    pub fn parse(b: &[u8]) -> Result<Message, ParseError> {
        let header = Header::parse(b)?;
        if header.length as usize != b.len() {
            return Err(ParseError::LengthMismatch {
                header: header.length,
                datagram: b.len(),
            });
        }
        let mut payloads = Vec::new();
        let sk = parse_chain(header.next_payload, b, HEADER_LEN, true, &mut payloads)?;
        Ok(Message {
            header,
            payloads,
            sk,
        })
    }

    pub fn notify(&self, kind: u16) -> Option<&Notify> {
        find_notify(&self.payloads, kind)
    }
}

/// The first notify of this type among `payloads`.
pub fn find_notify(payloads: &[Payload], kind: u16) -> Option<&Notify> {
    payloads.iter().find_map(|p| match p {
        Payload::Notify(n) if n.kind == kind => Some(n),
        _ => None,
    })
}

/// Parses a payload chain in `b[start..]` beginning with type `first`. With
/// `allow_sk`, an Encrypted payload ends the chain (it must extend to the end of `b`)
/// and is returned; inside SK, another SK is an error.
pub fn parse_chain(
    first: u8,
    b: &[u8],
    start: usize,
    allow_sk: bool,
    out: &mut Vec<Payload>,
) -> Result<Option<SkRef>, ParseError> {
    let mut next = first;
    let mut pos = start;
    while next != payload_type::NONE {
        if out.len() >= MAX_PAYLOADS {
            return Err(ParseError::TooManyPayloads);
        }
        let kind = next;
        let gh = b
            .get(pos..pos + GENERIC_LEN)
            .ok_or(ParseError::PayloadLength { payload: kind })?;
        let (n, crit, len) = match gh {
            [n, c, l0, l1] => (
                *n,
                *c & 0x80 != 0,
                usize::from(u16::from_be_bytes([*l0, *l1])),
            ),
            _ => return Err(ParseError::PayloadLength { payload: kind }),
        };
        if len < GENERIC_LEN {
            return Err(ParseError::PayloadLength { payload: kind });
        }
        let body = b
            .get(pos + GENERIC_LEN..pos + len)
            .ok_or(ParseError::PayloadLength { payload: kind })?;
        if kind == payload_type::SK {
            if !allow_sk || pos + len != b.len() {
                return Err(ParseError::MisplacedSk);
            }
            return Ok(Some(SkRef {
                first_payload: n,
                offset: pos,
            }));
        }
        out.push(parse_body(kind, crit, body)?);
        pos += len;
        next = n;
    }
    if pos != b.len() {
        return Err(ParseError::Malformed {
            payload: 0,
            what: "bytes after the last payload",
        });
    }
    Ok(None)
}

fn parse_body(kind: u8, critical: bool, body: &[u8]) -> Result<Payload, ParseError> {
    use payload_type as t;
    let bad = |what| ParseError::Malformed {
        payload: kind,
        what,
    };
    let mut r = Reader::new(body, kind);
    Ok(match kind {
        t::SA => Payload::Sa(parse_sa(body)?),
        t::KE => {
            let group = r.u16().ok_or(bad("KE header"))?;
            r.skip(2).ok_or(bad("KE header"))?;
            let data = r.rest();
            if data.is_empty() {
                return Err(bad("empty KE data"));
            }
            Payload::Ke(KeyExchange {
                group,
                data: data.to_vec(),
            })
        }
        t::IDI | t::IDR => {
            let id_type = r.u8().ok_or(bad("ID header"))?;
            r.skip(3).ok_or(bad("ID header"))?;
            let data = r.rest();
            if data.is_empty() {
                return Err(bad("empty identification"));
            }
            let id = Identification {
                id_type,
                data: data.to_vec(),
            };
            if kind == t::IDI {
                Payload::IdI(id)
            } else {
                Payload::IdR(id)
            }
        }
        t::AUTH => {
            let method = r.u8().ok_or(bad("AUTH header"))?;
            r.skip(3).ok_or(bad("AUTH header"))?;
            let data = r.rest();
            if data.is_empty() {
                return Err(bad("empty AUTH data"));
            }
            Payload::Auth(Auth {
                method,
                data: data.to_vec(),
            })
        }
        t::NONCE => {
            // §3.9: between 16 and 256 octets.
            if !(16..=256).contains(&body.len()) {
                return Err(bad("nonce length"));
            }
            Payload::Nonce(body.to_vec())
        }
        t::NOTIFY => {
            let protocol = r.u8().ok_or(bad("notify header"))?;
            let spi_size = r.u8().ok_or(bad("notify header"))?;
            let nkind = r.u16().ok_or(bad("notify header"))?;
            let spi = r.take(usize::from(spi_size)).ok_or(bad("notify SPI"))?;
            Payload::Notify(Notify {
                protocol,
                spi: spi.to_vec(),
                kind: nkind,
                data: r.rest().to_vec(),
            })
        }
        t::DELETE => {
            let protocol = r.u8().ok_or(bad("delete header"))?;
            let spi_size = r.u8().ok_or(bad("delete header"))?;
            let count = usize::from(r.u16().ok_or(bad("delete header"))?);
            let rest = r.rest();
            let spis = match (protocol, spi_size) {
                (protocol::IKE, 0) if count == 0 && rest.is_empty() => Vec::new(),
                (protocol::AH | protocol::ESP, 4) if rest.len() == 4 * count && count > 0 => rest
                    .chunks_exact(4)
                    .map(|c| u32::from_be_bytes([c[0], c[1], c[2], c[3]]))
                    .collect(),
                _ => return Err(bad("delete protocol / SPI size / count")),
            };
            Payload::Delete(Delete { protocol, spis })
        }
        t::VENDOR => Payload::Vendor(body.to_vec()),
        t::TSI | t::TSR => {
            let n = usize::from(r.u8().ok_or(bad("TS header"))?);
            r.skip(3).ok_or(bad("TS header"))?;
            if n == 0 {
                return Err(bad("no traffic selectors"));
            }
            let mut ts = Vec::with_capacity(n.min(16));
            for _ in 0..n {
                ts.push(parse_ts(&mut r).ok_or(bad("traffic selector"))?);
            }
            if !r.is_empty() {
                return Err(bad("bytes after the traffic selectors"));
            }
            if kind == t::TSI {
                Payload::TsI(ts)
            } else {
                Payload::TsR(ts)
            }
        }
        _ if critical => return Err(ParseError::UnsupportedCritical(kind)),
        _ => Payload::Unknown {
            kind,
            critical,
            body: body.to_vec(),
        },
    })
}

fn parse_ts(r: &mut Reader<'_>) -> Option<TrafficSelector> {
    let ty = r.u8()?;
    let ip_proto = r.u8()?;
    let len = r.u16()?;
    let start_port = r.u16()?;
    let end_port = r.u16()?;
    let (start_addr, end_addr) = match (ty, len) {
        (ts_type::IPV4_ADDR_RANGE, 16) => {
            let a: [u8; 4] = r.take(4)?.try_into().ok()?;
            let b: [u8; 4] = r.take(4)?.try_into().ok()?;
            (IpAddr::V4(Ipv4Addr::from(a)), IpAddr::V4(Ipv4Addr::from(b)))
        }
        (ts_type::IPV6_ADDR_RANGE, 40) => {
            let a: [u8; 16] = r.take(16)?.try_into().ok()?;
            let b: [u8; 16] = r.take(16)?.try_into().ok()?;
            (IpAddr::V6(Ipv6Addr::from(a)), IpAddr::V6(Ipv6Addr::from(b)))
        }
        _ => return None,
    };
    Some(TrafficSelector {
        ip_proto,
        start_port,
        end_port,
        start_addr,
        end_addr,
    })
}

fn parse_sa(body: &[u8]) -> Result<Vec<Proposal>, ParseError> {
    let bad = |what| ParseError::Malformed {
        payload: payload_type::SA,
        what,
    };
    let mut props = Vec::new();
    let mut r = Reader::new(body, payload_type::SA);
    loop {
        if props.len() >= MAX_PAYLOADS {
            return Err(bad("too many proposals"));
        }
        let last = r.u8().ok_or(bad("proposal header"))?;
        r.skip(1).ok_or(bad("proposal header"))?;
        let len = usize::from(r.u16().ok_or(bad("proposal header"))?);
        let pb = r
            .take(len.checked_sub(4).ok_or(bad("proposal length"))?)
            .ok_or(bad("proposal length"))?;
        let mut p = Reader::new(pb, payload_type::SA);
        let num = p.u8().ok_or(bad("proposal header"))?;
        let protocol = p.u8().ok_or(bad("proposal header"))?;
        let spi_size = usize::from(p.u8().ok_or(bad("proposal header"))?);
        let ntrans = usize::from(p.u8().ok_or(bad("proposal header"))?);
        let spi = p.take(spi_size).ok_or(bad("proposal SPI"))?.to_vec();
        let mut transforms = Vec::with_capacity(ntrans.min(16));
        for i in 0..ntrans {
            let tlast = p.u8().ok_or(bad("transform header"))?;
            if tlast != if i + 1 == ntrans { 0 } else { 3 } {
                return Err(bad("transform last-substructure flag"));
            }
            p.skip(1).ok_or(bad("transform header"))?;
            let tlen = usize::from(p.u16().ok_or(bad("transform header"))?);
            let tb = p
                .take(tlen.checked_sub(4).ok_or(bad("transform length"))?)
                .ok_or(bad("transform length"))?;
            let mut t = Reader::new(tb, payload_type::SA);
            let kind = t.u8().ok_or(bad("transform header"))?;
            t.skip(1).ok_or(bad("transform header"))?;
            let id = t.u16().ok_or(bad("transform header"))?;
            let mut attributes = Vec::new();
            while !t.is_empty() {
                if attributes.len() >= 16 {
                    return Err(bad("too many attributes"));
                }
                let ak = t.u16().ok_or(bad("attribute"))?;
                if ak & 0x8000 != 0 {
                    let value = t.u16().ok_or(bad("attribute"))?;
                    attributes.push(Attribute::Short {
                        kind: ak & 0x7fff,
                        value,
                    });
                } else {
                    let al = usize::from(t.u16().ok_or(bad("attribute"))?);
                    let value = t.take(al).ok_or(bad("attribute length"))?.to_vec();
                    attributes.push(Attribute::Long { kind: ak, value });
                }
            }
            transforms.push(Transform {
                kind,
                id,
                attributes,
            });
        }
        if !p.is_empty() {
            return Err(bad("bytes after the transforms"));
        }
        props.push(Proposal {
            num,
            protocol,
            spi,
            transforms,
        });
        match (last, r.is_empty()) {
            (0, true) => return Ok(props),
            (2, false) => {}
            _ => return Err(bad("proposal last-substructure flag")),
        }
    }
}

/// Bounds-checked big-endian reader.
struct Reader<'a> {
    b: &'a [u8],
}

impl<'a> Reader<'a> {
    fn new(b: &'a [u8], _kind: u8) -> Self {
        Reader { b }
    }

    fn take(&mut self, n: usize) -> Option<&'a [u8]> {
        if n > self.b.len() {
            return None;
        }
        let (h, t) = self.b.split_at(n);
        self.b = t;
        Some(h)
    }

    fn skip(&mut self, n: usize) -> Option<()> {
        self.take(n).map(|_| ())
    }

    fn u8(&mut self) -> Option<u8> {
        self.take(1).and_then(|s| s.first().copied())
    }

    fn u16(&mut self) -> Option<u16> {
        let s = self.take(2)?;
        Some(u16::from_be_bytes(s.try_into().ok()?))
    }

    fn u32(&mut self) -> Option<u32> {
        let s = self.take(4)?;
        Some(u32::from_be_bytes(s.try_into().ok()?))
    }

    fn u64(&mut self) -> Option<u64> {
        let s = self.take(8)?;
        Some(u64::from_be_bytes(s.try_into().ok()?))
    }

    fn is_empty(&self) -> bool {
        self.b.is_empty()
    }

    fn rest(&mut self) -> &'a [u8] {
        core::mem::take(&mut self.b)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use alloc::vec;

    fn sample() -> Vec<Payload> {
        vec![
            Payload::Notify(Notify::new(notify::COOKIE, vec![1, 2, 3])),
            Payload::Sa(vec![
                Proposal {
                    num: 1,
                    protocol: protocol::IKE,
                    spi: vec![],
                    transforms: vec![
                        Transform::with_key_len(transform::ENCR, transform::ENCR_AES_GCM_16, 256),
                        Transform::new(transform::PRF, transform::PRF_HMAC_SHA2_256),
                        Transform::new(transform::DH, transform::DH_CURVE25519),
                    ],
                },
                Proposal {
                    num: 2,
                    protocol: protocol::ESP,
                    spi: vec![1, 2, 3, 4],
                    transforms: vec![Transform {
                        kind: 9,
                        id: 1,
                        attributes: vec![Attribute::Long {
                            kind: 77,
                            value: vec![5; 3],
                        }],
                    }],
                },
            ]),
            Payload::Ke(KeyExchange {
                group: 31,
                data: vec![9; 32],
            }),
            Payload::Nonce(vec![7; 32]),
            Payload::IdI(Identification::fqdn("a.example")),
            Payload::Auth(Auth {
                method: 2,
                data: vec![1; 32],
            }),
            Payload::Delete(Delete {
                protocol: protocol::ESP,
                spis: vec![0x1000, 0x2000],
            }),
            Payload::Delete(Delete {
                protocol: protocol::IKE,
                spis: vec![],
            }),
            Payload::TsI(vec![TrafficSelector {
                ip_proto: 17,
                start_port: 0,
                end_port: 65535,
                start_addr: IpAddr::V4(Ipv4Addr::new(10, 0, 0, 0)),
                end_addr: IpAddr::V4(Ipv4Addr::new(10, 0, 0, 255)),
            }]),
            Payload::TsR(vec![TrafficSelector {
                ip_proto: 0,
                start_port: 0,
                end_port: 65535,
                start_addr: IpAddr::V6(Ipv6Addr::UNSPECIFIED),
                end_addr: IpAddr::V6(Ipv6Addr::from([0xff; 16])),
            }]),
            Payload::Vendor(vec![1, 2]),
            Payload::Unknown {
                kind: 200,
                critical: false,
                body: vec![3; 5],
            },
        ]
    }

    #[test]
    fn round_trip() {
        let h = Header::new(0x1122, 0x3344, exchange::IKE_SA_INIT, flags::INITIATOR, 0);
        let bytes = encode(&h, &sample());
        let m = Message::parse(&bytes).unwrap();
        assert_eq!(m.payloads, sample());
        assert_eq!(m.header.spi_i, 0x1122);
        assert_eq!(m.header.length as usize, bytes.len());
        assert!(m.sk.is_none());
    }

    #[test]
    fn every_truncation_is_an_error() {
        let h = Header::new(1, 2, exchange::IKE_SA_INIT, 0, 0);
        let bytes = encode(&h, &sample());
        for n in 0..bytes.len() {
            let mut t = bytes[..n].to_vec();
            assert!(Message::parse(&t).is_err(), "prefix {n}");
            // Even with the header length patched to match.
            if n >= HEADER_LEN {
                t[24..28].copy_from_slice(&(n as u32).to_be_bytes());
                assert!(Message::parse(&t).is_err(), "patched prefix {n}");
            }
        }
    }

    #[test]
    fn strict_checks() {
        let h = Header::new(1, 2, exchange::IKE_SA_INIT, 0, 0);
        let mut crit = sample();
        crit.push(Payload::Unknown {
            kind: 201,
            critical: true,
            body: vec![],
        });
        let b = encode(&h, &crit);
        assert_eq!(
            Message::parse(&b),
            Err(ParseError::UnsupportedCritical(201))
        );
        let mut b = encode(&h, &sample());
        b[17] = 0x30;
        assert_eq!(Message::parse(&b), Err(ParseError::MajorVersion(3)));
        let mut b = encode(&h, &sample());
        b.push(0);
        assert!(matches!(
            Message::parse(&b),
            Err(ParseError::LengthMismatch { .. })
        ));
        // A short nonce.
        let b = encode(&h, &[Payload::Nonce(vec![1; 8])]);
        assert!(matches!(
            Message::parse(&b),
            Err(ParseError::Malformed { payload: 40, .. })
        ));
    }
}
