//! Issue 19: the vCPE's management API. The YANG module passes `yanglint` (strict)
//! and `pyang`; what `GET` returns (config and state) validates against it with
//! `yanglint`; a route and a firewall rule change while traffic flows through a
//! running worker — the change takes effect, the other traffic loses nothing — and
//! invalid changes are refused whole with an RFC 8040 error body; the `vcpe`
//! binary serves the API and `vcpe api` is its client. The tunnel state never
//! carries a key.
//!
//! Fails (does not skip) without `yanglint` (Debian libyang2-tools).

use dataplane::batch::Batch;
use dataplane::buf::{Pool, PoolCache};
use dataplane::port::mem::{self, MemPort};
use dataplane::port::Port;
use dataplane::runner::{Runner, WorkerSpec};
use serde_json::Value;
use std::process::{Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use vcpe::mgmt::{update_hook, Mgmt, WorkerLink, YANG};
use vcpe::vnf;
use vcpe::Config;

const YANG_FILE: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/yang/vcpe@2026-12-02.yang");
const EXAMPLE: &str = include_str!("../examples/vcpe-a.toml");
const ROUTE: &str = "\n[[route]]\nprefix = \"10.50.0.0/16\"\nvia = \"198.51.100.9\"\n";

const LAN_MAC: [u8; 6] = [0x02, 0xc9, 0, 0, 0x0a, 0x01];
const H1: [u8; 6] = [0x02, 0, 0, 0, 1, 0x10];
const GW: [u8; 6] = [0x02, 0, 0, 0, 0, 0xfe];
const R1: [u8; 6] = [0x02, 0, 0, 0, 0, 0x09];
const R2: [u8; 6] = [0x02, 0, 0, 0, 0, 0x08];
/// Via the default gateway: never touched by the changes.
const X: [u8; 4] = [203, 0, 113, 5];
/// Via the static route, whose next hop changes.
const Y: [u8; 4] = [10, 50, 0, 1];
/// Via the default gateway, then denied by a new rule.
const Z: [u8; 4] = [203, 0, 113, 77];

fn config(ports: (&str, &str)) -> Config {
    let text = EXAMPLE
        .replace("afpacket:lan0", &format!("mem:{}", ports.0))
        .replace("afpacket:wan0", &format!("mem:{}", ports.1));
    Config::from_toml(&format!("{text}{ROUTE}")).expect("config")
}

fn json_of(body: &str) -> Value {
    serde_json::from_str(body).unwrap_or_else(|e| panic!("{e}: {body}"))
}

fn yanglint(kind: &str, data: &str) -> (bool, String) {
    let dir = std::env::temp_dir().join(format!("vcpe-mgmt-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("dir");
    let f = dir.join(format!("{kind}-{}.json", data.len()));
    std::fs::write(&f, data).expect("write");
    let o = Command::new("yanglint")
        .args(["-t", kind])
        .arg(YANG_FILE)
        .arg(&f)
        .output()
        .expect("yanglint (Debian libyang2-tools; scripts/setup installs it)");
    let _ = std::fs::remove_file(&f);
    (
        o.status.success(),
        String::from_utf8_lossy(&o.stderr).into_owned(),
    )
}

fn error_tag(body: &str) -> String {
    json_of(body)["ietf-restconf:errors"]["error"][0]["error-tag"]
        .as_str()
        .unwrap_or("")
        .to_string()
}

#[test]
fn the_module_passes_yanglint_and_pyang() {
    let o = Command::new("yanglint")
        .arg(YANG_FILE)
        .output()
        .expect("yanglint (Debian libyang2-tools)");
    assert!(
        o.status.success() && o.stderr.is_empty(),
        "{}",
        String::from_utf8_lossy(&o.stderr)
    );
    let pyang = concat!(env!("CARGO_MANIFEST_DIR"), "/../../.venv/bin/pyang");
    if std::path::Path::new(pyang).exists() {
        let o = Command::new(pyang).arg(YANG_FILE).output().expect("pyang");
        assert!(
            o.status.success() && o.stderr.is_empty(),
            "{}",
            String::from_utf8_lossy(&o.stderr)
        );
    } else {
        eprintln!("skipping pyang: {pyang} absent (scripts/setup makes it)");
    }
    assert!(YANG.contains("module vcpe"));
}

/// An IPv4/UDP frame from the LAN host to `dst`.
fn frame(dst: [u8; 4], sport: u16) -> Vec<u8> {
    let mut f = vec![0u8; 60];
    f[0..6].copy_from_slice(&LAN_MAC);
    f[6..12].copy_from_slice(&H1);
    f[12] = 0x08;
    f[14] = 0x45;
    f[16..18].copy_from_slice(&46u16.to_be_bytes());
    f[22] = 64;
    f[23] = 17;
    f[26..30].copy_from_slice(&[192, 168, 1, 10]);
    f[30..34].copy_from_slice(&dst);
    f[34..36].copy_from_slice(&sport.to_be_bytes());
    f[36..38].copy_from_slice(&53u16.to_be_bytes());
    f[38..40].copy_from_slice(&26u16.to_be_bytes());
    let c = dataplane::proto::checksum::internet(&f[14..34]);
    f[24..26].copy_from_slice(&c.to_be_bytes());
    f
}

/// Frames sent to and received for X, Y (by next-hop MAC) and Z.
#[derive(Default, Debug, Clone, Copy)]
struct Tally {
    sent: [u64; 3],
    got_x: u64,
    got_y_r1: u64,
    got_y_r2: u64,
    got_z: u64,
}

const DSTS: [[u8; 4]; 3] = [X, Y, Z];

fn round(gen: &mut MemPort, sink: &mut MemPort, c: &mut PoolCache, t: &mut Tally, send: bool) {
    if send {
        let mut b = Batch::new();
        for i in 0..15usize {
            let mut p = c.alloc().expect("buffer");
            // One flow per destination (the firewall and NAT keep its state).
            p.copy_from(&frame(DSTS[i % 3], 40000 + (i % 3) as u16))
                .expect("copy");
            b.push(p).expect("push");
        }
        let n = gen.tx_burst(c, &mut b);
        for i in 0..n {
            t.sent[i % 3] += 1;
        }
        b.free_all(c);
    }
    let mut rb = Batch::new();
    sink.rx_burst(c, &mut rb);
    for p in rb.iter() {
        let d = p.data();
        let dst: [u8; 4] = d[30..34].try_into().unwrap();
        let mac: [u8; 6] = d[0..6].try_into().unwrap();
        match dst {
            X => {
                assert_eq!(mac, GW);
                t.got_x += 1
            }
            Y if mac == R1 => t.got_y_r1 += 1,
            Y if mac == R2 => t.got_y_r2 += 1,
            Z => t.got_z += 1,
            _ => panic!("unexpected frame to {dst:?} via {mac:?}"),
        }
    }
    rb.free_all(c);
}

/// Sends for `ms` milliseconds, then drains for 150 ms.
fn flow(gen: &mut MemPort, sink: &mut MemPort, c: &mut PoolCache, t: &mut Tally, ms: u64) {
    let t0 = Instant::now();
    flow_while(gen, sink, c, t, || t0.elapsed() < Duration::from_millis(ms));
}

/// Sends while `busy` says so, then drains for 150 ms.
fn flow_while(
    gen: &mut MemPort,
    sink: &mut MemPort,
    c: &mut PoolCache,
    t: &mut Tally,
    busy: impl Fn() -> bool,
) {
    while busy() {
        round(gen, sink, c, t, true);
        std::thread::sleep(Duration::from_micros(300));
    }
    let q = Instant::now();
    while q.elapsed() < Duration::from_millis(150) {
        round(gen, sink, c, t, false);
        std::thread::yield_now();
    }
}

fn node_drops(snaps: &[dataplane::runner::WorkerSnapshot], node: &str) -> u64 {
    snaps
        .iter()
        .flat_map(|s| s.nodes.iter())
        .filter(|n| n.name == node)
        .map(|n| n.drops.iter().sum::<u64>())
        .sum()
}

fn learn(m: &Mgmt, ip: [u8; 4], mac: [u8; 6]) {
    m.l3()
        .neigh
        .learn(dataplane::stages::neigh::key_v4(ip.into()), mac, 1);
}

#[test]
fn route_and_firewall_rule_change_while_traffic_flows() {
    let cfg = config(("t-lan", "t-wan"));
    let built = vnf::build(&cfg).expect("build");
    let pool = Pool::new(8192).expect("pool");
    let (mut gen, lan) = mem::pair("gen", "lan", 1024).expect("pair");
    let (wan, mut sink) = mem::pair("wan", "sink", 1024).expect("pair");
    let link = WorkerLink::new();
    let mut spec = WorkerSpec::new(
        vec![Box::new(lan) as Box<dyn Port>, Box::new(wan)],
        built.graph,
        pool.cache(),
    );
    spec.hooks.push(ipsec::stage::update_hook());
    spec.hooks.push(update_hook(&link));
    let runner = Runner::start(vec![spec]).expect("runner");
    let mgmt = Arc::new(Mutex::new(Mgmt::new(
        &built.vcpe,
        vec![link],
        Some(built.control.stats.clone()),
        None,
    )));
    {
        let m = mgmt.lock().unwrap();
        learn(&m, [198, 51, 100, 1], GW);
        learn(&m, [198, 51, 100, 9], R1);
        // A neighbour learned before the change: the new route must not wait for ARP.
        learn(&m, [198, 51, 100, 8], R2);
    }
    let call = |method: &str, path: &str, body: &str| {
        let snaps = runner.snapshots();
        let (path, query) = path.split_once('?').unwrap_or((path, ""));
        mgmt.lock()
            .unwrap()
            .handle(method, path, query, body.as_bytes(), &snaps)
    };
    let mut c = pool.cache();

    // 1. Before: everything passes, Y via R1.
    let mut t = Tally::default();
    flow(&mut gen, &mut sink, &mut c, &mut t, 250);
    assert!(t.sent[0] > 300, "{t:?}");
    assert_eq!(t.got_x, t.sent[0], "{t:?}");
    assert_eq!((t.got_y_r1, t.got_y_r2), (t.sent[1], 0), "{t:?}");
    assert_eq!(t.got_z, t.sent[2], "{t:?}");

    // 2. The route's next hop and a deny rule for Z, changed from another thread
    // while the traffic flows.
    let m2 = mgmt.clone();
    let changer = std::thread::spawn(move || {
        std::thread::sleep(Duration::from_millis(100));
        let a = m2.lock().unwrap().handle(
            "PUT",
            "/restconf/data/vcpe:vcpe/route=10.50.0.0%2F16",
            "",
            br#"{"vcpe:route":[{"prefix":"10.50.0.0/16","next-hop":"198.51.100.8"}]}"#,
            &[],
        );
        assert_eq!(a.status, 204, "{}", a.body);
        std::thread::sleep(Duration::from_millis(100));
        let a = m2.lock().unwrap().handle(
            "POST",
            "/restconf/data/vcpe:vcpe/firewall/rule=no-z",
            "",
            br#"{"vcpe:rule":[{"name":"no-z","action":"deny","from":"lan","destination":"203.0.113.77/32","protocol":"udp"}]}"#,
            &[],
        );
        assert_eq!(a.status, 201, "{}", a.body);
    });
    let mut d = Tally::default();
    // Traffic before, during and 100 ms after both changes.
    let t1 = Instant::now();
    flow_while(&mut gen, &mut sink, &mut c, &mut d, || {
        !changer.is_finished() || t1.elapsed() < Duration::from_millis(300)
    });
    let t2 = Instant::now();
    flow_while(&mut gen, &mut sink, &mut c, &mut d, || {
        t2.elapsed() < Duration::from_millis(100)
    });
    changer.join().expect("changer");
    assert_eq!(d.got_x, d.sent[0], "the other traffic lost nothing: {d:?}");
    assert_eq!(
        d.got_y_r1 + d.got_y_r2,
        d.sent[1],
        "the rerouted traffic lost nothing: {d:?}"
    );
    assert!(d.got_y_r1 > 0 && d.got_y_r2 > 0, "{d:?}");
    assert!(d.got_z > 0 && d.got_z < d.sent[2], "{d:?}");

    // 3. After: Y only via R2, Z denied (its tracked connection ended), X intact.
    let fw_before = node_drops(&runner.snapshots(), "firewall");
    let mut a = Tally::default();
    flow(&mut gen, &mut sink, &mut c, &mut a, 200);
    assert!(a.sent[0] > 200, "{a:?}");
    assert_eq!(a.got_x, a.sent[0], "{a:?}");
    assert_eq!((a.got_y_r1, a.got_y_r2), (0, a.sent[1]), "{a:?}");
    assert_eq!(a.got_z, 0, "{a:?}");
    assert_eq!(
        node_drops(&runner.snapshots(), "firewall") - fw_before,
        a.sent[2],
        "every frame to Z is a counted firewall drop"
    );

    // 4. Invalid changes are refused whole while traffic flows: a good route with a
    // bad rule, a route off every subnet, a NAT change (not at run time).
    let cfg_before = json_of(&call("GET", "/restconf/data/vcpe:vcpe?content=config", "").body);
    assert_eq!(
        cfg_before["vcpe:vcpe"]["route"][0]["next-hop"], "198.51.100.8",
        "{cfg_before}"
    );
    let bad = call(
        "PATCH",
        "/restconf/data/vcpe:vcpe",
        r#"{"vcpe:vcpe":{"route":[{"prefix":"10.60.0.0/16","next-hop":"198.51.100.9"}],
            "firewall":{"rule":[{"name":"bad","action":"deny","destination":"300.1.1.1"}]}}}"#,
    );
    assert_eq!(bad.status, 400, "{}", bad.body);
    assert_eq!(error_tag(&bad.body), "invalid-value");
    assert!(bad.body.contains("firewall rule bad"), "{}", bad.body);
    let off = call(
        "POST",
        "/restconf/data/vcpe:vcpe/route=172.16.0.0%2F12",
        r#"{"vcpe:route":[{"prefix":"172.16.0.0/12","next-hop":"10.99.0.1"}]}"#,
    );
    assert_eq!(off.status, 400, "{}", off.body);
    assert!(off.body.contains("172.16.0.0/12"), "{}", off.body);
    let nat = call(
        "PATCH",
        "/restconf/data/vcpe:vcpe/nat",
        r#"{"vcpe:nat":{"max-sessions":1024}}"#,
    );
    assert_eq!(nat.status, 501, "{}", nat.body);
    assert_eq!(error_tag(&nat.body), "operation-not-supported");
    let unknown = call(
        "PATCH",
        "/restconf/data/vcpe:vcpe/firewall/rule=no-z",
        r#"{"vcpe:rule":[{"name":"no-z","colour":"blue"}]}"#,
    );
    assert_eq!(unknown.status, 400, "{}", unknown.body);
    assert_eq!(
        json_of(&call("GET", "/restconf/data/vcpe:vcpe?content=config", "").body),
        cfg_before,
        "nothing of the refused changes was applied"
    );
    let mut r = Tally::default();
    flow(&mut gen, &mut sink, &mut c, &mut r, 150);
    assert_eq!(r.got_x, r.sent[0], "{r:?}");
    assert_eq!(
        (r.got_y_r1, r.got_y_r2, r.got_z),
        (0, r.sent[1], 0),
        "{r:?}"
    );

    // 5. The state: the rule's counters, the connection it ended, the tunnel's SAs
    // without keys; config and state validate against the module.
    let all = call("GET", "/restconf/data/vcpe:vcpe", "");
    assert_eq!(all.status, 200);
    let v = json_of(&all.body);
    let st = &v["vcpe:vcpe"]["state"];
    assert_eq!(st["firewall"]["ended-by-rule-change"], "1", "{st}");
    assert_eq!(st["firewall"]["rule"][0]["name"], "no-z", "{st}");
    assert_eq!(
        st["firewall"]["rule"][0]["packets"],
        (d.sent[2] - d.got_z + a.sent[2] + r.sent[2]).to_string(),
        "every frame to Z after the change matched the rule: {st}"
    );
    assert_eq!(st["tunnel"][0]["name"], "site-b");
    assert_eq!(st["tunnel"][0]["up"], true, "{st}");
    assert_eq!(st["tunnel"][0]["sa"].as_array().map(Vec::len), Some(2));
    assert!(
        !all.body.contains("0123456789abcdef") && !all.body.contains("fedcba98"),
        "no key in the answer"
    );
    assert_eq!(st["interface"][0]["name"], "lan");
    let (ok, err) = yanglint("data", &all.body);
    assert!(ok, "{err}\n{}", all.body);
    let conf = call("GET", "/restconf/data/vcpe:vcpe?content=config", "");
    let (ok, err) = yanglint("config", &conf.body);
    assert!(ok, "{err}\n{}", conf.body);
    // A broken copy does not validate (the check can fail).
    let mut broken = json_of(&conf.body);
    broken["vcpe:vcpe"]["route"][0]["next-hop"] = Value::String("not-an-address".into());
    assert!(!yanglint("config", &broken.to_string()).0);

    // 6. Deleting the rule lets Z through again (a new connection).
    let del = call("DELETE", "/restconf/data/vcpe:vcpe/firewall/rule=no-z", "");
    assert_eq!(del.status, 204, "{}", del.body);
    let mut e = Tally::default();
    flow(&mut gen, &mut sink, &mut c, &mut e, 150);
    assert_eq!(e.got_z, e.sent[2], "{e:?}");
    assert_eq!(e.got_x, e.sent[0], "{e:?}");

    let fin = runner.stop();
    let unsent: u64 = fin.iter().map(|s| s.tx_unsent + s.out.tx_full).sum();
    assert_eq!(unsent, 0);
}

#[test]
fn vcpe_binary_serves_the_api() {
    let dir = std::env::temp_dir().join(format!("vcpe-mgmt-bin-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("dir");
    let port = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").expect("port");
        l.local_addr().expect("addr").port()
    };
    let cfg_path = dir.join("vcpe.toml");
    let text = EXAMPLE
        .replace("afpacket:lan0", "mem:api-lan")
        .replace("afpacket:wan0", "mem:api-wan");
    std::fs::write(&cfg_path, format!("{text}{ROUTE}")).expect("config");
    let addr = format!("127.0.0.1:{port}");
    let mut child = Command::new(env!("CARGO_BIN_EXE_vcpe"))
        .arg("run")
        .arg(&cfg_path)
        .args(["--listen", &addr, "--seconds", "30"])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("vcpe");
    let api = |args: &[&str]| {
        Command::new(env!("CARGO_BIN_EXE_vcpe"))
            .arg("api")
            .args(args)
            .args(["--connect", &addr])
            .output()
            .expect("vcpe api")
    };
    let t = Instant::now();
    let mut got = api(&["GET", "/vcpe:vcpe/state"]);
    while !got.status.success() && t.elapsed() < Duration::from_secs(15) {
        std::thread::sleep(Duration::from_millis(100));
        got = api(&["GET", "/vcpe:vcpe/state"]);
    }
    assert!(
        got.status.success(),
        "{}",
        String::from_utf8_lossy(&got.stderr)
    );
    let v: Value = serde_json::from_slice(&got.stdout).expect("json");
    assert_eq!(v["vcpe:state"]["interface"][1]["name"], "wan");
    assert_eq!(v["vcpe:state"]["tunnel"][0]["up"], true, "{v}");
    let p = api(&[
        "POST",
        "/vcpe:vcpe/firewall/rule=no-dns",
        "-d",
        r#"{"vcpe:rule":[{"name":"no-dns","action":"deny","protocol":"udp","destination-port":"53"}]}"#,
    ]);
    assert!(p.status.success(), "{}", String::from_utf8_lossy(&p.stderr));
    let g = api(&["GET", "/vcpe:vcpe/firewall/rule=no-dns"]);
    assert!(
        String::from_utf8_lossy(&g.stdout).contains("\"destination-port\":\"53\""),
        "{}",
        String::from_utf8_lossy(&g.stdout)
    );
    // A refusal: exit 1, one line with the server's error-message.
    let bad = api(&[
        "POST",
        "/vcpe:vcpe/route=172.16.0.0%2F12",
        "-d",
        r#"{"vcpe:route":[{"prefix":"172.16.0.0/12","next-hop":"10.99.0.1"}]}"#,
    ]);
    let err = String::from_utf8_lossy(&bad.stderr).to_string();
    assert_eq!(bad.status.code(), Some(1), "{err}");
    assert_eq!(err.trim().lines().count(), 1, "{err}");
    assert!(
        err.contains("HTTP 400") && err.contains("172.16.0.0/12"),
        "{err}"
    );
    let _ = child.kill();
    let _ = child.wait();
    let _ = std::fs::remove_dir_all(&dir);
}
