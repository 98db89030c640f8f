//! Tests of the NAT stage, one or more per RFC requirement.

use super::log::LogEvent;
use super::*;
use crate::buf::Pool as BufPool;
use crate::proto::checksum;
use ::alloc::vec::Vec;
use etherparse::{PacketBuilder, SlicedPacket, TransportSlice};

const IN: u16 = 0;
const OUT: u16 = 1;
const EXT: [u8; 4] = [198, 51, 100, 1];
const SEC: u64 = 1_000_000_000;

fn cfg() -> NatConfig {
    NatConfig {
        inside_ports: vec![IN],
        pool: vec!["198.51.100.1".into()],
        max_sessions: 4096,
        max_subscribers: 256,
        ..NatConfig::default()
    }
}

struct H {
    nat: Nat44,
    out: Out,
    node: NodeStats,
    now: u64,
}

fn ip(a: [u8; 4]) -> u32 {
    u32::from_be_bytes(a)
}

impl H {
    fn new(c: NatConfig) -> H {
        let pool = BufPool::new(512).unwrap();
        let nat = Nat44::new(&c).unwrap();
        H {
            node: NodeStats::new("nat44", nat.errors()),
            nat,
            out: Out::new(2, pool.cache()),
            now: 10 * SEC,
        }
    }

    /// Runs one frame through the stage; returns the frame if kept.
    fn run(&mut self, port: u16, frame: &[u8]) -> Option<Vec<u8>> {
        let mut p = self.out.cache.alloc().unwrap();
        p.copy_from(frame).unwrap();
        p.meta.port = port;
        let mut b = Batch::new();
        b.push(p).unwrap();
        self.out.now_ns = self.now;
        self.nat.process(&mut b, &mut self.node, &mut self.out);
        let r = b.iter().next().map(|p| p.data().to_vec());
        b.free_all(&mut self.out.cache);
        r
    }

    fn drops(&self, r: NatDrop) -> u64 {
        self.node.drops[usize::from(r.code())]
    }

    /// Frames the stage transmitted itself (ICMP errors) on `port`.
    fn sent(&mut self, port: usize) -> Vec<Vec<u8>> {
        let mut v = Vec::new();
        let b = &mut self.out.ports[port];
        b.drain(|p| {
            v.push(p.data().to_vec());
            p.pool().free(p)
        });
        v
    }
}

fn udp(src: [u8; 4], sp: u16, dst: [u8; 4], dp: u16) -> Vec<u8> {
    let b = PacketBuilder::ethernet2([2, 0, 0, 0, 0, 1], [2, 0, 0, 0, 0, 2])
        .ipv4(src, dst, 64)
        .udp(sp, dp);
    let mut v = Vec::new();
    b.write(&mut v, b"payload!").unwrap();
    v
}

/// A UDP frame with `n` bytes of patterned payload.
fn udp_len(src: [u8; 4], sp: u16, dst: [u8; 4], dp: u16, n: usize) -> Vec<u8> {
    let b = PacketBuilder::ethernet2([2, 0, 0, 0, 0, 1], [2, 0, 0, 0, 0, 2])
        .ipv4(src, dst, 64)
        .udp(sp, dp);
    let payload: Vec<u8> = (0..n).map(|i| (i * 7 + 3) as u8).collect();
    let mut v = Vec::new();
    b.write(&mut v, &payload).unwrap();
    v
}

fn tcp(src: [u8; 4], sp: u16, dst: [u8; 4], dp: u16, flags: &str) -> Vec<u8> {
    let mut b = PacketBuilder::ethernet2([2, 0, 0, 0, 0, 1], [2, 0, 0, 0, 0, 2])
        .ipv4(src, dst, 64)
        .tcp(sp, dp, 1000, 65535);
    for f in flags.chars() {
        b = match f {
            'S' => b.syn(),
            'A' => b.ack(2000),
            'F' => b.fin(),
            'R' => b.rst(),
            _ => b,
        };
    }
    let mut v = Vec::new();
    b.write(&mut v, b"").unwrap();
    v
}

fn echo(src: [u8; 4], dst: [u8; 4], id: u16, reply: bool) -> Vec<u8> {
    let b = PacketBuilder::ethernet2([2, 0, 0, 0, 0, 1], [2, 0, 0, 0, 0, 2]).ipv4(src, dst, 64);
    let b = if reply {
        b.icmpv4_echo_reply(id, 1)
    } else {
        b.icmpv4_echo_request(id, 1)
    };
    let mut v = Vec::new();
    b.write(&mut v, b"ping-data").unwrap();
    v
}

/// (src, sport, dst, dport) of a frame; panics (test) on non-TCP/UDP/ICMP echo.
fn tuple(f: &[u8]) -> ([u8; 4], u16, [u8; 4], u16) {
    let s = SlicedPacket::from_ethernet(f).unwrap();
    let Some(etherparse::NetSlice::Ipv4(ip)) = s.net else {
        panic!("not ipv4")
    };
    let (a, b) = (ip.header().source(), ip.header().destination());
    match s.transport.unwrap() {
        TransportSlice::Udp(u) => (a, u.source_port(), b, u.destination_port()),
        TransportSlice::Tcp(t) => (a, t.source_port(), b, t.destination_port()),
        TransportSlice::Icmpv4(i) => {
            let h = i.header();
            let id = match h.icmp_type {
                etherparse::Icmpv4Type::EchoRequest(e) | etherparse::Icmpv4Type::EchoReply(e) => {
                    e.id
                }
                _ => 0,
            };
            (a, id, b, id)
        }
        _ => panic!("transport"),
    }
}

/// IP header and L4 checksums verify.
fn checksums_ok(f: &[u8]) -> bool {
    let ipb = &f[14..];
    let ihl = usize::from(ipb[0] & 15) * 4;
    let tl = usize::from(u16::from_be_bytes([ipb[2], ipb[3]]));
    if !checksum::verify(&ipb[..ihl]) {
        return false;
    }
    let l4 = &ipb[ihl..tl];
    match ipb[9] {
        1 => checksum::verify(l4),
        p => {
            let ph = checksum::pseudo_header_v4(
                Ipv4Addr::new(ipb[12], ipb[13], ipb[14], ipb[15]),
                Ipv4Addr::new(ipb[16], ipb[17], ipb[18], ipb[19]),
                crate::proto::IpProtocol(p),
                l4.len() as u16,
            );
            checksum::add(ph, checksum::data(l4)) == 0xffff
        }
    }
}

#[test]
fn config_from_toml_like_values() {
    assert!(parse_pool_entry("198.51.100.0/30").is_ok_and(|r| r == (0xc633_6400, 0xc633_6403)));
    assert!(parse_pool_entry("10.0.0.1-10.0.0.4").is_ok());
    assert!(parse_pool_entry("10.0.0.4-10.0.0.1").is_err());
    assert!(parse_pool_entry("nonsense").is_err());
    let mut c = cfg();
    c.pool.clear();
    assert_eq!(Nat44::new(&c).err(), Some(ConfigError::EmptyPool));
    let mut c = cfg();
    c.cgnat = Some(CgnatConfig {
        block_size: 4,
        ..CgnatConfig::default()
    });
    assert_eq!(Nat44::new(&c).err(), Some(ConfigError::BadBlockSize));
}

#[test]
fn sizes_and_inside_ports_are_checked_before_allocating() {
    // Each of these used to be accepted (or allocated terabytes) before; the error
    // names the field once, without a "nat:" prefix (the caller adds the section).
    type Case = (fn(&mut NatConfig), &'static str);
    let cases: [Case; 6] = [
        (
            |c| c.max_sessions = u32::MAX,
            "max_sessions: 4294967295 is not in 1..=16777216",
        ),
        (|c| c.max_sessions = 1 << 28, "max_sessions"),
        (|c| c.log_capacity = u32::MAX, "log_capacity"),
        (|c| c.max_subscribers = 0, "max_subscribers"),
        (
            |c| c.inside_ports = vec![0, 0],
            "inside_ports: port 0 listed twice",
        ),
        (
            |c| c.inside_ports = vec![64],
            "inside_ports: 64 is not in 0..=63",
        ),
    ];
    for (f, want) in cases {
        let mut c = cfg();
        f(&mut c);
        let e = c.validate().unwrap_err();
        let msg = ::alloc::format!("{e}");
        assert!(msg.starts_with(want), "{msg}");
        assert!(!msg.contains("nat:") && !msg.contains('\n'), "{msg}");
        assert_eq!(Nat44::new(&c).err(), Some(e));
    }
    assert!(cfg().validate().is_ok());
    let mut c = cfg();
    c.cgnat = Some(CgnatConfig {
        sessions_per_subscriber: 0,
        ..CgnatConfig::default()
    });
    assert!(c.validate().is_err());
    let mut c = cfg();
    c.pool = vec!["10.0.0.0/8".into()];
    assert_eq!(c.validate(), Err(ConfigError::PoolTooLarge));
    c.pool = vec!["10.0.0.0/30".into(), "10.0.1.0/31".into()];
    assert_eq!(
        c.pool_ranges().unwrap(),
        vec![(0x0a00_0000, 0x0a00_0003), (0x0a00_0100, 0x0a00_0101)]
    );
}

#[test]
fn req1_endpoint_independent_mapping() {
    let mut h = H::new(cfg());
    let a = h
        .run(IN, &udp([10, 0, 0, 1], 5000, [192, 0, 2, 1], 53))
        .unwrap();
    let b = h
        .run(IN, &udp([10, 0, 0, 1], 5000, [192, 0, 2, 2], 123))
        .unwrap();
    let (sa, pa, _, _) = tuple(&a);
    let (sb, pb, _, _) = tuple(&b);
    assert_eq!(sa, EXT);
    assert_eq!((sa, pa), (sb, pb), "same mapping for any remote endpoint");
    assert!(checksums_ok(&a) && checksums_ok(&b));
    assert_eq!(h.nat.mapping_count(), 1);
    assert_eq!(h.nat.session_count(), 2);
}

#[test]
fn req1_address_and_port_dependent_mapping_option() {
    let mut c = cfg();
    c.mapping = Behavior::AddressAndPortDependent;
    let mut h = H::new(c);
    let a = h
        .run(IN, &udp([10, 0, 0, 1], 5000, [192, 0, 2, 1], 53))
        .unwrap();
    let b = h
        .run(IN, &udp([10, 0, 0, 1], 5000, [192, 0, 2, 1], 54))
        .unwrap();
    assert_ne!(tuple(&a).1, tuple(&b).1);
    assert_eq!(h.nat.mapping_count(), 2);
}

#[test]
fn req2_paired_pooling_and_req3_no_overloading() {
    let mut c = cfg();
    c.pool = vec!["198.51.100.0/29".into()];
    let mut h = H::new(c);
    let mut seen = Vec::new();
    for host in 1..=20u8 {
        let mut addrs = Vec::new();
        for port in 0..40u16 {
            let f = h
                .run(IN, &udp([10, 0, 0, host], 2000 + port, [192, 0, 2, 1], 53))
                .unwrap();
            let (s, p, _, _) = tuple(&f);
            addrs.push(s);
            seen.push((s, p));
        }
        addrs.dedup();
        assert_eq!(addrs.len(), 1, "host {host} uses one outside address");
    }
    let n = seen.len();
    seen.sort();
    seen.dedup();
    assert_eq!(seen.len(), n, "no outside endpoint used twice (REQ-3)");
    let outs: std::collections::BTreeSet<_> = seen.iter().map(|x| x.0).collect();
    assert!(outs.len() > 1, "hosts spread over the pool");
}

#[test]
fn req5_req6_udp_timeout_and_outbound_refresh() {
    let mut h = H::new(cfg());
    let f = udp([10, 0, 0, 1], 5000, [192, 0, 2, 1], 53);
    let p1 = tuple(&h.run(IN, &f).unwrap()).1;
    // Refreshed every 200 s: stays for 1000 s.
    for _ in 0..5 {
        h.now += 200 * SEC;
        h.nat.expire(h.now, 1 << 20);
        assert_eq!(tuple(&h.run(IN, &f).unwrap()).1, p1);
    }
    assert_eq!(h.nat.stats.sessions_expired, 0);
    // Inbound still reaches it.
    let back = udp([192, 0, 2, 1], 53, EXT, p1);
    assert_eq!(tuple(&h.run(OUT, &back).unwrap()).2, [10, 0, 0, 1]);
    // 301 s idle: gone, inbound dropped.
    h.now += 301 * SEC;
    assert_eq!(h.nat.expire(h.now, 1 << 20), 1);
    assert_eq!(h.nat.session_count(), 0);
    assert_eq!(h.nat.mapping_count(), 0);
    assert!(h.run(OUT, &back).is_none());
    assert_eq!(h.drops(NatDrop::NoSession), 1);
}

#[test]
fn lazy_expiry_on_lookup() {
    let mut h = H::new(cfg());
    let f = udp([10, 0, 0, 1], 5000, [192, 0, 2, 1], 53);
    let p1 = tuple(&h.run(IN, &f).unwrap()).1;
    h.now += 400 * SEC;
    // No tick ran: the inbound lookup itself must see the session as expired.
    assert!(h.run(OUT, &udp([192, 0, 2, 1], 53, EXT, p1)).is_none());
    assert_eq!(h.nat.session_count(), 0);
}

#[test]
fn req8_filtering_behaviours() {
    for (beh, same_host_other_port, other_host) in [
        (Behavior::EndpointIndependent, true, true),
        (Behavior::AddressDependent, true, false),
        (Behavior::AddressAndPortDependent, false, false),
    ] {
        let mut c = cfg();
        c.filtering = beh;
        let mut h = H::new(c);
        let p = tuple(
            &h.run(IN, &udp([10, 0, 0, 1], 5000, [192, 0, 2, 1], 53))
                .unwrap(),
        )
        .1;
        assert!(
            h.run(OUT, &udp([192, 0, 2, 1], 53, EXT, p)).is_some(),
            "{beh:?} exact"
        );
        let r = h.run(OUT, &udp([192, 0, 2, 1], 99, EXT, p));
        assert_eq!(r.is_some(), same_host_other_port, "{beh:?} same host");
        if let Some(r) = r {
            assert_eq!(tuple(&r).2, [10, 0, 0, 1]);
        }
        let r = h.run(OUT, &udp([203, 0, 113, 5], 53, EXT, p));
        assert_eq!(r.is_some(), other_host, "{beh:?} other host");
    }
    // Nothing mapped at all: unsolicited, dropped.
    let mut h = H::new(cfg());
    assert!(h.run(OUT, &udp([192, 0, 2, 1], 53, EXT, 4000)).is_none());
    assert_eq!(h.drops(NatDrop::NoSession), 1);
}

#[test]
fn not_for_pool_passes_untouched() {
    let mut h = H::new(cfg());
    let f = udp([192, 0, 2, 1], 53, [203, 0, 113, 9], 4000);
    assert_eq!(h.run(OUT, &f).unwrap(), f);
    let arp = [0xffu8; 60];
    assert!(h.run(IN, &arp).is_some());
    // DHCP discover and multicast from inside are not translated.
    let dhcp = udp([0, 0, 0, 0], 68, [255, 255, 255, 255], 67);
    assert_eq!(h.run(IN, &dhcp).unwrap(), dhcp);
    let mdns = udp([10, 0, 0, 1], 5353, [224, 0, 0, 251], 5353);
    assert_eq!(h.run(IN, &mdns).unwrap(), mdns);
    assert_eq!(h.nat.session_count(), 0);
}

#[test]
fn req9_hairpinning_uses_outside_source() {
    let mut h = H::new(cfg());
    // B opens a mapping.
    let pb = tuple(
        &h.run(IN, &udp([10, 0, 0, 2], 7000, [192, 0, 2, 1], 53))
            .unwrap(),
    )
    .1;
    // A sends to B's outside endpoint.
    let r = h.run(IN, &udp([10, 0, 0, 1], 5000, EXT, pb)).unwrap();
    let (s, sp, d, dp) = tuple(&r);
    assert_eq!((d, dp), ([10, 0, 0, 2], 7000), "delivered to B");
    assert_eq!(s, EXT, "source is A's outside address (REQ-9a)");
    let pa = h
        .nat
        .lookup_in2out(&Flow {
            src: ip([10, 0, 0, 1]),
            sport: 5000,
            dst: ip(EXT),
            dport: pb,
            proto: UDP,
        })
        .unwrap()
        .1;
    assert_eq!(sp, pa);
    assert!(checksums_ok(&r));
    // B answers A's outside endpoint: hairpinned back to A.
    let r = h.run(IN, &udp([10, 0, 0, 2], 7000, EXT, pa)).unwrap();
    assert_eq!(tuple(&r), (EXT, pb, [10, 0, 0, 1], 5000));
    assert_eq!(h.nat.stats.hairpinned, 2);
    // TCP hairpin too (RFC 5382 REQ-2).
    let pt = tuple(
        &h.run(IN, &tcp([10, 0, 0, 2], 8080, [192, 0, 2, 1], 80, "S"))
            .unwrap(),
    )
    .1;
    let r = h.run(IN, &tcp([10, 0, 0, 1], 6000, EXT, pt, "S")).unwrap();
    assert_eq!(tuple(&r).2, [10, 0, 0, 2]);
    assert!(checksums_ok(&r));
}

#[test]
fn rfc5508_icmp_query_mapping() {
    let mut h = H::new(cfg());
    let r = h
        .run(IN, &echo([10, 0, 0, 1], [192, 0, 2, 1], 0x1234, false))
        .unwrap();
    let (s, id, _, _) = tuple(&r);
    assert_eq!(s, EXT);
    assert!(checksums_ok(&r));
    let back = h.run(OUT, &echo([192, 0, 2, 1], EXT, id, true)).unwrap();
    let (_, id2, d, _) = tuple(&back);
    assert_eq!((d, id2), ([10, 0, 0, 1], 0x1234));
    assert!(checksums_ok(&back));
    // Two hosts using the same identifier get different outside identifiers.
    let r2 = h
        .run(IN, &echo([10, 0, 0, 2], [192, 0, 2, 1], 0x1234, false))
        .unwrap();
    assert!(tuple(&r2).0 != s || tuple(&r2).1 != id);
    // ICMP timeout 60 s.
    h.now += 61 * SEC;
    h.nat.expire(h.now, 1 << 20);
    assert_eq!(h.nat.session_count(), 0);
}

/// An ICMP error from `from` about frame `orig` (Ethernet stripped), built with our
/// own builder.
fn icmp_error_about(from: [u8; 4], orig: &[u8], ty: u8) -> Vec<u8> {
    let mut buf = [0u8; 600];
    let n = icmpv4::build_error(
        &mut buf,
        &orig[14..],
        Ipv4Addr::from(from),
        64,
        if ty == 3 {
            ErrorKind::DstUnreachable {
                code: 3,
                next_hop_mtu: 0,
            }
        } else {
            ErrorKind::TimeExceeded { code: 0 }
        },
        QuoteLimit::Rfc1812,
    )
    .unwrap();
    let mut v = orig[..14].to_vec();
    v.extend_from_slice(&buf[..n]);
    v
}

#[test]
fn rfc5508_req3_icmp_error_inner_translation_inbound() {
    let mut h = H::new(cfg());
    for (proto_tcp, orig) in [
        (false, udp([10, 0, 0, 1], 5000, [192, 0, 2, 1], 53)),
        (true, tcp([10, 0, 0, 1], 5001, [192, 0, 2, 1], 80, "S")),
    ] {
        let sent = h.run(IN, &orig).unwrap();
        let (_, ep, _, _) = tuple(&sent);
        // A router on the path answers with an error quoting what it received.
        let err = icmp_error_about([203, 0, 113, 254], &sent, 11);
        let r = h.run(OUT, &err).unwrap();
        // Outer: to the inside host; ICMP checksum valid.
        assert_eq!(&r[30..34], &[10, 0, 0, 1]);
        assert!(checksums_ok(&r), "outer checksums");
        // Inner: the original packet as the host sent it, IP checksum valid.
        let inner = &r[14 + 20 + 8..];
        assert_eq!(&inner[12..16], &[10, 0, 0, 1]);
        assert_eq!(
            u16::from_be_bytes([inner[20], inner[21]]),
            if proto_tcp { 5001 } else { 5000 }
        );
        assert!(checksum::verify(&inner[..20]));
        // The quoted L4 checksum equals the original one (fully restored).
        let oc = if proto_tcp { 14 + 20 + 16 } else { 14 + 20 + 6 };
        assert_eq!(&inner[20 + oc - 34..20 + oc - 34 + 2], &orig[oc..oc + 2]);
        assert_ne!(ep, 0);
    }
    assert_eq!(h.nat.stats.icmp_errors_translated, 2);
    // An error about a flow we never saw is dropped (REQ-4), the sessions stay.
    let stray = icmp_error_about([203, 0, 113, 254], &udp(EXT, 9999, [192, 0, 2, 1], 53), 3);
    assert!(h.run(OUT, &stray).is_none());
    assert_eq!(h.drops(NatDrop::IcmpErrorNoSession), 1);
    assert_eq!(h.nat.session_count(), 2);
}

#[test]
fn rfc5508_icmp_error_outbound_and_about_echo() {
    let mut h = H::new(cfg());
    let p = tuple(
        &h.run(IN, &udp([10, 0, 0, 1], 5000, [192, 0, 2, 1], 53))
            .unwrap(),
    )
    .1;
    let delivered = h.run(OUT, &udp([192, 0, 2, 1], 53, EXT, p)).unwrap();
    // The inside host answers port unreachable about what it received.
    let err = icmp_error_about([10, 0, 0, 1], &delivered, 3);
    let r = h.run(IN, &err).unwrap();
    assert_eq!(&r[26..30], &EXT, "outer source translated");
    assert!(checksums_ok(&r));
    let inner = &r[42..];
    assert_eq!(&inner[16..20], &EXT);
    assert_eq!(u16::from_be_bytes([inner[22], inner[23]]), p);
    assert!(checksum::verify(&inner[..20]));
    // Error about an echo request.
    let e = h
        .run(IN, &echo([10, 0, 0, 1], [192, 0, 2, 1], 77, false))
        .unwrap();
    let err = icmp_error_about([203, 0, 113, 254], &e, 11);
    let r = h.run(OUT, &err).unwrap();
    assert!(checksums_ok(&r));
    let inner = &r[42..];
    assert_eq!(
        u16::from_be_bytes([inner[24], inner[25]]),
        77,
        "inner identifier restored"
    );
    assert!(
        checksum::verify(&inner[20..]),
        "inner echo checksum restored"
    );
}

#[test]
fn rfc5382_tcp_states_and_timeouts() {
    let mut h = H::new(cfg());
    let c = [10, 0, 0, 1];
    let s = [192, 0, 2, 1];
    let p = tuple(&h.run(IN, &tcp(c, 4000, s, 80, "S")).unwrap()).1;
    h.run(OUT, &tcp(s, 80, EXT, p, "SA")).unwrap();
    h.run(IN, &tcp(c, 4000, s, 80, "A")).unwrap();
    // Established: survives 2 h idle.
    h.now += 7200 * SEC;
    h.nat.expire(h.now, 1 << 20);
    assert_eq!(h.nat.session_count(), 1);
    // FIN both ways: transitory, gone after 4 min.
    h.run(IN, &tcp(c, 4000, s, 80, "FA")).unwrap();
    h.run(OUT, &tcp(s, 80, EXT, p, "FA")).unwrap();
    h.now += 241 * SEC;
    h.nat.expire(h.now, 1 << 20);
    assert_eq!(h.nat.session_count(), 0);
    // A half-open (SYN only) session is transitory.
    h.run(IN, &tcp(c, 4001, s, 80, "S")).unwrap();
    h.now += 241 * SEC;
    h.nat.expire(h.now, 1 << 20);
    assert_eq!(h.nat.session_count(), 0);
    // Unsolicited inbound SYN: dropped silently (REQ-4), no ICMP sent.
    assert!(h.run(OUT, &tcp(s, 80, EXT, 3333, "S")).is_none());
    assert!(h.sent(OUT as usize).is_empty());
}

#[test]
fn cgnat_port_exhaustion_of_one_subscriber_leaves_others_alone() {
    let mut c = cfg();
    c.cgnat = Some(CgnatConfig {
        block_size: 8,
        blocks_per_subscriber: 2,
        sessions_per_subscriber: 1000,
        log: true,
    });
    let mut h = H::new(c);
    let a = [100, 64, 0, 1];
    let b = [100, 64, 0, 2];
    let first_a = udp(a, 1000, [192, 0, 2, 1], 53);
    let pa = tuple(&h.run(IN, &first_a).unwrap()).1;
    for i in 1..16 {
        assert!(h.run(IN, &udp(a, 1000 + i, [192, 0, 2, 1], 53)).is_some());
    }
    // The 17th mapping of A: no port left in its two blocks.
    assert!(h.run(IN, &udp(a, 2000, [192, 0, 2, 1], 53)).is_none());
    assert_eq!(h.drops(NatDrop::NoPort), 1);
    // RFC 5508 REQ-8: Destination Unreachable, code 13, back out the inside port.
    let errs = h.sent(IN as usize);
    assert_eq!(errs.len(), 1);
    let e = &errs[0];
    assert_eq!(&e[30..34], &a, "error goes to the subscriber");
    assert_eq!((e[34], e[35]), (3, 13));
    assert!(checksums_ok(e));
    assert_eq!(&e[0..6], &[2, 0, 0, 0, 0, 1], "MACs swapped");
    // A's existing sessions still work, in both directions.
    assert_eq!(tuple(&h.run(IN, &first_a).unwrap()).1, pa);
    assert!(h.run(OUT, &udp([192, 0, 2, 1], 53, EXT, pa)).is_some());
    // B is unaffected.
    for i in 0..16 {
        assert!(
            h.run(IN, &udp(b, 3000 + i, [192, 0, 2, 1], 53)).is_some(),
            "B {i}"
        );
    }
    // Log: 2 blocks for A, 2 for B, with the RFC 6888 fields.
    let recs: Vec<_> = h.nat.log.iter().copied().collect();
    assert_eq!(recs.len(), 4);
    assert!(recs
        .iter()
        .all(|r| r.event == LogEvent::Alloc && r.outside == Ipv4Addr::from(EXT)));
    assert_eq!(
        recs.iter()
            .filter(|r| r.subscriber == Ipv4Addr::from(a))
            .count(),
        2
    );
    assert_eq!(recs[0].port_last - recs[0].port_first, 7);
    let line = std::format!("{}", recs[0]);
    assert!(
        line.starts_with("nat-block alloc sub=100.64.0.1 out=198.51.100.1 ports="),
        "{line}"
    );
    // Expiry releases the blocks and logs it.
    h.now += 400 * SEC;
    h.nat.expire(h.now, 1 << 20);
    assert_eq!(h.nat.blocks_in_use(), 0);
    assert_eq!(h.nat.subscriber_count(), 0);
    assert_eq!(
        h.nat
            .log
            .iter()
            .filter(|r| r.event == LogEvent::Release)
            .count(),
        4
    );
}

#[test]
fn cgnat_session_limit_per_subscriber() {
    let mut c = cfg();
    c.cgnat = Some(CgnatConfig {
        block_size: 64,
        blocks_per_subscriber: 1,
        sessions_per_subscriber: 3,
        log: false,
    });
    let mut h = H::new(c);
    for i in 0..3 {
        assert!(h
            .run(IN, &udp([100, 64, 0, 1], 1000, [192, 0, 2, i], 53))
            .is_some());
    }
    assert!(h
        .run(IN, &udp([100, 64, 0, 1], 1000, [192, 0, 2, 9], 53))
        .is_none());
    assert_eq!(h.drops(NatDrop::SessionLimit), 1);
    assert!(h
        .run(IN, &udp([100, 64, 0, 2], 1000, [192, 0, 2, 9], 53))
        .is_some());
    assert!(h.nat.log.is_empty());
}

#[test]
fn table_full_keeps_existing_sessions() {
    let mut c = cfg();
    c.max_sessions = 16;
    let mut h = H::new(c);
    let mut ext = Vec::new();
    for i in 0..16u16 {
        let f = udp([10, 0, 0, (i % 4) as u8 + 1], 1000 + i, [192, 0, 2, 1], 53);
        ext.push((f.clone(), tuple(&h.run(IN, &f).unwrap()).1));
    }
    assert!(h
        .run(IN, &udp([10, 0, 0, 9], 999, [192, 0, 2, 1], 53))
        .is_none());
    assert_eq!(h.drops(NatDrop::TableFull), 1);
    // A new remote for an existing mapping needs a session too: also refused.
    assert!(h
        .run(IN, &udp([10, 0, 0, 1], 1000, [192, 0, 2, 7], 53))
        .is_none());
    assert_eq!(h.drops(NatDrop::TableFull), 2);
    assert_eq!(h.nat.session_count(), 16);
    for (f, p) in &ext {
        let r = h.run(IN, f).unwrap();
        assert_eq!(tuple(&r).1, *p, "existing session translated as before");
        assert!(h.run(OUT, &udp([192, 0, 2, 1], 53, EXT, *p)).is_some());
    }
}

#[test]
fn malformed_and_fragments_are_counted_drops() {
    let mut h = H::new(cfg());
    let mut f = udp([10, 0, 0, 1], 5000, [192, 0, 2, 1], 53);
    f.truncate(14 + 20 + 4);
    assert!(h.run(IN, &f).is_none());
    assert_eq!(h.drops(NatDrop::Malformed), 1);
    // MF set on 13 bytes of payload: not a multiple of 8.
    let mut f = udp_len([10, 0, 0, 1], 5000, [192, 0, 2, 1], 53, 5);
    f[14 + 6] = 0x20;
    assert!(h.run(IN, &f).is_none());
    assert_eq!(h.drops(NatDrop::Malformed), 2);
    // GRE is not translated.
    let mut f = udp([10, 0, 0, 1], 5000, [192, 0, 2, 1], 53);
    f[14 + 9] = 47;
    assert!(h.run(IN, &f).is_none());
    assert_eq!(h.drops(NatDrop::ProtoUnsupported), 1);
}

#[test]
fn random_bytes_never_panic() {
    let mut h = H::new(cfg());
    let mut x: u64 = 0x1234_5678_9abc_def0;
    let base = [
        udp([10, 0, 0, 1], 5000, [192, 0, 2, 1], 53),
        echo([10, 0, 0, 1], [192, 0, 2, 1], 5, false),
        icmp_error_about([1, 2, 3, 4], &udp(EXT, 1024, [192, 0, 2, 1], 53), 3),
    ];
    for i in 0..20000 {
        let mut f = base[i % 3].clone();
        for _ in 0..4 {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            let pos = (x as usize >> 8) % f.len();
            f[pos] = x as u8;
        }
        if x.is_multiple_of(5) {
            f.truncate((x as usize >> 20) % f.len());
        }
        let _ = h.run((x >> 40) as u16 % 2, &f);
    }
}

#[test]
fn no_allocation_after_start_is_structural() {
    // The tables are sized at start-up; filling them does not grow any Vec.
    let mut c = cfg();
    c.max_sessions = 64;
    let mut h = H::new(c);
    let caps = (
        h.nat.sessions.capacity(),
        h.nat.sess_free.capacity(),
        h.nat.maps.capacity(),
    );
    for i in 0..200u16 {
        let _ = h.run(
            IN,
            &udp(
                [10, 0, (i / 50) as u8, (i % 50) as u8],
                1000 + i,
                [192, 0, 2, 1],
                53,
            ),
        );
    }
    h.now += 1000 * SEC;
    h.nat.expire(h.now, 1 << 20);
    assert_eq!(
        caps,
        (
            h.nat.sessions.capacity(),
            h.nat.sess_free.capacity(),
            h.nat.maps.capacity()
        )
    );
}

#[test]
fn vlan_tagged_frames_are_translated() {
    let mut h = H::new(cfg());
    let mut f = Vec::new();
    PacketBuilder::ethernet2([2, 0, 0, 0, 0, 1], [2, 0, 0, 0, 0, 2])
        .single_vlan(etherparse::VlanId::try_new(100).unwrap())
        .ipv4([10, 0, 0, 1], [192, 0, 2, 1], 64)
        .udp(5000, 53)
        .write(&mut f, b"tagged")
        .unwrap();
    let r = h.run(IN, &f).unwrap();
    assert_eq!(&r[30..34], &EXT, "source rewritten after the 4-byte tag");
    assert!(checksum::verify(&r[18..38]));
}

// ---- Fragments: virtual reassembly (RFC 4787 REQ-14, RFC 1858) ----

/// Splits an Ethernet+IPv4 frame (no options) into fragments carrying `chunk` bytes
/// of IP payload each (a multiple of 8), with identification `id`.
fn fragments(frame: &[u8], chunk: usize, id: u16) -> Vec<Vec<u8>> {
    assert_eq!(chunk % 8, 0);
    let (eth, ipb) = frame.split_at(14);
    let tl = usize::from(u16::from_be_bytes([ipb[2], ipb[3]]));
    let payload = &ipb[20..tl];
    let mut v = Vec::new();
    let mut off = 0;
    while off < payload.len() {
        let end = (off + chunk).min(payload.len());
        let mf = end < payload.len();
        let mut h = ipb[..20].to_vec();
        h[2..4].copy_from_slice(&((20 + end - off) as u16).to_be_bytes());
        h[4..6].copy_from_slice(&id.to_be_bytes());
        let fo = ((off / 8) as u16) | if mf { 0x2000 } else { 0 };
        h[6..8].copy_from_slice(&fo.to_be_bytes());
        h[10..12].copy_from_slice(&[0, 0]);
        let c = checksum::internet(&h);
        h[10..12].copy_from_slice(&c.to_be_bytes());
        let mut f = eth.to_vec();
        f.extend_from_slice(&h);
        f.extend_from_slice(&payload[off..end]);
        v.push(f);
        off = end;
    }
    v
}

/// Reassembles fragment frames (any order) into one unfragmented frame; checks
/// every fragment's header checksum and that they agree on the addresses.
fn reassemble(frags: &[Vec<u8>]) -> Vec<u8> {
    let mut payload = vec![0u8; 65536];
    let mut len = 0;
    let mut first = None;
    for f in frags {
        let ipb = &f[14..];
        assert!(checksum::verify(&ipb[..20]), "fragment header checksum");
        let tl = usize::from(u16::from_be_bytes([ipb[2], ipb[3]]));
        let fo = u16::from_be_bytes([ipb[6], ipb[7]]);
        let off = usize::from(fo & 0x1fff) * 8;
        payload[off..off + tl - 20].copy_from_slice(&ipb[20..tl]);
        if fo & 0x2000 == 0 {
            len = off + tl - 20;
        }
        if off == 0 {
            first = Some(f.clone());
        }
        if let Some(fst) = &first {
            assert_eq!(&fst[14 + 12..14 + 20], &ipb[12..20], "addresses agree");
        }
    }
    let fst = first.expect("first fragment");
    for f in frags {
        assert_eq!(
            &fst[14 + 12..14 + 20],
            &f[14 + 12..14 + 20],
            "addresses agree"
        );
    }
    let mut h = fst[..34].to_vec();
    h[14 + 2..14 + 4].copy_from_slice(&((20 + len) as u16).to_be_bytes());
    h[14 + 6..14 + 8].copy_from_slice(&[0, 0]);
    h[14 + 10..14 + 12].copy_from_slice(&[0, 0]);
    let c = checksum::internet(&h[14..34]);
    h[14 + 10..14 + 12].copy_from_slice(&c.to_be_bytes());
    h.extend_from_slice(&payload[..len]);
    h
}

impl H {
    /// Runs `frames` through the stage as one batch; returns the frames kept (in
    /// batch order, released fragments last).
    fn run_batch(&mut self, port: u16, frames: &[Vec<u8>]) -> Vec<Vec<u8>> {
        let mut b = Batch::new();
        for f in frames {
            let mut p = self.out.cache.alloc().unwrap();
            p.copy_from(f).unwrap();
            p.meta.port = port;
            b.push(p).unwrap();
        }
        self.out.now_ns = self.now;
        self.nat.process(&mut b, &mut self.node, &mut self.out);
        let r = b.iter().map(|p| p.data().to_vec()).collect();
        b.free_all(&mut self.out.cache);
        r
    }

    /// Runs each frame in its own batch; returns everything kept.
    fn run_each(&mut self, port: u16, frames: &[Vec<u8>]) -> Vec<Vec<u8>> {
        let mut v = Vec::new();
        for f in frames {
            v.extend(self.run_batch(port, core::slice::from_ref(f)));
        }
        v
    }
}

const A: [u8; 4] = [10, 0, 0, 1];
const SRV: [u8; 4] = [192, 0, 2, 1];

/// The mapped outside port of A:5000 → SRV:53/UDP.
fn udp_port(h: &H, sport: u16) -> u16 {
    h.nat
        .lookup_in2out(&Flow {
            src: ip(A),
            sport,
            dst: ip(SRV),
            dport: 53,
            proto: UDP,
        })
        .unwrap()
        .1
}

#[test]
fn req14_udp_fragments_in_order_both_directions() {
    let mut h = H::new(cfg());
    let big = udp_len(A, 5000, SRV, 53, 3000);
    let frs = fragments(&big, 1480, 0x1234);
    assert_eq!(frs.len(), 3);
    let got = h.run_each(IN, &frs);
    assert_eq!(got.len(), 3, "every fragment translated");
    for f in &got {
        assert_eq!(
            &f[14 + 12..14 + 16],
            &EXT,
            "source rewritten in every fragment"
        );
    }
    let whole = reassemble(&got);
    assert!(checksums_ok(&whole), "reassembled UDP checksum verifies");
    let ep = udp_port(&h, 5000);
    assert_eq!(tuple(&whole), (EXT, ep, SRV, 53));
    assert_eq!(&whole[42..], &big[42..], "payload untouched");
    assert_eq!(h.nat.stats.frag_first, 1);
    assert_eq!(h.nat.stats.frag_translated, 2);
    // The reply, fragmented, comes back in to the inside host.
    let reply = udp_len(SRV, 53, EXT, ep, 2500);
    let got = h.run_each(OUT, &fragments(&reply, 1024, 0x77));
    assert_eq!(got.len(), 3);
    let whole = reassemble(&got);
    assert!(checksums_ok(&whole));
    assert_eq!(tuple(&whole), (SRV, 53, A, 5000));
    assert_eq!(h.nat.stats.frag_first, 2);
    assert_eq!(h.nat.stats.frag_translated, 4);
    assert_eq!(h.nat.stats.frag_held, 0);
}

#[test]
fn req14_out_of_order_fragments_are_held_and_released() {
    let mut h = H::new(cfg());
    let big = udp_len(A, 5000, SRV, 53, 4000);
    let frs = fragments(&big, 1480, 9);
    // Last and middle first, each in its own batch: held.
    assert!(h.run_each(IN, &[frs[2].clone(), frs[1].clone()]).is_empty());
    assert_eq!(h.nat.stats.frag_held, 2);
    assert_eq!(h.nat.held.len(), 2);
    // The first fragment releases them, translated, behind it.
    let got = h.run_batch(IN, &frs[..1]);
    assert_eq!(got.len(), 3);
    assert_eq!(u16::from_be_bytes([got[0][20], got[0][21]]) & 0x1fff, 0);
    assert_eq!(h.nat.stats.frag_released, 2);
    assert!(h.nat.held.is_empty());
    let whole = reassemble(&got);
    assert!(checksums_ok(&whole));
    assert_eq!(tuple(&whole).0, EXT);
    // Out of order inside one batch.
    let big = udp_len(A, 5001, SRV, 53, 4000);
    let frs = fragments(&big, 1480, 10);
    let got = h.run_batch(IN, &[frs[2].clone(), frs[1].clone(), frs[0].clone()]);
    assert_eq!(got.len(), 3);
    let whole = reassemble(&got);
    assert!(checksums_ok(&whole));
    assert_eq!(tuple(&whole), (EXT, udp_port(&h, 5001), SRV, 53));
    assert_eq!(h.nat.stats.frag_released, 4);
    // Inbound: the reply's fragments before its first one.
    let ep = udp_port(&h, 5000);
    let reply = fragments(&udp_len(SRV, 53, EXT, ep, 3000), 1480, 11);
    assert!(h.run_batch(OUT, &reply[1..]).is_empty());
    let got = h.run_batch(OUT, &reply[..1]);
    assert_eq!(got.len(), 3);
    let whole = reassemble(&got);
    assert!(checksums_ok(&whole));
    assert_eq!(tuple(&whole), (SRV, 53, A, 5000));
}

#[test]
fn duplicate_first_fragment_translates_the_same() {
    let mut h = H::new(cfg());
    let frs = fragments(&udp_len(A, 5000, SRV, 53, 2000), 1480, 5);
    let a = h.run_batch(IN, &frs[..1]);
    let b = h.run_batch(IN, &frs[..1]);
    assert_eq!(a, b, "a duplicate first fragment gets the same translation");
    let rest = h.run_batch(IN, &frs[1..]);
    assert_eq!(rest.len(), 1);
    assert_eq!(h.nat.stats.frag_duplicate_first, 1);
    assert!(checksums_ok(&reassemble(&[a[0].clone(), rest[0].clone()])));
    assert_eq!(h.nat.session_count(), 1);
}

#[test]
fn held_fragments_expire_and_entries_age_out() {
    let mut h = H::new(cfg());
    let frs = fragments(&udp_len(A, 5000, SRV, 53, 3000), 1480, 5);
    assert!(h.run_batch(IN, &frs[2..]).is_empty());
    assert_eq!(h.nat.held.len(), 1);
    // 3 s later (lifetime 2 s): the tick drops it; counted at the next batch.
    h.now += 3 * SEC;
    h.out.now_ns = h.now;
    h.nat.tick(&mut h.out);
    assert!(h.nat.held.is_empty());
    assert_eq!(h.nat.stats.frag_expired, 1);
    let got = h.run_batch(IN, &frs[..1]);
    assert_eq!(got.len(), 1, "the first fragment still goes");
    assert_eq!(h.drops(NatDrop::FragExpired), 1);
    assert_eq!(h.nat.stats.frag_released, 0);
    // The middle one in time is translated directly.
    assert_eq!(h.run_batch(IN, &frs[1..2]).len(), 1);
    // After the entry's lifetime the next one is held, and expires in process too.
    h.now += 3 * SEC;
    assert!(h.run_batch(IN, &frs[1..2]).is_empty());
    h.now += 3 * SEC;
    let _ = h.run_batch(IN, &[udp(A, 6000, SRV, 53)]);
    assert!(h.nat.held.is_empty());
    assert_eq!(h.drops(NatDrop::FragExpired), 2);
    // No buffer is lost: every buffer is back in the pool or its cache.
    let pool = h.out.cache.pool();
    assert_eq!(
        pool.available() + h.out.cache.cached(),
        pool.capacity() as usize
    );
}

#[test]
fn hold_queue_and_per_datagram_limits() {
    let mut h = H::new(cfg());
    // 20 fragments of one datagram before its first: 16 held.
    let frs = fragments(&udp_len(A, 5000, SRV, 53, 21 * 64), 64, 1);
    assert_eq!(frs.len(), 22);
    assert!(h.run_batch(IN, &frs[1..21]).is_empty());
    assert_eq!(h.nat.held.len(), frag::HOLD_PER_DATAGRAM);
    assert_eq!(h.drops(NatDrop::FragHoldFull), 4);
    // Non-first fragments of many datagrams: the queue fills at 64.
    let mut orphans = Vec::new();
    for id in 100..160u16 {
        orphans.push(fragments(&udp_len(A, 5000, SRV, 53, 100), 64, id)[1].clone());
    }
    assert!(h.run_batch(IN, &orphans).is_empty());
    assert_eq!(h.nat.held.len(), frag::HOLD_SLOTS);
    assert_eq!(h.drops(NatDrop::FragHoldFull), 4 + 60 - 48);
    // The first fragment of the first datagram releases its 16.
    let got = h.run_batch(IN, &frs[..1]);
    assert_eq!(got.len(), 17);
    assert_eq!(h.nat.held.len(), 48);
    // Expiry frees the rest.
    h.now += 5 * SEC;
    h.out.now_ns = h.now;
    h.nat.tick(&mut h.out);
    assert!(h.nat.held.is_empty());
    let pool = h.out.cache.pool();
    assert_eq!(
        pool.available() + h.out.cache.cached(),
        pool.capacity() as usize
    );
}

#[test]
fn fragment_table_full_is_counted() {
    let mut c = cfg();
    c.max_sessions = 64;
    let mut h = H::new(c);
    let n = frag::WAYS * frag::SETS + 512;
    let firsts: Vec<Vec<u8>> = (0..n)
        .map(|i| fragments(&udp_len(A, 5000, SRV, 53, 100), 64, i as u16)[0].clone())
        .collect();
    for chunk in firsts.chunks(BATCH_SIZE) {
        assert_eq!(h.run_batch(IN, chunk).len(), chunk.len());
    }
    assert_eq!(h.nat.stats.frag_first, n as u64);
    assert!(h.nat.stats.frag_table_full > 0, "some sets overflowed");
    let recorded = h.nat.frags.len(units(h.now));
    assert_eq!(
        recorded as u64 + h.nat.stats.frag_table_full,
        n as u64,
        "every first fragment either recorded or counted"
    );
}

#[test]
fn tcp_and_icmp_echo_fragments_both_directions() {
    let mut h = H::new(cfg());
    // TCP data segment, 3000 bytes.
    let mut t = Vec::new();
    PacketBuilder::ethernet2([2, 0, 0, 0, 0, 1], [2, 0, 0, 0, 0, 2])
        .ipv4(A, SRV, 64)
        .tcp(40000, 80, 1, 65535)
        .ack(1)
        .write(&mut t, &[0x5a; 3000])
        .unwrap();
    let frs = fragments(&t, 1480, 3);
    let got = h.run_batch(IN, &[frs[1].clone(), frs[0].clone(), frs[2].clone()]);
    assert_eq!(got.len(), 3);
    let whole = reassemble(&got);
    assert!(checksums_ok(&whole), "TCP checksum over the datagram");
    let (s, ep, d, dp) = tuple(&whole);
    assert_eq!((s, d, dp), (EXT, SRV, 80));
    // And back in.
    let mut r = Vec::new();
    PacketBuilder::ethernet2([2, 0, 0, 0, 0, 2], [2, 0, 0, 0, 0, 1])
        .ipv4(SRV, EXT, 64)
        .tcp(80, ep, 1, 65535)
        .ack(3001)
        .write(&mut r, &[0xa5; 2000])
        .unwrap();
    let got = h.run_each(OUT, &fragments(&r, 1480, 4));
    let whole = reassemble(&got);
    assert!(checksums_ok(&whole));
    assert_eq!(tuple(&whole), (SRV, 80, A, 40000));
    // ICMP echo, 2000 bytes.
    let mut e = Vec::new();
    PacketBuilder::ethernet2([2, 0, 0, 0, 0, 1], [2, 0, 0, 0, 0, 2])
        .ipv4(A, SRV, 64)
        .icmpv4_echo_request(0x4242, 1)
        .write(&mut e, &[0x11; 2000])
        .unwrap();
    let got = h.run_each(IN, &fragments(&e, 1480, 5));
    let whole = reassemble(&got);
    assert!(checksums_ok(&whole), "ICMP checksum over the datagram");
    let (s, id, _, _) = tuple(&whole);
    assert_eq!(s, EXT);
    let mut e = Vec::new();
    PacketBuilder::ethernet2([2, 0, 0, 0, 0, 2], [2, 0, 0, 0, 0, 1])
        .ipv4(SRV, EXT, 64)
        .icmpv4_echo_reply(id, 1)
        .write(&mut e, &[0x22; 2000])
        .unwrap();
    let frs = fragments(&e, 1480, 6);
    let got = h.run_batch(OUT, &[frs[1].clone(), frs[0].clone()]);
    let whole = reassemble(&got);
    assert!(checksums_ok(&whole));
    assert_eq!(tuple(&whole), (SRV, 0x4242, A, 0x4242));
    assert_eq!(h.nat.stats.frag_released, 2);
}

#[test]
fn rfc1858_tiny_and_overlapping_fragments_dropped() {
    let mut h = H::new(cfg());
    let mut t = Vec::new();
    PacketBuilder::ethernet2([2, 0, 0, 0, 0, 1], [2, 0, 0, 0, 0, 2])
        .ipv4(A, SRV, 64)
        .tcp(40000, 80, 1, 65535)
        .write(&mut t, &[0; 40])
        .unwrap();
    // A first fragment with 16 bytes of the 20-byte TCP header.
    let frs = fragments(&t, 16, 1);
    assert!(h.run_batch(IN, &frs[..1]).is_empty());
    assert_eq!(h.drops(NatDrop::FragTiny), 1);
    // A TCP fragment at offset 8 (could rewrite the flags).
    let frs = fragments(&t, 8, 2);
    assert!(h.run_batch(IN, &frs[1..2]).is_empty());
    assert_eq!(h.drops(NatDrop::FragTiny), 2);
    assert_eq!(h.nat.session_count(), 0, "no session from a tiny fragment");
    // Offset + length past 65535.
    let mut f = fragments(&udp_len(A, 5000, SRV, 53, 200), 64, 3)[1].clone();
    f[14 + 6..14 + 8].copy_from_slice(&0x1fffu16.to_be_bytes());
    assert!(h.run_batch(IN, &[f]).is_empty());
    assert_eq!(h.drops(NatDrop::Malformed), 1);
    // A non-first fragment of an untranslated protocol.
    let mut f = fragments(&udp_len(A, 5000, SRV, 53, 200), 64, 4)[1].clone();
    f[14 + 9] = 47;
    assert!(h.run_batch(IN, &[f]).is_empty());
    assert_eq!(h.drops(NatDrop::ProtoUnsupported), 1);
    // A fragmented ICMP error.
    let err = icmp_error_about([192, 0, 2, 9], &udp(EXT, 1024, SRV, 53), 3);
    let mut f = err.clone();
    f[14 + 6] = 0x20;
    let tl = 20 + (err.len() - 34) / 8 * 8;
    f[14 + 2..14 + 4].copy_from_slice(&(tl as u16).to_be_bytes());
    f.truncate(14 + tl);
    assert!(h.run_batch(OUT, &[f]).is_empty());
    assert_eq!(h.drops(NatDrop::Fragment), 1);
    assert!(h.nat.held.is_empty());
}

#[test]
fn hairpinned_fragments_follow_the_first() {
    let mut h = H::new(cfg());
    let b_in = [10, 0, 0, 2];
    let pb = {
        let r = h.run(IN, &udp(b_in, 6000, SRV, 53)).unwrap();
        tuple(&r).1
    };
    let frs = fragments(&udp_len(A, 7000, EXT, pb, 3000), 1480, 8);
    let got = h.run_batch(IN, &[frs[2].clone(), frs[0].clone(), frs[1].clone()]);
    assert_eq!(got.len(), 3);
    let whole = reassemble(&got);
    assert!(checksums_ok(&whole));
    let (s, _, d, dp) = tuple(&whole);
    assert_eq!((s, d, dp), (EXT, b_in, 6000));
    assert_eq!(h.nat.stats.hairpinned, 1);
}

#[test]
fn random_fragments_never_panic_or_leak() {
    let mut h = H::new(cfg());
    let mut x: u64 = 0x9e37_79b9_7f4a_7c15;
    let base = fragments(&udp_len(A, 5000, SRV, 53, 600), 64, 77);
    for i in 0..5000 {
        let mut batch = Vec::new();
        for j in 0..(i % 7 + 1) {
            let mut f = base[(i + j) % base.len()].clone();
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            if x.is_multiple_of(3) {
                let pos = 14 + (x as usize >> 8) % (f.len() - 14);
                f[pos] = (x >> 32) as u8;
            }
            if x.is_multiple_of(5) {
                f[14 + 4] = x as u8; // identification
            }
            batch.push(f);
        }
        let port = if x.is_multiple_of(4) { OUT } else { IN };
        let _ = h.run_batch(port, &batch);
        h.now += 100_000_000;
    }
    h.now += 10 * SEC;
    h.out.now_ns = h.now;
    h.nat.tick(&mut h.out);
    assert!(h.nat.held.is_empty());
    let pool = h.out.cache.pool();
    assert_eq!(
        pool.available() + h.out.cache.cached(),
        pool.capacity() as usize
    );
}

#[test]
fn frag4_output_is_translated_whole() {
    // The engine's own egress fragmenter feeding the NAT (e.g. a router hop before
    // a CGNAT), fragments last first.
    let mut h = H::new(cfg());
    let mut frame = udp_len(A, 5000, SRV, 53, 300);
    frame[14 + 6] &= !0x40; // DF clear
    let mut pkt = h.out.cache.alloc().unwrap();
    pkt.copy_from(&frame).unwrap();
    let n = crate::stages::frag4::fragment4(&mut pkt, 14, 68, &mut h.out, 0, |_| {}).unwrap();
    let mut frames = vec![pkt.data().to_vec()];
    h.out.cache.free(pkt);
    let mut rest = Vec::new();
    h.out.ports[0].drain(|f| {
        rest.push(f.data().to_vec());
        f.pool().free(f);
    });
    rest.reverse();
    frames.extend(rest);
    assert_eq!(frames.len(), n);
    let got = h.run_batch(IN, &frames);
    assert_eq!(got.len(), n, "{:?}", h.nat.stats);
    let whole = reassemble(&got);
    assert!(checksums_ok(&whole));
    assert_eq!(tuple(&whole), (EXT, udp_port(&h, 5000), SRV, 53));
}

/// Issue 19: the pool changed under live sessions. Existing bindings keep working
/// both ways on the removed address (draining); new subscribers get the new pool; a
/// drained subscriber is paired from the new pool once its mappings expired; the
/// drained address is dropped at the next change; a wrong geometry is refused.
#[test]
fn pool_change_drains_the_old_address_and_pairs_new_subscribers_from_the_new_pool() {
    let mut h = H::new(cfg());
    let a = udp([10, 0, 0, 1], 5000, [192, 0, 2, 1], 53);
    let (ext_a, port_a, _, _) = tuple(&h.run(IN, &a).unwrap());
    assert_eq!(ext_a, EXT);

    let mut new_cfg = cfg();
    new_cfg.pool = vec!["203.0.113.8/30".into()];
    let mut ch = PoolChange::new(&new_cfg, 1).unwrap();
    h.nat.apply_pool_change(&mut ch);
    assert_eq!(ch.outcome(), Some(Ok(())));
    assert_eq!(h.nat.draining_addresses(), 1);
    let pool: Vec<_> = h.nat.pool_addresses().collect();
    assert_eq!(pool.len(), 5, "4 new + 1 draining: {pool:?}");
    assert!(pool.contains(&(Ipv4Addr::from(EXT), true, 1)));

    // The existing session keeps its binding, both ways.
    assert_eq!(
        tuple(&h.run(IN, &a).unwrap()),
        (EXT, port_a, [192, 0, 2, 1], 53)
    );
    let back = udp([192, 0, 2, 1], 53, EXT, port_a);
    assert_eq!(tuple(&h.run(OUT, &back).unwrap()).2, [10, 0, 0, 1]);
    // Paired pooling: the same subscriber's new mapping stays on its address.
    let a2 = udp([10, 0, 0, 1], 5001, [192, 0, 2, 9], 53);
    assert_eq!(tuple(&h.run(IN, &a2).unwrap()).0, EXT);
    // A new subscriber: from the new pool.
    for i in 2..40u8 {
        let b = udp([10, 0, 1, i], 6000, [192, 0, 2, 1], 53);
        let ext = tuple(&h.run(IN, &b).unwrap()).0;
        assert!(
            ext[..3] == [203, 0, 113] && (8..12).contains(&ext[3]),
            "{ext:?}"
        );
    }
    // Unsolicited inbound to the new pool is dropped like before (no mapping).
    assert!(h
        .run(OUT, &udp([192, 0, 2, 1], 53, [203, 0, 113, 9], 4444))
        .is_none());

    // Once its mappings expired, subscriber A is paired from the new pool.
    h.now += 301 * SEC;
    h.nat.expire(h.now, 1 << 20);
    assert_eq!(h.nat.draining_addresses(), 0);
    let ext = tuple(&h.run(IN, &a).unwrap()).0;
    assert_eq!(ext[..3], [203, 0, 113]);
    // The next change drops the drained address.
    let mut again = cfg();
    again.pool = vec!["203.0.113.8/30".into(), "198.51.100.77".into()];
    let mut ch = PoolChange::new(&again, 5).unwrap();
    h.nat.apply_pool_change(&mut ch);
    assert_eq!(ch.outcome(), Some(Ok(())));
    assert_eq!(h.nat.pool_addresses().count(), 5);
    assert!(h
        .nat
        .pool_addresses()
        .all(|(a, d, _)| !d && a != Ipv4Addr::from(EXT)));

    // Another block size: refused, nothing changed.
    let mut bad = again.clone();
    bad.cgnat = Some(CgnatConfig::default());
    let mut ch = PoolChange::new(&bad, 5).unwrap();
    h.nat.apply_pool_change(&mut ch);
    assert!(matches!(ch.outcome(), Some(Err(_))));
    assert_eq!(h.nat.pool_addresses().count(), 5);
}

/// Port blocks given from outside (a disaggregated BNG's control plane allocates
/// them): translation uses only the bound block, both ways; conflicting, misaligned,
/// out-of-pool and excess bindings are refused without touching the stage; unbind
/// ends the sessions and frees the block for another subscriber; an inside address
/// without a binding is dropped, never paired on the fast path.
#[test]
fn external_blocks_bind_translate_unbind() {
    let mut c = cfg();
    c.pool = vec!["198.51.100.0/30".into()];
    c.cgnat = Some(CgnatConfig {
        block_size: 512,
        blocks_per_subscriber: 2,
        sessions_per_subscriber: 4000,
        log: true,
    });
    c.max_subscribers = 2;
    c.external_blocks = true;
    let mut h = H::new(c);
    let sub1 = Ipv4Addr::new(100, 64, 0, 7);
    let sub2 = Ipv4Addr::new(100, 64, 0, 8);
    let ext = Ipv4Addr::new(198, 51, 100, 2);
    // No binding: dropped, nothing allocated.
    assert!(h
        .run(IN, &udp(sub1.octets(), 5000, [192, 0, 2, 9], 53))
        .is_none());
    assert_eq!(h.drops(NatDrop::NoBinding), 1);
    assert_eq!(h.nat.blocks_in_use(), 0);
    // Refusals.
    let bad = [
        (
            Ipv4Addr::new(198, 51, 100, 9),
            1024,
            1535,
            BindError::NotInPool,
        ),
        (ext, 1025, 1536, BindError::BadRange),
        (ext, 1024, 1500, BindError::BadRange),
        (ext, 1024, 2559, BindError::BadRange),
        (ext, 1000, 1535, BindError::BadRange),
    ];
    for (o, f, l, e) in bad {
        assert_eq!(h.nat.bind(sub1, o, f, l), Err(e), "{o} {f}-{l}");
    }
    assert_eq!(h.nat.blocks_in_use(), 0);
    h.nat.bind(sub1, ext, 2048, 2559).unwrap();
    h.nat.bind(sub1, ext, 2048, 2559).unwrap();
    assert_eq!(h.nat.blocks_in_use(), 1);
    assert_eq!(h.nat.bind(sub1, ext, 2560, 3071), Err(BindError::Conflict));
    assert_eq!(h.nat.bind(sub2, ext, 2048, 2559), Err(BindError::Conflict));
    // Upstream: the bound address, a port of the bound block; downstream back.
    let mut ports = Vec::new();
    for sp in [5000u16, 2100, 40000] {
        let o = h
            .run(IN, &udp(sub1.octets(), sp, [192, 0, 2, 9], 53))
            .unwrap();
        let (s, p, _, _) = tuple(&o);
        assert_eq!(s, ext.octets());
        assert!((2048..=2559).contains(&p), "{p}");
        assert!(checksums_ok(&o));
        ports.push(p);
        let back = h
            .run(OUT, &udp([192, 0, 2, 9], 53, ext.octets(), p))
            .unwrap();
        assert_eq!(tuple(&back).2, sub1.octets());
        assert_eq!(tuple(&back).3, sp);
    }
    assert_eq!(ports[1], 2100, "port preserved inside the block");
    // Exhaust the block: no new block is taken on the fast path.
    for sp in 10000..10600u16 {
        h.run(IN, &udp(sub1.octets(), sp, [192, 0, 2, 9], 53));
    }
    assert!(h.drops(NatDrop::NoPort) > 0);
    assert_eq!(h.nat.blocks_in_use(), 1);
    // The second slot, then the table is full.
    h.nat.bind(sub2, ext, 1024, 2047).unwrap();
    assert_eq!(
        h.nat.bind(Ipv4Addr::new(100, 64, 0, 9), ext, 3072, 3583),
        Err(BindError::Full)
    );
    // Unbind: sessions end, the block is free for another subscriber.
    assert!(h.nat.session_count() > 0);
    assert!(h.nat.unbind(sub1));
    assert!(!h.nat.unbind(sub1));
    assert_eq!(h.nat.session_count(), 0);
    assert_eq!(h.nat.blocks_in_use(), 2);
    assert!(h
        .run(OUT, &udp([192, 0, 2, 9], 53, ext.octets(), ports[0]))
        .is_none());
    assert!(h.nat.unbind(sub2));
    assert_eq!(h.nat.blocks_in_use(), 0);
    assert_eq!(h.nat.subscriber_count(), 0);
    h.nat
        .bind(Ipv4Addr::new(100, 64, 0, 9), ext, 2048, 2559)
        .unwrap();
    let allocs = h
        .nat
        .log
        .iter()
        .filter(|r| r.event == LogEvent::Alloc)
        .count();
    let rels = h
        .nat
        .log
        .iter()
        .filter(|r| r.event == LogEvent::Release)
        .count();
    assert_eq!((allocs, rels), (4, 3));
}
