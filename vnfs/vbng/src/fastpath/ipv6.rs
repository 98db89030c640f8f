//! IPv6 in the vBNG fast path (a child module of [`crate::fastpath`], sharing its
//! session table, policers and counters).
//!
//! Upstream: a PPPoE session frame (RFC 2516 §6) carrying PPP protocol 0x0057 (IPv6,
//! RFC 5072 §2) is looked up by the same O(1) access key as IPv4. Link-local traffic,
//! multicast destinations and ICMPv6 Neighbor Discovery (RFC 4861 types 133–137) are
//! punted to the control plane (Router Solicitations are answered there, over PPP,
//! RFC 5072 §5). Anything else must come from the session's /64 (anti-spoofing: the
//! subscriber forms its address from the advertised prefix and its IPv6CP interface
//! identifier), is policed by the subscriber's upstream token bucket, its hop limit
//! decremented (RFC 8200 §3; on expiry an ICMPv6 Time Exceeded, RFC 4443 §3.3, goes
//! back inside the session from the BNG's link-local address, rate limited by the
//! stage's ICMP token bucket, and the packet is a counted `ttl-exceeded` drop) and
//! re-framed in
//! place as Ethernet 0x86DD towards the core next hop (the IPv4 next hop's MAC: the
//! static one or the one the core link resolved by ARP; IPv6 ND on the core link is
//! not done).
//!
//! Downstream: IPv6 from the core whose destination's upper 64 bits are a session's
//! prefix is found in O(1) (a hash table keyed by those 64 bits, pre-sized at start),
//! hop-limit checked and decremented, checked against the session MTU, policed and
//! encapsulated in place into PPPoE/PPP 0x0057. Expired hop limits and packets too big
//! for the session are counted drops (`ttl-exceeded`, `too-big`); with a core IPv6
//! address (`core_ip6`, [`FastPath::with_core_ip6`]) they also earn an ICMPv6 Time
//! Exceeded (RFC 4443 §3.3) or Packet Too Big with the session MTU (§3.2, for path
//! MTU discovery, RFC 8201) to the sender, via the core router that delivered them.
//! Neighbor Solicitations on the core link for `core_ip6` or our link-local address
//! (`fe80::` + modified EUI-64 of the core MAC) are answered in place with a Neighbor
//! Advertisement (RFC 4861 §7.2.4), so the core router can resolve its next hop to
//! the subscriber prefixes. Upstream IPv6 goes to `core_gateway6`, resolved by our
//! own Neighbor Solicitations (RFC 4861 §7.2.2, learned from its NA or its NS,
//! refreshed like the IPv4 gateway, see `corelink`), or without it to the IPv4 next
//! hop's MAC (static or resolved by ARP).
//!
//! IPoE subscribers (`ipoe.dhcp6`, [`FastPath::with_ipoe6`]): IPv6 over Ethernet
//! (RFC 2464) from the access port is looked up by port, MAC and VLANs (session id
//! 0); ND, link-local and multicast are punted; the source must be the subscriber's
//! DHCPv6 IA_NA address (RFC 8415 §6.2) or in its delegated prefix. Downstream, a
//! destination outside every /64 is looked up as a /128 in the address table, then
//! by delegated prefix, and framed as Ethernet 0x86DD with the line's VLANs.
//!
//! Tables change only through [`FibUpdate::Add6`]/[`FibUpdate::Remove6`] from the
//! lock-free update queue; nothing here allocates or locks.

use super::{
    inc, FastPath, KeyHash, E_CORE_CONTROL, E_HEADROOM, E_IPV6, E_LOCAL, E_MALFORMED,
    E_ND_CONSUMED, E_NO_ROUTE, E_NO_SESSION, E_POLICE_DOWN, E_POLICE_UP, E_SPOOF, E_TTL,
    E_UNRESOLVED,
};
use crate::access::AccessHdr;
use crate::control::FibUpdate;
use crate::nd::is_link_local;
use alloc::vec::Vec;
use core::net::Ipv6Addr;
use dataplane::batch::{Next, Out};
use dataplane::buf::Pkt;
use dataplane::proto::ethernet::Vlans;
use dataplane::proto::icmpv6::{self, ErrorKind};
use hashbrown::HashMap;

/// Too big for the session MTU (index of `too-big` in [`super::ERRORS`]).
use super::E_TOO_BIG;

/// The IPv6 tables of one fast-path instance.
pub(super) struct Tables {
    by_prefix: HashMap<u64, u32, KeyHash>,
    /// Per session slot: upper 64 bits of its /64, 0 = none.
    prefix: Vec<u64>,
    /// Per session slot: the BNG's IPv6CP interface identifier on that link (source
    /// `fe80::<id>` of ICMPv6 errors to the subscriber), 0 = none.
    router_iid: Vec<u64>,
    /// Our global address on the core side (source of ICMPv6 errors to the core).
    core_ip6: Option<Ipv6Addr>,
    /// Delegated prefixes (DHCPv6 IA_PD, RFC 8415 §6.3), all of one length: the
    /// mask of their upper 64 bits (0 = no prefix delegation).
    pd_mask: u64,
    pd_len: u8,
    by_pd: HashMap<u64, u32, KeyHash>,
    /// Per session slot: its delegated prefix's upper 64 bits, 0 = none.
    pd: Vec<u64>,
    /// IPoE subscribers' DHCPv6 IA_NA addresses (one /128 each, on a shared link
    /// prefix): sized for every slot by [`FastPath::with_ipoe6`]; empty otherwise.
    by_addr: HashMap<u128, u32, KeyHash>,
    /// Per session slot: its IA_NA address, 0 = none.
    addr: Vec<u128>,
    /// Whether `by_addr` is in use (downstream looks there only then).
    ipoe6: bool,
}

impl Tables {
    /// Tables for `n` session slots.
    pub(super) fn new(n: usize, seed: u64) -> Tables {
        Tables {
            by_prefix: HashMap::with_capacity_and_hasher(n, KeyHash(seed)),
            prefix: alloc::vec![0; n],
            router_iid: alloc::vec![0; n],
            core_ip6: None,
            pd_mask: 0,
            pd_len: 0,
            by_pd: HashMap::with_capacity_and_hasher(0, KeyHash(seed ^ 0x9d)),
            pd: alloc::vec![0; n],
            by_addr: HashMap::with_capacity_and_hasher(0, KeyHash(seed ^ 0x6a)),
            addr: alloc::vec![0; n],
            ipoe6: false,
        }
    }

    /// Prefixes installed.
    pub(super) fn len(&self) -> usize {
        self.by_prefix.len()
    }
}

/// The Neighbor Discovery message of an untagged core frame whose IPv6 datagram is
/// `total` bytes, with its source and destination, if it passes RFC 4861 §7.1's
/// checks: hop limit 255, code 0, the 24-byte NS/NA body, a valid checksum.
fn nd_message(d: &[u8], total: usize) -> Option<(Ipv6Addr, Ipv6Addr, icmpv6::Packet<&[u8]>)> {
    let ip = d.get(14..14 + total)?;
    let (src, dst) = (
        Ipv6Addr::from(u128_at(ip, 8)),
        Ipv6Addr::from(u128_at(ip, 24)),
    );
    let m = icmpv6::Packet::new_checked(ip.get(40..)?).ok()?;
    (ip.get(7) == Some(&255)
        && m.msg_code() == 0
        && ip.len() >= 40 + 24
        && m.verify_checksum(&src, &dst))
    .then_some((src, dst, m))
}

/// The first link-layer address option of `kind` (1 source, 2 target; RFC 4861
/// §4.6.1) with an Ethernet address, from raw ND options; malformed options end the
/// search.
fn link_layer_option(mut opts: &[u8], kind: u8) -> Option<[u8; 6]> {
    while let [t, l, ..] = opts {
        let len = usize::from(*l) * 8;
        if len == 0 || len > opts.len() {
            return None;
        }
        if *t == kind && len == 8 {
            return opts.get(2..8).and_then(|m| <[u8; 6]>::try_from(m).ok());
        }
        opts = &opts[len..];
    }
    None
}

#[inline(always)]
fn u128_at(d: &[u8], at: usize) -> u128 {
    d.get(at..at + 16)
        .and_then(|b| <[u8; 16]>::try_from(b).ok())
        .map_or(0, u128::from_be_bytes)
}

impl FastPath {
    /// Apply an IPv6 table update (other updates are ignored here).
    pub(super) fn apply6(&mut self, u: FibUpdate) {
        match u {
            FibUpdate::Add6 {
                idx,
                prefix,
                router_iid,
            } => {
                if let Some(r) = self.v6.router_iid.get_mut(idx as usize) {
                    *r = router_iid;
                }
                let Some(slot) = self.v6.prefix.get_mut(idx as usize) else {
                    return;
                };
                let old = core::mem::replace(slot, prefix);
                if old != 0 && self.v6.by_prefix.get(&old) == Some(&idx) {
                    self.v6.by_prefix.remove(&old);
                }
                if prefix != 0 {
                    self.v6.by_prefix.insert(prefix, idx);
                }
            }
            FibUpdate::Remove6 { idx, prefix } => {
                if self.v6.by_prefix.get(&prefix) == Some(&idx) {
                    self.v6.by_prefix.remove(&prefix);
                }
                if let Some(s) = self.v6.prefix.get_mut(idx as usize) {
                    if *s == prefix {
                        *s = 0;
                    }
                }
            }
            FibUpdate::AddPd { idx, prefix, len } => {
                // Only the configured length (the control plane refuses others).
                if len != self.v6.pd_len || self.v6.pd_mask == 0 {
                    return;
                }
                let prefix = prefix & self.v6.pd_mask;
                let Some(slot) = self.v6.pd.get_mut(idx as usize) else {
                    return;
                };
                let old = core::mem::replace(slot, prefix);
                if old != 0 && self.v6.by_pd.get(&old) == Some(&idx) {
                    self.v6.by_pd.remove(&old);
                }
                if prefix != 0 {
                    self.v6.by_pd.insert(prefix, idx);
                }
            }
            FibUpdate::AddAddr6 {
                idx,
                addr,
                router_iid,
            } => {
                if !self.v6.ipoe6 {
                    return;
                }
                if let Some(r) = self.v6.router_iid.get_mut(idx as usize) {
                    *r = router_iid;
                }
                let Some(slot) = self.v6.addr.get_mut(idx as usize) else {
                    return;
                };
                let old = core::mem::replace(slot, addr);
                if old != 0 && self.v6.by_addr.get(&old) == Some(&idx) {
                    self.v6.by_addr.remove(&old);
                }
                if addr != 0 {
                    self.v6.by_addr.insert(addr, idx);
                }
            }
            FibUpdate::RemoveAddr6 { idx, addr } => {
                if self.v6.by_addr.get(&addr) == Some(&idx) {
                    self.v6.by_addr.remove(&addr);
                }
                if let Some(s) = self.v6.addr.get_mut(idx as usize) {
                    if *s == addr {
                        *s = 0;
                    }
                }
            }
            FibUpdate::RemovePd { idx, prefix } => {
                let prefix = prefix & self.v6.pd_mask;
                if self.v6.by_pd.get(&prefix) == Some(&idx) {
                    self.v6.by_pd.remove(&prefix);
                }
                if let Some(s) = self.v6.pd.get_mut(idx as usize) {
                    if *s == prefix {
                        *s = 0;
                    }
                }
            }
            _ => {}
        }
    }

    /// Installed IPv6 prefixes.
    pub fn prefixes6(&self) -> usize {
        self.v6.len()
    }

    /// Installed delegated prefixes.
    pub fn delegated_prefixes(&self) -> usize {
        self.v6.by_pd.len()
    }

    /// Route delegated prefixes (DHCPv6 IA_PD, RFC 8415 §6.3) of length `len` (1 to
    /// 64; 0 = none): downstream, a destination outside every session's /64 is looked
    /// up by its upper `len` bits; upstream, a source in the session's delegated
    /// prefix passes anti-spoofing. The tables are sized for every session slot now.
    pub fn with_prefix_delegation(mut self, len: u8) -> FastPath {
        let len = len.min(64);
        self.v6.pd_len = len;
        self.v6.pd_mask = if len == 0 {
            0
        } else {
            u64::MAX << (64 - u32::from(len))
        };
        if len > 0 {
            let n = self.v6.pd.len();
            self.v6.by_pd.reserve(n);
        }
        self
    }

    /// IPv6 for IPoE subscribers (DHCPv6 IA_NA, RFC 8415 §6.2): each subscriber's
    /// /128 is routed to it downstream and is the source it may use upstream (beside
    /// its delegated prefix). The address table is sized for every session slot now.
    pub fn with_ipoe6(mut self, on: bool) -> FastPath {
        self.v6.ipoe6 = on;
        if on {
            let n = self.v6.addr.len();
            self.v6.by_addr.reserve(n);
        }
        self
    }

    /// Installed IA_NA addresses.
    pub fn addresses6(&self) -> usize {
        self.v6.by_addr.len()
    }

    /// Our IPv6 address on the core side: source of ICMPv6 Time Exceeded and Packet
    /// Too Big sent to the core (none: those packets are silent counted drops).
    pub fn with_core_ip6(mut self, addr: Option<Ipv6Addr>) -> FastPath {
        self.v6.core_ip6 = addr;
        self
    }

    /// Our link-local address on the core link: `fe80::` + the modified EUI-64 of the
    /// core MAC (RFC 4291 §2.5.1, appendix A).
    fn core_link_local6(&self) -> Ipv6Addr {
        let m = self.cfg.core_mac;
        Ipv6Addr::from([
            0xfe,
            0x80,
            0,
            0,
            0,
            0,
            0,
            0,
            m[0] ^ 0x02,
            m[1],
            m[2],
            0xff,
            0xfe,
            m[3],
            m[4],
            m[5],
        ])
    }

    /// A Neighbor Solicitation from the core (RFC 4861 §7.1.1 checks: hop limit 255,
    /// code 0, valid checksum, a target that is not multicast). For `core_ip6` or our
    /// core link-local address it becomes, in place, the Neighbor Advertisement
    /// (§7.2.4: Router and Solicited flags, Override, our MAC as Target Link-Layer
    /// Address; to the soliciting address, or all-nodes when it was `::` for DAD), so
    /// the core router can reach the subscribers' prefixes through us. Any other NS
    /// is counted as not for us.
    /// A Neighbor Advertisement on the core link: learn the IPv6 gateway's MAC from
    /// its Target Link-Layer Address option (RFC 4861 §7.2.5; hop limit 255, code 0
    /// and a valid checksum, §7.1.2). Consumed either way.
    fn neighbor_advertisement(&mut self, p: &mut Pkt, total: usize, now: u64) -> Next {
        let Some(c) = self.core.as_deref() else {
            return Next::Drop(E_LOCAL);
        };
        let Some((_, _, na)) = nd_message(p.data(), total) else {
            return Next::Drop(E_MALFORMED);
        };
        if let Some(mac) = link_layer_option(na.nd_options(), 2) {
            c.learn6(na.target_addr(), mac, now);
        }
        Next::Drop(E_ND_CONSUMED)
    }

    fn neighbor_solicitation(&mut self, p: &mut Pkt, total: usize, now: u64) -> Next {
        let Some(ours) = self.v6.core_ip6 else {
            return Next::Drop(E_LOCAL);
        };
        let ll = self.core_link_local6();
        let cmac = self.cfg.core_mac;
        let d = p.data();
        let Some((src, _, ns)) = nd_message(d, total) else {
            return Next::Drop(E_MALFORMED);
        };
        let target = ns.target_addr();
        // A solicitation from the IPv6 gateway also tells us its MAC (§7.2.3).
        if let (Some(c), Some(mac)) = (self.core.as_deref(), link_layer_option(ns.nd_options(), 1))
        {
            c.learn6(src, mac, now);
        }
        if target != ours && target != ll {
            return Next::Drop(E_LOCAL);
        }
        let dad = src.is_unspecified();
        let mut eth_dst = [0u8; 6];
        eth_dst.copy_from_slice(&d[6..12]);
        let na_dst = if dad {
            eth_dst = [0x33, 0x33, 0, 0, 0, 1];
            Ipv6Addr::from(0xff02_0000_0000_0000_0000_0000_0000_0001u128)
        } else {
            src
        };
        // NA = 24-byte header + an 8-byte Target Link-Layer Address option.
        let len = 40 + 32;
        let extra = p.len().saturating_sub(14 + total);
        if extra > 0 && p.trim(extra).is_err() {
            return Next::Drop(E_MALFORMED);
        }
        if total < len && p.append(len - total).is_err() {
            return Next::Drop(E_MALFORMED);
        }
        if total > len && p.trim(total - len).is_err() {
            return Next::Drop(E_MALFORMED);
        }
        let Some(f) = p.data_mut().get_mut(..14 + len) else {
            return Next::Drop(E_MALFORMED);
        };
        f[0..6].copy_from_slice(&eth_dst);
        f[6..12].copy_from_slice(&cmac);
        let ip = &mut f[14..];
        ip[4..6].copy_from_slice(&32u16.to_be_bytes());
        ip[7] = 255;
        ip[8..24].copy_from_slice(&target.octets());
        ip[24..40].copy_from_slice(&na_dst.octets());
        let icmp = &mut ip[40..];
        icmp[0] = 136;
        icmp[1] = 0;
        // R (router), S (solicited, not for DAD), O (override).
        icmp[4..8].copy_from_slice(&[if dad { 0xa0 } else { 0xe0 }, 0, 0, 0]);
        icmp[24..26].copy_from_slice(&[2, 1]);
        icmp[26..32].copy_from_slice(&cmac);
        let mut na = icmpv6::Packet::new_unchecked(&mut icmp[..32]);
        na.fill_checksum(&target, &na_dst);
        inc(&self.stats.core_na_sent);
        Next::Port(self.cfg.core_port)
    }

    /// An ICMPv6 error about `ip` (a datagram from the core) back to its sender, from
    /// `core_ip6`, framed as untagged Ethernet to `dst_mac`; rate limited.
    fn core_error6(&mut self, out: &mut Out, ip: &[u8], dst_mac: [u8; 6], kind: ErrorKind) {
        let st = &*self.stats;
        let Some(src) = self.v6.core_ip6 else {
            inc(&st.icmp_no_source);
            return;
        };
        let Some(mut e) = out.cache.alloc() else {
            inc(&st.no_buffer);
            return;
        };
        let core_mac = self.cfg.core_mac;
        let built = e.append(14 + icmpv6::MAX_ERROR_LEN).ok().and_then(|b| {
            let (h, body) = b.split_at_mut(14);
            let n = icmpv6::build_error(body, ip, &src, 64, kind).ok()?;
            h[..6].copy_from_slice(&dst_mac);
            h[6..12].copy_from_slice(&core_mac);
            h[12..14].copy_from_slice(&[0x86, 0xdd]);
            Some(n)
        });
        let Some(n) = built else {
            out.cache.free(e);
            inc(&st.icmp_not_allowed);
            return;
        };
        if e.set_len(14 + n).is_err() || !self.icmp_limit.take(out.now_ns) {
            out.cache.free(e);
            inc(&st.icmp_rate_limited);
            return;
        }
        let port = self.cfg.core_port;
        e.meta.port = port;
        if out.emit(port, e) {
            inc(&st.icmp_sent);
        } else {
            inc(&st.no_buffer);
        }
    }

    /// ICMPv6 Time Exceeded (RFC 4443 §3.3, code 0) about `ip` back to subscriber
    /// slot `idx` inside its PPPoE session, from `fe80::<router_iid>`; rate limited,
    /// never about an ICMPv6 error (§2.4(e), checked by the engine's builder).
    fn time_exceeded6(&mut self, out: &mut Out, ip: &[u8], idx: u32, mac: [u8; 6], port: u16) {
        let iid = self.v6.router_iid.get(idx as usize).copied().unwrap_or(0);
        let Some(Some(s)) = self.sess.get(idx as usize) else {
            return;
        };
        let (key, sid) = (s.key, s.sid);
        let st = &*self.stats;
        if iid == 0 {
            inc(&st.icmp_no_source);
            return;
        }
        let Some(mut e) = out.cache.alloc() else {
            inc(&st.no_buffer);
            return;
        };
        let ah = AccessHdr {
            dst: mac,
            src: self.cfg.access_mac,
            vlans: key.vlans,
            sid,
        };
        let hdr = ah.len();
        let src = Ipv6Addr::from(crate::nd::link_local(iid));
        let built = e.append(hdr + icmpv6::MAX_ERROR_LEN).ok().and_then(|b| {
            let (h, body) = b.split_at_mut(hdr);
            let n = icmpv6::build_error(body, ip, &src, 64, ErrorKind::TimeExceeded { code: 0 })
                .ok()?;
            ah.write(h, n, true)?;
            Some(n)
        });
        let Some(n) = built else {
            out.cache.free(e);
            inc(&st.icmp_not_allowed);
            return;
        };
        if e.set_len(hdr + n).is_err() || !self.icmp_limit.take(out.now_ns) {
            out.cache.free(e);
            inc(&st.icmp_rate_limited);
            return;
        }
        e.meta.port = port;
        if out.emit(port, e) {
            inc(&st.icmp_sent);
        } else {
            inc(&st.no_buffer);
        }
    }

    /// Upstream IPv6 over PPPoE: `l2` is the offset of the PPPoE header, `vlans` the
    /// VLAN tags seen, `plen` the PPPoE payload length (PPP protocol included).
    #[allow(clippy::too_many_arguments)]
    #[inline]
    pub(super) fn upstream6(
        &mut self,
        p: &mut Pkt,
        now_ns: u64,
        out: &mut Out,
        l2: usize,
        vlans: Vlans,
        sid: u16,
        plen: usize,
    ) -> Next {
        if plen < 2 + 40 || l2 + 6 + plen > p.data().len() {
            return Next::Drop(E_MALFORMED);
        }
        self.up6(p, now_ns, out, l2 + 8, plen - 2, vlans, sid)
    }

    /// Upstream IPv6 over Ethernet (RFC 2464) from an IPoE subscriber: `l2` is the
    /// offset of the IPv6 header. Neighbor Discovery, link-local and multicast
    /// (DHCPv6 to `ff02::1:2`) are punted to the control plane; the rest must come
    /// from the subscriber's IA_NA address or delegated prefix.
    #[inline]
    pub(super) fn upstream6_ipoe(
        &mut self,
        p: &mut Pkt,
        now_ns: u64,
        out: &mut Out,
        l2: usize,
        vlans: Vlans,
    ) -> Next {
        let avail = p.data().len().saturating_sub(l2);
        if avail < 40 {
            return Next::Drop(E_MALFORMED);
        }
        self.up6(p, now_ns, out, l2, avail, vlans, 0)
    }

    /// Upstream IPv6 of a PPPoE (`sid` ≠ 0) or IPoE (`sid` 0) subscriber: the
    /// datagram at `ip_off`, at most `avail` bytes (the PPPoE payload or the rest of
    /// the frame): control traffic punted, session lookup, anti-spoofing, hop limit,
    /// policer, re-framing to the core.
    #[allow(clippy::too_many_arguments)]
    #[inline(always)]
    fn up6(
        &mut self,
        p: &mut Pkt,
        now_ns: u64,
        out: &mut Out,
        ip_off: usize,
        avail: usize,
        vlans: Vlans,
        sid: u16,
    ) -> Next {
        let d = p.data();
        let Some(ip) = d.get(ip_off..ip_off + avail) else {
            return Next::Drop(E_MALFORMED);
        };
        let total = 40 + usize::from(u16::from_be_bytes([ip[4], ip[5]]));
        if ip[0] >> 4 != 6 || total > ip.len() {
            return Next::Drop(E_MALFORMED);
        }
        let (src, dst) = (u128_at(ip, 8), u128_at(ip, 24));
        // Neighbor Discovery, link-local and multicast belong to the control plane.
        let nd = ip[6] == 58 && matches!(ip.get(40), Some(133..=137));
        if nd || is_link_local(src) || is_link_local(dst) || dst >> 120 == 0xff {
            return Next::Punt;
        }
        let mut mac = [0u8; 6];
        mac.copy_from_slice(&d[6..12]);
        let Some(idx) = self.find_session(p.meta.port, &mac, vlans, sid) else {
            return Next::Drop(E_NO_SESSION);
        };
        if let Some(w) = self.elsewhere(idx) {
            return Next::Handoff(w);
        }
        let i = idx as usize;
        let pfx = self.v6.prefix.get(i).copied().unwrap_or(0);
        let na = self.v6.addr.get(i).copied().unwrap_or(0);
        let hi = (src >> 64) as u64;
        if !((pfx != 0 && hi == pfx) || (na != 0 && src == na)) {
            // Not the session's /64 or address: its delegated prefix, or spoofed.
            let pd = self.v6.pd.get(i).copied().unwrap_or(0);
            if pd == 0 || hi & self.v6.pd_mask != pd {
                let none = pfx == 0 && na == 0 && pd == 0;
                return Next::Drop(if none { E_IPV6 } else { E_SPOOF });
            }
        }
        if ip[7] <= 1 {
            let port = p.meta.port;
            if let Some(off) = ip.get(..total) {
                self.time_exceeded6(out, off, idx, mac, port);
            }
            return Next::Drop(E_TTL);
        }
        let Some(Some(s)) = self.sess.get_mut(idx as usize) else {
            return Next::Drop(E_NO_SESSION);
        };
        if let Some(b) = s.up.as_mut() {
            b.fill(now_ns);
            if !b.take(total) {
                return Next::Drop(E_POLICE_UP);
            }
        }
        // The core next hop: the IPv6 gateway resolved by ND when `core_gateway6` is
        // set; otherwise the same router as IPv4 (the static next hop, or the MAC the
        // core link resolved for the IPv4 gateway).
        let Some(nh) = self.next_hop6(now_ns, out) else {
            return Next::Drop(E_UNRESOLVED);
        };
        self.counters.up(self.me, idx, total as u64);
        let extra = d.len() - (ip_off + total);
        if extra > 0 && p.trim(extra).is_err() {
            return Next::Drop(E_MALFORMED);
        }
        if p.strip(ip_off - 14).is_err() {
            return Next::Drop(E_MALFORMED);
        }
        let core = self.cfg.core_port;
        let src_mac = self.cfg.core_mac;
        let d = p.data_mut();
        d[0..6].copy_from_slice(&nh);
        d[6..12].copy_from_slice(&src_mac);
        d[12] = 0x86;
        d[13] = 0xdd;
        d[14 + 7] -= 1;
        p.meta.l3 = 14;
        p.meta.user = idx;
        Next::Port(core)
    }

    /// Downstream IPv6 (an untagged Ethernet 0x86DD frame from the core).
    #[inline]
    pub(super) fn downstream6(&mut self, p: &mut Pkt, now_ns: u64, out: &mut Out) -> Next {
        let d = p.data();
        let Some(ip) = d.get(14..54) else {
            return Next::Drop(E_MALFORMED);
        };
        let total = 40 + usize::from(u16::from_be_bytes([ip[4], ip[5]]));
        if ip[0] >> 4 != 6 || 14 + total > d.len() {
            return Next::Drop(E_MALFORMED);
        }
        if ip[6] == 58 && d.get(54) == Some(&135) {
            return self.neighbor_solicitation(p, total, now_ns);
        }
        if ip[6] == 58 && d.get(54) == Some(&136) {
            return self.neighbor_advertisement(p, total, now_ns);
        }
        let mut hi = [0u8; 8];
        hi.copy_from_slice(&ip[24..32]);
        let hi = u64::from_be_bytes(hi);
        let found = match self.v6.by_prefix.get(&hi) {
            Some(&i) => Some(i),
            None => {
                let a = if self.v6.ipoe6 {
                    self.v6.by_addr.get(&u128_at(ip, 24)).copied()
                } else {
                    None
                };
                match a {
                    Some(i) => Some(i),
                    None if self.v6.pd_mask != 0 => {
                        self.v6.by_pd.get(&(hi & self.v6.pd_mask)).copied()
                    }
                    None => None,
                }
            }
        };
        let Some(idx) = found else {
            // Link-scope and multicast control (RAs, RSs, Redirects, MLD) from the
            // core routers is not data without a route: counted apart.
            let nd_other = ip[6] == 58 && matches!(d.get(54), Some(133 | 134 | 137));
            let link_scope = ip[24] == 0xff || (ip[24] == 0xfe && ip[25] & 0xc0 == 0x80);
            return Next::Drop(if nd_other || link_scope {
                E_CORE_CONTROL
            } else {
                E_NO_ROUTE
            });
        };
        if let Some(w) = self.elsewhere(idx) {
            return Next::Handoff(w);
        }
        let hop = ip[7];
        let Some(Some(s)) = self.sess.get_mut(idx as usize) else {
            return Next::Drop(E_NO_ROUTE);
        };
        let mtu = s.mtu;
        if hop <= 1 || total > usize::from(mtu) {
            let (kind, why) = if hop <= 1 {
                (ErrorKind::TimeExceeded { code: 0 }, E_TTL)
            } else {
                (
                    ErrorKind::PktTooBig {
                        mtu: u32::from(mtu),
                    },
                    E_TOO_BIG,
                )
            };
            let mut from = [0u8; 6];
            from.copy_from_slice(&d[6..12]);
            if let Some(off) = d.get(14..14 + total) {
                self.core_error6(out, off, from, kind);
            }
            return Next::Drop(why);
        }
        let Some(Some(s)) = self.sess.get_mut(idx as usize) else {
            return Next::Drop(E_NO_ROUTE);
        };
        if let Some(b) = s.down.as_mut() {
            b.fill(now_ns);
            if !b.take(total) {
                return Next::Drop(E_POLICE_DOWN);
            }
        }
        self.counters.down(self.me, idx, total as u64);
        let (key, sid) = (s.key, s.sid);
        let extra = d.len() - (14 + total);
        if extra > 0 && p.trim(extra).is_err() {
            return Next::Drop(E_MALFORMED);
        }
        if p.strip(14).is_err() {
            return Next::Drop(E_MALFORMED);
        }
        if let Some(h) = p.data_mut().get_mut(7) {
            *h -= 1;
        }
        let ah = AccessHdr {
            dst: key.mac,
            src: self.cfg.access_mac,
            vlans: key.vlans,
            sid,
        };
        let hdr = ah.len();
        let Ok(h) = p.prepend(hdr) else {
            return Next::Drop(E_HEADROOM);
        };
        if ah.write(h, total, true).is_none() {
            return Next::Drop(E_MALFORMED);
        }
        p.meta.l3 = hdr as u16;
        p.meta.user = idx;
        Next::Port(key.port)
    }
}

#[cfg(test)]
#[path = "ipv6_tests.rs"]
mod tests;
