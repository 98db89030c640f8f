//! `bench <scenario> [--pkt-size N|imix] [--seconds S] [--json]`: Mpps per core of
//! one pipeline, generator and sink excluded from the timed part as far as possible.

use benches::scenarios::SCENARIOS;
use benches::{Params, PktSize};
use clap::Parser;

#[derive(Parser, Debug)]
#[command(about = "Mpps/core per VNF pipeline scenario")]
struct Cli {
    /// Scenario name (`list` prints them)
    scenario: String,
    /// Frame size in bytes (60..=1518) or `imix`
    #[arg(long, default_value = "64")]
    pkt_size: PktSize,
    /// Timed duration in seconds
    #[arg(long, default_value_t = 3.0)]
    seconds: f64,
    /// One JSON object per line
    #[arg(long)]
    json: bool,
}

fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
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
    let params = Params {
        pkt_size: cli.pkt_size,
        seconds: cli.seconds,
    };
    let r = run(&params)?;
    if cli.json {
        println!("{}", serde_json::to_string(&r)?);
    } else {
        println!(
            "{:<14} size={:<5} packets={:<11} {:>7.2} Mpps/core {:>7.2} Gbps/core {:>7.1} cycles/pkt drops={}",
            r.scenario, r.pkt_size, r.packets, r.mpps_per_core, r.gbps_per_core, r.cycles_per_packet, r.drops
        );
        for (k, v) in &r.extra {
            println!("  {k}: {v}");
        }
    }
    Ok(())
}
