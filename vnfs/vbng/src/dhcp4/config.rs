//! The DHCPv4 server's configuration: the subscriber subnet (gateway address and
//! prefix, announced as router, RFC 2132 §3.5, and subnet mask, §3.3), the pools the
//! leases come from ([`dataplane::ippool`]), DNS servers (§3.8), interface MTU (§5.1),
//! lease, T1 and T2 times (RFC 2131 §4.4.5; §9.2, §9.11, §9.12 of RFC 2132),
//! classless static routes (RFC 3442), the server identifier (RFC 2132 §9.7), and the
//! bounds against floods. [`Dhcp4Config::validate`] refuses, with a one-line reason,
//! what would misbehave at run time.

use crate::config::{ConfigError, PoolConfig};
use crate::pool::{Pool, Pools};
use alloc::format;
use alloc::string::{String, ToString};
use alloc::vec::Vec;
use core::net::Ipv4Addr;
use dataplane::addr::{Net4, Range4};
use dataplane::ippool::PoolItem;
use dataplane::proto::dhcp4::{ClasslessRoute, MIN_MTU};
use serde::{Deserialize, Serialize};

/// Shortest lease the server hands out (seconds).
pub const MIN_LEASE_S: u32 = 60;
/// Most static routes (RFC 3442 option 121 is split over instances, RFC 3396, but a
/// reply has to fit the 576-octet minimum message size).
pub const MAX_ROUTES: usize = 16;
/// Most DNS servers announced.
pub const MAX_DNS: usize = 8;

/// One classless static route handed to clients (RFC 3442).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RouteConfig {
    /// Destination `a.b.c.d/len` (host bits ignored).
    pub prefix: Net4,
    /// Next hop; must be on the subscriber subnet (or `0.0.0.0` for on-link).
    pub via: Ipv4Addr,
}

/// The DHCPv4 server configuration.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Dhcp4Config {
    /// The BNG's address on the subscriber subnet and the subnet's prefix length:
    /// the router (option 3) and, from the length, the subnet mask (option 1).
    pub gateway: Net4,
    /// Server identifier (option 54) and source of the replies; the gateway address
    /// when absent.
    pub server_id: Option<Ipv4Addr>,
    /// Address pools; leases come from `pool` (or the first).
    pub pools: Vec<PoolConfig>,
    /// The pool to hand out from; the first when absent.
    pub pool: Option<String>,
    /// DNS servers (option 6).
    pub dns: Vec<Ipv4Addr>,
    /// Interface MTU (option 26), e.g. 1500.
    pub mtu: Option<u16>,
    /// Lease time, seconds (option 51).
    pub lease_time_s: u32,
    /// Renewal time T1, seconds (option 58); 0.5 × lease when absent (RFC 2131 §4.4.5).
    pub renewal_time_s: Option<u32>,
    /// Rebinding time T2, seconds (option 59); 0.875 × lease when absent.
    pub rebinding_time_s: Option<u32>,
    /// How long an offered address is held for the client's DHCPREQUEST, seconds.
    pub offer_hold_s: u32,
    /// How long a declined address (RFC 2131 §4.3.3) stays out of the pool, seconds.
    pub decline_hold_s: u32,
    /// Classless static routes (option 121), sent only to clients that ask for them
    /// and then with the default route via the gateway appended (RFC 3442 §3: a
    /// client that gets option 121 ignores option 3).
    pub classless_routes: Vec<RouteConfig>,
    /// Most bound leases.
    pub max_leases: u32,
    /// Most outstanding offers.
    pub max_offers: u32,
    /// Messages a client (MAC and VLANs) may send in a burst.
    pub rate_burst: u32,
    /// Messages a client may send per minute on average.
    pub rate_per_min: u32,
    /// Most clients the rate limiter tracks at once (idle ones are forgotten).
    pub max_rate_clients: u32,
}

impl Default for Dhcp4Config {
    fn default() -> Self {
        Dhcp4Config {
            gateway: Net4 {
                addr: Ipv4Addr::new(100, 64, 0, 1),
                len: 16,
            },
            server_id: None,
            pools: alloc::vec![PoolConfig {
                name: "default".to_string(),
                ranges: Range4::new(
                    Ipv4Addr::new(100, 64, 0, 2),
                    Ipv4Addr::new(100, 64, 255, 254)
                )
                .into_iter()
                .collect(),
            }],
            pool: None,
            dns: Vec::new(),
            mtu: None,
            lease_time_s: 3600,
            renewal_time_s: None,
            rebinding_time_s: None,
            offer_hold_s: 10,
            decline_hold_s: 600,
            classless_routes: Vec::new(),
            max_leases: 65_536,
            max_offers: 4096,
            rate_burst: 10,
            rate_per_min: 30,
            max_rate_clients: 65_536,
        }
    }
}

fn e(s: String) -> ConfigError {
    ConfigError(s)
}

impl Dhcp4Config {
    /// The server identifier.
    pub fn server_id(&self) -> Ipv4Addr {
        self.server_id.unwrap_or(self.gateway.addr)
    }

    /// The subnet mask of the gateway's prefix.
    pub fn netmask(&self) -> Ipv4Addr {
        Ipv4Addr::from(match self.gateway.len {
            0 => 0,
            l => u32::MAX << (32 - u32::from(l.min(32))),
        })
    }

    /// T1 and T2 in seconds.
    pub fn t1_t2(&self) -> (u32, u32) {
        let l = u64::from(self.lease_time_s);
        (
            self.renewal_time_s.unwrap_or((l / 2) as u32),
            self.rebinding_time_s.unwrap_or((l * 7 / 8) as u32),
        )
    }

    /// The routes of option 121 (RFC 3442 §3), with the default route via the
    /// gateway appended unless one is configured; empty when none is configured.
    pub fn routes(&self) -> Vec<ClasslessRoute> {
        let mut v: Vec<ClasslessRoute> = self
            .classless_routes
            .iter()
            .filter_map(|r| ClasslessRoute::new(r.prefix.addr, r.prefix.len, r.via))
            .collect();
        if !v.is_empty() && !v.iter().any(|r| r.len == 0) {
            v.extend(ClasslessRoute::new(
                Ipv4Addr::UNSPECIFIED,
                0,
                self.gateway.addr,
            ));
        }
        v
    }

    /// The addresses never handed out: the gateway, the server identifier, the
    /// subnet's network and broadcast addresses.
    pub fn reserved(&self) -> Vec<Ipv4Addr> {
        let net = Range4::of_net(self.gateway);
        let mut v = alloc::vec![self.gateway.addr, self.server_id()];
        if self.gateway.len < 31 {
            v.extend([net.first(), net.last()]);
        }
        v.sort_unstable();
        v.dedup();
        v
    }

    /// Checks everything; the error is one line naming the key.
    pub fn validate(&self) -> Result<(), ConfigError> {
        let gw = self.gateway;
        if gw.len == 0 || gw.len > 30 {
            return Err(e(format!(
                "dhcp4.gateway: prefix length /{} (must be /1 to /30)",
                gw.len
            )));
        }
        if gw.addr.is_martian() {
            return Err(e(format!(
                "dhcp4.gateway: {} is not a unicast address",
                gw.addr
            )));
        }
        let net = Range4::of_net(gw);
        if gw.addr == net.first() || gw.addr == net.last() {
            return Err(e(format!(
                "dhcp4.gateway: {} is the network or broadcast address of /{}",
                gw.addr, gw.len
            )));
        }
        let sid = self.server_id();
        if sid.is_martian() || sid.is_broadcast() {
            return Err(e(format!(
                "dhcp4.server_id: {sid} is not a unicast address"
            )));
        }
        if self.pools.is_empty() {
            return Err(e("dhcp4.pools: at least one pool is needed".to_string()));
        }
        for (i, p) in self.pools.iter().enumerate() {
            for (j, r) in p.ranges.iter().enumerate() {
                if !gw.contains(r.first()) || !gw.contains(r.last()) {
                    return Err(e(format!(
                        "dhcp4.pools[{i}].ranges[{j}]: {}-{} is not inside the gateway's subnet {}/{}",
                        r.first(),
                        r.last(),
                        gw.network(),
                        gw.len
                    )));
                }
            }
        }
        if let Some(name) = &self.pool {
            if !self.pools.iter().any(|p| &p.name == name) {
                return Err(e(format!("dhcp4.pool: no pool named {name:?}")));
            }
        }
        self.build_pools()?;
        if self.dns.len() > MAX_DNS {
            return Err(e(format!(
                "dhcp4.dns: {} servers, more than the limit of {MAX_DNS}",
                self.dns.len()
            )));
        }
        if let Some(d) = self.dns.iter().find(|d| d.is_martian() || d.is_broadcast()) {
            return Err(e(format!("dhcp4.dns: {d} is not a unicast address")));
        }
        if let Some(m) = self.mtu {
            if m < MIN_MTU {
                return Err(e(format!(
                    "dhcp4.mtu: {m} is below the minimum of {MIN_MTU}"
                )));
            }
        }
        if self.lease_time_s < MIN_LEASE_S {
            return Err(e(format!(
                "dhcp4.lease_time_s: {} is below the minimum of {MIN_LEASE_S}",
                self.lease_time_s
            )));
        }
        let (t1, t2) = self.t1_t2();
        if !(t1 > 0 && t1 < t2 && t2 < self.lease_time_s) {
            return Err(e(format!(
                "dhcp4: renewal time {t1} s and rebinding time {t2} s must satisfy 0 < T1 < T2 < lease time {} s",
                self.lease_time_s
            )));
        }
        if self.offer_hold_s == 0 || self.offer_hold_s > 300 {
            return Err(e(format!(
                "dhcp4.offer_hold_s: {} (must be 1 to 300)",
                self.offer_hold_s
            )));
        }
        if self.classless_routes.len() > MAX_ROUTES {
            return Err(e(format!(
                "dhcp4.classless_routes: {} routes, more than the limit of {MAX_ROUTES}",
                self.classless_routes.len()
            )));
        }
        for (i, r) in self.classless_routes.iter().enumerate() {
            if r.prefix.len > 32 {
                return Err(e(format!(
                    "dhcp4.classless_routes[{i}].prefix: length /{} above /32",
                    r.prefix.len
                )));
            }
            if !r.via.is_unspecified() && !gw.contains(r.via) {
                return Err(e(format!(
                    "dhcp4.classless_routes[{i}].via: {} is not on the subscriber subnet {}/{}",
                    r.via,
                    gw.network(),
                    gw.len
                )));
            }
        }
        for (key, v) in [
            ("max_leases", self.max_leases),
            ("max_offers", self.max_offers),
            ("rate_burst", self.rate_burst),
            ("rate_per_min", self.rate_per_min),
            ("max_rate_clients", self.max_rate_clients),
        ] {
            if v == 0 {
                return Err(e(format!("dhcp4.{key}: must be at least 1")));
            }
        }
        Ok(())
    }

    /// The pools, checked (see [`dataplane::ippool::Pools::new`]); the reserved
    /// addresses are [`Dhcp4Config::reserved`].
    pub fn build_pools(&self) -> Result<Pools, ConfigError> {
        let mut pools = Vec::with_capacity(self.pools.len());
        for p in &self.pools {
            let ranges: Vec<_> = p.ranges.iter().map(|r| (r.first(), r.last())).collect();
            pools.push(Pool::new(&p.name, &ranges).map_err(|x| e(format!("dhcp4.pools: {x}")))?);
        }
        Pools::new(pools, &self.reserved()).map_err(|x| e(format!("dhcp4.pools: {x}")))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn a(s: &str) -> Ipv4Addr {
        s.parse().unwrap()
    }

    #[test]
    fn defaults_validate_and_bad_values_are_one_line() {
        let c = Dhcp4Config::default();
        c.validate().unwrap();
        assert_eq!(c.netmask(), a("255.255.0.0"));
        assert_eq!(c.t1_t2(), (1800, 3150));
        assert!(c.routes().is_empty());
        let bad = |f: &dyn Fn(&mut Dhcp4Config), want: &str| {
            let mut c = Dhcp4Config::default();
            f(&mut c);
            let m = c.validate().unwrap_err().0;
            assert!(m.contains(want), "{m}");
            assert!(!m.contains('\n'), "{m}");
        };
        bad(&|c| c.gateway.len = 31, "prefix length");
        bad(
            &|c| c.gateway.addr = a("100.64.0.0"),
            "network or broadcast",
        );
        bad(
            &|c| c.pools[0].ranges = alloc::vec![Range4::single(a("10.0.0.5"))],
            "not inside",
        );
        bad(
            &|c| c.pools[0].ranges = alloc::vec![Range4::single(a("100.64.0.1"))],
            "reserved address 100.64.0.1",
        );
        bad(
            &|c| c.pools[0].ranges = alloc::vec![Range4::single(a("100.64.255.255"))],
            "reserved",
        );
        bad(&|c| c.pool = Some("gold".into()), "no pool named");
        bad(&|c| c.lease_time_s = 30, "lease_time_s");
        bad(&|c| c.renewal_time_s = Some(3500), "T1 < T2");
        bad(&|c| c.mtu = Some(40), "dhcp4.mtu");
        bad(&|c| c.dns = alloc::vec![a("224.0.0.1")], "dhcp4.dns");
        bad(&|c| c.max_offers = 0, "max_offers");
        bad(
            &|c| {
                c.classless_routes = alloc::vec![RouteConfig {
                    prefix: Net4 {
                        addr: a("10.0.0.0"),
                        len: 8
                    },
                    via: a("192.0.2.1"),
                }]
            },
            "not on the subscriber subnet",
        );
    }

    #[test]
    fn routes_get_the_default_route_appended() {
        let c = Dhcp4Config {
            classless_routes: alloc::vec![RouteConfig {
                prefix: Net4 {
                    addr: a("10.1.2.3"),
                    len: 16,
                },
                via: a("100.64.0.1"),
            }],
            ..Dhcp4Config::default()
        };
        c.validate().unwrap();
        let r = c.routes();
        assert_eq!(r.len(), 2);
        assert_eq!(r[0].prefix, a("10.1.0.0"));
        assert_eq!(
            (r[1].prefix, r[1].len, r[1].router),
            (a("0.0.0.0"), 0, a("100.64.0.1"))
        );
    }

    #[test]
    fn parses_from_toml() {
        let c: Dhcp4Config = toml::from_str(
            "gateway = \"192.0.2.1/24\"\ndns = [\"192.0.2.53\"]\nmtu = 1500\nlease_time_s = 600\n\
             [[pools]]\nname = \"p\"\nranges = [\"192.0.2.10-192.0.2.20\"]\n\
             [[classless_routes]]\nprefix = \"10.0.0.0/8\"\nvia = \"192.0.2.1\"\n",
        )
        .unwrap();
        c.validate().unwrap();
        assert_eq!(c.netmask(), a("255.255.255.0"));
        assert_eq!(
            c.reserved(),
            [a("192.0.2.0"), a("192.0.2.1"), a("192.0.2.255")]
        );
    }
}
