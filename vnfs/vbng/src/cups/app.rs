//! The `vbng-cp` and `vbng-up` processes (std): the sans-IO ends ([`Cp`], [`Up`])
//! over UDP sockets ([`UdpLink`]: PFCP 8805, GTP-U 2152 on the `[cups]` address),
//! RADIUS sockets for the control plane ([`RadiusIo`]), and for the user plane the
//! [`crate::vnf::build`] worker graph on its ports in a thread of its own (with
//! `workers = N`, N graphs each on a pinned thread joined by a hand-off mesh:
//! [`UpApp::with_workers`]), its punts redirected to the control plane and the
//! control plane's frames injected.
//!
//! Both are single loops the binaries (and tests) step: [`CpApp::step`] and
//! [`UpApp::step`] do one round and return how much they did (0: idle, the caller
//! may sleep a little).

use super::cp::{Cp, CpConfig, CpStats};
use super::udp::UdpLink;
use super::up::{Up, UpConfig, UpStats};
use crate::config::{Config, CupsSection};
use crate::control::{ControlPlane, SessionCounters};
use crate::radius_io::RadiusIo;
use crate::rng::Rng;
use crate::vnf::{update_hook, BuildEnv, Injector};
use dataplane::buf::{Pool, PoolCache};
use dataplane::port::Port;
use dataplane::runner::WorkerSnapshot;
use dataplane::worker::{handoff_mesh, ring, CtrlRings, PktRing, Worker, WorkerConfig};
use std::string::{String, ToString};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};
use std::vec;
use std::vec::Vec;

/// Seconds between 1900 (NTP era 0) and 1970.
const NTP_UNIX_OFFSET: u64 = 2_208_988_800;

/// Our PFCP Recovery Time Stamp (TS 29.244 §8.2.65): NTP seconds of now.
pub fn recovery_time_stamp() -> u32 {
    let unix = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    (unix + NTP_UNIX_OFFSET) as u32
}

/// The `[cups]` section of `cfg`, checked for a control plane (`cp`) or a user plane.
pub fn section(cfg: &Config, cp: bool) -> Result<CupsSection, String> {
    let s = cfg.cups.clone().ok_or_else(|| {
        "no [cups] section (addr, and ups for vbng-cp or cp for vbng-up)".to_string()
    })?;
    s.validate(cp).map_err(|e| e.0)?;
    Ok(s)
}

/// A user plane's `workers` and `cores` (as the monolithic vBNG's), checked against
/// the rest of its config: several workers and CGNAT (`[cgnat]`, `cgnat_public`)
/// are refused, the control plane's port blocks not being split by worker.
pub fn check_up_workers(cfg: &Config) -> Result<(), String> {
    let n = cfg.workers;
    if n == 0 || n > crate::config::MAX_WORKERS {
        return Err(std::format!(
            "workers: 1 to {}, not {n}",
            crate::config::MAX_WORKERS
        ));
    }
    if !cfg.cores.is_empty() && cfg.cores.len() != usize::from(n) {
        return Err(std::format!(
            "cores: one core per worker ({n} workers, {} cores)",
            cfg.cores.len()
        ));
    }
    if n > 1 && (cfg.cgnat.is_some() || cfg.cgnat_public.is_some()) {
        return Err(std::format!(
            "workers = {n} with CGNAT: a user plane with [cgnat] runs one worker"
        ));
    }
    Ok(())
}

/// The control plane's PFCP settings from its `[cups]` section.
pub fn cp_config(s: &CupsSection, recovery_time_stamp: u32) -> CpConfig {
    let mut c = CpConfig::new(s.addr, s.ups.clone(), recovery_time_stamp);
    c.node.heartbeat_interval_ms = u64::from(s.heartbeat_s) * 1000;
    c.node.t1_ms = s.t1_ms;
    c.node.n1 = s.n1;
    c.measurement_period_s = s.measurement_period_s;
    c.placement = s.placement;
    c
}

/// A user plane's PFCP settings from its `[cups]` section.
pub fn up_config(s: &CupsSection, recovery_time_stamp: u32) -> UpConfig {
    UpConfig::from_section(s, recovery_time_stamp)
}

/// The `vbng-cp` process: the control plane, its PFCP/GTP-U sockets and RADIUS.
pub struct CpApp {
    pub cp: Cp,
    link: UdpLink,
    radius: Option<RadiusIo>,
    t0: Instant,
}

impl CpApp {
    /// Builds the control plane of `cfg` (with a `[cups]` section for a control plane)
    /// with `max_sessions` slots, binds its sockets and starts associating with the
    /// user planes.
    pub fn new(cfg: &Config, max_sessions: u32) -> Result<CpApp, String> {
        let s = section(cfg, true)?;
        let counters = SessionCounters::new(max_sessions as usize);
        let cpl = ControlPlane::new(cfg, max_sessions, counters.clone(), Rng::from_os())
            .map_err(|e| e.0)?;
        let link = UdpLink::bind(s.addr)
            .map_err(|e| std::format!("binding {}:8805 and {}:2152: {e}", s.addr, s.addr))?;
        let radius = match &cfg.radius {
            Some(r) => Some(
                RadiusIo::bind(
                    "0.0.0.0:0".parse().map_err(|_| "bind address")?,
                    4,
                    r.coa_listen,
                )
                .map_err(|e| std::format!("radius sockets: {e}"))?,
            ),
            None => None,
        };
        let mut cc = cp_config(&s, recovery_time_stamp());
        // `[cgnat]`: the control plane allocates the port blocks (`cups::NatPlan`).
        cc.nat = cfg
            .nat_config(max_sessions)
            .map_err(|e| e.0)?
            .as_ref()
            .and_then(super::NatPlan::new);
        let mut cp = Cp::new(cpl, counters, cc);
        let t0 = Instant::now();
        cp.start(0);
        Ok(CpApp {
            cp,
            link,
            radius,
            t0,
        })
    }

    /// Milliseconds since start.
    pub fn now(&self) -> u64 {
        self.t0.elapsed().as_millis() as u64
    }

    /// One round: datagrams in, RADIUS, timers, datagrams out. Returns the datagrams
    /// handled.
    pub fn step(&mut self) -> usize {
        let now = self.now();
        let mut n = 0;
        for d in self.link.recv() {
            self.cp.input(now, &d);
            n += 1;
        }
        if let Some(io) = self.radius.as_mut() {
            n += io.pump(&mut self.cp.cp, now);
        }
        self.cp.poll(now);
        let out = self.cp.take_datagrams();
        n += out.len();
        self.link.send(out);
        n
    }

    /// The PFCP side's counters.
    pub fn stats(&self) -> CpStats {
        self.cp.stats
    }
}

/// The `vbng-up` process: the worker graphs each in a thread of its own
/// (`vbng-up-worker<k>`, pinned to its core with several workers or a core list,
/// joined by a hand-off mesh), the PFCP node and the redirect tunnel in the
/// caller's loop: it reads every worker's punt ring in turn and sends the control
/// plane's frames through worker 0's inject ring; the sessions' table updates go to
/// every worker's own queues.
pub struct UpApp {
    pub up: Up,
    link: UdpLink,
    /// One per worker.
    punt: Vec<PktRing>,
    inject: PktRing,
    injector: Injector,
    cache: PoolCache,
    stop: Arc<AtomicBool>,
    hold: Arc<AtomicBool>,
    /// One per worker.
    workers: Vec<JoinHandle<WorkerSnapshot>>,
    t0: Instant,
}

/// Punt and inject ring sizes of a user plane.
const RING: usize = 4096;
/// Packets each hand-off ring between two workers holds.
const HANDOFF_RING: usize = 4096;

impl UpApp {
    /// Builds the user plane of `cfg` (with a `[cups]` section for a user plane) over
    /// `ports` (index 0 access, 1 core), binds its sockets and starts its worker
    /// (`hold`: the worker polls nothing until [`UpApp::release`]).
    pub fn new(
        cfg: &Config,
        ports: Vec<Box<dyn Port>>,
        max_sessions: u32,
        hold: bool,
    ) -> Result<UpApp, String> {
        UpApp::with_workers(cfg, vec![ports], max_sessions, hold, &[])
    }

    /// [`UpApp::new`] with one worker per element of `ports` (worker k's queues of
    /// the access and the core port, as `vbng`'s `workers`): worker k runs on
    /// `cores[k]` (with several workers and no list: core k; one worker without a
    /// list is not pinned).
    pub fn with_workers(
        cfg: &Config,
        ports: Vec<Vec<Box<dyn Port>>>,
        max_sessions: u32,
        hold: bool,
        cores: &[usize],
    ) -> Result<UpApp, String> {
        let s = section(cfg, false)?;
        let n = ports.len();
        if n == 0 || n > usize::from(crate::config::MAX_WORKERS) {
            return Err(std::format!(
                "workers: 1 to {}, not {n}",
                crate::config::MAX_WORKERS
            ));
        }
        if !cores.is_empty() && cores.len() != n {
            return Err(std::format!(
                "cores: one core per worker ({n} workers, {} cores)",
                cores.len()
            ));
        }
        let core_mac = ports
            .first()
            .and_then(|p| p.get(usize::from(crate::vnf::CORE_PORT)))
            .and_then(|p| p.mac())
            .unwrap_or([0x02, 0, 0, 0, 0xc0, 0x02]);
        let parts = Up::build_workers(
            cfg,
            &BuildEnv::new(core_mac, max_sessions, Rng::from_os()),
            up_config(&s, recovery_time_stamp()),
            n as u16,
        )
        .map_err(|e| e.0)?;
        let link = UdpLink::bind(s.addr)
            .map_err(|e| std::format!("binding {}:8805 and {}:2152: {e}", s.addr, s.addr))?;
        let pool = Pool::new(1 << 15).ok_or("buffer pool: out of memory")?;
        let rings = CtrlRings::new(n, RING);
        let mut mesh = handoff_mesh(n, HANDOFF_RING).into_iter();
        let graphs = core::iter::once(parts.graph).chain(parts.more_graphs);
        let mut ws = Vec::with_capacity(n);
        for (k, (graph, ports)) in graphs.zip(ports).enumerate() {
            let (Some(punt), Some(inject)) = (rings.punt.get(k), rings.inject.get(k)) else {
                return Err("control rings".to_string());
            };
            let mut w = Worker::new(ports, graph, pool.cache(), WorkerConfig::default())
                .map_err(|e| std::format!("vbng-up graph: {e}"))?
                .with_punt(punt.clone())
                .with_inject(inject.clone())
                .on_update(update_hook());
            if n > 1 {
                if let Some(h) = mesh.next() {
                    w = w.with_handoff(h);
                }
            }
            ws.push(w);
        }
        if ws.len() != n {
            return Err(std::format!("{n} workers but {} graphs", ws.len()));
        }
        let stop = Arc::new(AtomicBool::new(false));
        let hold = Arc::new(AtomicBool::new(hold));
        let mut workers = Vec::with_capacity(n);
        for (k, w) in ws.into_iter().enumerate() {
            let (st, ho) = (stop.clone(), hold.clone());
            let core = (n > 1 || !cores.is_empty()).then(|| dataplane::runner::core_for(k, cores));
            let spawned = std::thread::Builder::new()
                .name(std::format!("vbng-up-worker{k}"))
                .spawn(move || worker_thread(w, k, core, st, ho));
            match spawned {
                Ok(h) => workers.push(h),
                Err(e) => {
                    stop.store(true, Ordering::Relaxed);
                    for h in workers {
                        let _ = h.join();
                    }
                    return Err(std::format!("worker thread: {e}"));
                }
            }
        }
        let inject = rings.inject.first().cloned().unwrap_or_else(|| ring(1));
        Ok(UpApp {
            up: parts.up,
            link,
            punt: rings.punt.clone(),
            inject,
            injector: Injector::new(),
            cache: pool.cache(),
            stop,
            hold,
            workers,
            t0: Instant::now(),
        })
    }

    /// Workers running the fast path.
    pub fn worker_count(&self) -> usize {
        self.punt.len()
    }

    /// One round: datagrams in, punted frames (every worker's, in turn) redirected,
    /// the control plane's frames injected, timers, datagrams out. Returns how much
    /// it handled.
    pub fn step(&mut self) -> usize {
        let now = self.t0.elapsed().as_millis() as u64;
        let mut n = 0;
        for d in self.link.recv() {
            self.up.input(now, &d);
            n += 1;
        }
        for r in &self.punt {
            n += self.up.drain_punts(r, &mut self.cache);
        }
        let inj = self.up.take_inject();
        n += inj.len();
        self.injector.queue(inj);
        self.injector.flush(&self.inject, &mut self.cache);
        self.up.poll(now);
        let out = self.up.take_datagrams();
        n += out.len();
        self.link.send(out);
        n
    }

    /// Lets held workers run.
    pub fn release(&self) {
        self.hold.store(false, Ordering::Relaxed);
    }

    /// Whether a worker thread ended on its own (a panic).
    pub fn worker_finished(&self) -> bool {
        self.workers.is_empty() || self.workers.iter().any(|w| w.is_finished())
    }

    /// The PFCP side's counters.
    pub fn stats(&self) -> UpStats {
        self.up.stats
    }

    /// Stops the workers (each sends what is queued) and returns worker 0's final
    /// counters ([`UpApp::stop_workers`]: every worker's).
    pub fn stop(self) -> Result<WorkerSnapshot, String> {
        Ok(self.stop_workers()?.into_iter().next().unwrap_or_default())
    }

    /// Stops the workers (each sends what is queued) and returns their final
    /// counters, worker 0's first.
    pub fn stop_workers(mut self) -> Result<Vec<WorkerSnapshot>, String> {
        self.stop.store(true, Ordering::Relaxed);
        let mut fin = Vec::with_capacity(self.workers.len());
        let mut panicked = false;
        for w in core::mem::take(&mut self.workers) {
            match w.join() {
                Ok(s) => fin.push(s),
                Err(_) => panicked = true,
            }
        }
        if panicked {
            return Err("worker thread panicked".to_string());
        }
        Ok(fin)
    }
}

impl Drop for UpApp {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        for w in core::mem::take(&mut self.workers) {
            let _ = w.join();
        }
    }
}

/// A user plane's worker loop (a short sleep when a poll found nothing), pinned to
/// `core` when given.
fn worker_thread(
    mut w: Worker,
    k: usize,
    core: Option<usize>,
    stop: Arc<AtomicBool>,
    hold: Arc<AtomicBool>,
) -> WorkerSnapshot {
    if let Some(c) = core {
        if !dataplane::runner::pin_to(c) {
            tracing::warn!("vbng-up: worker {k} not pinned to core {c}");
        }
    }
    let t0 = Instant::now();
    let mut idle = 0u32;
    while !stop.load(Ordering::Relaxed) {
        if hold.load(Ordering::Relaxed) {
            std::thread::sleep(Duration::from_millis(1));
            continue;
        }
        if w.poll(t0.elapsed().as_nanos() as u64) == 0 {
            idle += 1;
            if idle > 16 {
                std::thread::sleep(Duration::from_micros(if idle > 1000 { 250 } else { 50 }));
            }
        } else {
            idle = 0;
        }
    }
    w.poll(t0.elapsed().as_nanos() as u64);
    w.flush();
    let mut fin = WorkerSnapshot::default();
    dataplane::runner::publish_counters(&mut fin, &w);
    fin
}

/// The control plane's own Prometheus series (beside the subscriber core's
/// `vbng_*` ones): per user plane its PFCP association state, redirect tunnel and
/// sessions; the PFCP side's counters.
pub fn prometheus(cp: &Cp) -> String {
    let mut p = dataplane::metrics::Prom::new();
    for (n, a) in cp.up_addrs().iter().enumerate() {
        let idx = n.to_string();
        let addr = a.to_string();
        let l = [("up", idx.as_str()), ("addr", addr.as_str())];
        p.gauge(
            "vbng_cups_up_associated",
            "PFCP association with the user plane up (1) or not (0)",
            &l,
            f64::from(u8::from(cp.up_associated(n))),
        );
        p.gauge(
            "vbng_cups_up_ready",
            "User plane associated and its control packet redirect session established",
            &l,
            f64::from(u8::from(cp.up_ready(n))),
        );
        p.gauge(
            "vbng_cups_up_sessions",
            "Subscriber PFCP sessions on the user plane",
            &l,
            cp.up_sessions(n) as f64,
        );
    }
    let s = cp.stats;
    for (name, v) in [
        ("associations", s.associations),
        ("ups_lost", s.ups_lost),
        ("sessions_lost", s.sessions_lost),
        ("established", s.established),
        ("establish_failed", s.establish_failed),
        ("modify_failed", s.modify_failed),
        ("deleted", s.deleted),
        ("reports", s.reports),
        ("no_up", s.no_up),
        ("redirected_in", s.redirected_in),
        ("redirected_out", s.redirected_out),
        ("tx_dropped", s.tx_dropped),
        ("gtpu_dropped", s.gtpu_dropped),
        ("restarts", s.restarts),
        ("audited", s.audited),
        ("final_reports", s.final_reports),
        ("placement_dropped", s.placement_dropped),
        ("nat_allocated", s.nat_allocated),
        ("nat_freed", s.nat_freed),
        ("nat_exhausted", s.nat_exhausted),
    ] {
        p.counter(
            "vbng_cups_events_total",
            "The control plane's PFCP and redirect counters",
            &[("event", name)],
            v,
        );
    }
    p.gauge(
        "vbng_cups_nat_bindings",
        "CGNAT port-block bindings the control plane holds",
        &[],
        cp.nat_bound() as f64,
    );
    p.gauge(
        "vbng_cups_pfcp_outstanding",
        "PFCP requests sent and not yet answered",
        &[],
        cp.node_outstanding() as f64,
    );
    p.finish()
}

/// The user planes as JSON (`GET /cups`): address, association, redirect session,
/// sessions; and the PFCP counters.
pub fn cups_json(cp: &Cp) -> String {
    let ups: Vec<serde_json::Value> = cp
        .up_addrs()
        .iter()
        .enumerate()
        .map(|(n, a)| {
            serde_json::json!({
                "up": n,
                "address": a.to_string(),
                "associated": cp.up_associated(n),
                "ready": cp.up_ready(n),
                "sessions": cp.up_sessions(n),
            })
        })
        .collect();
    let s = cp.stats;
    serde_json::json!({
        "user-planes": ups,
        "sessions": cp.cp.session_count(),
        "associations": s.associations,
        "ups-lost": s.ups_lost,
        "sessions-lost": s.sessions_lost,
        "established": s.established,
        "deleted": s.deleted,
        "usage-reports": s.reports,
    })
    .to_string()
}

/// `vbng-cp --listen ADDR`: the control plane's HTTP endpoint (threads of its own;
/// each request takes the control plane's lock between two [`CpApp::step`]s):
/// `GET /metrics` (the subscriber core's `vbng_*` series as the monolithic vBNG
/// serves them, plus [`prometheus`]), `/sessions`, `/cups` ([`cups_json`]) and the
/// management API under `/restconf` ([`crate::mgmt`], the same as `vbng`'s).
pub fn serve(
    app: Arc<std::sync::Mutex<CpApp>>,
    addr: &str,
    cfg: Config,
) -> Result<dataplane::http::HttpServer, String> {
    use dataplane::http::{Handler, Response};
    let mgmt = std::sync::Mutex::new(crate::mgmt::Mgmt::new(cfg));
    let h: Handler = Arc::new(move |r| {
        let Ok(mut a) = app.lock() else {
            return Response::error(500, "control plane unavailable");
        };
        if r.path == "/restconf" || r.path.starts_with("/restconf/") {
            let Ok(mut m) = mgmt.lock() else {
                return Response::error(500, "management API unavailable");
            };
            let now = a.now();
            let ans = m.handle(&r.method, &r.path, &r.query, &r.body, &mut a.cp.cp, now);
            return Response {
                status: ans.status,
                content_type: if r.path.starts_with("/restconf/yang/") && ans.status == 200 {
                    "application/yang"
                } else {
                    crate::mgmt::MEDIA
                },
                body: ans.body,
            };
        }
        if r.method != "GET" {
            return Response::error(405, "GET only");
        }
        match r.path.as_str() {
            "/metrics" => {
                let mut body = crate::metrics::prometheus(&a.cp.cp, core::iter::empty());
                body += &prometheus(&a.cp);
                if r.query == "sessions" {
                    body += &crate::metrics::prometheus_sessions(&a.cp.cp);
                }
                Response::metrics(body)
            }
            "/sessions" => Response::text(crate::metrics::show_sessions(&a.cp.cp)),
            "/cups" => Response::json(cups_json(&a.cp)),
            _ => Response::error(
                404,
                "try /metrics, /sessions, /cups or /restconf/data/vbng:vbng",
            ),
        }
    });
    dataplane::http::HttpServer::spawn(addr, h).map_err(|e| std::format!("listen {addr}: {e}"))
}
