//! The receive side: per-stream loss, reordering and duplicates from the signature's
//! sequence numbers, and one-way latency in an HDR histogram.
//!
//! Definitions:
//! * reordered (RFC 4737 §3.3): a packet whose sequence number is lower than the
//!   next expected one (the highest seen + 1) and that was not seen before;
//! * duplicate (RFC 5560 §2): a packet whose sequence number was already received
//!   (detected within a window of [`WINDOW`] sequence numbers below the highest);
//! * lost (RFC 5481 §4.1 / RFC 2544 §26.3): sent minus distinct received.
//!
//! Latency is receive time minus the signature's transmit time (RFC 2544 §26.2 uses
//! one tagged frame per trial; we record every frame).

use crate::sig::Signature;
use dataplane::batch::Batch;
use hdrhistogram::Histogram;
use serde::Serialize;

/// Sequence numbers remembered below the highest seen, for duplicate detection.
pub const WINDOW: u64 = 1 << 16;
const WORDS: usize = (WINDOW / 64) as usize;

/// Receive state of one stream.
#[derive(Clone)]
struct RxStream {
    rx: u64,
    bytes: u64,
    dup: u64,
    reordered: u64,
    /// Arrived more than WINDOW below the highest (duplicate check impossible).
    too_late: u64,
    max_seq: Option<u64>,
    seen: Box<[u64; WORDS]>,
}

impl RxStream {
    fn new() -> Self {
        RxStream {
            rx: 0,
            bytes: 0,
            dup: 0,
            reordered: 0,
            too_late: 0,
            max_seq: None,
            seen: Box::new([0; WORDS]),
        }
    }

    #[inline(always)]
    fn bit(&mut self, seq: u64) -> (&mut u64, u64) {
        let i = ((seq % WINDOW) / 64) as usize;
        let m = 1u64 << (seq % 64);
        // i < WORDS by construction (seq % WINDOW / 64)
        (&mut self.seen[i % WORDS], m)
    }

    #[inline(always)]
    fn on_seq(&mut self, seq: u64, len: usize) {
        self.rx += 1;
        self.bytes += len as u64;
        match self.max_seq {
            None => {
                self.max_seq = Some(seq);
                let (w, m) = self.bit(seq);
                *w |= m;
            }
            Some(max) if seq > max => {
                // clear the bits of the skipped numbers, which enter the window unseen
                if seq - max >= WINDOW {
                    self.seen.fill(0);
                } else {
                    let mut s = max + 1;
                    while s < seq {
                        if s % 64 == 0 && seq - s >= 64 {
                            let (w, _) = self.bit(s);
                            *w = 0;
                            s += 64;
                        } else {
                            let (w, m) = self.bit(s);
                            *w &= !m;
                            s += 1;
                        }
                    }
                }
                let (w, m) = self.bit(seq);
                *w |= m;
                self.max_seq = Some(seq);
            }
            Some(max) => {
                if max - seq >= WINDOW {
                    self.too_late += 1;
                    self.reordered += 1;
                    return;
                }
                let (w, m) = self.bit(seq);
                if *w & m != 0 {
                    self.dup += 1;
                } else {
                    *w |= m;
                    self.reordered += 1;
                }
            }
        }
    }
}

/// Latency figures in microseconds.
#[derive(Clone, Copy, Debug, Default, Serialize, PartialEq)]
pub struct LatencySummary {
    pub samples: u64,
    pub min_us: f64,
    pub avg_us: f64,
    pub max_us: f64,
    pub p50_us: f64,
    pub p99_us: f64,
    pub p999_us: f64,
}

/// Per-stream result.
#[derive(Clone, Debug, Default, Serialize, PartialEq)]
pub struct StreamResult {
    pub stream: u16,
    pub tx: u64,
    pub rx: u64,
    pub rx_bytes: u64,
    pub lost: u64,
    pub duplicates: u64,
    pub reordered: u64,
    /// Packet loss ratio lost/tx.
    pub plr: f64,
}

/// Whole-run receive result.
#[derive(Clone, Debug, Default, Serialize, PartialEq)]
pub struct RxResult {
    pub tx: u64,
    pub rx: u64,
    pub lost: u64,
    pub duplicates: u64,
    pub reordered: u64,
    /// Frames without a signature.
    pub foreign: u64,
    pub plr: f64,
    pub latency: LatencySummary,
    pub streams: Vec<StreamResult>,
}

/// Counts signed frames.
pub struct Receiver {
    streams: Vec<RxStream>,
    hist: Histogram<u64>,
    /// Frames without a signature.
    pub foreign: u64,
    /// Frames whose timestamp is ahead of the receive clock (not in the histogram).
    pub clock_skew: u64,
}

impl Default for Receiver {
    fn default() -> Self {
        Self::new()
    }
}

impl Receiver {
    pub fn new() -> Self {
        // 1 ns .. 100 s, 3 significant digits; cannot fail for these bounds
        let hist = Histogram::new_with_bounds(1, 100_000_000_000, 3)
            .unwrap_or_else(|_| Histogram::new(3).unwrap_or_else(|_| unreachable_hist()));
        Receiver {
            streams: Vec::new(),
            hist,
            foreign: 0,
            clock_skew: 0,
        }
    }

    /// Forgets everything (a new trial).
    pub fn reset(&mut self) {
        self.streams.clear();
        self.hist.reset();
        self.foreign = 0;
        self.clock_skew = 0;
    }

    /// Accounts one frame received at `rx_ns`.
    #[inline]
    pub fn on_frame(&mut self, frame: &[u8], rx_ns: u64) {
        let Some(sig) = Signature::from_tail(frame) else {
            self.foreign += 1;
            return;
        };
        let i = sig.stream as usize;
        if i >= self.streams.len() {
            self.streams.resize_with(i + 1, RxStream::new);
        }
        if let Some(s) = self.streams.get_mut(i) {
            s.on_seq(sig.seq, frame.len());
        }
        match rx_ns.checked_sub(sig.tx_ns) {
            Some(lat) => {
                let _ = self.hist.record(lat.max(1));
            }
            None => self.clock_skew += 1,
        }
    }

    /// Accounts every frame of a batch (the batch is left untouched).
    #[inline]
    pub fn on_batch(&mut self, batch: &Batch, rx_ns: u64) {
        for p in batch.iter() {
            self.on_frame(p.data(), rx_ns);
        }
    }

    /// Frames received so far (all streams, with duplicates).
    pub fn received(&self) -> u64 {
        self.streams.iter().map(|s| s.rx).sum()
    }

    /// Latency summary in µs.
    pub fn latency(&self) -> LatencySummary {
        let h = &self.hist;
        if h.is_empty() {
            return LatencySummary::default();
        }
        let us = |ns: u64| ns as f64 / 1000.0;
        LatencySummary {
            samples: h.len(),
            min_us: us(h.min()),
            avg_us: h.mean() / 1000.0,
            max_us: us(h.max()),
            p50_us: us(h.value_at_quantile(0.5)),
            p99_us: us(h.value_at_quantile(0.99)),
            p999_us: us(h.value_at_quantile(0.999)),
        }
    }

    /// Latency distribution as (latency µs, percentile) points for plots.
    pub fn latency_cdf(&self) -> Vec<(f64, f64)> {
        if self.hist.is_empty() {
            return Vec::new();
        }
        self.hist
            .iter_quantiles(2)
            .map(|v| (v.value_iterated_to() as f64 / 1000.0, v.percentile()))
            .collect()
    }

    /// The histogram (to merge or export).
    pub fn histogram(&self) -> &Histogram<u64> {
        &self.hist
    }

    /// The result given what was sent per stream (`tx[i]` packets of stream `i`).
    pub fn result(&self, tx: &[u64]) -> RxResult {
        let n = tx.len().max(self.streams.len());
        let mut r = RxResult {
            foreign: self.foreign,
            latency: self.latency(),
            ..RxResult::default()
        };
        for i in 0..n {
            let t = tx.get(i).copied().unwrap_or(0);
            let (rx, bytes, dup, reo) = match self.streams.get(i) {
                Some(s) => (s.rx, s.bytes, s.dup, s.reordered),
                None => (0, 0, 0, 0),
            };
            let unique = rx - dup;
            let lost = t.saturating_sub(unique);
            r.streams.push(StreamResult {
                stream: i as u16,
                tx: t,
                rx,
                rx_bytes: bytes,
                lost,
                duplicates: dup,
                reordered: reo,
                plr: if t > 0 { lost as f64 / t as f64 } else { 0.0 },
            });
            r.tx += t;
            r.rx += rx;
            r.lost += lost;
            r.duplicates += dup;
            r.reordered += reo;
        }
        r.plr = if r.tx > 0 {
            r.lost as f64 / r.tx as f64
        } else {
            0.0
        };
        r
    }
}

#[cold]
fn unreachable_hist() -> Histogram<u64> {
    // Histogram::new(3) only fails for sigfig > 5; keep a total function anyway.
    Histogram::new_with_max(1 << 40, 2).unwrap_or_else(|_| std::process::abort())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sig::Signature;

    fn frame(stream: u16, seq: u64, ts: u64) -> Vec<u8> {
        let mut f = vec![0u8; 42];
        f.extend_from_slice(
            &Signature {
                stream,
                seq,
                tx_ns: ts,
            }
            .encode(),
        );
        f
    }

    #[test]
    fn counts_loss_reorder_dup_exactly() {
        let mut r = Receiver::new();
        // 0..1000 with: 10 losses (every 100th), 5 adjacent swaps, 3 duplicates
        let mut order: Vec<u64> = (0..1000).filter(|s| s % 100 != 50).collect();
        for k in 0..5 {
            let i = 10 + k * 150;
            order.swap(i, i + 1);
        }
        order.insert(500, 499);
        order.insert(700, 3);
        order.push(998);
        for s in &order {
            r.on_frame(&frame(0, *s, 100), 100 + 5000);
        }
        r.on_frame(&[1, 2, 3], 0);
        let res = r.result(&[1000]);
        assert_eq!(res.lost, 10);
        assert_eq!(res.reordered, 5);
        assert_eq!(res.duplicates, 3);
        assert_eq!(res.foreign, 1);
        assert_eq!(res.rx, 993);
        assert!((res.latency.p50_us - 5.0).abs() < 0.01);
    }

    #[test]
    fn gap_larger_than_window_and_late_packets() {
        let mut r = Receiver::new();
        r.on_frame(&frame(1, 0, 0), 10);
        r.on_frame(&frame(1, 3 * WINDOW, 0), 10);
        r.on_frame(&frame(1, 1, 0), 10); // far too late: reordered, not a dup
        r.on_frame(&frame(1, 3 * WINDOW, 0), 10); // duplicate
        r.on_frame(&frame(1, 3 * WINDOW - 5, 0), 10); // late within window
        let res = r.result(&[0, 3 * WINDOW + 1]);
        assert_eq!(res.streams[1].duplicates, 1);
        assert_eq!(res.streams[1].reordered, 2);
        assert_eq!(res.streams[1].lost, 3 * WINDOW + 1 - 4);
    }
}
