//! Tests of IPv6 for IPoE subscribers (`ipoe.dhcp6`).

use super::tests::cp;
use super::*;
use crate::config::IpoeSection;
use crate::dhcp6::{AddrPoolConfig, Dhcp6Config, PrefixPoolConfig};
use crate::lcp::AuthProto;
use alloc::string::ToString;
use core::net::Ipv6Addr;
use dataplane::proto::dhcp6::{opt, Duid, Ia, Message, MessageType, Repr};
use dataplane::proto::{checksum, icmpv6, ipv6, udp, IpProtocol};

const MAC: [u8; 6] = [2, 0xaa, 0, 0, 0, 6];
const VLANS: Vlans = Vlans { svlan: 0, cvlan: 9 };

fn cfg() -> Config {
    Config {
        auth: AuthProto::Pap,
        auth_fallback: None,
        ra_managed: true,
        ra_other: true,
        ipoe: Some(IpoeSection {
            authorize: false,
            dhcp6: true,
            ..IpoeSection::default()
        }),
        dhcp6: Some(Dhcp6Config {
            address_pools: alloc::vec![AddrPoolConfig {
                name: "na".to_string(),
                first: "2001:db8:100::10".parse().unwrap(),
                last: "2001:db8:100::1f".parse().unwrap(),
            }],
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

fn client_ll() -> Ipv6Addr {
    crate::dhcp6::wire::link_local(MacAddr(MAC))
}

/// An IPv6 datagram from the client's link-local address to `dst` as an Ethernet
/// frame on the test line (to the IPv6 multicast MAC of `dst`, or to `to`).
fn frame6(dst: Ipv6Addr, to: Option<[u8; 6]>, next: IpProtocol, l4: &[u8]) -> Vec<u8> {
    let o = dst.octets();
    let eth = EthRepr {
        dst_addr: MacAddr(to.unwrap_or([0x33, 0x33, o[12], o[13], o[14], o[15]])),
        src_addr: MacAddr(MAC),
        vlans: VLANS.to_stack(),
        ethertype: EtherType::IPV6,
    };
    let l3 = eth.buffer_len();
    let mut f = alloc::vec![0u8; l3 + ipv6::HEADER_LEN + l4.len()];
    eth.emit(&mut Frame::new_unchecked(&mut f[..])).unwrap();
    ipv6::Repr {
        src_addr: client_ll(),
        dst_addr: dst,
        next_header: next,
        payload_len: l4.len(),
        hop_limit: 255,
        traffic_class: 0,
        flow_label: 0,
    }
    .emit(&mut ipv6::Packet::new_unchecked(&mut f[l3..]))
    .unwrap();
    f[l3 + ipv6::HEADER_LEN..].copy_from_slice(l4);
    f
}

/// A DHCPv6 client message to All_DHCP_Relay_Agents_and_Servers (RFC 8415 §7.1).
fn dhcp6_frame(m: &Message) -> Vec<u8> {
    let mut msg = Vec::new();
    Repr::Message(m.clone()).emit(&mut msg).unwrap();
    let dst: Ipv6Addr = "ff02::1:2".parse().unwrap();
    let mut u = alloc::vec![0u8; udp::HEADER_LEN + msg.len()];
    let mut p = udp::Packet::new_unchecked(&mut u[..]);
    udp::Repr {
        src_port: 546,
        dst_port: 547,
        payload_len: msg.len(),
    }
    .emit(&mut p)
    .unwrap();
    p.payload_mut().copy_from_slice(&msg);
    p.fill_checksum(&checksum::PseudoHeader::V6 {
        src: client_ll(),
        dst,
    });
    frame6(dst, None, IpProtocol::UDP, &u)
}

/// An ICMPv6 message `body` (type first) with a valid checksum.
fn icmp6_frame(dst: Ipv6Addr, to: Option<[u8; 6]>, body: &[u8]) -> Vec<u8> {
    let mut b = body.to_vec();
    icmpv6::Packet::new_unchecked(&mut b[..]).fill_checksum(&client_ll(), &dst);
    frame6(dst, to, IpProtocol::ICMPV6, &b)
}

fn solicit(ia_na: bool, ia_pd: bool) -> Message {
    Message {
        client_id: Some(Duid::ll(MAC)),
        ia_na: if ia_na {
            alloc::vec![Ia::new(1, 0, 0)]
        } else {
            Vec::new()
        },
        ia_pd: if ia_pd {
            alloc::vec![Ia::new(2, 0, 0)]
        } else {
            Vec::new()
        },
        rapid_commit: true,
        oro: Some(alloc::vec![opt::DNS_SERVERS]),
        elapsed_time: Some(0),
        ..Message::new(MessageType::Solicit, 0x0012_3456)
    }
}

/// The IPv6 datagram of an Ethernet frame we sent (after the test line's tag).
fn ip_of(f: &[u8]) -> &[u8] {
    assert_eq!(&f[0..6], &MAC, "to the subscriber's MAC");
    assert_eq!(&f[16..18], &[0x86, 0xdd], "one C-VLAN tag, then IPv6");
    &f[18..]
}

fn reply_of(f: &[u8]) -> Message {
    let ip = ip_of(f);
    assert_eq!(ip[6], 17, "UDP");
    match Repr::parse_bytes(&ip[48..]).unwrap() {
        Repr::Message(m) => m,
        Repr::Relay(_) => panic!("relay"),
    }
}

fn key() -> AccessKey {
    AccessKey {
        port: 0,
        mac: MAC,
        vlans: VLANS,
    }
}

#[test]
fn router_solicitation_gets_a_managed_ra_without_prefix_and_ns_an_na_with_tlla() {
    let mut c = cp(&cfg());
    let our_mac = c.mac();
    let all_routers: Ipv6Addr = "ff02::2".parse().unwrap();
    c.input(
        0,
        &icmp6_frame(all_routers, None, &[133, 0, 0, 0, 0, 0, 0, 0]),
        10,
    );
    let tx = c.take_tx();
    assert_eq!(tx.len(), 1, "one RA");
    let ip = ip_of(&tx[0].1);
    let our_ll = crate::dhcp6::wire::link_local(MacAddr(our_mac));
    assert_eq!(&ip[8..24], &our_ll.octets(), "from our link-local address");
    assert_eq!(
        &ip[24..40],
        &client_ll().octets(),
        "to the soliciting client"
    );
    assert_eq!(ip[7], 255);
    let ra = &ip[40..];
    assert_eq!(ra[0], 134);
    assert_eq!(ra[5] & 0xc0, 0xc0, "M and O set as configured");
    // Options: SLLA (type 1) with our MAC, no Prefix Information (type 3).
    let mut opts = &ra[16..];
    let (mut slla, mut pio) = (None, false);
    while opts.len() >= 2 && opts[1] > 0 {
        let l = usize::from(opts[1]) * 8;
        match opts[0] {
            1 => slla = Some(opts[2..8].to_vec()),
            3 => pio = true,
            _ => {}
        }
        opts = &opts[l.min(opts.len())..];
    }
    assert_eq!(slla.as_deref(), Some(&our_mac[..]));
    assert!(!pio, "no SLAAC prefix on IPoE");
    // A second one within a second from the same line without a session is still
    // answered (bucket), but a flood is bounded.
    for i in 0..200 {
        c.input(
            0,
            &icmp6_frame(all_routers, None, &[133, 0, 0, 0, 0, 0, 0, 0]),
            20 + i,
        );
    }
    let n = c.take_tx().len();
    assert!(
        n < 100,
        "RS flood from lines without a session is bounded: {n}"
    );
    assert!(c.stats.rs_rate_limited > 0);

    // NS for our link-local address: NA with R, S, O and the Target Link-Layer
    // Address option (RFC 4861 §7.2.4).
    let mut ns = alloc::vec![135, 0, 0, 0, 0, 0, 0, 0];
    ns.extend_from_slice(&our_ll.octets());
    let o = our_ll.octets();
    let sn: Ipv6Addr = Ipv6Addr::new(
        0xff02,
        0,
        0,
        0,
        0,
        1,
        0xff00 | u16::from(o[13]),
        u16::from_be_bytes([o[14], o[15]]),
    );
    c.input(0, &icmp6_frame(sn, None, &ns), 5000);
    let tx = c.take_tx();
    assert_eq!(tx.len(), 1, "one NA");
    let na = &ip_of(&tx[0].1)[40..];
    assert_eq!(na[0], 136);
    assert_eq!(na[4], 0xe0, "R, S, O");
    assert_eq!(&na[8..24], &our_ll.octets());
    assert_eq!(&na[24..26], &[2, 1], "TLLA option");
    assert_eq!(&na[26..32], &our_mac);
    // NS for another address (a client's duplicate address detection) is not ours.
    let mut dad = alloc::vec![135, 0, 0, 0, 0, 0, 0, 0];
    dad.extend_from_slice(&"2001:db8:100::10".parse::<Ipv6Addr>().unwrap().octets());
    c.input(0, &icmp6_frame(sn, None, &dad), 5001);
    assert!(c.take_tx().is_empty());
}

#[test]
fn dhcp6_solicit_starts_an_ipv6_only_session_and_release_ends_it() {
    let mut c = cp(&cfg());
    c.input(0, &dhcp6_frame(&solicit(true, true)), 100);
    let tx = c.take_tx();
    // The Reply (rapid commit), then the first RA once something is bound.
    let replies: Vec<Message> = tx
        .iter()
        .filter(|(_, f)| ip_of(f)[6] == 17)
        .map(|(_, f)| reply_of(f))
        .collect();
    assert_eq!(replies.len(), 1, "{tx:?}");
    let r = &replies[0];
    assert_eq!(r.msg_type, MessageType::Reply);
    let addr = r.ia_na[0].items[0].addr;
    let pd = &r.ia_pd[0].items[0];
    assert!(
        tx.iter()
            .any(|(_, f)| ip_of(f)[6] == 58 && ip_of(f)[40] == 134),
        "an RA once bound"
    );
    assert_eq!(c.session_count(), 1);
    assert_eq!(c.ipoe_session_count(), 1, "installed although IPv6 only");
    assert_eq!(c.ipoe_address6_count(), 1);
    let fib = c.take_fib();
    let hi = (u128::from(pd.prefix) >> 64) as u64;
    assert!(
        matches!(fib.first(), Some(FibUpdate::Add { ip: 0, sid: 0, .. })),
        "installed without IPv4: {fib:?}"
    );
    assert!(fib.contains(&FibUpdate::AddAddr6 {
        idx: 0,
        addr: u128::from(addr),
        router_iid: u128::from(crate::dhcp6::wire::link_local(MacAddr(c.mac()))) as u64,
    }));
    assert!(fib.contains(&FibUpdate::AddPd {
        idx: 0,
        prefix: hi,
        len: 56
    }));
    // Release both (RFC 8415 §18.2.7): withdrawn, and the session (no DHCPv4
    // lease) ends.
    let release = Message {
        client_id: Some(Duid::ll(MAC)),
        server_id: r.server_id.clone(),
        ia_na: r.ia_na.clone(),
        ia_pd: r.ia_pd.clone(),
        elapsed_time: Some(0),
        ..Message::new(MessageType::Release, 0x0012_3457)
    };
    c.input(0, &dhcp6_frame(&release), 200);
    let fib = c.take_fib();
    assert!(fib.contains(&FibUpdate::RemoveAddr6 {
        idx: 0,
        addr: u128::from(addr)
    }));
    assert!(fib.contains(&FibUpdate::RemovePd { idx: 0, prefix: hi }));
    assert!(
        fib.iter()
            .any(|u| matches!(u, FibUpdate::Remove { idx: 0, .. })),
        "{fib:?}"
    );
    assert_eq!(c.session_count(), 0);
    assert_eq!(c.stats.sessions_ended, 1);
}

#[test]
fn dual_stack_keeps_the_session_until_the_last_lease_goes() {
    let mut c = cp(&cfg());
    c.input(0, &dhcp6_frame(&solicit(true, false)), 100);
    let _ = c.take_tx();
    let _ = c.take_fib();
    assert_eq!(c.session_count(), 1);
    // The session also gets IPv4 by DHCPv4 (same line): one session.
    let idx = *c.by_key.get(&(key(), 0)).unwrap();
    let client = crate::dhcp4::ClientKey {
        vlans: VLANS,
        mac: MAC,
        client_id: None,
    };
    let addr4 = Ipv4Addr::new(100, 72, 0, 9);
    c.dhcp_event(
        crate::dhcp4::Event::LeaseBound {
            client: client.clone(),
            lease: crate::dhcp4::Lease {
                addr: addr4,
                lease_s: 600,
                expires_ms: 600_150,
            },
        },
        150,
    );
    assert_eq!(c.session_count(), 1);
    assert!(
        c.take_fib()
            .iter()
            .any(|u| matches!(u, FibUpdate::Add { ip, .. } if *ip == u32::from(addr4))),
        "IPv4 routed to the same session"
    );
    // The IPv4 side ends (a DHCPRELEASE): IPv4 stops, the session stays.
    c.dhcp_event(
        crate::dhcp4::Event::LeaseReleased {
            client,
            addr: addr4,
        },
        160,
    );
    let fib = c.take_fib();
    assert!(
        fib.iter().any(|u| matches!(u, FibUpdate::Down4 { .. })),
        "{fib:?}"
    );
    assert!(!fib.iter().any(|u| matches!(u, FibUpdate::Remove { .. })));
    assert_eq!(c.session_count(), 1);
    // A session timeout or an operator still ends it all: the address is withdrawn.
    c.terminate(idx, radius::terminate_cause::ADMIN_RESET, 170);
    let fib = c.take_fib();
    assert!(
        fib.iter()
            .any(|u| matches!(u, FibUpdate::RemoveAddr6 { .. })),
        "{fib:?}"
    );
    assert_eq!(c.session_count(), 0);
    assert_eq!(c.ipoe_address6_count(), 0);
}

#[test]
fn relay_forward_from_a_subscriber_line_is_dropped_and_ipv6_without_ipoe6_counted() {
    let mut c = cp(&cfg());
    let mut m = Vec::new();
    Repr::Message(solicit(true, false)).emit(&mut m).unwrap();
    // Relay-forw (12), hop count, link and peer addresses, then a Relay Message.
    let mut relay = alloc::vec![12, 0];
    relay.extend_from_slice(&[0; 32]);
    relay.extend_from_slice(&[0, 9]);
    relay.extend_from_slice(&(m.len() as u16).to_be_bytes());
    relay.extend_from_slice(&m);
    let dst: Ipv6Addr = "ff02::1:2".parse().unwrap();
    let mut u = alloc::vec![0u8; udp::HEADER_LEN + relay.len()];
    let mut p = udp::Packet::new_unchecked(&mut u[..]);
    udp::Repr {
        src_port: 547,
        dst_port: 547,
        payload_len: relay.len(),
    }
    .emit(&mut p)
    .unwrap();
    p.payload_mut().copy_from_slice(&relay);
    p.fill_checksum(&checksum::PseudoHeader::V6 {
        src: client_ll(),
        dst,
    });
    c.input(0, &frame6(dst, None, IpProtocol::UDP, &u), 10);
    assert!(c.take_tx().is_empty());
    assert_eq!(c.stats.relay_dropped, 1);
    assert_eq!(c.session_count(), 0);

    // Without ipoe.dhcp6, IPv6 multicast from IPoE lines is not for us.
    let mut plain = cfg();
    if let Some(i) = plain.ipoe.as_mut() {
        i.dhcp6 = false;
    }
    let mut c = cp(&plain);
    c.input(0, &dhcp6_frame(&solicit(true, false)), 10);
    assert!(c.take_tx().is_empty());
    assert_eq!(c.session_count(), 0);
    assert_eq!(c.stats.not_for_us, 1);
}

#[test]
fn ipoe_dhcp6_needs_a_dhcp6_section_and_may_be_address_only() {
    let mut c = cfg();
    c.dhcp6 = None;
    let e = c.validate().unwrap_err();
    assert!(e.0.contains("ipoe.dhcp6"), "{}", e.0);
    let mut na_only = cfg();
    if let Some(d) = na_only.dhcp6.as_mut() {
        d.prefix_pools.clear();
    }
    na_only.validate().expect("IA_NA only is fine for IPoE");
}

/// RFC 4818 / RFC 6911: a Delegated-IPv6-Prefix and a Framed-IPv6-Address from the
/// Access-Accept are what the subscriber's DHCPv6 gets (not the pools'); a
/// delegated prefix of another length than the configured one is counted and the
/// pool answers.
#[test]
fn radius_delegated_prefix_and_framed_ipv6_address_are_served() {
    let mut c = cp(&cfg());
    let want_na: Ipv6Addr = "2001:db8:100::1a".parse().unwrap();
    let want_pd: Ipv6Addr = "2001:db8:8000:4200::".parse().unwrap();
    let idx = c
        .ipoe_open(&key(), b"02:aa:00:00:00:06".to_vec(), 0)
        .unwrap();
    let m = dhcp6_frame(&solicit(true, true));
    let ip = &m[18..];
    let req = crate::dhcp6::wire::decap_ipv6(ip).unwrap();
    c.ipoe
        .as_mut()
        .unwrap()
        .held6
        .insert(idx, (req.src, req.message.to_vec()));
    let reply = Reply {
        delegated_ipv6_prefix: Some((want_pd.octets(), 56)),
        framed_ipv6_address: Some(want_na.octets()),
        ..Reply::default()
    };
    c.accept(idx, reply, 10);
    let tx = c.take_tx();
    let r = tx
        .iter()
        .filter(|(_, f)| ip_of(f)[6] == 17)
        .map(|(_, f)| reply_of(f))
        .next()
        .expect("a Reply");
    assert_eq!(r.ia_na[0].items[0].addr, want_na);
    assert_eq!(r.ia_pd[0].items[0].prefix, want_pd);
    assert_eq!(r.ia_pd[0].items[0].len, 56);
    assert_eq!(c.stats.dhcp6_fixed_refused, 0);
    // The session ends: the line's fixed assignment goes with it, so the next
    // subscriber on the line gets pool addresses.
    c.terminate(idx, radius::terminate_cause::ADMIN_RESET, 20);
    assert_eq!(c.session_count(), 0);

    // A /48 where the pools delegate /56: refused, counted, the pool answers.
    let mut c = cp(&cfg());
    let idx = c
        .ipoe_open(&key(), b"02:aa:00:00:00:06".to_vec(), 0)
        .unwrap();
    c.ipoe
        .as_mut()
        .unwrap()
        .held6
        .insert(idx, (req.src, req.message.to_vec()));
    let reply = Reply {
        delegated_ipv6_prefix: Some((want_pd.octets(), 48)),
        ..Reply::default()
    };
    c.accept(idx, reply, 10);
    assert_eq!(c.stats.dhcp6_fixed_refused, 1);
    let tx = c.take_tx();
    let r = tx
        .iter()
        .filter(|(_, f)| ip_of(f)[6] == 17)
        .map(|(_, f)| reply_of(f))
        .next()
        .expect("a Reply");
    assert_eq!(r.ia_pd[0].items[0].len, 56, "from the pool");
    assert_ne!(r.ia_pd[0].items[0].prefix, want_pd);
}
