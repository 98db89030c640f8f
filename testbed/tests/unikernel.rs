//! Unikernel images under QEMU (TCG): build (size, reproducibility), boot on microvm,
//! q35 and pc, the clock against the host's wall clock, bad configuration, the GRUB
//! disk image, and routing between two network namespaces through tap ports (root).
//!
//! Needs: qemu-system-x86, qemu-utils, grub-pc-bin, xorriso, iproute2 (and root for the
//! lab). Missing tools fail the tests with a message; nothing is skipped.

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::sync::{Mutex, MutexGuard, OnceLock};
use std::time::Instant;

fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("workspace root")
        .to_path_buf()
}

/// From the workspace root: images go to (and are looked for in) `target/images`
/// under the current directory.
fn testbed() -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_testbed"));
    c.current_dir(root());
    c
}

fn need(tool: &str, package: &str) {
    let found = std::env::var_os("PATH")
        .map(|p| std::env::split_paths(&p).any(|d| d.join(tool).is_file()))
        .unwrap_or(false);
    assert!(found, "`{tool}` is missing: apt-get install {package}");
}

/// One QEMU guest at a time: the clock check and boot times stay meaningful on a
/// small machine, and the UDP ports below do not collide.
fn qemu_lock() -> MutexGuard<'static, ()> {
    static L: Mutex<()> = Mutex::new(());
    L.lock().unwrap_or_else(|e| e.into_inner())
}

/// `testbed image build router` once per test process.
fn built() -> PathBuf {
    static B: OnceLock<Result<(), String>> = OnceLock::new();
    let r = B.get_or_init(|| {
        need("qemu-system-x86_64", "qemu-system-x86");
        need("qemu-img", "qemu-utils");
        need("grub-mkrescue", "grub-pc-bin");
        need("xorriso", "xorriso");
        let out = testbed()
            .args(["image", "build", "router"])
            .output()
            .map_err(|e| e.to_string())?;
        if out.status.success() {
            Ok(())
        } else {
            Err(format!(
                "image build failed:\n{}\n{}",
                String::from_utf8_lossy(&out.stdout),
                String::from_utf8_lossy(&out.stderr)
            ))
        }
    });
    if let Err(e) = r {
        panic!("{e}");
    }
    root().join("target/images")
}

/// Two UDP-socket ports on loopback (nothing listens: the guest just needs NICs).
fn udp_nets(base: u16) -> Vec<String> {
    vec![
        "--net".into(),
        format!("udp:{}:{},mac=02:00:00:00:01:01", base, base + 1),
        "--net".into(),
        format!("udp:{}:{},mac=02:00:00:00:02:01", base + 2, base + 3),
    ]
}

fn run_image(args: &[&str], extra: &[String]) -> Output {
    let _g = qemu_lock();
    testbed()
        .args([
            "image",
            "run",
            "router",
            "--no-build",
            "--memory",
            "128M",
            "--timeout",
            "300",
        ])
        .args(args)
        .args(extra)
        .output()
        .expect("run testbed image run")
}

fn text(o: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    )
}

#[test]
fn image_is_small_and_reproducible() {
    let dir = built();
    let elf = std::fs::read(dir.join("router.elf")).expect("router.elf");
    assert!(
        elf.len() <= 1 << 20,
        "stripped router ELF is {} bytes (> 1 MiB)",
        elf.len()
    );
    assert_eq!(&elf[..4], b"\x7fELF");
    let qcow2 = std::fs::read(dir.join("router.qcow2")).expect("router.qcow2");
    assert_eq!(&qcow2[..4], b"QFI\xfb", "not a qcow2 image");
    // Recompile the kernel crate from scratch into another directory: same bytes.
    let other = std::env::temp_dir().join(format!("uk-repro-{}", std::process::id()));
    // The rebuild is CPU-heavy: keep it away from the timing-sensitive guests.
    let _g = qemu_lock();
    let out = testbed()
        .args(["image", "build", "router", "--fresh", "--out"])
        .arg(&other)
        .output()
        .expect("run testbed image build");
    assert!(out.status.success(), "{}", text(&out));
    let again = std::fs::read(other.join("router.elf")).expect("second router.elf");
    let qcow2_again = std::fs::read(other.join("router.qcow2")).expect("second router.qcow2");
    let _ = std::fs::remove_dir_all(&other);
    assert!(
        qcow2_again == qcow2,
        "two GRUB disk images of the same kernel differ"
    );
    assert!(
        again == elf,
        "two builds of the same tree and config differ ({} vs {} bytes)",
        elf.len(),
        again.len()
    );
}

#[test]
fn boots_to_ready_on_microvm_q35_and_pc() {
    built();
    for (i, m) in ["microvm", "q35", "pc"].iter().enumerate() {
        let o = run_image(
            &["--machine", m, "--append", "exit=ready"],
            &udp_nets(17100 + 10 * i as u16),
        );
        let t = text(&o);
        assert_eq!(
            o.status.code(),
            Some(0),
            "{m}: guest exit code {:?}\n{t}",
            o.status.code()
        );
        assert!(t.contains("router ready in"), "{m}: no ready line\n{t}");
        assert!(t.contains("(2 ports"), "{m}: ports not up\n{t}");
    }
}

#[test]
fn guest_clock_agrees_with_host_wall_clock() {
    built();
    let _g = qemu_lock();
    let mut child = testbed()
        .args([
            "image",
            "run",
            "router",
            "--no-build",
            "--timeout",
            "60",
            "--append",
            "selftest=clock:2000",
        ])
        .stdout(Stdio::piped())
        .spawn()
        .expect("start testbed image run");
    let stdout = child.stdout.take().expect("stdout");
    let (mut start, mut end, mut guest_ms) = (None, None, None);
    for line in BufReader::new(stdout).lines().map_while(Result::ok) {
        if line.contains("clock-selftest start") {
            start = Some(Instant::now());
        }
        if line.contains("clock-selftest end") {
            end = Some(Instant::now());
            guest_ms = line
                .split("elapsed=")
                .nth(1)
                .and_then(|r| r.trim_end_matches("ms").trim().parse::<u64>().ok());
        }
    }
    let st = child.wait().expect("wait");
    assert!(st.success(), "guest exit {st}");
    let (Some(a), Some(b)) = (start, end) else {
        panic!("no clock-selftest lines")
    };
    let host_ms = b.duration_since(a).as_secs_f64() * 1000.0;
    // The guest spins until its clock passes 2000 ms; a descheduled vCPU may overshoot.
    let g = guest_ms.unwrap_or_else(|| panic!("no elapsed= in the end line"));
    assert!(
        (2000..3000).contains(&g),
        "guest measured {g} ms for a 2000 ms spin"
    );
    let err = (host_ms - g as f64).abs() / g as f64;
    assert!(
        err < 0.05,
        "guest {g} ms took {host_ms:.1} ms of host time ({:.1}% off)",
        err * 100.0
    );
}

#[test]
fn bad_configuration_is_reported_with_a_clean_exit() {
    built();
    // A bad value through a command-line override.
    let o = run_image(
        &["--append", "config.interface.0.ipv4=[\"300.0.0.1/24\"]"],
        &udp_nets(17200),
    );
    let t = text(&o);
    assert_eq!(o.status.code(), Some(2), "{t}");
    assert!(
        t.contains("FATAL: bad configuration") && t.contains("interface"),
        "{t}"
    );
    // A config blob that is not TOML.
    let junk = std::env::temp_dir().join(format!("uk-junk-{}.toml", std::process::id()));
    std::fs::write(&junk, "[[interface]\nname = \n").expect("write junk config");
    let o = run_image(
        &["--config", junk.to_str().expect("utf-8 path")],
        &udp_nets(17210),
    );
    let _ = std::fs::remove_file(&junk);
    let t = text(&o);
    assert_eq!(o.status.code(), Some(2), "{t}");
    assert!(t.contains("boot module is not valid TOML"), "{t}");
    // An unparsable platform option.
    let o = run_image(&["--append", "stats=often"], &[]);
    let t = text(&o);
    assert_eq!(o.status.code(), Some(2), "{t}");
    assert!(t.contains("`stats=often`"), "{t}");
    // More interfaces than NICs.
    let o = run_image(&[], &[]);
    let t = text(&o);
    assert_eq!(o.status.code(), Some(2), "{t}");
    assert!(
        t.contains("2 interfaces configured but the guest has 0 virtio-net ports"),
        "{t}"
    );
}

#[test]
fn grub_disk_image_boots_to_ready() {
    built();
    let o = run_image(
        &["--disk", "--machine", "pc", "--until-ready"],
        &udp_nets(17300),
    );
    let t = text(&o);
    assert_eq!(o.status.code(), Some(0), "{t}");
    assert!(
        t.contains("router ready in"),
        "no ready line from the GRUB-booted disk:\n{t}"
    );
    assert!(
        t.contains("Multiboot boot"),
        "not booted through Multiboot:\n{t}"
    );
}

#[test]
fn routes_udp_between_namespaces_through_taps() {
    built();
    // SAFETY: getuid has no preconditions.
    assert_eq!(
        unsafe { libc::getuid() },
        0,
        "this test needs root (network namespaces and tap devices)"
    );
    need("ip", "iproute2");
    let _g = qemu_lock();
    let o = testbed()
        .args([
            "image",
            "lab",
            "router",
            "--no-build",
            "--seconds",
            "2",
            "--pps",
            "2000",
        ])
        .output()
        .expect("run testbed image lab");
    let t = text(&o);
    assert!(o.status.success(), "{t}");
    let line = t
        .lines()
        .find_map(|l| l.strip_prefix("lab result: "))
        .unwrap_or_else(|| panic!("no result\n{t}"));
    let r: serde_json::Value = serde_json::from_str(line).expect("lab result JSON");
    let good = r["sink"]["good"].as_u64().expect("sink.good");
    let sent = r["generator"]["sent"].as_u64().expect("generator.sent");
    assert!(
        good > 0 && good * 10 >= sent * 9,
        "routed {good} of {sent}\n{t}"
    );
    for k in ["bad_mac", "bad_ttl", "bad_checksum"] {
        assert_eq!(r["sink"][k].as_u64(), Some(0), "{k}\n{t}");
    }
    let rx0 = r["guest_port0_rx"]
        .as_u64()
        .expect("guest port 0 rx counter");
    let tx1 = r["guest_port1_tx"]
        .as_u64()
        .expect("guest port 1 tx counter");
    assert!(
        rx0 >= sent * 9 / 10 && tx1 >= good,
        "guest counters rx0={rx0} tx1={tx1}, sent {sent}, received {good}\n{t}"
    );
}

/// A TCP port on the host's loopback that is free now.
fn free_tcp_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("a free TCP port")
}

/// Families (`# TYPE` lines) of a Prometheus text.
fn families(text: &str) -> std::collections::BTreeSet<String> {
    text.lines()
        .filter_map(|l| l.strip_prefix("# TYPE "))
        .filter_map(|l| l.split(' ').next())
        .map(str::to_string)
        .collect()
}

/// The guest's host network stack serves `/metrics` on port 9100 (the `router
/// --listen` port) with the Linux router's families, scraped from the host through
/// QEMU user networking (slirp) and a host port forward. Port 0 is the user-net NIC
/// and interface 0 has the guest's slirp address, so the stack shares the port with
/// the fast path (its default place: port 0, interface 0's first IPv4): the router
/// answers slirp's ARP, TCP goes to the stack.
#[test]
fn metrics_endpoint_served_by_the_guest_host_stack() {
    built();
    let dir = std::env::temp_dir().join(format!("uk-router-metrics-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("temp dir");
    let cfg = dir.join("router.toml");
    std::fs::write(
        &cfg,
        "[[interface]]\nname = \"mgmt\"\nmac = \"02:00:00:00:01:01\"\nipv4 = [\"10.0.2.15/24\"]\n\n\
         [[interface]]\nname = \"core\"\nmac = \"02:00:00:00:02:01\"\nipv4 = [\"198.51.100.1/24\"]\n",
    )
    .expect("config");
    let fwd = free_tcp_port();
    let _g = qemu_lock();
    let child = testbed()
        .args([
            "image",
            "run",
            "router",
            "--no-build",
            "--memory",
            "128M",
            "--timeout",
            "120",
            "--config",
            cfg.to_str().expect("utf-8"),
            "--append",
            "exit=30000 stats=0",
            "--net",
            &format!("user:{fwd}-9100,mac=02:00:00:00:01:01"),
            "--net",
            "udp:17290:17291,mac=02:00:00:00:02:01",
        ])
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("spawn testbed image run");
    let t0 = std::time::Instant::now();
    let mut got = Err(String::new());
    while t0.elapsed() < std::time::Duration::from_secs(25) {
        got = dataplane::http::get(&format!("127.0.0.1:{fwd}"), "/metrics");
        if got.is_ok() {
            break;
        }
        std::thread::sleep(std::time::Duration::from_millis(300));
    }
    let e404 = dataplane::http::request(
        &format!("127.0.0.1:{fwd}"),
        "GET",
        "/nothing",
        "text/plain",
        b"",
    );
    let out = child.wait_with_output().expect("wait for the guest");
    let _ = std::fs::remove_dir_all(&dir);
    let t = text(&out);
    let body = got.unwrap_or_else(|e| panic!("no /metrics from the guest: {e}\n{t}"));
    let f = families(&body);
    for name in [
        "dp_node_packets_total",
        "dp_node_drops_total",
        "dp_port_rx_packets_total",
        "dp_port_tx_packets_total",
        "dp_worker_loops_total",
        "dp_worker_rx_packets_total",
        "dp_engine_tx_full_total",
    ] {
        assert!(f.contains(name), "{name} missing from /metrics\n{body}");
    }
    assert!(
        body.contains("dp_node_packets_total{worker=\"0\",node=\"ip4-lookup\"}"),
        "{body}"
    );
    match e404 {
        Ok((status, _)) => assert_eq!(status, 404, "{t}"),
        Err(e) => panic!("/nothing: {e}\n{t}"),
    }
    assert_eq!(out.status.code(), Some(0), "{t}");
    assert!(
        t.contains("host stack: port 0 10.0.2.15/24 (shared with the fast path)"),
        "{t}"
    );
}

/// An Ethernet II / IPv4 / UDP frame (header checksum filled, UDP checksum 0).
fn udp_frame(dst_mac: [u8; 6], src_mac: [u8; 6], src: [u8; 4], dst: [u8; 4], ttl: u8) -> Vec<u8> {
    let payload = b"uk-multi-nic";
    let mut f = Vec::new();
    f.extend_from_slice(&dst_mac);
    f.extend_from_slice(&src_mac);
    f.extend_from_slice(&[0x08, 0x00]);
    let total = (20 + 8 + payload.len()) as u16;
    let mut ip = vec![0x45, 0, 0, 0, 0, 1, 0, 0, ttl, 17, 0, 0];
    ip[2..4].copy_from_slice(&total.to_be_bytes());
    ip.extend_from_slice(&src);
    ip.extend_from_slice(&dst);
    let sum = ip
        .chunks(2)
        .map(|c| u32::from(u16::from_be_bytes([c[0], c[1]])))
        .sum::<u32>();
    let sum = (sum & 0xffff) + (sum >> 16);
    let sum = !((sum & 0xffff) + (sum >> 16)) as u16;
    ip[10..12].copy_from_slice(&sum.to_be_bytes());
    f.extend_from_slice(&ip);
    f.extend_from_slice(&4000u16.to_be_bytes());
    f.extend_from_slice(&4001u16.to_be_bytes());
    f.extend_from_slice(&((8 + payload.len()) as u16).to_be_bytes());
    f.extend_from_slice(&[0, 0]);
    f.extend_from_slice(payload);
    f
}

/// More than two NICs: the router with four interfaces on four virtio-net devices
/// (QEMU UDP-socket netdevs, this process at the other end of each) routes a UDP
/// datagram in on every NIC and out of the next one (0→1→2→3→0), rewritten for the
/// configured neighbour (its MAC, TTL - 1).
#[test]
fn routes_between_four_nics() {
    built();
    const N: usize = 4;
    let router_mac = |i: usize| [0x02, 0, 0, 0, 0x0d, i as u8 + 1];
    let host_mac = |i: usize| [0x02, 0, 0, 0, 0x0e, i as u8 + 1];
    let dir = std::env::temp_dir().join(format!("uk-router-4nic-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("temp dir");
    let cfg = dir.join("router.toml");
    let mut t = String::from("[engine]\npool_buffers = 4096\n");
    for i in 0..N {
        let m = router_mac(i);
        t += &format!(
            "\n[[interface]]\nname = \"n{i}\"\nmac = \"{:02x}:{:02x}:{:02x}:{:02x}:{:02x}:{:02x}\"\nipv4 = [\"10.70.{i}.1/24\"]\n",
            m[0], m[1], m[2], m[3], m[4], m[5]
        );
    }
    for i in 0..N {
        let m = host_mac(i);
        t += &format!(
            "\n[[neighbor]]\nip = \"10.70.{i}.2\"\nmac = \"{:02x}:{:02x}:{:02x}:{:02x}:{:02x}:{:02x}\"\n",
            m[0], m[1], m[2], m[3], m[4], m[5]
        );
    }
    std::fs::write(&cfg, t).expect("config");
    let base = 17300u16;
    let socks: Vec<std::net::UdpSocket> = (0..N)
        .map(|i| {
            let p = base + 2 * i as u16;
            let s = std::net::UdpSocket::bind(("127.0.0.1", p)).expect("bind");
            s.connect(("127.0.0.1", p + 1)).expect("connect");
            s.set_read_timeout(Some(std::time::Duration::from_millis(200)))
                .expect("timeout");
            s
        })
        .collect();
    let mut args: Vec<String> = [
        "image",
        "run",
        "router",
        "--no-build",
        "--memory",
        "128M",
        "--timeout",
        "120",
        "--config",
        cfg.to_str().expect("utf-8"),
        "--append",
        "exit=25000 stats=0",
    ]
    .iter()
    .map(|s| s.to_string())
    .collect();
    for i in 0..N {
        let p = base + 2 * i as u16;
        args.push("--net".into());
        args.push(format!("udp:{}:{p}", p + 1));
    }
    let _g = qemu_lock();
    let child = testbed()
        .args(&args)
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("spawn testbed image run");
    let mut routed = [false; N];
    let t0 = std::time::Instant::now();
    let mut buf = [0u8; 2048];
    while routed.iter().any(|r| !r) && t0.elapsed() < std::time::Duration::from_secs(20) {
        for i in 0..N {
            if routed[i] {
                continue;
            }
            let j = (i + 1) % N;
            let f = udp_frame(
                router_mac(i),
                host_mac(i),
                [10, 70, i as u8, 2],
                [10, 70, j as u8, 2],
                64,
            );
            let _ = socks[i].send(&f);
            // What comes out of NIC j: ours, rewritten for neighbour j.
            while let Ok(n) = socks[j].recv(&mut buf) {
                let g = &buf[..n];
                if g.len() == f.len()
                    && g[..6] == host_mac(j)
                    && g[6..12] == router_mac(j)
                    && g[22] == 63
                    && g[26..34] == f[26..34]
                    && g[42..] == f[42..]
                {
                    routed[i] = true;
                }
            }
        }
    }
    let out = child.wait_with_output().expect("wait for the guest");
    let _ = std::fs::remove_dir_all(&dir);
    let t = text(&out);
    assert_eq!(out.status.code(), Some(0), "{t}");
    assert!(
        t.contains("router ready in") && t.contains("(4 ports,"),
        "{t}"
    );
    for (i, r) in routed.iter().enumerate() {
        assert!(r, "nothing routed from NIC {i} to NIC {}\n{t}", (i + 1) % N);
    }
}

/// Day-0 from a config drive: `image run --config FILE --config-drive KIND` puts the
/// router's TOML on an ISO 9660 volume (xorriso) as OpenStack (`config-2`,
/// `openstack/latest/user_data`) or cloud-init NoCloud (`cidata`, `user-data`) do, on
/// a virtio-blk disk (virtio-mmio on microvm, PCI on q35); the guest reads it
/// instead of the baked config. A drive whose user data is not TOML is a one-line
/// configuration error.
#[test]
fn config_drive_gives_the_day0_config() {
    built();
    let dir = std::env::temp_dir().join(format!("uk-router-drive-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("temp dir");
    let cfg = dir.join("router.toml");
    let mut t = String::new();
    for i in 0..2 {
        t += &format!("[[interface]]\nname = \"d{i}\"\nipv4 = [\"10.80.{i}.1/24\"]\n\n");
    }
    // Twenty routes of our own (the baked example has 7 IPv4 routes in all): the
    // ready line counts them with the connected ones.
    for r in 0..20 {
        t += &format!("[[route]]\nprefix = \"203.0.{r}.0/24\"\nvia = \"10.80.1.2\"\n\n");
    }
    std::fs::write(&cfg, &t).expect("config");
    let c = cfg.to_str().expect("utf-8");
    for (kind, machine, path) in [
        ("config-2", "microvm", "openstack/latest/user_data"),
        ("cidata", "q35", "user-data"),
    ] {
        let o = run_image(
            &[
                "--config",
                c,
                "--config-drive",
                kind,
                "--machine",
                machine,
                "--append",
                "exit=ready",
            ],
            &udp_nets(17280),
        );
        let t = text(&o);
        assert_eq!(o.status.code(), Some(0), "{kind}: {t}");
        assert!(
            t.contains("config drive: virtio-blk at")
                && t.contains(&format!("{kind} volume, {path}")),
            "{kind}: {t}"
        );
        assert!(!t.contains("config: boot module"), "{kind}: {t}");
        // 2 connected + 20 static (+ the interfaces' own addresses).
        assert!(
            t.contains("router ready in") && t.contains("IPv4 /"),
            "{kind}: {t}"
        );
        let n4: usize = t
            .split(" IPv4 / ")
            .next()
            .and_then(|s| s.rsplit(", ").next())
            .and_then(|s| s.parse().ok())
            .unwrap_or_else(|| panic!("no route count\n{t}"));
        assert!(n4 >= 22, "{kind}: {n4} IPv4 routes\n{t}");
    }
    // Not TOML on the drive: refused with one line naming the drive.
    std::fs::write(&cfg, "#cloud-config\nwrite_files:\n  - path: /etc/x\n").expect("junk");
    let o = run_image(
        &[
            "--config",
            c,
            "--config-drive",
            "cidata",
            "--append",
            "exit=ready",
        ],
        &udp_nets(17280),
    );
    let _ = std::fs::remove_dir_all(&dir);
    let t = text(&o);
    assert_eq!(o.status.code(), Some(2), "{t}");
    assert!(
        t.contains(
            "FATAL: bad configuration: config from NoCloud drive user-data is not valid TOML"
        ),
        "{t}"
    );
}

/// The router guest with both NICs on vhost-user: QEMU is the frontend, the testbed's
/// own vhost-user ports the backends (server sockets), as on an OVS-DPDK or VPP host.
/// No root needed.
#[test]
fn routes_udp_over_vhost_user_nics_served_by_our_process() {
    built();
    let _g = qemu_lock();
    let o = testbed()
        .args([
            "image",
            "lab",
            "router",
            "--vhost-user",
            "--no-build",
            "--seconds",
            "2",
            "--pps",
            "1000",
        ])
        .output()
        .expect("run testbed image lab --vhost-user");
    let t = text(&o);
    assert!(o.status.success(), "{t}");
    let line = t
        .lines()
        .find_map(|l| l.strip_prefix("lab result: "))
        .unwrap_or_else(|| panic!("no result\n{t}"));
    let r: serde_json::Value = serde_json::from_str(line).expect("lab result JSON");
    assert_eq!(r["nics"], "vhost-user", "{t}");
    let sent = r["sent"].as_u64().expect("sent");
    let good = r["good"].as_u64().expect("good");
    assert!(sent >= 1000, "sent {sent}\n{t}");
    assert!(
        good > 0 && good * 10 >= sent * 9,
        "routed {good} of {sent}\n{t}"
    );
    assert_eq!(r["bad_rewrite"].as_u64(), Some(0), "{t}");
    let rx0 = r["guest_port0_rx"].as_u64().expect("guest port 0 rx");
    let tx1 = r["guest_port1_tx"].as_u64().expect("guest port 1 tx");
    assert!(
        rx0 >= good && tx1 >= good,
        "guest counters rx0={rx0} tx1={tx1}, received {good}\n{t}"
    );
}

/// An HTTP answer (status, body) or why there was none.
type HttpResult = Result<(u16, String), String>;

/// An RFC 8040 §7.1 error body's first `error-tag`.
fn error_tag(body: &str) -> String {
    let v: serde_json::Value = serde_json::from_str(body).unwrap_or_else(|e| panic!("{e}: {body}"));
    v["ietf-restconf:errors"]["error"][0]["error-tag"]
        .as_str()
        .unwrap_or_else(|| panic!("no RFC 8040 error body: {body}"))
        .to_string()
}

/// The guest serves the Linux router's RESTCONF writes (`vnf_router::mgmt` without
/// std) on its host stack: a route PUT over the management NIC (QEMU user
/// networking, port 9100 forwarded) shows in the GET and forwards a frame sent on a
/// UDP-socket NIC out of the other one at once; a PATCH adds a second route; the
/// policer's meter changes; a malformed body gets 400 `malformed-message` and a
/// route whose next hop is in no connected subnet 400 `invalid-value`, both with
/// RFC 8040 §7.1 bodies and nothing changed. Then 150 route changes in a row (each
/// builds a new FIB with its demand-zero 64 MiB `tbl24`): the guest's memory stays
/// bounded (the window and the pages of replaced tables are reused) and it still
/// answers and exits cleanly.
#[test]
fn restconf_route_changes_served_by_the_guest() {
    built();
    let router_mac = |i: u8| [0x02, 0, 0, 0, 0x0f, i];
    let host_mac = |i: u8| [0x02, 0, 0, 0, 0x1f, i];
    let mac = |m: [u8; 6]| {
        format!(
            "{:02x}:{:02x}:{:02x}:{:02x}:{:02x}:{:02x}",
            m[0], m[1], m[2], m[3], m[4], m[5]
        )
    };
    let dir = std::env::temp_dir().join(format!("uk-router-api-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("temp dir");
    let cfg = dir.join("router.toml");
    std::fs::write(
        &cfg,
        format!(
            "[[interface]]\nname = \"mgmt\"\nmac = \"02:00:00:00:01:01\"\nipv4 = [\"10.0.2.15/24\"]\n\n\
             [[interface]]\nname = \"a\"\nmac = \"{}\"\nipv4 = [\"10.71.1.1/24\"]\n\n\
             [[interface]]\nname = \"b\"\nmac = \"{}\"\nipv4 = [\"10.71.2.1/24\"]\n\n\
             [[neighbor]]\nip = \"10.71.1.2\"\nmac = \"{}\"\n\n\
             [[neighbor]]\nip = \"10.71.2.2\"\nmac = \"{}\"\n\n\
             [qos.policer]\nmeter = {{ type = \"srtcm\", cir_bps = 10000000000, cbs = 1000000, ebs = 1000000 }}\n",
            mac(router_mac(1)),
            mac(router_mac(2)),
            mac(host_mac(1)),
            mac(host_mac(2)),
        ),
    )
    .expect("config");
    let base = 17400u16;
    let socks: Vec<std::net::UdpSocket> = (0..2u16)
        .map(|i| {
            let p = base + 2 * i;
            let s = std::net::UdpSocket::bind(("127.0.0.1", p)).expect("bind");
            s.connect(("127.0.0.1", p + 1)).expect("connect");
            s.set_read_timeout(Some(std::time::Duration::from_millis(100)))
                .expect("timeout");
            s
        })
        .collect();
    let fwd = free_tcp_port();
    let _g = qemu_lock();
    let child = testbed()
        .args([
            "image",
            "run",
            "router",
            "--no-build",
            "--memory",
            "128M",
            "--timeout",
            "120",
            "--config",
            cfg.to_str().expect("utf-8"),
            "--append",
            "exit=20000 stats=0",
            "--net",
            &format!("user:{fwd}-9100,mac=02:00:00:00:01:01"),
            "--net",
            &format!("udp:{}:{base},mac={}", base + 1, mac(router_mac(1))),
            "--net",
            &format!("udp:{}:{},mac={}", base + 3, base + 2, mac(router_mac(2))),
        ])
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("spawn testbed image run");
    let addr = format!("127.0.0.1:{fwd}");
    let call = |method: &str, path: &str, body: &str| {
        dataplane::http::request(
            &addr,
            method,
            path,
            "application/yang-data+json",
            body.as_bytes(),
        )
    };
    let t0 = Instant::now();
    let root = "/restconf/data/router:router";
    // The API is up once the GET answers.
    let mut first = Err(String::new());
    while t0.elapsed() < std::time::Duration::from_secs(15) {
        first = call("GET", root, "");
        if first.is_ok() {
            break;
        }
        std::thread::sleep(std::time::Duration::from_millis(200));
    }
    // Everything below is collected, then checked once the guest has exited (its
    // console goes with every failure).
    let mut steps: Vec<(&str, HttpResult)> = vec![("first GET", first)];
    // Sends frames to `dst` in on NIC a for at most `secs`; true once one comes out
    // of NIC b rewritten for neighbour 10.71.2.2.
    let forwarded = |dst: [u8; 4], secs: u64| {
        let f = udp_frame(router_mac(1), host_mac(1), [10, 71, 1, 2], dst, 64);
        let mut buf = [0u8; 2048];
        let t = Instant::now();
        while t.elapsed() < std::time::Duration::from_secs(secs) {
            let _ = socks[0].send(&f);
            while let Ok(n) = socks[1].recv(&mut buf) {
                let g = &buf[..n];
                if g.len() == f.len()
                    && g[..6] == host_mac(2)
                    && g[6..12] == router_mac(2)
                    && g[22] == 63
                    && g[30..34] == dst
                {
                    return true;
                }
            }
        }
        false
    };
    let before = forwarded([203, 0, 113, 9], 1);
    steps.push((
        "PUT route",
        call(
            "PUT",
            &format!("{root}/route=203.0.113.0%2F24"),
            r#"{"router:route":[{"prefix":"203.0.113.0/24","next-hop":"10.71.2.2"}]}"#,
        ),
    ));
    let after_put = forwarded([203, 0, 113, 9], 3);
    steps.push((
        "PATCH route",
        call(
            "PATCH",
            root,
            r#"{"router:router":{"route":[{"prefix":"198.18.0.0/15","next-hop":"10.71.2.2"}]}}"#,
        ),
    ));
    let after_patch = forwarded([198, 19, 0, 1], 3);
    steps.push((
        "PUT meter",
        call(
            "PUT",
            &format!("{root}/qos/policer"),
            r#"{"router:policer":{"meter":"trtcm","cir-bps":"5000000000","cbs":900000,"pir-bps":"9000000000","pbs":900000}}"#,
        ),
    ));
    steps.push(("GET config", call("GET", root, "")));
    steps.push(("malformed", call("PATCH", root, "{\"router:router\":")));
    steps.push((
        "invalid",
        call(
            "PUT",
            &format!("{root}/route=172.16.0.0%2F12"),
            r#"{"router:route":[{"prefix":"172.16.0.0/12","next-hop":"10.99.0.1"}]}"#,
        ),
    ));
    steps.push((
        "GET after refusals",
        call("GET", &format!("{root}?content=config"), ""),
    ));
    // Many changes in a row: each builds and swaps a new FIB.
    let t_many = Instant::now();
    let mut many = Ok((204, String::new()));
    for i in 0..150 {
        let (m, b) = if i % 2 == 0 {
            ("DELETE", "")
        } else {
            (
                "PUT",
                r#"{"router:route":[{"prefix":"203.0.113.0/24","next-hop":"10.71.2.2"}]}"#,
            )
        };
        many = call(m, &format!("{root}/route=203.0.113.0%2F24"), b);
        if !matches!(many, Ok((s, _)) if s == 201 || s == 204) {
            many = Err(format!("change {i} ({m}): {many:?}"));
            break;
        }
    }
    let many_ms = t_many.elapsed().as_millis();
    let after_many = forwarded([198, 19, 0, 2], 3);
    let steps_ms = t0.elapsed().as_millis();
    steps.push(("150 changes", many));
    let out = child.wait_with_output().expect("wait for the guest");
    let _ = std::fs::remove_dir_all(&dir);
    let t = text(&out);
    let mut got = std::collections::HashMap::new();
    for (name, r) in steps {
        got.insert(name, r.unwrap_or_else(|e| panic!("{name}: {e}\n{t}")));
    }
    let json = |s: &str| -> serde_json::Value {
        serde_json::from_str(s).unwrap_or_else(|e| panic!("{e}: {s}\n{t}"))
    };
    assert_eq!(got["first GET"].0, 200, "{t}");
    assert!(!before, "forwarded without a route\n{t}");
    assert_eq!(got["PUT route"].0, 201, "{:?}\n{t}", got["PUT route"]);
    assert!(after_put, "the PUT route did not forward\n{t}");
    assert_eq!(got["PATCH route"].0, 204, "{:?}\n{t}", got["PATCH route"]);
    assert!(after_patch, "the PATCHed route did not forward\n{t}");
    assert_eq!(got["PUT meter"].0, 204, "{:?}\n{t}", got["PUT meter"]);
    let v = json(&got["GET config"].1);
    let r = &v["router:router"];
    let routes = r["route"].as_array().expect("route list");
    for (p, nh) in [
        ("203.0.113.0/24", "10.71.2.2"),
        ("198.18.0.0/15", "10.71.2.2"),
    ] {
        assert!(
            routes
                .iter()
                .any(|e| e["prefix"] == p && e["next-hop"] == nh),
            "{p} missing: {v}"
        );
    }
    assert_eq!(r["qos"]["policer"]["cir-bps"], "5000000000", "{v}");
    // 3 connected, 3 local (/32) and the 2 new routes.
    assert_eq!(r["state"]["ipv4-routes"], 8, "{v}");
    assert_eq!(r["state"]["interface"][1]["name"], "a", "{v}");
    assert_eq!(got["malformed"].0, 400, "{t}");
    assert_eq!(error_tag(&got["malformed"].1), "malformed-message");
    assert_eq!(got["invalid"].0, 400, "{t}");
    assert_eq!(error_tag(&got["invalid"].1), "invalid-value");
    let c = json(&got["GET after refusals"].1);
    assert_eq!(
        c["router:router"]["route"].as_array().map(Vec::len),
        Some(2),
        "{c}"
    );
    assert_eq!(got["150 changes"].0, 201, "{:?}\n{t}", got["150 changes"]);
    assert!(after_many, "not forwarding after 150 changes\n{t}");
    eprintln!(
        "150 route changes over the guest's API: {many_ms} ms; every step done {steps_ms} ms after launch (the guest exits at 20 s)"
    );
    assert_eq!(out.status.code(), Some(0), "{t}");
}
