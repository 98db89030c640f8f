//! Configuration at scale in the unikernel (issue 18 item 2): a router with a route
//! file of 100 000 BGP-like prefixes (`testbed image scale-config router`) boots from
//! a config drive (the TOML as `openstack/latest/user_data`, the route file beside
//! it at the path the TOML names), reports its boot-to-ready time and memory, and
//! forwards by routes of the big table; the vBNG loads 100 000 local users from a
//! user file on the drive. (The 1M-prefix figures in benches/RESULTS.md come from
//! the same commands with `--count 1000000`.)
//!
//! Needs: qemu-system-x86, qemu-utils, grub-pc-bin, xorriso (no root).

use dataplane::lpm::ipv4::Lpm4;
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::{Mutex, MutexGuard, OnceLock};
use std::time::{Duration, Instant};

fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("workspace root")
        .to_path_buf()
}

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

/// One guest at a time (boot times stay meaningful; the builds share a target dir).
fn qemu_lock() -> MutexGuard<'static, ()> {
    static L: Mutex<()> = Mutex::new(());
    L.lock().unwrap_or_else(|e| e.into_inner())
}

/// `testbed image build <vnf>` once per test process and VNF.
fn built(vnf: &'static str) {
    static B: OnceLock<Mutex<Vec<&'static str>>> = OnceLock::new();
    let done = B.get_or_init(|| Mutex::new(Vec::new()));
    let mut done = done.lock().unwrap_or_else(|e| e.into_inner());
    if done.contains(&vnf) {
        return;
    }
    need("qemu-system-x86_64", "qemu-system-x86");
    need("qemu-img", "qemu-utils");
    need("grub-mkrescue", "grub-pc-bin");
    need("xorriso", "xorriso");
    let out = testbed()
        .args(["image", "build", vnf])
        .output()
        .expect("run testbed image build");
    assert!(
        out.status.success(),
        "image build {vnf} failed:\n{}\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    done.push(vnf);
}

fn tmp(name: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!("uk-scale-{name}-{}", std::process::id()));
    std::fs::create_dir_all(&d).expect("temp dir");
    d
}

fn scale_config(vnf: &str, count: usize, dir: &Path) {
    let o = testbed()
        .args([
            "image",
            "scale-config",
            vnf,
            "--count",
            &count.to_string(),
            "--dir",
        ])
        .arg(dir)
        .output()
        .expect("run testbed image scale-config");
    assert!(
        o.status.success(),
        "scale-config {vnf}: {}",
        String::from_utf8_lossy(&o.stderr)
    );
}

fn mac(s: &str) -> [u8; 6] {
    let mut m = [0u8; 6];
    for (b, p) in m.iter_mut().zip(s.split(':')) {
        *b = u8::from_str_radix(p, 16).expect("hex");
    }
    m
}

/// An Ethernet II / IPv4 / UDP frame (header checksum filled, UDP checksum 0).
fn udp_frame(dst_mac: [u8; 6], src_mac: [u8; 6], src: [u8; 4], dst: [u8; 4]) -> Vec<u8> {
    let payload = b"uk-scale";
    let mut f = Vec::new();
    f.extend_from_slice(&dst_mac);
    f.extend_from_slice(&src_mac);
    f.extend_from_slice(&[0x08, 0x00]);
    let total = (20 + 8 + payload.len()) as u16;
    let mut ip = vec![0x45, 0, 0, 0, 0, 1, 0, 0, 64, 17, 0, 0];
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

/// The number after `key` in `line` (`key` ends before it).
fn number_after(line: &str, key: &str) -> Option<f64> {
    let rest = line.split(key).nth(1)?;
    rest.split(|c: char| !(c.is_ascii_digit() || c == '.'))
        .next()?
        .parse()
        .ok()
}

/// Destinations of the big table only (outside the connected 10.91.0.0/23), one
/// per next hop: the host's own LPM over the route file says where each must go.
fn destinations(routes: &str) -> [[u8; 4]; 2] {
    let mut lpm = Lpm4::new();
    let mut lines = Vec::new();
    for l in routes.lines() {
        let (p, nh) = l.split_once(' ').expect("PREFIX/LEN INDEX");
        let (a, len) = p.split_once('/').expect("prefix");
        let a: std::net::Ipv4Addr = a.parse().expect("address");
        let len: u8 = len.parse().expect("length");
        let nh: u32 = nh.parse().expect("index");
        lpm.add(u32::from(a), len, nh).expect("add");
        lines.push((u32::from(a), len));
    }
    let mut found: [Option<[u8; 4]>; 2] = [None, None];
    // The middle of each /24 route (the host part spares the network and broadcast
    // addresses), taken from the end of the file so as not to always pick the first.
    for &(a, len) in lines.iter().rev() {
        if len != 24 {
            continue;
        }
        let d = a | 77;
        if let Some(nh) = lpm.lookup(d) {
            let slot = &mut found[nh as usize & 1];
            if slot.is_none() {
                *slot = Some(d.to_be_bytes());
            }
        }
        if found.iter().all(Option::is_some) {
            break;
        }
    }
    [
        found[0].expect("a route to next hop 0"),
        found[1].expect("a route to next hop 1"),
    ]
}

/// 100 000 prefixes from a config drive: the guest's ready line reports them, its
/// boot-to-ready time and its memory; a datagram to an address of a /24 from the
/// table leaves by the NIC and for the neighbour the table's route names, in both
/// directions (access → core, core → access).
#[test]
fn router_boots_with_100k_prefixes_from_a_config_drive_and_forwards_by_them() {
    const N: usize = 100_000;
    built("router");
    let dir = tmp("router");
    scale_config("router", N, &dir);
    let routes = std::fs::read_to_string(dir.join("routes.txt")).expect("routes.txt");
    assert_eq!(routes.lines().count(), N);
    let dst = destinations(&routes);
    let router = [mac("02:00:00:00:91:01"), mac("02:00:00:00:91:11")];
    let neighbor = [mac("02:00:00:00:91:02"), mac("02:00:00:00:91:12")];
    // This process is the other end of both NICs (QEMU UDP-socket netdevs).
    let base = 17620u16;
    let socks: Vec<std::net::UdpSocket> = (0..2u16)
        .map(|i| {
            let p = base + 2 * i;
            let s = std::net::UdpSocket::bind(("127.0.0.1", p)).expect("bind");
            s.connect(("127.0.0.1", p + 1)).expect("connect");
            s.set_read_timeout(Some(Duration::from_millis(200)))
                .expect("timeout");
            s
        })
        .collect();
    let _g = qemu_lock();
    let mut child = testbed()
        .args([
            "image",
            "run",
            "router",
            "--no-build",
            "--memory",
            "256M",
            "--timeout",
            "240",
            "--config-drive",
            "config-2",
            "--append",
            "exit=20000 stats=0",
        ])
        .arg("--config")
        .arg(dir.join("router.toml"))
        .args(["--net", &format!("udp:{}:{}", base + 1, base)])
        .args(["--net", &format!("udp:{}:{}", base + 3, base + 2)])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn testbed image run");
    let (tx, rx) = std::sync::mpsc::channel();
    let out = child.stdout.take().expect("stdout");
    let reader = std::thread::spawn(move || {
        let mut all = String::new();
        for l in BufReader::new(out).lines().map_while(Result::ok) {
            if l.contains("router ready in") {
                let _ = tx.send(l.clone());
            }
            all += &l;
            all.push('\n');
        }
        all
    });
    let ready = rx.recv_timeout(Duration::from_secs(200));
    let mut routed = [false; 2];
    if ready.is_ok() {
        let t0 = Instant::now();
        let mut buf = [0u8; 2048];
        while routed.iter().any(|r| !r) && t0.elapsed() < Duration::from_secs(15) {
            // In on NIC i, for a route of the table whose next hop is on NIC 1 - i.
            for i in 0..2 {
                if routed[i] {
                    continue;
                }
                let j = 1 - i;
                let src = [10, 91, i as u8, 2];
                let f = udp_frame(router[i], neighbor[i], src, dst[j]);
                let _ = socks[i].send(&f);
                while let Ok(n) = socks[j].recv(&mut buf) {
                    let g = &buf[..n];
                    if g.len() == f.len()
                        && g[..6] == neighbor[j]
                        && g[6..12] == router[j]
                        && g[22] == 63
                        && g[26..34] == f[26..34]
                        && g[42..] == f[42..]
                    {
                        routed[i] = true;
                    }
                }
            }
        }
    }
    let st = child.wait().expect("wait for the guest");
    let console = reader.join().expect("console reader");
    let _ = std::fs::remove_dir_all(&dir);
    let line = ready.unwrap_or_else(|_| panic!("no ready line\n{console}"));
    assert_eq!(st.code(), Some(0), "{console}");
    assert!(
        console.contains("config drive: routes.txt ("),
        "route file not read from the drive\n{console}"
    );
    let ms = number_after(&line, " ready in ").expect("boot-to-ready time");
    assert!(ms > 0.0 && ms < 180_000.0, "{line}");
    let v4 = number_after(&line, " ports, ").expect("IPv4 route count") as usize;
    // The table plus the connected and local routes of two interfaces.
    assert!((N..N + 8).contains(&v4), "{line}");
    let used = number_after(&line, "memory used ").expect("memory used");
    assert!(used > 0.0, "{line}");
    for (i, r) in routed.iter().enumerate() {
        assert!(
            r,
            "nothing routed from NIC {i} to {:?} by the table\n{console}",
            dst[1 - i]
        );
    }
}

/// 100 000 local users in the vBNG's `user_file`, from the config drive: the ready
/// line counts them with the two of the example's own `[[users]]`.
#[test]
fn vbng_boots_with_100k_local_users_from_a_config_drive() {
    const N: usize = 100_000;
    built("vbng");
    let dir = tmp("vbng");
    scale_config("vbng", N, &dir);
    let _g = qemu_lock();
    let o = testbed()
        .args([
            "image",
            "run",
            "vbng",
            "--no-build",
            "--memory",
            "256M",
            "--timeout",
            "240",
            "--config-drive",
            "cidata",
            "--append",
            "exit=ready",
            "--net",
            "udp:17631:17630",
            "--net",
            "udp:17633:17632",
        ])
        .arg("--config")
        .arg(dir.join("vbng.toml"))
        .output()
        .expect("run testbed image run");
    let _ = std::fs::remove_dir_all(&dir);
    let t = format!(
        "{}{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    );
    assert_eq!(o.status.code(), Some(0), "{t}");
    assert!(t.contains("config drive: users.txt ("), "{t}");
    let line = t
        .lines()
        .find(|l| l.contains("vbng ready in"))
        .unwrap_or_else(|| panic!("no ready line\n{t}"));
    assert!(line.contains(&format!("{} local users", N + 2)), "{line}");
    assert!(number_after(line, "memory used ").is_some(), "{line}");
}
