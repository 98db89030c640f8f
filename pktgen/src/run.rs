//! Running a generator against a receive port: the polling loop (optionally stepping a
//! DUT in between, for single-thread in-memory labs), and an RFC 2544
//! [`TrialRunner`] over a transmit/receive port pair.

use crate::gen::Generator;
use crate::profile::{Scalar, SizeSpec, StreamSpec};
use crate::rfc2544::{TrialResult, TrialRunner, TrialSpec};
use crate::rx::{Receiver, RxResult};
use crate::sig::now_ns;
use crate::stream::Stream;
use dataplane::batch::Batch;
use dataplane::buf::PoolCache;
use dataplane::port::Port;
use serde::Serialize;
use std::time::Duration;

/// Result of one run.
#[derive(Clone, Debug, Default, Serialize)]
pub struct RunResult {
    /// Transmit phase length in seconds.
    pub seconds: f64,
    /// Frames the generator emitted.
    pub emitted: u64,
    /// Frames the transmit port refused (counted as lost by the receiver).
    pub tx_refused: u64,
    pub offered_pps: f64,
    pub tx_pps: f64,
    pub rx_pps: f64,
    pub rx: RxResult,
}

/// Polls: emit what is due on `tx`, call `between(now)` (step a DUT), receive on `rx`
/// into `rcv`. Sends for `duration` (or until every stream's count is sent), then
/// keeps receiving for `drain` (RFC 2544 §23: wait for the DUT to empty).
#[allow(clippy::too_many_arguments)]
pub fn run_loop(
    gen: &mut Generator,
    tx: &mut dyn Port,
    rx: &mut dyn Port,
    rcv: &mut Receiver,
    cache: &mut PoolCache,
    duration: Duration,
    drain: Duration,
    mut between: impl FnMut(u64),
) -> RunResult {
    let mut out = Batch::new();
    let mut inb = Batch::new();
    let start = now_ns();
    gen.start(start);
    rcv.reset();
    let end = start + duration.as_nanos() as u64;
    let mut now = start;
    let mut sent_end = start;
    let mut sending = true;
    let mut drain_end = u64::MAX;
    let mut quiet_since = now;
    loop {
        if sending {
            // the last step credits tokens up to the end of the trial exactly
            gen.step(tx, cache, &mut out, now.min(end));
            if now >= end || gen.done() {
                sending = false;
                sent_end = now.min(end);
                drain_end = now + drain.as_nanos() as u64;
            }
        }
        between(now);
        let got = rx.rx_burst(cache, &mut inb);
        now = now_ns();
        if got > 0 {
            rcv.on_batch(&inb, now);
            inb.free_all(cache);
            quiet_since = now;
        }
        if !sending {
            let all_in = rcv.received() >= gen.stats.emitted;
            // stop once everything arrived and the DUT stayed quiet a moment, or at
            // the drain deadline
            if now >= drain_end || (all_in && now - quiet_since > 1_000_000) {
                break;
            }
        }
    }
    let secs = (sent_end.saturating_sub(start)).max(1) as f64 / 1e9;
    let res = rcv.result(&gen.sent_per_stream());
    RunResult {
        seconds: secs,
        emitted: gen.stats.emitted,
        tx_refused: gen.stats.tx_refused,
        offered_pps: gen.rate_pps().unwrap_or(0.0),
        tx_pps: gen.stats.emitted as f64 / secs,
        rx_pps: res.rx as f64 / secs,
        rx: res,
    }
}

/// Builds the single-stream generator of a trial from a base stream.
pub fn trial_generator(base: &StreamSpec, t: &TrialSpec) -> anyhow::Result<Generator> {
    let mut s = base.clone();
    s.size = SizeSpec::Fixed(t.frame_size as u64);
    s.rate = Scalar::Str(format!("{}pps", t.rate_pps));
    s.count = None;
    s.burst = s.burst.max(32);
    Ok(Generator::new(vec![Stream::new(0, &s)?]))
}

/// Converts a run into a trial result.
pub fn trial_result(t: &TrialSpec, r: &RunResult, rcv: &Receiver) -> TrialResult {
    TrialResult {
        frame_size: t.frame_size,
        offered_pps: t.rate_pps,
        tx_pps: r.tx_pps,
        rx_pps: r.rx_pps,
        tx: r.rx.tx,
        rx: r.rx.rx,
        lost: r.rx.lost,
        plr: r.rx.plr,
        reordered: r.rx.reordered,
        duplicates: r.rx.duplicates,
        latency: r.rx.latency,
        latency_cdf: rcv.latency_cdf(),
        dut_ns_per_pkt: None,
        // the search classifies the trial against its loss threshold
        limited_by: Default::default(),
    }
}

/// RFC 2544 trials from a transmit port to a receive port (the DUT sits between them
/// outside this process: a netns router, a cable, a switch).
pub struct PortPairRunner {
    pub tx: Box<dyn Port>,
    pub rx: Box<dyn Port>,
    pub base: StreamSpec,
    pub cache: PoolCache,
    pub drain: Duration,
    rcv: Receiver,
}

impl PortPairRunner {
    pub fn new(tx: Box<dyn Port>, rx: Box<dyn Port>, base: StreamSpec, cache: PoolCache) -> Self {
        PortPairRunner {
            tx,
            rx,
            base,
            cache,
            drain: Duration::from_millis(200),
            rcv: Receiver::new(),
        }
    }
}

impl TrialRunner for PortPairRunner {
    fn trial(&mut self, t: &TrialSpec) -> anyhow::Result<TrialResult> {
        let mut g = trial_generator(&self.base, t)?;
        let r = run_loop(
            &mut g,
            self.tx.as_mut(),
            self.rx.as_mut(),
            &mut self.rcv,
            &mut self.cache,
            t.duration,
            self.drain,
            |_| {},
        );
        Ok(trial_result(t, &r, &self.rcv))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::rfc2544::{run, SearchConfig};
    use dataplane::buf::Pool;
    use dataplane::port::mem;

    #[test]
    fn loopback_counts_match_exactly_at_low_rate() {
        let pool = Pool::new(8192).unwrap();
        let mut c = pool.cache();
        let (mut a, mut b) = mem::pair("a", "b", 1024).unwrap();
        let mut s = StreamSpec::udp("s");
        s.rate = Scalar::Str("200kpps".into());
        s.count = Some(20_000);
        s.size = SizeSpec::Named("imix".into());
        let mut s2 = StreamSpec::udp("t");
        s2.rate = Scalar::Str("50kpps".into());
        s2.count = Some(5_000);
        let mut g = Generator::new(vec![
            Stream::new(0, &s).unwrap(),
            Stream::new(1, &s2).unwrap(),
        ]);
        let mut rcv = Receiver::new();
        let r = run_loop(
            &mut g,
            &mut a,
            &mut b,
            &mut rcv,
            &mut c,
            Duration::from_secs(5),
            Duration::from_millis(500),
            |_| {},
        );
        assert_eq!(r.emitted, 25_000);
        assert_eq!(r.rx.tx, 25_000);
        assert_eq!(r.rx.rx, 25_000);
        assert_eq!(r.rx.lost, 0);
        assert_eq!(r.rx.reordered, 0);
        assert_eq!(r.rx.duplicates, 0);
        assert_eq!(r.rx.streams[0].rx, 20_000);
        assert_eq!(r.rx.streams[1].rx, 5_000);
        assert_eq!(r.rx.latency.samples, 25_000);
        // 20k packets at 200 kpps: about 0.1 s
        assert!(r.seconds > 0.08 && r.seconds < 1.0, "{}", r.seconds);
    }

    #[test]
    fn injected_loss_and_reordering_are_reported_exactly() {
        // a "DUT" between two pairs that drops every 97th frame and swaps 3 pairs
        let pool = Pool::new(8192).unwrap();
        let mut c = pool.cache();
        let (mut gen_tx, mut dut_in) = mem::pair("g", "d0", 1024).unwrap();
        let (mut dut_out, mut sink) = mem::pair("d1", "s", 1024).unwrap();
        let mut s = StreamSpec::udp("s");
        s.rate = Scalar::Str("100kpps".into());
        s.count = Some(10_000);
        let mut g = Generator::new(vec![Stream::new(0, &s).unwrap()]);
        let mut rcv = Receiver::new();
        let mut dc = pool.cache();
        let mut n = 0u64;
        let mut held: Option<dataplane::buf::Pkt> = None;
        let swaps = [1000u64, 5001, 9000];
        let r = run_loop(
            &mut g,
            &mut gen_tx,
            &mut sink,
            &mut rcv,
            &mut c,
            Duration::from_secs(5),
            Duration::from_millis(300),
            |_| {
                let mut b = Batch::new();
                dut_in.rx_burst(&mut dc, &mut b);
                let mut out = Batch::new();
                b.drain(|p| {
                    let i = n;
                    n += 1;
                    if i.is_multiple_of(97) {
                        dc.free(p);
                    } else if swaps.contains(&i) {
                        held = Some(p);
                    } else {
                        let _ = out.push(p);
                        if let Some(h) = held.take() {
                            let _ = out.push(h);
                        }
                    }
                });
                dut_out.tx_burst(&mut dc, &mut out);
                out.free_all(&mut dc);
            },
        );
        let dropped = (0..10_000u64).filter(|i| i.is_multiple_of(97)).count() as u64;
        assert_eq!(r.rx.tx, 10_000);
        assert_eq!(r.rx.lost, dropped);
        assert_eq!(r.rx.reordered, 3);
        assert_eq!(r.rx.duplicates, 0);
        assert_eq!(r.rx.rx, 10_000 - dropped);
    }

    #[test]
    fn rfc2544_search_over_loopback_pair() {
        let pool = Pool::new(8192).unwrap();
        let (a, b) = mem::pair("a", "b", 1024).unwrap();
        let mut runner =
            PortPairRunner::new(Box::new(a), Box::new(b), StreamSpec::udp("x"), pool.cache());
        runner.drain = Duration::from_millis(20);
        let cfg = SearchConfig {
            frame_sizes: vec![64, 512],
            duration: Duration::from_millis(100),
            max_rate_pps: 20_000.0,
            max_trials: 4,
            loss_sweep: false,
            ..SearchConfig::default()
        };
        let rep = run(&mut runner, "loopback", &cfg, true).unwrap();
        for s in &rep.results {
            // a loopback loses nothing, and nothing is blamed on it
            assert!(s.trials.iter().all(|t| t.lost == 0));
            assert_ne!(s.summary.limited_by, crate::rfc2544::LimitedBy::Dut);
            if s.gen_limited {
                // a host too busy to offer 20 kpps (descheduled for over 50 ms): the
                // verdict says so instead of a DUT figure
                assert_eq!(s.throughput_pps, None);
                continue;
            }
            // the search ends at the first (maximum) rate
            assert_eq!(s.throughput_offered_pps, Some(20_000.0));
            assert_eq!(s.trials.len(), 1);
            let t = s.throughput_pps.unwrap();
            assert!(t > 0.0 && t <= 20_000.0);
            let l = s.latency.as_ref().unwrap();
            assert!(l.latency.samples > 0 && !l.latency_cdf.is_empty());
        }
    }
}
