//! The `[qos]` configuration: meters (RFC 2697 / RFC 2698 parameters), policer,
//! shaper and DSCP marker (RFC 2474 §3) sections, their limits and validation.

use super::*;

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
