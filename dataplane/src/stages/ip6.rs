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
use crate::stage::{Counter, NodeStats, Stage};
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

crate::drop_reasons! {
    /// Why `ip6-input` drops (RFC 8200, RFC 4291 §2.5).
    pub enum Ip6InputDrop {
        Trunc = ("truncated IPv6 header", "packet shorter than an IPv6 header"),
        Version = ("not IPv6", "version field is not 6"),
        Len = ("bad payload length", "payload length beyond the frame"),
        SrcMcast = ("martian source: multicast", "multicast source address (RFC 4291 §2.7)"),
        SrcUnspec = ("martian source: unspecified ::", "unspecified source :: is not forwarded (RFC 4291 §2.5.2)"),
        SrcLoopback = ("martian source: loopback ::1", "loopback source ::1 on the wire (RFC 4291 §2.5.3)"),
        SrcMapped = ("martian source: IPv4-mapped ::ffff:0:0/96", "IPv4-mapped source on the wire (RFC 4291 §2.5.5.2)"),
        SrcOurs = ("martian source: one of our addresses", "source address is one of this router's (spoofed or looped)"),
        DstUnspec = ("martian destination: unspecified ::", "unspecified destination :: (RFC 4291 §2.5.2)"),
        DstLoopback = ("martian destination: loopback ::1", "loopback destination ::1 on the wire (RFC 4291 §2.5.3)"),
        DstMapped = ("martian destination: IPv4-mapped ::ffff:0:0/96", "IPv4-mapped destination on the wire (RFC 4291 §2.5.5.2)"),
    }
}

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
fn martian6(ip: &[u8], own: &AddrSet6) -> Option<Ip6InputDrop> {
    let (Some(src), Some(dst)) = (ip.get(8..24), ip.get(24..40)) else {
        return Some(Ip6InputDrop::Trunc);
    };
    match src.first() {
        Some(0xff) => return Some(Ip6InputDrop::SrcMcast),
        Some(0) => match special6(src) {
            Some(0) => {
                // DAD probes come from :: (RFC 4861 §7.2.2); ip6-nd checks them.
                let ns = ip.get(6) == Some(&IpProtocol::ICMPV6.0)
                    && ip.get(ipv6::HEADER_LEN) == Some(&msg::NEIGHBOR_SOLICIT);
                if !ns {
                    return Some(Ip6InputDrop::SrcUnspec);
                }
            }
            Some(1) => return Some(Ip6InputDrop::SrcLoopback),
            Some(_) => return Some(Ip6InputDrop::SrcMapped),
            None => {}
        },
        _ => {}
    }
    if dst.first() == Some(&0) {
        match special6(dst) {
            Some(0) => return Some(Ip6InputDrop::DstUnspec),
            Some(1) => return Some(Ip6InputDrop::DstLoopback),
            Some(_) => return Some(Ip6InputDrop::DstMapped),
            None => {}
        }
    }
    if !own.is_empty() {
        let b: [u8; 16] = src.try_into().ok()?;
        if own.contains(u128::from_be_bytes(b)) {
            return Some(Ip6InputDrop::SrcOurs);
        }
    }
    None
}

impl Stage for Ip6Input {
    fn name(&self) -> &'static str {
        "ip6-input"
    }

    fn errors(&self) -> &'static [&'static str] {
        Ip6InputDrop::NAMES
    }

    fn error_help(&self) -> &'static [&'static str] {
        Ip6InputDrop::HELP
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
                return Ip6InputDrop::Trunc.into();
            };
            if ip.len() < ipv6::HEADER_LEN {
                return Ip6InputDrop::Trunc.into();
            }
            if ip[0] >> 4 != 6 {
                return Ip6InputDrop::Version.into();
            }
            let plen = usize::from(u16::from_be_bytes([ip[4], ip[5]]));
            if ipv6::HEADER_LEN + plen > ip.len() {
                return Ip6InputDrop::Len.into();
            }
            if let Some(r) = martian6(ip, own) {
                return r.into();
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

crate::drop_reasons! {
    /// Why `ip6-nd` drops (RFC 4861).
    pub enum NdDrop {
        Bad = ("invalid ND message", "fails the RFC 4861 §7.1 validity checks (hop limit 255, code 0, length, options)"),
        NotUs = ("NS target not ours", "neighbor solicitation for a target that is not ours"),
        Advert = ("NA consumed", "neighbor advertisement: learned from, then consumed"),
        Full = ("neighbour table full", "the sender could not be learned: neighbour table full"),
        Other = ("ND message not handled (RS/RA/redirect)", "router solicitation/advertisement or redirect: not handled by this node"),
    }
}

/// `ip6-nd`: Neighbor Discovery responder/learner.
pub struct Ip6Nd {
    l3: Arc<L3>,
    /// Neighbor advertisements sent in answer to solicitations.
    pub advertisements: u64,
    /// Bindings learned from solicitations.
    pub learned: u64,
}

impl Ip6Nd {
    pub fn new(l3: Arc<L3>) -> Self {
        Ip6Nd {
            l3,
            advertisements: 0,
            learned: 0,
        }
    }
}

/// True for ND messages (ICMPv6 types 133..=137 directly after the fixed header).
fn is_nd(pkt: &Pkt) -> bool {
    let l3 = pkt.meta.l3 as usize;
    let d = pkt.data();
    d.get(l3 + 6) == Some(&IpProtocol::ICMPV6.0)
        && matches!(d.get(l3 + ipv6::HEADER_LEN), Some(t) if (133..=137).contains(t))
}

impl Ip6Nd {
    /// The L3 state this stage forwards with.
    pub fn l3(&self) -> &Arc<L3> {
        &self.l3
    }

    /// Takes `fresh`'s L3 state (and what this stage derived from it) and leaves this
    /// stage's old one in `fresh`; the counters stay. Allocates nothing, so a worker
    /// can call it between bursts with a stage built off the data path (a route
    /// change at run time); `fresh` then carries the old state away to be freed.
    pub fn swap_l3(&mut self, fresh: &mut Ip6Nd) {
        core::mem::swap(&mut self.l3, &mut fresh.l3);
    }
}

impl Stage for Ip6Nd {
    fn as_any_mut(&mut self) -> Option<&mut dyn core::any::Any> {
        Some(self)
    }

    fn name(&self) -> &'static str {
        "ip6-nd"
    }

    fn errors(&self) -> &'static [&'static str] {
        NdDrop::NAMES
    }

    fn error_help(&self) -> &'static [&'static str] {
        NdDrop::HELP
    }

    fn counters(&self, f: &mut dyn FnMut(Counter)) {
        f(Counter::total(
            "advertisements-sent",
            "neighbor advertisements sent (RFC 4861 §7.2.4)",
            self.advertisements,
        ));
        f(Counter::total(
            "learned",
            "neighbour bindings learned from solicitations",
            self.learned,
        ));
    }

    fn process(&mut self, batch: &mut Batch, node: &mut NodeStats, out: &mut Out) {
        if !batch
            .iter()
            .any(|p| p.meta.class == class::IPV6 && is_nd(p))
        {
            return;
        }
        let l3 = &*self.l3;
        let (adverts, learned) = (&mut self.advertisements, &mut self.learned);
        batch.dispatch(node, out, |pkt, out| {
            if pkt.meta.class != class::IPV6 || !is_nd(pkt) {
                return Next::Keep;
            }
            let now = out.now_ns;
            let port = pkt.meta.port;
            let off = pkt.meta.l3 as usize;
            let Some(ifc) = l3.iface(port) else {
                return NdDrop::Bad.into();
            };
            let our_mac = ifc.mac;
            let d = pkt.data();
            let (Some(src), Some(dst)) = (addr_at(d, off + 8), addr_at(d, off + 24)) else {
                return NdDrop::Bad.into();
            };
            if d.get(off + 7) != Some(&icmpv6::ND_HOP_LIMIT) {
                return NdDrop::Bad.into();
            }
            let Some(body) = d.get(off + ipv6::HEADER_LEN..) else {
                return NdDrop::Bad.into();
            };
            let Ok(view) = icmpv6::Packet::new_checked(body) else {
                return NdDrop::Bad.into();
            };
            let Ok(icmpv6::Repr::Ndisc(nd)) = icmpv6::Repr::parse_checked(&view, &src, &dst) else {
                return NdDrop::Bad.into();
            };
            match nd {
                NdiscRepr::NeighborSolicit {
                    target_addr,
                    lladdr,
                } => {
                    if !ifc.has_v6(&target_addr) {
                        return NdDrop::NotUs.into();
                    }
                    let unspecified = src.is_unspecified();
                    if let Some(m) = lladdr {
                        if unspecified || !l3.neigh.learn(key_v6(&src), m.0, now) {
                            return NdDrop::Full.into();
                        }
                        *learned += 1;
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
                        return NdDrop::Bad.into();
                    };
                    b[0..6].copy_from_slice(&dst_mac);
                    b[6..12].copy_from_slice(&our_mac);
                    b[12..14].copy_from_slice(&EtherType::IPV6.0.to_be_bytes());
                    let (hdr, rest) = b[HEADER_LEN..].split_at_mut(ipv6::HEADER_LEN);
                    if ip.emit(&mut ipv6::Packet::new_unchecked(hdr)).is_err() {
                        return NdDrop::Bad.into();
                    }
                    let mut p = icmpv6::Packet::new_unchecked(rest);
                    if na.emit(&mut p).is_err() {
                        return NdDrop::Bad.into();
                    }
                    p.fill_checksum(&target_addr, &reply_dst);
                    *adverts += 1;
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
                    NdDrop::Advert.into()
                }
                _ => NdDrop::Other.into(),
            }
        });
    }
}

crate::drop_reasons! {
    /// Why `ip6-lookup` drops.
    pub enum Ip6LookupDrop {
        NoRoute = ("no route", "no FIB entry covers the destination"),
        Blackhole = ("blackhole route", "the matching route is a blackhole (discard) route"),
        Mcast = ("multicast not routed", "multicast destination: this router does not route multicast"),
        LlSrc = ("link-local source not forwarded", "link-local source must not be forwarded (RFC 4291 §2.5.6)"),
        LlDst = ("link-local destination not forwarded", "link-local destination must not be forwarded (RFC 4291 §2.5.6)"),
    }
}

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

impl Ip6Lookup {
    /// The L3 state this stage forwards with.
    pub fn l3(&self) -> &Arc<L3> {
        &self.l3
    }

    /// Takes `fresh`'s L3 state (and what this stage derived from it) and leaves this
    /// stage's old one in `fresh`; the counters stay. Allocates nothing, so a worker
    /// can call it between bursts with a stage built off the data path (a route
    /// change at run time); `fresh` then carries the old state away to be freed.
    pub fn swap_l3(&mut self, fresh: &mut Ip6Lookup) {
        core::mem::swap(&mut self.l3, &mut fresh.l3);
    }
}

impl Stage for Ip6Lookup {
    fn as_any_mut(&mut self) -> Option<&mut dyn core::any::Any> {
        Some(self)
    }

    fn name(&self) -> &'static str {
        "ip6-lookup"
    }

    fn errors(&self) -> &'static [&'static str] {
        Ip6LookupDrop::NAMES
    }

    fn error_help(&self) -> &'static [&'static str] {
        Ip6LookupDrop::HELP
    }

    fn counters(&self, f: &mut dyn FnMut(Counter)) {
        f(Counter::total(
            "icmp-errors-sent",
            "ICMPv6 destination unreachable sent (RFC 4443 §3.1)",
            self.icmp_sent,
        ));
        f(Counter::total(
            "icmp-errors-rate-limited",
            "ICMPv6 errors not sent: rate limit (RFC 4443 §2.4)",
            self.icmp_limit.limited,
        ));
        f(Counter::total(
            "echo-replies",
            "ICMPv6 echo replies sent (RFC 4443 §4.2)",
            self.echo_replies,
        ));
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
                return Ip6LookupDrop::Mcast.into();
            }
            let Some(nh) = r else {
                let k = ErrorKind::DstUnreachable {
                    code: icmpv6::unreachable::NO_ROUTE,
                };
                if send_icmp6_error(out, l3, pkt, k, limit) {
                    *sent += 1;
                }
                return Ip6LookupDrop::NoRoute.into();
            };
            pkt.meta.nh = nh;
            let kind = l3.adj(nh).map(|a| a.kind);
            if kind != Some(AdjKind::Local) {
                // RFC 4291 §2.5.6: link-local traffic never leaves its link.
                if dst >> 118 == 0xfe80 >> 6 {
                    return Ip6LookupDrop::LlDst.into();
                }
                let src = pkt
                    .data()
                    .get(pkt.meta.l3 as usize + 8..pkt.meta.l3 as usize + 10);
                if matches!(src, Some(&[0xfe, b]) if b & 0xc0 == 0x80) {
                    return Ip6LookupDrop::LlSrc.into();
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
                Some(AdjKind::Drop) => Ip6LookupDrop::Blackhole.into(),
                Some(_) => Next::Keep,
                None => Ip6LookupDrop::NoRoute.into(),
            }
        });
    }
}

crate::drop_reasons! {
    /// Why `ip6-rewrite` drops.
    pub enum Ip6RewriteDrop {
        Hops = ("hop limit expired", "hop limit reached zero (RFC 8200 §3; ICMPv6 time exceeded sent when allowed)"),
        Pending = ("ND pending", "next hop not resolved yet: neighbor solicitation sent, packet not held"),
        Full = ("neighbour table full", "next hop could not be added: neighbour table full"),
        Mtu = ("exceeds MTU", "larger than the egress MTU (RFC 8200 §5; ICMPv6 packet too big sent when allowed)"),
        BadAdj = ("bad adjacency", "the route's adjacency names no usable interface"),
        NoHeadroom = ("no room for Ethernet header", "not enough headroom to write the Ethernet header"),
    }
}

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

impl Ip6Rewrite {
    /// The L3 state this stage forwards with.
    pub fn l3(&self) -> &Arc<L3> {
        &self.l3
    }

    /// Takes `fresh`'s L3 state (and what this stage derived from it) and leaves this
    /// stage's old one in `fresh`; the counters stay. Allocates nothing, so a worker
    /// can call it between bursts with a stage built off the data path (a route
    /// change at run time); `fresh` then carries the old state away to be freed.
    pub fn swap_l3(&mut self, fresh: &mut Ip6Rewrite) {
        core::mem::swap(&mut self.l3, &mut fresh.l3);
    }
}

impl Stage for Ip6Rewrite {
    fn as_any_mut(&mut self) -> Option<&mut dyn core::any::Any> {
        Some(self)
    }

    fn name(&self) -> &'static str {
        "ip6-rewrite"
    }

    fn errors(&self) -> &'static [&'static str] {
        Ip6RewriteDrop::NAMES
    }

    fn error_help(&self) -> &'static [&'static str] {
        Ip6RewriteDrop::HELP
    }

    fn counters(&self, f: &mut dyn FnMut(Counter)) {
        f(Counter::total(
            "icmp-errors-sent",
            "ICMPv6 time exceeded / packet too big sent (RFC 4443 §3)",
            self.icmp_sent,
        ));
        f(Counter::total(
            "icmp-errors-rate-limited",
            "ICMPv6 errors not sent: rate limit (RFC 4443 §2.4)",
            self.icmp_limit.limited,
        ));
        f(Counter::total(
            "solicitations-sent",
            "neighbor solicitations sent to resolve next hops (RFC 4861 §7.2.2)",
            self.solicitations,
        ));
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
                return Ip6RewriteDrop::BadAdj.into();
            };
            let Some(ifc) = l3.iface(adj.port) else {
                return Ip6RewriteDrop::BadAdj.into();
            };
            let off = pkt.meta.l3 as usize;
            let Some(ip) = pkt.data().get(off..) else {
                return Ip6RewriteDrop::BadAdj.into();
            };
            let total = ip.len();
            let hops = ip.get(7).copied().unwrap_or(0);
            let Some(dst) = addr_at(ip, 24) else {
                return Ip6RewriteDrop::BadAdj.into();
            };
            if hops <= 1 {
                let k = ErrorKind::TimeExceeded {
                    code: icmpv6::time_exceeded::HOP_LIMIT,
                };
                if send_icmp6_error(out, l3, pkt, k, limit) {
                    *sent += 1;
                }
                return Ip6RewriteDrop::Hops.into();
            }
            if total > usize::from(ifc.mtu) {
                let k = ErrorKind::PktTooBig {
                    mtu: u32::from(ifc.mtu),
                };
                if send_icmp6_error(out, l3, pkt, k, limit) {
                    *sent += 1;
                }
                return Ip6RewriteDrop::Mtu.into();
            }
            let target = match adj.kind {
                AdjKind::Glean => dst,
                AdjKind::Via6(gw) => gw,
                _ => return Ip6RewriteDrop::BadAdj.into(),
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
                    return Ip6RewriteDrop::Pending.into();
                }
                Resolve::Pending => return Ip6RewriteDrop::Pending.into(),
                Resolve::Full => return Ip6RewriteDrop::Full.into(),
            };
            if let Some(h) = pkt.data_mut().get_mut(off + 7) {
                *h = hops - 1;
            }
            if off > HEADER_LEN {
                let _ = pkt.strip(off - HEADER_LEN);
            } else if off < HEADER_LEN && pkt.prepend(HEADER_LEN - off).is_err() {
                return Ip6RewriteDrop::NoHeadroom.into();
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
        assert_eq!(m("ff02::1", far), Some(Ip6InputDrop::SrcMcast));
        assert_eq!(m("::", far), Some(Ip6InputDrop::SrcUnspec));
        assert_eq!(m("::1", far), Some(Ip6InputDrop::SrcLoopback));
        assert_eq!(m("::ffff:192.0.2.1", far), Some(Ip6InputDrop::SrcMapped));
        assert_eq!(m("2001:db8:1::1", far), Some(Ip6InputDrop::SrcOurs));
        assert_eq!(m(host, "::"), Some(Ip6InputDrop::DstUnspec));
        assert_eq!(m(host, "::1"), Some(Ip6InputDrop::DstLoopback));
        assert_eq!(m(host, "::ffff:10.0.0.1"), Some(Ip6InputDrop::DstMapped));
        // IPv4-compatible (deprecated) and 64:ff9b::/96 are not filtered here
        assert_eq!(m(host, "::10.0.0.1"), None);
        assert_eq!(m(host, "64:ff9b::a00:1"), None);
        // DAD: a Neighbor Solicitation from :: passes to ip6-nd
        let ns = hdr("::", "ff02::1:ff00:1", 58, msg::NEIGHBOR_SOLICIT);
        assert_eq!(martian6(&ns, &own), None);
        let echo = hdr("::", far, 58, msg::ECHO_REQUEST);
        assert_eq!(martian6(&echo, &own), Some(Ip6InputDrop::SrcUnspec));
        assert!(usize::from(Ip6InputDrop::DstMapped.code()) < Ip6InputDrop::NAMES.len());
    }
}
