//! The key server unikernel under QEMU (TCG): `image build keyserver` builds it (the
//! `keyserver` crate without `std`), it boots to `keyserver ready` with its
//! configuration on an OpenStack config drive, and three Linux CPEs
//! (`keyserver::client::UdpClient`, the vCPE's key server link) authenticate to it
//! with IKEv2 and receive matching keys for their hub-and-spoke tunnels; `/metrics`
//! and the RESTCONF state count them; a revocation through the guest's API
//! (`POST …/cpe=ID/revoke`) makes the hub drop the revoked CPE's tunnel; a bad
//! configuration ends the boot with one line.
//!
//! Networking is QEMU user networking (slirp, no tap, loopback only): host
//! 127.0.0.1:500 and :4500 (UDP) forward to the guest's IKE and NAT-T ports — the
//! CPEs see the NAT, move to 4500 as RFC 7296 §2.23 says, and the guest answers
//! there — and a host TCP port to its HTTP port. Binding port 500 needs root; the
//! test skips (printing why) without root, QEMU or xorriso, or when 500/4500 are
//! taken. A test binary of its own: the images share the kernel crate's target
//! directory, and cargo runs test binaries one after another.
//!
//! Two NICs, as the VNF package lays them out (`ks-mgmt` NIC 0, `ks-core` NIC 1):
//! `server.metrics` at another address than `server.listen` gives the guest two host
//! stacks. NIC 0 is slirp (HTTP forwarded from a host TCP port to 10.0.2.15:9100),
//! NIC 1 a QEMU UDP-socket netdev whose Ethernet frames the test reads and writes
//! itself: a CPE (`keyserver::client::Client`, sans-IO) at 192.0.2.2 authenticates
//! to 192.0.2.1:500 over hand-built Ethernet/IPv4/UDP frames (the test answers the
//! guest's ARP), `/metrics` on NIC 0 counts it, a TCP SYN to 192.0.2.1:9100 on NIC 1
//! gets a reset and no SYN-ACK (no HTTP there), and the same configuration with one
//! NIC is refused with one line. Needs QEMU and xorriso, not root.

use keyserver::client::{ClientConfig, ClientEvent, TunnelKeys, UdpClient};
use std::collections::HashMap;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream, UdpSocket};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::{mpsc, Mutex};
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

fn have(tool: &str) -> bool {
    std::env::var_os("PATH")
        .map(|p| std::env::split_paths(&p).any(|d| d.join(tool).is_file()))
        .unwrap_or(false)
}

const CPES: [&str; 3] = ["hq.example", "branch1.example", "branch2.example"];

fn psk(id: &str) -> String {
    format!("uk-ks-secret-of-{id}")
}

/// One QEMU guest at a time: the tests of this binary run on threads of one process.
static GUEST: Mutex<()> = Mutex::new(());

/// The guest's configuration: `keyserver run`'s TOML, on slirp's guest address.
fn config(extra_server: &str) -> String {
    config_at("10.0.2.15", "10.0.2.15", extra_server)
}

/// The configuration with IKE (`listen`, `listen_natt`) at `ike` and HTTP
/// (`metrics`) at `mgmt`.
fn config_at(ike: &str, mgmt: &str, extra_server: &str) -> String {
    let mut t = format!(
        "[server]\nlisten = \"{ike}:500\"\nlisten_natt = \"{ike}:4500\"\nmetrics = \"{mgmt}:9100\"\nid = \"ks.example\"\nrekey_interval_s = 3600\nliveness_interval_s = 10\n{extra_server}\n[[group]]\nname = \"branches\"\ntopology = \"hub-spoke\"\nhubs = [\"hq.example\"]\n"
    );
    for (k, id) in CPES.iter().enumerate() {
        t += &format!(
            "\n[[cpe]]\nid = \"{id}\"\npsk = \"{}\"\naddress = \"198.51.100.{}\"\nsubnet = \"10.{}.0.0/24\"\ngroups = [\"branches\"]\n",
            psk(id),
            k + 1,
            k + 1
        );
    }
    t
}

/// Why the test cannot run here, if it cannot.
fn cannot_run() -> Option<String> {
    for t in ["qemu-system-x86_64", "xorriso"] {
        if !have(t) {
            return Some(format!("{t} is not installed (scripts/setup installs it)"));
        }
    }
    // SAFETY: geteuid has no preconditions.
    if unsafe { libc::geteuid() } != 0 {
        return Some("forwarding host UDP port 500 to the guest needs root".into());
    }
    for p in [500, 4500] {
        if UdpSocket::bind(("127.0.0.1", p)).is_err() {
            return Some(format!("127.0.0.1:{p}/udp is taken"));
        }
    }
    None
}

fn build() {
    let out = testbed()
        .args(["image", "build", "keyserver", "--no-disk"])
        .output()
        .expect("run testbed image build");
    assert!(
        out.status.success(),
        "image build keyserver failed:\n{}\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

fn free_tcp_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("a free port")
        .port()
}

/// One HTTP/1.1 request to the guest through the forward: (status, body).
fn http(port: u16, method: &str, path: &str) -> Option<(u16, String)> {
    let mut s = TcpStream::connect(("127.0.0.1", port)).ok()?;
    s.set_read_timeout(Some(Duration::from_secs(5))).ok()?;
    write!(
        s,
        "{method} {path} HTTP/1.1\r\nHost: guest\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
    )
    .ok()?;
    let mut b = String::new();
    s.read_to_string(&mut b).ok()?;
    let status = b.split(' ').nth(1)?.parse().ok()?;
    let body = b.split_once("\r\n\r\n")?.1.to_string();
    Some((status, body))
}

/// What one CPE received.
#[derive(Default)]
struct Cpe {
    synced: bool,
    tunnels: HashMap<u64, TunnelKeys>,
    deleted: Vec<u64>,
}

fn step(c: &mut UdpClient, got: &mut Cpe) {
    c.run_once(Duration::from_millis(5), |e| match e {
        ClientEvent::Install(t) => {
            got.tunnels.insert(t.pair, *t);
        }
        ClientEvent::Delete { pair, epoch: None } => {
            got.tunnels.remove(&pair);
            got.deleted.push(pair);
        }
        ClientEvent::Synced => got.synced = true,
        _ => {}
    })
    .expect("client socket");
}

#[test]
fn three_linux_cpes_get_matching_keys_from_the_guest_and_a_revocation_reaches_the_hub() {
    let _one = GUEST.lock().unwrap_or_else(|e| e.into_inner());
    if let Some(why) = cannot_run() {
        eprintln!("skipped: {why}");
        return;
    }
    build();
    let elf = std::fs::read(root().join("target/images/keyserver.elf")).expect("keyserver.elf");
    assert!(
        elf.len() <= 2 << 20,
        "stripped keyserver ELF is {} bytes (> 2 MiB)",
        elf.len()
    );
    let cfg = std::env::temp_dir().join(format!("ks-guest-uk-{}.toml", std::process::id()));
    std::fs::write(&cfg, config("")).expect("write config");
    let http_port = free_tcp_port();
    let t0 = Instant::now();
    // The guest leaves by itself (`exit=MS`), so `image run` removes its config
    // drive and seed; 12 s of guest time is plenty for the exchange below.
    let mut child = testbed()
        .args([
            "image",
            "run",
            "keyserver",
            "--no-build",
            "--accel",
            "tcg",
            "--memory",
            "128M",
            "--timeout",
            "60",
            "--append",
            "exit=12000",
            "--config-drive",
            "config-2",
            "--config",
        ])
        .arg(&cfg)
        .arg("--net")
        .arg(format!("user:{http_port}-9100:500-500/udp:4500-4500/udp"))
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("run testbed image run");
    let (tx, rx) = mpsc::channel::<String>();
    let out = child.stdout.take().expect("stdout");
    let reader = std::thread::spawn(move || {
        let mut all = String::new();
        for line in BufReader::new(out).lines().map_while(|l| l.ok()) {
            let _ = tx.send(line.clone());
            all += &line;
            all.push('\n');
        }
        all
    });
    let ready = loop {
        match rx.recv_timeout(Duration::from_secs(30)) {
            Ok(l) if l.contains("keyserver ready in") => break l,
            Ok(l) if l.contains("FATAL") => panic!("guest refused: {l}"),
            Ok(_) => {}
            Err(_) => {
                let _ = child.kill();
                panic!("no ready line within 30 s");
            }
        }
    };
    eprintln!("{ready} (QEMU launch to ready {:?})", t0.elapsed());
    assert!(ready.contains("3 cpes, 1 groups, 2 tunnels"), "{ready}");
    assert!(ready.contains("memory used"), "{ready}");

    // Three Linux CPEs authenticate through the NAT (slirp) and synchronise.
    let server: SocketAddr = "127.0.0.1:500".parse().unwrap();
    let mut clients: Vec<UdpClient> = CPES
        .iter()
        .map(|id| {
            let mut c = ClientConfig::new(id, psk(id).as_bytes());
            c.server_id = Some("ks.example".into());
            c.retransmit_ms = 1000;
            UdpClient::connect(c, "127.0.0.1:0".parse().unwrap(), server).expect("client")
        })
        .collect();
    let mut got: Vec<Cpe> = CPES.iter().map(|_| Cpe::default()).collect();
    let deadline = Instant::now() + Duration::from_secs(8);
    while !got.iter().all(|g| g.synced) && Instant::now() < deadline {
        for (c, g) in clients.iter_mut().zip(got.iter_mut()) {
            step(c, g);
        }
    }
    let synced: Vec<bool> = got.iter().map(|g| g.synced).collect();
    if !synced.iter().all(|s| *s) {
        let console: Vec<String> = rx.try_iter().collect();
        let counters: Vec<String> = clients
            .iter()
            .map(|c| {
                let k = c.client.counters();
                format!(
                    "connects {} disconnects {} updates {}",
                    k.connects, k.disconnects, k.updates
                )
            })
            .collect();
        panic!(
            "synchronised: {synced:?}; clients: {counters:?}\nconsole:\n{}",
            console.join("\n")
        );
    }
    eprintln!("3 CPEs served {:?} after QEMU launch", t0.elapsed());

    // Hub-and-spoke: the hub has a tunnel to each branch, each branch one to the hub,
    // and the two ends of each tunnel hold mirror-image SAs with the same keys.
    assert_eq!(got[0].tunnels.len(), 2);
    for b in 1..3 {
        assert_eq!(got[b].tunnels.len(), 1, "{}", CPES[b]);
        let (pair, tb) = got[b].tunnels.iter().next().unwrap();
        assert_eq!(tb.peer_id, CPES[0]);
        let th = got[0].tunnels.get(pair).expect("the hub has the pair");
        assert_eq!(th.peer_id, CPES[b]);
        assert_eq!(th.outbound.spi, tb.inbound.spi);
        assert_eq!(th.inbound.spi, tb.outbound.spi);
        assert_ne!(th.outbound.spi, th.inbound.spi);
        assert_eq!(
            th.outbound_key().expose_for_key_log(),
            tb.inbound_key().expose_for_key_log()
        );
        assert_eq!(
            th.inbound_key().expose_for_key_log(),
            tb.outbound_key().expose_for_key_log()
        );
        assert_ne!(
            th.outbound_key().expose_for_key_log(),
            th.inbound_key().expose_for_key_log()
        );
        assert!(th.active && tb.active);
    }
    // The other branch's keys are not the first's.
    let k1 = got[1]
        .tunnels
        .values()
        .next()
        .unwrap()
        .outbound_key()
        .expose_for_key_log()
        .to_vec();
    let k2 = got[2]
        .tunnels
        .values()
        .next()
        .unwrap()
        .outbound_key()
        .expose_for_key_log()
        .to_vec();
    assert_ne!(k1, k2);

    // The guest's metrics and RESTCONF state count them.
    let (st, m) = http(http_port, "GET", "/metrics").expect("GET /metrics");
    assert_eq!(st, 200, "{m}");
    assert!(m.contains("keyserver_cpes_served 3\n"), "{m}");
    assert!(m.contains("keyserver_pairs 2\n"), "{m}");
    let (st, s) =
        http(http_port, "GET", "/restconf/data/keyserver:keyserver/state").expect("GET state");
    assert_eq!(st, 200, "{s}");
    let v: serde_json::Value = serde_json::from_str(&s).expect("state JSON");
    let state = &v["keyserver:state"];
    assert_eq!(state["served"], 3, "{v}");
    assert_eq!(state["tunnels"], 2, "{v}");
    let hq = state["cpe"]
        .as_array()
        .and_then(|a| a.iter().find(|c| c["id"] == CPES[0]))
        .unwrap_or_else(|| panic!("no hq in {v}"));
    assert_eq!(hq["up"], true, "{v}");
    assert_eq!(hq["tunnel"].as_array().map(Vec::len), Some(2), "{v}");
    // Never a key or PSK in the API.
    assert!(!s.contains("secret"), "{s}");

    // Revoke branch2 through the guest's API: the hub drops their tunnel.
    let pair2 = *got[2].tunnels.keys().next().unwrap();
    let (st, b) = http(
        http_port,
        "POST",
        "/restconf/data/keyserver:keyserver/cpe=branch2.example/revoke",
    )
    .expect("POST revoke");
    assert_eq!(st, 204, "{b}");
    let deadline = Instant::now() + Duration::from_secs(3);
    while !got[0].deleted.contains(&pair2) && Instant::now() < deadline {
        for (c, g) in clients.iter_mut().zip(got.iter_mut()) {
            step(c, g);
        }
    }
    assert!(
        got[0].deleted.contains(&pair2),
        "the hub kept the revoked branch's tunnel"
    );
    assert_eq!(got[0].tunnels.len(), 1);
    let (_, m) = http(http_port, "GET", "/metrics").expect("GET /metrics");
    assert!(m.contains("keyserver_revocations_total 1\n"), "{m}");
    let (st, _) = http(
        http_port,
        "POST",
        "/restconf/data/keyserver:keyserver/cpe=nobody/revoke",
    )
    .expect("POST");
    assert_eq!(st, 400);

    let status = child.wait().expect("wait for image run");
    let console = reader.join().expect("console reader");
    let _ = std::fs::remove_file(&cfg);
    assert!(status.success(), "{console}");
    assert!(
        console.contains("keyserver: revoking branch2.example"),
        "{console}"
    );
    assert!(
        !console.contains("uk-ks-secret"),
        "a PSK on the console\n{console}"
    );
    // A journal is refused with one line (no persistent disk in the guest).
    let bad = std::env::temp_dir().join(format!("ks-guest-uk-bad-{}.toml", std::process::id()));
    std::fs::write(&bad, config("journal = \"/var/lib/keyserver/state\"\n")).expect("write");
    let line = refused_with_one_nic(&bad);
    assert!(
        line.contains("server.journal: the key server unikernel has no persistent disk"),
        "{line}"
    );
}

// ---- Two NICs: frames on the IKE NIC built by hand ----

/// The guest's IKE address (NIC 1) and the test's CPE next to it.
const GUEST_IKE: [u8; 4] = [192, 0, 2, 1];
const CPE_IP: [u8; 4] = [192, 0, 2, 2];
const CPE_MAC: [u8; 6] = [0x02, 0, 0, 0, 0xcc, 0x01];
/// The MAC `image run` gives the guest's second NIC (02:00:00:00:00:<index+1>).
const GUEST_NIC1_MAC: [u8; 6] = [0x02, 0, 0, 0, 0, 0x02];

fn sum16(mut acc: u32, b: &[u8]) -> u32 {
    for c in b.chunks(2) {
        acc += u32::from(u16::from_be_bytes([c[0], *c.get(1).unwrap_or(&0)]));
    }
    acc
}

fn fold(mut acc: u32) -> u16 {
    while acc > 0xffff {
        acc = (acc & 0xffff) + (acc >> 16);
    }
    !(acc as u16)
}

/// Ethernet (our MAC to the guest's) + IPv4 (RFC 791, header checksum) around a
/// UDP or TCP segment whose checksum field (at `csum_at`) is filled here (RFC 768,
/// RFC 9293 §3.1: pseudo-header).
fn frame(proto: u8, mut seg: Vec<u8>, csum_at: usize) -> Vec<u8> {
    let mut pseudo = Vec::with_capacity(12);
    pseudo.extend_from_slice(&CPE_IP);
    pseudo.extend_from_slice(&GUEST_IKE);
    pseudo.extend_from_slice(&[0, proto]);
    pseudo.extend_from_slice(&(seg.len() as u16).to_be_bytes());
    let c = fold(sum16(sum16(0, &pseudo), &seg));
    seg[csum_at..csum_at + 2].copy_from_slice(&c.to_be_bytes());
    let mut ip = vec![0x45, 0];
    ip.extend_from_slice(&((20 + seg.len()) as u16).to_be_bytes());
    ip.extend_from_slice(&[0, 1, 0x40, 0, 64, proto, 0, 0]);
    ip.extend_from_slice(&CPE_IP);
    ip.extend_from_slice(&GUEST_IKE);
    let c = fold(sum16(0, &ip));
    ip[10..12].copy_from_slice(&c.to_be_bytes());
    let mut f = GUEST_NIC1_MAC.to_vec();
    f.extend_from_slice(&CPE_MAC);
    f.extend_from_slice(&[0x08, 0x00]);
    f.extend_from_slice(&ip);
    f.extend_from_slice(&seg);
    f
}

fn udp_frame(sport: u16, dport: u16, data: &[u8]) -> Vec<u8> {
    let mut u = sport.to_be_bytes().to_vec();
    u.extend_from_slice(&dport.to_be_bytes());
    u.extend_from_slice(&((8 + data.len()) as u16).to_be_bytes());
    u.extend_from_slice(&[0, 0]);
    u.extend_from_slice(data);
    frame(17, u, 6)
}

/// A TCP SYN (no options) from the CPE.
fn syn_frame(sport: u16, dport: u16) -> Vec<u8> {
    let mut t = sport.to_be_bytes().to_vec();
    t.extend_from_slice(&dport.to_be_bytes());
    t.extend_from_slice(&0x1234_5678u32.to_be_bytes());
    t.extend_from_slice(&[0, 0, 0, 0, 0x50, 0x02, 0xff, 0xff, 0, 0, 0, 0]);
    frame(6, t, 16)
}

/// What the guest sent on its IKE NIC.
#[derive(Default)]
struct Nic1 {
    arp_answered: u32,
    /// IKE datagrams from 192.0.2.1:500.
    ike: u32,
    /// IPv4 fragments (not reassembled here: a failure).
    fragments: u32,
    /// TCP flags of segments from the guest's port 9100.
    tcp_flags: Vec<u8>,
}

/// Handle one frame from the guest: answer ARP for the CPE, hand IKE datagrams to
/// `ike(payload)`, note TCP segments from port 9100.
fn from_guest(
    f: &[u8],
    sock: &UdpSocket,
    to: SocketAddr,
    seen: &mut Nic1,
    ike: impl FnOnce(&[u8]),
) {
    if f.len() < 14 {
        return;
    }
    let l3 = &f[14..];
    match u16::from_be_bytes([f[12], f[13]]) {
        // ARP request for the CPE's address (RFC 826): reply.
        0x0806 if l3.len() >= 28 && l3[7] == 1 && l3[24..28] == CPE_IP => {
            let mut r = f[6..12].to_vec();
            r.extend_from_slice(&CPE_MAC);
            r.extend_from_slice(&[0x08, 0x06, 0, 1, 0x08, 0, 6, 4, 0, 2]);
            r.extend_from_slice(&CPE_MAC);
            r.extend_from_slice(&CPE_IP);
            r.extend_from_slice(&l3[8..18]);
            sock.send_to(&r, to).expect("send ARP reply");
            seen.arp_answered += 1;
        }
        0x0800 if l3.len() >= 20 && l3[12..16] == GUEST_IKE => {
            let hl = usize::from(l3[0] & 0x0f) * 4;
            let total = usize::from(u16::from_be_bytes([l3[2], l3[3]])).min(l3.len());
            if u16::from_be_bytes([l3[6], l3[7]]) & 0x3fff != 0 {
                seen.fragments += 1;
                return;
            }
            let Some(l4) = l3.get(hl..total) else { return };
            match l3[9] {
                17 if l4.len() >= 8 && l4[0..2] == [0x01, 0xf4] => {
                    seen.ike += 1;
                    ike(&l4[8..]);
                }
                6 if l4.len() >= 20 && l4[0..2] == 9100u16.to_be_bytes() => {
                    seen.tcp_flags.push(l4[13]);
                }
                _ => {}
            }
        }
        _ => {}
    }
}

#[test]
fn two_nics_serve_http_on_the_management_nic_and_ike_on_the_core_nic() {
    let _one = GUEST.lock().unwrap_or_else(|e| e.into_inner());
    if let Some(why) = ["qemu-system-x86_64", "xorriso"]
        .iter()
        .find(|t| !have(t))
        .map(|t| format!("{t} is not installed (scripts/setup installs it)"))
    {
        eprintln!("skipped: {why}");
        return;
    }
    build();
    let cfg = std::env::temp_dir().join(format!("ks-guest-uk-2nic-{}.toml", std::process::id()));
    std::fs::write(&cfg, config_at("192.0.2.1", "10.0.2.15", "")).expect("write config");
    // NIC 1: QEMU sends the guest's frames to `sock` and takes ours on `qemu_port`.
    let sock = UdpSocket::bind("127.0.0.1:0").expect("bind NIC 1 socket");
    let qemu_port = UdpSocket::bind("127.0.0.1:0")
        .and_then(|s| s.local_addr())
        .expect("a free UDP port")
        .port();
    let qemu: SocketAddr = ([127, 0, 0, 1], qemu_port).into();
    let http_port = free_tcp_port();
    let t0 = Instant::now();
    let mut child = testbed()
        .args([
            "image",
            "run",
            "keyserver",
            "--no-build",
            "--accel",
            "tcg",
            "--memory",
            "128M",
            "--timeout",
            "60",
            "--append",
            "exit=6000",
            "--config-drive",
            "config-2",
            "--config",
        ])
        .arg(&cfg)
        .arg("--net")
        .arg(format!("user:{http_port}-9100"))
        .arg("--net")
        .arg(format!(
            "udp:{qemu_port}:{}",
            sock.local_addr().expect("addr").port()
        ))
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("run testbed image run");
    let (tx, rx) = mpsc::channel::<String>();
    let out = child.stdout.take().expect("stdout");
    let reader = std::thread::spawn(move || {
        let mut all = String::new();
        for line in BufReader::new(out).lines().map_while(|l| l.ok()) {
            let _ = tx.send(line.clone());
            all += &line;
            all.push('\n');
        }
        all
    });
    let ready = loop {
        match rx.recv_timeout(Duration::from_secs(30)) {
            Ok(l) if l.contains("keyserver ready in") => break l,
            Ok(l) if l.contains("FATAL") => panic!("guest refused: {l}"),
            Ok(_) => {}
            Err(_) => {
                let _ = child.kill();
                panic!("no ready line within 30 s");
            }
        }
    };
    eprintln!("{ready} (QEMU launch to ready {:?})", t0.elapsed());
    assert!(
        ready.contains(
            "(2 ports, ike 192.0.2.1:500 and 192.0.2.1:4500, http 10.0.2.15:9100 (management NIC)"
        ),
        "{ready}"
    );

    // The hub authenticates over NIC 1 and is synchronised.
    let id = CPES[0];
    let mut c = ClientConfig::new(id, psk(id).as_bytes());
    c.server_id = Some("ks.example".into());
    c.retransmit_ms = 500;
    let cpe: SocketAddr = (CPE_IP, 500).into();
    let mut client = keyserver::client::Client::new(c, cpe, (GUEST_IKE, 500).into());
    let start = Instant::now();
    let now = || start.elapsed().as_millis() as u64;
    client.connect(now());
    sock.set_read_timeout(Some(Duration::from_millis(5)))
        .expect("timeout");
    let mut seen = Nic1::default();
    let mut got = Cpe::default();
    let mut buf = vec![0u8; 65536];
    let deadline = Instant::now() + Duration::from_secs(8);
    while !got.synced && Instant::now() < deadline {
        while let Some((to, d)) = client.poll_transmit() {
            assert_eq!(to.port(), 500, "the CPE moved off port 500 without a NAT");
            sock.send_to(&udp_frame(500, 500, &d), qemu)
                .expect("send frame");
        }
        if let Ok((n, _)) = sock.recv_from(&mut buf) {
            from_guest(&buf[..n], &sock, qemu, &mut seen, |d| {
                client.handle(d, (GUEST_IKE, 500).into(), now())
            });
        }
        client.poll(now());
        while let Some(e) = client.poll_event() {
            match e {
                ClientEvent::Install(t) => {
                    got.tunnels.insert(t.pair, *t);
                }
                ClientEvent::Synced => got.synced = true,
                _ => {}
            }
        }
    }
    assert!(
        got.synced,
        "hub not synchronised over NIC 1: ARP answered {}, IKE datagrams {}, fragments {}, client connects {}",
        seen.arp_answered,
        seen.ike,
        seen.fragments,
        client.counters().connects
    );
    assert!(seen.arp_answered > 0);
    assert_eq!(got.tunnels.len(), 2, "the hub's tunnels to both branches");
    eprintln!("hub served over NIC 1 {:?} after QEMU launch", t0.elapsed());
    // Flush the acknowledgement.
    while let Some((_, d)) = client.poll_transmit() {
        sock.send_to(&udp_frame(500, 500, &d), qemu)
            .expect("send frame");
    }

    // HTTP on NIC 0's address counts it.
    let (st, m) = http(http_port, "GET", "/metrics").expect("GET /metrics on NIC 0");
    assert_eq!(st, 200, "{m}");
    assert!(m.contains("keyserver_cpes_served 1\n"), "{m}");
    let (st, s) = http(http_port, "GET", "/restconf/data/keyserver:keyserver/state")
        .expect("GET state on NIC 0");
    assert_eq!(st, 200, "{s}");
    let v: serde_json::Value = serde_json::from_str(&s).expect("state JSON");
    assert_eq!(v["keyserver:state"]["served"], 1, "{v}");

    // No HTTP on the IKE NIC's address: a SYN to 192.0.2.1:9100 gets a reset
    // (RST, RFC 9293 §3.10.7.1), never a SYN-ACK.
    seen.tcp_flags.clear();
    sock.send_to(&syn_frame(40000, 9100), qemu)
        .expect("send SYN");
    let deadline = Instant::now() + Duration::from_secs(2);
    while seen.tcp_flags.is_empty() && Instant::now() < deadline {
        if let Ok((n, _)) = sock.recv_from(&mut buf) {
            from_guest(&buf[..n], &sock, qemu, &mut seen, |_| {});
        }
    }
    assert!(
        seen.tcp_flags.iter().all(|f| f & 0x12 != 0x12),
        "SYN-ACK from 192.0.2.1:9100: {:?}",
        seen.tcp_flags
    );
    assert!(
        seen.tcp_flags.iter().any(|f| f & 0x04 != 0),
        "no reset from 192.0.2.1:9100 (the IKE stack did not answer): {:?}",
        seen.tcp_flags
    );

    let status = child.wait().expect("wait for image run");
    let console = reader.join().expect("console reader");
    let _ = std::fs::remove_file(&cfg);
    assert!(status.success(), "{console}");
    // The stacks' counter lines: HTTP requests on the management stack (port 0).
    assert!(
        console
            .lines()
            .any(|l| l.contains("host stack: port 0 tx dropped") && l.contains("http requests 2 ")),
        "{console}"
    );

    // One NIC for two stacks: one line.
    std::fs::write(&cfg, config_at("192.0.2.1", "10.0.2.15", "")).expect("write config");
    let line = refused_with_one_nic(&cfg);
    assert!(
        line.contains("management stack is on port 0 and its IKE stack on port 1 but the guest has 1 virtio-net ports"),
        "{line}"
    );
    eprintln!("two-NIC test done in {:?}", t0.elapsed());
}

/// Boots the key-server image with the config file `cfg` (removed afterwards) and
/// one NIC; the guest must refuse the config: exit status 2 and one `FATAL: bad
/// configuration` line, which is returned.
fn refused_with_one_nic(cfg: &std::path::Path) -> String {
    let o = testbed()
        .args([
            "image",
            "run",
            "keyserver",
            "--no-build",
            "--accel",
            "tcg",
            "--timeout",
            "60",
            "--config",
        ])
        .arg(cfg)
        .args(["--net", "user"])
        .output()
        .expect("image run");
    let _ = std::fs::remove_file(cfg);
    let t = format!(
        "{}{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    );
    assert_eq!(o.status.code(), Some(2), "{t}");
    t.lines()
        .find(|l| l.contains("FATAL: bad configuration"))
        .unwrap_or_else(|| panic!("{t}"))
        .to_string()
}
