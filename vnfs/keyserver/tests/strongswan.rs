//! Interop: strongSwan's charon (Debian strongswan-charon, strongswan-swanctl,
//! libcharon-extra-plugins for kernel-libipsec) is a CPE of our key server. charon
//! runs in one network namespace, the key server (UDP 500 and 4500: kernel-libipsec
//! always UDP-encapsulates, so charon floats to 4500, RFC 7296 §2.23) in another,
//! joined by a veth pair. charon authenticates with its PSK (IKE_AUTH), gets a CHILD_SA
//! (the management tunnel), answers the key server's INFORMATIONAL update with its
//! private-use notify (RFC 7296 §3.10.1: unknown status notifies are ignored) and so
//! is counted as served. A charon with the wrong PSK is refused.
//!
//! Root only: skipped (with a message) without root, `swanctl`, charon or `ip`.

use keyserver::config::Config;
use keyserver::udp::UdpServer;
use std::os::fd::AsRawFd;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

const CHARON: &str = "/usr/lib/ipsec/charon";
const PSK: &str = "strongswan-cpe-psk-0123";
const CPE_ADDR: &str = "192.0.2.1";
const KS_ADDR: &str = "192.0.2.2";

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

fn have(tool: &str) -> bool {
    Command::new("sh")
        .args(["-c", &format!("command -v {tool}")])
        .output()
        .is_ok_and(|o| o.status.success())
}

struct Lab {
    ns_c: String,
    ns_k: String,
    dir: PathBuf,
    charon: Option<Child>,
}

impl Lab {
    fn new(tag: &str) -> Lab {
        let id = std::process::id();
        let dir = std::env::temp_dir().join(format!("ks-strongswan-{tag}-{id}"));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        let lab = Lab {
            ns_c: format!("kssw{tag}-c-{id}"),
            ns_k: format!("kssw{tag}-k-{id}"),
            dir,
            charon: None,
        };
        let (vc, vk) = (format!("k{tag}c{id}"), format!("k{tag}k{id}"));
        for ns in [&lab.ns_c, &lab.ns_k] {
            run(Command::new("ip").args(["netns", "add", ns]));
            run(Command::new("ip").args(["-n", ns, "link", "set", "lo", "up"]));
        }
        run(Command::new("ip").args([
            "link", "add", &vc, "netns", &lab.ns_c, "type", "veth", "peer", "name", &vk, "netns",
            &lab.ns_k,
        ]));
        for (ns, dev, addr) in [(&lab.ns_c, &vc, CPE_ADDR), (&lab.ns_k, &vk, KS_ADDR)] {
            run(Command::new("ip").args([
                "-n",
                ns,
                "addr",
                "add",
                &format!("{addr}/24"),
                "dev",
                dev,
            ]));
            run(Command::new("ip").args(["-n", ns, "link", "set", dev.as_str(), "up"]));
        }
        // kernel-libipsec routes the child SA into its TUN device from a local
        // address inside local_ts, which must exist first.
        run(Command::new("ip").args(["-n", &lab.ns_c, "addr", "add", "10.1.0.1/32", "dev", "lo"]));
        lab
    }

    fn vici(&self) -> String {
        format!("unix://{}", self.dir.join("charon.vici").display())
    }

    fn swanctl(&self, args: &[&str]) -> std::process::Output {
        Command::new("swanctl")
            .args(args)
            .args(["--uri", &self.vici()])
            .output()
            .unwrap()
    }

    fn start_charon(&mut self, psk: &str) {
        let d = &self.dir;
        let run_dir = d.join("run");
        std::fs::create_dir_all(&run_dir).unwrap();
        let conf = format!(
            r#"charon {{
  load = random nonce openssl kdf aes gcm sha1 sha2 hmac pem pkcs1 x509 pubkey kernel-libipsec kernel-netlink socket-default vici
  port = 500
  port_nat_t = 4500
  install_routes = no
  install_virtual_ip = no
  retransmit_tries = 2
  filelog {{
    charon {{
      path = {log}
      default = 1
      ike = 2
      flush_line = yes
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
  ks {{
    version = 2
    local_addrs = {CPE_ADDR}
    remote_addrs = {KS_ADDR}
    proposals = aes256gcm16-prfsha256-x25519
    mobike = no
    fragmentation = no
    local {{
      auth = psk
      id = cpe-sw.example
    }}
    remote {{
      auth = psk
      id = ks.example
    }}
    children {{
      mgmt {{
        local_ts = 10.1.0.0/24
        remote_ts = 10.255.0.0/24
        esp_proposals = aes256gcm16
        mode = tunnel
        start_action = none
      }}
    }}
  }}
}}
secrets {{
  ike-ks {{
    id-a = cpe-sw.example
    id-b = ks.example
    secret = "{psk}"
  }}
}}
"#
        );
        std::fs::write(d.join("strongswan.conf"), conf).unwrap();
        std::fs::write(d.join("swanctl.conf"), swanctl).unwrap();
        let script = format!("mount --bind {} /run && exec {CHARON}", run_dir.display());
        let child = Command::new("ip")
            .args([
                "netns",
                "exec",
                &self.ns_c,
                "unshare",
                "-m",
                "--propagation",
                "private",
            ])
            .args(["sh", "-c", &script])
            .env("STRONGSWAN_CONF", d.join("strongswan.conf"))
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(d.join("charon.stderr")).unwrap())
            .spawn()
            .unwrap();
        self.charon = Some(child);
        let t = Instant::now();
        while !d.join("charon.vici").exists() {
            assert!(
                t.elapsed() < Duration::from_secs(15),
                "charon did not open its vici socket; see {}",
                d.display()
            );
            std::thread::sleep(Duration::from_millis(100));
        }
        let out = self.swanctl(&[
            "--load-all",
            "--noprompt",
            "--file",
            &d.join("swanctl.conf").display().to_string(),
        ]);
        assert!(out.status.success(), "{out:?}");
    }
}

impl Drop for Lab {
    fn drop(&mut self) {
        if let Some(mut c) = self.charon.take() {
            if let Ok(pid) = i32::try_from(c.id()) {
                // SAFETY: signalling the child we spawned (ip/unshare/sh exec charon).
                unsafe { libc::kill(pid, libc::SIGTERM) };
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
        for ns in [&self.ns_c, &self.ns_k] {
            let _ = Command::new("ip").args(["netns", "del", ns]).output();
        }
        if !std::thread::panicking() {
            let _ = std::fs::remove_dir_all(&self.dir);
        } else {
            eprintln!("strongswan: logs kept in {}", self.dir.display());
        }
    }
}

fn enter_netns(ns: &str) {
    let f = std::fs::File::open(Path::new("/run/netns").join(ns)).unwrap();
    // SAFETY: plain syscall on a descriptor we own; only this thread changes namespace.
    let rc = unsafe { libc::setns(f.as_raw_fd(), libc::CLONE_NEWNET) };
    assert_eq!(rc, 0, "setns: {}", std::io::Error::last_os_error());
}

fn config() -> Config {
    Config::from_toml(&format!(
        r#"[server]
listen = "{KS_ADDR}:500"
listen_natt = "{KS_ADDR}:4500"
id = "ks.example"
rekey_interval_s = 60

[[group]]
name = "g"
topology = "full-mesh"

[[cpe]]
id = "cpe-sw.example"
psk = "{PSK}"
address = "{CPE_ADDR}"
subnet = "10.1.0.0/24"
groups = ["g"]

[[cpe]]
id = "cpe-b.example"
psk = "another-psk-0123"
address = "192.0.2.3"
subnet = "10.2.0.0/24"
groups = ["g"]
"#
    ))
    .unwrap()
}

fn skip_reason() -> Option<String> {
    // SAFETY: getuid has no preconditions.
    if unsafe { libc::geteuid() } != 0 {
        return Some("not root".into());
    }
    for t in ["ip", "swanctl", "unshare"] {
        if !have(t) {
            return Some(format!("{t} not installed"));
        }
    }
    if !Path::new(CHARON).exists() {
        return Some(format!("{CHARON} not installed"));
    }
    None
}

/// Starts charon with `psk`, our key server in its namespace, and initiates;
/// returns (server stats, swanctl --list-sas text, initiate succeeded).
fn attempt(tag: &str, psk: &str) -> (keyserver::Stats, String, bool, String) {
    let mut lab = Lab::new(tag);
    lab.start_charon(psk);
    let ns_k = lab.ns_k.clone();
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let st = stop.clone();
    let server = std::thread::spawn(move || {
        enter_netns(&ns_k);
        let mut srv = UdpServer::bind(&config()).expect("bind in namespace");
        while !st.load(std::sync::atomic::Ordering::Relaxed) {
            srv.run_once(Duration::from_millis(10)).unwrap();
        }
        srv.stats()
    });
    std::thread::sleep(Duration::from_millis(200));
    let init = lab.swanctl(&["--initiate", "--child", "mgmt", "--timeout", "10"]);
    // Give the server's update time to be answered.
    std::thread::sleep(Duration::from_millis(1500));
    let sas = String::from_utf8_lossy(&lab.swanctl(&["--list-sas"]).stdout).to_string();
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    let stats = server.join().unwrap();
    let log = std::fs::read_to_string(lab.dir.join("charon.log")).unwrap_or_default();
    (stats, sas, init.status.success(), log)
}

#[test]
fn strongswan_is_a_served_cpe() {
    if let Some(why) = skip_reason() {
        eprintln!("strongswan: skipped: {why}");
        return;
    }
    let (st, sas, ok, log) = attempt("a", PSK);
    assert!(
        ok,
        "swanctl --initiate failed; SAs:\n{sas}\ncharon log:\n{log}"
    );
    assert!(sas.contains("ESTABLISHED"), "{sas}");
    assert!(sas.contains("INSTALLED"), "{sas}");
    assert_eq!(st.online, 1, "{st:?}");
    assert_eq!(
        st.served, 1,
        "charon did not acknowledge the update: {st:?}"
    );
    assert!(st.updates_acked >= 1);
    assert_eq!(st.auth_failures, 0);

    let (st, sas, ok, _) = attempt("b", "the-wrong-psk-9876");
    assert!(!ok, "a wrong PSK established:\n{sas}");
    assert!(!sas.contains("ESTABLISHED"), "{sas}");
    assert_eq!((st.online, st.served), (0, 0));
    assert!(st.auth_failures >= 1, "{st:?}");
}
