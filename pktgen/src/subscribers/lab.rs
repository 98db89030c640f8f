//! The in-memory BNG lab (`testbed lab bng`): emulated subscribers → vBNG → core
//! sink, in one process and one thread, over in-memory virtio ring pairs, with no root.
//! Phases: session setup (rate-controlled), upstream traffic, downstream traffic,
//! teardown. Reports setup rate and latency, failures by phase, throughput, per-core
//! Mpps of the BNG alone, packet loss, and with CGNAT the `nat44` node's counters.
//! The subscribers are PPPoE clients, IPoE (DHCPv4) clients or half of each
//! ([`LabConfig::access`]); the report has the figures per access type too.
//!
//! The BNG is the `vbng` binary's: [`lab_config`] turns the lab's settings into a
//! `vbng::config::Config`, [`vbng::vnf::build`] composes it (the same function the
//! binary calls), its graph runs on the engine's `dataplane::worker::Worker` and its
//! control plane on the worker's punt and inject rings. The lab steps generator,
//! worker, control plane and sink in turn from its one thread.

use super::{Access, AccessPlan, Emulator, EmulatorConfig, SetupReport, VlanPlan, IPOE_MARK};
use dataplane::batch::Batch;
use dataplane::buf::{Pool, PoolCache};
use dataplane::port::mem::{pair, MemPort};
use dataplane::port::Port;
use dataplane::worker::{ring, PktRing, Worker, WorkerConfig};
use serde::Serialize;
use std::collections::{BTreeMap, VecDeque};
use std::time::{Duration, Instant};
use vbng::config::{CgnatSection, Config, IpoeSection, IpoeUsername, Range4, UserConfig};
use vbng::control::ControlPlane;
use vbng::lcp::AuthProto;
use vbng::rng::Rng;
use vbng::vnf::{build, update_hook, BuildEnv, Control, Injector, Vbng, NODE_NAT};

/// Lab settings.
#[derive(Debug, Clone)]
pub struct LabConfig {
    /// Subscribers.
    pub sessions: u32,
    /// Setups per second (0 = as fast as possible).
    pub setup_rate: u32,
    /// Most setups in flight.
    pub max_outstanding: u32,
    /// PAP or CHAP.
    pub auth: AuthProto,
    /// Frame sizes cycled through in the traffic phases (e.g. `[64]` or IMIX).
    pub frame_sizes: Vec<usize>,
    /// Packets per traffic phase.
    pub packets: u64,
    /// Setup phase timeout.
    pub setup_timeout: Duration,
    /// Per-subscriber rate (up, down) bit/s; 0 = unlimited.
    pub rate: (u64, u64),
    /// Run the downstream phase.
    pub downstream: bool,
    /// CGNAT public pool (e.g. `198.51.100.0/28`): the pipeline becomes
    /// `bng-fastpath(up) → nat44 → bng-fastpath(down)`; the downstream phase answers the
    /// translated flows seen by the core sink.
    pub cgnat: Option<Range4>,
    /// Dual stack: IPv6CP, a /64 per session from `2001:db8:100::/40` announced by RA
    /// (SLAAC over PPP), and IPv6 upstream/downstream phases after the IPv4 ones
    /// (PPPoE subscribers only).
    pub ipv6: bool,
    /// PPPoE, IPoE (DHCPv4, the vBNG's `[ipoe]`) or half of each.
    pub access: AccessPlan,
}

/// The far end of the IPv6 streams (a core host).
pub const IPV6_REMOTE: u128 = 0x2001_0db8_ffff_0000_0000_0000_0000_0001;

impl Default for LabConfig {
    fn default() -> Self {
        LabConfig {
            sessions: 1000,
            setup_rate: 0,
            max_outstanding: 4096,
            auth: AuthProto::Pap,
            frame_sizes: vec![64],
            packets: 1_000_000,
            setup_timeout: Duration::from_secs(120),
            rate: (0, 0),
            downstream: true,
            cgnat: None,
            ipv6: false,
            access: AccessPlan::Pppoe,
        }
    }
}

/// Simple IMIX (7 × 64, 4 × 570, 1 × 1518 bytes).
pub fn imix() -> Vec<usize> {
    let mut v = vec![64; 7];
    v.extend([570; 4]);
    v.push(1518);
    v
}

/// Throughput of one traffic phase.
#[derive(Debug, Clone, Serialize, Default)]
pub struct TrafficReport {
    /// Packets offered.
    pub sent: u64,
    /// Packets that reached the far end.
    pub received: u64,
    /// Packet loss ratio.
    pub plr: f64,
    /// Received packets per second of wall time (generator, BNG and sink share a core).
    pub throughput_mpps: f64,
    /// Packets per second of the BNG pipeline alone (rx, stages, tx), per core.
    pub bng_mpps_per_core: f64,
    /// BNG nanoseconds per packet.
    pub bng_ns_per_packet: f64,
    /// Mean frame size offered, bytes.
    pub mean_frame: f64,
}

impl LabReport {
    /// Fills the headline fields from the setup report and the traffic phases:
    /// sessions established, setup rate and latency, upstream throughput, and the
    /// packet loss ratio over the upstream and downstream phases.
    pub fn summarise(&mut self, setup: &SetupReport) {
        for a in self.per_access.values_mut() {
            a.plr = plr_of([Some(&a.upstream), a.downstream.as_ref()]);
            a.throughput_mpps = a.upstream.throughput_mpps;
        }
        self.sessions_established = setup.established;
        self.setup_rate_per_s = setup.setup_rate_per_s;
        self.setup_p50_ms = setup.setup_p50_ms;
        self.setup_p99_ms = setup.setup_p99_ms;
        self.throughput_mpps = self.upstream.throughput_mpps;
        let (s, r) = [Some(&self.upstream), self.downstream.as_ref()]
            .into_iter()
            .flatten()
            .fold((0, 0), |(s, r), t| (s + t.sent, r + t.received));
        self.plr = if s > 0 {
            (s - r.min(s)) as f64 / s as f64
        } else {
            0.0
        };
    }
}

/// Packet loss over some traffic phases.
fn plr_of<'a>(phases: impl IntoIterator<Item = Option<&'a TrafficReport>>) -> f64 {
    let (s, r) = phases
        .into_iter()
        .flatten()
        .fold((0, 0), |(s, r), t| (s + t.sent, r + t.received));
    if s > 0 {
        (s - r.min(s)) as f64 / s as f64
    } else {
        0.0
    }
}

/// The figures of the subscribers of one access type (`per_access` in the JSON).
#[derive(Debug, Clone, Serialize, Default)]
pub struct AccessReport {
    /// Subscribers of this type.
    pub sessions: u32,
    /// Of them established.
    pub sessions_established: u32,
    /// Established per second, from the first one's start to the last one's setup.
    pub setup_rate_per_s: f64,
    /// Setup latency p50, ms.
    pub setup_p50_ms: f64,
    /// Setup latency p99, ms.
    pub setup_p99_ms: f64,
    /// Failed setups by phase.
    pub failed_by_phase: BTreeMap<String, u64>,
    /// Upstream throughput of this type's packets, Mpps.
    pub throughput_mpps: f64,
    /// Packet loss ratio of this type's packets over both traffic phases.
    pub plr: f64,
    /// This type's share of the upstream phase: its packets sent and received, and
    /// its received packets over the phase's wall time; the `bng_*` figures are the
    /// phase's (the BNG forwards both types in the same loop).
    pub upstream: TrafficReport,
    /// The same for the downstream phase.
    pub downstream: Option<TrafficReport>,
}

impl AccessReport {
    /// The setup figures of one access type ([`super::Emulator::report_access`]).
    pub fn from_setup(r: &SetupReport) -> AccessReport {
        AccessReport {
            sessions: r.sessions,
            sessions_established: r.established,
            setup_rate_per_s: r.setup_rate_per_s,
            setup_p50_ms: r.setup_p50_ms,
            setup_p99_ms: r.setup_p99_ms,
            failed_by_phase: r.failed_by_phase.clone(),
            ..AccessReport::default()
        }
    }
}

impl LabReport {
    /// `per_access` with the setup figures of each access type `emu` runs.
    pub fn set_access_setup(&mut self, emu: &Emulator, plan: AccessPlan) {
        self.access = plan.as_str().to_string();
        for a in [Access::Pppoe, Access::Ipoe] {
            if plan.uses(a) {
                self.per_access.insert(
                    a.as_str().to_string(),
                    AccessReport::from_setup(&emu.report_access(a)),
                );
            }
        }
    }

    /// Each access type's share of the upstream (`up`) or downstream phase.
    pub fn set_access_traffic(&mut self, up: bool, by: Vec<(Access, TrafficReport)>) {
        for (a, t) in by {
            if let Some(r) = self.per_access.get_mut(a.as_str()) {
                if up {
                    r.upstream = t;
                } else {
                    r.downstream = Some(t);
                }
            }
        }
    }
}

/// Packets one node dropped for one reason.
#[derive(Debug, Clone, Serialize, Default, PartialEq, Eq)]
pub struct NodeDrop {
    /// Node name.
    pub node: String,
    /// Drop reason (the node's declared name).
    pub reason: String,
    /// Packets.
    pub count: u64,
}

/// `title: name value, …` for the non-zero counters (empty when all are zero).
pub fn format_counters(title: &str, c: &BTreeMap<String, u64>) -> String {
    let nz: Vec<String> = c
        .iter()
        .filter(|(_, &v)| v > 0)
        .map(|(k, v)| format!("{k} {v}"))
        .collect();
    if nz.is_empty() {
        String::new()
    } else {
        format!("{title}: {}\n", nz.join(", "))
    }
}

/// The lab's result (the JSON that `testbed lab bng --json` prints).
#[derive(Debug, Clone, Serialize, Default)]
pub struct LabReport {
    /// Sessions established.
    pub sessions_established: u32,
    /// Established sessions per second.
    pub setup_rate_per_s: f64,
    /// Setup latency p50, ms.
    pub setup_p50_ms: f64,
    /// Setup latency p99, ms.
    pub setup_p99_ms: f64,
    /// Throughput of the upstream phase, Mpps.
    pub throughput_mpps: f64,
    /// Packet loss ratio over both traffic phases.
    pub plr: f64,
    /// Details of the setup phase.
    pub setup: SetupReport,
    /// Upstream phase.
    pub upstream: TrafficReport,
    /// Downstream phase.
    pub downstream: Option<TrafficReport>,
    /// Sessions the BNG still held after teardown.
    pub sessions_after_teardown: usize,
    /// The BNG's `show errors` (one line per non-zero drop reason) and its non-zero
    /// control-plane counters, as text for people.
    pub bng_errors: String,
    /// The same drops, one record per (node, reason) with a non-zero count.
    pub bng_drops: Vec<NodeDrop>,
    /// Every control-plane counter by name (`ControlStats`).
    pub bng_control: BTreeMap<String, u64>,
    /// Sessions with a SLAAC IPv6 address (the RA's /64 + IPv6CP identifier); 0
    /// without `ipv6`.
    pub ipv6_sessions: u32,
    /// IPv6 upstream phase (with `ipv6`).
    pub upstream6: Option<TrafficReport>,
    /// IPv6 downstream phase (with `ipv6` and the downstream phase on).
    pub downstream6: Option<TrafficReport>,
    /// Packet loss ratio over the IPv6 phases.
    pub ipv6_plr: f64,
    /// With CGNAT: the `nat44` node's counters after the traffic phases.
    pub nat: Option<NatReport>,
    /// The BNG worker's loop counters (punt and inject rings, unsent frames).
    pub bng_worker: WorkerReport,
    /// The graph the BNG ran (`Graph::describe` of [`vbng::vnf::build`]'s graph).
    pub bng_graph: String,
    /// `pppoe`, `ipoe` or `mixed`.
    pub access: String,
    /// The figures per access type (`pppoe`, `ipoe`; the types the run used).
    pub per_access: BTreeMap<String, AccessReport>,
}

/// The BNG worker's loop counters at the end of the lab.
#[derive(Debug, Clone, Serialize, Default)]
pub struct WorkerReport {
    /// Iterations of the worker loop.
    pub loops: u64,
    /// Packets handed to the control plane (punt ring).
    pub punted: u64,
    /// Punted packets the ring could not take.
    pub punt_dropped: u64,
    /// Frames the control plane injected.
    pub injected: u64,
    /// Injected frames for a port that does not exist.
    pub inject_dropped: u64,
    /// Frames a port could not take, freed.
    pub tx_unsent: u64,
    /// Frames the control plane could not hand to the inject ring (too long).
    pub injector_oversize: u64,
}

/// The `nat44` node (CGNAT) after the traffic phases: its own counters and its drops.
#[derive(Debug, Clone, Serialize, Default)]
pub struct NatReport {
    /// The public pool (`--cgnat`).
    pub pool: String,
    /// NAT sessions in use.
    pub sessions: u64,
    /// NAT sessions created.
    pub sessions_created: u64,
    /// Mappings (inside address and port to outside) in use.
    pub mappings: u64,
    /// Subscribers (inside addresses) holding ports.
    pub subscribers: u64,
    /// Port blocks allocated (RFC 6888 port-block allocation).
    pub blocks: u64,
    /// Port-block log records (allocations and releases) the node emitted.
    pub log_records: u64,
    /// Packets that entered the node.
    pub packets: u64,
    /// Packets it dropped.
    pub drops: u64,
    /// Drops by reason (non-zero ones).
    pub drop_reasons: BTreeMap<String, u64>,
    /// Every counter the node reports, by name.
    pub counters: BTreeMap<String, u64>,
}

/// The vBNG configuration the lab runs, as a `vbng` TOML would give it: PAP or CHAP
/// with a local user per subscriber (`user<i>`, password `lab-secret`, `--rate` as each
/// user's rate), the subscriber pool `100.64.0.2-100.127.255.254`, with `ipv6` IPv6CP
/// and the prefix pool `2001:db8:100::/40`, with `--cgnat POOL` a `[cgnat]` section
/// with that pool (port-block settings at their defaults). With IPoE subscribers
/// ([`LabConfig::access`] `ipoe` or `mixed`) an `[ipoe]` section: authorised by the
/// same local users (an IPoE subscriber's user is its MAC, `02:5b:…`, with the line
/// password `lab-secret`), the DHCP subnet `10.128.0.1/9` and its pool
/// `10.128.0.2-10.255.255.254`, leases, offers and the rate limiter sized for the
/// run. The lab builds its BNG from
/// this with [`vbng::vnf::build`], the composition the `vbng` binary runs; `toml`
/// serialization of the result is a config file `vbng run -c` accepts.
pub fn lab_config(cfg: &LabConfig) -> Config {
    let n = cfg.sessions.max(1);
    Config {
        auth: cfg.auth,
        // `auth_fallback` stays at the binary's default: a TOML file cannot say "none"
        // (the clients accept only `auth`, so it is never used).
        keepalive_interval_s: 30,
        restart_ms: 1000,
        pools: vec![vbng::config::PoolConfig {
            name: "default".into(),
            // The gateway (100.64.0.1) is the BNG's own: never in a pool.
            ranges: vec![
                Range4::new([100, 64, 0, 2].into(), [100, 127, 255, 254].into())
                    .expect("first <= last"),
            ],
        }],
        users: (0..n)
            .map(|i| UserConfig {
                name: match cfg.access.access_of(i) {
                    Access::Pppoe => format!("{USER_PREFIX}{i}"),
                    Access::Ipoe => mac_user(i),
                },
                password: PASSWORD.into(),
                ip: None,
                // bit/s up/down, 0 = unlimited
                rate: (cfg.rate != (0, 0)).then(|| format!("{}/{}", cfg.rate.0, cfg.rate.1)),
            })
            .collect(),
        ipv6cp: cfg.ipv6,
        pools6: if cfg.ipv6 {
            vec![vbng::config::Pool6Config {
                name: "v6".into(),
                prefix: vbng::config::Net6 {
                    addr: [0x2001, 0xdb8, 0x100, 0, 0, 0, 0, 0].into(),
                    len: 40,
                },
            }]
        } else {
            Vec::new()
        },
        cgnat: cfg.cgnat.as_ref().map(|pool| CgnatSection {
            pool: vec![*pool],
            ..CgnatSection::default()
        }),
        ipoe: cfg.access.uses(Access::Ipoe).then(|| ipoe_section(n)),
        ..Config::default()
    }
}

/// The AAA user name of IPoE subscriber `i`: its MAC as `aa:bb:cc:dd:ee:ff` (the
/// vBNG's `ipoe.username = "mac"`).
pub fn mac_user(i: u32) -> String {
    super::mac_of(i)
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect::<Vec<_>>()
        .join(":")
}

/// The lab's `[ipoe]` section for `n` subscribers.
fn ipoe_section(n: u32) -> IpoeSection {
    let mut dhcp = vbng::dhcp4::Dhcp4Config {
        gateway: vbng::config::Net4 {
            addr: [10, 128, 0, 1].into(),
            len: 9,
        },
        dns: vec![[192, 0, 2, 53].into()],
        max_leases: n.max(65_536),
        max_offers: n.max(4096),
        max_rate_clients: n.max(65_536),
        ..vbng::dhcp4::Dhcp4Config::default()
    };
    dhcp.pools = vec![vbng::config::PoolConfig {
        name: "ipoe".into(),
        ranges: vec![
            Range4::new([10, 128, 0, 2].into(), [10, 255, 255, 254].into()).expect("first <= last"),
        ],
    }];
    IpoeSection {
        username: IpoeUsername::Mac,
        password: PASSWORD.into(),
        authorize: true,
        lease_journal: None,
        dhcp,
        relay: None,
        dhcp6: false,
    }
}

/// User names of the lab's subscribers: `user<i>`.
const USER_PREFIX: &str = "user";
/// Every lab subscriber's password.
const PASSWORD: &str = "lab-secret";
/// Punt and inject ring sizes between the worker and the control plane.
const RING: usize = 4096;
/// Worker iterations per lab step at most (each takes up to a batch per port).
const POLLS_PER_STEP: usize = 16;

/// The vBNG as the lab runs it: the graph of [`vbng::vnf::build`] on the engine's
/// worker (ports 0 access, 1 core), and the control side on the punt and inject rings,
/// both stepped from the lab's one thread.
struct Bng {
    worker: Worker<MemPort>,
    control: Control,
    punt: PktRing,
    inject: PktRing,
    injector: Injector,
    /// Buffers of the control side (punted frames freed, injected frames allocated).
    cache: PoolCache,
    /// Time spent in the BNG (worker and control plane).
    busy: Duration,
    /// CGNAT port-block log records read from the `nat44` node.
    nat_log_records: u64,
}

impl Bng {
    /// One lab step of the BNG: worker iterations (table updates, injected frames,
    /// rx, graph, punts, tx, timers) until it is idle, the punted frames to the control
    /// plane after each, then the control plane's timers and table updates and its
    /// frames onto the inject ring (sent by the next worker iteration).
    fn step(&mut self, now_ms: u64, now_ns: u64) {
        let t = Instant::now();
        for _ in 0..POLLS_PER_STEP {
            let work = self.worker.poll(now_ns);
            self.control
                .drain_punts(&self.punt, &mut self.cache, now_ms);
            if work == 0 {
                break;
            }
        }
        let tx = self.control.poll(now_ms);
        self.injector.queue(tx);
        self.injector.flush(&self.inject, &mut self.cache);
        if let Some(log) = &self.control.nat_log {
            while log.pop().is_some() {
                self.nat_log_records += 1;
            }
        }
        self.busy += t.elapsed();
    }

    /// Frames between the worker and the control plane, not yet handled.
    fn in_flight(&self) -> usize {
        self.injector.len() + self.inject.len() + self.punt.len()
    }

    fn cp(&self) -> &ControlPlane {
        &self.control.cp
    }

    /// `show errors` of the graph and the control plane's counters.
    fn errors(&self) -> String {
        format!(
            "{}{}",
            self.worker.graph.show_errors(),
            format_counters("control plane", &self.control_counters())
        )
    }

    fn control_counters(&self) -> BTreeMap<String, u64> {
        self.cp()
            .stats
            .fields()
            .iter()
            .map(|&(k, v)| (k.to_string(), v))
            .collect()
    }

    fn drops(&self) -> Vec<NodeDrop> {
        let mut v = Vec::new();
        for n in self.worker.graph.nodes() {
            v.extend(n.nonzero_drops().map(|(reason, _, count)| NodeDrop {
                node: n.name.to_string(),
                reason: reason.to_string(),
                count,
            }));
        }
        v
    }

    fn worker_report(&self) -> WorkerReport {
        let w = &self.worker.stats;
        WorkerReport {
            loops: w.loops,
            punted: w.punted,
            punt_dropped: w.punt_dropped,
            injected: w.injected,
            inject_dropped: w.inject_dropped,
            tx_unsent: w.tx_unsent,
            injector_oversize: self.injector.oversize,
        }
    }

    /// The `nat44` node's counters and drops (with CGNAT).
    fn nat_report(&self, pool: &str) -> Option<NatReport> {
        let g = &self.worker.graph;
        let node = g.nodes().find(|n| n.name == NODE_NAT)?;
        let mut r = NatReport {
            pool: pool.to_string(),
            packets: node.packets,
            drops: node.dropped(),
            log_records: self.nat_log_records,
            ..NatReport::default()
        };
        for (i, &d) in node.drops.iter().enumerate() {
            if d > 0 {
                r.drop_reasons.insert(node.reason_name(i).to_string(), d);
            }
        }
        g.counters(&mut |name, c| {
            if name == NODE_NAT {
                r.counters.insert(c.name.to_string(), c.value);
            }
        });
        // The first of the names the node reports it under.
        let get = |names: &[&str]| {
            names
                .iter()
                .find_map(|k| r.counters.get(*k).copied())
                .unwrap_or(0)
        };
        r.sessions = get(&["sessions-active", "sessions"]);
        r.sessions_created = get(&["sessions-created"]);
        r.mappings = get(&["mappings-active", "mappings"]);
        r.subscribers = get(&["subscribers"]);
        r.blocks = get(&["port-blocks-in-use", "blocks"]);
        Some(r)
    }
}

fn send_frames(port: &mut MemPort, cache: &mut PoolCache, q: &mut VecDeque<Vec<u8>>) {
    let mut b = Batch::new();
    while !q.is_empty() {
        let room = port.tx_room().min(b.room());
        if room == 0 {
            break;
        }
        for _ in 0..room {
            let Some(f) = q.pop_front() else { break };
            let Some(mut p) = cache.alloc() else {
                q.push_front(f);
                break;
            };
            if p.copy_from(&f).is_err() {
                cache.free(p);
                continue;
            }
            let _ = b.push(p);
        }
        if b.is_empty() {
            break;
        }
        port.tx_burst(cache, &mut b);
        b.free_all(cache);
    }
}

/// Run the lab.
pub fn run(cfg: &LabConfig, mut progress: impl FnMut(&str)) -> anyhow::Result<LabReport> {
    let n = cfg.sessions.max(1);
    let pool = Pool::new(1 << 16).ok_or_else(|| anyhow::anyhow!("buffer pool"))?;
    let (mut gen, access) =
        pair("subscribers", "bng-access", 4096).ok_or_else(|| anyhow::anyhow!("ring"))?;
    let (core, mut sink) = pair("bng-core", "core", 4096).ok_or_else(|| anyhow::anyhow!("ring"))?;
    let vcfg = lab_config(cfg);
    vcfg.validate()
        .map_err(|e| anyhow::anyhow!("vbng config: {e}"))?;
    let core_mac = core.mac().unwrap_or([2, 0, 0, 0, 0, 2]);
    // The core sink poses as the configured next hop.
    let sink_mac = vcfg.core_next_hop_mac.octets();
    let Vbng { graph, control, .. } = build(&vcfg, &BuildEnv::new(core_mac, n, Rng::from_os()))
        .map_err(|e| anyhow::anyhow!("vbng: {e}"))?;
    let bng_graph = graph.describe();
    let (punt, inject) = (ring(RING), ring(RING));
    let worker = Worker::new(
        vec![access, core],
        graph,
        pool.cache(),
        WorkerConfig::default(),
    )
    .map_err(|e| anyhow::anyhow!("vbng graph: {e}"))?
    .with_punt(punt.clone())
    .with_inject(inject.clone())
    .on_update(update_hook());
    let mut bng = Bng {
        worker,
        control,
        punt,
        inject,
        injector: Injector::new(),
        cache: pool.cache(),
        busy: Duration::ZERO,
        nat_log_records: 0,
    };
    let mut gcache = pool.cache();
    let mut emu = Emulator::new(EmulatorConfig {
        sessions: n,
        setup_rate: cfg.setup_rate,
        max_outstanding: cfg.max_outstanding,
        auth: cfg.auth,
        user_prefix: USER_PREFIX.into(),
        password: PASSWORD.into(),
        vlans: VlanPlan::QinQ {
            svlan_base: 100,
            cvlans: 4000,
        },
        ipv6cp: cfg.ipv6,
        restart_ms: 1000,
        max_payload: None,
        access: cfg.access,
        // Like the PPP restart timer above: 1 s rather than the RFC's 4 s.
        dhcp_timeout_ms: 1000,
    });
    let t0 = Instant::now();
    let ms = |t0: Instant| t0.elapsed().as_millis() as u64;

    // Phase 1: session setup.
    progress(&format!("setting up {n} sessions"));
    let mut q: VecDeque<Vec<u8>> = VecDeque::new();
    let mut frames = Vec::new();
    let mut rxb = Batch::new();
    // Run until every subscriber settled and the last frames (the final IPCP
    // Configure-Acks) reached the BNG.
    let mut quiet = 0;
    while quiet < 3 {
        if t0.elapsed() > cfg.setup_timeout {
            break;
        }
        let busy = !emu.settled()
            || !frames.is_empty()
            || !q.is_empty()
            || bng.in_flight() > 0
            || bng.cp().stats.sessions_up < u64::from(emu.established())
            || (cfg.ipv6 && ipv6_ready(&emu, n) < emu.established_by(Access::Pppoe));
        quiet = if busy { 0 } else { quiet + 1 };
        let now = ms(t0);
        emu.start_due(now, &mut frames);
        emu.poll(now, &mut frames);
        q.extend(frames.drain(..));
        send_frames(&mut gen, &mut gcache, &mut q);
        bng.step(ms(t0), t0.elapsed().as_nanos() as u64);
        let now = ms(t0);
        loop {
            if gen.rx_burst(&mut gcache, &mut rxb) == 0 {
                break;
            }
            rxb.drain(|p| {
                emu.input(p.data(), now, &mut frames);
                gcache.free(p);
            });
        }
    }
    let setup = emu.report();
    if std::env::var_os("VBNG_LAB_DEBUG").is_some() {
        let mut ph = std::collections::BTreeMap::new();
        for si in bng.cp().sessions() {
            *ph.entry(si.phase).or_insert(0) += 1;
        }
        eprintln!(
            "bng phases after setup: {ph:?} stats {:?} {:?} {:?}",
            bng.cp().stats,
            bng.cp().discovery_stats(),
            emu.report()
        );
    }
    progress(&format!(
        "{} sessions up ({:.0}/s, p99 {:.1} ms)",
        setup.established, setup.setup_rate_per_s, setup.setup_p99_ms
    ));

    // Phase 2: upstream traffic; phase 3: downstream traffic.
    let up_ids: Vec<u32> = (0..n)
        .filter(|&i| emu.client(i).is_some_and(|s| s.is_up()))
        .collect();
    let kind = |i: u32| cfg.access.access_of(i);
    let mut report = LabReport {
        setup: setup.clone(),
        ..LabReport::default()
    };
    report.set_access_setup(&emu, cfg.access);
    if !up_ids.is_empty() {
        let mut templates = Vec::new();
        let mut kinds = Vec::new();
        for (k, &i) in up_ids.iter().enumerate() {
            let size = cfg
                .frame_sizes
                .get(k % cfg.frame_sizes.len().max(1))
                .copied()
                .unwrap_or(64);
            if let Some(f) = emu.upstream_frame(i, 0xc633_6401, size) {
                templates.push(f);
                kinds.push(kind(i));
            }
        }
        progress("upstream traffic");
        let mut flows = Vec::new();
        let want_flows = cfg.cgnat.is_some().then_some(&mut flows);
        let (total, by) = traffic(
            &mut bng,
            &mut gen,
            &mut sink,
            &mut gcache,
            Stream {
                templates: &templates,
                kinds: &kinds,
                classify: upstream_access,
            },
            cfg.packets,
            &t0,
            want_flows,
        );
        report.upstream = total;
        report.set_access_traffic(true, by);
        if cfg.downstream {
            let size_of = |k: usize| {
                cfg.frame_sizes
                    .get(k % cfg.frame_sizes.len().max(1))
                    .copied()
                    .unwrap_or(64)
            };
            let mut templates = Vec::new();
            let mut kinds = Vec::new();
            if cfg.cgnat.is_some() {
                // Answer the translated flows the core saw (public address and port).
                for (k, &(ip, port, a)) in flows.iter().enumerate() {
                    let size = size_of(k);
                    let mut f = Vec::with_capacity(size);
                    f.extend_from_slice(&core_mac);
                    f.extend_from_slice(&sink_mac);
                    f.extend_from_slice(&[0x08, 0x00]);
                    f.extend_from_slice(&super::ipv4_udp(
                        0xc633_6401,
                        ip,
                        size.saturating_sub(14).clamp(28, 1492),
                        5001,
                        port,
                    ));
                    templates.push(f);
                    kinds.push(a);
                }
            } else {
                for (k, &i) in up_ids.iter().enumerate() {
                    if let Some(f) =
                        emu.downstream_frame(i, 0xc633_6401, core_mac, sink_mac, size_of(k))
                    {
                        templates.push(f);
                        kinds.push(kind(i));
                    }
                }
            }
            progress("downstream traffic");
            let (total, by) = traffic(
                &mut bng,
                &mut sink,
                &mut gen,
                &mut gcache,
                Stream {
                    templates: &templates,
                    kinds: &kinds,
                    classify: downstream_access,
                },
                cfg.packets,
                &t0,
                None,
            );
            report.downstream = Some(total);
            report.set_access_traffic(false, by);
        }
    }

    // Phases 2b/3b: the same over IPv6 (SLAAC addresses, the sessions' /64s).
    if cfg.ipv6 {
        report.ipv6_sessions = ipv6_ready(&emu, n);
        let size_of = |k: usize| {
            cfg.frame_sizes
                .get(k % cfg.frame_sizes.len().max(1))
                .copied()
                .unwrap_or(64)
        };
        let v6: Vec<&super::client::Subscriber> = up_ids
            .iter()
            .filter_map(|&i| emu.subscriber(i))
            .filter(|s| s.ipv6 != 0)
            .collect();
        let up6: Vec<Vec<u8>> = v6
            .iter()
            .enumerate()
            .filter_map(|(k, s)| {
                s.ipv6_udp_frame(IPV6_REMOTE, size_of(k), 1024 + (k % 50000) as u16, 5001)
            })
            .collect();
        if !up6.is_empty() {
            progress("IPv6 upstream traffic");
            let kinds = vec![Access::Pppoe; up6.len()];
            report.upstream6 = Some(
                traffic(
                    &mut bng,
                    &mut gen,
                    &mut sink,
                    &mut gcache,
                    Stream {
                        templates: &up6,
                        kinds: &kinds,
                        classify: |_| Access::Pppoe,
                    },
                    cfg.packets,
                    &t0,
                    None,
                )
                .0,
            );
        }
        if cfg.downstream && !v6.is_empty() {
            let down6: Vec<Vec<u8>> = v6
                .iter()
                .enumerate()
                .map(|(k, s)| {
                    let ip_len = size_of(k).saturating_sub(14).clamp(48, 1492);
                    let mut f = Vec::with_capacity(14 + ip_len);
                    f.extend_from_slice(&core_mac);
                    f.extend_from_slice(&sink_mac);
                    f.extend_from_slice(&[0x86, 0xdd]);
                    f.extend_from_slice(&super::client::ipv6_udp(
                        IPV6_REMOTE,
                        s.ipv6,
                        ip_len,
                        5001,
                        1024 + (k % 50000) as u16,
                    ));
                    f
                })
                .collect();
            progress("IPv6 downstream traffic");
            let kinds = vec![Access::Pppoe; down6.len()];
            report.downstream6 = Some(
                traffic(
                    &mut bng,
                    &mut sink,
                    &mut gen,
                    &mut gcache,
                    Stream {
                        templates: &down6,
                        kinds: &kinds,
                        classify: |_| Access::Pppoe,
                    },
                    cfg.packets,
                    &t0,
                    None,
                )
                .0,
            );
        }
        let (s, r) = [report.upstream6.as_ref(), report.downstream6.as_ref()]
            .into_iter()
            .flatten()
            .fold((0, 0), |(s, r), t| (s + t.sent, r + t.received));
        report.ipv6_plr = if s > 0 {
            (s - r.min(s)) as f64 / s as f64
        } else {
            0.0
        };
    }

    // The NAT after the traffic (its sessions live on after the PPPoE sessions end).
    if let Some(pool) = &cfg.cgnat {
        report.nat = bng.nat_report(&pool.to_string());
    }

    // Phase 4: teardown with PADT.
    let mut frames = Vec::new();
    emu.terminate_all(&mut frames);
    let mut q: VecDeque<Vec<u8>> = frames.into();
    let t_end = Instant::now();
    while (!q.is_empty() || bng.in_flight() > 0 || bng.cp().session_count() > 0)
        && t_end.elapsed() < Duration::from_secs(30)
    {
        send_frames(&mut gen, &mut gcache, &mut q);
        bng.step(ms(t0), t0.elapsed().as_nanos() as u64);
        loop {
            if gen.rx_burst(&mut gcache, &mut rxb) == 0 {
                break;
            }
            rxb.free_all(&mut gcache);
        }
    }
    report.sessions_after_teardown = bng.cp().session_count();
    report.summarise(&setup);
    report.bng_errors = bng.errors();
    report.bng_drops = bng.drops();
    report.bng_control = bng.control_counters();
    report.bng_worker = bng.worker_report();
    report.bng_graph = bng_graph;
    Ok(report)
}

/// Established subscribers that have formed their SLAAC address.
fn ipv6_ready(emu: &Emulator, n: u32) -> u32 {
    (0..n)
        .filter_map(|i| emu.subscriber(i))
        .filter(|s| s.phase == super::client::ClientPhase::Up && s.ipv6 != 0)
        .count() as u32
}

/// Frames to offer in a traffic phase, and how to tell the access type of each.
struct Stream<'a> {
    /// Offered round robin.
    templates: &'a [Vec<u8>],
    /// The access type of each template.
    kinds: &'a [Access],
    /// The access type of a frame received at the far end.
    classify: fn(&[u8]) -> Access,
}

/// The access type of an upstream frame as the core sink receives it (Ethernet,
/// IPv4, UDP): IPoE frames carry [`IPOE_MARK`] in the first payload octet (it
/// survives CGNAT).
pub fn upstream_access(f: &[u8]) -> Access {
    let hl = f.get(14).map_or(20, |b| usize::from(b & 0x0f) * 4);
    match f.get(14 + hl + 8) {
        Some(&IPOE_MARK) => Access::Ipoe,
        _ => Access::Pppoe,
    }
}

/// The access type of a downstream frame as a subscriber receives it: PPPoE session
/// or plain IPv4 after the VLAN tags.
pub fn downstream_access(f: &[u8]) -> Access {
    match dataplane::proto::ethernet::walk_vlans(f).map(|l| l.ethertype) {
        Ok(dataplane::proto::EtherType::IPV4) => Access::Ipoe,
        _ => Access::Pppoe,
    }
}

/// Offer `packets` frames from the stream's templates (round robin) on `tx`, run
/// the BNG, count what arrives on `rx`, in all and per access type; with `flows`,
/// record the distinct (source address, UDP source port, access type) of the first
/// frames received (one per template).
#[allow(clippy::too_many_arguments)]
fn traffic(
    bng: &mut Bng,
    tx: &mut MemPort,
    rx: &mut MemPort,
    cache: &mut PoolCache,
    stream: Stream<'_>,
    packets: u64,
    t0: &Instant,
    mut flows: Option<&mut Vec<(u32, u16, Access)>>,
) -> (TrafficReport, Vec<(Access, TrafficReport)>) {
    let templates = stream.templates;
    let mut seen = std::collections::HashSet::new();

    let mut sent = 0u64;
    let mut received = 0u64;
    let mut bytes = 0u64;
    // Per access type (PPPoE, IPoE): sent, received, bytes.
    let mut by = [[0u64; 3]; 2];
    let slot = |a: Access| match a {
        Access::Pppoe => 0,
        Access::Ipoe => 1,
    };
    let mut k = 0usize;
    let busy0 = bng.busy;
    let start = Instant::now();
    let mut b = Batch::new();
    let mut rxb = Batch::new();
    let mut idle = 0;
    let mut pending = Vec::with_capacity(256);
    while (sent < packets || idle < 3) && !templates.is_empty() {
        if sent < packets {
            let room = tx.tx_room().min(256).min((packets - sent) as usize);
            pending.clear();
            for _ in 0..room {
                let t = k % templates.len();
                let Some(f) = templates.get(t) else {
                    break;
                };
                k += 1;
                let Some(mut p) = cache.alloc() else { break };
                if p.copy_from(f).is_err() {
                    cache.free(p);
                    continue;
                }
                pending.push((
                    slot(stream.kinds.get(t).copied().unwrap_or(Access::Pppoe)),
                    f.len() as u64,
                ));
                let _ = b.push(p);
            }
            let n = tx.tx_burst(cache, &mut b);
            for &(a, len) in pending.iter().take(n) {
                by[a][0] += 1;
                by[a][2] += len;
                bytes += len;
            }
            sent += n as u64;
            b.free_all(cache);
        }
        bng.step(
            t0.elapsed().as_millis() as u64,
            t0.elapsed().as_nanos() as u64,
        );
        let mut got = 0;
        loop {
            let n = rx.rx_burst(cache, &mut rxb);
            if n == 0 {
                break;
            }
            got += n;
            for p in rxb.iter() {
                let d = p.data();
                let a = (stream.classify)(d);
                by[slot(a)][1] += 1;
                if let Some(fl) = flows.as_deref_mut() {
                    if seen.len() < templates.len() {
                        if let (Some(x), Some(y)) = (d.get(26..30), d.get(34..36)) {
                            let k = (
                                u32::from_be_bytes([x[0], x[1], x[2], x[3]]),
                                u16::from_be_bytes([y[0], y[1]]),
                            );
                            if seen.insert(k) {
                                fl.push((k.0, k.1, a));
                            }
                        }
                    }
                }
            }
            rxb.free_all(cache);
        }
        received += got as u64;
        if sent >= packets {
            idle = if got == 0 { idle + 1 } else { 0 };
        }
    }
    let wall = start.elapsed().as_secs_f64();
    let busy = (bng.busy - busy0).as_secs_f64();
    let report = |sent: u64, received: u64, bytes: u64| TrafficReport {
        sent,
        received,
        plr: if sent > 0 {
            (sent - received.min(sent)) as f64 / sent as f64
        } else {
            0.0
        },
        throughput_mpps: if wall > 0.0 {
            received as f64 / wall / 1e6
        } else {
            0.0
        },
        bng_mpps_per_core: if busy > 0.0 {
            sent as f64 / busy / 1e6
        } else {
            0.0
        },
        bng_ns_per_packet: if sent > 0 {
            busy * 1e9 / sent as f64
        } else {
            0.0
        },
        mean_frame: if sent > 0 {
            bytes as f64 / sent as f64
        } else {
            0.0
        },
    };
    let total = report(sent, received, bytes);
    let mut per = Vec::new();
    for (a, c) in [(Access::Pppoe, by[0]), (Access::Ipoe, by[1])] {
        if c[0] > 0 || c[1] > 0 {
            let mut t = report(c[0], c[1], c[2]);
            // The BNG's own figures are the phase's (both types share its loop).
            t.bng_mpps_per_core = total.bng_mpps_per_core;
            t.bng_ns_per_packet = total.bng_ns_per_packet;
            per.push((a, t));
        }
    }
    (total, per)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn small_lab_sets_up_forwards_and_tears_down() {
        for auth in [AuthProto::Pap, AuthProto::Chap] {
            let r = run(
                &LabConfig {
                    sessions: 200,
                    packets: 20_000,
                    auth,
                    ..LabConfig::default()
                },
                |_| {},
            )
            .unwrap();
            assert_eq!(r.sessions_established, 200, "{:?}", r.setup);
            assert_eq!(r.upstream.sent, 20_000);
            assert_eq!(r.upstream.received, 20_000, "{}", r.bng_errors);
            let d = r.downstream.as_ref().unwrap();
            assert_eq!(d.received, 20_000, "{}", r.bng_errors);
            assert_eq!(r.plr, 0.0);
            assert_eq!(r.sessions_after_teardown, 0);
            assert!(r.setup_p99_ms >= r.setup_p50_ms);
        }
    }

    /// Thousands of subscribers at once: the control plane answers more frames in one
    /// round than a port queue holds; none may be lost between it and the worker
    /// (every setup succeeds at the first try, no half-open session expires).
    #[test]
    fn thousands_at_once_lose_no_control_frame() {
        let r = run(
            &LabConfig {
                sessions: 3000,
                packets: 3_000,
                ..LabConfig::default()
            },
            |_| {},
        )
        .unwrap();
        assert_eq!(r.sessions_established, 3000, "{:?}", r.setup);
        assert!(r.setup.failed_by_phase.is_empty(), "{:?}", r.setup);
        let w = &r.bng_worker;
        assert_eq!(
            (w.punt_dropped, w.inject_dropped, w.tx_unsent),
            (0, 0, 0),
            "{w:?}"
        );
        assert!(w.injected >= 3 * 3000, "{w:?}");
        let c = &r.bng_control;
        assert_eq!(c.get("half_open_expired"), Some(&0), "{c:?}");
        assert_eq!(c.get("sessions_created"), Some(&3000), "{c:?}");
        assert!(
            r.bng_errors.contains("control plane: ")
                && r.bng_errors.contains("sessions_created 3000"),
            "{}",
            r.bng_errors
        );
        assert!(
            !r.bng_errors.contains('{'),
            "no Debug text: {}",
            r.bng_errors
        );
        // (No bound on setup latency here: the lab runs on wall-clock time, so a
        // loaded machine stretches it without any frame being lost; the counters
        // above are what shows that none was.)
        assert_eq!(r.plr, 0.0);
    }

    /// IPoE subscribers (DHCPv4) and half-and-half runs: every session up, traffic
    /// both ways with no loss, the per-access figures add up, teardown by
    /// DHCPRELEASE leaves no session.
    #[test]
    fn ipoe_and_mixed_sessions_forward_both_ways() {
        for access in [AccessPlan::Ipoe, AccessPlan::Mixed] {
            let r = run(
                &LabConfig {
                    sessions: 200,
                    packets: 20_000,
                    access,
                    ..LabConfig::default()
                },
                |_| {},
            )
            .unwrap();
            assert_eq!(r.sessions_established, 200, "{access:?} {:?}", r.setup);
            assert_eq!(r.upstream.received, 20_000, "{}", r.bng_errors);
            assert_eq!(r.downstream.as_ref().unwrap().received, 20_000);
            assert_eq!(r.plr, 0.0);
            assert_eq!(r.sessions_after_teardown, 0, "{}", r.bng_errors);
            let ip = &r.per_access["ipoe"];
            let want = if access == AccessPlan::Mixed {
                100
            } else {
                200
            };
            assert_eq!(ip.sessions_established, want, "{ip:?}");
            assert!(ip.setup_rate_per_s > 0.0);
            assert_eq!(ip.plr, 0.0);
            assert_eq!(
                r.per_access.contains_key("pppoe"),
                access == AccessPlan::Mixed
            );
            let up: u64 = r.per_access.values().map(|a| a.upstream.received).sum();
            let down: u64 = r
                .per_access
                .values()
                .map(|a| a.downstream.as_ref().map_or(0, |d| d.received))
                .sum();
            assert_eq!((up, down), (20_000, 20_000));
            if access == AccessPlan::Mixed {
                assert_eq!(r.per_access["pppoe"].upstream.received, 10_000);
                assert_eq!(ip.upstream.received, 10_000);
            }
            assert_eq!(r.bng_control.get("sessions_created"), Some(&200));
        }
    }

    #[test]
    fn one_session_trace() {
        let r = run(
            &LabConfig {
                sessions: 1,
                packets: 10,
                ..LabConfig::default()
            },
            |_| {},
        )
        .unwrap();
        assert!(r.setup_p99_ms < 100.0, "{:?}", r.setup);
    }

    /// `testbed lab bng` runs the vBNG the `vbng` binary runs: the lab's config,
    /// written as the TOML file the binary reads, loads and validates as `vbng run -c`
    /// loads it (`Config::from_toml`) and composes (`vbng::vnf::build`) to exactly the
    /// graph and NAT the lab ran. A lab that composed its own BNG would fail here.
    #[test]
    fn lab_runs_the_graph_the_vbng_binary_builds_from_the_same_config() {
        for (cgnat, ipv6) in [(None, false), (Some("203.0.113.0/28"), true)] {
            let lc = LabConfig {
                sessions: 20,
                packets: 2_000,
                cgnat: cgnat.map(|p| p.parse().unwrap()),
                ipv6,
                rate: (20_000_000, 100_000_000),
                ..LabConfig::default()
            };
            let vc = lab_config(&lc);
            vc.validate().unwrap();
            assert_eq!(vc.users.len(), 20);
            assert_eq!(
                vc.users[3].rate.as_deref(),
                Some("20000000/100000000"),
                "--rate is every user's rate"
            );
            let text = toml::to_string(&vc).unwrap();
            assert_eq!(text.contains("[cgnat]"), cgnat.is_some(), "{text}");
            let file = Config::from_toml(&text).unwrap();
            assert_eq!(toml::to_string(&file).unwrap(), text);
            let env = || BuildEnv::new([2, 0, 0, 0, 0, 2], lc.sessions, Rng::from_seed([1; 32]));
            let bin = build(&file, &env()).unwrap();
            let lab = build(&vc, &env()).unwrap();
            assert_eq!(lab.nat, bin.nat);
            assert_eq!(bin.nat.is_some(), cgnat.is_some());
            let want = bin.graph.describe();
            assert_eq!(lab.graph.describe(), want);
            assert!(want.starts_with("bng-upstream"), "{want}");
            assert_eq!(want.contains("nat44"), cgnat.is_some(), "{want}");

            let r = run(&lc, |_| {}).unwrap();
            assert_eq!(r.bng_graph, want, "the graph the lab ran");
            assert_eq!(r.sessions_established, 20, "{:?}", r.setup);
            assert_eq!(r.upstream.received, 2_000, "{}", r.bng_errors);
            assert_eq!(r.nat.is_some(), cgnat.is_some());
        }
    }

    #[test]
    fn cgnat_on_the_way_to_the_core() {
        let r = run(
            &LabConfig {
                sessions: 50,
                packets: 5_000,
                cgnat: Some("203.0.113.0/30".parse().unwrap()),
                ..LabConfig::default()
            },
            |_| {},
        )
        .unwrap();
        assert_eq!(r.sessions_established, 50);
        assert_eq!(r.upstream.received, 5_000, "{}", r.bng_errors);
        let d = r.downstream.as_ref().unwrap();
        assert_eq!(d.sent, 5_000);
        assert_eq!(d.received, 5_000, "{}", r.bng_errors);
        // The nat44 node's counters: one UDP flow per subscriber, a port block each
        // (logged), and no drops.
        let nat = r.nat.as_ref().expect("nat counters with --cgnat");
        assert_eq!(nat.pool, "203.0.113.0/30");
        assert_eq!(nat.sessions, 50, "{nat:?}");
        assert_eq!(nat.sessions_created, 50, "{nat:?}");
        assert_eq!(nat.subscribers, 50, "{nat:?}");
        assert_eq!(nat.blocks, 50, "{nat:?}");
        assert!(nat.log_records >= 50, "{nat:?}");
        assert_eq!(nat.packets, 10_000, "{nat:?}");
        assert_eq!(nat.drops, 0, "{nat:?}");
        assert!(nat.drop_reasons.is_empty(), "{nat:?}");
        assert!(
            r.bng_graph.contains("nat44 -> bng-downstream"),
            "{}",
            r.bng_graph
        );
    }

    #[test]
    fn dual_stack_traffic_flows_both_ways() {
        // Also with CGNAT: IPv6 passes the nat44 stage between the fast-path halves.
        for cgnat in [None, Some("203.0.113.0/28".parse::<Range4>().unwrap())] {
            let r = run(
                &LabConfig {
                    sessions: 100,
                    packets: 10_000,
                    ipv6: true,
                    cgnat,
                    ..LabConfig::default()
                },
                |_| {},
            )
            .unwrap();
            assert_eq!(r.sessions_established, 100, "{:?}", r.setup);
            assert_eq!(r.ipv6_sessions, 100, "{}", r.bng_errors);
            let u = r.upstream6.as_ref().unwrap();
            assert_eq!(u.sent, 10_000);
            assert_eq!(u.received, 10_000, "{cgnat:?} {}", r.bng_errors);
            let d = r.downstream6.as_ref().unwrap();
            assert_eq!(d.sent, 10_000);
            assert_eq!(d.received, 10_000, "{cgnat:?} {}", r.bng_errors);
            assert_eq!(r.ipv6_plr, 0.0);
            assert_eq!(r.plr, 0.0);
            assert_eq!(r.sessions_after_teardown, 0);
        }
    }

    #[test]
    fn policer_limits_rate() {
        // 1 Mbit/s down per subscriber, 10 subscribers, 64 KiB bursts: most of 20k
        // back-to-back 1000-byte packets are policed.
        let r = run(
            &LabConfig {
                sessions: 10,
                packets: 20_000,
                frame_sizes: vec![1000],
                rate: (0, 1_000_000),
                ..LabConfig::default()
            },
            |_| {},
        )
        .unwrap();
        let d = r.downstream.unwrap();
        assert!(d.received < 2_000, "{d:?}");
        assert!(r.bng_errors.contains("policed-down"), "{}", r.bng_errors);
        assert_eq!(r.upstream.received, 20_000);
    }
}
