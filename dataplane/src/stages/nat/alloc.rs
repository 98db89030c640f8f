//! Outside address and port allocation: paired address pooling (RFC 4787 §4.1 REQ-2,
//! RFC 6888 §3 REQ-2: every mapping of one subscriber uses one outside address) and
//! port-block allocation (RFC 6888 §5, RFC 7422): a subscriber owns up to
//! `max_blocks` blocks of `block_size` consecutive ports on its outside address and
//! takes ports for its mappings only from them.
//!
//! Per outside address: a `bitvec` of allocated blocks, the owner and the number of
//! ports in use of every block, and one port bitmap per protocol (TCP, UDP, ICMP
//! identifiers are separate spaces, RFC 4787 REQ-3 forbids only port overloading
//! within one protocol). All of it is allocated at start-up.

use super::log::{LogEvent, LogRecord};
use super::table::NONE;
use alloc::vec;
use alloc::vec::Vec;
use bitvec::prelude::*;
use core::net::Ipv4Addr;

/// Most blocks one subscriber may hold (the inline array of [`Subscriber`]).
pub const MAX_BLOCKS: usize = 32;

/// Protocol index of the port bitmaps.
#[inline(always)]
pub fn proto_index(proto: u8) -> usize {
    match proto {
        6 => 0,
        17 => 1,
        _ => 2,
    }
}

/// One outside address.
pub struct OutsideAddr {
    pub addr: u32,
    /// Block allocated?
    blocks: BitVec<u64, Lsb0>,
    /// Owner subscriber of each block.
    owner: Vec<u32>,
    /// Ports in use (all protocols) per block.
    used: Vec<u32>,
    /// Port in use, per protocol, indexed by `port - port_min`.
    ports: [BitVec<u64, Lsb0>; 3],
    /// Blocks allocated.
    pub nblocks: u32,
    /// Removed from the pool at run time ([`super::repool`]): its subscribers keep
    /// it until their last mapping ends; no new subscriber is paired with it.
    pub draining: bool,
}

impl OutsideAddr {
    /// An address with no block in use: `bpa` blocks, `nports` ports per protocol.
    pub fn new(addr: u32, bpa: u32, nports: usize) -> OutsideAddr {
        OutsideAddr {
            addr,
            blocks: bitvec![u64, Lsb0; 0; bpa as usize],
            owner: vec![NONE; bpa as usize],
            used: vec![0; bpa as usize],
            ports: [
                bitvec![u64, Lsb0; 0; nports],
                bitvec![u64, Lsb0; 0; nports],
                bitvec![u64, Lsb0; 0; nports],
            ],
            nblocks: 0,
            draining: false,
        }
    }
}

/// Blocks per address and ports per protocol of a port range cut in blocks.
pub fn geometry(port_min: u16, port_max: u16, block_size: u16) -> (u32, usize) {
    let span = u32::from(port_max).saturating_sub(u32::from(port_min)) + 1;
    let bs = u32::from(block_size.max(1));
    let bpa = span / bs;
    (bpa, (bpa * bs) as usize)
}

/// A subscriber (one inside address) and its port blocks.
#[derive(Clone, Copy, Debug)]
pub struct Subscriber {
    pub inside: u32,
    /// Index of the paired outside address.
    pub addr: u32,
    pub nblocks: u16,
    pub blocks: [u16; MAX_BLOCKS],
    /// Sessions of this subscriber.
    pub sessions: u32,
    /// Mappings of this subscriber.
    pub mappings: u32,
    pub live: bool,
    /// Its blocks were given from outside ([`Pool::bind_subscriber`]): the fast
    /// path takes no new block for it and keeps its blocks when their ports are
    /// free; only [`Pool::release_blocks`] gives them back.
    pub pinned: bool,
}

impl Subscriber {
    const EMPTY: Subscriber = Subscriber {
        inside: 0,
        addr: 0,
        nblocks: 0,
        blocks: [0; MAX_BLOCKS],
        sessions: 0,
        mappings: 0,
        live: false,
        pinned: false,
    };
}

/// Why no port could be had.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum AllocError {
    /// The subscriber holds `max_blocks` blocks and all their ports are in use.
    NoPort,
    /// The subscriber's outside address has no free block.
    NoBlock,
}

/// The pool: outside addresses, subscribers, block geometry.
pub struct Pool {
    pub addrs: Vec<OutsideAddr>,
    pub subs: Vec<Subscriber>,
    sub_free: Vec<u32>,
    pub port_min: u16,
    pub block_size: u16,
    pub blocks_per_addr: u32,
    pub max_blocks: u16,
    /// Blocks allocated in total.
    pub blocks_in_use: u64,
    /// This worker's slice of every outside address's blocks: `slice.0..slice.1`
    /// (all of them with one worker; see [`Pool::set_slice`]).
    pub slice: (u32, u32),
    /// The outside ports of this worker's slice, `own_ports.0..own_ports.1` (the
    /// same on every address): the per-packet ownership test of the return
    /// traffic is two compares ([`Pool::owns_port`]), no division.
    own_ports: (u32, u32),
}

impl Pool {
    /// `addrs` outside addresses, ports `port_min..=port_max` cut in blocks of
    /// `block_size`, `max_blocks` per subscriber, `max_subs` subscribers.
    pub fn new(
        addrs: &[u32],
        port_min: u16,
        port_max: u16,
        block_size: u16,
        max_blocks: u16,
        max_subs: u32,
    ) -> Self {
        let bs = u32::from(block_size.max(1));
        let (bpa, nports) = geometry(port_min, port_max, block_size);
        let addrs = addrs
            .iter()
            .map(|&addr| OutsideAddr::new(addr, bpa, nports))
            .collect();
        let subs = vec![Subscriber::EMPTY; max_subs as usize];
        let sub_free = (0..max_subs).rev().collect();
        Pool {
            addrs,
            subs,
            sub_free,
            port_min,
            block_size: bs as u16,
            blocks_per_addr: bpa,
            max_blocks: max_blocks.clamp(1, MAX_BLOCKS as u16),
            blocks_in_use: 0,
            slice: (0, bpa),
            own_ports: Self::ports_of(port_min, bs, (0, bpa)),
        }
    }

    /// The outside ports of the blocks `slice.0..slice.1`.
    fn ports_of(port_min: u16, bs: u32, slice: (u32, u32)) -> (u32, u32) {
        let first = u32::from(port_min);
        (first + slice.0 * bs, first + slice.1 * bs)
    }

    /// First block of worker `k`'s slice among `n` workers (`k = n`: the end).
    #[inline]
    pub fn slice_start(bpa: u32, k: u16, n: u16) -> u32 {
        (u64::from(bpa) * u64::from(k) / u64::from(n.max(1))) as u32
    }

    /// Restricts allocation to worker `k`'s slice of every outside address's
    /// blocks among `n` workers: consecutive whole blocks, so a subscriber's port
    /// blocks stay intact and the owner of an outside port is known from the port
    /// alone ([`Pool::port_owner`]).
    pub fn set_slice(&mut self, k: u16, n: u16) {
        let n = n.max(1);
        let k = k.min(n - 1);
        self.slice = (
            Self::slice_start(self.blocks_per_addr, k, n),
            Self::slice_start(self.blocks_per_addr, k + 1, n),
        );
        self.own_ports = Self::ports_of(self.port_min, u32::from(self.block_size), self.slice);
    }

    /// Whether outside port `port` lies in a block of this worker's slice (what
    /// [`Pool::port_owner`] answers with this worker, without its divisions).
    #[inline(always)]
    pub fn owns_port(&self, port: u16) -> bool {
        let p = u32::from(port);
        p >= self.own_ports.0 && p < self.own_ports.1
    }

    /// The worker among `n` whose slice holds outside port `port` (`None`: the port
    /// is in no block).
    #[inline]
    pub fn port_owner(&self, port: u16, n: u16) -> Option<u16> {
        let bpa = self.blocks_per_addr;
        let b = u32::from(port.checked_sub(self.port_min)?) / u32::from(self.block_size.max(1));
        if b >= bpa || n == 0 {
            return None;
        }
        let mut k = ((u64::from(b) * u64::from(n)) / u64::from(bpa)).min(u64::from(n - 1)) as u16;
        while k + 1 < n && Self::slice_start(bpa, k + 1, n) <= b {
            k += 1;
        }
        while k > 0 && Self::slice_start(bpa, k, n) > b {
            k -= 1;
        }
        Some(k)
    }

    /// Index of outside address `a`, if it is one of ours.
    #[inline]
    pub fn addr_index(&self, a: u32) -> Option<usize> {
        self.addrs.binary_search_by_key(&a, |o| o.addr).ok()
    }

    /// Subscribers in use.
    pub fn subscribers(&self) -> usize {
        self.subs.len() - self.sub_free.len()
    }

    /// Takes a subscriber slot for `inside`, paired with an outside address chosen by
    /// hashing the inside address, then the next one with a free block; never an
    /// address that is draining.
    pub fn new_subscriber(&mut self, inside: u32) -> Option<u32> {
        let n = self.addrs.len();
        if n == 0 {
            return None;
        }
        let start = (inside.wrapping_mul(0x9e37_79b1) >> 8) as usize % n;
        let mut addr = None;
        for k in 0..n {
            let a = (start + k) % n;
            let Some(o) = self.addrs.get(a) else {
                continue;
            };
            if o.draining {
                continue;
            }
            if addr.is_none() {
                // Full everywhere: the first active one (the block allocation fails).
                addr = Some(a);
            }
            if o.nblocks < self.slice.1 - self.slice.0 {
                addr = Some(a);
                break;
            }
        }
        let addr = addr?;
        let s = self.sub_free.pop()?;
        if let Some(sub) = self.subs.get_mut(s as usize) {
            *sub = Subscriber {
                inside,
                addr: addr as u32,
                live: true,
                ..Subscriber::EMPTY
            };
        }
        Some(s)
    }

    /// Returns a subscriber slot (it must hold no block, session or mapping).
    pub fn free_subscriber(&mut self, s: u32) {
        if let Some(sub) = self.subs.get_mut(s as usize) {
            if sub.live {
                sub.live = false;
                self.sub_free.push(s);
            }
        }
    }

    /// The port range of block `b`.
    #[inline]
    pub fn block_range(&self, b: u16) -> (u16, u16) {
        let first = u32::from(self.port_min) + u32::from(b) * u32::from(self.block_size);
        let last = first + u32::from(self.block_size) - 1;
        (first as u16, last.min(65535) as u16)
    }

    /// Allocates a port for a mapping of subscriber `s` and protocol `proto`,
    /// preferring `want` (port preservation), then a port of the same parity (RFC 4787
    /// REQ-4), then any free port of the subscriber's blocks; takes a new block when
    /// they are full. Block allocations are written to `log`. Returns (outside
    /// address, port).
    pub fn alloc_port(
        &mut self,
        s: u32,
        proto: u8,
        want: u16,
        now_ns: u64,
        log: &mut dyn FnMut(&LogRecord),
    ) -> Result<(u32, u16), AllocError> {
        let pi = proto_index(proto);
        let bs = usize::from(self.block_size);
        let port_min = self.port_min;
        let Some(sub) = self.subs.get(s as usize).copied() else {
            return Err(AllocError::NoPort);
        };
        let Some(oa) = self.addrs.get_mut(sub.addr as usize) else {
            return Err(AllocError::NoBlock);
        };
        // 1. A free port in one of the subscriber's blocks.
        let mut fallback: Option<usize> = None;
        for &b in sub.blocks.iter().take(usize::from(sub.nblocks)) {
            let lo = usize::from(b) * bs;
            let Some(bits) = oa.ports[pi].get(lo..lo + bs) else {
                continue;
            };
            if want >= port_min {
                let w = usize::from(want - port_min);
                if (lo..lo + bs).contains(&w) && bits.get(w - lo).is_some_and(|x| !*x) {
                    return Ok(take(oa, pi, b, w, port_min));
                }
            }
            // Word-wise search: the first free port, or the one after it when only
            // that one has the inside port's parity.
            let Some(z) = first_zero(&oa.ports[pi], lo, bs) else {
                continue;
            };
            let parity = u32::from(want % 2);
            let same = |z: usize| ((lo + z) as u32 + u32::from(port_min)) % 2 == parity;
            if same(z) {
                return Ok(take(oa, pi, b, lo + z, port_min));
            }
            if bits.get(z + 1).is_some_and(|x| !*x) {
                return Ok(take(oa, pi, b, lo + z + 1, port_min));
            }
            if fallback.is_none() {
                fallback = Some(lo + z);
            }
        }
        if let Some(i) = fallback {
            let b = (i / bs) as u16;
            return Ok(take(oa, pi, b, i, port_min));
        }
        // 2. A new block (never for a subscriber whose blocks were given).
        if sub.pinned || sub.nblocks >= self.max_blocks {
            return Err(AllocError::NoPort);
        }
        // Within this worker's slice (all blocks with one worker).
        let (s_lo, s_hi) = (self.slice.0 as usize, self.slice.1 as usize);
        let width = s_hi.saturating_sub(s_lo).max(1);
        let start = s_lo + (sub.inside.wrapping_mul(0x85eb_ca6b) >> 4) as usize % width;
        let after = oa.blocks.get(start..s_hi).and_then(|r| r.first_zero());
        let b = match after {
            Some(z) => start + z,
            None => match oa.blocks.get(s_lo..start).and_then(|r| r.first_zero()) {
                Some(z) => s_lo + z,
                None => return Err(AllocError::NoBlock),
            },
        };
        oa.blocks.set(b, true);
        if let Some(o) = oa.owner.get_mut(b) {
            *o = s;
        }
        oa.nblocks += 1;
        self.blocks_in_use += 1;
        let addr = oa.addr;
        let b16 = b as u16;
        if let Some(sub) = self.subs.get_mut(s as usize) {
            if let Some(slot) = sub.blocks.get_mut(usize::from(sub.nblocks)) {
                *slot = b16;
                sub.nblocks += 1;
            }
        }
        let (first, last) = self.block_range(b16);
        log(&LogRecord {
            event: LogEvent::Alloc,
            subscriber: Ipv4Addr::from(sub.inside),
            outside: Ipv4Addr::from(addr),
            port_first: first,
            port_last: last,
            time_ns: now_ns,
        });
        let Some(oa) = self.addrs.get_mut(sub.addr as usize) else {
            return Err(AllocError::NoBlock);
        };
        let lo = b * bs;
        let w = if want >= port_min && (lo..lo + bs).contains(&usize::from(want - port_min)) {
            usize::from(want - port_min)
        } else {
            // Same parity as the inside port within the fresh block.
            let par = (u32::from(port_min) + lo as u32) % 2 != u32::from(want % 2);
            lo + usize::from(par)
        };
        Ok(take(oa, pi, b16, w, port_min))
    }

    /// Releases a port; frees its block (and logs it) when no port of it is used.
    pub fn free_port(
        &mut self,
        s: u32,
        addr: u32,
        proto: u8,
        port: u16,
        now_ns: u64,
        log: &mut dyn FnMut(&LogRecord),
    ) {
        let pi = proto_index(proto);
        let bs = usize::from(self.block_size);
        let Some(ai) = self.addr_index(addr) else {
            return;
        };
        let Some(i) = port.checked_sub(self.port_min).map(usize::from) else {
            return;
        };
        let Some(oa) = self.addrs.get_mut(ai) else {
            return;
        };
        if oa.ports[pi].get(i).is_none_or(|x| !*x) {
            return;
        }
        oa.ports[pi].set(i, false);
        let b = i / bs;
        let Some(u) = oa.used.get_mut(b) else {
            return;
        };
        *u = u.saturating_sub(1);
        if *u > 0 || self.subs.get(s as usize).is_some_and(|x| x.pinned) {
            return;
        }
        // Block empty: give it back.
        oa.blocks.set(b, false);
        if let Some(o) = oa.owner.get_mut(b) {
            *o = NONE;
        }
        oa.nblocks = oa.nblocks.saturating_sub(1);
        self.blocks_in_use = self.blocks_in_use.saturating_sub(1);
        let outside = oa.addr;
        let b16 = b as u16;
        let (first, last) = self.block_range(b16);
        if let Some(sub) = self.subs.get_mut(s as usize) {
            let n = usize::from(sub.nblocks);
            if let Some(pos) = sub.blocks.iter().take(n).position(|&x| x == b16) {
                sub.blocks.copy_within(pos + 1..n, pos);
                sub.nblocks -= 1;
            }
            log(&LogRecord {
                event: LogEvent::Release,
                subscriber: Ipv4Addr::from(sub.inside),
                outside: Ipv4Addr::from(outside),
                port_first: first,
                port_last: last,
                time_ns: now_ns,
            });
        }
    }
}

impl Pool {
    /// Whether port `port` of protocol `proto` is in use on outside address index `a`.
    pub fn port_in_use(&self, a: usize, proto: u8, port: u16) -> bool {
        let Some(i) = port.checked_sub(self.port_min) else {
            return false;
        };
        self.addrs
            .get(a)
            .and_then(|o| o.ports[proto_index(proto)].get(usize::from(i)))
            .is_some_and(|x| *x)
    }

    /// Whether block `b` of outside address index `a` is free and within this
    /// worker's slice.
    pub fn block_free(&self, a: usize, b: u16) -> bool {
        let bi = usize::from(b);
        (self.slice.0 as usize..self.slice.1 as usize).contains(&bi)
            && self
                .addrs
                .get(a)
                .and_then(|o| o.blocks.get(bi))
                .is_some_and(|x| !*x)
    }

    /// Takes a subscriber slot for `inside` holding exactly blocks `first..=last`
    /// of outside address index `a` (checked free by the caller with
    /// [`Pool::block_free`]), pinned ([`Subscriber::pinned`]). Allocates nothing:
    /// the slot comes from the free list built at start-up. `None` when no slot is
    /// free. Writes an allocation record per block to `log`.
    pub fn bind_subscriber(
        &mut self,
        inside: u32,
        a: usize,
        first: u16,
        last: u16,
        now_ns: u64,
        log: &mut dyn FnMut(&LogRecord),
    ) -> Option<u32> {
        let s = self.sub_free.pop()?;
        let oa = self.addrs.get_mut(a)?;
        let mut sub = Subscriber {
            inside,
            addr: a as u32,
            live: true,
            pinned: true,
            ..Subscriber::EMPTY
        };
        for b in first..=last {
            let bi = usize::from(b);
            oa.blocks.set(bi, true);
            if let Some(o) = oa.owner.get_mut(bi) {
                *o = s;
            }
            oa.nblocks += 1;
            if let Some(slot) = sub.blocks.get_mut(usize::from(sub.nblocks)) {
                *slot = b;
                sub.nblocks += 1;
            }
        }
        self.blocks_in_use += u64::from(sub.nblocks);
        let outside = oa.addr;
        if let Some(x) = self.subs.get_mut(s as usize) {
            *x = sub;
        }
        for &b in sub.blocks.iter().take(usize::from(sub.nblocks)) {
            let (pf, pl) = self.block_range(b);
            log(&LogRecord {
                event: LogEvent::Alloc,
                subscriber: Ipv4Addr::from(inside),
                outside: Ipv4Addr::from(outside),
                port_first: pf,
                port_last: pl,
                time_ns: now_ns,
            });
        }
        Some(s)
    }

    /// Gives back every block of subscriber `s` (its mappings ended first) with all
    /// their ports, and unpins it; writes a release record per block to `log`.
    pub fn release_blocks(&mut self, s: u32, now_ns: u64, log: &mut dyn FnMut(&LogRecord)) {
        let Some(sub) = self.subs.get(s as usize).copied() else {
            return;
        };
        let Some(oa) = self.addrs.get_mut(sub.addr as usize) else {
            return;
        };
        let outside = oa.addr;
        let bs = usize::from(self.block_size);
        for &b in sub.blocks.iter().take(usize::from(sub.nblocks)) {
            let bi = usize::from(b);
            // Every port of the block free again, whatever was left marked.
            for ports in oa.ports.iter_mut() {
                if let Some(r) = ports.get_mut(bi * bs..(bi + 1) * bs) {
                    r.fill(false);
                }
            }
            oa.blocks.set(bi, false);
            if let Some(o) = oa.owner.get_mut(bi) {
                *o = NONE;
            }
            if let Some(u) = oa.used.get_mut(bi) {
                *u = 0;
            }
            oa.nblocks = oa.nblocks.saturating_sub(1);
        }
        self.blocks_in_use = self.blocks_in_use.saturating_sub(u64::from(sub.nblocks));
        for &b in sub.blocks.iter().take(usize::from(sub.nblocks)) {
            let (pf, pl) = self.block_range(b);
            log(&LogRecord {
                event: LogEvent::Release,
                subscriber: Ipv4Addr::from(sub.inside),
                outside: Ipv4Addr::from(outside),
                port_first: pf,
                port_last: pl,
                time_ns: now_ns,
            });
        }
        if let Some(x) = self.subs.get_mut(s as usize) {
            x.nblocks = 0;
            x.pinned = false;
        }
    }
}

/// First free port index in `[lo, lo + n)` relative to `lo`; word at a time when the
/// range is whole 64-bit words (block sizes that are multiples of 64).
#[inline]
fn first_zero(bits: &BitVec<u64, Lsb0>, lo: usize, n: usize) -> Option<usize> {
    if lo.is_multiple_of(64) && n.is_multiple_of(64) {
        let words = bits.as_raw_slice().get(lo / 64..(lo + n) / 64)?;
        for (k, w) in words.iter().enumerate() {
            if *w != u64::MAX {
                return Some(k * 64 + w.trailing_ones() as usize);
            }
        }
        return None;
    }
    bits.get(lo..lo + n)?.first_zero()
}

#[inline]
fn take(oa: &mut OutsideAddr, pi: usize, b: u16, i: usize, port_min: u16) -> (u32, u16) {
    oa.ports[pi].set(i, true);
    if let Some(u) = oa.used.get_mut(usize::from(b)) {
        *u += 1;
    }
    (oa.addr, (i as u32 + u32::from(port_min)) as u16)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn blocks_paired_and_logged() {
        let a = u32::from(Ipv4Addr::new(198, 51, 100, 1));
        let mut p = Pool::new(&[a], 1024, 65535, 512, 2, 16);
        assert_eq!(p.blocks_per_addr, 126);
        let s = p.new_subscriber(0x6440_0007).unwrap();
        let mut logs = Vec::new();
        let mut got = Vec::new();
        for _ in 0..1024 {
            got.push(
                p.alloc_port(s, 17, 5000, 1, &mut |r| logs.push(*r))
                    .unwrap(),
            );
        }
        assert_eq!(logs.len(), 2, "two blocks");
        assert!(got.iter().all(|(ad, _)| *ad == a));
        let mut ports: Vec<u16> = got.iter().map(|g| g.1).collect();
        ports.sort();
        ports.dedup();
        assert_eq!(ports.len(), 1024, "no port handed out twice");
        assert_eq!(
            p.alloc_port(s, 17, 5000, 1, &mut |_| {}),
            Err(AllocError::NoPort)
        );
        // TCP is a separate space.
        assert!(p.alloc_port(s, 6, 5000, 1, &mut |_| {}).is_ok());
        // Free every UDP port: one block stays (TCP port in it) or both go.
        for (_, port) in &got {
            p.free_port(s, a, 17, *port, 2, &mut |r| logs.push(*r));
        }
        assert_eq!(
            logs.iter().filter(|r| r.event == LogEvent::Release).count(),
            1
        );
        assert_eq!(p.subs[s as usize].nblocks, 1);
    }

    #[test]
    fn parity_and_preservation() {
        let a = 0xc633_6401;
        let mut p = Pool::new(&[a], 1024, 65535, 64, 4, 4);
        let s = p.new_subscriber(1).unwrap();
        let (_, p1) = p.alloc_port(s, 17, 1100, 0, &mut |_| {}).unwrap();
        let (_, p2) = p.alloc_port(s, 17, 1101, 0, &mut |_| {}).unwrap();
        let (_, p3) = p.alloc_port(s, 17, 1101, 0, &mut |_| {}).unwrap();
        assert_eq!(p1 % 2, 0);
        assert_eq!(p2 % 2, 1);
        assert_eq!(p3 % 2, 1);
        assert_ne!(p2, p3);
    }

    /// The two-compare ownership test agrees with `port_owner` on every port, for
    /// uneven slices (blocks not divisible by the workers) and ports outside any
    /// block (below `port_min`, in the partial block at the top).
    #[test]
    fn owns_port_is_port_owner_of_this_worker() {
        for (min, max, bs, n) in [
            (1024u16, 65535u16, 512u16, 2u16),
            (1024, 65535, 512, 3),
            (1024, 65535, 100, 4),
            (2000, 3000, 64, 5),
            (1, 65535, 1000, 1),
        ] {
            for k in 0..n {
                let mut p = Pool::new(&[0xc633_6401], min, max, bs, 4, 4);
                p.set_slice(k, n);
                for port in 0..=u16::MAX {
                    assert_eq!(
                        p.owns_port(port),
                        p.port_owner(port, n) == Some(k),
                        "ports {min}-{max} blocks {bs} worker {k}/{n} port {port}"
                    );
                }
            }
        }
    }
}
