//! IPv4 longest-prefix match as DIR-24-8 (Gupta, Lin, McKeown, INFOCOM 1998; the
//! layout of DPDK `rte_lpm`).
//!
//! * `tbl24`: 2^24 entries of 4 bytes (64 MiB), indexed by the top 24 bits of the
//!   destination. It is allocated zeroed (`alloc_zeroed`), so the pages a table never
//!   writes cost no memory.
//! * `tbl8`: a configurable number of 256-entry groups. A `tbl24` entry whose /24
//!   holds a route longer than /24 points to a group indexed by the last 8 bits.
//!
//! Entry layout (both tables), 32 bits:
//!
//! ```text
//!  31      30     29..24        23..0
//! VALID | EXT  | depth (0..=32) | next hop (24 bits) or, with EXT, the tbl8 group index
//! ```
//!
//! A zero entry means "no route longer than /0": the lookup then answers the default
//! route's next hop, which is kept beside the tables, so `0.0.0.0/0` writes no entry
//! and a small table with a default route touches a few pages instead of all 64 MiB
//! (the unikernel's memory and boot time depend on it). Each entry records the prefix length (depth) of the
//! route that wrote it. An added route overwrites the entries of its range whose depth
//! is not longer than its own; a deleted route rewrites the entries whose depth equals
//! its own with the longest remaining covering route, found in the per-length rules
//! store (so a /16 deleted under a /24 gives its addresses back to, say, a /8). A
//! tbl8 group whose 256 entries become equal again is folded back into its tbl24 entry
//! and returned to the free list.

use alloc::alloc::{alloc_zeroed, handle_alloc_error, Layout};
use alloc::boxed::Box;
use alloc::collections::BTreeMap;
use alloc::vec;
use alloc::vec::Vec;

use super::{prefetch, LpmError, NextHop, MAX_NEXT_HOP};

const TBL24_LEN: usize = 1 << 24;
const TBL8_GROUP: usize = 256;
const VALID: u32 = 1 << 31;
const EXT: u32 = 1 << 30;
const DEPTH_SHIFT: u32 = 24;
const DEPTH_MASK: u32 = 0x3f;
const DATA_MASK: u32 = (1 << 24) - 1;

/// How many addresses [`Lpm4::lookup_bulk`] prefetches ahead of the one it resolves.
const PREFETCH_AHEAD: usize = 8;

/// Sizing of an [`Lpm4`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Lpm4Config {
    /// Number of 256-entry tbl8 groups (1 KiB each, allocated zeroed so unused groups
    /// cost no memory). Each /24 that holds at least one route longer than /24 uses
    /// one group. At most 2^24.
    pub tbl8_groups: u32,
}

impl Default for Lpm4Config {
    /// 65 536 groups: 64 MiB of address space, touched only as groups are used.
    fn default() -> Self {
        Self {
            tbl8_groups: 1 << 16,
        }
    }
}

#[inline(always)]
fn leaf(nh: NextHop, depth: u8) -> u32 {
    VALID | (u32::from(depth) << DEPTH_SHIFT) | (nh & DATA_MASK)
}

#[inline(always)]
fn depth_of(e: u32) -> u8 {
    // The mask keeps the value below 64, so the cast is lossless.
    ((e >> DEPTH_SHIFT) & DEPTH_MASK) as u8
}

/// Whether an add of a route of length `len` may overwrite entry `e`.
#[inline(always)]
fn overwritable(e: u32, len: u8) -> bool {
    e & VALID == 0 || depth_of(e) <= len
}

/// Whether entry `e` was written by a route of length `len` (and not a group link).
#[inline(always)]
fn owned_by(e: u32, len: u8) -> bool {
    e & VALID != 0 && e & EXT == 0 && depth_of(e) == len
}

#[inline(always)]
fn mask(addr: u32, len: u8) -> u32 {
    match len {
        0 => 0,
        l => addr & (u32::MAX << (32 - u32::from(l.min(32)))),
    }
}

/// An IPv4 DIR-24-8 longest-prefix-match table. See the module docs.
pub struct Lpm4 {
    tbl24: Box<[u32; TBL24_LEN]>,
    tbl8: Vec<u32>,
    tbl8_groups: u32,
    /// Groups `next_fresh..tbl8_groups` have never been used.
    next_fresh: u32,
    free_groups: Vec<u32>,
    /// The rules store: `rules[len]` maps masked prefixes of length `len` to next hops.
    rules: [BTreeMap<u32, NextHop>; 33],
    count: usize,
    /// The next hop of `0.0.0.0/0`. The default route is kept out of the tables: an
    /// empty entry means "the default", so a default route writes nothing and the
    /// 64 MiB tbl24 stays unbacked (zero pages) except where real prefixes are.
    default: Option<NextHop>,
}

impl core::fmt::Debug for Lpm4 {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("Lpm4")
            .field("routes", &self.count)
            .field("tbl8_groups", &self.tbl8_groups)
            .field("tbl8_groups_used", &self.tbl8_groups_used())
            .finish()
    }
}

fn zeroed_tbl24() -> Box<[u32; TBL24_LEN]> {
    let layout = Layout::new::<[u32; TBL24_LEN]>();
    // SAFETY: the layout has a non-zero size (64 MiB).
    let ptr = unsafe { alloc_zeroed(layout) }.cast::<[u32; TBL24_LEN]>();
    if ptr.is_null() {
        handle_alloc_error(layout);
    }
    // SAFETY: `ptr` was just allocated by the global allocator with the layout of
    // `[u32; TBL24_LEN]`, is non-null, and all-zero bytes are a valid `[u32; N]`.
    unsafe { Box::from_raw(ptr) }
}

impl Lpm4 {
    /// An empty table with the default sizing.
    pub fn new() -> Self {
        // The default configuration is valid, so this cannot fail; keep it total anyway.
        Self::build(Lpm4Config::default())
    }

    /// An empty table with `config`. Fails with [`LpmError::InvalidConfig`] when more
    /// than 2^24 tbl8 groups are asked for.
    pub fn with_config(config: Lpm4Config) -> Result<Self, LpmError> {
        if config.tbl8_groups > 1 << 24 {
            return Err(LpmError::InvalidConfig);
        }
        Ok(Self::build(config))
    }

    fn build(config: Lpm4Config) -> Self {
        let groups = config.tbl8_groups.min(1 << 24);
        Self {
            tbl24: zeroed_tbl24(),
            // `vec![0; n]` allocates zeroed memory, so untouched groups stay unbacked.
            tbl8: vec![0u32; groups as usize * TBL8_GROUP],
            tbl8_groups: groups,
            next_fresh: 0,
            free_groups: Vec::new(),
            rules: core::array::from_fn(|_| BTreeMap::new()),
            count: 0,
            default: None,
        }
    }

    /// Number of routes in the table.
    pub fn len(&self) -> usize {
        self.count
    }

    /// Whether the table holds no route.
    pub fn is_empty(&self) -> bool {
        self.count == 0
    }

    /// Configured number of tbl8 groups.
    pub fn tbl8_groups(&self) -> u32 {
        self.tbl8_groups
    }

    /// tbl8 groups currently in use.
    pub fn tbl8_groups_used(&self) -> u32 {
        // `free_groups` only holds groups below `next_fresh`.
        self.next_fresh - self.free_groups.len() as u32
    }

    /// The next hop of the exact route `addr/len`, if present (host bits are ignored).
    pub fn get(&self, addr: u32, len: u8) -> Option<NextHop> {
        self.rules
            .get(usize::from(len))?
            .get(&mask(addr, len))
            .copied()
    }

    /// All routes as `(prefix, len, next hop)`, shortest prefixes first.
    pub fn iter(&self) -> impl Iterator<Item = (u32, u8, NextHop)> + '_ {
        self.rules
            .iter()
            .zip(0u8..)
            .flat_map(|(m, len)| m.iter().map(move |(&a, &nh)| (a, len, nh)))
    }

    /// Longest-prefix match for `addr` (host byte order).
    #[inline]
    pub fn lookup(&self, addr: u32) -> Option<NextHop> {
        let e = self.tbl24[(addr >> 8) as usize];
        let e = if e & EXT != 0 {
            self.tbl8_entry(e, addr)
        } else {
            e
        };
        if e & VALID != 0 {
            Some(e & DATA_MASK)
        } else {
            self.default
        }
    }

    #[inline(always)]
    fn tbl8_entry(&self, link: u32, addr: u32) -> u32 {
        let i = ((link & DATA_MASK) as usize) * TBL8_GROUP + (addr & 0xff) as usize;
        // A link always points inside `tbl8`; a miss would be a table bug and reads as
        // "no route" rather than panicking on the packet path.
        self.tbl8.get(i).copied().unwrap_or(0)
    }

    /// Looks up `addrs[i]` into `out[i]` for every `i` below the shorter length,
    /// prefetching the tbl24 lines of the addresses a few places ahead. This is the
    /// call the router uses on a batch.
    #[inline]
    pub fn lookup_bulk(&self, addrs: &[u32], out: &mut [Option<NextHop>]) {
        for &a in addrs.iter().take(PREFETCH_AHEAD) {
            prefetch(&self.tbl24[(a >> 8) as usize]);
        }
        let ahead = addrs
            .iter()
            .skip(PREFETCH_AHEAD)
            .map(Some)
            .chain(core::iter::repeat(None));
        for ((&a, o), next) in addrs.iter().zip(out.iter_mut()).zip(ahead) {
            if let Some(&n) = next {
                prefetch(&self.tbl24[(n >> 8) as usize]);
            }
            *o = self.lookup(a);
        }
    }

    /// Looks up four addresses at once: the four tbl24 loads are issued together,
    /// then the (rare) tbl8 loads.
    #[inline]
    pub fn lookup_x4(&self, addrs: [u32; 4]) -> [Option<NextHop>; 4] {
        let e = addrs.map(|a| self.tbl24[(a >> 8) as usize]);
        let mut r = [None; 4];
        for ((o, &e), &a) in r.iter_mut().zip(e.iter()).zip(addrs.iter()) {
            let e = if e & EXT != 0 {
                self.tbl8_entry(e, a)
            } else {
                e
            };
            *o = if e & VALID != 0 {
                Some(e & DATA_MASK)
            } else {
                self.default
            };
        }
        r
    }

    fn alloc_group(&mut self) -> Result<u32, LpmError> {
        if let Some(g) = self.free_groups.pop() {
            return Ok(g);
        }
        if self.next_fresh < self.tbl8_groups {
            self.next_fresh += 1;
            return Ok(self.next_fresh - 1);
        }
        Err(LpmError::TableFull(self.tbl8_groups))
    }

    fn group_mut(tbl8: &mut [u32], g: u32) -> &mut [u32] {
        let start = g as usize * TBL8_GROUP;
        tbl8.get_mut(start..start + TBL8_GROUP).unwrap_or(&mut [])
    }

    /// Adds or replaces the route `addr/len -> nh` (host bits of `addr` are ignored).
    /// Returns the next hop it replaced, if the exact route existed.
    pub fn add(&mut self, addr: u32, len: u8, nh: NextHop) -> Result<Option<NextHop>, LpmError> {
        if len > 32 {
            return Err(LpmError::InvalidPrefixLength(len));
        }
        if nh > MAX_NEXT_HOP {
            return Err(LpmError::NextHopTooLarge(nh));
        }
        let addr = mask(addr, len);
        let new = leaf(nh, len);
        if len == 0 {
            self.default = Some(nh);
        } else if len <= 24 {
            let start = (addr >> 8) as usize;
            let end = start + (1usize << (24 - len));
            let tbl8 = &mut self.tbl8;
            for e in self.tbl24.get_mut(start..end).unwrap_or(&mut []) {
                if *e & EXT != 0 {
                    for x in Self::group_mut(tbl8, *e & DATA_MASK) {
                        if overwritable(*x, len) {
                            *x = new;
                        }
                    }
                } else if overwritable(*e, len) {
                    *e = new;
                }
            }
        } else {
            let i24 = (addr >> 8) as usize;
            let e = self.tbl24[i24];
            let g = if e & EXT != 0 {
                e & DATA_MASK
            } else {
                let g = self.alloc_group()?;
                Self::group_mut(&mut self.tbl8, g).fill(e);
                g
            };
            let lo = (addr & 0xff) as usize;
            let group = Self::group_mut(&mut self.tbl8, g);
            for x in group
                .get_mut(lo..lo + (1usize << (32 - len)))
                .unwrap_or(&mut [])
            {
                if overwritable(*x, len) {
                    *x = new;
                }
            }
            self.tbl24[i24] = EXT | g;
        }
        let old = self.rules[usize::from(len)].insert(addr, nh);
        if old.is_none() {
            self.count += 1;
        }
        Ok(old)
    }

    /// The longest route strictly shorter than `len` (and not the default route, which
    /// lives outside the tables) covering `addr`, as an entry; 0 (empty) if none.
    fn cover_entry(&self, addr: u32, len: u8) -> u32 {
        (1..len)
            .rev()
            .find_map(|l| {
                self.rules[usize::from(l)]
                    .get(&mask(addr, l))
                    .map(|&nh| leaf(nh, l))
            })
            .unwrap_or(0)
    }

    /// Deletes the exact route `addr/len` and returns its next hop. Addresses it
    /// covered fall back to the longest remaining covering route.
    pub fn delete(&mut self, addr: u32, len: u8) -> Result<NextHop, LpmError> {
        if len > 32 {
            return Err(LpmError::InvalidPrefixLength(len));
        }
        let addr = mask(addr, len);
        let nh = self.rules[usize::from(len)]
            .remove(&addr)
            .ok_or(LpmError::NotFound)?;
        self.count -= 1;
        let repl = self.cover_entry(addr, len);
        if len == 0 {
            self.default = None;
        } else if len <= 24 {
            let start = (addr >> 8) as usize;
            let end = start + (1usize << (24 - len));
            let tbl8 = &mut self.tbl8;
            for e in self.tbl24.get_mut(start..end).unwrap_or(&mut []) {
                if *e & EXT != 0 {
                    for x in Self::group_mut(tbl8, *e & DATA_MASK) {
                        if owned_by(*x, len) {
                            *x = repl;
                        }
                    }
                } else if owned_by(*e, len) {
                    *e = repl;
                }
            }
        } else {
            let i24 = (addr >> 8) as usize;
            let e = self.tbl24[i24];
            if e & EXT != 0 {
                let g = e & DATA_MASK;
                let lo = (addr & 0xff) as usize;
                let group = Self::group_mut(&mut self.tbl8, g);
                for x in group
                    .get_mut(lo..lo + (1usize << (32 - len)))
                    .unwrap_or(&mut [])
                {
                    if owned_by(*x, len) {
                        *x = repl;
                    }
                }
                // Fold the group back when no route longer than /24 remains in it:
                // then all 256 entries hold the same covering route (or nothing).
                // Equal entries of a longer depth are routes that tile the group (two
                // /25s with one next hop): they stay, or `delete` could not find them.
                if let Some((&first, rest)) = group.split_first() {
                    if (first & VALID == 0 || depth_of(first) <= 24)
                        && rest.iter().all(|&x| x == first)
                    {
                        self.tbl24[i24] = first;
                        self.free_groups.push(g);
                    }
                }
            }
        }
        Ok(nh)
    }

    /// Removes every route (tbl8 groups are all returned).
    pub fn clear(&mut self) {
        let routes: Vec<(u32, u8)> = self.iter().map(|(a, l, _)| (a, l)).collect();
        for (a, l) in routes.into_iter().rev() {
            // Every listed route exists, so delete cannot fail.
            let _ = self.delete(a, l);
        }
    }
}

impl Default for Lpm4 {
    fn default() -> Self {
        Self::new()
    }
}

impl Clone for Lpm4 {
    /// A deep copy (e.g. a per-core table). The tbl24 is copied heap to heap; a derived
    /// clone would build the 64 MiB array on the stack.
    fn clone(&self) -> Self {
        let mut tbl24 = zeroed_tbl24();
        tbl24.copy_from_slice(&self.tbl24[..]);
        Self {
            tbl24,
            tbl8: self.tbl8.clone(),
            tbl8_groups: self.tbl8_groups,
            next_fresh: self.next_fresh,
            free_groups: self.free_groups.clone(),
            rules: self.rules.clone(),
            count: self.count,
            default: self.default,
        }
    }
}

#[cfg(test)]
mod tests {
    extern crate std;
    use super::*;
    use crate::lpm::gen::SplitMix64;
    use proptest::prelude::*;
    use std::vec::Vec;

    fn ip(a: u8, b: u8, c: u8, d: u8) -> u32 {
        u32::from_be_bytes([a, b, c, d])
    }

    /// The naive reference: a list of routes, longest match by scanning.
    #[derive(Default)]
    struct Naive(Vec<(u32, u8, NextHop)>);

    impl Naive {
        fn add(&mut self, a: u32, l: u8, nh: NextHop) {
            let a = mask(a, l);
            self.0.retain(|&(x, y, _)| !(x == a && y == l));
            self.0.push((a, l, nh));
        }
        fn delete(&mut self, a: u32, l: u8) -> bool {
            let a = mask(a, l);
            let n = self.0.len();
            self.0.retain(|&(x, y, _)| !(x == a && y == l));
            n != self.0.len()
        }
        fn lookup(&self, ip: u32) -> Option<NextHop> {
            self.0
                .iter()
                .filter(|&&(a, l, _)| mask(ip, l) == a)
                .max_by_key(|&&(_, l, _)| l)
                .map(|&(_, _, nh)| nh)
        }
    }

    /// Regression: two /25s with one next hop fill a tbl8 group with equal entries;
    /// deleting a deeper route used to fold the group into tbl24, where `delete` of a
    /// /25 no longer finds it, so the deleted /25 kept answering lookups.
    #[test]
    fn same_next_hop_halves_keep_their_group() {
        let mut t = Lpm4::new();
        t.add(ip(10, 0, 1, 0), 25, 1).unwrap();
        t.add(ip(10, 0, 1, 128), 25, 1).unwrap();
        t.add(ip(10, 0, 1, 0), 26, 2).unwrap();
        assert_eq!(t.delete(ip(10, 0, 1, 0), 26), Ok(2));
        assert_eq!(t.tbl8_groups_used(), 1);
        assert_eq!(t.delete(ip(10, 0, 1, 0), 25), Ok(1));
        assert_eq!(t.lookup(ip(10, 0, 1, 1)), None);
        assert_eq!(t.lookup(ip(10, 0, 1, 129)), Some(1));
        assert_eq!(t.delete(ip(10, 0, 1, 128), 25), Ok(1));
        assert_eq!(t.lookup(ip(10, 0, 1, 129)), None);
        assert_eq!(t.tbl8_groups_used(), 0);
    }

    #[test]
    fn basic_longest_match_and_delete_restores_cover() {
        let mut t = Lpm4::new();
        t.add(ip(10, 0, 0, 0), 8, 1).unwrap();
        t.add(ip(10, 1, 0, 0), 16, 2).unwrap();
        t.add(ip(10, 1, 2, 0), 24, 3).unwrap();
        t.add(ip(10, 1, 2, 128), 25, 4).unwrap();
        t.add(ip(10, 1, 2, 130), 32, 5).unwrap();
        assert_eq!(t.lookup(ip(10, 9, 9, 9)), Some(1));
        assert_eq!(t.lookup(ip(10, 1, 9, 9)), Some(2));
        assert_eq!(t.lookup(ip(10, 1, 2, 1)), Some(3));
        assert_eq!(t.lookup(ip(10, 1, 2, 129)), Some(4));
        assert_eq!(t.lookup(ip(10, 1, 2, 130)), Some(5));
        assert_eq!(t.lookup(ip(11, 0, 0, 0)), None);
        assert_eq!(t.tbl8_groups_used(), 1);
        // Delete the /16 under which the /24 lives: /8 covers again, /24 untouched.
        assert_eq!(t.delete(ip(10, 1, 0, 0), 16), Ok(2));
        assert_eq!(t.lookup(ip(10, 1, 9, 9)), Some(1));
        assert_eq!(t.lookup(ip(10, 1, 2, 1)), Some(3));
        // Delete the /24 while longer routes live in its group.
        assert_eq!(t.delete(ip(10, 1, 2, 0), 24), Ok(3));
        assert_eq!(t.lookup(ip(10, 1, 2, 1)), Some(1));
        assert_eq!(t.lookup(ip(10, 1, 2, 129)), Some(4));
        assert_eq!(t.delete(ip(10, 1, 2, 128), 25), Ok(4));
        assert_eq!(t.lookup(ip(10, 1, 2, 129)), Some(1));
        assert_eq!(t.lookup(ip(10, 1, 2, 130)), Some(5));
        assert_eq!(t.delete(ip(10, 1, 2, 130), 32), Ok(5));
        // The group was folded back and freed.
        assert_eq!(t.tbl8_groups_used(), 0);
        assert_eq!(t.lookup(ip(10, 1, 2, 130)), Some(1));
        assert_eq!(t.delete(ip(10, 1, 2, 130), 32), Err(LpmError::NotFound));
        assert_eq!(t.len(), 1);
    }

    #[test]
    fn replace_default_route_and_errors() {
        let mut t = Lpm4::new();
        assert_eq!(t.add(0, 0, 7), Ok(None));
        assert_eq!(t.lookup(ip(1, 2, 3, 4)), Some(7));
        assert_eq!(t.add(0, 0, 8), Ok(Some(7)));
        assert_eq!(t.lookup(ip(255, 2, 3, 4)), Some(8));
        // Host bits are ignored.
        assert_eq!(t.add(ip(192, 168, 1, 77), 24, 9), Ok(None));
        assert_eq!(t.get(ip(192, 168, 1, 0), 24), Some(9));
        assert_eq!(t.add(1, 33, 1), Err(LpmError::InvalidPrefixLength(33)));
        assert_eq!(
            t.add(1, 8, 1 << 24),
            Err(LpmError::NextHopTooLarge(1 << 24))
        );
        assert_eq!(t.delete(0, 0), Ok(8));
        assert_eq!(t.lookup(ip(1, 2, 3, 4)), None);
        assert_eq!(t.lookup(ip(192, 168, 1, 4)), Some(9));
        assert_eq!(t.add(0, 0, MAX_NEXT_HOP), Ok(None));
        assert_eq!(t.lookup(ip(1, 2, 3, 4)), Some(MAX_NEXT_HOP));
    }

    #[test]
    fn default_route_writes_no_entry() {
        let mut t = Lpm4::new();
        t.add(0, 0, 5).unwrap();
        assert!(
            t.tbl24.iter().all(|&e| e == 0),
            "the default route wrote tbl24"
        );
        // A /25 under the default: its group holds the /25 and empty entries.
        t.add(ip(10, 1, 1, 128), 25, 6).unwrap();
        t.add(ip(10, 0, 0, 0), 8, 7).unwrap();
        assert_eq!(t.lookup(ip(10, 1, 1, 200)), Some(6));
        assert_eq!(t.lookup(ip(10, 1, 1, 1)), Some(7));
        assert_eq!(t.lookup(ip(11, 1, 1, 1)), Some(5));
        t.delete(ip(10, 0, 0, 0), 8).unwrap();
        assert_eq!(t.lookup(ip(10, 1, 1, 1)), Some(5));
        t.delete(ip(10, 1, 1, 128), 25).unwrap();
        assert_eq!(t.tbl8_groups_used(), 0);
        assert_eq!(t.lookup(ip(10, 1, 1, 200)), Some(5));
        assert!(t.tbl24.iter().all(|&e| e == 0), "entries left behind");
        assert_eq!(t.lookup_x4([0, ip(10, 1, 1, 200), 1, 2]), [Some(5); 4]);
        t.delete(0, 0).unwrap();
        assert_eq!(t.lookup(ip(11, 1, 1, 1)), None);
        assert!(t.clone().lookup(1).is_none());
    }

    #[test]
    fn tbl8_exhaustion_is_an_error_and_leaves_table_intact() {
        let mut t = Lpm4::with_config(Lpm4Config { tbl8_groups: 2 }).unwrap();
        t.add(ip(1, 0, 0, 1), 32, 1).unwrap();
        t.add(ip(1, 0, 1, 1), 32, 2).unwrap();
        // Same /24 as an existing group: no new group needed.
        t.add(ip(1, 0, 1, 2), 32, 3).unwrap();
        assert_eq!(t.add(ip(1, 0, 2, 1), 32, 4), Err(LpmError::TableFull(2)));
        assert_eq!(t.lookup(ip(1, 0, 2, 1)), None);
        assert_eq!(t.len(), 3);
        // Freeing a group makes room again.
        t.delete(ip(1, 0, 0, 1), 32).unwrap();
        assert_eq!(t.add(ip(1, 0, 2, 1), 32, 4), Ok(None));
        assert_eq!(t.lookup(ip(1, 0, 2, 1)), Some(4));
        assert!(Lpm4::with_config(Lpm4Config {
            tbl8_groups: (1 << 24) + 1
        })
        .is_err());
    }

    #[test]
    fn bulk_and_x4_agree_with_single() {
        let mut t = Lpm4::new();
        let mut rng = SplitMix64::new(5);
        for _ in 0..500 {
            let a = rng.next_u32();
            let l = (rng.next_u32() % 33) as u8;
            t.add(a, l, rng.next_u32() & 0xffff).unwrap();
        }
        let addrs: Vec<u32> = (0..1000).map(|_| rng.next_u32()).collect();
        let mut out = vec![None; addrs.len()];
        t.lookup_bulk(&addrs, &mut out);
        for (a, o) in addrs.iter().zip(out.iter()) {
            assert_eq!(*o, t.lookup(*a));
        }
        for c in addrs.chunks_exact(4) {
            let r = t.lookup_x4([c[0], c[1], c[2], c[3]]);
            for (a, o) in c.iter().zip(r.iter()) {
                assert_eq!(*o, t.lookup(*a));
            }
        }
        // A clone answers the same and is independent of the original.
        let mut c = t.clone();
        for &a in addrs.iter().take(200) {
            assert_eq!(c.lookup(a), t.lookup(a));
        }
        c.add(addrs[0], 32, 77_777).unwrap();
        assert_eq!(c.lookup(addrs[0]), Some(77_777));
        assert_ne!(t.lookup(addrs[0]), Some(77_777));
        // Mismatched lengths: only the common part is written.
        let mut short = vec![Some(99); 3];
        t.lookup_bulk(&addrs, &mut short);
        assert_eq!(short[2], t.lookup(addrs[2]));
    }

    #[derive(Debug, Clone)]
    enum Op {
        Add(u32, u8, NextHop),
        Del(usize),
    }

    /// Addresses clustered in a few /16s so routes nest and share tbl8 groups.
    fn addr_strategy() -> impl Strategy<Value = u32> {
        (0u32..4, any::<u16>()).prop_map(|(hi, lo)| (0x0a00_0000 | hi << 16) | u32::from(lo))
    }

    /// Mostly lengths that stay inside the clustered /14 (cheap in debug builds), with
    /// the occasional short route covering all of them, and the default route (kept
    /// outside the tables, so as cheap as any other).
    fn len_strategy() -> impl Strategy<Value = u8> {
        prop_oneof![1 => Just(0u8), 1 => 6u8..14, 15 => 14u8..=32]
    }

    fn op_strategy() -> impl Strategy<Value = Op> {
        prop_oneof![
            3 => (addr_strategy(), len_strategy(), 0u32..64).prop_map(|(a, l, nh)| Op::Add(a, l, nh)),
            1 => any::<usize>().prop_map(Op::Del),
        ]
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(48))]
        #[test]
        fn matches_naive_reference(ops in proptest::collection::vec(op_strategy(), 1..120),
                                   probes in proptest::collection::vec(addr_strategy(), 64)) {
            let mut t = Lpm4::with_config(Lpm4Config { tbl8_groups: 64 }).unwrap();
            let mut n = Naive::default();
            for op in ops {
                match op {
                    Op::Add(a, l, nh) => {
                        prop_assert!(t.add(a, l, nh).is_ok());
                        n.add(a, l, nh);
                    }
                    Op::Del(i) => {
                        if n.0.is_empty() { continue; }
                        let (a, l, nh) = n.0[i % n.0.len()];
                        prop_assert_eq!(t.delete(a, l), Ok(nh));
                        prop_assert!(n.delete(a, l));
                    }
                }
                for &p in probes.iter().take(8) {
                    prop_assert_eq!(t.lookup(p), n.lookup(p));
                }
            }
            prop_assert_eq!(t.len(), n.0.len());
            for &p in &probes {
                prop_assert_eq!(t.lookup(p), n.lookup(p));
            }
            // Probe every route's edges too.
            for &(a, l, _) in &n.0 {
                let last = a | (u32::MAX.checked_shr(u32::from(l)).unwrap_or(0));
                for p in [a, last, a.wrapping_sub(1), last.wrapping_add(1)] {
                    prop_assert_eq!(t.lookup(p), n.lookup(p));
                }
            }
            // Deleting everything returns every group.
            t.clear();
            prop_assert_eq!(t.tbl8_groups_used(), 0);
            prop_assert!(t.is_empty());
            for &p in &probes {
                prop_assert_eq!(t.lookup(p), None);
            }
        }
    }

    #[test]
    fn random_table_against_reference_with_delete_readd() {
        let mut rng = SplitMix64::new(42);
        let mut t = Lpm4::new();
        let mut n = Naive::default();
        let mut routes = vec![(0, 0)];
        t.add(0, 0, 4242).unwrap();
        n.add(0, 0, 4242);
        for _ in 0..2000 {
            // Bias toward nesting: a handful of /8s.
            let a = (rng.next_u32() & 0x03ff_ffff) | 0x2000_0000;
            let l = [8u8, 12, 16, 20, 22, 24, 24, 25, 28, 32][(rng.next_u32() % 10) as usize];
            let nh = rng.next_u32() % 1000;
            t.add(a, l, nh).unwrap();
            n.add(a, l, nh);
            routes.push((a, l));
        }
        let check = |t: &Lpm4, n: &Naive, rng: &mut SplitMix64| {
            for _ in 0..3000 {
                let p = (rng.next_u32() & 0x03ff_ffff) | 0x2000_0000;
                assert_eq!(t.lookup(p), n.lookup(p), "addr {p:#x}");
            }
        };
        check(&t, &n, &mut rng);
        // Delete half, check, re-add them with other next hops, check.
        for &(a, l) in routes.iter().step_by(2) {
            let in_ref = n.delete(a, l);
            assert_eq!(t.delete(a, l).is_ok(), in_ref);
        }
        check(&t, &n, &mut rng);
        for &(a, l) in routes.iter().step_by(2) {
            t.add(a, l, 5000 + u32::from(l)).unwrap();
            n.add(a, l, 5000 + u32::from(l));
        }
        check(&t, &n, &mut rng);
        assert_eq!(t.len(), n.0.len());
    }

    /// A full-size table: 1M BGP-like prefixes, checked on a sample of destinations
    /// against per-length hash maps of the generated routes.
    #[test]
    fn one_million_bgp_like_prefixes() {
        use std::collections::HashMap;
        let n = 1_000_000;
        let routes = crate::lpm::gen::bgp_like_v4(n, 2024);
        let mut t = Lpm4::new();
        let mut by_len: Vec<HashMap<u32, NextHop>> = (0..=32).map(|_| HashMap::new()).collect();
        for r in &routes {
            assert_eq!(t.add(r.addr, r.len, r.nh), Ok(None));
            by_len[usize::from(r.len)].insert(r.addr, r.nh);
        }
        assert_eq!(t.len(), n);
        let reference = |a: u32| {
            (0..=32u8)
                .rev()
                .find_map(|l| by_len[usize::from(l)].get(&mask(a, l)).copied())
        };
        let mut rng = SplitMix64::new(7);
        let mut probes: Vec<u32> = crate::lpm::gen::addrs_in_v4(&routes, 20_000, 8);
        probes.extend((0..20_000).map(|_| rng.next_u32()));
        let mut out = vec![None; probes.len()];
        t.lookup_bulk(&probes, &mut out);
        for (&a, &o) in probes.iter().zip(out.iter()) {
            assert_eq!(o, reference(a), "addr {a:#x}");
        }
        assert!(out.iter().take(20_000).all(|o| o.is_some()));
    }
}
