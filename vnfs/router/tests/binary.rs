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
