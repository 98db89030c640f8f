//! The vBNG on the engine's runtime (std): [`start`] runs a composed [`Vbng`]
//! ([`crate::vnf::build`]) over its ports, [`start_workers`] one with several
//! workers ([`crate::vnf::build_workers`]), with
//!
//! - each worker graph on a `dataplane::worker::Worker` in a thread of its own
//!   (`vbng-worker<k>`, pinned to its core with several workers or a core list),
//!   joined by the engine's hand-off mesh (a packet of a subscriber another worker
//!   owns is handed to it), table updates applied between bursts by
//!   [`crate::vnf::update_hook`], counters published every [`PUBLISH_EVERY`] for
//!   readers on other threads (a worker only ever `try_lock`s);
//! - the control side ([`Control`]: PPPoE, PPP, AAA, timers, RADIUS I/O) in another
//!   (`vbng-control`), fed by every worker's punt ring (read in turn) and sending
//!   through worker 0's inject ring (frames copied into pool buffers with
//!   `meta.port` set; what a full ring cannot take waits in a backlog); table
//!   updates go to every worker's own queues; it holds the control side's mutex for
//!   one round at a time;
//! - with a listen address, `dataplane::http::HttpServer` (threads of its own) serving
//!   `GET /metrics` (`?sessions` adds per-session series), `/sessions`, `/errors`,
//!   `/trace` (`?add=N` traces the next N packets) and `/graph`; `/sessions` and the
//!   control plane's counters are read under the control side's mutex, the data
//!   plane's from the worker's last publication.
//!
//! Poll loops that found nothing sleep briefly ([`IDLE_SLEEP`], longer
//! ([`IDLE_SLEEP_LONG`]) once idle for a while): the namespace labs share two cores
//! between subscribers, vBNG, core and FreeRADIUS.

use crate::radius_io::RadiusIo;
use crate::vnf::{update_hook, Control, Injector, Stats, Vbng};
use dataplane::buf::{Pool, PoolCache};
use dataplane::http::{Handler, HttpServer, Request, Response};
use dataplane::port::Port;
use dataplane::runner::WorkerSnapshot;
use dataplane::stage::show_errors;
use dataplane::worker::{handoff_mesh, ring, CtrlRings, PktRing, Worker, WorkerConfig};
use std::boxed::Box;
use std::format;
use std::net::SocketAddr;
use std::string::{String, ToString};
use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};
use std::vec::Vec;

/// Packets each hand-off ring between two workers holds.
const HANDOFF_RING: usize = 4096;
/// Most packets `--trace` and `/trace?add=N` trace at once.
pub const MAX_TRACE: u32 = 16384;
/// How often the worker publishes its counters for `/metrics`.
const PUBLISH_EVERY: Duration = Duration::from_millis(100);
/// An idle poll loop sleeps this long (the namespace labs share two cores between
/// subscribers, vBNG, core and FreeRADIUS; a spinning idle thread slows them down).
const IDLE_SLEEP: Duration = Duration::from_micros(50);
/// Idle polls in a row before the worker sleeps.
const IDLE_SPINS: u32 = 16;
/// The sleep of a loop idle for longer (about 50 ms of nothing).
pub const IDLE_SLEEP_LONG: Duration = Duration::from_micros(250);
/// Idle polls in a row before the worker sleeps [`IDLE_SLEEP_LONG`].
const IDLE_LONG: u32 = 1000;
/// The control thread's sleep when a round found nothing, and after about 50 ms of
/// nothing.
/// How often, at most, the IPoE lease journal is written while leases change.
pub const JOURNAL_EVERY: Duration = Duration::from_secs(1);
const CONTROL_SLEEP: Duration = Duration::from_micros(100);
const CONTROL_SLEEP_LONG: Duration = Duration::from_micros(500);

/// What the worker thread publishes and the HTTP threads read (never locked by the
/// worker except with `try_lock`).
struct Shared {
    /// One per worker.
    snap: Vec<Mutex<WorkerSnapshot>>,
    /// Packets to trace, asked for by `/trace?add=N` (taken by the worker).
    trace_req: AtomicU32,
}

/// Copies the worker's counters into `dst`, reusing its vectors (the engine's
/// snapshot, shared with the threaded runner).
fn publish(dst: &mut WorkerSnapshot, w: &Worker) {
    dataplane::runner::publish_counters(dst, w);
}

/// The worker thread: the engine's worker loop, counters published every
/// [`PUBLISH_EVERY`], a short sleep when a poll found nothing.
fn worker_thread(
    mut w: Worker,
    k: usize,
    core: Option<usize>,
    shared: Arc<Shared>,
    stop: Arc<AtomicBool>,
) -> WorkerSnapshot {
    if let Some(c) = core {
        if !dataplane::runner::pin_to(c) {
            tracing::warn!("vbng: worker {k} not pinned to core {c}");
        }
    }
    let Some(snap) = shared.snap.get(k) else {
        return WorkerSnapshot::default();
    };
    let t0 = Instant::now();
    let mut last_pub = Instant::now();
    let mut idle = 0u32;
    let mut trace_len = usize::MAX;
    loop {
        if stop.load(Ordering::Relaxed) {
            // The control thread has stopped: its last frames (PADTs, LCP
            // Terminate-Requests) are in the inject ring; send them, then what is queued.
            w.poll(t0.elapsed().as_nanos() as u64);
            w.flush();
            break;
        }
        let n = w.poll(t0.elapsed().as_nanos() as u64);
        if last_pub.elapsed() >= PUBLISH_EVERY {
            last_pub = Instant::now();
            // Worker 0 takes the trace request (the others trace what they were
            // asked at start).
            let t = if k == 0 {
                shared.trace_req.swap(0, Ordering::Relaxed)
            } else {
                0
            };
            if t > 0 {
                w.out.trace.clear();
                w.trace_next(t.min(MAX_TRACE));
            }
            if let Ok(mut s) = snap.try_lock() {
                publish(&mut s, &w);
                // The trace text is formatted only when it changed.
                let recs = w.out.trace.records().len();
                if recs != trace_len {
                    trace_len = recs;
                    s.trace = w.out.trace.format();
                }
            }
        }
        if n == 0 {
            idle += 1;
            if idle >= IDLE_LONG {
                std::thread::sleep(IDLE_SLEEP_LONG);
            } else if idle >= IDLE_SPINS {
                std::thread::sleep(IDLE_SLEEP);
            }
        } else {
            idle = 0;
        }
    }
    let mut fin = WorkerSnapshot::default();
    publish(&mut fin, &w);
    fin.trace = w.out.trace.format();
    if let Ok(mut s) = snap.lock() {
        *s = fin.clone();
    }
    fin
}

/// The control thread: punted frames in, timers, RADIUS, table updates out, the
/// control plane's frames to the inject ring (with a backlog), CGNAT block records
/// to the log. The control side is locked per round, never by the worker.
#[allow(clippy::too_many_arguments)]
fn control_thread(
    control: Arc<Mutex<Control>>,
    mut io: Option<RadiusIo>,
    punt: Vec<PktRing>,
    inject: PktRing,
    mut cache: PoolCache,
    stop: Arc<AtomicBool>,
    lease_journal: Option<std::path::PathBuf>,
    t0: Instant,
) {
    let mut inj = Injector::new();
    let mut journal_at = Instant::now();
    let mut journal_failed = false;
    let mut log = Vec::new();
    let mut idle = 0u32;
    loop {
        let stopping = stop.load(Ordering::Relaxed);
        let now_ms = t0.elapsed().as_millis() as u64;
        let mut work = 0;
        let mut leases: Option<Vec<u8>> = None;
        {
            let Ok(mut c) = control.lock() else {
                return;
            };
            // Every worker's punts, in turn (a busy worker cannot starve the others).
            for r in &punt {
                work += c.drain_punts(r, &mut cache, now_ms);
            }
            if let Some(io) = io.as_mut() {
                work += io.pump(&mut c.cp, now_ms);
            }
            let tx = c.poll(now_ms);
            work += tx.len();
            inj.queue(tx);
            if let Some(l) = &c.nat_log {
                while let Some(r) = l.pop() {
                    log.push(r);
                }
            }
            if stopping {
                if let Some(io) = io.as_mut() {
                    // What was queued in the last round reaches the journal.
                    io.flush(&mut c.cp);
                }
            }
            if lease_journal.is_some()
                && c.cp.ipoe_journal_due()
                && (stopping || journal_at.elapsed() >= JOURNAL_EVERY)
            {
                journal_at = Instant::now();
                let unix_ms = std::time::SystemTime::now()
                    .duration_since(std::time::UNIX_EPOCH)
                    .map_or(0, |d| d.as_millis() as u64);
                leases = c.cp.ipoe_journal(now_ms, unix_ms);
            }
        }
        // Written outside the lock: a slow disk does not hold the control plane.
        if let (Some(path), Some(b)) = (&lease_journal, leases.take()) {
            match crate::dhcp4::journal::save_atomic(path, &b) {
                Ok(()) => journal_failed = false,
                Err(e) if !journal_failed => {
                    journal_failed = true;
                    tracing::warn!(
                        journal = %path.display(),
                        "ipoe: lease journal {} not written: {e}",
                        path.display()
                    );
                }
                Err(_) => {}
            }
        }
        for r in log.drain(..) {
            tracing::info!(target: "vbng::cgnat", "{r}");
        }
        work += inj.flush(&inject, &mut cache);
        if stopping {
            break;
        }
        if work == 0 {
            idle += 1;
            std::thread::sleep(if idle > 500 {
                CONTROL_SLEEP_LONG
            } else {
                CONTROL_SLEEP
            });
        } else {
            idle = 0;
        }
    }
}

/// What the HTTP handler reads.
struct Http {
    control: Arc<Mutex<Control>>,
    shared: Arc<Shared>,
    stats: Stats,
    graph: String,
    /// The management API (with [`Options::config`]); locked after `control`.
    mgmt: Option<Mutex<crate::mgmt::Mgmt>>,
    /// The control plane's clock origin.
    t0: Instant,
}

impl Shared {
    /// Worker `k`'s last publication.
    fn snapshot(&self, k: usize) -> WorkerSnapshot {
        self.snap
            .get(k)
            .and_then(|s| s.lock().ok().map(|g| g.clone()))
            .unwrap_or_default()
    }

    /// Every worker's last publication.
    fn snapshots(&self) -> Vec<WorkerSnapshot> {
        (0..self.snap.len()).map(|k| self.snapshot(k)).collect()
    }
}

impl Http {
    fn snapshot(&self) -> WorkerSnapshot {
        self.shared.snapshot(0)
    }

    /// `show errors` of every worker (headed by the worker with several).
    fn errors(&self) -> String {
        let snaps = self.shared.snapshots();
        if snaps.len() == 1 {
            return snaps
                .first()
                .map(|s| show_errors(s.nodes.iter()))
                .unwrap_or_default();
        }
        let mut t = String::new();
        for (k, s) in snaps.iter().enumerate() {
            t += &format!("worker {k}:\n{}", show_errors(s.nodes.iter()));
        }
        t
    }

    fn metrics(&self, sessions: bool) -> String {
        let snaps = self.shared.snapshots();
        let mut p = dataplane::metrics::Prom::new();
        self.stats.prometheus(&mut p);
        // Port counters summed by port name over the workers (each worker's queue
        // or fanout socket of a port), with AF_PACKET ring overruns in rx_dropped.
        let mut ports: Vec<(&str, dataplane::port::PortStats)> = Vec::new();
        for snap in &snaps {
            for (name, st) in &snap.ports {
                let at = match ports.iter().position(|(n, _)| *n == name.as_str()) {
                    Some(i) => i,
                    None => {
                        ports.push((name.as_str(), Default::default()));
                        ports.len() - 1
                    }
                };
                if let Some((_, t)) = ports.get_mut(at) {
                    t.rx_packets += st.rx_packets;
                    t.rx_bytes += st.rx_bytes;
                    t.rx_dropped += st.rx_dropped;
                    t.tx_packets += st.tx_packets;
                    t.tx_bytes += st.tx_bytes;
                    t.tx_dropped += st.tx_dropped;
                }
            }
        }
        for (name, st) in &ports {
            p.port(name, st);
        }
        for (k, snap) in snaps.iter().enumerate() {
            let w = k.to_string();
            p.node_counters(&w, snap.counters.iter().map(|(n, c)| (*n, c)));
            p.worker(&w, &snap.worker, &snap.out);
            if k > 0 {
                // Worker 0's nodes are in the vBNG's own families below.
                p.nodes(&w, snap.nodes.iter());
            }
        }
        let Ok(c) = self.control.lock() else {
            return String::new();
        };
        let nodes = snaps.first().into_iter().flat_map(|s| s.nodes.iter());
        let mut body = crate::metrics::prometheus(&c.cp, nodes) + &p.finish();
        if sessions {
            body += &crate::metrics::prometheus_sessions(&c.cp);
        }
        body
    }

    /// The management API (RFC 8040 shape, [`crate::mgmt`]): under the control
    /// side's lock, so a change is applied between two control rounds at once.
    fn restconf(&self, r: &Request) -> Response {
        let Some(m) = &self.mgmt else {
            return Response::error(404, "no management API (vbng run without a config)");
        };
        let (Ok(mut c), Ok(mut m)) = (self.control.lock(), m.lock()) else {
            return Response::error(500, "control plane unavailable");
        };
        let now = self.t0.elapsed().as_millis() as u64;
        let a = m.handle(&r.method, &r.path, &r.query, &r.body, &mut c.cp, now);
        Response {
            status: a.status,
            content_type: if r.path.starts_with("/restconf/yang/") && a.status == 200 {
                "application/yang"
            } else {
                crate::mgmt::MEDIA
            },
            body: a.body,
        }
    }

    fn handle(&self, r: &Request) -> Response {
        if r.path == "/restconf" || r.path.starts_with("/restconf/") {
            return self.restconf(r);
        }
        if r.method != "GET" {
            return Response::error(405, "GET only");
        }
        match r.path.as_str() {
            "/metrics" => Response::metrics(self.metrics(r.query == "sessions")),
            "/sessions" => match self.control.lock() {
                Ok(c) => Response::text(crate::metrics::show_sessions(&c.cp)),
                Err(_) => Response::error(500, "control plane unavailable"),
            },
            "/errors" => Response::text(self.errors()),
            "/graph" => Response::text(self.graph.clone()),
            "/trace" => {
                if let Some(n) = r.query.strip_prefix("add=") {
                    return match n.parse::<u32>() {
                        Ok(n) if (1..=MAX_TRACE).contains(&n) => {
                            self.shared.trace_req.store(n, Ordering::Relaxed);
                            Response::text(format!(
                                "tracing the next {n} packets; GET /trace to see them\n"
                            ))
                        }
                        _ => Response::error(400, &format!("add=N with N in 1..={MAX_TRACE}")),
                    };
                }
                let t = self.snapshot().trace;
                Response::text(if t.is_empty() {
                    "no packets traced (GET /trace?add=N traces the next N)\n".to_string()
                } else {
                    t
                })
            }
            _ => Response::error(
                404,
                "try /metrics, /sessions, /errors, /trace, /graph or /restconf/data/vbng:vbng",
            ),
        }
    }
}

/// Settings of [`start`].
#[derive(Debug, Clone)]
pub struct Options {
    /// HTTP listen address (`127.0.0.1:9180`; port 0 for any), `None` for no server.
    pub listen: Option<String>,
    /// Trace the first N packets (0 to [`MAX_TRACE`]).
    pub trace: u32,
    /// Packet buffers in the pool.
    pub pool_buffers: u32,
    /// Punt and inject ring sizes.
    pub ring: usize,
    /// The IPoE lease journal (`[ipoe] lease_journal`): written atomically at most
    /// once a [`JOURNAL_EVERY`] while leases change, and when stopping.
    pub lease_journal: Option<std::path::PathBuf>,
    /// The configuration the vBNG runs: with it (and `listen`), the management API
    /// ([`crate::mgmt`]) is served under `/restconf`.
    pub config: Option<crate::config::Config>,
    /// Cores of the workers (`cores`), one per worker; empty: with several
    /// workers, worker k on core k; one worker is not pinned.
    pub cores: Vec<usize>,
}

impl Default for Options {
    fn default() -> Self {
        Options {
            listen: None,
            trace: 0,
            pool_buffers: 1 << 15,
            ring: 4096,
            lease_journal: None,
            config: None,
            cores: Vec::new(),
        }
    }
}

/// A running vBNG; [`Running::stop`] ends it.
pub struct Running {
    stop: Arc<AtomicBool>,
    /// One per worker.
    workers: Vec<JoinHandle<WorkerSnapshot>>,
    control_thread: JoinHandle<()>,
    /// The control side (locked one round at a time by the control thread).
    pub control: Arc<Mutex<Control>>,
    shared: Arc<Shared>,
    http: Option<HttpServer>,
}

/// What a stopped vBNG leaves: its final counters and trace.
pub struct Stopped {
    /// Worker 0's final counters (nodes, ports, loop, trace).
    pub worker: WorkerSnapshot,
    /// Every worker's final counters (worker 0's first).
    pub workers: Vec<WorkerSnapshot>,
    /// The control side.
    pub control: Arc<Mutex<Control>>,
}

/// Starts the vBNG `v` over `ports` (index 0 access, 1 core) with the RADIUS socket
/// `io` (if any): one worker ([`start_workers`] runs several). Errors (the buffer
/// pool, the graph, the listen address, threads) are one line.
pub fn start(
    v: Vbng,
    ports: Vec<Box<dyn Port>>,
    io: Option<RadiusIo>,
    opts: &Options,
) -> Result<Running, String> {
    start_workers(v, Vec::new(), vec![ports], io, opts)
}

/// Starts the vBNG `v` with one worker per graph (`v.graph`, then `more_graphs`
/// from [`crate::vnf::build_workers`]), worker k over `ports[k]` (its queues of
/// the access and the core port), pinned to [`Options::cores`]`[k]` (with several
/// workers and no list: core k). The workers are joined by a hand-off mesh: a
/// packet of a subscriber another worker owns is handed to it. Each worker has its
/// own punt and inject ring; the control thread reads every punt ring and sends
/// through worker 0's inject ring.
pub fn start_workers(
    v: Vbng,
    more_graphs: Vec<dataplane::graph::Graph>,
    ports: Vec<Vec<Box<dyn Port>>>,
    io: Option<RadiusIo>,
    opts: &Options,
) -> Result<Running, String> {
    let Vbng {
        graph,
        control,
        stats,
        nat,
        ..
    } = v;
    // The session slots the CGNAT was built for (its subscriber limit).
    let nat_slots = nat.as_ref().map_or(0, |n| n.max_subscribers);
    let mut graphs = Vec::with_capacity(1 + more_graphs.len());
    graphs.push(graph);
    graphs.extend(more_graphs);
    let n = graphs.len();
    if ports.len() != n {
        return Err(format!(
            "{n} worker(s) but ports for {} (one access and one core queue per worker)",
            ports.len()
        ));
    }
    let pool = Pool::new(opts.pool_buffers).ok_or("buffer pool: out of memory")?;
    let rings = CtrlRings::new(n, opts.ring);
    let trace = opts.trace.min(MAX_TRACE);
    let nat_link = crate::mgmt::NatLink::new();
    let describe = graphs.first().map(|g| g.describe()).unwrap_or_default();
    let mut mesh = handoff_mesh(n, HANDOFF_RING).into_iter();
    let mut ws = Vec::with_capacity(n);
    for (k, (mut graph, ports)) in graphs.into_iter().zip(ports).enumerate() {
        graph.trace_next(trace);
        let (Some(punt), Some(inject)) = (rings.punt.get(k), rings.inject.get(k)) else {
            return Err("control rings".to_string());
        };
        let mut w = Worker::new(
            ports,
            graph,
            pool.cache(),
            WorkerConfig {
                trace: if trace > 0 { 64 * trace as usize } else { 4096 },
                ..WorkerConfig::default()
            },
        )
        .map_err(|e| format!("vbng graph: {e}"))?
        .with_punt(punt.clone())
        .with_inject(inject.clone())
        .on_update(update_hook());
        if n == 1 {
            // CGNAT pool changes from the management API (`mgmt::nat_pool_hook`);
            // with several workers each nat44 owns a slice of the pool and a change
            // is refused (501) instead.
            w = w.on_update(crate::mgmt::nat_pool_hook(&nat_link));
        }
        if n > 1 {
            if let Some(h) = mesh.next() {
                w = w.with_handoff(h);
            }
        }
        ws.push(w);
    }
    let shared = Arc::new(Shared {
        snap: (0..n)
            .map(|_| Mutex::new(WorkerSnapshot::default()))
            .collect(),
        trace_req: AtomicU32::new(0),
    });
    let control = Arc::new(Mutex::new(control));
    let stop = Arc::new(AtomicBool::new(false));
    let t0 = Instant::now();
    let http = match &opts.listen {
        Some(a) => {
            let h = Http {
                control: control.clone(),
                shared: shared.clone(),
                stats,
                graph: describe,
                mgmt: opts.config.clone().map(|c| {
                    let m = crate::mgmt::Mgmt::new(c);
                    Mutex::new(if n == 1 {
                        m.with_nat_link(nat_link, nat_slots)
                    } else {
                        m
                    })
                }),
                t0,
            };
            let handler: Handler = Arc::new(move |r| h.handle(r));
            Some(HttpServer::spawn(a, handler).map_err(|e| format!("listen {a}: {e}"))?)
        }
        None => None,
    };
    let mut workers = Vec::with_capacity(n);
    for (k, w) in ws.into_iter().enumerate() {
        let (sh, st) = (shared.clone(), stop.clone());
        let core =
            (n > 1 || !opts.cores.is_empty()).then(|| dataplane::runner::core_for(k, &opts.cores));
        let spawned = std::thread::Builder::new()
            .name(format!("vbng-worker{k}"))
            .spawn(move || worker_thread(w, k, core, sh, st));
        match spawned {
            Ok(h) => workers.push(h),
            Err(e) => {
                stop.store(true, Ordering::Relaxed);
                for h in workers {
                    let _ = h.join();
                }
                return Err(format!("worker thread: {e}"));
            }
        }
    }
    let control_thread = {
        let (c, st, cache) = (control.clone(), stop.clone(), pool.cache());
        let lj = opts.lease_journal.clone();
        let punt = rings.punt.clone();
        let inject = rings.inject.first().cloned().unwrap_or_else(|| ring(1));
        let spawned = std::thread::Builder::new()
            .name("vbng-control".into())
            .spawn(move || control_thread(c, io, punt, inject, cache, st, lj, t0));
        match spawned {
            Ok(h) => h,
            Err(e) => {
                stop.store(true, Ordering::Relaxed);
                for h in workers {
                    let _ = h.join();
                }
                return Err(format!("control thread: {e}"));
            }
        }
    };
    Ok(Running {
        stop,
        workers,
        control_thread,
        control,
        shared,
        http,
    })
}

impl Running {
    /// The HTTP server's address (with a listen address).
    pub fn http_addr(&self) -> Option<SocketAddr> {
        self.http.as_ref().map(|h| h.addr())
    }

    /// Whether a thread ended on its own (a panic).
    pub fn is_finished(&self) -> bool {
        self.workers.iter().any(|w| w.is_finished()) || self.control_thread.is_finished()
    }

    /// Worker 0's last published counters.
    pub fn snapshot(&self) -> WorkerSnapshot {
        self.shared.snapshot(0)
    }

    /// Every worker's last published counters.
    pub fn snapshots(&self) -> Vec<WorkerSnapshot> {
        self.shared.snapshots()
    }

    /// Stops the control thread (its last frames reach the inject ring, RADIUS
    /// accounting reaches the journal), then the worker (it transmits what is
    /// queued), then the HTTP server.
    pub fn stop(self) -> Result<Stopped, String> {
        self.stop.store(true, Ordering::Relaxed);
        let c = self.control_thread.join();
        let ws: Vec<_> = self.workers.into_iter().map(|w| w.join()).collect();
        drop(self.http);
        c.map_err(|_| "control thread panicked".to_string())?;
        let mut workers = Vec::with_capacity(ws.len());
        for w in ws {
            workers.push(w.map_err(|_| "worker thread panicked".to_string())?);
        }
        Ok(Stopped {
            worker: workers.first().cloned().unwrap_or_default(),
            workers,
            control: self.control,
        })
    }
}

/// Each worker's (access, core) ports: one worker opens the specs as given; with
/// several, `afxdp:IFACE:QUEUE` ports give worker k queue QUEUE+k of each (the NIC's
/// RSS spreads the frames), `afpacket:IFACE` ports give each worker a socket of its
/// own in a fanout group (packet(7) `PACKET_FANOUT_HASH`: the kernel spreads the
/// frames by flow hash). A frame that reaches a worker not owning its subscriber is
/// handed over. Other port kinds have one queue: refused with several workers.
/// (`vbng` and `vbng-up` alike; errors are one line.)
pub fn open_ports(
    access: &str,
    core: &str,
    workers: u16,
) -> Result<Vec<Vec<Box<dyn Port>>>, String> {
    use dataplane::port::afpacket::{AfPacketPort, Config as AfConfig};
    use dataplane::port::spec::{open, PortSpec};
    let parse = |what: &str, s: &str| -> Result<PortSpec, String> {
        let p: PortSpec = s.parse().map_err(|e| format!("{what} port {s}: {e}"))?;
        if workers > 1 && !matches!(p, PortSpec::AfXdp { .. } | PortSpec::AfPacket { .. }) {
            return Err(format!(
                "{what} port {s}: workers = {workers} needs afxdp or afpacket ports (one queue per worker)"
            ));
        }
        Ok(p)
    };
    let specs = [parse("access", access)?, parse("core", core)?];
    let mut all: Vec<Vec<Box<dyn Port>>> = (0..workers.max(1)).map(|_| Vec::new()).collect();
    for (i, spec) in specs.iter().enumerate() {
        let what = if i == 0 { "access" } else { "core" };
        // A fanout group id of this process and port (unique in the namespace).
        let group = (std::process::id() as u16)
            .wrapping_mul(2)
            .wrapping_add(i as u16);
        for (k, ports) in all.iter_mut().enumerate() {
            let p: Box<dyn Port> = match spec {
                PortSpec::AfXdp { iface, queue } if workers > 1 => {
                    let q = PortSpec::AfXdp {
                        iface: iface.clone(),
                        queue: queue + k as u32,
                    };
                    open(&q).map_err(|e| format!("{what} port {q}: {e}"))?
                }
                PortSpec::AfPacket { iface } if workers > 1 => {
                    let cfg = AfConfig {
                        fanout: Some(group),
                        ..AfConfig::default()
                    };
                    Box::new(
                        AfPacketPort::open(iface, &cfg)
                            .map_err(|e| format!("{what} port {spec} (worker {k}): {e}"))?,
                    )
                }
                other => open(other).map_err(|e| format!("{what} port {other}: {e}"))?,
            };
            ports.push(p);
        }
    }
    Ok(all)
}
