//! The `router` binary as an IPsec gateway against strongSwan, in network
//! namespaces:
//!
//! ```text
//!  hA 10.1.0.2 ── 10.1.0.1 [router, afpacket] 192.0.2.1 ══ 192.0.2.2 [charon] 10.2.0.1 ── 10.2.0.2 hB
//! ```
//!
//! charon (kernel-libipsec, which always UDP-encapsulates ESP, so IKE moves to port
//! 4500, RFC 7296 §2.23) routes 10.1.0.0/16 into its tunnel; the router's
//! `esp-encrypt` protects 10.1.0.0/16 → 10.2.0.0/16 and its `esp-decrypt` takes
//! the ESP addressed to 192.0.2.1. Each test: the IKE SA comes up (charon initiates
//! to our responder / our `start_action = start` initiates), pings (busybox) pass
//! hA → hB and hB → hA, a UDP stream runs across a child SA rekey (started by
//! charon / by our soft lifetime) and is checked for loss, a delete from one side
//! (`swanctl --terminate` / the router's shutdown) removes the SAs on both, the
//! router's liveness checks (DPD) are answered, and
//! tshark dissects the captured IKE without malformed-packet or error expert info.
//!
//! Root only; skipped with a message without root, charon, kernel-libipsec,
//! busybox or tshark. Every poll waits for a condition (with a deadline) on the
//! router's metrics file or `swanctl --list-sas`.

use std::net::UdpSocket;
use std::os::fd::AsRawFd;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

const CHARON: &str = "/usr/lib/ipsec/charon";
const PSK: &str = "router-interop-psk-0123456789";

fn skip(why: &str) {
    eprintln!("ipsec_strongswan: skipped: {why}");
}

fn which(t: &str) -> bool {
    std::env::var_os("PATH").is_some_and(|p| std::env::split_paths(&p).any(|d| d.join(t).is_file()))
}

fn can_run() -> bool {
    // SAFETY: geteuid has no preconditions.
    if unsafe { libc::geteuid() } != 0 {
        skip("needs root (network namespaces)");
        return false;
    }
    for t in ["swanctl", "ip", "unshare", "busybox", "tshark", "ethtool"] {
        if !which(t) {
            skip(&format!("{t} not installed"));
            return false;
        }
    }
    if !Path::new(CHARON).is_file()
        || !Path::new("/usr/lib/ipsec/plugins/libstrongswan-kernel-libipsec.so").is_file()
    {
        skip("charon or its kernel-libipsec plugin not installed");
        return false;
    }
    true
}

fn run(cmd: &mut Command) -> String {
    let out = cmd.output().unwrap_or_else(|e| panic!("{cmd:?}: {e}"));
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(out.status.success(), "{cmd:?} failed:\n{text}");
    text
}

fn ip(args: &[&str]) {
    run(Command::new("ip").args(args));
}

fn ns_run(ns: &str, args: &[&str]) -> String {
    run(Command::new("ip").args(["netns", "exec", ns]).args(args))
}

struct Lab {
    /// hA, gA (router), gB (charon), hB.
    ns: [String; 4],
    /// veth names: hA-side, router lan, router wan, charon wan, charon lan, hB-side.
    dev: [String; 6],
    dir: PathBuf,
    router: Option<Child>,
    charon: Option<Child>,
    tshark: Option<Child>,
}

fn sigterm(c: &mut Child, sig: i32) {
    if let Ok(pid) = i32::try_from(c.id()) {
        // SAFETY: signalling a child process we spawned.
        unsafe { libc::kill(pid, sig) };
    }
    let t = Instant::now();
    while !matches!(c.try_wait(), Ok(Some(_))) {
        if t.elapsed() > Duration::from_secs(5) {
            let _ = c.kill();
            let _ = c.wait();
            break;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

impl Lab {
    fn new(tag: &str) -> Lab {
        let id = std::process::id();
        let ns = ["ha", "ga", "gb", "hb"].map(|n| format!("ipsr{tag}-{n}-{id}"));
        let dev = ["a0", "a1", "w0", "w1", "b0", "b1"].map(|d| format!("{tag}{d}{id}"));
        let base = option_env!("CARGO_TARGET_TMPDIR")
            .map(PathBuf::from)
            .unwrap_or_else(std::env::temp_dir);
        let dir = base.join(format!("router-ipsec-{tag}-{id}"));
        std::fs::create_dir_all(&dir).expect("scratch dir");
        let lab = Lab {
            ns,
            dev,
            dir,
            router: None,
            charon: None,
            tshark: None,
        };
        for n in &lab.ns {
            ip(&["netns", "add", n]);
            ip(&["-n", n, "link", "set", "lo", "up"]);
        }
        let [ha, ga, gb, hb] = &lab.ns;
        let d = &lab.dev;
        for (x, nx, y, ny) in [
            (&d[0], ha, &d[1], ga),
            (&d[2], ga, &d[3], gb),
            (&d[4], gb, &d[5], hb),
        ] {
            ip(&[
                "link", "add", x, "netns", nx, "type", "veth", "peer", "name", y, "netns", ny,
            ]);
        }
        for (n, dv, a) in [
            (ha, &d[0], Some("10.1.0.2/24")),
            (ga, &d[1], None),
            (ga, &d[2], None),
            (gb, &d[3], Some("192.0.2.2/24")),
            (gb, &d[4], Some("10.2.0.1/24")),
            (hb, &d[5], Some("10.2.0.2/24")),
        ] {
            if let Some(a) = a {
                ip(&["-n", n, "addr", "add", a, "dev", dv]);
            }
            ip(&["-n", n, "link", "set", dv, "up"]);
            // Full checksums in every frame: the router reads them off the wire.
            ns_run(n, &["ethtool", "-K", dv, "tx", "off", "rx", "off"]);
        }
        ip(&["-n", ha, "route", "add", "default", "via", "10.1.0.1"]);
        ip(&["-n", hb, "route", "add", "default", "via", "10.2.0.1"]);
        ns_run(gb, &["sysctl", "-qw", "net.ipv4.ip_forward=1"]);
        ns_run(gb, &["sysctl", "-qw", "net.ipv4.conf.all.rp_filter=0"]);
        lab
    }

    fn path(&self, f: &str) -> PathBuf {
        self.dir.join(f)
    }

    fn start_capture(&mut self) {
        let child = Command::new("ip")
            .args([
                "netns",
                "exec",
                &self.ns[2],
                "tshark",
                "-q",
                "-i",
                &self.dev[3],
            ])
            .args(["-f", "udp port 500 or udp port 4500", "-w"])
            .arg(self.path("wan.pcap"))
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(self.path("tshark.stderr")).expect("file"))
            .spawn()
            .expect("tshark");
        self.tshark = Some(child);
        let t = Instant::now();
        while !std::fs::read_to_string(self.path("tshark.stderr"))
            .unwrap_or_default()
            .contains("Capturing on")
        {
            assert!(
                t.elapsed() < Duration::from_secs(10),
                "tshark did not start"
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// Stops the capture and checks its IKE: at least `min` messages, each
    /// dissected without malformed-packet or error/warning expert info.
    fn check_capture(&mut self, min: usize) {
        if let Some(mut c) = self.tshark.take() {
            sigterm(&mut c, libc::SIGINT);
        }
        let out = run(Command::new("tshark")
            .arg("-r")
            .arg(self.path("wan.pcap"))
            .args(["-Y", "isakmp", "-V"]));
        std::fs::write(self.path("wan.txt"), &out).ok();
        let n = out
            .matches("Internet Security Association and Key Management Protocol")
            .count();
        assert!(n >= min, "{n} IKE messages captured, expected {min}+");
        for bad in ["Malformed", "[Expert Info (Error", "[Expert Info (Warning"] {
            assert!(!out.contains(bad), "tshark reports {bad:?}; see wan.txt");
        }
    }

    fn start_router(&mut self, start_action: &str, child_rekey: &str) {
        let conf = format!(
            r#"[engine]
workers = 1
pool_buffers = 4096

[[interface]]
name = "lan"
port = "afpacket:{lan}"
ipv4 = ["10.1.0.1/24"]

[[interface]]
name = "wan"
port = "afpacket:{wan}"
ipv4 = ["192.0.2.1/24"]

[[route]]
prefix = "10.2.0.0/16"
via = "192.0.2.2"

[ike]
retransmit_ms = 500
rekey_grace_s = 2

[ike.connections.gw-b]
local_addrs = "192.0.2.1"
remote_addrs = "192.0.2.2"
local_id = "gw-a.example"
remote_id = "gw-b.example"
psk = "{PSK}"
proposals = ["aes256gcm16-prfsha256-x25519"]
start_action = "{start_action}"
retry_s = 2
dpd_delay_s = 3

[ike.connections.gw-b.children.net]
local_ts = ["10.1.0.0/16"]
remote_ts = ["10.2.0.0/16"]
esp_proposals = ["aes256gcm16"]
{child_rekey}
"#,
            lan = self.dev[1],
            wan = self.dev[2],
        );
        std::fs::write(self.path("router.toml"), conf).expect("config");
        let child = Command::new("ip")
            .args(["netns", "exec", &self.ns[1], env!("CARGO_BIN_EXE_router")])
            .arg("--config")
            .arg(self.path("router.toml"))
            .arg("--metrics")
            .arg(self.path("metrics.txt"))
            .env("RUST_LOG", "info")
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(self.path("router.log")).expect("file"))
            .spawn()
            .expect("router");
        self.router = Some(child);
        self.wait("router metrics", 10, || self.metric("ike_sas").is_some());
    }

    fn start_charon(&mut self) {
        let d = &self.dir;
        std::fs::create_dir_all(d.join("run")).expect("run dir");
        let conf = format!(
            r#"charon {{
  load = random nonce openssl kdf aes gcm sha1 sha2 hmac pem pkcs1 x509 pubkey kernel-libipsec kernel-netlink socket-default vici
  port = 500
  port_nat_t = 4500
  install_virtual_ip = no
  retransmit_tries = 3
  filelog {{
    charon {{
      path = {log}
      default = 1
      ike = 2
      chd = 2
      time_format = %T
    }}
  }}
  plugins {{
    vici {{
      socket = unix://{vici}
    }}
  }}
}}
"#,
            log = d.join("charon.log").display(),
            vici = d.join("charon.vici").display(),
        );
        let swanctl = format!(
            r#"connections {{
  gw-a {{
    version = 2
    local_addrs = 192.0.2.2
    remote_addrs = 192.0.2.1
    proposals = aes256gcm16-prfsha256-x25519
    mobike = no
    fragmentation = no
    local {{
      auth = psk
      id = gw-b.example
    }}
    remote {{
      auth = psk
      id = gw-a.example
    }}
    children {{
      net {{
        local_ts = 10.2.0.0/16
        remote_ts = 10.1.0.0/16
        esp_proposals = aes256gcm16
        mode = tunnel
        start_action = none
      }}
    }}
  }}
}}
secrets {{
  ike-gw {{
    id-a = gw-a.example
    id-b = gw-b.example
    secret = "{PSK}"
  }}
}}
"#
        );
        std::fs::write(d.join("strongswan.conf"), conf).expect("strongswan.conf");
        std::fs::write(d.join("swanctl.conf"), swanctl).expect("swanctl.conf");
        let script = format!(
            "mount --bind {} /run && exec {CHARON}",
            d.join("run").display()
        );
        let child = Command::new("ip")
            .args([
                "netns",
                "exec",
                &self.ns[2],
                "unshare",
                "-m",
                "--propagation",
                "private",
            ])
            .args(["sh", "-c", &script])
            .env("STRONGSWAN_CONF", d.join("strongswan.conf"))
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(d.join("charon.stderr")).expect("file"))
            .spawn()
            .expect("charon");
        self.charon = Some(child);
        self.wait("charon's vici socket", 15, || {
            d.join("charon.vici").exists()
        });
        self.swanctl(&[
            "--load-all",
            "--noprompt",
            "--file",
            &d.join("swanctl.conf").display().to_string(),
        ]);
    }

    fn swanctl(&self, args: &[&str]) -> String {
        let uri = format!("unix://{}", self.path("charon.vici").display());
        run(Command::new("swanctl").args(args).args(["--uri", &uri]))
    }

    /// A sample of the router's metrics file.
    fn metric(&self, name: &str) -> Option<f64> {
        let m = std::fs::read_to_string(self.path("metrics.txt")).ok()?;
        m.lines()
            .find(|l| l.split_whitespace().next() == Some(name))
            .and_then(|l| l.split_whitespace().nth(1))
            .and_then(|v| v.parse().ok())
    }

    fn wait(&self, what: &str, secs: u64, cond: impl Fn() -> bool) {
        let t = Instant::now();
        while !cond() {
            assert!(
                t.elapsed() < Duration::from_secs(secs),
                "timed out waiting for {what}; logs in {}",
                self.dir.display()
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// The INSTALLED child SA's SPIs (in, out) in charon's listing of gw-a.
    fn charon_child(&self) -> Option<(String, String)> {
        let l = self.swanctl(&["--list-sas"]);
        let mut inside = false;
        let (mut i, mut o) = (None, None);
        for line in l.lines() {
            let t = line.trim_start();
            if t.contains(", reqid ") {
                inside = t.contains("INSTALLED");
                continue;
            }
            if inside {
                let mut w = t
                    .split(|c: char| c == ',' || c.is_whitespace())
                    .filter(|x| !x.is_empty());
                match (w.next(), w.next()) {
                    (Some("in"), Some(s)) => i = Some(s.to_string()),
                    (Some("out"), Some(s)) => o = Some(s.to_string()),
                    _ => {}
                }
            }
        }
        Some((i?, o?))
    }

    fn charon_established(&self) -> bool {
        self.swanctl(&["--list-sas"]).contains("ESTABLISHED") && self.charon_child().is_some()
    }

    fn charon_empty(&self) -> bool {
        !self.swanctl(&["--list-sas"]).contains("gw-a:")
    }

    /// Waits for the tunnel up on both sides.
    fn wait_up(&self) {
        self.wait("the router's SAs", 20, || {
            self.metric("ike_sas") == Some(1.0) && self.metric("child_sas") == Some(1.0)
        });
        self.wait("charon's INSTALLED child SA", 10, || {
            self.charon_established()
        });
    }

    /// The metrics file (engine and IKE daemon) passes `promtool check metrics`,
    /// when promtool is installed.
    fn promtool(&self) {
        if !which("promtool") {
            return;
        }
        let m = std::fs::read(self.path("metrics.txt")).expect("metrics");
        let mut c = Command::new("promtool")
            .args(["check", "metrics"])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("promtool");
        use std::io::Write;
        c.stdin.take().expect("stdin").write_all(&m).expect("write");
        let out = c.wait_with_output().expect("promtool");
        assert!(
            out.status.success(),
            "promtool: {}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
    }

    /// busybox ping from namespace `n` to `dst` until one answer (ARP and the
    /// first ESP may take a moment), at most 10 tries.
    fn ping(&self, n: usize, dst: &str) {
        for _ in 0..10 {
            let ok = Command::new("ip")
                .args([
                    "netns",
                    "exec",
                    &self.ns[n],
                    "busybox",
                    "ping",
                    "-c",
                    "1",
                    "-W",
                    "1",
                    dst,
                ])
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .status()
                .is_ok_and(|s| s.success());
            if ok {
                return;
            }
        }
        panic!(
            "no ping answer from {dst} in {}; logs in {}",
            self.ns[n],
            self.dir.display()
        );
    }

    /// Three pings each way must all be answered.
    fn pings_both_ways(&self) {
        self.ping(0, "10.2.0.2");
        self.ping(3, "10.1.0.2");
        for (n, dst) in [(0, "10.2.0.2"), (3, "10.1.0.2")] {
            let out = ns_run(&self.ns[n], &["busybox", "ping", "-c", "3", "-W", "2", dst]);
            assert!(out.contains("3 packets received"), "{out}");
        }
    }
}

impl Drop for Lab {
    fn drop(&mut self) {
        for c in [self.router.take(), self.charon.take(), self.tshark.take()]
            .into_iter()
            .flatten()
        {
            let mut c = c;
            sigterm(&mut c, libc::SIGTERM);
        }
        for n in &self.ns {
            let _ = Command::new("ip").args(["netns", "del", n]).output();
        }
        if !std::thread::panicking() {
            let _ = std::fs::remove_dir_all(&self.dir);
        } else {
            eprintln!("ipsec_strongswan: logs kept in {}", self.dir.display());
        }
    }
}

fn enter_netns(ns: &str) {
    let f = std::fs::File::open(Path::new("/run/netns").join(ns)).expect("open netns");
    // SAFETY: plain syscall on a descriptor we own; only this thread changes namespace.
    let rc = unsafe { libc::setns(f.as_raw_fd(), libc::CLONE_NEWNET) };
    assert_eq!(rc, 0, "setns: {}", std::io::Error::last_os_error());
}

/// A UDP echo server in hB and a sender in hA (one datagram every 5 ms, numbered)
/// until `stop`; returns (sent, echoed).
fn udp_stream(lab: &Lab, stop: Arc<AtomicBool>) -> std::thread::JoinHandle<(u32, u32)> {
    let (hb, ha) = (lab.ns[3].clone(), lab.ns[0].clone());
    let stop2 = stop.clone();
    let ready = Arc::new(AtomicBool::new(false));
    let ready2 = ready.clone();
    std::thread::spawn(move || {
        enter_netns(&hb);
        let s = UdpSocket::bind("10.2.0.2:7777").expect("bind echo");
        s.set_read_timeout(Some(Duration::from_millis(100))).ok();
        ready2.store(true, Ordering::Relaxed);
        let mut b = [0u8; 64];
        while !stop2.load(Ordering::Relaxed) {
            if let Ok((n, from)) = s.recv_from(&mut b) {
                let _ = s.send_to(&b[..n], from);
            }
        }
    });
    while !ready.load(Ordering::Relaxed) {
        std::thread::sleep(Duration::from_millis(10));
    }
    std::thread::spawn(move || {
        enter_netns(&ha);
        let s = UdpSocket::bind("10.1.0.2:0").expect("bind sender");
        s.set_nonblocking(true).ok();
        let (mut sent, mut got) = (0u32, std::collections::BTreeSet::new());
        let mut b = [0u8; 64];
        let mut drain_until = None;
        loop {
            if stop.load(Ordering::Relaxed) && drain_until.is_none() {
                drain_until = Some(Instant::now() + Duration::from_millis(500));
            }
            if drain_until.is_some_and(|t| Instant::now() >= t) {
                break;
            }
            if drain_until.is_none() {
                let _ = s.send_to(&sent.to_be_bytes(), "10.2.0.2:7777");
                sent += 1;
            }
            while let Ok(n) = s.recv(&mut b) {
                if n == 4 {
                    got.insert(u32::from_be_bytes([b[0], b[1], b[2], b[3]]));
                }
            }
            std::thread::sleep(Duration::from_millis(5));
        }
        (sent, got.len() as u32)
    })
}

#[test]
fn strongswan_initiates_to_the_router() {
    if !can_run() {
        return;
    }
    let mut lab = Lab::new("r");
    lab.start_capture();
    lab.start_router("none", "rekey_time_s = 0");
    lab.start_charon();
    lab.swanctl(&["--initiate", "--child", "net", "--timeout", "15"]);
    lab.wait_up();
    lab.promtool();
    lab.pings_both_ways();
    // charon rekeys the child SA in the middle of a UDP stream.
    let before = lab.charon_child().expect("child");
    let stop = Arc::new(AtomicBool::new(false));
    let stream = udp_stream(&lab, stop.clone());
    std::thread::sleep(Duration::from_millis(1000));
    lab.swanctl(&["--rekey", "--child", "net"]);
    lab.wait("a new INSTALLED child SA at charon", 10, || {
        lab.charon_child().is_some_and(|c| c != before)
    });
    lab.wait("the router's child rekey", 10, || {
        lab.metric("ike_rekeys_total{sa=\"child\"}") == Some(1.0)
    });
    std::thread::sleep(Duration::from_millis(3000)); // the old SA's grace passes
    stop.store(true, Ordering::Relaxed);
    let (sent, echoed) = stream.join().expect("stream");
    eprintln!("ipsec_strongswan: charon's rekey: {echoed}/{sent} echoed");
    assert!(sent > 300, "{sent}");
    assert!(
        sent - echoed <= 2,
        "lost {} of {sent} across the rekey",
        sent - echoed
    );
    lab.wait("the old child SA retired", 5, || {
        lab.metric("child_sas") == Some(1.0)
    });
    lab.pings_both_ways();
    // After 3 s without IKE traffic the router checks charon's liveness (§1.4).
    lab.wait("a liveness check", 10, || {
        lab.metric("ike_dpd_checks_total").is_some_and(|n| n >= 1.0)
    });
    lab.wait("its answer", 5, || {
        lab.metric("ike_messages_received_total") > Some(0.0)
            && lab.metric("ike_retransmits_total") == Some(0.0)
    });
    assert_eq!(lab.metric("ike_sas"), Some(1.0));
    // charon deletes: the router removes its SAs.
    lab.swanctl(&["--terminate", "--ike", "gw-a", "--timeout", "10"]);
    lab.wait("the router's SAs gone", 10, || {
        lab.metric("ike_sas") == Some(0.0) && lab.metric("child_sas") == Some(0.0)
    });
    assert!(lab.charon_empty());
    assert_eq!(
        lab.metric("ike_failures_total{reason=\"timeout\"}"),
        Some(0.0)
    );
    lab.check_capture(6);
}

#[test]
fn the_router_initiates_to_strongswan() {
    if !can_run() {
        return;
    }
    let mut lab = Lab::new("i");
    lab.start_capture();
    lab.start_charon();
    // Our soft lifetime rekeys the child SA after 8 s (less up to 0.4 s jitter).
    lab.start_router("start", "rekey_time_s = 8\nlife_time_s = 12");
    lab.wait_up();
    lab.pings_both_ways();
    let before = lab.charon_child().expect("child");
    let stop = Arc::new(AtomicBool::new(false));
    let stream = udp_stream(&lab, stop.clone());
    lab.wait("the router's child rekey", 15, || {
        lab.metric("ike_rekeys_total{sa=\"child\"}") == Some(1.0)
    });
    lab.wait("a new INSTALLED child SA at charon", 10, || {
        lab.charon_child().is_some_and(|c| c != before)
    });
    std::thread::sleep(Duration::from_millis(2500)); // the old SA's grace passes
    stop.store(true, Ordering::Relaxed);
    let (sent, echoed) = stream.join().expect("stream");
    eprintln!("ipsec_strongswan: our rekey: {echoed}/{sent} echoed");
    assert!(sent > 300, "{sent}");
    assert!(
        sent - echoed <= 2,
        "lost {} of {sent} across the rekey",
        sent - echoed
    );
    lab.pings_both_ways();
    // The router goes down: it deletes its IKE SA, charon's SAs go too.
    if let Some(mut r) = lab.router.take() {
        sigterm(&mut r, libc::SIGINT);
    }
    lab.wait("charon's SAs gone", 10, || lab.charon_empty());
    let log = std::fs::read_to_string(lab.path("router.log")).unwrap_or_default();
    assert!(log.contains("deleted locally"), "{log}");
    lab.check_capture(8);
}
