//! `testbed lab bng`: the embedded BNG lab — emulated PPPoE or IPoE (DHCPv4)
//! subscribers, or half of each (`--access pppoe|ipoe|mixed`) → vBNG → core sink in
//! one process over in-memory virtio rings, no root. Prints a human summary, or with
//! `--json` one JSON object (the report header of `pktgen::meta`: `schema`,
//! `command`, `started`, `machine`, `commit`; then `sessions_established`,
//! `setup_rate_per_s`, `setup_p99_ms`, `throughput_mpps`, `plr`, the phase details,
//! `per_access` with the same figures per access type, `traffic` in the shape every
//! lab reports, `lcp_echo`). `--per-session FILE` writes per-subscriber counters as
//! JSON lines. Exits non-zero with a one-line reason when not every session came up
//! or the loss ratio is above `--max-plr`. The lab itself is
//! `pktgen::subscribers::lab`. With `--netns` the same lab runs across network
//! namespaces with the `vbng` binary and FreeRADIUS (`lab_bng_netns`).

use pktgen::subscribers::lab::{imix, run as run_lab, LabConfig};
use pktgen::subscribers::AccessPlan;
use std::time::Duration;
use vbng::lcp::AuthProto;

/// Options of `testbed lab bng`.
#[derive(Debug, Clone, clap::Args)]
#[command(
    after_help = "Exit status: 0 every session came up and the traffic passed; 1 the run \
                  failed, with the reason on one line on stderr: not every session came up \
                  within --timeout, no packet reached the far end, the loss ratio is above \
                  --max-plr, or (--netns) the vbng binary, FreeRADIUS or tshark is missing; \
                  2 bad command line. The report is printed (or written) before the verdict."
)]
pub struct BngLabArgs {
    /// Number of emulated subscribers (at least 1).
    #[arg(long, default_value_t = 1000, value_parser = clap::value_parser!(u32).range(1..))]
    pub sessions: u32,
    /// Session setups per second (0 = as fast as the BNG answers).
    #[arg(long, default_value_t = 0)]
    pub setup_rate: u32,
    /// Most setups in flight at once (default 4096 in memory; 256 with `--netns`, where
    /// a deeper queue only adds latency past the 1 s PPP restart timer).
    #[arg(long)]
    pub max_outstanding: Option<u32>,
    /// Authentication: pap or chap.
    #[arg(long, default_value = "pap")]
    pub auth: String,
    /// How the subscribers connect: `pppoe`; `ipoe` (IPv4 over Ethernet addressed by
    /// the vBNG's DHCPv4 server, `[ipoe]`, authorised by MAC against the same users;
    /// the emulated clients follow RFC 2131 §4.4); or `mixed` (half of each). The
    /// JSON's `per_access` has the setup and traffic figures per type.
    #[arg(long, default_value = "pppoe")]
    pub access: String,
    /// Frame size in bytes, or `imix`.
    #[arg(long, default_value = "64")]
    pub frame: String,
    /// Packets per traffic phase (upstream, then downstream).
    #[arg(long, default_value_t = 1_000_000)]
    pub packets: u64,
    /// Traffic by time: each traffic phase (upstream, downstream, and the IPv6 ones)
    /// offers traffic for S seconds instead of `--packets` packets.
    #[arg(long, value_name = "S", value_parser = pktgen::parse_seconds, conflicts_with = "packets")]
    pub duration: Option<f64>,
    /// Write one JSON object per subscriber into FILE (JSON lines): `subscriber`,
    /// `access`, `session_id`, `address`, `address6`, `tx_up`, `rx_up`, `tx_down`,
    /// `rx_down`, `loss`, `flows`, `flows_verified`.
    #[arg(long, value_name = "FILE")]
    pub per_session: Option<std::path::PathBuf>,
    /// The run fails (exit status 1) when its packet loss ratio over all traffic
    /// phases is above X (0 to 1; default: no limit).
    #[arg(long, value_name = "X", value_parser = pktgen::kpi::parse_plr)]
    pub max_plr: Option<f64>,
    /// The BNG's LCP Echo-Request interval in seconds (0 = off); the report counts
    /// the requests and replies (`lcp_echo`).
    #[arg(long, value_name = "S", default_value_t = 30)]
    pub lcp_echo_interval: u32,
    /// Print a live status line on stderr every second of a phase that has run two
    /// (default: only when stderr is a terminal).
    #[arg(long)]
    pub progress: bool,
    /// Per-subscriber rate `up/down` in bit/s (k/M/G suffixes), default unlimited
    /// (with `--netns`: written into the vBNG's user file and default rates).
    #[arg(long)]
    pub rate: Option<String>,
    /// Skip the downstream phase.
    #[arg(long)]
    pub no_downstream: bool,
    /// CGNAT public pool (e.g. `203.0.113.0/28`): subscriber traffic is translated on
    /// its way to the core (nat44 node between the two halves of the fast path; with
    /// `--netns` a `[cgnat]` section in the vBNG's config). With `--cups` the control
    /// plane allocates each subscriber's port block and sends it to its user plane
    /// over PFCP (BBF TR-459 NAT IEs); the user planes' nat44 allocate none.
    #[arg(long)]
    pub cgnat: Option<String>,
    /// Setup timeout, seconds (at least 1).
    #[arg(long, default_value_t = 300, value_parser = clap::value_parser!(u64).range(1..))]
    pub timeout: u64,
    /// Print one JSON object.
    #[arg(long)]
    pub json: bool,
    /// Dual stack: IPv6CP, a /64 per session announced by RA (SLAAC over PPP), and
    /// IPv6 upstream/downstream phases (JSON: `ipv6_sessions`, `upstream6`,
    /// `downstream6`, `ipv6_plr`).
    #[arg(long)]
    pub ipv6: bool,
    /// Run across network namespaces (root): the `vbng` binary over AF_PACKET between
    /// a subscriber and a core namespace (see `lab_bng_netns`).
    #[arg(long)]
    pub netns: bool,
    /// With `--netns`: authenticate and account against FreeRADIUS started in the bng
    /// namespace (else a local user file).
    #[arg(long, requires = "netns")]
    pub radius: bool,
    /// With `--netns`: the vbng binary (default: `vbng` next to this executable;
    /// with `--cups`, `vbng-cp` and `vbng-up` next to it).
    #[arg(long, requires = "netns")]
    pub vbng: Option<String>,
    /// With `--netns`: capture the access link with tshark into this file.
    #[arg(long, requires = "netns")]
    pub capture: Option<String>,
    /// The disaggregated vBNG (BBF TR-459, issue 21): one control plane (`vbng-cp`)
    /// and `--ups` user planes (`vbng-up`) over PFCP and GTP-U, in memory, or with
    /// `--netns` as processes in namespaces of their own; the subscribers' lines are
    /// spread over the user planes' access ports. The JSON has the same fields as
    /// the monolithic lab's plus `cups` (the control plane's PFCP counters and
    /// `per_up` figures).
    #[arg(long)]
    pub cups: bool,
    /// With `--cups`: user planes (1 to 64).
    #[arg(long, default_value_t = 2, requires = "cups",
          value_parser = clap::value_parser!(u32).range(1..=64))]
    pub ups: u32,
    /// With `--netns --cups`: after the traffic phases, kill user plane N's process
    /// (SIGKILL): the control plane must clear exactly its sessions with
    /// Accounting-Stops (Lost-Service) once PFCP heartbeats fail, and the other user
    /// planes' subscribers must keep passing traffic (JSON `cups.kill`).
    #[arg(long, value_name = "N", requires = "cups", requires = "netns")]
    pub kill_up: Option<u32>,
    /// With `--netns --cups`: what runs each user plane: `process` (the `vbng-up`
    /// binary) or `guest` (the `vbng-up` unikernel image under QEMU, `-accel tcg`,
    /// its access, core and control NICs taps bridged to the user plane's
    /// namespace's links; build it with `testbed image build vbng-up`). Either way
    /// the control plane is the `vbng-cp` process.
    #[arg(long, value_enum, default_value_t = UpPlatform::Process, requires = "cups")]
    pub up_platform: UpPlatform,
    /// With `--up-platform guest`: the user plane image (default
    /// `target/images/vbng-up.elf` under the current directory).
    #[arg(long, value_name = "ELF", requires = "cups")]
    pub up_image: Option<String>,
    /// With `--netns`: add a hostile subscriber (PADI flood, bad LCP, garbage after the
    /// PPPoE header, wrong password).
    #[arg(long, requires = "netns")]
    pub hostile: bool,
    /// vBNG workers (1 to 64): one graph per worker, each with its own queue of the
    /// access and core links (steered by the symmetric flow hash), a subscriber's
    /// traffic owned by one worker and handed over when it arrives on another. The
    /// JSON adds `workers` and `per_worker`. With `--netns --cups` (user planes
    /// run as processes): the workers of each user plane (`vbng-up --workers`),
    /// the control plane's config saying `workers` too, so that it allocates each
    /// PPPoE session's address from the share that steers to the session's worker.
    #[arg(long, default_value_t = 1,
          value_parser = clap::value_parser!(u16).range(1..=64))]
    pub workers: u16,
    /// Churn: the last N PPPoE subscribers are torn down (PADT) and set up again
    /// (PADI ...) over and over while the IPv4 traffic phases run; the traffic is
    /// the other subscribers', so its loss is what set-up and tear-down bursts cost.
    #[arg(long, default_value_t = 0, conflicts_with_all = ["cups", "netns"])]
    pub churn: u32,
    /// The order the traffic phases offer the subscribers' frames in: `setup`
    /// (subscriber by subscriber, about the order their sessions came up) or
    /// `shuffled` (a fixed pseudo-random order, as many subscribers' traffic
    /// interleaves). The embedded lab only.
    #[arg(long, value_enum, default_value = "setup", conflicts_with = "netns")]
    pub order: pktgen::subscribers::lab::Order,
}

/// What runs a user plane of `--netns --cups`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum UpPlatform {
    /// The `vbng-up` process.
    Process,
    /// The `vbng-up` unikernel under QEMU (TCG).
    Guest,
}

/// The lab's verdict after its report: it failed (exit status non-zero, one-line
/// reason) when not every subscriber came up — a throughput or loss figure over fewer
/// sessions than asked for is not the result that was asked for — or when its loss
/// ratio is above `--max-plr`.
pub fn verdict(
    established: u32,
    wanted: u32,
    traffic: &pktgen::kpi::TrafficKpis,
    max_plr: Option<f64>,
) -> anyhow::Result<()> {
    anyhow::ensure!(
        established >= wanted,
        "lab failed: only {established} of {wanted} sessions came up"
    );
    traffic
        .check_plr(max_plr)
        .map_err(|e| anyhow::anyhow!("lab failed: {e}"))
}

/// Schema name of the in-memory lab's JSON report.
pub const SCHEMA: &str = "testbed.lab.bng";
/// Schema name of the `--netns` lab's JSON report (the in-memory one's fields and
/// the namespace lab's facts).
pub const SCHEMA_NETNS: &str = "testbed.lab.bng.netns";

/// `name count, …` of some counters, or `none`.
pub fn join_counts(c: &std::collections::BTreeMap<String, u64>) -> String {
    if c.is_empty() {
        return "none".into();
    }
    c.iter()
        .map(|(k, v)| format!("{k} {v}"))
        .collect::<Vec<_>>()
        .join(", ")
}
/// Its version.
pub const SCHEMA_VERSION: u32 = 1;

/// Writes the per-subscriber counters as JSON lines.
fn write_per_session(
    path: &std::path::Path,
    rows: &[pktgen::subscribers::lab::SessionCounters],
) -> anyhow::Result<()> {
    use std::io::Write;
    let f = std::fs::File::create(path)
        .map_err(|e| anyhow::anyhow!("--per-session {}: {e}", path.display()))?;
    let mut w = std::io::BufWriter::new(f);
    for r in rows {
        serde_json::to_writer(&mut w, r)?;
        w.write_all(b"\n")?;
    }
    w.flush()
        .map_err(|e| anyhow::anyhow!("--per-session {}: {e}", path.display()))?;
    Ok(())
}

/// Prints the lab's progress on stderr: phase lines unless `quiet`, live status lines
/// when `live` (rewritten in place on a terminal).
pub fn progress_printer(
    quiet: bool,
    live: bool,
) -> impl FnMut(&pktgen::subscribers::lab::Progress<'_>) {
    use pktgen::subscribers::lab::Progress;
    use std::io::IsTerminal;
    let tty = std::io::stderr().is_terminal();
    let mut open = false;
    move |m: &Progress<'_>| match m {
        Progress::Phase(s) => {
            if open {
                eprintln!();
                open = false;
            }
            if !quiet {
                eprintln!("lab bng: {s}");
            }
        }
        Progress::Live(s) if live => {
            if tty {
                eprint!("\r{s}\x1b[K");
                open = true;
            } else {
                eprintln!("{s}");
            }
        }
        Progress::Live(_) => {}
    }
}

/// Run the lab and print its report.
pub fn run(args: BngLabArgs) -> anyhow::Result<()> {
    anyhow::ensure!(
        args.up_platform == UpPlatform::Process || args.netns,
        "--up-platform guest needs --netns (the guests' NICs are taps in the lab's namespaces)"
    );
    anyhow::ensure!(
        !args.cups || args.workers == 1 || (args.netns && args.up_platform == UpPlatform::Process),
        "--workers with --cups needs --netns and --up-platform process (the vbng-up processes run the workers)"
    );
    anyhow::ensure!(
        !args.cups || args.workers == 1 || args.cgnat.is_none(),
        "--workers with --cups and --cgnat: a user plane with CGNAT runs one worker"
    );
    if args.netns {
        return crate::lab_bng_netns::run(&args);
    }
    let auth = match args.auth.as_str() {
        "pap" => AuthProto::Pap,
        "chap" => AuthProto::Chap,
        a => anyhow::bail!("--auth must be pap or chap, not {a:?}"),
    };
    let frame_sizes = if args.frame == "imix" {
        imix()
    } else {
        let n: usize = args
            .frame
            .parse()
            .map_err(|_| anyhow::anyhow!("--frame must be a size or imix"))?;
        anyhow::ensure!((64..=1518).contains(&n), "--frame must be within 64..=1518");
        vec![n]
    };
    let rate = match &args.rate {
        Some(r) => vbng::config::parse_rate_pair(r).map_err(|e| anyhow::anyhow!("{e}"))?,
        None => (0, 0),
    };
    let cgnat = match &args.cgnat {
        Some(p) => Some(
            p.parse::<vbng::config::Range4>()
                .map_err(|e| anyhow::anyhow!("--cgnat {p:?}: {e}"))?,
        ),
        None => None,
    };
    let access: AccessPlan = args
        .access
        .parse()
        .map_err(|e: String| anyhow::anyhow!("--access: {e}"))?;
    anyhow::ensure!(
        !(args.ipv6 && access == AccessPlan::Ipoe),
        "--ipv6 needs PPPoE subscribers (IPv6CP and SLAAC over PPP): use --access pppoe or mixed"
    );
    let header = pktgen::meta::Header::start(SCHEMA, SCHEMA_VERSION);
    let cfg = LabConfig {
        sessions: args.sessions,
        setup_rate: args.setup_rate,
        max_outstanding: args.max_outstanding.unwrap_or(4096),
        auth,
        frame_sizes,
        packets: args.packets,
        setup_timeout: Duration::from_secs(args.timeout),
        rate,
        downstream: !args.no_downstream,
        cgnat,
        ipv6: args.ipv6,
        access,
        duration: args.duration.map(Duration::from_secs_f64),
        keepalive_s: args.lcp_echo_interval,
        cups_ups: args.cups.then_some(args.ups as usize),
        workers: usize::from(args.workers),
        churn: args.churn,
        parallel: None,
        order: args.order,
    };
    let live = args.progress || std::io::IsTerminal::is_terminal(&std::io::stderr());
    let mut r = run_lab(&cfg, progress_printer(args.json, live))?;
    if let Some(p) = &args.per_session {
        write_per_session(p, &std::mem::take(&mut r.per_session))?;
    }
    let judge = || {
        verdict(
            r.sessions_established,
            args.sessions,
            &r.traffic,
            args.max_plr,
        )
    };
    if args.json {
        println!("{}", header.json(&r)?);
        return judge();
    }
    println!(
        "sessions established   {} / {}",
        r.sessions_established, args.sessions
    );
    println!(
        "setup rate             {:.0} sessions/s",
        r.setup_rate_per_s
    );
    println!(
        "setup latency          p50 {:.1} ms, p99 {:.1} ms",
        r.setup_p50_ms, r.setup_p99_ms
    );
    if !r.setup.failed_by_phase.is_empty() {
        println!(
            "failures by phase      {}",
            join_counts(&r.setup.failed_by_phase)
        );
    }
    let u = &r.upstream;
    println!(
        "upstream               {} sent, {} received, {:.3} Mpps wall, BNG {:.2} Mpps/core ({:.0} ns/pkt), mean frame {:.0} B",
        u.sent, u.received, u.throughput_mpps, u.bng_mpps_per_core, u.bng_ns_per_packet, u.mean_frame
    );
    if let Some(d) = &r.downstream {
        println!(
            "downstream             {} sent, {} received, {:.3} Mpps wall, BNG {:.2} Mpps/core ({:.0} ns/pkt)",
            d.sent, d.received, d.throughput_mpps, d.bng_mpps_per_core, d.bng_ns_per_packet
        );
    }
    println!("packet loss ratio      {:.6}", r.plr);
    let k = &r.traffic;
    let us = |v: Option<f64>| v.map_or("-".to_string(), |v| format!("{v:.1}"));
    println!(
        "latency                p50 {} µs, p99 {} µs, max {} µs",
        us(k.latency_p50_us),
        us(k.latency_p99_us),
        us(k.latency_max_us)
    );
    println!(
        "flows verified         {} / {} (first and last packet of each stream seen)",
        k.flows_verified.unwrap_or(0),
        k.flows
    );
    if let Some(e) = &r.lcp_echo {
        println!(
            "LCP echo               {} requests from the BNG, {} replies (interval {} s)",
            e.requests_received, e.replies_sent, e.interval_s
        );
    }
    if access == AccessPlan::Mixed {
        for (name, a) in &r.per_access {
            println!(
                "{name:<6} {:>6} / {:<6}  {:.0} setups/s, p99 {:.1} ms, upstream {} / {}, downstream {} / {}, loss {:.6}",
                a.sessions_established,
                a.sessions,
                a.setup_rate_per_s,
                a.setup_p99_ms,
                a.upstream.received,
                a.upstream.sent,
                a.downstream.as_ref().map_or(0, |d| d.received),
                a.downstream.as_ref().map_or(0, |d| d.sent),
                a.plr
            );
        }
    }
    if let Some(n) = &r.nat {
        println!(
            "CGNAT {:<16} {} sessions ({} created), {} subscribers, {} port blocks, {} log records, {} drops",
            n.pool, n.sessions, n.sessions_created, n.subscribers, n.blocks, n.log_records, n.drops
        );
        print!(
            "{}",
            pktgen::subscribers::lab::format_counters("CGNAT drops", &n.drop_reasons)
        );
    }
    if args.ipv6 {
        println!(
            "IPv6 sessions (SLAAC)  {} / {}",
            r.ipv6_sessions, r.sessions_established
        );
        for (name, t) in [
            ("IPv6 upstream  ", &r.upstream6),
            ("IPv6 downstream", &r.downstream6),
        ] {
            if let Some(t) = t {
                println!(
                    "{name}        {} sent, {} received, {:.3} Mpps wall, BNG {:.2} Mpps/core ({:.0} ns/pkt)",
                    t.sent, t.received, t.throughput_mpps, t.bng_mpps_per_core, t.bng_ns_per_packet
                );
            }
        }
        println!("IPv6 packet loss ratio {:.6}", r.ipv6_plr);
    }
    let label = match access {
        AccessPlan::Pppoe => "sessions after PADT",
        AccessPlan::Ipoe => "sessions after RELEASE",
        AccessPlan::Mixed => "sessions after teardown",
    };
    println!("{label:<22} {}", r.sessions_after_teardown);
    if let Some(c) = &r.cups {
        println!(
            "PFCP (control plane)   {} user planes, {} sessions established, {} deleted, {} usage reports, {} messages in, {} out",
            c.ups,
            c.cp.get("established").copied().unwrap_or(0),
            c.cp.get("deleted").copied().unwrap_or(0),
            c.cp.get("reports").copied().unwrap_or(0),
            c.pfcp_rx,
            c.pfcp_tx
        );
        for (n, u) in c.per_up.iter().enumerate() {
            println!(
                "user plane {n:<2} {:<12} {} sessions, access {} in / {} out, core {} in / {} out, {} redirected, {} injected",
                u.addr, u.sessions_established, u.access_rx, u.access_tx, u.core_rx, u.core_tx, u.redirected, u.injected
            );
        }
    }
    if let Some(k) = r.rss_peak_kib {
        println!("peak RSS               {:.1} MiB", k as f64 / 1024.0);
    }
    print!("{}", r.bng_errors);
    let w = &r.bng_worker;
    if w.tx_full + w.frame_full + w.tx_unsent + w.punt_dropped + w.inject_dropped > 0 {
        println!(
            "BNG worker losses      {} transmit batch full, {} node frame full, {} unsent, {} punts and {} injections dropped",
            w.tx_full, w.frame_full, w.tx_unsent, w.punt_dropped, w.inject_dropped
        );
    }
    judge()
}
