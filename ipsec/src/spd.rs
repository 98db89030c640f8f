//! Security Policy Database (RFC 4301 §4.4.1): ordered policies per direction, the
//! first whose selector matches decides PROTECT (with an SA), BYPASS or DISCARD.
//! Selectors: source/destination prefix, protocol, port ranges (§4.4.1.1); an absent
//! field is ANY. No match means DISCARD unless the default is changed.

use crate::ip::Flow;
use crate::sad::SaId;
use alloc::vec::Vec;
use core::net::IpAddr;

/// An address prefix.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Prefix {
    pub addr: IpAddr,
    pub len: u8,
}

impl Prefix {
    pub fn new(addr: IpAddr, len: u8) -> Self {
        let max = if addr.is_ipv4() { 32 } else { 128 };
        Prefix {
            addr,
            len: len.min(max),
        }
    }

    pub fn host(addr: IpAddr) -> Self {
        Self::new(addr, if addr.is_ipv4() { 32 } else { 128 })
    }

    pub fn contains(&self, a: IpAddr) -> bool {
        match (self.addr, a) {
            (IpAddr::V4(p), IpAddr::V4(x)) => {
                let mask = u32::MAX.checked_shl(32 - u32::from(self.len)).unwrap_or(0);
                u32::from(p) & mask == u32::from(x) & mask
            }
            (IpAddr::V6(p), IpAddr::V6(x)) => {
                let mask = u128::MAX
                    .checked_shl(128 - u32::from(self.len))
                    .unwrap_or(0);
                u128::from(p) & mask == u128::from(x) & mask
            }
            _ => false,
        }
    }
}

/// Inclusive port range.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PortRange {
    pub lo: u16,
    pub hi: u16,
}

impl PortRange {
    pub fn one(p: u16) -> Self {
        PortRange { lo: p, hi: p }
    }

    fn contains(&self, p: Option<u16>) -> bool {
        // A packet without ports (or a non-first fragment) only matches ANY.
        p.is_some_and(|p| (self.lo..=self.hi).contains(&p))
    }
}

/// Traffic selector; `None` fields match anything.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Selector {
    pub src: Option<Prefix>,
    pub dst: Option<Prefix>,
    pub proto: Option<u8>,
    pub sport: Option<PortRange>,
    pub dport: Option<PortRange>,
}

impl Selector {
    pub fn any() -> Self {
        Self::default()
    }

    pub fn between(src: Prefix, dst: Prefix) -> Self {
        Selector {
            src: Some(src),
            dst: Some(dst),
            ..Self::default()
        }
    }

    #[inline]
    pub fn matches(&self, f: &Flow) -> bool {
        self.src.is_none_or(|p| p.contains(f.src))
            && self.dst.is_none_or(|p| p.contains(f.dst))
            && self.proto.is_none_or(|p| p == f.proto)
            && self.sport.is_none_or(|r| r.contains(f.sport))
            && self.dport.is_none_or(|r| r.contains(f.dport))
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Action {
    /// Outbound: encrypt with this SA. Inbound: clear packets matching it are dropped
    /// (they should have arrived protected).
    Protect(SaId),
    Bypass,
    Discard,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Policy {
    pub selector: Selector,
    pub action: Action,
}

/// Ordered policies, outbound and inbound.
#[derive(Clone, Debug)]
pub struct Spd {
    outbound: Vec<Policy>,
    inbound: Vec<Policy>,
    /// Decision when no policy matches (RFC 4301 default: discard).
    pub default_action: Action,
}

impl Default for Spd {
    fn default() -> Self {
        Spd {
            outbound: Vec::new(),
            inbound: Vec::new(),
            default_action: Action::Discard,
        }
    }
}

impl Spd {
    pub fn new() -> Self {
        Self::default()
    }

    /// Room for `n` more policies each way without allocating.
    pub fn reserve(&mut self, n: usize) {
        self.outbound.reserve(n);
        self.inbound.reserve(n);
    }

    /// Appends an outbound policy (lower priority than all before it); returns its
    /// index.
    pub fn push_outbound(&mut self, selector: Selector, action: Action) -> usize {
        self.outbound.push(Policy { selector, action });
        self.outbound.len() - 1
    }

    pub fn push_inbound(&mut self, selector: Selector, action: Action) -> usize {
        self.inbound.push(Policy { selector, action });
        self.inbound.len() - 1
    }

    /// Inserts an outbound policy at position `at` (clamped).
    pub fn insert_outbound(&mut self, at: usize, selector: Selector, action: Action) {
        let at = at.min(self.outbound.len());
        self.outbound.insert(at, Policy { selector, action });
    }

    /// Points an outbound policy at another SA (rekey). False if no such index.
    pub fn set_outbound_action(&mut self, index: usize, action: Action) -> bool {
        match self.outbound.get_mut(index) {
            Some(p) => {
                p.action = action;
                true
            }
            None => false,
        }
    }

    pub fn remove_outbound(&mut self, index: usize) -> Option<Policy> {
        (index < self.outbound.len()).then(|| self.outbound.remove(index))
    }

    pub fn outbound(&self) -> &[Policy] {
        &self.outbound
    }

    pub fn inbound(&self) -> &[Policy] {
        &self.inbound
    }

    #[inline]
    pub fn lookup_outbound(&self, f: &Flow) -> Action {
        Self::first(&self.outbound, f).unwrap_or(self.default_action)
    }

    #[inline]
    pub fn lookup_inbound(&self, f: &Flow) -> Action {
        Self::first(&self.inbound, f).unwrap_or(self.default_action)
    }

    fn first(list: &[Policy], f: &Flow) -> Option<Action> {
        list.iter()
            .find(|p| p.selector.matches(f))
            .map(|p| p.action)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use core::net::{Ipv4Addr, Ipv6Addr};

    fn flow(src: [u8; 4], dst: [u8; 4], proto: u8, dport: Option<u16>) -> Flow {
        Flow {
            src: IpAddr::V4(Ipv4Addr::from(src)),
            dst: IpAddr::V4(Ipv4Addr::from(dst)),
            proto,
            sport: dport.map(|_| 40000),
            dport,
        }
    }

    #[test]
    fn prefixes() {
        let p = Prefix::new(IpAddr::V4(Ipv4Addr::new(10, 1, 0, 0)), 16);
        assert!(p.contains(IpAddr::V4(Ipv4Addr::new(10, 1, 200, 3))));
        assert!(!p.contains(IpAddr::V4(Ipv4Addr::new(10, 2, 0, 1))));
        assert!(!p.contains(IpAddr::V6(Ipv6Addr::LOCALHOST)));
        let all = Prefix::new(IpAddr::V4(Ipv4Addr::UNSPECIFIED), 0);
        assert!(all.contains(IpAddr::V4(Ipv4Addr::BROADCAST)));
        let v6 = Prefix::new("2001:db8::".parse().unwrap(), 32);
        assert!(v6.contains("2001:db8:1::5".parse().unwrap()));
        assert!(!v6.contains("2001:db9::5".parse().unwrap()));
    }

    #[test]
    fn first_match_wins_and_default_discards() {
        let mut spd = Spd::new();
        let lan = Prefix::new(IpAddr::V4(Ipv4Addr::new(192, 168, 1, 0)), 24);
        let remote = Prefix::new(IpAddr::V4(Ipv4Addr::new(10, 0, 0, 0)), 8);
        // SSH to the remote site goes in the clear; everything else LAN→remote is
        // protected (any SA id will do here; the esp tests resolve real ones in a SAD).
        spd.push_outbound(
            Selector {
                proto: Some(6),
                dport: Some(PortRange::one(22)),
                ..Selector::between(lan, remote)
            },
            Action::Bypass,
        );
        spd.push_outbound(Selector::between(lan, remote), Action::Discard);
        assert_eq!(
            spd.lookup_outbound(&flow([192, 168, 1, 5], [10, 9, 9, 9], 6, Some(22))),
            Action::Bypass
        );
        assert_eq!(
            spd.lookup_outbound(&flow([192, 168, 1, 5], [10, 9, 9, 9], 6, Some(80))),
            Action::Discard
        );
        // ICMP has no ports: does not match the port selector.
        assert_eq!(
            spd.lookup_outbound(&flow([192, 168, 1, 5], [10, 9, 9, 9], 1, None)),
            Action::Discard
        );
        assert_eq!(
            spd.lookup_outbound(&flow([8, 8, 8, 8], [1, 1, 1, 1], 17, Some(53))),
            Action::Discard
        );
        spd.default_action = Action::Bypass;
        assert_eq!(
            spd.lookup_outbound(&flow([8, 8, 8, 8], [1, 1, 1, 1], 17, Some(53))),
            Action::Bypass
        );
        assert!(spd.set_outbound_action(1, Action::Bypass));
        assert!(!spd.set_outbound_action(5, Action::Bypass));
    }
}
