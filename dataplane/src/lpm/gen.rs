//! Realistic route-table generators for tests and benches, deterministic from a seed.
//!
//! # Where the prefix-length mix comes from
//!
//! Geoff Huston's BGP table analysis of the view from AS6447 (Route Views), published
//! at <https://bgp.potaroo.net/as6447/> and summarised each January in the APNIC blog
//! series "BGP in 2023" / "BGP in 2024" (<https://labs.apnic.net>):
//!
//! * IPv4, report of 21 Jan 2025: 1,028,987 active FIB entries, **average prefix
//!   length 22.934**. /24s are about 60% of the table, /22 about 12%, /23 about 10%,
//!   /21 about 5%, /20 about 4%, /16../19 together about 6% and /8../15 under 0.5%;
//!   longer than /24 is filtered by nearly all networks and absent from the FIB.
//! * IPv6, report of 23 Oct 2024: 226,415 active FIB entries, **average prefix length
//!   43.24**, 58% of entries are more-specifics of another announced aggregate. /48
//!   (the longest generally accepted) and /32 (the usual RIR allocation) dominate,
//!   followed by /44, /40, /36, /29 and /46.
//!
//! The per-length tables below ([`V4_LENGTHS_PPM`], [`V6_LENGTHS_PER_100K`]) are our
//! rounding of that histogram (we could confirm the totals and mean lengths above from
//! the published report, not every per-length count), tuned so the generated mean
//! length matches the published mean within 0.1 bit; the tests check this.
//!
//! IPv4 prefixes are placed uniformly in unicast space (first octet 1..=223 except 10
//! and 127); at these counts shorter prefixes cover most of that space, so many longer
//! prefixes nest under them as more-specifics do in the real table. IPv6 prefixes are
//! placed in the RIR blocks (2001::/16, 2400::/12, 2600::/12, 2800::/12, 2a00::/12,
//! 2c00::/12); prefixes longer than /32 are placed under a pool of /32 "allocations"
//! (one per eight routes), about half of which are announced themselves, which
//! reproduces the clustering (and the trie sharing) of real IPv6 tables.
//!
//! Next hops are drawn uniformly from `0..GEN_NEXT_HOPS`.

use alloc::collections::BTreeSet;
use alloc::vec::Vec;

use super::NextHop;

/// Next hops of generated routes are drawn from `0..GEN_NEXT_HOPS`.
pub const GEN_NEXT_HOPS: u32 = 256;

/// IPv4 prefix-length histogram in parts per million (see the module docs). /24 takes
/// the remainder (625,500 ppm).
pub const V4_LENGTHS_PPM: [(u8, u32); 16] = [
    (8, 16),
    (9, 14),
    (10, 40),
    (11, 110),
    (12, 320),
    (13, 650),
    (14, 1_250),
    (15, 2_100),
    (16, 13_500),
    (17, 8_500),
    (18, 15_000),
    (19, 26_000),
    (20, 39_000),
    (21, 49_000),
    (22, 119_000),
    (23, 100_000),
];

/// IPv6 prefix-length histogram per 100,000 routes (see the module docs). /48 takes
/// the remainder (50,930).
pub const V6_LENGTHS_PER_100K: [(u8, u32); 29] = [
    (19, 20),
    (20, 60),
    (21, 30),
    (22, 40),
    (23, 50),
    (24, 120),
    (25, 30),
    (26, 30),
    (27, 40),
    (28, 350),
    (29, 2_400),
    (30, 400),
    (31, 300),
    (32, 10_800),
    (33, 1_000),
    (34, 900),
    (35, 700),
    (36, 3_500),
    (37, 500),
    (38, 900),
    (39, 800),
    (40, 6_800),
    (41, 800),
    (42, 1_700),
    (43, 600),
    (44, 8_600),
    (45, 1_500),
    (46, 3_500),
    (47, 2_600),
];

/// An IPv4 route: `addr/len -> nh`, `addr` in host byte order with host bits clear.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Route4 {
    pub addr: u32,
    pub len: u8,
    pub nh: NextHop,
}

/// An IPv6 route: `addr/len -> nh`, `addr` as a big-endian-ordered `u128` with host
/// bits clear.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Route6 {
    pub addr: u128,
    pub len: u8,
    pub nh: NextHop,
}

/// SplitMix64 (Steele, Lea, Flood, "Fast splittable pseudorandom number generators",
/// OOPSLA 2014): a tiny, fast, seedable PRNG so generation needs no `rand` in no_std.
#[derive(Debug, Clone)]
pub struct SplitMix64(u64);

impl SplitMix64 {
    pub fn new(seed: u64) -> Self {
        Self(seed)
    }

    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    pub fn next_u32(&mut self) -> u32 {
        (self.next_u64() >> 32) as u32
    }

    /// A value in `0..n` (0 when `n == 0`), by Lemire's multiply-shift reduction.
    pub fn below(&mut self, n: u64) -> u64 {
        ((u128::from(self.next_u64()) * u128::from(n)) >> 64) as u64
    }

    pub fn next_u128(&mut self) -> u128 {
        (u128::from(self.next_u64()) << 64) | u128::from(self.next_u64())
    }
}

/// Splits `n` routes over the lengths of `hist` (weights out of `scale`), the
/// remainder going to `rest_len`.
fn apportion(n: usize, hist: &[(u8, u32)], scale: u64, rest_len: u8) -> Vec<(u8, usize)> {
    let mut out: Vec<(u8, usize)> = hist
        .iter()
        .map(|&(l, w)| (l, (n as u64 * u64::from(w) / scale) as usize))
        .collect();
    let used: usize = out.iter().map(|&(_, c)| c).sum();
    out.push((rest_len, n.saturating_sub(used)));
    out
}

fn shuffle<T>(v: &mut [T], rng: &mut SplitMix64) {
    for i in (1..v.len()).rev() {
        let j = rng.below(i as u64 + 1) as usize;
        v.swap(i, j);
    }
}

fn mask4(addr: u32, len: u8) -> u32 {
    if len == 0 {
        0
    } else {
        addr & (u32::MAX << (32 - u32::from(len.min(32))))
    }
}

fn mask6(addr: u128, len: u8) -> u128 {
    if len == 0 {
        0
    } else {
        addr & (u128::MAX << (128 - u32::from(len.min(128))))
    }
}

fn unicast_v4(rng: &mut SplitMix64) -> u32 {
    loop {
        let a = rng.next_u32();
        let first = a >> 24;
        if (1..=223).contains(&first) && first != 10 && first != 127 {
            return a;
        }
    }
}

/// `n` distinct IPv4 routes with a BGP-like prefix-length mix (see the module docs),
/// in random order, deterministic from `seed`.
pub fn bgp_like_v4(n: usize, seed: u64) -> Vec<Route4> {
    let mut rng = SplitMix64::new(seed);
    let mut seen: BTreeSet<(u32, u8)> = BTreeSet::new();
    let mut out = Vec::with_capacity(n);
    for (len, count) in apportion(n, &V4_LENGTHS_PPM, 1_000_000, 24) {
        for _ in 0..count {
            // Short lengths have few distinct prefixes; when a length is full (or
            // collisions persist), move on to the next longer length.
            let mut l = len;
            loop {
                let placed = (0..64).find_map(|_| {
                    let a = mask4(unicast_v4(&mut rng), l);
                    seen.insert((a, l)).then_some(a)
                });
                if let Some(addr) = placed {
                    let nh = rng.below(u64::from(GEN_NEXT_HOPS)) as NextHop;
                    out.push(Route4 { addr, len: l, nh });
                    break;
                }
                if l >= 32 {
                    break;
                }
                l += 1;
            }
        }
    }
    shuffle(&mut out, &mut rng);
    out
}

/// The RIR blocks IPv6 routes are drawn from, as (prefix, length, weight).
const V6_BLOCKS: [(u128, u8, u64); 6] = [
    (0x2001 << 112, 16, 15),
    (0x2400 << 112, 12, 20),
    (0x2600 << 112, 12, 25),
    (0x2800 << 112, 12, 10),
    (0x2a00 << 112, 12, 27),
    (0x2c00 << 112, 12, 3),
];

fn rir_v6(rng: &mut SplitMix64) -> u128 {
    let total: u64 = V6_BLOCKS.iter().map(|b| b.2).sum();
    let mut pick = rng.below(total);
    let mut block = V6_BLOCKS[0];
    for b in V6_BLOCKS {
        if pick < b.2 {
            block = b;
            break;
        }
        pick -= b.2;
    }
    let (base, len, _) = block;
    base | (rng.next_u128() >> len)
}

/// `n` distinct IPv6 routes with a BGP-like prefix-length mix and clustering (see the
/// module docs), in random order, deterministic from `seed`.
pub fn bgp_like_v6(n: usize, seed: u64) -> Vec<Route6> {
    let mut rng = SplitMix64::new(seed);
    let pool: Vec<u128> = (0..(n / 8).max(1))
        .map(|_| mask6(rir_v6(&mut rng), 32))
        .collect();
    let mut seen: BTreeSet<(u128, u8)> = BTreeSet::new();
    let mut out = Vec::with_capacity(n);
    for (len, count) in apportion(n, &V6_LENGTHS_PER_100K, 100_000, 48) {
        for _ in 0..count {
            let mut l = len;
            loop {
                let placed = (0..64).find_map(|_| {
                    let a = if l > 32 || (l == 32 && rng.below(2) == 0) {
                        let parent = pool
                            .get(rng.below(pool.len() as u64) as usize)
                            .copied()
                            .unwrap_or(0);
                        mask6(parent | (rng.next_u128() >> 32), l)
                    } else {
                        mask6(rir_v6(&mut rng), l)
                    };
                    seen.insert((a, l)).then_some(a)
                });
                if let Some(addr) = placed {
                    let nh = rng.below(u64::from(GEN_NEXT_HOPS)) as NextHop;
                    out.push(Route6 { addr, len: l, nh });
                    break;
                }
                if l >= 128 {
                    break;
                }
                l += 1;
            }
        }
    }
    shuffle(&mut out, &mut rng);
    out
}

/// `count` destinations, each uniformly random inside a uniformly chosen route of
/// `routes` (empty when `routes` is empty).
pub fn addrs_in_v4(routes: &[Route4], count: usize, seed: u64) -> Vec<u32> {
    let mut rng = SplitMix64::new(seed);
    if routes.is_empty() {
        return Vec::new();
    }
    (0..count)
        .filter_map(|_| {
            let r = routes.get(rng.below(routes.len() as u64) as usize)?;
            let host = rng.next_u32().checked_shr(u32::from(r.len)).unwrap_or(0);
            Some(r.addr | host)
        })
        .collect()
}

/// `count` destinations, each uniformly random inside a uniformly chosen route of
/// `routes` (empty when `routes` is empty).
pub fn addrs_in_v6(routes: &[Route6], count: usize, seed: u64) -> Vec<u128> {
    let mut rng = SplitMix64::new(seed);
    if routes.is_empty() {
        return Vec::new();
    }
    (0..count)
        .filter_map(|_| {
            let r = routes.get(rng.below(routes.len() as u64) as usize)?;
            let host = rng.next_u128().checked_shr(u32::from(r.len)).unwrap_or(0);
            Some(r.addr | host)
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn mean_len(lens: impl Iterator<Item = u8>) -> f64 {
        let (s, c) = lens.fold((0u64, 0u64), |(s, c), l| (s + u64::from(l), c + 1));
        s as f64 / c as f64
    }

    #[test]
    fn v4_distinct_deterministic_and_bgp_shaped() {
        let n = 200_000;
        let a = bgp_like_v4(n, 1);
        assert_eq!(a.len(), n);
        assert_eq!(a, bgp_like_v4(n, 1));
        assert_ne!(a, bgp_like_v4(n, 2));
        let set: BTreeSet<(u32, u8)> = a.iter().map(|r| (r.addr, r.len)).collect();
        assert_eq!(set.len(), n, "prefixes are distinct");
        for r in &a {
            assert_eq!(r.addr, mask4(r.addr, r.len), "host bits clear");
            assert!((8..=24).contains(&r.len));
            assert!(r.nh < GEN_NEXT_HOPS);
        }
        let m = mean_len(a.iter().map(|r| r.len));
        assert!((m - 22.934).abs() < 0.1, "mean length {m}");
        let share = |l: u8| a.iter().filter(|r| r.len == l).count() as f64 / n as f64;
        assert!((share(24) - 0.6255).abs() < 0.01, "/24 share {}", share(24));
        assert!((share(22) - 0.119).abs() < 0.01);
        assert!((share(23) - 0.100).abs() < 0.01);
    }

    #[test]
    fn v6_distinct_deterministic_and_bgp_shaped() {
        let n = 50_000;
        let a = bgp_like_v6(n, 3);
        assert_eq!(a.len(), n);
        assert_eq!(a, bgp_like_v6(n, 3));
        let set: BTreeSet<(u128, u8)> = a.iter().map(|r| (r.addr, r.len)).collect();
        assert_eq!(set.len(), n);
        for r in &a {
            assert_eq!(r.addr, mask6(r.addr, r.len));
            assert_eq!(r.addr >> 125, 0b001, "global unicast 2000::/3");
        }
        let m = mean_len(a.iter().map(|r| r.len));
        assert!((m - 43.24).abs() < 0.1, "mean length {m}");
    }

    #[test]
    fn small_tables_and_addresses_inside_routes() {
        assert!(bgp_like_v4(0, 1).is_empty());
        let r = bgp_like_v4(16, 9);
        assert_eq!(r.len(), 16);
        let addrs = addrs_in_v4(&r, 1000, 4);
        assert_eq!(addrs.len(), 1000);
        for a in addrs {
            assert!(r.iter().any(|x| mask4(a, x.len) == x.addr));
        }
        let r6 = bgp_like_v6(10, 9);
        for a in addrs_in_v6(&r6, 100, 4) {
            assert!(r6.iter().any(|x| mask6(a, x.len) == x.addr));
        }
        assert!(addrs_in_v4(&[], 10, 1).is_empty());
    }
}
