//! The `vcpe` binary with its own IKEv2 (RFC 7296, PSK) against strongSwan as the
//! hub, in network namespaces:
//!
//! ```text
//!  hA 192.168.1.2 ── 192.168.1.1 [vcpe, afpacket] 198.51.100.2 ══ 198.51.100.3 [charon] 192.168.2.1 ── 192.168.2.2 hB
//! ```
//!
//! The vCPE initiates (`[tunnel.ike] initiate = true`); charon (kernel-libipsec,
//! which UDP-encapsulates ESP, RFC 3948) responds. The IKE SA comes up, busybox
//! pings pass hA → hB and hB → hA through the tunnel, and charon lists the child SA
//! as INSTALLED with traffic on it.
//!
//! Root only; skipped with a message without root, charon, kernel-libipsec,
//! busybox or ethtool.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

const CHARON: &str = "/usr/lib/ipsec/charon";
const PSK: &str = "vcpe-interop-psk-0123456789";

fn skip(why: &str) {
    eprintln!("ike_strongswan: skipped: {why}");
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
    for t in ["swanctl", "ip", "unshare", "busybox", "ethtool"] {
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

fn stop(c: &mut Child, sig: i32) {
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

struct Lab {
    /// hA, the vCPE, charon, hB.
    ns: [String; 4],
    /// hA-side, vcpe lan, vcpe wan, charon wan, charon lan, hB-side.
    dev: [String; 6],
    dir: PathBuf,
    vcpe: Option<Child>,
    charon: Option<Child>,
}

impl Drop for Lab {
    fn drop(&mut self) {
        for c in [self.vcpe.take(), self.charon.take()].into_iter().flatten() {
            let mut c = c;
            stop(&mut c, libc::SIGTERM);
        }
        for n in &self.ns {
            let _ = Command::new("ip").args(["netns", "del", n]).output();
        }
        if !std::thread::panicking() {
            let _ = std::fs::remove_dir_all(&self.dir);
        } else {
            eprintln!("ike_strongswan: logs kept in {}", self.dir.display());
        }
    }
}

impl Lab {
    fn new() -> Lab {
        let id = std::process::id();
        let ns = ["ha", "cpe", "hub", "hb"].map(|n| format!("vcsw-{n}-{id}"));
        let dev = ["a0", "a1", "w0", "w1", "b0", "b1"].map(|d| format!("vs{d}{id}"));
        let dir = std::env::temp_dir().join(format!("vcpe-swan-{id}"));
        std::fs::create_dir_all(&dir).expect("scratch dir");
        let lab = Lab {
            ns,
            dev,
            dir,
            vcpe: None,
            charon: None,
        };
        for n in &lab.ns {
            ip(&["netns", "add", n]);
            ip(&["-n", n, "link", "set", "lo", "up"]);
        }
        let [ha, cpe, hub, hb] = &lab.ns;
        let d = &lab.dev;
        for (x, nx, y, ny) in [
            (&d[0], ha, &d[1], cpe),
            (&d[2], cpe, &d[3], hub),
            (&d[4], hub, &d[5], hb),
        ] {
            ip(&[
                "link", "add", x, "netns", nx, "type", "veth", "peer", "name", y, "netns", ny,
            ]);
        }
        for (n, dv, a) in [
            (ha, &d[0], Some("192.168.1.2/24")),
            (cpe, &d[1], None),
            (cpe, &d[2], None),
            (hub, &d[3], Some("198.51.100.3/24")),
            (hub, &d[4], Some("192.168.2.1/24")),
            (hb, &d[5], Some("192.168.2.2/24")),
        ] {
            if let Some(a) = a {
                ip(&["-n", n, "addr", "add", a, "dev", dv]);
            }
            ip(&["-n", n, "link", "set", dv, "up"]);
            // full checksums in every frame: the vCPE reads them off the wire
            ns_run(n, &["ethtool", "-K", dv, "tx", "off", "rx", "off"]);
        }
        ip(&["-n", ha, "route", "add", "default", "via", "192.168.1.1"]);
        ip(&["-n", hb, "route", "add", "default", "via", "192.168.2.1"]);
        ns_run(hub, &["sysctl", "-qw", "net.ipv4.ip_forward=1"]);
        ns_run(hub, &["sysctl", "-qw", "net.ipv4.conf.all.rp_filter=0"]);
        lab
    }

    fn path(&self, f: &str) -> PathBuf {
        self.dir.join(f)
    }

    fn start_vcpe(&mut self) {
        let conf = format!(
            r#"[engine]
pool_buffers = 4096
[lan]
port = "afpacket:{lan}"
address = "192.168.1.1/24"
[wan]
port = "afpacket:{wan}"
address = "198.51.100.2/24"
gateway = "198.51.100.1"
[[tunnel]]
name = "hub"
peer = "198.51.100.3"
local = "192.168.1.0/24"
remote = "192.168.2.0/24"
[tunnel.ike]
psk = "{PSK}"
local_id = "cpe-a.example"
remote_id = "hub.example"
proposals = ["aes256gcm16-prfsha256-x25519"]
esp_proposals = ["aes256gcm16"]
"#,
            lan = self.dev[1],
            wan = self.dev[2],
        );
        std::fs::write(self.path("vcpe.toml"), conf).expect("config");
        let child = Command::new("ip")
            .args([
                "netns",
                "exec",
                &self.ns[1],
                env!("CARGO_BIN_EXE_vcpe"),
                "run",
            ])
            .arg(self.path("vcpe.toml"))
            .arg("--metrics")
            .arg(self.path("metrics.txt"))
            .env("RUST_LOG", "info")
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(self.path("vcpe.log")).expect("file"))
            .spawn()
            .expect("vcpe");
        self.vcpe = Some(child);
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
  cpe-a {{
    version = 2
    local_addrs = 198.51.100.3
    remote_addrs = 198.51.100.2
    proposals = aes256gcm16-prfsha256-x25519
    mobike = no
    fragmentation = no
    local {{
      auth = psk
      id = hub.example
    }}
    remote {{
      auth = psk
      id = cpe-a.example
    }}
    children {{
      net {{
        local_ts = 192.168.2.0/24
        remote_ts = 192.168.1.0/24
        esp_proposals = aes256gcm16
        mode = tunnel
        start_action = none
      }}
    }}
  }}
}}
secrets {{
  ike-cpe {{
    id-a = cpe-a.example
    id-b = hub.example
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

    /// busybox ping from namespace `n` to `dst`: one answer within 10 tries, then
    /// three of three.
    fn ping(&self, n: usize, dst: &str) {
        let once = || {
            Command::new("ip")
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
                .is_ok_and(|s| s.success())
        };
        assert!(
            (0..10).any(|_| once()),
            "no ping answer from {dst} in {}; logs in {}",
            self.ns[n],
            self.dir.display()
        );
        let out = ns_run(&self.ns[n], &["busybox", "ping", "-c", "3", "-W", "2", dst]);
        assert!(out.contains("3 packets received"), "{out}");
    }
}

#[test]
fn vcpe_initiates_to_a_strongswan_hub_and_pings_cross_both_ways() {
    if !can_run() {
        return;
    }
    let mut lab = Lab::new();
    lab.start_charon();
    lab.start_vcpe();
    lab.wait("the IKE SA", 20, || {
        lab.metric("ike_sas").is_some_and(|v| v >= 1.0)
    });
    lab.wait("charon's child SA", 10, || {
        lab.swanctl(&["--list-sas"]).contains("INSTALLED")
    });
    lab.ping(0, "192.168.2.2");
    lab.ping(3, "192.168.1.2");
    let sas = lab.swanctl(&["--list-sas"]);
    assert!(
        sas.contains("cpe-a") && sas.contains("ESTABLISHED"),
        "{sas}"
    );
    assert!(
        sas.contains("192.168.2.0/24") && sas.contains("192.168.1.0/24"),
        "{sas}"
    );
    // the vCPE's own counters saw the tunnel traffic
    let m = std::fs::read_to_string(lab.path("metrics.txt")).unwrap_or_default();
    let enc = m
        .lines()
        .find(|l| l.contains("node=\"esp-encrypt\"") && l.contains("counter=\"encrypted\""))
        .and_then(|l| l.split_whitespace().last())
        .and_then(|v| v.parse::<f64>().ok())
        .unwrap_or(0.0);
    assert!(enc >= 4.0, "esp-encrypt encrypted {enc}; metrics:\n{m}");
}
