//! Node counters reach the Prometheus text: a worker running `ethernet-input →
//! ip4-input → nat44 → ip4-lookup` translates inside UDP flows (NAT sessions and a
//! port block) towards a destination without a route (`ip4-lookup` answers with ICMP
//! destination unreachable, RFC 1812 §5.2.7.1), and `runner::prometheus` shows
//! `dp_node_level` / `dp_node_events_total` samples for both nodes.

use dataplane::batch::Batch;
use dataplane::buf::Pool;
use dataplane::port::{mem, Port};
use dataplane::runner::{prometheus, Runner, WorkerSpec};
use dataplane::stage::Pipeline;
use dataplane::stages::classify::Classify;
use dataplane::stages::ip4::{Ip4Input, Ip4Lookup};
use dataplane::stages::l3::{Iface, L3Builder, Net4};
use dataplane::stages::nat::{Nat44, NatConfig};
use std::net::Ipv4Addr;
use std::sync::Arc;
use std::time::{Duration, Instant};

const IN_MAC: [u8; 6] = [0x02, 0, 0, 0, 0, 1];
const OUT_MAC: [u8; 6] = [0x02, 0, 0, 0, 0, 2];
const FLOWS: u16 = 5;

/// An Ethernet/IPv4/UDP frame from 10.0.0.2:`sport` to 203.0.113.9:53.
fn udp_frame(sport: u16) -> Vec<u8> {
    let mut f = Vec::new();
    f.extend_from_slice(&IN_MAC);
    f.extend_from_slice(&[0x02, 0, 0, 0, 0, 0x99]);
    f.extend_from_slice(&[0x08, 0x00]);
    let payload = [0u8; 8];
    let udp_len = 8 + payload.len();
    let total = 20 + udp_len;
    let mut ip = [0u8; 20];
    ip[0] = 0x45;
    ip[2..4].copy_from_slice(&(total as u16).to_be_bytes());
    ip[8] = 64;
    ip[9] = 17;
    ip[12..16].copy_from_slice(&[10, 0, 0, 2]);
    ip[16..20].copy_from_slice(&[203, 0, 113, 9]);
    let c = dataplane::proto::checksum::internet(&ip);
    ip[10..12].copy_from_slice(&c.to_be_bytes());
    f.extend_from_slice(&ip);
    f.extend_from_slice(&sport.to_be_bytes());
    f.extend_from_slice(&53u16.to_be_bytes());
    f.extend_from_slice(&(udp_len as u16).to_be_bytes());
    f.extend_from_slice(&[0, 0]); // no UDP checksum (RFC 768)
    f.extend_from_slice(&payload);
    f
}

fn sample(text: &str, family: &str, node: &str, counter: &str) -> Option<f64> {
    let prefix = format!("{family}{{worker=\"0\",node=\"{node}\",counter=\"{counter}\"}} ");
    text.lines()
        .find_map(|l| l.strip_prefix(&prefix))
        .and_then(|v| v.trim().parse().ok())
}

#[test]
fn nat_and_ip4_counters_reach_prometheus() {
    let mut b = L3Builder::new(16, 64).unwrap();
    b.iface(Iface {
        name: "inside".into(),
        port: 0,
        mac: IN_MAC,
        v4: vec![Net4 {
            addr: Ipv4Addr::new(10, 0, 0, 1),
            len: 24,
        }],
        v6: Vec::new(),
        mtu: 1500,
    })
    .unwrap();
    b.iface(Iface {
        name: "outside".into(),
        port: 1,
        mac: OUT_MAC,
        v4: vec![Net4 {
            addr: Ipv4Addr::new(198, 51, 100, 254),
            len: 24,
        }],
        v6: Vec::new(),
        mtu: 1500,
    })
    .unwrap();
    let l3 = Arc::new(b.build());
    let nat = Nat44::new(&NatConfig {
        inside_ports: vec![0],
        pool: vec!["198.51.100.1".into()],
        max_sessions: 1024,
        max_subscribers: 16,
        ..NatConfig::default()
    })
    .unwrap();
    let mut pl = Pipeline::new();
    pl.push(Box::new(Classify::new(vec![IN_MAC, OUT_MAC])));
    pl.push(Box::new(Ip4Input::for_l3(&l3)));
    pl.push(Box::new(nat));
    pl.push(Box::new(Ip4Lookup::new(l3.clone())));

    let pool = Pool::new(1024).unwrap();
    let (mut gen, inside) = mem::pair("gen", "inside", 256).unwrap();
    let (_peer, outside) = mem::pair("peer", "outside", 256).unwrap();
    let spec = WorkerSpec::new(
        vec![Box::new(inside) as Box<dyn Port>, Box::new(outside)],
        pl,
        pool.cache(),
    );
    let r = Runner::start(vec![spec]).unwrap();
    let mut c = pool.cache();
    let mut batch = Batch::new();
    for sport in 0..FLOWS {
        let mut p = c.alloc().unwrap();
        p.copy_from(&udp_frame(40_000 + sport)).unwrap();
        batch.push(p).unwrap();
    }
    let sent = gen.tx_burst(&mut c, &mut batch);
    batch.free_all(&mut c);
    assert_eq!(sent, usize::from(FLOWS));

    // The worker publishes its counters periodically: wait until the ICMP errors
    // show up (draining them from the inside port as they come back).
    let t = Instant::now();
    let mut text = String::new();
    while t.elapsed() < Duration::from_secs(20) {
        let mut rb = Batch::new();
        gen.rx_burst(&mut c, &mut rb);
        rb.free_all(&mut c);
        text = r.prometheus();
        if sample(
            &text,
            "dp_node_events_total",
            "ip4-lookup",
            "icmp-errors-sent",
        ) == Some(f64::from(FLOWS))
        {
            break;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    let fin = r.stop();
    let last = prometheus(&fin);
    for t in [&text, &last] {
        let nat = |fam, ctr| sample(t, fam, "nat44", ctr);
        assert_eq!(
            nat("dp_node_level", "sessions-active"),
            Some(f64::from(FLOWS)),
            "{t}"
        );
        assert_eq!(nat("dp_node_level", "subscribers"), Some(1.0), "{t}");
        assert_eq!(nat("dp_node_level", "port-blocks-in-use"), Some(1.0), "{t}");
        assert_eq!(
            nat("dp_node_events_total", "sessions-created"),
            Some(f64::from(FLOWS)),
            "{t}"
        );
        assert_eq!(
            nat("dp_node_events_total", "port-blocks-allocated"),
            Some(1.0)
        );
        assert_eq!(
            nat("dp_node_events_total", "port-alloc-failures"),
            Some(0.0)
        );
        assert_eq!(
            sample(t, "dp_node_events_total", "ip4-lookup", "icmp-errors-sent"),
            Some(f64::from(FLOWS)),
            "{t}"
        );
        assert_eq!(
            sample(
                t,
                "dp_node_events_total",
                "ip4-lookup",
                "icmp-errors-rate-limited"
            ),
            Some(0.0)
        );
        assert!(t.contains("# TYPE dp_node_level gauge"));
        assert!(t.contains("# TYPE dp_node_events_total counter"));
    }
    // The no-route drops are counted under their (unchanged) reason name.
    assert!(
        last.contains("node=\"ip4-lookup\",reason=\"no route\"} 5"),
        "{last}"
    );
}
