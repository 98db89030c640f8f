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
}

impl Default for WorkerConfig {
    fn default() -> Self {
        WorkerConfig {
            trace: 0,
            tick_ns: 1_000_000,
            tx_policy: TxPolicy::Retry,
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
}

/// One worker: its ports (queues), its graph, its buffer cache and rings.
pub struct Worker<P: Port = Box<dyn Port>> {
    pub ports: Vec<P>,
    pub graph: Graph,
    pub out: Out,
    rx: Batch,
    punt: Option<PktRing>,
    inject: Option<PktRing>,
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
        work += self.transmit();
        if now_ns >= self.next_tick {
            self.next_tick = now_ns.saturating_add(self.cfg.tick_ns);
            self.graph.tick(&mut self.out);
            self.stats.ticks += 1;
            // timers may have queued packets (ARP refresh, retransmissions)
            self.hand_punts();
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
}
