//! Tests of ICMPv6 and Neighbor Discovery parsing and emission (RFC 4443, RFC 4861)
//! and of error building (RFC 4443 §2.4).

use super::*;
use etherparse::{Icmpv6Slice, Icmpv6Type, PacketBuilder};

fn a(s: &str) -> Ipv6Addr {
    s.parse().unwrap()
}

// A captured-looking NS from fe80::5054:ff:fe12:3456 for 2001:db8::1 with SLLA.
const NS: [u8; 32] = [
    0x87, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x20, 0x01, 0x0d, 0xb8, 0, 0, 0, 0, 0, 0, 0, 0,
    0, 0, 0, 0x01, 0x01, 0x01, 0x52, 0x54, 0x00, 0x12, 0x34, 0x56,
];

fn ns_with_checksum() -> ([u8; 32], Ipv6Addr, Ipv6Addr) {
    let src = a("fe80::5054:ff:fe12:3456");
    let dst = solicited_node(&a("2001:db8::1"));
    let mut b = NS;
    Packet::new_unchecked(&mut b[..]).fill_checksum(&src, &dst);
    (b, src, dst)
}

#[test]
fn solicited_node_addr() {
    assert_eq!(
        solicited_node(&a("2001:db8::1234:5678")),
        a("ff02::1:ff34:5678")
    );
}

#[test]
fn deconstruct_ns() {
    let (b, src, dst) = ns_with_checksum();
    let p = Packet::new_checked(&b[..]).unwrap();
    assert_eq!(p.msg_type(), msg::NEIGHBOR_SOLICIT);
    assert_eq!(p.target_addr(), a("2001:db8::1"));
    assert!(p.verify_checksum(&src, &dst));
    assert!(!p.verify_checksum(&dst, &a("ff02::1")));
    let r = Repr::parse_checked(&p, &src, &dst).unwrap();
    let mac = MacAddr([0x52, 0x54, 0x00, 0x12, 0x34, 0x56]);
    assert_eq!(
        r,
        Repr::Ndisc(NdiscRepr::NeighborSolicit {
            target_addr: a("2001:db8::1"),
            lladdr: Some(mac)
        })
    );
    // etherparse agrees on type and checksum.
    let e = Icmpv6Slice::from_slice(&b).unwrap();
    assert!(matches!(
        e.icmp_type(),
        Icmpv6Type::Unknown {
            type_u8: 135,
            code_u8: 0,
            ..
        }
    ));
    let want = e
        .icmp_type()
        .calc_checksum(src.octets(), dst.octets(), e.payload())
        .unwrap();
    assert_eq!(want, p.checksum());
}

#[test]
fn construct_ns_na() {
    let (want, src, dst) = ns_with_checksum();
    let r = Repr::Ndisc(NdiscRepr::NeighborSolicit {
        target_addr: a("2001:db8::1"),
        lladdr: Some(MacAddr([0x52, 0x54, 0x00, 0x12, 0x34, 0x56])),
    });
    assert_eq!(r.buffer_len(), 32);
    let mut b = [0xeeu8; 32];
    let mut p = Packet::new_unchecked(&mut b[..]);
    r.emit(&mut p).unwrap();
    p.fill_checksum(&src, &dst);
    assert_eq!(b, want);
    // The NA answer round-trips.
    let na = Repr::Ndisc(NdiscRepr::NeighborAdvert {
        flags: na_flags::ROUTER | na_flags::SOLICITED | na_flags::OVERRIDE,
        target_addr: a("2001:db8::1"),
        lladdr: Some(MacAddr([2, 0, 0, 0, 0, 1])),
    });
    let mut nb = [0u8; 32];
    let mut p = Packet::new_unchecked(&mut nb[..]);
    na.emit(&mut p).unwrap();
    p.fill_checksum(&a("2001:db8::1"), &src);
    let p = Packet::new_checked(&nb[..]).unwrap();
    assert_eq!(
        Repr::parse_checked(&p, &a("2001:db8::1"), &src).unwrap(),
        na
    );
    assert_eq!(nb[4], 0xe0);
}

#[test]
fn router_advert_roundtrip() {
    let ra = Repr::Ndisc(NdiscRepr::RouterAdvert {
        hop_limit: 64,
        flags: ra_flags::OTHER,
        router_lifetime: 1800,
        reachable_time: 0,
        retrans_time: 0,
        lladdr: Some(MacAddr([2, 0, 0, 0, 0, 1])),
        mtu: Some(1492),
        prefix_info: Some(PrefixInfo {
            prefix_len: 64,
            on_link: true,
            autonomous: true,
            valid_lifetime: 86400,
            preferred_lifetime: 14400,
            prefix: a("2001:db8:1:2::"),
        }),
    });
    assert_eq!(ra.buffer_len(), 16 + 8 + 8 + 32);
    let mut b = [0u8; 64];
    let mut p = Packet::new_unchecked(&mut b[..]);
    ra.emit(&mut p).unwrap();
    let (src, dst) = (a("fe80::1"), a("ff02::1"));
    p.fill_checksum(&src, &dst);
    let p = Packet::new_checked(&b[..]).unwrap();
    assert_eq!(Repr::parse_checked(&p, &src, &dst).unwrap(), ra);
    let kinds: alloc::vec::Vec<u8> = p
        .nd_options_iter()
        .map(|o| o.unwrap())
        .map(|o| match o {
            NdOption::SourceLinkLayerAddr(_) => 1,
            NdOption::Mtu(_) => 5,
            NdOption::PrefixInformation(_) => 3,
            _ => 0,
        })
        .collect();
    assert_eq!(kinds, [1, 5, 3]);
    // Bytes of the prefix option as on the wire.
    assert_eq!(&b[32..36], &[3, 4, 64, 0xc0]);
    assert_eq!(&b[36..40], &86400u32.to_be_bytes());
    // etherparse computes the same checksum.
    let e = Icmpv6Slice::from_slice(&b).unwrap();
    assert_eq!(
        e.icmp_type()
            .calc_checksum(src.octets(), dst.octets(), e.payload())
            .unwrap(),
        p.checksum()
    );
    // Router solicitation without options.
    let rs = Repr::Ndisc(NdiscRepr::RouterSolicit { lladdr: None });
    let mut rb = [0u8; 8];
    let mut q = Packet::new_unchecked(&mut rb[..]);
    rs.emit(&mut q).unwrap();
    q.fill_checksum(&src, &a("ff02::2"));
    assert_eq!(
        Repr::parse_checked(&Packet::new_checked(&rb[..]).unwrap(), &src, &a("ff02::2")).unwrap(),
        rs
    );
}

#[test]
fn echo_matches_etherparse() {
    let (src, dst) = (a("2001:db8::1"), a("2001:db8::2"));
    let builder = PacketBuilder::ipv6(src.octets(), dst.octets(), 64).icmpv6_echo_request(7, 9);
    let mut out = alloc::vec::Vec::new();
    builder.write(&mut out, b"ping6").unwrap();
    let icmp = &out[40..];
    let p = Packet::new_checked(icmp).unwrap();
    let r = Repr::parse_checked(&p, &src, &dst).unwrap();
    assert_eq!(
        r,
        Repr::EchoRequest {
            ident: 7,
            seq_no: 9,
            data: b"ping6"
        }
    );
    let mut b = [0u8; 13];
    let mut q = Packet::new_unchecked(&mut b[..]);
    r.emit(&mut q).unwrap();
    q.fill_checksum(&src, &dst);
    assert_eq!(q.as_ref(), icmp);
    assert!(q.echo_request_to_reply());
    assert!(Packet::new_checked(&b[..])
        .unwrap()
        .verify_checksum(&dst, &src));
}

fn udp6(len: usize) -> alloc::vec::Vec<u8> {
    let builder = PacketBuilder::ipv6(a("2001:db8::7").octets(), a("2001:db8:ff::1").octets(), 1)
        .udp(4000, 33434);
    let mut out = alloc::vec::Vec::new();
    builder.write(&mut out, &alloc::vec![0xabu8; len]).unwrap();
    out
}

#[test]
fn time_exceeded_quotes_up_to_min_mtu() {
    let me = a("2001:db8::fffe");
    let big = udp6(1400);
    let mut out = [0u8; 1500];
    let n = build_error(&mut out, &big, &me, 64, ErrorKind::TimeExceeded { code: 0 }).unwrap();
    assert_eq!(n, 1280);
    let ip = ipv6::Packet::new_checked(&out[..n]).unwrap();
    assert_eq!(ip.dst_addr(), a("2001:db8::7"));
    assert_eq!(ip.next_header(), IpProtocol::ICMPV6);
    let p = Packet::new_checked(ip.payload()).unwrap();
    match Repr::parse_checked(&p, &me, &a("2001:db8::7")).unwrap() {
        Repr::TimeExceeded { code: 0, quote } => assert_eq!(quote, &big[..1232]),
        other => panic!("unexpected {other:?}"),
    }
    // etherparse parses the whole error datagram and agrees on the checksum.
    let sp = etherparse::SlicedPacket::from_ip(&out[..n]).unwrap();
    match sp.transport {
        Some(etherparse::TransportSlice::Icmpv6(i)) => {
            assert!(matches!(i.icmp_type(), Icmpv6Type::TimeExceeded(_)));
            let c = i
                .icmp_type()
                .calc_checksum(me.octets(), a("2001:db8::7").octets(), i.payload())
                .unwrap();
            assert_eq!(c, i.checksum());
        }
        other => panic!("unexpected {other:?}"),
    }
    // A small packet is quoted whole.
    let small = udp6(10);
    let n = build_error(
        &mut out,
        &small,
        &me,
        64,
        ErrorKind::PktTooBig { mtu: 1280 },
    )
    .unwrap();
    assert_eq!(n, 40 + 8 + small.len());
}

#[test]
fn error_suppression() {
    let me = a("2001:db8::fffe");
    let mut out = [0u8; 1500];
    let te = ErrorKind::TimeExceeded { code: 0 };
    let n = build_error(&mut out, &udp6(10), &me, 64, te).unwrap();
    let err = out[..n].to_vec();
    assert_eq!(
        build_error(&mut out, &err, &me, 64, te),
        Err(Error::Unsupported)
    );
    let mut mc = udp6(10);
    mc[24] = 0xff;
    assert_eq!(
        build_error(&mut out, &mc, &me, 64, te),
        Err(Error::Unsupported)
    );
    assert!(build_error(&mut out, &mc, &me, 64, ErrorKind::PktTooBig { mtu: 1280 }).is_ok());
    let mut tiny = [0u8; 60];
    assert_eq!(
        build_error(&mut tiny, &udp6(10), &me, 64, te),
        Err(Error::BufferTooSmall)
    );
}

#[test]
fn nd_errors() {
    let (b, src, dst) = ns_with_checksum();
    // Zero-length option.
    let mut z = b;
    z[25] = 0;
    assert_eq!(
        Repr::parse(&Packet::new_checked(&z[..]).unwrap()),
        Err(Error::Malformed)
    );
    // Option running past the end.
    let mut long = b;
    long[25] = 2;
    assert_eq!(
        Repr::parse(&Packet::new_checked(&long[..]).unwrap()),
        Err(Error::Truncated)
    );
    // Non-zero code.
    let mut c = b;
    c[1] = 1;
    assert_eq!(
        Repr::parse(&Packet::new_checked(&c[..]).unwrap()),
        Err(Error::Malformed)
    );
    // Multicast target.
    let mut m = b;
    m[8] = 0xff;
    assert_eq!(
        Repr::parse(&Packet::new_checked(&m[..]).unwrap()),
        Err(Error::Malformed)
    );
    // Bad checksum, short NS.
    let mut x = b;
    x[30] ^= 1;
    assert_eq!(
        Repr::parse_checked(&Packet::new_checked(&x[..]).unwrap(), &src, &dst),
        Err(Error::Checksum)
    );
    assert_eq!(Packet::new_checked(&b[..23]).err(), Some(Error::Truncated));
    assert_eq!(Packet::new_checked(&b[..7]).err(), Some(Error::Truncated));
}
