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
use dataplane::buf::{Pool, PoolCache};
use dataplane::http::{Handler, HttpServer, Request, Response};
use dataplane::port::Port;
use dataplane::runner::WorkerSnapshot;
use dataplane::stage::show_errors;
use dataplane::worker::{ring, PktRing, Worker, WorkerConfig};
use std::path::Path;
use std::process::ExitCode;
use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use vbng::config::{parse_sockaddr, parse_user_file, Config, MAX_SESSIONS};
use vbng::radius_io::RadiusIo;
use vbng::rng::Rng;
use vbng::vnf::{update_hook, BuildEnv, Control, Injector, Stats, Vbng, CORE_PORT};

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
        /// What to show: `sessions`, `metrics`, `errors`, `trace` or `graph`.
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

/// Most packets `--trace` and `/trace?add=N` trace at once.
const MAX_TRACE: u32 = 16384;
/// How often the worker publishes its counters for `/metrics`.
const PUBLISH_EVERY: Duration = Duration::from_millis(100);
/// An idle poll loop sleeps this long (the namespace labs share two cores between
/// subscribers, vBNG, core and FreeRADIUS; a spinning idle thread slows them down).
const IDLE_SLEEP: Duration = Duration::from_micros(50);
/// Idle polls in a row before the worker sleeps.
const IDLE_SPINS: u32 = 16;

/// What the worker thread publishes and the HTTP threads read (never locked by the
/// worker except with `try_lock`).
struct Shared {
    snap: Mutex<WorkerSnapshot>,
    /// Packets to trace, asked for by `/trace?add=N` (taken by the worker).
    trace_req: AtomicU32,
}

/// Copies the worker's counters into `dst`, reusing its vectors.
fn publish(dst: &mut WorkerSnapshot, w: &Worker) {
    dst.loops = w.stats.loops;
    dst.idle_loops = w.stats.idle_loops;
    dst.punt_dropped = w.stats.punt_dropped;
    dst.tx_unsent = w.stats.tx_unsent;
    dst.worker = w.stats;
    dst.out = w.out.stats;
    let mut k = 0;
    for n in w.graph.nodes() {
        match dst.nodes.get_mut(k) {
            Some(d) => d.copy_from(n),
            None => dst.nodes.push(n.clone()),
        }
        k += 1;
    }
    dst.nodes.truncate(k);
    dst.counters.clear();
    let c = &mut dst.counters;
    w.graph.counters(&mut |node, ctr| c.push((node, ctr)));
    let mut k = 0;
    for p in w.ports.iter() {
        match dst.ports.get_mut(k) {
            Some((name, s)) => {
                if name != p.name() {
                    *name = p.name().to_string();
                }
                *s = p.stats();
            }
            None => dst.ports.push((p.name().to_string(), p.stats())),
        }
        k += 1;
    }
    dst.ports.truncate(k);
}

/// The worker thread: the engine's worker loop, counters published every
/// [`PUBLISH_EVERY`], a short sleep when a poll found nothing.
fn worker_thread(mut w: Worker, shared: Arc<Shared>, stop: Arc<AtomicBool>) -> WorkerSnapshot {
    let t0 = Instant::now();
    let mut last_pub = Instant::now();
    let mut idle = 0u32;
    let mut trace_len = usize::MAX;
    loop {
        if stop.load(Ordering::Relaxed) {
            w.flush();
            break;
        }
        let n = w.poll(t0.elapsed().as_nanos() as u64);
        if last_pub.elapsed() >= PUBLISH_EVERY {
            last_pub = Instant::now();
            let t = shared.trace_req.swap(0, Ordering::Relaxed);
            if t > 0 {
                w.out.trace.clear();
                w.trace_next(t.min(MAX_TRACE));
            }
            if let Ok(mut s) = shared.snap.try_lock() {
                publish(&mut s, &w);
                // The trace text is formatted only when it changed.
                let recs = w.out.trace.records().len();
                if recs != trace_len {
                    trace_len = recs;
                    s.trace = w.out.trace.format();
                }
            }
        }
        if n == 0 {
            idle += 1;
            if idle >= IDLE_SPINS {
                std::thread::sleep(IDLE_SLEEP);
            }
        } else {
            idle = 0;
        }
    }
    let mut fin = WorkerSnapshot::default();
    publish(&mut fin, &w);
    fin.trace = w.out.trace.format();
    if let Ok(mut s) = shared.snap.lock() {
        *s = fin.clone();
    }
    fin
}

/// The control thread: punted frames in, timers, RADIUS, table updates out, the
/// control plane's frames to the inject ring (with a backlog), CGNAT block records
/// to the log. The control side is locked per round, never by the worker.
#[allow(clippy::too_many_arguments)]
fn control_thread(
    control: Arc<Mutex<Control>>,
    mut io: Option<RadiusIo>,
    punt: PktRing,
    inject: PktRing,
    mut cache: PoolCache,
    stop: Arc<AtomicBool>,
) {
    let t0 = Instant::now();
    let mut inj = Injector::new();
    let mut log = Vec::new();
    loop {
        let stopping = stop.load(Ordering::Relaxed);
        let now_ms = t0.elapsed().as_millis() as u64;
        let mut work = 0;
        {
            let Ok(mut c) = control.lock() else {
                return;
            };
            work += c.drain_punts(&punt, &mut cache, now_ms);
            if let Some(io) = io.as_mut() {
                work += io.pump(&mut c.cp, now_ms);
            }
            let tx = c.poll(now_ms);
            work += tx.len();
            inj.queue(tx);
            if let Some(l) = &c.nat_log {
                while let Some(r) = l.pop() {
                    log.push(r);
                }
            }
            if stopping {
                if let Some(io) = io.as_mut() {
                    // What was queued in the last round reaches the journal.
                    io.flush(&mut c.cp);
                }
            }
        }
        for r in log.drain(..) {
            eprintln!("vbng: cgnat: {r}");
        }
        work += inj.flush(&inject, &mut cache);
        if stopping {
            break;
        }
        if work == 0 {
            std::thread::sleep(Duration::from_micros(100));
        }
    }
}

/// What the HTTP handler reads.
struct Http {
    control: Arc<Mutex<Control>>,
    shared: Arc<Shared>,
    stats: Stats,
    graph: String,
}

impl Http {
    fn snapshot(&self) -> WorkerSnapshot {
        self.shared
            .snap
            .lock()
            .map(|g| g.clone())
            .unwrap_or_default()
    }

    fn metrics(&self, sessions: bool) -> String {
        let snap = self.snapshot();
        let mut p = dataplane::metrics::Prom::new();
        self.stats.prometheus(&mut p);
        p.node_counters("0", snap.counters.iter().map(|(n, c)| (*n, c)));
        // Port counters, with AF_PACKET ring overruns in rx_dropped.
        for (name, st) in &snap.ports {
            p.port(name, st);
        }
        p.worker("0", &snap.worker, &snap.out);
        let Ok(c) = self.control.lock() else {
            return String::new();
        };
        let mut body = vbng::metrics::prometheus(&c.cp, snap.nodes.iter()) + &p.finish();
        if sessions {
            body += &vbng::metrics::prometheus_sessions(&c.cp);
        }
        body
    }

    fn handle(&self, r: &Request) -> Response {
        if r.method != "GET" {
            return Response::error(405, "GET only");
        }
        match r.path.as_str() {
            "/metrics" => Response::metrics(self.metrics(r.query == "sessions")),
            "/sessions" => match self.control.lock() {
                Ok(c) => Response::text(vbng::metrics::show_sessions(&c.cp)),
                Err(_) => Response::error(500, "control plane unavailable"),
            },
            "/errors" => Response::text(show_errors(self.snapshot().nodes.iter())),
            "/graph" => Response::text(self.graph.clone()),
            "/trace" => {
                if let Some(n) = r.query.strip_prefix("add=") {
                    return match n.parse::<u32>() {
                        Ok(n) if (1..=MAX_TRACE).contains(&n) => {
                            self.shared.trace_req.store(n, Ordering::Relaxed);
                            Response::text(format!(
                                "tracing the next {n} packets; GET /trace to see them\n"
                            ))
                        }
                        _ => Response::error(400, &format!("add=N with N in 1..={MAX_TRACE}")),
                    };
                }
                let t = self.snapshot().trace;
                Response::text(if t.is_empty() {
                    "no packets traced (GET /trace?add=N traces the next N)\n".to_string()
                } else {
                    t
                })
            }
            _ => Response::error(404, "try /metrics, /sessions, /errors, /trace or /graph"),
        }
    }
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
    let ports: Vec<Box<dyn Port>> = vec![
        dataplane::port::spec::open_str(&access)
            .with_context(|| format!("access port {access}"))?,
        dataplane::port::spec::open_str(&core).with_context(|| format!("core port {core}"))?,
    ];
    let core_mac = ports
        .get(usize::from(CORE_PORT))
        .and_then(|p| p.mac())
        .unwrap_or([0x02, 0, 0, 0, 0xc0, 0x02]);
    let Vbng {
        mut graph,
        mut control,
        stats,
        nat,
    } = vbng::vnf::build(&cfg, &BuildEnv::new(core_mac, max_sessions, Rng::from_os()))
        .map_err(|e| anyhow::anyhow!("{e}"))?;
    let io = match &cfg.radius {
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
                control.cp.restore_acct(records, 0);
                io.set_journal(j);
            }
            Some(io)
        }
        None => None,
    };
    let pool = Pool::new(1 << 15).context("buffer pool")?;
    let (punt, inject) = (ring(4096), ring(4096));
    graph.trace_next(trace);
    let describe = graph.describe();
    let w = Worker::new(
        ports,
        graph,
        pool.cache(),
        WorkerConfig {
            trace: if trace > 0 { 64 * trace as usize } else { 4096 },
            ..WorkerConfig::default()
        },
    )
    .map_err(|e| anyhow::anyhow!("vbng graph: {e}"))?
    .with_punt(punt.clone())
    .with_inject(inject.clone())
    .on_update(update_hook());
    let shared = Arc::new(Shared {
        snap: Mutex::new(WorkerSnapshot::default()),
        trace_req: AtomicU32::new(0),
    });
    let control = Arc::new(Mutex::new(control));
    let stop = Arc::new(AtomicBool::new(false));
    let _http = match listen.or(cfg.listen.clone()) {
        Some(a) => {
            let h = Http {
                control: control.clone(),
                shared: shared.clone(),
                stats,
                graph: describe,
            };
            let handler: Handler = Arc::new(move |r| h.handle(r));
            Some(HttpServer::spawn(&a, handler).with_context(|| format!("listen {a}"))?)
        }
        None => None,
    };
    eprintln!(
        "vbng: access {access}, core {core}, {max_sessions} session slots{}",
        match &nat {
            Some(n) => format!(", cgnat pool {}", n.pool.join(" ")),
            None => String::new(),
        }
    );
    let wt = {
        let (sh, st) = (shared.clone(), stop.clone());
        std::thread::Builder::new()
            .name("vbng-worker".into())
            .spawn(move || worker_thread(w, sh, st))?
    };
    let ct = {
        let (c, st, cache) = (control.clone(), stop.clone(), pool.cache());
        std::thread::Builder::new()
            .name("vbng-control".into())
            .spawn(move || control_thread(c, io, punt, inject, cache, st))?
    };
    let t0 = Instant::now();
    while (duration == 0 || t0.elapsed() < Duration::from_secs(duration))
        && !wt.is_finished()
        && !ct.is_finished()
    {
        std::thread::sleep(Duration::from_millis(20));
    }
    // The control thread stops first (its last frames reach the ring and the
    // journal), then the worker (it transmits what is queued).
    stop.store(true, Ordering::Relaxed);
    ct.join()
        .map_err(|_| anyhow::anyhow!("control thread panicked"))?;
    let fin = wt
        .join()
        .map_err(|_| anyhow::anyhow!("worker thread panicked"))?;
    if let Ok(c) = control.lock() {
        eprint!("{}", vbng::metrics::show_sessions(&c.cp));
    }
    if trace > 0 && !fin.trace.is_empty() {
        eprint!("{}", fin.trace);
    }
    eprint!("{}", show_errors(fin.nodes.iter()));
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
            trace,
        } => {
            let cfg = load(&config)?;
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
