//! The vBNG unikernel's lab (`image lab vbng`, no root): the guest's two NICs are
//! QEMU UDP-socket netdevs on loopback (one Ethernet frame per datagram), this
//! process on the other end of each. On the access NIC the repository's PPPoE
//! subscriber emulator (`pktgen::subscribers::Emulator`, the `client::Subscriber`
//! machines) brings sessions up (discovery, LCP, PAP/CHAP against the guest's local
//! users, IPCP); then UDP flows both ways: each subscriber sends upstream frames
//! that must come out of the core NIC as plain IPv4 to the configured next hop, and
//! the core side sends frames to each subscriber's address that must come out of the
//! access NIC PPPoE-encapsulated to that subscriber. A third NIC (QEMU user
//! networking, guest 10.0.2.15, host 10.0.2.2) carries the guest's own traffic on
//! its host network stack: `/metrics` is scraped through a host port forward at the
//! end, and with `--radius PORT` the subscribers are authenticated and accounted by
//! a RADIUS server on the host's loopback (auth PORT, accounting PORT+1) instead of
//! local users. After the traffic the guest's RESTCONF API is probed through the
//! same forward ([`api_probe`]: hostile requests first, each must get its RFC 8040
//! error, then the `vbng:drain` RPC and the state that shows it; `api` in the
//! result). Prints one `lab result: {json}` line; fails when the guest does not
//! come up or reports an error.

use super::*;
use pktgen::subscribers::{index_of, Emulator, EmulatorConfig, VlanPlan};
use serde_json::{json, Value};
use std::net::UdpSocket;
use std::sync::mpsc;

/// The vBNG's access MAC (`mac` in the guest's config).
const BNG_MAC: &str = "02:00:00:00:b0:01";
/// MACs of the guest's NICs (access, core).
const NIC_MAC: [&str; 2] = ["02:00:00:00:0a:01", "02:00:00:00:0b:01"];
/// The core next hop (this process on the core NIC).
const CORE_HOP_MAC: [u8; 6] = [0x02, 0, 0, 0, 0xc0, 0x01];
/// Where the subscribers' upstream traffic goes (behind the core next hop).
const CORE_DST: u32 = u32::from_be_bytes([198, 51, 100, 10]);
/// Password of every lab user `user<i>` (local users, or the RADIUS server's with
/// `--radius`).
pub const PASSWORD: &str = "uk-lab-secret";

/// The lab's vBNG config: `n` local users, one pool, a static core next hop.
pub fn vbng_config(n: u32) -> String {
    let mut t = format!(
        "name = \"uk-lab\"\nmac = \"{BNG_MAC}\"\ngateway = \"100.64.0.1\"\n\
         dns = [\"192.0.2.53\"]\nauth = \"chap\"\nauth_fallback = \"pap\"\n\
         core_next_hop_mac = \"02:00:00:00:c0:01\"\ncore_ip = \"198.51.100.1/24\"\n\
         keepalive_interval_s = 30\n\n\
         [[pools]]\nname = \"default\"\nranges = [\"100.64.0.2-100.64.255.254\"]\n"
    );
    for i in 0..n {
        t += &format!("\n[[users]]\nname = \"user{i}\"\npassword = \"{PASSWORD}\"\n");
    }
    t
}

/// The lab's vBNG config with RADIUS instead of local users: the server at the
/// host's loopback `port` (auth) and `port + 1` (accounting), as the guest reaches
/// it through its management NIC (QEMU user networking: the host is 10.0.2.2).
pub fn vbng_config_radius(port: u16, secret: &str) -> String {
    let host = USER_NET_HOST;
    let mut t = vbng_config(0);
    t += &format!(
        "\n[radius]\nauth = [{{ addr = \"{host}:{port}\", secret = \"{secret}\" }}]\n\
         acct = [{{ addr = \"{host}:{}\", secret = \"{secret}\" }}]\n\
         timeout_ms = 2000\ntries = 3\nnas_ip = \"{USER_NET_GUEST}\"\ninterim_s = 0\n",
        port + 1
    );
    t
}

/// The management NIC's MAC, and the guest port of the vBNG's HTTP endpoint.
const MGMT_MAC: &str = "02:00:00:00:0c:01";
const HTTP_PORT: u16 = 9180;

/// A TCP port on the host's loopback that is free now.
fn free_tcp_port() -> Result<u16> {
    let l = std::net::TcpListener::bind("127.0.0.1:0").context("bind a TCP port")?;
    Ok(l.local_addr()?.port())
}

/// Families and values of a Prometheus text that the lab reports: every sample of
/// `vbng_sessions`, `vbng_auth_total`, `vbng_radius_total`, `dp_worker_rx_packets_total`.
fn pick_metrics(text: &str) -> serde_json::Map<String, serde_json::Value> {
    let mut m = serde_json::Map::new();
    for l in text.lines().filter(|l| !l.starts_with('#')) {
        let Some((name, v)) = l.rsplit_once(' ') else {
            continue;
        };
        let fam = name.split('{').next().unwrap_or(name);
        if matches!(
            fam,
            "vbng_sessions"
                | "vbng_auth_total"
                | "vbng_radius_total"
                | "dp_worker_rx_packets_total"
        ) {
            if let Ok(v) = v.parse::<f64>() {
                m.insert(name.to_string(), serde_json::json!(v));
            }
        }
    }
    m
}

/// Frames seen in one direction.
#[derive(Default, serde::Serialize)]
struct Flow {
    sent: u64,
    received: u64,
    /// Received but not what was sent (wrong MAC, address or encapsulation).
    bad: u64,
}

/// The guest and its console; the guest is killed on drop.
struct GuestProc {
    child: Child,
    lines: mpsc::Receiver<String>,
    dir: PathBuf,
}

impl Drop for GuestProc {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

impl GuestProc {
    /// Wait for a console line containing `tag`; errors on FATAL/PANIC or timeout.
    fn wait_for(&self, tag: &str, secs: u64) -> Result<String> {
        let deadline = Instant::now() + Duration::from_secs(secs);
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.lines.recv_timeout(left) {
                Ok(l) if l.contains(tag) => return Ok(l),
                Ok(l) if l.contains("FATAL") || l.contains("PANIC") => {
                    bail!("guest failed: {l}")
                }
                Ok(_) => {}
                Err(_) => bail!("no `{tag}` line from the guest within {secs} s"),
            }
        }
    }
}

fn bind_pair(port: u16) -> Result<UdpSocket> {
    let s = UdpSocket::bind(("127.0.0.1", port)).with_context(|| format!("bind udp {port}"))?;
    s.set_nonblocking(true)?;
    s.connect(("127.0.0.1", port + 1))
        .with_context(|| format!("connect udp {}", port + 1))?;
    Ok(s)
}

/// Receive every datagram waiting on `s` into `f`.
fn drain(s: &UdpSocket, buf: &mut [u8], mut f: impl FnMut(&[u8])) -> usize {
    let mut n = 0;
    while let Ok(len) = s.recv(buf) {
        f(&buf[..len]);
        n += 1;
    }
    n
}

/// The ethertype after any 802.1Q/802.1ad tags and where its payload starts.
fn ethertype(f: &[u8]) -> Option<(u16, usize)> {
    let mut off = 12;
    loop {
        let t = u16::from_be_bytes([*f.get(off)?, *f.get(off + 1)?]);
        if t == 0x8100 || t == 0x88a8 {
            off += 4;
        } else {
            return Some((t, off + 2));
        }
    }
}

/// A PPPoE session frame carrying IPv4 (RFC 2516 §4, ethertype 0x8864; PPP 0x0021):
/// the offset of the IPv4 header.
fn pppoe_ipv4(f: &[u8]) -> Option<usize> {
    match ethertype(f)? {
        (0x8864, o) if f.get(o + 6..o + 8) == Some(&[0x00, 0x21][..]) => Some(o + 8),
        _ => None,
    }
}

/// A downstream frame as the guest must emit it: PPPoE session, PPP IPv4, to the
/// subscriber's MAC, on its C-VLAN (the emulator's own check of the tags is
/// skipped here; the address is the subscriber's).
fn downstream_ok(emu: &Emulator, f: &[u8], ip: usize) -> bool {
    let Some(i) = f.get(..6).and_then(index_of) else {
        return false;
    };
    let Some(c) = emu.client(i) else {
        return false;
    };
    f.get(ip) == Some(&0x45) && f.get(ip + 16..ip + 20) == Some(&c.ip().to_be_bytes()[..])
}

/// Run the lab: `sessions` subscribers, then `seconds` of traffic at `pps` frames/s
/// in each direction (spread over the sessions).
pub fn run(o: &lab::LabOpts) -> Result<()> {
    // The report header (schema, command, started, machine, commit) as every lab's;
    // the QEMU machine type is `qemu_machine`.
    let header = pktgen::meta::Header::start("testbed.image.lab.vbng", 1);
    let vnf = "vbng";
    if !o.no_build {
        build(vnf, None, false, &images_dir())?;
    }
    let n = o.sessions.max(1);
    let id = std::process::id();
    let dir = std::env::temp_dir().join(format!("uk-lab-vbng-{id}"));
    std::fs::create_dir_all(&dir)?;
    let cfg = dir.join("vbng.toml");
    std::fs::write(
        &cfg,
        match o.radius {
            Some(p) => vbng_config_radius(p, &o.radius_secret),
            None => vbng_config(n),
        },
    )?;
    if o.radius_secret.is_empty()
        || o.radius_secret
            .chars()
            .any(|c| c == '"' || c == '\\' || c.is_control())
    {
        bail!("--radius-secret: expected a non-empty secret without quotes, backslashes or control characters");
    }
    let http_fwd = free_tcp_port()?;
    let seed = dir.join("seed");
    write_host_seed(&seed)?;
    // Ports: host access = base, guest access = base+1; host core = base+2, guest
    // core = base+3 (derived from the pid so labs side by side do not collide).
    let base = 20000 + (id % 10000) as u16 * 4;
    let access = bind_pair(base)?;
    let core = bind_pair(base + 2)?;
    let guest = Guest {
        machine: o.machine,
        memory: o.memory.clone(),
        accel: Accel::Auto,
        kernel: images_dir().join(format!("{vnf}.elf")),
        disk: None,
        initrd: Some(cfg),
        append: format!(
            "stats=1000 sessions={} mgmt=2:{USER_NET_GUEST}/24:{USER_NET_HOST}",
            n.max(64)
        ),
        nets: (0..2u16)
            .map(|i| NetSpec::Udp {
                local: base + 2 * i + 1,
                peer: base + 2 * i,
                mac: NIC_MAC[usize::from(i)].into(),
            })
            .chain([NetSpec::User {
                fwd: vec![(http_fwd, HTTP_PORT)],
                udp: vec![],
                mac: MGMT_MAC.into(),
            }])
            .collect(),
        pcap_dir: None,
        drives: Vec::new(),
        fw_cfg: vec![(FWCFG_ENTROPY.to_string(), seed)],
    };
    let mut child = guest
        .command()?
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .context("start qemu-system-x86_64")?;
    let stdout = child
        .stdout
        .take()
        .ok_or_else(|| anyhow!("no QEMU stdout"))?;
    let (tx, rx) = mpsc::channel::<String>();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines().map_while(|l| l.ok()) {
            println!("guest| {line}");
            if tx.send(line).is_err() {
                break;
            }
        }
    });
    let mut g = GuestProc {
        child,
        lines: rx,
        dir,
    };
    let t_boot = Instant::now();
    g.wait_for("vbng ready", 120)?;
    let ready_ms = t_boot.elapsed().as_secs_f64() * 1000.0;

    let mut emu = Emulator::new(EmulatorConfig {
        sessions: n,
        setup_rate: 0,
        max_outstanding: 0,
        auth: vbng::lcp::AuthProto::Chap,
        user_prefix: "user".into(),
        password: PASSWORD.into(),
        // One C-VLAN per subscriber (TR-101 1:1), so each is its own access line for
        // the vBNG's half-open limits (`half_open_per_line`).
        vlans: VlanPlan::Single { base: 100 },
        ipv6cp: false,
        restart_ms: 1000,
        max_payload: None,
        ..EmulatorConfig::default()
    });
    let t0 = Instant::now();
    let ms = |t0: Instant| t0.elapsed().as_millis() as u64;
    let mut frames: Vec<Vec<u8>> = Vec::new();
    let mut buf = vec![0u8; 65536];
    // Phase 1: session setup.
    let setup_deadline = Instant::now() + Duration::from_secs(60);
    while !emu.settled() && Instant::now() < setup_deadline {
        let now = ms(t0);
        emu.start_due(now, &mut frames);
        emu.poll(now, &mut frames);
        for f in frames.drain(..) {
            access.send(&f).context("send to the access NIC")?;
        }
        let got = drain(&access, &mut buf, |f| emu.input(f, now, &mut frames));
        if got == 0 && frames.is_empty() {
            std::thread::sleep(Duration::from_millis(1));
        }
    }
    let setup = emu.report();
    let setup_s = t0.elapsed().as_secs_f64();
    // Let the last IPCP Configure-Acks reach the guest.
    std::thread::sleep(Duration::from_millis(200));

    // Phase 2: traffic both ways over the sessions that are up.
    let up: Vec<u32> = (0..n)
        .filter(|&i| emu.client(i).is_some_and(|c| c.is_up()))
        .collect();
    let by_ip: std::collections::HashMap<u32, u32> = up
        .iter()
        .filter_map(|&i| emu.client(i).map(|c| (c.ip(), i)))
        .collect();
    let core_nic: [u8; 6] = parse_mac(NIC_MAC[1])?;
    let (mut upf, mut downf) = (Flow::default(), Flow::default());
    let frame_len = o.size.clamp(64, 1500);
    let pps = if o.pps == 0 { 1000 } else { o.pps };
    let total = (pps as f64 * o.seconds) as u64;
    let tt = Instant::now();
    let mut k = 0u64;
    let check_core = |f: &[u8], upf: &mut Flow| {
        let ok = f.get(..6) == Some(&CORE_HOP_MAC[..])
            && f.get(6..12) == Some(&core_nic[..])
            && f.get(12..14) == Some(&[0x08, 0x00][..])
            && f.get(14) == Some(&0x45)
            && f.get(26..30)
                .map(|b| u32::from_be_bytes([b[0], b[1], b[2], b[3]]))
                .is_some_and(|src| by_ip.contains_key(&src))
            && f.get(30..34) == Some(&CORE_DST.to_be_bytes()[..]);
        if ok {
            upf.received += 1;
        } else {
            upf.bad += 1;
        }
    };
    let drain_end = |end: Instant,
                     emu: &mut Emulator,
                     upf: &mut Flow,
                     downf: &mut Flow,
                     buf: &mut [u8],
                     frames: &mut Vec<Vec<u8>>| {
        while Instant::now() < end {
            let now = ms(t0);
            let a = drain(&access, buf, |f| {
                if let Some(ip) = pppoe_ipv4(f) {
                    if downstream_ok(emu, f, ip) {
                        downf.received += 1;
                    } else {
                        downf.bad += 1;
                    }
                } else {
                    emu.input(f, now, frames);
                }
            });
            let c = drain(&core, buf, |f| {
                // ARP or IPv6 from the guest (none expected with a static next hop)
                // are not traffic.
                if f.get(12..14) == Some(&[0x08, 0x00][..]) {
                    check_core(f, upf);
                }
            });
            emu.poll(now, frames);
            for f in frames.drain(..) {
                let _ = access.send(&f);
            }
            if a + c == 0 {
                std::thread::sleep(Duration::from_millis(1));
            }
        }
    };
    if !up.is_empty() {
        while k < total {
            // Paced: frame k (one upstream, one downstream) is due at k / pps.
            let due = Duration::from_secs_f64(k as f64 / pps as f64);
            if tt.elapsed() < due {
                drain_end(
                    Instant::now()
                        + Duration::from_micros(500).min(due.saturating_sub(tt.elapsed())),
                    &mut emu,
                    &mut upf,
                    &mut downf,
                    &mut buf,
                    &mut frames,
                );
                continue;
            }
            let i = up[(k % up.len() as u64) as usize];
            if let Some(f) = emu.upstream_frame(i, CORE_DST, frame_len) {
                access.send(&f).context("send upstream")?;
                upf.sent += 1;
            }
            if let Some(f) = emu.downstream_frame(i, CORE_DST, core_nic, CORE_HOP_MAC, frame_len) {
                core.send(&f).context("send downstream")?;
                downf.sent += 1;
            }
            k += 1;
        }
        // What is still in flight through the emulated NICs.
        drain_end(
            Instant::now() + Duration::from_millis(1500),
            &mut emu,
            &mut upf,
            &mut downf,
            &mut buf,
            &mut frames,
        );
    }
    let traffic_s = tt.elapsed().as_secs_f64();
    // The guest's metrics over its host stack (management NIC, host port forward).
    let scrape = dataplane::http::get(&format!("127.0.0.1:{http_fwd}"), "/metrics");
    let (scraped, metrics) = match &scrape {
        Ok(t) => (
            t.lines().filter(|l| l.starts_with("# TYPE ")).count(),
            pick_metrics(t),
        ),
        Err(e) => {
            eprintln!("lab: scraping the guest's /metrics failed: {e}");
            (0, serde_json::Map::new())
        }
    };
    let api = api_probe(&format!("127.0.0.1:{http_fwd}"));
    // The guest's own view, then a clean stop.
    if let Some(stdin) = g.child.stdin.as_mut() {
        let _ = stdin.write_all(b"sessions\nerrors\nexit\n");
        let _ = stdin.flush();
    }
    let deadline = Instant::now() + Duration::from_secs(30);
    let code = loop {
        if let Some(st) = g.child.try_wait()? {
            break guest_code(st)?;
        }
        if Instant::now() >= deadline {
            bail!("the guest did not exit after `exit` on its console");
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    // Every console line is printed once the reader reaches the end of the output;
    // the last counter lines are the guest's final ones (printed at `exit`).
    let (mut sessions_line, mut port) = (None, [(None, None), (None, None)]);
    while let Ok(l) = g.lines.recv_timeout(Duration::from_secs(10)) {
        for (i, p) in port.iter_mut().enumerate() {
            if l.contains(&format!("port {i}:")) {
                *p = (lab::parse_counter(&l, "rx "), lab::parse_counter(&l, "tx "));
            }
        }
        if l.contains("sessions:") && l.contains(" up,") {
            sessions_line = l.split("sessions: ").nth(1).map(str::to_string);
        }
    }
    let result = serde_json::json!({
        "qemu_machine": o.machine.qemu_name(),
        "sessions": n,
        "established": setup.established,
        "failed_by_phase": setup.failed_by_phase,
        "setup_seconds": setup_s,
        "setup_p50_ms": setup.setup_p50_ms,
        "setup_max_ms": setup.setup_max_ms,
        "qemu_launch_to_ready_ms": ready_ms,
        "frame_len": frame_len,
        "traffic_seconds": traffic_s,
        "upstream": upf,
        "downstream": downf,
        "guest_exit": code,
        "guest_port0_rx": port[0].0,
        "guest_port0_tx": port[0].1,
        "guest_port1_rx": port[1].0,
        "guest_port1_tx": port[1].1,
        "guest_sessions": sessions_line,
        "aaa": if o.radius.is_some() { "radius" } else { "local" },
        "metrics_families": scraped,
        "metrics": metrics,
        "api": api,
    });
    println!("lab result: {}", header.json(&result)?);
    if code != 0 {
        bail!("guest exit code {code}");
    }
    Ok(())
}

/// One raw HTTP exchange (a request the client library would not send): the
/// answer's status and body, or the failure as text.
fn raw_http(addr: &str, req: &[u8]) -> std::result::Result<(u16, String), String> {
    use std::io::Read;
    let mut s = std::net::TcpStream::connect(addr).map_err(|e| format!("connect: {e}"))?;
    let _ = s.set_read_timeout(Some(Duration::from_secs(10)));
    s.write_all(req).map_err(|e| format!("send: {e}"))?;
    let mut r = Vec::new();
    s.read_to_end(&mut r).map_err(|e| format!("read: {e}"))?;
    let r = String::from_utf8_lossy(&r).into_owned();
    let (head, body) = r.split_once("\r\n\r\n").ok_or("no HTTP answer")?;
    let status = head
        .split_whitespace()
        .nth(1)
        .and_then(|c| c.parse().ok())
        .ok_or("no status")?;
    Ok((status, body.to_string()))
}

/// The guest's RESTCONF API at `addr`: hostile and invalid requests (each answer's
/// status and RFC 8040 `error-tag`), then `POST /restconf/operations/vbng:drain`
/// (its output) and the state after it (`draining`, the sessions listed).
fn api_probe(addr: &str) -> Value {
    let tag = |r: &std::result::Result<(u16, String), String>| match r {
        Ok((status, body)) => {
            let v: Value = serde_json::from_str(body).unwrap_or(Value::Null);
            json!({
                "status": status,
                "error-tag": v["ietf-restconf:errors"]["error"][0]["error-tag"],
            })
        }
        Err(e) => json!({ "failed": e }),
    };
    let media = "application/yang-data+json";
    let call =
        |m: &str, p: &str, b: &str| dataplane::http::request(addr, m, p, media, b.as_bytes());
    let drain = "/restconf/operations/vbng:drain";
    let refused = json!({
        "drain-enable-not-boolean": tag(&call("POST", drain, r#"{"vbng:input":{"enable":"yes"}}"#)),
        "drain-not-json": tag(&call("POST", drain, "{not json")),
        "drain-get": tag(&call("GET", drain, "")),
        "state-put": tag(&call("PUT", "/restconf/data/vbng:vbng/state", r#"{"vbng:state":{}}"#)),
        "rate-not-a-number": tag(&call(
            "PATCH",
            "/restconf/data/vbng:vbng/subscriber-defaults",
            r#"{"vbng:subscriber-defaults":{"rate-down":"fast"}}"#,
        )),
        "body-too-large": tag(&raw_http(
            addr,
            format!("POST {drain} HTTP/1.1\r\nHost: x\r\nContent-Length: 1000000\r\n\r\n").as_bytes(),
        )),
        "chunked": tag(&raw_http(
            addr,
            format!("POST {drain} HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n").as_bytes(),
        )),
        "bad-length": tag(&raw_http(
            addr,
            format!("POST {drain} HTTP/1.1\r\nHost: x\r\nContent-Length: -1\r\n\r\n").as_bytes(),
        )),
    });
    let output = match call("POST", drain, "") {
        Ok((200, b)) => serde_json::from_str(&b).unwrap_or(Value::Null),
        Ok((st, b)) => json!({ "status": st, "body": b }),
        Err(e) => json!({ "failed": e }),
    };
    let state = match call("GET", "/restconf/data/vbng:vbng/state", "") {
        Ok((200, b)) => {
            let v: Value = serde_json::from_str(&b).unwrap_or(Value::Null);
            json!({
                "draining": v["vbng:state"]["draining"],
                "sessions": v["vbng:state"]["sessions"],
                "sessions-listed": v["vbng:state"]["session"].as_array().map(Vec::len),
            })
        }
        Ok((st, b)) => json!({ "status": st, "body": b }),
        Err(e) => json!({ "failed": e }),
    };
    json!({ "refused": refused, "drain": output, "state-after-drain": state })
}

fn parse_mac(s: &str) -> Result<[u8; 6]> {
    let v: Vec<u8> = s
        .split(':')
        .map(|p| u8::from_str_radix(p, 16))
        .collect::<std::result::Result<_, _>>()
        .with_context(|| format!("bad MAC {s}"))?;
    v.try_into().map_err(|_| anyhow!("bad MAC {s}"))
}
