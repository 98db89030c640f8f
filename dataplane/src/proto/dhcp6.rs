//! DHCPv6 messages (RFC 8415): the client/server message format (§8: msg-type,
//! 24-bit transaction-id, options), the relay agent/server format (§9: msg-type,
//! hop-count, link-address, peer-address, options), the option framing (§21.1:
//! 16-bit code and length, options nested inside IA and address options) and the
//! options a server for IA_NA and IA_PD needs: Client and Server Identifier with their
//! DUIDs (§21.2, §21.3, §11: DUID-LLT, DUID-EN, DUID-LL, DUID-UUID), IA_NA (§21.4)
//! with IA Address (§21.6), IA_PD (§21.21) with IA Prefix (§21.22), Option Request
//! (§21.7), Preference (§21.8), Elapsed Time (§21.9), Relay Message (§21.10), Status
//! Code (§21.13), Rapid Commit (§21.14), Interface-Id (§21.18), Reconfigure Accept
//! (§21.20), SOL_MAX_RT (§21.24) and DNS Recursive Name Server (RFC 3646 §3).
//! Other options are kept as `(code, value)`.
//!
//! [`Packet`] is a zero-copy checked view: `new_checked` validates the header length
//! and the framing of the top-level options once; [`Options`] then walks them without
//! failing. [`Repr::parse`] decodes a client/server message ([`Message`]) or a relay
//! message ([`RelayMessage`]) and checks the length of every option it knows and the
//! framing of the options nested in IA_NA, IA_PD, IA Address and IA Prefix (each
//! within its parent). [`Repr::emit`] appends a message to a `Vec` (control path) and
//! refuses what the parser would refuse, so that what is emitted parses back to the
//! same value. Errors are [`Error`]; nothing panics on any input.
//!
//! ```text
//! client/server (§8):  | msg-type | transaction-id (3) | options ...
//! relay (§9):          | msg-type | hop-count | link-address (16) | peer-address (16) | options ...
//! option (§21.1):      | option-code (2) | option-len (2) | option-data (option-len)
//! ```

use super::bytes::{be16, be32};
use super::{Error, Result};
use alloc::vec::Vec;
use core::fmt;
use core::net::Ipv6Addr;

/// Length of the client/server header (msg-type and transaction-id).
pub const HEADER_LEN: usize = 4;
/// Length of the relay header (msg-type, hop-count, link- and peer-address).
pub const RELAY_HEADER_LEN: usize = 34;
/// UDP port clients listen on (§7.2).
pub const CLIENT_PORT: u16 = 546;
/// UDP port servers and relay agents listen on (§7.2).
pub const SERVER_PORT: u16 = 547;
/// All_DHCP_Relay_Agents_and_Servers, `ff02::1:2` (§7.1).
pub const ALL_DHCP_RELAY_AGENTS_AND_SERVERS: Ipv6Addr = Ipv6Addr::new(0xff02, 0, 0, 0, 0, 0, 1, 2);
/// HOP_COUNT_LIMIT (§7.6).
pub const HOP_COUNT_LIMIT: u8 = 8;
/// Longest DUID, with its type code (§11.1: at most 128 octets after the type).
pub const MAX_DUID_LEN: usize = 130;
/// Lifetime value meaning "infinity" (§7.7).
pub const INFINITY: u32 = u32::MAX;

/// Option codes (RFC 8415 §21, RFC 3646).
pub mod opt {
    /// Client Identifier (§21.2).
    pub const CLIENTID: u16 = 1;
    /// Server Identifier (§21.3).
    pub const SERVERID: u16 = 2;
    /// Identity Association for Non-temporary Addresses (§21.4).
    pub const IA_NA: u16 = 3;
    /// Identity Association for Temporary Addresses (§21.5; not handled).
    pub const IA_TA: u16 = 4;
    /// IA Address (§21.6).
    pub const IAADDR: u16 = 5;
    /// Option Request (§21.7).
    pub const ORO: u16 = 6;
    /// Preference (§21.8).
    pub const PREFERENCE: u16 = 7;
    /// Elapsed Time (§21.9).
    pub const ELAPSED_TIME: u16 = 8;
    /// Relay Message (§21.10).
    pub const RELAY_MSG: u16 = 9;
    /// Authentication (§21.11).
    pub const AUTH: u16 = 11;
    /// Server Unicast (§21.12).
    pub const UNICAST: u16 = 12;
    /// Status Code (§21.13).
    pub const STATUS_CODE: u16 = 13;
    /// Rapid Commit (§21.14).
    pub const RAPID_COMMIT: u16 = 14;
    /// User Class (§21.15).
    pub const USER_CLASS: u16 = 15;
    /// Vendor Class (§21.16).
    pub const VENDOR_CLASS: u16 = 16;
    /// Vendor-specific Information (§21.17).
    pub const VENDOR_OPTS: u16 = 17;
    /// Interface-Id (§21.18).
    pub const INTERFACE_ID: u16 = 18;
    /// Reconfigure Message (§21.19).
    pub const RECONF_MSG: u16 = 19;
    /// Reconfigure Accept (§21.20).
    pub const RECONF_ACCEPT: u16 = 20;
    /// DNS Recursive Name Server (RFC 3646 §3).
    pub const DNS_SERVERS: u16 = 23;
    /// Domain Search List (RFC 3646 §4).
    pub const DOMAIN_LIST: u16 = 24;
    /// Identity Association for Prefix Delegation (§21.21).
    pub const IA_PD: u16 = 25;
    /// IA Prefix (§21.22).
    pub const IAPREFIX: u16 = 26;
    /// Information Refresh Time (§21.23).
    pub const INFORMATION_REFRESH_TIME: u16 = 32;
    /// SOL_MAX_RT (§21.24).
    pub const SOL_MAX_RT: u16 = 82;
    /// INF_MAX_RT (§21.25).
    pub const INF_MAX_RT: u16 = 83;
}

/// Status codes (§21.13; the IANA registry).
pub mod status {
    /// Success.
    pub const SUCCESS: u16 = 0;
    /// Failure, reason unspecified.
    pub const UNSPEC_FAIL: u16 = 1;
    /// The server has no addresses available to assign to the IA(s).
    pub const NO_ADDRS_AVAIL: u16 = 2;
    /// Client record (binding) unavailable.
    pub const NO_BINDING: u16 = 3;
    /// The prefix for the address is not appropriate for the link.
    pub const NOT_ON_LINK: u16 = 4;
    /// The client must use multicast.
    pub const USE_MULTICAST: u16 = 5;
    /// The server has no prefixes available to assign to the IA_PD(s).
    pub const NO_PREFIX_AVAIL: u16 = 6;
}

/// DUID types (§11.1).
pub mod duid_type {
    /// Link-layer address plus time (§11.2).
    pub const LLT: u16 = 1;
    /// Vendor-assigned unique ID based on Enterprise Number (§11.3).
    pub const EN: u16 = 2;
    /// Link-layer address (§11.4).
    pub const LL: u16 = 3;
    /// Universally Unique Identifier (§11.5, RFC 6355).
    pub const UUID: u16 = 4;
}

/// Hardware type of Ethernet in a DUID (IANA ARP hardware types).
pub const HWTYPE_ETHERNET: u16 = 1;

/// DHCPv6 message types (§7.3).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum MessageType {
    Solicit = 1,
    Advertise = 2,
    Request = 3,
    Confirm = 4,
    Renew = 5,
    Rebind = 6,
    Reply = 7,
    Release = 8,
    Decline = 9,
    Reconfigure = 10,
    InformationRequest = 11,
    RelayForw = 12,
    RelayRepl = 13,
}

impl MessageType {
    /// Every type, in numeric order.
    pub const ALL: [MessageType; 13] = [
        MessageType::Solicit,
        MessageType::Advertise,
        MessageType::Request,
        MessageType::Confirm,
        MessageType::Renew,
        MessageType::Rebind,
        MessageType::Reply,
        MessageType::Release,
        MessageType::Decline,
        MessageType::Reconfigure,
        MessageType::InformationRequest,
        MessageType::RelayForw,
        MessageType::RelayRepl,
    ];

    /// From the msg-type octet; other values (leasequery, DHCPv4-over-DHCPv6, ...) are
    /// `None`.
    pub const fn from_u8(v: u8) -> Option<MessageType> {
        Some(match v {
            1 => MessageType::Solicit,
            2 => MessageType::Advertise,
            3 => MessageType::Request,
            4 => MessageType::Confirm,
            5 => MessageType::Renew,
            6 => MessageType::Rebind,
            7 => MessageType::Reply,
            8 => MessageType::Release,
            9 => MessageType::Decline,
            10 => MessageType::Reconfigure,
            11 => MessageType::InformationRequest,
            12 => MessageType::RelayForw,
            13 => MessageType::RelayRepl,
            _ => return None,
        })
    }

    /// Relay-forward or Relay-reply (the §9 format).
    pub const fn is_relay(self) -> bool {
        matches!(self, MessageType::RelayForw | MessageType::RelayRepl)
    }

    /// The name RFC 8415 §7.3 uses (`SOLICIT`, ...), usable as a counter label.
    pub const fn as_str(self) -> &'static str {
        match self {
            MessageType::Solicit => "SOLICIT",
            MessageType::Advertise => "ADVERTISE",
            MessageType::Request => "REQUEST",
            MessageType::Confirm => "CONFIRM",
            MessageType::Renew => "RENEW",
            MessageType::Rebind => "REBIND",
            MessageType::Reply => "REPLY",
            MessageType::Release => "RELEASE",
            MessageType::Decline => "DECLINE",
            MessageType::Reconfigure => "RECONFIGURE",
            MessageType::InformationRequest => "INFORMATION-REQUEST",
            MessageType::RelayForw => "RELAY-FORW",
            MessageType::RelayRepl => "RELAY-REPL",
        }
    }
}

/// Checks that `b` is a sequence of whole options (§21.1): an option header or value
/// running past the end is `Truncated`.
pub fn check_options(mut b: &[u8]) -> Result<()> {
    while !b.is_empty() {
        let len = usize::from(be16(b, 2)?);
        b = b.get(4 + len..).ok_or(Error::Truncated)?;
    }
    Ok(())
}

/// Iterator over options, `(code, value)`. Over bytes checked by [`check_options`]
/// it yields every option; over unchecked bytes it stops at the first option that
/// does not fit.
#[derive(Debug, Clone)]
pub struct Options<'a> {
    rest: &'a [u8],
}

impl<'a> Options<'a> {
    /// Options in `b` (see [`check_options`]).
    pub fn new(b: &'a [u8]) -> Options<'a> {
        Options { rest: b }
    }
}

impl<'a> Iterator for Options<'a> {
    type Item = (u16, &'a [u8]);
    fn next(&mut self) -> Option<Self::Item> {
        let (Ok(code), Ok(len)) = (be16(self.rest, 0), be16(self.rest, 2)) else {
            self.rest = &[];
            return None;
        };
        let end = 4 + usize::from(len);
        let Some(v) = self.rest.get(4..end) else {
            self.rest = &[];
            return None;
        };
        self.rest = &self.rest[end..];
        Some((code, v))
    }
}

/// A checked, zero-copy view of a DHCPv6 message (either format).
#[derive(Debug, Clone, Copy)]
pub struct Packet<'a> {
    bytes: &'a [u8],
}

impl<'a> Packet<'a> {
    /// Checks: at least [`HEADER_LEN`] octets, [`RELAY_HEADER_LEN`] for the relay
    /// types (`Truncated`), and the framing of the top-level options
    /// ([`check_options`]). The message type may be unknown (see
    /// [`Packet::message_type`]).
    pub fn new_checked(bytes: &'a [u8]) -> Result<Packet<'a>> {
        let t = *bytes.first().ok_or(Error::Truncated)?;
        let hl = if matches!(MessageType::from_u8(t), Some(m) if m.is_relay()) {
            RELAY_HEADER_LEN
        } else {
            HEADER_LEN
        };
        check_options(bytes.get(hl..).ok_or(Error::Truncated)?)?;
        Ok(Packet { bytes })
    }

    /// The message bytes.
    pub fn as_bytes(&self) -> &'a [u8] {
        self.bytes
    }
    /// The msg-type octet.
    pub fn msg_type(&self) -> u8 {
        self.bytes.first().copied().unwrap_or(0)
    }
    /// The message type, if known.
    pub fn message_type(&self) -> Option<MessageType> {
        MessageType::from_u8(self.msg_type())
    }
    /// Whether the message has the relay format (§9).
    pub fn is_relay(&self) -> bool {
        self.message_type().is_some_and(MessageType::is_relay)
    }
    fn header_len(&self) -> usize {
        if self.is_relay() {
            RELAY_HEADER_LEN
        } else {
            HEADER_LEN
        }
    }
    /// The transaction-id (client/server format; 0 for a relay message).
    pub fn transaction_id(&self) -> u32 {
        if self.is_relay() {
            return 0;
        }
        be32(self.bytes, 0).map_or(0, |v| v & 0x00ff_ffff)
    }
    /// The hop-count (relay format; 0 otherwise).
    pub fn hop_count(&self) -> u8 {
        if self.is_relay() {
            self.bytes.get(1).copied().unwrap_or(0)
        } else {
            0
        }
    }
    fn addr(&self, at: usize) -> Ipv6Addr {
        match self.bytes.get(at..at + 16) {
            Some(s) if self.is_relay() => {
                let mut a = [0u8; 16];
                a.copy_from_slice(s);
                Ipv6Addr::from(a)
            }
            _ => Ipv6Addr::UNSPECIFIED,
        }
    }
    /// The link-address (relay format; `::` otherwise).
    pub fn link_address(&self) -> Ipv6Addr {
        self.addr(2)
    }
    /// The peer-address (relay format; `::` otherwise).
    pub fn peer_address(&self) -> Ipv6Addr {
        self.addr(18)
    }
    /// The options area.
    pub fn options_bytes(&self) -> &'a [u8] {
        self.bytes.get(self.header_len()..).unwrap_or(&[])
    }
    /// The top-level options.
    pub fn options(&self) -> Options<'a> {
        Options::new(self.options_bytes())
    }
    /// The first top-level option `code`.
    pub fn option(&self, code: u16) -> Option<&'a [u8]> {
        self.options().find(|&(c, _)| c == code).map(|(_, v)| v)
    }
}

/// A DUID (§11): the type code and the rest, kept as bytes.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Duid(Vec<u8>);

impl Duid {
    /// From the option's bytes: 3..=[`MAX_DUID_LEN`] octets (a type code and at least
    /// one octet); DUID-LLT at least 9 (type, hardware type, time, an address octet),
    /// DUID-EN at least 7 (type, enterprise number, an identifier octet), DUID-LL at
    /// least 5, DUID-UUID exactly 18 (RFC 6355). Otherwise `Malformed`.
    pub fn from_bytes(b: &[u8]) -> Result<Duid> {
        let (min, max) = match be16(b, 0).map_err(|_| Error::Malformed)? {
            duid_type::LLT => (9, MAX_DUID_LEN),
            duid_type::EN => (7, MAX_DUID_LEN),
            duid_type::LL => (5, MAX_DUID_LEN),
            duid_type::UUID => (18, 18),
            _ => (3, MAX_DUID_LEN),
        };
        if b.len() < min || b.len() > max {
            return Err(Error::Malformed);
        }
        Ok(Duid(b.to_vec()))
    }
    /// DUID-LL (§11.4) of an Ethernet MAC address.
    pub fn ll(mac: [u8; 6]) -> Duid {
        let mut v = Vec::with_capacity(10);
        v.extend_from_slice(&duid_type::LL.to_be_bytes());
        v.extend_from_slice(&HWTYPE_ETHERNET.to_be_bytes());
        v.extend_from_slice(&mac);
        Duid(v)
    }
    /// DUID-LLT (§11.2) of an Ethernet MAC address and a time (seconds since
    /// 2000-01-01 00:00 UTC, modulo 2^32).
    pub fn llt(time: u32, mac: [u8; 6]) -> Duid {
        let mut v = Vec::with_capacity(14);
        v.extend_from_slice(&duid_type::LLT.to_be_bytes());
        v.extend_from_slice(&HWTYPE_ETHERNET.to_be_bytes());
        v.extend_from_slice(&time.to_be_bytes());
        v.extend_from_slice(&mac);
        Duid(v)
    }
    /// DUID-EN (§11.3); `None` if the identifier is empty or too long.
    pub fn en(enterprise: u32, id: &[u8]) -> Option<Duid> {
        let mut v = Vec::with_capacity(6 + id.len());
        v.extend_from_slice(&duid_type::EN.to_be_bytes());
        v.extend_from_slice(&enterprise.to_be_bytes());
        v.extend_from_slice(id);
        Duid::from_bytes(&v).ok()
    }
    /// DUID-UUID (§11.5).
    pub fn uuid(uuid: [u8; 16]) -> Duid {
        let mut v = Vec::with_capacity(18);
        v.extend_from_slice(&duid_type::UUID.to_be_bytes());
        v.extend_from_slice(&uuid);
        Duid(v)
    }
    /// The DUID type code.
    pub fn kind(&self) -> u16 {
        be16(&self.0, 0).unwrap_or(0)
    }
    /// The bytes, type code first.
    pub fn as_bytes(&self) -> &[u8] {
        &self.0
    }
    /// The link-layer address of a DUID-LL or DUID-LLT with the Ethernet hardware
    /// type and a 6-octet address.
    pub fn mac(&self) -> Option<[u8; 6]> {
        let at = match self.kind() {
            duid_type::LL => 4,
            duid_type::LLT => 8,
            _ => return None,
        };
        if be16(&self.0, 2).ok()? != HWTYPE_ETHERNET || self.0.len() != at + 6 {
            return None;
        }
        let mut m = [0u8; 6];
        m.copy_from_slice(&self.0[at..]);
        Some(m)
    }
}

/// Colon-separated hex, as ISC tools print a DUID.
impl fmt::Display for Duid {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, b) in self.0.iter().enumerate() {
            if i > 0 {
                f.write_str(":")?;
            }
            write!(f, "{b:02x}")?;
        }
        Ok(())
    }
}

/// A Status Code option (§21.13): the code and a UTF-8 message (kept as bytes).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Status {
    /// One of [`status`].
    pub code: u16,
    /// The status message (UTF-8, not NUL-terminated).
    pub message: Vec<u8>,
}

impl Status {
    /// A status with a message.
    pub fn new(code: u16, message: &str) -> Status {
        Status {
            code,
            message: message.as_bytes().to_vec(),
        }
    }
    fn parse(v: &[u8]) -> Result<Status> {
        Ok(Status {
            code: be16(v, 0).map_err(|_| Error::Malformed)?,
            message: v[2..].to_vec(),
        })
    }
    fn emit(&self, out: &mut Vec<u8>) -> Result<()> {
        let mut v = Vec::with_capacity(2 + self.message.len());
        v.extend_from_slice(&self.code.to_be_bytes());
        v.extend_from_slice(&self.message);
        put(out, opt::STATUS_CODE, &v)
    }
}

/// An IA Address option (§21.6).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IaAddr {
    pub addr: Ipv6Addr,
    /// Preferred lifetime, seconds ([`INFINITY`] is infinite).
    pub preferred: u32,
    /// Valid lifetime, seconds.
    pub valid: u32,
    /// A Status Code option inside it.
    pub status: Option<Status>,
    /// Other options inside it.
    pub other: Vec<(u16, Vec<u8>)>,
}

/// An IA Prefix option (§21.22).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IaPrefix {
    /// Preferred lifetime, seconds.
    pub preferred: u32,
    /// Valid lifetime, seconds.
    pub valid: u32,
    /// Prefix length, 0..=128.
    pub len: u8,
    /// The prefix (bits beyond `len` as sent).
    pub prefix: Ipv6Addr,
    /// A Status Code option inside it.
    pub status: Option<Status>,
    /// Other options inside it.
    pub other: Vec<(u16, Vec<u8>)>,
}

/// An IA_NA (§21.4) or IA_PD (§21.21) option: IAID, T1, T2 and the addresses or
/// prefixes (`A` is [`IaAddr`] or [`IaPrefix`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Ia<A> {
    pub iaid: u32,
    /// T1, seconds.
    pub t1: u32,
    /// T2, seconds.
    pub t2: u32,
    /// IA Address (IA_NA) or IA Prefix (IA_PD) options.
    pub items: Vec<A>,
    /// A Status Code option inside it.
    pub status: Option<Status>,
    /// Other options inside it.
    pub other: Vec<(u16, Vec<u8>)>,
}

/// IA_NA.
pub type IaNa = Ia<IaAddr>;
/// IA_PD.
pub type IaPd = Ia<IaPrefix>;

impl<A> Ia<A> {
    /// An IA without addresses, status or options.
    pub fn new(iaid: u32, t1: u32, t2: u32) -> Ia<A> {
        Ia {
            iaid,
            t1,
            t2,
            items: Vec::new(),
            status: None,
            other: Vec::new(),
        }
    }
}

/// The status code and other options nested in an option.
type Nested = (Option<Status>, Vec<(u16, Vec<u8>)>);

/// Parses nested options: the status code (at most once) and the rest into `other`;
/// `item` gets the options of code `item_code`.
fn parse_nested(
    b: &[u8],
    item_code: Option<u16>,
    mut item: impl FnMut(&[u8]) -> Result<()>,
) -> Result<Nested> {
    check_options(b)?;
    let mut st = None;
    let mut other = Vec::new();
    for (code, v) in Options::new(b) {
        if code == opt::STATUS_CODE {
            if st.is_some() {
                return Err(Error::Malformed);
            }
            st = Some(Status::parse(v)?);
        } else if Some(code) == item_code {
            item(v)?;
        } else {
            other.push((code, v.to_vec()));
        }
    }
    Ok((st, other))
}

fn u32_at(v: &[u8], at: usize) -> u32 {
    be32(v, at).unwrap_or(0)
}

fn addr_at(v: &[u8], at: usize) -> Ipv6Addr {
    let mut a = [0u8; 16];
    if let Some(s) = v.get(at..at + 16) {
        a.copy_from_slice(s);
    }
    Ipv6Addr::from(a)
}

impl IaAddr {
    /// Parses the option's value: 24 octets and nested options.
    pub fn parse(v: &[u8]) -> Result<IaAddr> {
        if v.len() < 24 {
            return Err(Error::Malformed);
        }
        let (status, other) = parse_nested(&v[24..], None, |_| Ok(()))?;
        Ok(IaAddr {
            addr: addr_at(v, 0),
            preferred: u32_at(v, 16),
            valid: u32_at(v, 20),
            status,
            other,
        })
    }
    fn emit(&self, out: &mut Vec<u8>) -> Result<()> {
        let mut v = Vec::with_capacity(24);
        v.extend_from_slice(&self.addr.octets());
        v.extend_from_slice(&self.preferred.to_be_bytes());
        v.extend_from_slice(&self.valid.to_be_bytes());
        emit_nested(&mut v, &self.status, &self.other, &[])?;
        put(out, opt::IAADDR, &v)
    }
}

impl IaPrefix {
    /// Parses the option's value: 25 octets (a length above 128 is `Malformed`) and
    /// nested options.
    pub fn parse(v: &[u8]) -> Result<IaPrefix> {
        if v.len() < 25 || v[8] > 128 {
            return Err(Error::Malformed);
        }
        let (status, other) = parse_nested(&v[25..], None, |_| Ok(()))?;
        Ok(IaPrefix {
            preferred: u32_at(v, 0),
            valid: u32_at(v, 4),
            len: v[8],
            prefix: addr_at(v, 9),
            status,
            other,
        })
    }
    fn emit(&self, out: &mut Vec<u8>) -> Result<()> {
        if self.len > 128 {
            return Err(Error::Malformed);
        }
        let mut v = Vec::with_capacity(25);
        v.extend_from_slice(&self.preferred.to_be_bytes());
        v.extend_from_slice(&self.valid.to_be_bytes());
        v.push(self.len);
        v.extend_from_slice(&self.prefix.octets());
        emit_nested(&mut v, &self.status, &self.other, &[])?;
        put(out, opt::IAPREFIX, &v)
    }
}

/// An item of an IA (address or prefix), for the shared IA code.
trait IaItem: Sized {
    const CODE: u16;
    fn parse_item(v: &[u8]) -> Result<Self>;
    fn emit_item(&self, out: &mut Vec<u8>) -> Result<()>;
}

impl IaItem for IaAddr {
    const CODE: u16 = opt::IAADDR;
    fn parse_item(v: &[u8]) -> Result<Self> {
        IaAddr::parse(v)
    }
    fn emit_item(&self, out: &mut Vec<u8>) -> Result<()> {
        self.emit(out)
    }
}

impl IaItem for IaPrefix {
    const CODE: u16 = opt::IAPREFIX;
    fn parse_item(v: &[u8]) -> Result<Self> {
        IaPrefix::parse(v)
    }
    fn emit_item(&self, out: &mut Vec<u8>) -> Result<()> {
        self.emit(out)
    }
}

#[allow(private_bounds)]
impl<A: IaItem> Ia<A> {
    /// Parses an IA_NA or IA_PD value: 12 octets (IAID, T1, T2) and nested options.
    pub fn parse(v: &[u8]) -> Result<Ia<A>> {
        if v.len() < 12 {
            return Err(Error::Malformed);
        }
        let mut items = Vec::new();
        let (status, other) = parse_nested(&v[12..], Some(A::CODE), |x| {
            items.push(A::parse_item(x)?);
            Ok(())
        })?;
        Ok(Ia {
            iaid: u32_at(v, 0),
            t1: u32_at(v, 4),
            t2: u32_at(v, 8),
            items,
            status,
            other,
        })
    }
    fn emit(&self, code: u16, out: &mut Vec<u8>) -> Result<()> {
        let mut v = Vec::with_capacity(12 + 30 * self.items.len());
        for x in [self.iaid, self.t1, self.t2] {
            v.extend_from_slice(&x.to_be_bytes());
        }
        for a in &self.items {
            a.emit_item(&mut v)?;
        }
        emit_nested(&mut v, &self.status, &self.other, &[A::CODE])?;
        put(out, code, &v)
    }
}

fn emit_nested(
    v: &mut Vec<u8>,
    status: &Option<Status>,
    other: &[(u16, Vec<u8>)],
    typed: &[u16],
) -> Result<()> {
    if let Some(s) = status {
        s.emit(v)?;
    }
    for (c, x) in other {
        if *c == opt::STATUS_CODE || typed.contains(c) {
            return Err(Error::Malformed);
        }
        put(v, *c, x)?;
    }
    Ok(())
}

/// Appends one option; a value over 65535 octets is `Malformed`.
fn put(out: &mut Vec<u8>, code: u16, v: &[u8]) -> Result<()> {
    let l = u16::try_from(v.len()).map_err(|_| Error::Malformed)?;
    out.extend_from_slice(&code.to_be_bytes());
    out.extend_from_slice(&l.to_be_bytes());
    out.extend_from_slice(v);
    Ok(())
}

/// A client/server message (§8) with its options decoded.
///
/// Known options are typed fields (IA_NA and IA_PD may repeat, in order); the rest
/// are kept in `other` in order of appearance. A known single option that appears
/// twice is `Malformed`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Message {
    pub msg_type: MessageType,
    /// 24 bits.
    pub transaction_id: u32,
    /// Option 1.
    pub client_id: Option<Duid>,
    /// Option 2.
    pub server_id: Option<Duid>,
    /// Options 3.
    pub ia_na: Vec<IaNa>,
    /// Options 25.
    pub ia_pd: Vec<IaPd>,
    /// Option 6: the requested option codes.
    pub oro: Option<Vec<u16>>,
    /// Option 7.
    pub preference: Option<u8>,
    /// Option 8, hundredths of a second.
    pub elapsed_time: Option<u16>,
    /// Option 13.
    pub status: Option<Status>,
    /// Option 14.
    pub rapid_commit: bool,
    /// Option 20.
    pub reconfigure_accept: bool,
    /// Option 23 (RFC 3646); empty when absent.
    pub dns_servers: Vec<Ipv6Addr>,
    /// Option 82, seconds.
    pub sol_max_rt: Option<u32>,
    /// Other options, `(code, value)`, in order.
    pub other: Vec<(u16, Vec<u8>)>,
}

impl Message {
    /// An empty message of a type and transaction id.
    pub fn new(msg_type: MessageType, transaction_id: u32) -> Message {
        Message {
            msg_type,
            transaction_id,
            client_id: None,
            server_id: None,
            ia_na: Vec::new(),
            ia_pd: Vec::new(),
            oro: None,
            preference: None,
            elapsed_time: None,
            status: None,
            rapid_commit: false,
            reconfigure_accept: false,
            dns_servers: Vec::new(),
            sol_max_rt: None,
            other: Vec::new(),
        }
    }

    /// Whether option `code` is in the Option Request option.
    pub fn requests(&self, code: u16) -> bool {
        self.oro.as_deref().is_some_and(|l| l.contains(&code))
    }

    fn parse_options(&mut self, b: &[u8]) -> Result<()> {
        fn once<T>(slot: &mut Option<T>, v: T) -> Result<()> {
            if slot.is_some() {
                return Err(Error::Malformed);
            }
            *slot = Some(v);
            Ok(())
        }
        let mut flags = [false; 3];
        for (code, v) in Options::new(b) {
            match code {
                opt::CLIENTID => once(&mut self.client_id, Duid::from_bytes(v)?)?,
                opt::SERVERID => once(&mut self.server_id, Duid::from_bytes(v)?)?,
                opt::IA_NA => self.ia_na.push(Ia::parse(v)?),
                opt::IA_PD => self.ia_pd.push(Ia::parse(v)?),
                opt::ORO => {
                    if v.len() % 2 != 0 {
                        return Err(Error::Malformed);
                    }
                    let l = v
                        .chunks_exact(2)
                        .map(|c| u16::from_be_bytes([c[0], c[1]]))
                        .collect();
                    once(&mut self.oro, l)?
                }
                opt::PREFERENCE => match *v {
                    [p] => once(&mut self.preference, p)?,
                    _ => return Err(Error::Malformed),
                },
                opt::ELAPSED_TIME => match *v {
                    [a, b] => once(&mut self.elapsed_time, u16::from_be_bytes([a, b]))?,
                    _ => return Err(Error::Malformed),
                },
                opt::STATUS_CODE => once(&mut self.status, Status::parse(v)?)?,
                opt::RAPID_COMMIT | opt::RECONF_ACCEPT | opt::DNS_SERVERS => {
                    let i = match code {
                        opt::RAPID_COMMIT => 0,
                        opt::RECONF_ACCEPT => 1,
                        _ => 2,
                    };
                    if flags[i] {
                        return Err(Error::Malformed);
                    }
                    flags[i] = true;
                    match code {
                        opt::RAPID_COMMIT if v.is_empty() => self.rapid_commit = true,
                        opt::RECONF_ACCEPT if v.is_empty() => self.reconfigure_accept = true,
                        opt::DNS_SERVERS if !v.is_empty() && v.len() % 16 == 0 => {
                            self.dns_servers = v.chunks_exact(16).map(|c| addr_at(c, 0)).collect()
                        }
                        _ => return Err(Error::Malformed),
                    }
                }
                opt::SOL_MAX_RT => match *v {
                    [a, b, c, d] => once(&mut self.sol_max_rt, u32::from_be_bytes([a, b, c, d]))?,
                    _ => return Err(Error::Malformed),
                },
                // Only in relay messages (§21.10, §21.18).
                opt::RELAY_MSG | opt::INTERFACE_ID => return Err(Error::Malformed),
                // Only inside an IA (§21.6, §21.22).
                opt::IAADDR | opt::IAPREFIX => return Err(Error::Malformed),
                _ => self.other.push((code, v.to_vec())),
            }
        }
        Ok(())
    }

    fn emit_options(&self, out: &mut Vec<u8>) -> Result<()> {
        if let Some(d) = &self.client_id {
            put(out, opt::CLIENTID, d.as_bytes())?;
        }
        if let Some(d) = &self.server_id {
            put(out, opt::SERVERID, d.as_bytes())?;
        }
        for ia in &self.ia_na {
            ia.emit(opt::IA_NA, out)?;
        }
        for ia in &self.ia_pd {
            ia.emit(opt::IA_PD, out)?;
        }
        if let Some(l) = &self.oro {
            let v: Vec<u8> = l.iter().flat_map(|c| c.to_be_bytes()).collect();
            put(out, opt::ORO, &v)?;
        }
        if let Some(p) = self.preference {
            put(out, opt::PREFERENCE, &[p])?;
        }
        if let Some(t) = self.elapsed_time {
            put(out, opt::ELAPSED_TIME, &t.to_be_bytes())?;
        }
        if let Some(s) = &self.status {
            s.emit(out)?;
        }
        if self.rapid_commit {
            put(out, opt::RAPID_COMMIT, &[])?;
        }
        if self.reconfigure_accept {
            put(out, opt::RECONF_ACCEPT, &[])?;
        }
        if !self.dns_servers.is_empty() {
            let v: Vec<u8> = self.dns_servers.iter().flat_map(|a| a.octets()).collect();
            put(out, opt::DNS_SERVERS, &v)?;
        }
        if let Some(t) = self.sol_max_rt {
            put(out, opt::SOL_MAX_RT, &t.to_be_bytes())?;
        }
        for (c, v) in &self.other {
            if is_typed(*c) {
                return Err(Error::Malformed);
            }
            put(out, *c, v)?;
        }
        Ok(())
    }
}

/// Codes [`Message`] keeps in a typed field or refuses at the top level.
fn is_typed(code: u16) -> bool {
    matches!(
        code,
        opt::CLIENTID
            | opt::SERVERID
            | opt::IA_NA
            | opt::IAADDR
            | opt::ORO
            | opt::PREFERENCE
            | opt::ELAPSED_TIME
            | opt::RELAY_MSG
            | opt::STATUS_CODE
            | opt::RAPID_COMMIT
            | opt::INTERFACE_ID
            | opt::RECONF_ACCEPT
            | opt::DNS_SERVERS
            | opt::IA_PD
            | opt::IAPREFIX
            | opt::SOL_MAX_RT
    )
}

/// A Relay-forward or Relay-reply message (§9). The relayed message (option 9) is
/// kept as bytes: parse it with [`RelayMessage::inner`] (it may itself be a relay
/// message, one level per relay agent).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RelayMessage {
    /// [`MessageType::RelayForw`] or [`MessageType::RelayRepl`].
    pub msg_type: MessageType,
    pub hop_count: u8,
    /// An address the server uses to identify the client's link (may be `::`).
    pub link_address: Ipv6Addr,
    /// The address of the client or relay agent the message came from.
    pub peer_address: Ipv6Addr,
    /// Option 9: the relayed message.
    pub relay_message: Vec<u8>,
    /// Option 18.
    pub interface_id: Option<Vec<u8>>,
    /// Other options, `(code, value)`, in order (e.g. Remote-Id, RFC 4649).
    pub other: Vec<(u16, Vec<u8>)>,
}

impl RelayMessage {
    /// The relayed message, parsed.
    pub fn inner(&self) -> Result<Repr> {
        Repr::parse_bytes(&self.relay_message)
    }

    fn parse(p: &Packet<'_>, msg_type: MessageType) -> Result<RelayMessage> {
        let mut relay_message = None;
        let mut interface_id = None;
        let mut other = Vec::new();
        for (code, v) in p.options() {
            let slot = match code {
                opt::RELAY_MSG => &mut relay_message,
                opt::INTERFACE_ID => &mut interface_id,
                _ => {
                    other.push((code, v.to_vec()));
                    continue;
                }
            };
            if slot.is_some() || v.is_empty() {
                return Err(Error::Malformed);
            }
            *slot = Some(v.to_vec());
        }
        Ok(RelayMessage {
            msg_type,
            hop_count: p.hop_count(),
            link_address: p.link_address(),
            peer_address: p.peer_address(),
            // §9.1, §9.2: both carry the relayed message.
            relay_message: relay_message.ok_or(Error::Malformed)?,
            interface_id,
            other,
        })
    }

    fn emit(&self, out: &mut Vec<u8>) -> Result<()> {
        if !self.msg_type.is_relay() || self.relay_message.is_empty() {
            return Err(Error::Malformed);
        }
        out.push(self.msg_type as u8);
        out.push(self.hop_count);
        out.extend_from_slice(&self.link_address.octets());
        out.extend_from_slice(&self.peer_address.octets());
        put(out, opt::RELAY_MSG, &self.relay_message)?;
        if let Some(i) = &self.interface_id {
            if i.is_empty() {
                return Err(Error::Malformed);
            }
            put(out, opt::INTERFACE_ID, i)?;
        }
        for (c, v) in &self.other {
            if matches!(*c, opt::RELAY_MSG | opt::INTERFACE_ID) {
                return Err(Error::Malformed);
            }
            put(out, *c, v)?;
        }
        Ok(())
    }
}

/// A decoded DHCPv6 message of either format.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Repr {
    /// Client/server format (§8).
    Message(Message),
    /// Relay format (§9).
    Relay(RelayMessage),
}

impl Repr {
    /// Decodes a checked packet. An unknown message type is `Unsupported`. Known
    /// options must have their RFC lengths: DUIDs as [`Duid::from_bytes`], IA_NA and
    /// IA_PD at least 12 octets, IA Address 24, IA Prefix 25 (length at most 128),
    /// ORO even, Preference 1, Elapsed Time 2, Status Code at least 2, Rapid Commit and
    /// Reconfigure Accept empty, DNS servers a non-zero multiple of 16, SOL_MAX_RT 4;
    /// nested options framed within their parent; single options at most once; IA
    /// Address, IA Prefix, Relay Message and Interface-Id not at the top level of a
    /// client/server message; a relay message with exactly one non-empty Relay Message
    /// option. Anything else is `Malformed` (`Truncated` for framing).
    pub fn parse(p: &Packet<'_>) -> Result<Repr> {
        let mt = p.message_type().ok_or(Error::Unsupported)?;
        if mt.is_relay() {
            return Ok(Repr::Relay(RelayMessage::parse(p, mt)?));
        }
        let mut m = Message::new(mt, p.transaction_id());
        m.parse_options(p.options_bytes())?;
        Ok(Repr::Message(m))
    }

    /// Checks and parses `bytes` in one go.
    pub fn parse_bytes(bytes: &[u8]) -> Result<Repr> {
        Repr::parse(&Packet::new_checked(bytes)?)
    }

    /// The message type.
    pub fn message_type(&self) -> MessageType {
        match self {
            Repr::Message(m) => m.msg_type,
            Repr::Relay(r) => r.msg_type,
        }
    }

    /// Appends the message to `out`: the header, then (client/server format) Client
    /// and Server Identifier, IA_NAs, IA_PDs, ORO, Preference, Elapsed Time, Status
    /// Code, Rapid Commit, Reconfigure Accept, DNS servers (when not empty),
    /// SOL_MAX_RT and `other`; (relay format) Relay Message, Interface-Id and `other`.
    /// Fails with `Malformed`, leaving `out` as it was, on what the parser would
    /// refuse: a transaction id above 24 bits, a relay type in a [`Message`] or
    /// another type in a [`RelayMessage`], an option value over 65535 octets, an
    /// IA Prefix length above 128, an `other` entry (at any level) with a code kept in
    /// a typed field, an empty Relay Message or Interface-Id.
    pub fn emit(&self, out: &mut Vec<u8>) -> Result<()> {
        let start = out.len();
        let res = match self {
            Repr::Message(m) => {
                if m.msg_type.is_relay() || m.transaction_id > 0x00ff_ffff {
                    return Err(Error::Malformed);
                }
                out.extend_from_slice(&m.transaction_id.to_be_bytes());
                out[start] = m.msg_type as u8;
                m.emit_options(out)
            }
            Repr::Relay(r) => r.emit(out),
        };
        if res.is_err() {
            out.truncate(start);
        }
        res
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use alloc::vec;

    fn a(s: &str) -> Ipv6Addr {
        s.parse().unwrap()
    }

    fn bytes(r: &Repr) -> Vec<u8> {
        let mut v = Vec::new();
        r.emit(&mut v).unwrap();
        v
    }

    /// A Solicit built by hand from the RFC 8415 layout (§8, §21.2, §21.4, §21.7,
    /// §21.9, §21.14, §21.21).
    const SOLICIT: &[u8] = &[
        1, 0x12, 0x34, 0x56, // SOLICIT, transaction-id
        0, 1, 0, 10, 0, 3, 0, 1, 2, 0, 0, 0, 0, 9, // client id: DUID-LL 02:00:00:00:00:09
        0, 3, 0, 12, 0, 0, 0, 1, 0, 0, 0, 0, 0, 0, 0, 0, // IA_NA iaid 1, T1 0, T2 0
        0, 25, 0, 12, 0, 0, 0, 2, 0, 0, 0, 0, 0, 0, 0, 0, // IA_PD iaid 2
        0, 6, 0, 4, 0, 23, 0, 82, // ORO: DNS servers, SOL_MAX_RT
        0, 8, 0, 2, 0, 0, // elapsed time 0
        0, 14, 0, 0, // rapid commit
    ];

    /// The Advertise answering it: server id DUID-LL 02:00:00:00:00:01, IA_NA with
    /// 2001:db8::100 (T1 1800, T2 2880, preferred 3600, valid 7200), IA_PD with
    /// 2001:db8:100::/56, DNS server 2001:db8::53, preference 255.
    const ADVERTISE: &[u8] = &[
        2, 0x12, 0x34, 0x56, // ADVERTISE
        0, 1, 0, 10, 0, 3, 0, 1, 2, 0, 0, 0, 0, 9, // client id
        0, 2, 0, 10, 0, 3, 0, 1, 2, 0, 0, 0, 0, 1, // server id
        0, 3, 0, 40, 0, 0, 0, 1, 0, 0, 7, 8, 0, 0, 0x0b, 0x40, // IA_NA
        0, 5, 0, 24, 0x20, 1, 0x0d, 0xb8, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1, 0, // IAADDR
        0, 0, 0x0e, 0x10, 0, 0, 0x1c, 0x20, // preferred, valid
        0, 25, 0, 41, 0, 0, 0, 2, 0, 0, 7, 8, 0, 0, 0x0b, 0x40, // IA_PD
        0, 26, 0, 25, 0, 0, 0x0e, 0x10, 0, 0, 0x1c, 0x20, 56, // IAPREFIX
        0x20, 1, 0x0d, 0xb8, 1, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, //
        0, 7, 0, 1, 255, // preference
        0, 23, 0, 16, 0x20, 1, 0x0d, 0xb8, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0x53, // DNS
    ];

    fn solicit() -> Message {
        Message {
            client_id: Some(Duid::ll([2, 0, 0, 0, 0, 9])),
            ia_na: vec![Ia::new(1, 0, 0)],
            ia_pd: vec![Ia::new(2, 0, 0)],
            oro: Some(vec![opt::DNS_SERVERS, opt::SOL_MAX_RT]),
            elapsed_time: Some(0),
            rapid_commit: true,
            ..Message::new(MessageType::Solicit, 0x12_3456)
        }
    }

    fn advertise() -> Message {
        let mut na = Ia::new(1, 1800, 2880);
        na.items.push(IaAddr {
            addr: a("2001:db8::100"),
            preferred: 3600,
            valid: 7200,
            status: None,
            other: Vec::new(),
        });
        let mut pd = Ia::new(2, 1800, 2880);
        pd.items.push(IaPrefix {
            preferred: 3600,
            valid: 7200,
            len: 56,
            prefix: a("2001:db8:100::"),
            status: None,
            other: Vec::new(),
        });
        Message {
            client_id: Some(Duid::ll([2, 0, 0, 0, 0, 9])),
            server_id: Some(Duid::ll([2, 0, 0, 0, 0, 1])),
            ia_na: vec![na],
            ia_pd: vec![pd],
            preference: Some(255),
            dns_servers: vec![a("2001:db8::53")],
            ..Message::new(MessageType::Advertise, 0x12_3456)
        }
    }

    #[test]
    fn known_good_bytes() {
        let s = Repr::Message(solicit());
        assert_eq!(bytes(&s), SOLICIT);
        assert_eq!(Repr::parse_bytes(SOLICIT).unwrap(), s);
        let ad = Repr::Message(advertise());
        assert_eq!(bytes(&ad), ADVERTISE);
        assert_eq!(Repr::parse_bytes(ADVERTISE).unwrap(), ad);
        let p = Packet::new_checked(ADVERTISE).unwrap();
        assert_eq!(p.message_type(), Some(MessageType::Advertise));
        assert_eq!(p.transaction_id(), 0x12_3456);
        assert_eq!(p.options().count(), 6);
        assert_eq!(p.option(opt::PREFERENCE), Some(&[255u8][..]));
        assert!(!p.is_relay());
    }

    #[test]
    fn relay_round_trip() {
        let r = Repr::Relay(RelayMessage {
            msg_type: MessageType::RelayForw,
            hop_count: 1,
            link_address: a("2001:db8:1::1"),
            peer_address: a("fe80::200:ff:fe00:9"),
            relay_message: SOLICIT.to_vec(),
            interface_id: Some(b"eth0:100.7".to_vec()),
            other: vec![(37, vec![0, 0, 0, 9, 1, 2])],
        });
        let b = bytes(&r);
        assert_eq!(b.len(), 34 + 4 + SOLICIT.len() + 4 + 10 + 4 + 6);
        let p = Packet::new_checked(&b).unwrap();
        assert!(p.is_relay());
        assert_eq!(p.hop_count(), 1);
        assert_eq!(p.peer_address(), a("fe80::200:ff:fe00:9"));
        assert_eq!(p.transaction_id(), 0);
        let back = Repr::parse(&p).unwrap();
        assert_eq!(back, r);
        let Repr::Relay(rm) = back else {
            unreachable!()
        };
        assert_eq!(rm.inner().unwrap(), Repr::Message(solicit()));
        // Without the relay message option.
        let mut b2 = b[..34].to_vec();
        b2.extend_from_slice(&[0, 18, 0, 1, 7]);
        assert_eq!(Repr::parse_bytes(&b2), Err(Error::Malformed));
        assert_eq!(Packet::new_checked(&b[..33]).unwrap_err(), Error::Truncated);
    }

    #[test]
    fn duids() {
        let ll = Duid::ll([2, 0, 0, 0, 0, 9]);
        assert_eq!(ll.as_bytes(), [0, 3, 0, 1, 2, 0, 0, 0, 0, 9]);
        assert_eq!(ll.kind(), duid_type::LL);
        assert_eq!(ll.mac(), Some([2, 0, 0, 0, 0, 9]));
        assert_eq!(alloc::format!("{ll}"), "00:03:00:01:02:00:00:00:00:09");
        let llt = Duid::llt(0x2a2b2c2d, [2, 0, 0, 0, 0, 1]);
        assert_eq!(llt.as_bytes().len(), 14);
        assert_eq!(llt.mac(), Some([2, 0, 0, 0, 0, 1]));
        assert_eq!(Duid::from_bytes(llt.as_bytes()).unwrap(), llt);
        let en = Duid::en(9, b"x1").unwrap();
        assert_eq!(en.as_bytes(), [0, 2, 0, 0, 0, 9, b'x', b'1']);
        assert_eq!(en.mac(), None);
        assert!(Duid::en(9, &[]).is_none());
        let u = Duid::uuid([7; 16]);
        assert_eq!(
            Duid::from_bytes(u.as_bytes()).unwrap().kind(),
            duid_type::UUID
        );
        for bad in [
            &[][..],
            &[0, 3],
            &[0, 3, 0, 1],
            &[0, 1, 0, 1, 0, 0, 0, 0],
            &[0, 4, 1, 2, 3],
            &[0, 9],
        ] {
            assert!(Duid::from_bytes(bad).is_err(), "{bad:?}");
        }
        assert!(Duid::from_bytes(&[0, 9, 1]).is_ok());
        assert!(Duid::from_bytes(&[0u8; 131]).is_err());
        assert!(Duid::from_bytes(&[0u8; 130]).is_ok());
    }

    #[test]
    fn every_known_option_round_trips() {
        let mut na = Ia::new(7, 100, 200);
        na.status = Some(Status::new(status::NO_ADDRS_AVAIL, "none"));
        na.items.push(IaAddr {
            addr: a("2001:db8::1"),
            preferred: INFINITY,
            valid: INFINITY,
            status: Some(Status::new(status::SUCCESS, "")),
            other: vec![(99, vec![1])],
        });
        na.other.push((98, vec![]));
        let mut pd = Ia::new(8, 0, 0);
        pd.items.push(IaPrefix {
            preferred: 0,
            valid: 0,
            len: 60,
            prefix: a("2001:db8:0:10::"),
            status: Some(Status::new(status::NO_BINDING, "gone")),
            other: Vec::new(),
        });
        let m = Message {
            client_id: Some(Duid::uuid([1; 16])),
            server_id: Some(Duid::llt(1, [2, 0, 0, 0, 0, 1])),
            ia_na: vec![na.clone(), Ia::new(9, 0, 0)],
            ia_pd: vec![pd],
            oro: Some(vec![]),
            preference: Some(0),
            elapsed_time: Some(65535),
            status: Some(Status::new(status::USE_MULTICAST, "multicast please")),
            rapid_commit: true,
            reconfigure_accept: true,
            dns_servers: vec![a("2001:db8::53"), a("2001:db8::54")],
            sol_max_rt: Some(3600),
            other: vec![(39, b"\x01x".to_vec()), (16, vec![0, 0, 0, 9])],
            ..Message::new(MessageType::Reply, 0xff_ffff)
        };
        let r = Repr::Message(m);
        assert_eq!(Repr::parse_bytes(&bytes(&r)).unwrap(), r);
    }

    #[test]
    fn strict_framing_is_a_typed_error() {
        assert_eq!(Packet::new_checked(&[]).unwrap_err(), Error::Truncated);
        assert_eq!(
            Packet::new_checked(&[1, 0, 0]).unwrap_err(),
            Error::Truncated
        );
        assert_eq!(
            Packet::new_checked(&SOLICIT[..SOLICIT.len() - 1]).unwrap_err(),
            Error::Truncated
        );
        assert_eq!(
            Packet::new_checked(&[1, 0, 0, 0, 0, 1, 0]).unwrap_err(),
            Error::Truncated
        );
        assert_eq!(
            Repr::parse_bytes(&[99, 0, 0, 0]).unwrap_err(),
            Error::Unsupported
        );
        let head = [3u8, 0, 0, 1];
        for o in [
            &[0, 1, 0, 2, 0, 3][..],                         // short DUID
            &[0, 3, 0, 11, 0, 0, 0, 1, 0, 0, 0, 0, 0, 0, 0], // short IA_NA
            &[0, 25, 0, 0],                                  // empty IA_PD
            &[0, 6, 0, 3, 0, 23, 0],                         // odd ORO
            &[0, 7, 0, 2, 1, 1],                             // preference
            &[0, 8, 0, 1, 0],                                // elapsed time
            &[0, 13, 0, 1, 0],                               // status
            &[0, 14, 0, 1, 0],                               // rapid commit with data
            &[0, 20, 0, 1, 0],                               // reconfigure accept with data
            &[0, 23, 0, 0],                                  // empty DNS list
            &[0, 23, 0, 4, 1, 2, 3, 4],                      // DNS not multiple of 16
            &[0, 82, 0, 2, 0, 1],                            // SOL_MAX_RT
            &[0, 9, 0, 4, 1, 0, 0, 1],                       // relay message at top level
            &[
                0, 5, 0, 24, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,
            ],
            &[0, 14, 0, 0, 0, 14, 0, 0],     // rapid commit twice
            &[0, 7, 0, 1, 1, 0, 7, 0, 1, 1], // preference twice
        ] {
            let mut b = head.to_vec();
            b.extend_from_slice(o);
            assert_eq!(
                Repr::parse_bytes(&b).unwrap_err(),
                Error::Malformed,
                "{o:?}"
            );
        }
        // Nested: an IAADDR inside IA_NA running past its parent.
        let mut b = head.to_vec();
        b.extend_from_slice(&[0, 3, 0, 16, 0, 0, 0, 1, 0, 0, 0, 0, 0, 0, 0, 0]);
        b.extend_from_slice(&[0, 5, 0, 24, 0, 0, 0, 0]);
        let e = Repr::parse_bytes(&b).unwrap_err();
        assert_eq!(e, Error::Truncated);
        // A short IAADDR inside IA_NA, an IAPREFIX longer than 128.
        let mut b = head.to_vec();
        b.extend_from_slice(&[0, 3, 0, 16, 0, 0, 0, 1, 0, 0, 0, 0, 0, 0, 0, 0, 0, 5, 0, 0]);
        assert_eq!(Repr::parse_bytes(&b).unwrap_err(), Error::Malformed);
        let mut b = head.to_vec();
        b.extend_from_slice(&[0, 25, 0, 41, 0, 0, 0, 1, 0, 0, 0, 0, 0, 0, 0, 0]);
        b.extend_from_slice(&[0, 26, 0, 25, 0, 0, 0, 0, 0, 0, 0, 0, 129]);
        b.extend_from_slice(&[0; 16]);
        assert_eq!(Repr::parse_bytes(&b).unwrap_err(), Error::Malformed);
        // An IAPREFIX in an IA_NA is kept as an unknown nested option.
        let mut b = head.to_vec();
        b.extend_from_slice(&[0, 3, 0, 16, 0, 0, 0, 1, 0, 0, 0, 0, 0, 0, 0, 0, 0, 26, 0, 0]);
        let Repr::Message(m) = Repr::parse_bytes(&b).unwrap() else {
            unreachable!()
        };
        assert_eq!(m.ia_na[0].other, [(opt::IAPREFIX, vec![])]);
    }

    #[test]
    fn emit_refuses_what_parse_would() {
        let mut big = Message::new(MessageType::Reply, 1);
        big.other.push((1000, vec![0; 70000]));
        let mut nested = Message::new(MessageType::Reply, 1);
        let mut ia = Ia::new(1, 0, 0);
        ia.other.push((opt::IAADDR, vec![]));
        nested.ia_na.push(ia);
        let mut pfx = Message::new(MessageType::Reply, 1);
        let mut ia = Ia::new(1, 0, 0);
        ia.items.push(IaPrefix {
            preferred: 0,
            valid: 0,
            len: 129,
            prefix: Ipv6Addr::UNSPECIFIED,
            status: None,
            other: Vec::new(),
        });
        pfx.ia_pd.push(ia);
        for r in [
            Repr::Message(Message::new(MessageType::Reply, 1 << 24)),
            Repr::Message(Message::new(MessageType::RelayForw, 1)),
            Repr::Message(Message {
                other: vec![(opt::PREFERENCE, vec![1])],
                ..Message::new(MessageType::Reply, 1)
            }),
            Repr::Message(big),
            Repr::Message(nested),
            Repr::Message(pfx),
            Repr::Relay(RelayMessage {
                msg_type: MessageType::RelayRepl,
                hop_count: 0,
                link_address: Ipv6Addr::UNSPECIFIED,
                peer_address: Ipv6Addr::UNSPECIFIED,
                relay_message: Vec::new(),
                interface_id: None,
                other: Vec::new(),
            }),
        ] {
            let mut v = vec![1, 2];
            assert_eq!(r.emit(&mut v), Err(Error::Malformed));
            assert_eq!(v, [1, 2], "nothing half-written");
        }
    }
}
