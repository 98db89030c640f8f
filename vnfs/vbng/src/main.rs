//! `vbng`: the vBNG as a Linux process over any port spec (`mem:`, `pcap:`, `tap:`,
//! `afpacket:`, `afxdp:`). `vbng run -c vbng.toml` runs the fast path and the control
//! plane in one poll loop; `--listen` (or `listen` in the config) serves
//! `GET /metrics` (Prometheus; `GET /metrics?sessions` adds per-session series) and
//! `GET /sessions`; `vbng show sessions --connect
//! ADDR` prints the session table of a running instance; `vbng check -c FILE`
//! validates a config (exit status 1 with a one-line reason when it is refused).
//!
//! Limits: `--max-sessions` 1 to 1048576 (`vbng::config::MAX_SESSIONS`; the tables
//! for every slot are allocated at start); the config's own limits are listed in the
//! README and enforced by `Config::validate`. A relative `user_file` is read from the
//! config file's directory.

use anyhow::{bail, Context};
use clap::{Parser, Subcommand};
use dataplane::batch::{Batch, Out};
use dataplane::buf::Pool;
use dataplane::port::Port;
use dataplane::stage::Pipeline;
use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::Path;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::{Duration, Instant};
use vbng::config::{
    parse_mac, parse_prefix4, parse_sockaddr, parse_user_file, Config, MAX_SESSIONS,
};
use vbng::control::{ControlPlane, SessionCounters};
use vbng::corelink::CoreLink;
use vbng::fastpath::{update_queue, FastPath, FastPathConfig, FastPathStats, LocalConfig};
use vbng::radius_io::RadiusIo;
use vbng::rng::Rng;

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
        /// HTTP listen address for /metrics and /sessions (overrides `listen`).
        #[arg(long)]
        listen: Option<String>,
        /// Stop after this many seconds (0 = run until killed).
        #[arg(long, default_value_t = 0)]
        duration: u64,
    },
    /// Validate a config file and its user file (limits: see the README); exits 1
    /// with a one-line reason when refused.
    Check {
        /// Config file (TOML).
        #[arg(short, long)]
        config: String,
    },
    /// Query a running instance.
    Show {
        /// What to show: `sessions` or `metrics`.
        what: String,
        /// Address of the instance's `--listen`.
        #[arg(long, default_value = "127.0.0.1:9180")]
        connect: String,
    },
}

/// Read and validate a config; a relative `user_file` is found next to the config.
fn load(path: &str) -> anyhow::Result<Config> {
    let text = std::fs::read_to_string(path).with_context(|| format!("reading {path}"))?;
    let mut cfg = Config::from_toml(&text).map_err(|e| anyhow::anyhow!("{path}: {e}"))?;
    if let Some(f) = cfg.user_file.clone() {
        let f = match Path::new(path).parent() {
            Some(dir) if Path::new(&f).is_relative() => dir.join(&f),
            _ => f.into(),
        };
        let shown = f.display();
        let t = std::fs::read_to_string(&f).with_context(|| format!("reading {shown}"))?;
        cfg.users
            .extend(parse_user_file(&t).map_err(|e| anyhow::anyhow!("{shown}: {e}"))?);
        // The file's users meet the same rules (unique names, addresses in a pool).
        cfg.validate()
            .map_err(|e| anyhow::anyhow!("{path} with {shown}: {e}"))?;
    }
    Ok(cfg)
}

fn http_get(addr: &str, path: &str) -> anyhow::Result<String> {
    let mut s = TcpStream::connect(addr).with_context(|| format!("connecting to {addr}"))?;
    s.set_read_timeout(Some(Duration::from_secs(5)))?;
    write!(s, "GET {path} HTTP/1.0\r\nHost: {addr}\r\n\r\n")?;
    let mut r = String::new();
    s.read_to_string(&mut r)?;
    Ok(r.split_once("\r\n\r\n")
        .map(|(_, b)| b.to_string())
        .unwrap_or(r))
}

/// What `serve` reports besides the control plane and the stage counters.
struct Own<'a> {
    stats: &'a FastPathStats,
    core: Option<&'a CoreLink>,
}

fn serve(
    l: &TcpListener,
    cp: &ControlPlane,
    pipeline: &Pipeline,
    own: &Own<'_>,
    ports: &[Box<dyn Port>],
) {
    while let Ok((mut s, _)) = l.accept() {
        let _ = s.set_read_timeout(Some(Duration::from_millis(200)));
        let mut buf = [0u8; 1024];
        let n = s.read(&mut buf).unwrap_or(0);
        let req = String::from_utf8_lossy(buf.get(..n).unwrap_or(&[]));
        let (status, body) = if req.starts_with("GET /metrics") {
            let mut p = dataplane::metrics::Prom::new();
            own.stats.prometheus(own.core, &mut p);
            // Port counters, with AF_PACKET ring overruns in rx_dropped.
            for port in ports {
                p.port(port.name(), &port.stats());
            }
            let mut body = vbng::metrics::prometheus(cp, pipeline.nodes()) + &p.finish();
            if req.starts_with("GET /metrics?sessions") {
                body += &vbng::metrics::prometheus_sessions(cp);
            }
            ("200 OK", body)
        } else if req.starts_with("GET /sessions") {
            ("200 OK", vbng::metrics::show_sessions(cp))
        } else if req.starts_with("GET /errors") {
            ("200 OK", pipeline.show_errors())
        } else {
            (
                "404 Not Found",
                "try /metrics, /sessions or /errors\n".to_string(),
            )
        };
        let _ = write!(s, "HTTP/1.0 {status}\r\nContent-Type: text/plain; version=0.0.4\r\nContent-Length: {}\r\n\r\n{body}", body.len());
    }
}

fn run(
    cfg: Config,
    access: String,
    core: String,
    max_sessions: u32,
    listen: Option<String>,
    duration: u64,
) -> anyhow::Result<()> {
    let mut ports: Vec<Box<dyn Port>> = vec![
        dataplane::port::spec::open_str(&access)
            .with_context(|| format!("access port {access}"))?,
        dataplane::port::spec::open_str(&core).with_context(|| format!("core port {core}"))?,
    ];
    let counters = SessionCounters::new(max_sessions as usize);
    let mut cp = ControlPlane::new(&cfg, max_sessions, counters.clone(), Rng::from_os())
        .map_err(|e| anyhow::anyhow!("{e}"))?;
    let updates = update_queue(max_sessions as usize * 2);
    let core_mac = ports[1].mac().unwrap_or([0x02, 0, 0, 0, 0xc0, 0x02]);
    let core_link = match cfg.core_ip.as_deref() {
        Some(s) => {
            let (ip, len) = parse_prefix4(s).map_err(|e| anyhow::anyhow!("{e}"))?;
            let link = CoreLink::new(ip, len, cfg.core_gateway);
            Some(Arc::new(match cfg.core_ip6 {
                Some(ip6) => link.with_gateway6(ip6, cfg.core_gateway6),
                None => link,
            }))
        }
        None => None,
    };
    let mut fp = FastPath::new(
        FastPathConfig {
            access_port: 0,
            core_port: 1,
            access_mac: cp.mac(),
            core_mac,
            core_next_hop: parse_mac(&cfg.core_next_hop_mac).map_err(|e| anyhow::anyhow!("{e}"))?,
            max_sessions,
        },
        updates.clone(),
        counters,
    )
    .with_local(LocalConfig {
        gateway: Some(cfg.gateway),
        mss: cfg.tcp_mss_clamp,
        icmp_rate: u64::from(cfg.icmp_rate),
        // icmp_rate = 0 means no ICMP errors at all, not "the first burst only".
        icmp_burst: if cfg.icmp_rate == 0 {
            0
        } else {
            u64::from(cfg.icmp_burst)
        },
    });
    if let Some(c) = &core_link {
        fp = fp.with_core_link(c.clone());
    }
    fp = fp.with_core_ip6(cfg.core_ip6);
    let fp_stats = fp.stats();
    let own = Own {
        stats: &fp_stats,
        core: core_link.as_deref(),
    };
    let mut pipeline = Pipeline::new();
    pipeline.push(Box::new(fp));
    let pool = Pool::new(1 << 15).context("buffer pool")?;
    let mut out = Out::new(2, pool.cache());
    let mut io = match &cfg.radius {
        Some(r) => {
            let coa = r
                .coa_listen
                .as_deref()
                .map(parse_sockaddr)
                .transpose()
                .map_err(|e| anyhow::anyhow!("{e}"))?;
            let mut io = RadiusIo::bind("0.0.0.0:0".parse()?, 4, coa)?;
            if let Some(path) = r.acct_journal.as_deref() {
                let (j, records) = vbng::acct_journal::AcctJournal::open(Path::new(path))
                    .with_context(|| format!("accounting journal {path}"))?;
                if j.skipped_bytes > 0 {
                    eprintln!(
                        "vbng: radius: accounting journal {path}: {} octets of a torn or corrupt tail ignored",
                        j.skipped_bytes
                    );
                }
                if !records.is_empty() {
                    eprintln!(
                        "vbng: radius: {} unacknowledged accounting records replayed from {path}",
                        records.len()
                    );
                }
                cp.restore_acct(records, 0);
                io.set_journal(j);
            }
            Some(io)
        }
        None => None,
    };
    let listener = match listen.or(cfg.listen.clone()) {
        Some(a) => {
            let l = TcpListener::bind(&a).with_context(|| format!("listen {a}"))?;
            l.set_nonblocking(true)?;
            Some(l)
        }
        None => None,
    };
    let t0 = Instant::now();
    let mut batch = Batch::new();
    let mut iter: u64 = 0;
    let mut ctl_tx: std::collections::VecDeque<(u16, Vec<u8>)> = Default::default();
    eprintln!("vbng: access {access}, core {core}, {max_sessions} session slots");
    while duration == 0 || t0.elapsed() < Duration::from_secs(duration) {
        let now_ms = t0.elapsed().as_millis() as u64;
        out.now_ns = t0.elapsed().as_nanos() as u64;
        let mut work = 0;
        for i in 0..ports.len() {
            let Some(port) = ports.get_mut(i) else {
                continue;
            };
            let n = port.rx_burst(&mut out.cache, &mut batch);
            work += n;
            for p in batch.iter_mut() {
                p.meta.port = i as u16;
            }
            if n > 0 {
                pipeline.run(&mut batch, &mut out);
            }
            // In arrival order (Batch::pop takes from the back).
            let cache = &mut out.cache;
            out.punt.drain(|p| {
                cp.input(p.meta.port, p.data(), now_ms);
                cache.free(p);
            });
        }
        cp.poll(now_ms);
        if let Some(io) = io.as_mut() {
            work += io.pump(&mut cp, now_ms);
        }
        // Control frames wait in `ctl_tx` while the port's queue is full: a burst of
        // answers (a wave of PADIs, a batch of RADIUS accepts) can exceed one batch,
        // and a dropped PADS or Authenticate-Ack costs the subscriber a restart timer.
        ctl_tx.extend(cp.take_tx());
        while let Some((port, f)) = ctl_tx.front() {
            let Some(b) = out.ports.get_mut(usize::from(*port)) else {
                ctl_tx.pop_front();
                continue;
            };
            if b.is_full() {
                break;
            }
            let Some(mut p) = out.cache.alloc() else {
                break;
            };
            if p.copy_from(f).is_err() {
                out.cache.free(p);
            } else if let Err(p) = b.push(p) {
                out.cache.free(p);
            }
            ctl_tx.pop_front();
        }
        for u in cp.take_fib() {
            if updates.push(u).is_err() {
                eprintln!("vbng: fast-path update queue full");
            }
        }
        for (i, port) in ports.iter_mut().enumerate() {
            if let Some(b) = out.ports.get_mut(i) {
                if !b.is_empty() {
                    // What the port cannot take now stays queued for the next round (a
                    // full queue drops new packets, counted as tx_full by the engine).
                    port.tx_burst(&mut out.cache, b);
                }
            }
        }
        if iter & 63 == 0 {
            // Stage timers: the core gateway's ARP resolution and refresh.
            out.now_ns = t0.elapsed().as_nanos() as u64;
            pipeline.tick(&mut out);
        }
        iter += 1;
        if iter & 1023 == 0 {
            if let Some(l) = &listener {
                serve(l, &cp, &pipeline, &own, &ports);
            }
        }
        if work == 0 && ctl_tx.is_empty() {
            std::thread::sleep(Duration::from_micros(50));
        }
    }
    if let Some(io) = io.as_mut() {
        // What was queued in the last round reaches the journal before we exit.
        io.flush(&mut cp);
    }
    eprint!("{}", vbng::metrics::show_sessions(&cp));
    eprint!("{}", pipeline.show_errors());
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
    match Cli::parse().cmd {
        Cmd::Run {
            config,
            access,
            core,
            max_sessions,
            listen,
            duration,
        } => {
            let cfg = load(&config)?;
            let access = access.unwrap_or_else(|| cfg.ports.access.clone());
            let core = core.unwrap_or_else(|| cfg.ports.core.clone());
            if access.is_empty() || core.is_empty() {
                bail!(
                    "no access/core port: set ports.access and ports.core or pass --access/--core"
                );
            }
            run(cfg, access, core, max_sessions, listen, duration)
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
        Cmd::Show { what, connect } => {
            let path = match what.as_str() {
                "sessions" => "/sessions",
                "metrics" => "/metrics",
                "errors" => "/errors",
                w => bail!("show what? {w:?}: sessions, metrics or errors"),
            };
            print!("{}", http_get(&connect, path)?);
            Ok(())
        }
    }
}
