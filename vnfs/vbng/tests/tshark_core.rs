//! What the BNG itself sends, as Wireshark sees it: ARP requests for the core gateway
//! and ARP replies for `core_ip` (RFC 826), ICMP Time Exceeded upstream (inside the
//! subscriber's QinQ PPPoE session) and downstream (on the core), Fragmentation
//! Needed with the session MTU (RFC 1191), an Echo Reply from the gateway, and SYN /
//! SYN-ACK with a clamped MSS (RFC 879/6691). The frames come out of the
//! `bng-fastpath` stage, are written to a pcap and dissected by `tshark` with IP and
//! TCP checksum validation on: no frame may be malformed, carry a warning/error
//! expert item or a bad checksum, and the fields must hold the expected values.
//! Fails if tshark is missing.

mod common_core;

use common_core::*;
use dataplane::batch::Out;
use dataplane::buf::Pool;
use dataplane::stage::Stage;
use std::process::Command;

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

#[test]
fn bng_originated_packets_dissect_cleanly() {
    let ok = Command::new("sh")
        .args(["-c", "command -v tshark"])
        .output()
        .map(|o| o.status.success())
        .unwrap_or(false);
    assert!(
        ok,
        "tshark not found: install the Debian package tshark (scripts/test does)"
    );
    let pool = Pool::new(256).expect("pool");
    let mut out = Out::new(2, pool.cache());
    let (mut fp, link) = fastpath(1000, 100);
    let mut frames: Vec<Vec<u8>> = Vec::new();

    // Start: an ARP request for the gateway.
    out.now_ns = 1_000;
    fp.tick(&mut out);
    let cache = &mut out.cache;
    out.ports[1].drain(|p| {
        frames.push(p.data().to_vec());
        cache.free(p);
    });
    assert_eq!(frames.len(), 1, "ARP request at start");
    // A host asks for core_ip; the gateway answers our request.
    let (_, c, _) = run(
        &mut fp,
        &mut out,
        1,
        &[
            arp(1, HOST_MAC, [198, 51, 100, 9], CORE_IP),
            arp(2, GW_MAC, CORE_GW, CORE_IP),
        ],
    );
    assert_eq!(c.len(), 1, "ARP reply");
    frames.extend(c);
    assert_eq!(link.gateway_mac(), Some(GW_MAC));

    // Upstream: TTL expiry, a ping to the gateway, a SYN with MSS 1460.
    let (a, c, node) = run(
        &mut fp,
        &mut out,
        0,
        &[
            up_frame(&udp(SUB_IP, REMOTE, 1, false, 64)),
            up_frame(&ping(SUB_IP, GATEWAY)),
            up_frame(&tcp(SUB_IP, REMOTE, 0x02, 1460)),
        ],
    );
    assert_eq!((a.len(), c.len()), (2, 1), "{:?}", node.drops);
    frames.extend(a);
    frames.extend(c);

    // Downstream: TTL expiry, a DF datagram too big for the session, a SYN-ACK.
    let (a, c, node) = run(
        &mut fp,
        &mut out,
        1,
        &[
            core_frame(&udp(REMOTE, SUB_IP, 1, false, 64)),
            core_frame(&udp(REMOTE, SUB_IP, 64, true, 1472)),
            core_frame(&tcp(REMOTE, SUB_IP, 0x12, 1460)),
        ],
    );
    assert_eq!((a.len(), c.len()), (1, 2), "{:?}", node.drops);
    frames.extend(a);
    frames.extend(c);

    let path = std::env::temp_dir().join(format!("vbng-core-{}.pcap", std::process::id()));
    std::fs::write(&path, pcap(&frames)).expect("write pcap");
    let run = |filter: &str| {
        let o = Command::new("tshark")
            .arg("-r")
            .arg(&path)
            .args([
                "-o",
                "ip.check_checksum:TRUE",
                "-o",
                "tcp.check_checksum:TRUE",
                "-Y",
                filter,
            ])
            .output()
            .expect("tshark");
        assert!(
            o.status.success(),
            "tshark failed: {}",
            String::from_utf8_lossy(&o.stderr)
        );
        String::from_utf8_lossy(&o.stdout).into_owned()
    };
    let count = |filter: &str| run(filter).lines().count();
    let bad = run("_ws.malformed || _ws.expert.severity >= 0x00600000 \
         || ip.checksum.status == 0 || tcp.checksum.status == 0 || icmp.checksum.status == 0");
    let all = run("frame");
    assert!(
        bad.trim().is_empty(),
        "tshark flags frames:\n{bad}\nall:\n{all}"
    );
    assert_eq!(all.lines().count(), frames.len(), "{all}");
    let expect = [
        (
            "arp.opcode == 1 && arp.src.proto_ipv4 == 198.51.100.1 \
             && arp.dst.proto_ipv4 == 198.51.100.254 && eth.dst == ff:ff:ff:ff:ff:ff",
            1,
        ),
        (
            "arp.opcode == 2 && arp.src.proto_ipv4 == 198.51.100.1 \
             && arp.src.hw_mac == 02:00:00:00:00:0c && arp.dst.hw_mac == 02:07:07:07:07:07",
            1,
        ),
        (
            "pppoes && pppoe.session_id == 0x55 && vlan.id == 20 && icmp.type == 11 && icmp.code == 0 \
             && ip.src == 100.64.0.1 && ip.dst == 100.64.0.5 && ip.checksum.status == 1 \
             && icmp.checksum.status == 1",
            1,
        ),
        (
            "!pppoes && eth.dst == 02:00:00:00:00:0d && icmp.type == 11 && icmp.code == 0 \
             && ip.src == 198.51.100.1 && ip.dst == 203.0.113.80 && icmp.checksum.status == 1",
            1,
        ),
        (
            "icmp.type == 3 && icmp.code == 4 && icmp.mtu == 1492 && ip.src == 198.51.100.1 \
             && icmp.checksum.status == 1",
            1,
        ),
        (
            "pppoes && icmp.type == 0 && ip.src == 100.64.0.1 && ip.dst == 100.64.0.5 \
             && icmp.checksum.status == 1",
            1,
        ),
        (
            "!pppoes && tcp.flags.syn == 1 && tcp.flags.ack == 0 \
             && tcp.options.mss_val == 1452 && tcp.checksum.status == 1 \
             && eth.dst == 02:00:00:00:00:0d",
            1,
        ),
        (
            "pppoes && pppoe.session_id == 0x55 && tcp.flags.syn == 1 && tcp.flags.ack == 1 \
             && tcp.options.mss_val == 1452 && tcp.checksum.status == 1",
            1,
        ),
    ];
    for (filter, n) in expect {
        assert_eq!(count(filter), n, "{filter}\nall:\n{all}");
    }
    let _ = std::fs::remove_file(&path);
}
