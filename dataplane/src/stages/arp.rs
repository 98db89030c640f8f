//! `arp-input`: ARP responder and learner (RFC 826), plus building ARP requests for
//! the resolver in `ip4-rewrite`.
//!
//! For an Ethernet/IPv4 ARP packet whose target protocol address is one of the
//! receiving interface's addresses, the sender's binding is learned and a request is
//! answered in place (the same buffer becomes the reply and leaves on the same port).
//! For other ARP packets only an existing binding is refreshed (RFC 826's merge
//! step). Gratuitous ARP (sender = target) refreshes known bindings too.

use super::classify::class;
use super::l3::L3;
use super::neigh::key_v4;
use crate::batch::{Batch, Next, Out};
use crate::buf::Pkt;
use crate::proto::arp::{self, Operation};
use crate::proto::ethernet::HEADER_LEN;
use crate::proto::EtherType;
use crate::stage::{Counter, NodeStats, Stage};
use alloc::sync::Arc;
use core::net::Ipv4Addr;

crate::drop_reasons! {
    /// Why `arp-input` drops (RFC 826).
    pub enum ArpDrop {
        Malformed = ("malformed ARP", "not an Ethernet/IPv4 ARP packet, or too short for one"),
        NotUs = ("ARP not for us", "target protocol address is not one of the receiving interface's (binding only refreshed)"),
        Reply = ("ARP reply consumed", "a reply or other non-request: learned from, then consumed"),
        NoIface = ("no interface on port", "the receiving port has no L3 interface"),
        Full = ("neighbour table full", "the sender could not be learned: neighbour table full"),
        BadSender = ("bad sender address", "sender hardware address is multicast or sender protocol address broadcast/multicast"),
    }
}

/// The `arp-input` stage.
pub struct ArpInput {
    l3: Arc<L3>,
    /// Requests answered.
    pub replies: u64,
    /// Bindings learned or refreshed from requests and replies addressed to us.
    pub learned: u64,
    /// Where the next incremental neighbour-aging step starts.
    age_cursor: usize,
}

impl ArpInput {
    pub fn new(l3: Arc<L3>) -> Self {
        ArpInput {
            l3,
            replies: 0,
            learned: 0,
            age_cursor: 0,
        }
    }
}

fn ipv4_of(b: &[u8]) -> Option<Ipv4Addr> {
    let a: [u8; 4] = b.try_into().ok()?;
    Some(Ipv4Addr::from(a))
}

fn mac_of(b: &[u8]) -> Option<[u8; 6]> {
    b.try_into().ok()
}

impl ArpInput {
    /// The L3 state this stage forwards with.
    pub fn l3(&self) -> &Arc<L3> {
        &self.l3
    }

    /// Takes `fresh`'s L3 state (and what this stage derived from it) and leaves this
    /// stage's old one in `fresh`; the counters stay. Allocates nothing, so a worker
    /// can call it between bursts with a stage built off the data path (a route
    /// change at run time); `fresh` then carries the old state away to be freed.
    pub fn swap_l3(&mut self, fresh: &mut ArpInput) {
        core::mem::swap(&mut self.l3, &mut fresh.l3);
    }
}

impl Stage for ArpInput {
    fn as_any_mut(&mut self) -> Option<&mut dyn core::any::Any> {
        Some(self)
    }

    fn name(&self) -> &'static str {
        "arp-input"
    }

    fn errors(&self) -> &'static [&'static str] {
        ArpDrop::NAMES
    }

    fn error_help(&self) -> &'static [&'static str] {
        ArpDrop::HELP
    }

    fn process(&mut self, batch: &mut Batch, node: &mut NodeStats, out: &mut Out) {
        if !batch.iter().any(|p| p.meta.class == class::ARP) {
            return;
        }
        let l3 = &*self.l3;
        let (replies, learned) = (&mut self.replies, &mut self.learned);
        batch.dispatch(node, out, |pkt, out| {
            if pkt.meta.class != class::ARP {
                return Next::Keep;
            }
            let now = out.now_ns;
            let port = pkt.meta.port;
            let l3off = pkt.meta.l3 as usize;
            let Some(ifc) = l3.iface(port) else {
                return ArpDrop::NoIface.into();
            };
            let our_mac = ifc.mac;
            let Some(body) = pkt.data_mut().get_mut(l3off..) else {
                return ArpDrop::Malformed.into();
            };
            let Ok(mut a) = arp::Packet::new_checked(body) else {
                return ArpDrop::Malformed.into();
            };
            if a.hardware_type() != arp::HTYPE_ETHERNET
                || a.protocol_type() != EtherType::IPV4
                || a.hardware_len() != 6
                || a.protocol_len() != 4
            {
                return ArpDrop::Malformed.into();
            }
            let (Some(spa), Some(tpa), Some(sha)) = (
                ipv4_of(a.source_protocol_addr()),
                ipv4_of(a.target_protocol_addr()),
                mac_of(a.source_hardware_addr()),
            ) else {
                return ArpDrop::Malformed.into();
            };
            if sha[0] & 1 == 1 || spa.is_broadcast() || spa.is_multicast() {
                return ArpDrop::BadSender.into();
            }
            if !ifc.has_v4(tpa) {
                if !spa.is_unspecified() {
                    l3.neigh.refresh(key_v4(spa), sha, now);
                }
                return ArpDrop::NotUs.into();
            }
            if !spa.is_unspecified() {
                if !l3.neigh.learn(key_v4(spa), sha, now) {
                    return ArpDrop::Full.into();
                }
                *learned += 1;
            }
            if a.operation() != Operation::REQUEST {
                return ArpDrop::Reply.into();
            }
            // Turn the request into the reply in place.
            a.set_operation(Operation::REPLY);
            a.set_target_hardware_addr(&sha);
            a.set_target_protocol_addr(&spa.octets());
            a.set_source_hardware_addr(&our_mac);
            a.set_source_protocol_addr(&tpa.octets());
            let d = pkt.data_mut();
            if let Some(eth) = d.get_mut(0..12) {
                eth[0..6].copy_from_slice(&sha);
                eth[6..12].copy_from_slice(&our_mac);
            }
            *replies += 1;
            Next::Port(port)
        });
    }

    fn counters(&self, f: &mut dyn FnMut(Counter)) {
        f(Counter::total(
            "replies-sent",
            "ARP requests answered (RFC 826)",
            self.replies,
        ));
        f(Counter::total(
            "learned",
            "neighbour bindings learned from ARP addressed to us",
            self.learned,
        ));
    }

    fn tick(&mut self, out: &mut Out) {
        // one slice of the table per tick: a full sweep of a large table every
        // millisecond would cost the fast path cache lines for nothing
        let (_, next) = self.l3.neigh.age_step(out.now_ns, self.age_cursor);
        self.age_cursor = next;
    }
}

/// Fills `pkt` with a broadcast ARP request for `target` from (`mac`, `src`).
pub fn build_request(pkt: &mut Pkt, mac: [u8; 6], src: Ipv4Addr, target: Ipv4Addr) -> bool {
    pkt.reset();
    let Ok(d) = pkt.append(HEADER_LEN + arp::ETH_IPV4_LEN) else {
        return false;
    };
    d[0..6].copy_from_slice(&[0xff; 6]);
    d[6..12].copy_from_slice(&mac);
    d[12..14].copy_from_slice(&EtherType::ARP.0.to_be_bytes());
    let Some(body) = d.get_mut(HEADER_LEN..) else {
        return false;
    };
    let r = arp::Repr {
        operation: Operation::REQUEST,
        source_hardware_addr: crate::proto::ethernet::MacAddr(mac),
        source_protocol_addr: src,
        target_hardware_addr: crate::proto::ethernet::MacAddr::ZERO,
        target_protocol_addr: target,
    };
    r.emit(&mut arp::Packet::new_unchecked(body)).is_ok()
}
