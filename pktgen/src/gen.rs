//! The transmit side: streams paced by token buckets (one per stream: `rate` tokens
//! per second, `burst` deep), emitted into batches for a port.

use crate::profile::{Profile, ProfileError};
use crate::stream::Stream;
use dataplane::batch::Batch;
use dataplane::buf::PoolCache;
use dataplane::port::Port;

#[derive(Clone, Copy, Debug, Default)]
struct Bucket {
    tokens: f64,
    last_ns: u64,
}

/// Generator counters.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct GenStats {
    /// Packets emitted into batches.
    pub emitted: u64,
    /// Packets emitted but refused by the port (freed; the receiver counts them lost).
    pub tx_refused: u64,
    /// No buffer for a packet that was due.
    pub alloc_fail: u64,
}

/// A set of streams and their pacing.
pub struct Generator {
    pub streams: Vec<Stream>,
    buckets: Vec<Bucket>,
    rr: usize,
    pub stats: GenStats,
}

impl Generator {
    pub fn new(streams: Vec<Stream>) -> Self {
        let buckets = vec![Bucket::default(); streams.len()];
        Generator {
            streams,
            buckets,
            rr: 0,
            stats: GenStats::default(),
        }
    }

    /// Streams of a profile, numbered from 0 in file order.
    pub fn from_profile(p: &Profile) -> Result<Self, ProfileError> {
        let streams = p
            .streams
            .iter()
            .enumerate()
            .map(|(i, s)| Stream::new(i as u16, s))
            .collect::<Result<Vec<_>, _>>()?;
        Ok(Self::new(streams))
    }

    /// Starts (or restarts) a run at `now_ns`: sequence numbers from 0, empty buckets.
    pub fn start(&mut self, now_ns: u64) {
        for s in self.streams.iter_mut() {
            s.reset();
        }
        for b in self.buckets.iter_mut() {
            *b = Bucket {
                tokens: 0.0,
                last_ns: now_ns,
            };
        }
        self.stats = GenStats::default();
    }

    /// Sets every stream's rate (pps; `None` = max).
    pub fn set_rate(&mut self, pps: Option<f64>) {
        for s in self.streams.iter_mut() {
            s.rate_pps = pps;
        }
    }

    /// Sum of the streams' rates in pps, `None` when one is unpaced.
    pub fn rate_pps(&self) -> Option<f64> {
        self.streams.iter().map(|s| s.rate_pps).sum()
    }

    /// True when every stream with a `count` has sent it (never for endless streams).
    pub fn done(&self) -> bool {
        self.streams.iter().all(|s| s.done())
    }

    /// Packets emitted per stream so far (what the receiver should see).
    pub fn sent_per_stream(&self) -> Vec<u64> {
        self.streams.iter().map(|s| s.next_seq).collect()
    }

    /// Emits the packets due at `now_ns` into `batch`, up to its room; each carries
    /// `now_ns` as its transmit time. Returns how many.
    #[inline]
    pub fn fill(&mut self, cache: &mut PoolCache, batch: &mut Batch, now_ns: u64) -> usize {
        let n = self.streams.len();
        let mut total = 0;
        for k in 0..n {
            let i = (self.rr + k) % n;
            let (Some(s), Some(b)) = (self.streams.get_mut(i), self.buckets.get_mut(i)) else {
                continue;
            };
            let mut due = batch.room();
            if let Some(rate) = s.rate_pps {
                let dt = now_ns.saturating_sub(b.last_ns) as f64;
                b.last_ns = now_ns;
                // the bucket holds `burst` packets, or 50 ms worth at high rates, so a
                // descheduled generator catches up instead of silently under-offering
                let depth = (s.burst as f64).max(rate * 0.05);
                b.tokens = (b.tokens + dt * rate * 1e-9).min(depth);
                due = due.min(b.tokens as usize);
            } else {
                due = due.min(s.burst as usize);
            }
            if let Some(c) = s.count {
                due = due.min(c.saturating_sub(s.next_seq) as usize);
            }
            let mut done = 0;
            for _ in 0..due {
                let Some(mut p) = cache.alloc() else {
                    self.stats.alloc_fail += 1;
                    break;
                };
                if s.emit(&mut p, now_ns).is_err() {
                    cache.free(p);
                    break;
                }
                if let Err(p) = batch.push(p) {
                    cache.free(p);
                    break;
                }
                done += 1;
            }
            if s.rate_pps.is_some() {
                b.tokens -= done as f64;
            }
            total += done;
        }
        self.rr = self.rr.wrapping_add(1);
        self.stats.emitted += total as u64;
        total
    }

    /// Emits what is due (at most one batch, so a generator that fell behind catches
    /// up in batches rather than flooding) and sends it on `port`; packets the port
    /// refuses are freed and counted (the wire does not push back, so a DUT that polls
    /// too slowly loses them). Returns packets sent.
    #[inline]
    pub fn step<P: Port + ?Sized>(
        &mut self,
        port: &mut P,
        cache: &mut PoolCache,
        batch: &mut Batch,
        now_ns: u64,
    ) -> usize {
        self.fill(cache, batch, now_ns);
        if batch.is_empty() {
            return 0;
        }
        let sent = port.tx_burst(cache, batch);
        self.stats.tx_refused += batch.len() as u64;
        batch.free_all(cache);
        sent
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::profile::{Scalar, StreamSpec};
    use dataplane::buf::Pool;

    #[test]
    fn pacing_follows_rate_and_count() {
        let pool = Pool::new(1024).unwrap();
        let mut c = pool.cache();
        let mut s = StreamSpec::udp("a");
        s.rate = Scalar::Str("1Mpps".into());
        s.burst = 20_000;
        let mut g = Generator::new(vec![Stream::new(0, &s).unwrap()]);
        g.start(0);
        let mut b = Batch::new();
        // 100 µs at 1 Mpps = 100 packets
        assert_eq!(g.fill(&mut c, &mut b, 100_000), 100);
        b.free_all(&mut c);
        assert_eq!(g.fill(&mut c, &mut b, 100_000), 0);
        // a batch holds at most 256
        assert_eq!(g.fill(&mut c, &mut b, 10_000_000), 256);
        b.free_all(&mut c);
        let mut s2 = StreamSpec::udp("b");
        s2.count = Some(10);
        let mut g = Generator::new(vec![Stream::new(0, &s2).unwrap()]);
        g.start(0);
        assert_eq!(g.fill(&mut c, &mut b, 1), 10);
        assert!(g.done());
        assert_eq!(g.sent_per_stream(), vec![10]);
        b.free_all(&mut c);
    }
}
