//! `testbed lab bng`: the embedded BNG lab — emulated PPPoE or IPoE (DHCPv4)
//! subscribers, or half of each (`--access pppoe|ipoe|mixed`) → vBNG → core sink in
//! one process over in-memory virtio rings, no root. Prints a human summary, or with
//! `--json` one JSON object (`sessions_established`, `setup_rate_per_s`,
//! `setup_p99_ms`, `throughput_mpps`, `plr`, the phase details, and `per_access`
//! with the same figures per access type). The lab itself is
//! `pktgen::subscribers::lab`. With `--netns` the same lab runs across network
//! namespaces with the `vbng` binary and FreeRADIUS (`lab_bng_netns`).

use pktgen::subscribers::lab::{imix, run as run_lab, LabConfig};
use pktgen::subscribers::AccessPlan;
use std::time::Duration;
use vbng::lcp::AuthProto;

/// Options of `testbed lab bng`.
#[derive(Debug, Clone, clap::Args)]
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
    /// Per-subscriber rate `up/down` in bit/s (k/M/G suffixes), default unlimited
    /// (with `--netns`: written into the vBNG's user file and default rates).
    #[arg(long)]
    pub rate: Option<String>,
    /// Skip the downstream phase.
    #[arg(long)]
    pub no_downstream: bool,
    /// CGNAT public pool (e.g. `203.0.113.0/28`): subscriber traffic is translated on
    /// its way to the core (nat44 node between the two halves of the fast path; with
    /// `--netns` a `[cgnat]` section in the vBNG's config).
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
    /// With `--netns`: the vbng binary (default: `vbng` next to this executable).
    #[arg(long, requires = "netns")]
    pub vbng: Option<String>,
    /// With `--netns`: capture the access link with tshark into this file.
    #[arg(long, requires = "netns")]
    pub capture: Option<String>,
    /// With `--netns`: add a hostile subscriber (PADI flood, bad LCP, garbage after the
    /// PPPoE header, wrong password).
    #[arg(long, requires = "netns")]
    pub hostile: bool,
}

/// The lab's verdict after its report: it failed (exit status non-zero, one-line
/// reason) when not every subscriber came up — a throughput or loss figure over fewer
/// sessions than asked for is not the result that was asked for.
pub fn verdict(established: u32, wanted: u32) -> anyhow::Result<()> {
    anyhow::ensure!(
        established >= wanted,
        "lab failed: only {established} of {wanted} sessions came up"
    );
    Ok(())
}

/// Run the lab and print its report.
pub fn run(args: BngLabArgs) -> anyhow::Result<()> {
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
    };
    let quiet = args.json;
    let r = run_lab(&cfg, |m| {
        if !quiet {
            eprintln!("lab bng: {m}");
        }
    })?;
    if args.json {
        println!("{}", serde_json::to_string(&r)?);
        return verdict(r.sessions_established, args.sessions);
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
        let f: Vec<String> = r
            .setup
            .failed_by_phase
            .iter()
            .map(|(k, v)| format!("{k} {v}"))
            .collect();
        println!("failures by phase      {}", f.join(", "));
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
    print!("{}", r.bng_errors);
    verdict(r.sessions_established, args.sessions)
}
