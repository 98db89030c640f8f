//! The one worker loop every VNF runs, on Linux and in the unikernel alike:
//!
//! ```text
//!   table updates (between bursts) ─┐
//!   inject ring (control plane) ────┤
//!   rx_burst(port 0..n) ──> graph ──┼──> tx_burst(port 0..n)
//!                                   ├──> punt ring (control plane)
//!   timers (graph tick) ────────────┘
//! ```
//!
//! [`Worker::poll`] runs one iteration: apply pending table updates (each VNF
//! registers a hook that drains its own lock-free message queue, so updates never
//! stall the fast path and never take a lock), move packets the control plane
//! injected onto their ports, receive a burst from every port and run the graph on
//! it, hand punted packets to the control plane's ring, transmit, and run the
//! graph's timers when due. The std [`crate::runner`] runs one thread per worker
//! around it; the unikernel, the in-memory labs and the benches call `poll` from
//! their own loops (a lab interleaves it with its generator); nobody else writes an
//! rx → process → tx loop.
//!
//! The loop allocates nothing after [`Worker::new`]: batches and frames are
//! preallocated, rings are fixed-size.

use crate::batch::{Batch, Out};
use crate::buf::{Pkt, PoolCache};
use crate::graph::{Graph, GraphError};
use crate::port::Port;
use crate::stage::Trace;
use alloc::boxed::Box;
use alloc::sync::Arc;
use alloc::vec::Vec;
use crossbeam_queue::ArrayQueue;

/// A ring of packets between a worker and its control plane (punt or inject).
pub type PktRing = Arc<ArrayQueue<Pkt>>;

/// A ring of `cap` packets.
pub fn ring(cap: usize) -> PktRing {
    Arc::new(ArrayQueue::new(cap.max(1)))
}

/// One worker's end of the hand-off mesh (VPP's worker hand-off): a bounded
/// lock-free ring (single producer, single consumer, preallocated) from every
/// worker to every other. A node that finds a packet's state owned by another
/// worker answers [`crate::batch::Next::Handoff`]; the loop moves it onto the ring
/// to its owner after the burst, and the owner runs it from the same node on.
/// Full rings drop, counted ([`WorkerStats::handoff_dropped`]).
pub struct Handoff {
    me: u16,
    /// Ring to each worker (`None` for this one).
    to: Vec<Option<PktRing>>,
    /// Rings from the other workers.
    from: Vec<PktRing>,
}

impl Handoff {
    /// This worker's index.
    pub fn worker(&self) -> u16 {
        self.me
    }

    /// How many workers the mesh joins.
    pub fn workers(&self) -> u16 {
        self.to.len() as u16
    }
}

/// The hand-off mesh of `n` workers, rings of `cap` packets each (allocated now):
/// element `k` is worker `k`'s end.
pub fn handoff_mesh(n: usize, cap: usize) -> Vec<Handoff> {
    let n = n.clamp(1, usize::from(u16::MAX));
    // rings[from][to]
    let rings: Vec<Vec<Option<PktRing>>> = (0..n)
        .map(|f| (0..n).map(|t| (f != t).then(|| ring(cap))).collect())
        .collect();
    (0..n)
        .map(|k| Handoff {
            me: k as u16,
            to: rings[k].clone(),
            from: (0..n).filter_map(|f| rings[f][k].clone()).collect(),
        })
        .collect()
}

/// The control plane's side of every worker's punt and inject rings: punted
/// packets are read from all workers in turn; packets it sends go to one worker's
/// inject ring (the one that owns the subscriber or flow, or worker 0), which
/// transmits them on its own queue of their `meta.port`.
pub struct CtrlRings {
    pub punt: Vec<PktRing>,
    pub inject: Vec<PktRing>,
    next: usize,
}

impl CtrlRings {
    /// Rings for `n` workers, `cap` packets each; hand `punt[k]`/`inject[k]` to
    /// worker `k` ([`Worker::with_punt`], [`Worker::with_inject`]).
    pub fn new(n: usize, cap: usize) -> Self {
        let n = n.max(1);
        CtrlRings {
            punt: (0..n).map(|_| ring(cap)).collect(),
            inject: (0..n).map(|_| ring(cap)).collect(),
            next: 0,
        }
    }

    /// The next punted packet of any worker (round robin over the workers, so one
    /// busy worker cannot starve the others' punts), with the worker it came from.
    pub fn recv(&mut self) -> Option<(usize, Pkt)> {
        let n = self.punt.len();
        for k in 0..n {
            let w = (self.next + k) % n;
            if let Some(p) = self.punt.get(w).and_then(|q| q.pop()) {
                self.next = (w + 1) % n;
                return Some((w, p));
            }
        }
        None
    }

    /// Gives `pkt` to worker `w` for transmission on its `meta.port`; the packet
    /// back when that ring is full or `w` does not exist.
    pub fn send(&self, w: usize, pkt: Pkt) -> Result<(), Pkt> {
        match self.inject.get(w) {
            Some(q) => q.push(pkt),
            None => Err(pkt),
        }
    }
}

/// Table updates fanned out to every worker without stalling any: one bounded
/// lock-free queue per worker, each message cloned into every queue. A worker's
/// update hook drains its own queue between bursts ([`Fanout::receiver`]). A
/// full queue refuses the message for that worker (returned in the error count):
/// the sender retries or resynchronises; no worker ever waits. Requests that each
/// worker hands back once applied (management changes, state reports) go through
/// [`crate::mgmt_fanout`] instead.
pub struct Fanout<T> {
    queues: Vec<Arc<ArrayQueue<T>>>,
}

impl<T: Clone> Fanout<T> {
    /// Queues of `cap` messages for `n` workers.
    pub fn new(n: usize, cap: usize) -> Self {
        Fanout {
            queues: (0..n.max(1))
                .map(|_| Arc::new(ArrayQueue::new(cap.max(1))))
                .collect(),
        }
    }

    /// Worker `k`'s queue.
    pub fn receiver(&self, k: usize) -> Option<Arc<ArrayQueue<T>>> {
        self.queues.get(k).cloned()
    }

    /// Sends `msg` to every worker; returns how many workers' queues were full
    /// (0: delivered everywhere).
    pub fn send(&self, msg: T) -> usize {
        let mut full = 0;
        for q in &self.queues {
            if q.push(msg.clone()).is_err() {
                full += 1;
            }
        }
        full
    }

    /// Whether every worker has applied every message sent so far.
    pub fn drained(&self) -> bool {
        self.queues.iter().all(|q| q.is_empty())
    }
}

/// A table-update hook: called between bursts with the worker's graph; it drains
/// its VNF's update messages into the nodes' tables.
pub type Hook = Box<dyn FnMut(&mut Graph, &mut Out) + Send>;

/// What to do with packets a port could not take.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum TxPolicy {
    /// Keep them queued for the next iteration (back-pressure; once the queue is
    /// full new sends are counted `tx_full` drops).
    #[default]
    Retry,
    /// Free them now, counted in [`WorkerStats::tx_unsent`].
    Drop,
}

/// Worker settings.
#[derive(Clone, Copy, Debug)]
pub struct WorkerConfig {
    /// Trace buffer records (0: tracing off).
    pub trace: usize,
    /// Graph timers run at most this often, ns.
    pub tick_ns: u64,
    pub tx_policy: TxPolicy,
    /// Software RSS (with a hand-off mesh of several workers): every received
    /// packet gets its symmetric flow hash in `meta.hash`
    /// ([`crate::hash::frame_hash`]) and goes to the worker that hash names, so
    /// both directions of a flow meet on one worker even when the ports' own
    /// steering (a NIC's asymmetric RSS, a single queue) does not do it.
    pub soft_rss: bool,
}

impl Default for WorkerConfig {
    fn default() -> Self {
        WorkerConfig {
            trace: 0,
            tick_ns: 1_000_000,
            tx_policy: TxPolicy::Retry,
            soft_rss: false,
        }
    }
}

/// Loop counters of one worker.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct WorkerStats {
    /// Iterations of the loop.
    pub loops: u64,
    /// Iterations that moved no packet.
    pub idle_loops: u64,
    /// Packets received from the ports.
    pub rx_packets: u64,
    /// Packets the ports took for transmission.
    pub tx_packets: u64,
    /// Punted packets the control plane's ring could not take (or no ring).
    pub punt_dropped: u64,
    /// Packets handed to the control plane.
    pub punted: u64,
    /// Packets the control plane injected.
    pub injected: u64,
    /// Injected packets for a port that does not exist or whose queue was full.
    pub inject_dropped: u64,
    /// Packets a port could not take (with [`TxPolicy::Drop`]).
    pub tx_unsent: u64,
    /// Graph timer runs.
    pub ticks: u64,
    /// CPU cycles (the x86 time-stamp counter; nanoseconds elsewhere) spent in polls
    /// that moved a packet: the worker's busy time, counted by
    /// [`crate::runner`]'s loop (a worker polled by other code leaves it 0).
    pub busy_cycles: u64,
    /// Packets put on a hand-off ring to the worker that owns them.
    pub handed_off: u64,
    /// Packets taken from other workers' hand-off rings.
    pub handoff_received: u64,
    /// Packets dropped because the ring to their owner was full.
    pub handoff_dropped: u64,
}

/// One worker: its ports (queues), its graph, its buffer cache and rings.
///
/// Cache-line aligned: workers kept side by side (a `Vec<Worker>` stepped or
/// scoped onto threads) must not share a line, or one worker's per-loop writes
/// (`stats`, its batches) invalidate the line the next worker reads its ports and
/// graph from on every loop (false sharing).
#[repr(align(64))]
pub struct Worker<P: Port = Box<dyn Port>> {
    pub ports: Vec<P>,
    pub graph: Graph,
    pub out: Out,
    rx: Batch,
    punt: Option<PktRing>,
    inject: Option<PktRing>,
    handoff: Option<Handoff>,
    hooks: Vec<Hook>,
    cfg: WorkerConfig,
    next_tick: u64,
    pub stats: WorkerStats,
}

impl<P: Port> Worker<P> {
    /// A worker over `ports` (index = port number in the graph) running `graph`;
    /// seals the graph (an unknown next node or a cycle is an error here, at
    /// start-up) and preallocates its frames.
    pub fn new(
        ports: Vec<P>,
        mut graph: Graph,
        cache: PoolCache,
        cfg: WorkerConfig,
    ) -> Result<Self, GraphError> {
        graph.seal()?;
        let mut out = Out::new(ports.len(), cache);
        out.trace = Trace::new(cfg.trace);
        graph.prepare(&mut out);
        Ok(Worker {
            ports,
            graph,
            out,
            rx: Batch::new(),
            punt: None,
            inject: None,
            handoff: None,
            hooks: Vec::new(),
            cfg,
            next_tick: 0,
            stats: WorkerStats::default(),
        })
    }

    /// Punted packets go to `ring` (without one they are freed and counted).
    pub fn with_punt(mut self, ring: PktRing) -> Self {
        self.punt = Some(ring);
        self
    }

    /// Packets from `ring` are transmitted on the port in their `meta.port`.
    pub fn with_inject(mut self, ring: PktRing) -> Self {
        self.inject = Some(ring);
        self
    }

    /// Joins a hand-off mesh ([`handoff_mesh`]): nodes may answer
    /// `Next::Handoff(w)` and, with [`WorkerConfig::soft_rss`], received packets go
    /// to the worker their flow hash names. A mesh of one changes nothing.
    pub fn with_handoff(mut self, h: Handoff) -> Self {
        let n = h.workers();
        if n > 1 {
            self.out.worker = h.me;
            self.out.workers = n;
            self.out.handoff = (0..n).map(|_| Batch::new()).collect();
            self.handoff = Some(h);
        }
        self
    }

    /// Registers a table-update hook (start-up).
    pub fn on_update(mut self, hook: Hook) -> Self {
        self.hooks.push(hook);
        self
    }

    /// Registers a table-update hook on a running worker (start-up only).
    pub fn add_hook(&mut self, hook: Hook) {
        self.hooks.push(hook);
    }

    /// One iteration of the loop at time `now_ns` (monotonic); returns the packets
    /// received, injected and transmitted (0 = idle).
    pub fn poll(&mut self, now_ns: u64) -> usize {
        self.out.now_ns = now_ns;
        for h in self.hooks.iter_mut() {
            h(&mut self.graph, &mut self.out);
        }
        let mut work = self.take_injected();
        // Injected frames go out before the receive bursts: left in the transmit
        // queues, they would take room a full burst of forwarded packets needs, and
        // the overflow would be dropped as `tx_full`.
        if work > 0 {
            work += self.transmit();
        }
        if self.handoff.is_some() {
            work += self.take_handed_off();
        }
        for i in 0..self.ports.len() {
            let Some(p) = self.ports.get_mut(i) else {
                continue;
            };
            let n = p.rx_burst(&mut self.out.cache, &mut self.rx);
            if n == 0 {
                continue;
            }
            work += n;
            self.stats.rx_packets += n as u64;
            for pkt in self.rx.iter_mut() {
                pkt.meta.port = i as u16;
            }
            if self.cfg.soft_rss && self.handoff.is_some() {
                self.spread(i as u16);
            }
            self.graph.run(&mut self.rx, &mut self.out);
            // the graph ends every packet; anything left is a bug, never a leak
            self.rx.free_all(&mut self.out.cache);
            // Several ports' bursts may go out one port (hairpin, two access ports
            // to one core): send what this burst queued before the next one fills
            // the same transmit queue past its room.
            if i + 1 < self.ports.len()
                && self
                    .out
                    .ports
                    .iter()
                    .any(|b| b.room() < crate::batch::BATCH_SIZE)
            {
                work += self.transmit();
            }
        }
        self.hand_punts();
        if self.handoff.is_some() {
            self.push_handoffs();
        }
        work += self.transmit();
        if now_ns >= self.next_tick {
            self.next_tick = now_ns.saturating_add(self.cfg.tick_ns);
            self.graph.tick(&mut self.out);
            self.stats.ticks += 1;
            // timers may have queued packets (ARP refresh, retransmissions)
            self.hand_punts();
            if self.handoff.is_some() {
                self.push_handoffs();
            }
            work += self.transmit();
        }
        self.stats.loops += 1;
        if work == 0 {
            self.stats.idle_loops += 1;
        }
        work
    }

    fn take_injected(&mut self) -> usize {
        let Some(q) = &self.inject else {
            return 0;
        };
        let mut n = 0;
        // At most what every port's transmit queue can still take (a packet is for
        // any port; the ring cannot be peeked): the rest waits in the ring for the
        // next iteration instead of being dropped as `inject_dropped` (a lost PADS
        // costs a subscriber a restart timer). This also bounds the loop's latency.
        let budget = self.out.ports.iter().map(|b| b.room()).min().unwrap_or(0);
        while n < budget {
            let Some(p) = q.pop() else {
                break;
            };
            n += 1;
            let port = p.meta.port;
            if !self.out.emit(port, p) {
                self.stats.inject_dropped += 1;
            }
        }
        self.stats.injected += n as u64;
        n
    }

    /// Software RSS on the burst in hand (from `port`): packets whose flow hash
    /// names another worker leave for it, to resume at the port's entry node.
    fn spread(&mut self, port: u16) {
        let (me, n) = (self.out.worker, self.out.workers);
        let entry = self.graph.port_entry(port);
        let handoff = &mut self.out.handoff;
        let cache = &mut self.out.cache;
        let dropped = &mut self.stats.handoff_dropped;
        self.rx.retain(|mut p| {
            let h = crate::hash::frame_hash(p.data());
            p.meta.hash = h;
            let w = Out::owner_of(h, n);
            if w == me {
                return Some(p);
            }
            p.meta.resume = entry;
            match handoff.get_mut(usize::from(w)) {
                Some(b) => {
                    if let Err(p) = b.push(p) {
                        *dropped += 1;
                        cache.free(p);
                    }
                }
                None => cache.free(p),
            }
            None
        });
        // a full burst for one worker must not wait behind the next port's
        if handoff
            .iter()
            .any(|b| b.room() < crate::batch::BATCH_SIZE / 2)
        {
            self.push_handoffs();
        }
    }

    /// Moves the packets nodes handed off onto the rings to their owners.
    fn push_handoffs(&mut self) {
        let Some(h) = &self.handoff else {
            return;
        };
        let cache = &mut self.out.cache;
        let st = &mut self.stats;
        for (w, b) in self.out.handoff.iter_mut().enumerate() {
            if b.is_empty() {
                continue;
            }
            match h.to.get(w).and_then(|r| r.as_ref()) {
                Some(q) => b.drain(|p| match q.push(p) {
                    Ok(()) => st.handed_off += 1,
                    Err(p) => {
                        st.handoff_dropped += 1;
                        cache.free(p);
                    }
                }),
                None => {
                    st.handoff_dropped += b.len() as u64;
                    b.free_all(cache);
                }
            }
        }
    }

    /// Runs what other workers handed to this one: each packet joins the input
    /// frame of the node it resumes at, then the graph runs from the first of them.
    fn take_handed_off(&mut self) -> usize {
        let Some(h) = &self.handoff else {
            return 0;
        };
        let nodes = self.graph.len();
        let mut total = 0;
        let mut first = usize::MAX;
        for q in h.from.iter() {
            for _ in 0..crate::batch::BATCH_SIZE {
                let Some(p) = q.pop() else {
                    break;
                };
                total += 1;
                let at = usize::from(p.meta.resume);
                if at >= nodes {
                    // not a node of this graph: a bug in the sender, counted
                    self.stats.handoff_dropped += 1;
                    self.out.cache.free(p);
                    continue;
                }
                if self.out.frames.get(at).is_some_and(|f| f.is_full()) {
                    self.graph.run_frames(first.min(at), &mut self.out);
                    first = usize::MAX;
                }
                if let Some(f) = self.out.frames.get_mut(at) {
                    if let Err(p) = f.push(p) {
                        self.out.cache.free(p);
                    }
                }
                first = first.min(at);
            }
        }
        if first != usize::MAX {
            self.graph.run_frames(first, &mut self.out);
        }
        self.stats.handoff_received += total as u64;
        total
    }

    fn hand_punts(&mut self) {
        if self.out.punt.is_empty() {
            return;
        }
        let n = self.out.punt.len() as u64;
        match &self.punt {
            Some(q) => {
                let cache = &mut self.out.cache;
                let dropped = &mut self.stats.punt_dropped;
                self.out.punt.drain(|p| {
                    if let Err(p) = q.push(p) {
                        *dropped += 1;
                        cache.free(p);
                    }
                });
                self.stats.punted += n;
            }
            None => {
                self.stats.punt_dropped += n;
                self.out.punt.free_all(&mut self.out.cache);
            }
        }
    }

    fn transmit(&mut self) -> usize {
        let mut sent = 0;
        for (i, p) in self.ports.iter_mut().enumerate() {
            if let Some(b) = self.out.ports.get_mut(i) {
                if !b.is_empty() {
                    let k = p.tx_burst(&mut self.out.cache, b);
                    self.stats.tx_packets += k as u64;
                    sent += k;
                    if !b.is_empty() && self.cfg.tx_policy == TxPolicy::Drop {
                        self.stats.tx_unsent += b.len() as u64;
                        b.free_all(&mut self.out.cache);
                    }
                }
            }
        }
        sent
    }

    /// Transmits what is queued and gives punted packets to the control plane (on
    /// shutdown); packets a port still cannot take are freed and counted.
    pub fn flush(&mut self) {
        self.hand_punts();
        self.transmit();
        for b in self.out.ports.iter_mut() {
            self.stats.tx_unsent += b.len() as u64;
            b.free_all(&mut self.out.cache);
        }
    }

    /// Traces the next `n` packets (VPP `trace add`).
    pub fn trace_next(&mut self, n: u32) {
        self.graph.trace_next(n);
    }

    /// The decoded trace so far (VPP `show trace`).
    pub fn show_trace(&self) -> alloc::string::String {
        self.out.trace.format()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::buf::Pool;
    use crate::port::mem;

    #[test]
    fn injected_bursts_wait_in_the_ring_instead_of_dropping() {
        // 1000 frames injected at once for a port whose ring takes 64 per round: the
        // worker takes only what the port's queue can hold, the rest stays queued.
        let pool = Pool::new(4096).unwrap();
        let (a, mut peer) = mem::pair("w-a", "w-peer", 64).unwrap();
        let mut w = Worker::new(
            alloc::vec![a],
            Graph::new(),
            pool.cache(),
            WorkerConfig::default(),
        )
        .unwrap();
        let inject = ring(2048);
        w = w.with_inject(inject.clone());
        let mut c = pool.cache();
        for i in 0..1000u32 {
            let mut p = c.alloc().unwrap();
            p.copy_from(&i.to_be_bytes()).unwrap();
            p.meta.port = 0;
            inject.push(p).map_err(|_| ()).unwrap();
        }
        let mut got = 0;
        let mut b = Batch::new();
        for _ in 0..1000 {
            w.poll(0);
            while peer.rx_burst(&mut c, &mut b) > 0 {
                got += b.len();
                b.free_all(&mut c);
            }
            if got == 1000 {
                break;
            }
        }
        assert_eq!(got, 1000);
        assert_eq!(w.stats.inject_dropped, 0);
        assert_eq!(w.stats.injected, 1000);
    }

    /// More injected packets for one port than its queue holds, with two ports and a
    /// slow peer (the control plane answering thousands of subscribers at once): all
    /// of them go out, in order, none dropped; the inject ring waits while the port is
    /// full.
    #[test]
    fn injected_burst_for_one_of_two_ports_goes_out_in_order() {
        let pool = Pool::new(8192).unwrap();
        let (port, mut peer) = mem::pair("dut", "peer", 512).unwrap();
        let (dummy, _dummy_peer) = mem::pair("dut1", "peer1", 64).unwrap();
        let inject = ring(4096);
        let mut w = Worker::new(
            alloc::vec![port, dummy],
            Graph::new(),
            pool.cache(),
            WorkerConfig::default(),
        )
        .unwrap()
        .with_inject(inject.clone());
        let mut cache = pool.cache();
        const N: u32 = 3000;
        let (mut queued, mut got, mut now) = (0u32, Vec::new(), 0u64);
        let mut b = Batch::new();
        while got.len() < N as usize && now < 10_000 {
            while queued < N && !inject.is_full() {
                let mut p = cache.alloc().unwrap();
                p.copy_from(&queued.to_be_bytes()).unwrap();
                p.meta.port = 0;
                inject.push(p).unwrap();
                queued += 1;
            }
            w.poll(now);
            now += 1;
            // the peer drains slowly: one burst per iteration
            peer.rx_burst(&mut cache, &mut b);
            b.drain(|p| {
                let d = p.data();
                got.push(u32::from_be_bytes([d[0], d[1], d[2], d[3]]));
                cache.free(p);
            });
        }
        assert_eq!(w.stats.inject_dropped, 0);
        assert_eq!(w.out.stats.tx_full, 0);
        assert_eq!(got.len(), N as usize);
        assert!(got.iter().copied().eq(0..N), "in order");
        assert_eq!(w.stats.injected, u64::from(N));
    }

    /// Injected frames for a port and a full burst forwarded to the same port in one
    /// iteration (the vBNG's LCP Echo-Requests beside downstream traffic): all go
    /// out, none is dropped as `tx_full`.
    #[test]
    fn injected_frames_leave_room_for_a_full_forwarded_burst() {
        let pool = Pool::new(4096).unwrap();
        let (a, mut gen) = mem::pair("x-a", "x-gen", 1024).unwrap();
        let (b, mut sink) = mem::pair("x-b", "x-sink", 1024).unwrap();
        let mut g = Graph::new();
        g.add(
            alloc::boxed::Box::new(crate::stages::xconnect::Xconnect::new(alloc::vec![
                Some(1),
                Some(0)
            ])),
            None,
        );
        let inject = ring(64);
        let mut w = Worker::new(alloc::vec![a, b], g, pool.cache(), WorkerConfig::default())
            .unwrap()
            .with_inject(inject.clone());
        let mut c = pool.cache();
        for round in 0..10u32 {
            for i in 0..2u32 {
                let mut p = c.alloc().unwrap();
                p.copy_from(&[0xee; 60]).unwrap();
                p.data_mut()[..4].copy_from_slice(&(round * 2 + i).to_be_bytes());
                p.meta.port = 1;
                inject.push(p).map_err(|_| ()).unwrap();
            }
            let mut burst = Batch::new();
            for _ in 0..crate::batch::BATCH_SIZE {
                let mut p = c.alloc().unwrap();
                p.copy_from(&[0x11; 60]).unwrap();
                burst.push(p).map_err(|_| ()).unwrap();
            }
            gen.tx_burst(&mut c, &mut burst);
            assert!(burst.is_empty());
            w.poll(u64::from(round));
            let mut got = Batch::new();
            let mut n = 0;
            while sink.rx_burst(&mut c, &mut got) > 0 {
                n += got.len();
                got.free_all(&mut c);
            }
            assert_eq!(n, crate::batch::BATCH_SIZE + 2, "round {round}");
        }
        assert_eq!(w.out.stats.tx_full, 0);
        assert_eq!(w.stats.inject_dropped, 0);
    }

    /// Counts what enters it and keeps it.
    struct Count;
    impl crate::stage::Stage for Count {
        fn name(&self) -> &'static str {
            "count"
        }
        fn process(&mut self, b: &mut Batch, n: &mut crate::stage::NodeStats, o: &mut Out) {
            b.dispatch(n, o, |_, _| crate::batch::Next::Keep);
        }
    }

    /// Owner = first byte of the frame (or the flow hash's worker with `by_hash`);
    /// hands off what it does not own, sends the rest out port 0; drops (reason 0)
    /// a packet that arrived owned elsewhere twice or whose hash is wrong.
    struct Owner {
        by_hash: bool,
    }
    impl crate::stage::Stage for Owner {
        fn name(&self) -> &'static str {
            "owner"
        }
        fn errors(&self) -> &'static [&'static str] {
            &["wrong-worker"]
        }
        fn process(&mut self, b: &mut Batch, n: &mut crate::stage::NodeStats, o: &mut Out) {
            let by_hash = self.by_hash;
            b.dispatch(n, o, |p, o| {
                let owner = if by_hash {
                    if p.meta.hash != crate::hash::frame_hash(p.data()) {
                        return crate::batch::Next::Drop(0);
                    }
                    Out::owner_of(p.meta.hash, o.workers)
                } else {
                    u16::from(p.data()[0])
                };
                if owner == o.worker {
                    crate::batch::Next::Port(0)
                } else if by_hash {
                    // software RSS already sent it to its owner
                    crate::batch::Next::Drop(0)
                } else {
                    crate::batch::Next::Handoff(owner)
                }
            });
        }
    }

    fn two_workers(
        pool: &'static Pool,
        by_hash: bool,
    ) -> (Vec<Worker<mem::MemPort>>, Vec<mem::MemPort>) {
        let mesh = handoff_mesh(2, 1024);
        let mut ws = Vec::new();
        let mut peers = Vec::new();
        for (k, h) in mesh.into_iter().enumerate() {
            let (a, peer) = mem::pair(&alloc::format!("h{k}"), "peer", 1024).unwrap();
            let mut g = Graph::new();
            g.push(Box::new(Count));
            g.push(Box::new(Owner { by_hash }));
            let cfg = WorkerConfig {
                soft_rss: by_hash,
                ..WorkerConfig::default()
            };
            let w = Worker::new(alloc::vec![a], g, pool.cache(), cfg)
                .unwrap()
                .with_handoff(h);
            ws.push(w);
            peers.push(peer);
        }
        (ws, peers)
    }

    fn drain(peer: &mut mem::MemPort, c: &mut PoolCache) -> Vec<Vec<u8>> {
        let mut got = Vec::new();
        let mut b = Batch::new();
        while peer.rx_burst(c, &mut b) > 0 {
            b.drain(|p| {
                got.push(p.data().to_vec());
                c.free(p);
            });
        }
        got
    }

    /// A node's hand-off reaches the owner and resumes at the same node there
    /// (the nodes before it do not see the packet twice); nothing is lost.
    #[test]
    fn handoff_reaches_the_owner_and_resumes_at_the_node() {
        let pool = Pool::new(4096).unwrap();
        let mut c = pool.cache();
        let (mut ws, mut peers) = two_workers(pool, false);
        let mut b = Batch::new();
        for i in 0..200u8 {
            let mut p = c.alloc().unwrap();
            p.copy_from(&[i % 2, i, 0, 0]).unwrap();
            b.push(p).unwrap();
        }
        peers[0].tx_burst(&mut c, &mut b);
        for t in 0..4 {
            for w in ws.iter_mut() {
                w.poll(t);
            }
        }
        let got0 = drain(&mut peers[0], &mut c);
        let got1 = drain(&mut peers[1], &mut c);
        assert_eq!(got0.len(), 100);
        assert_eq!(got1.len(), 100);
        assert!(got0.iter().all(|f| f[0] == 0));
        assert!(got1.iter().all(|f| f[0] == 1));
        // in order on the owner
        let seq: Vec<u8> = got1.iter().map(|f| f[1]).collect();
        assert!(seq.windows(2).all(|w| w[0] < w[1]));
        assert_eq!(ws[0].stats.handed_off, 100);
        assert_eq!(ws[1].stats.handoff_received, 100);
        let count1 = ws[1].graph.nodes().next().unwrap().packets;
        assert_eq!(count1, 0, "resumed at `owner`, not at the entry node");
        let owner1 = ws[1].graph.nodes().nth(1).unwrap();
        assert_eq!((owner1.packets, owner1.dropped()), (100, 0));
        assert_eq!(ws[0].graph.nodes().nth(1).unwrap().handoffs, 100);
    }

    /// Software RSS: every packet reaches the worker its symmetric flow hash names,
    /// with `meta.hash` set, in both directions of each flow.
    #[test]
    fn soft_rss_sends_both_directions_to_the_hash_owner() {
        let pool = Pool::new(8192).unwrap();
        let mut c = pool.cache();
        let (mut ws, mut peers) = two_workers(pool, true);
        let frame = |src: u32, dst: u32, sp: u16, dp: u16| {
            let mut f = [0u8; 60];
            f[12] = 0x08;
            f[14] = 0x45;
            f[23] = 17;
            f[26..30].copy_from_slice(&src.to_be_bytes());
            f[30..34].copy_from_slice(&dst.to_be_bytes());
            f[34..36].copy_from_slice(&sp.to_be_bytes());
            f[36..38].copy_from_slice(&dp.to_be_bytes());
            f
        };
        let mut owners = [0usize; 2];
        // forward direction into worker 0's port, reverse into worker 1's
        for (k, rev) in [(0usize, false), (1, true)] {
            let mut b = Batch::new();
            for i in 0..128u32 {
                let (s, d, sp, dp) = (0x0a00_0000 + i, 0xc000_0201, 1000 + i as u16, 53);
                let f = if rev {
                    frame(d, s, dp, sp)
                } else {
                    frame(s, d, sp, dp)
                };
                owners[usize::from(Out::owner_of(crate::hash::frame_hash(&f), 2))] += 1;
                let mut p = c.alloc().unwrap();
                p.copy_from(&f).unwrap();
                b.push(p).unwrap();
            }
            peers[k].tx_burst(&mut c, &mut b);
        }
        for t in 0..4 {
            for w in ws.iter_mut() {
                w.poll(t);
            }
        }
        let got0 = drain(&mut peers[0], &mut c).len();
        let got1 = drain(&mut peers[1], &mut c).len();
        assert_eq!([got0, got1], owners, "each packet at its hash's worker");
        assert!(owners[0] > 0 && owners[1] > 0, "{owners:?}");
        for w in &ws {
            assert_eq!(w.graph.nodes().nth(1).unwrap().dropped(), 0);
        }
        let handed: u64 = ws.iter().map(|w| w.stats.handed_off).sum();
        let recv: u64 = ws.iter().map(|w| w.stats.handoff_received).sum();
        assert_eq!(handed, recv);
        assert!(handed > 0);
    }

    #[test]
    fn ctrl_rings_and_fanout_reach_every_worker() {
        let pool = Pool::new(64).unwrap();
        let mut c = pool.cache();
        let mut cr = CtrlRings::new(3, 4);
        for w in [2usize, 0, 2] {
            let mut p = c.alloc().unwrap();
            p.copy_from(&[w as u8]).unwrap();
            cr.punt[w].push(p).unwrap();
        }
        let mut from = Vec::new();
        while let Some((w, p)) = cr.recv() {
            assert_eq!(usize::from(p.data()[0]), w);
            from.push(w);
            c.free(p);
        }
        assert_eq!(from, [0, 2, 2]);
        let p = c.alloc().unwrap();
        assert!(cr.send(5, p).is_err_and(|p| {
            c.free(p);
            true
        }));
        let f: Fanout<u32> = Fanout::new(2, 2);
        assert_eq!(f.send(7), 0);
        assert_eq!(f.send(8), 0);
        assert_eq!(f.send(9), 2, "both queues full: refused, nobody waits");
        let r1 = f.receiver(1).unwrap();
        assert_eq!((r1.pop(), r1.pop(), r1.pop()), (Some(7), Some(8), None));
        assert!(!f.drained());
    }
}
