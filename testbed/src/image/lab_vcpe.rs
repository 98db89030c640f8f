//! `image lab vcpe` (root): the vCPE unikernel under QEMU as site 1, the `vcpe`
//! Linux process as site 2, a static-key IPsec tunnel between them across a WAN,
//! in network namespaces.
//!
//! ```text
//! l1 ns: eth0 (the guest's LAN tap) ── QEMU in g ns: vcpe.elf ── tap ──┐
//!   udhcpc                                                         w ns: br0
//! l2 ns: eth0 ─veth─ v2 ns: `vcpe run` (AF_PACKET lan, wan) ─veth──┘ (198.51.100.1)
//! ```
//!
//! The sites' configurations are `testbed lab vcpe`'s (LAN 192.168.{1,2}.1/24 with
//! a DHCP pool, WAN 198.51.100.{2,3}/24, NAT and firewall, a tunnel whose SPIs and
//! AES-GCM keys are drawn at random per run); site 1's is handed to the guest as a
//! boot module. The taps are created in the guest's namespace, opened by QEMU,
//! then moved: the LAN tap into l1 (renamed eth0), the WAN tap into the WAN bridge.
//! BusyBox `udhcpc` gets a lease on each LAN (on l1 from the guest's DHCP server),
//! `ping` crosses the tunnel both ways, and a UDP stream from LAN 1 to LAN 2
//! (`--pps`, default 1000, of `--size` bytes for `--seconds`) gives the loss ratio.
//! Prints `lab result: {json}`; exits non-zero with a one-line reason when a step
//! fails. Everything is removed at the end, on error and on Ctrl-C.

use super::*;
use crate::lab_vcpe::{config, dhcp, ping, stream, Keys};
use crate::netns::Lab;

/// The guest's MACs (LAN, WAN).
const GUEST_MAC: [&str; 2] = ["02:c9:00:00:01:01", "02:c9:00:00:01:02"];

/// Seconds to wait for the guest's ready line.
const READY_TIMEOUT: u64 = 120;

pub fn run(o: &super::lab::LabOpts) -> Result<()> {
    let header = pktgen::meta::Header::start("testbed.image.lab.vcpe", 1);
    // SAFETY: geteuid has no preconditions.
    if unsafe { libc::geteuid() } != 0 {
        bail!("image lab vcpe needs root (network namespaces and tap devices)");
    }
    if o.size < 8 || o.size > 1400 {
        bail!("--size: {} is not in 8..=1400", o.size);
    }
    need_tool("ip", "iproute2")?;
    need_tool("udhcpc", "udhcpc")?;
    need_tool("busybox", "busybox")?;
    need_tool("qemu-system-x86_64", "qemu-system-x86")?;
    let vcpe_bin = std::env::current_exe()?
        .parent()
        .context("executable dir")?
        .join("vcpe");
    if !vcpe_bin.exists() {
        bail!(
            "the peer's vcpe binary is not at {} (build it: cargo build -p vcpe)",
            vcpe_bin.display()
        );
    }
    if !o.no_build {
        build("vcpe", None, false, &images_dir())?;
    }
    let kernel = images_dir()
        .join("vcpe.elf")
        .canonicalize()
        .context("target/images/vcpe.elf (image build vcpe)")?;
    let lab = Lab::new("uv")?;
    let dir = std::env::temp_dir().join(format!("{}-image-vcpe", lab.prefix()));
    std::fs::create_dir_all(&dir)?;
    let r = lab_run(o, &lab, &dir, &kernel, &vcpe_bin);
    drop(lab);
    crate::netns::cleanup_all();
    let _ = std::fs::remove_dir_all(&dir);
    let result = r?;
    println!("lab result: {}", header.json(&result)?);
    Ok(())
}

/// The last line of `path` that contains `what` (for one-line failure reasons).
fn last_line(path: &Path, what: &str) -> String {
    std::fs::read_to_string(path)
        .unwrap_or_default()
        .lines()
        .rev()
        .find(|l| l.contains(what))
        .unwrap_or("")
        .trim()
        .to_string()
}

/// Waits for the guest's ready line in its console log; returns the line.
fn wait_ready(log: &Path) -> Result<String> {
    let t0 = Instant::now();
    loop {
        let text = std::fs::read_to_string(log).unwrap_or_default();
        if let Some(l) = text.lines().find(|l| l.contains("vcpe ready")) {
            return Ok(l.trim().to_string());
        }
        if let Some(l) = text
            .lines()
            .find(|l| l.contains("FATAL") || l.contains("PANIC"))
        {
            bail!("guest failed: {}", l.trim());
        }
        if t0.elapsed() > Duration::from_secs(READY_TIMEOUT) {
            bail!("no `vcpe ready` line from the guest within {READY_TIMEOUT} s");
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// `stats ... port N: rx A pkts ..., tx B pkts ...` of the guest's last report.
fn guest_port(log: &Path, port: u8) -> (Option<u64>, Option<u64>) {
    let l = last_line(log, &format!("port {port}: rx"));
    (
        super::lab::parse_counter(&l, "rx "),
        super::lab::parse_counter(&l, "tx "),
    )
}

fn lab_run(
    o: &super::lab::LabOpts,
    lab: &Lab,
    dir: &Path,
    kernel: &Path,
    vcpe_bin: &Path,
) -> Result<serde_json::Value> {
    let keys = Keys::new()?;
    let g = lab.netns("g")?;
    let l1 = lab.netns("l1")?;
    let l2 = lab.netns("l2")?;
    let v2 = lab.netns("v2")?;
    let w = lab.netns("w")?;
    // The WAN: a bridge with the WAN gateway's address; site 2 on a veth.
    lab.veth(&l2, "eth0", &v2, "lan")?;
    lab.veth(&v2, "wan", &w, "p2")?;
    lab.bridge(&w, "br0", &["p2"])?;
    lab.exec(&w, &["ip", "addr", "add", "198.51.100.1/24", "dev", "br0"])?;
    // AF_PACKET sees what the veth receives: no offloads that would hand it
    // unchecksummed or merged frames.
    for (ns, dev) in [(&v2, "lan"), (&v2, "wan"), (&l2, "eth0")] {
        let _ = lab.exec(
            ns,
            &[
                "ethtool", "-K", dev, "tx", "off", "rx", "off", "gro", "off", "gso", "off", "tso",
                "off",
            ],
        );
    }
    // Site 2: the Linux vCPE.
    let cfg2 = dir.join("vcpe2.toml");
    std::fs::write(&cfg2, config(2, &keys))?;
    let (bin, c2) = (vcpe_bin.display().to_string(), cfg2.display().to_string());
    crate::netns::sh(&[&bin, "check", &c2]).context("site 2 config")?;
    let log2 = dir.join("vcpe2.log");
    lab.spawn(&v2, &[&bin, "run", &c2], Some(&log2))?;
    // Site 1: the unikernel, its taps in g.
    let taps = ["tl", "tw"];
    for t in taps {
        lab.tap(&g, t)?;
    }
    let cfg1 = dir.join("vcpe1.toml");
    std::fs::write(&cfg1, config(1, &keys))?;
    let seed = dir.join("entropy.seed");
    write_host_seed(&seed)?;
    let guest = Guest {
        machine: o.machine,
        memory: o.memory.clone(),
        accel: Accel::Auto,
        kernel: kernel.to_path_buf(),
        disk: None,
        initrd: Some(cfg1),
        append: "stats=500".into(),
        nets: (0..2)
            .map(|i| NetSpec::Tap {
                ifname: taps[i].into(),
                mac: GUEST_MAC[i].into(),
            })
            .collect(),
        pcap_dir: None,
        drives: Vec::new(),
        fw_cfg: vec![(FWCFG_ENTROPY.to_string(), seed)],
    };
    let cmd = guest.command()?;
    let accel = cmd
        .get_args()
        .skip_while(|a| *a != "-accel")
        .nth(1)
        .map(|a| a.to_string_lossy().into_owned())
        .unwrap_or_default();
    let mut argv = vec![cmd.get_program().to_string_lossy().into_owned()];
    argv.extend(cmd.get_args().map(|a| a.to_string_lossy().into_owned()));
    let argv: Vec<&str> = argv.iter().map(String::as_str).collect();
    let log1 = dir.join("guest.log");
    let t_launch = Instant::now();
    lab.spawn(&g, &argv, Some(&log1))?;
    let ready = wait_ready(&log1)?;
    let launch_to_ready_ms = t_launch.elapsed().as_secs_f64() * 1e3;
    // The guest holds the taps open: move them to their places.
    lab.exec(&g, &["ip", "link", "set", "tl", "netns", &l1])?;
    lab.exec(&l1, &["ip", "link", "set", "tl", "name", "eth0"])?;
    lab.exec(&l1, &["ip", "link", "set", "eth0", "up"])?;
    lab.exec(&g, &["ip", "link", "set", "tw", "netns", &w])?;
    lab.exec(&w, &["ip", "link", "set", "tw", "master", "br0"])?;
    lab.exec(&w, &["ip", "link", "set", "tw", "up"])?;
    let why = |e: anyhow::Error| {
        anyhow!(
            "{e:#} (guest: {}; site 2: {})",
            last_line(&log1, "stats"),
            last_line(&log2, "vcpe")
        )
    };
    let t_dhcp = Instant::now();
    let lease1 = dhcp(lab, &l1, dir).map_err(why)?;
    let dhcp_ms = t_dhcp.elapsed().as_secs_f64() * 1e3;
    let lease2 = dhcp(lab, &l2, dir).map_err(why)?;
    // The first echoes may wait for ARP on both sides.
    let p12 = ping(lab, &l1, lease2.address, 5);
    let p21 = ping(lab, &l2, lease1.address, 5);
    if p12.received == 0 || p21.received == 0 {
        bail!(
            "ping across the tunnel: guest LAN -> site 2 LAN {}/{}, back {}/{} (guest: {}; site 2: {})",
            p12.received,
            p12.sent,
            p21.received,
            p21.sent,
            last_line(&log1, "port 1: rx"),
            last_line(&log2, "vcpe")
        );
    }
    // The guest's metrics from the LAN, through its host stack (curl).
    let (metrics, metrics_error) = match lab.exec(
        &l1,
        &["curl", "-sf", "-m", "10", "http://192.168.1.1:9100/metrics"],
    ) {
        Ok(m) => (m, None),
        Err(e) => (String::new(), Some(format!("{e:#}"))),
    };
    let metric = |name: &str| -> Option<u64> {
        metrics
            .lines()
            .find(|l| l.starts_with(name) && l[name.len()..].starts_with(' '))
            .and_then(|l| l.split_whitespace().nth(1))
            .and_then(|v| v.parse().ok())
    };
    let pps = if o.pps == 0 { 1000 } else { o.pps };
    let pps = u32::try_from(pps).map_err(|_| anyhow!("--pps {pps}: too large"))?;
    let traffic = stream(&l1, &l2, lease2.address, pps, o.size, o.seconds)?;
    // The guest's counters once the stream is over (stats every 500 ms).
    std::thread::sleep(Duration::from_millis(1200));
    let (lan_rx, _) = guest_port(&log1, 0);
    let (_, wan_tx) = guest_port(&log1, 1);
    let result = serde_json::json!({
        "qemu_machine": o.machine.qemu_name(),
        "accel": accel,
        "ready_line": ready,
        "launch_to_ready_ms": launch_to_ready_ms,
        "lease_lan1": lease1,
        "lease_lan2": lease2,
        "dhcp_ms": dhcp_ms,
        "ping_1_to_2": p12,
        "ping_2_to_1": p21,
        "metrics_dhcp_replies": metric("vcpe_dhcp_replies_total"),
        "metrics_leases": metric("vcpe_dhcp_leases"),
        "metrics_error": metrics_error,
        "payload": o.size,
        "pps": pps,
        "traffic": traffic,
        "guest_lan_rx": lan_rx,
        "guest_wan_tx": wan_tx,
    });
    if result["traffic"]["rx"].as_u64().unwrap_or(0) == 0 {
        bail!(
            "none of the {} datagrams from the guest's LAN reached site 2's LAN",
            result["traffic"]["tx"].as_u64().unwrap_or(0)
        );
    }
    Ok(result)
}
