//! NAT44 output checked by an independent dissector: frames translated by the stage
//! (plain UDP/TCP both ways, ICMP echo, an ICMP error with its embedded packet
//! translated back (RFC 5508 REQ-3), a hairpinned packet (RFC 4787 REQ-9), and the
//! Destination Unreachable the NAT sends on port exhaustion (RFC 5508 REQ-8)) are
//! written to a pcap with the engine's `PcapPort` and read back with `tshark`, with
//! checksum validation on: no expert errors/warnings, and the fields must match the
//! mapping. A second test sends fragmented datagrams through the NAT (in order, out of
//! order, both directions; RFC 4787 REQ-14 virtual reassembly) and has tshark
//! reassemble the translated fragments: the reassembled UDP datagrams must carry the
//! translated endpoints and a UDP checksum that verifies over the whole datagram.
//! Needs `tshark` (Debian package `tshark`); fails if it is missing.

use dataplane::batch::{Batch, Out};
use dataplane::buf::Pool;
use dataplane::port::pcap::PcapPort;
use dataplane::port::Port;
use dataplane::proto::icmpv4::{self, ErrorKind, QuoteLimit};
use dataplane::stage::{NodeStats, Stage};
use dataplane::stages::nat::{CgnatConfig, Flow, Nat44, NatConfig};
use etherparse::PacketBuilder;
use std::net::Ipv4Addr;
use std::process::Command;

const IN: u16 = 0;
const OUT: u16 = 1;
const EXT: [u8; 4] = [198, 51, 100, 7];

fn udp(src: [u8; 4], sp: u16, dst: [u8; 4], dp: u16) -> Vec<u8> {
    let mut v = Vec::new();
    PacketBuilder::ethernet2([2, 0, 0, 0, 0, 1], [2, 0, 0, 0, 0, 2])
        .ipv4(src, dst, 64)
        .udp(sp, dp)
        .write(&mut v, b"nat44 tshark check")
        .unwrap();
    v
}

fn tcp_syn(src: [u8; 4], sp: u16, dst: [u8; 4], dp: u16) -> Vec<u8> {
    let mut v = Vec::new();
    PacketBuilder::ethernet2([2, 0, 0, 0, 0, 1], [2, 0, 0, 0, 0, 2])
        .ipv4(src, dst, 64)
        .tcp(sp, dp, 12345, 64240)
        .syn()
        .write(&mut v, &[])
        .unwrap();
    v
}

fn echo(src: [u8; 4], dst: [u8; 4], id: u16) -> Vec<u8> {
    let mut v = Vec::new();
    PacketBuilder::ethernet2([2, 0, 0, 0, 0, 1], [2, 0, 0, 0, 0, 2])
        .ipv4(src, dst, 64)
        .icmpv4_echo_request(id, 7)
        .write(&mut v, b"0123456789abcdef")
        .unwrap();
    v
}

struct Rig {
    nat: Nat44,
    node: NodeStats,
    out: Out,
    pcap: PcapPort,
}

impl Rig {
    /// Runs `frame` in on `port`; the translated frame (if any) is written to the
    /// pcap and returned. Frames the NAT sent itself are written too.
    fn run(&mut self, port: u16, frame: &[u8]) -> Option<Vec<u8>> {
        let mut p = self.out.cache.alloc().unwrap();
        p.copy_from(frame).unwrap();
        p.meta.port = port;
        let mut b = Batch::new();
        b.push(p).unwrap();
        self.out.now_ns = 1_000_000_000;
        self.nat.process(&mut b, &mut self.node, &mut self.out);
        let r = b.iter().next().map(|p| p.data().to_vec());
        self.pcap.tx_burst(&mut self.out.cache, &mut b);
        b.free_all(&mut self.out.cache);
        for q in 0..2 {
            let mut sent = std::mem::take(&mut self.out.ports[q]);
            self.pcap.tx_burst(&mut self.out.cache, &mut sent);
            sent.free_all(&mut self.out.cache);
        }
        r
    }
}

impl Rig {
    /// Runs `frames` in on `port` as one batch; everything kept (released held
    /// fragments included) is written to the pcap and returned.
    fn run_batch(&mut self, port: u16, frames: &[Vec<u8>]) -> Vec<Vec<u8>> {
        let mut b = Batch::new();
        for f in frames {
            let mut p = self.out.cache.alloc().unwrap();
            p.copy_from(f).unwrap();
            p.meta.port = port;
            b.push(p).unwrap();
        }
        self.out.now_ns = 1_000_000_000;
        self.nat.process(&mut b, &mut self.node, &mut self.out);
        let r = b.iter().map(|p| p.data().to_vec()).collect();
        self.pcap.tx_burst(&mut self.out.cache, &mut b);
        b.free_all(&mut self.out.cache);
        r
    }
}

/// A UDP frame with `n` bytes of patterned payload.
fn udp_len(src: [u8; 4], sp: u16, dst: [u8; 4], dp: u16, n: usize) -> Vec<u8> {
    let payload: Vec<u8> = (0..n).map(|i| (i * 31 + 7) as u8).collect();
    let mut v = Vec::new();
    PacketBuilder::ethernet2([2, 0, 0, 0, 0, 1], [2, 0, 0, 0, 0, 2])
        .ipv4(src, dst, 64)
        .udp(sp, dp)
        .write(&mut v, &payload)
        .unwrap();
    v
}

/// IPv4 fragments of an Ethernet+IPv4 frame (no options), `chunk` payload bytes each.
fn fragments(frame: &[u8], chunk: usize, id: u16) -> Vec<Vec<u8>> {
    let (eth, ip) = frame.split_at(14);
    let payload = &ip[20..];
    let mut v = Vec::new();
    let mut off = 0;
    while off < payload.len() {
        let end = (off + chunk).min(payload.len());
        let mut h = ip[..20].to_vec();
        h[2..4].copy_from_slice(&((20 + end - off) as u16).to_be_bytes());
        h[4..6].copy_from_slice(&id.to_be_bytes());
        let mf = if end < payload.len() { 0x2000 } else { 0 };
        h[6..8].copy_from_slice(&(((off / 8) as u16) | mf).to_be_bytes());
        h[10..12].copy_from_slice(&[0, 0]);
        let c = dataplane::proto::checksum::internet(&h);
        h[10..12].copy_from_slice(&c.to_be_bytes());
        let mut f = eth.to_vec();
        f.extend_from_slice(&h);
        f.extend_from_slice(&payload[off..end]);
        v.push(f);
        off = end;
    }
    v
}

fn tshark(args: &[&str]) -> String {
    let out = Command::new("tshark")
        .args(args)
        .output()
        .unwrap_or_else(|e| {
            panic!("tshark is required for this test (apt-get install -y tshark): {e}")
        });
    assert!(
        out.status.success(),
        "tshark {args:?} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

const CHECKS: [&str; 6] = [
    "-o",
    "ip.check_checksum:TRUE",
    "-o",
    "udp.check_checksum:TRUE",
    "-o",
    "tcp.check_checksum:TRUE",
];

#[test]
fn nat44_output_dissects_cleanly_in_tshark() {
    let dir = std::env::temp_dir().join(format!("nat_tshark_{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("nat44.pcap");
    let pool = Pool::new(256).unwrap();
    let cfg = NatConfig {
        inside_ports: vec![IN],
        pool: vec!["198.51.100.7".into()],
        max_sessions: 1024,
        max_subscribers: 64,
        cgnat: Some(CgnatConfig {
            block_size: 8,
            blocks_per_subscriber: 1,
            sessions_per_subscriber: 100,
            log: true,
        }),
        ..NatConfig::default()
    };
    let nat = Nat44::new(&cfg).unwrap();
    let mut rig = Rig {
        node: NodeStats::new("nat44", nat.errors()),
        nat,
        out: Out::new(2, pool.cache()),
        pcap: PcapPort::open(None, Some(&path)).unwrap(),
    };
    let a = [100, 64, 0, 10];
    let b = [100, 64, 0, 20];
    let server = [192, 0, 2, 53];
    // 1: A -> server UDP (in2out).
    let f1 = rig.run(IN, &udp(a, 40000, server, 9)).unwrap();
    let pa = rig
        .nat
        .lookup_in2out(&Flow {
            src: u32::from_be_bytes(a),
            sport: 40000,
            dst: u32::from_be_bytes(server),
            dport: 9,
            proto: 17,
        })
        .unwrap()
        .1;
    // 2: reply (out2in).
    rig.run(OUT, &udp(server, 9, EXT, pa)).unwrap();
    // 3: TCP SYN from B (in2out).
    let f3 = rig.run(IN, &tcp_syn(b, 50000, server, 443)).unwrap();
    let pb_tcp = u16::from_be_bytes([f3[34], f3[35]]);
    // 4: ICMP echo from A.
    rig.run(IN, &echo(a, server, 0x4242)).unwrap();
    // 5: an ICMP time-exceeded from a router about frame 1, translated back.
    let mut buf = [0u8; 600];
    let n = icmpv4::build_error(
        &mut buf,
        &f1[14..],
        Ipv4Addr::new(203, 0, 113, 1),
        64,
        ErrorKind::TimeExceeded { code: 0 },
        QuoteLimit::Rfc1812,
    )
    .unwrap();
    let mut err = f1[..14].to_vec();
    err.extend_from_slice(&buf[..n]);
    rig.run(OUT, &err).unwrap();
    // 6: B's UDP mapping, then A hairpins to it.
    let f6 = rig.run(IN, &udp(b, 6000, server, 9)).unwrap();
    let pb = u16::from_be_bytes([f6[34], f6[35]]);
    rig.run(IN, &udp(a, 40001, EXT, pb)).unwrap();
    // 7..: A exhausts its 8-port block; the 9th mapping gets Destination
    // Unreachable code 13 (written as the last frame).
    let mut refused = 0;
    for i in 0..10 {
        if rig.run(IN, &udp(a, 41000 + i, server, 9)).is_none() {
            refused += 1;
        }
    }
    assert!(refused >= 1, "block exhausted");
    rig.pcap.flush().unwrap();
    drop(rig);

    let file = path.to_str().unwrap();
    // No malformed packets, no bad checksums: the expert summary has no errors or
    // warnings.
    let mut args = vec!["-r", file, "-q", "-z", "expert"];
    args.extend_from_slice(&CHECKS);
    let expert = tshark(&args);
    assert!(!expert.contains("Errors ("), "expert errors:\n{expert}");
    assert!(!expert.contains("Warnings ("), "expert warnings:\n{expert}");
    assert!(!expert.to_lowercase().contains("malformed"), "{expert}");

    let mut args = vec![
        "-r",
        file,
        "-T",
        "fields",
        "-E",
        "separator=|",
        "-e",
        "frame.number",
        "-e",
        "ip.src",
        "-e",
        "ip.dst",
        "-e",
        "udp.srcport",
        "-e",
        "udp.dstport",
        "-e",
        "tcp.srcport",
        "-e",
        "icmp.type",
        "-e",
        "icmp.code",
        "-e",
        "icmp.ident",
        "-e",
        "ip.checksum.status",
        "-e",
        "udp.checksum.status",
        "-e",
        "icmp.checksum.status",
        "-e",
        "_ws.malformed",
    ];
    args.extend_from_slice(&CHECKS);
    let fields = tshark(&args);
    let rows: Vec<Vec<&str>> = fields.lines().map(|l| l.split('|').collect()).collect();
    println!("{fields}");
    let row = |n: usize| {
        rows.get(n - 1)
            .unwrap_or_else(|| panic!("frame {n} missing:\n{fields}"))
    };
    let ext = "198.51.100.7";
    // Frame 1: A's UDP leaves from the outside address with the mapped port.
    assert_eq!((row(1)[1], row(1)[2]), (ext, "192.0.2.53"));
    assert_eq!(row(1)[3], pa.to_string());
    // Frame 2: reply delivered to A:40000.
    assert_eq!((row(2)[2], row(2)[4]), ("100.64.0.10", "40000"));
    // Frame 3: TCP SYN from B translated.
    assert_eq!((row(3)[1], row(3)[5]), (ext, pb_tcp.to_string().as_str()));
    // Frame 4: echo request, identifier mapped.
    assert_eq!((row(4)[1], row(4)[6]), (ext, "8"));
    // Frame 5: time exceeded to A; the embedded packet is A's original datagram
    // (ip.src lists outer then inner; udp ports are the inner ones).
    let r5 = row(5);
    assert_eq!(r5[6], "11");
    assert_eq!(r5[1], "203.0.113.1,100.64.0.10", "outer src, inner src");
    assert_eq!(r5[2], "100.64.0.10,192.0.2.53", "outer dst, inner dst");
    assert_eq!((r5[3], r5[4]), ("40000", "9"), "inner ports restored");
    // Frame 7: hairpin: from A's outside address to B's inside endpoint.
    let r7 = row(7);
    assert_eq!((r7[1], r7[2], r7[4]), (ext, "100.64.0.20", "6000"));
    // Last frame: the NAT's own Destination Unreachable, code 13, to A.
    let last = rows.last().unwrap();
    assert_eq!((last[6], last[7]), ("3", "13"), "admin prohibited");
    assert_eq!(last[2].split(',').next(), Some("100.64.0.10"));
    // No checksum tshark validated is bad (status 0 = bad, 1 = good, 2 = unverified:
    // the 8-byte quote of the NAT's own error cannot be verified). Frame 5's embedded
    // UDP datagram is quoted whole, so its translated-back checksum is verified.
    assert_eq!(
        r5[10], "1",
        "inner UDP checksum of the translated ICMP error verifies"
    );
    for r in &rows {
        for c in [r[9], r[10], r[11]] {
            assert!(!c.split(',').any(|s| s == "0"), "bad checksum in {r:?}");
        }
        assert!(r[12].is_empty(), "malformed {r:?}");
    }
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn nat44_fragments_reassemble_in_tshark() {
    let dir = std::env::temp_dir().join(format!("nat_tshark_frag_{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("nat44_frag.pcap");
    let pool = Pool::new(256).unwrap();
    let cfg = NatConfig {
        inside_ports: vec![IN],
        pool: vec!["198.51.100.7".into()],
        max_sessions: 1024,
        max_subscribers: 64,
        ..NatConfig::default()
    };
    let nat = Nat44::new(&cfg).unwrap();
    let mut rig = Rig {
        node: NodeStats::new("nat44", nat.errors()),
        nat,
        out: Out::new(2, pool.cache()),
        pcap: PcapPort::open(None, Some(&path)).unwrap(),
    };
    let a = [100, 64, 0, 10];
    let server = [192, 0, 2, 53];
    // 1: 3000 bytes of UDP from A (port 9: no payload dissector), fragments in order.
    let got = rig.run_batch(
        IN,
        &fragments(&udp_len(a, 40000, server, 9, 3000), 1480, 0x100),
    );
    assert_eq!(got.len(), 3);
    let pa = rig
        .nat
        .lookup_in2out(&Flow {
            src: u32::from_be_bytes(a),
            sport: 40000,
            dst: u32::from_be_bytes(server),
            dport: 9,
            proto: 17,
        })
        .unwrap()
        .1;
    // 2: another from A, last fragment first (held, then released by the first).
    let mut frs = fragments(&udp_len(a, 40000, server, 9, 2000), 1024, 0x101);
    frs.reverse();
    assert!(rig.run_batch(IN, &frs[..1]).is_empty(), "held");
    assert_eq!(rig.run_batch(IN, &frs[1..]).len(), 2);
    // 3: the server's fragmented reply, middle fragment first.
    let frs = fragments(&udp_len(server, 9, EXT, pa, 4000), 1480, 0x200);
    let order = [frs[1].clone(), frs[0].clone(), frs[2].clone()];
    assert_eq!(rig.run_batch(OUT, &order).len(), 3);
    assert_eq!(rig.nat.stats.frag_released, 2);
    rig.pcap.flush().unwrap();
    drop(rig);

    let file = path.to_str().unwrap();
    let mut args = vec!["-r", file, "-q", "-z", "expert", "-o", "ip.defragment:TRUE"];
    args.extend_from_slice(&CHECKS);
    let expert = tshark(&args);
    assert!(!expert.contains("Errors ("), "expert errors:\n{expert}");
    assert!(!expert.contains("Warnings ("), "expert warnings:\n{expert}");
    assert!(!expert.to_lowercase().contains("malformed"), "{expert}");
    let mut args = vec![
        "-r",
        file,
        "-o",
        "ip.defragment:TRUE",
        "-Y",
        "udp",
        "-T",
        "fields",
        "-E",
        "separator=|",
        "-e",
        "ip.reassembled.length",
        "-e",
        "ip.src",
        "-e",
        "ip.dst",
        "-e",
        "udp.srcport",
        "-e",
        "udp.dstport",
        "-e",
        "udp.checksum.status",
        "-e",
        "ip.checksum.status",
    ];
    args.extend_from_slice(&CHECKS);
    let fields = tshark(&args);
    println!("{fields}");
    let rows: Vec<Vec<&str>> = fields.lines().map(|l| l.split('|').collect()).collect();
    let ext = "198.51.100.7";
    let want = [
        (3008, ext, "192.0.2.53", pa.to_string(), "9".to_string()),
        (2008, ext, "192.0.2.53", pa.to_string(), "9".to_string()),
        (
            4008,
            "192.0.2.53",
            "100.64.0.10",
            "9".to_string(),
            "40000".to_string(),
        ),
    ];
    assert_eq!(
        rows.len(),
        want.len(),
        "one reassembled datagram each:\n{fields}"
    );
    for (r, (len, s, d, sp, dp)) in rows.iter().zip(want.iter()) {
        assert_eq!(r[0], len.to_string(), "ip.reassembled.length in {r:?}");
        assert_eq!((r[1], r[2]), (*s, *d), "addresses in {r:?}");
        assert_eq!((r[3], r[4]), (sp.as_str(), dp.as_str()), "ports in {r:?}");
        assert_eq!(
            r[5], "1",
            "UDP checksum over the reassembled datagram: {r:?}"
        );
        assert!(!r[6].split(',').any(|c| c == "0"), "IP checksum in {r:?}");
    }
    let _ = std::fs::remove_dir_all(&dir);
}
