//! The in-memory BNG lab (`testbed lab bng`): emulated subscribers → vBNG (control
//! plane + `bng-fastpath` stage on the packet engine) → core sink, in one process and
//! one thread, over in-memory virtio ring pairs, with no root. Phases: session setup
//! (rate-controlled), upstream traffic, downstream traffic, teardown. Reports setup
//! rate and latency, failures by phase, throughput, per-core Mpps of the BNG pipeline
//! alone, and packet loss.

use super::{Emulator, EmulatorConfig, SetupReport, VlanPlan};
use dataplane::batch::{Batch, Out};
use dataplane::buf::{Pool, PoolCache};
use dataplane::port::mem::{pair, MemPort};
use dataplane::port::Port;
use dataplane::stage::Pipeline;
use dataplane::stages::nat::{CgnatConfig, Nat44, NatConfig};
use serde::Serialize;
use std::collections::VecDeque;
use std::sync::Arc;
use std::time::{Duration, Instant};
use vbng::config::{Config, UserConfig};
use vbng::control::{ControlPlane, SessionCounters};
use vbng::fastpath::{FastPath, FastPathConfig, Mode};
use vbng::lcp::AuthProto;
use vbng::rng::Rng;

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
    pub cgnat: Option<String>,
    /// Dual stack: IPv6CP, a /64 per session from `2001:db8:100::/40` announced by RA
    /// (SLAAC over PPP), and IPv6 upstream/downstream phases after the IPv4 ones.
    pub ipv6: bool,
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
    /// The BNG's `show errors`.
    pub bng_errors: String,
    /// Sessions with a SLAAC IPv6 address (the RA's /64 + IPv6CP identifier); 0
    /// without `ipv6`.
    pub ipv6_sessions: u32,
    /// IPv6 upstream phase (with `ipv6`).
    pub upstream6: Option<TrafficReport>,
    /// IPv6 downstream phase (with `ipv6` and the downstream phase on).
    pub downstream6: Option<TrafficReport>,
    /// Packet loss ratio over the IPv6 phases.
    pub ipv6_plr: f64,
}

struct Bng {
    cp: ControlPlane,
    pipeline: Pipeline,
    out: Out,
    access: MemPort,
    core: MemPort,
    updates: Vec<Arc<vbng::fastpath::UpdateQueue>>,
    busy: Duration,
    batch: Batch,
    pending: VecDeque<Vec<u8>>,
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

impl Bng {
    fn step(&mut self, now_ms: u64, now_ns: u64) {
        let t = Instant::now();
        self.out.now_ns = now_ns;
        for (idx, _) in [(0u16, ()), (1u16, ())] {
            loop {
                let port = if idx == 0 {
                    &mut self.access
                } else {
                    &mut self.core
                };
                let n = port.rx_burst(&mut self.out.cache, &mut self.batch);
                if n == 0 {
                    break;
                }
                for p in self.batch.iter_mut() {
                    p.meta.port = idx;
                }
                self.pipeline.run(&mut self.batch, &mut self.out);
                self.flush();
                // Control plane: punted packets (discovery, PPP control).
                // In order (Batch::pop takes from the back).
                let (cp, cache) = (&mut self.cp, &mut self.out.cache);
                self.out.punt.drain(|p| {
                    cp.input(p.meta.port, p.data(), now_ms);
                    cache.free(p);
                });
            }
        }
        // Timers, the control plane's own transmissions, table updates.
        self.cp.poll(now_ms);
        // Frames the ring cannot take now wait in the backlog (never dropped).
        self.pending
            .extend(self.cp.take_tx().into_iter().map(|(_, f)| f));
        send_frames(&mut self.access, &mut self.out.cache, &mut self.pending);
        for u in self.cp.take_fib() {
            for q in &self.updates {
                let _ = q.push(u.clone());
            }
        }
        self.busy += t.elapsed();
    }

    fn flush(&mut self) {
        for (i, port) in [(0usize, &mut self.access), (1usize, &mut self.core)] {
            if let Some(b) = self.out.ports.get_mut(i) {
                while !b.is_empty() {
                    if port.tx_burst(&mut self.out.cache, b) == 0 {
                        // Ring full: the far end is not draining; drop (counted as loss).
                        b.free_all(&mut self.out.cache);
                    }
                }
            }
        }
    }
}

/// Run the lab.
pub fn run(cfg: &LabConfig, mut progress: impl FnMut(&str)) -> anyhow::Result<LabReport> {
    let n = cfg.sessions.max(1);
    let pool = Pool::new(1 << 16).ok_or_else(|| anyhow::anyhow!("buffer pool"))?;
    let (mut gen, access) =
        pair("subscribers", "bng-access", 4096).ok_or_else(|| anyhow::anyhow!("ring"))?;
    let (core, mut sink) = pair("bng-core", "core", 4096).ok_or_else(|| anyhow::anyhow!("ring"))?;
    let password = "lab-secret";
    let rate = |b: u64| {
        if b == 0 {
            "0".to_string()
        } else {
            b.to_string()
        }
    };
    let bcfg = Config {
        auth: cfg.auth,
        auth_fallback: None,
        keepalive_interval_s: 30,
        restart_ms: 1000,
        pools: vec![vbng::config::PoolConfig {
            name: "default".into(),
            // The gateway (100.64.0.1) is the BNG's own: never in a pool.
            ranges: vec!["100.64.0.2-100.127.255.254".into()],
        }],
        users: (0..n)
            .map(|i| UserConfig {
                name: format!("user{i}"),
                password: password.into(),
                ip: None,
                rate: (cfg.rate != (0, 0))
                    .then(|| format!("{}/{}", rate(cfg.rate.0), rate(cfg.rate.1))),
            })
            .collect(),
        ipv6cp: cfg.ipv6,
        pools6: if cfg.ipv6 {
            vec![vbng::config::Pool6Config {
                name: "v6".into(),
                prefix: "2001:db8:100::/40".into(),
            }]
        } else {
            Vec::new()
        },
        ..Config::default()
    };
    let counters = SessionCounters::new(n as usize);
    let cp = ControlPlane::new(&bcfg, n, counters.clone(), Rng::from_os())
        .map_err(|e| anyhow::anyhow!("{e}"))?;
    let core_mac = core.mac().unwrap_or([2, 0, 0, 0, 0, 2]);
    let sink_mac = sink.mac().unwrap_or([2, 0, 0, 0, 0, 3]);
    let fcfg = FastPathConfig {
        access_port: 0,
        core_port: 1,
        access_mac: cp.mac(),
        core_mac,
        core_next_hop: sink_mac,
        max_sessions: n,
    };
    let qcap = (n as usize * 2).max(1024);
    let mut pipeline = Pipeline::new();
    let mut updates = Vec::new();
    match &cfg.cgnat {
        None => {
            let q = vbng::fastpath::update_queue(qcap);
            pipeline.push(Box::new(FastPath::new(fcfg, q.clone(), counters)));
            updates.push(q);
        }
        Some(pool_spec) => {
            let (q1, q2) = (
                vbng::fastpath::update_queue(qcap),
                vbng::fastpath::update_queue(qcap),
            );
            pipeline.push(Box::new(
                FastPath::new(fcfg.clone(), q1.clone(), counters.clone()).with_mode(Mode::Upstream),
            ));
            let nat = Nat44::new(&NatConfig {
                inside_ports: vec![0],
                pool: vec![pool_spec.clone()],
                cgnat: Some(CgnatConfig::default()),
                max_subscribers: n.max(16),
                max_sessions: (n * 4).max(1 << 16),
                ..NatConfig::default()
            })
            .map_err(|e| anyhow::anyhow!("cgnat: {e:?}"))?;
            pipeline.push(Box::new(nat));
            pipeline.push(Box::new(
                FastPath::new(fcfg, q2.clone(), counters).with_mode(Mode::Downstream),
            ));
            updates.push(q1);
            updates.push(q2);
        }
    }
    let mut bng = Bng {
        cp,
        pipeline,
        out: Out::new(2, pool.cache()),
        access,
        core,
        updates,
        busy: Duration::ZERO,
        batch: Batch::new(),
        pending: VecDeque::new(),
    };
    let mut gcache = pool.cache();
    let mut emu = Emulator::new(EmulatorConfig {
        sessions: n,
        setup_rate: cfg.setup_rate,
        max_outstanding: cfg.max_outstanding,
        auth: cfg.auth,
        user_prefix: "user".into(),
        password: password.into(),
        vlans: VlanPlan::QinQ {
            svlan_base: 100,
            cvlans: 4000,
        },
        ipv6cp: cfg.ipv6,
        restart_ms: 1000,
        max_payload: None,
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
            || bng.cp.stats.sessions_up < u64::from(emu.established())
            || (cfg.ipv6 && ipv6_ready(&emu, n) < emu.established());
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
        for si in bng.cp.sessions() {
            *ph.entry(si.phase).or_insert(0) += 1;
        }
        eprintln!(
            "bng phases after setup: {ph:?} stats {:?} {:?} {:?}",
            bng.cp.stats,
            bng.cp.discovery_stats(),
            emu.report()
        );
    }
    progress(&format!(
        "{} sessions up ({:.0}/s, p99 {:.1} ms)",
        setup.established, setup.setup_rate_per_s, setup.setup_p99_ms
    ));

    // Phase 2: upstream traffic; phase 3: downstream traffic.
    let up_ids: Vec<u32> = (0..n)
        .filter(|&i| {
            emu.subscriber(i)
                .is_some_and(|s| s.phase == super::client::ClientPhase::Up)
        })
        .collect();
    let mut report = LabReport {
        setup: setup.clone(),
        ..LabReport::default()
    };
    if !up_ids.is_empty() {
        let mut templates = Vec::new();
        for (k, &i) in up_ids.iter().enumerate() {
            let size = cfg
                .frame_sizes
                .get(k % cfg.frame_sizes.len().max(1))
                .copied()
                .unwrap_or(64);
            if let Some(f) = emu.upstream_frame(i, 0xc633_6401, size) {
                templates.push(f);
            }
        }
        progress("upstream traffic");
        let mut flows = Vec::new();
        let want_flows = cfg.cgnat.is_some().then_some(&mut flows);
        report.upstream = traffic(
            &mut bng,
            &mut gen,
            &mut sink,
            &mut gcache,
            &templates,
            cfg.packets,
            &t0,
            want_flows,
        );
        if cfg.downstream {
            let size_of = |k: usize| {
                cfg.frame_sizes
                    .get(k % cfg.frame_sizes.len().max(1))
                    .copied()
                    .unwrap_or(64)
            };
            let mut templates = Vec::new();
            if cfg.cgnat.is_some() {
                // Answer the translated flows the core saw (public address and port).
                for (k, &(ip, port)) in flows.iter().enumerate() {
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
                }
            } else {
                for (k, &i) in up_ids.iter().enumerate() {
                    if let Some(f) =
                        emu.downstream_frame(i, 0xc633_6401, core_mac, sink_mac, size_of(k))
                    {
                        templates.push(f);
                    }
                }
            }
            progress("downstream traffic");
            report.downstream = Some(traffic(
                &mut bng,
                &mut sink,
                &mut gen,
                &mut gcache,
                &templates,
                cfg.packets,
                &t0,
                None,
            ));
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
            report.upstream6 = Some(traffic(
                &mut bng,
                &mut gen,
                &mut sink,
                &mut gcache,
                &up6,
                cfg.packets,
                &t0,
                None,
            ));
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
            report.downstream6 = Some(traffic(
                &mut bng,
                &mut sink,
                &mut gen,
                &mut gcache,
                &down6,
                cfg.packets,
                &t0,
                None,
            ));
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

    // Phase 4: teardown with PADT.
    let mut frames = Vec::new();
    emu.terminate_all(&mut frames);
    let mut q: VecDeque<Vec<u8>> = frames.into();
    let t_end = Instant::now();
    while (!q.is_empty() || bng.cp.session_count() > 0) && t_end.elapsed() < Duration::from_secs(30)
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
    report.sessions_after_teardown = bng.cp.session_count();
    report.sessions_established = setup.established;
    report.setup_rate_per_s = setup.setup_rate_per_s;
    report.setup_p50_ms = setup.setup_p50_ms;
    report.setup_p99_ms = setup.setup_p99_ms;
    report.throughput_mpps = report.upstream.throughput_mpps;
    let (s, r) = [Some(&report.upstream), report.downstream.as_ref()]
        .into_iter()
        .flatten()
        .fold((0, 0), |(s, r), t| (s + t.sent, r + t.received));
    report.plr = if s > 0 {
        (s - r.min(s)) as f64 / s as f64
    } else {
        0.0
    };
    report.bng_errors = format!("{}{:?}\n", bng.pipeline.show_errors(), bng.cp.stats);
    Ok(report)
}

/// Established subscribers that have formed their SLAAC address.
fn ipv6_ready(emu: &Emulator, n: u32) -> u32 {
    (0..n)
        .filter_map(|i| emu.subscriber(i))
        .filter(|s| s.phase == super::client::ClientPhase::Up && s.ipv6 != 0)
        .count() as u32
}

/// Offer `packets` frames from `templates` (round robin) on `tx`, run the BNG, count
/// what arrives on `rx`; with `flows`, record the distinct (source address, UDP source
/// port) of the first frames received (one per template).
#[allow(clippy::too_many_arguments)]
fn traffic(
    bng: &mut Bng,
    tx: &mut MemPort,
    rx: &mut MemPort,
    cache: &mut PoolCache,
    templates: &[Vec<u8>],
    packets: u64,
    t0: &Instant,
    mut flows: Option<&mut Vec<(u32, u16)>>,
) -> TrafficReport {
    let mut seen = std::collections::HashSet::new();

    let mut sent = 0u64;
    let mut received = 0u64;
    let mut bytes = 0u64;
    let mut k = 0usize;
    let busy0 = bng.busy;
    let start = Instant::now();
    let mut b = Batch::new();
    let mut rxb = Batch::new();
    let mut idle = 0;
    while (sent < packets || idle < 3) && !templates.is_empty() {
        if sent < packets {
            let room = tx.tx_room().min(256).min((packets - sent) as usize);
            for _ in 0..room {
                let Some(f) = templates.get(k % templates.len()) else {
                    break;
                };
                k += 1;
                let Some(mut p) = cache.alloc() else { break };
                if p.copy_from(f).is_err() {
                    cache.free(p);
                    continue;
                }
                bytes += f.len() as u64;
                let _ = b.push(p);
            }
            sent += tx.tx_burst(cache, &mut b) as u64;
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
            if let Some(fl) = flows.as_deref_mut() {
                if seen.len() < templates.len() {
                    for p in rxb.iter() {
                        let d = p.data();
                        if let (Some(a), Some(b)) = (d.get(26..30), d.get(34..36)) {
                            let k = (
                                u32::from_be_bytes([a[0], a[1], a[2], a[3]]),
                                u16::from_be_bytes([b[0], b[1]]),
                            );
                            if seen.insert(k) {
                                fl.push(k);
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
    TrafficReport {
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
    }
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

    #[test]
    fn cgnat_on_the_way_to_the_core() {
        let r = run(
            &LabConfig {
                sessions: 50,
                packets: 5_000,
                cgnat: Some("203.0.113.0/30".into()),
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
    }

    #[test]
    fn dual_stack_traffic_flows_both_ways() {
        // Also with CGNAT: IPv6 passes the nat44 stage between the fast-path halves.
        for cgnat in [None, Some("203.0.113.0/28".to_string())] {
            let r = run(
                &LabConfig {
                    sessions: 100,
                    packets: 10_000,
                    ipv6: true,
                    cgnat: cgnat.clone(),
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
