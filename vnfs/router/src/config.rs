//! The router's TOML configuration: engine sizing, interfaces (port spec, MAC,
//! addresses, MTU), static routes, a route file of up to millions of prefixes, and
//! static neighbours. Parsing is `no_std` (the unikernel reads the same file); every
//! error names the field it is about.

use alloc::format;
use alloc::string::String;
use alloc::vec::Vec;
use core::net::{Ipv4Addr, Ipv6Addr};
use dataplane::stages::firewall::FirewallConfig;
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
}

impl Config {
    /// Parses and checks a TOML configuration.
    pub fn from_toml(text: &str) -> Result<Config, ConfigError> {
        let c: Config = toml::from_str(text).map_err(|e| ConfigError(format!("config: {e}")))?;
        c.check()?;
        Ok(c)
    }

    /// Semantic checks beyond the syntax.
    pub fn check(&self) -> Result<(), ConfigError> {
        if self.interfaces.is_empty() {
            return err("config: at least one [[interface]] is needed".into());
        }
        if self.engine.workers == 0 || self.engine.workers > 256 {
            return err(format!(
                "engine.workers: {} is not in 1..=256",
                self.engine.workers
            ));
        }
        if !self.engine.ring_size.is_power_of_two() {
            return err(format!(
                "engine.ring_size: {} is not a power of two",
                self.engine.ring_size
            ));
        }
        if self.engine.pool_buffers < 1024 {
            return err(format!(
                "engine.pool_buffers: {} is below 1024",
                self.engine.pool_buffers
            ));
        }
        for (i, ifc) in self.interfaces.iter().enumerate() {
            let at = format!("interface[{i}] ({})", ifc.name);
            if let Some(m) = &ifc.mac {
                parse_mac(m).map_err(|e| ConfigError(format!("{at}.mac: {e}")))?;
            }
            for a in &ifc.ipv4 {
                parse_net4(a).map_err(|e| ConfigError(format!("{at}.ipv4: {e}")))?;
            }
            for a in &ifc.ipv6 {
                parse_net6(a).map_err(|e| ConfigError(format!("{at}.ipv6: {e}")))?;
            }
            if !(576..=9216).contains(&ifc.mtu) {
                return err(format!("{at}.mtu: {} is not in 576..=9216", ifc.mtu));
            }
            if self
                .interfaces
                .iter()
                .filter(|x| x.name == ifc.name)
                .count()
                > 1
            {
                return err(format!("{at}.name: duplicate interface name"));
            }
        }
        for (i, r) in self.routes.iter().enumerate() {
            let at = format!("route[{i}]");
            parse_prefix(&r.prefix).map_err(|e| ConfigError(format!("{at}.prefix: {e}")))?;
            match (&r.via, r.drop) {
                (Some(_), true) => return err(format!("{at}: give either via or drop, not both")),
                (None, false) => {
                    return err(format!("{at}: needs via = \"GATEWAY\" or drop = true"))
                }
                (Some(v), false) => {
                    v.parse::<core::net::IpAddr>().map_err(|_| {
                        ConfigError(format!("{at}.via: {v:?} is not an IP address"))
                    })?;
                }
                (None, true) => {}
            }
        }
        if let Some(rf) = &self.route_file {
            if rf.next_hops.is_empty() {
                return err("route_file.next_hops: at least one next hop is needed".into());
            }
            for (i, v) in rf.next_hops.iter().enumerate() {
                v.parse::<core::net::IpAddr>().map_err(|_| {
                    ConfigError(format!(
                        "route_file.next_hops[{i}]: {v:?} is not an IP address"
                    ))
                })?;
            }
        }
        if self.nat.is_some() && self.engine.workers > 1 {
            return err(
                "nat: needs engine.workers = 1 (return traffic to a pool address is not steered to the worker that owns the mapping)".into(),
            );
        }
        let nports = self.interfaces.len() as u16;
        if let Some(n) = &self.nat {
            if let Some(p) = n.inside_ports.iter().find(|p| **p >= nports) {
                return err(format!(
                    "nat.inside_ports: port {p} does not exist ({nports} interfaces)"
                ));
            }
        }
        for (i, n) in self.neighbors.iter().enumerate() {
            n.ip.parse::<core::net::IpAddr>().map_err(|_| {
                ConfigError(format!("neighbor[{i}].ip: {:?} is not an IP address", n.ip))
            })?;
            parse_mac(&n.mac).map_err(|e| ConfigError(format!("neighbor[{i}].mac: {e}")))?;
        }
        Ok(())
    }
}

/// Parses `aa:bb:cc:dd:ee:ff`.
pub fn parse_mac(s: &str) -> Result<[u8; 6], String> {
    let mut m = [0u8; 6];
    let mut n = 0;
    for part in s.split([':', '-']) {
        let Some(slot) = m.get_mut(n) else {
            return Err(format!("{s:?} is not a MAC address"));
        };
        *slot = u8::from_str_radix(part, 16).map_err(|_| format!("{s:?} is not a MAC address"))?;
        n += 1;
    }
    if n != 6 {
        return Err(format!("{s:?} is not a MAC address"));
    }
    Ok(m)
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
