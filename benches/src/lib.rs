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
    /// Workers (`bench --workers N`): scenarios that support several run one
    /// pinned thread per worker ([`par_workers`]); the others refuse N > 1.
    pub workers: usize,
    /// Cores of the workers (`--cores`), one per worker; empty: worker k on core k.
    pub cores: Vec<usize>,
    /// The order of the subscribers' frames in the vBNG scenarios (`--order`).
    pub order: pktgen::subscribers::lab::Order,
}

impl Params {
    /// One worker, unpinned (what every scenario ran before `--workers`).
    pub fn new(pkt_size: PktSize, seconds: f64) -> Self {
        Params {
            pkt_size,
            seconds,
            workers: 1,
            cores: Vec::new(),
            order: pktgen::subscribers::lab::Order::Setup,
        }
    }
}

/// One worker's figures in a report (`per_worker` in the JSON).
#[derive(Clone, Debug, Serialize)]
pub struct WorkerFigures {
    pub worker: usize,
    /// Core it was pinned to (`None`: one worker without `--cores`, not pinned).
    pub core: Option<usize>,
    pub packets: u64,
    pub mpps_per_core: f64,
    pub mpps_median_burst: f64,
    pub mpps_total: f64,
    pub drops: u64,
    /// Packets this worker handed to another worker that owns their state.
    pub handoffs: u64,
}

/// Runs `f(k, start)` for workers `k = 0..n`, each on its own thread pinned to its
/// core (`cores`, else core k); `start` is a barrier every worker waits at right
/// before its timed part, so the timed parts run at the same time. One worker runs
/// on the calling thread, unpinned unless `cores` names a core (as before
/// `--workers`). Returns the workers' reports in order.
pub fn par_workers<F>(n: usize, cores: &[usize], f: F) -> anyhow::Result<Vec<Report>>
where
    F: Fn(usize, &std::sync::Barrier) -> anyhow::Result<Report> + Sync,
{
    let n = n.max(1);
    let start = std::sync::Barrier::new(n);
    if n == 1 {
        if let Some(&c) = cores.first() {
            dataplane::runner::pin_to(c);
        }
        let mut r = f(0, &start)?;
        r.per_worker = vec![figures(0, cores.first().copied(), &r)];
        return Ok(vec![r]);
    }
    std::thread::scope(|s| {
        let hs: Vec<_> = (0..n)
            .map(|k| {
                let (f, start) = (&f, &start);
                let core = dataplane::runner::core_for(k, cores);
                s.spawn(move || {
                    dataplane::runner::pin_to(core);
                    let mut r = f(k, start)?;
                    r.per_worker = vec![figures(k, Some(core), &r)];
                    Ok(r)
                })
            })
            .collect();
        hs.into_iter()
            .map(|h| {
                h.join()
                    .unwrap_or_else(|_| Err(anyhow::anyhow!("a worker thread panicked")))
            })
            .collect()
    })
}

/// A one-worker report with its `per_worker` entry (`core`: where it was pinned).
pub fn single(mut r: Report, core: Option<usize>) -> Report {
    r.workers = 1;
    r.per_worker = vec![figures(0, core, &r)];
    r
}

fn figures(worker: usize, core: Option<usize>, r: &Report) -> WorkerFigures {
    WorkerFigures {
        worker,
        core,
        packets: r.packets,
        mpps_per_core: r.mpps_per_core,
        mpps_median_burst: r.mpps_median_burst,
        mpps_total: r.mpps_total,
        drops: r.drops,
        handoffs: r
            .extra
            .get("handoffs")
            .and_then(|v| v.as_u64())
            .unwrap_or(0),
    }
}

/// One report from the workers' reports: `packets` and `drops` summed,
/// `mpps_total` the sum of every worker's rate (the VNF's throughput), the per-core
/// figures (`mpps_per_core`, `mpps_median_burst`, `gbps_per_core`,
/// `cycles_per_packet`) the mean over the workers; `extra` is worker 0's, every
/// worker's own figures are in `per_worker`. With one worker it is that worker's
/// report unchanged.
pub fn combine(mut v: Vec<Report>) -> anyhow::Result<Report> {
    let n = v.len();
    let mut per = Vec::with_capacity(n);
    for r in v.iter_mut() {
        per.append(&mut r.per_worker);
    }
    let mut it = v.into_iter();
    let Some(mut out) = it.next() else {
        anyhow::bail!("no worker ran");
    };
    let mean = |x: f64| x / n as f64;
    let (mut mpc, mut med, mut gbps, mut cpp) = (
        out.mpps_per_core,
        out.mpps_median_burst,
        out.gbps_per_core,
        out.cycles_per_packet,
    );
    for r in it {
        out.packets += r.packets;
        out.drops += r.drops;
        out.mpps_total += r.mpps_total;
        mpc += r.mpps_per_core;
        med += r.mpps_median_burst;
        gbps += r.gbps_per_core;
        cpp += r.cycles_per_packet;
    }
    if n > 1 {
        out.mpps_per_core = mean(mpc);
        out.mpps_median_burst = mean(med);
        out.gbps_per_core = mean(gbps);
        out.cycles_per_packet = mean(cpp);
    }
    out.workers = n;
    out.per_worker = per;
    Ok(out)
}

/// One line of the `bench` report (`--json` prints it as one JSON object, after the
/// report header of `pktgen::meta`).
#[derive(Clone, Debug, Serialize)]
pub struct Report {
    pub scenario: String,
    pub pkt_size: String,
    /// Packets that went through the device under test during the timed part.
    pub packets: u64,
    /// The headline figure: [`Report::mpps_median_burst`] when the timed sections run
    /// on the wall clock (TSC), [`Report::mpps_total`] when they run on the thread's
    /// CPU time (see `headline` and benches/RESULTS.md).
    pub mpps_per_core: f64,
    /// Mpps per core from the median cost per packet over the timed bursts (each
    /// burst, batch, step, section or handshake timed on its own).
    pub mpps_median_burst: f64,
    /// Mpps per core from all the timed cycles (or time) over all the packets.
    pub mpps_total: f64,
    /// Which of the two `mpps_per_core` is: `median_burst` or `total`.
    pub headline: &'static str,
    /// The clock of the timed sections: `tsc` (wall clock: counts time the thread was
    /// descheduled) or `thread_cpu` (does not).
    pub clock: &'static str,
    /// Ethernet frame bits per second (without preamble/IFG), per core.
    pub gbps_per_core: f64,
    pub cycles_per_packet: f64,
    pub drops: u64,
    /// Scenario-specific figures (sessions, tables, ...).
    #[serde(skip_serializing_if = "serde_json::Map::is_empty")]
    pub extra: serde_json::Map<String, serde_json::Value>,
    /// Workers that ran (`--workers`); with several, `mpps_total` is the sum over
    /// them and the per-core figures their mean ([`combine`]).
    pub workers: usize,
    /// Each worker's figures.
    pub per_worker: Vec<WorkerFigures>,
}

/// The two per-core figures of a run and which is the headline: on the wall clock
/// the median per burst (a burst during which the thread was descheduled is an
/// outlier, not the median), on the thread's CPU time the total (descheduled time is
/// not counted at all). Returns (`mpps_per_core`, `headline`, `clock`).
pub fn headline(
    median_mpps: f64,
    total_mpps: f64,
    cpu_clock: bool,
) -> (f64, &'static str, &'static str) {
    if cpu_clock {
        (total_mpps, "total", "thread_cpu")
    } else if median_mpps.is_finite() && median_mpps > 0.0 {
        (median_mpps, "median_burst", "tsc")
    } else {
        (total_mpps, "total", "tsc")
    }
}

/// Times the DUT's part of a bench loop: one worker-loop iteration per
/// [`BurstTimer::poll`], its cycles and packets summed and, for each burst that moved
/// packets, its cost per packet (the samples behind the median headline).
pub struct BurstTimer {
    /// Cycles spent in timed polls.
    pub cycles: u64,
    /// Packets the timed polls received.
    pub packets: u64,
    /// Cycles per packet of each burst that moved packets (pre-allocated).
    pub per_burst: Vec<f64>,
}

impl BurstTimer {
    /// Room for 4M burst samples, allocated once before the timed loop.
    pub fn new() -> Self {
        BurstTimer {
            cycles: 0,
            packets: 0,
            per_burst: Vec::with_capacity(1 << 22),
        }
    }

    /// Forgets what was timed so far (the end of the warm-up).
    pub fn reset(&mut self) {
        self.cycles = 0;
        self.packets = 0;
        self.per_burst.clear();
    }

    /// One timed `worker.poll(now)`; `sample`: keep this burst's cost per packet.
    /// Returns the packets it received.
    pub fn poll<P: dataplane::port::Port>(
        &mut self,
        worker: &mut dataplane::worker::Worker<P>,
        now: u64,
        sample: bool,
    ) -> usize {
        let before = worker.stats.rx_packets;
        let c0 = cycles();
        worker.poll(now);
        let c = cycles().wrapping_sub(c0);
        let n = (worker.stats.rx_packets - before) as usize;
        self.cycles += c;
        self.packets += n as u64;
        if sample && n > 0 && self.per_burst.len() < self.per_burst.capacity() {
            self.per_burst.push(c as f64 / n as f64);
        }
        n
    }

    /// Median cycles per packet over the sampled bursts (sorts them).
    pub fn median_cpp(&mut self) -> f64 {
        median(&mut self.per_burst)
    }

    /// Mean cycles per packet over every timed poll.
    pub fn mean_cpp(&self) -> f64 {
        self.cycles as f64 / self.packets.max(1) as f64
    }
}

impl Default for BurstTimer {
    fn default() -> Self {
        Self::new()
    }
}

/// The median of some samples (sorts them; the mean of the two middle ones for an
/// even count); NaN when there are none.
pub fn median(v: &mut [f64]) -> f64 {
    v.sort_unstable_by(|a, b| a.total_cmp(b));
    match v.len() {
        0 => f64::NAN,
        n if n % 2 == 1 => v[n / 2],
        n => (v[n / 2 - 1] + v[n / 2]) / 2.0,
    }
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn headline_is_the_median_on_the_wall_clock_and_the_total_on_cpu_time() {
        assert_eq!(headline(40.0, 24.0, false), (40.0, "median_burst", "tsc"));
        assert_eq!(headline(40.0, 24.0, true), (24.0, "total", "thread_cpu"));
        // no burst timed on its own: the total, said so
        assert_eq!(headline(f64::NAN, 24.0, false), (24.0, "total", "tsc"));
        assert_eq!(headline(f64::INFINITY, 24.0, false).1, "total");
        let mut v = vec![3.0, 1.0, 2.0, 100.0, 2.5];
        assert_eq!(median(&mut v), 2.5);
        assert!(median(&mut []).is_nan());
        // an even count: the mean of the two middle samples
        assert_eq!(median(&mut [4.0, 1.0, 3.0, 2.0]), 2.5);
    }
}
