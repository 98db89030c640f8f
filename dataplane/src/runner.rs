//! Run-to-completion workers (std): one thread per worker, pinned to a core, each
//! polling its own ports (queues), running its own pipeline copy and transmitting.
//!
//! Flow affinity comes from the ports: a multi-queue port steers by the symmetric
//! flow hash ([`crate::hash`]), so both directions of a flow reach the same worker,
//! as symmetric RSS on a NIC does. Workers stop gracefully when [`Runner::stop`] is
//! called (they finish the batch in hand and flush their transmit queues). Counters
//! are published by each worker every few thousand loop iterations with a
//! `try_lock` (the worker never waits for a reader) and are read as one Prometheus
//! text with [`Runner::prometheus`].

use crate::batch::OutStats;
use crate::buf::PoolCache;
use crate::metrics::Prom;
use crate::port::{Port, PortStats};
use crate::stage::{Counter, NodeStats, Pipeline};
use crate::worker::{Handoff, Hook, PktRing, TxPolicy, Worker, WorkerConfig, WorkerStats};
use std::boxed::Box;
use std::string::{String, ToString};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::Instant;
use std::vec::Vec;

/// What a worker runs.
pub struct WorkerSpec {
    /// Ports (queues) this worker polls; index = port number in its pipeline.
    pub ports: Vec<Box<dyn Port>>,
    pub pipeline: Pipeline,
    pub cache: PoolCache,
    /// Core to pin to (`None`: no pinning).
    pub core: Option<usize>,
    /// Where punted packets go (`None`: they are freed and counted).
    pub punt: Option<PktRing>,
    /// Packets the control plane sends (transmitted on their `meta.port`).
    pub inject: Option<PktRing>,
    /// Table-update hooks run between bursts.
    pub hooks: Vec<Hook>,
    /// Trace buffer size (0 disables tracing).
    pub trace: usize,
    /// This worker's end of the hand-off mesh ([`crate::worker::handoff_mesh`]);
    /// `None` with one worker.
    pub handoff: Option<Handoff>,
    /// Software RSS over the hand-off mesh ([`WorkerConfig::soft_rss`]).
    pub soft_rss: bool,
}

impl WorkerSpec {
    /// A worker over `ports` running `pipeline`, unpinned, without rings or hooks.
    pub fn new(ports: Vec<Box<dyn Port>>, pipeline: Pipeline, cache: PoolCache) -> Self {
        WorkerSpec {
            ports,
            pipeline,
            cache,
            core: None,
            punt: None,
            inject: None,
            hooks: Vec::new(),
            trace: 0,
            handoff: None,
            soft_rss: false,
        }
    }
}

/// A worker's published counters.
#[derive(Clone, Debug, Default)]
pub struct WorkerSnapshot {
    pub nodes: Vec<NodeStats>,
    pub ports: Vec<(String, PortStats)>,
    pub loops: u64,
    pub idle_loops: u64,
    pub punt_dropped: u64,
    pub tx_unsent: u64,
    pub trace: String,
    /// Every loop counter of the worker.
    pub worker: WorkerStats,
    /// Engine-level drops (full transmit queues, missing ports or edges).
    pub out: OutStats,
    /// The nodes' own counters.
    pub counters: Vec<(&'static str, Counter)>,
    /// Why the worker did not start (its graph did not build).
    pub error: Option<String>,
}

struct Shared {
    snap: Mutex<WorkerSnapshot>,
}

/// Running workers.
pub struct Runner {
    stop: Arc<AtomicBool>,
    handles: Vec<JoinHandle<WorkerSnapshot>>,
    shared: Vec<Arc<Shared>>,
}

/// A cycle counter read: the time-stamp counter on x86_64 (constant rate on every
/// CPU this targets), a monotonic nanosecond clock elsewhere.
#[inline]
pub fn cycles() -> u64 {
    #[cfg(target_arch = "x86_64")]
    {
        // SAFETY: rdtsc has no preconditions on x86_64.
        unsafe { core::arch::x86_64::_rdtsc() }
    }
    #[cfg(not(target_arch = "x86_64"))]
    {
        static T0: std::sync::OnceLock<Instant> = std::sync::OnceLock::new();
        T0.get_or_init(Instant::now).elapsed().as_nanos() as u64
    }
}

/// Ticks per second of [`cycles`], measured over 50 ms.
pub fn cycles_hz() -> f64 {
    let (c0, t0) = (cycles(), Instant::now());
    std::thread::sleep(core::time::Duration::from_millis(50));
    let (c1, t1) = (cycles(), Instant::now());
    c1.wrapping_sub(c0) as f64 / (t1 - t0).as_secs_f64()
}

/// Pins the calling thread to `core` (`core_affinity`); false when the core does
/// not exist or pinning failed.
pub fn pin_to(core: usize) -> bool {
    core_affinity::set_for_current(core_affinity::CoreId { id: core })
}

/// Core of worker `k` among `n`: `cores[k]` when a core list is given, else `k`
/// wrapped at the machine's core count.
pub fn core_for(k: usize, cores: &[usize]) -> usize {
    match cores.get(k) {
        Some(&c) => c,
        None => {
            let avail = std::thread::available_parallelism()
                .map(|n| n.get())
                .unwrap_or(1);
            k % avail
        }
    }
}

/// Nanoseconds since `t0`.
fn now_ns(t0: Instant) -> u64 {
    t0.elapsed().as_nanos() as u64
}

fn worker(spec: WorkerSpec, stop: Arc<AtomicBool>, shared: Arc<Shared>) -> WorkerSnapshot {
    if let Some(c) = spec.core {
        let _ = core_affinity::set_for_current(core_affinity::CoreId { id: c });
    }
    let cfg = WorkerConfig {
        trace: spec.trace,
        tx_policy: TxPolicy::Drop,
        soft_rss: spec.soft_rss,
        ..WorkerConfig::default()
    };
    let mut w = match Worker::new(spec.ports, spec.pipeline, spec.cache, cfg) {
        Ok(w) => w,
        Err(e) => {
            let s = WorkerSnapshot {
                error: Some(e.to_string()),
                ..Default::default()
            };
            if let Ok(mut d) = shared.snap.lock() {
                *d = s.clone();
            }
            return s;
        }
    };
    if let Some(q) = spec.punt {
        w = w.with_punt(q);
    }
    if let Some(q) = spec.inject {
        w = w.with_inject(q);
    }
    if let Some(h) = spec.handoff {
        w = w.with_handoff(h);
    }
    for h in spec.hooks {
        w.add_hook(h);
    }
    let t0 = Instant::now();
    let mut snap = WorkerSnapshot::default();
    let mut now = now_ns(t0);
    loop {
        let stopping = stop.load(Ordering::Relaxed);
        if stopping {
            w.flush();
            break;
        }
        let c0 = cycles();
        let busy = w.poll(now) > 0;
        if busy {
            w.stats.busy_cycles += cycles().wrapping_sub(c0);
        }
        if w.stats.loops & 63 == 0 {
            now = now_ns(t0);
        }
        if w.stats.loops & 4095 == 0 {
            if let Ok(mut s) = shared.snap.try_lock() {
                publish(&mut s, &w);
            }
        }
        if !busy {
            std::hint::spin_loop();
        }
    }
    publish(&mut snap, &w);
    if let Ok(mut s) = shared.snap.lock() {
        s.clone_from(&snap);
    }
    snap
}

/// Copies a worker's counters and its trace text into `dst` (the trace is only
/// formatted when records exist).
fn publish<P: Port>(dst: &mut WorkerSnapshot, w: &Worker<P>) {
    publish_counters(dst, w);
    if !w.out.trace.records().is_empty() {
        dst.trace = w.out.trace.format();
    }
}

/// Copies a worker's counters (loop, engine, nodes, node counters, ports) into
/// `dst`, reusing its vectors: no allocation once the shapes match. For VNFs that
/// run their own worker thread and publish the same snapshot.
pub fn publish_counters<P: Port>(dst: &mut WorkerSnapshot, w: &Worker<P>) {
    let st = &w.stats;
    dst.loops = st.loops;
    dst.idle_loops = st.idle_loops;
    dst.punt_dropped = st.punt_dropped;
    dst.tx_unsent = st.tx_unsent;
    dst.worker = *st;
    dst.out = w.out.stats;
    let mut k = 0;
    for n in w.graph.nodes() {
        match dst.nodes.get_mut(k) {
            Some(d) => d.copy_from(n),
            None => dst.nodes.push(n.clone()),
        }
        k += 1;
    }
    dst.nodes.truncate(k);
    dst.counters.clear();
    let c = &mut dst.counters;
    w.graph.counters(&mut |node, ctr| c.push((node, ctr)));
    let mut k = 0;
    for p in w.ports.iter() {
        match dst.ports.get_mut(k) {
            Some((name, s)) => {
                if name != p.name() {
                    *name = p.name().to_string();
                }
                *s = p.stats();
            }
            None => dst.ports.push((p.name().to_string(), p.stats())),
        }
        k += 1;
    }
    dst.ports.truncate(k);
}

impl Runner {
    /// Starts one thread per worker.
    pub fn start(workers: Vec<WorkerSpec>) -> std::io::Result<Runner> {
        let stop = Arc::new(AtomicBool::new(false));
        let mut handles = Vec::new();
        let mut shared = Vec::new();
        for (i, w) in workers.into_iter().enumerate() {
            let sh = Arc::new(Shared {
                snap: Mutex::new(WorkerSnapshot::default()),
            });
            let (st, s2) = (stop.clone(), sh.clone());
            let h = std::thread::Builder::new()
                .name(std::format!("worker{i}"))
                .spawn(move || worker(w, st, s2))?;
            handles.push(h);
            shared.push(sh);
        }
        Ok(Runner {
            stop,
            handles,
            shared,
        })
    }

    /// A handle that reads the workers' published counters from another thread (a
    /// metrics server): `Send + Sync + Clone`, never blocks a worker.
    pub fn snapshot_source(&self) -> SnapshotSource {
        SnapshotSource {
            shared: self.shared.clone(),
        }
    }

    /// The stop flag (e.g. for a Ctrl-C handler).
    pub fn stop_flag(&self) -> Arc<AtomicBool> {
        self.stop.clone()
    }

    /// Latest published counters of every worker.
    pub fn snapshots(&self) -> Vec<WorkerSnapshot> {
        self.shared
            .iter()
            .map(|s| s.snap.lock().map(|g| g.clone()).unwrap_or_default())
            .collect()
    }

    /// All counters as Prometheus text.
    pub fn prometheus(&self) -> String {
        prometheus(&self.snapshots())
    }

    /// Asks the workers to stop and waits for them; returns their final counters.
    pub fn stop(self) -> Vec<WorkerSnapshot> {
        self.stop.store(true, Ordering::Relaxed);
        self.handles
            .into_iter()
            .map(|h| h.join().unwrap_or_default())
            .collect()
    }
}

/// Reads the workers' latest published counters (see [`Runner::snapshot_source`]).
#[derive(Clone)]
pub struct SnapshotSource {
    shared: Vec<Arc<Shared>>,
}

impl SnapshotSource {
    /// Latest published counters of every worker.
    pub fn snapshots(&self) -> Vec<WorkerSnapshot> {
        self.shared
            .iter()
            .map(|s| s.snap.lock().map(|g| g.clone()).unwrap_or_default())
            .collect()
    }
}

/// Prometheus text for a set of worker snapshots: per-node packets, transmits,
/// punts and every declared drop reason (zero included), the nodes' own counters,
/// port counters and the loop's counters, labelled by worker.
pub fn prometheus(snaps: &[WorkerSnapshot]) -> String {
    let mut p = Prom::new();
    for (i, s) in snaps.iter().enumerate() {
        let w = i.to_string();
        p.nodes(&w, s.nodes.iter());
        p.node_counters(&w, s.counters.iter().map(|(n, c)| (*n, c)));
        for (name, st) in &s.ports {
            p.port(&std::format!("{name}/w{w}"), st);
        }
        p.worker(&w, &s.worker, &s.out);
    }
    p.finish()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::batch::{Batch, Next, Out};
    use crate::buf::Pool;
    use crate::port::mem;
    use crate::stage::Stage;

    /// Sends everything from port 0 to port 1 and back.
    struct Cross;
    impl Stage for Cross {
        fn name(&self) -> &'static str {
            "cross"
        }
        fn process(&mut self, b: &mut Batch, n: &mut NodeStats, o: &mut Out) {
            b.dispatch(n, o, |p, _| Next::Port(1 - p.meta.port.min(1)));
        }
    }

    #[test]
    fn two_workers_forward_and_stop_gracefully() {
        let pool = Pool::new(8192).unwrap();
        let (mut gen, wa) = mem::mq_pair("gen", "a", 2, 256).unwrap();
        let (mut sink, wb) = mem::mq_pair("sink", "b", 2, 256).unwrap();
        let mut specs = Vec::new();
        for (k, (a, b)) in wa.into_iter().zip(wb).enumerate() {
            let mut pl = Pipeline::new();
            pl.push(Box::new(Cross));
            let mut spec = WorkerSpec::new(
                std::vec![Box::new(a) as Box<dyn Port>, Box::new(b)],
                pl,
                pool.cache(),
            );
            spec.core = Some(k);
            specs.push(spec);
        }
        let r = Runner::start(specs).unwrap();
        let mut c = pool.cache();
        let mut sent = 0u64;
        let mut got = 0u64;
        let t = Instant::now();
        let mut last_progress = Instant::now();
        // run until everything was offered and nothing arrived for half a second
        while (sent < 10_000 || last_progress.elapsed().as_millis() < 500)
            && t.elapsed().as_secs() < 30
        {
            if sent < 10_000 {
                let mut b = Batch::new();
                for i in 0..64u64 {
                    let mut p = c.alloc().unwrap();
                    let mut f = [0u8; 60];
                    f[12] = 0x08;
                    f[14] = 0x45;
                    f[23] = 17;
                    f[26..34].copy_from_slice(&(sent + i).to_be_bytes());
                    p.copy_from(&f).unwrap();
                    b.push(p).unwrap();
                }
                sent += gen.tx_burst(&mut c, &mut b) as u64;
                b.free_all(&mut c);
            }
            let mut rb = Batch::new();
            let n = sink.rx_burst(&mut c, &mut rb) as u64;
            if n > 0 {
                last_progress = Instant::now();
            }
            got += n;
            rb.free_all(&mut c);
        }
        let text = r.prometheus();
        let fin = r.stop();
        assert_eq!(fin.len(), 2);
        let total: u64 = fin.iter().map(|s| s.nodes[0].packets).sum();
        assert_eq!(total, sent);
        // every packet is accounted for: received, or counted as unsent when the
        // sink's queue was full (the test thread can be descheduled)
        let unsent: u64 = fin.iter().map(|s| s.tx_unsent).sum();
        assert_eq!(got + unsent, sent);
        assert!(got > sent / 2, "{got} of {sent}");
        assert!(
            fin.iter().all(|s| s.nodes[0].packets > 0),
            "both workers got flows"
        );
        let _ = text;
        let text = prometheus(&fin);
        assert!(text.contains("dp_node_packets_total{worker=\"1\",node=\"cross\"}"));
    }
}
