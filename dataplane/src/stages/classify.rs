//! `ethernet-input`: the first stage. Walks the Ethernet header and up to two VLAN
//! tags (IEEE 802.1Q, 802.1ad QinQ), accepts frames addressed to the receiving port's
//! MAC, broadcast or multicast, and records the class, VLAN ids and L3 offset in the
//! packet's metadata for the stages after it.
//!
//! In a graph ([`Classify::with_next`]) it branches by class to the node that
//! handles it (VPP's `ethernet-input` next nodes): index 0 ARP, 1 IPv4, 2 IPv6,
//! 3 PPPoE discovery, 4 PPPoE session; a class without a next node is kept for the
//! default successor.

use crate::batch::{Batch, Next, Out};
use crate::proto::ethernet::walk_vlans;
use crate::proto::{Error, EtherType};
use crate::stage::{NodeStats, Stage};
use alloc::vec::Vec;

/// Packet classes stored in `Meta::class`.
pub mod class {
    pub const OTHER: u8 = 0;
    pub const IPV4: u8 = 1;
    pub const IPV6: u8 = 2;
    pub const ARP: u8 = 3;
    pub const PPPOE_DISC: u8 = 4;
    pub const PPPOE_SESS: u8 = 5;
}

crate::drop_reasons! {
    /// Why `ethernet-input` drops.
    pub enum ClassifyDrop {
        Trunc = ("truncated frame", "frame shorter than its Ethernet and VLAN headers"),
        Vlan = ("too many VLAN tags", "more VLAN tags than the engine walks (IEEE 802.1Q/802.1ad)"),
        NotUs = ("not for this MAC", "unicast destination MAC is not the receiving port's"),
        Ethertype = ("unknown ethertype", "ethertype not handled by this graph"),
    }
}

/// The `ethernet-input` stage.
pub struct Classify {
    /// MAC of each port (index = port number); frames to other unicast MACs drop.
    macs: Vec<[u8; 6]>,
    /// Deliver PPPoE (0x8863/0x8864) frames onward instead of dropping them.
    pub accept_pppoe: bool,
    /// Accept unicast frames to any MAC (promiscuous ports).
    pub promiscuous: bool,
    /// Next node per class (see the module docs); empty: every class is kept.
    next: &'static [&'static str],
}

/// `next_nodes` index of each class.
#[inline(always)]
fn branch(next_len: usize, c: u8) -> Next {
    let i = match c {
        class::ARP => 0,
        class::IPV4 => 1,
        class::IPV6 => 2,
        class::PPPOE_DISC => 3,
        class::PPPOE_SESS => 4,
        _ => return Next::Keep,
    };
    if i < next_len {
        Next::Node(i as u16)
    } else {
        Next::Keep
    }
}

impl Classify {
    /// A classifier for ports with these MACs.
    pub fn new(macs: Vec<[u8; 6]>) -> Self {
        Classify {
            macs,
            accept_pppoe: false,
            promiscuous: false,
            next: &[],
        }
    }

    /// Branches by class to these next nodes (index 0 ARP, 1 IPv4, 2 IPv6, 3 PPPoE
    /// discovery, 4 PPPoE session), e.g. `&["arp-input", "ip4-input", "ip6-input"]`.
    pub fn with_next(mut self, next: &'static [&'static str]) -> Self {
        self.next = next;
        self
    }
}

impl Stage for Classify {
    fn name(&self) -> &'static str {
        "ethernet-input"
    }

    fn errors(&self) -> &'static [&'static str] {
        ClassifyDrop::NAMES
    }

    fn error_help(&self) -> &'static [&'static str] {
        ClassifyDrop::HELP
    }

    fn next_nodes(&self) -> &'static [&'static str] {
        self.next
    }

    fn process(&mut self, batch: &mut Batch, node: &mut NodeStats, out: &mut Out) {
        let macs = &self.macs;
        let promisc = self.promiscuous;
        let pppoe = self.accept_pppoe;
        let nn = self.next.len();
        batch.dispatch(node, out, |pkt, _| {
            let d = pkt.data();
            let Some(dst) = d.get(0..6) else {
                return ClassifyDrop::Trunc.into();
            };
            let group = dst[0] & 1 == 1;
            if !group && !promisc {
                match macs.get(pkt.meta.port as usize) {
                    Some(m) if m[..] == *dst => {}
                    _ => return ClassifyDrop::NotUs.into(),
                }
            }
            // Fast path: untagged IPv4/IPv6.
            match d.get(12..14) {
                Some(&[0x08, 0x00]) => {
                    pkt.meta.class = class::IPV4;
                    pkt.meta.l3 = 14;
                    pkt.meta.vlans = 0;
                    pkt.meta.vlan = [0, 0];
                    return branch(nn, class::IPV4);
                }
                Some(&[0x86, 0xdd]) => {
                    pkt.meta.class = class::IPV6;
                    pkt.meta.l3 = 14;
                    pkt.meta.vlans = 0;
                    pkt.meta.vlan = [0, 0];
                    return branch(nn, class::IPV6);
                }
                _ => {}
            }
            let l2 = match walk_vlans(d) {
                Ok(l2) => l2,
                Err(Error::Unsupported) => return ClassifyDrop::Vlan.into(),
                Err(_) => return ClassifyDrop::Trunc.into(),
            };
            let c = match l2.ethertype {
                EtherType::IPV4 => class::IPV4,
                EtherType::IPV6 => class::IPV6,
                EtherType::ARP => class::ARP,
                EtherType::PPPOE_DISCOVERY if pppoe => class::PPPOE_DISC,
                EtherType::PPPOE_SESSION if pppoe => class::PPPOE_SESS,
                _ => return ClassifyDrop::Ethertype.into(),
            };
            pkt.meta.class = c;
            pkt.meta.l3 = l2.l3_offset as u16;
            let tags = l2.vlans.tags();
            pkt.meta.vlans = tags.len() as u8;
            pkt.meta.vlan = [
                tags.first().map_or(0, |t| t.vid),
                tags.get(1).map_or(0, |t| t.vid),
            ];
            branch(nn, c)
        });
    }
}
