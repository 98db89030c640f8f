//! RADIUS client for the vBNG, sans-IO: authentication (RFC 2865 §4.1–§4.3 with
//! Message-Authenticator, RFC 3579 §3.2), accounting Start/Interim-Update/Stop with
//! 64-bit counters split into Gigawords (RFC 2866 §5, RFC 2869 §5.1–§5.2),
//! retransmission with exponential back-off and failover across servers (RFC 5080 §2.2:
//! a retransmission keeps Identifier and Authenticator), and the dynamic authorization
//! server side (RFC 5176: Disconnect-Request and CoA-Request → ACK/NAK).
//!
//! The client produces datagrams to send and consumes datagrams received; time is
//! passed in. The `std` transport (UDP sockets) is in [`crate::radius_io`].

use crate::wire::radius::{attr, code, verify_request_md5, verify_response, vsa, Builder, Packet};
use alloc::collections::VecDeque;
use alloc::string::String;
use alloc::vec;
use alloc::vec::Vec;
use core::net::SocketAddr;

/// One RADIUS server.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Server {
    /// Address and port.
    pub addr: SocketAddr,
    /// Shared secret.
    pub secret: Vec<u8>,
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

/// A request before encoding; encoded per server (each has its own secret).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Request {
    /// Auth or accounting.
    pub service: Service,
    /// Attributes (type, value) in order, without User-Password/Message-Authenticator.
    pub attrs: Vec<(u8, Vec<u8>)>,
    /// Cleartext PAP password, hidden per server (RFC 2865 §5.2).
    pub password: Option<Vec<u8>>,
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
    /// All servers failed for request `tag`.
    Timeout {
        /// The caller's tag.
        tag: u64,
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
}

/// The client.
#[derive(Debug, Clone)]
pub struct Client {
    cfg: ClientConfig,
    // pending[channel][id] (boxed: the table is mostly empty slots, kept pointer-sized)
    pending: Vec<Vec<Option<alloc::boxed::Box<Pending>>>>,
    next_slot: usize,
    in_flight: usize,
    /// No pending request is due before this time (a lower bound: answered requests
    /// may leave it early), so `poll` skips the scan of every slot until then.
    next_due: u64,
    backlog: VecDeque<(u64, Request)>,
    dead_until: [Vec<u64>; 2],
    rng: crate::rng::Rng,
    out: Vec<Transmit>,
    events: Vec<Event>,
    /// Counters.
    pub stats: ClientStats,
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
            pending: (0..ch).map(|_| (0..256).map(|_| None).collect()).collect(),
            cfg,
            next_slot: 0,
            in_flight: 0,
            next_due: u64::MAX,
            backlog: VecDeque::new(),
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

    /// Requests in flight.
    pub fn in_flight(&self) -> usize {
        self.in_flight
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
        let ch = self.pending.len();
        let total = ch * 256;
        for k in 0..total {
            let s = (self.next_slot + k) % total;
            let (c, id) = (s / 256, s % 256);
            if self
                .pending
                .get(c)
                .and_then(|v| v.get(id))
                .is_some_and(|p| p.is_none())
            {
                self.next_slot = s + 1;
                return Some((c, id as u8));
            }
        }
        None
    }

    /// Submit a request tagged `tag`; it is sent on the next [`Client::poll`].
    pub fn submit(&mut self, tag: u64, req: Request, now: u64) {
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

    fn start(&mut self, tag: u64, req: Request, c: usize, id: u8, now: u64) {
        let server = self.first_live(req.service, now);
        self.send_to(tag, req, server, c, id, now);
    }

    fn send_to(&mut self, tag: u64, req: Request, server: usize, c: usize, id: u8, now: u64) {
        let Some((bytes, auth)) = self.encode(&req, server, id) else {
            self.stats.timeouts += 1;
            self.events.push(Event::Timeout { tag });
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
        };
        if let Some(slot) = self
            .pending
            .get_mut(c)
            .and_then(|v| v.get_mut(usize::from(id)))
        {
            if slot.is_none() {
                self.in_flight += 1;
            }
            *slot = Some(alloc::boxed::Box::new(p));
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
        core::mem::take(&mut self.out)
    }

    /// Retransmit, fail over or time out every request due at `now`.
    fn expire(&mut self, now: u64) {
        let mut expired = Vec::new();
        let mut next_due = u64::MAX;
        for (c, ids) in self.pending.iter().enumerate() {
            for (id, p) in ids.iter().enumerate() {
                match p {
                    Some(p) if p.deadline <= now => expired.push((c, id)),
                    Some(p) => next_due = next_due.min(p.deadline),
                    None => {}
                }
            }
        }
        self.next_due = u64::MAX;
        for (c, id) in expired {
            let Some(p) = self.pending.get_mut(c).and_then(|v| v.get_mut(id)) else {
                continue;
            };
            let Some(mut pe) = p.take() else { continue };
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
                if let Some(slot) = self.pending.get_mut(c).and_then(|v| v.get_mut(id)) {
                    *slot = Some(pe);
                    self.in_flight += 1;
                }
                continue;
            }
            // This server failed: mark it dead, fail over to the next one.
            let si = svc_index(pe.req.service);
            if let Some(d) = self.dead_until[si].get_mut(pe.server) {
                *d = now + self.cfg.dead_ms;
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

    /// Earliest retransmission deadline.
    pub fn deadline(&self) -> Option<u64> {
        self.pending
            .iter()
            .flatten()
            .flatten()
            .map(|p| p.deadline)
            .min()
    }

    /// Feed a datagram received on `channel` from `from`.
    pub fn input(&mut self, channel: u8, from: SocketAddr, bytes: &[u8]) {
        let Ok(p) = Packet::new_checked(bytes) else {
            self.stats.bad_responses += 1;
            return;
        };
        let slot = self
            .pending
            .get_mut(usize::from(channel))
            .and_then(|v| v.get_mut(usize::from(p.id())));
        let Some(slot) = slot else {
            self.stats.bad_responses += 1;
            return;
        };
        let Some(pe) = slot.as_ref() else {
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
        if srv.addr != from || !code_ok || !verify_response(&p, &srv.secret, &pe.auth) {
            self.stats.bad_responses += 1;
            return;
        }
        // Server answered: it is alive again.
        let si = svc_index(pe.req.service);
        if let Some(d) = self.dead_until[si].get_mut(pe.server) {
            *d = 0;
        }
        let tag = pe.tag;
        *slot = None;
        self.in_flight -= 1;
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
        a.push((attr::NAS_PORT_TYPE, 5u32.to_be_bytes().to_vec()));
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
    a.push((attr::FRAMED_PROTOCOL, 1u32.to_be_bytes().to_vec())); // PPP
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
    let mut a = Vec::new();
    let u = |v: u32| v.to_be_bytes().to_vec();
    a.push((attr::ACCT_STATUS_TYPE, u(status as u32)));
    a.push((attr::ACCT_SESSION_ID, r.session_id.as_bytes().to_vec()));
    a.push((attr::USER_NAME, r.user.clone()));
    a.push((attr::ACCT_AUTHENTIC, u(1)));
    a.push((attr::FRAMED_PROTOCOL, u(1)));
    if r.framed_ip != 0 {
        a.push((attr::FRAMED_IP_ADDRESS, u(r.framed_ip)));
    }
    if let Some((p, l)) = ipv6_prefix {
        a.push((attr::FRAMED_IPV6_PREFIX, ipv6_prefix_value(p, l)));
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
    use crate::wire::radius::unhide_password;
    use core::net::{IpAddr, Ipv4Addr};

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
            },
            Rng::from_seed([5; 32]),
        )
    }

    fn accept_for(tx: &Transmit, secret: &[u8], extra: impl FnOnce(&mut Builder)) -> Vec<u8> {
        let p = Packet::new_checked(&tx.bytes).unwrap();
        let mut b = Builder::new(code::ACCESS_ACCEPT, p.id(), [0; 16]);
        extra(&mut b);
        b.finish_response(secret, &p.authenticator()).unwrap()
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
                service: Service::Acct,
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
}
