//! Interop with an independent ESP implementation: `tests/esp_peer.py`, written from
//! RFC 4303/4106 on Python `cryptography`'s AESGCM (random explicit IVs, its own
//! header code). Both directions: the peer seals and we open (tunnel IPv4/IPv6, UDP
//! encapsulation, transport, ESN across 2^32), and we seal and the peer opens and
//! verifies every ICV. Fails, does not skip, when the venv or `cryptography` is
//! missing (`python3 -m venv .venv && .venv/bin/pip install cryptography`).

mod common;

use common::*;
use ipsec::testutil::{udp4, udp6};
use ipsec::*;
use serde_json::{json, Value};
use std::io::Write;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::process::{Command, Stdio};

fn python() -> std::path::PathBuf {
    let venv = std::env::var_os("VNF_VENV")
        .map(std::path::PathBuf::from)
        .unwrap_or_else(|| workspace_root().join(".venv"));
    let py = venv.join("bin/python");
    assert!(
        py.is_file(),
        "no Python venv at {}: create it with `python3 -m venv {0}` and `{0}/bin/pip install cryptography` (or set VNF_VENV)",
        venv.display()
    );
    py
}

fn peer(req: &Value) -> Value {
    let script = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/esp_peer.py");
    let mut child = Command::new(python())
        .arg(script)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start python");
    child
        .stdin
        .take()
        .expect("stdin")
        .write_all(req.to_string().as_bytes())
        .expect("write request");
    let out = child.wait_with_output().expect("python output");
    assert!(
        out.status.success(),
        "esp_peer.py failed (is `cryptography` installed in the venv?): {}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).expect("peer JSON")
}

struct Peer {
    sa: TestSa,
    json: Value,
}

fn sas() -> Vec<Peer> {
    let o4 = |x| Ipv4Addr::new(198, 51, 100, x);
    let o6 = |x| Ipv6Addr::new(0x2001, 0xdb8, 0xffff, 0, 0, 0, 0, x);
    let mut v = Vec::new();
    let mut add = |spi: u32, mode: Mode, alg, esn: bool, udp: bool| {
        let mut sa = TestSa::new(spi, mode, alg);
        sa.cfg.esn = esn;
        sa.cfg.encap = udp.then(UdpEncap::default);
        let (m, src, dst) = match mode {
            Mode::Tunnel {
                src: s @ IpAddr::V4(_),
                dst: d,
            } => ("tunnel4", s.to_string(), d.to_string()),
            Mode::Tunnel { src: s, dst: d } => ("tunnel6", s.to_string(), d.to_string()),
            Mode::Transport => ("transport", String::new(), String::new()),
        };
        let json = json!({"spi": spi, "keymat": sa.hex_keymat(), "esn": esn, "mode": m, "udp": udp, "src": src, "dst": dst});
        v.push(Peer { sa, json });
    };
    let t4 = Mode::Tunnel {
        src: IpAddr::V4(o4(1)),
        dst: IpAddr::V4(o4(2)),
    };
    let t6 = Mode::Tunnel {
        src: IpAddr::V6(o6(1)),
        dst: IpAddr::V6(o6(2)),
    };
    add(0x2001, t4, Algorithm::Aes128Gcm16, false, false);
    add(0x2002, t6, Algorithm::Aes256Gcm16, true, false);
    add(0x2003, t4, Algorithm::Aes128Gcm16, true, true);
    add(0x2004, t6, Algorithm::Aes128Gcm16, false, true);
    add(
        0x2005,
        Mode::Transport,
        Algorithm::Aes256Gcm16,
        false,
        false,
    );
    add(0x2006, Mode::Transport, Algorithm::Aes128Gcm16, true, true);
    v
}

fn inner_for(i: usize, n: usize) -> Vec<u8> {
    let len = [0usize, 1, 2, 3, 61, 333, 1400][n % 7];
    if i % 2 == 1 && i != 5 {
        udp6(
            Ipv6Addr::new(0xfd00, 0, 0, 0, 0, 0, 0, 1),
            Ipv6Addr::new(0xfd00, 0, 0, 0, 0, 0, 0, 2),
            4000 + n as u16,
            53,
            len,
        )
    } else {
        udp4(
            Ipv4Addr::new(10, 9, 0, 1),
            Ipv4Addr::new(10, 9, 0, 2),
            4000 + n as u16,
            53,
            len,
        )
    }
}

/// Sequence numbers of the stream: small ones, a jump, then across 2^32 (ESN SAs).
fn seqs(esn: bool) -> Vec<u64> {
    let mut s = vec![1, 2, 3, 1 << 31, (1 << 32) - 2, (1 << 32) - 1];
    if esn {
        s.extend([1 << 32, (1 << 32) + 1, (1 << 32) + 7]);
    }
    s
}

#[test]
fn packets_from_python_cryptography_decrypt_in_ours() {
    let peers = sas();
    let sa_json: Vec<Value> = peers.iter().map(|p| p.json.clone()).collect();
    let mut reqs = Vec::new();
    let mut expect = Vec::new();
    for (i, p) in peers.iter().enumerate() {
        for (n, seq) in seqs(p.sa.cfg.esn).into_iter().enumerate() {
            let inner = inner_for(i, n);
            reqs.push(json!({"sa": i, "seq": seq, "inner": hex(&inner)}));
            expect.push((i, seq, inner));
        }
    }
    let wires = peer(&json!({"op": "seal", "sas": sa_json, "packets": reqs}));
    let wires = wires.as_array().expect("list");
    assert_eq!(wires.len(), expect.len());

    let mut rx = Ipsec::new();
    let ids: Vec<SaId> = peers
        .iter()
        .map(|p| {
            let mut cfg = p.sa.cfg.clone();
            cfg.direction = Direction::Inbound;
            rx.sad.add(cfg, &p.sa.key(), 0).expect("inbound SA")
        })
        .collect();
    for (w, (i, seq, inner)) in wires.iter().zip(&expect) {
        let wire = unhex(w.as_str().expect("hex"));
        let mut b = HeadroomBuf::from_packet(&wire);
        let r = rx.inbound(&mut b, 0);
        assert!(
            matches!(r, Ok(Inbound::Decrypted { sa, .. }) if sa == ids[*i]),
            "SA {i} seq {seq}: {r:?}"
        );
        if peers[*i].sa.cfg.mode == Mode::Transport {
            // The peer wrote its own IPv4 header (ID 0, no DF): compare all but
            // ID/flags and checksum, and check the checksum we recomputed.
            let d = b.data();
            assert_eq!(d.len(), inner.len());
            assert_eq!(
                (&d[..4], &d[8..10], &d[12..]),
                (&inner[..4], &inner[8..10], &inner[12..]),
                "SA {i} seq {seq}"
            );
            assert!(
                dataplane::proto::checksum::verify(&d[..20]),
                "IPv4 checksum"
            );
        } else {
            assert_eq!(b.data(), &inner[..], "SA {i} seq {seq}");
        }
        // Replaying it is refused.
        assert_eq!(
            rx.inbound(&mut HeadroomBuf::from_packet(&wire), 0),
            Err(DropReason::Replay)
        );
    }
    // A peer packet with one ICV bit flipped is refused (fresh ESN sequence number).
    let wire = peer(
        &json!({"op": "seal", "sas": sa_json, "packets": [{"sa": 1, "seq": (1u64 << 32) + 100, "inner": hex(&inner_for(1, 4))}]}),
    );
    let mut w = unhex(wire[0].as_str().expect("hex"));
    let last = w.len() - 1;
    w[last] ^= 1;
    assert_eq!(
        rx.inbound(&mut HeadroomBuf::from_packet(&w), 0),
        Err(DropReason::IcvFail)
    );
    assert_eq!(rx.counters.decrypted as usize, expect.len());
    assert_eq!(
        rx.counters.drop_count(DropReason::Replay) as usize,
        expect.len()
    );
    assert_eq!(rx.counters.drop_count(DropReason::IcvFail), 1);
}

#[test]
fn python_cryptography_verifies_and_decrypts_ours() {
    let peers = sas();
    let sa_json: Vec<Value> = peers.iter().map(|p| p.json.clone()).collect();
    let mut reqs = Vec::new();
    let mut expect = Vec::new();
    for (i, p) in peers.iter().enumerate() {
        let mut tx = Ipsec::new();
        let id = tx.sad.add(p.sa.cfg.clone(), &p.sa.key(), 0).expect("SA");
        for (n, seq) in seqs(p.sa.cfg.esn).into_iter().enumerate() {
            // Jump the counter (sequence numbers may skip, never repeat).
            tx.sad.get_mut(id).expect("sa").set_last_seq(seq - 1);
            let inner = inner_for(i, n);
            let mut b = HeadroomBuf::from_packet(&inner);
            tx.encrypt_with(id, &mut b, 0).expect("encrypt");
            reqs.push(json!({"sa": i, "seq": seq, "wire": hex(b.data())}));
            expect.push((i, seq, inner));
        }
    }
    // Plus one of ours with a flipped ciphertext bit: the peer must reject its ICV.
    let mut bad = unhex(reqs[0]["wire"].as_str().expect("hex"));
    bad[40] ^= 4;
    reqs.push(json!({"sa": 0, "seq": 1, "wire": hex(&bad)}));

    let res = peer(&json!({"op": "open", "sas": sa_json, "packets": reqs}));
    let res = res.as_array().expect("list");
    assert_eq!(res.len(), expect.len() + 1);
    for (r, (i, seq, inner)) in res.iter().zip(&expect) {
        assert_eq!(r["ok"], json!(true), "SA {i} seq {seq}: {r}");
        let transport = peers[*i].sa.cfg.mode == Mode::Transport;
        let (want, nh) = if transport {
            (&inner[20..], 17)
        } else {
            (&inner[..], if inner[0] >> 4 == 4 { 4 } else { 41 })
        };
        assert_eq!(r["nh"], json!(nh), "SA {i} seq {seq}");
        assert_eq!(
            r["payload"].as_str().expect("payload"),
            hex(want),
            "SA {i} seq {seq}"
        );
    }
    assert_eq!(res[expect.len()]["ok"], json!(false));
    assert_eq!(res[expect.len()]["error"], json!("InvalidTag"));
}
