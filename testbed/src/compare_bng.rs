//! `testbed compare bng`: the monolithic vBNG and the disaggregated one (BBF TR-459:
//! `vbng-cp` + N `vbng-up` over PFCP/GTP-U, issue 21) side by side on the same
//! in-memory BNG lab (`testbed lab bng` and `testbed lab bng --cups --ups N`, the
//! same subscribers, traffic and frame size), each run in a process of its own so
//! the memory figure (peak RSS, `VmHWM`) is that run's. Prints setup rate, setup
//! latency p99, throughput, BNG Mpps per core, PLR and peak RSS for each, and the
//! ratios disaggregated / monolithic. With `--json` one object: the report header,
//! `monolithic`, `disaggregated` (each with those figures) and `ratio`. With
//! `--cgnat POOL` both run CGNAT on that pool: the monolithic `nat44` allocating port
//! blocks on its fast path, the disaggregated control plane allocating them and
//! sending them over PFCP (BBF TR-459 NAT IEs) to the user planes' `nat44`.

use serde::Serialize;
use std::process::Command;

/// Options of `testbed compare bng`.
#[derive(Debug, Clone, clap::Args)]
#[command(
    after_help = "Exit status: 0 both runs passed; 1 a run failed (not every session came \
                  up, or loss), with the failing run's reason on one line; 2 bad command line."
)]
pub struct CompareBngArgs {
    /// Emulated subscribers in each run.
    #[arg(long, default_value_t = 1000, value_parser = clap::value_parser!(u32).range(1..))]
    pub sessions: u32,
    /// User planes of the disaggregated vBNG (1 to 64).
    #[arg(long, default_value_t = 2, value_parser = clap::value_parser!(u32).range(1..=64))]
    pub ups: u32,
    /// Packets per traffic phase (upstream, then downstream).
    #[arg(long, default_value_t = 200_000)]
    pub packets: u64,
    /// How the subscribers connect: pppoe, ipoe or mixed.
    #[arg(long, default_value = "pppoe")]
    pub access: String,
    /// Frame size in bytes, or `imix`.
    #[arg(long, default_value = "64")]
    pub frame: String,
    /// Setup timeout of each run, seconds.
    #[arg(long, default_value_t = 300, value_parser = clap::value_parser!(u64).range(1..))]
    pub timeout: u64,
    /// CGNAT public pool (e.g. `203.0.113.0/28`) for both runs (`lab bng --cgnat`).
    #[arg(long, value_name = "POOL")]
    pub cgnat: Option<String>,
    /// Print one JSON object.
    #[arg(long)]
    pub json: bool,
}

/// The compared figures of one run.
#[derive(Debug, Clone, Serialize, Default)]
pub struct Figures {
    pub sessions_established: u64,
    pub setup_rate_per_s: f64,
    pub setup_p99_ms: f64,
    /// Received Mpps over wall time (generator, BNG and sink on one core).
    pub throughput_mpps: f64,
    /// Packets per second of the BNG alone per core (its workers and control
    /// planes' time), Mpps.
    pub bng_mpps_per_core: f64,
    pub plr: f64,
    /// Peak resident set size of the run's process, MiB.
    pub rss_peak_mib: f64,
}

/// Disaggregated / monolithic.
#[derive(Debug, Clone, Serialize, Default)]
pub struct Ratios {
    pub setup_rate: f64,
    pub setup_p99: f64,
    pub throughput: f64,
    pub bng_mpps_per_core: f64,
    pub rss_peak: f64,
}

#[derive(Debug, Clone, Serialize)]
struct Report {
    sessions: u32,
    ups: u32,
    access: String,
    packets: u64,
    /// The CGNAT pool of both runs (`--cgnat`), or null.
    cgnat: Option<String>,
    monolithic: Figures,
    disaggregated: Figures,
    ratio: Ratios,
    /// The disaggregated run's per user plane figures (`cups.per_up` of its lab).
    per_up: serde_json::Value,
}

/// Schema of the JSON report.
pub const SCHEMA: &str = "testbed.compare.bng";

/// Runs `testbed lab bng --json` with `extra` in a child process; its JSON report.
fn lab(a: &CompareBngArgs, extra: &[&str], what: &str) -> anyhow::Result<serde_json::Value> {
    let exe = std::env::current_exe().map_err(|e| anyhow::anyhow!("own executable: {e}"))?;
    let (s, p, t) = (
        a.sessions.to_string(),
        a.packets.to_string(),
        a.timeout.to_string(),
    );
    let out = Command::new(exe)
        .args(["lab", "bng", "--json", "--sessions", &s, "--packets", &p])
        .args(["--timeout", &t, "--access", &a.access, "--frame", &a.frame])
        .args(a.cgnat.iter().flat_map(|p| ["--cgnat", p.as_str()]))
        .args(extra)
        .output()
        .map_err(|e| anyhow::anyhow!("{what} run: {e}"))?;
    if !out.status.success() {
        let err = String::from_utf8_lossy(&out.stderr);
        let last = err.lines().last().unwrap_or("no reason given");
        anyhow::bail!(
            "{what} run failed: {}",
            last.trim_start_matches("testbed: ")
        );
    }
    serde_json::from_slice(&out.stdout)
        .map_err(|e| anyhow::anyhow!("{what} run: its JSON report: {e}"))
}

fn figures(v: &serde_json::Value) -> Figures {
    let f = |k: &str| v[k].as_f64().unwrap_or(0.0);
    Figures {
        sessions_established: v["sessions_established"].as_u64().unwrap_or(0),
        setup_rate_per_s: f("setup_rate_per_s"),
        setup_p99_ms: f("setup_p99_ms"),
        throughput_mpps: f("throughput_mpps"),
        bng_mpps_per_core: v["traffic"]["dut_mpps_per_core"].as_f64().unwrap_or(0.0),
        plr: f("plr"),
        rss_peak_mib: v["rss_peak_kib"].as_f64().unwrap_or(0.0) / 1024.0,
    }
}

fn ratio(a: f64, b: f64) -> f64 {
    if b > 0.0 {
        a / b
    } else {
        0.0
    }
}

/// Runs both and prints them.
pub fn run(a: CompareBngArgs) -> anyhow::Result<()> {
    let header = pktgen::meta::Header::start(SCHEMA, 1);
    if !a.json {
        eprintln!("compare bng: monolithic vbng, {} sessions", a.sessions);
    }
    let mono = lab(&a, &[], "monolithic")?;
    if !a.json {
        eprintln!(
            "compare bng: vbng-cp + {} vbng-up, {} sessions",
            a.ups, a.sessions
        );
    }
    let ups = a.ups.to_string();
    let cups = lab(&a, &["--cups", "--ups", &ups], "disaggregated")?;
    let (m, d) = (figures(&mono), figures(&cups));
    let r = Ratios {
        setup_rate: ratio(d.setup_rate_per_s, m.setup_rate_per_s),
        setup_p99: ratio(d.setup_p99_ms, m.setup_p99_ms),
        throughput: ratio(d.throughput_mpps, m.throughput_mpps),
        bng_mpps_per_core: ratio(d.bng_mpps_per_core, m.bng_mpps_per_core),
        rss_peak: ratio(d.rss_peak_mib, m.rss_peak_mib),
    };
    let report = Report {
        sessions: a.sessions,
        ups: a.ups,
        access: a.access.clone(),
        packets: a.packets,
        cgnat: a.cgnat.clone(),
        per_up: cups["cups"]["per_up"].clone(),
        monolithic: m,
        disaggregated: d,
        ratio: r,
    };
    if a.json {
        println!("{}", header.json(&report)?);
        return Ok(());
    }
    let (m, d, r) = (&report.monolithic, &report.disaggregated, &report.ratio);
    println!(
        "{:<26} {:>14} {:>16} {:>8}",
        "",
        "monolithic",
        format!("cp + {} up", a.ups),
        "ratio"
    );
    let row = |name: &str, x: f64, y: f64, q: f64, prec: usize| {
        println!("{name:<26} {x:>14.prec$} {y:>16.prec$} {q:>8.2}");
    };
    println!(
        "{:<26} {:>14} {:>16}",
        "sessions established",
        format!("{} / {}", m.sessions_established, a.sessions),
        format!("{} / {}", d.sessions_established, a.sessions)
    );
    row(
        "setup rate (sessions/s)",
        m.setup_rate_per_s,
        d.setup_rate_per_s,
        r.setup_rate,
        0,
    );
    row(
        "setup latency p99 (ms)",
        m.setup_p99_ms,
        d.setup_p99_ms,
        r.setup_p99,
        1,
    );
    row(
        "throughput (Mpps wall)",
        m.throughput_mpps,
        d.throughput_mpps,
        r.throughput,
        3,
    );
    row(
        "BNG Mpps per core",
        m.bng_mpps_per_core,
        d.bng_mpps_per_core,
        r.bng_mpps_per_core,
        3,
    );
    println!(
        "{:<26} {:>14.6} {:>16.6}",
        "packet loss ratio", m.plr, d.plr
    );
    row(
        "peak RSS (MiB)",
        m.rss_peak_mib,
        d.rss_peak_mib,
        r.rss_peak,
        1,
    );
    Ok(())
}
