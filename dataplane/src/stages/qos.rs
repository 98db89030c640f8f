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

const NANO: u64 = 1_000_000_000;
/// Longest gap credited at once (tokens are full long before).
const MAX_DT: u64 = 1 << 36;

/// A token bucket filled at `rate_bps` up to `burst` bytes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct TokenBucket {
    /// Rate in bits per second.
    pub rate_bps: u64,
    /// Capacity in nano-bytes.
    cap: u64,
    /// Tokens in nano-bytes.
    tokens: u64,
    last_ns: u64,
}

impl TokenBucket {
    /// A full bucket.
    pub fn new(rate_bps: u64, burst_bytes: u32, now_ns: u64) -> Self {
        let cap = u64::from(burst_bytes) * NANO;
        TokenBucket {
            rate_bps,
            cap,
            tokens: cap,
            last_ns: now_ns,
        }
    }

    /// Nano-bytes earned since the last update (not yet added).
    #[inline(always)]
    fn earned(&mut self, now_ns: u64) -> u64 {
        let dt = now_ns.saturating_sub(self.last_ns).min(MAX_DT);
        self.last_ns = self.last_ns.max(now_ns);
        let add = u128::from(dt) * u128::from(self.rate_bps) / 8;
        u64::try_from(add).unwrap_or(u64::MAX)
    }

    /// Adds the tokens earned until `now_ns`; returns what overflowed the bucket.
    #[inline(always)]
    pub fn fill(&mut self, now_ns: u64) -> u64 {
        let add = self.earned(now_ns);
        let t = self.tokens.saturating_add(add);
        self.tokens = t.min(self.cap);
        t - self.tokens
    }

    /// Adds `nb` nano-bytes (overflow from another bucket).
    #[inline(always)]
    fn add(&mut self, nb: u64) {
        self.tokens = self.tokens.saturating_add(nb).min(self.cap);
    }

    #[inline(always)]
    pub fn has(&self, bytes: usize) -> bool {
        self.tokens >= bytes as u64 * NANO
    }

    #[inline(always)]
    pub fn take_unchecked(&mut self, bytes: usize) {
        self.tokens = self.tokens.saturating_sub(bytes as u64 * NANO);
    }

    /// Takes `bytes` if there are enough tokens.
    #[inline(always)]
    pub fn take(&mut self, bytes: usize) -> bool {
        let need = bytes as u64 * NANO;
        if self.tokens >= need {
            self.tokens -= need;
            true
        } else {
            false
        }
    }

    /// Tokens in whole bytes.
    pub fn tokens_bytes(&self) -> u64 {
        self.tokens / NANO
    }

    /// Nanoseconds until `bytes` tokens are available (0 if they are).
    pub fn wait_ns(&self, bytes: usize) -> u64 {
        let need = (bytes as u64 * NANO).min(self.cap);
        if self.tokens >= need || self.rate_bps == 0 {
            return if self.tokens >= need { 0 } else { u64::MAX };
        }
        let missing = u128::from(need - self.tokens) * 8;
        u64::try_from(missing.div_ceil(u128::from(self.rate_bps))).unwrap_or(u64::MAX)
    }
}

/// Packet colour.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum Color {
    Green,
    Yellow,
    Red,
}

/// RFC 2697 single-rate three-colour marker.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Srtcm {
    /// Committed bucket: CIR, CBS.
    pub c: TokenBucket,
    /// Excess bucket: CBS overflow, EBS.
    pub e: TokenBucket,
}

impl Srtcm {
    /// Both buckets start full (RFC 2697 §3).
    pub fn new(cir_bps: u64, cbs: u32, ebs: u32, now_ns: u64) -> Self {
        Srtcm {
            c: TokenBucket::new(cir_bps, cbs, now_ns),
            e: TokenBucket::new(0, ebs, now_ns),
        }
    }

    /// Meters a packet of `bytes` (RFC 2697 §3: colour-blind when `pre` is `None`,
    /// colour-aware otherwise).
    #[inline]
    pub fn meter(&mut self, bytes: usize, now_ns: u64, pre: Option<Color>) -> Color {
        // Tokens beyond CBS go to the excess bucket: "if Tc < CBS, Tc += 1; else if
        // Te < EBS, Te += 1".
        let over = self.c.fill(now_ns);
        self.e.last_ns = now_ns;
        self.e.add(over);
        let pre = pre.unwrap_or(Color::Green);
        if pre == Color::Green && self.c.take(bytes) {
            Color::Green
        } else if pre != Color::Red && self.e.take(bytes) {
            Color::Yellow
        } else {
            Color::Red
        }
    }
}

/// RFC 2698 two-rate three-colour marker.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Trtcm {
    /// Peak bucket: PIR, PBS.
    pub p: TokenBucket,
    /// Committed bucket: CIR, CBS.
    pub c: TokenBucket,
}

impl Trtcm {
    pub fn new(cir_bps: u64, cbs: u32, pir_bps: u64, pbs: u32, now_ns: u64) -> Self {
        Trtcm {
            p: TokenBucket::new(pir_bps, pbs, now_ns),
            c: TokenBucket::new(cir_bps, cbs, now_ns),
        }
    }

    /// Meters a packet (RFC 2698 §3).
    #[inline]
    pub fn meter(&mut self, bytes: usize, now_ns: u64, pre: Option<Color>) -> Color {
        self.p.fill(now_ns);
        self.c.fill(now_ns);
        let pre = pre.unwrap_or(Color::Green);
        if pre == Color::Red || !self.p.has(bytes) {
            Color::Red
        } else if pre == Color::Yellow || !self.c.has(bytes) {
            self.p.take_unchecked(bytes);
            Color::Yellow
        } else {
            self.p.take_unchecked(bytes);
            self.c.take_unchecked(bytes);
            Color::Green
        }
    }
}

/// A meter of either kind.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Meter {
    Sr(Srtcm),
    Tr(Trtcm),
}

impl Meter {
    #[inline]
    pub fn meter(&mut self, bytes: usize, now_ns: u64, pre: Option<Color>) -> Color {
        match self {
            Meter::Sr(m) => m.meter(bytes, now_ns, pre),
            Meter::Tr(m) => m.meter(bytes, now_ns, pre),
        }
    }
}

/// Meter parameters as configured.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Deserialize)]
#[serde(tag = "type", rename_all = "kebab-case", deny_unknown_fields)]
pub enum MeterConfig {
    /// RFC 2697.
    Srtcm { cir_bps: u64, cbs: u32, ebs: u32 },
    /// RFC 2698.
    Trtcm {
        cir_bps: u64,
        cbs: u32,
        pir_bps: u64,
        pbs: u32,
    },
}

impl MeterConfig {
    pub fn build(&self, now_ns: u64) -> Meter {
        match *self {
            MeterConfig::Srtcm { cir_bps, cbs, ebs } => {
                Meter::Sr(Srtcm::new(cir_bps, cbs, ebs, now_ns))
            }
            MeterConfig::Trtcm {
                cir_bps,
                cbs,
                pir_bps,
                pbs,
            } => Meter::Tr(Trtcm::new(cir_bps, cbs, pir_bps, pbs, now_ns)),
        }
    }
}

/// What to do with a packet of a colour.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Verdict {
    Pass,
    Drop,
    /// Pass with this DSCP.
    Mark(u8),
}

/// Which meter a packet uses.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum MeterKey {
    /// One meter for everything.
    #[default]
    Single,
    /// `Meta::user` (the subscriber index a session stage set).
    User,
    /// The ingress port.
    InPort,
}

/// The policer section of `[qos]`.
#[derive(Clone, Debug, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PolicerConfig {
    pub meter: MeterConfig,
    #[serde(default)]
    pub key: MeterKey,
    /// Number of meters (for `user`/`in-port` keys).
    #[serde(default = "one")]
    pub meters: u32,
    /// Take the pre-colour from the AF drop precedence of the DSCP (RFC 2597).
    #[serde(default)]
    pub color_aware: bool,
    #[serde(default = "pass")]
    pub green: Verdict,
    #[serde(default = "pass")]
    pub yellow: Verdict,
    #[serde(default = "drop")]
    pub red: Verdict,
}

fn one() -> u32 {
    1
}
fn pass() -> Verdict {
    Verdict::Pass
}
fn drop() -> Verdict {
    Verdict::Drop
}

/// The shaper section of `[qos]`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ShaperConfig {
    /// Subscribers (indexed by `Meta::user`); others pass unshaped.
    pub subscribers: u32,
    /// Default rate and burst of each subscriber.
    pub rate_bps: u64,
    pub burst_bytes: u32,
    /// Queue limit per subscriber, in packets.
    #[serde(default = "default_queue")]
    pub queue_packets: u32,
    /// Packets queued over all subscribers.
    #[serde(default = "default_total")]
    pub total_queue_packets: u32,
    /// Send conforming and released packets straight to this port (the shaper is
    /// then the last stage, and `tick` releases queued packets too). Without it,
    /// conforming packets stay in the batch and released ones join the next batch.
    #[serde(default)]
    pub egress_port: Option<u16>,
}

fn default_queue() -> u32 {
    64
}
fn default_total() -> u32 {
    16384
}

/// The DSCP marker section of `[qos]`.
#[derive(Clone, Debug, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MarkerConfig {
    pub dscp: u8,
    /// Mark only packets from these ports (all when empty).
    #[serde(default)]
    pub in_ports: Vec<u16>,
}

/// The `[qos]` section of a VNF config.
#[derive(Clone, Debug, Default, PartialEq, Eq, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct QosConfig {
    pub policer: Option<PolicerConfig>,
    pub shaper: Option<ShaperConfig>,
    pub marker: Option<MarkerConfig>,
}

/// Most meters of a policer and most subscribers of a shaper.
pub const MAX_METERS: u32 = 1 << 24;
/// Most packets a shaper may hold queued.
pub const MAX_QUEUE_PACKETS: u32 = 1 << 24;
/// Highest port number a port set (`in_ports`) may name (a 64-bit mask).
pub const MAX_PORT: u16 = 63;

/// A QoS config that cannot be built. The messages name the field but not the
/// section: the caller knows where it came from (`qos.policer: ...`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum QosConfigError {
    BadDscp,
    BadCount(&'static str),
    /// A rate of 0 bit/s (nothing would ever conform).
    ZeroRate(&'static str),
    /// A burst of 0 bytes where the RFC asks for more.
    ZeroBurst(&'static str),
    /// RFC 2698 §2: the PIR must be equal to or greater than the CIR.
    PirBelowCir,
}

impl fmt::Display for QosConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            QosConfigError::BadDscp => f.write_str("DSCP must be 0..=63"),
            QosConfigError::BadCount(w) => write!(f, "{w} out of range"),
            QosConfigError::ZeroRate(w) => write!(f, "{w}: a rate must be above 0 bit/s"),
            QosConfigError::ZeroBurst(w) => write!(f, "{w}: must be above 0 bytes"),
            QosConfigError::PirBelowCir => {
                f.write_str("meter: pir_bps must be >= cir_bps (RFC 2698 §2)")
            }
        }
    }
}

impl core::error::Error for QosConfigError {}

impl MeterConfig {
    /// RFC 2697 §2 (CIR above 0, CBS or EBS above 0) and RFC 2698 §2 (PIR >= CIR,
    /// both above 0, PBS and CBS above 0).
    pub fn validate(&self) -> Result<(), QosConfigError> {
        match *self {
            MeterConfig::Srtcm { cir_bps, cbs, ebs } => {
                if cir_bps == 0 {
                    return Err(QosConfigError::ZeroRate("meter.cir_bps"));
                }
                if cbs == 0 && ebs == 0 {
                    return Err(QosConfigError::ZeroBurst("meter.cbs or meter.ebs"));
                }
            }
            MeterConfig::Trtcm {
                cir_bps,
                cbs,
                pir_bps,
                pbs,
            } => {
                if cir_bps == 0 {
                    return Err(QosConfigError::ZeroRate("meter.cir_bps"));
                }
                if pir_bps < cir_bps {
                    return Err(QosConfigError::PirBelowCir);
                }
                if cbs == 0 {
                    return Err(QosConfigError::ZeroBurst("meter.cbs"));
                }
                if pbs == 0 {
                    return Err(QosConfigError::ZeroBurst("meter.pbs"));
                }
            }
        }
        Ok(())
    }
}

impl PolicerConfig {
    /// Every check [`Policer::new`] makes, without allocating the meters.
    pub fn validate(&self) -> Result<(), QosConfigError> {
        if self.meters == 0 || self.meters > MAX_METERS {
            return Err(QosConfigError::BadCount("meters (1..=16777216)"));
        }
        for v in [self.green, self.yellow, self.red] {
            if matches!(v, Verdict::Mark(d) if d > 63) {
                return Err(QosConfigError::BadDscp);
            }
        }
        self.meter.validate()
    }
}

impl ShaperConfig {
    /// Every check [`Shaper::new`] makes, without allocating the queues.
    pub fn validate(&self) -> Result<(), QosConfigError> {
        if self.subscribers == 0 || self.subscribers > MAX_METERS {
            return Err(QosConfigError::BadCount("subscribers (1..=16777216)"));
        }
        if self.total_queue_packets == 0 || self.total_queue_packets > MAX_QUEUE_PACKETS {
            return Err(QosConfigError::BadCount(
                "total_queue_packets (1..=16777216)",
            ));
        }
        if self.queue_packets == 0 || self.queue_packets > self.total_queue_packets {
            return Err(QosConfigError::BadCount(
                "queue_packets (1..=total_queue_packets)",
            ));
        }
        if self.rate_bps == 0 {
            return Err(QosConfigError::ZeroRate("rate_bps"));
        }
        if self.burst_bytes == 0 {
            return Err(QosConfigError::ZeroBurst("burst_bytes"));
        }
        Ok(())
    }
}

impl MarkerConfig {
    /// Every check [`DscpMarker::new`] makes.
    pub fn validate(&self) -> Result<(), QosConfigError> {
        if self.dscp > 63 {
            return Err(QosConfigError::BadDscp);
        }
        if self.in_ports.iter().any(|&p| p > MAX_PORT) {
            return Err(QosConfigError::BadCount("in_ports (0..=63)"));
        }
        Ok(())
    }
}

impl QosConfig {
    /// Validates every part present.
    pub fn validate(&self) -> Result<(), QosConfigError> {
        if let Some(p) = &self.policer {
            p.validate()?;
        }
        if let Some(s) = &self.shaper {
            s.validate()?;
        }
        if let Some(m) = &self.marker {
            m.validate()?;
        }
        Ok(())
    }
}

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
mod tests {
    use super::*;
    use crate::buf::Pool;
    use crate::proto::checksum;
    use etherparse::PacketBuilder;

    #[test]
    fn meter_and_shaper_configs_are_checked() {
        let tr = |cir_bps, pir_bps| MeterConfig::Trtcm {
            cir_bps,
            cbs: 1500,
            pir_bps,
            pbs: 3000,
        };
        assert_eq!(
            tr(2_000, 1_000).validate(),
            Err(QosConfigError::PirBelowCir)
        );
        assert_eq!(
            tr(0, 1_000).validate(),
            Err(QosConfigError::ZeroRate("meter.cir_bps"))
        );
        assert!(tr(1_000, 1_000).validate().is_ok());
        let sr = MeterConfig::Srtcm {
            cir_bps: 0,
            cbs: 1,
            ebs: 1,
        };
        assert!(sr.validate().is_err());
        let pc = PolicerConfig {
            meter: tr(2_000, 1_000),
            key: MeterKey::Single,
            meters: 1,
            color_aware: false,
            green: Verdict::Pass,
            yellow: Verdict::Pass,
            red: Verdict::Drop,
        };
        let e = Policer::new(&pc, 0).unwrap_err();
        let msg = alloc::format!("{e}");
        assert_eq!(msg, "meter: pir_bps must be >= cir_bps (RFC 2698 §2)");
        let sc = ShaperConfig {
            subscribers: 4,
            rate_bps: 0,
            burst_bytes: 1500,
            queue_packets: 8,
            total_queue_packets: 64,
            egress_port: None,
        };
        assert_eq!(
            Shaper::new(&sc, 0).err(),
            Some(QosConfigError::ZeroRate("rate_bps"))
        );
        let sc = ShaperConfig {
            rate_bps: 1_000_000,
            total_queue_packets: u32::MAX,
            ..sc
        };
        assert!(sc.validate().is_err());
    }

    const MS: u64 = 1_000_000;

    #[test]
    fn srtcm_rfc2697_colours() {
        // CIR 8 kbit/s = 1000 B/s, CBS 1500, EBS 1500.
        let mut m = Srtcm::new(8000, 1500, 1500, 0);
        assert_eq!(m.meter(1000, 0, None), Color::Green);
        assert_eq!(
            m.meter(1000, 0, None),
            Color::Yellow,
            "Tc 500 < 1000, Te full"
        );
        assert_eq!(m.meter(600, 0, None), Color::Red, "Tc 500 and Te 500 < 600");
        assert_eq!(m.meter(500, 0, None), Color::Green);
        assert_eq!(m.meter(500, 0, None), Color::Yellow);
    }

    #[test]
    fn srtcm_refill_and_overflow_to_excess() {
        let mut m = Srtcm::new(8000, 1000, 2000, 0);
        // Drain both buckets.
        assert_eq!(m.meter(1000, 0, None), Color::Green);
        assert_eq!(m.meter(2000, 0, None), Color::Yellow);
        assert_eq!(m.meter(1, 0, None), Color::Red);
        // 1 s later: Tc full (1000), nothing overflowed yet.
        assert_eq!(m.meter(1000, 1000 * MS, None), Color::Green);
        assert_eq!(m.meter(1, 1000 * MS, None), Color::Red);
        // 3 s idle: 1000 into Tc, 2000 overflow into Te.
        assert_eq!(m.c.fill(4000 * MS), 2000 * NANO);
        // Colour-aware: a yellow packet never takes green tokens.
        let mut m = Srtcm::new(8000, 1000, 1000, 0);
        assert_eq!(m.meter(100, 0, Some(Color::Yellow)), Color::Yellow);
        assert_eq!(m.meter(100, 0, Some(Color::Red)), Color::Red);
        assert_eq!(m.c.tokens_bytes(), 1000);
    }

    #[test]
    fn trtcm_rfc2698_colours() {
        // CIR 1000 B/s CBS 1000, PIR 2000 B/s PBS 2000.
        let mut m = Trtcm::new(8000, 1000, 16000, 2000, 0);
        assert_eq!(m.meter(1000, 0, None), Color::Green);
        assert_eq!(m.meter(1000, 0, None), Color::Yellow);
        assert_eq!(m.meter(1, 0, None), Color::Red);
        // Red packets take no tokens; after 0.5 s: Tp 1000, Tc 500.
        assert_eq!(m.meter(600, 500 * MS, None), Color::Yellow);
        assert_eq!(m.meter(400, 500 * MS, None), Color::Green);
        assert_eq!(m.meter(1, 500 * MS, None), Color::Red);
        // Colour-aware: yellow input stays yellow when tokens exist.
        let mut m = Trtcm::new(8000, 1000, 16000, 2000, 0);
        assert_eq!(m.meter(10, 0, Some(Color::Yellow)), Color::Yellow);
        assert_eq!(m.c.tokens_bytes(), 1000);
    }

    #[test]
    fn long_run_rate_is_exact() {
        // 10 Mbit/s, 1500 B packets offered at 2x: green bytes/s == 1.25 MB/s ± burst.
        let mut m = Srtcm::new(10_000_000, 3000, 0, 0);
        let mut green = 0u64;
        let mut t = 0u64;
        let step = 1500 * 8 * 1_000_000_000 / 20_000_000; // ns between packets at 20 Mb/s
        while t < 10_000 * MS {
            if m.meter(1500, t, None) == Color::Green {
                green += 1500;
            }
            t += step;
        }
        let rate = green as f64 / 10.0;
        assert!((rate - 1_250_000.0).abs() < 1000.0, "{rate}");
    }

    fn frame(dscp: u8) -> Vec<u8> {
        let b = PacketBuilder::ethernet2([2; 6], [4; 6]).ipv4([10, 0, 0, 1], [10, 0, 0, 2], 64);
        let mut v = Vec::new();
        b.udp(1, 2).write(&mut v, &[0u8; 100]).unwrap();
        set_dscp(&mut v, dscp);
        v
    }

    #[test]
    fn dscp_marking_keeps_checksum() {
        let mut f = frame(0);
        assert!(set_dscp(&mut f, 46));
        assert_eq!(dscp_of(&f), Some(46));
        assert!(checksum::verify(&f[14..34]));
        let b = PacketBuilder::ethernet2([2; 6], [4; 6])
            .ipv6([1; 16], [2; 16], 64)
            .udp(1, 2);
        let mut v = Vec::new();
        b.write(&mut v, &[1]).unwrap();
        assert!(set_dscp(&mut v, 0x2e));
        assert_eq!(dscp_of(&v), Some(0x2e));
        assert_eq!(af_color(12), Color::Yellow);
    }

    fn run(
        stage: &mut dyn Stage,
        out: &mut Out,
        node: &mut NodeStats,
        frames: &[(Vec<u8>, u32)],
    ) -> Vec<Vec<u8>> {
        let mut b = Batch::new();
        for (f, user) in frames {
            let mut p = out.cache.alloc().unwrap();
            p.copy_from(f).unwrap();
            p.meta.user = *user;
            b.push(p).unwrap();
        }
        stage.process(&mut b, node, out);
        let mut v = Vec::new();
        b.drain(|p| {
            v.push(p.data().to_vec());
            p.pool().free(p)
        });
        v
    }

    #[test]
    fn policer_stage_marks_yellow_drops_red() {
        let pool = Pool::new(64).unwrap();
        let mut out = Out::new(1, pool.cache());
        let cfg = PolicerConfig {
            meter: MeterConfig::Srtcm {
                cir_bps: 8000,
                cbs: 200,
                ebs: 200,
            },
            key: MeterKey::User,
            meters: 2,
            color_aware: false,
            green: Verdict::Pass,
            yellow: Verdict::Mark(10),
            red: Verdict::Drop,
        };
        let mut pol = Policer::new(&cfg, 0).unwrap();
        let mut node = NodeStats::new("policer", pol.errors());
        let f = frame(0); // 142 bytes
        let got = run(
            &mut pol,
            &mut out,
            &mut node,
            &[
                (f.clone(), 0),
                (f.clone(), 0),
                (f.clone(), 0),
                (f.clone(), 1),
                (f.clone(), 9),
            ],
        );
        assert_eq!(got.len(), 4, "one red dropped");
        assert_eq!(dscp_of(&got[0]), Some(0));
        assert_eq!(dscp_of(&got[1]), Some(10));
        assert!(checksum::verify(&got[1][14..34]));
        assert_eq!(node.drops[0], 1);
        assert_eq!(
            pol.stats,
            ColorStats {
                green: 2,
                yellow: 1,
                red: 1,
                unmetered: 1
            }
        );
    }

    #[test]
    fn shaper_queues_and_releases_in_order_at_rate() {
        let pool = Pool::new(256).unwrap();
        let mut out = Out::new(1, pool.cache());
        // 1 subscriber, 80 kbit/s = 10 kB/s, burst 200 B, queue 4.
        let cfg = ShaperConfig {
            subscribers: 2,
            rate_bps: 80_000,
            burst_bytes: 200,
            queue_packets: 4,
            total_queue_packets: 64,
            egress_port: None,
        };
        let mut sh = Shaper::new(&cfg, 0).unwrap();
        let mut node = NodeStats::new("shaper", sh.errors());
        let mk = |n: u8| {
            let mut f = frame(0);
            let l = f.len();
            f[l - 1] = n;
            (f, 0u32)
        };
        // 6 frames of 142 B at t=0: 1 passes (burst 200), 4 queue, 1 dropped.
        let frames: Vec<_> = (0..6).map(mk).collect();
        let got = run(&mut sh, &mut out, &mut node, &frames);
        assert_eq!(got.len(), 1);
        assert_eq!(sh.queued(), 4);
        assert_eq!(node.drops[0], 1);
        // Another subscriber is not held back.
        let mut f1 = frame(0);
        f1[20] = 0x77;
        assert_eq!(run(&mut sh, &mut out, &mut node, &[(f1, 1)]).len(), 1);
        // 14.2 ms later one frame's worth (142 B at 10 kB/s) has arrived.
        out.now_ns = 14_200_000;
        let got = run(&mut sh, &mut out, &mut node, &[]);
        assert_eq!(got.len(), 1);
        assert_eq!(*got[0].last().unwrap(), 1, "FIFO order");
        // A new packet of subscriber 0 waits behind the queue; one packet leaves per
        // 14.2 ms.
        let mut order = Vec::new();
        for k in 1..=6u64 {
            out.now_ns = 14_200_000 + k * 14_300_000;
            let input = if k == 1 { vec![mk(9)] } else { vec![] };
            let got = run(&mut sh, &mut out, &mut node, &input);
            assert!(got.len() <= 1, "rate exceeded at step {k}");
            order.extend(got.iter().map(|f| *f.last().unwrap()));
        }
        assert_eq!(order, [2, 3, 4, 9]);
        assert_eq!(sh.queued(), 0);
        assert_eq!(sh.stats.released, 5);
    }
}
