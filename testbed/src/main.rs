//! `testbed`: builds labs (in-memory or network namespaces), runs VNFs as processes or
//! QEMU unikernel guests with generators and real peers, and reports KPIs.

use clap::{Parser, Subcommand};

mod compare;
mod image;
mod lab_bng;
mod lab_bng_netns;
mod lab_router;
mod netns;
mod scenario;

#[derive(Parser)]
#[command(about = "NFV lab orchestration and KPI runs")]
struct Cli {
    #[command(subcommand)]
    cmd: Cmd,
}

#[derive(Subcommand)]
enum Cmd {
    /// Build or boot unikernel images (`image build router`, `image run router`)
    #[command(subcommand)]
    Image(image::ImageCmd),
    /// Run a lab (`lab router`: generator -> router -> sink in memory, no root)
    #[command(subcommand)]
    Lab(LabCmd),
    /// Side-by-side KPI runs on one veth topology (`compare forward|nat|io`, root)
    #[command(subcommand)]
    Compare(CompareCmd),
}

#[derive(Subcommand)]
enum CompareCmd {
    /// Our router over AF_XDP vs Linux IPv4 forwarding in a namespace.
    Forward(compare::CompareArgs),
    /// Our NAT44 vs Linux nftables masquerade.
    Nat(compare::CompareArgs),
    /// Our raw port I/O vs dpdk-testpmd io-forward on the same veths.
    Io(compare::CompareArgs),
}

#[derive(Subcommand)]
enum LabCmd {
    /// Generator -> router VNF -> sink in one process over in-memory rings.
    Router(lab_router::RouterLabArgs),
    /// Emulated PPPoE subscribers -> vBNG -> core sink in one process (no root).
    Bng(lab_bng::BngLabArgs),
    /// A netns lab from a scenario file (namespaces, veths, bridges, taps, processes,
    /// traffic); everything is removed at the end, on error and on Ctrl-C (root).
    Run(scenario::RunArgs),
}

fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    match cli.cmd {
        Cmd::Image(c) => image::main(c),
        Cmd::Lab(LabCmd::Router(a)) => lab_router::main(a),
        Cmd::Lab(LabCmd::Bng(a)) => lab_bng::run(a),
        Cmd::Lab(LabCmd::Run(a)) => scenario::main(a),
        Cmd::Compare(CompareCmd::Forward(a)) => compare::forward(a),
        Cmd::Compare(CompareCmd::Nat(a)) => compare::nat(a),
        Cmd::Compare(CompareCmd::Io(a)) => compare::io(a),
    }
}
