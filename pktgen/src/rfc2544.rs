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
//!
//! A trial measures the DUT only when the generator offered the asked rate: a trial
//! whose achieved rate falls more than [`GEN_SHORTFALL`] below the asked one with no
//! loss is *generator-limited* (every trial says which side limited it:
//! [`LimitedBy`]). When the search ends on such a trial (the generator topped out
//! before the DUT lost anything), the result carries no DUT throughput: its summary
//! says `"throughput": null`, `"generator_limited": true` and "generator-limited at
//! X Mpps: the DUT's throughput is above what this generator can offer".

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

/// A trial is generator-limited when the achieved rate is this fraction (or more)
/// below the asked one.
pub const GEN_SHORTFALL: f64 = 0.02;

/// Which side limited a trial (or ended a search).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum LimitedBy {
    /// Nothing: the generator offered the asked rate and the DUT lost at most the
    /// acceptable ratio (for a search: no loss at the highest rate tried).
    #[default]
    None,
    /// The DUT lost more than the acceptable ratio of what it was offered.
    Dut,
    /// The generator could not offer the asked rate (and the DUT lost nothing beyond
    /// the acceptable ratio): the trial says nothing about the DUT at that rate.
    Generator,
}

impl LimitedBy {
    pub fn as_str(self) -> &'static str {
        match self {
            LimitedBy::None => "none",
            LimitedBy::Dut => "dut",
            LimitedBy::Generator => "generator",
        }
    }
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
    /// Which side limited this trial (set by the search from the loss threshold).
    pub limited_by: LimitedBy,
}

impl TrialResult {
    /// Passes when the loss ratio is within `plr` and the generator offered the asked
    /// rate (§26.1: the rate is the offered load).
    pub fn passes(&self, plr: f64) -> bool {
        self.plr <= plr && !self.gen_limited()
    }

    /// True when the generator could not offer the asked rate (within
    /// [`GEN_SHORTFALL`]): the trial then measured the generator or the host, not the
    /// DUT.
    pub fn gen_limited(&self) -> bool {
        self.tx_pps < (1.0 - GEN_SHORTFALL) * self.offered_pps
    }

    /// Which side limited the trial given the acceptable loss ratio: loss above it is
    /// the DUT's (it lost frames at the rate it was actually offered, even when the
    /// generator fell short); otherwise a short generator limited it.
    pub fn classify(&self, plr: f64) -> LimitedBy {
        if self.plr > plr {
            LimitedBy::Dut
        } else if self.gen_limited() {
            LimitedBy::Generator
        } else {
            LimitedBy::None
        }
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

/// The verdict for one frame size.
#[derive(Clone, Debug, Serialize)]
pub struct Summary {
    /// The DUT's throughput in frames/s, or `null` when the search could not measure
    /// it (generator-limited).
    pub throughput: Option<f64>,
    /// Same in Gbit/s of L2 frames incl. FCS.
    pub throughput_gbps: Option<f64>,
    /// The generator topped out below any DUT loss: no DUT figure.
    pub generator_limited: bool,
    /// The highest rate (frames/s) the generator achieved when it fell short.
    pub generator_max_pps: Option<f64>,
    /// What ended the search: `dut` (it lost frames just above the throughput),
    /// `generator` (see `generator_limited`), `none` (no loss at the highest rate
    /// tried: the throughput is at least that rate).
    pub limited_by: LimitedBy,
    /// One line for people.
    pub text: String,
}

/// One §26.3 trial: asked and achieved rate, loss, and which side limited it.
#[derive(Clone, Copy, Debug, Serialize)]
pub struct LossPoint {
    /// Rate asked of the generator (frames/s).
    pub requested_pps: f64,
    /// Rate the generator achieved (frames/s): the load the DUT was offered.
    pub offered_pps: f64,
    pub plr: f64,
    pub limited_by: LimitedBy,
}

/// Result for one frame size.
#[derive(Clone, Debug, Serialize)]
pub struct SizeResult {
    pub frame_size: u16,
    /// The verdict; read this first.
    pub summary: Summary,
    /// The DUT's throughput: the rate the generator achieved in the highest passing
    /// trial (0 when none passed); `null` when generator-limited.
    pub throughput_pps: Option<f64>,
    /// The asked rate of that trial (`null` when generator-limited).
    pub throughput_offered_pps: Option<f64>,
    /// The search ended generator-limited (same as `summary.generator_limited`).
    pub gen_limited: bool,
    /// Throughput in Mbit/s of L2 frames incl. FCS (`null` when generator-limited).
    pub throughput_mbps: Option<f64>,
    /// The search trials, in order.
    pub trials: Vec<TrialResult>,
    pub latency: Option<TrialResult>,
    /// §26.3: (asked pps, PLR), highest rate first.
    pub loss_curve: Vec<(f64, f64)>,
    /// §26.3 trials with the achieved rate and the limiting side, highest rate first.
    pub loss_sweep: Vec<LossPoint>,
}

/// Where and how a run was made (for the report).
#[derive(Clone, Debug, Default, Serialize)]
pub struct RunMeta {
    /// The command line, arguments joined by spaces.
    pub command_line: String,
    /// Start time, UTC, RFC 3339.
    pub start_time: String,
    pub hostname: String,
    pub cpu_model: String,
    /// CPUs of the machine.
    pub cores: usize,
    /// CPUs this process may run on (its affinity mask).
    pub cores_usable: usize,
    /// Git commit the binary was built from, when known.
    pub git_commit: Option<String>,
}

impl RunMeta {
    /// The meta data of this process, now (from [`crate::meta`], the header every
    /// report of the workspace carries).
    pub fn capture() -> RunMeta {
        RunMeta::from_header(&crate::meta::Header::start(REPORT_SCHEMA, REPORT_VERSION))
    }

    /// The same facts as a report header.
    pub fn from_header(h: &crate::meta::Header) -> RunMeta {
        RunMeta {
            command_line: h.command.clone(),
            start_time: h.started.clone(),
            hostname: h.machine.host.clone(),
            cpu_model: h.machine.cpu_model.clone(),
            cores: h.machine.cores,
            cores_usable: h.machine.cores_usable,
            git_commit: h.commit.clone(),
        }
    }
}

/// Schema name of the RFC 2544 report (`report.json`, `--json`).
pub const REPORT_SCHEMA: &str = "pktgen.rfc2544";
/// Its version.
pub const REPORT_VERSION: u32 = 1;

pub use crate::meta::rfc3339;

/// A whole RFC 2544 run.
#[derive(Clone, Debug, Serialize)]
pub struct Rfc2544Report {
    /// `schema`, `command`, `started`, `machine`, `commit` (the header every report
    /// carries; `meta` holds the same facts under its older names).
    #[serde(flatten)]
    pub header: crate::meta::Header,
    pub dut: String,
    pub meta: RunMeta,
    pub config: SearchConfig,
    /// Some frame size ended generator-limited (no DUT throughput for it).
    pub generator_limited: bool,
    pub results: Vec<SizeResult>,
}

impl Rfc2544Report {
    /// The one-line verdict of every frame size.
    pub fn summary_lines(&self) -> Vec<String> {
        self.results
            .iter()
            .map(|s| s.summary.text.clone())
            .collect()
    }
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
///
/// A trial passes when the DUT lost at most `cfg.plr` and the generator offered the
/// asked rate; any other trial lowers the upper bound. The side that limited the
/// trial setting the final upper bound decides the verdict: the DUT (throughput =
/// the highest passing rate), the generator (no DUT figure: the DUT forwarded all the
/// generator could offer), or nothing (no loss at `cfg.max_rate_pps`).
pub fn search_size(
    runner: &mut dyn TrialRunner,
    cfg: &SearchConfig,
    frame_size: u16,
    pb: &ProgressBar,
) -> anyhow::Result<SizeResult> {
    let mut trials = Vec::new();
    let mut lo = 0.0f64;
    let mut hi = cfg.max_rate_pps;
    let mut hi_by = LimitedBy::None;
    let mut rate = hi;
    let mut best = 0.0f64;
    let mut best_tx = 0.0f64;
    let mut gen_max = 0.0f64;
    for _ in 0..cfg.max_trials.max(1) {
        pb.set_message(format!("{frame_size} B @ {:.3} Mpps", rate / 1e6));
        let mut r = runner.trial(&TrialSpec {
            frame_size,
            rate_pps: rate,
            duration: cfg.duration,
        })?;
        pb.inc(1);
        r.limited_by = r.classify(cfg.plr);
        let ok = r.limited_by == LimitedBy::None;
        if r.limited_by == LimitedBy::Generator {
            gen_max = gen_max.max(r.tx_pps);
        }
        if ok && rate >= best {
            best = rate;
            best_tx = r.tx_pps.min(rate);
        }
        let by = r.limited_by;
        trials.push(r);
        if ok {
            lo = rate;
            if rate >= cfg.max_rate_pps {
                break;
            }
        } else {
            hi = rate;
            hi_by = by;
        }
        if hi - lo <= cfg.resolution * hi {
            break;
        }
        rate = (lo + hi) / 2.0;
    }
    let generator_limited = hi_by == LimitedBy::Generator;
    let latency = if cfg.latency && best > 0.0 {
        pb.set_message(format!("{frame_size} B latency @ {:.3} Mpps", best / 1e6));
        let mut r = runner.trial(&TrialSpec {
            frame_size,
            rate_pps: best,
            duration: cfg.duration,
        })?;
        r.limited_by = r.classify(cfg.plr);
        Some(r)
    } else {
        None
    };
    let mut loss_curve = Vec::new();
    let mut loss_sweep = Vec::new();
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
            loss_sweep.push(LossPoint {
                requested_pps: r.offered_pps,
                offered_pps: r.tx_pps,
                plr: r.plr,
                limited_by: r.classify(cfg.plr),
            });
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
    let bits = frame_size as f64 * 8.0;
    // the lowest load (as offered) at which the DUT lost frames, if any
    let dut_loss = trials
        .iter()
        .filter(|t| t.limited_by == LimitedBy::Dut)
        .map(|t| t.tx_pps)
        .reduce(f64::min);
    let summary = if generator_limited {
        let text = match dut_loss {
            // the generator fell short below a rate at which the DUT did lose: the
            // search could not close in on the DUT's limit
            Some(l) => format!(
                "{frame_size} B: generator-limited at {:.3} Mpps: the DUT lost frames at {:.3} Mpps offered, but the generator could not offer the rates below that; no DUT throughput",
                gen_max / 1e6,
                l / 1e6
            ),
            None => format!(
                "{frame_size} B: generator-limited at {:.3} Mpps: the DUT's throughput is above what this generator can offer",
                gen_max / 1e6
            ),
        };
        Summary {
            throughput: None,
            throughput_gbps: None,
            generator_limited: true,
            generator_max_pps: Some(gen_max),
            limited_by: LimitedBy::Generator,
            text,
        }
    } else {
        let text = match hi_by {
            LimitedBy::None => format!(
                "{frame_size} B: throughput {:.3} Mpps ({:.3} Gbit/s), no loss at the highest rate tried: the DUT's throughput is at least that",
                best_tx / 1e6,
                best_tx * bits / 1e9
            ),
            _ if best_tx > 0.0 => format!(
                "{frame_size} B: throughput {:.3} Mpps ({:.3} Gbit/s), limited by the DUT (it lost frames above that rate)",
                best_tx / 1e6,
                best_tx * bits / 1e9
            ),
            _ => format!(
                "{frame_size} B: throughput 0: the DUT lost frames at every rate tried (lowest {:.3} Mpps)",
                hi / 1e6
            ),
        };
        Summary {
            throughput: Some(best_tx),
            throughput_gbps: Some(best_tx * bits / 1e9),
            generator_limited: false,
            generator_max_pps: (gen_max > 0.0).then_some(gen_max),
            limited_by: hi_by,
            text,
        }
    };
    Ok(SizeResult {
        frame_size,
        throughput_pps: summary.throughput,
        throughput_offered_pps: (!generator_limited).then_some(best),
        gen_limited: generator_limited,
        throughput_mbps: summary.throughput.map(|t| t * bits / 1e6),
        summary,
        trials,
        latency,
        loss_curve,
        loss_sweep,
    })
}

/// Runs §26.1 (+ §26.2, §26.3 as configured) for every frame size.
pub fn run(
    runner: &mut dyn TrialRunner,
    dut: &str,
    cfg: &SearchConfig,
    quiet: bool,
) -> anyhow::Result<Rfc2544Report> {
    let header = crate::meta::Header::start(REPORT_SCHEMA, REPORT_VERSION);
    let meta = RunMeta::from_header(&header);
    let per = cfg.max_trials as u64 + 1;
    let pb = bar(per * cfg.frame_sizes.len() as u64, quiet);
    let mut results = Vec::new();
    for &fs in &cfg.frame_sizes {
        results.push(search_size(runner, cfg, fs, &pb)?);
    }
    pb.finish_and_clear();
    Ok(Rfc2544Report {
        header,
        dut: dut.into(),
        meta,
        config: cfg.clone(),
        generator_limited: results.iter().any(|r| r.gen_limited),
        results,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A model DUT that forwards up to `cap` pps and loses the excess, behind a
    /// generator that offers at most `gen_cap` pps.
    struct Model {
        cap: f64,
        gen_cap: f64,
        trials: u32,
    }

    impl Model {
        fn new(cap: f64) -> Model {
            Model {
                cap,
                gen_cap: f64::INFINITY,
                trials: 0,
            }
        }
    }

    impl TrialRunner for Model {
        fn trial(&mut self, t: &TrialSpec) -> anyhow::Result<TrialResult> {
            self.trials += 1;
            let secs = t.duration.as_secs_f64();
            let offered = t.rate_pps.min(self.gen_cap);
            let tx = (offered * secs) as u64;
            let rx = (offered.min(self.cap) * secs) as u64;
            Ok(TrialResult {
                frame_size: t.frame_size,
                offered_pps: t.rate_pps,
                tx_pps: tx as f64 / secs,
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
        let mut m = Model::new(3.3e6);
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
            let t = r.throughput_pps.unwrap();
            assert!(t <= 3.3e6, "{t}");
            assert!(t > 3.3e6 * 0.98, "{t}");
            assert_eq!(r.summary.limited_by, LimitedBy::Dut);
            assert!(r.latency.is_some());
            // sweep: 10, 9, ... 4 Mpps lose; 3 and 2 do not
            assert_eq!(r.loss_curve.len(), 9);
            assert_eq!(r.loss_curve.last().unwrap().1, 0.0);
        }
        // a DUT that passes at max rate needs one search trial
        let mut fast = Model::new(1e9);
        let cfg = SearchConfig {
            frame_sizes: vec![64],
            latency: false,
            loss_sweep: false,
            ..cfg
        };
        let rep = run(&mut fast, "fast", &cfg, true).unwrap();
        assert_eq!(fast.trials, 1);
        assert_eq!(rep.results[0].throughput_pps, Some(10e6));
        assert_eq!(rep.results[0].summary.limited_by, LimitedBy::None);
        assert!(rep.results[0].summary.text.contains("at least"));
    }

    fn small_cfg() -> SearchConfig {
        SearchConfig {
            frame_sizes: vec![64],
            duration: Duration::from_millis(100),
            max_rate_pps: 12e6,
            resolution: 0.01,
            max_trials: 20,
            ..SearchConfig::default()
        }
    }

    #[test]
    fn generator_topping_out_below_dut_loss_gives_no_dut_throughput() {
        // the DUT forwards 20 Mpps; the generator offers at most 9.56 Mpps: every
        // trial loses nothing, and the short ones are the generator's
        let mut m = Model {
            cap: 20e6,
            gen_cap: 9.56e6,
            trials: 0,
        };
        let rep = run(&mut m, "model", &small_cfg(), true).unwrap();
        assert!(rep.generator_limited);
        let r = &rep.results[0];
        assert!(r.trials.iter().all(|t| t.lost == 0));
        assert!(r
            .trials
            .iter()
            .any(|t| t.limited_by == LimitedBy::Generator));
        assert!(r.trials.iter().all(|t| t.limited_by != LimitedBy::Dut));
        assert!(r.gen_limited && r.summary.generator_limited);
        assert_eq!(r.summary.limited_by, LimitedBy::Generator);
        assert_eq!(r.summary.throughput, None);
        assert_eq!(r.throughput_pps, None);
        assert_eq!(r.throughput_mbps, None);
        assert_eq!(
            r.summary.text,
            "64 B: generator-limited at 9.560 Mpps: the DUT's throughput is above what this generator can offer"
        );
        let v = serde_json::to_value(r).unwrap();
        assert!(v["summary"]["throughput"].is_null(), "{v}");
        assert_eq!(v["summary"]["generator_limited"], true);
        assert_eq!(v["summary"]["limited_by"], "generator");
        assert!(v["throughput_pps"].is_null());
        // §26.3 points are placed at the rate actually offered, and say who limited
        let top = r.loss_sweep.first().unwrap();
        assert_eq!(top.limited_by, LimitedBy::Generator);
        assert!(
            (top.offered_pps - 9.56e6).abs() < 1e3,
            "{}",
            top.offered_pps
        );
    }

    #[test]
    fn dut_loss_below_the_generator_ceiling_is_the_throughput() {
        // the generator reaches 9.56 Mpps, the DUT drops above 6 Mpps
        let mut m = Model {
            cap: 6e6,
            gen_cap: 9.56e6,
            trials: 0,
        };
        let rep = run(&mut m, "model", &small_cfg(), true).unwrap();
        assert!(!rep.generator_limited);
        let r = &rep.results[0];
        assert!(!r.gen_limited && !r.summary.generator_limited);
        assert_eq!(r.summary.limited_by, LimitedBy::Dut);
        let t = r.summary.throughput.unwrap();
        assert!(t <= 6e6 && t > 6e6 * 0.98, "{t}");
        assert_eq!(r.throughput_pps, Some(t));
        assert!(
            r.summary.text.contains("limited by the DUT"),
            "{}",
            r.summary.text
        );
        // the first trial (12 Mpps asked, 9.56 offered) lost frames: the DUT's
        assert_eq!(r.trials[0].limited_by, LimitedBy::Dut);
        let v = serde_json::to_value(r).unwrap();
        assert_eq!(v["summary"]["limited_by"], "dut");
        assert_eq!(v["trials"][0]["limited_by"], "dut");
        // a passing trial is limited by nothing
        assert!(r.trials.iter().any(|t| t.limited_by == LimitedBy::None));
    }

    /// Loses above `cap`; the generator falls short at exactly one asked rate.
    struct Noisy {
        cap: f64,
        short_at: f64,
    }

    impl TrialRunner for Noisy {
        fn trial(&mut self, t: &TrialSpec) -> anyhow::Result<TrialResult> {
            let mut m = Model::new(self.cap);
            if t.rate_pps == self.short_at {
                m.gen_cap = t.rate_pps * 0.9;
            }
            m.trial(t)
        }
    }

    #[test]
    fn generator_short_below_a_dut_loss_is_no_dut_figure_either() {
        // 12 Mpps asked: the DUT (8 Mpps) loses; 6 Mpps asked: the generator gives
        // 5.4 and nothing is lost; the search closes on 6 with the generator last
        let mut n = Noisy {
            cap: 8e6,
            short_at: 6e6,
        };
        let cfg = SearchConfig {
            max_trials: 30,
            ..small_cfg()
        };
        let rep = run(&mut n, "noisy", &cfg, true).unwrap();
        let r = &rep.results[0];
        assert_eq!(r.trials[0].limited_by, LimitedBy::Dut);
        assert_eq!(r.trials[1].limited_by, LimitedBy::Generator);
        assert!(r.summary.generator_limited && r.summary.throughput.is_none());
        assert!(
            r.summary
                .text
                .contains("the DUT lost frames at 12.000 Mpps offered"),
            "{}",
            r.summary.text
        );
    }

    #[test]
    fn dates_are_rfc3339() {
        assert_eq!(rfc3339(0), "1970-01-01T00:00:00Z");
        assert_eq!(rfc3339(951_782_400), "2000-02-29T00:00:00Z");
        assert_eq!(rfc3339(1_798_765_261), "2027-01-01T01:01:01Z");
    }
}
