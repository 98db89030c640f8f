//! IPv4 forwarding per RFC 1812 as three stages:
//!
//! * `ip4-input` (§5.2.2): version, header length, header checksum, total length
//!   against the frame (Ethernet padding trimmed), then the martian filter of §5.3.7
//!   with one drop reason per kind, all decided on the first address byte or a
//!   precomputed address set (no per-packet allocation, no lookup):
//!   - source on network 0 (§4.2.2.11 (a)/(b): `{0, *}` only as the source of an
//!     initialising host, never forwarded; §5.3.7), on network 127 (loopback,
//!     §4.2.2.11 (g)), or class D/E (§4.2.2.11 (d), §5.3.7: multicast and reserved
//!     are never sources);
//!   - source equal to one of our own addresses (a spoofed or looped packet; built
//!     with [`Ip4Input::for_l3`]);
//!   - destination on network 0 or 127 (§5.3.7 "SHOULD NOT forward ... a destination
//!     address on network 0 ... on network 127"), class E (§5.3.7: an invalid
//!     destination), the limited broadcast 255.255.255.255 (§5.3.5.1: never
//!     forwarded), and multicast (§5.3.5 / §2.2.6: this router does not route
//!     multicast);
//!   - a directed broadcast of one of our connected subnets (§5.2.3 lets the router
//!     receive it, §5.3.5.2 makes forwarding it an option that RFC 2644 turns off by
//!     default): dropped and counted, so no ARP request ever goes out for a subnet
//!     broadcast address. /31 and /32 subnets have none (RFC 3021).
//! * `ip4-lookup` (§5.2.4.3): longest-prefix match in the DIR-24-8 FIB, batched with
//!   prefetch; no route sends ICMP Destination Unreachable (net, code 0, RFC 792);
//!   packets for our own addresses are answered (ICMP echo, RFC 792) or punted.
//! * `ip4-rewrite` (§5.3.1, §5.2.7): TTL decrement with an incremental checksum
//!   update (RFC 1624) and ICMP Time Exceeded (code 0) at expiry, the MTU check with
//!   Fragmentation Needed (type 3 code 4, RFC 1191) for DF packets and
//!   fragmentation (RFC 791 §3.2, RFC 1812 §5.2.6, [`super::frag4`]) of the others, next-hop
//!   resolution through the neighbour table (an ARP request is sent while pending)
//!   and the Ethernet rewrite (VLAN tags of the ingress frame are removed).
//!
//! ICMP errors follow RFC 1812 §4.3.2.7 (never about ICMP errors, fragments,
//! broadcasts, ...) and are rate limited (§4.3.2.8) by a token bucket.

use super::arp;
use super::classify::class;
use super::frag4::fragment4;
use super::l3::{AdjKind, Martian4, L3};
use super::neigh::{key_v4, Resolve};
use crate::batch::{Batch, Next, Out, BATCH_SIZE};
use crate::buf::Pkt;
use crate::lpm::NextHop;
use crate::proto::ethernet::HEADER_LEN;
use crate::proto::icmpv4::{self, ErrorKind, QuoteLimit};
use crate::proto::{ipv4, EtherType, IpProtocol};
use crate::stage::{Counter, NodeStats, Stage};
use crate::stages::qos::TokenBucket;
use alloc::sync::Arc;
use core::net::Ipv4Addr;

/// A packet-rate limiter for ICMP errors (RFC 1812 §4.3.2.8, RFC 4443 §2.4(f)): the
/// engine's one token bucket ([`TokenBucket`]) with one "byte" per packet.
#[derive(Clone, Copy, Debug)]
pub struct RateLimit {
    bucket: TokenBucket,
    /// Requests refused (no token).
    pub limited: u64,
}

impl RateLimit {
    /// `rate` packets per second, at most `burst` at once; starts full.
    pub fn new(rate: u64, burst: u64) -> Self {
        RateLimit {
            bucket: TokenBucket::new(
                rate.saturating_mul(8),
                u32::try_from(burst).unwrap_or(u32::MAX),
                0,
            ),
            limited: 0,
        }
    }

    /// Takes a token at time `now` (ns).
    pub fn take(&mut self, now: u64) -> bool {
        self.bucket.fill(now);
        if self.bucket.take(1) {
            true
        } else {
            self.limited += 1;
            false
        }
    }
}

/// Builds an ICMP error about `offending` (an Ethernet frame whose IPv4 header is at
/// `l3`) and queues it on the ingress port back to the previous hop. Returns true when
/// an error was queued.
pub(crate) fn send_icmp4_error(
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
    let d = offending.data();
    let (Some(eth_src), Some(ip)) = (d.get(6..12), d.get(offending.meta.l3 as usize..)) else {
        return false;
    };
    let Ok(view) = ipv4::Packet::new_checked(ip) else {
        return false;
    };
    if !icmpv4::error_allowed(&view) {
        return false;
    }
    let Some(src) = ifc.v4_for(view.src_addr()) else {
        return false;
    };
    if !limit.take(out.now_ns) {
        return false;
    }
    let Some(mut e) = out.cache.alloc() else {
        return false;
    };
    let ok = (|| {
        let buf = e.append(HEADER_LEN + 576).ok()?;
        buf.get_mut(0..6)?.copy_from_slice(eth_src);
        buf.get_mut(6..12)?.copy_from_slice(&ifc.mac);
        buf.get_mut(12..14)?
            .copy_from_slice(&EtherType::IPV4.0.to_be_bytes());
        let body = buf.get_mut(HEADER_LEN..)?;
        let n = icmpv4::build_error(body, ip, src, 64, kind, QuoteLimit::Rfc1812).ok()?;
        Some(HEADER_LEN + n)
    })();
    match ok {
        Some(len) if e.set_len(len).is_ok() => {
            e.meta.port = port;
            out.emit(port, e)
        }
        _ => {
            out.cache.free(e);
            false
        }
    }
}

crate::drop_reasons! {
    /// Why `ip4-input` drops (RFC 791, RFC 1812 §5.2.2 and §5.3.7).
    pub enum Ip4InputDrop {
        Trunc = ("truncated IPv4 header", "packet shorter than an IPv4 header"),
        Version = ("not IPv4 / bad header length", "version is not 4 or IHL below 5 (RFC 1812 §5.2.2)"),
        Csum = ("bad header checksum", "IPv4 header checksum does not verify (RFC 1071)"),
        Len = ("bad total length", "total length below the header length or beyond the frame"),
        SrcClassDe = ("martian source: multicast or class E", "source address is multicast or class E (RFC 1812 §5.3.7)"),
        SrcThisNet = ("martian source: this network 0.0.0.0/8", "source address in 0.0.0.0/8 (RFC 1812 §5.3.7)"),
        SrcLoopback = ("martian source: loopback 127.0.0.0/8", "source address in 127.0.0.0/8 (RFC 1812 §5.3.7)"),
        SrcOurs = ("martian source: one of our addresses", "source address is one of this router's (spoofed or looped)"),
        DstThisNet = (Martian4::ThisNet.name(), Martian4::ThisNet.help()),
        DstLoopback = (Martian4::Loopback.name(), Martian4::Loopback.help()),
        DstMcast = (Martian4::Multicast.name(), Martian4::Multicast.help()),
        DstLimitedBcast = (Martian4::LimitedBroadcast.name(), Martian4::LimitedBroadcast.help()),
        DstClassE = (Martian4::ClassE.name(), Martian4::ClassE.help()),
        DstDirectedBcast = (Martian4::DirectedBroadcast.name(), Martian4::DirectedBroadcast.help()),
    }
}

/// A small set of IPv4 addresses for the per-packet martian test: up to
/// [`AddrSet4::EXACT`] addresses are compared exactly (four compares, no false
/// positive); a larger set has a one-word filter in front (one multiply, shift and
/// bit test reject most addresses; members and the rare false positive are
/// confirmed by a scan of the configured addresses).
#[derive(Clone, Debug, Default)]
pub struct AddrSet4 {
    filter: u64,
    addrs: alloc::vec::Vec<u32>,
}

/// What the per-packet test of an [`AddrSet4`] reads, copied out of the set once per
/// batch ([`AddrSet4::probe`]) so it sits in registers. Addresses are compared as
/// they lie in the header (`u32::from_ne_bytes` of the four octets), so the packet's
/// address needs no byte swap.
#[derive(Clone, Copy, Debug)]
pub(crate) struct AddrProbe4 {
    /// The members when there are at most [`AddrSet4::EXACT`], padded with 0 (an
    /// address on network 0, martian by its first byte already).
    small: [u32; AddrSet4::EXACT],
    /// The filter word over the members when the set is larger.
    filter: u64,
    /// `small` holds the whole set.
    exact: bool,
}

impl AddrProbe4 {
    /// True when `a` (octets in header order) is one of `small`: the whole set
    /// when `exact`.
    #[inline(always)]
    pub(crate) fn has(&self, a: u32) -> bool {
        let [s0, s1, s2, s3] = self.small;
        (a == s0) | (a == s1) | (a == s2) | (a == s3)
    }

    /// True when `a` (octets in header order, `u32::from_ne_bytes`) may be in the
    /// set; exact for a small set.
    #[inline(always)]
    pub(crate) fn maybe(&self, a: u32) -> bool {
        if self.exact {
            self.has(a)
        } else {
            self.filter & AddrSet4::bit(a) != 0
        }
    }
}

impl AddrSet4 {
    /// Sets up to this size are probed exactly.
    pub const EXACT: usize = 4;

    #[inline(always)]
    fn bit(a: u32) -> u64 {
        1u64 << (a.wrapping_mul(0x9e37_79b1) >> 26)
    }

    /// Adds an address (start-up only).
    pub fn insert(&mut self, a: Ipv4Addr) {
        let a = u32::from(a);
        if !self.addrs.contains(&a) {
            self.addrs.push(a);
            self.filter |= Self::bit(a);
        }
    }

    /// True when `a` is in the set.
    #[inline(always)]
    pub fn contains(&self, a: u32) -> bool {
        self.filter & Self::bit(a) != 0 && self.addrs.contains(&a)
    }

    /// The per-packet test's view of the set.
    pub(crate) fn probe(&self) -> AddrProbe4 {
        let wire = |a: u32| u32::from_ne_bytes(a.to_be_bytes());
        let mut p = AddrProbe4 {
            small: [0; Self::EXACT],
            filter: 0,
            exact: self.addrs.len() <= Self::EXACT,
        };
        for (i, &a) in self.addrs.iter().enumerate() {
            if let Some(x) = p.small.get_mut(i) {
                *x = wire(a);
            }
            p.filter |= Self::bit(wire(a));
        }
        p
    }

    pub fn len(&self) -> usize {
        self.addrs.len()
    }

    pub fn is_empty(&self) -> bool {
        self.addrs.is_empty()
    }
}

/// `ip4-input`: header validation (RFC 1812 §5.2.2) and the martian filter (§5.3.7).
///
/// The destination half of the filter can be left to `ip4-lookup`, whose FIB holds a
/// drop route for every martian destination ([`super::l3`]), when nothing sits
/// between the two nodes ([`Ip4Input::dst_checked_by_fib`]); the source half always
/// runs here.
#[derive(Clone, Debug)]
pub struct Ip4Input {
    /// Verify the header checksum (on unless a NIC already did).
    pub verify_checksum: bool,
    /// Drop martian destinations here (on unless `ip4-lookup` comes right after).
    pub check_dst: bool,
    /// Our own addresses: packets arriving with one of them as source are dropped.
    pub own: AddrSet4,
    /// Directed-broadcast addresses of our connected subnets: not forwarded.
    pub directed_broadcast: AddrSet4,
}

impl Default for Ip4Input {
    fn default() -> Self {
        Ip4Input {
            verify_checksum: true,
            check_dst: true,
            own: AddrSet4::default(),
            directed_broadcast: AddrSet4::default(),
        }
    }
}

impl Ip4Input {
    /// An `ip4-input` that also knows the router's own addresses and the directed
    /// broadcast address of each connected subnet (prefixes up to /30).
    pub fn for_l3(l3: &L3) -> Self {
        let mut s = Ip4Input::default();
        for ifc in &l3.ifaces {
            for n in &ifc.v4 {
                s.own.insert(n.addr);
                if n.len <= 30 {
                    let host = u32::MAX >> n.len;
                    s.directed_broadcast
                        .insert(Ipv4Addr::from(u32::from(n.addr) | host));
                }
            }
        }
        s
    }

    /// Leaves martian destinations to the FIB's drop routes: for a graph whose next
    /// IPv4 node after this one is `ip4-lookup`, so that no feature (firewall, NAT,
    /// QoS, IPsec) ever sees a martian destination. Saves the per-packet destination
    /// test on the plain forwarding path.
    pub fn dst_checked_by_fib(mut self) -> Self {
        self.check_dst = false;
        self
    }
}

/// First address bytes that are martian as a source (RFC 1812 §5.3.7: network 0,
/// network 127, class D and E) and, the same bytes, as a destination (network 0,
/// network 127, multicast, class E and the limited broadcast): 0, 127 and 224 up,
/// as a 256-byte table (one load per address).
static MARTIAN_FIRST: [u8; 256] = {
    let mut t = [0u8; 256];
    let mut b = 0;
    while b < 256 {
        t[b] = (b == 0 || b == 127 || b >= 224) as u8;
        b += 1;
    }
    t
};

/// The fast test of the martian filter on an IPv4 header's addresses (`src` and
/// `dst` as `u32::from_ne_bytes` of their octets): false for a pair that is
/// certainly not martian (the common case, decided by a table of first bytes and
/// the probes of our own and the directed-broadcast addresses), true when
/// [`martian4_slow`] must decide. `EXACT`: both probes hold their whole sets;
/// `DST`: the destination is tested too.
#[inline(always)]
fn martian4_maybe<const EXACT: bool, const DST: bool>(
    src: u32,
    dst: u32,
    own: &AddrProbe4,
    bcast: &AddrProbe4,
) -> bool {
    let first = |a: u32| usize::from(a.to_ne_bytes()[0]);
    if !DST {
        let bad = MARTIAN_FIRST[first(src)];
        return if EXACT {
            bad != 0 || own.has(src)
        } else {
            bad != 0 || own.maybe(src)
        };
    }
    let bad = MARTIAN_FIRST[first(src)] | MARTIAN_FIRST[first(dst)];
    if EXACT {
        bad != 0 || own.has(src) || bcast.has(dst)
    } else {
        bad != 0 || own.maybe(src) || bcast.maybe(dst)
    }
}

/// The martian verdict on a source and destination address (RFC 1812 §5.3.7,
/// §4.2.2.11, §5.3.5), or `None` for a packet that may be forwarded: the fast
/// test ([`martian4_maybe`]) and, when it hits, the exact one.
#[cfg(test)]
fn martian4(src: [u8; 4], dst: [u8; 4], own: &AddrSet4, bcast: &AddrSet4) -> Option<Ip4InputDrop> {
    let (s, d) = (u32::from_ne_bytes(src), u32::from_ne_bytes(dst));
    let (o, b) = (own.probe(), bcast.probe());
    let hit = if o.exact && b.exact {
        martian4_maybe::<true, true>(s, d, &o, &b)
    } else {
        martian4_maybe::<false, true>(s, d, &o, &b)
    };
    if hit {
        martian4_slow(src, dst, own, bcast, true)
    } else {
        None
    }
}

/// The exact, ordered martian verdict once the fast test ([`martian4_maybe`]) hit
/// (out of line: rare). `check_dst`: the destination is judged here too.
#[cold]
#[inline(never)]
fn martian4_slow(
    src: [u8; 4],
    dst: [u8; 4],
    own: &AddrSet4,
    bcast: &AddrSet4,
    check_dst: bool,
) -> Option<Ip4InputDrop> {
    match src[0] {
        0 => return Some(Ip4InputDrop::SrcThisNet),
        127 => return Some(Ip4InputDrop::SrcLoopback),
        224.. => return Some(Ip4InputDrop::SrcClassDe),
        _ => {}
    }
    if !check_dst {
        return own
            .contains(u32::from_be_bytes(src))
            .then_some(Ip4InputDrop::SrcOurs);
    }
    // The same classification as the FIB's martian routes.
    if let Some(m) = Martian4::of_dst(u32::from_be_bytes(dst)) {
        return Some(m.into());
    }
    if own.contains(u32::from_be_bytes(src)) {
        return Some(Ip4InputDrop::SrcOurs);
    }
    if bcast.contains(u32::from_be_bytes(dst)) {
        return Some(Ip4InputDrop::DstDirectedBcast);
    }
    None
}

impl Stage for Ip4Input {
    fn name(&self) -> &'static str {
        "ip4-input"
    }

    fn errors(&self) -> &'static [&'static str] {
        Ip4InputDrop::NAMES
    }

    fn error_help(&self) -> &'static [&'static str] {
        Ip4InputDrop::HELP
    }

    fn process(&mut self, batch: &mut Batch, node: &mut NodeStats, out: &mut Out) {
        // What the per-packet martian test reads, in registers for the batch; with
        // both address sets small (the usual router) the test is compiled without
        // the filter-word path.
        let (own_probe, bcast_probe) = (self.own.probe(), self.directed_broadcast.probe());
        let exact = own_probe.exact && (bcast_probe.exact || !self.check_dst);
        match (exact, self.check_dst) {
            (true, true) => self.input::<true, true>(batch, node, out, &own_probe, &bcast_probe),
            (false, true) => self.input::<false, true>(batch, node, out, &own_probe, &bcast_probe),
            (true, false) => self.input::<true, false>(batch, node, out, &own_probe, &bcast_probe),
            (false, false) => {
                self.input::<false, false>(batch, node, out, &own_probe, &bcast_probe)
            }
        }
    }
}

impl Ip4Input {
    /// The per-packet work of [`Ip4Input`]'s `process`; `EXACT`: both probes hold
    /// their whole sets ([`AddrProbe4::maybe`]); `DST`: martian destinations are
    /// dropped here ([`Ip4Input::check_dst`]).
    #[inline(always)]
    fn input<const EXACT: bool, const DST: bool>(
        &self,
        batch: &mut Batch,
        node: &mut NodeStats,
        out: &mut Out,
        own_probe: &AddrProbe4,
        bcast_probe: &AddrProbe4,
    ) {
        let verify = self.verify_checksum;
        let (own, bcast) = (&self.own, &self.directed_broadcast);
        batch.dispatch(node, out, |pkt, _| {
            if pkt.meta.class != class::IPV4 {
                return Next::Keep;
            }
            let l3 = pkt.meta.l3 as usize;
            let frame_len = pkt.len();
            let Some(ip) = pkt.data().get(l3..) else {
                return Ip4InputDrop::Trunc.into();
            };
            let Some(&vihl) = ip.first() else {
                return Ip4InputDrop::Trunc.into();
            };
            let hl = usize::from(vihl & 0x0f) * 4;
            if vihl >> 4 != 4 || hl < ipv4::HEADER_LEN {
                return Ip4InputDrop::Version.into();
            }
            let Some(hdr) = ip.get(..hl) else {
                return Ip4InputDrop::Trunc.into();
            };
            let Some(fixed) = hdr.first_chunk::<20>() else {
                return Ip4InputDrop::Trunc.into();
            };
            let total = usize::from(u16::from_be_bytes([fixed[2], fixed[3]]));
            if total < hl || total > ip.len() {
                return Ip4InputDrop::Len.into();
            }
            if verify && !header_checksum_ok(hdr) {
                return Ip4InputDrop::Csum.into();
            }
            let src = [fixed[12], fixed[13], fixed[14], fixed[15]];
            let dst = [fixed[16], fixed[17], fixed[18], fixed[19]];
            if martian4_maybe::<EXACT, DST>(
                u32::from_ne_bytes(src),
                u32::from_ne_bytes(dst),
                own_probe,
                bcast_probe,
            ) {
                if let Some(r) = martian4_slow(src, dst, own, bcast, DST) {
                    return r.into();
                }
            }
            l4_offset(pkt, l3 + hl);
            let want = l3 + total;
            if want < frame_len {
                // Ethernet padding: trim so the L3 length rules from here on.
                let _ = pkt.trim(frame_len - want);
            }
            Next::Keep
        });
    }
}

/// RFC 1071 check of an IPv4 header; the common 20-byte header is summed as five
/// 32-bit words.
#[inline(always)]
fn header_checksum_ok(h: &[u8]) -> bool {
    if let Some(b) = h.first_chunk::<20>() {
        if h.len() == 20 {
            let w = |i: usize| u64::from(u32::from_ne_bytes([b[i], b[i + 1], b[i + 2], b[i + 3]]));
            let mut s = w(0) + w(4) + w(8) + w(12) + w(16);
            s = (s & 0xffff_ffff) + (s >> 32);
            s = (s & 0xffff) + (s >> 16);
            s = (s & 0xffff) + (s >> 16);
            s = (s & 0xffff) + (s >> 16);
            return s == 0xffff;
        }
    }
    crate::proto::checksum::verify(h)
}

#[inline(always)]
fn l4_offset(pkt: &mut Pkt, off: usize) {
    pkt.meta.l4 = off as u16;
}

crate::drop_reasons! {
    /// Why `ip4-lookup` drops.
    pub enum Ip4LookupDrop {
        NoRoute = ("no route", "no FIB entry covers the destination"),
        Blackhole = ("blackhole route", "the matching route is a blackhole (discard) route"),
        Local = ("local, not handled", "addressed to this router but not a protocol it answers"),
        EchoFail = ("bad ICMP echo to us", "ICMP echo request to this router that could not be answered (malformed)"),
        DstThisNet = (Martian4::ThisNet.name(), Martian4::ThisNet.help()),
        DstLoopback = (Martian4::Loopback.name(), Martian4::Loopback.help()),
        DstMcast = (Martian4::Multicast.name(), Martian4::Multicast.help()),
        DstLimitedBcast = (Martian4::LimitedBroadcast.name(), Martian4::LimitedBroadcast.help()),
        DstClassE = (Martian4::ClassE.name(), Martian4::ClassE.help()),
        DstDirectedBcast = (Martian4::DirectedBroadcast.name(), Martian4::DirectedBroadcast.help()),
    }
}

impl From<Martian4> for Ip4InputDrop {
    fn from(m: Martian4) -> Self {
        match m {
            Martian4::ThisNet => Ip4InputDrop::DstThisNet,
            Martian4::Loopback => Ip4InputDrop::DstLoopback,
            Martian4::Multicast => Ip4InputDrop::DstMcast,
            Martian4::ClassE => Ip4InputDrop::DstClassE,
            Martian4::LimitedBroadcast => Ip4InputDrop::DstLimitedBcast,
            Martian4::DirectedBroadcast => Ip4InputDrop::DstDirectedBcast,
        }
    }
}

impl From<Martian4> for Ip4LookupDrop {
    fn from(m: Martian4) -> Self {
        match m {
            Martian4::ThisNet => Ip4LookupDrop::DstThisNet,
            Martian4::Loopback => Ip4LookupDrop::DstLoopback,
            Martian4::Multicast => Ip4LookupDrop::DstMcast,
            Martian4::ClassE => Ip4LookupDrop::DstClassE,
            Martian4::LimitedBroadcast => Ip4LookupDrop::DstLimitedBcast,
            Martian4::DirectedBroadcast => Ip4LookupDrop::DstDirectedBcast,
        }
    }
}

/// `ip4-lookup`: FIB lookup (batched) and local delivery.
pub struct Ip4Lookup {
    l3: Arc<L3>,
    dst: [u32; BATCH_SIZE],
    res: [Option<NextHop>; BATCH_SIZE],
    pub icmp_limit: RateLimit,
    /// ICMP errors sent.
    pub icmp_sent: u64,
    /// Echo replies sent.
    pub echo_replies: u64,
}

impl Ip4Lookup {
    pub fn new(l3: Arc<L3>) -> Self {
        Ip4Lookup {
            l3,
            dst: [0; BATCH_SIZE],
            res: [None; BATCH_SIZE],
            icmp_limit: RateLimit::new(1000, 100),
            icmp_sent: 0,
            echo_replies: 0,
        }
    }
}

/// Answers an ICMP echo request to one of our addresses in place.
fn echo_reply(pkt: &mut Pkt) -> bool {
    let l3 = pkt.meta.l3 as usize;
    let d = pkt.data_mut();
    let Some(ip) = d.get_mut(l3..) else {
        return false;
    };
    let Ok(mut v) = ipv4::Packet::new_checked(&mut *ip) else {
        return false;
    };
    if v.protocol() != IpProtocol::ICMP || v.is_fragment() {
        return false;
    }
    let (s, t) = (v.src_addr(), v.dst_addr());
    let hl = v.header_len();
    {
        let Some(icmp) = v.payload_mut().get_mut(..) else {
            return false;
        };
        let Ok(mut ic) = icmpv4::Packet::new_checked(icmp) else {
            return false;
        };
        if !ic.verify_checksum() || !ic.echo_request_to_reply() {
            return false;
        }
    }
    v.set_src_addr(t);
    v.set_dst_addr(s);
    v.set_ttl(64);
    v.fill_checksum();
    let _ = hl;
    // swap MACs
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

impl Ip4Lookup {
    /// The L3 state this stage forwards with.
    pub fn l3(&self) -> &Arc<L3> {
        &self.l3
    }

    /// Takes `fresh`'s L3 state (and what this stage derived from it) and leaves this
    /// stage's old one in `fresh`; the counters stay. Allocates nothing, so a worker
    /// can call it between bursts with a stage built off the data path (a route
    /// change at run time); `fresh` then carries the old state away to be freed.
    pub fn swap_l3(&mut self, fresh: &mut Ip4Lookup) {
        core::mem::swap(&mut self.l3, &mut fresh.l3);
    }
}

impl Stage for Ip4Lookup {
    fn as_any_mut(&mut self) -> Option<&mut dyn core::any::Any> {
        Some(self)
    }

    fn name(&self) -> &'static str {
        "ip4-lookup"
    }

    fn errors(&self) -> &'static [&'static str] {
        Ip4LookupDrop::NAMES
    }

    fn error_help(&self) -> &'static [&'static str] {
        Ip4LookupDrop::HELP
    }

    fn counters(&self, f: &mut dyn FnMut(Counter)) {
        f(Counter::total(
            "icmp-errors-sent",
            "ICMP destination unreachable sent (RFC 1812 §4.3.2)",
            self.icmp_sent,
        ));
        f(Counter::total(
            "icmp-errors-rate-limited",
            "ICMP errors not sent: rate limit (RFC 1812 §4.3.2.8)",
            self.icmp_limit.limited,
        ));
        f(Counter::total(
            "echo-replies",
            "ICMP echo replies sent (RFC 792)",
            self.echo_replies,
        ));
    }

    fn process(&mut self, batch: &mut Batch, node: &mut NodeStats, out: &mut Out) {
        let n = batch.len();
        for (i, p) in batch.iter().enumerate() {
            let d = p.data();
            let o = p.meta.l3 as usize + 16;
            self.dst[i] = match d.get(o..o + 4) {
                Some(&[a, b, c, e]) if p.meta.class == class::IPV4 => {
                    u32::from_be_bytes([a, b, c, e])
                }
                _ => 0,
            };
        }
        let (dst, res) = (&self.dst[..n], &mut self.res[..n]);
        self.l3.fib4.lookup_bulk(dst, res);
        let l3 = &*self.l3;
        let res = &self.res;
        let limit = &mut self.icmp_limit;
        let sent = &mut self.icmp_sent;
        let echoes = &mut self.echo_replies;
        let mut i = 0usize;
        batch.dispatch(node, out, |pkt, out| {
            let r = res.get(i).copied().flatten();
            i += 1;
            if pkt.meta.class != class::IPV4 {
                return Next::Keep;
            }
            let Some(nh) = r else {
                let k = ErrorKind::DstUnreachable {
                    code: 0,
                    next_hop_mtu: 0,
                };
                if send_icmp4_error(out, l3, pkt, k, limit) {
                    *sent += 1;
                }
                return Ip4LookupDrop::NoRoute.into();
            };
            pkt.meta.nh = nh;
            match l3.adj(nh).map(|a| a.kind) {
                Some(AdjKind::Local) => {
                    if echo_reply(pkt) {
                        *echoes += 1;
                        Next::Port(pkt.meta.port)
                    } else {
                        let d = pkt.data();
                        let proto = d.get(pkt.meta.l3 as usize + 9).copied();
                        if proto == Some(IpProtocol::ICMP.0) {
                            Ip4LookupDrop::EchoFail.into()
                        } else {
                            Next::Punt
                        }
                    }
                }
                Some(AdjKind::Drop) => Ip4LookupDrop::Blackhole.into(),
                Some(AdjKind::Martian(m)) => martian_dst_drop(m, pkt),
                Some(_) => Next::Keep,
                None => Ip4LookupDrop::NoRoute.into(),
            }
        });
    }
}

/// The drop of a packet whose destination hit a martian route of the FIB (out of
/// line: rare).
#[cold]
#[inline(never)]
fn martian_dst_drop(m: Martian4, pkt: &Pkt) -> Next {
    let o = pkt.meta.l3 as usize + 16;
    let dst = match pkt.data().get(o..o + 4) {
        Some(&[a, b, c, d]) => u32::from_be_bytes([a, b, c, d]),
        _ => 0,
    };
    Ip4LookupDrop::from(m.reason(dst)).into()
}

/// A gateway adjacency's ready-made Ethernet header (dst from the neighbour table,
/// valid until `until`), port and MTU: the fast path of `ip4-rewrite`.
#[derive(Clone, Copy, Debug)]
struct FastAdj {
    port: u16,
    mtu: u16,
    via: bool,
    hdr: [u8; HEADER_LEN],
    until: u64,
}

/// How long a gateway's MAC is used from the per-adjacency cache before the
/// neighbour table is asked again.
const ADJ_CACHE_NS: u64 = 100_000_000;

crate::drop_reasons! {
    /// Why `ip4-rewrite` drops.
    pub enum Ip4RewriteDrop {
        Ttl = ("TTL expired", "TTL reached zero (RFC 1812 §5.3.1; an ICMP time exceeded is sent when allowed)"),
        Pending = ("ARP pending", "next hop not resolved yet: ARP request sent, packet not held"),
        Full = ("neighbour table full", "next hop could not be added: neighbour table full"),
        Mtu = ("exceeds MTU with DF set", "larger than the egress MTU with DF set (RFC 1191; ICMP frag needed sent when allowed)"),
        BadAdj = ("bad adjacency", "the route's adjacency names no usable interface"),
        NoHeadroom = ("no room for Ethernet header", "not enough headroom to write the Ethernet header"),
        Frag = ("fragmentation failed (no buffer, MTU below 68)", "fragmenting failed: no buffer, or an MTU below 68 (RFC 791)"),
    }
}

/// `ip4-rewrite`: TTL, MTU, neighbour resolution and the Ethernet rewrite.
pub struct Ip4Rewrite {
    l3: Arc<L3>,
    /// Per-adjacency resolved MAC of a gateway and until when it may be used without
    /// asking the neighbour table again (ns).
    cache: alloc::vec::Vec<([u8; 6], u64)>,
    /// Per-adjacency prepared rewrite for the fast path.
    fast: alloc::vec::Vec<FastAdj>,
    pub icmp_limit: RateLimit,
    pub icmp_sent: u64,
    pub arp_requests: u64,
    /// Packets fragmented (RFC 791 §3.2) and fragments sent for them.
    pub fragmented: u64,
    pub fragments_sent: u64,
}

impl Ip4Rewrite {
    pub fn new(l3: Arc<L3>) -> Self {
        let cache = alloc::vec![([0u8; 6], 0u64); l3.adj.len()];
        let fast = l3
            .adj
            .iter()
            .map(|a| {
                let ifc = l3.iface(a.port);
                let mut hdr = [0u8; HEADER_LEN];
                if let Some(i) = ifc {
                    hdr[6..12].copy_from_slice(&i.mac);
                }
                hdr[12..14].copy_from_slice(&EtherType::IPV4.0.to_be_bytes());
                FastAdj {
                    port: a.port,
                    mtu: ifc.map_or(0, |i| i.mtu),
                    via: matches!(a.kind, AdjKind::Via4(_)) && ifc.is_some(),
                    hdr,
                    until: 0,
                }
            })
            .collect();
        Ip4Rewrite {
            l3,
            cache,
            fast,
            icmp_limit: RateLimit::new(1000, 100),
            icmp_sent: 0,
            arp_requests: 0,
            fragmented: 0,
            fragments_sent: 0,
        }
    }
}

fn send_arp_request(out: &mut Out, l3: &L3, port: u16, target: Ipv4Addr) -> bool {
    let Some(ifc) = l3.iface(port) else {
        return false;
    };
    let Some(src) = ifc.v4_for(target) else {
        return false;
    };
    let Some(mut p) = out.cache.alloc() else {
        return false;
    };
    if !arp::build_request(&mut p, ifc.mac, src, target) {
        out.cache.free(p);
        return false;
    }
    out.emit(port, p)
}

impl Ip4Rewrite {
    /// The L3 state this stage forwards with.
    pub fn l3(&self) -> &Arc<L3> {
        &self.l3
    }

    /// Takes `fresh`'s L3 state (and what this stage derived from it) and leaves this
    /// stage's old one in `fresh`; the counters stay. Allocates nothing, so a worker
    /// can call it between bursts with a stage built off the data path (a route
    /// change at run time); `fresh` then carries the old state away to be freed.
    pub fn swap_l3(&mut self, fresh: &mut Ip4Rewrite) {
        core::mem::swap(&mut self.l3, &mut fresh.l3);
        core::mem::swap(&mut self.cache, &mut fresh.cache);
        core::mem::swap(&mut self.fast, &mut fresh.fast);
    }
}

impl Stage for Ip4Rewrite {
    fn as_any_mut(&mut self) -> Option<&mut dyn core::any::Any> {
        Some(self)
    }

    fn name(&self) -> &'static str {
        "ip4-rewrite"
    }

    fn errors(&self) -> &'static [&'static str] {
        Ip4RewriteDrop::NAMES
    }

    fn error_help(&self) -> &'static [&'static str] {
        Ip4RewriteDrop::HELP
    }

    fn counters(&self, f: &mut dyn FnMut(Counter)) {
        f(Counter::total(
            "icmp-errors-sent",
            "ICMP time exceeded / fragmentation needed sent (RFC 1812 §4.3.2)",
            self.icmp_sent,
        ));
        f(Counter::total(
            "icmp-errors-rate-limited",
            "ICMP errors not sent: rate limit (RFC 1812 §4.3.2.8)",
            self.icmp_limit.limited,
        ));
        f(Counter::total(
            "arp-requests-sent",
            "ARP requests sent to resolve next hops (RFC 826)",
            self.arp_requests,
        ));
        f(Counter::total(
            "fragmented",
            "packets fragmented (RFC 791 §3.2)",
            self.fragmented,
        ));
        f(Counter::total(
            "fragments-made",
            "fragments sent for fragmented packets",
            self.fragments_sent,
        ));
    }

    fn process(&mut self, batch: &mut Batch, node: &mut NodeStats, out: &mut Out) {
        let l3 = &*self.l3;
        let limit = &mut self.icmp_limit;
        let sent = &mut self.icmp_sent;
        let arps = &mut self.arp_requests;
        let fragmented = &mut self.fragmented;
        let fragments_sent = &mut self.fragments_sent;
        let cache = &mut self.cache;
        let fast = &mut self.fast;
        batch.dispatch(node, out, |pkt, out| {
            if pkt.meta.class != class::IPV4 {
                return Next::Keep;
            }
            // Fast path: untagged frame, gateway MAC known, TTL > 1, fits the MTU.
            let nh = pkt.meta.nh as usize;
            if pkt.meta.l3 == HEADER_LEN as u16 {
                if let Some(fa) = fast.get(nh) {
                    if fa.via && fa.until > out.now_ns {
                        if let Some(b) = pkt.data_mut().first_chunk_mut::<34>() {
                            let total = u16::from_be_bytes([b[16], b[17]]);
                            let ttl = b[22];
                            if ttl > 1 && total <= fa.mtu {
                                let old = u16::from_be_bytes([b[22], b[23]]);
                                b[22] = ttl - 1;
                                let hc = u16::from_be_bytes([b[24], b[25]]);
                                let hc = crate::proto::checksum::update16(hc, old, old - 0x0100);
                                b[24..26].copy_from_slice(&hc.to_be_bytes());
                                b[..HEADER_LEN].copy_from_slice(&fa.hdr);
                                return Next::Port(fa.port);
                            }
                        }
                    }
                }
            }
            let Some(adj) = l3.adj(pkt.meta.nh).copied() else {
                return Ip4RewriteDrop::BadAdj.into();
            };
            let Some(ifc) = l3.iface(adj.port) else {
                return Ip4RewriteDrop::BadAdj.into();
            };
            let off = pkt.meta.l3 as usize;
            // TTL and MTU
            let (dst, ttl_ok, too_big, df) = {
                let Some(ip) = pkt.data_mut().get_mut(off..) else {
                    return Ip4RewriteDrop::BadAdj.into();
                };
                let mut v = ipv4::Packet::new_unchecked(ip);
                let too_big = usize::from(v.total_len()) > usize::from(ifc.mtu);
                let df = v.dont_frag();
                // A packet that is refused for its size keeps its TTL (the ICMP error
                // quotes it unchanged); one that will be fragmented is forwarded.
                let ok = (too_big && df) || v.decrement_ttl().is_some();
                (v.dst_addr(), ok, too_big, df)
            };
            if !ttl_ok {
                if send_icmp4_error(out, l3, pkt, ErrorKind::TimeExceeded { code: 0 }, limit) {
                    *sent += 1;
                }
                return Ip4RewriteDrop::Ttl.into();
            }
            if too_big && df {
                let k = ErrorKind::DstUnreachable {
                    code: 4,
                    next_hop_mtu: ifc.mtu,
                };
                if send_icmp4_error(out, l3, pkt, k, limit) {
                    *sent += 1;
                }
                return Ip4RewriteDrop::Mtu.into();
            }
            let (target, via) = match adj.kind {
                AdjKind::Glean => (dst, false),
                AdjKind::Via4(gw) => (gw, true),
                _ => return Ip4RewriteDrop::BadAdj.into(),
            };
            let now = out.now_ns;
            let cached = match cache.get(pkt.meta.nh as usize) {
                Some((m, until)) if via && *until > now => Some(*m),
                _ => None,
            };
            let resolved = match cached {
                Some(m) => Resolve::Mac(m),
                None => l3.neigh.resolve(key_v4(target), now),
            };
            let mac = match resolved {
                Resolve::Refresh(m) => {
                    if send_arp_request(out, l3, adj.port, target) {
                        *arps += 1;
                    }
                    m
                }
                Resolve::Mac(m) => {
                    if via && cached.is_none() {
                        if let Some(c) = cache.get_mut(nh) {
                            *c = (m, now + ADJ_CACHE_NS);
                        }
                        if let Some(fa) = fast.get_mut(nh) {
                            fa.hdr[0..6].copy_from_slice(&m);
                            fa.until = now + ADJ_CACHE_NS;
                        }
                    }
                    m
                }
                Resolve::SendRequest => {
                    if send_arp_request(out, l3, adj.port, target) {
                        *arps += 1;
                    }
                    return Ip4RewriteDrop::Pending.into();
                }
                Resolve::Pending => return Ip4RewriteDrop::Pending.into(),
                Resolve::Full => return Ip4RewriteDrop::Full.into(),
            };
            // Ethernet header right before the IP header, VLAN tags removed.
            if off > HEADER_LEN {
                let _ = pkt.strip(off - HEADER_LEN);
            } else if off < HEADER_LEN && pkt.prepend(HEADER_LEN - off).is_err() {
                return Ip4RewriteDrop::NoHeadroom.into();
            }
            pkt.meta.l3 = HEADER_LEN as u16;
            let d = pkt.data_mut();
            if let Some(h) = d.get_mut(0..HEADER_LEN) {
                h[0..6].copy_from_slice(&mac);
                h[6..12].copy_from_slice(&ifc.mac);
                h[12..14].copy_from_slice(&EtherType::IPV4.0.to_be_bytes());
            }
            if too_big {
                // DF clear: fragments 1..n-1 are queued now, this buffer is the last.
                match fragment4(pkt, HEADER_LEN, usize::from(ifc.mtu), out, adj.port, |_| {}) {
                    Ok(n) => {
                        *fragmented += 1;
                        *fragments_sent += n as u64;
                    }
                    Err(_) => return Ip4RewriteDrop::Frag.into(),
                }
            }
            Next::Port(adj.port)
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn set(addrs: &[[u8; 4]]) -> AddrSet4 {
        let mut s = AddrSet4::default();
        for a in addrs {
            s.insert(Ipv4Addr::from(*a));
        }
        s
    }

    #[test]
    fn martian_reasons() {
        let own = set(&[[192, 0, 2, 1], [198, 51, 100, 1]]);
        let bc = set(&[[192, 0, 2, 255], [198, 51, 100, 255]]);
        let host = [192, 0, 2, 10];
        let far = [100, 64, 0, 1];
        let m = |s, d| martian4(s, d, &own, &bc);
        assert_eq!(m(host, far), None);
        assert_eq!(m([0, 0, 0, 0], far), Some(Ip4InputDrop::SrcThisNet));
        assert_eq!(m([0, 9, 9, 9], far), Some(Ip4InputDrop::SrcThisNet));
        assert_eq!(m([127, 0, 0, 1], far), Some(Ip4InputDrop::SrcLoopback));
        assert_eq!(m([224, 0, 0, 1], far), Some(Ip4InputDrop::SrcClassDe));
        assert_eq!(m([255, 255, 255, 255], far), Some(Ip4InputDrop::SrcClassDe));
        assert_eq!(m([192, 0, 2, 1], far), Some(Ip4InputDrop::SrcOurs));
        assert_eq!(m(host, [0, 0, 0, 0]), Some(Ip4InputDrop::DstThisNet));
        assert_eq!(m(host, [127, 0, 0, 1]), Some(Ip4InputDrop::DstLoopback));
        assert_eq!(m(host, [239, 255, 255, 250]), Some(Ip4InputDrop::DstMcast));
        assert_eq!(
            m(host, [255, 255, 255, 255]),
            Some(Ip4InputDrop::DstLimitedBcast)
        );
        assert_eq!(m(host, [250, 0, 0, 1]), Some(Ip4InputDrop::DstClassE));
        assert_eq!(
            m(host, [198, 51, 100, 255]),
            Some(Ip4InputDrop::DstDirectedBcast)
        );
        assert_eq!(m(host, [198, 51, 100, 254]), None);
        // our own address is a fine destination (local delivery)
        assert_eq!(m(host, [192, 0, 2, 1]), None);
        // every reason has a name
        assert!(usize::from(Ip4InputDrop::DstDirectedBcast.code()) < Ip4InputDrop::NAMES.len());
    }

    #[test]
    fn addr_set_filter_has_no_false_negatives() {
        let addrs: alloc::vec::Vec<[u8; 4]> =
            (0..200u32).map(|i| (i * 7919).to_be_bytes()).collect();
        let s = set(&addrs);
        assert_eq!(s.len(), 200);
        for a in &addrs {
            assert!(s.contains(u32::from_be_bytes(*a)));
        }
        assert!(!s.contains(0xdead_beef));
        assert!(!AddrSet4::default().contains(0));
    }

    #[test]
    fn addr_probe_is_exact_for_small_sets_and_misses_no_member() {
        let big: alloc::vec::Vec<[u8; 4]> = (1..200u32)
            .map(|i| (i * 7919 + 0x0a00_0000).to_be_bytes())
            .collect();
        for n in [0, 1, 3, AddrSet4::EXACT, AddrSet4::EXACT + 1, big.len()] {
            let s = set(&big[..n]);
            let p = s.probe();
            for a in &big[..n] {
                assert!(p.maybe(u32::from_ne_bytes(*a)), "{n}: member missed");
            }
            if n <= AddrSet4::EXACT {
                // no false positive outside network 0 (the padding)
                for a in &big[n..] {
                    assert!(!p.maybe(u32::from_ne_bytes(*a)), "{n}: false positive");
                }
            }
        }
        // the verdicts through the probes match the sets' own answers
        let own = set(&[[10, 0, 0, 1], [192, 0, 2, 1]]);
        let bc = set(&[[10, 0, 0, 255]]);
        assert_eq!(
            martian4([10, 0, 0, 1], [8, 8, 8, 8], &own, &bc),
            Some(Ip4InputDrop::SrcOurs)
        );
        assert_eq!(
            martian4([8, 8, 8, 8], [10, 0, 0, 255], &own, &bc),
            Some(Ip4InputDrop::DstDirectedBcast)
        );
        assert_eq!(martian4([8, 8, 8, 8], [10, 0, 0, 254], &own, &bc), None);
    }
}
