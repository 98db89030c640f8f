//! Issue 19: the NAT44 pool changed through the management API while traffic flows
//! through a running worker. Subscriber A's flows, bound before the change, keep
//! their outside address and port both ways (the removed address drains) and lose
//! nothing; subscriber B, new after the change, is translated from the new pool; the
//! state reports the draining address and validates against the YANG module; an
//! invalid pool is refused whole while traffic flows on.
//!
//! Fails (does not skip) without `yanglint` (Debian libyang2-tools).

use dataplane::batch::Batch;
use dataplane::buf::{Pool, PoolCache};
use dataplane::port::mem::{self, MemPort};
use dataplane::port::Port;
use dataplane::runner::{Runner, WorkerSpec};
use serde_json::Value;
use std::collections::HashMap;
use std::process::Command;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use vnf_router::mgmt::{update_hook, Mgmt, WorkerLink};
use vnf_router::{Config, Router};

const YANG_FILE: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/yang/router@2026-12-02.yang");

const CFG: &str = r#"
[[interface]]
name = "access"
port = "mem:a"
mac = "02:00:00:00:00:01"
ipv4 = ["10.0.0.1/24"]

[[interface]]
name = "core"
port = "mem:c"
mac = "02:00:00:00:00:02"
ipv4 = ["192.0.2.1/24"]

[[route]]
prefix = "198.18.0.0/15"
via = "192.0.2.2"

[[neighbor]]
ip = "192.0.2.2"
mac = "02:00:00:00:00:99"

[[neighbor]]
ip = "10.0.0.10"
mac = "02:00:00:00:00:10"

[[neighbor]]
ip = "10.0.0.11"
mac = "02:00:00:00:00:11"

[nat]
inside_ports = [0]
pool = ["192.0.2.100/30"]
max_sessions = 4096
max_subscribers = 64
"#;

const A: [u8; 4] = [10, 0, 0, 10];
const B: [u8; 4] = [10, 0, 0, 11];
const REMOTE: [u8; 4] = [198, 18, 0, 1];
const FLOWS: u16 = 8;

/// An IPv4/UDP frame to the router's `mac`.
fn frame(mac: [u8; 6], src: [u8; 4], sport: u16, dst: [u8; 4], dport: u16) -> Vec<u8> {
    let mut f = vec![0u8; 60];
    f[0..6].copy_from_slice(&mac);
    f[6..12].copy_from_slice(&[2, 0, 0, 0, 0, 0x10]);
    f[12] = 0x08;
    f[14] = 0x45;
    f[16..18].copy_from_slice(&46u16.to_be_bytes());
    f[22] = 64;
    f[23] = 17;
    f[26..30].copy_from_slice(&src);
    f[30..34].copy_from_slice(&dst);
    f[34..36].copy_from_slice(&sport.to_be_bytes());
    f[36..38].copy_from_slice(&dport.to_be_bytes());
    f[38..40].copy_from_slice(&26u16.to_be_bytes());
    let c = dataplane::proto::checksum::internet(&f[14..34]);
    f[24..26].copy_from_slice(&c.to_be_bytes());
    f
}

fn send(port: &mut MemPort, c: &mut PoolCache, frames: &[Vec<u8>]) -> usize {
    let mut b = Batch::new();
    for f in frames {
        let mut p = c.alloc().expect("buffer");
        p.copy_from(f).expect("copy");
        b.push(p).expect("push");
    }
    let n = port.tx_burst(c, &mut b);
    b.free_all(c);
    n
}

/// Received frames as (source, sport, destination, dport).
fn recv(port: &mut MemPort, c: &mut PoolCache) -> Vec<([u8; 4], u16, [u8; 4], u16)> {
    let mut rb = Batch::new();
    port.rx_burst(c, &mut rb);
    let v = rb
        .iter()
        .map(|p| {
            let d = p.data();
            (
                d[26..30].try_into().unwrap(),
                u16::from_be_bytes([d[34], d[35]]),
                d[30..34].try_into().unwrap(),
                u16::from_be_bytes([d[36], d[37]]),
            )
        })
        .collect();
    rb.free_all(c);
    v
}

#[derive(Default, Debug)]
struct Tally {
    sent: u64,
    got: u64,
    /// Outside address per outside port (a rebinding moves a flow to another
    /// address or port: a changed entry or a new one).
    binding: HashMap<u16, [u8; 4]>,
    rebound: u64,
}

/// One burst of `src`'s flows out and what arrived at the core.
fn round(
    access: &mut MemPort,
    core: &mut MemPort,
    c: &mut PoolCache,
    t: &mut Tally,
    src: [u8; 4],
    send_now: bool,
) {
    if send_now {
        let frames: Vec<Vec<u8>> = (0..FLOWS)
            .map(|i| frame([2, 0, 0, 0, 0, 1], src, 4000 + i, REMOTE, 53))
            .collect();
        t.sent += send(access, c, &frames) as u64;
    }
    for (s, sp, d, _) in recv(core, c) {
        assert_eq!(d, REMOTE);
        t.got += 1;
        let e = t.binding.entry(sp).or_insert(s);
        if *e != s {
            t.rebound += 1;
        }
    }
}

fn flow_for(
    access: &mut MemPort,
    core: &mut MemPort,
    c: &mut PoolCache,
    t: &mut Tally,
    src: [u8; 4],
    d: Duration,
) {
    let t0 = Instant::now();
    while t0.elapsed() < d {
        round(access, core, c, t, src, true);
        std::thread::sleep(Duration::from_micros(300));
    }
    let q = Instant::now();
    while q.elapsed() < Duration::from_millis(150) {
        round(access, core, c, t, src, false);
        std::thread::yield_now();
    }
}

fn in_pool(a: [u8; 4], base: u8) -> bool {
    a[..3] == [192, 0, 2] && (base..base + 4).contains(&a[3])
}

#[test]
fn nat_pool_changes_while_traffic_flows() {
    let cfg = Config::from_toml(CFG).expect("config");
    let r = Router::build(&cfg, &[], None).expect("router");
    let pool = Pool::new(8192).expect("pool");
    let (mut access, a) = mem::pair("natpool-gen", "natpool-access", 1024).expect("pair");
    let (cport, mut core) = mem::pair("natpool-core", "natpool-sink", 1024).expect("pair");
    let link = WorkerLink::new();
    let mut spec = WorkerSpec::new(
        vec![Box::new(a) as Box<dyn Port>, Box::new(cport)],
        r.pipeline(),
        pool.cache(),
    );
    spec.hooks.push(update_hook(&link));
    let runner = Runner::start(vec![spec]).expect("runner");
    let mgmt = Arc::new(Mutex::new(Mgmt::new(&r, None, vec![link])));
    let mut c = pool.cache();

    // 1. Subscriber A bound from the old pool.
    let mut ta = Tally::default();
    flow_for(
        &mut access,
        &mut core,
        &mut c,
        &mut ta,
        A,
        Duration::from_millis(200),
    );
    assert!(ta.sent > 200, "{ta:?}");
    assert_eq!(ta.got, ta.sent, "{ta:?}");
    assert_eq!(ta.binding.len(), usize::from(FLOWS), "{ta:?}");
    let old_addr = *ta.binding.values().next().unwrap();
    assert!(ta.binding.values().all(|s| *s == old_addr));
    assert!(in_pool(old_addr, 100), "{old_addr:?}");

    // 2. The pool replaced from another thread while A's traffic flows.
    let m2 = mgmt.clone();
    let changer = std::thread::spawn(move || {
        std::thread::sleep(Duration::from_millis(80));
        let a = m2.lock().unwrap().handle(
            "PUT",
            "/restconf/data/router:router/nat",
            "",
            br#"{"router:nat":{"pool":["192.0.2.200/30"]}}"#,
            &[],
        );
        assert_eq!(a.status, 204, "{}", a.body);
    });
    flow_for(
        &mut access,
        &mut core,
        &mut c,
        &mut ta,
        A,
        Duration::from_millis(300),
    );
    changer.join().expect("change");
    assert_eq!(ta.got, ta.sent, "A lost nothing across the change: {ta:?}");
    assert_eq!(ta.rebound, 0, "A's bindings kept: {ta:?}");
    assert_eq!(ta.binding.len(), usize::from(FLOWS), "{ta:?}");

    // 3. Subscriber B, new: from the new pool.
    let mut tb = Tally::default();
    flow_for(
        &mut access,
        &mut core,
        &mut c,
        &mut tb,
        B,
        Duration::from_millis(150),
    );
    assert_eq!(tb.got, tb.sent, "{tb:?}");
    let b_addr = *tb.binding.values().next().unwrap();
    assert!(in_pool(b_addr, 200), "B from the new pool: {b_addr:?}");
    assert!(tb.binding.values().all(|s| *s == b_addr));

    // 4. Replies to A's old binding still reach A (the address drains), to B's too.
    let (&a_port, &a_ext) = ta.binding.iter().next().unwrap();
    let (&b_port, &b_ext) = tb.binding.iter().next().unwrap();
    let replies = [
        frame([2, 0, 0, 0, 0, 2], REMOTE, 53, a_ext, a_port),
        frame([2, 0, 0, 0, 0, 2], REMOTE, 53, b_ext, b_port),
    ];
    assert_eq!(send(&mut core, &mut c, &replies), 2);
    let mut back = Vec::new();
    let t0 = Instant::now();
    while back.len() < 2 && t0.elapsed() < Duration::from_secs(2) {
        back.extend(recv(&mut access, &mut c));
        std::thread::yield_now();
    }
    back.sort();
    assert_eq!(back.len(), 2, "{back:?}");
    for ((s, sp, d, dp), host) in back.iter().zip([A, B]) {
        assert_eq!((*s, *sp, *d), (REMOTE, 53, host), "{back:?}");
        assert!((4000..4000 + FLOWS).contains(dp), "{back:?}");
    }

    // 5. An invalid pool while traffic flows: refused whole, A goes on unchanged.
    let m3 = mgmt.clone();
    let changer = std::thread::spawn(move || {
        std::thread::sleep(Duration::from_millis(50));
        let a = m3.lock().unwrap().handle(
            "PATCH",
            "/restconf/data/router:router",
            "",
            br#"{"router:router":{"nat":{"pool":["192.0.2.1-192.0.2.0"]},"route":[{"prefix":"203.0.113.0/24","drop":[null]}]}}"#,
            &[],
        );
        assert_eq!(a.status, 400, "{}", a.body);
        let e: Value = serde_json::from_str(&a.body).expect("json");
        assert_eq!(
            e["ietf-restconf:errors"]["error"][0]["error-tag"],
            "invalid-value"
        );
    });
    flow_for(
        &mut access,
        &mut core,
        &mut c,
        &mut ta,
        A,
        Duration::from_millis(200),
    );
    changer.join().expect("refusal");
    assert_eq!(ta.got, ta.sent, "{ta:?}");
    assert_eq!(ta.rebound, 0, "{ta:?}");
    {
        let m = mgmt.lock().unwrap();
        assert_eq!(m.config().nat.as_ref().unwrap().pool, ["192.0.2.200/30"]);
        assert_eq!(
            m.config().routes.len(),
            1,
            "the route of the refused change"
        );
    }

    let fin = runner.stop();
    let unsent: u64 = fin.iter().map(|s| s.tx_unsent + s.out.tx_full).sum();
    assert_eq!(unsent, 0);
    // The state: one address draining (A still holds its block), the sessions.
    let a = mgmt
        .lock()
        .unwrap()
        .handle("GET", "/restconf/data/router:router/state", "", b"", &fin);
    let v: Value = serde_json::from_str(&a.body).expect("json");
    let nat = &v["router:state"]["nat"];
    assert_eq!(nat["draining-addresses"], 1, "{v}");
    assert_eq!(nat["sessions"], (2 * FLOWS).to_string(), "{v}");
    let whole = mgmt
        .lock()
        .unwrap()
        .handle("GET", "/restconf/data/router:router", "", b"", &fin);
    let dir = std::env::temp_dir().join(format!("router-natpool-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("dir");
    let f = dir.join("data.json");
    std::fs::write(&f, &whole.body).expect("write");
    let o = Command::new("yanglint")
        .args(["-t", "data"])
        .arg(YANG_FILE)
        .arg(&f)
        .output()
        .expect("yanglint (Debian libyang2-tools; scripts/setup installs it)");
    assert!(
        o.status.success(),
        "{}\n{}",
        String::from_utf8_lossy(&o.stderr),
        whole.body
    );
    let _ = std::fs::remove_dir_all(&dir);
}
