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
pub mod frag;
pub mod log;
pub mod rewrite;
pub mod table;
#[cfg(test)]
mod tests;

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

/// Mapping or filtering behaviour (RFC 4787 §4.1 / §5).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Behavior {
    #[default]
    EndpointIndependent,
    AddressDependent,
    AddressAndPortDependent,
}

/// Idle timeouts in seconds.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Timeouts {
    /// RFC 4787 REQ-5: at least 120 s, 300 s recommended.
    pub udp: u32,
    /// RFC 5382 REQ-5: at least 2 h 4 min.
    pub tcp_established: u32,
    /// RFC 5382 REQ-5: at least 4 min.
    pub tcp_transitory: u32,
    /// RFC 5508 REQ-1: at least 60 s.
    pub icmp: u32,
}

impl Default for Timeouts {
    fn default() -> Self {
        Timeouts {
            udp: 300,
            tcp_established: 7440,
            tcp_transitory: 240,
            icmp: 60,
        }
    }
}

/// CGNAT port-block settings (RFC 6888, RFC 7422).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct CgnatConfig {
    /// Ports per block.
    pub block_size: u16,
    /// Blocks one subscriber may hold (at most 32).
    pub blocks_per_subscriber: u16,
    /// Sessions one subscriber may hold (RFC 6888 REQ-4).
    pub sessions_per_subscriber: u32,
    /// Log block allocations/releases (RFC 6888 §4).
    pub log: bool,
}

impl Default for CgnatConfig {
    fn default() -> Self {
        CgnatConfig {
            block_size: 512,
            blocks_per_subscriber: 4,
            sessions_per_subscriber: 4000,
            log: true,
        }
    }
}

/// The `[nat]` section of a VNF config.
#[derive(Clone, Debug, PartialEq, Eq, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct NatConfig {
    /// Ports whose traffic is inside→outside.
    pub inside_ports: Vec<u16>,
    /// Outside addresses: `a.b.c.d`, `a.b.c.d/len` or `a.b.c.d-e.f.g.h`.
    pub pool: Vec<String>,
    pub mapping: Behavior,
    pub filtering: Behavior,
    pub hairpinning: bool,
    /// Inbound packets refresh the session timer too.
    pub inbound_refresh: bool,
    /// Session table size (sessions per worker).
    pub max_sessions: u32,
    pub max_subscribers: u32,
    /// Outside port range used for mappings.
    pub port_min: u16,
    pub port_max: u16,
    pub timeouts: Timeouts,
    /// Port blocks per subscriber; without it plain NAPT (blocks of 256 ports, up to 32
    /// per inside host, no session limit, no log).
    pub cgnat: Option<CgnatConfig>,
    /// Answer exhaustion with ICMP Destination Unreachable code 13 (RFC 5508 REQ-8).
    pub icmp_errors: bool,
    /// Most ICMP errors sent per second.
    pub icmp_error_rate: u32,
    /// Source address of those errors (default: the first pool address).
    pub icmp_source: Option<Ipv4Addr>,
    /// Session slots examined for expiry per `tick`.
    pub expiry_scan: u32,
    /// Capacity of the in-memory log ring.
    pub log_capacity: u32,
}

impl Default for NatConfig {
    fn default() -> Self {
        NatConfig {
            inside_ports: vec![0],
            pool: Vec::new(),
            mapping: Behavior::EndpointIndependent,
            filtering: Behavior::EndpointIndependent,
            hairpinning: true,
            inbound_refresh: true,
            max_sessions: 1 << 20,
            max_subscribers: 1 << 16,
            port_min: 1024,
            port_max: 65535,
            timeouts: Timeouts::default(),
            cgnat: None,
            icmp_errors: true,
            icmp_error_rate: 1000,
            icmp_source: None,
            expiry_scan: 4096,
            log_capacity: 65536,
        }
    }
}

/// Most sessions (and mappings) per worker: 2^24, about 3 GiB of tables.
pub const MAX_SESSIONS: u32 = 1 << 24;
/// Most subscribers (inside addresses holding ports) per worker.
pub const MAX_SUBSCRIBERS: u32 = 1 << 24;
/// Most records the in-memory log ring holds.
pub const MAX_LOG_CAPACITY: u32 = 1 << 22;
/// Most outside (pool) addresses.
pub const MAX_POOL: usize = 4096;
/// Highest port number `inside_ports` may name (the set is a 64-bit mask).
pub const MAX_INSIDE_PORT: u16 = 63;

/// A configuration the stage cannot be built from. The messages name the field but
/// not the section: the caller knows where the section came from (`nat: ...`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ConfigError {
    /// A pool entry does not parse.
    BadPool(String),
    EmptyPool,
    /// More than [`MAX_POOL`] pool addresses.
    PoolTooLarge,
    BadPortRange,
    BadBlockSize,
    /// A count that is zero or above its limit: the field and its limit.
    BadLimit(&'static str),
    /// A value out of its range: the field, the value, the lowest and highest allowed.
    OutOfRange(&'static str, u64, u64, u64),
    /// `inside_ports` names a port twice.
    DuplicateInsidePort(u16),
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ConfigError::BadPool(s) => write!(f, "pool: bad entry {s:?}"),
            ConfigError::EmptyPool => f.write_str("pool: empty"),
            ConfigError::PoolTooLarge => {
                write!(f, "pool: larger than {MAX_POOL} addresses")
            }
            ConfigError::BadPortRange => {
                f.write_str("port_min must be 1..=port_max (port 0 is not a port)")
            }
            ConfigError::BadBlockSize => f.write_str(
                "cgnat: block_size must be 8..=port range and blocks_per_subscriber 1..=32",
            ),
            ConfigError::BadLimit(w) => write!(f, "{w} out of range"),
            ConfigError::OutOfRange(w, v, min, max) => {
                write!(f, "{w}: {v} is not in {min}..={max}")
            }
            ConfigError::DuplicateInsidePort(p) => {
                write!(f, "inside_ports: port {p} listed twice")
            }
        }
    }
}

impl core::error::Error for ConfigError {}

impl NatConfig {
    /// The pool as inclusive address ranges, checked (at most [`MAX_POOL`]
    /// addresses, counted without allocating per address).
    pub fn pool_ranges(&self) -> Result<Vec<(u32, u32)>, ConfigError> {
        let mut v = Vec::with_capacity(self.pool.len().min(MAX_POOL));
        let mut total = 0u64;
        for e in &self.pool {
            let (lo, hi) = parse_pool_entry(e)?;
            total += u64::from(hi - lo) + 1;
            if total > MAX_POOL as u64 {
                return Err(ConfigError::PoolTooLarge);
            }
            v.push((lo, hi));
        }
        if v.is_empty() {
            return Err(ConfigError::EmptyPool);
        }
        Ok(v)
    }

    /// Every check [`Nat44::new`] makes, without allocating the tables: sizes within
    /// [`MAX_SESSIONS`], [`MAX_SUBSCRIBERS`], [`MAX_LOG_CAPACITY`], [`MAX_POOL`];
    /// ports 1..=65535; `inside_ports` at most [`MAX_INSIDE_PORT`], each once.
    pub fn validate(&self) -> Result<(), ConfigError> {
        self.pool_ranges()?;
        if self.port_min > self.port_max || self.port_min == 0 {
            return Err(ConfigError::BadPortRange);
        }
        let span = u32::from(self.port_max) - u32::from(self.port_min) + 1;
        let (bs, maxb) = match self.cgnat {
            Some(c) => (c.block_size, c.blocks_per_subscriber),
            None => (256u16.min(span as u16), 32),
        };
        if bs < 8 || u32::from(bs) > span || maxb == 0 || usize::from(maxb) > alloc::MAX_BLOCKS {
            return Err(ConfigError::BadBlockSize);
        }
        if let Some(c) = self.cgnat {
            if c.sessions_per_subscriber == 0 {
                return Err(ConfigError::OutOfRange(
                    "cgnat.sessions_per_subscriber",
                    0,
                    1,
                    u64::from(u32::MAX),
                ));
            }
        }
        let sizes = [
            ("max_sessions", self.max_sessions, MAX_SESSIONS),
            ("max_subscribers", self.max_subscribers, MAX_SUBSCRIBERS),
            ("log_capacity", self.log_capacity, MAX_LOG_CAPACITY),
        ];
        for (what, v, max) in sizes {
            if v == 0 || v > max {
                return Err(ConfigError::OutOfRange(
                    what,
                    u64::from(v),
                    1,
                    u64::from(max),
                ));
            }
        }
        let mut seen = 0u64;
        for &p in &self.inside_ports {
            if p > MAX_INSIDE_PORT {
                return Err(ConfigError::OutOfRange(
                    "inside_ports",
                    u64::from(p),
                    0,
                    u64::from(MAX_INSIDE_PORT),
                ));
            }
            if seen & (1 << p) != 0 {
                return Err(ConfigError::DuplicateInsidePort(p));
            }
            seen |= 1 << p;
        }
        Ok(())
    }
}

/// Parses a pool entry into an inclusive address range.
fn parse_pool_entry(s: &str) -> Result<(u32, u32), ConfigError> {
    let bad = || ConfigError::BadPool(String::from(s));
    let s = s.trim();
    if let Some((a, len)) = s.split_once('/') {
        let a: Ipv4Addr = a.parse().map_err(|_| bad())?;
        let len: u32 = len.parse().map_err(|_| bad())?;
        if len > 32 {
            return Err(bad());
        }
        let mask = if len == 0 { 0 } else { u32::MAX << (32 - len) };
        let lo = u32::from(a) & mask;
        Ok((lo, lo | !mask))
    } else if let Some((a, b)) = s.split_once('-') {
        let a: Ipv4Addr = a.trim().parse().map_err(|_| bad())?;
        let b: Ipv4Addr = b.trim().parse().map_err(|_| bad())?;
        if u32::from(b) < u32::from(a) {
            return Err(bad());
        }
        Ok((a.into(), b.into()))
    } else {
        let a: Ipv4Addr = s.parse().map_err(|_| bad())?;
        Ok((a.into(), a.into()))
    }
}

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

    #[inline(always)]
    fn is_inside(&self, port: u16) -> bool {
        port < 64 && self.inside & (1 << port) != 0
    }

    #[inline(always)]
    fn in_pool(&self, a: u32) -> bool {
        a >= self.pool_lo
            && a <= self.pool_hi
            && (self.pool_dense || self.pool.addr_index(a).is_some())
    }

    #[inline(always)]
    fn timeout(&self, s: &Session) -> u32 {
        match s.proto {
            UDP => self.t_udp,
            TCP => {
                let both = TCP_SYN_IN | TCP_SYN_OUT;
                if s.tcp & both == both && s.tcp & (TCP_RST | TCP_FIN_IN | TCP_FIN_OUT) == 0 {
                    self.t_tcp_est
                } else if s.tcp & (TCP_FIN_IN | TCP_FIN_OUT) != 0
                    && s.tcp & (TCP_FIN_IN | TCP_FIN_OUT) != (TCP_FIN_IN | TCP_FIN_OUT)
                    && s.tcp & TCP_RST == 0
                    && s.tcp & both == both
                {
                    // Half-closed: still established until both FINs are seen.
                    self.t_tcp_est
                } else {
                    self.t_tcp_trans
                }
            }
            _ => self.t_icmp,
        }
    }

    #[inline(always)]
    fn expired(&self, s: &Session, now: u32) -> bool {
        now.wrapping_sub(s.last) > self.timeout(s) && (now.wrapping_sub(s.last) as i32) > 0
    }

    #[inline]
    fn find_sess_in(&self, f: &Flow) -> Option<u32> {
        let h = key4(K_SIN, f.src, f.sport, f.dst, f.dport, f.proto);
        self.find_sess_in_h(f, h)
    }

    #[inline(always)]
    fn sess_in_eq(&self, v: u32, f: &Flow) -> bool {
        v >> 29 == K_SIN
            && self.sessions.get((v & IDX_MASK) as usize).is_some_and(|s| {
                s.live
                    && s.in_addr == f.src
                    && s.in_port == f.sport
                    && s.rem_addr == f.dst
                    && s.rem_port == f.dport
                    && s.proto == f.proto
            })
    }

    #[inline(always)]
    fn sess_out_eq(&self, v: u32, f: &Flow) -> bool {
        v >> 29 == K_SOUT
            && self.sessions.get((v & IDX_MASK) as usize).is_some_and(|s| {
                s.live
                    && s.rem_addr == f.src
                    && s.rem_port == f.sport
                    && s.ext_addr == f.dst
                    && s.ext_port == f.dport
                    && s.proto == f.proto
            })
    }

    #[inline]
    fn find_sess_in_h(&self, f: &Flow, h: u64) -> Option<u32> {
        self.table
            .find(h, |v| self.sess_in_eq(v, f))
            .map(|v| v & IDX_MASK)
    }

    #[inline]
    fn find_sess_out_h(&self, f: &Flow, h: u64) -> Option<u32> {
        self.table
            .find(h, |v| self.sess_out_eq(v, f))
            .map(|v| v & IDX_MASK)
    }

    /// The mapping-key remote part under the configured mapping behaviour.
    #[inline]
    fn map_remote(&self, f: &Flow) -> (u32, u16) {
        match self.mapping {
            Behavior::EndpointIndependent => (0, 0),
            Behavior::AddressDependent => (f.dst, 0),
            Behavior::AddressAndPortDependent => (f.dst, f.dport),
        }
    }

    fn find_map_in(&self, f: &Flow) -> Option<u32> {
        let (ra, rp) = self.map_remote(f);
        let h = key4(K_MIN, f.src, f.sport, ra, rp, f.proto);
        self.table
            .find(h, |v| {
                v >> 29 == K_MIN
                    && self.maps.get((v & IDX_MASK) as usize).is_some_and(|m| {
                        m.live
                            && m.in_addr == f.src
                            && m.in_port == f.sport
                            && m.rem_addr == ra
                            && m.rem_port == rp
                            && m.proto == f.proto
                    })
            })
            .map(|v| v & IDX_MASK)
    }

    fn find_map_out(&self, proto: u8, ext: u32, ext_port: u16) -> Option<u32> {
        let h = key4(K_MOUT, ext, ext_port, 0, 0, proto);
        self.table
            .find(h, |v| {
                v >> 29 == K_MOUT
                    && self.maps.get((v & IDX_MASK) as usize).is_some_and(|m| {
                        m.live && m.ext_addr == ext && m.ext_port == ext_port && m.proto == proto
                    })
            })
            .map(|v| v & IDX_MASK)
    }

    fn find_sub(&self, inside: u32) -> Option<u32> {
        let h = key4(K_SUB, inside, 0, 0, 0, 0);
        self.table
            .find(h, |v| {
                v >> 29 == K_SUB
                    && self
                        .pool
                        .subs
                        .get((v & IDX_MASK) as usize)
                        .is_some_and(|s| s.live && s.inside == inside)
            })
            .map(|v| v & IDX_MASK)
    }

    fn emit_log(&mut self, r: &LogRecord) {
        match r.event {
            LogEvent::Alloc => self.stats.blocks_allocated += 1,
            LogEvent::Release => self.stats.blocks_released += 1,
        }
        if !self.cgnat_log {
            return;
        }
        self.stats.log_records += 1;
        match self.sink.as_mut() {
            Some(s) => s.record(r),
            None => self.log.record(r),
        }
    }

    /// Creates a mapping for inside flow `f` (subscriber, port, keys).
    fn new_mapping(&mut self, f: &Flow) -> Result<u32, NatDrop> {
        let sub = match self.find_sub(f.src) {
            Some(s) => s,
            None => {
                let s = self
                    .pool
                    .new_subscriber(f.src)
                    .ok_or(NatDrop::SubscribersFull)?;
                if !self
                    .table
                    .insert(key4(K_SUB, f.src, 0, 0, 0, 0), tag(K_SUB, s))
                {
                    self.pool.free_subscriber(s);
                    return Err(NatDrop::TableFull);
                }
                s
            }
        };
        let Some(m) = self.map_free.pop() else {
            self.release_sub_if_idle(sub);
            return Err(NatDrop::TableFull);
        };
        let now_ns = self.now_ns;
        let mut recs: [Option<LogRecord>; 1] = [None];
        let got = self
            .pool
            .alloc_port(sub, f.proto, f.sport, now_ns, &mut |r| recs[0] = Some(*r));
        if let Some(r) = recs[0] {
            self.emit_log(&r);
        }
        let (ext, port) = match got {
            Ok(x) => x,
            Err(e) => {
                self.map_free.push(m);
                self.release_sub_if_idle(sub);
                self.stats.block_alloc_failures += 1;
                return Err(match e {
                    AllocError::NoPort => NatDrop::NoPort,
                    AllocError::NoBlock => NatDrop::NoBlock,
                });
            }
        };
        let (ra, rp) = self.map_remote(f);
        let mp = Mapping {
            in_addr: f.src,
            ext_addr: ext,
            rem_addr: ra,
            in_port: f.sport,
            ext_port: port,
            rem_port: rp,
            proto: f.proto,
            live: true,
            sub,
            head: NONE,
            sessions: 0,
        };
        if let Some(slot) = self.maps.get_mut(m as usize) {
            *slot = mp;
        }
        let ok1 = self
            .table
            .insert(key4(K_MIN, f.src, f.sport, ra, rp, f.proto), tag(K_MIN, m));
        let ok2 = ok1
            && self
                .table
                .insert(key4(K_MOUT, ext, port, 0, 0, f.proto), tag(K_MOUT, m));
        if let Some(s) = self.pool.subs.get_mut(sub as usize) {
            s.mappings += 1;
        }
        self.stats.mappings_created += 1;
        if !ok2 {
            if ok1 {
                self.table
                    .remove(key4(K_MIN, f.src, f.sport, ra, rp, f.proto), tag(K_MIN, m));
            }
            self.free_mapping_port(m);
            return Err(NatDrop::TableFull);
        }
        Ok(m)
    }

    fn release_sub_if_idle(&mut self, sub: u32) {
        let Some(s) = self.pool.subs.get(sub as usize) else {
            return;
        };
        if s.live && s.nblocks == 0 && s.sessions == 0 && s.mappings == 0 {
            let inside = s.inside;
            self.table
                .remove(key4(K_SUB, inside, 0, 0, 0, 0), tag(K_SUB, sub));
            self.pool.free_subscriber(sub);
        }
    }

    /// Releases mapping `m`'s port and slot (keys must already be out of the table).
    fn free_mapping_port(&mut self, m: u32) {
        let Some(mp) = self.maps.get_mut(m as usize) else {
            return;
        };
        if !mp.live {
            return;
        }
        mp.live = false;
        let mp = *mp;
        self.map_free.push(m);
        let now_ns = self.now_ns;
        let mut recs: [Option<LogRecord>; 1] = [None];
        self.pool.free_port(
            mp.sub,
            mp.ext_addr,
            mp.proto,
            mp.ext_port,
            now_ns,
            &mut |r| recs[0] = Some(*r),
        );
        if let Some(r) = recs[0] {
            self.emit_log(&r);
        }
        if let Some(s) = self.pool.subs.get_mut(mp.sub as usize) {
            s.mappings = s.mappings.saturating_sub(1);
        }
        self.release_sub_if_idle(mp.sub);
    }

    /// Adds a session under mapping `m` with remote endpoint (`ra`, `rp`).
    fn new_session(&mut self, m: u32, ra: u32, rp: u16, now: u32) -> Result<u32, NatDrop> {
        let Some(mp) = self.maps.get(m as usize).copied() else {
            return Err(NatDrop::TableFull);
        };
        if self
            .pool
            .subs
            .get(mp.sub as usize)
            .is_some_and(|s| s.sessions >= self.sess_limit)
        {
            return Err(NatDrop::SessionLimit);
        }
        let Some(s) = self.sess_free.pop() else {
            return Err(NatDrop::TableFull);
        };
        let sess = Session {
            in_addr: mp.in_addr,
            ext_addr: mp.ext_addr,
            rem_addr: ra,
            in_port: mp.in_port,
            ext_port: mp.ext_port,
            rem_port: rp,
            proto: mp.proto,
            tcp: 0,
            last: now,
            map: m,
            next: mp.head,
            prev: NONE,
            live: true,
        };
        let hin = key4(K_SIN, sess.in_addr, sess.in_port, ra, rp, sess.proto);
        let hout = key4(K_SOUT, ra, rp, sess.ext_addr, sess.ext_port, sess.proto);
        if !self.table.insert(hin, tag(K_SIN, s)) {
            self.sess_free.push(s);
            return Err(NatDrop::TableFull);
        }
        if !self.table.insert(hout, tag(K_SOUT, s)) {
            self.table.remove(hin, tag(K_SIN, s));
            self.sess_free.push(s);
            return Err(NatDrop::TableFull);
        }
        if let Some(h) = self.sessions.get_mut(mp.head as usize) {
            h.prev = s;
        }
        if let Some(slot) = self.sessions.get_mut(s as usize) {
            *slot = sess;
        }
        if let Some(mm) = self.maps.get_mut(m as usize) {
            mm.head = s;
            mm.sessions += 1;
        }
        if let Some(sb) = self.pool.subs.get_mut(mp.sub as usize) {
            sb.sessions += 1;
        }
        self.stats.sessions_created += 1;
        Ok(s)
    }

    /// Removes session `s`, and its mapping when it was the last one.
    fn delete_session(&mut self, s: u32) {
        let Some(sess) = self.sessions.get_mut(s as usize) else {
            return;
        };
        if !sess.live {
            return;
        }
        sess.live = false;
        let sess = *sess;
        self.sess_free.push(s);
        self.table.remove(
            key4(
                K_SIN,
                sess.in_addr,
                sess.in_port,
                sess.rem_addr,
                sess.rem_port,
                sess.proto,
            ),
            tag(K_SIN, s),
        );
        self.table.remove(
            key4(
                K_SOUT,
                sess.rem_addr,
                sess.rem_port,
                sess.ext_addr,
                sess.ext_port,
                sess.proto,
            ),
            tag(K_SOUT, s),
        );
        if let Some(p) = self.sessions.get_mut(sess.prev as usize) {
            p.next = sess.next;
        }
        if let Some(n) = self.sessions.get_mut(sess.next as usize) {
            n.prev = sess.prev;
        }
        let m = sess.map;
        let Some(mp) = self.maps.get_mut(m as usize) else {
            return;
        };
        if mp.head == s {
            mp.head = sess.next;
        }
        mp.sessions = mp.sessions.saturating_sub(1);
        let mp = *mp;
        if let Some(sb) = self.pool.subs.get_mut(mp.sub as usize) {
            sb.sessions = sb.sessions.saturating_sub(1);
        }
        if mp.sessions == 0 {
            self.table.remove(
                key4(
                    K_MIN,
                    mp.in_addr,
                    mp.in_port,
                    mp.rem_addr,
                    mp.rem_port,
                    mp.proto,
                ),
                tag(K_MIN, m),
            );
            self.table.remove(
                key4(K_MOUT, mp.ext_addr, mp.ext_port, 0, 0, mp.proto),
                tag(K_MOUT, m),
            );
            self.free_mapping_port(m);
        }
    }

    /// Expires up to `n` session slots from the scan cursor; returns how many expired.
    pub fn expire(&mut self, now_ns: u64, n: u32) -> u32 {
        self.now_ns = now_ns;
        let now = units(now_ns);
        let len = self.sessions.len() as u32;
        let mut done = 0;
        let mut left = n.min(len);
        // In rounds of up to 64 expired sessions: find them, prefetch their table
        // buckets and mappings, then delete (hides the random misses of deletion).
        let mut dead = [0u32; 64];
        while left > 0 {
            let mut k = 0;
            while left > 0 && k < dead.len() {
                left -= 1;
                let i = self.scan_cursor;
                self.scan_cursor = if i + 1 >= len { 0 } else { i + 1 };
                if let Some(s) = self.sessions.get(i as usize) {
                    if s.live && self.expired(s, now) {
                        self.table.prefetch(key4(
                            K_SIN, s.in_addr, s.in_port, s.rem_addr, s.rem_port, s.proto,
                        ));
                        self.table.prefetch(key4(
                            K_SOUT, s.rem_addr, s.rem_port, s.ext_addr, s.ext_port, s.proto,
                        ));
                        if let Some(m) = self.maps.get(s.map as usize) {
                            prefetch(m as *const Mapping as *const u8);
                        }
                        if let Some(d) = dead.get_mut(k) {
                            *d = i;
                        }
                        k += 1;
                    }
                }
            }
            for &i in dead.iter().take(k) {
                let m = self.sessions.get(i as usize).map_or(NONE, |s| s.map);
                if let Some(mp) = self.maps.get(m as usize) {
                    if mp.sessions == 1 {
                        self.table.prefetch(key4(
                            K_MIN,
                            mp.in_addr,
                            mp.in_port,
                            mp.rem_addr,
                            mp.rem_port,
                            mp.proto,
                        ));
                        self.table
                            .prefetch(key4(K_MOUT, mp.ext_addr, mp.ext_port, 0, 0, mp.proto));
                    }
                }
            }
            for &i in dead.iter().take(k) {
                self.delete_session(i);
                self.stats.sessions_expired += 1;
                done += 1;
            }
        }
        done
    }

    /// First pass: parse one packet.
    #[inline(always)]
    fn parse(&self, p: &Pkt) -> Pre {
        let mut r = PRE0;
        let d = p.data();
        let Some(l3) = ipv4_offset(d) else {
            return r;
        };
        let Some(ip) = d
            .get(l3..l3 + 20)
            .and_then(|x| <&[u8; 20]>::try_from(x).ok())
        else {
            r.act = Act::Drop(NatDrop::Malformed);
            return r;
        };
        let ihl = usize::from(ip[0] & 0x0f) * 4;
        let tl = usize::from(u16::from_be_bytes([ip[2], ip[3]]));
        if ip[0] >> 4 != 4 || ihl < 20 || tl < ihl || l3 + tl > d.len() {
            r.act = Act::Drop(NatDrop::Malformed);
            return r;
        }
        let inside = self.is_inside(p.meta.port);
        let dst = u32::from_be_bytes([ip[16], ip[17], ip[18], ip[19]]);
        if !inside && !self.in_pool(dst) {
            return r; // not addressed to the NAT
        }
        let src = u32::from_be_bytes([ip[12], ip[13], ip[14], ip[15]]);
        if inside && (dst >> 28 == 0xe || dst == u32::MAX || src == 0) {
            return r; // multicast, broadcast, unconfigured source: not translated
        }
        let proto = ip[9];
        let l4 = l3 + ihl;
        let end = l3 + tl;
        r.l3 = l3 as u16;
        r.l4 = l4 as u16;
        r.end = end as u16;
        r.flow.src = src;
        r.flow.dst = dst;
        r.flow.proto = proto;
        let fo = u16::from_be_bytes([ip[6], ip[7]]);
        if fo & 0x3fff != 0 {
            r.ipid = u16::from_be_bytes([ip[4], ip[5]]);
            if Self::parse_fragment(&mut r, fo, ihl, tl, inside) != FRAG_FIRST {
                return r;
            }
        }
        let need = match proto {
            TCP => 20,
            UDP | ICMP => 8,
            _ => {
                r.act = Act::Drop(NatDrop::ProtoUnsupported);
                return r;
            }
        };
        let Some(h) = d
            .get(l4..l4 + 8)
            .and_then(|x| <&[u8; 8]>::try_from(x).ok())
            .filter(|_| l4 + need <= end && l4 + need <= d.len())
        else {
            // RFC 1858 §3.1: a first fragment without the whole transport header.
            r.act = Act::Drop(if r.frag == FRAG_FIRST {
                NatDrop::FragTiny
            } else {
                NatDrop::Malformed
            });
            return r;
        };
        if proto == ICMP {
            let ident = u16::from_be_bytes([h[4], h[5]]);
            match (h[0], inside) {
                (icmpv4::msg::ECHO_REQUEST, true) => r.flow.sport = ident,
                (icmpv4::msg::ECHO_REPLY, false) => r.flow.dport = ident,
                (3 | 4 | 11 | 12, _) if r.frag == FRAG_NONE => {
                    r.act = if inside {
                        Act::ErrIn2Out
                    } else {
                        Act::ErrOut2In
                    };
                    return r;
                }
                (3 | 4 | 11 | 12, _) => {
                    // Fragmented ICMP errors (a quote over the path MTU) are rare and
                    // not translated.
                    r.act = Act::Drop(NatDrop::Fragment);
                    return r;
                }
                _ => {
                    r.act = Act::Drop(NatDrop::IcmpUnsupported);
                    return r;
                }
            }
        } else {
            r.flow.sport = u16::from_be_bytes([h[0], h[1]]);
            r.flow.dport = u16::from_be_bytes([h[2], h[3]]);
            if proto == TCP {
                r.tcp_flags = d.get(l4 + 13).copied().unwrap_or(0);
            }
        }
        let f = &r.flow;
        if inside {
            r.act = Act::In2Out;
            r.h = key4(K_SIN, f.src, f.sport, f.dst, f.dport, proto);
        } else {
            r.act = Act::Out2In;
            r.h = key4(K_SOUT, f.src, f.sport, f.dst, f.dport, proto);
        }
        r
    }

    /// Classifies a fragment (`fo` = flags and offset, with MF or an offset set):
    /// sets `r.frag` and, for anything but a well-formed first fragment, `r.act`.
    /// Returns `r.frag`.
    #[cold]
    #[inline(never)]
    fn parse_fragment(r: &mut Pre, fo: u16, ihl: usize, tl: usize, inside: bool) -> u8 {
        let off = usize::from(fo & 0x1fff) * 8;
        let mf = fo & 0x2000 != 0;
        let plen = tl - ihl;
        // RFC 791: the datagram is at most 65535 bytes, and every fragment but the
        // last carries a multiple of 8 bytes of payload.
        if off + plen > 65535 - 20 || (mf && !plen.is_multiple_of(8)) || plen == 0 {
            r.act = Act::Drop(NatDrop::Malformed);
            return FRAG_NONE;
        }
        if off == 0 {
            r.frag = FRAG_FIRST;
            return FRAG_FIRST;
        }
        r.frag = FRAG_REST;
        r.act = match r.flow.proto {
            // RFC 1858 §4: a TCP fragment at offset 8 could rewrite the flags of the
            // first one.
            TCP if off == 8 => Act::Drop(NatDrop::FragTiny),
            TCP | UDP | ICMP if inside => Act::FragIn2Out,
            TCP | UDP | ICMP => Act::FragOut2In,
            _ => Act::Drop(NatDrop::ProtoUnsupported),
        };
        FRAG_REST
    }

    #[inline(always)]
    fn tcp_track(s: &mut Session, flags: u8, inbound: bool) {
        const FIN: u8 = 0x01;
        const SYN: u8 = 0x02;
        const RST: u8 = 0x04;
        if flags & RST != 0 {
            s.tcp |= TCP_RST;
        }
        if flags & SYN != 0 {
            s.tcp |= if inbound { TCP_SYN_OUT } else { TCP_SYN_IN };
            // A new SYN after a close/reset reopens the session (RFC 7857 §2.1).
            if s.tcp & (TCP_RST | TCP_FIN_IN | TCP_FIN_OUT) != 0 && flags & 0x10 == 0 {
                s.tcp &= !(TCP_RST | TCP_FIN_IN | TCP_FIN_OUT);
                s.tcp &= if inbound { !TCP_SYN_IN } else { !TCP_SYN_OUT };
            }
        }
        if flags & FIN != 0 {
            s.tcp |= if inbound { TCP_FIN_OUT } else { TCP_FIN_IN };
        }
    }

    /// Looks up or creates the in2out session of `f`.
    fn in2out_session(&mut self, pre: &Pre, now: u32) -> Result<u32, NatDrop> {
        let f = &pre.flow;
        let hit = if self.sess_in_eq(pre.cand, f) {
            Some(pre.cand & IDX_MASK)
        } else {
            self.find_sess_in_h(f, pre.h)
        };
        if let Some(s) = hit {
            if !self
                .sessions
                .get(s as usize)
                .is_some_and(|x| self.expired(x, now))
            {
                return Ok(s);
            }
            self.delete_session(s);
            self.stats.sessions_expired += 1;
        }
        let m = match self.find_map_in(f) {
            Some(m) => m,
            None => self.new_mapping(f)?,
        };
        match self.new_session(m, f.dst, f.dport, now) {
            Ok(s) => Ok(s),
            Err(e) => {
                // Drop a mapping made just for this session.
                if self.maps.get(m as usize).is_some_and(|x| x.sessions == 0) {
                    if let Some(mp) = self.maps.get(m as usize).copied() {
                        self.table.remove(
                            key4(
                                K_MIN,
                                mp.in_addr,
                                mp.in_port,
                                mp.rem_addr,
                                mp.rem_port,
                                mp.proto,
                            ),
                            tag(K_MIN, m),
                        );
                        self.table.remove(
                            key4(K_MOUT, mp.ext_addr, mp.ext_port, 0, 0, mp.proto),
                            tag(K_MOUT, m),
                        );
                    }
                    self.free_mapping_port(m);
                }
                Err(e)
            }
        }
    }

    /// Looks up or (filtering permitting) creates the out2in session of `f`.
    fn out2in_session(&mut self, f: &Flow, h: u64, cand: u32, now: u32) -> Result<u32, NatDrop> {
        let hit = if self.sess_out_eq(cand, f) {
            Some(cand & IDX_MASK)
        } else {
            self.find_sess_out_h(f, h)
        };
        if let Some(s) = hit {
            if !self
                .sessions
                .get(s as usize)
                .is_some_and(|x| self.expired(x, now))
            {
                return Ok(s);
            }
            self.delete_session(s);
            self.stats.sessions_expired += 1;
        }
        let Some(m) = self.find_map_out(f.proto, f.dst, f.dport) else {
            return Err(NatDrop::NoSession);
        };
        match self.filtering {
            Behavior::EndpointIndependent => {}
            Behavior::AddressDependent => {
                // The mapping's sessions are walked (newest first), at most
                // ADF_WALK of them, so an unsolicited packet costs bounded time; a
                // remote beyond that is filtered (the conservative answer).
                let mut cur = self.maps.get(m as usize).map_or(NONE, |x| x.head);
                let mut ok = false;
                let mut steps = 0;
                while let Some(s) = self.sessions.get(cur as usize) {
                    if s.rem_addr == f.src && !self.expired(s, now) {
                        ok = true;
                        break;
                    }
                    steps += 1;
                    if steps >= ADF_WALK {
                        break;
                    }
                    cur = s.next;
                }
                if !ok {
                    return Err(NatDrop::Filtered);
                }
            }
            Behavior::AddressAndPortDependent => return Err(NatDrop::Filtered),
        }
        self.new_session(m, f.src, f.sport, now)
    }

    /// Translates one packet (third pass).
    #[inline(always)]
    fn handle(&mut self, p: &mut Pkt, pre: &Pre, now: u32, out: &mut Out) -> Next {
        match pre.act {
            Act::Pass => Next::Keep,
            Act::Drop(r) => r.into(),
            Act::In2Out => {
                let s = match self.in2out_session(pre, now) {
                    Ok(s) => s,
                    Err(r) => {
                        self.exhausted(&*p, pre, r, out);
                        return r.into();
                    }
                };
                if pre.frag != FRAG_NONE {
                    self.last_sess = s;
                }
                let Some(sess) = self.sessions.get_mut(s as usize) else {
                    return NatDrop::TableFull.into();
                };
                sess.last = now;
                if pre.flow.proto == TCP {
                    Self::tcp_track(sess, pre.tcp_flags, false);
                }
                let (ea, ep) = (sess.ext_addr, sess.ext_port);
                let (l3, l4, end) = (
                    usize::from(pre.l3),
                    usize::from(pre.l4),
                    usize::from(pre.end),
                );
                let Some(b) = p.data_mut().get_mut(..end) else {
                    return NatDrop::Malformed.into();
                };
                rewrite(b, l3, l4, pre.flow.proto, false, ea, ep);
                if self.hairpinning && self.in_pool(pre.flow.dst) {
                    return self.hairpin(p, pre, ea, ep, now);
                }
                Next::Keep
            }
            Act::Out2In => {
                let s = match self.out2in_session(&pre.flow, pre.h, pre.cand, now) {
                    Ok(s) => s,
                    Err(r) => return r.into(),
                };
                if pre.frag != FRAG_NONE {
                    self.last_sess = s;
                }
                let refresh = self.inbound_refresh;
                let Some(sess) = self.sessions.get_mut(s as usize) else {
                    return NatDrop::TableFull.into();
                };
                if refresh {
                    sess.last = now;
                }
                if pre.flow.proto == TCP {
                    Self::tcp_track(sess, pre.tcp_flags, true);
                }
                let (ia, ip) = (sess.in_addr, sess.in_port);
                let (l3, l4, end) = (
                    usize::from(pre.l3),
                    usize::from(pre.l4),
                    usize::from(pre.end),
                );
                let Some(b) = p.data_mut().get_mut(..end) else {
                    return NatDrop::Malformed.into();
                };
                rewrite(b, l3, l4, pre.flow.proto, true, ia, ip);
                Next::Keep
            }
            Act::ErrIn2Out | Act::ErrOut2In => self.icmp_error(p, pre, now),
            Act::FragIn2Out | Act::FragOut2In => self.fragment_rest(p, pre, now),
        }
    }

    #[inline]
    fn frag_key(pre: &Pre) -> FragKey {
        FragKey {
            src: pre.flow.src,
            dst: pre.flow.dst,
            id: pre.ipid,
            proto: pre.flow.proto,
            inbound: matches!(pre.act, Act::Out2In | Act::FragOut2In),
        }
    }

    /// Rewrites the addresses of a non-first fragment to the recorded result and
    /// refreshes the session (outbound always, inbound when configured).
    fn apply_frag(&mut self, b: &mut [u8], l3: usize, inbound: bool, res: &FragResult, now: u32) {
        if rd32(b, l3 + 12) != res.src {
            rewrite_addr(b, l3, false, res.src);
        }
        if rd32(b, l3 + 16) != res.dst {
            rewrite_addr(b, l3, true, res.dst);
        }
        let refresh = !inbound || self.inbound_refresh;
        if let Some(s) = self.sessions.get_mut(res.sess as usize) {
            if s.live && refresh {
                s.last = now;
            }
        }
    }

    /// A non-first fragment: translated from its datagram's entry, or held for the
    /// first fragment (kept in the batch for now, `hold_now` set), or dropped.
    #[cold]
    fn fragment_rest(&mut self, p: &mut Pkt, pre: &Pre, now: u32) -> Next {
        let k = Self::frag_key(pre);
        if let Some(res) = self.frags.lookup(&k, now) {
            let Some(b) = p.data_mut().get_mut(..usize::from(pre.end)) else {
                return NatDrop::Malformed.into();
            };
            self.apply_frag(b, usize::from(pre.l3), k.inbound, &res, now);
            self.stats.frag_translated += 1;
            return Next::Keep;
        }
        // Fragments of the same datagram already promised a slot in this batch.
        let same = self
            .pending_keys
            .iter()
            .take(self.hold_pending)
            .filter(|q| **q == k)
            .count();
        if !self.held.admits(&k, self.hold_pending, same) {
            return NatDrop::FragHoldFull.into();
        }
        let Some(slot) = self.pending_keys.get_mut(self.hold_pending) else {
            return NatDrop::FragHoldFull.into();
        };
        *slot = k;
        self.hold_pending += 1;
        self.hold_now = true;
        Next::Keep
    }

    /// A fragment left `handle` kept at batch position `pos`: record a first
    /// fragment's result, or mark a non-first one for holding.
    #[cold]
    fn fragment_kept(&mut self, p: &Pkt, pre: &Pre, now: u32, pos: usize) {
        if pre.frag == FRAG_FIRST {
            self.fragment_first(p, pre, now);
        } else if self.hold_now {
            self.hold_now = false;
            if let Some(w) = self.hold_mask.get_mut(pos / 64) {
                *w |= 1 << (pos % 64);
            }
        }
    }

    /// After a first fragment was translated: record the result for the rest of its
    /// datagram (the addresses it now carries, and its session).
    #[cold]
    fn fragment_first(&mut self, p: &Pkt, pre: &Pre, now: u32) {
        let d = p.data();
        let l3 = usize::from(pre.l3);
        let res = FragResult {
            src: rd32(d, l3 + 12),
            dst: rd32(d, l3 + 16),
            sess: self.last_sess,
        };
        self.stats.frag_first += 1;
        match self.frags.record(&Self::frag_key(pre), res, now) {
            Record::New => {}
            Record::Replaced => self.stats.frag_duplicate_first += 1,
            Record::Full => self.stats.frag_table_full += 1,
        }
        if !self.held.is_empty() || self.hold_pending > 0 {
            self.release_due = true;
        }
    }

    /// Drops held fragments older than the lifetime (counted in `stats` now, as drops
    /// at the next batch).
    fn expire_held(&mut self, now: u32, cache: &mut crate::buf::PoolCache) {
        if self.held.is_empty() {
            return;
        }
        let mut n = 0;
        self.held.expire(now, |h| {
            cache.free(h.pkt);
            n += 1;
        });
        self.stats.frag_expired += n;
        self.expired_uncounted += n;
    }

    /// After `dispatch`: moves the fragments marked for holding out of `batch` into
    /// the hold queue, then releases held fragments whose first fragment has been
    /// translated (appended to `batch`, in hold order, as far as it has room).
    #[cold]
    fn after_batch(&mut self, batch: &mut Batch, node: &mut NodeStats, out: &mut Out, now: u32) {
        if self.hold_pending > 0 {
            let mask = self.hold_mask;
            let inside_ports = self.inside;
            let life_now = now;
            let mut i = 0usize;
            let scratch = &mut *self.scratch;
            let held = &mut self.held;
            let mut held_n = 0u64;
            batch.drain(|p| {
                let hold = mask.get(i / 64).is_some_and(|w| w & (1 << (i % 64)) != 0);
                i += 1;
                if !hold {
                    if let Err(p) = scratch.push(p) {
                        out.cache.free(p);
                    }
                    return;
                }
                let d = p.data();
                let Some(l3) = ipv4_offset(d) else {
                    node.count_drop(NatDrop::Malformed.code());
                    out.cache.free(p);
                    return;
                };
                let key = FragKey {
                    src: rd32(d, l3 + 12),
                    dst: rd32(d, l3 + 16),
                    id: rd16(d, l3 + 4),
                    proto: d.get(l3 + 9).copied().unwrap_or(0),
                    inbound: !(p.meta.port < 64 && inside_ports & (1 << p.meta.port) != 0),
                };
                let h = Held {
                    pkt: p,
                    key,
                    l3: l3 as u16,
                    since: life_now,
                };
                match held.push(h) {
                    Ok(()) => held_n += 1,
                    Err(h) => {
                        node.count_drop(NatDrop::FragHoldFull.code());
                        out.cache.free(h.pkt);
                    }
                }
            });
            batch.append(scratch);
            self.stats.frag_held += held_n;
            self.hold_mask = [0; BATCH_SIZE / 64];
            self.hold_pending = 0;
        }
        if self.release_due {
            self.release(batch, now);
        }
    }

    /// Translates and appends to `batch` the held fragments whose datagram has an
    /// entry now (those that do not fit stay held for the next batch).
    fn release(&mut self, batch: &mut Batch, now: u32) {
        self.release_due = false;
        while let Some(h) = {
            let frags = &self.frags;
            self.held
                .take_first(|h| frags.lookup(&h.key, now).is_some())
        } {
            if batch.is_full() {
                self.release_due = true;
                if let Err(h) = self.held.push(h) {
                    h.pkt.pool().free(h.pkt);
                }
                return;
            }
            let Held {
                mut pkt, key, l3, ..
            } = h;
            if let Some(res) = self.frags.lookup(&key, now) {
                let b = pkt.data_mut();
                self.apply_frag(b, usize::from(l3), key.inbound, &res, now);
            }
            self.stats.frag_released += 1;
            if let Err(p) = batch.push(pkt) {
                p.pool().free(p);
            }
        }
    }

    /// Second translation of a hairpinned packet (RFC 4787 REQ-9): now from the
    /// sender's outside endpoint to a pool address, translated outside→inside.
    fn hairpin(&mut self, p: &mut Pkt, pre: &Pre, ea: u32, ep: u16, now: u32) -> Next {
        let mut f = pre.flow;
        f.src = ea;
        if f.proto == ICMP {
            // An echo request to our own outside address: there is no inside host.
            return NatDrop::NoSession.into();
        }
        f.sport = ep;
        let h = key4(K_SOUT, f.src, f.sport, f.dst, f.dport, f.proto);
        let s = match self.out2in_session(&f, h, NONE, now) {
            Ok(s) => s,
            Err(r) => return r.into(),
        };
        let Some(sess) = self.sessions.get_mut(s as usize) else {
            return NatDrop::TableFull.into();
        };
        sess.last = now;
        if f.proto == TCP {
            Self::tcp_track(sess, pre.tcp_flags, true);
        }
        let (ia, ip) = (sess.in_addr, sess.in_port);
        let Some(b) = p.data_mut().get_mut(..usize::from(pre.end)) else {
            return NatDrop::Malformed.into();
        };
        rewrite(
            b,
            usize::from(pre.l3),
            usize::from(pre.l4),
            f.proto,
            true,
            ia,
            ip,
        );
        self.stats.hairpinned += 1;
        Next::Keep
    }

    /// Translates an ICMP error by its embedded packet (RFC 5508 §4.2 REQ-3).
    fn icmp_error(&mut self, p: &mut Pkt, pre: &Pre, now: u32) -> Next {
        let inbound = pre.act == Act::ErrOut2In;
        let (l3, l4, end) = (
            usize::from(pre.l3),
            usize::from(pre.l4),
            usize::from(pre.end),
        );
        let d = p.data();
        // Embedded IPv4 header + 8 bytes.
        let il3 = l4 + 8;
        let Some(ih) = d
            .get(il3..il3 + 20)
            .and_then(|x| <&[u8; 20]>::try_from(x).ok())
            .filter(|_| il3 + 20 <= end)
        else {
            return NatDrop::Malformed.into();
        };
        let ihl = usize::from(ih[0] & 0x0f) * 4;
        if ih[0] >> 4 != 4 || ihl < 20 {
            return NatDrop::Malformed.into();
        }
        let iproto = ih[9];
        let isrc = u32::from_be_bytes([ih[12], ih[13], ih[14], ih[15]]);
        let idst = u32::from_be_bytes([ih[16], ih[17], ih[18], ih[19]]);
        let il4 = il3 + ihl;
        if il4 + 8 > end || !matches!(iproto, TCP | UDP | ICMP) {
            return NatDrop::Malformed.into();
        }
        let (ps, pd) = (rd16(d, il4), rd16(d, il4 + 2));
        let ident = rd16(d, il4 + 4);
        let s = if inbound {
            // The embedded packet is one we sent out: (ext → remote).
            let (sp, dp) = if iproto == ICMP { (0, ident) } else { (pd, ps) };
            let f = Flow {
                src: idst,
                dst: isrc,
                sport: sp,
                dport: dp,
                proto: iproto,
            };
            let h = key4(K_SOUT, f.src, f.sport, f.dst, f.dport, f.proto);
            self.find_sess_out_h(&f, h)
        } else {
            // The embedded packet is one we delivered inside: (remote → inside).
            let (sp, dp) = if iproto == ICMP { (ident, 0) } else { (pd, ps) };
            let f = Flow {
                src: idst,
                dst: isrc,
                sport: sp,
                dport: dp,
                proto: iproto,
            };
            let h = key4(K_SIN, f.src, f.sport, f.dst, f.dport, f.proto);
            self.find_sess_in_h(&f, h)
        };
        let Some(sess) = s.and_then(|s| self.sessions.get(s as usize)).copied() else {
            return NatDrop::IcmpErrorNoSession.into();
        };
        if self.expired(&sess, now) {
            return NatDrop::IcmpErrorNoSession.into();
        }
        let Some(b) = p.data_mut().get_mut(..end) else {
            return NatDrop::Malformed.into();
        };
        if inbound {
            rewrite_addr(b, l3, true, sess.in_addr);
            rewrite_inner(
                b,
                l4 + 2,
                il3,
                il4,
                iproto,
                false,
                sess.in_addr,
                sess.in_port,
            );
        } else {
            rewrite_addr(b, l3, false, sess.ext_addr);
            rewrite_inner(
                b,
                l4 + 2,
                il3,
                il4,
                iproto,
                true,
                sess.ext_addr,
                sess.ext_port,
            );
        }
        self.stats.icmp_errors_translated += 1;
        Next::Keep
    }

    /// RFC 5508 REQ-8: answer a flow the NAT cannot take with Destination Unreachable
    /// code 13, sent back out of the ingress port (rate limited).
    fn exhausted(&mut self, p: &Pkt, pre: &Pre, _r: NatDrop, out: &mut Out) {
        if !self.icmp_errors {
            return;
        }
        let window = out.now_ns / 1_000_000_000;
        if window != self.icmp_window {
            self.icmp_window = window;
            self.icmp_sent = 0;
        }
        if self.icmp_sent >= self.icmp_rate {
            self.stats.icmp_errors_rate_limited += 1;
            return;
        }
        let d = p.data();
        let l3 = usize::from(pre.l3);
        let (Some(l2), Some(ip)) = (d.get(..l3), d.get(l3..usize::from(pre.end))) else {
            return;
        };
        let Some(mut e) = out.cache.alloc() else {
            return;
        };
        let built = (|| {
            let buf = e.buffer_mut();
            let base = crate::buf::HEADROOM;
            let room = buf.get_mut(base..)?;
            room.get_mut(..l3)?.copy_from_slice(l2);
            // Swap the MAC addresses: the error goes back where the packet came from.
            if l3 >= ETH_LEN {
                room.get_mut(0..6)?.copy_from_slice(l2.get(6..12)?);
                room.get_mut(6..12)?.copy_from_slice(l2.get(0..6)?);
            }
            let n = icmpv4::build_error(
                room.get_mut(l3..)?,
                ip,
                Ipv4Addr::from(self.icmp_src),
                64,
                ErrorKind::DstUnreachable {
                    code: icmpv4::unreachable::ADMIN_PROHIBITED,
                    next_hop_mtu: 0,
                },
                QuoteLimit::HeaderPlus8,
            )
            .ok()?;
            Some(l3 + n)
        })();
        let Some(len) = built else {
            out.cache.free(e);
            return;
        };
        if e.set_window(crate::buf::HEADROOM, len).is_err() {
            out.cache.free(e);
            return;
        }
        e.meta.port = p.meta.port;
        match out.ports.get_mut(usize::from(p.meta.port)) {
            Some(b) => match b.push(e) {
                Ok(()) => {
                    self.icmp_sent += 1;
                    self.stats.icmp_errors_sent += 1;
                }
                Err(e) => out.cache.free(e),
            },
            None => out.cache.free(e),
        }
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
        for (i, p) in batch.iter().enumerate() {
            let r = self.parse(p);
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
