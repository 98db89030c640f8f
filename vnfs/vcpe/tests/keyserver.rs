//! Tunnel keys from the SD-WAN key server: the key server (the `keyserver` crate's
//! UDP server, in process, on loopback) and two vCPEs (their graphs run frame by
//! frame, wired WAN to WAN in memory). Both register over UDP, get their tunnel's
//! keys (B's control plane runs only every 30 ms, so B learns of every update
//! later than A), and LAN→LAN traffic
//! crosses the tunnel both ways with no loss across several make-before-break
//! rotations; then one vCPE is revoked and its traffic no
//! longer reaches its peer.

mod common;
use common::*;
use ipsec::stage::{EspDecrypt, EspEncrypt};
use keyserver::udp::UdpServer;
use std::collections::{HashSet, VecDeque};
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use vcpe::vnf::{LAN, WAN};

const A_LAN: [u8; 6] = [0x02, 0xc9, 0, 0, 0x0a, 0x01];
const A_WAN: [u8; 6] = [0x02, 0xc9, 0, 0, 0x0a, 0x02];
const B_LAN: [u8; 6] = [0x02, 0xc9, 0, 0, 0x0b, 0x01];
const B_WAN: [u8; 6] = [0x02, 0xc9, 0, 0, 0x0b, 0x02];
const H1: [u8; 6] = [0x02, 0, 0, 0, 1, 0x10];
const H2: [u8; 6] = [0x02, 0, 0, 0, 2, 0x20];

fn server_config() -> keyserver::Config {
    let t = "[server]\nlisten = \"127.0.0.1:0\"\nid = \"ks.example\"\n\
        rekey_interval_s = 0.4\noverlap_s = 0.2\nretransmit_ms = 200\nretransmit_tries = 4\n\n\
        [[group]]\nname = \"sites\"\ntopology = \"full-mesh\"\n\n\
        [[cpe]]\nid = \"a.example\"\npsk = \"secret of site a\"\naddress = \"198.51.100.2\"\n\
        subnet = \"192.168.1.0/24\"\ngroups = [\"sites\"]\n\n\
        [[cpe]]\nid = \"b.example\"\npsk = \"secret of site b\"\naddress = \"198.51.100.3\"\n\
        subnet = \"192.168.2.0/24\"\ngroups = [\"sites\"]\n";
    keyserver::Config::from_toml(t).unwrap()
}

/// The example configuration with its static SAs replaced by key server keys.
fn vcpe_config(example: &str, id: &str, peer_id: &str, psk: &str, srv: SocketAddr) -> String {
    let i = example.find("[tunnel.static]").unwrap();
    format!(
        "{}[tunnel.keyserver]\npeer_id = {peer_id:?}\n\n[keyserver]\nserver = \"{srv}\"\n\
         id = {id:?}\npsk = {psk:?}\nserver_id = \"ks.example\"\nbind = \"127.0.0.1:0\"\n\
         retransmit_ms = 200\n",
        &example[..i]
    )
}

struct ServerThread {
    srv: Arc<Mutex<UdpServer>>,
    addr: SocketAddr,
    stop: Arc<AtomicBool>,
    handle: Option<std::thread::JoinHandle<()>>,
}

impl ServerThread {
    fn start() -> ServerThread {
        let srv = UdpServer::bind(&server_config()).unwrap();
        let addr = srv.local_addr().unwrap();
        let srv = Arc::new(Mutex::new(srv));
        let stop = Arc::new(AtomicBool::new(false));
        let (s, st) = (srv.clone(), stop.clone());
        let handle = std::thread::spawn(move || {
            while !st.load(Ordering::Relaxed) {
                s.lock()
                    .unwrap()
                    .run_once(Duration::from_millis(2))
                    .unwrap();
                std::thread::yield_now();
            }
        });
        ServerThread {
            srv,
            addr,
            stop,
            handle: Some(handle),
        }
    }
}

impl Drop for ServerThread {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(h) = self.handle.take() {
            let _ = h.join();
        }
    }
}

/// Runs the control plane on the real clock and lets the `esp-*` stages take the
/// SA updates it queued (what the worker's update hook does between bursts).
fn tick(d: &mut Dut, t0: Instant) {
    d.now_ms = d.now_ms.max(1000 + t0.elapsed().as_millis() as u64);
    d.control.poll(d.now_ms);
    assert!(d.control.take_frames().is_empty());
    drain(d);
}

/// The worker's update hook: the `esp-*` stages take the queued SA updates.
fn drain(d: &mut Dut) {
    d.graph
        .node_mut::<EspEncrypt>("esp-encrypt")
        .unwrap()
        .drain_updates();
    d.graph
        .node_mut::<EspDecrypt>("esp-decrypt")
        .unwrap()
        .drain_updates();
}

fn synced(d: &Dut) -> bool {
    d.control.keylink().unwrap().is_synced()
}

/// A LAN packet from the host behind `from` (0: A, 1: B) to the host behind the
/// other; returns the ESP frame leaving its WAN.
fn lan_packet(d: &mut Dut, from: usize, seq: u32) -> Vec<(u16, Vec<u8>)> {
    let f = if from == 0 {
        udp(
            H1,
            A_LAN,
            [192, 168, 1, 10],
            [192, 168, 2, 20],
            5000,
            6000,
            &seq.to_be_bytes(),
        )
    } else {
        udp(
            H2,
            B_LAN,
            [192, 168, 2, 20],
            [192, 168, 1, 10],
            6000,
            5000,
            &seq.to_be_bytes(),
        )
    };
    d.send(LAN, &f)
}

#[test]
fn keys_from_the_key_server_carry_traffic_across_rotations_and_revocation_stops_it() {
    let srv = ServerThread::start();
    let mut duts = [
        Dut::new(&vcpe_config(
            A,
            "a.example",
            "b.example",
            "secret of site a",
            srv.addr,
        )),
        Dut::new(&vcpe_config(
            B,
            "b.example",
            "a.example",
            "secret of site b",
            srv.addr,
        )),
    ];
    duts[0].neighbour([198, 51, 100, 3], B_WAN);
    duts[0].neighbour([192, 168, 1, 10], H1);
    duts[1].neighbour([198, 51, 100, 2], A_WAN);
    duts[1].neighbour([192, 168, 2, 20], H2);
    let t0 = Instant::now();
    while !duts.iter().all(synced) {
        assert!(t0.elapsed() < Duration::from_secs(10), "not synced");
        for d in duts.iter_mut() {
            tick(d, t0);
        }
        std::thread::sleep(Duration::from_millis(1));
    }
    for d in duts.iter_mut() {
        tick(d, t0);
    }
    // Packets spend 2 ms on the wire: some sent with an old SA arrive after the
    // sender switched to the new one.
    let mut wire: VecDeque<(Instant, usize, u32, Vec<u8>)> = VecDeque::new();
    let (mut sent, mut got) = ([0u32; 2], [0u32; 2]);
    let mut spis = [HashSet::new(), HashSet::new()];
    let rekeys0 = srv.srv.lock().unwrap().stats().rekeys;
    let start = Instant::now();
    // From here B's control plane runs every 30 ms only: its key server updates
    // wait in its socket, while A applies its own at once. An end that switched
    // to new keys before its peer installed them would lose packets.
    duts[1].poll_control = false;
    let mut b_polled = Instant::now();
    loop {
        let rekeys = srv.srv.lock().unwrap().stats().rekeys;
        if start.elapsed() > Duration::from_millis(1500) && rekeys >= rekeys0 + 2 {
            break;
        }
        assert!(
            start.elapsed() < Duration::from_secs(20),
            "too few rotations"
        );
        if b_polled.elapsed() >= Duration::from_millis(30) {
            tick(&mut duts[1], t0);
            b_polled = Instant::now();
        }
        for from in 0..2 {
            if from == 0 {
                tick(&mut duts[0], t0);
            }
            drain(&mut duts[from]);
            let seq = sent[from];
            let o = lan_packet(&mut duts[from], from, seq);
            assert_eq!(o.len(), 1, "side {from} seq {seq}: {o:?}");
            assert_eq!(o[0].0, WAN);
            let (_, _, proto, _, _) = ip_of(&o[0].1).unwrap();
            assert_eq!(proto, 50, "ESP");
            spis[from].insert(o[0].1[34..38].to_vec());
            sent[from] += 1;
            wire.push_back((Instant::now(), 1 - from, seq, o[0].1.clone()));
        }
        let now = Instant::now();
        while wire
            .front()
            .is_some_and(|(t, ..)| now.duration_since(*t) >= Duration::from_millis(2))
        {
            let (_, to, seq, f) = wire.pop_front().unwrap();
            drain(&mut duts[to]);
            let o = duts[to].send(WAN, &f);
            assert_eq!(o.len(), 1, "to side {to} seq {seq} lost: {o:?}");
            assert_eq!(o[0].0, LAN);
            assert!(o[0].1.ends_with(&seq.to_be_bytes()));
            got[to] += 1;
        }
        std::thread::sleep(Duration::from_micros(500));
    }
    for (_, to, seq, f) in wire.drain(..) {
        let o = duts[to].send(WAN, &f);
        assert_eq!(o.len(), 1, "to side {to} seq {seq} lost: {o:?}");
        got[to] += 1;
    }
    assert_eq!(got, [sent[1], sent[0]]);
    assert!(sent[0] > 100 && sent[1] > 100, "{sent:?}");
    // the senders moved to new SPIs as the keys rotated
    assert!(spis[0].len() >= 3 && spis[1].len() >= 3, "{spis:?}");
    for d in &duts {
        let s = &d.control.keylink().unwrap().stats;
        assert_eq!(s.refused.load(Ordering::Relaxed), 0);
        assert!(s.deletes.load(Ordering::Relaxed) >= 2);
    }
    eprintln!(
        "{} + {} packets, {} rotations, {} + {} SPIs, no loss",
        sent[0],
        sent[1],
        srv.srv.lock().unwrap().stats().rekeys - rekeys0,
        spis[0].len(),
        spis[1].len()
    );

    duts[1].poll_control = true;
    // Revocation: B deletes A's tunnel; what A still sends no longer reaches B's LAN.
    srv.srv.lock().unwrap().revoke("a.example").unwrap();
    let t1 = Instant::now();
    while !duts[1].control.keylink().unwrap().installed().is_empty() {
        assert!(t1.elapsed() < Duration::from_secs(5), "B kept A's keys");
        for d in duts.iter_mut() {
            tick(d, t0);
        }
        std::thread::sleep(Duration::from_millis(1));
    }
    tick(&mut duts[1], t0);
    let o = lan_packet(&mut duts[0], 0, 1 << 30);
    for (port, f) in o {
        assert_eq!(port, WAN);
        assert!(
            duts[1].send(WAN, &f).is_empty(),
            "B accepted a revoked peer"
        );
    }
    // and B sends nothing to A in clear or with old keys: its policy is gone and
    // the tunnel check drops the packet
    let o = lan_packet(&mut duts[1], 1, 1 << 30);
    assert!(o.is_empty(), "{o:?}");
}

#[test]
fn keyserver_configurations_are_checked_and_the_psk_never_prints() {
    use vcpe::Config;
    let srv: SocketAddr = "127.0.0.1:500".parse().unwrap();
    let good = vcpe_config(A, "a.example", "b.example", "secret of site a", srv);
    let c = Config::from_toml(&good).unwrap();
    assert!(!format!("{c:?}").contains("secret of site a"));
    assert!(format!("{c:?}").contains("<secret>"));
    let cases: &[(&str, &str, &str)] = &[
        (
            "psk = \"secret of site a\"",
            "psk = \"short\"",
            "keyserver.psk",
        ),
        ("id = \"a.example\"", "id = \"\"", "keyserver.id"),
        (
            "server = \"127.0.0.1:500\"",
            "server = \"0.0.0.0:500\"",
            "keyserver.server",
        ),
        ("server_id", "bogus = 1\nserver_id", "bogus"),
    ];
    for (from, to, want) in cases {
        assert!(good.contains(from), "{from}");
        let e = Config::from_toml(&good.replacen(from, to, 1)).unwrap_err();
        assert!(e.0.contains(want), "{to}: {e}");
        assert!(!e.0.contains('\n'), "one line: {e}");
        assert!(!e.0.contains("secret of site a"), "{e}");
    }
    // a [tunnel.keyserver] needs the [keyserver] section
    let i = good.find("[keyserver]").unwrap();
    let e = Config::from_toml(&good[..i]).unwrap_err();
    assert!(e.0.contains("needs a [keyserver]"), "{e}");
    // and is not also static
    let j = A.find("[tunnel.static]").unwrap();
    let both = format!("{}{}\n{}", &good[..i], &A[j..], &good[i..]);
    let e = Config::from_toml(&both).unwrap_err();
    assert!(e.0.contains("not both"), "{e}");
}

/// The opt-in SA export (`--esp-sa-log`): every SA the key link installs, both
/// directions and every epoch, as Wireshark `esp_sa` records in a 0600 file; the
/// ESP on the wire uses SPIs of the file; a group-readable file and a vCPE without
/// `[keyserver]` are refused.
#[test]
fn sa_export_holds_every_installed_sa_as_esp_sa_records() {
    use std::os::unix::fs::{MetadataExt, PermissionsExt};
    let dir = std::env::temp_dir().join(format!("vcpe-sa-export-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    // refused: without [keyserver], and a file others can read
    let mut plain = Dut::new(A);
    assert!(plain.control.export_sas(&dir.join("x")).is_err());
    let open = dir.join("open");
    std::fs::write(&open, "").unwrap();
    std::fs::set_permissions(&open, std::fs::Permissions::from_mode(0o644)).unwrap();
    let srv = ServerThread::start();
    let mut duts = [
        Dut::new(&vcpe_config(
            A,
            "a.example",
            "b.example",
            "secret of site a",
            srv.addr,
        )),
        Dut::new(&vcpe_config(
            B,
            "b.example",
            "a.example",
            "secret of site b",
            srv.addr,
        )),
    ];
    let e = duts[0].control.export_sas(&open).unwrap_err().to_string();
    assert!(e.contains("readable by group or others"), "{e}");
    let files = [dir.join("a.esp_sa"), dir.join("b.esp_sa")];
    for (d, f) in duts.iter_mut().zip(&files) {
        d.control.export_sas(f).unwrap();
    }
    duts[0].neighbour([198, 51, 100, 3], B_WAN);
    duts[0].neighbour([192, 168, 1, 10], H1);
    duts[1].neighbour([198, 51, 100, 2], A_WAN);
    duts[1].neighbour([192, 168, 2, 20], H2);
    // synced, then at least one rotation (rekey every 0.4 s): two epochs installed
    let t0 = Instant::now();
    let installs = |d: &Dut| {
        d.control
            .keylink()
            .unwrap()
            .stats
            .installs
            .load(Ordering::Relaxed)
    };
    while !(duts.iter().all(synced) && duts.iter().all(|d| installs(d) >= 2)) {
        assert!(t0.elapsed() < Duration::from_secs(10), "no rotation");
        for d in duts.iter_mut() {
            tick(d, t0);
        }
        std::thread::sleep(Duration::from_millis(1));
    }
    let mut spis: Vec<HashSet<(String, u32)>> = Vec::new();
    for (i, (d, f)) in duts.iter().zip(&files).enumerate() {
        let me = ["198.51.100.2", "198.51.100.3"][i];
        let m = std::fs::metadata(f).unwrap();
        assert_eq!(m.mode() & 0o777, 0o600, "{}", f.display());
        let text = std::fs::read_to_string(f).unwrap();
        let records: Vec<&str> = text.lines().filter(|l| !l.starts_with('#')).collect();
        let comments: Vec<&str> = text.lines().filter(|l| l.starts_with('#')).collect();
        let n = installs(d) as usize;
        assert_eq!(records.len(), 2 * n, "{text}");
        assert_eq!(comments.len(), 2 * n, "{text}");
        let stats = &d.control.keylink().unwrap().stats;
        assert_eq!(stats.sa_exports.load(Ordering::Relaxed) as usize, 2 * n);
        let mut set = HashSet::new();
        for (c, r) in comments.iter().zip(&records) {
            let f: Vec<&str> = r.split(',').map(|x| x.trim_matches('"')).collect();
            assert_eq!(f.len(), 8, "{r}");
            assert_eq!(f[0], "IPv4");
            assert_eq!(f[4], "AES-GCM with 16 octet ICV [RFC4106]");
            assert_eq!(f[6], "NULL");
            assert_eq!(f[7], "");
            // AES-256-GCM (the server's default): 32-octet key ‖ 4-octet salt
            assert_eq!(f[5].len(), 2 + 72, "{r}");
            let dir = if c.ends_with(" in") { "in" } else { "out" };
            assert!(c.starts_with("# tunnel ") && c.contains(" epoch "), "{c}");
            let spi = u32::from_str_radix(f[3].trim_start_matches("0x"), 16).unwrap();
            let (src, dst) = (f[1].to_string(), f[2].to_string());
            if dir == "out" {
                assert_eq!(src, me, "{r}");
            } else {
                assert_eq!(dst, me, "{r}");
            }
            set.insert((format!("{src}>{dst}"), spi));
        }
        spis.push(set);
    }
    // one end's outbound SAs are the other's inbound ones
    assert_eq!(spis[0], spis[1]);
    // the ESP A sends carries an SPI of A's outbound records
    for d in duts.iter_mut() {
        tick(d, t0);
    }
    let out = lan_packet(&mut duts[0], 0, 1);
    let (port, f) = out.first().expect("an ESP frame");
    assert_eq!(*port, WAN);
    let spi = u32::from_be_bytes([f[34], f[35], f[36], f[37]]);
    assert!(
        spis[0].contains(&("198.51.100.2>198.51.100.3".to_string(), spi)),
        "SPI {spi:#x} not exported: {:?}",
        spis[0]
    );
    let _ = std::fs::remove_dir_all(&dir);
}
