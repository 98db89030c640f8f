//! Engine stages `esp-encrypt` (RFC 4303 §3.3, outbound) and `esp-decrypt` (§3.4,
//! inbound) over batches of the engine's packet buffers, with one drop counter per
//! [`DropReason`] (VPP's `show errors` shape) and the engine's packet trace.
//!
//! Packets are Ethernet frames whose L3 header starts at `meta.l3` (set by
//! `ethernet-input`). A stage works on the IP packet in place (the 256-byte headroom
//! takes the outer IP + UDP + ESP header); the L2 header moves along with the front
//! and its EtherType (or PPP protocol) is set to the new outer family. Encrypted
//! and decrypted packets stay in the batch (`Keep`) for the next stage (routing);
//! IKE and NAT keepalives on UDP 4500 are punted to the control plane.
//!
//! Each stage owns one [`Ipsec`] (SAD + SPD + counters): one worker per SA, so the
//! outbound sequence counter needs no atomics.
//!
//! A running stage takes SA changes from the control plane (an IKE daemon) through
//! an [`SaQueue`]: a fixed-size lock-free ring of [`SaUpdate`]s that the worker's
//! table-update hook ([`update_hook`]) drains between bursts. The SA and its key
//! schedule are built by the control plane, so installing one moves a box into a
//! slot the SAD reserved at start-up; nothing on the packet path waits for it.
//!
//! In a router ([`EspDecrypt::gateway`], [`EspEncrypt::gateway`]) both stages see all
//! IPv4 traffic: clear packets no policy names pass unchanged (default BYPASS),
//! `esp-decrypt` only decapsulates and punts what is addressed to one of the
//! gateway's own addresses (ESP, UDP 4500, and IKE on UDP 500, RFC 7296 §2.23).

use crate::buf::Buf;
use crate::error::DropReason;
use crate::sa::{Direction, Sa};
use crate::spd::{Action, Selector};
use crate::{Inbound, Ipsec};
use alloc::boxed::Box;
use alloc::sync::Arc;
use alloc::vec::Vec;
use core::net::IpAddr;
use crossbeam_queue::ArrayQueue;
use dataplane::batch::{Batch, Next, Out};
use dataplane::buf::Pkt;
use dataplane::graph::Graph;
use dataplane::stage::{Counter, NodeStats, Stage};
use dataplane::worker::Hook;

/// IKE's own UDP port (RFC 7296 §2).
pub const IKE_PORT: u16 = 500;

/// One change to a running stage's SAD and SPD, built by the control plane.
pub enum SaUpdate {
    /// `esp-decrypt`: install this inbound SA.
    AddInbound(Box<Sa>),
    /// `esp-encrypt`: install this outbound SA and point the outbound policy with
    /// `selector` at it (the policy is appended when there is none: a new child SA;
    /// otherwise this is a rekey and traffic moves to the new SA at once).
    AddOutbound { sa: Box<Sa>, selector: Selector },
    /// `esp-decrypt`: remove the inbound SA with this SPI.
    RemoveInbound(u32),
    /// `esp-encrypt`: remove the outbound SA with this SPI and the policy still
    /// pointing at it, if any.
    RemoveOutbound(u32),
}

impl core::fmt::Debug for SaUpdate {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        match self {
            SaUpdate::AddInbound(sa) => write!(f, "AddInbound(spi {:#x})", sa.spi()),
            SaUpdate::AddOutbound { sa, .. } => write!(f, "AddOutbound(spi {:#x})", sa.spi()),
            SaUpdate::RemoveInbound(s) => write!(f, "RemoveInbound({s:#x})"),
            SaUpdate::RemoveOutbound(s) => write!(f, "RemoveOutbound({s:#x})"),
        }
    }
}

/// The ring of [`SaUpdate`]s to one stage.
pub type SaQueue = Arc<ArrayQueue<SaUpdate>>;

/// Updates a queue holds; an update that finds it full waits with its sender.
pub const SA_QUEUE_LEN: usize = 256;

/// SAs a gateway stage's SAD has room for without allocating.
pub const GATEWAY_SAS: usize = 1024;

/// A new [`SaQueue`].
pub fn sa_queue() -> SaQueue {
    Arc::new(ArrayQueue::new(SA_QUEUE_LEN))
}

/// Counts of applied and refused updates of one stage.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct UpdateStats {
    pub applied: u64,
    /// Duplicate inbound SPI, unknown SPI on remove, update for the other stage.
    pub refused: u64,
}

/// Applies one update to `ipsec`. A removed or refused SA is dropped here: its key
/// memory is wiped (`Secret` zeroizes on drop) and freed, nothing is allocated.
fn apply(ipsec: &mut Ipsec, u: SaUpdate, stats: &mut UpdateStats) {
    let ok = match u {
        SaUpdate::AddInbound(sa) if sa.config().direction == Direction::Inbound => {
            ipsec.sad.insert(sa).is_ok()
        }
        SaUpdate::AddOutbound { sa, selector } if sa.config().direction == Direction::Outbound => {
            match ipsec.sad.insert(sa) {
                Ok(id) => {
                    let at = ipsec
                        .spd
                        .outbound()
                        .iter()
                        .position(|p| p.selector == selector);
                    match at {
                        Some(i) => {
                            ipsec.spd.set_outbound_action(i, Action::Protect(id));
                        }
                        None => {
                            ipsec.spd.push_outbound(selector, Action::Protect(id));
                        }
                    }
                    true
                }
                Err(_) => false,
            }
        }
        SaUpdate::RemoveInbound(spi) => match ipsec.sad.lookup_inbound(spi) {
            Some(id) => ipsec.sad.remove(id).is_some(),
            None => false,
        },
        SaUpdate::RemoveOutbound(spi) => match ipsec.sad.find(Direction::Outbound, spi) {
            Some(id) => {
                let at = ipsec
                    .spd
                    .outbound()
                    .iter()
                    .position(|p| p.action == Action::Protect(id));
                if let Some(i) = at {
                    ipsec.spd.remove_outbound(i);
                }
                ipsec.sad.remove(id).is_some()
            }
            None => false,
        },
        // an SA for the other direction's stage
        SaUpdate::AddInbound(_) | SaUpdate::AddOutbound { .. } => false,
    };
    if ok {
        stats.applied += 1;
    } else {
        stats.refused += 1;
    }
}

/// Drains `q` into `ipsec`; returns the number applied or refused.
fn drain(ipsec: &mut Ipsec, q: &Option<SaQueue>, stats: &mut UpdateStats) -> usize {
    let Some(q) = q else {
        return 0;
    };
    let mut n = 0;
    while let Some(u) = q.pop() {
        n += 1;
        apply(ipsec, u, stats);
    }
    n
}

/// The worker hook that drains the update queues of the `esp-encrypt` and
/// `esp-decrypt` nodes of its graph between bursts (register it with
/// `Worker::on_update` or `WorkerSpec::hooks`).
pub fn update_hook() -> Hook {
    Box::new(|g: &mut Graph, _out: &mut Out| {
        if let Some(s) = g.node_mut::<EspEncrypt>("esp-encrypt") {
            s.drain_updates();
        }
        if let Some(s) = g.node_mut::<EspDecrypt>("esp-decrypt") {
            s.drain_updates();
        }
    })
}

/// The queues of one worker's two stages.
#[derive(Clone)]
pub struct StageQueues {
    pub encrypt: SaQueue,
    pub decrypt: SaQueue,
}

impl Default for StageQueues {
    fn default() -> Self {
        Self::new()
    }
}

impl StageQueues {
    pub fn new() -> Self {
        StageQueues {
            encrypt: sa_queue(),
            decrypt: sa_queue(),
        }
    }
}

/// Whether the IP packet at the start of `d` is addressed to one of `local`.
#[inline]
fn to_local(d: &[u8], local: &[IpAddr]) -> bool {
    let dst = match d.first().map(|b| b >> 4) {
        Some(4) => d
            .get(16..20)
            .and_then(|b| <[u8; 4]>::try_from(b).ok())
            .map(IpAddr::from),
        Some(6) => d
            .get(24..40)
            .and_then(|b| <[u8; 16]>::try_from(b).ok())
            .map(IpAddr::from),
        _ => None,
    };
    dst.is_some_and(|a| local.contains(&a))
}

/// Whether the IP packet at the start of `d` is UDP to port `port` (not a non-first
/// fragment).
#[inline]
fn udp_to(d: &[u8], port: u16) -> bool {
    match crate::ip::parse(d) {
        Ok(ip) => {
            ip.proto == 17
                && !ip.fragment
                && d.get(ip.hdr_len + 2..ip.hdr_len + 4)
                    .is_some_and(|p| p == port.to_be_bytes())
        }
        Err(_) => false,
    }
}

impl Buf for Pkt {
    #[inline(always)]
    fn data(&self) -> &[u8] {
        Pkt::data(self)
    }

    #[inline(always)]
    fn data_mut(&mut self) -> &mut [u8] {
        Pkt::data_mut(self)
    }

    #[inline(always)]
    fn push_front(&mut self, n: usize) -> bool {
        self.prepend(n).is_ok()
    }

    #[inline(always)]
    fn pull_front(&mut self, n: usize) -> bool {
        self.strip(n).is_ok()
    }

    #[inline(always)]
    fn push_back(&mut self, n: usize) -> bool {
        self.append(n).is_ok()
    }

    #[inline(always)]
    fn trim_back(&mut self, n: usize) -> bool {
        self.trim(n).is_ok()
    }
}

/// The packet seen from its L3 header: the L2 header (`meta.l3` bytes) stays in the
/// buffer and moves along when ESP grows or shrinks the front, so nothing is copied
/// out and back.
struct L3<'a> {
    pkt: &'a mut Pkt,
    l2: usize,
}

/// Moves the `l2` bytes at `from` to `to` inside `d` (Ethernet: one 14-byte move).
#[inline(always)]
fn move_l2(d: &mut [u8], from: usize, to: usize, l2: usize) -> bool {
    if l2 == 14 {
        let Some(src) = d.get(from..from + 14) else {
            return false;
        };
        let mut h = [0u8; 14];
        h.copy_from_slice(src);
        match d.get_mut(to..to + 14) {
            Some(dst) => {
                dst.copy_from_slice(&h);
                true
            }
            None => false,
        }
    } else if from.max(to) + l2 <= d.len() {
        d.copy_within(from..from + l2, to);
        true
    } else {
        false
    }
}

impl Buf for L3<'_> {
    #[inline(always)]
    fn data(&self) -> &[u8] {
        self.pkt.data().get(self.l2..).unwrap_or(&[])
    }

    #[inline(always)]
    fn data_mut(&mut self) -> &mut [u8] {
        let l2 = self.l2;
        self.pkt.data_mut().get_mut(l2..).unwrap_or(&mut [])
    }

    #[inline(always)]
    fn push_front(&mut self, n: usize) -> bool {
        if self.pkt.prepend(n).is_err() {
            return false;
        }
        if !move_l2(self.pkt.data_mut(), n, 0, self.l2) {
            let _ = self.pkt.strip(n);
            return false;
        }
        true
    }

    #[inline(always)]
    fn pull_front(&mut self, n: usize) -> bool {
        if n > self.pkt.len().saturating_sub(self.l2) {
            return false;
        }
        move_l2(self.pkt.data_mut(), 0, n, self.l2) && self.pkt.strip(n).is_ok()
    }

    #[inline(always)]
    fn push_back(&mut self, n: usize) -> bool {
        self.pkt.append(n).is_ok()
    }

    #[inline(always)]
    fn trim_back(&mut self, n: usize) -> bool {
        n <= self.pkt.len().saturating_sub(self.l2) && self.pkt.trim(n).is_ok()
    }
}

/// The L3 view of a packet, or `Malformed` when `meta.l3` lies past its end.
#[inline(always)]
fn l3(pkt: &mut Pkt) -> Result<L3<'_>, DropReason> {
    let l2 = usize::from(pkt.meta.l3);
    if l2 > pkt.len() {
        return Err(DropReason::Malformed);
    }
    Ok(L3 { pkt, l2 })
}

/// Sets the EtherType or PPP protocol field just before L3 to the packet's (new) IP
/// version.
#[inline(always)]
fn fix_l2_type(pkt: &mut Pkt) {
    let l2 = usize::from(pkt.meta.l3);
    let d = pkt.data_mut();
    let v6 = d.get(l2).is_some_and(|b| b >> 4 == 6);
    if let Some(t) = l2.checked_sub(2).and_then(|i| d.get_mut(i..i + 2)) {
        let new = match [t[0], t[1]] {
            [0x08, 0x00] | [0x86, 0xdd] => Some(if v6 { [0x86, 0xdd] } else { [0x08, 0x00] }),
            [0x00, 0x21] | [0x00, 0x57] => Some(if v6 { [0x00, 0x57] } else { [0x00, 0x21] }),
            _ => None,
        };
        if let Some(n) = new {
            t.copy_from_slice(&n);
        }
    }
    pkt.meta.l4 = 0;
}

impl From<DropReason> for Next {
    /// A drop with this reason (`Next::Drop` code = the reason's index).
    #[inline(always)]
    fn from(r: DropReason) -> Next {
        Next::Drop(r as u16)
    }
}

/// `esp-encrypt`: SPD lookup, then ESP encapsulation with the policy's SA.
pub struct EspEncrypt {
    ipsec: Ipsec,
    updates: Option<SaQueue>,
    update_stats: UpdateStats,
    /// Several workers: (this worker, workers); see [`sa_owner`].
    steer: Option<(u16, u16)>,
}

/// The worker among `n` that owns the SA with `spi`: it alone encrypts with an
/// outbound SA (so its sequence numbers strictly increase) and checks an inbound
/// SA's replay window (one window per SA). Every worker holds every SA (the control
/// plane fans SA changes out to every worker's queue); the others hand the
/// packets to the owner (`Next::Handoff`).
#[inline]
pub fn sa_owner(spi: u32, n: u16) -> u16 {
    dataplane::batch::Out::owner_of(spi.wrapping_mul(0x9e37_79b1), n)
}

impl EspEncrypt {
    pub fn new(ipsec: Ipsec) -> Self {
        EspEncrypt {
            ipsec,
            updates: None,
            update_stats: UpdateStats::default(),
            steer: None,
        }
    }

    /// Worker `me` of `n`: packets whose SA another worker owns are handed there
    /// ([`sa_owner`]). One worker: nothing changes.
    pub fn for_worker(mut self, me: u16, n: u16) -> Self {
        self.steer = (n > 1).then_some((me, n));
        self
    }

    /// A gateway's `esp-encrypt`: empty SAD (with room for [`GATEWAY_SAS`]) and
    /// SPD whose default is BYPASS (traffic no policy names is routed in clear),
    /// policies and SAs arriving through `updates`.
    pub fn gateway(updates: SaQueue) -> Self {
        let mut ipsec = Ipsec::new();
        ipsec.spd.default_action = Action::Bypass;
        ipsec.sad.reserve(GATEWAY_SAS);
        ipsec.spd.reserve(GATEWAY_SAS);
        EspEncrypt::new(ipsec).with_updates(updates)
    }

    /// Takes SA changes from `q` (drained by [`update_hook`]).
    pub fn with_updates(mut self, q: SaQueue) -> Self {
        self.updates = Some(q);
        self
    }

    /// Applies the queued SA changes (between bursts).
    pub fn drain_updates(&mut self) -> usize {
        drain(&mut self.ipsec, &self.updates, &mut self.update_stats)
    }

    pub fn update_stats(&self) -> UpdateStats {
        self.update_stats
    }

    pub fn ipsec(&self) -> &Ipsec {
        &self.ipsec
    }

    pub fn ipsec_mut(&mut self) -> &mut Ipsec {
        &mut self.ipsec
    }

    /// One packet (the stage's per-packet body; public for callers without batches).
    #[inline]
    pub fn encrypt(&mut self, pkt: &mut Pkt, now: u64) -> Next {
        if let Some((me, n)) = self.steer {
            let spi = pkt
                .data()
                .get(usize::from(pkt.meta.l3)..)
                .and_then(|d| self.ipsec.outbound_spi(d));
            if let Some(w) = spi.map(|s| sa_owner(s, n)).filter(|&w| w != me) {
                return Next::Handoff(w);
            }
        }
        let r = match l3(pkt) {
            Ok(mut b) => self.ipsec.outbound(&mut b, now),
            Err(e) => Err(e),
        };
        match r {
            Ok(crate::Outbound::Protected(_)) => {
                fix_l2_type(pkt);
                Next::Keep
            }
            Ok(crate::Outbound::Bypass) => Next::Keep,
            Err(e) => e.into(),
        }
    }
}

impl Stage for EspEncrypt {
    fn name(&self) -> &'static str {
        "esp-encrypt"
    }

    fn errors(&self) -> &'static [&'static str] {
        &DropReason::NAMES
    }

    fn error_help(&self) -> &'static [&'static str] {
        &DropReason::HELP
    }

    fn counters(&self, f: &mut dyn FnMut(Counter)) {
        let c = &self.ipsec.counters;
        f(Counter::gauge(
            "sas",
            "security associations installed",
            self.ipsec.sad.len() as u64,
        ));
        f(Counter::total(
            "encrypted",
            "packets ESP-encapsulated (RFC 4303 §3.3)",
            c.encrypted,
        ));
        f(Counter::total(
            "bypassed",
            "packets a BYPASS policy let through in clear (RFC 4301 §4.4.1)",
            c.bypassed,
        ));
        f(Counter::total(
            "sa_updates",
            "SA changes applied from the control plane",
            self.update_stats.applied,
        ));
        f(Counter::total(
            "sa_updates_refused",
            "SA changes refused (duplicate or unknown SPI)",
            self.update_stats.refused,
        ));
    }

    fn as_any_mut(&mut self) -> Option<&mut dyn core::any::Any> {
        Some(self)
    }

    fn process(&mut self, batch: &mut Batch, node: &mut NodeStats, out: &mut Out) {
        let now = out.now_ns / 1_000_000_000;
        batch.dispatch(node, out, |pkt, _| self.encrypt(pkt, now));
    }

    fn tick(&mut self, out: &mut Out) {
        self.ipsec.sad.tick(out.now_ns / 1_000_000_000);
    }
}

/// `esp-decrypt`: SPI lookup, anti-replay, ICV, decapsulation, inbound policy check;
/// clear packets go through the inbound SPD (bypass or drop).
pub struct EspDecrypt {
    ipsec: Ipsec,
    updates: Option<SaQueue>,
    update_stats: UpdateStats,
    /// Gateway mode: only packets to these addresses are ours (empty: all).
    local: Vec<IpAddr>,
    /// Gateway mode: IKE on UDP 500 to `local` is punted too.
    punt_ike: bool,
    /// Several workers: (this worker, workers); see [`sa_owner`].
    steer: Option<(u16, u16)>,
}

impl EspDecrypt {
    pub fn new(ipsec: Ipsec) -> Self {
        EspDecrypt {
            ipsec,
            updates: None,
            update_stats: UpdateStats::default(),
            local: Vec::new(),
            punt_ike: false,
            steer: None,
        }
    }

    /// Worker `me` of `n`: ESP packets whose SA another worker owns are handed
    /// there before the replay check ([`sa_owner`]). One worker: nothing changes.
    pub fn for_worker(mut self, me: u16, n: u16) -> Self {
        self.steer = (n > 1).then_some((me, n));
        self
    }

    /// A gateway's `esp-decrypt` in front of routing: packets to one of `local`
    /// that are ESP (or ESP in UDP 4500) are decrypted, IKE on UDP 500 and 4500 and
    /// NAT keepalives are punted to the IKE daemon; everything else (transit
    /// traffic, other traffic to us) passes unchanged. SAs arrive through `updates`.
    pub fn gateway(local: Vec<IpAddr>, updates: SaQueue) -> Self {
        let mut ipsec = Ipsec::new();
        ipsec.spd.default_action = Action::Bypass;
        ipsec.sad.reserve(GATEWAY_SAS);
        let mut s = EspDecrypt::new(ipsec).with_updates(updates);
        s.local = local;
        s.punt_ike = true;
        s
    }

    /// Takes SA changes from `q` (drained by [`update_hook`]).
    pub fn with_updates(mut self, q: SaQueue) -> Self {
        self.updates = Some(q);
        self
    }

    /// Applies the queued SA changes (between bursts).
    pub fn drain_updates(&mut self) -> usize {
        drain(&mut self.ipsec, &self.updates, &mut self.update_stats)
    }

    pub fn update_stats(&self) -> UpdateStats {
        self.update_stats
    }

    pub fn ipsec(&self) -> &Ipsec {
        &self.ipsec
    }

    pub fn ipsec_mut(&mut self) -> &mut Ipsec {
        &mut self.ipsec
    }

    /// One packet (the stage's per-packet body).
    #[inline]
    pub fn decrypt(&mut self, pkt: &mut Pkt, now: u64) -> Next {
        let r = match l3(pkt) {
            Ok(mut b) => {
                if !self.local.is_empty() {
                    let d = b.data();
                    if !to_local(d, &self.local) {
                        return Next::Keep;
                    }
                    if self.punt_ike && udp_to(d, IKE_PORT) {
                        self.ipsec.counters.punted += 1;
                        return Next::Punt;
                    }
                }
                if let Some((me, n)) = self.steer {
                    if let Some(w) = self
                        .ipsec
                        .inbound_spi(b.data())
                        .map(|s| sa_owner(s, n))
                        .filter(|&w| w != me)
                    {
                        return Next::Handoff(w);
                    }
                }
                self.ipsec.inbound(&mut b, now)
            }
            Err(e) => Err(e),
        };
        match r {
            Ok(Inbound::Decrypted { .. }) => {
                fix_l2_type(pkt);
                Next::Keep
            }
            Ok(Inbound::Bypass) => Next::Keep,
            Ok(Inbound::Punt) => Next::Punt,
            Err(e) => e.into(),
        }
    }
}

impl Stage for EspDecrypt {
    fn name(&self) -> &'static str {
        "esp-decrypt"
    }

    fn errors(&self) -> &'static [&'static str] {
        &DropReason::NAMES
    }

    fn error_help(&self) -> &'static [&'static str] {
        &DropReason::HELP
    }

    fn counters(&self, f: &mut dyn FnMut(Counter)) {
        let c = &self.ipsec.counters;
        f(Counter::gauge(
            "sas",
            "security associations installed",
            self.ipsec.sad.len() as u64,
        ));
        f(Counter::total(
            "decrypted",
            "ESP packets verified and decrypted (RFC 4303 §3.4)",
            c.decrypted,
        ));
        f(Counter::total(
            "bypassed",
            "clear packets a BYPASS policy let through (RFC 4301 §4.4.1)",
            c.bypassed,
        ));
        f(Counter::total(
            "punted",
            "IKE and NAT-T keepalives on UDP 4500 sent to the control plane (RFC 3948)",
            c.punted,
        ));
        f(Counter::total(
            "sa_updates",
            "SA changes applied from the control plane",
            self.update_stats.applied,
        ));
        f(Counter::total(
            "sa_updates_refused",
            "SA changes refused (duplicate or unknown SPI)",
            self.update_stats.refused,
        ));
    }

    fn as_any_mut(&mut self) -> Option<&mut dyn core::any::Any> {
        Some(self)
    }

    fn process(&mut self, batch: &mut Batch, node: &mut NodeStats, out: &mut Out) {
        let now = out.now_ns / 1_000_000_000;
        batch.dispatch(node, out, |pkt, _| self.decrypt(pkt, now));
    }

    fn tick(&mut self, out: &mut Out) {
        self.ipsec.sad.tick(out.now_ns / 1_000_000_000);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testutil::{udp4, udp6};
    use crate::*;
    use alloc::vec::Vec;
    use core::net::{IpAddr, Ipv4Addr, Ipv6Addr};
    use dataplane::buf::Pool;
    use dataplane::graph::Graph;

    fn eth(ip: &[u8]) -> Vec<u8> {
        let mut f = alloc::vec![2, 0, 0, 0, 0, 2, 2, 0, 0, 0, 0, 1];
        f.extend_from_slice(if ip[0] >> 4 == 6 {
            &[0x86, 0xdd]
        } else {
            &[0x08, 0x00]
        });
        f.extend_from_slice(ip);
        f
    }

    fn stages(outer6: bool) -> (EspEncrypt, EspDecrypt) {
        let (s, d) = if outer6 {
            (
                IpAddr::V6(Ipv6Addr::LOCALHOST),
                IpAddr::V6(Ipv6Addr::new(0x2001, 0xdb8, 0, 0, 0, 0, 0, 9)),
            )
        } else {
            (
                IpAddr::V4(Ipv4Addr::new(192, 0, 2, 1)),
                IpAddr::V4(Ipv4Addr::new(192, 0, 2, 2)),
            )
        };
        let km = KeyMaterial::new(Algorithm::Aes128Gcm16, &[3; 20]).unwrap();
        let mut tx = Ipsec::new();
        let id = tx
            .sad
            .add(SaConfig::tunnel(0x5000, Direction::Outbound, s, d), &km, 0)
            .unwrap();
        tx.spd.push_outbound(Selector::any(), Action::Protect(id));
        let mut rx = Ipsec::new();
        rx.sad
            .add(SaConfig::tunnel(0x5000, Direction::Inbound, s, d), &km, 0)
            .unwrap();
        rx.spd.push_inbound(Selector::any(), Action::Bypass);
        (EspEncrypt::new(tx), EspDecrypt::new(rx))
    }

    #[test]
    fn batch_round_trip_with_drop_counters() {
        let pool = Pool::new(1024).unwrap();
        let mut out = Out::new(1, pool.cache());
        for outer6 in [false, true] {
            let (mut enc, mut dec) = stages(outer6);
            let mut n_enc = NodeStats::new(enc.name(), enc.errors());
            let mut n_dec = NodeStats::new(dec.name(), dec.errors());
            let mut frames = Vec::new();
            let mut batch = Batch::new();
            for i in 0..200usize {
                let ip = if i % 3 == 0 {
                    udp6(Ipv6Addr::LOCALHOST, Ipv6Addr::UNSPECIFIED, 1, 2, i)
                } else {
                    udp4(
                        Ipv4Addr::new(10, 0, 0, 1),
                        Ipv4Addr::new(10, 0, 0, 2),
                        1,
                        2,
                        i * 7,
                    )
                };
                let f = eth(&ip);
                let mut p = out.cache.alloc().unwrap();
                p.copy_from(&f).unwrap();
                p.meta.l3 = 14;
                batch.push(p).unwrap();
                frames.push(f);
            }
            enc.process(&mut batch, &mut n_enc, &mut out);
            assert_eq!(batch.len(), 200);
            let want_type = if outer6 { [0x86, 0xdd] } else { [0x08, 0x00] };
            let mut copies = Vec::new();
            for p in batch.iter() {
                assert_eq!(&p.data()[12..14], &want_type);
                copies.push(p.data().to_vec());
            }
            dec.process(&mut batch, &mut n_dec, &mut out);
            assert_eq!(batch.len(), 200);
            for (p, f) in batch.iter().zip(&frames) {
                assert_eq!(p.data(), &f[..]);
            }
            batch.free_all(&mut out.cache);
            // Replays, a forgery and a truncation, counted per reason.
            for (i, c) in copies.iter().enumerate().take(5) {
                let mut p = out.cache.alloc().unwrap();
                let mut c = c.clone();
                if i == 3 {
                    let l = c.len() - 1;
                    c[l] ^= 1;
                }
                if i == 4 {
                    c.truncate(40);
                }
                p.copy_from(&c).unwrap();
                p.meta.l3 = 14;
                batch.push(p).unwrap();
            }
            dec.process(&mut batch, &mut n_dec, &mut out);
            assert!(batch.is_empty());
            assert_eq!(
                n_dec.drops[DropReason::Replay.index()],
                4,
                "3 replays + forged (seq seen)"
            );
            assert_eq!(n_dec.drops[DropReason::Malformed.index()], 1);
            assert_eq!(n_dec.dropped(), 5);
            assert_eq!(dec.ipsec().counters.decrypted, 200);
        }
    }

    #[test]
    fn transport_mode_behind_a_vlan_tag() {
        let pool = Pool::new(64).unwrap();
        let mut out = Out::new(1, pool.cache());
        let km = KeyMaterial::new(Algorithm::Aes256Gcm16, &[9; 36]).unwrap();
        let mut cfg = SaConfig::transport(0x6000, Direction::Outbound);
        cfg.algorithm = Algorithm::Aes256Gcm16;
        cfg.encap = Some(UdpEncap::default());
        let mut tx = Ipsec::new();
        let id = tx.sad.add(cfg.clone(), &km, 0).unwrap();
        tx.spd.push_outbound(Selector::any(), Action::Protect(id));
        cfg.direction = Direction::Inbound;
        let mut rx = Ipsec::new();
        rx.sad.add(cfg, &km, 0).unwrap();
        let (mut enc, mut dec) = (EspEncrypt::new(tx), EspDecrypt::new(rx));
        // Ethernet + 802.1Q tag: L3 at 18.
        let mut f =
            alloc::vec![2, 0, 0, 0, 0, 2, 2, 0, 0, 0, 0, 1, 0x81, 0x00, 0x00, 0x07, 0x08, 0x00];
        f.extend_from_slice(&udp4(
            Ipv4Addr::new(10, 0, 0, 1),
            Ipv4Addr::new(10, 0, 0, 2),
            7,
            8,
            33,
        ));
        let mut p = out.cache.alloc().unwrap();
        p.copy_from(&f).unwrap();
        p.meta.l3 = 18;
        assert_eq!(enc.encrypt(&mut p, 0), Next::Keep);
        assert_eq!(&p.data()[..18], &f[..18], "L2 header moved along intact");
        assert_eq!(p.data()[18 + 9], 17, "UDP-encapsulated ESP");
        assert_eq!(dec.decrypt(&mut p, 0), Next::Keep);
        assert_eq!(p.data(), &f[..], "original frame restored");
        out.cache.free(p);
    }

    fn frame(ip: &[u8], out: &mut Out) -> Pkt {
        let mut p = out.cache.alloc().unwrap();
        p.copy_from(&eth(ip)).unwrap();
        p.meta.l3 = 14;
        p
    }

    fn boxed(spi: u32, dir: Direction, km: &KeyMaterial) -> Box<Sa> {
        let (a, b) = (
            IpAddr::V4(Ipv4Addr::new(192, 0, 2, 1)),
            IpAddr::V4(Ipv4Addr::new(192, 0, 2, 2)),
        );
        Box::new(Sa::new(SaConfig::tunnel(spi, dir, a, b), km, 0).unwrap())
    }

    /// SAs arrive through the update queues of running gateway stages, between
    /// bursts: install, rekey (traffic moves to the new SA, the old inbound one still
    /// decrypts), removal; refused updates are counted; transit traffic and traffic
    /// no policy names pass unchanged; IKE to the gateway is punted.
    #[test]
    fn gateway_stages_take_sa_updates_between_bursts() {
        let pool = Pool::new(256).unwrap();
        let mut out = Out::new(1, pool.cache());
        let local = IpAddr::V4(Ipv4Addr::new(192, 0, 2, 2));
        let (qe, qd) = (sa_queue(), sa_queue());
        let mut enc = EspEncrypt::gateway(qe.clone());
        let dec = EspDecrypt::gateway(alloc::vec![local], qd.clone());
        let km1 = KeyMaterial::new(Algorithm::Aes128Gcm16, &[1; 20]).unwrap();
        let km2 = KeyMaterial::new(Algorithm::Aes128Gcm16, &[2; 20]).unwrap();
        let sel = Selector::between(
            Prefix::new(IpAddr::V4(Ipv4Addr::new(10, 1, 0, 0)), 16),
            Prefix::new(IpAddr::V4(Ipv4Addr::new(10, 2, 0, 0)), 16),
        );
        let inner = udp4(
            Ipv4Addr::new(10, 1, 0, 5),
            Ipv4Addr::new(10, 2, 0, 5),
            1,
            2,
            40,
        );
        let other = udp4(
            Ipv4Addr::new(10, 3, 0, 5),
            Ipv4Addr::new(10, 2, 0, 5),
            1,
            2,
            40,
        );
        // Before any SA: everything passes in clear.
        let mut p = frame(&inner, &mut out);
        assert_eq!(enc.encrypt(&mut p, 0), Next::Keep);
        assert_eq!(&p.data()[14..], &inner[..]);
        out.cache.free(p);
        qe.push(SaUpdate::AddOutbound {
            sa: boxed(0x1001, Direction::Outbound, &km1),
            selector: sel,
        })
        .unwrap();
        qd.push(SaUpdate::AddInbound(boxed(
            0x1001,
            Direction::Inbound,
            &km1,
        )))
        .unwrap();
        // a duplicate inbound SPI and an SA for the wrong stage are refused
        qd.push(SaUpdate::AddInbound(boxed(
            0x1001,
            Direction::Inbound,
            &km1,
        )))
        .unwrap();
        qd.push(SaUpdate::AddInbound(boxed(
            0x1002,
            Direction::Outbound,
            &km1,
        )))
        .unwrap();
        let mut g = Graph::new();
        g.add(Box::new(enc), None);
        g.add(Box::new(dec), None);
        let mut hook = update_hook();
        hook(&mut g, &mut out);
        let enc = g.node_mut::<EspEncrypt>("esp-encrypt").unwrap();
        assert_eq!(enc.update_stats().applied, 1);
        let mut old_esp = frame(&inner, &mut out);
        assert_eq!(enc.encrypt(&mut old_esp, 0), Next::Keep);
        assert_eq!(old_esp.data()[14 + 9], 50, "ESP");
        let mut clear = frame(&other, &mut out);
        assert_eq!(enc.encrypt(&mut clear, 0), Next::Keep);
        assert_eq!(&clear.data()[14..], &other[..], "no policy: bypass");
        // rekey: the same selector moves to the new SA
        qe.push(SaUpdate::AddOutbound {
            sa: boxed(0x2002, Direction::Outbound, &km2),
            selector: sel,
        })
        .unwrap();
        qd.push(SaUpdate::AddInbound(boxed(
            0x2002,
            Direction::Inbound,
            &km2,
        )))
        .unwrap();
        hook(&mut g, &mut out);
        let enc = g.node_mut::<EspEncrypt>("esp-encrypt").unwrap();
        let mut new_esp = frame(&inner, &mut out);
        assert_eq!(enc.encrypt(&mut new_esp, 0), Next::Keep);
        assert_eq!(&new_esp.data()[14 + 20..14 + 24], &0x2002u32.to_be_bytes());
        assert_eq!(enc.ipsec().spd.outbound().len(), 1);
        let dec = g.node_mut::<EspDecrypt>("esp-decrypt").unwrap();
        assert_eq!(
            dec.update_stats(),
            UpdateStats {
                applied: 2,
                refused: 2
            }
        );
        for p in [&mut old_esp, &mut new_esp] {
            assert_eq!(dec.decrypt(p, 0), Next::Keep);
            assert_eq!(&p.data()[14..], &inner[..], "old and new SA decrypt");
        }
        assert_eq!(dec.decrypt(&mut clear, 0), Next::Keep, "transit: untouched");
        let ike = udp4(
            Ipv4Addr::new(192, 0, 2, 1),
            Ipv4Addr::new(192, 0, 2, 2),
            500,
            500,
            30,
        );
        let mut p = frame(&ike, &mut out);
        assert_eq!(dec.decrypt(&mut p, 0), Next::Punt, "IKE to us");
        for x in [old_esp, new_esp, clear, p] {
            out.cache.free(x);
        }
        // the old SA retires; unknown SPIs are refused
        qe.push(SaUpdate::RemoveOutbound(0x1001)).unwrap();
        qd.push(SaUpdate::RemoveInbound(0x1001)).unwrap();
        qd.push(SaUpdate::RemoveInbound(0x7777)).unwrap();
        hook(&mut g, &mut out);
        let enc = g.node_mut::<EspEncrypt>("esp-encrypt").unwrap();
        assert_eq!(enc.ipsec().sad.len(), 1);
        assert_eq!(
            enc.ipsec().spd.outbound().len(),
            1,
            "the policy stays on the new SA"
        );
        let dec = g.node_mut::<EspDecrypt>("esp-decrypt").unwrap();
        assert_eq!(dec.ipsec().sad.len(), 1);
        assert_eq!(dec.update_stats().refused, 3);
        // deleting the last SA removes its policy: clear again
        qe.push(SaUpdate::RemoveOutbound(0x2002)).unwrap();
        hook(&mut g, &mut out);
        let enc = g.node_mut::<EspEncrypt>("esp-encrypt").unwrap();
        assert!(enc.ipsec().spd.outbound().is_empty());
        let mut p = frame(&inner, &mut out);
        assert_eq!(enc.encrypt(&mut p, 0), Next::Keep);
        assert_eq!(&p.data()[14..], &inner[..]);
        out.cache.free(p);
    }

    #[test]
    fn l3_offset_past_the_packet_is_a_counted_drop() {
        let pool = Pool::new(64).unwrap();
        let mut out = Out::new(1, pool.cache());
        let (mut enc, _) = stages(false);
        let mut node = NodeStats::new(enc.name(), enc.errors());
        let mut batch = Batch::new();
        let mut p = out.cache.alloc().unwrap();
        p.copy_from(&[1, 2, 3]).unwrap();
        p.meta.l3 = 14;
        batch.push(p).unwrap();
        enc.process(&mut batch, &mut node, &mut out);
        assert_eq!(node.drops[DropReason::Malformed.index()], 1);
    }
}
