//! vBNG configuration (TOML via serde). Every field has a default so a lab config can
//! be a few lines; see `vnfs/vbng/vbng.example.toml`.
//!
//! Addresses, prefixes, ranges, socket addresses and MACs are typed fields
//! ([`Ipv4Addr`], [`SocketAddr`], [`MacAddr`] and `dataplane::addr`'s [`Net4`],
//! [`Net6`], [`Range4`]), each read from its usual text form: a malformed one is
//! refused when the TOML is read, with the line and the key (`line 3:
//! pools[0].ranges[0]: ...`). [`Config::validate`] then refuses, with a one-line
//! reason, what would misbehave at run time: overlapping, martian or oversized pools
//! and pools holding the BNG's own addresses (so no address is handed out twice, RFC
//! 2865 §5.8), duplicate pool or user names, user addresses outside every pool, zero
//! rate limits, and every size setting outside its documented limit (the `MAX_*`
//! constants, the README's limit table).

use crate::lcp::AuthProto;
use alloc::string::{String, ToString};
use alloc::vec;
use alloc::vec::Vec;
use core::net::{Ipv4Addr, SocketAddr};
use dataplane::addr::Prefix64;
pub use dataplane::addr::{Net4, Net6, Range4};
use dataplane::ippool::{PoolConfigError, PoolItem};
pub use dataplane::proto::ethernet::MacAddr;
use serde::{Deserialize, Serialize};

/// Most session slots (`vbng run --max-sessions`): about 300 bytes of tables per slot
/// are allocated up front, so the limit bounds start-up memory.
pub const MAX_SESSIONS: u32 = 1 << 20;
/// Most IPv4 pools and most IPv6 pools.
pub const MAX_POOLS: usize = 256;
/// Most DNS servers handed out in IPCP (RFC 1877: primary and secondary).
pub const MAX_DNS: usize = 2;
/// Most IPv6 DNS servers announced in the RA's RDNSS option (RFC 8106 §5.1).
pub const MAX_DNS6: usize = 8;
/// Longest `name` (AC-Name, CHAP name, NAS-Identifier; RFC 2865 §5.32 allows 253).
pub const MAX_NAME_LEN: usize = 64;
/// Most service names served.
pub const MAX_SERVICE_NAMES: usize = 64;
/// Largest `max_payload` (RFC 4638 PPP-Max-Payload; a jumbo frame).
pub const MAX_PAYLOAD: u16 = 9000;
/// Longest half-open timeout, s.
pub const MAX_HALF_OPEN_TIMEOUT_S: u32 = 120;
/// Most workers (`workers`).
pub const MAX_WORKERS: u16 = 64;

/// Top-level configuration.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Config {
    /// AC-Name, CHAP name and NAS-Identifier.
    pub name: String,
    /// Our MAC on the access side, `aa:bb:cc:dd:ee:ff`.
    pub mac: MacAddr,
    /// Gateway address announced in IPCP (RFC 1332 §3.3).
    pub gateway: Ipv4Addr,
    /// DNS servers handed out (RFC 1877).
    pub dns: Vec<Ipv4Addr>,
    /// Authentication protocol requested in LCP.
    pub auth: AuthProto,
    /// Protocol accepted if the subscriber Naks ours.
    pub auth_fallback: Option<AuthProto>,
    /// Our MRU and the largest PPP-Max-Payload granted (RFC 4638).
    pub max_payload: u16,
    /// Service names served (empty = any).
    pub service_names: Vec<String>,
    /// LCP echo interval, s (0 = off).
    pub keepalive_interval_s: u32,
    /// Unanswered echoes before the session is declared dead.
    pub keepalive_failures: u8,
    /// PPP restart timer, ms (RFC 1661 §4.6).
    pub restart_ms: u64,
    /// Negotiate IPv6CP too.
    pub ipv6cp: bool,
    /// PADI per MAC per second.
    pub padi_per_mac: u32,
    /// PADI per access port per second.
    pub padi_per_port: u32,
    /// Half-open sessions (PADS sent, PPP not yet in the Network phase, RFC 1661
    /// §3.2) allowed in all; further PADRs are dropped (counted) until some complete
    /// or expire. Keep it well below the session slots (`--max-sessions`).
    pub half_open_max: u32,
    /// Half-open sessions allowed per subscriber MAC (on one access port).
    pub half_open_per_mac: u32,
    /// Half-open sessions allowed per access line (port, S-VLAN, C-VLAN).
    pub half_open_per_line: u32,
    /// A session that has not reached the Network phase this many seconds after its
    /// PADR (or after LCP renegotiation) is ended; waiting for AAA does not count.
    pub half_open_timeout_s: u32,
    /// Address pools; the first is the default.
    pub pools: Vec<PoolConfig>,
    /// IPv6 prefix pools (one /64 per session, announced by RA for SLAAC over PPP,
    /// RFC 5072 §5); the first is the default. Used when `ipv6cp` is on.
    pub pools6: Vec<Pool6Config>,
    /// IPv6 DNS servers announced in the RA's RDNSS option (RFC 8106 §5.1).
    pub dns6: Vec<core::net::Ipv6Addr>,
    /// Interval of unsolicited Router Advertisements, s (RFC 4861 §6.2.1
    /// MaxRtrAdvInterval; 0 = only after IPv6CP opens and on solicitation).
    pub ra_interval_s: u32,
    /// Router Lifetime announced, s (RFC 4861 §6.2.1 AdvDefaultLifetime).
    pub ra_router_lifetime_s: u16,
    /// The RA's Managed address configuration flag (RFC 4861 §4.2 M, AdvManagedFlag):
    /// addresses by DHCPv6 (RFC 8415).
    pub ra_managed: bool,
    /// The RA's Other configuration flag (RFC 4861 §4.2 O, AdvOtherConfigFlag):
    /// other parameters (DNS) by DHCPv6.
    pub ra_other: bool,
    /// Prefix valid lifetime, s (RFC 4861 §6.2.1 AdvValidLifetime).
    pub prefix_valid_s: u32,
    /// Prefix preferred lifetime, s (RFC 4861 §6.2.1 AdvPreferredLifetime).
    pub prefix_preferred_s: u32,
    /// Our IPv6 address on the core side: source of ICMPv6 Time Exceeded and Packet
    /// Too Big (RFC 4443 §3.2–3.3) sent to the core; absent = silent counted drops.
    pub core_ip6: Option<core::net::Ipv6Addr>,
    /// The IPv6 core next hop, resolved by Neighbor Discovery (RFC 4861 §7.2; needs
    /// `core_ip6` and `core_ip`); absent = upstream IPv6 goes to the IPv4 next hop.
    pub core_gateway6: Option<core::net::Ipv6Addr>,
    /// RADIUS; absent = local users only.
    pub radius: Option<RadiusConfig>,
    /// Local users (lab fallback authentication).
    pub users: Vec<UserConfig>,
    /// Path of a local user file (`name password [ip] [up/down]` per line).
    pub user_file: Option<String>,
    /// Default per-subscriber rate (up, down) in bit/s; 0 = unlimited.
    pub default_rate_up: u64,
    /// See `default_rate_up`.
    pub default_rate_down: u64,
    /// Ports (used by the binary): access and core port specs.
    pub ports: PortsConfig,
    /// Workers (1 to [`MAX_WORKERS`], default 1): the fast path runs on this many
    /// pinned threads, a subscriber's traffic owned by one of them and handed over
    /// when it arrives on another; the control plane keeps a thread of its own. With
    /// several, the ports must give each worker its own queue (AF_XDP `queue`).
    pub workers: u16,
    /// The cores of the workers, one per worker (empty: worker k on core k).
    pub cores: Vec<usize>,
    /// The static next-hop MAC on the core port (used without `core_gateway`).
    pub core_next_hop_mac: MacAddr,
    /// Our address on the core link with its prefix length, `198.51.100.1/24`: ARP
    /// requests for it are answered (RFC 826), ICMP errors to the core come from it,
    /// pings to it are answered. Absent = no core address.
    pub core_ip: Option<Net4>,
    /// The core next hop, resolved by ARP (needs `core_ip`, on its subnet); absent =
    /// the static `core_next_hop_mac`.
    pub core_gateway: Option<Ipv4Addr>,
    /// TCP MSS clamping of SYN/SYN-ACK on the sessions: `"auto"` (session MTU − 40,
    /// RFC 879/6691), a number, or `"off"`.
    pub tcp_mss_clamp: crate::mss::MssClamp,
    /// ICMP errors sent by the BNG per second (RFC 1812 §4.3.2.8 token bucket); 0 =
    /// none.
    pub icmp_rate: u32,
    /// Depth of the ICMP token bucket.
    pub icmp_burst: u32,
    /// Shorthand for `[cgnat] pool = [PREFIX]` (kept for old configs).
    pub cgnat_public: Option<Range4>,
    /// CGNAT (RFC 6888 port blocks, `nat44` between the upstream and downstream fast
    /// path); absent = subscriber addresses are routed as they are.
    pub cgnat: Option<CgnatSection>,
    /// Prometheus/CLI listen address (binary), `ip:port`.
    pub listen: Option<SocketAddr>,
    /// IPoE subscribers (DHCPv4) on the access port besides PPPoE; absent = PPPoE
    /// only.
    pub ipoe: Option<IpoeSection>,
    /// The DHCPv6 server (RFC 8415): prefix delegation (IA_PD) to PPPoE subscribers
    /// after IPv6CP. All prefix pools delegate one length (≤ 64).
    pub dhcp6: Option<crate::dhcp6::Dhcp6Config>,
    /// The disaggregated vBNG (BBF TR-459, `vbng-cp` and `vbng-up`): PFCP and GTP-U
    /// addresses; absent for the monolithic `vbng` (which refuses it).
    pub cups: Option<CupsSection>,
}

/// How the control plane places a new session on a user plane.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "kebab-case")]
pub enum Placement {
    /// On the user plane whose access port the subscriber's line is on (user plane
    /// `n` is the control plane's access port `n`).
    #[default]
    AccessPort,
    /// Dual-homed access (every user plane's access port reaches every line): a new
    /// line is answered through the user plane with the fewest sessions; the copies
    /// of its broadcasts that other user planes redirect are dropped.
    Load,
}

/// `[cups]`: the disaggregated vBNG (BBF TR-459). `vbng-cp` reads `addr` and `ups`;
/// `vbng-up` reads `addr` and `cp`.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
#[serde(default, deny_unknown_fields)]
pub struct CupsSection {
    /// Our PFCP (UDP 8805, TS 29.244 §7.2.1) and GTP-U (UDP 2152, TS 29.281) address;
    /// also our PFCP Node ID.
    pub addr: Ipv4Addr,
    /// `vbng-cp`: the user planes' addresses; user plane `n` is access port `n`.
    pub ups: Vec<Ipv4Addr>,
    /// `vbng-up`: the control plane's address (only its PFCP requests are served).
    pub cp: Option<Ipv4Addr>,
    /// `vbng-cp`: the sessions' usage reporting period, s (0: only the final report
    /// and queries).
    pub measurement_period_s: u32,
    /// PFCP heartbeat interval, s (TS 29.244 §6.2.2).
    pub heartbeat_s: u32,
    /// `vbng-cp`: session placement, `access-port` (default) or `load`.
    pub placement: Placement,
    /// PFCP request retransmission timer T1, ms (TS 29.244 §6.4; default 3000).
    pub t1_ms: u64,
    /// PFCP retransmissions N1 before a request (a heartbeat: the peer) is given up
    /// (TS 29.244 §6.4; default 3).
    pub n1: u32,
}

/// Most user planes one control plane drives.
pub const MAX_UPS: usize = 64;

impl Default for CupsSection {
    fn default() -> Self {
        CupsSection {
            addr: Ipv4Addr::UNSPECIFIED,
            ups: Vec::new(),
            cp: None,
            measurement_period_s: 10,
            heartbeat_s: 10,
            placement: Placement::AccessPort,
            t1_ms: 3_000,
            n1: 3,
        }
    }
}

impl CupsSection {
    /// Checks the section for a control plane (`cp = true`) or a user plane.
    pub fn validate(&self, cp: bool) -> Result<(), ConfigError> {
        let e = |m: &str| Err(ConfigError(alloc::format!("cups: {m}")));
        if self.addr.is_unspecified() || self.addr.is_multicast() || self.addr.is_broadcast() {
            return e("addr: our unicast PFCP/GTP-U address is required");
        }
        if self.heartbeat_s == 0 || self.heartbeat_s > 3600 {
            return e("heartbeat_s: 1 to 3600");
        }
        if !(100..=60_000).contains(&self.t1_ms) || self.n1 > 10 {
            return e("t1_ms: 100 to 60000, n1: 0 to 10");
        }
        if cp {
            if self.ups.is_empty() || self.ups.len() > MAX_UPS {
                return e("ups: 1 to 64 user plane addresses");
            }
            for (i, u) in self.ups.iter().enumerate() {
                if *u == self.addr || self.ups[..i].contains(u) {
                    return e(&alloc::format!(
                        "ups[{i}] {u}: duplicate or our own address"
                    ));
                }
            }
            if self.cp.is_some() {
                return e("cp: only for vbng-up");
            }
        } else {
            match self.cp {
                None => return e("cp: the control plane's address is required"),
                Some(c) if c == self.addr => return e("cp: our own address"),
                _ => {}
            }
            if !self.ups.is_empty() {
                return e("ups: only for vbng-cp");
            }
        }
        Ok(())
    }
}

/// What an IPoE subscriber's AAA user name is made of.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "kebab-case")]
pub enum IpoeUsername {
    /// The client's MAC address as `aa:bb:cc:dd:ee:ff`.
    #[default]
    Mac,
    /// The Agent Circuit ID a relay or access node inserted (RFC 3046 §3.1), as text.
    CircuitId,
    /// The Agent Remote ID (RFC 3046 §3.2), as text.
    RemoteId,
}

/// `[ipoe]`: IPoE subscribers (RFC 894 IPv4 over Ethernet, single or QinQ VLANs),
/// created by the built-in DHCPv4 server (`[ipoe.dhcp]`, RFC 2131) and authorised
/// like PPPoE subscribers: RADIUS (User-Name from [`IpoeUsername`], User-Password
/// `password`) or the local `users`, or not at all with `authorize = false`.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct IpoeSection {
    /// The AAA user name: `mac` (default), `circuit-id` or `remote-id`.
    pub username: IpoeUsername,
    /// The password sent with it (RADIUS User-Password) or checked against `users`.
    pub password: Password,
    /// `false`: no AAA, every client is accepted with the default rate.
    pub authorize: bool,
    /// Where the `vbng` binary keeps the bound leases across restarts (written
    /// atomically within a second of a change, read at start; absent = not kept).
    pub lease_journal: Option<String>,
    /// The DHCPv4 server: subnet gateway, pools (apart from the PPPoE pools), DNS,
    /// lease times, options. With `relay`, only `gateway` is used (our address on
    /// the subscriber subnet, the relay's `giaddr`).
    pub dhcp: crate::dhcp4::Dhcp4Config,
    /// Relay DHCP to external servers instead of answering it (RFC 2131 §4.1,
    /// RFC 1542 §4.1, relay agent information RFC 3046).
    pub relay: Option<RelaySection>,
    /// IPv6 for IPoE subscribers from the `[dhcp6]` server: IA_NA addresses (one
    /// /128 each, routed to the subscriber) and IA_PD prefixes, Router
    /// Advertisements on the access link (M/O flags from `ra_managed`/`ra_other`,
    /// no prefix for SLAAC) and our link-local gateway answered by ND. A DHCPv6
    /// Solicit starts a session like a DHCPDISCOVER (MAC user name).
    pub dhcp6: bool,
}

/// `[ipoe.relay]`: the vBNG as a DHCP relay agent towards external servers on the
/// core side. Client messages go to every server from `core_ip` with `giaddr` our
/// IPoE gateway and option 82 added (circuit id `access<port>:<svlan>.<cvlan>`,
/// remote id the client's MAC `aa:bb:cc:dd:ee:ff`); the servers' replies to
/// `giaddr` come back through the core port, lose option 82 and go to the client's
/// line. A bound lease (the server's DHCPACK) installs the session as with the
/// built-in server.
#[derive(Debug, Clone, Serialize, Deserialize, Default, PartialEq, Eq)]
#[serde(default, deny_unknown_fields)]
pub struct RelaySection {
    /// The servers (1 to 4), reached through `core_gateway` (or
    /// `core_next_hop_mac`).
    pub servers: Vec<Ipv4Addr>,
    /// Forward client messages that already carry option 82 (an access node that
    /// inserted it is trusted, RFC 3046 §2.1.1); default: such messages are dropped.
    pub trust_option82: bool,
}

impl Default for IpoeSection {
    fn default() -> Self {
        let mut dhcp = crate::dhcp4::Dhcp4Config {
            gateway: Net4 {
                addr: Ipv4Addr::new(100, 72, 0, 1),
                len: 16,
            },
            ..Default::default()
        };
        for p in &mut dhcp.pools {
            p.ranges = Range4::new(
                Ipv4Addr::new(100, 72, 0, 2),
                Ipv4Addr::new(100, 72, 255, 254),
            )
            .into_iter()
            .collect();
        }
        IpoeSection {
            username: IpoeUsername::Mac,
            password: Password::default(),
            authorize: true,
            lease_journal: None,
            dhcp,
            relay: None,
            dhcp6: false,
        }
    }
}

impl Default for Config {
    fn default() -> Self {
        Config {
            name: "vbng".to_string(),
            mac: MacAddr([0x02, 0, 0, 0, 0xb0, 0x01]),
            gateway: Ipv4Addr::new(100, 64, 0, 1),
            dns: vec![Ipv4Addr::new(192, 0, 2, 53)],
            auth: AuthProto::Pap,
            auth_fallback: Some(AuthProto::Chap),
            max_payload: 1500,
            service_names: Vec::new(),
            keepalive_interval_s: 30,
            keepalive_failures: 3,
            restart_ms: 3000,
            ipv6cp: false,
            padi_per_mac: 10,
            padi_per_port: 100_000,
            half_open_max: 4096,
            half_open_per_mac: 4,
            half_open_per_line: 32,
            half_open_timeout_s: 5,
            pools: vec![PoolConfig {
                name: "default".to_string(),
                // 100.64.0.2-100.67.255.254 (first <= last, so `new` gives Some).
                ranges: Range4::new(
                    Ipv4Addr::new(100, 64, 0, 2),
                    Ipv4Addr::new(100, 67, 255, 254),
                )
                .into_iter()
                .collect(),
            }],
            pools6: Vec::new(),
            dns6: Vec::new(),
            ra_interval_s: 600,
            ra_managed: false,
            ra_other: false,
            ra_router_lifetime_s: 1800,
            prefix_valid_s: 86400,
            prefix_preferred_s: 14400,
            core_ip6: None,
            core_gateway6: None,
            radius: None,
            users: Vec::new(),
            user_file: None,
            default_rate_up: 0,
            default_rate_down: 0,
            ports: PortsConfig::default(),
            workers: 1,
            cores: Vec::new(),
            core_next_hop_mac: MacAddr([0x02, 0, 0, 0, 0xc0, 0x01]),
            core_ip: None,
            core_gateway: None,
            tcp_mss_clamp: crate::mss::MssClamp::Auto,
            icmp_rate: 1000,
            icmp_burst: 100,
            cgnat_public: None,
            cgnat: None,
            ipoe: None,
            dhcp6: None,
            listen: None,
            cups: None,
        }
    }
}

/// The `[cgnat]` section: the outside pool and the port-block settings
/// (`dataplane::stages::nat::{NatConfig, CgnatConfig}`; the access port is the inside).
#[derive(Debug, Clone, Serialize, Deserialize, Default, PartialEq, Eq)]
#[serde(default, deny_unknown_fields)]
pub struct CgnatSection {
    /// Outside addresses: `a.b.c.d`, `a.b.c.d/len` or `a.b.c.d-e.f.g.h` (at most
    /// 4096 addresses in all).
    pub pool: Vec<Range4>,
    /// Ports per block (default 512).
    pub block_size: Option<u16>,
    /// Blocks one subscriber may hold, 1 to 32 (default 4).
    pub blocks_per_subscriber: Option<u16>,
    /// Sessions one subscriber may hold (default 4000).
    pub sessions_per_subscriber: Option<u32>,
    /// NAT session table size (default 4 per session slot, at least 65536, at most
    /// 4194304).
    pub max_sessions: Option<u32>,
    /// Log port-block allocations and releases (RFC 6888 §4; default on).
    pub log: Option<bool>,
}

/// Default NAT session table size for `slots` session slots.
pub fn default_nat_sessions(slots: u32) -> u32 {
    slots.saturating_mul(4).clamp(1 << 16, 1 << 22)
}

/// An address pool.
#[derive(Debug, Clone, Serialize, Deserialize, Default)]
#[serde(default, deny_unknown_fields)]
pub struct PoolConfig {
    /// Name (matched against Framed-Pool).
    pub name: String,
    /// Ranges `a.b.c.d-e.f.g.h` or `a.b.c.d/len` (or one address `a.b.c.d`).
    pub ranges: Vec<Range4>,
}

/// An IPv6 prefix pool.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Pool6Config {
    /// Name (matched against Framed-IPv6-Pool, RFC 3162 §2.4).
    #[serde(default)]
    pub name: String,
    /// Covering prefix `addr/len`, len ≤ 64 (host bits ignored); one /64 per
    /// session is handed out.
    pub prefix: Net6,
}

impl Pool6Config {
    /// The /64s of the covering prefix, first and last; `None` when it is longer
    /// than /64.
    pub fn range(&self) -> Option<(Prefix64, Prefix64)> {
        if self.prefix.len > 64 {
            return None;
        }
        let first = Prefix64::of(self.prefix.network());
        let span = u64::MAX
            .checked_shr(u32::from(self.prefix.len))
            .unwrap_or(0);
        Some((first, Prefix64(first.0 | span)))
    }
}

/// A shared secret from the configuration: `Debug` prints `"<redacted>"` and the
/// memory is zeroized on drop. Serialized as a plain string.
#[derive(Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(transparent)]
pub struct Secret(String);

impl Secret {
    /// The secret text.
    pub fn expose(&self) -> &str {
        &self.0
    }

    /// The secret as octets (what RADIUS hashes).
    pub fn as_bytes(&self) -> &[u8] {
        self.0.as_bytes()
    }

    /// No secret configured.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

impl core::fmt::Debug for Secret {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.write_str("\"<redacted>\"")
    }
}

impl Drop for Secret {
    fn drop(&mut self) {
        zeroize::Zeroize::zeroize(&mut self.0);
    }
}

impl From<&str> for Secret {
    fn from(s: &str) -> Secret {
        Secret(s.to_string())
    }
}

impl From<String> for Secret {
    fn from(s: String) -> Secret {
        Secret(s)
    }
}

/// A RADIUS server.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct ServerConfig {
    /// `ip:port`.
    pub addr: SocketAddr,
    /// Shared secret (never printed by `Debug`).
    #[serde(default)]
    pub secret: Secret,
}

/// RADIUS settings.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct RadiusConfig {
    /// Authentication servers in failover order.
    pub auth: Vec<ServerConfig>,
    /// Accounting servers in failover order.
    pub acct: Vec<ServerConfig>,
    /// First retransmission timeout, ms.
    pub timeout_ms: u64,
    /// Transmissions per server.
    pub tries: u8,
    /// NAS-IP-Address.
    pub nas_ip: Ipv4Addr,
    /// Interim-update interval, s (0 = none unless Acct-Interim-Interval says so).
    pub interim_s: u32,
    /// Dynamic authorization (CoA/DM) listen address `ip:port`; absent = off.
    pub coa_listen: Option<SocketAddr>,
    /// CoA/DM shared secret (required with `coa_listen`).
    pub coa_secret: Secret,
    /// Fall back to the local users when every server timed out.
    pub local_fallback: bool,
    /// Drop an Access-Accept/-Reject/-Challenge without a valid Message-Authenticator
    /// (RFC 3579 §3.2; the BlastRADIUS, CVE-2024-3596, mitigation). Default on.
    pub require_message_authenticator: bool,
    /// Accounting records kept (in flight, waiting and retrying) before new ones are
    /// refused (counted and logged).
    pub acct_queue_limit: u32,
    /// An accounting record not acknowledged after this long is given up (counted and
    /// logged with its Acct-Session-Id); 0 = never.
    pub acct_max_age_s: u32,
    /// Upper bound of the back-off between retry rounds over all accounting servers, s.
    pub acct_retry_max_s: u32,
    /// Journal of unacknowledged accounting records, replayed when vbng starts again;
    /// absent = in memory only.
    pub acct_journal: Option<String>,
}

impl Default for RadiusConfig {
    fn default() -> Self {
        RadiusConfig {
            auth: Vec::new(),
            acct: Vec::new(),
            timeout_ms: 1000,
            tries: 3,
            nas_ip: Ipv4Addr::LOCALHOST,
            interim_s: 0,
            coa_listen: None,
            coa_secret: Secret::default(),
            local_fallback: false,
            require_message_authenticator: true,
            acct_queue_limit: 100_000,
            acct_max_age_s: 86_400,
            acct_retry_max_s: 60,
            acct_journal: None,
        }
    }
}

impl RadiusConfig {
    /// Check the section: servers, retry settings, secrets. Messages name the key as
    /// `radius.<key>` once.
    pub fn validate(&self) -> Result<(), ConfigError> {
        let e = |m: alloc::string::String| Err(ConfigError(m));
        if self.auth.is_empty() {
            return e("radius.auth: no server configured".to_string());
        }
        for (list, servers) in [("auth", &self.auth), ("acct", &self.acct)] {
            for (i, s) in servers.iter().enumerate() {
                if s.secret.is_empty() {
                    return e(alloc::format!(
                        "radius.{list}[{i}] ({}): empty shared secret",
                        s.addr
                    ));
                }
            }
        }
        if self.tries == 0 {
            return e("radius.tries: must be at least 1".to_string());
        }
        if self.timeout_ms == 0 {
            return e("radius.timeout_ms: must be at least 1".to_string());
        }
        if self.coa_listen.is_some() && self.coa_secret.is_empty() {
            return e(
                "radius.coa_secret: required with coa_listen (CoA/Disconnect-Requests \
                 are authenticated with it, RFC 5176 §2.3)"
                    .to_string(),
            );
        }
        if self.acct_queue_limit == 0 {
            return e("radius.acct_queue_limit: must be at least 1".to_string());
        }
        if self.acct_retry_max_s == 0 {
            return e("radius.acct_retry_max_s: must be at least 1".to_string());
        }
        if self.acct_journal.as_deref() == Some("") {
            return e("radius.acct_journal: empty path".to_string());
        }
        Ok(())
    }
}

/// A local user. `Debug` prints the password as `<redacted>`; it is zeroed on drop.
#[derive(Debug, Clone, Serialize, Deserialize, Default, PartialEq, Eq)]
#[serde(default, deny_unknown_fields)]
pub struct UserConfig {
    /// User name.
    pub name: String,
    /// Cleartext password.
    pub password: Password,
    /// Fixed address.
    pub ip: Option<Ipv4Addr>,
    /// Rate `up/down`, e.g. `10M/50M`.
    pub rate: Option<String>,
}

/// A cleartext password from the config (also the CHAP secret, RFC 1994 §2): `Debug`
/// prints `<redacted>`; zeroed on drop.
#[derive(Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(transparent)]
pub struct Password(String);

impl Password {
    /// The password's bytes.
    pub fn as_bytes(&self) -> &[u8] {
        self.0.as_bytes()
    }
}

impl From<&str> for Password {
    fn from(s: &str) -> Password {
        Password(s.to_string())
    }
}

impl From<String> for Password {
    fn from(s: String) -> Password {
        Password(s)
    }
}

impl core::fmt::Debug for Password {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        core::fmt::Debug::fmt(&crate::auth::REDACTED, f)
    }
}

impl Drop for Password {
    fn drop(&mut self) {
        zeroize::Zeroize::zeroize(&mut self.0);
    }
}

/// Port specs for the binary.
#[derive(Debug, Clone, Serialize, Deserialize, Default)]
#[serde(default, deny_unknown_fields)]
pub struct PortsConfig {
    /// Access (subscriber) port spec.
    pub access: String,
    /// Core port spec.
    pub core: String,
}

/// A configuration error.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigError(pub String);

impl core::fmt::Display for ConfigError {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.write_str(&self.0)
    }
}

fn err(s: &str, what: &str) -> ConfigError {
    ConfigError(alloc::format!("bad {what}: {s:?}"))
}

/// A pool that cannot be built, as one line; the reserved items are the BNG's own
/// addresses (gateway, core address and gateway; the /64s of the IPv6 ones).
fn pool_error<A: PoolItem>(e: PoolConfigError<A>) -> ConfigError {
    ConfigError(match e {
        PoolConfigError::Reserved { pool, item } => alloc::format!(
            "{} {pool:?} holds the BNG's own {} {item}",
            A::POOL,
            A::NOUN.0
        ),
        e => e.to_string(),
    })
}

/// Parse `up/down` with k/M/G suffixes.
pub fn parse_rate_pair(s: &str) -> Result<(u64, u64), ConfigError> {
    let (u, d) = s.split_once('/').unwrap_or((s, s));
    let u = crate::radius::parse_rate(u).ok_or_else(|| err(s, "rate"))?;
    let d = crate::radius::parse_rate(d).ok_or_else(|| err(s, "rate"))?;
    Ok((u, d))
}

/// Reads and validates a config file (as `vbng`, `vbng-cp` and `vbng-up` do); a
/// relative `user_file` is read from the config file's directory. The error is one
/// line naming the file.
#[cfg(feature = "std")]
pub fn load_file(path: &str) -> Result<Config, String> {
    use std::path::Path;
    let text = std::fs::read_to_string(path).map_err(|e| alloc::format!("reading {path}: {e}"))?;
    let mut cfg = Config::from_toml(&text).map_err(|e| alloc::format!("{path}: {e}"))?;
    if let Some(f) = cfg.user_file.clone() {
        let f = match Path::new(path).parent() {
            Some(dir) if Path::new(&f).is_relative() => dir.join(&f),
            _ => f.into(),
        };
        let shown = f.display();
        let t = std::fs::read_to_string(&f).map_err(|e| alloc::format!("reading {shown}: {e}"))?;
        cfg.users
            .extend(parse_user_file(&t).map_err(|e| alloc::format!("{shown}: {e}"))?);
        // The file's users meet the same rules (unique names, addresses in a pool).
        cfg.validate()
            .map_err(|e| alloc::format!("{path} with {shown}: {e}"))?;
    }
    Ok(cfg)
}

/// Parse a user file: `name password [ip] [up/down]` per line, `#` comments.
pub fn parse_user_file(text: &str) -> Result<Vec<UserConfig>, ConfigError> {
    // One pass over the lines, the vector sized up front (100k users load in one
    // allocation, not a doubling series).
    let mut v = Vec::with_capacity(text.lines().count());
    for line in text.lines() {
        let line = line.split('#').next().unwrap_or("").trim();
        if line.is_empty() {
            continue;
        }
        let mut it = line.split_whitespace();
        let (Some(name), Some(password)) = (it.next(), it.next()) else {
            return Err(err(line, "user line"));
        };
        let mut u = UserConfig {
            name: name.to_string(),
            password: password.into(),
            ip: None,
            rate: None,
        };
        for extra in it {
            if extra.contains('/') {
                parse_rate_pair(extra)?;
                u.rate = Some(extra.to_string());
            } else {
                u.ip = Some(
                    extra
                        .parse()
                        .map_err(|_| err(extra, &alloc::format!("address of user {name:?}")))?,
                );
            }
        }
        v.push(u);
    }
    Ok(v)
}

impl Config {
    /// Parse TOML text. An error is one line, `line N: key.path: message` (the key
    /// path when a value is at fault, e.g. `radius.acct[0].addr`).
    pub fn from_toml(s: &str) -> Result<Config, ConfigError> {
        let one_line = |e: &toml::de::Error, path: Option<String>| {
            let line = e
                .span()
                .and_then(|r| s.get(..r.start))
                .map(|before| before.matches('\n').count() + 1);
            let msg = e.message().trim().replace('\n', " ");
            let msg = match path {
                Some(p) => alloc::format!("{p}: {msg}"),
                None => msg,
            };
            ConfigError(match line {
                Some(l) => alloc::format!("line {l}: {msg}"),
                None => msg,
            })
        };
        let de = toml::Deserializer::parse(s).map_err(|e| one_line(&e, None))?;
        let c: Config = serde_path_to_error::deserialize(de).map_err(|e| {
            let path = e.path().to_string();
            one_line(e.inner(), (path != ".").then_some(path))
        })?;
        c.validate()?;
        Ok(c)
    }

    /// The NAT of the `[cgnat]` section (or the `cgnat_public` shorthand) for a BNG
    /// with `slots` session slots: inside port 0 (access), one subscriber per slot;
    /// `None` without CGNAT. Errors are one line naming the key.
    pub fn nat_config(
        &self,
        slots: u32,
    ) -> Result<Option<dataplane::stages::nat::NatConfig>, ConfigError> {
        use dataplane::stages::nat::{self, CgnatConfig, NatConfig};
        let sec = match (&self.cgnat, &self.cgnat_public) {
            (Some(_), Some(_)) => {
                return Err(ConfigError(
                    "cgnat_public and [cgnat] both given: put the prefix in cgnat.pool".to_string(),
                ))
            }
            (Some(c), None) => c.clone(),
            (None, Some(p)) => CgnatSection {
                pool: vec![*p],
                ..CgnatSection::default()
            },
            (None, None) => return Ok(None),
        };
        let d = CgnatConfig::default();
        let c = NatConfig {
            inside_ports: vec![0],
            pool: sec.pool.iter().map(|r| r.to_string()).collect(),
            cgnat: Some(CgnatConfig {
                block_size: sec.block_size.unwrap_or(d.block_size),
                blocks_per_subscriber: sec.blocks_per_subscriber.unwrap_or(d.blocks_per_subscriber),
                sessions_per_subscriber: sec
                    .sessions_per_subscriber
                    .unwrap_or(d.sessions_per_subscriber),
                log: sec.log.unwrap_or(d.log),
            }),
            max_subscribers: slots.clamp(16, nat::MAX_SUBSCRIBERS),
            max_sessions: sec.max_sessions.unwrap_or(default_nat_sessions(slots)),
            ..NatConfig::default()
        };
        let key = if self.cgnat.is_some() {
            "cgnat.pool"
        } else {
            "cgnat_public"
        };
        c.validate().map_err(|e| {
            ConfigError(match e {
                nat::ConfigError::BadPool(p) => alloc::format!(
                    "{key}: bad entry {p:?} (want a.b.c.d, a.b.c.d/len or a.b.c.d-e.f.g.h)"
                ),
                nat::ConfigError::EmptyPool => alloc::format!("{key}: empty"),
                nat::ConfigError::PoolTooLarge => {
                    alloc::format!("{key}: more than {} addresses", nat::MAX_POOL)
                }
                nat::ConfigError::BadBlockSize => {
                    "cgnat: block_size must be 8 to 64512 and blocks_per_subscriber 1 to 32"
                        .to_string()
                }
                nat::ConfigError::OutOfRange(w, v, lo, hi) => {
                    let w = w.strip_prefix("cgnat.").unwrap_or(w);
                    let w = if w == "max_subscribers" {
                        "max_subscribers (the session slots)"
                    } else {
                        w
                    };
                    alloc::format!("cgnat.{w}: {v} is not in {lo}..={hi}")
                }
                e => alloc::format!("cgnat: {e}"),
            })
        })?;
        let ranges = c
            .pool_ranges()
            .map_err(|e| ConfigError(alloc::format!("{key}: {e}")))?;
        for &(lo, hi) in &ranges {
            for a in self.own_addresses() {
                if (lo..=hi).contains(&u32::from(a)) {
                    return Err(ConfigError(alloc::format!(
                        "{key}: holds the BNG's own address {a}"
                    )));
                }
            }
            for p in &self.pools {
                for r in &p.ranges {
                    let (a, b) = r.bounds();
                    if a <= hi && lo <= b {
                        return Err(ConfigError(alloc::format!(
                            "{key}: overlaps subscriber pool {:?} ({r})",
                            p.name
                        )));
                    }
                }
            }
        }
        Ok(Some(c))
    }

    /// `[dhcp6]`: the server's own checks; one delegated length (the fast path
    /// routes one); prefix pools apart from the SLAAC /64 pools.
    pub fn validate_dhcp6(&self) -> Result<(), ConfigError> {
        let Some(d) = &self.dhcp6 else {
            return Ok(());
        };
        d.validate()
            .map_err(|e| ConfigError(alloc::format!("dhcp6: {}", e.0)))?;
        let ipoe6 = self.ipoe.as_ref().is_some_and(|i| i.dhcp6);
        let Some(first) = d.prefix_pools.first() else {
            // IPoE subscribers may take addresses (IA_NA) only; PPPoE needs prefixes.
            if ipoe6 && !d.address_pools.is_empty() {
                return Ok(());
            }
            return Err(ConfigError(
                "dhcp6.prefix_pools: at least one pool (prefix delegation)".to_string(),
            ));
        };
        let bounds = |a: core::net::Ipv6Addr, len: u8| {
            let n = u128::from(a);
            let host = if len == 0 {
                u128::MAX
            } else {
                u128::MAX >> len
            };
            (n & !host, n | host)
        };
        for p in &d.prefix_pools {
            if p.len != first.len || p.len > 64 {
                return Err(ConfigError(alloc::format!(
                    "dhcp6.prefix_pools ({}): every pool delegates one length of at most 64 (the first says /{})",
                    p.name, first.len
                )));
            }
            let (lo, hi) = bounds(p.prefix.addr, p.prefix.len);
            for q in &self.pools6 {
                let (a, b) = bounds(q.prefix.addr, q.prefix.len);
                if a <= hi && lo <= b {
                    return Err(ConfigError(alloc::format!(
                        "dhcp6.prefix_pools ({}): overlaps IPv6 pool {:?}",
                        p.name,
                        q.name
                    )));
                }
            }
        }
        Ok(())
    }

    /// `[ipoe]`: the DHCP server's own checks, and its pools apart from the PPPoE
    /// pools and the CGNAT outside pool.
    pub fn validate_ipoe(&self) -> Result<(), ConfigError> {
        let Some(i) = &self.ipoe else {
            return Ok(());
        };
        if i.dhcp6 && self.dhcp6.is_none() {
            return Err(ConfigError(
                "ipoe.dhcp6: needs a [dhcp6] section (its pools serve the IPoE subscribers)"
                    .to_string(),
            ));
        }
        i.dhcp
            .validate()
            .map_err(|e| ConfigError(alloc::format!("ipoe.dhcp: {}", e.0)))?;
        if let Some(r) = &i.relay {
            if r.servers.is_empty() || r.servers.len() > 4 {
                return Err(ConfigError(
                    "ipoe.relay.servers: 1 to 4 servers".to_string(),
                ));
            }
            if self.core_ip.is_none() {
                return Err(ConfigError(
                    "ipoe.relay needs core_ip (the relay's source address)".to_string(),
                ));
            }
            for a in &r.servers {
                if a.is_unspecified() || a.is_broadcast() || a.is_multicast() || a.is_loopback() {
                    return Err(ConfigError(alloc::format!(
                        "ipoe.relay.servers: {a} is not a unicast address"
                    )));
                }
            }
        }
        let nat = self.nat_config(1)?;
        let outside = match &nat {
            Some(c) => c.pool_ranges().unwrap_or_default(),
            None => Vec::new(),
        };
        for d in &i.dhcp.pools {
            for r in &d.ranges {
                let (lo, hi) = r.bounds();
                for p in &self.pools {
                    for q in &p.ranges {
                        let (a, b) = q.bounds();
                        if a <= hi && lo <= b {
                            return Err(ConfigError(alloc::format!(
                                "ipoe.dhcp.pools ({}): overlaps subscriber pool {:?} ({q})",
                                d.name,
                                p.name
                            )));
                        }
                    }
                }
                for &(a, b) in &outside {
                    if a <= hi && lo <= b {
                        return Err(ConfigError(alloc::format!(
                            "ipoe.dhcp.pools ({}): overlaps the CGNAT outside pool",
                            d.name
                        )));
                    }
                }
                if (lo..=hi).contains(&u32::from(self.gateway)) {
                    return Err(ConfigError(alloc::format!(
                        "ipoe.dhcp.pools ({}): holds the PPPoE gateway {}",
                        d.name,
                        self.gateway
                    )));
                }
            }
        }
        Ok(())
    }

    /// The BNG's own IPv4 addresses: never a subscriber's (gateway, core address and
    /// core gateway).
    pub fn own_addresses(&self) -> Vec<Ipv4Addr> {
        let mut v = vec![self.gateway];
        v.extend(self.core_ip.map(|n| n.addr));
        v.extend(self.core_gateway);
        if let Some(i) = &self.ipoe {
            v.push(i.dhcp.gateway.addr);
            v.extend(i.dhcp.server_id);
        }
        v
    }

    /// The IPv4 pools, checked (see [`dataplane::ippool::Pools::new`]).
    pub fn build_pools(&self) -> Result<crate::pool::Pools, ConfigError> {
        if self.pools.is_empty() {
            return Err(ConfigError("at least one pool is needed".to_string()));
        }
        if self.pools.len() > MAX_POOLS {
            return Err(ConfigError(alloc::format!(
                "{} pools, more than the limit of {MAX_POOLS}",
                self.pools.len()
            )));
        }
        let mut pools = Vec::with_capacity(self.pools.len());
        for p in &self.pools {
            let ranges: Vec<_> = p.ranges.iter().map(|r| (r.first(), r.last())).collect();
            pools.push(crate::pool::Pool::new(&p.name, &ranges).map_err(pool_error)?);
        }
        crate::pool::Pools::new(pools, &self.own_addresses()).map_err(pool_error)
    }

    /// The IPv6 prefix pools, checked (see [`dataplane::ippool::Pools::new`]).
    pub fn build_pools6(&self) -> Result<crate::pool6::Pools6, ConfigError> {
        if self.pools6.len() > MAX_POOLS {
            return Err(ConfigError(alloc::format!(
                "{} IPv6 pools, more than the limit of {MAX_POOLS}",
                self.pools6.len()
            )));
        }
        let mut pools = Vec::with_capacity(self.pools6.len());
        for (i, p) in self.pools6.iter().enumerate() {
            let range = p.range().ok_or_else(|| {
                ConfigError(alloc::format!(
                    "pools6[{i}].prefix: {} is longer than /64 (one /64 per session is handed out)",
                    p.prefix
                ))
            })?;
            pools.push(crate::pool6::Pool6::new(&p.name, &[range]).map_err(pool_error)?);
        }
        let own: Vec<Prefix64> = [self.core_ip6, self.core_gateway6]
            .into_iter()
            .flatten()
            .map(Prefix64::of)
            .collect();
        crate::pool6::Pools6::new(pools, &own).map_err(pool_error)
    }

    /// Check the local users: unique names, and each fixed address inside a pool, not
    /// martian nor ours, held by one user only.
    pub fn validate_users(&self, pools: &crate::pool::Pools) -> Result<(), ConfigError> {
        let mut names = hashbrown::HashSet::new();
        let mut ips = hashbrown::HashSet::new();
        for u in &self.users {
            if u.name.is_empty() {
                return Err(ConfigError("a user has an empty name".to_string()));
            }
            if !names.insert(u.name.as_str()) {
                return Err(ConfigError(alloc::format!(
                    "duplicate user name {:?}",
                    u.name
                )));
            }
            if let Some(r) = &u.rate {
                parse_rate_pair(r)?;
            }
            let Some(ip) = u.ip else { continue };
            let why = if !pools.assignable(ip) {
                Some("is martian or one of the BNG's own addresses")
            } else if !pools.contains(ip) {
                Some("is outside every pool")
            } else if !ips.insert(ip) {
                Some("is given to another user too")
            } else {
                None
            };
            if let Some(why) = why {
                return Err(ConfigError(alloc::format!(
                    "address {ip} of user {:?} {why}",
                    u.name
                )));
            }
        }
        Ok(())
    }

    /// Check the values against each other and against their limits (their syntax
    /// was checked when they were read).
    pub fn validate(&self) -> Result<(), ConfigError> {
        if self.workers == 0 || self.workers > MAX_WORKERS {
            return Err(ConfigError(alloc::format!(
                "workers: 1 to {MAX_WORKERS}, not {}",
                self.workers
            )));
        }
        if !self.cores.is_empty() && self.cores.len() != usize::from(self.workers) {
            return Err(ConfigError(alloc::format!(
                "cores: one core per worker ({} workers, {} cores)",
                self.workers,
                self.cores.len()
            )));
        }
        let core = self.core_ip;
        if let Some(n) = core {
            let a = n.addr;
            if a.is_unspecified() || a.is_broadcast() || a.is_multicast() {
                return Err(ConfigError(alloc::format!(
                    "core_ip: {n} is not a unicast address"
                )));
            }
        }
        if let Some(gw) = self.core_gateway {
            let Some(n) = core else {
                return Err(ConfigError("core_gateway needs core_ip".to_string()));
            };
            if !n.contains(gw) || gw == n.addr {
                return Err(err(
                    &alloc::format!("{gw}"),
                    "core_gateway (not on core_ip's subnet)",
                ));
            }
        }
        if let Some(gw6) = self.core_gateway6 {
            if self.core_ip6.is_none() || core.is_none() {
                return Err(ConfigError(
                    "core_gateway6 needs core_ip6 and core_ip".to_string(),
                ));
            }
            if gw6.is_multicast() || gw6.is_unspecified() || Some(gw6) == self.core_ip6 {
                return Err(err(&alloc::format!("{gw6}"), "core_gateway6"));
            }
        }
        if self.gateway.is_martian() {
            return Err(err(
                &alloc::format!("{}", self.gateway),
                "gateway (martian)",
            ));
        }
        let pools = self.build_pools()?;
        self.build_pools6()?;
        self.validate_users(&pools)?;
        if self.name.is_empty() || self.name.len() > MAX_NAME_LEN {
            return Err(ConfigError(alloc::format!(
                "name must be 1 to {MAX_NAME_LEN} bytes"
            )));
        }
        if self.service_names.len() > MAX_SERVICE_NAMES {
            return Err(ConfigError(alloc::format!(
                "more than {MAX_SERVICE_NAMES} service_names"
            )));
        }
        if self.dns.len() > MAX_DNS {
            return Err(ConfigError(alloc::format!(
                "more than {MAX_DNS} dns servers (IPCP has a primary and a secondary)"
            )));
        }
        if self.dns6.len() > MAX_DNS6 {
            return Err(ConfigError(alloc::format!(
                "more than {MAX_DNS6} dns6 servers"
            )));
        }
        for (key, v) in [
            ("padi_per_mac", self.padi_per_mac),
            ("padi_per_port", self.padi_per_port),
            ("half_open_max", self.half_open_max),
            ("half_open_per_mac", self.half_open_per_mac),
            ("half_open_per_line", self.half_open_per_line),
            ("half_open_timeout_s", self.half_open_timeout_s),
        ] {
            if v == 0 {
                return Err(ConfigError(alloc::format!("{key} must be at least 1")));
            }
        }
        if self.half_open_max > MAX_SESSIONS {
            return Err(ConfigError(alloc::format!(
                "half_open_max must be at most {MAX_SESSIONS}"
            )));
        }
        if self.half_open_timeout_s > MAX_HALF_OPEN_TIMEOUT_S {
            return Err(ConfigError(alloc::format!(
                "half_open_timeout_s must be at most {MAX_HALF_OPEN_TIMEOUT_S}"
            )));
        }
        if self.keepalive_interval_s > 0 && self.keepalive_failures == 0 {
            return Err(ConfigError(
                "keepalive_failures must be at least 1 when keepalives are on".to_string(),
            ));
        }
        if let Some(r) = &self.radius {
            r.validate()?;
        }
        self.nat_config(1)?;
        self.validate_ipoe()?;
        self.validate_dhcp6()?;
        if !(64..=MAX_PAYLOAD).contains(&self.max_payload) {
            return Err(ConfigError(alloc::format!(
                "max_payload must be 64 to {MAX_PAYLOAD}"
            )));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parse_example() {
        let c = Config::from_toml(
            r#"
name = "bng1"
auth = "chap"
[[pools]]
name = "gold"
ranges = ["10.0.0.0/24", "10.1.0.5-10.1.0.9"]
[radius]
auth = [{ addr = "127.0.0.1:1812", secret = "s" }]
coa_listen = "127.0.0.1:3799"
coa_secret = "k"
[[users]]
name = "alice"
password = "pw"
rate = "10M/50M"
"#,
        )
        .unwrap();
        assert_eq!(c.auth, AuthProto::Chap);
        assert_eq!(c.pools[0].ranges[0].bounds(), (0x0a000000, 0x0a0000ff));
        assert_eq!(
            c.pools[0].ranges[1],
            Range4::new(Ipv4Addr::new(10, 1, 0, 5), Ipv4Addr::new(10, 1, 0, 9)).unwrap()
        );
        assert_eq!(
            c.radius.as_ref().unwrap().coa_listen,
            Some("127.0.0.1:3799".parse().unwrap())
        );
        assert_eq!(
            parse_rate_pair("10M/50M").unwrap(),
            (10_000_000, 50_000_000)
        );
        assert!(Config::from_toml("mac = \"zz\"").is_err());
        assert!(Config::from_toml("bogus = 1").is_err());
        let u = parse_user_file("# c\nbob pw 10.0.0.1 1M/2M\ncarol x\n").unwrap();
        assert_eq!(u.len(), 2);
        assert_eq!(u[0].ip, Some(Ipv4Addr::new(10, 0, 0, 1)));
        assert!(parse_user_file("lonely\n").is_err());
    }

    #[test]
    fn parse_core_link() {
        let c = Config::from_toml(
            "core_ip = \"198.51.100.1/24\"\ncore_gateway = \"198.51.100.254\"\ntcp_mss_clamp = 1400\n",
        )
        .unwrap();
        assert_eq!(
            c.core_ip,
            Some(Net4 {
                addr: Ipv4Addr::new(198, 51, 100, 1),
                len: 24
            })
        );
        assert_eq!(c.tcp_mss_clamp, crate::mss::MssClamp::Fixed(1400));
        assert_eq!(Config::default().tcp_mss_clamp, crate::mss::MssClamp::Auto);
        assert!(Config::from_toml("core_gateway = \"198.51.100.254\"").is_err());
        assert!(Config::from_toml(
            "core_ip = \"198.51.100.1/24\"\ncore_gateway = \"198.51.101.254\""
        )
        .is_err());
        assert!(Config::from_toml("core_ip = \"198.51.100.1\"").is_err());
        assert!(Config::from_toml("core_gateway6 = \"fe80::1\"").is_err());
        let c = Config::from_toml(
            "core_ip = \"198.51.100.1/24\"\ncore_ip6 = \"2001:db8::b\"\ncore_gateway6 = \"fe80::1\"",
        )
        .unwrap();
        assert_eq!(c.core_gateway6, Some("fe80::1".parse().unwrap()));
        assert!(Config::from_toml(
            "core_ip = \"198.51.100.1/24\"\ncore_ip6 = \"2001:db8::b\"\ncore_gateway6 = \"ff02::1\""
        )
        .is_err());
        assert!(Config::from_toml("tcp_mss_clamp = \"sometimes\"").is_err());
    }

    #[test]
    fn example_config_parses() {
        let c = Config::from_toml(include_str!("../vbng.example.toml")).unwrap();
        assert!(c.ipv6cp);
        assert_eq!(c.pools6.len(), 2);
        assert_eq!(c.dns6.len(), 1);
        assert_eq!(c.mac, MacAddr([2, 0, 0, 0, 0xb0, 1]));
        assert_eq!(c.core_next_hop_mac.to_string(), "02:00:00:00:c0:01");
        assert_eq!(c.listen, Some("127.0.0.1:9180".parse().unwrap()));
        assert_eq!(
            c.pools[1].ranges,
            vec![Range4::of_net("100.65.0.0/16".parse().unwrap())]
        );
        assert_eq!(c.pools6[0].prefix.to_string(), "2001:db8:100::/40");
    }

    /// `toml::to_string(&Config)` writes a file `Config::from_toml` reads back to the
    /// same configuration (the lab writes the binary's config this way).
    #[cfg(feature = "std")]
    #[test]
    fn serialization_round_trips() {
        let c = Config::from_toml(include_str!("../vbng.example.toml")).unwrap();
        let text = toml::to_string(&c).unwrap();
        let back = Config::from_toml(&text).unwrap();
        assert_eq!(toml::to_string(&back).unwrap(), text);
        assert!(text.contains("mac = \"02:00:00:00:b0:01\""), "{text}");
        assert!(text.contains("core_ip = \"198.51.100.1/24\""), "{text}");
        assert!(text.contains("prefix = \"2001:db8:100::/40\""), "{text}");
        assert!(
            text.contains("ranges = [\"100.64.0.2-100.64.255.254\"]"),
            "{text}"
        );
        assert!(text.contains("addr = \"127.0.0.1:1812\""), "{text}");
        let c = Config::from_toml("cgnat_public = \"203.0.113.7\"\n").unwrap();
        let back = Config::from_toml(&toml::to_string(&c).unwrap()).unwrap();
        assert_eq!(back.cgnat_public, c.cgnat_public);
    }

    #[test]
    fn parse_ipv6_pools() {
        let c = Config::from_toml(
            r#"
ipv6cp = true
dns6 = ["2001:db8::53"]
[[pools6]]
name = "v6"
prefix = "2001:db8:100::/40"
"#,
        )
        .unwrap();
        assert_eq!(c.pools6[0].name, "v6");
        assert_eq!(c.dns6.len(), 1);
        assert!(Config::from_toml("[[pools6]]\nname = \"x\"\nprefix = \"2001:db8::/80\"").is_err());
        assert!(Config::from_toml("[[pools6]]\nname = \"x\"\nprefix = \"10.0.0.0/8\"").is_err());
    }

    /// Issue 20: configs that were accepted and misbehaved are refused, each with a
    /// one-line reason without a doubled prefix.
    #[test]
    fn bad_configs_are_refused_with_one_line_reasons() {
        let pool = |ranges: &str| alloc::format!("[[pools]]\nname = \"d\"\nranges = [{ranges}]\n");
        let cases: Vec<(String, &str)> = vec![
            (pool("\"10.0.0.9-10.0.0.1\""), "inverted"),
            (pool("\"10.0.0.0/30\", \"10.0.0.2/31\""), "overlap"),
            (
                pool("\"10.0.0.0/30\"") + "[[pools]]\nname = \"e\"\nranges = [\"10.0.0.0/30\"]\n",
                "overlap",
            ),
            (
                pool("\"10.0.0.0/30\"") + "[[pools]]\nname = \"d\"\nranges = [\"10.0.1.0/30\"]\n",
                "duplicate pool name",
            ),
            (pool("\"0.0.0.0/0\""), "martian"),
            (pool("\"10.0.0.0/7\""), "limit"),
            (pool("\"100.64.0.0/24\""), "100.64.0.1"),
            (
                "gateway = \"10.9.9.9\"\n".to_string() + &pool("\"10.9.9.0/24\""),
                "own address",
            ),
            (
                "core_ip = \"10.1.0.1/24\"\n".to_string() + &pool("\"10.1.0.0/24\""),
                "10.1.0.1",
            ),
            (
                pool("\"10.0.0.0/24\"")
                    + "[[users]]\nname = \"a\"\npassword = \"p\"\n[[users]]\nname = \"a\"\npassword = \"q\"\n",
                "duplicate user name",
            ),
            (
                pool("\"10.0.0.0/24\"")
                    + "[[users]]\nname = \"a\"\npassword = \"p\"\nip = \"10.0.1.1\"\n",
                "outside every pool",
            ),
            (
                pool("\"10.0.0.0/24\"")
                    + "[[users]]\nname = \"a\"\npassword = \"p\"\nip = \"127.0.0.1\"\n",
                "martian",
            ),
            (
                pool("\"10.0.0.0/24\"")
                    + "[[users]]\nname = \"a\"\npassword = \"p\"\nip = \"10.0.0.1\"\n[[users]]\nname = \"b\"\npassword = \"p\"\nip = \"10.0.0.1\"\n",
                "another user",
            ),
            ("padi_per_port = 0\n".to_string(), "padi_per_port"),
            ("padi_per_mac = 0\n".to_string(), "padi_per_mac"),
            ("half_open_per_line = 0\n".to_string(), "half_open_per_line"),
            ("half_open_timeout_s = 1000\n".to_string(), "half_open_timeout_s"),
            ("listen = \"nope\"\n".to_string(), "listen"),
            ("listen = \"localhost\"\n".to_string(), "listen"),
            ("max_payload = 65535\n".to_string(), "max_payload"),
            ("dns = [\"1.1.1.1\", \"1.0.0.1\", \"8.8.8.8\"]\n".to_string(), "dns"),
            (
                "[[pools6]]\nname = \"a\"\nprefix = \"2001:db8::/48\"\n[[pools6]]\nname = \"b\"\nprefix = \"2001:db8::/56\"\n".to_string(),
                "overlap",
            ),
            ("[[pools6]]\nname = \"a\"\nprefix = \"fe80::/64\"\n".to_string(), "martian"),
            ("bogus = 1\n".to_string(), "line 1"),
        ];
        for (text, want) in &cases {
            let e = Config::from_toml(text).expect_err(text);
            assert!(e.0.contains(want), "{text}: {e}");
            assert!(!e.0.contains('\n'), "one line: {e}");
            assert!(!e.0.contains("bad bad") && !e.0.contains(": bad "), "{e}");
        }
        // Adjacent pools, a user inside one, a listen socket address: fine.
        let ok = pool("\"10.0.0.0/30\"")
            + "[[pools]]\nname = \"e\"\nranges = [\"10.0.0.4/30\"]\nlisten = \"127.0.0.1:9180\"\n";
        let ok = ok.replace("listen = \"127.0.0.1:9180\"\n", "")
            + "[[users]]\nname = \"a\"\npassword = \"p\"\nip = \"10.0.0.5\"\n";
        Config::from_toml(&("listen = \"127.0.0.1:9180\"\n".to_string() + &ok)).unwrap();
        // Users from a user file are checked the same way.
        let mut c = Config::from_toml(&ok).unwrap();
        c.users.extend(parse_user_file("a other\n").unwrap());
        assert!(c.validate().unwrap_err().0.contains("duplicate user name"));
    }

    #[test]
    fn cgnat_section_and_its_errors() {
        let c = Config::from_toml(
            "[cgnat]\npool = [\"203.0.113.0/28\", \"198.51.100.7\"]\nblock_size = 1024\nblocks_per_subscriber = 2\nsessions_per_subscriber = 100\nmax_sessions = 70000\nlog = false\n",
        )
        .unwrap();
        let n = c.nat_config(1000).unwrap().unwrap();
        assert_eq!(n.inside_ports, vec![0]);
        assert_eq!(n.pool.len(), 2);
        assert_eq!(n.max_sessions, 70000);
        assert_eq!(n.max_subscribers, 1000);
        let g = n.cgnat.unwrap();
        assert_eq!(
            (
                g.block_size,
                g.blocks_per_subscriber,
                g.sessions_per_subscriber,
                g.log
            ),
            (1024, 2, 100, false)
        );
        // Defaults, and the shorthand.
        let c = Config::from_toml("cgnat_public = \"203.0.113.0/28\"\n").unwrap();
        let n = c.nat_config(1 << 20).unwrap().unwrap();
        assert_eq!(n.pool, vec!["203.0.113.0/28".to_string()]);
        assert_eq!(n.max_sessions, 1 << 22);
        assert_eq!(n.cgnat.unwrap().block_size, 512);
        assert!(Config::default().nat_config(10).unwrap().is_none());
        let cases = [
            ("[cgnat]\npool = []\n", "cgnat.pool: empty"),
            (
                "[cgnat]\npool = [\"203.0.113.0/33\"]\n",
                "line 2: cgnat.pool[0]: \"203.0.113.0/33\": not an IPv4 range",
            ),
            (
                "cgnat_public = \"nope\"\n",
                "line 1: cgnat_public: \"nope\": not an IPv4 range",
            ),
            ("[cgnat]\npool = [\"10.0.0.0/16\"]\n", "more than 4096"),
            (
                "[cgnat]\npool = [\"203.0.113.0/28\"]\nblock_size = 4\n",
                "block_size",
            ),
            (
                "[cgnat]\npool = [\"203.0.113.0/28\"]\nblocks_per_subscriber = 33\n",
                "blocks_per_subscriber",
            ),
            (
                "[cgnat]\npool = [\"203.0.113.0/28\"]\nsessions_per_subscriber = 0\n",
                "cgnat.sessions_per_subscriber: 0 is not in 1..=",
            ),
            (
                "[cgnat]\npool = [\"203.0.113.0/28\"]\nmax_sessions = 0\n",
                "cgnat.max_sessions: 0 is not in 1..=",
            ),
            (
                "[cgnat]\npool = [\"100.64.0.0/28\"]\n",
                "cgnat.pool: holds the BNG's own address 100.64.0.1",
            ),
            (
                "[cgnat]\npool = [\"100.64.1.0/28\"]\n",
                "cgnat.pool: overlaps subscriber pool \"default\"",
            ),
            (
                "cgnat_public = \"203.0.113.0/28\"\n[cgnat]\npool = [\"203.0.113.0/28\"]\n",
                "both given",
            ),
            (
                "[cgnat]\npool = [\"203.0.113.0/28\"]\nbogus = 1\n",
                "unknown field",
            ),
        ];
        for (text, want) in cases {
            let e = Config::from_toml(text).expect_err(text);
            assert!(e.0.contains(want), "{text}: {e}");
            assert!(!e.0.contains('\n'), "one line: {e}");
        }
    }

    #[test]
    fn radius_section_errors() {
        let ok = "[radius]\nauth = [{ addr = \"127.0.0.1:1812\", secret = \"s\" }]\n";
        let c = Config::from_toml(ok).unwrap();
        let r = c.radius.as_ref().unwrap();
        assert!(r.require_message_authenticator, "on by default");
        assert_eq!(r.acct_journal, None);
        for (extra, want) in [
            ("tries = 0", "radius.tries: must be at least 1"),
            ("timeout_ms = 0", "radius.timeout_ms: must be at least 1"),
            (
                "coa_listen = \"127.0.0.1:3799\"",
                "radius.coa_secret: required with coa_listen",
            ),
            (
                "acct = [{ addr = \"127.0.0.1:1813\" }]",
                "radius.acct[0] (127.0.0.1:1813): empty shared secret",
            ),
            ("acct_queue_limit = 0", "radius.acct_queue_limit"),
            ("acct_journal = \"\"", "radius.acct_journal: empty path"),
        ] {
            let e = Config::from_toml(&alloc::format!("{ok}{extra}\n")).unwrap_err();
            assert!(e.0.starts_with(want), "{extra}: {e}");
            assert_eq!(e.0.matches("radius").count(), 1, "one prefix: {e}");
        }
        // A malformed or missing server address: refused when read, with the key.
        for (extra, want) in [
            (
                "acct = [{ addr = \"nowhere\", secret = \"s\" }]",
                "line 3: radius.acct[0].addr: invalid socket address syntax",
            ),
            (
                "acct = [{ secret = \"s\" }]",
                "line 3: radius.acct[0]: missing field `addr`",
            ),
            (
                "coa_listen = \"127.0.0.1\"",
                "line 3: radius.coa_listen: invalid socket address syntax",
            ),
        ] {
            let e = Config::from_toml(&alloc::format!("{ok}{extra}\n")).unwrap_err();
            assert_eq!(e.0, want);
        }
        for text in [
            "[radius]\n",
            "[radius]\nacct = [{ addr = \"127.0.0.1:1813\", secret = \"s\" }]\n",
        ] {
            let e = Config::from_toml(text).unwrap_err();
            assert_eq!(e.0, "radius.auth: no server configured");
        }
        let e =
            Config::from_toml("[radius]\nauth = [{ addr = \"127.0.0.1:1812\", secret = \"\" }]\n")
                .unwrap_err();
        assert_eq!(e.0, "radius.auth[0] (127.0.0.1:1812): empty shared secret");
        let c = Config::from_toml(&alloc::format!(
            "{ok}coa_listen = \"127.0.0.1:3799\"\ncoa_secret = \"k\"\nrequire_message_authenticator = false\nacct_journal = \"/var/lib/vbng/acct.journal\"\nacct_max_age_s = 600\n"
        ))
        .unwrap();
        let r = c.radius.unwrap();
        assert!(!r.require_message_authenticator);
        assert_eq!(r.acct_max_age_s, 600);
    }

    #[test]
    fn radius_debug_redacts_secrets() {
        let c = Config::from_toml(
            "[radius]\nauth = [{ addr = \"127.0.0.1:1812\", secret = \"hunter2-auth\" }]\ncoa_listen = \"127.0.0.1:3799\"\ncoa_secret = \"hunter2-coa\"\n",
        )
        .unwrap();
        let d = alloc::format!("{c:?}");
        assert!(!d.contains("hunter2"), "{d}");
        assert!(d.contains("secret: \"<redacted>\""), "{d}");
        assert_eq!(c.radius.unwrap().auth[0].secret.expose(), "hunter2-auth");
    }
}
