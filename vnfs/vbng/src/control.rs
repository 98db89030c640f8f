//! The vBNG control plane, sans-IO: PPPoE discovery and session-stage control packets
//! punted by the fast path, the PPP link of every subscriber ([`crate::session`]), AAA
//! (RADIUS client or the local user file), address pools, accounting with interim
//! updates (RFC 2866, RFC 2869 §2.1), Session-/Idle-Timeout (RFC 2865 §5.27–§5.28),
//! and dynamic authorization (RFC 5176). It programs the fast path through
//! [`FibUpdate`]s and reads per-session counters from [`SessionCounters`].
//!
//! IPv6 (dual stack): at Access-Accept a session with IPv6CP enabled gets a /64 —
//! Framed-IPv6-Prefix (RFC 3162 §2.3) if the server sent a /64, else from the pool
//! named by Framed-IPv6-Pool (§2.4), else from the default IPv6 pool
//! ([`crate::pool6`]). When IPv6CP opens (RFC 5072 §4) the /64 is installed in the fast
//! path ([`FibUpdate::Add6`]) and announced by a Router Advertisement from
//! `fe80::<our interface identifier>` (RFC 4861 §6.2.4, [`crate::nd`]), repeated every
//! `ra_interval_s` and sent in answer to Router Solicitations (§6.2.6); Neighbor
//! Solicitations for that link-local address are answered (§7.2.4). The prefix is in
//! every Accounting-Request as Framed-IPv6-Prefix (RFC 3162 §3).
//!
//! Time is passed in (ms). Timers are kept in a heap so `poll` costs O(due · log n),
//! not O(sessions).

use crate::auth::Credentials;
use crate::config::{parse_mac, parse_range, parse_rate_pair, parse_sockaddr, Config, ConfigError};
use crate::fsm::Timers;
use crate::pool::{Pool, Pools};
use crate::pool6::{parse_prefix6, Pool6, Pools6};
use crate::pppoe::{AccessKey, Discovery, DiscoveryAction, DiscoveryConfig, SessionRequest};
use crate::radius::{
    self, AcctRecord, AcctStatus, Client, ClientConfig, DynAuth, Event, LineInfo, Reply, Server,
    Transmit,
};
use crate::rng::Rng;
use crate::session::{EndCause, LinkParams, PppSession, SessEvent};
use crate::wire::eth::{EthRepr, Vlans, ETHERTYPE_PPPOE_DISC, ETHERTYPE_PPPOE_SESS};
use crate::wire::pppoe::{Code, Packet as PppoePacket, HEADER_LEN as PPPOE_HLEN};
use crate::wire::radius::code as rcode;
use alloc::collections::{BTreeMap, BinaryHeap};
use alloc::string::String;
use alloc::sync::Arc;
use alloc::vec::Vec;
use core::cmp::Reverse;
use core::sync::atomic::{AtomicU64, Ordering};
use hashbrown::HashMap;

/// A change to the fast-path tables.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum FibUpdate {
    /// Install a session.
    Add {
        /// Session index (counter slot).
        idx: u32,
        /// Access port, MAC, VLANs.
        key: AccessKey,
        /// PPPoE session id.
        sid: u16,
        /// Subscriber address.
        ip: u32,
        /// Rate (up, down) bit/s; 0 = unlimited.
        rate: (u64, u64),
        /// The session's PPP MTU: the smaller of the MRUs negotiated by LCP (1492
        /// without RFC 4638 PPP-Max-Payload), for ICMP Fragmentation Needed and MSS
        /// clamping in the fast path.
        mtu: u16,
    },
    /// Remove a session.
    Remove {
        /// Session index.
        idx: u32,
        /// Access key.
        key: AccessKey,
        /// Session id.
        sid: u16,
        /// Address.
        ip: u32,
    },
    /// Change a session's rate (CoA).
    Rate {
        /// Session index.
        idx: u32,
        /// New (up, down) bit/s.
        rate: (u64, u64),
    },
    /// Route a /64 to a session (IPv6CP up, prefix announced by RA).
    Add6 {
        /// Session index.
        idx: u32,
        /// Upper 64 bits of the session's /64.
        prefix: u64,
        /// Our IPv6CP interface identifier on the session's link: the fast path sends
        /// ICMPv6 errors to the subscriber from `fe80::<router_iid>` (0 = none).
        router_iid: u64,
    },
    /// Stop routing a session's /64.
    Remove6 {
        /// Session index.
        idx: u32,
        /// Upper 64 bits of the /64.
        prefix: u64,
    },
}

/// Per-session traffic counters written by the fast path, read for accounting:
/// four relaxed atomics per session slot (up octets, up packets, down octets, down
/// packets).
#[derive(Debug)]
pub struct SessionCounters {
    v: Vec<AtomicU64>,
}

impl SessionCounters {
    /// Counters for `n` session slots.
    pub fn new(n: usize) -> Arc<SessionCounters> {
        Arc::new(SessionCounters {
            v: (0..n * 4).map(|_| AtomicU64::new(0)).collect(),
        })
    }
    /// Slots.
    pub fn capacity(&self) -> usize {
        self.v.len() / 4
    }
    /// Count an upstream packet of `bytes` for slot `idx`.
    #[inline]
    pub fn up(&self, idx: u32, bytes: u64) {
        let i = idx as usize * 4;
        if let (Some(o), Some(p)) = (self.v.get(i), self.v.get(i + 1)) {
            o.fetch_add(bytes, Ordering::Relaxed);
            p.fetch_add(1, Ordering::Relaxed);
        }
    }
    /// Count a downstream packet.
    #[inline]
    pub fn down(&self, idx: u32, bytes: u64) {
        let i = idx as usize * 4 + 2;
        if let (Some(o), Some(p)) = (self.v.get(i), self.v.get(i + 1)) {
            o.fetch_add(bytes, Ordering::Relaxed);
            p.fetch_add(1, Ordering::Relaxed);
        }
    }
    /// (up octets, up packets, down octets, down packets).
    pub fn get(&self, idx: u32) -> (u64, u64, u64, u64) {
        let i = idx as usize * 4;
        let g = |k: usize| self.v.get(i + k).map_or(0, |a| a.load(Ordering::Relaxed));
        (g(0), g(1), g(2), g(3))
    }
    /// Zero a slot (session start).
    pub fn reset(&self, idx: u32) {
        let i = idx as usize * 4;
        for k in 0..4 {
            if let Some(a) = self.v.get(i + k) {
                a.store(0, Ordering::Relaxed);
            }
        }
    }
}

/// Control-plane counters.
#[derive(Debug, Clone, Copy, Default)]
pub struct ControlStats {
    /// Sessions created (PADS sent).
    pub sessions_created: u64,
    /// Sessions that reached IPCP Opened.
    pub sessions_up: u64,
    /// Sessions ended.
    pub sessions_ended: u64,
    /// Authentication accepted.
    pub auth_accept: u64,
    /// Authentication rejected.
    pub auth_reject: u64,
    /// AAA timeouts.
    pub aaa_timeout: u64,
    /// Malformed frames dropped.
    pub malformed: u64,
    /// Session frames for no known session.
    pub no_session: u64,
    /// Address pool exhausted.
    pub pool_exhausted: u64,
    /// Session table full.
    pub table_full: u64,
    /// CoA requests applied.
    pub coa: u64,
    /// Disconnect requests applied.
    pub disconnect: u64,
    /// CoA/DM dropped (bad authenticator) or NAK'ed.
    pub dynauth_rejected: u64,
    /// IPv6 prefix pool exhausted (the session stays IPv4-only).
    pub pool6_exhausted: u64,
    /// Router Advertisements sent (RFC 4861 §6.2).
    pub ra_sent: u64,
    /// Router Solicitations received.
    pub rs_received: u64,
    /// Router Solicitations not answered (rate limit, RFC 4861 §6.2.6).
    pub rs_rate_limited: u64,
    /// Neighbor Advertisements sent for our link-local address.
    pub na_sent: u64,
    /// Echo Replies sent from our link-local address (RFC 4443 §4.2).
    pub echo6_replies: u64,
    /// IPv6 packets punted to the control plane and dropped (not ND we answer, bad
    /// hop limit or checksum, malformed).
    pub ipv6_dropped: u64,
}

/// A local user.
#[derive(Debug, Clone)]
struct LocalUser {
    password: Vec<u8>,
    ip: Option<u32>,
    rate: Option<(u64, u64)>,
}

/// A session as `show sessions` prints it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SessionInfo {
    /// Slot.
    pub idx: u32,
    /// Acct-Session-Id.
    pub acct_id: String,
    /// Access key.
    pub key: AccessKey,
    /// PPPoE session id.
    pub sid: u16,
    /// User name.
    pub user: String,
    /// Phase name.
    pub phase: &'static str,
    /// Address (0 before IPCP).
    pub ip: u32,
    /// Delegated /64 (upper 64 bits; 0 = none).
    pub ipv6_prefix: u64,
    /// Whether IPv6CP is open (the /64 is routed and announced).
    pub ipv6_up: bool,
    /// Rate (up, down) bit/s.
    pub rate: (u64, u64),
    /// Setup time PADR→IPCP up, ms.
    pub setup_ms: Option<u64>,
    /// Counters (up octets, up packets, down octets, down packets).
    pub counters: (u64, u64, u64, u64),
}

#[derive(Debug, Clone)]
struct Entry {
    gen: u32,
    key: AccessKey,
    sid: u16,
    relay: Option<Vec<u8>>,
    link: PppSession,
    user: Vec<u8>,
    ip: u32,
    ip_from_pool: bool,
    /// The session's /64 (upper 64 bits; 0 = none).
    prefix6: u64,
    /// IPv6CP open: the /64 is installed in the fast path and announced.
    ipv6_up: bool,
    /// Next unsolicited Router Advertisement.
    next_ra: Option<u64>,
    /// When the last RA answering a Router Solicitation went out.
    last_solicited_ra: Option<u64>,
    rate: (u64, u64),
    reply: Reply,
    created: u64,
    up_at: Option<u64>,
    next_interim: Option<u64>,
    hard_deadline: Option<u64>,
    idle: Option<(u64, u64, u64)>, // (timeout ms, last activity, last counter sum)
    acct_started: bool,
    installed: bool,
    pending_creds: Option<Credentials>,
    /// The PADS frame, resent if the host retransmits its PADR (our PADS was lost).
    pads: Option<Vec<u8>>,
    host_uniq: Vec<u8>,
}

/// Router Advertisement settings (RFC 4861 §6.2.1).
#[derive(Debug, Clone)]
struct RaConfig {
    interval_ms: u64,
    router_lifetime_s: u16,
    valid_s: u32,
    preferred_s: u32,
    dns: Vec<core::net::Ipv6Addr>,
}

/// The control plane.
#[derive(Debug, Clone)]
pub struct ControlPlane {
    link: LinkParams,
    our_mac: [u8; 6],
    disc: Discovery,
    slots: Vec<Option<Entry>>,
    free: Vec<u32>,
    gen: u32,
    by_key: HashMap<(AccessKey, u16), u32>,
    by_host: HashMap<(AccessKey, Vec<u8>), u32>,
    next_sid: u16,
    timers: BinaryHeap<Reverse<(u64, u32)>>,
    radius: Option<Client>,
    acct_enabled: bool,
    local_fallback: bool,
    interim_ms: u64,
    dynauth_secret: Vec<u8>,
    users: BTreeMap<Vec<u8>, LocalUser>,
    pools: Pools,
    pools6: Pools6,
    ra: RaConfig,
    default_rate: (u64, u64),
    rng: Rng,
    counters: Arc<SessionCounters>,
    nas_ip: u32,
    nas_id: String,
    tx: Vec<(u16, Vec<u8>)>,
    radius_tx: Vec<Transmit>,
    fib: Vec<FibUpdate>,
    setup_ms: Vec<u64>,
    /// Counters.
    pub stats: ControlStats,
}

fn fmt_mac(m: &[u8; 6]) -> String {
    alloc::format!(
        "{:02x}:{:02x}:{:02x}:{:02x}:{:02x}:{:02x}",
        m[0],
        m[1],
        m[2],
        m[3],
        m[4],
        m[5]
    )
}

impl ControlPlane {
    /// Build from a validated config with `max_sessions` slots and a random source.
    pub fn new(
        cfg: &Config,
        max_sessions: u32,
        counters: Arc<SessionCounters>,
        mut rng: Rng,
    ) -> Result<ControlPlane, ConfigError> {
        cfg.validate()?;
        let our_mac = parse_mac(&cfg.mac)?;
        let mut key = [0u8; 32];
        rng.fill(&mut key);
        let disc = Discovery::new(DiscoveryConfig {
            ac_name: cfg.name.clone(),
            service_names: cfg.service_names.clone(),
            cookie_key: key,
            cookie_epoch_ms: 60_000,
            max_payload: cfg.max_payload,
            padi_per_mac: cfg.padi_per_mac,
            padi_per_port: cfg.padi_per_port,
        });
        let dns = [
            cfg.dns.first().map_or(0, |a| u32::from(*a)),
            cfg.dns.get(1).map_or(0, |a| u32::from(*a)),
        ];
        let link = LinkParams {
            mru: cfg.max_payload.min(1492),
            max_peer_mru: cfg.max_payload,
            auth: cfg.auth,
            auth_fallback: cfg.auth_fallback,
            name: cfg.name.as_bytes().to_vec(),
            timers: Timers {
                restart_ms: cfg.restart_ms,
                ..Timers::default()
            },
            keepalive_ms: u64::from(cfg.keepalive_interval_s) * 1000,
            keepalive_failures: cfg.keepalive_failures,
            gateway: u32::from(cfg.gateway),
            dns,
            ipv6cp: cfg.ipv6cp,
        };
        let mut pools = Vec::new();
        for p in &cfg.pools {
            let ranges = p
                .ranges
                .iter()
                .map(|r| parse_range(r))
                .collect::<Result<Vec<_>, _>>()?;
            pools.push(Pool::new(&p.name, &ranges));
        }
        let mut pools6 = Vec::new();
        for p in &cfg.pools6 {
            let (base, len) = parse_prefix6(&p.prefix)
                .ok_or_else(|| ConfigError(alloc::format!("bad IPv6 prefix: {:?}", p.prefix)))?;
            pools6.push(Pool6::new(&p.name, base, len));
        }
        let ra = RaConfig {
            interval_ms: u64::from(cfg.ra_interval_s) * 1000,
            router_lifetime_s: cfg.ra_router_lifetime_s,
            valid_s: cfg.prefix_valid_s,
            preferred_s: cfg.prefix_preferred_s,
            dns: cfg.dns6.clone(),
        };
        let mut users = BTreeMap::new();
        for u in &cfg.users {
            users.insert(
                u.name.as_bytes().to_vec(),
                LocalUser {
                    password: u.password.as_bytes().to_vec(),
                    ip: u.ip.map(u32::from),
                    rate: u.rate.as_deref().map(parse_rate_pair).transpose()?,
                },
            );
        }
        let (radius, acct_enabled, interim_ms, dynauth_secret, nas_ip, local_fallback) = match &cfg
            .radius
        {
            Some(r) => {
                let conv = |v: &[crate::config::ServerConfig]| -> Result<Vec<Server>, ConfigError> {
                    v.iter()
                        .map(|s| {
                            Ok(Server {
                                addr: parse_sockaddr(&s.addr)?,
                                secret: s.secret.as_bytes().to_vec(),
                            })
                        })
                        .collect()
                };
                let cc = ClientConfig {
                    auth: conv(&r.auth)?,
                    acct: conv(&r.acct)?,
                    timeout_ms: r.timeout_ms,
                    tries: r.tries,
                    ..ClientConfig::default()
                };
                let acct = !cc.acct.is_empty();
                let sub = Rng::from_seed({
                    let mut k = [0u8; 32];
                    rng.fill(&mut k);
                    k
                });
                (
                    Some(Client::new(cc, sub)),
                    acct,
                    u64::from(r.interim_s) * 1000,
                    r.coa_secret.as_bytes().to_vec(),
                    u32::from(r.nas_ip),
                    r.local_fallback,
                )
            }
            None => (None, false, 0, Vec::new(), 0x7f00_0001, false),
        };
        let n = max_sessions.min(counters.capacity() as u32);
        Ok(ControlPlane {
            link,
            our_mac,
            disc,
            slots: (0..n).map(|_| None).collect(),
            free: (0..n).rev().collect(),
            gen: 0,
            by_key: HashMap::with_capacity(n as usize),
            by_host: HashMap::with_capacity(n as usize),
            next_sid: 1,
            timers: BinaryHeap::new(),
            radius,
            acct_enabled,
            local_fallback,
            interim_ms,
            dynauth_secret,
            users,
            pools: Pools::new(pools),
            pools6: Pools6::new(pools6),
            ra,
            default_rate: (cfg.default_rate_up, cfg.default_rate_down),
            rng,
            counters,
            nas_ip,
            nas_id: cfg.name.clone(),
            tx: Vec::new(),
            radius_tx: Vec::new(),
            fib: Vec::new(),
            setup_ms: Vec::new(),
            stats: ControlStats::default(),
        })
    }

    /// Add local users (e.g. from a user file).
    pub fn add_users(&mut self, users: &[crate::config::UserConfig]) -> Result<(), ConfigError> {
        for u in users {
            self.users.insert(
                u.name.as_bytes().to_vec(),
                LocalUser {
                    password: u.password.as_bytes().to_vec(),
                    ip: u.ip.map(u32::from),
                    rate: u.rate.as_deref().map(parse_rate_pair).transpose()?,
                },
            );
        }
        Ok(())
    }

    /// Our access-side MAC.
    pub fn mac(&self) -> [u8; 6] {
        self.our_mac
    }

    /// Discovery counters.
    pub fn discovery_stats(&self) -> crate::pppoe::DiscoveryStats {
        self.disc.stats
    }

    /// RADIUS client counters.
    pub fn radius_stats(&self) -> Option<radius::ClientStats> {
        self.radius.as_ref().map(|r| r.stats)
    }

    /// Sessions currently in the table.
    pub fn session_count(&self) -> usize {
        self.by_key.len()
    }

    /// Sessions with IPv6CP open and a /64 routed (a walk of the slots, no allocation).
    pub fn ipv6_session_count(&self) -> usize {
        self.slots
            .iter()
            .flatten()
            .filter(|e| e.ipv6_up && e.prefix6 != 0)
            .count()
    }

    /// Take frames to send: (access port, Ethernet frame).
    pub fn take_tx(&mut self) -> Vec<(u16, Vec<u8>)> {
        core::mem::take(&mut self.tx)
    }

    /// Take fast-path updates.
    pub fn take_fib(&mut self) -> Vec<FibUpdate> {
        core::mem::take(&mut self.fib)
    }

    /// Take setup latencies (ms) of sessions that came up since the last call.
    pub fn take_setup_ms(&mut self) -> Vec<u64> {
        core::mem::take(&mut self.setup_ms)
    }

    fn frame(&self, key: &AccessKey, ethertype: u16, pppoe: &[u8]) -> Vec<u8> {
        let eth = EthRepr {
            dst: key.mac,
            src: self.our_mac,
            vlans: key.vlans,
            ethertype,
            header_len: 0,
        };
        let mut f = alloc::vec![0u8; eth.buffer_len()];
        let _ = eth.emit(&mut f);
        f.extend_from_slice(pppoe);
        f
    }

    fn send_ppp(&mut self, idx: u32, ppp: &[u8]) {
        let Some(Some(e)) = self.slots.get(idx as usize) else {
            return;
        };
        let (key, sid) = (e.key, e.sid);
        let mut p = Vec::with_capacity(PPPOE_HLEN + ppp.len());
        p.extend_from_slice(&[0x11, 0]);
        p.extend_from_slice(&sid.to_be_bytes());
        p.extend_from_slice(&(ppp.len() as u16).to_be_bytes());
        p.extend_from_slice(ppp);
        let f = self.frame(&key, ETHERTYPE_PPPOE_SESS, &p);
        self.tx.push((key.port, f));
    }

    /// Handle a frame punted from access port `port`.
    pub fn input(&mut self, port: u16, frame: &[u8], now: u64) {
        let Ok(eth) = EthRepr::parse(frame) else {
            self.stats.malformed += 1;
            return;
        };
        let Some(payload) = frame.get(eth.header_len..) else {
            self.stats.malformed += 1;
            return;
        };
        let key = AccessKey {
            port,
            mac: eth.src,
            vlans: eth.vlans,
        };
        match eth.ethertype {
            ETHERTYPE_PPPOE_DISC => self.discovery(&key, payload, now),
            ETHERTYPE_PPPOE_SESS => {
                let Ok(p) = PppoePacket::new_checked(payload) else {
                    self.stats.malformed += 1;
                    return;
                };
                if p.code() != Code::Session as u8 {
                    self.stats.malformed += 1;
                    return;
                }
                let Some(&idx) = self.by_key.get(&(key, p.session_id())) else {
                    self.stats.no_session += 1;
                    return;
                };
                if let [0x00, 0x57, ip @ ..] = p.payload() {
                    // IPv6 punted by the fast path: ND over PPP (RFC 5072 §5).
                    let ip = ip.to_vec();
                    self.ipv6_input(idx, &ip, now);
                    return;
                }
                let ppp = p.payload().to_vec();
                self.link_input(idx, &ppp, now);
            }
            _ => self.stats.malformed += 1,
        }
    }

    fn discovery(&mut self, key: &AccessKey, payload: &[u8], now: u64) {
        match self.disc.input(key, payload, now) {
            DiscoveryAction::None => {}
            DiscoveryAction::Reply(p) => {
                let f = self.frame(key, ETHERTYPE_PPPOE_DISC, &p);
                self.tx.push((key.port, f));
            }
            DiscoveryAction::Request(req) => self.new_session(key, req, now),
            DiscoveryAction::Terminate(sid) => {
                if let Some(&idx) = self.by_key.get(&(*key, sid)) {
                    self.remove(idx, EndCause::UserRequest, false, now);
                }
            }
        }
    }

    fn alloc_sid(&mut self, key: &AccessKey) -> Option<u16> {
        for _ in 0..65535 {
            let s = self.next_sid;
            self.next_sid = if s >= 0xfffe { 1 } else { s + 1 };
            if !self.by_key.contains_key(&(*key, s)) {
                return Some(s);
            }
        }
        None
    }

    fn new_session(&mut self, key: &AccessKey, req: SessionRequest, now: u64) {
        let hu = req.host_uniq.clone().unwrap_or_default();
        if let Some(&idx) = self.by_host.get(&(*key, hu.clone())) {
            // A retransmitted PADR (RFC 2516 §5.4): our PADS was lost; send it again
            // while the link is still being established, else ignore.
            if let Some(Some(e)) = self.slots.get(idx as usize) {
                if let Some(f) = e.pads.clone() {
                    self.tx.push((key.port, f));
                }
            }
            return;
        }
        let Some(idx) = self.free.pop() else {
            self.stats.table_full += 1;
            let p = self.disc.padt(
                0,
                req.relay_session_id.as_deref(),
                Some(b"session table full"),
            );
            let f = self.frame(key, ETHERTYPE_PPPOE_DISC, &p);
            self.tx.push((key.port, f));
            return;
        };
        let Some(sid) = self.alloc_sid(key) else {
            self.free.push(idx);
            self.stats.table_full += 1;
            return;
        };
        let pads = self.disc.pads(&req, sid);
        let f = self.frame(key, ETHERTYPE_PPPOE_DISC, &pads);
        self.tx.push((key.port, f.clone()));
        let mut link = self.link.clone();
        if let Some(m) = req.max_payload {
            link.mru = m;
            link.max_peer_mru = m;
        }
        let mut ev = Vec::new();
        let ppp = PppSession::start(&link, &mut self.rng, now, &mut ev);
        self.gen = self.gen.wrapping_add(1);
        let e = Entry {
            gen: self.gen,
            key: *key,
            sid,
            relay: req.relay_session_id,
            link: ppp,
            user: Vec::new(),
            ip: 0,
            ip_from_pool: false,
            prefix6: 0,
            ipv6_up: false,
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
            pending_creds: None,
            pads: Some(f),
            host_uniq: hu.clone(),
        };
        if let Some(s) = self.slots.get_mut(idx as usize) {
            *s = Some(e);
        }
        self.by_key.insert((*key, sid), idx);
        self.by_host.insert((*key, hu), idx);
        self.stats.sessions_created += 1;
        self.events(idx, ev, now);
    }

    fn link_input(&mut self, idx: u32, ppp: &[u8], now: u64) {
        let link = &self.link;
        let Some(Some(e)) = self.slots.get_mut(idx as usize) else {
            return;
        };
        let mut ev = Vec::new();
        if e.link
            .input(link, &mut self.rng, ppp, now, &mut ev)
            .is_err()
        {
            self.stats.malformed += 1;
        }
        self.events(idx, ev, now);
    }

    fn schedule(&mut self, idx: u32) {
        let Some(Some(e)) = self.slots.get(idx as usize) else {
            return;
        };
        let mut d = e.link.deadline();
        for x in [
            e.next_interim,
            e.hard_deadline,
            e.idle.map(|i| i.1 + i.0),
            e.next_ra,
        ]
        .into_iter()
        .flatten()
        {
            d = Some(d.map_or(x, |y: u64| y.min(x)));
        }
        if let Some(d) = d {
            self.timers.push(Reverse((d, idx)));
        }
    }

    fn events(&mut self, idx: u32, ev: Vec<SessEvent>, now: u64) {
        for e in ev {
            match e {
                SessEvent::Send(f) => self.send_ppp(idx, &f),
                SessEvent::Verify(c) => self.verify(idx, c, now),
                SessEvent::NetworkUp => self.network_up(idx, now),
                SessEvent::Ipv6Up => self.ipv6_up(idx, now),
                SessEvent::Ipv6Down => self.ipv6_down(idx),
                SessEvent::Renegotiate => self.renegotiate(idx, now),
                SessEvent::Ended(cause) => {
                    self.remove(idx, cause, true, now);
                    return;
                }
            }
        }
        self.schedule(idx);
    }

    /// LCP renegotiated: stop forwarding, close accounting, return the address; the
    /// link authenticates again.
    fn renegotiate(&mut self, idx: u32, now: u64) {
        let started = matches!(self.slots.get(idx as usize), Some(Some(e)) if e.acct_started);
        if started && self.acct_enabled {
            self.account(
                idx,
                AcctStatus::Stop,
                Some(radius::terminate_cause::NAS_REQUEST),
                now,
            );
        }
        let Some(Some(e)) = self.slots.get_mut(idx as usize) else {
            return;
        };
        if e.installed {
            self.fib.push(FibUpdate::Remove {
                idx,
                key: e.key,
                sid: e.sid,
                ip: e.ip,
            });
        }
        if e.ipv6_up && e.prefix6 != 0 {
            self.fib.push(FibUpdate::Remove6 {
                idx,
                prefix: e.prefix6,
            });
        }
        let prefix6 = core::mem::take(&mut e.prefix6);
        e.ipv6_up = false;
        e.next_ra = None;
        let (ip, from_pool) = (e.ip, e.ip_from_pool);
        e.installed = false;
        e.acct_started = false;
        e.up_at = None;
        e.next_interim = None;
        e.hard_deadline = None;
        e.idle = None;
        e.ip = 0;
        if ip != 0 && from_pool {
            self.pools.free(ip);
        }
        if prefix6 != 0 {
            self.pools6.free(prefix6);
        }
    }

    /// The session's /64 at Access-Accept (only when IPv6CP is enabled):
    /// Framed-IPv6-Prefix if it is a /64 (taken from its pool when one holds it), else
    /// Framed-IPv6-Pool, else the default IPv6 pool; 0 when none is configured or the
    /// pool is exhausted (the session is then IPv4-only).
    fn alloc_prefix6(&mut self, reply: &Reply) -> u64 {
        if !self.link.ipv6cp {
            return 0;
        }
        if let Some((p, 64)) = reply.ipv6_prefix() {
            let p = (p >> 64) as u64;
            if p != 0 && self.pools6.take(p).is_ok() {
                return p;
            }
        }
        if self.pools6.is_empty() && reply.framed_ipv6_pool.is_none() {
            return 0;
        }
        match self.pools6.alloc(reply.framed_ipv6_pool.as_deref()) {
            Ok(p) => p,
            Err(_) => {
                self.stats.pool6_exhausted += 1;
                0
            }
        }
    }

    /// IPv6CP went down while the link stays: stop routing the /64 and stop the RAs.
    /// The prefix stays allocated to the session, so IPv6CP coming back up gets the
    /// same /64 (accounting and CoA keep naming it).
    fn ipv6_down(&mut self, idx: u32) {
        let Some(Some(e)) = self.slots.get_mut(idx as usize) else {
            return;
        };
        if e.ipv6_up && e.prefix6 != 0 {
            self.fib.push(FibUpdate::Remove6 {
                idx,
                prefix: e.prefix6,
            });
        }
        e.ipv6_up = false;
        e.next_ra = None;
    }

    /// IPv6CP opened: route the /64 to the session and announce it (RFC 4861 §6.2.4:
    /// an initial advertisement, then every `ra_interval_s`).
    fn ipv6_up(&mut self, idx: u32, now: u64) {
        let Some(Some(e)) = self.slots.get_mut(idx as usize) else {
            return;
        };
        e.ipv6_up = true;
        if e.prefix6 == 0 {
            return;
        }
        let router_iid = e.link.ipv6cp.as_ref().map_or(0, |f| f.neg.our_id);
        self.fib.push(FibUpdate::Add6 {
            idx,
            prefix: e.prefix6,
            router_iid,
        });
        self.send_ra(idx, crate::nd::ALL_NODES, now);
    }

    /// Send a Router Advertisement for the session's /64 to `dst` over its PPP link,
    /// and schedule the next unsolicited one.
    fn send_ra(&mut self, idx: u32, dst: u128, now: u64) {
        let interval = self.ra.interval_ms;
        let Some(Some(e)) = self.slots.get_mut(idx as usize) else {
            return;
        };
        let Some(our_iid) = e.link.ipv6cp.as_ref().map(|f| f.neg.our_id) else {
            return;
        };
        if !e.ipv6_up || e.prefix6 == 0 {
            return;
        }
        let mtu = e.link.lcp.neg.our_mru.min(e.link.lcp.neg.peer_mru);
        let p = crate::nd::RaParams {
            prefix: e.prefix6,
            router_lifetime_s: self.ra.router_lifetime_s,
            valid_s: self.ra.valid_s,
            preferred_s: self.ra.preferred_s,
            mtu: u32::from(mtu),
            dns: self.ra.dns.clone(),
            // RFC 8106 §5.1: at least MaxRtrAdvInterval; 3× is the suggested default.
            dns_lifetime_s: (interval / 1000 * 3)
                .clamp(1, u64::from(u32::MAX))
                .try_into()
                .unwrap_or(u32::MAX),
        };
        e.next_ra = (interval > 0).then_some(now + interval);
        let mut f = Vec::with_capacity(128);
        crate::nd::router_advertisement(our_iid, dst, &p, &mut f);
        self.stats.ra_sent += 1;
        self.send_ppp(idx, &f);
    }

    /// An IPv6 datagram the fast path punted (link-local, multicast or ND): answer
    /// Router Solicitations with an RA and Neighbor Solicitations for our link-local
    /// address with an NA; drop the rest (counted).
    fn ipv6_input(&mut self, idx: u32, ip: &[u8], now: u64) {
        let (our_ll, up) = match self.slots.get(idx as usize) {
            Some(Some(e)) => (
                e.link
                    .ipv6cp
                    .as_ref()
                    .map(|f| crate::nd::link_local(f.neg.our_id)),
                e.ipv6_up,
            ),
            _ => (None, false),
        };
        let (Some(our_ll), true) = (our_ll, up) else {
            self.stats.ipv6_dropped += 1;
            return;
        };
        match crate::nd::parse(ip) {
            Ok(crate::nd::Nd::RouterSolicit { src }) => {
                // RFC 4861 §6.2.6: answer a solicitation from an address unicast (at
                // most one a second per session), from the unspecified address to
                // all-nodes (at most one per MIN_DELAY_BETWEEN_RAS = 3 s).
                self.stats.rs_received += 1;
                let (dst, gap) = if src == 0 {
                    (crate::nd::ALL_NODES, 3000)
                } else {
                    (src, 1000)
                };
                let last = match self.slots.get_mut(idx as usize) {
                    Some(Some(e)) => &mut e.last_solicited_ra,
                    _ => return,
                };
                if last.is_some_and(|t| now < t + gap) {
                    self.stats.rs_rate_limited += 1;
                    return;
                }
                *last = Some(now);
                self.send_ra(idx, dst, now);
                self.schedule(idx);
            }
            Ok(crate::nd::Nd::NeighborSolicit { src, target }) if target == our_ll => {
                // RFC 4861 §7.2.4: to the source, or all-nodes when it is unspecified.
                let dst = if src == 0 { crate::nd::ALL_NODES } else { src };
                let mut f = Vec::with_capacity(72);
                crate::nd::neighbor_advertisement(our_ll, dst, &mut f);
                self.stats.na_sent += 1;
                self.send_ppp(idx, &f);
            }
            _ => {
                let mut f = Vec::new();
                if crate::nd::echo_reply(ip, our_ll, &mut f) {
                    self.stats.echo6_replies += 1;
                    self.send_ppp(idx, &f);
                } else {
                    self.stats.ipv6_dropped += 1;
                }
            }
        }
    }

    fn line(&self, e: &Entry, idx: u32) -> LineInfo {
        let mut cs = fmt_mac(&e.key.mac);
        if e.key.vlans.tag_count() > 0 {
            cs.push_str(&alloc::format!(
                "/{}/{}",
                e.key.vlans.svlan,
                e.key.vlans.cvlan
            ));
        }
        LineInfo {
            nas_ip: self.nas_ip,
            nas_id: self.nas_id.clone(),
            nas_port_id: alloc::format!(
                "access{}:{}.{}",
                e.key.port,
                e.key.vlans.svlan,
                e.key.vlans.cvlan
            ),
            nas_port: idx,
            calling_station: cs,
        }
    }

    fn tag(&self, idx: u32) -> u64 {
        let gen = self
            .slots
            .get(idx as usize)
            .and_then(|s| s.as_ref())
            .map_or(0, |e| e.gen);
        (u64::from(gen) << 32) | u64::from(idx)
    }

    fn by_tag(&self, tag: u64) -> Option<u32> {
        let idx = tag as u32;
        let gen = (tag >> 32) as u32;
        match self.slots.get(idx as usize) {
            Some(Some(e)) if e.gen == gen => Some(idx),
            _ => None,
        }
    }

    fn acct_id(&self, idx: u32) -> String {
        let gen = self
            .slots
            .get(idx as usize)
            .and_then(|s| s.as_ref())
            .map_or(0, |e| e.gen);
        alloc::format!("{:08x}{:08x}", gen, idx)
    }

    fn verify(&mut self, idx: u32, c: Credentials, now: u64) {
        let fallback = self.local_fallback;
        if let Some(Some(e)) = self.slots.get_mut(idx as usize) {
            e.user = c.user().to_vec();
            if fallback {
                e.pending_creds = Some(c.clone());
            }
        }
        if self.radius.is_some() {
            let Some(Some(e)) = self.slots.get(idx as usize) else {
                return;
            };
            let req = radius::access_request(&self.line(e, idx), &c);
            let tag = self.tag(idx);
            if let Some(r) = self.radius.as_mut() {
                r.submit(tag, req, now);
            }
            return;
        }
        self.verify_local(idx, &c, now);
    }

    fn verify_local(&mut self, idx: u32, c: &Credentials, now: u64) {
        let verdict = self
            .users
            .get(c.user())
            .filter(|u| c.check(&u.password))
            .map(|u| Reply {
                framed_ip: u.ip,
                rate: u.rate,
                ..Reply::default()
            });
        match verdict {
            Some(r) => self.accept(idx, r, now),
            None => self.reject(idx, now),
        }
    }

    fn reject(&mut self, idx: u32, now: u64) {
        self.stats.auth_reject += 1;
        let link = self.link.clone();
        let Some(Some(e)) = self.slots.get_mut(idx as usize) else {
            return;
        };
        let mut ev = Vec::new();
        e.link.auth_result(
            &link,
            false,
            0,
            (0, 0),
            b"authentication failed",
            now,
            &mut ev,
        );
        self.events(idx, ev, now);
    }

    fn accept(&mut self, idx: u32, reply: Reply, now: u64) {
        // Address: Framed-IP-Address, else Framed-Pool, else the default pool.
        let (ip, from_pool) = match reply.framed_ip {
            Some(ip) if ip != 0xffff_fffe && ip != 0xffff_ffff => {
                (self.pools.take(ip).ok().map(|_| ip), true)
            }
            _ => (self.pools.alloc(reply.framed_pool.as_deref()).ok(), true),
        };
        let Some(ip) = ip else {
            self.stats.pool_exhausted += 1;
            self.reject(idx, now);
            return;
        };
        self.stats.auth_accept += 1;
        let link = self.link.clone();
        let default_rate = self.default_rate;
        let iid = (
            (u64::from(self.rng.u32()) << 32) | u64::from(self.rng.u32()),
            u64::from(ip) | 0x0200_0000_0000_0000,
        );
        let prefix6 = self.alloc_prefix6(&reply);
        let Some(Some(e)) = self.slots.get_mut(idx as usize) else {
            self.pools.free(ip);
            self.pools6.free(prefix6);
            return;
        };
        e.prefix6 = prefix6;
        e.ip = ip;
        e.ip_from_pool = from_pool;
        e.rate = reply.rate.unwrap_or(default_rate);
        let mut ev = Vec::new();
        e.link
            .auth_result(&link, true, ip, iid, b"welcome", now, &mut ev);
        e.reply = reply;
        self.events(idx, ev, now);
    }

    fn network_up(&mut self, idx: u32, now: u64) {
        let interim_default = self.interim_ms;
        let acct = self.acct_enabled;
        let Some(Some(e)) = self.slots.get_mut(idx as usize) else {
            return;
        };
        if e.installed {
            return;
        }
        e.installed = true;
        e.up_at = Some(now);
        let setup = now.saturating_sub(e.created);
        let interim = e
            .reply
            .interim_interval
            .map(|s| u64::from(s.max(60)) * 1000)
            .unwrap_or(interim_default);
        if acct && interim > 0 {
            e.next_interim = Some(now + interim);
        }
        if let Some(t) = e.reply.session_timeout.filter(|t| *t > 0) {
            e.hard_deadline = Some(now + u64::from(t) * 1000);
        }
        if let Some(t) = e.reply.idle_timeout.filter(|t| *t > 0) {
            e.idle = Some((u64::from(t) * 1000, now, 0));
        }
        let upd = FibUpdate::Add {
            idx,
            key: e.key,
            sid: e.sid,
            ip: e.ip,
            rate: e.rate,
            mtu: e.link.lcp.neg.our_mru.min(e.link.lcp.neg.peer_mru),
        };
        self.counters.reset(idx);
        self.fib.push(upd);
        self.setup_ms.push(setup);
        self.stats.sessions_up += 1;
        if acct {
            if let Some(Some(e)) = self.slots.get_mut(idx as usize) {
                e.acct_started = true;
            }
            self.account(idx, AcctStatus::Start, None, now);
        }
    }

    fn record(&self, idx: u32, cause: Option<u32>, now: u64) -> Option<(LineInfo, AcctRecord)> {
        let e = self.slots.get(idx as usize)?.as_ref()?;
        let (uo, up, d_o, dp) = self.counters.get(idx);
        let r = AcctRecord {
            session_id: self.acct_id(idx),
            user: e.user.clone(),
            framed_ip: e.ip,
            session_time: (now.saturating_sub(e.up_at.unwrap_or(now)) / 1000) as u32,
            in_octets: uo,
            out_octets: d_o,
            in_packets: up,
            out_packets: dp,
            terminate_cause: cause,
            class: e.reply.class.clone(),
        };
        Some((self.line(e, idx), r))
    }

    fn account(&mut self, idx: u32, status: AcctStatus, cause: Option<u32>, now: u64) {
        let Some((line, rec)) = self.record(idx, cause, now) else {
            return;
        };
        let prefix6 = match self.slots.get(idx as usize) {
            Some(Some(e)) if e.prefix6 != 0 => Some((u128::from(e.prefix6) << 64, 64)),
            _ => None,
        };
        let req = radius::accounting_request_v6(&line, status, &rec, prefix6);
        // Accounting responses are matched by tag only for counting; the session may be gone.
        let tag = u64::MAX;
        if let Some(r) = self.radius.as_mut() {
            r.submit(tag, req, now);
        }
    }

    fn remove(&mut self, idx: u32, cause: EndCause, send_padt: bool, now: u64) {
        let code = match cause {
            EndCause::UserRequest => radius::terminate_cause::USER_REQUEST,
            EndCause::LostCarrier => radius::terminate_cause::LOST_CARRIER,
            EndCause::Admin => radius::terminate_cause::ADMIN_RESET,
            EndCause::NegotiationFailed | EndCause::AuthFailed => {
                radius::terminate_cause::NAS_REQUEST
            }
        };
        self.remove_with(idx, code, send_padt, now);
    }

    fn remove_with(&mut self, idx: u32, cause: u32, send_padt: bool, now: u64) {
        let started = matches!(self.slots.get(idx as usize), Some(Some(e)) if e.acct_started);
        if started && self.acct_enabled {
            self.account(idx, AcctStatus::Stop, Some(cause), now);
        }
        let Some(e) = self.slots.get_mut(idx as usize).and_then(|s| s.take()) else {
            return;
        };
        if send_padt {
            let p = self.disc.padt(e.sid, e.relay.as_deref(), None);
            let f = self.frame(&e.key, ETHERTYPE_PPPOE_DISC, &p);
            self.tx.push((e.key.port, f));
        }
        if e.installed {
            self.fib.push(FibUpdate::Remove {
                idx,
                key: e.key,
                sid: e.sid,
                ip: e.ip,
            });
        }
        if e.ip != 0 && e.ip_from_pool {
            self.pools.free(e.ip);
        }
        if e.prefix6 != 0 {
            if e.ipv6_up {
                self.fib.push(FibUpdate::Remove6 {
                    idx,
                    prefix: e.prefix6,
                });
            }
            self.pools6.free(e.prefix6);
        }
        self.by_key.remove(&(e.key, e.sid));
        if self.by_host.get(&(e.key, e.host_uniq.clone())) == Some(&idx) {
            self.by_host.remove(&(e.key, e.host_uniq));
        }
        self.free.push(idx);
        self.stats.sessions_ended += 1;
    }

    /// Terminate a session from our side (LCP Terminate-Request + PADT).
    pub fn terminate(&mut self, idx: u32, cause: u32, now: u64) {
        let Some(Some(e)) = self.slots.get_mut(idx as usize) else {
            return;
        };
        let mut ev = Vec::new();
        e.link.terminate(now, &mut ev);
        for x in ev {
            if let SessEvent::Send(f) = x {
                self.send_ppp(idx, &f);
            }
        }
        self.remove_with(idx, cause, true, now);
    }

    /// Drive all timers.
    pub fn poll(&mut self, now: u64) {
        while let Some(Reverse((t, idx))) = self.timers.peek().copied() {
            if t > now {
                break;
            }
            self.timers.pop();
            self.poll_session(idx, now);
        }
        self.poll_radius(now);
    }

    fn poll_session(&mut self, idx: u32, now: u64) {
        let link = self.link.clone();
        let acct = self.acct_enabled;
        let (uo, _, d_o, _) = self.counters.get(idx);
        let Some(Some(e)) = self.slots.get_mut(idx as usize) else {
            return;
        };
        if e.link.deadline().is_some_and(|d| d <= now) {
            let mut ev = Vec::new();
            e.link.poll(&link, &mut self.rng, now, &mut ev);
            self.events(idx, ev, now);
        }
        let Some(Some(e)) = self.slots.get_mut(idx as usize) else {
            return;
        };
        if e.hard_deadline.is_some_and(|d| d <= now) {
            self.terminate(idx, radius::terminate_cause::SESSION_TIMEOUT, now);
            return;
        }
        if let Some((timeout, last, sum)) = e.idle {
            let s = uo.wrapping_add(d_o);
            if s != sum {
                e.idle = Some((timeout, now, s));
            } else if now >= last + timeout {
                self.terminate(idx, radius::terminate_cause::IDLE_TIMEOUT, now);
                return;
            }
        }
        let Some(Some(e)) = self.slots.get_mut(idx as usize) else {
            return;
        };
        if e.next_ra.is_some_and(|t| t <= now) {
            e.next_ra = None;
            self.send_ra(idx, crate::nd::ALL_NODES, now);
        }
        let Some(Some(e)) = self.slots.get_mut(idx as usize) else {
            return;
        };
        if let Some(t) = e.next_interim.filter(|t| *t <= now) {
            let interim = e
                .reply
                .interim_interval
                .map(|s| u64::from(s.max(60)) * 1000)
                .unwrap_or(self.interim_ms)
                .max(1000);
            e.next_interim = Some(t + interim);
            if acct {
                self.account(idx, AcctStatus::Interim, None, now);
            }
        }
        self.schedule(idx);
    }

    /// Send an interim update for every established session now (operator command,
    /// and used by tests).
    pub fn interim_all(&mut self, now: u64) {
        let idxs: Vec<u32> = self.by_key.values().copied().collect();
        for idx in idxs {
            if matches!(self.slots.get(idx as usize), Some(Some(e)) if e.acct_started) {
                self.account(idx, AcctStatus::Interim, None, now);
            }
        }
    }

    fn poll_radius(&mut self, now: u64) {
        let Some(r) = self.radius.as_mut() else {
            return;
        };
        let tx = r.poll(now);
        self.radius_tx.extend(tx);
        let events = match self.radius.as_mut() {
            Some(r) => r.events(),
            None => Vec::new(),
        };
        for ev in events {
            match ev {
                Event::Response {
                    tag, code, reply, ..
                } => {
                    let Some(idx) = self.by_tag(tag) else {
                        continue;
                    };
                    if let Some(Some(e)) = self.slots.get_mut(idx as usize) {
                        e.pending_creds = None;
                    }
                    if code == rcode::ACCESS_ACCEPT {
                        self.accept(idx, *reply, now);
                    } else if code == rcode::ACCESS_REJECT || code == rcode::ACCESS_CHALLENGE {
                        self.reject(idx, now);
                    }
                }
                Event::Timeout { tag } => {
                    let Some(idx) = self.by_tag(tag) else {
                        continue;
                    };
                    self.stats.aaa_timeout += 1;
                    self.aaa_timeout(idx, now);
                }
            }
        }
    }

    fn aaa_timeout(&mut self, idx: u32, now: u64) {
        let creds = match self.slots.get_mut(idx as usize) {
            Some(Some(e)) => e.pending_creds.take(),
            _ => None,
        };
        match creds {
            Some(c) if self.local_fallback => self.verify_local(idx, &c, now),
            _ => self.reject(idx, now),
        }
    }

    /// Datagrams the RADIUS client wants sent.
    pub fn take_radius_tx(&mut self) -> Vec<Transmit> {
        core::mem::take(&mut self.radius_tx)
    }

    /// A datagram for the RADIUS client.
    pub fn radius_input(
        &mut self,
        channel: u8,
        from: core::net::SocketAddr,
        bytes: &[u8],
        now: u64,
    ) {
        if let Some(r) = self.radius.as_mut() {
            r.input(channel, from, bytes);
        }
        self.poll_radius(now);
    }

    /// Earliest deadline of any timer (for sleeping I/O loops).
    pub fn deadline(&self) -> Option<u64> {
        let t = self.timers.peek().map(|Reverse((t, _))| *t);
        let r = self.radius.as_ref().and_then(|r| r.deadline());
        match (t, r) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        }
    }

    fn find(&self, d: &DynAuth) -> Option<u32> {
        if let Some(id) = &d.acct_session_id {
            let idx = u32::from_str_radix(id.get(8..)?, 16).ok()?;
            return (self.acct_id(idx) == *id
                && matches!(self.slots.get(idx as usize), Some(Some(_))))
            .then_some(idx);
        }
        self.by_key.values().copied().find(|&idx| {
            let Some(Some(e)) = self.slots.get(idx as usize) else {
                return false;
            };
            // Framed-IPv6-Prefix identifies a session too (RFC 5176 §3, RFC 3162).
            let v6 = d.reply.ipv6_prefix();
            d.framed_ip.is_none_or(|ip| ip == e.ip)
                && d.user.as_ref().is_none_or(|u| *u == e.user)
                && v6
                    .is_none_or(|(p, l)| l == 64 && e.prefix6 != 0 && (p >> 64) as u64 == e.prefix6)
                && (d.framed_ip.is_some() || d.user.is_some() || v6.is_some())
        })
    }

    /// A Disconnect-/CoA-Request datagram (RFC 5176). Returns the response to send, or
    /// `None` if the request is dropped (bad authenticator).
    pub fn dynauth(&mut self, bytes: &[u8], now: u64) -> Option<Vec<u8>> {
        let Some(d) = DynAuth::parse(bytes, &self.dynauth_secret) else {
            self.stats.dynauth_rejected += 1;
            return None;
        };
        let Some(idx) = self.find(&d) else {
            self.stats.dynauth_rejected += 1;
            return Some(d.respond(
                &self.dynauth_secret,
                Some(radius::error_cause::SESSION_NOT_FOUND),
            ));
        };
        if d.disconnect {
            self.stats.disconnect += 1;
            self.terminate(idx, radius::terminate_cause::ADMIN_RESET, now);
            return Some(d.respond(&self.dynauth_secret, None));
        }
        let Some(rate) = d.reply.rate else {
            self.stats.dynauth_rejected += 1;
            return Some(d.respond(
                &self.dynauth_secret,
                Some(radius::error_cause::UNSUPPORTED_SERVICE),
            ));
        };
        self.stats.coa += 1;
        if let Some(Some(e)) = self.slots.get_mut(idx as usize) {
            e.rate = rate;
            if let Some(t) = d.reply.session_timeout {
                e.hard_deadline = Some(now + u64::from(t) * 1000);
            }
            if e.installed {
                self.fib.push(FibUpdate::Rate { idx, rate });
            }
        }
        self.schedule(idx);
        Some(d.respond(&self.dynauth_secret, None))
    }

    /// All sessions.
    pub fn sessions(&self) -> Vec<SessionInfo> {
        let mut v: Vec<SessionInfo> = self
            .slots
            .iter()
            .enumerate()
            .filter_map(|(i, s)| {
                let e = s.as_ref()?;
                let idx = i as u32;
                Some(SessionInfo {
                    idx,
                    acct_id: self.acct_id(idx),
                    key: e.key,
                    sid: e.sid,
                    user: String::from_utf8_lossy(&e.user).into_owned(),
                    phase: e.link.phase.as_str(),
                    ip: e.ip,
                    ipv6_prefix: e.prefix6,
                    ipv6_up: e.ipv6_up,
                    rate: e.rate,
                    setup_ms: e.up_at.map(|u| u - e.created),
                    counters: self.counters.get(idx),
                })
            })
            .collect();
        v.sort_by_key(|s| s.idx);
        v
    }
}

/// VLAN helper re-exported for users of the control plane.
pub type AccessVlans = Vlans;

#[cfg(test)]
mod tests {
    use super::*;
    use crate::client::{ClientParams, ClientPhase, Subscriber};
    use crate::config::UserConfig;
    use crate::lcp::AuthProto;
    use alloc::string::ToString;

    pub(crate) fn cp(cfg: &Config) -> ControlPlane {
        ControlPlane::new(
            cfg,
            1024,
            SessionCounters::new(1024),
            Rng::from_seed([9; 32]),
        )
        .unwrap()
    }

    pub(crate) fn sub(i: u32, user: &str, pw: &str, auth: AuthProto) -> Subscriber {
        Subscriber::new(ClientParams {
            mac: [2, 0, 0, (i >> 16) as u8, (i >> 8) as u8, i as u8],
            vlans: Vlans {
                svlan: 100 + (i % 3) as u16,
                cvlan: (i % 4000) as u16 + 1,
            },
            user: user.as_bytes().to_vec(),
            password: pw.as_bytes().to_vec(),
            accept_auth: [Some(auth), None],
            service_name: Vec::new(),
            host_uniq: Some(i.to_be_bytes().to_vec()),
            max_payload: Some(1500),
            timers: Timers::default(),
            ipv6cp: true,
            magic: 0x1000 + i,
            discovery_tries: 3,
        })
    }

    /// Deliver frames both ways until quiet.
    pub(crate) fn run(
        c: &mut ControlPlane,
        subs: &mut [Subscriber],
        now: u64,
        mut up: Vec<Vec<u8>>,
    ) {
        for _ in 0..50 {
            for f in up.drain(..) {
                c.input(0, &f, now);
            }
            c.poll(now);
            let tx = c.take_tx();
            if tx.is_empty() {
                break;
            }
            for (_, f) in tx {
                let dst = [f[0], f[1], f[2], f[3], f[4], f[5]];
                for s in subs.iter_mut().filter(|s| s.params().mac == dst) {
                    s.input(&f, now, &mut up);
                }
            }
        }
    }

    fn cfg_with_users(auth: AuthProto) -> Config {
        Config {
            auth,
            auth_fallback: None,
            ipv6cp: true,
            users: alloc::vec![
                UserConfig {
                    name: "alice".to_string(),
                    password: "pw".to_string(),
                    ip: None,
                    rate: Some("1M/5M".to_string())
                },
                UserConfig {
                    name: "bob".to_string(),
                    password: "pw2".to_string(),
                    ip: Some(core::net::Ipv4Addr::new(100, 64, 9, 9)),
                    rate: None
                },
            ],
            ..Config::default()
        }
    }

    #[test]
    fn pap_and_chap_sessions_come_up_and_go_down() {
        for auth in [AuthProto::Pap, AuthProto::Chap] {
            let mut c = cp(&cfg_with_users(auth));
            let mut subs = alloc::vec![
                sub(1, "alice", "pw", auth),
                sub(2, "bob", "pw2", auth),
                sub(3, "alice", "wrong", auth)
            ];
            let mut up = Vec::new();
            for s in subs.iter_mut() {
                s.start(0, &mut up);
            }
            run(&mut c, &mut subs, 0, up);
            assert_eq!(subs[0].phase, ClientPhase::Up, "{auth:?}");
            assert_eq!(subs[1].phase, ClientPhase::Up);
            assert_eq!(subs[1].ip, 0x6440_0909);
            assert_eq!(subs[0].gateway, 0x6440_0001);
            assert_eq!(subs[2].failed, Some(ClientPhase::Auth));
            let fib = c.take_fib();
            assert_eq!(fib.len(), 2);
            assert!(matches!(
                fib[0],
                FibUpdate::Add {
                    rate: (1_000_000, 5_000_000),
                    ..
                }
            ));
            assert_eq!(c.stats.auth_reject, 1);
            assert_eq!(c.session_count(), 2);
            // Subscriber 1 hangs up with PADT.
            let mut up = Vec::new();
            subs[0].terminate(&mut up);
            run(&mut c, &mut subs, 10, up);
            assert_eq!(c.session_count(), 1);
            assert!(matches!(c.take_fib()[..], [FibUpdate::Remove { .. }]));
        }
    }

    #[test]
    fn hostile_input_does_not_disturb_other_sessions() {
        let mut c = cp(&cfg_with_users(AuthProto::Pap));
        let mut subs = alloc::vec![sub(1, "alice", "pw", AuthProto::Pap)];
        let mut up = Vec::new();
        subs[0].start(0, &mut up);
        run(&mut c, &mut subs, 0, up);
        assert_eq!(subs[0].phase, ClientPhase::Up);
        let good = subs[0].session_frame(&[0xc0, 0x21, 9, 1, 0, 8, 0, 0, 0, 1]);
        // Garbage after the PPPoE header, bad LCP, truncated frames, PADI flood from one MAC.
        let mut bad: Vec<Vec<u8>> = alloc::vec![
            subs[0].session_frame(&[0xc0]),
            subs[0].session_frame(&[0xc0, 0x21, 1, 1, 0, 200]),
            subs[0].session_frame(&[0xc0, 0x21, 1, 1, 0, 6, 1, 0]),
            good[..20].to_vec(),
        ];
        let mut flood = sub(77, "x", "y", AuthProto::Pap);
        for _ in 0..1000 {
            flood.start(0, &mut bad);
        }
        for f in &bad {
            c.input(0, f, 1);
        }
        assert!(c.discovery_stats().padi_rate_mac >= 990);
        assert_eq!(c.session_count(), 1);
        // The established session still answers an echo.
        c.take_tx();
        c.input(0, &good, 2);
        let tx = c.take_tx();
        assert_eq!(tx.len(), 1);
        assert_eq!(&tx[0].1[28..30], &[0xc0, 0x21]);
    }

    #[test]
    fn retransmitted_padr_gets_the_same_session() {
        let mut c = cp(&cfg_with_users(AuthProto::Pap));
        let mut s = sub(5, "alice", "pw", AuthProto::Pap);
        let mut up = Vec::new();
        s.start(0, &mut up);
        c.input(0, &up[0], 0);
        let pado = c.take_tx();
        up.clear();
        s.input(&pado[0].1, 0, &mut up);
        let padr = up[0].clone();
        c.input(0, &padr, 0);
        let first = c.take_tx();
        // The PADS is "lost"; the host retransmits its PADR.
        c.input(0, &padr, 1000);
        let again = c.take_tx();
        assert_eq!(c.session_count(), 1);
        assert_eq!(c.stats.sessions_created, 1);
        assert_eq!(first[0].1, again[0].1, "the same PADS is resent");
    }

    #[test]
    fn ipv6cp_down_withdraws_the_prefix_and_keeps_ipv4() {
        let mut cfg = cfg_with_users(AuthProto::Pap);
        cfg.pools6 = alloc::vec![crate::config::Pool6Config {
            name: "v6".to_string(),
            prefix: "2001:db8:100::/40".to_string(),
        }];
        let mut c = cp(&cfg);
        let mut subs = alloc::vec![sub(1, "alice", "pw", AuthProto::Pap)];
        let mut up = Vec::new();
        subs[0].start(0, &mut up);
        run(&mut c, &mut subs, 0, up);
        assert_eq!(subs[0].phase, ClientPhase::Up);
        let prefix = (subs[0].ipv6 >> 64) as u64;
        assert_ne!(prefix, 0);
        let _ = c.take_fib();
        // The subscriber closes IPv6CP only (Terminate-Request, RFC 1661 §5.5).
        let f = subs[0].session_frame(&[0x80, 0x57, 5, 0x42, 0, 4]);
        c.input(0, &f, 10);
        c.poll(10);
        let fib = c.take_fib();
        assert!(
            fib.iter()
                .any(|u| matches!(u, FibUpdate::Remove6 { prefix: p, .. } if *p == prefix)),
            "{fib:?}"
        );
        assert!(
            !fib.iter().any(|u| matches!(u, FibUpdate::Remove { .. })),
            "IPv4 stays: {fib:?}"
        );
        let info = c.sessions();
        assert!(!info[0].ipv6_up);
        assert_eq!(info[0].ipv6_prefix, prefix, "the /64 stays allocated");
        assert_eq!(c.session_count(), 1);
        assert_eq!(c.ipv6_session_count(), 0);
    }

    #[test]
    fn dual_stack_session_gets_a_prefix_by_ra() {
        let mut cfg = cfg_with_users(AuthProto::Pap);
        cfg.pools6 = alloc::vec![crate::config::Pool6Config {
            name: "v6".to_string(),
            prefix: "2001:db8:100::/40".to_string(),
        }];
        cfg.dns6 = alloc::vec!["2001:db8::53".parse().unwrap()];
        let mut c = cp(&cfg);
        let mut subs = alloc::vec![
            sub(1, "alice", "pw", AuthProto::Pap),
            sub(2, "bob", "pw2", AuthProto::Pap)
        ];
        let mut up = Vec::new();
        for s in subs.iter_mut() {
            s.start(0, &mut up);
        }
        run(&mut c, &mut subs, 0, up);
        let mut prefixes = Vec::new();
        for s in &subs {
            assert_eq!(s.phase, ClientPhase::Up);
            let iid = s.interface_id().expect("IPv6CP open");
            assert_ne!(s.ipv6, 0, "SLAAC address formed from the RA");
            assert_eq!(s.ipv6 as u64, iid, "address = prefix + IPv6CP identifier");
            assert_eq!((s.ipv6 >> 88) as u64, 0x20_010d_b801, "from the pool");
            assert_eq!(s.ipv6_dns, 0x2001_0db8_0000_0000_0000_0000_0000_0053);
            assert!(crate::nd::is_link_local(s.ipv6_router));
            prefixes.push((s.ipv6 >> 64) as u64);
        }
        assert_ne!(prefixes[0], prefixes[1]);
        let fib = c.take_fib();
        for p in &prefixes {
            assert!(
                fib.iter()
                    .any(|u| matches!(u, FibUpdate::Add6 { prefix, .. } if prefix == p)),
                "{fib:?}"
            );
        }
        let info = c.sessions();
        assert!(info.iter().all(|i| i.ipv6_up && i.ipv6_prefix != 0));
        let shown = crate::metrics::show_sessions(&c);
        let p0 = crate::pool6::fmt_prefix64(prefixes[0]);
        assert!(shown.contains(&p0), "{shown}");
        let prom = crate::metrics::prometheus(&c, core::iter::empty());
        assert!(prom.contains("vbng_ipv6_sessions 2"), "{prom}");
        assert!(
            !prom.contains("vbng_session_ipv6_prefix_info"),
            "per-session series are opt-in"
        );
        let per = crate::metrics::prometheus_sessions(&c);
        assert!(per.contains(&alloc::format!("prefix=\"{p0}\"")), "{per}");
        assert!(c.stats.ra_sent >= 2);
        // A Neighbor Solicitation for the BNG's link-local address gets an NA (no
        // link-layer address options on PPP); other targets are ignored.
        let router = subs[0].ipv6_router;
        let ns = |target: u128| {
            let mut m = alloc::vec![135u8, 0, 0, 0, 0, 0, 0, 0];
            m.extend_from_slice(&target.to_be_bytes());
            let (src, dst) = (subs[0].ipv6, router);
            dataplane::proto::icmpv6::Packet::new_unchecked(&mut m[..]).fill_checksum(
                &core::net::Ipv6Addr::from(src),
                &core::net::Ipv6Addr::from(dst),
            );
            let mut f = alloc::vec![0x00, 0x57, 0x60, 0, 0, 0, 0, 24, 58, 255];
            f.extend_from_slice(&src.to_be_bytes());
            f.extend_from_slice(&dst.to_be_bytes());
            f.extend_from_slice(&m);
            subs[0].session_frame(&f)
        };
        c.input(0, &ns(router), 5);
        let tx = c.take_tx();
        assert_eq!(tx.len(), 1);
        let na = &tx[0].1[30..];
        assert_eq!(na[40], 136);
        assert_eq!(u128::from_be_bytes(na[48..64].try_into().unwrap()), router);
        c.input(0, &ns(router ^ 1), 5);
        assert!(c.take_tx().is_empty());
        assert_eq!(c.stats.na_sent, 1);
        // A Router Solicitation flood earns one (unicast) RA a second.
        let iid = subs[0].interface_id().unwrap();
        let mut rs = Vec::new();
        crate::nd::router_solicitation(iid, &mut rs);
        let rs = subs[0].session_frame(&rs);
        let limited = c.stats.rs_rate_limited;
        for t in [2000, 2001, 2002, 2500, 3010] {
            c.input(0, &rs, t);
        }
        let tx = c.take_tx();
        assert_eq!(tx.len(), 2, "at t=2000 and t=3010");
        for (_, f) in &tx {
            let ip = &f[30..];
            assert_eq!(ip[40], 134);
            assert_eq!(
                u128::from_be_bytes(ip[24..40].try_into().unwrap()),
                crate::nd::link_local(iid),
                "unicast to the soliciting host"
            );
        }
        assert_eq!(c.stats.rs_rate_limited - limited, 3);
        // Disconnect-Request identifying the session by Framed-IPv6-Prefix (RFC 5176
        // §3): the second subscriber goes, the first stays.
        let mut b = crate::wire::radius::Builder::new(
            crate::wire::radius::code::DISCONNECT_REQUEST,
            1,
            [0; 16],
        );
        b.attr(
            crate::wire::radius::attr::FRAMED_IPV6_PREFIX,
            &radius::ipv6_prefix_value(u128::from(prefixes[1]) << 64, 64),
        );
        let dm = b.finish_request_md5(b"").unwrap();
        let ack = c.dynauth(&dm, 3100).expect("answered");
        assert_eq!(ack[0], crate::wire::radius::code::DISCONNECT_ACK);
        assert_eq!(c.session_count(), 1);
        assert!(c.sessions()[0].ipv6_prefix == prefixes[0]);
        c.take_tx();
        // Unsolicited RAs every ra_interval_s.
        let before = c.stats.ra_sent;
        c.poll(604_000);
        assert_eq!(c.stats.ra_sent, before + 1);
        // Hang up: the /64 leaves the fast path and returns to the pool.
        c.take_fib();
        let mut up = Vec::new();
        subs[0].terminate(&mut up);
        run(&mut c, &mut subs, 604_010, up);
        assert!(c
            .take_fib()
            .iter()
            .any(|u| matches!(u, FibUpdate::Remove6 { prefix, .. } if *prefix == prefixes[0])));
        let mut again = alloc::vec![sub(9, "alice", "pw", AuthProto::Pap)];
        let mut up = Vec::new();
        again[0].start(604_020, &mut up);
        run(&mut c, &mut again, 604_020, up);
        assert_eq!(
            (again[0].ipv6 >> 64) as u64,
            prefixes[0],
            "freed prefix reused"
        );
    }

    #[test]
    fn keepalive_failure_ends_session() {
        let mut cfg = cfg_with_users(AuthProto::Pap);
        cfg.keepalive_interval_s = 1;
        cfg.keepalive_failures = 2;
        let mut c = cp(&cfg);
        let mut subs = alloc::vec![sub(1, "alice", "pw", AuthProto::Pap)];
        let mut up = Vec::new();
        subs[0].start(0, &mut up);
        run(&mut c, &mut subs, 0, up);
        c.take_fib();
        // The subscriber vanishes: no more input.
        for t in 1..6 {
            c.poll(t * 1000);
        }
        assert_eq!(c.session_count(), 0);
        assert!(matches!(c.take_fib()[..], [FibUpdate::Remove { .. }]));
    }
}
