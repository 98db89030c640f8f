//! Tests of IPoE subscribers in the control plane.

use super::*;
use crate::config::{IpoeSection, UserConfig};
use crate::lcp::AuthProto;
use alloc::string::ToString;
use dataplane::proto::arp;
use dataplane::proto::dhcp4::{opt, MessageType, Packet as DhcpPacket, Repr as DhcpRepr};
use dataplane::proto::{ipv4, udp, IpProtocol};

const MAC: [u8; 6] = [2, 0xaa, 0, 0, 0, 1];
const VLANS: Vlans = Vlans {
    svlan: 100,
    cvlan: 7,
};

fn key() -> AccessKey {
    AccessKey {
        port: 0,
        mac: MAC,
        vlans: VLANS,
    }
}

fn cp_ipoe(authorize: bool, users: Vec<UserConfig>) -> ControlPlane {
    let cfg = Config {
        auth: AuthProto::Pap,
        auth_fallback: None,
        users,
        ipoe: Some(IpoeSection {
            authorize,
            password: "line-pw".into(),
            ..IpoeSection::default()
        }),
        ..Config::default()
    };
    super::tests::cp(&cfg)
}

/// A DHCP client message as a frame: Ethernet broadcast with the test line's VLANs,
/// IPv4 `src` → `dst`, UDP 68 → 67.
fn client_frame(r: &DhcpRepr, src: Ipv4Addr, dst: Ipv4Addr) -> Vec<u8> {
    client_frame_from(MAC, r, src, dst)
}

/// [`client_frame`] from another MAC on the test line.
fn client_frame_from(mac: [u8; 6], r: &DhcpRepr, src: Ipv4Addr, dst: Ipv4Addr) -> Vec<u8> {
    let mut msg = Vec::new();
    r.emit(&mut msg).unwrap();
    let eth = EthRepr {
        dst_addr: MacAddr::BROADCAST,
        src_addr: MacAddr(mac),
        vlans: VLANS.to_stack(),
        ethertype: EtherType::IPV4,
    };
    let l3 = eth.buffer_len();
    let ulen = udp::HEADER_LEN + msg.len();
    let mut f = alloc::vec![0u8; l3 + ipv4::HEADER_LEN + ulen];
    eth.emit(&mut Frame::new_unchecked(&mut f[..])).unwrap();
    ipv4::Repr {
        src_addr: src,
        dst_addr: dst,
        protocol: IpProtocol::UDP,
        payload_len: ulen,
        ttl: 64,
        dscp: 0,
        ecn: 0,
        ident: 0,
        dont_frag: false,
        more_frags: false,
        frag_offset: 0,
    }
    .emit(&mut ipv4::Packet::new_unchecked(&mut f[l3..]))
    .unwrap();
    let at = l3 + ipv4::HEADER_LEN;
    let mut u = udp::Packet::new_unchecked(&mut f[at..]);
    udp::Repr {
        src_port: 68,
        dst_port: 67,
        payload_len: msg.len(),
    }
    .emit(&mut u)
    .unwrap();
    u.payload_mut().copy_from_slice(&msg);
    u.fill_checksum(&dataplane::proto::checksum::PseudoHeader::V4 { src, dst });
    f
}

fn request(t: MessageType) -> DhcpRepr {
    request_from(MAC, t)
}

fn request_from(mac: [u8; 6], t: MessageType) -> DhcpRepr {
    let mut chaddr = [0u8; 16];
    chaddr[..6].copy_from_slice(&mac);
    DhcpRepr {
        xid: 0x0102_0304,
        chaddr,
        message_type: Some(t),
        parameter_request_list: Some(alloc::vec![opt::SUBNET_MASK, opt::ROUTER]),
        ..DhcpRepr::default()
    }
}

/// The DHCP replies among the frames sent, parsed.
fn replies(tx: &[(u16, Vec<u8>)]) -> Vec<DhcpRepr> {
    tx.iter()
        .filter_map(|(_, f)| {
            // Ethernet + two tags + IPv4 (no options) + UDP.
            let m = f.get(14 + 8 + 20 + 8..)?;
            DhcpRepr::parse(&DhcpPacket::new_checked(m).ok()?).ok()
        })
        .collect()
}

/// DISCOVER → OFFER → REQUEST → ACK; returns the bound address.
fn bind(c: &mut ControlPlane, now: u64) -> Ipv4Addr {
    let any = Ipv4Addr::UNSPECIFIED;
    c.input(
        0,
        &client_frame(&request(MessageType::Discover), any, Ipv4Addr::BROADCAST),
        now,
    );
    c.poll(now);
    let offer = replies(&c.take_tx());
    assert_eq!(offer.len(), 1, "one OFFER");
    assert_eq!(offer[0].message_type, Some(MessageType::Offer));
    let addr = offer[0].yiaddr;
    let mut req = request(MessageType::Request);
    req.requested_ip = Some(addr);
    req.server_id = offer[0].server_id;
    c.input(0, &client_frame(&req, any, Ipv4Addr::BROADCAST), now + 10);
    let ack = replies(&c.take_tx());
    assert_eq!(ack.len(), 1);
    assert_eq!(ack[0].message_type, Some(MessageType::Ack));
    assert_eq!(ack[0].yiaddr, addr);
    assert_eq!(ack[0].routers, alloc::vec![Ipv4Addr::new(100, 72, 0, 1)]);
    addr
}

#[test]
fn dhcp_creates_routes_and_releases_an_ipoe_session() {
    let mut c = cp_ipoe(false, Vec::new());
    let addr = bind(&mut c, 0);
    assert!(Ipv4Addr::new(100, 72, 0, 2) <= addr && addr <= Ipv4Addr::new(100, 72, 255, 254));
    let fib = c.take_fib();
    assert!(
        matches!(fib[..], [FibUpdate::Add { sid: 0, ip, key: k, .. }] if ip == u32::from(addr) && k == key()),
        "{fib:?}"
    );
    assert_eq!(c.session_count(), 1);
    assert_eq!(c.ipoe_session_count(), 1);
    assert_eq!(c.half_open_count(), 0, "bound: no longer half-open");
    let s = &c.sessions()[0];
    assert_eq!((s.sid, s.ip, s.phase), (0, u32::from(addr), "up"));
    assert_eq!(s.user, "02:aa:00:00:00:01");
    // A renewal (unicast, ciaddr) keeps the session and adds no route.
    let mut renew = request(MessageType::Request);
    renew.ciaddr = addr;
    c.input(
        0,
        &client_frame(&renew, addr, Ipv4Addr::new(100, 72, 0, 1)),
        1000,
    );
    assert_eq!(
        replies(&c.take_tx())[0].message_type,
        Some(MessageType::Ack)
    );
    assert!(c.take_fib().is_empty());
    // DHCPRELEASE ends it and withdraws the route.
    let mut rel = request(MessageType::Release);
    rel.ciaddr = addr;
    rel.server_id = Some(Ipv4Addr::new(100, 72, 0, 1));
    rel.parameter_request_list = None;
    c.input(
        0,
        &client_frame(&rel, addr, Ipv4Addr::new(100, 72, 0, 1)),
        2000,
    );
    let fib = c.take_fib();
    assert!(
        matches!(fib[..], [FibUpdate::Remove { sid: 0, .. }]),
        "{fib:?}"
    );
    assert_eq!(c.session_count(), 0);
    assert_eq!(c.stats.sessions_ended, 1);
}

#[test]
fn ipoe_local_authorisation_by_mac() {
    let user = |pw: &str| UserConfig {
        name: "02:aa:00:00:00:01".to_string(),
        password: pw.into(),
        ip: None,
        rate: Some("2M/8M".to_string()),
    };
    // The right line password: accepted with the user's rate.
    let mut c = cp_ipoe(true, alloc::vec![user("line-pw")]);
    bind(&mut c, 0);
    let fib = c.take_fib();
    assert!(
        matches!(
            fib[..],
            [FibUpdate::Add {
                rate: (2_000_000, 8_000_000),
                ..
            }]
        ),
        "{fib:?}"
    );
    assert_eq!(c.stats.auth_accept, 1);
    // A wrong one: rejected, no OFFER, the slot is given back.
    let mut c = cp_ipoe(true, alloc::vec![user("other")]);
    let any = Ipv4Addr::UNSPECIFIED;
    c.input(
        0,
        &client_frame(&request(MessageType::Discover), any, Ipv4Addr::BROADCAST),
        0,
    );
    c.poll(0);
    assert!(replies(&c.take_tx()).is_empty());
    assert_eq!(c.stats.auth_reject, 1);
    assert_eq!(c.session_count(), 0);
    assert_eq!(c.half_open_count(), 0);
}

#[test]
fn proxy_arp_answers_the_subnet_but_not_probes() {
    let mut c = cp_ipoe(false, Vec::new());
    let arp_frame = |spa: Ipv4Addr, tpa: Ipv4Addr| {
        let r = arp::Repr {
            operation: arp::Operation::REQUEST,
            source_hardware_addr: MacAddr(MAC),
            source_protocol_addr: spa,
            target_hardware_addr: MacAddr::ZERO,
            target_protocol_addr: tpa,
        };
        let eth = EthRepr {
            dst_addr: MacAddr::BROADCAST,
            src_addr: MacAddr(MAC),
            vlans: VLANS.to_stack(),
            ethertype: EtherType::ARP,
        };
        let mut f = alloc::vec![0u8; eth.buffer_len() + 28];
        eth.emit(&mut Frame::new_unchecked(&mut f[..])).unwrap();
        let l = eth.buffer_len();
        r.emit(&mut arp::Packet::new_unchecked(&mut f[l..]))
            .unwrap();
        f
    };
    let me = Ipv4Addr::new(100, 72, 0, 9);
    let gw = Ipv4Addr::new(100, 72, 0, 1);
    for (spa, tpa) in [
        (me, gw),                           // the gateway: answered
        (me, Ipv4Addr::new(100, 72, 3, 3)), // a neighbour on the subnet: proxied
        (Ipv4Addr::UNSPECIFIED, me),        // a probe (RFC 5227): silent
        (me, me),                           // gratuitous: silent
        (me, Ipv4Addr::new(8, 8, 8, 8)),    // off the subnet: silent
    ] {
        c.input(0, &arp_frame(spa, tpa), 0);
    }
    let tx = c.take_tx();
    assert_eq!(tx.len(), 2);
    assert_eq!(c.stats.ipoe_arp_replies, 2);
    assert_eq!(c.stats.ipoe_arp_ignored, 3);
    let f = &tx[0].1;
    assert_eq!(&f[0..6], &MAC);
    assert_eq!(&f[12..22], &[0x88, 0xa8, 0, 100, 0x81, 0, 0, 7, 0x08, 0x06]);
    let r = arp::Repr::parse(&arp::Packet::new_checked(&f[22..]).unwrap()).unwrap();
    assert_eq!(r.operation, arp::Operation::REPLY);
    assert_eq!(r.source_protocol_addr, gw);
    assert_eq!(r.target_protocol_addr, me);
}

#[test]
fn ipoe_config_overlap_is_refused() {
    let mut i = IpoeSection::default();
    i.dhcp.gateway.addr = Ipv4Addr::new(100, 64, 0, 1);
    for p in &mut i.dhcp.pools {
        p.ranges = "100.64.1.0/24"
            .parse::<crate::config::Range4>()
            .into_iter()
            .collect();
    }
    let cfg = Config {
        ipoe: Some(i),
        ..Config::default()
    };
    let e = cfg.validate().unwrap_err();
    assert!(e.0.contains("overlaps subscriber pool"), "{}", e.0);
}

#[test]
fn lease_journal_restores_sessions_after_a_restart() {
    let mut c = cp_ipoe(false, Vec::new());
    assert!(!c.ipoe_journal_due());
    let addr = bind(&mut c, 0);
    assert!(c.ipoe_journal_due(), "a bound lease marks the journal");
    let j = c.ipoe_journal(1000, 5_000_000).unwrap();
    assert!(!c.ipoe_journal_due());
    // A new control plane, 10 s of wall clock later.
    let mut d = cp_ipoe(false, Vec::new());
    let r = d.ipoe_restore(0, &j, 0, 5_010_000).unwrap();
    assert_eq!((r.restored, r.expired, r.refused), (1, 0, 0));
    let fib = d.take_fib();
    assert!(
        matches!(fib[..], [FibUpdate::Add { sid: 0, ip, key: k, .. }] if ip == u32::from(addr) && k == key()),
        "{fib:?}"
    );
    assert_eq!(d.ipoe_session_count(), 1);
    // The restored client renews and keeps its address and session.
    let mut renew = request(MessageType::Request);
    renew.ciaddr = addr;
    d.input(
        0,
        &client_frame(&renew, addr, Ipv4Addr::new(100, 72, 0, 1)),
        100,
    );
    assert_eq!(replies(&d.take_tx())[0].yiaddr, addr);
    assert_eq!(d.session_count(), 1);
    // After the lease time (600 s by default here: 3600) nothing is restored.
    let mut e = cp_ipoe(false, Vec::new());
    let r = e.ipoe_restore(0, &j, 0, 5_000_000 + 4_000_000).unwrap();
    assert_eq!((r.restored, r.expired), (0, 1));
    // A torn journal restores nothing and says why.
    let mut f = cp_ipoe(false, Vec::new());
    assert!(f.ipoe_restore(0, &j[..j.len() - 3], 0, 5_010_000).is_err());
    assert_eq!(f.session_count(), 0);
}

/// A server's reply as it arrives on the core port: Ethernet to us, IPv4 from the
/// server to `giaddr`, UDP 67 → 67, the message `r` (with option 82 when `info`).
fn server_frame(r: &DhcpRepr, giaddr: Ipv4Addr) -> Vec<u8> {
    let mut msg = Vec::new();
    r.emit(&mut msg).unwrap();
    let reply = crate::dhcp4::Reply {
        message: msg,
        dst: crate::dhcp4::Destination::Relay(giaddr),
        vlans: Vlans::NONE,
        kind: MessageType::Offer,
    };
    crate::dhcp4::wire::encap(
        &reply,
        MacAddr([2, 0, 0, 0, 0xc0, 0xfe]),
        Ipv4Addr::new(198, 51, 100, 10),
        Some(MacAddr([2, 0, 0, 0, 0xb0, 0x01])),
    )
}

#[test]
fn relay_adds_option_82_and_binds_on_the_servers_ack() {
    let cfg = Config {
        core_ip: Some("198.51.100.1/24".parse().unwrap()),
        ipoe: Some(IpoeSection {
            authorize: false,
            relay: Some(crate::config::RelaySection {
                servers: alloc::vec![Ipv4Addr::new(198, 51, 100, 10)],
                trust_option82: false,
            }),
            ..IpoeSection::default()
        }),
        ..Config::default()
    };
    let mut c = super::tests::cp(&cfg);
    c.set_core(CoreSide {
        port: 1,
        mac: [2, 0, 0, 0, 0xc0, 0x02],
        next_hop: [2, 0, 0, 0, 0xc0, 0xfe],
        link: None,
    });
    let any = Ipv4Addr::UNSPECIFIED;
    c.input(
        0,
        &client_frame(&request(MessageType::Discover), any, Ipv4Addr::BROADCAST),
        0,
    );
    let tx = c.take_tx();
    assert_eq!(tx.len(), 1);
    assert_eq!(tx[0].0, 1, "to the core port");
    let f = &tx[0].1;
    assert_eq!(&f[0..6], &[2, 0, 0, 0, 0xc0, 0xfe]);
    let m = DhcpRepr::parse(&DhcpPacket::new_checked(&f[14 + 20 + 8..]).unwrap()).unwrap();
    assert_eq!(m.giaddr, Ipv4Addr::new(100, 72, 0, 1));
    assert_eq!(m.hops, 1);
    let info = m.relay_agent_info.clone().expect("option 82");
    assert_eq!(info.circuit_id.as_deref(), Some(&b"access0:100.7"[..]));
    assert_eq!(info.remote_id.as_deref(), Some(&b"02:aa:00:00:00:01"[..]));
    assert_eq!(c.stats.relay_to_server, 1);
    // The server offers (echoing option 82, RFC 3046 §2.2): to the client, without it.
    let yi = Ipv4Addr::new(100, 72, 5, 5);
    let mut offer = m.clone();
    offer.op = 2;
    offer.yiaddr = yi;
    offer.message_type = Some(MessageType::Offer);
    offer.server_id = Some(Ipv4Addr::new(198, 51, 100, 10));
    offer.lease_time = Some(300);
    c.input(1, &server_frame(&offer, m.giaddr), 10);
    let out = replies(&c.take_tx());
    assert_eq!(out.len(), 1);
    assert_eq!(out[0].yiaddr, yi);
    assert!(out[0].relay_agent_info.is_none(), "option 82 removed");
    assert!(c.take_fib().is_empty(), "an OFFER binds nothing");
    // The ACK binds the session.
    let mut ack = offer.clone();
    ack.message_type = Some(MessageType::Ack);
    c.input(1, &server_frame(&ack, m.giaddr), 20);
    assert_eq!(
        replies(&c.take_tx())[0].message_type,
        Some(MessageType::Ack)
    );
    let fib = c.take_fib();
    assert!(
        matches!(fib[..], [FibUpdate::Add { sid: 0, ip, .. }] if ip == u32::from(yi)),
        "{fib:?}"
    );
    // A reply without our option 82 is dropped; so is a client message that carries
    // option 82 on an untrusted line.
    let mut bare = ack.clone();
    bare.relay_agent_info = None;
    c.input(1, &server_frame(&bare, m.giaddr), 30);
    assert!(c.take_tx().is_empty());
    assert_eq!(c.stats.relay_dropped, 1);
    let mut marked = request(MessageType::Request);
    marked.relay_agent_info = Some(info.clone());
    c.input(0, &client_frame(&marked, any, Ipv4Addr::BROADCAST), 40);
    assert!(c.take_tx().is_empty(), "untrusted option 82 is not relayed");
    assert_eq!(c.stats.relay_dropped, 2);
    // The lease runs out without a renewal: the session ends.
    c.poll(20 + 300_000);
    assert_eq!(c.session_count(), 0);
}

/// Issue 15: malformed DHCP (bad option lengths, no magic cookie, oversized, a storm
/// from one MAC) is counted and dropped without affecting other subscribers.
#[test]
fn malformed_and_storming_dhcp_leave_other_subscribers_alone() {
    let mut c = cp_ipoe(false, Vec::new());
    let any = Ipv4Addr::UNSPECIFIED;
    let good = client_frame(&request(MessageType::Discover), any, Ipv4Addr::BROADCAST);
    // Where the DHCP message starts: Ethernet + two tags, IPv4, UDP.
    let at = 14 + 8 + 20 + 8;
    let mut no_cookie = good.clone();
    no_cookie[at + 236] ^= 0xff;
    let mut bad_len = good.clone();
    // The first option (53, message type) claims more octets than there are.
    let o = at + 240;
    assert_eq!(no_cookie[o], 53);
    bad_len[o + 1] = 250;
    // Lengths that claim more than the frame holds (an oversized datagram cut short).
    let mut huge = good.clone();
    huge[14 + 8 + 2..14 + 8 + 4].copy_from_slice(&9000u16.to_be_bytes());
    let mut cut = good.clone();
    cut.truncate(at + 100);
    for f in [&no_cookie, &bad_len, &huge, &cut] {
        c.input(0, f, 0);
    }
    assert!(c.take_tx().is_empty(), "nothing answered");
    // A storm of DISCOVERs from one client: rate limited by the server.
    for i in 0..1000u64 {
        c.input(0, &good, i);
    }
    let answered = replies(&c.take_tx()).len();
    assert!(answered < 50, "{answered} OFFERs to a storm");
    let drops: u64 = c
        .dhcp_stats()
        .unwrap()
        .drops_by_reason()
        .map(|(_, v)| v)
        .sum();
    let framing = c.stats.malformed;
    assert!(drops >= 900, "storm drops counted: {drops}");
    assert!(
        framing + drops >= 904,
        "malformed counted: {framing} + {drops}"
    );
    // Another subscriber on another line still gets its lease.
    let mut other = request(MessageType::Discover);
    other.chaddr[5] = 2;
    let mut f = client_frame(&other, any, Ipv4Addr::BROADCAST);
    f[11] = 2; // source MAC …:02
    f[19] = 8; // C-VLAN 8
    c.input(0, &f, 2000);
    let r = replies(&c.take_tx());
    assert_eq!(r.len(), 1);
    assert_eq!(r[0].message_type, Some(MessageType::Offer));
}

/// RFC 2865 §5.8 / RFC 2869 §5.18 for IPoE: the Access-Accept's Framed-IP-Address is
/// the address the subscriber's DHCP gets (even outside the pools, inside the IPoE
/// subnet); one outside the subnet rejects the session; Framed-Pool picks the pool.
#[test]
fn radius_framed_ip_address_and_pool_drive_the_dhcp_offer() {
    let any = Ipv4Addr::UNSPECIFIED;
    let discover = client_frame(&request(MessageType::Discover), any, Ipv4Addr::BROADCAST);
    let fixed = Ipv4Addr::new(100, 72, 200, 9);
    let start = |c: &mut ControlPlane| {
        let idx = c
            .ipoe_open(&key(), b"02:aa:00:00:00:01".to_vec(), 0)
            .unwrap();
        let msg = crate::dhcp4::wire::decap(&discover)
            .unwrap()
            .message
            .to_vec();
        c.ipoe.as_mut().unwrap().held.insert(idx, msg);
        idx
    };
    // Framed-IP-Address inside the subnet (the default pools cover 100.72.0.2–
    // 100.72.255.254; this one is taken out of them for the line).
    let mut c = cp_ipoe(true, Vec::new());
    let idx = start(&mut c);
    let reply = Reply {
        framed_ip: Some(u32::from(fixed)),
        ..Reply::default()
    };
    c.accept(idx, reply, 10);
    let offer = replies(&c.take_tx());
    assert_eq!(offer.len(), 1, "one OFFER");
    assert_eq!(offer[0].yiaddr, fixed, "the RADIUS address");
    // The session ends: the line's fixed address goes with it.
    c.terminate(idx, radius::terminate_cause::ADMIN_RESET, 20);
    assert_eq!(c.session_count(), 0);

    // Outside the IPoE subnet: rejected, counted.
    let mut c = cp_ipoe(true, Vec::new());
    let idx = start(&mut c);
    let reply = Reply {
        framed_ip: Some(u32::from(Ipv4Addr::new(10, 9, 9, 9))),
        ..Reply::default()
    };
    c.accept(idx, reply, 10);
    assert!(replies(&c.take_tx()).is_empty());
    assert_eq!(c.stats.framed_ip_invalid, 1);
    assert_eq!(c.stats.auth_reject, 1);
    assert_eq!(c.session_count(), 0);

    // An unknown Framed-Pool: rejected too.
    let mut c = cp_ipoe(true, Vec::new());
    let idx = start(&mut c);
    let reply = Reply {
        framed_pool: Some("nosuch".into()),
        ..Reply::default()
    };
    c.accept(idx, reply, 10);
    assert_eq!(c.session_count(), 0);
    assert_eq!(c.stats.pool_exhausted, 1);

    // 0xFFFFFFFE: the NAS chooses, from the pools.
    let mut c = cp_ipoe(true, Vec::new());
    let idx = start(&mut c);
    let reply = Reply {
        framed_ip: Some(0xffff_fffe),
        ..Reply::default()
    };
    c.accept(idx, reply, 10);
    let offer = replies(&c.take_tx());
    assert_eq!(offer.len(), 1);
    assert_eq!(offer[0].yiaddr, Ipv4Addr::new(100, 72, 0, 2));
}

/// Issue 14: with two workers, an IPoE client's address is taken from the share
/// of the pool that steers to the worker whose slot block holds its session, so
/// the session's owner (the worker of its address) reads it from its own blocks.
#[test]
fn ipoe_addresses_follow_the_session_slot_group() {
    let mut c = cp_ipoe(false, Vec::new());
    c.set_workers(2);
    let any = Ipv4Addr::UNSPECIFIED;
    for k in 0..40u8 {
        let mac = [2, 0, 0, 0, 0x10, k];
        let disc = request_from(mac, MessageType::Discover);
        c.input(
            0,
            &client_frame_from(mac, &disc, any, Ipv4Addr::BROADCAST),
            0,
        );
        c.poll(0);
        let offer = replies(&c.take_tx());
        assert_eq!(offer.len(), 1, "client {k}: one OFFER");
        let mut req = request_from(mac, MessageType::Request);
        req.requested_ip = Some(offer[0].yiaddr);
        req.server_id = offer[0].server_id;
        c.input(
            0,
            &client_frame_from(mac, &req, any, Ipv4Addr::BROADCAST),
            10,
        );
        let ack = replies(&c.take_tx());
        assert_eq!(ack.len(), 1, "client {k}: one ACK");
    }
    let mut groups = [0; 2];
    for u in c.take_fib() {
        if let FibUpdate::Add { idx, ip, .. } = u {
            if ip == 0 {
                continue;
            }
            let g = (idx / super::slots::BLOCK) % 2;
            assert_eq!(
                u32::from(crate::steer::addr_owner(ip, 2)),
                g,
                "slot {idx} address {}",
                Ipv4Addr::from(ip)
            );
            groups[g as usize] += 1;
        }
    }
    assert_eq!(groups[0] + groups[1], 40, "every client bound");
    assert!(
        groups[0] > 0 && groups[1] > 0,
        "both groups used: {groups:?}"
    );
}
