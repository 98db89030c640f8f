//! `nat44` configuration and its validation: mapping/filtering behaviour (RFC 4787
//! §4.1 / §5), timeouts (RFC 4787 REQ-5, RFC 5382 §5, RFC 5508 §3.2), CGNAT port
//! blocks (RFC 6888, RFC 7422), the outside pool and the limits checked before
//! anything is allocated.

use super::*;

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
    /// Port blocks are given from outside (a disaggregated BNG's control plane
    /// allocates them, [`Nat44::bind`]): the fast path never pairs a new inside
    /// address with an outside address nor takes a block; traffic from an inside
    /// address without a binding is dropped (`no port block bound`).
    pub external_blocks: bool,
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
            external_blocks: false,
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

/// Parses a pool entry (`a.b.c.d`, `a.b.c.d/len` or `a.b.c.d-e.f.g.h`, see
/// [`crate::addr::Range4`]) into an inclusive address range.
pub(super) fn parse_pool_entry(s: &str) -> Result<(u32, u32), ConfigError> {
    s.parse::<crate::addr::Range4>()
        .map(|r| r.bounds())
        .map_err(|_| ConfigError::BadPool(String::from(s)))
}
