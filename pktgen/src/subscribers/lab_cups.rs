//! The disaggregated vBNG as the in-memory BNG lab runs it (`testbed lab bng --cups
//! --ups N`, BBF TR-459): one control plane (`vbng::cups::cp::Cp`: the monolithic
//! `ControlPlane` with its fast-path updates turned into PFCP) and N user planes
//! (`vbng::cups::up::Up`: the `vbng::vnf::build` fast path, each on its own engine
//! `Worker` with its own access and core ports), joined by the in-memory PFCP/GTP-U
//! network (`vbng::cups::Bus`), all stepped from the lab's one thread.
//!
//! Towards the lab it has one access and one core port, as the monolithic vBNG: an
//! emulated access aggregation and core router sit between those and the user
//! planes' ports. Access: a subscriber's line (S-VLAN, C-VLAN) is wired to user plane
//! `(C-VLAN − 1) mod N` (the emulator numbers C-VLANs round robin, so the subscribers
//! spread evenly); the control plane places each session on the user plane whose
//! access port its line is on (placement by access port). Core: downstream frames go
//! to the user plane holding the destination address (the routes the user planes
//! would announce; learnt from the control plane's sessions). Frames move between
//! ports without copies; the time spent in the aggregation and the router is not BNG
//! time.

use super::lab::{format_counters, NodeDrop, WorkerReport};
use dataplane::batch::Batch;
use dataplane::buf::{Pool, PoolCache};
use dataplane::port::mem::{pair, MemPort};
use dataplane::port::Port;
use dataplane::worker::{ring, PktRing, Worker, WorkerConfig};
use serde::Serialize;
use std::collections::HashMap;
use std::net::Ipv4Addr;
use std::time::{Duration, Instant};
use vbng::config::Config;
use vbng::control::{ControlPlane, SessionCounters};
use vbng::cups::cp::{Cp, CpConfig};
use vbng::cups::up::{Up, UpConfig};
use vbng::cups::{Bus, Datagram};
use vbng::rng::Rng;
use vbng::vnf::{update_hook, BuildEnv, Injector};

/// The control plane's PFCP/GTP-U address in the lab.
pub const CP_ADDR: Ipv4Addr = Ipv4Addr::new(192, 0, 2, 1);
/// User plane `n`'s address: `192.0.2.(11 + n)`.
pub fn up_addr(n: usize) -> Ipv4Addr {
    Ipv4Addr::new(192, 0, 2, 11 + n as u8)
}
/// Most user planes in the lab.
pub const MAX_UPS: usize = 64;
/// Ring size of each user plane's ports, punt and inject rings.
const RING: usize = 4096;
/// Worker iterations per lab step at most, per user plane.
const POLLS_PER_STEP: usize = 16;

/// One user plane: its worker, the aggregation's and the router's ends of its ports,
/// its rings.
struct UpBox {
    up: Up,
    addr: Ipv4Addr,
    worker: Worker<MemPort>,
    /// The access aggregation's end of the user plane's access port.
    access: MemPort,
    /// The core router's end of its core port.
    core: MemPort,
    punt: PktRing,
    inject: PktRing,
    injector: Injector,
    cache: PoolCache,
    /// Frames the aggregation and the router handed to it (upstream, downstream).
    to_up: (u64, u64),
    /// Frames it sent (access, core) that the lab's link could not take yet: held
    /// in order, as the monolithic worker's own transmit queue holds them, so that
    /// N user planes sending at once into the one link do not lose what one worker
    /// would not.
    held: [Batch; 2],
    /// Time its worker and PFCP side ran.
    busy: Duration,
}

/// Per user plane figures of a CUPS lab run.
#[derive(Debug, Clone, Serialize, Default)]
pub struct UpReport {
    /// The user plane's PFCP/GTP-U address.
    pub addr: String,
    /// Subscriber sessions on it (PFCP sessions) at the end of the run, after the
    /// teardown (0 when every session ended and was deleted).
    pub sessions: u64,
    /// PFCP sessions it established and deleted.
    pub sessions_established: u64,
    pub sessions_deleted: u64,
    /// Frames the access aggregation handed to it (the subscribers' frames on its
    /// access line) and that the core router handed to it (downstream).
    pub access_rx: u64,
    pub core_rx: u64,
    /// Frames it sent out of its core port (upstream) and its access port.
    pub core_tx: u64,
    pub access_tx: u64,
    /// Control frames it redirected to the control plane and injected from it.
    pub redirected: u64,
    pub injected: u64,
    /// Usage reports it sent (Session Report Requests).
    pub usage_reports: u64,
    /// PFCP messages it received and sent.
    pub pfcp_rx: u64,
    pub pfcp_tx: u64,
    /// Its worker's loop counters.
    pub worker: WorkerReport,
    /// Nanoseconds its worker and PFCP side ran.
    pub busy_ns: u64,
}

/// The control plane's PFCP side after a CUPS lab run.
#[derive(Debug, Clone, Serialize, Default)]
pub struct CupsReport {
    /// User planes.
    pub ups: usize,
    /// Session placement (`access-port`).
    pub placement: String,
    /// The control plane's PFCP counters (associations, sessions established,
    /// deleted, usage reports, redirected frames, ...).
    pub cp: std::collections::BTreeMap<String, u64>,
    /// PFCP messages the control plane received and sent.
    pub pfcp_rx: u64,
    pub pfcp_tx: u64,
    /// Nanoseconds the control plane (subscriber core and PFCP) ran.
    pub cp_busy_ns: u64,
    /// Frames the emulated aggregation or router could not hand on (a full ring),
    /// and downstream frames to an address no user plane holds.
    pub switch_dropped: u64,
    pub no_route: u64,
    /// Per user plane.
    pub per_up: Vec<UpReport>,
}

/// The control plane, the user planes and the network between them.
pub struct CupsBng {
    /// The lab's ends: access (towards the subscribers) and core (towards the sink).
    access: MemPort,
    core: MemPort,
    cp: Cp,
    ups: Vec<UpBox>,
    bus: Bus,
    /// Subscriber address → user plane (the router's routes).
    routes: HashMap<u32, usize>,
    /// CGNAT: (outside address, first port of the binding) → user plane, and the
    /// bindings' size in ports (each user plane announces the blocks it was given).
    nat_routes: HashMap<(u32, u16), usize>,
    nat_span: Option<(u16, u16)>,
    cache: PoolCache,
    switch_dropped: u64,
    no_route: u64,
    cp_busy: Duration,
    pfcp: (u64, u64),
    /// Per user plane, PFCP messages received and sent.
    up_pfcp: Vec<(u64, u64)>,
    /// Batches per user plane (reused).
    out: Vec<Batch>,
}

impl CupsBng {
    /// Builds the control plane from `vcfg` and `ups` user planes (each the
    /// `vnf::build` fast path of `vcfg` with `max_sessions` slots), the lab-facing
    /// ports `access` and `core`, and associates them.
    pub fn new(
        vcfg: &Config,
        ups: usize,
        max_sessions: u32,
        access: MemPort,
        core: MemPort,
        core_mac: [u8; 6],
        pool: &'static Pool,
    ) -> anyhow::Result<CupsBng> {
        anyhow::ensure!(
            (1..=MAX_UPS).contains(&ups),
            "--ups must be within 1..={MAX_UPS}"
        );
        let counters = SessionCounters::new(max_sessions as usize);
        let cpl = ControlPlane::new(vcfg, max_sessions, counters.clone(), Rng::from_os())
            .map_err(|e| anyhow::anyhow!("vbng-cp: {}", e.0))?;
        let mut cc = CpConfig::new(CP_ADDR, (0..ups).map(up_addr).collect(), 0xe7a0_0000);
        // The lab's sessions report usage every 10 s and at deletion.
        cc.measurement_period_s = 10;
        // `--cgnat`: the control plane allocates each subscriber's port block.
        cc.nat = vcfg
            .nat_config(max_sessions)
            .map_err(|e| anyhow::anyhow!("vbng-cp: {}", e.0))?
            .as_ref()
            .and_then(vbng::cups::NatPlan::new);
        let mut cp = Cp::new(cpl, counters, cc);
        let mut boxes = Vec::new();
        for n in 0..ups {
            let addr = up_addr(n);
            let parts = Up::build(
                vcfg,
                &BuildEnv::new(core_mac, max_sessions, Rng::from_os()),
                UpConfig::new(addr, 0xe7a1_0000 + n as u32),
            )
            .map_err(|e| anyhow::anyhow!("vbng-up {n}: {e}"))?;
            let (up_access, agg) = pair(&format!("up{n}-access"), &format!("agg{n}"), RING as u16)
                .ok_or_else(|| anyhow::anyhow!("ring"))?;
            let (mut up_core, rtr) = pair(&format!("up{n}-core"), &format!("rtr{n}"), RING as u16)
                .ok_or_else(|| anyhow::anyhow!("ring"))?;
            up_core.set_mac(core_mac);
            let (punt, inject) = (ring(RING), ring(RING));
            let worker = Worker::new(
                vec![up_access, up_core],
                parts.graph,
                pool.cache(),
                WorkerConfig::default(),
            )
            .map_err(|e| anyhow::anyhow!("vbng-up {n} graph: {e}"))?
            .with_punt(punt.clone())
            .with_inject(inject.clone())
            .on_update(update_hook());
            boxes.push(UpBox {
                up: parts.up,
                addr,
                worker,
                access: agg,
                core: rtr,
                punt,
                inject,
                injector: Injector::new(),
                cache: pool.cache(),
                to_up: (0, 0),
                held: [Batch::new(), Batch::new()],
                busy: Duration::ZERO,
            });
        }
        cp.start(0);
        let mut bus = Bus::new();
        let first = cp.take_datagrams();
        let nat_span = cp_nat_span(&cp);
        let mut me = CupsBng {
            access,
            core,
            cp,
            up_pfcp: vec![(0, 0); ups],
            ups: boxes,
            bus: Bus::new(),
            routes: HashMap::new(),
            nat_routes: HashMap::new(),
            nat_span,
            cache: pool.cache(),
            switch_dropped: 0,
            no_route: 0,
            cp_busy: Duration::ZERO,
            pfcp: (0, 0),
            out: (0..ups).map(|_| Batch::new()).collect(),
        };
        me.pfcp.1 += count_pfcp(&first);
        bus.send(first);
        me.bus = bus;
        // Association and the redirect sessions before the first subscriber.
        let mut now = 0;
        while !(0..ups).all(|n| me.cp.up_ready(n)) {
            anyhow::ensure!(now < 10_000, "user planes did not associate");
            now += 1;
            me.exchange(now);
        }
        Ok(me)
    }

    /// Every user plane's worker graph.
    pub fn graphs(&self) -> impl Iterator<Item = &dataplane::graph::Graph> {
        self.ups.iter().map(|u| &u.worker.graph)
    }

    /// The subscriber core.
    pub fn cp(&self) -> &ControlPlane {
        &self.cp.cp
    }

    /// Frames and datagrams between the parts, not yet handled; PFCP requests not
    /// yet answered.
    pub fn in_flight(&self) -> usize {
        self.ups
            .iter()
            .map(|u| {
                u.injector.len() + u.inject.len() + u.punt.len() + u.held[0].len() + u.held[1].len()
            })
            .sum::<usize>()
            + self.bus.pending()
            + self.cp.node_outstanding()
    }

    /// PFCP and GTP-U between the control plane and the user planes at `now_ms`
    /// (timers too); returns the time the control plane ran.
    fn exchange(&mut self, now_ms: u64) -> Duration {
        for (n, u) in self.ups.iter_mut().enumerate() {
            let t = Instant::now();
            u.up.drain_punts(&u.punt, &mut u.cache);
            for d in self.bus.recv(u.addr) {
                self.up_pfcp[n].0 += u64::from(matches!(d, Datagram::Pfcp { .. }));
                u.up.input(now_ms, &d);
            }
            u.up.poll(now_ms);
            let out = u.up.take_datagrams();
            self.up_pfcp[n].1 += count_pfcp(&out);
            self.bus.send(out);
            u.injector.queue(u.up.take_inject());
            u.injector.flush(&u.inject, &mut u.cache);
            u.busy += t.elapsed();
        }
        let t = Instant::now();
        for d in self.bus.recv(CP_ADDR) {
            self.pfcp.0 += u64::from(matches!(d, Datagram::Pfcp { .. }));
            self.cp.input(now_ms, &d);
        }
        self.cp.poll(now_ms);
        let out = self.cp.take_datagrams();
        self.pfcp.1 += count_pfcp(&out);
        self.bus.send(out);
        t.elapsed()
    }

    /// One lab step: the aggregation and the router hand the lab's frames to the
    /// user planes, every user plane's worker runs until idle, PFCP and GTP-U are
    /// exchanged, and the user planes' frames go back to the lab. Returns the BNG's
    /// time (workers, user planes' and control plane's PFCP sides) and the packets
    /// the workers received.
    pub fn step(&mut self, now_ms: u64, now_ns: u64) -> (Duration, u64) {
        let mut busy = Duration::ZERO;
        let mut rx = 0;
        for _ in 0..POLLS_PER_STEP {
            let moved = self.switch_in();
            let mut work = 0;
            for u in &mut self.ups {
                let t = Instant::now();
                let rx0 = u.worker.stats.rx_packets;
                work += u.worker.poll(now_ns);
                rx += u.worker.stats.rx_packets - rx0;
                let dt = t.elapsed();
                u.busy += dt;
                busy += dt;
            }
            self.switch_out();
            if work == 0 && moved == 0 {
                break;
            }
        }
        let t = Instant::now();
        let cp = self.exchange(now_ms);
        self.cp_busy += cp;
        busy += t.elapsed();
        (busy, rx)
    }

    /// Subscribers' frames to their line's user plane, core frames to the user plane
    /// holding their destination. Returns how many moved.
    fn switch_in(&mut self) -> usize {
        let n = self.ups.len();
        let mut moved = 0;
        let mut b = Batch::new();
        // Access: by the line's C-VLAN.
        if self.access.rx_burst(&mut self.cache, &mut b) > 0 {
            let out = &mut self.out;
            let len = b.len();
            b.take_front(len, |p| {
                let k = line_up(p.data(), n);
                if let Err(p) = out[k].push(p) {
                    p.pool().free(p);
                }
            });
            for (k, u) in self.ups.iter_mut().enumerate() {
                moved += self.out[k].len();
                u.to_up.0 += self.out[k].len() as u64;
                u.access.tx_burst(&mut self.cache, &mut self.out[k]);
                self.switch_dropped += self.out[k].len() as u64;
                self.out[k].free_all(&mut self.cache);
            }
        }
        // Core: by destination address.
        if self.core.rx_burst(&mut self.cache, &mut b) > 0 {
            let len = b.len();
            let mut miss = Vec::new();
            let (routes, out) = (&self.routes, &mut self.out);
            let (nat, span) = (&self.nat_routes, self.nat_span);
            let route = move |f: &[u8]| route_of(f, routes, nat, span);
            b.take_front(len, |p| match route(p.data()) {
                Some(k) => {
                    if let Err(p) = out[k].push(p) {
                        p.pool().free(p);
                    }
                }
                None => miss.push(p),
            });
            if !miss.is_empty() {
                self.learn_routes();
                for p in miss {
                    match route_of(p.data(), &self.routes, &self.nat_routes, self.nat_span) {
                        Some(k) => {
                            if let Err(p) = self.out[k].push(p) {
                                p.pool().free(p);
                            }
                        }
                        None => {
                            self.no_route += 1;
                            p.pool().free(p);
                        }
                    }
                }
            }
            for (k, u) in self.ups.iter_mut().enumerate() {
                moved += self.out[k].len();
                u.to_up.1 += self.out[k].len() as u64;
                u.core.tx_burst(&mut self.cache, &mut self.out[k]);
                self.switch_dropped += self.out[k].len() as u64;
                self.out[k].free_all(&mut self.cache);
            }
        }
        moved
    }

    /// The user planes' frames back to the lab. What the lab's link cannot take now
    /// stays held (and, once that is full, in the user plane's port) until it can:
    /// the link is drained only after the step, and two user planes can send twice
    /// what one worker can in a step.
    fn switch_out(&mut self) {
        for u in &mut self.ups {
            let [held_access, held_core] = &mut u.held;
            for (from, held, to) in [
                (&mut u.access, held_access, &mut self.access),
                (&mut u.core, held_core, &mut self.core),
            ] {
                loop {
                    if held.room() > 0 {
                        from.rx_burst(&mut self.cache, held);
                    }
                    if held.is_empty() || to.tx_burst(&mut self.cache, held) == 0 {
                        break;
                    }
                }
            }
        }
    }

    /// The router's routes: each session's address to its user plane (access port),
    /// and with CGNAT each binding's outside address and ports.
    fn learn_routes(&mut self) {
        self.routes.clear();
        for s in self.cp.cp.sessions() {
            if s.ip != 0 {
                self.routes.insert(s.ip, usize::from(s.key.port));
            }
        }
        self.nat_routes.clear();
        for (_, b, up) in self.cp.nat_bindings() {
            self.nat_routes
                .insert((u32::from(b.outside), b.port_first), up);
        }
    }

    /// `show errors` of every user plane's graph and the control plane's counters.
    pub fn errors(&self) -> String {
        let mut s = String::new();
        for (n, u) in self.ups.iter().enumerate() {
            let e = u.worker.graph.show_errors();
            if !e.trim().is_empty() && !e.contains("no drops") {
                s.push_str(&format!("user plane {n}:\n{e}"));
            }
        }
        s.push_str(&format_counters("control plane", &self.control_counters()));
        s.push_str(&format_counters(
            "PFCP (control plane)",
            &cp_counters(&self.cp),
        ));
        s
    }

    /// The subscriber core's counters.
    pub fn control_counters(&self) -> std::collections::BTreeMap<String, u64> {
        self.cp
            .cp
            .stats
            .fields()
            .iter()
            .map(|&(k, v)| (k.to_string(), v))
            .collect()
    }

    /// Every user plane's node drops (node names prefixed `upN/`).
    pub fn drops(&self) -> Vec<NodeDrop> {
        let mut v = Vec::new();
        for (k, u) in self.ups.iter().enumerate() {
            for n in u.worker.graph.nodes() {
                v.extend(n.nonzero_drops().map(|(reason, _, count)| NodeDrop {
                    node: format!("up{k}/{}", n.name),
                    reason: reason.to_string(),
                    count,
                }));
            }
        }
        v
    }

    /// The workers' loop counters, summed.
    pub fn worker_report(&self) -> WorkerReport {
        let mut r = WorkerReport::default();
        for u in &self.ups {
            let w = worker_report(u);
            r.loops += w.loops;
            r.punted += w.punted;
            r.punt_dropped += w.punt_dropped;
            r.injected += w.injected;
            r.inject_dropped += w.inject_dropped;
            r.tx_unsent += w.tx_unsent;
            r.injector_oversize += w.injector_oversize;
            r.tx_full += w.tx_full;
            r.frame_full += w.frame_full;
        }
        r
    }

    /// The control plane's and each user plane's figures.
    pub fn report(&self) -> CupsReport {
        let per_up = self
            .ups
            .iter()
            .enumerate()
            .map(|(n, u)| {
                let p = |i: usize| u.worker.ports.get(i).map(|p| p.stats()).unwrap_or_default();
                let (a, c) = (p(0), p(1));
                UpReport {
                    addr: u.addr.to_string(),
                    sessions: self.cp.up_sessions(n) as u64,
                    sessions_established: u.up.stats.sessions_established,
                    sessions_deleted: u.up.stats.sessions_deleted,
                    access_rx: u.to_up.0,
                    core_rx: u.to_up.1,
                    core_tx: c.tx_packets,
                    access_tx: a.tx_packets,
                    redirected: u.up.stats.redirected,
                    injected: u.up.stats.injected,
                    usage_reports: u.up.stats.reports,
                    pfcp_rx: self.up_pfcp[n].0,
                    pfcp_tx: self.up_pfcp[n].1,
                    worker: worker_report(u),
                    busy_ns: u.busy.as_nanos() as u64,
                }
            })
            .collect();
        CupsReport {
            ups: self.ups.len(),
            placement: "access-port".into(),
            cp: cp_counters(&self.cp),
            pfcp_rx: self.pfcp.0,
            pfcp_tx: self.pfcp.1,
            cp_busy_ns: self.cp_busy.as_nanos() as u64,
            switch_dropped: self.switch_dropped,
            no_route: self.no_route,
            per_up,
        }
    }
}

fn worker_report(u: &UpBox) -> WorkerReport {
    let w = &u.worker.stats;
    WorkerReport {
        loops: w.loops,
        punted: w.punted,
        punt_dropped: w.punt_dropped,
        injected: w.injected,
        inject_dropped: w.inject_dropped,
        tx_unsent: w.tx_unsent,
        injector_oversize: u.injector.oversize,
        tx_full: u.worker.out.stats.tx_full,
        frame_full: u.worker.out.stats.frame_full,
    }
}

/// The control plane's PFCP counters by name.
fn cp_counters(cp: &Cp) -> std::collections::BTreeMap<String, u64> {
    let s = cp.stats;
    [
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
        ("placement_dropped", s.placement_dropped),
        ("nat_allocated", s.nat_allocated),
        ("nat_freed", s.nat_freed),
        ("nat_exhausted", s.nat_exhausted),
        ("nat_bindings", cp.nat_bound()),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_string(), v))
    .collect()
}

fn count_pfcp(ds: &[Datagram]) -> u64 {
    ds.iter()
        .filter(|d| matches!(d, Datagram::Pfcp { .. }))
        .count() as u64
}

/// The user plane a subscriber frame's line is wired to: `(C-VLAN − 1) mod n` (the
/// inner tag; untagged lines go to user plane 0).
pub fn line_up(f: &[u8], n: usize) -> usize {
    let cvlan = dataplane::proto::ethernet::walk_vlans(f)
        .map(|l| dataplane::proto::ethernet::Vlans::from(l.vlans).cvlan)
        .unwrap_or(0);
    usize::from(cvlan.saturating_sub(1)) % n.max(1)
}

/// The port-block geometry of the control plane's CGNAT pool: (first port,
/// block size).
fn cp_nat_span(cp: &Cp) -> Option<(u16, u16)> {
    cp.nat_plan().map(|p| (p.port_min, p.block_size))
}

/// The user plane a core frame goes to: by its destination address, or with CGNAT
/// by the binding holding its destination address and port.
fn route_of(
    f: &[u8],
    routes: &HashMap<u32, usize>,
    nat: &HashMap<(u32, u16), usize>,
    span: Option<(u16, u16)>,
) -> Option<usize> {
    let a = dst4(f)?;
    if let Some(&k) = routes.get(&a) {
        return Some(k);
    }
    let (min, bs) = span?;
    let port = dst_port(f)?;
    let first = min + (port.checked_sub(min)? / bs) * bs;
    nat.get(&(a, first)).copied()
}

/// The UDP/TCP destination port (or ICMP query identifier) of an IPv4 frame.
fn dst_port(f: &[u8]) -> Option<u16> {
    let l = dataplane::proto::ethernet::walk_vlans(f).ok()?;
    let ip = f.get(l.l3_offset..)?;
    let ihl = usize::from(ip.first()? & 0x0f) * 4;
    let l4 = ip.get(ihl..)?;
    match ip.get(9)? {
        6 | 17 => Some(u16::from_be_bytes([*l4.get(2)?, *l4.get(3)?])),
        1 => Some(u16::from_be_bytes([*l4.get(4)?, *l4.get(5)?])),
        _ => None,
    }
}

/// The IPv4 destination of an Ethernet frame (after VLAN tags).
fn dst4(f: &[u8]) -> Option<u32> {
    let l = dataplane::proto::ethernet::walk_vlans(f).ok()?;
    if l.ethertype != dataplane::proto::EtherType::IPV4 {
        return None;
    }
    let b: [u8; 4] = f.get(l.l3_offset + 16..l.l3_offset + 20)?.try_into().ok()?;
    Some(u32::from_be_bytes(b))
}
