//! The vCPE's TOML configuration, in nested typed sections (addresses are
//! `Ipv4Addr`/`Net4`/`Range4`, MACs `MacAddr`, ports port specs; a value that does
//! not parse is refused with the field named):
//!
//! ```toml
//! [engine]                 # optional: workers, buffer pool, tables, trace
//! workers = 2              # fast-path threads (default 1), see EngineConfig
//! cores = [2, 3]           # their cores, one per worker (default: worker k on core k)
//! pool_buffers = 16384
//!
//! [lan]
//! port = "afpacket:lan0"   # afpacket:, afxdp:, tap:, pcap:, mem:, memif:, vhost-user:
//! address = "192.168.1.1/24"
//! [lan.dhcp]               # the DHCPv4 server (RFC 2131) on the LAN
//! pool = ["192.168.1.100-192.168.1.199"]
//! lease_time_s = 3600
//! dns = ["192.0.2.53"]
//!
//! [wan]
//! port = "afpacket:wan0"
//! address = "198.51.100.2/24"
//! gateway = "198.51.100.1"
//!
//! [nat]                    # NAT44 LAN -> WAN address (RFC 4787 behaviour)
//! [firewall]               # stateful; only return traffic enters from the WAN
//!
//! [[route]]                # static routes (connected ones come from the addresses)
//! prefix = "10.50.0.0/16"
//! via = "198.51.100.9"
//!
//! [[tunnel]]               # IPsec site-to-site, ESP tunnel mode (RFC 4303)
//! name = "site-b"
//! peer = "198.51.100.3"
//! local = "192.168.1.0/24"
//! remote = "192.168.2.0/24"
//! [tunnel.static]          # static SAs: AES-GCM key ‖ salt in hex (RFC 4106 §8.1)
//! spi_out = 0x1001
//! spi_in = 0x2001
//! key_out = "40 or 72 hex digits"
//! key_in = "40 or 72 hex digits"
//! # or [tunnel.ike] psk = "...": the vCPE's own IKEv2 (RFC 7296)
//! # or [tunnel.keyserver] (peer_id = "..."): keys from the SD-WAN key server
//!
//! [keyserver]              # the SD-WAN key server (vnfs/keyserver), for those tunnels
//! server = "203.0.113.9:500"
//! id = "branch1.example"
//! psk = "a long random secret"
//! ```
//!
//! [`Config::check`] refuses, with one line naming the field, what would misbehave at
//! run time: overlapping LAN/WAN subnets, a gateway off the WAN subnet, prefixes with
//! host bits, a DHCP pool outside the LAN subnet or holding the LAN address, tunnels
//! whose subnets overlap each other or whose peer is inside a tunnelled subnet,
//! reserved SPIs (< 256, RFC 4303 §2.1), keys of the wrong length, a tunnel with
//! not exactly one of `static`, `ike` and `keyserver`, a `keyserver` tunnel without a
//! `[keyserver]` section. Keys and PSKs never print (`<secret>`).

use alloc::format;
use alloc::string::{String, ToString};
use alloc::vec::Vec;
use core::fmt;
use core::net::{Ipv4Addr, SocketAddr};
use dataplane::addr::{Net4, Range4};
#[cfg(feature = "std")]
pub use dataplane::port::spec::PortSpec;
use dataplane::proto::ethernet::MacAddr;
use ipsec::ike::psk::Psk;

/// A port as the configuration names it. Without `std` (the unikernel) the text is
/// kept as given and not used: the ports are the guest's NICs in order.
#[cfg(not(feature = "std"))]
pub type PortSpec = String;
use serde::{Deserialize, Deserializer};
use zeroize::Zeroizing;

/// A configuration error naming the offending field.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ConfigError(pub String);

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl core::error::Error for ConfigError {}

fn err<T>(s: String) -> Result<T, ConfigError> {
    Err(ConfigError(s))
}

/// Size limits checked by [`Config::check`] (each bounds one start-up allocation).
pub mod limits {
    /// `engine.workers`: 1..=256 (as the router's); with NAT, at most one worker
    /// per block of outside ports (`nat.port_min..=port_max` in blocks of 256).
    pub const MAX_WORKERS: usize = 256;
    /// `engine.pool_buffers`: 1024..=2^20.
    pub const MIN_POOL_BUFFERS: u32 = 1024;
    pub const MAX_POOL_BUFFERS: u32 = 1 << 20;
    /// `engine.neighbors`: 16..=2^20.
    pub const MAX_NEIGHBORS: usize = 1 << 20;
    /// `engine.trace`: 0..=2^20 records.
    pub const MAX_TRACE: usize = 1 << 20;
    /// `[[tunnel]]`: at most 256.
    pub const MAX_TUNNELS: usize = 256;
    /// `[[route]]`: at most 65536.
    pub const MAX_ROUTES: usize = 1 << 16;
    /// `nat.max_sessions`: 1..=2^22.
    pub const MAX_NAT_SESSIONS: u32 = 1 << 22;
    /// `firewall.max_connections`: 1..=2^22.
    pub const MAX_CONNECTIONS: u32 = 1 << 22;
    /// `lan.dhcp.max_leases`: 1..=65536.
    pub const MAX_LEASES: u32 = 1 << 16;
}

/// Engine sizing.
#[derive(Clone, Debug, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct EngineConfig {
    /// Worker threads (1 to [`limits::MAX_WORKERS`], default 1), each pinned to a
    /// core. With several, each worker has its own NAT sessions (and a slice of the
    /// outside ports), firewall connections (those of the LAN hosts it owns) and
    /// `nat.max_sessions`/`firewall.max_connections` each; an ESP SA is used by one
    /// worker; packets that arrive on another are handed over. The ports must give
    /// each worker its own queue (AF_XDP `queue`, vhost-user `queues=N`, `mem:`).
    pub workers: usize,
    /// Cores the workers are pinned to, one per worker in order (empty: workers
    /// 0..n on cores 0..n, wrapping at the machine's core count).
    pub cores: Vec<usize>,
    /// Packet buffers in the pool.
    pub pool_buffers: u32,
    /// Neighbour (ARP) table slots.
    pub neighbors: usize,
    /// IPv4 FIB extension groups (routes longer than /24 need one per /24).
    pub tbl8_groups: u32,
    /// Packet-trace records (0: off).
    pub trace: usize,
    /// Seconds between counter lines on the console (0: off).
    pub stats_interval: u32,
}

impl Default for EngineConfig {
    fn default() -> Self {
        EngineConfig {
            workers: 1,
            cores: Vec::new(),
            pool_buffers: 16384,
            neighbors: 1024,
            tbl8_groups: 256,
            trace: 0,
            stats_interval: 0,
        }
    }
}

#[cfg(feature = "std")]
fn port_spec<'de, D: Deserializer<'de>>(d: D) -> Result<PortSpec, D::Error> {
    let s = String::deserialize(d)?;
    s.parse::<PortSpec>()
        .map_err(|e| serde::de::Error::custom(format!("{s:?}: {e}")))
}

#[cfg(not(feature = "std"))]
fn port_spec<'de, D: Deserializer<'de>>(d: D) -> Result<PortSpec, D::Error> {
    String::deserialize(d)
}

#[cfg(feature = "std")]
fn default_port() -> PortSpec {
    PortSpec::Mem {
        name: String::new(),
    }
}

#[cfg(not(feature = "std"))]
fn default_port() -> PortSpec {
    String::new()
}

fn default_mtu() -> u16 {
    1500
}

/// The LAN side.
#[derive(Clone, Debug, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct LanConfig {
    /// Port spec (`afpacket:IF`, `tap:NAME`, `mem:NAME`, ...); `mem:` when absent.
    #[serde(default = "default_port", deserialize_with = "port_spec")]
    pub port: PortSpec,
    /// MAC address; default: the port's own.
    #[serde(default)]
    pub mac: Option<MacAddr>,
    /// The vCPE's LAN address and the LAN prefix (`192.168.1.1/24`).
    pub address: Net4,
    #[serde(default = "default_mtu")]
    pub mtu: u16,
    /// The DHCPv4 server; none without this section.
    #[serde(default)]
    pub dhcp: Option<DhcpConfig>,
}

/// The LAN's DHCPv4 server (`vbng::dhcp4`, RFC 2131): router and subnet mask are the
/// LAN address and prefix.
#[derive(Clone, Debug, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct DhcpConfig {
    /// Address ranges leases come from (`a.b.c.d-e.f.g.h`, `a.b.c.d/len`).
    pub pool: Vec<Range4>,
    #[serde(default = "d_lease")]
    pub lease_time_s: u32,
    /// DNS servers (option 6).
    #[serde(default)]
    pub dns: Vec<Ipv4Addr>,
    /// Most bound leases.
    #[serde(default = "d_leases")]
    pub max_leases: u32,
}

fn d_lease() -> u32 {
    3600
}
fn d_leases() -> u32 {
    1024
}

/// The WAN side.
#[derive(Clone, Debug, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct WanConfig {
    #[serde(default = "default_port", deserialize_with = "port_spec")]
    pub port: PortSpec,
    #[serde(default)]
    pub mac: Option<MacAddr>,
    /// The WAN address and prefix (`198.51.100.2/24`): NAT's outside address and the
    /// tunnels' local endpoint.
    pub address: Net4,
    /// Default gateway (on the WAN subnet).
    pub gateway: Ipv4Addr,
    #[serde(default = "default_mtu")]
    pub mtu: u16,
}

/// NAT44 from the LAN to the WAN address (RFC 4787: endpoint-independent mapping,
/// address-and-port-dependent filtering so only return traffic maps back in).
#[derive(Clone, Debug, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct NatSection {
    /// Off: LAN traffic to the WAN is routed untranslated.
    pub enabled: bool,
    /// Session table size.
    pub max_sessions: u32,
    /// Outside port range.
    pub port_min: u16,
    pub port_max: u16,
}

impl Default for NatSection {
    fn default() -> Self {
        NatSection {
            enabled: true,
            max_sessions: 65536,
            port_min: 1024,
            port_max: 65535,
        }
    }
}

/// The stateful firewall: LAN traffic and tunnel traffic start connections, the WAN
/// only answers.
#[derive(Clone, Debug, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct FirewallSection {
    /// Tracked connections.
    pub max_connections: u32,
    /// Let the remote sites of the tunnels open connections to the LAN (default);
    /// off: only replies come back through a tunnel too.
    pub tunnel_inbound: bool,
    /// Own rules (`[[firewall.rule]]`), matched in order before the built-in ones;
    /// changed at run time through the management API (`mgmt`).
    #[serde(default, rename = "rule")]
    pub rules: Vec<FwRule>,
}

/// A firewall rule: absent fields match anything; `action` is `allow` (tracked),
/// `allow-stateless` or `deny`; `from` is the ingress side, `lan` or `wan`; addresses
/// `a.b.c.d[/len]`, `proto` `tcp`/`udp`/`icmp`/a number, ports `N` or `N-M`.
#[derive(Clone, Debug, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct FwRule {
    pub name: String,
    pub action: dataplane::stages::firewall::Action,
    #[serde(default)]
    pub from: Option<String>,
    #[serde(default)]
    pub src: Option<String>,
    #[serde(default)]
    pub dst: Option<String>,
    #[serde(default)]
    pub proto: Option<String>,
    #[serde(default)]
    pub sport: Option<String>,
    #[serde(default)]
    pub dport: Option<String>,
}

impl Default for FirewallSection {
    fn default() -> Self {
        FirewallSection {
            max_connections: 65536,
            tunnel_inbound: true,
            rules: Vec::new(),
        }
    }
}

/// A static route.
#[derive(Clone, Copy, Debug, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct RouteConfig {
    /// Destination (no host bits).
    pub prefix: Net4,
    /// Gateway on the LAN or WAN subnet.
    pub via: Ipv4Addr,
}

/// An AES-GCM key with its salt (RFC 4106 §8.1: 16 + 4 or 32 + 4 bytes), written
/// as hex. Never printed; wiped on drop.
#[derive(Clone, PartialEq, Eq)]
pub struct HexKey(Zeroizing<Vec<u8>>);

impl HexKey {
    pub fn new(b: &[u8]) -> Self {
        HexKey(Zeroizing::new(b.to_vec()))
    }

    pub fn bytes(&self) -> &[u8] {
        &self.0
    }
}

impl fmt::Debug for HexKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("<secret>")
    }
}

impl<'de> Deserialize<'de> for HexKey {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = Zeroizing::new(String::deserialize(d)?);
        let h = s.strip_prefix("0x").unwrap_or(&s);
        if h.len() % 2 != 0 {
            return Err(serde::de::Error::custom("key: odd number of hex digits"));
        }
        let mut v = Zeroizing::new(Vec::with_capacity(h.len() / 2));
        for i in (0..h.len()).step_by(2) {
            let b = h
                .get(i..i + 2)
                .and_then(|x| u8::from_str_radix(x, 16).ok())
                .ok_or_else(|| serde::de::Error::custom("key: not hex"))?;
            v.push(b);
        }
        if v.len() != 20 && v.len() != 36 {
            return Err(serde::de::Error::custom(format!(
                "key: {} bytes; AES-GCM needs key and salt, 20 (AES-128) or 36 (AES-256)",
                v.len()
            )));
        }
        Ok(HexKey(v))
    }
}

/// Static SAs of a tunnel (both directions).
#[derive(Clone, Debug, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct StaticSa {
    /// SPI of the SA we send with (the peer's `spi_in`).
    pub spi_out: u32,
    /// SPI of the SA we receive with (the peer's `spi_out`).
    pub spi_in: u32,
    pub key_out: HexKey,
    pub key_in: HexKey,
}

fn d_true() -> bool {
    true
}

/// The vCPE's own IKEv2 for a tunnel (`ipsec::ike::daemon`, RFC 7296, PSK).
#[derive(Clone, Debug, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct TunnelIke {
    pub psk: Psk,
    /// Our identity (FQDN or IP address); the WAN address when absent.
    #[serde(default)]
    pub local_id: Option<String>,
    /// The peer's identity must equal this, when given.
    #[serde(default)]
    pub remote_id: Option<String>,
    /// Initiate at start-up (and again after a failure); off: respond only.
    #[serde(default = "d_true")]
    pub initiate: bool,
    /// IKE proposals (strongSwan keywords); the daemon's default when absent.
    #[serde(default)]
    pub proposals: Option<Vec<String>>,
    /// ESP proposals; the daemon's default when absent.
    #[serde(default)]
    pub esp_proposals: Option<Vec<String>>,
    /// IKE SA rekey time, seconds (0: never).
    #[serde(default = "d_ike_rekey")]
    pub rekey_time_s: u64,
    /// Child SA rekey time, seconds (0: never).
    #[serde(default = "d_child_rekey")]
    pub child_rekey_time_s: u64,
    /// Dead peer detection interval, seconds (0: off).
    #[serde(default)]
    pub dpd_delay_s: u64,
}

fn d_ike_rekey() -> u64 {
    14400
}
fn d_child_rekey() -> u64 {
    3600
}

/// A tunnel whose keys come from the key server (`[keyserver]`): its SAs are the
/// server's INSTALL records whose traffic selectors are this tunnel's `local` and
/// `remote` (and whose peer is `peer`, and `peer_id` when given).
#[derive(Clone, Debug, Default, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct TunnelKeyserver {
    /// The peer CPE's identity at the key server; not checked when absent.
    #[serde(default)]
    pub peer_id: Option<String>,
}

fn d_ks_bind() -> SocketAddr {
    SocketAddr::from(([0, 0, 0, 0], 0))
}
fn d_ks_dpd() -> u64 {
    10_000
}
fn d_ks_retransmit() -> u64 {
    500
}

/// `[keyserver]`: the SD-WAN key server this CPE registers with (IKEv2, PSK) to
/// receive the keys of its `[tunnel.keyserver]` tunnels (`keyserver::client`).
#[derive(Clone, Debug, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct KeyserverSection {
    /// The server's UDP address (IKE).
    pub server: SocketAddr,
    /// Our identity (FQDN) as configured at the server (`[[cpe]] id`).
    pub id: String,
    /// Our PSK at the server; never printed, wiped on drop.
    pub psk: Psk,
    /// The server's identity (its `server.id`); checked when given.
    #[serde(default)]
    pub server_id: Option<String>,
    /// The local UDP socket (a host socket of the control plane).
    #[serde(default = "d_ks_bind")]
    pub bind: SocketAddr,
    /// A liveness check after this long without a message from the server (0: off).
    #[serde(default = "d_ks_dpd")]
    pub dpd_ms: u64,
    /// IKE retransmission timeout (RFC 7296 §2.1).
    #[serde(default = "d_ks_retransmit")]
    pub retransmit_ms: u64,
}

/// One IPsec site-to-site tunnel: traffic from `local` to `remote` is ESP in tunnel
/// mode to `peer` (not NATed); ESP from `peer` is decrypted to the LAN.
#[derive(Clone, Debug, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct TunnelConfig {
    pub name: String,
    /// The peer's WAN address.
    pub peer: Ipv4Addr,
    /// Our side's subnet (usually the LAN prefix).
    pub local: Net4,
    /// The remote site's subnet.
    pub remote: Net4,
    #[serde(default, rename = "static")]
    pub static_sa: Option<StaticSa>,
    #[serde(default)]
    pub ike: Option<TunnelIke>,
    #[serde(default)]
    pub keyserver: Option<TunnelKeyserver>,
}

/// The whole vCPE configuration.
#[derive(Clone, Debug, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct Config {
    #[serde(default)]
    pub engine: EngineConfig,
    pub lan: LanConfig,
    pub wan: WanConfig,
    #[serde(default)]
    pub nat: NatSection,
    #[serde(default)]
    pub firewall: FirewallSection,
    #[serde(default, rename = "route")]
    pub routes: Vec<RouteConfig>,
    #[serde(default, rename = "tunnel")]
    pub tunnels: Vec<TunnelConfig>,
    #[serde(default)]
    pub keyserver: Option<KeyserverSection>,
}

fn has_host_bits(n: &Net4) -> bool {
    n.addr != n.network()
}

fn overlaps(a: &Net4, b: &Net4) -> bool {
    a.contains(b.addr) || b.contains(a.addr)
}

fn mac_ok(m: &Option<MacAddr>, at: &str) -> Result<(), ConfigError> {
    if let Some(m) = m {
        if m.0[0] & 1 != 0 || m.0 == [0; 6] {
            return err(format!("{at}.mac: {m} is not a unicast address"));
        }
    }
    Ok(())
}

impl Config {
    /// Parses and checks a TOML configuration; errors are one line.
    pub fn from_toml(text: &str) -> Result<Config, ConfigError> {
        let c: Config = toml::from_str(text).map_err(|e| {
            let msg = e.message().trim().replace('\n', " ");
            match e.span() {
                Some(s) => {
                    let line = text.get(..s.start).map(|p| p.lines().count()).unwrap_or(0);
                    ConfigError(format!("line {}: {msg}", line.max(1)))
                }
                None => ConfigError(msg),
            }
        })?;
        c.check()?;
        Ok(c)
    }

    /// Every check that needs neither ports nor tables.
    pub fn check(&self) -> Result<(), ConfigError> {
        let e = &self.engine;
        if !e.cores.is_empty() && e.cores.len() != e.workers {
            return err(format!(
                "engine.cores: {} cores for {} workers (one core per worker, or none)",
                e.cores.len(),
                e.workers
            ));
        }
        if e.workers == 0 || e.workers > limits::MAX_WORKERS {
            return err(format!(
                "engine.workers: {} is not in 1..={}",
                e.workers,
                limits::MAX_WORKERS
            ));
        }
        if !(limits::MIN_POOL_BUFFERS..=limits::MAX_POOL_BUFFERS).contains(&e.pool_buffers) {
            return err(format!(
                "engine.pool_buffers: {} is not in {}..={}",
                e.pool_buffers,
                limits::MIN_POOL_BUFFERS,
                limits::MAX_POOL_BUFFERS
            ));
        }
        if !(16..=limits::MAX_NEIGHBORS).contains(&e.neighbors) {
            return err(format!(
                "engine.neighbors: {} is not in 16..={}",
                e.neighbors,
                limits::MAX_NEIGHBORS
            ));
        }
        if e.tbl8_groups > dataplane::stages::l3::MAX_TBL8_GROUPS {
            return err(format!(
                "engine.tbl8_groups: {} is over {}",
                e.tbl8_groups,
                dataplane::stages::l3::MAX_TBL8_GROUPS
            ));
        }
        if e.trace > limits::MAX_TRACE {
            return err(format!(
                "engine.trace: {} is over {}",
                e.trace,
                limits::MAX_TRACE
            ));
        }
        let lan = &self.lan;
        let wan = &self.wan;
        mac_ok(&lan.mac, "lan")?;
        mac_ok(&wan.mac, "wan")?;
        for (at, n) in [("lan.address", &lan.address), ("wan.address", &wan.address)] {
            if n.len == 0 || n.len > 30 {
                return err(format!("{at}: prefix length {} is not in 1..=30", n.len));
            }
            if n.addr == n.network() || n.addr == broadcast(n) {
                return err(format!(
                    "{at}: {} is the subnet's network or broadcast address",
                    n.addr
                ));
            }
        }
        for (at, m) in [("lan.mtu", lan.mtu), ("wan.mtu", wan.mtu)] {
            if !(576..=9000).contains(&m) {
                return err(format!("{at}: {m} is not in 576..=9000"));
            }
        }
        if overlaps(&lan.address, &wan.address) {
            return err(format!(
                "wan.address: {} overlaps the LAN subnet {}",
                wan.address, lan.address
            ));
        }
        if !wan.address.contains(wan.gateway) || wan.gateway == wan.address.addr {
            return err(format!(
                "wan.gateway: {} is not another address on the WAN subnet {}",
                wan.gateway, wan.address
            ));
        }
        if let Some(d) = &lan.dhcp {
            if d.pool.is_empty() {
                return err("lan.dhcp.pool: empty".into());
            }
            for (i, r) in d.pool.iter().enumerate() {
                if !lan.address.contains(r.first()) || !lan.address.contains(r.last()) {
                    return err(format!(
                        "lan.dhcp.pool[{i}]: {r} is not inside the LAN subnet {}",
                        lan.address
                    ));
                }
                if r.contains(lan.address.addr) {
                    return err(format!(
                        "lan.dhcp.pool[{i}]: {r} holds the LAN address {}",
                        lan.address.addr
                    ));
                }
            }
            if d.max_leases == 0 || d.max_leases > limits::MAX_LEASES {
                return err(format!(
                    "lan.dhcp.max_leases: {} is not in 1..={}",
                    d.max_leases,
                    limits::MAX_LEASES
                ));
            }
        }
        if self.nat.max_sessions == 0 || self.nat.max_sessions > limits::MAX_NAT_SESSIONS {
            return err(format!(
                "nat.max_sessions: {} is not in 1..={}",
                self.nat.max_sessions,
                limits::MAX_NAT_SESSIONS
            ));
        }
        if self.nat.port_min == 0 || self.nat.port_min > self.nat.port_max {
            return err(format!(
                "nat.port_min/port_max: {}..{} is not a port range",
                self.nat.port_min, self.nat.port_max
            ));
        }
        if self.nat.enabled {
            // NAT44 slices the outside ports among the workers in blocks of 256
            // (fewer when the range is smaller): each worker needs one.
            let span = u32::from(self.nat.port_max) - u32::from(self.nat.port_min) + 1;
            let blocks = (span / span.min(256)) as usize;
            if self.engine.workers > blocks {
                return err(format!(
                    "engine.workers: {} workers need a block of outside ports each; nat.port_min..port_max ({}..{}) holds {blocks}",
                    self.engine.workers, self.nat.port_min, self.nat.port_max
                ));
            }
        }
        let fc = self.firewall.max_connections;
        if fc == 0 || fc > limits::MAX_CONNECTIONS {
            return err(format!(
                "firewall.max_connections: {fc} is not in 1..={}",
                limits::MAX_CONNECTIONS
            ));
        }
        for (i, r) in self.firewall.rules.iter().enumerate() {
            if r.name.is_empty() || self.firewall.rules[..i].iter().any(|x| x.name == r.name) {
                return err(format!(
                    "firewall.rule[{i}].name: {:?} is empty or not unique",
                    r.name
                ));
            }
            if !matches!(r.from.as_deref(), None | Some("lan" | "wan")) {
                return err(format!("firewall.rule {}: from is lan or wan", r.name));
            }
        }
        if self.routes.len() > limits::MAX_ROUTES {
            return err(format!("route: more than {}", limits::MAX_ROUTES));
        }
        for (i, r) in self.routes.iter().enumerate() {
            if has_host_bits(&r.prefix) {
                return err(format!("route[{i}].prefix: {} has host bits", r.prefix));
            }
            let on_link = (lan.address.contains(r.via) && r.via != lan.address.addr)
                || (wan.address.contains(r.via) && r.via != wan.address.addr);
            if !on_link {
                return err(format!(
                    "route[{i}].via: {} is not a neighbour on the LAN or WAN subnet",
                    r.via
                ));
            }
            if self.routes[..i].iter().any(|o| o.prefix == r.prefix) {
                return err(format!("route[{i}].prefix: {} given twice", r.prefix));
            }
        }
        if let Some(k) = &self.keyserver {
            if k.id.is_empty() {
                return err("keyserver.id: empty".to_string());
            }
            if k.psk.bytes().len() < 8 {
                return err("keyserver.psk: shorter than 8 bytes".to_string());
            }
            if k.server.port() == 0 || k.server.ip().is_unspecified() {
                return err(format!("keyserver.server: {} is not an address", k.server));
            }
            if k.retransmit_ms == 0 {
                return err("keyserver.retransmit_ms: 0".to_string());
            }
        }
        if self.tunnels.len() > limits::MAX_TUNNELS {
            return err(format!("tunnel: more than {}", limits::MAX_TUNNELS));
        }
        for (i, t) in self.tunnels.iter().enumerate() {
            let at = format!("tunnel[{i}] ({})", t.name);
            if t.name.is_empty()
                || !t
                    .name
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
            {
                return err(format!(
                    "{at}.name: letters, digits, '-' and '_' only, not empty"
                ));
            }
            if self.tunnels[..i].iter().any(|o| o.name == t.name) {
                return err(format!("{at}.name: given twice"));
            }
            for (f, n) in [("local", &t.local), ("remote", &t.remote)] {
                if has_host_bits(n) {
                    return err(format!("{at}.{f}: {n} has host bits"));
                }
            }
            if overlaps(&t.remote, &lan.address) || overlaps(&t.remote, &wan.address) {
                return err(format!(
                    "{at}.remote: {} overlaps the LAN or WAN subnet",
                    t.remote
                ));
            }
            if t.remote.contains(t.peer) {
                return err(format!(
                    "{at}.peer: {} is inside the tunnelled subnet {}",
                    t.peer, t.remote
                ));
            }
            if t.peer == wan.address.addr || lan.address.contains(t.peer) {
                return err(format!(
                    "{at}.peer: {} is our own address or on the LAN",
                    t.peer
                ));
            }
            if let Some(o) = self.tunnels[..i]
                .iter()
                .find(|o| overlaps(&o.remote, &t.remote))
            {
                return err(format!(
                    "{at}.remote: {} overlaps tunnel {}'s {}",
                    t.remote, o.name, o.remote
                ));
            }
            if t.keyserver.is_some() && (t.static_sa.is_some() || t.ike.is_some()) {
                return err(format!("{at}: [keyserver] and [static] or [ike]: not both"));
            }
            if t.keyserver.is_some() && self.keyserver.is_none() {
                return err(format!("{at}.keyserver: needs a [keyserver] section"));
            }
            match (&t.static_sa, &t.ike) {
                (Some(s), None) => {
                    for (f, spi) in [("spi_out", s.spi_out), ("spi_in", s.spi_in)] {
                        if spi < 256 {
                            return err(format!(
                                "{at}.static.{f}: {spi} is reserved (RFC 4303 §2.1: 1..255)"
                            ));
                        }
                    }
                    let spis_in: Vec<u32> = self.tunnels[..i]
                        .iter()
                        .filter_map(|o| o.static_sa.as_ref().map(|s| s.spi_in))
                        .collect();
                    if spis_in.contains(&s.spi_in) {
                        return err(format!(
                            "{at}.static.spi_in: {:#x} used by another tunnel",
                            s.spi_in
                        ));
                    }
                }
                (None, Some(k)) => {
                    if k.psk.bytes().len() < 8 {
                        return err(format!("{at}.ike.psk: shorter than 8 bytes"));
                    }
                }
                (Some(_), Some(_)) => {
                    return err(format!("{at}: either [static] or [ike], not both"));
                }
                (None, None) if t.keyserver.is_some() => {}
                (None, None) => {
                    return err(format!(
                        "{at}: needs [tunnel.static], [tunnel.ike] or [tunnel.keyserver]"
                    ));
                }
            }
        }
        Ok(())
    }
}

/// The subnet's broadcast address.
pub fn broadcast(n: &Net4) -> Ipv4Addr {
    Ipv4Addr::from(u32::from(n.network()) | !dataplane::addr::mask4(n.len))
}
