//! The disaggregated vBNG (BBF TR-459) in one process: one control plane
//! (`vbng::cups::cp::Cp`, the monolithic `ControlPlane` wrapped) and two user planes
//! (`vbng::cups::up::Up`, each the `vnf::build` fast path on its own engine `Worker`
//! over in-memory ports) joined by an in-memory PFCP/GTP-U network
//! (`vbng::cups::Bus`). PPPoE subscribers (the `pktgen` emulator) on both user planes'
//! access ports come up through the GTP-U control-packet redirect, their traffic
//! passes both ways through their user plane, every datagram parses with the `pfcp`
//! crate and dissects cleanly in tshark, and cutting one user plane off ends exactly
//! its sessions with Accounting-Stops (Acct-Terminate-Cause Lost-Service) while the
//! other's traffic keeps flowing.

use dataplane::batch::Batch;
use dataplane::buf::{Pool, PoolCache};
use dataplane::port::mem::{pair, MemPort};
use dataplane::port::Port;
use dataplane::proto::ethernet::Vlans;
use dataplane::proto::radius::Packet as RadiusPacket;
use dataplane::worker::{ring, PktRing, Worker, WorkerConfig};
use pfcp::msg::{Message, MsgType};
use pktgen::subscribers::client::{ClientParams, ClientPhase, Subscriber};
use std::collections::{BTreeMap, BTreeSet};
use std::net::Ipv4Addr;
use std::process::Command;
use vbng::config::{Config, UserConfig};
use vbng::control::{ControlPlane, SessionCounters};
use vbng::cups::cp::{Cp, CpConfig};
use vbng::cups::up::{Up, UpConfig};
use vbng::cups::{Bus, Datagram};
use vbng::fsm::Timers;
use vbng::lcp::AuthProto;
use vbng::rng::Rng;
use vbng::vnf::{update_hook, BuildEnv, Injector};

mod common_frames;
use common_frames::udp;

const CORE_MAC: [u8; 6] = [2, 0, 0, 0, 0xc0, 2];
const PEER_MAC: [u8; 6] = [2, 0, 0, 0, 0xc0, 1];
const REMOTE: u32 = 0xc633_6401;
const CP_ADDR: Ipv4Addr = Ipv4Addr::new(192, 0, 2, 1);
const UP_ADDRS: [Ipv4Addr; 2] = [Ipv4Addr::new(192, 0, 2, 11), Ipv4Addr::new(192, 0, 2, 12)];
const PER_UP: usize = 20;
const STEP_MS: u64 = 5;

fn send(port: &mut MemPort, cache: &mut PoolCache, frames: &[Vec<u8>]) {
    for chunk in frames.chunks(32) {
        let mut b = Batch::new();
        for f in chunk {
            let mut p = cache.alloc().unwrap();
            p.copy_from(f).unwrap();
            b.push(p).unwrap();
        }
        port.tx_burst(cache, &mut b);
        b.free_all(cache);
    }
}

fn recv(port: &mut MemPort, cache: &mut PoolCache) -> Vec<Vec<u8>> {
    let mut b = Batch::new();
    let mut v = Vec::new();
    while port.rx_burst(cache, &mut b) > 0 {
        b.drain(|p| {
            v.push(p.data().to_vec());
            cache.free(p);
        });
    }
    v
}

fn config() -> Config {
    let mut cfg = Config::from_toml(
        "core_ip = \"198.51.100.2/24\"\ncore_next_hop_mac = \"02:00:00:00:c0:01\"\n\
         [radius]\nauth = [{ addr = \"192.0.2.50:1812\", secret = \"s\" }]\nacct = [{ addr = \"192.0.2.50:1813\", secret = \"s\" }]\nlocal_fallback = true\ntimeout_ms = 50\ntries = 1\n",
    )
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

/// One user plane with its worker, ports, rings and subscribers.
struct UpBox {
    up: Up,
    w: Worker,
    gen: MemPort,
    sink: MemPort,
    punt: PktRing,
    inject: PktRing,
    inj: Injector,
    cache: PoolCache,
    subs: Vec<Subscriber>,
    pending: Vec<Vec<u8>>,
}

fn node_timers(n: &mut pfcp::node::Config) {
    n.heartbeat_interval_ms = 1_000;
    n.t1_ms = 500;
    n.n1 = 2;
}

fn up_box(i: usize, cfg: &Config) -> UpBox {
    static STARTS: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);
    let start = STARTS.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    let mut uc = UpConfig::new(UP_ADDRS[i], 0xe7a1_0000 + start);
    node_timers(&mut uc.node);
    uc.audit_ms = 2_000;
    let parts = Up::build(
        cfg,
        &BuildEnv::new(CORE_MAC, 64, Rng::from_seed([i as u8 + 1; 32])),
        uc,
    )
    .unwrap();
    let pool = Pool::new(4096).unwrap();
    let (gen, access) = pair("gen", "access", 512).unwrap();
    let (core, sink) = pair("core", "sink", 512).unwrap();
    let (punt, inject) = (ring(1024), ring(1024));
    let w = Worker::new(
        vec![Box::new(access) as Box<dyn Port>, Box::new(core)],
        parts.graph,
        pool.cache(),
        WorkerConfig::default(),
    )
    .unwrap()
    .with_punt(punt.clone())
    .with_inject(inject.clone())
    .on_update(update_hook());
    let subs = (0..PER_UP)
        .map(|k| {
            Subscriber::new(ClientParams {
                mac: [2, 0x5b, i as u8, 0, 0, k as u8 + 1],
                vlans: Vlans {
                    svlan: 100 + i as u16,
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
                magic: 0x0102_0304 + (i * 100 + k) as u32,
                discovery_tries: 5,
            })
        })
        .collect();
    UpBox {
        up: parts.up,
        w,
        gen,
        sink,
        punt,
        inject,
        inj: Injector::new(),
        cache: pool.cache(),
        subs,
        pending: Vec::new(),
    }
}

struct Lab {
    cp: Cp,
    ups: Vec<UpBox>,
    bus: Bus,
    now: u64,
    /// (Acct-Session-Id, Acct-Status-Type) → Acct-Terminate-Cause.
    acct: BTreeMap<(String, u32), Option<u32>>,
    /// Acct-Session-Id → the Stop's (input octets, input packets, output octets,
    /// output packets).
    stop_counts: BTreeMap<String, (u32, u32, u32, u32)>,
    /// Whether user plane i's worker still runs (a killed one is stopped too).
    alive: Vec<bool>,
}

impl Lab {
    fn new() -> Lab {
        Lab::with(config())
    }

    /// With `cfg` (both ends': the control plane allocates CGNAT bindings when it
    /// has `[cgnat]`).
    fn with(cfg: Config) -> Lab {
        let counters = SessionCounters::new(128);
        let cpl = ControlPlane::new(&cfg, 128, counters.clone(), Rng::from_seed([9; 32])).unwrap();
        let mut cc = CpConfig::new(CP_ADDR, UP_ADDRS.to_vec(), 0xe7a0_0000);
        node_timers(&mut cc.node);
        cc.measurement_period_s = 1;
        cc.associate_retry_ms = 1_000;
        cc.nat = cfg
            .nat_config(128)
            .unwrap()
            .as_ref()
            .and_then(vbng::cups::NatPlan::new);
        let mut cp = Cp::new(cpl, counters, cc);
        cp.start(0);
        let ups = (0..UP_ADDRS.len()).map(|i| up_box(i, &cfg)).collect();
        let mut bus = Bus::new().with_log();
        bus.send(cp.take_datagrams());
        Lab {
            cp,
            ups,
            bus,
            now: 0,
            acct: BTreeMap::new(),
            stop_counts: BTreeMap::new(),
            alive: vec![true; UP_ADDRS.len()],
        }
    }

    fn step(&mut self) {
        self.now += STEP_MS;
        let now = self.now;
        let ns = now * 1_000_000;
        for (i, u) in self.ups.iter_mut().enumerate() {
            if !self.alive[i] {
                continue;
            }
            let pending = std::mem::take(&mut u.pending);
            send(&mut u.gen, &mut u.cache, &pending);
            u.w.poll(ns);
            u.up.drain_punts(&u.punt, &mut u.cache);
            for d in self.bus.recv(UP_ADDRS[i]) {
                u.up.input(now, &d);
            }
            u.up.poll(now);
            self.bus.send(u.up.take_datagrams());
        }
        for d in self.bus.recv(CP_ADDR) {
            self.cp.input(now, &d);
        }
        self.cp.poll(now);
        self.bus.send(self.cp.take_datagrams());
        for t in self.cp.cp.take_radius_tx() {
            let p = RadiusPacket::new_checked(&t.bytes).expect("RADIUS parses");
            if p.code() == 4 {
                let id = String::from_utf8(p.attr(44).expect("Acct-Session-Id").to_vec()).unwrap();
                let st = p.attr_u32(40).expect("Acct-Status-Type");
                if st == 2 {
                    let a = |t| p.attr_u32(t).unwrap_or(0);
                    self.stop_counts
                        .insert(id.clone(), (a(42), a(47), a(43), a(48)));
                }
                self.acct.insert((id, st), p.attr_u32(49));
            }
        }
        for (i, u) in self.ups.iter_mut().enumerate() {
            if !self.alive[i] {
                continue;
            }
            for d in self.bus.recv(UP_ADDRS[i]) {
                u.up.input(now, &d);
            }
            u.up.poll(now);
            self.bus.send(u.up.take_datagrams());
            u.inj.queue(u.up.take_inject());
            u.inj.flush(&u.inject, &mut u.cache);
            u.w.poll(ns);
            for f in recv(&mut u.gen, &mut u.cache) {
                for s in u.subs.iter_mut() {
                    if f[0..6] == s.params().mac {
                        s.input(&f, now, &mut u.pending);
                    }
                }
            }
            for s in u.subs.iter_mut() {
                s.poll(now, &mut u.pending);
            }
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

    /// Upstream UDP from every subscriber of user plane `i`, then the core's answer
    /// to each; returns (upstream seen at the core, downstream seen by subscribers).
    fn traffic(&mut self, i: usize) -> (usize, usize) {
        let now = self.now;
        let u = &mut self.ups[i];
        let frames: Vec<Vec<u8>> = u
            .subs
            .iter()
            .map(|s| {
                let mut ppp = vec![0x00, 0x21];
                ppp.extend_from_slice(&udp(s.ip, REMOTE, 4000, 53));
                s.session_frame(&ppp)
            })
            .collect();
        send(&mut u.gen, &mut u.cache, &frames);
        u.w.poll(now * 1_000_000);
        let got: Vec<Vec<u8>> = recv(&mut u.sink, &mut u.cache)
            .into_iter()
            .filter(|f| f[12..14] == [0x08, 0x00])
            .collect();
        let ips: BTreeSet<u32> = u.subs.iter().map(|s| s.ip).collect();
        let up_ok = got
            .iter()
            .filter(|d| ips.contains(&u32::from_be_bytes([d[26], d[27], d[28], d[29]])))
            .count();
        let answers: Vec<Vec<u8>> = u
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
        send(&mut u.sink, &mut u.cache, &answers);
        u.w.poll(now * 1_000_000 + 1);
        let down = recv(&mut u.gen, &mut u.cache);
        let down_ok = down
            .iter()
            .filter(|d| {
                d.len() >= 50
                    && d[20..22] == [0x88, 0x64]
                    && u.subs.iter().any(|s| {
                        d[0..6] == s.params().mac
                            && u32::from_be_bytes([d[46], d[47], d[48], d[49]]) == s.ip
                    })
            })
            .count();
        (up_ok, down_ok)
    }
}

fn all_up(l: &Lab) -> bool {
    l.ups
        .iter()
        .all(|u| u.subs.iter().all(|s| s.phase == ClientPhase::Up))
}

#[test]
fn two_user_planes_sessions_traffic_and_loss() {
    let mut lab = Lab::new();
    assert!(
        lab.run_until(2_000, |l| l.cp.up_ready(0) && l.cp.up_ready(1)),
        "both user planes associated with a redirect tunnel: {:?}",
        lab.cp
    );
    for u in lab.ups.iter_mut() {
        let now = lab.now;
        for s in u.subs.iter_mut() {
            s.start(now, &mut u.pending);
        }
    }
    assert!(
        lab.run_until(20_000, all_up),
        "all sessions up: {:?}",
        lab.cp
    );
    // Let the establishments be answered.
    lab.run_until(200, |_| false);
    assert_eq!(lab.cp.cp.session_count(), 2 * PER_UP);
    for i in 0..2 {
        assert_eq!(lab.cp.up_sessions(i), PER_UP);
        assert_eq!(lab.ups[i].up.session_count(), PER_UP);
        assert!(lab.ups[i].up.stats.redirected > 0 && lab.ups[i].up.stats.injected > 0);
    }
    assert_eq!(lab.cp.stats.established, 2 * PER_UP as u64);
    // Every session on the port of its user plane.
    let on_port = |lab: &Lab, p: u16| -> BTreeSet<String> {
        lab.cp
            .cp
            .sessions()
            .into_iter()
            .filter(|s| s.key.port == p)
            .map(|s| s.acct_id)
            .collect()
    };
    let (s0, s1) = (on_port(&lab, 0), on_port(&lab, 1));
    assert_eq!((s0.len(), s1.len()), (PER_UP, PER_UP));
    // Accounting-Starts for all.
    for id in s0.iter().chain(&s1) {
        assert!(lab.acct.contains_key(&(id.clone(), 1)), "Start for {id}");
    }

    // Traffic both ways through each user plane's worker.
    for i in 0..2 {
        assert_eq!(lab.traffic(i), (PER_UP, PER_UP), "user plane {i}");
    }
    // Usage reports bring the user planes' counts to the control plane.
    lab.run_until(1_500, |_| false);
    assert!(
        lab.cp.stats.reports >= 2 * PER_UP as u64,
        "{:?}",
        lab.cp.stats
    );
    for s in lab.cp.cp.sessions() {
        assert!(s.counters.0 > 0 && s.counters.1 >= 1, "{s:?}");
        assert!(s.counters.2 > 0 && s.counters.3 >= 1, "{s:?}");
    }
    // A query answers with the session's usage too.
    let idx = lab.cp.cp.sessions()[0].idx;
    assert!(lab.cp.query_usage(idx, lab.now));
    let before = lab.cp.stats.reports;
    lab.run_until(100, |_| false);
    assert!(lab.cp.stats.reports > before);

    // A second control plane associates with user plane 0 and tries to modify and
    // delete sessions it does not own (every SEID the user plane could have given
    // out): Cause 65 each time, and user plane 0's sessions and traffic are as
    // they were (TS 29.244 §7.5.4/§7.5.6: the session is the other CP's).
    {
        use pfcp::ie::cause;
        let rogue = Ipv4Addr::new(192, 0, 2, 66);
        let upa = std::net::SocketAddr::from((UP_ADDRS[0], 8805));
        let mut fake = Fake::new(rogue);
        fake.node.associate(lab.now, upa).unwrap();
        fake.flush(&mut lab.bus);
        lab.run_until(20, |_| false);
        fake.recv(&mut lab.bus, lab.now);
        assert!(fake.node.is_associated(upa));
        let mut refused = 0;
        for gen in 0..4u64 {
            for slot in 1..=(PER_UP as u64 + 4) {
                let seid = (gen << 32) | slot;
                for t in [
                    MsgType::SessionModificationRequest,
                    MsgType::SessionDeletionRequest,
                ] {
                    fake.node
                        .send_request(lab.now, upa, t, Some(seid), vec![])
                        .unwrap();
                    fake.flush(&mut lab.bus);
                    lab.run_until(1, |_| false);
                    let r = response_cause(&fake.recv(&mut lab.bus, lab.now));
                    assert_eq!(
                        r,
                        vec![(cause::SESSION_CONTEXT_NOT_FOUND, None)],
                        "SEID {seid:#x}"
                    );
                    refused += 1;
                }
            }
        }
        assert_eq!(refused, 4 * (PER_UP + 4) * 2);
        assert_eq!(lab.ups[0].up.session_count(), PER_UP);
        assert_eq!(lab.cp.up_sessions(0), PER_UP);
        assert_eq!(
            lab.traffic(0),
            (PER_UP, PER_UP),
            "user plane 0 after the rogue CP"
        );
    }

    // User plane 1 dies: nothing from or to it any more.
    lab.bus.set_cut(UP_ADDRS[1], true);
    lab.alive[1] = false;
    assert!(
        lab.run_until(10_000, |l| l.cp.stats.ups_lost == 1),
        "heartbeat loss detected: {:?}",
        lab.cp.stats
    );
    lab.run_until(100, |_| false);
    assert_eq!(lab.cp.stats.sessions_lost, PER_UP as u64);
    assert_eq!(lab.cp.cp.session_count(), PER_UP);
    assert_eq!(on_port(&lab, 0), s0, "user plane 0's sessions untouched");
    assert_eq!(lab.cp.up_sessions(1), 0);
    // Exactly user plane 1's sessions got Stops, with Lost-Service.
    let stops: BTreeMap<String, Option<u32>> = lab
        .acct
        .iter()
        .filter(|((_, st), _)| *st == 2)
        .map(|((id, _), c)| (id.clone(), *c))
        .collect();
    assert_eq!(stops.keys().cloned().collect::<BTreeSet<_>>(), s1);
    assert!(stops
        .values()
        .all(|c| *c == Some(vbng::control::cups::LOST_SERVICE)));
    // User plane 0 keeps forwarding; its sessions stay up.
    assert_eq!(lab.traffic(0), (PER_UP, PER_UP));
    assert!(lab.ups[0].subs.iter().all(|s| s.phase == ClientPhase::Up));
    assert_eq!(lab.ups[0].up.session_count(), PER_UP);

    // User plane 1 comes back (restarted, empty): the control plane associates
    // again, and ending a session on user plane 0 deletes it there.
    lab.ups[1] = up_box(1, &config());
    lab.alive[1] = true;
    lab.bus.set_cut(UP_ADDRS[1], false);
    assert!(lab.run_until(5_000, |l| l.cp.up_ready(1)), "{:?}", lab.cp);
    let u = &mut lab.ups[0];
    u.subs[0].terminate(&mut u.pending);
    assert!(lab.run_until(2_000, |l| l.ups[0].up.session_count() == PER_UP - 1));
    lab.run_until(100, |_| false);
    assert!(lab.cp.stats.deleted >= 1, "{:?}", lab.cp.stats);
    assert_eq!(lab.cp.up_sessions(0), PER_UP - 1);

    // Every datagram parses: PFCP with the pfcp crate, GTP-U with its decap.
    let log = lab.bus.log.take().unwrap();
    let mut types = BTreeSet::new();
    for d in &log {
        match d {
            Datagram::Pfcp { data, .. } => {
                for m in Message::parse_datagram(data).expect("PFCP parses") {
                    types.insert(m.msg_type().name());
                }
            }
            Datagram::Gtpu(p) => {
                pfcp::gtpu::decap_frame(p).expect("GTP-U parses");
            }
        }
    }
    for t in [
        MsgType::AssociationSetupRequest,
        MsgType::AssociationSetupResponse,
        MsgType::HeartbeatRequest,
        MsgType::HeartbeatResponse,
        MsgType::SessionEstablishmentRequest,
        MsgType::SessionEstablishmentResponse,
        MsgType::SessionModificationRequest,
        MsgType::SessionModificationResponse,
        MsgType::SessionDeletionRequest,
        MsgType::SessionDeletionResponse,
        MsgType::SessionReportRequest,
        MsgType::SessionReportResponse,
    ] {
        assert!(types.contains(t.name()), "no {} in {types:?}", t.name());
    }
    tshark_check(
        "main",
        &log,
        &[
            "Usage Report (Session Report Request)",
            "Measurement Period",
        ],
    );
}

/// Associates both user planes and brings every subscriber up.
fn lab_up() -> Lab {
    let mut lab = Lab::new();
    assert!(
        lab.run_until(2_000, |l| l.cp.up_ready(0) && l.cp.up_ready(1)),
        "{:?}",
        lab.cp
    );
    for u in lab.ups.iter_mut() {
        let now = lab.now;
        for s in u.subs.iter_mut() {
            s.start(now, &mut u.pending);
        }
    }
    assert!(lab.run_until(20_000, all_up), "{:?}", lab.cp);
    lab.run_until(200, |_| false);
    assert_eq!(lab.cp.stats.established, 2 * PER_UP as u64);
    lab
}

/// The Acct-Session-Id of subscriber `k` of user plane `i`.
fn acct_id(lab: &Lab, i: usize, k: usize) -> String {
    let mac = lab.ups[i].subs[k].params().mac;
    lab.cp
        .cp
        .sessions()
        .into_iter()
        .find(|s| s.key.mac == mac)
        .map(|s| s.acct_id)
        .expect("the subscriber's session")
}

/// The Accounting-Stop's volume is the final usage report of the Session Deletion
/// Response (TS 29.244 §7.5.7), not the last periodic report: traffic after the last
/// periodic report is counted.
#[test]
fn accounting_stop_counts_the_final_usage_report() {
    let mut lab = lab_up();
    assert_eq!(lab.traffic(0), (PER_UP, PER_UP));
    // The periodic reports (every second) bring one packet each way.
    lab.run_until(1_500, |_| false);
    let id = acct_id(&lab, 0, 0);
    let mac = lab.ups[0].subs[0].params().mac;
    let last = |lab: &Lab| {
        lab.cp
            .cp
            .sessions()
            .into_iter()
            .find(|s| s.key.mac == mac)
            .map(|s| s.counters)
            .expect("session")
    };
    let c1 = last(&lab);
    assert_eq!((c1.1, c1.3), (1, 1), "the periodic report: {c1:?}");
    // A second packet each way, then the subscriber leaves at once (before the next
    // periodic report).
    assert_eq!(lab.traffic(0), (PER_UP, PER_UP));
    assert_eq!(last(&lab), c1, "no report yet");
    let u = &mut lab.ups[0];
    u.subs[0].terminate(&mut u.pending);
    assert!(
        lab.run_until(500, |l| l.stop_counts.contains_key(&id)),
        "the Stop: {:?}",
        lab.cp.stats
    );
    let (io, ip, oo, op) = lab.stop_counts[&id];
    assert_eq!((ip, op), (2, 2), "both packets each way in the Stop");
    assert_eq!(u64::from(io), 2 * c1.0, "input octets");
    assert_eq!(u64::from(oo), 2 * c1.2, "output octets");
    assert_eq!(lab.cp.stats.final_reports, 1);
    assert_eq!(lab.cp.stats.deleted, 1);
    assert_eq!(
        lab.acct[&(id, 2)],
        Some(vbng::radius::terminate_cause::USER_REQUEST)
    );
}

/// A control plane restart (its PFCP function with a new Recovery Time Stamp, the
/// subscriber state kept): it associates again with both user planes, audits them by
/// establishing its sessions again — the user planes match them to the sessions they
/// kept, which forward all along — and a session it ended while it could not reach
/// the user plane is removed there when the audit window closes unclaimed.
#[test]
fn control_plane_restart_reassociates_audits_and_keeps_traffic() {
    let mut lab = lab_up();
    for i in 0..2 {
        assert_eq!(lab.traffic(i), (PER_UP, PER_UP), "user plane {i}");
    }
    // While the control plane is cut off it ends one session: its deletion is lost.
    lab.bus.set_cut(CP_ADDR, true);
    let gone = acct_id(&lab, 0, 0);
    let idx = lab
        .cp
        .cp
        .sessions()
        .into_iter()
        .find(|s| s.acct_id == gone)
        .map(|s| s.idx)
        .expect("session");
    let now = lab.now;
    lab.cp
        .cp
        .terminate(idx, vbng::radius::terminate_cause::NAS_REQUEST, now);
    lab.cp.sync(now);
    lab.run_until(50, |_| false);
    assert_eq!(
        lab.ups[0].up.session_count(),
        PER_UP,
        "the deletion never arrived"
    );

    // The restart; then traffic flows before, during and after the re-association.
    let now = lab.now;
    lab.cp.restart(now, 0xe7a0_1000);
    lab.bus.set_cut(CP_ADDR, false);
    for i in 0..2 {
        assert_eq!(
            lab.traffic(i),
            (PER_UP, PER_UP),
            "user plane {i} at the restart"
        );
    }
    assert!(
        lab.run_until(3_000, |l| l.cp.stats.audited == 2 * PER_UP as u64 - 1),
        "audit: {:?}",
        lab.cp.stats
    );
    assert!(lab.cp.up_ready(0) && lab.cp.up_ready(1));
    assert_eq!(lab.cp.stats.restarts, 1);
    assert_eq!(lab.cp.stats.associations, 4);
    for (i, u) in lab.ups.iter().enumerate() {
        assert_eq!(
            u.up.stats.cp_restarts, 1,
            "user plane {i} saw the new Recovery Time Stamp"
        );
        assert_eq!(
            u.up.stats.sessions_established, PER_UP as u64,
            "nothing re-created"
        );
        assert_eq!(u.up.stats.sessions_deleted, 0);
    }
    assert_eq!(lab.ups[0].up.stats.adopted, PER_UP as u64 - 1);
    assert_eq!(lab.ups[1].up.stats.adopted, PER_UP as u64);
    // The live sessions keep forwarding, and stay under the control plane: the
    // session it ended is still forwarding until the audit window closes.
    assert_eq!(lab.traffic(1), (PER_UP, PER_UP));
    assert!(lab.run_until(2_500, |l| l.ups[0].up.stats.audit_removed == 1));
    assert_eq!(lab.ups[0].up.session_count(), PER_UP - 1);
    assert_eq!(lab.ups[1].up.session_count(), PER_UP);
    assert_eq!(lab.ups[1].up.stats.audit_removed, 0);
    // Usage reports from the adopted sessions reach the control plane again.
    let before = lab.cp.stats.reports;
    assert_eq!(lab.traffic(1), (PER_UP, PER_UP));
    lab.run_until(1_500, |_| false);
    assert!(lab.cp.stats.reports > before, "{:?}", lab.cp.stats);
    // The ended session's Stop went out; ending an adopted session deletes it on
    // its user plane with the final report.
    assert!(lab.acct.contains_key(&(gone, 2)));
    let id = acct_id(&lab, 1, 3);
    let u = &mut lab.ups[1];
    u.subs[3].terminate(&mut u.pending);
    assert!(lab.run_until(1_000, |l| l.stop_counts.contains_key(&id)));
    assert_eq!(lab.ups[1].up.session_count(), PER_UP - 1);
    assert!(lab.cp.stats.final_reports >= 1);
}

fn tshark_ok() -> bool {
    Command::new("sh")
        .args(["-c", "command -v tshark"])
        .output()
        .map(|o| o.status.success())
        .unwrap_or(false)
}

/// The datagrams in Ethernet/IPv4/UDP in a pcap, dissected by tshark: no malformed
/// frame, no warning or error expert item, the BBF IEs named.
/// `tag` keeps the pcap of each test apart (tests of this file run in parallel).
fn tshark_check(tag: &str, log: &[Datagram], extra: &[&str]) {
    assert!(
        tshark_ok(),
        "tshark not found: install the Debian package tshark (scripts/test does)"
    );
    let eth = |ip: &[u8]| {
        let mut f = vec![2, 0, 0, 0, 0, 2, 2, 0, 0, 0, 0, 1, 0x08, 0x00];
        f.extend_from_slice(ip);
        f
    };
    // Heartbeats are many and alike: keep the first 200 datagrams and every
    // session message after them.
    let frames: Vec<Vec<u8>> = log
        .iter()
        .enumerate()
        .filter(|(i, d)| {
            *i < 200
                || matches!(d, Datagram::Pfcp { data, .. } if data.get(1).is_some_and(|t| *t >= 50))
        })
        .map(|(_, d)| match d {
            Datagram::Pfcp { src, dst, data } => {
                let (std::net::SocketAddr::V4(s), std::net::SocketAddr::V4(t)) = (src, dst) else {
                    panic!("IPv4 only");
                };
                eth(&udp_packet(*s.ip(), *t.ip(), 8805, 8805, data))
            }
            Datagram::Gtpu(p) => eth(p),
        })
        .collect();
    let path = std::env::temp_dir().join(format!("vbng-cups-{tag}-{}.pcap", std::process::id()));
    {
        use pcap_file::pcap::{PcapPacket, PcapWriter};
        let file = std::fs::File::create(&path).expect("create pcap");
        let mut w = PcapWriter::new(file).expect("pcap header");
        for (i, f) in frames.iter().enumerate() {
            let ts = std::time::Duration::from_millis(i as u64);
            w.write_packet(&PcapPacket::new(ts, f.len() as u32, f))
                .expect("write packet");
        }
    }
    let run = |filter: &str, verbose: bool| -> String {
        let mut c = Command::new("tshark");
        c.arg("-r")
            .arg(&path)
            .args(["-o", "udp.check_checksum:TRUE", "-Y", filter]);
        if verbose {
            c.arg("-V");
        }
        let o = c.output().expect("tshark");
        assert!(
            o.status.success(),
            "tshark failed: {}",
            String::from_utf8_lossy(&o.stderr)
        );
        String::from_utf8_lossy(&o.stdout).into_owned()
    };
    let bad = run("_ws.malformed || _ws.expert.severity >= 0x00600000", true);
    let pfcp_n = run("pfcp", false).lines().count();
    let gtp_n = run("gtp", false).lines().count();
    let detail = run("pfcp", true);
    if std::env::var_os("VBNG_KEEP_PCAP").is_none() {
        let _ = std::fs::remove_file(&path);
    }
    assert!(bad.trim().is_empty(), "tshark flags frames:\n{bad}");
    assert_eq!(pfcp_n + gtp_n, frames.len());
    for k in [
        "Create PDR",
        "Create FAR",
        "Create URR",
        "Create QER",
        "Created PDR",
        "Ethernet Packet Filter",
        "UE IP Address",
        "Outer Header Creation",
        "Usage Report (Session Deletion Response)",
        "Volume Measurement",
        "Logical Port",
        "PPPoE Session ID",
        "PPP protocol",
        "MTU",
        "BBF Outer Header Creation",
        "BBF Outer Header Removal",
        "BBF UP Function Features",
    ]
    .iter()
    .chain(extra)
    {
        assert!(detail.contains(k), "tshark does not name {k}");
    }
}

fn udp_packet(src: Ipv4Addr, dst: Ipv4Addr, sport: u16, dport: u16, payload: &[u8]) -> Vec<u8> {
    use dataplane::proto::checksum::PseudoHeader;
    use dataplane::proto::{ipv4, udp, IpProtocol};
    let ulen = 8 + payload.len();
    let mut p = vec![0u8; 20 + ulen];
    ipv4::Repr {
        src_addr: src,
        dst_addr: dst,
        protocol: IpProtocol::UDP,
        payload_len: ulen,
        ttl: 64,
        dscp: 0,
        ecn: 0,
        ident: 0,
        dont_frag: true,
        more_frags: false,
        frag_offset: 0,
    }
    .emit(&mut ipv4::Packet::new_unchecked(&mut p[..]))
    .unwrap();
    let mut u = udp::Packet::new_unchecked(&mut p[20..]);
    udp::Repr {
        src_port: sport,
        dst_port: dport,
        payload_len: payload.len(),
    }
    .emit(&mut u)
    .unwrap();
    u.payload_mut().copy_from_slice(payload);
    u.fill_checksum(&PseudoHeader::V4 { src, dst });
    p
}

/// Moves datagrams between a control plane and user planes until nothing moves.
fn pump(bus: &mut Bus, cp: &mut Cp, ups: &mut [&mut Up], now: u64) {
    for _ in 0..10 {
        for (i, u) in ups.iter_mut().enumerate() {
            for d in bus.recv(UP_ADDRS[i]) {
                u.input(now, &d);
            }
            u.poll(now);
            bus.send(u.take_datagrams());
        }
        for d in bus.recv(CP_ADDR) {
            cp.input(now, &d);
        }
        cp.poll(now);
        bus.send(cp.take_datagrams());
    }
}

fn drain_updates(up: &Up) -> Vec<vbng::control::FibUpdate> {
    let q = up.fib().queues().next().unwrap().clone();
    let mut v = Vec::new();
    while let Some(u) = q.pop() {
        v.push(u);
    }
    v
}

/// Every kind of fast-path update of the control plane reaches the user plane's
/// queues through PFCP as the same update (on the user plane's own slot and port).
#[test]
fn every_update_kind_crosses_pfcp() {
    use vbng::control::FibUpdate as F;
    use vbng::pppoe::AccessKey;
    let cfg = config();
    let counters = SessionCounters::new(16);
    let cpl = ControlPlane::new(&cfg, 16, counters.clone(), Rng::from_seed([9; 32])).unwrap();
    let mut cc = CpConfig::new(CP_ADDR, vec![UP_ADDRS[0]], 1);
    cc.measurement_period_s = 0;
    let mut cp = Cp::new(cpl, counters, cc);
    let mut up = Up::build(
        &cfg,
        &BuildEnv::new(CORE_MAC, 16, Rng::from_seed([1; 32])),
        UpConfig::new(UP_ADDRS[0], 2),
    )
    .unwrap()
    .up;
    let mut bus = Bus::new().with_log();
    cp.start(0);
    bus.send(cp.take_datagrams());
    pump(&mut bus, &mut cp, &mut [&mut up], 1);
    assert!(cp.up_ready(0) && up.has_redirect());
    let key = AccessKey {
        port: 0,
        mac: [2, 0, 0, 0, 0, 0x10],
        vlans: Vlans {
            svlan: 100,
            cvlan: 7,
        },
    };
    let (p6, pd, a6, ip) = (
        0x2001_0db8_0001_0000u64,
        0x2001_0db8_ff00_0000u64,
        0x2001_0db8_0002_0000_0000_0000_0000_0009u128,
        0x6440_0005u32,
    );
    // Establishment, and modifications sent once the UP's SEID is known.
    for u in [
        F::Add {
            idx: 5,
            key,
            sid: 0x1234,
            ip: 0,
            rate: (2_000_000, 10_000_000),
            mtu: 1492,
        },
        F::Add6 {
            idx: 5,
            prefix: p6,
            router_iid: 0x1122,
        },
        F::AddPd {
            idx: 5,
            prefix: pd,
            len: 56,
        },
        F::AddAddr6 {
            idx: 5,
            addr: a6,
            router_iid: 0x1122,
        },
    ] {
        cp.apply(2, u);
    }
    pump(&mut bus, &mut cp, &mut [&mut up], 2);
    assert_eq!(
        drain_updates(&up),
        vec![
            F::Add {
                idx: 0,
                key,
                sid: 0x1234,
                ip: 0,
                rate: (2_000_000, 10_000_000),
                mtu: 1492
            },
            F::Add6 {
                idx: 0,
                prefix: p6,
                router_iid: 0x1122
            },
            F::AddPd {
                idx: 0,
                prefix: pd,
                len: 56
            },
            F::AddAddr6 {
                idx: 0,
                addr: a6,
                router_iid: 0x1122
            },
        ]
    );
    // IPv4 comes, the rate changes (CoA), IPv4 and the rest go.
    for u in [
        F::Add {
            idx: 5,
            key,
            sid: 0x1234,
            ip,
            rate: (2_000_000, 10_000_000),
            mtu: 1480,
        },
        F::Rate {
            idx: 5,
            rate: (1_000_000, 0),
        },
        F::Down4 { idx: 5, ip },
        F::Remove6 { idx: 5, prefix: p6 },
        F::RemoveAddr6 { idx: 5, addr: a6 },
    ] {
        cp.apply(3, u);
        pump(&mut bus, &mut cp, &mut [&mut up], 3);
    }
    assert_eq!(
        drain_updates(&up),
        vec![
            F::Add {
                idx: 0,
                key,
                sid: 0x1234,
                ip,
                rate: (2_000_000, 10_000_000),
                mtu: 1480
            },
            F::Rate {
                idx: 0,
                rate: (1_000_000, 0)
            },
            F::Down4 { idx: 0, ip },
            F::Remove6 { idx: 0, prefix: p6 },
            F::RemoveAddr6 { idx: 0, addr: a6 },
        ]
    );
    cp.apply(
        4,
        F::Remove {
            idx: 5,
            key,
            sid: 0x1234,
            ip: 0,
        },
    );
    pump(&mut bus, &mut cp, &mut [&mut up], 4);
    assert_eq!(
        drain_updates(&up),
        vec![
            F::RemovePd { idx: 0, prefix: pd },
            F::Remove {
                idx: 0,
                key,
                sid: 0x1234,
                ip: 0
            },
        ]
    );
    assert_eq!(
        (up.session_count(), cp.up_sessions(0), cp.stats.deleted),
        (0, 0, 1)
    );
    // A session for a port without a user plane goes nowhere (counted).
    cp.apply(
        5,
        F::Add {
            idx: 6,
            key: AccessKey { port: 3, ..key },
            sid: 1,
            ip,
            rate: (0, 0),
            mtu: 1492,
        },
    );
    assert_eq!(cp.stats.no_up, 1);
    // An IPoE session (no PPPoE session id): its uplink PDR matches IPv4 over
    // Ethernet (Ethertype 0x0800, no BBF PPPoE Session ID or PPP Protocol), its FAR
    // towards the access has no BBF PPP Outer Header Creation; the fast path gets it
    // with session id 0.
    let ikey = AccessKey {
        mac: [2, 0, 0, 0, 0, 0x11],
        ..key
    };
    cp.apply(
        6,
        F::Add {
            idx: 7,
            key: ikey,
            sid: 0,
            ip,
            rate: (0, 0),
            mtu: 1500,
        },
    );
    let est = bus.log.as_ref().map_or(0, |l| l.len());
    pump(&mut bus, &mut cp, &mut [&mut up], 6);
    assert_eq!(
        drain_updates(&up),
        vec![F::Add {
            idx: 0,
            key: ikey,
            sid: 0,
            ip,
            rate: (0, 0),
            mtu: 1500
        }]
    );
    let req = bus.log.as_ref().unwrap()[est..]
        .iter()
        .find_map(|d| match d {
            Datagram::Pfcp { data, .. } => Message::parse_datagram(data)
                .unwrap()
                .into_iter()
                .find(|m| m.msg_type() == MsgType::SessionEstablishmentRequest),
            _ => None,
        })
        .expect("the IPoE establishment");
    let text = format!("{:?}", req.ies);
    assert!(text.contains("Ethertype(2048)"), "{text}");
    assert!(
        !text.contains("BbfPppoeSessionId") && !text.contains("BbfPppProtocol"),
        "{text}"
    );
    assert!(!text.contains("BbfOuterHeaderCreation"), "{text}");
    // The redirect session tunnels IPoE control too: DHCPv4, ARP, ICMPv6, DHCPv6.
    let redirect = bus.log.as_ref().unwrap().iter().find_map(|d| match d {
        Datagram::Pfcp { data, .. } => Message::parse_datagram(data)
            .unwrap()
            .into_iter()
            .find(|m| m.msg_type() == MsgType::SessionEstablishmentRequest),
        _ => None,
    });
    let text = format!("{:?}", redirect.expect("the redirect session").ies);
    for want in [
        "permit out 17 from any 68 to any 67",
        "Ethertype(2054)",
        "permit out 58 from any to any",
        "permit out 17 from any 546 to any 547",
    ] {
        assert!(
            text.contains(want) || text.contains(&format!("{:?}", want.as_bytes())),
            "{want} in {text}"
        );
    }
    // All of it dissects cleanly, the IPv6 PDRs too.
    tshark_check(
        "updates",
        &bus.log.take().unwrap(),
        &[
            "Remove PDR",
            "Update QER",
            "Update FAR",
            "Update Forwarding Parameters",
            "Prefix Delegation",
        ],
    );
}

/// A PFCP peer playing the other end, with its datagrams on the bus.
struct Fake {
    node: pfcp::node::Node,
    addr: Ipv4Addr,
}

impl Fake {
    fn new(addr: Ipv4Addr) -> Fake {
        Fake {
            node: pfcp::node::Node::new(pfcp::node::Config::new(pfcp::ie::NodeId::Ipv4(addr), 7)),
            addr,
        }
    }
    fn flush(&mut self, bus: &mut Bus) {
        let src = std::net::SocketAddr::from((self.addr, 8805));
        while let Some(t) = self.node.poll_transmit() {
            bus.send([Datagram::Pfcp {
                src,
                dst: t.dst,
                data: t.data,
            }]);
        }
    }
    fn recv(&mut self, bus: &mut Bus, now: u64) -> Vec<pfcp::node::Event> {
        for d in bus.recv(self.addr) {
            if let Datagram::Pfcp { src, data, .. } = d {
                self.node.handle(now, src, &data);
            }
        }
        std::iter::from_fn(|| self.node.poll_event()).collect()
    }
}

fn response_cause(evs: &[pfcp::node::Event]) -> Vec<(u8, Option<u16>)> {
    use pfcp::ie::IeList;
    evs.iter()
        .filter_map(|e| match e {
            pfcp::node::Event::Response { msg, .. } => {
                Some((msg.ies.cause()?, msg.ies.offending_ie()))
            }
            _ => None,
        })
        .collect()
}

/// Hostile or wrong requests to a user plane are refused per TS 29.244 §7.6 and
/// counted; garbage GTP-U and punts before the redirect session are dropped and
/// counted; a control plane refuses usage reports for sessions it does not know.
#[test]
fn refusals_and_drops() {
    use pfcp::ie::{cause, interface, ty, FSeid, Ie};
    let cfg = config();
    let mut up = Up::build(
        &cfg,
        &BuildEnv::new(CORE_MAC, 4, Rng::from_seed([1; 32])),
        UpConfig::new(UP_ADDRS[0], 2),
    )
    .unwrap()
    .up;
    let mut bus = Bus::new();
    let mut fake = Fake::new(CP_ADDR);
    let upa = std::net::SocketAddr::from((UP_ADDRS[0], 8805));
    let est = |pdi_if: u8| {
        vec![
            Ie::NodeId(pfcp::ie::NodeId::Ipv4(CP_ADDR)),
            Ie::FSeid(FSeid {
                seid: 9,
                v4: Some(CP_ADDR),
                v6: None,
            }),
            Ie::group(
                ty::CREATE_PDR,
                vec![
                    Ie::PdrId(1),
                    Ie::Precedence(1),
                    Ie::group(ty::PDI, vec![Ie::SourceInterface(pdi_if)]),
                    Ie::FarId(1),
                ],
            ),
            Ie::group(
                ty::CREATE_FAR,
                vec![
                    Ie::FarId(1),
                    Ie::ApplyAction(pfcp::ie::Flags::new(&[pfcp::ie::apply_action::FORW])),
                ],
            ),
        ]
    };
    let exchange = |fake: &mut Fake,
                    up: &mut Up,
                    bus: &mut Bus,
                    t: MsgType,
                    seid: Option<u64>,
                    ies: Vec<Ie>| {
        fake.node.send_request(0, upa, t, seid, ies).unwrap();
        fake.flush(bus);
        for d in bus.recv(UP_ADDRS[0]) {
            up.input(0, &d);
        }
        bus.send(up.take_datagrams());
        response_cause(&fake.recv(bus, 0))
    };
    // Not associated: Cause 72.
    let r = exchange(
        &mut fake,
        &mut up,
        &mut bus,
        MsgType::SessionEstablishmentRequest,
        Some(0),
        est(interface::ACCESS),
    );
    assert_eq!(r, vec![(cause::NO_ESTABLISHED_PFCP_ASSOCIATION, None)]);
    fake.node.associate(0, upa).unwrap();
    fake.flush(&mut bus);
    for d in bus.recv(UP_ADDRS[0]) {
        up.input(0, &d);
    }
    bus.send(up.take_datagrams());
    fake.recv(&mut bus, 0);
    assert!(fake.node.is_associated(upa));
    // No access line in the PDRs: Cause 69 naming Create PDR.
    let r = exchange(
        &mut fake,
        &mut up,
        &mut bus,
        MsgType::SessionEstablishmentRequest,
        Some(0),
        est(interface::ACCESS),
    );
    assert_eq!(
        r,
        vec![(cause::MANDATORY_IE_INCORRECT, Some(ty::CREATE_PDR))]
    );
    // Unknown sessions: Cause 65.
    let r = exchange(
        &mut fake,
        &mut up,
        &mut bus,
        MsgType::SessionModificationRequest,
        Some(0x77),
        vec![],
    );
    assert_eq!(r, vec![(cause::SESSION_CONTEXT_NOT_FOUND, None)]);
    let r = exchange(
        &mut fake,
        &mut up,
        &mut bus,
        MsgType::SessionDeletionRequest,
        Some(0x77),
        vec![],
    );
    assert_eq!(r, vec![(cause::SESSION_CONTEXT_NOT_FOUND, None)]);
    assert_eq!(up.stats.requests_refused, 3);
    assert_eq!(up.session_count(), 0);
    // GTP-U: garbage, and a G-PDU to a TEID that is not ours.
    up.input(0, &Datagram::Gtpu(vec![0x45, 0, 0, 3]));
    let t = pfcp::gtpu::Tunnel {
        src: CP_ADDR,
        dst: UP_ADDRS[0],
        src_port: 2152,
        teid: 0xdead,
    };
    up.input(
        0,
        &Datagram::Gtpu(pfcp::gtpu::encap_frame(&t, None, &[0u8; 60]).unwrap()),
    );
    assert_eq!(up.stats.gtpu_dropped, 2);
    assert!(up.take_inject().is_empty());
    // A punt before the redirect session exists.
    up.punted(0, &[0u8; 60]);
    assert_eq!(up.stats.punt_dropped, 1);
    assert!(up.take_datagrams().is_empty());

    // The control plane: a usage report for a session it does not know is refused
    // with Cause 65; garbage GTP-U and G-PDUs from strangers are dropped.
    let counters = SessionCounters::new(4);
    let cpl = ControlPlane::new(&cfg, 4, counters.clone(), Rng::from_seed([9; 32])).unwrap();
    let mut cp = Cp::new(cpl, counters, CpConfig::new(CP_ADDR, vec![UP_ADDRS[0]], 1));
    let mut fup = Fake::new(UP_ADDRS[0]);
    cp.start(0);
    bus.send(cp.take_datagrams());
    fup.recv(&mut bus, 0);
    fup.flush(&mut bus);
    for d in bus.recv(CP_ADDR) {
        cp.input(0, &d);
    }
    bus.send(cp.take_datagrams());
    fup.recv(&mut bus, 0);
    let cpa = std::net::SocketAddr::from((CP_ADDR, 8805));
    fup.node
        .send_request(
            0,
            cpa,
            MsgType::SessionReportRequest,
            Some(0x55),
            vec![Ie::ReportType(pfcp::ie::Flags::new(&[
                pfcp::ie::report_type::USAR,
            ]))],
        )
        .unwrap();
    fup.flush(&mut bus);
    for d in bus.recv(CP_ADDR) {
        cp.input(0, &d);
    }
    bus.send(cp.take_datagrams());
    let r = response_cause(&fup.recv(&mut bus, 0));
    assert_eq!(r, vec![(cause::SESSION_CONTEXT_NOT_FOUND, None)]);
    cp.input(0, &Datagram::Gtpu(vec![1, 2, 3]));
    let t = pfcp::gtpu::Tunnel {
        src: Ipv4Addr::new(203, 0, 113, 9),
        dst: CP_ADDR,
        src_port: 2152,
        teid: vbng::cups::cp::teid_from_up(0),
    };
    cp.input(
        0,
        &Datagram::Gtpu(pfcp::gtpu::encap_frame(&t, None, &[0u8; 60]).unwrap()),
    );
    assert_eq!(cp.stats.gtpu_dropped, 2);
    assert_eq!(cp.cp.session_count(), 0);
}

/// The same ends over real UDP sockets on loopback (PFCP 8805, GTP-U 2152): the
/// association and the redirect session come up, a PADI punted by the user plane
/// reaches the control plane in GTP-U and its PADO comes back for the access port.
#[test]
fn udp_sockets_carry_pfcp_and_gtpu() {
    use vbng::cups::udp::UdpLink;
    let (cpa, upa) = (Ipv4Addr::new(127, 0, 21, 1), Ipv4Addr::new(127, 0, 21, 11));
    let cfg = config();
    let counters = SessionCounters::new(4);
    let cpl = ControlPlane::new(&cfg, 4, counters.clone(), Rng::from_seed([9; 32])).unwrap();
    let mut cp = Cp::new(cpl, counters, CpConfig::new(cpa, vec![upa], 1));
    let mut up = Up::build(
        &cfg,
        &BuildEnv::new(CORE_MAC, 4, Rng::from_seed([1; 32])),
        UpConfig::new(upa, 2),
    )
    .unwrap()
    .up;
    let mut lcp = UdpLink::bind(cpa).expect("bind the control plane's sockets");
    let mut lup = UdpLink::bind(upa).expect("bind the user plane's sockets");
    let t0 = std::time::Instant::now();
    let now = || t0.elapsed().as_millis() as u64;
    cp.start(now());
    let mut padi_sent = false;
    let mut got = Vec::new();
    while t0.elapsed() < std::time::Duration::from_secs(5) && got.is_empty() {
        for d in lcp.recv() {
            cp.input(now(), &d);
        }
        cp.poll(now());
        lcp.send(cp.take_datagrams());
        for d in lup.recv() {
            up.input(now(), &d);
        }
        up.poll(now());
        if cp.up_ready(0) && up.has_redirect() && !padi_sent {
            let mut f = vec![0xff; 6];
            f.extend_from_slice(&[2, 0, 0, 0, 0, 0x10, 0x88, 0x63]);
            f.extend_from_slice(&[0x11, 0x09, 0, 0, 0, 4, 0x01, 0x01, 0, 0]);
            up.punted(0, &f);
            padi_sent = true;
        }
        lup.send(up.take_datagrams());
        got = up.take_inject();
        std::thread::sleep(std::time::Duration::from_millis(1));
    }
    assert!(padi_sent, "no association over UDP: {cp:?}");
    assert_eq!(got.len(), 1, "{cp:?} {up:?}");
    let (port, pado) = &got[0];
    assert_eq!(*port, 0);
    assert_eq!(&pado[0..6], &[2, 0, 0, 0, 0, 0x10]);
    assert_eq!(&pado[12..14], &[0x88, 0x63]);
    assert_eq!(pado[15], 0x07, "PADO");
    assert_eq!((lcp.errors, lup.errors), (0, 0));
}

/// Every single-byte mutation of every PFCP message and GTP-U packet the control
/// plane sends a user plane (and of the user plane's answers to the control plane)
/// is handled without a panic: refused, dropped or applied.
#[test]
fn mutated_datagrams_never_panic() {
    use vbng::control::FibUpdate as F;
    use vbng::pppoe::AccessKey;
    let cfg = config();
    let counters = SessionCounters::new(16);
    let cpl = ControlPlane::new(&cfg, 16, counters.clone(), Rng::from_seed([9; 32])).unwrap();
    let mut cc = CpConfig::new(CP_ADDR, vec![UP_ADDRS[0]], 1);
    cc.measurement_period_s = 1;
    let mut cp = Cp::new(cpl, counters, cc);
    let build_up = || {
        Up::build(
            &cfg,
            &BuildEnv::new(CORE_MAC, 16, Rng::from_seed([1; 32])),
            UpConfig::new(UP_ADDRS[0], 2),
        )
        .unwrap()
        .up
    };
    let mut up = build_up();
    let mut bus = Bus::new().with_log();
    cp.start(0);
    bus.send(cp.take_datagrams());
    pump(&mut bus, &mut cp, &mut [&mut up], 1);
    let key = AccessKey {
        port: 0,
        mac: [2, 0, 0, 0, 0, 0x10],
        vlans: Vlans {
            svlan: 100,
            cvlan: 7,
        },
    };
    for u in [
        F::Add {
            idx: 1,
            key,
            sid: 7,
            ip: 0x6440_0001,
            rate: (1_000_000, 2_000_000),
            mtu: 1492,
        },
        F::Add6 {
            idx: 1,
            prefix: 0x2001_0db8_0000_0001,
            router_iid: 5,
        },
        F::AddPd {
            idx: 1,
            prefix: 0x2001_0db8_ff00_0000,
            len: 56,
        },
        F::Rate {
            idx: 1,
            rate: (3_000_000, 4_000_000),
        },
        F::Down4 {
            idx: 1,
            ip: 0x6440_0001,
        },
    ] {
        cp.apply(2, u);
        pump(&mut bus, &mut cp, &mut [&mut up], 2);
    }
    pump(&mut bus, &mut cp, &mut [&mut up], 1_500);
    cp.apply(
        3_000,
        F::Remove {
            idx: 1,
            key,
            sid: 7,
            ip: 0,
        },
    );
    pump(&mut bus, &mut cp, &mut [&mut up], 3_000);
    let log = bus.log.take().unwrap();
    assert!(log.len() >= 12, "{}", log.len());
    // A user plane in the state before the session and one after it was set up.
    let mut up2 = build_up();
    let mut bus2 = Bus::new();
    cp.apply(
        4_000,
        F::Add {
            idx: 2,
            key,
            sid: 8,
            ip: 0x6440_0002,
            rate: (0, 0),
            mtu: 1492,
        },
    );
    bus2.send(cp.take_datagrams());
    let mut n = 0u64;
    for d in &log {
        let to_cp = d.addrs().is_some_and(|(_, t)| t == CP_ADDR);
        let (Datagram::Pfcp { data: b, .. } | Datagram::Gtpu(b)) = d;
        for i in 0..b.len() {
            for x in [0x01u8, 0x80, 0xff] {
                let mut m = b.clone();
                m[i] ^= x;
                let md = match d {
                    Datagram::Pfcp { src, dst, .. } => Datagram::Pfcp {
                        src: *src,
                        dst: *dst,
                        data: m,
                    },
                    Datagram::Gtpu(_) => Datagram::Gtpu(m),
                };
                if to_cp {
                    cp.input(4_000, &md);
                } else {
                    up.input(4_000, &md);
                    up2.input(4_000, &md);
                }
                n += 1;
            }
        }
        // Truncations too.
        for l in 0..b.len() {
            let md = match d {
                Datagram::Pfcp { src, dst, .. } => Datagram::Pfcp {
                    src: *src,
                    dst: *dst,
                    data: b[..l].to_vec(),
                },
                Datagram::Gtpu(_) => Datagram::Gtpu(b[..l].to_vec()),
            };
            if to_cp {
                cp.input(4_000, &md);
            } else {
                up.input(4_000, &md);
            }
        }
    }
    up.poll(5_000);
    up2.poll(5_000);
    cp.poll(5_000);
    // Whatever they answer parses.
    for d in up
        .take_datagrams()
        .into_iter()
        .chain(up2.take_datagrams())
        .chain(cp.take_datagrams())
    {
        if let Datagram::Pfcp { data, .. } = d {
            Message::parse_datagram(&data).expect("what we send parses");
        }
    }
    assert!(n > 1000);
}

/// Placement by load (dual-homed access: both user planes' access ports reach every
/// line): a new line's PADI, redirected by both user planes, is answered through the
/// user plane with fewer lines only; the copy from the other is dropped; the next new
/// line goes to the other user plane, and later frames of a line through the wrong
/// user plane are dropped too.
#[test]
fn placement_by_load_answers_each_line_through_one_user_plane() {
    let cfg = config();
    let counters = SessionCounters::new(16);
    let cpl = ControlPlane::new(&cfg, 16, counters.clone(), Rng::from_seed([9; 32])).unwrap();
    let mut cc = CpConfig::new(CP_ADDR, UP_ADDRS.to_vec(), 1);
    cc.placement = vbng::config::Placement::Load;
    let mut cp = Cp::new(cpl, counters, cc);
    let mk = |i: usize| {
        Up::build(
            &cfg,
            &BuildEnv::new(CORE_MAC, 16, Rng::from_seed([i as u8 + 1; 32])),
            UpConfig::new(UP_ADDRS[i], 2 + i as u32),
        )
        .unwrap()
        .up
    };
    let (mut u0, mut u1) = (mk(0), mk(1));
    let mut bus = Bus::new();
    cp.start(0);
    bus.send(cp.take_datagrams());
    pump(&mut bus, &mut cp, &mut [&mut u0, &mut u1], 1);
    assert!(cp.up_ready(0) && cp.up_ready(1));
    let padi = |mac: [u8; 6]| {
        let mut f = vec![0xff; 6];
        f.extend_from_slice(&mac);
        f.extend_from_slice(&[0x81, 0x00, 0x00, 0x0a, 0x88, 0x63]);
        f.extend_from_slice(&[0x11, 0x09, 0x00, 0x00, 0x00, 0x04, 0x01, 0x01, 0x00, 0x00]);
        f
    };
    let port = vbng::vnf::ACCESS_PORT;
    // Line A: both user planes redirect its PADI; one answers.
    let a = padi([2, 0, 0, 0, 0, 0xa]);
    u0.punted(port, &a);
    u1.punted(port, &a);
    bus.send(u0.take_datagrams());
    bus.send(u1.take_datagrams());
    pump(&mut bus, &mut cp, &mut [&mut u0, &mut u1], 2);
    let (i0, i1) = (u0.take_inject(), u1.take_inject());
    assert_eq!(
        (i0.len(), i1.len()),
        (1, 0),
        "PADO through user plane 0 only"
    );
    assert_eq!(cp.stats.placement_dropped, 1);
    // Line B goes to the other, less loaded, user plane.
    let b = padi([2, 0, 0, 0, 0, 0xb]);
    u1.punted(port, &b);
    u0.punted(port, &b);
    bus.send(u1.take_datagrams());
    bus.send(u0.take_datagrams());
    pump(&mut bus, &mut cp, &mut [&mut u0, &mut u1], 3);
    let (i0, i1) = (u0.take_inject(), u1.take_inject());
    assert_eq!(
        (i0.len(), i1.len()),
        (0, 1),
        "PADO through user plane 1 only"
    );
    assert_eq!(cp.stats.placement_dropped, 2);
    // Line A again through user plane 1: dropped; through user plane 0: answered.
    u1.punted(port, &a);
    bus.send(u1.take_datagrams());
    pump(&mut bus, &mut cp, &mut [&mut u0, &mut u1], 4);
    assert_eq!(cp.stats.placement_dropped, 3);
    assert!(u1.take_inject().is_empty());
    u0.punted(port, &a);
    bus.send(u0.take_datagrams());
    pump(&mut bus, &mut cp, &mut [&mut u0, &mut u1], 5);
    assert_eq!(u0.take_inject().len(), 1);
    assert_eq!(cp.stats.placement_dropped, 3);
}

/// A `[cgnat]` section for both ends: 4 outside addresses, blocks of 1024 ports.
fn cgnat_config() -> Config {
    let mut cfg = config();
    let c = Config::from_toml("[cgnat]\npool = [\"203.0.113.0/30\"]\nblock_size = 1024\n").unwrap();
    cfg.cgnat = c.cgnat;
    cfg
}

/// The `nat44` node's counter `name` of user plane `i`.
fn nat_counter(lab: &Lab, i: usize, name: &str) -> u64 {
    let mut v = 0;
    lab.ups[i].w.graph.counters(&mut |node, c| {
        if node == vbng::vnf::NODE_NAT && c.name == name {
            v += c.value;
        }
    });
    v
}

/// CGNAT over PFCP (BBF TR-459 NAT IEs in the core FAR): the control plane allocates
/// one port block per subscriber (distinct, in the pool, the same slot → the same
/// block), each user plane installs its subscribers' bindings in `nat44` (none
/// allocated on its fast path); upstream leaves with the binding's outside address
/// and a port of its block, downstream to it comes back to the subscriber; ending
/// the sessions frees every binding at both ends; every datagram dissects cleanly.
#[test]
fn cgnat_bindings_over_pfcp_translate_and_free() {
    let mut lab = Lab::with(cgnat_config());
    assert!(lab.run_until(2_000, |l| l.cp.up_ready(0) && l.cp.up_ready(1)));
    for u in lab.ups.iter_mut() {
        let now = lab.now;
        for s in u.subs.iter_mut() {
            s.start(now, &mut u.pending);
        }
    }
    assert!(lab.run_until(20_000, all_up), "{:?}", lab.cp);
    lab.run_until(200, |_| false);
    assert_eq!(lab.cp.stats.established, 2 * PER_UP as u64);
    // One binding per session, distinct, whole blocks of the pool, the slot's own.
    let plan = lab.cp.nat_plan().unwrap().clone();
    let mut seen = BTreeSet::new();
    let mut by_ip = BTreeMap::new();
    for s in lab.cp.cp.sessions() {
        let b = lab.cp.nat_binding(s.idx).expect("a binding per session");
        let blocks = plan.blocks_of(&b).expect("whole blocks of the pool");
        assert_eq!(blocks.len(), 1);
        assert!(seen.insert(blocks.start), "{b:?} bound twice");
        let k = s.idx as usize;
        let n = plan.addrs.len();
        assert_eq!(
            blocks.start,
            (k % n) * plan.blocks_per_addr as usize + k / n
        );
        by_ip.insert(s.ip, b);
    }
    assert_eq!(lab.cp.nat_bound(), 2 * PER_UP as u64);
    for i in 0..2 {
        assert_eq!(lab.ups[i].up.nat_claimed(), Some(PER_UP));
        assert_eq!(lab.ups[i].up.stats.nat_refused, 0);
        assert_eq!(nat_counter(&lab, i, "bindings-installed"), PER_UP as u64);
        assert_eq!(nat_counter(&lab, i, "port-blocks-in-use"), PER_UP as u64);
    }
    // Upstream: the core sees only pool addresses, each its subscriber's binding.
    for i in 0..2 {
        let now = lab.now;
        let u = &mut lab.ups[i];
        let frames: Vec<Vec<u8>> = u
            .subs
            .iter()
            .map(|s| {
                let mut ppp = vec![0x00, 0x21];
                ppp.extend_from_slice(&udp(s.ip, REMOTE, 4000, 53));
                s.session_frame(&ppp)
            })
            .collect();
        send(&mut u.gen, &mut u.cache, &frames);
        u.w.poll(now * 1_000_000);
        let got: Vec<Vec<u8>> = recv(&mut u.sink, &mut u.cache)
            .into_iter()
            .filter(|f| f[12..14] == [0x08, 0x00])
            .collect();
        assert_eq!(got.len(), PER_UP, "user plane {i}");
        let mut answers = Vec::new();
        let mut want = BTreeMap::new();
        for f in &got {
            let src = Ipv4Addr::new(f[26], f[27], f[28], f[29]);
            let sport = u16::from_be_bytes([f[34], f[35]]);
            assert_eq!(src.octets()[..3], [203, 0, 113], "core sees {src}");
            let owner = by_ip
                .iter()
                .find(|(_, b)| b.outside == src && (b.port_first..=b.port_last).contains(&sport))
                .map(|(ip, _)| *ip)
                .expect("a port of a subscriber's binding");
            want.insert(owner, ());
            let mut a = CORE_MAC.to_vec();
            a.extend_from_slice(&PEER_MAC);
            a.extend_from_slice(&[0x08, 0x00]);
            a.extend_from_slice(&udp(REMOTE, u32::from(src), 53, sport));
            answers.push(a);
        }
        assert_eq!(want.len(), PER_UP, "each subscriber once");
        send(&mut u.sink, &mut u.cache, &answers);
        u.w.poll(now * 1_000_000 + 1);
        let down = recv(&mut u.gen, &mut u.cache);
        let back = down
            .iter()
            .filter(|d| {
                d.len() >= 50
                    && d[20..22] == [0x88, 0x64]
                    && u.subs.iter().any(|s| {
                        d[0..6] == s.params().mac
                            && u32::from_be_bytes([d[46], d[47], d[48], d[49]]) == s.ip
                    })
            })
            .count();
        assert_eq!(back, PER_UP, "downstream through user plane {i}");
    }
    // The sessions end: every binding freed at both ends.
    for u in lab.ups.iter_mut() {
        for s in u.subs.iter_mut() {
            s.terminate(&mut u.pending);
        }
    }
    assert!(
        lab.run_until(5_000, |l| l.cp.stats.deleted == 2 * PER_UP as u64),
        "{:?}",
        lab.cp.stats
    );
    lab.run_until(100, |_| false);
    assert_eq!(lab.cp.nat_bound(), 0);
    assert_eq!(lab.cp.stats.nat_freed, 2 * PER_UP as u64);
    for i in 0..2 {
        assert_eq!(lab.ups[i].up.nat_claimed(), Some(0));
        assert_eq!(nat_counter(&lab, i, "bindings-removed"), PER_UP as u64);
        assert_eq!(nat_counter(&lab, i, "port-blocks-in-use"), 0);
        assert_eq!(nat_counter(&lab, i, "sessions-active"), 0);
    }
    let log = lab.bus.log.take().unwrap();
    tshark_check(
        "cgnat",
        &log,
        &[
            "Enterprise specific IE Type: 32782",
            "Enterprise specific IE Type: 32784",
        ],
    );
}

/// Hostile CGNAT bindings to a user plane are refused per TS 29.244 without
/// touching other sessions: a NAT Outside Address of the wrong length (Cause 69,
/// Offending IE), NAT without its address (Cause 67), a block outside the pool, not
/// whole blocks, reversed, or held by another session (Cause 73 with the Failed
/// Rule ID), several ranges (Cause 69); a binding to a user plane without
/// `[cgnat]` is a rule it cannot create (Cause 73).
#[test]
fn cgnat_hostile_bindings_refused() {
    use pfcp::ie::{bbf, cause, interface, ty, FSeid, Flags, Ie, MacAddress, RawIe};
    let b = |o: [u8; 4], f: u16, l: u16| {
        vec![
            Ie::BbfApplyAction(Flags::new(&[bbf::apply_action::NAT])),
            Ie::BbfNatOutsideAddress(Ipv4Addr::from(o)),
            Ie::BbfNatExternalPortRange(vec![(f, l)]),
        ]
    };
    let est = |k: u8, nat: Vec<Ie>| {
        let mut fp = vec![Ie::DestinationInterface(interface::CORE)];
        fp.extend(nat);
        vec![
            Ie::NodeId(pfcp::ie::NodeId::Ipv4(CP_ADDR)),
            Ie::FSeid(FSeid {
                seid: 100 + u64::from(k),
                v4: Some(CP_ADDR),
                v6: None,
            }),
            Ie::group(
                ty::CREATE_PDR,
                vec![
                    Ie::PdrId(1),
                    Ie::Precedence(100),
                    Ie::group(
                        ty::PDI,
                        vec![
                            Ie::SourceInterface(interface::ACCESS),
                            Ie::group(
                                ty::ETHERNET_PACKET_FILTER,
                                vec![Ie::MacAddress(MacAddress {
                                    src: Some([2, 0, 0, 0, 7, k]),
                                    ..MacAddress::default()
                                })],
                            ),
                            Ie::BbfPppoeSessionId(u16::from(k) + 1),
                        ],
                    ),
                    Ie::FarId(1),
                ],
            ),
            Ie::group(
                ty::CREATE_FAR,
                vec![
                    Ie::FarId(1),
                    Ie::ApplyAction(Flags::new(&[pfcp::ie::apply_action::FORW])),
                    Ie::group(ty::FORWARDING_PARAMETERS, fp),
                ],
            ),
        ]
    };
    let upa = std::net::SocketAddr::from((UP_ADDRS[0], 8805));
    for with_nat in [true, false] {
        let cfg = if with_nat { cgnat_config() } else { config() };
        let mut up = Up::build(
            &cfg,
            &BuildEnv::new(CORE_MAC, 8, Rng::from_seed([1; 32])),
            UpConfig::new(UP_ADDRS[0], 2),
        )
        .unwrap()
        .up;
        let mut bus = Bus::new();
        let mut fake = Fake::new(CP_ADDR);
        fake.node.associate(0, upa).unwrap();
        fake.flush(&mut bus);
        for d in bus.recv(UP_ADDRS[0]) {
            up.input(0, &d);
        }
        bus.send(up.take_datagrams());
        fake.recv(&mut bus, 0);
        let ask = |up: &mut Up, fake: &mut Fake, bus: &mut Bus, ies: Vec<Ie>| {
            fake.node
                .send_request(0, upa, MsgType::SessionEstablishmentRequest, Some(0), ies)
                .unwrap();
            fake.flush(bus);
            for d in bus.recv(UP_ADDRS[0]) {
                up.input(0, &d);
            }
            bus.send(up.take_datagrams());
            let evs = fake.recv(bus, 0);
            let failed_rule = evs.iter().any(|e| {
                matches!(e, pfcp::node::Event::Response { msg, .. }
                    if vbng::cups::raw(&msg.ies, vbng::cups::up::FAILED_RULE_ID, None)
                        == Some(&[1, 0, 0, 0, 1][..]))
            });
            (response_cause(&evs), failed_rule)
        };
        let rule = cause::RULE_CREATION_MODIFICATION_FAILURE;
        let range = Some(bbf::NAT_EXTERNAL_PORT_RANGE);
        if !with_nat {
            assert_eq!(
                ask(
                    &mut up,
                    &mut fake,
                    &mut bus,
                    est(1, b([203, 0, 113, 1], 1024, 2047))
                ),
                (vec![(rule, Some(bbf::APPLY_ACTION))], true)
            );
            assert_eq!(up.session_count(), 0);
            continue;
        }
        // A good one.
        let ok = ask(
            &mut up,
            &mut fake,
            &mut bus,
            est(1, b([203, 0, 113, 1], 2048, 3071)),
        );
        assert_eq!(ok, (vec![(cause::REQUEST_ACCEPTED, None)], false));
        let short = Ie::Unknown(RawIe {
            ty: bbf::NAT_OUTSIDE_ADDRESS,
            enterprise: Some(bbf::ENTERPRISE_ID),
            data: vec![203, 0, 113],
        });
        let mut bad_len = b([203, 0, 113, 1], 1024, 2047);
        bad_len[1] = short;
        // (the NAT IEs, the answer: causes with Offending IE, Failed Rule ID given)
        type Answer = (Vec<(u8, Option<u16>)>, bool);
        let cases: Vec<(Vec<Ie>, Answer)> = vec![
            (
                bad_len,
                (
                    vec![(
                        cause::MANDATORY_IE_INCORRECT,
                        Some(bbf::NAT_OUTSIDE_ADDRESS),
                    )],
                    false,
                ),
            ),
            (
                vec![Ie::BbfApplyAction(Flags::new(&[bbf::apply_action::NAT]))],
                (
                    vec![(
                        cause::CONDITIONAL_IE_MISSING,
                        Some(bbf::NAT_OUTSIDE_ADDRESS),
                    )],
                    false,
                ),
            ),
            (
                b([198, 51, 100, 1], 1024, 2047),
                (vec![(rule, range)], true),
            ),
            (b([203, 0, 113, 1], 1100, 2123), (vec![(rule, range)], true)),
            (b([203, 0, 113, 1], 3071, 2048), (vec![(rule, range)], true)),
            (b([203, 0, 113, 1], 2048, 3071), (vec![(rule, range)], true)),
            (
                vec![
                    Ie::BbfApplyAction(Flags::new(&[bbf::apply_action::NAT])),
                    Ie::BbfNatOutsideAddress(Ipv4Addr::new(203, 0, 113, 1)),
                    Ie::BbfNatExternalPortRange(vec![(1024, 2047), (3072, 4095)]),
                ],
                (vec![(cause::MANDATORY_IE_INCORRECT, range)], false),
            ),
        ];
        for (k, (nat, want)) in cases.into_iter().enumerate() {
            assert_eq!(
                ask(&mut up, &mut fake, &mut bus, est(k as u8 + 2, nat)),
                want,
                "case {k}"
            );
        }
        // The good session is untouched; nothing else was set up.
        assert_eq!(up.session_count(), 1);
        assert_eq!(up.nat_claimed(), Some(1));
        assert_eq!(up.stats.nat_bound, 0, "bound once its address is known");
        // The block freed by nothing: another session still cannot take it, a
        // free one it can.
        let next = ask(
            &mut up,
            &mut fake,
            &mut bus,
            est(20, b([203, 0, 113, 2], 2048, 3071)),
        );
        assert_eq!(next.0, vec![(cause::REQUEST_ACCEPTED, None)]);
        assert_eq!(up.nat_claimed(), Some(2));
    }
}
