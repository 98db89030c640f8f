//! The router's management API (issue 19, `vnf_router::mgmt`): the YANG module
//! passes `yanglint` (libyang, strict) and `pyang`; what `GET` returns validates
//! against it with `yanglint -t data` (and a broken copy does not); routes and the
//! policer's meter change, an invalid change is refused whole with an RFC 8040 §7.1
//! body, the NAT pool changes (NAT itself cannot be removed); while traffic flows through a running worker, a
//! route added takes effect at once over a learned neighbour, traffic on the other
//! route loses nothing, and a policer change polices at once; the `router` binary
//! serves the API to `router api`.
//!
//! Fails (does not skip) without `yanglint` (Debian libyang2-tools).

use dataplane::batch::Batch;
use dataplane::buf::{Pool, PoolCache};
use dataplane::port::mem::{self, MemPort};
use dataplane::port::Port;
use dataplane::runner::{Runner, WorkerSpec};
use serde_json::{json, Value};
use std::process::{Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use vnf_router::mgmt::{update_hook, Answer, Mgmt, WorkerLink, YANG};
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
ipv6 = ["2001:db8::1/64"]

[[route]]
prefix = "198.18.0.0/15"
via = "192.0.2.2"

[[route]]
prefix = "198.51.100.0/24"
drop = true

[[neighbor]]
ip = "192.0.2.2"
mac = "02:00:00:00:00:99"

[qos.policer]
meter = { type = "srtcm", cir_bps = 10000000000, cbs = 1000000, ebs = 1000000 }
"#;

const NAT: &str = r#"
[nat]
inside_ports = [0]
pool = ["192.0.2.100/30"]
"#;

fn router(extra: &str) -> Router {
    let cfg = Config::from_toml(&format!("{CFG}{extra}")).expect("config");
    Router::build(&cfg, &[], None).expect("router")
}

fn call(m: &mut Mgmt, method: &str, path: &str, body: &str) -> Answer {
    m.handle(method, path, "", body.as_bytes(), &[])
}

fn json_of(a: &Answer) -> Value {
    serde_json::from_str(&a.body).unwrap_or_else(|e| panic!("{e}: {}", a.body))
}

fn yanglint(kind: &str, data: &str) -> (bool, String) {
    let dir = std::env::temp_dir().join(format!("router-mgmt-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("dir");
    let f = dir.join(format!("{kind}.json"));
    std::fs::write(&f, data).expect("write");
    let o = Command::new("yanglint")
        .args(["-t", kind])
        .arg(YANG_FILE)
        .arg(&f)
        .output()
        .expect("yanglint (Debian libyang2-tools; scripts/setup installs it)");
    (
        o.status.success(),
        String::from_utf8_lossy(&o.stderr).into_owned(),
    )
}

#[test]
fn the_module_passes_yanglint_and_pyang() {
    let o = Command::new("yanglint")
        .arg(YANG_FILE)
        .output()
        .expect("yanglint (Debian libyang2-tools)");
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    assert!(
        o.stderr.is_empty(),
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
    }
    assert!(YANG.contains("module router"));
}

#[test]
fn get_validates_against_the_module() {
    let r = router(NAT);
    let mut m = Mgmt::new(&r, None, Vec::new());
    let a = call(&mut m, "GET", "/restconf/data/router:router", "");
    assert_eq!(a.status, 200, "{}", a.body);
    let v = json_of(&a);
    let top = &v["router:router"];
    assert_eq!(top["route"][0]["next-hop"], "192.0.2.2");
    assert_eq!(top["route"][1]["drop"], json!([null]));
    assert_eq!(top["nat"]["pool"], json!(["192.0.2.100/30"]));
    assert_eq!(top["qos"]["policer"]["cir-bps"], "10000000000");
    assert_eq!(top["state"]["interface"][1]["name"], "core");
    assert_eq!(top["state"]["interface"][1]["rx-packets"], "0");
    let (ok, err) = yanglint("data", &a.body);
    assert!(ok, "{err}\n{}", a.body);
    // Negative controls: state is not configuration; a route with both actions.
    assert!(!yanglint("config", &a.body).0);
    let mut bad = v.clone();
    bad["router:router"]["route"][0]["drop"] = json!([null]);
    assert!(!yanglint("data", &bad.to_string()).0);
    let c = m.handle(
        "GET",
        "/restconf/data/router:router",
        "content=config",
        b"",
        &[],
    );
    assert!(json_of(&c)["router:router"].get("state").is_none());
    let (ok, err) = yanglint("config", &c.body);
    assert!(ok, "{err}\n{}", c.body);
    // One route, by its percent-encoded key.
    let one = call(
        &mut m,
        "GET",
        "/restconf/data/router:router/route=198.18.0.0%2F15",
        "",
    );
    assert_eq!(
        json_of(&one),
        json!({"router:route": [{"prefix": "198.18.0.0/15", "next-hop": "192.0.2.2"}]})
    );
    let y = call(&mut m, "GET", "/restconf/yang/router", "");
    assert_eq!(y.body, YANG);
    assert_eq!(
        call(&mut m, "GET", "/restconf/data/router:router/nope", "").status,
        404
    );
}

fn error_tag(a: &Answer) -> String {
    json_of(a)["ietf-restconf:errors"]["error"][0]["error-tag"]
        .as_str()
        .unwrap_or("")
        .to_string()
}

#[test]
fn changes_apply_and_invalid_ones_are_refused_whole() {
    let r = router(NAT);
    let mut m = Mgmt::new(&r, None, Vec::new());
    let fib = m.l3().routes4();
    // Add a route.
    let a = call(
        &mut m,
        "POST",
        "/restconf/data/router:router/route=203.0.113.0%2F24",
        r#"{"router:route":[{"prefix":"203.0.113.0/24","next-hop":"192.0.2.3"}]}"#,
    );
    assert_eq!(a.status, 201, "{}", a.body);
    assert_eq!(m.config().routes.len(), 3);
    assert_eq!(m.l3().routes4(), fib + 1);
    // Creating it again: 409 data-exists.
    let a = call(
        &mut m,
        "POST",
        "/restconf/data/router:router/route=203.0.113.0%2F24",
        r#"{"router:route":[{"prefix":"203.0.113.0/24","next-hop":"192.0.2.3"}]}"#,
    );
    assert_eq!((a.status, error_tag(&a).as_str()), (409, "data-exists"));
    // Delete one.
    let a = call(
        &mut m,
        "DELETE",
        "/restconf/data/router:router/route=198.51.100.0%2F24",
        "",
    );
    assert_eq!(a.status, 204, "{}", a.body);
    assert_eq!(m.l3().routes4(), fib);
    // The policer's meter.
    let a = call(
        &mut m,
        "PUT",
        "/restconf/data/router:router/qos/policer",
        r#"{"router:policer":{"meter":"trtcm","cir-bps":"1000000","cbs":3000,"pir-bps":"2000000","pbs":3000}}"#,
    );
    assert_eq!(a.status, 204, "{}", a.body);
    let p = &m
        .config()
        .qos
        .as_ref()
        .unwrap()
        .policer
        .as_ref()
        .unwrap()
        .meter;
    assert_eq!(
        *p,
        dataplane::stages::qos::MeterConfig::Trtcm {
            cir_bps: 1_000_000,
            cbs: 3000,
            pir_bps: 2_000_000,
            pbs: 3000
        }
    );
    // Invalid as a whole: a good rate change and a route whose next hop is in no
    // connected subnet. Nothing changes; RFC 8040 body.
    let before = m.handle(
        "GET",
        "/restconf/data/router:router",
        "content=config",
        b"",
        &[],
    );
    let a = call(
        &mut m,
        "PATCH",
        "/restconf/data/router:router",
        r#"{"router:router":{"qos":{"policer":{"meter":"trtcm","cir-bps":"5000000","cbs":3000,"pir-bps":"6000000","pbs":3000}},
           "route":[{"prefix":"172.16.0.0/12","next-hop":"10.99.0.1"}]}}"#,
    );
    assert_eq!(a.status, 400, "{}", a.body);
    let e = &json_of(&a)["ietf-restconf:errors"]["error"][0];
    assert_eq!(e["error-type"], "application");
    assert_eq!(e["error-tag"], "invalid-value");
    assert_eq!(e["error-path"], "/router:router");
    assert!(
        e["error-message"]
            .as_str()
            .unwrap()
            .contains("172.16.0.0/12"),
        "{e}"
    );
    let after = m.handle(
        "GET",
        "/restconf/data/router:router",
        "content=config",
        b"",
        &[],
    );
    assert_eq!(before.body, after.body);
    // A trTCM peak below the committed rate: Config::check refuses it.
    let a = call(
        &mut m,
        "PATCH",
        "/restconf/data/router:router/qos/policer",
        r#"{"router:policer":{"pir-bps":"10"}}"#,
    );
    assert_eq!(
        (a.status, error_tag(&a).as_str()),
        (400, "invalid-value"),
        "{}",
        a.body
    );
    // Both actions, neither: refused.
    for body in [
        r#"{"router:route":[{"prefix":"10.8.0.0/16","next-hop":"192.0.2.2","drop":[null]}]}"#,
        r#"{"router:route":[{"prefix":"10.8.0.0/16"}]}"#,
    ] {
        let a = call(
            &mut m,
            "PUT",
            "/restconf/data/router:router/route=10.8.0.0%2F16",
            body,
        );
        assert_eq!(a.status, 400, "{}", a.body);
    }
    // The NAT pool changes (the traffic test is tests/mgmt_nat_pool.rs); a pool that
    // does not parse is refused whole; removing NAT while running is not supported.
    let a = call(
        &mut m,
        "PUT",
        "/restconf/data/router:router/nat",
        r#"{"router:nat":{"pool":["192.0.2.200/30"]}}"#,
    );
    assert_eq!(a.status, 204, "{}", a.body);
    assert_eq!(m.config().nat.as_ref().unwrap().pool, ["192.0.2.200/30"]);
    let a = call(
        &mut m,
        "PUT",
        "/restconf/data/router:router/nat",
        r#"{"router:nat":{"pool":["192.0.2.300"]}}"#,
    );
    assert_eq!((a.status, error_tag(&a).as_str()), (400, "invalid-value"));
    assert_eq!(m.config().nat.as_ref().unwrap().pool, ["192.0.2.200/30"]);
    let a = call(&mut m, "DELETE", "/restconf/data/router:router/nat", "");
    assert_eq!(
        (a.status, error_tag(&a).as_str()),
        (501, "operation-not-supported")
    );
    // State is read-only; bad JSON is malformed.
    let a = call(&mut m, "DELETE", "/restconf/data/router:router/state", "");
    assert_eq!(
        (a.status, error_tag(&a).as_str()),
        (405, "operation-not-supported")
    );
    let a = call(&mut m, "PATCH", "/restconf/data/router:router", "{");
    assert_eq!(
        (a.status, error_tag(&a).as_str()),
        (400, "malformed-message")
    );
    assert_eq!(
        m.handle("GET", "/restconf/data", "content=bogus", b"", &[])
            .status,
        400
    );
}

/// An IPv4/UDP frame from the access side to `dst`.
fn frame(dst: [u8; 4], i: u16) -> Vec<u8> {
    let mut f = vec![0u8; 60];
    f[0..6].copy_from_slice(&[2, 0, 0, 0, 0, 1]);
    f[6..12].copy_from_slice(&[2, 0, 0, 0, 0, 0x10]);
    f[12] = 0x08;
    f[14] = 0x45;
    f[16..18].copy_from_slice(&46u16.to_be_bytes());
    f[22] = 64;
    f[23] = 17;
    f[26..30].copy_from_slice(&[10, 0, 0, 10]);
    f[30..34].copy_from_slice(&dst);
    f[34..36].copy_from_slice(&(1000 + i).to_be_bytes());
    f[36..38].copy_from_slice(&53u16.to_be_bytes());
    f[38..40].copy_from_slice(&26u16.to_be_bytes());
    let c = dataplane::proto::checksum::internet(&f[14..34]);
    f[24..26].copy_from_slice(&c.to_be_bytes());
    f
}

const OLD: [u8; 4] = [198, 18, 0, 1];
const NEW: [u8; 4] = [203, 0, 113, 7];
const LEARNED_MAC: [u8; 6] = [2, 0, 0, 0, 0, 0x77];

#[derive(Default, Debug)]
struct Tally {
    sent_old: u64,
    sent_new: u64,
    got_old: u64,
    got_new: u64,
}

/// Sends one burst (alternating destinations) and receives what came out.
fn round(gen: &mut MemPort, sink: &mut MemPort, c: &mut PoolCache, t: &mut Tally, send: bool) {
    if send {
        let mut b = Batch::new();
        for i in 0..16u16 {
            let dst = if i % 2 == 0 { OLD } else { NEW };
            let mut p = c.alloc().expect("buffer");
            p.copy_from(&frame(dst, i)).expect("copy");
            b.push(p).expect("push");
        }
        let n = gen.tx_burst(c, &mut b) as u64;
        // tx_burst sends a prefix of the batch: even indexes are OLD
        t.sent_old += n.div_ceil(2);
        t.sent_new += n / 2;
        b.free_all(c);
    }
    let mut rb = Batch::new();
    sink.rx_burst(c, &mut rb);
    for p in rb.iter() {
        let d = p.data();
        if d[30..34] == OLD {
            assert_eq!(d[0..6], [2, 0, 0, 0, 0, 0x99]);
            t.got_old += 1;
        } else if d[30..34] == NEW {
            assert_eq!(d[0..6], LEARNED_MAC, "forwarded to the learned neighbour");
            t.got_new += 1;
        }
    }
    rb.free_all(c);
}

/// Runs rounds while `busy` says so, then drains for 200 ms.
fn flow(
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
    while q.elapsed() < Duration::from_millis(200) {
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

#[test]
fn changes_while_traffic_flows() {
    let r = router("");
    let pool = Pool::new(8192).expect("pool");
    let (mut gen, a) = mem::pair("gen", "access", 1024).expect("pair");
    let (cport, mut sink) = mem::pair("core", "sink", 1024).expect("pair");
    let link = WorkerLink::new();
    let mut spec = WorkerSpec::new(
        vec![Box::new(a) as Box<dyn Port>, Box::new(cport)],
        r.pipeline(),
        pool.cache(),
    );
    spec.hooks.push(update_hook(&link));
    let runner = Runner::start(vec![spec]).expect("runner");
    let mgmt = Arc::new(Mutex::new(Mgmt::new(&r, None, vec![link])));
    // A neighbour the worker learned (as arp-input does from a reply): the new route
    // goes via it, and must not wait for ARP after the swap.
    mgmt.lock().unwrap().l3().neigh.learn(
        dataplane::stages::neigh::key_v4([192, 0, 2, 3].into()),
        LEARNED_MAC,
        1,
    );
    let mut c = pool.cache();
    let mut t = Tally::default();

    // 1. Before the change: the new prefix has no route.
    let t0 = Instant::now();
    flow(&mut gen, &mut sink, &mut c, &mut t, || {
        t0.elapsed() < Duration::from_millis(300)
    });
    assert!(t.sent_old > 500, "{t:?}");
    assert_eq!(t.got_old, t.sent_old, "{t:?}");
    assert_eq!(t.got_new, 0, "{t:?}");
    let before = t.sent_new;

    // 2. A route added while traffic flows (the API call from another thread).
    let m2 = mgmt.clone();
    let changer = std::thread::spawn(move || {
        std::thread::sleep(Duration::from_millis(100));
        let a = m2.lock().unwrap().handle(
            "POST",
            "/restconf/data/router:router/route=203.0.113.0%2F24",
            "",
            br#"{"router:route":[{"prefix":"203.0.113.0/24","next-hop":"192.0.2.3"}]}"#,
            &[],
        );
        assert_eq!(a.status, 201, "{}", a.body);
    });
    let t1 = Instant::now();
    flow(&mut gen, &mut sink, &mut c, &mut t, || {
        t1.elapsed() < Duration::from_millis(500)
    });
    changer.join().expect("change");
    assert_eq!(t.got_old, t.sent_old, "the other route lost nothing: {t:?}");
    assert!(t.got_new > 0, "the new route forwards: {t:?}");
    let lookup_drops = node_drops(&runner.snapshots(), "ip4-lookup");
    // Every frame to the new prefix either arrived or was dropped (no route) before
    // the swap.
    let t2 = Instant::now();
    let new_before = (t.sent_new, t.got_new);
    flow(&mut gen, &mut sink, &mut c, &mut t, || {
        t2.elapsed() < Duration::from_millis(200)
    });
    assert_eq!(
        t.got_new - new_before.1,
        t.sent_new - new_before.0,
        "after the change, all of it: {t:?}"
    );
    assert!(before > 0);

    // 3. The policer's rate set low: policed at once.
    let low = r#"{"router:policer":{"meter":"srtcm","cir-bps":"8000","cbs":200,"ebs":0}}"#;
    let a = mgmt.lock().unwrap().handle(
        "PUT",
        "/restconf/data/router:router/qos/policer",
        "",
        low.as_bytes(),
        &[],
    );
    assert_eq!(a.status, 204, "{}", a.body);
    let mut p = Tally::default();
    let t3 = Instant::now();
    flow(&mut gen, &mut sink, &mut c, &mut p, || {
        t3.elapsed() < Duration::from_millis(200)
    });
    let got = p.got_old + p.got_new;
    let sent = p.sent_old + p.sent_new;
    assert!(sent > 500 && got * 20 < sent, "policed: {p:?}");
    // 4. And back: all of it passes again.
    let high = r#"{"router:policer":{"meter":"srtcm","cir-bps":"10000000000","cbs":1000000,"ebs":1000000}}"#;
    let a = mgmt.lock().unwrap().handle(
        "PUT",
        "/restconf/data/router:router/qos/policer",
        "",
        high.as_bytes(),
        &[],
    );
    assert_eq!(a.status, 204, "{}", a.body);
    let mut q = Tally::default();
    let t4 = Instant::now();
    flow(&mut gen, &mut sink, &mut c, &mut q, || {
        t4.elapsed() < Duration::from_millis(200)
    });
    assert!(q.sent_old > 100, "{q:?}");
    assert_eq!((q.got_old, q.got_new), (q.sent_old, q.sent_new), "{q:?}");

    let fin = runner.stop();
    // Counted: the new prefix's frames before the swap were ip4-lookup drops (no
    // route); the policed ones policer drops; the engine dropped nothing else.
    let unsent: u64 = fin.iter().map(|s| s.tx_unsent + s.out.tx_full).sum();
    assert_eq!(unsent, 0);
    assert_eq!(
        node_drops(&fin, "ip4-lookup"),
        lookup_drops,
        "no lookup drop after the swap"
    );
    assert_eq!(
        t.sent_new - t.got_new,
        lookup_drops,
        "every frame to the new prefix arrived or was counted: {t:?}"
    );
    assert_eq!(node_drops(&fin, "policer"), sent - got, "{p:?}");
    // The state with the workers' counters validates against the module.
    let a = mgmt
        .lock()
        .unwrap()
        .handle("GET", "/restconf/data/router:router", "", b"", &fin);
    let v = json_of(&a);
    let st = &v["router:router"]["state"];
    assert_eq!(
        st["interface"][0]["rx-packets"],
        (t.sent_old + t.sent_new + p.sent_old + p.sent_new + q.sent_old + q.sent_new).to_string()
    );
    assert_eq!(st["node"].as_array().map(Vec::len), Some(2), "{st}");
    let (ok, err) = yanglint("data", &a.body);
    assert!(ok, "{err}\n{}", a.body);
}

#[test]
fn router_binary_serves_the_api() {
    let dir = std::env::temp_dir().join(format!("router-mgmt-bin-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("dir");
    let port = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").expect("port");
        l.local_addr().expect("addr").port()
    };
    let cfg_path = dir.join("router.toml");
    std::fs::write(
        &cfg_path,
        CFG.replace("mem:a", "mem:api-a")
            .replace("mem:c", "mem:api-c"),
    )
    .expect("config");
    let addr = format!("127.0.0.1:{port}");
    let mut child = Command::new(env!("CARGO_BIN_EXE_router"))
        .arg("--config")
        .arg(&cfg_path)
        .args(["--listen", &addr, "--seconds", "30"])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("router");
    let api = |args: &[&str]| {
        Command::new(env!("CARGO_BIN_EXE_router"))
            .arg("api")
            .args(args)
            .args(["--connect", &addr])
            .output()
            .expect("router api")
    };
    let t = Instant::now();
    let mut got = api(&["GET", "/router:router/state"]);
    while !got.status.success() && t.elapsed() < Duration::from_secs(15) {
        std::thread::sleep(Duration::from_millis(100));
        got = api(&["GET", "/router:router/state"]);
    }
    assert!(
        got.status.success(),
        "{}",
        String::from_utf8_lossy(&got.stderr)
    );
    let v: Value = serde_json::from_slice(&got.stdout).expect("json");
    assert_eq!(v["router:state"]["interface"][0]["name"], "access");
    let p = api(&[
        "POST",
        "/router:router/route=203.0.113.0%2F24",
        "-d",
        r#"{"router:route":[{"prefix":"203.0.113.0/24","drop":[null]}]}"#,
    ]);
    assert!(p.status.success(), "{}", String::from_utf8_lossy(&p.stderr));
    let g = api(&["GET", "/router:router/route=203.0.113.0%2F24"]);
    assert!(
        String::from_utf8_lossy(&g.stdout).contains("203.0.113.0/24"),
        "{}",
        String::from_utf8_lossy(&g.stdout)
    );
    // A refusal: exit 1, one line with the server's error-message.
    let bad = api(&[
        "POST",
        "/router:router/route=172.16.0.0%2F12",
        "-d",
        r#"{"router:route":[{"prefix":"172.16.0.0/12","next-hop":"10.99.0.1"}]}"#,
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
