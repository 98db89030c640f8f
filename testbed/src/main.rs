//! `testbed`: builds labs (in-memory or network namespaces), runs VNFs as processes or
//! QEMU unikernel guests with generators and real peers, and reports KPIs.

use clap::{Parser, Subcommand};
use std::process::ExitCode;

mod compare;
mod compare_bng;
mod compare_dpdk;
mod image;
mod lab_bng;
mod lab_bng_netns;
mod lab_keyserver;
mod lab_router;
mod lab_vcpe;
mod netns;
mod onboard;
mod scenario;

#[derive(Parser)]
#[command(
    about = "NFV lab orchestration and KPI runs",
    after_help = "Exit status: 0 done; 1 the run failed, the reason on one line on stderr \
                  (lab bng: not every session came up; lab router and lab bng: no packet \
                  arrived, or the loss ratio is above --max-plr; a peer, tool or file \
                  missing); 2 bad command line; 3 (lab router --rfc2544) the search ended \
                  generator-limited for some frame size (no DUT throughput for it); \
                  130 interrupted.\n\nEvery --json report carries schema {name, version}, \
                  command, started (RFC 3339 UTC), machine {host, cpu_model, cores, \
                  cores_usable, kernel} and commit."
)]
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
    /// Side-by-side KPI runs on one veth topology (`compare forward|nat|io|dpdk`, root)
    #[command(subcommand)]
    Compare(CompareCmd),
    /// A VNF manager's lifecycle for one package (CSAR or OSM): validate, unpack, boot
    /// its image under QEMU with its day-0, instantiate (as the VNF process), health
    /// check, KPIs, drain, terminate (root)
    Onboard(onboard::OnboardArgs),
}

#[derive(Subcommand)]
enum CompareCmd {
    /// Our router over AF_XDP vs Linux IPv4 forwarding in a namespace.
    Forward(compare::CompareArgs),
    /// Our NAT44 vs Linux nftables masquerade.
    Nat(compare::CompareArgs),
    /// Our raw port I/O vs dpdk-testpmd io-forward on the same veths.
    Io(compare::CompareArgs),
    /// The monolithic vBNG vs the disaggregated one (vbng-cp + N vbng-up over
    /// PFCP/GTP-U) on the in-memory BNG lab, each in its own process (no root).
    Bng(compare_bng::CompareBngArgs),
    /// Our port I/O, router and NAT44 vs dpdk-testpmd over vhost-user and memif rings.
    Dpdk(compare_dpdk::DpdkArgs),
}

#[derive(Subcommand)]
enum LabCmd {
    /// Generator -> router VNF -> sink in one process over in-memory rings.
    Router(lab_router::RouterLabArgs),
    /// Emulated PPPoE subscribers -> vBNG -> core sink in one process (no root).
    Bng(lab_bng::BngLabArgs),
    /// Two vCPE sites (udhcpc on each LAN, a static-key IPsec tunnel across a WAN
    /// bridge) in network namespaces: leases, pings, tshark decryption, LAN-to-LAN
    /// throughput and loss (root).
    Vcpe(lab_vcpe::VcpeLabArgs),
    /// A netns lab from a scenario file (namespaces, veths, bridges, taps, processes,
    /// traffic); everything is removed at the end, on error and on Ctrl-C (root).
    Run(scenario::RunArgs),
    /// One SD-WAN key server and N emulated CPEs over UDP on loopback (no root).
    Keyserver(lab_keyserver::KeyserverLabArgs),
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    match real_main(cli) {
        Ok(code) => code,
        Err(e) => {
            // One line: the reason chain joined by ": ".
            eprintln!("testbed: {e:#}");
            ExitCode::FAILURE
        }
    }
}

fn real_main(cli: Cli) -> anyhow::Result<ExitCode> {
    let done = |r: anyhow::Result<()>| r.map(|()| ExitCode::SUCCESS);
    match cli.cmd {
        Cmd::Image(c) => done(image::main(c)),
        Cmd::Lab(LabCmd::Router(a)) => lab_router::main(a),
        Cmd::Lab(LabCmd::Bng(a)) => done(lab_bng::run(a)),
        Cmd::Lab(LabCmd::Run(a)) => done(scenario::main(a)),
        Cmd::Lab(LabCmd::Vcpe(a)) => lab_vcpe::main(a),
        Cmd::Lab(LabCmd::Keyserver(a)) => done(lab_keyserver::run(a)),
        Cmd::Compare(CompareCmd::Forward(a)) => done(compare::forward(a)),
        Cmd::Compare(CompareCmd::Nat(a)) => done(compare::nat(a)),
        Cmd::Compare(CompareCmd::Io(a)) => done(compare::io(a)),
        Cmd::Compare(CompareCmd::Bng(a)) => done(compare_bng::run(a)),
        Cmd::Onboard(a) => done(onboard::main(a)),
        Cmd::Compare(CompareCmd::Dpdk(a)) => done(compare_dpdk::main(a)),
    }
}
