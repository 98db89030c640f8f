//! The BNG's own address on the core link and ARP there (RFC 826).
//!
//! With `core_ip` configured the fast path answers ARP requests for that address on
//! the core port (the request buffer becomes the reply, RFC 826 "Packet Reception"),
//! and with `core_gateway` it resolves the next hop by ARP instead of using the static
//! `core_next_hop_mac`: a broadcast request goes out at start (the first `tick`) and
//! whenever the binding is missing, at most once per retry interval; replies and
//! gratuitous ARP from the gateway are learned (RFC 826's merge step, RFC 5227 §3
//! announcements); a binding is refreshed by a new request from three quarters of its
//! reachable time on, before it goes stale (the ARP cache timeout of RFC 1122
//! §2.3.2.1), and is no longer used once the reachable time and three more retry
//! intervals pass unanswered. The binding lives in the engine's lock-free neighbour
//! table (`dataplane::stages::neigh`); the timing is kept here because the table's
//! own ageing is re-armed by every forwarded packet.
//!
//! Only the gateway's binding is stored: requests from other hosts are answered
//! without creating state, so an ARP flood on the core link cannot push the gateway
//! out of the table. A frame that claims our own address from another MAC is counted
//! as a conflict (RFC 5227 §2.4) and dropped. Nothing here allocates after
//! [`CoreLink::new`]; the table is lock-free and shared by the fast-path instances.

use core::net::{Ipv4Addr, Ipv6Addr};
use core::sync::atomic::{AtomicU64, Ordering};
use dataplane::buf::Pkt;
use dataplane::proto::arp::{self, Operation};
use dataplane::proto::EtherType;
use dataplane::stages::neigh::{key_v4, key_v6, NeighTable};

/// Ethernet header length on the (untagged) core port.
const ETH: usize = 14;

/// What [`CoreLink::input`] did with an ARP frame.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ArpVerdict {
    /// The frame was turned into a reply in place: send it back out of the core port.
    Reply,
    /// The gateway's binding was learned or refreshed; nothing to send.
    Learned,
    /// Not about our address (and not from the gateway).
    NotForUs,
    /// Not Ethernet/IPv4 ARP, or truncated.
    Malformed,
    /// Multicast sender MAC, or broadcast/multicast sender address.
    BadSender,
    /// Another station claims our address.
    Conflict,
}

/// Where upstream packets go on the core link.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NextHop {
    /// No `core_gateway`: use the static next-hop MAC.
    Static,
    /// Resolved; when `refresh` is set the caller should also send a request now.
    Mac {
        /// Gateway MAC.
        mac: [u8; 6],
        /// Send a refresh request.
        refresh: bool,
    },
    /// Unresolved: drop the packet and send a request now.
    Request,
    /// Unresolved, a request is outstanding: drop the packet.
    Pending,
}

/// Counters of the core link (relaxed atomics; read by metrics).
#[derive(Debug, Default)]
pub struct ArpStats {
    /// Replies sent for `core_ip`.
    pub replies: AtomicU64,
    /// Requests sent for the gateway.
    pub requests: AtomicU64,
    /// Gateway bindings learned or refreshed.
    pub learned: AtomicU64,
    /// Frames claiming our address from another MAC.
    pub conflicts: AtomicU64,
    /// Neighbor Solicitations sent for the IPv6 gateway.
    pub ns_sent: AtomicU64,
    /// IPv6 gateway bindings learned or refreshed (NA, or NS with a source address).
    pub learned6: AtomicU64,
}

impl ArpStats {
    fn inc(c: &AtomicU64) {
        c.fetch_add(1, Ordering::Relaxed);
    }
}

/// The core link: our address, the gateway and its ARP binding.
pub struct CoreLink {
    /// Our address on the core link (`core_ip`).
    pub ip: Ipv4Addr,
    /// Prefix length of the core subnet.
    pub prefix_len: u8,
    /// The next hop to resolve (`core_gateway`); `None` = static MAC.
    pub gateway: Option<Ipv4Addr>,
    neigh: NeighTable,
    /// When the gateway was last learned (ns; 0 = never).
    learned: AtomicU64,
    /// When we last sent a request for the gateway (ns; 0 = never).
    asked: AtomicU64,
    /// Our IPv6 address on the core link (`core_ip6`), source of our solicitations.
    pub ip6: Option<Ipv6Addr>,
    /// The IPv6 next hop to resolve by Neighbor Discovery (`core_gateway6`).
    pub gateway6: Option<Ipv6Addr>,
    learned6: AtomicU64,
    asked6: AtomicU64,
    /// Counters.
    pub stats: ArpStats,
}

impl core::fmt::Debug for CoreLink {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("CoreLink")
            .field("ip", &self.ip)
            .field("gateway", &self.gateway)
            .field("gateway_mac", &self.gateway_mac())
            .finish()
    }
}

fn ipv4_of(b: &[u8]) -> Option<Ipv4Addr> {
    let a: [u8; 4] = b.try_into().ok()?;
    Some(Ipv4Addr::from(a))
}

impl CoreLink {
    /// A core link with address `ip/prefix_len` resolving `gateway` (reachable time
    /// 300 s, retry interval 1 s).
    pub fn new(ip: Ipv4Addr, prefix_len: u8, gateway: Option<Ipv4Addr>) -> CoreLink {
        CoreLink {
            ip,
            prefix_len: prefix_len.min(32),
            gateway,
            neigh: NeighTable::new(16),
            learned: AtomicU64::new(0),
            asked: AtomicU64::new(0),
            ip6: None,
            gateway6: None,
            learned6: AtomicU64::new(0),
            asked6: AtomicU64::new(0),
            stats: ArpStats::default(),
        }
    }

    /// Resolve `gateway6` by Neighbor Discovery (RFC 4861 §7.2) from `ip6`, with the
    /// same timing as the IPv4 gateway; upstream IPv6 then goes to that router.
    pub fn with_gateway6(mut self, ip6: Ipv6Addr, gateway6: Option<Ipv6Addr>) -> CoreLink {
        self.ip6 = Some(ip6);
        self.gateway6 = gateway6;
        self
    }

    /// Set the reachable time and the retry interval (ns).
    pub fn with_timers(mut self, reachable_ns: u64, retry_ns: u64) -> CoreLink {
        self.neigh.reachable_ns = reachable_ns.max(1);
        self.neigh.retry_ns = retry_ns.max(1);
        self
    }

    /// Whether `a` is in our core subnet.
    pub fn on_link(&self, a: Ipv4Addr) -> bool {
        let mask = match self.prefix_len {
            0 => 0,
            l => u32::MAX << (32 - u32::from(l)),
        };
        u32::from(a) & mask == u32::from(self.ip) & mask
    }

    /// The gateway's MAC if resolved and not expired at `now` (ns).
    pub fn gateway_mac_at(&self, now: u64) -> Option<[u8; 6]> {
        let m = self.neigh.lookup(key_v4(self.gateway?))?;
        (!self.expired(now)).then_some(m)
    }

    /// The gateway's MAC if resolved.
    pub fn gateway_mac(&self) -> Option<[u8; 6]> {
        self.neigh.lookup(key_v4(self.gateway?))
    }

    /// The binding was not confirmed within the reachable time plus three retry
    /// intervals of refresh requests.
    fn expired(&self, now: u64) -> bool {
        self.expired_at(&self.learned, now)
    }

    fn expired_at(&self, learned: &AtomicU64, now: u64) -> bool {
        let l = learned.load(Ordering::Relaxed);
        l != 0
            && now.saturating_sub(l)
                > self
                    .neigh
                    .reachable_ns
                    .saturating_add(self.neigh.retry_ns.saturating_mul(3))
    }

    /// Handle an ARP frame (Ethernet header included) received on the core port,
    /// whose MAC is `our_mac`, at `now` (ns). On [`ArpVerdict::Reply`] the frame holds
    /// the reply (addresses swapped, our MAC as sender and Ethernet source).
    pub fn input(&self, frame: &mut [u8], our_mac: [u8; 6], now: u64) -> ArpVerdict {
        let Some(body) = frame.get_mut(ETH..) else {
            return ArpVerdict::Malformed;
        };
        let Ok(mut a) = arp::Packet::new_checked(body) else {
            return ArpVerdict::Malformed;
        };
        if a.hardware_type() != arp::HTYPE_ETHERNET
            || a.protocol_type() != EtherType::IPV4
            || a.hardware_len() != 6
            || a.protocol_len() != 4
        {
            return ArpVerdict::Malformed;
        }
        let (Some(spa), Some(tpa), Ok(sha)) = (
            ipv4_of(a.source_protocol_addr()),
            ipv4_of(a.target_protocol_addr()),
            <[u8; 6]>::try_from(a.source_hardware_addr()),
        ) else {
            return ArpVerdict::Malformed;
        };
        if sha[0] & 1 == 1 || spa.is_broadcast() || spa.is_multicast() {
            return ArpVerdict::BadSender;
        }
        if spa == self.ip {
            if sha != our_mac {
                ArpStats::inc(&self.stats.conflicts);
                return ArpVerdict::Conflict;
            }
            return ArpVerdict::NotForUs;
        }
        let mut learned = false;
        if Some(spa) == self.gateway && self.neigh.learn(key_v4(spa), sha, now) {
            self.learned.store(now.max(1), Ordering::Relaxed);
            ArpStats::inc(&self.stats.learned);
            learned = true;
        }
        if tpa != self.ip || a.operation() != Operation::REQUEST {
            return if learned {
                ArpVerdict::Learned
            } else {
                ArpVerdict::NotForUs
            };
        }
        a.set_operation(Operation::REPLY);
        a.set_target_hardware_addr(&sha);
        a.set_target_protocol_addr(&spa.octets());
        a.set_source_hardware_addr(&our_mac);
        a.set_source_protocol_addr(&tpa.octets());
        if let Some(eth) = frame.get_mut(0..12) {
            eth[0..6].copy_from_slice(&sha);
            eth[6..12].copy_from_slice(&our_mac);
        }
        ArpStats::inc(&self.stats.replies);
        ArpVerdict::Reply
    }

    /// A refresh is due: the binding is older than 3/4 of the reachable time and no
    /// request went out within the retry interval. Claims the request slot.
    fn refresh_due(&self, now: u64) -> bool {
        self.refresh_due_at(&self.learned, &self.asked, now)
    }

    fn refresh_due_at(&self, learned: &AtomicU64, asked: &AtomicU64, now: u64) -> bool {
        let l = learned.load(Ordering::Relaxed);
        if l == 0 || now.saturating_sub(l) < self.neigh.reachable_ns / 4 * 3 {
            return false;
        }
        self.claim_at(asked, now)
    }

    fn claim(&self, now: u64) -> bool {
        self.claim_at(&self.asked, now)
    }

    fn claim_at(&self, asked: &AtomicU64, now: u64) -> bool {
        let last = asked.load(Ordering::Relaxed);
        if last != 0 && now.saturating_sub(last) < self.neigh.retry_ns {
            return false;
        }
        asked
            .compare_exchange(last, now.max(1), Ordering::AcqRel, Ordering::Relaxed)
            .is_ok()
    }

    /// The IPv6 gateway's MAC if resolved and not expired at `now` (ns).
    pub fn gateway6_mac_at(&self, now: u64) -> Option<[u8; 6]> {
        let m = self.neigh.lookup(key_v6(&self.gateway6?))?;
        (!self.expired_at(&self.learned6, now)).then_some(m)
    }

    /// The next hop for an upstream IPv6 packet at `now` (ns): [`NextHop::Static`]
    /// without `core_gateway6` (the caller then uses the IPv4 next hop).
    #[inline]
    pub fn next_hop6(&self, now: u64) -> NextHop {
        if self.gateway6.is_none() {
            return NextHop::Static;
        }
        match self.gateway6_mac_at(now) {
            Some(mac) => NextHop::Mac {
                mac,
                refresh: self.refresh_due_at(&self.learned6, &self.asked6, now),
            },
            None if self.claim_at(&self.asked6, now) => NextHop::Request,
            None => NextHop::Pending,
        }
    }

    /// Periodic work for the IPv6 gateway: true when a solicitation should go now.
    pub fn poll6(&self, now: u64) -> bool {
        match self.next_hop6(now) {
            NextHop::Static | NextHop::Pending => false,
            NextHop::Request => true,
            NextHop::Mac { refresh, .. } => refresh,
        }
    }

    /// Learn the IPv6 gateway's MAC from a Neighbor Advertisement (its target) or a
    /// solicitation it sent (its source), RFC 4861 §7.2.5 / §7.2.3; `mac` is the
    /// link-layer address option. True when learned.
    pub fn learn6(&self, addr: Ipv6Addr, mac: [u8; 6], now: u64) -> bool {
        if Some(addr) != self.gateway6 || mac[0] & 1 == 1 {
            return false;
        }
        if self.neigh.learn(key_v6(&addr), mac, now) {
            self.learned6.store(now.max(1), Ordering::Relaxed);
            ArpStats::inc(&self.stats.learned6);
            return true;
        }
        false
    }

    /// Fill `pkt` with a multicast Neighbor Solicitation for the IPv6 gateway (to its
    /// solicited-node address, RFC 4861 §7.2.2) from `ip6` and `our_mac`, with our
    /// Source Link-Layer Address option. False without a gateway or room.
    pub fn build_ns(&self, pkt: &mut Pkt, our_mac: [u8; 6]) -> bool {
        let (Some(src), Some(target)) = (self.ip6, self.gateway6) else {
            return false;
        };
        let t = target.octets();
        let dst = Ipv6Addr::new(
            0xff02,
            0,
            0,
            0,
            0,
            1,
            0xff00 | u16::from(t[13]),
            u16::from_be_bytes([t[14], t[15]]),
        );
        let mut f = [0u8; 14 + 40 + 32];
        f[0..6].copy_from_slice(&[0x33, 0x33, 0xff, t[13], t[14], t[15]]);
        f[6..12].copy_from_slice(&our_mac);
        f[12..14].copy_from_slice(&[0x86, 0xdd]);
        let ip = &mut f[14..];
        ip[0] = 0x60;
        ip[4..6].copy_from_slice(&32u16.to_be_bytes());
        ip[6] = 58;
        ip[7] = 255;
        ip[8..24].copy_from_slice(&src.octets());
        ip[24..40].copy_from_slice(&dst.octets());
        let icmp = &mut ip[40..];
        icmp[0] = 135;
        icmp[8..24].copy_from_slice(&t);
        icmp[24..26].copy_from_slice(&[1, 1]);
        icmp[26..32].copy_from_slice(&our_mac);
        dataplane::proto::icmpv6::Packet::new_unchecked(&mut icmp[..]).fill_checksum(&src, &dst);
        if pkt.copy_from(&f).is_err() {
            return false;
        }
        ArpStats::inc(&self.stats.ns_sent);
        true
    }

    /// The next hop for an upstream packet at `now` (ns).
    #[inline]
    pub fn next_hop(&self, now: u64) -> NextHop {
        if self.gateway.is_none() {
            return NextHop::Static;
        }
        match self.gateway_mac_at(now) {
            Some(mac) => NextHop::Mac {
                mac,
                refresh: self.refresh_due(now),
            },
            None if self.claim(now) => NextHop::Request,
            None => NextHop::Pending,
        }
    }

    /// Periodic work at `now` (ns): true when a request for the gateway should be
    /// sent now (unresolved at start or after expiry, or a refresh is due).
    pub fn poll(&self, now: u64) -> bool {
        match self.next_hop(now) {
            NextHop::Static | NextHop::Pending => false,
            NextHop::Request => true,
            NextHop::Mac { refresh, .. } => refresh,
        }
    }

    /// Fill `pkt` with a broadcast ARP request for the gateway from `our_mac`
    /// (the engine's `arp::build_request`). False when there is no gateway or the
    /// buffer is too small.
    pub fn build_request(&self, pkt: &mut Pkt, our_mac: [u8; 6]) -> bool {
        let Some(gw) = self.gateway else {
            return false;
        };
        let ok = dataplane::stages::arp::build_request(pkt, our_mac, self.ip, gw);
        if ok {
            ArpStats::inc(&self.stats.requests);
        }
        ok
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use alloc::vec::Vec;

    const S: u64 = 1_000_000_000;
    const US: [u8; 6] = [2, 0, 0, 0, 0, 0xc];
    const GW: [u8; 6] = [2, 0, 0, 0, 0, 0xd];

    fn arp_frame(op: u16, sha: [u8; 6], spa: [u8; 4], tpa: [u8; 4]) -> Vec<u8> {
        let mut f = alloc::vec![0xff; 6];
        f.extend_from_slice(&sha);
        f.extend_from_slice(&[8, 6, 0, 1, 8, 0, 6, 4]);
        f.extend_from_slice(&op.to_be_bytes());
        f.extend_from_slice(&sha);
        f.extend_from_slice(&spa);
        f.extend_from_slice(&[0; 6]);
        f.extend_from_slice(&tpa);
        f
    }

    fn link() -> CoreLink {
        CoreLink::new(
            Ipv4Addr::new(198, 51, 100, 1),
            24,
            Some(Ipv4Addr::new(198, 51, 100, 254)),
        )
        .with_timers(100 * S, S)
    }

    #[test]
    fn answers_requests_for_core_ip_only() {
        let l = link();
        let host = [2, 9, 9, 9, 9, 9];
        let mut f = arp_frame(1, host, [198, 51, 100, 7], [198, 51, 100, 1]);
        assert_eq!(l.input(&mut f, US, S), ArpVerdict::Reply);
        assert_eq!(&f[0..6], &host);
        assert_eq!(&f[6..12], &US);
        assert_eq!(&f[20..22], &[0, 2]);
        assert_eq!(&f[22..28], &US);
        assert_eq!(&f[28..32], &[198, 51, 100, 1]);
        assert_eq!(&f[32..38], &host);
        assert_eq!(&f[38..42], &[198, 51, 100, 7]);
        // Not the gateway: no state created.
        assert_eq!(l.gateway_mac(), None);
        let mut other = arp_frame(1, host, [198, 51, 100, 7], [198, 51, 100, 2]);
        assert_eq!(l.input(&mut other, US, S), ArpVerdict::NotForUs);
        let mut bad = arp_frame(1, [1, 0, 0, 0, 0, 1], [198, 51, 100, 7], [198, 51, 100, 1]);
        assert_eq!(l.input(&mut bad, US, S), ArpVerdict::BadSender);
        let mut conflict = arp_frame(2, host, [198, 51, 100, 1], [198, 51, 100, 1]);
        assert_eq!(l.input(&mut conflict, US, S), ArpVerdict::Conflict);
        assert_eq!(l.input(&mut f[..30], US, S), ArpVerdict::Malformed);
        let mut ipv6ish = arp_frame(1, host, [198, 51, 100, 7], [198, 51, 100, 1]);
        ipv6ish[16] = 0x86;
        assert_eq!(l.input(&mut ipv6ish, US, S), ArpVerdict::Malformed);
        assert_eq!(l.stats.replies.load(Ordering::Relaxed), 1);
        assert_eq!(l.stats.conflicts.load(Ordering::Relaxed), 1);
    }

    #[test]
    fn resolves_refreshes_and_expires_the_gateway() {
        let l = link();
        // Start: unresolved, one request per retry interval.
        assert!(l.poll(S));
        assert!(!l.poll(S + 1));
        assert_eq!(l.next_hop(S + 2), NextHop::Pending);
        assert!(l.poll(2 * S + 2));
        // Gratuitous ARP from the gateway is learned.
        let mut g = arp_frame(1, GW, [198, 51, 100, 254], [198, 51, 100, 254]);
        assert_eq!(l.input(&mut g, US, 3 * S), ArpVerdict::Learned);
        assert_eq!(l.gateway_mac(), Some(GW));
        assert_eq!(l.gateway_mac_at(3 * S), Some(GW));
        assert_eq!(
            l.next_hop(4 * S),
            NextHop::Mac {
                mac: GW,
                refresh: false
            }
        );
        assert!(!l.poll(50 * S), "young binding: no refresh");
        // From 3/4 of the reachable time: refresh requests, still forwarding.
        assert_eq!(
            l.next_hop(80 * S),
            NextHop::Mac {
                mac: GW,
                refresh: true
            }
        );
        assert!(!l.poll(80 * S + 1), "rate limited");
        assert!(l.poll(82 * S));
        // A reply refreshes the binding.
        let mut r = arp_frame(2, GW, [198, 51, 100, 254], [198, 51, 100, 1]);
        assert_eq!(l.input(&mut r, US, 83 * S), ArpVerdict::Learned);
        assert!(!l.poll(84 * S));
        // No more answers: stale after the reachable time, invalidated after three
        // unanswered retries, then requested again.
        let mut t = 160 * S;
        let mut gone = false;
        while t < 200 * S {
            let _ = l.next_hop(t);
            l.poll(t);
            if l.gateway_mac_at(t).is_none() {
                gone = true;
                break;
            }
            t += S / 2;
        }
        assert!(gone, "binding never expired");
        assert!(matches!(
            l.next_hop(t + 2 * S),
            NextHop::Request | NextHop::Pending
        ));
    }

    #[test]
    fn static_without_gateway_and_request_frame() {
        let l = CoreLink::new(Ipv4Addr::new(10, 0, 0, 1), 30, None);
        assert_eq!(l.next_hop(S), NextHop::Static);
        assert!(!l.poll(S));
        assert!(l.on_link(Ipv4Addr::new(10, 0, 0, 2)));
        assert!(!l.on_link(Ipv4Addr::new(10, 0, 0, 5)));
        let pool = dataplane::buf::Pool::new(4).unwrap();
        let mut p = pool.alloc().unwrap();
        assert!(!l.build_request(&mut p, US));
        let g = link();
        assert!(g.build_request(&mut p, US));
        let d = p.data();
        assert_eq!(&d[0..6], &[0xff; 6]);
        assert_eq!(&d[12..14], &[8, 6]);
        assert_eq!(&d[20..22], &[0, 1]);
        assert_eq!(&d[28..32], &[198, 51, 100, 1]);
        assert_eq!(&d[38..42], &[198, 51, 100, 254]);
        pool.free(p);
    }
}
