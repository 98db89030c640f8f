//! `firewall`: a stateful IPv4 firewall — ordered 5-tuple rules (prefixes, port
//! ranges, protocol, ingress port) with per-rule counters, and a connection tracker so
//! replies of allowed connections pass ("allow established").
//!
//! Rules are matched first-match-wins by a bit-vector classifier (Lakshman & Stiliadis,
//! "High-speed policy-based packet forwarding using efficient multi-dimensional range
//! matching", SIGCOMM 1998): each field's value space is cut into elementary intervals,
//! each interval holds the bitmap of rules matching it, and a packet's rule is the
//! first bit of the AND of its six field bitmaps — cost grows with rules / 64, not
//! with rules.
//!
//! Connection tracking follows the TCP state machine of RFC 9293 §3.3.2 without
//! sequence-window checks: a connection starts with a SYN (a non-SYN segment without a
//! connection is dropped), becomes established when the SYN is answered with a SYN-ACK
//! and that is acknowledged, goes to closing on a FIN and to time-wait when both sides
//! sent FIN, and ends on RST. UDP and ICMP echo are tracked as pseudo-connections; ICMP
//! errors whose embedded packet belongs to a tracked connection pass as related (so
//! path MTU discovery keeps working, RFC 1191).
//! Timeouts depend on the state. The table (the NAT's [`FlowTable`]) is preallocated;
//! the packet path does not allocate. Non-IPv4 packets pass untouched; IPv4 fragments
//! after the first carry no ports and are dropped (counted).

use crate::batch::BATCH_SIZE;
use crate::batch::{Batch, Next, Out};
use crate::stage::{Counter, NodeStats, Stage};
use crate::stages::nat::table::{hash, huge_vec, ipv4_offset, prefetch, FlowTable};
use alloc::boxed::Box;
use alloc::string::String;
use alloc::vec;
use alloc::vec::Vec;
use core::fmt;
use core::net::Ipv4Addr;
use serde::Deserialize;

mod rules;
pub use rules::*;

/// Connection states (RFC 9293 §3.3.2, window-less).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
#[repr(u8)]
pub enum ConnState {
    #[default]
    Free,
    /// SYN seen from the originator.
    SynSent,
    /// SYN-ACK seen from the responder.
    SynReceived,
    Established,
    /// One side sent FIN.
    Closing,
    /// Both sides sent FIN.
    TimeWait,
    /// UDP/ICMP pseudo-connection.
    Datagram,
}

/// A tracked connection (originator → responder as first seen).
#[derive(Clone, Copy, Debug, Default)]
#[repr(C, align(32))]
pub struct Conn {
    pub src: u32,
    pub dst: u32,
    pub sport: u16,
    pub dport: u16,
    pub proto: u8,
    pub state: ConnState,
    /// Rule that allowed the connection.
    pub rule: u16,
    /// Last packet, 2^20 ns units.
    pub last: u32,
    /// FIN seen from the originator (bit 0) / responder (bit 1).
    fins: u8,
    /// Ingress port of the first packet (to check the connection against new rules).
    pub in_port: u16,
}

crate::drop_reasons! {
    /// Why `firewall` drops (stateful filter, RFC 4890-style default deny).
    pub enum FirewallDrop {
        Malformed = ("malformed", "IP or transport header truncated or inconsistent"),
        Fragment = ("non-first fragment", "non-first fragment: no ports to match rules or connections on"),
        RuleDeny = ("denied by rule", "a deny rule matched"),
        DefaultDeny = ("denied by default", "no rule matched and the default action is deny"),
        TcpNoConn = ("tcp segment without connection (not SYN)", "TCP segment other than a SYN with no tracked connection (RFC 9293 §3.10.7)"),
        TableFull = ("connection table full", "a new connection could not be tracked: connection table full"),
    }
}

/// Per-rule counters.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct RuleCounter {
    pub packets: u64,
    pub bytes: u64,
}

/// Counters beyond the drop reasons.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct FwStats {
    pub established_hits: u64,
    pub connections_created: u64,
    pub connections_expired: u64,
    pub default_allowed: u64,
    /// ICMP errors passed as related to a tracked connection.
    pub related: u64,
}

fn secs(s: u32) -> u32 {
    ((u64::from(s) * 1_000_000_000) >> 20).min(u64::from(u32::MAX / 2)) as u32
}

#[inline(always)]
fn ckey(src: u32, sport: u16, dst: u32, dport: u16, proto: u8) -> u64 {
    hash(
        (u64::from(src) << 32) | u64::from(dst),
        (u64::from(sport) << 48) | (u64::from(dport) << 32) | (u64::from(proto) << 8) | 0x5a,
    )
}

/// A rule set built off the data path for [`Firewall::swap_rules`]; after the swap
/// it holds the old rules (to be freed off the worker) and how many connections the
/// new rules ended.
pub struct RuleSwap {
    set: RuleSet,
    counters: Vec<RuleCounter>,
    default_action: Action,
    ended: u32,
}

impl RuleSwap {
    /// The rules and default action of `cfg` (checked as [`Firewall::new`] does; the
    /// connection limits and time-outs of `cfg` are not used).
    pub fn new(cfg: &FirewallConfig) -> Result<RuleSwap, FwConfigError> {
        cfg.validate()?;
        let rules = cfg
            .rules
            .iter()
            .enumerate()
            .map(|(i, r)| Rule::parse(r, i))
            .collect::<Result<Vec<_>, _>>()?;
        let n = rules.len();
        Ok(RuleSwap {
            set: RuleSet::new(rules),
            counters: vec![RuleCounter::default(); n],
            default_action: cfg.default_action,
            ended: 0,
        })
    }

    /// Connections the new rules ended (after the swap).
    pub fn ended(&self) -> u32 {
        self.ended
    }
}

/// The firewall stage.
pub struct Firewall {
    set: RuleSet,
    default_action: Action,
    allow_established: bool,
    t: [u32; 7],
    t_icmp: u32,
    table: FlowTable,
    conns: Vec<Conn>,
    free: Vec<u32>,
    counters: Vec<RuleCounter>,
    scan: u32,
    cursor: u32,
    pre: Box<[Result<Tuple, Next>; BATCH_SIZE]>,
    pub stats: FwStats,
}

impl fmt::Debug for Firewall {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Firewall")
            .field("rules", &self.set.rules.len())
            .field("connections", &self.connection_count())
            .finish()
    }
}

const SYN: u8 = 0x02;
const FIN: u8 = 0x01;
const RST: u8 = 0x04;
const ACK: u8 = 0x10;

impl Firewall {
    pub fn new(cfg: &FirewallConfig) -> Result<Self, FwConfigError> {
        cfg.validate()?;
        let rules = cfg
            .rules
            .iter()
            .enumerate()
            .map(|(i, r)| Rule::parse(r, i))
            .collect::<Result<Vec<_>, _>>()?;
        let n = cfg.max_connections as usize;
        let t = &cfg.timeouts;
        let nrules = rules.len();
        Ok(Firewall {
            set: RuleSet::new(rules),
            default_action: cfg.default_action,
            allow_established: cfg.allow_established,
            t: [
                0,
                secs(t.tcp_syn),
                secs(t.tcp_syn),
                secs(t.tcp_established),
                secs(t.tcp_closing),
                secs(t.tcp_time_wait),
                secs(t.udp),
            ],
            t_icmp: secs(t.icmp),
            table: FlowTable::new(2 * n),
            conns: huge_vec(n, Conn::default()),
            free: (0..n as u32).rev().collect(),
            counters: vec![RuleCounter::default(); nrules],
            scan: cfg.expiry_scan.max(1),
            cursor: 0,
            pre: Box::new([Err(Next::Keep); BATCH_SIZE]),
            stats: FwStats::default(),
        })
    }

    /// The compiled rules.
    pub fn rule_set(&self) -> &RuleSet {
        &self.set
    }

    /// Counters of rule `i` (config order).
    pub fn rule_counters(&self) -> &[RuleCounter] {
        &self.counters
    }

    /// Takes the rules of `new` (built off the data path) and hands the old ones
    /// back in it, between two bursts; allocates nothing. The per-rule counters start
    /// at zero. Tracked connections are checked against the new rules by their first
    /// packet's 5-tuple and ingress port: those the new rules deny (by a rule or by
    /// the default action) end now, the others keep their state under the rule that
    /// now allows them.
    pub fn swap_rules(&mut self, new: &mut RuleSwap) {
        core::mem::swap(&mut self.set, &mut new.set);
        core::mem::swap(&mut self.counters, &mut new.counters);
        core::mem::swap(&mut self.default_action, &mut new.default_action);
        new.ended = 0;
        for i in 0..self.conns.len() {
            let Some(c) = self.conns.get(i).copied() else {
                break;
            };
            if c.state == ConnState::Free {
                continue;
            }
            let m = self
                .set
                .classify(c.src, c.dst, c.proto, c.sport, c.dport, c.in_port);
            let action = match m {
                Some(r) => self.set.rules.get(r).map_or(Action::Deny, |x| x.action),
                None => self.default_action,
            };
            if action == Action::Deny {
                self.delete(i as u32);
                new.ended += 1;
            } else if let Some(x) = self.conns.get_mut(i) {
                x.rule = m.map_or(u16::MAX, |r| r as u16);
            }
        }
    }

    /// Connections tracked.
    pub fn connection_count(&self) -> usize {
        self.conns.len() - self.free.len()
    }

    /// The tracked connections.
    pub fn connections(&self) -> impl Iterator<Item = &Conn> {
        self.conns.iter().filter(|c| c.state != ConnState::Free)
    }

    #[inline(always)]
    fn timeout(&self, c: &Conn) -> u32 {
        if c.state == ConnState::Datagram && c.proto == 1 {
            return self.t_icmp;
        }
        self.t.get(c.state as usize).copied().unwrap_or(0)
    }

    #[inline(always)]
    fn expired(&self, c: &Conn, now: u32) -> bool {
        let d = now.wrapping_sub(c.last);
        (d as i32) > 0 && d > self.timeout(c)
    }

    /// Finds the connection of a packet; `true` in the result when the packet goes
    /// originator → responder.
    #[inline]
    fn find(&self, src: u32, sport: u16, dst: u32, dport: u16, proto: u8) -> Option<(u32, bool)> {
        let h = ckey(src, sport, dst, dport, proto);
        self.table
            .find(h, |v| {
                self.conns.get((v >> 1) as usize).is_some_and(|c| {
                    c.state != ConnState::Free
                        && c.proto == proto
                        && if v & 1 == 0 {
                            (c.src, c.sport, c.dst, c.dport) == (src, sport, dst, dport)
                        } else {
                            (c.dst, c.dport, c.src, c.sport) == (src, sport, dst, dport)
                        }
                })
            })
            .map(|v| (v >> 1, v & 1 == 0))
    }

    fn delete(&mut self, i: u32) {
        let Some(c) = self.conns.get_mut(i as usize) else {
            return;
        };
        if c.state == ConnState::Free {
            return;
        }
        let c0 = *c;
        c.state = ConnState::Free;
        self.table
            .remove(ckey(c0.src, c0.sport, c0.dst, c0.dport, c0.proto), i << 1);
        self.table.remove(
            ckey(c0.dst, c0.dport, c0.src, c0.sport, c0.proto),
            (i << 1) | 1,
        );
        self.free.push(i);
    }

    fn create(&mut self, c: Conn) -> bool {
        let Some(i) = self.free.pop() else {
            return false;
        };
        let h1 = ckey(c.src, c.sport, c.dst, c.dport, c.proto);
        let h2 = ckey(c.dst, c.dport, c.src, c.sport, c.proto);
        if !self.table.insert(h1, i << 1) {
            self.free.push(i);
            return false;
        }
        if !self.table.insert(h2, (i << 1) | 1) {
            self.table.remove(h1, i << 1);
            self.free.push(i);
            return false;
        }
        if let Some(slot) = self.conns.get_mut(i as usize) {
            *slot = c;
        }
        self.stats.connections_created += 1;
        true
    }

    /// Expires up to `n` connection slots; returns how many ended.
    pub fn expire(&mut self, now_ns: u64, n: u32) -> u32 {
        let now = (now_ns >> 20) as u32;
        let len = self.conns.len() as u32;
        let mut done = 0;
        for _ in 0..n.min(len) {
            let i = self.cursor;
            self.cursor = if i + 1 >= len { 0 } else { i + 1 };
            let dead = self
                .conns
                .get(i as usize)
                .is_some_and(|c| c.state != ConnState::Free && self.expired(c, now));
            if dead {
                self.delete(i);
                self.stats.connections_expired += 1;
                done += 1;
            }
        }
        done
    }

    /// TCP state transition for a segment with `flags` on connection `c`.
    #[inline]
    fn tcp_step(c: &mut Conn, flags: u8, orig: bool) {
        if flags & RST != 0 {
            c.state = ConnState::TimeWait;
            return;
        }
        match c.state {
            ConnState::SynSent if !orig && flags & (SYN | ACK) == SYN | ACK => {
                c.state = ConnState::SynReceived
            }
            // Simultaneous open: a SYN from the responder.
            ConnState::SynSent if !orig && flags & SYN != 0 => c.state = ConnState::SynReceived,
            ConnState::SynReceived if orig && flags & ACK != 0 && flags & SYN == 0 => {
                c.state = ConnState::Established
            }
            _ => {}
        }
        if flags & FIN != 0
            && matches!(
                c.state,
                ConnState::Established | ConnState::Closing | ConnState::SynReceived
            )
        {
            c.fins |= if orig { 1 } else { 2 };
            c.state = if c.fins == 3 {
                ConnState::TimeWait
            } else {
                ConnState::Closing
            };
        }
    }

    /// Decides one packet.
    #[cfg(test)]
    fn decide(&mut self, data: &[u8], in_port: u16, now: u32) -> Next {
        match parse(data) {
            Ok(t) => self.decide_tuple(&t, data.len(), in_port, now),
            Err(n) => n,
        }
    }

    /// Decides a parsed packet of `len` bytes.
    #[inline]
    fn decide_tuple(&mut self, t: &Tuple, len: usize, in_port: u16, now: u32) -> Next {
        let Tuple {
            src,
            dst,
            proto,
            sport,
            dport,
            flags,
            trackable,
            related,
        } = *t;
        let len = len as u64;
        // RFC 9293 §3.9 / RFC 1122 §4.2.3.9: ICMP errors about a tracked connection
        // (path MTU discovery, unreachables) belong to it and pass.
        if let Some((a, pa, b, pb, pr)) = related {
            if self.allow_established {
                if let Some((i, _)) = self.find(a, pa, b, pb, pr) {
                    if self
                        .conns
                        .get(i as usize)
                        .is_some_and(|c| !self.expired(c, now))
                    {
                        self.stats.related += 1;
                        return Next::Keep;
                    }
                }
            }
        }
        if trackable && self.allow_established {
            if let Some((i, orig)) = self.find(src, sport, dst, dport, proto) {
                let expired = self
                    .conns
                    .get(i as usize)
                    .is_some_and(|c| self.expired(c, now));
                if expired {
                    self.delete(i);
                    self.stats.connections_expired += 1;
                } else {
                    if let Some(c) = self.conns.get_mut(i as usize) {
                        c.last = now;
                        if proto == 6 {
                            Self::tcp_step(c, flags, orig);
                        }
                    }
                    self.stats.established_hits += 1;
                    return Next::Keep;
                }
            }
        }
        let (action, rule) = match self.set.classify(src, dst, proto, sport, dport, in_port) {
            Some(r) => {
                if let Some(c) = self.counters.get_mut(r) {
                    c.packets += 1;
                    c.bytes += len;
                }
                (
                    self.set.rules.get(r).map_or(Action::Deny, |x| x.action),
                    r as u16,
                )
            }
            None => (self.default_action, u16::MAX),
        };
        match action {
            Action::Deny => {
                return if rule == u16::MAX {
                    FirewallDrop::DefaultDeny.into()
                } else {
                    FirewallDrop::RuleDeny.into()
                };
            }
            Action::AllowStateless => return Next::Keep,
            Action::Allow => {}
        }
        if rule == u16::MAX {
            self.stats.default_allowed += 1;
        }
        if !trackable || !self.allow_established {
            return Next::Keep;
        }
        let state = if proto == 6 {
            if flags & (SYN | ACK | RST) != SYN {
                return FirewallDrop::TcpNoConn.into();
            }
            ConnState::SynSent
        } else if proto == 1 && flags != 8 {
            // An echo reply opens nothing.
            return Next::Keep;
        } else {
            ConnState::Datagram
        };
        let c = Conn {
            src,
            dst,
            sport,
            dport,
            proto,
            state,
            rule,
            last: now,
            fins: 0,
            in_port,
        };
        if !self.create(c) {
            return FirewallDrop::TableFull.into();
        }
        Next::Keep
    }
}

/// The fields the firewall looks at.
#[derive(Clone, Copy, Debug, Default)]
struct Tuple {
    src: u32,
    dst: u32,
    proto: u8,
    sport: u16,
    dport: u16,
    flags: u8,
    trackable: bool,
    /// ICMP error: the embedded packet's tuple (src, sport, dst, dport, proto).
    related: Option<(u32, u16, u32, u16, u8)>,
}

/// Parses a frame; `Err` carries the verdict for packets that are not matched
/// (non-IPv4 passes, malformed and fragments drop).
#[inline(always)]
fn parse(data: &[u8]) -> Result<Tuple, Next> {
    let Some(l3) = ipv4_offset(data) else {
        return Err(Next::Keep);
    };
    let Some(ip) = data
        .get(l3..l3 + 20)
        .and_then(|x| <&[u8; 20]>::try_from(x).ok())
    else {
        return Err(FirewallDrop::Malformed.into());
    };
    let ihl = usize::from(ip[0] & 15) * 4;
    let tl = usize::from(u16::from_be_bytes([ip[2], ip[3]]));
    if ip[0] >> 4 != 4 || ihl < 20 || tl < ihl || l3 + tl > data.len() {
        return Err(FirewallDrop::Malformed.into());
    }
    if u16::from_be_bytes([ip[6], ip[7]]) & 0x1fff != 0 {
        return Err(FirewallDrop::Fragment.into());
    }
    let src = u32::from_be_bytes([ip[12], ip[13], ip[14], ip[15]]);
    let dst = u32::from_be_bytes([ip[16], ip[17], ip[18], ip[19]]);
    let proto = ip[9];
    let l4 = l3 + ihl;
    let end = l3 + tl;
    let mut related = None;
    let (sport, dport, flags, trackable) = match proto {
        6 => match data
            .get(l4..l4 + 20)
            .and_then(|x| <&[u8; 20]>::try_from(x).ok())
            .filter(|_| l4 + 20 <= end)
        {
            Some(h) => (
                u16::from_be_bytes([h[0], h[1]]),
                u16::from_be_bytes([h[2], h[3]]),
                h[13],
                true,
            ),
            None => return Err(FirewallDrop::Malformed.into()),
        },
        17 => match data
            .get(l4..l4 + 8)
            .and_then(|x| <&[u8; 8]>::try_from(x).ok())
            .filter(|_| l4 + 8 <= end)
        {
            Some(h) => (
                u16::from_be_bytes([h[0], h[1]]),
                u16::from_be_bytes([h[2], h[3]]),
                0,
                true,
            ),
            None => return Err(FirewallDrop::Malformed.into()),
        },
        1 => match data
            .get(l4..l4 + 8)
            .and_then(|x| <&[u8; 8]>::try_from(x).ok())
            .filter(|_| l4 + 8 <= end)
        {
            // Echo request/reply: identifier as both ports so the reply matches.
            Some(h) if h[0] == 8 || h[0] == 0 => {
                let id = u16::from_be_bytes([h[4], h[5]]);
                (id, id, h[0], true)
            }
            Some(h) if matches!(h[0], 3 | 4 | 11 | 12) => {
                related = embedded(data, l4 + 8, end);
                (0, 0, h[0], false)
            }
            Some(_) => (0, 0, 0, false),
            None => return Err(FirewallDrop::Malformed.into()),
        },
        _ => (0, 0, 0, false),
    };
    Ok(Tuple {
        src,
        dst,
        proto,
        sport,
        dport,
        flags,
        trackable,
        related,
    })
}

/// The tuple of the packet an ICMP error quotes (IPv4 header + 8 bytes at `at`).
#[inline]
fn embedded(data: &[u8], at: usize, end: usize) -> Option<(u32, u16, u32, u16, u8)> {
    let ip = <&[u8; 20]>::try_from(data.get(at..at + 20)?).ok()?;
    let ihl = usize::from(ip[0] & 15) * 4;
    if ip[0] >> 4 != 4 || ihl < 20 {
        return None;
    }
    let l4 = at + ihl;
    if l4 + 8 > end {
        return None;
    }
    let h = <&[u8; 8]>::try_from(data.get(l4..l4 + 8)?).ok()?;
    let src = u32::from_be_bytes([ip[12], ip[13], ip[14], ip[15]]);
    let dst = u32::from_be_bytes([ip[16], ip[17], ip[18], ip[19]]);
    let (sp, dp) = match ip[9] {
        6 | 17 => (
            u16::from_be_bytes([h[0], h[1]]),
            u16::from_be_bytes([h[2], h[3]]),
        ),
        1 if h[0] == 8 || h[0] == 0 => {
            let id = u16::from_be_bytes([h[4], h[5]]);
            (id, id)
        }
        _ => return None,
    };
    Some((src, sp, dst, dp, ip[9]))
}

impl Stage for Firewall {
    fn name(&self) -> &'static str {
        "firewall"
    }

    fn errors(&self) -> &'static [&'static str] {
        FirewallDrop::NAMES
    }

    fn error_help(&self) -> &'static [&'static str] {
        FirewallDrop::HELP
    }

    fn as_any_mut(&mut self) -> Option<&mut dyn core::any::Any> {
        Some(self)
    }

    fn counters(&self, f: &mut dyn FnMut(Counter)) {
        let st = &self.stats;
        f(Counter::gauge(
            "connections-active",
            "connections tracked",
            self.connection_count() as u64,
        ));
        f(Counter::total(
            "connections-created",
            "connections created",
            st.connections_created,
        ));
        f(Counter::total(
            "connections-expired",
            "connections removed by their timer",
            st.connections_expired,
        ));
        f(Counter::total(
            "established-hits",
            "packets of tracked connections",
            st.established_hits,
        ));
        f(Counter::total(
            "related",
            "ICMP errors passed as related to a tracked connection",
            st.related,
        ));
        f(Counter::total(
            "default-allowed",
            "packets allowed by the default action",
            st.default_allowed,
        ));
    }

    fn process(&mut self, batch: &mut Batch, node: &mut NodeStats, out: &mut Out) {
        let now = (out.now_ns >> 20) as u32;
        // Pass 1: parse and prefetch the connection's bucket; pass 2: prefetch the
        // connection; pass 3: decide (the NAT's latency hiding).
        for (i, p) in batch.iter().enumerate() {
            let t = parse(p.data());
            if let Ok(t) = &t {
                if t.trackable {
                    self.table
                        .prefetch(ckey(t.src, t.sport, t.dst, t.dport, t.proto));
                }
            }
            if let Some(x) = self.pre.get_mut(i) {
                *x = t;
            }
        }
        for t in self.pre.iter().take(batch.len()).flatten() {
            if t.trackable {
                let c = self
                    .table
                    .first_candidate(ckey(t.src, t.sport, t.dst, t.dport, t.proto));
                if let Some(conn) = self.conns.get((c >> 1) as usize) {
                    prefetch(conn as *const Conn as *const u8);
                }
            }
        }
        let mut i = 0;
        batch.dispatch(node, out, |p, _| {
            let t = self.pre.get(i).copied().unwrap_or(Err(Next::Keep));
            i += 1;
            match t {
                Ok(t) => self.decide_tuple(&t, p.len(), p.meta.port, now),
                Err(n) => n,
            }
        });
    }

    fn tick(&mut self, out: &mut Out) {
        let n = self.scan;
        self.expire(out.now_ns, n);
    }
}

#[cfg(test)]
mod tests;
