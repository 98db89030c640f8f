//! The router's TOML configuration: engine sizing, interfaces (port spec, MAC,
//! addresses, MTU), static routes, a route file of up to millions of prefixes, and
//! static neighbours. Parsing is `no_std` (the unikernel reads the same file); every
//! error is one line that names the field it is about, once.
//!
//! [`Config::check`] validates everything that can be validated without the route
//! file and the ports, before anything large is allocated: every size against its
//! limit in [`limits`], and the addressing plan (no address on two interfaces, no
//! overlapping interface subnets, unicast MACs, gateways and static neighbours on a
//! connected subnet and not ours, prefixes without host bits, no duplicate routes,
//! NAT pools apart from interface addresses, the feature sections' own checks).

use alloc::format;
use alloc::string::String;
use alloc::vec::Vec;
use core::net::IpAddr;
use core::net::{Ipv4Addr, Ipv6Addr};
use dataplane::proto::ethernet::MacAddr;
use dataplane::stages::firewall::FirewallConfig;
use dataplane::stages::l3::{Net4, Net6};
use dataplane::stages::nat::NatConfig;
use dataplane::stages::qos::QosConfig;
use serde::Deserialize;

/// A configuration error naming the offending field.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ConfigError(pub String);

impl core::fmt::Display for ConfigError {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.write_str(&self.0)
    }
}

impl core::error::Error for ConfigError {}

fn err<T>(s: String) -> Result<T, ConfigError> {
    Err(ConfigError(s))
}

/// Limits of the size settings, checked by [`Config::check`] before any table is
/// allocated (each bounds one allocation; the defaults are far below).
pub mod limits {
    /// `engine.workers`: 1..=256.
    pub const MAX_WORKERS: usize = 256;
    /// `engine.pool_buffers`: 1024..=2^21 buffers of 2304 bytes (up to 4.5 GiB).
    pub const MIN_POOL_BUFFERS: u32 = 1024;
    pub const MAX_POOL_BUFFERS: u32 = 1 << 21;
    /// `engine.ring_size`: a power of two in 16..=32768.
    pub const MIN_RING_SIZE: u16 = 16;
    /// `engine.tbl8_groups`: 0..=2^20 (256 entries of 4 bytes each).
    pub const MAX_TBL8_GROUPS: u32 = dataplane::stages::l3::MAX_TBL8_GROUPS;
    /// `engine.neighbors`: 0..=2^22 slots (48 bytes each; rounded up to a power of
    /// two, at least 16).
    pub const MAX_NEIGHBORS: usize = dataplane::stages::neigh::MAX_NEIGHBORS;
    /// `engine.trace`: 0..=2^20 trace records per worker (about 100 bytes each).
    pub const MAX_TRACE: usize = 1 << 20;
    /// `router --trace N`: 0..=16384 packets (64 records each).
    pub const MAX_TRACE_PACKETS: u32 = (MAX_TRACE / 64) as u32;
    /// Interfaces: 1..=64 (port sets are 64-bit masks).
    pub const MAX_INTERFACES: usize = 64;
    /// `[firewall]`: `max_connections` 1..=2^24, at most 65535 rules.
    pub use dataplane::stages::firewall::{MAX_CONNECTIONS, MAX_RULES};
    /// `[nat]`: `max_sessions` and `max_subscribers` 1..=2^24, `log_capacity`
    /// 1..=2^22, at most 4096 pool addresses, `inside_ports` 0..=63.
    pub use dataplane::stages::nat::{MAX_LOG_CAPACITY, MAX_POOL, MAX_SESSIONS, MAX_SUBSCRIBERS};
    /// `[qos]`: `meters` and shaper `subscribers` 1..=2^24, `total_queue_packets`
    /// 1..=2^24, `queue_packets` 1..=`total_queue_packets`.
    pub use dataplane::stages::qos::{MAX_METERS, MAX_QUEUE_PACKETS};
}

/// Engine sizing.
#[derive(Clone, Debug, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct EngineConfig {
    /// Worker threads (one per core).
    pub workers: usize,
    /// Packet buffers in the pool.
    pub pool_buffers: u32,
    /// Entries per port queue.
    pub ring_size: u16,
    /// IPv4 FIB extension groups (prefixes longer than /24 need one per /24).
    pub tbl8_groups: u32,
    /// Neighbour table slots.
    pub neighbors: usize,
    /// Packet-trace records per worker (0: off).
    pub trace: usize,
    /// Seconds between counter lines on the console (0: off).
    pub stats_interval: u32,
    /// Cores the workers are pinned to, one per worker in order (empty: workers
    /// 0..n on cores 0..n, wrapping at the machine's core count).
    pub cores: Vec<usize>,
}

impl Default for EngineConfig {
    fn default() -> Self {
        EngineConfig {
            workers: 1,
            pool_buffers: 32768,
            ring_size: 1024,
            tbl8_groups: 4096,
            neighbors: 4096,
            trace: 0,
            stats_interval: 0,
            cores: Vec::new(),
        }
    }
}

/// One interface.
#[derive(Clone, Debug, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct InterfaceConfig {
    pub name: String,
    /// Port spec (`afpacket:eth0`, `tap:tap0`, `pcap:in.pcap`, `mem:x`, ...).
    #[serde(default)]
    pub port: String,
    /// MAC address (`02:00:00:00:00:01`); default: the port's own.
    #[serde(default)]
    pub mac: Option<String>,
    /// IPv4 addresses with prefix length (`192.0.2.1/24`).
    #[serde(default)]
    pub ipv4: Vec<String>,
    /// IPv6 addresses with prefix length (`2001:db8::1/64`).
    #[serde(default)]
    pub ipv6: Vec<String>,
    #[serde(default = "default_mtu")]
    pub mtu: u16,
}

fn default_mtu() -> u16 {
    1500
}

/// A static route.
#[derive(Clone, Debug, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct RouteConfig {
    /// `10.0.0.0/8` or `2001:db8::/32`.
    pub prefix: String,
    /// Gateway address (must be in a connected subnet).
    #[serde(default)]
    pub via: Option<String>,
    /// Blackhole route.
    #[serde(default)]
    pub drop: bool,
}

/// A route file: lines `PREFIX/LEN NEXTHOP_INDEX`, the index naming an entry of
/// `next_hops`.
#[derive(Clone, Debug, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct RouteFileConfig {
    pub path: String,
    pub next_hops: Vec<String>,
}

/// A static neighbour (ARP/ND entry).
#[derive(Clone, Debug, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct NeighborConfig {
    pub ip: String,
    pub mac: String,
}

/// The whole router configuration.
#[derive(Clone, Debug, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct Config {
    #[serde(default)]
    pub engine: EngineConfig,
    #[serde(rename = "interface")]
    pub interfaces: Vec<InterfaceConfig>,
    #[serde(default, rename = "route")]
    pub routes: Vec<RouteConfig>,
    #[serde(default)]
    pub route_file: Option<RouteFileConfig>,
    #[serde(default, rename = "neighbor")]
    pub neighbors: Vec<NeighborConfig>,
    /// NAT44/CGNAT (RFC 4787/6888), applied to IPv4 before routing.
    #[serde(default)]
    pub nat: Option<NatConfig>,
    /// Stateful firewall, applied to IPv4 before NAT and routing.
    #[serde(default)]
    pub firewall: Option<FirewallConfig>,
    /// Policer (RFC 2697/2698), shaper and DSCP marking.
    #[serde(default)]
    pub qos: Option<QosConfig>,
    /// IPsec gateway: the IKE daemon's connections (RFC 7296, swanctl-like; see
    /// `ipsec::ike::daemon::config`); adds `esp-decrypt` and `esp-encrypt` to the
    /// IPv4 pipeline. Needs the `std` feature (the IKE daemon runs in the `router`
    /// binary).
    #[cfg(feature = "std")]
    #[serde(default)]
    pub ike: Option<ipsec::ike::daemon::config::IkeSection>,
}

impl Config {
    /// Parses and checks a TOML configuration. Syntax errors are reported on one
    /// line with their position.
    pub fn from_toml(text: &str) -> Result<Config, ConfigError> {
        let c: Config = toml::from_str(text).map_err(|e| {
            let msg = e.message().trim().replace('\n', " ");
            match e.span() {
                Some(sp) => {
                    let before = text.get(..sp.start).unwrap_or("");
                    let line = before.matches('\n').count() + 1;
                    let col = before.len() - before.rfind('\n').map_or(0, |i| i + 1) + 1;
                    ConfigError(format!("config: line {line}, column {col}: {msg}"))
                }
                None => ConfigError(format!("config: {msg}")),
            }
        })?;
        c.check()?;
        Ok(c)
    }

    /// Semantic checks beyond the syntax (see the module docs); nothing is
    /// allocated in proportion to a size setting.
    pub fn check(&self) -> Result<(), ConfigError> {
        self.check_engine()?;
        let addrs = self.check_interfaces()?;
        self.check_routes(&addrs)?;
        self.check_neighbors(&addrs)?;
        self.check_features(&addrs)?;
        Ok(())
    }

    fn check_engine(&self) -> Result<(), ConfigError> {
        use limits::*;
        let e = &self.engine;
        if !e.cores.is_empty() && e.cores.len() != e.workers {
            return err(format!(
                "engine.cores: {} cores for {} workers (one core per worker, or none)",
                e.cores.len(),
                e.workers
            ));
        }
        if e.workers == 0 || e.workers > MAX_WORKERS {
            return err(format!(
                "engine.workers: {} is not in 1..={MAX_WORKERS}",
                e.workers
            ));
        }
        if !e.ring_size.is_power_of_two() || e.ring_size < MIN_RING_SIZE {
            return err(format!(
                "engine.ring_size: {} is not a power of two in {MIN_RING_SIZE}..=32768",
                e.ring_size
            ));
        }
        if !(MIN_POOL_BUFFERS..=MAX_POOL_BUFFERS).contains(&e.pool_buffers) {
            return err(format!(
                "engine.pool_buffers: {} is not in {MIN_POOL_BUFFERS}..={MAX_POOL_BUFFERS}",
                e.pool_buffers
            ));
        }
        if e.tbl8_groups > MAX_TBL8_GROUPS {
            return err(format!(
                "engine.tbl8_groups: {} is not in 0..={MAX_TBL8_GROUPS}",
                e.tbl8_groups
            ));
        }
        if e.neighbors > MAX_NEIGHBORS {
            return err(format!(
                "engine.neighbors: {} is not in 0..={MAX_NEIGHBORS}",
                e.neighbors
            ));
        }
        if e.trace > MAX_TRACE {
            return err(format!(
                "engine.trace: {} is not in 0..={MAX_TRACE}",
                e.trace
            ));
        }
        Ok(())
    }

    /// Checks the interfaces; returns every interface address.
    fn check_interfaces(&self) -> Result<Addrs, ConfigError> {
        if self.interfaces.is_empty() {
            return err("config: at least one [[interface]] is needed".into());
        }
        if self.interfaces.len() > limits::MAX_INTERFACES {
            return err(format!(
                "interface: {} interfaces, at most {} are supported",
                self.interfaces.len(),
                limits::MAX_INTERFACES
            ));
        }
        let mut a = Addrs::default();
        for (i, ifc) in self.interfaces.iter().enumerate() {
            let at = format!("interface[{i}] ({})", ifc.name);
            if self.interfaces[..i].iter().any(|x| x.name == ifc.name) {
                return err(format!("{at}.name: duplicate interface name"));
            }
            if let Some(m) = &ifc.mac {
                unicast_mac(m).map_err(|e| ConfigError(format!("{at}.mac: {e}")))?;
            }
            for s in &ifc.ipv4 {
                let (addr, len) =
                    parse_net4(s).map_err(|e| ConfigError(format!("{at}.ipv4: {e}")))?;
                let at = format!("{at}.ipv4: {s:?}");
                let n = Net4 { addr, len };
                if martian4(addr) {
                    return err(format!("{at}: not a unicast address"));
                }
                if len <= 30 && (addr == net4(n) || addr == bcast4(n)) {
                    return err(format!(
                        "{at}: is the subnet's network or broadcast address"
                    ));
                }
                for (j, o) in &a.v4 {
                    if o.addr == addr {
                        return err(format!(
                            "{at}: address already on interface[{j}] ({})",
                            self.interfaces[*j].name
                        ));
                    }
                    if *j != i && (o.contains(addr) || n.contains(o.addr)) {
                        return err(format!(
                            "{at}: subnet overlaps {}/{} on interface[{j}] ({})",
                            o.addr, o.len, self.interfaces[*j].name
                        ));
                    }
                }
                a.v4.push((i, n));
            }
            for s in &ifc.ipv6 {
                let (addr, len) =
                    parse_net6(s).map_err(|e| ConfigError(format!("{at}.ipv6: {e}")))?;
                let at = format!("{at}.ipv6: {s:?}");
                let n = Net6 { addr, len };
                if addr.is_unspecified() || addr.is_loopback() || addr.is_multicast() {
                    return err(format!("{at}: not a unicast address"));
                }
                for (j, o) in &a.v6 {
                    if o.addr == addr {
                        return err(format!(
                            "{at}: address already on interface[{j}] ({})",
                            self.interfaces[*j].name
                        ));
                    }
                    // Every link has its own fe80::/64 (RFC 4291 §2.5.6).
                    let both_ll = link_local6(&addr) && link_local6(&o.addr);
                    if *j != i && !both_ll && (o.contains(&addr) || n.contains(&o.addr)) {
                        return err(format!(
                            "{at}: subnet overlaps {}/{} on interface[{j}] ({})",
                            o.addr, o.len, self.interfaces[*j].name
                        ));
                    }
                }
                a.v6.push((i, n));
            }
            if !(576..=9216).contains(&ifc.mtu) {
                return err(format!("{at}.mtu: {} is not in 576..=9216", ifc.mtu));
            }
        }
        Ok(a)
    }

    fn check_routes(&self, a: &Addrs) -> Result<(), ConfigError> {
        let mut seen: Vec<Prefix> = Vec::new();
        for (i, r) in self.routes.iter().enumerate() {
            let at = format!("route[{i}]");
            let p =
                parse_prefix(&r.prefix).map_err(|e| ConfigError(format!("{at}.prefix: {e}")))?;
            let p = host_bits(p).map_err(|e| ConfigError(format!("{at}.prefix: {e}")))?;
            if let Some(j) = seen.iter().position(|x| *x == p) {
                return err(format!("{at}.prefix: {:?} duplicates route[{j}]", r.prefix));
            }
            seen.push(p);
            match (&r.via, r.drop) {
                (Some(_), true) => return err(format!("{at}: give either via or drop, not both")),
                (None, false) => {
                    return err(format!("{at}: needs via = \"GATEWAY\" or drop = true"))
                }
                (Some(v), false) => {
                    let gw = a
                        .gateway(v)
                        .map_err(|e| ConfigError(format!("{at}.via: {e}")))?;
                    if matches!(p, Prefix::V4(..)) != matches!(gw, IpAddr::V4(_)) {
                        return err(format!(
                            "{at}.via: {v:?} is not of the prefix's address family"
                        ));
                    }
                }
                (None, true) => {}
            }
        }
        if let Some(rf) = &self.route_file {
            if rf.next_hops.is_empty() {
                return err("route_file.next_hops: at least one next hop is needed".into());
            }
            for (i, v) in rf.next_hops.iter().enumerate() {
                a.gateway(v)
                    .map_err(|e| ConfigError(format!("route_file.next_hops[{i}]: {e}")))?;
            }
        }
        Ok(())
    }

    fn check_neighbors(&self, a: &Addrs) -> Result<(), ConfigError> {
        for (i, n) in self.neighbors.iter().enumerate() {
            let at = format!("neighbor[{i}]");
            let ip = a
                .gateway(&n.ip)
                .map_err(|e| ConfigError(format!("{at}.ip: {e}")))?;
            unicast_mac(&n.mac).map_err(|e| ConfigError(format!("{at}.mac: {e}")))?;
            if let Some(j) = self.neighbors[..i]
                .iter()
                .position(|x| x.ip.parse::<IpAddr>().ok() == Some(ip))
            {
                return err(format!("{at}.ip: {ip} duplicates neighbor[{j}]"));
            }
        }
        Ok(())
    }

    fn check_features(&self, a: &Addrs) -> Result<(), ConfigError> {
        let nports = self.interfaces.len();
        #[cfg(feature = "std")]
        if let Some(ike) = &self.ike {
            let conns = ike
                .connections()
                .map_err(|e| ConfigError(format!("ike: {e}")))?;
            for c in &conns {
                let ours = match c.local {
                    IpAddr::V4(l) => a.v4.iter().any(|(_, n)| n.addr == l),
                    IpAddr::V6(_) => false,
                };
                if !ours {
                    return err(format!(
                        "ike: connections.{}.local_addrs: {} is not an IPv4 address of an interface",
                        c.name, c.local
                    ));
                }
            }
        }
        if let Some(n) = &self.nat {
            n.validate().map_err(|e| ConfigError(format!("nat: {e}")))?;
            if let Some(p) = n.inside_ports.iter().find(|p| usize::from(**p) >= nports) {
                return err(format!(
                    "nat.inside_ports: port {p} does not exist (ports are interface indexes 0..={})",
                    nports - 1
                ));
            }
            if n.inside_ports.is_empty() {
                return err("nat.inside_ports: empty, no interface is inside".into());
            }
            if n.inside_ports.len() >= nports {
                return err(format!(
                    "nat.inside_ports: {:?} makes every interface inside, none is outside",
                    n.inside_ports
                ));
            }
            let ranges = n
                .pool_ranges()
                .map_err(|e| ConfigError(format!("nat: {e}")))?;
            for (j, ifn) in &a.v4 {
                let x = u32::from(ifn.addr);
                if ranges.iter().any(|&(lo, hi)| (lo..=hi).contains(&x)) {
                    return err(format!(
                        "nat.pool: includes {}, the address of interface[{j}] ({})",
                        ifn.addr, self.interfaces[*j].name
                    ));
                }
            }
        }
        if let Some(f) = &self.firewall {
            f.validate()
                .map_err(|e| ConfigError(format!("firewall: {e}")))?;
        }
        if let Some(q) = &self.qos {
            if let Some(p) = &q.policer {
                p.validate()
                    .map_err(|e| ConfigError(format!("qos.policer: {e}")))?;
            }
            if let Some(s) = &q.shaper {
                s.validate()
                    .map_err(|e| ConfigError(format!("qos.shaper: {e}")))?;
                if let Some(p) = s.egress_port.filter(|p| usize::from(*p) >= nports) {
                    return err(format!("qos.shaper.egress_port: port {p} does not exist"));
                }
            }
            if let Some(m) = &q.marker {
                m.validate()
                    .map_err(|e| ConfigError(format!("qos.marker: {e}")))?;
                if let Some(p) = m.in_ports.iter().find(|p| usize::from(**p) >= nports) {
                    return err(format!("qos.marker.in_ports: port {p} does not exist"));
                }
            }
        }
        Ok(())
    }
}

/// Interface addresses seen so far (interface index, address and subnet).
#[derive(Default)]
struct Addrs {
    v4: Vec<(usize, Net4)>,
    v6: Vec<(usize, Net6)>,
}

impl Addrs {
    /// A next hop (gateway or static neighbour): an address on a connected subnet,
    /// not one of ours and not the subnet's network or broadcast address.
    fn gateway(&self, s: &str) -> Result<IpAddr, String> {
        let ip: IpAddr = s
            .parse()
            .map_err(|_| format!("{s:?} is not an IP address"))?;
        match ip {
            IpAddr::V4(g) => {
                if self.v4.iter().any(|(_, n)| n.addr == g) {
                    return Err(format!("{g} is one of the router's own addresses"));
                }
                let Some((_, n)) = self.v4.iter().find(|(_, n)| n.contains(g)) else {
                    return Err(format!("{g} is not in any connected subnet (off-link)"));
                };
                if n.len <= 30 && (g == net4(*n) || g == bcast4(*n)) {
                    return Err(format!(
                        "{g} is the network or broadcast address of {}/{}",
                        net4(*n),
                        n.len
                    ));
                }
            }
            IpAddr::V6(g) => {
                if self.v6.iter().any(|(_, n)| n.addr == g) {
                    return Err(format!("{g} is one of the router's own addresses"));
                }
                if g.is_multicast() || g.is_unspecified() {
                    return Err(format!("{g} is not a unicast address"));
                }
                if !self.v6.iter().any(|(_, n)| n.contains(&g)) {
                    return Err(format!("{g} is not in any connected subnet (off-link)"));
                }
            }
        }
        Ok(ip)
    }
}

fn net4(n: Net4) -> Ipv4Addr {
    let m = if n.len == 0 {
        0
    } else {
        u32::MAX << (32 - u32::from(n.len))
    };
    Ipv4Addr::from(u32::from(n.addr) & m)
}

fn bcast4(n: Net4) -> Ipv4Addr {
    Ipv4Addr::from(u32::from(net4(n)) | u32::MAX.checked_shr(u32::from(n.len)).unwrap_or(0))
}

/// 0/8, 127/8, multicast and class E: never an interface address.
fn martian4(a: Ipv4Addr) -> bool {
    matches!(a.octets()[0], 0 | 127 | 224..)
}

fn link_local6(a: &Ipv6Addr) -> bool {
    a.segments()[0] & 0xffc0 == 0xfe80
}

/// The prefix unchanged, or an error when bits beyond its length are set.
fn host_bits(p: Prefix) -> Result<Prefix, String> {
    match p {
        Prefix::V4(a, l) => {
            let n = net4(Net4 { addr: a, len: l });
            if n != a {
                return Err(format!(
                    "{a}/{l} has host bits set (the network is {n}/{l})"
                ));
            }
        }
        Prefix::V6(a, l) => {
            let m = if l == 0 {
                0
            } else {
                u128::MAX << (128 - u32::from(l))
            };
            let n = Ipv6Addr::from(u128::from(a) & m);
            if n != a {
                return Err(format!(
                    "{a}/{l} has host bits set (the network is {n}/{l})"
                ));
            }
        }
    }
    Ok(p)
}

/// Parses a MAC that may be an interface's or a neighbour's: not multicast or
/// broadcast (I/G bit clear), not all zeros.
pub fn unicast_mac(s: &str) -> Result<[u8; 6], String> {
    let m: MacAddr = s
        .parse()
        .map_err(|_| format!("{s:?} is not a MAC address"))?;
    if m.is_multicast() {
        return Err(format!("{s:?} is a multicast or broadcast MAC address"));
    }
    if m == MacAddr::ZERO {
        return Err(format!("{s:?} is the all-zero MAC address"));
    }
    Ok(m.0)
}

/// Parses `aa:bb:cc:dd:ee:ff` with [`MacAddr`]'s `FromStr` (any address; see
/// [`unicast_mac`] for interfaces and neighbours).
pub fn parse_mac(s: &str) -> Result<[u8; 6], String> {
    s.parse::<MacAddr>()
        .map(|m| m.0)
        .map_err(|_| format!("{s:?} is not a MAC address"))
}

/// Parses `a.b.c.d/len`.
pub fn parse_net4(s: &str) -> Result<(Ipv4Addr, u8), String> {
    let (a, l) = s
        .split_once('/')
        .ok_or_else(|| format!("{s:?}: missing /prefix-length"))?;
    let a: Ipv4Addr = a.parse().map_err(|_| format!("{s:?}: bad IPv4 address"))?;
    let l: u8 = l.parse().map_err(|_| format!("{s:?}: bad prefix length"))?;
    if l > 32 {
        return Err(format!("{s:?}: prefix length above 32"));
    }
    Ok((a, l))
}

/// Parses `x:y::z/len`.
pub fn parse_net6(s: &str) -> Result<(Ipv6Addr, u8), String> {
    let (a, l) = s
        .split_once('/')
        .ok_or_else(|| format!("{s:?}: missing /prefix-length"))?;
    let a: Ipv6Addr = a.parse().map_err(|_| format!("{s:?}: bad IPv6 address"))?;
    let l: u8 = l.parse().map_err(|_| format!("{s:?}: bad prefix length"))?;
    if l > 128 {
        return Err(format!("{s:?}: prefix length above 128"));
    }
    Ok((a, l))
}

/// A prefix of either family.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Prefix {
    V4(Ipv4Addr, u8),
    V6(Ipv6Addr, u8),
}

/// Parses an IPv4 or IPv6 prefix.
pub fn parse_prefix(s: &str) -> Result<Prefix, String> {
    if s.contains(':') {
        parse_net6(s).map(|(a, l)| Prefix::V6(a, l))
    } else {
        parse_net4(s).map(|(a, l)| Prefix::V4(a, l))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn example_parses() {
        let c = Config::from_toml(include_str!("../examples/router.toml")).unwrap();
        assert_eq!(c.interfaces.len(), 2);
        assert!(!c.routes.is_empty());
    }

    #[cfg(feature = "std")]
    #[test]
    fn ike_section_parses_and_is_checked() {
        let ex = include_str!("../examples/router-ipsec.toml");
        let c = Config::from_toml(ex).unwrap();
        let ike = c.ike.as_ref().unwrap();
        assert_eq!(ike.connections["site-b"].children.len(), 1);
        let dbg = format!("{c:?}");
        assert!(
            dbg.contains("<secret>") && !dbg.contains("change me"),
            "psk hidden"
        );
        // without the section nothing changes
        assert!(Config::from_toml(include_str!("../examples/router.toml"))
            .unwrap()
            .ike
            .is_none());
        for (from, to, want) in [
            (
                "local_addrs = \"198.51.100.1\"",
                "local_addrs = \"198.51.100.9\"",
                "ike: connections.site-b.local_addrs: 198.51.100.9 is not",
            ),
            (
                "aes256gcm16-prfsha256-x25519",
                "3des-md5-modp1024",
                "ike: connections.site-b.proposals",
            ),
            (
                "rekey_time_s = 3600",
                "rekey_time_s = 3600\nbogus = 1",
                "bogus",
            ),
        ] {
            let e = Config::from_toml(&ex.replace(from, to)).unwrap_err().0;
            assert!(e.contains(want), "{want}: {e}");
            assert!(!e.contains("change me"), "{e}");
        }
    }

    #[test]
    fn errors_name_the_field() {
        let bad = r#"
[[interface]]
name = "a"
ipv4 = ["10.0.0.1/33"]
"#;
        let e = Config::from_toml(bad).unwrap_err();
        assert!(e.0.contains("interface[0] (a).ipv4"), "{e}");
        let bad = r#"
[[interface]]
name = "a"
[[route]]
prefix = "10.0.0.0/8"
"#;
        assert!(Config::from_toml(bad)
            .unwrap_err()
            .0
            .contains("route[0]: needs via"));
        let bad = "[[interface]]\nname = \"a\"\nbogus = 1\n";
        assert!(Config::from_toml(bad).unwrap_err().0.contains("bogus"));
        assert!(Config::from_toml("").is_err());
    }

    /// Two interfaces (access 192.0.2.1/24 + 2001:db8:1::1/64 + fe80::1/64, core
    /// 198.51.100.1/24 + 2001:db8:2::1/64 + fe80::2/64) and whatever `extra` adds.
    fn two_ifaces(engine: &str, access_extra: &str, extra: &str) -> String {
        format!(
            r#"
[engine]
{engine}

[[interface]]
name = "access"
mac = "02:00:00:00:01:01"
ipv4 = ["192.0.2.1/24"]
ipv6 = ["2001:db8:1::1/64", "fe80::1/64"]
{access_extra}

[[interface]]
name = "core"
mac = "02:00:00:00:02:01"
ipv4 = ["198.51.100.1/24"]
ipv6 = ["2001:db8:2::1/64", "fe80::2/64"]

{extra}
"#
        )
    }

    /// The error of a config that must be refused: one line, one prefix.
    fn refused(text: &str) -> String {
        let e = Config::from_toml(text).expect_err("config accepted").0;
        assert!(!e.contains('\n'), "more than one line: {e}");
        for p in ["firewall: ", "nat: ", "qos: ", "config: ", "engine: "] {
            assert!(e.matches(p).count() <= 1, "doubled prefix {p:?}: {e}");
        }
        e
    }

    fn expect(text: &str, field: &str, what: &str) {
        let e = refused(text);
        assert!(e.starts_with(field), "{e:?} does not start with {field:?}");
        assert!(e.contains(what), "{e:?} does not say {what:?}");
    }

    #[test]
    fn base_config_is_accepted() {
        Config::from_toml(&two_ifaces("", "", "")).unwrap();
    }

    #[test]
    fn engine_sizes_have_limits() {
        for (engine, field) in [
            (
                "neighbors = 18446744073709551615",
                "engine.neighbors: 18446744073709551615 is not in 0..=4194304",
            ),
            ("neighbors = 4611686018427387904", "engine.neighbors:"),
            ("neighbors = 1099511627776", "engine.neighbors:"),
            (
                "tbl8_groups = 4294967295",
                "engine.tbl8_groups: 4294967295 is not in 0..=1048576",
            ),
            (
                "trace = 18446744073709551615",
                "engine.trace: 18446744073709551615 is not in 0..=1048576",
            ),
            (
                "pool_buffers = 4294967295",
                "engine.pool_buffers: 4294967295 is not in 1024..=2097152",
            ),
            ("pool_buffers = 10", "engine.pool_buffers:"),
            ("ring_size = 8", "engine.ring_size:"),
            ("ring_size = 1000", "engine.ring_size:"),
            ("workers = 0", "engine.workers:"),
        ] {
            expect(&two_ifaces(engine, "", ""), field, "");
        }
        // a wrong type is a syntax error with its position, on one line
        expect(
            &two_ifaces("neighbors = -1", "", ""),
            "config: line 3, column 13:",
            "",
        );
    }

    #[test]
    fn same_address_on_two_interfaces() {
        let t = two_ifaces("", "", "").replace("198.51.100.1/24", "192.0.2.1/24");
        expect(
            &t,
            "interface[1] (core).ipv4: \"192.0.2.1/24\"",
            "already on interface[0] (access)",
        );
        let t = two_ifaces("", "", "").replace("2001:db8:2::1/64", "2001:db8:1::1/64");
        expect(&t, "interface[1] (core).ipv6:", "already on interface[0]");
        // the same link-local address on two links is one address for our FIB
        let t = two_ifaces("", "", "").replace("fe80::2/64", "fe80::1/64");
        expect(&t, "interface[1] (core).ipv6:", "already on interface[0]");
    }

    #[test]
    fn overlapping_interface_subnets() {
        let t = two_ifaces("", "", "").replace("198.51.100.1/24", "192.0.2.200/25");
        expect(
            &t,
            "interface[1] (core).ipv4:",
            "overlaps 192.0.2.1/24 on interface[0] (access)",
        );
        let t = two_ifaces("", "", "").replace("2001:db8:2::1/64", "2001:db8:1::2/48");
        expect(&t, "interface[1] (core).ipv6:", "overlaps");
        // fe80::/64 on every link is normal
        Config::from_toml(&two_ifaces("", "", "")).unwrap();
    }

    #[test]
    fn interface_address_that_is_not_a_host() {
        let t = two_ifaces("", "", "").replace("192.0.2.1/24", "192.0.2.255/24");
        expect(&t, "interface[0] (access).ipv4:", "broadcast");
        let t = two_ifaces("", "", "").replace("192.0.2.1/24", "127.0.0.1/8");
        expect(&t, "interface[0] (access).ipv4:", "not a unicast");
    }

    #[test]
    fn broadcast_or_multicast_mac() {
        for mac in [
            "ff:ff:ff:ff:ff:ff",
            "01:00:5e:00:00:01",
            "33:33:00:00:00:01",
            "00:00:00:00:00:00",
        ] {
            let t = two_ifaces("", "", "").replace("02:00:00:00:01:01", mac);
            expect(&t, "interface[0] (access).mac:", "MAC address");
        }
        let t = two_ifaces(
            "",
            "",
            "[[neighbor]]\nip = \"192.0.2.2\"\nmac = \"ff:ff:ff:ff:ff:ff\"\n",
        );
        expect(&t, "neighbor[0].mac:", "broadcast");
    }

    #[test]
    fn route_via_our_own_address() {
        let t = two_ifaces(
            "",
            "",
            "[[route]]\nprefix = \"10.0.0.0/8\"\nvia = \"198.51.100.1\"\n",
        );
        expect(
            &t,
            "route[0].via:",
            "198.51.100.1 is one of the router's own addresses",
        );
        let t = two_ifaces(
            "",
            "",
            "[[route]]\nprefix = \"2001:db8:99::/48\"\nvia = \"2001:db8:2::1\"\n",
        );
        expect(&t, "route[0].via:", "own addresses");
        let t = two_ifaces(
            "",
            "",
            "[[route]]\nprefix = \"10.0.0.0/8\"\nvia = \"198.51.100.255\"\n",
        );
        expect(&t, "route[0].via:", "broadcast address of 198.51.100.0/24");
        let t = two_ifaces(
            "",
            "",
            "[[route]]\nprefix = \"10.0.0.0/8\"\nvia = \"2001:db8:2::2\"\n",
        );
        expect(&t, "route[0].via:", "address family");
        let t = two_ifaces(
            "",
            "",
            "[route_file]\npath = \"r\"\nnext_hops = [\"192.0.2.1\"]\n",
        );
        expect(&t, "route_file.next_hops[0]:", "own addresses");
    }

    #[test]
    fn route_via_an_off_link_gateway() {
        let t = two_ifaces(
            "",
            "",
            "[[route]]\nprefix = \"10.0.0.0/8\"\nvia = \"203.0.113.1\"\n",
        );
        expect(&t, "route[0].via:", "not in any connected subnet");
    }

    #[test]
    fn prefix_with_host_bits() {
        let t = two_ifaces("", "", "[[route]]\nprefix = \"10.1.2.3/8\"\ndrop = true\n");
        expect(
            &t,
            "route[0].prefix:",
            "10.1.2.3/8 has host bits set (the network is 10.0.0.0/8)",
        );
        let t = two_ifaces(
            "",
            "",
            "[[route]]\nprefix = \"2001:db8:99::1/48\"\ndrop = true\n",
        );
        expect(&t, "route[0].prefix:", "host bits");
    }

    #[test]
    fn duplicate_routes() {
        let r = "[[route]]\nprefix = \"10.0.0.0/8\"\ndrop = true\n";
        let t = two_ifaces("", "", &format!("{r}{r}"));
        expect(&t, "route[1].prefix:", "duplicates route[0]");
        let r2 = "[[route]]\nprefix = \"10.0.0.0/8\"\nvia = \"192.0.2.2\"\n";
        let t = two_ifaces("", "", &format!("{r}{r2}"));
        expect(&t, "route[1].prefix:", "duplicates route[0]");
    }

    #[test]
    fn off_link_static_neighbour() {
        let t = two_ifaces(
            "",
            "",
            "[[neighbor]]\nip = \"203.0.113.9\"\nmac = \"02:00:00:00:09:09\"\n",
        );
        expect(
            &t,
            "neighbor[0].ip:",
            "not in any connected subnet (off-link)",
        );
        let t = two_ifaces(
            "",
            "",
            "[[neighbor]]\nip = \"2001:db8:99::9\"\nmac = \"02:00:00:00:09:09\"\n",
        );
        expect(&t, "neighbor[0].ip:", "off-link");
        let t = two_ifaces(
            "",
            "",
            "[[neighbor]]\nip = \"192.0.2.1\"\nmac = \"02:00:00:00:09:09\"\n",
        );
        expect(&t, "neighbor[0].ip:", "own addresses");
    }

    const NAT_OK: &str = "[nat]\ninside_ports = [0]\npool = [\"203.0.113.0/30\"]\nmax_sessions = 1024\nmax_subscribers = 64\n";

    #[test]
    fn nat_pool_with_an_interface_address() {
        Config::from_toml(&two_ifaces("", "", NAT_OK)).unwrap();
        let t = two_ifaces("", "", &NAT_OK.replace("203.0.113.0/30", "198.51.100.1"));
        expect(
            &t,
            "nat.pool:",
            "includes 198.51.100.1, the address of interface[1] (core)",
        );
        let t = two_ifaces("", "", &NAT_OK.replace("203.0.113.0/30", "198.51.100.0/30"));
        expect(&t, "nat.pool:", "interface[1] (core)");
    }

    #[test]
    fn nat_inside_ports() {
        // port numbers are interface indexes: 0 is the first interface (the example's
        // access side); what is refused is a list naming every interface, a repeat, a
        // port that does not exist, and an empty list.
        let t = two_ifaces("", "", &NAT_OK.replace("[0]", "[0, 1]"));
        expect(&t, "nat.inside_ports:", "none is outside");
        let t = two_ifaces("", "", &NAT_OK.replace("[0]", "[0, 0]"));
        expect(&t, "nat: inside_ports: port 0 listed twice", "");
        let t = two_ifaces("", "", &NAT_OK.replace("[0]", "[2]"));
        expect(&t, "nat.inside_ports: port 2 does not exist", "");
        let t = two_ifaces("", "", &NAT_OK.replace("[0]", "[]"));
        expect(&t, "nat.inside_ports: empty", "");
    }

    #[test]
    fn nat_sizes() {
        let t = two_ifaces(
            "",
            "",
            &NAT_OK.replace("max_sessions = 1024", "max_sessions = 4294967295"),
        );
        expect(
            &t,
            "nat: max_sessions: 4294967295 is not in 1..=16777216",
            "",
        );
        let t = two_ifaces("", "", &format!("{NAT_OK}log_capacity = 4294967295\n"));
        expect(&t, "nat: log_capacity:", "");
    }

    #[test]
    fn firewall_ports_on_icmp_rules() {
        let fw =
            "[firewall]\n[[firewall.rules]]\naction = \"deny\"\nproto = \"icmp\"\ndport = \"22\"\n";
        expect(
            &two_ifaces("", "", fw),
            "firewall: rules[0]: sport/dport only match tcp or udp",
            "",
        );
        let fw = "[firewall]\n[[firewall.rules]]\naction = \"deny\"\nproto = \"icmp\"\nsport = \"1-100\"\n";
        expect(&two_ifaces("", "", fw), "firewall: rules[0]:", "");
        // the old doubled prefix is gone from the other firewall errors too
        let fw = "[firewall]\n[[firewall.rules]]\ndport = \"x\"\n";
        expect(
            &two_ifaces("", "", fw),
            "firewall: rules[0].dport: does not parse",
            "",
        );
        let fw = "[firewall]\nmax_connections = 4294967295\n";
        expect(
            &two_ifaces("", "", fw),
            "firewall: max_connections (1..=16777216) out of range",
            "",
        );
    }

    #[test]
    fn trtcm_with_pir_below_cir() {
        let q = "[qos.policer]\nmeter = { type = \"trtcm\", cir_bps = 2000000, cbs = 3000, pir_bps = 1000000, pbs = 3000 }\n";
        expect(
            &two_ifaces("", "", q),
            "qos.policer: meter: pir_bps must be >= cir_bps",
            "",
        );
    }

    #[test]
    fn zero_rates() {
        let q =
            "[qos.policer]\nmeter = { type = \"srtcm\", cir_bps = 0, cbs = 3000, ebs = 3000 }\n";
        expect(
            &two_ifaces("", "", q),
            "qos.policer: meter.cir_bps: a rate must be above 0 bit/s",
            "",
        );
        let q = "[qos.policer]\nmeter = { type = \"trtcm\", cir_bps = 0, cbs = 3000, pir_bps = 0, pbs = 3000 }\n";
        expect(&two_ifaces("", "", q), "qos.policer: meter.cir_bps:", "");
        let q = "[qos.shaper]\nsubscribers = 4\nrate_bps = 0\nburst_bytes = 1500\n";
        expect(
            &two_ifaces("", "", q),
            "qos.shaper: rate_bps: a rate must be above 0 bit/s",
            "",
        );
        let q = "[qos.marker]\ndscp = 64\n";
        expect(
            &two_ifaces("", "", q),
            "qos.marker: DSCP must be 0..=63",
            "",
        );
    }

    #[test]
    fn mac_parsing() {
        assert_eq!(
            parse_mac("02:00:00:aa:bb:cc").unwrap(),
            [2, 0, 0, 0xaa, 0xbb, 0xcc]
        );
        assert!(parse_mac("02:00:00:aa:bb").is_err());
        assert!(parse_mac("02:00:00:aa:bb:cc:dd").is_err());
        assert!(parse_mac("zz:00:00:aa:bb:cc").is_err());
    }
}
