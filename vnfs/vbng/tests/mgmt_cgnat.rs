//! Issue 19: the vBNG's CGNAT pool changed through the management API while traffic
//! flows through a running worker (its own thread, as in `vbng run`). Subscriber A,
//! up before the change, keeps its outside address both ways and loses nothing (the
//! removed address drains); subscriber B, up after the change, is translated from
//! the new pool; an invalid pool is refused whole with an RFC 8040 error body; the
//! configuration read back validates against the YANG module.
//!
//! Fails (does not skip) without `yanglint` (Debian libyang2-tools).

use dataplane::batch::Batch;
use dataplane::buf::{Pool, PoolCache};
use dataplane::port::mem::{pair, MemPort};
use dataplane::port::Port;
use dataplane::proto::ethernet::Vlans;
use dataplane::worker::{ring, Worker, WorkerConfig};
use pktgen::subscribers::client::{ClientParams, ClientPhase, Subscriber};
use serde_json::Value;
use std::process::Command;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};
use vbng::config::{Config, UserConfig};
use vbng::fsm::Timers;
use vbng::lcp::AuthProto;
use vbng::mgmt::{nat_pool_hook, Mgmt, NatLink};
use vbng::rng::Rng;
use vbng::vnf::{build, update_hook, BuildEnv, Injector};

const YANG_FILE: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/yang/vbng@2026-12-02.yang");
const CORE_MAC: [u8; 6] = [2, 0, 0, 0, 0xc0, 2];
const OLD: [u8; 4] = [203, 0, 113, 1];
const NEW: [u8; 4] = [203, 0, 113, 9];
const SERVER: [u8; 4] = [198, 51, 100, 7];

fn subscriber(user: &str, n: u8) -> Subscriber {
    Subscriber::new(ClientParams {
        mac: [2, 0x5c, 0, 0, 0, n],
        vlans: Vlans {
            svlan: 0,
            cvlan: 7 + u16::from(n),
        },
        user: user.as_bytes().to_vec(),
        password: b"pw".to_vec(),
        accept_auth: [Some(AuthProto::Pap), None],
        service_name: Vec::new(),
        host_uniq: None,
        max_payload: None,
        timers: Timers::default(),
        ipv6cp: false,
        magic: 0x0102_0300 + u32::from(n),
        discovery_tries: 3,
    })
}

fn send(port: &mut MemPort, cache: &mut PoolCache, frames: &[Vec<u8>]) {
    let mut b = Batch::new();
    for f in frames {
        let mut p = cache.alloc().expect("buffer");
        p.copy_from(f).expect("copy");
        if b.push(p).is_err() {
            break;
        }
    }
    port.tx_burst(cache, &mut b);
    b.free_all(cache);
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

/// A UDP datagram from the subscriber to the server, in its PPPoE session.
fn datagram(s: &Subscriber, sport: u16) -> Vec<u8> {
    let mut ip = vec![0u8; 100];
    ip[0] = 0x45;
    ip[2..4].copy_from_slice(&100u16.to_be_bytes());
    ip[8] = 64;
    ip[9] = 17;
    ip[12..16].copy_from_slice(&s.ip.to_be_bytes());
    ip[16..20].copy_from_slice(&SERVER);
    ip[20..22].copy_from_slice(&sport.to_be_bytes());
    ip[22..24].copy_from_slice(&53u16.to_be_bytes());
    ip[24..26].copy_from_slice(&80u16.to_be_bytes());
    let c = dataplane::proto::checksum::internet(&ip[..20]);
    ip[10..12].copy_from_slice(&c.to_be_bytes());
    let mut ppp = vec![0x00, 0x21];
    ppp.extend_from_slice(&ip);
    s.session_frame(&ppp)
}

fn yanglint(kind: &str, data: &str) -> (bool, String) {
    let dir = std::env::temp_dir().join(format!("vbng-cgnat-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("dir");
    let f = dir.join(format!("{kind}.json"));
    std::fs::write(&f, data).expect("write");
    let o = Command::new("yanglint")
        .args(["-t", kind])
        .arg(YANG_FILE)
        .arg(&f)
        .output()
        .expect("yanglint (Debian libyang2-tools; scripts/setup installs it)");
    let _ = std::fs::remove_dir_all(&dir);
    (
        o.status.success(),
        String::from_utf8_lossy(&o.stderr).into_owned(),
    )
}

#[test]
fn cgnat_pool_changes_while_traffic_flows() {
    let mut cfg = Config::from_toml(
        "core_ip = \"198.51.100.2/24\"\ncore_next_hop_mac = \"02:00:00:00:c0:01\"\n\
         [cgnat]\npool = [\"203.0.113.1\"]\nblock_size = 512\n",
    )
    .expect("config");
    cfg.auth = AuthProto::Pap;
    cfg.auth_fallback = None;
    cfg.users = ["alice", "bob"]
        .iter()
        .map(|n| UserConfig {
            name: n.to_string(),
            password: "pw".into(),
            ip: None,
            rate: None,
        })
        .collect();
    let v = build(&cfg, &BuildEnv::new(CORE_MAC, 16, Rng::from_seed([7; 32]))).expect("build");
    let slots = v.nat.as_ref().expect("cgnat").max_subscribers;
    let mut control = v.control;
    let link = NatLink::new();
    let mut m = Mgmt::new(cfg.clone()).with_nat_link(link.clone(), slots);
    let pool = Pool::new(4096).expect("pool");
    let (mut gen, access) = pair("cg-gen", "cg-access", 512).expect("pair");
    let (core, mut sink) = pair("cg-core", "cg-sink", 512).expect("pair");
    let (punt, inject) = (ring(1024), ring(1024));
    let mut w = Worker::new(
        vec![Box::new(access) as Box<dyn Port>, Box::new(core)],
        v.graph,
        pool.cache(),
        WorkerConfig::default(),
    )
    .expect("worker")
    .with_punt(punt.clone())
    .with_inject(inject.clone())
    .on_update(update_hook())
    .on_update(nat_pool_hook(&link));
    // The worker on its own thread, as `vbng run` has it.
    let t0 = Instant::now();
    let stop = Arc::new(AtomicBool::new(false));
    let worker = {
        let stop = stop.clone();
        std::thread::spawn(move || {
            while !stop.load(Ordering::Relaxed) {
                if w.poll(t0.elapsed().as_nanos() as u64) == 0 {
                    std::thread::sleep(Duration::from_micros(50));
                }
            }
        })
    };
    let now = || t0.elapsed().as_millis() as u64;
    let mut cache = pool.cache();
    let mut inj = Injector::new();
    // One control round: frames up, punts to the control plane, its answers back,
    // what came back to the subscribers, what reached the core.
    let mut round = |control: &mut vbng::vnf::Control,
                     subs: &mut [&mut Subscriber],
                     up: &mut Vec<Vec<u8>>,
                     gen: &mut MemPort,
                     sink: &mut MemPort,
                     cache: &mut PoolCache| {
        send(gen, cache, up);
        up.clear();
        std::thread::sleep(Duration::from_micros(300));
        control.drain_punts(&punt, cache, now());
        inj.queue(control.poll(now()));
        inj.flush(&inject, cache);
        std::thread::sleep(Duration::from_micros(300));
        for f in recv(gen, cache) {
            for s in subs.iter_mut() {
                s.input(&f, now(), up);
            }
        }
        recv(sink, cache)
    };
    let mut a = subscriber("alice", 1);
    let mut up = Vec::new();
    a.start(now(), &mut up);
    let t = Instant::now();
    while a.phase != ClientPhase::Up && t.elapsed() < Duration::from_secs(10) {
        round(
            &mut control,
            &mut [&mut a],
            &mut up,
            &mut gen,
            &mut sink,
            &mut cache,
        );
    }
    assert_eq!(a.phase, ClientPhase::Up);

    // Outside sources seen at the core for A's datagrams, per phase.
    let tally = |frames: &[Vec<u8>]| -> Vec<[u8; 4]> {
        frames
            .iter()
            .filter(|f| f.get(12..14) == Some(&[0x08, 0x00]) && f.get(30..34) == Some(&SERVER))
            .map(|f| f[26..30].try_into().unwrap())
            .collect()
    };
    // 1. A's flows before the change: from the old pool.
    let (mut sent, mut got) = (0usize, Vec::new());
    for i in 0..30u16 {
        up.extend((0..8).map(|k| datagram(&a, 40000 + (i * 8 + k) % 16)));
        sent += 8;
        let out = round(
            &mut control,
            &mut [&mut a],
            &mut up,
            &mut gen,
            &mut sink,
            &mut cache,
        );
        got.extend(tally(&out));
    }
    assert_eq!(got.len(), sent, "before the change");
    assert!(got.iter().all(|s| *s == OLD), "{got:?}");

    // 2. An invalid pool is refused whole; nothing changes.
    let bad = m.handle(
        "PUT",
        "/restconf/data/vbng:vbng/cgnat",
        "",
        br#"{"vbng:cgnat":{"pool":["203.0.113.300"]}}"#,
        &mut control.cp,
        now(),
    );
    assert_eq!(bad.status, 400, "{}", bad.body);
    let e: Value = serde_json::from_str(&bad.body).expect("json");
    assert_eq!(
        e["ietf-restconf:errors"]["error"][0]["error-tag"],
        "invalid-value"
    );

    // 3. The pool replaced while A's traffic flows (from another thread's point of
    // view the worker runs on; the change waits for the worker to take it).
    let (mut sent, mut got) = (0usize, Vec::new());
    for i in 0..60u16 {
        if i == 20 {
            let ok = m.handle(
                "PUT",
                "/restconf/data/vbng:vbng/cgnat",
                "",
                br#"{"vbng:cgnat":{"pool":["203.0.113.9"]}}"#,
                &mut control.cp,
                now(),
            );
            assert_eq!(ok.status, 204, "{}", ok.body);
        }
        up.extend((0..8).map(|k| datagram(&a, 40000 + (i * 8 + k) % 16)));
        sent += 8;
        let out = round(
            &mut control,
            &mut [&mut a],
            &mut up,
            &mut gen,
            &mut sink,
            &mut cache,
        );
        got.extend(tally(&out));
    }
    // Drain what is still in flight.
    std::thread::sleep(Duration::from_millis(20));
    got.extend(tally(&recv(&mut sink, &mut cache)));
    assert_eq!(got.len(), sent, "A lost nothing across the change");
    assert!(
        got.iter().all(|s| *s == OLD),
        "A keeps its outside address (it drains): {got:?}"
    );

    // 4. B, new after the change: translated from the new pool; A still from the
    // draining one.
    let mut b = subscriber("bob", 2);
    b.start(now(), &mut up);
    let t = Instant::now();
    while b.phase != ClientPhase::Up && t.elapsed() < Duration::from_secs(10) {
        round(
            &mut control,
            &mut [&mut a, &mut b],
            &mut up,
            &mut gen,
            &mut sink,
            &mut cache,
        );
    }
    assert_eq!(b.phase, ClientPhase::Up);
    let (mut got_a, mut got_b) = (Vec::new(), Vec::new());
    for i in 0..20u16 {
        up.push(datagram(&a, 40000 + i % 16));
        up.push(datagram(&b, 41000 + i % 16));
        let out = round(
            &mut control,
            &mut [&mut a, &mut b],
            &mut up,
            &mut gen,
            &mut sink,
            &mut cache,
        );
        for f in out.iter().filter(|f| f.get(12..14) == Some(&[0x08, 0x00])) {
            let src: [u8; 4] = f[26..30].try_into().unwrap();
            let sport = u16::from_be_bytes([f[34], f[35]]);
            if src == OLD {
                got_a.push(sport);
            } else {
                got_b.push(src);
            }
        }
    }
    assert_eq!(got_a.len(), 20, "A still from the draining address");
    assert_eq!(got_b.len(), 20);
    assert!(
        got_b.iter().all(|s| *s == NEW),
        "B from the new pool: {got_b:?}"
    );

    // 5. The configuration read back has the new pool and validates.
    let conf = m.handle(
        "GET",
        "/restconf/data/vbng:vbng",
        "content=config",
        b"",
        &mut control.cp,
        now(),
    );
    let v: Value = serde_json::from_str(&conf.body).expect("json");
    assert_eq!(v["vbng:vbng"]["cgnat"]["pool"][0], "203.0.113.9", "{v}");
    let (ok, err) = yanglint("config", &conf.body);
    assert!(ok, "{err}\n{}", conf.body);

    // 6. The state lists the old address as draining, with A's port block, and
    // validates against the module.
    let all = m.handle(
        "GET",
        "/restconf/data/vbng:vbng",
        "",
        b"",
        &mut control.cp,
        now(),
    );
    assert_eq!(all.status, 200, "{}", all.body);
    let v: Value = serde_json::from_str(&all.body).expect("json");
    let c = &v["vbng:vbng"]["state"]["cgnat"];
    let draining = c["draining-address"].as_array().expect("draining-address");
    assert_eq!(draining.len(), 1, "{c}");
    assert_eq!(draining[0]["address"], "203.0.113.1", "{c}");
    assert!(draining[0]["port-blocks"].as_u64() >= Some(1), "{c}");
    assert_eq!(
        c["pool-addresses"], 2,
        "the new address and the draining one: {c}"
    );
    let (ok, err) = yanglint("data", &all.body);
    assert!(ok, "{err}\n{}", all.body);

    stop.store(true, Ordering::Relaxed);
    worker.join().expect("worker");
}
