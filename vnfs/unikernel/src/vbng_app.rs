//! The vBNG as a unikernel: the configuration of the `vbng` crate, composed once by
//! `vbng::vnf::build` (the same composition as the Linux binary and the in-memory
//! lab), over two virtio-net ports (0 access, 1 core). One CPU runs everything in one
//! loop: the engine's worker (`dataplane::worker::Worker::poll`: injected frames,
//! rx, graph, punts, tx, timers; table updates applied between bursts by
//! `vbng::vnf::update_hook`), then the control side: punted frames to the control
//! plane (PPPoE discovery, PPP, local AAA, DHCP), its timers by the unikernel clock,
//! table updates to the fast path, and its frames onto the inject ring.
//!
//! AAA is by the local users of the configuration (`users = [...]`, or `user_file`
//! handed in as fw_cfg `opt/vnf/users`). RADIUS needs a host network stack, which the
//! unikernel does not have yet: a `[radius]` section is refused, as is anything else
//! that needs a file system (`ipoe.lease_journal`). `listen` (HTTP metrics) is ignored
//! with a warning: the counters are on the console.
//!
//! Prints `vbng ready` once up, counters every `stats` period, and answers console
//! commands (`stats`, `errors`, `sessions`, `help`, `exit`).

use crate::common::{config_error, mac_str, open_ports, print_port_stats, LineReader, RX_BUFFERS};
use crate::config::{ConfigError, Options};
use crate::net::VirtioPort;
use crate::{arch, clock, print, println, VNF};
use alloc::string::{String, ToString};
use dataplane::buf::{Pool, PoolCache};
use dataplane::port::Port;
use dataplane::worker::{ring, PktRing, Worker, WorkerConfig};
use vbng::config::{parse_user_file, Config};
use vbng::rng::Rng;
use vbng::vnf::{build, update_hook, BuildEnv, Control, Injector, Vbng, ACCESS_PORT, CORE_PORT};

/// fw_cfg file holding the text of `user_file` (`-fw_cfg name=opt/vnf/users,file=...`).
const FWCFG_USERS: &str = "opt/vnf/users";
/// Session slots without `sessions=` on the command line (about 300 bytes each, plus
/// the CGNAT tables when configured).
const DEFAULT_SESSIONS: u32 = 4096;
/// Punt and inject ring sizes between the worker and the control side.
const RING: usize = 1024;

/// What the unikernel cannot do (yet) that the configuration asks for: one line.
pub fn unsupported(cfg: &Config) -> Option<&'static str> {
    if cfg.radius.is_some() {
        return Some(
            "[radius]: RADIUS needs a host network stack, which the vbng unikernel does not have yet; authenticate with local users (users = [...])",
        );
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
        let text = match crate::fwcfg::read_file(FWCFG_USERS).map(String::from_utf8) {
            Some(Ok(t)) => t,
            Some(Err(_)) => config_error(alloc::format!("fw_cfg {FWCFG_USERS} is not UTF-8")),
            None => config_error(alloc::format!(
                "user_file = \"{f}\": pass the file as fw_cfg {FWCFG_USERS}"
            )),
        };
        match parse_user_file(&text) {
            Ok(u) => cfg.users.extend(u),
            Err(e) => config_error(alloc::format!("fw_cfg {FWCFG_USERS}: {e}")),
        }
    }
    if let Err(e) = cfg.validate() {
        config_error(e);
    }
    if let Some(why) = unsupported(&cfg) {
        config_error(why);
    }
    if let Some(a) = cfg.listen {
        log::warn!("listen = {a} ignored: no host network stack (counters on the console)");
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
}

impl ControlSide {
    /// Punted frames in, timers at `now_ms`, table updates out, frames to the inject
    /// ring; returns the work done.
    fn step(&mut self, now_ms: u64) -> usize {
        let mut work = self.control.drain_punts(&self.punt, &mut self.cache, now_ms);
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
    // Extra ports stay idle.
    ports.truncate(2);
    let core_mac = ports[usize::from(CORE_PORT)]
        .mac()
        .unwrap_or([0x02, 0, 0, 0, 0xc0, 0x02]);
    let Vbng {
        graph, control, nat, ..
    } = match build(&cfg, &BuildEnv::new(core_mac, sessions, Rng::from_seed(seed))) {
        Ok(v) => v,
        Err(e) => config_error(e),
    };
    let macs = [control.cp.mac(), core_mac];
    for (i, p) in ports.iter().enumerate() {
        log::info!(
            "port {i} ({}): {} device mac {} vbng mac {}",
            if i == usize::from(ACCESS_PORT) {
                "access"
            } else {
                "core"
            },
            p.name(),
            mac_str(p.mac().unwrap_or_default()),
            mac_str(macs[i])
        );
    }
    let (punt, inject) = (ring(RING), ring(RING));
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
    let mut cs = ControlSide {
        control,
        punt,
        inject,
        injector: Injector::new(),
        cache: pool.cache(),
        nat_log,
    };
    let ready_us = clock::uptime_us();
    println!(
        "{VNF} ready in {}.{:03} ms (2 ports, {sessions} session slots, {} local users, {} pools{}, heap peak {} KiB, {} demand-zero pages)",
        ready_us / 1000,
        ready_us % 1000,
        cfg.users.len(),
        cfg.pools.len(),
        match &nat {
            Some(n) => alloc::format!(", cgnat pool {}", n.pool.join(" ")),
            None => String::new(),
        },
        crate::heap::peak() / 1024,
        crate::sparse::pages()
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
        if !cs.punt.is_empty() || !cs.injector.is_empty() || iter & 15 == 0 {
            cs.step(now_ms);
        }
        if iter & 63 == 0 {
            if stats_ns > 0 && now >= next_stats {
                next_stats = now + stats_ns;
                print_stats(&worker, &cs.control, &cs.injector);
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
                arch::exit(arch::EXIT_OK);
            }
        }
    }
}
