//! The namespace lab: taps in two network namespaces, the unikernel router between
//! them, UDP sent through it and counted on the far side.

use super::*;
use std::sync::mpsc;

pub struct LabOpts {
    pub seconds: f64,
    pub size: usize,
    pub pps: u64,
    /// PPPoE subscribers (the vBNG's lab).
    pub sessions: u32,
    /// (vbng) RADIUS on the host's loopback: auth on this port, accounting on the next.
    pub radius: Option<u16>,
    /// (vbng) Its shared secret.
    pub radius_secret: String,
    pub machine: Machine,
    pub memory: String,
    pub no_build: bool,
}

pub(super) const ROUTER_MAC: [&str; 2] = ["02:00:00:00:01:01", "02:00:00:00:02:01"];
pub(super) const HOST_MAC: [&str; 2] = ["02:00:00:00:0a:02", "02:00:00:00:0b:02"];
pub(super) const ROUTER_IP: [&str; 2] = ["10.61.1.1", "10.61.2.1"];
pub(super) const HOST_IP: [&str; 2] = ["10.61.1.2", "10.61.2.2"];
pub(super) const UDP_PORT: u16 = 9999;

/// The router config of the lab (handed to the guest as a boot module).
pub fn router_config() -> String {
    let mut t = String::from("[engine]\npool_buffers = 2048\n");
    for i in 0..2 {
        t += &format!(
            "\n[[interface]]\nname = \"lab{i}\"\nmac = \"{}\"\nipv4 = [\"{}/24\"]\n",
            ROUTER_MAC[i], ROUTER_IP[i]
        );
    }
    for i in 0..2 {
        t += &format!(
            "\n[[neighbor]]\nip = \"{}\"\nmac = \"{}\"\n",
            HOST_IP[i], HOST_MAC[i]
        );
    }
    t
}

fn ip(args: &[&str]) -> Result<()> {
    let out = Command::new("ip")
        .args(args)
        .output()
        .context("run ip(8)")?;
    if !out.status.success() {
        bail!(
            "ip {}: {}",
            args.join(" "),
            String::from_utf8_lossy(&out.stderr).trim()
        );
    }
    Ok(())
}

/// Namespaces, taps and the guest; torn down on drop.
struct Lab {
    ns: [String; 2],
    taps: [String; 2],
    guest: Option<Child>,
    dir: PathBuf,
}

impl Drop for Lab {
    fn drop(&mut self) {
        if let Some(mut g) = self.guest.take() {
            let _ = g.kill();
            let _ = g.wait();
        }
        for n in &self.ns {
            let _ = Command::new("ip").args(["netns", "del", n]).output();
        }
        for t in &self.taps {
            let _ = Command::new("ip").args(["link", "del", t]).output();
        }
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

pub(super) fn parse_counter(line: &str, key: &str) -> Option<u64> {
    let rest = line.split(key).nth(1)?;
    rest.split_whitespace().next()?.parse().ok()
}

pub fn run(vnf: &str, o: &LabOpts) -> Result<()> {
    if vnf == "vbng" {
        return super::lab_vbng::run(o);
    }
    if vnf == "vcpe" {
        return super::lab_vcpe::run(o);
    }
    // Version 2: `machine` is the report header's (the host); the QEMU machine type
    // moved to `qemu_machine`.
    let header = pktgen::meta::Header::start("testbed.image.lab", 2);
    if vnf != "router" {
        bail!("image lab: no lab for VNF `{vnf}` (router, vbng, vcpe)");
    }
    // SAFETY: geteuid has no preconditions.
    if unsafe { libc::geteuid() } != 0 {
        bail!("image lab needs root (network namespaces and tap devices)");
    }
    need_tool("ip", "iproute2")?;
    if !o.no_build {
        build(vnf, None, false, &images_dir())?;
    }
    let id = std::process::id();
    let dir = std::env::temp_dir().join(format!("uk-lab-{id}"));
    std::fs::create_dir_all(&dir)?;
    let mut lab = Lab {
        ns: [format!("uk{id}a"), format!("uk{id}b")],
        taps: [format!("uk{id}ta"), format!("uk{id}tb")],
        guest: None,
        dir: dir.clone(),
    };
    for t in &lab.taps {
        ip(&["tuntap", "add", "dev", t, "mode", "tap"])?;
    }
    for n in &lab.ns {
        ip(&["netns", "add", n])?;
    }
    let cfg = dir.join("router.toml");
    std::fs::write(&cfg, router_config())?;
    let guest = Guest {
        machine: o.machine,
        memory: o.memory.clone(),
        accel: Accel::Auto,
        kernel: images_dir().join(format!("{vnf}.elf")),
        disk: None,
        initrd: Some(cfg),
        append: "stats=500".into(),
        nets: (0..2)
            .map(|i| NetSpec::Tap {
                ifname: lab.taps[i].clone(),
                mac: ROUTER_MAC[i].into(),
            })
            .collect(),
        pcap_dir: None,
        drives: Vec::new(),
        fw_cfg: Vec::new(),
    };
    let mut child = guest
        .command()?
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .spawn()?;
    let stdout = child
        .stdout
        .take()
        .ok_or_else(|| anyhow!("no QEMU stdout"))?;
    lab.guest = Some(child);
    let (tx, rx) = mpsc::channel::<String>();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines().map_while(|l| l.ok()) {
            println!("guest| {line}");
            if tx.send(line).is_err() {
                break;
            }
        }
    });
    let ready = format!("{vnf} ready");
    let deadline = Instant::now() + Duration::from_secs(120);
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        match rx.recv_timeout(left) {
            Ok(l) if l.contains(&ready) => break,
            Ok(l) if l.contains("FATAL") || l.contains("PANIC") => bail!("guest failed: {l}"),
            Ok(_) => {}
            Err(_) => bail!("no `{ready}` line from the guest within 120 s"),
        }
    }
    // The guest holds the taps open; move each into its namespace and address it.
    for i in 0..2 {
        let (ns, tap) = (&lab.ns[i], &lab.taps[i]);
        ip(&["link", "set", tap, "netns", ns])?;
        ip(&["-n", ns, "link", "set", tap, "address", HOST_MAC[i], "up"])?;
        ip(&[
            "-n",
            ns,
            "addr",
            "add",
            &format!("{}/24", HOST_IP[i]),
            "dev",
            tap,
        ])?;
        ip(&["-n", ns, "route", "add", "default", "via", ROUTER_IP[i]])?;
        ip(&[
            "-n",
            ns,
            "neigh",
            "replace",
            ROUTER_IP[i],
            "lladdr",
            ROUTER_MAC[i],
            "dev",
            tap,
        ])?;
    }
    let me = std::env::current_exe()?;
    let sink = Command::new("ip")
        .args(["netns", "exec", &lab.ns[1]])
        .arg(&me)
        .args([
            "image",
            "sink-raw",
            "--iface",
            &lab.taps[1],
            "--port",
            &UDP_PORT.to_string(),
        ])
        .args(["--seconds", &format!("{}", o.seconds + 1.5)])
        .args([
            "--src-mac",
            ROUTER_MAC[1],
            "--dst-mac",
            HOST_MAC[1],
            "--ttl",
            "63",
        ])
        .stdout(Stdio::piped())
        .spawn()
        .context("start the sink")?;
    std::thread::sleep(Duration::from_millis(500));
    let gen = Command::new("ip")
        .args(["netns", "exec", &lab.ns[0]])
        .arg(&me)
        .args([
            "image",
            "gen-udp",
            "--dst",
            &format!("{}:{UDP_PORT}", HOST_IP[1]),
        ])
        .args([
            "--seconds",
            &o.seconds.to_string(),
            "--size",
            &o.size.to_string(),
        ])
        .args(["--pps", &o.pps.to_string()])
        .output()
        .context("run the generator")?;
    if !gen.status.success() {
        bail!("generator failed: {}", String::from_utf8_lossy(&gen.stderr));
    }
    let sink = sink.wait_with_output()?;
    if !sink.status.success() {
        bail!("sink failed: {}", String::from_utf8_lossy(&sink.stderr));
    }
    let g: serde_json::Value = serde_json::from_slice(&gen.stdout).context("generator output")?;
    let k: serde_json::Value = serde_json::from_slice(&sink.stdout).context("sink output")?;
    // The guest's counters once the traffic is over (stats every 500 ms): read until
    // two consecutive reports agree.
    let (mut rx0, mut tx1, mut prev) = (None, None, None);
    let until = Instant::now() + Duration::from_secs(10);
    while Instant::now() < until {
        let Ok(l) = rx.recv_timeout(Duration::from_millis(200)) else {
            continue;
        };
        if l.contains("port 0:") {
            rx0 = parse_counter(&l, "rx ");
        }
        if l.contains("port 1:") {
            tx1 = parse_counter(&l, "tx ");
            if prev.is_some() && prev == Some((rx0, tx1)) {
                break;
            }
            prev = Some((rx0, tx1));
        }
    }
    let result = serde_json::json!({
        "qemu_machine": o.machine.qemu_name(),
        "payload": o.size,
        "seconds": o.seconds,
        "generator": g,
        "sink": k,
        "guest_port0_rx": rx0,
        "guest_port1_tx": tx1,
    });
    println!("lab result: {}", header.json(&result)?);
    let good = result["sink"]["good"].as_u64().unwrap_or(0);
    if good == 0 {
        bail!(
            "lab failed: none of the {} datagrams sent came through the guest",
            result["generator"]["sent"].as_u64().unwrap_or(0)
        );
    }
    Ok(())
}

/// Generator: UDP datagrams from this namespace's stack.
pub fn gen_udp(dst: std::net::SocketAddr, seconds: f64, size: usize, pps: u64) -> Result<()> {
    let s = std::net::UdpSocket::bind("0.0.0.0:0")?;
    s.connect(dst)?;
    let payload = vec![0x5au8; size];
    let t0 = Instant::now();
    let dur = Duration::from_secs_f64(seconds);
    let mut sent = 0u64;
    let mut errors = 0u64;
    while t0.elapsed() < dur {
        if pps > 0 {
            let due = (t0.elapsed().as_secs_f64() * pps as f64) as u64;
            if sent >= due {
                std::thread::sleep(Duration::from_micros(50));
                continue;
            }
        }
        match s.send(&payload) {
            Ok(_) => sent += 1,
            Err(_) => errors += 1,
        }
    }
    let secs = t0.elapsed().as_secs_f64();
    println!(
        "{}",
        serde_json::json!({"sent": sent, "errors": errors, "seconds": secs, "pps": sent as f64 / secs})
    );
    Ok(())
}

fn parse_mac(s: &str) -> Result<[u8; 6]> {
    let m: dataplane::proto::ethernet::MacAddr = s.parse().with_context(|| format!("MAC {s:?}"))?;
    Ok(m.0)
}

/// Sink: every frame on `iface`, checking routed UDP to `port`.
pub fn sink_raw(iface: &str, port: u16, seconds: f64, src: &str, dst: &str, ttl: u8) -> Result<()> {
    let (src, dst) = (parse_mac(src)?, parse_mac(dst)?);
    let name = std::ffi::CString::new(iface)?;
    // SAFETY: plain libc calls with valid arguments; the fd is closed at the end.
    let fd = unsafe {
        libc::socket(
            libc::AF_PACKET,
            libc::SOCK_RAW,
            (libc::ETH_P_ALL as u16).to_be() as i32,
        )
    };
    if fd < 0 {
        bail!("AF_PACKET socket: {}", std::io::Error::last_os_error());
    }
    // SAFETY: name is a valid C string.
    let ifindex = unsafe { libc::if_nametoindex(name.as_ptr()) };
    if ifindex == 0 {
        bail!("no interface {iface}");
    }
    // SAFETY: sockaddr_ll is plain data; zeroed is a valid value.
    let mut sll: libc::sockaddr_ll = unsafe { std::mem::zeroed() };
    sll.sll_family = libc::AF_PACKET as u16;
    sll.sll_protocol = (libc::ETH_P_ALL as u16).to_be();
    sll.sll_ifindex = ifindex as i32;
    let tv = libc::timeval {
        tv_sec: 0,
        tv_usec: 100_000,
    };
    // SAFETY: pointers to live locals with their exact sizes.
    unsafe {
        if libc::bind(
            fd,
            &sll as *const _ as *const libc::sockaddr,
            std::mem::size_of::<libc::sockaddr_ll>() as u32,
        ) != 0
        {
            bail!("bind {iface}: {}", std::io::Error::last_os_error());
        }
        libc::setsockopt(
            fd,
            libc::SOL_SOCKET,
            libc::SO_RCVTIMEO,
            &tv as *const _ as *const libc::c_void,
            std::mem::size_of::<libc::timeval>() as u32,
        );
    }
    let (mut good, mut bad_mac, mut bad_ttl, mut bad_csum, mut other) =
        (0u64, 0u64, 0u64, 0u64, 0u64);
    let (mut first, mut last) = (None, None);
    let mut buf = [0u8; 2048];
    let t0 = Instant::now();
    while t0.elapsed().as_secs_f64() < seconds {
        // SAFETY: buf is a live writable buffer of buf.len() bytes.
        let n = unsafe { libc::recv(fd, buf.as_mut_ptr() as *mut libc::c_void, buf.len(), 0) };
        if n <= 0 {
            continue;
        }
        let f = &buf[..n as usize];
        let is_udp = f.len() >= 42 && f[12..14] == [0x08, 0x00] && f[23] == 17;
        let dport = if is_udp {
            u16::from_be_bytes([f[36], f[37]])
        } else {
            0
        };
        if !is_udp || dport != port {
            other += 1;
            continue;
        }
        let now = t0.elapsed().as_secs_f64();
        first.get_or_insert(now);
        last = Some(now);
        let ihl = ((f[14] & 0x0f) as usize) * 4;
        let header_ok = f
            .get(14..14 + ihl)
            .is_some_and(dataplane::proto::checksum::verify);
        if f[0..6] != dst || f[6..12] != src {
            bad_mac += 1;
        } else if f[22] != ttl {
            bad_ttl += 1;
        } else if !header_ok {
            bad_csum += 1;
        } else {
            good += 1;
        }
    }
    // SAFETY: fd is ours.
    unsafe { libc::close(fd) };
    let span = match (first, last) {
        (Some(a), Some(b)) if b > a => b - a,
        _ => 0.0,
    };
    let pps = if span > 0.0 { good as f64 / span } else { 0.0 };
    println!(
        "{}",
        serde_json::json!({"good": good, "bad_mac": bad_mac, "bad_ttl": bad_ttl, "bad_checksum": bad_csum,
            "other": other, "span_seconds": span, "pps": pps})
    );
    Ok(())
}
