//! The vCPE's graph in process: DHCP offers on the LAN, NAT and the firewall towards
//! the WAN, the static-key tunnel between two vCPEs both ways, the anti-spoofing
//! and no-SA drops, IKE starting towards its peer, and refused configurations.

mod common;
use common::*;
use vcpe::vnf::{LAN, WAN};

const A_LAN: [u8; 6] = [0x02, 0xc9, 0, 0, 0x0a, 0x01];
const A_WAN: [u8; 6] = [0x02, 0xc9, 0, 0, 0x0a, 0x02];
const B_LAN: [u8; 6] = [0x02, 0xc9, 0, 0, 0x0b, 0x01];
const B_WAN: [u8; 6] = [0x02, 0xc9, 0, 0, 0x0b, 0x02];
const GW: [u8; 6] = [0x02, 0, 0, 0, 0, 0xfe];
const H1: [u8; 6] = [0x02, 0, 0, 0, 1, 0x10];
const H2: [u8; 6] = [0x02, 0, 0, 0, 2, 0x20];

#[test]
fn dhcp_discover_gets_an_offer_from_the_pool() {
    let mut a = Dut::new(A);
    let o = a.send(LAN, &dhcp_discover(H1, 0x1234));
    assert_eq!(o.len(), 1, "{o:?}");
    let (port, f) = &o[0];
    assert_eq!(*port, LAN);
    let (src, _dst, proto, sp, dp) = ip_of(f).unwrap();
    assert_eq!((src, proto, sp, dp), ([192, 168, 1, 1], 17, 67, 68));
    // yiaddr (BOOTP offset 16) from the pool 192.168.1.100-199
    let m = &f[14 + 20 + 8..];
    assert_eq!(&m[4..8], &0x1234u32.to_be_bytes());
    assert_eq!(&m[16..19], &[192, 168, 1]);
    assert!((100..=199).contains(&m[19]), "{:?}", &m[16..20]);
    // a truncated request is counted, not answered, and nothing panics
    let d = dhcp_discover(H1, 1);
    for n in [20, 40, 60, 100] {
        assert!(a.send(LAN, &d[..n]).is_empty(), "{n}");
    }
}

#[test]
fn lan_traffic_is_natted_and_only_replies_come_back() {
    let mut a = Dut::new(A);
    a.neighbour([198, 51, 100, 1], GW);
    a.neighbour([192, 168, 1, 10], H1);
    let o = a.send(
        LAN,
        &udp(
            H1,
            A_LAN,
            [192, 168, 1, 10],
            [203, 0, 113, 5],
            40000,
            9999,
            b"out",
        ),
    );
    assert_eq!(o.len(), 1, "{o:?}");
    assert_eq!(o[0].0, WAN);
    assert_eq!(&o[0].1[..6], &GW);
    let (src, dst, _, sport, dport) = ip_of(&o[0].1).unwrap();
    assert_eq!(
        (src, dst, dport),
        ([198, 51, 100, 2], [203, 0, 113, 5], 9999)
    );
    // the reply maps back to the LAN host
    let o = a.send(
        WAN,
        &udp(
            GW,
            A_WAN,
            [203, 0, 113, 5],
            [198, 51, 100, 2],
            9999,
            sport,
            b"back",
        ),
    );
    assert_eq!(o.len(), 1, "{o:?}");
    assert_eq!(o[0].0, LAN);
    let (_, dst, _, _, dport) = ip_of(&o[0].1).unwrap();
    assert_eq!((dst, dport), ([192, 168, 1, 10], 40000));
    // another port of the same server: not a reply (address-and-port-dependent
    // filtering), dropped
    let o = a.send(
        WAN,
        &udp(
            GW,
            A_WAN,
            [203, 0, 113, 5],
            [198, 51, 100, 2],
            9998,
            sport,
            b"x",
        ),
    );
    assert!(o.is_empty(), "{o:?}");
    // straight to a LAN address from the WAN: a new connection, the firewall drops
    // it; with the tuple of the tracked connection, vcpe-select does (not NATed)
    let o = a.send(
        WAN,
        &udp(
            GW,
            A_WAN,
            [203, 0, 113, 5],
            [192, 168, 1, 10],
            9999,
            40001,
            b"x",
        ),
    );
    assert!(o.is_empty(), "{o:?}");
    let o = a.send(
        WAN,
        &udp(
            GW,
            A_WAN,
            [203, 0, 113, 5],
            [192, 168, 1, 10],
            9999,
            40000,
            b"x",
        ),
    );
    assert!(o.is_empty(), "{o:?}");
    let errs = a.graph.show_errors();
    assert!(errs.contains("firewall"), "{errs}");
    assert!(errs.contains("wan-to-lan"), "{errs}");
    assert!(errs.contains("nat44"), "{errs}");
}

#[test]
fn static_tunnel_carries_lan_to_lan_both_ways_without_nat() {
    let mut a = Dut::new(A);
    let mut b = Dut::new(B);
    a.neighbour([198, 51, 100, 3], B_WAN);
    a.neighbour([192, 168, 1, 10], H1);
    b.neighbour([198, 51, 100, 2], A_WAN);
    b.neighbour([192, 168, 2, 20], H2);
    let o = a.send(
        LAN,
        &udp(
            H1,
            A_LAN,
            [192, 168, 1, 10],
            [192, 168, 2, 20],
            5000,
            6000,
            b"hello b",
        ),
    );
    assert_eq!(o.len(), 1, "{o:?}");
    assert_eq!(o[0].0, WAN);
    let (src, dst, proto, _, _) = ip_of(&o[0].1).unwrap();
    assert_eq!(
        (src, dst, proto),
        ([198, 51, 100, 2], [198, 51, 100, 3], 50)
    );
    // SPI of the tunnel
    assert_eq!(&o[0].1[14 + 20..14 + 24], &0x1001u32.to_be_bytes());
    let o = b.send(WAN, &o[0].1);
    assert_eq!(o.len(), 1, "{o:?}");
    assert_eq!(o[0].0, LAN);
    assert_eq!(&o[0].1[..6], &H2);
    let (src, dst, _, sp, dp) = ip_of(&o[0].1).unwrap();
    assert_eq!(
        (src, dst, sp, dp),
        ([192, 168, 1, 10], [192, 168, 2, 20], 5000, 6000)
    );
    assert!(o[0].1.ends_with(b"hello b"));
    // and back, an ICMP echo from B's LAN
    let o = b.send(
        LAN,
        &icmp_echo(H2, B_LAN, [192, 168, 2, 20], [192, 168, 1, 10], 7),
    );
    assert_eq!(o.len(), 1, "{o:?}");
    assert_eq!(ip_of(&o[0].1).unwrap().2, 50);
    let o = a.send(WAN, &o[0].1);
    assert_eq!(o.len(), 1, "{o:?}");
    assert_eq!(o[0].0, LAN);
    let (src, dst, proto, _, _) = ip_of(&o[0].1).unwrap();
    assert_eq!((src, dst, proto), ([192, 168, 2, 20], [192, 168, 1, 10], 1));
    // the same packet again: a replay, dropped
    let again = {
        let o = b.send(
            LAN,
            &icmp_echo(H2, B_LAN, [192, 168, 2, 20], [192, 168, 1, 10], 8),
        );
        o[0].1.clone()
    };
    assert_eq!(a.send(WAN, &again).len(), 1);
    assert!(a.send(WAN, &again).is_empty());
    // a clear packet claiming to come from B's LAN: dropped before anything
    let o = a.send(
        WAN,
        &udp(
            B_WAN,
            A_WAN,
            [192, 168, 2, 20],
            [192, 168, 1, 10],
            1,
            2,
            b"spoof",
        ),
    );
    assert!(o.is_empty(), "{o:?}");
    // the same behind an 802.1Q tag
    let mut tagged = udp(
        B_WAN,
        A_WAN,
        [192, 168, 2, 20],
        [192, 168, 1, 10],
        1,
        2,
        b"spoof",
    );
    tagged.splice(12..12, [0x81, 0x00, 0x00, 0x05]);
    assert!(a.send(WAN, &tagged).is_empty());
    let errs = a.graph.show_errors();
    assert!(errs.contains("clear-tunnel-source"), "{errs}");
    assert!(errs.contains("replay"), "{errs}");
}

fn ike_config() -> String {
    let i = A.find("[tunnel.static]").unwrap();
    format!(
        "{}[tunnel.ike]\npsk = \"a long pre-shared secret\"\n",
        &A[..i]
    )
}

#[test]
fn ike_tunnel_without_sa_drops_instead_of_leaking_and_starts_ike() {
    let mut a = Dut::new(&ike_config());
    a.neighbour([198, 51, 100, 3], B_WAN);
    a.neighbour([192, 168, 1, 10], H1);
    let o = a.send(
        LAN,
        &udp(
            H1,
            A_LAN,
            [192, 168, 1, 10],
            [192, 168, 2, 20],
            5000,
            6000,
            b"early",
        ),
    );
    // nothing in clear; what leaves is IKE (UDP 500) to the peer
    for (port, f) in &o {
        let (src, dst, proto, sp, dp) = ip_of(f).unwrap();
        assert_eq!(
            (*port, src, dst, proto, sp, dp),
            (WAN, [198, 51, 100, 2], [198, 51, 100, 3], 17, 500, 500)
        );
    }
    assert!(!o.is_empty(), "the IKE_SA_INIT request goes out");
    let errs = a.graph.show_errors();
    assert!(errs.contains("no-sa"), "{errs}");
}

#[test]
fn bad_configurations_are_refused_with_the_field_named() {
    use vcpe::Config;
    let cases: &[(&str, &str, &str)] = &[
        ("spi_in = 0x2001", "spi_in = 7", "static.spi_in"),
        (
            "gateway = \"198.51.100.1\"",
            "gateway = \"10.0.0.1\"",
            "wan.gateway",
        ),
        (
            "remote = \"192.168.2.0/24\"",
            "remote = \"192.168.1.0/25\"",
            "remote",
        ),
        (
            "pool = [\"192.168.1.100-192.168.1.199\"]",
            "pool = [\"10.0.0.1-10.0.0.9\"]",
            "lan.dhcp.pool",
        ),
        (
            "key_in = \"fedcba9876543210fedcba9876543210a1a2a3a4\"",
            "key_in = \"fedcba98\"",
            "key",
        ),
        (
            "address = \"192.168.1.1/24\"",
            "address = \"192.168.1.1\"",
            "line",
        ),
        ("[nat]", "[nat]\nbogus = 1", "bogus"),
    ];
    for (from, to, want) in cases {
        assert!(A.contains(from), "{from}");
        let e = Config::from_toml(&A.replace(from, to)).unwrap_err();
        assert!(e.0.contains(want), "{to}: {e}");
        assert!(!e.0.contains('\n'), "one line: {e}");
    }
    let both = format!("{}[tunnel.ike]\npsk = \"a long pre-shared secret\"\n", A);
    let e = Config::from_toml(&both).unwrap_err();
    assert!(e.0.contains("not both"), "{e}");
    // keys and PSKs never print
    let c = Config::from_toml(A).unwrap();
    let dbg = format!("{c:?}");
    assert!(!dbg.contains("0123456789abcdef") && dbg.contains("<secret>"));
    let c = Config::from_toml(&ike_config()).unwrap();
    assert!(!format!("{c:?}").contains("pre-shared"));
}
