//! The router is a graph: `ethernet-input` branches by class, so an IPv4 packet
//! visits only the IPv4 nodes and an ARP request only `arp-input` (checked on the
//! decoded packet trace, VPP `show trace` style).

mod common;

use common::router;
use dataplane::batch::{Batch, Out};
use dataplane::buf::Pool;
use dataplane::stage::Trace;
use etherparse::PacketBuilder;

#[test]
fn packets_visit_only_the_nodes_of_their_protocol() {
    let r = router();
    let g = r.pipeline().describe();
    assert!(
        g.contains("ethernet-input -> arp-input, ip4-input, ip6-input"),
        "{g}"
    );
    let pool = Pool::new(64).unwrap();
    let mut out = Out::new(2, pool.cache());
    out.trace = Trace::new(64);
    out.now_ns = 1_000_000_000;
    let mut pl = r.pipeline();
    pl.trace_next(2);
    let mut b = Batch::new();
    // IPv4 UDP to the default route
    let mut v = Vec::new();
    PacketBuilder::ethernet2([2, 0, 0, 0, 1, 0x10], [2, 0, 0, 0, 1, 1])
        .ipv4([192, 0, 2, 10], [100, 64, 0, 1], 64)
        .udp(1234, 5678)
        .write(&mut v, b"graph")
        .unwrap();
    // ARP request for the router
    let mut a = vec![0xff; 6];
    a.extend_from_slice(&[2, 0, 0, 0, 1, 0x10, 0x08, 0x06, 0, 1, 8, 0, 6, 4, 0, 1]);
    a.extend_from_slice(&[2, 0, 0, 0, 1, 0x10, 192, 0, 2, 10]);
    a.extend_from_slice(&[0; 6]);
    a.extend_from_slice(&[192, 0, 2, 1]);
    for f in [&v, &a] {
        let mut p = out.cache.alloc().unwrap();
        p.copy_from(f).unwrap();
        b.push(p).unwrap();
    }
    pl.run(&mut b, &mut out);
    let t = out.trace.format();
    let (p1, p2) = t.split_once("Packet 2").unwrap();
    assert!(p1.contains("ethernet-input       -> ip4-input"), "{t}");
    assert!(p1.contains("ip4-rewrite"), "{t}");
    assert!(p1.contains("IPv4 192.0.2.10 > 100.64.0.1"), "decoded: {t}");
    assert!(p1.contains("UDP 1234 > 5678"), "decoded: {t}");
    assert!(!p1.contains("arp-input") && !p1.contains("ip6-"), "{t}");
    assert!(p2.contains("ethernet-input       -> arp-input"), "{t}");
    assert!(p2.contains("ARP who-has 192.0.2.1 tell 192.0.2.10"), "{t}");
    assert!(!p2.contains("ip4-") && !p2.contains("ip6-"), "{t}");
    for tx in out.ports.iter_mut() {
        tx.free_all(&mut out.cache);
    }
}

/// With `[ike]`, `esp-decrypt` follows `ip4-input` and `esp-encrypt` precedes
/// `ip4-lookup` (the outer packet is routed); without it the graph is unchanged.
#[test]
fn ipsec_gateway_adds_the_esp_nodes_around_the_ipv4_features() {
    let cfg = vnf_router::Config::from_toml(include_str!("../examples/router-ipsec.toml"))
        .expect("example");
    let r = vnf_router::Router::build(&cfg, &[], None).expect("build");
    assert!(!r.pipeline().describe().contains("esp-"));
    let q = ipsec::stage::StageQueues::new();
    let g = r.pipeline_ipsec(&q).describe();
    for edge in [
        "ip4-input -> esp-decrypt",
        "esp-decrypt -> esp-encrypt",
        "esp-encrypt -> ip4-lookup",
    ] {
        assert!(g.contains(edge), "{edge}: {g}");
    }
}
