//! IPv6 prefix pools: one /64 per PPP session, announced by Router Advertisement for
//! SLAAC over PPP (RFC 5072 §5, RFC 4862). A pool is a covering prefix of length 0..=64
//! (e.g. `2001:db8:100::/40` holds 2^24 /64s); RADIUS Framed-IPv6-Pool (RFC 3162 §2.4)
//! selects one by name and Framed-IPv6-Prefix (RFC 3162 §2.3) overrides.
//!
//! Prefixes are handled as their upper 64 bits (`u64`). Allocation is O(log n) and
//! memory is O(prefixes in use), whatever the pool size: a never-used watermark, the
//! returned prefixes below it (an ordered set, so a prefix taken again by
//! Framed-IPv6-Prefix leaves no stale entry behind) and a set of those in use.
//!
//! No /64 is held by two sessions: pools may not overlap, and a Framed-IPv6-Prefix
//! outside every pool is tracked in a set of its own. Martian /64s can neither be in a
//! pool nor be taken: `::/64` (unspecified, loopback, IPv4-mapped; RFC 4291 §2.5),
//! link-local `fe80::/10` (§2.5.6), multicast `ff00::/8` (§2.7), and the /64s of the
//! BNG's own core addresses.

use crate::config::ConfigError;
use alloc::collections::BTreeSet;
use alloc::string::String;
use alloc::vec::Vec;
use hashbrown::HashSet;

/// Whether the /64 `p` (upper 64 bits) may never be a subscriber's: `::/64`,
/// `fe80::/10` or `ff00::/8`.
pub fn is_martian64(p: u64) -> bool {
    p == 0 || p >> 56 == 0xff || p >> 54 == 0xfe80 >> 6
}

/// The martian /64 ranges (inclusive, upper 64 bits).
const MARTIAN64: [(u64, u64); 3] = [
    (0, 0),
    (0xfe80 << 48, (0xfec0 << 48) - 1),
    (0xff00 << 48, u64::MAX),
];

pub use crate::pool::PoolError;

/// One IPv6 pool.
#[derive(Debug, Clone)]
pub struct Pool6 {
    /// Name (matched against Framed-IPv6-Pool).
    pub name: String,
    /// Upper 64 bits of the covering prefix (host bits of the /64 index zero).
    base: u64,
    /// Number of /64s (2^(64 - len)); `u64::MAX` stands for 2^64 (a ::/0 pool).
    size: u64,
    /// /64 indexes below this one have been handed out at least once.
    watermark: u64,
    freed: BTreeSet<u64>,
    used: HashSet<u64>,
}

/// Parse `addr/len` (len ≤ 64) into (upper 64 bits of the network, len).
pub fn parse_prefix6(s: &str) -> Option<(u64, u8)> {
    let (a, l) = s.split_once('/')?;
    let a: core::net::Ipv6Addr = a.trim().parse().ok()?;
    let l: u8 = l.trim().parse().ok()?;
    if l > 64 {
        return None;
    }
    let hi = (u128::from(a) >> 64) as u64;
    let mask = if l == 0 { 0 } else { u64::MAX << (64 - l) };
    Some((hi & mask, l))
}

/// The text form `a:b:c:d::/64` of a /64 given by its upper 64 bits.
pub fn fmt_prefix64(p: u64) -> String {
    alloc::format!("{}/64", core::net::Ipv6Addr::from(u128::from(p) << 64))
}

impl Pool6 {
    /// A pool covering `base/len` (len ≤ 64; longer lengths are clamped to 64).
    pub fn new(name: &str, base: u64, len: u8) -> Pool6 {
        let len = len.min(64);
        let mask = if len == 0 { 0 } else { u64::MAX << (64 - len) };
        let size = if len == 0 {
            u64::MAX
        } else {
            1u64 << (64 - len)
        };
        Pool6 {
            name: String::from(name),
            base: base & mask,
            size,
            watermark: 0,
            freed: BTreeSet::new(),
            used: HashSet::new(),
        }
    }

    fn index_of(&self, p: u64) -> Option<u64> {
        let i = p.wrapping_sub(self.base);
        (p >= self.base && i < self.size).then_some(i)
    }

    /// Whether the /64 `p` (upper 64 bits) belongs to this pool.
    pub fn contains(&self, p: u64) -> bool {
        self.index_of(p).is_some()
    }

    /// /64s in use.
    pub fn in_use(&self) -> u64 {
        self.used.len() as u64
    }

    /// Total /64s (saturating at `u64::MAX`).
    pub fn size(&self) -> u64 {
        self.size
    }

    /// Allocate a free /64 (its upper 64 bits). Never hands out the all-zero subnet of
    /// a pool based at `::` (0 means "no prefix" elsewhere).
    pub fn alloc(&mut self) -> Result<u64, PoolError> {
        if let Some(i) = self.freed.pop_first() {
            self.used.insert(i);
            return Ok(self.base.wrapping_add(i));
        }
        while self.watermark < self.size {
            let i = self.watermark;
            self.watermark += 1;
            if self.base.wrapping_add(i) == 0 || self.used.contains(&i) {
                continue;
            }
            self.used.insert(i);
            return Ok(self.base.wrapping_add(i));
        }
        Err(PoolError::Exhausted)
    }

    /// Take a specific /64 (RADIUS Framed-IPv6-Prefix inside this pool).
    pub fn take(&mut self, p: u64) -> Result<(), PoolError> {
        let i = self.index_of(p).ok_or(PoolError::NoSuchPool)?;
        if !self.used.insert(i) {
            return Err(PoolError::InUse);
        }
        self.freed.remove(&i);
        Ok(())
    }

    /// Inclusive range of the /64s (upper 64 bits) this pool covers.
    pub fn range(&self) -> (u64, u64) {
        (
            self.base,
            self.base.wrapping_add(self.size.saturating_sub(1)),
        )
    }

    /// (in-use set capacity, returned-prefix count): what the pool's memory grows with.
    pub fn footprint(&self) -> (usize, usize) {
        (self.used.capacity(), self.freed.len())
    }

    /// Return a /64; prefixes outside the pool or already free are ignored.
    pub fn free(&mut self, p: u64) {
        if let Some(i) = self.index_of(p) {
            // Above the watermark a prefix comes round again by itself.
            if self.used.remove(&i) && i < self.watermark {
                self.freed.insert(i);
            }
        }
    }
}

/// All IPv6 pools (the first being the default) and the fixed /64s held outside them.
#[derive(Debug, Clone, Default)]
pub struct Pools6 {
    pools: Vec<Pool6>,
    /// /64s of the BNG's own addresses.
    reserved: Vec<u64>,
    /// Fixed /64s in use outside every pool.
    statics: HashSet<u64>,
}

impl Pools6 {
    /// From a list of pools (the first is the default) and the /64s of the BNG's own
    /// addresses. Refused: duplicate names, overlapping pools, pools holding martian or
    /// reserved /64s.
    pub fn new(pools: Vec<Pool6>, reserved: &[u64]) -> Result<Pools6, ConfigError> {
        for (i, p) in pools.iter().enumerate() {
            let (lo, hi) = p.range();
            if pools.iter().take(i).any(|q| q.name == p.name) {
                return Err(ConfigError(alloc::format!(
                    "duplicate IPv6 pool name {:?}",
                    p.name
                )));
            }
            if let Some(q) = pools.iter().take(i).find(|q| {
                let (a, b) = q.range();
                a <= hi && lo <= b
            }) {
                return Err(ConfigError(alloc::format!(
                    "IPv6 pools {:?} and {:?} overlap",
                    q.name,
                    p.name
                )));
            }
            if MARTIAN64.iter().any(|&(a, b)| a <= hi && lo <= b) {
                return Err(ConfigError(alloc::format!(
                    "IPv6 pool {:?} holds martian prefixes (::/64, fe80::/10, ff00::/8)",
                    p.name
                )));
            }
            if let Some(r) = reserved.iter().find(|r| p.contains(**r)) {
                return Err(ConfigError(alloc::format!(
                    "IPv6 pool {:?} holds the BNG's own prefix {}",
                    p.name,
                    fmt_prefix64(*r)
                )));
            }
        }
        Ok(Pools6 {
            pools,
            reserved: reserved.to_vec(),
            statics: HashSet::new(),
        })
    }

    /// Whether the /64 `p` may be given to a subscriber (not martian, not ours).
    pub fn assignable(&self, p: u64) -> bool {
        !is_martian64(p) && !self.reserved.contains(&p)
    }

    /// Fixed /64s in use outside every pool.
    pub fn statics_in_use(&self) -> usize {
        self.statics.len()
    }

    /// Capacities of the fixed set and of every pool's in-use set, and the returned
    /// prefixes kept (for memory reports).
    pub fn footprint(&self) -> (usize, usize, usize) {
        self.pools
            .iter()
            .fold((self.statics.capacity(), 0, 0), |(s, u, f), p| {
                let (pu, pf) = p.footprint();
                (s, u + pu, f + pf)
            })
    }

    /// Whether any pool is configured.
    pub fn is_empty(&self) -> bool {
        self.pools.is_empty()
    }

    /// Allocate from the pool `name` (or the default pool).
    pub fn alloc(&mut self, name: Option<&str>) -> Result<u64, PoolError> {
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

    /// Reserve a specific /64: in its pool if one holds it, else in the set of fixed
    /// prefixes. Martian and reserved /64s are [`PoolError::Invalid`]; a /64 already
    /// held is [`PoolError::InUse`].
    pub fn take(&mut self, p: u64) -> Result<(), PoolError> {
        if !self.assignable(p) {
            return Err(PoolError::Invalid);
        }
        match self.pools.iter_mut().find(|x| x.contains(p)) {
            Some(x) => x.take(p),
            None if self.statics.insert(p) => Ok(()),
            None => Err(PoolError::InUse),
        }
    }

    /// Return a /64 to whichever pool (or the fixed set) holds it.
    pub fn free(&mut self, p: u64) {
        match self.pools.iter_mut().find(|x| x.contains(p)) {
            Some(x) => x.free(p),
            None => {
                self.statics.remove(&p);
            }
        }
    }

    /// Iterate pools.
    pub fn iter(&self) -> impl Iterator<Item = &Pool6> {
        self.pools.iter()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parse_and_format() {
        let (b, l) = parse_prefix6("2001:db8:100::/40").unwrap();
        assert_eq!((b, l), (0x2001_0db8_0100_0000, 40));
        // Host bits below the length are cleared.
        assert_eq!(
            parse_prefix6("2001:db8:1ff::/40").unwrap().0,
            0x2001_0db8_0100_0000
        );
        assert_eq!(parse_prefix6("2001:db8::/65"), None);
        assert_eq!(parse_prefix6("nope/40"), None);
        assert_eq!(parse_prefix6("2001:db8::"), None);
        assert_eq!(fmt_prefix64(0x2001_0db8_0100_0005), "2001:db8:100:5::/64");
    }

    #[test]
    fn alloc_free_take_exhaust() {
        // A /62 holds four /64s.
        let (b, l) = parse_prefix6("2001:db8:0:4::/62").unwrap();
        let mut p = Pool6::new("v6", b, l);
        assert_eq!(p.size(), 4);
        assert_eq!(p.take(b + 2), Ok(()));
        assert_eq!(p.take(b + 2), Err(PoolError::InUse));
        assert_eq!(p.take(b + 4), Err(PoolError::NoSuchPool));
        let got: Vec<u64> = (0..3).map(|_| p.alloc().unwrap()).collect();
        assert_eq!(got, [b, b + 1, b + 3]);
        assert_eq!(p.alloc(), Err(PoolError::Exhausted));
        assert_eq!(p.in_use(), 4);
        p.free(b + 1);
        p.free(b + 1);
        p.free(b + 99);
        assert_eq!(p.in_use(), 3);
        assert_eq!(p.alloc(), Ok(b + 1));
        assert_eq!(p.alloc(), Err(PoolError::Exhausted));
    }

    #[test]
    fn freed_then_taken_is_not_handed_out_twice() {
        let mut p = Pool6::new("v6", 0x2001_0db8_0000_0000, 62);
        let a = p.alloc().unwrap();
        p.free(a);
        p.take(a).unwrap();
        let next = p.alloc().unwrap();
        assert_ne!(next, a);
    }

    #[test]
    fn large_pool_costs_memory_per_prefix_in_use_only() {
        let mut p = Pool6::new("big", 0x2001_0db8_0000_0000, 32);
        assert_eq!(p.size(), 1 << 32);
        for _ in 0..1000 {
            p.alloc().unwrap();
        }
        assert_eq!(p.in_use(), 1000);
        // A pool at :: never hands out the zero prefix.
        let mut z = Pool6::new("zero", 0, 63);
        assert_eq!(z.alloc(), Ok(1));
        assert_eq!(z.alloc(), Err(PoolError::Exhausted));
    }

    #[test]
    fn named_pools() {
        let mut ps = Pools6::new(
            alloc::vec![
                Pool6::new("default", 0x2001_0db8_0100_0000, 40),
                Pool6::new("gold", 0x2001_0db8_0200_0000, 63),
            ],
            &[],
        )
        .unwrap();
        assert_eq!(ps.alloc(Some("gold")), Ok(0x2001_0db8_0200_0000));
        assert_eq!(ps.alloc(Some("nope")), Err(PoolError::NoSuchPool));
        assert_eq!(ps.alloc(None), Ok(0x2001_0db8_0100_0000));
        assert_eq!(ps.take(0x2001_0db8_0200_0001), Ok(()));
        assert_eq!(ps.alloc(Some("gold")), Err(PoolError::Exhausted));
        assert_eq!(ps.take(0x3fff_0000_0000_0001), Ok(()));
        assert_eq!(ps.take(0x3fff_0000_0000_0001), Err(PoolError::InUse));
        ps.free(0x2001_0db8_0200_0001);
        assert_eq!(ps.alloc(Some("gold")), Ok(0x2001_0db8_0200_0001));
        assert!(!ps.is_empty());
    }

    /// Issue 20 item 2 (IPv6): a Framed-IPv6-Prefix outside every pool was not
    /// tracked, martian prefixes were accepted, and overlapping pools were not refused.
    #[test]
    fn fixed_prefixes_tracked_martians_and_overlaps_refused() {
        let ours = 0x2001_0db8_ffff_0000;
        let mut ps = Pools6::new(
            alloc::vec![Pool6::new("v6", 0x2001_0db8_0100_0000, 48)],
            &[ours],
        )
        .unwrap();
        let outside = 0x2001_0db8_0900_0001;
        assert_eq!(ps.take(outside), Ok(()));
        assert_eq!(ps.take(outside), Err(PoolError::InUse));
        ps.free(outside);
        assert_eq!(ps.take(outside), Ok(()));
        assert_eq!(ps.statics_in_use(), 1);
        for bad in [0, 0xfe80 << 48, 0xfebf_ffff_ffff_ffff, 0xff02 << 48, ours] {
            assert_eq!(ps.take(bad), Err(PoolError::Invalid), "{bad:x}");
        }
        let p = |n: &str, s: &str| {
            let (b, l) = parse_prefix6(s).unwrap();
            Pool6::new(n, b, l)
        };
        assert!(Pools6::new(
            alloc::vec![p("a", "2001:db8::/48"), p("b", "2001:db8::/56")],
            &[]
        )
        .is_err());
        assert!(Pools6::new(
            alloc::vec![p("a", "2001:db8::/48"), p("a", "2001:db9::/48")],
            &[]
        )
        .is_err());
        assert!(Pools6::new(alloc::vec![p("all", "::/0")], &[]).is_err());
        assert!(Pools6::new(alloc::vec![p("ll", "fe80::/64")], &[]).is_err());
        assert!(Pools6::new(alloc::vec![p("mc", "ff00::/8")], &[]).is_err());
        assert!(Pools6::new(alloc::vec![p("zero", "::/63")], &[]).is_err());
        assert!(Pools6::new(alloc::vec![p("own", "2001:db8:ffff::/48")], &[ours]).is_err());
        assert!(Pools6::new(
            alloc::vec![p("a", "2001:db8::/48"), p("b", "2001:db8:1::/48")],
            &[]
        )
        .is_ok());
    }

    /// Issue 20 item 10: a prefix taken by Framed-IPv6-Prefix and freed again, over
    /// and over, piled up duplicate entries in the free list.
    #[test]
    fn take_free_churn_keeps_memory_bounded() {
        let mut p = Pool6::new("v6", 0x2001_0db8_0000_0000, 48);
        let a = p.alloc().unwrap();
        let b = p.alloc().unwrap();
        p.free(a);
        for _ in 0..10_000 {
            p.take(a).unwrap();
            p.free(a);
            p.take(0x2001_0db8_0000_9999).unwrap();
            p.free(0x2001_0db8_0000_9999);
        }
        assert!(p.footprint().1 <= 2, "{:?}", p.footprint());
        assert_eq!(p.alloc(), Ok(a));
        assert_ne!(p.alloc(), Ok(b));
    }
}
