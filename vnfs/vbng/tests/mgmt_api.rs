//! The vBNG's management API (issue 19; `vbng::mgmt`, RFC 8040 shape): the YANG
//! module passes `yanglint` (libyang, strict) and `pyang`, what `GET` returns
//! validates against it (and a negative control does not), changes apply to the
//! running control plane and an invalid one is refused whole with an RFC 8040 error
//! body, the session actions work, secrets never come back, and the `vbng` binary
//! serves it (`vbng api`, exit status 1 with the server's message on a refusal).
//! Fails (does not skip) without `yanglint` (Debian libyang2-tools).

use dataplane::proto::ethernet::Vlans;
use pktgen::subscribers::client::{ClientParams, ClientPhase, Subscriber};
use serde_json::{json, Value};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};
use vbng::config::{Config, UserConfig};
use vbng::control::{ControlPlane, FibUpdate, SessionCounters};
use vbng::fsm::Timers;
use vbng::lcp::AuthProto;
use vbng::mgmt::{Answer, Mgmt, YANG};
use vbng::rng::Rng;

const YANG_FILE: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/yang/vbng@2026-12-02.yang");

fn cfg() -> Config {
    let mut c = Config::from_toml(
        "default_rate_up = 1000000\ndefault_rate_down = 2000000\n\
         [radius]\nnas_ip = \"127.0.0.1\"\n\
         [[radius.auth]]\naddr = \"127.0.0.1:18120\"\nsecret = \"auth-secret-1\"\n\
         [[radius.acct]]\naddr = \"127.0.0.1:18130\"\nsecret = \"acct-secret-1\"\n",
    )
    .expect("config");
    c.auth = AuthProto::Pap;
    c.auth_fallback = None;
    c.radius.as_mut().expect("radius").local_fallback = true;
    c.users = vec![UserConfig {
        name: "alice".into(),
        password: "alice-pw".into(),
        ip: None,
        rate: Some("5M/10M".into()),
    }];
    c.validate().expect("valid");
    c
}

fn cp(c: &Config) -> ControlPlane {
    ControlPlane::new(c, 16, SessionCounters::new(16), Rng::from_seed([7; 32])).expect("cp")
}

fn call(m: &mut Mgmt, cp: &mut ControlPlane, method: &str, path: &str, body: &str) -> Answer {
    let (p, q) = path.split_once('?').unwrap_or((path, ""));
    m.handle(method, p, q, body.as_bytes(), cp, 0)
}

fn json_of(a: &Answer) -> Value {
    serde_json::from_str(&a.body).unwrap_or_else(|e| panic!("{e}: {}", a.body))
}

fn yanglint(kind: &str, data: &str) -> (bool, String) {
    let dir = std::env::temp_dir().join(format!("vbng-mgmt-{}", std::process::id()));
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
    assert!(YANG.contains("module vbng"));
}

/// A session up through the control plane (local users, the RADIUS servers being
/// unreachable), so the state has one.
fn with_session(c: &Config) -> (ControlPlane, Subscriber) {
    let mut cp = cp(c);
    let s = bring_up(&mut cp, 1, 0);
    assert_eq!(s.phase, ClientPhase::Up, "{:?}", cp.stats);
    (cp, s)
}

/// Subscriber `n` (alice's credentials, its own MAC and C-VLAN) run against `cp`
/// from `t0` for 20 simulated seconds or until it is up.
fn bring_up(cp: &mut ControlPlane, n: u8, t0: u64) -> Subscriber {
    let mut s = Subscriber::new(ClientParams {
        mac: [2, 0x7a, 0, 0, 0, n],
        vlans: Vlans {
            svlan: 0,
            cvlan: 10 + u16::from(n),
        },
        user: b"alice".to_vec(),
        password: b"alice-pw".to_vec(),
        accept_auth: [Some(AuthProto::Pap), None],
        service_name: Vec::new(),
        host_uniq: None,
        max_payload: None,
        timers: Timers::default(),
        ipv6cp: false,
        magic: 0x0a0b_0c0d,
        discovery_tries: 3,
    });
    let mut up = Vec::new();
    s.start(t0, &mut up);
    // The RADIUS requests time out (nothing listens), then local users answer.
    for now in (t0..t0 + 20_000u64).step_by(50) {
        for f in up.drain(..) {
            cp.input(0, &f, now);
        }
        cp.poll(now);
        let _ = cp.take_radius_tx();
        for (_, f) in cp.take_tx() {
            s.input(&f, now, &mut up);
        }
        s.poll(now, &mut up);
        if s.phase == ClientPhase::Up {
            break;
        }
    }
    s
}

/// The drain RPC (RFC 8040 §3.6.1): while draining, a new subscriber gets no answer
/// and the existing session stays; the output, the state and the metric say so;
/// `enable: false` ends it and the subscriber comes up.
#[test]
fn drain_rpc_refuses_new_sessions_and_keeps_existing_ones() {
    let c = cfg();
    let (mut cp, _s) = with_session(&c);
    let mut m = Mgmt::new(c);
    let a = call(
        &mut m,
        &mut cp,
        "POST",
        "/restconf/operations/vbng:drain",
        "",
    );
    assert_eq!(a.status, 200, "{}", a.body);
    assert_eq!(
        json_of(&a),
        json!({"vbng:output": {"draining": true, "sessions": 1}})
    );
    let late = bring_up(&mut cp, 2, 30_000);
    assert_ne!(late.phase, ClientPhase::Up);
    assert_eq!(cp.session_count(), 1, "the existing session stays");
    assert!(cp.drain_refused > 0);
    let st = call(&mut m, &mut cp, "GET", "/restconf/data/vbng:vbng/state", "");
    let v = json_of(&st);
    assert_eq!(v["vbng:state"]["draining"], true);
    assert_eq!(
        v["vbng:state"]["counters"]["drain-refused"],
        cp.drain_refused.to_string()
    );
    let whole = call(&mut m, &mut cp, "GET", "/restconf/data/vbng:vbng", "");
    let (ok, err) = yanglint("data", &whole.body);
    assert!(ok, "{err}\n{}", whole.body);
    let text = vbng::metrics::prometheus(&cp, std::iter::empty());
    assert!(text.contains("\nvbng_draining 1\n"), "{text}");
    // GET is not how an operation is invoked; a bad input is refused.
    let a = call(
        &mut m,
        &mut cp,
        "GET",
        "/restconf/operations/vbng:drain",
        "",
    );
    assert_eq!(a.status, 405);
    let a = call(
        &mut m,
        &mut cp,
        "POST",
        "/restconf/operations/vbng:drain",
        r#"{"vbng:input":{"enable":"no"}}"#,
    );
    assert_eq!(a.status, 400);
    // Drain ended: the next subscriber comes up.
    let a = call(
        &mut m,
        &mut cp,
        "POST",
        "/restconf/operations/vbng:drain",
        r#"{"vbng:input":{"enable":false}}"#,
    );
    assert_eq!(a.status, 200, "{}", a.body);
    let again = bring_up(&mut cp, 3, 60_000);
    assert_eq!(again.phase, ClientPhase::Up);
    assert_eq!(cp.session_count(), 2);
}

#[test]
fn get_validates_against_the_module_and_hides_secrets() {
    let c = cfg();
    let (mut cp, _s) = with_session(&c);
    let mut m = Mgmt::new(c);
    let a = call(&mut m, &mut cp, "GET", "/restconf/data/vbng:vbng", "");
    assert_eq!(a.status, 200, "{}", a.body);
    assert!(
        !a.body.contains("secret-1") && !a.body.contains("alice-pw"),
        "{}",
        a.body
    );
    let v = json_of(&a);
    assert_eq!(
        v["vbng:vbng"]["subscriber-defaults"]["rate-down"],
        "2000000"
    );
    assert_eq!(v["vbng:vbng"]["state"]["sessions"], 1);
    assert_eq!(v["vbng:vbng"]["state"]["session"][0]["user"], "alice");
    let (ok, err) = yanglint("data", &a.body);
    assert!(ok, "GET output does not validate: {err}\n{}", a.body);
    // Negative control: state is not configuration, and an unknown node is refused.
    assert!(!yanglint("config", &a.body).0);
    let mut bad = v.clone();
    bad["vbng:vbng"]["no-such-leaf"] = json!(1);
    assert!(!yanglint("data", &bad.to_string()).0);
    // ?content=config has no state and validates as configuration.
    let a = call(
        &mut m,
        &mut cp,
        "GET",
        "/restconf/data/vbng:vbng?content=config",
        "",
    );
    let (ok, err) = yanglint("config", &a.body);
    assert!(ok, "{err}\n{}", a.body);
    // A list entry and a leaf.
    let a = call(
        &mut m,
        &mut cp,
        "GET",
        "/restconf/data/vbng:vbng/user=alice",
        "",
    );
    assert_eq!(
        json_of(&a),
        json!({"vbng:user": [{"name": "alice", "rate": "5M/10M"}]})
    );
    let a = call(
        &mut m,
        &mut cp,
        "GET",
        "/restconf/data/vbng:vbng/user=bob",
        "",
    );
    assert_eq!(a.status, 404);
    assert_eq!(
        json_of(&a)["ietf-restconf:errors"]["error"][0]["error-tag"],
        "invalid-value"
    );
    // The schema resource.
    let a = call(&mut m, &mut cp, "GET", "/restconf/yang/vbng", "");
    assert_eq!((a.status, a.body.as_str()), (200, YANG));
}

#[test]
fn changes_apply_at_once_and_invalid_ones_are_refused_whole() {
    let c = cfg();
    let (mut cp, _s) = with_session(&c);
    let _ = cp.take_fib();
    let mut m = Mgmt::new(c);
    // Default rate (new sessions).
    let a = call(
        &mut m,
        &mut cp,
        "PATCH",
        "/restconf/data/vbng:vbng/subscriber-defaults",
        r#"{"vbng:subscriber-defaults":{"rate-down":"30000000"}}"#,
    );
    assert_eq!(a.status, 204, "{}", a.body);
    assert_eq!(cp.default_rate(), (1_000_000, 30_000_000));
    // A whole change with one bad part: nothing of it is applied.
    let a = call(
        &mut m,
        &mut cp,
        "PATCH",
        "/restconf/data/vbng:vbng",
        r#"{"vbng:vbng":{"subscriber-defaults":{"rate-up":"7"},
            "user":[{"name":"carol","password":"pw","ip":"300.1.1.1"}]}}"#,
    );
    assert_eq!(a.status, 400, "{}", a.body);
    let e = &json_of(&a)["ietf-restconf:errors"]["error"][0];
    assert_eq!(e["error-type"], "application");
    assert_eq!(e["error-tag"], "invalid-value");
    assert!(
        e["error-message"].as_str().unwrap_or("").contains("carol"),
        "{e}"
    );
    assert_eq!(
        cp.default_rate(),
        (1_000_000, 30_000_000),
        "rate-up untouched"
    );
    // Users: add one (POST), 409 on a second POST, delete it.
    let a = call(
        &mut m,
        &mut cp,
        "POST",
        "/restconf/data/vbng:vbng/user=bob",
        r#"{"vbng:user":[{"name":"bob","password":"bob-pw","rate":"1M"}]}"#,
    );
    assert_eq!(a.status, 201, "{}", a.body);
    assert!(m.config().users.iter().any(|u| u.name == "bob"));
    let a = call(
        &mut m,
        &mut cp,
        "POST",
        "/restconf/data/vbng:vbng/user=bob",
        r#"{"vbng:user":[{"name":"bob","password":"x"}]}"#,
    );
    assert_eq!(a.status, 409);
    assert_eq!(
        json_of(&a)["ietf-restconf:errors"]["error"][0]["error-tag"],
        "data-exists"
    );
    let a = call(
        &mut m,
        &mut cp,
        "DELETE",
        "/restconf/data/vbng:vbng/user=bob",
        "",
    );
    assert_eq!(a.status, 204);
    assert!(!m.config().users.iter().any(|u| u.name == "bob"));
    // RADIUS servers replaced; the secret of a server kept when it is not re-sent,
    // mandatory for a new one.
    let a = call(
        &mut m,
        &mut cp,
        "PUT",
        "/restconf/data/vbng:vbng/radius",
        r#"{"vbng:radius":{"auth-server":[{"address":"127.0.0.1:18120"},
            {"address":"127.0.0.1:28120"}],"acct-server":[{"address":"127.0.0.1:18130"}]}}"#,
    );
    assert_eq!(a.status, 400, "a new server needs its secret: {}", a.body);
    let a = call(
        &mut m,
        &mut cp,
        "PUT",
        "/restconf/data/vbng:vbng/radius",
        r#"{"vbng:radius":{"auth-server":[{"address":"127.0.0.1:28120","secret":"s2"},
            {"address":"127.0.0.1:18120"}],"acct-server":[{"address":"127.0.0.1:18130"}]}}"#,
    );
    assert_eq!(a.status, 204, "{}", a.body);
    let r = m.config().radius.as_ref().expect("radius");
    assert_eq!(r.auth[0].addr.port(), 28120);
    assert_eq!(r.auth[1].secret.expose(), "auth-secret-1", "kept");
    let servers = cp.radius_servers();
    assert_eq!(servers.0.len(), 2, "the running client has them");
    // State is read-only; unknown paths 404; a body that is not JSON is malformed.
    let a = call(
        &mut m,
        &mut cp,
        "PUT",
        "/restconf/data/vbng:vbng/state",
        r#"{"vbng:state":{}}"#,
    );
    assert_eq!(a.status, 405);
    let a = call(
        &mut m,
        &mut cp,
        "PATCH",
        "/restconf/data/vbng:vbng/nothing",
        "{}",
    );
    assert!(a.status == 404 || a.status == 400, "{}", a.body);
    let a = call(
        &mut m,
        &mut cp,
        "PATCH",
        "/restconf/data/vbng:vbng/subscriber-defaults",
        "{not json",
    );
    assert_eq!(a.status, 400);
    assert_eq!(
        json_of(&a)["ietf-restconf:errors"]["error"][0]["error-tag"],
        "malformed-message"
    );
}

#[test]
fn session_actions_set_rate_and_disconnect() {
    let c = cfg();
    let (mut cp, _s) = with_session(&c);
    let _ = cp.take_fib();
    let mut m = Mgmt::new(c);
    let id = cp.sessions()[0].idx;
    let a = call(
        &mut m,
        &mut cp,
        "POST",
        &format!("/restconf/data/vbng:vbng/state/session={id}/set-rate"),
        r#"{"vbng:input":{"rate-up":"64000","rate-down":"128000"}}"#,
    );
    assert_eq!(a.status, 204, "{}", a.body);
    assert_eq!(
        cp.take_fib(),
        vec![FibUpdate::Rate {
            idx: id,
            rate: (64_000, 128_000)
        }]
    );
    assert_eq!(cp.sessions()[0].rate, (64_000, 128_000));
    let a = call(
        &mut m,
        &mut cp,
        "POST",
        "/restconf/data/vbng:vbng/state/session=99/disconnect",
        "",
    );
    assert_eq!(a.status, 404);
    let a = call(
        &mut m,
        &mut cp,
        "POST",
        &format!("/restconf/data/vbng:vbng/state/session={id}/disconnect"),
        "",
    );
    assert_eq!(a.status, 204);
    assert_eq!(cp.session_count(), 0);
}

/// The binary serves the API: `vbng api` reads and changes a running instance and
/// exits 1 with the server's message when the change is refused.
#[test]
fn vbng_binary_serves_the_api() {
    let dir = std::env::temp_dir().join(format!("vbng-mgmt-bin-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("dir");
    let port = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").expect("port");
        l.local_addr().expect("addr").port()
    };
    let cfg_path = dir.join("vbng.toml");
    std::fs::write(
        &cfg_path,
        format!(
            "listen = \"127.0.0.1:{port}\"\ndefault_rate_down = 5000000\n\
             [[users]]\nname = \"alice\"\npassword = \"alice-pw\"\n"
        ),
    )
    .expect("config");
    let mut child = Command::new(env!("CARGO_BIN_EXE_vbng"))
        .arg("run")
        .arg("-c")
        .arg(&cfg_path)
        .args([
            "--access",
            "mem:api-a",
            "--core",
            "mem:api-c",
            "--duration",
            "30",
            "--max-sessions",
            "16",
        ])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("vbng run");
    let addr = format!("127.0.0.1:{port}");
    let api = |args: &[&str]| {
        Command::new(env!("CARGO_BIN_EXE_vbng"))
            .arg("api")
            .args(args)
            .args(["--connect", &addr])
            .output()
            .expect("vbng api")
    };
    let t = Instant::now();
    let mut got = api(&["GET", "/vbng:vbng/subscriber-defaults"]);
    while !got.status.success() && t.elapsed() < Duration::from_secs(15) {
        std::thread::sleep(Duration::from_millis(100));
        got = api(&["GET", "/vbng:vbng/subscriber-defaults"]);
    }
    let text = String::from_utf8_lossy(&got.stdout).to_string();
    assert!(
        got.status.success(),
        "{}",
        String::from_utf8_lossy(&got.stderr)
    );
    assert_eq!(
        serde_json::from_str::<Value>(&text).expect("json")["vbng:subscriber-defaults"]
            ["rate-down"],
        "5000000"
    );
    let p = api(&[
        "PATCH",
        "/vbng:vbng/subscriber-defaults",
        "-d",
        r#"{"vbng:subscriber-defaults":{"rate-down":"9000000"}}"#,
    ]);
    assert!(p.status.success(), "{}", String::from_utf8_lossy(&p.stderr));
    let g = api(&["GET", "/vbng:vbng/subscriber-defaults/rate-down"]);
    assert!(
        String::from_utf8_lossy(&g.stdout).contains("9000000"),
        "{}",
        String::from_utf8_lossy(&g.stdout)
    );
    // A refusal: exit 1, one line with the server's error-message.
    let bad = api(&[
        "POST",
        "/vbng:vbng/user=bob",
        "-d",
        r#"{"vbng:user":[{"name":"bob","password":"x","ip":"10.9.9.9"}]}"#,
    ]);
    let err = String::from_utf8_lossy(&bad.stderr).to_string();
    assert_eq!(bad.status.code(), Some(1), "{err}");
    assert_eq!(err.trim().lines().count(), 1, "{err}");
    assert!(err.contains("HTTP 400") && err.contains("bob"), "{err}");
    let _ = child.kill();
    let _ = child.wait();
    let _ = std::fs::remove_dir_all(&dir);
}

/// Changes through the API while traffic flows through the composed vBNG
/// (`vbng::vnf::build` on the engine's `Worker`, in memory): a new user and a new
/// default rate lose no packet of the running session; the session's rate set low
/// through the `set-rate` action polices its traffic at once, and set back lets it
/// all through again.
#[test]
fn changes_while_traffic_flows() {
    use dataplane::batch::Batch;
    use dataplane::buf::{Pool, PoolCache};
    use dataplane::port::mem::{pair, MemPort};
    use dataplane::port::Port;
    use dataplane::worker::{ring, Worker, WorkerConfig};
    use vbng::vnf::{build, update_hook, BuildEnv, Injector};

    const CORE_MAC: [u8; 6] = [2, 0, 0, 0, 0xc0, 2];
    let mut cfg = Config::from_toml(
        "core_ip = \"198.51.100.2/24\"\ncore_next_hop_mac = \"02:00:00:00:c0:01\"\n",
    )
    .expect("config");
    cfg.auth = AuthProto::Pap;
    cfg.auth_fallback = None;
    cfg.users = vec![UserConfig {
        name: "alice".into(),
        password: "pw".into(),
        ip: None,
        rate: None,
    }];
    let v = build(&cfg, &BuildEnv::new(CORE_MAC, 16, Rng::from_seed([9; 32]))).expect("build");
    let mut control = v.control;
    let mut m = Mgmt::new(cfg.clone());
    let pool = Pool::new(4096).expect("pool");
    let (mut gen, access) = pair("mg-gen", "mg-access", 512).expect("pair");
    let (core, mut sink) = pair("mg-core", "mg-sink", 512).expect("pair");
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
    .on_update(update_hook());
    let mut cache = pool.cache();
    let mut inj = Injector::new();
    let mut s = Subscriber::new(ClientParams {
        mac: [2, 0x5c, 0, 0, 0, 1],
        vlans: Vlans { svlan: 0, cvlan: 7 },
        user: b"alice".to_vec(),
        password: b"pw".to_vec(),
        accept_auth: [Some(AuthProto::Pap), None],
        service_name: Vec::new(),
        host_uniq: None,
        max_payload: None,
        timers: Timers::default(),
        ipv6cp: false,
        magic: 0x0102_0304,
        discovery_tries: 3,
    });
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
    let mut up = Vec::new();
    s.start(0, &mut up);
    let mut now = 0u64;
    let mut round = |w: &mut Worker,
                     control: &mut vbng::vnf::Control,
                     s: &mut Subscriber,
                     up: &mut Vec<Vec<u8>>,
                     gen: &mut MemPort,
                     cache: &mut PoolCache,
                     now: u64| {
        send(gen, cache, up);
        up.clear();
        w.poll(now * 1_000_000);
        control.drain_punts(&punt, cache, now);
        inj.queue(control.poll(now));
        inj.flush(&inject, cache);
        w.poll(now * 1_000_000);
        for f in recv(gen, cache) {
            s.input(&f, now, up);
        }
    };
    while s.phase != ClientPhase::Up && now < 200 {
        round(
            &mut w,
            &mut control,
            &mut s,
            &mut up,
            &mut gen,
            &mut cache,
            now,
        );
        now += 1;
    }
    assert_eq!(s.phase, ClientPhase::Up);
    // 20 datagrams of 1000 bytes upstream per millisecond (160 Mbit/s).
    let data = |s: &Subscriber| {
        let mut ip = vec![0u8; 1000];
        ip[0] = 0x45;
        ip[2..4].copy_from_slice(&1000u16.to_be_bytes());
        ip[8] = 64;
        ip[9] = 17;
        ip[12..16].copy_from_slice(&s.ip.to_be_bytes());
        ip[16..20].copy_from_slice(&[198, 51, 100, 7]);
        let c = dataplane::proto::checksum::internet(&ip[..20]);
        ip[10..12].copy_from_slice(&c.to_be_bytes());
        let mut ppp = vec![0x00, 0x21];
        ppp.extend_from_slice(&ip);
        vec![s.session_frame(&ppp); 20]
    };
    let mut phase = |ms: u64,
                     w: &mut Worker,
                     control: &mut vbng::vnf::Control,
                     s: &mut Subscriber,
                     now: &mut u64| {
        let (mut sent, mut got) = (0usize, 0usize);
        for _ in 0..ms {
            let mut up = data(s);
            sent += up.len();
            round(w, control, s, &mut up, &mut gen, &mut cache, *now);
            got += recv(&mut sink, &mut cache)
                .iter()
                .filter(|f| f.get(12..14) == Some(&[0x08, 0x00]))
                .count();
            *now += 1;
        }
        (sent, got)
    };
    let (sent, got) = phase(20, &mut w, &mut control, &mut s, &mut now);
    assert_eq!(got, sent, "before any change");
    // New user and new default rate, applied under traffic: nothing lost.
    for (method, path, body) in [
        (
            "POST",
            "/restconf/data/vbng:vbng/user=bob",
            r#"{"vbng:user":[{"name":"bob","password":"b"}]}"#,
        ),
        (
            "PATCH",
            "/restconf/data/vbng:vbng/subscriber-defaults",
            r#"{"vbng:subscriber-defaults":{"rate-up":"1000"}}"#,
        ),
    ] {
        let a = m.handle(method, path, "", body.as_bytes(), &mut control.cp, now);
        assert!(a.status < 300, "{method} {path}: {}", a.body);
        let (sent, got) = phase(20, &mut w, &mut control, &mut s, &mut now);
        assert_eq!(got, sent, "after {method} {path}");
    }
    // The session's rate set to 1 Mbit/s up: policed at once.
    let id = control.cp.sessions()[0].idx;
    let path = format!("/restconf/data/vbng:vbng/state/session={id}/set-rate");
    let a = m.handle(
        "POST",
        &path,
        "",
        br#"{"vbng:input":{"rate-up":"1000000","rate-down":"1000000"}}"#,
        &mut control.cp,
        now,
    );
    assert_eq!(a.status, 204, "{}", a.body);
    let (sent, got) = phase(20, &mut w, &mut control, &mut s, &mut now);
    assert!(got * 4 < sent, "policed to 1 Mbit/s: {got} of {sent}");
    let a = m.handle(
        "POST",
        &path,
        "",
        br#"{"vbng:input":{"rate-up":"0","rate-down":"0"}}"#,
        &mut control.cp,
        now,
    );
    assert_eq!(a.status, 204);
    // The worker applies table updates between bursts: the burst already in its
    // rings when the change was made still meets the old policer.
    let _ = phase(1, &mut w, &mut control, &mut s, &mut now);
    let (sent, got) = phase(20, &mut w, &mut control, &mut s, &mut now);
    assert_eq!(got, sent, "unlimited again");
    assert_eq!(control.cp.session_count(), 1, "the session never went down");
}
