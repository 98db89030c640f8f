//! The vBNG with two workers (`vnf::build_workers` with 2 workers, the
//! engine's worker loop joined by the hand-off mesh), with CGNAT and without:
//!
//! - every upstream and downstream packet arrives on the worker that does *not*
//!   own its subscriber half of the time (as an RSS that knows nothing of PPPoE
//!   sessions delivers them) and still gets through, translated by the owner's
//!   `nat44` (one NAT session per flow, never two) and encapsulated for the right
//!   PPPoE session;
//! - sessions removed and installed again through the control side's table
//!   queues (fanned out to both workers) while traffic flows cost no packet of the
//!   other sessions;
//! - after start-up neither worker allocates (a counting global allocator).

use dataplane::batch::Batch;
use dataplane::buf::{Pool, PoolCache};
use dataplane::port::mem::{pair, MemPort};
use dataplane::port::Port;
use dataplane::proto::checksum;
use dataplane::proto::ethernet::Vlans;
use dataplane::worker::{handoff_mesh, CtrlRings, Worker, WorkerConfig};
use std::collections::{BTreeMap, BTreeSet};
use vbng::config::Config;
use vbng::control::FibUpdate;
use vbng::fastpath::session_owner;
use vbng::pppoe::AccessKey;
use vbng::rng::Rng;
use vbng::vnf::{build_workers, update_hook, BuildEnv, NODE_NAT};

#[path = "../../../dataplane/tests/counting/mod.rs"]
mod counting;
use counting::{allocs, watch};

#[global_allocator]
static GLOBAL: counting::Counting = counting::Counting;

const SESSIONS: u32 = 64;
const REMOTE: [u8; 4] = [203, 0, 113, 80];
const CORE_MAC: [u8; 6] = [2, 0, 0, 0, 0xc0, 2];

fn sub_mac(i: u32) -> [u8; 6] {
    [2, 0x5b, 0, 0, (i >> 8) as u8, i as u8]
}

fn sub_ip(i: u32) -> [u8; 4] {
    [100, 64, 1, i as u8 + 2]
}

fn key(i: u32) -> AccessKey {
    AccessKey {
        port: 0,
        mac: sub_mac(i),
        vlans: Vlans {
            svlan: 100,
            cvlan: 1 + i as u16,
        },
    }
}

fn sid(i: u32) -> u16 {
    0x100 + i as u16
}

fn add(i: u32) -> FibUpdate {
    FibUpdate::Add {
        idx: i,
        key: key(i),
        sid: sid(i),
        ip: u32::from_be_bytes(sub_ip(i)),
        rate: (0, 0),
        mtu: 1492,
    }
}

fn remove(i: u32) -> FibUpdate {
    FibUpdate::Remove {
        idx: i,
        key: key(i),
        sid: sid(i),
        ip: u32::from_be_bytes(sub_ip(i)),
    }
}

/// IPv4/UDP `src:sp → dst:dp` with 18 bytes of payload, checksum filled.
fn udp(src: [u8; 4], sp: u16, dst: [u8; 4], dp: u16) -> Vec<u8> {
    let mut ip = vec![0u8; 46];
    ip[0] = 0x45;
    ip[2..4].copy_from_slice(&46u16.to_be_bytes());
    ip[8] = 64;
    ip[9] = 17;
    ip[12..16].copy_from_slice(&src);
    ip[16..20].copy_from_slice(&dst);
    let c = checksum::internet(&ip[..20]);
    ip[10..12].copy_from_slice(&c.to_be_bytes());
    ip[20..22].copy_from_slice(&sp.to_be_bytes());
    ip[22..24].copy_from_slice(&dp.to_be_bytes());
    ip[24..26].copy_from_slice(&26u16.to_be_bytes());
    ip
}

/// Subscriber `i`'s QinQ PPPoE session frame carrying `ip`.
fn up_frame(bng_mac: [u8; 6], i: u32, ip: &[u8]) -> Vec<u8> {
    let mut f = bng_mac.to_vec();
    f.extend_from_slice(&sub_mac(i));
    f.extend_from_slice(&[0x88, 0xa8, 0, 100, 0x81, 0]);
    f.extend_from_slice(&(1 + i as u16).to_be_bytes());
    f.extend_from_slice(&[0x88, 0x64, 0x11, 0]);
    f.extend_from_slice(&sid(i).to_be_bytes());
    f.extend_from_slice(&((ip.len() + 2) as u16).to_be_bytes());
    f.extend_from_slice(&[0, 0x21]);
    f.extend_from_slice(ip);
    f
}

fn core_frame(ip: &[u8]) -> Vec<u8> {
    let mut f = CORE_MAC.to_vec();
    f.extend_from_slice(&[2, 0, 0, 0, 0xc0, 1]);
    f.extend_from_slice(&[8, 0]);
    f.extend_from_slice(ip);
    f
}

struct Lab {
    ws: Vec<Worker<MemPort>>,
    /// gens[k]: the subscribers' end of worker k's access queue; sinks[k]: the
    /// core's end of its core queue.
    gens: Vec<MemPort>,
    sinks: Vec<MemPort>,
    queues: Vec<std::sync::Arc<vbng::fastpath::UpdateQueue>>,
    rings: CtrlRings,
    c: PoolCache,
    b: Batch,
    now: u64,
    bng_mac: [u8; 6],
}

impl Lab {
    fn new(cgnat: bool) -> Lab {
        let text = if cgnat {
            "[cgnat]\npool = [\"198.51.100.0/30\"]\nblock_size = 256\n"
        } else {
            ""
        };
        let cfg = Config::from_toml(&format!("workers = 2\n{text}")).expect("config");
        let env = BuildEnv::new(CORE_MAC, 256, Rng::from_seed([9; 32]));
        let (v, more) = build_workers(&cfg, &env, cfg.workers).expect("build");
        assert_eq!(more.len(), 1, "one graph per worker");
        let pool = Pool::new(16384).expect("pool");
        let rings = CtrlRings::new(2, 1024);
        let mut ws = Vec::new();
        let (mut gens, mut sinks) = (Vec::new(), Vec::new());
        let graphs = std::iter::once(v.graph).chain(more);
        for (k, (g, h)) in graphs.zip(handoff_mesh(2, 1024)).enumerate() {
            let (a, ga) = pair(&format!("acc{k}"), "subs", 1024).unwrap();
            let (c, sc) = pair(&format!("core{k}"), "core", 1024).unwrap();
            let w = Worker::new(vec![a, c], g, pool.cache(), WorkerConfig::default())
                .unwrap()
                .with_punt(rings.punt[k].clone())
                .with_inject(rings.inject[k].clone())
                .on_update(update_hook())
                .with_handoff(h);
            ws.push(w);
            gens.push(ga);
            sinks.push(sc);
        }
        let queues: Vec<_> = v.control.fib.queues().cloned().collect();
        assert_eq!(
            queues.len(),
            4,
            "an update queue per fast-path node per worker"
        );
        Lab {
            ws,
            gens,
            sinks,
            queues,
            rings,
            c: pool.cache(),
            b: Batch::new(),
            now: 1_000_000_000,
            bng_mac: v.control.cp.mac(),
        }
    }

    /// A table update to every fast-path node of every worker (what the control
    /// side's `FibQueues` does, without its backlog).
    fn update(&mut self, u: FibUpdate) {
        for q in &self.queues {
            assert!(q.push(u.clone()).is_ok(), "update queue full");
        }
    }

    /// Offers `frames` on worker `w`'s queue: `core` false on the access side.
    fn offer(&mut self, w: usize, core: bool, frames: &[Vec<u8>]) {
        let port = if core {
            &mut self.sinks[w]
        } else {
            &mut self.gens[w]
        };
        for f in frames {
            let mut p = self.c.alloc().expect("buffer");
            p.copy_from(f).expect("fits");
            self.b.push(p).expect("room");
        }
        let n = self.b.len();
        assert_eq!(port.tx_burst(&mut self.c, &mut self.b), n);
    }

    /// Runs both workers until nothing moves.
    fn run(&mut self) {
        for _ in 0..64 {
            self.now += 1_000_000;
            let mut work = 0;
            for w in self.ws.iter_mut() {
                work += w.poll(self.now);
            }
            if work == 0 {
                break;
            }
        }
    }

    /// What left on each worker's core side (`core` true) or access side, with the
    /// worker it left from; `keep` copies the frames out.
    fn collect(&mut self, core: bool, keep: bool, got: &mut Vec<(usize, Vec<u8>)>) -> u64 {
        let mut n = 0;
        for k in 0..self.ws.len() {
            let port = if core {
                &mut self.sinks[k]
            } else {
                &mut self.gens[k]
            };
            while port.rx_burst(&mut self.c, &mut self.b) > 0 {
                n += self.b.len() as u64;
                let c = &mut self.c;
                self.b.drain(|p| {
                    if keep {
                        got.push((k, p.data().to_vec()));
                    }
                    c.free(p);
                });
            }
        }
        n
    }

    fn handed_off(&self) -> u64 {
        self.ws.iter().map(|w| w.stats.handed_off).sum()
    }
}

/// The frames of each worker's queue: subscriber `i`'s upstream frames arrive on
/// worker `i % 2`, the downstream ones (`shift` 1) on the other: half of them on
/// the worker that does not own the subscriber.
fn split(frames: &[Vec<u8>], shift: usize) -> [Vec<Vec<u8>>; 2] {
    let mut v = [Vec::new(), Vec::new()];
    for (i, f) in frames.iter().enumerate() {
        v[(i + shift) % 2].push(f.clone());
    }
    v
}

fn upstream(lab: &mut Lab, frames: &[Vec<Vec<u8>>; 2]) {
    for (w, f) in frames.iter().enumerate() {
        lab.offer(w, false, f);
    }
}

fn downstream(lab: &mut Lab, frames: &[Vec<Vec<u8>>; 2]) {
    for (w, f) in frames.iter().enumerate() {
        lab.offer(w, true, f);
    }
}

/// Sessions installed through the fanned-out queues; every packet of every
/// subscriber gets through both ways whichever worker it arrives on, and leaves
/// from the subscriber's owner.
fn both_ways(cgnat: bool) {
    let mut lab = Lab::new(cgnat);
    for i in 0..SESSIONS {
        lab.update(add(i));
    }
    lab.run();
    let ups: Vec<Vec<u8>> = (0..SESSIONS)
        .map(|i| up_frame(lab.bng_mac, i, &udp(sub_ip(i), 4000 + i as u16, REMOTE, 53)))
        .collect();
    upstream(&mut lab, &split(&ups, 0));
    lab.run();
    let mut got = Vec::new();
    assert_eq!(lab.collect(true, true, &mut got), u64::from(SESSIONS));
    // Each left from its subscriber's owner; with CGNAT each has its own outside
    // port (one NAT session per flow, none twice).
    let mut outside = BTreeSet::new();
    let mut down = Vec::new();
    for (w, f) in &got {
        let src: [u8; 4] = f[26..30].try_into().unwrap();
        let sport = u16::from_be_bytes([f[34], f[35]]);
        assert_eq!(&f[30..34], &REMOTE);
        if cgnat {
            assert_eq!(&src[..3], &[198, 51, 100], "translated");
            assert!(outside.insert((src, sport)), "one outside port per flow");
        } else {
            let i = u32::from(src[3]) - 2;
            let owner = session_owner(u32::from_be_bytes(src), sid(i), i, 2);
            assert_eq!(*w, usize::from(owner), "left from the owner");
        }
        down.push(core_frame(&udp(REMOTE, 53, src, sport)));
    }
    let h0 = lab.handed_off();
    assert!(h0 > 0, "some packets arrived on the other worker");
    downstream(&mut lab, &split(&down, 1));
    lab.run();
    let mut got = Vec::new();
    assert_eq!(lab.collect(false, true, &mut got), u64::from(SESSIONS));
    assert!(lab.handed_off() > h0, "downstream handed off too");
    let mut seen = BTreeMap::new();
    for (w, f) in &got {
        // QinQ PPPoE towards the subscriber: its MAC, its session id, its address.
        let i = u32::from(f[5]);
        assert_eq!(&f[..6], &sub_mac(i), "to the subscriber");
        assert_eq!(&f[20..22], &[0x88, 0x64]);
        assert_eq!(u16::from_be_bytes([f[24], f[25]]), sid(i));
        assert_eq!(&f[30 + 16..30 + 20], &sub_ip(i));
        let owner = session_owner(u32::from_be_bytes(sub_ip(i)), sid(i), i, 2);
        assert_eq!(*w, usize::from(owner), "encapsulated by the owner");
        *seen.entry(i).or_insert(0) += 1;
    }
    assert_eq!(seen.len(), SESSIONS as usize);
    if cgnat {
        // Each worker's nat44 holds only its own subscribers' sessions.
        let mut total = 0;
        for w in &lab.ws {
            w.graph.counters(&mut |node, c| {
                if node == NODE_NAT && matches!(c.name, "sessions-active" | "sessions") {
                    total += c.value;
                }
            });
        }
        assert_eq!(total, u64::from(SESSIONS), "no NAT session exists twice");
    }
    assert!(lab.rings.punt.iter().all(|r| r.is_empty()));
}

#[test]
fn two_workers_forward_both_ways() {
    both_ways(false);
}

#[test]
fn two_workers_with_cgnat_forward_both_ways() {
    both_ways(true);
}

/// Traffic of every stable subscriber while a quarter of the sessions are removed
/// and installed again every round: nothing lost, and after the warm-up no
/// allocation on either worker.
#[test]
fn two_workers_churn_without_loss_or_allocation() {
    let mut lab = Lab::new(true);
    for i in 0..SESSIONS {
        lab.update(add(i));
    }
    lab.run();
    let stable = SESSIONS * 3 / 4;
    let ups: Vec<Vec<u8>> = (0..stable)
        .map(|i| up_frame(lab.bng_mac, i, &udp(sub_ip(i), 4000 + i as u16, REMOTE, 53)))
        .collect();
    let ups = split(&ups, 0);
    upstream(&mut lab, &ups);
    lab.run();
    let mut got = Vec::new();
    assert_eq!(lab.collect(true, true, &mut got), u64::from(stable));
    let down: Vec<Vec<u8>> = got
        .iter()
        .map(|(_, f)| {
            let src: [u8; 4] = f[26..30].try_into().unwrap();
            core_frame(&udp(REMOTE, 53, src, u16::from_be_bytes([f[34], f[35]])))
        })
        .collect();
    let down = split(&down, 1);
    // Warm-up of the paths the watched loop takes.
    let mut none = Vec::new();
    for _ in 0..8 {
        upstream(&mut lab, &ups);
        downstream(&mut lab, &down);
        lab.run();
        lab.collect(true, false, &mut none);
        lab.collect(false, false, &mut none);
    }
    let h0 = lab.handed_off();
    let rounds = 300u64;
    let (mut up_rx, mut down_rx) = (0, 0);
    watch(true);
    let before = allocs();
    for r in 0..rounds {
        // Tear down and set up again the churning quarter, alternately.
        for i in stable..SESSIONS {
            lab.update(if r % 2 == 0 { remove(i) } else { add(i) });
        }
        upstream(&mut lab, &ups);
        downstream(&mut lab, &down);
        lab.run();
        up_rx += lab.collect(true, false, &mut none);
        down_rx += lab.collect(false, false, &mut none);
    }
    let n = allocs() - before;
    watch(false);
    assert_eq!(n, 0, "the workers allocated {n} times");
    assert_eq!(up_rx, rounds * u64::from(stable), "upstream loss");
    assert_eq!(down_rx, rounds * u64::from(stable), "downstream loss");
    assert!(lab.handed_off() > h0, "hand-offs ran while watched");
    for w in &lab.ws {
        assert_eq!(w.stats.handoff_dropped, 0);
    }
}
