//! IPv6 for IPoE subscribers (issue 15 items 4 and 5; `ipoe.dhcp6 = true`): IPv6
//! over Ethernet (RFC 2464) on the access port, addressed by the built-in DHCPv6
//! server (`[dhcp6]`, RFC 8415) and run by the same subscriber core as DHCPv4.
//!
//! * **Router discovery.** A Router Solicitation (RFC 4861 §6.2.6) is answered with a
//!   Router Advertisement from our access link-local address (`fe80::` + modified
//!   EUI-64 of the access MAC, RFC 4291 §2.5.1) carrying the M/O flags as configured
//!   (`ra_managed`, `ra_other`, §4.2), our Source Link-Layer Address (§4.6.1), the
//!   MTU and RDNSS (RFC 8106) but no Prefix Information: subscribers share no
//!   on-link prefix, so every packet goes through the BNG (anti-spoofing, policing).
//!   At most one solicited RA per second per subscriber (3 s to all-nodes); lines
//!   without a session share a token bucket. Bound subscribers also get the periodic
//!   unsolicited RAs of `ra_interval_s`.
//! * **Neighbor Discovery.** Neighbor Solicitations for our link-local address get
//!   a Neighbor Advertisement with the Target Link-Layer Address option (§7.2.4);
//!   others (duplicate address detection of a subscriber's own address) are not
//!   answered. Echo Requests to our link-local address are answered (RFC 4443 §4.2).
//! * **DHCPv6.** A Solicit, Request, Renew or Rebind from a line without a session
//!   starts one as a DHCPDISCOVER does (half-open limits, AAA with the MAC as user
//!   name; the message is held until AAA decides). Release, Decline and
//!   Information-request without a session go to the server, which answers or counts
//!   them; Relay-forward from a subscriber line is dropped (`relay_dropped`). The
//!   server's line key is the access line with session id 0.
//! * **Bindings.** An IA_NA address is routed to the subscriber as a /128
//!   (`FibUpdate::AddAddr6`) and is a source it may use; an IA_PD prefix is routed as
//!   over PPPoE (`FibUpdate::AddPd`). The first binding installs an IPv6-only
//!   subscriber (accounting starts). A binding released, declined or run out is
//!   withdrawn; when it was the subscriber's last address (no DHCPv4 lease, no other
//!   binding) the session ends with the matching Acct-Terminate-Cause.

use super::*;
use crate::dhcp6::{self, Assigned, ClientKey};
use core::net::Ipv6Addr;
use dataplane::proto::ethernet::MacAddr;

/// Router Solicitations from lines without a session answered in a burst.
pub(super) const RS_BURST: u32 = 64;
/// ... and per second on average.
const RS_PER_S: u64 = 64;

/// DHCPv6 message types (RFC 8415 §7.3) this module tells apart.
mod msg6 {
    pub const SOLICIT: u8 = 1;
    pub const REQUEST: u8 = 3;
    pub const RENEW: u8 = 5;
    pub const REBIND: u8 = 6;
    pub const RELAY_FORW: u8 = 12;
}

impl ControlPlane {
    /// Whether IPoE subscribers get IPv6 (`ipoe.dhcp6` with a `[dhcp6]` server).
    pub(super) fn ipoe6_enabled(&self) -> bool {
        self.dhcp6.is_some() && self.ipoe.as_ref().is_some_and(|i| i.dhcp6)
    }

    /// Our link-local address on the access link.
    pub(super) fn access_ll(&self) -> u128 {
        u128::from(dhcp6::wire::link_local(MacAddr(self.our_mac)))
    }

    /// IA_NA addresses routed to IPoE subscribers.
    pub fn ipoe_address6_count(&self) -> usize {
        self.slots
            .iter()
            .flatten()
            .filter(|e| e.addr6.is_some())
            .count()
    }

    /// An IPv6 datagram from an IPoE line (punted by the fast path: link-local,
    /// multicast or ND).
    pub(super) fn ipoe6_input(&mut self, key: &AccessKey, ip: &[u8], now: u64) {
        if !self.ipoe6_enabled() {
            self.stats.ipv6_dropped += 1;
            return;
        }
        match dhcp6::wire::decap_ipv6(ip) {
            Ok(req) => {
                self.ipoe_dhcp6(key, req.src, req.message, now);
                return;
            }
            Err(dataplane::proto::Error::Unsupported) => {}
            Err(_) => {
                self.stats.malformed += 1;
                return;
            }
        }
        let our_ll = self.access_ll();
        let idx = self.by_key.get(&(*key, 0)).copied();
        match crate::nd::parse(ip) {
            Ok(crate::nd::Nd::RouterSolicit { src }) => {
                self.stats.rs_received += 1;
                let (dst, gap) = if src == 0 {
                    (crate::nd::ALL_NODES, 3000)
                } else {
                    (src, 1000)
                };
                let admitted = match idx {
                    Some(idx) => match self.slots.get_mut(idx as usize) {
                        Some(Some(e)) if e.last_solicited_ra.is_none_or(|t| now >= t + gap) => {
                            e.last_solicited_ra = Some(now);
                            true
                        }
                        _ => false,
                    },
                    None => self.rs_bucket_take(now),
                };
                if !admitted {
                    self.stats.rs_rate_limited += 1;
                    return;
                }
                self.ipoe_send_ra(key, dst);
            }
            Ok(crate::nd::Nd::NeighborSolicit { src, target }) if target == our_ll => {
                let dst = if src == 0 { crate::nd::ALL_NODES } else { src };
                let mut f = Vec::with_capacity(80);
                crate::nd::neighbor_advertisement_with(our_ll, dst, Some(self.our_mac), &mut f);
                self.stats.na_sent += 1;
                self.send_eth6(key, &f);
            }
            _ => {
                let mut f = Vec::new();
                if crate::nd::echo_reply(ip, our_ll, &mut f) {
                    self.stats.echo6_replies += 1;
                    self.send_eth6(key, &f);
                } else {
                    self.stats.ipv6_dropped += 1;
                }
            }
        }
    }

    /// One token of the no-session RS bucket.
    fn rs_bucket_take(&mut self, now: u64) -> bool {
        let Some(i) = self.ipoe.as_mut() else {
            return false;
        };
        let (tokens, last) = &mut i.rs_bucket;
        let add = now.saturating_sub(*last) * RS_PER_S / 1000;
        if add > 0 {
            *tokens = (u64::from(*tokens) + add).min(u64::from(RS_BURST)) as u32;
            *last = now;
        }
        if *tokens == 0 {
            return false;
        }
        *tokens -= 1;
        true
    }

    /// A nd-builder frame (PPP protocol + IPv6 datagram) sent over Ethernet to `key`.
    fn send_eth6(&mut self, key: &AccessKey, ppp: &[u8]) {
        let Some(ip) = ppp.get(2..) else {
            return;
        };
        let f = self.frame(key, EtherType::IPV6, ip);
        self.tx.push((key.port, f));
    }

    /// A Router Advertisement to `dst` on IPoE line `key`.
    pub(super) fn ipoe_send_ra(&mut self, key: &AccessKey, dst: u128) {
        let p = self.ra.params(0, 1500, Some(self.our_mac));
        let iid = self.access_ll() as u64;
        let mut f = Vec::with_capacity(128);
        crate::nd::router_advertisement(iid, dst, &p, &mut f);
        self.stats.ra_sent += 1;
        self.send_eth6(key, &f);
    }

    /// A DHCPv6 message from IPoE line `key`.
    fn ipoe_dhcp6(&mut self, key: &AccessKey, src: Ipv6Addr, msg: &[u8], now: u64) {
        let kind = msg.first().copied().unwrap_or(0);
        if kind == msg6::RELAY_FORW {
            // Relay agents sit on the network side, not on a subscriber's line.
            self.stats.relay_dropped += 1;
            return;
        }
        if let Some(idx) = self.by_key.get(&(*key, 0)).copied() {
            let authorized =
                matches!(self.slots.get(idx as usize), Some(Some(e)) if !e.waiting_for_aaa());
            if authorized {
                self.ipoe_dhcp6_serve(idx, src, msg, now);
            } else if let Some(i) = self.ipoe.as_mut() {
                i.held6.insert(idx, (src, msg.to_vec()));
            }
            return;
        }
        if !matches!(
            kind,
            msg6::SOLICIT | msg6::REQUEST | msg6::RENEW | msg6::REBIND
        ) {
            // No session: the server answers (Information-request) or counts it.
            self.dhcp6_reply(key, src, msg, now);
            return;
        }
        let Some(user) = self.ipoe_mac_username(key) else {
            self.stats.ipoe_no_username += 1;
            return;
        };
        let Some(idx) = self.ipoe_open(key, user.clone(), now) else {
            return;
        };
        if let Some(i) = self.ipoe.as_mut() {
            i.held6.insert(idx, (src, msg.to_vec()));
        }
        self.ipoe_aaa(idx, user, now);
    }

    /// A DHCPv6 message of authorised IPoE session `idx` to the server.
    pub(super) fn ipoe_dhcp6_serve(&mut self, idx: u32, src: Ipv6Addr, msg: &[u8], now: u64) {
        let Some(Some(e)) = self.slots.get(idx as usize) else {
            return;
        };
        let key = e.key;
        self.dhcp6_reply(&key, src, msg, now);
    }

    /// The server handles `msg` from line `key`; its reply goes back on the line.
    fn dhcp6_reply(&mut self, key: &AccessKey, src: Ipv6Addr, msg: &[u8], now: u64) {
        let our_ll = Ipv6Addr::from(self.access_ll());
        let line = super::dhcp6::line_key(key, 0);
        let Some(d) = self.dhcp6.as_mut() else {
            return;
        };
        let h = d.server.handle(now, &line, src, msg);
        if let Some(r) = &h.reply {
            if let Ok(dg) = dhcp6::wire::encap_ipv6(r, our_ll) {
                let f = self.frame(key, EtherType::IPV6, &dg);
                self.tx.push((key.port, f));
            }
        }
        for ev in h.events {
            self.dhcp6_event(ev, now);
        }
    }

    /// A DHCPv6 binding event of IPoE session `idx`: `bound` what a Reply bound or
    /// renewed, `gone` what was released, declined or ran out (`cause` says which).
    pub(super) fn ipoe6_event(
        &mut self,
        idx: u32,
        bound: Option<Assigned>,
        gone: Option<Assigned>,
        client: ClientKey,
        cause: u32,
        now: u64,
    ) {
        let pd_len = self.dhcp6.as_ref().map_or(0, |d| d.pd_len);
        let router_iid = self.access_ll() as u64;
        let Some(Some(e)) = self.slots.get_mut(idx as usize) else {
            return;
        };
        match (bound, gone) {
            (Some(Assigned::Address(a)), _) => {
                let a = u128::from(a);
                if let Some((old, _)) = e.addr6.take() {
                    if old != a {
                        self.fib.push(FibUpdate::RemoveAddr6 { idx, addr: old });
                    }
                }
                e.addr6 = Some((a, client));
                // The session first (an IPv6-only subscriber is installed now).
                self.ipoe6_up(idx, now);
                self.fib.push(FibUpdate::AddAddr6 {
                    idx,
                    addr: a,
                    router_iid,
                });
            }
            (Some(Assigned::Prefix(p)), _) if p.len() == pd_len => {
                let hi = (u128::from(p.network()) >> 64) as u64;
                if let Some((old, _, _)) = e.pd.take() {
                    if old != hi {
                        self.fib.push(FibUpdate::RemovePd { idx, prefix: old });
                    }
                }
                e.pd = Some((hi, p.len(), client));
                self.ipoe6_up(idx, now);
                self.fib.push(FibUpdate::AddPd {
                    idx,
                    prefix: hi,
                    len: p.len(),
                });
            }
            (None, Some(Assigned::Address(a))) => {
                let a = u128::from(a);
                if e.addr6.as_ref().is_some_and(|(x, _)| *x == a) {
                    e.addr6 = None;
                    self.fib.push(FibUpdate::RemoveAddr6 { idx, addr: a });
                    self.ipoe6_gone(idx, cause, now);
                }
            }
            (None, Some(Assigned::Prefix(p))) => {
                let hi = (u128::from(p.network()) >> 64) as u64;
                if e.pd.as_ref().is_some_and(|(x, _, _)| *x == hi) {
                    e.pd = None;
                    self.fib.push(FibUpdate::RemovePd { idx, prefix: hi });
                    self.ipoe6_gone(idx, cause, now);
                }
            }
            _ => {}
        }
    }

    /// A binding made IPoE session `idx` IPv6-capable: out of half-open, installed
    /// if it was not (an IPv6-only subscriber), RAs started.
    fn ipoe6_up(&mut self, idx: u32, now: u64) {
        let Some(Some(e)) = self.slots.get_mut(idx as usize) else {
            return;
        };
        let first = !e.ipv6_up;
        e.ipv6_up = true;
        let key = e.key;
        let (installed, was_half_open) = match &mut e.access {
            Access::Ipoe(i) => (e.installed, i.half_open.take().is_some()),
            Access::Pppoe(_) => (e.installed, false),
        };
        if was_half_open {
            self.half_open.leave(&key);
        }
        if !installed {
            self.install(idx, now);
        }
        if first {
            self.send_ra(idx, crate::nd::ALL_NODES, now);
            self.schedule(idx);
        }
    }

    /// A binding of IPoE session `idx` went away: IPv6 stops when it was the last
    /// one, and the session ends when it has no DHCPv4 lease either.
    fn ipoe6_gone(&mut self, idx: u32, cause: u32, now: u64) {
        let Some(Some(e)) = self.slots.get_mut(idx as usize) else {
            return;
        };
        if e.addr6.is_some() || e.pd.is_some() {
            return;
        }
        e.ipv6_up = false;
        e.next_ra = None;
        if !e.ipv4_up {
            self.remove_with(idx, cause, false, now);
        }
    }
}
