//! The DHCPv4 server's messages as Wireshark sees them: a client's DISCOVER, REQUEST
//! (SELECTING, RENEWING, INIT-REBOOT with a wrong address), INFORM, DECLINE and
//! RELEASE on untagged, single-tagged and QinQ access, and a relayed DISCOVER with
//! relay agent information (option 82), together with the server's OFFER, ACK and NAK
//! (classless static routes included), each wrapped in Ethernet/IPv4/UDP by
//! `vbng::dhcp4::wire`, are written to a pcap and dissected by `tshark` with IP and UDP
//! checksum validation: no frame may be malformed or carry a warning/error expert
//! item, and every message type must be there. Fails if tshark is missing.

use dataplane::addr::{Net4, Range4};
use dataplane::proto::checksum::PseudoHeader;
use dataplane::proto::dhcp4::{MessageType, RelayAgentInfo, Repr, FLAG_BROADCAST};
use dataplane::proto::ethernet::{self, Frame, MacAddr, Vlans};
use dataplane::proto::{ipv4, udp, EtherType, IpProtocol};
use std::net::Ipv4Addr;
use std::process::Command;
use vbng::config::PoolConfig;
use vbng::dhcp4::{wire, Dhcp4Config, RouteConfig, Server};

const SERVER_MAC: MacAddr = MacAddr([2, 0, 0, 0, 0xb0, 1]);

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

/// A client's (or relay's) datagram to port 67.
fn client_frame(
    mac: [u8; 6],
    vlans: Vlans,
    src: (Ipv4Addr, u16),
    dst: Ipv4Addr,
    msg: &Repr,
) -> Vec<u8> {
    let mut payload = Vec::new();
    msg.emit(&mut payload).unwrap();
    let eth = ethernet::Repr {
        src_addr: MacAddr(mac),
        dst_addr: if dst.is_broadcast() {
            MacAddr::BROADCAST
        } else {
            SERVER_MAC
        },
        vlans: vlans.to_stack(),
        ethertype: EtherType::IPV4,
    };
    let l3 = eth.buffer_len();
    let ulen = 8 + payload.len();
    let mut f = vec![0u8; l3 + 20 + ulen];
    eth.emit(&mut Frame::new_unchecked(&mut f[..])).unwrap();
    ipv4::Repr {
        src_addr: src.0,
        dst_addr: dst,
        protocol: IpProtocol::UDP,
        payload_len: ulen,
        ttl: 64,
        dscp: 0,
        ecn: 0,
        ident: 1,
        dont_frag: false,
        more_frags: false,
        frag_offset: 0,
    }
    .emit(&mut ipv4::Packet::new_unchecked(&mut f[l3..]))
    .unwrap();
    let mut u = udp::Packet::new_unchecked(&mut f[l3 + 20..]);
    udp::Repr {
        src_port: src.1,
        dst_port: 67,
        payload_len: payload.len(),
    }
    .emit(&mut u)
    .unwrap();
    u.payload_mut().copy_from_slice(&payload);
    u.fill_checksum(&PseudoHeader::V4 { src: src.0, dst });
    f
}

fn a(s: &str) -> Ipv4Addr {
    s.parse().unwrap()
}

fn req(mt: MessageType, mac: [u8; 6], xid: u32) -> Repr {
    let mut chaddr = [0u8; 16];
    chaddr[..6].copy_from_slice(&mac);
    Repr {
        xid,
        chaddr,
        message_type: Some(mt),
        parameter_request_list: Some(vec![1, 3, 6, 15, 26, 28, 121]),
        client_id: Some([&[1u8][..], &mac].concat()),
        hostname: Some(b"cpe".to_vec()),
        ..Repr::default()
    }
}

#[test]
fn dhcp_messages_dissect_cleanly() {
    let ok = Command::new("sh")
        .args(["-c", "command -v tshark"])
        .output()
        .map(|o| o.status.success())
        .unwrap_or(false);
    assert!(
        ok,
        "tshark not found: install the Debian package tshark (scripts/test does)"
    );
    let cfg = Dhcp4Config {
        gateway: Net4 {
            addr: a("100.64.0.1"),
            len: 24,
        },
        pools: vec![PoolConfig {
            name: "default".into(),
            ranges: vec![Range4::new(a("100.64.0.10"), a("100.64.0.200")).unwrap()],
        }],
        dns: vec![a("192.0.2.53"), a("192.0.2.54")],
        mtu: Some(1500),
        classless_routes: vec![RouteConfig {
            prefix: Net4 {
                addr: a("10.0.0.0"),
                len: 8,
            },
            via: a("100.64.0.1"),
        }],
        ..Dhcp4Config::default()
    };
    let sid = cfg.server_id();
    let mut s = Server::new(cfg).unwrap();
    let mut frames: Vec<Vec<u8>> = Vec::new();
    let zero = (Ipv4Addr::UNSPECIFIED, 68);
    let bcast = Ipv4Addr::BROADCAST;
    let mut now = 0;
    let mut exchange = |frames: &mut Vec<Vec<u8>>,
                        s: &mut Server,
                        mac: [u8; 6],
                        vlans: Vlans,
                        src: (Ipv4Addr, u16),
                        dst: Ipv4Addr,
                        r: &Repr|
     -> Option<Repr> {
        now += 100;
        let f = client_frame(mac, vlans, src, dst, r);
        let rq = wire::decap(&f).expect("our frame decaps");
        let h = s.handle(now, rq.vlans, rq.message);
        frames.push(f);
        let reply = h.reply?;
        frames.push(wire::encap(&reply, SERVER_MAC, sid, None));
        Some(Repr::parse_bytes(&reply.message).unwrap())
    };
    for (i, vlans) in [
        Vlans::NONE,
        Vlans { svlan: 0, cvlan: 7 },
        Vlans {
            svlan: 100,
            cvlan: 8,
        },
    ]
    .into_iter()
    .enumerate()
    {
        let mac = [2, 0, 0, 0, 0, 0x10 + i as u8];
        let xid = 0x1000 + i as u32;
        let mut d = req(MessageType::Discover, mac, xid);
        if i == 1 {
            d.flags = FLAG_BROADCAST;
        }
        let o = exchange(&mut frames, &mut s, mac, vlans, zero, bcast, &d).expect("offer");
        let mut r = req(MessageType::Request, mac, xid);
        r.server_id = Some(sid);
        r.requested_ip = Some(o.yiaddr);
        let ack = exchange(&mut frames, &mut s, mac, vlans, zero, bcast, &r).expect("ack");
        assert_eq!(ack.message_type, Some(MessageType::Ack));
        // RENEWING, unicast from the bound address.
        let mut rn = req(MessageType::Request, mac, xid + 1);
        rn.ciaddr = o.yiaddr;
        exchange(&mut frames, &mut s, mac, vlans, (o.yiaddr, 68), sid, &rn).expect("renew");
        // INIT-REBOOT with a wrong address: NAK.
        let mut ir = req(MessageType::Request, mac, xid + 2);
        ir.requested_ip = Some(a("100.64.0.199"));
        let n = exchange(&mut frames, &mut s, mac, vlans, zero, bcast, &ir).expect("nak");
        assert_eq!(n.message_type, Some(MessageType::Nak));
        // INFORM from the bound address.
        let mut inf = req(MessageType::Inform, mac, xid + 3);
        inf.ciaddr = o.yiaddr;
        exchange(&mut frames, &mut s, mac, vlans, (o.yiaddr, 68), sid, &inf).expect("inform");
        let mut end = req(
            if i == 2 {
                MessageType::Decline
            } else {
                MessageType::Release
            },
            mac,
            xid + 4,
        );
        end.server_id = Some(sid);
        if i == 2 {
            end.requested_ip = Some(o.yiaddr);
            assert!(exchange(&mut frames, &mut s, mac, vlans, zero, bcast, &end).is_none());
        } else {
            end.ciaddr = o.yiaddr;
            assert!(exchange(&mut frames, &mut s, mac, vlans, (o.yiaddr, 68), sid, &end).is_none());
        }
    }
    // Relayed DISCOVER with option 82 (from a relay agent at 100.64.0.2).
    let mac = [2, 0, 0, 0, 0, 0x20];
    let mut d = req(MessageType::Discover, mac, 0x2000);
    d.giaddr = a("100.64.0.2");
    d.hops = 1;
    d.relay_agent_info = Some(RelayAgentInfo {
        circuit_id: Some(b"olt1 eth 1/1/1:100.7".to_vec()),
        remote_id: Some(b"subscriber-7".to_vec()),
        other: Vec::new(),
    });
    let o = exchange(
        &mut frames,
        &mut s,
        [2, 0, 0, 0, 0xee, 1],
        Vlans::NONE,
        (a("100.64.0.2"), 67),
        sid,
        &d,
    )
    .expect("relayed offer");
    assert!(o.relay_agent_info.is_some());

    let path = std::env::temp_dir().join(format!("vbng-dhcp4-{}.pcap", std::process::id()));
    std::fs::write(&path, pcap(&frames)).expect("write pcap");
    let run = |filter: &str, verbose: bool| -> String {
        let mut c = Command::new("tshark");
        c.arg("-r").arg(&path).args([
            "-o",
            "ip.check_checksum:TRUE",
            "-o",
            "udp.check_checksum:TRUE",
            "-Y",
            filter,
        ]);
        if verbose {
            c.arg("-V");
        }
        let o = c.output().expect("tshark");
        assert!(
            o.status.success(),
            "tshark failed: {}",
            String::from_utf8_lossy(&o.stderr)
        );
        String::from_utf8_lossy(&o.stdout).into_owned()
    };
    let bad = run("_ws.malformed || _ws.expert.severity >= 0x00600000", true);
    let all = run("dhcp", false);
    let detail = run("dhcp", true);
    let _ = std::fs::remove_file(&path);
    assert!(bad.trim().is_empty(), "tshark flags frames:\n{bad}");
    assert_eq!(all.lines().count(), frames.len(), "{all}");
    for k in [
        "DHCP Discover",
        "DHCP Offer",
        "DHCP Request",
        "DHCP ACK",
        "DHCP NAK",
        "DHCP Inform",
        "DHCP Decline",
        "DHCP Release",
    ] {
        assert!(all.contains(k), "no {k} in the capture:\n{all}");
    }
    for k in [
        "Option: (121) Classless Static Route",
        "Option: (82) Agent Information Option",
        "Agent Circuit ID: ",
        "Option: (51) IP Address Lease Time",
        "Option: (58) Renewal Time Value",
        "Option: (59) Rebinding Time Value",
        "Option: (26) Interface MTU",
        "Option: (54) DHCP Server Identifier (100.64.0.1)",
        "802.1ad",
    ] {
        assert!(detail.contains(k), "no {k:?} in the dissection");
    }
}
