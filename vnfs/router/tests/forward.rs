//! Mixed traffic through the router pipeline; the output is checked field by field
//! and dissected by tshark (no malformed packets, no bad checksums).

mod common;

use common::{router, run_frames};
use etherparse::{PacketBuilder, SlicedPacket};
use std::process::Command;

const ACCESS_MAC: [u8; 6] = [2, 0, 0, 0, 1, 1];
const CORE_MAC: [u8; 6] = [2, 0, 0, 0, 2, 1];
const HOST_MAC: [u8; 6] = [2, 0, 0, 0, 1, 0x10];
const CORE_GW_MAC: [u8; 6] = [2, 0, 0, 0, 2, 2];
const ACCESS_GW_MAC: [u8; 6] = [2, 0, 0, 0, 1, 2];

fn udp4(src: [u8; 4], dst: [u8; 4], ttl: u8, payload: &[u8]) -> Vec<u8> {
    let b = PacketBuilder::ethernet2(HOST_MAC, ACCESS_MAC)
        .ipv4(src, dst, ttl)
        .udp(1234, 5678);
    let mut v = Vec::new();
    b.write(&mut v, payload).unwrap();
    v
}

fn frames() -> Vec<(u16, Vec<u8>)> {
    let mut f = Vec::new();
    // 0: routed by default route to the core gateway
    f.push((
        0,
        udp4([192, 0, 2, 10], [100, 64, 0, 1], 64, b"hello default route"),
    ));
    // 1: from core towards 203.0.113.0/24 via the access gateway
    {
        let b = PacketBuilder::ethernet2(CORE_GW_MAC, CORE_MAC)
            .ipv4([100, 64, 0, 1], [203, 0, 113, 7], 10)
            .udp(40001, 40000);
        let mut v = Vec::new();
        b.write(&mut v, b"reply").unwrap();
        f.push((1, v));
    }
    // 2: TTL 1 -> ICMP time exceeded
    f.push((0, udp4([192, 0, 2, 10], [100, 64, 0, 1], 1, b"ttl one")));
    // 3: ping the router
    {
        let b = PacketBuilder::ethernet2(HOST_MAC, ACCESS_MAC)
            .ipv4([192, 0, 2, 10], [192, 0, 2, 1], 64)
            .icmpv4_echo_request(7, 1);
        let mut v = Vec::new();
        b.write(&mut v, b"abcdefgh").unwrap();
        f.push((0, v));
    }
    // 4: ARP request for the router
    {
        let mut v = vec![0xff; 6];
        v.extend_from_slice(&HOST_MAC);
        v.extend_from_slice(&[0x08, 0x06, 0, 1, 8, 0, 6, 4, 0, 1]);
        v.extend_from_slice(&HOST_MAC);
        v.extend_from_slice(&[192, 0, 2, 10]);
        v.extend_from_slice(&[0; 6]);
        v.extend_from_slice(&[192, 0, 2, 1]);
        v.resize(60, 0);
        f.push((0, v));
    }
    // 5: connected host on core not yet resolved -> ARP request out of core
    f.push((
        0,
        udp4([192, 0, 2, 10], [198, 51, 100, 77], 64, b"needs arp"),
    ));
    // 6: VLAN-tagged TCP SYN, forwarded untagged
    {
        let b = PacketBuilder::ethernet2(HOST_MAC, ACCESS_MAC)
            .single_vlan(100.try_into().unwrap())
            .ipv4([192, 0, 2, 10], [100, 64, 1, 1], 64)
            .tcp(40000, 80, 1, 65535)
            .syn();
        let mut v = Vec::new();
        b.write(&mut v, &[]).unwrap();
        f.push((0, v));
    }
    // 7: first fragment (MF set)
    {
        let mut v = udp4([192, 0, 2, 10], [100, 64, 2, 2], 64, &[7u8; 64]);
        v[20] = 0x20; // MF
        fix_ip_checksum(&mut v);
        f.push((0, v));
    }
    // 8: bad IPv4 header checksum -> dropped
    {
        let mut v = udp4([192, 0, 2, 10], [100, 64, 0, 1], 64, b"bad csum");
        v[24] ^= 0xff;
        f.push((0, v));
    }
    // 9: truncated frame -> dropped
    f.push((
        0,
        udp4([192, 0, 2, 10], [100, 64, 0, 1], 64, b"cut")[..20].to_vec(),
    ));
    // 10: blackhole
    f.push((0, udp4([192, 0, 2, 10], [10, 255, 1, 1], 64, b"blackhole")));
    // 11: IPv6 routed by default route
    {
        let b = PacketBuilder::ethernet2(HOST_MAC, ACCESS_MAC)
            .ipv6(
                [
                    0x20, 0x01, 0x0d, 0xb8, 0, 1, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0x10,
                ],
                [
                    0x20, 0x01, 0x0d, 0xb8, 0, 0x99, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1,
                ],
                64,
            )
            .udp(1000, 2000);
        let mut v = Vec::new();
        b.write(&mut v, b"v6 payload").unwrap();
        f.push((0, v));
    }
    // 12: IPv6 hop limit 1 -> ICMPv6 time exceeded
    {
        let b = PacketBuilder::ethernet2(HOST_MAC, ACCESS_MAC)
            .ipv6(
                [
                    0x20, 0x01, 0x0d, 0xb8, 0, 1, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0x10,
                ],
                [
                    0x20, 0x01, 0x0d, 0xb8, 0, 0x99, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1,
                ],
                1,
            )
            .udp(1000, 2000);
        let mut v = Vec::new();
        b.write(&mut v, b"v6 expiring").unwrap();
        f.push((0, v));
    }
    // 13: ICMPv6 echo to the router
    {
        let b = PacketBuilder::ethernet2(HOST_MAC, ACCESS_MAC)
            .ipv6(
                [
                    0x20, 0x01, 0x0d, 0xb8, 0, 1, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0x10,
                ],
                [0x20, 0x01, 0x0d, 0xb8, 0, 1, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1],
                64,
            )
            .icmpv6_echo_request(9, 3);
        let mut v = Vec::new();
        b.write(&mut v, b"ping6").unwrap();
        f.push((0, v));
    }
    // 14: IPv4 with options (NOPs + EOL), routed
    {
        let b = PacketBuilder::ethernet2(HOST_MAC, ACCESS_MAC)
            .ipv4([192, 0, 2, 10], [100, 64, 3, 3], 64)
            .udp(9, 9);
        let mut v = Vec::new();
        b.write(&mut v, b"options").unwrap();
        // insert 4 bytes of options (NOP NOP NOP EOL) after the 20-byte header
        v.splice(34..34, [1u8, 1, 1, 0]);
        v[14] = 0x46;
        let tl = u16::from_be_bytes([v[16], v[17]]) + 4;
        v[16..18].copy_from_slice(&tl.to_be_bytes());
        fix_ip_checksum(&mut v);
        f.push((0, v));
    }
    // 15: 1828-byte datagram, DF clear, out of a 1500-byte MTU -> two fragments
    {
        let payload: Vec<u8> = (0..1800u32).map(|i| (i * 7) as u8).collect();
        let mut v = udp4([192, 0, 2, 10], [100, 64, 0, 9], 64, &payload);
        v[20] &= !0x40;
        fix_ip_checksum(&mut v);
        f.push((0, v));
    }
    // 16: the same with DF set -> ICMP Fragmentation Needed (MTU 1500) to the source
    {
        let mut v = udp4([192, 0, 2, 10], [100, 64, 0, 9], 64, &[1u8; 1800]);
        v[20] |= 0x40;
        fix_ip_checksum(&mut v);
        f.push((0, v));
    }
    f
}

fn fix_ip_checksum(v: &mut [u8]) {
    let hl = usize::from(v[14] & 0xf) * 4;
    v[24] = 0;
    v[25] = 0;
    let c = dataplane::proto::checksum::internet(&v[14..14 + hl]);
    v[24..26].copy_from_slice(&c.to_be_bytes());
}

#[test]
fn mixed_traffic_is_forwarded_and_answered() {
    let r = router();
    let frames = frames();
    let (out, pl) = run_frames(&r, &frames);
    let (acc, core) = (&out[0], &out[1]);
    // default route to core gateway, TTL decremented, MACs rewritten
    let f0 = SlicedPacket::from_ethernet(&core[0]).unwrap();
    let eth = f0.link.unwrap().to_header().unwrap();
    let eth = eth.ethernet2().unwrap();
    assert_eq!(eth.destination, CORE_GW_MAC);
    assert_eq!(eth.source, CORE_MAC);
    match f0.net.unwrap() {
        etherparse::NetSlice::Ipv4(ip) => {
            assert_eq!(ip.header().ttl(), 63);
            assert_eq!(
                ip.header().to_header().calc_header_checksum(),
                ip.header().header_checksum()
            );
        }
        _ => panic!("not ipv4"),
    }
    let errors = pl.show_errors();
    assert!(errors.contains("bad header checksum"), "{errors}");
    assert!(errors.contains("truncated IPv4 header"), "{errors}");
    assert!(errors.contains("blackhole route"), "{errors}");
    assert!(errors.contains("TTL expired"), "{errors}");
    assert!(errors.contains("ARP pending"), "{errors}");
    assert!(errors.contains("hop limit expired"), "{errors}");
    // access side got: ICMP time exceeded, echo reply, ARP reply, ICMPv6 errors/replies,
    // and the 203.0.113.7 packet via the access gateway
    assert!(
        acc.iter().any(|f| f[0..6] == ACCESS_GW_MAC),
        "routed via access gw"
    );
    assert!(acc.len() >= 6, "{}", acc.len());
    // ARP request for 198.51.100.77 on core
    assert!(core
        .iter()
        .any(|f| f[12..14] == [0x08, 0x06] && f[0..6] == [0xff; 6]));
    // VLAN stripped on egress
    assert!(core.iter().all(|f| f[12..14] != [0x81, 0x00]));
    // Frame 15 left as two fragments (RFC 791 §3.2): 1480 + 328 payload bytes, in
    // order, same identification, TTL 63, valid header checksums.
    let frags: Vec<&Vec<u8>> = core
        .iter()
        .filter(|f| f[12..14] == [0x08, 0x00] && f[30..34] == [100, 64, 0, 9])
        .collect();
    assert_eq!(frags.len(), 2, "fragments of frame 15");
    let hdr = |f: &Vec<u8>| {
        etherparse::Ipv4HeaderSlice::from_slice(&f[14..])
            .unwrap()
            .to_header()
    };
    let (h0, h1) = (hdr(frags[0]), hdr(frags[1]));
    assert!(h0.more_fragments && !h1.more_fragments);
    assert_eq!(
        (h0.fragment_offset.value(), h1.fragment_offset.value()),
        (0, 185)
    );
    assert_eq!((h0.total_len, h1.total_len), (1500, 348));
    assert_eq!(h0.identification, h1.identification);
    assert_eq!((h0.time_to_live, h1.time_to_live), (63, 63));
    for h in [&h0, &h1] {
        assert_eq!(h.calc_header_checksum(), h.header_checksum);
    }
    // Frame 16 (DF) was refused with type 3 code 4 quoting next-hop MTU 1500.
    assert!(
        acc.iter().any(|f| f.len() > 42
            && f[12..14] == [0x08, 0x00]
            && f[23] == 1
            && f[34] == 3
            && f[35] == 4
            && f[40..42] == [0x05, 0xdc]),
        "ICMP fragmentation needed"
    );
    assert!(errors.contains("exceeds MTU with DF set"), "{errors}");
}

fn tshark() -> &'static str {
    let ok = Command::new("tshark")
        .arg("--version")
        .output()
        .map(|o| o.status.success())
        .unwrap_or(false);
    assert!(
        ok,
        "tshark is required for this test (Debian package tshark; scripts/test installs it)"
    );
    "tshark"
}

#[test]
fn tshark_accepts_router_output() {
    let r = router();
    let frames = frames();
    let (out, _) = run_frames(&r, &frames);
    let dir = std::env::temp_dir().join(format!("router-tshark-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("out.pcap");
    {
        use dataplane::batch::Batch;
        use dataplane::port::{pcap::PcapPort, Port};
        let pool = dataplane::buf::Pool::new(256).unwrap();
        let mut c = pool.cache();
        let mut w = PcapPort::open(None, Some(&path)).unwrap();
        let mut b = Batch::new();
        for f in out.iter().flatten() {
            let mut p = c.alloc().unwrap();
            p.copy_from(f).unwrap();
            b.push(p).unwrap();
        }
        assert!(b.len() >= 12, "{}", b.len());
        w.tx_burst(&mut c, &mut b);
    }
    let ts = tshark();
    let checks = [
        "-o",
        "ip.check_checksum:TRUE",
        "-o",
        "udp.check_checksum:TRUE",
        "-o",
        "tcp.check_checksum:TRUE",
    ];
    // nothing malformed, no bad checksum anywhere
    let bad = Command::new(ts)
        .args(["-r", path.to_str().unwrap(), "-n"])
        .args(checks)
        .args(["-Y", "_ws.malformed or _ws.expert.severity >= error or ip.checksum.status == 0 or udp.checksum.status == 0 or tcp.checksum.status == 0 or icmp.checksum.status == 0 or icmpv6.checksum.status == 0"])
        .output()
        .unwrap();
    assert!(
        bad.status.success(),
        "{}",
        String::from_utf8_lossy(&bad.stderr)
    );
    let bad_out = String::from_utf8_lossy(&bad.stdout);
    assert!(bad_out.trim().is_empty(), "tshark flags:\n{bad_out}");
    let fields = Command::new(ts)
        .args([
            "-r",
            path.to_str().unwrap(),
            "-n",
            "-T",
            "fields",
            "-E",
            "separator=|",
        ])
        .args([
            "-e",
            "ip.ttl",
            "-e",
            "icmp.type",
            "-e",
            "icmpv6.type",
            "-e",
            "arp.opcode",
            "-e",
            "ipv6.hlim",
            "-e",
            "icmp.code",
        ])
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&fields.stdout);
    assert!(
        text.lines().any(|l| l.starts_with("63|")),
        "a forwarded packet with TTL 63:\n{text}"
    );
    assert!(
        text.lines().any(|l| l.split('|').nth(1) == Some("11")),
        "ICMP time exceeded:\n{text}"
    );
    assert!(
        text.lines().any(|l| l.split('|').nth(1) == Some("0")),
        "ICMP echo reply:\n{text}"
    );
    assert!(
        text.lines().any(|l| l.split('|').nth(3) == Some("2")),
        "ARP reply:\n{text}"
    );
    assert!(
        text.lines().any(|l| l.split('|').nth(3) == Some("1")),
        "ARP request:\n{text}"
    );
    assert!(
        text.lines().any(|l| l.split('|').nth(2) == Some("3")),
        "ICMPv6 time exceeded:\n{text}"
    );
    assert!(
        text.lines().any(|l| l.split('|').nth(2) == Some("129")),
        "ICMPv6 echo reply:\n{text}"
    );
    assert!(
        text.lines().any(|l| l.split('|').nth(4) == Some("63")),
        "IPv6 hop limit 63:\n{text}"
    );
    // tshark reassembles our two fragments into the original 1808-byte UDP datagram
    // (whose checksum it verified above).
    let re = Command::new(ts)
        .args(["-r", path.to_str().unwrap(), "-n"])
        .args(checks)
        .args(["-Y", "ip.reassembled.length", "-T", "fields"])
        .args([
            "-e",
            "ip.reassembled.length",
            "-e",
            "udp.length",
            "-e",
            "udp.checksum.status",
        ])
        .output()
        .unwrap();
    let re = String::from_utf8_lossy(&re.stdout);
    assert_eq!(
        re.trim(),
        "1808\t1808\t1",
        "reassembly by tshark (checksum status 1 = good):\n{re}"
    );
    std::fs::remove_dir_all(&dir).unwrap();
}
