//! The vhost-user lab: the router unikernel under QEMU with both NICs on vhost-user
//! sockets this process serves — QEMU is the vhost-user frontend (its virtio-net
//! devices, guest RAM a shared memfd), our [`VhostUserPort`]s are the backends, as
//! an OVS-DPDK or VPP host's would be. Our generator sends UDP into NIC 0 (to the
//! router's MAC, for the far host), the sink counts on NIC 1 what the guest routed and
//! checks the rewrite (router's MAC as source, the host's as destination, TTL 63).
//! No root, no namespace, no tap.

use super::lab::{parse_counter, router_config, HOST_IP, HOST_MAC, ROUTER_MAC, UDP_PORT};
use super::*;
use dataplane::batch::Batch;
use dataplane::buf::{Pool, PoolCache};
use dataplane::port::vhost_user::{self, VhostUserPort};
use dataplane::port::{Port, PortStats};
use pktgen::profile::{Scalar, SizeSpec, StreamSpec};
use pktgen::run::run_loop;
use pktgen::{Generator, Receiver, Stream};
use std::sync::mpsc;

/// The sink's port: counts frames whose rewrite is right and wrong, then hands them
/// to the receiver.
struct Checked<'a> {
    port: &'a mut VhostUserPort,
    src: [u8; 6],
    dst: [u8; 6],
    good: u64,
    bad: u64,
}

impl Port for Checked<'_> {
    fn name(&self) -> &str {
        self.port.name()
    }
    fn rx_burst(&mut self, cache: &mut PoolCache, batch: &mut Batch) -> usize {
        let from = batch.len();
        let n = self.port.rx_burst(cache, batch);
        for p in batch.iter().skip(from) {
            let f = p.data();
            let ok = f.len() >= 42
                && f[0..6] == self.dst
                && f[6..12] == self.src
                && f[12..14] == [0x08, 0x00]
                && f[22] == 63
                && f[23] == 17;
            if ok {
                self.good += 1;
            } else {
                self.bad += 1;
            }
        }
        n
    }
    fn tx_burst(&mut self, cache: &mut PoolCache, batch: &mut Batch) -> usize {
        self.port.tx_burst(cache, batch)
    }
    fn stats(&self) -> PortStats {
        self.port.stats()
    }
}

fn mac(s: &str) -> Result<[u8; 6]> {
    vnf_router::config::parse_mac(s).map_err(|e| anyhow!("{e}"))
}

struct Guard {
    guest: Option<Child>,
    dir: PathBuf,
}

impl Drop for Guard {
    fn drop(&mut self) {
        if let Some(mut g) = self.guest.take() {
            let _ = g.kill();
            let _ = g.wait();
        }
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// `testbed image lab router --vhost-user`.
pub fn run(vnf: &str, o: &lab::LabOpts) -> Result<()> {
    if vnf != "router" {
        bail!("image lab --vhost-user: only the router has this lab");
    }
    let header = pktgen::meta::Header::start("testbed.image.lab", 2);
    if !o.no_build {
        build(vnf, None, false, &images_dir())?;
    }
    let dir = std::env::temp_dir().join(format!("uk-vlab-{}", std::process::id()));
    std::fs::create_dir_all(&dir)?;
    let mut guard = Guard {
        guest: None,
        dir: dir.clone(),
    };
    let socks = [dir.join("nic0.sock"), dir.join("nic1.sock")];
    let vcfg = vhost_user::Config {
        server: true,
        ..vhost_user::Config::default()
    };
    let mut ports = [
        VhostUserPort::open(&socks[0], &vcfg).context("vhost-user backend 0")?,
        VhostUserPort::open(&socks[1], &vcfg).context("vhost-user backend 1")?,
    ];
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
            .map(|i| NetSpec::VhostUser {
                path: socks[i].clone(),
                mac: ROUTER_MAC[i].into(),
            })
            .collect(),
        pcap_dir: None,
        fw_cfg: Vec::new(),
        drives: Vec::new(),
    };
    let mut child = guest
        .command()?
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .context("start qemu-system-x86_64")?;
    let stdout = child
        .stdout
        .take()
        .ok_or_else(|| anyhow!("no QEMU stdout"))?;
    let stderr = child
        .stderr
        .take()
        .ok_or_else(|| anyhow!("no QEMU stderr"))?;
    guard.guest = Some(child);
    let (tx, rx) = mpsc::channel::<String>();
    for (r, tag) in [
        (Box::new(stdout) as Box<dyn std::io::Read + Send>, "guest"),
        (Box::new(stderr), "qemu"),
    ] {
        let tx = tx.clone();
        std::thread::spawn(move || {
            for line in BufReader::new(r).lines().map_while(|l| l.ok()) {
                println!("{tag}| {line}");
                if tx.send(format!("{tag}| {line}")).is_err() {
                    break;
                }
            }
        });
    }
    // Answer QEMU's vhost-user messages while the guest boots; ready once the guest
    // says so and both rings of both NICs are up.
    let ready = format!("{vnf} ready");
    let deadline = Instant::now() + Duration::from_secs(120);
    let mut guest_ready = false;
    let mut last_qemu = String::new();
    while !(guest_ready && ports[0].is_up() && ports[1].is_up()) {
        for p in ports.iter_mut() {
            p.poll_control();
        }
        while let Ok(l) = rx.try_recv() {
            if l.contains(&ready) {
                guest_ready = true;
            }
            if l.contains("FATAL") || l.contains("PANIC") {
                bail!("guest failed: {l}");
            }
            if l.starts_with("qemu|") {
                last_qemu = l;
            }
        }
        if let Some(g) = guard.guest.as_mut() {
            if let Ok(Some(st)) = g.try_wait() {
                bail!("QEMU exited ({st}) before the lab started: {last_qemu}");
            }
        }
        if Instant::now() > deadline {
            bail!(
                "not ready within 120 s (guest ready: {guest_ready}; NIC 0: {}, NIC 1: {}){}",
                ports[0]
                    .last_error()
                    .unwrap_or(if ports[0].is_up() { "up" } else { "down" }),
                ports[1]
                    .last_error()
                    .unwrap_or(if ports[1].is_up() { "up" } else { "down" }),
                if last_qemu.is_empty() {
                    String::new()
                } else {
                    format!("; {last_qemu}")
                }
            );
        }
        std::thread::sleep(Duration::from_millis(1));
    }
    let mut s = StreamSpec::udp("vhost-lab");
    s.src_mac = Some(HOST_MAC[0].into());
    s.dst_mac = Some(ROUTER_MAC[0].into());
    s.ip.src = HOST_IP[0].into();
    s.ip.dst = HOST_IP[1].into();
    s.l4.dport = (UDP_PORT as u64).into();
    // IPv4 + UDP headers and the payload, plus Ethernet and FCS
    s.size = SizeSpec::Fixed((o.size.max(18) + 28 + 18) as u64);
    s.rate = Scalar::Str(if o.pps == 0 {
        "max".into()
    } else {
        format!("{}pps", o.pps)
    });
    s.burst = 8;
    let pool = Pool::new(4096).context("pool")?;
    let mut cache = pool.cache();
    let mut gen = Generator::new(vec![Stream::new(0, &s)?]);
    let mut rcv = Receiver::new();
    let [p0, p1] = &mut ports;
    let mut sink = Checked {
        port: p1,
        src: mac(ROUTER_MAC[1])?,
        dst: mac(HOST_MAC[1])?,
        good: 0,
        bad: 0,
    };
    let r = run_loop(
        &mut gen,
        p0,
        &mut sink,
        &mut rcv,
        &mut cache,
        Duration::from_secs_f64(o.seconds),
        // TCG: the guest may lag behind
        Duration::from_secs(2),
        |_| {},
    );
    let (good, bad) = (sink.good, sink.bad);
    // The guest's counters (stats every 500 ms): until two reports agree.
    let (mut rx0, mut tx1, mut prev) = (None, None, None);
    let until = Instant::now() + Duration::from_secs(10);
    while Instant::now() < until {
        for p in ports.iter_mut() {
            p.poll_control();
        }
        let Ok(l) = rx.recv_timeout(Duration::from_millis(50)) else {
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
    // QEMU goes first: it complains when its backends close under it
    if let Some(mut g) = guard.guest.take() {
        let _ = g.kill();
        let _ = g.wait();
    }
    let st = [ports[0].stats(), ports[1].stats()];
    let result = serde_json::json!({
        "qemu_machine": o.machine.qemu_name(),
        "nics": "vhost-user",
        "payload": o.size,
        "seconds": o.seconds,
        "sent": st[0].tx_packets,
        "refused": r.tx_refused,
        "received": r.rx.rx,
        "good": good,
        "bad_rewrite": bad,
        "plr": r.rx.plr,
        "rx_pps": r.rx_pps,
        "negotiated_features": format!("{:#x}", ports[0].features()),
        "guest_port0_rx": rx0,
        "guest_port1_tx": tx1,
    });
    println!("lab result: {}", header.json(&result)?);
    if good == 0 {
        bail!(
            "lab failed: none of the {} frames sent came through the guest",
            st[0].tx_packets
        );
    }
    if bad > 0 {
        bail!("lab failed: {bad} frames came out of the guest with a wrong rewrite");
    }
    Ok(())
}
