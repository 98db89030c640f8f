//! QoS stages: policers (RFC 2697 single-rate and RFC 2698 two-rate three-colour
//! markers), a per-subscriber token-bucket shaper with bounded queues, and DSCP marking
//! (RFC 2474 §3; the IPv4 header checksum is updated per RFC 1624).
//!
//! Rates are in bits per second, bursts in bytes, packet size is the frame length.
//! All time comes from `Out::now_ns` (a monotonic clock the runner sets per batch), so
//! tests drive time by setting it. Token arithmetic is integer: tokens are kept in
//! nano-bytes (bytes × 10^9), and `dt_ns × rate_bps / 8` nano-bytes arrive per `dt_ns`,
//! computed in 128 bits, so no rate is rounded.

use crate::batch::{Batch, Next, Out};
use crate::buf::Pkt;
use crate::proto::checksum::update16;
use crate::proto::ethernet::walk_vlans;
use crate::proto::EtherType;
use crate::stage::{Counter, NodeStats, Stage};
use alloc::collections::VecDeque;
use alloc::vec;
use alloc::vec::Vec;
use core::fmt;
use serde::Deserialize;

mod meter;
pub use meter::*;
mod config;
pub use config::*;

/// Offset of the IP header and whether it is IPv4 (`Some(true)`) or IPv6.
#[inline(always)]
fn l3_of(d: &[u8]) -> Option<(usize, bool)> {
    let l2 = walk_vlans(d).ok()?;
    match l2.ethertype {
        EtherType::IPV4 => Some((l2.l3_offset, true)),
        EtherType::IPV6 => Some((l2.l3_offset, false)),
        _ => None,
    }
}

/// The DSCP of an IP packet.
#[inline]
pub fn dscp_of(d: &[u8]) -> Option<u8> {
    let (l3, v4) = l3_of(d)?;
    if v4 {
        d.get(l3 + 1).map(|b| b >> 2)
    } else {
        let w = <&[u8; 2]>::try_from(d.get(l3..l3 + 2)?).ok()?;
        Some(((w[0] & 0x0f) << 2) | (w[1] >> 6))
    }
}

/// Sets the DSCP of an IPv4 (checksum updated, RFC 1624) or IPv6 packet, keeping ECN.
/// Returns `false` for other packets.
#[inline]
pub fn set_dscp(d: &mut [u8], dscp: u8) -> bool {
    let Some((l3, v4)) = l3_of(d) else {
        return false;
    };
    let dscp = dscp & 0x3f;
    if v4 {
        let Some(h) = d
            .get_mut(l3..l3 + 12)
            .and_then(|x| <&mut [u8; 12]>::try_from(x).ok())
        else {
            return false;
        };
        let old = u16::from_be_bytes([h[0], h[1]]);
        h[1] = (dscp << 2) | (h[1] & 3);
        let new = u16::from_be_bytes([h[0], h[1]]);
        let c = u16::from_be_bytes([h[10], h[11]]);
        let [c0, c1] = update16(c, old, new).to_be_bytes();
        h[10] = c0;
        h[11] = c1;
        true
    } else {
        let Some(h) = d
            .get_mut(l3..l3 + 2)
            .and_then(|x| <&mut [u8; 2]>::try_from(x).ok())
        else {
            return false;
        };
        h[0] = (h[0] & 0xf0) | (dscp >> 2);
        h[1] = ((dscp & 3) << 6) | (h[1] & 0x3f);
        true
    }
}

/// RFC 2597 AF drop precedence as a pre-colour: AFx1 green, AFx2 yellow, AFx3 red.
#[inline]
pub fn af_color(dscp: u8) -> Color {
    match dscp {
        10 | 18 | 26 | 34 => Color::Green,
        12 | 20 | 28 | 36 => Color::Yellow,
        14 | 22 | 30 | 38 => Color::Red,
        _ => Color::Green,
    }
}

crate::drop_reasons! {
    /// Why `policer` drops: the colour (RFC 2697 / RFC 2698) whose configured verdict
    /// is drop.
    pub enum PolicerDrop {
        Red = ("red (policed)", "exceeded the peak (trTCM) or excess (srTCM) bucket and red drops"),
        Yellow = ("yellow (policed)", "exceeded the committed bucket only, and yellow drops"),
        Green = ("green (policed)", "conformed, but the green verdict is configured to drop"),
    }
}

/// Packets per colour.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct ColorStats {
    pub green: u64,
    pub yellow: u64,
    pub red: u64,
    /// Packets without a meter (key out of range).
    pub unmetered: u64,
}

/// `policer`: meters every packet and applies the colour's verdict.
pub struct Policer {
    meters: Vec<Meter>,
    key: MeterKey,
    color_aware: bool,
    verdicts: [Verdict; 3],
    pub stats: ColorStats,
}

impl fmt::Debug for Policer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Policer")
            .field("meters", &self.meters.len())
            .field("stats", &self.stats)
            .finish()
    }
}

impl Policer {
    pub fn new(cfg: &PolicerConfig, now_ns: u64) -> Result<Self, QosConfigError> {
        cfg.validate()?;
        let n = if cfg.key == MeterKey::Single {
            1
        } else {
            cfg.meters as usize
        };
        Ok(Policer {
            meters: vec![cfg.meter.build(now_ns); n],
            key: cfg.key,
            color_aware: cfg.color_aware,
            verdicts: [cfg.green, cfg.yellow, cfg.red],
            stats: ColorStats::default(),
        })
    }

    /// Replaces meter `i` (e.g. a subscriber's profile from RADIUS).
    pub fn set_meter(&mut self, i: usize, m: Meter) {
        if let Some(x) = self.meters.get_mut(i) {
            *x = m;
        }
    }

    /// Replaces every meter with a fresh one of `meter` (a rate or burst change at
    /// run time: the buckets start full). Allocates nothing.
    pub fn set_all_meters(&mut self, meter: &MeterConfig, now_ns: u64) {
        for m in self.meters.iter_mut() {
            *m = meter.build(now_ns);
        }
    }

    #[inline]
    fn police(&mut self, p: &mut Pkt, now_ns: u64) -> Next {
        let i = match self.key {
            MeterKey::Single => 0,
            MeterKey::User => p.meta.user as usize,
            MeterKey::InPort => usize::from(p.meta.port),
        };
        let pre = if self.color_aware {
            dscp_of(p.data()).map(af_color)
        } else {
            None
        };
        let len = p.len();
        let Some(m) = self.meters.get_mut(i) else {
            self.stats.unmetered += 1;
            return Next::Keep;
        };
        let c = m.meter(len, now_ns, pre);
        let v = match c {
            Color::Green => {
                self.stats.green += 1;
                self.verdicts[0]
            }
            Color::Yellow => {
                self.stats.yellow += 1;
                self.verdicts[1]
            }
            Color::Red => {
                self.stats.red += 1;
                self.verdicts[2]
            }
        };
        match v {
            Verdict::Pass => Next::Keep,
            Verdict::Drop => match c {
                Color::Red => PolicerDrop::Red.into(),
                Color::Yellow => PolicerDrop::Yellow.into(),
                Color::Green => PolicerDrop::Green.into(),
            },
            Verdict::Mark(d) => {
                set_dscp(p.data_mut(), d);
                Next::Keep
            }
        }
    }
}

impl Stage for Policer {
    fn as_any_mut(&mut self) -> Option<&mut dyn core::any::Any> {
        Some(self)
    }

    fn name(&self) -> &'static str {
        "policer"
    }

    fn errors(&self) -> &'static [&'static str] {
        PolicerDrop::NAMES
    }

    fn error_help(&self) -> &'static [&'static str] {
        PolicerDrop::HELP
    }

    fn counters(&self, f: &mut dyn FnMut(Counter)) {
        let st = &self.stats;
        f(Counter::total(
            "green",
            "packets metered green (RFC 2697 / RFC 2698)",
            st.green,
        ));
        f(Counter::total(
            "yellow",
            "packets metered yellow",
            st.yellow,
        ));
        f(Counter::total("red", "packets metered red", st.red));
        f(Counter::total(
            "unmetered",
            "packets without a meter (key out of range)",
            st.unmetered,
        ));
    }

    fn process(&mut self, batch: &mut Batch, node: &mut NodeStats, out: &mut Out) {
        let now = out.now_ns;
        batch.dispatch(node, out, |p, _| self.police(p, now));
    }
}

/// `dscp-mark`: sets the DSCP of IP packets.
#[derive(Debug)]
pub struct DscpMarker {
    dscp: u8,
    ports: u64,
}

impl DscpMarker {
    pub fn new(cfg: &MarkerConfig) -> Result<Self, QosConfigError> {
        cfg.validate()?;
        let mut ports = 0u64;
        for &p in &cfg.in_ports {
            ports |= 1u64.checked_shl(u32::from(p)).unwrap_or(0);
        }
        Ok(DscpMarker {
            dscp: cfg.dscp,
            ports: if cfg.in_ports.is_empty() {
                u64::MAX
            } else {
                ports
            },
        })
    }
}

impl Stage for DscpMarker {
    fn name(&self) -> &'static str {
        "dscp-mark"
    }

    fn process(&mut self, batch: &mut Batch, node: &mut NodeStats, out: &mut Out) {
        let (dscp, ports) = (self.dscp, self.ports);
        batch.dispatch(node, out, |p, _| {
            if p.meta.port < 64 && ports & (1 << p.meta.port) != 0 {
                set_dscp(p.data_mut(), dscp);
            }
            Next::Keep
        });
    }
}

/// One shaped subscriber.
#[derive(Clone, Copy, Debug)]
struct ShapedSub {
    bucket: TokenBucket,
    head: u32,
    tail: u32,
    qlen: u32,
    active: bool,
}

const NIL: u32 = u32::MAX;

crate::drop_reasons! {
    /// Why `shaper` drops.
    pub enum ShaperDrop {
        QueueFull = ("subscriber queue full", "the subscriber's queue reached its packet limit (tail drop)"),
        BufferFull = ("shaper buffer full", "no free buffer slot in the shaper, or no room downstream"),
    }
}

/// Shaper counters.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct ShaperStats {
    pub conformed: u64,
    pub queued: u64,
    pub released: u64,
    pub unshaped: u64,
}

/// `shaper`: a token bucket per subscriber; packets over the rate wait in a bounded
/// FIFO per subscriber (shared preallocated slab) and leave when tokens allow, in
/// order. Subscribers with waiting packets are served round-robin.
pub struct Shaper {
    subs: Vec<ShapedSub>,
    slots: Vec<Option<Pkt>>,
    next: Vec<u32>,
    free: Vec<u32>,
    active: VecDeque<u32>,
    qlimit: u32,
    egress: Option<u16>,
    tmp: Batch,
    pub stats: ShaperStats,
}

impl fmt::Debug for Shaper {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Shaper")
            .field("subscribers", &self.subs.len())
            .field("queued", &self.queued())
            .field("stats", &self.stats)
            .finish()
    }
}

/// What the shaper does with one packet.
enum Shape {
    Pass,
    Queue(usize),
    Drop(ShaperDrop),
}

impl Shaper {
    pub fn new(cfg: &ShaperConfig, now_ns: u64) -> Result<Self, QosConfigError> {
        cfg.validate()?;
        let n = cfg.subscribers as usize;
        let q = cfg.total_queue_packets as usize;
        let s = ShapedSub {
            bucket: TokenBucket::new(cfg.rate_bps, cfg.burst_bytes, now_ns),
            head: NIL,
            tail: NIL,
            qlen: 0,
            active: false,
        };
        Ok(Shaper {
            subs: vec![s; n],
            slots: (0..q).map(|_| None).collect(),
            next: vec![NIL; q],
            free: (0..q as u32).rev().collect(),
            active: VecDeque::with_capacity(n),
            qlimit: cfg.queue_packets,
            egress: cfg.egress_port,
            tmp: Batch::new(),
            stats: ShaperStats::default(),
        })
    }

    /// Sets subscriber `i`'s rate and burst (the bucket starts full).
    pub fn set_rate(&mut self, i: usize, rate_bps: u64, burst_bytes: u32, now_ns: u64) {
        if let Some(s) = self.subs.get_mut(i) {
            s.bucket = TokenBucket::new(rate_bps, burst_bytes, now_ns);
        }
    }

    /// Packets waiting over all subscribers.
    pub fn queued(&self) -> usize {
        self.slots.len() - self.free.len()
    }

    #[inline]
    fn classify(&mut self, p: &Pkt, now_ns: u64) -> Shape {
        let i = p.meta.user as usize;
        let Some(s) = self.subs.get_mut(i) else {
            self.stats.unshaped += 1;
            return Shape::Pass;
        };
        s.bucket.fill(now_ns);
        if s.qlen == 0 && s.bucket.take(p.len()) {
            self.stats.conformed += 1;
            return Shape::Pass;
        }
        if s.qlen >= self.qlimit {
            return Shape::Drop(ShaperDrop::QueueFull);
        }
        if self.free.is_empty() {
            return Shape::Drop(ShaperDrop::BufferFull);
        }
        Shape::Queue(i)
    }

    fn enqueue(&mut self, i: usize, p: Pkt) {
        let Some(slot) = self.free.pop() else {
            // classify checked there is room; keep the packet anyway by freeing it.
            p.pool().free(p);
            return;
        };
        if let Some(x) = self.slots.get_mut(slot as usize) {
            *x = Some(p);
        }
        if let Some(n) = self.next.get_mut(slot as usize) {
            *n = NIL;
        }
        let Some(s) = self.subs.get_mut(i) else {
            return;
        };
        if s.tail != NIL {
            if let Some(n) = self.next.get_mut(s.tail as usize) {
                *n = slot;
            }
        } else {
            s.head = slot;
        }
        s.tail = slot;
        s.qlen += 1;
        if !s.active {
            s.active = true;
            self.active.push_back(i as u32);
        }
        self.stats.queued += 1;
    }

    /// Moves packets whose tokens have arrived to `sink` (at most `room` of them),
    /// round-robin over the waiting subscribers.
    fn release(&mut self, now_ns: u64, mut room: usize, mut sink: impl FnMut(Pkt)) {
        let rounds = self.active.len();
        for _ in 0..rounds {
            if room == 0 {
                break;
            }
            let Some(i) = self.active.pop_front() else {
                break;
            };
            let Some(s) = self.subs.get_mut(i as usize) else {
                continue;
            };
            s.bucket.fill(now_ns);
            while room > 0 && s.head != NIL {
                let h = s.head as usize;
                let len = self
                    .slots
                    .get(h)
                    .and_then(|x| x.as_ref())
                    .map_or(0, |p| p.len());
                if !s.bucket.take(len) {
                    break;
                }
                let nx = self.next.get(h).copied().unwrap_or(NIL);
                s.head = nx;
                if nx == NIL {
                    s.tail = NIL;
                }
                s.qlen -= 1;
                self.free.push(h as u32);
                if let Some(p) = self.slots.get_mut(h).and_then(|x| x.take()) {
                    self.stats.released += 1;
                    room -= 1;
                    sink(p);
                }
            }
            if s.head != NIL {
                self.active.push_back(i);
            } else {
                s.active = false;
            }
        }
    }
}

impl Drop for Shaper {
    fn drop(&mut self) {
        for p in self.slots.iter_mut().filter_map(|x| x.take()) {
            p.pool().free(p);
        }
    }
}

impl Stage for Shaper {
    fn name(&self) -> &'static str {
        "shaper"
    }

    fn errors(&self) -> &'static [&'static str] {
        ShaperDrop::NAMES
    }

    fn error_help(&self) -> &'static [&'static str] {
        ShaperDrop::HELP
    }

    fn counters(&self, f: &mut dyn FnMut(Counter)) {
        let st = &self.stats;
        f(Counter::gauge(
            "queued",
            "packets waiting in subscriber queues",
            self.queued() as u64,
        ));
        f(Counter::total(
            "conformed",
            "packets within their rate, sent at once",
            st.conformed,
        ));
        f(Counter::total(
            "enqueued",
            "packets queued to wait for tokens",
            st.queued,
        ));
        f(Counter::total(
            "released",
            "queued packets sent on",
            st.released,
        ));
        f(Counter::total(
            "unshaped",
            "packets of subscribers without a shaper",
            st.unshaped,
        ));
    }

    fn process(&mut self, batch: &mut Batch, node: &mut NodeStats, out: &mut Out) {
        let now = out.now_ns;
        // Packets already waiting go first (FIFO per subscriber is kept by
        // `classify`, which queues behind a non-empty queue).
        let mut tmp = core::mem::take(&mut self.tmp);
        node.packets += batch.len() as u64;
        batch.drain(|p| {
            let _ = tmp.push(p);
        });
        let egress = self.egress;
        let room = match egress {
            Some(e) => out
                .ports
                .get(usize::from(e))
                .map_or(0, |b| b.room().saturating_sub(tmp.len())),
            // Keep room for the incoming packets that conform.
            None => batch.room().saturating_sub(tmp.len()),
        };
        self.release(now, room, |p| match egress {
            Some(e) => out.send(node, p, Next::Port(e)),
            None => {
                if let Err(p) = batch.push(p) {
                    out.free(p);
                }
            }
        });
        tmp.drain(|p| match self.classify(&p, now) {
            Shape::Pass => match egress {
                Some(e) => out.send(node, p, Next::Port(e)),
                None => {
                    if let Err(p) = batch.push(p) {
                        out.send(node, p, ShaperDrop::BufferFull.into());
                    }
                }
            },
            Shape::Queue(i) => self.enqueue(i, p),
            Shape::Drop(r) => out.send(node, p, r.into()),
        });
        self.tmp = tmp;
    }

    fn tick(&mut self, out: &mut Out) {
        let Some(e) = self.egress else {
            return;
        };
        let room = out.ports.get(usize::from(e)).map_or(0, |b| b.room());
        let now = out.now_ns;
        let mut released = 0u64;
        self.release(now, room, |p| {
            if let Some(b) = out.ports.get_mut(usize::from(e)) {
                if let Err(p) = b.push(p) {
                    p.pool().free(p);
                } else {
                    released += 1;
                }
            }
        });
        let _ = released;
    }
}

#[cfg(test)]
mod tests;
