//! Namespace lab (root): the `vbng` binary runs in its own network namespace on an
//! AF_PACKET port of a veth pair; emulated subscribers run in a second namespace on
//! the other end (this test's thread, after `setns`), while `tshark` captures the
//! access link (our port transmits through the qdisc layer so that the capture holds
//! both directions). Checks: every subscriber comes up; a hostile subscriber (garbage
//! after the PPPoE header, bad LCP, a PADI flood, wrong password) disturbs no other
//! session; all sessions end with PADT; tshark dissects the whole capture with no
//! malformed frame and no warning. `VBNG_NETNS_SUBSCRIBERS` sets the count (default
//! 300). Fails (does not skip) without root, `ip` or `tshark`. The 10k-subscriber
//! version with FreeRADIUS is `testbed/tests/lab_bng_netns.rs` (`testbed lab bng
//! --netns`).

use dataplane::batch::Batch;
use dataplane::buf::Pool;
use dataplane::port::Port;
use dataplane::proto::ethernet::Vlans;
use pktgen::subscribers::client::{ClientParams, ClientPhase, Subscriber};
use std::os::fd::AsRawFd;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};
use vbng::fsm::Timers;
use vbng::lcp::AuthProto;

fn sh(args: &[&str]) {
    let st = Command::new(args[0])
        .args(&args[1..])
        .status()
        .unwrap_or_else(|e| panic!("{args:?}: {e}"));
    assert!(st.success(), "{args:?} failed");
}

/// Phases, failure phases and PADTs sent by the emulated subscribers.
type Outcome = (Vec<ClientPhase>, Vec<Option<ClientPhase>>, usize);

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

fn mac_of(i: u32) -> [u8; 6] {
    let b = i.to_be_bytes();
    [0x02, 0x5c, b[0], b[1], b[2], b[3]]
}

#[test]
fn subscribers_in_a_namespace_lab() {
    // SAFETY: geteuid has no preconditions.
    assert_eq!(
        unsafe { libc::geteuid() },
        0,
        "the namespace lab needs root (scripts/test runs it as root)"
    );
    for t in ["ip", "tshark"] {
        let ok = Command::new("sh")
            .args(["-c", &format!("command -v {t}")])
            .stdout(Stdio::null())
            .status()
            .map(|s| s.success())
            .unwrap_or(false);
        assert!(ok, "{t} not found (Debian iproute2 / tshark)");
    }
    let n: u32 = std::env::var("VBNG_NETNS_SUBSCRIBERS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(300);
    let id = std::process::id() % 100_000;
    let ns = [format!("vbng-sub-{id}"), format!("vbng-bng-{id}")];
    let dir = std::env::temp_dir().join(format!("vbng-netns-{id}"));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).expect("dir");
    let mut lab = Lab {
        ns: ns.clone(),
        dir: dir.clone(),
        children: Vec::new(),
    };
    let (va, vb) = (format!("vs{id}"), format!("vb{id}"));
    for x in &ns {
        sh(&["ip", "netns", "add", x]);
    }
    sh(&[
        "ip", "link", "add", &va, "type", "veth", "peer", "name", &vb,
    ]);
    sh(&["ip", "link", "set", &va, "netns", &ns[0]]);
    sh(&["ip", "link", "set", &vb, "netns", &ns[1]]);
    sh(&[
        "ip",
        "-n",
        &ns[1],
        "link",
        "set",
        &vb,
        "address",
        "02:00:00:00:b0:01",
    ]);
    for (x, v) in [(&ns[0], &va), (&ns[1], &vb)] {
        sh(&["ip", "-n", x, "link", "set", v, "up"]);
        sh(&["ip", "-n", x, "link", "set", "lo", "up"]);
    }
    let mut users = String::new();
    for i in 0..n {
        users.push_str(&format!(
            "[[users]]\nname = \"user{i}\"\npassword = \"pw{i}\"\n"
        ));
    }
    let cfg = format!(
        "name = \"vbng\"\nmac = \"02:00:00:00:b0:01\"\nauth = \"chap\"\nauth_fallback = \"pap\"\nkeepalive_interval_s = 5\nrestart_ms = 1000\npadi_per_mac = 5\n[[pools]]\nname = \"default\"\nranges = [\"100.64.0.2-100.64.255.254\"]\n{users}"
    );
    let cfg_path = dir.join("vbng.toml");
    std::fs::write(&cfg_path, cfg).expect("config");
    let cap = dir.join("access.pcap");
    let tshark = Command::new("ip")
        .args(["netns", "exec", &ns[0], "tshark", "-q", "-i", &va, "-w"])
        .arg(&cap)
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("tshark");
    lab.children.push(tshark);
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
        .args(["--access", &format!("afpacket:{vb}"), "--core"])
        .arg(format!("pcap::{}", dir.join("core.pcap").display()))
        .args(["--max-sessions", &(n + 16).to_string(), "--duration", "120"])
        .stdout(Stdio::null())
        .stderr(
            std::fs::File::create(dir.join("vbng.log"))
                .map(Stdio::from)
                .unwrap_or(Stdio::null()),
        )
        .spawn()
        .expect("vbng");
    lab.children.push(bng);
    std::thread::sleep(Duration::from_secs(3)); // tshark and the BNG start

    let ns0 = ns[0].clone();
    let va2 = va.clone();
    let result = std::thread::spawn(move || -> Result<Outcome, String> {
        let f = std::fs::File::open(format!("/var/run/netns/{ns0}")).map_err(|e| e.to_string())?;
        // SAFETY: setns on a valid namespace fd affects only this thread.
        if unsafe { libc::setns(f.as_raw_fd(), libc::CLONE_NEWNET) } != 0 {
            return Err("setns failed".into());
        }
        // Through the qdisc layer (no bypass), so that our transmitted frames pass the
        // packet taps and the capture checks both directions, not only the BNG's.
        let mut port = dataplane::port::afpacket::AfPacketPort::open(
            &va2,
            &dataplane::port::afpacket::Config {
                qdisc_bypass: false,
                ..dataplane::port::afpacket::Config::default()
            },
        )
        .map_err(|e| e.to_string())?;
        let pool = Pool::new(8192).ok_or("pool")?;
        let mut cache = pool.cache();
        let mut subs: Vec<Subscriber> = (0..=n)
            .map(|i| {
                let hostile = i == n;
                Subscriber::new(ClientParams {
                    mac: mac_of(i),
                    vlans: if i % 3 == 0 {
                        Vlans::default()
                    } else if i % 3 == 1 {
                        Vlans {
                            svlan: 0,
                            cvlan: (i % 4000 + 1) as u16,
                        }
                    } else {
                        Vlans {
                            svlan: 100 + (i / 4000) as u16,
                            cvlan: (i % 4000 + 1) as u16,
                        }
                    },
                    user: format!("user{i}").into_bytes(),
                    password: if hostile {
                        b"wrong".to_vec()
                    } else {
                        format!("pw{i}").into_bytes()
                    },
                    accept_auth: [
                        Some(if i % 2 == 0 {
                            AuthProto::Chap
                        } else {
                            AuthProto::Pap
                        }),
                        None,
                    ],
                    service_name: Vec::new(),
                    host_uniq: Some(i.to_be_bytes().to_vec()),
                    max_payload: if i % 5 == 0 { Some(1500) } else { None },
                    timers: Timers {
                        restart_ms: 1000,
                        ..Timers::default()
                    },
                    ipv6cp: false,
                    magic: 0x7700_0000 | i,
                    discovery_tries: 6,
                })
            })
            .collect();
        let t0 = Instant::now();
        let mut out: Vec<Vec<u8>> = Vec::new();
        let send =
            |port: &mut dyn Port, cache: &mut dataplane::buf::PoolCache, out: &mut Vec<Vec<u8>>| {
                let mut b = Batch::new();
                for f in out.drain(..) {
                    if let Some(mut p) = cache.alloc() {
                        if p.copy_from(&f).is_ok() {
                            if let Err(p) = b.push(p) {
                                cache.free(p);
                            }
                        } else {
                            cache.free(p);
                        }
                    }
                    if b.is_full() {
                        port.tx_burst(cache, &mut b);
                        b.free_all(cache);
                    }
                }
                port.tx_burst(cache, &mut b);
                b.free_all(cache);
            };
        // The hostile subscriber: a PADI flood first.
        let flood: usize = std::env::var("VBNG_NETNS_FLOOD")
            .ok()
            .and_then(|v| v.parse().ok())
            .unwrap_or(2000);
        for _ in 0..flood {
            subs[n as usize].start(0, &mut out);
        }
        let mut started = 0;
        let mut rx = Batch::new();
        let mut hostile_done = false;
        while t0.elapsed() < Duration::from_secs(60) {
            let now = t0.elapsed().as_millis() as u64;
            while started < n && started < (now as u32 + 1) * 20 {
                subs[started as usize].start(now, &mut out);
                started += 1;
            }
            send(&mut port, &mut cache, &mut out);
            port.rx_burst(&mut cache, &mut rx);
            rx.drain(|p| {
                if let Some(i) = p
                    .data()
                    .get(2..6)
                    .map(|b| u32::from_be_bytes([b[0], b[1], b[2], b[3]]))
                {
                    if p.data().get(..2) == Some(&[0x02, 0x5c][..]) {
                        if let Some(s) = subs.get_mut(i as usize) {
                            s.input(p.data(), now, &mut out);
                        }
                    }
                }
                cache.free(p);
            });
            for (i, s) in subs.iter_mut().enumerate() {
                if i < started as usize || i == n as usize {
                    s.poll(now, &mut out);
                }
            }
            // Once the hostile subscriber has a session id, it sends garbage in it.
            let h = &subs[n as usize];
            if !hostile_done && h.sid != 0 {
                hostile_done = true;
                out.push(h.session_frame(&[0xc0, 0x21, 0x01]));
                out.push(h.session_frame(&[0xc0, 0x21, 0x01, 0x09, 0x00, 0x40, 0x01]));
                out.push(h.session_frame(&[0x12, 0x34, 0xde, 0xad, 0xbe, 0xef]));
                let mut g = h.session_frame(&[0x00, 0x21]);
                g.extend_from_slice(&[0xff; 40]);
                out.push(g);
            }
            if subs[..n as usize]
                .iter()
                .all(|s| s.phase == ClientPhase::Up || s.failed.is_some())
                && started == n
            {
                break;
            }
            std::thread::sleep(Duration::from_millis(1));
        }
        let phases: Vec<ClientPhase> = subs[..n as usize].iter().map(|s| s.phase).collect();
        let failed: Vec<Option<ClientPhase>> =
            subs[..n as usize].iter().map(|s| s.failed).collect();
        // Teardown with PADT.
        for s in subs.iter_mut() {
            if s.phase == ClientPhase::Up {
                s.terminate(&mut out);
            }
        }
        let padts = out.len();
        send(&mut port, &mut cache, &mut out);
        std::thread::sleep(Duration::from_millis(500));
        Ok((phases, failed, padts))
    })
    .join()
    .expect("emulator thread");
    let (phases, failed, padts) = result.expect("emulator");
    let up = phases.iter().filter(|p| **p == ClientPhase::Up).count();
    let fails: Vec<_> = failed
        .iter()
        .enumerate()
        .filter_map(|(i, f)| f.map(|f| (i, f)))
        .take(5)
        .collect();
    let log = std::fs::read_to_string(dir.join("vbng.log")).unwrap_or_default();
    let tail: String = log
        .lines()
        .filter(|l| !l.trim_start().starts_with(char::is_numeric) || l.contains(" up "))
        .take(40)
        .collect::<Vec<_>>()
        .join("\n");
    assert_eq!(
        up, n as usize,
        "sessions up: {up}/{n}; failures {fails:?}\n{tail}"
    );
    assert_eq!(padts, n as usize);
    // Stop the capture (SIGINT lets tshark flush).
    if let Some(t) = lab.children.first_mut() {
        // SAFETY: sending a signal to our own child process.
        unsafe { libc::kill(t.id() as libc::pid_t, libc::SIGINT) };
        let t1 = Instant::now();
        while t1.elapsed() < Duration::from_secs(10) {
            if let Ok(Some(_)) = t.try_wait() {
                break;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }
    let run = |filter: &str| -> String {
        let o = Command::new("tshark")
            .arg("-r")
            .arg(&cap)
            .args(["-Y", filter])
            .output()
            .expect("tshark -r");
        assert!(
            o.status.success(),
            "tshark -r failed: {}",
            String::from_utf8_lossy(&o.stderr)
        );
        String::from_utf8_lossy(&o.stdout).into_owned()
    };
    let pads = run("pppoed && pppoe.code == 0x65").lines().count();
    let lcp_up = run("lcp.opt.magic_number").lines().count();
    // Frames of the hostile subscriber are garbage on purpose: leave them out.
    let bad = run("(_ws.malformed || _ws.expert.severity >= 0x00600000) && !(eth.addr == 02:5c:00:00:00:00 && eth.src != 02:00:00:00:b0:01)");
    assert!(pads >= n as usize, "PADS in capture: {pads}");
    assert!(lcp_up >= n as usize);
    let hostile = format!(
        "02:5c:{:02x}:{:02x}:{:02x}:{:02x}",
        (n >> 24) as u8,
        (n >> 16) as u8,
        (n >> 8) as u8,
        n as u8
    );
    let bad: Vec<&str> = bad.lines().filter(|l| !l.contains(&hostile)).collect();
    assert!(
        bad.is_empty(),
        "tshark flags our frames:\n{}",
        bad.join("\n")
    );
}
