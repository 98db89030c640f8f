//! Martian packets (RFC 1812 §5.3.7, §4.2.2.11, §5.3.5; RFC 4291 §2.5.2, §2.5.3,
//! §2.5.5.2, §2.5.6, §2.7) sent one at a time through the example router: each is
//! dropped under its own named reason and nothing at all leaves any port (no
//! forwarded frame, no ICMP error, no ARP request or Neighbor Solicitation).
//!
//! In the plain example router `ip4-lookup` follows `ip4-input`, so martian IPv4
//! destinations hit the FIB's drop routes there; in a router with firewall, NAT or
//! QoS between the two, `ip4-input` drops them before any feature sees them.

mod common;

use common::{router, run_frames};
use etherparse::PacketBuilder;

const ACCESS_MAC: [u8; 6] = [2, 0, 0, 0, 1, 1];
const HOST_MAC: [u8; 6] = [2, 0, 0, 0, 1, 0x10];

fn udp4(src: [u8; 4], dst: [u8; 4]) -> Vec<u8> {
    let mut v = Vec::new();
    PacketBuilder::ethernet2(HOST_MAC, ACCESS_MAC)
        .ipv4(src, dst, 64)
        .udp(1234, 5678)
        .write(&mut v, b"martian")
        .unwrap();
    v
}

fn v6(s: &str) -> [u8; 16] {
    s.parse::<std::net::Ipv6Addr>().unwrap().octets()
}

fn udp6(src: &str, dst: &str) -> Vec<u8> {
    let mut v = Vec::new();
    PacketBuilder::ethernet2(HOST_MAC, ACCESS_MAC)
        .ipv6(v6(src), v6(dst), 64)
        .udp(1234, 5678)
        .write(&mut v, b"martian6")
        .unwrap();
    v
}

/// Drops counted under `reason` by the node `node`.
fn drops(pl: &dataplane::stage::Pipeline, node: &str, reason: &str) -> u64 {
    pl.nodes()
        .filter(|n| n.name == node)
        .flat_map(|n| {
            n.errors
                .iter()
                .enumerate()
                .filter(|(_, r)| **r == reason)
                .map(|(i, _)| n.drops[i])
        })
        .sum()
}

#[test]
fn each_martian_is_dropped_with_its_reason_and_nothing_is_sent() {
    let r = router();
    // (frame, node, reason); the example router has 192.0.2.1/24 (access) and
    // 198.51.100.1/24 (core), 2001:db8:1::1/64 and fe80::1/64 on access, and a
    // default route for both families, so without the filter all of these would be
    // forwarded (or ARPed for).
    let cases: Vec<(Vec<u8>, &str, &str)> = vec![
        (
            udp4([192, 0, 2, 10], [127, 0, 0, 1]),
            "ip4-lookup",
            "martian destination: loopback 127.0.0.0/8",
        ),
        (
            udp4([192, 0, 2, 10], [0, 0, 0, 0]),
            "ip4-lookup",
            "martian destination: this network 0.0.0.0/8",
        ),
        (
            udp4([192, 0, 2, 10], [0, 1, 2, 3]),
            "ip4-lookup",
            "martian destination: this network 0.0.0.0/8",
        ),
        (
            udp4([0, 0, 0, 0], [100, 64, 0, 1]),
            "ip4-input",
            "martian source: this network 0.0.0.0/8",
        ),
        (
            udp4([192, 0, 2, 1], [100, 64, 0, 1]),
            "ip4-input",
            "martian source: one of our addresses",
        ),
        (
            udp4([198, 51, 100, 1], [100, 64, 0, 1]),
            "ip4-input",
            "martian source: one of our addresses",
        ),
        (
            udp4([127, 0, 0, 1], [100, 64, 0, 1]),
            "ip4-input",
            "martian source: loopback 127.0.0.0/8",
        ),
        (
            udp4([224, 0, 0, 5], [100, 64, 0, 1]),
            "ip4-input",
            "martian source: multicast or class E",
        ),
        (
            udp4([192, 0, 2, 10], [239, 1, 1, 1]),
            "ip4-lookup",
            "multicast destination not routed",
        ),
        (
            udp4([192, 0, 2, 10], [255, 255, 255, 255]),
            "ip4-lookup",
            "limited broadcast not forwarded",
        ),
        (
            udp4([192, 0, 2, 10], [240, 0, 0, 1]),
            "ip4-lookup",
            "martian destination: class E 240.0.0.0/4",
        ),
        // directed broadcast of the other connected subnet (and of our own)
        (
            udp4([192, 0, 2, 10], [198, 51, 100, 255]),
            "ip4-lookup",
            "directed broadcast not forwarded",
        ),
        (
            udp4([192, 0, 2, 10], [192, 0, 2, 255]),
            "ip4-lookup",
            "directed broadcast not forwarded",
        ),
        (
            udp6("2001:db8:1::10", "::1"),
            "ip6-input",
            "martian destination: loopback ::1",
        ),
        (
            udp6("2001:db8:1::10", "::"),
            "ip6-input",
            "martian destination: unspecified ::",
        ),
        (
            udp6("::", "2001:db8:99::1"),
            "ip6-input",
            "martian source: unspecified ::",
        ),
        (
            udp6("::1", "2001:db8:99::1"),
            "ip6-input",
            "martian source: loopback ::1",
        ),
        (
            udp6("ff02::1", "2001:db8:99::1"),
            "ip6-input",
            "martian source: multicast",
        ),
        (
            udp6("2001:db8:1::1", "2001:db8:99::1"),
            "ip6-input",
            "martian source: one of our addresses",
        ),
        (
            udp6("::ffff:192.0.2.10", "2001:db8:99::1"),
            "ip6-input",
            "martian source: IPv4-mapped ::ffff:0:0/96",
        ),
        (
            udp6("2001:db8:1::10", "::ffff:100.64.0.1"),
            "ip6-input",
            "martian destination: IPv4-mapped ::ffff:0:0/96",
        ),
        (
            udp6("fe80::10", "2001:db8:99::1"),
            "ip6-lookup",
            "link-local source not forwarded",
        ),
        (
            udp6("2001:db8:1::10", "fe80::99"),
            "ip6-lookup",
            "link-local destination not forwarded",
        ),
    ];
    for (frame, node, reason) in &cases {
        let (out, pl) = run_frames(&r, &[(0, frame.clone())]);
        let sent: usize = out.iter().map(Vec::len).sum();
        assert_eq!(
            sent,
            0,
            "{reason}: frames left the router: {:02x?}\n{}",
            out,
            pl.show_errors()
        );
        assert_eq!(
            drops(&pl, node, reason),
            1,
            "{node} {reason}:\n{}",
            pl.show_errors()
        );
    }
}

/// IPv4 destination martians from the inside of the NAT example (firewall, NAT44 and
/// a policer between `ip4-input` and `ip4-lookup`): each is dropped by `ip4-input`
/// under its reason, no feature node sees a packet, and nothing leaves.
#[test]
fn with_features_martian_destinations_never_reach_them() {
    let cfg = vnf_router::Config::from_toml(include_str!("../examples/router-nat.toml")).unwrap();
    let r = vnf_router::Router::build(&cfg, &[], None).unwrap();
    let cases: [([u8; 4], &str); 6] = [
        ([127, 0, 0, 1], "martian destination: loopback 127.0.0.0/8"),
        ([0, 1, 2, 3], "martian destination: this network 0.0.0.0/8"),
        ([239, 1, 1, 1], "multicast destination not routed"),
        ([255, 255, 255, 255], "limited broadcast not forwarded"),
        ([240, 0, 0, 1], "martian destination: class E 240.0.0.0/4"),
        ([198, 51, 100, 255], "directed broadcast not forwarded"),
    ];
    for (dst, reason) in cases {
        let (out, pl) = run_frames(&r, &[(0, udp4([100, 64, 0, 10], dst))]);
        assert!(out.iter().all(Vec::is_empty), "{reason}: {out:02x?}");
        assert_eq!(
            drops(&pl, "ip4-input", reason),
            1,
            "{reason}:\n{}",
            pl.show_errors()
        );
        let features: Vec<_> = pl
            .nodes()
            .filter(|n| {
                ["firewall", "nat44", "policer"]
                    .iter()
                    .any(|f| n.name.starts_with(f))
            })
            .collect();
        assert!(!features.is_empty(), "the NAT example has no feature nodes");
        for n in features {
            assert_eq!(n.packets, 0, "{reason}: {} saw the packet", n.name);
        }
    }
}

#[test]
fn no_arp_request_for_a_subnet_broadcast_but_one_for_a_host() {
    let r = router();
    let (out, pl) = run_frames(&r, &[(0, udp4([192, 0, 2, 10], [198, 51, 100, 255]))]);
    assert!(out.iter().all(Vec::is_empty), "{out:02x?}");
    assert_eq!(
        drops(&pl, "ip4-lookup", "directed broadcast not forwarded"),
        1
    );
    assert_eq!(drops(&pl, "ip4-rewrite", "ARP pending"), 0);
    // the neighbouring host address is still resolved as before
    let (out, _) = run_frames(&r, &[(0, udp4([192, 0, 2, 10], [198, 51, 100, 254]))]);
    let arps: Vec<_> = out[1]
        .iter()
        .filter(|f| f[12..14] == [0x08, 0x06])
        .collect();
    assert_eq!(arps.len(), 1, "{out:02x?}");
    assert_eq!(arps[0][38..42], [198, 51, 100, 254], "ARP target");
}

#[test]
fn legitimate_edge_addresses_still_pass() {
    let r = router();
    // 100.64/10, 192.0.2.254 (a host next to the broadcast), a /31-free network and
    // the router's own address as destination are not martians.
    for dst in [[100, 64, 0, 1], [198, 51, 100, 2], [1, 0, 0, 0]] {
        let (out, pl) = run_frames(&r, &[(0, udp4([192, 0, 2, 10], dst))]);
        assert_eq!(out[1].len(), 1, "{dst:?}: {}", pl.show_errors());
    }
    // a neighbour on the core link may use fe80::1, our link-local address on the
    // access link (link-local addresses are per link)
    let mut v = Vec::new();
    PacketBuilder::ethernet2([2, 0, 0, 0, 2, 2], [2, 0, 0, 0, 2, 1])
        .ipv6(v6("fe80::1"), v6("2001:db8:2::1"), 64)
        .icmpv6_echo_request(1, 1)
        .write(&mut v, b"ping")
        .unwrap();
    let (out, pl) = run_frames(&r, &[(1, v)]);
    assert_eq!(out[1].len(), 1, "echo reply: {}", pl.show_errors());
    // a DAD probe (source ::) still reaches Neighbor Discovery and is answered
    let mut ns = Vec::new();
    let target = v6("2001:db8:1::1");
    let mut body = vec![135u8, 0, 0, 0, 0, 0, 0, 0];
    body.extend_from_slice(&target);
    PacketBuilder::ethernet2(HOST_MAC, [0x33, 0x33, 0xff, 0, 0, 1])
        .ipv6(v6("::"), v6("ff02::1:ff00:1"), 255)
        .write(&mut ns, etherparse::IpNumber::IPV6_ICMP, &body)
        .unwrap();
    fix_icmpv6_checksum(&mut ns);
    let (out, pl) = run_frames(&r, &[(0, ns)]);
    assert_eq!(out[0].len(), 1, "NA for DAD: {}", pl.show_errors());
}

fn fix_icmpv6_checksum(f: &mut [u8]) {
    let ip = 14;
    let plen = usize::from(u16::from_be_bytes([f[ip + 4], f[ip + 5]]));
    let body = ip + 40;
    f[body + 2] = 0;
    f[body + 3] = 0;
    use dataplane::proto::{checksum, IpProtocol};
    let addr = |at: usize| {
        let mut a = [0u8; 16];
        a.copy_from_slice(&f[at..at + 16]);
        std::net::Ipv6Addr::from(a)
    };
    let ph = checksum::pseudo_header_v6(
        &addr(ip + 8),
        &addr(ip + 24),
        IpProtocol::ICMPV6,
        plen as u32,
    );
    let c = !checksum::add(ph, checksum::data(&f[body..body + plen]));
    f[body + 2..body + 4].copy_from_slice(&c.to_be_bytes());
}
