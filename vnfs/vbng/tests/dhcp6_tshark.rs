//! The DHCPv6 server's messages as Wireshark sees them: clients' Solicit (with and
//! without Rapid Commit), Request, Renew, Rebind, Confirm, Information-request,
//! Decline and Release on untagged and QinQ access, a Renew the server has no binding
//! for, and a relay agent's Relay-forward, together with the server's Advertise,
//! Reply and Relay-reply, each in Ethernet/IPv6/UDP (the replies by
//! `vbng::dhcp6::wire`), are written to a pcap (crate `pcap-file`) and dissected by
//! `tshark` with UDP checksum validation: no frame may be malformed or carry a
//! warning/error expert item, and every message type must be there. Fails if tshark
//! is missing.

use dataplane::proto::checksum::PseudoHeader;
use dataplane::proto::dhcp6::{
    opt, Duid, Ia, IaAddr, IaPrefix, Message, MessageType, RelayMessage, Repr,
    ALL_DHCP_RELAY_AGENTS_AND_SERVERS,
};
use dataplane::proto::ethernet::{self, Frame, MacAddr, Vlans};
use dataplane::proto::{ipv6, udp, EtherType, IpProtocol};
use std::net::Ipv6Addr;
use std::process::Command;
use vbng::dhcp6::{wire, AddrPoolConfig, Dhcp6Config, LineKey, PrefixPoolConfig, Server};

const SERVER_MAC: MacAddr = MacAddr([2, 0, 0, 0, 0xb6, 1]);

fn a(s: &str) -> Ipv6Addr {
    s.parse().unwrap()
}

/// A client's (or relay's) datagram to `ff02::1:2`, port 547.
fn client_frame(mac: [u8; 6], vlans: Vlans, src: (Ipv6Addr, u16), msg: &Repr) -> Vec<u8> {
    let mut payload = Vec::new();
    msg.emit(&mut payload).unwrap();
    let dst = ALL_DHCP_RELAY_AGENTS_AND_SERVERS;
    let eth = ethernet::Repr {
        src_addr: MacAddr(mac),
        dst_addr: MacAddr([0x33, 0x33, 0, 1, 0, 2]),
        vlans: vlans.to_stack(),
        ethertype: EtherType::IPV6,
    };
    let l3 = eth.buffer_len();
    let ulen = 8 + payload.len();
    let mut f = vec![0u8; l3 + 40 + ulen];
    eth.emit(&mut Frame::new_unchecked(&mut f[..])).unwrap();
    ipv6::Repr {
        src_addr: src.0,
        dst_addr: dst,
        next_header: IpProtocol::UDP,
        payload_len: ulen,
        hop_limit: 1,
        traffic_class: 0,
        flow_label: 0,
    }
    .emit(&mut ipv6::Packet::new_unchecked(&mut f[l3..]))
    .unwrap();
    let mut u = udp::Packet::new_unchecked(&mut f[l3 + 40..]);
    udp::Repr {
        src_port: src.1,
        dst_port: 547,
        payload_len: payload.len(),
    }
    .emit(&mut u)
    .unwrap();
    u.payload_mut().copy_from_slice(&payload);
    u.fill_checksum(&PseudoHeader::V6 { src: src.0, dst });
    f
}

fn msg(t: MessageType, mac: [u8; 6], xid: u32) -> Message {
    Message {
        client_id: Some(Duid::llt(0x2e00_0000, mac)),
        ia_na: vec![Ia::new(1, 0, 0)],
        ia_pd: vec![Ia::new(2, 0, 0)],
        oro: Some(vec![opt::DNS_SERVERS, opt::SOL_MAX_RT]),
        elapsed_time: Some(0),
        ..Message::new(t, xid)
    }
}

#[test]
fn dhcp6_messages_dissect_cleanly() {
    let ok = Command::new("sh")
        .args(["-c", "command -v tshark"])
        .output()
        .map(|o| o.status.success())
        .unwrap_or(false);
    assert!(
        ok,
        "tshark not found: install the Debian package tshark (scripts/test does)"
    );
    let cfg = Dhcp6Config {
        address_pools: vec![AddrPoolConfig {
            name: "na".into(),
            first: a("2001:db8:1::100"),
            last: a("2001:db8:1::1ff"),
        }],
        prefix_pools: vec![PrefixPoolConfig {
            name: "pd".into(),
            prefix: "2001:db8:100::/40".parse().unwrap(),
            len: 56,
        }],
        dns: vec![a("2001:db8::53"), a("2001:db8::54")],
        sol_max_rt_s: Some(3600),
        ..Dhcp6Config::default()
    };
    let mut s = Server::new(cfg, Duid::ll(SERVER_MAC.0)).unwrap();
    let sid = s.duid().clone();
    let mut frames: Vec<Vec<u8>> = Vec::new();
    let mut now = 0;
    let mut exchange = |frames: &mut Vec<Vec<u8>>,
                        s: &mut Server,
                        mac: [u8; 6],
                        vlans: Vlans,
                        src: (Ipv6Addr, u16),
                        r: &Repr|
     -> Option<Repr> {
        now += 100;
        let f = client_frame(mac, vlans, src, r);
        let rq = wire::decap(&f).expect("our frame decaps");
        let h = s.handle(
            now,
            &LineKey(mac.to_vec()),
            rq.request.src,
            rq.request.message,
        );
        frames.push(f);
        let reply = h.reply?;
        frames.push(wire::encap(&reply, SERVER_MAC, MacAddr(mac), vlans).unwrap());
        Some(Repr::parse_bytes(&reply.message).unwrap())
    };
    let msg_of = |r: Option<Repr>| match r {
        Some(Repr::Message(m)) => m,
        other => panic!("not a client message: {other:?}"),
    };
    for (i, vlans) in [
        Vlans::NONE,
        Vlans {
            svlan: 100,
            cvlan: 8,
        },
    ]
    .into_iter()
    .enumerate()
    {
        let mac = [2, 0, 0, 0, 0, 0x10 + i as u8];
        let ll = wire::link_local(MacAddr(mac));
        let c = (ll, 546);
        let xid = 0x1000 + i as u32 * 16;
        let t = |t, x| Repr::Message(msg(t, mac, xid + x));
        let ad = msg_of(exchange(
            &mut frames,
            &mut s,
            mac,
            vlans,
            c,
            &t(MessageType::Solicit, 0),
        ));
        assert_eq!(ad.msg_type, MessageType::Advertise);
        let mut rq = msg(MessageType::Request, mac, xid + 1);
        rq.server_id = Some(sid.clone());
        rq.ia_na = ad.ia_na.clone();
        rq.ia_pd = ad.ia_pd.clone();
        let rep = msg_of(exchange(
            &mut frames,
            &mut s,
            mac,
            vlans,
            c,
            &Repr::Message(rq.clone()),
        ));
        assert_eq!(rep.msg_type, MessageType::Reply);
        let mut rn = rep.clone();
        rn.msg_type = MessageType::Renew;
        rn.transaction_id = xid + 2;
        rn.dns_servers.clear();
        rn.sol_max_rt = None;
        rn.oro = Some(vec![opt::DNS_SERVERS]);
        exchange(
            &mut frames,
            &mut s,
            mac,
            vlans,
            c,
            &Repr::Message(rn.clone()),
        )
        .expect("renew");
        let mut rb = rn.clone();
        rb.msg_type = MessageType::Rebind;
        rb.transaction_id = xid + 3;
        rb.server_id = None;
        exchange(&mut frames, &mut s, mac, vlans, c, &Repr::Message(rb)).expect("rebind");
        let mut cf = rb_confirm(&rn, xid + 4);
        cf.ia_pd.clear();
        exchange(&mut frames, &mut s, mac, vlans, c, &Repr::Message(cf)).expect("confirm");
        let ir = Message {
            oro: Some(vec![opt::DNS_SERVERS]),
            client_id: Some(Duid::llt(0x2e00_0000, mac)),
            ..Message::new(MessageType::InformationRequest, xid + 5)
        };
        exchange(&mut frames, &mut s, mac, vlans, c, &Repr::Message(ir)).expect("info");
        let mut end = rn.clone();
        end.transaction_id = xid + 6;
        end.msg_type = if i == 1 {
            end.ia_pd.clear();
            MessageType::Decline
        } else {
            MessageType::Release
        };
        let r = msg_of(exchange(
            &mut frames,
            &mut s,
            mac,
            vlans,
            c,
            &Repr::Message(end),
        ));
        assert_eq!(r.status.unwrap().code, 0);
    }
    // Rapid Commit, and a Renew without binding (NoBinding).
    let mac = [2, 0, 0, 0, 0, 0x30];
    let c = (wire::link_local(MacAddr(mac)), 546);
    let mut rc = msg(MessageType::Solicit, mac, 0x3000);
    rc.rapid_commit = true;
    let r = msg_of(exchange(
        &mut frames,
        &mut s,
        mac,
        Vlans::NONE,
        c,
        &Repr::Message(rc),
    ));
    assert!(r.rapid_commit);
    let mac2 = [2, 0, 0, 0, 0, 0x31];
    let mut rn = msg(MessageType::Renew, mac2, 0x3100);
    rn.server_id = Some(sid.clone());
    let r = msg_of(exchange(
        &mut frames,
        &mut s,
        mac2,
        Vlans::NONE,
        (wire::link_local(MacAddr(mac2)), 546),
        &Repr::Message(rn),
    ));
    assert_eq!(r.ia_na[0].status.as_ref().unwrap().code, 3);
    // A relay agent's Relay-forward.
    let mut inner = Vec::new();
    Repr::Message(msg(MessageType::Solicit, [2, 0, 0, 0, 0, 0x40], 0x4000))
        .emit(&mut inner)
        .unwrap();
    let fw = Repr::Relay(RelayMessage {
        msg_type: MessageType::RelayForw,
        hop_count: 0,
        link_address: a("2001:db8:1::1"),
        peer_address: wire::link_local(MacAddr([2, 0, 0, 0, 0, 0x40])),
        relay_message: inner,
        interface_id: Some(b"olt1 eth 1/1/1:100.7".to_vec()),
        other: Vec::new(),
    });
    let rr = exchange(
        &mut frames,
        &mut s,
        [2, 0, 0, 0, 0xee, 1],
        Vlans::NONE,
        (a("2001:db8:1::2"), 547),
        &fw,
    )
    .expect("relay reply");
    assert_eq!(rr.message_type(), MessageType::RelayRepl);

    let path = std::env::temp_dir().join(format!("vbng-dhcp6-{}.pcap", std::process::id()));
    {
        use pcap_file::pcap::{PcapPacket, PcapWriter};
        let file = std::fs::File::create(&path).expect("create pcap");
        let mut w = PcapWriter::new(file).expect("pcap header");
        for (i, f) in frames.iter().enumerate() {
            let ts = std::time::Duration::from_millis(i as u64);
            w.write_packet(&PcapPacket::new(ts, f.len() as u32, f))
                .expect("write packet");
        }
    }
    let run = |filter: &str, verbose: bool| -> String {
        let mut c = Command::new("tshark");
        c.arg("-r")
            .arg(&path)
            .args(["-o", "udp.check_checksum:TRUE", "-Y", filter]);
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
    let all = run("dhcpv6", false);
    let detail = run("dhcpv6", true);
    if std::env::var_os("DHCP6_KEEP_PCAP").is_none() {
        let _ = std::fs::remove_file(&path);
    }
    assert!(bad.trim().is_empty(), "tshark flags frames:\n{bad}");
    assert_eq!(all.lines().count(), frames.len(), "{all}");
    for k in [
        "Solicit",
        "Advertise",
        "Request",
        "Confirm",
        "Renew",
        "Rebind",
        "Reply",
        "Release",
        "Decline",
        "Information-request",
        "Relay-forw",
        "Relay-reply",
    ] {
        assert!(all.contains(k), "no {k} in the capture:\n{all}");
    }
    for k in [
        "Identity Association for Non-temporary Address",
        "Identity Association for Prefix Delegation",
        "IA Prefix",
        "IA Address",
        "DNS recursive name server",
        "Rapid Commit",
        "Status Code: NoBinding (3)",
        "Interface-Id",
        "Preference",
        "802.1ad",
    ] {
        assert!(detail.contains(k), "no {k:?} in the dissection");
    }
}

/// A Confirm carrying a Renew's IA_NA addresses (no Server Identifier, §18.2.3).
fn rb_confirm(rn: &Message, xid: u32) -> Message {
    let mut c = rn.clone();
    c.msg_type = MessageType::Confirm;
    c.transaction_id = xid;
    c.server_id = None;
    for ia in &mut c.ia_na {
        ia.t1 = 0;
        ia.t2 = 0;
        for x in &mut ia.items {
            *x = IaAddr {
                preferred: 0,
                valid: 0,
                ..x.clone()
            };
        }
    }
    for ia in &mut c.ia_pd {
        for x in &mut ia.items {
            *x = IaPrefix {
                preferred: 0,
                valid: 0,
                ..x.clone()
            };
        }
    }
    c
}
