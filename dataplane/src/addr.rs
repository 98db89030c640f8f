//! Typed addresses for configurations and control planes: [`Net4`]/[`Net6`] (an
//! address with its prefix length, as on an interface: `198.51.100.1/24`), [`Range4`]
//! (an inclusive IPv4 range: `a.b.c.d`, `a.b.c.d/len` or `a.b.c.d-e.f.g.h`),
//! [`Prefix64`] (an IPv6 /64 by its upper 64 bits, the unit of prefix pools, RFC 5072
//! §5) and [`Prefix6`] (an IPv6 prefix of any length, the unit of delegated-prefix
//! pools, RFC 8415 §6.3; it prints but does not parse). Each parses from its text
//! form (`FromStr`), prints it (`Display`) and (de)serializes as that string, as does
//! [`MacAddr`] (IEEE 802 colon form), so a TOML value such as `"10.0.0.0/24"` is a
//! typed field: the configuration is checked when it is read, and a bad value is an
//! error naming its key.

use crate::proto::ethernet::MacAddr;
use core::fmt;
use core::net::{Ipv4Addr, Ipv6Addr};
use core::str::FromStr;
use serde::{de, Deserialize, Deserializer, Serialize, Serializer};

/// The netmask of an IPv4 prefix length (lengths above 32 count as 32).
pub fn mask4(len: u8) -> u32 {
    if len == 0 {
        0
    } else {
        u32::MAX << (32 - u32::from(len.min(32)))
    }
}

/// The netmask of an IPv6 prefix length (lengths above 128 count as 128).
pub fn mask6(len: u8) -> u128 {
    if len == 0 {
        0
    } else {
        u128::MAX << (128 - u32::from(len.min(128)))
    }
}

/// An IPv4 address with its prefix length, as configured on an interface (the host
/// bits are kept: `198.51.100.1/24`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Net4 {
    pub addr: Ipv4Addr,
    pub len: u8,
}

/// An IPv6 address with its prefix length (the host bits are kept).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Net6 {
    pub addr: Ipv6Addr,
    pub len: u8,
}

impl Net4 {
    /// True when `a` is inside this subnet.
    pub fn contains(&self, a: Ipv4Addr) -> bool {
        let m = mask4(self.len);
        u32::from(a) & m == u32::from(self.addr) & m
    }

    /// The network address (host bits cleared).
    pub fn network(&self) -> Ipv4Addr {
        Ipv4Addr::from(u32::from(self.addr) & mask4(self.len))
    }
}

impl Net6 {
    /// True when `a` is inside this subnet.
    pub fn contains(&self, a: &Ipv6Addr) -> bool {
        let m = mask6(self.len);
        u128::from(*a) & m == u128::from(self.addr) & m
    }

    /// The network address (host bits cleared).
    pub fn network(&self) -> Ipv6Addr {
        Ipv6Addr::from(u128::from(self.addr) & mask6(self.len))
    }
}

/// An inclusive IPv4 address range (first ≤ last).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Range4 {
    first: Ipv4Addr,
    last: Ipv4Addr,
}

impl Range4 {
    /// The range `first..=last`; `None` when inverted.
    pub fn new(first: Ipv4Addr, last: Ipv4Addr) -> Option<Range4> {
        (first <= last).then_some(Range4 { first, last })
    }

    /// The one address `a`.
    pub fn single(a: Ipv4Addr) -> Range4 {
        Range4 { first: a, last: a }
    }

    /// Every address of the subnet of `net` (host bits of `net.addr` ignored).
    pub fn of_net(net: Net4) -> Range4 {
        let m = mask4(net.len);
        let lo = u32::from(net.addr) & m;
        Range4 {
            first: Ipv4Addr::from(lo),
            last: Ipv4Addr::from(lo | !m),
        }
    }

    /// The first address.
    pub fn first(&self) -> Ipv4Addr {
        self.first
    }

    /// The last address.
    pub fn last(&self) -> Ipv4Addr {
        self.last
    }

    /// The range as big-endian integers `(first, last)`.
    pub fn bounds(&self) -> (u32, u32) {
        (u32::from(self.first), u32::from(self.last))
    }

    /// Number of addresses (1 to 2^32).
    pub fn len(&self) -> u64 {
        let (a, b) = self.bounds();
        u64::from(b - a) + 1
    }

    /// Never empty (a range holds at least its first address).
    pub fn is_empty(&self) -> bool {
        false
    }

    /// True when `a` is inside the range.
    pub fn contains(&self, a: Ipv4Addr) -> bool {
        (self.first..=self.last).contains(&a)
    }

    /// True when the two ranges share an address.
    pub fn overlaps(&self, o: &Range4) -> bool {
        self.first <= o.last && o.first <= self.last
    }

    /// The range as one prefix when it is exactly one (aligned, a power of two long).
    pub fn as_net(&self) -> Option<Net4> {
        let n = self.len();
        let (a, _) = self.bounds();
        if !n.is_power_of_two() || u64::from(a) % n != 0 {
            return None;
        }
        Some(Net4 {
            addr: self.first,
            len: (32 - n.trailing_zeros()) as u8,
        })
    }
}

/// An IPv6 /64 prefix by its upper 64 bits (the unit handed out by prefix pools:
/// one /64 per PPP session for SLAAC, RFC 5072 §5). Prints as `2001:db8:1:2::/64`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct Prefix64(pub u64);

impl Prefix64 {
    /// The /64 holding `a`.
    pub fn of(a: Ipv6Addr) -> Prefix64 {
        Prefix64((u128::from(a) >> 64) as u64)
    }

    /// The prefix's network address (interface identifier zero).
    pub fn network(&self) -> Ipv6Addr {
        Ipv6Addr::from(u128::from(self.0) << 64)
    }
}

impl fmt::Display for Prefix64 {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/64", self.network())
    }
}

/// An IPv6 prefix of any length 0..=[`Prefix6::MAX_LEN`] with its host bits cleared:
/// the unit of delegated-prefix pools (DHCPv6 IA_PD, RFC 8415 §6.3: e.g. /56s out of a
/// /40; RADIUS Delegated-IPv6-Prefix, RFC 4818). Prints as `2001:db8:100::/56`.
/// Ordered by length, then by address.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Prefix6 {
    len: u8,
    net: u128,
}

impl Prefix6 {
    /// Longest prefix this type holds (pool keys keep the length in their top 8 bits).
    pub const MAX_LEN: u8 = 120;

    /// The prefix of length `len` holding `a` (host bits cleared); `None` if `len`
    /// is above [`Prefix6::MAX_LEN`].
    pub fn new(a: Ipv6Addr, len: u8) -> Option<Prefix6> {
        (len <= Self::MAX_LEN).then(|| Prefix6 {
            len,
            net: u128::from(a) & mask6(len),
        })
    }

    /// The network address.
    pub fn network(&self) -> Ipv6Addr {
        Ipv6Addr::from(self.net)
    }

    /// The prefix length.
    pub fn len(&self) -> u8 {
        self.len
    }

    /// Whether this is `::/0`.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Whether `a` lies inside the prefix.
    pub fn contains(&self, a: Ipv6Addr) -> bool {
        u128::from(a) & mask6(self.len) == self.net
    }

    /// The first and last prefix of length `len` inside `outer` (an inclusive pool
    /// range: the /56s of a /40). `None` if `len` is shorter than `outer`'s length
    /// or above [`Prefix6::MAX_LEN`].
    pub fn split(outer: Net6, len: u8) -> Option<(Prefix6, Prefix6)> {
        if len < outer.len || len > Self::MAX_LEN {
            return None;
        }
        let net = outer.network();
        let last = u128::from(net) | (!mask6(outer.len) & mask6(len));
        Some((
            Prefix6::new(net, len)?,
            Prefix6::new(Ipv6Addr::from(last), len)?,
        ))
    }

    /// The index of the prefix among those of its length (its network bits).
    pub fn index(&self) -> u128 {
        match self.len {
            0 => 0,
            l => self.net >> (128 - u32::from(l)),
        }
    }

    /// The prefix of length `len` with index `index` (see [`Prefix6::index`]); `len`
    /// above [`Prefix6::MAX_LEN`] counts as that.
    pub fn from_index(len: u8, index: u128) -> Prefix6 {
        let len = len.min(Self::MAX_LEN);
        let net = match len {
            0 => 0,
            l => index << (128 - u32::from(l)),
        };
        Prefix6 { len, net }
    }
}

impl fmt::Display for Prefix6 {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.network(), self.len)
    }
}

/// Why a string is not the address form a type wants.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum AddrParseError {
    /// Not `a.b.c.d/len` with len at most 32.
    Net4,
    /// Not `x:y::z/len` with len at most 128.
    Net6,
    /// Not `a.b.c.d`, `a.b.c.d/len` (len at most 32) or `a.b.c.d-e.f.g.h`.
    Range4,
    /// `a.b.c.d-e.f.g.h` with the first address above the last.
    InvertedRange,
}

impl fmt::Display for AddrParseError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            AddrParseError::Net4 => {
                "not an IPv4 address with its prefix length (a.b.c.d/len, len at most 32)"
            }
            AddrParseError::Net6 => {
                "not an IPv6 address with its prefix length (x:y::z/len, len at most 128)"
            }
            AddrParseError::Range4 => "not an IPv4 range (a.b.c.d, a.b.c.d/len or a.b.c.d-e.f.g.h)",
            AddrParseError::InvertedRange => "inverted range (the first address is above the last)",
        })
    }
}

impl core::error::Error for AddrParseError {}

/// `addr/len` with `len` at most `max` (spaces around either part are allowed).
fn split_net<A: FromStr>(s: &str, max: u8) -> Option<(A, u8)> {
    let (a, l) = s.split_once('/')?;
    let a = a.trim().parse().ok()?;
    let l: u8 = l.trim().parse().ok()?;
    (l <= max).then_some((a, l))
}

impl FromStr for Net4 {
    type Err = AddrParseError;

    /// `a.b.c.d/len`, len at most 32.
    fn from_str(s: &str) -> Result<Net4, AddrParseError> {
        let (addr, len) = split_net(s, 32).ok_or(AddrParseError::Net4)?;
        Ok(Net4 { addr, len })
    }
}

impl FromStr for Net6 {
    type Err = AddrParseError;

    /// `x:y::z/len`, len at most 128.
    fn from_str(s: &str) -> Result<Net6, AddrParseError> {
        let (addr, len) = split_net(s, 128).ok_or(AddrParseError::Net6)?;
        Ok(Net6 { addr, len })
    }
}

impl FromStr for Range4 {
    type Err = AddrParseError;

    /// `a.b.c.d` (one address), `a.b.c.d/len` (the subnet's every address, host bits
    /// of the address ignored) or `a.b.c.d-e.f.g.h` (inclusive; inverted is refused).
    fn from_str(s: &str) -> Result<Range4, AddrParseError> {
        let s = s.trim();
        if s.contains('/') {
            return s
                .parse()
                .map(Range4::of_net)
                .map_err(|_| AddrParseError::Range4);
        }
        if let Some((a, b)) = s.split_once('-') {
            let a: Ipv4Addr = a.trim().parse().map_err(|_| AddrParseError::Range4)?;
            let b: Ipv4Addr = b.trim().parse().map_err(|_| AddrParseError::Range4)?;
            return Range4::new(a, b).ok_or(AddrParseError::InvertedRange);
        }
        s.parse()
            .map(Range4::single)
            .map_err(|_| AddrParseError::Range4)
    }
}

impl fmt::Display for Net4 {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.addr, self.len)
    }
}

impl fmt::Display for Net6 {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.addr, self.len)
    }
}

/// `a.b.c.d` for one address, `a.b.c.d/len` for an aligned prefix, else
/// `a.b.c.d-e.f.g.h`: a form [`Range4`]'s `FromStr` reads back to the same range.
impl fmt::Display for Range4 {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.first == self.last {
            write!(f, "{}", self.first)
        } else if let Some(n) = self.as_net() {
            write!(f, "{n}")
        } else {
            write!(f, "{}-{}", self.first, self.last)
        }
    }
}

/// `Serialize` as the `Display` string and `Deserialize` from a string through
/// `FromStr`; the error is the value with the parser's reason.
macro_rules! serde_as_string {
    ($t:ty, $expecting:literal) => {
        impl Serialize for $t {
            fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
                s.collect_str(self)
            }
        }

        impl<'de> Deserialize<'de> for $t {
            fn deserialize<D: Deserializer<'de>>(d: D) -> Result<$t, D::Error> {
                struct V;
                impl de::Visitor<'_> for V {
                    type Value = $t;

                    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                        f.write_str($expecting)
                    }

                    fn visit_str<E: de::Error>(self, v: &str) -> Result<$t, E> {
                        v.parse().map_err(|e| E::custom(format_args!("{v:?}: {e}")))
                    }
                }
                d.deserialize_str(V)
            }
        }
    };
}

serde_as_string!(Net4, "an IPv4 address with its prefix length (a.b.c.d/len)");
serde_as_string!(Net6, "an IPv6 address with its prefix length (x:y::z/len)");
serde_as_string!(
    Range4,
    "an IPv4 range (a.b.c.d, a.b.c.d/len or a.b.c.d-e.f.g.h)"
);
serde_as_string!(MacAddr, "a MAC address (aa:bb:cc:dd:ee:ff)");

#[cfg(test)]
mod tests {
    use super::*;
    use alloc::string::ToString;

    fn v4(s: &str) -> Ipv4Addr {
        s.parse().unwrap()
    }

    #[test]
    fn range4_forms_and_round_trip() {
        let r: Range4 = "10.0.0.7/24".parse().unwrap();
        assert_eq!(r.bounds(), (0x0a00_0000, 0x0a00_00ff));
        assert_eq!(r.to_string(), "10.0.0.0/24");
        let r: Range4 = " 10.1.0.5 - 10.1.0.9 ".parse().unwrap();
        assert_eq!(
            (r.first(), r.last(), r.len()),
            (v4("10.1.0.5"), v4("10.1.0.9"), 5)
        );
        assert_eq!(r.to_string(), "10.1.0.5-10.1.0.9");
        let r: Range4 = "198.51.100.7".parse().unwrap();
        assert_eq!(r.to_string(), "198.51.100.7");
        let all: Range4 = "0.0.0.0/0".parse().unwrap();
        assert_eq!(
            (all.len(), all.to_string().as_str()),
            (1 << 32, "0.0.0.0/0")
        );
        // Aligned ranges print as the prefix they are; the text reads back the same.
        for s in [
            "10.0.0.0-10.0.0.3",
            "10.0.0.4-10.0.0.11",
            "100.64.0.2-100.127.255.254",
        ] {
            let r: Range4 = s.parse().unwrap();
            assert_eq!(r.to_string().parse::<Range4>(), Ok(r), "{s}");
        }
        assert_eq!(
            "10.0.0.0-10.0.0.3".parse::<Range4>().unwrap().to_string(),
            "10.0.0.0/30"
        );
        assert_eq!(
            "10.0.0.9-10.0.0.1".parse::<Range4>(),
            Err(AddrParseError::InvertedRange)
        );
        for bad in ["", "nope", "10.0.0.0/33", "10.0.0.1-", "10.0.0/24", "::1"] {
            assert_eq!(bad.parse::<Range4>(), Err(AddrParseError::Range4), "{bad}");
        }
        assert!(r_overlap("10.0.0.0/30", "10.0.0.2/31"));
        assert!(!r_overlap("10.0.0.0/30", "10.0.0.4/30"));
    }

    fn r_overlap(a: &str, b: &str) -> bool {
        let (a, b): (Range4, Range4) = (a.parse().unwrap(), b.parse().unwrap());
        a.overlaps(&b)
    }

    #[test]
    fn nets_and_prefix64() {
        let n: Net4 = "198.51.100.1/24".parse().unwrap();
        assert_eq!((n.addr, n.len), (v4("198.51.100.1"), 24));
        assert_eq!(n.network(), v4("198.51.100.0"));
        assert!(n.contains(v4("198.51.100.254")) && !n.contains(v4("198.51.101.1")));
        assert_eq!(n.to_string(), "198.51.100.1/24");
        assert_eq!("198.51.100.1".parse::<Net4>(), Err(AddrParseError::Net4));
        assert_eq!("198.51.100.1/33".parse::<Net4>(), Err(AddrParseError::Net4));
        let n: Net6 = "2001:db8:1ff::/40".parse().unwrap();
        assert_eq!(n.network(), "2001:db8:100::".parse::<Ipv6Addr>().unwrap());
        assert_eq!(n.to_string(), "2001:db8:1ff::/40");
        assert_eq!("10.0.0.0/8".parse::<Net6>(), Err(AddrParseError::Net6));
        assert_eq!("2001:db8::/129".parse::<Net6>(), Err(AddrParseError::Net6));
        let p = Prefix64(0x2001_0db8_0100_0005);
        assert_eq!(p.to_string(), "2001:db8:100:5::/64");
        assert_eq!(Prefix64::of(p.network()), p);
    }
}
