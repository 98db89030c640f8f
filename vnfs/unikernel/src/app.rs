//! The router VNF as a unikernel: the `vnf-router` configuration and graph over
//! virtio-net ports, run to completion on the one CPU by the engine's worker loop
//! (`dataplane::worker::Worker::poll`: rx, graph, tx, timers), the same loop the
//! Linux runner and the labs drive.
//! Prints `router ready` once the ports are up, counters every `stats` period, and
//! answers console commands (`stats`, `errors`, `help`, `exit`).

use crate::common::{config_error, mac_str, open_ports, print_port_stats, LineReader, RX_BUFFERS};
use crate::config::{ConfigError, Options};
use crate::net::VirtioPort;
use crate::{arch, clock, print, println, VNF};
use alloc::string::String;
use alloc::vec::Vec;
use dataplane::buf::Pool;
use dataplane::port::Port;
use dataplane::worker::{Worker, WorkerConfig};
use vnf_router::{Config, Router};

/// fw_cfg file holding the text of `route_file.path` (`-fw_cfg name=opt/vnf/routes,file=...`).
const FWCFG_ROUTES: &str = "opt/vnf/routes";

fn print_stats(w: &Worker<VirtioPort>) {
    print_port_stats(w, clock::uptime_us() / 1000);
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
    let routes = match &cfg.route_file {
        Some(rf) => match crate::fwcfg::read_file(FWCFG_ROUTES).map(String::from_utf8) {
            Some(Ok(t)) => Some(t),
            Some(Err(_)) => config_error(alloc::format!("fw_cfg {FWCFG_ROUTES} is not UTF-8")),
            None => config_error(alloc::format!(
                "route_file.path = {:?}: pass the file as fw_cfg {FWCFG_ROUTES}",
                rf.path
            )),
        },
        None => None,
    };
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
    // Interfaces map to ports in order; extra ports stay idle.
    ports.truncate(cfg.interfaces.len());
    let port_macs: Vec<[u8; 6]> = ports.iter().map(|p| p.mac().unwrap_or_default()).collect();
    let router = match Router::build(&cfg, &port_macs, routes.as_deref()) {
        Ok(r) => r,
        Err(e) => config_error(e),
    };
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
        Ok(w) => w,
        Err(e) => config_error(e),
    };
    let ready_us = clock::uptime_us();
    println!(
        "{VNF} ready in {}.{:03} ms ({} ports, {} IPv4 / {} IPv6 routes, heap peak {} KiB, {} demand-zero pages)",
        ready_us / 1000,
        ready_us % 1000,
        nports,
        router.l3.fib4.len(),
        router.l3.fib6.len(),
        crate::heap::peak() / 1024,
        crate::sparse::pages()
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
        if iter & 63 == 0 {
            now = clock::now_ns();
            if stats_ns > 0 && now >= next_stats {
                next_stats = now + stats_ns;
                print_stats(&worker);
            }
            console.poll(&worker);
            if stop_at.is_some_and(|t| now >= t) {
                print_stats(&worker);
                arch::exit(arch::EXIT_OK);
            }
        }
    }
}
