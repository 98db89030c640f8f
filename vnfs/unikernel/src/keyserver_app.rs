//! The SD-WAN key server as a unikernel: the configuration of the `keyserver` crate
//! (the TOML `keyserver run` reads), its sans-IO server (`keyserver::server::Server`,
//! the crate built without `std`: IKEv2 per RFC 7296 with a PSK per CPE, then the key
//! distribution protocol of `vnfs/keyserver/README.md` over each CPE's IKE SA), on
//! host network stacks (`hoststack`, smoltcp): one on one virtio-net port, or one per
//! NIC as the VNF package lays it out (see "Stacks" below). One loop: the engine's
//! worker moves frames between the ports and the stacks (each port is its stack's
//! alone: an empty graph, every frame diverted; one inject ring, each frame carrying
//! its port), the IKE stack delivers the
//! datagrams (UDP `server.listen`'s port, and `listen_natt`'s with the RFC 3948
//! non-ESP marker), the server handles them and runs its timers (retransmissions,
//! rotations, liveness) by the unikernel clock, and its datagrams go back out; HTTP
//! on `server.metrics`'s port (default 9100) serves `/metrics` (the binary's
//! `keyserver_*` families), `/cpes` (the console's `cpes` lines) and `GET /restconf/data/keyserver:keyserver/state` (the
//! management API's `state` subtree, RFC 8040 §3.5.3, RFC 7951 JSON), and the
//! YANG action `POST /restconf/data/keyserver:keyserver/cpe=ID/revoke` (§3.6).
//!
//! Stacks. The package (`descriptors`, `keyserver`) has two connection points:
//! `ks-mgmt` (NIC 0, management) and `ks-core` (NIC 1, the CPEs). The IKE address is
//! `core=PORT:ADDR/LEN[:GATEWAY]`'s on the kernel command line (it must be
//! `server.listen`'s), else `server.listen`'s, else `mgmt=`'s; the management (HTTP)
//! address is `mgmt=PORT:ADDR/LEN[:GATEWAY]`'s (it wins over `server.metrics`'s
//! address; HTTP keeps `metrics`'s port), else `server.metrics`'s, else IKE's.
//! - The same address (e.g. `metrics` at `listen`'s address, or no `metrics`): one
//!   stack serves IKE and HTTP, on `mgmt=`'s (or `core=`'s) port and prefix, else
//!   as a /24 on NIC 0 — the layout before the two-NIC one.
//! - Different addresses: two stacks, management on NIC 0 (or `mgmt=`'s port) and
//!   IKE on NIC 1 (or `core=`'s), each a /24 without a gateway unless its option
//!   gives them; HTTP is served on the management stack only, IKE on the other.
//!
//! Refused with one line: too few NICs for the stacks' ports, both stacks on one
//! port, `core=` at another address than `listen`'s, `mgmt=` and `core=` giving the
//! same address differently.
//!
//! Secrets: tunnel keys live in heap chunks zeroized slot by slot when freed
//! (`keyserver::keys`); `memfd_secret(2)` does not apply — the guest owns all of its
//! memory and no other process shares it. Randomness (IKE nonces, DH keys, SPIs,
//! tunnel keys) comes from `ring`'s `SystemRandom`, which `sysrand` answers from the
//! entropy module. No journal: the image has no persistent disk (the config drive is
//! read-only), so `server.journal` is refused and a restarted guest hands out new
//! keys — the CPEs notice with their liveness checks, authenticate again and are
//! re-keyed by their synchronisation (as after a restart of the Linux key server
//! without a journal; their tunnels are re-keyed, not lost).
//!
//! Prints `keyserver ready` once up, counters every `stats` period, and answers
//! console commands (`stats`, `cpes`, `revoke ID`, `help`, `exit`).

use crate::common::{config_error, mac_str, open_ports, print_port_stats, LineReader, RX_BUFFERS};
use crate::config::Options;
use crate::hoststack::{HostStack, HttpServer, NetConfig, Response};
use crate::{arch, clock, print, println, VNF};
use alloc::string::String;
use alloc::vec::Vec;
use core::fmt::Write;
use core::net::{IpAddr, SocketAddr};
use dataplane::buf::Pool;
use dataplane::graph::Graph;
use dataplane::port::Port;
use dataplane::worker::{ring, Worker, WorkerConfig};
use keyserver::config::Config;
use keyserver::server::Server;

/// Inject ring (the stack's frames to the port).
const RING: usize = 1024;
/// HTTP port without `server.metrics` (the README's example).
const DEFAULT_HTTP_PORT: u16 = 9100;
/// A stack's prefix when no `mgmt=`/`core=` gives it.
const DEFAULT_PREFIX: u8 = 24;
/// The management NIC without `mgmt=` (the package's `ks-mgmt`, NIC index 0).
const MGMT_PORT: u16 = 0;
/// The IKE NIC without `core=` when management has its own (`ks-core`, NIC 1).
const IKE_PORT: u16 = 1;
/// RESTCONF path of the key server's operational state.
const STATE_PATH: &str = "/restconf/data/keyserver:keyserver/state";

/// Parse and check the configuration (`keyserver check`'s rules), plus what this
/// build cannot do; a refusal ends the boot with a one-line reason.
fn load(table: toml::Table) -> Config {
    let cfg = match Config::from_table(table) {
        Ok(c) => c,
        Err(e) => config_error(e),
    };
    if cfg.server.journal.is_some() {
        config_error("server.journal: the key server unikernel has no persistent disk (a restarted guest re-keys every CPE); remove it");
    }
    let v4 = |a: Option<SocketAddr>| a.is_none_or(|a| a.is_ipv4());
    if !v4(Some(cfg.server.listen)) || !v4(cfg.server.listen_natt) || !v4(cfg.server.metrics) {
        config_error("server.listen, listen_natt and metrics: the unikernel's host stack is IPv4 only");
    }
    cfg
}

/// Where the stacks go: the IKE stack, and the management (HTTP) stack when it is
/// not the IKE stack (a NIC of its own).
struct Layout {
    ike: NetConfig,
    mgmt: Option<NetConfig>,
}

/// A specified IPv4 address (`0.0.0.0` is none).
fn v4(a: SocketAddr) -> Option<[u8; 4]> {
    match a.ip() {
        IpAddr::V4(a) if !a.is_unspecified() => Some(a.octets()),
        _ => None,
    }
}

fn dotted(a: [u8; 4]) -> core::net::Ipv4Addr {
    core::net::Ipv4Addr::from(a)
}

/// The stacks' places. IKE: `core=` (its address must be `server.listen`'s, the
/// address IKE's NAT detection hashes), else `server.listen`'s address, else
/// `mgmt=`'s. Management: `mgmt=` (the command line wins over `server.metrics`'s
/// address; HTTP keeps `metrics`'s port), else `server.metrics`'s address, else
/// IKE's. The same address: one stack (on `mgmt=`'s or `core=`'s port, else a /24 on
/// NIC 0) serves both, as before. Different ones: management on NIC 0 (or `mgmt=`'s
/// port) and IKE on NIC 1 (or `core=`'s), each a /24 without a gateway unless its
/// option says otherwise.
fn layout(cfg: &Config, opts: &Options) -> Layout {
    let listen = v4(cfg.server.listen);
    let metrics = cfg.server.metrics.and_then(v4);
    let core = opts.core;
    let mgmt = opts.mgmt;
    if let (Some(c), Some(l)) = (core, listen) {
        if c.addr != l {
            config_error(alloc::format!(
                "server.listen {} is not the address core= gives the IKE stack",
                cfg.server.listen
            ));
        }
    }
    let Some(ike_addr) = core.map(|c| c.addr).or(listen).or(mgmt.map(|m| m.addr)) else {
        config_error("server.listen is unspecified: give the guest's IPv4 address there or mgmt=PORT:ADDR/LEN[:GATEWAY] on the command line")
    };
    let mgmt_addr = mgmt.map(|m| m.addr).or(metrics).unwrap_or(ike_addr);
    let on = |port: u16, addr: [u8; 4]| NetConfig {
        port,
        addr,
        prefix: DEFAULT_PREFIX,
        gateway: None,
    };
    if mgmt_addr == ike_addr {
        let one = match (mgmt, core) {
            (Some(m), Some(c)) if m != c => config_error(alloc::format!(
                "mgmt= and core= both give {}: one stack serves IKE and HTTP there; give one of them",
                dotted(ike_addr)
            )),
            (Some(n), _) | (None, Some(n)) => n,
            (None, None) => on(0, ike_addr),
        };
        return Layout { ike: one, mgmt: None };
    }
    let m = mgmt.unwrap_or(on(MGMT_PORT, mgmt_addr));
    let i = core.unwrap_or(on(IKE_PORT, ike_addr));
    if m.port == i.port {
        config_error(alloc::format!(
            "management {} and IKE {} are both on port {}: give mgmt= and core= different ports",
            dotted(m.addr),
            dotted(i.addr),
            m.port
        ));
    }
    Layout { ike: i, mgmt: Some(m) }
}

fn json_str(o: &mut String, s: &str) {
    o.push('"');
    for ch in s.chars() {
        match ch {
            '"' => o.push_str("\\\""),
            '\\' => o.push_str("\\\\"),
            ch if (ch as u32) < 0x20 => {
                let _ = write!(o, "\\u{:04x}", ch as u32);
            }
            ch => o.push(ch),
        }
    }
    o.push('"');
}

/// The `state` subtree as the Linux key server's management API returns it
/// (`keyserver::mgmt`, YANG `keyserver@2026-12-02`; 64-bit counters as strings,
/// RFC 7951 §6.1): totals, per CPE whether it is up and served, per tunnel its SA
/// generation and rotation times — never a key or PSK.
fn state_json(srv: &Server, now_ms: u64) -> String {
    let s = srv.stats();
    let mut o = String::with_capacity(256);
    let _ = write!(
        o,
        "{{\"keyserver:state\":{{\"cpes\":{},\"online\":{},\"served\":{},\"tunnels\":{},\"rekeys\":\"{}\",\"rekeys-in-progress\":{},\"revocations\":\"{}\",\"revocations-pending\":{},\"auth-failures\":\"{}\"",
        s.cpes, s.online, s.served, s.pairs, s.rekeys, s.rekeys_in_progress, s.revocations, s.revocations_pending, s.auth_failures
    );
    let views = srv.views(now_ms);
    if !views.is_empty() {
        o.push_str(",\"cpe\":[");
        for (i, c) in views.iter().enumerate() {
            if i > 0 {
                o.push(',');
            }
            o.push_str("{\"id\":");
            json_str(&mut o, &c.id);
            let _ = write!(
                o,
                ",\"revoked\":{},\"up\":{},\"served\":{}",
                c.revoked, c.online, c.served
            );
            if !c.tunnels.is_empty() {
                o.push_str(",\"tunnel\":[");
                for (j, t) in c.tunnels.iter().enumerate() {
                    if j > 0 {
                        o.push(',');
                    }
                    o.push_str("{\"peer\":");
                    json_str(&mut o, &t.peer);
                    let _ = write!(o, ",\"sa-generation\":{},\"rekeying\":{}", t.generation, t.rekeying);
                    if let Some(ms) = t.since_rekey_ms {
                        let _ = write!(o, ",\"seconds-since-rekey\":\"{}\"", ms / 1000);
                    }
                    if let Some(ms) = t.next_rekey_ms {
                        let _ = write!(o, ",\"seconds-to-rekey\":\"{}\"", ms / 1000);
                    }
                    o.push('}');
                }
                o.push(']');
            }
            o.push('}');
        }
        o.push(']');
    }
    o.push_str("}}\n");
    o
}

/// RESTCONF path prefix of a CPE entry (`…/cpe=ID/revoke` is its YANG action).
const CPE_PATH: &str = "/restconf/data/keyserver:keyserver/cpe=";

/// The YANG action `revoke` of a CPE (RFC 8040 §3.6: POST, 204 without output), as
/// the Linux key server's API; the ID percent-decoded (RFC 3986 §2.1).
fn revoke_answer(srv: &mut Server, now_ms: u64, path: &str) -> Response {
    let Some(id) = path.strip_prefix(CPE_PATH).and_then(|r| r.strip_suffix("/revoke")) else {
        return Response::error(404, "POST /restconf/data/keyserver:keyserver/cpe=ID/revoke only");
    };
    let Some(id) = pct_decode(id) else {
        return Response::error(400, "bad percent-encoding in the CPE id");
    };
    match srv.revoke(&id, now_ms) {
        Ok(()) => {
            println!("keyserver: revoking {id} (management API)");
            Response {
                status: 204,
                content_type: "text/plain; charset=utf-8",
                body: String::new(),
            }
        }
        Err(e) => Response::error(400, &e),
    }
}

fn pct_decode(s: &str) -> Option<String> {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'%' {
            let h = core::str::from_utf8(b.get(i + 1..i + 3)?).ok()?;
            out.push(u8::from_str_radix(h, 16).ok()?);
            i += 3;
        } else {
            out.push(b[i]);
            i += 1;
        }
    }
    String::from_utf8(out).ok()
}

fn http_answer(srv: &mut Server, now_ms: u64, method: &str, path: &str) -> Response {
    if method == "POST" {
        return revoke_answer(srv, now_ms, path);
    }
    if method != "GET" {
        return Response::error(405, "GET, or POST of the revoke action");
    }
    match path {
        "/metrics" => Response::metrics(keyserver::metrics::render(&srv.stats())),
        "/cpes" => Response::text(show_cpes(srv, now_ms)),
        STATE_PATH => Response::yang_json(state_json(srv, now_ms)),
        _ => Response::error(404, "try /metrics, /cpes or /restconf/data/keyserver:keyserver/state"),
    }
}

/// The IKE sockets and what could not be sent.
struct Ike {
    main: smoltcp::iface::SocketHandle,
    natt: Option<smoltcp::iface::SocketHandle>,
    /// Datagrams the stack could not queue (the IKE window retransmits).
    send_failed: u64,
}

impl Ike {
    /// Datagrams in, timers, datagrams out; returns the work done.
    fn pump(&mut self, stack: &mut HostStack, srv: &mut Server, now_ms: u64) -> usize {
        let mut n = stack.udp_recv(self.main, |from, b| srv.handle(b, from, false, now_ms));
        if let Some(h) = self.natt {
            n += stack.udp_recv(h, |from, b| srv.handle(b, from, true, now_ms));
        }
        srv.poll(now_ms);
        for t in srv.take_transmits() {
            let h = match (t.natt, self.natt) {
                (true, Some(h)) => h,
                _ => self.main,
            };
            n += 1;
            if !stack.udp_send(h, t.to, &t.data) {
                self.send_failed += 1;
            }
        }
        n
    }
}

fn print_stats(srv: &Server, ike: &Ike) {
    let s = srv.stats();
    println!(
        "stats t={}ms keyserver: {} cpes, {} online, {} served, {} tunnels, rekeys {} ({} in progress), revocations {}, updates {} sent {} acked, auth failures {}, cpes down {}, send failed {}",
        clock::uptime_us() / 1000,
        s.cpes,
        s.online,
        s.served,
        s.pairs,
        s.rekeys,
        s.rekeys_in_progress,
        s.revocations,
        s.updates_sent,
        s.updates_acked,
        s.auth_failures,
        s.cpes_down,
        ike.send_failed
    );
}

/// The stacks' counter lines (HTTP's on the management stack's).
fn print_stack_stats(ike: &HostStack, mgmt: Option<&HostStack>, http: &HttpServer) {
    let t = clock::uptime_us() / 1000;
    match mgmt {
        Some(m) => {
            ike.print_stats(t, None);
            m.print_stats(t, Some(http));
        }
        None => ike.print_stats(t, Some(http)),
    }
}

/// One line per CPE: id, up/down, served, tunnels.
fn show_cpes(srv: &Server, now_ms: u64) -> String {
    let mut o = String::new();
    for c in srv.views(now_ms) {
        let _ = writeln!(
            o,
            "{} {}{}{} tunnels {}",
            c.id,
            if c.online { "up" } else { "down" },
            if c.served { " served" } else { "" },
            if c.revoked { " revoked" } else { "" },
            c.tunnels.len()
        );
    }
    o
}

/// Run the key server; never returns.
pub fn run(table: toml::Table, opts: &Options) -> ! {
    let cfg = load(table);
    let src = crate::sysrand::init();
    if src.strong() {
        log::info!("entropy: {}", src.describe());
    } else {
        log::warn!(
            "entropy: {}: no RDSEED/RDRAND and no host seed (fw_cfg opt/vnf/entropy); IKE nonces and tunnel keys are weakly random",
            src.describe()
        );
    }
    let lay = layout(&cfg, opts);
    let last = lay.mgmt.map_or(lay.ike.port, |m| m.port.max(lay.ike.port));
    // Receive and transmit buffers of each stack's port, the inject ring, slack.
    let need = (2 * (usize::from(last) + 1) * RX_BUFFERS + 2 * RING + 1024) as u32;
    // Device-visible: the virtio queues point straight into these buffers.
    let Some(pool) = crate::sparse::dma_safe(|| Pool::new(need)) else {
        crate::fatal(
            arch::EXIT_PLATFORM,
            format_args!("memory: cannot allocate {need} packet buffers"),
        )
    };
    let mut ports = open_ports(pool);
    if usize::from(last) >= ports.len() {
        config_error(match lay.mgmt {
            Some(m) => alloc::format!(
                "the key server's management stack is on port {} and its IKE stack on port {} but the guest has {} virtio-net ports",
                m.port,
                lay.ike.port,
                ports.len()
            ),
            None => alloc::format!(
                "the key server's host stack is on port {} but the guest has {} virtio-net ports",
                lay.ike.port,
                ports.len()
            ),
        });
    }
    // The stacks' ports only; the others stay idle.
    ports.truncate(usize::from(last) + 1);
    let nports = ports.len();
    for (i, p) in ports.iter().enumerate() {
        log::info!("port {i}: {} mac {}", p.name(), mac_str(p.mac().unwrap_or_default()));
    }
    // One inject ring for every stack: each frame carries its port (`meta.port`).
    let inject = ring(RING);
    let mut attach = |net: NetConfig| {
        let i = usize::from(net.port);
        let mac = ports[i].mac().unwrap_or([0x02, 0, 0, 0, 0x0e, 0x01 + net.port as u8]);
        crate::hoststack::attach(&mut ports[i], mac, net, true, inject.clone(), pool.cache())
    };
    let mut stack = attach(lay.ike);
    let mut mgmt_stack = lay.mgmt.map(&mut attach);
    let ip = IpAddr::from(lay.ike.addr);
    let local = SocketAddr::new(ip, cfg.server.listen.port());
    let main = match stack.udp_open(local.port(), 0) {
        Ok((h, _)) => h,
        Err(e) => config_error(alloc::format!("server.listen: {e}")),
    };
    let natt = cfg.server.listen_natt.map(|a| match stack.udp_open(a.port(), 0) {
        Ok((h, _)) => h,
        Err(e) => config_error(alloc::format!("server.listen_natt: {e}")),
    });
    let http_port = cfg.server.metrics.map_or(DEFAULT_HTTP_PORT, |a| a.port());
    let http_ip = IpAddr::from(lay.mgmt.unwrap_or(lay.ike).addr);
    let mut http = HttpServer::new(mgmt_stack.as_mut().unwrap_or(&mut stack), http_port);
    log::info!("metrics on http://{http_ip}:{http_port}/metrics");
    let mut worker = match Worker::new(
        ports,
        Graph::new(),
        pool.cache(),
        WorkerConfig {
            tick_ns: 10_000_000,
            ..WorkerConfig::default()
        },
    ) {
        Ok(w) => w.with_inject(inject),
        Err(e) => config_error(e),
    };
    let boot_ns = clock::now_ns();
    let now_ms = || (clock::now_ns() - boot_ns) / 1_000_000;
    let mut srv = match Server::new(&cfg, local, now_ms()) {
        Ok(s) => s,
        Err(e) => config_error(e),
    };
    let mut ike = Ike {
        main,
        natt,
        send_failed: 0,
    };
    let st = srv.stats();
    let ready_us = clock::uptime_us();
    println!(
        "{VNF} ready in {}.{:03} ms ({nports} ports, ike {local}{}, http {http_ip}:{http_port}{}, {} cpes, {} groups, {} tunnels, {}, heap peak {} KiB, {} demand-zero pages, memory used {} KiB of {} KiB)",
        ready_us / 1000,
        ready_us % 1000,
        match cfg.server.listen_natt {
            Some(a) => alloc::format!(" and {}:{}", ip, a.port()),
            None => String::new(),
        },
        if lay.mgmt.is_some() { " (management NIC)" } else { "" },
        st.cpes,
        st.groups,
        st.pairs,
        if srv.keys_in_secret_memory() { "keys in secret memory" } else { "keys on the heap, zeroized when freed" },
        crate::heap::peak() / 1024,
        crate::sparse::pages(),
        crate::heap::used() / 1024,
        crate::heap::claimed() / 1024
    );
    if opts.exit_on_ready {
        arch::exit(arch::EXIT_OK);
    }
    let stats_ns = opts.stats_ms.unwrap_or(1000) * 1_000_000;
    let mut next_stats = clock::now_ns() + stats_ns;
    let stop_at = opts.exit_after_ms.map(|ms| clock::now_ns() + ms * 1_000_000);
    let mut console = LineReader::default();
    let mut iter: u64 = 0;
    loop {
        let now = clock::now_ns();
        worker.poll(now);
        let t = now_ms();
        stack.poll();
        if ike.pump(&mut stack, &mut srv, t) > 0 {
            stack.poll();
        }
        for r in srv.take_revoked() {
            println!(
                "keyserver: revoked {} ({} ms until every online peer acknowledged)",
                r.id, r.took_ms
            );
        }
        for id in srv.take_down() {
            println!("keyserver: cpe {id} is down (liveness checks unanswered)");
        }
        let hs = match mgmt_stack.as_mut() {
            Some(m) => {
                m.poll();
                m
            }
            None => &mut stack,
        };
        if http.poll(hs, |m, p, _, _| http_answer(&mut srv, t, m, p)) {
            hs.poll();
        }
        iter += 1;
        if iter & 63 == 0 {
            if stats_ns > 0 && now >= next_stats {
                next_stats = now + stats_ns;
                print_port_stats(&worker, clock::uptime_us() / 1000);
                print_stats(&srv, &ike);
                print_stack_stats(&stack, mgmt_stack.as_ref(), &http);
            }
            let mut exit = false;
            let mut revoke: Vec<String> = Vec::new();
            console.poll(|cmd| match cmd.split_once(' ') {
                Some(("revoke", id)) => revoke.push(id.trim().into()),
                _ => match cmd {
                    "stats" => print_stats(&srv, &ike),
                    "cpes" => print!("{}", show_cpes(&srv, t)),
                    "exit" => exit = true,
                    "help" => println!("commands: stats, cpes, revoke ID, exit"),
                    other => println!("unknown command `{other}` (try help)"),
                },
            });
            for id in revoke {
                match srv.revoke(&id, t) {
                    Ok(()) => println!("keyserver: revoking {id}"),
                    Err(e) => println!("revoke {id}: {e}"),
                }
            }
            if exit || stop_at.is_some_and(|t| now >= t) {
                print_stats(&srv, &ike);
                print_stack_stats(&stack, mgmt_stack.as_ref(), &http);
                arch::exit(arch::EXIT_OK);
            }
        }
    }
}
