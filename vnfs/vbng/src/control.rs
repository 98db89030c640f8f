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
//! Addresses (RFC 2865 §5.8, RFC 3162 §2.3): a Framed-IP-Address or Framed-IPv6-Prefix
//! that is martian, one of the BNG's own, or already held by another session cannot be
//! honoured and rejects the session (RFC 6929 §2.8: an invalid attribute is treated
//! like an Access-Reject); see [`crate::pool`] and [`crate::pool6`].
//!
//! Half-open sessions (PADS sent, RFC 2516 §5.4, but PPP not yet in the Network phase,
//! RFC 1661 §3.2) are limited per subscriber MAC, per access line (port and VLANs) and
//! in all, and ended `half_open_timeout_s` after the PADR (waiting for AAA does not
//! count: the RADIUS client bounds that itself), so spoofed PADRs cannot fill the
//! session table. Frames addressed to another MAC (neither ours nor, for discovery,
//! broadcast; RFC 2516 §5) are ignored and counted.
//! Accounting records go to the RADIUS client's durable queue ([`crate::radius`]):
//! retried with back-off and failover until acknowledged (RFC 2866 §2), with the
//! current Acct-Delay-Time (§5.2), optionally journaled by the `std` side
//! ([`ControlPlane::take_acct_journal`], [`ControlPlane::restore_acct`]); a Stop does not
//! need its session any more. Records refused (queue full) or given up (age policy)
//! are counted and reported as [`ControlPlane::take_notices`] lines naming the session.
//!
//! Time is passed in (ms). Timers are kept in a heap so `poll` costs O(due · log n),
//! not O(sessions); each slot has at most one live timer entry (superseded entries are
//! skipped and compacted away), so the heap stays O(sessions) under churn, as does
//! every other growable structure ([`ControlPlane::memory`]).

use crate::auth::Credentials;
use crate::config::{parse_rate_pair, Config, ConfigError};
use crate::fsm::Timers;
use crate::pool::{PoolError, Pools};
use crate::pool6::{Pools6, Prefix64};
use crate::pppoe::{AccessKey, Discovery, DiscoveryAction, DiscoveryConfig, SessionRequest};
use crate::radius::{
    self, AcctRecord, AcctStatus, Client, ClientConfig, DynAuth, Event, LineInfo, Reply, Server,
    Transmit,
};
use crate::rng::Rng;
use crate::session::{EndCause, LinkParams, Phase, PppSession, SessEvent};
use alloc::collections::{BTreeMap, BinaryHeap, VecDeque};
use alloc::string::String;
use alloc::sync::Arc;
use alloc::vec::Vec;
use core::cmp::Reverse;
use core::net::Ipv4Addr;
use core::sync::atomic::{AtomicU64, Ordering};
use dataplane::proto::ethernet::{Frame, MacAddr, Repr as EthRepr, Vlans};
use dataplane::proto::pppoe::{Code, Packet as PppoePacket, HEADER_LEN as PPPOE_HLEN};
use dataplane::proto::radius::code as rcode;
use dataplane::proto::EtherType;
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
    /// Frames addressed to another MAC (not ours, nor broadcast for discovery).
    pub not_for_us: u64,
    /// PADRs dropped: the MAC has `half_open_per_mac` half-open sessions.
    pub half_open_mac: u64,
    /// PADRs dropped: the access line has `half_open_per_line` half-open sessions.
    pub half_open_line: u64,
    /// PADRs dropped: `half_open_max` half-open sessions in all.
    pub half_open_global: u64,
    /// Half-open sessions ended by `half_open_timeout_s`.
    pub half_open_expired: u64,
    /// Sessions rejected: Framed-IP-Address martian or one of ours (RFC 6929 §2.8).
    pub framed_ip_invalid: u64,
    /// Sessions rejected: Framed-IP-Address held by another session.
    pub framed_ip_in_use: u64,
    /// Sessions rejected: Framed-IPv6-Prefix martian, ours or held by another session.
    pub framed_ipv6_refused: u64,
}

impl ControlStats {
    /// Every counter by name (the field names), for reports and tables.
    pub fn fields(&self) -> [(&'static str, u64); 28] {
        [
            ("sessions_created", self.sessions_created),
            ("sessions_up", self.sessions_up),
            ("sessions_ended", self.sessions_ended),
            ("auth_accept", self.auth_accept),
            ("auth_reject", self.auth_reject),
            ("aaa_timeout", self.aaa_timeout),
            ("malformed", self.malformed),
            ("no_session", self.no_session),
            ("pool_exhausted", self.pool_exhausted),
            ("table_full", self.table_full),
            ("coa", self.coa),
            ("disconnect", self.disconnect),
            ("dynauth_rejected", self.dynauth_rejected),
            ("pool6_exhausted", self.pool6_exhausted),
            ("ra_sent", self.ra_sent),
            ("rs_received", self.rs_received),
            ("rs_rate_limited", self.rs_rate_limited),
            ("na_sent", self.na_sent),
            ("echo6_replies", self.echo6_replies),
            ("ipv6_dropped", self.ipv6_dropped),
            ("not_for_us", self.not_for_us),
            ("half_open_mac", self.half_open_mac),
            ("half_open_line", self.half_open_line),
            ("half_open_global", self.half_open_global),
            ("half_open_expired", self.half_open_expired),
            ("framed_ip_invalid", self.framed_ip_invalid),
            ("framed_ip_in_use", self.framed_ip_in_use),
            ("framed_ipv6_refused", self.framed_ipv6_refused),
        ]
    }
}

/// A local user (`Debug` redacts the password, zeroed on drop).
#[derive(Clone)]
struct LocalUser {
    password: Vec<u8>,
    ip: Option<u32>,
    rate: Option<(u64, u64)>,
}

impl core::fmt::Debug for LocalUser {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("LocalUser")
            .field("password", &crate::auth::REDACTED)
            .field("ip", &self.ip)
            .field("rate", &self.rate)
            .finish()
    }
}

impl Drop for LocalUser {
    fn drop(&mut self) {
        zeroize::Zeroize::zeroize(&mut self.password);
    }
}

/// Setup latencies kept for [`ControlPlane::take_setup_ms`] (the oldest are dropped).
pub const SETUP_RING: usize = 1024;

/// Capacities of the control plane's growable structures (entries each can hold
/// without reallocating): under churn each stays O(session slots).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct MemoryReport {
    /// Session slots.
    pub slots: usize,
    /// Free-slot stack.
    pub free: usize,
    /// (access key, session id) → slot.
    pub by_key: usize,
    /// (access key, Host-Uniq) → slot.
    pub by_host: usize,
    /// Timer heap.
    pub timers: usize,
    /// Half-open counts per MAC and per line.
    pub half_open: usize,
    /// Setup latencies kept.
    pub setup_ms: usize,
    /// Fixed IPv4 addresses outside the pools.
    pub statics4: usize,
    /// Fixed /64s outside the pools, /64s in use, returned /64s kept.
    pub pools6: usize,
    /// Frames, fast-path updates and RADIUS datagrams not yet taken.
    pub queues: usize,
}

impl MemoryReport {
    /// The largest capacity of all.
    pub fn largest(&self) -> usize {
        [
            self.slots,
            self.free,
            self.by_key,
            self.by_host,
            self.timers,
            self.half_open,
            self.setup_ms,
            self.statics4,
            self.pools6,
            self.queues,
        ]
        .into_iter()
        .max()
        .unwrap_or(0)
    }
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
    /// Half-open (before the Network phase): ended at this time unless waiting for
    /// AAA.
    half_open: Option<u64>,
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
    /// Boxed: an idle slot costs a pointer, not a whole entry (~840 bytes).
    slots: Vec<Option<alloc::boxed::Box<Entry>>>,
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
    dynauth_secret: radius::Key,
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
    notices: Vec<String>,
    fib: Vec<FibUpdate>,
    setup_ms: VecDeque<u64>,
    /// Per slot: the deadline of its live entry in `timers` (`u64::MAX` = none).
    timer_at: Vec<u64>,
    half_open: HalfOpen,
    /// Counters.
    pub stats: ControlStats,
}

/// Limits and counts of half-open sessions.
#[derive(Debug, Default, Clone)]
struct HalfOpen {
    max: u32,
    per_mac: u32,
    per_line: u32,
    timeout_ms: u64,
    total: u32,
    by_mac: HashMap<(u16, [u8; 6]), u32>,
    by_line: HashMap<(u16, Vlans), u32>,
}

impl HalfOpen {
    fn mac(k: &AccessKey) -> (u16, [u8; 6]) {
        (k.port, k.mac)
    }
    fn line(k: &AccessKey) -> (u16, Vlans) {
        (k.port, k.vlans)
    }

    /// Whether one more half-open session from `k` is allowed; if not, which limit.
    fn admit(&self, k: &AccessKey, stats: &mut ControlStats) -> bool {
        let c = |m: Option<&u32>| m.copied().unwrap_or(0);
        if self.total >= self.max {
            stats.half_open_global += 1;
        } else if c(self.by_line.get(&Self::line(k))) >= self.per_line {
            stats.half_open_line += 1;
        } else if c(self.by_mac.get(&Self::mac(k))) >= self.per_mac {
            stats.half_open_mac += 1;
        } else {
            return true;
        }
        false
    }

    fn enter(&mut self, k: &AccessKey) {
        self.total += 1;
        *self.by_mac.entry(Self::mac(k)).or_insert(0) += 1;
        *self.by_line.entry(Self::line(k)).or_insert(0) += 1;
    }

    fn leave(&mut self, k: &AccessKey) {
        self.total = self.total.saturating_sub(1);
        fn dec<K: core::hash::Hash + Eq>(m: &mut HashMap<K, u32>, key: K) {
            if let hashbrown::hash_map::Entry::Occupied(mut o) = m.entry(key) {
                *o.get_mut() = o.get().saturating_sub(1);
                if *o.get() == 0 {
                    o.remove();
                }
            }
        }
        dec(&mut self.by_mac, Self::mac(k));
        dec(&mut self.by_line, Self::line(k));
    }
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
        if !(1..=crate::config::MAX_SESSIONS).contains(&max_sessions) {
            return Err(ConfigError(alloc::format!(
                "max sessions must be 1 to {}",
                crate::config::MAX_SESSIONS
            )));
        }
        cfg.validate()?;
        let our_mac = cfg.mac.octets();
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
        let pools = cfg.build_pools()?;
        let pools6 = cfg.build_pools6()?;
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
                                addr: s.addr,
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
                    require_message_authenticator: r.require_message_authenticator,
                    acct_queue_limit: r.acct_queue_limit as usize,
                    acct_max_age_ms: u64::from(r.acct_max_age_s) * 1000,
                    acct_retry_max_ms: u64::from(r.acct_retry_max_s) * 1000,
                    acct_journal: r.acct_journal.is_some(),
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
                    radius::Key(r.coa_secret.as_bytes().to_vec()),
                    u32::from(r.nas_ip),
                    r.local_fallback,
                )
            }
            None => (None, false, 0, radius::Key::default(), 0x7f00_0001, false),
        };
        let n = max_sessions.min(counters.capacity() as u32);
        // Session generations (the first half of Acct-Session-Id) start at a random
        // value, so the ids of a restarted vbng do not repeat those of the records it
        // replays from the accounting journal.
        let mut g = [0u8; 4];
        rng.fill(&mut g);
        Ok(ControlPlane {
            link,
            our_mac,
            disc,
            slots: (0..n).map(|_| None).collect(),
            free: (0..n).rev().collect(),
            gen: u32::from_be_bytes(g),
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
            pools,
            pools6,
            ra,
            default_rate: (cfg.default_rate_up, cfg.default_rate_down),
            rng,
            counters,
            nas_ip,
            nas_id: cfg.name.clone(),
            tx: Vec::new(),
            radius_tx: Vec::new(),
            notices: Vec::new(),
            fib: Vec::new(),
            setup_ms: VecDeque::new(),
            timer_at: alloc::vec![u64::MAX; n as usize],
            half_open: HalfOpen {
                max: cfg.half_open_max,
                per_mac: cfg.half_open_per_mac,
                per_line: cfg.half_open_per_line,
                timeout_ms: u64::from(cfg.half_open_timeout_s) * 1000,
                ..HalfOpen::default()
            },
            stats: ControlStats::default(),
        })
    }

    /// Capacities of every growable structure (see [`MemoryReport`]).
    pub fn memory(&self) -> MemoryReport {
        let (s6, u6) = self.pools6.footprint();
        MemoryReport {
            slots: self.slots.capacity(),
            free: self.free.capacity(),
            by_key: self.by_key.capacity(),
            by_host: self.by_host.capacity(),
            timers: self.timers.capacity(),
            half_open: self
                .half_open
                .by_mac
                .capacity()
                .max(self.half_open.by_line.capacity()),
            setup_ms: self.setup_ms.capacity(),
            statics4: self.pools.statics_in_use(),
            pools6: s6.max(u6),
            queues: self
                .tx
                .capacity()
                .max(self.fib.capacity())
                .max(self.radius_tx.capacity()),
        }
    }

    /// Half-open sessions now.
    pub fn half_open_count(&self) -> u32 {
        self.half_open.total
    }

    /// Add local users (e.g. from a user file).
    pub fn add_users(&mut self, users: &[crate::config::UserConfig]) -> Result<(), ConfigError> {
        for u in users {
            if let Some(ip) = u.ip {
                if !self.pools.assignable(ip) || !self.pools.contains(ip) {
                    return Err(ConfigError(alloc::format!(
                        "address {ip} of user {:?} is martian, ours or outside every pool",
                        u.name
                    )));
                }
            }
            if self.users.contains_key(u.name.as_bytes()) {
                return Err(ConfigError(alloc::format!(
                    "duplicate user name {:?}",
                    u.name
                )));
            }
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

    /// Take setup latencies (ms) of sessions that came up since the last call (the
    /// latest [`SETUP_RING`] at most).
    pub fn take_setup_ms(&mut self) -> Vec<u64> {
        self.setup_ms.drain(..).collect()
    }

    fn frame(&self, key: &AccessKey, ethertype: EtherType, pppoe: &[u8]) -> Vec<u8> {
        let eth = EthRepr {
            dst_addr: MacAddr(key.mac),
            src_addr: MacAddr(self.our_mac),
            vlans: key.vlans.to_stack(),
            ethertype,
        };
        let mut f = alloc::vec![0u8; eth.buffer_len()];
        let _ = eth.emit(&mut Frame::new_unchecked(&mut f[..]));
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
        let f = self.frame(&key, EtherType::PPPOE_SESSION, &p);
        self.tx.push((key.port, f));
    }

    /// Handle a frame punted from access port `port`.
    pub fn input(&mut self, port: u16, frame: &[u8], now: u64) {
        let Ok(eth) = Frame::new_checked(frame).and_then(|f| EthRepr::parse(&f)) else {
            self.stats.malformed += 1;
            return;
        };
        let Some(payload) = frame.get(eth.buffer_len()..) else {
            self.stats.malformed += 1;
            return;
        };
        let key = AccessKey {
            port,
            mac: eth.src_addr.0,
            vlans: Vlans::from(eth.vlans),
        };
        // RFC 2516 §5: discovery frames come to us or (PADI, §5.1) to broadcast;
        // session frames to us. Frames for another host on a shared segment are not
        // ours to answer.
        let broadcast_ok =
            eth.ethertype == EtherType::PPPOE_DISCOVERY && eth.dst_addr.is_broadcast();
        if eth.dst_addr.0 != self.our_mac && !broadcast_ok {
            self.stats.not_for_us += 1;
            return;
        }
        match eth.ethertype {
            EtherType::PPPOE_DISCOVERY => self.discovery(&key, payload, now),
            EtherType::PPPOE_SESSION => {
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
                let f = self.frame(key, EtherType::PPPOE_DISCOVERY, &p);
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
        // Half-open limits: spoofed PADRs from random MACs on one line cannot crowd
        // out the others (dropped without an answer, counted by limit).
        if !self.half_open.admit(key, &mut self.stats) {
            return;
        }
        let Some(idx) = self.free.pop() else {
            self.stats.table_full += 1;
            let p = self.disc.padt(
                0,
                req.relay_session_id.as_deref(),
                Some(b"session table full"),
            );
            let f = self.frame(key, EtherType::PPPOE_DISCOVERY, &p);
            self.tx.push((key.port, f));
            return;
        };
        let Some(sid) = self.alloc_sid(key) else {
            self.free.push(idx);
            self.stats.table_full += 1;
            return;
        };
        let pads = self.disc.pads(&req, sid);
        let f = self.frame(key, EtherType::PPPOE_DISCOVERY, &pads);
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
            half_open: Some(now + self.half_open.timeout_ms),
        };
        self.half_open.enter(key);
        if let Some(s) = self.slots.get_mut(idx as usize) {
            *s = Some(alloc::boxed::Box::new(e));
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
        // The half-open deadline does not run while AAA decides.
        let half_open = e.half_open.filter(|_| e.link.phase != Phase::Aaa);
        for x in [
            e.next_interim,
            e.hard_deadline,
            e.idle.map(|i| i.1 + i.0),
            e.next_ra,
            half_open,
        ]
        .into_iter()
        .flatten()
        {
            d = Some(d.map_or(x, |y: u64| y.min(x)));
        }
        let Some(d) = d else {
            return;
        };
        // One live entry per slot: a later deadline waits for the earlier entry to
        // fire (poll_session schedules again); an earlier one supersedes it.
        let Some(at) = self.timer_at.get_mut(idx as usize) else {
            return;
        };
        if d >= *at {
            return;
        }
        *at = d;
        self.timers.push(Reverse((d, idx)));
        if self.timers.len() > 2 * self.timer_at.len() + 64 {
            let at = &self.timer_at;
            self.timers
                .retain(|Reverse((t, i))| at.get(*i as usize) == Some(t));
        }
    }

    /// Track the half-open state from the link phase: the Network phase ends it; LCP
    /// renegotiation (back to Establish) starts it again.
    fn sync_half_open(&mut self, idx: u32, now: u64) {
        let timeout = self.half_open.timeout_ms;
        let Some(Some(e)) = self.slots.get_mut(idx as usize) else {
            return;
        };
        let setup = matches!(
            e.link.phase,
            Phase::Establish | Phase::Authenticate | Phase::Aaa
        );
        let key = e.key;
        match (e.half_open.is_some(), setup) {
            (true, false) => {
                e.half_open = None;
                self.half_open.leave(&key);
            }
            (false, true) => {
                e.half_open = Some(now + timeout);
                self.half_open.enter(&key);
            }
            _ => {}
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
        self.sync_half_open(idx, now);
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
        let ip = e.ip;
        e.installed = false;
        e.acct_started = false;
        e.up_at = None;
        e.next_interim = None;
        e.hard_deadline = None;
        e.idle = None;
        e.ip = 0;
        if ip != 0 {
            self.pools.free(Ipv4Addr::from(ip));
        }
        if prefix6 != 0 {
            self.pools6.free(Prefix64(prefix6));
        }
    }

    /// The session's /64 at Access-Accept (only when IPv6CP is enabled):
    /// Framed-IPv6-Prefix if it is a /64 (taken from its pool when one holds it), else
    /// Framed-IPv6-Pool, else the default IPv6 pool; 0 when none is configured or the
    /// pool is exhausted (the session is then IPv4-only); `None` when the
    /// Framed-IPv6-Prefix cannot be honoured (martian, ours, or held by another
    /// session: the session is rejected, RFC 6929 §2.8).
    fn alloc_prefix6(&mut self, reply: &Reply) -> Option<u64> {
        if !self.link.ipv6cp {
            return Some(0);
        }
        if let Some((p, 64)) = reply.ipv6_prefix() {
            let p = (p >> 64) as u64;
            return self.pools6.take(Prefix64(p)).ok().map(|_| p);
        }
        if self.pools6.is_empty() && reply.framed_ipv6_pool.is_none() {
            return Some(0);
        }
        match self.pools6.alloc(reply.framed_ipv6_pool.as_deref()) {
            Ok(p) => Some(p.0),
            Err(_) => {
                self.stats.pool6_exhausted += 1;
                Some(0)
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
        // Only a session waiting for its verdict takes an address: a second accept
        // (a late or duplicated answer) must not leak the first one.
        if !matches!(self.slots.get(idx as usize), Some(Some(e)) if e.link.phase == Phase::Aaa) {
            return;
        }
        // Address: Framed-IP-Address (0xFFFFFFFE/0xFFFFFFFF: the NAS chooses, RFC 2865
        // §5.8), else Framed-Pool, else the default pool. A fixed address outside the
        // pools is held in the in-use set too. One that cannot be honoured (martian,
        // ours, held by another session) rejects the session (RFC 6929 §2.8).
        let got = match reply.framed_ip {
            Some(ip) if ip != 0xffff_fffe && ip != 0xffff_ffff => {
                self.pools.take(Ipv4Addr::from(ip)).map(|_| ip)
            }
            _ => self
                .pools
                .alloc(reply.framed_pool.as_deref())
                .map(u32::from),
        };
        let ip = match got {
            Ok(ip) => ip,
            Err(e) => {
                match e {
                    PoolError::Invalid => self.stats.framed_ip_invalid += 1,
                    PoolError::InUse => self.stats.framed_ip_in_use += 1,
                    PoolError::NoSuchPool | PoolError::Exhausted => self.stats.pool_exhausted += 1,
                }
                self.reject(idx, now);
                return;
            }
        };
        let Some(prefix6) = self.alloc_prefix6(&reply) else {
            self.stats.framed_ipv6_refused += 1;
            self.pools.free(Ipv4Addr::from(ip));
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
        let Some(Some(e)) = self.slots.get_mut(idx as usize) else {
            self.pools.free(Ipv4Addr::from(ip));
            self.pools6.free(Prefix64(prefix6));
            return;
        };
        e.prefix6 = prefix6;
        e.ip = ip;
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
        if self.setup_ms.len() >= SETUP_RING {
            self.setup_ms.pop_front();
        }
        self.setup_ms.push_back(setup);
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
        // The record carries all it needs: its retries do not look at the session.
        if let Some(r) = self.radius.as_mut() {
            r.submit_acct(req, now);
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
            let f = self.frame(&e.key, EtherType::PPPOE_DISCOVERY, &p);
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
        if e.ip != 0 {
            self.pools.free(Ipv4Addr::from(e.ip));
        }
        if e.prefix6 != 0 {
            if e.ipv6_up {
                self.fib.push(FibUpdate::Remove6 {
                    idx,
                    prefix: e.prefix6,
                });
            }
            self.pools6.free(Prefix64(e.prefix6));
        }
        if e.half_open.is_some() {
            self.half_open.leave(&e.key);
        }
        if let Some(at) = self.timer_at.get_mut(idx as usize) {
            *at = u64::MAX;
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
            match self.timer_at.get_mut(idx as usize) {
                // The slot's live entry: it fires; poll_session schedules the next.
                Some(at) if *at == t => *at = u64::MAX,
                // Superseded by an earlier entry, or the session is gone.
                _ => continue,
            }
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
        if e.half_open.is_some_and(|d| d <= now) && e.link.phase != Phase::Aaa {
            // Not in the Network phase in time (RFC 1661 §3.2): a stalled or spoofed
            // setup gives its slot back.
            self.stats.half_open_expired += 1;
            self.terminate(idx, radius::terminate_cause::NAS_REQUEST, now);
            return;
        }
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
                Event::AcctDropped {
                    reason,
                    session_id,
                    user,
                    status,
                    age_ms,
                } => {
                    let what = match status {
                        1 => "Start",
                        2 => "Stop",
                        3 => "Interim-Update",
                        _ => "record",
                    };
                    let why = match reason {
                        radius::AcctDrop::QueueFull => alloc::format!(
                            "accounting queue full ({} records, radius.acct_queue_limit)",
                            self.radius.as_ref().map_or(0, |r| r.acct_outstanding())
                        ),
                        radius::AcctDrop::MaxAge => alloc::format!(
                            "not acknowledged after {} s (radius.acct_max_age_s)",
                            age_ms / 1000
                        ),
                        radius::AcctDrop::Unencodable => {
                            String::from("cannot be encoded (too large, or no accounting server)")
                        }
                    };
                    self.notices.push(alloc::format!(
                        "accounting {what} dropped: {why}: Acct-Session-Id {session_id:?} User-Name {:?}",
                        String::from_utf8_lossy(&user)
                    ));
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

    /// Log lines (accounting records refused or given up, naming the session).
    pub fn take_notices(&mut self) -> Vec<String> {
        core::mem::take(&mut self.notices)
    }

    /// Accounting journal operations to write before the datagrams of
    /// [`ControlPlane::take_radius_tx`] go out (only with `radius.acct_journal`).
    pub fn take_acct_journal(&mut self) -> Vec<radius::JournalOp> {
        self.radius
            .as_mut()
            .map(|r| r.take_journal())
            .unwrap_or_default()
    }

    /// Queue accounting records read back from the journal after a restart: `(id,
    /// age ms, request)`.
    pub fn restore_acct(&mut self, records: Vec<(u64, u64, radius::Request)>, now: u64) {
        if let Some(r) = self.radius.as_mut() {
            for (id, age, req) in records {
                r.restore_acct(id, age, req, now);
            }
        }
        self.poll_radius(now);
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
        if self.dynauth_secret.0.is_empty() {
            // Never answer with an empty secret (config validation refuses it too).
            self.stats.dynauth_rejected += 1;
            return None;
        }
        let Some(d) = DynAuth::parse(bytes, &self.dynauth_secret.0) else {
            self.stats.dynauth_rejected += 1;
            return None;
        };
        let Some(idx) = self.find(&d) else {
            self.stats.dynauth_rejected += 1;
            return Some(d.respond(
                &self.dynauth_secret.0,
                Some(radius::error_cause::SESSION_NOT_FOUND),
            ));
        };
        if d.disconnect {
            self.stats.disconnect += 1;
            self.terminate(idx, radius::terminate_cause::ADMIN_RESET, now);
            return Some(d.respond(&self.dynauth_secret.0, None));
        }
        let Some(rate) = d.reply.rate else {
            self.stats.dynauth_rejected += 1;
            return Some(d.respond(
                &self.dynauth_secret.0,
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
        Some(d.respond(&self.dynauth_secret.0, None))
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
    use crate::config::UserConfig;
    use crate::lcp::AuthProto;
    use alloc::string::ToString;
    // The subscriber emulator (a dev-dependency) links the non-test copy of this crate:
    // its parameter types come from `emu`; frames, phases and addresses cross as data.
    use pktgen::subscribers::client::params as emu;
    use pktgen::subscribers::client::{ClientParams, ClientPhase, Subscriber};

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
        let auth = match auth {
            AuthProto::Pap => emu::AuthProto::Pap,
            AuthProto::Chap => emu::AuthProto::Chap,
        };
        Subscriber::new(ClientParams {
            mac: [2, 0, 0, (i >> 16) as u8, (i >> 8) as u8, i as u8],
            vlans: emu::Vlans {
                svlan: 100 + (i % 3) as u16,
                cvlan: (i % 4000) as u16 + 1,
            },
            user: user.as_bytes().to_vec(),
            password: pw.as_bytes().to_vec(),
            accept_auth: [Some(auth), None],
            service_name: Vec::new(),
            host_uniq: Some(i.to_be_bytes().to_vec()),
            max_payload: Some(1500),
            timers: emu::Timers::default(),
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
                    password: "pw".into(),
                    ip: None,
                    rate: Some("1M/5M".to_string())
                },
                UserConfig {
                    name: "bob".to_string(),
                    password: "pw2".into(),
                    ip: Some(core::net::Ipv4Addr::new(100, 64, 9, 9)),
                    rate: None
                },
            ],
            ..Config::default()
        }
    }

    #[test]
    fn control_stats_fields_name_every_counter() {
        // Each field a distinct value: a field left out of `fields()` (or listed
        // twice) shows up as a missing or repeated value.
        let s = ControlStats {
            sessions_created: 1,
            sessions_up: 2,
            sessions_ended: 3,
            auth_accept: 4,
            auth_reject: 5,
            aaa_timeout: 6,
            malformed: 7,
            no_session: 8,
            pool_exhausted: 9,
            table_full: 10,
            coa: 11,
            disconnect: 12,
            dynauth_rejected: 13,
            pool6_exhausted: 14,
            ra_sent: 15,
            rs_received: 16,
            rs_rate_limited: 17,
            na_sent: 18,
            echo6_replies: 19,
            ipv6_dropped: 20,
            not_for_us: 21,
            half_open_mac: 22,
            half_open_line: 23,
            half_open_global: 24,
            half_open_expired: 25,
            framed_ip_invalid: 26,
            framed_ip_in_use: 27,
            framed_ipv6_refused: 28,
        };
        let dbg = alloc::format!("{s:?}");
        let mut seen: Vec<u64> = s.fields().iter().map(|f| f.1).collect();
        for (name, v) in s.fields() {
            assert!(
                dbg.contains(&alloc::format!("{name}: {v},"))
                    || dbg.contains(&alloc::format!("{name}: {v} }}")),
                "{name}"
            );
        }
        seen.sort_unstable();
        assert_eq!(seen, (1..=28).collect::<Vec<u64>>());
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
            prefix: "2001:db8:100::/40".parse().unwrap(),
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
            prefix: "2001:db8:100::/40".parse().unwrap(),
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
        let p0 = Prefix64(prefixes[0]).to_string();
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
        let mut b = dataplane::proto::radius::Builder::new(
            dataplane::proto::radius::code::DISCONNECT_REQUEST,
            1,
            [0; 16],
        );
        b.attr(
            dataplane::proto::radius::attr::FRAMED_IPV6_PREFIX,
            &radius::ipv6_prefix_value(u128::from(prefixes[1]) << 64, 64),
        );
        let dm = b.clone().finish_request_md5(b"").unwrap();
        // No CoA secret configured: never answered, even when signed with "".
        assert_eq!(c.dynauth(&dm, 3100), None);
        assert_eq!(c.session_count(), 2);
        c.dynauth_secret = radius::Key(b"k".to_vec());
        let dm = b.finish_request_md5(b"k").unwrap();
        let ack = c.dynauth(&dm, 3100).expect("answered");
        assert_eq!(ack[0], dataplane::proto::radius::code::DISCONNECT_ACK);
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

    /// A subscriber at `mac` on line (port 0, `vlans`) sends PADI and, on the PADO,
    /// a PADR; it never answers anything after that (a spoofed setup).
    fn padr_only(c: &mut ControlPlane, mac: [u8; 6], vlans: Vlans, hu: &[u8], now: u64) {
        let mut s = Subscriber::new(ClientParams {
            mac,
            vlans: emu::Vlans {
                svlan: vlans.svlan,
                cvlan: vlans.cvlan,
            },
            user: b"x".to_vec(),
            password: b"y".to_vec(),
            accept_auth: [Some(emu::AuthProto::Pap), None],
            service_name: Vec::new(),
            host_uniq: Some(hu.to_vec()),
            max_payload: None,
            timers: emu::Timers::default(),
            ipv6cp: false,
            magic: 1,
            discovery_tries: 1,
        });
        let mut up = Vec::new();
        s.start(now, &mut up);
        for f in up.drain(..) {
            c.input(0, &f, now);
        }
        for (_, f) in c.take_tx() {
            s.input(&f, now, &mut up);
        }
        for f in up.drain(..) {
            c.input(0, &f, now);
        }
        c.take_tx();
    }

    /// Issue 20 item 5: 376 spoofed PADRs filled a 256-slot table and real
    /// subscribers got `table_full` for about 10 s.
    #[test]
    fn spoofed_padr_flood_does_not_lock_out_real_subscribers() {
        let cfg = Config {
            half_open_max: 128,
            ..cfg_with_users(AuthProto::Pap)
        };
        let mut c = ControlPlane::new(
            &cfg,
            256,
            SessionCounters::new(256),
            Rng::from_seed([9; 32]),
        )
        .unwrap();
        let mut rng = Rng::from_seed([4; 32]);
        let line = Vlans { svlan: 7, cvlan: 7 };
        for _ in 0..1000 {
            let mut mac = [0u8; 6];
            rng.fill(&mut mac);
            mac[0] = (mac[0] & 0xfe) | 2;
            padr_only(&mut c, mac, line, &mac, 0);
        }
        assert_eq!(c.half_open_count(), 32, "per-line limit");
        assert!(c.stats.half_open_line >= 900, "{:?}", c.stats);
        assert_eq!(c.stats.table_full, 0);
        // A real subscriber on its own line comes up at once.
        let mut subs = alloc::vec![sub(1, "alice", "pw", AuthProto::Pap)];
        let mut up = Vec::new();
        subs[0].start(10, &mut up);
        run(&mut c, &mut subs, 10, up);
        assert_eq!(subs[0].phase, ClientPhase::Up);
        assert_eq!(
            c.half_open_count(),
            32,
            "the real session is no longer half-open"
        );
        // Many MACs per line, many lines: the global limit holds.
        for i in 0..400u32 {
            let mac = [2, 1, 0, 0, (i >> 8) as u8, i as u8];
            let vlans = Vlans {
                svlan: 8,
                cvlan: 1 + (i / 2) as u16,
            };
            padr_only(&mut c, mac, vlans, &mac, 20);
        }
        assert_eq!(c.half_open_count(), 128);
        assert!(c.stats.half_open_global > 0);
        // Per MAC: Host-Uniq varies, the MAC stays.
        let mut c2 = cp(&cfg_with_users(AuthProto::Pap));
        for i in 0..10u32 {
            // Same MAC and line; a new Host-Uniq per attempt.
            let (mac, line) = ([2, 0, 0, 0, 0, 3], Vlans { svlan: 1, cvlan: 2 });
            padr_only(&mut c2, mac, line, &i.to_be_bytes(), u64::from(i) * 150);
        }
        assert_eq!(c2.half_open_count(), 4);
        assert_eq!(c2.stats.half_open_mac, 6);
        // Half-open sessions expire after half_open_timeout_s; the real one stays.
        c.poll(5_100);
        c.poll(5_200);
        assert_eq!(c.half_open_count(), 0);
        assert_eq!(c.session_count(), 1);
        assert_eq!(c.stats.half_open_expired, 128);
    }

    /// Issue 20 item 11: a PADI sent unicast to another MAC was answered.
    #[test]
    fn frames_for_another_mac_are_ignored() {
        let mut c = cp(&cfg_with_users(AuthProto::Pap));
        let mut s = sub(5, "alice", "pw", AuthProto::Pap);
        let mut up = Vec::new();
        s.start(0, &mut up);
        let mut other = up[0].clone();
        assert_eq!(&other[..6], &[0xff; 6], "a PADI is broadcast");
        other[..6].copy_from_slice(&[2, 0x99, 0, 0, 0, 1]);
        c.input(0, &other, 0);
        assert!(c.take_tx().is_empty());
        assert_eq!(c.stats.not_for_us, 1);
        assert_eq!(c.discovery_stats().padi, 0);
        // To our MAC or broadcast: answered.
        c.input(0, &up[0], 0);
        assert_eq!(c.take_tx().len(), 1);
        let mut ours = up[0].clone();
        ours[..6].copy_from_slice(&c.mac());
        c.input(0, &ours, 0);
        assert_eq!(c.take_tx().len(), 1);
        // A session frame broadcast or to another host is not ours either.
        run(&mut c, core::slice::from_mut(&mut s), 0, up);
        assert_eq!(s.phase, ClientPhase::Up);
        let mut echo = s.session_frame(&[0xc0, 0x21, 9, 1, 0, 8, 0, 0, 0, 1]);
        echo[..6].copy_from_slice(&[0xff; 6]);
        c.input(0, &echo, 1);
        assert!(c.take_tx().is_empty());
        assert_eq!(c.stats.not_for_us, 2);
    }

    /// Issue 20 item 2: two sessions both got 8.8.4.4 (a fixed address outside every
    /// pool), and 0.0.0.0 or the BNG's own gateway were accepted.
    #[test]
    fn fixed_address_held_once_and_martians_reject_the_session() {
        let mut c = cp(&cfg_with_users(AuthProto::Pap));
        for (name, ip) in [("carol", 0x0808_0404), ("zero", 0), ("gw", 0x6440_0001)] {
            c.users.insert(
                name.as_bytes().to_vec(),
                LocalUser {
                    password: b"pw".to_vec(),
                    ip: Some(ip),
                    rate: None,
                },
            );
        }
        let mut subs = alloc::vec![
            sub(1, "carol", "pw", AuthProto::Pap),
            sub(2, "carol", "pw", AuthProto::Pap),
            sub(3, "zero", "pw", AuthProto::Pap),
            sub(4, "gw", "pw", AuthProto::Pap),
        ];
        let mut up = Vec::new();
        for s in subs.iter_mut() {
            s.start(0, &mut up);
        }
        run(&mut c, &mut subs, 0, up);
        let up_ips: Vec<u32> = subs
            .iter()
            .filter(|s| s.phase == ClientPhase::Up)
            .map(|s| s.ip)
            .collect();
        assert_eq!(
            up_ips,
            [0x0808_0404],
            "8.8.4.4 once; 0.0.0.0 and the gateway never"
        );
        assert_eq!(c.stats.framed_ip_in_use, 1);
        assert_eq!(c.stats.framed_ip_invalid, 2);
        // Hang up: the address is free for the next session.
        let mut up = Vec::new();
        subs[0].terminate(&mut up);
        run(&mut c, &mut subs, 10, up);
        let mut again = alloc::vec![sub(9, "carol", "pw", AuthProto::Pap)];
        let mut up = Vec::new();
        again[0].start(20, &mut up);
        run(&mut c, &mut again, 20, up);
        assert_eq!(again[0].phase, ClientPhase::Up);
        assert_eq!(again[0].ip, 0x0808_0404);
    }

    /// Issue 20 item 10: memory grew under session churn (`setup_ms` only drained by
    /// the fuzz harness; superseded timer entries piled up in the heap).
    #[test]
    fn memory_stays_bounded_under_churn() {
        let slots = 64;
        let mut c = ControlPlane::new(
            &cfg_with_users(AuthProto::Pap),
            slots,
            SessionCounters::new(slots as usize),
            Rng::from_seed([5; 32]),
        )
        .unwrap();
        let mut now = 0;
        let cycle = |c: &mut ControlPlane, i: u32, now: &mut u64| {
            let mut subs = alloc::vec![sub(i, "alice", "pw", AuthProto::Pap)];
            let mut up = Vec::new();
            subs[0].start(*now, &mut up);
            run(c, &mut subs, *now, up);
            assert_eq!(subs[0].phase, ClientPhase::Up, "cycle {i}");
            *now += 5;
            let mut up = Vec::new();
            subs[0].terminate(&mut up);
            run(c, &mut subs, *now, up);
            *now += 5;
            c.take_fib();
        };
        for i in 0..300 {
            cycle(&mut c, i, &mut now);
        }
        let warm = c.memory();
        for i in 300..3000 {
            cycle(&mut c, i, &mut now);
        }
        let m = c.memory();
        assert_eq!(c.session_count(), 0);
        assert!(m.timers <= 4 * slots as usize + 128, "{m:?}");
        assert!(m.setup_ms <= SETUP_RING.next_power_of_two(), "{m:?}");
        for (what, a, b) in [
            ("slots", warm.slots, m.slots),
            ("free", warm.free, m.free),
            ("by_key", warm.by_key, m.by_key),
            ("by_host", warm.by_host, m.by_host),
            ("half_open", warm.half_open, m.half_open),
            ("statics4", warm.statics4, m.statics4),
            ("pools6", warm.pools6, m.pools6),
        ] {
            assert_eq!(a, b, "{what} grew under churn: {warm:?} -> {m:?}");
        }
        assert!(m.largest() <= SETUP_RING.next_power_of_two(), "{m:?}");
        assert_eq!(c.take_setup_ms().len(), SETUP_RING);
    }

    /// Issue 20 item 6: passwords (the CHAP secrets) appeared in `Debug` output.
    #[test]
    fn debug_output_redacts_passwords() {
        let cfg = cfg_with_users(AuthProto::Pap);
        let mut c = cp(&cfg);
        let mut subs = alloc::vec![sub(1, "alice", "s3cr3t-pw", AuthProto::Pap)];
        c.users.insert(
            b"alice".to_vec(),
            LocalUser {
                password: b"s3cr3t-pw".to_vec(),
                ip: None,
                rate: None,
            },
        );
        let mut up = Vec::new();
        subs[0].start(0, &mut up);
        run(&mut c, &mut subs, 0, up);
        assert_eq!(subs[0].phase, ClientPhase::Up);
        let creds = crate::auth::Credentials::Pap {
            user: b"alice".to_vec(),
            password: b"s3cr3t-pw".to_vec(),
        };
        for text in [
            alloc::format!("{cfg:?}"),
            alloc::format!("{c:?}"),
            alloc::format!("{creds:?}"),
            alloc::format!("{:?}", subs[0]),
        ] {
            assert!(!text.contains("s3cr3t"), "{text}");
            assert!(!text.contains("\"pw\""), "{text}");
            assert!(!text.contains("[115, 51, 99"), "{text}");
            assert!(text.contains("<redacted>"), "{text}");
        }
    }

    /// Issue 20 item 7: `max_sessions` 0 was accepted and 2^32 - 1 tried to allocate
    /// 137 GB.
    #[test]
    fn max_sessions_outside_its_limit_is_refused() {
        let cfg = Config::default();
        for n in [0, crate::config::MAX_SESSIONS + 1, u32::MAX] {
            let e = ControlPlane::new(&cfg, n, SessionCounters::new(1), Rng::from_seed([1; 32]))
                .unwrap_err();
            assert!(e.0.contains("max sessions"), "{e}");
        }
    }

    /// The half-open timeout does not cut a session short while AAA decides (the
    /// RADIUS client bounds that with its own timeouts); a stalled LCP is cut.
    #[test]
    fn half_open_timeout_spares_sessions_waiting_for_aaa() {
        let cfg = Config {
            radius: Some(crate::config::RadiusConfig {
                auth: alloc::vec![crate::config::ServerConfig {
                    addr: "127.0.0.1:1812".parse().unwrap(),
                    secret: "s".into(),
                }],
                timeout_ms: 4000,
                tries: 2,
                ..Default::default()
            }),
            ..cfg_with_users(AuthProto::Pap)
        };
        let mut c = cp(&cfg);
        let mut subs = alloc::vec![sub(1, "alice", "pw", AuthProto::Pap)];
        let mut up = Vec::new();
        subs[0].start(0, &mut up);
        run(&mut c, &mut subs, 0, up);
        assert_eq!(c.sessions()[0].phase, "aaa");
        assert_eq!(c.half_open_count(), 1);
        // No RADIUS answer: past half_open_timeout_s the session is still there.
        for t in [5_000, 6_000, 7_000] {
            c.poll(t);
        }
        assert_eq!(c.session_count(), 1);
        assert_eq!(c.stats.half_open_expired, 0);
        // The RADIUS client gives up: rejected, slot and half-open count returned.
        for t in (8_000..=30_000).step_by(1000) {
            c.poll(t);
        }
        assert_eq!(c.stats.aaa_timeout, 1);
        assert_eq!(c.session_count(), 0);
        assert_eq!(c.half_open_count(), 0);
        // A subscriber that stalls in LCP is cut at half_open_timeout_s.
        let mut c = cp(&cfg_with_users(AuthProto::Pap));
        padr_only(&mut c, [2, 0, 0, 0, 0, 9], Vlans::default(), b"h", 0);
        assert_eq!(c.session_count(), 1);
        c.poll(4_999);
        assert_eq!(c.session_count(), 1);
        c.poll(5_000);
        assert_eq!(c.session_count(), 0);
        assert_eq!(c.stats.half_open_expired, 1);
    }

    /// Accounting records survive a restart: a session's Start and Stop are not
    /// acknowledged, the control plane is dropped, a new one replays them from the
    /// journal with their Acct-Delay-Time, and once acknowledged the journal is empty.
    #[cfg(feature = "std")]
    #[test]
    fn accounting_journal_replayed_after_restart() {
        use crate::acct_journal::AcctJournal;
        use crate::config::{RadiusConfig, ServerConfig};
        use dataplane::proto::radius::{attr, code, Builder, Packet};
        let dir =
            std::env::temp_dir().join(alloc::format!("vbng-cp-journal-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("acct.journal");
        let srv = |a: &str| ServerConfig {
            addr: a.parse().unwrap(),
            secret: "s".into(),
        };
        let mut cfg = cfg_with_users(AuthProto::Pap);
        cfg.ipv6cp = false;
        cfg.radius = Some(RadiusConfig {
            auth: alloc::vec![srv("127.0.0.1:1812")],
            acct: alloc::vec![srv("127.0.0.1:1813")],
            acct_journal: Some(path.display().to_string()),
            ..RadiusConfig::default()
        });
        let (mut j, r) = AcctJournal::open(&path).unwrap();
        assert!(r.is_empty());
        let mut c = cp(&cfg);
        let mut subs = alloc::vec![sub(1, "alice", "pw", AuthProto::Pap)];
        let mut up = Vec::new();
        subs[0].start(0, &mut up);
        run(&mut c, &mut subs, 0, up);
        let tx = c.take_radius_tx();
        let ar = Packet::new_checked(&tx[0].bytes).unwrap();
        assert_eq!(ar.code(), code::ACCESS_REQUEST);
        let mut b = Builder::new(code::ACCESS_ACCEPT, ar.id(), [0; 16]);
        b.message_authenticator();
        let accept = b.finish_response(b"s", &ar.authenticator()).unwrap();
        c.radius_input(tx[0].channel, tx[0].to, &accept, 10);
        run(&mut c, &mut subs, 10, Vec::new());
        assert_eq!(subs[0].phase, ClientPhase::Up);
        let sid = c.sessions()[0].acct_id.clone();
        let mut up = Vec::new();
        subs[0].terminate(&mut up);
        run(&mut c, &mut subs, 20, up);
        assert_eq!(c.session_count(), 0);
        // Written before anything is sent; the RADIUS server never answers.
        j.write(&c.take_acct_journal()).unwrap();
        let sent = c.take_radius_tx();
        assert_eq!(sent.len(), 2, "Start and Stop sent once");
        drop(c);
        drop(j);
        std::thread::sleep(std::time::Duration::from_millis(1100));
        // "vbng restarted".
        let (mut j, restored) = AcctJournal::open(&path).unwrap();
        assert_eq!(restored.len(), 2);
        let mut c = cp(&cfg);
        c.restore_acct(restored, 0);
        let tx = c.take_radius_tx();
        assert_eq!(tx.len(), 2);
        let mut status = Vec::new();
        for t in &tx {
            let p = Packet::new_checked(&t.bytes).unwrap();
            assert_eq!(p.code(), code::ACCOUNTING_REQUEST);
            assert_eq!(t.to.port(), 1813);
            assert!(dataplane::proto::radius::verify_request_md5(&p, b"s"));
            assert_eq!(p.attr(attr::ACCT_SESSION_ID), Some(sid.as_bytes()));
            assert!(
                p.attr_u32(attr::ACCT_DELAY_TIME).unwrap() >= 1,
                "downtime counted"
            );
            status.push(p.attr_u32(attr::ACCT_STATUS_TYPE).unwrap());
            let b = Builder::new(code::ACCOUNTING_RESPONSE, p.id(), [0; 16]);
            let resp = b.finish_response(b"s", &p.authenticator()).unwrap();
            c.radius_input(t.channel, t.to, &resp, 5);
        }
        assert_eq!(status, [1, 2], "Start then Stop, in order");
        assert_eq!(c.radius_stats().unwrap().acct_acked, 2);
        j.write(&c.take_acct_journal()).unwrap();
        assert_eq!(j.live(), 0);
        drop(j);
        assert!(AcctJournal::open(&path).unwrap().1.is_empty());
        let _ = std::fs::remove_dir_all(&dir);
    }

    /// A record refused by the queue bound and one given up by the age policy are
    /// counted and logged with their Acct-Session-Id and User-Name.
    #[test]
    fn accounting_drops_counted_and_logged_with_the_session() {
        use crate::config::{RadiusConfig, ServerConfig};
        let srv = |a: &str| ServerConfig {
            addr: a.parse().unwrap(),
            secret: "s".into(),
        };
        let mut cfg = cfg_with_users(AuthProto::Pap);
        cfg.radius = Some(RadiusConfig {
            auth: alloc::vec![srv("127.0.0.1:1812")],
            acct: alloc::vec![srv("127.0.0.1:1813")],
            timeout_ms: 100,
            acct_queue_limit: 1,
            acct_max_age_s: 2,
            ..RadiusConfig::default()
        });
        let mut c = cp(&cfg);
        let rec = |sid: &str| AcctRecord {
            session_id: sid.to_string(),
            user: b"alice".to_vec(),
            ..AcctRecord::default()
        };
        for sid in ["0000000100000001", "0000000200000002"] {
            let req = radius::accounting_request(&LineInfo::default(), AcctStatus::Stop, &rec(sid));
            c.radius.as_mut().unwrap().submit_acct(req, 0);
        }
        c.poll(0);
        let n = c.take_notices();
        assert_eq!(n.len(), 1, "{n:?}");
        assert!(
            n[0].contains("Stop dropped: accounting queue full")
                && n[0].contains("\"0000000200000002\"")
                && n[0].contains("\"alice\""),
            "{n:?}"
        );
        for t in (0..3_000).step_by(50) {
            c.poll(t);
        }
        let n = c.take_notices();
        assert!(
            n.len() == 1
                && n[0].contains("not acknowledged after 2 s")
                && n[0].contains("\"0000000100000001\""),
            "{n:?}"
        );
        let st = c.radius_stats().unwrap();
        assert_eq!((st.acct_overflow, st.acct_given_up), (1, 1));
    }
}
