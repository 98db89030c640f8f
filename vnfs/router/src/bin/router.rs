//! `router --config FILE`: the router VNF as a Linux process over the port specs of
//! its interfaces (`afxdp:IFACE[:QUEUE]`, `afpacket:IFACE`, `tap:NAME`,
//! `pcap:IN[:OUT]`, `mem:NAME`). Prints counters every `engine.stats_interval`
//! seconds, Prometheus text with `--metrics FILE` (rewritten every second) and over
//! HTTP with `--listen ADDR` (`/metrics`, `/errors`, `/trace`), and
//! `show errors` at exit (Ctrl-C, or `--seconds N`, or when every pcap input ends).
//! With `--listen`, the management API (RESTCONF-shaped JSON, RFC 8040; the model
//! is `yang/router@2026-12-02.yang`, see `vnf_router::mgmt`) is served under
//! `/restconf`; `router api METHOD PATH [-d JSON|@FILE] [--connect ADDR]` is its
//! client. `--check` checks the configuration (and its route file) without opening a port.
//! Exit status: 0 done, 1 failed (the reason on one line on stderr), 2 bad command
//! line.

use anyhow::{bail, Context};
use clap::Parser;
use dataplane::port::spec::{self, PortSpec};
use dataplane::port::Port;
use dataplane::runner::{Runner, WorkerSpec};
use dataplane::stage::show_errors;
use std::process::ExitCode;
use std::time::{Duration, Instant};
use vnf_router::{Config, Router};

#[derive(Parser, Debug)]
#[command(
    about = "IPv4/IPv6 router VNF",
    after_help = "Exit status: 0 done (stopped by --seconds, Ctrl-C or the end of every pcap \
                  input; or --check passed); 1 failed (the reason on one line on stderr); \
                  2 bad command line."
)]
#[command(subcommand_negates_reqs = true, args_conflicts_with_subcommands = true)]
struct Cli {
    #[command(subcommand)]
    cmd: Option<Cmd>,
    /// Router configuration (TOML)
    #[arg(long, required = true)]
    config: Option<std::path::PathBuf>,
    /// Stop after this many seconds (default: until Ctrl-C or all pcap inputs end)
    #[arg(long)]
    seconds: Option<f64>,
    /// Write Prometheus metrics to this file every second
    #[arg(long)]
    metrics: Option<std::path::PathBuf>,
    /// Serve `GET /metrics` (Prometheus), `/errors`, `/trace` and the management API
    /// (`/restconf`, see `router api`) on this address
    /// (e.g. `127.0.0.1:9100`), from a thread of its own: a slow scraper never stalls
    /// forwarding
    #[arg(long)]
    listen: Option<String>,
    /// Print the node graph of one worker (node -> next nodes) and exit
    #[arg(long)]
    show_graph: bool,
    /// Trace the first N packets (printed at exit; at most 16384)
    #[arg(long, default_value_t = 0)]
    trace: u32,
    /// Check the configuration and its route file (routes, neighbours, port specs),
    /// print one line and exit; no port is opened
    #[arg(long)]
    check: bool,
}

#[derive(clap::Subcommand, Debug)]
enum Cmd {
    /// The management API of a running router (RESTCONF-shaped JSON, RFC 8040; the
    /// model is `yang/router@2026-12-02.yang`): `router api GET /router:router`,
    /// `router api POST /router:router/route=10.9.0.0%2F16 -d
    /// '{"router:route":[{"prefix":"10.9.0.0/16","next-hop":"192.0.2.2"}]}'`. PATH is
    /// below `/restconf/data` unless it starts with `/restconf`. Prints the answer;
    /// exits 1 with the server's error-message when it refused.
    Api {
        /// GET, PUT, PATCH, POST or DELETE.
        method: String,
        /// The resource, e.g. `/router:router/qos/policer`.
        path: String,
        /// Request body (JSON), or `@FILE`.
        #[arg(short, long)]
        data: Option<String>,
        /// Address of the router's `--listen`.
        #[arg(long, default_value = "127.0.0.1:9100")]
        connect: String,
    },
}

fn api(method: &str, path: &str, data: Option<&str>, connect: &str) -> anyhow::Result<()> {
    let method = method.to_ascii_uppercase();
    if !matches!(method.as_str(), "GET" | "PUT" | "PATCH" | "POST" | "DELETE") {
        bail!("method {method:?}: GET, PUT, PATCH, POST or DELETE");
    }
    let body = match data {
        Some(d) => match d.strip_prefix('@') {
            Some(f) => std::fs::read(f).with_context(|| format!("reading {f}"))?,
            None => d.as_bytes().to_vec(),
        },
        None => Vec::new(),
    };
    let path = if path.starts_with("/restconf") {
        path.to_string()
    } else {
        format!("/restconf/data/{}", path.trim_start_matches('/'))
    };
    let (status, answer) =
        dataplane::http::request(connect, &method, &path, vnf_router::mgmt::MEDIA, &body)
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

fn main() -> ExitCode {
    match real_main() {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            // One line: the reason chain joined by ": ".
            eprintln!("router: {e:#}");
            ExitCode::FAILURE
        }
    }
}

fn real_main() -> anyhow::Result<()> {
    // Logs: `tracing` to stderr, filtered by RUST_LOG (default `info`).
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info")),
        )
        .with_writer(std::io::stderr)
        .with_ansi(false)
        .init();
    let cli = Cli::parse();
    if let Some(Cmd::Api {
        method,
        path,
        data,
        connect,
    }) = &cli.cmd
    {
        return api(method, path, data.as_deref(), connect);
    }
    let Some(config) = &cli.config else {
        bail!("--config is required");
    };
    let cli_config = config.clone();
    let text = std::fs::read_to_string(&cli_config)
        .with_context(|| format!("reading {}", cli_config.display()))?;
    let cfg = Config::from_toml(&text).with_context(|| cli_config.display().to_string())?;
    if let Some(s) = cli.seconds {
        if !s.is_finite() || s <= 0.0 || s > 365.0 * 86400.0 {
            bail!("--seconds: {s} is not a number of seconds in (0, 31536000]");
        }
    }
    if cli.trace > vnf_router::config::limits::MAX_TRACE_PACKETS {
        bail!(
            "--trace: {} is not in 0..={}",
            cli.trace,
            vnf_router::config::limits::MAX_TRACE_PACKETS
        );
    }
    let routes = match &cfg.route_file {
        Some(rf) => {
            let base = cli_config.parent().unwrap_or(std::path::Path::new("."));
            let p = base.join(&rf.path);
            Some(
                std::fs::read_to_string(&p)
                    .with_context(|| format!("route_file.path: reading {}", p.display()))?,
            )
        }
        None => None,
    };
    let workers = cfg.engine.workers;
    let mut specs: Vec<PortSpec> = Vec::new();
    for (i, ic) in cfg.interfaces.iter().enumerate() {
        let s: PortSpec = ic
            .port
            .parse()
            .with_context(|| format!("interface[{i}] ({}).port", ic.name))?;
        if workers > 1
            && !matches!(s, PortSpec::AfXdp { .. })
            && !matches!(s, PortSpec::VhostUser { queues, .. } if usize::from(queues) == workers)
            && !matches!(s, PortSpec::Memif { queues, .. } if usize::from(queues) == workers)
        {
            bail!("interface[{i}] ({}).port: engine.workers = {workers} needs afxdp ports or vhost-user or memif ports with queues={workers} (one queue per worker)", ic.name);
        }
        specs.push(s);
    }
    // Two ports on one pcap file would lose frames (or truncate an input): refuse.
    let files: Vec<_> = specs
        .iter()
        .map(|s| match s {
            PortSpec::Pcap { rx, tx } => (rx.as_deref(), tx.as_deref()),
            _ => (None, None),
        })
        .collect();
    if let Some(c) = dataplane::port::pcap::shared_file(&files) {
        bail!(
            "interface[{}] ({}).port: pcap output {} is also the {} of interface[{}] ({})",
            c.second,
            cfg.interfaces[c.second].name,
            c.path.display(),
            if c.first_reads { "input" } else { "output" },
            c.first,
            cfg.interfaces[c.first].name
        );
    }
    if cli.check {
        // the interfaces' own MACs, else locally administered ones: nothing is opened
        let macs: Vec<[u8; 6]> = (0..specs.len())
            .map(|i| [0x02, 0, 0, 0, 0, i as u8])
            .collect();
        let router = Router::build(&cfg, &macs, routes.as_deref())
            .with_context(|| cli_config.display().to_string())?;
        println!(
            "ok: {}: {} interfaces, {} IPv4 / {} IPv6 routes, {} neighbours, {} worker(s)",
            cli_config.display(),
            cfg.interfaces.len(),
            router.l3.routes4(),
            router.l3.fib6.len(),
            cfg.neighbors.len(),
            workers
        );
        return Ok(());
    }
    let mut per_worker: Vec<Vec<Box<dyn Port>>> = (0..workers).map(|_| Vec::new()).collect();
    let mut port_macs = Vec::new();
    let mut pcap_inputs = false;
    for (i, s) in specs.iter().enumerate() {
        if let PortSpec::Pcap { rx: Some(_), .. } = s {
            pcap_inputs = true;
        }
        // One port per worker: AF_XDP queue QUEUE + w, vhost-user queue pair w.
        let opened = spec::open_workers(s, workers)
            .with_context(|| format!("interface[{i}] ({})", cfg.interfaces[i].name))?;
        for (w, (ports, p)) in per_worker.iter_mut().zip(opened).enumerate() {
            if w == 0 {
                port_macs.push(p.mac().unwrap_or([0x02, 0, 0, 0, 0, i as u8]));
            }
            ports.push(p);
        }
    }
    let router = Router::build(&cfg, &port_macs, routes.as_deref())?;
    if cli.show_graph {
        let pl = match &cfg.ike {
            Some(_) => router.pipeline_ipsec(&ipsec::stage::StageQueues::new()),
            None => router.pipeline(),
        };
        print!("{}", pl.describe());
        return Ok(());
    }
    // The pool is the largest allocation: made once the configuration is known good.
    let pool =
        dataplane::buf::Pool::new(cfg.engine.pool_buffers).context("allocating the buffer pool")?;
    tracing::info!(
        "router: {} interfaces, {} IPv4 / {} IPv6 routes, {} worker(s)",
        cfg.interfaces.len(),
        router.l3.routes4(),
        router.l3.fib6.len(),
        workers
    );
    let cores = if cfg.engine.cores.is_empty() {
        core_ids(workers)
    } else {
        cfg.engine.cores.clone()
    };
    // Several workers: a hand-off mesh (NAT steers packets to the worker owning
    // the session) and, with a stateful firewall, software RSS so both directions
    // of a flow meet on one worker whatever the NIC's RSS does.
    let mut mesh = dataplane::worker::handoff_mesh(workers, 4096).into_iter();
    let soft_rss = workers > 1 && cfg.firewall.is_some();
    let mut wspecs = Vec::new();
    // The management API's queues to each worker's update hook.
    let links: Vec<vnf_router::mgmt::WorkerLink> = (0..workers)
        .map(|_| vnf_router::mgmt::WorkerLink::new())
        .collect();
    // `[ike]`: the worker runs esp-decrypt/esp-encrypt fed by the daemon's SA queues;
    // IKE is punted to the daemon's thread and its answers injected.
    // Several workers: each has its own SA queues, the daemon sends every SA to
    // all of them, and the ESP stages hand packets to the SA's owner; IKE punts
    // from every worker share one lock-free ring, as do the daemon's answers.
    let ipsec_gw = match &cfg.ike {
        Some(ike) => {
            let queues: Vec<ipsec::stage::StageQueues> = (0..workers)
                .map(|_| ipsec::stage::StageQueues::new())
                .collect();
            let sink = ipsec::ike::daemon::StageSink::new(
                queues
                    .iter()
                    .map(|q| (q.encrypt.clone(), q.decrypt.clone()))
                    .collect(),
            );
            let daemon = ipsec::ike::daemon::Daemon::new(ike, Box::new(sink))
                .map_err(|e| anyhow::anyhow!("ike: {e}"))?;
            let punt = dataplane::worker::ring(1024);
            let inject = dataplane::worker::ring(1024);
            Some((queues, daemon, punt, inject))
        }
        None => None,
    };
    for (w, ports) in per_worker.into_iter().enumerate() {
        let mut pl = match &ipsec_gw {
            Some((q, ..)) => router.pipeline_ipsec_for(&q[w], w as u16, workers as u16),
            None => router.pipeline_for(w as u16, workers as u16),
        };
        pl.trace_next(cli.trace);
        let mut spec = WorkerSpec::new(ports, pl, pool.cache());
        if workers > 1 {
            spec.handoff = mesh.next();
            spec.soft_rss = soft_rss;
        }
        spec.hooks.push(vnf_router::mgmt::update_hook(&links[w]));
        if let Some((_, _, punt, inject)) = &ipsec_gw {
            spec.punt = Some(punt.clone());
            spec.inject = Some(inject.clone());
            spec.hooks.push(ipsec::stage::update_hook());
        }
        spec.core = cores.get(w).copied();
        spec.trace = if cli.trace > 0 {
            64 * cli.trace as usize
        } else {
            cfg.engine.trace
        };
        wspecs.push(spec);
    }
    let runner = Runner::start(wspecs)?;
    let ike_stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let mut ike_metrics: Option<(
        std::sync::Arc<ipsec::ike::daemon::Metrics>,
        std::sync::Arc<vnf_router::ike::IoStats>,
    )> = None;
    let ike_thread = match ipsec_gw {
        Some((_, daemon, punt, inject)) => {
            let io = vnf_router::ike::Io::new(
                router.l3.clone(),
                router.macs.clone(),
                punt,
                inject,
                pool.cache(),
            );
            ike_metrics = Some((daemon.metrics(), io.stats.clone()));
            let stop = ike_stop.clone();
            tracing::info!(
                "router: IKE daemon on {}",
                router
                    .ike_addrs()
                    .iter()
                    .map(|a| a.to_string())
                    .collect::<Vec<_>>()
                    .join(", ")
            );
            Some(
                std::thread::Builder::new()
                    .name("ike".into())
                    .spawn(move || vnf_router::ike::run(daemon, io, stop))
                    .context("starting the IKE thread")?,
            )
        }
        None => None,
    };
    let ike_text = {
        let m = ike_metrics.clone();
        move || match &m {
            Some((d, io)) => format!("{}{}", d.prometheus(), io.prometheus()),
            None => String::new(),
        }
    };
    let _http = match &cli.listen {
        Some(a) => {
            let src = runner.snapshot_source();
            let ike_text = ike_text.clone();
            let mgmt = std::sync::Mutex::new(vnf_router::mgmt::Mgmt::new(
                &router,
                routes.clone(),
                links.clone(),
            ));
            let h: dataplane::http::Handler = std::sync::Arc::new(move |r| {
                use dataplane::http::Response;
                let snaps = src.snapshots();
                if r.path == "/restconf" || r.path.starts_with("/restconf/") {
                    // One change at a time; the workers keep forwarding meanwhile.
                    let Ok(mut m) = mgmt.lock() else {
                        return Response::error(500, "management API unavailable");
                    };
                    let a = m.handle(&r.method, &r.path, &r.query, &r.body, &snaps);
                    return Response {
                        status: a.status,
                        content_type: if r.path.starts_with("/restconf/yang/") && a.status == 200 {
                            "application/yang"
                        } else {
                            vnf_router::mgmt::MEDIA
                        },
                        body: a.body,
                    };
                }
                match r.path.as_str() {
                    "/metrics" => Response::metrics(format!(
                        "{}{}",
                        dataplane::runner::prometheus(&snaps),
                        ike_text()
                    )),
                    "/errors" => {
                        Response::text(show_errors(snaps.iter().flat_map(|s| s.nodes.iter())))
                    }
                    "/trace" => Response::text(snaps.iter().map(|s| s.trace.as_str()).collect()),
                    _ => Response::error(404, "try /metrics, /errors, /trace or /restconf"),
                }
            });
            let srv = dataplane::http::HttpServer::spawn(a, h)
                .with_context(|| format!("--listen {a}"))?;
            tracing::info!("router: metrics on http://{}/metrics", srv.addr());
            Some(srv)
        }
        None => None,
    };
    // Ctrl-C ends the loop below; the workers keep running until `runner.stop()`, so
    // the IKE daemon's Deletes (sent on the way down) still reach the wire.
    let quit = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let q = quit.clone();
    ctrlc::set_handler(move || q.store(true, std::sync::atomic::Ordering::Relaxed)).ok();
    let stop = runner.stop_flag();
    let t0 = Instant::now();
    let mut last_print = Instant::now();
    let mut last_rx = u64::MAX;
    let mut still = 0;
    tracing::info!("router ready");
    while !stop.load(std::sync::atomic::Ordering::Relaxed)
        && !quit.load(std::sync::atomic::Ordering::Relaxed)
    {
        std::thread::sleep(Duration::from_millis(100));
        if let Some(s) = cli.seconds {
            if t0.elapsed().as_secs_f64() >= s {
                break;
            }
        }
        let snaps = runner.snapshots();
        if let Some(m) = &cli.metrics {
            let _ = std::fs::write(
                m,
                format!("{}{}", dataplane::runner::prometheus(&snaps), ike_text()),
            );
        }
        let rx: u64 = snaps
            .iter()
            .flat_map(|s| s.ports.iter())
            .map(|p| p.1.rx_packets)
            .sum();
        if pcap_inputs && cli.seconds.is_none() {
            // pcap inputs: stop once nothing arrived for half a second
            if rx == last_rx {
                still += 1;
                if still >= 5 {
                    break;
                }
            } else {
                still = 0;
            }
            last_rx = rx;
        }
        let iv = cfg.engine.stats_interval;
        if iv > 0 && last_print.elapsed().as_secs() >= iv as u64 {
            last_print = Instant::now();
            let tx: u64 = snaps
                .iter()
                .flat_map(|s| s.ports.iter())
                .map(|p| p.1.tx_packets)
                .sum();
            tracing::info!("router: rx {rx} tx {tx}");
        }
    }
    ike_stop.store(true, std::sync::atomic::Ordering::Relaxed);
    if let Some(t) = ike_thread {
        let _ = t.join();
    }
    let fin = runner.stop();
    if let Some(m) = &cli.metrics {
        let _ = std::fs::write(
            m,
            format!("{}{}", dataplane::runner::prometheus(&fin), ike_text()),
        );
    }
    for (w, s) in fin.iter().enumerate() {
        for (name, st) in &s.ports {
            eprintln!(
                "worker {w} port {name}: rx {} tx {} rx_dropped {} tx_dropped {}",
                st.rx_packets, st.tx_packets, st.rx_dropped, st.tx_dropped
            );
        }
        if !s.trace.is_empty() {
            eprintln!("trace (worker {w}):\n{}", s.trace);
        }
    }
    eprint!("{}", show_errors(fin.iter().flat_map(|s| s.nodes.iter())));
    Ok(())
}

fn core_ids(n: usize) -> Vec<usize> {
    let avail = std::thread::available_parallelism()
        .map(|n| n.get())
        .unwrap_or(1);
    (0..n).map(|i| i % avail).collect()
}
