//! Token buckets and meters: [`TokenBucket`] (the one token bucket of the engine;
//! integer nano-byte arithmetic), the RFC 2697 single-rate and RFC 2698 two-rate
//! three-colour markers.

pub(super) const NANO: u64 = 1_000_000_000;
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
