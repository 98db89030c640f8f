//! `testbed lab vcpe [--json]` (root): two vCPE sites joined by an IPsec tunnel
//! across a WAN, in network namespaces.
//!
//! ```text
//! lan1 ns (udhcpc) ─veth─ v1 ns: `vcpe run` (AF_PACKET lan, wan) ─veth─┐
//!                                                                      wan ns: bridge
//! lan2 ns (udhcpc) ─veth─ v2 ns: `vcpe run` (AF_PACKET lan, wan) ─veth─┘ (gateway .1)
//! ```
//!
//! 1. Each site's `vcpe` process (the binary next to `testbed`, or `--vcpe PATH`)
//!    runs a configuration written by the lab: LAN 192.168.{1,2}.1/24 with a DHCP
//!    pool, WAN 198.51.100.{2,3}/24, NAT and firewall, and a static-key tunnel
//!    between the LANs whose SPIs and AES-GCM keys are drawn at random per run.
//! 2. BusyBox `udhcpc` gets a lease on each LAN (a real DHCP client, RFC 2131); the
//!    lab configures the leased address and the default route from it.
//! 3. `ping` crosses the tunnel both ways while `tshark` captures the WAN bridge;
//!    `tshark` then decrypts the captured ESP with the run's keys (its `esp_sa`
//!    table) and must find the ICMP between the two LANs inside.
//! 4. A UDP stream from LAN 1 to LAN 2 (`--rate` packets/s of `--size` bytes for
//!    `--seconds`) measures throughput and loss (the `traffic` block of the other
//!    labs).
//!
//! Exits non-zero with a one-line reason when a step fails; the namespaces and
//! processes are removed at the end, on error and on Ctrl-C.

use crate::netns::{in_netns, Lab};
use anyhow::{bail, Context};
use pktgen::kpi::TrafficKpis;
use serde::Serialize;
use std::net::{Ipv4Addr, UdpSocket};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitCode, Stdio};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

#[derive(clap::Args, Debug)]
pub struct VcpeLabArgs {
    /// Print the report as JSON.
    #[arg(long)]
    pub json: bool,
    /// Seconds of LAN-to-LAN traffic.
    #[arg(long, default_value_t = 3.0)]
    pub seconds: f64,
    /// Packets per second of the LAN-to-LAN stream.
    #[arg(long, default_value_t = 20000)]
    pub rate: u32,
    /// UDP payload bytes of the stream (16..=1400).
    #[arg(long, default_value_t = 512)]
    pub size: usize,
    /// Fail when the stream's loss ratio is above this.
    #[arg(long, value_parser = pktgen::kpi::parse_plr)]
    pub max_plr: Option<f64>,
    /// The `vcpe` binary (default: next to this one).
    #[arg(long)]
    pub vcpe: Option<PathBuf>,
    /// Keep the WAN capture (pcap) at this path.
    #[arg(long)]
    pub pcap: Option<PathBuf>,
}

/// One site's lease.
#[derive(Debug, Serialize, Clone)]
pub struct Lease {
    pub address: Ipv4Addr,
    pub prefix_len: u8,
    pub router: Ipv4Addr,
}

#[derive(Debug, Serialize)]
pub struct Ping {
    /// Echo replies of the ICMP echoes sent.
    pub sent: u32,
    pub received: u32,
}

/// What tshark made of the WAN capture.
#[derive(Debug, Serialize)]
pub struct Decrypt {
    /// ESP frames captured on the WAN bridge.
    pub esp_frames: u64,
    /// Of them, those tshark decrypted (with the run's keys) to ICMP between the
    /// two LANs.
    pub decrypted_icmp: u64,
}

#[derive(Debug, Serialize)]
pub struct Report {
    pub lease_lan1: Lease,
    pub lease_lan2: Lease,
    pub ping_1_to_2: Ping,
    pub ping_2_to_1: Ping,
    pub tshark: Decrypt,
    pub payload_bytes: usize,
    pub throughput_mbps: f64,
    pub traffic: TrafficKpis,
}

fn hex(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect()
}

fn random_bytes(n: usize) -> anyhow::Result<Vec<u8>> {
    use std::io::Read;
    let mut v = vec![0u8; n];
    std::fs::File::open("/dev/urandom")
        .and_then(|mut f| f.read_exact(&mut v))
        .context("reading /dev/urandom")?;
    Ok(v)
}

/// The run's tunnel keys: (spi a→b, key a→b, spi b→a, key b→a), AES-128-GCM key ‖
/// salt (RFC 4106 §8.1).
pub(crate) struct Keys {
    spi_ab: u32,
    key_ab: Vec<u8>,
    spi_ba: u32,
    key_ba: Vec<u8>,
}

impl Keys {
    pub(crate) fn new() -> anyhow::Result<Keys> {
        let r = random_bytes(4 + 4 + 40)?;
        let spi = |b: &[u8]| 0x1000 + (u32::from_be_bytes([b[0], b[1], b[2], b[3]]) & 0x0fff_ffff);
        Ok(Keys {
            spi_ab: spi(&r[0..4]),
            spi_ba: spi(&r[4..8]),
            key_ab: r[8..28].to_vec(),
            key_ba: r[28..48].to_vec(),
        })
    }
}

/// The vCPE configuration of site `n` (1 or 2).
pub(crate) fn config(n: u8, k: &Keys) -> String {
    let (me, peer) = (n, 3 - n);
    let (spi_out, key_out, spi_in, key_in) = if n == 1 {
        (k.spi_ab, &k.key_ab, k.spi_ba, &k.key_ba)
    } else {
        (k.spi_ba, &k.key_ba, k.spi_ab, &k.key_ab)
    };
    format!(
        r#"[engine]
pool_buffers = 8192
[lan]
port = "afpacket:lan"
address = "192.168.{me}.1/24"
[lan.dhcp]
pool = ["192.168.{me}.100-192.168.{me}.199"]
lease_time_s = 600
[wan]
port = "afpacket:wan"
address = "198.51.100.{wme}/24"
gateway = "198.51.100.1"
[[tunnel]]
name = "site{peer}"
peer = "198.51.100.{wpeer}"
local = "192.168.{me}.0/24"
remote = "192.168.{peer}.0/24"
[tunnel.static]
spi_out = {spi_out}
spi_in = {spi_in}
key_out = "{ko}"
key_in = "{ki}"
"#,
        wme = me + 1,
        wpeer = peer + 1,
        ko = hex(key_out),
        ki = hex(key_in),
    )
}

/// The prefix length of a dotted netmask.
fn mask_len(m: Ipv4Addr) -> Option<u8> {
    let v = u32::from(m);
    let n = v.leading_ones();
    (v.checked_shl(n).unwrap_or(0) == 0).then_some(n as u8)
}

/// Runs `udhcpc` once on `eth0` of `ns` and configures the lease it got.
pub(crate) fn dhcp(lab: &Lab, ns: &str, dir: &Path) -> anyhow::Result<Lease> {
    let out = dir.join(format!("{ns}.lease"));
    let script = dir.join(format!("{ns}.sh"));
    std::fs::write(
        &script,
        format!(
            "#!/bin/sh\n[ \"$1\" = bound ] && echo \"$ip $subnet $router\" > {}\nexit 0\n",
            out.display()
        ),
    )?;
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(&script, std::fs::Permissions::from_mode(0o755))?;
    let s = script.display().to_string();
    lab.exec(
        ns,
        &[
            "udhcpc", "-i", "eth0", "-n", "-q", "-f", "-t", "6", "-T", "1", "-s", &s,
        ],
    )
    .with_context(|| format!("udhcpc in {ns} got no lease"))?;
    let text =
        std::fs::read_to_string(&out).with_context(|| format!("udhcpc in {ns}: no lease"))?;
    let f: Vec<&str> = text.split_whitespace().collect();
    let (Some(ip), Some(mask), Some(router)) = (
        f.first().and_then(|x| x.parse::<Ipv4Addr>().ok()),
        f.get(1).and_then(|x| x.parse::<Ipv4Addr>().ok()),
        f.get(2).and_then(|x| x.parse::<Ipv4Addr>().ok()),
    ) else {
        bail!("udhcpc in {ns}: lease without address, subnet or router: {text:?}");
    };
    let len = mask_len(mask).with_context(|| format!("udhcpc in {ns}: bad subnet {mask}"))?;
    lab.exec(
        ns,
        &["ip", "addr", "add", &format!("{ip}/{len}"), "dev", "eth0"],
    )?;
    lab.exec(
        ns,
        &["ip", "route", "add", "default", "via", &router.to_string()],
    )?;
    Ok(Lease {
        address: ip,
        prefix_len: len,
        router,
    })
}

pub(crate) fn ping(lab: &Lab, ns: &str, to: Ipv4Addr, n: u32) -> Ping {
    let c = n.to_string();
    let out = lab
        .exec(
            ns,
            &["busybox", "ping", "-c", &c, "-W", "1", &to.to_string()],
        )
        .unwrap_or_else(|e| e.to_string());
    // "N packets transmitted, M received"
    let received = out
        .split(',')
        .find(|p| p.contains("received"))
        .and_then(|p| p.split_whitespace().next())
        .and_then(|x| x.parse().ok())
        .unwrap_or(0);
    Ping { sent: n, received }
}

/// A tshark capture that is stopped (SIGINT, so the pcap is complete) on drop.
struct Capture(Child);

impl Capture {
    fn start(ns: &str, dev: &str, path: &Path, log: &Path) -> anyhow::Result<Capture> {
        let c = Command::new("ip")
            .args([
                "netns", "exec", ns, "tshark", "-n", "-q", "-i", dev, "-f", "esp", "-w",
            ])
            .arg(path)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(log)?)
            .spawn()
            .context("starting tshark (apt-get install tshark)")?;
        let mut cap = Capture(c);
        // tshark says so once it captures (it may take seconds to load on a busy
        // machine)
        let t0 = Instant::now();
        let started = || {
            std::fs::read_to_string(log)
                .unwrap_or_default()
                .contains("Capturing on")
        };
        while !started() && t0.elapsed() < Duration::from_secs(30) {
            if let Ok(Some(st)) = cap.0.try_wait() {
                let why = std::fs::read_to_string(log).unwrap_or_default();
                bail!(
                    "tshark on {dev} in {ns} exited ({st}): {}",
                    why.lines().last().unwrap_or("")
                );
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        if !started() {
            bail!("tshark did not start capturing on {dev} in {ns} within 30 s");
        }
        Ok(cap)
    }

    fn stop(mut self) {
        self.halt();
    }

    fn halt(&mut self) {
        // SAFETY: kill(2) on our own child's pid (`ip netns exec` execs tshark).
        unsafe { libc::kill(self.0.id() as libc::pid_t, libc::SIGINT) };
        for _ in 0..100 {
            if let Ok(Some(_)) = self.0.try_wait() {
                return;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

impl Drop for Capture {
    fn drop(&mut self) {
        if let Ok(None) = self.0.try_wait() {
            self.halt();
        }
    }
}

/// Decrypts `pcap` with the run's SAs and counts ESP frames and decrypted ICMP
/// between the two LANs.
fn decrypt(pcap: &Path, k: &Keys) -> anyhow::Result<Decrypt> {
    const GCM16: &str = "AES-GCM with 16 octet ICV [RFC4106]";
    let mut cmd = Command::new("tshark");
    cmd.arg("-n").arg("-r").arg(pcap);
    cmd.args(["-o", "esp.enable_encryption_decode:TRUE"]);
    for (spi, key) in [(k.spi_ab, &k.key_ab), (k.spi_ba, &k.key_ba)] {
        cmd.args([
            "-o",
            &format!(
                "uat:esp_sa:\"IPv4\",\"*\",\"*\",\"0x{spi:08x}\",\"{GCM16}\",\"0x{}\",\"NULL\",\"\"",
                hex(key)
            ),
        ]);
    }
    cmd.args([
        "-T",
        "fields",
        "-E",
        "occurrence=l",
        "-e",
        "esp.spi",
        "-e",
        "ip.src",
        "-e",
        "ip.dst",
        "-e",
        "icmp.type",
    ]);
    let out = cmd.output().context("running tshark")?;
    if !out.status.success() {
        bail!(
            "tshark -r {}: {}",
            pcap.display(),
            String::from_utf8_lossy(&out.stderr)
                .lines()
                .next()
                .unwrap_or("")
        );
    }
    let text = String::from_utf8_lossy(&out.stdout);
    let mut d = Decrypt {
        esp_frames: 0,
        decrypted_icmp: 0,
    };
    for l in text.lines() {
        let f: Vec<&str> = l.split('\t').collect();
        if f.first().is_some_and(|s| !s.is_empty()) {
            d.esp_frames += 1;
        }
        // with occurrence=l, ip.src/ip.dst are the inner (last) header's
        let inner = f.get(1).is_some_and(|s| s.starts_with("192.168."))
            && f.get(2).is_some_and(|s| s.starts_with("192.168."));
        if inner && f.get(3).is_some_and(|s| !s.is_empty()) {
            d.decrypted_icmp += 1;
        }
    }
    Ok(d)
}

/// Sends `rate` UDP packets/s of `size` bytes from `ns_tx` to `dst:9000` in `ns_rx`
/// for `seconds`; returns the traffic figures.
pub(crate) fn stream(
    ns_tx: &str,
    ns_rx: &str,
    dst: Ipv4Addr,
    rate: u32,
    size: usize,
    seconds: f64,
) -> anyhow::Result<TrafficKpis> {
    let sock_rx = in_netns(ns_rx, || UdpSocket::bind("0.0.0.0:9000"))??;
    sock_rx.set_read_timeout(Some(Duration::from_millis(100)))?;
    let sock_tx = in_netns(ns_tx, || UdpSocket::bind("0.0.0.0:0"))??;
    let rx = Arc::new(AtomicU64::new(0));
    let stop = Arc::new(AtomicBool::new(false));
    let r = {
        let (rx, stop) = (rx.clone(), stop.clone());
        std::thread::spawn(move || {
            let mut buf = [0u8; 2048];
            let mut quiet_since: Option<Instant> = None;
            loop {
                match sock_rx.recv(&mut buf) {
                    Ok(n) if n >= 8 => {
                        rx.fetch_add(1, Ordering::Relaxed);
                        quiet_since = None;
                    }
                    Ok(_) => {}
                    Err(_) => {
                        if stop.load(Ordering::Relaxed) {
                            let q = quiet_since.get_or_insert_with(Instant::now);
                            if q.elapsed() > Duration::from_millis(300) {
                                break;
                            }
                        }
                    }
                }
            }
        })
    };
    let mut payload = vec![0u8; size];
    let t0 = Instant::now();
    let mut tx = 0u64;
    let per = 1.0 / f64::from(rate.max(1));
    while t0.elapsed().as_secs_f64() < seconds {
        // pace: catch up in small bursts
        let due = (t0.elapsed().as_secs_f64() / per) as u64;
        while tx < due {
            payload[..8].copy_from_slice(&tx.to_be_bytes());
            if sock_tx.send_to(&payload, (dst, 9000)).is_ok() {
                tx += 1;
            } else {
                break;
            }
        }
        std::thread::sleep(Duration::from_micros(200));
    }
    let duration_s = t0.elapsed().as_secs_f64();
    stop.store(true, Ordering::Relaxed);
    let _ = r.join();
    let mut k = TrafficKpis {
        tx,
        rx: rx.load(Ordering::Relaxed),
        duration_s,
        flows: 1,
        ..TrafficKpis::default()
    };
    k.finish();
    Ok(k)
}

pub fn main(a: VcpeLabArgs) -> anyhow::Result<ExitCode> {
    if !(16..=1400).contains(&a.size) {
        bail!("--size: {} is not in 16..=1400", a.size);
    }
    if !a.seconds.is_finite() || a.seconds <= 0.0 || a.seconds > 3600.0 {
        bail!("--seconds: {} is not in (0, 3600]", a.seconds);
    }
    if a.rate == 0 || a.rate > 1_000_000 {
        bail!("--rate: {} is not in 1..=1000000", a.rate);
    }
    let header = pktgen::meta::Header::start("testbed.lab.vcpe", 1);
    let vcpe_bin = match &a.vcpe {
        Some(p) => p.clone(),
        None => std::env::current_exe()?
            .parent()
            .context("executable dir")?
            .join("vcpe"),
    };
    if !vcpe_bin.exists() {
        bail!(
            "vcpe binary not found at {} (build it: cargo build -p vcpe, or pass --vcpe PATH)",
            vcpe_bin.display()
        );
    }
    for tool in ["udhcpc", "tshark", "busybox"] {
        crate::netns::sh(&["sh", "-c", &format!("command -v {tool}")])
            .with_context(|| format!("{tool} is required (scripts/setup installs it)"))?;
    }
    let lab = Lab::new("vc")?;
    let dir = std::env::temp_dir().join(format!("{}-vcpe", lab.prefix()));
    std::fs::create_dir_all(&dir)?;
    let r = run(&a, &lab, &dir, &vcpe_bin);
    drop(lab);
    crate::netns::cleanup_all();
    let report = match r {
        Ok(r) => r,
        Err(e) => {
            let _ = std::fs::remove_dir_all(&dir);
            return Err(e);
        }
    };
    let _ = std::fs::remove_dir_all(&dir);
    if a.json {
        println!("{}", header.json(&report)?);
    } else {
        println!(
            "leases: lan1 {} lan2 {}; ping 1->2 {}/{}, 2->1 {}/{}; tshark decrypted {} of {} ESP frames",
            report.lease_lan1.address,
            report.lease_lan2.address,
            report.ping_1_to_2.received,
            report.ping_1_to_2.sent,
            report.ping_2_to_1.received,
            report.ping_2_to_1.sent,
            report.tshark.decrypted_icmp,
            report.tshark.esp_frames
        );
        let t = &report.traffic;
        println!(
            "traffic lan1 -> lan2: {} sent, {} received, PLR {:.6}, {:.1} Mbit/s payload over {:.2} s",
            t.tx, t.rx, t.plr, report.throughput_mbps, t.duration_s
        );
    }
    report
        .traffic
        .check_plr(a.max_plr)
        .map_err(|e| anyhow::anyhow!("{e}"))?;
    Ok(ExitCode::SUCCESS)
}

fn run(a: &VcpeLabArgs, lab: &Lab, dir: &Path, vcpe_bin: &Path) -> anyhow::Result<Report> {
    let keys = Keys::new()?;
    let lan1 = lab.netns("l1")?;
    let lan2 = lab.netns("l2")?;
    let v1 = lab.netns("v1")?;
    let v2 = lab.netns("v2")?;
    let wan = lab.netns("w")?;
    lab.veth(&lan1, "eth0", &v1, "lan")?;
    lab.veth(&lan2, "eth0", &v2, "lan")?;
    lab.veth(&v1, "wan", &wan, "p1")?;
    lab.veth(&v2, "wan", &wan, "p2")?;
    lab.bridge(&wan, "br0", &["p1", "p2"])?;
    lab.exec(
        &wan,
        &["ip", "addr", "add", "198.51.100.1/24", "dev", "br0"],
    )?;
    // AF_PACKET sees what the veth receives; no offloads that would hand it
    // unchecksummed or merged frames
    for (ns, dev) in [
        (&v1, "lan"),
        (&v1, "wan"),
        (&v2, "lan"),
        (&v2, "wan"),
        (&lan1, "eth0"),
        (&lan2, "eth0"),
    ] {
        let _ = lab.exec(
            ns,
            &[
                "ethtool", "-K", dev, "tx", "off", "rx", "off", "gro", "off", "gso", "off", "tso",
                "off",
            ],
        );
    }
    for (n, ns) in [(1u8, &v1), (2, &v2)] {
        let cfg = dir.join(format!("vcpe{n}.toml"));
        std::fs::write(&cfg, config(n, &keys))?;
        let c = cfg.display().to_string();
        let bin = vcpe_bin.display().to_string();
        crate::netns::sh(&[&bin, "check", &c]).with_context(|| format!("vcpe{n} config"))?;
        let log = dir.join(format!("vcpe{n}.log"));
        lab.spawn(ns, &[&bin, "run", &c], Some(&log))?;
    }
    // the vCPEs are up once their ports are open
    std::thread::sleep(Duration::from_millis(800));
    let dump_logs = || {
        let mut s = String::new();
        for n in [1, 2] {
            if let Ok(t) = std::fs::read_to_string(dir.join(format!("vcpe{n}.log"))) {
                if let Some(l) = t.lines().rev().find(|l| l.contains("vcpe:")) {
                    s.push_str(&format!(" vcpe{n}: {l}"));
                }
            }
        }
        s
    };
    let lease1 = dhcp(lab, &lan1, dir).map_err(|e| anyhow::anyhow!("{e:#}{}", dump_logs()))?;
    let lease2 = dhcp(lab, &lan2, dir).map_err(|e| anyhow::anyhow!("{e:#}{}", dump_logs()))?;
    let pcap = a.pcap.clone().unwrap_or_else(|| dir.join("wan.pcap"));
    let _ = std::fs::remove_file(&pcap);
    let cap = Capture::start(&wan, "br0", &pcap, &dir.join("tshark.log"))?;
    // the first echo may wait for ARP on both sides
    let p12 = ping(lab, &lan1, lease2.address, 5);
    let p21 = ping(lab, &lan2, lease1.address, 5);
    std::thread::sleep(Duration::from_millis(300));
    cap.stop();
    if p12.received == 0 || p21.received == 0 {
        bail!(
            "ping across the tunnel: 1->2 {}/{}, 2->1 {}/{}",
            p12.received,
            p12.sent,
            p21.received,
            p21.sent
        );
    }
    let tshark = decrypt(&pcap, &keys)?;
    if tshark.decrypted_icmp == 0 {
        bail!(
            "tshark decrypted no ICMP from {} ESP frames captured on the WAN",
            tshark.esp_frames
        );
    }
    let traffic = stream(&lan1, &lan2, lease2.address, a.rate, a.size, a.seconds)?;
    let throughput_mbps = traffic.rx as f64 * (a.size as f64) * 8.0 / traffic.duration_s / 1e6;
    Ok(Report {
        lease_lan1: lease1,
        lease_lan2: lease2,
        ping_1_to_2: p12,
        ping_2_to_1: p21,
        tshark,
        payload_bytes: a.size,
        throughput_mbps,
        traffic,
    })
}
