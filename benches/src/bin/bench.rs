//! `bench <scenario> [--pkt-size N|imix] [--seconds S] [--workers N] [--cores LIST]
//! [--json]`: Mpps per core of one pipeline, generator and sink excluded from the
//! timed part as far as possible; with `--workers N` the scenario's pipeline runs on N
//! pinned worker threads at once and the report adds the total and per-worker rates.
//!
//! `bench <scenario> --workers N [--cores LIST] --scaling PASSES`: the side-by-side
//! scaling run of issue 14's acceptance. Each pass runs the scenario three times, each
//! time in a fresh child process of this binary: once with one worker on the first core
//! of the list, once with N workers on the whole list, and once as N independent
//! one-worker processes started together, one per core of the list (what the
//! machine gives N cores that share nothing: the ceiling of the ratio), in rotating
//! order (so a drift of the machine's speed during the run weighs on all three). It
//! prints every pass's `mpps_total`, the medians, the ratio of the medians and the
//! ratio of each pass; `--json` prints them as one object (schema
//! `benches.bench-scaling`).

use benches::scenarios::SCENARIOS;
use benches::{Params, PktSize};
use clap::Parser;
use pktgen::subscribers::lab::Order;

#[derive(Parser, Debug)]
#[command(
    about = "Mpps/core per VNF pipeline scenario",
    after_help = "Every scenario prints two per-core figures: the median cost per packet over \
                  the timed bursts, and all timed cycles over all packets; mpps_per_core is \
                  the median on the wall clock, the total on thread CPU time (see \
                  benches/RESULTS.md). --json prints one object with the report header \
                  (schema, command, started, machine, commit). Exit status: 0 done; 1 the \
                  scenario failed (unknown name, sessions not up), the reason on one line \
                  on stderr; 2 bad command line."
)]
struct Cli {
    /// Scenario name (`list` prints them)
    scenario: String,
    /// Frame size in bytes (60..=1518) or `imix`
    #[arg(long, default_value = "64")]
    pkt_size: PktSize,
    /// Timed duration in seconds (every scenario; ike-handshake runs it per DH group,
    /// bng-down after an upstream phase as long)
    #[arg(long, default_value_t = 3.0, value_parser = pktgen::parse_seconds)]
    seconds: f64,
    /// One JSON object per line
    #[arg(long)]
    json: bool,
    /// Worker threads, each pinned to its own core, each with its own queues and
    /// generator (l3fwd-small, l3fwd-bgp, nat44, esp-enc, esp-dec, vcpe, bng-up,
    /// bng-down, bng-up-ipoe; the vBNG scenarios set their sessions up from the lab's
    /// thread, then time each worker on its own thread)
    #[arg(long, default_value_t = 1, value_parser = clap::value_parser!(u16).range(1..=256))]
    workers: u16,
    /// Cores of the workers, comma-separated, one per worker (default: worker k on
    /// core k)
    #[arg(long, value_delimiter = ',')]
    cores: Vec<usize>,
    /// Side-by-side scaling run: PASSES passes of one worker, --workers N, and N
    /// independent one-worker processes at once (the machine's ceiling), each run a
    /// fresh process, order rotating; prints the medians and their ratios
    #[arg(long, value_parser = clap::value_parser!(u16).range(1..=100))]
    scaling: Option<u16>,
    /// The order the vBNG scenarios (bng-up, bng-down, bng-up-ipoe) offer the
    /// subscribers' frames in: `setup` (subscriber by subscriber, about the order
    /// their sessions came up: the session table is read as one sweep, a best
    /// case) or `shuffled` (a fixed pseudo-random order, as many subscribers'
    /// traffic interleaves)
    #[arg(long, value_enum, default_value = "setup")]
    order: Order,
}

/// Scenarios that take `--order`.
const ORDERED: &[&str] = &["bng-up", "bng-down", "bng-up-ipoe"];

/// Scenarios that run several workers.
const MULTI: &[&str] = &[
    "l3fwd-small",
    "l3fwd-bgp",
    "nat44",
    "esp-enc",
    "esp-dec",
    "bng-up",
    "bng-down",
    "bng-up-ipoe",
    "vcpe",
];

fn main() -> std::process::ExitCode {
    let cli = Cli::parse();
    match real_main(cli) {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            // One line: the reason chain joined by ": " (not anyhow's Debug dump).
            eprintln!("bench: {e:#}");
            std::process::ExitCode::FAILURE
        }
    }
}

fn real_main(cli: Cli) -> anyhow::Result<()> {
    if cli.scenario == "list" {
        for (name, desc, _) in SCENARIOS {
            println!("{name:<16} {desc}");
        }
        return Ok(());
    }
    let Some((_, _, run)) = SCENARIOS.iter().find(|(n, _, _)| *n == cli.scenario) else {
        let names: Vec<_> = SCENARIOS.iter().map(|s| s.0).collect();
        anyhow::bail!(
            "unknown scenario {:?}; known: {}",
            cli.scenario,
            names.join(", ")
        );
    };
    let workers = usize::from(cli.workers);
    if workers > 1 && !MULTI.contains(&cli.scenario.as_str()) {
        anyhow::bail!(
            "scenario {} runs one worker; --workers N works with {}",
            cli.scenario,
            MULTI.join(", ")
        );
    }
    if !cli.cores.is_empty() && cli.cores.len() != workers {
        anyhow::bail!(
            "--cores names {} cores for {} workers (one per worker)",
            cli.cores.len(),
            workers
        );
    }
    if cli.order != Order::Setup && !ORDERED.contains(&cli.scenario.as_str()) {
        anyhow::bail!(
            "scenario {} has no subscribers to order; --order works with {}",
            cli.scenario,
            ORDERED.join(", ")
        );
    }
    if let Some(passes) = cli.scaling {
        return scaling(&cli, usize::from(passes));
    }
    let params = Params {
        workers,
        cores: cli.cores.clone(),
        order: cli.order,
        ..Params::new(cli.pkt_size, cli.seconds)
    };
    let header = pktgen::meta::Header::start("benches.bench", 1);
    if workers == 1 {
        if let Some(&c) = params.cores.first() {
            dataplane::runner::pin_to(c);
        }
    }
    let mut r = run(&params)?;
    if r.per_worker.is_empty() {
        // a scenario that ran on this thread: its figures are worker 0's
        r = benches::single(r, params.cores.first().copied());
    }
    if cli.json {
        println!("{}", header.json(&r)?);
    } else {
        println!(
            "{:<14} size={:<5} packets={:<11} {:>7.2} Mpps/core {:>7.2} Gbps/core {:>7.1} cycles/pkt drops={}",
            r.scenario, r.pkt_size, r.packets, r.mpps_per_core, r.gbps_per_core, r.cycles_per_packet, r.drops
        );
        println!(
            "  Mpps/core: median per burst {:.2}, total cycles/packets {:.2} (headline: {}, clock {})",
            r.mpps_median_burst,
            r.mpps_total,
            if r.headline == "total" {
                "total"
            } else {
                "median per burst"
            },
            r.clock
        );
        if r.workers > 1 {
            println!(
                "  workers: {}  Mpps total (sum of the workers' rates) {:.2}, per core (mean) {:.2}",
                r.workers, r.mpps_total, r.mpps_per_core
            );
            for w in &r.per_worker {
                println!(
                    "    worker {} core {}: packets={} {:.2} Mpps/core (total {:.2}) drops={} handoffs={}",
                    w.worker,
                    w.core.map(|c| c.to_string()).unwrap_or_else(|| "-".into()),
                    w.packets,
                    w.mpps_per_core,
                    w.mpps_total,
                    w.drops,
                    w.handoffs
                );
            }
        }
        for (k, v) in &r.extra {
            match v {
                // text as text (a JSON string would print quoted, with escapes)
                serde_json::Value::String(t) => println!("  {k}: {}", t.trim_end()),
                v => println!("  {k}: {v}"),
            }
        }
    }
    Ok(())
}

/// Starts a child `bench` run of the same scenario with `workers` workers on
/// `cores`, its report on a pipe.
fn spawn_child(cli: &Cli, workers: usize, cores: &[usize]) -> anyhow::Result<std::process::Child> {
    let exe = std::env::current_exe()?;
    let cores: Vec<String> = cores.iter().map(|c| c.to_string()).collect();
    Ok(std::process::Command::new(exe)
        .arg(&cli.scenario)
        .args(["--pkt-size", &cli.pkt_size.label()])
        .args(["--seconds", &cli.seconds.to_string()])
        .args(["--workers", &workers.to_string()])
        .args(["--cores", &cores.join(",")])
        .args(["--order", cli.order.label()])
        .arg("--json")
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()?)
}

/// The `mpps_total` a child run reports.
fn child_result(child: std::process::Child, what: &str) -> anyhow::Result<f64> {
    let out = child.wait_with_output()?;
    if !out.status.success() {
        let why = String::from_utf8_lossy(&out.stderr);
        let why = why.lines().last().unwrap_or("no reason given");
        anyhow::bail!("the run with {what} failed: {why}");
    }
    let text = String::from_utf8_lossy(&out.stdout);
    let line = text.lines().last().unwrap_or_default();
    let v: serde_json::Value = serde_json::from_str(line)
        .map_err(|e| anyhow::anyhow!("the run with {what} printed no report: {e}"))?;
    v.get("mpps_total")
        .and_then(|m| m.as_f64())
        .ok_or_else(|| anyhow::anyhow!("the run with {what} reported no mpps_total"))
}

/// One pass's figure: the `mpps_total` of a child `bench` run with `workers` workers
/// on `cores`.
fn child_mpps(cli: &Cli, workers: usize, cores: &[usize]) -> anyhow::Result<f64> {
    child_result(
        spawn_child(cli, workers, cores)?,
        &format!("{workers} worker(s)"),
    )
}

/// The machine's own ceiling: one single-worker process per core, all at once,
/// their `mpps_total` summed (nothing shared between them but the machine).
fn independent_mpps(cli: &Cli, cores: &[usize]) -> anyhow::Result<f64> {
    let children = cores
        .iter()
        .map(|&c| spawn_child(cli, 1, &[c]))
        .collect::<anyhow::Result<Vec<_>>>()?;
    let mut sum = 0.0;
    for (c, &core) in children.into_iter().zip(cores) {
        sum += child_result(c, &format!("one worker on core {core} (independent)"))?;
    }
    Ok(sum)
}

/// The report of a scaling run (`--scaling`).
#[derive(serde::Serialize)]
struct Scaling {
    scenario: String,
    pkt_size: String,
    /// `--order` (`setup`, `shuffled`).
    order: &'static str,
    seconds: f64,
    workers: usize,
    cores: Vec<usize>,
    passes: usize,
    /// `mpps_total` of every pass with one worker (on `cores[0]`).
    one_worker_mpps: Vec<f64>,
    /// `mpps_total` of every pass with `workers` workers.
    n_workers_mpps: Vec<f64>,
    median_one_worker: f64,
    median_n_workers: f64,
    /// `median_n_workers / median_one_worker`.
    ratio: f64,
    /// Each pass's N-worker figure over its one-worker figure.
    pairwise: Vec<f64>,
    /// The same scenario as N independent one-worker processes, one per core, run
    /// at once, their `mpps_total` summed: what this machine gives N cores that
    /// share nothing (its memory system, its host), the ceiling for `ratio`.
    independent_mpps: Vec<f64>,
    median_independent: f64,
    /// `median_independent / median_one_worker`.
    independent_ratio: f64,
}

fn scaling(cli: &Cli, passes: usize) -> anyhow::Result<()> {
    let workers = usize::from(cli.workers);
    if workers < 2 {
        anyhow::bail!("--scaling compares one worker with --workers N: give N of 2 or more");
    }
    let cores: Vec<usize> = if cli.cores.is_empty() {
        (0..workers).collect()
    } else {
        cli.cores.clone()
    };
    let header = pktgen::meta::Header::start("benches.bench-scaling", 1);
    let (mut one, mut many, mut indep) = (Vec::new(), Vec::new(), Vec::new());
    let ratio = |a: f64, b: f64| if a > 0.0 { b / a } else { 0.0 };
    for pass in 0..passes {
        // Rotate which one goes first.
        for k in 0..3 {
            match (pass + k) % 3 {
                0 => one.push(child_mpps(cli, 1, &cores[..1])?),
                1 => many.push(child_mpps(cli, workers, &cores)?),
                _ => indep.push(independent_mpps(cli, &cores)?),
            }
        }
        if !cli.json {
            let (a, b, c) = (one[pass], many[pass], indep[pass]);
            println!(
                "pass {}: 1 worker {a:.2} Mpps, {workers} workers {b:.2} Mpps ({:.2}x), {workers} independent processes {c:.2} Mpps ({:.2}x)",
                pass + 1,
                ratio(a, b),
                ratio(a, c)
            );
        }
    }
    let med = |v: &[f64]| benches::median(&mut v.to_vec());
    let (m1, mn, mi) = (med(&one), med(&many), med(&indep));
    let r = Scaling {
        scenario: cli.scenario.clone(),
        pkt_size: cli.pkt_size.label(),
        order: cli.order.label(),
        seconds: cli.seconds,
        workers,
        cores: cores.clone(),
        passes,
        pairwise: one.iter().zip(&many).map(|(&a, &b)| ratio(a, b)).collect(),
        median_one_worker: m1,
        median_n_workers: mn,
        ratio: ratio(m1, mn),
        one_worker_mpps: one,
        n_workers_mpps: many,
        independent_mpps: indep,
        median_independent: mi,
        independent_ratio: ratio(m1, mi),
    };
    if cli.json {
        println!("{}", header.json(&r)?);
    } else {
        let lo = r.pairwise.iter().copied().fold(f64::INFINITY, f64::min);
        let hi = r.pairwise.iter().copied().fold(0.0, f64::max);
        println!(
            "{}: median 1 worker {m1:.2} Mpps, median {workers} workers {mn:.2} Mpps: {:.2}x (passes {lo:.2}..{hi:.2}x, mpps_total, {} s per run); {workers} independent one-worker processes at once: {mi:.2} Mpps, {:.2}x (this machine's ceiling)",
            r.scenario, r.ratio, r.seconds, r.independent_ratio
        );
    }
    Ok(())
}
