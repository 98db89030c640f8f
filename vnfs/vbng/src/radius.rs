//! RADIUS client for the vBNG, sans-IO: authentication (RFC 2865 §4.1–§4.3 with
//! Message-Authenticator, RFC 3579 §3.2), accounting Start/Interim-Update/Stop with
//! 64-bit counters split into Gigawords (RFC 2866 §5, RFC 2869 §5.1–§5.2),
//! retransmission with exponential back-off and failover across servers (RFC 5080 §2.2:
//! a retransmission keeps Identifier and Authenticator), and the dynamic authorization
//! server side (RFC 5176: Disconnect-Request and CoA-Request → ACK/NAK).
//!
//! Replies to Access-Requests must carry a valid Message-Authenticator (RFC 3579 §3.2;
//! the BlastRADIUS mitigation, CVE-2024-3596) unless
//! [`ClientConfig::require_message_authenticator`] is off: replies without one or with
//! a bad one are dropped and counted.
//!
//! Accounting is not given up when the servers do not answer (RFC 2866 §2: the client
//! keeps trying). Every record is kept in a bounded queue
//! ([`ClientConfig::acct_queue_limit`]; a record refused because it is full is counted
//! and reported as [`Event::AcctDropped`]) until a server acknowledges it: `tries`
//! transmissions per server, failover through all servers, then a new round after a
//! back-off that doubles up to [`ClientConfig::acct_retry_max_ms`]. Only the explicit
//! age limit [`ClientConfig::acct_max_age_ms`] gives a record up (counted, reported with
//! its Acct-Session-Id and User-Name). A record carries everything it needs, so its
//! session may be long gone. A waiting Interim-Update is dropped (counted) once a newer
//! Interim-Update or the Stop of its session is queued: they carry running totals. Each new transmission after a failover or back-off carries
//! the current Acct-Delay-Time (RFC 2866 §5.2), so it is new content with a new
//! Identifier and a new Request Authenticator; retransmissions within one server's
//! `tries` stay byte-identical. With [`ClientConfig::acct_journal`] on, the client
//! reports [`JournalOp`]s (record added / acknowledged or given up) that the `std` side
//! writes to a file ([`crate::acct_journal`]) and replays with [`Client::restore_acct`]
//! after a restart.
//!
//! The client produces datagrams to send and consumes datagrams received; time is
//! passed in. The `std` transport (UDP sockets) is in [`crate::radius_io`].

use alloc::collections::{BTreeMap, VecDeque};
use alloc::string::String;
use alloc::vec;
use alloc::vec::Vec;
use core::net::SocketAddr;
use dataplane::proto::radius::{
    attr, code, verify_request_md5, verify_response, verify_response_authenticator, vsa, Builder,
    Packet,
};

/// One RADIUS server. `Debug` does not print the secret; it is zeroized on drop.
#[derive(Clone, PartialEq, Eq)]
pub struct Server {
    /// Address and port.
    pub addr: SocketAddr,
    /// Shared secret.
    pub secret: Vec<u8>,
}

impl core::fmt::Debug for Server {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("Server")
            .field("addr", &self.addr)
            .field("secret", &"<redacted>")
            .finish()
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        zeroize::Zeroize::zeroize(&mut self.secret);
    }
}

/// A shared secret held outside a [`Server`] (the CoA/DM secret): `Debug` prints
/// `"<redacted>"`, zeroized on drop.
#[derive(Clone, Default, PartialEq, Eq)]
pub struct Key(pub Vec<u8>);

impl core::fmt::Debug for Key {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.write_str("\"<redacted>\"")
    }
}

impl Drop for Key {
    fn drop(&mut self) {
        zeroize::Zeroize::zeroize(&mut self.0);
    }
}

/// Client configuration.
#[derive(Debug, Clone)]
pub struct ClientConfig {
    /// Authentication servers in failover order.
    pub auth: Vec<Server>,
    /// Accounting servers in failover order.
    pub acct: Vec<Server>,
    /// First retransmission timeout, ms.
    pub timeout_ms: u64,
    /// Upper bound of the back-off, ms.
    pub max_timeout_ms: u64,
    /// Transmissions per server before failing over.
    pub tries: u8,
    /// How long a server that failed is skipped for new requests, ms.
    pub dead_ms: u64,
    /// Number of source sockets (each has 256 identifiers).
    pub channels: u8,
    /// Drop Access-Accept/-Reject/-Challenge without a valid Message-Authenticator
    /// (RFC 3579 §3.2, BlastRADIUS mitigation).
    pub require_message_authenticator: bool,
    /// Accounting records kept (in flight, waiting, retrying) before new ones are
    /// refused.
    pub acct_queue_limit: usize,
    /// Give an accounting record up after this long, ms (0 = never).
    pub acct_max_age_ms: u64,
    /// Upper bound of the back-off between accounting retry rounds, ms.
    pub acct_retry_max_ms: u64,
    /// Report [`JournalOp`]s for a persistent journal.
    pub acct_journal: bool,
}

impl Default for ClientConfig {
    fn default() -> Self {
        ClientConfig {
            auth: Vec::new(),
            acct: Vec::new(),
            timeout_ms: 1000,
            max_timeout_ms: 8000,
            tries: 3,
            dead_ms: 30_000,
            channels: 4,
            require_message_authenticator: true,
            acct_queue_limit: 100_000,
            acct_max_age_ms: 86_400_000,
            acct_retry_max_ms: 60_000,
            acct_journal: false,
        }
    }
}

/// Which service a request goes to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Service {
    /// Authentication (port 1812).
    Auth,
    /// Accounting (port 1813).
    Acct,
}

/// A request before encoding; encoded per server (each has its own secret). `Debug`
/// does not print the password; it is zeroized on drop.
#[derive(Clone, PartialEq, Eq)]
pub struct Request {
    /// Auth or accounting.
    pub service: Service,
    /// Attributes (type, value) in order, without User-Password/Message-Authenticator.
    pub attrs: Vec<(u8, Vec<u8>)>,
    /// Cleartext PAP password, hidden per server (RFC 2865 §5.2).
    pub password: Option<Vec<u8>>,
}

impl core::fmt::Debug for Request {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("Request")
            .field("service", &self.service)
            .field("attrs", &self.attrs)
            .field("password", &self.password.as_ref().map(|_| "<redacted>"))
            .finish()
    }
}

impl Drop for Request {
    fn drop(&mut self) {
        if let Some(p) = self.password.as_mut() {
            zeroize::Zeroize::zeroize(p);
        }
    }
}

/// Data to send.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Transmit {
    /// Source channel (socket) index.
    pub channel: u8,
    /// Destination.
    pub to: SocketAddr,
    /// The datagram.
    pub bytes: Vec<u8>,
}

/// What the client reports.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Event {
    /// A verified response to request `tag`.
    Response {
        /// The caller's tag.
        tag: u64,
        /// Response code.
        code: u8,
        /// The parsed reply (authorization data for Access-Accept), boxed to keep the
        /// event small.
        reply: alloc::boxed::Box<Reply>,
        /// Which server answered.
        server: SocketAddr,
    },
    /// All servers failed for request `tag` (authentication only: accounting is
    /// retried until acknowledged or given up, see [`Event::AcctDropped`]).
    Timeout {
        /// The caller's tag.
        tag: u64,
    },
    /// An accounting record was not (or will no longer be) delivered.
    AcctDropped {
        /// Why.
        reason: AcctDrop,
        /// Acct-Session-Id of the record.
        session_id: String,
        /// User-Name of the record.
        user: Vec<u8>,
        /// Acct-Status-Type (1 Start, 2 Stop, 3 Interim-Update).
        status: u32,
        /// How long the record had been waiting, ms.
        age_ms: u64,
    },
}

/// Why an accounting record was dropped.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AcctDrop {
    /// The queue held `acct_queue_limit` records: this new one was refused.
    QueueFull,
    /// Not acknowledged within `acct_max_age_ms`.
    MaxAge,
    /// Could not be encoded (too large, or no accounting server configured any more
    /// for a record restored from the journal).
    Unencodable,
}

/// A change to the set of unacknowledged accounting records, for a journal.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum JournalOp {
    /// A record to keep until it is removed.
    Add {
        /// Record id (unique within the journal).
        id: u64,
        /// Age of the record when added, ms (0 for a new record).
        age_ms: u64,
        /// The Accounting-Request.
        req: Request,
    },
    /// The record was acknowledged or given up.
    Remove {
        /// Record id.
        id: u64,
    },
}

/// Authorization data from an Access-Accept (and rate data from CoA).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Reply {
    /// Framed-IP-Address.
    pub framed_ip: Option<u32>,
    /// Framed-Pool.
    pub framed_pool: Option<String>,
    /// Session-Timeout, s.
    pub session_timeout: Option<u32>,
    /// Idle-Timeout, s.
    pub idle_timeout: Option<u32>,
    /// Acct-Interim-Interval, s.
    pub interim_interval: Option<u32>,
    /// Rate limit (up, down) bit/s from Mikrotik-Rate-Limit or WISPr-Bandwidth-Max-*.
    pub rate: Option<(u64, u64)>,
    /// Class (echoed in accounting, RFC 2865 §5.25).
    pub class: Option<Vec<u8>>,
    /// Reply-Message.
    pub message: Option<Vec<u8>>,
    /// Framed-IPv6-Prefix (RFC 3162 §2.3): (prefix octets, length); see
    /// [`Reply::ipv6_prefix`].
    pub framed_ipv6_prefix: Option<([u8; 16], u8)>,
    /// Framed-IPv6-Pool (RFC 3162 §2.4).
    pub framed_ipv6_pool: Option<String>,
    /// Delegated-IPv6-Prefix (RFC 4818 §3): the DHCPv6 IA_PD prefix the subscriber
    /// gets, (prefix octets, length).
    pub delegated_ipv6_prefix: Option<([u8; 16], u8)>,
    /// Framed-IPv6-Address (RFC 6911 §3.1): the DHCPv6 IA_NA address an IPoE
    /// subscriber gets.
    pub framed_ipv6_address: Option<[u8; 16]>,
}

/// Decode a Framed-IPv6-Prefix value (RFC 3162 §2.3): reserved octet, prefix length
/// (0..=128), then as many prefix octets as the length needs (up to 16). Bits past the
/// length are cleared. `None` when malformed.
pub fn parse_ipv6_prefix(v: &[u8]) -> Option<(u128, u8)> {
    let (&len, bytes) = v.get(1..)?.split_first()?;
    if len > 128 || bytes.len() > 16 || bytes.len() * 8 < usize::from(len) {
        return None;
    }
    let mut a = [0u8; 16];
    a.get_mut(..bytes.len())?.copy_from_slice(bytes);
    let mask = if len == 0 {
        0
    } else {
        u128::MAX << (128 - u32::from(len))
    };
    Some((u128::from_be_bytes(a) & mask, len))
}

/// Encode a Framed-IPv6-Prefix value (RFC 3162 §2.3) with the octets the length needs.
pub fn ipv6_prefix_value(prefix: u128, len: u8) -> Vec<u8> {
    let len = len.min(128);
    let n = usize::from(len).div_ceil(8);
    let mut v = Vec::with_capacity(2 + n);
    v.extend_from_slice(&[0, len]);
    v.extend_from_slice(prefix.to_be_bytes().get(..n).unwrap_or(&[]));
    v
}

/// Parse a rate like `10M`, `512k`, `1G`, `2000000` into bit/s.
pub fn parse_rate(s: &str) -> Option<u64> {
    let s = s.trim();
    let (num, mult) = match s.as_bytes().last()? {
        b'k' | b'K' => (&s[..s.len() - 1], 1_000),
        b'm' | b'M' => (&s[..s.len() - 1], 1_000_000),
        b'g' | b'G' => (&s[..s.len() - 1], 1_000_000_000),
        _ => (s, 1),
    };
    num.parse::<u64>().ok()?.checked_mul(mult)
}

impl Reply {
    /// Delegated-IPv6-Prefix as (prefix, length).
    pub fn delegated_prefix(&self) -> Option<(u128, u8)> {
        self.delegated_ipv6_prefix
            .map(|(a, l)| (u128::from_be_bytes(a), l))
    }

    /// Framed-IPv6-Prefix as (prefix, length).
    pub fn ipv6_prefix(&self) -> Option<(u128, u8)> {
        self.framed_ipv6_prefix
            .map(|(a, l)| (u128::from_be_bytes(a), l))
    }

    /// Extract what the vBNG applies from a response packet.
    pub fn from_packet(p: &Packet<'_>) -> Reply {
        let text = |v: &[u8]| core::str::from_utf8(v).ok().map(String::from);
        let mut r = Reply {
            framed_ip: p
                .attr(attr::FRAMED_IP_ADDRESS)
                .and_then(|v| <[u8; 4]>::try_from(v).ok())
                .map(u32::from_be_bytes),
            framed_pool: p.attr(attr::FRAMED_POOL).and_then(text),
            session_timeout: p.attr_u32(attr::SESSION_TIMEOUT),
            idle_timeout: p.attr_u32(attr::IDLE_TIMEOUT),
            interim_interval: p.attr_u32(attr::ACCT_INTERIM_INTERVAL),
            rate: None,
            class: p.attr(attr::CLASS).map(|v| v.to_vec()),
            message: p.attr(attr::REPLY_MESSAGE).map(|v| v.to_vec()),
            framed_ipv6_prefix: p
                .attr(attr::FRAMED_IPV6_PREFIX)
                .and_then(parse_ipv6_prefix)
                .map(|(a, l)| (a.to_be_bytes(), l)),
            framed_ipv6_pool: p.attr(attr::FRAMED_IPV6_POOL).and_then(text),
            // Same encoding as Framed-IPv6-Prefix (RFC 4818 §3).
            delegated_ipv6_prefix: p
                .attr(attr::DELEGATED_IPV6_PREFIX)
                .and_then(parse_ipv6_prefix)
                .map(|(a, l)| (a.to_be_bytes(), l)),
            framed_ipv6_address: p
                .attr(attr::FRAMED_IPV6_ADDRESS)
                .and_then(|v| <[u8; 16]>::try_from(v).ok()),
        };
        if let Some(s) = p
            .vsa(vsa::MIKROTIK, vsa::MIKROTIK_RATE_LIMIT)
            .and_then(|v| core::str::from_utf8(v).ok())
        {
            // "rx[/tx] ..." – rx is what the router receives = subscriber upload.
            let first = s.split_whitespace().next().unwrap_or("");
            let mut it = first.split('/');
            let up = it.next().and_then(parse_rate);
            let down = it.next().and_then(parse_rate).or(up);
            if let (Some(u), Some(d)) = (up, down) {
                r.rate = Some((u, d));
            }
        }
        let w = |t| {
            p.vsa(vsa::WISPR, t)
                .and_then(|v| <[u8; 4]>::try_from(v).ok())
                .map(|b| u64::from(u32::from_be_bytes(b)))
        };
        if let (Some(u), Some(d)) = (w(vsa::WISPR_BW_MAX_UP), w(vsa::WISPR_BW_MAX_DOWN)) {
            r.rate = Some((u, d));
        }
        r
    }
}

#[derive(Debug, Clone)]
struct Pending {
    tag: u64,
    req: Request,
    server: usize,
    tries_left: u8,
    timeout: u64,
    deadline: u64,
    bytes: Vec<u8>,
    auth: [u8; 16],
    acct: Option<AcctMeta>,
}

/// Retry state of one accounting record.
#[derive(Debug, Clone, Copy)]
struct AcctMeta {
    id: u64,
    /// When it was queued here (ms, our clock).
    created: u64,
    /// Age it already had then (restored from a journal), ms.
    prior_ms: u64,
    /// Back-off before the next round, ms (0 = none yet).
    backoff_ms: u64,
    /// Servers still to try in this round after the current one.
    round_left: usize,
}

impl AcctMeta {
    fn age(&self, now: u64) -> u64 {
        self.prior_ms + now.saturating_sub(self.created)
    }
}

/// An accounting record waiting for a slot or for its next round.
#[derive(Debug, Clone)]
struct AcctItem {
    meta: AcctMeta,
    req: Request,
    /// Server to use (failover within a round); `None` = start a new round.
    server: Option<usize>,
}

fn req_attr(req: &Request, t: u8) -> Option<&[u8]> {
    req.attrs
        .iter()
        .find(|(a, _)| *a == t)
        .map(|(_, v)| v.as_slice())
}

/// Acct-Status-Type of an Accounting-Request (0 if absent).
fn acct_status(req: &Request) -> u32 {
    req_attr(req, attr::ACCT_STATUS_TYPE)
        .and_then(|v| <[u8; 4]>::try_from(v).ok())
        .map_or(0, u32::from_be_bytes)
}

/// Set Acct-Delay-Time (RFC 2866 §5.2) of an Accounting-Request, s.
fn set_delay(req: &mut Request, secs: u32) {
    let v = secs.to_be_bytes().to_vec();
    match req
        .attrs
        .iter_mut()
        .find(|(a, _)| *a == attr::ACCT_DELAY_TIME)
    {
        Some(a) => a.1 = v,
        None => req.attrs.push((attr::ACCT_DELAY_TIME, v)),
    }
}

/// Counters.
#[derive(Debug, Clone, Copy, Default)]
pub struct ClientStats {
    /// Requests submitted.
    pub requests: u64,
    /// Retransmissions.
    pub retransmits: u64,
    /// Failovers to the next server.
    pub failovers: u64,
    /// Requests that failed on all servers.
    pub timeouts: u64,
    /// Responses that failed verification or matched nothing.
    pub bad_responses: u64,
    /// Requests waiting for a free identifier.
    pub queued: u64,
    /// Access replies dropped for lack of a Message-Authenticator (RFC 3579 §3.2).
    pub missing_message_authenticator: u64,
    /// Access replies dropped for a bad Message-Authenticator.
    pub bad_message_authenticator: u64,
    /// Accounting records accepted into the queue (including restored ones).
    pub acct_queued: u64,
    /// Accounting records acknowledged by a server.
    pub acct_acked: u64,
    /// Retry rounds: every accounting server failed for a record, which waits and
    /// starts over.
    pub acct_retry_rounds: u64,
    /// Accounting records refused because the queue was full.
    pub acct_overflow: u64,
    /// Accounting records given up by the age policy (or unencodable).
    pub acct_given_up: u64,
    /// Interim-Updates not sent because a newer Interim-Update or the Stop of the
    /// same session was queued (they carry running totals).
    pub acct_superseded: u64,
}

/// The client.
#[derive(Debug, Clone)]
pub struct Client {
    cfg: ClientConfig,
    /// Requests in flight by slot (`channel * 256 + Identifier`): only live
    /// requests are stored, so scans, clones and drops cost what is in flight, not
    /// the `channels × 256` slots that could be.
    pending: BTreeMap<u16, Pending>,
    /// Number of slots (`channels × 256`).
    slots: usize,
    next_slot: usize,
    in_flight: usize,
    /// No pending request is due before this time (a lower bound: answered requests
    /// may leave it early), so `poll` skips the scan of every slot until then.
    next_due: u64,
    backlog: VecDeque<(u64, Request)>,
    /// Accounting records ready to be sent (failovers in front).
    acct_ready: VecDeque<AcctItem>,
    /// Accounting records waiting for their next round, by (due, id).
    acct_delayed: BTreeMap<(u64, u64), AcctItem>,
    /// Unacknowledged accounting records: ready, delayed and in flight.
    acct_count: usize,
    next_acct_id: u64,
    /// Acct-Session-Id → the newest queued Interim-Update.
    latest_interim: hashbrown::HashMap<Vec<u8>, u64>,
    /// Records made redundant by a newer one of their session, dropped when next due.
    superseded: hashbrown::HashSet<u64>,
    journal: Vec<JournalOp>,
    dead_until: [Vec<u64>; 2],
    rng: crate::rng::Rng,
    out: Vec<Transmit>,
    events: Vec<Event>,
    /// Counters.
    pub stats: ClientStats,
}

/// The pending-table key of Identifier `id` on channel `c` (`c < 256`).
fn slot_of(c: usize, id: u8) -> u16 {
    ((c as u16) << 8) | u16::from(id)
}

fn svc_index(s: Service) -> usize {
    match s {
        Service::Auth => 0,
        Service::Acct => 1,
    }
}

impl Client {
    /// New client.
    pub fn new(cfg: ClientConfig, rng: crate::rng::Rng) -> Client {
        let ch = usize::from(cfg.channels.max(1));
        let dead = [vec![0; cfg.auth.len()], vec![0; cfg.acct.len()]];
        Client {
            pending: BTreeMap::new(),
            slots: ch * 256,
            cfg,
            next_slot: 0,
            in_flight: 0,
            next_due: u64::MAX,
            backlog: VecDeque::new(),
            acct_ready: VecDeque::new(),
            acct_delayed: BTreeMap::new(),
            acct_count: 0,
            next_acct_id: 1,
            latest_interim: hashbrown::HashMap::new(),
            superseded: hashbrown::HashSet::new(),
            journal: Vec::new(),
            dead_until: dead,
            rng,
            out: Vec::new(),
            events: Vec::new(),
            stats: ClientStats::default(),
        }
    }

    /// The configuration.
    pub fn config(&self) -> &ClientConfig {
        &self.cfg
    }

    /// Replaces the servers (a management change while sessions run). Requests in
    /// flight were encoded for the old servers (their secrets and identifiers): an
    /// authentication request is sent again at once to the first new server (or
    /// times out when there is none), an accounting record goes back to the head
    /// of its queue and starts a new round over the new servers; nothing is lost.
    pub fn set_servers(&mut self, auth: Vec<Server>, acct: Vec<Server>, now: u64) {
        self.dead_until = [vec![0; auth.len()], vec![0; acct.len()]];
        self.cfg.auth = auth;
        self.cfg.acct = acct;
        let pending = core::mem::take(&mut self.pending);
        for (s, pe) in pending.into_iter().rev() {
            self.in_flight -= 1;
            let (c, id) = (usize::from(s / 256), (s % 256) as u8);
            match pe.acct {
                Some(meta) => self.acct_ready.push_front(AcctItem {
                    meta,
                    req: pe.req,
                    server: None,
                }),
                None if self.cfg.auth.is_empty() => {
                    self.stats.timeouts += 1;
                    self.events.push(Event::Timeout { tag: pe.tag });
                }
                None => self.send_to(pe.tag, pe.req, 0, c, id, now),
            }
        }
        self.next_due = self
            .pending
            .values()
            .map(|p| p.deadline)
            .min()
            .unwrap_or(u64::MAX);
    }

    /// Requests in flight.
    pub fn in_flight(&self) -> usize {
        self.in_flight
    }

    /// Accounting records not yet acknowledged (in flight, waiting or retrying).
    pub fn acct_outstanding(&self) -> usize {
        self.acct_count
    }

    /// Journal operations produced so far (only with `acct_journal`).
    pub fn take_journal(&mut self) -> Vec<JournalOp> {
        core::mem::take(&mut self.journal)
    }

    fn servers(&self, s: Service) -> &[Server] {
        match s {
            Service::Auth => &self.cfg.auth,
            Service::Acct => &self.cfg.acct,
        }
    }

    fn first_live(&self, s: Service, now: u64) -> usize {
        let d = &self.dead_until[svc_index(s)];
        (0..self.servers(s).len())
            .find(|&i| d.get(i).copied().unwrap_or(0) <= now)
            .unwrap_or(0)
    }

    fn encode(&mut self, req: &Request, server: usize, id: u8) -> Option<(Vec<u8>, [u8; 16])> {
        let srv = self.servers(req.service).get(server)?.clone();
        let (c, auth) = match req.service {
            Service::Auth => (code::ACCESS_REQUEST, self.rng.bytes16()),
            Service::Acct => (code::ACCOUNTING_REQUEST, [0; 16]),
        };
        let mut b = Builder::new(c, id, auth);
        for (t, v) in &req.attrs {
            b.attr(*t, v);
        }
        if let Some(pw) = &req.password {
            b.user_password(&srv.secret, pw);
        }
        let bytes = match req.service {
            Service::Auth => {
                b.message_authenticator();
                b.finish_access_request(&srv.secret).ok()?
            }
            Service::Acct => b.finish_request_md5(&srv.secret).ok()?,
        };
        let mut a = [0u8; 16];
        a.copy_from_slice(bytes.get(4..20)?);
        Some((bytes, a))
    }

    fn free_slot(&mut self) -> Option<(usize, u8)> {
        let total = self.slots;
        if self.pending.len() >= total {
            return None;
        }
        for k in 0..total {
            let s = (self.next_slot + k) % total;
            if !self.pending.contains_key(&(s as u16)) {
                self.next_slot = s + 1;
                return Some((s / 256, (s % 256) as u8));
            }
        }
        None
    }

    /// Submit a request tagged `tag`; it is sent on the next [`Client::poll`].
    /// Accounting requests go to [`Client::submit_acct`] (the tag is not used).
    pub fn submit(&mut self, tag: u64, req: Request, now: u64) {
        if req.service == Service::Acct {
            self.submit_acct(req, now);
            return;
        }
        self.stats.requests += 1;
        if self.servers(req.service).is_empty() {
            self.stats.timeouts += 1;
            self.events.push(Event::Timeout { tag });
            return;
        }
        match self.free_slot() {
            Some((c, id)) => self.start(tag, req, c, id, now),
            None => {
                self.stats.queued += 1;
                self.backlog.push_back((tag, req));
            }
        }
    }

    /// Queue an Accounting-Request until a server acknowledges it (or the age policy
    /// gives it up). Returns its record id, `None` when refused (queue full or no
    /// accounting server).
    pub fn submit_acct(&mut self, req: Request, now: u64) -> Option<u64> {
        self.stats.requests += 1;
        if self.cfg.acct.is_empty() {
            self.stats.timeouts += 1;
            return None;
        }
        // Superseded Interim-Updates still in memory (dropped lazily) do not count.
        let replaces = acct_status(&req) != AcctStatus::Start as u32
            && req_attr(&req, attr::ACCT_SESSION_ID)
                .is_some_and(|sid| self.latest_interim.contains_key(sid));
        let live = self
            .acct_count
            .saturating_sub(self.superseded.len() + usize::from(replaces));
        if live >= self.cfg.acct_queue_limit {
            self.stats.acct_overflow += 1;
            self.dropped(AcctDrop::QueueFull, &req, 0);
            return None;
        }
        let id = self.next_acct_id;
        self.next_acct_id += 1;
        if self.cfg.acct_journal {
            self.journal.push(JournalOp::Add {
                id,
                age_ms: 0,
                req: req.clone(),
            });
        }
        self.enqueue_acct(id, req, 0, now);
        Some(id)
    }

    /// Put back a record read from a journal after a restart: it keeps its id (no
    /// new [`JournalOp::Add`]) and its age (`age_ms`, for Acct-Delay-Time and the age
    /// policy). Not refused by the queue limit: it was within it when written.
    pub fn restore_acct(&mut self, id: u64, age_ms: u64, req: Request, now: u64) {
        self.next_acct_id = self.next_acct_id.max(id.saturating_add(1));
        self.enqueue_acct(id, req, age_ms, now);
    }

    fn enqueue_acct(&mut self, id: u64, req: Request, prior_ms: u64, now: u64) {
        // Interim-Updates carry running totals: a newer Interim-Update or the Stop of
        // the same session makes an older one that is still waiting redundant.
        let status = acct_status(&req);
        if status == AcctStatus::Interim as u32 || status == AcctStatus::Stop as u32 {
            if let Some(sid) = req_attr(&req, attr::ACCT_SESSION_ID) {
                if let Some(old) = self.latest_interim.remove(sid) {
                    self.superseded.insert(old);
                }
                if status == AcctStatus::Interim as u32 {
                    self.latest_interim.insert(sid.to_vec(), id);
                }
            }
        }
        self.acct_count += 1;
        self.stats.acct_queued += 1;
        self.acct_ready.push_back(AcctItem {
            meta: AcctMeta {
                id,
                created: now,
                prior_ms,
                backoff_ms: 0,
                round_left: 0,
            },
            req,
            server: None,
        });
    }

    fn dropped(&mut self, reason: AcctDrop, req: &Request, age_ms: u64) {
        let text = |v: Option<&[u8]>| String::from_utf8_lossy(v.unwrap_or(&[])).into_owned();
        let status = acct_status(req);
        self.events.push(Event::AcctDropped {
            reason,
            session_id: text(req_attr(req, attr::ACCT_SESSION_ID)),
            user: req_attr(req, attr::USER_NAME).unwrap_or(&[]).to_vec(),
            status,
            age_ms,
        });
    }

    /// A record leaves the queue: acknowledged, superseded or given up.
    fn acct_done(&mut self, id: u64, req: &Request) {
        self.superseded.remove(&id);
        if let Some(sid) = req_attr(req, attr::ACCT_SESSION_ID) {
            if self.latest_interim.get(sid) == Some(&id) {
                self.latest_interim.remove(sid);
            }
        }
        self.acct_count = self.acct_count.saturating_sub(1);
        if self.cfg.acct_journal {
            self.journal.push(JournalOp::Remove { id });
        }
    }

    fn give_up(&mut self, item: AcctItem, reason: AcctDrop, now: u64) {
        self.stats.acct_given_up += 1;
        self.dropped(reason, &item.req, item.meta.age(now));
        self.acct_done(item.meta.id, &item.req);
    }

    /// Drop `item` if a newer record of its session made it redundant.
    fn drop_superseded(&mut self, item: &AcctItem) -> bool {
        if !self.superseded.contains(&item.meta.id) {
            return false;
        }
        self.stats.acct_superseded += 1;
        self.acct_done(item.meta.id, &item.req);
        true
    }

    fn too_old(&self, m: &AcctMeta, now: u64) -> bool {
        self.cfg.acct_max_age_ms > 0 && m.age(now) >= self.cfg.acct_max_age_ms
    }

    /// Send an accounting record on slot (`c`, `id`) with the current Acct-Delay-Time.
    fn start_acct(&mut self, item: AcctItem, c: usize, id: u8, now: u64) {
        let n = self.cfg.acct.len().max(1);
        let mut meta = item.meta;
        let server = match item.server {
            Some(s) => s % n,
            None => {
                meta.round_left = n;
                self.first_live(Service::Acct, now)
            }
        };
        meta.round_left = meta.round_left.saturating_sub(1);
        let mut req = item.req;
        set_delay(
            &mut req,
            u32::try_from(meta.age(now) / 1000).unwrap_or(u32::MAX),
        );
        self.send_inner(meta.id, req, server, c, id, now, Some(meta));
    }

    fn start(&mut self, tag: u64, req: Request, c: usize, id: u8, now: u64) {
        let server = self.first_live(req.service, now);
        self.send_to(tag, req, server, c, id, now);
    }

    fn send_to(&mut self, tag: u64, req: Request, server: usize, c: usize, id: u8, now: u64) {
        self.send_inner(tag, req, server, c, id, now, None);
    }

    #[allow(clippy::too_many_arguments)]
    fn send_inner(
        &mut self,
        tag: u64,
        req: Request,
        server: usize,
        c: usize,
        id: u8,
        now: u64,
        acct: Option<AcctMeta>,
    ) {
        let Some((bytes, auth)) = self.encode(&req, server, id) else {
            match acct {
                Some(meta) => self.give_up(
                    AcctItem {
                        meta,
                        req,
                        server: None,
                    },
                    AcctDrop::Unencodable,
                    now,
                ),
                None => {
                    self.stats.timeouts += 1;
                    self.events.push(Event::Timeout { tag });
                }
            }
            return;
        };
        let Some(to) = self.servers(req.service).get(server).map(|s| s.addr) else {
            return;
        };
        self.out.push(Transmit {
            channel: c as u8,
            to,
            bytes: bytes.clone(),
        });
        let timeout = self.cfg.timeout_ms;
        let p = Pending {
            tag,
            req,
            server,
            tries_left: self.cfg.tries.saturating_sub(1),
            timeout,
            deadline: {
                self.next_due = self.next_due.min(now + timeout);
                now + timeout
            },
            bytes,
            auth,
            acct,
        };
        if c * 256 < self.slots && self.pending.insert(slot_of(c, id), p).is_none() {
            self.in_flight += 1;
        }
    }

    /// Drive timers; returns datagrams to send. Call [`Client::events`] after.
    pub fn poll(&mut self, now: u64) -> Vec<Transmit> {
        if self.in_flight > 0 && now >= self.next_due {
            self.expire(now);
        }
        while !self.backlog.is_empty() {
            let Some((c, id)) = self.free_slot() else {
                break;
            };
            let Some((tag, req)) = self.backlog.pop_front() else {
                break;
            };
            self.start(tag, req, c, id, now);
        }
        while let Some(e) = self.acct_delayed.first_entry() {
            if e.key().0 > now {
                break;
            }
            let item = e.remove();
            self.acct_ready.push_back(item);
        }
        while let Some(item) = self.acct_ready.pop_front() {
            if self.drop_superseded(&item) {
                continue;
            }
            if self.too_old(&item.meta, now) {
                self.give_up(item, AcctDrop::MaxAge, now);
                continue;
            }
            let Some((c, id)) = self.free_slot() else {
                self.acct_ready.push_front(item);
                break;
            };
            self.start_acct(item, c, id, now);
        }
        core::mem::take(&mut self.out)
    }

    /// Retransmit, fail over or time out every request due at `now`.
    fn expire(&mut self, now: u64) {
        let mut expired = Vec::new();
        let mut next_due = u64::MAX;
        for (&s, p) in &self.pending {
            if p.deadline <= now {
                expired.push(s);
            } else {
                next_due = next_due.min(p.deadline);
            }
        }
        self.next_due = u64::MAX;
        for s in expired {
            let (c, id) = (usize::from(s / 256), usize::from(s % 256));
            let Some(mut pe) = self.pending.remove(&s) else {
                continue;
            };
            self.in_flight -= 1;
            if pe.tries_left > 0 {
                pe.tries_left -= 1;
                pe.timeout = (pe.timeout * 2).min(self.cfg.max_timeout_ms);
                pe.deadline = now + pe.timeout;
                next_due = next_due.min(pe.deadline);
                self.stats.retransmits += 1;
                if let Some(to) = self.servers(pe.req.service).get(pe.server).map(|s| s.addr) {
                    self.out.push(Transmit {
                        channel: c as u8,
                        to,
                        bytes: pe.bytes.clone(),
                    });
                }
                self.pending.insert(s, pe);
                self.in_flight += 1;
                continue;
            }
            // This server failed: mark it dead, fail over to the next one.
            let si = svc_index(pe.req.service);
            if let Some(d) = self.dead_until[si].get_mut(pe.server) {
                *d = now + self.cfg.dead_ms;
            }
            if let Some(mut meta) = pe.acct {
                // Accounting: the next server (new Identifier, current delay) in this
                // round, else a new round after the back-off; never a timeout.
                if self.superseded.contains(&meta.id) {
                    self.stats.acct_superseded += 1;
                    self.acct_done(meta.id, &pe.req);
                    continue;
                }
                let item = if meta.round_left > 0 {
                    self.stats.failovers += 1;
                    AcctItem {
                        meta,
                        req: pe.req,
                        server: Some(pe.server + 1),
                    }
                } else {
                    self.stats.acct_retry_rounds += 1;
                    meta.backoff_ms = if meta.backoff_ms == 0 {
                        self.cfg.timeout_ms
                    } else {
                        meta.backoff_ms.saturating_mul(2)
                    }
                    .min(self.cfg.acct_retry_max_ms)
                    .max(1);
                    let item = AcctItem {
                        meta,
                        req: pe.req,
                        server: None,
                    };
                    if self.too_old(&meta, now) {
                        self.give_up(item, AcctDrop::MaxAge, now);
                    } else {
                        self.acct_delayed
                            .insert((now + meta.backoff_ms, meta.id), item);
                    }
                    continue;
                };
                self.acct_ready.push_front(item);
                continue;
            }
            let n = self.servers(pe.req.service).len();
            let next = pe.server + 1;
            if next < n {
                self.stats.failovers += 1;
                self.send_to(pe.tag, pe.req, next, c, id as u8, now);
            } else {
                self.stats.timeouts += 1;
                self.events.push(Event::Timeout { tag: pe.tag });
            }
        }
        // Failovers above went through `start`, which lowered `self.next_due` from
        // the MAX it was reset to after the scan.
        self.next_due = self.next_due.min(next_due);
    }

    /// Take the events produced so far.
    pub fn events(&mut self) -> Vec<Event> {
        core::mem::take(&mut self.events)
    }

    /// Earliest retransmission deadline (or next accounting round).
    pub fn deadline(&self) -> Option<u64> {
        let p = self.pending.values().map(|p| p.deadline).min();
        let a = self.acct_delayed.keys().next().map(|k| k.0);
        match (p, a) {
            (Some(x), Some(y)) => Some(x.min(y)),
            (x, y) => x.or(y),
        }
    }

    /// Feed a datagram received on `channel` from `from`.
    pub fn input(&mut self, channel: u8, from: SocketAddr, bytes: &[u8]) {
        let Ok(p) = Packet::new_checked(bytes) else {
            self.stats.bad_responses += 1;
            return;
        };
        let s = slot_of(usize::from(channel), p.id());
        let Some(pe) = self.pending.get(&s) else {
            self.stats.bad_responses += 1;
            return;
        };
        let servers = match pe.req.service {
            Service::Auth => &self.cfg.auth,
            Service::Acct => &self.cfg.acct,
        };
        let Some(srv) = servers.get(pe.server) else {
            return;
        };
        let code_ok = match pe.req.service {
            Service::Auth => matches!(
                p.code(),
                code::ACCESS_ACCEPT | code::ACCESS_REJECT | code::ACCESS_CHALLENGE
            ),
            Service::Acct => p.code() == code::ACCOUNTING_RESPONSE,
        };
        if srv.addr != from || !code_ok || !verify_response_authenticator(&p, &srv.secret, &pe.auth)
        {
            self.stats.bad_responses += 1;
            return;
        }
        // RFC 3579 §3.2: a Message-Authenticator present must be valid; for Access
        // replies it is required (BlastRADIUS) unless configured off.
        let has_ma = p.attr(attr::MESSAGE_AUTHENTICATOR).is_some();
        if has_ma && !verify_response(&p, &srv.secret, &pe.auth) {
            self.stats.bad_message_authenticator += 1;
            self.stats.bad_responses += 1;
            return;
        }
        if !has_ma && pe.req.service == Service::Auth && self.cfg.require_message_authenticator {
            self.stats.missing_message_authenticator += 1;
            self.stats.bad_responses += 1;
            return;
        }
        // Server answered: it is alive again.
        let si = svc_index(pe.req.service);
        if let Some(d) = self.dead_until[si].get_mut(pe.server) {
            *d = 0;
        }
        let tag = pe.tag;
        let Some(pe) = self.pending.remove(&s) else {
            return;
        };
        self.in_flight -= 1;
        if let Some(m) = pe.acct {
            self.stats.acct_acked += 1;
            self.acct_done(m.id, &pe.req);
            return;
        }
        self.events.push(Event::Response {
            tag,
            code: p.code(),
            reply: alloc::boxed::Box::new(Reply::from_packet(&p)),
            server: from,
        });
    }
}

/// Identity of the subscriber line for Access- and Accounting-Requests.
#[derive(Debug, Clone, Default)]
pub struct LineInfo {
    /// NAS-IP-Address.
    pub nas_ip: u32,
    /// NAS-Identifier.
    pub nas_id: String,
    /// NAS-Port-Id, e.g. `access0:100.7` (port name : S-VLAN . C-VLAN).
    pub nas_port_id: String,
    /// NAS-Port (session index).
    pub nas_port: u32,
    /// Calling-Station-Id: `aa:bb:cc:dd:ee:ff` followed by `/svlan/cvlan` if tagged.
    pub calling_station: String,
    /// An IPoE subscriber: no Framed-Protocol (it is not PPP), NAS-Port-Type Ethernet
    /// (15) instead of Virtual (5) (RFC 2865 §5.41, IANA RADIUS Types).
    pub ipoe: bool,
}

impl LineInfo {
    fn push(&self, a: &mut Vec<(u8, Vec<u8>)>) {
        a.push((attr::NAS_IP_ADDRESS, self.nas_ip.to_be_bytes().to_vec()));
        if !self.nas_id.is_empty() {
            a.push((attr::NAS_IDENTIFIER, self.nas_id.as_bytes().to_vec()));
        }
        a.push((attr::NAS_PORT, self.nas_port.to_be_bytes().to_vec()));
        a.push((attr::NAS_PORT_ID, self.nas_port_id.as_bytes().to_vec()));
        // NAS-Port-Type = Virtual (5) for PPPoE over Ethernet (RFC 4603 uses 32+ for PPPoEoE; 5 is what most BNGs send).
        let port_type: u32 = if self.ipoe { 15 } else { 5 };
        a.push((attr::NAS_PORT_TYPE, port_type.to_be_bytes().to_vec()));
        a.push((
            attr::CALLING_STATION_ID,
            self.calling_station.as_bytes().to_vec(),
        ));
    }
}

/// Build an Access-Request for PAP or CHAP credentials (RFC 2865 §5.2, §5.3, §5.40).
pub fn access_request(line: &LineInfo, creds: &crate::auth::Credentials) -> Request {
    let mut a = Vec::new();
    a.push((attr::USER_NAME, creds.user().to_vec()));
    let mut password = None;
    match creds {
        crate::auth::Credentials::Pap { password: p, .. } => password = Some(p.clone()),
        crate::auth::Credentials::Chap {
            id,
            challenge,
            response,
            ..
        } => {
            let mut v = Vec::with_capacity(17);
            v.push(*id);
            v.extend_from_slice(response);
            a.push((attr::CHAP_PASSWORD, v));
            a.push((attr::CHAP_CHALLENGE, challenge.to_vec()));
        }
    }
    a.push((attr::SERVICE_TYPE, 2u32.to_be_bytes().to_vec())); // Framed-User
    if !line.ipoe {
        a.push((attr::FRAMED_PROTOCOL, 1u32.to_be_bytes().to_vec())); // PPP
    }
    line.push(&mut a);
    Request {
        service: Service::Auth,
        attrs: a,
        password,
    }
}

/// Acct-Status-Type values (RFC 2866 §5.1).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AcctStatus {
    /// Start.
    Start = 1,
    /// Stop.
    Stop = 2,
    /// Interim-Update.
    Interim = 3,
}

/// Counters and identity of one accounting record.
#[derive(Debug, Clone, Default)]
pub struct AcctRecord {
    /// Acct-Session-Id.
    pub session_id: String,
    /// User-Name.
    pub user: Vec<u8>,
    /// Framed-IP-Address.
    pub framed_ip: u32,
    /// Acct-Session-Time, s.
    pub session_time: u32,
    /// Octets from the subscriber (Acct-Input-*).
    pub in_octets: u64,
    /// Octets to the subscriber (Acct-Output-*).
    pub out_octets: u64,
    /// Packets from the subscriber.
    pub in_packets: u64,
    /// Packets to the subscriber.
    pub out_packets: u64,
    /// Acct-Terminate-Cause (Stop only; RFC 2866 §5.10).
    pub terminate_cause: Option<u32>,
    /// Class from the Access-Accept.
    pub class: Option<Vec<u8>>,
}

/// Acct-Terminate-Cause values used (RFC 2866 §5.10).
pub mod terminate_cause {
    /// User Request (PADT / LCP Terminate from the subscriber).
    pub const USER_REQUEST: u32 = 1;
    /// Lost Carrier (keepalive failure).
    pub const LOST_CARRIER: u32 = 2;
    /// Idle Timeout.
    pub const IDLE_TIMEOUT: u32 = 4;
    /// Session Timeout.
    pub const SESSION_TIMEOUT: u32 = 5;
    /// Admin Reset (Disconnect-Request, operator).
    pub const ADMIN_RESET: u32 = 6;
    /// NAS Request.
    pub const NAS_REQUEST: u32 = 10;
    /// User Error (an IPoE client declined its DHCP address, RFC 2131 §4.3.3).
    pub const USER_ERROR: u32 = 17;
}

/// Build an Accounting-Request (RFC 2866 §4.1) with Gigawords (RFC 2869 §5.1).
pub fn accounting_request(line: &LineInfo, status: AcctStatus, r: &AcctRecord) -> Request {
    accounting_request_v6(line, status, r, None)
}

/// [`accounting_request`] of a dual-stack session: with the session's IPv6 prefix as
/// Framed-IPv6-Prefix (RFC 3162 §2.3, allowed in Accounting-Request per §3).
pub fn accounting_request_v6(
    line: &LineInfo,
    status: AcctStatus,
    r: &AcctRecord,
    ipv6_prefix: Option<(u128, u8)>,
) -> Request {
    let v6 = AcctIpv6 {
        framed_prefix: ipv6_prefix,
        ..AcctIpv6::default()
    };
    accounting_request_ipv6(line, status, r, &v6)
}

/// A session's IPv6 addressing as accounting reports it.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct AcctIpv6 {
    /// The SLAAC /64 (Framed-IPv6-Prefix, RFC 3162 §2.3).
    pub framed_prefix: Option<(u128, u8)>,
    /// The DHCPv6 IA_PD prefix (Delegated-IPv6-Prefix, RFC 4818 §3).
    pub delegated_prefix: Option<(u128, u8)>,
    /// The DHCPv6 IA_NA address (Framed-IPv6-Address, RFC 6911 §3.1).
    pub address: Option<u128>,
}

/// [`accounting_request`] with every IPv6 attribute of the session.
pub fn accounting_request_ipv6(
    line: &LineInfo,
    status: AcctStatus,
    r: &AcctRecord,
    v6: &AcctIpv6,
) -> Request {
    let ipv6_prefix = v6.framed_prefix;
    let mut a = Vec::new();
    let u = |v: u32| v.to_be_bytes().to_vec();
    a.push((attr::ACCT_STATUS_TYPE, u(status as u32)));
    a.push((attr::ACCT_SESSION_ID, r.session_id.as_bytes().to_vec()));
    a.push((attr::USER_NAME, r.user.clone()));
    a.push((attr::ACCT_AUTHENTIC, u(1)));
    if !line.ipoe {
        a.push((attr::FRAMED_PROTOCOL, u(1)));
    }
    if r.framed_ip != 0 {
        a.push((attr::FRAMED_IP_ADDRESS, u(r.framed_ip)));
    }
    if let Some((p, l)) = ipv6_prefix {
        a.push((attr::FRAMED_IPV6_PREFIX, ipv6_prefix_value(p, l)));
    }
    if let Some((p, l)) = v6.delegated_prefix {
        a.push((attr::DELEGATED_IPV6_PREFIX, ipv6_prefix_value(p, l)));
    }
    if let Some(x) = v6.address {
        a.push((attr::FRAMED_IPV6_ADDRESS, x.to_be_bytes().to_vec()));
    }
    line.push(&mut a);
    if let Some(c) = &r.class {
        a.push((attr::CLASS, c.clone()));
    }
    if status != AcctStatus::Start {
        a.push((attr::ACCT_SESSION_TIME, u(r.session_time)));
        a.push((attr::ACCT_INPUT_OCTETS, u(r.in_octets as u32)));
        a.push((attr::ACCT_INPUT_GIGAWORDS, u((r.in_octets >> 32) as u32)));
        a.push((attr::ACCT_OUTPUT_OCTETS, u(r.out_octets as u32)));
        a.push((attr::ACCT_OUTPUT_GIGAWORDS, u((r.out_octets >> 32) as u32)));
        a.push((
            attr::ACCT_INPUT_PACKETS,
            u(r.in_packets.min(u64::from(u32::MAX)) as u32),
        ));
        a.push((
            attr::ACCT_OUTPUT_PACKETS,
            u(r.out_packets.min(u64::from(u32::MAX)) as u32),
        ));
    }
    if let (AcctStatus::Stop, Some(c)) = (status, r.terminate_cause) {
        a.push((attr::ACCT_TERMINATE_CAUSE, u(c)));
    }
    a.push((attr::ACCT_DELAY_TIME, u(0)));
    Request {
        service: Service::Acct,
        attrs: a,
        password: None,
    }
}

/// A verified dynamic-authorization request (RFC 5176 §3).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DynAuth {
    /// Disconnect (true) or CoA (false).
    pub disconnect: bool,
    /// Session identification attributes (§3: any of these may be present).
    pub user: Option<Vec<u8>>,
    /// Acct-Session-Id.
    pub acct_session_id: Option<String>,
    /// Framed-IP-Address.
    pub framed_ip: Option<u32>,
    /// Calling-Station-Id.
    pub calling_station: Option<String>,
    /// New authorization (CoA): rate, session timeout...
    pub reply: Reply,
    code: u8,
    id: u8,
    auth: [u8; 16],
}

/// Error-Cause values (RFC 5176 §3.5).
pub mod error_cause {
    /// Missing Attribute.
    pub const MISSING_ATTRIBUTE: u32 = 402;
    /// Session Context Not Found.
    pub const SESSION_NOT_FOUND: u32 = 503;
    /// Unsupported Extension / request not honoured.
    pub const UNSUPPORTED_SERVICE: u32 = 405;
}

impl DynAuth {
    /// Verify and parse a CoA-/Disconnect-Request with `secret`. `None`: drop silently
    /// (bad authenticator or not a dynamic-authorization request, RFC 5176 §3.2).
    pub fn parse(bytes: &[u8], secret: &[u8]) -> Option<DynAuth> {
        let p = Packet::new_checked(bytes).ok()?;
        let disconnect = match p.code() {
            code::DISCONNECT_REQUEST => true,
            code::COA_REQUEST => false,
            _ => return None,
        };
        if !verify_request_md5(&p, secret) {
            return None;
        }
        let text = |v: &[u8]| core::str::from_utf8(v).ok().map(String::from);
        Some(DynAuth {
            disconnect,
            user: p.attr(attr::USER_NAME).map(|v| v.to_vec()),
            acct_session_id: p.attr(attr::ACCT_SESSION_ID).and_then(text),
            framed_ip: p
                .attr(attr::FRAMED_IP_ADDRESS)
                .and_then(|v| <[u8; 4]>::try_from(v).ok())
                .map(u32::from_be_bytes),
            calling_station: p.attr(attr::CALLING_STATION_ID).and_then(text),
            reply: Reply::from_packet(&p),
            code: p.code(),
            id: p.id(),
            auth: p.authenticator(),
        })
    }

    /// Build the ACK (`error == None`) or NAK with Error-Cause.
    pub fn respond(&self, secret: &[u8], error: Option<u32>) -> Vec<u8> {
        let c = match (self.code, error) {
            (code::DISCONNECT_REQUEST, None) => code::DISCONNECT_ACK,
            (code::DISCONNECT_REQUEST, Some(_)) => code::DISCONNECT_NAK,
            (_, None) => code::COA_ACK,
            (_, Some(_)) => code::COA_NAK,
        };
        let mut b = Builder::new(c, self.id, [0; 16]);
        if let Some(e) = error {
            b.attr_u32(attr::ERROR_CAUSE, e);
        }
        b.message_authenticator();
        b.finish_response(secret, &self.auth).unwrap_or_default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::rng::Rng;
    use core::net::{IpAddr, Ipv4Addr};
    use dataplane::proto::radius::unhide_password;

    fn sa(port: u16) -> SocketAddr {
        SocketAddr::new(IpAddr::V4(Ipv4Addr::LOCALHOST), port)
    }

    fn client(n: usize) -> Client {
        let servers = (0..n)
            .map(|i| Server {
                addr: sa(1812 + 100 * i as u16),
                secret: b"testing123".to_vec(),
            })
            .collect::<Vec<_>>();
        Client::new(
            ClientConfig {
                auth: servers.clone(),
                acct: servers,
                timeout_ms: 100,
                max_timeout_ms: 300,
                tries: 3,
                dead_ms: 10_000,
                channels: 1,
                acct_retry_max_ms: 1_000,
                ..ClientConfig::default()
            },
            Rng::from_seed([5; 32]),
        )
    }

    /// A signed Access-Accept with Message-Authenticator.
    fn accept_for(tx: &Transmit, secret: &[u8], extra: impl FnOnce(&mut Builder)) -> Vec<u8> {
        reply_for(tx, secret, code::ACCESS_ACCEPT, true, extra)
    }

    fn reply_for(
        tx: &Transmit,
        secret: &[u8],
        c: u8,
        msg_auth: bool,
        extra: impl FnOnce(&mut Builder),
    ) -> Vec<u8> {
        let p = Packet::new_checked(&tx.bytes).unwrap();
        let mut b = Builder::new(c, p.id(), [0; 16]);
        extra(&mut b);
        if msg_auth {
            b.message_authenticator();
        }
        b.finish_response(secret, &p.authenticator()).unwrap()
    }

    fn stop(sid: &str) -> Request {
        let r = AcctRecord {
            session_id: String::from(sid),
            user: b"alice".to_vec(),
            terminate_cause: Some(terminate_cause::USER_REQUEST),
            ..Default::default()
        };
        accounting_request(&LineInfo::default(), AcctStatus::Stop, &r)
    }

    fn delay_of(tx: &Transmit) -> u32 {
        Packet::new_checked(&tx.bytes)
            .unwrap()
            .attr_u32(attr::ACCT_DELAY_TIME)
            .unwrap()
    }

    /// Poll every 50 ms from `from` to `to`: (time, transmission).
    fn drive(c: &mut Client, from: u64, to: u64) -> Vec<(u64, Transmit)> {
        let mut v = Vec::new();
        let mut t = from;
        while t <= to {
            v.extend(c.poll(t).into_iter().map(|x| (t, x)));
            t += 50;
        }
        v
    }

    #[test]
    fn accounting_retried_past_tries_with_failover_and_delay_time() {
        let mut c = client(2);
        c.submit_acct(stop("s1"), 0);
        // Until the first transmission at or after 3 s (then answered while in flight).
        let mut sends = Vec::new();
        let mut t = 0;
        while sends.last().is_none_or(|(ts, _)| *ts < 3_000) {
            sends.extend(c.poll(t).into_iter().map(|x| (t, x)));
            t += 50;
            assert!(t < 20_000);
        }
        assert!(c.events().is_empty(), "accounting never times out");
        assert_eq!(c.stats.timeouts, 0);
        let ports: Vec<u16> = sends.iter().map(|(_, x)| x.to.port()).collect();
        // Round 1: 3 tries on each server; then more rounds over both servers.
        assert_eq!(&ports[..6], [1812, 1812, 1812, 1912, 1912, 1912]);
        assert!(sends.len() > 12, "{ports:?}");
        assert!(ports[6..].contains(&1812) && ports[6..].contains(&1912));
        assert!(c.stats.acct_retry_rounds >= 2, "{:?}", c.stats);
        assert!(c.stats.failovers >= 2, "{:?}", c.stats);
        // Within one server's tries the datagram is byte-identical (RFC 5080 §2.2.1).
        assert_eq!(sends[0].1.bytes, sends[2].1.bytes);
        // A later round carries the delay so far (RFC 2866 §5.2): new content, so a new
        // Identifier and Request Authenticator.
        assert_eq!(delay_of(&sends[0].1), 0);
        let (t_last, last) = sends.last().unwrap();
        // Set when the transmission started (retransmissions keep it).
        let delays: Vec<u32> = sends.iter().map(|(_, x)| delay_of(x)).collect();
        assert!(delays.windows(2).all(|w| w[0] <= w[1]), "{delays:?}");
        for (t, x) in &sends {
            assert!(u64::from(delay_of(x)) <= t / 1000);
        }
        assert!(delay_of(last) >= 2, "{delays:?}");
        let (p0, pl) = (
            Packet::new_checked(&sends[0].1.bytes).unwrap(),
            Packet::new_checked(&last.bytes).unwrap(),
        );
        assert_ne!(p0.id(), pl.id());
        assert_ne!(p0.authenticator(), pl.authenticator());
        assert!(verify_request_md5(&pl, b"testing123"));
        assert_eq!(pl.attr(attr::ACCT_SESSION_ID), Some(&b"s1"[..]));
        assert_eq!(c.acct_outstanding(), 1);
        // The server finally answers the last transmission: done, nothing more sent.
        let resp = reply_for(
            last,
            b"testing123",
            code::ACCOUNTING_RESPONSE,
            false,
            |_| {},
        );
        c.input(last.channel, last.to, &resp);
        assert_eq!(c.acct_outstanding(), 0);
        assert_eq!(c.stats.acct_acked, 1);
        assert!(c.events().is_empty());
        assert!(drive(&mut c, *t_last, t_last + 5_000).is_empty());
        assert_eq!(c.deadline(), None);
    }

    #[test]
    fn accounting_queue_bound_counted_and_reported() {
        let mut c = client(1);
        c.cfg.acct_queue_limit = 3;
        for i in 0..5 {
            let r = c.submit_acct(stop(&alloc::format!("s{i}")), 0);
            assert_eq!(r.is_some(), i < 3);
        }
        assert_eq!(c.stats.acct_overflow, 2);
        assert_eq!(c.acct_outstanding(), 3);
        let ev = c.events();
        assert_eq!(ev.len(), 2);
        assert!(matches!(
            &ev[0],
            Event::AcctDropped { reason: AcctDrop::QueueFull, session_id, user, status: 2, .. }
                if session_id == "s3" && user == b"alice"
        ));
        assert_eq!(c.poll(0).len(), 3);
    }

    fn interim(sid: &str) -> Request {
        let r = AcctRecord {
            session_id: String::from(sid),
            user: b"alice".to_vec(),
            ..Default::default()
        };
        accounting_request(&LineInfo::default(), AcctStatus::Interim, &r)
    }

    #[test]
    fn waiting_interim_superseded_by_newer_record_of_its_session() {
        let mut c = client(1);
        c.cfg.acct_queue_limit = 3;
        c.cfg.acct_journal = true;
        // Many Interim-Updates of one session during an outage never fill the queue.
        for _ in 0..10 {
            assert!(c.submit_acct(interim("a"), 0).is_some());
        }
        assert!(c.submit_acct(interim("b"), 0).is_some());
        assert!(c.submit_acct(stop("a"), 0).is_some());
        assert!(c.submit_acct(stop("c"), 0).is_some());
        assert_eq!(c.stats.acct_overflow, 0);
        assert!(
            c.submit_acct(stop("d"), 0).is_none(),
            "3 live records: full"
        );
        let tx = c.poll(0);
        let sent: Vec<(Vec<u8>, u32)> = tx
            .iter()
            .map(|t| {
                let p = Packet::new_checked(&t.bytes).unwrap();
                (
                    p.attr(attr::ACCT_SESSION_ID).unwrap().to_vec(),
                    p.attr_u32(attr::ACCT_STATUS_TYPE).unwrap(),
                )
            })
            .collect();
        assert_eq!(
            sent,
            [(b"b".to_vec(), 3), (b"a".to_vec(), 2), (b"c".to_vec(), 2)]
        );
        assert_eq!(c.stats.acct_superseded, 10);
        assert_eq!(c.acct_outstanding(), 3);
        // Each superseded record is also removed from the journal.
        let removes = c
            .take_journal()
            .iter()
            .filter(|o| matches!(o, JournalOp::Remove { .. }))
            .count();
        assert_eq!(removes, 10);
        // An Interim-Update already in flight is not cancelled, only not retried.
        c.submit_acct(interim("b"), 0);
        drive(&mut c, 50, 2_000);
        assert_eq!(c.stats.acct_superseded, 11);
        assert_eq!(c.acct_outstanding(), 4 - 1);
    }

    #[test]
    fn accounting_given_up_only_by_age_policy() {
        let mut c = client(1);
        c.cfg.acct_max_age_ms = 2_000;
        c.cfg.acct_journal = true;
        let id = c.submit_acct(stop("old"), 0).unwrap();
        let sends = drive(&mut c, 0, 1_900);
        assert!(sends.len() > 3, "retried past tries before the limit");
        assert_eq!(c.stats.acct_given_up, 0);
        drive(&mut c, 1_950, 6_000);
        assert_eq!(c.stats.acct_given_up, 1);
        assert_eq!(c.acct_outstanding(), 0);
        let ev = c.events();
        assert!(
            matches!(
                &ev[..],
                [Event::AcctDropped { reason: AcctDrop::MaxAge, session_id, status: 2, age_ms, .. }]
                    if session_id == "old" && *age_ms >= 2_000
            ),
            "{ev:?}"
        );
        let j = c.take_journal();
        assert!(
            matches!(&j[..], [JournalOp::Add { id: a, .. }, JournalOp::Remove { id: b }] if *a == id && *b == id)
        );
        // With no limit (0) nothing is ever given up.
        let mut c = client(1);
        c.cfg.acct_max_age_ms = 0;
        c.submit_acct(stop("kept"), 0);
        drive(&mut c, 0, 600_000);
        assert_eq!((c.stats.acct_given_up, c.acct_outstanding()), (0, 1));
    }

    #[test]
    fn restored_record_keeps_its_age_and_id() {
        let mut c = client(1);
        c.cfg.acct_journal = true;
        c.restore_acct(41, 12_500, stop("r"), 100);
        let tx = c.poll(100);
        assert_eq!(delay_of(&tx[0]), 12);
        assert!(c.take_journal().is_empty(), "already in the journal");
        assert_eq!(c.submit_acct(stop("n"), 100), Some(42));
        let resp = reply_for(
            &tx[0],
            b"testing123",
            code::ACCOUNTING_RESPONSE,
            false,
            |_| {},
        );
        c.input(0, tx[0].to, &resp);
        assert!(c.take_journal().contains(&JournalOp::Remove { id: 41 }));
    }

    /// A management change of servers: the Access-Request in flight is sent again at
    /// once to the new server, signed with its secret (its answer is taken, the old
    /// server's is not); the accounting record in flight goes to the new accounting
    /// server; nothing times out or is lost.
    #[test]
    fn servers_replaced_with_requests_in_flight() {
        let mut c = client(1);
        c.submit(
            7,
            Request {
                service: Service::Auth,
                attrs: vec![(attr::USER_NAME, b"u".to_vec())],
                password: Some(b"pw".to_vec()),
            },
            0,
        );
        c.submit_acct(stop("s9"), 0);
        let old = c.poll(0);
        assert_eq!(old.len(), 2);
        let new = Server {
            addr: sa(4812),
            secret: b"new-secret".to_vec(),
        };
        c.set_servers(vec![new.clone()], vec![new.clone()], 10);
        let tx = c.poll(10);
        assert_eq!(tx.len(), 2, "both sent again at once: {tx:?}");
        assert!(tx.iter().all(|t| t.to == sa(4812)));
        let auth = tx
            .iter()
            .find(|t| Packet::new_checked(&t.bytes).unwrap().code() == code::ACCESS_REQUEST)
            .unwrap();
        // The old server's late answer is not taken; the new one's is.
        let a_old = old
            .iter()
            .find(|t| Packet::new_checked(&t.bytes).unwrap().code() == code::ACCESS_REQUEST)
            .unwrap();
        c.input(0, a_old.to, &accept_for(a_old, b"testing123", |_| {}));
        assert!(c.events().is_empty());
        c.input(0, auth.to, &accept_for(auth, b"new-secret", |_| {}));
        assert!(matches!(
            c.events()[..],
            [Event::Response {
                tag: 7,
                code: code::ACCESS_ACCEPT,
                ..
            }]
        ));
        assert_eq!(c.stats.timeouts, 0);
        assert_eq!(
            c.acct_outstanding(),
            1,
            "the Stop still waits for its answer"
        );
    }

    #[test]
    fn access_reply_without_or_with_bad_message_authenticator_dropped() {
        let auth_req = || Request {
            service: Service::Auth,
            attrs: vec![(attr::USER_NAME, b"u".to_vec())],
            password: Some(b"pw".to_vec()),
        };
        for c_code in [
            code::ACCESS_ACCEPT,
            code::ACCESS_REJECT,
            code::ACCESS_CHALLENGE,
        ] {
            let mut c = client(1);
            c.submit(1, auth_req(), 0);
            let tx = c.poll(0).remove(0);
            // Correct Response Authenticator, no Message-Authenticator.
            c.input(
                0,
                tx.to,
                &reply_for(&tx, b"testing123", c_code, false, |_| {}),
            );
            assert_eq!(c.stats.missing_message_authenticator, 1);
            // Message-Authenticator present but wrong (Response Authenticator fixed up
            // to match, as a BlastRADIUS forgery would).
            let p = Packet::new_checked(&tx.bytes).unwrap();
            let mut b = Builder::new(c_code, p.id(), [0; 16]);
            b.message_authenticator();
            let mut bad = b
                .finish_response(b"testing123", &p.authenticator())
                .unwrap();
            let n = bad.len();
            bad[n - 1] ^= 0xff;
            let mut h = bad.clone();
            h[4..20].copy_from_slice(&p.authenticator());
            let mut m = md5::Md5::default();
            md5::Digest::update(&mut m, &h);
            md5::Digest::update(&mut m, b"testing123");
            let a: [u8; 16] = md5::Digest::finalize(m).into();
            bad[4..20].copy_from_slice(&a);
            c.input(0, tx.to, &bad);
            assert_eq!(c.stats.bad_message_authenticator, 1);
            assert_eq!(c.stats.bad_responses, 2);
            assert!(c.events().is_empty(), "both dropped");
            assert_eq!(c.in_flight(), 1);
            c.input(
                0,
                tx.to,
                &reply_for(&tx, b"testing123", c_code, true, |_| {}),
            );
            assert!(
                matches!(c.events()[..], [Event::Response { tag: 1, code, .. }] if code == c_code)
            );
        }
        // Switched off: a reply without it is accepted (a bad one still is not).
        let mut c = client(1);
        c.cfg.require_message_authenticator = false;
        c.submit(1, auth_req(), 0);
        let tx = c.poll(0).remove(0);
        c.input(
            0,
            tx.to,
            &reply_for(&tx, b"testing123", code::ACCESS_ACCEPT, false, |_| {}),
        );
        assert!(matches!(c.events()[..], [Event::Response { tag: 1, .. }]));
    }

    #[test]
    fn debug_redacts_secrets() {
        let c = client(1);
        let d = alloc::format!("{:?}", c.config());
        assert!(!d.contains("testing123"), "{d}");
        assert!(d.contains("<redacted>"), "{d}");
        assert_eq!(alloc::format!("{:?}", Key(b"k".to_vec())), "\"<redacted>\"");
        let cr = crate::auth::Credentials::Pap {
            user: b"alice".to_vec(),
            password: b"pw-hunter2".to_vec(),
        };
        let d = alloc::format!("{:?}", access_request(&LineInfo::default(), &cr));
        assert!(!d.contains("hunter2") && d.contains("<redacted>"), "{d}");
    }

    #[test]
    fn ipoe_requests_are_not_ppp() {
        let cr = crate::auth::Credentials::Pap {
            user: b"02:aa:00:00:00:01".to_vec(),
            password: b"line".to_vec(),
        };
        let has = |r: &Request, t: u8| r.attrs.iter().find(|(a, _)| *a == t).map(|x| x.1.clone());
        let ppp = access_request(&LineInfo::default(), &cr);
        assert_eq!(
            has(&ppp, attr::FRAMED_PROTOCOL),
            Some(1u32.to_be_bytes().to_vec())
        );
        assert_eq!(
            has(&ppp, attr::NAS_PORT_TYPE),
            Some(5u32.to_be_bytes().to_vec())
        );
        let line = LineInfo {
            ipoe: true,
            ..Default::default()
        };
        let ipoe = access_request(&line, &cr);
        assert_eq!(has(&ipoe, attr::FRAMED_PROTOCOL), None);
        assert_eq!(
            has(&ipoe, attr::NAS_PORT_TYPE),
            Some(15u32.to_be_bytes().to_vec())
        );
        let rec = AcctRecord::default();
        let acct = accounting_request(&line, AcctStatus::Start, &rec);
        assert_eq!(has(&acct, attr::FRAMED_PROTOCOL), None);
    }

    #[test]
    fn pap_request_accept_and_reply_attributes() {
        let mut c = client(1);
        let line = LineInfo {
            nas_ip: 0x7f000001,
            nas_port_id: String::from("a0:100.7"),
            calling_station: String::from("02:00:00:00:00:01/100/7"),
            ..Default::default()
        };
        let cr = crate::auth::Credentials::Pap {
            user: b"alice".to_vec(),
            password: b"pw".to_vec(),
        };
        c.submit(42, access_request(&line, &cr), 0);
        let tx = c.poll(0);
        assert_eq!(tx.len(), 1);
        let p = Packet::new_checked(&tx[0].bytes).unwrap();
        assert_eq!(p.attr(attr::USER_NAME), Some(&b"alice"[..]));
        let pw = unhide_password(
            b"testing123",
            &p.authenticator(),
            p.attr(attr::USER_PASSWORD).unwrap(),
        )
        .unwrap();
        assert_eq!(pw, b"pw");
        assert!(p.attr(attr::MESSAGE_AUTHENTICATOR).is_some());
        let resp = accept_for(&tx[0], b"testing123", |b| {
            b.attr(attr::FRAMED_IP_ADDRESS, &[10, 0, 0, 9])
                .attr(attr::FRAMED_POOL, b"gold")
                .attr_u32(attr::SESSION_TIMEOUT, 3600)
                .vsa(vsa::MIKROTIK, vsa::MIKROTIK_RATE_LIMIT, b"2M/10M");
        });
        // A forged response (wrong secret) is ignored.
        let forged = accept_for(&tx[0], b"nope", |_| {});
        c.input(0, sa(1812), &forged);
        assert_eq!(c.stats.bad_responses, 1);
        c.input(0, sa(1812), &resp);
        let ev = c.events();
        let Event::Response {
            tag, code, reply, ..
        } = &ev[0]
        else {
            panic!()
        };
        assert_eq!((*tag, *code), (42, code::ACCESS_ACCEPT));
        assert_eq!(reply.framed_ip, Some(0x0a000009));
        assert_eq!(reply.framed_pool.as_deref(), Some("gold"));
        assert_eq!(reply.session_timeout, Some(3600));
        assert_eq!(reply.rate, Some((2_000_000, 10_000_000)));
        assert_eq!(c.in_flight(), 0);
    }

    #[test]
    fn retransmit_backoff_then_failover_then_timeout() {
        let mut c = client(2);
        c.submit(
            7,
            Request {
                service: Service::Auth,
                attrs: vec![(attr::USER_NAME, b"x".to_vec())],
                password: None,
            },
            0,
        );
        let mut sends = Vec::new();
        let mut t = 0;
        loop {
            for tx in c.poll(t) {
                sends.push((t, tx.to.port(), tx.bytes));
            }
            if !c.events().is_empty() {
                break;
            }
            t += 50;
            assert!(t < 10_000);
        }
        let times: Vec<(u64, u16)> = sends.iter().map(|(t, p, _)| (*t, *p)).collect();
        // 100 ms, then 200, then 300 (capped); then the second server.
        assert_eq!(
            times,
            [
                (0, 1812),
                (100, 1812),
                (300, 1812),
                (600, 1912),
                (700, 1912),
                (900, 1912)
            ]
        );
        // Retransmissions are byte-identical (RFC 5080 §2.2.1).
        assert_eq!(sends[0].2, sends[1].2);
        assert_eq!(c.stats.failovers, 1);
        assert_eq!(c.stats.timeouts, 1);
        // First server down, second answers: later requests start on the second.
        let mut c = client(2);
        c.submit(
            8,
            Request {
                service: Service::Auth,
                attrs: vec![],
                password: None,
            },
            0,
        );
        let mut t = 0;
        let tx = loop {
            let tx = c.poll(t);
            if let Some(x) = tx.into_iter().find(|x| x.to.port() == 1912) {
                break x;
            }
            t += 50;
            assert!(t < 10_000);
        };
        c.input(0, sa(1912), &accept_for(&tx, b"testing123", |_| {}));
        assert!(matches!(c.events()[..], [Event::Response { tag: 8, .. }]));
        c.submit(
            9,
            Request {
                service: Service::Auth,
                attrs: vec![],
                password: None,
            },
            t,
        );
        assert_eq!(c.poll(t)[0].to.port(), 1912);
    }

    #[test]
    fn accounting_gigawords_and_coa() {
        let r = AcctRecord {
            in_octets: (5u64 << 32) + 7,
            out_octets: 9,
            ..Default::default()
        };
        let req = accounting_request(&LineInfo::default(), AcctStatus::Interim, &r);
        let get = |t| {
            req.attrs
                .iter()
                .find(|(a, _)| *a == t)
                .map(|(_, v)| v.clone())
                .unwrap()
        };
        assert_eq!(get(attr::ACCT_INPUT_OCTETS), 7u32.to_be_bytes());
        assert_eq!(get(attr::ACCT_INPUT_GIGAWORDS), 5u32.to_be_bytes());
        let mut b = Builder::new(code::COA_REQUEST, 3, [0; 16]);
        b.attr(attr::ACCT_SESSION_ID, b"s1")
            .vsa(vsa::MIKROTIK, vsa::MIKROTIK_RATE_LIMIT, b"1M/4M");
        let coa = b.finish_request_md5(b"k").unwrap();
        assert!(DynAuth::parse(&coa, b"bad").is_none());
        let d = DynAuth::parse(&coa, b"k").unwrap();
        assert!(!d.disconnect);
        assert_eq!(d.acct_session_id.as_deref(), Some("s1"));
        assert_eq!(d.reply.rate, Some((1_000_000, 4_000_000)));
        let ack = d.respond(b"k", None);
        let p = Packet::new_checked(&ack).unwrap();
        assert_eq!(p.code(), code::COA_ACK);
        assert!(verify_response(&p, b"k", &d.auth));
        assert_eq!(parse_rate("512k"), Some(512_000));
        assert_eq!(parse_rate("x"), None);
    }

    #[test]
    fn framed_ipv6_prefix_and_pool() {
        let p = 0x2001_0db8_0100_0007_u128 << 64;
        let v = ipv6_prefix_value(p, 64);
        assert_eq!(v.len(), 10);
        assert_eq!(parse_ipv6_prefix(&v), Some((p, 64)));
        // Full 16 octets with host bits set: the bits past the length are cleared.
        let mut full = alloc::vec![0, 64];
        full.extend_from_slice(&(p | 0xffff).to_be_bytes());
        assert_eq!(parse_ipv6_prefix(&full), Some((p, 64)));
        for bad in [
            &[][..],
            &[0][..],
            &[0, 129][..],
            &[0, 64, 1, 2][..],
            &[
                0, 8, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15, 16, 17,
            ][..],
        ] {
            assert_eq!(parse_ipv6_prefix(bad), None, "{bad:?}");
        }
        let mut b = Builder::new(code::ACCESS_ACCEPT, 3, [0; 16]);
        b.attr(attr::FRAMED_IPV6_PREFIX, &v)
            .attr(attr::FRAMED_IPV6_POOL, b"v6gold");
        let bytes = b.finish_request_md5(b"k").unwrap();
        let r = Reply::from_packet(&Packet::new_checked(&bytes).unwrap());
        assert_eq!(r.ipv6_prefix(), Some((p, 64)));
        assert_eq!(r.framed_ipv6_pool.as_deref(), Some("v6gold"));
        let req = accounting_request_v6(
            &LineInfo::default(),
            AcctStatus::Start,
            &AcctRecord::default(),
            Some((p, 64)),
        );
        assert!(req
            .attrs
            .iter()
            .any(|(a, x)| *a == attr::FRAMED_IPV6_PREFIX && *x == v));
    }

    /// RFC 4818 §3 (Delegated-IPv6-Prefix, 123, Framed-IPv6-Prefix's encoding) and
    /// RFC 6911 §3.1 (Framed-IPv6-Address, 168, 16 octets): read from an
    /// Access-Accept, written into accounting; a wrong-sized address is ignored.
    #[test]
    fn delegated_prefix_and_framed_ipv6_address() {
        let pd = 0x2001_0db8_8000_4200_u128 << 64;
        let na = 0x2001_0db8_0100_0000_0000_0000_0000_001a_u128;
        let v = ipv6_prefix_value(pd, 56);
        assert_eq!(v.len(), 2 + 7);
        let mut b = Builder::new(code::ACCESS_ACCEPT, 4, [0; 16]);
        b.attr(attr::DELEGATED_IPV6_PREFIX, &v)
            .attr(attr::FRAMED_IPV6_ADDRESS, &na.to_be_bytes());
        let bytes = b.finish_request_md5(b"k").unwrap();
        let r = Reply::from_packet(&Packet::new_checked(&bytes).unwrap());
        assert_eq!(r.delegated_prefix(), Some((pd, 56)));
        assert_eq!(r.framed_ipv6_address, Some(na.to_be_bytes()));
        let mut b = Builder::new(code::ACCESS_ACCEPT, 5, [0; 16]);
        b.attr(attr::FRAMED_IPV6_ADDRESS, &[0x20, 1, 0xd, 0xb8]);
        let bytes = b.finish_request_md5(b"k").unwrap();
        let r = Reply::from_packet(&Packet::new_checked(&bytes).unwrap());
        assert_eq!(r.framed_ipv6_address, None);
        let req = accounting_request_ipv6(
            &LineInfo::default(),
            AcctStatus::Interim,
            &AcctRecord::default(),
            &AcctIpv6 {
                delegated_prefix: Some((pd, 56)),
                address: Some(na),
                ..AcctIpv6::default()
            },
        );
        assert!(req
            .attrs
            .iter()
            .any(|(a, x)| *a == attr::DELEGATED_IPV6_PREFIX && *x == v));
        assert!(req
            .attrs
            .iter()
            .any(|(a, x)| *a == attr::FRAMED_IPV6_ADDRESS && *x == na.to_be_bytes()));
        assert!(!req
            .attrs
            .iter()
            .any(|(a, _)| *a == attr::FRAMED_IPV6_PREFIX));
    }
}
