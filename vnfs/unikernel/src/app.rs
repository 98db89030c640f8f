//! The router VNF as a unikernel: the `vnf-router` configuration and graph over
//! virtio-net ports, run to completion on the one CPU by the engine's worker loop
//! (`dataplane::worker::Worker::poll`: rx, graph, tx, timers), the same loop the
//! Linux runner and the labs drive.
//! Prints `router ready` once the ports are up, counters every `stats` period, and
//! answers console commands (`stats`, `errors`, `help`, `exit`).
//!
//! The host stack serves `/metrics`, `/errors` and the Linux router's RESTCONF API
//! (`vnf_router::mgmt` without std: RFC 8040 paths, RFC 7951 JSON, RFC 8040 §7.1
//! error bodies): GET of the configuration and state, and PUT/PATCH/POST/DELETE of
//! the routes and the policer's meter (and a NAT pool), each checked as a whole and
//! applied to the worker's stages between two polls ([`vnf_router::mgmt::Local`]).
//! A route change builds the new L3 state beside the running one; the old one is
//! freed once the worker has swapped (its demand-zero tables go back to the window,
//! `sparse::free`), so repeated changes keep the guest's memory bounded. A router
//! whose routes come from a route file refuses route changes (501): the guest does
//! not keep the file's text to rebuild its tables.

use crate::common::{config_error, mac_str, open_ports, print_port_stats, LineReader, RX_BUFFERS};
use crate::config::{ConfigError, Options};
use crate::hoststack::{HttpServer, NetConfig, Response};
use crate::net::VirtioPort;
use crate::{arch, clock, print, println, VNF};
use alloc::string::String;
use alloc::vec::Vec;
use dataplane::buf::Pool;
use dataplane::metrics::Prom;
use dataplane::port::Port;
use dataplane::worker::{ring, Worker, WorkerConfig};
use vnf_router::mgmt::{Local, Mgmt};
use vnf_router::{Config, Router};

/// fw_cfg file holding the text of `route_file.path` (`-fw_cfg name=opt/vnf/routes,file=...`)
/// when the config drive does not have it (see `configdrive::side_file`).
const FWCFG_ROUTES: &str = "opt/vnf/routes";

fn print_stats(w: &Worker<VirtioPort>) {
    print_port_stats(w, clock::uptime_us() / 1000);
}

/// Port of the HTTP metrics endpoint (the `router` binary's `--listen 127.0.0.1:9100`).
pub const METRICS_PORT: u16 = 9100;

/// Prometheus text of the one worker, with the families and labels the Linux
/// `router --listen` serves (`dataplane::runner::prometheus`: worker `0`).
fn metrics(w: &Worker<VirtioPort>) -> String {
    let mut p = Prom::new();
    p.nodes("0", w.graph.nodes());
    let mut cs = Vec::new();
    w.graph.counters(&mut |n, c| cs.push((n, c)));
    p.node_counters("0", cs.iter().map(|(n, c)| (*n, c)));
    for port in w.ports.iter() {
        p.port(&alloc::format!("{}/w0", port.name()), &port.stats());
    }
    p.worker("0", &w.stats, &w.out.stats);
    p.finish()
}

/// `/metrics` and `/errors` (GET only); the RESTCONF API under `/restconf`
/// (`api`, the Linux router's code) with the worker's counters, changes applied to
/// its graph in place at `now_ns`; 404 else.
fn http(w: &mut Worker<VirtioPort>, api: &mut Mgmt, req: (&str, &str, &str, &[u8]), now_ns: u64) -> Response {
    let (method, path, query, body) = req;
    if path == "/restconf" || path.starts_with("/restconf/") {
        let a = api.handle_with(method, path, query, body, &mut Local { worker: w, now_ns });
        let yang = a.status == 200 && path.starts_with("/restconf/yang/");
        return Response::restconf(a.status, a.body, yang);
    }
    if method != "GET" {
        return Response::error(
            405,
            "GET only (the RESTCONF API under /restconf takes PUT, PATCH, POST, DELETE)",
        );
    }
    match path {
        "/metrics" => Response::metrics(metrics(w)),
        "/errors" => Response::text(w.graph.show_errors()),
        _ => Response::error(404, "try /metrics, /errors or /restconf/data/router:router"),
    }
}

/// The host stack's place by default: port 0 with interface 0's first IPv4 address.
fn default_mgmt(cfg: &Config) -> Option<NetConfig> {
    let a = cfg.interfaces.first()?.ipv4.first()?;
    let (ip, len) = vnf_router::config::parse_net4(a).ok()?;
    Some(NetConfig {
        port: 0,
        addr: ip.octets(),
        prefix: len,
        gateway: None,
    })
}

/// Console management: one command per line.
struct Console {
    line: LineReader,
}

impl Console {
    fn poll(&mut self, w: &Worker<VirtioPort>) {
        self.line.poll(|cmd| match cmd {
            "stats" => print_stats(w),
            "errors" => print!("{}", w.graph.show_errors()),
            "exit" => {
                print_stats(w);
                arch::exit(arch::EXIT_OK)
            }
            "help" => println!("commands: stats, errors, exit"),
            other => println!("unknown command `{other}` (try help)"),
        });
    }
}

/// Run the VNF; never returns.
pub fn run(table: toml::Table, opts: &Options) -> ! {
    let cfg: Config = match table.try_into() {
        Ok(c) => c,
        Err(e) => config_error(ConfigError::Invalid(alloc::format!("{e}"))),
    };
    if let Err(e) = cfg.check() {
        config_error(e);
    }
    let routes = cfg.route_file.as_ref().map(|rf| {
        crate::configdrive::side_file("route_file.path", &rf.path, FWCFG_ROUTES).unwrap_or_else(|e| config_error(e))
    });
    // A single poll-mode core needs the rings' worth of buffers plus batches in
    // flight; a larger pool only costs guest RAM.
    let need = (cfg.interfaces.len().max(1) * RX_BUFFERS * 2 + 2048) as u32;
    let nbuf = cfg.engine.pool_buffers.clamp(256, need);
    let t0 = clock::now_ns();
    // Device-visible: the virtio queues point straight into these buffers.
    let Some(pool) = crate::sparse::dma_safe(|| Pool::new(nbuf)) else {
        crate::fatal(
            arch::EXIT_PLATFORM,
            format_args!("memory: cannot allocate {nbuf} packet buffers"),
        )
    };
    log::debug!("pool: {nbuf} buffers in {} us", (clock::now_ns() - t0) / 1000);
    let mut ports = open_ports(pool);
    if ports.len() < cfg.interfaces.len() {
        config_error(alloc::format!(
            "{} interfaces configured but the guest has {} virtio-net ports",
            cfg.interfaces.len(),
            ports.len()
        ));
    }
    let mgmt = opts.mgmt.or_else(|| default_mgmt(&cfg));
    // Interfaces map to ports in order; extra ports stay idle, but for the host
    // stack's own port (`mgmt=N:...` past the interfaces).
    let keep = match mgmt {
        Some(m) if usize::from(m.port) >= cfg.interfaces.len() => {
            if usize::from(m.port) >= ports.len() {
                config_error(alloc::format!(
                    "mgmt port {} but the guest has {} virtio-net ports",
                    m.port,
                    ports.len()
                ));
            }
            usize::from(m.port) + 1
        }
        _ => cfg.interfaces.len(),
    };
    ports.truncate(keep);
    let port_macs: Vec<[u8; 6]> = ports.iter().map(|p| p.mac().unwrap_or_default()).collect();
    let t_build = clock::now_ns();
    let router = match Router::build(&cfg, &port_macs, routes.as_deref()) {
        Ok(r) => r,
        Err(e) => config_error(e),
    };
    if let Some(text) = routes {
        log::info!(
            "route file: {} bytes, tables built in {} ms",
            text.len(),
            (clock::now_ns() - t_build) / 1_000_000
        );
        // `run` never returns: the text would otherwise stay for good.
        drop(text);
    }
    for (i, (p, ic)) in ports.iter().zip(cfg.interfaces.iter()).enumerate() {
        log::info!(
            "port {i} ({}): {} device mac {} router mac {} {:?}",
            ic.name,
            p.name(),
            mac_str(p.mac().unwrap_or_default()),
            router.macs.get(i).map(|m| mac_str(*m)).unwrap_or_default(),
            ic.ipv4
        );
    }
    let nports = ports.len();
    let inject = ring(256);
    let mut stack = mgmt.map(|m| {
        let i = usize::from(m.port);
        let exclusive = i >= cfg.interfaces.len();
        let mac = match router.macs.get(i) {
            Some(mac) if !exclusive => *mac,
            _ => ports[i].mac().unwrap_or_default(),
        };
        let mut s = crate::hoststack::attach(&mut ports[i], mac, m, exclusive, inject.clone(), pool.cache());
        let h = HttpServer::new(&mut s, METRICS_PORT);
        (s, h)
    });
    let mut worker = match Worker::new(
        ports,
        router.pipeline(),
        pool.cache(),
        WorkerConfig {
            // timers (neighbour refresh, NAT ageing) every 10 ms
            tick_ns: 10_000_000,
            ..WorkerConfig::default()
        },
    ) {
        Ok(w) => w.with_inject(inject),
        Err(e) => config_error(e),
    };
    // The management API over the running configuration; it holds the L3 state
    // from here on (the router's own reference goes, so a replaced state is freed).
    let mut api = Mgmt::new(&router, None, Vec::new());
    if cfg.route_file.is_some() {
        api = api.with_fixed_routes(
            "the guest does not keep its route file to rebuild the tables: change routes by restarting with a new route file",
        );
    }
    let fib = (router.l3.routes4(), router.l3.fib6.len());
    drop(router);
    let ready_us = clock::uptime_us();
    println!(
        "{VNF} ready in {}.{:03} ms ({} ports, {} IPv4 / {} IPv6 routes, heap peak {} KiB, {} demand-zero pages, memory used {} KiB of {} KiB)",
        ready_us / 1000,
        ready_us % 1000,
        nports,
        fib.0,
        fib.1,
        crate::heap::peak() / 1024,
        crate::sparse::pages(),
        crate::heap::used() / 1024,
        crate::heap::claimed() / 1024
    );
    if opts.exit_on_ready {
        arch::exit(arch::EXIT_OK);
    }
    let stats_ms = match (opts.stats_ms, cfg.engine.stats_interval) {
        (Some(ms), _) => ms,
        (None, 0) => 1000,
        (None, s) => s as u64 * 1000,
    };
    let stats_ns = stats_ms * 1_000_000;
    let mut next_stats = clock::now_ns() + stats_ns;
    let stop_at = opts.exit_after_ms.map(|ms| clock::now_ns() + ms * 1_000_000);
    let mut console = Console {
        line: LineReader::default(),
    };
    let mut iter: u64 = 0;
    let mut now = clock::now_ns();
    loop {
        worker.poll(now);
        iter += 1;
        if let Some((s, h)) = stack.as_mut() {
            if iter & 15 == 0 || s.pending() {
                s.poll();
                if h.poll(s, |m, p, q, b| {
                    http(&mut worker, &mut api, (m, p, q, b), clock::now_ns())
                }) {
                    s.poll();
                }
            }
        }
        if iter & 63 == 0 {
            now = clock::now_ns();
            if stats_ns > 0 && now >= next_stats {
                next_stats = now + stats_ns;
                print_stats(&worker);
                if let Some((s, h)) = &stack {
                    s.print_stats(clock::uptime_us() / 1000, Some(h));
                }
            }
            console.poll(&worker);
            if stop_at.is_some_and(|t| now >= t) {
                print_stats(&worker);
                arch::exit(arch::EXIT_OK);
            }
        }
    }
}
