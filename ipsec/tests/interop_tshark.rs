//! Interop: our ESP packets, written to a pcap, decrypted by Wireshark's ESP
//! dissector (`tshark`, Debian package `tshark`) with the same keys. Covers tunnel mode
//! with IPv4 and IPv6 outer headers and inner packets, transport mode, UDP
//! encapsulation (RFC 3948), AES-128 and AES-256, and a tampered packet that must show
//! `esp.icv_bad`. Fails (does not skip) when tshark is missing.

mod common;

use common::*;
use ipsec::testutil::{udp4, udp6};
use ipsec::*;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::process::Command;

const GCM16: &str = "AES-GCM with 16 octet ICV [RFC4106]";

struct Case {
    sa: TestSa,
    inner: Vec<u8>,
    /// UDP payload of the inner packet (what tshark shows as `data.data`).
    payload: Vec<u8>,
}

fn encrypt(case: &Case, count: usize) -> Vec<Vec<u8>> {
    let mut tx = Ipsec::new();
    let id = tx
        .sad
        .add(case.sa.cfg.clone(), &case.sa.key(), 0)
        .expect("SA");
    tx.spd.push_outbound(Selector::any(), Action::Protect(id));
    (0..count)
        .map(|_| {
            let mut b = HeadroomBuf::from_packet(&case.inner);
            assert!(matches!(tx.outbound(&mut b, 0), Ok(Outbound::Protected(_))));
            b.to_vec()
        })
        .collect()
}

#[test]
fn tshark_decrypts_our_esp() {
    let tshark = which("tshark").unwrap_or_else(|| {
        panic!("tshark not found: install the Debian package `tshark` (scripts/test does)")
    });
    let o4 = |x| IpAddr::V4(Ipv4Addr::new(192, 0, 2, x));
    let o6 = |x| IpAddr::V6(Ipv6Addr::new(0x2001, 0xdb8, 0, 0, 0, 0, 0, x));
    let i4a = Ipv4Addr::new(10, 1, 0, 5);
    let i4b = Ipv4Addr::new(10, 2, 0, 7);
    let i6a = Ipv6Addr::new(0xfd00, 1, 0, 0, 0, 0, 0, 5);
    let i6b = Ipv6Addr::new(0xfd00, 2, 0, 0, 0, 0, 0, 7);

    let mut cases = Vec::new();
    let mk = |sa: TestSa, inner: Vec<u8>, hdr: usize| {
        let payload = inner[hdr..].to_vec();
        Case { sa, inner, payload }
    };
    // 1: IPv4-in-IPv4 tunnel, AES-128.
    cases.push(mk(
        TestSa::new(
            0x1001,
            Mode::Tunnel {
                src: o4(1),
                dst: o4(2),
            },
            Algorithm::Aes128Gcm16,
        ),
        udp4(i4a, i4b, 1111, 2222, 37),
        28,
    ));
    // 2: IPv6-in-IPv6 tunnel, AES-256.
    cases.push(mk(
        TestSa::new(
            0x1002,
            Mode::Tunnel {
                src: o6(1),
                dst: o6(2),
            },
            Algorithm::Aes256Gcm16,
        ),
        udp6(i6a, i6b, 3333, 4444, 100),
        48,
    ));
    // 3: IPv6-in-IPv4 tunnel, AES-128.
    cases.push(mk(
        TestSa::new(
            0x1003,
            Mode::Tunnel {
                src: o4(1),
                dst: o4(2),
            },
            Algorithm::Aes128Gcm16,
        ),
        udp6(i6a, i6b, 5555, 6666, 64),
        48,
    ));
    // 4: IPv4-in-IPv6 tunnel, AES-256.
    cases.push(mk(
        TestSa::new(
            0x1004,
            Mode::Tunnel {
                src: o6(1),
                dst: o6(2),
            },
            Algorithm::Aes256Gcm16,
        ),
        udp4(i4a, i4b, 7777, 8888, 1300),
        28,
    ));
    // 5: IPv4 transport mode, AES-128.
    cases.push(mk(
        TestSa::new(0x1005, Mode::Transport, Algorithm::Aes128Gcm16),
        udp4(
            Ipv4Addr::new(192, 0, 2, 1),
            Ipv4Addr::new(192, 0, 2, 2),
            1212,
            3434,
            50,
        ),
        28,
    ));
    // 6: IPv4 tunnel with UDP encapsulation (NAT-T, port 4500).
    let mut natt = TestSa::new(
        0x1006,
        Mode::Tunnel {
            src: o4(1),
            dst: o4(2),
        },
        Algorithm::Aes128Gcm16,
    );
    natt.cfg.encap = Some(UdpEncap::default());
    cases.push(mk(natt, udp4(i4a, i4b, 5656, 7878, 80), 28));

    let per_case = 3;
    let mut packets = Vec::new();
    for c in &cases {
        packets.extend(encrypt(c, per_case));
    }
    // Last: a copy of case 1's first packet with one ciphertext byte flipped.
    let mut tampered = packets[0].clone();
    tampered[20 + 16 + 5] ^= 0x40;
    packets.push(tampered);

    let dir = scratch("tshark");
    let pcap = dir.join("esp.pcap");
    write_pcap(&pcap, &packets);

    let mut cmd = Command::new(tshark);
    cmd.arg("-n").arg("-r").arg(&pcap);
    cmd.args([
        "-o",
        "esp.enable_encryption_decode:TRUE",
        "-o",
        "esp.enable_authentication_check:TRUE",
    ]);
    for c in &cases {
        let fam = match c.sa.cfg.mode {
            Mode::Tunnel {
                src: IpAddr::V6(_), ..
            } => "IPv6",
            _ => "IPv4",
        };
        let uat = format!(
            "uat:esp_sa:\"{fam}\",\"*\",\"*\",\"0x{:08x}\",\"{GCM16}\",\"0x{}\",\"NULL\",\"\"",
            c.sa.spi,
            c.sa.hex_keymat()
        );
        cmd.args(["-o", &uat]);
    }
    cmd.args([
        "-T",
        "fields",
        "-E",
        "separator=|",
        "-E",
        "occurrence=a",
        "-E",
        "aggregator=,",
    ]);
    for f in [
        "frame.number",
        "esp.spi",
        "esp.sequence",
        "esp.icv_good",
        "esp.icv_bad",
        "esp.contained_data",
        "udp.srcport",
        "udp.dstport",
    ] {
        cmd.args(["-e", f]);
    }
    let out = cmd.output().expect("run tshark");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "tshark failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    std::fs::write(dir.join("tshark.txt"), stdout.as_bytes()).ok();
    let lines: Vec<&str> = stdout.lines().collect();
    assert_eq!(lines.len(), packets.len(), "one line per frame:\n{stdout}");
    let fields = |i: usize| -> Vec<String> {
        let f: Vec<String> = lines[i].split('|').map(|s| s.replace(':', "")).collect();
        assert_eq!(f.len(), 8, "{}", lines[i]);
        f
    };

    for (ci, c) in cases.iter().enumerate() {
        for k in 0..per_case {
            let i = ci * per_case + k;
            let f = fields(i);
            let line = lines[i];
            assert_eq!(f[1], format!("0x{:08x}", c.sa.spi), "SPI: {line}");
            assert_eq!(f[2], (k + 1).to_string(), "sequence: {line}");
            // tshark 4.0 leaves these empty for AES-GCM; newer versions check the ICV.
            assert!(f[3].is_empty() || f[3] == "1", "ICV good: {line}");
            assert!(f[4].is_empty() || f[4] == "0", "ICV not bad: {line}");
            // The decrypted payload (before padding) is our inner packet, byte for byte
            // (transport mode: the IP payload after the header).
            let want = match c.sa.cfg.mode {
                Mode::Transport => &c.inner[20..],
                Mode::Tunnel { .. } => &c.inner[..],
            };
            assert_eq!(f[5], hex(want), "inner packet intact: {line}");
            // And tshark dissected the inner UDP header from it.
            let udp = &c.inner[c.inner.len() - c.payload.len() - 8..];
            let sp = u16::from_be_bytes([udp[0], udp[1]]).to_string();
            let dp = u16::from_be_bytes([udp[2], udp[3]]).to_string();
            assert!(f[6].split(',').any(|p| p == sp), "inner sport {sp}: {line}");
            assert!(f[7].split(',').any(|p| p == dp), "inner dport {dp}: {line}");
        }
    }
    // The tampered packet decrypts to the inner packet with exactly the flipped byte
    // different (GCM is CTR underneath), and is flagged where tshark checks ICVs.
    let bad = fields(packets.len() - 1);
    let mut want = cases[0].inner.clone();
    want[5] ^= 0x40;
    assert_eq!(bad[5], hex(&want), "{}", lines[packets.len() - 1]);
    assert!(
        bad[4].is_empty() || bad[4] == "1",
        "tampered packet flagged: {}",
        lines[packets.len() - 1]
    );
    assert_ne!(bad[3], "1");
}
