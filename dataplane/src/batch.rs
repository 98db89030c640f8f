//! Batches (vectors) of up to [`BATCH_SIZE`] packets, and the sorting of packets to
//! their next hops, in the shape of VPP's vector processing and DPDK's bursts.
//!
//! A stage calls [`Batch::dispatch`] with a per-packet function returning a [`Next`]:
//! packets that `Keep` stay in the batch, in order, for the next stage; the others go
//! to [`Out`]: a port's transmit batch, the control-plane punt batch, or the pool
//! (drop, counted per reason in the stage's [`NodeStats`]).

use crate::buf::{Pkt, PoolCache};
use crate::stage::{NodeStats, Trace};
use alloc::vec::Vec;
use core::mem::MaybeUninit;

/// Largest number of packets in one batch.
pub const BATCH_SIZE: usize = 256;

/// Most next nodes one node may declare.
pub const MAX_NEXT: usize = 16;

/// Where a packet goes after a stage.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Next {
    /// Stay in the batch for the node's default successor.
    Keep,
    /// To the node's i-th next node (index into `Stage::next_nodes`).
    Node(u16),
    /// Transmit on this port (index into [`Out::ports`]).
    Port(u16),
    /// Hand to the control plane.
    Punt,
    /// Drop, counting this reason (index into the stage's `errors()`).
    Drop(u16),
    /// Hand to worker `w`, which owns the packet's state (VPP's worker hand-off):
    /// the packet resumes at the same node on that worker. Only meaningful with
    /// several workers ([`Out::workers`] > 1); otherwise, or for a worker that does
    /// not exist, it is counted in [`OutStats::no_handoff`] and freed.
    Handoff(u16),
}

/// Up to [`BATCH_SIZE`] owned packets.
pub struct Batch {
    len: usize,
    pkts: [MaybeUninit<Pkt>; BATCH_SIZE],
}

impl Default for Batch {
    fn default() -> Self {
        Self::new()
    }
}

impl core::fmt::Debug for Batch {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("Batch").field("len", &self.len).finish()
    }
}

impl Batch {
    /// An empty batch.
    pub const fn new() -> Self {
        Batch {
            len: 0,
            pkts: [const { MaybeUninit::uninit() }; BATCH_SIZE],
        }
    }

    /// Packets in the batch.
    #[inline(always)]
    pub fn len(&self) -> usize {
        self.len
    }

    #[inline(always)]
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    #[inline(always)]
    pub fn is_full(&self) -> bool {
        self.len == BATCH_SIZE
    }

    /// Free slots.
    #[inline(always)]
    pub fn room(&self) -> usize {
        BATCH_SIZE - self.len
    }

    /// Appends a packet; gives it back when the batch is full.
    #[inline(always)]
    pub fn push(&mut self, pkt: Pkt) -> Result<(), Pkt> {
        match self.pkts.get_mut(self.len) {
            Some(slot) => {
                slot.write(pkt);
                self.len += 1;
                Ok(())
            }
            None => Err(pkt),
        }
    }

    /// Removes the last packet (LIFO: to take packets in arrival order use
    /// [`Batch::drain`] or [`Batch::take_front`]).
    #[inline(always)]
    pub fn pop(&mut self) -> Option<Pkt> {
        if self.len == 0 {
            return None;
        }
        self.len -= 1;
        // SAFETY: slot `len` (the old last one) is initialised and now logically
        // removed, so it is read exactly once.
        Some(unsafe { self.pkts[self.len].assume_init_read() })
    }

    /// The packets as a slice.
    #[inline(always)]
    pub fn as_slice(&self) -> &[Pkt] {
        // SAFETY: the first `len` slots are initialised; MaybeUninit<Pkt> has Pkt's
        // layout.
        unsafe { core::slice::from_raw_parts(self.pkts.as_ptr().cast::<Pkt>(), self.len) }
    }

    /// The packets as a mutable slice.
    #[inline(always)]
    pub fn as_mut_slice(&mut self) -> &mut [Pkt] {
        // SAFETY: as in `as_slice`, with exclusive access.
        unsafe { core::slice::from_raw_parts_mut(self.pkts.as_mut_ptr().cast::<Pkt>(), self.len) }
    }

    pub fn iter(&self) -> core::slice::Iter<'_, Pkt> {
        self.as_slice().iter()
    }

    pub fn iter_mut(&mut self) -> core::slice::IterMut<'_, Pkt> {
        self.as_mut_slice().iter_mut()
    }

    /// Takes the first `n` packets out, in order, calling `f` on each, and keeps the
    /// rest in order (how a port removes what it sent).
    pub fn take_front(&mut self, n: usize, mut f: impl FnMut(Pkt)) {
        let n = n.min(self.len);
        let len = self.len;
        self.len = 0; // a panic in `f` leaks packets rather than double-freeing them
        for i in 0..n {
            // SAFETY: i < len, initialised, read once.
            f(unsafe { self.pkts[i].assume_init_read() });
        }
        if n > 0 && n < len {
            // SAFETY: moves the initialised tail [n, len) to the front; ranges may
            // overlap, `copy` handles that; the moved-from slots are then treated as
            // uninitialised.
            unsafe {
                core::ptr::copy(self.pkts.as_ptr().add(n), self.pkts.as_mut_ptr(), len - n);
            }
        }
        self.len = len - n;
    }

    /// Offers every packet to `f`, in order: the packets it gives back stay in the
    /// batch, in order; the others are its own (moved elsewhere).
    pub fn retain(&mut self, mut f: impl FnMut(Pkt) -> Option<Pkt>) {
        let len = self.len;
        self.len = 0; // a panic in `f` leaks packets rather than double-freeing them
        let base = self.pkts.as_mut_ptr().cast::<Pkt>();
        let mut w = 0;
        for r in 0..len {
            // SAFETY: r < len: slot r is initialised and read out exactly once; slot
            // w <= r was vacated (read out) before it is written.
            unsafe {
                if let Some(p) = f(core::ptr::read(base.add(r))) {
                    core::ptr::write(base.add(w), p);
                    w += 1;
                }
            }
        }
        self.len = w;
    }

    /// Takes every packet out, in order.
    pub fn drain(&mut self, f: impl FnMut(Pkt)) {
        let n = self.len;
        self.take_front(n, f);
    }

    /// Frees every packet into `cache`.
    pub fn free_all(&mut self, cache: &mut PoolCache) {
        self.drain(|p| cache.free(p));
    }

    /// Moves all packets of `other` to the end of `self` as far as room allows;
    /// returns how many moved.
    pub fn append(&mut self, other: &mut Batch) -> usize {
        let n = other.len.min(self.room());
        other.take_front(n, |p| {
            let _ = self.push(p);
        });
        n
    }

    /// Runs `f` on every packet and sorts it by the returned [`Next`]: `Keep` stays
    /// (in order), the rest go to `out`; drops are counted in `node`.
    #[inline]
    pub fn dispatch<F: FnMut(&mut Pkt, &mut Out) -> Next>(
        &mut self,
        node: &mut NodeStats,
        out: &mut Out,
        mut f: F,
    ) {
        self.dispatch_ahead(node, out, 0, |p, _, out| f(p, out));
    }

    /// [`Batch::dispatch`] that also shows `f` the packet `ahead` places further
    /// on (`None` near the end, or with `ahead` 0), before that packet's own turn:
    /// a stage prefetches the state that packet will need while it works on the
    /// one in hand (VPP's prefetch of packet n + k in its dual and quad loops),
    /// in the same pass, so the packet's header is read once more only while it is
    /// in the cache anyway.
    #[inline(always)]
    pub fn dispatch_ahead<F: FnMut(&mut Pkt, Option<&Pkt>, &mut Out) -> Next>(
        &mut self,
        node: &mut NodeStats,
        out: &mut Out,
        ahead: usize,
        mut f: F,
    ) {
        let n = self.len.min(BATCH_SIZE);
        self.len = 0; // a panic in `f` leaks packets rather than double-freeing them
        node.packets += n as u64;
        let base = self.pkts.as_mut_ptr().cast::<Pkt>();
        let mut w = 0;
        for r in 0..n {
            // SAFETY: r < n <= BATCH_SIZE: slot r is initialised and, until it is moved
            // below, owned by this loop; the packet is worked on in place.
            let slot = unsafe { &mut *base.add(r) };
            let later = match r.checked_add(ahead) {
                // SAFETY: r < r + ahead < n: that slot is initialised and not moved
                // yet (moves only write slots up to r), and is not `slot`.
                Some(a) if ahead > 0 && a < n => Some(unsafe { &*base.add(a) }),
                _ => None,
            };
            let mut next = f(slot, later, out);
            if let Next::Node(i) = next {
                // A next node that is also the default successor: the packet stays in
                // the batch in hand (no move; VPP's speculative enqueue).
                if out.edges.get(i as usize).copied() == Some(out.keep_idx) {
                    next = Next::Keep;
                }
            }
            if slot.meta.trace != 0 {
                let nn = match next {
                    Next::Node(i) => out.edge_names.get(i as usize).copied().unwrap_or(""),
                    Next::Keep => out.keep_name,
                    _ => "",
                };
                out.trace.record(node, slot, next, nn);
            }
            if let Next::Keep = next {
                if w != r {
                    // SAFETY: w < r: slot w was vacated earlier; move r there.
                    unsafe { core::ptr::copy_nonoverlapping(base.add(r), base.add(w), 1) };
                }
                w += 1;
            } else {
                // SAFETY: slot r is read out exactly once and not used again.
                let pkt = unsafe { core::ptr::read(base.add(r)) };
                out.send(node, pkt, next);
            }
        }
        self.len = w;
    }
}

impl Drop for Batch {
    fn drop(&mut self) {
        // Return any packets still held to their pools (never leak on shutdown).
        self.drain(|p| p.pool().free(p));
    }
}

/// Engine-level drop counters (packets a stage sent somewhere that could not take
/// them).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct OutStats {
    /// `Next::Port` named a port that does not exist.
    pub no_port: u64,
    /// A port's transmit batch was full.
    pub tx_full: u64,
    /// The punt batch was full.
    pub punt_full: u64,
    /// `Next::Node` named a next node the node did not declare, or was used outside
    /// a graph.
    pub no_edge: u64,
    /// A next node's input frame was full.
    pub frame_full: u64,
    /// `Next::Handoff` to a worker that does not exist (or without hand-off rings),
    /// or the hand-off batch to that worker was full.
    pub no_handoff: u64,
}

/// Everything a stage can send packets to, plus the worker's buffer cache, the trace
/// buffer and the current time.
pub struct Out {
    /// One transmit batch per port, indexed by port number.
    pub ports: Vec<Batch>,
    /// Packets for the control plane.
    pub punt: Batch,
    /// The worker's buffer cache (drops are freed here; stages that build packets
    /// allocate here).
    pub cache: PoolCache,
    /// Per-packet trace buffer.
    pub trace: Trace,
    /// Time of the current batch in nanoseconds of a monotonic clock.
    pub now_ns: u64,
    pub stats: OutStats,
    /// Input frame of every graph node (filled by `Next::Node`; see
    /// [`crate::graph::Graph`]).
    pub frames: Vec<Batch>,
    /// The running node's resolved next nodes (node index per `Next::Node` code).
    pub edges: [u16; MAX_NEXT],
    /// The running node's next-node names (for the trace).
    pub edge_names: &'static [&'static str],
    /// The running node's default successor (for the trace).
    pub keep_name: &'static str,
    /// The running node's default successor's index (`u16::MAX`: none).
    pub keep_idx: u16,
    /// The running node's index in the graph (where a handed-off packet resumes).
    pub node: u16,
    /// This worker's index among [`Out::workers`] (0 with one worker).
    pub worker: u16,
    /// How many workers run this graph (1: no hand-off; nodes that steer to an
    /// owner check this first, so one worker does no extra work).
    pub workers: u16,
    /// Packets for each other worker (`Next::Handoff`), indexed by worker; empty
    /// with one worker. The worker loop moves them onto the hand-off rings.
    pub handoff: Vec<Batch>,
}

impl Out {
    /// Sinks for `nports` ports over `cache` (allocates now, at start-up).
    pub fn new(nports: usize, cache: PoolCache) -> Self {
        let mut ports = Vec::with_capacity(nports);
        for _ in 0..nports {
            ports.push(Batch::new());
        }
        Out {
            ports,
            punt: Batch::new(),
            cache,
            trace: Trace::new(0),
            now_ns: 0,
            stats: OutStats::default(),
            frames: Vec::new(),
            edges: [u16::MAX; MAX_NEXT],
            edge_names: &[],
            keep_name: "",
            keep_idx: u16::MAX,
            node: u16::MAX,
            worker: 0,
            workers: 1,
            handoff: Vec::new(),
        }
    }

    /// The worker that owns hash value `h` among `n` workers (a multiply-shift
    /// instead of a division: `h * n >> 32`).
    #[inline(always)]
    pub fn owner_of(h: u32, n: u16) -> u16 {
        ((u64::from(h) * u64::from(n)) >> 32) as u16
    }

    /// Sends a packet to a next hop other than `Keep` (which is treated as a drop of
    /// reason 0 here: a stage outside a batch has nowhere to keep it).
    #[inline(always)]
    pub fn send(&mut self, node: &mut NodeStats, pkt: Pkt, next: Next) {
        match next {
            Next::Port(p) => match self.ports.get_mut(p as usize) {
                Some(b) => {
                    if let Err(pkt) = b.push(pkt) {
                        self.stats.tx_full += 1;
                        self.cache.free(pkt);
                    } else {
                        node.tx += 1;
                    }
                }
                None => {
                    self.stats.no_port += 1;
                    self.cache.free(pkt);
                }
            },
            Next::Punt => {
                if let Err(pkt) = self.punt.push(pkt) {
                    self.stats.punt_full += 1;
                    self.cache.free(pkt);
                } else {
                    node.punts += 1;
                }
            }
            Next::Drop(r) => {
                node.count_drop(r);
                self.cache.free(pkt);
            }
            Next::Node(i) => {
                let to = self.edges.get(i as usize).copied().unwrap_or(u16::MAX);
                match self.frames.get_mut(to as usize) {
                    Some(f) => {
                        if let Err(pkt) = f.push(pkt) {
                            self.stats.frame_full += 1;
                            self.cache.free(pkt);
                        }
                    }
                    None => {
                        self.stats.no_edge += 1;
                        self.cache.free(pkt);
                    }
                }
            }
            Next::Keep => {
                node.count_drop(0);
                self.cache.free(pkt);
            }
            Next::Handoff(w) => self.hand_to(w, pkt, node),
        }
    }

    #[cold]
    fn hand_to(&mut self, w: u16, mut pkt: Pkt, node: &mut NodeStats) {
        pkt.meta.resume = self.node;
        match self.handoff.get_mut(usize::from(w)) {
            Some(b) if w != self.worker => match b.push(pkt) {
                Ok(()) => node.handoffs += 1,
                Err(p) => {
                    self.stats.no_handoff += 1;
                    self.cache.free(p);
                }
            },
            _ => {
                self.stats.no_handoff += 1;
                self.cache.free(pkt);
            }
        }
    }

    /// Queues a packet a stage built itself (ARP request, ICMP error, ND message) on
    /// `port`; frees it and counts `tx_full`/`no_port` when it cannot. Returns true
    /// when queued.
    #[inline]
    pub fn emit(&mut self, port: u16, pkt: Pkt) -> bool {
        match self.ports.get_mut(port as usize) {
            Some(b) => match b.push(pkt) {
                Ok(()) => true,
                Err(p) => {
                    self.stats.tx_full += 1;
                    self.cache.free(p);
                    false
                }
            },
            None => {
                self.stats.no_port += 1;
                self.cache.free(pkt);
                false
            }
        }
    }

    /// Frees a packet (no counter).
    #[inline]
    pub fn free(&mut self, pkt: Pkt) {
        self.cache.free(pkt);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::buf::Pool;

    static ERRS: &[&str] = &["odd"];

    /// A batch of `n` one-octet packets numbered 0, 1, ….
    fn numbered(out: &mut Out, n: u8) -> Batch {
        let mut b = Batch::new();
        for i in 0..n {
            let mut p = out.cache.alloc().unwrap();
            p.copy_from(&[i]).unwrap();
            b.push(p).unwrap();
        }
        b
    }

    #[test]
    fn dispatch_sorts_and_keeps_order() {
        let pool = Pool::new(64).unwrap();
        let mut out = Out::new(2, pool.cache());
        let mut b = numbered(&mut out, 10);
        let mut node = NodeStats::new("t", ERRS);
        b.dispatch(&mut node, &mut out, |p, _| match p.data()[0] {
            0 => Next::Port(1),
            1 => Next::Punt,
            9 => Next::Port(7),
            x if x % 2 == 1 => Next::Drop(0),
            _ => Next::Keep,
        });
        let kept: Vec<u8> = b.iter().map(|p| p.data()[0]).collect();
        assert_eq!(kept, [2, 4, 6, 8]);
        assert_eq!(out.ports[1].len(), 1);
        assert_eq!(out.punt.len(), 1);
        assert_eq!(node.drops[0], 3);
        assert_eq!(out.stats.no_port, 1);
        assert_eq!(node.packets, 10);
        b.free_all(&mut out.cache);
        out.ports[1].free_all(&mut out.cache);
        out.punt.free_all(&mut out.cache);
        drop(out);
        assert_eq!(pool.available(), 64);
    }

    #[test]
    fn dispatch_ahead_shows_each_packet_before_its_turn() {
        let pool = Pool::new(64).unwrap();
        let mut out = Out::new(2, pool.cache());
        let mut b = numbered(&mut out, 10);
        let mut node = NodeStats::new("t", ERRS);
        let mut seen = Vec::new();
        // Packets kept in the batch move forward while the pass goes on; the one
        // shown ahead must still be the one that comes `ahead` places later.
        b.dispatch_ahead(&mut node, &mut out, 3, |p, later, _| {
            let x = p.data()[0];
            seen.push((x, later.map(|l| l.data()[0])));
            if x % 2 == 1 {
                Next::Drop(0)
            } else {
                Next::Keep
            }
        });
        let want: Vec<(u8, Option<u8>)> = (0..10u8)
            .map(|x| (x, (x + 3 < 10).then_some(x + 3)))
            .collect();
        assert_eq!(seen, want);
        let kept: Vec<u8> = b.iter().map(|p| p.data()[0]).collect();
        assert_eq!(kept, [0, 2, 4, 6, 8]);
        assert_eq!(node.drops[0], 5);
        // No packet ahead with 0, or past the end of the batch.
        let mut none = 0;
        b.dispatch_ahead(&mut node, &mut out, 0, |_, later, _| {
            none += usize::from(later.is_none());
            Next::Keep
        });
        assert_eq!(none, 5);
        b.dispatch_ahead(&mut node, &mut out, 5, |_, later, _| {
            assert!(later.is_none());
            Next::Keep
        });
        b.free_all(&mut out.cache);
        drop(out);
        assert_eq!(pool.available(), 64);
    }

    #[test]
    fn take_front_keeps_rest() {
        let pool = Pool::new(8).unwrap();
        let mut c = pool.cache();
        let mut b = Batch::new();
        for i in 0..5u8 {
            let mut p = c.alloc().unwrap();
            p.copy_from(&[i]).unwrap();
            b.push(p).unwrap();
        }
        let mut got = Vec::new();
        b.take_front(2, |p| {
            got.push(p.data()[0]);
            c.free(p)
        });
        assert_eq!(got, [0, 1]);
        let rest: Vec<u8> = b.iter().map(|p| p.data()[0]).collect();
        assert_eq!(rest, [2, 3, 4]);
        drop(b);
        drop(c);
        assert_eq!(pool.available(), 8);
    }
}
