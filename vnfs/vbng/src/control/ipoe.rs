//! IPoE subscribers (issue 15): IPv4 over Ethernet (RFC 894) on the access port,
//! single or QinQ VLANs, addressed by the built-in DHCPv4 server
//! ([`crate::dhcp4::Server`], RFC 2131) and run by the same subscriber core as PPPoE
//! sessions: AAA (RADIUS or local users), rate, timeouts, accounting, CoA and
//! Disconnect, the fast path's tables (session id 0 marks IPoE there).
//!
//! A subscriber's life:
//! 1. The first DHCP message from a MAC and VLANs without a session (a DHCPDISCOVER,
//!    or a DHCPREQUEST of a client that still holds a lease from before) creates a
//!    session waiting for AAA (a half-open session: the PPPoE half-open limits and
//!    timeout apply, so a DHCP storm from random MACs cannot fill the table). The
//!    message is held; later ones replace it.
//! 2. AAA: User-Name is the MAC (`aa:bb:cc:dd:ee:ff`), or the option 82 circuit or
//!    remote id (RFC 3046 §3.1, §3.2), with `ipoe.password` (PAP-style, RFC 2865
//!    §5.2); the local `users` answer without RADIUS; `authorize = false` accepts
//!    every client. A reject ends the session (nothing is answered; the client keeps
//!    discovering, within the half-open and DHCP rate limits).
//! 3. Accepted: the held message and the ones after it go to the DHCP server; its
//!    OFFER/ACK/NAK go back on the subscriber's line.
//! 4. The lease is bound (DHCPACK): the address is routed to the session in the fast
//!    path and accounting starts. A renewal keeps it; a DHCPRELEASE (Acct-Terminate-
//!    Cause User-Request), the lease running out (Lost-Carrier) or a DHCPDECLINE
//!    (User-Error) ends the session; so do the session and idle timeouts, CoA
//!    Disconnect and an operator.
//!
//! ARP on the access port (RFC 826): requests for the IPoE gateway, or for any other
//! address of the IPoE subnet (proxy ARP, so subscribers on one subnet reach each
//! other only through the BNG, where anti-spoofing and policing apply), are answered
//! with our access MAC; probes (sender `0.0.0.0`, RFC 5227 §2.1.1) and gratuitous
//! ARPs are not, so a client's conflict detection sees no false conflict.

use super::*;
use crate::config::{IpoeSection, IpoeUsername, RelaySection};
use crate::dhcp4::{self, Event as DhcpEvent, Server};
use dataplane::proto::arp;
use dataplane::proto::dhcp4::{
    insert_relay_agent_info, opt, remove_relay_agent_info, MessageType, Packet as DhcpPacket,
    RelayAgentInfo,
};

/// The IPoE side of the control plane.
#[derive(Debug, Clone)]
pub(super) struct IpoeCtl {
    pub(super) server: Server,
    username: IpoeUsername,
    password: crate::config::Password,
    authorize: bool,
    gateway: Ipv4Addr,
    subnet: (u32, u32),
    /// Per session slot: the DHCP message held while AAA decides.
    pub(super) held: BTreeMap<u32, Vec<u8>>,
    /// Leases changed since the journal was last taken.
    dirty: bool,
    /// The session of each line (VLANs and MAC): what a DHCP client key names.
    pub(super) by_line: HashMap<(Vlans, [u8; 6]), u32>,
    /// Relay to external servers instead of answering (`[ipoe.relay]`).
    relay: Option<RelaySection>,
    /// The relay's source address towards the servers (`core_ip`).
    core_ip: Option<Ipv4Addr>,
    /// IPv6 for IPoE subscribers from the DHCPv6 server (`ipoe.dhcp6`).
    pub(super) dhcp6: bool,
    /// Per session slot: the DHCPv6 message (and its source) held while AAA decides.
    pub(super) held6: BTreeMap<u32, (core::net::Ipv6Addr, Vec<u8>)>,
    /// Router Solicitations from lines without a session: a token bucket
    /// (tokens, last refill ms) so a storm of them costs a bounded number of RAs.
    pub(super) rs_bucket: (u32, u64),
}

/// What [`ControlPlane::ipoe_restore`] did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct IpoeRestored {
    /// Leases bound again, their sessions installed.
    pub restored: usize,
    /// Leases that had run out while we were down.
    pub expired: usize,
    /// Leases the pools or the session table could not take back.
    pub refused: usize,
}

impl IpoeCtl {
    pub(super) fn new(
        cfg: &IpoeSection,
        core_ip: Option<Ipv4Addr>,
    ) -> Result<IpoeCtl, ConfigError> {
        let server = Server::new(cfg.dhcp.clone())
            .map_err(|e| ConfigError(alloc::format!("ipoe.dhcp: {}", e.0)))?;
        let g = cfg.dhcp.gateway;
        let mask = if g.len == 0 {
            0
        } else {
            u32::MAX << (32 - u32::from(g.len))
        };
        let net = u32::from(g.addr) & mask;
        Ok(IpoeCtl {
            server,
            username: cfg.username,
            password: cfg.password.clone(),
            authorize: cfg.authorize,
            gateway: g.addr,
            subnet: (net, net | !mask),
            held: BTreeMap::new(),
            dirty: false,
            by_line: HashMap::new(),
            relay: cfg.relay.clone(),
            core_ip,
            dhcp6: cfg.dhcp6,
            held6: BTreeMap::new(),
            rs_bucket: (super::ipoe6::RS_BURST, 0),
        })
    }

    /// Our address on the IPoE subnet.
    pub(super) fn gateway(&self) -> Ipv4Addr {
        self.gateway
    }

    /// Whether DHCP is relayed to external servers.
    pub(super) fn relay_mode(&self) -> bool {
        self.relay.is_some()
    }

    fn in_subnet(&self, a: Ipv4Addr) -> bool {
        (self.subnet.0..=self.subnet.1).contains(&u32::from(a))
    }
}

/// A MAC as the AAA user name: `aa:bb:cc:dd:ee:ff`.
fn mac_text(m: &[u8; 6]) -> Vec<u8> {
    alloc::format!(
        "{:02x}:{:02x}:{:02x}:{:02x}:{:02x}:{:02x}",
        m[0],
        m[1],
        m[2],
        m[3],
        m[4],
        m[5]
    )
    .into_bytes()
}

/// The circuit id the relay inserts: `access<port>:<svlan>.<cvlan>` (as NAS-Port-Id).
fn circuit_id(k: &AccessKey) -> Vec<u8> {
    alloc::format!("access{}:{}.{}", k.port, k.vlans.svlan, k.vlans.cvlan).into_bytes()
}

/// The line a circuit id of ours names, for the client `mac`.
fn parse_circuit_id(c: &[u8], mac: [u8; 6]) -> Option<AccessKey> {
    let t = core::str::from_utf8(c).ok()?;
    let (port, vl) = t.strip_prefix("access")?.split_once(':')?;
    let (sv, cv) = vl.split_once('.')?;
    let vlans = Vlans {
        svlan: sv.parse().ok().filter(|v| *v < 4096)?,
        cvlan: cv.parse().ok().filter(|v| *v < 4096)?,
    };
    Some(AccessKey {
        port: port.parse().ok()?,
        mac,
        vlans,
    })
}

impl ControlPlane {
    /// Whether IPoE is configured.
    pub fn ipoe_enabled(&self) -> bool {
        self.ipoe.is_some()
    }

    /// Our address on the IPoE subnet (the fast path answers pings to it).
    pub fn ipoe_gateway(&self) -> Option<Ipv4Addr> {
        self.ipoe.as_ref().map(|i| i.gateway())
    }

    /// The DHCPv4 server's counters, when IPoE is configured.
    pub fn dhcp_stats(&self) -> Option<&dhcp4::Stats> {
        self.ipoe.as_ref().map(|i| i.server.stats())
    }

    /// The DHCPv4 server (leases, journal), when IPoE is configured.
    pub fn dhcp_server(&self) -> Option<&Server> {
        self.ipoe.as_ref().map(|i| &i.server)
    }

    /// Bound DHCP leases.
    pub fn ipoe_session_count(&self) -> usize {
        self.slots
            .iter()
            .flatten()
            .filter(|e| matches!(e.access, Access::Ipoe(_)) && e.installed)
            .count()
    }

    /// An IPv4 frame punted from the access port: DHCP towards a server.
    pub(super) fn ipoe_input(&mut self, key: &AccessKey, frame: &[u8], now: u64) {
        if self.ipoe.is_none() {
            self.stats.malformed += 1;
            return;
        }
        let req = match dhcp4::wire::decap(frame) {
            Ok(r) => r,
            Err(_) => {
                self.stats.malformed += 1;
                return;
            }
        };
        let msg = req.message;
        match self.by_key.get(&(*key, 0)).copied() {
            Some(idx) => {
                let authorized = matches!(
                    self.slots.get(idx as usize),
                    Some(Some(e)) if !e.waiting_for_aaa()
                );
                if authorized {
                    self.dhcp(idx, msg, now);
                } else if let Some(i) = self.ipoe.as_mut() {
                    // Still in AAA: the latest message is answered once accepted.
                    i.held.insert(idx, msg.to_vec());
                }
            }
            None => self.ipoe_new(key, msg, now),
        }
    }

    /// The first DHCP message of a MAC and VLANs without a session.
    fn ipoe_new(&mut self, key: &AccessKey, msg: &[u8], now: u64) {
        let Ok(p) = DhcpPacket::new_checked(msg) else {
            self.stats.malformed += 1;
            return;
        };
        // A client must name the MAC it sends from (no leases for another host).
        if p.client_mac() != Some(key.mac) {
            self.stats.malformed += 1;
            return;
        }
        // Only a client asking for an address starts a session. A RELEASE or DECLINE
        // without one goes to the built-in server, which counts it; an INFORM (a
        // host with its own address asking for parameters, RFC 2131 §3.4) is
        // answered without a session.
        if !matches!(
            p.message_type(),
            Some(MessageType::Discover | MessageType::Request)
        ) {
            let gw = self.ipoe.as_ref().map(|i| i.server.config().server_id());
            let Some((i, gw)) = self.ipoe.as_mut().zip(gw) else {
                return;
            };
            if i.relay.is_some() {
                self.stats.relay_dropped += 1;
                return;
            }
            let h = i.server.handle(now, key.vlans, msg);
            if let Some(r) = &h.reply {
                let f = dhcp4::wire::encap(r, MacAddr(self.our_mac), gw, None);
                self.tx.push((key.port, f));
            }
            return;
        }
        let Some(user) = self.ipoe_username(key, &p) else {
            self.stats.ipoe_no_username += 1;
            return;
        };
        let Some(idx) = self.ipoe_open(key, user.clone(), now) else {
            return;
        };
        if let Some(i) = self.ipoe.as_mut() {
            i.held.insert(idx, msg.to_vec());
        }
        self.ipoe_aaa(idx, user, now);
    }

    /// A half-open IPoE session for a line without one (the PPPoE half-open limits
    /// apply); `None` (counted) when the limits or the table refuse it.
    pub(super) fn ipoe_open(&mut self, key: &AccessKey, user: Vec<u8>, now: u64) -> Option<u32> {
        if self.draining {
            self.drain_refused += 1;
            return None;
        }
        if !self.half_open.admit(key, &mut self.stats) {
            return None;
        }
        let Some(idx) = self.free.pop() else {
            self.stats.table_full += 1;
            return None;
        };
        self.gen = self.gen.wrapping_add(1);
        let half_open = Some(now + self.half_open.timeout_ms);
        let e = self.ipoe_entry(*key, user, false, half_open, now);
        self.half_open.enter(key);
        if let Some(s) = self.slots.get_mut(idx as usize) {
            *s = Some(alloc::boxed::Box::new(e));
        }
        self.by_key.insert((*key, 0), idx);
        if let Some(i) = self.ipoe.as_mut() {
            i.by_line.insert((key.vlans, key.mac), idx);
        }
        self.stats.sessions_created += 1;
        Some(idx)
    }

    /// AAA for a new IPoE session: RADIUS or the local users, or accepted at once
    /// with `authorize = false`.
    pub(super) fn ipoe_aaa(&mut self, idx: u32, user: Vec<u8>, now: u64) {
        let (authorize, password) = match self.ipoe.as_ref() {
            Some(i) => (i.authorize, i.password.as_bytes().to_vec()),
            None => return,
        };
        if authorize {
            self.verify(idx, Credentials::Pap { user, password }, now);
        } else {
            self.accept(idx, Reply::default(), now);
        }
        self.schedule(idx);
    }

    /// The AAA user name of an IPoE line without a DHCPv4 message to read (a
    /// DHCPv6 client): the MAC; `None` when option 82 names the subscriber.
    pub(super) fn ipoe_mac_username(&self, key: &AccessKey) -> Option<Vec<u8>> {
        (self.ipoe.as_ref()?.username == IpoeUsername::Mac).then(|| mac_text(&key.mac))
    }

    /// The AAA user name of a client: its MAC, or an option 82 sub-option as text.
    fn ipoe_username(&self, key: &AccessKey, p: &DhcpPacket<'_>) -> Option<Vec<u8>> {
        let which = self.ipoe.as_ref()?.username;
        if which == IpoeUsername::Mac {
            return Some(mac_text(&key.mac));
        }
        let info = p
            .option(dataplane::proto::dhcp4::opt::RELAY_AGENT_INFO)
            .and_then(|v| dataplane::proto::dhcp4::RelayAgentInfo::parse(v).ok())?;
        match which {
            IpoeUsername::CircuitId => info.circuit_id,
            IpoeUsername::RemoteId => info.remote_id,
            IpoeUsername::Mac => None,
        }
    }

    /// AAA accepted IPoE session `idx`: its Framed-IP-Address (RFC 2865 §5.8; not
    /// 0xFFFFFFFE/0xFFFFFFFF, "the NAS chooses") or Framed-Pool (RFC 2869 §5.18)
    /// becomes what the DHCP server offers its line. One that cannot be honoured
    /// (outside the IPoE subnet, the gateway, martian, an unknown pool) rejects the
    /// session as for PPPoE (`framed_ip_invalid`, `pool_exhausted`). In relay mode
    /// the external servers choose and the attributes are ignored. `false` when the
    /// session was rejected.
    pub(super) fn dhcp4_fix(&mut self, idx: u32, now: u64) -> bool {
        let Some(Some(e)) = self.slots.get(idx as usize) else {
            return false;
        };
        let f = dhcp4::Fixed {
            addr: e
                .reply
                .framed_ip
                .filter(|ip| *ip != 0xffff_fffe && *ip != 0xffff_ffff)
                .map(Ipv4Addr::from),
            pool: e.reply.framed_pool.clone(),
        };
        let key = e.key;
        let Some(i) = self.ipoe.as_mut() else {
            return true;
        };
        if f == dhcp4::Fixed::default() || i.relay.is_some() {
            return true;
        }
        match i.server.assign(key.vlans, key.mac, f) {
            Ok(()) => true,
            Err(err) => {
                match err {
                    dhcp4::AssignError::BadAddress => self.stats.framed_ip_invalid += 1,
                    dhcp4::AssignError::NoSuchPool | dhcp4::AssignError::TooMany => {
                        self.stats.pool_exhausted += 1
                    }
                }
                self.reject(idx, now);
                false
            }
        }
    }

    /// IPoE session `idx` ends: what AAA fixed for its line is forgotten.
    pub(super) fn dhcp4_unfix(&mut self, idx: u32) {
        let Some(Some(e)) = self.slots.get(idx as usize) else {
            return;
        };
        let key = e.key;
        if let (Some(i), Access::Ipoe(_)) = (self.ipoe.as_mut(), &e.access) {
            i.server.unassign(key.vlans, key.mac);
        }
    }

    /// AAA accepted session `idx`: answer its held DHCP message.
    pub(super) fn ipoe_authorized(&mut self, idx: u32, now: u64) {
        let msg = self.ipoe.as_mut().and_then(|i| i.held.remove(&idx));
        if let Some(m) = msg {
            self.dhcp(idx, &m, now);
        }
        let m6 = self.ipoe.as_mut().and_then(|i| i.held6.remove(&idx));
        if let Some((src, m)) = m6 {
            self.ipoe_dhcp6_serve(idx, src, &m, now);
        }
        self.schedule(idx);
    }

    /// A DHCP message of authorised session `idx` to the server; its reply goes out
    /// on the session's line, its lease event to the session.
    fn dhcp(&mut self, idx: u32, msg: &[u8], now: u64) {
        let Some(i) = self.ipoe.as_mut() else {
            return;
        };
        if i.relay.is_some() {
            self.relay_to_servers(idx, msg, now);
            return;
        }
        let Some(Some(e)) = self.slots.get(idx as usize) else {
            return;
        };
        let key = e.key;
        // An address the session's slot group steers to (`slots::FreeSlots`).
        i.server
            .set_share(Some((self.workers, self.free.group_of(idx))));
        let h = i.server.handle(now, key.vlans, msg);
        i.server.set_share(None);
        let (gw, our_mac) = (i.server.config().server_id(), self.our_mac);
        if let Some(r) = &h.reply {
            let f = dhcp4::wire::encap(r, MacAddr(our_mac), gw, None);
            self.tx.push((key.port, f));
        }
        if let Some(ev) = h.event {
            self.dhcp_event(ev, now);
        }
    }

    /// Whether the leases changed since [`ControlPlane::ipoe_journal`] last ran.
    pub fn ipoe_journal_due(&self) -> bool {
        self.ipoe.as_ref().is_some_and(|i| i.dirty)
    }

    /// The bound leases as a journal ([`crate::dhcp4::journal`]); `now` is our
    /// clock, `unix_ms` the wall clock at the same moment. Clears the change flag.
    pub fn ipoe_journal(&mut self, now: u64, unix_ms: u64) -> Option<Vec<u8>> {
        let i = self.ipoe.as_mut()?;
        i.dirty = false;
        Some(i.server.save_journal(now, unix_ms))
    }

    /// Restores a lease journal at start-up: each lease still valid is bound again
    /// and its subscriber installed on access port `port` (authorised: it was when
    /// the lease was granted; the rate is the default until a CoA says otherwise),
    /// with a new accounting session.
    pub fn ipoe_restore(
        &mut self,
        port: u16,
        bytes: &[u8],
        now: u64,
        unix_ms: u64,
    ) -> Result<IpoeRestored, String> {
        let Some(i) = self.ipoe.as_mut() else {
            return Err("no [ipoe] section".into());
        };
        let r = i
            .server
            .load_journal(bytes, now, unix_ms)
            .map_err(|e| alloc::format!("{e}"))?;
        let mut out = IpoeRestored {
            expired: r.expired,
            refused: r.refused,
            ..IpoeRestored::default()
        };
        for (client, lease) in r.leases {
            let key = AccessKey {
                port,
                mac: client.mac,
                vlans: client.vlans,
            };
            if self.by_key.contains_key(&(key, 0)) {
                out.refused += 1;
                continue;
            }
            let Some(idx) = self.free.pop() else {
                out.refused += 1;
                continue;
            };
            let user = match self.ipoe.as_ref().map(|i| i.username) {
                Some(IpoeUsername::Mac) => mac_text(&key.mac),
                _ => Vec::new(),
            };
            self.gen = self.gen.wrapping_add(1);
            let e = self.ipoe_entry(key, user, true, None, now);
            if let Some(s) = self.slots.get_mut(idx as usize) {
                *s = Some(alloc::boxed::Box::new(e));
            }
            self.by_key.insert((key, 0), idx);
            if let Some(i) = self.ipoe.as_mut() {
                i.by_line.insert((key.vlans, key.mac), idx);
            }
            self.stats.sessions_created += 1;
            self.stats.auth_accept += 1;
            self.lease_up(idx, lease, now);
            self.schedule(idx);
            out.restored += 1;
        }
        Ok(out)
    }

    /// A new IPoE subscriber entry.
    fn ipoe_entry(
        &self,
        key: AccessKey,
        user: Vec<u8>,
        authorized: bool,
        half_open: Option<u64>,
        now: u64,
    ) -> Entry {
        Entry {
            gen: self.gen,
            key,
            access: Access::Ipoe(Ipoe {
                lease_expires: 0,
                mtu: 1500,
                authorized,
                half_open,
            }),
            user,
            ip: 0,
            prefix6: 0,
            ipv6_up: false,
            ipv4_up: false,
            next_ra: None,
            last_solicited_ra: None,
            rate: self.default_rate,
            reply: Reply::default(),
            created: now,
            up_at: None,
            next_interim: None,
            hard_deadline: None,
            idle: None,
            acct_started: false,
            installed: false,
            pd: None,
            addr6: None,
        }
    }

    /// A lease event from the DHCP server.
    pub(super) fn dhcp_event(&mut self, ev: DhcpEvent, now: u64) {
        if let Some(i) = self.ipoe.as_mut() {
            i.dirty = true;
        }
        let (client, what) = match &ev {
            DhcpEvent::LeaseBound { client, .. } | DhcpEvent::LeaseRenewed { client, .. } => {
                (client, None)
            }
            DhcpEvent::LeaseReleased { client, .. } => {
                (client, Some(radius::terminate_cause::USER_REQUEST))
            }
            DhcpEvent::LeaseExpired { client, .. } => {
                (client, Some(radius::terminate_cause::LOST_CARRIER))
            }
            DhcpEvent::LeaseDeclined { client, .. } => {
                (client, Some(radius::terminate_cause::USER_ERROR))
            }
        };
        // The session on the client's line.
        let Some(idx) = self
            .ipoe
            .as_ref()
            .and_then(|i| i.by_line.get(&(client.vlans, client.mac)).copied())
        else {
            return;
        };
        match (ev, what) {
            (DhcpEvent::LeaseBound { lease, .. } | DhcpEvent::LeaseRenewed { lease, .. }, None) => {
                self.lease_up(idx, lease, now)
            }
            (_, Some(cause)) => {
                // A dual-stack subscriber keeps its session while DHCPv6 still binds
                // an address or a prefix to it: only IPv4 stops.
                match self.slots.get_mut(idx as usize) {
                    Some(Some(e)) if e.addr6.is_some() || e.pd.is_some() => {
                        if e.installed && e.ipv4_up {
                            self.fib.push(FibUpdate::Down4 { idx, ip: e.ip });
                        }
                        e.ipv4_up = false;
                        e.ip = 0;
                    }
                    _ => self.remove_with(idx, cause, false, now),
                }
            }
            _ => {}
        }
    }

    /// Relay mode: a client message of session `idx` to every server (RFC 2131 §4.1,
    /// RFC 1542 §4.1.1: `giaddr` our IPoE gateway when it was zero, `hops` plus one;
    /// RFC 3046 §2.1: option 82 added). A DHCPRELEASE or DHCPDECLINE also ends the
    /// session here: no reply follows them.
    fn relay_to_servers(&mut self, idx: u32, msg: &[u8], now: u64) {
        let Some(i) = self.ipoe.as_ref() else {
            return;
        };
        let (Some(relay), Some(src)) = (i.relay.as_ref(), i.core_ip) else {
            return;
        };
        let gw = i.gateway;
        let Some(Some(e)) = self.slots.get(idx as usize) else {
            return;
        };
        let key = e.key;
        let Ok(p) = DhcpPacket::new_checked(msg) else {
            self.stats.malformed += 1;
            return;
        };
        let mt = p.message_type();
        let has82 = p.option(opt::RELAY_AGENT_INFO).is_some();
        // RFC 1542 §4.1.1: a message that went through too many relays is dropped.
        if (has82 && !relay.trust_option82) || p.hops() >= 16 {
            self.stats.relay_dropped += 1;
            return;
        }
        let mut m = msg.to_vec();
        m[3] = p.hops() + 1;
        if p.giaddr().is_unspecified() {
            m[24..28].copy_from_slice(&gw.octets());
        }
        let out = if has82 {
            m
        } else {
            let info = RelayAgentInfo {
                circuit_id: Some(circuit_id(&key)),
                remote_id: Some(mac_text(&key.mac)),
                other: Vec::new(),
            };
            let mut out = Vec::with_capacity(m.len() + 40);
            if insert_relay_agent_info(&m, &info, &mut out).is_err() {
                self.stats.relay_dropped += 1;
                return;
            }
            out
        };
        let Some((port, mac, hop)) = self
            .core
            .as_ref()
            .and_then(|c| Some((c.port, c.mac, c.next_hop_mac()?)))
        else {
            // The gateway is not resolved yet: the client retransmits.
            self.stats.relay_dropped += 1;
            return;
        };
        let mut r = dhcp4::Reply {
            message: out,
            dst: dhcp4::Destination::Relay(src),
            vlans: Vlans::NONE,
            kind: mt.unwrap_or(MessageType::Request),
        };
        for &s in &relay.servers {
            r.dst = dhcp4::Destination::Relay(s);
            let f = dhcp4::wire::encap(&r, MacAddr(mac), src, Some(MacAddr(hop)));
            self.tx.push((port, f));
        }
        self.stats.relay_to_server += 1;
        match mt {
            Some(MessageType::Release) => {
                self.remove_with(idx, radius::terminate_cause::USER_REQUEST, false, now)
            }
            Some(MessageType::Decline) => {
                self.remove_with(idx, radius::terminate_cause::USER_ERROR, false, now)
            }
            _ => {}
        }
    }

    /// Relay mode: a server's reply to `giaddr` punted from the core port. It must
    /// carry our option 82 (RFC 3046 §2.2: the circuit id names the line), which is
    /// removed; it goes to the client broadcast or unicast as RFC 2131 §4.1 says a
    /// relay agent delivers it; a DHCPACK with a lease binds the session.
    pub(super) fn relay_from_core(&mut self, frame: &[u8], now: u64) {
        let Some(i) = self.ipoe.as_ref() else {
            self.stats.relay_dropped += 1;
            return;
        };
        if i.relay.is_none() {
            self.stats.relay_dropped += 1;
            return;
        }
        let gw = i.gateway;
        let Ok(req) = dhcp4::wire::decap(frame) else {
            self.stats.relay_dropped += 1;
            return;
        };
        let mut clean = Vec::with_capacity(req.message.len());
        let info = match remove_relay_agent_info(req.message, &mut clean) {
            Ok(Some(v)) => RelayAgentInfo::parse(&v).ok(),
            _ => None,
        };
        let Ok(p) = DhcpPacket::new_checked(&clean) else {
            self.stats.relay_dropped += 1;
            return;
        };
        let (Some(info), Some(mac)) = (info, p.client_mac()) else {
            self.stats.relay_dropped += 1;
            return;
        };
        let Some(key) = info
            .circuit_id
            .as_deref()
            .and_then(|c| parse_circuit_id(c, mac))
        else {
            self.stats.relay_dropped += 1;
            return;
        };
        let Some(&idx) = self.by_key.get(&(key, 0)) else {
            self.stats.relay_dropped += 1;
            return;
        };
        let mt = p.message_type();
        let yiaddr = p.yiaddr();
        let dst = if mt == Some(MessageType::Nak) || p.broadcast() || yiaddr.is_unspecified() {
            dhcp4::Destination::Broadcast
        } else {
            dhcp4::Destination::Unicast { ip: yiaddr, mac }
        };
        let lease_s = p
            .option(opt::LEASE_TIME)
            .and_then(|v| <[u8; 4]>::try_from(v).ok())
            .map(u32::from_be_bytes);
        let r = dhcp4::Reply {
            message: clean,
            dst,
            vlans: key.vlans,
            kind: mt.unwrap_or(MessageType::Ack),
        };
        let f = dhcp4::wire::encap(&r, MacAddr(self.our_mac), gw, None);
        self.tx.push((key.port, f));
        self.stats.relay_to_client += 1;
        if let (Some(MessageType::Ack), Some(l), false) = (mt, lease_s, yiaddr.is_unspecified()) {
            let lease = dhcp4::Lease {
                addr: yiaddr,
                lease_s: l,
                expires_ms: now.saturating_add(u64::from(l) * 1000),
            };
            self.lease_up(idx, lease, now);
        }
    }

    /// Relay mode: whether session `idx`'s lease (as the server's last DHCPACK
    /// gave it) has run out; ended then (Lost-Carrier).
    pub(super) fn relay_lease_check(&mut self, idx: u32, now: u64) -> bool {
        if self.ipoe.as_ref().is_none_or(|i| i.relay.is_none()) {
            return false;
        }
        let expired = matches!(
            self.slots.get(idx as usize),
            Some(Some(e)) if matches!(&e.access, Access::Ipoe(i) if i.lease_expires != 0 && i.lease_expires <= now)
        );
        if expired {
            self.remove_with(idx, radius::terminate_cause::LOST_CARRIER, false, now);
        }
        expired
    }

    /// A lease bound or renewed for session `idx`: route its address (first time:
    /// install the session, start accounting).
    fn lease_up(&mut self, idx: u32, lease: dhcp4::Lease, now: u64) {
        let Some(Some(e)) = self.slots.get_mut(idx as usize) else {
            return;
        };
        let addr = u32::from(lease.addr);
        if let Access::Ipoe(i) = &mut e.access {
            i.lease_expires = lease.expires_ms;
        }
        if e.installed && e.ip == addr {
            return;
        }
        if e.installed {
            // A new address for the same line: withdraw the old one first.
            self.fib.push(FibUpdate::Down4 { idx, ip: e.ip });
        }
        e.ip = addr;
        e.ipv4_up = true;
        let key = e.key;
        if let Some(Access::Ipoe(i)) = self
            .slots
            .get_mut(idx as usize)
            .and_then(|s| s.as_mut())
            .map(|e| &mut e.access)
        {
            if i.half_open.take().is_some() {
                self.half_open.leave(&key);
            }
        }
        let installed = matches!(self.slots.get(idx as usize), Some(Some(e)) if e.installed);
        if installed {
            self.network_readd(idx);
        } else {
            self.install(idx, now);
        }
    }

    /// Route session `idx`'s (new) address again.
    fn network_readd(&mut self, idx: u32) {
        let Some(Some(e)) = self.slots.get(idx as usize) else {
            return;
        };
        self.fib.push(FibUpdate::Add {
            idx,
            key: e.key,
            sid: e.sid(),
            ip: e.ip,
            rate: e.rate,
            mtu: e.mtu(),
        });
    }

    /// Drive the DHCP server's timers (offers, leases, declined addresses).
    pub(super) fn poll_ipoe(&mut self, now: u64) {
        let Some(i) = self.ipoe.as_mut() else {
            return;
        };
        if i.server.next_deadline().is_none_or(|d| d > now) {
            return;
        }
        for ev in i.server.poll(now) {
            self.dhcp_event(ev, now);
        }
    }

    /// An ARP frame punted from the access port (see the module docs).
    pub(super) fn ipoe_arp(&mut self, key: &AccessKey, payload: &[u8], _now: u64) {
        let Some(i) = self.ipoe.as_ref() else {
            self.stats.malformed += 1;
            return;
        };
        let Ok(req) = arp::Packet::new_checked(payload).and_then(|p| arp::Repr::parse(&p)) else {
            self.stats.malformed += 1;
            return;
        };
        let (spa, tpa) = (req.source_protocol_addr, req.target_protocol_addr);
        if req.operation != arp::Operation::REQUEST
            || spa.is_unspecified()
            || spa == tpa
            || !i.in_subnet(tpa)
            || req.source_hardware_addr.0 != key.mac
        {
            self.stats.ipoe_arp_ignored += 1;
            return;
        }
        let rep = req.reply(MacAddr(self.our_mac));
        let mut body = alloc::vec![0u8; rep.buffer_len()];
        if rep
            .emit(&mut arp::Packet::new_unchecked(&mut body[..]))
            .is_err()
        {
            return;
        }
        let f = self.frame(key, EtherType::ARP, &body);
        self.stats.ipoe_arp_replies += 1;
        self.tx.push((key.port, f));
    }
}
