//! `nat44`: NAPT44 and CGNAT (one stage, both directions).
//!
//! Behaviour, with the requirement each part implements:
//! - Mapping (RFC 4787 §4.1 REQ-1, RFC 5382 REQ-1): endpoint-independent by default,
//!   address- or address-and-port-dependent as options ([`Behavior`]).
//! - Address pooling paired (REQ-2): a subscriber's mappings all use one outside
//!   address. No port overloading (REQ-3); port preservation when the port is free in
//!   the subscriber's blocks, else port parity preservation (REQ-4).
//! - Timeouts (REQ-5, RFC 5382 REQ-5, RFC 5508 REQ-1): UDP (default 300 s), TCP
//!   established (7440 s) and transitory (240 s) from window-less state tracking of
//!   SYN/FIN/RST in both directions, ICMP query (60 s). Outbound packets refresh a
//!   session (REQ-6); inbound refresh is an option.
//! - Filtering (REQ-8, RFC 5382 REQ-3/4): endpoint-independent by default,
//!   address- or address-and-port-dependent as options; unsolicited inbound packets
//!   without a mapping are dropped silently.
//! - Hairpinning (REQ-9, RFC 5382 REQ-2, RFC 5508 REQ-7): an inside packet to an outside
//!   address of the pool is translated twice and leaves with the sender's outside
//!   address.
//! - ICMP (RFC 5508): query identifiers are mapped like ports (REQ-1/2); ICMP errors in
//!   both directions are matched to a session by their embedded packet, which is
//!   translated with its IP, L4 and the outer ICMP checksums (REQ-3); errors that
//!   match no session are dropped (REQ-4); sessions survive ICMP errors.
//! - Exhaustion (RFC 5508 REQ-8, RFC 6888 REQ-3/4): no port, no block, per-subscriber
//!   session limit or a full table drops the packet with a counter and answers
//!   Destination Unreachable code 13 (rate limited); existing sessions are untouched.
//! - CGNAT (RFC 6888, RFC 7422): port blocks per subscriber ([`alloc`]) with
//!   allocation/release records ([`log`], RFC 6888 §4 REQ-12).
//! - Fragments (RFC 4787 §11 REQ-14: in-order and out-of-order): IPv4 fragments are
//!   translated by virtual reassembly ([`frag`]): the first fragment like any packet,
//!   its result recorded per datagram (source, destination, protocol, identification)
//!   for the later fragments, which get the address rewrite only; fragments arriving
//!   before their first are held in a small bounded queue. Tiny first fragments and
//!   TCP fragments at offset 8 are dropped (RFC 1858). Fragmented ICMP errors are
//!   not translated (dropped, counted). The only cost on unfragmented packets is the
//!   flags/offset test that was there before.
//!
//! Fast path: sessions live in a preallocated array indexed from one bucketised hash
//! table ([`table`]) that holds four keys per flow (session inside/outside 5-tuples,
//! mapping inside/outside endpoints) and the subscriber keys. A batch is processed in
//! three passes (parse + hash + prefetch bucket, probe + prefetch session, translate),
//! the way VPP hides DRAM latency. Expiry is lazy: a session found expired on lookup
//! is removed, and [`Stage::tick`] scans a bounded number of slots per call. Nothing
//! allocates after [`Nat44::new`].
//!
//! Direction: packets arriving on a port listed in `inside_ports` go inside→outside;
//! all others outside→inside, and only those addressed to a pool address are touched.

pub mod alloc;
mod binding;
mod config;
pub mod frag;
pub mod log;
pub mod rewrite;
pub mod table;
pub use binding::BindError;
#[cfg(test)]
use config::parse_pool_entry;
pub use config::*;
pub use repool::PoolChange;
mod icmp;
mod reassembly;
pub mod repool;
mod session;
#[cfg(test)]
mod tests;
mod translate;

use self::alloc::{AllocError, Pool};
use self::frag::{FragKey, FragResult, FragTable, Held, HoldQueue, Record};
use self::log::{LogEvent, LogRecord, LogSink, RingLog};
use self::rewrite::{rd16, rd32, rewrite, rewrite_addr, rewrite_inner, ICMP, TCP, UDP};
use self::table::{hash, huge_vec, ipv4_offset, prefetch, FlowTable, NONE};
use crate::batch::{Batch, Next, Out, BATCH_SIZE};
use crate::buf::Pkt;
use crate::proto::ethernet::HEADER_LEN as ETH_LEN;
use crate::proto::icmpv4::{self, ErrorKind, QuoteLimit};
use crate::stage::{Counter, NodeStats, Stage};
use ::alloc::boxed::Box;
use ::alloc::string::String;
use ::alloc::vec;
use ::alloc::vec::Vec;
use core::fmt;
use core::net::Ipv4Addr;
use serde::Deserialize;

crate::drop_reasons! {
    /// Why `nat44` drops (RFC 4787, RFC 5382, RFC 5508, RFC 6888).
    pub enum NatDrop {
        Malformed = ("malformed", "IPv4 or transport header truncated or inconsistent"),
        Fragment = ("fragmented icmp error (not translated)", "an ICMP error that arrived fragmented is not translated"),
        ProtoUnsupported = ("protocol not translated", "IP protocol other than TCP, UDP and ICMP"),
        IcmpUnsupported = ("icmp type not translated", "ICMP type neither a query NAT maps nor an error it translates (RFC 5508 §3)"),
        NoSession = ("no session (unsolicited inbound)", "inbound packet that matches no mapping (RFC 4787 §5)"),
        Filtered = ("filtered (endpoint-dependent filtering)", "inbound from an endpoint the mapping's filtering does not admit (RFC 4787 §5)"),
        TableFull = ("session table full", "no room for a new session"),
        NoPort = ("no free port for subscriber", "all of the subscriber's external ports are in use"),
        NoBlock = ("no free port block", "no port block left in the pool for the subscriber (RFC 6888 §5)"),
        SessionLimit = ("subscriber session limit", "the subscriber reached its session limit (RFC 6888 §3)"),
        SubscribersFull = ("subscriber table full", "no room for a new subscriber"),
        IcmpErrorNoSession = ("icmp error matches no session", "the packet quoted in an ICMP error matches no session (RFC 5508 §4)"),
        FragTiny = ("tiny or overlapping fragment (RFC 1858)", "first fragment too short for the transport ports, or overlapping (RFC 1858)"),
        FragHoldFull = ("fragment hold queue full", "no room to hold a fragment that arrived before its first fragment"),
        FragExpired = ("fragment expired before its first fragment", "a held fragment timed out before its first fragment arrived"),
        HairpinRemote = ("hairpin to another worker's mapping", "hairpinned packet whose destination mapping another worker owns (several workers only)"),
        NoBinding = ("no port block bound to subscriber", "external port blocks: the inside address has no binding from the control plane"),
    }
}

/// Counters beyond the drop reasons.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct NatStats {
    pub sessions_created: u64,
    pub sessions_expired: u64,
    pub mappings_created: u64,
    pub hairpinned: u64,
    pub icmp_errors_translated: u64,
    pub icmp_errors_sent: u64,
    pub icmp_errors_rate_limited: u64,
    /// First fragments translated (their result recorded or, see `frag_table_full`,
    /// not).
    pub frag_first: u64,
    /// Non-first fragments translated on arrival.
    pub frag_translated: u64,
    /// Non-first fragments held for their first fragment.
    pub frag_held: u64,
    /// Held fragments translated and sent on.
    pub frag_released: u64,
    /// Held fragments dropped because their first fragment did not come in time.
    pub frag_expired: u64,
    /// First fragments whose result could not be recorded (set full).
    pub frag_table_full: u64,
    /// First fragments seen again while their entry was live (duplicates or a reused
    /// identification).
    pub frag_duplicate_first: u64,
    /// Port blocks allocated to subscribers (RFC 7422 bulk port allocation).
    pub blocks_allocated: u64,
    /// Port blocks released.
    pub blocks_released: u64,
    /// Mappings refused: the subscriber's ports or the pool's blocks were exhausted.
    pub block_alloc_failures: u64,
    /// Allocation/release log records written (to the ring or the sink).
    pub log_records: u64,
}

/// A 5-tuple as seen in one direction (ICMP queries: identifier as source port when
/// inside→outside, as destination port when outside→inside, the other port 0).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Flow {
    pub src: u32,
    pub dst: u32,
    pub sport: u16,
    pub dport: u16,
    pub proto: u8,
}

/// One translated session (a mapping plus one remote endpoint).
#[derive(Clone, Copy, Debug, Default)]
#[repr(C, align(64))]
pub struct Session {
    pub in_addr: u32,
    pub ext_addr: u32,
    pub rem_addr: u32,
    pub in_port: u16,
    pub ext_port: u16,
    pub rem_port: u16,
    pub proto: u8,
    /// TCP flags seen: see the `TCP_*` constants.
    pub tcp: u8,
    /// Last use in time units of 2^20 ns.
    pub last: u32,
    pub map: u32,
    next: u32,
    prev: u32,
    pub live: bool,
}

const TCP_SYN_IN: u8 = 1;
const TCP_SYN_OUT: u8 = 2;
const TCP_FIN_IN: u8 = 4;
const TCP_FIN_OUT: u8 = 8;
const TCP_RST: u8 = 16;

/// An address/port mapping (RFC 4787 terms) shared by its sessions.
#[derive(Clone, Copy, Debug, Default)]
pub struct Mapping {
    pub in_addr: u32,
    pub ext_addr: u32,
    /// Remote part of the mapping key (0 for endpoint-independent mapping).
    pub rem_addr: u32,
    pub in_port: u16,
    pub ext_port: u16,
    pub rem_port: u16,
    pub proto: u8,
    pub live: bool,
    pub sub: u32,
    head: u32,
    pub sessions: u32,
}

// Value tags in the flow table.
const K_SIN: u32 = 0;
const K_SOUT: u32 = 1;
const K_MIN: u32 = 2;
const K_MOUT: u32 = 3;
const K_SUB: u32 = 4;
const IDX_MASK: u32 = (1 << 29) - 1;

#[inline(always)]
fn tag(kind: u32, idx: u32) -> u32 {
    (kind << 29) | idx
}

#[inline(always)]
fn key4(kind: u32, a: u32, pa: u16, b: u32, pb: u16, proto: u8) -> u64 {
    hash(
        (u64::from(a) << 32) | u64::from(b),
        (u64::from(pa) << 48) | (u64::from(pb) << 32) | (u64::from(proto) << 8) | u64::from(kind),
    )
}

/// Most sessions of one mapping examined by address-dependent filtering.
const ADF_WALK: u32 = 256;

/// Time units: 2^20 ns (≈1.05 ms), wrapping u32 (≈52 days).
#[inline(always)]
fn units(ns: u64) -> u32 {
    (ns >> 20) as u32
}

fn secs_to_units(s: u32) -> u32 {
    ((u64::from(s) * 1_000_000_000) >> 20).min(u64::from(u32::MAX / 2)) as u32
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Act {
    Pass,
    Drop(NatDrop),
    In2Out,
    Out2In,
    ErrIn2Out,
    ErrOut2In,
    /// A non-first fragment (no transport header).
    FragIn2Out,
    FragOut2In,
    /// Owned by another worker (several workers): hand it there.
    Handoff(u16),
}

/// `Pre::frag`: not a fragment, the first fragment, a later one.
const FRAG_NONE: u8 = 0;
const FRAG_FIRST: u8 = 1;
const FRAG_REST: u8 = 2;

/// Per-packet result of the first pass.
#[derive(Clone, Copy, Debug)]
struct Pre {
    act: Act,
    l3: u16,
    l4: u16,
    end: u16,
    tcp_flags: u8,
    /// `FRAG_*`.
    frag: u8,
    /// IP identification (fragments only).
    ipid: u16,
    flow: Flow,
    h: u64,
    cand: u32,
}

const PRE0: Pre = Pre {
    act: Act::Pass,
    l3: 0,
    l4: 0,
    end: 0,
    tcp_flags: 0,
    frag: FRAG_NONE,
    ipid: 0,
    flow: Flow {
        src: 0,
        dst: 0,
        sport: 0,
        dport: 0,
        proto: 0,
    },
    h: 0,
    cand: NONE,
};

/// The NAT44 stage.
pub struct Nat44 {
    inside: u64,
    mapping: Behavior,
    filtering: Behavior,
    hairpinning: bool,
    inbound_refresh: bool,
    t_udp: u32,
    t_tcp_est: u32,
    t_tcp_trans: u32,
    t_icmp: u32,
    sess_limit: u32,
    cgnat_log: bool,
    external_blocks: bool,
    icmp_errors: bool,
    icmp_rate: u32,
    icmp_src: u32,
    icmp_window: u64,
    icmp_sent: u32,
    expiry_scan: u32,
    scan_cursor: u32,
    pool_lo: u32,
    pool_hi: u32,
    /// The pool is one contiguous range (membership is the range check).
    pool_dense: bool,
    table: FlowTable,
    sessions: Vec<Session>,
    sess_free: Vec<u32>,
    maps: Vec<Mapping>,
    map_free: Vec<u32>,
    pool: Pool,
    pre: Box<[Pre; BATCH_SIZE]>,
    now_ns: u64,
    /// Block allocation/release records (drained by the control plane).
    pub log: RingLog,
    sink: Option<Box<dyn LogSink>>,
    pub stats: NatStats,
    /// Virtual reassembly: datagram translations and held fragments.
    frags: FragTable,
    held: HoldQueue,
    /// Batch positions (after `dispatch`) of fragments to hold, as a bit set.
    hold_mask: [u64; BATCH_SIZE / 64],
    /// Fragments promised a hold slot in the current batch.
    hold_pending: usize,
    /// Set by `handle` for a non-first fragment to hold.
    hold_now: bool,
    /// Session used by the last translated packet (read for first fragments).
    last_sess: u32,
    /// A first fragment was recorded while fragments were held (scan the queue).
    release_due: bool,
    /// Held fragments expired by `tick`, not yet counted as drops.
    expired_uncounted: u64,
    /// Keys of the fragments promised a hold slot in the current batch.
    pending_keys: [FragKey; frag::HOLD_SLOTS],
    scratch: Box<Batch>,
    /// This worker's index and the number of workers (VPP nat44-ed style: sessions
    /// private to a worker, outside ports sliced among the workers).
    me: u16,
    workers: u16,
}

impl fmt::Debug for Nat44 {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Nat44")
            .field("sessions", &self.session_count())
            .field("table", &self.table)
            .field("stats", &self.stats)
            .finish()
    }
}

impl Nat44 {
    /// Builds the stage and allocates every table (start-up).
    pub fn new(cfg: &NatConfig) -> Result<Self, ConfigError> {
        Self::new_worker(cfg, 0, 1)
    }

    /// The stage of worker `me` among `workers` (each worker builds its own, with
    /// `max_sessions`/`max_subscribers` each). Sessions are private to a worker:
    /// inside→outside packets belong to the worker chosen by a hash of the inside
    /// (subscriber) address, so a subscriber's mappings, port blocks and session
    /// limit live on one worker; outside→inside packets and ICMP errors belong to
    /// the worker whose slice of the outside ports holds their destination port
    /// (the quoted source port for errors). A packet that arrives elsewhere is
    /// handed to its owner (`Next::Handoff`, the worker loop's hand-off rings):
    /// no table is shared, nothing is locked.
    pub fn new_worker(cfg: &NatConfig, me: u16, workers: u16) -> Result<Self, ConfigError> {
        let mut n = Self::build(cfg)?;
        let workers = workers.max(1);
        n.me = me.min(workers - 1);
        n.workers = workers;
        n.pool.set_slice(n.me, workers);
        Ok(n)
    }

    /// The worker that owns inside (subscriber) address `a` among `n`.
    #[inline(always)]
    pub fn inside_owner(a: u32, n: u16) -> u16 {
        Out::owner_of((a ^ (a >> 16)).wrapping_mul(0x9e37_79b1), n)
    }

    /// The worker whose slice holds outside port `port` (`None`: no block has it).
    pub fn port_owner(&self, port: u16) -> Option<u16> {
        self.pool.port_owner(port, self.workers)
    }

    fn build(cfg: &NatConfig) -> Result<Self, ConfigError> {
        cfg.validate()?;
        let mut addrs = Vec::new();
        for (lo, hi) in cfg.pool_ranges()? {
            addrs.extend(lo..=hi);
        }
        addrs.sort_unstable();
        addrs.dedup();
        let (Some(&pool_lo), Some(&pool_hi)) = (addrs.first(), addrs.last()) else {
            return Err(ConfigError::EmptyPool);
        };
        let span = u32::from(cfg.port_max) - u32::from(cfg.port_min) + 1;
        let (bs, maxb, limit, log) = match cfg.cgnat {
            Some(c) => (
                c.block_size,
                c.blocks_per_subscriber,
                c.sessions_per_subscriber,
                c.log,
            ),
            None => (256u16.min(span as u16), 32, u32::MAX, false),
        };
        let mut inside = 0u64;
        for &p in &cfg.inside_ports {
            // validate() kept p <= MAX_INSIDE_PORT
            inside |= 1u64.checked_shl(u32::from(p)).unwrap_or(0);
        }
        let n = cfg.max_sessions as usize;
        let keys = 4 * n + cfg.max_subscribers as usize;
        Ok(Nat44 {
            inside,
            mapping: cfg.mapping,
            filtering: cfg.filtering,
            hairpinning: cfg.hairpinning,
            inbound_refresh: cfg.inbound_refresh,
            t_udp: secs_to_units(cfg.timeouts.udp),
            t_tcp_est: secs_to_units(cfg.timeouts.tcp_established),
            t_tcp_trans: secs_to_units(cfg.timeouts.tcp_transitory),
            t_icmp: secs_to_units(cfg.timeouts.icmp),
            sess_limit: limit,
            cgnat_log: log,
            external_blocks: cfg.external_blocks,
            icmp_errors: cfg.icmp_errors,
            icmp_rate: cfg.icmp_error_rate,
            icmp_src: cfg.icmp_source.map(u32::from).unwrap_or(pool_lo),
            icmp_window: 0,
            icmp_sent: 0,
            expiry_scan: cfg.expiry_scan.max(1),
            scan_cursor: 0,
            pool_lo,
            pool_hi,
            pool_dense: (pool_hi - pool_lo) as usize + 1 == addrs.len(),
            table: FlowTable::new(keys),
            sessions: huge_vec(n, Session::default()),
            sess_free: (0..n as u32).rev().collect(),
            maps: huge_vec(n, Mapping::default()),
            map_free: (0..n as u32).rev().collect(),
            pool: Pool::new(
                &addrs,
                cfg.port_min,
                cfg.port_max,
                bs,
                maxb,
                cfg.max_subscribers,
            ),
            pre: Box::new([PRE0; BATCH_SIZE]),
            now_ns: 0,
            log: RingLog::new(cfg.log_capacity as usize),
            sink: None,
            stats: NatStats::default(),
            frags: FragTable::new(units(frag::LIFETIME_MS * 1_000_000)),
            held: HoldQueue::new(units(frag::LIFETIME_MS * 1_000_000)),
            hold_mask: [0; BATCH_SIZE / 64],
            hold_pending: 0,
            hold_now: false,
            last_sess: NONE,
            release_due: false,
            expired_uncounted: 0,
            pending_keys: [FragKey::default(); frag::HOLD_SLOTS],
            scratch: Box::new(Batch::new()),
            me: 0,
            workers: 1,
        })
    }

    /// Sends log records to `sink` instead of the built-in ring.
    pub fn set_log_sink(&mut self, sink: Box<dyn LogSink>) {
        self.sink = Some(sink);
    }

    /// Sessions in use.
    pub fn session_count(&self) -> usize {
        self.sessions.len() - self.sess_free.len()
    }

    /// Mappings in use.
    pub fn mapping_count(&self) -> usize {
        self.maps.len() - self.map_free.len()
    }

    /// Subscribers holding ports or sessions.
    pub fn subscriber_count(&self) -> usize {
        self.pool.subscribers()
    }

    /// Port blocks allocated.
    pub fn blocks_in_use(&self) -> u64 {
        self.pool.blocks_in_use
    }

    /// Non-first fragments held waiting for their first fragment.
    pub fn fragments_held(&self) -> usize {
        self.held.len()
    }

    /// Bytes held by the session, mapping and index tables.
    pub fn memory(&self) -> usize {
        self.table.memory()
            + self.sessions.len() * core::mem::size_of::<Session>()
            + self.maps.len() * core::mem::size_of::<Mapping>()
            + self.frags.memory()
    }

    /// The outside endpoint of the session of inside flow `f` (a packet from inside),
    /// without touching timers.
    pub fn lookup_in2out(&self, f: &Flow) -> Option<(Ipv4Addr, u16)> {
        let s = self.find_sess_in(f)?;
        let s = self.sessions.get(s as usize)?;
        Some((Ipv4Addr::from(s.ext_addr), s.ext_port))
    }

    /// Every live session (control plane, tests).
    pub fn sessions(&self) -> impl Iterator<Item = &Session> {
        self.sessions.iter().filter(|s| s.live)
    }
}

impl Stage for Nat44 {
    fn name(&self) -> &'static str {
        "nat44"
    }

    fn errors(&self) -> &'static [&'static str] {
        NatDrop::NAMES
    }

    fn error_help(&self) -> &'static [&'static str] {
        NatDrop::HELP
    }

    fn as_any_mut(&mut self) -> Option<&mut dyn core::any::Any> {
        Some(self)
    }

    fn counters(&self, f: &mut dyn FnMut(Counter)) {
        let st = &self.stats;
        f(Counter::gauge(
            "sessions-active",
            "sessions in use",
            self.session_count() as u64,
        ));
        f(Counter::gauge(
            "mappings-active",
            "mappings (endpoint-independent bindings) in use",
            self.mapping_count() as u64,
        ));
        f(Counter::gauge(
            "subscribers",
            "subscribers holding ports or sessions",
            self.subscriber_count() as u64,
        ));
        f(Counter::gauge(
            "port-blocks-in-use",
            "port blocks allocated to subscribers",
            self.blocks_in_use(),
        ));
        f(Counter::gauge(
            "pool-addresses-draining",
            "addresses removed from the pool at run time that still hold port blocks",
            self.draining_addresses() as u64,
        ));
        f(Counter::gauge(
            "fragments-held",
            "non-first fragments waiting for their first fragment",
            self.fragments_held() as u64,
        ));
        f(Counter::total(
            "sessions-created",
            "sessions created",
            st.sessions_created,
        ));
        f(Counter::total(
            "sessions-expired",
            "sessions removed by their idle timer",
            st.sessions_expired,
        ));
        f(Counter::total(
            "mappings-created",
            "mappings created",
            st.mappings_created,
        ));
        f(Counter::total(
            "port-blocks-allocated",
            "port blocks allocated (RFC 7422)",
            st.blocks_allocated,
        ));
        f(Counter::total(
            "port-blocks-released",
            "port blocks released",
            st.blocks_released,
        ));
        f(Counter::total(
            "port-alloc-failures",
            "mappings refused for want of a port or a port block",
            st.block_alloc_failures,
        ));
        f(Counter::total(
            "hairpinned",
            "packets hairpinned back inside (RFC 4787 §6)",
            st.hairpinned,
        ));
        f(Counter::total(
            "icmp-errors-translated",
            "ICMP errors translated with their quoted packet (RFC 5508 §4)",
            st.icmp_errors_translated,
        ));
        f(Counter::total(
            "icmp-errors-sent",
            "ICMP errors sent for exhausted resources (RFC 6888 §4)",
            st.icmp_errors_sent,
        ));
        f(Counter::total(
            "icmp-errors-rate-limited",
            "ICMP errors not sent: rate limit",
            st.icmp_errors_rate_limited,
        ));
        f(Counter::total(
            "fragments-first",
            "first fragments translated",
            st.frag_first,
        ));
        f(Counter::total(
            "fragments-translated",
            "non-first fragments translated on arrival",
            st.frag_translated,
        ));
        f(Counter::total(
            "fragments-held-total",
            "non-first fragments held for their first fragment",
            st.frag_held,
        ));
        f(Counter::total(
            "fragments-released",
            "held fragments translated and sent on",
            st.frag_released,
        ));
        f(Counter::total(
            "fragments-expired",
            "held fragments whose first fragment never came",
            st.frag_expired,
        ));
        f(Counter::total(
            "fragment-table-full",
            "first fragments whose translation could not be recorded",
            st.frag_table_full,
        ));
        f(Counter::total(
            "log-records",
            "port-block log records written",
            st.log_records,
        ));
        f(Counter::total(
            "log-records-lost",
            "log records lost: ring full",
            self.log.lost,
        ));
    }

    fn process(&mut self, batch: &mut Batch, node: &mut NodeStats, out: &mut Out) {
        self.now_ns = out.now_ns;
        let now = units(out.now_ns);
        let n = batch.len().min(BATCH_SIZE);
        // Pass 1: parse, hash, prefetch the home bucket.
        let steer = self.workers > 1;
        for (i, p) in batch.iter().enumerate() {
            let mut r = self.parse(p);
            if steer {
                self.steer(&mut r, p);
            }
            if matches!(r.act, Act::In2Out | Act::Out2In) {
                self.table.prefetch(r.h);
            }
            if let Some(slot) = self.pre.get_mut(i) {
                *slot = r;
            }
        }
        // Pass 2: first signature match per packet, prefetch its session.
        for i in 0..n {
            let Some(r) = self.pre.get(i).copied() else {
                continue;
            };
            if matches!(r.act, Act::In2Out | Act::Out2In) {
                let c = self.table.first_candidate(r.h);
                if let Some(s) = self.sessions.get((c & IDX_MASK) as usize) {
                    prefetch(s as *const Session as *const u8);
                } else if r.act == Act::In2Out {
                    // Probably a new flow: warm the mapping and subscriber buckets.
                    let f = &r.flow;
                    let (ra, rp) = self.map_remote(f);
                    self.table
                        .prefetch(key4(K_MIN, f.src, f.sport, ra, rp, f.proto));
                    self.table.prefetch(key4(K_SUB, f.src, 0, 0, 0, 0));
                }
                if let Some(slot) = self.pre.get_mut(i) {
                    slot.cand = c;
                }
            }
        }
        // Pass 3: translate.
        let mut i = 0usize;
        let mut kept = 0usize;
        batch.dispatch(node, out, |p, out| {
            let pre = self.pre.get(i).copied().unwrap_or(PRE0);
            i += 1;
            let next = self.handle(p, &pre, now, out);
            if next == Next::Keep {
                if pre.frag != FRAG_NONE {
                    self.fragment_kept(p, &pre, now, kept);
                }
                kept += 1;
            }
            next
        });
        // Fragments: hold, release, expire (only when there is something to do).
        if self.hold_pending > 0 || self.release_due {
            self.after_batch(batch, node, out, now);
        }
        if !self.held.is_empty() {
            self.expire_held(now, &mut out.cache);
        }
        if self.expired_uncounted > 0 {
            if let Some(c) = node.drops.get_mut(usize::from(NatDrop::FragExpired.code())) {
                *c += self.expired_uncounted;
            }
            self.expired_uncounted = 0;
        }
    }

    fn tick(&mut self, out: &mut Out) {
        let n = self.expiry_scan;
        self.expire(out.now_ns, n);
        self.expire_held(units(out.now_ns), &mut out.cache);
    }
}
