//! `testbed compare dpdk`: DPDK's `dpdk-testpmd` and our VNFs side by side over the
//! shared-memory rings DPDK-class deployments use, fed by one generator, in one run.
//!
//! ```text
//!   generator (this process, --gen-core)          DUT (--dut-core)
//!   port g0 ══ vhost-user / memif ring ══════════ port 0   ─┐ io | l3 | nat44
//!   port g1 ══ vhost-user / memif ring ══════════ port 1   ◄┘
//! ```
//!
//! * **vhost-user:** the DUT is the backend and listens (testpmd `net_vhost`, ours
//!   `vhost-user:PATH,server`); the generator is the frontend (a guest's virtio-net
//!   driver: our `virtio-user:PATH` port) and owns the memory. Each DUT copies once per
//!   frame each way, as the protocol demands.
//! * **memif:** the generator is the master and listens; the DUT is the slave
//!   (testpmd `net_memif,role=client`, ours `memif:PATH`) and owns the memory. Ours
//!   is a zero-copy slave (frames forwarded between its two links never copied;
//!   `--memif-copy`: the copying slave, `memif:PATH,copy`); testpmd's client runs
//!   with the driver's default `zero-copy=no` (its zero-copy mode needs EAL
//!   `--single-file-segments` over hugepages), so it copies each frame in and out.
//!
//! Workloads: `io` — testpmd `--forward-mode=io` vs our port-to-port cross-connect in
//! the engine's worker loop; `l3` — testpmd `macswap` vs our full router graph
//! (`vnf_router::Router::pipeline`: classify, ARP, IPv4 input/lookup/rewrite);
//! `nat44` — testpmd `macswap` vs the router's stages with our NAT44 (NAPT) stage.
//! testpmd has no L3 or NAT forwarding engine, so `macswap` (which reads and writes
//! every frame's header) is the nearest it offers.
//!
//! Both DUTs poll on `--dut-core` (testpmd's one forwarding lcore; our worker thread
//! pinned there), the generator and sink share one loop on `--gen-core`. Per DUT:
//! received Mpps at the sink, PLR (frames the DUT's input ring refused count as lost,
//! as a full NIC ring would), busy CPU cycles per forwarded packet (testpmd's
//! `--record-core-cycles`; ours: TSC cycles of worker polls that moved a packet), and
//! what limited the figure:
//!
//! * `generator`: every offered frame arrived — the DUT kept up;
//! * `DUT`: the DUT's input ring was full (the generator found no room) or the DUT
//!   dropped frames itself;
//! * `ring`: the DUT took every frame but its output ring to the sink overflowed.
//!
//! **Trials.** Each (ring, workload) runs `--trials` times per side, the sides
//! alternating which goes first, each trial after `--warmup` seconds of unmeasured
//! traffic; the line reports each side's median trial (its counters, PLR, cycles)
//! with every trial's rate (`ours_mpps_trials`, `theirs_mpps_trials`,
//! `ratio_trials`) and the spread ((max - min) / median). testpmd's `--burst` is our
//! worker's batch by default, its rings (`--rxd`/`--txd`, memif `rsize`) as ours.

use anyhow::{bail, Context};
use dataplane::buf::Pool;
use dataplane::port::memif::{self, MemifPort};
use dataplane::port::virtio_user::{self, VirtioUserPort};
use dataplane::port::{Port, PortStats};
use dataplane::worker::{TxPolicy, Worker, WorkerConfig};
use pktgen::profile::StreamSpec;
use pktgen::run::{run_loop, RunResult};
use pktgen::{Generator, Receiver, Stream};
use serde::Serialize;
use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// Options of `testbed compare dpdk`.
#[derive(Debug, Clone, clap::Args)]
#[command(
    after_help = "Exit status: 0 done; 1 the run failed, with the reason on one line on \
                  stderr: dpdk-testpmd or one of its drivers missing, a DUT that never came \
                  up, no packet through one of the DUTs, or counters that disagree (the \
                  lines measured so far are printed first); 2 bad command line."
)]
pub struct DpdkArgs {
    /// Seconds of traffic per DUT and workload.
    #[arg(long, default_value_t = 3.0, value_parser = pktgen::parse_seconds)]
    pub duration: f64,
    /// Frame size (incl. FCS).
    #[arg(long, default_value_t = 64)]
    pub size: u16,
    /// Offered rate (`max` or e.g. `2Mpps`).
    #[arg(long, default_value = "max")]
    pub rate: String,
    /// Flows (UDP source ports).
    #[arg(long, default_value_t = 256)]
    pub flows: u32,
    /// Rings to compare over (comma-separated): vhost-user, memif.
    #[arg(long, default_value = "vhost-user,memif")]
    pub rings: String,
    /// Workloads (comma-separated): io, l3, nat44.
    #[arg(long, default_value = "io,l3,nat44")]
    pub workloads: String,
    /// The core both DUTs poll on.
    #[arg(long, default_value_t = 0)]
    pub dut_core: usize,
    /// The generator's core.
    #[arg(long, default_value_t = 1)]
    pub gen_core: usize,
    /// One JSON object per line and (ring, workload).
    #[arg(long)]
    pub json: bool,
    /// Our memif slave copies frames through a region of its own
    /// (`memif:PATH,copy`) instead of posting engine buffers (zero-copy, default).
    #[arg(long)]
    pub memif_copy: bool,
    /// Trials per side and (ring, workload), alternating which side goes first; the
    /// figures reported are the medians.
    #[arg(long, default_value_t = 3, value_parser = clap::value_parser!(u32).range(1..=99))]
    pub trials: u32,
    /// Seconds of traffic before each trial's measurement (not counted in the rates).
    #[arg(long, default_value_t = 0.5, value_parser = parse_warmup)]
    pub warmup: f64,
    /// testpmd's burst (`--burst`): by default our worker's batch
    /// (`dataplane::batch::BATCH_SIZE`), so both DUTs move the same bursts.
    #[arg(long, default_value_t = dataplane::batch::BATCH_SIZE as u32,
          value_parser = clap::value_parser!(u32).range(1..=512))]
    pub burst: u32,
}

fn parse_warmup(s: &str) -> Result<f64, String> {
    match s.parse::<f64>() {
        Ok(v) if v.is_finite() && (0.0..=60.0).contains(&v) => Ok(v),
        _ => Err(format!("{s:?} is not a number of seconds in [0, 60]")),
    }
}

/// One (ring, workload) line.
#[derive(Debug, Clone, Serialize)]
pub struct DpdkLine {
    pub compare: &'static str,
    pub ring: &'static str,
    pub workload: &'static str,
    /// Received Mpps at the sink per DUT core (one core each).
    pub ours_mpps: f64,
    pub theirs_mpps: f64,
    /// ours_mpps / theirs_mpps.
    pub ratio: f64,
    /// What the generator emitted against our DUT (and against testpmd).
    pub offered_mpps: f64,
    pub offered_mpps_theirs: f64,
    pub plr_ours: f64,
    pub plr_theirs: f64,
    /// Busy CPU cycles per packet the DUT received.
    pub cycles_per_pkt_ours: f64,
    pub cycles_per_pkt_theirs: f64,
    /// Which side limited each figure: generator, DUT or ring.
    pub limited_ours: &'static str,
    pub limited_theirs: &'static str,
    /// The generator's, the DUT's and the sink's counters agree (frames the generator
    /// put on a ring = frames the DUT received there; frames the DUT sent = frames
    /// the sink received).
    pub counters_agree: bool,
    /// The counters compared, per side.
    pub counters: SideCounters<Counts>,
    pub ours: String,
    pub theirs: String,
    pub frame_size: u16,
    pub duration_s: f64,
    pub dut_core: usize,
    /// Trials per side; `ours_mpps`, `theirs_mpps` and the fields above are those of
    /// each side's median trial (`counters_agree`: every trial's counters agree).
    pub trials: u32,
    /// Every trial's rate, in the order run (trial k of both sides ran back to back,
    /// alternating which went first).
    pub ours_mpps_trials: Vec<f64>,
    pub theirs_mpps_trials: Vec<f64>,
    /// (max - min) / median of each side's trials.
    pub ours_mpps_spread: f64,
    pub theirs_mpps_spread: f64,
    /// Trial k's ours / theirs.
    pub ratio_trials: Vec<f64>,
    /// Seconds of traffic before each measured trial.
    pub warmup_s: f64,
    /// testpmd's burst; ours is its worker's batch.
    pub burst_theirs: u32,
    pub burst_ours: u32,
}

/// Both sides' figures.
#[derive(Debug, Clone, Serialize)]
pub struct SideCounters<T> {
    pub ours: T,
    pub theirs: T,
}

/// Frame counts along one side's path.
#[derive(Debug, Clone, Copy, Serialize)]
pub struct Counts {
    /// Frames the generator emitted (stamped), and those its ring refused, warm-up
    /// included (like the port counters).
    pub emitted: u64,
    pub refused: u64,
    /// Frames the generator put on the DUT's input ring.
    pub gen_tx: u64,
    /// Frames the DUT received there, sent on its output ring, dropped itself, and
    /// could not put on its output ring.
    pub dut_rx: u64,
    pub dut_tx: u64,
    pub dut_drops: u64,
    pub dut_tx_full: u64,
    /// Frames the sink received, and the stamped frames lost.
    pub sink_rx: u64,
    pub lost: u64,
}

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Ring {
    VhostUser,
    Memif,
}

impl Ring {
    fn name(self) -> &'static str {
        match self {
            Ring::VhostUser => "vhost-user",
            Ring::Memif => "memif",
        }
    }
}

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Workload {
    Io,
    L3,
    Nat44,
}

impl Workload {
    fn name(self) -> &'static str {
        match self {
            Workload::Io => "io",
            Workload::L3 => "l3",
            Workload::Nat44 => "nat44",
        }
    }
    fn testpmd_mode(self) -> &'static str {
        match self {
            Workload::Io => "io",
            _ => "macswap",
        }
    }
}

fn parse_list<T: Copy>(s: &str, all: &[(&str, T)], what: &str) -> anyhow::Result<Vec<T>> {
    let mut v = Vec::new();
    for x in s.split(',').map(str::trim).filter(|x| !x.is_empty()) {
        match all.iter().find(|(n, _)| *n == x) {
            Some((_, t)) => v.push(*t),
            None => bail!(
                "unknown {what} {x:?} (expected {})",
                all.iter().map(|(n, _)| *n).collect::<Vec<_>>().join(", ")
            ),
        }
    }
    anyhow::ensure!(!v.is_empty(), "no {what} given");
    Ok(v)
}

/// Pins the calling thread to `core`.
pub fn pin(core: usize) -> anyhow::Result<()> {
    // SAFETY: cpu_set_t is plain data; the macros only touch it.
    unsafe {
        let mut set: libc::cpu_set_t = std::mem::zeroed();
        libc::CPU_SET(core, &mut set);
        if libc::sched_setaffinity(0, std::mem::size_of::<libc::cpu_set_t>(), &set) != 0 {
            bail!(
                "cannot pin to core {core}: {}",
                std::io::Error::last_os_error()
            );
        }
    }
    Ok(())
}

use dataplane::runner::cycles;

const DUT_MAC0: &str = "02:00:00:00:d0:00";
const DUT_MAC1: &str = "02:00:00:00:d0:01";
const SINK_MAC: &str = "02:00:00:00:5c:00";
const GEN_MAC: &str = "02:00:00:00:9e:00";

fn stream(args: &DpdkArgs) -> StreamSpec {
    crate::compare::udp_stream(
        "compare-dpdk",
        crate::compare::UdpFlows {
            flows: args.flows,
            size: args.size,
            rate: &args.rate,
            burst: 32,
        },
        GEN_MAC,
        DUT_MAC0,
    )
}

fn router_toml(p0: &str, p1: &str) -> String {
    format!(
        r#"[engine]
workers = 1
pool_buffers = 16384

[[interface]]
name = "d0"
port = "{p0}"
mac = "{DUT_MAC0}"
ipv4 = ["192.0.2.1/24"]

[[interface]]
name = "d1"
port = "{p1}"
mac = "{DUT_MAC1}"
ipv4 = ["198.51.100.1/24"]

[[route]]
prefix = "0.0.0.0/0"
via = "198.51.100.2"

[[neighbor]]
ip = "198.51.100.2"
mac = "{SINK_MAC}"
"#
    )
}

/// The graph of our DUT for a workload.
fn graph(w: Workload, p0: &str, p1: &str) -> anyhow::Result<dataplane::stage::Pipeline> {
    use dataplane::stages::{arp::ArpInput, classify::Classify, ip4, nat, xconnect::Xconnect};
    let mut pl = dataplane::stage::Pipeline::new();
    if w == Workload::Io {
        pl.push(Box::new(Xconnect::new(vec![Some(1), None])));
        return Ok(pl);
    }
    let cfg =
        vnf_router::Config::from_toml(&router_toml(p0, p1)).map_err(|e| anyhow::anyhow!("{e}"))?;
    let parse = |m: &str| vnf_router::config::parse_mac(m).map_err(anyhow::Error::msg);
    let macs = [parse(DUT_MAC0)?, parse(DUT_MAC1)?];
    let router =
        vnf_router::Router::build(&cfg, &macs, None).map_err(|e| anyhow::anyhow!("{e}"))?;
    if w == Workload::L3 {
        return Ok(router.pipeline());
    }
    let natcfg = nat::NatConfig {
        inside_ports: vec![0],
        pool: vec!["198.51.100.1".into()],
        max_sessions: 1 << 16,
        max_subscribers: 1024,
        ..nat::NatConfig::default()
    };
    let nat44 = nat::Nat44::new(&natcfg).map_err(|e| anyhow::anyhow!("{e}"))?;
    pl.push(Box::new(Classify::new(router.macs.clone())));
    pl.push(Box::new(ArpInput::new(router.l3.clone())));
    pl.push(Box::new(nat44));
    pl.push(Box::new(ip4::Ip4Input::default()));
    pl.push(Box::new(ip4::Ip4Lookup::new(router.l3.clone())));
    pl.push(Box::new(ip4::Ip4Rewrite::new(router.l3.clone())));
    Ok(pl)
}

/// The generator's side of a ring.
enum GenPort {
    Virtio(Box<VirtioUserPort>),
    Memif(Box<MemifPort>),
}

impl GenPort {
    fn open(ring: Ring, path: &Path) -> anyhow::Result<GenPort> {
        Ok(match ring {
            Ring::VhostUser => GenPort::Virtio(Box::new(
                VirtioUserPort::open(path, &virtio_user::Config::default())
                    .with_context(|| format!("virtio-user {}", path.display()))?,
            )),
            Ring::Memif => GenPort::Memif(Box::new(
                MemifPort::open(
                    path,
                    &memif::Config {
                        role: memif::Role::Master,
                        ..memif::Config::default()
                    },
                )
                .with_context(|| format!("memif master {}", path.display()))?,
            )),
        })
    }
    fn up(&mut self) -> bool {
        match self {
            GenPort::Virtio(p) => {
                p.wait_up(Duration::from_millis(1));
                p.is_up()
            }
            GenPort::Memif(p) => {
                p.poll_control();
                p.is_up()
            }
        }
    }
    fn port(&mut self) -> &mut dyn Port {
        match self {
            GenPort::Virtio(p) => p,
            GenPort::Memif(p) => p,
        }
    }
    fn why(&self) -> String {
        match self {
            GenPort::Virtio(p) => p.last_error().unwrap_or("no backend").to_string(),
            GenPort::Memif(p) => p.last_error().unwrap_or("no slave").to_string(),
        }
    }
}

/// What one side's run gave.
struct Side {
    run: RunResult,
    /// What the warm-up before `run` emitted (the port counters include it).
    warm: Warm,
    /// The generator's ports' counters (transmit, sink).
    gen: [PortStats; 2],
    /// The DUT's receive count on its input port, transmit count on its output port.
    dut_rx: u64,
    dut_tx: u64,
    /// Frames the DUT dropped itself (graph drops, receive drops), and frames its
    /// output ring could not take.
    dut_drops: u64,
    dut_tx_full: u64,
    cycles_per_pkt: f64,
}

impl Side {
    fn limited(&self) -> &'static str {
        if self.run.rx.lost == 0 {
            "generator"
        } else if self.run.tx_refused > 0 || self.dut_drops > 0 {
            "DUT"
        } else if self.dut_tx_full > 0 {
            "ring"
        } else {
            "DUT"
        }
    }
    fn counts(&self) -> Counts {
        Counts {
            emitted: self.run.emitted + self.warm.emitted,
            refused: self.run.tx_refused + self.warm.refused,
            gen_tx: self.gen[0].tx_packets,
            dut_rx: self.dut_rx,
            dut_tx: self.dut_tx,
            dut_drops: self.dut_drops,
            dut_tx_full: self.dut_tx_full,
            sink_rx: self.gen[1].rx_packets,
            lost: self.run.rx.lost,
        }
    }
    fn agree(&self) -> bool {
        self.gen[0].tx_packets == self.dut_rx && self.dut_tx == self.gen[1].rx_packets
    }
}

/// Opens both generator ports and waits until they are up (the DUT must be running).
fn wait_gen_up(
    g: &mut [GenPort; 2],
    who: &str,
    mut alive: impl FnMut() -> bool,
) -> anyhow::Result<()> {
    let t = Instant::now();
    while !(g[0].up() & g[1].up()) {
        if t.elapsed() > Duration::from_secs(10) || !alive() {
            bail!(
                "{who} never came up on the rings: {} / {}",
                g[0].why(),
                g[1].why()
            );
        }
        std::thread::sleep(Duration::from_millis(2));
    }
    // let the DUT finish its side of the setup (rings enabled, regions mapped)
    let t = Instant::now();
    while t.elapsed() < Duration::from_millis(100) {
        g[0].up();
        g[1].up();
        std::thread::sleep(Duration::from_millis(2));
    }
    Ok(())
}

/// A warm-up of `args.warmup` seconds (rings, caches, the DUT's tables), then the
/// measured run. The generator's and the DUT's port counters include the warm-up;
/// so do the returned frames emitted and refused in it (the second value), which
/// the counters' check adds to the measured run's.
fn traffic(args: &DpdkArgs, g: &mut [GenPort; 2]) -> anyhow::Result<(RunResult, Warm)> {
    let pool = Pool::new(16384).context("pool")?;
    let mut cache = pool.cache();
    let [a, b] = g;
    let mut warm = Warm::default();
    if args.warmup > 0.0 {
        let mut gen = Generator::new(vec![Stream::new(0, &stream(args))?]);
        let mut rcv = Receiver::new();
        let w = run_loop(
            &mut gen,
            a.port(),
            b.port(),
            &mut rcv,
            &mut cache,
            Duration::from_secs_f64(args.warmup),
            Duration::from_millis(100),
            |_| {},
        );
        warm = Warm {
            emitted: w.emitted,
            refused: w.tx_refused,
        };
    }
    let mut gen = Generator::new(vec![Stream::new(0, &stream(args))?]);
    let mut rcv = Receiver::new();
    let run = run_loop(
        &mut gen,
        a.port(),
        b.port(),
        &mut rcv,
        &mut cache,
        Duration::from_secs_f64(args.duration),
        Duration::from_millis(100),
        |_| {},
    );
    Ok((run, warm))
}

/// Frames the generator emitted, and those its ring refused, in the warm-up.
#[derive(Debug, Clone, Copy, Default)]
struct Warm {
    emitted: u64,
    refused: u64,
}

fn dut_spec(ring: Ring, path: &Path, memif_copy: bool) -> String {
    match ring {
        Ring::VhostUser => format!("vhost-user:{},server", path.display()),
        Ring::Memif if memif_copy => format!("memif:{},copy", path.display()),
        Ring::Memif => format!("memif:{}", path.display()),
    }
}

/// Our DUT in a pinned thread of this process.
fn run_ours(args: &DpdkArgs, ring: Ring, w: Workload, dir: &Path) -> anyhow::Result<Side> {
    let paths = [
        dir.join(format!("o-{}-0.sock", ring.name())),
        dir.join(format!("o-{}-1.sock", ring.name())),
    ];
    let specs = [
        dut_spec(ring, &paths[0], args.memif_copy),
        dut_spec(ring, &paths[1], args.memif_copy),
    ];
    // memif: the generator (master) listens first; vhost-user: the DUT listens and the
    // generator's frontend retries until it does
    let mut g = [
        GenPort::open(ring, &paths[0])?,
        GenPort::open(ring, &paths[1])?,
    ];
    let pl = graph(w, &specs[0], &specs[1])?;
    let stop = Arc::new(AtomicBool::new(false));
    let st = stop.clone();
    let core = args.dut_core;
    let h = std::thread::spawn(move || -> anyhow::Result<(Vec<PortStats>, u64, u64, u64)> {
        pin(core)?;
        let pool = Pool::new(16384).context("pool")?;
        let ports = vec![
            dataplane::port::spec::open_str(&specs[0])?,
            dataplane::port::spec::open_str(&specs[1])?,
        ];
        let mut wk = Worker::new(
            ports,
            pl,
            pool.cache(),
            WorkerConfig {
                tx_policy: TxPolicy::Drop,
                ..WorkerConfig::default()
            },
        )
        .map_err(|e| anyhow::anyhow!("graph: {e}"))?;
        let t0 = Instant::now();
        let mut now = 0;
        let mut busy = 0u64;
        while !st.load(Ordering::Relaxed) {
            let c0 = cycles();
            let n = wk.poll(now);
            if n > 0 {
                busy += cycles().wrapping_sub(c0);
            }
            if wk.stats.loops & 63 == 0 {
                now = t0.elapsed().as_nanos() as u64;
            }
        }
        let drops: u64 = wk
            .graph
            .nodes()
            .map(|n| n.drops.iter().sum::<u64>() + n.undeclared)
            .sum();
        let stats = wk.ports.iter().map(|p| p.stats()).collect();
        Ok((stats, busy, drops, wk.stats.tx_unsent))
    });
    let up = wait_gen_up(&mut g, "our DUT", || !h.is_finished());
    let run = match up {
        Ok(()) => traffic(args, &mut g),
        Err(e) => Err(e),
    };
    stop.store(true, Ordering::Relaxed);
    let (st, busy, drops, unsent) = h
        .join()
        .map_err(|_| anyhow::anyhow!("our DUT thread panicked"))??;
    let (run, warm) = run?;
    let gen = [g[0].port().stats(), g[1].port().stats()];
    let rx = st[0].rx_packets.max(1);
    Ok(Side {
        run,
        warm,
        gen,
        dut_rx: st[0].rx_packets,
        dut_tx: st[1].tx_packets,
        dut_drops: drops + st[0].rx_dropped,
        dut_tx_full: unsent + st[1].tx_dropped,
        cycles_per_pkt: busy as f64 / rx as f64,
    })
}

/// dpdk-testpmd's forward statistics for one port, and its cycles per packet.
#[derive(Default, Debug)]
struct TestpmdStats {
    rx: [u64; 2],
    rx_dropped: [u64; 2],
    tx: [u64; 2],
    tx_dropped: [u64; 2],
    cycles_per_pkt: f64,
}

fn parse_testpmd(lines: &[String]) -> Option<TestpmdStats> {
    let mut s = TestpmdStats::default();
    let field = |l: &str, key: &str| -> Option<u64> {
        let i = l.find(key)?;
        l[i + key.len()..].split_whitespace().next()?.parse().ok()
    };
    let mut seen = [false; 2];
    for (port, seen) in seen.iter_mut().enumerate() {
        let head = format!("Forward statistics for port {port}");
        let from = lines.iter().rposition(|l| l.contains(&head))?;
        let rxl = lines[from..].iter().find(|l| l.contains("RX-packets:"))?;
        let txl = lines[from..].iter().find(|l| l.contains("TX-packets:"))?;
        s.rx[port] = field(rxl, "RX-packets:")?;
        s.rx_dropped[port] = field(rxl, "RX-dropped:").unwrap_or(0);
        s.tx[port] = field(txl, "TX-packets:")?;
        s.tx_dropped[port] = field(txl, "TX-dropped:").unwrap_or(0);
        *seen = true;
    }
    // "CPU cycles/packet=45.23 (busy cycles=... / total RX packets=...) at ... MHz Clock"
    s.cycles_per_pkt = lines
        .iter()
        .rev()
        .find_map(|l| {
            let i = l.find("CPU cycles/packet=")?;
            l[i + 18..]
                .split(|c: char| c.is_whitespace() || c == '(')
                .next()?
                .parse()
                .ok()
        })
        .unwrap_or(f64::NAN);
    Some(s)
}

struct Testpmd {
    child: Child,
    prefix: String,
    out: Arc<Mutex<Vec<String>>>,
}

impl Testpmd {
    fn text(&self) -> String {
        self.out.lock().map(|o| o.join("\n")).unwrap_or_default()
    }
}

impl Drop for Testpmd {
    fn drop(&mut self) {
        if !matches!(self.child.try_wait(), Ok(Some(_))) {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
        let _ = std::fs::remove_dir_all(Path::new("/var/run/dpdk").join(&self.prefix));
    }
}

fn testpmd_present() -> anyhow::Result<()> {
    crate::netns::sh(&["which", "dpdk-testpmd"])
        .context("dpdk-testpmd is required (apt-get install dpdk)")?;
    Ok(())
}

fn run_theirs(args: &DpdkArgs, ring: Ring, w: Workload, dir: &Path) -> anyhow::Result<Side> {
    let paths = [
        dir.join(format!("t-{}-0.sock", ring.name())),
        dir.join(format!("t-{}-1.sock", ring.name())),
    ];
    let vdev = |i: usize| match ring {
        Ring::VhostUser => format!("net_vhost{i},iface={},queues=1", paths[i].display()),
        Ring::Memif => format!(
            "net_memif{i},role=client,socket={},socket-abstract=no,id=0",
            paths[i].display()
        ),
    };
    let mut g = [
        GenPort::open(ring, &paths[0])?,
        GenPort::open(ring, &paths[1])?,
    ];
    let prefix = format!("tbdpdk{}", std::process::id());
    let lcores = format!("{},{}", args.dut_core, args.gen_core);
    let mut child = Command::new("stdbuf")
        .args([
            "-oL",
            "dpdk-testpmd",
            "-l",
            &lcores,
            "--main-lcore",
            &args.gen_core.to_string(),
            "--no-pci",
            "--no-huge",
            "-m",
            "128",
            "--file-prefix",
            &prefix,
            "--vdev",
            &vdev(0),
            "--vdev",
            &vdev(1),
            "--",
            &format!("--forward-mode={}", w.testpmd_mode()),
            "--nb-cores=1",
            "--record-core-cycles",
            "--total-num-mbufs=8192",
            "--rxd=1024",
            "--txd=1024",
            &format!("--burst={}", args.burst),
        ])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .context("spawn dpdk-testpmd")?;
    let out = Arc::new(Mutex::new(Vec::new()));
    for r in [
        Box::new(child.stdout.take().context("stdout")?) as Box<dyn std::io::Read + Send>,
        Box::new(child.stderr.take().context("stderr")?),
    ] {
        let o = out.clone();
        std::thread::spawn(move || {
            for l in BufReader::new(r).lines().map_while(Result::ok) {
                if let Ok(mut o) = o.lock() {
                    o.push(l);
                }
            }
        });
    }
    let mut stdin = child.stdin.take().context("stdin")?;
    let mut tp = Testpmd { child, prefix, out };
    // testpmd starts forwarding, then waits for a line on stdin
    let t = Instant::now();
    loop {
        g[0].up();
        g[1].up();
        let text = tp.text();
        if text.contains("Press enter to exit") {
            break;
        }
        if let Ok(Some(st)) = tp.child.try_wait() {
            let why = text
                .lines()
                .rev()
                .find(|l| {
                    l.contains("EAL: Error") || l.contains("Cause:") || l.contains("not found")
                })
                .unwrap_or("no reason printed")
                .trim()
                .to_string();
            bail!("dpdk-testpmd exited ({st}) before forwarding: {why}");
        }
        if t.elapsed() > Duration::from_secs(20) {
            bail!("dpdk-testpmd did not start forwarding within 20 s");
        }
        std::thread::sleep(Duration::from_millis(5));
    }
    wait_gen_up(&mut g, "dpdk-testpmd", || {
        !matches!(tp.child.try_wait(), Ok(Some(_)))
    })?;
    let (run, warm) = traffic(args, &mut g)?;
    let _ = writeln!(stdin);
    let _ = stdin.flush();
    let t = Instant::now();
    // testpmd stops its ports on the way out: keep answering on the rings
    while t.elapsed() < Duration::from_secs(10) {
        if let Ok(Some(_)) = tp.child.try_wait() {
            break;
        }
        g[0].up();
        g[1].up();
        std::thread::sleep(Duration::from_millis(2));
    }
    std::thread::sleep(Duration::from_millis(100));
    let lines = tp.out.lock().map(|o| o.clone()).unwrap_or_default();
    let s = parse_testpmd(&lines).with_context(|| {
        format!(
            "no forward statistics from dpdk-testpmd (last line: {})",
            lines.last().map(String::as_str).unwrap_or("none")
        )
    })?;
    let gen = [g[0].port().stats(), g[1].port().stats()];
    Ok(Side {
        run,
        warm,
        gen,
        dut_rx: s.rx[0],
        dut_tx: s.tx[1],
        dut_drops: s.rx_dropped[0],
        dut_tx_full: s.tx_dropped[1],
        cycles_per_pkt: s.cycles_per_pkt,
    })
}

/// Index of the median of `v` (the lower middle of an even count).
fn median_index(v: &[f64]) -> usize {
    let mut idx: Vec<usize> = (0..v.len()).collect();
    idx.sort_by(|&a, &b| v[a].total_cmp(&v[b]));
    idx[(v.len() - 1) / 2]
}

/// (max - min) / median.
fn spread(v: &[f64]) -> f64 {
    let m = v[median_index(v)];
    let (lo, hi) = v
        .iter()
        .fold((f64::INFINITY, f64::NEG_INFINITY), |(l, h), &x| {
            (l.min(x), h.max(x))
        });
    if m > 0.0 {
        (hi - lo) / m
    } else {
        0.0
    }
}

/// The line of several trials per side: each side's median trial, with every
/// trial's rate and the spread.
fn line_of(args: &DpdkArgs, ring: Ring, w: Workload, os: &[Side], ts: &[Side]) -> DpdkLine {
    let om: Vec<f64> = os.iter().map(|s| s.run.rx_pps / 1e6).collect();
    let tm: Vec<f64> = ts.iter().map(|s| s.run.rx_pps / 1e6).collect();
    let mut l = line(
        args,
        ring,
        w,
        &os[median_index(&om)],
        &ts[median_index(&tm)],
    );
    l.counters_agree = os.iter().chain(ts).all(Side::agree);
    l.trials = om.len() as u32;
    l.ours_mpps_spread = spread(&om);
    l.theirs_mpps_spread = spread(&tm);
    l.ratio_trials = om
        .iter()
        .zip(&tm)
        .map(|(o, t)| if *t > 0.0 { o / t } else { 0.0 })
        .collect();
    l.ours_mpps_trials = om;
    l.theirs_mpps_trials = tm;
    l
}

fn line(args: &DpdkArgs, ring: Ring, w: Workload, o: &Side, t: &Side) -> DpdkLine {
    let om = o.run.rx_pps / 1e6;
    let tm = t.run.rx_pps / 1e6;
    let ours = match w {
        Workload::Io => "dataplane port I/O (xconnect)",
        Workload::L3 => "vnf-router graph",
        Workload::Nat44 => "vnf-router + nat44",
    };
    DpdkLine {
        compare: "dpdk",
        ring: ring.name(),
        workload: w.name(),
        ours_mpps: om,
        theirs_mpps: tm,
        ratio: if tm > 0.0 { om / tm } else { 0.0 },
        offered_mpps: o.run.tx_pps / 1e6,
        offered_mpps_theirs: t.run.tx_pps / 1e6,
        plr_ours: o.run.rx.plr,
        plr_theirs: t.run.rx.plr,
        cycles_per_pkt_ours: o.cycles_per_pkt,
        cycles_per_pkt_theirs: t.cycles_per_pkt,
        limited_ours: o.limited(),
        limited_theirs: t.limited(),
        counters_agree: o.agree() && t.agree(),
        counters: SideCounters {
            ours: o.counts(),
            theirs: t.counts(),
        },
        ours: match ring {
            Ring::Memif if args.memif_copy => format!("{ours} over memif (copying slave)"),
            Ring::Memif => format!("{ours} over memif (zero-copy slave)"),
            Ring::VhostUser => format!("{ours} over {}", ring.name()),
        },
        theirs: format!("dpdk-testpmd {} over {}", w.testpmd_mode(), ring.name()),
        frame_size: args.size,
        duration_s: args.duration,
        dut_core: args.dut_core,
        trials: 1,
        ours_mpps_trials: vec![om],
        theirs_mpps_trials: vec![tm],
        ours_mpps_spread: 0.0,
        theirs_mpps_spread: 0.0,
        ratio_trials: vec![if tm > 0.0 { om / tm } else { 0.0 }],
        warmup_s: args.warmup,
        burst_theirs: args.burst,
        burst_ours: dataplane::batch::BATCH_SIZE as u32,
    }
}

/// `testbed compare dpdk`.
pub fn main(args: DpdkArgs) -> anyhow::Result<()> {
    let rings = parse_list(
        &args.rings,
        &[("vhost-user", Ring::VhostUser), ("memif", Ring::Memif)],
        "ring",
    )?;
    let wls = parse_list(
        &args.workloads,
        &[
            ("io", Workload::Io),
            ("l3", Workload::L3),
            ("nat44", Workload::Nat44),
        ],
        "workload",
    )?;
    testpmd_present()?;
    let header =
        pktgen::meta::Header::start(crate::compare::SCHEMA, crate::compare::SCHEMA_VERSION);
    let dir = std::env::temp_dir().join(format!("tb-dpdk-{}", std::process::id()));
    std::fs::create_dir_all(&dir)?;
    let _clean = Cleanup(dir.clone());
    pin(args.gen_core)?;
    let mut failures = Vec::new();
    for &ring in &rings {
        for &w in &wls {
            // Alternate which side goes first, so a drift of the machine's load
            // (other work on the generator's core) does not favour one side.
            let (mut os, mut ts) = (Vec::new(), Vec::new());
            for k in 0..args.trials {
                let ours = |os: &mut Vec<Side>| -> anyhow::Result<()> {
                    os.push(run_ours(&args, ring, w, &dir).with_context(|| {
                        format!("{} {} ours (trial {})", ring.name(), w.name(), k + 1)
                    })?);
                    Ok(())
                };
                let theirs = |ts: &mut Vec<Side>| -> anyhow::Result<()> {
                    ts.push(run_theirs(&args, ring, w, &dir).with_context(|| {
                        format!(
                            "{} {} dpdk-testpmd (trial {})",
                            ring.name(),
                            w.name(),
                            k + 1
                        )
                    })?);
                    Ok(())
                };
                if k % 2 == 0 {
                    ours(&mut os)?;
                    theirs(&mut ts)?;
                } else {
                    theirs(&mut ts)?;
                    ours(&mut os)?;
                }
            }
            let l = line_of(&args, ring, w, &os, &ts);
            let (o, t) = (
                &os[median_index(&l.ours_mpps_trials)],
                &ts[median_index(&l.theirs_mpps_trials)],
            );
            if args.json {
                println!("{}", header.json(&l)?);
            } else {
                println!(
                    "{:<10} {:<5}  ours {:>7.3} Mpps ±{:.0}% (PLR {:.4}, {:>6.1} cyc/pkt, {:<9})  testpmd {:>7.3} Mpps ±{:.0}% (PLR {:.4}, {:>6.1} cyc/pkt, {:<9})  ratio {:.2} (median of {} trials)  offered {:.3}/{:.3} Mpps{}",
                    l.ring, l.workload, l.ours_mpps, 50.0 * l.ours_mpps_spread, l.plr_ours, l.cycles_per_pkt_ours, l.limited_ours,
                    l.theirs_mpps, 50.0 * l.theirs_mpps_spread, l.plr_theirs, l.cycles_per_pkt_theirs, l.limited_theirs, l.ratio,
                    l.trials, l.offered_mpps, l.offered_mpps_theirs,
                    if l.counters_agree { "" } else { "  COUNTERS DISAGREE" }
                );
            }
            let _ = std::io::stdout().flush();
            if l.ours_mpps <= 0.0 || l.theirs_mpps <= 0.0 {
                failures.push(format!(
                    "{} {}: no packet through a DUT",
                    l.ring, l.workload
                ));
            }
            if !l.counters_agree {
                failures.push(format!(
                    "{} {}: counters disagree (ours: generator {} / DUT rx {}, DUT tx {} / sink {}; testpmd: generator {} / rx {}, tx {} / sink {})",
                    l.ring, l.workload,
                    o.gen[0].tx_packets, o.dut_rx, o.dut_tx, o.gen[1].rx_packets,
                    t.gen[0].tx_packets, t.dut_rx, t.dut_tx, t.gen[1].rx_packets
                ));
            }
        }
    }
    if !failures.is_empty() {
        bail!("compare dpdk failed: {}", failures.join("; "));
    }
    Ok(())
}

struct Cleanup(PathBuf);

impl Drop for Cleanup {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn testpmd_forward_statistics_parse() {
        let text = "\
  ---------------------- Forward statistics for port 0  ----------------------
  RX-packets: 1000           RX-dropped: 3             RX-total: 1003
  TX-packets: 0              TX-dropped: 0             TX-total: 0
  ----------------------------------------------------------------------------

  ---------------------- Forward statistics for port 1  ----------------------
  RX-packets: 0              RX-dropped: 0             RX-total: 0
  TX-packets: 990            TX-dropped: 10            TX-total: 1000
  ----------------------------------------------------------------------------
  CPU cycles/packet=52.75 (busy cycles=52750 / total RX packets=1000) at 2400 MHz Clock";
        let lines: Vec<String> = text.lines().map(String::from).collect();
        let s = parse_testpmd(&lines).unwrap();
        assert_eq!(s.rx, [1000, 0]);
        assert_eq!(s.rx_dropped, [3, 0]);
        assert_eq!(s.tx, [0, 990]);
        assert_eq!(s.tx_dropped, [0, 10]);
        assert!((s.cycles_per_pkt - 52.75).abs() < 1e-9);
        assert!(parse_testpmd(&lines[..4]).is_none());
    }

    #[test]
    fn medians_and_spreads_of_trials() {
        assert_eq!(median_index(&[3.0, 1.0, 2.0]), 2);
        assert_eq!(median_index(&[4.0, 1.0, 3.0, 2.0]), 3);
        assert_eq!(median_index(&[5.0]), 0);
        assert!((spread(&[1.0, 2.0, 3.0]) - 1.0).abs() < 1e-12);
        assert_eq!(spread(&[2.0, 2.0]), 0.0);
        assert_eq!(spread(&[0.0, 0.0, 0.0]), 0.0);
        assert!(parse_warmup("0.5").is_ok() && parse_warmup("-1").is_err());
        assert!(parse_warmup("nan").is_err());
    }

    #[test]
    fn lists_parse_and_refuse_unknown_names() {
        let all = [("io", 1), ("l3", 2)];
        assert_eq!(parse_list("io, l3", &all, "workload").unwrap(), vec![1, 2]);
        assert!(parse_list("io,ipsec", &all, "workload").is_err());
        assert!(parse_list("", &all, "workload").is_err());
    }
}
