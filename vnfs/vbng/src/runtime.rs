//! The vBNG on the engine's runtime (std): [`start`] runs a composed [`Vbng`]
//! ([`crate::vnf::build`]) over its ports with
//!
//! - the worker graph on a `dataplane::worker::Worker` in a thread of its own
//!   (`vbng-worker`), table updates applied between bursts by
//!   [`crate::vnf::update_hook`], counters published every [`PUBLISH_EVERY`] for
//!   readers on other threads (the worker only ever `try_lock`s);
//! - the control side ([`Control`]: PPPoE, PPP, AAA, timers, RADIUS I/O) in another
//!   (`vbng-control`), fed by the worker's punt ring and sending through its inject
//!   ring (frames copied into pool buffers with `meta.port` set; what a full ring
//!   cannot take waits in a backlog); it holds the control side's mutex for one round
//!   at a time;
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
use dataplane::worker::{ring, PktRing, Worker, WorkerConfig};
use std::boxed::Box;
use std::format;
use std::net::SocketAddr;
use std::string::{String, ToString};
use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};
use std::vec::Vec;

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
    snap: Mutex<WorkerSnapshot>,
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
fn worker_thread(mut w: Worker, shared: Arc<Shared>, stop: Arc<AtomicBool>) -> WorkerSnapshot {
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
            let t = shared.trace_req.swap(0, Ordering::Relaxed);
            if t > 0 {
                w.out.trace.clear();
                w.trace_next(t.min(MAX_TRACE));
            }
            if let Ok(mut s) = shared.snap.try_lock() {
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
    if let Ok(mut s) = shared.snap.lock() {
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
    punt: PktRing,
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
            work += c.drain_punts(&punt, &mut cache, now_ms);
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

impl Http {
    fn snapshot(&self) -> WorkerSnapshot {
        self.shared
            .snap
            .lock()
            .map(|g| g.clone())
            .unwrap_or_default()
    }

    fn metrics(&self, sessions: bool) -> String {
        let snap = self.snapshot();
        let mut p = dataplane::metrics::Prom::new();
        self.stats.prometheus(&mut p);
        p.node_counters("0", snap.counters.iter().map(|(n, c)| (*n, c)));
        // Port counters, with AF_PACKET ring overruns in rx_dropped.
        for (name, st) in &snap.ports {
            p.port(name, st);
        }
        p.worker("0", &snap.worker, &snap.out);
        let Ok(c) = self.control.lock() else {
            return String::new();
        };
        let mut body = crate::metrics::prometheus(&c.cp, snap.nodes.iter()) + &p.finish();
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
            "/errors" => Response::text(show_errors(self.snapshot().nodes.iter())),
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
        }
    }
}

/// A running vBNG; [`Running::stop`] ends it.
pub struct Running {
    stop: Arc<AtomicBool>,
    worker: JoinHandle<WorkerSnapshot>,
    control_thread: JoinHandle<()>,
    /// The control side (locked one round at a time by the control thread).
    pub control: Arc<Mutex<Control>>,
    shared: Arc<Shared>,
    http: Option<HttpServer>,
}

/// What a stopped vBNG leaves: its final counters and trace.
pub struct Stopped {
    /// The worker's final counters (nodes, ports, loop, trace).
    pub worker: WorkerSnapshot,
    /// The control side.
    pub control: Arc<Mutex<Control>>,
}

/// Starts the vBNG `v` over `ports` (index 0 access, 1 core) with the RADIUS socket
/// `io` (if any). Errors (the buffer pool, the graph, the listen address, threads)
/// are one line.
pub fn start(
    v: Vbng,
    ports: Vec<Box<dyn Port>>,
    io: Option<RadiusIo>,
    opts: &Options,
) -> Result<Running, String> {
    let Vbng {
        mut graph,
        control,
        stats,
        nat,
        ..
    } = v;
    // The session slots the CGNAT was built for (its subscriber limit).
    let nat_slots = nat.as_ref().map_or(0, |n| n.max_subscribers);
    let pool = Pool::new(opts.pool_buffers).ok_or("buffer pool: out of memory")?;
    let (punt, inject) = (ring(opts.ring), ring(opts.ring));
    let trace = opts.trace.min(MAX_TRACE);
    graph.trace_next(trace);
    let describe = graph.describe();
    let w = Worker::new(
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
    // CGNAT pool changes from the management API (`mgmt::nat_pool_hook`).
    let nat_link = crate::mgmt::NatLink::new();
    let w = w.on_update(crate::mgmt::nat_pool_hook(&nat_link));
    let shared = Arc::new(Shared {
        snap: Mutex::new(WorkerSnapshot::default()),
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
                    let m = crate::mgmt::Mgmt::new(c).with_nat_link(nat_link, nat_slots);
                    Mutex::new(m)
                }),
                t0,
            };
            let handler: Handler = Arc::new(move |r| h.handle(r));
            Some(HttpServer::spawn(a, handler).map_err(|e| format!("listen {a}: {e}"))?)
        }
        None => None,
    };
    let worker = {
        let (sh, st) = (shared.clone(), stop.clone());
        std::thread::Builder::new()
            .name("vbng-worker".into())
            .spawn(move || worker_thread(w, sh, st))
            .map_err(|e| format!("worker thread: {e}"))?
    };
    let control_thread = {
        let (c, st, cache) = (control.clone(), stop.clone(), pool.cache());
        let lj = opts.lease_journal.clone();
        let spawned = std::thread::Builder::new()
            .name("vbng-control".into())
            .spawn(move || control_thread(c, io, punt, inject, cache, st, lj, t0));
        match spawned {
            Ok(h) => h,
            Err(e) => {
                stop.store(true, Ordering::Relaxed);
                let _ = worker.join();
                return Err(format!("control thread: {e}"));
            }
        }
    };
    Ok(Running {
        stop,
        worker,
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
        self.worker.is_finished() || self.control_thread.is_finished()
    }

    /// The worker's last published counters.
    pub fn snapshot(&self) -> WorkerSnapshot {
        self.shared
            .snap
            .lock()
            .map(|g| g.clone())
            .unwrap_or_default()
    }

    /// Stops the control thread (its last frames reach the inject ring, RADIUS
    /// accounting reaches the journal), then the worker (it transmits what is
    /// queued), then the HTTP server.
    pub fn stop(self) -> Result<Stopped, String> {
        self.stop.store(true, Ordering::Relaxed);
        let c = self.control_thread.join();
        let w = self.worker.join();
        drop(self.http);
        c.map_err(|_| "control thread panicked".to_string())?;
        let worker = w.map_err(|_| "worker thread panicked".to_string())?;
        Ok(Stopped {
            worker,
            control: self.control,
        })
    }
}
