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

// The AAA side (RADIUS or local users, accounting, CoA/Disconnect) and IPv6 (RA,
// ND, /64s) of the control plane: more `impl ControlPlane` blocks.
mod aaa;
pub mod cups;
mod dhcp6;
mod ipoe;
mod ipoe6;
pub use ipoe::IpoeRestored;
mod ipv6;
mod slots;

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
        /// Subscriber address; 0 while IPCP is not open (an IPv6-only session:
        /// upstream IPv4 is dropped, nothing is routed downstream).
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
    /// Stop routing a session's IPv4 address; the session stays (IPCP went down while
    /// IPv6CP runs). An [`FibUpdate::Add`] for the session brings IPv4 back.
    Down4 {
        /// Session index.
        idx: u32,
        /// The address no longer routed.
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
    /// Route one address to a session (an IPoE subscriber's DHCPv6 IA_NA /128).
    AddAddr6 {
        /// Session index.
        idx: u32,
        /// The address.
        addr: u128,
        /// Our interface identifier on the access link (`fe80::<router_iid>` sends
        /// ICMPv6 errors to the subscriber).
        router_iid: u64,
    },
    /// Stop routing a session's IA_NA address.
    RemoveAddr6 {
        /// Session index.
        idx: u32,
        /// The address.
        addr: u128,
    },
    /// Route a delegated prefix (DHCPv6 IA_PD) to a session.
    AddPd {
        /// Session index.
        idx: u32,
        /// Upper 64 bits of the prefix.
        prefix: u64,
        /// Its length (the fast path routes one configured length).
        len: u8,
    },
    /// Stop routing a session's delegated prefix.
    RemovePd {
        /// Session index.
        idx: u32,
        /// Upper 64 bits of the prefix.
        prefix: u64,
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
/// packets) and per worker.
///
/// Each worker counts in a block of slots of its own ([`SessionCounters::up`] and
/// [`SessionCounters::down`] take the worker's number) and readers add the blocks
/// up. A session is written by the worker that owns it (`crate::steer`), but
/// sessions of different workers sit side by side in the table: with one shared
/// block, the counter increment was the hottest instruction of
/// `bench bng-down --workers 2` (39 % of the fast path's samples in `perf`) and
/// two workers reached 0.7–1.3× one worker's rate. Padding each slot to a cache
/// line did not help (likely the adjacent-line prefetcher, which pairs 64-byte
/// lines); with a block per worker two workers reach 1.79× one worker's rate
/// (median of 5 pairs, 1.43–2.05; see `benches/RESULTS.md`, issue 14).
/// Only its own worker writes a block, so an increment is a load and a store, not
/// a locked read-modify-write.
#[derive(Debug)]
pub struct SessionCounters {
    v: Vec<[AtomicU64; 4]>,
    slots: usize,
    workers: usize,
}

impl SessionCounters {
    /// Counters for `n` session slots and one worker.
    pub fn new(n: usize) -> Arc<SessionCounters> {
        SessionCounters::with_workers(n, 1)
    }
    /// Counters for `n` session slots counted by `workers` workers.
    pub fn with_workers(n: usize, workers: usize) -> Arc<SessionCounters> {
        let workers = workers.max(1);
        Arc::new(SessionCounters {
            v: (0..n * workers).map(|_| Default::default()).collect(),
            slots: n,
            workers,
        })
    }
    /// Slots.
    pub fn capacity(&self) -> usize {
        self.slots
    }
    /// Workers counting.
    pub fn workers(&self) -> usize {
        self.workers
    }
    #[inline(always)]
    fn own(&self, worker: u16, idx: u32) -> Option<&[AtomicU64; 4]> {
        let (w, i) = (usize::from(worker), idx as usize);
        if i < self.slots && w < self.workers {
            self.v.get(w * self.slots + i)
        } else {
            None
        }
    }
    /// Worker `worker` counts an upstream packet of `bytes` for slot `idx`.
    #[inline(always)]
    pub fn up(&self, worker: u16, idx: u32, bytes: u64) {
        if let Some(s) = self.own(worker, idx) {
            bump(&s[0], bytes);
            bump(&s[1], 1);
        }
    }
    /// Worker `worker` counts a downstream packet.
    #[inline(always)]
    pub fn down(&self, worker: u16, idx: u32, bytes: u64) {
        if let Some(s) = self.own(worker, idx) {
            bump(&s[2], bytes);
            bump(&s[3], 1);
        }
    }
    /// Asks the CPU to fetch worker `worker`'s counters of slot `idx` (a hint:
    /// the fast path prefetches a few packets ahead).
    #[inline(always)]
    pub fn prefetch(&self, worker: u16, idx: u32) {
        if let Some(s) = self.own(worker, idx) {
            dataplane::prefetch(s.as_ptr().cast());
        }
    }
    /// (up octets, up packets, down octets, down packets), every worker's.
    pub fn get(&self, idx: u32) -> (u64, u64, u64, u64) {
        let mut t = [0u64; 4];
        for w in 0..self.workers {
            if let Some(s) = self.own(w as u16, idx) {
                for (x, a) in t.iter_mut().zip(s) {
                    *x = x.wrapping_add(a.load(Ordering::Relaxed));
                }
            }
        }
        (t[0], t[1], t[2], t[3])
    }
    /// Sets slot `idx` to absolute values (up octets, up packets, down octets, down
    /// packets), as a user plane's usage report counts them.
    pub fn set(&self, idx: u32, v: (u64, u64, u64, u64)) {
        for w in 0..self.workers {
            if let Some(s) = self.own(w as u16, idx) {
                let v = if w == 0 { v } else { (0, 0, 0, 0) };
                s[0].store(v.0, Ordering::Relaxed);
                s[1].store(v.1, Ordering::Relaxed);
                s[2].store(v.2, Ordering::Relaxed);
                s[3].store(v.3, Ordering::Relaxed);
            }
        }
    }
    /// Zero a slot (session start).
    pub fn reset(&self, idx: u32) {
        self.set(idx, (0, 0, 0, 0));
    }
}

/// Adds `n` to a counter only its worker writes (no locked instruction).
#[inline(always)]
fn bump(a: &AtomicU64, n: u64) {
    a.store(a.load(Ordering::Relaxed).wrapping_add(n), Ordering::Relaxed);
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
    /// PPPoE sessions given an address outside their worker's share of the pool
    /// (that share exhausted, several workers): their upstream traffic is handed
    /// between workers.
    pub off_share: u64,
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
    /// Established sessions cleared because their host started a new discovery with
    /// the same MAC, VLANs and Host-Uniq (a CPE that restarted without a PADT,
    /// RFC 2516 §5.4): the old session gets its Accounting-Stop (Lost-Carrier) and the
    /// new PADR a new session id.
    pub stale_replaced: u64,
    /// IPoE clients without the option 82 sub-option their user name is made of.
    pub ipoe_no_username: u64,
    /// ARP replies sent for the IPoE gateway and subnet (proxy ARP).
    pub ipoe_arp_replies: u64,
    /// ARP on the access port not answered (probes, gratuitous, replies, outside the
    /// IPoE subnet, sender MAC not the frame's).
    pub ipoe_arp_ignored: u64,
    /// DHCP messages relayed to the servers (one count per message, not per server).
    pub relay_to_server: u64,
    /// Server replies relayed to clients.
    pub relay_to_client: u64,
    /// Relay drops: client messages with option 82 on an untrusted line, replies
    /// without our option 82 or for no session, no route to the servers yet.
    pub relay_dropped: u64,
    /// Delegated-IPv6-Prefix or Framed-IPv6-Address from RADIUS not honoured (not
    /// the delegated length, martian, no `[dhcp6]`, too many lines): the pools
    /// answer the subscriber's DHCPv6 instead.
    pub dhcp6_fixed_refused: u64,
}

impl ControlStats {
    /// Every counter by name (the field names), for reports and tables.
    pub fn fields(&self) -> [(&'static str, u64); 37] {
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
            ("off_share", self.off_share),
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
            ("stale_replaced", self.stale_replaced),
            ("ipoe_no_username", self.ipoe_no_username),
            ("ipoe_arp_replies", self.ipoe_arp_replies),
            ("ipoe_arp_ignored", self.ipoe_arp_ignored),
            ("relay_to_server", self.relay_to_server),
            ("relay_to_client", self.relay_to_client),
            ("relay_dropped", self.relay_dropped),
            ("dhcp6_fixed_refused", self.dhcp6_fixed_refused),
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

/// A subscriber: the core every access protocol shares (identity, addresses, rate,
/// AAA reply, timers, accounting, fast-path state) plus [`Access`], what only its
/// access protocol knows.
#[derive(Debug, Clone)]
struct Entry {
    gen: u32,
    key: AccessKey,
    access: Access,
    user: Vec<u8>,
    ip: u32,
    /// The session's /64 (upper 64 bits; 0 = none).
    prefix6: u64,
    /// IPv6 open (IPv6CP): the /64 is installed in the fast path and announced.
    ipv6_up: bool,
    /// IPv4 open (IPCP, or a bound DHCP lease): the address is routed to the session
    /// in the fast path.
    ipv4_up: bool,
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
    /// The delegated prefix routed to the session (DHCPv6 IA_PD): upper 64 bits,
    /// length, and the server's binding.
    pd: Option<(u64, u8, crate::dhcp6::ClientKey)>,
    /// An IPoE subscriber's DHCPv6 IA_NA address routed to it, and the binding.
    addr6: Option<(u128, crate::dhcp6::ClientKey)>,
}

/// The access protocol's part of a subscriber.
#[derive(Debug, Clone)]
enum Access {
    /// PPP over Ethernet (RFC 2516). Boxed: an IPoE subscriber does not carry the
    /// room of a PPP link.
    Pppoe(alloc::boxed::Box<Ppp>),
    /// IP over Ethernet, addressed by DHCP (RFC 2131).
    Ipoe(Ipoe),
}

/// A PPPoE session's own state.
#[derive(Debug, Clone)]
struct Ppp {
    sid: u16,
    relay: Option<Vec<u8>>,
    link: PppSession,
    pending_creds: Option<Credentials>,
    /// The PADS frame, resent if the host retransmits its PADR (our PADS was lost).
    /// Cleared by the host's first session frame: from then on the host has our
    /// PADS, and a PADR with the same MAC, VLANs and Host-Uniq is a new discovery.
    pads: Option<Vec<u8>>,
    host_uniq: Vec<u8>,
    /// Half-open (before the Network phase): ended at this time unless waiting for
    /// AAA.
    half_open: Option<u64>,
}

/// An IPoE subscriber's own state.
#[derive(Debug, Clone)]
pub(super) struct Ipoe {
    /// When the DHCP lease runs out (ms); renewals move it.
    pub(super) lease_expires: u64,
    /// The access MTU (Ethernet: 1500).
    pub(super) mtu: u16,
    /// AAA accepted the subscriber.
    pub(super) authorized: bool,
    /// Until the lease is bound: ended at this time (the PPPoE half-open limits).
    pub(super) half_open: Option<u64>,
}

impl Entry {
    /// The PPPoE session id; 0 for IPoE (never a PPPoE session's, RFC 2516 §4).
    fn sid(&self) -> u16 {
        match &self.access {
            Access::Pppoe(p) => p.sid,
            Access::Ipoe(_) => 0,
        }
    }

    fn ppp(&self) -> Option<&Ppp> {
        match &self.access {
            Access::Pppoe(p) => Some(p),
            Access::Ipoe(_) => None,
        }
    }

    fn ppp_mut(&mut self) -> Option<&mut Ppp> {
        match &mut self.access {
            Access::Pppoe(p) => Some(p),
            Access::Ipoe(_) => None,
        }
    }

    /// The session's MTU: for PPP the smaller of the MRUs LCP agreed (RFC 1661
    /// §6.1), for IPoE the access link's.
    fn mtu(&self) -> u16 {
        match &self.access {
            Access::Pppoe(p) => p.link.lcp.neg.our_mru.min(p.link.lcp.neg.peer_mru),
            Access::Ipoe(i) => i.mtu,
        }
    }

    /// Whether the session waits for its AAA verdict.
    fn waiting_for_aaa(&self) -> bool {
        match &self.access {
            Access::Pppoe(p) => p.link.phase == Phase::Aaa,
            Access::Ipoe(i) => !i.authorized,
        }
    }

    /// The PPP phase, or "up" for IPoE.
    fn phase(&self) -> &'static str {
        match &self.access {
            Access::Pppoe(p) => p.link.phase.as_str(),
            Access::Ipoe(i) if i.authorized => "up",
            Access::Ipoe(_) => "aaa",
        }
    }
}

/// Router Advertisement settings (RFC 4861 §6.2.1).
#[derive(Debug, Clone)]
struct RaConfig {
    interval_ms: u64,
    router_lifetime_s: u16,
    valid_s: u32,
    preferred_s: u32,
    dns: Vec<core::net::Ipv6Addr>,
    managed: bool,
    other: bool,
}

impl RaConfig {
    /// What an RA announces: `prefix` (0 = no Prefix Information, IPoE), the link
    /// `mtu`, our link-layer address on Ethernet (`slla`), the rest as configured.
    fn params(&self, prefix: u64, mtu: u16, slla: Option<[u8; 6]>) -> crate::nd::RaParams {
        crate::nd::RaParams {
            prefix,
            router_lifetime_s: self.router_lifetime_s,
            valid_s: self.valid_s,
            preferred_s: self.preferred_s,
            mtu: u32::from(mtu),
            dns: self.dns.clone(),
            // RFC 8106 §5.1: at least MaxRtrAdvInterval; 3× is the suggested default.
            dns_lifetime_s: (self.interval_ms / 1000 * 3)
                .clamp(1, u64::from(u32::MAX))
                .try_into()
                .unwrap_or(u32::MAX),
            managed: self.managed,
            other: self.other,
            slla,
        }
    }
}

/// The control plane.
#[derive(Debug, Clone)]
pub struct ControlPlane {
    link: LinkParams,
    our_mac: [u8; 6],
    disc: Discovery,
    /// Boxed: an idle slot costs a pointer, not a whole entry (~840 bytes).
    slots: Vec<Option<alloc::boxed::Box<Entry>>>,
    /// Free slots, grouped by the worker whose sessions they are kept for.
    free: slots::FreeSlots,
    gen: u32,
    by_key: HashMap<(AccessKey, u16), u32>,
    by_host: HashMap<(AccessKey, Vec<u8>), u32>,
    next_sid: u16,
    /// Workers of the fast path ([`ControlPlane::set_workers`]): a PPPoE session's
    /// address comes from the share of the pool its session id steers to.
    workers: u16,
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
    /// IPoE subscribers and their DHCPv4 server (`[ipoe]`).
    ipoe: Option<ipoe::IpoeCtl>,
    /// The DHCPv6 server (`[dhcp6]`): prefix delegation over PPPoE.
    dhcp6: Option<dhcp6::Dhcp6Ctl>,
    /// The core side, for what the control plane itself sends there (the DHCP
    /// relay); set by [`ControlPlane::set_core`].
    core: Option<CoreSide>,
    /// Disaggregated: Accounting-Stops of installed sessions are held for the user
    /// plane's final usage report ([`ControlPlane::hold_stops`]).
    hold_stops: bool,
    /// The held Stops, in the order of their sessions' table removals.
    held: VecDeque<(u32, cups::HeldStop)>,
    /// Counters.
    pub stats: ControlStats,
    /// Draining (the management API's `drain` operation): PADI/PADR and the DHCP
    /// messages that would open an IPoE session are dropped unanswered (so the
    /// subscriber's client turns to another BNG); existing sessions stay.
    draining: bool,
    /// Session starts refused while draining.
    pub drain_refused: u64,
}

/// The core port as the control plane sees it: where frames it originates there go
/// (the DHCP relay's messages to the servers).
#[derive(Clone)]
pub struct CoreSide {
    /// Engine port number.
    pub port: u16,
    /// Our MAC on it.
    pub mac: [u8; 6],
    /// The next hop's MAC when it is static (`core_next_hop_mac`).
    pub next_hop: [u8; 6],
    /// The core link (`core_ip`, the gateway's ARP binding) when configured: its
    /// resolved gateway MAC is used instead of `next_hop`.
    pub link: Option<Arc<crate::corelink::CoreLink>>,
}

impl core::fmt::Debug for CoreSide {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("CoreSide")
            .field("port", &self.port)
            .field("link", &self.link.as_ref().map(|l| l.ip))
            .finish()
    }
}

impl CoreSide {
    /// The MAC to send to now: the resolved gateway, else the static next hop;
    /// `None` while a configured gateway is unresolved.
    pub fn next_hop_mac(&self) -> Option<[u8; 6]> {
        match &self.link {
            Some(l) if l.gateway.is_some() => l.gateway_mac(),
            _ => Some(self.next_hop),
        }
    }
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
    pub(super) fn mac(k: &AccessKey) -> (u16, [u8; 6]) {
        (k.port, k.mac)
    }
    pub(super) fn line(k: &AccessKey) -> (u16, Vlans) {
        (k.port, k.vlans)
    }

    /// Whether one more half-open session from `k` is allowed; if not, which limit.
    pub(super) fn admit(&self, k: &AccessKey, stats: &mut ControlStats) -> bool {
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

    pub(super) fn enter(&mut self, k: &AccessKey) {
        self.total += 1;
        *self.by_mac.entry(Self::mac(k)).or_insert(0) += 1;
        *self.by_line.entry(Self::line(k)).or_insert(0) += 1;
    }

    pub(super) fn leave(&mut self, k: &AccessKey) {
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
            managed: cfg.ra_managed,
            other: cfg.ra_other,
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
            draining: false,
            drain_refused: 0,
            link,
            our_mac,
            disc,
            slots: (0..n).map(|_| None).collect(),
            free: slots::FreeSlots::new(n, cfg.workers.max(1)),
            gen: u32::from_be_bytes(g),
            by_key: HashMap::with_capacity(n as usize),
            by_host: HashMap::with_capacity(n as usize),
            next_sid: 1,
            workers: cfg.workers.max(1),
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
            core: None,
            dhcp6: match &cfg.dhcp6 {
                Some(d) => Some(dhcp6::Dhcp6Ctl::new(d, our_mac)?),
                None => None,
            },
            ipoe: match &cfg.ipoe {
                Some(i) => Some(ipoe::IpoeCtl::new(i, cfg.core_ip.map(|n| n.addr))?),
                None => None,
            },
            hold_stops: false,
            held: VecDeque::new(),
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

    /// Replaces the local users (a management change). Sessions already up keep
    /// what they were given; new authentications see the new users. Checked first,
    /// applied only when every user is valid.
    pub fn set_users(&mut self, users: &[crate::config::UserConfig]) -> Result<(), ConfigError> {
        let old = core::mem::take(&mut self.users);
        match self.add_users(users) {
            Ok(()) => Ok(()),
            Err(e) => {
                self.users = old;
                Err(e)
            }
        }
    }

    /// The rate new sessions get when AAA names none (a management change; running
    /// sessions keep theirs).
    pub fn set_default_rate(&mut self, rate: (u64, u64)) {
        self.default_rate = rate;
    }

    /// The rate new sessions get when AAA names none.
    pub fn default_rate(&self) -> (u64, u64) {
        self.default_rate
    }

    /// Replaces the RADIUS servers (a management change; see
    /// [`radius::Client::set_servers`]: requests in flight move to the new servers).
    /// `false` when RADIUS is not configured (the client is made at start-up).
    pub fn set_radius_servers(
        &mut self,
        auth: &[crate::config::ServerConfig],
        acct: &[crate::config::ServerConfig],
        now: u64,
    ) -> bool {
        let conv = |v: &[crate::config::ServerConfig]| -> Vec<Server> {
            v.iter()
                .map(|s| Server {
                    addr: s.addr,
                    secret: s.secret.as_bytes().to_vec(),
                })
                .collect()
        };
        let Some(r) = self.radius.as_mut() else {
            return false;
        };
        r.set_servers(conv(auth), conv(acct), now);
        self.acct_enabled = !acct.is_empty();
        true
    }

    /// The RADIUS client's servers (authentication, accounting), empty without
    /// RADIUS.
    pub fn radius_servers(&self) -> (Vec<core::net::SocketAddr>, Vec<core::net::SocketAddr>) {
        match &self.radius {
            Some(r) => (
                r.config().auth.iter().map(|s| s.addr).collect(),
                r.config().acct.iter().map(|s| s.addr).collect(),
            ),
            None => (Vec::new(), Vec::new()),
        }
    }

    /// Changes session `idx`'s rate (as a CoA does): the fast path's policers at
    /// once. `false` when there is no such session.
    pub fn set_session_rate(&mut self, idx: u32, rate: (u64, u64)) -> bool {
        let Some(Some(e)) = self.slots.get_mut(idx as usize) else {
            return false;
        };
        e.rate = rate;
        if e.installed {
            self.fib.push(FibUpdate::Rate { idx, rate });
        }
        true
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

    /// Starts (`true`) or ends draining: see the `draining` field.
    pub fn set_draining(&mut self, on: bool) {
        self.draining = on;
    }

    /// Whether the vBNG is draining.
    pub fn draining(&self) -> bool {
        self.draining
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

    pub(super) fn frame(&self, key: &AccessKey, ethertype: EtherType, pppoe: &[u8]) -> Vec<u8> {
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

    /// Session `idx`'s PPPoE state, if it is a PPPoE session.
    fn ppp_mut(&mut self, idx: u32) -> Option<&mut Ppp> {
        self.slots
            .get_mut(idx as usize)
            .and_then(|s| s.as_mut())
            .and_then(|e| e.ppp_mut())
    }

    pub(super) fn send_ppp(&mut self, idx: u32, ppp: &[u8]) {
        let Some(Some(e)) = self.slots.get(idx as usize) else {
            return;
        };
        let (key, sid) = (e.key, e.sid());
        let mut p = Vec::with_capacity(PPPOE_HLEN + ppp.len());
        p.extend_from_slice(&[0x11, 0]);
        p.extend_from_slice(&sid.to_be_bytes());
        p.extend_from_slice(&(ppp.len() as u16).to_be_bytes());
        p.extend_from_slice(ppp);
        let f = self.frame(&key, EtherType::PPPOE_SESSION, &p);
        self.tx.push((key.port, f));
    }

    /// Where frames the control plane originates towards the core go (the vBNG's
    /// composition calls this; without it, the DHCP relay has no way out).
    pub fn set_core(&mut self, core: CoreSide) {
        self.core = Some(core);
    }

    /// Handle a frame punted from port `port` (the access port, or the core port for
    /// DHCP server replies to the relay).
    pub fn input(&mut self, port: u16, frame: &[u8], now: u64) {
        if self.core.as_ref().is_some_and(|c| c.port == port) {
            self.relay_from_core(frame, now);
            return;
        }
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
        let broadcast_ok = (eth.dst_addr.is_broadcast()
            && (eth.ethertype == EtherType::PPPOE_DISCOVERY
                || (self.ipoe.is_some()
                    && matches!(eth.ethertype, EtherType::IPV4 | EtherType::ARP))))
            // IPv6 multicast (RFC 2464 §7: 33:33 + the group's low 32 bits) on IPoE.
            || (eth.ethertype == EtherType::IPV6
                && eth.dst_addr.0[..2] == [0x33, 0x33]
                && self.ipoe6_enabled());
        if eth.dst_addr.0 != self.our_mac && !broadcast_ok {
            self.stats.not_for_us += 1;
            return;
        }
        match eth.ethertype {
            EtherType::PPPOE_DISCOVERY => self.discovery(&key, payload, now),
            EtherType::IPV4 => self.ipoe_input(&key, frame, now),
            EtherType::ARP => self.ipoe_arp(&key, payload, now),
            EtherType::IPV6 => self.ipoe6_input(&key, payload, now),
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
                // The host speaks on the session: it has our PADS.
                if let Some(p) = self.ppp_mut(idx) {
                    p.pads = None;
                }
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

    pub(super) fn discovery(&mut self, key: &AccessKey, payload: &[u8], now: u64) {
        // RFC 2516 §5: the code is the header's second byte; PADI 0x09, PADR 0x19.
        if self.draining && matches!(payload.get(1), Some(0x09 | 0x19)) {
            self.drain_refused += 1;
            return;
        }
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

    /// The fast path's workers (`vnf::build_workers`): from now on a PPPoE
    /// session's address is allocated from the share of the pool that steers to
    /// the worker its session id steers to ([`crate::steer`]), so neither
    /// direction of its traffic is handed between workers.
    /// Each worker's sessions also get slots next to each other
    /// ([`slots::FreeSlots`]).
    pub fn set_workers(&mut self, workers: u16) {
        self.workers = workers.max(1);
        self.free.set_workers(self.workers);
    }

    pub(super) fn alloc_sid(&mut self, key: &AccessKey) -> Option<u16> {
        for _ in 0..65535 {
            let s = self.next_sid;
            self.next_sid = if s >= 0xfffe { 1 } else { s + 1 };
            if !self.by_key.contains_key(&(*key, s)) {
                return Some(s);
            }
        }
        None
    }

    pub(super) fn new_session(&mut self, key: &AccessKey, req: SessionRequest, now: u64) {
        let hu = req.host_uniq.clone().unwrap_or_default();
        if let Some(&idx) = self.by_host.get(&(*key, hu.clone())) {
            match self.slots.get(idx as usize) {
                // A retransmitted PADR (RFC 2516 §5.4): the host has not spoken on
                // the session yet, so our PADS was lost; send the same one again.
                Some(Some(e)) if e.ppp().is_some_and(|p| p.pads.is_some()) => {
                    if let Some(f) = e.ppp().and_then(|p| p.pads.clone()) {
                        self.tx.push((key.port, f));
                    }
                    return;
                }
                // The host has used the session and discovers again: it restarted
                // without a PADT. The stale session ends (Accounting-Stop,
                // Lost-Carrier) and this PADR gets a new, unique session id.
                Some(Some(_)) => {
                    self.stats.stale_replaced += 1;
                    self.remove_with(idx, radius::terminate_cause::LOST_CARRIER, false, now);
                }
                _ => {
                    self.by_host.remove(&(*key, hu.clone()));
                }
            }
        }
        // Half-open limits: spoofed PADRs from random MACs on one line cannot crowd
        // out the others (dropped without an answer, counted by limit).
        if !self.half_open.admit(key, &mut self.stats) {
            return;
        }
        if self.free.is_empty() {
            self.stats.table_full += 1;
            let p = self.disc.padt(
                0,
                req.relay_session_id.as_deref(),
                Some(b"session table full"),
            );
            let f = self.frame(key, EtherType::PPPOE_DISCOVERY, &p);
            self.tx.push((key.port, f));
            return;
        }
        let Some(sid) = self.alloc_sid(key) else {
            self.stats.table_full += 1;
            return;
        };
        // A slot among the other sessions of the worker the session id steers to.
        let Some(idx) = self
            .free
            .pop_for(crate::steer::sid_owner(sid, self.workers))
        else {
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
            access: Access::Pppoe(alloc::boxed::Box::new(Ppp {
                sid,
                relay: req.relay_session_id,
                link: ppp,
                pending_creds: None,
                pads: Some(f),
                host_uniq: hu.clone(),
                half_open: Some(now + self.half_open.timeout_ms),
            })),
            user: Vec::new(),
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

    pub(super) fn link_input(&mut self, idx: u32, ppp: &[u8], now: u64) {
        let link = &self.link;
        let Some(Some(Access::Pppoe(p))) = self
            .slots
            .get_mut(idx as usize)
            .map(|s| s.as_mut().map(|e| &mut e.access))
        else {
            return;
        };
        let mut ev = Vec::new();
        if p.link
            .input(link, &mut self.rng, ppp, now, &mut ev)
            .is_err()
        {
            self.stats.malformed += 1;
        }
        self.events(idx, ev, now);
    }

    pub(super) fn schedule(&mut self, idx: u32) {
        let Some(Some(e)) = self.slots.get(idx as usize) else {
            return;
        };
        let mut d = e.ppp().and_then(|p| p.link.deadline());
        // The half-open deadline does not run while AAA decides.
        let relay = self.ipoe.as_ref().is_some_and(|i| i.relay_mode());
        let half_open = match &e.access {
            Access::Pppoe(p) => p.half_open.filter(|_| p.link.phase != Phase::Aaa),
            // In relay mode the lease's end is ours to watch as well.
            Access::Ipoe(i) => i
                .half_open
                .filter(|_| i.authorized)
                .or((relay && i.lease_expires != 0).then_some(i.lease_expires)),
        };
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
    pub(super) fn sync_half_open(&mut self, idx: u32, now: u64) {
        let timeout = self.half_open.timeout_ms;
        let Some(Some(e)) = self.slots.get_mut(idx as usize) else {
            return;
        };
        let key = e.key;
        let Some(p) = e.ppp_mut() else {
            return;
        };
        let setup = matches!(
            p.link.phase,
            Phase::Establish | Phase::Authenticate | Phase::Aaa
        );
        match (p.half_open.is_some(), setup) {
            (true, false) => {
                p.half_open = None;
                self.half_open.leave(&key);
            }
            (false, true) => {
                p.half_open = Some(now + timeout);
                self.half_open.enter(&key);
            }
            _ => {}
        }
    }

    pub(super) fn events(&mut self, idx: u32, ev: Vec<SessEvent>, now: u64) {
        for e in ev {
            match e {
                SessEvent::Send(f) => self.send_ppp(idx, &f),
                SessEvent::Verify(c) => self.verify(idx, c, now),
                SessEvent::NetworkUp => self.network_up(idx, now),
                SessEvent::Ipv6Up => self.ipv6_up(idx, now),
                SessEvent::Ipv6Down => self.ipv6_down(idx),
                SessEvent::Ipv4Down => self.ipv4_down(idx, now),
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
    pub(super) fn renegotiate(&mut self, idx: u32, now: u64) {
        self.dhcp6_withdraw(idx);
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
                sid: e.sid(),
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
        e.ipv4_up = false;
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

    pub(super) fn remove(&mut self, idx: u32, cause: EndCause, send_padt: bool, now: u64) {
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

    pub(super) fn remove_with(&mut self, idx: u32, cause: u32, send_padt: bool, now: u64) {
        let (started, installed) = match self.slots.get(idx as usize) {
            Some(Some(e)) => (e.acct_started, e.installed),
            _ => (false, false),
        };
        if started && self.acct_enabled {
            if self.hold_stops && installed {
                self.hold_stop(idx, cause, now);
            } else {
                self.account(idx, AcctStatus::Stop, Some(cause), now);
            }
        }
        self.dhcp6_withdraw(idx);
        self.dhcp6_unfix(idx);
        self.dhcp4_unfix(idx);
        let Some(e) = self.slots.get_mut(idx as usize).and_then(|s| s.take()) else {
            return;
        };
        if let (true, Some(p)) = (send_padt, e.ppp()) {
            let p = self.disc.padt(p.sid, p.relay.as_deref(), None);
            let f = self.frame(&e.key, EtherType::PPPOE_DISCOVERY, &p);
            self.tx.push((e.key.port, f));
        }
        if e.installed {
            self.fib.push(FibUpdate::Remove {
                idx,
                key: e.key,
                sid: e.sid(),
                ip: e.ip,
            });
        }
        // An IPoE address belongs to its DHCP lease: the DHCP server takes it back.
        if e.ip != 0 && e.ppp().is_some() {
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
        if let Some(at) = self.timer_at.get_mut(idx as usize) {
            *at = u64::MAX;
        }
        self.by_key.remove(&(e.key, e.sid()));
        match e.access {
            Access::Pppoe(p) => {
                if p.half_open.is_some() {
                    self.half_open.leave(&e.key);
                }
                if self.by_host.get(&(e.key, p.host_uniq.clone())) == Some(&idx) {
                    self.by_host.remove(&(e.key, p.host_uniq));
                }
            }
            Access::Ipoe(i) => {
                if i.half_open.is_some() {
                    self.half_open.leave(&e.key);
                }
                if let Some(c) = self.ipoe.as_mut() {
                    c.held.remove(&idx);
                    c.held6.remove(&idx);
                    if c.by_line.get(&(e.key.vlans, e.key.mac)) == Some(&idx) {
                        c.by_line.remove(&(e.key.vlans, e.key.mac));
                    }
                }
            }
        }
        self.free.push(idx);
        self.stats.sessions_ended += 1;
    }

    /// Terminate a session from our side (PPPoE: LCP Terminate-Request + PADT;
    /// IPoE: the lease is revoked).
    pub fn terminate(&mut self, idx: u32, cause: u32, now: u64) {
        let mut ev = Vec::new();
        if let Some(p) = self.ppp_mut(idx) {
            p.link.terminate(now, &mut ev);
        }
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
        self.poll_ipoe(now);
        self.poll_dhcp6(now);
        self.poll_radius(now);
    }

    pub(super) fn poll_session(&mut self, idx: u32, now: u64) {
        let link = self.link.clone();
        let acct = self.acct_enabled;
        let (uo, _, d_o, _) = self.counters.get(idx);
        if self.relay_lease_check(idx, now) {
            return;
        }
        let Some(Some(e)) = self.slots.get_mut(idx as usize) else {
            return;
        };
        if let Access::Ipoe(i) = &e.access {
            if i.half_open.is_some_and(|d| d <= now) && i.authorized {
                // Authorised but no lease bound in time: the slot goes back.
                self.stats.half_open_expired += 1;
                self.remove_with(idx, radius::terminate_cause::NAS_REQUEST, false, now);
                return;
            }
        }
        let ppp = e.ppp_mut();
        if ppp
            .as_ref()
            .is_some_and(|p| p.half_open.is_some_and(|d| d <= now) && p.link.phase != Phase::Aaa)
        {
            // Not in the Network phase in time (RFC 1661 §3.2): a stalled or spoofed
            // setup gives its slot back.
            self.stats.half_open_expired += 1;
            self.terminate(idx, radius::terminate_cause::NAS_REQUEST, now);
            return;
        }
        if let Some(p) = ppp.filter(|p| p.link.deadline().is_some_and(|d| d <= now)) {
            let mut ev = Vec::new();
            p.link.poll(&link, &mut self.rng, now, &mut ev);
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

    /// Earliest deadline of any timer (for sleeping I/O loops).
    pub fn deadline(&self) -> Option<u64> {
        let t = self.timers.peek().map(|Reverse((t, _))| *t);
        let r = self.radius.as_ref().and_then(|r| r.deadline());
        let d = self.ipoe.as_ref().and_then(|i| i.server.next_deadline());
        let d6 = self.dhcp6.as_ref().and_then(|i| i.server.next_deadline());
        [t, r, d, d6].into_iter().flatten().min()
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
                    sid: e.sid(),
                    user: String::from_utf8_lossy(&e.user).into_owned(),
                    phase: e.phase(),
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
mod tests;

#[cfg(test)]
#[path = "ipoe_tests.rs"]
mod ipoe_tests;

#[cfg(test)]
#[path = "dhcp6_tests.rs"]
mod dhcp6_tests;

#[cfg(test)]
#[path = "ipoe6_tests.rs"]
mod ipoe6_tests;
