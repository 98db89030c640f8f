//! `vbng`: the vBNG as a Linux process over any port spec (`mem:`, `pcap:`, `tap:`,
//! `afpacket:`, `afxdp:`). `vbng run -c vbng.toml` composes the vBNG with
//! [`vbng::vnf::build`] and runs it on the engine's runtime: the worker graph on a
//! `dataplane::worker::Worker` in its own thread, the control plane (PPPoE, PPP,
//! RADIUS, timers) in another, joined by the punt ring (control frames in) and the
//! inject ring (its frames out; a backlog holds what a full ring cannot take), table
//! updates through the fast path's lock-free queues. `--listen` (or `listen` in the
//! config) serves, from threads of their own (`dataplane::http`), `GET /metrics`
//! (Prometheus; `GET /metrics?sessions` adds per-session series), `/sessions`,
//! `/errors`, `/trace` (`/trace?add=N` traces the next N packets) and `/graph`;
//! `vbng show sessions|metrics|errors|trace|graph --connect ADDR` prints them from a
//! running instance; `vbng check -c FILE` validates a config (exit status 1 with a
//! one-line reason when it is refused).
//!
//! Limits: `--max-sessions` 1 to 1048576 (`vbng::config::MAX_SESSIONS`; the tables
//! for every slot are allocated at start); the config's own limits are listed in the
//! README and enforced by `Config::validate`. A relative `user_file` is read from the
//! config file's directory.

use anyhow::{bail, Context};
use clap::{Parser, Subcommand};
use dataplane::port::Port;
use dataplane::stage::show_errors;
use std::path::Path;
use std::process::ExitCode;
use std::time::{Duration, Instant};
use vbng::config::{Config, MAX_SESSIONS};
use vbng::radius_io::RadiusIo;
use vbng::rng::Rng;
use vbng::runtime::{Options, MAX_TRACE};
use vbng::vnf::{BuildEnv, CORE_PORT};

#[derive(Parser)]
#[command(about = "vBNG: PPPoE subscribers with RADIUS AAA on the packet engine")]
struct Cli {
    #[command(subcommand)]
    cmd: Cmd,
}

#[derive(Subcommand)]
enum Cmd {
    /// Run the vBNG.
    Run {
        /// Config file (TOML).
        #[arg(short, long)]
        config: String,
        /// Access port spec (overrides `ports.access`).
        #[arg(long)]
        access: Option<String>,
        /// Core port spec (overrides `ports.core`).
        #[arg(long)]
        core: Option<String>,
        /// Session slots, 1 to 1048576 (tables for every slot are allocated at start,
        /// about 300 bytes each).
        #[arg(long, default_value_t = 131_072,
              value_parser = clap::value_parser!(u32).range(1..=i64::from(MAX_SESSIONS)))]
        max_sessions: u32,
        /// HTTP listen address for /metrics, /sessions, /errors, /trace and /graph
        /// (overrides `listen`); served from threads of their own, off the data plane.
        #[arg(long)]
        listen: Option<String>,
        /// Stop after this many seconds (0 = run until killed).
        #[arg(long, default_value_t = 0)]
        duration: u64,
        /// Trace the first N packets (VPP `trace add`; `GET /trace` shows them,
        /// `GET /trace?add=N` traces the next N; printed at exit), 0 to 16384.
        #[arg(long, default_value_t = 0,
              value_parser = clap::value_parser!(u32).range(0..=i64::from(MAX_TRACE)))]
        trace: u32,
        /// Workers (overrides `workers`): with several, the access and core ports
        /// must be `afxdp:IFACE:QUEUE` (worker k opens queue QUEUE+k) or
        /// `afpacket:IFACE` (a socket per worker in a fanout group).
        #[arg(long, value_parser = clap::value_parser!(u16).range(1..=i64::from(vbng::config::MAX_WORKERS)))]
        workers: Option<u16>,
    },
    /// Validate a config file and its user file (limits: see the README); exits 1
    /// with a one-line reason when refused.
    Check {
        /// Config file (TOML).
        #[arg(short, long)]
        config: String,
    },
    /// The management API of a running instance (RESTCONF-shaped JSON, RFC 8040;
    /// the model is `yang/vbng@2026-12-02.yang`): `vbng api GET /vbng:vbng`,
    /// `vbng api PATCH /vbng:vbng/subscriber-defaults -d '{"vbng:subscriber-defaults":
    /// {"rate-down":"20000000"}}'`, `vbng api POST
    /// /vbng:vbng/state/session=3/disconnect`. PATH is below `/restconf/data` unless
    /// it starts with `/restconf`. Prints the answer; exits 1 with the server's
    /// error-message when it refused.
    Api {
        /// GET, PUT, PATCH, POST or DELETE.
        method: String,
        /// The resource, e.g. `/vbng:vbng/user=alice`.
        path: String,
        /// Request body (JSON), or `@FILE`.
        #[arg(short, long)]
        data: Option<String>,
        /// Address of the instance's `--listen`.
        #[arg(long, default_value = "127.0.0.1:9180")]
        connect: String,
    },
    /// Query a running instance.
    Show {
        /// What to show: `sessions`, `metrics`, `errors`, `trace` or `graph`.
        what: String,
        /// Address of the instance's `--listen`.
        #[arg(long, default_value = "127.0.0.1:9180")]
        connect: String,
    },
}

/// Read and validate a config (`vbng::config::load_file`); the `[cups]` section is
/// for `vbng-cp` and `vbng-up` only.
fn load(path: &str) -> anyhow::Result<Config> {
    let cfg = vbng::config::load_file(path).map_err(|e| anyhow::anyhow!("{e}"))?;
    if cfg.cups.is_some() {
        bail!("{path}: [cups] is for vbng-cp and vbng-up, not the monolithic vbng");
    }
    Ok(cfg)
}

/// Each worker's (access, core) ports ([`vbng::runtime::open_ports`]).
fn open_ports(access: &str, core: &str, workers: u16) -> anyhow::Result<Vec<Vec<Box<dyn Port>>>> {
    vbng::runtime::open_ports(access, core, workers).map_err(|e| anyhow::anyhow!("{e}"))
}

#[allow(clippy::too_many_arguments)]
fn run(
    cfg: Config,
    access: String,
    core: String,
    max_sessions: u32,
    listen: Option<String>,
    duration: u64,
    trace: u32,
) -> anyhow::Result<()> {
    let workers = cfg.workers.max(1);
    let ports = open_ports(&access, &core, workers)?;
    let core_mac = ports
        .first()
        .and_then(|p| p.get(usize::from(CORE_PORT)))
        .and_then(|p| p.mac())
        .unwrap_or([0x02, 0, 0, 0, 0xc0, 0x02]);
    let env = BuildEnv::new(core_mac, max_sessions, Rng::from_os());
    let (mut v, more_graphs) =
        vbng::vnf::build_workers(&cfg, &env, workers).map_err(|e| anyhow::anyhow!("{e}"))?;
    let io = match &cfg.radius {
        Some(r) => {
            let mut io = RadiusIo::bind("0.0.0.0:0".parse()?, 4, r.coa_listen)?;
            if let Some(path) = r.acct_journal.as_deref() {
                let (j, records) = vbng::acct_journal::AcctJournal::open(Path::new(path))
                    .with_context(|| format!("accounting journal {path}"))?;
                if j.skipped_bytes > 0 {
                    tracing::warn!(
                        journal = path,
                        octets = j.skipped_bytes,
                        "radius: accounting journal {path}: {} octets of a torn or corrupt tail ignored",
                        j.skipped_bytes
                    );
                }
                if !records.is_empty() {
                    tracing::info!(
                        journal = path,
                        records = records.len(),
                        "radius: {} unacknowledged accounting records replayed from {path}",
                        records.len()
                    );
                }
                v.control.cp.restore_acct(records, 0);
                io.set_journal(j);
            }
            Some(io)
        }
        None => None,
    };
    let lease_journal = cfg
        .ipoe
        .as_ref()
        .and_then(|i| i.lease_journal.as_deref())
        .map(std::path::PathBuf::from);
    if let Some(path) = &lease_journal {
        match std::fs::read(path) {
            Ok(bytes) => {
                let unix_ms = std::time::SystemTime::now()
                    .duration_since(std::time::UNIX_EPOCH)
                    .map_or(0, |d| d.as_millis() as u64);
                // A torn or foreign journal restores nothing; the clients' renewals
                // bind their addresses again (RFC 2131 §4.3.2, RENEWING).
                match v
                    .control
                    .cp
                    .ipoe_restore(vbng::vnf::ACCESS_PORT, &bytes, 0, unix_ms)
                {
                    Ok(r) => tracing::info!(
                        journal = %path.display(),
                        restored = r.restored,
                        "ipoe: {} leases restored from {} ({} expired while down, {} refused)",
                        r.restored,
                        path.display(),
                        r.expired,
                        r.refused
                    ),
                    Err(e) => tracing::warn!(
                        journal = %path.display(),
                        "ipoe: lease journal {}: {e}; no lease restored",
                        path.display()
                    ),
                }
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => return Err(anyhow::anyhow!("lease journal {}: {e}", path.display())),
        }
    }
    tracing::info!(
        access = %access,
        core = %core,
        max_sessions,
        "vbng: access {access}, core {core}, {max_sessions} session slots{}",
        match &v.nat {
            Some(n) => format!(", cgnat pool {}", n.pool.join(" ")),
            None => String::new(),
        }
    );
    let opts = Options {
        listen: listen.or(cfg.listen.map(|a| a.to_string())),
        trace,
        lease_journal,
        config: Some(cfg.clone()),
        cores: cfg.cores.clone(),
        ..Options::default()
    };
    let r = vbng::runtime::start_workers(v, more_graphs, ports, io, &opts)
        .map_err(|e| anyhow::anyhow!("{e}"))?;
    let t0 = Instant::now();
    while (duration == 0 || t0.elapsed() < Duration::from_secs(duration)) && !r.is_finished() {
        std::thread::sleep(Duration::from_millis(20));
    }
    let fin = r.stop().map_err(|e| anyhow::anyhow!("{e}"))?;
    if let Ok(c) = fin.control.lock() {
        eprint!("{}", vbng::metrics::show_sessions(&c.cp));
    }
    if trace > 0 && !fin.worker.trace.is_empty() {
        eprint!("{}", fin.worker.trace);
    }
    eprint!("{}", show_errors(fin.worker.nodes.iter()));
    Ok(())
}

fn main() -> ExitCode {
    match real_main() {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            // One line: the reason chain joined by ": ".
            eprintln!("vbng: {e:#}");
            ExitCode::FAILURE
        }
    }
}

fn real_main() -> anyhow::Result<()> {
    // Logs: `tracing` to stderr, filtered by RUST_LOG (default `info`); reports
    // (`check`, `show`, the session table and drops at exit) stay plain text.
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info")),
        )
        .with_writer(std::io::stderr)
        .with_ansi(false)
        .init();
    match Cli::parse().cmd {
        Cmd::Run {
            config,
            access,
            core,
            max_sessions,
            listen,
            duration,
            trace,
            workers,
        } => {
            let mut cfg = load(&config)?;
            if let Some(n) = workers {
                cfg.workers = n;
                if !cfg.cores.is_empty() && cfg.cores.len() != usize::from(n) {
                    bail!(
                        "--workers {n}: the config's cores list names {} cores",
                        cfg.cores.len()
                    );
                }
            }
            let access = access.unwrap_or_else(|| cfg.ports.access.clone());
            let core = core.unwrap_or_else(|| cfg.ports.core.clone());
            if access.is_empty() || core.is_empty() {
                bail!(
                    "no access/core port: set ports.access and ports.core or pass --access/--core"
                );
            }
            run(cfg, access, core, max_sessions, listen, duration, trace)
        }
        Cmd::Check { config } => {
            let c = load(&config)?;
            println!(
                "ok: {} pools, {} local users, radius {}",
                c.pools.len(),
                c.users.len(),
                if c.radius.is_some() { "on" } else { "off" }
            );
            Ok(())
        }
        Cmd::Api {
            method,
            path,
            data,
            connect,
        } => {
            let method = method.to_ascii_uppercase();
            if !matches!(method.as_str(), "GET" | "PUT" | "PATCH" | "POST" | "DELETE") {
                bail!("method {method:?}: GET, PUT, PATCH, POST or DELETE");
            }
            let body = match data.as_deref() {
                Some(d) => match d.strip_prefix('@') {
                    Some(f) => std::fs::read(f).with_context(|| format!("reading {f}"))?,
                    None => d.as_bytes().to_vec(),
                },
                None => Vec::new(),
            };
            let path = if path.starts_with("/restconf") {
                path
            } else {
                format!("/restconf/data/{}", path.trim_start_matches('/'))
            };
            let (status, answer) =
                dataplane::http::request(&connect, &method, &path, vbng::mgmt::MEDIA, &body)
                    .map_err(|e| anyhow::anyhow!("{e}"))?;
            if status >= 400 {
                // The RFC 8040 error body's message, else its first line.
                let msg = serde_json::from_str::<serde_json::Value>(&answer)
                    .ok()
                    .and_then(|v| {
                        v.pointer("/ietf-restconf:errors/error/0/error-message")
                            .and_then(|m| m.as_str().map(str::to_string))
                    })
                    .unwrap_or_else(|| answer.lines().next().unwrap_or("").to_string());
                bail!("{method} {path}: HTTP {status}: {msg}");
            }
            if !answer.is_empty() {
                println!("{answer}");
            }
            Ok(())
        }
        Cmd::Show { what, connect } => {
            let path = match what.as_str() {
                "sessions" => "/sessions",
                "metrics" => "/metrics",
                "errors" => "/errors",
                "trace" => "/trace",
                "graph" => "/graph",
                w => bail!("show what? {w:?}: sessions, metrics, errors, trace or graph"),
            };
            print!(
                "{}",
                dataplane::http::get(&connect, path).map_err(|e| anyhow::anyhow!("{e}"))?
            );
            Ok(())
        }
    }
}
