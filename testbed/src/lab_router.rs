//! `testbed lab router`: generator → router VNF → sink in one process over in-memory
//! virtio rings (no root, no devices). The router is the real `vnf-router` pipeline
//! built from its example configuration (or `--config`); the generator and the sink
//! are `pktgen`'s. Prints the KPIs (offered and received Mpps, PLR, latency
//! percentiles, the DUT's own Mpps per core), or one JSON object with `--json` (the
//! report header of `pktgen::meta`, the flat KPIs, and `traffic` in the shape every
//! lab reports); exit status 1 when nothing arrived or the loss is above `--max-plr`;
//! `--rfc2544 DIR` runs the RFC 2544 §26 search instead and writes its report there
//! (report.json, report.html, SVG plots); a frame size whose search ended
//! generator-limited gets no DUT throughput and the command exits with status 3
//! ([`EXIT_GENERATOR_LIMITED`]).

use anyhow::Context;
use dataplane::buf::Pool;
use dataplane::port::mem::{self, MemPort};
use dataplane::port::Port;
use dataplane::worker::{TxPolicy, Worker, WorkerConfig};
use pktgen::profile::{FieldSpec, Mode, Scalar, SizeSpec, StreamSpec};
use pktgen::rfc2544::{self, SearchConfig, TrialResult, TrialRunner, TrialSpec};
use pktgen::run::{run_loop, trial_result, RunResult};
use pktgen::sig::now_ns;
use pktgen::{Generator, Receiver, Stream};
use serde::Serialize;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;
use vnf_router::{Config, Router};

/// Exit status of an RFC 2544 run that ended generator-limited for some frame size.
pub const EXIT_GENERATOR_LIMITED: u8 = 3;

/// The router example configuration the lab runs by default.
pub const EXAMPLE_CONFIG: &str = include_str!("../../vnfs/router/examples/router.toml");

/// Options of `testbed lab router`.
#[derive(Debug, Clone, clap::Args)]
#[command(
    after_help = "Exit status: 0 done; 1 the run failed, with the reason on one line on \
                  stderr: no packet reached the sink, the loss ratio is above --max-plr, or \
                  the configuration could not be read; 2 bad command line; 3 (--rfc2544) the \
                  search ended generator-limited for some frame size (no DUT throughput for \
                  it). The report is printed before the verdict."
)]
pub struct RouterLabArgs {
    /// Router configuration (TOML); interface 0 faces the generator, 1 the sink.
    #[arg(long)]
    pub config: Option<PathBuf>,
    /// Frame size in bytes (incl. FCS), or `imix`.
    #[arg(long, default_value = "64")]
    pub size: String,
    /// Offered rate (`max`, `2Mpps`, `500kpps`, `1Gbps`).
    #[arg(long, default_value = "max")]
    pub rate: String,
    /// Seconds of traffic.
    #[arg(long, default_value_t = 3.0, value_parser = pktgen::parse_seconds)]
    pub duration: f64,
    /// Number of flows (UDP source ports).
    #[arg(long, default_value_t = 1024)]
    pub flows: u32,
    /// Destination address (must route out of interface 1).
    #[arg(long, default_value = "198.18.0.1")]
    pub dst: String,
    /// Run the router in its own thread (one DUT core) instead of stepping it in
    /// the generator's thread.
    #[arg(long)]
    pub dut_thread: bool,
    /// Run the RFC 2544 search and write the report (report.json, report.html, SVG
    /// plots) into this directory (created when missing; relative to the current
    /// directory). Exit status 3 when some frame size ended generator-limited.
    #[arg(long)]
    pub rfc2544: Option<PathBuf>,
    /// RFC 2544 frame sizes (default: 64,128,256,512,1024,1280,1518).
    #[arg(long, value_delimiter = ',')]
    pub sizes: Vec<u16>,
    /// RFC 2544 highest rate in Mpps.
    #[arg(long, default_value_t = 4.0)]
    pub max_mpps: f64,
    /// RFC 2544 trial length in seconds.
    #[arg(long, default_value_t = 1.0)]
    pub trial: f64,
    /// Print one JSON object.
    #[arg(long)]
    pub json: bool,
    /// The run fails (exit status 1) when its packet loss ratio is above X (0 to 1;
    /// default: no limit). A run where nothing arrives fails regardless.
    #[arg(long, value_name = "X", value_parser = pktgen::kpi::parse_plr)]
    pub max_plr: Option<f64>,
    /// Router workers: the generator's and the sink's ports get one queue per
    /// worker (the in-memory multi-queue pair steers by the symmetric flow hash,
    /// as a NIC's RSS does) and the workers are joined by the hand-off mesh; with
    /// --dut-thread each worker runs on its own thread. Packets of one stream
    /// through several workers may arrive reordered (each flow stays in order).
    #[arg(long, default_value_t = 1, value_parser = clap::value_parser!(u16).range(1..=64))]
    pub workers: u16,
}

impl Default for RouterLabArgs {
    fn default() -> Self {
        RouterLabArgs {
            config: None,
            size: "64".into(),
            rate: "max".into(),
            duration: 3.0,
            flows: 1024,
            dst: "198.18.0.1".into(),
            dut_thread: false,
            rfc2544: None,
            sizes: Vec::new(),
            max_mpps: 4.0,
            trial: 1.0,
            json: false,
            max_plr: None,
            workers: 1,
        }
    }
}

/// The router as a device under test: its ports and its workers (the engine's
/// worker loop over the router's graph, one per worker, joined by the hand-off
/// mesh when there are several).
pub struct Dut {
    workers: Vec<Worker<MemPort>>,
    /// Nanoseconds spent in steps that moved packets (summed over the workers).
    pub busy_ns: u64,
    /// Packets received by the DUT.
    pub packets: u64,
    /// Packets received per worker.
    pub per_worker: Vec<u64>,
}

impl Dut {
    /// One iteration of every worker's loop (receive, graph, transmit, timers).
    /// Returns packets received.
    #[inline]
    pub fn step(&mut self) -> usize {
        let mut n = 0;
        for (k, w) in self.workers.iter_mut().enumerate() {
            let before = w.stats.rx_packets;
            w.poll(now_ns());
            let got = w.stats.rx_packets - before;
            if let Some(c) = self.per_worker.get_mut(k) {
                *c += got;
            }
            n += got as usize;
        }
        self.packets += n as u64;
        n
    }

    /// Steps and accounts the time of steps that moved packets.
    #[inline]
    pub fn timed_step(&mut self) -> usize {
        let t = now_ns();
        let n = self.step();
        if n > 0 {
            self.busy_ns += now_ns() - t;
        }
        n
    }

    /// `show errors` of the graph (summed over the workers).
    pub fn errors(&self) -> String {
        let mut nodes: Vec<dataplane::stage::NodeStats> = Vec::new();
        for w in &self.workers {
            for (i, n) in w.graph.nodes().enumerate() {
                match nodes.get_mut(i) {
                    Some(m) => m.merge(n),
                    None => nodes.push(n.clone()),
                }
            }
        }
        dataplane::stage::show_errors(nodes.iter())
    }

    /// Total drops counted by the graphs and the hand-off rings.
    pub fn drops(&self) -> u64 {
        self.workers
            .iter()
            .map(|w| {
                w.graph.nodes().map(|n| n.dropped()).sum::<u64>()
                    + w.stats.handoff_dropped
                    + w.out.stats.no_handoff
            })
            .sum()
    }

    /// Packets the workers handed to each other.
    pub fn handoffs(&self) -> u64 {
        self.workers.iter().map(|w| w.stats.handed_off).sum()
    }
}

/// Generator port, sink port, the DUT between them, and the base stream.
pub struct MemLab {
    pub gen_port: Box<dyn Port>,
    pub sink_port: Box<dyn Port>,
    pub dut: Option<Dut>,
    pub base: StreamSpec,
    pub dut_thread: bool,
    cache: dataplane::buf::PoolCache,
    rcv: Receiver,
    drain: Duration,
}

impl MemLab {
    /// Builds the lab from a router configuration text.
    pub fn new(config: &str, args: &RouterLabArgs) -> anyhow::Result<MemLab> {
        let cfg = Config::from_toml(config).map_err(|e| anyhow::anyhow!("router config: {e}"))?;
        anyhow::ensure!(
            cfg.interfaces.len() >= 2,
            "the lab needs a router with two interfaces (0: generator side, 1: sink side)"
        );
        let pool = Pool::new(cfg.engine.pool_buffers.max(16384) + 16384)
            .context("no memory for the buffer pool")?;
        let ring = cfg.engine.ring_size.max(256);
        let n = usize::from(args.workers.max(1));
        // One queue per worker on both sides; the generator's and the sink's ends
        // steer by the symmetric flow hash (the in-memory NIC's RSS).
        let (gen_port, access): (Box<dyn Port>, Vec<MemPort>) = if n == 1 {
            let (g, a) = mem::pair("gen", "access", ring).context("bad ring size for the lab")?;
            (Box::new(g), vec![a])
        } else {
            let (g, a) = mem::mq_pair("gen", "access", n, ring).context("bad ring size")?;
            (Box::new(g), a)
        };
        let (core, sink_port): (Vec<MemPort>, Box<dyn Port>) = if n == 1 {
            let (c, s) = mem::pair("core", "sink", ring).context("bad ring size")?;
            (vec![c], Box::new(s))
        } else {
            // the sink's end steers the router's transmissions, the router's end
            // of each queue is worker k's core port
            let (s, c) = mem::mq_pair("sink", "core", n, ring).context("bad ring size")?;
            (c, Box::new(s))
        };
        let router = Router::build(
            &cfg,
            &[
                access.first().and_then(|a| a.mac()).unwrap_or_default(),
                core.first().and_then(|c| c.mac()).unwrap_or_default(),
            ],
            None,
        )
        .map_err(|e| anyhow::anyhow!("router: {e}"))?;
        let router_mac = router.macs.first().copied().unwrap_or_default();
        // the generator poses as the access-side neighbour when the config names one
        let gen_mac = cfg
            .neighbors
            .iter()
            .find(|n| {
                let a: Option<std::net::Ipv4Addr> = n.ip.parse().ok();
                let first = cfg.interfaces.first();
                a.is_some_and(|a| {
                    first.is_some_and(|i| {
                        i.ipv4.iter().any(|net| {
                            vnf_router::config::parse_net4(net)
                                .map(|(n, l)| {
                                    let m = if l == 0 { 0 } else { u32::MAX << (32 - l) };
                                    u32::from(n) & m == u32::from(a) & m
                                })
                                .unwrap_or(false)
                        })
                    })
                })
            })
            .map(|n| n.mac.clone())
            .unwrap_or_else(|| fmt_mac(gen_port.mac().unwrap_or_default()));
        let mut base = StreamSpec::udp("lab");
        base.src_mac = Some(gen_mac);
        base.dst_mac = Some(fmt_mac(router_mac));
        base.ip.src = "192.0.2.2".into();
        base.ip.dst = args.dst.as_str().into();
        base.l4.sport = FieldSpec::Vary {
            from: Scalar::Num(1024),
            to: Scalar::Num(1024 + args.flows.clamp(1, 64000) as u64 - 1),
            step: None,
            mode: Mode::Inc,
        };
        base.l4.dport = 5001u64.into();
        base.burst = 256;
        base.size = if args.size.eq_ignore_ascii_case("imix") {
            SizeSpec::Named("imix".into())
        } else {
            SizeSpec::Fixed(
                args.size
                    .parse()
                    .context("--size must be a number or imix")?,
            )
        };
        let cache = pool.cache();
        let mut workers = Vec::with_capacity(n);
        let mesh = dataplane::worker::handoff_mesh(n, 4096);
        for (k, ((a, c), h)) in access.into_iter().zip(core).zip(mesh).enumerate() {
            let w = Worker::new(
                vec![a, c],
                router.pipeline_for(k as u16, n as u16),
                pool.cache(),
                WorkerConfig {
                    tx_policy: TxPolicy::Drop,
                    ..WorkerConfig::default()
                },
            )
            .map_err(|e| anyhow::anyhow!("router graph: {e}"))?;
            workers.push(w.with_handoff(h));
        }
        Ok(MemLab {
            gen_port,
            sink_port,
            dut: Some(Dut {
                workers,
                busy_ns: 0,
                packets: 0,
                per_worker: vec![0; n],
            }),
            base,
            dut_thread: args.dut_thread,
            cache,
            rcv: Receiver::new(),
            drain: Duration::from_millis(100),
        })
    }

    /// One run of `g` for `duration`; returns the run and the DUT's ns per packet.
    pub fn run(
        &mut self,
        g: &mut Generator,
        duration: Duration,
    ) -> anyhow::Result<(RunResult, Option<f64>)> {
        let mut dut = self
            .dut
            .take()
            .context("DUT lost by an earlier failed run")?;
        dut.busy_ns = 0;
        dut.packets = 0;
        dut.per_worker.iter_mut().for_each(|c| *c = 0);
        let res;
        let ns_per_pkt;
        if self.dut_thread {
            let stop = Arc::new(AtomicBool::new(false));
            // one thread per worker, each its own one-worker DUT
            let mut hs = Vec::new();
            for w in std::mem::take(&mut dut.workers) {
                let s2 = stop.clone();
                let mut one = Dut {
                    workers: vec![w],
                    busy_ns: 0,
                    packets: 0,
                    per_worker: vec![0],
                };
                hs.push(std::thread::spawn(move || {
                    // no clock reads in the loop (on some VMs they cost more than a
                    // packet); busy time = wall time × the share of polls that moved
                    // packets (an empty poll is cheaper, so this errs towards "busy")
                    let t0 = now_ns();
                    let (mut polls, mut idle) = (0u64, 0u64);
                    while !s2.load(Ordering::Relaxed) {
                        polls += 1;
                        if one.step() == 0 {
                            idle += 1;
                            std::hint::spin_loop();
                        }
                    }
                    let wall = now_ns() - t0;
                    one.busy_ns =
                        (wall as f64 * (polls - idle) as f64 / polls.max(1) as f64) as u64;
                    one
                }));
            }
            res = run_loop(
                g,
                &mut *self.gen_port,
                &mut *self.sink_port,
                &mut self.rcv,
                &mut self.cache,
                duration,
                self.drain,
                |_| {},
            );
            stop.store(true, Ordering::Relaxed);
            for (k, h) in hs.into_iter().enumerate() {
                let mut one = h
                    .join()
                    .map_err(|_| anyhow::anyhow!("DUT thread panicked"))?;
                dut.busy_ns += one.busy_ns;
                dut.packets += one.packets;
                if let Some(c) = dut.per_worker.get_mut(k) {
                    *c = one.packets;
                }
                dut.workers.append(&mut one.workers);
            }
            ns_per_pkt = (dut.packets > 0).then(|| dut.busy_ns as f64 / dut.packets as f64);
            self.dut = Some(dut);
        } else {
            res = run_loop(
                g,
                &mut *self.gen_port,
                &mut *self.sink_port,
                &mut self.rcv,
                &mut self.cache,
                duration,
                self.drain,
                |_| {
                    dut.timed_step();
                },
            );
            ns_per_pkt = (dut.packets > 0).then(|| dut.busy_ns as f64 / dut.packets as f64);
            self.dut = Some(dut);
        }
        Ok((res, ns_per_pkt))
    }
}

impl TrialRunner for MemLab {
    fn trial(&mut self, t: &TrialSpec) -> anyhow::Result<TrialResult> {
        let mut g = pktgen::run::trial_generator(&self.base, t)?;
        let (r, ns) = self.run(&mut g, t.duration)?;
        let mut tr = trial_result(t, &r, &self.rcv);
        tr.dut_ns_per_pkt = ns;
        Ok(tr)
    }
}

fn fmt_mac(m: [u8; 6]) -> String {
    format!(
        "{:02x}:{:02x}:{:02x}:{:02x}:{:02x}:{:02x}",
        m[0], m[1], m[2], m[3], m[4], m[5]
    )
}

/// KPIs of one lab run (the `--json` object).
#[derive(Debug, Clone, Serialize)]
pub struct LabKpis {
    pub lab: &'static str,
    pub dut: &'static str,
    pub mode: &'static str,
    pub frame_size: String,
    pub duration_s: f64,
    pub offered_mpps: f64,
    pub received_mpps: f64,
    pub tx: u64,
    pub rx: u64,
    pub lost: u64,
    pub plr: f64,
    pub reordered: u64,
    pub duplicates: u64,
    pub latency_p50_us: f64,
    pub latency_p99_us: f64,
    pub latency_p999_us: f64,
    pub latency_max_us: f64,
    /// Packets per second one DUT core handles, from the DUT's busy time.
    pub dut_mpps_per_core: f64,
    pub dut_drops: u64,
    /// Router workers (`--workers`).
    pub workers: usize,
    /// Packets each worker received.
    pub per_worker_packets: Vec<u64>,
    /// Packets the workers handed to each other (hand-off mesh).
    pub handoffs: u64,
    /// The same traffic figures in the shape every lab reports (`pktgen::kpi`).
    pub traffic: pktgen::kpi::TrafficKpis,
}

/// Schema name of the lab's JSON report (`--json` without `--rfc2544`).
pub const SCHEMA: &str = "testbed.lab.router";
/// Its version.
pub const SCHEMA_VERSION: u32 = 1;

/// Runs the lab once with `args` and returns its KPIs (plus `show errors`).
pub fn run_once(args: &RouterLabArgs) -> anyhow::Result<(LabKpis, String)> {
    let text = match &args.config {
        Some(p) => {
            std::fs::read_to_string(p).with_context(|| format!("reading {}", p.display()))?
        }
        None => EXAMPLE_CONFIG.to_string(),
    };
    let mut lab = MemLab::new(&text, args)?;
    let mut spec = lab.base.clone();
    spec.rate = Scalar::Str(args.rate.clone());
    let mut g = Generator::new(vec![Stream::new(0, &spec)?]);
    let (r, ns) = lab.run(&mut g, Duration::from_secs_f64(args.duration))?;
    let dut = lab.dut.as_ref();
    let dut_mpps = ns.map(|n| 1e3 / n).unwrap_or(0.0);
    let mut traffic = pktgen::kpi::TrafficKpis {
        tx: r.rx.tx,
        rx: r.rx.rx,
        duration_s: r.seconds,
        latency_p50_us: (r.rx.latency.samples > 0).then_some(r.rx.latency.p50_us),
        latency_p99_us: (r.rx.latency.samples > 0).then_some(r.rx.latency.p99_us),
        latency_max_us: (r.rx.latency.samples > 0).then_some(r.rx.latency.max_us),
        flows: u64::from(args.flows.clamp(1, 64000)),
        // one stream varying its source port: no per-flow first/last packet check
        flows_verified: None,
        dut_mpps_per_core: dut_mpps,
        ..pktgen::kpi::TrafficKpis::default()
    };
    traffic.finish();
    // the generator's own rates (its clock), as in the flat fields
    traffic.offered_mpps = r.tx_pps / 1e6;
    traffic.received_mpps = r.rx_pps / 1e6;
    let k = LabKpis {
        lab: "router",
        dut: "vnf-router",
        mode: if args.dut_thread {
            "dut-thread"
        } else {
            "single-thread"
        },
        frame_size: args.size.clone(),
        duration_s: r.seconds,
        offered_mpps: r.tx_pps / 1e6,
        received_mpps: r.rx_pps / 1e6,
        tx: r.rx.tx,
        rx: r.rx.rx,
        lost: r.rx.lost,
        plr: r.rx.plr,
        reordered: r.rx.reordered,
        duplicates: r.rx.duplicates,
        latency_p50_us: r.rx.latency.p50_us,
        latency_p99_us: r.rx.latency.p99_us,
        latency_p999_us: r.rx.latency.p999_us,
        latency_max_us: r.rx.latency.max_us,
        dut_mpps_per_core: dut_mpps,
        dut_drops: dut.map(|d| d.drops()).unwrap_or(0),
        workers: usize::from(args.workers.max(1)),
        per_worker_packets: dut.map(|d| d.per_worker.clone()).unwrap_or_default(),
        handoffs: dut.map(|d| d.handoffs()).unwrap_or(0),
        traffic,
    };
    Ok((k, dut.map(|d| d.errors()).unwrap_or_default()))
}

/// `testbed lab router`; returns the exit status.
pub fn main(args: RouterLabArgs) -> anyhow::Result<std::process::ExitCode> {
    if let Some(dir) = &args.rfc2544 {
        let text = match &args.config {
            Some(p) => {
                std::fs::read_to_string(p).with_context(|| format!("reading {}", p.display()))?
            }
            None => EXAMPLE_CONFIG.to_string(),
        };
        let mut lab = MemLab::new(&text, &args)?;
        let cfg = SearchConfig {
            frame_sizes: if args.sizes.is_empty() {
                rfc2544::FRAME_SIZES.to_vec()
            } else {
                args.sizes.clone()
            },
            duration: Duration::from_secs_f64(args.trial),
            max_rate_pps: args.max_mpps * 1e6,
            ..SearchConfig::default()
        };
        let rep = rfc2544::run(&mut lab, "vnf-router (in-memory lab)", &cfg, args.json)?;
        let html = pktgen::report::write_rfc2544(dir, &rep)?;
        if args.json {
            println!("{}", serde_json::to_string(&rep)?);
        } else {
            for line in rep.summary_lines() {
                println!("{line}");
            }
            println!("report: {}", html.display());
        }
        if rep.generator_limited {
            eprintln!(
                "testbed: generator-limited: no DUT throughput for some frame size (see {})",
                html.display()
            );
            return Ok(std::process::ExitCode::from(EXIT_GENERATOR_LIMITED));
        }
        return Ok(std::process::ExitCode::SUCCESS);
    }
    let header = pktgen::meta::Header::start(SCHEMA, SCHEMA_VERSION);
    let (k, errors) = run_once(&args)?;
    if args.json {
        println!("{}", header.json(&k)?);
    } else {
        println!(
            "lab router ({}, {} B frames, {:.1} s)",
            k.mode, k.frame_size, k.duration_s
        );
        println!(
            "  offered   {:>8.3} Mpps   ({} frames)",
            k.offered_mpps, k.tx
        );
        println!(
            "  received  {:>8.3} Mpps   ({} frames)",
            k.received_mpps, k.rx
        );
        println!(
            "  lost      {} (PLR {:.6}), reordered {}, duplicates {}",
            k.lost, k.plr, k.reordered, k.duplicates
        );
        println!(
            "  latency   p50 {:.2} µs  p99 {:.2} µs  p99.9 {:.2} µs  max {:.2} µs",
            k.latency_p50_us, k.latency_p99_us, k.latency_p999_us, k.latency_max_us
        );
        println!(
            "  router    {:.3} Mpps per core (busy time)",
            k.dut_mpps_per_core
        );
        if k.dut_drops > 0 {
            print!("{}", errors);
        }
    }
    k.traffic
        .check_plr(args.max_plr)
        .map_err(|e| anyhow::anyhow!("lab failed: {e}"))?;
    Ok(std::process::ExitCode::SUCCESS)
}
