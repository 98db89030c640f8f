use super::*;
use alloc::vec;
use dataplane::proto::dhcp6::{CLIENT_PORT, SERVER_PORT};

const CLIENT_LL: &str = "fe80::ff:fe00:9";

fn a(s: &str) -> Ipv6Addr {
    s.parse().unwrap()
}

fn cfg() -> Dhcp6Config {
    Dhcp6Config {
        address_pools: vec![AddrPoolConfig {
            name: "na".into(),
            first: a("2001:db8:1::100"),
            last: a("2001:db8:1::103"),
        }],
        prefix_pools: vec![PrefixPoolConfig {
            name: "pd".into(),
            prefix: "2001:db8:100::/54".parse().unwrap(),
            len: 56,
        }],
        dns: vec![a("2001:db8::53")],
        sol_max_rt_s: Some(3600),
        ..Dhcp6Config::default()
    }
}

pub(super) fn server() -> Server {
    Server::new(cfg(), Duid::ll([2, 0, 0, 0, 0, 1])).unwrap()
}

fn line() -> LineKey {
    LineKey(b"eth0:100.7".to_vec())
}

fn client(n: u8) -> Duid {
    Duid::ll([2, 0, 0, 0, 0, n])
}

fn msg(t: MessageType, n: u8) -> Message {
    Message {
        client_id: Some(client(n)),
        ia_na: vec![Ia::new(1, 0, 0)],
        ia_pd: vec![Ia::new(2, 0, 0)],
        oro: Some(vec![opt::DNS_SERVERS, opt::SOL_MAX_RT]),
        elapsed_time: Some(0),
        ..Message::new(t, 0x10 + u32::from(n))
    }
}

fn send(s: &mut Server, now: u64, m: &Message) -> (Option<Message>, Vec<Event>) {
    let mut b = Vec::new();
    Repr::Message(m.clone()).emit(&mut b).unwrap();
    let h = s.handle(now, &line(), a(CLIENT_LL), &b);
    let r = h.reply.map(|r| {
        assert_eq!(r.dst, a(CLIENT_LL));
        assert_eq!(r.dst_port, CLIENT_PORT);
        assert_eq!(r.line, line());
        match Repr::parse_bytes(&r.message).unwrap() {
            Repr::Message(m) => {
                assert_eq!(m.msg_type, r.kind);
                m
            }
            Repr::Relay(_) => panic!("relay reply to a client"),
        }
    });
    (r, h.events)
}

fn with_server_id(mut m: Message, s: &Server) -> Message {
    m.server_id = Some(s.duid().clone());
    m
}

/// Solicit → Advertise → Request → Reply: the RFC 8415 four-message exchange.
pub(super) fn bind(s: &mut Server, now: u64, n: u8) -> (Ipv6Addr, Prefix6) {
    let (ad, ev) = send(s, now, &msg(MessageType::Solicit, n));
    let ad = ad.expect("advertise");
    assert!(ev.is_empty(), "an Advertise binds nothing");
    let mut rq = with_server_id(msg(MessageType::Request, n), s);
    rq.ia_na = ad.ia_na.clone();
    rq.ia_pd = ad.ia_pd.clone();
    let (rep, ev) = send(s, now + 10, &rq);
    let rep = rep.expect("reply");
    assert_eq!(rep.msg_type, MessageType::Reply);
    assert_eq!(ev.len(), 2, "{ev:?}");
    (
        rep.ia_na[0].items[0].addr,
        Prefix6::new(rep.ia_pd[0].items[0].prefix, rep.ia_pd[0].items[0].len).unwrap(),
    )
}

#[test]
fn solicit_advertise_request_reply() {
    let mut s = server();
    let (ad, _) = send(&mut s, 0, &msg(MessageType::Solicit, 9));
    let ad = ad.unwrap();
    assert_eq!(ad.msg_type, MessageType::Advertise);
    assert_eq!(ad.transaction_id, 0x19);
    assert_eq!(ad.server_id.as_ref(), Some(s.duid()));
    assert_eq!(ad.client_id, Some(client(9)));
    assert_eq!(ad.preference, Some(255));
    assert_eq!(ad.dns_servers, [a("2001:db8::53")]);
    assert_eq!(ad.sol_max_rt, Some(3600));
    assert!(!ad.rapid_commit);
    let na = &ad.ia_na[0];
    assert_eq!((na.iaid, na.t1, na.t2), (1, 1800, 2880));
    assert_eq!(na.items[0].addr, a("2001:db8:1::100"));
    assert_eq!((na.items[0].preferred, na.items[0].valid), (3600, 7200));
    let pd = &ad.ia_pd[0];
    assert_eq!(pd.iaid, 2);
    assert_eq!(
        (pd.items[0].prefix, pd.items[0].len),
        (a("2001:db8:100::"), 56)
    );
    assert_eq!(s.offer_count(), 2);
    assert_eq!(s.binding_count(), 0);
    // A second Solicit gets the same offer.
    let (ad2, _) = send(&mut s, 5, &msg(MessageType::Solicit, 9));
    assert_eq!(ad2.unwrap().ia_na, ad.ia_na);
    assert_eq!(s.offer_count(), 2);

    let mut rq = with_server_id(msg(MessageType::Request, 9), &s);
    rq.ia_na = ad.ia_na.clone();
    let (rep, ev) = send(&mut s, 10, &rq);
    let rep = rep.unwrap();
    assert_eq!(rep.ia_na[0].items[0].addr, a("2001:db8:1::100"));
    assert_eq!(rep.ia_pd[0].items[0].len, 56);
    let key = ClientKey {
        line: line(),
        duid: client(9),
        kind: IaKind::Na,
        iaid: 1,
    };
    let lease = Lease {
        assigned: Assigned::Address(a("2001:db8:1::100")),
        preferred_s: 3600,
        valid_s: 7200,
        expires_ms: 10 + 7_200_000,
    };
    assert_eq!(
        ev[0],
        Event::Bound {
            client: key.clone(),
            lease
        }
    );
    assert!(matches!(&ev[1], Event::Bound { client, lease }
        if client.kind == IaKind::Pd && lease.assigned.len() == 56
            && lease.assigned.to_string() == "2001:db8:100::/56"));
    assert_eq!(s.lease(&key), Some(lease));
    assert_eq!(s.binding_count(), 2);
    assert_eq!(s.offer_count(), 0);
    assert_eq!(s.holder(lease.assigned), Some(&key));
    assert_eq!(s.stats().rx(MessageType::Solicit), 2);
    assert_eq!(s.stats().tx(MessageType::Advertise), 2);
    assert_eq!(s.stats().tx(MessageType::Reply), 1);
    assert_eq!(s.stats().bound, 2);
    // A repeated Request renews.
    let (_, ev) = send(&mut s, 20, &rq);
    assert!(matches!(ev[0], Event::Renewed { .. }));
}

#[test]
fn rapid_commit_binds_at_once() {
    let mut s = server();
    let mut m = msg(MessageType::Solicit, 9);
    m.rapid_commit = true;
    let (r, ev) = send(&mut s, 0, &m);
    let r = r.unwrap();
    assert_eq!(r.msg_type, MessageType::Reply);
    assert!(r.rapid_commit);
    assert_eq!(ev.len(), 2);
    assert_eq!(s.binding_count(), 2);
    // Not when the configuration says no.
    let mut c = cfg();
    c.rapid_commit = false;
    let mut s = Server::new(c, Duid::ll([2, 0, 0, 0, 0, 1])).unwrap();
    let (r, ev) = send(&mut s, 0, &m);
    assert_eq!(r.unwrap().msg_type, MessageType::Advertise);
    assert!(ev.is_empty());
}

#[test]
fn renew_rebind_extend_or_no_binding() {
    let mut s = server();
    let (addr, pfx) = bind(&mut s, 0, 9);
    let mut rn = with_server_id(msg(MessageType::Renew, 9), &s);
    rn.ia_na[0].items.push(IaAddr {
        addr,
        preferred: 0,
        valid: 0,
        status: None,
        other: Vec::new(),
    });
    let (r, ev) = send(&mut s, 1000, &rn);
    let r = r.unwrap();
    assert_eq!(r.ia_na[0].items[0].addr, addr);
    assert_eq!(r.ia_na[0].items[0].valid, 7200);
    assert_eq!(r.ia_pd[0].items[0].prefix, pfx.network());
    assert_eq!(ev.len(), 2);
    assert!(ev.iter().all(|e| matches!(e, Event::Renewed { lease, .. }
        if lease.expires_ms == 1000 + 7_200_000)));
    // Rebind: no Server Identifier; an address that is not the binding's gets
    // lifetimes 0.
    let mut rb = msg(MessageType::Rebind, 9);
    rb.ia_na[0].items.push(IaAddr {
        addr: a("2001:db8:9::1"),
        preferred: 1,
        valid: 1,
        status: None,
        other: Vec::new(),
    });
    let (r, _) = send(&mut s, 2000, &rb);
    let items = &r.unwrap().ia_na[0].items;
    assert_eq!(items.len(), 2);
    assert_eq!((items[1].addr, items[1].valid), (a("2001:db8:9::1"), 0));
    // Another client: NoBinding in each IA.
    let other = with_server_id(msg(MessageType::Renew, 7), &s);
    let (r, ev) = send(&mut s, 3000, &other);
    let r = r.unwrap();
    assert!(ev.is_empty());
    for st in [&r.ia_na[0].status, &r.ia_pd[0].status] {
        assert_eq!(st.as_ref().unwrap().code, status::NO_BINDING);
    }
    assert_eq!(s.stats().no_binding, 2);
}

#[test]
fn release_frees_and_decline_quarantines() {
    let mut s = server();
    let (addr, pfx) = bind(&mut s, 0, 9);
    let mut rl = with_server_id(msg(MessageType::Release, 9), &s);
    rl.ia_na[0].items.push(IaAddr {
        addr,
        preferred: 0,
        valid: 0,
        status: None,
        other: Vec::new(),
    });
    rl.ia_pd[0].items.push(IaPrefix {
        preferred: 0,
        valid: 0,
        len: pfx.len(),
        prefix: pfx.network(),
        status: None,
        other: Vec::new(),
    });
    let (r, ev) = send(&mut s, 100, &rl);
    let r = r.unwrap();
    assert_eq!(r.status.as_ref().unwrap().code, status::SUCCESS);
    assert!(r.ia_na.is_empty() && r.ia_pd.is_empty());
    assert_eq!(ev.len(), 2);
    assert!(matches!(ev[0], Event::Released { assigned: Assigned::Address(x), .. } if x == addr));
    assert!(matches!(ev[1], Event::Released { assigned: Assigned::Prefix(p), .. } if p == pfx));
    assert_eq!(s.binding_count(), 0);
    assert_eq!(s.address_pools().iter().next().unwrap().in_use(), 0);
    assert_eq!(s.prefix_pools().iter().next().unwrap().in_use(), 0);
    // Releasing again: NoBinding.
    let (r, ev) = send(&mut s, 200, &rl);
    assert!(ev.is_empty());
    assert_eq!(
        r.unwrap().ia_na[0].status.as_ref().unwrap().code,
        status::NO_BINDING
    );

    // Decline: the address is held out of the pool until decline_hold_s.
    let (addr, _) = bind(&mut s, 1000, 9);
    let mut dc = with_server_id(msg(MessageType::Decline, 9), &s);
    dc.ia_pd.clear();
    dc.ia_na[0].items.push(IaAddr {
        addr,
        preferred: 0,
        valid: 0,
        status: None,
        other: Vec::new(),
    });
    let (r, ev) = send(&mut s, 2000, &dc);
    assert_eq!(r.unwrap().status.unwrap().code, status::SUCCESS);
    assert!(matches!(ev[0], Event::Declined { assigned: Assigned::Address(x), .. } if x == addr));
    assert_eq!(s.quarantined(), 1);
    assert_eq!(s.address_pools().iter().next().unwrap().in_use(), 1);
    assert!(s.poll(2000 + 599_000).is_empty());
    assert_eq!(s.quarantined(), 1);
    s.poll(2000 + 600_000);
    assert_eq!(s.quarantined(), 0);
    assert_eq!(s.address_pools().iter().next().unwrap().in_use(), 0);
}

#[test]
fn confirm_and_information_request() {
    let mut s = server();
    let mut c = msg(MessageType::Confirm, 9);
    c.ia_pd.clear();
    c.ia_na[0].items.push(IaAddr {
        addr: a("2001:db8:1::101"),
        preferred: 0,
        valid: 0,
        status: None,
        other: Vec::new(),
    });
    let (r, _) = send(&mut s, 0, &c);
    assert_eq!(r.unwrap().status.unwrap().code, status::SUCCESS);
    c.ia_na[0].items[0].addr = a("2001:db8:77::1");
    let (r, _) = send(&mut s, 0, &c);
    assert_eq!(r.unwrap().status.unwrap().code, status::NOT_ON_LINK);
    assert_eq!(s.stats().not_on_link, 1);
    // §18.3.3: no addresses, no reply.
    let (r, _) = send(&mut s, 0, &msg(MessageType::Confirm, 9));
    assert!(r.is_none());
    assert_eq!(s.stats().drops(DropReason::NothingToConfirm), 1);

    let mut ir = Message::new(MessageType::InformationRequest, 5);
    ir.oro = Some(vec![opt::DNS_SERVERS]);
    let (r, ev) = send(&mut s, 0, &ir);
    let r = r.unwrap();
    assert_eq!(r.dns_servers, [a("2001:db8::53")]);
    assert!(r.ia_na.is_empty() && r.client_id.is_none() && ev.is_empty());
    assert_eq!(r.sol_max_rt, None, "not asked for");
}

#[test]
fn section_16_validation_and_drops() {
    let mut s = server();
    let cases = [
        // Solicit with a Server Identifier, Request without, with another's.
        (
            with_server_id(msg(MessageType::Solicit, 9), &s),
            DropReason::Inconsistent,
        ),
        (msg(MessageType::Request, 9), DropReason::Inconsistent),
        (
            Message {
                server_id: Some(Duid::ll([2, 0, 0, 0, 0, 99])),
                ..msg(MessageType::Renew, 9)
            },
            DropReason::OtherServer,
        ),
        (
            Message {
                client_id: None,
                ..msg(MessageType::Solicit, 9)
            },
            DropReason::Inconsistent,
        ),
        (
            Message {
                server_id: Some(Duid::ll([2, 0, 0, 0, 0, 99])),
                ..Message::new(MessageType::InformationRequest, 1)
            },
            DropReason::OtherServer,
        ),
        (msg(MessageType::Advertise, 9), DropReason::Unsupported),
        (msg(MessageType::Reply, 9), DropReason::Unsupported),
    ];
    for (m, want) in cases {
        let before = s.stats().drops(want);
        let (r, _) = send(&mut s, 0, &m);
        assert!(r.is_none(), "{:?}", m.msg_type);
        assert_eq!(s.stats().drops(want), before + 1, "{:?}", m.msg_type);
    }
    let h = s.handle(0, &line(), a(CLIENT_LL), &[1, 0, 0]);
    assert!(h.reply.is_none());
    assert_eq!(s.stats().drops(DropReason::Malformed), 1);
    s.handle(0, &line(), a(CLIENT_LL), &[200, 0, 0, 0]);
    assert_eq!(s.stats().drops(DropReason::Unsupported), 3);
    let labels: Vec<&str> = s.stats().drops_by_reason().map(|(l, _)| l).collect();
    assert!(labels.contains(&"other_server") && labels.contains(&"nothing_to_confirm"));
    assert_eq!(
        s.stats().rx_by_type().find(|(l, _)| *l == "REQUEST"),
        Some(("REQUEST", 1))
    );
}

#[test]
fn exhaustion_gives_status_codes() {
    let mut s = server();
    // 4 addresses, 4 /56s in the /54.
    for n in 1..=4 {
        bind(&mut s, 0, n);
    }
    let (r, ev) = send(&mut s, 0, &msg(MessageType::Solicit, 5));
    let r = r.unwrap();
    assert!(ev.is_empty());
    assert_eq!(
        r.ia_na[0].status.as_ref().unwrap().code,
        status::NO_ADDRS_AVAIL
    );
    assert!(r.ia_na[0].items.is_empty());
    assert_eq!((r.ia_na[0].t1, r.ia_na[0].t2), (0, 0));
    assert_eq!(
        r.ia_pd[0].status.as_ref().unwrap().code,
        status::NO_PREFIX_AVAIL
    );
    assert_eq!(s.stats().no_addrs_avail, 1);
    assert_eq!(s.stats().no_prefix_avail, 1);
}

#[test]
fn per_client_ia_limit_and_offer_expiry() {
    let mut c = cfg();
    c.max_ias_per_client = 2;
    let mut s = Server::new(c, Duid::ll([2, 0, 0, 0, 0, 1])).unwrap();
    let mut m = msg(MessageType::Solicit, 9);
    m.ia_na = (1..=3).map(|i| Ia::new(i, 0, 0)).collect();
    m.ia_pd.clear();
    let (r, _) = send(&mut s, 0, &m);
    let r = r.unwrap();
    assert_eq!(r.ia_na[0].items.len(), 1);
    assert_eq!(r.ia_na[1].items.len(), 1);
    assert_eq!(
        r.ia_na[2].status.as_ref().unwrap().code,
        status::NO_ADDRS_AVAIL
    );
    assert_eq!(s.offer_count(), 2);
    assert_eq!(s.next_deadline(), Some(10_000));
    assert!(s.poll(10_000).is_empty());
    assert_eq!(s.offer_count(), 0);
    assert_eq!(s.stats().offers_expired, 2);
    assert_eq!(s.address_pools().iter().next().unwrap().in_use(), 0);
}

#[test]
fn bindings_expire_at_the_valid_lifetime() {
    let mut s = server();
    let (addr, pfx) = bind(&mut s, 0, 9);
    assert!(s.poll(10 + 7_199_999).is_empty());
    let ev = s.poll(10 + 7_200_000);
    assert_eq!(ev.len(), 2);
    assert!(ev
        .iter()
        .any(|e| matches!(e, Event::Expired { assigned, .. }
        if *assigned == Assigned::Address(addr))));
    assert!(ev
        .iter()
        .any(|e| matches!(e, Event::Expired { assigned, .. }
        if *assigned == Assigned::Prefix(pfx))));
    assert_eq!(s.binding_count(), 0);
    assert_eq!(s.stats().expired, 2);
    assert_eq!(s.next_deadline(), None);
}

#[test]
fn fixed_address_and_prefix_of_a_line() {
    let mut s = server();
    let fixed_pfx = Prefix6::new(a("2001:db8:ff00::"), 48).unwrap();
    s.assign(
        line(),
        Fixed {
            addr: Some(a("2001:db8:2::7")),
            prefix: Some(fixed_pfx),
        },
    )
    .unwrap();
    let (addr, pfx) = bind(&mut s, 0, 9);
    assert_eq!(addr, a("2001:db8:2::7"));
    assert_eq!(pfx, fixed_pfx);
    assert_eq!(s.address_pools().statics_in_use(), 1);
    // A second client on the line cannot have the same fixed items.
    let (r, _) = send(&mut s, 0, &msg(MessageType::Solicit, 8));
    assert_eq!(
        r.unwrap().ia_na[0].status.as_ref().unwrap().code,
        status::NO_ADDRS_AVAIL
    );
    // Martian or over-long assignments are refused.
    for f in [
        Fixed {
            addr: Some(a("fe80::1")),
            prefix: None,
        },
        Fixed {
            addr: None,
            prefix: Prefix6::new(a("2001:db8::"), 80),
        },
    ] {
        assert!(s.assign(LineKey(vec![1]), f).is_err());
    }
    // Revoke returns the items; unassign forgets the line.
    let key = ClientKey {
        line: line(),
        duid: client(9),
        kind: IaKind::Pd,
        iaid: 2,
    };
    assert_eq!(s.revoke(&key), Some(Assigned::Prefix(fixed_pfx)));
    assert_eq!(s.prefix_pools().statics_in_use(), 0);
    s.unassign(&line());
    let (r, _) = send(&mut s, 0, &msg(MessageType::Solicit, 8));
    let r = r.unwrap();
    assert_eq!(r.ia_pd[0].items[0].len, 56, "from the pool again");
}

#[test]
fn client_hints_are_honoured_when_free() {
    let mut s = server();
    let mut m = msg(MessageType::Solicit, 9);
    m.ia_na[0].items.push(IaAddr {
        addr: a("2001:db8:1::102"),
        preferred: 0,
        valid: 0,
        status: None,
        other: Vec::new(),
    });
    m.ia_pd[0].items.push(IaPrefix {
        preferred: 0,
        valid: 0,
        len: 56,
        prefix: a("2001:db8:100:300::"),
        status: None,
        other: Vec::new(),
    });
    let (r, _) = send(&mut s, 0, &m);
    let r = r.unwrap();
    assert_eq!(r.ia_na[0].items[0].addr, a("2001:db8:1::102"));
    assert_eq!(r.ia_pd[0].items[0].prefix, a("2001:db8:100:300::"));
    // A hint outside the pools is ignored.
    m.ia_na[0].items[0].addr = a("2001:db8:5::1");
    let (r, _) = send(
        &mut s,
        0,
        &Message {
            client_id: Some(client(3)),
            ..m
        },
    );
    assert_eq!(r.unwrap().ia_na[0].items[0].addr, a("2001:db8:1::100"));
}

#[test]
fn rate_limit_per_client() {
    let mut c = cfg();
    c.rate_burst = 3;
    c.rate_per_min = 60;
    let mut s = Server::new(c, Duid::ll([2, 0, 0, 0, 0, 1])).unwrap();
    for _ in 0..3 {
        assert!(send(&mut s, 0, &msg(MessageType::Solicit, 9)).0.is_some());
    }
    assert!(send(&mut s, 0, &msg(MessageType::Solicit, 9)).0.is_none());
    assert_eq!(s.stats().drops(DropReason::RateLimited), 1);
    // Another client is not affected; after a second one more message passes.
    assert!(send(&mut s, 0, &msg(MessageType::Solicit, 8)).0.is_some());
    assert!(send(&mut s, 1000, &msg(MessageType::Solicit, 9))
        .0
        .is_some());
}

#[test]
fn relay_forward_gets_relay_reply() {
    let mut s = server();
    let mut inner = Vec::new();
    Repr::Message(msg(MessageType::Solicit, 9))
        .emit(&mut inner)
        .unwrap();
    let fw = Repr::Relay(RelayMessage {
        msg_type: MessageType::RelayForw,
        hop_count: 0,
        link_address: a("2001:db8:1::1"),
        peer_address: a(CLIENT_LL),
        relay_message: inner,
        interface_id: Some(b"port7".to_vec()),
        other: vec![(37, vec![0, 0, 0, 9, 1])],
    });
    let mut b = Vec::new();
    fw.emit(&mut b).unwrap();
    let relay = a("2001:db8:1::2");
    let h = s.handle(0, &line(), relay, &b);
    let r = h.reply.unwrap();
    assert_eq!((r.dst, r.dst_port), (relay, SERVER_PORT));
    assert_eq!(
        (r.kind, r.inner_kind),
        (MessageType::RelayRepl, MessageType::Advertise)
    );
    let Repr::Relay(rr) = Repr::parse_bytes(&r.message).unwrap() else {
        panic!("not a relay reply")
    };
    assert_eq!(rr.peer_address, a(CLIENT_LL));
    assert_eq!(rr.link_address, a("2001:db8:1::1"));
    assert_eq!(rr.interface_id.as_deref(), Some(&b"port7"[..]));
    let Repr::Message(ad) = rr.inner().unwrap() else {
        panic!("nested relay")
    };
    assert_eq!(ad.msg_type, MessageType::Advertise);
    assert_eq!(ad.ia_na[0].items.len(), 1);
    assert_eq!(s.stats().rx(MessageType::RelayForw), 1);
    assert_eq!(s.stats().rx(MessageType::Solicit), 1);
    assert_eq!(s.stats().tx(MessageType::RelayRepl), 1);
    // Past the hop limit, or doubly nested: dropped.
    let Repr::Relay(mut deep) = fw.clone() else {
        unreachable!()
    };
    deep.hop_count = 9;
    let mut b = Vec::new();
    Repr::Relay(deep.clone()).emit(&mut b).unwrap();
    assert!(s.handle(0, &line(), relay, &b).reply.is_none());
    deep.hop_count = 1;
    let mut outer = Vec::new();
    fw.emit(&mut outer).unwrap();
    deep.relay_message = outer;
    let mut b = Vec::new();
    Repr::Relay(deep).emit(&mut b).unwrap();
    assert!(s.handle(0, &line(), relay, &b).reply.is_none());
    assert_eq!(s.stats().drops(DropReason::Unsupported), 2);
}

#[test]
fn lines_keep_clients_apart() {
    let mut s = server();
    bind(&mut s, 0, 9);
    // The same DUID and IAID on another line is another binding.
    let mut b = Vec::new();
    Repr::Message(msg(MessageType::Solicit, 9))
        .emit(&mut b)
        .unwrap();
    let h = s.handle(0, &LineKey(b"other".to_vec()), a(CLIENT_LL), &b);
    let Repr::Message(ad) = Repr::parse_bytes(&h.reply.unwrap().message).unwrap() else {
        panic!()
    };
    assert_eq!(ad.ia_na[0].items[0].addr, a("2001:db8:1::101"));
}

fn check_invariants(s: &Server) {
    let na: u64 = s.addrs.iter().map(|p| p.in_use()).sum::<u64>() + s.addrs.statics_in_use() as u64;
    let pd: u64 =
        s.prefixes.iter().map(|p| p.in_use()).sum::<u64>() + s.prefixes.statics_in_use() as u64;
    let held_na = s
        .bindings
        .values()
        .filter(|b| matches!(b.assigned, Assigned::Address(_)))
        .count()
        + s.quarantine.len();
    let held_pd = s
        .bindings
        .values()
        .filter(|b| matches!(b.assigned, Assigned::Prefix(_)))
        .count();
    assert_eq!(na as usize, held_na, "addresses held");
    assert_eq!(pd as usize, held_pd, "prefixes held");
    assert_eq!(s.by_item.len(), s.bindings.len());
    for (k, b) in &s.bindings {
        assert_eq!(s.by_item.get(&b.assigned), Some(k));
        assert_eq!(b.assigned.ia_kind(), k.kind);
        assert!(s.timers.contains(&(b.until(), b.assigned)));
    }
    let offers = s
        .bindings
        .values()
        .filter(|b| matches!(b.state, State::Offered { .. }))
        .count();
    assert_eq!(offers, s.offers);
    assert!(s.offers <= s.cfg.max_offers as usize);
    assert!(s.bindings.len() <= s.cfg.max_bindings as usize);
    assert!(s.rate.len() <= s.cfg.max_rate_clients as usize);
}

proptest::proptest! {
    /// Random conversations of a few clients (some on two lines) with random IAs,
    /// hints and clock steps keep the books straight after every message and poll.
    #[test]
    fn random_conversations_keep_the_books(
        ops in proptest::collection::vec((0u8..10, 0u8..6, 0u8..8, 0u32..2_000_000), 1..300)
    ) {
        let mut c = cfg();
        c.max_offers = 3;
        c.max_bindings = 5;
        c.max_ias_per_client = 2;
        c.max_rate_clients = 5;
        c.rate_burst = 20;
        c.decline_hold_s = 60;
        c.preferred_lifetime_s = 300;
        c.valid_lifetime_s = 600;
        let mut s = Server::new(c, Duid::ll([2, 0, 0, 0, 0, 1])).unwrap();
        let mut now = 0u64;
        for (op, who, x, dt) in ops {
            now += u64::from(dt);
            let l = if who >= 4 { LineKey(vec![9]) } else { line() };
            let t = match op {
                0 => MessageType::Solicit,
                1 => MessageType::Request,
                2 => MessageType::Renew,
                3 => MessageType::Rebind,
                4 => MessageType::Release,
                5 => MessageType::Decline,
                6 => MessageType::Confirm,
                7 => MessageType::InformationRequest,
                _ => {
                    s.poll(now);
                    check_invariants(&s);
                    continue;
                }
            };
            let mut m = msg(t, who % 4);
            m.rapid_commit = x & 1 != 0;
            m.ia_na = vec![Ia::new(u32::from(x % 3), 0, 0)];
            m.ia_pd = vec![Ia::new(u32::from(x % 2), 0, 0)];
            m.ia_na[0].items.push(IaAddr {
                addr: Ipv6Addr::from(0x2001_0db8_0001_0000_0000_0000_0000_0100u128 + u128::from(x)),
                preferred: 0,
                valid: 0,
                status: None,
                other: Vec::new(),
            });
            m.ia_pd[0].items.push(IaPrefix {
                preferred: 0,
                valid: 0,
                len: 56,
                prefix: Ipv6Addr::from((0x2001_0db8_0100_0000u128 << 64) | (u128::from(x % 4) << 72)),
                status: None,
                other: Vec::new(),
            });
            if matches!(t, MessageType::Request | MessageType::Renew | MessageType::Release | MessageType::Decline) {
                m.server_id = Some(s.duid().clone());
            }
            let mut b = Vec::new();
            Repr::Message(m.clone()).emit(&mut b).unwrap();
            let h = s.handle(now, &l, a(CLIENT_LL), &b);
            for e in &h.events {
                if let Event::Bound { client, lease } | Event::Renewed { client, lease } = e {
                    proptest::prop_assert_eq!(s.lease(client), Some(*lease));
                }
            }
            check_invariants(&s);
        }
        // Everything ends: after the longest deadline the pools are empty again.
        s.poll(now + 10_000_000);
        check_invariants(&s);
        proptest::prop_assert_eq!(s.bindings.len() + s.quarantine.len(), 0);
    }
}

proptest::proptest! {
    /// Arbitrary bytes, and valid messages with bytes flipped, are answered or
    /// dropped with a counted reason, never a panic; the books stay straight.
    #[test]
    fn arbitrary_input_is_counted_not_fatal(
        raw in proptest::collection::vec(proptest::num::u8::ANY, 0..200),
        flips in proptest::collection::vec((0usize..400, proptest::num::u8::ANY), 0..6),
        t in 0u8..14,
    ) {
        let mut s = server();
        let before = s.stats().total_drops();
        let h = s.handle(0, &line(), a(CLIENT_LL), &raw);
        proptest::prop_assert!(h.reply.is_some() || s.stats().total_drops() == before + 1);
        let mut m = msg(MessageType::Solicit, 9);
        if let Some(mt) = MessageType::from_u8(t) {
            if !mt.is_relay() {
                m.msg_type = mt;
            }
        }
        m.server_id = Some(s.duid().clone());
        let mut b = Vec::new();
        Repr::Message(m).emit(&mut b).unwrap();
        for (at, x) in flips {
            if let Some(c) = b.get_mut(at % 64) {
                *c ^= x;
            }
        }
        let before = s.stats().total_drops();
        let h = s.handle(1, &line(), a(CLIENT_LL), &b);
        proptest::prop_assert!(h.reply.is_some() || s.stats().total_drops() == before + 1);
        check_invariants(&s);
    }
}
