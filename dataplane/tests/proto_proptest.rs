//! Robustness and round-trip properties of `dataplane::proto`.
//!
//! * Every parser (views, `Repr::parse`, VLAN and IPv6 extension walks, option
//!   iterators, the in-place rewrites and the ICMP error builders) runs on random
//!   bytes and on bit-flipped valid packets without panicking.
//! * `Repr` emit → parse is the identity for arbitrary field values.
//! * The fast checksum equals the RFC 1071 reference loop; RFC 1624 incremental
//!   updates equal a full recomputation.

use core::net::{Ipv4Addr, Ipv6Addr};
use dataplane::proto::checksum::{self, PseudoHeader};
use dataplane::proto::ethernet::{self, Frame, MacAddr, VlanStack, VlanTag};
use dataplane::proto::{arp, icmpv6, ipv4, ipv6, tcp, udp, EtherType, IpProtocol};
use proptest::prelude::*;

#[path = "../fuzz/src/exercise.rs"]
mod exercise;
use exercise::*;

/// Valid packets of every kind (Ethernet framed) to mutate.
fn seeds() -> Vec<Vec<u8>> {
    use etherparse::PacketBuilder;
    let mac_a = [0x52, 0x54, 0, 0x12, 0x34, 0x56];
    let mac_b = [2, 0, 0, 0, 0, 1];
    let v4a = [10, 0, 0, 1];
    let v4b = [10, 0, 0, 2];
    let v6a: Ipv6Addr = "2001:db8::1".parse().unwrap();
    let v6b: Ipv6Addr = "2001:db8::2".parse().unwrap();
    let mut out = Vec::new();
    let mut push = |f: &dyn Fn(&mut Vec<u8>)| {
        let mut v = Vec::new();
        f(&mut v);
        out.push(v);
    };
    push(&|v| {
        PacketBuilder::ethernet2(mac_a, mac_b)
            .ipv4(v4a, v4b, 64)
            .tcp(50000, 80, 1, 1024)
            .syn()
            .options(&[
                etherparse::TcpOptionElement::MaximumSegmentSize(1460),
                etherparse::TcpOptionElement::SelectiveAcknowledgementPermitted,
                etherparse::TcpOptionElement::WindowScale(7),
                etherparse::TcpOptionElement::Timestamp(1, 2),
            ])
            .unwrap()
            .write(v, b"")
            .unwrap()
    });
    push(&|v| {
        PacketBuilder::ethernet2(mac_a, mac_b)
            .single_vlan(etherparse::VlanId::try_new(100).unwrap())
            .ipv4(v4a, v4b, 64)
            .udp(68, 67)
            .write(v, &[1; 40])
            .unwrap()
    });
    push(&|v| {
        PacketBuilder::ethernet2(mac_a, mac_b)
            .double_vlan(
                etherparse::VlanId::try_new(10).unwrap(),
                etherparse::VlanId::try_new(20).unwrap(),
            )
            .ipv6(v6a.octets(), v6b.octets(), 64)
            .tcp(1234, 443, 9, 1000)
            .ack(5)
            .write(v, b"hello")
            .unwrap()
    });
    push(&|v| {
        PacketBuilder::ethernet2(mac_a, mac_b)
            .ipv4(v4a, v4b, 64)
            .icmpv4_echo_request(1, 2)
            .write(v, b"abcdefgh")
            .unwrap()
    });
    push(&|v| {
        PacketBuilder::ethernet2(mac_a, mac_b)
            .ipv6(v6a.octets(), v6b.octets(), 64)
            .icmpv6_echo_request(1, 2)
            .write(v, b"abcdefgh")
            .unwrap()
    });
    push(&|v| {
        PacketBuilder::ethernet2(mac_a, mac_b)
            .ipv6(v6a.octets(), v6b.octets(), 64)
            .udp(546, 547)
            .write(v, &[7; 30])
            .unwrap()
    });
    // ARP request.
    let mut a = vec![0u8; 42];
    let arp = arp::Repr {
        operation: arp::Operation::REQUEST,
        source_hardware_addr: MacAddr(mac_a),
        source_protocol_addr: Ipv4Addr::from(v4a),
        target_hardware_addr: MacAddr::ZERO,
        target_protocol_addr: Ipv4Addr::from(v4b),
    };
    ethernet::Repr {
        src_addr: MacAddr(mac_a),
        dst_addr: MacAddr::BROADCAST,
        vlans: VlanStack::EMPTY,
        ethertype: EtherType::ARP,
    }
    .emit(&mut Frame::new_unchecked(&mut a[..]))
    .unwrap();
    arp.emit(&mut arp::Packet::new_unchecked(&mut a[14..]))
        .unwrap();
    out.push(a);
    // IPv6 with HBH + fragment + dst-opts carrying an NS (ND) after the chain.
    let ns = icmpv6::Repr::Ndisc(icmpv6::NdiscRepr::NeighborSolicit {
        target_addr: v6b,
        lladdr: Some(MacAddr(mac_a)),
    });
    let mut n = vec![0u8; 14 + 40 + 24 + ns.buffer_len()];
    n[12..14].copy_from_slice(&0x86ddu16.to_be_bytes());
    let ip = ipv6::Repr {
        src_addr: v6a,
        dst_addr: icmpv6::solicited_node(&v6b),
        next_header: IpProtocol::HOPOPT,
        payload_len: 24 + ns.buffer_len(),
        hop_limit: 255,
        traffic_class: 0,
        flow_label: 0,
    };
    ip.emit(&mut ipv6::Packet::new_unchecked(&mut n[14..]))
        .unwrap();
    n[54] = 44; // HBH -> fragment
    n[56] = 1; // PadN
    n[57] = 4;
    n[62] = 60; // fragment -> dst opts
    n[70] = 58; // dst opts -> ICMPv6
    n[72] = 1;
    n[73] = 4;
    let mut ip6 = n[14..].to_vec();
    let mut p = icmpv6::Packet::new_unchecked(&mut ip6[64..]);
    ns.emit(&mut p).unwrap();
    p.fill_checksum(&v6a, &icmpv6::solicited_node(&v6b));
    n[14..].copy_from_slice(&ip6);
    out.push(n);
    out
}

#[test]
fn seeds_are_valid() {
    // The mutation corpus must start from packets the parsers accept.
    for s in seeds() {
        let l2 = ethernet::walk_vlans(&s).unwrap();
        let l3 = &s[l2.l3_offset..];
        match l2.ethertype {
            EtherType::IPV4 => {
                ipv4::Repr::parse(&ipv4::Packet::new_checked(l3).unwrap()).unwrap();
            }
            EtherType::IPV6 => {
                let p = ipv6::Packet::new_checked(l3).unwrap();
                let w = p.walk_ext().unwrap();
                if w.next_header == IpProtocol::ICMPV6 {
                    let icmp = icmpv6::Packet::new_checked(&l3[w.l4_offset..]).unwrap();
                    icmpv6::Repr::parse_checked(&icmp, &p.src_addr(), &p.dst_addr()).unwrap();
                }
            }
            EtherType::ARP => {
                arp::Repr::parse(&arp::Packet::new_checked(l3).unwrap()).unwrap();
            }
            other => panic!("unexpected seed ethertype {other:?}"),
        }
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 2048, ..ProptestConfig::default() })]

    #[test]
    fn random_bytes_never_panic(b in proptest::collection::vec(any::<u8>(), 0..200)) {
        exercise_all(&b);
    }

    #[test]
    fn random_l3_bytes_with_plausible_headers(
        mut b in proptest::collection::vec(any::<u8>(), 20..200),
        v6 in any::<bool>(),
        proto in prop::sample::select(vec![0u8, 1, 6, 17, 43, 44, 51, 58, 60]),
    ) {
        // Steer random bytes past the version/length checks so deeper code runs.
        let len = b.len();
        if v6 && len >= 40 {
            b[0] = 0x60 | (b[0] & 0x0f);
            b[4..6].copy_from_slice(&((len - 40) as u16).to_be_bytes());
            b[6] = proto;
        } else {
            b[0] = 0x45;
            b[2..4].copy_from_slice(&(len as u16).to_be_bytes());
            b[6] &= 0x40; // no fragment
            b[7] = 0;
            b[9] = if proto == 58 { 1 } else { proto };
        }
        exercise_ipv4(&b);
        exercise_ipv6(&b);
    }

    #[test]
    fn bit_flipped_valid_packets_never_panic(
        which in 0usize..8,
        flips in proptest::collection::vec((any::<usize>(), 0u8..8), 1..6),
        cut in any::<usize>(),
    ) {
        let all = seeds();
        let mut b = all[which % all.len()].clone();
        for (at, bit) in flips {
            let i = at % b.len();
            b[i] ^= 1 << bit;
        }
        exercise_all(&b);
        exercise_all(&b[14..]);
        // And truncated at a random point.
        let c = cut % (b.len() + 1);
        exercise_all(&b[..c]);
        exercise_l2(&b[..c]);
    }

    #[test]
    fn vhost_user_messages_with_plausible_headers(
        request in 0u32..42,
        mut body in proptest::collection::vec(any::<u8>(), 0..300),
        n in 0u32..10,
        cut in any::<usize>(),
    ) {
        // Version 1, the size field telling the truth (mostly), a region count that
        // sometimes matches the body: the payload parsers see real work.
        if request == 5 && body.len() >= 8 {
            body[..4].copy_from_slice(&n.to_le_bytes());
            body.truncate(8 + 32 * n as usize);
        }
        let mut m = Vec::new();
        m.extend_from_slice(&request.to_le_bytes());
        m.extend_from_slice(&1u32.to_le_bytes());
        m.extend_from_slice(&(body.len() as u32).to_le_bytes());
        m.extend_from_slice(&body);
        exercise_vhost_user(&m);
        exercise_vhost_user(&m[..cut % (m.len() + 1)]);
    }

    #[test]
    fn memif_messages_with_plausible_types(
        kind in 0u16..10,
        mut body in proptest::collection::vec(any::<u8>(), 128..130),
    ) {
        // A known type on a 128-byte datagram (one byte more: a slave's ring-pair
        // wish for `HELLO`): the body parsers, the round trip and the ring-pair
        // negotiation see real work.
        body[..2].copy_from_slice(&kind.to_le_bytes());
        exercise_memif(&body);
    }

    #[test]
    fn checksum_fast_equals_reference(b in proptest::collection::vec(any::<u8>(), 0..1600), off in 0usize..8) {
        let s = b.get(off..).unwrap_or(&[]);
        prop_assert_eq!(checksum::data(s), reference_sum(s));
        exercise_checksum(s);
    }

    #[test]
    fn incremental_update_equals_recompute(
        mut b in proptest::collection::vec(any::<u8>(), 8..256),
        word in any::<usize>(),
        new16 in any::<u16>(),
        new32 in any::<u32>(),
    ) {
        let n = b.len() & !3;
        b.truncate(n);
        let hc = checksum::internet(&b);
        let i = (word % (n / 2)) * 2;
        let old16 = u16::from_be_bytes([b[i], b[i + 1]]);
        b[i..i + 2].copy_from_slice(&new16.to_be_bytes());
        let hc16 = checksum::update16(hc, old16, new16);
        prop_assert!(same_ones_complement(hc16, checksum::internet(&b)));
        let j = (word % (n / 4)) * 4;
        let old32 = u32::from_be_bytes([b[j], b[j + 1], b[j + 2], b[j + 3]]);
        b[j..j + 4].copy_from_slice(&new32.to_be_bytes());
        let hc32 = checksum::update32(hc16, old32, new32);
        prop_assert!(same_ones_complement(hc32, checksum::internet(&b)));
    }

    #[test]
    fn ethernet_roundtrip(
        src in any::<[u8; 6]>(), dst in any::<[u8; 6]>(), et in 0x0600u16..0x8100,
        tags in proptest::collection::vec((0u16..4096, 0u8..8, any::<bool>()), 0..3),
    ) {
        let mut vlans = VlanStack::EMPTY;
        for (i, (vid, pcp, dei)) in tags.iter().enumerate() {
            let tpid = if i == 0 && tags.len() == 2 { 0x88a8 } else { 0x8100 };
            vlans.push(VlanTag { tpid, pcp: *pcp, dei: *dei, vid: *vid }).unwrap();
        }
        let r = ethernet::Repr { src_addr: MacAddr(src), dst_addr: MacAddr(dst), vlans, ethertype: EtherType(et) };
        let mut buf = vec![0u8; r.buffer_len() + 4];
        r.emit(&mut Frame::new_unchecked(&mut buf[..])).unwrap();
        let back = ethernet::Repr::parse(&Frame::new_checked(&buf[..]).unwrap()).unwrap();
        prop_assert_eq!(back, r);
        prop_assert_eq!(ethernet::walk_vlans(&buf).unwrap().l3_offset, r.buffer_len());
    }

    #[test]
    fn ipv4_roundtrip(
        src in any::<u32>(), dst in any::<u32>(), proto in any::<u8>(), len in 0usize..1480,
        ttl in any::<u8>(), dscp in 0u8..64, ecn in 0u8..4, ident in any::<u16>(),
        df in any::<bool>(), mf in any::<bool>(), off in 0u16..8192,
    ) {
        let r = ipv4::Repr {
            src_addr: Ipv4Addr::from(src), dst_addr: Ipv4Addr::from(dst), protocol: IpProtocol(proto),
            payload_len: len, ttl, dscp, ecn, ident, dont_frag: df, more_frags: mf, frag_offset: off * 8,
        };
        let mut buf = vec![0u8; 20 + len];
        r.emit(&mut ipv4::Packet::new_unchecked(&mut buf[..])).unwrap();
        let p = ipv4::Packet::new_checked(&buf[..]).unwrap();
        prop_assert_eq!(ipv4::Repr::parse(&p).unwrap(), r);
        let e = etherparse::Ipv4HeaderSlice::from_slice(&buf).unwrap();
        prop_assert_eq!(e.to_header().calc_header_checksum(), p.checksum());
    }

    #[test]
    fn tcp_roundtrip(
        sp in 1u16.., dp in 1u16.., seq in any::<u32>(), ack in any::<u32>(), flags in any::<u8>(),
        win in any::<u16>(), mss in proptest::option::of(any::<u16>()),
        ws in proptest::option::of(0u8..15), sackp in any::<bool>(),
        ts in proptest::option::of(any::<(u32, u32)>()), plen in 0usize..64,
    ) {
        let r = tcp::Repr {
            src_port: sp, dst_port: dp, seq_number: seq, ack_number: ack, flags: tcp::Flags(flags),
            window_len: win, urgent_at: 0, max_seg_size: mss, window_scale: ws,
            sack_permitted: sackp, timestamps: ts, payload_len: plen,
        };
        let mut buf = vec![0u8; r.buffer_len()];
        let mut p = tcp::Packet::new_unchecked(&mut buf[..]);
        r.emit(&mut p).unwrap();
        let ph = PseudoHeader::V4 { src: Ipv4Addr::new(1, 2, 3, 4), dst: Ipv4Addr::new(5, 6, 7, 8) };
        p.fill_checksum(&ph);
        let p = tcp::Packet::new_checked(&buf[..]).unwrap();
        prop_assert_eq!(tcp::Repr::parse(&p).unwrap(), r);
        prop_assert!(p.verify_checksum(&ph));
        let e = etherparse::TcpHeaderSlice::from_slice(&buf).unwrap();
        prop_assert_eq!(
            e.to_header().calc_checksum_ipv4_raw([1, 2, 3, 4], [5, 6, 7, 8], p.payload()).unwrap(),
            p.checksum()
        );
    }

    #[test]
    fn udp_roundtrip(sp in any::<u16>(), dp in 1u16.., payload in proptest::collection::vec(any::<u8>(), 0..100)) {
        let r = udp::Repr { src_port: sp, dst_port: dp, payload_len: payload.len() };
        let mut buf = vec![0u8; r.buffer_len()];
        let mut p = udp::Packet::new_unchecked(&mut buf[..]);
        r.emit(&mut p).unwrap();
        p.payload_mut().copy_from_slice(&payload);
        let (s, d): (Ipv6Addr, Ipv6Addr) = ("2001:db8::1".parse().unwrap(), "2001:db8::2".parse().unwrap());
        p.fill_checksum(&PseudoHeader::V6 { src: s, dst: d });
        let p = udp::Packet::new_checked(&buf[..]).unwrap();
        prop_assert_eq!(udp::Repr::parse(&p).unwrap(), r);
        let ph = PseudoHeader::V6 { src: s, dst: d };
        prop_assert!(p.verify_checksum(&ph));
        let e = etherparse::UdpHeaderSlice::from_slice(&buf).unwrap();
        prop_assert_eq!(
            e.to_header().calc_checksum_ipv6_raw(s.octets(), d.octets(), &payload).unwrap(),
            p.checksum()
        );
    }

    #[test]
    fn arp_roundtrip(op in 1u16..3, sha in any::<[u8; 6]>(), spa in any::<u32>(), tha in any::<[u8; 6]>(), tpa in any::<u32>()) {
        let r = arp::Repr {
            operation: arp::Operation(op),
            source_hardware_addr: MacAddr(sha), source_protocol_addr: Ipv4Addr::from(spa),
            target_hardware_addr: MacAddr(tha), target_protocol_addr: Ipv4Addr::from(tpa),
        };
        let mut buf = [0u8; 28];
        r.emit(&mut arp::Packet::new_unchecked(&mut buf[..])).unwrap();
        prop_assert_eq!(arp::Repr::parse(&arp::Packet::new_checked(&buf[..]).unwrap()).unwrap(), r);
    }
}
