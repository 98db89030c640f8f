//! `testbed lab bng --netns` (root): the BNG lab across network namespaces with real
//! processes. Three namespaces joined by veth pairs:
//!
//! ```text
//!  subscribers ns            bng ns                                 core ns
//!  [emulator] acc0 ──veth── acc1 [vbng binary, AF_PACKET] core1 ──veth── core0 [sink/gen]
//!                                  │ UDP 127.0.0.1:1812/1813
//!                                  └── FreeRADIUS 3.2 (generated config, `--radius`)
//! ```
//!
//! The `vbng` binary runs in the bng namespace over AF_PACKET access and core ports;
//! with `--radius` it authenticates and accounts (RFC 2865/2866) against a FreeRADIUS
//! started on that namespace's loopback from a generated config (N users, accounting
//! to `detail` files, one log line per authentication), else against a local user
//! file. The emulated PPPoE subscribers (`pktgen::subscribers::Emulator`: RFC 2516
//! discovery, RFC 1661 LCP, PAP/CHAP, RFC 1332 IPCP, timers in a deadline heap) run on
//! an AF_PACKET socket opened inside the subscriber namespace; the core-side sink and
//! generator on one opened inside the core namespace. Phases: session setup (with
//! setup-rate control), upstream traffic, downstream traffic, teardown with PADT.
//! Traffic is sent in a closed loop (at most a window of frames in flight), so a loss
//! is a real loss, not a ring overflow of our own making.
//!
//! The report carries the in-memory lab's fields (`sessions_established`,
//! `setup_rate_per_s`, `setup_p99_ms`, `throughput_mpps`, `plr`, failures by phase)
//! plus what FreeRADIUS itself recorded: `Login OK` / `Login incorrect` lines of its
//! log and `Acct-Status-Type = Start/Stop` records of its detail files.
//!
//! `--cgnat PREFIX` puts a `[cgnat]` section with that pool into the vBNG's config:
//! the core namespace checks that every upstream frame it receives comes from the
//! pool, the downstream phase answers the translated flows it saw, and the report
//! carries the vBNG's `nat44` counters (from its `/metrics`). `--rate UP/DOWN` gives
//! every subscriber that rate (user file, and `default_rate_*` for RADIUS users).
//!
//! `--hostile` adds a subscriber that floods PADIs, sends a bad LCP packet, garbage
//! after the PPPoE header and a wrong password; it must not come up and must not
//! disturb anyone else. `--capture FILE` records the access link with `tshark`.
//!
//! Everything created (namespaces, veths, processes, the temp dir) is removed at the
//! end, on error and on Ctrl-C/SIGTERM (the `netns` registry, plus this module's temp
//! dir in the same signal handler).

use crate::lab_bng::BngLabArgs;
use crate::netns::{self, in_netns, Lab};
use anyhow::{bail, Context};
use dataplane::batch::Batch;
use dataplane::buf::{Pool, PoolCache};
use dataplane::port::{afpacket, Port};
use dataplane::stages::nat::NatConfig;
use pktgen::subscribers::client::{ClientParams, ClientPhase, Subscriber};
use pktgen::subscribers::lab::{imix, LabReport, TrafficReport};
use pktgen::subscribers::{Emulator, EmulatorConfig, VlanPlan};
use serde::Serialize;
use std::collections::VecDeque;
use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Mutex;
use std::time::{Duration, Instant};
use vbng::fsm::Timers;
use vbng::lcp::AuthProto;
use vbng::wire::eth::Vlans;

const SECRET: &str = "lab-secret";
const PASSWORD: &str = "lab-pw";
const BNG_MAC: &str = "02:00:00:00:b0:01";
/// Destination of upstream traffic (TEST-NET-2, RFC 5737) and source downstream.
const CORE_HOST: u32 = 0xc633_6401;
/// The hostile subscriber's MAC (outside the emulator's `02:5b:` plan).
pub const HOSTILE_MAC: [u8; 6] = [0x02, 0x5c, 0, 0, 0, 0];
/// PADIs in the hostile subscriber's flood.
const FLOOD: usize = 2000;
/// Frames in flight in the traffic phases. An AF_PACKET TPACKET_V3 receive ring (the
/// engine's default: 16 blocks) hands a block over when it is full or when its retire
/// timer (1 ms) fires, so at lab rates a block holds only the frames of about one
/// millisecond, and a receiver descheduled for ~16 ms overflows the ring whatever its
/// byte capacity. Measured on the 2-vCPU VM under load, release build: 12k in flight
/// lost ~3 %, 3k ~0.3 %, 1024 0–0.02 % (in the vBNG's receive ring: veth, softnet, our
/// ports' and the vBNG pipeline's counters all showed zero drops); 512 keeps the
/// in-flight frames within a couple of blocks.
const WINDOW: u64 = 512;

static TMPDIR: Mutex<Option<PathBuf>> = Mutex::new(None);

fn remove_tmpdir() {
    let d = match TMPDIR.lock() {
        Ok(mut g) => g.take(),
        Err(p) => p.into_inner().take(),
    };
    if let Some(d) = d {
        let _ = std::fs::remove_dir_all(d);
    }
}

/// Removes the lab's processes and namespaces, then its temp dir (in that order:
/// FreeRADIUS writes into the dir until it is stopped).
struct Guard;

impl Drop for Guard {
    fn drop(&mut self) {
        netns::cleanup_all();
        remove_tmpdir();
    }
}

/// What FreeRADIUS recorded (read from its own log and detail files).
#[derive(Debug, Clone, Serialize, Default)]
pub struct RadiusFacts {
    /// `Login OK` lines in the server log (one per Access-Accept).
    pub access_accepts: u64,
    /// `Login incorrect` lines (one per Access-Reject).
    pub access_rejects: u64,
    /// `Acct-Status-Type = Start` records in the detail files.
    pub acct_starts: u64,
    /// `Acct-Status-Type = Stop` records.
    pub acct_stops: u64,
    /// `Acct-Status-Type = Interim-Update` records.
    pub acct_interims: u64,
}

/// The hostile subscriber's outcome.
#[derive(Debug, Clone, Serialize, Default)]
pub struct HostileReport {
    /// Its MAC.
    pub mac: String,
    /// PADIs in its flood.
    pub padi_flood: u64,
    /// Bad frames it sent inside its session (bad LCP, garbage after PPPoE).
    pub garbage_frames: u64,
    /// Whether it reached IPCP Opened (must be false).
    pub came_up: bool,
    /// The phase it failed in.
    pub failed_in: Option<String>,
}

/// The vBNG's own counters (its `/metrics`), for cross-checks.
#[derive(Debug, Clone, Serialize, Default)]
pub struct BngCounters {
    /// Sessions that came up.
    pub sessions_up: u64,
    /// Sessions in the table after teardown.
    pub sessions_after_teardown: u64,
    /// PADIs dropped by the per-MAC rate limit.
    pub padi_rate_limited: u64,
    /// Control frames dropped as malformed.
    pub malformed: u64,
    /// Frames the veth pairs dropped on transmit (peer queue full), all four ends.
    pub veth_tx_dropped: u64,
}

/// `testbed lab bng --netns --json` output: the in-memory lab's fields plus the
/// namespace lab's facts.
#[derive(Debug, Clone, Serialize)]
pub struct NetnsReport {
    /// Same fields as the in-memory lab.
    #[serde(flatten)]
    pub lab: LabReport,
    /// Port type used by the vBNG.
    pub io: String,
    /// FreeRADIUS records (`None` with local users).
    pub radius: Option<RadiusFacts>,
    /// The hostile subscriber (`--hostile`).
    pub hostile: Option<HostileReport>,
    /// The vBNG's counters.
    pub bng: BngCounters,
    /// The capture file (`--capture`).
    pub capture: Option<String>,
    /// Frames our own subscriber/core ports lost on receive (no buffer, ring).
    pub lab_rx_dropped: u64,
    /// Wall time of the whole lab, s.
    pub wall_s: f64,
    /// CGNAT (`--cgnat`): what the core saw and the vBNG's NAT counters.
    pub cgnat: Option<CgnatReport>,
}

/// What the core namespace saw of CGNAT traffic, and the vBNG's `nat44` counters.
#[derive(Debug, Clone, Serialize, Default)]
pub struct CgnatReport {
    /// The pool (`--cgnat`).
    pub pool: String,
    /// Upstream frames at the core whose source address is in the pool.
    pub core_src_in_pool: u64,
    /// Upstream frames at the core whose source address is outside the pool (must be
    /// 0: no subscriber address leaks).
    pub core_src_outside_pool: u64,
    /// Distinct (address, port) sources the core saw (one per subscriber flow).
    pub core_flows: u64,
    /// Distinct pool addresses among them.
    pub core_addresses: u64,
    /// The `nat44` node's counters from the vBNG's `/metrics`.
    pub nat: NatCounters,
}

/// The vBNG's `nat44` node counters (`dp_node_*{node="nat44"}` in its `/metrics`).
#[derive(Debug, Clone, Serialize, Default)]
pub struct NatCounters {
    /// Packets that entered the node.
    pub packets: u64,
    /// Packets it dropped (all reasons).
    pub drops: u64,
    /// Sessions in use.
    pub sessions: u64,
    /// Sessions created.
    pub sessions_created: u64,
    /// Mappings in use.
    pub mappings: u64,
    /// Subscribers holding ports.
    pub subscribers: u64,
    /// Port blocks allocated.
    pub blocks: u64,
    /// ICMP errors it sent (exhaustion).
    pub icmp_errors_sent: u64,
}

/// Watches upstream frames at the core (CGNAT): sources inside and outside the pool,
/// and the distinct translated flows.
pub struct CoreWatch {
    pool: Vec<(u32, u32)>,
    inside: AtomicU64,
    outside: AtomicU64,
    flows: Mutex<Vec<(u32, u16)>>,
}

impl CoreWatch {
    fn new(pool: Vec<(u32, u32)>) -> CoreWatch {
        CoreWatch {
            pool,
            inside: AtomicU64::new(0),
            outside: AtomicU64::new(0),
            flows: Mutex::new(Vec::new()),
        }
    }

    /// The distinct (source address, UDP source port) seen so far.
    fn flows(&self) -> Vec<(u32, u16)> {
        self.flows.lock().map(|f| f.clone()).unwrap_or_default()
    }

    /// Counts the source of an IPv4 frame; returns it with the UDP/TCP source port.
    fn see(&self, d: &[u8]) -> Option<(u32, u16)> {
        let a = d.get(26..30)?;
        let src = u32::from_be_bytes([a[0], a[1], a[2], a[3]]);
        if self.pool.iter().any(|&(lo, hi)| (lo..=hi).contains(&src)) {
            self.inside.fetch_add(1, Ordering::Relaxed);
        } else {
            self.outside.fetch_add(1, Ordering::Relaxed);
        }
        let ihl = usize::from(d.get(14)? & 0x0f) * 4;
        let p = d.get(14 + ihl..16 + ihl)?;
        Some((src, u16::from_be_bytes([p[0], p[1]])))
    }

    fn report(&self, pool: String, m: &str) -> CgnatReport {
        let flows = self.flows();
        let mut addrs: Vec<u32> = flows.iter().map(|f| f.0).collect();
        addrs.sort_unstable();
        addrs.dedup();
        let node = |name: &str| metric(m, name, "node=\"nat44\"");
        let ctr = |name: &str, c: &str| metric(m, name, &format!("node=\"nat44\",counter=\"{c}\""));
        CgnatReport {
            pool,
            core_src_in_pool: self.inside.load(Ordering::Relaxed),
            core_src_outside_pool: self.outside.load(Ordering::Relaxed),
            core_flows: flows.len() as u64,
            core_addresses: addrs.len() as u64,
            nat: NatCounters {
                packets: node("dp_node_packets_total"),
                drops: node("dp_node_drops_total"),
                sessions: ctr("dp_node_level", "sessions-active"),
                sessions_created: ctr("dp_node_events_total", "sessions-created"),
                mappings: ctr("dp_node_level", "mappings-active"),
                subscribers: ctr("dp_node_level", "subscribers"),
                blocks: ctr("dp_node_level", "port-blocks-in-use"),
                icmp_errors_sent: ctr("dp_node_events_total", "icmp-errors-sent"),
            },
        }
    }
}

fn mac_str(m: &[u8; 6]) -> String {
    m.iter()
        .map(|b| format!("{b:02x}"))
        .collect::<Vec<_>>()
        .join(":")
}

fn parse_mac(s: &str) -> anyhow::Result<[u8; 6]> {
    let m: vbng::config::MacAddr = s
        .trim()
        .parse()
        .map_err(|e| anyhow::anyhow!("{s:?}: {e}"))?;
    Ok(m.octets())
}

/// Sends `q` on `port` as far as the port takes it; what it does not take stays.
fn send(port: &mut dyn Port, cache: &mut PoolCache, q: &mut VecDeque<Vec<u8>>) -> usize {
    let mut total = 0;
    while !q.is_empty() {
        let mut b = Batch::new();
        let mut taken = 0;
        for f in q.iter() {
            if b.is_full() {
                break;
            }
            let Some(mut p) = cache.alloc() else { break };
            if p.copy_from(f).is_err() {
                cache.free(p);
                break;
            }
            if let Err(p) = b.push(p) {
                cache.free(p);
                break;
            }
            taken += 1;
        }
        if taken == 0 {
            break;
        }
        let sent = port.tx_burst(cache, &mut b);
        b.free_all(cache);
        q.drain(..sent.min(q.len()));
        total += sent;
        if sent < taken {
            break;
        }
    }
    total
}

/// The FreeRADIUS instance of the lab: config dir and log file.
struct FreeRadius {
    dir: PathBuf,
    log: PathBuf,
}

/// The default site, reduced to what the lab uses: PAP/CHAP against the `files`
/// users, accounting to `detail`.
const SITE: &str = r#"server default {
listen {
	type = auth
	ipaddr = 127.0.0.1
	port = 1812
}
listen {
	type = acct
	ipaddr = 127.0.0.1
	port = 1813
}
authorize {
	preprocess
	chap
	files
	pap
}
authenticate {
	Auth-Type PAP {
		pap
	}
	Auth-Type CHAP {
		chap
	}
}
preacct {
	preprocess
	acct_unique
}
accounting {
	detail
}
post-auth {
	# vbng requires a Message-Authenticator in Access replies (RFC 3579 §3.2,
	# BlastRADIUS); FreeRADIUS before 3.2.5 sends one only when told to.
	update reply {
		&Message-Authenticator := 0x00
	}
	Post-Auth-Type REJECT {
		attr_filter.access_reject
		update reply {
			&Message-Authenticator := 0x00
		}
	}
}
}
"#;

impl FreeRadius {
    /// Writes the config under `dir` for users `user0..userN` (password [`PASSWORD`]).
    fn configure(dir: &Path, n: u32) -> anyhow::Result<FreeRadius> {
        let src = Path::new("/etc/freeradius/3.0");
        if !src.join("radiusd.conf").exists() {
            bail!("/etc/freeradius/3.0 not found: apt-get install freeradius");
        }
        let rdir = dir.join("freeradius");
        netns::sh(&[
            "cp",
            "-a",
            &src.display().to_string(),
            &rdir.display().to_string(),
        ])?;
        std::fs::write(
            rdir.join("clients.conf"),
            format!("client vbng {{\n\tipaddr = 127.0.0.1\n\tsecret = {SECRET}\n\trequire_message_authenticator = yes\n}}\n"),
        )?;
        let mut users = String::with_capacity(n as usize * 48);
        for i in 0..n {
            users.push_str(&format!("user{i}\tCleartext-Password := \"{PASSWORD}\"\n"));
        }
        std::fs::write(rdir.join("mods-config/files/authorize"), users)?;
        let conf = rdir.join("radiusd.conf");
        let d = rdir.display();
        let c = std::fs::read_to_string(&conf)?
            .replace("logdir = /var/log/freeradius", &format!("logdir = {d}/log"))
            .replace(
                "run_dir = ${localstatedir}/run/${name}",
                &format!("run_dir = {d}/run"),
            )
            .replace("reject_delay = 1", "reject_delay = 0")
            // Requests are remembered for cleanup_delay after the reply: room for a
            // whole setup wave plus its accounting.
            .replace("max_requests = 16384", "max_requests = 1048576")
            .replace("\tauth = no", "\tauth = yes");
        std::fs::write(&conf, c)?;
        std::fs::write(rdir.join("sites-enabled/default"), SITE)?;
        let _ = std::fs::remove_file(rdir.join("sites-enabled/inner-tunnel"));
        // EAP needs an `Auth-Type EAP` section our site does not have.
        let _ = std::fs::remove_file(rdir.join("mods-enabled/eap"));
        std::fs::create_dir_all(rdir.join("log/radacct"))?;
        std::fs::create_dir_all(rdir.join("run"))?;
        netns::sh(&["chown", "-R", "freerad:freerad", &d.to_string()])
            .context("chown to freerad (the user FreeRADIUS drops privileges to)")?;
        Ok(FreeRadius {
            log: dir.join("freeradius.log"),
            dir: rdir,
        })
    }

    fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    fn wait_ready(&self, pid: u32) -> anyhow::Result<()> {
        let t0 = Instant::now();
        while !self.log_text().contains("Ready to process requests") {
            if !alive(pid) {
                bail!("freeradius exited:\n{}", tail(&self.log_text(), 30));
            }
            if t0.elapsed() > Duration::from_secs(30) {
                bail!("freeradius not ready:\n{}", tail(&self.log_text(), 30));
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        Ok(())
    }

    /// Counts what the server recorded.
    fn facts(&self) -> RadiusFacts {
        let log = self.log_text();
        let mut f = RadiusFacts {
            access_accepts: log.matches("Login OK").count() as u64,
            access_rejects: log.matches("Login incorrect").count() as u64,
            ..RadiusFacts::default()
        };
        let mut stack = vec![self.dir.join("log/radacct")];
        while let Some(p) = stack.pop() {
            let Ok(rd) = std::fs::read_dir(&p) else {
                continue;
            };
            for e in rd.flatten() {
                let p = e.path();
                if p.is_dir() {
                    stack.push(p);
                } else if let Ok(t) = std::fs::read_to_string(&p) {
                    f.acct_starts += t.matches("Acct-Status-Type = Start").count() as u64;
                    f.acct_stops += t.matches("Acct-Status-Type = Stop").count() as u64;
                    f.acct_interims +=
                        t.matches("Acct-Status-Type = Interim-Update").count() as u64;
                }
            }
        }
        f
    }
}

fn alive(pid: u32) -> bool {
    match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
        // A reaped process is gone; an exited, unreaped child is a zombie (`Z`).
        Ok(s) => s
            .rsplit_once(')')
            .and_then(|(_, r)| r.split_whitespace().next())
            .is_some_and(|st| st != "Z"),
        Err(_) => false,
    }
}

fn tail(s: &str, n: usize) -> String {
    let v: Vec<&str> = s.lines().collect();
    v[v.len().saturating_sub(n)..].join("\n")
}

/// GET `path` from the vBNG's HTTP listener (on the bng namespace's loopback).
fn http_get(ns: &str, path: &str) -> anyhow::Result<String> {
    in_netns(ns, || -> anyhow::Result<String> {
        let mut s = std::net::TcpStream::connect("127.0.0.1:9180")?;
        s.set_read_timeout(Some(Duration::from_secs(5)))?;
        write!(s, "GET {path} HTTP/1.0\r\n\r\n")?;
        let mut r = String::new();
        s.read_to_string(&mut r)?;
        Ok(r.split_once("\r\n\r\n")
            .map(|(_, b)| b.to_string())
            .unwrap_or(r))
    })?
}

/// Sum of the samples of metric `name` whose labels contain `label` (empty = any).
fn metric(text: &str, name: &str, label: &str) -> u64 {
    text.lines()
        .filter(|l| !l.starts_with('#'))
        .filter_map(|l| {
            let (k, v) = l.rsplit_once(' ')?;
            let base = k.split('{').next()?;
            (base == name && k.contains(label)).then(|| v.parse::<f64>().ok())?
        })
        .sum::<f64>() as u64
}

fn hostile_subscriber() -> Subscriber {
    Subscriber::new(ClientParams {
        mac: HOSTILE_MAC,
        vlans: Vlans::default(),
        user: b"user0".to_vec(),
        password: b"wrong-password".to_vec(),
        accept_auth: [Some(AuthProto::Pap), Some(AuthProto::Chap)],
        service_name: Vec::new(),
        host_uniq: Some(vec![0xee; 4]),
        max_payload: None,
        timers: Timers {
            restart_ms: 1000,
            ..Timers::default()
        },
        ipv6cp: false,
        magic: 0x0bad_0bad,
        discovery_tries: 6,
    })
}

/// Run the namespace lab and print its report.
pub fn run(args: &BngLabArgs) -> anyhow::Result<()> {
    let t_start = Instant::now();
    // Our handler first, so that Ctrl-C also removes the temp dir; the netns
    // registry's own handler then finds one installed and leaves it.
    let _ = ctrlc::set_handler(|| {
        eprintln!("testbed: interrupted, removing the lab");
        netns::cleanup_all();
        remove_tmpdir();
        std::process::exit(130);
    });
    let _guard = Guard;
    let lab = Lab::new("bng")?;
    let quiet = args.json;
    let say = |m: &str| {
        if !quiet {
            eprintln!("lab bng --netns: {m}");
        }
    };
    let auth = match args.auth.as_str() {
        "pap" => AuthProto::Pap,
        "chap" => AuthProto::Chap,
        a => bail!("--auth must be pap or chap, not {a:?}"),
    };
    let frame_sizes = if args.frame == "imix" {
        imix()
    } else {
        let n: usize = args
            .frame
            .parse()
            .map_err(|_| anyhow::anyhow!("--frame must be a size or imix"))?;
        anyhow::ensure!((64..=1518).contains(&n), "--frame must be within 64..=1518");
        vec![n]
    };
    let rate = match &args.rate {
        Some(r) => Some((
            r.clone(),
            vbng::config::parse_rate_pair(r).map_err(|e| anyhow::anyhow!("--rate: {e}"))?,
        )),
        None => None,
    };
    // The CGNAT pool, checked the way vbng will check it.
    let watch = match &args.cgnat {
        Some(p) => {
            let ranges = NatConfig {
                pool: vec![p.clone()],
                ..NatConfig::default()
            }
            .pool_ranges()
            .map_err(|e| anyhow::anyhow!("--cgnat: {e}"))?;
            Some(CoreWatch::new(ranges))
        }
        None => None,
    };
    let vbng_bin = match &args.vbng {
        Some(p) => PathBuf::from(p),
        None => std::env::current_exe()?
            .parent()
            .context("executable dir")?
            .join("vbng"),
    };
    anyhow::ensure!(
        vbng_bin.exists(),
        "vbng binary not found at {} (build it: cargo build -p vbng, or pass --vbng PATH)",
        vbng_bin.display()
    );
    if args.radius {
        netns::sh(&["sh", "-c", "command -v freeradius"])
            .context("freeradius not found: apt-get install freeradius")?;
    }
    if args.capture.is_some() {
        netns::sh(&["sh", "-c", "command -v tshark"])
            .context("tshark not found: apt-get install tshark")?;
    }
    let n = args.sessions;
    let dir = std::env::temp_dir().join(format!("{}-bng", lab.prefix()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir)?;
    if let Ok(mut g) = TMPDIR.lock() {
        *g = Some(dir.clone());
    }

    // Topology.
    let ns_sub = lab.netns("sub")?;
    let ns_bng = lab.netns("bng")?;
    let ns_core = lab.netns("core")?;
    lab.veth(&ns_sub, "acc0", &ns_bng, "acc1")?;
    lab.veth(&ns_bng, "core1", &ns_core, "core0")?;
    netns::sh(&[
        "ip", "-n", &ns_bng, "link", "set", "acc1", "address", BNG_MAC,
    ])?;
    for (ns, dev) in [
        (&ns_sub, "acc0"),
        (&ns_bng, "acc1"),
        (&ns_bng, "core1"),
        (&ns_core, "core0"),
    ] {
        // No IPv6 autoconfiguration chatter on the lab links.
        lab.exec(
            ns,
            &[
                "sysctl",
                "-qw",
                &format!("net.ipv6.conf.{dev}.disable_ipv6=1"),
            ],
        )?;
    }
    let core_peer_mac = lab.mac(&ns_core, "core0")?;
    let bng_core_mac = parse_mac(&lab.mac(&ns_bng, "core1")?)?;
    let core_peer = parse_mac(&core_peer_mac)?;

    // FreeRADIUS or local users.
    let (auth_s, fallback) = match auth {
        AuthProto::Pap => ("pap", "chap"),
        AuthProto::Chap => ("chap", "pap"),
    };
    let mut cfg = format!(
        "name = \"vbng\"\nmac = \"{BNG_MAC}\"\nauth = \"{auth_s}\"\nauth_fallback = \"{fallback}\"\nkeepalive_interval_s = 30\nrestart_ms = 1000\ncore_next_hop_mac = \"{core_peer_mac}\"\nlisten = \"127.0.0.1:9180\"\n"
    );
    let radius = if args.radius {
        say("starting FreeRADIUS in the bng namespace");
        let fr = FreeRadius::configure(&dir, n)?;
        let rd = fr.dir.display().to_string();
        let pid = lab.spawn(
            &ns_bng,
            &["freeradius", "-f", "-l", "stdout", "-d", &rd],
            Some(&fr.log),
        )?;
        fr.wait_ready(pid)?;
        Some(fr)
    } else {
        let mut users = String::with_capacity(n as usize * 24);
        let r = rate
            .as_ref()
            .map(|(r, _)| format!(" {r}"))
            .unwrap_or_default();
        for i in 0..n {
            users.push_str(&format!("user{i} {PASSWORD}{r}\n"));
        }
        let uf = dir.join("users.txt");
        std::fs::write(&uf, users)?;
        cfg.push_str(&format!("user_file = \"{}\"\n", uf.display()));
        None
    };
    if let Some((_, (up, down))) = rate {
        // Subscribers without a rate of their own (RADIUS gives none here) get it too.
        cfg.push_str(&format!(
            "default_rate_up = {up}\ndefault_rate_down = {down}\n"
        ));
    }
    cfg.push_str("[[pools]]\nname = \"default\"\nranges = [\"100.64.0.2-100.127.255.254\"]\n");
    if radius.is_some() {
        cfg.push_str(&format!(
            "[radius]\nauth = [{{ addr = \"127.0.0.1:1812\", secret = \"{SECRET}\" }}]\nacct = [{{ addr = \"127.0.0.1:1813\", secret = \"{SECRET}\" }}]\ntimeout_ms = 1000\ntries = 3\nnas_ip = \"127.0.0.1\"\n"
        ));
    }
    if let Some(p) = &args.cgnat {
        cfg.push_str(&format!("[cgnat]\npool = [{p:?}]\n"));
    }
    let cfg_path = dir.join("vbng.toml");
    std::fs::write(&cfg_path, cfg)?;

    // Capture of the access link.
    let capture = match &args.capture {
        Some(c) => {
            let path = std::path::absolute(c)?;
            let _ = std::fs::remove_file(&path);
            let log = dir.join("tshark.log");
            let pid = lab.spawn(
                &ns_sub,
                &[
                    "tshark",
                    "-q",
                    "-B",
                    "64",
                    "-i",
                    "acc0",
                    "-w",
                    &path.display().to_string(),
                ],
                Some(&log),
            )?;
            let t0 = Instant::now();
            while !std::fs::read_to_string(&log)
                .unwrap_or_default()
                .contains("Capturing on")
            {
                if !alive(pid) || t0.elapsed() > Duration::from_secs(15) {
                    bail!(
                        "tshark did not start:\n{}",
                        std::fs::read_to_string(&log).unwrap_or_default()
                    );
                }
                std::thread::sleep(Duration::from_millis(20));
            }
            Some((path, pid))
        }
        None => None,
    };

    // The vBNG.
    say(&format!(
        "starting {} in the bng namespace",
        vbng_bin.display()
    ));
    let vlog = dir.join("vbng.log");
    let max_sessions = (n + 64).to_string();
    let vbng_pid = lab.spawn(
        &ns_bng,
        &[
            &vbng_bin.display().to_string(),
            "run",
            "-c",
            &cfg_path.display().to_string(),
            "--access",
            "afpacket:acc1",
            "--core",
            "afpacket:core1",
            "--max-sessions",
            &max_sessions,
        ],
        Some(&vlog),
    )?;
    let t0 = Instant::now();
    while http_get(&ns_bng, "/metrics").is_err() {
        if !alive(vbng_pid) || t0.elapsed() > Duration::from_secs(30) {
            bail!(
                "vbng did not start:\n{}",
                tail(&std::fs::read_to_string(&vlog).unwrap_or_default(), 30)
            );
        }
        std::thread::sleep(Duration::from_millis(50));
    }

    // Our ports, opened inside their namespaces (a socket stays in the namespace it
    // was created in, whichever thread uses it later).
    // Through the qdisc layer (no bypass): transmitted frames then pass the packet
    // taps, so the capture on acc0 sees both directions.
    let open = |iface: &str| -> anyhow::Result<Box<dyn Port>> {
        let cfg = afpacket::Config {
            qdisc_bypass: false,
            ..afpacket::Config::default()
        };
        let p = afpacket::AfPacketPort::open(iface, &cfg)
            .map_err(|e| anyhow::anyhow!("AF_PACKET on {iface}: {e}"))?;
        Ok(Box::new(p))
    };
    let mut sub_port = in_netns(&ns_sub, || open("acc0"))??;
    let mut core_port = in_netns(&ns_core, || open("core0"))??;
    let pool = Pool::new(1 << 15).context("buffer pool")?;
    let mut cache = pool.cache();

    // Phase 1: setup.
    say(&format!("setting up {n} sessions"));
    let mut emu = Emulator::new(EmulatorConfig {
        sessions: n,
        setup_rate: args.setup_rate,
        max_outstanding: args.max_outstanding.unwrap_or(256),
        auth,
        user_prefix: "user".into(),
        password: PASSWORD.into(),
        vlans: VlanPlan::QinQ {
            svlan_base: 100,
            cvlans: 4000,
        },
        ipv6cp: false,
        restart_ms: 1000,
        max_payload: None,
    });
    let mut hostile = args.hostile.then(hostile_subscriber);
    let mut hostile_garbage = 0u64;
    let mut hostile_started = false;
    let mut q: VecDeque<Vec<u8>> = VecDeque::new();
    let mut frames = Vec::new();
    let mut rxb = Batch::new();
    let setup_t0 = Instant::now();
    let ms = |t: &Instant| t.elapsed().as_millis() as u64;
    let timeout = Duration::from_secs(args.timeout);
    let mut settled_at: Option<Instant> = None;
    loop {
        let now = ms(&setup_t0);
        if let Some(h) = hostile.as_mut() {
            if !hostile_started {
                hostile_started = true;
                for _ in 0..FLOOD {
                    h.start(now, &mut frames);
                }
            }
            h.poll(now, &mut frames);
            if hostile_garbage == 0 && h.sid != 0 {
                // Inside its session: a truncated LCP packet, an LCP Configure-Request
                // whose option overruns it, an unknown protocol, junk after IPv4.
                frames.push(h.session_frame(&[0xc0, 0x21, 0x01]));
                frames.push(h.session_frame(&[0xc0, 0x21, 0x01, 0x09, 0x00, 0x40, 0x01]));
                frames.push(h.session_frame(&[0x12, 0x34, 0xde, 0xad, 0xbe, 0xef]));
                let mut g = h.session_frame(&[0x00, 0x21]);
                g.extend_from_slice(&[0xff; 40]);
                frames.push(g);
                hostile_garbage = 4;
            }
        }
        emu.start_due(now, &mut frames);
        emu.poll(now, &mut frames);
        q.extend(frames.drain(..));
        let sent = send(&mut *sub_port, &mut cache, &mut q);
        let mut got = 0;
        loop {
            let k = sub_port.rx_burst(&mut cache, &mut rxb);
            if k == 0 {
                break;
            }
            got += k;
            let now = ms(&setup_t0);
            rxb.drain(|p| {
                let d = p.data();
                if d.get(..6) == Some(&HOSTILE_MAC[..]) {
                    if let Some(h) = hostile.as_mut() {
                        h.input(d, now, &mut frames);
                    }
                } else {
                    emu.input(d, now, &mut frames);
                }
                cache.free(p);
            });
            q.extend(frames.drain(..));
        }
        let hostile_done = hostile
            .as_ref()
            .is_none_or(|h| h.phase == ClientPhase::Up || h.failed.is_some());
        if emu.settled() && hostile_done && q.is_empty() {
            // Let the last frames (final IPCP acks) reach the BNG.
            let at = *settled_at.get_or_insert_with(Instant::now);
            if at.elapsed() > Duration::from_millis(300) {
                break;
            }
        }
        if setup_t0.elapsed() > timeout {
            say("setup timed out");
            break;
        }
        if sent == 0 && got == 0 {
            std::thread::sleep(Duration::from_micros(200));
        }
    }
    let setup = emu.report();
    say(&format!(
        "{} sessions up ({:.0}/s, p50 {:.1} ms, p99 {:.1} ms), failures {:?}",
        setup.established,
        setup.setup_rate_per_s,
        setup.setup_p50_ms,
        setup.setup_p99_ms,
        setup.failed_by_phase
    ));
    let mut bng = BngCounters::default();
    // The BNG counts a session up when the subscriber's final IPCP ack arrives.
    let t0 = Instant::now();
    loop {
        let m = http_get(&ns_bng, "/metrics").unwrap_or_default();
        bng.sessions_up = metric(&m, "vbng_session_events_total", "\"up\"");
        if bng.sessions_up >= u64::from(setup.established) || t0.elapsed() > Duration::from_secs(5)
        {
            break;
        }
        std::thread::sleep(Duration::from_millis(50));
    }

    let up_ids: Vec<u32> = (0..n)
        .filter(|&i| {
            emu.subscriber(i)
                .is_some_and(|s| s.phase == ClientPhase::Up)
        })
        .collect();
    let size_of = |k: usize| {
        frame_sizes
            .get(k % frame_sizes.len().max(1))
            .copied()
            .unwrap_or(64)
    };
    let mut report = LabReport {
        setup: setup.clone(),
        ..LabReport::default()
    };
    if !up_ids.is_empty() && args.packets > 0 {
        // Phase 2: upstream, subscriber namespace → core namespace.
        say("upstream traffic");
        let templates: Vec<Vec<u8>> = up_ids
            .iter()
            .enumerate()
            .filter_map(|(k, &i)| emu.upstream_frame(i, CORE_HOST, size_of(k)))
            .collect();
        report.upstream = traffic(
            &mut *sub_port,
            &mut *core_port,
            pool,
            &templates,
            args.packets,
            Expect::Core(core_peer),
            watch.as_ref(),
        );
        if !args.no_downstream {
            say("downstream traffic");
            let templates: Vec<Vec<u8>> = match &watch {
                // Answer the translated flows the core saw (pool address and port).
                Some(w) => w
                    .flows()
                    .iter()
                    .enumerate()
                    .map(|(k, &(ip, port))| {
                        let size = size_of(k);
                        let mut f = Vec::with_capacity(size);
                        f.extend_from_slice(&bng_core_mac);
                        f.extend_from_slice(&core_peer);
                        f.extend_from_slice(&[0x08, 0x00]);
                        f.extend_from_slice(&pktgen::subscribers::ipv4_udp(
                            CORE_HOST,
                            ip,
                            size.saturating_sub(14).clamp(28, 1492),
                            5001,
                            port,
                        ));
                        f
                    })
                    .collect(),
                None => up_ids
                    .iter()
                    .enumerate()
                    .filter_map(|(k, &i)| {
                        emu.downstream_frame(i, CORE_HOST, bng_core_mac, core_peer, size_of(k))
                    })
                    .collect(),
            };
            report.downstream = Some(traffic(
                &mut *core_port,
                &mut *sub_port,
                pool,
                &templates,
                args.packets,
                Expect::Subscribers,
                None,
            ));
        }
    }
    // The NAT's own view (its node counters in the vBNG's /metrics), while the
    // sessions are still there; the worker publishes every 100 ms.
    let cgnat = watch.as_ref().map(|w| {
        std::thread::sleep(Duration::from_millis(300));
        let m = http_get(&ns_bng, "/metrics").unwrap_or_default();
        w.report(args.cgnat.clone().unwrap_or_default(), &m)
    });

    // Phase 4: teardown with PADT, paced like the setup: at most `window` PADTs the
    // BNG has not yet acted on (its session count) in flight.
    say("teardown");
    let mut padts = Vec::new();
    emu.terminate_all(&mut padts);
    if let Some(h) = hostile.as_mut() {
        if h.phase == ClientPhase::Up {
            h.terminate(&mut padts);
        }
    }
    let window = u64::from(args.max_outstanding.unwrap_or(256).max(1));
    let mut m = http_get(&ns_bng, "/metrics").unwrap_or_default();
    let before = metric(&m, "vbng_sessions", "");
    let mut next = 0usize;
    let mut q: VecDeque<Vec<u8>> = VecDeque::new();
    let t0 = Instant::now();
    let mut last_poll = Instant::now();
    loop {
        let left = metric(&m, "vbng_sessions", "");
        let acted = before.saturating_sub(left);
        while next < padts.len() && (next as u64).saturating_sub(acted) < window {
            if let Some(f) = padts.get(next) {
                q.push_back(f.clone());
            }
            next += 1;
        }
        send(&mut *sub_port, &mut cache, &mut q);
        loop {
            if sub_port.rx_burst(&mut cache, &mut rxb) == 0 {
                break;
            }
            rxb.free_all(&mut cache);
        }
        if next >= padts.len() && q.is_empty() && left == 0 {
            break;
        }
        if t0.elapsed() > Duration::from_secs(60) {
            say("teardown timed out");
            break;
        }
        std::thread::sleep(Duration::from_millis(2));
        if last_poll.elapsed() > Duration::from_millis(50) {
            m = http_get(&ns_bng, "/metrics").unwrap_or_default();
            last_poll = Instant::now();
        }
    }
    bng.sessions_after_teardown = metric(&m, "vbng_sessions", "");
    bng.padi_rate_limited = metric(&m, "vbng_pppoe_discovery_total", "padi_rate_mac");
    bng.malformed = metric(&m, "vbng_control_drops_total", "\"malformed\"");
    let stat = |ns: &str, dev: &str, what: &str| -> u64 {
        lab.exec(
            ns,
            &["cat", &format!("/sys/class/net/{dev}/statistics/{what}")],
        )
        .ok()
        .and_then(|s| s.trim().parse().ok())
        .unwrap_or(0)
    };
    for (ns, dev) in [
        (&ns_sub, "acc0"),
        (&ns_bng, "acc1"),
        (&ns_bng, "core1"),
        (&ns_core, "core0"),
    ] {
        bng.veth_tx_dropped += stat(ns, dev, "tx_dropped");
    }

    // What FreeRADIUS recorded: wait for the Stops of the PADTs to be written.
    let facts = radius.as_ref().map(|fr| {
        let t0 = Instant::now();
        loop {
            let f = fr.facts();
            if f.acct_stops >= u64::from(setup.established)
                || t0.elapsed() > Duration::from_secs(20)
            {
                break f;
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    });

    // Stop the capture (SIGINT lets tshark finish the file). First give its ring a
    // moment: dumpcap reads AF_PACKET TPACKET_V3 blocks, and the frames of a block
    // that has not retired yet (the teardown's PADTs, if the BNG acted on them
    // quickly) are lost when it stops.
    if let Some((_, pid)) = &capture {
        std::thread::sleep(Duration::from_millis(1000));
        // SAFETY: kill(2) on our own child's pid.
        unsafe { libc::kill(*pid as libc::pid_t, libc::SIGINT) };
        let t0 = Instant::now();
        while alive(*pid) && t0.elapsed() < Duration::from_secs(20) {
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    report.sessions_after_teardown = bng.sessions_after_teardown as usize;
    report.sessions_established = setup.established;
    report.setup_rate_per_s = setup.setup_rate_per_s;
    report.setup_p50_ms = setup.setup_p50_ms;
    report.setup_p99_ms = setup.setup_p99_ms;
    report.throughput_mpps = report.upstream.throughput_mpps;
    let (s, r) = [Some(&report.upstream), report.downstream.as_ref()]
        .into_iter()
        .flatten()
        .fold((0, 0), |(s, r), t| (s + t.sent, r + t.received));
    report.plr = if s > 0 {
        (s - r.min(s)) as f64 / s as f64
    } else {
        0.0
    };
    report.bng_errors = http_get(&ns_bng, "/errors").unwrap_or_default();
    let mut out = NetnsReport {
        lab: report,
        io: "afpacket".into(),
        radius: facts,
        hostile: hostile.as_ref().map(|h| HostileReport {
            mac: mac_str(&HOSTILE_MAC),
            padi_flood: FLOOD as u64,
            garbage_frames: hostile_garbage,
            came_up: h.phase == ClientPhase::Up,
            failed_in: h.failed.map(|p| p.as_str().to_string()),
        }),
        bng,
        capture: capture.map(|(p, _)| p.display().to_string()),
        lab_rx_dropped: 0,
        wall_s: t_start.elapsed().as_secs_f64(),
        cgnat,
    };
    if std::env::var_os("TESTBED_KEEP_LOGS").is_some() {
        for f in ["vbng.log", "freeradius.log"] {
            let _ = std::fs::copy(
                dir.join(f),
                std::env::temp_dir().join(format!("lab-bng-{f}")),
            );
        }
    }
    out.lab_rx_dropped = sub_port.stats().rx_dropped + core_port.stats().rx_dropped;
    drop(sub_port);
    drop(core_port);
    print_report(args, &out)?;
    Ok(())
}

/// Which received frames are traffic of the phase.
#[derive(Clone, Copy)]
enum Expect {
    /// IPv4 frames to the core peer's MAC.
    Core([u8; 6]),
    /// PPPoE session frames carrying IPv4 to an emulated subscriber (`02:5b:` MACs).
    Subscribers,
}

impl Expect {
    fn matches(self, d: &[u8]) -> bool {
        match self {
            Expect::Core(mac) => {
                d.get(..6) == Some(&mac[..]) && d.get(12..14) == Some(&[0x08, 0x00][..])
            }
            Expect::Subscribers => {
                if d.get(..2) != Some(&[0x02, 0x5b][..]) {
                    return false;
                }
                // Skip up to two VLAN tags (TR-101 QinQ).
                let mut off = 12;
                while let Some(&[a, b]) = d.get(off..off + 2) {
                    if [a, b] == [0x81, 0x00] || [a, b] == [0x88, 0xa8] {
                        off += 4;
                    } else {
                        break;
                    }
                }
                d.get(off..off + 2) == Some(&[0x88, 0x64][..])
                    && d.get(off + 8..off + 10) == Some(&[0x00, 0x21][..])
            }
        }
    }
}

/// Offer `packets` frames from `templates` (round robin) on `tx` with at most
/// [`WINDOW`] in flight, counting on `rx` (in a second thread) the frames `expect`
/// matches.
fn traffic(
    tx: &mut dyn Port,
    rx: &mut dyn Port,
    pool: &'static Pool,
    templates: &[Vec<u8>],
    packets: u64,
    expect: Expect,
    watch: Option<&CoreWatch>,
) -> TrafficReport {
    let received = AtomicU64::new(0);
    let stop = AtomicBool::new(false);
    let mut sent = 0u64;
    let mut bytes = 0u64;
    let mut wall = 0.0;
    std::thread::scope(|s| {
        let (received, stop) = (&received, &stop);
        let mut rcache = pool.cache();
        let want = templates.len();
        s.spawn(move || {
            let mut b = Batch::new();
            let mut idle = 0u32;
            let mut seen = std::collections::HashSet::new();
            loop {
                let k = rx.rx_burst(&mut rcache, &mut b);
                if k == 0 {
                    if stop.load(Ordering::Acquire) {
                        break;
                    }
                    idle += 1;
                    if idle > 64 {
                        std::thread::sleep(Duration::from_micros(50));
                    }
                    continue;
                }
                idle = 0;
                let mut c = 0;
                for p in b.iter() {
                    if expect.matches(p.data()) {
                        c += 1;
                        if let Some(w) = watch {
                            if let Some(f) = w.see(p.data()) {
                                if seen.len() < want && seen.insert(f) {
                                    if let Ok(mut v) = w.flows.lock() {
                                        v.push(f);
                                    }
                                }
                            }
                        }
                    }
                }
                received.fetch_add(c, Ordering::Release);
                b.free_all(&mut rcache);
            }
        });
        let mut cache = pool.cache();
        let start = Instant::now();
        let mut k = 0usize;
        let mut last_rx = (0u64, Instant::now());
        let mut b = Batch::new();
        while sent < packets && !templates.is_empty() {
            let r = received.load(Ordering::Acquire);
            if r != last_rx.0 {
                last_rx = (r, Instant::now());
            }
            let room = WINDOW.saturating_sub(sent.saturating_sub(r));
            if room == 0 {
                if last_rx.1.elapsed() > Duration::from_secs(2) {
                    // Nothing arrives any more: the rest of the window is lost.
                    break;
                }
                std::hint::spin_loop();
                continue;
            }
            let burst = room.min(256).min(packets - sent) as usize;
            for _ in 0..burst {
                let Some(f) = templates.get(k % templates.len()) else {
                    break;
                };
                let Some(mut p) = cache.alloc() else { break };
                if p.copy_from(f).is_err() || b.push(p).is_err() {
                    break;
                }
                k += 1;
                bytes += f.len() as u64;
            }
            let n = tx.tx_burst(&mut cache, &mut b);
            sent += n as u64;
            // Unsent frames are offered again in the next round.
            for p in b.iter() {
                bytes -= p.len() as u64;
            }
            k -= b.len();
            b.free_all(&mut cache);
        }
        // Drain: until nothing more arrives for 300 ms.
        let mut last = (received.load(Ordering::Acquire), Instant::now());
        while last.1.elapsed() < Duration::from_millis(300)
            && received.load(Ordering::Acquire) < sent
        {
            let r = received.load(Ordering::Acquire);
            if r != last.0 {
                last = (r, Instant::now());
            }
            std::thread::sleep(Duration::from_millis(1));
        }
        wall = start.elapsed().as_secs_f64();
        stop.store(true, Ordering::Release);
    });
    let received = received.load(Ordering::Acquire);
    TrafficReport {
        sent,
        received,
        plr: if sent > 0 {
            (sent - received.min(sent)) as f64 / sent as f64
        } else {
            0.0
        },
        throughput_mpps: if wall > 0.0 {
            received as f64 / wall / 1e6
        } else {
            0.0
        },
        bng_mpps_per_core: 0.0,
        bng_ns_per_packet: 0.0,
        mean_frame: if sent > 0 {
            bytes as f64 / sent as f64
        } else {
            0.0
        },
    }
}

fn print_report(args: &BngLabArgs, r: &NetnsReport) -> anyhow::Result<()> {
    if args.json {
        println!("{}", serde_json::to_string(r)?);
        return Ok(());
    }
    let l = &r.lab;
    println!(
        "sessions established   {} / {}",
        l.sessions_established, args.sessions
    );
    println!(
        "setup rate             {:.0} sessions/s",
        l.setup_rate_per_s
    );
    println!(
        "setup latency          p50 {:.1} ms, p99 {:.1} ms",
        l.setup_p50_ms, l.setup_p99_ms
    );
    if !l.setup.failed_by_phase.is_empty() {
        println!("failures by phase      {:?}", l.setup.failed_by_phase);
    }
    let u = &l.upstream;
    println!(
        "upstream               {} sent, {} received, {:.3} Mpps, mean frame {:.0} B",
        u.sent, u.received, u.throughput_mpps, u.mean_frame
    );
    if let Some(d) = &l.downstream {
        println!(
            "downstream             {} sent, {} received, {:.3} Mpps",
            d.sent, d.received, d.throughput_mpps
        );
    }
    println!("packet loss ratio      {:.6}", l.plr);
    println!("sessions after PADT    {}", l.sessions_after_teardown);
    if let Some(f) = &r.radius {
        println!(
            "FreeRADIUS recorded    {} Access-Accept, {} Access-Reject, {} Accounting Start, {} Stop",
            f.access_accepts, f.access_rejects, f.acct_starts, f.acct_stops
        );
    }
    if let Some(h) = &r.hostile {
        println!(
            "hostile subscriber     {}: came up {}, failed in {:?}",
            h.mac, h.came_up, h.failed_in
        );
    }
    if let Some(c) = &r.cgnat {
        println!(
            "cgnat {:<16} core saw {} frames from the pool, {} from outside it; {} flows on {} addresses",
            c.pool, c.core_src_in_pool, c.core_src_outside_pool, c.core_flows, c.core_addresses
        );
        println!(
            "nat44                  {} packets, {} drops, {} sessions created, {} subscribers, {} blocks",
            c.nat.packets, c.nat.drops, c.nat.sessions_created, c.nat.subscribers, c.nat.blocks
        );
    }
    if let Some(c) = &r.capture {
        println!("capture                {c}");
    }
    println!("wall time              {:.1} s", r.wall_s);
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn metric_sums_matching_samples() {
        let m = "# HELP vbng_sessions x\nvbng_sessions 42\n\
                 vbng_session_events_total{event=\"up\"} 10\n\
                 vbng_session_events_total{event=\"ended\"} 3\n\
                 vbng_pppoe_discovery_total{kind=\"padi_rate_mac\"} 7\n";
        assert_eq!(metric(m, "vbng_sessions", ""), 42);
        assert_eq!(metric(m, "vbng_session_events_total", "\"up\""), 10);
        assert_eq!(metric(m, "vbng_session_events_total", ""), 13);
        assert_eq!(metric(m, "vbng_pppoe_discovery_total", "padi_rate_mac"), 7);
        assert_eq!(metric(m, "vbng_missing", ""), 0);
    }

    #[test]
    fn traffic_frames_are_recognised() {
        let e = Emulator::new(EmulatorConfig {
            sessions: 1,
            ..EmulatorConfig::default()
        });
        // Not up: no frame.
        assert!(e.upstream_frame(0, CORE_HOST, 64).is_none());
        // A QinQ PPPoE session frame carrying IPv4 to a subscriber.
        let mut f = pktgen::subscribers::mac_of(5).to_vec();
        f.extend_from_slice(&[2, 0, 0, 0, 0xb0, 1]);
        f.extend_from_slice(&[0x88, 0xa8, 0, 100, 0x81, 0, 0, 7]);
        f.extend_from_slice(&[0x88, 0x64, 0x11, 0, 0, 1, 0, 30, 0x00, 0x21]);
        f.extend_from_slice(&[0x45; 28]);
        assert!(Expect::Subscribers.matches(&f));
        // LCP (keepalive) in the same session is not traffic.
        let mut lcp = f.clone();
        lcp[28] = 0xc0;
        assert!(!Expect::Subscribers.matches(&lcp));
        // Truncated frames are rejected, not a panic.
        assert!(!Expect::Subscribers.matches(&f[..20]));
        let core = [2, 0, 0, 0, 0xc0, 1];
        let mut g = core.to_vec();
        g.extend_from_slice(&[2, 0, 0, 0, 0xc0, 2, 0x08, 0x00]);
        g.extend_from_slice(&[0x45; 28]);
        assert!(Expect::Core(core).matches(&g));
        assert!(!Expect::Core([2, 0, 0, 0, 0xc0, 9]).matches(&g));
        assert!(!Expect::Core(core).matches(&g[..10]));
    }
}
