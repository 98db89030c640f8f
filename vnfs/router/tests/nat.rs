//! The router with `[nat]`, `[firewall]` and `[qos]` sections: inside traffic leaves
//! with a pool address, the reply comes back to the inside host, the firewall rule
//! drops telnet, and bad sections are refused with the section named.

use dataplane::batch::{Batch, Out};
use dataplane::buf::Pool;
use etherparse::{PacketBuilder, SlicedPacket, TransportSlice};
use vnf_router::{Config, Router};

const CFG: &str = include_str!("../examples/router-nat.toml");

fn run(
    r: &Router,
    pl: &mut dataplane::stage::Pipeline,
    out: &mut Out,
    port: u16,
    f: &[u8],
) -> Vec<(usize, Vec<u8>)> {
    let mut b = Batch::new();
    let mut p = out.cache.alloc().unwrap();
    p.copy_from(f).unwrap();
    p.meta.port = port;
    b.push(p).unwrap();
    out.now_ns += 1_000_000;
    pl.run(&mut b, out);
    b.free_all(&mut out.cache);
    let mut res = Vec::new();
    for (i, tx) in out.ports.iter_mut().enumerate() {
        let mut got = Vec::new();
        tx.drain(|p| got.push(p));
        for p in got {
            res.push((i, p.data().to_vec()));
            out.cache.free(p);
        }
    }
    let _ = r;
    res
}

#[test]
fn nat_firewall_qos_in_the_router() {
    let cfg = Config::from_toml(CFG).unwrap();
    let r = Router::build(&cfg, &[], None).unwrap();
    let names: Vec<_> = r.pipeline().nodes().map(|n| n.name).collect();
    assert!(
        names.contains(&"nat44") && names.contains(&"firewall"),
        "{names:?}"
    );
    let pool = Pool::new(1024).unwrap();
    let mut out = Out::new(2, pool.cache());
    out.now_ns = 1_000_000_000;
    let mut pl = r.pipeline();
    let host = [2, 0, 0, 0, 1, 0x10];
    let b = PacketBuilder::ethernet2(host, [2, 0, 0, 0, 1, 1])
        .ipv4([100, 64, 0, 10], [192, 0, 2, 80], 64)
        .udp(40000, 9999);
    let mut f = Vec::new();
    b.write(&mut f, b"out").unwrap();
    let o = run(&r, &mut pl, &mut out, 0, &f);
    assert_eq!(o.len(), 1, "{o:?}");
    assert_eq!(o[0].0, 1, "leaves on core");
    let s = SlicedPacket::from_ethernet(&o[0].1).unwrap();
    let (src, sport) = match (&s.net, &s.transport) {
        (Some(etherparse::NetSlice::Ipv4(ip)), Some(TransportSlice::Udp(u))) => {
            (ip.header().source(), u.source_port())
        }
        _ => panic!("not udp/ipv4"),
    };
    assert_eq!(&src[..3], &[203, 0, 113], "source from the pool: {src:?}");
    assert_eq!(
        s.net
            .as_ref()
            .map(|n| matches!(n, etherparse::NetSlice::Ipv4(ip) if ip.header().ttl() == 63)),
        Some(true)
    );
    // reply from the outside to the mapping
    let b = PacketBuilder::ethernet2([2, 0, 0, 0, 2, 2], [2, 0, 0, 0, 2, 1])
        .ipv4([192, 0, 2, 80], src, 60)
        .udp(9999, sport);
    let mut f = Vec::new();
    b.write(&mut f, b"back").unwrap();
    // the inside host must be resolvable: learn it by ARP first
    let mut arp = vec![0xff; 6];
    arp.extend_from_slice(&host);
    arp.extend_from_slice(&[0x08, 0x06, 0, 1, 8, 0, 6, 4, 0, 1]);
    arp.extend_from_slice(&host);
    arp.extend_from_slice(&[100, 64, 0, 10, 0, 0, 0, 0, 0, 0, 100, 64, 0, 1]);
    arp.resize(60, 0);
    let a = run(&r, &mut pl, &mut out, 0, &arp);
    assert_eq!(a.len(), 1, "ARP reply");
    let o = run(&r, &mut pl, &mut out, 1, &f);
    assert_eq!(o.len(), 1, "{o:?}");
    assert_eq!(o[0].0, 0, "back to access");
    let s = SlicedPacket::from_ethernet(&o[0].1).unwrap();
    match (&s.net, &s.transport) {
        (Some(etherparse::NetSlice::Ipv4(ip)), Some(TransportSlice::Udp(u))) => {
            assert_eq!(ip.header().destination(), [100, 64, 0, 10]);
            assert_eq!(u.destination_port(), 40000);
        }
        _ => panic!("not udp/ipv4"),
    }
    // telnet to the denied host is dropped by the firewall
    let b = PacketBuilder::ethernet2(host, [2, 0, 0, 0, 1, 1])
        .ipv4([100, 64, 0, 10], [192, 0, 2, 66], 64)
        .tcp(40001, 23, 1, 1000)
        .syn();
    let mut f = Vec::new();
    b.write(&mut f, &[]).unwrap();
    assert!(run(&r, &mut pl, &mut out, 0, &f).is_empty());
    let errs = pl.show_errors();
    assert!(errs.contains("firewall"), "{errs}");
}

#[test]
fn bad_sections_are_named() {
    let bad = CFG.replace("inside_ports = [0]", "inside_ports = [7]");
    let e = Config::from_toml(&bad).unwrap_err();
    assert!(e.0.contains("nat.inside_ports"), "{e}");
    // NAT runs on several workers (each owns a slice of the outside ports)
    let two = CFG.replace("workers = 1", "workers = 2");
    let c = Config::from_toml(&two).unwrap();
    let r = Router::build(&c, &[], None).unwrap();
    for w in 0..2 {
        assert!(r.pipeline_for(w, 2).nodes().any(|n| n.name == "nat44"));
    }
    let bad = CFG.replace("workers = 1", "workers = 2\ncores = [1]");
    assert!(Config::from_toml(&bad)
        .unwrap_err()
        .0
        .contains("engine.cores: 1 cores for 2 workers"));
    let bad = CFG.replace("pool = [\"203.0.113.0/30\"]", "pool = [\"203.0.113.0/99\"]");
    let cfg = Config::from_toml(&bad);
    let e = match cfg {
        Ok(c) => Router::build(&c, &[], None).unwrap_err(),
        Err(e) => e,
    };
    assert!(e.0.contains("nat"), "{e}");
}
