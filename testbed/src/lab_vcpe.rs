//! `testbed lab vcpe [--json] [--keys keyserver|static]` (root): two vCPE sites
//! joined by an IPsec tunnel across a WAN, in network namespaces, keyed by our SD-WAN
//! key server (default) or by static keys.
//!
//! ```text
//! lan1 ns (udhcpc) ─veth─ v1 ns: `vcpe run` (AF_PACKET lan, wan) ─veth─┐
//!                          │ ctl (host socket, 203.0.113.2)            wan ns: bridge
//! lan2 ns (udhcpc) ─veth─ v2 ns: `vcpe run` (AF_PACKET lan, wan) ─veth─┘ (gateway .1)
//!                          │ ctl (203.0.113.3)
//!                          └── ks ns: bridge, `keyserver run` on 203.0.113.9:500
//! ```
//!
//! 1. Each site's `vcpe` process (the binary next to `testbed`, or `--vcpe PATH`)
//!    runs a configuration written by the lab: LAN 192.168.{1,2}.1/24 with a DHCP
//!    pool, WAN 198.51.100.{2,3}/24, NAT and firewall, and a tunnel between the LANs.
//!    - `--keys keyserver`: a `keyserver` process (next to `testbed`, or
//!      `--keyserver PATH`) in its own namespace serves both sites as CPEs of one
//!      full-mesh group (PSKs drawn per run) and rotates the tunnel's keys every
//!      `--rekey-interval` seconds (make-before-break). The vCPEs register over
//!      their control planes' host sockets on a management link (`ctl`, the
//!      vCPE's key server link is not carried by the graph's WAN port) and run
//!      with the opt-in `--esp-sa-log` so that the lab can decrypt. The lab waits
//!      until the key server counts both CPEs served.
//!    - `--keys static`: SPIs and AES-GCM keys drawn at random per run, in the
//!      configurations.
//! 2. BusyBox `udhcpc` gets a lease on each LAN (a real DHCP client, RFC 2131); the
//!    lab configures the leased address and the default route from it.
//! 3. `dumpcap` (tshark's capture engine) captures the WAN bridge while `ping` crosses the tunnel both ways and
//!    a UDP stream from LAN 1 to LAN 2 (`--rate` packets/s of `--size` bytes for
//!    `--seconds`) measures throughput and loss (the `traffic` block of the other
//!    labs).
//! 4. `tshark` decrypts the capture with the SAs the key server issued (the union
//!    of both vCPEs' `esp_sa` exports) or the static keys, as `-o uat:esp_sa:…`
//!    records: every ESP frame must decrypt to ICMP or UDP between the two LANs,
//!    none may be malformed, and with the key server the decrypted frames must span
//!    at least two key generations (epochs).
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

/// Where the tunnel's keys come from.
#[derive(clap::ValueEnum, Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum KeySource {
    /// Our SD-WAN key server (`keyserver` process), rotating the keys.
    Keyserver,
    /// Static SAs drawn per run, in the vCPE configurations.
    Static,
}

#[derive(clap::Args, Debug)]
pub struct VcpeLabArgs {
    /// Print the report as JSON.
    #[arg(long)]
    pub json: bool,
    /// Where the tunnel's keys come from.
    #[arg(long, value_enum, default_value = "keyserver")]
    pub keys: KeySource,
    /// Key server mode: seconds between key rotations of the tunnel.
    #[arg(long, default_value_t = 1.0)]
    pub rekey_interval: f64,
    /// The `keyserver` binary (default: next to this one).
    #[arg(long)]
    pub keyserver: Option<PathBuf>,
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
#[derive(Debug, Serialize, Default)]
pub struct Decrypt {
    /// ESP frames captured on the WAN bridge.
    pub esp_frames: u64,
    /// Of them, those tshark decrypted (with the issued or static keys) to ICMP
    /// between the two LANs.
    pub decrypted_icmp: u64,
    /// … to UDP between the two LANs (the stream).
    pub decrypted_udp: u64,
    /// ESP frames that did not decrypt to traffic between the LANs.
    pub undecrypted: u64,
    /// Frames tshark flagged malformed.
    pub malformed: u64,
    /// SA records handed to tshark.
    pub sas: usize,
    /// Distinct SPIs seen in the decrypted frames.
    pub spis_decrypted: usize,
    /// Key generations (epochs) of the decrypted frames (key server mode).
    pub epochs_decrypted: Vec<u32>,
}

/// The key server's part of the run.
#[derive(Debug, Serialize, Default)]
pub struct KeyserverReport {
    /// From the key server's start until it counted both CPEs served (ms).
    pub distribution_ms: u64,
    pub cpes_served: u64,
    /// Rotations of the tunnel's keys completed while the WAN was captured.
    pub rekeys: u64,
    pub rekey_interval_s: f64,
    /// ESP SAs the two vCPEs exported (inbound and outbound, every epoch).
    pub sas_exported: usize,
    pub liveness_checks: u64,
}

#[derive(Debug, Serialize)]
pub struct Report {
    pub keys: KeySource,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub keyserver: Option<KeyserverReport>,
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

/// The key server's address on the management link, its IKE port and metrics.
const KS_ADDR: &str = "203.0.113.9";

/// Key server mode: the PSKs of the two sites, drawn per run.
struct Psks([String; 2]);

impl Psks {
    fn new() -> anyhow::Result<Psks> {
        let r = random_bytes(32)?;
        Ok(Psks([hex(&r[..16]), hex(&r[16..])]))
    }
}

/// The key server's configuration: both sites in one full-mesh group.
fn keyserver_config(p: &Psks, rekey_s: f64) -> String {
    // old inbound SAs stay most of an interval: a worker of a debug build on a
    // loaded machine may run that far behind its control plane
    let overlap = (rekey_s * 0.8).min(5.0);
    let mut s = format!(
        r#"[server]
listen = "{KS_ADDR}:500"
id = "ks.lab"
algorithm = "aes128gcm16"
rekey_interval_s = {rekey_s}
overlap_s = {overlap}
metrics = "{KS_ADDR}:9100"
retransmit_ms = 200
retransmit_tries = 5
liveness_interval_s = 1
liveness_misses = 3

[[group]]
name = "lab"
topology = "full-mesh"
"#
    );
    for n in [1u8, 2] {
        s.push_str(&format!(
            r#"
[[cpe]]
id = "site{n}.lab"
psk = "{psk}"
address = "198.51.100.{w}"
subnet = "192.168.{n}.0/24"
groups = ["lab"]
"#,
            psk = p.0[usize::from(n - 1)],
            w = n + 1
        ));
    }
    s
}

/// The vCPE configuration of site `n` (1 or 2) with its tunnel keyed by the key
/// server.
fn config_keyserver(n: u8, p: &Psks) -> String {
    let (me, peer) = (n, 3 - n);
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
[tunnel.keyserver]
peer_id = "site{peer}.lab"
[keyserver]
server = "{KS_ADDR}:500"
id = "site{me}.lab"
psk = "{psk}"
server_id = "ks.lab"
bind = "203.0.113.{ctl}:0"
dpd_ms = 1000
retransmit_ms = 200
"#,
        wme = me + 1,
        wpeer = peer + 1,
        psk = p.0[usize::from(me - 1)],
        ctl = me + 1,
    )
}

/// The vCPE configuration of site `n` (1 or 2) with static keys.
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
            &[
                "busybox",
                "ping",
                "-c",
                &c,
                "-i",
                "0.2",
                "-W",
                "1",
                &to.to_string(),
            ],
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

/// A dumpcap capture that is stopped (SIGINT, so the pcap is complete) on drop.
struct Capture(Child);

impl Capture {
    fn start(ns: &str, dev: &str, path: &Path, log: &Path) -> anyhow::Result<Capture> {
        // dumpcap (tshark's capture engine, wireshark-common) starts in a fraction
        // of tshark's time; pcap format (-P)
        let c = Command::new("ip")
            .args([
                "netns", "exec", ns, "dumpcap", "-n", "-q", "-P", "-i", dev, "-f", "esp", "-w",
            ])
            .arg(path)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(log)?)
            .spawn()
            .context("starting dumpcap (apt-get install tshark)")?;
        let mut cap = Capture(c);
        // dumpcap says so once it captures (it may take seconds on a busy machine)
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
                    "dumpcap on {dev} in {ns} exited ({st}): {}",
                    why.lines().last().unwrap_or("")
                );
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        if !started() {
            bail!("dumpcap did not start capturing on {dev} in {ns} within 30 s");
        }
        Ok(cap)
    }

    fn stop(mut self) {
        self.halt();
    }

    fn halt(&mut self) {
        // SAFETY: kill(2) on our own child's pid (`ip netns exec` execs dumpcap).
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

/// One SA for tshark: its `esp_sa` record and, from the key server, its epoch.
struct SaRecord {
    spi: u32,
    epoch: Option<u32>,
    record: zeroize::Zeroizing<String>,
}

/// The static SAs as `esp_sa` records.
fn static_records(k: &Keys) -> Vec<SaRecord> {
    let (a, b): (std::net::IpAddr, std::net::IpAddr) = (
        Ipv4Addr::new(198, 51, 100, 2).into(),
        Ipv4Addr::new(198, 51, 100, 3).into(),
    );
    vec![
        SaRecord {
            spi: k.spi_ab,
            epoch: None,
            record: vcpe::keylink::esp_sa_record(a, b, k.spi_ab, &k.key_ab),
        },
        SaRecord {
            spi: k.spi_ba,
            epoch: None,
            record: vcpe::keylink::esp_sa_record(b, a, k.spi_ba, &k.key_ba),
        },
    ]
}

/// The records of the vCPEs' `--esp-sa-log` files (each SA once: one site's
/// outbound SA is the other's inbound), with the epoch of their comment line.
fn exported_records(files: &[PathBuf]) -> anyhow::Result<Vec<SaRecord>> {
    let mut v: Vec<SaRecord> = Vec::new();
    for f in files {
        let text = zeroize::Zeroizing::new(
            std::fs::read_to_string(f).with_context(|| format!("reading {}", f.display()))?,
        );
        let mut epoch = None;
        for l in text.lines() {
            if let Some(c) = l.strip_prefix('#') {
                // "# tunnel NAME epoch N in|out"
                let w: Vec<&str> = c.split_whitespace().collect();
                epoch = w
                    .iter()
                    .position(|x| *x == "epoch")
                    .and_then(|i| w.get(i + 1))
                    .and_then(|x| x.parse().ok());
                continue;
            }
            if l.trim().is_empty() {
                continue;
            }
            // "IPv4","src","dst","0xSPI",...
            let spi = l
                .split(',')
                .nth(3)
                .map(|x| x.trim_matches('"'))
                .and_then(|x| x.strip_prefix("0x"))
                .and_then(|x| u32::from_str_radix(x, 16).ok())
                .with_context(|| format!("{}: a record without SPI", f.display()))?;
            if v.iter().any(|r| r.spi == spi) {
                continue;
            }
            v.push(SaRecord {
                spi,
                epoch,
                record: zeroize::Zeroizing::new(l.to_string()),
            });
        }
    }
    Ok(v)
}

/// Decrypts `pcap` with `sas` and counts ESP frames, the ICMP and UDP between the
/// two LANs they decrypt to, malformed frames, and the SPIs and epochs that
/// decrypted.
fn decrypt(pcap: &Path, sas: &[SaRecord]) -> anyhow::Result<Decrypt> {
    let mut cmd = Command::new("tshark");
    cmd.arg("-n").arg("-r").arg(pcap);
    cmd.args(["-o", "esp.enable_encryption_decode:TRUE"]);
    for r in sas {
        cmd.arg("-o")
            .arg(format!("uat:esp_sa:{}", r.record.as_str()));
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
        "ip.proto",
        "-e",
        "_ws.malformed",
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
        sas: sas.len(),
        ..Decrypt::default()
    };
    let mut spis = std::collections::BTreeSet::new();
    let mut epochs = std::collections::BTreeSet::new();
    for l in text.lines() {
        let f: Vec<&str> = l.split('\t').collect();
        let field = |i: usize| f.get(i).copied().unwrap_or("");
        if !field(4).is_empty() {
            d.malformed += 1;
        }
        if field(0).is_empty() {
            continue;
        }
        d.esp_frames += 1;
        // with occurrence=l, ip.* are the inner (last) header's once decrypted
        let inner = field(1).starts_with("192.168.") && field(2).starts_with("192.168.");
        match (inner, field(3)) {
            (true, "1") => d.decrypted_icmp += 1,
            (true, "17") => d.decrypted_udp += 1,
            _ => {
                d.undecrypted += 1;
                continue;
            }
        }
        let spi = field(0)
            .strip_prefix("0x")
            .and_then(|x| u32::from_str_radix(x, 16).ok());
        if let Some(spi) = spi {
            spis.insert(spi);
            if let Some(e) = sas.iter().find(|r| r.spi == spi).and_then(|r| r.epoch) {
                epochs.insert(e);
            }
        }
    }
    d.spis_decrypted = spis.len();
    d.epochs_decrypted = epochs.into_iter().collect();
    Ok(d)
}

/// GET `path` from `addr` inside namespace `ns` (the key server's `/metrics`).
fn http_get(ns: &str, addr: &str, path: &str) -> anyhow::Result<String> {
    use std::io::{Read, Write};
    let a: std::net::SocketAddr = addr.parse()?;
    let mut c = in_netns(ns, || {
        std::net::TcpStream::connect_timeout(&a, Duration::from_millis(500))
    })??;
    c.set_read_timeout(Some(Duration::from_secs(2)))?;
    write!(c, "GET {path} HTTP/1.0\r\nHost: {addr}\r\n\r\n")?;
    let mut s = String::new();
    c.read_to_string(&mut s)?;
    Ok(s)
}

/// A value of the Prometheus text `m`.
fn metric(m: &str, name: &str) -> Option<u64> {
    m.lines()
        .find_map(|l| l.strip_prefix(name)?.strip_prefix(' ')?.trim().parse().ok())
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
    if !a.rekey_interval.is_finite() || !(0.2..=3600.0).contains(&a.rekey_interval) {
        bail!(
            "--rekey-interval: {} is not in [0.2, 3600]",
            a.rekey_interval
        );
    }
    let header = pktgen::meta::Header::start("testbed.lab.vcpe", 2);
    let next_to_us = |name: &str| -> anyhow::Result<PathBuf> {
        Ok(std::env::current_exe()?
            .parent()
            .context("executable dir")?
            .join(name))
    };
    let vcpe_bin = match &a.vcpe {
        Some(p) => p.clone(),
        None => next_to_us("vcpe")?,
    };
    if !vcpe_bin.exists() {
        bail!(
            "vcpe binary not found at {} (build it: cargo build -p vcpe, or pass --vcpe PATH)",
            vcpe_bin.display()
        );
    }
    let ks_bin = match &a.keyserver {
        Some(p) => p.clone(),
        None => next_to_us("keyserver")?,
    };
    if a.keys == KeySource::Keyserver && !ks_bin.exists() {
        bail!(
            "keyserver binary not found at {} (build it: cargo build -p keyserver, or pass --keyserver PATH)",
            ks_bin.display()
        );
    }
    for tool in ["udhcpc", "tshark", "dumpcap", "busybox"] {
        crate::netns::sh(&["sh", "-c", &format!("command -v {tool}")])
            .with_context(|| format!("{tool} is required (scripts/setup installs it)"))?;
    }
    let lab = Lab::new("vc")?;
    let dir = std::env::temp_dir().join(format!("{}-vcpe", lab.prefix()));
    std::fs::create_dir_all(&dir)?;
    // the SA exports hold keys: the directory is ours only
    {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o700))?;
    }
    let r = run(&a, &lab, &dir, &vcpe_bin, &ks_bin);
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
        if let Some(k) = &report.keyserver {
            println!(
                "keyserver: both CPEs served in {} ms, {} rotation(s) every {} s, {} SAs exported; tshark decrypted epochs {:?}",
                k.distribution_ms,
                k.rekeys,
                k.rekey_interval_s,
                k.sas_exported,
                report.tshark.epochs_decrypted
            );
        }
        println!(
            "leases: lan1 {} lan2 {}; ping 1->2 {}/{}, 2->1 {}/{}; tshark decrypted {} ICMP + {} UDP of {} ESP frames, {} malformed",
            report.lease_lan1.address,
            report.lease_lan2.address,
            report.ping_1_to_2.received,
            report.ping_1_to_2.sent,
            report.ping_2_to_1.received,
            report.ping_2_to_1.sent,
            report.tshark.decrypted_icmp,
            report.tshark.decrypted_udp,
            report.tshark.esp_frames,
            report.tshark.malformed
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

fn run(
    a: &VcpeLabArgs,
    lab: &Lab,
    dir: &Path,
    vcpe_bin: &Path,
    ks_bin: &Path,
) -> anyhow::Result<Report> {
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
    let bin = vcpe_bin.display().to_string();
    let mut ks_ns = None;
    let mut sa_logs = Vec::new();
    let mut ks_t0 = Instant::now();
    let keys = match a.keys {
        KeySource::Static => {
            let keys = Keys::new()?;
            for (n, ns) in [(1u8, &v1), (2, &v2)] {
                let cfg = dir.join(format!("vcpe{n}.toml"));
                std::fs::write(&cfg, config(n, &keys))?;
                let c = cfg.display().to_string();
                crate::netns::sh(&[&bin, "check", &c])
                    .with_context(|| format!("vcpe{n} config"))?;
                let log = dir.join(format!("vcpe{n}.log"));
                lab.spawn(ns, &[&bin, "run", &c], Some(&log))?;
            }
            Some(keys)
        }
        KeySource::Keyserver => {
            // the management link: each vCPE's control-plane socket to the key
            // server's namespace
            let ks = lab.netns("ks")?;
            lab.veth(&v1, "ctl", &ks, "c1")?;
            lab.veth(&v2, "ctl", &ks, "c2")?;
            lab.bridge(&ks, "br0", &["c1", "c2"])?;
            lab.exec(
                &ks,
                &["ip", "addr", "add", &format!("{KS_ADDR}/24"), "dev", "br0"],
            )?;
            lab.exec(&v1, &["ip", "addr", "add", "203.0.113.2/24", "dev", "ctl"])?;
            lab.exec(&v2, &["ip", "addr", "add", "203.0.113.3/24", "dev", "ctl"])?;
            let psks = Psks::new()?;
            let kcfg = dir.join("keyserver.toml");
            write_private(&kcfg, &keyserver_config(&psks, a.rekey_interval))?;
            let kc = kcfg.display().to_string();
            let kbin = ks_bin.display().to_string();
            crate::netns::sh(&[&kbin, "check", &kc]).context("keyserver config")?;
            ks_t0 = Instant::now();
            lab.spawn(&ks, &[&kbin, "run", &kc], Some(&dir.join("keyserver.log")))?;
            for (n, ns) in [(1u8, &v1), (2, &v2)] {
                let cfg = dir.join(format!("vcpe{n}.toml"));
                write_private(&cfg, &config_keyserver(n, &psks))?;
                let c = cfg.display().to_string();
                // in its namespace: the check binds the key server socket
                lab.exec(ns, &[&bin, "check", &c])
                    .with_context(|| format!("vcpe{n} config"))?;
                let sa = dir.join(format!("vcpe{n}.esp_sa"));
                let s = sa.display().to_string();
                let log = dir.join(format!("vcpe{n}.log"));
                lab.spawn(ns, &[&bin, "run", &c, "--esp-sa-log", &s], Some(&log))?;
                sa_logs.push(sa);
            }
            ks_ns = Some(ks);
            None
        }
    };
    let dump_logs = || {
        let mut s = String::new();
        for n in ["vcpe1", "vcpe2", "keyserver"] {
            if let Ok(t) = std::fs::read_to_string(dir.join(format!("{n}.log"))) {
                if let Some(l) = t
                    .lines()
                    .rev()
                    .find(|l| l.contains("vcpe:") || l.contains("keyserver:"))
                {
                    s.push_str(&format!(" {n}: {l}"));
                }
            }
        }
        s
    };
    let ks_metrics_addr = format!("{KS_ADDR}:9100");
    let mut ks_report = None;
    if let Some(ks) = &ks_ns {
        // both CPEs registered and synchronised
        let mut served = 0;
        while ks_t0.elapsed() < Duration::from_secs(20) {
            if let Ok(m) = http_get(ks, &ks_metrics_addr, "/metrics") {
                served = metric(&m, "keyserver_cpes_served").unwrap_or(0);
                if served >= 2 {
                    break;
                }
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        if served < 2 {
            bail!(
                "the key server served {served} of 2 vCPEs within 20 s{}",
                dump_logs()
            );
        }
        ks_report = Some(KeyserverReport {
            distribution_ms: ks_t0.elapsed().as_millis() as u64,
            cpes_served: served,
            rekey_interval_s: a.rekey_interval,
            ..KeyserverReport::default()
        });
    } else {
        // the vCPEs are up once their ports are open
        std::thread::sleep(Duration::from_millis(800));
    }
    let lease1 = dhcp(lab, &lan1, dir).map_err(|e| anyhow::anyhow!("{e:#}{}", dump_logs()))?;
    let lease2 = dhcp(lab, &lan2, dir).map_err(|e| anyhow::anyhow!("{e:#}{}", dump_logs()))?;
    let pcap = a.pcap.clone().unwrap_or_else(|| dir.join("wan.pcap"));
    let _ = std::fs::remove_file(&pcap);
    let rekeys0 = match &ks_ns {
        Some(ks) => http_get(ks, &ks_metrics_addr, "/metrics")
            .ok()
            .and_then(|m| metric(&m, "keyserver_rekeys_total"))
            .unwrap_or(0),
        None => 0,
    };
    let cap = Capture::start(&wan, "br0", &pcap, &dir.join("tshark.log"))?;
    // the first echo may wait for ARP on both sides
    let p12 = ping(lab, &lan1, lease2.address, 5);
    let p21 = ping(lab, &lan2, lease1.address, 5);
    if p12.received == 0 || p21.received == 0 {
        cap.stop();
        bail!(
            "ping across the tunnel: 1->2 {}/{}, 2->1 {}/{}{}",
            p12.received,
            p12.sent,
            p21.received,
            p21.sent,
            dump_logs()
        );
    }
    let traffic = stream(&lan1, &lan2, lease2.address, a.rate, a.size, a.seconds)?;
    std::thread::sleep(Duration::from_millis(300));
    cap.stop();
    let throughput_mbps = traffic.rx as f64 * (a.size as f64) * 8.0 / traffic.duration_s / 1e6;
    let sas = match &keys {
        Some(k) => static_records(k),
        None => exported_records(&sa_logs)?,
    };
    if let (Some(ks), Some(r)) = (&ks_ns, ks_report.as_mut()) {
        let m = http_get(ks, &ks_metrics_addr, "/metrics").unwrap_or_default();
        r.rekeys = metric(&m, "keyserver_rekeys_total")
            .unwrap_or(0)
            .saturating_sub(rekeys0);
        r.liveness_checks = metric(&m, "keyserver_liveness_checks_total").unwrap_or(0);
        r.sas_exported = sas.len();
    }
    let tshark = decrypt(&pcap, &sas)?;
    if tshark.decrypted_icmp == 0 {
        bail!(
            "tshark decrypted no ICMP from {} ESP frames captured on the WAN",
            tshark.esp_frames
        );
    }
    if tshark.undecrypted > 0 || tshark.malformed > 0 {
        bail!(
            "tshark: {} of {} ESP frames did not decrypt to traffic between the LANs, {} malformed ({} SAs)",
            tshark.undecrypted,
            tshark.esp_frames,
            tshark.malformed,
            tshark.sas
        );
    }
    if a.keys == KeySource::Keyserver && tshark.epochs_decrypted.len() < 2 {
        bail!(
            "tshark decrypted key generations {:?} only: the run saw no rotation (--rekey-interval {} s, --seconds {})",
            tshark.epochs_decrypted,
            a.rekey_interval,
            a.seconds
        );
    }
    Ok(Report {
        keys: a.keys,
        keyserver: ks_report,
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

/// Writes a file holding secrets (PSKs): mode 0600 from the start.
fn write_private(path: &Path, text: &str) -> anyhow::Result<()> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(path)
        .with_context(|| format!("writing {}", path.display()))?;
    f.write_all(text.as_bytes())?;
    Ok(())
}
