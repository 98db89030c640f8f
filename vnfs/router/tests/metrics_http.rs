//! The router's `/metrics` over HTTP: served from its own thread while workers
//! forward; a scraper that connects and never reads or sends does not stall
//! forwarding; the text passes `promtool check metrics` (Prometheus' own parser) and
//! lists every node's declared drop reasons.

use dataplane::batch::Batch;
use dataplane::buf::Pool;
use dataplane::http::{get, Handler, HttpServer, Response};
use dataplane::port::{mem, Port};
use dataplane::runner::{prometheus, Runner, WorkerSpec};
use std::io::Write;
use std::net::TcpStream;
use std::sync::Arc;
use std::time::{Duration, Instant};
use vnf_router::{Config, Router};

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
"#;

fn frame(i: u16) -> Vec<u8> {
    let mut f = vec![0u8; 60];
    f[0..6].copy_from_slice(&[2, 0, 0, 0, 0, 1]);
    f[6..12].copy_from_slice(&[2, 0, 0, 0, 0, 0x10]);
    f[12] = 0x08;
    f[14] = 0x45;
    f[16..18].copy_from_slice(&46u16.to_be_bytes());
    f[22] = 64;
    f[23] = 17;
    f[26..30].copy_from_slice(&[10, 0, 0, 10]);
    f[30..34].copy_from_slice(&[198, 18, 0, 1]);
    f[34..36].copy_from_slice(&(1000 + i).to_be_bytes());
    f[36..38].copy_from_slice(&53u16.to_be_bytes());
    f[38..40].copy_from_slice(&26u16.to_be_bytes());
    let c = dataplane::proto::checksum::internet(&f[14..34]);
    f[24..26].copy_from_slice(&c.to_be_bytes());
    f
}

#[test]
fn metrics_served_off_the_data_plane_and_promtool_accepts_them() {
    let cfg = Config::from_toml(CFG).unwrap();
    let router = Router::build(&cfg, &[], None).unwrap();
    let pool = Pool::new(8192).unwrap();
    let (mut gen, a) = mem::pair("gen", "access", 512).unwrap();
    let (c, mut sink) = mem::pair("core", "sink", 512).unwrap();
    let spec = WorkerSpec::new(
        vec![Box::new(a) as Box<dyn Port>, Box::new(c)],
        router.pipeline(),
        pool.cache(),
    );
    let runner = Runner::start(vec![spec]).unwrap();
    let src = runner.snapshot_source();
    let h: Handler = Arc::new(move |r| match r.path.as_str() {
        "/metrics" => Response::metrics(prometheus(&src.snapshots())),
        _ => Response::error(404, "no"),
    });
    let srv = HttpServer::spawn("127.0.0.1:0", h).unwrap();
    let addr = srv.addr().to_string();
    // Stuck scrapers: one connects and never sends, one sends a request and never
    // reads the answer.
    let _silent = TcpStream::connect(&addr).unwrap();
    let mut deaf = TcpStream::connect(&addr).unwrap();
    deaf.write_all(b"GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n")
        .unwrap();

    let mut c = pool.cache();
    let (mut sent, mut got) = (0u64, 0u64);
    let t = Instant::now();
    let mut last = Instant::now();
    while t.elapsed() < Duration::from_secs(2)
        || (got < sent && last.elapsed() < Duration::from_millis(300))
    {
        if t.elapsed() < Duration::from_secs(2) {
            let mut b = Batch::new();
            for i in 0..32u16 {
                let mut p = c.alloc().unwrap();
                p.copy_from(&frame(i)).unwrap();
                b.push(p).unwrap();
            }
            sent += gen.tx_burst(&mut c, &mut b) as u64;
            b.free_all(&mut c);
        }
        let mut rb = Batch::new();
        let n = sink.rx_burst(&mut c, &mut rb) as u64;
        if n > 0 {
            last = Instant::now();
        }
        got += n;
        rb.free_all(&mut c);
        std::thread::yield_now();
    }
    assert!(sent > 1000, "offered {sent}");
    assert!(
        got * 10 >= sent * 9,
        "forwarding went on while scrapers were stuck: {got} of {sent}"
    );
    // The worker publishes every 4096 loops: wait for a scrape that has the packets.
    let mut text = String::new();
    for _ in 0..100 {
        text = get(&addr, "/metrics").unwrap();
        if text.contains(&format!(
            "dp_worker_rx_packets_total{{worker=\"0\"}} {sent}\n"
        )) {
            break;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    assert!(
        text.contains(&format!(
            "dp_worker_rx_packets_total{{worker=\"0\"}} {sent}"
        )),
        "{text}"
    );
    let fin = runner.stop();
    // what did not arrive was counted: the sink's ring was full (this thread can be
    // descheduled on a loaded machine)
    let unsent: u64 = fin.iter().map(|s| s.tx_unsent + s.out.tx_full).sum();
    assert_eq!(got + unsent, sent);
    // every declared drop reason of every node is there, zero or not
    assert!(
        text.contains("dp_node_drops_total{worker=\"0\",node=\"ip4-lookup\""),
        "{text}"
    );
    assert!(
        text.contains("dp_node_drops_total{worker=\"0\",node=\"graph\",reason=\"frame-full\"} 0")
    );
    // Prometheus' own parser
    let dir = std::env::temp_dir().join(format!("router-metrics-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let f = dir.join("metrics.prom");
    std::fs::write(&f, &text).unwrap();
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
    drop(srv);
}
