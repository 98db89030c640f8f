//! The vBNG fast path: one engine stage (`bng-fastpath`) for both directions.
//!
//! Upstream (access port): PPPoE session frames (RFC 2516 §6) carrying IPv4 (PPP
//! protocol 0x0021) are looked up by (port, source MAC, S-VLAN, C-VLAN, session id) in
//! O(1), checked against the subscriber's address (anti-spoofing: a subscriber may only
//! source its own address), policed (per-subscriber token bucket, the engine's
//! `qos::TokenBucket`), TTL-decremented with an RFC 1624 checksum update, and
//! re-framed in place as Ethernet towards the core next hop. Discovery (0x8863) and
//! PPP control protocols (LCP, PAP, CHAP, IPCP, IPv6CP, anything not IPv4) are punted
//! to the control plane.
//!
//! Downstream (core port): IPv4 to a subscriber address is looked up in O(1), policed,
//! TTL-decremented and encapsulated in place (Ethernet + VLANs + PPPoE + PPP) into the
//! packet's headroom, then sent to the access port.
//!
//! On the core link ([`crate::corelink`]): with `core_ip` the stage answers ARP
//! requests for it (RFC 826) and with `core_gateway` resolves the next hop by ARP
//! (requests at start, on expiry and before ageing out; packets are counted drops
//! while unresolved); without them the static `core_next_hop_mac` is used. ARP frames
//! never reach the control plane.
//!
//! The BNG's own ICMP ([`crate::icmp`], RFC 792): Time Exceeded when a TTL expires
//! (RFC 1812 §5.3.1; upstream back to the subscriber inside its PPPoE session from
//! the gateway address, downstream to the core from `core_ip`), Fragmentation Needed
//! with the session MTU for DF datagrams too big for the subscriber's PPP MTU
//! (RFC 1191 §4), Echo Replies to pings for the gateway or `core_ip` (answered in
//! place), all errors rate limited by a token bucket (RFC 1812 §4.3.2.8) with the
//! suppressed ones counted in [`FastPathStats`].
//!
//! TCP MSS clamping ([`crate::mss`], RFC 879 §3, RFC 6691 §2) of SYN and SYN-ACK in
//! both directions to the session's MTU − 40, in place with an RFC 1624 update.
//!
//! Tables are updated by the control plane through a lock-free queue of
//! [`FibUpdate`]s drained at the start of each batch; the packet path does not
//! allocate (the hash tables are sized for `max_sessions` at start-up).
//!
//! Prefetch: while it works on a packet, the stage looks at the one
//! `PREFETCH_AHEAD` (4) places later in the batch (`Batch::dispatch_ahead`), finds
//! its session's slot through the one-load indices (PPPoE session id upstream,
//! the address's low 16 bits downstream) and asks the CPU for that session's
//! state and counters, so the miss is under way by the time its turn comes
//! (VPP's prefetch of packet n + k). The many subscribers' frames on an access
//! link come in no order the session table is laid out in: with 10,000 sessions
//! in a shuffled order this takes one worker from 18.7 to 29.0 Mpps upstream and
//! from 21.3 to 29.6 downstream; when the frames do come in table order (the
//! CPU's own prefetchers already follow that sweep) it costs 2.5 ns a packet
//! upstream and 4.5 downstream (`benches/RESULTS.md`, 2026-12-04). It also makes
//! a worker's speed independent of where its sessions sit in the table, which
//! the sweep is not: with two workers each sweeps its own blocks of slots.

use crate::control::{FibUpdate, SessionCounters};
use crate::corelink::{ArpVerdict, CoreLink, NextHop};
use crate::icmp::{self, AccessHdr};
use crate::mss::{self, Clamp, MssClamp};
use crate::pppoe::AccessKey;
use alloc::boxed::Box;
use alloc::sync::Arc;
use alloc::vec::Vec;
use core::net::Ipv4Addr;
use core::sync::atomic::{AtomicU64, Ordering};
use crossbeam_queue::ArrayQueue;
use dataplane::batch::{Batch, Next, Out};
use dataplane::buf::Pkt;
use dataplane::metrics::Prom;
use dataplane::prefetch;
use dataplane::proto::checksum::update16;
use dataplane::proto::ethernet::{walk_tags, Vlans};
use dataplane::proto::icmpv4::{unreachable, ErrorKind};
use dataplane::proto::EtherType;
use dataplane::stage::{Counter, NodeStats, Stage};
use dataplane::stages::frag4::fragment4;
use dataplane::stages::ip4::RateLimit;
use dataplane::stages::qos::TokenBucket;
use hashbrown::HashMap;

// IPv6 forwarding (RFC 5072 over PPPoE); a child module so it shares the session table.
#[path = "ipv6.rs"]
mod v6;

dataplane::drop_reasons! {
    /// Why a fast-path node (`bng-fastpath`, `bng-upstream`, `bng-downstream`) drops,
    /// in `Next::Drop` index order.
    pub enum FastPathDrop {
        Malformed = ("malformed", "truncated or inconsistent Ethernet/VLAN/PPPoE/IP headers"),
        NoSession = ("no-session", "PPPoE session frame matching no session (port, MAC, VLANs, session id)"),
        Spoofed = ("spoofed-source", "upstream source address is not the session's (anti-spoofing)"),
        PolicedUp = ("policed-up", "over the subscriber's upstream rate (token bucket)"),
        PolicedDown = ("policed-down", "over the subscriber's downstream rate (token bucket)"),
        NoRoute = ("no-route", "downstream destination is no session's address or prefix"),
        TtlExceeded = ("ttl-exceeded", "TTL or hop limit expired (RFC 1812 5.3.1, RFC 8200 3)"),
        TooBig = ("too-big", "larger than the session MTU with DF set, or IPv6 (RFC 1191, RFC 8201)"),
        NoHeadroom = ("no-headroom", "no buffer headroom for the access encapsulation"),
        Ethertype = ("unsupported-ethertype", "an ethertype the BNG does not forward on this port"),
        Ipv6 = ("ipv6-not-forwarded", "IPv6 the fast path does not forward (no prefix, link-local, multicast)"),
        ArpConsumed = ("arp-consumed", "ARP reply or request for us, learned"),
        ArpNotForUs = ("arp-not-for-us", "ARP for another address"),
        ArpMalformed = ("arp-malformed", "ARP packet that does not parse"),
        ArpIgnored = ("arp-ignored", "ARP without a core address, from a bad sender or conflicting"),
        Unresolved = ("next-hop-unresolved", "the core next hop is not resolved yet (ARP/ND pending)"),
        Local = ("local-not-handled", "addressed to the BNG and not an echo request"),
        Fragmentation = ("fragmentation-failed", "could not fragment to the session MTU (no buffer)"),
        NdConsumed = ("nd-consumed", "Neighbor Solicitation for us on the core link, answered"),
        Ipv4Down = ("ipv4-not-open", "upstream IPv4 from a session whose IPCP is not open (IPv6 only for now)"),
        CoreControl = ("core-link-control", "IPv6 control traffic on the core link that is not ours to forward (Router Advertisements, Router Solicitations, Redirects, MLD, other link-scope multicast)"),
    }
}

/// Drop reasons of the fast-path nodes, in `Next::Drop` index order.
pub static ERRORS: &[&str] = FastPathDrop::NAMES;
const E_MALFORMED: u16 = FastPathDrop::Malformed.code();
const E_NO_SESSION: u16 = FastPathDrop::NoSession.code();
const E_SPOOF: u16 = FastPathDrop::Spoofed.code();
const E_POLICE_UP: u16 = FastPathDrop::PolicedUp.code();
const E_POLICE_DOWN: u16 = FastPathDrop::PolicedDown.code();
const E_NO_ROUTE: u16 = FastPathDrop::NoRoute.code();
const E_TTL: u16 = FastPathDrop::TtlExceeded.code();
const E_TOO_BIG: u16 = FastPathDrop::TooBig.code();
const E_HEADROOM: u16 = FastPathDrop::NoHeadroom.code();
const E_ETHERTYPE: u16 = FastPathDrop::Ethertype.code();
const E_IPV6: u16 = FastPathDrop::Ipv6.code();
const E_ARP_CONSUMED: u16 = FastPathDrop::ArpConsumed.code();
const E_ARP_NOT_US: u16 = FastPathDrop::ArpNotForUs.code();
const E_ARP_MALFORMED: u16 = FastPathDrop::ArpMalformed.code();
const E_ARP_IGNORED: u16 = FastPathDrop::ArpIgnored.code();
const E_UNRESOLVED: u16 = FastPathDrop::Unresolved.code();
const E_LOCAL: u16 = FastPathDrop::Local.code();
const E_FRAG: u16 = FastPathDrop::Fragmentation.code();
const E_ND_CONSUMED: u16 = FastPathDrop::NdConsumed.code();
const E_IPV4_DOWN: u16 = FastPathDrop::Ipv4Down.code();
const E_CORE_CONTROL: u16 = FastPathDrop::CoreControl.code();

/// The queue through which the control plane updates the fast path.
pub type UpdateQueue = ArrayQueue<FibUpdate>;

/// A new update queue holding up to `cap` pending updates.
pub fn update_queue(cap: usize) -> Arc<UpdateQueue> {
    Arc::new(ArrayQueue::new(cap.max(1)))
}

/// Burst allowed by the per-subscriber policers, bytes.
pub const POLICER_BURST: u32 = 64 * 1024;

/// Session key packed in 128 bits: port(16) | MAC(48) | S-VLAN(12) | C-VLAN(12) | sid(16).
type Key = u128;

#[inline(always)]
fn pack(port: u16, mac: &[u8; 6], svlan: u16, cvlan: u16, sid: u16) -> Key {
    let m = u64::from_be_bytes([0, 0, mac[0], mac[1], mac[2], mac[3], mac[4], mac[5]]);
    (u128::from(port) << 88)
        | (u128::from(m) << 40)
        | (u128::from(svlan & 0xfff) << 28)
        | (u128::from(cvlan & 0xfff) << 16)
        | u128::from(sid)
}

/// A keyed multiply-xorshift hasher for the fixed-width table keys (one 64×64
/// multiply per key instead of a general-purpose streaming hash). The key is seeded
/// per table so hash values are not predictable from outside.
#[derive(Clone, Copy, Debug)]
pub struct KeyHasher(u64);

impl core::hash::Hasher for KeyHasher {
    #[inline(always)]
    fn finish(&self) -> u64 {
        let h = self.0.wrapping_mul(0x9e37_79b9_7f4a_7c15);
        h ^ (h >> 29)
    }
    #[inline(always)]
    fn write(&mut self, bytes: &[u8]) {
        for &b in bytes {
            self.0 = (self.0.rotate_left(8) ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3);
        }
    }
    #[inline(always)]
    fn write_u32(&mut self, x: u32) {
        self.0 = (self.0 ^ u64::from(x)).wrapping_mul(0xff51_afd7_ed55_8ccd);
    }
    #[inline(always)]
    fn write_u128(&mut self, x: u128) {
        let a = (self.0 ^ x as u64).wrapping_mul(0xff51_afd7_ed55_8ccd);
        self.0 = a
            ^ ((x >> 64) as u64)
                .wrapping_mul(0xc4ce_b9fe_1a85_ec53)
                .rotate_left(31);
    }
}

/// Builds [`KeyHasher`]s from a per-table seed.
#[derive(Clone, Copy, Debug)]
pub struct KeyHash(u64);

impl core::hash::BuildHasher for KeyHash {
    type Hasher = KeyHasher;
    #[inline(always)]
    fn build_hasher(&self) -> KeyHasher {
        KeyHasher(self.0)
    }
}

/// A session as the fast path keeps it: one per slot of [`FastPath::sess`]. Laid
/// out so an upstream packet touches one cache line (the subscriber line's key,
/// session id, owner, MTU, the address packets must come from and the upstream
/// policer sit in the first 64 bytes) and a downstream one two (the same line for
/// the encapsulation, the next for its policer).
#[derive(Debug, Clone)]
#[repr(C, align(64))]
struct Sess {
    key: AccessKey,
    sid: u16,
    /// The worker that owns the session's traffic ([`session_owner`]).
    owner: u16,
    mtu: u16,
    ip: u32,
    up: Option<TokenBucket>,
    down: Option<TokenBucket>,
}

// The upstream half in the first cache line, the whole in two.
const _: () = assert!(core::mem::offset_of!(Sess, down) == 64);
const _: () = assert!(core::mem::size_of::<Option<Sess>>() == 128);

/// The worker among `workers` that owns the traffic of session `idx` (PPPoE
/// session id `sid`, 0 for IPoE) with IPv4 address `ip` (0: none yet): with an
/// address, the one the CGNAT would choose for it (`Nat44::inside_owner`, a hash
/// of the subscriber address, [`crate::steer::addr_owner`]), so a subscriber's
/// sessions, policers and NAT mappings live on one worker and no packet crosses
/// cores twice; without one (IPv6 only, IPCP not open) the worker its session id
/// steers to ([`crate::steer::sid_owner`]), else (IPoE) a hash of the session
/// slot. Upstream packets find the session by their PPPoE session id (or MAC for
/// IPoE), downstream ones by the subscriber address or prefix; both end at this
/// worker. The control plane allocates a PPPoE session's address so that the two
/// agree (see [`crate::steer`]): steered by [`crate::steer::access_queue`] and
/// [`crate::steer::core_queue`], no packet of it is handed over.
#[inline]
pub fn session_owner(ip: u32, sid: u16, idx: u32, workers: u16) -> u16 {
    if workers <= 1 {
        0
    } else if ip != 0 {
        crate::steer::addr_owner(ip, workers)
    } else if sid != 0 {
        crate::steer::sid_owner(sid, workers)
    } else {
        Out::owner_of(idx.wrapping_mul(0x9e37_79b1) ^ 0x5bd1_e995, workers)
    }
}

/// Next nodes of a `Downstream` instance: core ARP goes to the graph's ARP node.
static DOWNSTREAM_NEXT: &[&str] = &[crate::vnf::NODE_CORE_ARP];
const TO_CORE_ARP: u16 = 0;

/// Which half of the work a fast-path instance does, and its node name.
///
/// `Both` (`bng-fastpath`) does both directions in one node. The vBNG graph
/// ([`crate::vnf::build`]) uses one `Upstream` (`bng-upstream`) and one `Downstream`
/// (`bng-downstream`) node, the entries of the access and the core port (with CGNAT
/// the core port enters `bng-core-input` first). With CGNAT
/// ([`FastPath::with_nat`], the default for these two modes) the graph is
/// `bng-upstream → nat44 → bng-downstream`: decapsulated upstream packets are kept for
/// the NAT and forwarded to the core by the second instance; core packets pass the
/// first instance untouched and are encapsulated by the second after the NAT. Without
/// a NAT the upstream node sends straight to the core port. Each instance has its own
/// table copy, fed by its own update queue.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    /// Both directions in one stage (no NAT).
    Both,
    /// Decapsulate upstream; with a NAT after it keep everything for the next stage,
    /// else send to the core port.
    Upstream,
    /// Encapsulate downstream; send kept (already decapsulated) upstream packets to the core.
    Downstream,
}

impl Mode {
    /// The node name of an instance in this mode.
    pub const fn node_name(self) -> &'static str {
        match self {
            Mode::Both => "bng-fastpath",
            Mode::Upstream => "bng-upstream",
            Mode::Downstream => "bng-downstream",
        }
    }
}

/// Fast-path configuration.
#[derive(Debug, Clone)]
pub struct FastPathConfig {
    /// Engine port index of the access side.
    pub access_port: u16,
    /// Engine port index of the core side.
    pub core_port: u16,
    /// Our MAC on the access side.
    pub access_mac: [u8; 6],
    /// Our MAC on the core side.
    pub core_mac: [u8; 6],
    /// MAC of the core next hop.
    pub core_next_hop: [u8; 6],
    /// Session slots.
    pub max_sessions: u32,
}

/// The BNG's own addresses and the ICMP/MSS behaviour ([`FastPath::with_local`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LocalConfig {
    /// Our address towards the subscribers (the gateway announced in IPCP): source
    /// of ICMP errors sent to subscribers; echo requests to it are answered. `None`:
    /// no ICMP towards subscribers (TTL expiry upstream is a silent counted drop).
    pub gateway: Option<Ipv4Addr>,
    /// TCP MSS clamping.
    pub mss: MssClamp,
    /// ICMP errors per second (token bucket rate, RFC 1812 §4.3.2.8). The bucket
    /// starts full; with a rate of 0 only the first `icmp_burst` errors go out.
    pub icmp_rate: u64,
    /// Token bucket depth; 0 = no ICMP errors.
    pub icmp_burst: u64,
}

impl Default for LocalConfig {
    fn default() -> Self {
        LocalConfig {
            gateway: None,
            mss: MssClamp::Auto,
            icmp_rate: 1000,
            icmp_burst: 100,
        }
    }
}

/// Counters of the BNG's own traffic (relaxed atomics, shared by the instances of a
/// pipeline; read by metrics).
#[derive(Debug, Default)]
pub struct FastPathStats {
    /// ICMP errors sent (both sides).
    pub icmp_sent: AtomicU64,
    /// ICMP errors suppressed by the rate limit.
    pub icmp_rate_limited: AtomicU64,
    /// ICMP errors not sent by RFC 1812 §4.3.2.7 (about an ICMP error, a fragment,
    /// a broadcast, ...) or, after CGNAT, because the quote would carry the
    /// translated inside address.
    pub icmp_not_allowed: AtomicU64,
    /// ICMP errors not sent for want of a source address (no gateway / `core_ip`).
    pub icmp_no_source: AtomicU64,
    /// Errors or ARP requests not sent for want of a buffer (or a full tx queue).
    pub no_buffer: AtomicU64,
    /// Echo replies sent.
    pub echo_replies: AtomicU64,
    /// SYN/SYN-ACK whose MSS was lowered.
    pub mss_clamped: AtomicU64,
    /// SYNs with malformed TCP options, forwarded unchanged.
    pub mss_bad_options: AtomicU64,
    /// Downstream datagrams (DF clear) larger than the session MTU, fragmented
    /// (RFC 791 §3.2) instead of dropped, and the fragments sent for them.
    pub fragmented: AtomicU64,
    /// See `fragmented`.
    pub fragments_sent: AtomicU64,
    /// Neighbor Advertisements sent on the core link for `core_ip6` / our link-local
    /// address (RFC 4861 §7.2.4).
    pub core_na_sent: AtomicU64,
}

#[inline]
fn inc(c: &AtomicU64) {
    c.fetch_add(1, Ordering::Relaxed);
}

impl FastPathStats {
    /// Append the counters (and the core link's ARP counters) to `p`.
    pub fn prometheus(&self, core: Option<&CoreLink>, p: &mut Prom) {
        FastPathStats::prometheus_sum(&[self], core, p);
    }

    /// Append the sums of several instances' counters (the nodes of one graph) and
    /// the core link's ARP counters to `p`.
    pub fn prometheus_sum(all: &[&FastPathStats], core: Option<&CoreLink>, p: &mut Prom) {
        let sum = |f: fn(&FastPathStats) -> &AtomicU64| -> AtomicU64 {
            AtomicU64::new(all.iter().map(|s| f(s).load(Ordering::Relaxed)).sum())
        };
        let this = FastPathStats {
            icmp_sent: sum(|s| &s.icmp_sent),
            icmp_rate_limited: sum(|s| &s.icmp_rate_limited),
            icmp_not_allowed: sum(|s| &s.icmp_not_allowed),
            icmp_no_source: sum(|s| &s.icmp_no_source),
            no_buffer: sum(|s| &s.no_buffer),
            echo_replies: sum(|s| &s.echo_replies),
            mss_clamped: sum(|s| &s.mss_clamped),
            mss_bad_options: sum(|s| &s.mss_bad_options),
            fragmented: sum(|s| &s.fragmented),
            fragments_sent: sum(|s| &s.fragments_sent),
            core_na_sent: sum(|s| &s.core_na_sent),
        };
        let s = &this;
        let g = |c: &AtomicU64| c.load(Ordering::Relaxed);
        for (kind, v) in [
            ("sent", g(&s.icmp_sent)),
            ("rate_limited", g(&s.icmp_rate_limited)),
            ("not_allowed", g(&s.icmp_not_allowed)),
            ("no_source", g(&s.icmp_no_source)),
            ("echo_reply", g(&s.echo_replies)),
        ] {
            p.counter(
                "vbng_icmp_total",
                "ICMP messages sent or suppressed by the BNG",
                &[("kind", kind)],
                v,
            );
        }
        for (kind, v) in [
            ("clamped", g(&s.mss_clamped)),
            ("bad_options", g(&s.mss_bad_options)),
        ] {
            p.counter(
                "vbng_mss_clamp_total",
                "TCP SYNs whose MSS was clamped",
                &[("kind", kind)],
                v,
            );
        }
        for (kind, v) in [
            ("datagrams", g(&s.fragmented)),
            ("fragments", g(&s.fragments_sent)),
        ] {
            p.counter(
                "vbng_fragmented_total",
                "Downstream IPv4 datagrams fragmented to the session MTU",
                &[("kind", kind)],
                v,
            );
        }
        p.counter(
            "vbng_core_na_total",
            "Neighbor Advertisements sent on the core link (RFC 4861 §7.2.4)",
            &[],
            g(&s.core_na_sent),
        );
        p.counter(
            "vbng_own_no_buffer_total",
            "BNG-originated packets not sent for want of a buffer",
            &[],
            g(&s.no_buffer),
        );
        if let Some(c) = core {
            for (kind, v) in [
                ("reply", g(&c.stats.replies)),
                ("request", g(&c.stats.requests)),
                ("learned", g(&c.stats.learned)),
                ("conflict", g(&c.stats.conflicts)),
            ] {
                p.counter("vbng_core_arp_total", "Core-side ARP", &[("kind", kind)], v);
            }
            for (kind, v) in [
                ("solicitation", g(&c.stats.ns_sent)),
                ("learned", g(&c.stats.learned6)),
            ] {
                p.counter(
                    "vbng_core_nd_total",
                    "Core-side IPv6 gateway resolution (RFC 4861)",
                    &[("kind", kind)],
                    v,
                );
            }
        }
    }
}

/// The stage.
pub struct FastPath {
    cfg: FastPathConfig,
    mode: Mode,
    /// A nat44 node sits between the upstream and downstream halves.
    nat: bool,
    /// IPoE subscribers on the access port ([`FastPath::with_ipoe`]).
    ipoe: bool,
    /// Our address on the IPoE subscribers' subnet (the DHCP router option).
    ipoe_gateway: Option<Ipv4Addr>,
    /// DHCP is relayed: server replies to the IPoE gateway are punted.
    dhcp_relay: bool,
    local: LocalConfig,
    core: Option<Arc<CoreLink>>,
    /// The core next hop, resolved once per batch (`None` = not yet this batch;
    /// `Some(None)` = unresolved).
    nh_batch: Option<Option<[u8; 6]>>,
    /// The same for IPv6 (`core_gateway6`, or the IPv4 next hop without it).
    nh6_batch: Option<Option<[u8; 6]>>,
    icmp_limit: RateLimit,
    stats: Arc<FastPathStats>,
    by_key: HashMap<Key, u32, KeyHash>,
    /// PPPoE session id → the slot of the session last installed with that id
    /// ([`NO_SLOT`]: none), allocated once (65,536 entries): the upstream lookup
    /// loads the slot and compares the session's line (port, MAC, VLANs) instead of
    /// hashing; a miss (another line with the same id) falls back to `by_key`.
    by_sid: Box<[u32]>,
    by_ip: HashMap<u32, u32, KeyHash>,
    /// The low 16 bits of a subscriber's IPv4 address → the slot of the session
    /// last given an address with those bits, as `by_sid` for downstream: unique
    /// within any pool up to a /16; a miss falls back to `by_ip`.
    by_ip16: Box<[u32]>,
    sess: Vec<Option<Sess>>,
    v6: v6::Tables,
    updates: Arc<ArrayQueue<FibUpdate>>,
    counters: Arc<SessionCounters>,
    /// This node's worker and the number of workers ([`FastPath::with_worker`]).
    me: u16,
    workers: u16,
}

impl core::fmt::Debug for FastPath {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("FastPath")
            .field("sessions", &self.by_key.len())
            .finish()
    }
}

/// An empty entry of [`FastPath::by_sid`] and [`FastPath::by_ip16`].
const NO_SLOT: u32 = u32::MAX;

/// The [`FastPath::by_ip16`] entry of an IPv4 address.
#[inline(always)]
fn ip16(ip: u32) -> usize {
    (ip & 0xffff) as usize
}

/// Points index entry `at` at slot `idx` (the session installed last wins).
fn index(index: &mut [u32], at: usize, idx: u32) {
    if let Some(e) = index.get_mut(at) {
        *e = idx;
    }
}

/// Empties index entry `at` if it names slot `idx` (that session went away).
fn unindex(index: &mut [u32], at: usize, idx: u32) {
    if let Some(e) = index.get_mut(at) {
        if *e == idx {
            *e = NO_SLOT;
        }
    }
}

fn key_of(k: &AccessKey, sid: u16) -> Key {
    pack(k.port, &k.mac, k.vlans.svlan, k.vlans.cvlan, sid)
}

fn bucket(rate: u64, now_ns: u64) -> Option<TokenBucket> {
    (rate > 0).then(|| TokenBucket::new(rate, POLICER_BURST, now_ns))
}

impl FastPath {
    /// A stage with empty tables sized for `cfg.max_sessions`; `updates` is the queue
    /// the control plane feeds.
    pub fn new(
        cfg: FastPathConfig,
        updates: Arc<ArrayQueue<FibUpdate>>,
        counters: Arc<SessionCounters>,
    ) -> FastPath {
        let n = cfg.max_sessions as usize;
        // Seed the table hashes from the counters' address and the config (no RNG
        // needed in no_std; the seed only has to differ between deployments).
        let seed = (Arc::as_ptr(&counters) as u64).rotate_left(17)
            ^ u64::from_be_bytes([
                0,
                0,
                cfg.access_mac[0],
                cfg.access_mac[1],
                cfg.access_mac[2],
                cfg.access_mac[3],
                cfg.access_mac[4],
                cfg.access_mac[5],
            ]);
        let local = LocalConfig::default();
        FastPath {
            mode: Mode::Both,
            nat: false,
            ipoe: false,
            ipoe_gateway: None,
            dhcp_relay: false,
            icmp_limit: RateLimit::new(local.icmp_rate, local.icmp_burst),
            local,
            core: None,
            nh_batch: None,
            nh6_batch: None,
            stats: Arc::new(FastPathStats::default()),
            by_key: HashMap::with_capacity_and_hasher(n, KeyHash(seed)),
            by_sid: alloc::vec![NO_SLOT; 1 << 16].into_boxed_slice(),
            by_ip16: alloc::vec![NO_SLOT; 1 << 16].into_boxed_slice(),
            by_ip: HashMap::with_capacity_and_hasher(n, KeyHash(seed.rotate_left(32))),
            sess: (0..n).map(|_| None).collect(),
            v6: v6::Tables::new(n, seed.rotate_left(48)),
            cfg,
            updates,
            counters,
            me: 0,
            workers: 1,
        }
    }

    /// The instance of worker `me` among `workers` (default: the only one). Every
    /// worker holds every session (the control plane's updates are fanned out to
    /// all); a packet of a session another worker owns ([`session_owner`]) is handed
    /// to it (`Next::Handoff`) before it touches any per-session state, so a
    /// session's policers run on one worker and its packets stay in order.
    pub fn with_worker(mut self, me: u16, workers: u16) -> FastPath {
        self.workers = workers.max(1);
        self.me = me.min(self.workers - 1);
        self
    }

    /// The worker that owns session `idx` when it is not this one (several workers).
    #[inline(always)]
    fn elsewhere(&self, idx: u32) -> Option<u16> {
        if self.workers <= 1 {
            return None;
        }
        match self.sess.get(idx as usize) {
            Some(Some(s)) if s.owner != self.me => Some(s.owner),
            _ => None,
        }
    }

    /// Set the mode (default [`Mode::Both`]); `Upstream` and `Downstream` assume a
    /// NAT between them (see [`FastPath::with_nat`]).
    pub fn with_mode(mut self, mode: Mode) -> FastPath {
        self.mode = mode;
        self.nat = mode != Mode::Both;
        self
    }

    /// Whether a nat44 node sits between the `Upstream` and `Downstream` halves: the
    /// upstream half then keeps decapsulated packets for it, and the downstream half
    /// sends no ICMP errors to the core (their quote would carry the translated inside
    /// address). Without it the upstream half sends to the core port itself.
    /// Serve IPoE subscribers (session id 0 in the tables) on the access port as
    /// well as PPPoE, with `gateway` our address on their subnet (echo requests to it
    /// are answered, ICMP errors to IPoE subscribers come from it): plain IPv4 from a
    /// subscriber's MAC and VLANs is a session's upstream, DHCP to a server (UDP port
    /// 67, RFC 2131 §4.1) and ARP go to the control plane. Without it, they are
    /// `unsupported-ethertype` drops.
    pub fn with_ipoe(mut self, gateway: Option<Ipv4Addr>) -> FastPath {
        self.ipoe = gateway.is_some();
        self.ipoe_gateway = gateway;
        self
    }

    /// With the DHCP relay (`[ipoe.relay]`): UDP to port 67 of the IPoE gateway
    /// arriving on the core port (the servers' replies to `giaddr`, RFC 2131 §4.1)
    /// goes to the control plane.
    pub fn with_dhcp_relay(mut self, relay: bool) -> FastPath {
        self.dhcp_relay = relay;
        self
    }

    pub fn with_nat(mut self, nat: bool) -> FastPath {
        self.nat = nat && self.mode != Mode::Both;
        self
    }

    /// Apply the pending table updates from the control plane (also done at the start
    /// of every batch; a worker hook calls it between bursts so updates never wait for
    /// traffic).
    pub fn drain_updates(&mut self, now_ns: u64) -> usize {
        // Nearly always empty: two loads, where `pop` on an empty queue also
        // issues a full fence.
        if self.updates.is_empty() {
            return 0;
        }
        let mut n = 0;
        while let Some(u) = self.updates.pop() {
            self.apply(u, now_ns);
            n += 1;
        }
        n
    }

    /// Set our addresses and the ICMP/MSS behaviour (default: no gateway address,
    /// MSS clamping `auto`, 1000 ICMP errors/s with a burst of 100).
    pub fn with_local(mut self, local: LocalConfig) -> FastPath {
        self.icmp_limit = RateLimit::new(local.icmp_rate, local.icmp_burst);
        self.local = local;
        self
    }

    /// Use `core` for our core address (ARP replies, ICMP source) and next-hop
    /// resolution (default: static `core_next_hop`, no core address). The instances
    /// of one pipeline share one link.
    pub fn with_core_link(mut self, core: Arc<CoreLink>) -> FastPath {
        self.core = Some(core);
        self
    }

    /// Share `stats` (e.g. between the two instances of a CGNAT pipeline).
    pub fn with_stats(mut self, stats: Arc<FastPathStats>) -> FastPath {
        self.stats = stats;
        self
    }

    /// The counters of the BNG's own traffic.
    pub fn stats(&self) -> Arc<FastPathStats> {
        self.stats.clone()
    }

    /// The slot of the session on line (`port`, `mac`, `vlans`) with PPPoE session
    /// id `sid` (0: IPoE): through the session-id index when its entry is this
    /// line's session (one load, one compare), else the hash table.
    #[inline(always)]
    fn find_session(&self, port: u16, mac: &[u8; 6], vlans: Vlans, sid: u16) -> Option<u32> {
        if sid != 0 {
            let i = self
                .by_sid
                .get(usize::from(sid))
                .copied()
                .unwrap_or(NO_SLOT);
            if let Some(Some(s)) = self.sess.get(i as usize) {
                if s.sid == sid
                    && s.key.port == port
                    && s.key.mac == *mac
                    && s.key.vlans.svlan & 0x0fff == vlans.svlan & 0x0fff
                    && s.key.vlans.cvlan & 0x0fff == vlans.cvlan & 0x0fff
                {
                    return Some(i);
                }
            }
        }
        self.by_key
            .get(&pack(port, mac, vlans.svlan, vlans.cvlan, sid))
            .copied()
    }

    /// The slot of the session with IPv4 address `ip` (host order): through the
    /// low-16-bit index when its entry is that session, else the hash table.
    #[inline(always)]
    fn find_by_ip(&self, ip: u32) -> Option<u32> {
        let i = self.by_ip16.get(ip16(ip)).copied().unwrap_or(NO_SLOT);
        if let Some(Some(s)) = self.sess.get(i as usize) {
            if s.ip == ip && ip != 0 {
                return Some(i);
            }
        }
        self.by_ip.get(&ip).copied()
    }

    /// Whether `a` (host order) is one of our addresses.
    #[inline(always)]
    fn is_local(&self, a: u32) -> bool {
        self.local.gateway.is_some_and(|g| u32::from(g) == a)
            || self.core.as_ref().is_some_and(|c| u32::from(c.ip) == a)
            || self.ipoe_gateway.is_some_and(|g| u32::from(g) == a)
    }

    /// Send an ICMP error about the datagram `ip` from `src` out of `port`, built by
    /// `build`, after the RFC 1812 §4.3.2.7 checks and the rate limit.
    fn icmp_error(
        &mut self,
        out: &mut Out,
        ip: &[u8],
        src: Option<Ipv4Addr>,
        port: u16,
        build: impl FnOnce(&mut Pkt, Ipv4Addr) -> bool,
    ) {
        let st = &*self.stats;
        let Some(src) = src else {
            inc(&st.icmp_no_source);
            return;
        };
        if !icmp::allowed(ip) {
            inc(&st.icmp_not_allowed);
            return;
        }
        if !self.icmp_limit.take(out.now_ns) {
            inc(&st.icmp_rate_limited);
            return;
        }
        let Some(mut e) = out.cache.alloc() else {
            inc(&st.no_buffer);
            return;
        };
        if !build(&mut e, src) {
            out.cache.free(e);
            inc(&st.no_buffer);
            return;
        }
        e.meta.port = port;
        if out.emit(port, e) {
            inc(&st.icmp_sent);
        } else {
            inc(&st.no_buffer);
        }
    }

    /// Send an ARP request for the core gateway.
    /// Send a Neighbor Solicitation for the IPv6 core gateway.
    fn ns_request(&self, out: &mut Out) {
        let Some(c) = self.core.as_deref() else {
            return;
        };
        let Some(mut r) = out.cache.alloc() else {
            inc(&self.stats.no_buffer);
            return;
        };
        if !c.build_ns(&mut r, self.cfg.core_mac) {
            out.cache.free(r);
            return;
        }
        r.meta.port = self.cfg.core_port;
        if !out.emit(self.cfg.core_port, r) {
            inc(&self.stats.no_buffer);
        }
    }

    fn arp_request(&self, out: &mut Out) {
        let Some(c) = self.core.as_deref() else {
            return;
        };
        let Some(mut r) = out.cache.alloc() else {
            inc(&self.stats.no_buffer);
            return;
        };
        if !c.build_request(&mut r, self.cfg.core_mac) {
            out.cache.free(r);
            inc(&self.stats.no_buffer);
            return;
        }
        r.meta.port = self.cfg.core_port;
        if !out.emit(self.cfg.core_port, r) {
            inc(&self.stats.no_buffer);
        }
    }

    /// The core next hop's MAC, resolved once per batch; sends the ARP request the
    /// resolution asks for. `None` while unresolved.
    #[inline(always)]
    fn next_hop(&mut self, now: u64, out: &mut Out) -> Option<[u8; 6]> {
        match self.nh_batch {
            Some(nh) => nh,
            None => self.resolve_next_hop(now, out),
        }
    }

    /// [`FastPath::next_hop`]'s first call in a batch (out of line).
    #[inline(never)]
    fn resolve_next_hop(&mut self, now: u64, out: &mut Out) -> Option<[u8; 6]> {
        let nh = match self.core.as_deref().map(|c| c.next_hop(now)) {
            None | Some(NextHop::Static) => Some(self.cfg.core_next_hop),
            Some(NextHop::Mac { mac, refresh }) => {
                if refresh {
                    self.arp_request(out);
                }
                Some(mac)
            }
            Some(NextHop::Request) => {
                self.arp_request(out);
                None
            }
            Some(NextHop::Pending) => None,
        };
        self.nh_batch = Some(nh);
        nh
    }

    /// The IPv6 core next hop's MAC, resolved once per batch: `core_gateway6` by ND
    /// (sending the solicitation the resolution asks for), or without it the IPv4
    /// next hop ([`FastPath::next_hop`]). `None` while unresolved.
    #[inline]
    fn next_hop6(&mut self, now: u64, out: &mut Out) -> Option<[u8; 6]> {
        if let Some(nh) = self.nh6_batch {
            return nh;
        }
        let nh = match self.core.as_deref().map(|c| c.next_hop6(now)) {
            Some(NextHop::Mac { mac, refresh }) => {
                if refresh {
                    self.ns_request(out);
                }
                Some(mac)
            }
            Some(NextHop::Request) => {
                self.ns_request(out);
                None
            }
            Some(NextHop::Pending) => None,
            None | Some(NextHop::Static) => self.next_hop(now, out),
        };
        self.nh6_batch = Some(nh);
        nh
    }

    /// An ARP frame on the core port.
    fn core_arp(&self, p: &mut Pkt, now: u64) -> Next {
        let Some(c) = self.core.as_deref() else {
            return Next::Drop(E_ARP_IGNORED);
        };
        match c.input(p.data_mut(), self.cfg.core_mac, now) {
            ArpVerdict::Reply => Next::Port(self.cfg.core_port),
            ArpVerdict::Learned => Next::Drop(E_ARP_CONSUMED),
            ArpVerdict::NotForUs => Next::Drop(E_ARP_NOT_US),
            ArpVerdict::Malformed => Next::Drop(E_ARP_MALFORMED),
            ArpVerdict::BadSender | ArpVerdict::Conflict => Next::Drop(E_ARP_IGNORED),
        }
    }

    /// Clamp the MSS of a TCP SYN in `ip` for a session of PPP MTU `mtu`.
    #[inline]
    fn clamp(&self, ip: &mut [u8], mtu: u16) {
        let Some(max) = self.local.mss.limit(mtu) else {
            return;
        };
        match mss::clamp_ipv4(ip, max) {
            Clamp::Unchanged => {}
            Clamp::Clamped(_) => inc(&self.stats.mss_clamped),
            Clamp::BadOptions => inc(&self.stats.mss_bad_options),
        }
    }

    /// Installed sessions.
    pub fn sessions(&self) -> usize {
        self.by_key.len()
    }

    /// Apply one table update (also used directly by tests).
    pub fn apply(&mut self, u: FibUpdate, now_ns: u64) {
        match u {
            FibUpdate::Add {
                idx,
                key,
                sid,
                ip,
                rate,
                mtu,
            } => {
                let Some(slot) = self.sess.get_mut(idx as usize) else {
                    return;
                };
                if let Some(old) = slot.take() {
                    // Only the entries that still name this slot (a later session
                    // on the same line or address keeps its own).
                    let k = key_of(&old.key, old.sid);
                    if self.by_key.get(&k) == Some(&idx) {
                        self.by_key.remove(&k);
                    }
                    if self.by_ip.get(&old.ip) == Some(&idx) {
                        self.by_ip.remove(&old.ip);
                    }
                    unindex(&mut self.by_sid, usize::from(old.sid), idx);
                    unindex(&mut self.by_ip16, ip16(old.ip), idx);
                }
                *slot = Some(Sess {
                    key,
                    sid,
                    ip,
                    up: bucket(rate.0, now_ns),
                    down: bucket(rate.1, now_ns),
                    mtu: mtu.max(68),
                    owner: session_owner(ip, sid, idx, self.workers),
                });
                self.by_key.insert(key_of(&key, sid), idx);
                // The indexes follow the tables: the last session installed wins.
                if sid != 0 {
                    index(&mut self.by_sid, usize::from(sid), idx);
                }
                if ip != 0 {
                    self.by_ip.insert(ip, idx);
                    index(&mut self.by_ip16, ip16(ip), idx);
                }
            }
            FibUpdate::Down4 { idx, ip } => {
                if self.by_ip.get(&ip) == Some(&idx) {
                    self.by_ip.remove(&ip);
                }
                unindex(&mut self.by_ip16, ip16(ip), idx);
                let workers = self.workers;
                if let Some(Some(s)) = self.sess.get_mut(idx as usize) {
                    s.ip = 0;
                    s.owner = session_owner(0, s.sid, idx, workers);
                }
            }
            FibUpdate::Remove { idx, key, sid, ip } => {
                if self.by_key.get(&key_of(&key, sid)) == Some(&idx) {
                    self.by_key.remove(&key_of(&key, sid));
                }
                unindex(&mut self.by_sid, usize::from(sid), idx);
                if self.by_ip.get(&ip) == Some(&idx) {
                    self.by_ip.remove(&ip);
                }
                unindex(&mut self.by_ip16, ip16(ip), idx);
                if let Some(s) = self.sess.get_mut(idx as usize) {
                    *s = None;
                }
            }
            u @ (FibUpdate::Add6 { .. }
            | FibUpdate::Remove6 { .. }
            | FibUpdate::AddPd { .. }
            | FibUpdate::RemovePd { .. }
            | FibUpdate::AddAddr6 { .. }
            | FibUpdate::RemoveAddr6 { .. }) => self.apply6(u),
            FibUpdate::Rate { idx, rate } => {
                if let Some(Some(s)) = self.sess.get_mut(idx as usize) {
                    s.up = bucket(rate.0, now_ns);
                    s.down = bucket(rate.1, now_ns);
                }
            }
        }
    }

    #[inline]
    fn upstream(&mut self, p: &mut Pkt, now_ns: u64, out: &mut Out) -> Next {
        let d = p.data();
        // Ethernet + up to two VLAN tags (a third tag or a cut tag is malformed here).
        // Only the VLAN IDs matter here (the session key), collected as the tags go by.
        let mut vid = [0u16; 2];
        let mut tags = 0;
        let Ok((ethertype, l2)) = walk_tags(d, |i, _, tci| {
            vid[i & 1] = tci & 0x0fff;
            tags = i + 1;
        }) else {
            return Next::Drop(E_MALFORMED);
        };
        // One tag is the C-VLAN; two are S-VLAN then C-VLAN (as `Vlans::from_stack`).
        let vlans = match tags {
            0 => Vlans::NONE,
            1 => Vlans {
                svlan: 0,
                cvlan: vid[0],
            },
            _ => Vlans {
                svlan: vid[0],
                cvlan: vid[1],
            },
        };
        match ethertype {
            EtherType::PPPOE_DISCOVERY => return Next::Punt,
            EtherType::PPPOE_SESSION => {}
            EtherType::IPV4 if self.ipoe => return self.upstream_ipoe(p, now_ns, out, l2, vlans),
            EtherType::ARP if self.ipoe => return Next::Punt,
            EtherType::IPV6 if self.ipoe => return self.upstream6_ipoe(p, now_ns, out, l2, vlans),
            _ => return Next::Drop(E_ETHERTYPE),
        }
        // PPPoE header (6) + PPP protocol (2).
        let Some(h) = d.get(l2..l2 + 8) else {
            return Next::Drop(E_MALFORMED);
        };
        if h[0] != 0x11 || h[1] != 0 {
            return Next::Drop(E_MALFORMED);
        }
        let sid = u16::from_be_bytes([h[2], h[3]]);
        let plen = usize::from(u16::from_be_bytes([h[4], h[5]]));
        let proto = u16::from_be_bytes([h[6], h[7]]);
        if proto != 0x0021 {
            return if proto == 0x0057 {
                self.upstream6(p, now_ns, out, l2, vlans, sid, plen)
            } else {
                Next::Punt
            };
        }
        if plen < 2 + 20 || l2 + 6 + plen > d.len() {
            return Next::Drop(E_MALFORMED);
        }
        let mut mac = [0u8; 6];
        mac.copy_from_slice(&d[6..12]);
        let Some(idx) = self.find_session(p.meta.port, &mac, vlans, sid) else {
            return Next::Drop(E_NO_SESSION);
        };
        self.up4(p, now_ns, out, idx, l2 + 8, plen - 2, mac)
    }

    /// Upstream IPoE (RFC 894 IPv4 from a subscriber's MAC and VLANs): DHCP towards
    /// a server is punted whether or not the client has a session (DISCOVER and
    /// REQUEST, and the unicast renewals of bound clients); the rest must belong to a
    /// session (key: port, MAC, VLANs, session id 0) and then forwards exactly as
    /// PPPoE's IPv4 does.
    #[inline]
    fn upstream_ipoe(
        &mut self,
        p: &mut Pkt,
        now_ns: u64,
        out: &mut Out,
        l2: usize,
        vlans: Vlans,
    ) -> Next {
        let d = p.data();
        let Some(ip) = d.get(l2..l2 + 20) else {
            return Next::Drop(E_MALFORMED);
        };
        let hl = usize::from(ip[0] & 0x0f) * 4;
        let total = usize::from(u16::from_be_bytes([ip[2], ip[3]]));
        if ip[0] >> 4 != 4 || hl < 20 || total < hl || l2 + total > d.len() {
            return Next::Drop(E_MALFORMED);
        }
        // UDP, first fragment, destination port 67 (bootps).
        if ip[9] == 17
            && ip[6] & 0x1f == 0
            && ip[7] == 0
            && d.get(l2 + hl + 2..l2 + hl + 4) == Some(&[0, 67])
        {
            return Next::Punt;
        }
        let mut mac = [0u8; 6];
        mac.copy_from_slice(&d[6..12]);
        let key = pack(p.meta.port, &mac, vlans.svlan, vlans.cvlan, 0);
        let Some(&idx) = self.by_key.get(&key) else {
            return Next::Drop(E_NO_SESSION);
        };
        self.up4(p, now_ns, out, idx, l2, total, mac)
    }

    /// Upstream IPv4 of session `idx` (PPPoE or IPoE) at `ip_off`, `ip_len` bytes
    /// long (the PPPoE payload, or the IPoE datagram): anti-spoofing, policer, the
    /// BNG's own addresses, TTL, next hop, re-framing to the core.
    #[allow(clippy::too_many_arguments)]
    #[inline(always)]
    fn up4(
        &mut self,
        p: &mut Pkt,
        now_ns: u64,
        out: &mut Out,
        idx: u32,
        ip_off: usize,
        ip_len: usize,
        mac: [u8; 6],
    ) -> Next {
        if let Some(w) = self.elsewhere(idx) {
            return Next::Handoff(w);
        }
        let d = p.data();
        let Some(Some(s)) = self.sess.get_mut(idx as usize) else {
            return Next::Drop(E_NO_SESSION);
        };
        let Some(ip) = d.get(ip_off..ip_off + ip_len) else {
            return Next::Drop(E_MALFORMED);
        };
        if ip[0] >> 4 != 4
            || usize::from(ip[0] & 0x0f) * 4 < 20
            || usize::from(u16::from_be_bytes([ip[2], ip[3]])) > ip_len
        {
            return Next::Drop(E_MALFORMED);
        }
        let src = u32::from_be_bytes([ip[12], ip[13], ip[14], ip[15]]);
        if src != s.ip || src == 0 {
            // A session without IPv4 (IPCP not open) has address 0.
            return Next::Drop(if s.ip == 0 { E_IPV4_DOWN } else { E_SPOOF });
        }
        if let Some(b) = s.up.as_mut() {
            b.fill(now_ns);
            if !b.take(ip_len) {
                return Next::Drop(E_POLICE_UP);
            }
        }
        let (skey, ssid, smtu) = (s.key, s.sid, s.mtu);
        let dst = u32::from_be_bytes([ip[16], ip[17], ip[18], ip[19]]);
        if self.is_local(dst) {
            // To the gateway or our core address: answer pings in place, inside the
            // session (RFC 792); nothing else is served here.
            if !icmp::is_echo_request(ip) {
                return Next::Drop(E_LOCAL);
            }
            let amac = self.cfg.access_mac;
            let d = p.data_mut();
            let Some(ipm) = d.get_mut(ip_off..ip_off + ip_len) else {
                return Next::Drop(E_MALFORMED);
            };
            if !icmp::echo_reply_in_place(ipm) {
                return Next::Drop(E_LOCAL);
            }
            d[0..6].copy_from_slice(&mac);
            d[6..12].copy_from_slice(&amac);
            inc(&self.stats.echo_replies);
            return Next::Port(p.meta.port);
        }
        if ip[8] <= 1 {
            // RFC 1812 §5.3.1: Time Exceeded back to the subscriber, in its session.
            let hdr = AccessHdr {
                dst: mac,
                src: self.cfg.access_mac,
                vlans: skey.vlans,
                sid: ssid,
            };
            let port = p.meta.port;
            let gw = if ssid == 0 {
                self.ipoe_gateway
            } else {
                self.local.gateway
            };
            self.icmp_error(out, ip, gw, port, |e, src| {
                icmp::build_access_error(
                    e,
                    &hdr,
                    ip,
                    src,
                    ErrorKind::TimeExceeded { code: 0 },
                    smtu,
                )
            });
            return Next::Drop(E_TTL);
        }
        let Some(nh) = self.next_hop(now_ns, out) else {
            return Next::Drop(E_UNRESOLVED);
        };
        self.counters.up(self.me, idx, ip_len as u64);
        // Trim Ethernet padding past the PPPoE length, then re-frame in place.
        let extra = d.len() - (ip_off + ip_len);
        if extra > 0 && p.trim(extra).is_err() {
            return Next::Drop(E_MALFORMED);
        }
        if p.strip(ip_off - 14).is_err() {
            return Next::Drop(E_MALFORMED);
        }
        let core = self.cfg.core_port;
        let src = self.cfg.core_mac;
        let d = p.data_mut();
        d[0..6].copy_from_slice(&nh);
        d[6..12].copy_from_slice(&src);
        d[12] = 0x08;
        d[13] = 0x00;
        dec_ttl(&mut d[14..]);
        if let Some(ipm) = d.get_mut(14..) {
            self.clamp(ipm, smtu);
        }
        p.meta.l3 = 14;
        p.meta.user = idx;
        Next::Port(core)
    }

    #[inline]
    fn downstream(&mut self, p: &mut Pkt, now_ns: u64, out: &mut Out) -> Next {
        let d = p.data();
        let Some(h) = d.get(12..34) else {
            return Next::Drop(E_MALFORMED);
        };
        if h[0] == 0x86 && h[1] == 0xdd {
            return self.downstream6(p, now_ns, out);
        }
        if h[0] != 0x08 || h[1] != 0x00 {
            return Next::Drop(E_ETHERTYPE);
        }
        let ip = &h[2..];
        if ip[0] >> 4 != 4 {
            return Next::Drop(E_MALFORMED);
        }
        let ip_len = usize::from(u16::from_be_bytes([ip[2], ip[3]]));
        if ip_len < 20 || 14 + ip_len > d.len() {
            return Next::Drop(E_MALFORMED);
        }
        let dst = u32::from_be_bytes([ip[16], ip[17], ip[18], ip[19]]);
        if self.is_local(dst) {
            if self.dhcp_relay
                && ip[9] == 17
                && self.ipoe_gateway.is_some_and(|g| u32::from(g) == dst)
                && d.get(14 + usize::from(ip[0] & 0x0f) * 4 + 2..)
                    .is_some_and(|u| u.starts_with(&[0, 67]))
            {
                return Next::Punt;
            }
            // A ping for our address from the core: answered in place (RFC 792).
            let cmac = self.cfg.core_mac;
            let d = p.data_mut();
            let Some(ipm) = d.get_mut(14..14 + ip_len) else {
                return Next::Drop(E_MALFORMED);
            };
            if !icmp::is_echo_request(ipm) || !icmp::echo_reply_in_place(ipm) {
                return Next::Drop(E_LOCAL);
            }
            d.copy_within(6..12, 0);
            d[6..12].copy_from_slice(&cmac);
            inc(&self.stats.echo_replies);
            return Next::Port(self.cfg.core_port);
        }
        let Some(idx) = self.find_by_ip(dst) else {
            return Next::Drop(E_NO_ROUTE);
        };
        if let Some(w) = self.elsewhere(idx) {
            return Next::Handoff(w);
        }
        let Some(Some(s)) = self.sess.get_mut(idx as usize) else {
            return Next::Drop(E_NO_ROUTE);
        };
        let mtu = s.mtu;
        let expired = ip[8] <= 1;
        let too_big = ip_len > usize::from(mtu);
        // DF clear and too big: fragmented below, after the encapsulation.
        if expired || (too_big && ip[6] & 0x40 != 0) {
            let df = ip[6] & 0x40 != 0;
            // RFC 1812 §5.3.1 (TTL) and RFC 1191 §4 (DF and too big for the session):
            // the error goes back to the previous hop on the core link.
            let kind = if expired {
                Some(ErrorKind::TimeExceeded { code: 0 })
            } else {
                df.then_some(ErrorKind::DstUnreachable {
                    code: unreachable::FRAG_NEEDED,
                    next_hop_mtu: mtu,
                })
            };
            if let (Some(kind), Some(full), Some(prev)) =
                (kind, d.get(14..14 + ip_len), d.get(6..12))
            {
                if self.nat {
                    // After CGNAT the quote would carry the inside address.
                    inc(&self.stats.icmp_not_allowed);
                } else {
                    let mut prev_mac = [0u8; 6];
                    prev_mac.copy_from_slice(prev);
                    let (cmac, cport) = (self.cfg.core_mac, self.cfg.core_port);
                    let src = self.core.as_ref().map(|c| c.ip).or(self.local.gateway);
                    self.icmp_error(out, full, src, cport, |e, src| {
                        icmp::build_core_error(e, prev_mac, cmac, full, src, kind)
                    });
                }
            }
            return Next::Drop(if expired { E_TTL } else { E_TOO_BIG });
        }
        let Some(Some(s)) = self.sess.get_mut(idx as usize) else {
            return Next::Drop(E_NO_ROUTE);
        };
        if let Some(b) = s.down.as_mut() {
            b.fill(now_ns);
            if !b.take(ip_len) {
                return Next::Drop(E_POLICE_DOWN);
            }
        }
        self.counters.down(self.me, idx, ip_len as u64);
        let (key, sid) = (s.key, s.sid);
        let extra = d.len() - (14 + ip_len);
        if extra > 0 && p.trim(extra).is_err() {
            return Next::Drop(E_MALFORMED);
        }
        if let Some(ipm) = p.data_mut().get_mut(14..) {
            self.clamp(ipm, mtu);
        }
        let ah = AccessHdr {
            dst: key.mac,
            src: self.cfg.access_mac,
            vlans: key.vlans,
            sid,
        };
        let hdr = ah.len();
        // Strip our Ethernet header, prepend the access header.
        if p.strip(14).is_err() {
            return Next::Drop(E_MALFORMED);
        }
        dec_ttl(p.data_mut());
        let Ok(h) = p.prepend(hdr) else {
            return Next::Drop(E_HEADROOM);
        };
        if ah.write(h, ip_len, false).is_none() {
            return Next::Drop(E_MALFORMED);
        }
        p.meta.l3 = hdr as u16;
        p.meta.user = idx;
        if too_big {
            // Fragments 1..n-1 are queued now, each with a copy of the access header
            // whose PPPoE length is fixed up; this buffer becomes the last one.
            let len_at = ah.pppoe_len_at();
            let r = fragment4(p, hdr, usize::from(mtu), out, key.port, |f| {
                let pl = (f.len().saturating_sub(hdr) + 2) as u16;
                if let Some(x) = len_at.and_then(|at| f.data_mut().get_mut(at..at + 2)) {
                    x.copy_from_slice(&pl.to_be_bytes());
                }
            });
            match r {
                Ok(n) => {
                    inc(&self.stats.fragmented);
                    self.stats
                        .fragments_sent
                        .fetch_add(n as u64, Ordering::Relaxed);
                }
                Err(_) => return Next::Drop(E_FRAG),
            }
        }
        Next::Port(key.port)
    }
}

/// Decrement the IPv4 TTL and patch the header checksum (RFC 1624 eqn. 3).
#[inline]
fn dec_ttl(ip: &mut [u8]) {
    if ip.len() < 20 {
        return;
    }
    let old = u16::from_be_bytes([ip[8], ip[9]]);
    ip[8] = ip[8].wrapping_sub(1);
    let new = u16::from_be_bytes([ip[8], ip[9]]);
    let c = update16(u16::from_be_bytes([ip[10], ip[11]]), old, new);
    ip[10..12].copy_from_slice(&c.to_be_bytes());
}

/// How many packets ahead of the one in hand [`FastPath::process`] prefetches a
/// session's state (measured: 4 is a little faster than 8 and 16; see
/// `benches/RESULTS.md`, 2026-12-04).
const PREFETCH_AHEAD: usize = 4;

/// The flag of a [`FastPath::slot_hint`] for downstream: the session's both lines
/// (downstream reads the key and the address in the first, its policer in the
/// second; upstream only the first).
const HINT_DOWN: u32 = 1 << 31;

impl FastPath {
    /// The session slot a frame most likely belongs to, from the one-load indices
    /// (`by_sid` for PPPoE upstream, `by_ip16` for IPv4 downstream), `|`
    /// [`HINT_DOWN`] for downstream; [`NO_SLOT`] when there is nothing to fetch
    /// (another frame, IPoE's hashed lookup, a direction this node does not
    /// handle). Only a hint: the frame is checked in full when its turn comes.
    #[inline(always)]
    fn slot_hint(&self, p: &Pkt) -> u32 {
        let d = p.data();
        let Ok((ethertype, l3)) = walk_tags(d, |_, _, _| {}) else {
            return NO_SLOT;
        };
        let port = p.meta.port;
        let (table, at, flag) = match ethertype {
            // The PPPoE session id (RFC 2516 §4).
            EtherType::PPPOE_SESSION
                if port == self.cfg.access_port && self.mode != Mode::Downstream =>
            {
                (&self.by_sid, d.get(l3 + 2..l3 + 4), 0)
            }
            // The low half of the IPv4 destination.
            EtherType::IPV4 if port == self.cfg.core_port && self.mode != Mode::Upstream => {
                (&self.by_ip16, d.get(l3 + 18..l3 + 20), HINT_DOWN)
            }
            _ => return NO_SLOT,
        };
        let Some(&[a, b]) = at else {
            return NO_SLOT;
        };
        match table.get(usize::from(u16::from_be_bytes([a, b]))) {
            Some(&i) if i != NO_SLOT => i | flag,
            _ => NO_SLOT,
        }
    }

    /// Asks the CPU for the session state `p` will need (its [`Sess`] lines and
    /// this worker's counters), found by [`FastPath::slot_hint`].
    #[inline(always)]
    fn prefetch_for(&self, p: &Pkt) {
        let h = self.slot_hint(p);
        if h == NO_SLOT {
            return;
        }
        let idx = h & !HINT_DOWN;
        if let Some(s) = self.sess.get(idx as usize) {
            let at = (s as *const Option<Sess>).cast::<u8>();
            prefetch(at);
            if h & HINT_DOWN != 0 {
                prefetch(at.wrapping_add(64));
            }
            self.counters.prefetch(self.me, idx);
        }
    }
}

impl Stage for FastPath {
    fn name(&self) -> &'static str {
        self.mode.node_name()
    }

    fn errors(&self) -> &'static [&'static str] {
        FastPathDrop::NAMES
    }

    fn error_help(&self) -> &'static [&'static str] {
        FastPathDrop::HELP
    }

    fn next_nodes(&self) -> &'static [&'static str] {
        match self.mode {
            Mode::Downstream => DOWNSTREAM_NEXT,
            _ => &[],
        }
    }

    fn counters(&self, f: &mut dyn FnMut(Counter)) {
        let g = |c: &AtomicU64| c.load(Ordering::Relaxed);
        let st = &*self.stats;
        f(Counter::gauge(
            "sessions",
            "IPv4 sessions in this node's table",
            self.by_key.len().max(self.by_ip.len()) as u64,
        ));
        f(Counter::gauge(
            "sessions6",
            "IPv6 prefixes in this node's table",
            self.prefixes6() as u64,
        ));
        for (name, help, v) in [
            ("icmp-sent", "ICMP errors sent", g(&st.icmp_sent)),
            (
                "icmp-rate-limited",
                "ICMP errors suppressed by the rate limit (RFC 1812 4.3.2.8)",
                g(&st.icmp_rate_limited),
            ),
            (
                "icmp-not-allowed",
                "ICMP errors not sent by RFC 1812 4.3.2.7 (or after CGNAT)",
                g(&st.icmp_not_allowed),
            ),
            (
                "icmp-no-source",
                "ICMP errors not sent for want of a source address",
                g(&st.icmp_no_source),
            ),
            ("echo-replies", "Echo replies sent", g(&st.echo_replies)),
            (
                "no-buffer",
                "BNG-originated packets not sent for want of a buffer or queue room",
                g(&st.no_buffer),
            ),
            (
                "mss-clamped",
                "TCP SYNs whose MSS was lowered",
                g(&st.mss_clamped),
            ),
            (
                "mss-bad-options",
                "TCP SYNs with malformed options, forwarded unchanged",
                g(&st.mss_bad_options),
            ),
            (
                "fragmented",
                "Downstream datagrams fragmented to the session MTU",
                g(&st.fragmented),
            ),
            (
                "fragments-sent",
                "Fragments sent for them",
                g(&st.fragments_sent),
            ),
            (
                "core-na-sent",
                "Neighbor Advertisements sent on the core link",
                g(&st.core_na_sent),
            ),
        ] {
            f(Counter::total(name, help, v));
        }
    }

    fn as_any_mut(&mut self) -> Option<&mut dyn core::any::Any> {
        Some(self)
    }

    fn process(&mut self, batch: &mut Batch, node: &mut NodeStats, out: &mut Out) {
        let now = out.now_ns;
        self.drain_updates(now);
        let (access, core, mode, nat) = (
            self.cfg.access_port,
            self.cfg.core_port,
            self.mode,
            self.nat,
        );
        self.nh_batch = None;
        self.nh6_batch = None;
        batch.dispatch_ahead(node, out, PREFETCH_AHEAD, |p, later, out| {
            if let Some(l) = later {
                self.prefetch_for(l);
            }
            match (mode, p.meta.port) {
                // ARP on the core link is ours (RFC 826): the graph's `bng-core-arp`
                // node answers it for a downstream node, a lone node does it itself.
                (_, x) if x == core && p.data().get(12..14) == Some(&[0x08, 0x06]) => {
                    if mode == Mode::Downstream {
                        Next::Node(TO_CORE_ARP)
                    } else {
                        self.core_arp(p, now)
                    }
                }
                (Mode::Both | Mode::Downstream, x) if x == core => self.downstream(p, now, out),
                (Mode::Upstream, x) if x == core => Next::Keep,
                (Mode::Both, x) if x == access => self.upstream(p, now, out),
                (Mode::Upstream, x) if x == access => match self.upstream(p, now, out) {
                    // Decapsulated for the core: on to the NAT. Echo replies go back out.
                    Next::Port(c) if c == core && nat => Next::Keep,
                    n => n,
                },
                (Mode::Downstream, x) if x == access => Next::Port(core),
                _ => Next::Drop(E_ETHERTYPE),
            }
        });
    }

    fn tick(&mut self, out: &mut Out) {
        // Resolve the core gateway at start, on expiry and before it ages out.
        if self.core.as_deref().is_some_and(|c| c.poll(out.now_ns)) {
            self.arp_request(out);
        }
        if self.core.as_deref().is_some_and(|c| c.poll6(out.now_ns)) {
            self.ns_request(out);
        }
    }
}

#[cfg(test)]
mod tests;
