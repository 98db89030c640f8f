//! DHCPv6 prefix delegation over PPPoE (issue 15 item 4; RFC 8415 §6.3, §18.3): once
//! IPv6CP is open, the CPE's DHCPv6 messages (UDP to port 547 from its link-local
//! address, inside the PPP session, RFC 5072) go to the built-in DHCPv6 server
//! ([`crate::dhcp6::Server`], `[dhcp6]` in the configuration), whose replies go back
//! in the session from our IPv6CP link-local address. A bound IA_PD prefix is routed
//! to the session by the fast path (`FibUpdate::AddPd`) beside its SLAAC /64; a
//! release, the valid lifetime running out, or the session ending withdraws it.
//!
//! One delegated prefix per session; every prefix pool has the one length the fast
//! path routes. The line key the server sees is the session's access line and PPPoE
//! session id, so a CPE that comes back on a new session asks afresh.

use super::*;
use crate::dhcp6::{self, Assigned, Event as D6Event, LineKey, Server as D6Server};
use core::net::Ipv6Addr;
use dataplane::proto::dhcp6::Duid;

/// The DHCPv6 side of the control plane.
#[derive(Debug, Clone)]
pub(super) struct Dhcp6Ctl {
    pub(super) server: D6Server,
    /// The delegated prefixes' length (the fast path routes one length).
    pub(super) pd_len: u8,
}

impl Dhcp6Ctl {
    /// The server with DUID-LL of our access MAC (RFC 8415 §11.4).
    pub(super) fn new(cfg: &dhcp6::Dhcp6Config, mac: [u8; 6]) -> Result<Dhcp6Ctl, ConfigError> {
        let pd_len = cfg.prefix_pools.first().map_or(0, |p| p.len);
        let server = D6Server::new(cfg.clone(), Duid::ll(mac))
            .map_err(|e| ConfigError(alloc::format!("dhcp6: {}", e.0)))?;
        Ok(Dhcp6Ctl { server, pd_len })
    }
}

/// The server's line key of a PPPoE session: access port, MAC, VLANs, session id.
pub(super) fn line_key(k: &AccessKey, sid: u16) -> LineKey {
    let mut v = Vec::with_capacity(14);
    v.extend_from_slice(&k.port.to_be_bytes());
    v.extend_from_slice(&k.mac);
    v.extend_from_slice(&k.vlans.svlan.to_be_bytes());
    v.extend_from_slice(&k.vlans.cvlan.to_be_bytes());
    v.extend_from_slice(&sid.to_be_bytes());
    LineKey(v)
}

/// The session a line key names.
fn line_of(l: &LineKey) -> Option<(AccessKey, u16)> {
    let b: &[u8; 14] = l.0.as_slice().try_into().ok()?;
    let be = |i: usize| u16::from_be_bytes([b[i], b[i + 1]]);
    let mut mac = [0u8; 6];
    mac.copy_from_slice(&b[2..8]);
    Some((
        AccessKey {
            port: be(0),
            mac,
            vlans: Vlans {
                svlan: be(8),
                cvlan: be(10),
            },
        },
        be(12),
    ))
}

impl ControlPlane {
    /// The DHCPv6 server's counters, when `[dhcp6]` is configured.
    pub fn dhcp6_stats(&self) -> Option<&dhcp6::Stats> {
        self.dhcp6.as_ref().map(|d| d.server.stats())
    }

    /// Sessions with a delegated prefix routed.
    pub fn delegated_prefix_count(&self) -> usize {
        self.slots
            .iter()
            .flatten()
            .filter(|e| e.pd.is_some())
            .count()
    }

    /// An IPv6 datagram punted from PPPoE session `idx`: when it is DHCPv6 to the
    /// server port, the server answers it and `true` is returned.
    pub(super) fn dhcp6_input(&mut self, idx: u32, ip: &[u8], now: u64) -> bool {
        if self.dhcp6.is_none() {
            return false;
        }
        let Ok(req) = dhcp6::wire::decap_ipv6(ip) else {
            return false;
        };
        let Some(Some(e)) = self.slots.get(idx as usize) else {
            return true;
        };
        let Some(our_iid) = e
            .ppp()
            .filter(|_| e.ipv6_up)
            .and_then(|p| p.link.ipv6cp.as_ref())
            .map(|f| f.neg.our_id)
        else {
            // No IPv6 on the session (yet): nothing to delegate to.
            self.stats.ipv6_dropped += 1;
            return true;
        };
        let line = line_key(&e.key, e.sid());
        let Some(d) = self.dhcp6.as_mut() else {
            return true;
        };
        let h = d.server.handle(now, &line, req.src, req.message);
        if let Some(r) = &h.reply {
            let src = Ipv6Addr::from(crate::nd::link_local(our_iid));
            if let Ok(dg) = dhcp6::wire::encap_ipv6(r, src) {
                let mut f = Vec::with_capacity(2 + dg.len());
                f.extend_from_slice(&[0x00, 0x57]);
                f.extend_from_slice(&dg);
                self.send_ppp(idx, &f);
            }
        }
        for ev in h.events {
            self.dhcp6_event(ev, now);
        }
        true
    }

    /// A binding event of the DHCPv6 server.
    pub(super) fn dhcp6_event(&mut self, ev: D6Event, now: u64) {
        use radius::terminate_cause as tc;
        let (client, lease, gone, cause) = match ev {
            D6Event::Bound { client, lease } | D6Event::Renewed { client, lease } => {
                (client, Some(lease), None, 0)
            }
            D6Event::Released { client, assigned } => {
                (client, None, Some(assigned), tc::USER_REQUEST)
            }
            D6Event::Expired { client, assigned } => {
                (client, None, Some(assigned), tc::LOST_CARRIER)
            }
            D6Event::Declined { client, assigned } => {
                (client, None, Some(assigned), tc::USER_ERROR)
            }
        };
        let Some(idx) = line_of(&client.line).and_then(|k| self.by_key.get(&k).copied()) else {
            return;
        };
        let pd_len = self.dhcp6.as_ref().map_or(0, |d| d.pd_len);
        let Some(Some(e)) = self.slots.get_mut(idx as usize) else {
            return;
        };
        if matches!(e.access, Access::Ipoe(_)) {
            self.ipoe6_event(idx, lease.map(|l| l.assigned), gone, client, cause, now);
            return;
        }
        match (lease.map(|l| l.assigned), gone) {
            (Some(Assigned::Prefix(p)), _) if p.len() == pd_len => {
                let hi = (u128::from(p.network()) >> 64) as u64;
                if let Some((old, _, _)) = &e.pd {
                    if *old == hi {
                        return; // a renewal
                    }
                    let old = *old;
                    self.fib.push(FibUpdate::RemovePd { idx, prefix: old });
                }
                e.pd = Some((hi, p.len(), client));
                self.fib.push(FibUpdate::AddPd {
                    idx,
                    prefix: hi,
                    len: p.len(),
                });
            }
            (None, Some(Assigned::Prefix(p))) => {
                let hi = (u128::from(p.network()) >> 64) as u64;
                if e.pd.as_ref().is_some_and(|(x, _, _)| *x == hi) {
                    e.pd = None;
                    self.fib.push(FibUpdate::RemovePd { idx, prefix: hi });
                }
            }
            // IA_NA over PPPoE is not routed (the session has its /64 by SLAAC).
            _ => {}
        }
    }

    /// AAA accepted session `idx`: its Delegated-IPv6-Prefix (RFC 4818) and, for an
    /// IPoE subscriber, Framed-IPv6-Address (RFC 6911) become the fixed prefix and
    /// address the DHCPv6 server gives the session's line (instead of the pools).
    /// What cannot be honoured is counted (`dhcp6_fixed_refused`) and the pools
    /// answer.
    pub(super) fn dhcp6_fix(&mut self, idx: u32) {
        let Some(Some(e)) = self.slots.get(idx as usize) else {
            return;
        };
        let pd = e.reply.delegated_prefix();
        let na = e
            .reply
            .framed_ipv6_address
            .filter(|_| matches!(e.access, Access::Ipoe(_)));
        if pd.is_none() && na.is_none() {
            return;
        }
        let line = line_key(&e.key, e.sid());
        let Some(d) = self.dhcp6.as_mut() else {
            self.stats.dhcp6_fixed_refused += 1;
            return;
        };
        let prefix = pd.and_then(|(p, l)| {
            (l == d.pd_len)
                .then(|| dataplane::addr::Prefix6::new(Ipv6Addr::from(p), l))
                .flatten()
        });
        let fixed = dhcp6::Fixed {
            addr: na.map(Ipv6Addr::from),
            prefix,
        };
        let refused = (pd.is_some() && prefix.is_none()) || d.server.assign(line, fixed).is_err();
        if refused {
            self.stats.dhcp6_fixed_refused += 1;
        }
    }

    /// Session `idx` ends: its line's fixed address and prefix are forgotten.
    pub(super) fn dhcp6_unfix(&mut self, idx: u32) {
        let Some(Some(e)) = self.slots.get(idx as usize) else {
            return;
        };
        let line = line_key(&e.key, e.sid());
        if let Some(d) = self.dhcp6.as_mut() {
            d.server.unassign(&line);
        }
    }

    /// Session `idx` stops routing IPv6 or ends: its delegated prefix is withdrawn
    /// and given back to the server's pool.
    pub(super) fn dhcp6_withdraw(&mut self, idx: u32) {
        let Some(Some(e)) = self.slots.get_mut(idx as usize) else {
            return;
        };
        let (pd, na) = (e.pd.take(), e.addr6.take());
        if let Some((hi, _, client)) = pd {
            self.fib.push(FibUpdate::RemovePd { idx, prefix: hi });
            if let Some(d) = self.dhcp6.as_mut() {
                d.server.revoke(&client);
            }
        }
        if let Some((addr, client)) = na {
            self.fib.push(FibUpdate::RemoveAddr6 { idx, addr });
            if let Some(d) = self.dhcp6.as_mut() {
                d.server.revoke(&client);
            }
        }
    }

    /// Drive the DHCPv6 server's timers (offers, bindings, declined addresses).
    pub(super) fn poll_dhcp6(&mut self, now: u64) {
        let Some(d) = self.dhcp6.as_mut() else {
            return;
        };
        if d.server.next_deadline().is_none_or(|t| t > now) {
            return;
        }
        for ev in d.server.poll(now) {
            self.dhcp6_event(ev, now);
        }
    }
}
