//! `vbng-cp`: the control plane of the disaggregated vBNG (BBF TR-459): the
//! subscriber core (PPPoE/PPP, IPoE, RADIUS, pools, accounting) programming the user
//! planes (`vbng-up`) of its `[cups]` section over PFCP (3GPP TS 29.244, UDP 8805)
//! and exchanging the subscribers' control frames with them in GTP-U (TS 29.281, UDP
//! 2152). The config is the `vbng` config plus `[cups]` (`addr`, `ups`,
//! `measurement_period_s`, `heartbeat_s`, `t1_ms`, `n1`, `placement`). `vbng-cp check
//! -c FILE` validates it (exit status 1 with a one-line reason when refused). `run
//! --listen ADDR` serves `/metrics`, `/sessions`, `/cups` and `/restconf`
//! (`vbng::cups::app::serve`).

use clap::{Parser, Subcommand};
use std::process::ExitCode;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use vbng::config::MAX_SESSIONS;
use vbng::cups::app::{section, serve, CpApp};

#[derive(Parser)]
#[command(
    about = "vBNG control plane (BBF TR-459 CUPS): PPPoE/IPoE, RADIUS, pools; programs vbng-up user planes over PFCP"
)]
struct Cli {
    #[command(subcommand)]
    cmd: Cmd,
}

#[derive(Subcommand)]
enum Cmd {
    /// Run the control plane.
    Run {
        /// Config file (TOML): the vbng config with a `[cups]` section.
        #[arg(short, long)]
        config: String,
        /// Session slots, 1 to 1048576.
        #[arg(long, default_value_t = 131_072,
              value_parser = clap::value_parser!(u32).range(1..=i64::from(MAX_SESSIONS)))]
        max_sessions: u32,
        /// Stop after this many seconds (0 = run until killed).
        #[arg(long, default_value_t = 0)]
        duration: u64,
        /// HTTP listen address (e.g. `127.0.0.1:9180`; overrides `listen` in the
        /// config): `/metrics` (the subscriber core's series and, per user plane, its
        /// association state and sessions), `/sessions`, `/cups` (the user planes as
        /// JSON) and the management API under `/restconf`.
        #[arg(long)]
        listen: Option<String>,
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
            eprintln!("vbng-cp: {e}");
            ExitCode::FAILURE
        }
    }
}

fn real_main() -> Result<(), String> {
    match Cli::parse().cmd {
        Cmd::Check { config } => {
            let c = vbng::config::load_file(&config)?;
            let s = section(&c, true).map_err(|e| format!("{config}: {e}"))?;
            println!(
                "ok: {} pools, {} local users, radius {}, {} user planes, PFCP/GTP-U on {}",
                c.pools.len(),
                c.users.len(),
                if c.radius.is_some() { "on" } else { "off" },
                s.ups.len(),
                s.addr
            );
            Ok(())
        }
        Cmd::Run {
            config,
            max_sessions,
            duration,
            listen,
        } => {
            let c = vbng::config::load_file(&config)?;
            let app = CpApp::new(&c, max_sessions).map_err(|e| format!("{config}: {e}"))?;
            let app = Arc::new(Mutex::new(app));
            let listen = listen.or(c.listen.map(|a| a.to_string()));
            let _http = match &listen {
                Some(a) => Some(serve(app.clone(), a, c.clone())?),
                None => None,
            };
            let t0 = Instant::now();
            let mut idle = 0u32;
            while duration == 0 || t0.elapsed() < Duration::from_secs(duration) {
                let n = app
                    .lock()
                    .map_err(|_| "control plane lock poisoned")?
                    .step();
                if n == 0 {
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
            let app = app.lock().map_err(|_| "control plane lock poisoned")?;
            let s = app.stats();
            eprint!("{}", vbng::metrics::show_sessions(&app.cp.cp));
            eprintln!(
                "vbng-cp: {} associations, {} user planes lost, {} sessions established on user planes, {} deleted, {} lost, {} usage reports, {} frames redirected in, {} out",
                s.associations, s.ups_lost, s.established, s.deleted, s.sessions_lost, s.reports, s.redirected_in, s.redirected_out
            );
            Ok(())
        }
    }
}
