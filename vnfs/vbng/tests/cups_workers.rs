//! A disaggregated vBNG (BBF TR-459) user plane with two workers
//! (`vbng::cups::up::Up::build_workers`: two worker graphs on two engine `Worker`s
//! joined by a hand-off mesh, over in-memory queues of the access and core port)
//! programmed by the real control plane (`vbng::cups::cp::Cp`) over an in-memory
//! PFCP/GTP-U network (`vbng::cups::Bus`). The test's "NIC" steers as `vbng::steer`
//! tells a NIC to: access frames by PPPoE session id (discovery by flow hash), core
//! frames by destination address. PPPoE subscribers come up through the GTP-U
//! control-packet redirect (punted from whichever worker the frame reached, the
//! control plane's answers injected through worker 0), their traffic passes both
//! ways without loss, and the usage reports and Accounting-Stops count the packets
//! of both workers. With the control plane told the user plane's worker count
//! (`workers = 2` in its config) addresses come from the session's owner's share
//! and no packet is handed between workers; without, the packets that reach a
//! non-owner are handed over and counted. After start-up neither worker allocates
//! (a counting global allocator).

use dataplane::batch::Batch;
use dataplane::buf::{Pool, PoolCache};
use dataplane::port::mem::{pair, MemPort};
use dataplane::port::Port;
use dataplane::proto::ethernet::Vlans;
use dataplane::proto::radius::Packet as RadiusPacket;
use dataplane::worker::{handoff_mesh, CtrlRings, Worker, WorkerConfig};
use pktgen::subscribers::client::{ClientParams, ClientPhase, Subscriber};
use std::collections::{BTreeMap, BTreeSet};
use std::net::Ipv4Addr;
use vbng::config::{Config, UserConfig};
use vbng::control::{ControlPlane, SessionCounters};
use vbng::cups::cp::{Cp, CpConfig};
use vbng::cups::up::{Up, UpConfig};
use vbng::cups::Bus;
use vbng::fsm::Timers;
use vbng::lcp::AuthProto;
use vbng::rng::Rng;
use vbng::steer::{access_queue, addr_owner, core_queue, sid_owner};
use vbng::vnf::{update_hook, BuildEnv, Injector};

mod common_frames;
use common_frames::udp;

#[path = "../../../dataplane/tests/counting/mod.rs"]
mod counting;
use counting::{allocs, watch};

#[global_allocator]
static GLOBAL: counting::Counting = counting::Counting;

const WORKERS: usize = 2;
const CORE_MAC: [u8; 6] = [2, 0, 0, 0, 0xc0, 2];
const PEER_MAC: [u8; 6] = [2, 0, 0, 0, 0xc0, 1];
const REMOTE: u32 = 0xc633_6401;
const CP_ADDR: Ipv4Addr = Ipv4Addr::new(192, 0, 2, 1);
const UP_ADDR: Ipv4Addr = Ipv4Addr::new(192, 0, 2, 11);
const SUBS: usize = 24;
const STEP_MS: u64 = 5;

/// The control plane's (and the user plane's) config; `workers` is what the
/// control plane knows of the user plane's workers. RADIUS (unanswered: the local
/// users after the timeout) for the Accounting-Stops.
fn config(workers: u16) -> Config {
    let mut cfg = Config::from_toml(&format!(
        "workers = {workers}\ncore_ip = \"198.51.100.2/24\"\ncore_next_hop_mac = \"02:00:00:00:c0:01\"\n\
         [radius]\nauth = [{{ addr = \"192.0.2.50:1812\", secret = \"s\" }}]\n\
         acct = [{{ addr = \"192.0.2.50:1813\", secret = \"s\" }}]\n\
         local_fallback = true\ntimeout_ms = 50\ntries = 1\n"
    ))
    .unwrap();
    cfg.auth = AuthProto::Pap;
    cfg.auth_fallback = None;
    cfg.users = vec![UserConfig {
        name: "alice".into(),
        password: "pw".into(),
        ip: None,
        rate: None,
    }];
    cfg
}

fn node_timers(n: &mut pfcp::node::Config) {
    n.heartbeat_interval_ms = 1_000;
    n.t1_ms = 500;
    n.n1 = 2;
}

struct Lab {
    cp: Cp,
    up: Up,
    ws: Vec<Worker<MemPort>>,
    /// gens[k]: the subscribers' end of worker k's access queue; sinks[k]: the
    /// core's end of its core queue.
    gens: Vec<MemPort>,
    sinks: Vec<MemPort>,
    rings: CtrlRings,
    inj: Injector,
    cache: PoolCache,
    b: Batch,
    subs: Vec<Subscriber>,
    pending: Vec<Vec<u8>>,
    bus: Bus,
    now: u64,
    /// Acct-Session-Id → the Stop's (input octets, input packets, output octets,
    /// output packets).
    stop_counts: BTreeMap<String, (u32, u32, u32, u32)>,
    /// Count the workers' allocations (their polls only).
    watch: bool,
    /// Allocations the workers made while watched.
    allocs: u64,
}

impl Lab {
    /// A control plane that knows of `cp_workers` workers, a user plane with
    /// [`WORKERS`].
    fn new(cp_workers: u16) -> Lab {
        let cfg = config(cp_workers);
        let counters = SessionCounters::new(128);
        let cpl = ControlPlane::new(&cfg, 128, counters.clone(), Rng::from_seed([9; 32])).unwrap();
        let mut cc = CpConfig::new(CP_ADDR, vec![UP_ADDR], 0xe7a0_0000);
        node_timers(&mut cc.node);
        cc.measurement_period_s = 1;
        cc.associate_retry_ms = 1_000;
        let mut cp = Cp::new(cpl, counters, cc);
        cp.start(0);
        let mut uc = UpConfig::new(UP_ADDR, 0xe7a1_0000);
        node_timers(&mut uc.node);
        // The user plane's own config: the same with its worker count.
        let parts = Up::build_workers(
            &config(WORKERS as u16),
            &BuildEnv::new(CORE_MAC, 64, Rng::from_seed([1; 32])),
            uc,
            WORKERS as u16,
        )
        .unwrap();
        assert_eq!(parts.more_graphs.len(), WORKERS - 1, "a graph per worker");
        assert_eq!(
            parts.up.fib().queues().count(),
            2 * WORKERS,
            "an update queue per fast-path node per worker"
        );
        let pool = Pool::new(8192).unwrap();
        let rings = CtrlRings::new(WORKERS, 1024);
        let graphs = std::iter::once(parts.graph).chain(parts.more_graphs);
        let (mut ws, mut gens, mut sinks) = (Vec::new(), Vec::new(), Vec::new());
        for (k, (g, h)) in graphs.zip(handoff_mesh(WORKERS, 1024)).enumerate() {
            let (gen, access) = pair(&format!("gen{k}"), &format!("access{k}"), 512).unwrap();
            let (core, sink) = pair(&format!("core{k}"), &format!("sink{k}"), 512).unwrap();
            let w = Worker::new(vec![access, core], g, pool.cache(), WorkerConfig::default())
                .unwrap()
                .with_punt(rings.punt[k].clone())
                .with_inject(rings.inject[k].clone())
                .on_update(update_hook())
                .with_handoff(h);
            ws.push(w);
            gens.push(gen);
            sinks.push(sink);
        }
        let subs = (0..SUBS)
            .map(|k| {
                Subscriber::new(ClientParams {
                    mac: [2, 0x5b, 0, 0, 0, k as u8 + 1],
                    vlans: Vlans {
                        svlan: 100,
                        cvlan: 10 + k as u16,
                    },
                    user: b"alice".to_vec(),
                    password: b"pw".to_vec(),
                    accept_auth: [Some(AuthProto::Pap), None],
                    service_name: Vec::new(),
                    host_uniq: None,
                    max_payload: None,
                    timers: Timers::default(),
                    ipv6cp: false,
                    magic: 0x0102_0304 + k as u32,
                    discovery_tries: 5,
                })
            })
            .collect();
        let mut bus = Bus::new();
        bus.send(cp.take_datagrams());
        Lab {
            cp,
            up: parts.up,
            ws,
            gens,
            sinks,
            rings,
            inj: Injector::new(),
            cache: pool.cache(),
            b: Batch::new(),
            subs,
            pending: Vec::new(),
            bus,
            now: 0,
            stop_counts: BTreeMap::new(),
            watch: false,
            allocs: 0,
        }
    }

    /// Offers `frames` as the NIC steers them: access frames by
    /// [`access_queue`], core frames by [`core_queue`].
    fn offer(&mut self, core: bool, frames: &[Vec<u8>]) {
        for f in frames {
            let k = if core {
                core_queue(f, WORKERS as u16)
            } else {
                access_queue(f, WORKERS as u16)
            };
            let port = if core {
                &mut self.sinks[usize::from(k)]
            } else {
                &mut self.gens[usize::from(k)]
            };
            let mut p = self.cache.alloc().expect("buffer");
            p.copy_from(f).expect("fits");
            self.b.push(p).expect("room");
            assert_eq!(port.tx_burst(&mut self.cache, &mut self.b), 1, "queue room");
        }
    }

    /// What left every worker's access side (`core` false) or core side.
    fn collect(&mut self, core: bool) -> Vec<Vec<u8>> {
        let mut v = Vec::new();
        let ports = if core {
            &mut self.sinks
        } else {
            &mut self.gens
        };
        for port in ports.iter_mut() {
            while port.rx_burst(&mut self.cache, &mut self.b) > 0 {
                let c = &mut self.cache;
                self.b.drain(|p| {
                    v.push(p.data().to_vec());
                    c.free(p);
                });
            }
        }
        v
    }

    /// Polls every worker until nothing moves (hand-offs need a second round).
    fn run_workers(&mut self) {
        for _ in 0..16 {
            let ns = self.now * 1_000_000;
            let mut work = 0;
            for w in self.ws.iter_mut() {
                if self.watch {
                    let before = allocs();
                    watch(true);
                    work += w.poll(ns);
                    watch(false);
                    self.allocs += allocs() - before;
                } else {
                    work += w.poll(ns);
                }
            }
            if work == 0 {
                break;
            }
        }
    }

    /// The user plane's PFCP side: datagrams in, every worker's punts redirected,
    /// timers, datagrams out; the control plane's frames to worker 0's inject ring.
    fn up_round(&mut self) {
        let now = self.now;
        for r in &self.rings.punt {
            self.up.drain_punts(r, &mut self.cache);
        }
        for d in self.bus.recv(UP_ADDR) {
            self.up.input(now, &d);
        }
        self.up.poll(now);
        self.bus.send(self.up.take_datagrams());
        self.inj.queue(self.up.take_inject());
        self.inj.flush(&self.rings.inject[0], &mut self.cache);
    }

    fn step(&mut self) {
        self.now += STEP_MS;
        let now = self.now;
        let pending = std::mem::take(&mut self.pending);
        self.offer(false, &pending);
        self.run_workers();
        self.up_round();
        for d in self.bus.recv(CP_ADDR) {
            self.cp.input(now, &d);
        }
        self.cp.poll(now);
        self.bus.send(self.cp.take_datagrams());
        for t in self.cp.cp.take_radius_tx() {
            let p = RadiusPacket::new_checked(&t.bytes).expect("RADIUS parses");
            if p.code() == 4 && p.attr_u32(40) == Some(2) {
                let id = String::from_utf8(p.attr(44).expect("Acct-Session-Id").to_vec()).unwrap();
                let a = |t| p.attr_u32(t).unwrap_or(0);
                self.stop_counts.insert(id, (a(42), a(47), a(43), a(48)));
            }
        }
        self.up_round();
        self.run_workers();
        for f in self.collect(false) {
            for s in self.subs.iter_mut() {
                if f[0..6] == s.params().mac {
                    s.input(&f, now, &mut self.pending);
                }
            }
        }
        for s in self.subs.iter_mut() {
            s.poll(now, &mut self.pending);
        }
    }

    fn run_until(&mut self, max_ms: u64, mut done: impl FnMut(&Lab) -> bool) -> bool {
        let end = self.now + max_ms;
        while self.now < end {
            self.step();
            if done(self) {
                return true;
            }
        }
        false
    }

    /// Associates and brings every subscriber up.
    fn bring_up(&mut self) {
        assert!(
            self.run_until(2_000, |l| l.cp.up_ready(0)),
            "associated with a redirect tunnel: {:?}",
            self.cp
        );
        let now = self.now;
        for s in self.subs.iter_mut() {
            s.start(now, &mut self.pending);
        }
        assert!(
            self.run_until(20_000, |l| l
                .subs
                .iter()
                .all(|s| s.phase == ClientPhase::Up)),
            "all sessions up: {:?}",
            self.cp
        );
        // Let the establishments be answered.
        self.run_until(200, |_| false);
        assert_eq!(self.cp.cp.session_count(), SUBS);
        assert_eq!(self.up.session_count(), SUBS);
        assert_eq!(self.cp.stats.established, SUBS as u64);
        // Both workers redirected control frames (the session stage's by session
        // id, so both workers carry sessions).
        assert!(self.up.stats.redirected > 0 && self.up.stats.injected > 0);
    }

    fn handed_off(&self) -> u64 {
        self.ws.iter().map(|w| w.stats.handed_off).sum()
    }

    /// One UDP packet upstream from every subscriber, then the core's answer to
    /// each; returns (upstream at the core, downstream at the subscribers, per
    /// worker the packets that left its core side).
    fn traffic(&mut self) -> (usize, usize, [usize; WORKERS]) {
        let ups: Vec<Vec<u8>> = self
            .subs
            .iter()
            .map(|s| {
                let mut ppp = vec![0x00, 0x21];
                ppp.extend_from_slice(&udp(s.ip, REMOTE, 4000, 53));
                s.session_frame(&ppp)
            })
            .collect();
        self.offer(false, &ups);
        self.run_workers();
        let ips: BTreeSet<u32> = self.subs.iter().map(|s| s.ip).collect();
        let mut per = [0usize; WORKERS];
        let mut up_ok = 0;
        for (k, sink) in self.sinks.iter_mut().enumerate() {
            while sink.rx_burst(&mut self.cache, &mut self.b) > 0 {
                let c = &mut self.cache;
                self.b.drain(|p| {
                    let d = p.data();
                    if d.len() >= 30
                        && d[12..14] == [8, 0]
                        && ips.contains(&u32::from_be_bytes([d[26], d[27], d[28], d[29]]))
                    {
                        up_ok += 1;
                        per[k] += 1;
                    }
                    c.free(p);
                });
            }
        }
        let answers: Vec<Vec<u8>> = self
            .subs
            .iter()
            .map(|s| {
                let mut f = CORE_MAC.to_vec();
                f.extend_from_slice(&PEER_MAC);
                f.extend_from_slice(&[0x08, 0x00]);
                f.extend_from_slice(&udp(REMOTE, s.ip, 53, 4000));
                f
            })
            .collect();
        self.offer(true, &answers);
        self.run_workers();
        let down = self.collect(false);
        let down_ok = down
            .iter()
            .filter(|d| {
                d.len() >= 50
                    && d[20..22] == [0x88, 0x64]
                    && self.subs.iter().any(|s| {
                        d[0..6] == s.params().mac
                            && u16::from_be_bytes([d[24], d[25]]) == s.sid
                            && u32::from_be_bytes([d[46], d[47], d[48], d[49]]) == s.ip
                    })
            })
            .count();
        (up_ok, down_ok, per)
    }

    /// Whether session `s`'s address steers to the worker its session id does.
    fn aligned(s: &Subscriber) -> bool {
        addr_owner(s.ip, WORKERS as u16) == sid_owner(s.sid, WORKERS as u16)
    }
}

/// Sessions up, `rounds` packets each way per subscriber without loss, the usage
/// reports and the Accounting-Stops counting every packet of both workers.
fn sessions_traffic_and_accounting(cp_workers: u16) -> Lab {
    let mut lab = Lab::new(cp_workers);
    lab.bring_up();
    let owners: BTreeSet<u16> = lab
        .subs
        .iter()
        .map(|s| sid_owner(s.sid, WORKERS as u16))
        .collect();
    assert_eq!(owners.len(), WORKERS, "sessions on both workers");
    let rounds = 3u64;
    let mut per = [0usize; WORKERS];
    for _ in 0..rounds {
        let (up, down, p) = lab.traffic();
        assert_eq!((up, down), (SUBS, SUBS), "no loss either way");
        for (t, x) in per.iter_mut().zip(p) {
            *t += x;
        }
    }
    assert!(
        per.iter().all(|&n| n > 0),
        "both workers forwarded: {per:?}"
    );
    // The periodic usage reports (every second) bring every packet of both workers.
    assert!(
        lab.run_until(3_000, |l| l
            .cp
            .cp
            .sessions()
            .iter()
            .all(|s| s.counters.1 == rounds && s.counters.3 == rounds)),
        "usage reports count both workers' packets: {:?}",
        lab.cp
            .cp
            .sessions()
            .iter()
            .map(|s| s.counters)
            .collect::<Vec<_>>()
    );
    // One more packet each way, then every subscriber leaves: the Stops carry the
    // final usage reports (Session Deletion Response), both workers' counts summed.
    assert_eq!(lab.traffic().0, SUBS);
    let ids: BTreeMap<[u8; 6], String> = lab
        .cp
        .cp
        .sessions()
        .into_iter()
        .map(|s| (s.key.mac, s.acct_id))
        .collect();
    for s in lab.subs.iter_mut() {
        s.terminate(&mut lab.pending);
    }
    assert!(
        lab.run_until(3_000, |l| l.stop_counts.len() == SUBS
            && l.up.session_count() == 0),
        "every session ended: {} Stops, {} sessions on the user plane",
        lab.stop_counts.len(),
        lab.up.session_count()
    );
    for s in &lab.subs {
        let id = &ids[&s.params().mac];
        let (_, ip, _, op) = lab.stop_counts[id];
        assert_eq!(
            (u64::from(ip), u64::from(op)),
            (rounds + 1, rounds + 1),
            "Stop of {id}: every packet of both workers"
        );
    }
    lab
}

/// The control plane knows the user plane's two workers (`workers = 2` in its
/// config): each PPPoE session's address steers to the worker its session id does,
/// so no packet is handed between the workers.
#[test]
fn two_workers_steered_sessions_traffic_and_accounting() {
    let lab = sessions_traffic_and_accounting(WORKERS as u16);
    assert!(
        lab.subs.iter().all(Lab::aligned),
        "addresses from the owner's share"
    );
    assert_eq!(lab.handed_off(), 0, "no packet handed between workers");
}

/// The control plane does not know the user plane's workers (its config has one):
/// addresses are not chosen by owner, the frames of a session that reach the other
/// worker are handed to the owner (counted), and nothing is lost or uncounted.
#[test]
fn two_workers_unsteered_addresses_hand_off_counted() {
    let lab = sessions_traffic_and_accounting(1);
    let misaligned = lab.subs.iter().filter(|s| !Lab::aligned(s)).count();
    assert!(misaligned > 0, "some addresses steer to the other worker");
    assert!(lab.handed_off() > 0, "those sessions' packets handed over");
    for w in &lab.ws {
        assert_eq!(w.stats.handoff_dropped, 0);
    }
}

/// After the sessions are up and the paths warmed, neither worker allocates while
/// traffic flows both ways (with hand-offs) and the table updates of a session's
/// end reach both.
#[test]
fn two_workers_do_not_allocate_after_start_up() {
    let mut lab = Lab::new(1);
    lab.bring_up();
    for _ in 0..4 {
        assert_eq!(lab.traffic().0, SUBS);
    }
    let h0 = lab.handed_off();
    lab.watch = true;
    for _ in 0..50 {
        let (up, down, _) = lab.traffic();
        assert_eq!((up, down), (SUBS, SUBS));
        lab.step();
    }
    // The last subscriber leaves: its PADT is punted, the deletion's updates are
    // applied by both workers (watched).
    let last = SUBS - 1;
    lab.subs[last].terminate(&mut lab.pending);
    assert!(lab.run_until(2_000, |l| l.up.session_count() == SUBS - 1));
    lab.run_until(50, |_| false);
    lab.watch = false;
    assert_eq!(lab.allocs, 0, "the workers allocated {} times", lab.allocs);
    assert!(lab.handed_off() > h0, "hand-offs ran while watched");
}
