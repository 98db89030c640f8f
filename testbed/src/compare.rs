//! Side-by-side runs on one veth topology with one generator, in one command:
//!
//! ```text
//!   netns T (generator + sink, this process)      netns D (device under test)
//!   g0 ───────────── veth ───────────────────────── d0   192.0.2.1/24
//!   s0 ───────────── veth ───────────────────────── d1   198.51.100.1/24
//! ```
//!
//! The generator sends UDP flows to 198.18.0.0/15 (RFC 2544 §12 test range) from g0
//! to d0's MAC; the DUT routes them out of d1 to the sink's MAC (static neighbour
//! 198.51.100.2); the sink counts them on s0. Each DUT gets the same offered load:
//!
//! * `forward`: ours = the `router` VNF process on `afxdp:d0`/`afxdp:d1` (AF_PACKET
//!   when AF_XDP is unavailable); theirs = Linux IPv4 forwarding (`ip_forward=1`).
//! * `nat`: ours = the router's stages plus the `nat44` stage (NAPT to 198.51.100.1),
//!   polled by a thread of this process in D; theirs = Linux forwarding plus
//!   nftables masquerade on d1.
//! * `io`: ours = raw port I/O (receive on d0, transmit on d1, no processing) in a
//!   pinned loop; theirs = `dpdk-testpmd --forward-mode=io` on `net_af_packet`/
//!   `net_af_xdp` vdevs over the same veths.
//!
//! Per-core figures: our DUTs busy-poll one core, so ours_mpps_per_core = received
//! Mpps. Linux forwards in softirq context, much of it on the generator's CPU (veth
//! delivers in the sender's context), so its cores are the system-wide softirq time
//! (`/proc/stat`) plus the generator's extra system time compared with the run
//! against our DUT, per second of wall time, floored at 0.05 core. testpmd uses one
//! forwarding core.
//!
//! Cycles per packet (`cycles_per_pkt_ours`/`_theirs`): ours = the worker's busy
//! cycles — the time-stamp counter over polls that moved a packet (the router's
//! `dp_worker_busy_cycles_total` metric, or the in-process loop's own count) — per
//! packet received; Linux = the CPU time above (softirq plus the generator's extra
//! system time) in cycles per packet the sink received. Both count only the work of
//! forwarding, not a poll loop's idle spinning, so a generator-limited run (both
//! DUTs keep up) still says which DUT spends less per packet. testpmd's side of
//! `io` has no such figure here (`null`); `compare dpdk` reports testpmd's own.

use crate::netns::{in_netns, Lab};
use anyhow::{bail, Context};
use dataplane::buf::Pool;
use dataplane::port::spec;
use dataplane::worker::{TxPolicy, Worker, WorkerConfig};
use pktgen::profile::{FieldSpec, Mode, Scalar, SizeSpec, StreamSpec};
use pktgen::run::{run_loop, RunResult};
use pktgen::{Generator, Receiver, Stream};
use serde::Serialize;
use std::path::PathBuf;
use std::time::Duration;

/// Options of `testbed compare ...`.
#[derive(Debug, Clone, clap::Args)]
#[command(
    after_help = "Exit status: 0 done; 1 the run failed, with the reason on one line on \
                  stderr: not root, a tool or binary missing (the router, dpdk-testpmd, nft), \
                  a DUT that never became ready, or no packet through one of the two DUTs \
                  (the report is printed first); 2 bad command line."
)]
pub struct CompareArgs {
    /// Seconds of traffic per DUT.
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
    /// Port backend for the generator, the sink and our DUT: afxdp or afpacket.
    #[arg(long, default_value = "afxdp")]
    pub io: String,
    /// The router VNF binary (default: `router` next to this executable, or $ROUTER_BIN).
    #[arg(long)]
    pub router_bin: Option<PathBuf>,
    /// Print one JSON object.
    #[arg(long)]
    pub json: bool,
}

/// What `compare` prints.
#[derive(Debug, Clone, Serialize)]
pub struct CompareReport {
    pub compare: &'static str,
    pub ours: String,
    pub theirs: String,
    pub frame_size: u16,
    pub duration_s: f64,
    pub io: String,
    pub offered_mpps_ours: f64,
    pub offered_mpps_theirs: f64,
    pub received_mpps_ours: f64,
    pub received_mpps_theirs: f64,
    pub plr_ours: f64,
    pub plr_theirs: f64,
    pub ours_cores: f64,
    pub theirs_cores: f64,
    /// Received Mpps per DUT core.
    pub ours_mpps: f64,
    pub theirs_mpps: f64,
    /// ours_mpps / theirs_mpps.
    pub ratio: f64,
    /// CPU cycles per forwarded packet at the same offered load: ours = the worker's
    /// busy cycles (polls that moved a packet) / packets it received; Linux = its
    /// softirq time plus the generator's extra system time (see the module docs), in
    /// cycles, / packets the sink received. Comparable even when the generator, not
    /// a DUT, limited the Mpps. `null` when a side could not be measured.
    pub cycles_per_pkt_ours: Option<f64>,
    pub cycles_per_pkt_theirs: Option<f64>,
    /// cycles_per_pkt_theirs / cycles_per_pkt_ours (above 1: ours spends less).
    pub cycles_ratio: Option<f64>,
    /// The machine for people; in the JSON, `machine` is the report header's object
    /// (host, CPU model, cores, kernel).
    pub machine: String,
}

fn router_bin(args: &CompareArgs) -> anyhow::Result<PathBuf> {
    if let Some(p) = &args.router_bin {
        if !p.is_file() {
            bail!("router binary {} not found", p.display());
        }
        return Ok(p.clone());
    }
    if let Ok(p) = std::env::var("ROUTER_BIN") {
        return Ok(p.into());
    }
    let exe = std::env::current_exe()?;
    for dir in exe.ancestors().skip(1).take(2) {
        let c = dir.join("router");
        if c.is_file() {
            return Ok(c);
        }
    }
    bail!(
        "router binary not found next to {} (build it: cargo build -p vnf-router --bin router, or pass --router-bin)",
        exe.display()
    )
}

/// The two-namespace topology.
struct Topo {
    lab: Lab,
    t: String,
    d: String,
    mac_g0: String,
    mac_s0: String,
    mac_d0: String,
    mac_d1: String,
}

fn topo(tag: &str) -> anyhow::Result<Topo> {
    let lab = Lab::new(tag)?;
    let t = lab.netns("t")?;
    let d = lab.netns("d")?;
    lab.veth(&t, "g0", &d, "d0")?;
    lab.veth(&t, "s0", &d, "d1")?;
    // generator/sink interfaces must not answer or route anything themselves
    for (ns, dev) in [(&t, "g0"), (&t, "s0")] {
        let _ = lab.exec(
            ns,
            &[
                "sysctl",
                "-qw",
                &format!("net.ipv6.conf.{dev}.disable_ipv6=1"),
            ],
        );
    }
    let mac_g0 = lab.mac(&t, "g0")?;
    let mac_s0 = lab.mac(&t, "s0")?;
    let mac_d0 = lab.mac(&d, "d0")?;
    let mac_d1 = lab.mac(&d, "d1")?;
    Ok(Topo {
        lab,
        t,
        d,
        mac_g0,
        mac_s0,
        mac_d0,
        mac_d1,
    })
}

fn stream(args: &CompareArgs, src_mac: &str, dst_mac: &str) -> StreamSpec {
    udp_stream(
        "compare",
        UdpFlows {
            flows: args.flows,
            size: args.size,
            rate: &args.rate,
            burst: 256,
        },
        src_mac,
        dst_mac,
    )
}

/// What the side-by-side runs offer: `flows` UDP flows (source ports from 1024),
/// frames of `size` bytes at `rate`, in bursts of `burst`.
pub(crate) struct UdpFlows<'a> {
    pub flows: u32,
    pub size: u16,
    pub rate: &'a str,
    pub burst: u32,
}

/// The UDP stream of every compare run: 192.0.2.2 → 198.18.0.1:5001, source port
/// varied over the flows.
pub(crate) fn udp_stream(name: &str, f: UdpFlows, src_mac: &str, dst_mac: &str) -> StreamSpec {
    let mut s = StreamSpec::udp(name);
    s.src_mac = Some(src_mac.into());
    s.dst_mac = Some(dst_mac.into());
    s.ip.src = "192.0.2.2".into();
    s.ip.dst = "198.18.0.1".into();
    s.l4.sport = FieldSpec::Vary {
        from: Scalar::Num(1024),
        to: Scalar::Num(1024 + f.flows.clamp(1, 60000) as u64 - 1),
        step: None,
        mode: Mode::Inc,
    };
    s.l4.dport = 5001u64.into();
    s.size = SizeSpec::Fixed(f.size as u64);
    s.rate = Scalar::Str(f.rate.to_string());
    s.burst = f.burst;
    s
}

/// Sends from g0 and counts on s0 inside namespace T.
fn traffic(topo: &Topo, args: &CompareArgs, s: &StreamSpec) -> anyhow::Result<RunResult> {
    let pool = Pool::new(32768).context("pool")?;
    let io = args.io.as_str();
    let (mut tx, mut rx) = in_netns(&topo.t, || -> anyhow::Result<_> {
        let tx = spec::open_str(&format!("{io}:g0"))?;
        let rx = spec::open_str(&format!("{io}:s0"))?;
        Ok((tx, rx))
    })??;
    let mut g = Generator::new(vec![Stream::new(0, s)?]);
    let mut rcv = Receiver::new();
    let mut cache = pool.cache();
    // warm-up: let the DUT settle (ARP/ND are static, but XDP attach takes a moment)
    std::thread::sleep(Duration::from_millis(300));
    let r = run_loop(
        &mut g,
        tx.as_mut(),
        rx.as_mut(),
        &mut rcv,
        &mut cache,
        Duration::from_secs_f64(args.duration),
        Duration::from_millis(300),
        |_| {},
    );
    Ok(r)
}

/// Softirq jiffies summed over CPUs (/proc/stat "cpu" line, 7th field).
fn softirq_jiffies() -> u64 {
    std::fs::read_to_string("/proc/stat")
        .ok()
        .and_then(|s| {
            s.lines().next().map(|l| {
                l.split_whitespace()
                    .nth(7)
                    .and_then(|x| x.parse().ok())
                    .unwrap_or(0)
            })
        })
        .unwrap_or(0)
}

/// System CPU seconds of the calling thread (the generator and sink thread).
fn self_sys_secs() -> f64 {
    // SAFETY: getrusage fills a valid rusage for RUSAGE_THREAD.
    let mut ru: libc::rusage = unsafe { std::mem::zeroed() };
    // SAFETY: as above.
    unsafe { libc::getrusage(libc::RUSAGE_THREAD, &mut ru) };
    ru.ru_stime.tv_sec as f64 + ru.ru_stime.tv_usec as f64 / 1e6
}

fn clk_tck() -> f64 {
    // SAFETY: sysconf has no preconditions.
    let t = unsafe { libc::sysconf(libc::_SC_CLK_TCK) };
    if t > 0 {
        t as f64
    } else {
        100.0
    }
}

fn machine() -> String {
    pktgen::meta::Machine::this().summary()
}

fn router_config(io: &str, topo: &Topo) -> String {
    format!(
        r#"[engine]
workers = 1
pool_buffers = 32768

[[interface]]
name = "d0"
port = "{io}:d0"
mac = "{}"
ipv4 = ["192.0.2.1/24"]

[[interface]]
name = "d1"
port = "{io}:d1"
mac = "{}"
ipv4 = ["198.51.100.1/24"]

[[route]]
prefix = "0.0.0.0/0"
via = "198.51.100.2"

[[neighbor]]
ip = "198.51.100.2"
mac = "{}"
"#,
        topo.mac_d0, topo.mac_d1, topo.mac_s0
    )
}

/// A counter's value (summed over its label sets) in Prometheus text.
fn prom_sum(text: &str, name: &str) -> Option<u64> {
    let mut found = false;
    let mut sum = 0u64;
    for l in text.lines().filter(|l| !l.starts_with('#')) {
        let Some(rest) = l.strip_prefix(name) else {
            continue;
        };
        if !(rest.starts_with('{') || rest.starts_with(' ')) {
            continue;
        }
        let v = rest.rsplit(' ').next()?.parse::<f64>().ok()?;
        sum += v as u64;
        found = true;
    }
    found.then_some(sum)
}

/// The router's busy cycles per received packet from its metrics file (rewritten
/// every second): read once the file shows every packet of the run.
fn router_cycles_per_pkt(metrics: &std::path::Path, received: u64) -> Option<f64> {
    let t = std::time::Instant::now();
    while t.elapsed() < Duration::from_secs(4) {
        std::thread::sleep(Duration::from_millis(250));
        let text = std::fs::read_to_string(metrics).unwrap_or_default();
        let (Some(busy), Some(rx)) = (
            prom_sum(&text, "dp_worker_busy_cycles_total"),
            prom_sum(&text, "dp_worker_rx_packets_total"),
        ) else {
            continue;
        };
        if rx >= received && rx > 0 {
            return Some(busy as f64 / rx as f64);
        }
    }
    None
}

fn run_ours_router(topo: &Topo, args: &CompareArgs) -> anyhow::Result<(Dut, f64)> {
    let bin = router_bin(args)?;
    let dir = std::env::temp_dir().join(format!("{}-router", topo.lab.prefix()));
    std::fs::create_dir_all(&dir)?;
    let cfg = dir.join("router.toml");
    std::fs::write(&cfg, router_config(&args.io, topo))?;
    let log = dir.join("router.log");
    let metrics = dir.join("router.prom");
    let bin_s = bin.display().to_string();
    let cfg_s = cfg.display().to_string();
    let metrics_s = metrics.display().to_string();
    topo.lab.spawn(
        &topo.d,
        &[&bin_s, "--config", &cfg_s, "--metrics", &metrics_s],
        Some(&log),
    )?;
    // wait until the router says it is ready
    let mut ready = false;
    for _ in 0..100 {
        std::thread::sleep(Duration::from_millis(50));
        let l = std::fs::read_to_string(&log).unwrap_or_default();
        if l.contains("router ready") {
            ready = true;
            break;
        }
        if l.contains("Error") || l.contains("error") {
            bail!("router failed to start: {l}");
        }
    }
    if !ready {
        bail!(
            "router did not start: {}",
            std::fs::read_to_string(&log).unwrap_or_default()
        );
    }
    let s = stream(args, &topo.mac_g0, &topo.mac_d0);
    let s0 = self_sys_secs();
    let r = traffic(topo, args, &s)?;
    let sys = (self_sys_secs() - s0) / r.seconds.max(1e-3);
    let cycles_per_pkt = router_cycles_per_pkt(&metrics, r.rx.rx);
    Ok((
        Dut {
            run: r,
            cores: 1.0,
            cycles_per_pkt,
        },
        sys,
    ))
}

/// Linux forwarding; `gen_sys` is the generator's system CPU per second measured in
/// the run with our DUT (the generator's own syscall cost), so that the extra system
/// time here — veth delivery and forwarding done in the generator's context — counts
/// as the kernel DUT's.
fn run_linux_forward(
    topo: &Topo,
    args: &CompareArgs,
    nat: bool,
    gen_sys: f64,
) -> anyhow::Result<Dut> {
    let l = &topo.lab;
    let d = &topo.d;
    l.exec(d, &["ip", "addr", "add", "192.0.2.1/24", "dev", "d0"])?;
    l.exec(d, &["ip", "addr", "add", "198.51.100.1/24", "dev", "d1"])?;
    l.exec(d, &["sysctl", "-qw", "net.ipv4.ip_forward=1"])?;
    for k in ["all", "default", "d0", "d1"] {
        l.exec(
            d,
            &["sysctl", "-qw", &format!("net.ipv4.conf.{k}.rp_filter=0")],
        )?;
    }
    l.exec(d, &["ip", "route", "add", "default", "via", "198.51.100.2"])?;
    l.exec(
        d,
        &[
            "ip",
            "neigh",
            "replace",
            "198.51.100.2",
            "lladdr",
            &topo.mac_s0,
            "dev",
            "d1",
            "nud",
            "permanent",
        ],
    )?;
    l.exec(
        d,
        &[
            "ip",
            "neigh",
            "replace",
            "192.0.2.2",
            "lladdr",
            &topo.mac_g0,
            "dev",
            "d0",
            "nud",
            "permanent",
        ],
    )?;
    if nat {
        l.exec(d, &["nft", "add", "table", "ip", "nat"])?;
        l.exec(
            d,
            &[
                "nft",
                "add",
                "chain",
                "ip",
                "nat",
                "post",
                "{ type nat hook postrouting priority 100 ; }",
            ],
        )?;
        l.exec(
            d,
            &[
                "nft",
                "add",
                "rule",
                "ip",
                "nat",
                "post",
                "oifname",
                "d1",
                "masquerade",
            ],
        )?;
    }
    let s = stream(args, &topo.mac_g0, &topo.mac_d0);
    let j0 = softirq_jiffies();
    let s0 = self_sys_secs();
    let r = traffic(topo, args, &s)?;
    let sys = (self_sys_secs() - s0) / r.seconds.max(1e-3);
    let j1 = softirq_jiffies();
    let softirq = (j1.saturating_sub(j0)) as f64 / clk_tck() / r.seconds.max(1e-3);
    let busy = softirq + (sys - gen_sys).max(0.0);
    let cores = busy.max(0.05);
    // the kernel's CPU seconds per second of traffic, in cycles, per forwarded packet
    let cycles_per_pkt =
        (r.rx.rx > 0).then(|| busy * r.seconds * dataplane::runner::cycles_hz() / r.rx.rx as f64);
    Ok(Dut {
        run: r,
        cores,
        cycles_per_pkt,
    })
}

/// One DUT's run: the traffic, the cores it used, its cycles per packet.
struct Dut {
    run: RunResult,
    cores: f64,
    cycles_per_pkt: Option<f64>,
}

fn report(
    which: &'static str,
    ours: &str,
    theirs: &str,
    args: &CompareArgs,
    od: &Dut,
    td: &Dut,
) -> CompareReport {
    let (o, t) = (&od.run, &td.run);
    let (ours_cores, theirs_cores) = (od.cores, td.cores);
    let om = o.rx_pps / 1e6 / ours_cores;
    let tm = t.rx_pps / 1e6 / theirs_cores;
    let (co, ct) = (od.cycles_per_pkt, td.cycles_per_pkt);
    CompareReport {
        compare: which,
        ours: ours.into(),
        theirs: theirs.into(),
        frame_size: args.size,
        duration_s: args.duration,
        io: args.io.clone(),
        offered_mpps_ours: o.tx_pps / 1e6,
        offered_mpps_theirs: t.tx_pps / 1e6,
        received_mpps_ours: o.rx_pps / 1e6,
        received_mpps_theirs: t.rx_pps / 1e6,
        plr_ours: o.rx.plr,
        plr_theirs: t.rx.plr,
        ours_cores,
        theirs_cores,
        ours_mpps: om,
        theirs_mpps: tm,
        ratio: if tm > 0.0 { om / tm } else { 0.0 },
        cycles_per_pkt_ours: co,
        cycles_per_pkt_theirs: ct,
        cycles_ratio: match (co, ct) {
            (Some(a), Some(b)) if a > 0.0 => Some(b / a),
            _ => None,
        },
        machine: machine(),
    }
}

/// Schema name of the compare report.
pub const SCHEMA: &str = "testbed.compare";
/// Its version: 2 since `machine` became the header's object (it was a string).
pub const SCHEMA_VERSION: u32 = 2;

/// The comparison failed when either DUT passed no packet at all.
fn verdict(r: &CompareReport) -> anyhow::Result<()> {
    for (who, rx) in [
        (&r.ours, r.received_mpps_ours),
        (&r.theirs, r.received_mpps_theirs),
    ] {
        anyhow::ensure!(rx > 0.0, "compare failed: no packet went through {who}");
    }
    Ok(())
}

fn print(h: &pktgen::meta::Header, r: &CompareReport, json: bool) -> anyhow::Result<()> {
    if json {
        println!("{}", h.json(r)?);
    } else {
        println!(
            "compare {} ({} B, {:.1} s, {} ports)",
            r.compare, r.frame_size, r.duration_s, r.io
        );
        println!(
            "  ours   {:<28} offered {:>7.3} Mpps  received {:>7.3} Mpps  PLR {:.4}  {:.2} core(s)  {:.3} Mpps/core",
            r.ours, r.offered_mpps_ours, r.received_mpps_ours, r.plr_ours, r.ours_cores, r.ours_mpps
        );
        println!(
            "  theirs {:<28} offered {:>7.3} Mpps  received {:>7.3} Mpps  PLR {:.4}  {:.2} core(s)  {:.3} Mpps/core",
            r.theirs, r.offered_mpps_theirs, r.received_mpps_theirs, r.plr_theirs, r.theirs_cores, r.theirs_mpps
        );
        println!("  ratio (ours/theirs per DUT core): {:.2}", r.ratio);
        let c = |v: Option<f64>| v.map(|x| format!("{x:.0}")).unwrap_or_else(|| "-".into());
        println!(
            "  CPU cycles per forwarded packet: ours {}  theirs {}  (theirs/ours {})",
            c(r.cycles_per_pkt_ours),
            c(r.cycles_per_pkt_theirs),
            r.cycles_ratio
                .map(|x| format!("{x:.2}"))
                .unwrap_or_else(|| "-".into())
        );
        println!("  machine: {}", r.machine);
    }
    Ok(())
}

/// `testbed compare forward`.
pub fn forward(args: CompareArgs) -> anyhow::Result<()> {
    let header = pktgen::meta::Header::start(SCHEMA, SCHEMA_VERSION);
    let (o, gen_sys) = {
        let t = topo("fo")?;
        run_ours_router(&t, &args)?
    };
    let t = {
        let tp = topo("fl")?;
        run_linux_forward(&tp, &args, false, gen_sys)?
    };
    let r = report(
        "forward",
        &format!("vnf-router ({})", args.io),
        "linux ip_forward",
        &args,
        &o,
        &t,
    );
    print(&header, &r, args.json)?;
    verdict(&r)
}

/// Our NAT44 router: the router's stages with the `nat44` stage (NAPT, RFC 4787
/// endpoint-independent mapping) before routing, polled by one thread of this process
/// inside namespace D on the same ports the router VNF would use.
fn run_ours_nat(topo: &Topo, args: &CompareArgs) -> anyhow::Result<(Dut, f64)> {
    use dataplane::stages::{arp::ArpInput, classify::Classify, ip4, nat};
    let cfg = vnf_router::Config::from_toml(&router_config(&args.io, topo))
        .map_err(|e| anyhow::anyhow!("{e}"))?;
    let parse = |m: &str| vnf_router::config::parse_mac(m).map_err(anyhow::Error::msg);
    let macs = [parse(&topo.mac_d0)?, parse(&topo.mac_d1)?];
    let router =
        vnf_router::Router::build(&cfg, &macs, None).map_err(|e| anyhow::anyhow!("{e}"))?;
    let natcfg = nat::NatConfig {
        inside_ports: vec![0],
        pool: vec!["198.51.100.1".into()],
        max_sessions: 1 << 16,
        max_subscribers: 1024,
        ..nat::NatConfig::default()
    };
    let nat44 = nat::Nat44::new(&natcfg).map_err(|e| anyhow::anyhow!("{e}"))?;
    let mut pl = dataplane::stage::Pipeline::new();
    pl.push(Box::new(Classify::new(router.macs.clone())));
    pl.push(Box::new(ArpInput::new(router.l3.clone())));
    pl.push(Box::new(nat44));
    pl.push(Box::new(ip4::Ip4Input::default()));
    pl.push(Box::new(ip4::Ip4Lookup::new(router.l3.clone())));
    pl.push(Box::new(ip4::Ip4Rewrite::new(router.l3.clone())));
    run_in_process(topo, args, Some(pl))
}

/// Polls d0/d1 in namespace D from a thread of this process: with a pipeline (a VNF)
/// or without (raw port I/O: d0 → d1). Returns the traffic result and the
/// generator's system CPU per second.
fn run_in_process(
    topo: &Topo,
    args: &CompareArgs,
    pipeline: Option<dataplane::stage::Pipeline>,
) -> anyhow::Result<(Dut, f64)> {
    use std::sync::atomic::{AtomicBool, Ordering};
    let io = args.io.clone();
    let d = topo.d.clone();
    let stop = std::sync::Arc::new(AtomicBool::new(false));
    let st = stop.clone();
    let h = std::thread::spawn(move || -> anyhow::Result<(u64, u64, u64)> {
        let pool = Pool::new(32768).context("pool")?;
        let ports = in_netns(&d, || -> anyhow::Result<_> {
            Ok([
                spec::open_str(&format!("{io}:d0"))?,
                spec::open_str(&format!("{io}:d1"))?,
            ])
        })??;
        // A VNF's graph, or the raw port I/O baseline (d0 → d1) as a cross-connect,
        // in the engine's worker loop.
        let graph = pipeline.unwrap_or_else(|| {
            let mut g = dataplane::stage::Pipeline::new();
            g.push(Box::new(dataplane::stages::xconnect::Xconnect::new(vec![
                Some(1),
                None,
            ])));
            g
        });
        let mut w = Worker::new(
            Vec::from(ports),
            graph,
            pool.cache(),
            WorkerConfig {
                tx_policy: TxPolicy::Drop,
                ..WorkerConfig::default()
            },
        )
        .map_err(|e| anyhow::anyhow!("graph: {e}"))?;
        let t0 = std::time::Instant::now();
        let mut now = 0;
        let mut busy = 0u64;
        while !st.load(Ordering::Relaxed) {
            let c0 = dataplane::runner::cycles();
            if w.poll(now) > 0 {
                busy += dataplane::runner::cycles().wrapping_sub(c0);
            }
            if w.stats.loops & 63 == 0 {
                now = t0.elapsed().as_nanos() as u64;
            }
        }
        Ok((w.stats.tx_packets, w.stats.rx_packets, busy))
    });
    std::thread::sleep(Duration::from_millis(300));
    let s = stream(args, &topo.mac_g0, &topo.mac_d0);
    let s0 = self_sys_secs();
    let r = traffic(topo, args, &s);
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    let (fwd, rx, busy) = h
        .join()
        .map_err(|_| anyhow::anyhow!("DUT thread panicked"))??;
    let r = r?;
    let sys = (self_sys_secs() - s0) / r.seconds.max(1e-3);
    anyhow::ensure!(fwd > 0, "the in-process DUT forwarded nothing");
    Ok((
        Dut {
            run: r,
            cores: 1.0,
            cycles_per_pkt: (rx > 0).then(|| busy as f64 / rx as f64),
        },
        sys,
    ))
}

/// `testbed compare nat`.
pub fn nat(args: CompareArgs) -> anyhow::Result<()> {
    let header = pktgen::meta::Header::start(SCHEMA, SCHEMA_VERSION);
    let (o, gen_sys) = {
        let t = topo("no")?;
        run_ours_nat(&t, &args)?
    };
    let t = {
        let tp = topo("nl")?;
        run_linux_forward(&tp, &args, true, gen_sys)?
    };
    let r = report(
        "nat",
        &format!("vnf-router NAT44 ({})", args.io),
        "linux nftables masquerade",
        &args,
        &o,
        &t,
    );
    print(&header, &r, args.json)?;
    verdict(&r)
}

fn run_testpmd(topo: &Topo, args: &CompareArgs) -> anyhow::Result<RunResult> {
    crate::netns::sh(&["which", "dpdk-testpmd"])
        .context("dpdk-testpmd is required: apt-get install dpdk-dev librte-net-af-xdp23")?;
    let vdev = |i: u32, dev: &str| -> String {
        if args.io == "afxdp" {
            format!("--vdev=net_af_xdp{i},iface={dev},start_queue=0,queue_count=1")
        } else {
            format!("--vdev=net_af_packet{i},iface={dev},blocksz=4096,framesz=2048,framecnt=4096,qpairs=1")
        }
    };
    let dir = std::env::temp_dir().join(format!("{}-testpmd", topo.lab.prefix()));
    std::fs::create_dir_all(&dir)?;
    let log = dir.join("testpmd.log");
    // a private /run (tmpfs) so EAL's runtime files stay off the host
    let script = format!(
        "mount -t tmpfs none /run && exec dpdk-testpmd -l 0,1 --no-huge -m 512 --no-pci --file-prefix=tb {} {} -- --forward-mode=io --nb-cores=1 --stats-period=1 --total-num-mbufs=16384",
        vdev(0, "d0"),
        vdev(1, "d1")
    );
    topo.lab
        .spawn(&topo.d, &["unshare", "-m", "sh", "-c", &script], Some(&log))?;
    let mut ready = false;
    for _ in 0..200 {
        std::thread::sleep(Duration::from_millis(50));
        let l = std::fs::read_to_string(&log).unwrap_or_default();
        if l.contains("Port statistics") || l.contains("start packet forwarding") {
            ready = true;
            break;
        }
        if l.contains("EAL: Error") || l.contains("Cause:") {
            bail!("dpdk-testpmd failed: {l}");
        }
    }
    if !ready {
        bail!(
            "dpdk-testpmd did not start: {}",
            std::fs::read_to_string(&log).unwrap_or_default()
        );
    }
    let s = stream(args, &topo.mac_g0, &topo.mac_d0);
    traffic(topo, args, &s)
}

/// `testbed compare io`.
pub fn io(args: CompareArgs) -> anyhow::Result<()> {
    let header = pktgen::meta::Header::start(SCHEMA, SCHEMA_VERSION);
    let o = {
        let t = topo("io")?;
        run_in_process(&t, &args, None)?.0
    };
    let t = {
        let tp = topo("ip")?;
        Dut {
            run: run_testpmd(&tp, &args)?,
            cores: 1.0,
            cycles_per_pkt: None,
        }
    };
    let r = report(
        "io",
        &format!("dataplane port I/O ({})", args.io),
        &format!("dpdk-testpmd io ({})", args.io),
        &args,
        &o,
        &t,
    );
    print(&header, &r, args.json)?;
    verdict(&r)
}
