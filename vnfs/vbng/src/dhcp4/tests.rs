//! Every state transition of the server (RFC 2131 §4.3), its bounds and the journal.

use super::*;
use crate::config::PoolConfig;
use alloc::vec;
use dataplane::addr::{Net4, Range4};
use dataplane::proto::dhcp4::{RelayAgentInfo, HTYPE_ETHERNET};

fn a(s: &str) -> Ipv4Addr {
    s.parse().unwrap()
}

const MAC: [u8; 6] = [2, 0, 0, 0, 0, 9];
const VL: Vlans = Vlans {
    svlan: 100,
    cvlan: 7,
};
const SID: &str = "192.0.2.1";

fn cfg(first: &str, last: &str) -> Dhcp4Config {
    Dhcp4Config {
        gateway: Net4 {
            addr: a(SID),
            len: 24,
        },
        pools: vec![PoolConfig {
            name: "p".into(),
            ranges: vec![Range4::new(a(first), a(last)).unwrap()],
        }],
        dns: vec![a("192.0.2.53")],
        mtu: Some(1500),
        lease_time_s: 600,
        ..Dhcp4Config::default()
    }
}

fn server() -> Server {
    Server::new(cfg("192.0.2.10", "192.0.2.19")).unwrap()
}

fn msg(mt: MessageType, mac: [u8; 6]) -> Repr {
    let mut chaddr = [0u8; 16];
    chaddr[..6].copy_from_slice(&mac);
    Repr {
        htype: HTYPE_ETHERNET,
        hlen: 6,
        xid: 0xabcd,
        chaddr,
        message_type: Some(mt),
        parameter_request_list: Some(vec![1, 3, 6, 26]),
        ..Repr::default()
    }
}

fn bytes(r: &Repr) -> Vec<u8> {
    let mut v = Vec::new();
    r.emit(&mut v).unwrap();
    v
}

fn send(s: &mut Server, now: u64, r: &Repr) -> Handled {
    s.handle(now, VL, &bytes(r))
}

fn parsed(h: &Handled) -> Repr {
    Repr::parse_bytes(&h.reply.as_ref().expect("a reply").message).unwrap()
}

/// DISCOVER → OFFER → REQUEST (SELECTING) → ACK; returns the bound address.
fn bind(s: &mut Server, now: u64, mac: [u8; 6]) -> Ipv4Addr {
    let o = send(s, now, &msg(MessageType::Discover, mac));
    let offer = parsed(&o);
    assert_eq!(offer.message_type, Some(MessageType::Offer));
    let mut r = msg(MessageType::Request, mac);
    r.server_id = offer.server_id;
    r.requested_ip = Some(offer.yiaddr);
    let h = send(s, now, &r);
    assert_eq!(parsed(&h).message_type, Some(MessageType::Ack));
    offer.yiaddr
}

#[test]
fn discover_offer_request_ack() {
    let mut s = server();
    let mut d = msg(MessageType::Discover, MAC);
    d.flags = FLAG_BROADCAST;
    let h = send(&mut s, 0, &d);
    assert!(h.event.is_none());
    let reply = h.reply.as_ref().unwrap();
    assert_eq!(reply.dst, Destination::Broadcast);
    assert_eq!(reply.vlans, VL);
    assert_eq!(reply.kind, MessageType::Offer);
    let o = parsed(&h);
    assert_eq!(o.op, dataplane::proto::dhcp4::op::BOOTREPLY);
    assert_eq!(o.xid, 0xabcd);
    assert_eq!(o.yiaddr, a("192.0.2.10"));
    assert_eq!(o.server_id, Some(a(SID)));
    assert_eq!(o.lease_time, Some(600));
    assert_eq!((o.renewal_time, o.rebinding_time), (Some(300), Some(525)));
    assert_eq!(o.subnet_mask, Some(a("255.255.255.0")));
    assert_eq!(o.routers, [a(SID)]);
    assert_eq!(o.dns_servers, [a("192.0.2.53")]);
    assert_eq!(o.mtu, Some(1500));
    assert!(o.classless_routes.is_none(), "not configured");
    assert_eq!(s.offer_count(), 1);
    assert_eq!(s.lease_count(), 0);

    let mut r = msg(MessageType::Request, MAC);
    r.server_id = Some(a(SID));
    r.requested_ip = Some(o.yiaddr);
    let h = send(&mut s, 1000, &r);
    let ack = parsed(&h);
    assert_eq!(ack.message_type, Some(MessageType::Ack));
    assert_eq!(ack.yiaddr, o.yiaddr);
    // Broadcast bit clear, no ciaddr: unicast to yiaddr at chaddr.
    assert_eq!(
        h.reply.as_ref().unwrap().dst,
        Destination::Unicast {
            ip: o.yiaddr,
            mac: MAC
        }
    );
    let key = ClientKey {
        vlans: VL,
        mac: MAC,
        client_id: None,
    };
    let lease = Lease {
        addr: o.yiaddr,
        lease_s: 600,
        expires_ms: 601_000,
    };
    assert_eq!(
        h.event,
        Some(Event::LeaseBound {
            client: key.clone(),
            lease
        })
    );
    assert_eq!(s.lease(&key), Some(lease));
    assert_eq!((s.offer_count(), s.lease_count()), (0, 1));
    assert_eq!(s.stats().rx(MessageType::Discover), 1);
    assert_eq!(s.stats().tx(MessageType::Offer), 1);
    assert_eq!(s.stats().tx(MessageType::Ack), 1);
    assert_eq!(s.stats().bound, 1);
    // A bound client that discovers again is offered its address.
    let h = send(&mut s, 2000, &msg(MessageType::Discover, MAC));
    assert_eq!(parsed(&h).yiaddr, o.yiaddr);
    assert_eq!(s.lease_count(), 1);
}

#[test]
fn only_requested_options_and_classless_routes() {
    let mut c = cfg("192.0.2.10", "192.0.2.19");
    c.classless_routes = vec![RouteConfig {
        prefix: Net4 {
            addr: a("10.0.0.0"),
            len: 8,
        },
        via: a("192.0.2.254"),
    }];
    let mut s = Server::new(c).unwrap();
    let mut d = msg(MessageType::Discover, MAC);
    d.parameter_request_list = Some(vec![1, 121]);
    d.client_id = Some(vec![1, 2, 0, 0, 0, 0, 9]);
    let o = parsed(&send(&mut s, 0, &d));
    assert_eq!(o.subnet_mask, Some(a("255.255.255.0")));
    assert!(o.routers.is_empty() && o.dns_servers.is_empty() && o.mtu.is_none());
    let routes = o.classless_routes.unwrap();
    assert_eq!(routes.len(), 2, "the default route is added (RFC 3442)");
    assert_eq!((routes[0].prefix, routes[0].len), (a("10.0.0.0"), 8));
    assert_eq!((routes[1].len, routes[1].router), (0, a(SID)));
    assert_eq!(o.client_id, d.client_id, "RFC 6842 echo");
    // Without a parameter list: mask, router, DNS.
    let mut d = msg(MessageType::Discover, [2, 0, 0, 0, 0, 10]);
    d.parameter_request_list = None;
    let o = parsed(&send(&mut s, 0, &d));
    assert!(o.subnet_mask.is_some() && !o.routers.is_empty() && !o.dns_servers.is_empty());
    assert!(o.mtu.is_none() && o.classless_routes.is_none());
}

#[test]
fn requested_address_is_honoured_when_free() {
    let mut s = server();
    let mut d = msg(MessageType::Discover, MAC);
    d.requested_ip = Some(a("192.0.2.15"));
    assert_eq!(parsed(&send(&mut s, 0, &d)).yiaddr, a("192.0.2.15"));
    // Held by the first client: another gets the next free one.
    let mut d2 = msg(MessageType::Discover, [2, 0, 0, 0, 0, 10]);
    d2.requested_ip = Some(a("192.0.2.15"));
    assert_eq!(parsed(&send(&mut s, 0, &d2)).yiaddr, a("192.0.2.10"));
    // Outside the pool, or the gateway: ignored.
    for bad in ["192.0.2.1", "198.51.100.7", "192.0.2.255"] {
        let mut d3 = msg(MessageType::Discover, [2, 0, 0, 0, 1, 1]);
        d3.requested_ip = Some(a(bad));
        assert_eq!(parsed(&send(&mut s, 0, &d3)).yiaddr, a("192.0.2.11"));
    }
}

#[test]
fn nak_for_a_wrong_requested_address() {
    let mut s = server();
    let addr = bind(&mut s, 0, MAC);
    // INIT-REBOOT with another address of ours.
    let mut r = msg(MessageType::Request, MAC);
    r.requested_ip = Some(a("192.0.2.17"));
    let h = send(&mut s, 10, &r);
    let n = parsed(&h);
    assert_eq!(n.message_type, Some(MessageType::Nak));
    assert_eq!(n.yiaddr, Ipv4Addr::UNSPECIFIED);
    assert!(n.lease_time.is_none() && n.subnet_mask.is_none());
    assert_eq!(n.server_id, Some(a(SID)));
    assert_eq!(h.reply.as_ref().unwrap().dst, Destination::Broadcast);
    assert!(h.event.is_none());
    assert_eq!(s.stats().tx(MessageType::Nak), 1);
    // INIT-REBOOT with its own address: ACK (a renewal of the binding).
    r.requested_ip = Some(addr);
    let h = send(&mut s, 20, &r);
    assert_eq!(parsed(&h).message_type, Some(MessageType::Ack));
    assert!(matches!(h.event, Some(Event::LeaseRenewed { .. })));
    // A client we know nothing of, on another network: NAK; on ours: silence.
    let other = [2, 0, 0, 0, 0, 10];
    let mut r = msg(MessageType::Request, other);
    r.requested_ip = Some(a("10.9.9.9"));
    assert_eq!(
        parsed(&send(&mut s, 30, &r)).message_type,
        Some(MessageType::Nak)
    );
    r.requested_ip = Some(a("192.0.2.18"));
    assert!(send(&mut s, 30, &r).reply.is_none());
    assert_eq!(s.stats().drops(DropReason::UnknownClient), 1);
    // SELECTING for an address we did not offer to this client (held by another).
    let mut r = msg(MessageType::Request, other);
    r.server_id = Some(a(SID));
    r.requested_ip = Some(addr);
    assert_eq!(
        parsed(&send(&mut s, 40, &r)).message_type,
        Some(MessageType::Nak)
    );
    // RENEWING with someone else's address.
    let mut r = msg(MessageType::Request, other);
    r.ciaddr = addr;
    assert_eq!(
        parsed(&send(&mut s, 50, &r)).message_type,
        Some(MessageType::Nak)
    );
    // Relayed NAK goes to the relay agent, with the broadcast bit (§4.3.2).
    r.giaddr = a("192.0.2.2");
    let h = send(&mut s, 60, &r);
    assert!(parsed(&h).broadcast());
    assert_eq!(h.reply.unwrap().dst, Destination::Relay(a("192.0.2.2")));
}

#[test]
fn selecting_another_server_frees_our_offer() {
    let mut s = server();
    let o = parsed(&send(&mut s, 0, &msg(MessageType::Discover, MAC)));
    assert_eq!(s.pools().iter().next().unwrap().in_use(), 1);
    let mut r = msg(MessageType::Request, MAC);
    r.server_id = Some(a("192.0.2.99"));
    r.requested_ip = Some(a("192.0.2.99"));
    let h = send(&mut s, 10, &r);
    assert!(h.reply.is_none() && h.event.is_none());
    assert_eq!(s.offer_count(), 0);
    assert_eq!(s.pools().iter().next().unwrap().in_use(), 0);
    assert!(s.holder(o.yiaddr).is_none());
    assert_eq!(s.stats().drops(DropReason::OtherServer), 1);
}

#[test]
fn renew_and_rebind_extend_the_lease() {
    let mut s = server();
    let addr = bind(&mut s, 0, MAC);
    let key = ClientKey {
        vlans: VL,
        mac: MAC,
        client_id: None,
    };
    // RENEWING at T1: unicast, ciaddr set.
    let mut r = msg(MessageType::Request, MAC);
    r.ciaddr = addr;
    let h = send(&mut s, 300_000, &r);
    let ack = parsed(&h);
    assert_eq!((ack.yiaddr, ack.ciaddr), (addr, addr));
    assert_eq!(
        h.reply.as_ref().unwrap().dst,
        Destination::Unicast { ip: addr, mac: MAC }
    );
    let lease = Lease {
        addr,
        lease_s: 600,
        expires_ms: 900_000,
    };
    assert_eq!(
        h.event,
        Some(Event::LeaseRenewed {
            client: key.clone(),
            lease
        })
    );
    assert_eq!(s.lease(&key), Some(lease));
    // REBINDING (broadcast) later: the same.
    r.flags = FLAG_BROADCAST;
    let h = send(&mut s, 800_000, &r);
    assert!(matches!(h.event, Some(Event::LeaseRenewed { .. })));
    assert_eq!(s.lease(&key).unwrap().expires_ms, 1_400_000);
    // The old deadlines do not expire it.
    assert!(s.poll(1_000_000).is_empty());
    assert_eq!(s.lease_count(), 1);
    assert_eq!(s.stats().renewed, 2);
    // After a restart without journal, a renewing client keeps a free address.
    let mut s2 = server();
    let h = send(&mut s2, 0, &r);
    assert!(matches!(h.event, Some(Event::LeaseBound { .. })));
    assert_eq!(s2.holder(addr), Some(&key));
}

#[test]
fn decline_quarantines_the_address() {
    let mut c = cfg("192.0.2.10", "192.0.2.11");
    c.decline_hold_s = 100;
    let mut s = Server::new(c).unwrap();
    let addr = bind(&mut s, 0, MAC);
    let mut d = msg(MessageType::Decline, MAC);
    d.server_id = Some(a(SID));
    d.requested_ip = Some(addr);
    let h = send(&mut s, 1000, &d);
    assert!(h.reply.is_none());
    let key = ClientKey {
        vlans: VL,
        mac: MAC,
        client_id: None,
    };
    assert_eq!(
        h.event,
        Some(Event::LeaseDeclined {
            client: key.clone(),
            addr
        })
    );
    assert_eq!((s.lease_count(), s.quarantined()), (0, 1));
    assert_eq!(s.stats().declined, 1);
    // The same client gets the other address; the pool then is exhausted.
    let other = bind(&mut s, 2000, MAC);
    assert_ne!(other, addr);
    let h = send(
        &mut s,
        3000,
        &msg(MessageType::Discover, [2, 0, 0, 0, 0, 10]),
    );
    assert!(h.reply.is_none());
    assert_eq!(s.stats().drops(DropReason::PoolExhausted), 1);
    // After the hold the address is free again.
    assert!(s.poll(100_999).is_empty());
    assert_eq!(s.quarantined(), 1);
    s.poll(101_000);
    assert_eq!(s.quarantined(), 0);
    let o = parsed(&send(
        &mut s,
        102_000,
        &msg(MessageType::Discover, [2, 0, 0, 0, 0, 10]),
    ));
    assert_eq!(o.yiaddr, addr);
    // A decline of an address the client does not hold is ignored.
    let mut d = msg(MessageType::Decline, [2, 0, 0, 0, 0, 11]);
    d.server_id = Some(a(SID));
    d.requested_ip = Some(other);
    assert!(send(&mut s, 103_000, &d).event.is_none());
    assert_eq!(s.holder(other), Some(&key));
}

#[test]
fn release_frees_the_address() {
    let mut s = server();
    let addr = bind(&mut s, 0, MAC);
    let mut r = msg(MessageType::Release, MAC);
    r.server_id = Some(a(SID));
    r.ciaddr = addr;
    // Another client cannot release it.
    let mut r2 = r.clone();
    r2.chaddr[5] = 0x77;
    assert!(send(&mut s, 5, &r2).event.is_none());
    let h = send(&mut s, 10, &r);
    assert!(h.reply.is_none());
    assert!(matches!(h.event, Some(Event::LeaseReleased { addr: x, .. }) if x == addr));
    assert_eq!(s.lease_count(), 0);
    assert!(s.holder(addr).is_none());
    assert_eq!(s.pools().iter().next().unwrap().in_use(), 0);
    assert_eq!(s.stats().released, 1);
    // Twice: nothing more.
    assert!(send(&mut s, 20, &r).event.is_none());
}

#[test]
fn revoked_lease_is_naked_at_renewal() {
    let mut s = server();
    let addr = bind(&mut s, 0, MAC);
    let key = ClientKey {
        vlans: VL,
        mac: MAC,
        client_id: None,
    };
    assert_eq!(s.revoke(&key), Some(addr));
    assert_eq!(s.revoke(&key), None);
    assert_eq!(s.lease_count(), 0);
    // Someone else takes the address; the old client's renewal is refused.
    let mut d = msg(MessageType::Discover, [2, 0, 0, 0, 0, 10]);
    d.requested_ip = Some(addr);
    assert_eq!(parsed(&send(&mut s, 10, &d)).yiaddr, addr);
    let mut r = msg(MessageType::Request, MAC);
    r.ciaddr = addr;
    assert_eq!(
        parsed(&send(&mut s, 20, &r)).message_type,
        Some(MessageType::Nak)
    );
}

#[test]
fn inform_is_acked_without_lease() {
    let mut s = server();
    let mut i = msg(MessageType::Inform, MAC);
    i.ciaddr = a("192.0.2.200");
    i.flags = FLAG_BROADCAST;
    let h = send(&mut s, 0, &i);
    let ack = parsed(&h);
    assert_eq!(ack.message_type, Some(MessageType::Ack));
    assert_eq!(ack.yiaddr, Ipv4Addr::UNSPECIFIED);
    assert!(ack.lease_time.is_none() && ack.renewal_time.is_none());
    assert_eq!(ack.dns_servers, [a("192.0.2.53")]);
    assert_eq!(
        h.reply.unwrap().dst,
        Destination::Unicast {
            ip: a("192.0.2.200"),
            mac: MAC
        }
    );
    assert!(h.event.is_none());
    assert_eq!(s.lease_count(), 0);
    // Without ciaddr it is inconsistent.
    i.ciaddr = Ipv4Addr::UNSPECIFIED;
    assert!(send(&mut s, 0, &i).reply.is_none());
    assert_eq!(s.stats().drops(DropReason::Inconsistent), 1);
}

#[test]
fn relayed_messages_go_back_to_the_relay_with_option_82() {
    let mut s = server();
    let mut d = msg(MessageType::Discover, MAC);
    d.giaddr = a("192.0.2.2");
    d.hops = 1;
    d.flags = FLAG_BROADCAST;
    let info = RelayAgentInfo {
        circuit_id: Some(b"olt1:1/1/1".to_vec()),
        remote_id: Some(b"line-7".to_vec()),
        other: Vec::new(),
    };
    d.relay_agent_info = Some(info.clone());
    let h = send(&mut s, 0, &d);
    assert_eq!(
        h.reply.as_ref().unwrap().dst,
        Destination::Relay(a("192.0.2.2"))
    );
    let o = parsed(&h);
    assert_eq!(o.giaddr, a("192.0.2.2"));
    assert_eq!(o.relay_agent_info, Some(info));
    // Without giaddr, option 82 is not echoed.
    let mut d = msg(MessageType::Discover, [2, 0, 0, 0, 0, 10]);
    d.relay_agent_info = Some(RelayAgentInfo {
        circuit_id: Some(b"x".to_vec()),
        ..RelayAgentInfo::default()
    });
    assert!(parsed(&send(&mut s, 0, &d)).relay_agent_info.is_none());
}

#[test]
fn storm_is_rate_limited_and_counted() {
    let mut c = cfg("192.0.2.10", "192.0.2.19");
    c.rate_burst = 5;
    c.rate_per_min = 60;
    let mut s = Server::new(c).unwrap();
    let d = msg(MessageType::Discover, MAC);
    let answered = (0..50)
        .filter(|_| send(&mut s, 0, &d).reply.is_some())
        .count();
    assert_eq!(answered, 5);
    assert_eq!(s.stats().drops(DropReason::RateLimited), 45);
    assert_eq!(s.stats().rx(MessageType::Discover), 50);
    // One more per second at 60 a minute; other clients are not affected.
    assert!(send(&mut s, 1000, &d).reply.is_some());
    assert!(send(&mut s, 1000, &d).reply.is_none());
    assert!(send(
        &mut s,
        1000,
        &msg(MessageType::Discover, [2, 0, 0, 0, 0, 10])
    )
    .reply
    .is_some());
    // The limiter's table is bounded; idle clients are forgotten by poll.
    let mut c = cfg("192.0.2.10", "192.0.2.19");
    c.max_rate_clients = 2;
    let mut s = Server::new(c).unwrap();
    for i in 0..3u8 {
        send(&mut s, 0, &msg(MessageType::Discover, [2, 0, 0, 0, 1, i]));
    }
    assert_eq!(s.stats().drops(DropReason::RateTableFull), 1);
    s.poll(60_000);
    assert!(send(
        &mut s,
        60_000,
        &msg(MessageType::Discover, [2, 0, 0, 0, 1, 2])
    )
    .reply
    .is_some());
}

#[test]
fn exhausted_pool_and_limits_are_counted_drops() {
    let mut s = Server::new(cfg("192.0.2.10", "192.0.2.11")).unwrap();
    bind(&mut s, 0, [2, 0, 0, 0, 0, 1]);
    bind(&mut s, 0, [2, 0, 0, 0, 0, 2]);
    let h = send(&mut s, 0, &msg(MessageType::Discover, [2, 0, 0, 0, 0, 3]));
    assert_eq!(h, Handled::default());
    assert_eq!(s.stats().drops(DropReason::PoolExhausted), 1);
    assert_eq!(s.offer_count(), 0);

    let mut c = cfg("192.0.2.10", "192.0.2.19");
    c.max_offers = 2;
    c.max_leases = 3;
    let mut s = Server::new(c).unwrap();
    for i in 0..3u8 {
        send(&mut s, 0, &msg(MessageType::Discover, [2, 0, 0, 0, 0, i]));
    }
    assert_eq!(s.offer_count(), 2);
    assert_eq!(s.stats().drops(DropReason::OffersFull), 1);
    // Offers expire after the hold (10 s).
    assert!(s.poll(10_000).is_empty());
    assert_eq!(s.offer_count(), 0);
    assert_eq!(s.stats().offers_expired, 2);
    for i in 0..3u8 {
        bind(&mut s, 20_000, [2, 0, 0, 0, 0, i]);
    }
    let h = send(
        &mut s,
        20_000,
        &msg(MessageType::Discover, [2, 0, 0, 0, 0, 9]),
    );
    assert!(h.reply.is_none());
    assert_eq!(s.stats().drops(DropReason::LeasesFull), 1);
    let labels: Vec<_> = s.stats().drops_by_reason().map(|(l, _)| l).collect();
    assert!(labels.contains(&"leases_full") && labels.contains(&"rate_limited"));
}

#[test]
fn leases_expire_on_poll() {
    let mut s = server();
    let addr = bind(&mut s, 0, MAC);
    assert_eq!(s.next_deadline(), Some(600_000));
    assert!(s.poll(599_999).is_empty());
    let ev = s.poll(600_000);
    assert_eq!(
        ev,
        [Event::LeaseExpired {
            client: ClientKey {
                vlans: VL,
                mac: MAC,
                client_id: None
            },
            addr
        }]
    );
    assert_eq!(s.lease_count(), 0);
    assert_eq!(s.stats().expired, 1);
    assert!(s.holder(addr).is_none());
    assert_eq!(s.next_deadline(), None);
}

#[test]
fn clients_are_keyed_by_vlans_mac_and_client_id() {
    let mut s = server();
    let a1 = bind(&mut s, 0, MAC);
    // Same MAC on another line: another client.
    let o = s.handle(0, Vlans::NONE, &bytes(&msg(MessageType::Discover, MAC)));
    assert_ne!(parsed(&o).yiaddr, a1);
    // Same MAC and line with a client identifier: another client too.
    let mut d = msg(MessageType::Discover, MAC);
    d.client_id = Some(vec![0, b'x']);
    let o = send(&mut s, 0, &d);
    assert_ne!(parsed(&o).yiaddr, a1);
}

#[test]
fn malformed_and_unsupported_are_counted() {
    let mut s = server();
    assert_eq!(s.handle(0, VL, &[1, 2, 3]), Handled::default());
    let mut b = bytes(&msg(MessageType::Discover, MAC));
    b[236] = 0;
    s.handle(0, VL, &b);
    assert_eq!(s.stats().drops(DropReason::Malformed), 2);
    let mut r = msg(MessageType::Offer, MAC);
    s.handle(0, VL, &bytes(&r));
    r.message_type = Some(MessageType::Discover);
    r.op = dataplane::proto::dhcp4::op::BOOTREPLY;
    s.handle(0, VL, &bytes(&r));
    r.op = dataplane::proto::dhcp4::op::BOOTREQUEST;
    r.hlen = 8;
    s.handle(0, VL, &bytes(&r));
    r.hlen = 6;
    r.message_type = None;
    s.handle(0, VL, &bytes(&r));
    assert_eq!(s.stats().drops(DropReason::Unsupported), 4);
    // REQUEST with neither requested address nor ciaddr.
    send(&mut s, 0, &msg(MessageType::Request, MAC));
    assert_eq!(s.stats().drops(DropReason::Inconsistent), 1);
    assert_eq!(s.stats().total_drops(), 7);
    assert_eq!(s.offer_count() + s.lease_count(), 0);
}

#[test]
fn journal_round_trip_with_expiry() {
    let mut s = server();
    let a1 = bind(&mut s, 0, MAC);
    let mut d = msg(MessageType::Discover, [2, 0, 0, 0, 0, 10]);
    d.client_id = Some(vec![1, 2, 0, 0, 0, 0, 10]);
    let o = parsed(&send(&mut s, 100_000, &d));
    let mut r = msg(MessageType::Request, [2, 0, 0, 0, 0, 10]);
    r.client_id = d.client_id.clone();
    r.server_id = Some(a(SID));
    r.requested_ip = Some(o.yiaddr);
    send(&mut s, 100_000, &r);
    // An offer is not journaled.
    send(
        &mut s,
        100_000,
        &msg(MessageType::Discover, [2, 0, 0, 0, 0, 11]),
    );
    assert_eq!(s.lease_count(), 2);
    // Saved at server time 200 s = Unix 1_000_000 s.
    let unix0 = 1_000_000_000u64;
    let j = s.save_journal(200_000, unix0);

    // Restored 100 s later on a fresh server whose clock starts at 0: the first lease
    // (expires at 600 s, 400 s left at save) has 300 s left.
    let mut s2 = server();
    let got = s2.load_journal(&j, 0, unix0 + 100_000).unwrap();
    assert_eq!((got.leases.len(), got.expired, got.refused), (2, 0, 0));
    let k1 = ClientKey {
        vlans: VL,
        mac: MAC,
        client_id: None,
    };
    assert_eq!(
        s2.lease(&k1),
        Some(Lease {
            addr: a1,
            lease_s: 600,
            expires_ms: 300_000
        })
    );
    let k2 = ClientKey {
        vlans: VL,
        mac: [2, 0, 0, 0, 0, 10],
        client_id: d.client_id.clone(),
    };
    assert_eq!(s2.lease(&k2).unwrap().addr, o.yiaddr);
    // The addresses are reserved again: a new client gets neither.
    let n = parsed(&send(
        &mut s2,
        0,
        &msg(MessageType::Discover, [2, 0, 0, 0, 0, 12]),
    ));
    assert!(n.yiaddr != a1 && n.yiaddr != o.yiaddr);
    // The restored lease renews and expires as any other.
    let ev = s2.poll(300_000);
    assert!(matches!(&ev[..], [Event::LeaseExpired { addr, .. }] if *addr == a1));

    // Restored 450 s after the save: the first lease has expired, the second (700 s
    // at save... expires at 700 s server time, 500 s left) is kept.
    let mut s3 = server();
    let got = s3.load_journal(&j, 0, unix0 + 450_000).unwrap();
    assert_eq!((got.leases.len(), got.expired), (1, 1));
    assert_eq!(got.leases[0].0, k2);
    assert_eq!(got.leases[0].1.expires_ms, 50_000);

    // A server whose pool no longer holds the addresses refuses them.
    let mut s4 = Server::new(cfg("192.0.2.100", "192.0.2.110")).unwrap();
    let got = s4.load_journal(&j, 0, unix0).unwrap();
    assert_eq!((got.leases.len(), got.refused), (0, 2));

    // Corruption, truncation, another file: nothing restored.
    let mut bad = j.clone();
    bad[20] ^= 1;
    assert_eq!(
        server().load_journal(&bad, 0, unix0),
        Err(journal::JournalError::Checksum)
    );
    assert_eq!(
        server().load_journal(&j[..j.len() - 1], 0, unix0),
        Err(journal::JournalError::Checksum)
    );
    assert_eq!(
        server().load_journal(b"hello", 0, unix0),
        Err(journal::JournalError::BadMagic)
    );
    assert_eq!(
        server().load_journal(&j[..10], 0, unix0),
        Err(journal::JournalError::Truncated)
    );
    // An empty server's journal round-trips to nothing.
    let e = server().save_journal(0, unix0);
    assert_eq!(
        server().load_journal(&e, 0, unix0).unwrap(),
        journal::Restored::default()
    );
}

#[cfg(feature = "std")]
#[test]
fn save_atomic_writes_and_replaces() {
    extern crate std;
    let dir = std::env::temp_dir().join(std::format!("vbng-dhcp4-j-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let p = dir.join("leases");
    journal::save_atomic(&p, b"one").unwrap();
    journal::save_atomic(&p, b"two").unwrap();
    assert_eq!(std::fs::read(&p).unwrap(), b"two");
    assert!(!dir.join("leases.tmp").exists());
    std::fs::remove_dir_all(&dir).unwrap();
}

/// The server's books agree: every binding is indexed by its address, no address is
/// held twice, the counts match, every held address is taken in the pool exactly
/// once (bindings and quarantine), and every binding and quarantined address has
/// its one timer.
fn check_invariants(s: &Server) {
    let mut seen = BTreeSet::new();
    for (k, b) in &s.clients {
        assert_eq!(s.by_addr.get(&b.addr), Some(k));
        assert!(seen.insert(b.addr), "{} held twice", b.addr);
        assert!(s.timers.contains(&(b.until(), b.addr)));
        assert!(!s.quarantine.contains_key(&b.addr));
    }
    assert_eq!(s.by_addr.len(), s.clients.len());
    assert_eq!(s.offers + s.leases, s.clients.len());
    assert!(s.offers <= s.cfg.max_offers as usize);
    assert!(s.leases <= s.cfg.max_leases as usize);
    for (a, t) in &s.quarantine {
        assert!(s.timers.contains(&(*t, *a)));
    }
    assert_eq!(s.timers.len(), s.clients.len() + s.quarantine.len());
    let in_use: u64 = s.pools.iter().map(|p| p.in_use()).sum();
    assert_eq!(in_use as usize, s.clients.len() + s.quarantine.len());
    assert!(s.rate.len() <= s.cfg.max_rate_clients as usize);
}

proptest::proptest! {
    /// Random conversations of a few clients (some sharing a MAC on other lines or
    /// with a client identifier) with random addresses and clock steps keep the
    /// books straight after every message and every poll.
    #[test]
    fn random_conversations_keep_the_books(
        ops in proptest::collection::vec((0u8..8, 0u8..6, 0u8..14, 0u32..200_000), 1..300)
    ) {
        let mut c = cfg("192.0.2.10", "192.0.2.13");
        c.max_offers = 3;
        c.max_leases = 3;
        c.max_rate_clients = 5;
        c.rate_burst = 20;
        c.decline_hold_s = 60;
        let mut s = Server::new(c).unwrap();
        let mut now = 0u64;
        for (op, who, addr, dt) in ops {
            now += u64::from(dt);
            let mac = [2, 0, 0, 0, 0, who % 4];
            let vlans = if who >= 4 { Vlans::NONE } else { VL };
            let ip = Ipv4Addr::new(192, 0, 2, 8 + addr);
            let mt = match op {
                0 => MessageType::Discover,
                1..=3 => MessageType::Request,
                4 => MessageType::Release,
                5 => MessageType::Decline,
                6 => MessageType::Inform,
                _ => {
                    s.poll(now);
                    check_invariants(&s);
                    continue;
                }
            };
            let mut m = msg(mt, mac);
            if who == 3 {
                m.client_id = Some(vec![0, 3]);
            }
            match op {
                0 => m.requested_ip = Some(ip),
                1 => {
                    m.server_id = Some(a(SID));
                    m.requested_ip = Some(ip);
                }
                2 => m.requested_ip = Some(ip),
                3 | 4 | 6 => m.ciaddr = ip,
                _ => {
                    m.server_id = Some(a(SID));
                    m.requested_ip = Some(ip);
                }
            }
            let h = s.handle(now, vlans, &bytes(&m));
            if let Some(r) = &h.reply {
                let p = Repr::parse_bytes(&r.message).unwrap();
                if p.message_type == Some(MessageType::Ack) && !p.yiaddr.is_unspecified() {
                    let key = ClientKey { vlans, mac, client_id: m.client_id.clone() };
                    proptest::prop_assert_eq!(s.lease(&key).map(|l| l.addr), Some(p.yiaddr));
                }
            }
            check_invariants(&s);
        }
        // Everything ends: after the longest deadline the pool is empty again.
        s.poll(now + 10_000_000);
        check_invariants(&s);
        proptest::prop_assert_eq!(s.clients.len() + s.quarantine.len(), 0);
    }
}
