//! IPv4 address pools for subscribers (RFC 2869 §5.18 Framed-Pool selects one by name;
//! RFC 2865 §5.8 Framed-IP-Address overrides). Each pool is one or more ranges with a
//! bitmap of used addresses; allocation is a scan from a rotating hint.
//!
//! No address is ever held by two sessions: pools may not overlap (checked when
//! [`Pools`] is built), and a fixed address outside every pool (a local user's `ip`,
//! a RADIUS Framed-IP-Address) is tracked in an in-use set of its own. Martian
//! addresses (RFC 1122 §3.2.1.3 and RFC 6890: `0.0.0.0/8`, `127.0.0.0/8`,
//! `224.0.0.0/4`, `240.0.0.0/4` with `255.255.255.255`) and the BNG's own addresses
//! (the gateway announced in IPCP, the core address) can neither be in a pool nor be
//! taken; a RADIUS address that cannot be honoured rejects the session (RFC 6929 §2.8
//! treats an invalid attribute like a reject).

use crate::config::ConfigError;
use alloc::string::String;
use alloc::vec;
use alloc::vec::Vec;
use hashbrown::HashSet;

/// Most addresses all IPv4 pools together may hold (a /8): the bitmaps cost 2 MiB.
pub const MAX_POOL_ADDRESSES: u64 = 1 << 24;

/// Whether `a` may never be a subscriber address: `0.0.0.0/8` (RFC 1122 "this
/// network"), `127.0.0.0/8` (loopback), `224.0.0.0/4` (multicast) and `240.0.0.0/4`
/// (reserved, with the limited broadcast `255.255.255.255`).
pub fn is_martian(a: u32) -> bool {
    let top = a >> 24;
    top == 0 || top == 127 || top >= 224
}

/// One pool.
#[derive(Debug, Clone)]
pub struct Pool {
    /// Name (matched against Framed-Pool).
    pub name: String,
    ranges: Vec<(u32, u32)>,
    used: Vec<u64>,
    size: u32,
    hint: u32,
    in_use: u32,
}

/// Why an address could not be had.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PoolError {
    /// No pool of that name.
    NoSuchPool,
    /// The pool is exhausted.
    Exhausted,
    /// The address is already in use.
    InUse,
    /// The address may not be given to a subscriber (martian or one of ours).
    Invalid,
}

impl Pool {
    /// A pool of inclusive ranges (big-endian u32 addresses). Refused: no range, an
    /// inverted range, ranges that overlap, more than [`MAX_POOL_ADDRESSES`], martian
    /// addresses.
    pub fn new(name: &str, ranges: &[(u32, u32)]) -> Result<Pool, ConfigError> {
        let bad = |what: &str| Err(ConfigError(alloc::format!("pool {name:?}: {what}")));
        if ranges.is_empty() {
            return bad("no ranges");
        }
        let mut size = 0u64;
        for &(a, b) in ranges {
            if a > b {
                return bad(&alloc::format!("inverted range {}-{}", ip(a), ip(b)));
            }
            if range_has_martian(a, b) {
                return bad(&alloc::format!(
                    "range {}-{} holds martian addresses (0/8, 127/8, 224/4, 240/4)",
                    ip(a),
                    ip(b)
                ));
            }
            size += u64::from(b - a) + 1;
        }
        if size > MAX_POOL_ADDRESSES {
            return bad(&alloc::format!(
                "{size} addresses, more than the limit of {MAX_POOL_ADDRESSES}"
            ));
        }
        if let Some((x, y)) = first_overlap(ranges.iter().map(|&r| (r, 0))) {
            return bad(&alloc::format!(
                "ranges {}-{} and {}-{} overlap",
                ip(x.0),
                ip(x.1),
                ip(y.0),
                ip(y.1)
            ));
        }
        let size = size as u32;
        Ok(Pool {
            name: String::from(name),
            ranges: ranges.to_vec(),
            used: vec![0; (size as usize).div_ceil(64)],
            size,
            hint: 0,
            in_use: 0,
        })
    }

    fn index_of(&self, addr: u32) -> Option<u32> {
        let mut base = 0u32;
        for &(a, b) in &self.ranges {
            if (a..=b).contains(&addr) {
                return Some(base + (addr - a));
            }
            base += b - a + 1;
        }
        None
    }

    fn addr_of(&self, mut idx: u32) -> Option<u32> {
        for &(a, b) in &self.ranges {
            let n = b - a + 1;
            if idx < n {
                return Some(a + idx);
            }
            idx -= n;
        }
        None
    }

    fn bit(&self, i: u32) -> bool {
        self.used
            .get((i / 64) as usize)
            .is_some_and(|w| w & (1 << (i % 64)) != 0)
    }

    fn set(&mut self, i: u32, v: bool) {
        if let Some(w) = self.used.get_mut((i / 64) as usize) {
            if v {
                *w |= 1 << (i % 64);
            } else {
                *w &= !(1 << (i % 64));
            }
        }
    }

    /// Addresses in use.
    pub fn in_use(&self) -> u32 {
        self.in_use
    }

    /// Total addresses.
    pub fn size(&self) -> u32 {
        self.size
    }

    /// Whether `addr` belongs to this pool.
    pub fn contains(&self, addr: u32) -> bool {
        self.index_of(addr).is_some()
    }

    /// Allocate any free address.
    pub fn alloc(&mut self) -> Result<u32, PoolError> {
        if self.in_use >= self.size {
            return Err(PoolError::Exhausted);
        }
        let words = self.used.len() as u32;
        let start = self.hint / 64;
        for k in 0..=words {
            let w = (start + k) % words.max(1);
            let word = self.used.get(w as usize).copied().unwrap_or(u64::MAX);
            if word != u64::MAX {
                let i = w * 64 + (!word).trailing_zeros();
                if i < self.size {
                    self.set(i, true);
                    self.in_use += 1;
                    self.hint = i + 1;
                    return self.addr_of(i).ok_or(PoolError::Exhausted);
                }
            }
        }
        Err(PoolError::Exhausted)
    }

    /// Take a specific address (RADIUS Framed-IP-Address inside this pool).
    pub fn take(&mut self, addr: u32) -> Result<(), PoolError> {
        let i = self.index_of(addr).ok_or(PoolError::NoSuchPool)?;
        if self.bit(i) {
            return Err(PoolError::InUse);
        }
        self.set(i, true);
        self.in_use += 1;
        Ok(())
    }

    /// Return an address; addresses outside the pool or already free are ignored.
    pub fn free(&mut self, addr: u32) {
        if let Some(i) = self.index_of(addr) {
            if self.bit(i) {
                self.set(i, false);
                self.in_use -= 1;
            }
        }
    }
}

fn ip(a: u32) -> core::net::Ipv4Addr {
    core::net::Ipv4Addr::from(a)
}

/// Whether the inclusive range holds a martian address: martians are whole /8s, so
/// looking at each /8 the range touches is enough (at most 256).
fn range_has_martian(a: u32, b: u32) -> bool {
    ((a >> 24)..=(b >> 24)).any(|top| is_martian(top << 24))
}

/// An inclusive range tagged with its owner.
type Tagged<T> = (u32, u32, T);

/// The first two overlapping inclusive ranges, each tagged with its owner.
fn first_overlap<T: Copy>(
    it: impl Iterator<Item = ((u32, u32), T)>,
) -> Option<(Tagged<T>, Tagged<T>)> {
    let mut v: Vec<((u32, u32), T)> = it.collect();
    v.sort_by_key(|&((a, b), _)| (a, b));
    v.windows(2).find_map(|w| match w {
        [((a0, b0), t0), ((a1, b1), t1)] if a1 <= b0 => Some(((*a0, *b0, *t0), (*a1, *b1, *t1))),
        _ => None,
    })
}

/// All pools (the first being the default) and the fixed addresses held outside them.
#[derive(Debug, Clone, Default)]
pub struct Pools {
    pools: Vec<Pool>,
    /// The BNG's own addresses: never a subscriber's.
    reserved: Vec<u32>,
    /// Fixed addresses in use outside every pool.
    statics: HashSet<u32>,
}

impl Pools {
    /// From a list of pools (the first is the default) and the BNG's own addresses
    /// (`reserved`: gateway, core address). Refused: duplicate names, pools that
    /// overlap, a pool holding a reserved address, more than [`MAX_POOL_ADDRESSES`]
    /// in all.
    pub fn new(pools: Vec<Pool>, reserved: &[u32]) -> Result<Pools, ConfigError> {
        let total: u64 = pools.iter().map(|p| u64::from(p.size)).sum();
        if total > MAX_POOL_ADDRESSES {
            return Err(ConfigError(alloc::format!(
                "pools hold {total} addresses in all, more than the limit of {MAX_POOL_ADDRESSES}"
            )));
        }
        for (i, p) in pools.iter().enumerate() {
            if pools.iter().take(i).any(|q| q.name == p.name) {
                return Err(ConfigError(alloc::format!(
                    "duplicate pool name {:?}",
                    p.name
                )));
            }
            if let Some(r) = reserved.iter().find(|r| p.contains(**r)) {
                return Err(ConfigError(alloc::format!(
                    "pool {:?} holds the BNG's own address {}",
                    p.name,
                    ip(*r)
                )));
            }
        }
        let all = pools
            .iter()
            .enumerate()
            .flat_map(|(i, p)| p.ranges.iter().map(move |&r| (r, i)));
        if let Some((x, y)) = first_overlap(all) {
            let name = |i: usize| pools.get(i).map_or("", |p| p.name.as_str());
            return Err(ConfigError(alloc::format!(
                "pools {:?} ({}-{}) and {:?} ({}-{}) overlap",
                name(x.2),
                ip(x.0),
                ip(x.1),
                name(y.2),
                ip(y.0),
                ip(y.1)
            )));
        }
        Ok(Pools {
            pools,
            reserved: reserved.to_vec(),
            statics: HashSet::new(),
        })
    }

    /// Allocate from the pool `name` (or the default pool).
    pub fn alloc(&mut self, name: Option<&str>) -> Result<u32, PoolError> {
        let p = match name {
            Some(n) => self
                .pools
                .iter_mut()
                .find(|p| p.name == n)
                .ok_or(PoolError::NoSuchPool)?,
            None => self.pools.first_mut().ok_or(PoolError::NoSuchPool)?,
        };
        p.alloc()
    }

    /// Whether `addr` may be given to a subscriber at all (not martian, not ours).
    pub fn assignable(&self, addr: u32) -> bool {
        !is_martian(addr) && !self.reserved.contains(&addr)
    }

    /// Reserve a specific address: in its pool if one holds it, else in the set of
    /// fixed addresses. Martian and reserved addresses are [`PoolError::Invalid`]; an
    /// address already held is [`PoolError::InUse`].
    pub fn take(&mut self, addr: u32) -> Result<(), PoolError> {
        if !self.assignable(addr) {
            return Err(PoolError::Invalid);
        }
        match self.pools.iter_mut().find(|p| p.contains(addr)) {
            Some(p) => p.take(addr),
            None if self.statics.insert(addr) => Ok(()),
            None => Err(PoolError::InUse),
        }
    }

    /// Return an address to whichever pool (or the fixed set) holds it.
    pub fn free(&mut self, addr: u32) {
        match self.pools.iter_mut().find(|p| p.contains(addr)) {
            Some(p) => p.free(addr),
            None => {
                self.statics.remove(&addr);
            }
        }
    }

    /// Whether `addr` lies in some pool.
    pub fn contains(&self, addr: u32) -> bool {
        self.pools.iter().any(|p| p.contains(addr))
    }

    /// Fixed addresses in use outside every pool.
    pub fn statics_in_use(&self) -> usize {
        self.statics.len()
    }

    /// Capacity of the fixed-address set (for memory reports).
    pub fn statics_capacity(&self) -> usize {
        self.statics.capacity()
    }

    /// Iterate pools.
    pub fn iter(&self) -> impl Iterator<Item = &Pool> {
        self.pools.iter()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn a(s: &str) -> u32 {
        u32::from(s.parse::<core::net::Ipv4Addr>().unwrap())
    }

    #[test]
    fn alloc_free_exhaust() {
        let mut p = Pool::new(
            "a",
            &[
                (a("10.0.0.10"), a("10.0.0.12")),
                (a("10.0.1.0"), a("10.0.1.0")),
            ],
        )
        .unwrap();
        assert_eq!(p.size(), 4);
        let got: Vec<u32> = (0..4).map(|_| p.alloc().unwrap()).collect();
        assert_eq!(
            got,
            [
                a("10.0.0.10"),
                a("10.0.0.11"),
                a("10.0.0.12"),
                a("10.0.1.0")
            ]
        );
        assert_eq!(p.alloc(), Err(PoolError::Exhausted));
        p.free(a("10.0.0.11"));
        p.free(a("10.0.0.11"));
        assert_eq!(p.in_use(), 3);
        assert_eq!(p.alloc(), Ok(a("10.0.0.11")));
        assert_eq!(p.take(a("10.0.0.12")), Err(PoolError::InUse));
    }

    #[test]
    fn named_pools() {
        let mut ps = Pools::new(
            vec![
                Pool::new("default", &[(a("10.0.0.1"), a("10.0.3.232"))]).unwrap(),
                Pool::new("gold", &[(a("10.1.0.0"), a("10.1.0.1"))]).unwrap(),
            ],
            &[],
        )
        .unwrap();
        assert_eq!(ps.alloc(Some("gold")), Ok(a("10.1.0.0")));
        assert_eq!(ps.alloc(Some("nope")), Err(PoolError::NoSuchPool));
        assert_eq!(ps.alloc(None), Ok(a("10.0.0.1")));
        assert_eq!(ps.take(a("10.0.0.7")), Ok(()));
        assert_ne!(ps.alloc(None), Ok(a("10.0.0.7")));
        let p = ps.iter().next().unwrap();
        assert_eq!(p.in_use(), 3);
    }

    /// Issue 20 item 2: an address outside every pool was not tracked, so two sessions
    /// could both hold 8.8.4.4; martians and our own addresses were accepted.
    #[test]
    fn fixed_addresses_outside_pools_are_held_once_and_martians_refused() {
        let gw = a("100.64.0.1");
        let mut ps = Pools::new(
            vec![Pool::new("d", &[(a("100.64.0.2"), a("100.64.0.9"))]).unwrap()],
            &[gw, a("198.51.100.1")],
        )
        .unwrap();
        assert_eq!(ps.take(a("8.8.4.4")), Ok(()));
        assert_eq!(ps.take(a("8.8.4.4")), Err(PoolError::InUse));
        assert_eq!(ps.statics_in_use(), 1);
        ps.free(a("8.8.4.4"));
        assert_eq!(ps.take(a("8.8.4.4")), Ok(()));
        for bad in [
            "0.0.0.0",
            "0.1.2.3",
            "127.0.0.1",
            "224.0.0.1",
            "239.255.255.255",
            "240.0.0.1",
            "255.255.255.255",
            "100.64.0.1",
            "198.51.100.1",
        ] {
            assert_eq!(ps.take(a(bad)), Err(PoolError::Invalid), "{bad}");
        }
        assert_eq!(ps.take(a("100.64.0.5")), Ok(()));
        assert_eq!(ps.take(a("100.64.0.5")), Err(PoolError::InUse));
    }

    /// Issue 20 item 2: overlapping pools handed out one address twice, a pool could
    /// hold the gateway, and `0.0.0.0/0` overflowed the size computation.
    #[test]
    fn overlapping_huge_martian_or_gateway_pools_are_refused() {
        let r30 = (a("10.0.0.0"), a("10.0.0.3"));
        let r31 = (a("10.0.0.2"), a("10.0.0.3"));
        let p = |n: &str, r: &[(u32, u32)]| Pool::new(n, r).unwrap();
        assert!(Pools::new(vec![p("a", &[r30]), p("b", &[r30])], &[]).is_err());
        assert!(Pools::new(vec![p("a", &[r30]), p("b", &[r31])], &[]).is_err());
        assert!(Pool::new("a", &[r30, r31]).is_err());
        assert!(Pools::new(
            vec![p("a", &[r30]), p("a", &[(a("10.0.1.0"), a("10.0.1.0"))])],
            &[]
        )
        .is_err());
        let e = Pools::new(vec![p("a", &[r30])], &[a("10.0.0.1")]).unwrap_err();
        assert!(e.0.contains("10.0.0.1"), "{e}");
        assert!(Pool::new("all", &[(0, u32::MAX)]).is_err());
        assert!(Pool::new("big", &[(a("10.0.0.0"), a("11.255.255.255"))]).is_err());
        assert!(Pool::new("inv", &[(a("10.0.0.9"), a("10.0.0.1"))]).is_err());
        assert!(Pool::new("lo", &[(a("126.255.255.0"), a("127.0.0.5"))]).is_err());
        assert!(Pool::new("mc", &[(a("223.255.255.0"), a("224.0.0.0"))]).is_err());
        assert!(Pool::new("empty", &[]).is_err());
        // Adjacent is fine; a /8 is the most one pool holds.
        let ok = Pools::new(
            vec![p("a", &[r30]), p("b", &[(a("10.0.0.4"), a("10.0.0.7"))])],
            &[],
        );
        assert!(ok.is_ok());
        assert_eq!(
            Pool::new("slash8", &[(a("10.0.0.0"), a("10.255.255.255"))])
                .unwrap()
                .size(),
            1 << 24
        );
        // Every address of two adjacent pools is handed out exactly once.
        let mut ps = ok.unwrap();
        let mut got: Vec<u32> = (0..4).map(|_| ps.alloc(Some("a")).unwrap()).collect();
        got.extend((0..4).map(|_| ps.alloc(Some("b")).unwrap()));
        got.sort_unstable();
        got.dedup();
        assert_eq!(got.len(), 8);
    }
}
