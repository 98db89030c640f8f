//! `testbed lab bng --netns --cups --ups N` (root): the disaggregated vBNG (BBF
//! TR-459, issue 21) across network namespaces with real processes:
//!
//! ```text
//!  sub ns                up0 ns                                          core ns
//!  [emulator] a0 ──veth── acc1 [vbng-up 0] core1 ──veth── c0 ┐
//!             a1 ──veth── acc1 [vbng-up 1] core1 ──veth── c1 ├ [sink/gen]
//!             …            pfcp 10.99.(n+1).2                 ┘
//!                            │ veth: PFCP (UDP 8805) and GTP-U (UDP 2152)
//!                            └── pf<n> 10.99.(n+1).1 ─ cp ns: [vbng-cp] 10.99.0.1 (lo)
//!                                                     FreeRADIUS on 127.0.0.1, /metrics on :9180
//! ```
//!
//! The control plane (`vbng-cp --listen`) runs in the cp namespace with FreeRADIUS
//! (`--radius`) or a local user file, exactly as the monolithic `vbng` in the bng
//! namespace; each user plane (`vbng-up`) in a namespace of its own over AF_PACKET
//! access and core ports, reaching the control plane over a veth (its address
//! `10.99.(n+1).2`, the control plane's `10.99.0.1` routed through the veth). The
//! emulated subscribers are on one AF_PACKET socket per user plane in the
//! subscriber namespace: a line (S-VLAN, C-VLAN) is wired to user plane
//! `(C-VLAN − 1) mod N` (as the in-memory lab wires it), so the control plane's
//! placement by access port spreads the sessions evenly. The core namespace has one
//! socket per user plane; downstream frames go to the user plane the flow's
//! upstream came from (the routes the user planes would announce). Every user plane's
//! access and core veth have the same MACs (separate links), so the frames and
//! checks of the monolithic lab apply unchanged.
//!
//! `--up-platform guest`: each user plane is the `vbng-up` unikernel (`testbed image
//! build vbng-up`) under QEMU (`-accel tcg`, microvm) started in its namespace, NIC 0
//! (access, the user plane's access MAC), NIC 1 (core, [`UP_CORE_MAC`]) and NIC 2
//! (control) on taps bridged to `acc1`, `core1` and `pfcp`; the guest's host stack
//! has the user plane's address on NIC 2 (`mgmt=2:10.99.(n+1).2/24:10.99.(n+1).1`),
//! its config (the process's TOML) comes in fw_cfg `opt/vnf/config`, its console is
//! `vbng-up<n>.log`. Its boot to ready and memory used come from its ready line.
//!
//! PFCP runs with a 1 s heartbeat and T1 500 ms, N1 2 (the `[cups]` `heartbeat_s`,
//! `t1_ms`, `n1`), so a user plane that dies is noticed within about 2.5 s.
//! `--kill-up N` kills user plane N after the traffic phases and reports
//! (`cups.kill`) the sessions the control plane cleared, the Lost-Service
//! Accounting-Stops FreeRADIUS recorded and an upstream run of the surviving
//! subscribers.

use super::*;
use dataplane::buf::Pkt;
use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;

/// MAC of every user plane's core port.
pub(super) const UP_CORE_MAC: &str = "02:00:00:00:c0:01";
/// MAC of the core namespace's end of every user plane's core link.
pub(super) const CORE_PEER_MAC: &str = "02:00:00:00:c0:fe";
/// The control plane's PFCP/GTP-U address (on its namespace's loopback).
const CP_ADDR: &str = "10.99.0.1";

/// User plane `n`'s PFCP/GTP-U address.
pub(super) fn up_addr(n: usize) -> String {
    format!("10.99.{}.2", n + 1)
}

/// The control plane's end of user plane `n`'s link.
fn cp_side(n: usize) -> String {
    format!("10.99.{}.1", n + 1)
}

/// PFCP timing of the lab (see the module doc).
const PFCP_TIMERS: &str = "heartbeat_s = 1\nt1_ms = 500\nn1 = 2\n";

/// How a [`Fanout`] picks the port of a frame it sends.
#[derive(Clone, Copy)]
enum Route {
    /// By the line's C-VLAN: `(C-VLAN − 1) mod N` (access side).
    Cvlan,
    /// By destination (address, UDP port), else address, learnt from the sources
    /// of the frames received on each port (core side).
    Learned,
}

/// User plane of a frame on the access side: by its C-VLAN.
fn line_up(frame: &[u8], n: usize) -> usize {
    let c = walk_vlans(frame)
        .map(|l| Vlans::from(l.vlans).cvlan)
        .unwrap_or(0);
    usize::from(c.saturating_sub(1)) % n.max(1)
}

/// IPv4 (address, UDP/TCP port) at `addr_off` and the port at `port_off` after the
/// IPv4 header of an untagged Ethernet frame.
fn flow_key(d: &[u8], src: bool) -> Option<(u32, u16)> {
    if d.get(12..14) != Some(&[0x08, 0x00][..]) {
        return None;
    }
    let o = if src { 26 } else { 30 };
    let a = d.get(o..o + 4)?;
    let ip = u32::from_be_bytes([a[0], a[1], a[2], a[3]]);
    let ihl = usize::from(d.get(14)? & 0x0f) * 4;
    let po = 14 + ihl + if src { 0 } else { 2 };
    let p = d.get(po..po + 2)?;
    Some((ip, u16::from_be_bytes([p[0], p[1]])))
}

/// One lab-side port over the user planes' links: frames sent go to the link of
/// their user plane ([`Route`]), frames received come from all links. Frames for a
/// user plane marked dead are dropped (counted as sent: the wire took them).
pub(super) struct Fanout {
    name: String,
    ports: Vec<Box<dyn Port>>,
    route: Route,
    dead: Arc<Vec<AtomicBool>>,
    /// Frames to a dead user plane (counted as sent: the wire took them), and
    /// (core side) to a destination never seen as a source.
    drops: Arc<[AtomicU64; 2]>,
    by_flow: HashMap<(u32, u16), usize>,
    by_addr: HashMap<u32, usize>,
    out: Vec<Batch>,
    next_rx: usize,
}

impl Fanout {
    fn new(name: &str, ports: Vec<Box<dyn Port>>, route: Route, c: &CupsLab) -> Self {
        let out = (0..ports.len()).map(|_| Batch::new()).collect();
        Fanout {
            name: name.to_string(),
            ports,
            route,
            dead: c.dead.clone(),
            drops: c.drops.clone(),
            by_flow: HashMap::new(),
            by_addr: HashMap::new(),
            out,
            next_rx: 0,
        }
    }

    fn port_of(&mut self, d: &[u8]) -> usize {
        let n = self.ports.len();
        match self.route {
            Route::Cvlan => line_up(d, n),
            Route::Learned => {
                let Some(k) = flow_key(d, false) else {
                    self.drops[1].fetch_add(1, Ordering::Relaxed);
                    return 0;
                };
                match self.by_flow.get(&k).or_else(|| self.by_addr.get(&k.0)) {
                    Some(&p) => p,
                    None => {
                        self.drops[1].fetch_add(1, Ordering::Relaxed);
                        0
                    }
                }
            }
        }
    }
}

impl Port for Fanout {
    fn name(&self) -> &str {
        &self.name
    }

    fn rx_burst(&mut self, cache: &mut PoolCache, batch: &mut Batch) -> usize {
        let n = self.ports.len();
        let mut got = 0;
        for i in 0..n {
            let k = (self.next_rx + i) % n;
            if batch.is_full() {
                break;
            }
            let before = batch.len();
            let Some(p) = self.ports.get_mut(k) else {
                continue;
            };
            let r = p.rx_burst(cache, batch);
            got += r;
            if matches!(self.route, Route::Learned) {
                for pkt in batch.as_slice().get(before..).unwrap_or(&[]) {
                    if let Some(f) = flow_key(pkt.data(), true) {
                        self.by_flow.entry(f).or_insert(k);
                        self.by_addr.entry(f.0).or_insert(k);
                    }
                }
            }
        }
        self.next_rx = (self.next_rx + 1) % n.max(1);
        got
    }

    fn tx_burst(&mut self, cache: &mut PoolCache, batch: &mut Batch) -> usize {
        let mut pkts: Vec<Pkt> = Vec::with_capacity(batch.len());
        batch.drain(|p| pkts.push(p));
        let mut sent = 0;
        for p in pkts {
            let k = self.port_of(p.data());
            if self.dead.get(k).is_some_and(|d| d.load(Ordering::Relaxed)) {
                self.drops[0].fetch_add(1, Ordering::Relaxed);
                cache.free(p);
                sent += 1;
                continue;
            }
            if let Some(Err(p)) = self.out.get_mut(k).map(|b| b.push(p)) {
                // Cannot happen (the input batch fits in each); keep it unsent.
                let _ = batch.push(p);
            }
        }
        for (k, b) in self.out.iter_mut().enumerate() {
            if b.is_empty() {
                continue;
            }
            if let Some(p) = self.ports.get_mut(k) {
                sent += p.tx_burst(cache, b);
            }
            // What a link did not take stays with the caller.
            batch.append(b);
            b.free_all(cache);
        }
        sent
    }

    fn stats(&self) -> dataplane::port::PortStats {
        let mut s = dataplane::port::PortStats::default();
        for p in &self.ports {
            let t = p.stats();
            s.rx_packets += t.rx_packets;
            s.rx_bytes += t.rx_bytes;
            s.rx_dropped += t.rx_dropped;
            s.tx_packets += t.tx_packets;
            s.tx_bytes += t.tx_bytes;
            s.tx_dropped += t.tx_dropped;
        }
        s
    }
}

/// The disaggregated BNG of the lab: its user planes' namespaces and processes.
pub(super) struct CupsLab {
    pub(super) ups: usize,
    pub(super) ns_ups: Vec<String>,
    pub(super) up_pids: Vec<u32>,
    /// The user planes are unikernel guests (`--up-platform guest`), not processes.
    pub(super) guest: bool,
    pub(super) dead: Arc<Vec<AtomicBool>>,
    /// The [`Fanout`]s' drops: to a dead user plane, without a route.
    pub(super) drops: Arc<[AtomicU64; 2]>,
    /// Lab-side links for the veth statistics: (namespace, device).
    pub(super) links: Vec<(String, String)>,
}

impl CupsLab {
    /// Builds the user planes' namespaces and links around the subscriber, control
    /// plane and core namespaces.
    pub(super) fn topology(
        lab: &Lab,
        ups: usize,
        ns_sub: &str,
        ns_cp: &str,
        ns_core: &str,
        guest: bool,
    ) -> anyhow::Result<CupsLab> {
        anyhow::ensure!((1..=64).contains(&ups), "--ups: 1 to 64");
        let mut ns_ups = Vec::with_capacity(ups);
        let mut links = Vec::new();
        netns::sh(&[
            "ip",
            "-n",
            ns_cp,
            "addr",
            "add",
            &format!("{CP_ADDR}/32"),
            "dev",
            "lo",
        ])?;
        if guest {
            // The control plane's ARP requests name the link's address as their
            // sender (not the PFCP source on lo): a guest's smoltcp stack answers
            // only requests from its own subnet, as a router on that link would ask.
            lab.exec(
                ns_cp,
                &["sysctl", "-qw", "net.ipv4.conf.all.arp_announce=2"],
            )?;
        }
        for n in 0..ups {
            let ns = lab.netns(&format!("up{n}"))?;
            if guest {
                // No IPv6 chatter from the taps and bridges either.
                for k in ["all", "default"] {
                    lab.exec(
                        &ns,
                        &[
                            "sysctl",
                            "-qw",
                            &format!("net.ipv6.conf.{k}.disable_ipv6=1"),
                        ],
                    )?;
                }
            }
            let (a, c, pf) = (format!("a{n}"), format!("c{n}"), format!("pf{n}"));
            lab.veth(ns_sub, &a, &ns, "acc1")?;
            lab.veth(&ns, "core1", ns_core, &c)?;
            lab.veth(&ns, "pfcp", ns_cp, &pf)?;
            // A guest's NICs have the user plane's MACs (see `guest_wiring`); its
            // namespace's veths only bridge.
            let mut macs = vec![(ns_core, c.as_str(), CORE_PEER_MAC)];
            if !guest {
                macs.push((ns.as_str(), "acc1", BNG_MAC));
                macs.push((ns.as_str(), "core1", UP_CORE_MAC));
            }
            for (dev_ns, dev, mac) in macs {
                netns::sh(&["ip", "-n", dev_ns, "link", "set", dev, "address", mac])?;
            }
            let (ua, ca) = (up_addr(n), cp_side(n));
            if guest {
                guest_wiring(lab, &ns)?;
            } else {
                netns::sh(&[
                    "ip",
                    "-n",
                    &ns,
                    "addr",
                    "add",
                    &format!("{ua}/24"),
                    "dev",
                    "pfcp",
                ])?;
            }
            netns::sh(&[
                "ip",
                "-n",
                ns_cp,
                "addr",
                "add",
                &format!("{ca}/24"),
                "dev",
                &pf,
            ])?;
            if !guest {
                netns::sh(&[
                    "ip",
                    "-n",
                    &ns,
                    "route",
                    "add",
                    &format!("{CP_ADDR}/32"),
                    "via",
                    &ca,
                ])?;
            }
            for (dev_ns, dev) in [
                (ns_sub, a.as_str()),
                (ns.as_str(), "acc1"),
                (ns.as_str(), "core1"),
                (ns_core, c.as_str()),
            ] {
                lab.exec(
                    dev_ns,
                    &[
                        "sysctl",
                        "-qw",
                        &format!("net.ipv6.conf.{dev}.disable_ipv6=1"),
                    ],
                )?;
                links.push((dev_ns.to_string(), dev.to_string()));
            }
            ns_ups.push(ns);
        }
        Ok(CupsLab {
            ups,
            ns_ups,
            up_pids: Vec::new(),
            guest,
            dead: Arc::new((0..ups).map(|_| AtomicBool::new(false)).collect()),
            drops: Arc::new([AtomicU64::new(0), AtomicU64::new(0)]),
            links,
        })
    }

    /// The control plane's `[cups]` section.
    pub(super) fn cp_section(&self) -> String {
        let ups: Vec<String> = (0..self.ups).map(|n| format!("{:?}", up_addr(n))).collect();
        format!(
            "[cups]\naddr = \"{CP_ADDR}\"\nups = [{}]\nmeasurement_period_s = 10\n{PFCP_TIMERS}",
            ups.join(", ")
        )
    }

    /// Writes user plane configs (the lab's vBNG config with a user plane's
    /// `[cups]`) and starts the user planes, each in its namespace with `workers`
    /// workers.
    pub(super) fn spawn_ups(
        &mut self,
        lab: &Lab,
        dir: &Path,
        base_cfg: &str,
        bin: &Path,
        max_sessions: &str,
        workers: u16,
    ) -> anyhow::Result<()> {
        let workers = workers.to_string();
        for n in 0..self.ups {
            let cfg = format!(
                "{base_cfg}[cups]\naddr = \"{}\"\ncp = \"{CP_ADDR}\"\n{PFCP_TIMERS}",
                up_addr(n)
            );
            let path = dir.join(format!("vbng-up{n}.toml"));
            std::fs::write(&path, cfg)?;
            if self.guest {
                let pid = spawn_guest(lab, &self.ns_ups[n], dir, n, &path, bin, max_sessions)?;
                self.up_pids.push(pid);
                continue;
            }
            let pid = lab.spawn(
                &self.ns_ups[n],
                &[
                    &bin.display().to_string(),
                    "run",
                    "-c",
                    &path.display().to_string(),
                    "--access",
                    "afpacket:acc1",
                    "--core",
                    "afpacket:core1",
                    "--max-sessions",
                    max_sessions,
                    "--wait-cp",
                    "30",
                    // Its workers share each veth through an AF_PACKET fanout
                    // group (a socket per worker).
                    "--workers",
                    &workers,
                ],
                Some(&dir.join(format!("vbng-up{n}.log"))),
            )?;
            self.up_pids.push(pid);
        }
        Ok(())
    }

    /// Waits until the control plane (its `/metrics` in `ns_cp`) has every user
    /// plane associated with its redirect session up.
    pub(super) fn wait_ready(&self, ns_cp: &str, cp_pid: u32, dir: &Path) -> anyhow::Result<()> {
        let t0 = Instant::now();
        loop {
            let m = http_get(ns_cp, "/metrics").unwrap_or_default();
            if metric(&m, "vbng_cups_up_ready", "") as usize == self.ups {
                return Ok(());
            }
            let dead = self.up_pids.iter().position(|&p| !alive(p));
            if !alive(cp_pid) || dead.is_some() || t0.elapsed() > Duration::from_secs(30) {
                let log = match dead {
                    Some(n) => format!("vbng-up{n}.log"),
                    None => "vbng.log".into(),
                };
                bail!(
                    "the user planes did not associate with vbng-cp ({log}):\n{}",
                    tail(
                        &std::fs::read_to_string(dir.join(&log)).unwrap_or_default(),
                        30
                    )
                );
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// The lab's subscriber-side and core-side ports (opened in their namespaces).
    pub(super) fn ports(
        &self,
        ns_sub: &str,
        ns_core: &str,
        open: &dyn Fn(&str) -> anyhow::Result<Box<dyn Port>>,
    ) -> anyhow::Result<(Fanout, Fanout)> {
        let mut sub = Vec::new();
        let mut core = Vec::new();
        for n in 0..self.ups {
            sub.push(in_netns(ns_sub, || open(&format!("a{n}")))??);
            core.push(in_netns(ns_core, || open(&format!("c{n}")))??);
        }
        Ok((
            Fanout::new("access", sub, Route::Cvlan, self),
            Fanout::new("core", core, Route::Learned, self),
        ))
    }

    /// Whether the user plane of this access-side frame still runs.
    pub(super) fn serves(&self, frame: &[u8]) -> bool {
        let k = line_up(frame, self.ups);
        !self.dead.get(k).is_some_and(|d| d.load(Ordering::Relaxed))
    }

    /// Peak RSS of the user planes (KiB, `VmHWM`), per user plane.
    pub(super) fn rss(&self) -> Vec<Option<u64>> {
        self.up_pids.iter().map(|&p| rss_peak_kib(p)).collect()
    }
}

/// Taps of a guest user plane in its namespace: (tap, the namespace's link it is
/// bridged to, the guest NIC's MAC). NIC 0 access, 1 core, 2 control (PFCP, GTP-U).
const GUEST_NICS: [(&str, &str, &str); 3] = [
    ("tacc", "acc1", BNG_MAC),
    ("tcore", "core1", UP_CORE_MAC),
    ("tpf", "pfcp", "02:00:00:00:ee:01"),
];

/// A guest user plane's side of its namespace: a tap per NIC, each bridged to the
/// namespace's veth of that link (the frames pass untouched, VLAN tags included).
fn guest_wiring(lab: &Lab, ns: &str) -> anyhow::Result<()> {
    for (i, (tap, link, _)) in GUEST_NICS.iter().enumerate() {
        lab.tap(ns, tap)?;
        // Room for the lab's window of frames in flight while the TCG guest is
        // descheduled (a tap queues 500 by default).
        netns::sh(&["ip", "-n", ns, "link", "set", tap, "txqueuelen", "4096"])?;
        lab.bridge(ns, &format!("br{i}"), &[tap, link])?;
    }
    Ok(())
}

/// Boots user plane `n` as a unikernel guest (QEMU, `-accel tcg`, microvm) in its
/// namespace: the config (`vbng-up run`'s TOML) in fw_cfg `opt/vnf/config`, a host
/// seed in `opt/vnf/entropy`, the host stack on NIC 2 at the user plane's address
/// (`mgmt=`), its console in `vbng-up<n>.log`. Returns QEMU's pid.
fn spawn_guest(
    lab: &Lab,
    ns: &str,
    dir: &Path,
    n: usize,
    cfg: &Path,
    image: &Path,
    max_sessions: &str,
) -> anyhow::Result<u32> {
    use crate::image::{Accel, Guest, Machine, NetSpec, FWCFG_ENTROPY};
    let seed = dir.join(format!("vbng-up{n}.seed"));
    crate::image::write_host_seed(&seed)?;
    let g = Guest {
        machine: Machine::Microvm,
        memory: "256M".into(),
        accel: Accel::Tcg,
        kernel: image.to_path_buf(),
        disk: None,
        initrd: None,
        append: format!(
            "mgmt=2:{}/24:{} sessions={max_sessions} stats=5000",
            up_addr(n),
            cp_side(n)
        ),
        nets: GUEST_NICS
            .iter()
            .map(|(tap, _, mac)| NetSpec::Tap {
                ifname: tap.to_string(),
                mac: mac.to_string(),
            })
            .collect(),
        pcap_dir: None,
        drives: Vec::new(),
        fw_cfg: vec![
            ("opt/vnf/config".into(), cfg.to_path_buf()),
            (FWCFG_ENTROPY.into(), seed),
        ],
    };
    let c = g.command()?;
    let argv: Vec<String> = std::iter::once(c.get_program())
        .chain(c.get_args())
        .map(|a| a.to_string_lossy().into_owned())
        .collect();
    lab.spawn(
        ns,
        &argv.iter().map(String::as_str).collect::<Vec<_>>(),
        Some(&dir.join(format!("vbng-up{n}.log"))),
    )
}

/// Boot to ready (ms) and memory used (KiB) from a guest user plane's ready line
/// (`vbng-up ready in 123.456 ms (... memory used N KiB of M KiB)`).
pub(super) fn guest_ready(log: &str) -> Option<(f64, u64)> {
    let l = log.lines().find(|l| l.starts_with("vbng-up ready in "))?;
    let ms = l
        .strip_prefix("vbng-up ready in ")?
        .split_whitespace()
        .next()?
        .parse()
        .ok()?;
    let kib = l
        .split("memory used ")
        .nth(1)?
        .split_whitespace()
        .next()?
        .parse()
        .ok()?;
    Some((ms, kib))
}

/// Peak resident set size of process `pid`, KiB (`VmHWM` of its `/proc` status).
pub(super) fn rss_peak_kib(pid: u32) -> Option<u64> {
    let s = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let l = s.lines().find(|l| l.starts_with("VmHWM:"))?;
    l.split_whitespace().nth(1)?.parse().ok()
}

/// One user plane in the report.
#[derive(Debug, Clone, Serialize, Default)]
pub struct UpNetnsReport {
    /// Its PFCP/GTP-U address.
    pub addr: String,
    /// Sessions the control plane had on it when the setup phase ended.
    pub sessions_after_setup: u64,
    /// Its process's peak RSS, KiB (read before the teardown or the kill).
    pub rss_peak_kib: Option<u64>,
    /// Killed by `--kill-up`.
    pub killed: bool,
    /// `--up-platform guest`: the guest's boot to ready (ms) and the memory its
    /// ready line reports used (KiB); `rss_peak_kib` is then QEMU's.
    pub guest_ready_ms: Option<f64>,
    pub guest_memory_used_kib: Option<u64>,
}

/// `--kill-up N`: what happened when user plane N's process was killed.
#[derive(Debug, Clone, Serialize, Default)]
pub struct KillReport {
    /// The user plane killed.
    pub up: u32,
    /// Sessions on it (the control plane's count) before the kill.
    pub sessions_on_up: u64,
    /// Sessions on the other user planes before the kill, and after the control
    /// plane cleared the dead one's (must be equal).
    pub other_sessions_before: u64,
    pub other_sessions_after: u64,
    /// Sessions the control plane ended (its session count before − after; must be
    /// `sessions_on_up`).
    pub sessions_cleared: u64,
    /// From the kill until the control plane had no session on it, ms.
    pub detect_ms: u64,
    /// Accounting-Stop records with Acct-Terminate-Cause Lost-Service that
    /// FreeRADIUS wrote (`--radius`; must be `sessions_on_up`).
    pub acct_stops_lost_service: Option<u64>,
    /// Upstream traffic of the surviving subscribers after the kill.
    pub upstream_after: TrafficReport,
}

/// `cups` in the `--netns --cups` JSON report.
#[derive(Debug, Clone, Serialize, Default)]
pub struct CupsNetnsReport {
    /// User planes.
    pub ups: usize,
    /// Session placement.
    pub placement: String,
    /// The control plane's PFCP counters (`vbng_cups_events_total` of its
    /// `/metrics`: associations, established, deleted, reports, ...).
    pub cp: BTreeMap<String, u64>,
    /// The control plane's peak RSS, KiB.
    pub cp_rss_peak_kib: Option<u64>,
    /// Per user plane.
    pub per_up: Vec<UpNetnsReport>,
    /// Frames the lab's access side dropped for a killed user plane, and core-side
    /// frames to a destination no user plane had sent from.
    pub dropped_dead: u64,
    pub no_route: u64,
    /// `--kill-up`.
    pub kill: Option<KillReport>,
}

/// The `vbng_cups_events_total` counters of a `/metrics` text.
pub(super) fn cp_counters(m: &str) -> BTreeMap<String, u64> {
    let mut c = BTreeMap::new();
    for l in m
        .lines()
        .filter(|l| l.starts_with("vbng_cups_events_total{"))
    {
        let Some((k, v)) = l.rsplit_once(' ') else {
            continue;
        };
        let Some(name) = k.split("event=\"").nth(1).and_then(|r| r.split('"').next()) else {
            continue;
        };
        if let Ok(v) = v.parse::<f64>() {
            c.insert(name.to_string(), v as u64);
        }
    }
    c
}

/// Sessions per user plane (`vbng_cups_up_sessions{up="n"}`).
pub(super) fn up_sessions(m: &str, n: usize) -> u64 {
    metric(m, "vbng_cups_up_sessions", &format!("up=\"{n}\""))
}

/// Lost-Service Accounting-Stops in FreeRADIUS's detail files.
pub(super) fn lost_service_stops(fr: &FreeRadius) -> u64 {
    let mut total = 0;
    let mut stack = vec![fr.dir.join("log/radacct")];
    while let Some(p) = stack.pop() {
        let Ok(rd) = std::fs::read_dir(&p) else {
            continue;
        };
        for e in rd.flatten() {
            let p = e.path();
            if p.is_dir() {
                stack.push(p);
            } else if let Ok(t) = std::fs::read_to_string(&p) {
                // One record per blank-line separated block.
                total += t
                    .split("\n\n")
                    .filter(|r| {
                        r.contains("Acct-Status-Type = Stop")
                            && r.contains("Acct-Terminate-Cause = Lost-Service")
                    })
                    .count() as u64;
            }
        }
    }
    total
}

/// Kills user plane `k` and watches the control plane clear its sessions; then
/// offers upstream traffic from the surviving subscribers (`templates`, their access
/// `kinds`).
#[allow(clippy::too_many_arguments)]
pub(super) fn kill_phase(
    c: &CupsLab,
    k: usize,
    ns_cp: &str,
    radius: Option<&FreeRadius>,
    sub_port: &mut dyn Port,
    core_port: &mut dyn Port,
    pool: &'static Pool,
    templates: &[Vec<u8>],
    kinds: &[Access],
    packets: u64,
    core_peer: [u8; 6],
) -> anyhow::Result<KillReport> {
    anyhow::ensure!(k < c.ups, "--kill-up {k}: there are {} user planes", c.ups);
    let m = http_get(ns_cp, "/metrics").unwrap_or_default();
    let total_before = metric(&m, "vbng_sessions", "");
    let on_up = up_sessions(&m, k);
    let others = |m: &str| -> u64 {
        (0..c.ups)
            .filter(|&n| n != k)
            .map(|n| up_sessions(m, n))
            .sum()
    };
    let other_before = others(&m);
    let stops_before = radius.map(lost_service_stops).unwrap_or(0);
    let pid = c.up_pids[k];
    // SAFETY: kill(2) on our own child's pid.
    unsafe { libc::kill(pid as libc::pid_t, libc::SIGKILL) };
    if let Some(d) = c.dead.get(k) {
        d.store(true, Ordering::Relaxed);
    }
    let t0 = Instant::now();
    let mut m;
    loop {
        m = http_get(ns_cp, "/metrics").unwrap_or_default();
        let assoc = metric(&m, "vbng_cups_up_associated", &format!("up=\"{k}\""));
        if assoc == 0 && up_sessions(&m, k) == 0 {
            break;
        }
        anyhow::ensure!(
            t0.elapsed() < Duration::from_secs(30),
            "--kill-up: vbng-cp did not notice user plane {k}'s loss within 30 s"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    let detect_ms = t0.elapsed().as_millis() as u64;
    // The Stops go to FreeRADIUS after the clearing; give them a moment.
    let acct = radius.map(|fr| {
        let t0 = Instant::now();
        loop {
            let n = lost_service_stops(fr).saturating_sub(stops_before);
            if n >= on_up || t0.elapsed() > Duration::from_secs(15) {
                break n;
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    });
    let total_after = metric(&m, "vbng_sessions", "");
    let alive: Vec<usize> = (0..templates.len())
        .filter(|&i| templates.get(i).is_some_and(|f| c.serves(f)))
        .collect();
    let t: Vec<Vec<u8>> = alive
        .iter()
        .filter_map(|&i| templates.get(i).cloned())
        .collect();
    let kd: Vec<Access> = alive
        .iter()
        .filter_map(|&i| kinds.get(i).copied())
        .collect();
    let (upstream_after, _) = traffic(
        sub_port,
        core_port,
        pool,
        Stream {
            templates: &t,
            kinds: &kd,
            classify: upstream_access,
        },
        packets,
        Expect::Core(core_peer),
        None,
    );
    Ok(KillReport {
        up: k as u32,
        sessions_on_up: on_up,
        other_sessions_before: other_before,
        other_sessions_after: others(&m),
        sessions_cleared: total_before.saturating_sub(total_after),
        detect_ms,
        acct_stops_lost_service: acct,
        upstream_after,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lines_and_flows_are_routed() {
        // QinQ: S-VLAN 100, C-VLAN 7 → user plane (7 − 1) mod 3 = 0; mod 4 = 2.
        let mut f = vec![0xff; 6];
        f.extend_from_slice(&[2, 0x5b, 0, 0, 0, 1]);
        f.extend_from_slice(&[0x88, 0xa8, 0, 100, 0x81, 0, 0, 7, 0x88, 0x63]);
        assert_eq!(line_up(&f, 3), 0);
        assert_eq!(line_up(&f, 4), 2);
        // Untagged or truncated: user plane 0, no panic.
        assert_eq!(line_up(&f[..13], 4), 0);
        let mut g = vec![0u8; 12];
        g.extend_from_slice(&[0x08, 0x00, 0x45, 0, 0, 28, 0, 0, 0, 0, 64, 17, 0, 0]);
        g.extend_from_slice(&[10, 0, 0, 1, 10, 0, 0, 2, 0x13, 0x88, 0x00, 0x35]);
        assert_eq!(flow_key(&g, true), Some((0x0a00_0001, 5000)));
        assert_eq!(flow_key(&g, false), Some((0x0a00_0002, 53)));
        assert_eq!(flow_key(&g[..30], false), None);
    }

    #[test]
    fn counters_are_read_from_metrics() {
        let m = "vbng_cups_events_total{event=\"established\"} 12\n\
                 vbng_cups_events_total{event=\"ups_lost\"} 1\n\
                 vbng_cups_up_sessions{up=\"0\",addr=\"10.99.1.2\"} 5\n\
                 vbng_cups_up_sessions{up=\"1\",addr=\"10.99.2.2\"} 7\n";
        let c = cp_counters(m);
        assert_eq!(c.get("established"), Some(&12));
        assert_eq!(c.get("ups_lost"), Some(&1));
        assert_eq!(up_sessions(m, 1), 7);
        assert_eq!(up_sessions(m, 2), 0);
    }
}
