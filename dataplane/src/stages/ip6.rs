//! IPv6 forwarding (RFC 8200 §3, RFC 4443, RFC 4861) as four stages:
//!
//! * `ip6-input`: version, payload length against the frame (padding trimmed), then
//!   the martian filter, one drop reason per kind, decided on the first address byte
//!   or a precomputed set of our addresses (no per-packet allocation):
//!   - multicast source (RFC 4291 §2.7: "must not be used as source");
//!   - unspecified source `::` (RFC 4291 §2.5.2: never forwarded) unless the packet
//!     is a Neighbor Solicitation (duplicate address detection, RFC 4861 §7.2.2);
//!   - loopback `::1` as source or destination (RFC 4291 §2.5.3: never sent outside
//!     a node, dropped when received on an interface);
//!   - unspecified destination `::` (RFC 4291 §2.5.2);
//!   - IPv4-mapped addresses `::ffff:0:0/96` as source or destination (RFC 4291
//!     §2.5.5.2; not forwardable in the RFC 6890 registry);
//!   - one of our own global addresses as source (built with [`Ip6Input::for_l3`];
//!     link-local addresses are per link and not in the set).
//! * `ip6-nd`: Neighbor Discovery for our addresses (RFC 4861 §7.2): a Neighbor
//!   Solicitation for one of the receiving interface's addresses is answered with a
//!   solicited Neighbor Advertisement (in place) and its source link-layer address is
//!   learned; advertisements refresh or complete the neighbour table. Only messages
//!   with hop limit 255 and a valid checksum count (§7.1.1, §7.1.2).
//! * `ip6-lookup`: longest-prefix match in the IPv6 FIB (batched); multicast
//!   destinations are not routed; a packet with a link-local (fe80::/10) source or
//!   destination that is not for us is dropped (RFC 4291 §2.5.6: "Routers must not
//!   forward any packets with Link-Local source or destination addresses to other
//!   links"); no route sends ICMPv6 Destination Unreachable (code 0); echo requests
//!   to our addresses are answered; other local traffic is punted.
//! * `ip6-rewrite`: hop-limit decrement with Time Exceeded (code 0), MTU with Packet
//!   Too Big (RFC 8201), next-hop resolution (a Neighbor Solicitation to the
//!   solicited-node multicast address is sent while pending) and the Ethernet rewrite.

use super::classify::class;
use super::ip4::RateLimit;
use super::l3::{AdjKind, L3};
use super::neigh::{key_v6, Resolve};
use crate::batch::{Batch, Next, Out, BATCH_SIZE};
use crate::buf::Pkt;
use crate::lpm::NextHop;
use crate::proto::ethernet::{MacAddr, HEADER_LEN};
use crate::proto::icmpv6::{self, msg, na_flags, ErrorKind, NdiscRepr};
use crate::proto::{ipv6, EtherType, IpProtocol};
use crate::stage::{NodeStats, Stage};
use alloc::sync::Arc;
use core::net::Ipv6Addr;

fn addr_at(d: &[u8], off: usize) -> Option<Ipv6Addr> {
    let b: [u8; 16] = d.get(off..off + 16)?.try_into().ok()?;
    Some(Ipv6Addr::from(b))
}

/// Builds an ICMPv6 error about `offending` and queues it back on the ingress port.
pub(crate) fn send_icmp6_error(
    out: &mut Out,
    l3: &L3,
    offending: &Pkt,
    kind: ErrorKind,
    limit: &mut RateLimit,
) -> bool {
    let port = offending.meta.port;
    let Some(ifc) = l3.iface(port) else {
        return false;
    };
    let Some(src) = ifc
        .v6
        .iter()
        .find(|n| !is_link_local(&n.addr))
        .or(ifc.v6.first())
        .map(|n| n.addr)
    else {
        return false;
    };
    let d = offending.data();
    let (Some(eth_src), Some(ip)) = (d.get(6..12), d.get(offending.meta.l3 as usize..)) else {
        return false;
    };
    if !limit.take(out.now_ns) {
        return false;
    }
    let Some(mut e) = out.cache.alloc() else {
        return false;
    };
    let ok = (|| {
        let buf = e.append(HEADER_LEN + icmpv6::MAX_ERROR_LEN).ok()?;
        buf.get_mut(0..6)?.copy_from_slice(eth_src);
        buf.get_mut(6..12)?.copy_from_slice(&ifc.mac);
        buf.get_mut(12..14)?
            .copy_from_slice(&EtherType::IPV6.0.to_be_bytes());
        let n = icmpv6::build_error(buf.get_mut(HEADER_LEN..)?, ip, &src, 64, kind).ok()?;
        Some(HEADER_LEN + n)
    })();
    match ok {
        Some(len) if e.set_len(len).is_ok() => out.emit(port, e),
        _ => {
            out.cache.free(e);
            false
        }
    }
}

fn is_link_local(a: &Ipv6Addr) -> bool {
    a.segments()[0] & 0xffc0 == 0xfe80
}

const IN_TRUNC: u16 = 0;
const IN_VERSION: u16 = 1;
const IN_LEN: u16 = 2;
const IN_SRC_MCAST: u16 = 3;
const IN_SRC_UNSPEC: u16 = 4;
const IN_SRC_LOOPBACK: u16 = 5;
const IN_SRC_MAPPED: u16 = 6;
const IN_SRC_OURS: u16 = 7;
const IN_DST_UNSPEC: u16 = 8;
const IN_DST_LOOPBACK: u16 = 9;
const IN_DST_MAPPED: u16 = 10;
static IN_ERRORS: &[&str] = &[
    "truncated IPv6 header",
    "not IPv6",
    "bad payload length",
    "martian source: multicast",
    "martian source: unspecified ::",
    "martian source: loopback ::1",
    "martian source: IPv4-mapped ::ffff:0:0/96",
    "martian source: one of our addresses",
    "martian destination: unspecified ::",
    "martian destination: loopback ::1",
    "martian destination: IPv4-mapped ::ffff:0:0/96",
];

/// A small set of IPv6 addresses with a one-word filter in front (see
/// [`super::ip4::AddrSet4`]).
#[derive(Clone, Debug, Default)]
pub struct AddrSet6 {
    filter: u64,
    addrs: alloc::vec::Vec<u128>,
}

impl AddrSet6 {
    #[inline(always)]
    fn bit(a: u128) -> u64 {
        let x = (a as u64) ^ ((a >> 64) as u64);
        1u64 << (x.wrapping_mul(0x9e37_79b9_7f4a_7c15) >> 58)
    }

    /// Adds an address (start-up only).
    pub fn insert(&mut self, a: Ipv6Addr) {
        let a = u128::from(a);
        if !self.addrs.contains(&a) {
            self.addrs.push(a);
            self.filter |= Self::bit(a);
        }
    }

    /// True when `a` is in the set.
    #[inline(always)]
    pub fn contains(&self, a: u128) -> bool {
        self.filter & Self::bit(a) != 0 && self.addrs.contains(&a)
    }

    pub fn len(&self) -> usize {
        self.addrs.len()
    }

    pub fn is_empty(&self) -> bool {
        self.addrs.is_empty()
    }
}

/// `ip6-input`: header validation and the martian filter (RFC 4291).
#[derive(Clone, Debug, Default)]
pub struct Ip6Input {
    /// Our own addresses: packets arriving with one of them as source are dropped.
    pub own: AddrSet6,
}

impl Ip6Input {
    /// An `ip6-input` that also knows the router's own addresses. Link-local ones
    /// are left out: they are unique per link only (RFC 4291 §2.5.6), so a neighbour
    /// on another link may rightly use the link-local address we use here.
    pub fn for_l3(l3: &L3) -> Self {
        let mut own = AddrSet6::default();
        for ifc in &l3.ifaces {
            for n in ifc.v6.iter().filter(|n| !is_link_local(&n.addr)) {
                own.insert(n.addr);
            }
        }
        Ip6Input { own }
    }
}

/// `::`, `::1`, `::ffff:0:0/96` or another address (by its first 12 bytes and the
/// last 4), for the martian checks: only called when the first byte is 0.
#[inline(always)]
fn special6(a: &[u8]) -> Option<u8> {
    let (Some(head), Some(tail)) = (a.get(..10), a.get(10..16)) else {
        return None;
    };
    if head.iter().any(|&b| b != 0) {
        return None;
    }
    match tail {
        [0, 0, 0, 0, 0, 0] => Some(0),
        [0, 0, 0, 0, 0, 1] => Some(1),
        [0xff, 0xff, ..] => Some(2),
        _ => None,
    }
}

/// The martian verdict on an IPv6 header, or `None`.
#[inline(always)]
fn martian6(ip: &[u8], own: &AddrSet6) -> Option<u16> {
    let (Some(src), Some(dst)) = (ip.get(8..24), ip.get(24..40)) else {
        return Some(IN_TRUNC);
    };
    match src.first() {
        Some(0xff) => return Some(IN_SRC_MCAST),
        Some(0) => match special6(src) {
            Some(0) => {
                // DAD probes come from :: (RFC 4861 §7.2.2); ip6-nd checks them.
                let ns = ip.get(6) == Some(&IpProtocol::ICMPV6.0)
                    && ip.get(ipv6::HEADER_LEN) == Some(&msg::NEIGHBOR_SOLICIT);
                if !ns {
                    return Some(IN_SRC_UNSPEC);
                }
            }
            Some(1) => return Some(IN_SRC_LOOPBACK),
            Some(_) => return Some(IN_SRC_MAPPED),
            None => {}
        },
        _ => {}
    }
    if dst.first() == Some(&0) {
        match special6(dst) {
            Some(0) => return Some(IN_DST_UNSPEC),
            Some(1) => return Some(IN_DST_LOOPBACK),
            Some(_) => return Some(IN_DST_MAPPED),
            None => {}
        }
    }
    if !own.is_empty() {
        let b: [u8; 16] = src.try_into().ok()?;
        if own.contains(u128::from_be_bytes(b)) {
            return Some(IN_SRC_OURS);
        }
    }
    None
}

impl Stage for Ip6Input {
    fn name(&self) -> &'static str {
        "ip6-input"
    }

    fn errors(&self) -> &'static [&'static str] {
        IN_ERRORS
    }

    fn process(&mut self, batch: &mut Batch, node: &mut NodeStats, out: &mut Out) {
        if !batch.iter().any(|p| p.meta.class == class::IPV6) {
            return;
        }
        let own = &self.own;
        batch.dispatch(node, out, |pkt, _| {
            if pkt.meta.class != class::IPV6 {
                return Next::Keep;
            }
            let l3 = pkt.meta.l3 as usize;
            let flen = pkt.len();
            let Some(ip) = pkt.data().get(l3..) else {
                return Next::Drop(IN_TRUNC);
            };
            if ip.len() < ipv6::HEADER_LEN {
                return Next::Drop(IN_TRUNC);
            }
            if ip[0] >> 4 != 6 {
                return Next::Drop(IN_VERSION);
            }
            let plen = usize::from(u16::from_be_bytes([ip[4], ip[5]]));
            if ipv6::HEADER_LEN + plen > ip.len() {
                return Next::Drop(IN_LEN);
            }
            if let Some(r) = martian6(ip, own) {
                return Next::Drop(r);
            }
            let want = l3 + ipv6::HEADER_LEN + plen;
            pkt.meta.l4 = (l3 + ipv6::HEADER_LEN) as u16;
            if want < flen {
                let _ = pkt.trim(flen - want);
            }
            Next::Keep
        });
    }
}

const ND_BAD: u16 = 0;
const ND_NOT_US: u16 = 1;
const ND_ADVERT: u16 = 2;
const ND_FULL: u16 = 3;
const ND_OTHER: u16 = 4;
static ND_ERRORS: &[&str] = &[
    "invalid ND message",
    "NS target not ours",
    "NA consumed",
    "neighbour table full",
    "ND message not handled (RS/RA/redirect)",
];

/// `ip6-nd`: Neighbor Discovery responder/learner.
pub struct Ip6Nd {
    l3: Arc<L3>,
}

impl Ip6Nd {
    pub fn new(l3: Arc<L3>) -> Self {
        Ip6Nd { l3 }
    }
}

/// True for ND messages (ICMPv6 types 133..=137 directly after the fixed header).
fn is_nd(pkt: &Pkt) -> bool {
    let l3 = pkt.meta.l3 as usize;
    let d = pkt.data();
    d.get(l3 + 6) == Some(&IpProtocol::ICMPV6.0)
        && matches!(d.get(l3 + ipv6::HEADER_LEN), Some(t) if (133..=137).contains(t))
}

impl Stage for Ip6Nd {
    fn name(&self) -> &'static str {
        "ip6-nd"
    }

    fn errors(&self) -> &'static [&'static str] {
        ND_ERRORS
    }

    fn process(&mut self, batch: &mut Batch, node: &mut NodeStats, out: &mut Out) {
        if !batch
            .iter()
            .any(|p| p.meta.class == class::IPV6 && is_nd(p))
        {
            return;
        }
        let l3 = &*self.l3;
        batch.dispatch(node, out, |pkt, out| {
            if pkt.meta.class != class::IPV6 || !is_nd(pkt) {
                return Next::Keep;
            }
            let now = out.now_ns;
            let port = pkt.meta.port;
            let off = pkt.meta.l3 as usize;
            let Some(ifc) = l3.iface(port) else {
                return Next::Drop(ND_BAD);
            };
            let our_mac = ifc.mac;
            let d = pkt.data();
            let (Some(src), Some(dst)) = (addr_at(d, off + 8), addr_at(d, off + 24)) else {
                return Next::Drop(ND_BAD);
            };
            if d.get(off + 7) != Some(&icmpv6::ND_HOP_LIMIT) {
                return Next::Drop(ND_BAD);
            }
            let Some(body) = d.get(off + ipv6::HEADER_LEN..) else {
                return Next::Drop(ND_BAD);
            };
            let Ok(view) = icmpv6::Packet::new_checked(body) else {
                return Next::Drop(ND_BAD);
            };
            let Ok(icmpv6::Repr::Ndisc(nd)) = icmpv6::Repr::parse_checked(&view, &src, &dst) else {
                return Next::Drop(ND_BAD);
            };
            match nd {
                NdiscRepr::NeighborSolicit {
                    target_addr,
                    lladdr,
                } => {
                    if !ifc.has_v6(&target_addr) {
                        return Next::Drop(ND_NOT_US);
                    }
                    let unspecified = src.is_unspecified();
                    if let Some(m) = lladdr {
                        if unspecified || !l3.neigh.learn(key_v6(&src), m.0, now) {
                            return Next::Drop(ND_FULL);
                        }
                    }
                    // DAD probes (unspecified source) answer to all-nodes.
                    let (reply_dst, dst_mac) = if unspecified {
                        (
                            Ipv6Addr::new(0xff02, 0, 0, 0, 0, 0, 0, 1),
                            [0x33, 0x33, 0, 0, 0, 1],
                        )
                    } else {
                        let mut m = [0u8; 6];
                        if let Some(s) = pkt.data().get(6..12) {
                            m.copy_from_slice(s);
                        }
                        (src, m)
                    };
                    let flags = na_flags::ROUTER
                        | if unspecified { 0 } else { na_flags::SOLICITED }
                        | na_flags::OVERRIDE;
                    let na = icmpv6::Repr::Ndisc(NdiscRepr::NeighborAdvert {
                        flags,
                        target_addr,
                        lladdr: Some(MacAddr(our_mac)),
                    });
                    let ip = ipv6::Repr {
                        src_addr: target_addr,
                        dst_addr: reply_dst,
                        next_header: IpProtocol::ICMPV6,
                        payload_len: na.buffer_len(),
                        hop_limit: icmpv6::ND_HOP_LIMIT,
                        traffic_class: 0,
                        flow_label: 0,
                    };
                    pkt.reset();
                    pkt.meta.port = port;
                    let total = HEADER_LEN + ipv6::HEADER_LEN + na.buffer_len();
                    let Ok(b) = pkt.append(total) else {
                        return Next::Drop(ND_BAD);
                    };
                    b[0..6].copy_from_slice(&dst_mac);
                    b[6..12].copy_from_slice(&our_mac);
                    b[12..14].copy_from_slice(&EtherType::IPV6.0.to_be_bytes());
                    let (hdr, rest) = b[HEADER_LEN..].split_at_mut(ipv6::HEADER_LEN);
                    if ip.emit(&mut ipv6::Packet::new_unchecked(hdr)).is_err() {
                        return Next::Drop(ND_BAD);
                    }
                    let mut p = icmpv6::Packet::new_unchecked(rest);
                    if na.emit(&mut p).is_err() {
                        return Next::Drop(ND_BAD);
                    }
                    p.fill_checksum(&target_addr, &reply_dst);
                    Next::Port(port)
                }
                NdiscRepr::NeighborAdvert {
                    target_addr,
                    lladdr,
                    ..
                } => {
                    if let Some(m) = lladdr {
                        // complete or refresh an entry we track
                        l3.neigh.refresh(key_v6(&target_addr), m.0, now);
                    }
                    Next::Drop(ND_ADVERT)
                }
                _ => Next::Drop(ND_OTHER),
            }
        });
    }
}

const LK_NO_ROUTE: u16 = 0;
const LK_BLACKHOLE: u16 = 1;
const LK_MCAST: u16 = 2;
const LK_LL_SRC: u16 = 3;
const LK_LL_DST: u16 = 4;
static LK_ERRORS: &[&str] = &[
    "no route",
    "blackhole route",
    "multicast not routed",
    "link-local source not forwarded",
    "link-local destination not forwarded",
];

/// `ip6-lookup`.
pub struct Ip6Lookup {
    l3: Arc<L3>,
    dst: [u128; BATCH_SIZE],
    res: [Option<NextHop>; BATCH_SIZE],
    pub icmp_limit: RateLimit,
    pub icmp_sent: u64,
    pub echo_replies: u64,
}

impl Ip6Lookup {
    pub fn new(l3: Arc<L3>) -> Self {
        Ip6Lookup {
            l3,
            dst: [0; BATCH_SIZE],
            res: [None; BATCH_SIZE],
            icmp_limit: RateLimit::new(1000, 100),
            icmp_sent: 0,
            echo_replies: 0,
        }
    }
}

/// Answers an ICMPv6 echo request to one of our addresses in place.
fn echo_reply6(pkt: &mut Pkt) -> bool {
    let off = pkt.meta.l3 as usize;
    let d = pkt.data_mut();
    let (Some(src), Some(dst)) = (addr_at(d, off + 8), addr_at(d, off + 24)) else {
        return false;
    };
    if d.get(off + 6) != Some(&IpProtocol::ICMPV6.0) {
        return false;
    }
    {
        let Some(body) = d.get_mut(off + ipv6::HEADER_LEN..) else {
            return false;
        };
        let Ok(mut p) = icmpv6::Packet::new_checked(body) else {
            return false;
        };
        if !p.verify_checksum(&src, &dst) || p.msg_type() != msg::ECHO_REQUEST {
            return false;
        }
        p.set_msg_type(msg::ECHO_REPLY);
        p.fill_checksum(&dst, &src);
    }
    if let Some(ip) = d.get_mut(off..) {
        let mut v = ipv6::Packet::new_unchecked(ip);
        v.set_src_addr(&dst);
        v.set_dst_addr(&src);
        v.set_hop_limit(64);
    }
    let mut m = [0u8; 12];
    if let Some(e) = d.get(0..12) {
        m.copy_from_slice(e);
    }
    if let Some(e) = d.get_mut(0..12) {
        e[0..6].copy_from_slice(&m[6..12]);
        e[6..12].copy_from_slice(&m[0..6]);
    }
    true
}

impl Stage for Ip6Lookup {
    fn name(&self) -> &'static str {
        "ip6-lookup"
    }

    fn errors(&self) -> &'static [&'static str] {
        LK_ERRORS
    }

    fn process(&mut self, batch: &mut Batch, node: &mut NodeStats, out: &mut Out) {
        if !batch.iter().any(|p| p.meta.class == class::IPV6) {
            return;
        }
        let n = batch.len();
        for (i, p) in batch.iter().enumerate() {
            self.dst[i] = match addr_at(p.data(), p.meta.l3 as usize + 24) {
                Some(a) if p.meta.class == class::IPV6 => u128::from(a),
                _ => 0,
            };
        }
        let (dst, res) = (&self.dst[..n], &mut self.res[..n]);
        self.l3.fib6.lookup_bulk(dst, res);
        let l3 = &*self.l3;
        let (res, dsts) = (&self.res, &self.dst);
        let limit = &mut self.icmp_limit;
        let sent = &mut self.icmp_sent;
        let echoes = &mut self.echo_replies;
        let mut i = 0usize;
        batch.dispatch(node, out, |pkt, out| {
            let r = res.get(i).copied().flatten();
            let dst = dsts.get(i).copied().unwrap_or(0);
            i += 1;
            if pkt.meta.class != class::IPV6 {
                return Next::Keep;
            }
            if dst >> 120 == 0xff {
                // multicast: ours to consume (ND was handled before), never routed
                return Next::Drop(LK_MCAST);
            }
            let Some(nh) = r else {
                let k = ErrorKind::DstUnreachable {
                    code: icmpv6::unreachable::NO_ROUTE,
                };
                if send_icmp6_error(out, l3, pkt, k, limit) {
                    *sent += 1;
                }
                return Next::Drop(LK_NO_ROUTE);
            };
            pkt.meta.nh = nh;
            let kind = l3.adj(nh).map(|a| a.kind);
            if kind != Some(AdjKind::Local) {
                // RFC 4291 §2.5.6: link-local traffic never leaves its link.
                if dst >> 118 == 0xfe80 >> 6 {
                    return Next::Drop(LK_LL_DST);
                }
                let src = pkt
                    .data()
                    .get(pkt.meta.l3 as usize + 8..pkt.meta.l3 as usize + 10);
                if matches!(src, Some(&[0xfe, b]) if b & 0xc0 == 0x80) {
                    return Next::Drop(LK_LL_SRC);
                }
            }
            match kind {
                Some(AdjKind::Local) => {
                    if echo_reply6(pkt) {
                        *echoes += 1;
                        Next::Port(pkt.meta.port)
                    } else {
                        Next::Punt
                    }
                }
                Some(AdjKind::Drop) => Next::Drop(LK_BLACKHOLE),
                Some(_) => Next::Keep,
                None => Next::Drop(LK_NO_ROUTE),
            }
        });
    }
}

const RW_HOPS: u16 = 0;
const RW_PENDING: u16 = 1;
const RW_FULL: u16 = 2;
const RW_MTU: u16 = 3;
const RW_BAD_ADJ: u16 = 4;
const RW_NO_HEADROOM: u16 = 5;
static RW_ERRORS: &[&str] = &[
    "hop limit expired",
    "ND pending",
    "neighbour table full",
    "exceeds MTU",
    "bad adjacency",
    "no room for Ethernet header",
];

/// `ip6-rewrite`.
pub struct Ip6Rewrite {
    l3: Arc<L3>,
    pub icmp_limit: RateLimit,
    pub icmp_sent: u64,
    pub solicitations: u64,
}

impl Ip6Rewrite {
    pub fn new(l3: Arc<L3>) -> Self {
        Ip6Rewrite {
            l3,
            icmp_limit: RateLimit::new(1000, 100),
            icmp_sent: 0,
            solicitations: 0,
        }
    }
}

/// Sends a Neighbor Solicitation for `target` on `port` (RFC 4861 §7.2.2).
fn send_ns(out: &mut Out, l3: &L3, port: u16, target: Ipv6Addr) -> bool {
    let Some(ifc) = l3.iface(port) else {
        return false;
    };
    let Some(src) = ifc.v6_source() else {
        return false;
    };
    let Some(mut p) = out.cache.alloc() else {
        return false;
    };
    let dst = icmpv6::solicited_node(&target);
    let ns = icmpv6::Repr::Ndisc(NdiscRepr::NeighborSolicit {
        target_addr: target,
        lladdr: Some(MacAddr(ifc.mac)),
    });
    let ip = ipv6::Repr {
        src_addr: src,
        dst_addr: dst,
        next_header: IpProtocol::ICMPV6,
        payload_len: ns.buffer_len(),
        hop_limit: icmpv6::ND_HOP_LIMIT,
        traffic_class: 0,
        flow_label: 0,
    };
    let total = HEADER_LEN + ipv6::HEADER_LEN + ns.buffer_len();
    let ok = (|| {
        let b = p.append(total).ok()?;
        b.get_mut(0..6)?
            .copy_from_slice(&MacAddr::ipv6_multicast(&dst).0);
        b.get_mut(6..12)?.copy_from_slice(&ifc.mac);
        b.get_mut(12..14)?
            .copy_from_slice(&EtherType::IPV6.0.to_be_bytes());
        let (hdr, rest) = b.get_mut(HEADER_LEN..)?.split_at_mut(ipv6::HEADER_LEN);
        ip.emit(&mut ipv6::Packet::new_unchecked(hdr)).ok()?;
        let mut v = icmpv6::Packet::new_unchecked(rest);
        ns.emit(&mut v).ok()?;
        v.fill_checksum(&src, &dst);
        Some(())
    })();
    if ok.is_none() {
        out.cache.free(p);
        return false;
    }
    out.emit(port, p)
}

impl Stage for Ip6Rewrite {
    fn name(&self) -> &'static str {
        "ip6-rewrite"
    }

    fn errors(&self) -> &'static [&'static str] {
        RW_ERRORS
    }

    fn process(&mut self, batch: &mut Batch, node: &mut NodeStats, out: &mut Out) {
        if !batch.iter().any(|p| p.meta.class == class::IPV6) {
            return;
        }
        let l3 = &*self.l3;
        let limit = &mut self.icmp_limit;
        let sent = &mut self.icmp_sent;
        let nss = &mut self.solicitations;
        batch.dispatch(node, out, |pkt, out| {
            if pkt.meta.class != class::IPV6 {
                return Next::Keep;
            }
            let Some(adj) = l3.adj(pkt.meta.nh).copied() else {
                return Next::Drop(RW_BAD_ADJ);
            };
            let Some(ifc) = l3.iface(adj.port) else {
                return Next::Drop(RW_BAD_ADJ);
            };
            let off = pkt.meta.l3 as usize;
            let Some(ip) = pkt.data().get(off..) else {
                return Next::Drop(RW_BAD_ADJ);
            };
            let total = ip.len();
            let hops = ip.get(7).copied().unwrap_or(0);
            let Some(dst) = addr_at(ip, 24) else {
                return Next::Drop(RW_BAD_ADJ);
            };
            if hops <= 1 {
                let k = ErrorKind::TimeExceeded {
                    code: icmpv6::time_exceeded::HOP_LIMIT,
                };
                if send_icmp6_error(out, l3, pkt, k, limit) {
                    *sent += 1;
                }
                return Next::Drop(RW_HOPS);
            }
            if total > usize::from(ifc.mtu) {
                let k = ErrorKind::PktTooBig {
                    mtu: u32::from(ifc.mtu),
                };
                if send_icmp6_error(out, l3, pkt, k, limit) {
                    *sent += 1;
                }
                return Next::Drop(RW_MTU);
            }
            let target = match adj.kind {
                AdjKind::Glean => dst,
                AdjKind::Via6(gw) => gw,
                _ => return Next::Drop(RW_BAD_ADJ),
            };
            let mac = match l3.neigh.resolve(key_v6(&target), out.now_ns) {
                Resolve::Mac(m) => m,
                Resolve::Refresh(m) => {
                    if send_ns(out, l3, adj.port, target) {
                        *nss += 1;
                    }
                    m
                }
                Resolve::SendRequest => {
                    if send_ns(out, l3, adj.port, target) {
                        *nss += 1;
                    }
                    return Next::Drop(RW_PENDING);
                }
                Resolve::Pending => return Next::Drop(RW_PENDING),
                Resolve::Full => return Next::Drop(RW_FULL),
            };
            if let Some(h) = pkt.data_mut().get_mut(off + 7) {
                *h = hops - 1;
            }
            if off > HEADER_LEN {
                let _ = pkt.strip(off - HEADER_LEN);
            } else if off < HEADER_LEN && pkt.prepend(HEADER_LEN - off).is_err() {
                return Next::Drop(RW_NO_HEADROOM);
            }
            pkt.meta.l3 = HEADER_LEN as u16;
            if let Some(h) = pkt.data_mut().get_mut(0..HEADER_LEN) {
                h[0..6].copy_from_slice(&mac);
                h[6..12].copy_from_slice(&ifc.mac);
                h[12..14].copy_from_slice(&EtherType::IPV6.0.to_be_bytes());
            }
            Next::Port(adj.port)
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn hdr(src: &str, dst: &str, next: u8, first: u8) -> [u8; 41] {
        let mut h = [0u8; 41];
        h[0] = 0x60;
        h[6] = next;
        h[8..24].copy_from_slice(&src.parse::<Ipv6Addr>().unwrap().octets());
        h[24..40].copy_from_slice(&dst.parse::<Ipv6Addr>().unwrap().octets());
        h[40] = first;
        h
    }

    #[test]
    fn martian_reasons() {
        let mut own = AddrSet6::default();
        own.insert("2001:db8:1::1".parse().unwrap());
        let m = |s, d| martian6(&hdr(s, d, 17, 0), &own);
        let (host, far) = ("2001:db8:1::10", "2001:db8:99::1");
        assert_eq!(m(host, far), None);
        assert_eq!(m("ff02::1", far), Some(IN_SRC_MCAST));
        assert_eq!(m("::", far), Some(IN_SRC_UNSPEC));
        assert_eq!(m("::1", far), Some(IN_SRC_LOOPBACK));
        assert_eq!(m("::ffff:192.0.2.1", far), Some(IN_SRC_MAPPED));
        assert_eq!(m("2001:db8:1::1", far), Some(IN_SRC_OURS));
        assert_eq!(m(host, "::"), Some(IN_DST_UNSPEC));
        assert_eq!(m(host, "::1"), Some(IN_DST_LOOPBACK));
        assert_eq!(m(host, "::ffff:10.0.0.1"), Some(IN_DST_MAPPED));
        // IPv4-compatible (deprecated) and 64:ff9b::/96 are not filtered here
        assert_eq!(m(host, "::10.0.0.1"), None);
        assert_eq!(m(host, "64:ff9b::a00:1"), None);
        // DAD: a Neighbor Solicitation from :: passes to ip6-nd
        let ns = hdr("::", "ff02::1:ff00:1", 58, msg::NEIGHBOR_SOLICIT);
        assert_eq!(martian6(&ns, &own), None);
        let echo = hdr("::", far, 58, msg::ECHO_REQUEST);
        assert_eq!(martian6(&echo, &own), Some(IN_SRC_UNSPEC));
        assert!(usize::from(IN_DST_MAPPED) < IN_ERRORS.len());
    }
}
