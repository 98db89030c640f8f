//! Interop with strongSwan: charon (Debian packages strongswan-charon,
//! strongswan-swanctl, libcharon-extra-plugins for kernel-libipsec,
//! libstrongswan-standard-plugins for AES-GCM and X25519 through OpenSSL) initiates
//! an IKEv2 SA with PSK authentication and one ESP child SA to our sans-IO
//! [`Responder`] over UDP port 500 on a veth pair between two network namespaces
//! created for the test. Checks: `swanctl --list-sas` shows the IKE SA ESTABLISHED
//! and the child SA INSTALLED with the SPIs our responder chose and was given; the ESP
//! packets charon's kernel-libipsec sends through the child SA (always UDP-encapsulated:
//! charon fakes NAT detection for it, so IKE_AUTH moves to port 4500 too, §2.23)
//! decrypt in our SAD;
//! `swanctl --terminate` deletes the IKE SA at our side; `tshark -V` dissects every
//! datagram without malformed-packet or error expert info.
//!
//! Root only: skipped (with a message) without root, `swanctl`, charon or `ip`. All
//! traffic stays inside the two namespaces; they, charon and the scratch files are
//! removed on success and on failure.
#![cfg(all(feature = "ring", feature = "std"))]

mod common;

use ipsec::ike::*;
use ipsec::spd::Prefix;
use ipsec::{Inbound, Ipsec};
use std::net::{IpAddr, Ipv4Addr, SocketAddr, UdpSocket};
use std::os::fd::AsRawFd;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

const CHARON: &str = "/usr/lib/ipsec/charon";
const PSK: &str = "interop-psk-0123456789";
const I_ADDR: &str = "192.0.2.1";
const R_ADDR: &str = "192.0.2.2";

fn skip(why: &str) {
    eprintln!("ike_strongswan: skipped: {why}");
}

/// Runs a command; panics with its output when it fails.
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

/// The namespaces, charon and scratch directory; torn down on drop (also when a
/// check panics).
struct Lab {
    ns_i: String,
    ns_r: String,
    dir: PathBuf,
    charon: Option<Child>,
}

impl Lab {
    fn new() -> Lab {
        let id = std::process::id();
        let lab = Lab {
            ns_i: format!("ikesw-i-{id}"),
            ns_r: format!("ikesw-r-{id}"),
            dir: common::scratch("ike-strongswan"),
            charon: None,
        };
        for ns in [&lab.ns_i, &lab.ns_r] {
            run(Command::new("ip").args(["netns", "add", ns]));
            run(Command::new("ip").args(["-n", ns, "link", "set", "lo", "up"]));
        }
        run(Command::new("ip").args([
            "link", "add", "vi", "netns", &lab.ns_i, "type", "veth", "peer", "name", "vr", "netns",
            &lab.ns_r,
        ]));
        for (ns, dev, addr) in [(&lab.ns_i, "vi", I_ADDR), (&lab.ns_r, "vr", R_ADDR)] {
            run(Command::new("ip").args([
                "-n",
                ns,
                "addr",
                "add",
                &format!("{addr}/24"),
                "dev",
                dev,
            ]));
            run(Command::new("ip").args(["-n", ns, "link", "set", dev, "up"]));
        }
        lab
    }

    fn vici(&self) -> String {
        format!("unix://{}", self.dir.join("charon.vici").display())
    }

    fn swanctl(&self, args: &[&str]) -> String {
        run(Command::new("swanctl")
            .args(args)
            .args(["--uri", &self.vici()]))
    }

    /// Writes the configuration and starts charon in the initiator namespace with a
    /// private /run (its pid file and default sockets), waiting for its vici socket.
    fn start_charon(&mut self) {
        let d = &self.dir;
        let run_dir = d.join("run");
        std::fs::create_dir_all(&run_dir).expect("run dir");
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
      enc = 1
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
        std::fs::write(d.join("strongswan.conf"), conf).expect("strongswan.conf");
        let swanctl = format!(
            r#"connections {{
  ours {{
    version = 2
    local_addrs = {I_ADDR}
    remote_addrs = {R_ADDR}
    proposals = aes256gcm16-prfsha256-x25519
    encap = no
    mobike = no
    fragmentation = no
    local {{
      auth = psk
      id = initiator.example
    }}
    remote {{
      auth = psk
      id = responder.example
    }}
    children {{
      net {{
        local_ts = 10.1.0.0/16
        remote_ts = 10.2.0.0/16
        esp_proposals = aes256gcm16
        mode = tunnel
        start_action = none
      }}
    }}
  }}
}}
secrets {{
  ike-ours {{
    id-i = initiator.example
    id-r = responder.example
    secret = "{PSK}"
  }}
}}
"#
        );
        std::fs::write(d.join("swanctl.conf"), swanctl).expect("swanctl.conf");
        let script = format!("mount --bind {} /run && exec {CHARON}", run_dir.display());
        let child = Command::new("ip")
            .args([
                "netns",
                "exec",
                &self.ns_i,
                "unshare",
                "-m",
                "--propagation",
                "private",
            ])
            .args(["sh", "-c", &script])
            .env("STRONGSWAN_CONF", d.join("strongswan.conf"))
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(d.join("charon.stderr")).expect("stderr file"))
            .spawn()
            .expect("start charon");
        self.charon = Some(child);
        let t = Instant::now();
        while !d.join("charon.vici").exists() {
            if t.elapsed() > Duration::from_secs(15) {
                panic!("charon did not open its vici socket; see {}", d.display());
            }
            if let Some(c) = self.charon.as_mut() {
                if let Ok(Some(st)) = c.try_wait() {
                    panic!("charon exited with {st}; see {}", d.display());
                }
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        self.swanctl(&[
            "--load-all",
            "--noprompt",
            "--file",
            &d.join("swanctl.conf").display().to_string(),
        ]);
    }
}

impl Drop for Lab {
    fn drop(&mut self) {
        if let Some(mut c) = self.charon.take() {
            if let Ok(pid) = i32::try_from(c.id()) {
                // SAFETY: signalling the child process we spawned (charon itself: ip,
                // unshare and sh exec into it).
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
        for ns in [&self.ns_i, &self.ns_r] {
            let _ = Command::new("ip").args(["netns", "del", ns]).output();
        }
        if !std::thread::panicking() {
            let _ = std::fs::remove_dir_all(&self.dir);
        } else {
            eprintln!("ike_strongswan: logs kept in {}", self.dir.display());
        }
    }
}

/// Moves the calling thread into network namespace `ns`.
fn enter_netns(ns: &str) {
    let f = std::fs::File::open(Path::new("/run/netns").join(ns)).expect("open netns");
    // SAFETY: plain syscall on a descriptor we own; only this thread changes namespace.
    let rc = unsafe { libc::setns(f.as_raw_fd(), libc::CLONE_NEWNET) };
    assert_eq!(rc, 0, "setns: {}", std::io::Error::last_os_error());
}

/// What our responder thread saw.
#[derive(Default)]
struct Seen {
    events: Vec<Event>,
    /// IKE datagrams both ways: (from, to, UDP payload).
    datagrams: Vec<(SocketAddr, SocketAddr, Vec<u8>)>,
    counters: IkeCounters,
    /// UDP-encapsulated ESP received on port 4500: (from, UDP payload).
    esp: Vec<(SocketAddr, Vec<u8>)>,
}

fn responder_config() -> IkeConfig {
    let net =
        |a: [u8; 4], l| TrafficSelector::from_prefix(Prefix::new(IpAddr::V4(Ipv4Addr::from(a)), l));
    let mut c = IkeConfig::psk(
        PSK.as_bytes(),
        Identification::fqdn("responder.example"),
        net([10, 2, 0, 0], 16),
        net([10, 1, 0, 0], 16),
    );
    c.remote_id = Some(Identification::fqdn("initiator.example"));
    c
}

/// Runs the responder on UDP 500 and 4500 (NAT-T, RFC 3948) in `ns` until `stop`.
fn responder_thread(ns: String, stop: Arc<AtomicBool>) -> std::thread::JoinHandle<Seen> {
    std::thread::spawn(move || {
        enter_netns(&ns);
        let local: SocketAddr = format!("{R_ADDR}:500").parse().expect("addr");
        let local_natt: SocketAddr = format!("{R_ADDR}:4500").parse().expect("addr");
        let s500 = UdpSocket::bind(local).expect("bind UDP 500");
        let s4500 = UdpSocket::bind(local_natt).expect("bind UDP 4500");
        for s in [&s500, &s4500] {
            s.set_read_timeout(Some(Duration::from_millis(10)))
                .expect("timeout");
        }
        let mut r = Responder::new(responder_config(), local).expect("responder");
        let t0 = Instant::now();
        let mut seen = Seen::default();
        let mut buf = vec![0u8; 65536];
        while !stop.load(Ordering::Relaxed) {
            let now = t0.elapsed().as_millis() as u64;
            let mut outs = Vec::new();
            if let Ok((n, from)) = s500.recv_from(&mut buf) {
                seen.datagrams.push((from, local, buf[..n].to_vec()));
                outs.extend(r.handle(&buf[..n], from, now));
            }
            if let Ok((n, from)) = s4500.recv_from(&mut buf) {
                let d = &buf[..n];
                if d.starts_with(&NON_ESP_MARKER) {
                    seen.datagrams.push((from, local_natt, d.to_vec()));
                    outs.extend(r.handle_natt(d, from, now));
                } else if d != [0xff] {
                    seen.esp.push((from, d.to_vec()));
                }
            }
            outs.extend(r.poll(now));
            for o in outs {
                match o {
                    Output::Send { to, data, natt } => {
                        let (s, l) = if natt {
                            (&s4500, local_natt)
                        } else {
                            (&s500, local)
                        };
                        s.send_to(&data, to).expect("send");
                        seen.datagrams.push((l, to, data));
                    }
                    Output::Event(e) => seen.events.push(e),
                }
            }
        }
        seen.counters = r.counters();
        seen
    })
}

/// The first hex SPI after `key` ("in" / "out") in `swanctl --list-sas` output.
fn listed_spi(text: &str, key: &str) -> Option<u32> {
    text.lines().find_map(|l| {
        let mut w = l.split_whitespace();
        (w.next() == Some(key))
            .then(|| w.next())
            .flatten()
            .and_then(|s| u32::from_str_radix(s.trim_end_matches(','), 16).ok())
    })
}

#[test]
fn strongswan_initiates_to_our_responder() {
    // SAFETY: geteuid has no preconditions.
    if unsafe { libc::geteuid() } != 0 {
        return skip("needs root (network namespaces)");
    }
    for tool in ["swanctl", "ip", "unshare"] {
        if common::which(tool).is_none() {
            return skip(&format!("{tool} not installed (scripts/setup installs it)"));
        }
    }
    if !Path::new(CHARON).is_file() {
        return skip("charon not installed (strongswan-charon)");
    }
    if !Path::new("/usr/lib/ipsec/plugins/libstrongswan-kernel-libipsec.so").is_file() {
        return skip("kernel-libipsec plugin not installed (libcharon-extra-plugins)");
    }
    let mut lab = Lab::new();
    let stop = Arc::new(AtomicBool::new(false));
    let ours = responder_thread(lab.ns_r.clone(), stop.clone());
    lab.start_charon();

    // kernel-libipsec routes the child SA's traffic into its TUN device (ipsec0)
    // from a local address inside local_ts, which must exist first.
    let ns_i = lab.ns_i.clone();
    run(Command::new("ip").args(["-n", &ns_i, "addr", "add", "10.1.0.1/32", "dev", "lo"]));
    let init = lab.swanctl(&["--initiate", "--child", "net", "--timeout", "20"]);
    let sas = lab.swanctl(&["--list-sas"]);
    // ESP through the child SA: UDP datagrams from 10.1.0.1 to 10.2.0.1.
    std::thread::scope(|s| {
        s.spawn(|| {
            enter_netns(&ns_i);
            let u = UdpSocket::bind("10.1.0.1:0").expect("bind 10.1.0.1");
            for _ in 0..3 {
                // Routed into ipsec0 by kernel-libipsec; nobody answers.
                let _ = u.send_to(b"through strongSwan's child SA", "10.2.0.1:9");
                std::thread::sleep(Duration::from_millis(50));
            }
        });
    });
    lab.swanctl(&["--terminate", "--ike", "ours", "--timeout", "10"]);
    std::thread::sleep(Duration::from_millis(300));
    stop.store(true, Ordering::Relaxed);
    let seen = ours.join().expect("responder thread");

    assert!(
        sas.contains("ESTABLISHED"),
        "IKE SA not established:\n{init}\n{sas}"
    );
    assert!(sas.contains("INSTALLED"), "child SA not installed:\n{sas}");
    assert!(sas.contains("AES_GCM_16-256"), "{sas}");
    let child = seen
        .events
        .iter()
        .find_map(|e| match e {
            Event::ChildSaUp(c) => Some(c),
            _ => None,
        })
        .expect("our responder reports the child SA");
    // charon fakes a NAT in front of itself for kernel-libipsec (§2.23 hash
    // mismatch on purpose).
    assert!(seen.events.iter().any(|e| matches!(
        e,
        Event::IkeSaUp {
            nat_local: false,
            nat_remote: true,
            ..
        }
    )));
    // charon's inbound SPI is our outbound one and vice versa.
    assert_eq!(listed_spi(&sas, "in"), Some(child.outbound.spi), "{sas}");
    assert_eq!(listed_spi(&sas, "out"), Some(child.inbound.spi), "{sas}");
    assert!(
        seen.events.iter().any(|e| matches!(
            e,
            Event::IkeSaDown {
                reason: DownReason::DeletedByPeer,
                ..
            }
        )),
        "terminate reached our responder"
    );
    let c = seen.counters;
    assert_eq!(
        (c.parse_errors, c.integrity_failures, c.auth_failures),
        (0, 0, 0)
    );

    // The datagrams charon sent (ESP in UDP: kernel-libipsec always encapsulates)
    // decrypt with the keys we derived.
    let mut ipsec = Ipsec::new();
    child.install(&mut ipsec.sad, 0).expect("install child SA");
    assert!(!seen.esp.is_empty(), "no ESP packet from charon");
    let here: SocketAddr = format!("{R_ADDR}:4500").parse().expect("addr");
    let mut decrypted = 0;
    for (from, p) in &seen.esp {
        let mut b = ipsec::HeadroomBuf::from_packet(&common::udp_packet(*from, here, p));
        if let Ok(Inbound::Decrypted { .. }) = ipsec.inbound(&mut b, 0) {
            let inner = ipsec::Buf::data(&b);
            assert_eq!(&inner[12..16], &[10, 1, 0, 1]);
            assert_eq!(&inner[16..20], &[10, 2, 0, 1]);
            assert_eq!(inner[9], 17, "UDP");
            assert!(inner.ends_with(b"through strongSwan's child SA"));
            decrypted += 1;
        }
    }
    assert!(
        decrypted > 0,
        "no ESP packet decrypted: {:?}",
        ipsec.counters
    );

    let text = common::tshark_check_ike(&lab.dir, "strongswan", &seen.datagrams);
    assert!(text.contains("Exchange type: IKE_AUTH (35)"));
}
