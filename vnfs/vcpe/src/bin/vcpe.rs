//! `vcpe`: the vCPE VNF as a Linux process.
//!
//! - `vcpe check CONFIG`: parses and checks the configuration and builds the graph
//!   and the control plane without opening a port; prints one line.
//! - `vcpe graph CONFIG`: prints the node graph (worker 0's; with several workers
//!   it holds `vcpe-steer`).
//! - `vcpe run CONFIG [--seconds N] [--listen ADDR] [--metrics FILE] [--trace N]`:
//!   opens the LAN and WAN ports from their specs (`afpacket:IF`, `afxdp:IF[:Q]`,
//!   `tap:NAME`, `pcap:IN[:OUT]`, `mem:NAME`, `memif:PATH`, `vhost-user:PATH`), runs
//!   the graph on `engine.workers` workers (one thread each, pinned to
//!   `engine.cores` when several or when given; several need a queue per worker:
//!   `afxdp:IF[:Q]` opens queues Q..Q+N-1, `vhost-user:PATH,queues=N`) joined by a
//!   hand-off mesh, and the control plane (DHCP server, IKE, key server) on a
//!   thread of its own, fed by every worker's punts; `--listen` serves `/metrics` (Prometheus), `/errors`,
//!   `/trace`, `/leases` and the management API under `/restconf` (RFC 8040; the
//!   model is `yang/vcpe@2026-12-02.yang`, see `vcpe::mgmt`). Stops on Ctrl-C/SIGTERM or after `--seconds`, then
//!   prints the port counters and `show errors`. `--esp-sa-log FILE` (opt-in, for
//!   labs) appends the key server's ESP SAs to FILE for Wireshark (`vcpe::keylink`).
//! - `vcpe api METHOD PATH [-d JSON|@FILE] [--connect ADDR]`: the management API's
//!   client; exits 1 with the server's error-message when it refused.
//!
//! Exit status: 0 done, 1 failed (the reason on one line on stderr), 2 bad command
//! line.

use anyhow::{bail, Context};
use clap::{Parser, Subcommand};
use dataplane::port::spec;
use dataplane::port::Port;
use dataplane::runner::{Runner, WorkerSpec};
use dataplane::stage::show_errors;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};
use vcpe::vnf::{self, LAN, WAN};
use vcpe::Config;

#[derive(Parser, Debug)]
#[command(
    about = "vCPE VNF: LAN DHCP, NAT44, stateful firewall, routes, IPsec tunnels",
    after_help = "Exit status: 0 done; 1 failed (the reason on one line on stderr); 2 bad command line."
)]
struct Cli {
    #[command(subcommand)]
    cmd: Cmd,
}

#[derive(Subcommand, Debug)]
enum Cmd {
    /// Check a configuration (and build the graph) without opening a port.
    Check { config: PathBuf },
    /// Print the node graph of a configuration.
    Graph { config: PathBuf },
    /// Run the vCPE.
    Run {
        config: PathBuf,
        /// Stop after this many seconds (default: until Ctrl-C or SIGTERM).
        #[arg(long)]
        seconds: Option<f64>,
        /// Serve `/metrics`, `/errors`, `/trace`, `/leases` and the management API
        /// (`/restconf`, see `vcpe api`) on this address.
        #[arg(long)]
        listen: Option<String>,
        /// Write Prometheus metrics to this file every second.
        #[arg(long)]
        metrics: Option<PathBuf>,
        /// Trace the first N packets (printed at exit; at most 16384).
        #[arg(long, default_value_t = 0)]
        trace: u32,
        /// Opt-in, for labs: append every ESP SA from the key server (keys
        /// included) to FILE as Wireshark `esp_sa` records (created 0600).
        #[arg(long, value_name = "FILE")]
        esp_sa_log: Option<PathBuf>,
    },
    /// The management API of a running vCPE (RESTCONF-shaped JSON, RFC 8040; the model
    /// is `yang/vcpe@2026-12-02.yang`): `vcpe api GET /vcpe:vcpe/state`, `vcpe api
    /// POST /vcpe:vcpe/route=10.9.0.0%2F16 -d
    /// '{"vcpe:route":[{"prefix":"10.9.0.0/16","next-hop":"198.51.100.9"}]}'`. PATH is
    /// below `/restconf/data` unless it starts with `/restconf`. Prints the answer;
    /// exits 1 with the server's error-message when it refused.
    Api {
        /// GET, PUT, PATCH, POST or DELETE.
        method: String,
        /// The resource, e.g. `/vcpe:vcpe/firewall`.
        path: String,
        /// Request body (JSON), or `@FILE`.
        #[arg(short, long)]
        data: Option<String>,
        /// Address of the vCPE's `--listen`.
        #[arg(long, default_value = "127.0.0.1:9100")]
        connect: String,
    },
}

fn main() -> ExitCode {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info")),
        )
        .with_writer(std::io::stderr)
        .with_ansi(false)
        .init();
    let cli = Cli::parse();
    match real_main(cli) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("vcpe: {e:#}");
            ExitCode::FAILURE
        }
    }
}

fn load(path: &PathBuf) -> anyhow::Result<Config> {
    let text =
        std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
    Config::from_toml(&text).with_context(|| path.display().to_string())
}

fn real_main(cli: Cli) -> anyhow::Result<()> {
    match cli.cmd {
        Cmd::Check { config } => {
            let cfg = load(&config)?;
            let b = vnf::build_workers(&cfg, &[]).with_context(|| config.display().to_string())?;
            let ike = cfg.tunnels.iter().filter(|t| t.ike.is_some()).count();
            let workers = if cfg.engine.workers > 1 {
                format!(", {} workers", cfg.engine.workers)
            } else {
                String::new()
            };
            println!(
                "ok: {}: lan {} wan {} via {}, {} route(s), {} tunnel(s) ({} static, {} ike), dhcp {}, nat {}, {} nodes{workers}",
                config.display(),
                cfg.lan.address,
                cfg.wan.address,
                cfg.wan.gateway,
                cfg.routes.len(),
                cfg.tunnels.len(),
                cfg.tunnels.len() - ike,
                ike,
                if cfg.lan.dhcp.is_some() { "on" } else { "off" },
                if cfg.nat.enabled { "on" } else { "off" },
                b.graphs.first().map_or(0, |g| g.len())
            );
            Ok(())
        }
        Cmd::Graph { config } => {
            let cfg = load(&config)?;
            // Worker 0's graph (the others differ only in which worker they are).
            let b = vnf::build_workers(&cfg, &[]).with_context(|| config.display().to_string())?;
            if let Some(g) = b.graphs.first() {
                print!("{}", g.describe());
            }
            Ok(())
        }
        Cmd::Run {
            config,
            seconds,
            listen,
            metrics,
            trace,
            esp_sa_log,
        } => run(config, seconds, listen, metrics, trace, esp_sa_log),
        Cmd::Api {
            method,
            path,
            data,
            connect,
        } => {
            let a = dataplane::http::restconf_call(&connect, &method, &path, data.as_deref())
                .map_err(anyhow::Error::msg)?;
            if !a.is_empty() {
                println!("{a}");
            }
            Ok(())
        }
    }
}

fn run(
    config: PathBuf,
    seconds: Option<f64>,
    listen: Option<String>,
    metrics: Option<PathBuf>,
    trace: u32,
    esp_sa_log: Option<PathBuf>,
) -> anyhow::Result<()> {
    let cfg = load(&config)?;
    if let Some(s) = seconds {
        if !s.is_finite() || s <= 0.0 || s > 365.0 * 86400.0 {
            bail!("--seconds: {s} is not a number of seconds in (0, 31536000]");
        }
    }
    if trace > 16384 {
        bail!("--trace: {trace} is not in 0..=16384");
    }
    let workers = cfg.engine.workers;
    // per_worker[w]: worker w's queue of the LAN and of the WAN port.
    let mut per_worker: Vec<Vec<Box<dyn Port>>> = (0..workers).map(|_| Vec::new()).collect();
    let mut macs = Vec::new();
    for (name, s) in [("lan", &cfg.lan.port), ("wan", &cfg.wan.port)] {
        let opened = spec::open_workers(s, workers).with_context(|| format!("{name}.port {s}"))?;
        for (w, (ports, p)) in per_worker.iter_mut().zip(opened).enumerate() {
            if w == 0 {
                macs.push(p.mac().unwrap_or([0x02, 0xc9, 0, 0, 0, macs.len() as u8]));
            }
            ports.push(p);
        }
    }
    let mut built =
        vnf::build_workers(&cfg, &macs).with_context(|| config.display().to_string())?;
    if let Some(p) = &esp_sa_log {
        built.control.export_sas(p)?;
    }
    let pool =
        dataplane::buf::Pool::new(cfg.engine.pool_buffers).context("allocating the buffer pool")?;
    // The workers' punts share one lock-free ring to the control thread, as do its
    // answers (whichever worker takes one sends it on its own queue).
    let punt = dataplane::worker::ring(1024);
    let inject = dataplane::worker::ring(1024);
    let mut mesh = dataplane::worker::handoff_mesh(workers, 4096).into_iter();
    let links: Vec<vcpe::mgmt::WorkerLink> = (0..workers)
        .map(|_| vcpe::mgmt::WorkerLink::new())
        .collect();
    let mut wspecs = Vec::with_capacity(workers);
    for (w, (ports, mut graph)) in per_worker
        .into_iter()
        .zip(std::mem::take(&mut built.graphs))
        .enumerate()
    {
        graph.trace_next(trace);
        let mut ws = WorkerSpec::new(ports, graph, pool.cache());
        ws.punt = Some(punt.clone());
        ws.inject = Some(inject.clone());
        ws.hooks.push(ipsec::stage::update_hook());
        ws.hooks.push(vcpe::mgmt::update_hook(&links[w]));
        ws.trace = if trace > 0 {
            64 * trace as usize
        } else {
            cfg.engine.trace
        };
        if workers > 1 {
            ws.handoff = mesh.next();
        }
        // One worker without `engine.cores` stays unpinned, as it always was.
        if workers > 1 || !cfg.engine.cores.is_empty() {
            ws.core = Some(dataplane::runner::core_for(w, &cfg.engine.cores));
        }
        wspecs.push(ws);
    }
    let runner = Runner::start(wspecs).context("starting the workers")?;
    let stats = built.control.stats.clone();
    let ike_metrics = built.control.ike_metrics();
    let key_stats = built.control.keylink().map(|k| k.stats.clone());
    let cp_stop = Arc::new(AtomicBool::new(false));
    let cp_thread = {
        let (stop, cache, cp) = (cp_stop.clone(), pool.cache(), built.control);
        std::thread::Builder::new()
            .name("vcpe-control".into())
            .spawn(move || vcpe::control::run(cp, punt, inject, cache, stop))
            .context("starting the control thread")?
    };
    let extra = {
        let stats = stats.clone();
        let ike = ike_metrics.clone();
        let keys = key_stats.clone();
        move || {
            let mut s = stats.prometheus();
            if let Some(m) = &ike {
                s.push_str(&m.prometheus());
            }
            if let Some(k) = &keys {
                s.push_str(&k.prometheus());
            }
            s
        }
    };
    let _http = match &listen {
        Some(a) => {
            let src = runner.snapshot_source();
            let extra = extra.clone();
            let stats = stats.clone();
            let mgmt = std::sync::Mutex::new(vcpe::mgmt::Mgmt::new(
                &built.vcpe,
                links.clone(),
                Some(stats.clone()),
                key_stats.clone(),
            ));
            let h: dataplane::http::Handler = Arc::new(move |r| {
                use dataplane::http::Response;
                let snaps = src.snapshots();
                if r.path == "/restconf" || r.path.starts_with("/restconf/") {
                    // One change at a time; the worker keeps forwarding meanwhile.
                    let Ok(mut m) = mgmt.lock() else {
                        return Response::error(500, "management API unavailable");
                    };
                    let a = m.handle(&r.method, &r.path, &r.query, &r.body, &snaps);
                    let yang = r.path.starts_with("/restconf/yang/") && a.status == 200;
                    return Response {
                        status: a.status,
                        content_type: if yang {
                            "application/yang"
                        } else {
                            vcpe::mgmt::MEDIA
                        },
                        body: a.body,
                    };
                }
                match r.path.as_str() {
                    "/metrics" => Response::metrics(format!(
                        "{}{}",
                        dataplane::runner::prometheus(&snaps),
                        extra()
                    )),
                    "/errors" => {
                        Response::text(show_errors(snaps.iter().flat_map(|s| s.nodes.iter())))
                    }
                    "/trace" => Response::text(snaps.iter().map(|s| s.trace.as_str()).collect()),
                    "/leases" => {
                        let l = stats
                            .lease_list
                            .lock()
                            .map(|l| l.clone())
                            .unwrap_or_default();
                        Response::text(
                            l.iter()
                                .map(|(m, a)| {
                                    format!("{} {a}\n", dataplane::proto::ethernet::MacAddr(*m))
                                })
                                .collect(),
                        )
                    }
                    _ => {
                        Response::error(404, "try /metrics, /errors, /trace, /leases or /restconf")
                    }
                }
            });
            let srv = dataplane::http::HttpServer::spawn(a, h)
                .with_context(|| format!("--listen {a}"))?;
            tracing::info!("vcpe: metrics on http://{}/metrics", srv.addr());
            Some(srv)
        }
        None => None,
    };
    let quit = Arc::new(AtomicBool::new(false));
    let q = quit.clone();
    ctrlc::set_handler(move || q.store(true, Ordering::Relaxed)).ok();
    tracing::info!(
        "vcpe ready: lan {} ({}), wan {} ({}), {} tunnel(s), {} worker(s)",
        cfg.lan.address,
        cfg.lan.port,
        cfg.wan.address,
        cfg.wan.port,
        cfg.tunnels.len(),
        workers
    );
    let t0 = Instant::now();
    let mut last_print = Instant::now();
    let stop = runner.stop_flag();
    while !stop.load(Ordering::Relaxed) && !quit.load(Ordering::Relaxed) {
        std::thread::sleep(Duration::from_millis(100));
        if seconds.is_some_and(|s| t0.elapsed().as_secs_f64() >= s) {
            break;
        }
        if let Some(m) = &metrics {
            let snaps = runner.snapshots();
            let _ = std::fs::write(
                m,
                format!("{}{}", dataplane::runner::prometheus(&snaps), extra()),
            );
        }
        let iv = cfg.engine.stats_interval;
        if iv > 0 && last_print.elapsed().as_secs() >= u64::from(iv) {
            last_print = Instant::now();
            let snaps = runner.snapshots();
            let (rx, tx) = snaps
                .iter()
                .flat_map(|s| s.ports.iter())
                .fold((0, 0), |(r, t), p| (r + p.1.rx_packets, t + p.1.tx_packets));
            tracing::info!("vcpe: rx {rx} tx {tx}");
        }
    }
    cp_stop.store(true, Ordering::Relaxed);
    let _ = cp_thread.join();
    let fin = runner.stop();
    if let Some(m) = &metrics {
        let _ = std::fs::write(
            m,
            format!("{}{}", dataplane::runner::prometheus(&fin), extra()),
        );
    }
    for (w, s) in fin.iter().enumerate() {
        // One worker: the lines as they always were; several: each names its worker.
        let who = if workers > 1 {
            format!("worker {w} ")
        } else {
            String::new()
        };
        for (i, (name, st)) in s.ports.iter().enumerate() {
            let side = match i as u16 {
                LAN => "lan",
                WAN => "wan",
                _ => "port",
            };
            eprintln!(
                "{who}{side} {name}: rx {} tx {} rx_dropped {} tx_dropped {}",
                st.rx_packets, st.tx_packets, st.rx_dropped, st.tx_dropped
            );
        }
        if !s.trace.is_empty() {
            if workers > 1 {
                eprintln!("trace (worker {w}):\n{}", s.trace);
            } else {
                eprintln!("trace:\n{}", s.trace);
            }
        }
    }
    eprint!("{}", show_errors(fin.iter().flat_map(|s| s.nodes.iter())));
    Ok(())
}
