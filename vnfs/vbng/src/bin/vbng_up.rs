//! `vbng-up`: a user plane of the disaggregated vBNG (BBF TR-459): the `vbng` fast
//! path (`vbng::vnf::build`, no AAA) on its access and core ports, programmed by its
//! control plane (`vbng-cp`) over PFCP (3GPP TS 29.244, UDP 8805); the subscribers'
//! control frames go to the control plane in GTP-U (TS 29.281, UDP 2152) and its
//! answers come back the same way. The config is the `vbng` config's data-plane part
//! (`ports`, `mac`, `core_ip`, `core_next_hop_mac`, ...) plus `[cups]` (`addr`: our
//! PFCP/GTP-U address and Node ID, `cp`: the control plane's address,
//! `heartbeat_s`). `vbng-up check -c FILE` validates it.
//!
//! `workers = N` and `cores = [..]` (or `--workers N`, `--cores 2,3`) run the fast
//! path as N worker graphs, each in a thread pinned to its core, with the same
//! meaning as in the monolithic `vbng`: with several workers the ports must be
//! `afxdp:IFACE:QUEUE` (worker k opens queue QUEUE+k) or `afpacket:IFACE` (a socket
//! per worker in a fanout group); a frame reaching a worker that does not own its
//! subscriber is handed over (counted `handed_off`).

use clap::{Parser, Subcommand};
use dataplane::stage::show_errors;
use std::process::ExitCode;
use std::time::{Duration, Instant};
use vbng::config::MAX_SESSIONS;
use vbng::cups::app::{check_up_workers, section, UpApp};

#[derive(Parser)]
#[command(
    about = "vBNG user plane (BBF TR-459 CUPS): the fast path programmed by vbng-cp over PFCP"
)]
struct Cli {
    #[command(subcommand)]
    cmd: Cmd,
}

#[derive(Subcommand)]
enum Cmd {
    /// Run the user plane.
    Run {
        /// Config file (TOML) with a `[cups]` section.
        #[arg(short, long)]
        config: String,
        /// Access port spec (overrides `ports.access`).
        #[arg(long)]
        access: Option<String>,
        /// Core port spec (overrides `ports.core`).
        #[arg(long)]
        core: Option<String>,
        /// Session slots, 1 to 1048576.
        #[arg(long, default_value_t = 131_072,
              value_parser = clap::value_parser!(u32).range(1..=i64::from(MAX_SESSIONS)))]
        max_sessions: u32,
        /// Stop after this many seconds (0 = run until killed).
        #[arg(long, default_value_t = 0)]
        duration: u64,
        /// Open the ports only once the control plane has associated and set up the
        /// redirect session, or after this many seconds (0 = at once).
        #[arg(long, default_value_t = 0)]
        wait_cp: u64,
        /// Workers (overrides `workers`): with several, the access and core ports
        /// must be `afxdp:IFACE:QUEUE` (worker k opens queue QUEUE+k) or
        /// `afpacket:IFACE` (a socket per worker in a fanout group).
        #[arg(long, value_parser = clap::value_parser!(u16).range(1..=i64::from(vbng::config::MAX_WORKERS)))]
        workers: Option<u16>,
        /// The workers' cores, one per worker, comma-separated (overrides `cores`).
        #[arg(long, value_delimiter = ',')]
        cores: Option<Vec<usize>>,
    },
    /// Validate a config file; exits 1 with a one-line reason when refused.
    Check {
        /// Config file (TOML).
        #[arg(short, long)]
        config: String,
    },
}

fn main() -> ExitCode {
    match real_main() {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("vbng-up: {e}");
            ExitCode::FAILURE
        }
    }
}

fn real_main() -> Result<(), String> {
    match Cli::parse().cmd {
        Cmd::Check { config } => {
            let c = vbng::config::load_file(&config)?;
            let s = section(&c, false).map_err(|e| format!("{config}: {e}"))?;
            check_up_workers(&c).map_err(|e| format!("{config}: {e}"))?;
            println!(
                "ok: PFCP/GTP-U on {}, control plane {}",
                s.addr,
                s.cp.map_or_else(String::new, |a| a.to_string())
            );
            Ok(())
        }
        Cmd::Run {
            config,
            access,
            core,
            max_sessions,
            duration,
            wait_cp,
            workers,
            cores,
        } => {
            let mut c = vbng::config::load_file(&config)?;
            section(&c, false).map_err(|e| format!("{config}: {e}"))?;
            if let Some(n) = workers {
                c.workers = n;
            }
            if let Some(list) = cores {
                c.cores = list;
            }
            check_up_workers(&c).map_err(|e| format!("{config}: {e}"))?;
            let access = access.unwrap_or_else(|| c.ports.access.clone());
            let core = core.unwrap_or_else(|| c.ports.core.clone());
            if access.is_empty() || core.is_empty() {
                return Err(
                    "no access/core port: set ports.access and ports.core or pass --access/--core"
                        .into(),
                );
            }
            let t0 = Instant::now();
            let ports = vbng::runtime::open_ports(&access, &core, c.workers.max(1))?;
            let mut app = UpApp::with_workers(&c, ports, max_sessions, wait_cp > 0, &c.cores)
                .map_err(|e| format!("{config}: {e}"))?;
            // The worker waits for the control plane's redirect session (or wait_cp).
            while !app.up.has_redirect() && t0.elapsed() < Duration::from_secs(wait_cp) {
                if app.step() == 0 {
                    std::thread::sleep(Duration::from_millis(1));
                }
            }
            app.release();
            let mut idle = 0u32;
            while (duration == 0 || t0.elapsed() < Duration::from_secs(duration))
                && !app.worker_finished()
            {
                if app.step() == 0 {
                    idle += 1;
                    if idle > 16 {
                        std::thread::sleep(Duration::from_micros(if idle > 1000 {
                            500
                        } else {
                            100
                        }));
                    }
                } else {
                    idle = 0;
                }
            }
            let s = app.stats();
            let n = app.up.session_count();
            let fin = app.stop_workers()?;
            let handed: u64 = fin.iter().map(|w| w.worker.handed_off).sum();
            if fin.len() == 1 {
                if let Some(w) = fin.first() {
                    eprint!("{}", show_errors(w.nodes.iter()));
                }
            } else {
                for (k, w) in fin.iter().enumerate() {
                    eprint!("worker {k}:\n{}", show_errors(w.nodes.iter()));
                }
                eprintln!(
                    "vbng-up: {} workers, {handed} packets handed between them",
                    fin.len()
                );
            }
            eprintln!(
                "vbng-up: {n} sessions, {} established, {} deleted, {} requests refused, {} frames redirected, {} injected, {} punts and {} GTP-U packets dropped, {} usage reports",
                s.sessions_established, s.sessions_deleted, s.requests_refused, s.redirected, s.injected, s.punt_dropped, s.gtpu_dropped, s.reports
            );
            Ok(())
        }
    }
}
