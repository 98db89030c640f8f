//! Tests of DHCPv6 prefix delegation over PPPoE.

use super::tests::{cp, run, sub};
use super::*;
use crate::dhcp6::{Dhcp6Config, PrefixPoolConfig};
use crate::lcp::AuthProto;
use alloc::string::ToString;
use core::net::Ipv6Addr;
use dataplane::proto::dhcp6::{opt, Duid, Ia, Message, MessageType, Repr};
use dataplane::proto::{checksum, ipv6, udp, IpProtocol};
use pktgen::subscribers::client::ClientPhase;

fn cfg() -> Config {
    Config {
        auth: AuthProto::Pap,
        auth_fallback: None,
        ipv6cp: true,
        users: alloc::vec![crate::config::UserConfig {
            name: "alice".to_string(),
            password: "pw".into(),
            ip: None,
            rate: None,
        }],
        pools6: alloc::vec![crate::config::Pool6Config {
            name: "v6".to_string(),
            prefix: "2001:db8:100::/40".parse().unwrap(),
        }],
        dhcp6: Some(Dhcp6Config {
            prefix_pools: alloc::vec![PrefixPoolConfig {
                name: "pd".to_string(),
                prefix: "2001:db8:8000::/40".parse().unwrap(),
                len: 56,
            }],
            ..Dhcp6Config::default()
        }),
        ..Config::default()
    }
}

/// The CPE's DHCPv6 message `m` from `fe80::<iid>` to All_DHCP_Relay_Agents_and_
/// Servers (RFC 8415 §7.1) as a PPP IPv6 frame payload (protocol 0x0057).
fn ppp_dhcp6(iid: u64, m: &Message) -> Vec<u8> {
    let mut msg = Vec::new();
    Repr::Message(m.clone()).emit(&mut msg).unwrap();
    let src = Ipv6Addr::from(crate::nd::link_local(iid));
    let dst: Ipv6Addr = "ff02::1:2".parse().unwrap();
    let ulen = udp::HEADER_LEN + msg.len();
    let mut d = alloc::vec![0u8; ipv6::HEADER_LEN + ulen];
    ipv6::Repr {
        src_addr: src,
        dst_addr: dst,
        next_header: IpProtocol::UDP,
        payload_len: ulen,
        hop_limit: 1,
        traffic_class: 0,
        flow_label: 0,
    }
    .emit(&mut ipv6::Packet::new_unchecked(&mut d[..]))
    .unwrap();
    let mut u = udp::Packet::new_unchecked(&mut d[ipv6::HEADER_LEN..]);
    udp::Repr {
        src_port: 546,
        dst_port: 547,
        payload_len: msg.len(),
    }
    .emit(&mut u)
    .unwrap();
    u.payload_mut().copy_from_slice(&msg);
    u.fill_checksum(&checksum::PseudoHeader::V6 { src, dst });
    let mut f = alloc::vec![0x00, 0x57];
    f.extend_from_slice(&d);
    f
}

#[test]
fn prefix_delegated_over_pppoe_is_routed_and_withdrawn() {
    let mut c = cp(&cfg());
    let mut subs = alloc::vec![sub(1, "alice", "pw", AuthProto::Pap)];
    let mut up = Vec::new();
    subs[0].start(0, &mut up);
    run(&mut c, &mut subs, 0, up);
    assert_eq!(subs[0].phase, ClientPhase::Up);
    assert_ne!(subs[0].ipv6, 0, "SLAAC /64 first");
    let _ = c.take_fib();
    let _ = c.take_tx();
    // Solicit with IA_PD and Rapid Commit (RFC 8415 §18.2.1): bound at once.
    let solicit = Message {
        client_id: Some(Duid::ll([2, 0, 0, 0, 0, 1])),
        ia_pd: alloc::vec![Ia::new(7, 0, 0)],
        rapid_commit: true,
        oro: Some(alloc::vec![opt::DNS_SERVERS]),
        elapsed_time: Some(0),
        ..Message::new(MessageType::Solicit, 0x00ab_cdef)
    };
    let f = subs[0].session_frame(&ppp_dhcp6(0x1234, &solicit));
    c.input(0, &f, 100);
    let tx = c.take_tx();
    assert_eq!(tx.len(), 1, "one Reply");
    // Ethernet + QinQ (sub 1 has an S-VLAN) or one tag, PPPoE 6, PPP 2, IPv6 40, UDP 8.
    let f = &tx[0].1;
    let ppp = f.windows(2).position(|w| w == [0x00, 0x57]).unwrap();
    let ip = &f[ppp + 2..];
    assert_eq!(ip[6], 17);
    let reply = match Repr::parse_bytes(&ip[48..]).unwrap() {
        Repr::Message(m) => m,
        Repr::Relay(_) => panic!("relay"),
    };
    assert_eq!(reply.msg_type, MessageType::Reply);
    assert!(reply.rapid_commit);
    let p = &reply.ia_pd[0].items[0];
    assert_eq!(p.len, 56);
    let hi = (u128::from(p.prefix) >> 64) as u64;
    assert_eq!(
        hi >> 24,
        0x0020_010d_b880,
        "from the PD pool 2001:db8:8000::/40"
    );
    let fib = c.take_fib();
    assert_eq!(
        fib,
        alloc::vec![FibUpdate::AddPd {
            idx: 0,
            prefix: hi,
            len: 56
        }]
    );
    assert_eq!(c.delegated_prefix_count(), 1);
    // The subscriber hangs up: the prefix is withdrawn and back in the pool.
    let mut up = Vec::new();
    subs[0].terminate(&mut up);
    run(&mut c, &mut subs, 200, up);
    let fib = c.take_fib();
    assert!(
        fib.contains(&FibUpdate::RemovePd { idx: 0, prefix: hi }),
        "{fib:?}"
    );
    assert_eq!(c.delegated_prefix_count(), 0);
    let s = c.dhcp6_stats().unwrap();
    assert!(s.rx(MessageType::Solicit) >= 1 && s.tx(MessageType::Reply) >= 1);
}

#[test]
fn dhcp6_config_needs_one_delegated_length() {
    let mut bad = cfg();
    if let Some(d) = bad.dhcp6.as_mut() {
        d.prefix_pools.push(PrefixPoolConfig {
            name: "pd48".to_string(),
            prefix: "2001:db8:c000::/36".parse().unwrap(),
            len: 48,
        });
    }
    let e = bad.validate().unwrap_err();
    assert!(e.0.contains("one length"), "{}", e.0);
    let mut overlap = cfg();
    if let Some(d) = overlap.dhcp6.as_mut() {
        d.prefix_pools[0].prefix = "2001:db8:100::/40".parse().unwrap();
    }
    let e = overlap.validate().unwrap_err();
    assert!(e.0.contains("overlaps IPv6 pool"), "{}", e.0);
}
