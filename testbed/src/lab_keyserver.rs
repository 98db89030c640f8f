//! `testbed lab keyserver`: one SD-WAN key server (`vnfs/keyserver`, on its own
//! thread, optionally pinned with `--server-cpu`) and N emulated CPEs (the
//! `keyserver::client` library, multiplexed over a few UDP sockets on loopback by
//! their IKE SPI) in one process.
//!
//! Phases: (1) distribution — every CPE authenticates with IKEv2 (its own PSK) and
//! receives the keys of its tunnels (site groups of `--group-size`, hub-and-spoke or
//! full mesh); at most `--window` handshakes are outstanding at once, as CPEs booting
//! in a wave; (2) rekey load — for `--measure-s` seconds the server rotates every
//! tunnel's keys every `--rekey-s` seconds (make-before-break: install, activate,
//! delete, each acknowledged by both ends); (3) revocation — the first group's hub is
//! revoked and the time until all its peers acknowledged the deletes is taken.
//!
//! Prints a summary, or with `--json` one JSON object: the report header of
//! `pktgen::meta` (`schema`, `command`, `started`, `machine`, `commit`), then
//! `cpes`, `cpes_served`, `distribution_seconds`, `rekeys_per_s`,
//! `revocation_seconds` and the details. Exits 1 with a one-line reason when not
//! every CPE was served.

use keyserver::client::{Client, ClientConfig, ClientEvent};
use keyserver::config::Config;
use keyserver::udp::UdpServer;
use serde::Serialize;
use std::collections::HashMap;
use std::fmt::Write as _;
use std::net::{SocketAddr, UdpSocket};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// Schema name of the JSON report.
pub const SCHEMA: &str = "testbed.lab.keyserver";
pub const SCHEMA_VERSION: u32 = 1;

/// Options of `testbed lab keyserver`.
#[derive(Debug, Clone, clap::Args)]
#[command(
    after_help = "Exit status: 0 every CPE was served; 1 the run failed, with the reason \
                  on one line on stderr (not every CPE was served within --timeout, the \
                  revocation was not acknowledged); 2 bad command line. The report is \
                  printed before the verdict."
)]
pub struct KeyserverLabArgs {
    /// Number of emulated CPEs (1 to 65535).
    #[arg(long, default_value_t = 1000, value_parser = clap::value_parser!(u32).range(1..=65535))]
    pub cpes: u32,
    /// CPEs per site group (the first of each group is its hub).
    #[arg(long, default_value_t = 10, value_parser = clap::value_parser!(u32).range(2..))]
    pub group_size: u32,
    /// Topology of every group.
    #[arg(long, default_value = "hub-spoke", value_parser = ["hub-spoke", "full-mesh"])]
    pub topology: String,
    /// Rotation interval of every tunnel's keys (seconds).
    #[arg(long, default_value_t = 10.0)]
    pub rekey_s: f64,
    /// Length of the rekey-load phase (seconds).
    #[arg(long, default_value_t = 10.0)]
    pub measure_s: f64,
    /// Most IKE handshakes outstanding at once.
    #[arg(long, default_value_t = 256, value_parser = clap::value_parser!(u32).range(1..))]
    pub window: u32,
    /// Give up the distribution after this long (seconds).
    #[arg(long, default_value_t = 120.0)]
    pub timeout: f64,
    /// Pin the key server's thread to this CPU (the CPEs run elsewhere).
    #[arg(long)]
    pub server_cpu: Option<usize>,
    /// Keep the key server's journal in FILE (written atomically each round with
    /// new keys), as a production server would.
    #[arg(long, value_name = "FILE")]
    pub journal: Option<std::path::PathBuf>,
    /// Print one JSON object.
    #[arg(long)]
    pub json: bool,
}

#[derive(Debug, Serialize)]
pub struct Report {
    pub cpes: u32,
    pub cpes_served: u64,
    pub groups: u64,
    pub topology: String,
    pub pairs: u64,
    /// From the first CPE's IKE_SA_INIT to every CPE holding its keys.
    pub distribution_seconds: f64,
    pub cpes_per_s: f64,
    pub rekey_interval_s: f64,
    pub rekey_measure_seconds: f64,
    /// Rotations completed per second during the rekey phase.
    pub rekeys_per_s: f64,
    pub rekeys: u64,
    /// From the revocation of a hub to every peer's acknowledged delete.
    pub revocation_seconds: f64,
    pub revoked_peers: usize,
    pub updates_sent: u64,
    pub updates_acked: u64,
    pub auth_failures: u64,
    pub ike_retransmits: u64,
    pub cpe_reconnects: u64,
    pub keys_in_secret_memory: bool,
    pub server_cpu: Option<usize>,
    pub journal: bool,
    pub journal_writes: u64,
}

fn config(a: &KeyserverLabArgs) -> anyhow::Result<Config> {
    let mut t = String::new();
    let _ = write!(
        t,
        "[server]\nlisten = \"127.0.0.1:0\"\nid = \"ks.lab\"\nrekey_interval_s = {}\n\
         overlap_s = {}\nretransmit_ms = 1000\nretransmit_tries = 6\n\n",
        a.rekey_s,
        (a.rekey_s / 10.0).min(2.0)
    );
    if let Some(j) = &a.journal {
        // Inside [server]: its last line is the blank one just written.
        t.pop();
        let _ = writeln!(t, "journal = {:?}\n", j.display().to_string());
    }
    let n = a.cpes as usize;
    let g = a.group_size as usize;
    for k in 0..n.div_ceil(g) {
        if a.topology == "hub-spoke" {
            let _ = write!(
                t,
                "[[group]]\nname = \"g{k}\"\ntopology = \"hub-spoke\"\nhubs = [\"cpe{}\"]\n\n",
                k * g
            );
        } else {
            let _ = write!(
                t,
                "[[group]]\nname = \"g{k}\"\ntopology = \"full-mesh\"\n\n"
            );
        }
    }
    for k in 0..n {
        let _ = write!(
            t,
            "[[cpe]]\nid = \"cpe{k}\"\npsk = \"lab-psk-{k}\"\naddress = \"198.18.{}.{}\"\n\
             subnet = \"10.{}.{}.0/24\"\ngroups = [\"g{}\"]\n\n",
            k / 256,
            k % 256,
            k / 256,
            k % 256,
            k / g
        );
    }
    Config::from_toml(&t).map_err(|e| anyhow::anyhow!("lab config: {e}"))
}

/// The emulated CPEs: clients on a few sockets, demultiplexed by SPIi.
struct Swarm {
    socks: Vec<UdpSocket>,
    clients: Vec<Client>,
    /// Socket of each client.
    sock_of: Vec<usize>,
    by_spi: HashMap<u64, usize>,
    spi_of: Vec<Option<u64>>,
    started: usize,
    synced: Vec<bool>,
    synced_count: usize,
    reconnects: u64,
    deletes_all: HashMap<usize, usize>,
    buf: Vec<u8>,
}

const SOCKETS: usize = 32;

impl Swarm {
    fn new(n: usize, server: SocketAddr) -> anyhow::Result<Swarm> {
        let mut socks = Vec::new();
        for _ in 0..SOCKETS.min(n) {
            let s = UdpSocket::bind("127.0.0.1:0")?;
            s.set_nonblocking(true)?;
            socks.push(s);
        }
        let mut clients = Vec::with_capacity(n);
        let mut sock_of = Vec::with_capacity(n);
        for k in 0..n {
            let si = k % socks.len();
            let mut c = ClientConfig::new(&format!("cpe{k}"), format!("lab-psk-{k}").as_bytes());
            c.server_id = Some("ks.lab".into());
            c.retransmit_ms = 1000;
            c.retransmit_tries = 6;
            c.dpd_ms = 0;
            c.reconnect_ms = 500;
            clients.push(Client::new(c, socks[si].local_addr()?, server));
            sock_of.push(si);
        }
        Ok(Swarm {
            socks,
            clients,
            sock_of,
            by_spi: HashMap::new(),
            spi_of: vec![None; n],
            started: 0,
            synced: vec![false; n],
            synced_count: 0,
            reconnects: 0,
            deletes_all: HashMap::new(),
            buf: vec![0u8; 65536],
        })
    }

    fn after(&mut self, k: usize) {
        let c = &mut self.clients[k];
        while let Some(e) = c.poll_event() {
            match e {
                ClientEvent::Synced if !self.synced[k] => {
                    self.synced[k] = true;
                    self.synced_count += 1;
                }
                ClientEvent::Disconnected(_) => {
                    self.reconnects += 1;
                    if self.synced[k] {
                        self.synced[k] = false;
                        self.synced_count -= 1;
                    }
                }
                ClientEvent::Delete { epoch: None, .. } => {
                    *self.deletes_all.entry(k).or_default() += 1;
                }
                _ => {}
            }
        }
        let s = &self.socks[self.sock_of[k]];
        while let Some((to, d)) = c.poll_transmit() {
            let _ = s.send_to(&d, to);
        }
        let spi = c.spi_i();
        if spi != self.spi_of[k] {
            if let Some(old) = self.spi_of[k] {
                self.by_spi.remove(&old);
            }
            if let Some(new) = spi {
                self.by_spi.insert(new, k);
            }
            self.spi_of[k] = spi;
        }
    }

    /// Receives what is there, runs timers every `timer_ms`; returns whether any
    /// datagram arrived.
    fn step(&mut self, now: u64, poll_timers: bool) -> bool {
        let mut any = false;
        for si in 0..self.socks.len() {
            for _ in 0..64 {
                let Ok((n, from)) = self.socks[si].recv_from(&mut self.buf) else {
                    break;
                };
                any = true;
                if n < 8 {
                    continue;
                }
                let mut spi = [0u8; 8];
                spi.copy_from_slice(&self.buf[..8]);
                let Some(&k) = self.by_spi.get(&u64::from_be_bytes(spi)) else {
                    continue;
                };
                let d = self.buf[..n].to_vec();
                self.clients[k].handle(&d, from, now);
                self.after(k);
            }
        }
        if poll_timers {
            for k in 0..self.started {
                if self.clients[k].next_timeout() <= now {
                    self.clients[k].poll(now);
                    self.after(k);
                }
            }
        }
        any
    }

    fn start_more(&mut self, window: usize, now: u64) {
        while self.started < self.clients.len() && self.started - self.synced_count < window {
            let k = self.started;
            self.clients[k].connect(now);
            self.after(k);
            self.started += 1;
        }
    }
}

/// Keeps the calling thread (the CPEs) off `cpu` when other CPUs are allowed.
fn avoid(cpu: usize) {
    // SAFETY: sched_getaffinity/sched_setaffinity on this thread with a valid set.
    unsafe {
        let mut set: libc::cpu_set_t = std::mem::zeroed();
        if libc::sched_getaffinity(0, std::mem::size_of::<libc::cpu_set_t>(), &mut set) != 0 {
            return;
        }
        let others = (0..libc::CPU_SETSIZE as usize)
            .filter(|&c| c != cpu && libc::CPU_ISSET(c, &set))
            .count();
        if others > 0 {
            libc::CPU_CLR(cpu, &mut set);
            libc::sched_setaffinity(0, std::mem::size_of::<libc::cpu_set_t>(), &set);
        }
    }
}

fn pin(cpu: usize) -> anyhow::Result<()> {
    // SAFETY: a zeroed cpu_set_t is a valid empty set; CPU_SET writes inside it.
    unsafe {
        let mut set: libc::cpu_set_t = std::mem::zeroed();
        libc::CPU_SET(cpu, &mut set);
        if libc::sched_setaffinity(0, std::mem::size_of::<libc::cpu_set_t>(), &set) != 0 {
            anyhow::bail!(
                "cannot pin the key server to CPU {cpu}: {}",
                std::io::Error::last_os_error()
            );
        }
    }
    Ok(())
}

pub fn run(a: KeyserverLabArgs) -> anyhow::Result<()> {
    anyhow::ensure!(
        a.rekey_s.is_finite() && a.rekey_s >= 0.5 && a.measure_s.is_finite() && a.measure_s > 0.0,
        "--rekey-s must be at least 0.5 and --measure-s positive"
    );
    let header = pktgen::meta::Header::start(SCHEMA, SCHEMA_VERSION);
    let cfg = config(&a)?;
    let srv = UdpServer::bind(&cfg).map_err(|e| anyhow::anyhow!("key server: {e}"))?;
    let addr = srv.local_addr()?;
    let srv = Arc::new(Mutex::new(srv));
    let stop = Arc::new(AtomicBool::new(false));
    let (s2, st2) = (srv.clone(), stop.clone());
    let cpu = a.server_cpu;
    let (pin_tx, pin_rx) = std::sync::mpsc::channel();
    let server = std::thread::Builder::new().name("keyserver".into()).spawn(
        move || -> std::io::Result<()> {
            let _ = pin_tx.send(cpu.map(pin).transpose().map_err(|e| e.to_string()));
            while !st2.load(Ordering::Relaxed) {
                let mut g = s2.lock().map_err(|_| std::io::Error::other("poisoned"))?;
                g.run_once(Duration::from_millis(5))?;
            }
            Ok(())
        },
    )?;
    if let Ok(Err(e)) = pin_rx.recv() {
        stop.store(true, Ordering::Relaxed);
        let _ = server.join();
        anyhow::bail!("{e}");
    }
    if let Some(c) = a.server_cpu {
        avoid(c);
    }
    let stats = || srv.lock().map(|g| g.stats()).unwrap_or_default();
    let n = a.cpes as usize;
    let mut swarm = Swarm::new(n, addr)?;
    let t0 = Instant::now();
    let now = || t0.elapsed().as_millis() as u64;
    let mut last_timers = 0;
    // (1) distribution.
    let deadline = Duration::from_secs_f64(a.timeout);
    while swarm.synced_count < n || stats().served < n as u64 {
        if t0.elapsed() > deadline {
            break;
        }
        swarm.start_more(a.window as usize, now());
        let t = now();
        let timers = t >= last_timers + 20;
        if timers {
            last_timers = t;
        }
        if !swarm.step(t, timers) {
            std::thread::sleep(Duration::from_micros(200));
        }
    }
    let distribution = t0.elapsed().as_secs_f64();
    let st = stats();
    let served = st.served;
    // (2) rekey load.
    let r0 = st.rekeys;
    let t1 = Instant::now();
    if served == n as u64 {
        while t1.elapsed().as_secs_f64() < a.measure_s {
            let t = now();
            let timers = t >= last_timers + 20;
            if timers {
                last_timers = t;
            }
            if !swarm.step(t, timers) {
                std::thread::sleep(Duration::from_micros(200));
            }
        }
    }
    let measured = t1.elapsed().as_secs_f64();
    let rekeys = stats().rekeys - r0;
    // (3) revocation of the first group's hub (or first member).
    let mut revocation = f64::NAN;
    let mut revoked_peers = 0;
    if served == n as u64 && n > 1 {
        swarm.deletes_all.clear();
        let tr = Instant::now();
        srv.lock()
            .map_err(|_| anyhow::anyhow!("key server thread failed"))?
            .revoke("cpe0")
            .map_err(|e| anyhow::anyhow!("revoke: {e}"))?;
        let mut done = None;
        while tr.elapsed() < Duration::from_secs_f64(a.rekey_s.max(5.0)) {
            let t = now();
            let timers = t >= last_timers + 20;
            if timers {
                last_timers = t;
            }
            swarm.step(t, timers);
            if let Ok(mut g) = srv.lock() {
                if let Some(r) = g.server.take_revoked().into_iter().next() {
                    done = Some(r.took_ms as f64 / 1000.0);
                }
            }
            if done.is_some() {
                break;
            }
        }
        revoked_peers = swarm.deletes_all.len();
        revocation = done.unwrap_or(f64::NAN);
    }
    stop.store(true, Ordering::Relaxed);
    let end = server.join();
    let st = srv
        .lock()
        .map(|g| {
            (
                g.stats(),
                g.server.ike_counters(),
                g.server.keys_in_secret_memory(),
            )
        })
        .map_err(|_| anyhow::anyhow!("key server thread failed"))?;
    if let Ok(Err(e)) = end {
        anyhow::bail!("key server: {e}");
    }
    let (fin, ike, secret) = st;
    let r = Report {
        cpes: a.cpes,
        cpes_served: served,
        groups: fin.groups,
        topology: a.topology.clone(),
        pairs: fin.pairs + revoked_peers as u64,
        distribution_seconds: distribution,
        cpes_per_s: served as f64 / distribution.max(1e-9),
        rekey_interval_s: a.rekey_s,
        rekey_measure_seconds: measured,
        rekeys_per_s: rekeys as f64 / measured.max(1e-9),
        rekeys,
        revocation_seconds: revocation,
        revoked_peers,
        updates_sent: fin.updates_sent,
        updates_acked: fin.updates_acked,
        auth_failures: fin.auth_failures,
        ike_retransmits: ike.retransmits,
        cpe_reconnects: swarm.reconnects,
        keys_in_secret_memory: secret,
        server_cpu: a.server_cpu,
        journal: a.journal.is_some(),
        journal_writes: fin.journal_writes,
    };
    if a.json {
        println!("{}", header.json(&r)?);
    } else {
        println!("CPEs served            {} / {}", r.cpes_served, r.cpes);
        println!(
            "groups                 {} ({}), {} tunnels",
            r.groups, r.topology, r.pairs
        );
        println!(
            "distribution           {:.2} s ({:.0} CPEs/s)",
            r.distribution_seconds, r.cpes_per_s
        );
        println!(
            "rekey load             {:.1} rotations/s over {:.1} s (interval {} s)",
            r.rekeys_per_s, r.rekey_measure_seconds, r.rekey_interval_s
        );
        println!(
            "revocation             {:.3} s ({} peers told)",
            r.revocation_seconds, r.revoked_peers
        );
        println!(
            "updates                {} sent, {} acknowledged; {} IKE retransmissions",
            r.updates_sent, r.updates_acked, r.ike_retransmits
        );
    }
    anyhow::ensure!(
        served == n as u64,
        "lab failed: only {served} of {n} CPEs served within {} s",
        a.timeout
    );
    anyhow::ensure!(
        revocation.is_finite() || n == 1,
        "lab failed: the revocation was not acknowledged by every peer"
    );
    Ok(())
}
