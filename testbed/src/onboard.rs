//! `testbed onboard PACKAGE [--json]` (issue 18): a local stand-in for a VNF
//! manager's lifecycle of one package, as ETSI GS NFV-SOL 003/IFA 007 order it:
//! validate, unpack, instantiate, health check (`instantiate_end`), monitor, drain
//! (`terminate_start`) and terminate.
//!
//! 1. **Validate** with `descriptors validate` (tosca-parser for a CSAR, strict
//!    yanglint for OSM packages; the `descriptors` binary next to this one).
//! 2. **Unpack** the CSAR (zip) or the OSM VNF package (folder or `.tar.gz`) and read
//!    its `monitoring/<vnf>-kpis.yaml` (management endpoint, KPIs, day-0 delivery,
//!    image file name) and its scripts.
//! 3. **Boot the software image** under QEMU (TCG) from its GRUB disk with the day-0
//!    TOML delivered as the package says (fw_cfg `opt/vnf/config`) and two NICs
//!    (access, core); the boot counts when the serial console says it took the
//!    configuration from that fw_cfg file and prints `<vnf> ready`. A CSAR carries the
//!    image; for an OSM package the image comes from the "VIM":
//!    `target/images/<vnf>.qcow2` (or `--image`).
//! 4. **Instantiate** on the platform `--platform` picks (`auto`: guest for the
//!    router, process for the vBNG):
//!    - `guest`: the booted image is the instance. QEMU runs in the VNF's network
//!      namespace with the NICs on taps there; the tap of the guest's management
//!      NIC (the router's port 0, at interface 0's first IPv4 address; the vBNG's
//!      core port at `core_ip`) gets the last free address of that subnet, and the
//!      steps below reach the guest's own host network stack (`/metrics`, the
//!      RESTCONF API) over it. The vBNG guest serves the `vbng:drain` RPC (the
//!      Linux vBNG's `vbng::mgmt`), so the package's drain runs against it as on the
//!      process platform; the router guest's API is read-only (its package
//!      declares no drain).
//!    - `process`: the package's process command (the `router`/`vbng` binary next to
//!      this one, `--bin-dir`) runs in a network namespace with the day-0 TOML, its
//!      access and core CPs as veths (peers in a second namespace) and its management
//!      endpoint on the package's port; the image is booted to its ready line first.
//!      The JSON says which: `"platform": "guest"|"process"`.
//! 5. **Health check**: the package's `health-check.sh` in the VNF's namespace.
//! 6. **KPIs**: `GET /metrics` on the package's port; every KPI's metric family must
//!    be there (values summed over its samples), else the run fails.
//! 7. **Day-2**: the package's read-only operation `day2/get-state.sh` (its
//!    scripts call the RESTCONF API).
//! 8. **Drain** when the package declares one (`drain.sh`, `terminate_start`), then
//!    terminate: the process is stopped, namespaces and veths removed.
//!
//! JSON: the report header, then `package`, `format`, `vnf`, `validated`,
//! `platform`, `image_boot`, `instantiated`, `healthy`, `kpis` (KPI id → value),
//! `drain`, `day2`, `scale`, `terminated`. Exit 1 with a one-line reason when a step fails.

use crate::netns::{sh, Lab};
use anyhow::{anyhow, bail, Context, Result};
use serde::Serialize;
use serde_json::{json, Value};
use std::collections::BTreeMap;
use std::io::{BufRead, BufReader, Read};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

/// `testbed onboard` arguments.
#[derive(clap::Args)]
pub struct OnboardArgs {
    /// The package: a SOL004 CSAR (`.csar`), or an OSM VNF package (folder or
    /// `.tar.gz`)
    package: PathBuf,
    /// Print one JSON object
    #[arg(long)]
    json: bool,
    /// Where the VNF binaries (`router`, `vbng`) and `descriptors` are (default: next
    /// to this binary)
    #[arg(long)]
    bin_dir: Option<PathBuf>,
    /// Image for an OSM package (default: target/images/<vnf>.qcow2, the "VIM")
    #[arg(long)]
    image: Option<PathBuf>,
    /// Seconds to wait for the guest's ready line
    #[arg(long, default_value_t = 60)]
    boot_timeout: u64,
    /// Skip the QEMU boot of the image (process instantiation only)
    #[arg(long)]
    no_boot: bool,
    /// Where the instance whose health and KPIs are checked runs: `guest` (the
    /// booted image itself, its management endpoint reached over its NIC on a tap
    /// in the VNF's namespace), `process` (the package's Linux process command), or
    /// `auto`: guest for the router, process for the vBNG (the package's process
    /// command; `guest` runs the same checks and the drain against its image)
    #[arg(long, value_parser = ["auto", "guest", "process"], default_value = "auto")]
    platform: String,
}

/// What the package says (its `monitoring/<vnf>-kpis.yaml`).
#[derive(serde::Deserialize)]
struct KpiFile {
    vnf: String,
    management: Management,
    day0: Day0,
    image: String,
    kpis: Vec<Kpi>,
}

#[derive(serde::Deserialize)]
struct Management {
    port: u16,
    metrics_path: String,
    health_path: String,
}

#[derive(serde::Deserialize)]
struct Day0 {
    file_name: String,
    install_path: String,
    fw_cfg: String,
    process_command: String,
}

#[derive(serde::Deserialize)]
struct Kpi {
    id: String,
    metric: String,
}

#[derive(Serialize)]
struct ImageBoot {
    booted: bool,
    image: String,
    day0: String,
    ready_line: Option<String>,
    /// The console line where the guest says it took the day-0 from fw_cfg.
    day0_line: Option<String>,
    seconds: f64,
}

/// The unpacked package: where things are.
struct Unpacked {
    format: &'static str,
    kpi: KpiFile,
    day0: PathBuf,
    scripts: PathBuf,
    image: Option<PathBuf>,
}

fn bin_dir(a: &OnboardArgs) -> Result<PathBuf> {
    match &a.bin_dir {
        Some(d) => Ok(d.clone()),
        None => std::env::current_exe()?
            .parent()
            .map(Path::to_path_buf)
            .ok_or_else(|| anyhow!("no directory for this binary")),
    }
}

fn unpack(pkg: &Path, dir: &Path) -> Result<Unpacked> {
    let name = pkg.to_string_lossy().to_string();
    std::fs::create_dir_all(dir).with_context(|| format!("create {}", dir.display()))?;
    let (format, root) = if name.ends_with(".csar") {
        let f = std::fs::File::open(pkg).with_context(|| format!("open {name}"))?;
        let mut z = zip::ZipArchive::new(f).context("the CSAR is not a zip archive")?;
        z.extract(dir).context("unpack the CSAR")?;
        ("csar", dir.to_path_buf())
    } else if name.ends_with(".tar.gz") {
        sh(&["tar", "-xzf", &name, "-C", &dir.to_string_lossy()])?;
        let top = std::fs::read_dir(dir)?
            .filter_map(|e| e.ok())
            .map(|e| e.path())
            .find(|p| p.is_dir())
            .ok_or_else(|| anyhow!("{name}: no folder inside"))?;
        ("osm", top)
    } else if pkg.is_dir() {
        ("osm", pkg.to_path_buf())
    } else {
        bail!("{name}: not a .csar, an OSM .tar.gz or a package folder");
    };
    let (mon, day0_dir, scripts) = if format == "csar" {
        (
            root.join("Files/monitoring"),
            root.join("Files/day0"),
            root.join("Scripts"),
        )
    } else {
        (
            root.join("monitoring"),
            root.join("day0"),
            root.join("scripts"),
        )
    };
    let kpi_path = std::fs::read_dir(&mon)
        .with_context(|| format!("the package has no {}", mon.display()))?
        .filter_map(|e| e.ok())
        .map(|e| e.path())
        .find(|p| p.to_string_lossy().ends_with("-kpis.yaml"))
        .ok_or_else(|| anyhow!("the package has no <vnf>-kpis.yaml"))?;
    let kpi: KpiFile = serde_norway::from_str(&std::fs::read_to_string(&kpi_path)?)
        .with_context(|| format!("read {}", kpi_path.display()))?;
    let day0 = day0_dir.join(&kpi.day0.file_name);
    if !day0.is_file() {
        bail!("the package has no day-0 file {}", day0.display());
    }
    let image = (format == "csar").then(|| root.join("Files/images").join(&kpi.image));
    Ok(Unpacked {
        format,
        kpi,
        day0,
        scripts,
        image,
    })
}

/// Boots the image's GRUB disk under QEMU TCG with day-0 over fw_cfg; waits for the
/// `<vnf> ready` line, then stops the guest.
fn boot_image(u: &Unpacked, image: &Path, timeout: u64, tmp: &Path) -> Result<ImageBoot> {
    use crate::image::{Accel, Guest, Machine, NetSpec};
    let vnf = &u.kpi.vnf;
    let mut fw_cfg = vec![(u.kpi.day0.fw_cfg.clone(), u.day0.clone())];
    if vnf == "vbng" {
        let seed = tmp.join("entropy.seed");
        crate::image::write_host_seed(&seed)?;
        fw_cfg.push((crate::image::FWCFG_ENTROPY.to_string(), seed));
    }
    // Two NICs (access, core) on loopback UDP sockets nobody else uses.
    let free = || -> Result<u16> {
        Ok(std::net::UdpSocket::bind("127.0.0.1:0")?
            .local_addr()?
            .port())
    };
    let nets = (0..2)
        .map(|i| {
            Ok(NetSpec::Udp {
                local: free()?,
                peer: free()?,
                mac: format!("02:00:00:00:0b:{:02x}", i + 1),
            })
        })
        .collect::<Result<Vec<_>>>()?;
    let g = Guest {
        machine: Machine::Pc,
        memory: "256M".into(),
        accel: Accel::Tcg,
        kernel: PathBuf::new(),
        disk: Some(image.to_path_buf()),
        initrd: None,
        append: String::new(),
        nets,
        pcap_dir: None,
        fw_cfg,
        drives: Vec::new(),
    };
    let t0 = Instant::now();
    let mut child = g
        .command()?
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .context("start qemu-system-x86_64")?;
    let out = child
        .stdout
        .take()
        .ok_or_else(|| anyhow!("no QEMU stdout"))?;
    let (tx, rx) = std::sync::mpsc::channel();
    let tag = format!("{vnf} ready");
    std::thread::spawn(move || {
        for line in BufReader::new(out).lines().map_while(Result::ok) {
            if tx.send(line).is_err() {
                break;
            }
        }
    });
    let mut ready = None;
    let mut day0_line = None;
    let day0_tag = format!("config: fw_cfg {}", u.kpi.day0.fw_cfg);
    let mut last = String::new();
    while t0.elapsed() < Duration::from_secs(timeout) {
        match rx.recv_timeout(Duration::from_millis(200)) {
            Ok(l) if l.contains(&tag) => {
                ready = Some(l);
                break;
            }
            Ok(l) if l.contains(&day0_tag) => day0_line = Some(l),
            Ok(l) => last = l,
            Err(std::sync::mpsc::RecvTimeoutError::Timeout) => {}
            Err(_) => break,
        }
    }
    let seconds = t0.elapsed().as_secs_f64();
    let _ = child.kill();
    let _ = child.wait();
    if ready.is_none() {
        bail!(
            "image boot: no `{tag}` line on the console within {timeout} s (last line: {last:?})"
        );
    }
    if day0_line.is_none() {
        bail!(
            "image boot: the guest did not say `{day0_tag}`: it did not take the package's day-0"
        );
    }
    Ok(ImageBoot {
        booted: true,
        image: image.display().to_string(),
        day0: format!("fw_cfg {}", u.kpi.day0.fw_cfg),
        ready_line: ready,
        day0_line,
        seconds,
    })
}

/// Sums every sample of each family in Prometheus text.
fn families(text: &str) -> BTreeMap<String, f64> {
    let mut m = BTreeMap::new();
    for l in text.lines().filter(|l| !l.starts_with('#')) {
        let name_end = l.find(['{', ' ']).unwrap_or(l.len());
        let Some(v) = l.rsplit(' ').next().and_then(|v| v.parse::<f64>().ok()) else {
            continue;
        };
        *m.entry(l[..name_end].to_string()).or_insert(0.0) += v;
    }
    m
}

/// Runs `testbed onboard`.
pub fn main(a: OnboardArgs) -> Result<()> {
    let header = pktgen::meta::Header::start("testbed.onboard", 1);
    let bins = bin_dir(&a)?;
    // 1. Validate.
    let descriptors = bins.join("descriptors");
    if !descriptors.is_file() {
        bail!(
            "validate: no descriptors binary in {} (cargo build -p descriptors, or --bin-dir)",
            bins.display()
        );
    }
    let v = Command::new(&descriptors)
        .arg("validate")
        .arg(&a.package)
        .output()
        .context("run descriptors validate")?;
    if !v.status.success() {
        let why = String::from_utf8_lossy(&v.stderr);
        bail!(
            "validate: {}",
            why.lines().next().unwrap_or("descriptors validate failed")
        );
    }
    // 2. Unpack.
    let tmp = std::env::temp_dir().join(format!("tb-onboard-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&tmp);
    std::fs::create_dir_all(&tmp)?;
    let r = run(&a, &bins, &tmp);
    let _ = std::fs::remove_dir_all(&tmp);
    let body = r?;
    if a.json {
        println!("{}", header.json(&body)?);
    } else {
        print!("{}", human(&body));
    }
    Ok(())
}

fn human(v: &Value) -> String {
    let mut s = format!(
        "onboard {} ({}, vnf {}): validated {}, image boot {}, instantiated {} as a {}, healthy {}, terminated {}\n",
        v["package"].as_str().unwrap_or(""),
        v["format"].as_str().unwrap_or(""),
        v["vnf"].as_str().unwrap_or(""),
        v["validated"],
        v["image_boot"]["booted"],
        v["instantiated"],
        v["platform"].as_str().unwrap_or(""),
        v["healthy"],
        v["terminated"],
    );
    if let Some(k) = v["kpis"].as_object() {
        for (name, val) in k {
            s.push_str(&format!("  kpi {name} = {val}\n"));
        }
    }
    if let Some(d) = v["drain"].as_str() {
        s.push_str(&format!("  drain: {d}\n"));
    }
    s
}

fn run(a: &OnboardArgs, bins: &Path, tmp: &Path) -> Result<Value> {
    let u = unpack(&a.package, &tmp.join("pkg"))?;
    let vnf = u.kpi.vnf.clone();
    // 3. The software image under QEMU with day-0 as the package says.
    let image = match (&a.image, &u.image) {
        (Some(p), _) => p.clone(),
        (None, Some(p)) => p.clone(),
        (None, None) => crate::image::images_dir().join(format!("{vnf}.qcow2")),
    };
    let platform = match (a.platform.as_str(), vnf.as_str()) {
        ("auto", "router") | ("guest", _) => "guest",
        _ => "process",
    };
    if platform == "guest" {
        if a.no_boot {
            bail!("--no-boot: the guest platform boots the image (use --platform process)");
        }
        if !image.is_file() {
            bail!("image: {} does not exist", image.display());
        }
        return run_on_guest(a, &u, &image, tmp);
    }
    let image_boot = if a.no_boot {
        json!({"booted": false, "skipped": "--no-boot"})
    } else {
        if !image.is_file() {
            bail!("image: {} does not exist", image.display());
        }
        serde_json::to_value(boot_image(&u, &image, a.boot_timeout, tmp)?)?
    };
    // 4. Instantiate: the process, its CPs wired to veths in namespaces.
    let lab = Lab::new("onb")?;
    let ns = lab.netns("vnf")?;
    let peer = lab.netns("peer")?;
    lab.veth(&ns, "access", &peer, "access-p")?;
    lab.veth(&ns, "core", &peer, "core-p")?;
    let mut cmd: Vec<String> = u
        .kpi
        .day0
        .process_command
        .replace(&u.kpi.day0.install_path, &u.day0.to_string_lossy())
        .split_whitespace()
        .map(str::to_string)
        .collect();
    let Some(first) = cmd.first_mut() else {
        bail!("the package names no process command");
    };
    let bin = bins.join(first.as_str());
    if !bin.is_file() {
        bail!(
            "instantiate: no {} binary in {} (cargo build -p {}, or --bin-dir)",
            first,
            bins.display(),
            if vnf == "router" { "vnf-router" } else { &vnf }
        );
    }
    *first = bin.to_string_lossy().to_string();
    let log = tmp.join(format!("{vnf}.log"));
    let argv: Vec<&str> = cmd.iter().map(String::as_str).collect();
    let pid = lab.spawn(&ns, &argv, Some(&log))?;
    let alive = || Path::new(&format!("/proc/{pid}")).exists();
    // 5. Health check: the package's own script.
    let health = u.scripts.join("health-check.sh");
    let h = Command::new("ip")
        .args(["netns", "exec", &ns, "sh"])
        .arg(&health)
        .args(["127.0.0.1", "30"])
        .output()
        .with_context(|| format!("run {}", health.display()))?;
    let healthy = h.status.success();
    if !healthy {
        let mut why = String::new();
        let _ = std::fs::File::open(&log).and_then(|mut f| f.read_to_string(&mut why));
        bail!(
            "health check failed ({}): {}",
            String::from_utf8_lossy(&h.stderr).trim(),
            why.lines().last().unwrap_or("the VNF printed nothing")
        );
    }
    // 6. KPIs from the package's monitoring parameters.
    let url = format!(
        "http://127.0.0.1:{}{}",
        u.kpi.management.port, u.kpi.management.metrics_path
    );
    let text = lab.exec(&ns, &["curl", "-sf", &url])?;
    let fam = families(&text);
    let mut kpis = serde_json::Map::new();
    for k in &u.kpi.kpis {
        let Some(v) = fam.get(&k.metric) else {
            bail!(
                "KPI {}: the VNF does not export {} on {url}",
                k.id,
                k.metric
            );
        };
        kpis.insert(k.id.clone(), json!(v));
    }
    // The RESTCONF state the health check read, once more for the report.
    let state_url = format!(
        "http://127.0.0.1:{}{}",
        u.kpi.management.port, u.kpi.management.health_path
    );
    let state: Value =
        serde_json::from_str(&lab.exec(&ns, &["curl", "-sf", &state_url])?).unwrap_or(Value::Null);
    // A day-2 operation of the package (the read-only one): its script calls the API.
    let get_state = u.scripts.join("day2/get-state.sh");
    let day2 = if get_state.is_file() {
        let g = Command::new("ip")
            .args(["netns", "exec", &ns, "sh"])
            .arg(&get_state)
            .arg("127.0.0.1")
            .output()?;
        if !g.status.success() {
            bail!(
                "day-2 operation get-state failed: {}",
                String::from_utf8_lossy(&g.stderr).trim()
            );
        }
        let v: Value = serde_json::from_slice(&g.stdout).unwrap_or(Value::Null);
        json!({"get-state": if v.is_object() { "ok" } else { "not JSON" }})
    } else {
        Value::Null
    };
    // 7. Drain if declared, then terminate.
    let drain_script = u.scripts.join("drain.sh");
    let drain = if drain_script.is_file() {
        let d = Command::new("ip")
            .args(["netns", "exec", &ns, "sh"])
            .arg(&drain_script)
            .arg("127.0.0.1")
            .output()?;
        if !d.status.success() {
            bail!(
                "drain.sh failed: {}",
                String::from_utf8_lossy(&d.stderr).trim()
            );
        }
        Value::String(String::from_utf8_lossy(&d.stdout).trim().to_string())
    } else {
        Value::Null
    };
    let instantiated = alive();
    drop(lab);
    let t = Instant::now();
    while alive() && t.elapsed() < Duration::from_secs(5) {
        std::thread::sleep(Duration::from_millis(50));
    }
    let ns_gone = !sh(&["ip", "netns", "list"])?.contains(&ns);
    Ok(json!({
        "package": a.package.display().to_string(),
        "format": u.format,
        "vnf": vnf,
        "validated": true,
        "platform": "process",
        "platform_note": "the unikernel image is booted under QEMU to its ready line with its \
                          day-0, and the package's Linux process (the VNF binary) is the \
                          instance whose health, KPIs and drain are checked (--platform guest \
                          checks the image itself)",
        "image_boot": image_boot,
        "instantiated": instantiated,
        "healthy": healthy,
        "health_output": String::from_utf8_lossy(&h.stdout).trim(),
        "kpis": kpis,
        "state": state,
        "drain": drain,
        "day2": day2,
        "scale": "scaling aspects are declared in the package; one instance runs here, none is added",
        "terminated": !alive() && ns_gone,
    }))
}

/// The management address of the guest from its day-0 TOML, as the image places its
/// host stack by default: (port, guest address, prefix length). The router: port 0,
/// interface 0's first IPv4 address; the vBNG: the core port (1) at `core_ip`.
fn guest_mgmt(vnf: &str, day0: &Path) -> Result<(usize, std::net::Ipv4Addr, u8)> {
    let text = std::fs::read_to_string(day0).with_context(|| format!("read {}", day0.display()))?;
    let t: toml::Table = text
        .parse()
        .map_err(|e: toml::de::Error| anyhow!("day-0 {}: {}", day0.display(), e.message()))?;
    let (port, net) = match vnf {
        "router" => (
            0,
            t.get("interface")
                .and_then(|i| i.get(0))
                .and_then(|i| i.get("ipv4"))
                .and_then(|a| a.get(0))
                .and_then(|a| a.as_str()),
        ),
        "vbng" => (1, t.get("core_ip").and_then(|a| a.as_str())),
        other => bail!("guest platform: no management address rule for {other}"),
    };
    let net = net.ok_or_else(|| anyhow!("day-0: no IPv4 address for the guest's host stack"))?;
    let (a, l) = net
        .split_once('/')
        .ok_or_else(|| anyhow!("day-0: {net} is not ADDR/LEN"))?;
    let ip: std::net::Ipv4Addr = a.parse().map_err(|_| anyhow!("day-0: bad address {a}"))?;
    let len: u8 = l
        .parse()
        .map_err(|_| anyhow!("day-0: bad prefix length {l}"))?;
    if !(8..=30).contains(&len) {
        bail!("day-0: /{len} leaves no room for a host on the management link");
    }
    Ok((port, ip, len))
}

/// A host address on the guest's management subnet: the last usable one that is not
/// the guest's.
fn host_side(guest: std::net::Ipv4Addr, len: u8) -> std::net::Ipv4Addr {
    let mask = u32::MAX << (32 - u32::from(len));
    let bcast = (u32::from(guest) & mask) | !mask;
    let pick = if bcast - 1 == u32::from(guest) {
        bcast - 2
    } else {
        bcast - 1
    };
    std::net::Ipv4Addr::from(pick)
}

/// Platform `guest`: the booted image is the instance. Its NICs are taps in the VNF's
/// namespace (QEMU runs there), the management NIC's tap gets an address on the
/// guest's management subnet, and the package's health check, KPI scrape and day-2
/// get-state run in that namespace against the guest's own host stack.
fn run_on_guest(a: &OnboardArgs, u: &Unpacked, image: &Path, tmp: &Path) -> Result<Value> {
    use crate::image::{Accel, Guest, Machine, NetSpec};
    let vnf = u.kpi.vnf.as_str();
    let (mport, gip, len) = guest_mgmt(vnf, &u.day0)?;
    let hip = host_side(gip, len);
    let lab = Lab::new("onb")?;
    let ns = lab.netns("vnf")?;
    let taps = ["uk-access", "uk-core"];
    for t in taps {
        lab.tap(&ns, t)?;
    }
    let mut fw_cfg = vec![(u.kpi.day0.fw_cfg.clone(), u.day0.clone())];
    if vnf == "vbng" {
        let seed = tmp.join("guest-entropy.seed");
        crate::image::write_host_seed(&seed)?;
        fw_cfg.push((crate::image::FWCFG_ENTROPY.to_string(), seed));
    }
    let g = Guest {
        machine: Machine::Pc,
        memory: "256M".into(),
        accel: Accel::Tcg,
        kernel: PathBuf::new(),
        disk: Some(image.to_path_buf()),
        initrd: None,
        append: String::new(),
        nets: taps
            .iter()
            .enumerate()
            .map(|(i, t)| NetSpec::Tap {
                ifname: t.to_string(),
                mac: format!("02:00:00:00:0c:{:02x}", i + 1),
            })
            .collect(),
        pcap_dir: None,
        fw_cfg,
        drives: Vec::new(),
    };
    let qemu = g.command()?;
    let mut argv: Vec<String> = vec![qemu.get_program().to_string_lossy().to_string()];
    argv.extend(qemu.get_args().map(|x| x.to_string_lossy().to_string()));
    let argv: Vec<&str> = argv.iter().map(String::as_str).collect();
    let console = tmp.join(format!("{vnf}-guest.log"));
    let t0 = Instant::now();
    let pid = lab.spawn(&ns, &argv, Some(&console))?;
    let alive = || Path::new(&format!("/proc/{pid}")).exists();
    let tag = format!("{vnf} ready");
    let read_console = || std::fs::read_to_string(&console).unwrap_or_default();
    let ready = loop {
        if let Some(l) = read_console().lines().find(|l| l.contains(&tag)) {
            break l.to_string();
        }
        if !alive() {
            bail!(
                "instantiate: the guest stopped before `{tag}` (last line: {:?})",
                read_console().lines().last().unwrap_or("")
            );
        }
        if t0.elapsed() > Duration::from_secs(a.boot_timeout) {
            bail!("instantiate: no `{tag}` line within {} s", a.boot_timeout);
        }
        std::thread::sleep(Duration::from_millis(100));
    };
    let boot_s = t0.elapsed().as_secs_f64();
    let day0_tag = format!("config: fw_cfg {}", u.kpi.day0.fw_cfg);
    let Some(day0_line) = read_console()
        .lines()
        .find(|l| l.contains(&day0_tag))
        .map(str::to_string)
    else {
        bail!(
            "instantiate: the guest did not say `{day0_tag}`: it did not take the package's day-0"
        );
    };
    let mgmt_tap = taps.get(mport).copied().unwrap_or(taps[0]);
    sh(&[
        "ip",
        "-n",
        &ns,
        "addr",
        "add",
        &format!("{hip}/{len}"),
        "dev",
        mgmt_tap,
    ])?;
    let host = gip.to_string();
    // 5. Health check: the package's own script, against the guest.
    let health = u.scripts.join("health-check.sh");
    let h = Command::new("ip")
        .args(["netns", "exec", &ns, "sh"])
        .arg(&health)
        .args([host.as_str(), "30"])
        .output()
        .with_context(|| format!("run {}", health.display()))?;
    let healthy = h.status.success();
    if !healthy {
        bail!(
            "health check against the guest at {host} failed ({}): console: {}",
            String::from_utf8_lossy(&h.stderr).trim(),
            read_console().lines().last().unwrap_or("")
        );
    }
    // 6. KPIs from the guest's /metrics.
    let url = format!(
        "http://{host}:{}{}",
        u.kpi.management.port, u.kpi.management.metrics_path
    );
    let text = lab.exec(&ns, &["curl", "-sf", "-m", "10", &url])?;
    let fam = families(&text);
    let mut kpis = serde_json::Map::new();
    for k in &u.kpi.kpis {
        let Some(v) = fam.get(&k.metric) else {
            bail!(
                "KPI {}: the guest does not export {} on {url}",
                k.id,
                k.metric
            );
        };
        kpis.insert(k.id.clone(), json!(v));
    }
    let state_url = format!(
        "http://{host}:{}{}",
        u.kpi.management.port, u.kpi.management.health_path
    );
    let state: Value =
        serde_json::from_str(&lab.exec(&ns, &["curl", "-sf", "-m", "10", &state_url])?)
            .unwrap_or(Value::Null);
    let get_state = u.scripts.join("day2/get-state.sh");
    let day2 = if get_state.is_file() {
        let g = Command::new("ip")
            .args(["netns", "exec", &ns, "sh"])
            .arg(&get_state)
            .arg(&host)
            .output()?;
        if !g.status.success() {
            bail!(
                "day-2 operation get-state against the guest failed: {}",
                String::from_utf8_lossy(&g.stderr).trim()
            );
        }
        let v: Value = serde_json::from_slice(&g.stdout).unwrap_or(Value::Null);
        json!({"get-state": if v.is_object() { "ok" } else { "not JSON" }})
    } else {
        Value::Null
    };
    // 8. Drain if declared: the package's script calls the guest's RESTCONF RPC,
    // and the guest's state must say it drains.
    let drain_script = u.scripts.join("drain.sh");
    let drain = if drain_script.is_file() {
        let d = Command::new("ip")
            .args(["netns", "exec", &ns, "sh"])
            .arg(&drain_script)
            .arg(&host)
            .output()?;
        if !d.status.success() {
            bail!(
                "drain.sh against the guest failed: {}",
                String::from_utf8_lossy(&d.stderr).trim()
            );
        }
        let after: Value =
            serde_json::from_str(&lab.exec(&ns, &["curl", "-sf", "-m", "10", &state_url])?)
                .unwrap_or(Value::Null);
        let draining = after
            .as_object()
            .and_then(|o| o.values().next())
            .and_then(|st| st.get("draining"));
        if draining.is_some_and(|d| d != &Value::Bool(true)) {
            bail!("drain.sh ran but the guest's state does not say it drains");
        }
        Value::String(String::from_utf8_lossy(&d.stdout).trim().to_string())
    } else {
        Value::Null
    };
    let instantiated = alive();
    // 9. Terminate: the guest is stopped with the lab (its namespace and taps go too).
    drop(lab);
    let t = Instant::now();
    while alive() && t.elapsed() < Duration::from_secs(5) {
        std::thread::sleep(Duration::from_millis(50));
    }
    let ns_gone = !sh(&["ip", "netns", "list"])?.contains(&ns);
    Ok(json!({
        "package": a.package.display().to_string(),
        "format": u.format,
        "vnf": vnf,
        "validated": true,
        "platform": "guest",
        "platform_note": "the booted image is the instance: health check, KPIs, day-2 \
                          get-state and the drain ran against its host network stack over its \
                          NIC (a tap in the VNF's namespace)",
        "image_boot": ImageBoot {
            booted: true,
            image: image.display().to_string(),
            day0: day0_tag.trim_start_matches("config: ").to_string(),
            ready_line: Some(ready),
            day0_line: Some(day0_line),
            seconds: boot_s,
        },
        "mgmt": format!("{host}/{len} on NIC {mport} ({mgmt_tap}), host side {hip}"),
        "instantiated": instantiated,
        "healthy": healthy,
        "health_output": String::from_utf8_lossy(&h.stdout).trim(),
        "kpis": kpis,
        "state": state,
        "drain": drain,
        "day2": day2,
        "scale": "scaling aspects are declared in the package; one instance runs here, none is added",
        "terminated": !alive() && ns_gone,
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn host_side_is_the_last_free_address_of_the_subnet() {
        let a = |s: &str| s.parse::<std::net::Ipv4Addr>().unwrap();
        assert_eq!(host_side(a("192.0.2.1"), 24), a("192.0.2.254"));
        assert_eq!(host_side(a("192.0.2.254"), 24), a("192.0.2.253"));
        assert_eq!(host_side(a("10.0.0.1"), 30), a("10.0.0.2"));
        assert_eq!(host_side(a("10.0.0.2"), 30), a("10.0.0.1"));
    }

    #[test]
    fn guest_mgmt_follows_the_images_default_place() {
        let d = std::env::temp_dir().join(format!("onb-mgmt-{}", std::process::id()));
        std::fs::create_dir_all(&d).unwrap();
        let r = d.join("router.toml");
        std::fs::write(
            &r,
            "[[interface]]\nname = \"a\"\nipv4 = [\"192.0.2.1/24\"]\n",
        )
        .unwrap();
        let (port, ip, len) = guest_mgmt("router", &r).unwrap();
        assert_eq!(
            (port, ip.to_string(), len),
            (0, "192.0.2.1".to_string(), 24)
        );
        let v = d.join("vbng.toml");
        std::fs::write(&v, "core_ip = \"198.51.100.1/24\"\n").unwrap();
        let (port, ip, _) = guest_mgmt("vbng", &v).unwrap();
        assert_eq!((port, ip.to_string()), (1, "198.51.100.1".to_string()));
        std::fs::write(&v, "name = \"x\"\n").unwrap();
        assert!(guest_mgmt("vbng", &v).is_err());
        std::fs::write(
            &r,
            "[[interface]]\nname = \"a\"\nipv4 = [\"192.0.2.1/31\"]\n",
        )
        .unwrap();
        assert!(guest_mgmt("router", &r).is_err());
        let _ = std::fs::remove_dir_all(&d);
    }
}
