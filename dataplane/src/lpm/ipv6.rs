//! IPv6 longest-prefix match: a 16-8-8-…-8 multibit trie with compressed nodes.
//!
//! The stride plan is that of DPDK's `rte_lpm6` (a first level indexed by the leading
//! bits, then 8-bit levels), here with a 16-bit root: 65 536 slots, then up to
//! fourteen 8-bit levels for a /128. Routes are expanded into the slots of the level
//! where they end ("controlled prefix expansion", Srinivasan and Varghese, SIGMETRICS
//! 1998), and each slot remembers the length of the route that wrote it, so updates
//! follow the same rules as the IPv4 DIR-24-8 table: an added route overwrites the
//! slots of its range whose route is not longer, a deleted route hands its slots to
//! the longest remaining covering route found in the per-length rules store.
//!
//! An 8-bit node is stored compressed: its 256 slots form runs of equal values, a
//! 256-bit bitmap marks where each run starts and the runs are stored once, in order.
//! A lookup finds a slot's run by a popcount of the bitmap bits up to it (the
//! leaf-vector compression of Asai and Ohara, "Poptrie", SIGCOMM 2015). A node that
//! holds one more-specific route costs a few runs instead of 256 slots, which keeps a
//! 200k-prefix BGP table in tens of MiB. Updates expand the nodes on their path,
//! change them and compress them again; a node left with one run of nothing or of a
//! route that covers it whole is folded into its parent slot and recycled (a run of
//! longer routes that tile the node stays a node, so `delete` still finds them there).
//!
//! Addresses are `u128` in network bit order (`u128::from(Ipv6Addr)`).

use alloc::boxed::Box;
use alloc::collections::BTreeMap;
use alloc::vec;
use alloc::vec::Vec;

use super::{prefetch, LpmError, NextHop, MAX_NEXT_HOP};

const ROOT_BITS: u32 = 16;
const STRIDE: u32 = 8;
const FANOUT: usize = 1 << STRIDE;
/// Lookups [`Lpm6::lookup_bulk`] walks down the trie together.
const LANES: usize = 8;

/// Sizing of an [`Lpm6`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Lpm6Config {
    /// Maximum number of 8-bit trie nodes. Nodes are allocated as needed (about 50
    /// bytes plus 8 per run each); a BGP-like table needs about 1.5 nodes per route.
    pub max_nodes: u32,
}

impl Default for Lpm6Config {
    /// 2^22 nodes: room for well over a million BGP-like routes.
    fn default() -> Self {
        Self { max_nodes: 1 << 22 }
    }
}

/// One slot of the root or of an expanded node.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
enum Slot {
    #[default]
    Empty,
    /// The route of length `depth` that covers this slot best.
    Leaf { nh: NextHop, depth: u8 },
    /// The slot is refined by the node with this index.
    Child(u32),
}

/// A compressed 8-bit node: bit `i` of `bitmap` (word `i / 64`, bit `i % 64`) is set
/// when slot `i` starts a new run; `runs` holds one value per run, in order. Aligned
/// so a node's header is one cache line.
#[derive(Debug, Clone)]
#[repr(align(64))]
struct Node {
    bitmap: [u64; 4],
    /// `before[w]`: set bits in the bitmap words before word `w`.
    before: [u16; 4],
    runs: Box<[Slot]>,
}

impl Node {
    fn uniform(s: Slot) -> Self {
        Self {
            bitmap: [1, 0, 0, 0],
            before: [0, 1, 1, 1],
            runs: Box::new([s]),
        }
    }

    /// The index in `runs` of the run holding slot `b`: one popcount (a software
    /// sequence on baseline x86_64, which lacks POPCNT) plus a stored prefix count.
    #[inline(always)]
    fn rank(&self, b: u8) -> usize {
        let w = usize::from(b >> 6);
        let bits = self.bitmap[w] & (u64::MAX >> (63 - (b & 63)));
        let count = u32::from(self.before[w]) + bits.count_ones();
        // Bit 0 is always set, so count >= 1 for a well-formed node; a malformed one
        // yields an out-of-range index, which `get` reads as empty.
        count.wrapping_sub(1) as usize
    }

    #[inline(always)]
    fn get(&self, b: u8) -> Slot {
        self.runs.get(self.rank(b)).copied().unwrap_or(Slot::Empty)
    }

    fn expand(&self) -> [Slot; FANOUT] {
        let mut out = [Slot::Empty; FANOUT];
        let mut run = 0usize;
        let mut cur = Slot::Empty;
        for (i, o) in out.iter_mut().enumerate() {
            if self.bitmap[i >> 6] & (1 << (i & 63)) != 0 {
                cur = self.runs.get(run).copied().unwrap_or(Slot::Empty);
                run += 1;
            }
            *o = cur;
        }
        out
    }

    fn compress(slots: &[Slot; FANOUT]) -> Self {
        let mut bitmap = [0u64; 4];
        let mut runs = Vec::new();
        let mut prev = None;
        for (i, &s) in slots.iter().enumerate() {
            if prev != Some(s) {
                bitmap[i >> 6] |= 1 << (i & 63);
                runs.push(s);
                prev = Some(s);
            }
        }
        let mut before = [0u16; 4];
        let mut acc = 0u16;
        for (b, w) in before.iter_mut().zip(bitmap) {
            *b = acc;
            acc += w.count_ones() as u16;
        }
        Self {
            bitmap,
            before,
            runs: runs.into_boxed_slice(),
        }
    }

    /// The value this node, at the level of bits `s..s + 8`, folds into in its parent
    /// slot: its single run, when that is nothing or a route of length `s` or less (a
    /// route that covers the whole node).
    ///
    /// A single run of a longer route does not fold: several routes that end in this
    /// node or below it with the same next hop and length can tile it (the two /33s
    /// of a node at bit 32, say). Routes are found by the level where they end, so
    /// folding them into the parent would hide them from `delete`, leaving a stale
    /// leaf and the nodes above it behind.
    fn foldable(&self, s: u32) -> Option<Slot> {
        match *self.runs {
            [v @ Slot::Empty] => Some(v),
            [v @ Slot::Leaf { depth, .. }] if u32::from(depth) <= s => Some(v),
            _ => None,
        }
    }
}

/// The node arena with a free list.
#[derive(Clone)]
struct Arena {
    nodes: Vec<Node>,
    free: Vec<u32>,
    max: u32,
}

impl Arena {
    fn live(&self) -> u32 {
        (self.nodes.len() - self.free.len()) as u32
    }

    fn alloc(&mut self, n: Node) -> Result<u32, LpmError> {
        if self.live() >= self.max {
            return Err(LpmError::TableFull(self.max));
        }
        if let Some(i) = self.free.pop() {
            if let Some(slot) = self.nodes.get_mut(i as usize) {
                *slot = n;
                return Ok(i);
            }
        }
        self.nodes.push(n);
        Ok((self.nodes.len() - 1) as u32)
    }

    fn release(&mut self, i: u32) {
        if let Some(n) = self.nodes.get_mut(i as usize) {
            *n = Node::uniform(Slot::Empty);
            self.free.push(i);
        }
    }

    fn expand(&self, i: u32) -> [Slot; FANOUT] {
        self.nodes
            .get(i as usize)
            .map_or([Slot::Empty; FANOUT], Node::expand)
    }

    fn store(&mut self, i: u32, slots: &[Slot; FANOUT]) {
        if let Some(n) = self.nodes.get_mut(i as usize) {
            *n = Node::compress(slots);
        }
    }

    /// Replace a child slot by its node's value when the node, at the level of bits
    /// `s..s + 8`, is [`Node::foldable`].
    fn fold(&mut self, slot: &mut Slot, s: u32) {
        if let Slot::Child(c) = *slot {
            if let Some(v) = self.nodes.get(c as usize).and_then(|n| n.foldable(s)) {
                *slot = v;
                self.release(c);
            }
        }
    }

    /// Put back the runs of node `c` after an in-place edit; compress again when the
    /// edit made neighbouring runs equal.
    fn put_runs(&mut self, c: u32, runs: Box<[Slot]>, changed: bool) {
        let Some(node) = self.nodes.get_mut(c as usize) else {
            return;
        };
        node.runs = runs;
        if changed && node.runs.windows(2).any(|w| w[0] == w[1]) {
            let exp = node.expand();
            *node = Node::compress(&exp);
        }
    }

    fn take_runs(&mut self, c: u32) -> Box<[Slot]> {
        self.nodes
            .get_mut(c as usize)
            .map(|n| core::mem::take(&mut n.runs))
            .unwrap_or_default()
    }

    fn child_at(&self, c: u32, b: u8) -> Option<u32> {
        match self.nodes.get(c as usize)?.get(b) {
            Slot::Child(g) => Some(g),
            _ => None,
        }
    }

    /// Add `addr/len -> nh` to the slots of a level starting at bit `s`, `w` bits wide
    /// (the root, or an expanded node).
    #[allow(clippy::too_many_arguments)]
    fn insert_in(
        &mut self,
        slots: &mut [Slot],
        s: u32,
        w: u32,
        addr: u128,
        len: u8,
        nh: NextHop,
    ) -> Result<(), LpmError> {
        let d = u32::from(len);
        let idx = ((addr << s) >> (128 - w)) as usize;
        if d <= s + w {
            let span = 1usize << (s + w - d);
            let start = idx & !(span - 1);
            for slot in slots.get_mut(start..start + span).unwrap_or(&mut []) {
                match *slot {
                    Slot::Child(c) => self.cover_node(c, len, nh),
                    Slot::Leaf { depth, .. } if depth > len => {}
                    _ => *slot = Slot::Leaf { nh, depth: len },
                }
            }
            return Ok(());
        }
        let Some(slot) = slots.get_mut(idx) else {
            return Ok(());
        };
        let child = match *slot {
            Slot::Child(c) => c,
            other => {
                let c = self.alloc(Node::uniform(other))?;
                *slot = Slot::Child(c);
                c
            }
        };
        self.insert_node(child, s + w, addr, len, nh)
    }

    /// Add a route that ends in node `c` (covering bits `s..s + 8`) or below it. Passes
    /// through an existing child without touching `c`.
    fn insert_node(
        &mut self,
        c: u32,
        s: u32,
        addr: u128,
        len: u8,
        nh: NextHop,
    ) -> Result<(), LpmError> {
        let b = ((addr << s) >> (128 - STRIDE)) as u8;
        if u32::from(len) > s + STRIDE {
            if let Some(g) = self.child_at(c, b) {
                return self.insert_node(g, s + STRIDE, addr, len, nh);
            }
        }
        let mut exp = self.expand(c);
        let r = self.insert_in(&mut exp, s, STRIDE, addr, len, nh);
        self.store(c, &exp);
        r
    }

    /// A route of length `len` that covers node `c` entirely: it takes every slot whose
    /// route is not longer. Edits the runs in place.
    fn cover_node(&mut self, c: u32, len: u8, nh: NextHop) {
        let mut runs = self.take_runs(c);
        let mut changed = false;
        for slot in runs.iter_mut() {
            match *slot {
                Slot::Child(g) => self.cover_node(g, len, nh),
                Slot::Leaf { depth, .. } if depth > len => {}
                _ => {
                    *slot = Slot::Leaf { nh, depth: len };
                    changed = true;
                }
            }
        }
        self.put_runs(c, runs, changed);
    }

    /// Hand the slots of route `addr/len` to `repl` in a level at bit `s`, `w` wide
    /// (the root, or an expanded node).
    fn delete_in(&mut self, slots: &mut [Slot], s: u32, w: u32, addr: u128, len: u8, repl: Slot) {
        let d = u32::from(len);
        let idx = ((addr << s) >> (128 - w)) as usize;
        if d <= s + w {
            let span = 1usize << (s + w - d);
            let start = idx & !(span - 1);
            for slot in slots.get_mut(start..start + span).unwrap_or(&mut []) {
                match *slot {
                    Slot::Child(c) => {
                        self.uncover_node(c, s + w, len, repl);
                        self.fold(slot, s + w);
                    }
                    Slot::Leaf { depth, .. } if depth == len => *slot = repl,
                    _ => {}
                }
            }
            return;
        }
        let Some(slot) = slots.get_mut(idx) else {
            return;
        };
        if let Slot::Child(c) = *slot {
            self.delete_node(c, s + w, addr, len, repl);
            self.fold(slot, s + w);
        }
    }

    /// Delete a route that ends in node `c` (covering bits `s..s + 8`) or below it.
    fn delete_node(&mut self, c: u32, s: u32, addr: u128, len: u8, repl: Slot) {
        let b = ((addr << s) >> (128 - STRIDE)) as u8;
        if u32::from(len) > s + STRIDE {
            // The route lies below the child at `b` (a route that long always made one).
            if let Some(g) = self.child_at(c, b) {
                self.delete_node(g, s + STRIDE, addr, len, repl);
                let folded = self
                    .nodes
                    .get(g as usize)
                    .and_then(|n| n.foldable(s + STRIDE));
                if let Some(v) = folded {
                    let mut exp = self.expand(c);
                    exp[usize::from(b)] = v;
                    self.release(g);
                    self.store(c, &exp);
                }
            }
            return;
        }
        let mut exp = self.expand(c);
        self.delete_in(&mut exp, s, STRIDE, addr, len, repl);
        self.store(c, &exp);
    }

    /// A deleted route of length `len` covered node `c` (covering bits `s..s + 8`)
    /// entirely: its slots go to `repl`. Edits the runs in place.
    fn uncover_node(&mut self, c: u32, s: u32, len: u8, repl: Slot) {
        let mut runs = self.take_runs(c);
        let mut changed = false;
        for slot in runs.iter_mut() {
            match *slot {
                Slot::Child(g) => {
                    self.uncover_node(g, s + STRIDE, len, repl);
                    let before = *slot;
                    self.fold(slot, s + STRIDE);
                    changed |= *slot != before;
                }
                Slot::Leaf { depth, .. } if depth == len => {
                    *slot = repl;
                    changed = true;
                }
                _ => {}
            }
        }
        self.put_runs(c, runs, changed);
    }
}

fn mask(addr: u128, len: u8) -> u128 {
    match len {
        0 => 0,
        l => addr & (u128::MAX << (128 - u32::from(l.min(128)))),
    }
}

/// An IPv6 longest-prefix-match table. See the module docs. `Clone` makes a deep copy
/// (e.g. a per-core table).
#[derive(Clone)]
pub struct Lpm6 {
    root: Box<[Slot]>,
    arena: Arena,
    /// The rules store: `rules[len]` maps masked prefixes of length `len` to next hops.
    rules: Vec<BTreeMap<u128, NextHop>>,
    count: usize,
}

impl core::fmt::Debug for Lpm6 {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("Lpm6")
            .field("routes", &self.count)
            .field("nodes", &self.nodes_used())
            .field("memory_bytes", &self.memory_bytes())
            .finish()
    }
}

impl Lpm6 {
    /// An empty table with the default sizing.
    pub fn new() -> Self {
        Self::with_config(Lpm6Config::default())
    }

    /// An empty table with `config`.
    pub fn with_config(config: Lpm6Config) -> Self {
        Self {
            root: vec![Slot::Empty; 1 << ROOT_BITS].into_boxed_slice(),
            arena: Arena {
                nodes: Vec::new(),
                free: Vec::new(),
                max: config.max_nodes,
            },
            rules: (0..=128).map(|_| BTreeMap::new()).collect(),
            count: 0,
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

    /// Trie nodes in use.
    pub fn nodes_used(&self) -> u32 {
        self.arena.live()
    }

    /// Bytes held by the lookup structure (root, nodes and their runs; the rules
    /// store is not counted).
    pub fn memory_bytes(&self) -> usize {
        let slot = core::mem::size_of::<Slot>();
        self.root.len() * slot
            + self.arena.nodes.capacity() * core::mem::size_of::<Node>()
            + self
                .arena
                .nodes
                .iter()
                .map(|n| n.runs.len() * slot)
                .sum::<usize>()
    }

    /// The next hop of the exact route `addr/len`, if present (host bits are ignored).
    pub fn get(&self, addr: u128, len: u8) -> Option<NextHop> {
        self.rules
            .get(usize::from(len))?
            .get(&mask(addr, len))
            .copied()
    }

    /// All routes as `(prefix, len, next hop)`, shortest prefixes first.
    pub fn iter(&self) -> impl Iterator<Item = (u128, u8, NextHop)> + '_ {
        self.rules
            .iter()
            .zip(0u8..)
            .flat_map(|(m, len)| m.iter().map(move |(&a, &nh)| (a, len, nh)))
    }

    /// Longest-prefix match for `addr`.
    #[inline]
    pub fn lookup(&self, addr: u128) -> Option<NextHop> {
        let mut slot = self
            .root
            .get((addr >> (128 - ROOT_BITS)) as usize)
            .copied()?;
        let mut shift = 128 - ROOT_BITS;
        loop {
            match slot {
                Slot::Empty => return None,
                Slot::Leaf { nh, .. } => return Some(nh),
                Slot::Child(c) => {
                    shift = shift.checked_sub(STRIDE)?;
                    slot = self.arena.nodes.get(c as usize)?.get((addr >> shift) as u8);
                }
            }
        }
    }

    /// Looks up `addrs[i]` into `out[i]` for every `i` below the shorter length.
    ///
    /// Addresses are resolved [`LANES`] at a time: the lanes descend the trie together,
    /// one level per step, and each step first prefetches every lane's node, then every
    /// lane's run, so the cache misses of independent lookups overlap instead of
    /// queueing one after another (the software pipelining of DPDK's and VPP's
    /// multi-packet loops).
    pub fn lookup_bulk(&self, addrs: &[u128], out: &mut [Option<NextHop>]) {
        for (a, o) in addrs.chunks(LANES).zip(out.chunks_mut(LANES)) {
            self.lookup_lanes(a, o);
        }
    }

    #[inline]
    fn lookup_lanes(&self, addrs: &[u128], out: &mut [Option<NextHop>]) {
        let root_index = |a: u128| (a >> (128 - ROOT_BITS)) as usize;
        for &a in addrs {
            prefetch(self.root.as_ptr().wrapping_add(root_index(a)));
        }
        let mut slot = [Slot::Empty; LANES];
        for (s, &a) in slot.iter_mut().zip(addrs) {
            *s = self.root.get(root_index(a)).copied().unwrap_or(Slot::Empty);
        }
        let nodes = &self.arena.nodes;
        let mut shift = 128 - ROOT_BITS;
        while shift >= STRIDE && slot.iter().any(|s| matches!(s, Slot::Child(_))) {
            shift -= STRIDE;
            for s in &slot {
                if let Slot::Child(c) = *s {
                    prefetch(nodes.as_ptr().wrapping_add(c as usize));
                }
            }
            let mut rank = [0usize; LANES];
            for ((s, r), &a) in slot.iter().zip(rank.iter_mut()).zip(addrs) {
                if let Slot::Child(c) = *s {
                    if let Some(n) = nodes.get(c as usize) {
                        *r = n.rank((a >> shift) as u8);
                        prefetch(n.runs.as_ptr().wrapping_add(*r));
                    }
                }
            }
            for (s, &r) in slot.iter_mut().zip(rank.iter()) {
                if let Slot::Child(c) = *s {
                    *s = nodes
                        .get(c as usize)
                        .and_then(|n| n.runs.get(r))
                        .copied()
                        .unwrap_or(Slot::Empty);
                }
            }
        }
        for (o, s) in out.iter_mut().zip(slot) {
            *o = match s {
                Slot::Leaf { nh, .. } => Some(nh),
                _ => None,
            };
        }
    }

    /// Adds or replaces the route `addr/len -> nh` (host bits of `addr` are ignored).
    /// Returns the next hop it replaced, if the exact route existed.
    pub fn add(&mut self, addr: u128, len: u8, nh: NextHop) -> Result<Option<NextHop>, LpmError> {
        if len > 128 {
            return Err(LpmError::InvalidPrefixLength(len));
        }
        if nh > MAX_NEXT_HOP {
            return Err(LpmError::NextHopTooLarge(nh));
        }
        let addr = mask(addr, len);
        // Check room for the worst case (a new node on every level below the root)
        // before touching anything, so a full table is left unchanged.
        let need = u32::from(len).saturating_sub(ROOT_BITS).div_ceil(STRIDE);
        if self.arena.max.saturating_sub(self.arena.live()) < need {
            return Err(LpmError::TableFull(self.arena.max));
        }
        self.arena
            .insert_in(&mut self.root, 0, ROOT_BITS, addr, len, nh)?;
        let old = self.rules[usize::from(len)].insert(addr, nh);
        if old.is_none() {
            self.count += 1;
        }
        Ok(old)
    }

    /// Deletes the exact route `addr/len` and returns its next hop. Addresses it
    /// covered fall back to the longest remaining covering route.
    pub fn delete(&mut self, addr: u128, len: u8) -> Result<NextHop, LpmError> {
        if len > 128 {
            return Err(LpmError::InvalidPrefixLength(len));
        }
        let addr = mask(addr, len);
        let nh = self.rules[usize::from(len)]
            .remove(&addr)
            .ok_or(LpmError::NotFound)?;
        self.count -= 1;
        let repl = (0..len)
            .rev()
            .find_map(|l| {
                self.rules[usize::from(l)]
                    .get(&mask(addr, l))
                    .map(|&nh| Slot::Leaf { nh, depth: l })
            })
            .unwrap_or(Slot::Empty);
        self.arena
            .delete_in(&mut self.root, 0, ROOT_BITS, addr, len, repl);
        Ok(nh)
    }

    /// Removes every route.
    pub fn clear(&mut self) {
        self.root.fill(Slot::Empty);
        self.arena.nodes.clear();
        self.arena.free.clear();
        self.rules.iter_mut().for_each(BTreeMap::clear);
        self.count = 0;
    }
}

impl Default for Lpm6 {
    fn default() -> Self {
        Self::new()
    }
}

#[cfg(test)]
mod tests {
    extern crate std;
    use super::*;
    use crate::lpm::gen::SplitMix64;
    use core::net::Ipv6Addr;
    use proptest::prelude::*;
    use std::vec::Vec;

    fn a6(s: &str) -> u128 {
        u128::from(s.parse::<Ipv6Addr>().unwrap())
    }

    #[derive(Default)]
    struct Naive(Vec<(u128, u8, NextHop)>);

    impl Naive {
        fn add(&mut self, a: u128, l: u8, nh: NextHop) {
            let a = mask(a, l);
            self.0.retain(|&(x, y, _)| !(x == a && y == l));
            self.0.push((a, l, nh));
        }
        fn delete(&mut self, a: u128, l: u8) -> bool {
            let a = mask(a, l);
            let n = self.0.len();
            self.0.retain(|&(x, y, _)| !(x == a && y == l));
            n != self.0.len()
        }
        fn lookup(&self, ip: u128) -> Option<NextHop> {
            self.0
                .iter()
                .filter(|&&(a, l, _)| mask(ip, l) == a)
                .max_by_key(|&&(_, l, _)| l)
                .map(|&(_, _, nh)| nh)
        }
    }

    #[test]
    fn node_compression_roundtrip_and_get() {
        let mut rng = SplitMix64::new(1);
        for _ in 0..50 {
            let mut exp = [Slot::Empty; FANOUT];
            let mut v = Slot::Empty;
            for s in exp.iter_mut() {
                if rng.below(6) == 0 {
                    v = match rng.below(3) {
                        0 => Slot::Empty,
                        1 => Slot::Leaf {
                            nh: rng.next_u32() & 0xff,
                            depth: 40,
                        },
                        _ => Slot::Child(rng.next_u32() & 0xffff),
                    };
                }
                *s = v;
            }
            let n = Node::compress(&exp);
            assert_eq!(n.expand(), exp);
            for (i, &s) in exp.iter().enumerate() {
                assert_eq!(n.get(i as u8), s);
            }
        }
    }

    #[test]
    fn basic_longest_match_delete_and_fold() {
        let mut t = Lpm6::new();
        t.add(a6("2001:db8::"), 32, 1).unwrap();
        t.add(a6("2001:db8:1::"), 48, 2).unwrap();
        t.add(a6("2001:db8:1:2::"), 64, 3).unwrap();
        t.add(a6("2001:db8:1:2::7"), 128, 4).unwrap();
        assert_eq!(t.lookup(a6("2001:db8:ffff::1")), Some(1));
        assert_eq!(t.lookup(a6("2001:db8:1:ffff::1")), Some(2));
        assert_eq!(t.lookup(a6("2001:db8:1:2::1")), Some(3));
        assert_eq!(t.lookup(a6("2001:db8:1:2::7")), Some(4));
        assert_eq!(t.lookup(a6("2001:db9::")), None);
        // Delete the /48 under which the /64 lives: the /32 covers again.
        assert_eq!(t.delete(a6("2001:db8:1::"), 48), Ok(2));
        assert_eq!(t.lookup(a6("2001:db8:1:ffff::1")), Some(1));
        assert_eq!(t.lookup(a6("2001:db8:1:2::1")), Some(3));
        assert_eq!(t.delete(a6("2001:db8:1:2::7"), 128), Ok(4));
        assert_eq!(t.lookup(a6("2001:db8:1:2::7")), Some(3));
        assert_eq!(t.delete(a6("2001:db8:1:2::"), 64), Ok(3));
        assert_eq!(t.lookup(a6("2001:db8:1:2::7")), Some(1));
        // The /32 ends in the level of bits 24..32: the nodes for bits 16..24 and
        // 24..32 remain, the deeper ones were folded away.
        assert_eq!(t.nodes_used(), 2);
        assert_eq!(t.delete(a6("2001:db8::"), 32), Ok(1));
        assert_eq!(t.nodes_used(), 0);
        assert_eq!(t.lookup(a6("2001:db8:1:2::7")), None);
        assert_eq!(t.delete(a6("2001:db8::"), 32), Err(LpmError::NotFound));
    }

    #[test]
    fn default_route_replace_and_errors() {
        let mut t = Lpm6::new();
        assert_eq!(t.add(0, 0, 5), Ok(None));
        assert_eq!(t.add(a6("2001:db8::1"), 128, 6), Ok(None));
        assert_eq!(t.lookup(a6("::1")), Some(5));
        assert_eq!(t.add(0, 0, 7), Ok(Some(5)));
        assert_eq!(t.lookup(a6("ffff::1")), Some(7));
        assert_eq!(t.lookup(a6("2001:db8::2")), Some(7));
        assert_eq!(t.lookup(a6("2001:db8::1")), Some(6));
        assert_eq!(t.add(0, 129, 1), Err(LpmError::InvalidPrefixLength(129)));
        assert_eq!(
            t.add(0, 8, 1 << 24),
            Err(LpmError::NextHopTooLarge(1 << 24))
        );
        let c = t.clone();
        assert_eq!(t.delete(0, 0), Ok(7));
        assert_eq!(t.lookup(a6("2001:db8::2")), None);
        assert_eq!(c.lookup(a6("2001:db8::2")), Some(7));
        assert_eq!(t.lookup(a6("2001:db8::1")), Some(6));
    }

    #[test]
    fn node_limit_is_an_error_and_leaves_table_intact() {
        let mut t = Lpm6::with_config(Lpm6Config { max_nodes: 4 });
        // A /48 needs nodes at bits 16.., 24.., 32.., 40..: four.
        t.add(a6("2001:db8:1::"), 48, 1).unwrap();
        assert_eq!(t.nodes_used(), 4);
        assert_eq!(
            t.add(a6("2001:db8:2::"), 48, 2),
            Err(LpmError::TableFull(4))
        );
        assert_eq!(t.lookup(a6("2001:db8:2::1")), None);
        assert_eq!(t.len(), 1);
        // Routes ending in existing nodes or the root still fit.
        assert_eq!(t.add(a6("2400::"), 12, 3), Ok(None));
        assert_eq!(t.lookup(a6("2401::1")), Some(3));
        t.delete(a6("2001:db8:1::"), 48).unwrap();
        assert_eq!(t.nodes_used(), 0);
        assert_eq!(t.add(a6("2001:db8:2::"), 48, 2), Ok(None));
    }

    /// Regression: two /33s with the same next hop tile the node of bits 32..40, so
    /// that node reads as one run `Leaf { nh, depth: 33 }`. Deleting a deeper route
    /// used to fold it into its parent slot, where the /33s can no longer be found by
    /// `delete` (they end one level lower): the stale leaf kept answering lookups and
    /// pinned the nodes above it after every route was gone.
    #[test]
    fn same_next_hop_siblings_are_not_folded_above_their_level() {
        let mut t = Lpm6::new();
        t.add(a6("2001:db8::"), 33, 1).unwrap();
        t.add(a6("2001:db8:8000::"), 33, 1).unwrap();
        t.add(a6("2001:db8::"), 48, 2).unwrap();
        // Nodes for bits 16.., 24.., 32.., 40...
        assert_eq!(t.nodes_used(), 4);
        assert_eq!(t.delete(a6("2001:db8::"), 48), Ok(2));
        assert_eq!(t.lookup(a6("2001:db8::1")), Some(1));
        // The node of bits 32..40 holds the /33s and stays.
        assert_eq!(t.nodes_used(), 3);
        assert_eq!(t.delete(a6("2001:db8::"), 33), Ok(1));
        assert_eq!(t.lookup(a6("2001:db8::1")), None);
        assert_eq!(t.lookup(a6("2001:db8:8000::1")), Some(1));
        assert_eq!(t.nodes_used(), 3);
        assert_eq!(t.delete(a6("2001:db8:8000::"), 33), Ok(1));
        assert_eq!(t.lookup(a6("2001:db8:8000::1")), None);
        assert_eq!(t.nodes_used(), 0);
    }

    #[derive(Debug, Clone)]
    enum Op {
        Add(u128, u8, NextHop),
        Del(usize),
    }

    /// Addresses under a few /32s, with random low bits, so routes nest deeply.
    fn addr_strategy() -> impl Strategy<Value = u128> {
        (0u128..3, any::<u128>()).prop_map(|(hi, r)| {
            let base = (0x2001_0db8_u128 + hi) << 96;
            // Random low 96 bits, but only four values for bits 32..48.
            let low = (r >> 32) & !(0xffff_u128 << 80);
            let third = (r & 3) << 80;
            base | low | third
        })
    }

    fn op_strategy() -> impl Strategy<Value = Op> {
        let len = prop_oneof![1 => 0u8..32, 6 => 32u8..=64, 3 => 64u8..=128];
        prop_oneof![
            3 => (addr_strategy(), len, 0u32..64).prop_map(|(a, l, nh)| Op::Add(a, l, nh)),
            1 => any::<usize>().prop_map(Op::Del),
        ]
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(48))]
        #[test]
        fn matches_naive_reference(ops in proptest::collection::vec(op_strategy(), 1..120),
                                   probes in proptest::collection::vec(addr_strategy(), 64)) {
            let mut t = Lpm6::new();
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
                prop_assert_eq!(t.nodes_used() as usize, fresh_node_count(&n.0));
            }
            prop_assert_eq!(t.len(), n.0.len());
            for &p in &probes {
                prop_assert_eq!(t.lookup(p), n.lookup(p));
            }
            for &(a, l, _) in &n.0 {
                let last = a | u128::MAX.checked_shr(u32::from(l)).unwrap_or(0);
                for p in [a, last, a.wrapping_sub(1), last.wrapping_add(1)] {
                    prop_assert_eq!(t.lookup(p), n.lookup(p));
                }
            }
            let mut out = vec![None; probes.len()];
            t.lookup_bulk(&probes, &mut out);
            for (&p, &o) in probes.iter().zip(out.iter()) {
                prop_assert_eq!(o, t.lookup(p));
            }
            // Deleting every route frees every node.
            let all: Vec<(u128, u8)> = t.iter().map(|(a, l, _)| (a, l)).collect();
            for (a, l) in all {
                prop_assert!(t.delete(a, l).is_ok());
            }
            prop_assert_eq!(t.nodes_used(), 0);
            for &p in &probes {
                prop_assert_eq!(t.lookup(p), None);
            }
        }
    }

    /// The nodes a trie built from scratch from `routes` holds: one for each level
    /// (bits `s..s + 8`, `s` = 16, 24, …, 120) and `s`-bit prefix that some route
    /// longer than `s` passes through (adds never fold).
    fn fresh_node_count(routes: &[(u128, u8, NextHop)]) -> usize {
        let mut nodes = std::collections::BTreeSet::new();
        for &(a, l, _) in routes {
            for s in (ROOT_BITS..u32::from(l)).step_by(STRIDE as usize) {
                nodes.insert((s, mask(a, s as u8)));
            }
        }
        nodes.len()
    }

    #[derive(Debug, Clone)]
    enum ChurnOp {
        /// Add `pool[i] ^ flip / len -> nh` (re-adds and next-hop changes included).
        Add(usize, u128, u8, NextHop),
        /// Add all `2^k` routes of length `len + k` under `pool[i] / len`, one next hop:
        /// siblings that tile a whole node or half of one.
        Tile(usize, u8, u8, NextHop),
        /// Delete `pool[i] ^ flip / len`, which may not exist.
        Del(usize, u128, u8),
        /// Delete the `i`-th existing route.
        DelExisting(usize),
    }

    /// Few next hops and prefixes from a small pool of addresses (with an optional
    /// flipped bit), so routes nest, repeat, tile nodes and share next hops.
    fn churn_op() -> impl Strategy<Value = ChurnOp> {
        let len = prop_oneof![1 => 0u8..32, 8 => 32u8..=128];
        let flip =
            prop_oneof![2 => Just(0u128), 1 => (32u32..128).prop_map(|b| 1u128 << (127 - b))];
        prop_oneof![
            4 => (0usize..4, flip.clone(), len.clone(), 0u32..3)
                .prop_map(|(i, f, l, nh)| ChurnOp::Add(i, f, l, nh)),
            1 => (0usize..4, 16u8..=126, 1u8..=2, 0u32..3)
                .prop_map(|(i, l, k, nh)| ChurnOp::Tile(i, l, k.min(128 - l), nh)),
            1 => (0usize..4, flip, len).prop_map(|(i, f, l)| ChurnOp::Del(i, f, l)),
            3 => any::<usize>().prop_map(ChurnOp::DelExisting),
        ]
    }

    proptest! {
        /// After any interleaving of adds and deletes, the trie holds exactly the nodes
        /// a trie built from scratch from the remaining routes holds (so route churn
        /// leaks nothing), lookups match the naive reference, and deleting every route
        /// frees every node.
        #[test]
        fn churn_keeps_node_count_of_a_fresh_build(
            pool in proptest::collection::vec(
                any::<u128>().prop_map(|r| (0x2001_0db8_u128 << 96) | (r >> 32)), 4),
            ops in proptest::collection::vec(churn_op(), 1..100),
            probes in proptest::collection::vec(any::<u128>(), 16),
        ) {
            let mut t = Lpm6::new();
            let mut n = Naive::default();
            let mut probes: Vec<u128> = probes
                .iter()
                .zip(pool.iter().cycle())
                .map(|(&r, &p)| p ^ (r >> (32 + r % 96)))
                .collect();
            for op in ops {
                match op {
                    ChurnOp::Add(i, f, l, nh) => {
                        let a = pool[i] ^ f;
                        let had = n.0.iter().find(|&&(x, y, _)| x == mask(a, l) && y == l);
                        prop_assert_eq!(t.add(a, l, nh), Ok(had.map(|r| r.2)));
                        n.add(a, l, nh);
                        probes.push(a);
                    }
                    ChurnOp::Tile(i, l, k, nh) => {
                        for j in 0..1u128 << k {
                            let a = mask(pool[i], l) | (j << (128 - u32::from(l + k)));
                            prop_assert!(t.add(a, l + k, nh).is_ok());
                            n.add(a, l + k, nh);
                        }
                    }
                    ChurnOp::Del(i, f, l) => {
                        let a = pool[i] ^ f;
                        let had = n.0.iter().find(|&&(x, y, _)| x == mask(a, l) && y == l);
                        prop_assert_eq!(t.delete(a, l), had.map(|r| r.2).ok_or(LpmError::NotFound));
                        n.delete(a, l);
                    }
                    ChurnOp::DelExisting(i) => {
                        if n.0.is_empty() { continue; }
                        let (a, l, nh) = n.0[i % n.0.len()];
                        prop_assert_eq!(t.delete(a, l), Ok(nh));
                        prop_assert!(n.delete(a, l));
                    }
                }
                prop_assert_eq!(t.nodes_used() as usize, fresh_node_count(&n.0));
                for &p in probes.iter().rev().take(8) {
                    prop_assert_eq!(t.lookup(p), n.lookup(p));
                }
            }
            prop_assert_eq!(t.len(), n.0.len());
            let mut fresh = Lpm6::new();
            for &(a, l, nh) in &n.0 {
                prop_assert!(fresh.add(a, l, nh).is_ok());
            }
            prop_assert_eq!(fresh.nodes_used() as usize, fresh_node_count(&n.0));
            prop_assert_eq!(t.nodes_used(), fresh.nodes_used());
            for &(a, l, _) in &n.0 {
                let last = a | u128::MAX.checked_shr(u32::from(l)).unwrap_or(0);
                probes.extend([a, last, a.wrapping_sub(1), last.wrapping_add(1)]);
            }
            for &p in &probes {
                prop_assert_eq!(t.lookup(p), n.lookup(p));
                prop_assert_eq!(fresh.lookup(p), n.lookup(p));
            }
            // Delete everything, in an order unrelated to the adds.
            let mut all: Vec<(u128, u8)> = t.iter().map(|(a, l, _)| (a, l)).collect();
            all.sort_by_key(|&(a, l)| (a.reverse_bits(), l));
            for (a, l) in all {
                prop_assert!(t.delete(a, l).is_ok());
            }
            prop_assert_eq!(t.nodes_used(), 0);
            prop_assert!(t.root.iter().all(|&s| s == Slot::Empty));
            for &p in &probes {
                prop_assert_eq!(t.lookup(p), None);
            }
        }
    }

    /// 200k BGP-like prefixes (20k in debug builds, which `cargo test` uses), checked
    /// on a sample against per-length hash maps, then half deleted and checked again.
    #[test]
    fn bgp_like_table_at_scale() {
        use std::collections::HashMap;
        let n = if cfg!(debug_assertions) {
            20_000
        } else {
            200_000
        };
        let routes = crate::lpm::gen::bgp_like_v6(n, 2024);
        let mut t = Lpm6::new();
        let mut by_len: Vec<HashMap<u128, NextHop>> = (0..=128).map(|_| HashMap::new()).collect();
        for r in &routes {
            assert_eq!(t.add(r.addr, r.len, r.nh), Ok(None));
            by_len[usize::from(r.len)].insert(r.addr, r.nh);
        }
        assert_eq!(t.len(), n);
        std::println!(
            "{n} IPv6 routes: {} nodes, {} KiB",
            t.nodes_used(),
            t.memory_bytes() / 1024
        );
        let check = |t: &Lpm6, by_len: &Vec<HashMap<u128, NextHop>>, seed| {
            let mut rng = SplitMix64::new(seed);
            let mut probes = crate::lpm::gen::addrs_in_v6(&routes, 20_000, seed);
            probes.extend((0..5_000).map(|_| rng.next_u128()));
            let mut out = vec![None; probes.len()];
            t.lookup_bulk(&probes, &mut out);
            for (&a, &o) in probes.iter().zip(out.iter()) {
                let want = (0..=128u8)
                    .rev()
                    .find_map(|l| by_len[usize::from(l)].get(&mask(a, l)).copied());
                assert_eq!(o, want, "addr {:?}", Ipv6Addr::from(a));
            }
        };
        check(&t, &by_len, 1);
        for r in routes.iter().step_by(2) {
            assert_eq!(t.delete(r.addr, r.len), Ok(r.nh));
            by_len[usize::from(r.len)].remove(&r.addr);
        }
        check(&t, &by_len, 2);
    }
}
