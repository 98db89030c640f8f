//! The core link against a real Linux neighbour (root): the `vbng` binary runs in a
//! network namespace with its core port on AF_PACKET over a veth pair whose other end,
//! in a second namespace, is the Linux kernel as the core gateway (198.51.100.254/24).
//! Checks: the BNG resolves the gateway by ARP (Linux answers our request; the
//! `vbng_core_arp_total` counters in `/metrics` show the request and the learned
//! binding), Linux resolves `core_ip` through our ARP reply, and an ICMP echo from
//! Linux to `core_ip` is answered; Linux resolves `core_ip6` by Neighbor Discovery
//! (our NA, with the Router flag, lands in its neighbour table) and the BNG resolves
//! Linux as `core_gateway6` by its own solicitation; `tshark` dissects the core capture with checksum
//! validation and no warnings. Fails (does not skip) without root, `ip`, `curl` or
//! `tshark`.

use std::os::fd::AsRawFd;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

fn sh(args: &[&str]) {
    let st = Command::new(args[0])
        .args(&args[1..])
        .status()
        .unwrap_or_else(|e| panic!("{args:?}: {e}"));
    assert!(st.success(), "{args:?} failed");
}

struct Lab {
    ns: [String; 2],
    dir: std::path::PathBuf,
    children: Vec<Child>,
}

impl Drop for Lab {
    fn drop(&mut self) {
        for c in self.children.iter_mut() {
            let _ = c.kill();
            let _ = c.wait();
        }
        for n in &self.ns {
            let _ = Command::new("ip").args(["netns", "del", n]).status();
        }
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

fn internet_checksum(b: &[u8]) -> u16 {
    let mut s: u32 = b
        .chunks(2)
        .map(|c| u32::from(u16::from_be_bytes([c[0], *c.get(1).unwrap_or(&0)])))
        .sum();
    while s > 0xffff {
        s = (s & 0xffff) + (s >> 16);
    }
    !(s as u16)
}

/// From inside namespace `ns`: send ICMP echo requests to `dst` on a raw socket and
/// wait for a reply with our identifier. Returns the replies seen.
fn ping_from(ns: &str, dst: [u8; 4], tries: u16) -> Result<u32, String> {
    let f = std::fs::File::open(format!("/var/run/netns/{ns}")).map_err(|e| e.to_string())?;
    // SAFETY: setns on a valid namespace fd affects only this thread.
    if unsafe { libc::setns(f.as_raw_fd(), libc::CLONE_NEWNET) } != 0 {
        return Err("setns failed".into());
    }
    // SAFETY: plain socket(2) call; the fd is closed below.
    let fd = unsafe { libc::socket(libc::AF_INET, libc::SOCK_RAW, libc::IPPROTO_ICMP) };
    if fd < 0 {
        return Err("raw socket".into());
    }
    let tv = libc::timeval {
        tv_sec: 1,
        tv_usec: 0,
    };
    // SAFETY: `tv` outlives the call; the length matches its type.
    unsafe {
        libc::setsockopt(
            fd,
            libc::SOL_SOCKET,
            libc::SO_RCVTIMEO,
            (&tv as *const libc::timeval).cast(),
            std::mem::size_of::<libc::timeval>() as libc::socklen_t,
        );
    }
    let sa = libc::sockaddr_in {
        sin_family: libc::AF_INET as libc::sa_family_t,
        sin_port: 0,
        sin_addr: libc::in_addr {
            s_addr: u32::from_ne_bytes(dst),
        },
        sin_zero: [0; 8],
    };
    let ident = 0x7b6e_u16;
    let mut replies = 0;
    for seq in 1..=tries {
        let mut m = vec![8, 0, 0, 0];
        m.extend_from_slice(&ident.to_be_bytes());
        m.extend_from_slice(&seq.to_be_bytes());
        m.extend_from_slice(b"vbng core-link echo");
        let c = internet_checksum(&m);
        m[2..4].copy_from_slice(&c.to_be_bytes());
        // SAFETY: `m` and `sa` are valid for the given lengths during the call.
        let n = unsafe {
            libc::sendto(
                fd,
                m.as_ptr().cast(),
                m.len(),
                0,
                (&sa as *const libc::sockaddr_in).cast(),
                std::mem::size_of::<libc::sockaddr_in>() as libc::socklen_t,
            )
        };
        if n < 0 {
            continue;
        }
        let deadline = Instant::now() + Duration::from_secs(1);
        while Instant::now() < deadline {
            let mut buf = [0u8; 1500];
            // SAFETY: `buf` is valid for writes of its length.
            let n = unsafe { libc::recv(fd, buf.as_mut_ptr().cast(), buf.len(), 0) };
            if n <= 0 {
                break;
            }
            let b = &buf[..n as usize];
            let hl = usize::from(b[0] & 0x0f) * 4;
            if b.len() >= hl + 8
                && b[12..16] == dst
                && b[hl] == 0
                && b[hl + 4..hl + 6] == ident.to_be_bytes()
                && internet_checksum(&b[hl..]) == 0
            {
                replies += 1;
                break;
            }
        }
    }
    // SAFETY: closing the fd we opened.
    unsafe { libc::close(fd) };
    Ok(replies)
}

#[test]
fn core_link_against_linux() {
    // SAFETY: geteuid has no preconditions.
    assert_eq!(
        unsafe { libc::geteuid() },
        0,
        "the namespace lab needs root (scripts/test runs it as root)"
    );
    for t in ["ip", "tshark", "curl"] {
        let ok = Command::new("sh")
            .args(["-c", &format!("command -v {t}")])
            .stdout(Stdio::null())
            .status()
            .map(|s| s.success())
            .unwrap_or(false);
        assert!(ok, "{t} not found (Debian iproute2 / tshark / curl)");
    }
    let id = std::process::id() % 100_000;
    let ns = [format!("vbng-core-{id}"), format!("vbng-cbng-{id}")];
    let dir = std::env::temp_dir().join(format!("vbng-netns-core-{id}"));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).expect("dir");
    let mut lab = Lab {
        ns: ns.clone(),
        dir: dir.clone(),
        children: Vec::new(),
    };
    let (vl, vb) = (format!("vl{id}"), format!("vc{id}"));
    for x in &ns {
        sh(&["ip", "netns", "add", x]);
    }
    sh(&[
        "ip", "link", "add", &vl, "type", "veth", "peer", "name", &vb,
    ]);
    sh(&["ip", "link", "set", &vl, "netns", &ns[0]]);
    sh(&["ip", "link", "set", &vb, "netns", &ns[1]]);
    sh(&[
        "ip",
        "-n",
        &ns[1],
        "link",
        "set",
        &vb,
        "address",
        "02:00:00:00:c0:02",
    ]);
    sh(&[
        "ip",
        "-n",
        &ns[0],
        "addr",
        "add",
        "198.51.100.254/24",
        "dev",
        &vl,
    ]);
    sh(&[
        "ip",
        "-n",
        &ns[0],
        "-6",
        "addr",
        "add",
        "2001:db8:c0de::fe/64",
        "dev",
        &vl,
        "nodad",
    ]);
    for (x, v) in [(&ns[0], &vl), (&ns[1], &vb)] {
        sh(&["ip", "-n", x, "link", "set", v, "up"]);
        sh(&["ip", "-n", x, "link", "set", "lo", "up"]);
    }
    let cap = dir.join("core.pcap");
    let tshark = Command::new("ip")
        .args([
            "netns",
            "exec",
            &ns[0],
            "tshark",
            "-q",
            "-a",
            "duration:12",
            "-i",
            &vl,
            "-w",
        ])
        .arg(&cap)
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("tshark");
    lab.children.push(tshark);
    std::thread::sleep(Duration::from_secs(2)); // tshark starts capturing
    let cfg = "name = \"vbng\"\nmac = \"02:00:00:00:b0:01\"\n\
               core_ip = \"198.51.100.1/24\"\ncore_gateway = \"198.51.100.254\"\n\
               core_ip6 = \"2001:db8:c0de::1\"\ncore_gateway6 = \"2001:db8:c0de::fe\"\n\
               listen = \"127.0.0.1:9181\"\n";
    let cfg_path = dir.join("vbng.toml");
    std::fs::write(&cfg_path, cfg).expect("config");
    let bng = Command::new("ip")
        .args([
            "netns",
            "exec",
            &ns[1],
            env!("CARGO_BIN_EXE_vbng"),
            "run",
            "-c",
        ])
        .arg(&cfg_path)
        .arg("--access")
        .arg(format!("pcap::{}", dir.join("access.pcap").display()))
        .args([
            "--core",
            &format!("afpacket:{vb}"),
            "--max-sessions",
            "16",
            "--duration",
            "60",
        ])
        .stdout(Stdio::null())
        .stderr(
            std::fs::File::create(dir.join("vbng.log"))
                .map(Stdio::from)
                .unwrap_or(Stdio::null()),
        )
        .spawn()
        .expect("vbng");
    lab.children.push(bng);

    // The BNG asks for the gateway at start and Linux answers.
    let metrics = || {
        Command::new("ip")
            .args([
                "netns",
                "exec",
                &ns[1],
                "curl",
                "-s",
                "-m",
                "2",
                "http://127.0.0.1:9181/metrics",
            ])
            .output()
            .map(|o| String::from_utf8_lossy(&o.stdout).into_owned())
            .unwrap_or_default()
    };
    let counter = |m: &str, kind: &str| -> u64 {
        m.lines()
            .find(|l| l.starts_with(&format!("vbng_core_arp_total{{kind=\"{kind}\"}}")))
            .and_then(|l| l.split_whitespace().last())
            .and_then(|v| v.parse().ok())
            .unwrap_or(0)
    };
    let deadline = Instant::now() + Duration::from_secs(15);
    let mut m = String::new();
    while Instant::now() < deadline {
        m = metrics();
        if counter(&m, "learned") >= 1 {
            break;
        }
        std::thread::sleep(Duration::from_millis(300));
    }
    assert!(counter(&m, "request") >= 1, "no ARP request:\n{m}");
    assert!(
        counter(&m, "learned") >= 1,
        "gateway not learned:\n{m}\nlog: {}",
        std::fs::read_to_string(dir.join("vbng.log")).unwrap_or_default()
    );

    // Linux pings core_ip: it resolves us by ARP (its entry learned from our request
    // is flushed first, so it has to ask), we answer the echo.
    let _ = Command::new("ip")
        .args(["-n", &ns[0], "neigh", "flush", "to", "198.51.100.1"])
        .status();
    let ns0 = ns[0].clone();
    let replies = std::thread::spawn(move || ping_from(&ns0, [198, 51, 100, 1], 3))
        .join()
        .expect("ping thread")
        .expect("ping");
    assert!(replies >= 2, "{replies} of 3 echoes answered");
    let neigh = Command::new("ip")
        .args(["-n", &ns[0], "neigh", "show", "198.51.100.1"])
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).into_owned())
        .unwrap_or_default();
    assert!(
        neigh.contains("02:00:00:00:c0:02"),
        "Linux neighbour: {neigh}"
    );
    // IPv6: Linux resolves core_ip6 by Neighbor Discovery (RFC 4861 §7.2): its NS is
    // answered by our NA.
    // A UDP datagram from Linux to core_ip6 makes the kernel resolve it first.
    let ns0 = ns[0].clone();
    let ping6 = std::thread::spawn(move || -> Result<(), String> {
        let f = std::fs::File::open(format!("/var/run/netns/{ns0}")).map_err(|e| e.to_string())?;
        // SAFETY: setns on a valid namespace fd affects only this thread.
        if unsafe { libc::setns(f.as_raw_fd(), libc::CLONE_NEWNET) } != 0 {
            return Err("setns failed".into());
        }
        let s = std::net::UdpSocket::bind("[::]:0").map_err(|e| e.to_string())?;
        for _ in 0..3 {
            s.send_to(b"nd", "[2001:db8:c0de::1]:9")
                .map_err(|e| e.to_string())?;
            std::thread::sleep(Duration::from_millis(300));
        }
        Ok(())
    })
    .join()
    .map_err(|_| "udp6 thread panicked".to_string())
    .and_then(|r| r);
    // Linux may first learn us from our own solicitation (state DELAY, no router
    // flag); its probe is then answered by our NA, which carries the Router flag.
    let show6 = || {
        Command::new("ip")
            .args(["-n", &ns[0], "-6", "neigh", "show", "2001:db8:c0de::1"])
            .output()
            .map(|o| String::from_utf8_lossy(&o.stdout).into_owned())
            .unwrap_or_default()
    };
    let until = Instant::now() + Duration::from_secs(10);
    let mut neigh6 = show6();
    while !neigh6.contains("router") && Instant::now() < until {
        std::thread::sleep(Duration::from_millis(250));
        neigh6 = show6();
    }
    assert!(
        neigh6.contains("02:00:00:00:c0:02") && neigh6.contains("router"),
        "Linux IPv6 neighbour: {neigh6}\nudp6 send: {ping6:?}"
    );
    let m = metrics();
    assert!(counter(&m, "reply") >= 1, "no ARP reply:\n{m}");
    // The BNG resolved its IPv6 gateway (Linux) by Neighbor Discovery.
    let nd_learned = m
        .lines()
        .find(|l| l.starts_with("vbng_core_nd_total{kind=\"learned\"}"))
        .and_then(|l| l.split_whitespace().last())
        .and_then(|v| v.parse::<u64>().ok())
        .unwrap_or(0);
    assert!(nd_learned >= 1, "IPv6 gateway not learned:\n{m}");
    assert!(
        m.contains("vbng_icmp_total{kind=\"echo_reply\"}"),
        "no echo counter:\n{m}"
    );

    // The capture stops by itself after 12 s (a signal to `ip netns exec` may not
    // reach tshark in time for it to flush); then dissect it.
    if let Some(t) = lab.children.first_mut() {
        let _ = t.wait();
    }
    let run = |filter: &str| {
        let o = Command::new("tshark")
            .arg("-r")
            .arg(&cap)
            .args(["-o", "ip.check_checksum:TRUE", "-Y", filter])
            .output()
            .expect("tshark");
        String::from_utf8_lossy(&o.stdout).into_owned()
    };
    let bad = run("_ws.malformed || _ws.expert.severity >= 0x00600000 \
         || ip.checksum.status == 0 || icmp.checksum.status == 0");
    assert!(bad.trim().is_empty(), "tshark flags frames:\n{bad}");
    let from_us = "eth.src == 02:00:00:00:c0:02";
    assert!(
        !run(&format!(
            "{from_us} && arp.opcode == 1 && arp.dst.proto_ipv4 == 198.51.100.254"
        ))
        .trim()
        .is_empty(),
        "no ARP request from the BNG in the capture"
    );
    assert!(
        !run(&format!(
            "{from_us} && arp.opcode == 2 && arp.src.proto_ipv4 == 198.51.100.1"
        ))
        .trim()
        .is_empty(),
        "no ARP reply from the BNG in the capture:\n{}",
        run("frame")
    );
    assert!(
        run(&format!(
            "{from_us} && icmp.type == 0 && ip.src == 198.51.100.1 && icmp.checksum.status == 1"
        ))
        .lines()
        .count()
            >= 2,
        "echo replies missing from the capture"
    );
}
