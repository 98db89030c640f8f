//! A user plane of the disaggregated vBNG (BBF TR-459) as a unikernel: the `vbng`
//! crate's user plane (`vbng::cups::up::Up`: the `vbng::vnf::build` fast path
//! without AAA, programmed over PFCP, 3GPP TS 29.244) — the code the Linux `vbng-up`
//! process runs — over two virtio-net ports (0 access, 1 core), with the same TOML
//! (`vbng-up run -c FILE`'s: the vBNG data-plane keys plus `[cups]` with `addr` and
//! `cp`).
//!
//! One CPU runs everything in one loop: the engine's worker
//! (`dataplane::worker::Worker::poll`; table updates applied between bursts by
//! `vbng::vnf::update_hook`), then the user plane's control side: the frames the fast
//! path punted (PPPoE discovery, PPP control, DHCP) go to the control plane in GTP-U
//! (TS 29.281, TR-459 control packet redirect), the frames it sends back are
//! injected on the access port, PFCP requests are answered and the timers
//! (heartbeats, usage reports, the audit) run by the unikernel clock; datagrams move
//! through the host network stack (`hoststack`): UDP 8805 (PFCP, TS 29.244 §7.2.1)
//! and UDP 2152 (GTP-U, TS 29.281 §4.4.2.3) at `[cups] addr`. The GTP-U datagrams
//! are converted to and from the whole IPv4/UDP packets of the sans-IO end by
//! `vbng::cups::udp` (the Linux process's socket link does the same).
//!
//! The stack sits where `mgmt=PORT:ADDR/LEN[:GATEWAY]` puts it (a port past the core
//! is the stack's own: a control network), else on the core port at `core_ip`
//! (default gateway `core_gateway`); its address must be `[cups] addr` (our PFCP
//! Node ID). The PFCP Recovery Time Stamp (§8.2.65) is the CMOS clock's time at boot
//! (`rtc`).
//!
//! The stack also serves HTTP `/metrics` (the fast path's node, port and worker
//! counters and the user plane's PFCP side as `vbng_up_*`) and `/errors` on the
//! port of `listen` (default 9180).
//!
//! Prints `vbng-up ready` once up (boot to ready, memory used), a line when the
//! control plane has associated and set up the redirect session, counters every
//! `stats` period, and answers console commands (`stats`, `errors`, `help`, `exit`).

use crate::common::{config_error, mac_str, open_ports, print_port_stats, LineReader, RX_BUFFERS};
use crate::config::{ConfigError, Options};
use crate::hoststack::{HostStack, HttpServer, NetConfig, Response};
use crate::net::VirtioPort;
use crate::{arch, clock, print, println, VNF};
use alloc::string::{String, ToString};
use alloc::vec::Vec;
use core::net::{Ipv4Addr, SocketAddr};
use dataplane::buf::{Pool, PoolCache};
use dataplane::port::Port;
use dataplane::worker::{ring, PktRing, Worker, WorkerConfig};
use smoltcp::iface::SocketHandle;
use vbng::config::{Config, CupsSection};
use vbng::cups::udp::{gtpu_payload, ipv4_udp};
use vbng::cups::up::{Up, UpConfig, UpParts};
use vbng::cups::Datagram;
use vbng::rng::Rng;
use vbng::vnf::{update_hook, BuildEnv, Injector, ACCESS_PORT, CORE_PORT};

/// Session slots without `sessions=` on the command line.
const DEFAULT_SESSIONS: u32 = 4096;
/// Punt and inject ring sizes between the worker and the control side.
const RING: usize = 1024;
/// Port of the HTTP endpoint without `listen` (the vBNG guest's).
const DEFAULT_HTTP_PORT: u16 = 9180;

/// Parse and check the configuration (`vbng-up check`'s rules: the vBNG config with
/// a user plane's `[cups]`); a refusal ends the boot with a one-line reason.
fn load(table: toml::Table) -> (Config, CupsSection) {
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
    if let Err(e) = cfg.validate() {
        config_error(e);
    }
    let Some(s) = cfg.cups.clone() else {
        config_error("no [cups] section (addr: our PFCP/GTP-U address, cp: the control plane's)");
    };
    if let Err(e) = s.validate(false) {
        config_error(e);
    }
    (cfg, s)
}

/// The PFCP and GTP-U sockets on the host stack.
struct Link {
    addr: Ipv4Addr,
    pfcp: SocketHandle,
    gtpu: SocketHandle,
    /// Datagrams the stack could not queue (PFCP retransmits; a redirected frame is
    /// lost, the subscriber retransmits).
    send_failed: u64,
    /// Datagrams that were not well-formed IPv4/UDP (to send) or could not be wrapped
    /// (received).
    bad: u64,
}

impl Link {
    fn open(stack: &mut HostStack, addr: Ipv4Addr) -> Result<Link, alloc::string::String> {
        let (pfcp, _) = stack.udp_open(pfcp::msg::PORT, 0)?;
        let (gtpu, _) = stack.udp_open(pfcp::gtpu::PORT, 0)?;
        Ok(Link {
            addr,
            pfcp,
            gtpu,
            send_failed: 0,
            bad: 0,
        })
    }

    /// Everything the sockets hold, as the sans-IO end's datagrams, to `f`.
    fn recv(&mut self, stack: &mut HostStack, mut f: impl FnMut(&Datagram)) -> usize {
        let local = SocketAddr::from((self.addr, pfcp::msg::PORT));
        let mut n = stack.udp_recv(self.pfcp, |src, b| {
            f(&Datagram::Pfcp {
                src,
                dst: local,
                data: b.to_vec(),
            })
        });
        let (addr, mut bad) = (self.addr, 0);
        n += stack.udp_recv(self.gtpu, |src, b| {
            let SocketAddr::V4(s4) = src else {
                bad += 1;
                return;
            };
            match ipv4_udp(*s4.ip(), addr, b) {
                Some(p) => f(&Datagram::Gtpu(p)),
                None => bad += 1,
            }
        });
        self.bad += bad;
        n
    }

    /// Queue datagrams on the sockets.
    fn send(&mut self, stack: &mut HostStack, ds: Vec<Datagram>) {
        for d in ds {
            let ok = match &d {
                Datagram::Pfcp { dst, data, .. } => stack.udp_send(self.pfcp, *dst, data),
                Datagram::Gtpu(p) => match gtpu_payload(p) {
                    Some((dst, payload)) => {
                        stack.udp_send(self.gtpu, SocketAddr::from((dst, pfcp::gtpu::PORT)), payload)
                    }
                    None => {
                        self.bad += 1;
                        continue;
                    }
                },
            };
            if !ok {
                self.send_failed += 1;
            }
        }
    }
}

/// The user plane's control side on the worker's punt and inject rings.
struct UpSide {
    up: Up,
    link: Link,
    punt: PktRing,
    inject: PktRing,
    injector: Injector,
    cache: PoolCache,
}

impl UpSide {
    /// Datagrams in, punted frames redirected, the control plane's frames injected,
    /// timers at `now_ms`, datagrams out; returns the work done.
    fn step(&mut self, now_ms: u64, stack: &mut HostStack) -> usize {
        stack.poll();
        let up = &mut self.up;
        let mut n = self.link.recv(stack, |d| up.input(now_ms, d));
        n += self.up.drain_punts(&self.punt, &mut self.cache);
        let inj = self.up.take_inject();
        n += inj.len();
        self.injector.queue(inj);
        self.injector.flush(&self.inject, &mut self.cache);
        self.up.poll(now_ms);
        let out = self.up.take_datagrams();
        n += out.len();
        self.link.send(stack, out);
        stack.poll();
        n
    }
}

fn print_stats(w: &Worker<VirtioPort>, s: &UpSide) {
    let t = clock::uptime_us() / 1000;
    print_port_stats(w, t);
    let u = &s.up.stats;
    println!(
        "stats t={t}ms user plane: {} sessions, {} established, {} deleted, {} requests refused, redirect {}, {} frames redirected, {} injected, {} punts and {} GTP-U packets dropped, {} usage reports, cp restarts {}, udp send failed {}, malformed {}, inject backlog {}",
        s.up.session_count(),
        u.sessions_established,
        u.sessions_deleted,
        u.requests_refused,
        if s.up.has_redirect() { "up" } else { "down" },
        u.redirected,
        u.injected,
        u.punt_dropped,
        u.gtpu_dropped,
        u.reports,
        u.cp_restarts,
        s.link.send_failed,
        s.link.bad,
        s.injector.len()
    );
}

/// Prometheus text: the worker's node, port and worker counters (as the vBNG
/// guest's `/metrics`) and the user plane's own: `vbng_up_sessions`,
/// `vbng_up_redirect_up`, `vbng_up_events_total{event}`.
fn metrics(w: &Worker<VirtioPort>, s: &UpSide) -> String {
    let mut p = dataplane::metrics::Prom::new();
    p.nodes("0", w.graph.nodes());
    let mut cs = Vec::new();
    w.graph.counters(&mut |n, c| cs.push((n, c)));
    p.node_counters("0", cs.iter().map(|(n, c)| (*n, c)));
    for port in w.ports.iter() {
        p.port(port.name(), &port.stats());
    }
    p.worker("0", &w.stats, &w.out.stats);
    p.gauge(
        "vbng_up_sessions",
        "Subscriber PFCP sessions installed in the fast path",
        &[],
        s.up.session_count() as f64,
    );
    p.gauge(
        "vbng_up_redirect_up",
        "The control plane's redirect session is established (1) or not (0)",
        &[],
        f64::from(u8::from(s.up.has_redirect())),
    );
    let u = &s.up.stats;
    for (name, v) in [
        ("established", u.sessions_established),
        ("deleted", u.sessions_deleted),
        ("refused", u.requests_refused),
        ("redirected", u.redirected),
        ("injected", u.injected),
        ("punt_dropped", u.punt_dropped),
        ("gtpu_dropped", u.gtpu_dropped),
        ("reports", u.reports),
        ("cp_restarts", u.cp_restarts),
        ("adopted", u.adopted),
        ("audit_removed", u.audit_removed),
        ("udp_send_failed", s.link.send_failed),
        ("udp_malformed", s.link.bad),
    ] {
        p.counter(
            "vbng_up_events_total",
            "The user plane's PFCP, redirect and socket counters",
            &[("event", name)],
            v,
        );
    }
    p.finish()
}

fn http_answer(w: &Worker<VirtioPort>, s: &UpSide, method: &str, path: &str) -> Response {
    if method != "GET" {
        return Response::error(405, "GET only");
    }
    match path {
        "/metrics" => Response::metrics(metrics(w, s)),
        "/errors" => Response::text(w.graph.show_errors()),
        _ => Response::error(404, "try /metrics or /errors"),
    }
}

/// Run the user plane; never returns.
pub fn run(table: toml::Table, opts: &Options) -> ! {
    let (cfg, cups) = load(table);
    let sessions = opts.sessions.unwrap_or(DEFAULT_SESSIONS);
    let (seed, src) = crate::entropy::seed();
    if src.strong() {
        log::info!("entropy: {}", src.describe());
    } else {
        log::warn!(
            "entropy: {}: no RDSEED/RDRAND and no host seed (fw_cfg opt/vnf/entropy); SEIDs and ephemeral ports are weakly random",
            src.describe()
        );
    }
    // The Recovery Time Stamp: a restart must show the control plane a new one.
    let rts = match crate::rtc::unix_seconds() {
        Some(s) => {
            log::info!("clock: CMOS RTC at {s} s since 1970 (the PFCP Recovery Time Stamp)");
            (s + crate::rtc::NTP_UNIX_OFFSET) as u32
        }
        None => {
            log::warn!("no CMOS clock: the PFCP Recovery Time Stamp is random, not the boot time");
            u32::from_le_bytes([seed[8], seed[9], seed[10], seed[11]])
        }
    };
    let need = (2 * RX_BUFFERS * 2 + 2 * RING + 2048) as u32;
    // Device-visible: the virtio queues point straight into these buffers.
    let Some(pool) = crate::sparse::dma_safe(|| Pool::new(need)) else {
        crate::fatal(
            arch::EXIT_PLATFORM,
            format_args!("memory: cannot allocate {need} packet buffers"),
        )
    };
    let mut ports = open_ports(pool);
    if ports.len() < 2 {
        config_error(alloc::format!(
            "the vBNG user plane needs 2 virtio-net ports (0 access, 1 core) but the guest has {}",
            ports.len()
        ));
    }
    // The host stack: where `mgmt=` says, else on the core port at `core_ip`.
    let Some(net) = opts.mgmt.or_else(|| {
        cfg.core_ip.map(|n| NetConfig {
            port: CORE_PORT,
            addr: n.addr.octets(),
            prefix: n.len,
            gateway: cfg.core_gateway.map(|g| g.octets()),
        })
    }) else {
        config_error(alloc::format!(
            "PFCP and GTP-U need the host network stack at [cups] addr {}: set core_ip or mgmt=PORT:ADDR/LEN[:GATEWAY] on the command line",
            cups.addr
        ));
    };
    if net.addr != cups.addr.octets() {
        config_error(alloc::format!(
            "the host stack's address {} is not [cups] addr {} (our PFCP Node ID)",
            Ipv4Addr::from(net.addr),
            cups.addr
        ));
    }
    if net.port == ACCESS_PORT {
        config_error("mgmt port 0 is the access port: put the host stack on the core port or a port of its own");
    }
    // Extra ports stay idle, but for the host stack's own port past the core.
    let keep = if net.port > CORE_PORT {
        if usize::from(net.port) >= ports.len() {
            config_error(alloc::format!(
                "mgmt port {} but the guest has {} virtio-net ports",
                net.port,
                ports.len()
            ));
        }
        usize::from(net.port) + 1
    } else {
        2
    };
    ports.truncate(keep);
    let nports = ports.len();
    let core_mac = ports[usize::from(CORE_PORT)]
        .mac()
        .unwrap_or([0x02, 0, 0, 0, 0xc0, 0x02]);
    let UpParts { up, graph, .. } = match Up::build(
        &cfg,
        &BuildEnv::new(core_mac, sessions, Rng::from_seed(seed)),
        UpConfig::from_section(&cups, rts),
    ) {
        Ok(p) => p,
        Err(e) => config_error(e),
    };
    let macs = [cfg.mac.octets(), core_mac];
    for (i, p) in ports.iter().enumerate() {
        log::info!(
            "port {i} ({}): {} device mac {} vbng mac {}",
            match i as u16 {
                ACCESS_PORT => "access",
                CORE_PORT => "core",
                _ => "control",
            },
            p.name(),
            mac_str(p.mac().unwrap_or_default()),
            mac_str(macs.get(i).copied().or(p.mac()).unwrap_or_default())
        );
    }
    let (punt, inject) = (ring(RING), ring(RING));
    let i = usize::from(net.port);
    let mac = macs.get(i).copied().or(ports[i].mac()).unwrap_or_default();
    let mut stack = crate::hoststack::attach(
        &mut ports[i],
        mac,
        net,
        net.port > CORE_PORT,
        inject.clone(),
        pool.cache(),
    );
    let http_port = cfg.listen.map_or(DEFAULT_HTTP_PORT, |a| a.port());
    log::info!("metrics on http://{}:{http_port}/metrics", cups.addr);
    let mut http = HttpServer::new(&mut stack, http_port);
    let link = match Link::open(&mut stack, cups.addr) {
        Ok(l) => l,
        Err(e) => config_error(alloc::format!("[cups]: {e}")),
    };
    let mut worker = match Worker::new(
        ports,
        graph,
        pool.cache(),
        WorkerConfig {
            // timers (ARP refresh, policers) every 10 ms
            tick_ns: 10_000_000,
            ..WorkerConfig::default()
        },
    ) {
        Ok(w) => w
            .with_punt(punt.clone())
            .with_inject(inject.clone())
            .on_update(update_hook()),
        Err(e) => config_error(e),
    };
    let mut side = UpSide {
        up,
        link,
        punt,
        inject,
        injector: Injector::new(),
        cache: pool.cache(),
    };
    let ready_us = clock::uptime_us();
    println!(
        "{VNF} ready in {}.{:03} ms ({nports} ports, {sessions} session slots, PFCP/GTP-U at {} on port {}, control plane {}, heap peak {} KiB, {} demand-zero pages, memory used {} KiB of {} KiB)",
        ready_us / 1000,
        ready_us % 1000,
        cups.addr,
        net.port,
        cups.cp.map_or_else(|| "any".to_string(), |a| a.to_string()),
        crate::heap::peak() / 1024,
        crate::sparse::pages(),
        crate::heap::used() / 1024,
        crate::heap::claimed() / 1024
    );
    if opts.exit_on_ready {
        arch::exit(arch::EXIT_OK);
    }
    let stats_ms = opts.stats_ms.unwrap_or(1000);
    let stats_ns = stats_ms * 1_000_000;
    let mut next_stats = clock::now_ns() + stats_ns;
    let stop_at = opts.exit_after_ms.map(|ms| clock::now_ns() + ms * 1_000_000);
    let mut console = LineReader::default();
    let mut iter: u64 = 0;
    let boot_ns = clock::now_ns();
    let mut redirect = false;
    loop {
        let now = clock::now_ns();
        worker.poll(now);
        let now_ms = (now - boot_ns) / 1_000_000;
        // The control side after every burst that punted, when the stack has frames,
        // else every 16th round (PFCP timers, usage reports).
        iter += 1;
        if !side.punt.is_empty() || !side.injector.is_empty() || stack.pending() || iter & 15 == 0 {
            side.step(now_ms, &mut stack);
            if http.poll(&mut stack, |m, p, _, _| http_answer(&worker, &side, m, p)) {
                stack.poll();
            }
            if side.up.has_redirect() != redirect {
                redirect = side.up.has_redirect();
                let t = clock::uptime_us();
                if redirect {
                    println!(
                        "{VNF}: control plane associated, redirect session up at {}.{:03} ms",
                        t / 1000,
                        t % 1000
                    );
                } else {
                    println!("{VNF}: redirect session gone at {}.{:03} ms", t / 1000, t % 1000);
                }
            }
        }
        if iter & 63 == 0 {
            if stats_ns > 0 && now >= next_stats {
                next_stats = now + stats_ns;
                print_stats(&worker, &side);
                stack.print_stats(clock::uptime_us() / 1000, Some(&http));
            }
            let mut exit = false;
            console.poll(|cmd| match cmd {
                "stats" => print_stats(&worker, &side),
                "errors" => print!("{}", worker.graph.show_errors()),
                "exit" => exit = true,
                "help" => println!("commands: stats, errors, exit"),
                other => println!("unknown command `{other}` (try help)"),
            });
            if exit || stop_at.is_some_and(|t| now >= t) {
                print_stats(&worker, &side);
                stack.print_stats(clock::uptime_us() / 1000, Some(&http));
                arch::exit(arch::EXIT_OK);
            }
        }
    }
}
