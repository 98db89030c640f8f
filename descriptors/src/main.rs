//! `descriptors`: build and validate ETSI VNF packages (SOL004 CSAR, OSM SOL006).

use clap::{Parser, Subcommand, ValueEnum};
use std::path::PathBuf;
use std::process::ExitCode;

#[derive(Parser)]
#[command(
    name = "descriptors",
    about = "ETSI SOL001/SOL004 CSAR and SOL006/OSM packages for our VNFs"
)]
struct Cli {
    #[command(subcommand)]
    cmd: Cmd,
}

#[derive(Clone, Copy, ValueEnum)]
enum Fmt {
    /// SOL004 CSAR with a SOL001 TOSCA VNFD (ONAP)
    Csar,
    /// SOL006 VNF and NS packages as OSM expects them
    Osm,
}

#[derive(Subcommand)]
enum Cmd {
    /// Build a package for a VNF (router, vbng, vcpe, keyserver, or a model .yaml/.json file)
    Package {
        /// VNF name or model file
        vnf: String,
        /// Package format
        #[arg(long, value_enum)]
        format: Fmt,
        /// Only this deployment flavour (default: all)
        #[arg(long)]
        flavour: Option<String>,
        /// Software image file (default: target/images/<vnf>.qcow2 under the current
        /// directory, where `testbed image build` writes it)
        #[arg(long)]
        image: Option<PathBuf>,
        /// Output: the .csar file (csar) or a folder (osm)
        #[arg(short, long)]
        out: PathBuf,
        /// Replace an existing output
        #[arg(long)]
        force: bool,
        /// Sign the CSAR manifest with this PEM private key (CMS, SOL004 5.3)
        #[arg(long, requires = "sign_cert")]
        sign_key: Option<PathBuf>,
        /// X.509 certificate (PEM) of the signing key, shipped as <vnf>.cert
        #[arg(long, requires = "sign_key")]
        sign_cert: Option<PathBuf>,
    },
    /// Validate a package: a .csar, an OSM package folder/.tar.gz, or a folder of them
    Validate {
        /// Package path
        path: PathBuf,
    },
    /// Print a built-in model as YAML (a starting point for a model file)
    Model {
        /// VNF name
        vnf: String,
    },
}

fn run(cli: Cli) -> anyhow::Result<()> {
    match cli.cmd {
        Cmd::Package {
            vnf,
            format,
            flavour,
            image,
            out,
            force,
            sign_key,
            sign_cert,
        } => {
            if sign_key.is_some() && matches!(format, Fmt::Osm) {
                anyhow::bail!("--sign-key/--sign-cert: only CSAR manifests are signed");
            }
            let m = descriptors::load_model(&vnf)?;
            let opts = descriptors::BuildOptions {
                format: match format {
                    Fmt::Csar => descriptors::Format::Csar,
                    Fmt::Osm => descriptors::Format::Osm,
                },
                flavour,
                image,
                out: out.clone(),
                force,
                sign: sign_key
                    .zip(sign_cert)
                    .map(|(key, cert)| descriptors::csar::Signing { key, cert }),
            };
            descriptors::build(&m, &opts)?;
            println!("wrote {}", out.display());
        }
        Cmd::Validate { path } => {
            let report = descriptors::validate::validate(&path)?;
            print!("{report}");
        }
        Cmd::Model { vnf } => {
            let m = descriptors::load_model(&vnf)?;
            print!("{}", serde_norway::to_string(&m)?);
        }
    }
    Ok(())
}

fn main() -> ExitCode {
    match run(Cli::parse()) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::FAILURE
        }
    }
}
