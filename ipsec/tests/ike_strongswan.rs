//! Interop with strongSwan, both directions: charon (Debian packages
//! strongswan-charon, strongswan-swanctl, libcharon-extra-plugins for kernel-libipsec,
//! libstrongswan-standard-plugins for AES-GCM, X25519 and MODP through OpenSSL) runs
//! in one network namespace created for the test, our sans-IO [`Responder`] or
//! [`Initiator`] with a minimal UDP driver in another, joined by a veth pair. IKEv2
//! with PSK authentication, AES-GCM-16-256 and one ESP child SA; charon initiating
//! uses PRF-HMAC-SHA2-256 and Curve25519, ours PRF-HMAC-SHA2-384 and MODP-2048.
//! kernel-libipsec always UDP-encapsulates ESP, so charon fakes NAT detection and
//! IKE_AUTH moves to port 4500 (RFC 7296 §2.23).
//!
//! Checks: `swanctl --list-sas` shows the IKE SA ESTABLISHED and the child SA
//! INSTALLED with the SPIs our side chose and was given, also after a CREATE_CHILD_SA
//! rekey started by the initiator; ESP crosses the rekeyed child SA (charon's
//! decrypts in our SAD; ours is counted by charon's inbound SA); deletes reach the
//! other side; an IKE SA rekey (RFC 7296 §2.18) both ways (`swanctl --rekey --ike`
//! to our responder, `rekey_ike` of our initiator to charon), each followed by a
//! child SA rekey with PFS (esp_proposals with x25519) over the new IKE SA and ESP
//! through it; charon offering only MODP-2048, ECP-256 or Curve25519 (groups 14,
//! 19, 31) establishes with our responder in each; `tshark -V` dissects every IKE
//! datagram without malformed-packet or error expert info; and tshark decrypts the
//! ESP our initiator sent with the child SA key charon logged (`chd = 4`), so our
//! KEYMAT (§2.17) and ESP match charon's.
//!
//! Root only: skipped (with a message) without root, `swanctl`, charon or `ip`. All
//! traffic stays inside the two namespaces; they, charon and the scratch files are
//! removed on success and on failure (logs are kept on failure).
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
/// check panics). charon runs in `ns_i` at 192.0.2.1, our side in `ns_r` at
/// 192.0.2.2.
struct Lab {
    ns_i: String,
    ns_r: String,
    dir: PathBuf,
    charon: Option<Child>,
}

impl Lab {
    /// `tag` (one letter) keeps concurrent tests apart.
    fn new(tag: &str) -> Lab {
        let id = std::process::id();
        let lab = Lab {
            ns_i: format!("ikesw{tag}-i-{id}"),
            ns_r: format!("ikesw{tag}-r-{id}"),
            dir: common::scratch(&format!("ike-strongswan-{tag}")),
            charon: None,
        };
        let (vi, vr) = (format!("v{tag}i{id}"), format!("v{tag}r{id}"));
        for ns in [&lab.ns_i, &lab.ns_r] {
            run(Command::new("ip").args(["netns", "add", ns]));
            run(Command::new("ip").args(["-n", ns, "link", "set", "lo", "up"]));
        }
        run(Command::new("ip").args([
            "link", "add", &vi, "netns", &lab.ns_i, "type", "veth", "peer", "name", &vr, "netns",
            &lab.ns_r,
        ]));
        for (ns, dev, addr) in [(&lab.ns_i, &vi, I_ADDR), (&lab.ns_r, &vr, R_ADDR)] {
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

    /// Writes the configuration and starts charon in `ns_i` with a private /run (its
    /// pid file and default sockets), waiting for its vici socket, then loads
    /// `swanctl` (a swanctl.conf).
    fn start_charon(&mut self, swanctl: &str) {
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
      chd = 4
      flush_line = yes
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
    /// ESP we sent, as whole IPv4 packets (outer IPv4 + UDP 4500 + ESP).
    esp_sent: Vec<Vec<u8>>,
}

/// The child SA key charon's `chd = 4` log shows for the SA with `spi` in
/// `direction` ("inbound" or "outbound"): the "encryption initiator key" or
/// "encryption responder key" dump (`which`) logged before "adding inbound ESP SA" /
/// "registering outbound ESP SA" with that SPI. Key ‖ salt, as hex.
fn charon_child_key(log: &str, spi: u32, direction: &str, which: &str) -> Option<String> {
    let lines: Vec<&str> = log.lines().collect();
    let marker = format!("SPI 0x{spi:08x},");
    let at = lines.iter().enumerate().position(|(k, l)| {
        l.contains(&marker)
            && k > 0
            && lines[k - 1].contains(&format!(
                "{} ESP SA",
                if direction == "inbound" {
                    "adding inbound"
                } else {
                    "registering outbound"
                }
            ))
    })?;
    let head = format!("encryption {which} key =>");
    let start = lines[..at].iter().rposition(|l| l.contains(&head))?;
    let mut hex = String::new();
    for l in &lines[start + 1..at] {
        // "HH:MM:SS NN[CHD]    0: 26 AE AC ...  ascii"
        let Some((_, rest)) = l.split_once("[CHD]") else {
            break;
        };
        let Some((off, bytes)) = rest.trim_start().split_once(": ") else {
            break;
        };
        if off.parse::<usize>().is_err() {
            break;
        }
        for b in bytes.split_whitespace().take(16) {
            if b.len() == 2 && b.chars().all(|c| c.is_ascii_hexdigit()) {
                hex.push_str(&b.to_ascii_lowercase());
            } else {
                break;
            }
        }
    }
    (!hex.is_empty()).then_some(hex)
}

/// charon's side of the connection: 10.1.0.0/16 behind the initiator, 10.2.0.0/16
/// behind the responder; `local` / `remote` name the IDs.
fn swanctl_conf(name: &str, local: &str, remote: &str, initiator: bool) -> String {
    let (lts, rts) = if initiator {
        ("10.1.0.0/16", "10.2.0.0/16")
    } else {
        ("10.2.0.0/16", "10.1.0.0/16")
    };
    format!(
        r#"connections {{
  {name} {{
    version = 2
    local_addrs = {I_ADDR}
    remote_addrs = {R_ADDR}
    proposals = aes256gcm16-prfsha256-prfsha384-x25519-modp2048
    mobike = no
    fragmentation = no
    local {{
      auth = psk
      id = {local}
    }}
    remote {{
      auth = psk
      id = {remote}
    }}
    children {{
      net {{
        local_ts = {lts}
        remote_ts = {rts}
        esp_proposals = aes256gcm16
        mode = tunnel
        start_action = none
      }}
    }}
  }}
}}
secrets {{
  ike-{name} {{
    id-a = {local}
    id-b = {remote}
    secret = "{PSK}"
  }}
}}
"#
    )
}

fn net(a: [u8; 4], l: u8) -> TrafficSelector {
    TrafficSelector::from_prefix(Prefix::new(IpAddr::V4(Ipv4Addr::from(a)), l))
}

fn our_config(initiator: bool) -> IkeConfig {
    let (me, peer) = if initiator {
        ("initiator.example", "responder.example")
    } else {
        ("responder.example", "initiator.example")
    };
    let (a, b) = (net([10, 1, 0, 0], 16), net([10, 2, 0, 0], 16));
    let (local_ts, remote_ts) = if initiator { (a, b) } else { (b, a) };
    let mut c = IkeConfig::psk(
        PSK.as_bytes(),
        Identification::fqdn(me),
        local_ts,
        remote_ts,
    );
    c.remote_id = Some(Identification::fqdn(peer));
    c
}

/// Our two roles behind one driver.
trait Ike {
    fn datagram(&mut self, d: &[u8], from: SocketAddr, now: u64, natt: bool) -> Vec<Output>;
    fn timer(&mut self, now: u64) -> Vec<Output>;
    fn stats(&self) -> IkeCounters;
}

impl Ike for Responder {
    fn datagram(&mut self, d: &[u8], from: SocketAddr, now: u64, natt: bool) -> Vec<Output> {
        if natt {
            self.handle_natt(d, from, now)
        } else {
            self.handle(d, from, now)
        }
    }
    fn timer(&mut self, now: u64) -> Vec<Output> {
        self.poll(now)
    }
    fn stats(&self) -> IkeCounters {
        self.counters()
    }
}

impl Ike for Initiator {
    fn datagram(&mut self, d: &[u8], from: SocketAddr, now: u64, natt: bool) -> Vec<Output> {
        if natt {
            self.handle_natt(d, from, now)
        } else {
            self.handle(d, from, now)
        }
    }
    fn timer(&mut self, now: u64) -> Vec<Output> {
        self.poll(now)
    }
    fn stats(&self) -> IkeCounters {
        self.counters()
    }
}

/// A minimal UDP driver: sockets on 500 and 4500 (NAT-T, RFC 3948) at 192.0.2.2.
struct Node {
    s500: UdpSocket,
    s4500: UdpSocket,
    local: SocketAddr,
    local_natt: SocketAddr,
    t0: Instant,
    seen: Seen,
    buf: Vec<u8>,
}

impl Node {
    /// Binds in the calling thread's network namespace.
    fn bind() -> Node {
        let local: SocketAddr = format!("{R_ADDR}:500").parse().expect("addr");
        let local_natt: SocketAddr = format!("{R_ADDR}:4500").parse().expect("addr");
        let s500 = UdpSocket::bind(local).expect("bind UDP 500");
        let s4500 = UdpSocket::bind(local_natt).expect("bind UDP 4500");
        for s in [&s500, &s4500] {
            s.set_read_timeout(Some(Duration::from_millis(10)))
                .expect("timeout");
        }
        Node {
            s500,
            s4500,
            local,
            local_natt,
            t0: Instant::now(),
            seen: Seen::default(),
            buf: vec![0u8; 65536],
        }
    }

    fn now(&self) -> u64 {
        self.t0.elapsed().as_millis() as u64
    }

    fn send_all(&mut self, outs: Vec<Output>) {
        for o in outs {
            match o {
                Output::Send { to, data, natt } => {
                    let (s, l) = if natt {
                        (&self.s4500, self.local_natt)
                    } else {
                        (&self.s500, self.local)
                    };
                    s.send_to(&data, to).expect("send");
                    self.seen.datagrams.push((l, to, data));
                }
                Output::Event(e) => self.seen.events.push(e),
            }
        }
    }

    /// Receives what is there (waiting up to 10 ms per socket), runs timers, sends.
    fn step(&mut self, ike: &mut impl Ike) {
        let now = self.now();
        let mut outs = Vec::new();
        if let Ok((n, from)) = self.s500.recv_from(&mut self.buf) {
            let d = &self.buf[..n];
            self.seen.datagrams.push((from, self.local, d.to_vec()));
            outs.extend(ike.datagram(d, from, now, false));
        }
        if let Ok((n, from)) = self.s4500.recv_from(&mut self.buf) {
            let d = &self.buf[..n];
            if d.starts_with(&NON_ESP_MARKER) {
                self.seen
                    .datagrams
                    .push((from, self.local_natt, d.to_vec()));
                outs.extend(ike.datagram(d, from, now, true));
            } else if d != [0xff] {
                self.seen.esp.push((from, d.to_vec()));
            }
        }
        outs.extend(ike.timer(now));
        self.send_all(outs);
        self.seen.counters = ike.stats();
    }
}

/// Runs the responder in `ns` until `stop`.
fn responder_thread(ns: String, stop: Arc<AtomicBool>) -> std::thread::JoinHandle<Seen> {
    responder_thread_with(ns, stop, our_config(false))
}

fn responder_thread_with(
    ns: String,
    stop: Arc<AtomicBool>,
    cfg: IkeConfig,
) -> std::thread::JoinHandle<Seen> {
    std::thread::spawn(move || {
        enter_netns(&ns);
        let mut node = Node::bind();
        let mut r = Responder::new(cfg, node.local).expect("responder");
        while !stop.load(Ordering::Relaxed) {
            node.step(&mut r);
        }
        node.seen
    })
}

/// Skips (returning false) unless root and strongSwan are there.
fn can_run() -> bool {
    // SAFETY: geteuid has no preconditions.
    if unsafe { libc::geteuid() } != 0 {
        skip("needs root (network namespaces)");
        return false;
    }
    for tool in ["swanctl", "ip", "unshare"] {
        if common::which(tool).is_none() {
            skip(&format!("{tool} not installed (scripts/setup installs it)"));
            return false;
        }
    }
    if !Path::new(CHARON).is_file() {
        skip("charon not installed (strongswan-charon)");
        return false;
    }
    if !Path::new("/usr/lib/ipsec/plugins/libstrongswan-kernel-libipsec.so").is_file() {
        skip("kernel-libipsec plugin not installed (libcharon-extra-plugins)");
        return false;
    }
    true
}

/// The INSTALLED child SA in `swanctl --list-sas` output (rekeyed ones linger as
/// DELETED for a while): inbound SPI, outbound SPI, inbound packet count, from
/// "  net: #2, reqid 1, INSTALLED, ..." and the "in  c1234567,  116 bytes,  3
/// packets, ..." / "out ..." lines below it.
#[derive(Debug, PartialEq)]
struct Listed {
    spi_in: u32,
    spi_out: u32,
    packets_in: u64,
}

fn installed(text: &str) -> Option<Listed> {
    let mut inside = false;
    let (mut spi_in, mut spi_out, mut packets_in) = (None, None, None);
    for l in text.lines() {
        let t = l.trim_start();
        if t.contains(", reqid ") {
            inside = t.contains("INSTALLED");
            continue;
        }
        if !inside {
            continue;
        }
        let mut fields = t.split(',');
        let mut head = fields.next().unwrap_or("").split_whitespace();
        let (key, spi) = (head.next(), head.next());
        let spi = spi.and_then(|s| u32::from_str_radix(s, 16).ok());
        match key {
            Some("in") => {
                spi_in = spi;
                packets_in = fields
                    .find(|f| f.trim_end().ends_with("packets"))
                    .and_then(|f| f.split_whitespace().next()?.parse().ok());
            }
            Some("out") => spi_out = spi,
            _ => {}
        }
    }
    Some(Listed {
        spi_in: spi_in?,
        spi_out: spi_out?,
        packets_in: packets_in?,
    })
}

#[test]
fn strongswan_initiates_to_our_responder() {
    if !can_run() {
        return;
    }
    let mut lab = Lab::new("a");
    let stop = Arc::new(AtomicBool::new(false));
    let ours = responder_thread(lab.ns_r.clone(), stop.clone());
    lab.start_charon(&swanctl_conf(
        "ours",
        "initiator.example",
        "responder.example",
        true,
    ));

    // kernel-libipsec routes the child SA's traffic into its TUN device (ipsec0)
    // from a local address inside local_ts, which must exist first.
    let ns_i = lab.ns_i.clone();
    run(Command::new("ip").args(["-n", &ns_i, "addr", "add", "10.1.0.1/32", "dev", "lo"]));
    let init = lab.swanctl(&["--initiate", "--child", "net", "--timeout", "20"]);
    let sas = lab.swanctl(&["--list-sas"]);
    // charon rekeys the child SA (CREATE_CHILD_SA to our responder, then deletes
    // the old one); wait until it lists the new SPI.
    lab.swanctl(&["--rekey", "--child", "net"]);
    let t = Instant::now();
    let mut rekeyed = lab.swanctl(&["--list-sas"]);
    let first = installed(&sas).map(|l| l.spi_in);
    // While charon rekeys, the old SA is REKEYING and the new one not yet listed:
    // no INSTALLED SA at all is "not yet" too, not "rekeyed".
    let waiting = |text: &str| {
        let now = installed(text).map(|l| l.spi_in);
        now.is_none() || now == first
    };
    while waiting(&rekeyed) && t.elapsed() < Duration::from_secs(10) {
        std::thread::sleep(Duration::from_millis(100));
        rekeyed = lab.swanctl(&["--list-sas"]);
    }
    // ESP through the new child SA: UDP datagrams from 10.1.0.1 to 10.2.0.1.
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
    assert!(
        sas.contains("AES_GCM_16-256/PRF_HMAC_SHA2_256/CURVE_25519"),
        "{sas}"
    );
    let ups: Vec<&ChildSa> = seen
        .events
        .iter()
        .filter_map(|e| match e {
            Event::ChildSaUp(c) => Some(&**c),
            _ => None,
        })
        .collect();
    let [child, new] = ups[..] else {
        panic!(
            "expected the child SA and its rekey: {:?}\n{rekeyed}",
            seen.events
        )
    };
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
    // charon's inbound SPI is our outbound one and vice versa, before and after
    // the rekey; charon deleted the old SA at our side.
    let l = installed(&sas).expect("child SA listed");
    assert_eq!(
        (l.spi_in, l.spi_out),
        (child.outbound.spi, child.inbound.spi),
        "{sas}"
    );
    assert_eq!(new.rekey_of, Some(child.inbound.spi));
    let l = installed(&rekeyed).expect("rekeyed child SA listed");
    assert_eq!(
        (l.spi_in, l.spi_out),
        (new.outbound.spi, new.inbound.spi),
        "{rekeyed}"
    );
    assert!(seen.events.iter().any(|e| matches!(
        e,
        Event::ChildSaDown { inbound_spi, .. } if *inbound_spi == child.inbound.spi
    )));
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
    // through the rekeyed SA decrypt with the keys we derived (§2.17 KEYMAT from
    // the CREATE_CHILD_SA nonces).
    let mut ipsec = Ipsec::new();
    new.install(&mut ipsec.sad, 0).expect("install child SA");
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

/// RFC 7296 §3.3.2 transform type 4 with each group we implement (14 MODP-2048,
/// 19 ECP-256, 31 Curve25519): charon offers only that group, our responder
/// agrees, the IKE SA and the child SA come up, and charon names the group.
#[test]
fn strongswan_establishes_with_each_dh_group() {
    if !can_run() {
        return;
    }
    for (group, listed, tag) in [
        ("modp2048", "MODP_2048", "m"),
        ("ecp256", "ECP_256", "e"),
        ("x25519", "CURVE_25519", "x"),
    ] {
        let mut lab = Lab::new(tag);
        let stop = Arc::new(AtomicBool::new(false));
        let ours = responder_thread(lab.ns_r.clone(), stop.clone());
        let conf = swanctl_conf("ours", "initiator.example", "responder.example", true).replace(
            "proposals = aes256gcm16-prfsha256-prfsha384-x25519-modp2048",
            &format!("proposals = aes256gcm16-prfsha256-{group}"),
        );
        assert!(conf.contains(&format!("-{group}\n")), "{conf}");
        lab.start_charon(&conf);
        // kernel-libipsec needs a local address inside local_ts for the child SA.
        let ns_i = lab.ns_i.clone();
        run(Command::new("ip").args(["-n", &ns_i, "addr", "add", "10.1.0.1/32", "dev", "lo"]));
        let init = lab.swanctl(&["--initiate", "--child", "net", "--timeout", "20"]);
        let sas = list_until(&lab, |l| l.contains("INSTALLED"));
        lab.swanctl(&["--terminate", "--ike", "ours", "--timeout", "10"]);
        stop.store(true, Ordering::Relaxed);
        let seen = ours.join().expect("responder thread");
        assert!(sas.contains("ESTABLISHED"), "{group}: {init}\n{sas}");
        assert!(sas.contains("INSTALLED"), "{group}: child SA:\n{sas}");
        assert!(
            sas.contains(&format!("AES_GCM_16-256/PRF_HMAC_SHA2_256/{listed}")),
            "{group}:\n{sas}"
        );
        assert!(
            seen.events.iter().any(|e| matches!(e, Event::ChildSaUp(_))),
            "{group}: {:?}",
            seen.events
        );
    }
}

/// Polls `swanctl --list-sas` until `done` holds (at most 10 s); the last listing.
fn list_until(lab: &Lab, done: impl Fn(&str) -> bool) -> String {
    let t = Instant::now();
    let mut l = lab.swanctl(&["--list-sas"]);
    while !done(&l) && t.elapsed() < Duration::from_secs(10) {
        std::thread::sleep(Duration::from_millis(100));
        l = lab.swanctl(&["--list-sas"]);
    }
    l
}

/// charon rekeys the IKE SA it holds with our responder (`swanctl --rekey --ike`,
/// RFC 7296 §2.18: CREATE_CHILD_SA with an IKE proposal, then its Delete of the old
/// IKE SA), then rekeys the child SA over the new IKE SA with PFS (esp_proposals
/// with x25519: a KE payload in CREATE_CHILD_SA, §1.3.1); ESP crosses the new child
/// SA.
#[test]
fn strongswan_rekeys_the_ike_sa_then_a_pfs_child() {
    if !can_run() {
        return;
    }
    let mut lab = Lab::new("c");
    let stop = Arc::new(AtomicBool::new(false));
    let mut cfg = our_config(false);
    cfg.child_pfs = Some(DhGroup::Curve25519);
    let ours = responder_thread_with(lab.ns_r.clone(), stop.clone(), cfg);
    let conf = swanctl_conf("ours", "initiator.example", "responder.example", true).replace(
        "esp_proposals = aes256gcm16\n",
        "esp_proposals = aes256gcm16-x25519\n",
    );
    assert!(conf.contains("aes256gcm16-x25519"));
    lab.start_charon(&conf);
    let ns_i = lab.ns_i.clone();
    run(Command::new("ip").args(["-n", &ns_i, "addr", "add", "10.1.0.1/32", "dev", "lo"]));
    let init = lab.swanctl(&["--initiate", "--child", "net", "--timeout", "20"]);
    let sas = lab.swanctl(&["--list-sas"]);
    lab.swanctl(&["--rekey", "--ike", "ours"]);
    let after_ike = list_until(&lab, |l| l.contains("ours: #2, ESTABLISHED"));
    lab.swanctl(&["--rekey", "--child", "net"]);
    let first = installed(&after_ike).map(|l| l.spi_in);
    // Mid-rekey the listing can show no INSTALLED child at all (the old one is
    // REKEYING, the new one not yet listed): wait for an installed child with a new SPI.
    let rekeyed = list_until(&lab, |l| {
        installed(l).is_some_and(|l| Some(l.spi_in) != first)
    });
    std::thread::scope(|s| {
        s.spawn(|| {
            enter_netns(&ns_i);
            let u = UdpSocket::bind("10.1.0.1:0").expect("bind 10.1.0.1");
            for _ in 0..3 {
                let _ = u.send_to(b"through the rekeyed IKE SA's child", "10.2.0.1:9");
                std::thread::sleep(Duration::from_millis(50));
            }
        });
    });
    lab.swanctl(&["--terminate", "--ike", "ours", "--timeout", "10"]);
    std::thread::sleep(Duration::from_millis(300));
    stop.store(true, Ordering::Relaxed);
    let seen = ours.join().expect("responder thread");

    assert!(sas.contains("ours: #1, ESTABLISHED"), "{init}\n{sas}");
    assert!(after_ike.contains("ours: #2, ESTABLISHED"), "{after_ike}");
    let rekeys: Vec<(u64, u64, u64, u64)> = seen
        .events
        .iter()
        .filter_map(|e| match e {
            Event::IkeSaRekeyed {
                old_spi_i,
                old_spi_r,
                spi_i,
                spi_r,
            } => Some((*old_spi_i, *old_spi_r, *spi_i, *spi_r)),
            _ => None,
        })
        .collect();
    let [(oi, or, ni, nr)] = rekeys[..] else {
        panic!("one IKE SA rekey: {:?}\n{after_ike}", seen.events)
    };
    // charon lists the new IKE SA with the SPIs we agreed on.
    assert!(
        after_ike.contains(&format!("{ni:016x}_i")) && after_ike.contains(&format!("{nr:016x}_r")),
        "{ni:016x} {nr:016x}\n{after_ike}"
    );
    assert!(seen.events.iter().any(|e| matches!(
        e,
        Event::IkeSaDown { spi_i, spi_r, reason: DownReason::Rekeyed } if (*spi_i, *spi_r) == (oi, or)
    )));
    let ups: Vec<&ChildSa> = seen
        .events
        .iter()
        .filter_map(|e| match e {
            Event::ChildSaUp(c) => Some(&**c),
            _ => None,
        })
        .collect();
    let [child, new] = ups[..] else {
        panic!("the child SA and its rekey: {:?}\n{rekeyed}", seen.events)
    };
    assert_eq!(new.rekey_of, Some(child.inbound.spi));
    assert_eq!(
        (new.ike_spi_i, new.ike_spi_r),
        (ni, nr),
        "made on the new IKE SA"
    );
    let l = installed(&rekeyed).expect("rekeyed child SA listed");
    assert_eq!(
        (l.spi_in, l.spi_out),
        (new.outbound.spi, new.inbound.spi),
        "{rekeyed}"
    );
    assert!(
        seen.events.iter().any(|e| matches!(
            e,
            Event::IkeSaDown { spi_i, reason: DownReason::DeletedByPeer, .. } if *spi_i == ni
        )),
        "terminate reached the new IKE SA"
    );
    let c = seen.counters;
    assert_eq!(
        (
            c.parse_errors,
            c.integrity_failures,
            c.auth_failures,
            c.unknown_spi
        ),
        (0, 0, 0, 0)
    );
    // charon's ESP through the PFS child SA decrypts with the KEYMAT we derived
    // (prf+(SK_d of the new IKE SA, g^ir ‖ Ni ‖ Nr), §2.17).
    let mut ipsec = Ipsec::new();
    new.install(&mut ipsec.sad, 0).expect("install child SA");
    let here: SocketAddr = format!("{R_ADDR}:4500").parse().expect("addr");
    let decrypted = seen
        .esp
        .iter()
        .filter(|(from, p)| {
            let mut b = ipsec::HeadroomBuf::from_packet(&common::udp_packet(*from, here, p));
            matches!(ipsec.inbound(&mut b, 0), Ok(Inbound::Decrypted { .. }))
                && ipsec::Buf::data(&b).ends_with(b"through the rekeyed IKE SA's child")
        })
        .count();
    assert!(decrypted > 0, "no ESP decrypted: {:?}", ipsec.counters);
    let text = common::tshark_check_ike(&lab.dir, "strongswan-ike-rekey", &seen.datagrams);
    assert!(text.contains("Exchange type: CREATE_CHILD_SA (36)"));
}

/// What the initiator thread tells the test.
enum Up {
    /// Child SA up and ESP sent: (our inbound SPI, our outbound SPI).
    Child(u32, u32),
    Failed(String),
}

#[test]
fn our_initiator_to_strongswan() {
    if !can_run() {
        return;
    }
    let mut lab = Lab::new("b");
    // charon is the responder here; kernel-libipsec needs an address in its local_ts.
    run(Command::new("ip").args(["-n", &lab.ns_i, "addr", "add", "10.2.0.1/32", "dev", "lo"]));
    lab.start_charon(&swanctl_conf(
        "theirs",
        "responder.example",
        "initiator.example",
        false,
    ));
    let (up_tx, up_rx) = std::sync::mpsc::channel::<Up>();
    let (del_tx, del_rx) = std::sync::mpsc::channel::<()>();
    let ns_r = lab.ns_r.clone();
    let ours = std::thread::spawn(move || {
        enter_netns(&ns_r);
        let mut node = Node::bind();
        let peer: SocketAddr = format!("{I_ADDR}:500").parse().expect("addr");
        // MODP-2048 and HMAC-SHA2-384 this way round (X25519 / SHA2-256 the other).
        let mut cfg = our_config(true);
        cfg.ike_dh = vec![DhGroup::Modp2048];
        cfg.ike_prf = vec![Prf::HmacSha384];
        let mut i = Initiator::new(cfg, node.local, peer, node.now());
        let out = i.start(node.now()).expect("start");
        node.send_all(out);
        let deadline = Instant::now() + Duration::from_secs(15);
        let child = loop {
            node.step(&mut i);
            let c = node
                .seen
                .events
                .iter()
                .position(|e| matches!(e, Event::ChildSaUp(_)));
            if let Some(k) = c {
                break k;
            }
            if i.state() == IkeState::Closed || Instant::now() > deadline {
                let _ = up_tx.send(Up::Failed(format!(
                    "state {:?}, events {:?}",
                    i.state(),
                    node.seen.events
                )));
                return node.seen;
            }
        };
        let Event::ChildSaUp(first) = &node.seen.events[child] else {
            unreachable!()
        };
        let first_in = first.inbound.spi;
        // Rekey it (CREATE_CHILD_SA to charon, then our Delete of the old SA).
        let out = i.rekey_child(node.now()).expect("rekey");
        node.send_all(out);
        let deadline = Instant::now() + Duration::from_secs(10);
        let rekeyed = loop {
            node.step(&mut i);
            let new =
                node.seen.events.iter().rposition(
                    |e| matches!(e, Event::ChildSaUp(c) if c.rekey_of == Some(first_in)),
                );
            let old_down = node.seen.events.iter().any(
                |e| matches!(e, Event::ChildSaDown { inbound_spi, .. } if *inbound_spi == first_in),
            );
            match new {
                Some(k) if old_down => break k,
                _ if Instant::now() > deadline => {
                    let _ = up_tx.send(Up::Failed(format!("rekey: {:?}", node.seen.events)));
                    return node.seen;
                }
                _ => {}
            }
        };
        let Event::ChildSaUp(c) = &node.seen.events[rekeyed] else {
            unreachable!()
        };
        // ESP through the new child SA: three UDP datagrams 10.1.0.1 -> 10.2.0.1,
        // encrypted by our SAD, sent from port 4500 (the SA is UDP-encapsulated).
        let mut ipsec = Ipsec::new();
        let (_, out_id) = c.install(&mut ipsec.sad, 0).expect("install");
        let enc = c
            .outbound
            .encap
            .expect("UDP encapsulation behind the faked NAT");
        let pkt = common::udp_packet(
            "10.1.0.1:1000".parse().expect("addr"),
            "10.2.0.1:9".parse().expect("addr"),
            b"through our child SA",
        );
        for _ in 0..3 {
            let mut b = ipsec::HeadroomBuf::from_packet(&pkt);
            ipsec.encrypt_with(out_id, &mut b, 0).expect("encrypt");
            node.seen.esp_sent.push(ipsec::Buf::data(&b).to_vec());
            // Outer IPv4 (20) + UDP (8): the rest is the ESP packet.
            let esp = &ipsec::Buf::data(&b)[28..];
            let to = SocketAddr::new(I_ADDR.parse().expect("addr"), enc.dport);
            node.s4500.send_to(esp, to).expect("send ESP");
        }
        let _ = up_tx.send(Up::Child(c.inbound.spi, c.outbound.spi));
        while del_rx.try_recv().is_err() {
            node.step(&mut i);
        }
        let out = i.delete_ike(node.now()).expect("delete IKE SA");
        node.send_all(out);
        let deadline = Instant::now() + Duration::from_secs(10);
        while i.state() != IkeState::Closed && Instant::now() < deadline {
            node.step(&mut i);
        }
        node.seen
    });
    let up = up_rx
        .recv_timeout(Duration::from_secs(30))
        .unwrap_or(Up::Failed("initiator thread silent".into()));
    // Give charon a moment to count the ESP packets.
    std::thread::sleep(Duration::from_millis(300));
    let sas = lab.swanctl(&["--list-sas"]);
    let _ = del_tx.send(());
    let seen = ours.join().expect("initiator thread");
    let after = lab.swanctl(&["--list-sas"]);

    let (our_in, our_out) = match up {
        Up::Child(a, b) => (a, b),
        Up::Failed(why) => panic!("no child SA: {why}\n{sas}"),
    };
    assert!(sas.contains("theirs: #1, ESTABLISHED"), "{sas}");
    assert!(
        sas.contains("AES_GCM_16-256/PRF_HMAC_SHA2_384/MODP_2048"),
        "{sas}"
    );
    assert!(sas.contains("INSTALLED"), "{sas}");
    assert_eq!(
        installed(&sas),
        Some(Listed {
            spi_in: our_out,
            spi_out: our_in,
            packets_in: 3
        }),
        "charon decrypted our ESP:\n{sas}"
    );
    assert!(seen.events.iter().any(|e| matches!(
        e,
        Event::IkeSaUp {
            nat_local: false,
            nat_remote: true,
            ..
        }
    )));
    assert!(seen.events.iter().any(|e| matches!(
        e,
        Event::IkeSaDown {
            reason: DownReason::DeletedLocally,
            ..
        }
    )));
    assert!(
        !after.contains("ESTABLISHED"),
        "charon still has the SA:\n{after}"
    );
    let c = seen.counters;
    assert_eq!(
        (
            c.parse_errors,
            c.integrity_failures,
            c.auth_failures,
            c.retransmits
        ),
        (0, 0, 0, 0)
    );
    let text = common::tshark_check_ike(&lab.dir, "strongswan-responder", &seen.datagrams);
    assert!(text.contains("Exchange type: INFORMATIONAL (37)"));

    // tshark decrypts the ESP we sent with the key charon derived for that SA (its
    // `chd = 4` log): our KEYMAT (RFC 7296 §2.17) and our ESP agree with charon's.
    let log = std::fs::read_to_string(lab.dir.join("charon.log")).unwrap_or_default();
    let key = charon_child_key(&log, our_out, "inbound", "initiator")
        .unwrap_or_else(|| panic!("no key for SPI {our_out:08x} in charon's log"));
    let pcap = lab.dir.join("our-esp.pcap");
    common::write_pcap(&pcap, &seen.esp_sent);
    let tshark = common::which("tshark").expect("tshark");
    let uat = format!(
        "uat:esp_sa:\"IPv4\",\"*\",\"*\",\"0x{our_out:08x}\",\"AES-GCM with 16 octet ICV [RFC4106]\",\"0x{key}\",\"NULL\",\"\""
    );
    let out = Command::new(tshark)
        .arg("-n")
        .arg("-r")
        .arg(&pcap)
        .args(["-o", "esp.enable_encryption_decode:TRUE", "-o", &uat])
        .args([
            "-T",
            "fields",
            "-E",
            "occurrence=l",
            "-e",
            "esp.spi",
            "-e",
            "udp.dstport",
        ])
        .args(["-e", "_ws.malformed", "-e", "data.data"])
        .output()
        .expect("run tshark");
    let text = String::from_utf8_lossy(&out.stdout).to_string();
    assert_eq!(text.lines().count(), 3, "{text}");
    for l in text.lines() {
        let f: Vec<&str> = l.split('\t').collect();
        assert_eq!(
            f.first().copied(),
            Some(format!("0x{our_out:08x}").as_str()),
            "{l}"
        );
        // The last UDP header is the inner one (port 9) once decrypted.
        assert_eq!(
            f.get(1).copied(),
            Some("9"),
            "inner UDP after decryption: {l}"
        );
        assert_eq!(f.get(2).copied(), Some(""), "malformed: {l}");
        assert_eq!(
            f.get(3).copied(),
            Some(common::hex(b"through our child SA").as_str()),
            "{l}"
        );
    }
}

/// Steps `node` until `done` holds for its events (at most 10 s).
fn step_until(node: &mut Node, i: &mut Initiator, done: impl Fn(&[Event]) -> bool) -> bool {
    let deadline = Instant::now() + Duration::from_secs(10);
    while !done(&node.seen.events) {
        if Instant::now() > deadline || i.state() == IkeState::Closed {
            return false;
        }
        node.step(i);
    }
    true
}

/// Our initiator rekeys the IKE SA at charon (§2.18, then deletes the old one), then
/// the child SA over the new IKE SA with PFS (charon's esp_proposals demand x25519);
/// charon counts our ESP through the new child SA, lists the new IKE SA with our
/// SPIs, and the final Delete goes over the new IKE SA.
#[test]
fn our_initiator_rekeys_the_ike_sa_at_strongswan() {
    if !can_run() {
        return;
    }
    let mut lab = Lab::new("d");
    run(Command::new("ip").args(["-n", &lab.ns_i, "addr", "add", "10.2.0.1/32", "dev", "lo"]));
    let conf = swanctl_conf("theirs", "responder.example", "initiator.example", false).replace(
        "esp_proposals = aes256gcm16\n",
        "esp_proposals = aes256gcm16-x25519\n",
    );
    lab.start_charon(&conf);
    let (up_tx, up_rx) = std::sync::mpsc::channel::<Result<(u64, u64, u32, u32), String>>();
    let (del_tx, del_rx) = std::sync::mpsc::channel::<()>();
    let ns_r = lab.ns_r.clone();
    let ours = std::thread::spawn(move || {
        enter_netns(&ns_r);
        let mut node = Node::bind();
        let peer: SocketAddr = format!("{I_ADDR}:500").parse().expect("addr");
        let mut cfg = our_config(true);
        cfg.child_pfs = Some(DhGroup::Curve25519);
        let mut i = Initiator::new(cfg, node.local, peer, node.now());
        let out = i.start(node.now()).expect("start");
        node.send_all(out);
        let fail = |node: &Node, what: &str| Err(format!("{what}: {:?}", node.seen.events));
        if !step_until(&mut node, &mut i, |e| {
            e.iter().any(|e| matches!(e, Event::ChildSaUp(_)))
        }) {
            let _ = up_tx.send(fail(&node, "handshake"));
            return node.seen;
        }
        let out = i.rekey_ike(node.now()).expect("rekey IKE SA");
        node.send_all(out);
        let rekeyed = step_until(&mut node, &mut i, |e| {
            e.iter().any(|e| {
                matches!(
                    e,
                    Event::IkeSaDown {
                        reason: DownReason::Rekeyed,
                        ..
                    }
                )
            })
        });
        if !rekeyed {
            let _ = up_tx.send(fail(&node, "IKE SA rekey"));
            return node.seen;
        }
        let out = i.rekey_child(node.now()).expect("rekey child SA");
        node.send_all(out);
        let ok = step_until(&mut node, &mut i, |e| {
            e.iter()
                .any(|e| matches!(e, Event::ChildSaUp(c) if c.rekey_of.is_some()))
                && e.iter()
                    .filter(|e| matches!(e, Event::ChildSaDown { .. }))
                    .count()
                    == 1
        });
        let new = node.seen.events.iter().find_map(|e| match e {
            Event::ChildSaUp(c) if c.rekey_of.is_some() => Some(c),
            _ => None,
        });
        let Some(c) = new.filter(|_| ok) else {
            let _ = up_tx.send(fail(&node, "PFS child rekey"));
            return node.seen;
        };
        let mut ipsec = Ipsec::new();
        let (_, out_id) = c.install(&mut ipsec.sad, 0).expect("install");
        let enc = c.outbound.encap.expect("UDP encapsulation");
        let pkt = common::udp_packet(
            "10.1.0.1:1000".parse().expect("addr"),
            "10.2.0.1:9".parse().expect("addr"),
            b"through our child SA",
        );
        for _ in 0..3 {
            let mut b = ipsec::HeadroomBuf::from_packet(&pkt);
            ipsec.encrypt_with(out_id, &mut b, 0).expect("encrypt");
            let esp = &ipsec::Buf::data(&b)[28..];
            let to = SocketAddr::new(I_ADDR.parse().expect("addr"), enc.dport);
            node.s4500.send_to(esp, to).expect("send ESP");
        }
        let (spi_i, spi_r) = i.spis();
        let _ = up_tx.send(Ok((spi_i, spi_r, c.inbound.spi, c.outbound.spi)));
        while del_rx.try_recv().is_err() {
            node.step(&mut i);
        }
        let out = i.delete_ike(node.now()).expect("delete IKE SA");
        node.send_all(out);
        let deadline = Instant::now() + Duration::from_secs(10);
        while i.state() != IkeState::Closed && Instant::now() < deadline {
            node.step(&mut i);
        }
        node.seen
    });
    let up = up_rx
        .recv_timeout(Duration::from_secs(40))
        .unwrap_or(Err("initiator thread silent".into()));
    std::thread::sleep(Duration::from_millis(300));
    let sas = lab.swanctl(&["--list-sas"]);
    let _ = del_tx.send(());
    let seen = ours.join().expect("initiator thread");
    let after = lab.swanctl(&["--list-sas"]);

    let (spi_i, spi_r, our_in, our_out) = up.unwrap_or_else(|why| panic!("{why}\n{sas}"));
    assert!(
        sas.contains(&format!("{spi_i:016x}_i")) && sas.contains(&format!("{spi_r:016x}_r")),
        "charon lists the new IKE SA {spi_i:016x}/{spi_r:016x}:\n{sas}"
    );
    assert_eq!(
        installed(&sas),
        Some(Listed {
            spi_in: our_out,
            spi_out: our_in,
            packets_in: 3
        }),
        "charon decrypted our ESP through the PFS child SA:\n{sas}"
    );
    assert!(seen.events.iter().any(|e| matches!(
        e,
        Event::IkeSaDown { spi_i: a, reason: DownReason::DeletedLocally, .. } if *a == spi_i
    )));
    assert!(!after.contains("ESTABLISHED"), "{after}");
    let c = seen.counters;
    assert_eq!(
        (
            c.parse_errors,
            c.integrity_failures,
            c.auth_failures,
            c.retransmits
        ),
        (0, 0, 0, 0)
    );
    let text = common::tshark_check_ike(&lab.dir, "strongswan-rekey-by-us", &seen.datagrams);
    assert!(text.contains("Exchange type: CREATE_CHILD_SA (36)"));
}
