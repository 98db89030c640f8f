//! The vCPE as a unikernel: the configuration of the `vcpe` crate, composed once by
//! `vcpe::vnf::build_with_macs` (the same composition as the Linux `vcpe` binary,
//! `bench vcpe` and `testbed lab vcpe`), over two virtio-net ports (0 LAN, 1 WAN).
//! One CPU runs everything in one loop: the engine's worker
//! (`dataplane::worker::Worker::poll`: injected frames, rx, graph, punts, tx,
//! timers; SA updates applied between bursts by `ipsec::stage::update_hook`), then
//! the control side (`vcpe::control::step`: DHCP requests punted by
//! `vcpe-lan-input` to the LAN's DHCPv4 server, RFC 2131, the vBNG's
//! `vbng::dhcp4`; lease and offer timers; replies onto the inject ring), then the
//! host network stack (`hoststack`) with HTTP `/metrics` (the Linux binary's
//! families: the engine's node, port and worker metrics plus `vcpe_dhcp_*`),
//! `/errors` and `/leases`.
//!
//! NAT44, the stateful firewall, static and connected routes and the static-key
//! ESP tunnels (RFC 4303 tunnel mode, AES-GCM RFC 4106, `[tunnel.static]`) are the
//! graph's. Refused at the configuration check, with one line: `[tunnel.ike]`,
//! `[tunnel.keyserver]` and `[keyserver]` (the IKE daemon and the key server
//! client are `std`: `vcpe::control::needs_std`).
//!
//! The host stack sits on the LAN port at the LAN address by default (port 9100,
//! the `vcpe` binary's `--listen` example), or where `mgmt=PORT:ADDR/LEN[:GATEWAY]`
//! puts it (a port past the WAN is the stack's own). Not on the WAN address: TCP
//! and UDP to it are NAT44's return traffic.
//!
//! Prints `vcpe ready` once up, counters every `stats` period, and answers console
//! commands (`stats`, `errors`, `leases`, `help`, `exit`).

use crate::common::{config_error, mac_str, open_ports, print_port_stats, LineReader, RX_BUFFERS};
use crate::config::{ConfigError, Options};
use crate::hoststack::{HttpServer, NetConfig, Response};
use crate::net::VirtioPort;
use crate::{arch, clock, print, println, VNF};
use alloc::string::{String, ToString};
use alloc::vec::Vec;
use dataplane::buf::Pool;
use dataplane::metrics::Prom;
use dataplane::port::Port;
use dataplane::proto::ethernet::MacAddr;
use dataplane::worker::{ring, Worker, WorkerConfig};
use vcpe::control::ControlPlane;
use vcpe::vnf::{build_with_macs, Built, LAN, WAN};
use vcpe::Config;

/// Punt and inject ring sizes between the worker and the control side.
const RING: usize = 1024;
/// Port of the HTTP endpoint (the `vcpe` binary's `--listen 127.0.0.1:9100` example).
pub const METRICS_PORT: u16 = 9100;

/// Parse and check the configuration (`vcpe check`'s rules: unknown keys refused
/// by path, `Config::check`), plus what this build cannot run; a refusal ends the
/// boot with a one-line reason.
fn load(table: toml::Table) -> Config {
    let cfg: Config = match serde_path_to_error::deserialize(toml::Value::Table(table)) {
        Ok(c) => c,
        Err(e) => {
            let path = e.path().to_string();
            let msg = e.inner().message().trim().replace('\n', " ");
            config_error(ConfigError::Invalid(if path == "." {
                msg
            } else {
                alloc::format!("{path}: {msg}")
            }))
        }
    };
    if let Err(e) = cfg.check() {
        config_error(e);
    }
    if let Some(why) = vcpe::control::needs_std(&cfg) {
        config_error(why);
    }
    cfg
}

/// `MAC address` per bound lease, one per line (the binary's `/leases`).
fn leases(cp: &ControlPlane) -> String {
    cp.leases()
        .iter()
        .map(|(m, a)| alloc::format!("{} {a}\n", MacAddr(*m)))
        .collect()
}

/// Prometheus text with the families of the Linux binary's `/metrics`
/// (`dataplane::runner::prometheus` of the one worker, then `vcpe_*`).
fn metrics(w: &Worker<VirtioPort>, cp: &ControlPlane) -> String {
    let mut p = Prom::new();
    p.nodes("0", w.graph.nodes());
    let mut cs = Vec::new();
    w.graph.counters(&mut |n, c| cs.push((n, c)));
    p.node_counters("0", cs.iter().map(|(n, c)| (*n, c)));
    for port in w.ports.iter() {
        p.port(&alloc::format!("{}/w0", port.name()), &port.stats());
    }
    p.worker("0", &w.stats, &w.out.stats);
    p.finish() + &cp.stats.prometheus()
}

/// `/metrics`, `/errors`, `/leases`; 404 else.
fn http_answer(w: &Worker<VirtioPort>, cp: &ControlPlane, path: &str) -> Response {
    match path {
        "/metrics" => Response::metrics(metrics(w, cp)),
        "/errors" => Response::text(w.graph.show_errors()),
        "/leases" => Response::text(leases(cp)),
        _ => Response::error(404, "try /metrics, /errors or /leases"),
    }
}

fn print_stats(w: &Worker<VirtioPort>, cp: &ControlPlane) {
    use core::sync::atomic::Ordering::Relaxed;
    let t = clock::uptime_us() / 1000;
    print_port_stats(w, t);
    let s = &cp.stats;
    println!(
        "stats t={t}ms vcpe: dhcp requests {} replies {} leases {}, punt other {}, inject failed {}",
        s.dhcp_rx.load(Relaxed),
        s.dhcp_tx.load(Relaxed),
        s.leases.load(Relaxed),
        s.punt_other.load(Relaxed),
        s.inject_failed.load(Relaxed)
    );
}

/// Run the vCPE; never returns.
pub fn run(table: toml::Table, opts: &Options) -> ! {
    let cfg = load(table);
    // A single poll-mode core needs the rings' worth of buffers plus batches in
    // flight and the punt/inject rings; a larger pool only costs guest RAM.
    let need = (2 * RX_BUFFERS * 2 + 2 * RING + 2048) as u32;
    let nbuf = cfg.engine.pool_buffers.min(need);
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
    if ports.len() < 2 {
        config_error(alloc::format!(
            "the vCPE needs 2 virtio-net ports (0 LAN, 1 WAN) but the guest has {}",
            ports.len()
        ));
    }
    // The host stack: where `mgmt=` says, else on the LAN port at the LAN address.
    let mgmt = opts.mgmt.unwrap_or(NetConfig {
        port: LAN,
        addr: cfg.lan.address.addr.octets(),
        prefix: cfg.lan.address.len,
        gateway: None,
    });
    if mgmt.port == WAN && mgmt.addr == cfg.wan.address.addr.octets() {
        config_error("mgmt: not at the WAN address (TCP and UDP to it are NAT44's return traffic); use the LAN address or a port of its own");
    }
    // Extra ports stay idle, but for the host stack's own port past the WAN.
    let keep = if mgmt.port > WAN {
        if usize::from(mgmt.port) >= ports.len() {
            config_error(alloc::format!(
                "mgmt port {} but the guest has {} virtio-net ports",
                mgmt.port,
                ports.len()
            ));
        }
        usize::from(mgmt.port) + 1
    } else {
        2
    };
    ports.truncate(keep);
    let nports = ports.len();
    let port_macs: Vec<[u8; 6]> = ports.iter().take(2).map(|p| p.mac().unwrap_or_default()).collect();
    let Built {
        vcpe,
        graph,
        queues: _,
        control,
    } = match build_with_macs(&cfg, &port_macs) {
        Ok(b) => b,
        Err(e) => config_error(e),
    };
    for (i, p) in ports.iter().enumerate() {
        log::info!(
            "port {i} ({}): {} device mac {} vcpe mac {}",
            match i as u16 {
                LAN => "lan",
                WAN => "wan",
                _ => "management",
            },
            p.name(),
            mac_str(p.mac().unwrap_or_default()),
            mac_str(vcpe.macs.get(i).copied().or(p.mac()).unwrap_or_default())
        );
    }
    let (punt, inject) = (ring(RING), ring(RING));
    let mut stack = {
        let i = usize::from(mgmt.port);
        let exclusive = mgmt.port > WAN;
        let mac = match vcpe.macs.get(i) {
            Some(m) if !exclusive => *m,
            _ => ports[i].mac().unwrap_or_default(),
        };
        let mut s = crate::hoststack::attach(&mut ports[i], mac, mgmt, exclusive, inject.clone(), pool.cache());
        let a = s.net.addr;
        log::info!(
            "metrics on http://{}.{}.{}.{}:{METRICS_PORT}/metrics",
            a[0],
            a[1],
            a[2],
            a[3]
        );
        let h = HttpServer::new(&mut s, METRICS_PORT);
        (s, h)
    };
    let mut worker = match Worker::new(
        ports,
        graph,
        pool.cache(),
        WorkerConfig {
            // timers (ARP refresh, NAT and firewall ageing) every 10 ms
            tick_ns: 10_000_000,
            ..WorkerConfig::default()
        },
    ) {
        Ok(w) => w
            .with_punt(punt.clone())
            .with_inject(inject.clone())
            .on_update(ipsec::stage::update_hook()),
        Err(e) => config_error(e),
    };
    let mut cp = control;
    let mut cache = pool.cache();
    let ready_us = clock::uptime_us();
    println!(
        "{VNF} ready in {}.{:03} ms ({nports} ports, lan {}, wan {}, {} tunnels, dhcp {}, nat {}, heap peak {} KiB, {} demand-zero pages, memory used {} KiB of {} KiB)",
        ready_us / 1000,
        ready_us % 1000,
        cfg.lan.address,
        cfg.wan.address,
        cfg.tunnels.len(),
        if cfg.lan.dhcp.is_some() { "on" } else { "off" },
        if cfg.nat.enabled { "on" } else { "off" },
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
        (None, s) => u64::from(s) * 1000,
    };
    let stats_ns = stats_ms * 1_000_000;
    let mut next_stats = clock::now_ns() + stats_ns;
    let stop_at = opts.exit_after_ms.map(|ms| clock::now_ns() + ms * 1_000_000);
    let mut console = LineReader::default();
    let mut iter: u64 = 0;
    let boot_ns = clock::now_ns();
    loop {
        let now = clock::now_ns();
        worker.poll(now);
        let now_ms = (now - boot_ns) / 1_000_000;
        // The control side after every burst that punted, else every 16th round
        // (lease and offer expiry).
        iter += 1;
        let (s, h) = &mut stack;
        if !punt.is_empty() || s.pending() || iter & 15 == 0 {
            vcpe::control::step(&mut cp, &punt, &inject, &mut cache, now_ms);
            s.poll();
            if h.poll(s, |m, p, _, _| {
                if m == "GET" {
                    http_answer(&worker, &cp, p)
                } else {
                    Response::error(405, "GET only")
                }
            }) {
                s.poll();
            }
        }
        if iter & 63 == 0 {
            if stats_ns > 0 && now >= next_stats {
                next_stats = now + stats_ns;
                print_stats(&worker, &cp);
                s.print_stats(clock::uptime_us() / 1000, Some(h));
            }
            let mut exit = false;
            console.poll(|cmd| match cmd {
                "stats" => print_stats(&worker, &cp),
                "errors" => print!("{}", worker.graph.show_errors()),
                "leases" => print!("{}", leases(&cp)),
                "exit" => exit = true,
                "help" => println!("commands: stats, errors, leases, exit"),
                other => println!("unknown command `{other}` (try help)"),
            });
            if exit || stop_at.is_some_and(|t| now >= t) {
                print_stats(&worker, &cp);
                s.print_stats(clock::uptime_us() / 1000, Some(h));
                arch::exit(arch::EXIT_OK);
            }
        }
    }
}
