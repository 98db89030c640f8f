//! `bench <scenario> [--pkt-size N|imix] [--seconds S] [--workers N] [--cores LIST]
//! [--json]`: Mpps per core of one pipeline, generator and sink excluded from the
//! timed part as far as possible; with `--workers N` the scenario's pipeline runs on N
//! pinned worker threads at once and the report adds the total and per-worker rates.

use benches::scenarios::SCENARIOS;
use benches::{Params, PktSize};
use clap::Parser;

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
    /// generator (l3fwd-small, l3fwd-bgp, nat44, esp-enc, esp-dec, vcpe; bng-up, bng-down
    /// and bng-up-ipoe step their workers in turn from the lab's thread)
    #[arg(long, default_value_t = 1, value_parser = clap::value_parser!(u16).range(1..=256))]
    workers: u16,
    /// Cores of the workers, comma-separated, one per worker (default: worker k on
    /// core k)
    #[arg(long, value_delimiter = ',')]
    cores: Vec<usize>,
}

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
    let params = Params {
        workers,
        cores: cli.cores.clone(),
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
