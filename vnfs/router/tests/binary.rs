//! The `router` binary end to end: a pcap in on the access port, a route file, the
//! forwarded frames in the core port's pcap, checked by tshark; a bad route file is
//! refused with its line number.

use etherparse::PacketBuilder;
use std::process::Command;

fn write_pcap(path: &std::path::Path, frames: &[Vec<u8>]) {
    use dataplane::batch::Batch;
    use dataplane::port::{pcap::PcapPort, Port};
    let pool = dataplane::buf::Pool::new(256).unwrap();
    let mut c = pool.cache();
    let mut w = PcapPort::open(None, Some(path)).unwrap();
    let mut b = Batch::new();
    for f in frames {
        let mut p = c.alloc().unwrap();
        p.copy_from(f).unwrap();
        b.push(p).unwrap();
    }
    w.tx_burst(&mut c, &mut b);
}

fn config(dir: &std::path::Path) -> String {
    format!(
        r#"
[[interface]]
name = "access"
port = "pcap:{d}/in0.pcap:{d}/out0.pcap"
mac = "02:00:00:00:01:01"
ipv4 = ["192.0.2.1/24"]

[[interface]]
name = "core"
port = "pcap::{d}/out1.pcap"
mac = "02:00:00:00:02:01"
ipv4 = ["198.51.100.1/24"]

[route_file]
path = "routes.txt"
next_hops = ["198.51.100.2", "198.51.100.3"]

[[neighbor]]
ip = "198.51.100.2"
mac = "02:00:00:00:02:02"

[[neighbor]]
ip = "198.51.100.3"
mac = "02:00:00:00:02:03"
"#,
        d = dir.display()
    )
}

#[test]
fn router_binary_forwards_a_pcap_by_route_file() {
    let dir = std::env::temp_dir().join(format!("router-bin-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(
        dir.join("routes.txt"),
        "# test routes\n100.64.0.0/10 0\n100.64.7.0/24 1\n2001:db8:99::/48 0\n",
    )
    .unwrap();
    std::fs::write(dir.join("router.toml"), config(&dir)).unwrap();
    let mut frames = Vec::new();
    for i in 0..100u8 {
        let b = PacketBuilder::ethernet2([2, 0, 0, 0, 1, 0x10], [2, 0, 0, 0, 1, 1])
            .ipv4([192, 0, 2, 10], [100, 64, i % 10, 1], 64)
            .udp(40000, 40001);
        let mut v = Vec::new();
        b.write(&mut v, &[i; 32]).unwrap();
        frames.push(v);
    }
    write_pcap(&dir.join("in0.pcap"), &frames);
    let out = Command::new(env!("CARGO_BIN_EXE_router"))
        .arg("--config")
        .arg(dir.join("router.toml"))
        .arg("--metrics")
        .arg(dir.join("metrics.prom"))
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{err}");
    assert!(err.contains("router ready"), "{err}");
    let metrics = std::fs::read_to_string(dir.join("metrics.prom")).unwrap();
    assert!(
        metrics.contains("dp_node_packets_total{worker=\"0\",node=\"ip4-rewrite\"} 100"),
        "{metrics}"
    );
    let ts = Command::new("tshark")
        .args([
            "-r",
            dir.join("out1.pcap").to_str().unwrap(),
            "-n",
            "-T",
            "fields",
            "-e",
            "eth.dst",
            "-e",
            "ip.ttl",
        ])
        .output()
        .expect("tshark is required (scripts/test installs it)");
    let text = String::from_utf8_lossy(&ts.stdout);
    assert_eq!(text.lines().count(), 100, "{text}");
    assert_eq!(
        text.lines()
            .filter(|l| l.starts_with("02:00:00:00:02:03\t63"))
            .count(),
        10,
        "{text}"
    );
    assert_eq!(
        text.lines()
            .filter(|l| l.starts_with("02:00:00:00:02:02\t63"))
            .count(),
        90,
        "{text}"
    );
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn bad_route_file_names_the_line() {
    let dir = std::env::temp_dir().join(format!("router-bad-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(dir.join("routes.txt"), "100.64.0.0/10 0\n100.64.7.0/33 1\n").unwrap();
    write_pcap(&dir.join("in0.pcap"), &[]);
    std::fs::write(dir.join("router.toml"), config(&dir)).unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_router"))
        .arg("--config")
        .arg(dir.join("router.toml"))
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("line 2"), "{err}");
    std::fs::remove_dir_all(&dir).unwrap();
}

fn run_router(dir: &std::path::Path, toml: &str, args: &[&str]) -> (bool, String) {
    std::fs::write(dir.join("router.toml"), toml).unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_router"))
        .arg("--config")
        .arg(dir.join("router.toml"))
        .args(args)
        .env("RUST_BACKTRACE", "0")
        .env("RUST_LIB_BACKTRACE", "0")
        .output()
        .unwrap();
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[test]
fn two_ports_on_one_pcap_file_are_refused() {
    let dir = std::env::temp_dir().join(format!("router-share-{}", std::process::id()));
    std::fs::create_dir_all(dir.join("sub")).unwrap();
    write_pcap(&dir.join("in0.pcap"), &[]);
    std::fs::write(dir.join("routes.txt"), "").unwrap();
    // core writes the access port's output through another spelling of the path
    let d = dir.display();
    let toml = config(&dir).replace(
        &format!("pcap::{d}/out1.pcap"),
        &format!("pcap::{d}/sub/../out0.pcap"),
    );
    let (ok, err) = run_router(&dir, &toml, &[]);
    assert!(!ok, "{err}");
    let line = err.lines().find(|l| l.contains("pcap")).unwrap_or("");
    assert!(
        line.contains("interface[1] (core).port: pcap output")
            && line.contains("out0.pcap is also the output of interface[0] (access)"),
        "{err}"
    );
    assert!(!err.contains("router ready"), "{err}");
    // writing over the input is refused as well
    let toml = config(&dir).replace(
        &format!("pcap::{d}/out1.pcap"),
        &format!("pcap::{d}/in0.pcap"),
    );
    let (ok, err) = run_router(&dir, &toml, &[]);
    assert!(
        !ok && err.contains("is also the input of interface[0] (access)"),
        "{err}"
    );
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn oversize_pcap_frames_are_counted() {
    let dir = std::env::temp_dir().join(format!("router-big-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(dir.join("routes.txt"), "100.64.0.0/10 0\n").unwrap();
    {
        use pcap_file::pcap::{PcapPacket, PcapWriter};
        let f = std::fs::File::create(dir.join("in0.pcap")).unwrap();
        let mut w = PcapWriter::new(f).unwrap();
        for len in [3000usize, 9000] {
            let mut v = Vec::new();
            PacketBuilder::ethernet2([2, 0, 0, 0, 1, 0x10], [2, 0, 0, 0, 1, 1])
                .ipv4([192, 0, 2, 10], [100, 64, 0, 1], 64)
                .udp(1, 2)
                .write(&mut v, &vec![0u8; len - 42])
                .unwrap();
            w.write_packet(&PcapPacket::new(
                std::time::Duration::ZERO,
                v.len() as u32,
                &v,
            ))
            .unwrap();
        }
    }
    let (ok, err) = run_router(&dir, &config(&dir), &[]);
    assert!(ok, "{err}");
    assert!(
        err.contains("in0.pcap: rx 0 tx 0 rx_dropped 2"),
        "two oversize frames counted as rx_dropped:\n{err}"
    );
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn huge_sizes_are_refused_before_allocating() {
    let dir = std::env::temp_dir().join(format!("router-huge-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    write_pcap(&dir.join("in0.pcap"), &[]);
    std::fs::write(dir.join("routes.txt"), "").unwrap();
    for (engine, want) in [
        (
            "neighbors = 18446744073709551615",
            "engine.neighbors: 18446744073709551615 is not in 0..=4194304",
        ),
        ("neighbors = 4611686018427387904", "engine.neighbors:"),
        ("neighbors = 1099511627776", "engine.neighbors:"),
        ("trace = 1099511627776", "engine.trace:"),
        ("pool_buffers = 4294967295", "engine.pool_buffers:"),
    ] {
        let toml = format!("[engine]\n{engine}\n{}", config(&dir));
        let (ok, err) = run_router(&dir, &toml, &[]);
        assert!(!ok, "{engine}: {err}");
        assert!(err.contains(want), "{engine}: {err}");
        assert_eq!(err.trim().lines().count(), 1, "{err}");
    }
    let (ok, err) = run_router(&dir, &config(&dir), &["--trace", "4294967295"]);
    assert!(
        !ok && err.contains("--trace: 4294967295 is not in 0..=16384"),
        "{err}"
    );
    std::fs::remove_dir_all(&dir).unwrap();
}

/// `--show-graph` of an IPsec gateway shows where the ESP nodes sit.
#[test]
fn show_graph_of_the_ipsec_example_has_the_esp_nodes() {
    let ex = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("examples/router-ipsec.toml");
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_router"))
        .arg("--config")
        .arg(&ex)
        .arg("--show-graph")
        .output()
        .expect("run router");
    let g = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    for edge in ["ip4-input -> esp-decrypt", "esp-encrypt -> ip4-lookup"] {
        assert!(g.contains(edge), "{edge}: {g}");
    }
}
