//! The control plane's IPv6 (RFC 5072 over PPP): the session's /64 from RADIUS
//! (RFC 3162 §2.3–§2.4) or a pool, Router Advertisements (RFC 4861 §6.2, RDNSS
//! RFC 8106), Router and Neighbor Solicitations for our link-local address, echo.

use super::*;

impl ControlPlane {
    /// The session's /64 at Access-Accept (only when IPv6CP is enabled):
    /// Framed-IPv6-Prefix if it is a /64 (taken from its pool when one holds it), else
    /// Framed-IPv6-Pool, else the default IPv6 pool; 0 when none is configured or the
    /// pool is exhausted (the session is then IPv4-only); `None` when the
    /// Framed-IPv6-Prefix cannot be honoured (martian, ours, or held by another
    /// session: the session is rejected, RFC 6929 §2.8).
    pub(super) fn alloc_prefix6(&mut self, reply: &Reply) -> Option<u64> {
        if !self.link.ipv6cp {
            return Some(0);
        }
        if let Some((p, 64)) = reply.ipv6_prefix() {
            let p = (p >> 64) as u64;
            return self.pools6.take(Prefix64(p)).ok().map(|_| p);
        }
        if self.pools6.is_empty() && reply.framed_ipv6_pool.is_none() {
            return Some(0);
        }
        match self.pools6.alloc(reply.framed_ipv6_pool.as_deref()) {
            Ok(p) => Some(p.0),
            Err(_) => {
                self.stats.pool6_exhausted += 1;
                Some(0)
            }
        }
    }

    /// IPv6CP went down while the link stays: stop routing the /64 and stop the RAs.
    /// The prefix stays allocated to the session, so IPv6CP coming back up gets the
    /// same /64 (accounting and CoA keep naming it).
    pub(super) fn ipv6_down(&mut self, idx: u32) {
        self.dhcp6_withdraw(idx);
        let Some(Some(e)) = self.slots.get_mut(idx as usize) else {
            return;
        };
        if e.ipv6_up && e.prefix6 != 0 {
            self.fib.push(FibUpdate::Remove6 {
                idx,
                prefix: e.prefix6,
            });
        }
        e.ipv6_up = false;
        e.next_ra = None;
    }

    /// IPv6CP opened: route the /64 to the session and announce it (RFC 4861 §6.2.4:
    /// an initial advertisement, then every `ra_interval_s`).
    pub(super) fn ipv6_up(&mut self, idx: u32, now: u64) {
        // An IPv6-only session (IPCP gave up or was closed) is installed here; while
        // IPCP still negotiates, its opening installs the session (one update, with
        // the address) and the /64 waits for it.
        if matches!(self.slots.get(idx as usize),
            Some(Some(e)) if !e.installed && !e.ppp().is_some_and(|p| p.link.ipcp_alive()))
        {
            self.install(idx, now);
        }
        let Some(Some(e)) = self.slots.get_mut(idx as usize) else {
            return;
        };
        e.ipv6_up = true;
        if e.prefix6 == 0 {
            return;
        }
        let router_iid = e
            .ppp()
            .and_then(|p| p.link.ipv6cp.as_ref())
            .map_or(0, |f| f.neg.our_id);
        self.fib.push(FibUpdate::Add6 {
            idx,
            prefix: e.prefix6,
            router_iid,
        });
        self.send_ra(idx, crate::nd::ALL_NODES, now);
    }

    /// Send a Router Advertisement for the session's /64 to `dst` over its PPP link,
    /// and schedule the next unsolicited one.
    pub(super) fn send_ra(&mut self, idx: u32, dst: u128, now: u64) {
        let interval = self.ra.interval_ms;
        let Some(Some(e)) = self.slots.get_mut(idx as usize) else {
            return;
        };
        if matches!(e.access, Access::Ipoe(_)) {
            // IPoE: over Ethernet, while DHCPv6 binds something to the subscriber.
            let (key, up) = (e.key, e.ipv6_up);
            e.next_ra = (interval > 0 && up).then_some(now + interval);
            if up {
                self.ipoe_send_ra(&key, dst);
            }
            return;
        }
        let Some(our_iid) = e
            .ppp()
            .and_then(|p| p.link.ipv6cp.as_ref())
            .map(|f| f.neg.our_id)
        else {
            return;
        };
        if !e.ipv6_up || e.prefix6 == 0 {
            return;
        }
        let (prefix, mtu) = (e.prefix6, e.mtu());
        e.next_ra = (interval > 0).then_some(now + interval);
        let p = self.ra.params(prefix, mtu, None);
        let mut f = Vec::with_capacity(128);
        crate::nd::router_advertisement(our_iid, dst, &p, &mut f);
        self.stats.ra_sent += 1;
        self.send_ppp(idx, &f);
    }

    /// An IPv6 datagram the fast path punted (link-local, multicast or ND): answer
    /// Router Solicitations with an RA and Neighbor Solicitations for our link-local
    /// address with an NA; drop the rest (counted).
    pub(super) fn ipv6_input(&mut self, idx: u32, ip: &[u8], now: u64) {
        // DHCPv6 (prefix delegation) goes to the DHCPv6 server.
        if self.dhcp6_input(idx, ip, now) {
            return;
        }
        let (our_ll, up) = match self.slots.get(idx as usize) {
            Some(Some(e)) => (
                e.ppp()
                    .and_then(|p| p.link.ipv6cp.as_ref())
                    .map(|f| crate::nd::link_local(f.neg.our_id)),
                e.ipv6_up,
            ),
            _ => (None, false),
        };
        let (Some(our_ll), true) = (our_ll, up) else {
            self.stats.ipv6_dropped += 1;
            return;
        };
        match crate::nd::parse(ip) {
            Ok(crate::nd::Nd::RouterSolicit { src }) => {
                // RFC 4861 §6.2.6: answer a solicitation from an address unicast (at
                // most one a second per session), from the unspecified address to
                // all-nodes (at most one per MIN_DELAY_BETWEEN_RAS = 3 s).
                self.stats.rs_received += 1;
                let (dst, gap) = if src == 0 {
                    (crate::nd::ALL_NODES, 3000)
                } else {
                    (src, 1000)
                };
                let last = match self.slots.get_mut(idx as usize) {
                    Some(Some(e)) => &mut e.last_solicited_ra,
                    _ => return,
                };
                if last.is_some_and(|t| now < t + gap) {
                    self.stats.rs_rate_limited += 1;
                    return;
                }
                *last = Some(now);
                self.send_ra(idx, dst, now);
                self.schedule(idx);
            }
            Ok(crate::nd::Nd::NeighborSolicit { src, target }) if target == our_ll => {
                // RFC 4861 §7.2.4: to the source, or all-nodes when it is unspecified.
                let dst = if src == 0 { crate::nd::ALL_NODES } else { src };
                let mut f = Vec::with_capacity(72);
                crate::nd::neighbor_advertisement(our_ll, dst, &mut f);
                self.stats.na_sent += 1;
                self.send_ppp(idx, &f);
            }
            _ => {
                let mut f = Vec::new();
                if crate::nd::echo_reply(ip, our_ll, &mut f) {
                    self.stats.echo6_replies += 1;
                    self.send_ppp(idx, &f);
                } else {
                    self.stats.ipv6_dropped += 1;
                }
            }
        }
    }
}
