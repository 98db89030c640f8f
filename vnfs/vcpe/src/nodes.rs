//! The vCPE's own graph nodes; everything else is the engine's (`ethernet-input`,
//! `arp-input`, `ip4-*`, `firewall`, `nat44`) or the IPsec crate's (`esp-*`).
//!
//! - `vcpe-lan-input`: the LAN port's entry node. DHCP requests (IPv4/UDP to port
//!   67, RFC 2131 §4.1; sent from 0.0.0.0 to the limited broadcast, which
//!   `ip4-input` drops as martians) are punted to the DHCP server; the rest goes on
//!   to `ethernet-input`.
//! - `vcpe-wan-guard`: between `ip4-input` and `esp-decrypt` (after
//!   `ethernet-input` has found the IPv4 header, VLAN tags or not). A clear IPv4
//!   packet from the WAN whose source lies in a tunnel's remote subnet is dropped
//!   (RFC 4301 §5.2: traffic a PROTECT policy covers must arrive protected; after
//!   `esp-decrypt` such sources are legitimate, so the check is made before it).
//! - `vcpe-select`: after the firewall, picks the path of each IPv4 packet: to a
//!   tunnel's remote subnet → `esp-encrypt` (not NATed); from one (decrypted) →
//!   `ip4-lookup`; from the LAN to the LAN, to our own addresses → `ip4-lookup`;
//!   other LAN traffic and WAN traffic to the WAN address → `nat44` (default
//!   successor; straight to `ip4-lookup` without NAT); from the WAN straight to a
//!   LAN address while NAT is on: dropped (`wan-to-lan`).
//! - `vcpe-steer` (several workers only): between `esp-decrypt` and `firewall`,
//!   hands each IPv4 packet to the worker that owns its LAN host (the source of
//!   LAN traffic, the destination of WAN traffic into the LAN subnet, e.g.
//!   decrypted tunnel traffic), by `nat44`'s own inside-address hash
//!   (`Nat44::inside_owner`): both directions of a LAN host's connections meet on
//!   one worker's firewall, and `nat44` finds LAN traffic already on its owner.
//!   WAN traffic to the WAN address passes on (`nat44` steers it by outside port).
//!
//! All of them read the headers through bounds-checked slices: a short or odd frame
//! is passed on (the next node counts it) or dropped with a reason, never a panic;
//! none allocates.

use alloc::vec::Vec;
use core::net::Ipv4Addr;
use dataplane::addr::Net4;
use dataplane::batch::{Batch, Next, Out};
use dataplane::buf::Pkt;
use dataplane::stage::{Counter, NodeStats, Stage};

/// An IPv4 subnet as (network, mask) for a two-instruction test.
#[derive(Clone, Copy, Debug)]
pub struct Subnet {
    net: u32,
    mask: u32,
}

impl Subnet {
    pub fn of(n: &Net4) -> Subnet {
        let mask = dataplane::addr::mask4(n.len);
        Subnet {
            net: u32::from(n.addr) & mask,
            mask,
        }
    }

    #[inline(always)]
    pub fn contains(&self, a: u32) -> bool {
        a & self.mask == self.net
    }
}

/// The IPv4 header of an untagged Ethernet frame (`None`: not IPv4 or too short).
#[inline(always)]
fn ip4_of(d: &[u8]) -> Option<&[u8]> {
    if d.get(12..14)? != [0x08, 0x00] {
        return None;
    }
    let ip = d.get(14..)?;
    if ip.len() < 20 || ip.first()? >> 4 != 4 {
        return None;
    }
    Some(ip)
}

#[inline(always)]
fn be32(b: &[u8], at: usize) -> Option<u32> {
    let s = b.get(at..at + 4)?;
    Some(u32::from_be_bytes([s[0], s[1], s[2], s[3]]))
}

/// Whether the frame is IPv4/UDP to the DHCP server port (first fragment or whole).
#[inline]
pub fn is_dhcp_request(d: &[u8]) -> bool {
    let Some(ip) = ip4_of(d) else {
        return false;
    };
    let ihl = usize::from(ip[0] & 0x0f) * 4;
    let frag = u16::from_be_bytes([ip[6], ip[7]]) & 0x1fff;
    ip[9] == 17
        && frag == 0
        && ip
            .get(ihl + 2..ihl + 4)
            .is_some_and(|p| p == dataplane::proto::dhcp4::SERVER_PORT.to_be_bytes())
}

/// `vcpe-lan-input`.
#[derive(Default)]
pub struct LanInput {
    punted: u64,
}

impl Stage for LanInput {
    fn name(&self) -> &'static str {
        "vcpe-lan-input"
    }

    fn process(&mut self, b: &mut Batch, node: &mut NodeStats, out: &mut Out) {
        let punted = &mut self.punted;
        b.dispatch(node, out, |pkt: &mut Pkt, _| {
            if is_dhcp_request(pkt.data()) {
                *punted += 1;
                Next::Punt
            } else {
                Next::Keep
            }
        });
    }

    fn counters(&self, f: &mut dyn FnMut(Counter)) {
        f(Counter::total(
            "dhcp_punted",
            "DHCP requests handed to the DHCP server",
            self.punted,
        ));
    }
}

dataplane::drop_reasons! {
    /// Why `vcpe-wan-guard` drops.
    pub enum WanDrop {
        ClearTunnelSource = ("clear-tunnel-source",
            "clear packet from the WAN with a source in a tunnel's remote subnet (RFC 4301 §5.2)"),
    }
}

/// `vcpe-wan-guard`.
pub struct WanGuard {
    wan_port: u16,
    remotes: Vec<Subnet>,
}

impl WanGuard {
    pub fn new(wan_port: u16, remotes: Vec<Subnet>) -> Self {
        WanGuard { wan_port, remotes }
    }
}

impl Stage for WanGuard {
    fn name(&self) -> &'static str {
        "vcpe-wan-guard"
    }

    fn errors(&self) -> &'static [&'static str] {
        WanDrop::NAMES
    }

    fn error_help(&self) -> &'static [&'static str] {
        WanDrop::HELP
    }

    fn process(&mut self, b: &mut Batch, node: &mut NodeStats, out: &mut Out) {
        if self.remotes.is_empty() {
            return;
        }
        let (remotes, wan) = (&self.remotes, self.wan_port);
        b.dispatch(node, out, |pkt: &mut Pkt, _| {
            if pkt.meta.port != wan {
                return Next::Keep;
            }
            let l3 = usize::from(pkt.meta.l3);
            match pkt.data().get(l3..).and_then(|ip| be32(ip, 12)) {
                Some(src) if remotes.iter().any(|r| r.contains(src)) => {
                    WanDrop::ClearTunnelSource.into()
                }
                _ => Next::Keep,
            }
        });
    }
}

/// `vcpe-steer` (see the module docs).
pub struct Steer {
    lan_port: u16,
    lan: Subnet,
    me: u16,
    workers: u16,
    handed: u64,
}

impl Steer {
    /// Worker `me` of `workers`, the LAN on `lan_port` with subnet `lan`.
    pub fn new(lan_port: u16, lan: &Net4, me: u16, workers: u16) -> Self {
        Steer {
            lan_port,
            lan: Subnet::of(lan),
            me,
            workers: workers.max(1),
            handed: 0,
        }
    }

    /// The worker owning the LAN host of `pkt`, if it is not this one.
    #[inline(always)]
    fn owner(&self, pkt: &Pkt) -> Option<u16> {
        let ip = pkt.data().get(usize::from(pkt.meta.l3)..)?;
        let host = if pkt.meta.port == self.lan_port {
            be32(ip, 12)?
        } else {
            let dst = be32(ip, 16)?;
            if !self.lan.contains(dst) {
                return None;
            }
            dst
        };
        let w = dataplane::stages::nat::Nat44::inside_owner(host, self.workers);
        (w != self.me).then_some(w)
    }
}

impl Stage for Steer {
    fn name(&self) -> &'static str {
        "vcpe-steer"
    }

    fn process(&mut self, b: &mut Batch, node: &mut NodeStats, out: &mut Out) {
        if self.workers < 2 {
            return;
        }
        let mut handed = 0;
        b.dispatch(node, out, |pkt: &mut Pkt, _| match self.owner(pkt) {
            Some(w) => {
                handed += 1;
                Next::Handoff(w)
            }
            None => Next::Keep,
        });
        self.handed += handed;
    }

    fn counters(&self, f: &mut dyn FnMut(Counter)) {
        f(Counter::total(
            "handed_off",
            "packets handed to the worker owning their LAN host",
            self.handed,
        ));
    }
}

dataplane::drop_reasons! {
    /// Why `vcpe-tunnel-check` drops.
    pub enum TunnelDrop {
        NoSa = ("no-sa",
            "packet for a tunnel that has no SA (IKE not up yet, or the SA was deleted): never sent in clear"),
    }
}

/// `vcpe-tunnel-check`: after `esp-encrypt`, every packet must be addressed to a
/// tunnel peer (ESP or ESP in UDP, RFC 4303 §2, RFC 3948), which config checks keep
/// outside the remote subnets; a packet still addressed into a remote subnet had no
/// SA and is dropped rather than leaking the LAN's addresses to the WAN.
pub struct TunnelCheck {
    remotes: Vec<Subnet>,
}

impl TunnelCheck {
    pub fn new(remotes: Vec<Subnet>) -> Self {
        TunnelCheck { remotes }
    }
}

impl Stage for TunnelCheck {
    fn name(&self) -> &'static str {
        "vcpe-tunnel-check"
    }

    fn errors(&self) -> &'static [&'static str] {
        TunnelDrop::NAMES
    }

    fn error_help(&self) -> &'static [&'static str] {
        TunnelDrop::HELP
    }

    fn process(&mut self, b: &mut Batch, node: &mut NodeStats, out: &mut Out) {
        let remotes = &self.remotes;
        b.dispatch(node, out, |pkt: &mut Pkt, _| {
            let l3 = usize::from(pkt.meta.l3);
            match pkt.data().get(l3..).and_then(|ip| be32(ip, 16)) {
                Some(dst) if !remotes.iter().any(|r| r.contains(dst)) => Next::Keep,
                _ => TunnelDrop::NoSa.into(),
            }
        });
    }
}

dataplane::drop_reasons! {
    /// Why `vcpe-select` drops.
    pub enum SelectDrop {
        WanToLan = ("wan-to-lan",
            "from the WAN straight to a LAN address while NAT is on (replies come back to the WAN address)"),
    }
}

/// `vcpe-select`'s next nodes.
pub const SELECT_NEXT: &[&str] = &["esp-encrypt", "ip4-lookup"];
const TO_TUNNEL: Next = Next::Node(0);
const ROUTE: Next = Next::Node(1);

/// `vcpe-select`.
pub struct Select {
    lan_port: u16,
    lan: Subnet,
    lan_addr: u32,
    wan_addr: u32,
    remotes: Vec<Subnet>,
    nat: bool,
    to_tunnel: u64,
    from_tunnel: u64,
    to_nat: u64,
    routed: u64,
}

impl Select {
    pub fn new(
        lan_port: u16,
        lan: &Net4,
        wan_addr: Ipv4Addr,
        remotes: Vec<Subnet>,
        nat: bool,
    ) -> Self {
        Select {
            lan_port,
            lan: Subnet::of(lan),
            lan_addr: u32::from(lan.addr),
            wan_addr: u32::from(wan_addr),
            remotes,
            nat,
            to_tunnel: 0,
            from_tunnel: 0,
            to_nat: 0,
            routed: 0,
        }
    }

    #[inline(always)]
    fn pick(&mut self, pkt: &Pkt) -> Next {
        let l3 = usize::from(pkt.meta.l3);
        let Some(ip) = pkt.data().get(l3..) else {
            self.routed += 1;
            return ROUTE;
        };
        let (Some(src), Some(dst)) = (be32(ip, 12), be32(ip, 16)) else {
            self.routed += 1;
            return ROUTE;
        };
        for r in &self.remotes {
            if r.contains(dst) {
                self.to_tunnel += 1;
                return TO_TUNNEL;
            }
        }
        for r in &self.remotes {
            if r.contains(src) {
                self.from_tunnel += 1;
                return ROUTE;
            }
        }
        let nat = if pkt.meta.port == self.lan_port {
            !(self.lan.contains(dst) || dst == self.lan_addr || dst == self.wan_addr)
        } else {
            if self.nat && self.lan.contains(dst) {
                return SelectDrop::WanToLan.into();
            }
            dst == self.wan_addr
        };
        if nat && self.nat {
            self.to_nat += 1;
            Next::Keep
        } else {
            self.routed += 1;
            ROUTE
        }
    }
}

impl Stage for Select {
    fn name(&self) -> &'static str {
        "vcpe-select"
    }

    fn next_nodes(&self) -> &'static [&'static str] {
        SELECT_NEXT
    }

    fn errors(&self) -> &'static [&'static str] {
        SelectDrop::NAMES
    }

    fn error_help(&self) -> &'static [&'static str] {
        SelectDrop::HELP
    }

    fn process(&mut self, b: &mut Batch, node: &mut NodeStats, out: &mut Out) {
        b.dispatch(node, out, |pkt: &mut Pkt, _| self.pick(pkt));
    }

    fn counters(&self, f: &mut dyn FnMut(Counter)) {
        f(Counter::total(
            "to_tunnel",
            "packets to a tunnel's remote subnet (ESP, not NATed)",
            self.to_tunnel,
        ));
        f(Counter::total(
            "from_tunnel",
            "decrypted packets from a tunnel's remote subnet",
            self.from_tunnel,
        ));
        f(Counter::total(
            "to_nat",
            "packets through NAT44 (LAN to WAN, WAN to the WAN address)",
            self.to_nat,
        ));
        f(Counter::total(
            "routed",
            "packets routed without NAT (LAN to LAN, to our addresses)",
            self.routed,
        ));
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use alloc::vec;

    #[test]
    fn dhcp_requests_are_recognised_and_short_frames_are_not() {
        let mut f = vec![0xff; 6];
        f.extend_from_slice(&[2, 0, 0, 0, 0, 1, 0x08, 0x00]);
        let mut ip = vec![0x45, 0, 0, 28, 0, 0, 0, 0, 64, 17, 0, 0];
        ip.extend_from_slice(&[0, 0, 0, 0, 255, 255, 255, 255]);
        ip.extend_from_slice(&[0, 68, 0, 67, 0, 8, 0, 0]);
        f.extend_from_slice(&ip);
        assert!(is_dhcp_request(&f));
        for n in 0..f.len() {
            assert!(!is_dhcp_request(&f[..n]) || n >= 14 + 24, "{n}");
        }
        let mut other = f.clone();
        other[14 + 23] = 53;
        assert!(!is_dhcp_request(&other));
        let mut frag = f.clone();
        frag[14 + 7] = 1;
        assert!(!is_dhcp_request(&frag));
    }

    #[test]
    fn subnets_match_by_mask() {
        let s = Subnet::of(&"192.168.2.0/24".parse().unwrap());
        assert!(s.contains(u32::from(Ipv4Addr::new(192, 168, 2, 77))));
        assert!(!s.contains(u32::from(Ipv4Addr::new(192, 168, 3, 1))));
    }
}
