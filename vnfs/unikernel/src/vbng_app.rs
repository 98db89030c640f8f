//! The vBNG as a unikernel: the configuration of the `vbng` crate, composed once by
//! `vbng::vnf::build` (the same composition as the Linux binary and the in-memory
//! lab), over two virtio-net ports (0 access, 1 core). One CPU runs everything in one
//! loop: the engine's worker (`dataplane::worker::Worker::poll`: injected frames,
//! rx, graph, punts, tx, timers; table updates applied between bursts by
//! `vbng::vnf::update_hook`), then the control side: punted frames to the control
//! plane (PPPoE discovery, PPP, AAA, DHCP), its timers by the unikernel clock,
//! table updates to the fast path, and its frames onto the inject ring; then the
//! host network stack (`hoststack`): the RADIUS client's datagrams (RFC 2865 access,
//! RFC 2866 accounting; 4 client sockets as the Linux binary's `RadiusIo`) and the
//! CoA/Disconnect listener (RFC 5176, `radius.coa_listen`'s port), and HTTP
//! `/metrics` (the Linux binary's families), `/sessions`, `/errors` on the port of
//! `listen` (default 9180).
//!
//! The stack sits on the core port at `core_ip` (default gateway `core_gateway`), or
//! where `mgmt=PORT:ADDR/LEN[:GATEWAY]` puts it (a port past the core is the stack's
//! own). AAA is by RADIUS with `[radius]`, else by the local users (`users = [...]`,
//! or `user_file`: the file at that path on the config drive, else fw_cfg `opt/vnf/users`). Refused: what needs a file
//! system (`ipoe.lease_journal`, `radius.acct_journal`), RADIUS servers that are not
//! IPv4, and `[radius]` with nowhere to put the stack.
//!
//! Prints `vbng ready` once up, counters every `stats` period, and answers console
//! commands (`stats`, `errors`, `sessions`, `help`, `exit`).

use crate::common::{config_error, mac_str, open_ports, print_port_stats, LineReader, RX_BUFFERS};
use crate::config::{ConfigError, Options};
use crate::hoststack::{HostStack, HttpServer, NetConfig, Response};
use crate::net::VirtioPort;
use crate::{arch, clock, print, println, VNF};
use alloc::string::{String, ToString};
use alloc::vec::Vec;
use dataplane::buf::{Pool, PoolCache};
use dataplane::port::Port;
use dataplane::worker::{ring, PktRing, Worker, WorkerConfig};
use smoltcp::iface::SocketHandle;
use vbng::config::{parse_user_file, Config};
use vbng::mgmt::{GraphNat, Mgmt, NatAccess};
use vbng::rng::Rng;
use vbng::vnf::{build, update_hook, BuildEnv, Control, Injector, Stats, Vbng, ACCESS_PORT, CORE_PORT};

/// fw_cfg file holding the text of `user_file` (`-fw_cfg name=opt/vnf/users,file=...`)
/// when the config drive does not have it (see `configdrive::side_file`).
const FWCFG_USERS: &str = "opt/vnf/users";
/// Session slots without `sessions=` on the command line (about 300 bytes each, plus
/// the CGNAT tables when configured).
const DEFAULT_SESSIONS: u32 = 4096;
/// Punt and inject ring sizes between the worker and the control side.
const RING: usize = 1024;

/// Default port of the HTTP endpoint without `listen` (the Linux runtime's example).
const DEFAULT_HTTP_PORT: u16 = 9180;
/// RADIUS client sockets (as the Linux binary's `RadiusIo::bind(.., 4, ..)`).
const RADIUS_CHANNELS: usize = 4;

/// What the unikernel cannot do (yet) that the configuration asks for: one line.
pub fn unsupported(cfg: &Config) -> Option<&'static str> {
    if let Some(r) = &cfg.radius {
        if r.acct_journal.is_some() {
            return Some("radius.acct_journal: the vbng unikernel has no file system");
        }
        if r.auth.iter().chain(r.acct.iter()).any(|s| !s.addr.is_ipv4()) || r.coa_listen.is_some_and(|a| !a.is_ipv4()) {
            return Some("[radius]: the unikernel's host stack is IPv4 only");
        }
    }
    if cfg.ipoe.as_ref().is_some_and(|i| i.lease_journal.is_some()) {
        return Some("ipoe.lease_journal: the vbng unikernel has no file system");
    }
    None
}

/// Parse and check the configuration (the binary's `vbng check` rules plus the
/// unikernel's limits); a refusal ends the boot with a one-line reason.
fn load(table: toml::Table) -> Config {
    let mut cfg: Config = match serde_path_to_error::deserialize(toml::Value::Table(table)) {
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
    if let Some(f) = cfg.user_file.clone() {
        let text = crate::configdrive::side_file("user_file", &f, FWCFG_USERS).unwrap_or_else(|e| config_error(e));
        match parse_user_file(&text) {
            Ok(u) => cfg.users.extend(u),
            Err(e) => config_error(alloc::format!("user_file {f:?}: {e}")),
        }
    }
    if let Err(e) = cfg.validate() {
        config_error(e);
    }
    if let Some(why) = unsupported(&cfg) {
        config_error(why);
    }
    cfg
}

fn print_stats(w: &Worker<VirtioPort>, c: &Control, inj: &Injector) {
    let t = clock::uptime_us() / 1000;
    print_port_stats(w, t);
    let s = &c.cp.stats;
    println!(
        "stats t={t}ms sessions: {} active, {} created, {} up, {} ended, auth {} accepted {} rejected, pool exhausted {}, malformed {}, no-session {}, inject backlog {}",
        c.cp.session_count(),
        s.sessions_created,
        s.sessions_up,
        s.sessions_ended,
        s.auth_accept,
        s.auth_reject,
        s.pool_exhausted,
        s.malformed,
        s.no_session,
        inj.len()
    );
}

/// Prometheus text with the families of the Linux binary's `/metrics`
/// (`vbng::runtime`: the BNG's own-traffic counters, node counters, ports, the
/// worker, the control plane's; `?sessions` adds the per-session ones).
fn metrics(w: &Worker<VirtioPort>, c: &Control, stats: &Stats, sessions: bool) -> String {
    let mut p = dataplane::metrics::Prom::new();
    stats.prometheus(&mut p);
    let mut cs = Vec::new();
    w.graph.counters(&mut |n, c| cs.push((n, c)));
    p.node_counters("0", cs.iter().map(|(n, c)| (*n, c)));
    for port in w.ports.iter() {
        p.port(port.name(), &port.stats());
    }
    p.worker("0", &w.stats, &w.out.stats);
    let mut body = vbng::metrics::prometheus(&c.cp, w.graph.nodes()) + &p.finish();
    if sessions {
        body += &vbng::metrics::prometheus_sessions(&c.cp);
    }
    body
}

/// `/metrics[?sessions]`, `/sessions`, `/errors` (GET); 404 else.
fn http_answer(w: &Worker<VirtioPort>, c: &Control, stats: &Stats, method: &str, path: &str, query: &str) -> Response {
    if method != "GET" {
        return Response::error(
            405,
            "GET only (the RESTCONF API under /restconf takes PUT, PATCH, POST, DELETE)",
        );
    }
    match path {
        "/metrics" => Response::metrics(metrics(w, c, stats, query == "sessions")),
        "/sessions" => Response::text(vbng::metrics::show_sessions(&c.cp)),
        "/errors" => Response::text(w.graph.show_errors()),
        _ => Response::error(404, "try /metrics, /sessions, /errors or /restconf/data/vbng:vbng"),
    }
}

/// The vBNG's RESTCONF API (`vbng::mgmt`, the Linux vBNG's code: RFC 8040 paths,
/// the `drain` RPC, session actions, configuration changes validated as a whole,
/// RFC 8040 §7.1 errors), answered between two worker polls: the worker's `nat44`
/// is read and changed in place ([`GraphNat`]).
fn restconf(
    api: &mut Mgmt,
    w: &mut Worker<VirtioPort>,
    c: &mut Control,
    cgnat: bool,
    req: (&str, &str, &str, &[u8]),
    now_ms: u64,
) -> Response {
    let (method, path, query, body) = req;
    let mut g = GraphNat(&mut w.graph);
    let nat: Option<&mut dyn NatAccess> = if cgnat { Some(&mut g) } else { None };
    let a = api.handle_with(method, path, query, body, &mut c.cp, now_ms, nat);
    let yang = a.status == 200 && path.starts_with("/restconf/yang/");
    Response::restconf(a.status, a.body, yang)
}

/// The control side on the worker's punt and inject rings, stepped from the loop.
struct ControlSide {
    control: Control,
    punt: PktRing,
    inject: PktRing,
    injector: Injector,
    /// Buffers of the control side (punted frames freed, injected frames allocated).
    cache: PoolCache,
    /// CGNAT port-block records (`[cgnat] log = true`), printed on the console.
    nat_log: bool,
    /// The RADIUS client's sockets on the host stack (with `[radius]`).
    radius: Option<RadiusSockets>,
}

/// The RADIUS client's UDP sockets: one per channel, and the CoA/DM listener.
struct RadiusSockets {
    channels: Vec<SocketHandle>,
    coa: Option<SocketHandle>,
    /// Datagrams the stack could not queue (the client retransmits).
    send_failed: u64,
}

impl RadiusSockets {
    fn open(stack: &mut HostStack, coa_port: Option<u16>) -> Result<RadiusSockets, String> {
        let mut channels = Vec::new();
        let mut seed = crate::arch::rdtsc();
        for _ in 0..RADIUS_CHANNELS {
            // Distinct ephemeral ports (49152-65535).
            loop {
                seed = seed.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
                match stack.udp_open(0, seed >> 33) {
                    Ok((h, _)) => {
                        channels.push(h);
                        break;
                    }
                    Err(_) if channels.len() < 64 => continue,
                    Err(e) => return Err(e),
                }
            }
        }
        let coa = match coa_port {
            Some(p) => Some(stack.udp_open(p, 0)?.0),
            None => None,
        };
        Ok(RadiusSockets {
            channels,
            coa,
            send_failed: 0,
        })
    }

    /// Send what the control plane queued, hand what arrived to it, answer CoA/DM
    /// (the Linux `RadiusIo::pump` over the host stack).
    fn pump(&mut self, stack: &mut HostStack, cp: &mut vbng::control::ControlPlane, now_ms: u64) -> usize {
        let mut n = 0;
        for note in cp.take_notices() {
            log::warn!("radius: {note}");
        }
        // No journal (radius.acct_journal is refused): nothing to write.
        let _ = cp.take_acct_journal();
        n += self.send(stack, cp);
        stack.poll();
        for (i, &h) in self.channels.iter().enumerate() {
            n += stack.udp_recv(h, |from, b| cp.radius_input(i as u8, from, b, now_ms));
        }
        if let Some(h) = self.coa {
            let mut answers = Vec::new();
            n += stack.udp_recv(h, |from, b| {
                if let Some(r) = cp.dynauth(b, now_ms) {
                    answers.push((from, r));
                }
            });
            for (to, r) in answers {
                if !stack.udp_send(h, to, &r) {
                    self.send_failed += 1;
                }
            }
        }
        // Responses may have produced new requests (accounting Start after accept).
        n += self.send(stack, cp);
        n
    }

    fn send(&mut self, stack: &mut HostStack, cp: &mut vbng::control::ControlPlane) -> usize {
        let tx = cp.take_radius_tx();
        let n = tx.len();
        for t in tx {
            if let Some(&h) = self.channels.get(usize::from(t.channel)) {
                if !stack.udp_send(h, t.to, &t.bytes) {
                    self.send_failed += 1;
                }
            }
        }
        n
    }
}

impl ControlSide {
    /// Punted frames in, timers at `now_ms`, table updates out, frames to the inject
    /// ring; returns the work done.
    fn step(&mut self, now_ms: u64, stack: Option<&mut HostStack>) -> usize {
        let mut work = self.control.drain_punts(&self.punt, &mut self.cache, now_ms);
        if let (Some(r), Some(s)) = (self.radius.as_mut(), stack) {
            work += r.pump(s, &mut self.control.cp, now_ms);
        }
        let tx = self.control.poll(now_ms);
        work += tx.len();
        self.injector.queue(tx);
        work += self.injector.flush(&self.inject, &mut self.cache);
        if self.nat_log {
            if let Some(l) = &self.control.nat_log {
                while let Some(r) = l.pop() {
                    println!("cgnat: {r}");
                }
            }
        }
        work
    }
}

/// Run the vBNG; never returns.
pub fn run(table: toml::Table, opts: &Options) -> ! {
    let cfg = load(table);
    let sessions = opts.sessions.unwrap_or(DEFAULT_SESSIONS);
    let (seed, src) = crate::entropy::seed();
    if src.strong() {
        log::info!("entropy: {}", src.describe());
    } else {
        log::warn!(
            "entropy: {}: no RDSEED/RDRAND and no host seed (fw_cfg opt/vnf/entropy); PPP magic numbers and CHAP challenges are weakly random",
            src.describe()
        );
    }
    let need = (2 * RX_BUFFERS * 2 + 2 * RING + 2048) as u32;
    let t0 = clock::now_ns();
    // Device-visible: the virtio queues point straight into these buffers.
    let Some(pool) = crate::sparse::dma_safe(|| Pool::new(need)) else {
        crate::fatal(
            arch::EXIT_PLATFORM,
            format_args!("memory: cannot allocate {need} packet buffers"),
        )
    };
    log::debug!("pool: {need} buffers in {} us", (clock::now_ns() - t0) / 1000);
    let mut ports = open_ports(pool);
    if ports.len() < 2 {
        config_error(alloc::format!(
            "the vBNG needs 2 virtio-net ports (0 access, 1 core) but the guest has {}",
            ports.len()
        ));
    }
    // The host stack: where `mgmt=` says, else on the core port at `core_ip`.
    let mgmt = opts.mgmt.or_else(|| {
        cfg.core_ip.map(|n| NetConfig {
            port: CORE_PORT,
            addr: n.addr.octets(),
            prefix: n.len,
            gateway: cfg.core_gateway.map(|g| g.octets()),
        })
    });
    if mgmt.is_none() && cfg.radius.is_some() {
        config_error("[radius] needs the host network stack: set core_ip (the stack's address on the core port) or mgmt=PORT:ADDR/LEN[:GATEWAY] on the command line");
    }
    // Extra ports stay idle, but for the host stack's own port past the core.
    let keep = match mgmt {
        Some(m) if m.port > CORE_PORT => {
            if usize::from(m.port) >= ports.len() {
                config_error(alloc::format!(
                    "mgmt port {} but the guest has {} virtio-net ports",
                    m.port,
                    ports.len()
                ));
            }
            usize::from(m.port) + 1
        }
        _ => 2,
    };
    ports.truncate(keep);
    let nports = ports.len();
    let core_mac = ports[usize::from(CORE_PORT)]
        .mac()
        .unwrap_or([0x02, 0, 0, 0, 0xc0, 0x02]);
    let Vbng {
        graph,
        control,
        nat,
        stats,
    } = match build(&cfg, &BuildEnv::new(core_mac, sessions, Rng::from_seed(seed))) {
        Ok(v) => v,
        Err(e) => config_error(e),
    };
    let macs = [control.cp.mac(), core_mac];
    for (i, p) in ports.iter().enumerate() {
        log::info!(
            "port {i} ({}): {} device mac {} vbng mac {}",
            match i as u16 {
                ACCESS_PORT => "access",
                CORE_PORT => "core",
                _ => "management",
            },
            p.name(),
            mac_str(p.mac().unwrap_or_default()),
            mac_str(macs.get(i).copied().or(p.mac()).unwrap_or_default())
        );
    }
    let (punt, inject) = (ring(RING), ring(RING));
    let mut stack = mgmt.map(|m| {
        let i = usize::from(m.port);
        let mac = macs.get(i).copied().or(ports[i].mac()).unwrap_or_default();
        crate::hoststack::attach(&mut ports[i], mac, m, m.port > CORE_PORT, inject.clone(), pool.cache())
    });
    let mut http = stack.as_mut().map(|s| {
        let port = cfg.listen.map_or(DEFAULT_HTTP_PORT, |a| a.port());
        let a = s.net.addr;
        log::info!("metrics on http://{}.{}.{}.{}:{port}/metrics", a[0], a[1], a[2], a[3]);
        HttpServer::new(s, port)
    });
    let radius = match (&cfg.radius, stack.as_mut()) {
        (Some(r), Some(s)) => match RadiusSockets::open(s, r.coa_listen.map(|a| a.port())) {
            Ok(rs) => Some(rs),
            Err(e) => config_error(alloc::format!("[radius]: {e}")),
        },
        _ => None,
    };
    let mut worker = match Worker::new(
        ports,
        graph,
        pool.cache(),
        WorkerConfig {
            // timers (ARP refresh, policers, NAT ageing) every 10 ms
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
    let nat_log = control.nat_log.is_some();
    // The management API over the running configuration (CGNAT pool changes on a
    // worker built for `max_subscribers` slots).
    let cgnat = nat.is_some();
    let mut api = match &nat {
        Some(n) => Mgmt::new(cfg.clone()).with_nat_slots(n.max_subscribers),
        None => Mgmt::new(cfg.clone()),
    };
    let mut cs = ControlSide {
        control,
        punt,
        inject,
        injector: Injector::new(),
        cache: pool.cache(),
        nat_log,
        radius,
    };
    let ready_us = clock::uptime_us();
    println!(
        "{VNF} ready in {}.{:03} ms ({nports} ports, {sessions} session slots, {} local users{}, {} pools{}, heap peak {} KiB, {} demand-zero pages, memory used {} KiB of {} KiB)",
        ready_us / 1000,
        ready_us % 1000,
        cfg.users.len(),
        match &cfg.radius {
            Some(r) => alloc::format!(", radius {} auth {} acct servers", r.auth.len(), r.acct.len()),
            None => String::new(),
        },
        cfg.pools.len(),
        match &nat {
            Some(n) => alloc::format!(", cgnat pool {}", n.pool.join(" ")),
            None => String::new(),
        },
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
    loop {
        let now = clock::now_ns();
        worker.poll(now);
        let now_ms = (now - boot_ns) / 1_000_000;
        // The control side after every burst that punted, else every 16th round
        // (timers: LCP echo, restart timers, half-open limits, RAs).
        iter += 1;
        let stack_rx = stack.as_ref().is_some_and(|s| s.pending());
        if !cs.punt.is_empty() || !cs.injector.is_empty() || stack_rx || iter & 15 == 0 {
            if let Some(s) = stack.as_mut() {
                s.poll();
            }
            cs.step(now_ms, stack.as_mut());
            if let (Some(s), Some(h)) = (stack.as_mut(), http.as_mut()) {
                let served = h.poll(s, |m, p, q, b| {
                    if p == "/restconf" || p.starts_with("/restconf/") {
                        restconf(&mut api, &mut worker, &mut cs.control, cgnat, (m, p, q, b), now_ms)
                    } else {
                        http_answer(&worker, &cs.control, &stats, m, p, q)
                    }
                });
                if served {
                    s.poll();
                }
                s.poll();
            }
        }
        if iter & 63 == 0 {
            if stats_ns > 0 && now >= next_stats {
                next_stats = now + stats_ns;
                print_stats(&worker, &cs.control, &cs.injector);
                if let Some(s) = &stack {
                    s.print_stats(clock::uptime_us() / 1000, http.as_ref());
                }
                if let Some(r) = &cs.radius {
                    println!(
                        "stats t={}ms radius: send failed {}",
                        clock::uptime_us() / 1000,
                        r.send_failed
                    );
                }
            }
            let mut exit = false;
            console.poll(|cmd| match cmd {
                "stats" => print_stats(&worker, &cs.control, &cs.injector),
                "errors" => print!("{}", worker.graph.show_errors()),
                "sessions" => print!("{}", vbng::metrics::show_sessions(&cs.control.cp)),
                "exit" => exit = true,
                "help" => println!("commands: stats, errors, sessions, exit"),
                other => println!("unknown command `{other}` (try help)"),
            });
            if exit || stop_at.is_some_and(|t| now >= t) {
                print_stats(&worker, &cs.control, &cs.injector);
                if let Some(s) = &stack {
                    s.print_stats(clock::uptime_us() / 1000, http.as_ref());
                }
                if let Some(r) = &cs.radius {
                    println!(
                        "stats t={}ms radius: send failed {}",
                        clock::uptime_us() / 1000,
                        r.send_failed
                    );
                }
                arch::exit(arch::EXIT_OK);
            }
        }
    }
}
