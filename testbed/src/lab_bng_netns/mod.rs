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
//! With `--access ipoe` (or `mixed`: half of each) the subscribers are IPoE clients
//! instead (`pktgen::subscribers::ipoe`, DHCPv4 per RFC 2131 §4.4) on the same socket
//! and VLANs, the vBNG's config gets an `[ipoe]` section (users by MAC in the user
//! file or FreeRADIUS), and teardown is by DHCPRELEASE; `per_access` in the report
//! has the figures per access type.
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
//! `--cups --ups N` runs the disaggregated vBNG instead: `vbng-cp` in the bng
//! namespace's place (FreeRADIUS, `/metrics`) and each `vbng-up` in a namespace of its
//! own (`cups`: topology, ports over the user planes' links, `--kill-up`); the report
//! adds `cups`. `rss_peak_kib` is the BNG processes' peak RSS (summed).
//! `--up-platform guest` boots each user plane as the `vbng-up` unikernel under QEMU
//! (TCG) in its namespace instead of the process (`cups`: taps bridged to the links).
//!
//! Everything created (namespaces, veths, processes, the temp dir) is removed at the
//! end, on error and on Ctrl-C/SIGTERM (the `netns` registry, plus this module's temp
//! dir in the same signal handler). With `TESTBED_KEEP_LOGS` set, a run that reaches
//! its report copies the logs of the processes it started to `$TMPDIR/lab-bng-<name>`
//! after they have been stopped and waited for (`finish`), before the temp dir goes.

use crate::lab_bng::{BngLabArgs, UpPlatform};
use crate::netns::{self, in_netns, Lab};
use anyhow::{bail, Context};
use dataplane::batch::Batch;
use dataplane::buf::{Pool, PoolCache};
use dataplane::port::{afpacket, Port};
use dataplane::proto::ethernet::{walk_vlans, Vlans};
use dataplane::proto::EtherType;
use dataplane::stages::nat::NatConfig;
use pktgen::subscribers::client::{ClientParams, ClientPhase, Subscriber};
use pktgen::subscribers::lab::{
    downstream_access, imix, mac_user, upstream_access, LabReport, TrafficReport,
};
use pktgen::subscribers::{Access, AccessPlan, Emulator, EmulatorConfig, VlanPlan};
use serde::Serialize;
use std::collections::VecDeque;
use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Mutex;
use std::time::{Duration, Instant};
use vbng::fsm::Timers;
use vbng::lcp::AuthProto;

mod cups;
mod freeradius;
mod report;
mod traffic;

pub use cups::{CupsNetnsReport, UpNetnsReport};
use freeradius::FreeRadius;
use report::print_report;
pub use report::{BngCounters, CgnatReport, HostileReport, NatCounters, NetnsReport, RadiusFacts};
pub use traffic::CoreWatch;
use traffic::{traffic, Expect, Stream};

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
/// FreeRADIUS writes into the dir until it is stopped), keeping the processes' logs
/// in between when asked to (`TESTBED_KEEP_LOGS`).
struct Guard {
    keep: Option<KeepLogs>,
}

impl Drop for Guard {
    fn drop(&mut self) {
        finish(netns::cleanup_all, self.keep.as_ref());
        remove_tmpdir();
    }
}

/// Logs to copy out of the lab's temp dir before it is removed.
struct KeepLogs {
    /// The lab's temp dir.
    from: PathBuf,
    /// File names in it (missing ones are skipped: no `--radius`, no `--capture`).
    names: Vec<String>,
    /// Where the copies go, as `lab-bng-<name>`.
    to: PathBuf,
}

impl KeepLogs {
    /// Copies what is there; returns how many files were copied.
    fn copy(&self) -> usize {
        self.names
            .iter()
            .filter(|f| {
                std::fs::copy(self.from.join(f), self.to.join(format!("lab-bng-{f}"))).is_ok()
            })
            .count()
    }
}

/// The logs of every process the lab starts: the BNG (`vbng`, or `vbng-cp` with
/// `--cups`), FreeRADIUS, tshark and, with `--cups`, each user plane (process or
/// QEMU guest console).
fn log_names(cups: bool, ups: u32) -> Vec<String> {
    let mut v: Vec<String> = ["vbng.log", "freeradius.log", "tshark.log"]
        .into_iter()
        .map(String::from)
        .collect();
    if cups {
        v.extend((0..ups).map(|n| format!("vbng-up{n}.log")));
    }
    v
}

/// Stops the lab's processes (`stop` returns once every one has exited and been
/// waited for), then copies their logs: only then are they complete (the user
/// planes print their counters and node errors at exit).
fn finish(stop: impl FnOnce(), keep: Option<&KeepLogs>) {
    stop();
    if let Some(k) = keep {
        k.copy();
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
    let header =
        pktgen::meta::Header::start(crate::lab_bng::SCHEMA_NETNS, crate::lab_bng::SCHEMA_VERSION);
    anyhow::ensure!(
        args.duration.is_none() && args.per_session.is_none(),
        "--duration and --per-session are for the in-memory lab, not with --netns"
    );
    let t_start = Instant::now();
    // Our handler first, so that Ctrl-C also removes the temp dir; the netns
    // registry's own handler then finds one installed and leaves it.
    let _ = ctrlc::set_handler(|| {
        eprintln!("testbed: interrupted, removing the lab");
        netns::cleanup_all();
        remove_tmpdir();
        std::process::exit(130);
    });
    let mut guard = Guard { keep: None };
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
    let access: AccessPlan = args
        .access
        .parse()
        .map_err(|e: String| anyhow::anyhow!("--access: {e}"))?;
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
    // With --cups: vbng-cp and vbng-up next to the vbng binary.
    let (vbng_bin, up_bin) = if args.cups {
        let d = vbng_bin.parent().context("binary dir")?;
        let up = match (args.up_platform, &args.up_image) {
            (UpPlatform::Process, _) => d.join("vbng-up"),
            (UpPlatform::Guest, Some(p)) => PathBuf::from(p),
            (UpPlatform::Guest, None) => crate::image::images_dir().join("vbng-up.elf"),
        };
        (d.join("vbng-cp"), Some(up))
    } else {
        (vbng_bin, None)
    };
    for b in std::iter::once(&vbng_bin).chain(up_bin.as_ref()) {
        anyhow::ensure!(
            b.exists(),
            "{} not found ({})",
            b.display(),
            if b.extension().is_some_and(|e| e == "elf") {
                "build it: testbed image build vbng-up, or pass --up-image ELF"
            } else {
                "build it: cargo build -p vbng, or pass --vbng PATH"
            }
        );
    }
    if args.radius {
        netns::sh(&["sh", "-c", "command -v freeradius"])
            .context("freeradius not found: apt-get install freeradius")?;
    }
    if args.capture.is_some() {
        netns::sh(&["sh", "-c", "command -v tshark"])
            .context("tshark not found: apt-get install tshark")?;
    }
    let n = args.sessions;
    // AAA user names: `user<i>` for PPPoE, the MAC for IPoE (`ipoe.username = "mac"`).
    let names: Vec<String> = (0..n)
        .map(|i| match access.access_of(i) {
            Access::Pppoe => format!("user{i}"),
            Access::Ipoe => mac_user(i),
        })
        .collect();
    let dir = std::env::temp_dir().join(format!("{}-bng", lab.prefix()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir)?;
    if let Ok(mut g) = TMPDIR.lock() {
        *g = Some(dir.clone());
    }

    // Topology.
    // With --cups the control plane's namespace takes the bng namespace's part
    // (FreeRADIUS, /metrics); the user planes have namespaces of their own.
    let ns_sub = lab.netns("sub")?;
    let ns_bng = lab.netns(if args.cups { "cp" } else { "bng" })?;
    let ns_core = lab.netns("core")?;
    let mut cups = None;
    let mut links: Vec<(String, String)> = Vec::new();
    let (core_peer_mac, bng_core_mac) = if args.cups {
        let c = cups::CupsLab::topology(
            &lab,
            args.ups as usize,
            &ns_sub,
            &ns_bng,
            &ns_core,
            args.up_platform == UpPlatform::Guest,
        )?;
        links.clone_from(&c.links);
        cups = Some(c);
        (
            cups::CORE_PEER_MAC.to_string(),
            parse_mac(cups::UP_CORE_MAC)?,
        )
    } else {
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
            links.push((ns.to_string(), dev.to_string()));
        }
        (
            lab.mac(&ns_core, "core0")?,
            parse_mac(&lab.mac(&ns_bng, "core1")?)?,
        )
    };
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
        let fr = FreeRadius::configure(&dir, &names)?;
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
        for u in &names {
            users.push_str(&format!("{u} {PASSWORD}{r}\n"));
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
    if access.uses(Access::Ipoe) {
        // As the in-memory lab's `[ipoe]` (`pktgen::subscribers::lab::lab_config`):
        // the subscribers authorised by MAC with the line password, DHCP subnet
        // 10.128.0.1/9, leases, offers and the rate limiter sized for the run.
        let big = n.max(65_536);
        cfg.push_str(&format!(
            "[ipoe]\nusername = \"mac\"\npassword = \"{PASSWORD}\"\nauthorize = true\n[ipoe.dhcp]\ngateway = \"10.128.0.1/9\"\ndns = [\"192.0.2.53\"]\nmax_leases = {big}\nmax_offers = {}\nmax_rate_clients = {big}\n[[ipoe.dhcp.pools]]\nname = \"ipoe\"\nranges = [\"10.128.0.2-10.255.255.254\"]\n",
            n.max(4096)
        ));
    }
    let cfg_path = dir.join("vbng.toml");
    match &cups {
        // The control plane allocates PPPoE addresses from the share of the pool
        // that steers to the session's worker on the user planes (`vbng::steer`).
        Some(c) => std::fs::write(
            &cfg_path,
            format!("workers = {}\n{cfg}{}", args.workers, c.cp_section()),
        )?,
        None => std::fs::write(&cfg_path, &cfg)?,
    }

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
                    if args.cups { "a0" } else { "acc0" },
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
    if let (Some(c), Some(b)) = (cups.as_mut(), up_bin.as_ref()) {
        say(&format!("starting {} user planes ({})", c.ups, b.display()));
        c.spawn_ups(&lab, &dir, &cfg, b, &max_sessions, args.workers)?;
    }
    let bng_args: Vec<String> = if args.cups {
        vec!["--max-sessions".into(), max_sessions.clone()]
    } else {
        [
            "--access",
            "afpacket:acc1",
            "--core",
            "afpacket:core1",
            "--max-sessions",
        ]
        .iter()
        .map(|a| a.to_string())
        .chain([
            max_sessions.clone(),
            // `--workers N`: the vBNG's workers share each veth through an
            // AF_PACKET fanout group (a socket per worker).
            "--workers".to_string(),
            args.workers.to_string(),
        ])
        .collect()
    };
    let vbng_pid = lab.spawn(
        &ns_bng,
        &[
            vbng_bin.display().to_string(),
            "run".into(),
            "-c".into(),
            cfg_path.display().to_string(),
        ]
        .iter()
        .chain(&bng_args)
        .map(String::as_str)
        .collect::<Vec<_>>(),
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
    if let Some(c) = &cups {
        say("waiting for the user planes to associate");
        c.wait_ready(&ns_bng, vbng_pid, &dir)?;
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
    let (mut sub_port, mut core_port): (Box<dyn Port>, Box<dyn Port>) = match &cups {
        Some(c) => {
            let (a, b) = c.ports(&ns_sub, &ns_core, &open)?;
            (Box::new(a), Box::new(b))
        }
        None => (
            in_netns(&ns_sub, || open("acc0"))??,
            in_netns(&ns_core, || open("core0"))??,
        ),
    };
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
        access,
        dhcp_timeout_ms: 1000,
        // The netns lab runs IPv6 over PPPoE only.
        ipoe_dhcp6: false,
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
        "{} sessions up ({:.0}/s, p50 {:.1} ms, p99 {:.1} ms), failures: {}",
        setup.established,
        setup.setup_rate_per_s,
        setup.setup_p50_ms,
        setup.setup_p99_ms,
        crate::lab_bng::join_counts(&setup.failed_by_phase)
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
    // With --cups: the sessions per user plane (the control plane's count).
    let setup_metrics = http_get(&ns_bng, "/metrics").unwrap_or_default();
    let mut kill = None;
    let mut up_rss_at_kill = Vec::new();

    let up_ids: Vec<u32> = (0..n)
        .filter(|&i| emu.client(i).is_some_and(|c| c.is_up()))
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
    report.set_access_setup(&emu, access);
    if !up_ids.is_empty() && args.packets > 0 {
        // Phase 2: upstream, subscriber namespace → core namespace.
        say("upstream traffic");
        let (templates, kinds): (Vec<Vec<u8>>, Vec<Access>) = up_ids
            .iter()
            .enumerate()
            .filter_map(|(k, &i)| {
                emu.upstream_frame(i, CORE_HOST, size_of(k))
                    .map(|f| (f, access.access_of(i)))
            })
            .unzip();
        let (total, by) = traffic(
            &mut *sub_port,
            &mut *core_port,
            pool,
            Stream {
                templates: &templates,
                kinds: &kinds,
                classify: upstream_access,
            },
            args.packets,
            Expect::Core(core_peer),
            watch.as_ref(),
        );
        report.upstream = total;
        report.set_access_traffic(true, by);
        if !args.no_downstream {
            say("downstream traffic");
            let (templates, kinds): (Vec<Vec<u8>>, Vec<Access>) = match &watch {
                // Answer the translated flows the core saw (pool address and port).
                Some(w) => w
                    .flows()
                    .iter()
                    .enumerate()
                    .map(|(k, &(ip, port, a))| {
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
                        (f, a)
                    })
                    .unzip(),
                None => up_ids
                    .iter()
                    .enumerate()
                    .filter_map(|(k, &i)| {
                        emu.downstream_frame(i, CORE_HOST, bng_core_mac, core_peer, size_of(k))
                            .map(|f| (f, access.access_of(i)))
                    })
                    .unzip(),
            };
            let (total, by) = traffic(
                &mut *core_port,
                &mut *sub_port,
                pool,
                Stream {
                    templates: &templates,
                    kinds: &kinds,
                    classify: downstream_access,
                },
                args.packets,
                Expect::Subscribers,
                None,
            );
            report.downstream = Some(total);
            report.set_access_traffic(false, by);
        }
        if let (Some(c), Some(k)) = (&cups, args.kill_up) {
            say(&format!("killing user plane {k}"));
            up_rss_at_kill = c.rss();
            kill = Some(cups::kill_phase(
                c,
                k as usize,
                &ns_bng,
                radius.as_ref(),
                &mut *sub_port,
                &mut *core_port,
                pool,
                &templates,
                &kinds,
                args.packets,
                core_peer,
            )?);
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
    if let Some(c) = &cups {
        // A killed user plane's sessions are gone already.
        padts.retain(|f| c.serves(f));
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
    for (ns, dev) in &links {
        bng.veth_tx_dropped += stat(ns, dev, "tx_dropped");
    }
    // Memory: the BNG processes' peak RSS (vbng; or vbng-cp and every vbng-up, a
    // killed one's as it was before the kill).
    let cp_rss = cups::rss_peak_kib(vbng_pid);
    let cups_report = cups.as_ref().map(|c| {
        let end = c.rss();
        let m = http_get(&ns_bng, "/metrics").unwrap_or_default();
        let per_up: Vec<UpNetnsReport> = (0..c.ups)
            .map(|i| {
                let killed = args.kill_up == Some(i as u32);
                let mut u = UpNetnsReport {
                    addr: cups::up_addr(i),
                    sessions_after_setup: cups::up_sessions(&setup_metrics, i),
                    rss_peak_kib: if killed {
                        up_rss_at_kill.get(i).copied().flatten()
                    } else {
                        end.get(i).copied().flatten()
                    },
                    killed,
                    ..UpNetnsReport::default()
                };
                if c.guest {
                    let log = std::fs::read_to_string(dir.join(format!("vbng-up{i}.log")))
                        .unwrap_or_default();
                    if let Some((ms, kib)) = cups::guest_ready(&log) {
                        u.guest_ready_ms = Some(ms);
                        u.guest_memory_used_kib = Some(kib);
                    }
                }
                u
            })
            .collect();
        CupsNetnsReport {
            ups: c.ups,
            placement: "access-port".into(),
            cp: cups::cp_counters(&m),
            cp_rss_peak_kib: cp_rss,
            per_up,
            dropped_dead: c.drops[0].load(Ordering::Relaxed),
            no_route: c.drops[1].load(Ordering::Relaxed),
            kill: kill.take(),
        }
    });
    report.rss_peak_kib = match &cups_report {
        Some(c) => cp_rss.map(|r| r + c.per_up.iter().filter_map(|u| u.rss_peak_kib).sum::<u64>()),
        None => cp_rss,
    };

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
    report.summarise(&setup);
    // The traffic block every lab reports (no per-packet stamps here: no latency,
    // no flow verification).
    let mut k = pktgen::kpi::TrafficKpis::default();
    for t in [Some(&report.upstream), report.downstream.as_ref()]
        .into_iter()
        .flatten()
    {
        k.tx += t.sent;
        k.rx += t.received;
        k.duration_s += t.duration_s;
    }
    k.finish();
    report.traffic = k;
    // (vbng-cp has no fast path: the user planes print their node errors at exit.)
    if !args.cups {
        report.bng_errors = http_get(&ns_bng, "/errors").unwrap_or_default();
    }
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
        cups: cups_report,
    };
    // Copied by the guard once the processes have been stopped and waited for.
    if std::env::var_os("TESTBED_KEEP_LOGS").is_some() {
        guard.keep = Some(KeepLogs {
            from: dir.clone(),
            names: log_names(args.cups, args.ups),
            to: std::env::temp_dir(),
        });
    }
    out.lab_rx_dropped = sub_port.stats().rx_dropped + core_port.stats().rx_dropped;
    drop(sub_port);
    drop(core_port);
    print_report(args, &header, &out)?;
    crate::lab_bng::verdict(
        out.lab.sessions_established,
        args.sessions,
        &out.lab.traffic,
        args.max_plr,
    )
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
    fn logs_are_kept_after_the_processes_have_exited() {
        use std::os::unix::process::CommandExt;
        use std::process::{Command, Stdio};
        let base = std::env::temp_dir().join(format!("keep-logs-test-{}", std::process::id()));
        let (from, to) = (base.join("lab"), base.join("kept"));
        std::fs::create_dir_all(&from).unwrap();
        std::fs::create_dir_all(&to).unwrap();
        let names = log_names(true, 2);
        assert_eq!(
            names,
            [
                "vbng.log",
                "freeradius.log",
                "tshark.log",
                "vbng-up0.log",
                "vbng-up1.log"
            ]
        );
        assert_eq!(log_names(false, 2).len(), 3);
        // A "user plane" that writes its last line when told to stop, as vbng-up does.
        let log = std::fs::File::create(from.join("vbng-up1.log")).unwrap();
        let mut sh = Command::new("sh");
        // A shell cannot trap a signal that was ignored when it started (POSIX),
        // and a test run started in the background by a non-interactive shell
        // inherits SIGINT ignored: give the child the default back.
        // SAFETY: only signal(2), async-signal-safe, between fork and exec.
        unsafe {
            sh.pre_exec(|| {
                libc::signal(libc::SIGINT, libc::SIG_DFL);
                Ok(())
            });
        }
        let mut child = sh
            .args([
                "-c",
                "trap 'echo counters at exit; exit 0' INT; echo up; while :; do sleep 0.05; done",
            ])
            .stdin(Stdio::null())
            .stdout(log)
            .process_group(0)
            .spawn()
            .unwrap();
        std::fs::write(from.join("vbng.log"), "cp\n").unwrap();
        // Up and logging before it is stopped.
        let t0 = Instant::now();
        while std::fs::read_to_string(from.join("vbng-up1.log")).unwrap() != "up\n" {
            assert!(
                t0.elapsed() < Duration::from_secs(10),
                "the child never logged"
            );
            std::thread::sleep(Duration::from_millis(10));
        }
        let keep = KeepLogs {
            from: from.clone(),
            names,
            to: to.clone(),
        };
        let pid = child.id();
        finish(
            || {
                // SAFETY: kill(2) on our own child's process group.
                unsafe { libc::kill(-(pid as libc::pid_t), libc::SIGINT) };
                let t0 = Instant::now();
                while child.try_wait().unwrap().is_none() {
                    if t0.elapsed() > Duration::from_secs(10) {
                        let _ = child.kill();
                    }
                    std::thread::sleep(Duration::from_millis(10));
                }
            },
            Some(&keep),
        );
        let up = std::fs::read_to_string(to.join("lab-bng-vbng-up1.log")).unwrap();
        assert_eq!(up, "up\ncounters at exit\n");
        assert_eq!(
            std::fs::read_to_string(to.join("lab-bng-vbng.log")).unwrap(),
            "cp\n"
        );
        // Only what was there.
        assert!(!to.join("lab-bng-freeradius.log").exists());
        assert!(!to.join("lab-bng-vbng-up0.log").exists());
        assert_eq!(keep.copy(), 2);
        std::fs::remove_dir_all(&base).unwrap();
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
