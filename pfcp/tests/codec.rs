//! PFCP codec: round trips of every message and IE, hostile inputs (bad lengths,
//! truncated grouped IEs, nesting past the bound, missing or incorrect mandatory IEs,
//! wrong version or header flags) refused with the right error, and a property test
//! that no input panics and whatever parses emits back to the same value.

use pfcp::ie::{
    self, bbf, ohc, ty, BbfOuterHeaderCreation, FSeid, FTeid, Flags, Ie, IeList, MacAddress,
    NodeId, OuterHeaderCreation, PppProtocol, RawIe, SdfFilter, UeIpAddress, VlanTag,
};
use pfcp::msg::{Header, Message, MsgType};
use pfcp::{samples, Error};
use proptest::prelude::*;
use std::net::{Ipv4Addr, Ipv6Addr};

fn rt(m: &Message) {
    let b = m.to_bytes().unwrap();
    let back = Message::parse_bytes(&b).unwrap();
    assert_eq!(&back, m, "{}", m.msg_type().name());
    assert_eq!(back.to_bytes().unwrap(), b);
}

#[test]
fn every_sample_message_round_trips() {
    let msgs = samples::messages();
    for t in MsgType::ALL {
        assert!(
            msgs.iter().any(|m| m.msg_type() == t),
            "no sample of {}",
            t.name()
        );
    }
    for m in &msgs {
        rt(m);
    }
}

fn every_ie() -> Vec<Ie> {
    vec![
        Ie::FTeid(FTeid::Choose {
            v4: true,
            v6: true,
            choose_id: None,
        }),
        Ie::FTeid(FTeid::Assigned {
            teid: 7,
            v4: Some(Ipv4Addr::new(10, 0, 0, 1)),
            v6: Some(Ipv6Addr::LOCALHOST),
        }),
        Ie::FSeid(FSeid {
            seid: u64::MAX,
            v4: Some(Ipv4Addr::new(10, 0, 0, 1)),
            v6: Some(Ipv6Addr::LOCALHOST),
        }),
        Ie::NodeId(NodeId::Ipv6(Ipv6Addr::LOCALHOST)),
        Ie::NodeId(NodeId::Fqdn("a.b-c.example".into())),
        Ie::UeIpAddress(UeIpAddress {
            destination: true,
            v4: Some(Ipv4Addr::new(100, 64, 1, 1)),
            v6: Some("2001:db8::".parse().unwrap()),
            v6_prefix_delegation_bits: Some(8),
            choose_v4: false,
            choose_v6: false,
            v6_prefix_length: Some(56),
        }),
        Ie::UeIpAddress(UeIpAddress {
            choose_v4: true,
            choose_v6: true,
            ..UeIpAddress::default()
        }),
        Ie::SdfFilter(SdfFilter {
            flow_description: Some(b"permit out ip from any to assigned".to_vec()),
            tos_traffic_class: Some(0x2eff),
            spi: Some(0x1234_5678),
            flow_label: Some(0x000f_ffff),
            filter_id: Some(9),
        }),
        Ie::OuterHeaderCreation(OuterHeaderCreation {
            description: ohc::UDP_IPV6 | ohc::N6,
            teid: None,
            v4: None,
            v6: Some(Ipv6Addr::LOCALHOST),
            port: Some(4789),
            c_tag: None,
            s_tag: None,
        }),
        Ie::OuterHeaderCreation(OuterHeaderCreation {
            description: ohc::GTPU_UDP_IPV4 | ohc::GTPU_UDP_IPV6,
            teid: Some(1),
            v4: Some(Ipv4Addr::new(1, 2, 3, 4)),
            v6: Some(Ipv6Addr::LOCALHOST),
            port: None,
            c_tag: None,
            s_tag: None,
        }),
        Ie::OuterHeaderRemoval(ie::OuterHeaderRemoval {
            description: ie::ohr::GTPU_UDP_IPV4,
            extension_header_deletion: Some(1),
        }),
        Ie::MacAddress(MacAddress {
            src: Some([1; 6]),
            dst: Some([2; 6]),
            upper_src: Some([3; 6]),
            upper_dst: Some([4; 6]),
        }),
        Ie::CTag(VlanTag {
            pcp: Some(7),
            dei: Some(true),
            vid: Some(4095),
        }),
        Ie::STag(VlanTag::default()),
        Ie::BbfOuterHeaderCreation(BbfOuterHeaderCreation {
            description: bbf::outer_header_creation::L2TP,
            tunnel_id: 1,
            session_id: 2,
        }),
        Ie::BbfPppProtocol(PppProtocol {
            control: true,
            data: true,
            protocol: Some(0xc021),
        }),
        Ie::Unknown(RawIe {
            ty: 200,
            enterprise: None,
            data: vec![1, 2],
        }),
        Ie::Unknown(RawIe {
            ty: bbf::L2TP_SESSION_ID,
            enterprise: Some(bbf::ENTERPRISE_ID),
            data: vec![0, 5],
        }),
        Ie::Unknown(RawIe {
            ty: 0xffff,
            enterprise: Some(18681),
            data: vec![],
        }),
        Ie::ReportingTriggers(Flags::new(&[0xff, 0xff, 0x07])),
        Ie::NetworkInstance(vec![]),
    ]
}

#[test]
fn every_ie_round_trips() {
    for i in every_ie() {
        let mut b = Vec::new();
        i.emit(&mut b).unwrap();
        let back = ie::parse_ies(&b, 0).unwrap();
        assert_eq!(back, vec![i.clone()]);
    }
    // Every IE variant of the samples, flattened, round trips on its own too.
    fn walk(ies: &[Ie], out: &mut Vec<Ie>) {
        for i in ies {
            out.push(i.clone());
            walk(i.children(), out);
        }
    }
    let mut all = Vec::new();
    for m in samples::messages() {
        walk(&m.ies, &mut all);
    }
    for i in &all {
        let mut b = Vec::new();
        i.emit(&mut b).unwrap();
        assert_eq!(&ie::parse_ies(&b, 0).unwrap()[0], i);
    }
}

#[test]
fn emit_refuses_what_parse_refuses() {
    let bad = [
        Ie::FSeid(FSeid {
            seid: 1,
            v4: None,
            v6: None,
        }),
        Ie::SourceInterface(16),
        Ie::GateStatus(ie::GateStatus { ul: 4, dl: 0 }),
        Ie::Mbr(ie::Mbr {
            ul_kbps: 1 << 40,
            dl_kbps: 0,
        }),
        Ie::NodeId(NodeId::Fqdn(String::new())),
        Ie::NodeId(NodeId::Fqdn("a..b".into())),
        Ie::OuterHeaderCreation(OuterHeaderCreation {
            description: ohc::GTPU_UDP_IPV4,
            teid: None,
            v4: None,
            v6: None,
            port: None,
            c_tag: None,
            s_tag: None,
        }),
        Ie::CTag(VlanTag::vid(4096)),
        Ie::ReportingTriggers(Flags::new(&[1])),
        Ie::group(ty::CREATE_PDR, vec![Ie::PdrId(1)]),
        Ie::group(ty::CAUSE, vec![]),
        Ie::Unknown(RawIe {
            ty: 0x8001,
            enterprise: None,
            data: vec![],
        }),
        Ie::Unknown(RawIe {
            ty: 1,
            enterprise: Some(1),
            data: vec![],
        }),
        Ie::BbfNatExternalPortRange(vec![]),
        Ie::BbfLogicalPort(vec![]),
    ];
    for i in bad {
        let mut b = vec![9];
        assert!(i.emit(&mut b).is_err(), "{i:?}");
        assert_eq!(b, vec![9], "a refused IE leaves the buffer as it was");
    }
    let mut long = Message::new(
        MsgType::HeartbeatRequest,
        None,
        1,
        vec![
            Ie::RecoveryTimeStamp(1),
            Ie::NetworkInstance(vec![0; 65_535]),
        ],
    );
    assert_eq!(long.to_bytes(), Err(Error::TooLong));
    long.ies.truncate(1);
    long.header.seq = 1 << 24;
    assert_eq!(long.to_bytes(), Err(Error::BadHeader));
    let no_seid = Message::new(MsgType::SessionDeletionRequest, None, 1, vec![]);
    assert_eq!(no_seid.to_bytes(), Err(Error::BadHeader));
    let missing = Message::new(MsgType::HeartbeatRequest, None, 1, vec![]);
    assert_eq!(
        missing.to_bytes(),
        Err(Error::MissingIe {
            ie: ty::RECOVERY_TIME_STAMP
        })
    );
}

fn heartbeat(ies: &[u8]) -> Vec<u8> {
    let mut b = vec![0x20, 1, 0, 0, 0, 0, 9, 0];
    b.extend_from_slice(ies);
    let l = (b.len() - 4) as u16;
    b[2..4].copy_from_slice(&l.to_be_bytes());
    b
}

fn ie_bytes(t: u16, v: &[u8]) -> Vec<u8> {
    let mut b = t.to_be_bytes().to_vec();
    b.extend_from_slice(&(v.len() as u16).to_be_bytes());
    b.extend_from_slice(v);
    b
}

#[test]
fn hostile_headers() {
    let ok = heartbeat(&ie_bytes(ty::RECOVERY_TIME_STAMP, &[0, 0, 0, 1]));
    assert!(Message::parse_bytes(&ok).is_ok());
    // Version 2.
    let mut b = ok.clone();
    b[0] = 0x40;
    assert_eq!(Message::parse_bytes(&b), Err(Error::BadVersion(2)));
    // S flag on a node message; MP on a node message.
    for f in [0x21, 0x22] {
        let mut b = ok.clone();
        b[0] = f;
        assert_eq!(Message::parse_bytes(&b), Err(Error::BadHeader));
    }
    // Unknown message type (PFD Management Request).
    let mut b = ok.clone();
    b[1] = 3;
    assert_eq!(Message::parse_bytes(&b), Err(Error::UnknownMessage(3)));
    // Length field longer than the datagram, shorter than the header, or leaving
    // bytes over.
    let mut b = ok.clone();
    b[3] += 1;
    assert_eq!(Message::parse_bytes(&b), Err(Error::InvalidLength));
    let mut b = ok.clone();
    b[2..4].copy_from_slice(&[0, 3]);
    assert_eq!(Message::parse_bytes(&b), Err(Error::InvalidLength));
    let mut b = ok.clone();
    b.push(0);
    assert_eq!(Message::parse_bytes(&b), Err(Error::InvalidLength));
    // Every truncation.
    for n in 0..ok.len() {
        assert!(Message::parse_bytes(&ok[..n]).is_err());
    }
}

#[test]
fn hostile_ies() {
    let rts = ie_bytes(ty::RECOVERY_TIME_STAMP, &[0, 0, 0, 1]);
    // An IE running past the message.
    let mut body = rts.clone();
    body.extend_from_slice(&[0, 19, 0, 5, 1]);
    assert_eq!(
        Message::parse_bytes(&heartbeat(&body)),
        Err(Error::InvalidLength)
    );
    // A mandatory IE replaced by an unknown one.
    assert_eq!(
        Message::parse_bytes(&heartbeat(&ie_bytes(300, &[0, 0, 0, 1]))),
        Err(Error::MissingIe {
            ie: ty::RECOVERY_TIME_STAMP
        })
    );
    // A mandatory IE too short.
    let e =
        Message::parse_bytes(&heartbeat(&ie_bytes(ty::RECOVERY_TIME_STAMP, &[0, 1]))).unwrap_err();
    assert_eq!(
        e,
        Error::BadIe {
            ie: ty::RECOVERY_TIME_STAMP
        }
    );
    assert_eq!(e.cause(), ie::cause::MANDATORY_IE_INCORRECT);
    assert_eq!(e.offending_ie(), Some(ty::RECOVERY_TIME_STAMP));
    // A vendor IE without room for its Enterprise ID.
    let mut body = rts.clone();
    body.extend_from_slice(&ie_bytes(0x8001, &[0x0d]));
    assert_eq!(
        Message::parse_bytes(&heartbeat(&body)),
        Err(Error::BadIe { ie: 0x8001 })
    );
    // Bad values: Node ID type 5, F-SEID with neither address, bad FQDN label.
    for (t, v) in [
        (ty::NODE_ID, vec![5, 1, 2, 3, 4]),
        (ty::NODE_ID, vec![2, 10, b'a']),
        (ty::NODE_ID, vec![2, 1, b'.']),
        (ty::F_SEID, vec![0, 0, 0, 0, 0, 0, 0, 0, 1]),
        (ty::F_TEID, vec![0, 0, 0, 0, 1]),
        (ty::CAUSE, vec![]),
    ] {
        let mut body = rts.clone();
        body.extend_from_slice(&ie_bytes(t, &v));
        assert_eq!(
            Message::parse_bytes(&heartbeat(&body)),
            Err(Error::BadIe { ie: t }),
            "IE {t} {v:?}"
        );
    }
}

/// A Session Establishment Request with `pdrs` as its Create PDR content.
fn establishment(create_pdr_value: &[u8]) -> Vec<u8> {
    let mut b = vec![0x21, 50, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1, 0];
    b.extend_from_slice(&ie_bytes(ty::NODE_ID, &[0, 10, 0, 0, 1]));
    b.extend_from_slice(&ie_bytes(
        ty::F_SEID,
        &[2, 0, 0, 0, 0, 0, 0, 0, 1, 10, 0, 0, 1],
    ));
    b.extend_from_slice(&ie_bytes(ty::CREATE_PDR, create_pdr_value));
    let mut far = ie_bytes(ty::FAR_ID, &[0, 0, 0, 1]);
    far.extend_from_slice(&ie_bytes(ty::APPLY_ACTION, &[2]));
    b.extend_from_slice(&ie_bytes(ty::CREATE_FAR, &far));
    let l = (b.len() - 4) as u16;
    b[2..4].copy_from_slice(&l.to_be_bytes());
    b
}

fn pdr(pdi: &[u8]) -> Vec<u8> {
    let mut p = ie_bytes(ty::PDR_ID, &[0, 1]);
    p.extend_from_slice(&ie_bytes(ty::PRECEDENCE, &[0, 0, 0, 1]));
    p.extend_from_slice(&ie_bytes(ty::PDI, pdi));
    p
}

#[test]
fn hostile_grouped_ies() {
    let src = ie_bytes(ty::SOURCE_INTERFACE, &[0]);
    let good = establishment(&pdr(&src));
    let m = Message::parse_bytes(&good).unwrap();
    assert_eq!(m.ies.f_seid().unwrap().seid, 1);
    // A child IE that runs past its group (the group itself fits the message).
    let mut pdi = src.clone();
    pdi.extend_from_slice(&[0, 22, 0, 9, 1]);
    assert_eq!(
        Message::parse_bytes(&establishment(&pdr(&pdi))),
        Err(Error::InvalidLength)
    );
    // A group missing a mandatory child: PDI without Source Interface.
    assert_eq!(
        Message::parse_bytes(&establishment(&pdr(&ie_bytes(ty::NETWORK_INSTANCE, b"x")))),
        Err(Error::MissingIe {
            ie: ty::SOURCE_INTERFACE
        })
    );
    // Nesting: PDI inside PDI inside ... past MAX_DEPTH.
    let mut inner = src.clone();
    for _ in 0..ie::MAX_DEPTH + 2 {
        let mut next = src.clone();
        next.extend_from_slice(&ie_bytes(ty::PDI, &inner));
        inner = next;
    }
    assert_eq!(
        Message::parse_bytes(&establishment(&pdr(&inner))),
        Err(Error::TooDeep { ie: ty::PDI })
    );
    // Nesting within the bound is accepted.
    let mut inner = src.clone();
    for _ in 0..ie::MAX_DEPTH - 3 {
        let mut next = src.clone();
        next.extend_from_slice(&ie_bytes(ty::PDI, &inner));
        inner = next;
    }
    assert!(Message::parse_bytes(&establishment(&pdr(&inner))).is_ok());
    // Every truncation of a good message fails cleanly.
    for n in 0..good.len() {
        assert!(Message::parse_bytes(&good[..n]).is_err());
    }
}

#[test]
fn bundled_messages() {
    let msgs = samples::messages();
    let mut b = Vec::new();
    for (i, m) in msgs.iter().enumerate() {
        let mut m = m.clone();
        m.header.follow_on = i + 1 < msgs.len();
        m.emit(&mut b).unwrap();
    }
    let back = Message::parse_datagram(&b).unwrap();
    assert_eq!(back.len(), msgs.len());
    // FO set on the last message, or bytes after a message without FO: refused.
    let one = msgs[0].to_bytes().unwrap();
    let mut two = one.clone();
    two.extend_from_slice(&one);
    assert_eq!(Message::parse_datagram(&two), Err(Error::InvalidLength));
    let mut fo = msgs[0].clone();
    fo.header.follow_on = true;
    assert_eq!(
        Message::parse_datagram(&fo.to_bytes().unwrap()),
        Err(Error::InvalidLength)
    );
}

#[test]
fn single_byte_mutations_never_panic_and_round_trip() {
    for m in samples::messages() {
        let b = m.to_bytes().unwrap();
        for i in 0..b.len() {
            for x in [0x00, 0x01, 0x7f, 0x80, 0xff] {
                let mut c = b.clone();
                c[i] = x;
                if let Ok(p) = Message::parse_bytes(&c) {
                    let again = p.to_bytes().expect("what parses emits");
                    assert_eq!(Message::parse_bytes(&again).unwrap(), p);
                }
            }
        }
    }
}

#[test]
fn header_fields() {
    let m = samples::messages();
    let p = m.iter().find(|m| m.header.priority.is_some()).unwrap();
    let b = p.to_bytes().unwrap();
    assert_eq!(b[0], 0x23);
    assert_eq!(b[15] >> 4, 5);
    let (h, len) = Header::parse(&b).unwrap();
    assert_eq!(len, b.len());
    assert_eq!(h.priority, Some(5));
    assert_eq!(h.len(), 16);
}

proptest! {
    #[test]
    fn arbitrary_bytes_never_panic(b in proptest::collection::vec(any::<u8>(), 0..600)) {
        if let Ok(m) = Message::parse_bytes(&b) {
            let again = m.to_bytes().unwrap();
            prop_assert_eq!(Message::parse_bytes(&again).unwrap(), m);
        }
        let _ = Message::parse_datagram(&b);
        let _ = ie::parse_ies(&b, 0);
    }

    #[test]
    fn mutated_samples_never_panic(
        which in 0usize..21,
        edits in proptest::collection::vec((any::<u16>(), any::<u8>()), 1..8),
        cut in any::<u16>(),
    ) {
        let msgs = samples::messages();
        let mut b = msgs[which % msgs.len()].to_bytes().unwrap();
        for (at, v) in edits {
            let i = usize::from(at) % b.len();
            b[i] = v;
        }
        let n = usize::from(cut) % (b.len() + 1);
        for s in [&b[..], &b[..n]] {
            if let Ok(m) = Message::parse_bytes(s) {
                let again = m.to_bytes().unwrap();
                prop_assert_eq!(Message::parse_bytes(&again).unwrap(), m);
            }
        }
    }
}

/// The BBF CGNAT IEs (a disaggregated BNG's port-block binding) of a bad length are
/// refused as incorrect with their own type as the Offending IE (Cause 69), wherever
/// they sit: a NAT Outside Address shorter than an IPv4 address, a NAT External Port
/// Range that is empty or not whole (start, end) pairs, an empty NAT Port Block or
/// BBF Apply Action.
#[test]
fn bbf_nat_ies_of_a_bad_length_are_refused() {
    let e = Some(bbf::ENTERPRISE_ID);
    for (t, v) in [
        (bbf::NAT_OUTSIDE_ADDRESS, &[203, 0, 113][..]),
        (bbf::NAT_OUTSIDE_ADDRESS, &[][..]),
        (bbf::NAT_EXTERNAL_PORT_RANGE, &[][..]),
        (bbf::NAT_EXTERNAL_PORT_RANGE, &[4, 0, 7, 255, 9][..]),
        (bbf::NAT_EXTERNAL_PORT_RANGE, &[4, 0][..]),
        (bbf::NAT_PORT_BLOCK, &[][..]),
        (bbf::APPLY_ACTION, &[][..]),
    ] {
        assert_eq!(
            Ie::decode(t, e, v, 0),
            Err(Error::BadIe { ie: t }),
            "{t} {v:?}"
        );
        // Inside the core FAR's Forwarding Parameters of a message: Cause 69.
        let mut raw = t.to_be_bytes().to_vec();
        raw.extend_from_slice(&((v.len() + 2) as u16).to_be_bytes());
        raw.extend_from_slice(&bbf::ENTERPRISE_ID.to_be_bytes());
        raw.extend_from_slice(v);
        let mut fp = ie_bytes(ty::DESTINATION_INTERFACE, &[1]);
        fp.extend_from_slice(&raw);
        let mut far = ie_bytes(ty::FAR_ID, &[0, 0, 0, 1]);
        far.extend_from_slice(&ie_bytes(ty::APPLY_ACTION, &[2]));
        far.extend_from_slice(&ie_bytes(ty::FORWARDING_PARAMETERS, &fp));
        let err = pfcp::ie::parse_ies(&ie_bytes(ty::CREATE_FAR, &far), 0).unwrap_err();
        assert_eq!(err, Error::BadIe { ie: t });
        assert_eq!(err.cause(), pfcp::ie::cause::MANDATORY_IE_INCORRECT);
    }
    // The good ones round trip, several ranges included.
    for i in [
        Ie::BbfNatOutsideAddress(std::net::Ipv4Addr::new(203, 0, 113, 5)),
        Ie::BbfNatExternalPortRange(vec![(1024, 2047), (4096, 5119)]),
        Ie::BbfNatPortBlock(b"cgnat".to_vec()),
        Ie::BbfApplyAction(Flags::new(&[bbf::apply_action::NAT])),
    ] {
        let mut b = Vec::new();
        i.emit(&mut b).unwrap();
        assert_eq!(pfcp::ie::parse_ies(&b, 0).unwrap(), vec![i]);
    }
}
