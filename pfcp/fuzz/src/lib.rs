//! Shared drivers for the `pfcp` fuzz targets (`fuzz_targets/`): the PFCP message
//! parser with its parse → emit → parse round trip, a PFCP node fed hostile
//! datagrams, and the GTP-U parsers. Run them with `scripts/fuzz`. Any panic is a bug.

use pfcp::gtpu;
use pfcp::ie::{self, NodeId};
use pfcp::msg::Message;
use pfcp::node::{Config, Node};
use std::net::{Ipv4Addr, SocketAddr};

/// Parses `b` as one PFCP message, a bundle and a bare IE list; whatever parses must
/// emit and parse back to the same value and bytes.
pub fn exercise_pfcp_message(b: &[u8]) {
    if let Ok(m) = Message::parse_bytes(b) {
        let again = m.to_bytes().expect("a parsed message emits");
        let back = Message::parse_bytes(&again).expect("an emitted message parses");
        assert_eq!(back, m);
        assert_eq!(back.to_bytes().expect("emits again"), again);
    }
    if let Ok(ms) = Message::parse_datagram(b) {
        for m in ms {
            m.to_bytes().expect("a parsed bundled message emits");
        }
    }
    if let Ok(ies) = ie::parse_ies(b, 0) {
        let mut out = Vec::new();
        ie::emit_ies(&ies, &mut out).expect("parsed IEs emit");
        assert_eq!(ie::parse_ies(&out, 0).expect("emitted IEs parse"), ies);
        nat_ies(&ies);
    }
}

/// The BBF CGNAT IEs (TR-459 NAT binding) found anywhere in `ies`: each decoded one
/// holds what its encoding demands (an address, at least one whole port pair, a
/// non-empty pool name or flags) and emits alone to bytes that decode to itself.
fn nat_ies(ies: &[ie::Ie]) {
    use ie::{bbf, Ie};
    for i in ies {
        let nat = match i {
            Ie::BbfNatExternalPortRange(r) => {
                assert!(!r.is_empty(), "a decoded port range has a pair");
                true
            }
            Ie::BbfNatPortBlock(n) => {
                assert!(!n.is_empty(), "a decoded port block has a name");
                true
            }
            Ie::BbfApplyAction(f) => {
                assert!(!f.0.is_empty(), "decoded BBF Apply Action flags");
                true
            }
            Ie::BbfNatOutsideAddress(_) => true,
            Ie::Grouped(g) => {
                nat_ies(&g.ies);
                false
            }
            _ => false,
        };
        if nat {
            let mut b = Vec::new();
            i.emit(&mut b).expect("a decoded NAT IE emits");
            assert_eq!(i.key().1, Some(bbf::ENTERPRISE_ID));
            assert_eq!(
                ie::parse_ies(&b, 0).expect("an emitted NAT IE parses"),
                vec![i.clone()]
            );
        }
    }
}

/// Feeds `b` to a UP node, first unassociated, then associated with the sender (a
/// valid Association Setup Request first), split into datagrams at 0xff 0xff marks,
/// with timeouts in between; every answer the node sends must parse.
pub fn exercise_pfcp_node(b: &[u8]) {
    let peer = SocketAddr::new(Ipv4Addr::new(192, 0, 2, 1).into(), 8805);
    let mut n = Node::new(Config::new(NodeId::Ipv4(Ipv4Addr::new(192, 0, 2, 11)), 1));
    let setup = pfcp::samples::messages()
        .into_iter()
        .find(|m| m.msg_type() == pfcp::msg::MsgType::AssociationSetupRequest)
        .and_then(|m| m.to_bytes().ok())
        .unwrap_or_default();
    let mut now = 0u64;
    for (i, d) in b.split(|&x| x == 0xff).enumerate() {
        if i == 1 {
            n.handle(now, peer, &setup);
        }
        n.handle(now, peer, d);
        now += 1000;
        n.handle_timeout(now);
        while let Some(t) = n.poll_transmit() {
            Message::parse_bytes(&t.data).expect("the node sends what parses");
        }
        while n.poll_event().is_some() {}
    }
}

/// The GTP-U header parser with its round trip, the Error Indication IE parser and
/// the redirect decapsulation.
pub fn exercise_gtpu(b: &[u8]) {
    if let Ok((h, p)) = gtpu::Header::parse(b) {
        let mut again = Vec::new();
        h.emit(p, &mut again).expect("a parsed header emits");
        let (h2, p2) = gtpu::Header::parse(&again).expect("an emitted header parses");
        assert_eq!(h2, h);
        assert_eq!(p2, p);
        let _ = gtpu::parse_error_indication(p);
    }
    if let Ok(d) = gtpu::decap_frame(b) {
        let again = gtpu::encap_frame(&d.tunnel, d.seq, d.frame).expect("re-encapsulates");
        let d2 = gtpu::decap_frame(&again).expect("decapsulates");
        assert_eq!(d2.frame, d.frame);
        assert_eq!(d2.tunnel, d.tunnel);
    }
}
