//! DHCPv4 messages: the BOOTP-derived fixed header and magic cookie (RFC 2131 §2,
//! §3 Figure 1; RFC 951), the options framing (RFC 2132 §2: pad, end, code/length/value;
//! §9.3 option overload; RFC 3396 §5: an option split over several instances is their
//! concatenation) and the options a server and a relay agent need: subnet mask (RFC 2132
//! §3.3), router (§3.5), DNS servers (§3.8), host name (§3.14), interface MTU (§5.1),
//! requested IP address (§9.1), lease time (§9.2), message type (§9.6), server
//! identifier (§9.7), parameter request list (§9.8), maximum message size (§9.10),
//! renewal T1 and rebinding T2 times (§9.11, §9.12), client identifier (§9.14),
//! relay agent information with circuit-id and remote-id (RFC 3046 §2.0–§2.2) and the
//! classless static routes (RFC 3442).
//!
//! [`Packet`] is a zero-copy checked view: `new_checked` validates the header length,
//! the magic cookie and the framing of every option area once (the `file` and `sname`
//! fields too when option 52 says they carry options), after which the getters and the
//! [`Options`] iterator cannot fail. [`Repr::parse`] decodes the options (concatenating
//! split instances) and checks the length and value of each option it knows;
//! [`Repr::emit`] appends a message to a `Vec` (control path), splitting options longer
//! than 255 octets (RFC 3396) and padding to the 300-octet BOOTP minimum (RFC 1542
//! §2.1). [`insert_relay_agent_info`] and [`remove_relay_agent_info`] are the relay
//! agent's in-line edits of option 82 (RFC 3046 §2.1, §2.2).
//!
//! ```text
//! | op | htype | hlen | hops |  xid (4)  | secs (2) | flags (2) |
//! | ciaddr (4) | yiaddr (4) | siaddr (4) | giaddr (4) | chaddr (16) |
//! | sname (64) | file (128) | magic cookie 99.130.83.99 | options ... | end |
//! ```

use super::bytes::{be16, be32};
use super::{Error, Result};
use alloc::vec::Vec;
use core::net::Ipv4Addr;

/// Length of the fixed BOOTP header, up to and without the magic cookie.
pub const HEADER_LEN: usize = 236;
/// The magic cookie that starts the options (RFC 2131 §3, RFC 2132 §2).
pub const MAGIC_COOKIE: [u8; 4] = [99, 130, 83, 99];
/// Shortest DHCP message: the header and the cookie.
pub const MIN_LEN: usize = HEADER_LEN + 4;
/// Length a message is padded to (the BOOTP vendor area of RFC 951 is 64 octets;
/// RFC 1542 §2.1 asks relay agents and servers to accept and send at least 300).
pub const BOOTP_MIN_LEN: usize = 300;
/// UDP port of servers and relay agents (RFC 2131 §4.1).
pub const SERVER_PORT: u16 = 67;
/// UDP port of clients.
pub const CLIENT_PORT: u16 = 68;
/// The broadcast bit of `flags` (RFC 2131 §2, Figure 2).
pub const FLAG_BROADCAST: u16 = 0x8000;
/// `htype` of Ethernet (RFC 1700 ARP hardware types).
pub const HTYPE_ETHERNET: u8 = 1;
/// Smallest maximum message size a client may announce (RFC 2132 §9.10).
pub const MIN_MAX_MESSAGE_SIZE: u16 = 576;
/// Smallest interface MTU (RFC 2132 §5.1).
pub const MIN_MTU: u16 = 68;

const SNAME: core::ops::Range<usize> = 44..108;
const FILE: core::ops::Range<usize> = 108..236;

/// `op` values (RFC 2131 §2).
pub mod op {
    /// Client to server.
    pub const BOOTREQUEST: u8 = 1;
    /// Server to client.
    pub const BOOTREPLY: u8 = 2;
}

/// Option codes (RFC 2132, RFC 3046, RFC 3442).
pub mod opt {
    /// Pad (§3.1).
    pub const PAD: u8 = 0;
    /// Subnet mask (§3.3).
    pub const SUBNET_MASK: u8 = 1;
    /// Router (§3.5).
    pub const ROUTER: u8 = 3;
    /// Domain name servers (§3.8).
    pub const DNS: u8 = 6;
    /// Host name (§3.14).
    pub const HOSTNAME: u8 = 12;
    /// Interface MTU (§5.1).
    pub const MTU: u8 = 26;
    /// Requested IP address (§9.1).
    pub const REQUESTED_IP: u8 = 50;
    /// IP address lease time (§9.2).
    pub const LEASE_TIME: u8 = 51;
    /// Option overload (§9.3).
    pub const OVERLOAD: u8 = 52;
    /// DHCP message type (§9.6).
    pub const MESSAGE_TYPE: u8 = 53;
    /// Server identifier (§9.7).
    pub const SERVER_ID: u8 = 54;
    /// Parameter request list (§9.8).
    pub const PARAMETER_REQUEST_LIST: u8 = 55;
    /// Message (§9.9).
    pub const MESSAGE: u8 = 56;
    /// Maximum DHCP message size (§9.10).
    pub const MAX_MESSAGE_SIZE: u8 = 57;
    /// Renewal (T1) time (§9.11).
    pub const RENEWAL_TIME: u8 = 58;
    /// Rebinding (T2) time (§9.12).
    pub const REBINDING_TIME: u8 = 59;
    /// Client identifier (§9.14).
    pub const CLIENT_ID: u8 = 61;
    /// Relay agent information (RFC 3046 §2.0).
    pub const RELAY_AGENT_INFO: u8 = 82;
    /// Classless static route (RFC 3442).
    pub const CLASSLESS_ROUTES: u8 = 121;
    /// End (§3.2).
    pub const END: u8 = 255;
}

/// Relay agent information sub-options (RFC 3046 §2.0).
pub mod sub {
    /// Agent Circuit ID (§3.1).
    pub const CIRCUIT_ID: u8 = 1;
    /// Agent Remote ID (§3.2).
    pub const REMOTE_ID: u8 = 2;
}

/// DHCP message types (RFC 2132 §9.6).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum MessageType {
    Discover = 1,
    Offer = 2,
    Request = 3,
    Decline = 4,
    Ack = 5,
    Nak = 6,
    Release = 7,
    Inform = 8,
}

impl MessageType {
    /// From the option's value; other values (RFC 4388 lease query, ...) are `None`.
    pub const fn from_u8(v: u8) -> Option<MessageType> {
        Some(match v {
            1 => MessageType::Discover,
            2 => MessageType::Offer,
            3 => MessageType::Request,
            4 => MessageType::Decline,
            5 => MessageType::Ack,
            6 => MessageType::Nak,
            7 => MessageType::Release,
            8 => MessageType::Inform,
            _ => return None,
        })
    }

    /// The name RFC 2131 uses (`DHCPDISCOVER`, ...), usable as a counter label.
    pub const fn as_str(self) -> &'static str {
        match self {
            MessageType::Discover => "DHCPDISCOVER",
            MessageType::Offer => "DHCPOFFER",
            MessageType::Request => "DHCPREQUEST",
            MessageType::Decline => "DHCPDECLINE",
            MessageType::Ack => "DHCPACK",
            MessageType::Nak => "DHCPNAK",
            MessageType::Release => "DHCPRELEASE",
            MessageType::Inform => "DHCPINFORM",
        }
    }
}

/// Which of `file` and `sname` carry options (RFC 2132 §9.3).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Overload {
    /// The `file` field holds options.
    pub file: bool,
    /// The `sname` field holds options.
    pub sname: bool,
}

impl Overload {
    fn from_value(v: &[u8]) -> Result<Overload> {
        match v {
            [1] => Ok(Overload {
                file: true,
                sname: false,
            }),
            [2] => Ok(Overload {
                file: false,
                sname: true,
            }),
            [3] => Ok(Overload {
                file: true,
                sname: true,
            }),
            _ => Err(Error::Malformed),
        }
    }
}

/// Checks the framing of one option area: every option fits, `end` (if present) is
/// followed by nothing but pad... or anything (RFC 2131 leaves octets after `end`
/// unspecified; they are ignored). Returns the overload value if the area holds
/// option 52.
fn check_area(mut b: &[u8]) -> Result<Option<&[u8]>> {
    let mut overload = None;
    loop {
        match *b {
            [] | [opt::END, ..] => return Ok(overload),
            [opt::PAD, ref rest @ ..] => b = rest,
            [_] => return Err(Error::Truncated),
            [code, len, ref rest @ ..] => {
                let len = usize::from(len);
                let v = rest.get(..len).ok_or(Error::Truncated)?;
                if code == opt::OVERLOAD {
                    if overload.is_some() {
                        return Err(Error::Malformed);
                    }
                    overload = Some(v);
                }
                b = &rest[len..];
            }
        }
    }
}

/// A checked, zero-copy view of a DHCP message.
#[derive(Debug, Clone, Copy)]
pub struct Packet<'a> {
    bytes: &'a [u8],
    overload: Overload,
}

impl<'a> Packet<'a> {
    /// Checks: at least [`MIN_LEN`] octets (`Truncated`), the magic cookie
    /// (`Malformed`), option framing in the options field and, when option 52 asks
    /// for it, in `file` and `sname` (an option running past its area is
    /// `Truncated`; option 52 with a bad length or value, twice, or outside the options
    /// field is `Malformed`).
    pub fn new_checked(bytes: &'a [u8]) -> Result<Packet<'a>> {
        if bytes.len() < MIN_LEN {
            return Err(Error::Truncated);
        }
        if bytes.get(HEADER_LEN..MIN_LEN) != Some(&MAGIC_COOKIE[..]) {
            return Err(Error::Malformed);
        }
        let overload = match check_area(&bytes[MIN_LEN..])? {
            Some(v) => Overload::from_value(v)?,
            None => Overload::default(),
        };
        // RFC 2131 §4.1: option 52 only in the options field.
        if overload.file && check_area(&bytes[FILE])?.is_some() {
            return Err(Error::Malformed);
        }
        if overload.sname && check_area(&bytes[SNAME])?.is_some() {
            return Err(Error::Malformed);
        }
        Ok(Packet { bytes, overload })
    }

    /// The message bytes.
    pub fn as_bytes(&self) -> &'a [u8] {
        self.bytes
    }
    /// `op`: [`op::BOOTREQUEST`] or [`op::BOOTREPLY`].
    pub fn op(&self) -> u8 {
        self.bytes[0]
    }
    /// Hardware address type.
    pub fn htype(&self) -> u8 {
        self.bytes[1]
    }
    /// Hardware address length.
    pub fn hlen(&self) -> u8 {
        self.bytes[2]
    }
    /// Relay hops.
    pub fn hops(&self) -> u8 {
        self.bytes[3]
    }
    /// Transaction id.
    pub fn xid(&self) -> u32 {
        be32(self.bytes, 4).unwrap_or(0)
    }
    /// Seconds since the client began.
    pub fn secs(&self) -> u16 {
        be16(self.bytes, 8).unwrap_or(0)
    }
    /// Flags (the broadcast bit is [`FLAG_BROADCAST`]).
    pub fn flags(&self) -> u16 {
        be16(self.bytes, 10).unwrap_or(0)
    }
    /// Whether the client asks for broadcast replies.
    pub fn broadcast(&self) -> bool {
        self.flags() & FLAG_BROADCAST != 0
    }
    fn addr(&self, at: usize) -> Ipv4Addr {
        Ipv4Addr::from(be32(self.bytes, at).unwrap_or(0))
    }
    /// Client IP address (only in BOUND, RENEW, REBINDING).
    pub fn ciaddr(&self) -> Ipv4Addr {
        self.addr(12)
    }
    /// "Your" (client) IP address.
    pub fn yiaddr(&self) -> Ipv4Addr {
        self.addr(16)
    }
    /// Next server IP address.
    pub fn siaddr(&self) -> Ipv4Addr {
        self.addr(20)
    }
    /// Relay agent IP address.
    pub fn giaddr(&self) -> Ipv4Addr {
        self.addr(24)
    }
    /// The 16-octet client hardware address field.
    pub fn chaddr(&self) -> [u8; 16] {
        let mut a = [0u8; 16];
        a.copy_from_slice(&self.bytes[28..44]);
        a
    }
    /// The client's MAC address when `htype`/`hlen` say Ethernet.
    pub fn client_mac(&self) -> Option<[u8; 6]> {
        if self.htype() != HTYPE_ETHERNET || self.hlen() != 6 {
            return None;
        }
        let mut a = [0u8; 6];
        a.copy_from_slice(&self.bytes[28..34]);
        Some(a)
    }
    /// The `sname` field (64 octets; options when overloaded).
    pub fn sname(&self) -> &'a [u8] {
        &self.bytes[SNAME]
    }
    /// The `file` field (128 octets; options when overloaded).
    pub fn file(&self) -> &'a [u8] {
        &self.bytes[FILE]
    }
    /// What option 52 says.
    pub fn overload(&self) -> Overload {
        self.overload
    }
    /// All options in RFC 2131 §4.1 order: the options field, then `file`, then
    /// `sname` when overloaded. Pad and end are not yielded.
    pub fn options(&self) -> Options<'a> {
        Options {
            rest: &self.bytes[MIN_LEN..],
            next: [
                self.overload.file.then(|| &self.bytes[FILE]),
                self.overload.sname.then(|| &self.bytes[SNAME]),
            ],
        }
    }
    /// The first instance of option `code`.
    pub fn option(&self, code: u8) -> Option<&'a [u8]> {
        self.options().find(|&(c, _)| c == code).map(|(_, v)| v)
    }
    /// The message type, if option 53 is present and valid.
    pub fn message_type(&self) -> Option<MessageType> {
        match self.option(opt::MESSAGE_TYPE) {
            Some(&[v]) => MessageType::from_u8(v),
            _ => None,
        }
    }
}

/// Iterator over the options of a checked [`Packet`]: `(code, value)`.
#[derive(Debug, Clone)]
pub struct Options<'a> {
    rest: &'a [u8],
    next: [Option<&'a [u8]>; 2],
}

impl<'a> Iterator for Options<'a> {
    type Item = (u8, &'a [u8]);
    fn next(&mut self) -> Option<Self::Item> {
        loop {
            match *self.rest {
                [opt::PAD, ref rest @ ..] => self.rest = rest,
                [code, len, ref rest @ ..] if code != opt::END => {
                    let len = usize::from(len);
                    let Some(v) = rest.get(..len) else {
                        self.rest = &[];
                        continue;
                    };
                    self.rest = &rest[len..];
                    return Some((code, v));
                }
                _ => {
                    // End of this area: move to the next overloaded one.
                    let n = self.next.iter_mut().find_map(Option::take)?;
                    self.rest = n;
                }
            }
        }
    }
}

/// One classless static route (RFC 3442): destination `prefix/len` via `router`
/// (`0.0.0.0` means on-link).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct ClasslessRoute {
    /// Destination network; bits beyond `len` are zero.
    pub prefix: Ipv4Addr,
    /// Prefix length, 0..=32.
    pub len: u8,
    /// Next hop.
    pub router: Ipv4Addr,
}

impl ClasslessRoute {
    /// A route with the host bits of `prefix` cleared; `None` if `len > 32`.
    pub fn new(prefix: Ipv4Addr, len: u8, router: Ipv4Addr) -> Option<ClasslessRoute> {
        if len > 32 {
            return None;
        }
        Some(ClasslessRoute {
            prefix: Ipv4Addr::from(u32::from(prefix) & mask(len)),
            len,
            router,
        })
    }
}

fn mask(len: u8) -> u32 {
    match len {
        0 => 0,
        l => u32::MAX << (32 - u32::from(l.min(32))),
    }
}

/// Decodes option 121 (RFC 3442 §3): per route a width octet (0..=32), the
/// significant octets of the destination, the router. An empty value, a width above
/// 32 or a route cut short is `Malformed`. Host bits set in the destination are
/// cleared (RFC 3442 §3 leaves them undefined).
pub fn decode_classless_routes(mut v: &[u8]) -> Result<Vec<ClasslessRoute>> {
    if v.is_empty() {
        return Err(Error::Malformed);
    }
    let mut out = Vec::new();
    while let [len, ref rest @ ..] = *v {
        if len > 32 {
            return Err(Error::Malformed);
        }
        let n = usize::from(len).div_ceil(8);
        let (dst, rest) = (rest.get(..n), rest.get(n..));
        let (Some(dst), Some(rest)) = (dst, rest) else {
            return Err(Error::Malformed);
        };
        let Some(gw) = rest.get(..4) else {
            return Err(Error::Malformed);
        };
        let mut d = [0u8; 4];
        d[..n].copy_from_slice(dst);
        out.push(ClasslessRoute {
            prefix: Ipv4Addr::from(u32::from_be_bytes(d) & mask(len)),
            len,
            router: Ipv4Addr::new(gw[0], gw[1], gw[2], gw[3]),
        });
        v = &rest[4..];
    }
    Ok(out)
}

/// Encodes routes as the value of option 121 (RFC 3442 §3), appending to `out`.
/// Routes with `len > 32` are `Malformed`.
pub fn encode_classless_routes(routes: &[ClasslessRoute], out: &mut Vec<u8>) -> Result<()> {
    for r in routes {
        if r.len > 32 {
            return Err(Error::Malformed);
        }
        let n = usize::from(r.len).div_ceil(8);
        out.push(r.len);
        let d = (u32::from(r.prefix) & mask(r.len)).to_be_bytes();
        out.extend_from_slice(&d[..n]);
        out.extend_from_slice(&r.router.octets());
    }
    Ok(())
}

/// Relay agent information (option 82, RFC 3046 §2.0).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct RelayAgentInfo {
    /// Agent Circuit ID (§3.1), e.g. the access port and VLANs.
    pub circuit_id: Option<Vec<u8>>,
    /// Agent Remote ID (§3.2), e.g. the subscriber's line id.
    pub remote_id: Option<Vec<u8>>,
    /// Other sub-options in order of appearance: `(code, value)`.
    pub other: Vec<(u8, Vec<u8>)>,
}

impl RelayAgentInfo {
    /// Parses the option's value: at least one sub-option (§2.0: length ≥ 2), each
    /// within the value; circuit-id and remote-id at most once and not empty (§3.1,
    /// §3.2: length ≥ 1). Errors are `Malformed`.
    pub fn parse(mut v: &[u8]) -> Result<RelayAgentInfo> {
        if v.len() < 2 {
            return Err(Error::Malformed);
        }
        let mut r = RelayAgentInfo::default();
        while let [code, len, ref rest @ ..] = *v {
            let len = usize::from(len);
            let val = rest.get(..len).ok_or(Error::Malformed)?;
            let slot = match code {
                sub::CIRCUIT_ID => Some(&mut r.circuit_id),
                sub::REMOTE_ID => Some(&mut r.remote_id),
                _ => None,
            };
            match slot {
                Some(s) => {
                    if s.is_some() || val.is_empty() {
                        return Err(Error::Malformed);
                    }
                    *s = Some(val.to_vec());
                }
                None => r.other.push((code, val.to_vec())),
            }
            v = &rest[len..];
        }
        if !v.is_empty() {
            return Err(Error::Malformed);
        }
        Ok(r)
    }

    /// Appends the option's value (circuit-id, remote-id, then the others).
    /// A sub-option longer than 255 octets, an empty circuit-id/remote-id or no
    /// sub-option at all is `Malformed`.
    pub fn emit_value(&self, out: &mut Vec<u8>) -> Result<()> {
        let start = out.len();
        let known = [
            (sub::CIRCUIT_ID, self.circuit_id.as_deref()),
            (sub::REMOTE_ID, self.remote_id.as_deref()),
        ];
        for (code, v) in known {
            if let Some(v) = v {
                if v.is_empty() {
                    return Err(Error::Malformed);
                }
                put_short(out, code, v)?;
            }
        }
        for (code, v) in &self.other {
            if matches!(*code, sub::CIRCUIT_ID | sub::REMOTE_ID) {
                return Err(Error::Malformed);
            }
            put_short(out, *code, v)?;
        }
        if out.len() == start {
            return Err(Error::Malformed);
        }
        Ok(())
    }
}

/// Appends `code, len, v` with `v` at most 255 octets.
fn put_short(out: &mut Vec<u8>, code: u8, v: &[u8]) -> Result<()> {
    let l = u8::try_from(v.len()).map_err(|_| Error::Malformed)?;
    out.push(code);
    out.push(l);
    out.extend_from_slice(v);
    Ok(())
}

/// Appends option `code` with `v`, split into instances of at most 255 octets
/// (RFC 3396 §7); an empty value is one instance of length 0.
fn put_option(out: &mut Vec<u8>, code: u8, v: &[u8]) {
    if v.is_empty() {
        out.extend_from_slice(&[code, 0]);
    }
    for c in v.chunks(255) {
        out.push(code);
        out.push(c.len() as u8);
        out.extend_from_slice(c);
    }
}

/// An owned DHCP message: the header fields and the decoded options.
///
/// Known options are typed fields; the rest are kept in `other` in order of first
/// appearance. Options split over several instances are concatenated (RFC 3396 §5).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Repr {
    pub op: u8,
    pub htype: u8,
    pub hlen: u8,
    pub hops: u8,
    pub xid: u32,
    pub secs: u16,
    pub flags: u16,
    pub ciaddr: Ipv4Addr,
    pub yiaddr: Ipv4Addr,
    pub siaddr: Ipv4Addr,
    pub giaddr: Ipv4Addr,
    pub chaddr: [u8; 16],
    /// Server host name, up to the first NUL (at most 64 octets); empty when the field
    /// carried options (overload).
    pub sname: Vec<u8>,
    /// Boot file name, up to the first NUL (at most 128 octets); empty when the field
    /// carried options (overload).
    pub file: Vec<u8>,
    /// Option 53.
    pub message_type: Option<MessageType>,
    /// Option 1.
    pub subnet_mask: Option<Ipv4Addr>,
    /// Option 3.
    pub routers: Vec<Ipv4Addr>,
    /// Option 6.
    pub dns_servers: Vec<Ipv4Addr>,
    /// Option 12.
    pub hostname: Option<Vec<u8>>,
    /// Option 26.
    pub mtu: Option<u16>,
    /// Option 50.
    pub requested_ip: Option<Ipv4Addr>,
    /// Option 51, seconds (`u32::MAX` is infinite).
    pub lease_time: Option<u32>,
    /// Option 54.
    pub server_id: Option<Ipv4Addr>,
    /// Option 55.
    pub parameter_request_list: Option<Vec<u8>>,
    /// Option 56.
    pub message: Option<Vec<u8>>,
    /// Option 57.
    pub max_message_size: Option<u16>,
    /// Option 58, seconds.
    pub renewal_time: Option<u32>,
    /// Option 59, seconds.
    pub rebinding_time: Option<u32>,
    /// Option 61: type octet and identifier.
    pub client_id: Option<Vec<u8>>,
    /// Option 121.
    pub classless_routes: Option<Vec<ClasslessRoute>>,
    /// Option 82.
    pub relay_agent_info: Option<RelayAgentInfo>,
    /// Other options, `(code, value)`, in order of first appearance.
    pub other: Vec<(u8, Vec<u8>)>,
}

impl Default for Repr {
    fn default() -> Self {
        Repr {
            op: op::BOOTREQUEST,
            htype: HTYPE_ETHERNET,
            hlen: 6,
            hops: 0,
            xid: 0,
            secs: 0,
            flags: 0,
            ciaddr: Ipv4Addr::UNSPECIFIED,
            yiaddr: Ipv4Addr::UNSPECIFIED,
            siaddr: Ipv4Addr::UNSPECIFIED,
            giaddr: Ipv4Addr::UNSPECIFIED,
            chaddr: [0; 16],
            sname: Vec::new(),
            file: Vec::new(),
            message_type: None,
            subnet_mask: None,
            routers: Vec::new(),
            dns_servers: Vec::new(),
            hostname: None,
            mtu: None,
            requested_ip: None,
            lease_time: None,
            server_id: None,
            parameter_request_list: None,
            message: None,
            max_message_size: None,
            renewal_time: None,
            rebinding_time: None,
            client_id: None,
            classless_routes: None,
            relay_agent_info: None,
            other: Vec::new(),
        }
    }
}

fn addr4(v: &[u8]) -> Result<Ipv4Addr> {
    match *v {
        [a, b, c, d] => Ok(Ipv4Addr::new(a, b, c, d)),
        _ => Err(Error::Malformed),
    }
}

fn addrs(v: &[u8]) -> Result<Vec<Ipv4Addr>> {
    let c = v.chunks_exact(4);
    if v.is_empty() || !c.remainder().is_empty() {
        return Err(Error::Malformed);
    }
    c.map(addr4).collect()
}

fn u32v(v: &[u8]) -> Result<u32> {
    match *v {
        [a, b, c, d] => Ok(u32::from_be_bytes([a, b, c, d])),
        _ => Err(Error::Malformed),
    }
}

fn u16v(v: &[u8], min: u16) -> Result<u16> {
    match *v {
        [a, b] if u16::from_be_bytes([a, b]) >= min => Ok(u16::from_be_bytes([a, b])),
        _ => Err(Error::Malformed),
    }
}

fn nonempty(v: &[u8]) -> Result<Vec<u8>> {
    if v.is_empty() {
        return Err(Error::Malformed);
    }
    Ok(v.to_vec())
}

fn cstr(v: &[u8]) -> Vec<u8> {
    let end = v.iter().position(|&b| b == 0).unwrap_or(v.len());
    v[..end].to_vec()
}

impl Repr {
    /// Decodes a checked packet. Each known option must have its RFC length and
    /// value: addresses 4 octets (lists a non-zero multiple of 4), times 4, MTU 2 and
    /// at least 68, maximum message size 2 and at least 576, message type 1..=8
    /// (another value is `Unsupported`), host name, message and parameter list at
    /// least 1 octet, client identifier at least 2 (RFC 2132 §9.14), option 121 and
    /// option 82 well formed; anything else is `Malformed`.
    pub fn parse(p: &Packet<'_>) -> Result<Repr> {
        // Concatenate instances of one code (RFC 3396 §5), in order of first
        // appearance.
        let mut opts: Vec<(u8, Vec<u8>)> = Vec::new();
        for (code, v) in p.options() {
            match opts.iter_mut().find(|(c, _)| *c == code) {
                Some((_, acc)) => acc.extend_from_slice(v),
                None => opts.push((code, v.to_vec())),
            }
        }
        let ov = p.overload();
        let mut r = Repr {
            op: p.op(),
            htype: p.htype(),
            hlen: p.hlen(),
            hops: p.hops(),
            xid: p.xid(),
            secs: p.secs(),
            flags: p.flags(),
            ciaddr: p.ciaddr(),
            yiaddr: p.yiaddr(),
            siaddr: p.siaddr(),
            giaddr: p.giaddr(),
            chaddr: p.chaddr(),
            sname: if ov.sname {
                Vec::new()
            } else {
                cstr(p.sname())
            },
            file: if ov.file { Vec::new() } else { cstr(p.file()) },
            ..Repr::default()
        };
        for (code, v) in opts {
            match code {
                opt::MESSAGE_TYPE => match *v {
                    [t] => {
                        r.message_type = Some(MessageType::from_u8(t).ok_or(Error::Unsupported)?)
                    }
                    _ => return Err(Error::Malformed),
                },
                opt::SUBNET_MASK => r.subnet_mask = Some(addr4(&v)?),
                opt::ROUTER => r.routers = addrs(&v)?,
                opt::DNS => r.dns_servers = addrs(&v)?,
                opt::HOSTNAME => r.hostname = Some(nonempty(&v)?),
                opt::MTU => r.mtu = Some(u16v(&v, MIN_MTU)?),
                opt::REQUESTED_IP => r.requested_ip = Some(addr4(&v)?),
                opt::LEASE_TIME => r.lease_time = Some(u32v(&v)?),
                opt::OVERLOAD => {} // applied by the view
                opt::SERVER_ID => r.server_id = Some(addr4(&v)?),
                opt::PARAMETER_REQUEST_LIST => r.parameter_request_list = Some(nonempty(&v)?),
                opt::MESSAGE => r.message = Some(nonempty(&v)?),
                opt::MAX_MESSAGE_SIZE => r.max_message_size = Some(u16v(&v, MIN_MAX_MESSAGE_SIZE)?),
                opt::RENEWAL_TIME => r.renewal_time = Some(u32v(&v)?),
                opt::REBINDING_TIME => r.rebinding_time = Some(u32v(&v)?),
                opt::CLIENT_ID => {
                    if v.len() < 2 {
                        return Err(Error::Malformed);
                    }
                    r.client_id = Some(v);
                }
                opt::CLASSLESS_ROUTES => r.classless_routes = Some(decode_classless_routes(&v)?),
                opt::RELAY_AGENT_INFO => r.relay_agent_info = Some(RelayAgentInfo::parse(&v)?),
                _ => r.other.push((code, v)),
            }
        }
        Ok(r)
    }

    /// Checks and parses `bytes` in one go.
    pub fn parse_bytes(bytes: &[u8]) -> Result<Repr> {
        Repr::parse(&Packet::new_checked(bytes)?)
    }

    /// Whether the broadcast bit is set.
    pub fn broadcast(&self) -> bool {
        self.flags & FLAG_BROADCAST != 0
    }

    /// The client's MAC address when `htype`/`hlen` say Ethernet.
    pub fn client_mac(&self) -> Option<[u8; 6]> {
        if self.htype != HTYPE_ETHERNET || self.hlen != 6 {
            return None;
        }
        let mut a = [0u8; 6];
        a.copy_from_slice(&self.chaddr[..6]);
        Some(a)
    }

    /// Whether option `code` is in the parameter request list.
    pub fn requests(&self, code: u8) -> bool {
        self.parameter_request_list
            .as_deref()
            .is_some_and(|l| l.contains(&code))
    }

    /// Appends the message to `out`: header, cookie, option 53 first, the typed
    /// options, `other`, option 82 last (RFC 3046 §2.1), end, and pad up to
    /// [`BOOTP_MIN_LEN`]. No overload is used. Fails with `Malformed` on a value the
    /// parser would refuse (so that what is emitted parses back to `self`): `sname`
    /// over 64 or `file` over 128 octets or holding a NUL, an empty list or string
    /// option, a short client identifier, an MTU below 68, a maximum message size
    /// below 576, a bad route or relay agent sub-option, or an `other` entry with a
    /// known, pad or end code or twice.
    pub fn emit(&self, out: &mut Vec<u8>) -> Result<()> {
        if self.sname.len() > 64 || self.file.len() > 128 {
            return Err(Error::Malformed);
        }
        if self.sname.contains(&0) || self.file.contains(&0) {
            return Err(Error::Malformed);
        }
        let start = out.len();
        out.extend_from_slice(&[self.op, self.htype, self.hlen, self.hops]);
        out.extend_from_slice(&self.xid.to_be_bytes());
        out.extend_from_slice(&self.secs.to_be_bytes());
        out.extend_from_slice(&self.flags.to_be_bytes());
        for a in [self.ciaddr, self.yiaddr, self.siaddr, self.giaddr] {
            out.extend_from_slice(&a.octets());
        }
        out.extend_from_slice(&self.chaddr);
        let mut field = |v: &[u8], n: usize| {
            out.extend_from_slice(v);
            out.resize(out.len() + n - v.len(), 0);
        };
        field(&self.sname, 64);
        field(&self.file, 128);
        out.extend_from_slice(&MAGIC_COOKIE);
        let res = self.emit_options(out);
        if res.is_err() {
            out.truncate(start);
            return res;
        }
        out.push(opt::END);
        let min = start + BOOTP_MIN_LEN;
        if out.len() < min {
            out.resize(min, opt::PAD);
        }
        Ok(())
    }

    fn emit_options(&self, out: &mut Vec<u8>) -> Result<()> {
        let bad = Err(Error::Malformed);
        if let Some(t) = self.message_type {
            put_option(out, opt::MESSAGE_TYPE, &[t as u8]);
        }
        if let Some(a) = self.server_id {
            put_option(out, opt::SERVER_ID, &a.octets());
        }
        if let Some(a) = self.requested_ip {
            put_option(out, opt::REQUESTED_IP, &a.octets());
        }
        for (code, t) in [
            (opt::LEASE_TIME, self.lease_time),
            (opt::RENEWAL_TIME, self.renewal_time),
            (opt::REBINDING_TIME, self.rebinding_time),
        ] {
            if let Some(t) = t {
                put_option(out, code, &t.to_be_bytes());
            }
        }
        if let Some(a) = self.subnet_mask {
            put_option(out, opt::SUBNET_MASK, &a.octets());
        }
        // RFC 3442 §2: routes before the router option, for clients that read in order.
        if let Some(routes) = &self.classless_routes {
            if routes.is_empty() {
                return bad;
            }
            let mut v = Vec::with_capacity(routes.len() * 9);
            encode_classless_routes(routes, &mut v)?;
            put_option(out, opt::CLASSLESS_ROUTES, &v);
        }
        for (code, list) in [(opt::ROUTER, &self.routers), (opt::DNS, &self.dns_servers)] {
            if !list.is_empty() {
                let v: Vec<u8> = list.iter().flat_map(|a| a.octets()).collect();
                put_option(out, code, &v);
            }
        }
        if let Some(m) = self.mtu {
            if m < MIN_MTU {
                return bad;
            }
            put_option(out, opt::MTU, &m.to_be_bytes());
        }
        if let Some(m) = self.max_message_size {
            if m < MIN_MAX_MESSAGE_SIZE {
                return bad;
            }
            put_option(out, opt::MAX_MESSAGE_SIZE, &m.to_be_bytes());
        }
        for (code, v, min) in [
            (opt::CLIENT_ID, &self.client_id, 2),
            (opt::HOSTNAME, &self.hostname, 1),
            (opt::PARAMETER_REQUEST_LIST, &self.parameter_request_list, 1),
            (opt::MESSAGE, &self.message, 1),
        ] {
            if let Some(v) = v {
                if v.len() < min {
                    return bad;
                }
                put_option(out, code, v);
            }
        }
        for (code, v) in &self.other {
            if is_typed(*code) || self.other.iter().filter(|(c, _)| c == code).count() > 1 {
                return bad;
            }
            put_option(out, *code, v);
        }
        if let Some(ra) = &self.relay_agent_info {
            let mut v = Vec::new();
            ra.emit_value(&mut v)?;
            put_option(out, opt::RELAY_AGENT_INFO, &v);
        }
        Ok(())
    }
}

/// Codes [`Repr`] keeps in a typed field (or that are framing).
fn is_typed(code: u8) -> bool {
    matches!(
        code,
        opt::PAD
            | opt::END
            | opt::SUBNET_MASK
            | opt::ROUTER
            | opt::DNS
            | opt::HOSTNAME
            | opt::MTU
            | opt::REQUESTED_IP
            | opt::LEASE_TIME
            | opt::OVERLOAD
            | opt::MESSAGE_TYPE
            | opt::SERVER_ID
            | opt::PARAMETER_REQUEST_LIST
            | opt::MESSAGE
            | opt::MAX_MESSAGE_SIZE
            | opt::RENEWAL_TIME
            | opt::REBINDING_TIME
            | opt::CLIENT_ID
            | opt::CLASSLESS_ROUTES
            | opt::RELAY_AGENT_INFO
    )
}

/// Where the options field's `end` option sits (or its end when there is none).
fn options_end(b: &[u8]) -> usize {
    let mut i = MIN_LEN;
    while let Some(&c) = b.get(i) {
        match c {
            opt::END => return i,
            opt::PAD => i += 1,
            _ => i += 2 + usize::from(b.get(i + 1).copied().unwrap_or(0)),
        }
    }
    b.len()
}

/// A relay agent's insertion of option 82 (RFC 3046 §2.1): copies `msg` to `out` with
/// the option added as the last one before `end`, followed by `end`; the octets that
/// followed `end` (pad) are dropped and the message is padded to [`BOOTP_MIN_LEN`].
/// A message that is not a valid DHCP message fails as [`Packet::new_checked`]; one
/// that already carries option 82 anywhere is `Malformed` (§2.1.1: a relay agent
/// must not add a second one).
pub fn insert_relay_agent_info(msg: &[u8], info: &RelayAgentInfo, out: &mut Vec<u8>) -> Result<()> {
    let p = Packet::new_checked(msg)?;
    if p.option(opt::RELAY_AGENT_INFO).is_some() {
        return Err(Error::Malformed);
    }
    let mut v = Vec::new();
    info.emit_value(&mut v)?;
    if v.len() > 255 {
        return Err(Error::Malformed);
    }
    let start = out.len();
    out.extend_from_slice(&msg[..options_end(msg)]);
    put_option(out, opt::RELAY_AGENT_INFO, &v);
    out.push(opt::END);
    if out.len() < start + BOOTP_MIN_LEN {
        out.resize(start + BOOTP_MIN_LEN, opt::PAD);
    }
    Ok(())
}

/// A relay agent's removal of option 82 from a server's reply before it goes to the
/// client (RFC 3046 §2.2): copies `msg` to `out` without any instance of option 82 in
/// the options field (the message keeps its length; freed space becomes pad after
/// `end`). Returns the removed option's value, if any. Fails as
/// [`Packet::new_checked`].
pub fn remove_relay_agent_info(msg: &[u8], out: &mut Vec<u8>) -> Result<Option<Vec<u8>>> {
    Packet::new_checked(msg)?;
    let start = out.len();
    let end = options_end(msg);
    out.extend_from_slice(&msg[..MIN_LEN]);
    let mut removed: Option<Vec<u8>> = None;
    let mut i = MIN_LEN;
    while i < end {
        match msg[i] {
            opt::PAD => {
                out.push(opt::PAD);
                i += 1;
            }
            code => {
                let n = 2 + usize::from(msg.get(i + 1).copied().unwrap_or(0));
                let o = msg.get(i..i + n).ok_or(Error::Truncated)?;
                if code == opt::RELAY_AGENT_INFO {
                    removed
                        .get_or_insert_with(Vec::new)
                        .extend_from_slice(&o[2..]);
                } else {
                    out.extend_from_slice(o);
                }
                i += n;
            }
        }
    }
    out.push(opt::END);
    let total = start + msg.len().max(end + 1);
    if out.len() < total {
        out.resize(total, opt::PAD);
    }
    Ok(removed)
}

#[cfg(test)]
mod tests {
    use super::*;
    use alloc::vec;

    fn discover() -> Repr {
        Repr {
            xid: 0x1234_5678,
            flags: FLAG_BROADCAST,
            chaddr: [2, 0, 0, 0, 0, 9, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0],
            message_type: Some(MessageType::Discover),
            requested_ip: Some(Ipv4Addr::new(100, 64, 0, 9)),
            parameter_request_list: Some(vec![1, 3, 6, 26, 121]),
            client_id: Some(vec![1, 2, 0, 0, 0, 0, 9]),
            hostname: Some(b"cpe".to_vec()),
            max_message_size: Some(1500),
            ..Repr::default()
        }
    }

    fn bytes(r: &Repr) -> Vec<u8> {
        let mut v = Vec::new();
        r.emit(&mut v).unwrap();
        v
    }

    #[test]
    fn emit_parse_round_trip() {
        let r = discover();
        let b = bytes(&r);
        assert_eq!(b.len(), BOOTP_MIN_LEN);
        assert_eq!(&b[236..240], &MAGIC_COOKIE);
        assert_eq!(&b[240..243], &[53, 1, 1], "message type first");
        let p = Packet::new_checked(&b).unwrap();
        assert_eq!(p.message_type(), Some(MessageType::Discover));
        assert_eq!(p.client_mac(), Some([2, 0, 0, 0, 0, 9]));
        assert!(p.broadcast());
        assert_eq!(p.xid(), 0x1234_5678);
        assert_eq!(Repr::parse(&p).unwrap(), r);

        let ack = Repr {
            op: op::BOOTREPLY,
            yiaddr: Ipv4Addr::new(100, 64, 0, 9),
            message_type: Some(MessageType::Ack),
            server_id: Some(Ipv4Addr::new(100, 64, 0, 1)),
            lease_time: Some(3600),
            renewal_time: Some(1800),
            rebinding_time: Some(3150),
            subnet_mask: Some(Ipv4Addr::new(255, 255, 255, 0)),
            routers: vec![Ipv4Addr::new(100, 64, 0, 1)],
            dns_servers: vec![Ipv4Addr::new(9, 9, 9, 9), Ipv4Addr::new(1, 1, 1, 1)],
            mtu: Some(1492),
            classless_routes: Some(vec![
                ClasslessRoute::new(Ipv4Addr::new(10, 0, 0, 0), 8, Ipv4Addr::new(100, 64, 0, 1))
                    .unwrap(),
                ClasslessRoute::new(Ipv4Addr::UNSPECIFIED, 0, Ipv4Addr::new(100, 64, 0, 1))
                    .unwrap(),
            ]),
            relay_agent_info: Some(RelayAgentInfo {
                circuit_id: Some(b"access0:100.7".to_vec()),
                remote_id: Some(b"line-42".to_vec()),
                other: vec![(9, vec![0, 0, 0, 1])],
            }),
            other: vec![(15, b"example.net".to_vec())],
            sname: b"bng".to_vec(),
            ..Repr::default()
        };
        assert_eq!(Repr::parse_bytes(&bytes(&ack)).unwrap(), ack);
    }

    /// RFC 3442 §3 examples: 0/0, 10/8, 10.17/16, 10.27.129/24, 10.229.0.128/25,
    /// 10.198.122.47/32.
    #[test]
    fn classless_routes_rfc3442_encoding() {
        let gw = Ipv4Addr::new(192, 0, 2, 1);
        let cases: [(&[u8], [u8; 4], u8); 6] = [
            (&[0], [0, 0, 0, 0], 0),
            (&[8, 10], [10, 0, 0, 0], 8),
            (&[16, 10, 17], [10, 17, 0, 0], 16),
            (&[24, 10, 27, 129], [10, 27, 129, 0], 24),
            (&[25, 10, 229, 0, 128], [10, 229, 0, 128], 25),
            (&[32, 10, 198, 122, 47], [10, 198, 122, 47], 32),
        ];
        let mut all = Vec::new();
        let mut routes = Vec::new();
        for (wire, dst, len) in cases {
            let r = ClasslessRoute::new(Ipv4Addr::from(dst), len, gw).unwrap();
            let mut v = Vec::new();
            encode_classless_routes(&[r], &mut v).unwrap();
            assert_eq!(&v[..wire.len()], wire);
            assert_eq!(&v[wire.len()..], &gw.octets());
            all.extend_from_slice(&v);
            routes.push(r);
        }
        assert_eq!(decode_classless_routes(&all).unwrap(), routes);
        // Host bits are cleared.
        let d = decode_classless_routes(&[8, 10, 1, 2, 3, 4]).unwrap();
        assert_eq!(d[0].prefix, Ipv4Addr::new(10, 0, 0, 0));
        let d = decode_classless_routes(&[7, 11, 1, 2, 3, 4]).unwrap();
        assert_eq!(d[0].prefix, Ipv4Addr::new(10, 0, 0, 0));
        for bad in [
            &[][..],
            &[33, 1, 2, 3, 4, 5, 6, 7, 8],
            &[8, 10, 1, 2, 3],
            &[24, 10],
        ] {
            assert_eq!(
                decode_classless_routes(bad),
                Err(Error::Malformed),
                "{bad:?}"
            );
        }
        assert!(ClasslessRoute::new(gw, 33, gw).is_none());
    }

    #[test]
    fn strict_framing_is_a_typed_error() {
        let good = bytes(&discover());
        assert_eq!(
            Packet::new_checked(&good[..239]).unwrap_err(),
            Error::Truncated
        );
        assert_eq!(Packet::new_checked(&[]).unwrap_err(), Error::Truncated);
        let mut b = good.clone();
        b[236] = 0;
        assert_eq!(Packet::new_checked(&b).unwrap_err(), Error::Malformed);
        // An option running past the end.
        let mut b = good[..240].to_vec();
        b.extend_from_slice(&[53, 1, 1, 12, 10, b'x']);
        assert_eq!(Packet::new_checked(&b).unwrap_err(), Error::Truncated);
        // A code without its length octet.
        let mut b = good[..240].to_vec();
        b.extend_from_slice(&[53, 1, 1, 12]);
        assert_eq!(Packet::new_checked(&b).unwrap_err(), Error::Truncated);
        // No end option is accepted when the options fill the message exactly.
        let mut b = good[..240].to_vec();
        b.extend_from_slice(&[53, 1, 1]);
        let r = Repr::parse_bytes(&b).unwrap();
        assert_eq!(r.message_type, Some(MessageType::Discover));
        // Bad lengths of known options.
        for o in [
            &[53, 2, 1, 1][..],
            &[53, 1, 9],
            &[1, 3, 255, 255, 255],
            &[3, 5, 1, 2, 3, 4, 5],
            &[6, 0],
            &[26, 2, 0, 67],
            &[57, 2, 2, 63],
            &[51, 3, 0, 0, 1],
            &[61, 1, 1],
            &[12, 0],
            &[55, 0],
            &[82, 0],
            &[82, 3, 1, 5, 0],
            &[82, 2, 1, 0],
            &[121, 2, 8, 10],
            &[52, 1, 4],
            &[52, 2, 1, 1],
        ] {
            let mut b = good[..240].to_vec();
            b.extend_from_slice(o);
            b.push(255);
            let e = Repr::parse_bytes(&b).unwrap_err();
            let want = if o == [53, 1, 9] {
                Error::Unsupported
            } else {
                Error::Malformed
            };
            assert_eq!(e, want, "{o:?}");
        }
    }

    /// RFC 2132 §9.3: options continue in `file`, then `sname`; RFC 3396: split
    /// options concatenate.
    #[test]
    fn overload_and_split_options() {
        let mut b = bytes(&Repr::default())[..240].to_vec();
        b.extend_from_slice(&[53, 1, 3, 52, 1, 3, 6, 4, 1, 1, 1, 1, 255]);
        b[108..114].copy_from_slice(&[6, 4, 8, 8, 8, 8]);
        b[114] = 255;
        b[44..48].copy_from_slice(&[12, 2, b'h', b'i']);
        b[48] = 255;
        b[60] = b'x'; // after end: ignored
        let p = Packet::new_checked(&b).unwrap();
        assert_eq!(
            p.overload(),
            Overload {
                file: true,
                sname: true
            }
        );
        let r = Repr::parse(&p).unwrap();
        assert_eq!(
            r.dns_servers,
            [Ipv4Addr::new(1, 1, 1, 1), Ipv4Addr::new(8, 8, 8, 8)]
        );
        assert_eq!(r.hostname.as_deref(), Some(&b"hi"[..]));
        assert!(r.sname.is_empty() && r.file.is_empty());
        assert_eq!(r.message_type, Some(MessageType::Request));
        assert_eq!(Repr::parse_bytes(&bytes(&r)).unwrap(), r);
        // Option 52 in an overloaded field, or an option running past `file`.
        let mut b2 = b.clone();
        b2[115..118].copy_from_slice(&[52, 1, 1]);
        b2[114] = 0;
        b2[118] = 255;
        assert_eq!(Packet::new_checked(&b2).unwrap_err(), Error::Malformed);
        let mut b3 = b.clone();
        b3[230..236].copy_from_slice(&[0, 0, 0, 0, 15, 9]);
        b3[114] = 0;
        for x in &mut b3[115..230] {
            *x = 0;
        }
        assert_eq!(Packet::new_checked(&b3).unwrap_err(), Error::Truncated);
        // A long option is split on emit and joins again on parse.
        let r = Repr {
            other: vec![(43, vec![7; 600])],
            classless_routes: Some(vec![
                ClasslessRoute::new(
                    Ipv4Addr::new(10, 0, 0, 0),
                    24,
                    Ipv4Addr::new(1, 2, 3, 4)
                )
                .unwrap();
                40
            ]),
            ..Repr::default()
        };
        let b = bytes(&r);
        assert_eq!(Packet::new_checked(&b).unwrap().options().count(), 3 + 2);
        assert_eq!(Repr::parse_bytes(&b).unwrap(), r);
    }

    #[test]
    fn relay_agent_info_insert_parse_remove() {
        let msg = bytes(&discover());
        let info = RelayAgentInfo {
            circuit_id: Some(b"eth0:100.7".to_vec()),
            remote_id: Some(b"02:00:00:00:00:09".to_vec()),
            other: Vec::new(),
        };
        let mut with = Vec::new();
        insert_relay_agent_info(&msg, &info, &mut with).unwrap();
        let p = Packet::new_checked(&with).unwrap();
        let last = p.options().last().unwrap();
        assert_eq!(
            last.0,
            opt::RELAY_AGENT_INFO,
            "option 82 is the last option"
        );
        let r = Repr::parse(&p).unwrap();
        assert_eq!(r.relay_agent_info.as_ref(), Some(&info));
        assert_eq!(
            Repr {
                relay_agent_info: None,
                ..r
            },
            discover()
        );
        // Not twice.
        let mut again = Vec::new();
        assert_eq!(
            insert_relay_agent_info(&with, &info, &mut again),
            Err(Error::Malformed)
        );
        let mut without = Vec::new();
        let removed = remove_relay_agent_info(&with, &mut without).unwrap();
        assert_eq!(RelayAgentInfo::parse(&removed.unwrap()).unwrap(), info);
        assert_eq!(without.len(), with.len());
        assert_eq!(Repr::parse_bytes(&without).unwrap(), discover());
        let mut none = Vec::new();
        assert_eq!(remove_relay_agent_info(&msg, &mut none), Ok(None));
        assert_eq!(none, msg);
        // An empty relay agent info cannot be inserted.
        let mut x = Vec::new();
        assert_eq!(
            insert_relay_agent_info(&msg, &RelayAgentInfo::default(), &mut x),
            Err(Error::Malformed)
        );
        assert!(x.is_empty());
    }

    #[test]
    fn emit_refuses_what_parse_would() {
        for r in [
            Repr {
                mtu: Some(10),
                ..Repr::default()
            },
            Repr {
                client_id: Some(vec![1]),
                ..Repr::default()
            },
            Repr {
                other: vec![(opt::ROUTER, vec![1, 2, 3, 4])],
                ..Repr::default()
            },
            Repr {
                sname: vec![b'a'; 65],
                ..Repr::default()
            },
            Repr {
                classless_routes: Some(Vec::new()),
                ..Repr::default()
            },
        ] {
            let mut v = vec![1, 2];
            assert_eq!(r.emit(&mut v), Err(Error::Malformed));
            assert_eq!(v, [1, 2], "nothing half-written");
        }
    }
}
