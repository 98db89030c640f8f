//! Our control packets as Wireshark sees them: PPPoE discovery (PADI/PADO/PADR/PADS/
//! PADT), LCP (incl. echo), PAP, CHAP, IPCP, IPv6CP on untagged, single-tagged and QinQ
//! access, plus RADIUS Access-Request (PAP, CHAP), Accounting-Request (Start, Interim,
//! Stop) and CoA-ACK, are written to a pcap and dissected by `tshark`: no frame may be
//! malformed or carry a warning/error expert item. Fails if tshark is missing.

use dataplane::proto::ethernet::Vlans;
use dataplane::proto::radius::{attr, code, vsa, Builder};
use pktgen::subscribers::client::{ClientParams, ClientPhase, Subscriber};
use std::net::{Ipv4Addr, SocketAddr};
use std::process::Command;
use vbng::auth::Credentials;
use vbng::config::{Config, UserConfig};
use vbng::control::{ControlPlane, SessionCounters};
use vbng::fsm::Timers;
use vbng::lcp::AuthProto;
use vbng::radius::{self, AcctRecord, AcctStatus, Client, ClientConfig, LineInfo, Server};
use vbng::rng::Rng;

fn pcap(frames: &[Vec<u8>]) -> Vec<u8> {
    let mut v = Vec::new();
    for x in [
        0xa1b2_c3d4u32.to_le_bytes().as_slice(),
        &2u16.to_le_bytes(),
        &4u16.to_le_bytes(),
        &0u32.to_le_bytes(),
        &0u32.to_le_bytes(),
        &65535u32.to_le_bytes(),
        &1u32.to_le_bytes(),
    ] {
        v.extend_from_slice(x);
    }
    for (i, f) in frames.iter().enumerate() {
        for x in [1u32, i as u32, f.len() as u32, f.len() as u32] {
            v.extend_from_slice(&x.to_le_bytes());
        }
        v.extend_from_slice(f);
    }
    v
}

fn udp_frame(src: SocketAddr, dst: SocketAddr, payload: &[u8]) -> Vec<u8> {
    let (SocketAddr::V4(s), SocketAddr::V4(d)) = (src, dst) else {
        panic!("v4 only")
    };
    let mut f = vec![2, 0, 0, 0, 0, 2, 2, 0, 0, 0, 0, 1, 8, 0];
    let len = 28 + payload.len();
    let mut ip = vec![
        0x45,
        0,
        (len >> 8) as u8,
        len as u8,
        0,
        0,
        0x40,
        0,
        64,
        17,
        0,
        0,
    ];
    ip.extend_from_slice(&s.ip().octets());
    ip.extend_from_slice(&d.ip().octets());
    let mut sum = 0u32;
    for c in ip.chunks(2) {
        sum += u32::from(u16::from_be_bytes([c[0], c[1]]));
    }
    while sum > 0xffff {
        sum = (sum & 0xffff) + (sum >> 16);
    }
    let c = !(sum as u16);
    ip[10..12].copy_from_slice(&c.to_be_bytes());
    f.extend_from_slice(&ip);
    f.extend_from_slice(&s.port().to_be_bytes());
    f.extend_from_slice(&d.port().to_be_bytes());
    f.extend_from_slice(&((8 + payload.len()) as u16).to_be_bytes());
    f.extend_from_slice(&[0, 0]);
    f.extend_from_slice(payload);
    f
}

#[test]
fn control_packets_dissect_cleanly() {
    let ok = Command::new("sh")
        .args(["-c", "command -v tshark"])
        .output()
        .map(|o| o.status.success())
        .unwrap_or(false);
    assert!(
        ok,
        "tshark not found: install the Debian package tshark (scripts/test does)"
    );
    let mut frames: Vec<Vec<u8>> = Vec::new();
    for (auth, vlans, v6) in [
        (AuthProto::Pap, Vlans::default(), false),
        (AuthProto::Chap, Vlans { svlan: 0, cvlan: 7 }, true),
        (
            AuthProto::Chap,
            Vlans {
                svlan: 100,
                cvlan: 7,
            },
            true,
        ),
        (
            AuthProto::Pap,
            Vlans {
                svlan: 100,
                cvlan: 8,
            },
            false,
        ),
    ] {
        let cfg = Config {
            auth,
            auth_fallback: None,
            ipv6cp: v6,
            keepalive_interval_s: 1,
            users: vec![UserConfig {
                name: "alice".into(),
                password: "pw".into(),
                ip: None,
                rate: None,
            }],
            ..Config::default()
        };
        let mut cp = ControlPlane::new(&cfg, 16, SessionCounters::new(16), Rng::from_seed([1; 32]))
            .expect("cp");
        let mut s = Subscriber::new(ClientParams {
            mac: [2, 0, 0, 0, 0, 9],
            vlans,
            user: b"alice".to_vec(),
            password: b"pw".to_vec(),
            accept_auth: [Some(auth), None],
            service_name: b"internet".to_vec(),
            host_uniq: Some(vec![1, 2, 3, 4]),
            max_payload: Some(1500),
            timers: Timers::default(),
            ipv6cp: v6,
            magic: 0x1234_5678,
            discovery_tries: 3,
        });
        let mut up = Vec::new();
        s.start(0, &mut up);
        for now in [0u64, 0, 0, 0, 0, 0, 0, 0, 1000, 1000, 2000, 2000] {
            for f in up.drain(..) {
                frames.push(f.clone());
                cp.input(0, &f, now);
            }
            cp.poll(now);
            for (_, f) in cp.take_tx() {
                frames.push(f.clone());
                s.input(&f, now, &mut up);
            }
        }
        assert_eq!(s.phase, ClientPhase::Up, "{auth:?} {vlans:?}");
        s.terminate(&mut up);
        frames.append(&mut up);
    }
    // RADIUS: what our client sends, and a CoA-ACK we answer.
    let server = SocketAddr::from((Ipv4Addr::new(192, 0, 2, 10), 1812));
    let acct = SocketAddr::from((Ipv4Addr::new(192, 0, 2, 10), 1813));
    let me = SocketAddr::from((Ipv4Addr::new(192, 0, 2, 1), 40000));
    let mut c = Client::new(
        ClientConfig {
            auth: vec![Server {
                addr: server,
                secret: b"s".to_vec(),
            }],
            acct: vec![Server {
                addr: acct,
                secret: b"s".to_vec(),
            }],
            ..ClientConfig::default()
        },
        Rng::from_seed([2; 32]),
    );
    let line = LineInfo {
        nas_ip: 0xc000_0201,
        nas_id: "vbng".into(),
        nas_port_id: "access0:100.7".into(),
        nas_port: 3,
        calling_station: "02:00:00:00:00:09/100/7".into(),
        ipoe: false,
    };
    c.submit(
        1,
        radius::access_request(
            &line,
            &Credentials::Pap {
                user: b"alice".to_vec(),
                password: b"pw".to_vec(),
            },
        ),
        0,
    );
    c.submit(
        2,
        radius::access_request(
            &line,
            &Credentials::Chap {
                user: b"alice".to_vec(),
                id: 7,
                challenge: [9; 16],
                response: [3; 16],
            },
        ),
        0,
    );
    let rec = AcctRecord {
        session_id: "0000000100000003".into(),
        user: b"alice".to_vec(),
        framed_ip: 0x6440_0002,
        session_time: 60,
        in_octets: 5 << 32,
        out_octets: 7,
        in_packets: 1,
        out_packets: 2,
        terminate_cause: Some(1),
        class: None,
    };
    for st in [AcctStatus::Start, AcctStatus::Interim, AcctStatus::Stop] {
        c.submit(3, radius::accounting_request(&line, st, &rec), 0);
    }
    for t in c.poll(0) {
        frames.push(udp_frame(me, t.to, &t.bytes));
    }
    let mut b = Builder::new(code::COA_REQUEST, 5, [0; 16]);
    b.attr(attr::ACCT_SESSION_ID, b"0000000100000003").vsa(
        vsa::MIKROTIK,
        vsa::MIKROTIK_RATE_LIMIT,
        b"1M/2M",
    );
    let coa = b.finish_request_md5(b"s").expect("coa");
    frames.push(udp_frame(
        server,
        SocketAddr::from((Ipv4Addr::new(192, 0, 2, 1), 3799)),
        &coa,
    ));
    let d = radius::DynAuth::parse(&coa, b"s").expect("parse");
    frames.push(udp_frame(
        SocketAddr::from((Ipv4Addr::new(192, 0, 2, 1), 3799)),
        server,
        &d.respond(b"s", None),
    ));

    let path = std::env::temp_dir().join(format!("vbng-control-{}.pcap", std::process::id()));
    std::fs::write(&path, pcap(&frames)).expect("write pcap");
    let run = |filter: &str| -> String {
        let o = Command::new("tshark")
            .arg("-r")
            .arg(&path)
            .args(["-o", "radius.shared_secret:s", "-Y", filter])
            .output()
            .expect("tshark");
        assert!(
            o.status.success(),
            "tshark failed: {}",
            String::from_utf8_lossy(&o.stderr)
        );
        String::from_utf8_lossy(&o.stdout).into_owned()
    };
    let bad = run("_ws.malformed || _ws.expert.severity >= 0x00600000");
    let all = run("pppoed || pppoes || radius");
    let kinds = [
        "PADI",
        "PADO",
        "PADR",
        "PADS",
        "PADT",
        "LCP",
        "PAP",
        "CHAP",
        "IPCP",
        "IPV6CP",
        "Access-Request",
        "Accounting-Request",
        "CoA-Request",
        "CoA-ACK",
    ];
    let _ = std::fs::remove_file(&path);
    assert!(bad.trim().is_empty(), "tshark flags frames:\n{bad}");
    for k in kinds {
        assert!(
            all.to_uppercase().contains(&k.to_uppercase()),
            "no {k} in the capture:\n{all}"
        );
    }
    assert!(all.lines().count() >= frames.len() - 2, "{all}");
}
