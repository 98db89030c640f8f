//! Traffic selector arithmetic (RFC 7296 §2.9): intersection ("narrowing") of two
//! selectors, the subset test an initiator applies to the responder's choice, and the
//! mapping of an address-range selector onto the SPD's prefix [`Selector`]
//! (RFC 4301 §4.4.1.1). Only ranges that are exactly one prefix map; the exchange
//! answers TS_UNACCEPTABLE for the others.

use super::wire::TrafficSelector;
use crate::spd::{PortRange, Prefix, Selector};
use core::net::{IpAddr, Ipv4Addr, Ipv6Addr};

fn addr_bits(a: IpAddr) -> (u128, bool) {
    match a {
        IpAddr::V4(v) => (u128::from(u32::from(v)), true),
        IpAddr::V6(v) => (u128::from(v), false),
    }
}

fn addr_from(x: u128, v4: bool) -> IpAddr {
    if v4 {
        IpAddr::V4(Ipv4Addr::from(u32::try_from(x).unwrap_or(u32::MAX)))
    } else {
        IpAddr::V6(Ipv6Addr::from(x))
    }
}

impl TrafficSelector {
    /// Every address of one family, any protocol and port.
    pub fn any(v4: bool) -> Self {
        let (s, e) = if v4 {
            (
                IpAddr::V4(Ipv4Addr::UNSPECIFIED),
                IpAddr::V4(Ipv4Addr::BROADCAST),
            )
        } else {
            (
                IpAddr::V6(Ipv6Addr::UNSPECIFIED),
                IpAddr::V6(Ipv6Addr::from(u128::MAX)),
            )
        };
        TrafficSelector {
            ip_proto: 0,
            start_port: 0,
            end_port: 65535,
            start_addr: s,
            end_addr: e,
        }
    }

    /// The addresses of `prefix`, any protocol and port.
    pub fn from_prefix(prefix: Prefix) -> Self {
        let (a, v4) = addr_bits(prefix.addr);
        let bits = if v4 { 32 } else { 128 };
        let host = u32::from(bits - prefix.len.min(bits));
        let mask = u128::MAX.checked_shl(host).unwrap_or(0);
        let all = if v4 { u128::from(u32::MAX) } else { u128::MAX };
        let start = a & mask & all;
        let end = (start | !mask) & all;
        TrafficSelector {
            ip_proto: 0,
            start_port: 0,
            end_port: 65535,
            start_addr: addr_from(start, v4),
            end_addr: addr_from(end, v4),
        }
    }

    /// Empty: start above end, or the two ends of different families.
    pub fn is_empty(&self) -> bool {
        let (s, v4s) = addr_bits(self.start_addr);
        let (e, v4e) = addr_bits(self.end_addr);
        v4s != v4e || s > e || self.start_port > self.end_port
    }

    /// The intersection, or `None` when it is empty (§2.9 narrowing).
    pub fn intersect(&self, o: &TrafficSelector) -> Option<TrafficSelector> {
        if self.is_empty() || o.is_empty() || self.start_addr.is_ipv4() != o.start_addr.is_ipv4() {
            return None;
        }
        let ip_proto = match (self.ip_proto, o.ip_proto) {
            (0, p) | (p, 0) => p,
            (a, b) if a == b => a,
            _ => return None,
        };
        let v4 = self.start_addr.is_ipv4();
        let s = addr_bits(self.start_addr).0.max(addr_bits(o.start_addr).0);
        let e = addr_bits(self.end_addr).0.min(addr_bits(o.end_addr).0);
        let t = TrafficSelector {
            ip_proto,
            start_port: self.start_port.max(o.start_port),
            end_port: self.end_port.min(o.end_port),
            start_addr: addr_from(s, v4),
            end_addr: addr_from(e, v4),
        };
        (!t.is_empty()).then_some(t)
    }

    /// True when every packet `self` matches is also matched by `outer`.
    pub fn is_subset_of(&self, outer: &TrafficSelector) -> bool {
        self.intersect(outer).as_ref() == Some(self)
    }

    /// The address range as one prefix, if it is exactly one.
    pub fn prefix(&self) -> Option<Prefix> {
        if self.is_empty() {
            return None;
        }
        let (s, v4) = addr_bits(self.start_addr);
        let (e, _) = addr_bits(self.end_addr);
        let x = s ^ e;
        // x must be 2^k - 1 with the low k bits of start clear.
        if x & x.wrapping_add(1) != 0 || s & x != 0 {
            return None;
        }
        let k = 128 - x.leading_zeros();
        let bits: u32 = if v4 { 32 } else { 128 };
        let len = u8::try_from(bits.checked_sub(k)?).ok()?;
        Some(Prefix::new(self.start_addr, len))
    }

    fn ports(&self) -> Option<PortRange> {
        (!(self.start_port == 0 && self.end_port == 65535)).then_some(PortRange {
            lo: self.start_port,
            hi: self.end_port,
        })
    }
}

/// The SPD selector for packets from `src` to `dst`, when both are prefixes.
pub fn selector(src: &TrafficSelector, dst: &TrafficSelector) -> Option<Selector> {
    if src.ip_proto != dst.ip_proto && src.ip_proto != 0 && dst.ip_proto != 0 {
        return None;
    }
    let proto = match src.ip_proto.max(dst.ip_proto) {
        0 => None,
        p => Some(p),
    };
    Some(Selector {
        src: Some(src.prefix()?),
        dst: Some(dst.prefix()?),
        proto,
        sport: src.ports(),
        dport: dst.ports(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn v4(a: [u8; 4], len: u8) -> TrafficSelector {
        TrafficSelector::from_prefix(Prefix::new(IpAddr::V4(Ipv4Addr::from(a)), len))
    }

    #[test]
    fn narrowing_and_prefixes() {
        let wide = v4([10, 0, 0, 0], 8);
        let narrow = v4([10, 1, 2, 0], 24);
        assert_eq!(wide.intersect(&narrow), Some(narrow));
        assert!(narrow.is_subset_of(&wide));
        assert!(!wide.is_subset_of(&narrow));
        assert_eq!(v4([10, 0, 0, 0], 8).intersect(&v4([11, 0, 0, 0], 8)), None);
        assert_eq!(
            narrow.prefix(),
            Some(Prefix::new(IpAddr::V4(Ipv4Addr::new(10, 1, 2, 0)), 24))
        );
        assert_eq!(TrafficSelector::any(true).prefix().map(|p| p.len), Some(0));
        assert_eq!(TrafficSelector::any(false).prefix().map(|p| p.len), Some(0));
        let mut odd = narrow;
        odd.end_addr = IpAddr::V4(Ipv4Addr::new(10, 1, 2, 5));
        assert_eq!(odd.prefix(), None);
        let mut udp = TrafficSelector::any(true);
        udp.ip_proto = 17;
        udp.start_port = 500;
        udp.end_port = 500;
        let i = udp.intersect(&wide).unwrap();
        assert_eq!((i.ip_proto, i.start_port, i.end_port), (17, 500, 500));
        let mut tcp = udp;
        tcp.ip_proto = 6;
        assert_eq!(udp.intersect(&tcp), None);
        assert_eq!(
            TrafficSelector::any(true).intersect(&TrafficSelector::any(false)),
            None
        );
        let sel = selector(&i, &narrow).unwrap();
        assert_eq!(sel.proto, Some(17));
        assert_eq!(sel.sport, Some(PortRange::one(500)));
        assert_eq!(sel.dport, None);
    }
}
