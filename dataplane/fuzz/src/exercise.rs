//! Drives every `dataplane::proto` parser over arbitrary bytes: the views and their
//! getters, `Repr::parse` (and emit → parse where it must round-trip), the VLAN and
//! IPv6 extension-header walks, the option iterators, the in-place rewrites (TTL,
//! NAT, MSS clamp, echo reply) and the ICMP error builders, IPv4 fragmentation, the
//! NAT44 stage with its fragment path, the DHCPv4 round trip with the relay
//! agent's option 82 edits, and the DHCPv6 round trip (client/server and relay
//! messages), the memif control-message parser and the vhost-user message codec.
//! Any panic is a bug.
//!
//! Shared by the cargo-fuzz targets (`fuzz_targets/*.rs`) and by
//! `dataplane/tests/proto_proptest.rs` (included there with `#[path]`).

use core::net::{Ipv4Addr, Ipv6Addr};
use dataplane::proto::checksum::{self, PseudoHeader};
use dataplane::proto::ethernet::{self, Frame, MacAddr};
use dataplane::proto::{arp, icmpv4, icmpv6, ipv4, ipv6, tcp, udp, EtherType, IpProtocol};

/// Runs every read-only accessor and parser of every protocol on `b`, then the
/// in-place rewrites on a copy. Panics are the failure mode.
pub fn exercise_all(b: &[u8]) {
    exercise_l2(b);
    exercise_arp(b);
    exercise_ipv4(b);
    exercise_ipv6(b);
    exercise_icmpv4(b);
    exercise_icmpv6(b, &Ipv6Addr::LOCALHOST, &Ipv6Addr::UNSPECIFIED);
    exercise_udp(b);
    exercise_tcp(b);
    exercise_dhcp4_all(b);
    exercise_dhcp6(b);
    exercise_memif(b);
    exercise_vhost_user(b);
}

pub fn exercise_l2(b: &[u8]) {
    if let Ok(f) = Frame::new_checked(b) {
        let _ = (f.dst_addr(), f.src_addr(), f.ethertype(), f.payload().len());
        if let Ok(r) = ethernet::Repr::parse(&f) {
            let mut out = [0u8; 22];
            r.emit(&mut Frame::new_unchecked(&mut out[..])).unwrap();
        }
        if let Ok(l2) = f.vlans() {
            let l3 = b.get(l2.l3_offset..).unwrap_or(&[]);
            match l2.ethertype {
                EtherType::ARP => exercise_arp(l3),
                EtherType::IPV4 => exercise_ipv4(l3),
                EtherType::IPV6 => exercise_ipv6(l3),
                _ => {}
            }
        }
    }
}

pub fn exercise_arp(b: &[u8]) {
    if let Ok(p) = arp::Packet::new_checked(b) {
        let _ = (p.hardware_type(), p.protocol_type(), p.operation());
        let _ = (p.source_hardware_addr(), p.source_protocol_addr());
        let _ = (p.target_hardware_addr(), p.target_protocol_addr());
        if let Ok(r) = arp::Repr::parse(&p) {
            let mut out = [0u8; 28];
            r.reply(MacAddr([2, 0, 0, 0, 0, 1]))
                .emit(&mut arp::Packet::new_unchecked(&mut out[..]))
                .unwrap();
        }
    }
}

pub fn exercise_ipv4(b: &[u8]) {
    let Ok(p) = ipv4::Packet::new_checked(b) else {
        return;
    };
    let _ = (
        p.version(),
        p.header_len(),
        p.dscp(),
        p.ecn(),
        p.total_len(),
        p.ident(),
    );
    let _ = (
        p.dont_frag(),
        p.more_frags(),
        p.frag_offset(),
        p.is_fragment(),
        p.ttl(),
    );
    let _ = (
        p.src_addr(),
        p.dst_addr(),
        p.options().len(),
        p.verify_checksum(),
    );
    let _ = ipv4::Repr::parse(&p);
    let mut out = [0u8; 600];
    let kind = icmpv4::ErrorKind::TimeExceeded { code: 0 };
    let src = Ipv4Addr::new(192, 0, 2, 1);
    let _ = icmpv4::build_error(&mut out, b, src, 64, kind, icmpv4::QuoteLimit::Rfc1812);
    let _ = icmpv4::build_error(&mut out, b, src, 64, kind, icmpv4::QuoteLimit::HeaderPlus8);
    exercise_frag4(b);
    exercise_nat44(b);
    let payload = p.payload();
    if !p.is_non_first_fragment() {
        let ph = PseudoHeader::V4 {
            src: p.src_addr(),
            dst: p.dst_addr(),
        };
        match p.protocol() {
            IpProtocol::ICMP => exercise_icmpv4(payload),
            IpProtocol::UDP => {
                exercise_udp(payload);
                if let Ok(u) = udp::Packet::new_checked(payload) {
                    let _ = u.verify_checksum(&ph);
                }
            }
            IpProtocol::TCP => {
                exercise_tcp(payload);
                if let Ok(t) = tcp::Packet::new_checked(payload) {
                    let _ = t.verify_checksum(&ph);
                }
            }
            _ => {}
        }
    }
    let mut copy = b.to_vec();
    let mut m = ipv4::Packet::new_unchecked(&mut copy[..]);
    let _ = m.decrement_ttl();
    m.set_src_addr_update_checksum(Ipv4Addr::new(100, 64, 0, 1));
    m.fill_checksum();
    let _ = (m.options_mut().len(), m.payload_mut().len());
}

pub fn exercise_ipv6(b: &[u8]) {
    let Ok(p) = ipv6::Packet::new_checked(b) else {
        return;
    };
    let _ = (
        p.version(),
        p.traffic_class(),
        p.flow_label(),
        p.payload_len(),
    );
    let _ = (
        p.next_header(),
        p.hop_limit(),
        p.src_addr(),
        p.dst_addr(),
        p.payload().len(),
    );
    let _ = ipv6::Repr::parse(&p);
    let me: Ipv6Addr = "2001:db8::1".parse().unwrap();
    let mut out = [0u8; 1400];
    for kind in [
        icmpv6::ErrorKind::TimeExceeded { code: 0 },
        icmpv6::ErrorKind::PktTooBig { mtu: 1280 },
        icmpv6::ErrorKind::ParamProblem {
            code: 2,
            pointer: 40,
        },
    ] {
        let _ = icmpv6::build_error(&mut out, b, &me, 64, kind);
    }
    if let Ok(w) = p.walk_ext() {
        assert!(w.l4_offset <= p.total_len());
        let l4 = b.get(w.l4_offset..p.total_len()).unwrap();
        if w.frag.is_none_or(|f| !f.is_non_first()) {
            let ph = PseudoHeader::V6 {
                src: p.src_addr(),
                dst: p.dst_addr(),
            };
            match w.next_header {
                IpProtocol::ICMPV6 => exercise_icmpv6(l4, &p.src_addr(), &p.dst_addr()),
                IpProtocol::UDP => {
                    exercise_udp(l4);
                    if let Ok(u) = udp::Packet::new_checked(l4) {
                        let _ = u.verify_checksum(&ph);
                    }
                }
                IpProtocol::TCP => exercise_tcp(l4),
                _ => {}
            }
        }
    }
    let mut copy = b.to_vec();
    let _ = ipv6::Packet::new_unchecked(&mut copy[..]).decrement_hop_limit();
}

pub fn exercise_icmpv4(b: &[u8]) {
    let Ok(p) = icmpv4::Packet::new_checked(b) else {
        return;
    };
    let _ = (p.msg_type(), p.msg_code(), p.echo_ident(), p.echo_seq_no());
    let _ = (
        p.next_hop_mtu(),
        p.pointer(),
        p.data().len(),
        p.verify_checksum(),
    );
    if let Ok(r) = icmpv4::Repr::parse(&p) {
        let mut out = vec![0u8; r.buffer_len()];
        r.emit(&mut icmpv4::Packet::new_unchecked(&mut out[..]))
            .unwrap();
        assert_eq!(
            icmpv4::Repr::parse(&icmpv4::Packet::new_checked(&out[..]).unwrap()).unwrap(),
            r
        );
    }
    let mut copy = b.to_vec();
    let mut m = icmpv4::Packet::new_unchecked(&mut copy[..]);
    if m.echo_request_to_reply() && p.verify_checksum() {
        assert!(m.verify_checksum());
    }
}

pub fn exercise_icmpv6(b: &[u8], src: &Ipv6Addr, dst: &Ipv6Addr) {
    let Ok(p) = icmpv6::Packet::new_checked(b) else {
        return;
    };
    let _ = (p.msg_type(), p.msg_code(), p.echo_ident(), p.echo_seq_no());
    let _ = (
        p.pkt_too_big_mtu(),
        p.param_problem_ptr(),
        p.current_hop_limit(),
    );
    let _ = (
        p.router_flags(),
        p.router_lifetime(),
        p.reachable_time(),
        p.retrans_time(),
    );
    let _ = (p.neighbor_flags(), p.target_addr(), p.data().len());
    let _ = p.verify_checksum(src, dst);
    for o in p.nd_options_iter().flatten() {
        let mut out = vec![0u8; o.buffer_len()];
        assert_eq!(o.emit(&mut out), Ok(out.len()));
    }
    if let Ok(r) = icmpv6::Repr::parse(&p) {
        let mut out = vec![0u8; r.buffer_len()];
        r.emit(&mut icmpv6::Packet::new_unchecked(&mut out[..]))
            .unwrap();
        let back = icmpv6::Repr::parse(&icmpv6::Packet::new_checked(&out[..]).unwrap()).unwrap();
        if !matches!(r, icmpv6::Repr::Ndisc(_)) {
            assert_eq!(back, r);
        }
    }
    let _ = icmpv6::Repr::parse_checked(&p, src, dst);
    let mut copy = b.to_vec();
    let _ = icmpv6::Packet::new_unchecked(&mut copy[..]).echo_request_to_reply();
}

pub fn exercise_udp(b: &[u8]) {
    let Ok(p) = udp::Packet::new_checked(b) else {
        return;
    };
    let _ = (
        p.src_port(),
        p.dst_port(),
        p.len(),
        p.checksum(),
        p.payload().len(),
    );
    let _ = udp::Repr::parse(&p);
    let mut copy = b.to_vec();
    let mut m = udp::Packet::new_unchecked(&mut copy[..]);
    m.set_src_port_update_checksum(1);
    m.fill_checksum(&PseudoHeader::V4 {
        src: Ipv4Addr::LOCALHOST,
        dst: Ipv4Addr::LOCALHOST,
    });
}

pub fn exercise_tcp(b: &[u8]) {
    let Ok(p) = tcp::Packet::new_checked(b) else {
        return;
    };
    let _ = (
        p.src_port(),
        p.dst_port(),
        p.seq_number(),
        p.ack_number(),
        p.header_len(),
    );
    let _ = (
        p.flags(),
        p.window_len(),
        p.checksum(),
        p.urgent_at(),
        p.payload().len(),
    );
    for (_, o) in p.options_iter().flatten() {
        let mut out = vec![0u8; o.buffer_len()];
        assert_eq!(o.emit(&mut out), Ok(out.len()));
    }
    let _ = p.mss();
    if let Ok(r) = tcp::Repr::parse(&p) {
        let mut out = vec![0u8; r.buffer_len()];
        r.emit(&mut tcp::Packet::new_unchecked(&mut out[..]))
            .unwrap();
    }
    let ph = PseudoHeader::V4 {
        src: Ipv4Addr::LOCALHOST,
        dst: Ipv4Addr::BROADCAST,
    };
    let mut copy = b.to_vec();
    let mut m = tcp::Packet::new_unchecked(&mut copy[..]);
    m.fill_checksum(&ph);
    if let Ok(Some(_)) = m.clamp_mss(536) {
        assert!(m.verify_checksum(&ph), "MSS clamp broke the checksum");
    }
}

/// The textbook RFC 1071 sum, the reference for the fast one.
pub fn reference_sum(bytes: &[u8]) -> u16 {
    let mut sum: u64 = 0;
    for c in bytes.chunks(2) {
        let hi = u64::from(c[0]) << 8;
        let lo = c.get(1).map_or(0, |x| u64::from(*x));
        sum += hi | lo;
    }
    while sum > 0xffff {
        sum = (sum & 0xffff) + (sum >> 16);
    }
    sum as u16
}

/// Equal as one's-complement numbers (0x0000 and 0xffff are both zero; RFC 1624 §3).
pub fn same_ones_complement(a: u16, b: u16) -> bool {
    a == b || (a == 0 && b == 0xffff) || (a == 0xffff && b == 0)
}

/// Checks the fast checksum against the reference, and the RFC 1624 incremental
/// updates against a recomputation, using the first bytes of `b` as the change.
pub fn exercise_checksum(b: &[u8]) {
    assert_eq!(checksum::data(b), reference_sum(b));
    if b.len() < 8 {
        return;
    }
    let (ctl, body) = b.split_at(6);
    let mut data = body.to_vec();
    data.truncate(data.len() & !3);
    if data.len() < 4 {
        return;
    }
    let hc = checksum::internet(&data);
    let i = (usize::from(ctl[0]) % (data.len() / 2)) * 2;
    let new16 = u16::from_be_bytes([ctl[1], ctl[2]]);
    let old16 = u16::from_be_bytes([data[i], data[i + 1]]);
    data[i..i + 2].copy_from_slice(&new16.to_be_bytes());
    let hc16 = checksum::update16(hc, old16, new16);
    assert!(same_ones_complement(hc16, checksum::internet(&data)));
    let j = (usize::from(ctl[0]) % (data.len() / 4)) * 4;
    let new32 = u32::from_be_bytes([ctl[2], ctl[3], ctl[4], ctl[5]]);
    let old32 = u32::from_be_bytes([data[j], data[j + 1], data[j + 2], data[j + 3]]);
    data[j..j + 4].copy_from_slice(&new32.to_be_bytes());
    let hc32 = checksum::update32(hc16, old32, new32);
    assert!(same_ones_complement(hc32, checksum::internet(&data)));
}

/// IPv4 fragmentation (`stages::frag4`): fragments of `b` behind a 14-byte Layer-2
/// header at an MTU taken from the datagram's own bytes; whatever is produced must
/// reassemble to the original payload, and every buffer must come back to the pool.
pub fn exercise_frag4(b: &[u8]) {
    use dataplane::batch::Out;
    use dataplane::buf::Pool;
    use dataplane::stages::frag4::fragment4;
    use std::sync::OnceLock;
    static POOL: OnceLock<Option<&'static Pool>> = OnceLock::new();
    let Some(pool) = *POOL.get_or_init(|| Pool::new(256)) else {
        return;
    };
    let before = pool.available();
    let mtu = 68 + usize::from(b.get(4).copied().unwrap_or(0)) * 5;
    {
        let mut out = Out::new(1, pool.cache());
        let Some(mut pkt) = out.cache.alloc() else {
            return;
        };
        let mut frame = std::vec![0u8; 14];
        frame.extend_from_slice(b);
        if pkt.copy_from(&frame).is_err() {
            out.cache.free(pkt);
            return;
        }
        let r = fragment4(&mut pkt, 14, mtu, &mut out, 0, |_| {});
        let mut frames = std::vec::Vec::new();
        out.ports[0].drain(|f| {
            frames.push(f.data().to_vec());
            out.cache.free(f);
        });
        frames.push(pkt.data().to_vec());
        out.cache.free(pkt);
        if let (Ok(n), Ok(orig)) = (r, ipv4::Packet::new_checked(b)) {
            assert_eq!(n, frames.len());
            let mut re = std::vec![0u8; 65536 + 4096];
            let base = usize::from(orig.frag_offset());
            let mut end = 0;
            for f in &frames {
                let v = ipv4::Packet::new_checked(&f[14..]).expect("fragment parses");
                assert!(
                    n == 1 || usize::from(v.total_len()) <= mtu,
                    "fragment over MTU"
                );
                assert!(n == 1 || v.verify_checksum(), "fragment checksum");
                let o = usize::from(v.frag_offset()) - base;
                re[o..o + v.payload().len()].copy_from_slice(v.payload());
                end = end.max(o + v.payload().len());
            }
            assert_eq!(&re[..end], orig.payload(), "fragments do not reassemble");
        }
    }
    assert_eq!(pool.available(), before, "fragmentation leaked buffers");
}

/// NAT44 (`stages::nat`) on `b` as an IPv4 datagram, from inside or outside (bit 0 of
/// the second byte), in one batch with its own fragments (from `frag4`, last one
/// first, so the virtual-reassembly hold/release path runs on arbitrary datagrams);
/// then time moves past the fragment lifetime: every buffer, held ones included, must
/// be back in the pool.
pub fn exercise_nat44(b: &[u8]) {
    use dataplane::batch::{Batch, Out};
    use dataplane::buf::Pool;
    use dataplane::stage::{NodeStats, Stage};
    use dataplane::stages::frag4::fragment4;
    use dataplane::stages::nat::{Nat44, NatConfig};
    use std::sync::{Mutex, OnceLock};
    type Rig = (Nat44, NodeStats, &'static Pool, u64);
    static RIG: OnceLock<Option<Mutex<Rig>>> = OnceLock::new();
    let rig = RIG.get_or_init(|| {
        let pool = Pool::new(512)?;
        let nat = Nat44::new(&NatConfig {
            inside_ports: std::vec![0],
            pool: std::vec!["198.51.100.1/30".into()],
            max_sessions: 256,
            max_subscribers: 16,
            ..NatConfig::default()
        })
        .ok()?;
        let node = NodeStats::new("nat44", nat.errors());
        Some(Mutex::new((nat, node, pool, 1_000_000_000)))
    });
    let Some(Ok(mut g)) = rig.as_ref().map(|m| m.lock()) else {
        return;
    };
    let (nat, node, pool, now) = &mut *g;
    let before = pool.available();
    {
        let mut out = Out::new(2, pool.cache());
        let port = u16::from(b.get(1).copied().unwrap_or(0) & 1);
        let mut frame = std::vec![0u8; 14];
        frame[12] = 0x08;
        frame.extend_from_slice(b);
        let mut batch = Batch::new();
        for k in 0..2 {
            let Some(mut pkt) = out.cache.alloc() else {
                break;
            };
            if pkt.copy_from(&frame).is_err() {
                out.cache.free(pkt);
                break;
            }
            pkt.meta.port = port;
            if k == 1 {
                // Its fragments at a small MTU, last one first.
                let mtu = 68 + usize::from(b.get(4).copied().unwrap_or(0)) * 4;
                let _ = fragment4(&mut pkt, 14, mtu, &mut out, 0, |_| {});
                let _ = batch.push(pkt).map_err(|p| out.cache.free(p));
                let mut frags = std::vec::Vec::new();
                out.ports[0].drain(|f| frags.push(f));
                for mut f in frags.into_iter().rev() {
                    f.meta.port = port;
                    let _ = batch.push(f).map_err(|p| out.cache.free(p));
                }
            } else {
                let _ = batch.push(pkt).map_err(|p| out.cache.free(p));
            }
        }
        out.now_ns = *now;
        nat.process(&mut batch, node, &mut out);
        batch.free_all(&mut out.cache);
        *now += 10_000_000_000;
        out.now_ns = *now;
        nat.tick(&mut out);
        for q in out.ports.iter_mut() {
            q.free_all(&mut out.cache);
        }
        assert_eq!(
            nat.fragments_held(),
            0,
            "held fragments outlived their lifetime"
        );
    }
    assert_eq!(pool.available(), before, "nat44 leaked buffers");
}

/// DHCPv4 over arbitrary bytes twice: as a whole message, and as the options of a
/// message whose header comes from the first bytes (so that short inputs, which an
/// empty corpus starts with, reach the option parsers).
pub fn exercise_dhcp4_all(b: &[u8]) {
    use dataplane::proto::dhcp4::{HEADER_LEN, MAGIC_COOKIE};
    exercise_dhcp4(b);
    let (head, opts) = b.split_at(b.len().min(8));
    let mut m = vec![0u8; HEADER_LEN];
    m[..head.len()].copy_from_slice(head);
    m.extend_from_slice(&MAGIC_COOKIE);
    m.extend_from_slice(opts);
    exercise_dhcp4(&m);
}

/// DHCPv4: the checked view and its option walk; for what parses, emit → parse must
/// give the same [`dhcp4::Repr`]; option 82 inserted by a relay agent parses back and
/// removing it restores the message.
pub fn exercise_dhcp4(b: &[u8]) {
    use dataplane::proto::dhcp4;
    let Ok(p) = dhcp4::Packet::new_checked(b) else {
        return;
    };
    let _ = (p.op(), p.htype(), p.hlen(), p.hops(), p.xid(), p.secs());
    let _ = (p.flags(), p.ciaddr(), p.yiaddr(), p.siaddr(), p.giaddr());
    let _ = (p.chaddr(), p.client_mac(), p.sname().len(), p.file().len());
    let _ = (p.overload(), p.message_type(), p.options().count());
    let mut scratch = Vec::new();
    let removed = dhcp4::remove_relay_agent_info(b, &mut scratch).expect("checked message");
    assert!(dhcp4::Packet::new_checked(&scratch).is_ok());
    let Ok(r) = dhcp4::Repr::parse(&p) else {
        let _ = removed;
        return;
    };
    let mut out = Vec::new();
    r.emit(&mut out).expect("a parsed message emits");
    let r2 = dhcp4::Repr::parse_bytes(&out).expect("an emitted message parses");
    assert_eq!(r, r2, "emit → parse changed the message");

    let info = dhcp4::RelayAgentInfo {
        circuit_id: Some(b"access0:100.7".to_vec()),
        remote_id: Some(vec![2, 0, 0, 0, 0, 9]),
        other: Vec::new(),
    };
    let mut with = Vec::new();
    match dhcp4::insert_relay_agent_info(&out, &info, &mut with) {
        Ok(()) => {
            assert!(r.relay_agent_info.is_none());
            let rw = dhcp4::Repr::parse_bytes(&with).expect("inserted option 82 parses");
            assert_eq!(rw.relay_agent_info.as_ref(), Some(&info));
            assert_eq!(
                dhcp4::Repr {
                    relay_agent_info: None,
                    ..rw
                },
                r
            );
            let mut without = Vec::new();
            let v = dhcp4::remove_relay_agent_info(&with, &mut without)
                .expect("remove")
                .expect("option 82 present");
            assert_eq!(dhcp4::RelayAgentInfo::parse(&v).as_ref(), Ok(&info));
            assert_eq!(dhcp4::Repr::parse_bytes(&without).as_ref(), Ok(&r));
        }
        Err(_) => assert!(r.relay_agent_info.is_some()),
    }
}

/// DHCPv6: the checked view and its option walk; for what parses, emit → parse must
/// give the same [`dhcp6::Repr`] and emitting again the same bytes; a relay message's
/// inner message is parsed too, and every message wrapped in a Relay-forward comes
/// back unchanged.
pub fn exercise_dhcp6(b: &[u8]) {
    use dataplane::proto::dhcp6;
    let Ok(p) = dhcp6::Packet::new_checked(b) else {
        return;
    };
    let _ = (
        p.msg_type(),
        p.message_type(),
        p.is_relay(),
        p.transaction_id(),
    );
    let _ = (p.hop_count(), p.link_address(), p.peer_address());
    assert_eq!(
        p.options().map(|(_, v)| 4 + v.len()).sum::<usize>(),
        p.options_bytes().len(),
        "a checked message's options cover it"
    );
    let Ok(r) = dhcp6::Repr::parse(&p) else {
        return;
    };
    let mut out = Vec::new();
    r.emit(&mut out).expect("a parsed message emits");
    let r2 = dhcp6::Repr::parse_bytes(&out).expect("an emitted message parses");
    assert_eq!(r, r2, "emit → parse changed the message");
    let mut again = Vec::new();
    r2.emit(&mut again).expect("emits again");
    assert_eq!(out, again, "emit is not stable");
    if let dhcp6::Repr::Relay(rm) = &r {
        let _ = rm.inner();
    }
    let wrapped = dhcp6::Repr::Relay(dhcp6::RelayMessage {
        msg_type: dhcp6::MessageType::RelayForw,
        hop_count: 0,
        link_address: Ipv6Addr::UNSPECIFIED,
        peer_address: Ipv6Addr::LOCALHOST,
        relay_message: out.clone(),
        interface_id: Some(b"eth0".to_vec()),
        other: Vec::new(),
    });
    let mut w = Vec::new();
    if wrapped.emit(&mut w).is_ok() {
        let dhcp6::Repr::Relay(back) = dhcp6::Repr::parse_bytes(&w).expect("relay parses") else {
            panic!("a relay message parsed as another format");
        };
        assert_eq!(back.inner().as_ref(), Ok(&r));
    }
}

/// memif control messages ([`dataplane::proto::memif`]): the datagram as received
/// (any length but 128 is an error), the same bytes cut or zero-padded to 128, and
/// for every message that parses, emit → parse gives the same message back; the
/// peer-text sanitiser, the ring-index check on values taken from the input, and
/// for a `HELLO` the ring pairs a slave would ask for (`Hello::ring_pairs`).
pub fn exercise_memif(b: &[u8]) {
    use dataplane::proto::memif::{field_text, pending, Msg, MSG_SIZE};
    let _ = Msg::parse(b);
    let mut fixed = [0u8; MSG_SIZE];
    let n = b.len().min(MSG_SIZE);
    fixed[..n].copy_from_slice(&b[..n]);
    if let Ok(m) = Msg::parse(&fixed) {
        let again = Msg::parse(&m.emit()).expect("an emitted message parses");
        assert_eq!(again, m);
        match m {
            Msg::Connect { name } | Msg::Connected { name } => {
                let mut out = [0u8; 64];
                let k = field_text(&name, &mut out);
                assert!(out[..k].iter().all(|c| (0x20..0x7f).contains(c)));
            }
            Msg::Disconnect { reason, .. } => {
                let mut out = [0u8; 16];
                let k = field_text(&reason, &mut out);
                assert!(k <= 16);
            }
            Msg::Hello(h) => {
                // The ring pairs a slave asks for: 1 ..= wanted, within both maxima.
                let wanted = u16::from(b.get(MSG_SIZE).copied().unwrap_or(2));
                let n = h.ring_pairs(wanted);
                assert!(n >= 1 && n <= wanted.max(1));
                assert!(n == 1 || (n - 1 <= h.max_c2s_ring && n - 1 <= h.max_s2c_ring));
            }
            _ => {}
        }
    }
    if b.len() >= 6 {
        let h = u16::from_le_bytes([b[0], b[1]]);
        let t = u16::from_le_bytes([b[2], b[3]]);
        let size = 1u16 << (b[4] % 15);
        if let Some(k) = pending(h, t, size) {
            assert!(k <= size);
        }
    }
}

/// vhost-user messages ([`dataplane::proto::vhost_user`]): header and payload of the
/// bytes as received; for every request whose payload parses, the same request
/// emitted again parses to the same payload.
pub fn exercise_vhost_user(b: &[u8]) {
    use dataplane::proto::vhost_user::{parse_payload, Header, Out, Payload, HDR_LEN};
    let Ok(h) = Header::parse(b) else {
        return;
    };
    let Ok(p) = parse_payload(&h, &b[HDR_LEN..]) else {
        return;
    };
    let out = match p {
        Payload::None => return,
        Payload::U64(v) => Out::request_u64(h.request, 0, v),
        Payload::State(s) => Out::request_state(h.request, 0, s),
        Payload::Addr(a) => Out::request_addr(0, &a),
        Payload::Mem(t) => Out::request_mem(0, t.regions()),
    };
    let h2 = Header::parse(out.bytes()).expect("an emitted header parses");
    assert_eq!(h2.request, h.request);
    assert_eq!(
        parse_payload(&h2, &out.bytes()[HDR_LEN..]).expect("an emitted payload parses"),
        p
    );
}
