//! Shared pieces of the `bench` binary: packet sizes, the report line, the cycle
//! counter. Each scenario lives in `scenarios/<name>.rs` and returns a [`Report`].

pub mod scenarios;

use serde::Serialize;

/// Frame size of a run: a fixed size or the simple IMIX (7:4:1 of 64/570/1518 B).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PktSize {
    Fixed(usize),
    Imix,
}

impl PktSize {
    /// IMIX sequence, 12 frames long (7 × 64, 4 × 570, 1 × 1518), interleaved.
    pub const IMIX_SEQ: [usize; 12] = [64, 570, 64, 64, 570, 64, 1518, 64, 570, 64, 570, 64];

    /// Size of the n-th frame of a run.
    pub fn nth(self, n: usize) -> usize {
        match self {
            PktSize::Fixed(s) => s,
            PktSize::Imix => Self::IMIX_SEQ[n % Self::IMIX_SEQ.len()],
        }
    }

    /// Average frame size in bytes.
    pub fn mean(self) -> f64 {
        match self {
            PktSize::Fixed(s) => s as f64,
            PktSize::Imix => {
                Self::IMIX_SEQ.iter().sum::<usize>() as f64 / Self::IMIX_SEQ.len() as f64
            }
        }
    }

    pub fn label(self) -> String {
        match self {
            PktSize::Fixed(s) => s.to_string(),
            PktSize::Imix => "imix".into(),
        }
    }
}

impl core::str::FromStr for PktSize {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        if s.eq_ignore_ascii_case("imix") {
            return Ok(PktSize::Imix);
        }
        let n: usize = s.parse().map_err(|_| format!("bad packet size {s:?}"))?;
        if !(60..=1518).contains(&n) {
            return Err(format!("packet size {n} outside 60..=1518"));
        }
        Ok(PktSize::Fixed(n))
    }
}

/// Parameters every scenario gets.
#[derive(Clone, Debug)]
pub struct Params {
    pub pkt_size: PktSize,
    pub seconds: f64,
}

/// One line of the `bench` report (`--json` prints it as one JSON object).
#[derive(Clone, Debug, Serialize)]
pub struct Report {
    pub scenario: String,
    pub pkt_size: String,
    /// Packets that went through the device under test during the timed part.
    pub packets: u64,
    pub mpps_per_core: f64,
    /// Ethernet frame bits per second (without preamble/IFG), per core.
    pub gbps_per_core: f64,
    pub cycles_per_packet: f64,
    pub drops: u64,
    /// Scenario-specific figures (sessions, tables, ...).
    #[serde(skip_serializing_if = "serde_json::Map::is_empty")]
    pub extra: serde_json::Map<String, serde_json::Value>,
}

/// Time stamp counter (cycles); falls back to nanoseconds off x86_64.
#[inline(always)]
pub fn cycles() -> u64 {
    #[cfg(target_arch = "x86_64")]
    {
        // SAFETY: rdtsc has no preconditions and is available on every x86_64 CPU.
        unsafe { core::arch::x86_64::_rdtsc() }
    }
    #[cfg(not(target_arch = "x86_64"))]
    {
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_nanos() as u64)
            .unwrap_or(0)
    }
}

/// TSC frequency in Hz, measured against the monotonic clock over `ms` milliseconds.
pub fn tsc_hz(ms: u64) -> f64 {
    let t0 = std::time::Instant::now();
    let c0 = cycles();
    std::thread::sleep(std::time::Duration::from_millis(ms));
    let c1 = cycles();
    let dt = t0.elapsed().as_secs_f64();
    (c1.wrapping_sub(c0)) as f64 / dt
}
