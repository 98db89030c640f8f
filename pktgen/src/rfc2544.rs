//! RFC 2544 benchmarks over any [`TrialRunner`] (an in-memory lab, a netns lab, a
//! real port pair).
//!
//! * §26.1 throughput: the highest offered rate at which the DUT forwards every frame
//!   (or loses at most the given packet-loss ratio), found by a binary search over
//!   trials of fixed duration (§23 trial: send for `duration`, then wait for the DUT
//!   to drain before counting);
//! * §26.2 latency: a trial at the throughput rate, reporting min/avg/max and
//!   p50/p99/p99.9 (every frame is tagged rather than one per trial);
//! * §26.3 frame loss rate: trials from the maximum rate down in 10 % steps until two
//!   successive trials lose nothing;
//! * §9.1 frame sizes for Ethernet: 64, 128, 256, 512, 1024, 1280, 1518.

use crate::rx::LatencySummary;
use indicatif::{ProgressBar, ProgressStyle};
use serde::Serialize;
use std::time::Duration;

/// RFC 2544 §9.1 Ethernet frame sizes.
pub const FRAME_SIZES: [u16; 7] = [64, 128, 256, 512, 1024, 1280, 1518];

/// One trial to run.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct TrialSpec {
    /// Frame size incl. FCS.
    pub frame_size: u16,
    /// Offered load in frames per second.
    pub rate_pps: f64,
    pub duration: Duration,
}

/// What one trial measured.
#[derive(Clone, Debug, Default, Serialize)]
pub struct TrialResult {
    pub frame_size: u16,
    pub offered_pps: f64,
    /// Rate the generator achieved (frames sent / duration).
    pub tx_pps: f64,
    /// Frames received / duration.
    pub rx_pps: f64,
    pub tx: u64,
    pub rx: u64,
    pub lost: u64,
    pub plr: f64,
    pub reordered: u64,
    pub duplicates: u64,
    pub latency: LatencySummary,
    /// Latency distribution (µs, percentile), for the report's plot.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub latency_cdf: Vec<(f64, f64)>,
    /// Time the DUT spent busy per frame, when the runner can tell (ns).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub dut_ns_per_pkt: Option<f64>,
}

impl TrialResult {
    /// Passes when the loss ratio is within `plr` and the generator offered the asked
    /// rate (§26.1: the rate is the offered load).
    pub fn passes(&self, plr: f64) -> bool {
        self.plr <= plr && !self.gen_limited()
    }

    /// True when the generator could not offer the asked rate (within 2 %): the trial
    /// then measured the generator or the host, not the DUT.
    pub fn gen_limited(&self) -> bool {
        self.tx_pps < 0.98 * self.offered_pps
    }
}

/// Something that runs trials.
pub trait TrialRunner {
    fn trial(&mut self, t: &TrialSpec) -> anyhow::Result<TrialResult>;
}

/// Search parameters.
#[derive(Clone, Debug, Serialize)]
pub struct SearchConfig {
    pub frame_sizes: Vec<u16>,
    #[serde(serialize_with = "ser_secs")]
    pub duration: Duration,
    /// Highest rate tried (frames/s); the search starts there.
    pub max_rate_pps: f64,
    /// Acceptable loss ratio (0 = RFC 2544 zero loss).
    pub plr: f64,
    /// Stop when the search interval is below this fraction of the upper bound.
    pub resolution: f64,
    /// Most trials per frame size for the search.
    pub max_trials: u32,
    /// Run the §26.2 latency trial at the found rate.
    pub latency: bool,
    /// Run the §26.3 frame-loss sweep.
    pub loss_sweep: bool,
}

fn ser_secs<S: serde::Serializer>(d: &Duration, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_f64(d.as_secs_f64())
}

impl Default for SearchConfig {
    fn default() -> Self {
        SearchConfig {
            frame_sizes: FRAME_SIZES.to_vec(),
            duration: Duration::from_secs(2),
            max_rate_pps: 10e6,
            plr: 0.0,
            resolution: 0.02,
            max_trials: 12,
            latency: true,
            loss_sweep: true,
        }
    }
}

/// Result for one frame size.
#[derive(Clone, Debug, Serialize)]
pub struct SizeResult {
    pub frame_size: u16,
    /// Highest passing rate (0 when none passed): the rate the generator achieved in
    /// that trial, which is the offered rate unless the generator fell short.
    pub throughput_pps: f64,
    /// The offered rate of that trial.
    pub throughput_offered_pps: f64,
    /// The passing trial's generator fell short of the offered rate.
    pub gen_limited: bool,
    /// Same in Mbit/s of L2 frames incl. FCS.
    pub throughput_mbps: f64,
    /// The search trials, in order.
    pub trials: Vec<TrialResult>,
    pub latency: Option<TrialResult>,
    /// §26.3: (offered pps, PLR), highest rate first.
    pub loss_curve: Vec<(f64, f64)>,
}

/// A whole RFC 2544 run.
#[derive(Clone, Debug, Serialize)]
pub struct Rfc2544Report {
    pub dut: String,
    pub config: SearchConfig,
    pub results: Vec<SizeResult>,
}

fn bar(total: u64, quiet: bool) -> ProgressBar {
    if quiet {
        return ProgressBar::hidden();
    }
    let pb = ProgressBar::new(total);
    if let Ok(st) =
        ProgressStyle::with_template("{spinner} [{elapsed_precise}] {bar:30} {pos}/{len} {msg}")
    {
        pb.set_style(st);
    }
    pb
}

/// Binary search for one frame size (§26.1), then latency and loss sweep.
pub fn search_size(
    runner: &mut dyn TrialRunner,
    cfg: &SearchConfig,
    frame_size: u16,
    pb: &ProgressBar,
) -> anyhow::Result<SizeResult> {
    let mut trials = Vec::new();
    let mut lo = 0.0f64;
    let mut hi = cfg.max_rate_pps;
    let mut rate = hi;
    let mut best = 0.0f64;
    let mut best_tx = 0.0f64;
    let mut limited = false;
    for _ in 0..cfg.max_trials.max(1) {
        pb.set_message(format!("{frame_size} B @ {:.3} Mpps", rate / 1e6));
        let r = runner.trial(&TrialSpec {
            frame_size,
            rate_pps: rate,
            duration: cfg.duration,
        })?;
        pb.inc(1);
        let ok = r.passes(cfg.plr);
        if ok && rate >= best {
            best = rate;
            best_tx = r.tx_pps.min(rate);
            limited = r.gen_limited();
        }
        trials.push(r);
        if ok {
            lo = rate;
            if rate >= cfg.max_rate_pps {
                break;
            }
        } else {
            hi = rate;
        }
        if hi - lo <= cfg.resolution * hi {
            break;
        }
        rate = (lo + hi) / 2.0;
    }
    let latency = if cfg.latency && best > 0.0 {
        pb.set_message(format!("{frame_size} B latency @ {:.3} Mpps", best / 1e6));
        let r = runner.trial(&TrialSpec {
            frame_size,
            rate_pps: best,
            duration: cfg.duration,
        })?;
        Some(r)
    } else {
        None
    };
    let mut loss_curve = Vec::new();
    if cfg.loss_sweep {
        let mut clean = 0;
        for step in (1..=10).rev() {
            let rate = cfg.max_rate_pps * step as f64 / 10.0;
            pb.set_message(format!("{frame_size} B loss @ {:.3} Mpps", rate / 1e6));
            let r = runner.trial(&TrialSpec {
                frame_size,
                rate_pps: rate,
                duration: cfg.duration,
            })?;
            loss_curve.push((r.offered_pps, r.plr));
            if r.lost == 0 {
                clean += 1;
                if clean == 2 {
                    break;
                }
            } else {
                clean = 0;
            }
        }
    }
    Ok(SizeResult {
        frame_size,
        throughput_pps: best_tx,
        throughput_offered_pps: best,
        gen_limited: limited,
        throughput_mbps: best_tx * frame_size as f64 * 8.0 / 1e6,
        trials,
        latency,
        loss_curve,
    })
}

/// Runs §26.1 (+ §26.2, §26.3 as configured) for every frame size.
pub fn run(
    runner: &mut dyn TrialRunner,
    dut: &str,
    cfg: &SearchConfig,
    quiet: bool,
) -> anyhow::Result<Rfc2544Report> {
    let per = cfg.max_trials as u64 + 1;
    let pb = bar(per * cfg.frame_sizes.len() as u64, quiet);
    let mut results = Vec::new();
    for &fs in &cfg.frame_sizes {
        results.push(search_size(runner, cfg, fs, &pb)?);
    }
    pb.finish_and_clear();
    Ok(Rfc2544Report {
        dut: dut.into(),
        config: cfg.clone(),
        results,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A model DUT that forwards up to `cap` pps and loses the excess.
    struct Model {
        cap: f64,
        trials: u32,
    }

    impl TrialRunner for Model {
        fn trial(&mut self, t: &TrialSpec) -> anyhow::Result<TrialResult> {
            self.trials += 1;
            let secs = t.duration.as_secs_f64();
            let tx = (t.rate_pps * secs) as u64;
            let rx = (t.rate_pps.min(self.cap) * secs) as u64;
            Ok(TrialResult {
                frame_size: t.frame_size,
                offered_pps: t.rate_pps,
                tx_pps: t.rate_pps,
                rx_pps: rx as f64 / secs,
                tx,
                rx,
                lost: tx - rx,
                plr: (tx - rx) as f64 / tx.max(1) as f64,
                ..TrialResult::default()
            })
        }
    }

    #[test]
    fn binary_search_converges_to_capacity() {
        let mut m = Model {
            cap: 3.3e6,
            trials: 0,
        };
        let cfg = SearchConfig {
            frame_sizes: vec![64, 1518],
            duration: Duration::from_millis(100),
            max_rate_pps: 10e6,
            resolution: 0.01,
            max_trials: 20,
            ..SearchConfig::default()
        };
        let rep = run(&mut m, "model", &cfg, true).unwrap();
        for r in &rep.results {
            assert!(!r.gen_limited);
            assert!(r.throughput_pps <= 3.3e6, "{}", r.throughput_pps);
            assert!(r.throughput_pps > 3.3e6 * 0.98, "{}", r.throughput_pps);
            assert!(r.latency.is_some());
            // sweep: 10, 9, ... 4 Mpps lose; 3 and 2 do not
            assert_eq!(r.loss_curve.len(), 9);
            assert_eq!(r.loss_curve.last().unwrap().1, 0.0);
        }
        // a DUT that passes at max rate needs one search trial
        let mut fast = Model {
            cap: 1e9,
            trials: 0,
        };
        let cfg = SearchConfig {
            frame_sizes: vec![64],
            latency: false,
            loss_sweep: false,
            ..cfg
        };
        let rep = run(&mut fast, "fast", &cfg, true).unwrap();
        assert_eq!(fast.trials, 1);
        assert_eq!(rep.results[0].throughput_pps, 10e6);
    }
}
