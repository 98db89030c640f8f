//! The sans-IO PFCP node: a CP node and a UP node wired back to back associate,
//! exchange heartbeats and session messages; retransmission with T1/N1, duplicate
//! requests answered from the cache, peer restart and loss, refusal of session
//! requests from unassociated peers (Cause 72) and of malformed requests (Causes 66,
//! 68, 69 with the Offending IE), Version Not Supported.

use pfcp::ie::{bbf, cause, ty, Flags, Ie, IeList, NodeId};
use pfcp::msg::{Message, MsgType};
use pfcp::node::{Config, Event, Node};
use pfcp::samples;
use std::net::{Ipv4Addr, SocketAddr};

fn addr(last: u8) -> SocketAddr {
    SocketAddr::new(Ipv4Addr::new(192, 0, 2, last).into(), 8805)
}
const CP: u8 = 1;
const UP: u8 = 11;

fn cp() -> Node {
    let mut c = Config::new(NodeId::Fqdn("cp.bng.example".into()), 1000);
    c.association_ies = vec![Ie::CpFunctionFeatures(Flags::new(&[0]))];
    Node::new(c)
}

fn up(rts: u32) -> Node {
    let mut c = Config::new(NodeId::Ipv4(Ipv4Addr::new(192, 0, 2, UP)), rts);
    c.association_ies = vec![
        Ie::UpFunctionFeatures(Flags::new(&[0, 0])),
        Ie::BbfUpFunctionFeatures(Flags::new(&[bbf::up_features::PPPOE, 0, 0, 0])),
    ];
    Node::new(c)
}

/// Delivers everything `from` has to send to `to` (at `now`); returns how many.
fn pump(now: u64, from: &mut Node, from_addr: SocketAddr, to: &mut Node) -> usize {
    let mut n = 0;
    while let Some(t) = from.poll_transmit() {
        to.handle(now, from_addr, &t.data);
        n += 1;
    }
    n
}

fn events(n: &mut Node) -> Vec<Event> {
    std::iter::from_fn(|| n.poll_event()).collect()
}

fn associated() -> (Node, Node) {
    let (mut c, mut u) = (cp(), up(2000));
    c.associate(0, addr(UP)).unwrap();
    assert_eq!(pump(0, &mut c, addr(CP), &mut u), 1);
    assert_eq!(pump(0, &mut u, addr(UP), &mut c), 1);
    let ue = events(&mut u);
    assert!(
        matches!(&ue[..], [Event::Associated { peer, recovery_time_stamp: 1000, ies, .. }]
        if *peer == addr(CP) && ies == &vec![Ie::CpFunctionFeatures(Flags::new(&[0]))])
    );
    let ce = events(&mut c);
    assert!(
        matches!(&ce[0], Event::Associated { node_id: NodeId::Ipv4(_), recovery_time_stamp: 2000, ies, .. }
        if ies.iter().any(|i| i.key() == (bbf::UP_FUNCTION_FEATURES, Some(bbf::ENTERPRISE_ID))))
    );
    assert!(c.is_associated(addr(UP)) && u.is_associated(addr(CP)));
    (c, u)
}

fn establishment() -> Message {
    samples::messages()
        .into_iter()
        .find(|m| m.msg_type() == MsgType::SessionEstablishmentRequest)
        .unwrap()
}

#[test]
fn association_and_session_exchange() {
    let (mut c, mut u) = associated();
    let req = establishment();
    let seq = c
        .send_request(5, addr(UP), req.msg_type(), Some(0), req.ies.clone())
        .unwrap();
    pump(5, &mut c, addr(CP), &mut u);
    let Some(Event::Request { peer, msg }) = u.poll_event() else {
        panic!("no request event")
    };
    assert_eq!(peer, addr(CP));
    assert_eq!(msg.header.seq, seq);
    assert_eq!(msg.ies, req.ies);
    let cp_seid = msg.ies.f_seid().unwrap().seid;
    // A retransmission while the application works is dropped, not passed on twice.
    u.handle(
        6,
        addr(CP),
        &Message::new(req.msg_type(), Some(0), seq, req.ies.clone())
            .to_bytes()
            .unwrap(),
    );
    assert!(u.poll_event().is_none());
    u.respond(
        7,
        addr(CP),
        &msg.header,
        Some(cp_seid),
        vec![
            Ie::NodeId(NodeId::Ipv4(Ipv4Addr::new(192, 0, 2, UP))),
            Ie::Cause(cause::REQUEST_ACCEPTED),
        ],
    )
    .unwrap();
    let resp = u.poll_transmit().unwrap().data;
    c.handle(8, addr(UP), &resp);
    let Some(Event::Response { request, msg, .. }) = c.poll_event() else {
        panic!("no response event")
    };
    assert_eq!(request, MsgType::SessionEstablishmentRequest);
    assert_eq!(msg.header.seid, Some(cp_seid));
    assert_eq!(c.outstanding(), 0);
    // The same response again matches nothing.
    c.handle(9, addr(UP), &resp);
    assert_eq!(c.stats().unmatched_responses, 1);
    // A late retransmission of the request gets the cached response, byte for byte.
    u.handle(
        10,
        addr(CP),
        &Message::new(req.msg_type(), Some(0), seq, req.ies.clone())
            .to_bytes()
            .unwrap(),
    );
    assert_eq!(u.poll_transmit().unwrap().data, resp);
    assert_eq!(u.stats().duplicate_requests, 2);
    assert!(u.poll_event().is_none());
}

#[test]
fn session_request_without_association_is_refused() {
    let mut u = up(2000);
    let req = establishment().to_bytes().unwrap();
    u.handle(0, addr(CP), &req);
    assert!(u.poll_event().is_none());
    let r = Message::parse_bytes(&u.poll_transmit().unwrap().data).unwrap();
    assert_eq!(r.msg_type(), MsgType::SessionEstablishmentResponse);
    assert_eq!(r.ies.cause(), Some(cause::NO_ESTABLISHED_PFCP_ASSOCIATION));
    assert_eq!(r.header.seq, 7);
    assert_eq!(u.stats().unassociated_rejected, 1);
    // Another peer than the associated one is refused as well.
    let (_, mut u) = associated();
    let del = Message::new(MsgType::SessionDeletionRequest, Some(1), 3, vec![]);
    u.handle(1, addr(99), &del.to_bytes().unwrap());
    let r = Message::parse_bytes(&u.poll_transmit().unwrap().data).unwrap();
    assert_eq!(r.ies.cause(), Some(cause::NO_ESTABLISHED_PFCP_ASSOCIATION));
}

#[test]
fn malformed_requests_get_causes() {
    let (_, mut u) = associated();
    let req = establishment();
    // Mandatory IE missing: no F-SEID.
    let mut m = req.clone();
    m.ies.retain(|i| i.key() != (ty::F_SEID, None));
    let mut b = Vec::new();
    m.header.emit_unchecked_for_test(&m.ies, &mut b);
    u.handle(0, addr(CP), &b);
    let r = Message::parse_bytes(&u.poll_transmit().unwrap().data).unwrap();
    assert_eq!(r.ies.cause(), Some(cause::MANDATORY_IE_MISSING));
    assert_eq!(r.ies.offending_ie(), Some(ty::F_SEID));
    assert!(r.ies.node_id().is_some());
    // Mandatory IE incorrect: F-SEID with no address flag.
    let mut m2 = req.clone();
    m2.header.seq = 8;
    let mut b = m2.to_bytes().unwrap();
    let at = find_ie(&b, ty::F_SEID);
    b[at + 4] = 0;
    u.handle(1, addr(CP), &b);
    let r = Message::parse_bytes(&u.poll_transmit().unwrap().data).unwrap();
    assert_eq!(r.ies.cause(), Some(cause::MANDATORY_IE_INCORRECT));
    assert_eq!(r.ies.offending_ie(), Some(ty::F_SEID));
    // Invalid length: the message length says more than was received.
    let mut b = Message::new(MsgType::SessionDeletionRequest, Some(1), 20, vec![])
        .to_bytes()
        .unwrap();
    b[3] += 4;
    u.handle(2, addr(CP), &b);
    let r = Message::parse_bytes(&u.poll_transmit().unwrap().data).unwrap();
    assert_eq!(r.msg_type(), MsgType::SessionDeletionResponse);
    assert_eq!(r.ies.cause(), Some(cause::INVALID_LENGTH));
    assert_eq!(r.header.seq, 20);
    assert_eq!(u.stats().malformed_requests, 3);
    assert!(
        u.poll_event().is_none(),
        "nothing malformed reaches the application"
    );
    assert!(u.is_associated(addr(CP)), "the association survives");
    // A malformed heartbeat has no Cause to answer with: dropped.
    let mut hb = Message::new(
        MsgType::HeartbeatRequest,
        None,
        30,
        vec![Ie::RecoveryTimeStamp(1000)],
    )
    .to_bytes()
    .unwrap();
    hb.truncate(hb.len() - 1);
    u.handle(3, addr(CP), &hb);
    assert!(u.poll_transmit().is_none());
    // Garbage and an unknown type are dropped and counted.
    u.handle(4, addr(CP), &[0x20]);
    u.handle(4, addr(CP), &[0x20, 3, 0, 4, 0, 0, 1, 0]);
    assert!(u.poll_transmit().is_none());
    assert_eq!(u.stats().malformed_dropped, 2);
}

/// Offset of the first top-level IE of type `t` in a message.
fn find_ie(b: &[u8], t: u16) -> usize {
    let mut at = if b[0] & 1 != 0 { 16 } else { 8 };
    loop {
        let ty = u16::from_be_bytes([b[at], b[at + 1]]);
        if ty == t {
            return at;
        }
        at += 4 + usize::from(u16::from_be_bytes([b[at + 2], b[at + 3]]));
    }
}

trait EmitUnchecked {
    fn emit_unchecked_for_test(&self, ies: &[Ie], out: &mut Vec<u8>);
}

impl EmitUnchecked for pfcp::msg::Header {
    /// Emits a message without the mandatory-IE check (to build a hostile one).
    fn emit_unchecked_for_test(&self, ies: &[Ie], out: &mut Vec<u8>) {
        let mut ok = Message {
            header: *self,
            ies: vec![],
        };
        // A session deletion request has no mandatory IEs: emit its header, then
        // patch the type and append the IEs.
        ok.header.msg_type = MsgType::SessionDeletionRequest;
        ok.emit(out).unwrap();
        out[1] = self.msg_type as u8;
        pfcp::ie::emit_ies(ies, out).unwrap();
        let l = (out.len() - 4) as u16;
        out[2..4].copy_from_slice(&l.to_be_bytes());
    }
}

#[test]
fn retransmission_and_timeout() {
    let mut c = cp();
    let seq = c.associate(0, addr(UP)).unwrap();
    let first = c.poll_transmit().unwrap();
    assert_eq!(c.poll_timeout(), Some(3000));
    c.handle_timeout(2999);
    assert!(c.poll_transmit().is_none());
    for i in 1..=3u64 {
        c.handle_timeout(3000 * i);
        assert_eq!(c.poll_transmit().unwrap(), first, "retransmission {i}");
    }
    c.handle_timeout(12_000);
    assert!(c.poll_transmit().is_none());
    assert_eq!(
        events(&mut c),
        vec![Event::Timeout {
            peer: addr(UP),
            seq,
            request: MsgType::AssociationSetupRequest
        }]
    );
    assert_eq!(c.stats().retransmits, 3);
    assert_eq!(c.outstanding(), 0);
    // A retransmitted request and its answer still match.
    let mut u = up(2000);
    let seq2 = c.associate(20_000, addr(UP)).unwrap();
    c.handle_timeout(23_000);
    pump(23_000, &mut c, addr(CP), &mut u);
    assert_eq!(u.stats().duplicate_requests, 1);
    pump(23_000, &mut u, addr(UP), &mut c);
    assert!(c.is_associated(addr(UP)));
    assert_eq!(
        c.stats().unmatched_responses,
        1,
        "the second answer matches nothing"
    );
    assert!(seq2 > seq);
}

#[test]
fn heartbeats_restart_and_loss() {
    let (mut c, mut u) = associated();
    // Heartbeats go out every interval and are answered.
    c.handle_timeout(10_000);
    let hb = c.poll_transmit().unwrap();
    assert_eq!(
        Message::parse_bytes(&hb.data).unwrap().msg_type(),
        MsgType::HeartbeatRequest
    );
    u.handle(10_000, addr(CP), &hb.data);
    pump(10_000, &mut u, addr(UP), &mut c);
    assert_eq!(c.outstanding(), 0);
    assert!(events(&mut c).is_empty());
    // The UP restarts: its new Recovery Time Stamp shows in its heartbeat request.
    let mut u2 = up(3000);
    u2.send_request(
        11_000,
        addr(CP),
        MsgType::HeartbeatRequest,
        None,
        vec![Ie::RecoveryTimeStamp(3000)],
    )
    .unwrap();
    pump(11_000, &mut u2, addr(UP), &mut c);
    assert_eq!(
        events(&mut c),
        vec![Event::PeerRestarted {
            peer: addr(UP),
            old: 2000,
            new: 3000
        }]
    );
    assert_eq!(c.poll_transmit().map(|t| t.dst), Some(addr(UP)), "answered");
    // The UP goes silent: after N1 unanswered retransmissions it is lost.
    c.handle_timeout(20_000);
    assert!(c.poll_transmit().is_some());
    for t in [23_000, 26_000, 29_000] {
        c.handle_timeout(t);
        assert!(c.poll_transmit().is_some());
    }
    c.handle_timeout(32_000);
    let ev = events(&mut c);
    assert!(ev.contains(&Event::PeerLost { peer: addr(UP) }), "{ev:?}");
    assert!(!c.is_associated(addr(UP)));
    assert_eq!(c.associated_peers().count(), 0);
}

#[test]
fn release_and_version_not_supported() {
    let (mut c, mut u) = associated();
    c.release(1, addr(UP)).unwrap();
    pump(1, &mut c, addr(CP), &mut u);
    assert_eq!(
        events(&mut u),
        vec![Event::AssociationReleased { peer: addr(CP) }]
    );
    pump(1, &mut u, addr(UP), &mut c);
    let ev = events(&mut c);
    assert!(ev.contains(&Event::AssociationReleased { peer: addr(UP) }));
    assert!(!c.is_associated(addr(UP)) && !u.is_associated(addr(CP)));
    // Version 2 gets a Version Not Supported Response with the same sequence number.
    let mut b = Message::new(
        MsgType::HeartbeatRequest,
        None,
        77,
        vec![Ie::RecoveryTimeStamp(1)],
    )
    .to_bytes()
    .unwrap();
    b[0] = 0x40;
    u.handle(2, addr(CP), &b);
    let r = Message::parse_bytes(&u.poll_transmit().unwrap().data).unwrap();
    assert_eq!(r.msg_type(), MsgType::VersionNotSupportedResponse);
    assert_eq!(r.header.seq, 77);
    assert_eq!(u.stats().version_not_supported, 1);
}

#[test]
fn refused_association_and_node_report() {
    let mut c = cp();
    let seq = c.associate(0, addr(UP)).unwrap();
    let _ = c.poll_transmit();
    let refuse = Message::new(
        MsgType::AssociationSetupResponse,
        None,
        seq,
        vec![
            Ie::NodeId(NodeId::Ipv4(Ipv4Addr::new(192, 0, 2, UP))),
            Ie::Cause(cause::REQUEST_REJECTED),
            Ie::RecoveryTimeStamp(5),
        ],
    );
    c.handle(1, addr(UP), &refuse.to_bytes().unwrap());
    let ev = events(&mut c);
    assert_eq!(
        ev[0],
        Event::AssociationRefused {
            peer: addr(UP),
            cause: cause::REQUEST_REJECTED
        }
    );
    assert!(!c.is_associated(addr(UP)));
    // A Node Report from an associated UP reaches the application.
    let (mut c, mut u) = associated();
    u.send_request(
        1,
        addr(CP),
        MsgType::NodeReportRequest,
        None,
        vec![
            Ie::NodeId(NodeId::Ipv4(Ipv4Addr::new(192, 0, 2, UP))),
            Ie::NodeReportType(Flags::new(&[1])),
        ],
    )
    .unwrap();
    pump(1, &mut u, addr(UP), &mut c);
    assert!(
        matches!(c.poll_event(), Some(Event::Request { msg, .. }) if msg.msg_type() == MsgType::NodeReportRequest)
    );
}

#[test]
fn bundled_requests_are_handled_one_by_one() {
    let (_, mut u) = associated();
    let mut hb = Message::new(
        MsgType::HeartbeatRequest,
        None,
        40,
        vec![Ie::RecoveryTimeStamp(1000)],
    );
    hb.header.follow_on = true;
    let del = Message::new(MsgType::SessionDeletionRequest, Some(5), 41, vec![]);
    let mut b = hb.to_bytes().unwrap();
    del.emit(&mut b).unwrap();
    u.handle(1, addr(CP), &b);
    let r = Message::parse_bytes(&u.poll_transmit().unwrap().data).unwrap();
    assert_eq!(
        (r.msg_type(), r.header.seq),
        (MsgType::HeartbeatResponse, 40)
    );
    assert!(matches!(u.poll_event(), Some(Event::Request { msg, .. }) if msg.header.seq == 41));
}

/// A restarted CP numbers its requests from the start again (TS 23.007 §19A): its
/// Association Setup Request carries a sequence number the UP answered before the
/// restart, but a new Recovery Time Stamp — the UP handles it (and reports the
/// restart) instead of answering from its cache, and the CP's next session request
/// under an old number is handled too.
#[test]
fn restarted_peer_reusing_sequence_numbers_is_not_answered_from_the_cache() {
    let (mut c, mut u) = associated();
    // A session request the UP answers (and caches under its number).
    c.send_request(
        10,
        addr(UP),
        MsgType::SessionEstablishmentRequest,
        Some(0),
        establishment().ies,
    )
    .unwrap();
    pump(10, &mut c, addr(CP), &mut u);
    let ev = events(&mut u);
    let Some(Event::Request { msg, .. }) = ev.first() else {
        panic!("{ev:?}");
    };
    let ies = vec![
        Ie::NodeId(NodeId::Ipv4(Ipv4Addr::new(192, 0, 2, UP))),
        Ie::Cause(cause::REQUEST_ACCEPTED),
    ];
    u.respond(10, addr(CP), &msg.header, Some(7), ies).unwrap();
    pump(10, &mut u, addr(UP), &mut c);
    // The CP restarts (same address, new Recovery Time Stamp, numbers from 1).
    let mut cc = Config::new(NodeId::Fqdn("cp.bng.example".into()), 1001);
    cc.association_ies = vec![Ie::CpFunctionFeatures(Flags::new(&[0]))];
    let mut c2 = Node::new(cc);
    c2.associate(100, addr(UP)).unwrap();
    pump(100, &mut c2, addr(CP), &mut u);
    let ev = events(&mut u);
    assert!(
        ev.contains(&Event::PeerRestarted {
            peer: addr(CP),
            old: 1000,
            new: 1001
        }),
        "{ev:?}"
    );
    assert!(ev.iter().any(|e| matches!(
        e,
        Event::Associated {
            recovery_time_stamp: 1001,
            ..
        }
    )));
    pump(100, &mut u, addr(UP), &mut c2);
    assert!(c2.is_associated(addr(UP)));
    assert!(events(&mut c2)
        .iter()
        .any(|e| matches!(e, Event::Associated { .. })));
    // Its first session request reuses the number of the one answered before.
    c2.send_request(
        110,
        addr(UP),
        MsgType::SessionEstablishmentRequest,
        Some(0),
        establishment().ies,
    )
    .unwrap();
    pump(110, &mut c2, addr(CP), &mut u);
    let ev = events(&mut u);
    assert!(
        matches!(&ev[..], [Event::Request { msg, .. }] if msg.msg_type() == MsgType::SessionEstablishmentRequest),
        "handed to the application, not answered from the cache: {ev:?}"
    );
    assert!(u.poll_transmit().is_none(), "no stale cached answer");
}

#[test]
fn many_pending_requests_time_out_by_their_own_t1() {
    // Requests sent at different times: the next timeout is the earliest pending
    // one's T1; answered requests no longer count; the rest are retransmitted and
    // fail each at its own deadlines, N1 times T1 after it was sent.
    let (mut c, mut u) = associated();
    let mut seqs = Vec::new();
    for t in 0..100u64 {
        let seq = c
            .send_request(
                t,
                addr(UP),
                MsgType::SessionDeletionRequest,
                Some(t + 1),
                vec![],
            )
            .unwrap();
        seqs.push(seq);
    }
    // Heartbeats off the table: the first one is due at 10 000.
    assert_eq!(c.poll_timeout(), Some(3000));
    // The first 50 answered (the UP refuses them: no such session).
    for _ in 0..50 {
        let t = c.poll_transmit().unwrap();
        u.handle(0, addr(CP), &t.data);
    }
    while let Some(Event::Request { peer, msg }) = u.poll_event() {
        u.respond(
            0,
            peer,
            &msg.header,
            Some(0),
            vec![Ie::Cause(cause::SESSION_CONTEXT_NOT_FOUND)],
        )
        .unwrap();
    }
    pump(0, &mut u, addr(UP), &mut c);
    assert_eq!(c.outstanding(), 50);
    assert_eq!(
        c.poll_timeout(),
        Some(3050),
        "the first unanswered one's T1"
    );
    while c.poll_transmit().is_some() {}
    c.handle_timeout(3060);
    assert_eq!(c.stats().retransmits, 11, "requests sent at 50..=60");
    assert_eq!(c.poll_timeout(), Some(3061));
    // Each fails N1 retransmissions after its first one (those sent at 50..=60 were
    // first retransmitted at 3060), 3 T1 later.
    let timeouts = |c: &mut Node| {
        events(c)
            .into_iter()
            .filter(|e| matches!(e, Event::Timeout { .. }))
            .count()
    };
    for now in 3061..12_060 {
        c.handle_timeout(now);
    }
    assert_eq!(timeouts(&mut c), 0);
    c.handle_timeout(12_060);
    assert_eq!(timeouts(&mut c), 11);
    c.handle_timeout(12_061);
    assert_eq!(timeouts(&mut c), 1);
    for now in 12_062..12_100 {
        c.handle_timeout(now);
    }
    assert_eq!(timeouts(&mut c), 38);
    // Only the heartbeat sent at 10 000 is left.
    assert_eq!(c.outstanding(), 1);
    assert_eq!(c.stats().retransmits, 150);
}
