//! `testbed`: builds labs (in-memory or network namespaces), runs VNFs as processes or
//! QEMU unikernel guests with generators and real peers, and reports KPIs.

use clap::{Parser, Subcommand};

mod image;
mod lab_router;

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
}

#[derive(Subcommand)]
enum LabCmd {
    /// Generator -> router VNF -> sink in one process over in-memory rings.
    Router(lab_router::RouterLabArgs),
}

fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    match cli.cmd {
        Cmd::Image(c) => image::main(c),
        Cmd::Lab(LabCmd::Router(a)) => lab_router::main(a),
    }
}
