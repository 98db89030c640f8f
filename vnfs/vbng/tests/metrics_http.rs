//! The vBNG's `/metrics` over HTTP while it runs on its runtime (`vbng::runtime`,
//! what `vbng run` uses) with CGNAT: served off the data plane, so scrapers that
//! connect and never send, or send and never read, do not stall forwarding; the text
//! passes `promtool check metrics` (Prometheus' own parser) and holds every node's
//! declared drop reasons and node counters, the control plane's families and the
//! ports'; `/sessions`, `/errors`, `/trace` and `/graph` answer.

use dataplane::batch::Batch;
use dataplane::buf::{Pool, PoolCache};
use dataplane::http::get;
use dataplane::port::mem::{pair, MemPort};
use dataplane::port::Port;
use dataplane::proto::ethernet::Vlans;
use pktgen::subscribers::client::{ClientParams, ClientPhase, Subscriber};
use std::io::Write;
use std::net::TcpStream;
use std::time::{Duration, Instant};
use vbng::config::{Config, UserConfig};
use vbng::fsm::Timers;
use vbng::lcp::AuthProto;
use vbng::rng::Rng;
use vbng::runtime::{start, Options};
use vbng::vnf::{build, BuildEnv};

const CORE_MAC: [u8; 6] = [2, 0, 0, 0, 0xc0, 2];

fn send(port: &mut MemPort, cache: &mut PoolCache, frames: &[Vec<u8>]) -> usize {
    let mut b = Batch::new();
    for f in frames {
        let Some(mut p) = cache.alloc() else { break };
        p.copy_from(f).unwrap();
        if let Err(p) = b.push(p) {
            cache.free(p);
            break;
        }
    }
    let n = port.tx_burst(cache, &mut b);
    b.free_all(cache);
    n
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

fn udp(src: u32, dst: u32, sport: u16) -> Vec<u8> {
    let mut v = vec![0u8; 48];
    v[0] = 0x45;
    v[2..4].copy_from_slice(&48u16.to_be_bytes());
    v[8] = 64;
    v[9] = 17;
    v[12..16].copy_from_slice(&src.to_be_bytes());
    v[16..20].copy_from_slice(&dst.to_be_bytes());
    let c = dataplane::proto::checksum::internet(&v[..20]);
    v[10..12].copy_from_slice(&c.to_be_bytes());
    v[20..22].copy_from_slice(&sport.to_be_bytes());
    v[22..24].copy_from_slice(&5001u16.to_be_bytes());
    v[24..26].copy_from_slice(&28u16.to_be_bytes());
    v
}

#[test]
fn metrics_off_the_data_plane_pass_promtool_with_every_node() {
    let mut cfg = Config::from_toml(
        "core_ip = \"198.51.100.2/24\"\n[cgnat]\npool = [\"203.0.113.0/30\"]\nlog = false\n",
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
    let v = build(&cfg, &BuildEnv::new(CORE_MAC, 16, Rng::from_seed([5; 32]))).unwrap();
    // Every node and its declared drop reasons, for the checks below.
    let nodes: Vec<(&'static str, &'static [&'static str])> = {
        let mut g = v
            .graph
            .nodes()
            .map(|n| (n.name, n.errors))
            .collect::<Vec<_>>();
        g.retain(|(n, _)| *n != "graph");
        g
    };
    assert_eq!(nodes.len(), 5, "{nodes:?}");
    let (mut gen, access) = pair("mh-gen", "mh-access", 1024).unwrap();
    let (core, mut sink) = pair("mh-core", "mh-sink", 1024).unwrap();
    let r = start(
        v,
        vec![Box::new(access) as Box<dyn Port>, Box::new(core)],
        None,
        &Options {
            listen: Some("127.0.0.1:0".into()),
            pool_buffers: 8192,
            ..Options::default()
        },
    )
    .unwrap();
    let addr = r.http_addr().unwrap().to_string();
    let pool = Pool::new(4096).unwrap();
    let mut cache = pool.cache();

    // A subscriber comes up through the worker and the control thread.
    let mut s = Subscriber::new(ClientParams {
        mac: [2, 0x5b, 0, 0, 0, 9],
        vlans: Vlans {
            svlan: 100,
            cvlan: 9,
        },
        user: b"alice".to_vec(),
        password: b"pw".to_vec(),
        accept_auth: [Some(AuthProto::Pap), None],
        service_name: Vec::new(),
        host_uniq: None,
        max_payload: None,
        timers: Timers::default(),
        ipv6cp: false,
        magic: 0x0a0b_0c0d,
        discovery_tries: 5,
    });
    let t0 = Instant::now();
    let ms = |t0: Instant| t0.elapsed().as_millis() as u64;
    let mut up = Vec::new();
    s.start(0, &mut up);
    while s.phase != ClientPhase::Up && t0.elapsed() < Duration::from_secs(20) {
        send(&mut gen, &mut cache, &up);
        up.clear();
        std::thread::sleep(Duration::from_millis(1));
        for f in recv(&mut gen, &mut cache) {
            s.input(&f, ms(t0), &mut up);
        }
        s.poll(ms(t0), &mut up);
    }
    assert_eq!(s.phase, ClientPhase::Up, "{:?}", s.failed);
    send(&mut gen, &mut cache, &up);

    // Stuck scrapers: one connects and never sends, one sends and never reads.
    let _silent = TcpStream::connect(&addr).unwrap();
    let mut deaf = TcpStream::connect(&addr).unwrap();
    deaf.write_all(b"GET /metrics?sessions HTTP/1.1\r\nHost: x\r\n\r\n")
        .unwrap();
    let _ = get(&addr, "/trace?add=4").unwrap();
    // Traffic while they hang: 8 flows, so the NAT has something to count.
    let frames: Vec<Vec<u8>> = (0..8)
        .map(|k| {
            let mut ppp = vec![0x00, 0x21];
            ppp.extend_from_slice(&udp(s.ip, 0xc633_6401, 1000 + k));
            s.session_frame(&ppp)
        })
        .collect();
    let (mut sent, mut got) = (0u64, 0u64);
    let t = Instant::now();
    let mut last = Instant::now();
    while t.elapsed() < Duration::from_secs(2)
        || (got < sent && last.elapsed() < Duration::from_millis(500))
    {
        if t.elapsed() < Duration::from_secs(2) && sent - got < 512 {
            sent += send(&mut gen, &mut cache, &frames) as u64;
        }
        let n = recv(&mut sink, &mut cache).len() as u64;
        if n > 0 {
            last = Instant::now();
        }
        got += n;
        std::thread::sleep(Duration::from_micros(200));
    }
    assert!(sent > 1000, "offered {sent}");
    assert_eq!(got, sent, "forwarding went on while scrapers were stuck");

    // The worker publishes every 100 ms: wait for a scrape that has the packets.
    let mut text = String::new();
    for _ in 0..50 {
        text = get(&addr, "/metrics").unwrap();
        if text.contains(&format!(
            "dp_node_packets_total{{worker=\"0\",node=\"nat44\"}} {sent}\n"
        )) {
            break;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    for (node, reasons) in &nodes {
        assert!(
            text.contains(&format!(
                "dp_node_packets_total{{worker=\"0\",node=\"{node}\"}}"
            )),
            "{node}:\n{text}"
        );
        for reason in reasons.iter() {
            assert!(
                text.contains(&format!(
                    "dp_node_drops_total{{worker=\"0\",node=\"{node}\",reason=\"{reason}\"}}"
                )),
                "{node} {reason}:\n{text}"
            );
        }
    }
    for (node, counter) in [
        ("bng-upstream", "icmp-sent"),
        ("bng-upstream", "sessions"),
        ("bng-downstream", "fragmented"),
        ("bng-core-arp", "arp-replies"),
        ("nat44", "sessions-created"),
        ("nat44", "sessions-active"),
    ] {
        assert!(
            text.contains(&format!("node=\"{node}\",counter=\"{counter}\"}}")),
            "{node} {counter}:\n{text}"
        );
    }
    assert!(
        text.contains("dp_node_level{worker=\"0\",node=\"nat44\",counter=\"sessions-active\"} 8\n"),
        "{text}"
    );
    for family in [
        "vbng_sessions 1\n",
        "vbng_session_events_total{event=\"up\"} 1\n",
        "vbng_pppoe_discovery_total{kind=\"padi\"} 1\n",
        "vbng_icmp_total{kind=\"sent\"}",
        "vbng_core_arp_total{kind=\"reply\"}",
        "dp_port_rx_packets_total{port=\"mh-access\"}",
        "dp_worker_punted_total{worker=\"0\"}",
        "dp_node_drops_total{worker=\"0\",node=\"graph\",reason=\"frame-full\"} 0",
    ] {
        assert!(text.contains(family), "{family}:\n{text}");
    }
    // Prometheus' own parser.
    let dir = std::env::temp_dir().join(format!("vbng-metrics-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let f = dir.join("metrics.prom");
    std::fs::write(&f, get(&addr, "/metrics?sessions").unwrap()).unwrap();
    let out = std::process::Command::new("promtool")
        .args(["check", "metrics"])
        .stdin(std::fs::File::open(&f).unwrap())
        .output()
        .expect("promtool (Debian package prometheus; scripts/setup installs it)");
    let _ = std::fs::remove_dir_all(&dir);
    assert!(
        out.status.success(),
        "promtool: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    // The other pages.
    let sessions = get(&addr, "/sessions").unwrap();
    assert!(sessions.contains("alice"), "{sessions}");
    assert_eq!(get(&addr, "/errors").unwrap(), "no drops\n");
    let trace = get(&addr, "/trace").unwrap();
    assert!(
        trace.contains("bng-upstream") && trace.contains("nat44"),
        "{trace}"
    );
    let graph = get(&addr, "/graph").unwrap();
    assert!(graph.starts_with("bng-upstream -> nat44\n"), "{graph}");
    assert!(graph.contains("port 1 -> bng-core-input\n"), "{graph}");
    assert!(get(&addr, "/nope").unwrap_err().contains("404"));
    let fin = r.stop().unwrap();
    assert_eq!(fin.worker.worker.inject_dropped, 0);
}
