//! The DHCPv6 server's configuration: the address pools IA_NA addresses come from
//! (RFC 8415 §6.2, one /128 per IA), the delegated-prefix pools IA_PD prefixes come
//! from (§6.3, prefixes of a configured length out of covering prefixes), lifetimes
//! and T1/T2 (§7.7, §21.4, §21.21), DNS servers (RFC 3646), the Preference (§21.8)
//! and Rapid Commit (§18.3.1) behaviour, and the bounds against floods.
//! [`Dhcp6Config::validate`] refuses, with a one-line reason, what would misbehave at
//! run time.

use crate::config::ConfigError;
use alloc::format;
use alloc::string::{String, ToString};
use alloc::vec::Vec;
use core::net::Ipv6Addr;
use dataplane::addr::{Net6, Prefix6};
use dataplane::ippool::{Pool, PoolItem, Pools};
use serde::{Deserialize, Serialize};

/// Shortest valid lifetime the server hands out (seconds).
pub const MIN_LIFETIME_S: u32 = 60;
/// Most DNS servers announced.
pub const MAX_DNS: usize = 8;

/// A pool of IA_NA addresses: an inclusive range of /128s.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AddrPoolConfig {
    /// The pool's name (RADIUS Framed-IPv6-Pool selects by name).
    pub name: String,
    /// First address.
    pub first: Ipv6Addr,
    /// Last address.
    pub last: Ipv6Addr,
}

/// A pool of IA_PD prefixes: the prefixes of length `len` inside `prefix`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PrefixPoolConfig {
    /// The pool's name (RADIUS Delegated-IPv6-Prefix-Pool, RFC 8044, selects by name).
    pub name: String,
    /// The covering prefix, e.g. `2001:db8:100::/40`.
    pub prefix: Net6,
    /// Length of the delegated prefixes, e.g. 56.
    pub len: u8,
}

/// The DHCPv6 server configuration.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Dhcp6Config {
    /// IA_NA address pools (the first is the default).
    pub address_pools: Vec<AddrPoolConfig>,
    /// IA_PD prefix pools (the first is the default).
    pub prefix_pools: Vec<PrefixPoolConfig>,
    /// DNS recursive name servers (option 23), sent when the client asks (ORO).
    pub dns: Vec<Ipv6Addr>,
    /// Preferred lifetime of addresses and prefixes, seconds.
    pub preferred_lifetime_s: u32,
    /// Valid lifetime, seconds (at least the preferred lifetime).
    pub valid_lifetime_s: u32,
    /// T1, seconds; 0.5 × preferred when absent (RFC 8415 §21.4).
    pub t1_s: Option<u32>,
    /// T2, seconds; 0.8 × preferred when absent.
    pub t2_s: Option<u32>,
    /// Preference option (§21.8) in Advertise; 255 makes clients request at once
    /// (§18.2.1). Absent: no option (preference 0).
    pub preference: Option<u8>,
    /// Answer a Solicit with Rapid Commit by a Reply that binds at once (§18.3.1).
    pub rapid_commit: bool,
    /// SOL_MAX_RT (§21.24) sent to clients that ask for it, seconds (60..=86400).
    pub sol_max_rt_s: Option<u32>,
    /// How long addresses and prefixes offered in an Advertise are held for the
    /// client's Request, seconds.
    pub offer_hold_s: u32,
    /// How long a declined address (§18.3.8) stays out of the pool, seconds.
    pub decline_hold_s: u32,
    /// Most bound and offered IAs in all.
    pub max_bindings: u32,
    /// Most outstanding offers.
    pub max_offers: u32,
    /// Most IAs of one kind (IA_NA or IA_PD) one client (line and DUID) may hold.
    pub max_ias_per_client: u32,
    /// Messages a client (line and DUID) may send in a burst.
    pub rate_burst: u32,
    /// Messages a client may send per minute on average.
    pub rate_per_min: u32,
    /// Most clients the rate limiter tracks at once (idle ones are forgotten).
    pub max_rate_clients: u32,
}

impl Default for Dhcp6Config {
    fn default() -> Self {
        Dhcp6Config {
            address_pools: Vec::new(),
            prefix_pools: Vec::new(),
            dns: Vec::new(),
            preferred_lifetime_s: 3600,
            valid_lifetime_s: 7200,
            t1_s: None,
            t2_s: None,
            preference: Some(255),
            rapid_commit: true,
            sol_max_rt_s: None,
            offer_hold_s: 10,
            decline_hold_s: 600,
            max_bindings: 65_536,
            max_offers: 4096,
            max_ias_per_client: 4,
            rate_burst: 10,
            rate_per_min: 30,
            max_rate_clients: 65_536,
        }
    }
}

fn e(s: String) -> ConfigError {
    ConfigError(s)
}

impl Dhcp6Config {
    /// T1 and T2 in seconds.
    pub fn t1_t2(&self) -> (u32, u32) {
        let p = u64::from(self.preferred_lifetime_s);
        (
            self.t1_s.unwrap_or((p / 2) as u32),
            self.t2_s.unwrap_or((p * 4 / 5) as u32),
        )
    }

    /// The IA_NA pools.
    pub fn build_address_pools(&self) -> Result<Pools<Ipv6Addr>, ConfigError> {
        let mut v = Vec::with_capacity(self.address_pools.len());
        for p in &self.address_pools {
            v.push(
                Pool::new(&p.name, &[(p.first, p.last)])
                    .map_err(|x| e(format!("dhcp6.address_pools: {x}")))?,
            );
        }
        Pools::new(v, &[]).map_err(|x| e(format!("dhcp6.address_pools: {x}")))
    }

    /// The IA_PD pools.
    pub fn build_prefix_pools(&self) -> Result<Pools<Prefix6>, ConfigError> {
        let mut v = Vec::with_capacity(self.prefix_pools.len());
        for p in &self.prefix_pools {
            let r = Prefix6::split(p.prefix, p.len).ok_or_else(|| {
                e(format!(
                    "dhcp6.prefix_pools: {:?}: /{} does not fit in {} (must be {} to {})",
                    p.name,
                    p.len,
                    p.prefix,
                    p.prefix.len,
                    Prefix6::MAX_LEN
                ))
            })?;
            v.push(Pool::new(&p.name, &[r]).map_err(|x| e(format!("dhcp6.prefix_pools: {x}")))?);
        }
        Pools::new(v, &[]).map_err(|x| e(format!("dhcp6.prefix_pools: {x}")))
    }

    /// Checks everything; the error is one line naming the key.
    pub fn validate(&self) -> Result<(), ConfigError> {
        if self.address_pools.is_empty() && self.prefix_pools.is_empty() {
            return Err(e(
                "dhcp6: neither address_pools nor prefix_pools".to_string()
            ));
        }
        self.build_address_pools()?;
        self.build_prefix_pools()?;
        for p in &self.prefix_pools {
            if p.len > 64 {
                return Err(e(format!(
                    "dhcp6.prefix_pools: {:?}: delegated /{} is longer than /64",
                    p.name, p.len
                )));
            }
        }
        if self.dns.len() > MAX_DNS {
            return Err(e(format!("dhcp6.dns: more than {MAX_DNS} servers")));
        }
        if let Some(d) = self
            .dns
            .iter()
            .find(|d| d.is_multicast() || d.is_unspecified())
        {
            return Err(e(format!("dhcp6.dns: {d} is not a unicast address")));
        }
        if self.valid_lifetime_s < MIN_LIFETIME_S {
            return Err(e(format!(
                "dhcp6.valid_lifetime_s: {} (at least {MIN_LIFETIME_S})",
                self.valid_lifetime_s
            )));
        }
        if self.preferred_lifetime_s > self.valid_lifetime_s || self.preferred_lifetime_s == 0 {
            return Err(e(format!(
                "dhcp6.preferred_lifetime_s: {} (1 to valid_lifetime_s {}, RFC 8415 §21.6)",
                self.preferred_lifetime_s, self.valid_lifetime_s
            )));
        }
        let (t1, t2) = self.t1_t2();
        if t1 > t2 || t2 > self.preferred_lifetime_s {
            return Err(e(format!(
                "dhcp6.t1_s/t2_s: T1 {t1} and T2 {t2} must satisfy T1 <= T2 <= preferred lifetime {}",
                self.preferred_lifetime_s
            )));
        }
        if let Some(s) = self.sol_max_rt_s {
            if !(60..=86_400).contains(&s) {
                return Err(e(format!(
                    "dhcp6.sol_max_rt_s: {s} (60 to 86400, RFC 8415 §21.24)"
                )));
            }
        }
        for (k, v) in [
            ("offer_hold_s", self.offer_hold_s),
            ("max_bindings", self.max_bindings),
            ("max_offers", self.max_offers),
            ("max_ias_per_client", self.max_ias_per_client),
            ("rate_burst", self.rate_burst),
            ("rate_per_min", self.rate_per_min),
            ("max_rate_clients", self.max_rate_clients),
        ] {
            if v == 0 {
                return Err(e(format!("dhcp6.{k}: must be at least 1")));
            }
        }
        Ok(())
    }
}

/// Whether `a` may be handed to a client as a fixed IA_NA address.
pub(crate) fn assignable_addr(a: Ipv6Addr) -> bool {
    !a.is_martian()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cfg() -> Dhcp6Config {
        Dhcp6Config {
            address_pools: alloc::vec![AddrPoolConfig {
                name: "na".into(),
                first: "2001:db8:1::100".parse().unwrap(),
                last: "2001:db8:1::1ff".parse().unwrap(),
            }],
            prefix_pools: alloc::vec![PrefixPoolConfig {
                name: "pd".into(),
                prefix: "2001:db8:100::/40".parse().unwrap(),
                len: 56,
            }],
            ..Dhcp6Config::default()
        }
    }

    #[test]
    fn validate() {
        cfg().validate().unwrap();
        let bad = |f: fn(&mut Dhcp6Config), want: &str| {
            let mut c = cfg();
            f(&mut c);
            let m = c.validate().unwrap_err().0;
            assert!(m.contains(want), "{m}");
        };
        bad(|c| c.prefix_pools[0].len = 32, "does not fit");
        bad(|c| c.prefix_pools[0].len = 80, "longer than /64");
        bad(
            |c| {
                c.address_pools[0].first = "fe80::1".parse().unwrap();
                c.address_pools[0].last = "fe80::2".parse().unwrap()
            },
            "martian",
        );
        bad(|c| c.preferred_lifetime_s = 9000, "preferred_lifetime_s");
        bad(|c| c.t1_s = Some(3000), "T1 3000");
        bad(|c| c.sol_max_rt_s = Some(10), "sol_max_rt_s");
        bad(|c| c.max_offers = 0, "max_offers");
        bad(
            |c| {
                c.address_pools.clear();
                c.prefix_pools.clear()
            },
            "neither",
        );
        bad(|c| c.dns.push("ff02::1".parse().unwrap()), "not a unicast");
        let c = cfg();
        assert_eq!(c.t1_t2(), (1800, 2880));
        let t: Dhcp6Config = toml::from_str(
            "address_pools = [{ name = \"a\", first = \"2001:db8::10\", last = \"2001:db8::20\" }]\n\
             prefix_pools = [{ name = \"p\", prefix = \"2001:db8:100::/40\", len = 56 }]\n\
             dns = [\"2001:db8::53\"]\nrapid_commit = false\n",
        )
        .unwrap();
        t.validate().unwrap();
        assert!(!t.rapid_commit);
        assert_eq!(
            t.build_prefix_pools()
                .unwrap()
                .iter()
                .next()
                .unwrap()
                .size(),
            1 << 16
        );
    }
}
