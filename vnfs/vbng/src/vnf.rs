//! The vBNG composed once: [`build`] turns a typed [`Config`] plus what only the
//! platform knows ([`BuildEnv`]: the core port's MAC, the session slots, a random
//! source) into the worker graph and the control side ([`Vbng`]). The `vbng` binary
//! and the in-memory lab (`pktgen::subscribers::lab`) both call it, so there is one
//! composition of the vBNG.
//!
//! The graph (ports: 0 = access, 1 = core; see [`ACCESS_PORT`], [`CORE_PORT`]). Each
//! port has its own entry node (VPP's per-interface input node), so a packet is
//! classified once, by the node that parses it anyway:
//!
//! ```text
//!  access port ─> bng-upstream ─┬─ PPPoE discovery, PPP control ─────────> punt (control plane)
//!  (PPPoE input: decap, session ├─ session IPv4/IPv6 ─────────────────────> core port
//!   lookup, anti-spoofing,      └─ with [cgnat]: session IPv4 ──keep──> nat44 ─keep─> bng-downstream ─> core port
//!   policer)
//!  core port ──> bng-downstream ─┬─ IPv4/IPv6 to a subscriber ──> access port (PPPoE encap, policer)
//!  (no [cgnat])                  └─ ARP ──> bng-core-arp ──> core port (replies)
//!  core port ──> bng-core-input ─┬─ IPv4 ──keep──> nat44 ──keep──> bng-downstream ──> access port
//!  (with [cgnat])                ├─ IPv6 ─────────────────────────> bng-downstream
//!                                ├─ DHCP replies to the relay's giaddr ──> punt
//!                                └─ ARP ──> bng-core-arp
//! ```
//!
//! The control side ([`Control`]) holds the [`ControlPlane`] and the fast path's update
//! queues ([`FibQueues`]): punted frames go in with [`Control::input`] (or
//! [`Control::drain_punts`] from a worker's punt ring), [`Control::poll`] runs the
//! timers, moves table updates to the fast-path nodes (never dropping one: what a full
//! queue cannot take waits in a backlog) and returns the frames to send, which an
//! [`Injector`] copies into pool buffers for the worker's inject ring (again with a
//! backlog: a dropped PADS costs a subscriber a restart timer). A worker applies the
//! updates between bursts with [`update_hook`].
//!
//! Several workers ([`build_workers`]): one graph per worker, each fast-path node
//! with its own update queue (every update goes to all of them), each `nat44` with
//! its slice of the outside ports; a subscriber's traffic is owned by one worker
//! (`fastpath::session_owner`) and handed to it where it arrives elsewhere.

use crate::config::{Config, ConfigError};
use crate::control::{ControlPlane, FibUpdate, SessionCounters};
use crate::corelink::{ArpVerdict, CoreLink};
use crate::fastpath::{
    update_queue, FastPath, FastPathConfig, FastPathStats, LocalConfig, Mode, UpdateQueue,
};
use crate::rng::Rng;
use alloc::boxed::Box;
use alloc::collections::VecDeque;
use alloc::string::String;
use alloc::sync::Arc;
use alloc::vec::Vec;
use core::sync::atomic::{AtomicU64, Ordering};
use crossbeam_queue::ArrayQueue;
use dataplane::batch::{Batch, Next, Out};
use dataplane::buf::PoolCache;
use dataplane::graph::Graph;
use dataplane::stage::{Counter, NodeStats, Stage};
use dataplane::stages::nat::log::{LogRecord, LogSink};
use dataplane::stages::nat::{Nat44, NatConfig};
use dataplane::worker::{Hook, PktRing};

/// Engine port number of the access (subscriber) side.
pub const ACCESS_PORT: u16 = 0;
/// Engine port number of the core side.
pub const CORE_PORT: u16 = 1;
/// Node names of the graph: the access port's entry (PPPoE input and upstream).
pub const NODE_UPSTREAM: &str = "bng-upstream";
/// The core port's entry with CGNAT (an `ethernet-input` for the core side).
pub const NODE_CORE_INPUT: &str = "bng-core-input";
/// See [`NODE_UPSTREAM`].
pub const NODE_DOWNSTREAM: &str = "bng-downstream";
/// See [`NODE_UPSTREAM`].
pub const NODE_CORE_ARP: &str = "bng-core-arp";
/// See [`NODE_UPSTREAM`].
pub const NODE_NAT: &str = "nat44";
/// NAT block log records waiting for the control side, at most.
pub const NAT_LOG_QUEUE: usize = 65536;

/// What only the platform knows. Build with [`BuildEnv::new`]; more settings may be
/// added later as methods with defaults.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct BuildEnv {
    /// MAC of the core port (our source MAC towards the core).
    pub core_mac: [u8; 6],
    /// Session slots (1 to [`crate::config::MAX_SESSIONS`]); the tables for every
    /// slot are allocated by [`build`].
    pub max_sessions: u32,
    /// Random source of the control plane (magic numbers, CHAP challenges, RADIUS
    /// authenticators, PPPoE cookies).
    pub rng: Rng,
    /// A user plane of a disaggregated vBNG (`cups::up`): the `nat44` nodes take
    /// their port blocks from this queue (bindings the control plane allocated,
    /// drained by [`update_hook`]) and never allocate one on the fast path
    /// (`NatConfig::external_blocks`).
    pub nat_bindings: Option<Arc<NatBindQueue>>,
}

impl BuildEnv {
    /// The platform's facts: core port MAC, session slots, random source.
    pub fn new(core_mac: [u8; 6], max_sessions: u32, rng: Rng) -> BuildEnv {
        BuildEnv {
            core_mac,
            max_sessions,
            rng,
            nat_bindings: None,
        }
    }

    /// With the `nat44` bindings queue of a user plane (see
    /// [`BuildEnv::nat_bindings`]).
    pub fn with_nat_bindings(mut self, q: Arc<NatBindQueue>) -> BuildEnv {
        self.nat_bindings = Some(q);
        self
    }
}

/// A CGNAT binding operation for the `nat44` node of a user plane: install or remove
/// the (outside address, port block) binding of a subscriber's inside address
/// (`Nat44::bind` / `Nat44::unbind`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NatOp {
    Bind {
        inside: core::net::Ipv4Addr,
        outside: core::net::Ipv4Addr,
        port_first: u16,
        port_last: u16,
    },
    Unbind {
        inside: core::net::Ipv4Addr,
    },
}

/// The queue of [`NatOp`]s from a user plane's PFCP side to its `nat44` node.
pub type NatBindQueue = ArrayQueue<NatOp>;

/// Why [`build`] refused: one line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BuildError(pub String);

impl core::fmt::Display for BuildError {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.write_str(&self.0)
    }
}

impl From<ConfigError> for BuildError {
    fn from(e: ConfigError) -> BuildError {
        BuildError(e.0)
    }
}

#[cfg(feature = "std")]
impl std::error::Error for BuildError {}

/// A composed vBNG: the worker graph and the control side.
pub struct Vbng {
    /// The worker graph (ports [`ACCESS_PORT`], [`CORE_PORT`], each with its entry
    /// node; see the module docs).
    /// Run it with `dataplane::worker::Worker` and register [`update_hook`].
    /// With several workers ([`build_workers`]) this is worker 0's graph.
    pub graph: Graph,
    /// The control plane and the fast path's update queues.
    pub control: Control,
    /// Counters readable from any thread (metrics).
    pub stats: Stats,
    /// The resolved NAT settings (`None` without `[cgnat]`).
    pub nat: Option<NatConfig>,
}

impl core::fmt::Debug for Vbng {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("Vbng")
            .field("graph", &self.graph)
            .field("nat", &self.nat)
            .finish()
    }
}

/// Counters shared with the nodes (relaxed atomics), for metrics off the data plane.
#[derive(Clone)]
pub struct Stats {
    /// Per-session traffic counters (accounting).
    pub sessions: Arc<SessionCounters>,
    /// The fast-path nodes' own counters, one per node.
    pub fastpath: Vec<Arc<FastPathStats>>,
    /// The core link (ARP/ND), with `core_ip`.
    pub core_link: Option<Arc<CoreLink>>,
}

impl Stats {
    /// The BNG's own-traffic families (`vbng_icmp_total`, `vbng_mss_clamp_total`,
    /// `vbng_fragmented_total`, `vbng_core_na_total`, `vbng_own_no_buffer_total`,
    /// `vbng_core_arp_total`, `vbng_core_nd_total`) summed over the nodes.
    pub fn prometheus(&self, p: &mut dataplane::metrics::Prom) {
        let all: Vec<&FastPathStats> = self.fastpath.iter().map(|s| &**s).collect();
        FastPathStats::prometheus_sum(&all, self.core_link.as_deref(), p);
    }
}

/// Composes the vBNG from `cfg` (validated again here) and the platform's `env`:
/// the control plane, the core link (`core_ip`, `core_gateway`, `core_ip6`,
/// `core_gateway6`), the fast path with the BNG's own addresses and ICMP/MSS settings
/// (`gateway`, `tcp_mss_clamp`, `icmp_rate`, `icmp_burst`), and with `[cgnat]` (or
/// `cgnat_public`) a `nat44` node between the upstream and downstream fast path. See
/// the module docs for the graph.
pub fn build(cfg: &Config, env: &BuildEnv) -> Result<Vbng, BuildError> {
    build_workers(cfg, env, 1).map(|(v, _)| v)
}

/// [`build`] for `workers` workers (1 to [`crate::config::MAX_WORKERS`]): the
/// [`Vbng`] with worker 0's graph and the graphs of workers 1.. — the same nodes,
/// each worker's fast-path nodes with their own tables fed by their own update
/// queues (the control side's [`FibQueues`] sends every update to all of them) and,
/// with `[cgnat]`, their own `nat44` owning a slice of every outside address's port
/// blocks (`Nat44::new_worker`). A subscriber's traffic belongs to one worker
/// (`fastpath::session_owner`); run the graphs joined by a hand-off mesh
/// (`dataplane::worker::handoff_mesh`) so packets reach it wherever they arrive.
pub fn build_workers(
    cfg: &Config,
    env: &BuildEnv,
    workers: u16,
) -> Result<(Vbng, Vec<Graph>), BuildError> {
    let n = env.max_sessions;
    let mut nat_cfg = cfg.nat_config(n)?;
    if let Some(nc) = nat_cfg.as_mut() {
        nc.external_blocks = env.nat_bindings.is_some();
    }
    let counters = SessionCounters::with_workers(
        n as usize,
        usize::from(workers.clamp(1, crate::config::MAX_WORKERS)),
    );
    let mut cp = ControlPlane::new(cfg, n, counters.clone(), env.rng.clone())?;
    let core_link = match cfg.core_ip {
        Some(n) => {
            let link = CoreLink::new(n.addr, n.len, cfg.core_gateway);
            Some(Arc::new(match cfg.core_ip6 {
                Some(ip6) => link.with_gateway6(ip6, cfg.core_gateway6),
                None => link,
            }))
        }
        None => None,
    };
    cp.set_core(crate::control::CoreSide {
        port: CORE_PORT,
        mac: env.core_mac,
        next_hop: cfg.core_next_hop_mac.octets(),
        link: core_link.clone(),
    });
    let dhcp_relay = cfg.ipoe.as_ref().is_some_and(|i| i.relay.is_some());
    let pd_len = cfg
        .dhcp6
        .as_ref()
        .and_then(|d| d.prefix_pools.first())
        .map_or(0, |p| p.len);
    let fcfg = FastPathConfig {
        access_port: ACCESS_PORT,
        core_port: CORE_PORT,
        access_mac: cp.mac(),
        core_mac: env.core_mac,
        core_next_hop: cfg.core_next_hop_mac.octets(),
        max_sessions: n,
    };
    let local = LocalConfig {
        gateway: Some(cfg.gateway),
        mss: cfg.tcp_mss_clamp,
        icmp_rate: u64::from(cfg.icmp_rate),
        // icmp_rate = 0 means no ICMP errors at all, not "the first burst only".
        icmp_burst: if cfg.icmp_rate == 0 {
            0
        } else {
            u64::from(cfg.icmp_burst)
        },
    };
    let qcap = (n as usize * 2).max(1024);
    let nat = nat_cfg.is_some();
    let ipoe_gw = cp.ipoe_gateway();
    let ipoe6 = cfg.dhcp6.is_some() && cfg.ipoe.as_ref().is_some_and(|i| i.dhcp6);
    let workers = workers.clamp(1, crate::config::MAX_WORKERS);
    // PPPoE addresses from the share of the pool that steers to the session's
    // worker (`crate::steer`).
    cp.set_workers(workers);
    let half = |mode: Mode, q: &Arc<UpdateQueue>, k: u16| {
        let mut fp = FastPath::new(fcfg.clone(), q.clone(), counters.clone())
            .with_mode(mode)
            .with_nat(nat)
            .with_local(local)
            .with_ipoe(ipoe_gw)
            .with_dhcp_relay(dhcp_relay)
            .with_prefix_delegation(pd_len)
            .with_ipoe6(ipoe6)
            .with_core_ip6(cfg.core_ip6)
            .with_worker(k, workers);
        if let Some(c) = &core_link {
            fp = fp.with_core_link(c.clone());
        }
        fp
    };
    let nat_log = match &nat_cfg {
        Some(nc) if nc.cgnat.is_some_and(|c| c.log) => Some(Arc::new(NatLog::new(NAT_LOG_QUEUE))),
        _ => None,
    };
    let relay_giaddr = cp.ipoe_gateway().filter(|_| dhcp_relay).map(|g| g.octets());
    let mut graphs = Vec::with_capacity(usize::from(workers));
    let mut queues = Vec::with_capacity(2 * usize::from(workers));
    let mut fp_stats = Vec::with_capacity(2 * usize::from(workers));
    for k in 0..workers {
        let (q_up, q_down) = (update_queue(qcap), update_queue(qcap));
        let up = half(Mode::Upstream, &q_up, k);
        let down = half(Mode::Downstream, &q_down, k);
        fp_stats.push(up.stats());
        fp_stats.push(down.stats());
        queues.push(q_up);
        queues.push(q_down);
        let mut graph = Graph::new();
        match &nat_cfg {
            Some(nc) => {
                // Each worker its own `nat44` with its slice of every outside
                // address's port blocks (VPP nat44-ed style, `Nat44::new_worker`).
                let mut n44 = Nat44::new_worker(nc, k, workers)
                    .map_err(|e| BuildError(alloc::format!("cgnat: {e}")))?;
                if let Some(q) = &nat_log {
                    n44.set_log_sink(Box::new(NatLogSink(q.clone())));
                }
                // Upstream comes first in order, so its kept batches reach `nat44` in
                // hand; core IPv4 moves once from `bng-core-input` into nat44's frame.
                graph.add(Box::new(up), Some(NODE_NAT));
                graph.add(Box::new(CoreInput { relay_giaddr }), Some(NODE_NAT));
                let binder = env.nat_bindings.clone().map(NatBinder::new);
                graph.add(Box::new(CgnatNode(n44, binder)), Some(NODE_DOWNSTREAM));
                graph.set_port_entry(CORE_PORT, NODE_CORE_INPUT);
            }
            None => {
                graph.add(Box::new(up), None);
                graph.set_port_entry(CORE_PORT, NODE_DOWNSTREAM);
            }
        }
        graph.add(Box::new(down), None);
        graph.add(
            Box::new(CoreArp {
                core: core_link.clone(),
                core_mac: env.core_mac,
            }),
            None,
        );
        graph.set_entry(NODE_UPSTREAM);
        graph.set_port_entry(ACCESS_PORT, NODE_UPSTREAM);
        graph
            .seal()
            .map_err(|e| BuildError(alloc::format!("vbng graph: {e}")))?;
        graphs.push(graph);
    }
    let stats = Stats {
        sessions: counters,
        fastpath: fp_stats,
        core_link,
    };
    let mut graphs = graphs.into_iter();
    let Some(graph) = graphs.next() else {
        return Err(BuildError("vbng: no worker".into()));
    };
    let vbng = Vbng {
        graph,
        control: Control {
            cp,
            fib: FibQueues::new(queues),
            nat_log,
        },
        stats,
        nat: nat_cfg,
    };
    Ok((vbng, graphs.collect()))
}

/// A worker hook that applies pending table updates to the fast-path nodes between
/// bursts (so an update never waits for traffic to reach its node).
///
/// It runs on every loop, so the nodes are looked up by name once (a graph's
/// nodes do not move after it is sealed) and an empty queue costs two loads.
pub fn update_hook() -> Hook {
    let mut at: Option<[Option<usize>; 3]> = None;
    Box::new(move |g: &mut Graph, out: &mut Out| {
        let [up, down, nat] = *at.get_or_insert_with(|| {
            [NODE_UPSTREAM, NODE_DOWNSTREAM, NODE_NAT].map(|n| g.node_index(n))
        });
        for i in [up, down].into_iter().flatten() {
            if let Some(fp) = g.node_mut_at::<FastPath>(i) {
                fp.drain_updates(out.now_ns);
            }
        }
        if let Some(n) = nat.and_then(|i| g.node_mut_at::<CgnatNode>(i)) {
            n.drain_bindings();
        }
    })
}

/// The fast path's update queues with a backlog each: an update a full queue cannot
/// take now is kept, in order, and offered again by [`FibQueues::flush`].
pub struct FibQueues {
    qs: Vec<(Arc<UpdateQueue>, VecDeque<FibUpdate>)>,
}

impl FibQueues {
    /// Over `queues` (one per fast-path node; every update goes to each).
    pub fn new(queues: Vec<Arc<UpdateQueue>>) -> FibQueues {
        FibQueues {
            qs: queues.into_iter().map(|q| (q, VecDeque::new())).collect(),
        }
    }

    /// Queues `u` for every node.
    pub fn push(&mut self, u: FibUpdate) {
        for (q, backlog) in self.qs.iter_mut() {
            if !backlog.is_empty() {
                backlog.push_back(u.clone());
            } else if let Err(u) = q.push(u.clone()) {
                backlog.push_back(u);
            }
        }
    }

    /// Offers the backlogs again; returns the updates still waiting.
    pub fn flush(&mut self) -> usize {
        let mut left = 0;
        for (q, backlog) in self.qs.iter_mut() {
            while let Some(u) = backlog.pop_front() {
                if let Err(u) = q.push(u) {
                    backlog.push_front(u);
                    break;
                }
            }
            left += backlog.len();
        }
        left
    }

    /// Updates waiting in the backlogs.
    pub fn backlog(&self) -> usize {
        self.qs.iter().map(|(_, b)| b.len()).sum()
    }

    /// The queues (one per fast-path node).
    pub fn queues(&self) -> impl Iterator<Item = &Arc<UpdateQueue>> {
        self.qs.iter().map(|(q, _)| q)
    }
}

/// The control side of a composed vBNG.
pub struct Control {
    /// The control plane (PPPoE discovery, PPP, AAA, pools, timers).
    pub cp: ControlPlane,
    /// Table updates to the fast-path nodes.
    pub fib: FibQueues,
    /// CGNAT port-block records from the `nat44` node (with `[cgnat]` and `log`).
    pub nat_log: Option<Arc<NatLog>>,
}

impl Control {
    /// A punted frame received on `port`.
    pub fn input(&mut self, port: u16, frame: &[u8], now_ms: u64) {
        self.cp.input(port, frame, now_ms);
    }

    /// Feeds every packet waiting in a worker's punt `ring` to the control plane (in
    /// order) and frees it into `cache`; returns how many.
    pub fn drain_punts(&mut self, ring: &PktRing, cache: &mut PoolCache, now_ms: u64) -> usize {
        let mut n = 0;
        while let Some(p) = ring.pop() {
            self.cp.input(p.meta.port, p.data(), now_ms);
            cache.free(p);
            n += 1;
        }
        n
    }

    /// Moves the control plane's table updates to the fast-path queues.
    pub fn sync_fib(&mut self) {
        for u in self.cp.take_fib() {
            self.fib.push(u);
        }
        self.fib.flush();
    }

    /// Timers at `now_ms`, table updates to the fast path; returns the frames to send
    /// (port, frame).
    pub fn poll(&mut self, now_ms: u64) -> Vec<(u16, Vec<u8>)> {
        self.cp.poll(now_ms);
        self.sync_fib();
        self.cp.take_tx()
    }
}

/// Frames from the control plane on their way to a worker's inject ring: each is
/// copied into a pool buffer with `meta.port` set; what the ring (or the pool) cannot
/// take now waits here, in order.
#[derive(Debug, Default)]
pub struct Injector {
    backlog: VecDeque<(u16, Vec<u8>)>,
    /// Frames longer than a buffer (dropped).
    pub oversize: u64,
}

impl Injector {
    pub fn new() -> Injector {
        Injector::default()
    }

    /// Queues frames (port, frame).
    pub fn queue(&mut self, frames: impl IntoIterator<Item = (u16, Vec<u8>)>) {
        self.backlog.extend(frames);
    }

    /// Moves what it can into `ring`; returns the frames moved.
    pub fn flush(&mut self, ring: &PktRing, cache: &mut PoolCache) -> usize {
        let mut n = 0;
        while let Some((port, f)) = self.backlog.front() {
            if ring.is_full() {
                break;
            }
            let Some(mut p) = cache.alloc() else {
                break;
            };
            if p.copy_from(f).is_err() {
                cache.free(p);
                self.oversize += 1;
                self.backlog.pop_front();
                continue;
            }
            p.meta.port = *port;
            if let Err(p) = ring.push(p) {
                cache.free(p);
                break;
            }
            self.backlog.pop_front();
            n += 1;
        }
        n
    }

    /// Frames waiting.
    pub fn len(&self) -> usize {
        self.backlog.len()
    }

    pub fn is_empty(&self) -> bool {
        self.backlog.is_empty()
    }
}

/// CGNAT port-block records from the data plane to the control side (lock-free,
/// bounded; records that do not fit are counted in `lost`).
#[derive(Debug)]
pub struct NatLog {
    q: ArrayQueue<LogRecord>,
    /// Records lost because the queue was full.
    pub lost: AtomicU64,
}

impl NatLog {
    pub fn new(cap: usize) -> NatLog {
        NatLog {
            q: ArrayQueue::new(cap.max(1)),
            lost: AtomicU64::new(0),
        }
    }

    /// The next record.
    pub fn pop(&self) -> Option<LogRecord> {
        self.q.pop()
    }
}

struct NatLogSink(Arc<NatLog>);

impl LogSink for NatLogSink {
    fn record(&mut self, rec: &LogRecord) {
        if self.0.q.push(*rec).is_err() {
            self.0.lost.fetch_add(1, Ordering::Relaxed);
        }
    }
}

dataplane::drop_reasons! {
    /// Why `bng-core-input` drops.
    pub enum CoreInputDrop {
        Malformed = ("malformed", "shorter than an Ethernet header"),
        Ethertype = ("unsupported-ethertype", "neither IPv4, IPv6 nor ARP"),
    }
}

/// Next nodes of `bng-core-input` (IPv4 is kept for `nat44`).
static CORE_INPUT_NEXT: &[&str] = &[NODE_CORE_ARP, NODE_DOWNSTREAM];
const TO_CORE_ARP: u16 = 0;
const TO_DOWNSTREAM: u16 = 1;

/// `bng-core-input`: the core port's entry node with CGNAT (an `ethernet-input` for
/// the core side): IPv4 is kept for `nat44` (its default successor), IPv6 goes to
/// `bng-downstream`, ARP to `bng-core-arp`. Without CGNAT the core port enters
/// `bng-downstream` directly, which sends ARP to `bng-core-arp` itself. With the
/// DHCP relay (`[ipoe.relay]`), the servers' replies (UDP to port 67 of the IPoE
/// gateway, the relay's `giaddr`, RFC 2131 §4.1) are punted to the control plane
/// here, before `nat44` could take them for inbound traffic without a session.
#[derive(Debug, Clone, Copy, Default)]
pub struct CoreInput {
    /// The IPoE gateway when relaying DHCP.
    pub relay_giaddr: Option<[u8; 4]>,
}

impl CoreInput {
    /// Whether an untagged IPv4 frame is a DHCP server's reply to our relay.
    #[inline]
    fn relay_reply(&self, d: &[u8]) -> bool {
        let Some(g) = self.relay_giaddr else {
            return false;
        };
        let Some(ip) = d.get(14..34) else {
            return false;
        };
        let hl = usize::from(ip[0] & 0x0f) * 4;
        ip[0] >> 4 == 4
            && ip[9] == 17
            && ip[6] & 0x1f == 0
            && ip[7] == 0
            && ip[16..20] == g
            && d.get(14 + hl + 2..14 + hl + 4) == Some(&[0, 67])
    }
}

impl Stage for CoreInput {
    fn name(&self) -> &'static str {
        NODE_CORE_INPUT
    }
    fn errors(&self) -> &'static [&'static str] {
        CoreInputDrop::NAMES
    }
    fn error_help(&self) -> &'static [&'static str] {
        CoreInputDrop::HELP
    }
    fn next_nodes(&self) -> &'static [&'static str] {
        CORE_INPUT_NEXT
    }
    fn process(&mut self, batch: &mut Batch, node: &mut NodeStats, out: &mut Out) {
        let this = *self;
        batch.dispatch(node, out, |p, _| match p.data().get(12..14) {
            Some(&[0x08, 0x00]) if this.relay_reply(p.data()) => Next::Punt,
            Some(&[0x08, 0x00]) => Next::Keep,
            Some(&[0x86, 0xdd]) => Next::Node(TO_DOWNSTREAM),
            Some(&[0x08, 0x06]) => Next::Node(TO_CORE_ARP),
            Some(_) => CoreInputDrop::Ethertype.into(),
            None => CoreInputDrop::Malformed.into(),
        });
    }
}

dataplane::drop_reasons! {
    /// Why `bng-core-arp` drops (an ARP frame it consumed is a "drop" too: it ends
    /// here).
    pub enum CoreArpDrop {
        Consumed = ("arp-consumed", "ARP reply or request from the gateway, learned"),
        NotForUs = ("arp-not-for-us", "ARP for another address"),
        Malformed = ("arp-malformed", "ARP packet that does not parse"),
        Ignored = ("arp-ignored", "ARP without a core address (core_ip), from a bad sender or claiming our address"),
    }
}

/// `bng-core-arp`: ARP on the core link (RFC 826) against the [`CoreLink`]: requests
/// for `core_ip` are answered in place, the gateway's binding is learned. Requests
/// for the gateway are sent by the fast-path nodes (on demand and from their timers).
pub struct CoreArp {
    core: Option<Arc<CoreLink>>,
    core_mac: [u8; 6],
}

impl Stage for CoreArp {
    fn name(&self) -> &'static str {
        NODE_CORE_ARP
    }
    fn errors(&self) -> &'static [&'static str] {
        CoreArpDrop::NAMES
    }
    fn error_help(&self) -> &'static [&'static str] {
        CoreArpDrop::HELP
    }
    fn process(&mut self, batch: &mut Batch, node: &mut NodeStats, out: &mut Out) {
        let now = out.now_ns;
        let (core, mac) = (self.core.as_deref(), self.core_mac);
        batch.dispatch(node, out, |p, _| {
            let Some(c) = core else {
                return CoreArpDrop::Ignored.into();
            };
            match c.input(p.data_mut(), mac, now) {
                ArpVerdict::Reply => Next::Port(CORE_PORT),
                ArpVerdict::Learned => CoreArpDrop::Consumed.into(),
                ArpVerdict::NotForUs => CoreArpDrop::NotForUs.into(),
                ArpVerdict::Malformed => CoreArpDrop::Malformed.into(),
                ArpVerdict::BadSender | ArpVerdict::Conflict => CoreArpDrop::Ignored.into(),
            }
        });
    }
    fn counters(&self, f: &mut dyn FnMut(Counter)) {
        let Some(c) = self.core.as_deref() else {
            return;
        };
        let g = |a: &AtomicU64| a.load(Ordering::Relaxed);
        let s = &c.stats;
        f(Counter::total(
            "arp-replies",
            "ARP replies sent for core_ip",
            g(&s.replies),
        ));
        f(Counter::total(
            "arp-requests",
            "ARP requests sent for the gateway",
            g(&s.requests),
        ));
        f(Counter::total(
            "arp-learned",
            "Gateway bindings learned or refreshed",
            g(&s.learned),
        ));
        f(Counter::total(
            "arp-conflicts",
            "Frames claiming our address from another MAC",
            g(&s.conflicts),
        ));
        f(Counter::total(
            "nd-solicitations",
            "Neighbor Solicitations sent for the IPv6 gateway",
            g(&s.ns_sent),
        ));
        f(Counter::total(
            "nd-learned",
            "IPv6 gateway bindings learned or refreshed",
            g(&s.learned6),
        ));
    }
}

/// `nat44` as a vBNG node: the engine's [`Nat44`] with its table sizes and
/// counters reported as node counters; on a user plane, with the queue of the
/// bindings its control plane allocated.
pub struct CgnatNode(pub Nat44, pub Option<NatBinder>);

/// A user plane's binding queue and what became of the bindings.
#[derive(Debug)]
pub struct NatBinder {
    pub q: Arc<NatBindQueue>,
    /// Bindings installed and removed.
    pub bound: u64,
    pub unbound: u64,
    /// Bindings the stage refused (the PFCP side checks them first: 0 unless the
    /// two disagree).
    pub refused: u64,
}

impl NatBinder {
    /// Over queue `q`, nothing applied yet.
    pub fn new(q: Arc<NatBindQueue>) -> NatBinder {
        NatBinder {
            q,
            bound: 0,
            unbound: 0,
            refused: 0,
        }
    }
}

impl CgnatNode {
    /// Applies the queued binding operations (between bursts; allocates nothing).
    pub fn drain_bindings(&mut self) {
        let Some(b) = self.1.as_mut() else {
            return;
        };
        // An empty queue: two loads, not `pop`'s fence.
        if b.q.is_empty() {
            return;
        }
        while let Some(op) = b.q.pop() {
            match op {
                NatOp::Bind {
                    inside,
                    outside,
                    port_first,
                    port_last,
                } => match self.0.bind(inside, outside, port_first, port_last) {
                    Ok(()) => b.bound += 1,
                    Err(_) => b.refused += 1,
                },
                NatOp::Unbind { inside } => {
                    if self.0.unbind(inside) {
                        b.unbound += 1;
                    }
                }
            }
        }
    }
}

impl Stage for CgnatNode {
    fn name(&self) -> &'static str {
        self.0.name()
    }
    fn errors(&self) -> &'static [&'static str] {
        self.0.errors()
    }
    fn error_help(&self) -> &'static [&'static str] {
        self.0.error_help()
    }
    fn next_nodes(&self) -> &'static [&'static str] {
        self.0.next_nodes()
    }
    fn process(&mut self, batch: &mut Batch, node: &mut NodeStats, out: &mut Out) {
        self.0.process(batch, node, out);
    }
    fn tick(&mut self, out: &mut Out) {
        self.0.tick(out);
    }
    fn counters(&self, f: &mut dyn FnMut(Counter)) {
        // The engine's node may report its own counters one day: then use those.
        if let Some(b) = &self.1 {
            f(Counter::total(
                "bindings-installed",
                "port-block bindings from the control plane installed",
                b.bound,
            ));
            f(Counter::total(
                "bindings-removed",
                "port-block bindings removed",
                b.unbound,
            ));
            f(Counter::total(
                "bindings-refused",
                "port-block bindings the stage refused",
                b.refused,
            ));
        }
        let mut own = false;
        self.0.counters(&mut |c| {
            own = true;
            f(c);
        });
        if own {
            return;
        }
        // The same names as the engine's own node counters.
        let n = &self.0;
        let s = n.stats;
        f(Counter::gauge(
            "sessions-active",
            "NAT sessions in use",
            n.session_count() as u64,
        ));
        f(Counter::gauge(
            "mappings-active",
            "NAT mappings in use",
            n.mapping_count() as u64,
        ));
        f(Counter::gauge(
            "subscribers",
            "Inside addresses holding ports",
            n.subscriber_count() as u64,
        ));
        f(Counter::gauge(
            "port-blocks-in-use",
            "Port blocks allocated",
            n.blocks_in_use(),
        ));
        for (name, help, v) in [
            (
                "sessions-created",
                "NAT sessions created",
                s.sessions_created,
            ),
            (
                "sessions-expired",
                "NAT sessions expired",
                s.sessions_expired,
            ),
            (
                "mappings-created",
                "NAT mappings created",
                s.mappings_created,
            ),
            ("hairpinned", "Packets hairpinned", s.hairpinned),
            (
                "icmp-errors-translated",
                "ICMP errors translated (RFC 5508)",
                s.icmp_errors_translated,
            ),
            (
                "icmp-errors-sent",
                "ICMP errors sent on exhaustion",
                s.icmp_errors_sent,
            ),
        ] {
            f(Counter::total(name, help, v));
        }
    }
    fn as_any_mut(&mut self) -> Option<&mut dyn core::any::Any> {
        Some(self)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env() -> BuildEnv {
        BuildEnv::new([2, 0, 0, 0, 0xc0, 2], 64, Rng::from_seed([7; 32]))
    }

    #[test]
    fn graph_without_and_with_cgnat() {
        let cfg = Config::default();
        let v = build(&cfg, &env()).unwrap();
        assert!(v.nat.is_none() && v.control.nat_log.is_none());
        let d = v.graph.describe();
        assert_eq!(
            d,
            "bng-upstream\nbng-downstream -> bng-core-arp\nbng-core-arp\n\
             port 0 -> bng-upstream\nport 1 -> bng-downstream\n"
        );

        let cfg =
            Config::from_toml("[cgnat]\npool = [\"203.0.113.0/28\"]\nblock_size = 256\n").unwrap();
        let v = build(&cfg, &env()).unwrap();
        let nc = v.nat.as_ref().unwrap();
        assert_eq!(nc.inside_ports, alloc::vec![ACCESS_PORT]);
        assert_eq!(nc.cgnat.unwrap().block_size, 256);
        let d = v.graph.describe();
        assert_eq!(
            d,
            "bng-upstream -> nat44\nbng-core-input -> bng-core-arp, bng-downstream, nat44\n\
             nat44 -> bng-downstream\nbng-downstream -> bng-core-arp\nbng-core-arp\n\
             port 0 -> bng-upstream\nport 1 -> bng-core-input\n"
        );

        // The old shorthand.
        let cfg = Config::from_toml("cgnat_public = \"203.0.113.0/28\"\n").unwrap();
        let v = build(&cfg, &env()).unwrap();
        assert_eq!(
            v.nat.unwrap().pool,
            alloc::vec![String::from("203.0.113.0/28")]
        );
    }
}
