//! IPv6 over PPPoE as Wireshark sees it: a dual-stack session (IPv6CP, RFC 5072) on a
//! QinQ access line, the subscriber's Router Solicitation, the BNG's Router
//! Advertisements (RFC 4861 §4.2 with Prefix Information, MTU and RDNSS, RFC 8106),
//! a Neighbor Solicitation for the BNG's link-local address and its answer, a ping to
//! that address and its Echo Reply, an ICMPv6
//! Time Exceeded (RFC 4443 §3.3) for a packet whose hop limit expired, a Packet Too
//! Big (§3.2) to the core for one too big for the session, and IPv6
//! UDP data both ways through the fast path (PPPoE/PPP 0x0057 on the access side,
//! Ethernet 0x86DD on the core side), are written to a pcap and dissected by `tshark`.
//! No frame may be malformed or carry a warning/error expert item (a bad ICMPv6 or
//! UDP checksum is one: a negative control proves tshark checks them here). Fails if
//! tshark is missing. A second test does the same for IPv6 over IPoE (`ipoe.dhcp6`):
//! RS/RA and NS/NA over Ethernet with link-layer address options, DHCPv6 Solicit and
//! Reply.

use dataplane::batch::{Batch, Out};
use dataplane::buf::Pool;
use dataplane::proto::ethernet::Vlans;
use dataplane::stage::{NodeStats, Stage};
use pktgen::subscribers::client::{ClientParams, ClientPhase, Subscriber};
use std::process::Command;
use vbng::config::{Config, Pool6Config, UserConfig};
use vbng::control::{ControlPlane, SessionCounters};
use vbng::fastpath::{update_queue, FastPath, FastPathConfig, ERRORS};
use vbng::fsm::Timers;
use vbng::lcp::AuthProto;
use vbng::rng::Rng;

const CORE_MAC: [u8; 6] = [2, 0, 0, 0, 0, 0xc];
const SINK_MAC: [u8; 6] = [2, 0, 0, 0, 0, 0xd];
const REMOTE: u128 = 0x2001_0db8_ffff_0000_0000_0000_0000_0001;

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

/// Frames out of the fast path for `frame` arriving on `port`: (to access, to core,
/// punted).
fn fastpath(fp: &mut FastPath, port: u16, frame: &[u8]) -> [Vec<Vec<u8>>; 3] {
    let pool = Pool::new(64).expect("pool");
    let mut out = Out::new(2, pool.cache());
    let mut node = NodeStats::new("bng-fastpath", ERRORS);
    let mut b = Batch::new();
    let mut p = out.cache.alloc().expect("buffer");
    p.copy_from(frame).expect("copy");
    p.meta.port = port;
    b.push(p).expect("push");
    fp.process(&mut b, &mut node, &mut out);
    let take = |b: &Batch| b.iter().map(|p| p.data().to_vec()).collect::<Vec<_>>();
    [take(&out.ports[0]), take(&out.ports[1]), take(&out.punt)]
}

fn tshark(path: &std::path::Path, filter: &str, fields: &[&str]) -> String {
    let mut c = Command::new("tshark");
    c.arg("-r")
        .arg(path)
        .args(["-o", "udp.check_checksum:TRUE", "-Y", filter]);
    if !fields.is_empty() {
        // The first occurrence: an ICMPv6 error also carries the quoted header's fields.
        c.args(["-T", "fields", "-E", "occurrence=f"]);
        for f in fields {
            c.args(["-e", f]);
        }
    }
    let o = c.output().expect("tshark");
    assert!(
        o.status.success(),
        "tshark failed: {}",
        String::from_utf8_lossy(&o.stderr)
    );
    String::from_utf8_lossy(&o.stdout).into_owned()
}

#[test]
fn ipv6_over_pppoe_dissects_cleanly() {
    let ok = Command::new("sh")
        .args(["-c", "command -v tshark"])
        .output()
        .map(|o| o.status.success())
        .unwrap_or(false);
    assert!(
        ok,
        "tshark not found: install the Debian package tshark (scripts/test does)"
    );
    let cfg = Config {
        auth: AuthProto::Chap,
        auth_fallback: None,
        ipv6cp: true,
        pools6: vec![Pool6Config {
            name: "v6".into(),
            prefix: "2001:db8:100::/40".parse().unwrap(),
        }],
        dns6: vec!["2001:db8::53".parse().expect("addr")],
        users: vec![UserConfig {
            name: "alice".into(),
            password: "pw".into(),
            ip: None,
            rate: None,
        }],
        ..Config::default()
    };
    let counters = SessionCounters::new(16);
    let mut cp = ControlPlane::new(&cfg, 16, counters.clone(), Rng::from_seed([3; 32]))
        .expect("control plane");
    let mut fp = FastPath::new(
        FastPathConfig {
            access_port: 0,
            core_port: 1,
            access_mac: cp.mac(),
            core_mac: CORE_MAC,
            core_next_hop: SINK_MAC,
            max_sessions: 16,
        },
        update_queue(64),
        counters,
    )
    .with_core_ip6(Some("2001:db8:ffff::b".parse().expect("addr")));
    let mut s = Subscriber::new(ClientParams {
        mac: [2, 0, 0, 0, 0, 9],
        vlans: Vlans {
            svlan: 100,
            cvlan: 7,
        },
        user: b"alice".to_vec(),
        password: b"pw".to_vec(),
        accept_auth: [Some(AuthProto::Chap), None],
        service_name: Vec::new(),
        host_uniq: Some(vec![1, 2, 3, 4]),
        max_payload: None,
        timers: Timers::default(),
        ipv6cp: true,
        magic: 0x1234_5678,
        discovery_tries: 3,
    });
    let mut frames: Vec<Vec<u8>> = Vec::new();
    let mut up = Vec::new();
    s.start(0, &mut up);
    // Subscriber frames pass the fast path first (as on the wire): control and ND are
    // punted to the control plane.
    for _ in 0..50 {
        for f in up.drain(..) {
            frames.push(f.clone());
            let [_, _, punted] = fastpath(&mut fp, 0, &f);
            for p in punted {
                cp.input(0, &p, 0);
            }
        }
        cp.poll(0);
        for u in cp.take_fib() {
            fp.apply(u, 0);
        }
        let tx = cp.take_tx();
        if tx.is_empty() {
            break;
        }
        for (_, f) in tx {
            frames.push(f.clone());
            s.input(&f, 0, &mut up);
        }
    }
    assert_eq!(s.phase, ClientPhase::Up);
    assert_ne!(s.ipv6, 0, "SLAAC address from the RA");
    assert_eq!(fp.sessions(), 1);

    // A Neighbor Solicitation for the BNG's link-local address, answered with an NA.
    let router = s.ipv6_router;
    let mut ns = vec![135u8, 0, 0, 0, 0, 0, 0, 0];
    ns.extend_from_slice(&router.to_be_bytes());
    dataplane::proto::icmpv6::Packet::new_unchecked(&mut ns[..]).fill_checksum(
        &std::net::Ipv6Addr::from(s.ipv6),
        &std::net::Ipv6Addr::from(router),
    );
    let mut ppp = vec![0x00, 0x57, 0x60, 0, 0, 0, 0, 24, 58, 255];
    ppp.extend_from_slice(&s.ipv6.to_be_bytes());
    ppp.extend_from_slice(&router.to_be_bytes());
    ppp.extend_from_slice(&ns);
    let nsf = s.session_frame(&ppp);
    frames.push(nsf.clone());
    let [_, _, punted] = fastpath(&mut fp, 0, &nsf);
    assert_eq!(punted.len(), 1);
    cp.input(0, &punted[0], 1);
    let na = cp.take_tx();
    assert_eq!(na.len(), 1);
    frames.extend(na.into_iter().map(|(_, f)| f));

    // A ping to the BNG's link-local address (RFC 4443 §4.1) is answered.
    let mut echo = vec![128u8, 0, 0, 0, 0x42, 0x42, 0, 1, 1, 2, 3, 4];
    let lls = vbng::nd::link_local(s.interface_id().expect("iid"));
    dataplane::proto::icmpv6::Packet::new_unchecked(&mut echo[..]).fill_checksum(
        &std::net::Ipv6Addr::from(lls),
        &std::net::Ipv6Addr::from(router),
    );
    let mut ppp = vec![0x00, 0x57, 0x60, 0, 0, 0, 0, echo.len() as u8, 58, 64];
    ppp.extend_from_slice(&lls.to_be_bytes());
    ppp.extend_from_slice(&router.to_be_bytes());
    ppp.extend_from_slice(&echo);
    let ping = s.session_frame(&ppp);
    frames.push(ping.clone());
    let [_, _, punted] = fastpath(&mut fp, 0, &ping);
    assert_eq!(punted.len(), 1);
    cp.input(0, &punted[0], 2);
    let pong = cp.take_tx();
    assert_eq!(pong.len(), 1, "echo reply");
    frames.extend(pong.into_iter().map(|(_, f)| f));

    // Data both ways through the fast path.
    let upf = s.ipv6_udp_frame(REMOTE, 200, 4000, 5001).expect("frame");
    frames.push(upf.clone());
    let [_, to_core, _] = fastpath(&mut fp, 0, &upf);
    assert_eq!(to_core.len(), 1, "upstream IPv6 forwarded");
    frames.extend(to_core);
    // Hop limit 1: dropped, with an ICMPv6 Time Exceeded back inside the session.
    let mut expiring = upf.clone();
    expiring[30 + 7] = 1;
    frames.push(expiring.clone());
    let [te, to_core, _] = fastpath(&mut fp, 0, &expiring);
    assert!(to_core.is_empty());
    assert_eq!(te.len(), 1, "Time Exceeded");
    frames.extend(te);
    let mut down = CORE_MAC.to_vec();
    down.extend_from_slice(&SINK_MAC);
    down.extend_from_slice(&[0x86, 0xdd]);
    down.extend_from_slice(&pktgen::subscribers::client::ipv6_udp(
        REMOTE, s.ipv6, 180, 5001, 4000,
    ));
    frames.push(down.clone());
    let [to_access, _, _] = fastpath(&mut fp, 1, &down);
    assert_eq!(to_access.len(), 1, "downstream IPv6 encapsulated");
    frames.extend(to_access);
    // Too big for the session: Packet Too Big with the session MTU to the sender.
    let mut big = CORE_MAC.to_vec();
    big.extend_from_slice(&SINK_MAC);
    big.extend_from_slice(&[0x86, 0xdd]);
    big.extend_from_slice(&pktgen::subscribers::client::ipv6_udp(
        REMOTE, s.ipv6, 1500, 5001, 4000,
    ));
    frames.push(big.clone());
    let [to_access, ptb, _] = fastpath(&mut fp, 1, &big);
    assert!(to_access.is_empty());
    assert_eq!(ptb.len(), 1, "Packet Too Big");
    frames.extend(ptb);

    let path = std::env::temp_dir().join(format!("vbng-ipv6-{}.pcap", std::process::id()));
    std::fs::write(&path, pcap(&frames)).expect("write pcap");
    let bad = tshark(
        &path,
        "_ws.malformed || _ws.expert.severity >= 0x00600000",
        &[],
    );
    let ra = tshark(
        &path,
        "pppoes && icmpv6.type == 134",
        &[
            "ipv6.src",
            "ipv6.dst",
            "icmpv6.opt.prefix",
            "icmpv6.opt.prefix.flag.l",
            "icmpv6.opt.prefix.flag.a",
            "icmpv6.opt.mtu",
            "icmpv6.opt.rdnss",
            "icmpv6.checksum.status",
        ],
    );
    let rs = tshark(&path, "pppoes && icmpv6.type == 133", &["ipv6.src"]);
    let te = tshark(
        &path,
        "pppoes && icmpv6.type == 3",
        &[
            "ipv6.src",
            "ipv6.dst",
            "icmpv6.code",
            "icmpv6.checksum.status",
        ],
    );
    let ptb = tshark(
        &path,
        "icmpv6.type == 2",
        &[
            "ipv6.src",
            "ipv6.dst",
            "icmpv6.mtu",
            "icmpv6.checksum.status",
        ],
    );
    let pong = tshark(
        &path,
        "pppoes && icmpv6.type == 129",
        &[
            "ipv6.src",
            "icmpv6.echo.sequence_number",
            "icmpv6.checksum.status",
        ],
    );
    let nd = tshark(
        &path,
        "icmpv6.type == 136",
        &["icmpv6.nd.na.target_address"],
    );
    let up6 = tshark(
        &path,
        "eth.type == 0x86dd && eth.dst == 02:00:00:00:00:0d && udp && !icmpv6",
        &["ipv6.src", "ipv6.hlim", "udp.checksum.status"],
    );
    let down6 = tshark(
        &path,
        "pppoes && ppp.protocol == 0x0057 && udp && !icmpv6 && vlan && eth.dst == 02:00:00:00:00:09",
        &["ipv6.dst", "ipv6.hlim", "udp.checksum.status"],
    );
    // Negative control: the same capture with the RA's ICMPv6 checksum broken is flagged.
    let ra_at = frames
        .iter()
        .position(|f| f.len() > 70 && f[12..14] == [0x88, 0xa8] && f.get(70) == Some(&134))
        .expect("an RA frame");
    let mut broken = frames.clone();
    broken[ra_at][72] ^= 0x55;
    let bpath = std::env::temp_dir().join(format!("vbng-ipv6-bad-{}.pcap", std::process::id()));
    std::fs::write(&bpath, pcap(&broken)).expect("write pcap");
    let flagged = tshark(&bpath, "_ws.expert.severity >= 0x00600000", &[]);
    let _ = std::fs::remove_file(&path);
    let _ = std::fs::remove_file(&bpath);

    assert!(bad.trim().is_empty(), "tshark flags frames:\n{bad}");
    assert!(!flagged.trim().is_empty(), "a bad checksum must be flagged");
    let prefix = std::net::Ipv6Addr::from((s.ipv6 >> 64) << 64).to_string();
    let ll = std::net::Ipv6Addr::from(router).to_string();
    assert!(!ra.trim().is_empty(), "no RA");
    for line in ra.lines() {
        let f: Vec<&str> = line.split('\t').collect();
        assert_eq!(f[0], ll, "RA from the BNG's link-local: {line}");
        assert!(f[0].starts_with("fe80::"));
        // Unsolicited to all-nodes, solicited unicast to the subscriber's link-local.
        assert!(
            f[1] == "ff02::1" || (f[1].starts_with("fe80::") && f[1] != ll),
            "{line}"
        );
        assert_eq!(f[2], prefix, "{line}");
        assert!(f[3] == "1" || f[3] == "True", "L flag: {line}");
        assert!(f[4] == "1" || f[4] == "True", "A flag: {line}");
        assert_eq!(f[5], "1492");
        assert_eq!(f[6], "2001:db8::53");
        assert_eq!(f[7], "1", "ICMPv6 checksum good: {line}");
    }
    assert!(
        rs.lines().count() >= 1 && rs.lines().all(|l| l.starts_with("fe80::")),
        "RS from the subscriber's link-local: {rs}"
    );
    assert_eq!(nd.trim(), ll, "NA for the BNG's link-local");
    assert_eq!(pong.trim(), format!("{ll}\t1\t1"), "echo reply");
    assert_eq!(ptb.trim(), "2001:db8:ffff::b\t2001:db8:ffff::1\t1492\t1");
    assert_eq!(
        te.trim(),
        format!("{ll}\t{}\t0\t1", std::net::Ipv6Addr::from(s.ipv6)),
        "Time Exceeded from the BNG's link-local"
    );
    let src = std::net::Ipv6Addr::from(s.ipv6).to_string();
    assert_eq!(
        up6.trim(),
        format!("{src}\t63\t1"),
        "upstream: our address, hop limit decremented, UDP checksum good"
    );
    // The encapsulated frame towards the subscriber: hop limit 63 after the BNG.
    assert_eq!(down6.trim(), format!("{src}\t63\t1"));
}

/// An IPv6 datagram (`next` 17 or 58, `l4` with its checksum filled here) from the
/// IPoE client's link-local address as an Ethernet frame with one C-VLAN tag.
fn ipoe6_frame(
    mac: [u8; 6],
    to: [u8; 6],
    src: std::net::Ipv6Addr,
    dst: std::net::Ipv6Addr,
    next: u8,
    l4: &[u8],
) -> Vec<u8> {
    use dataplane::proto::checksum::PseudoHeader;
    use dataplane::proto::{icmpv6, udp};
    let mut l4 = l4.to_vec();
    if next == 17 {
        udp::Packet::new_unchecked(&mut l4[..]).fill_checksum(&PseudoHeader::V6 { src, dst });
    } else {
        icmpv6::Packet::new_unchecked(&mut l4[..]).fill_checksum(&src, &dst);
    }
    let mut f = to.to_vec();
    f.extend_from_slice(&mac);
    f.extend_from_slice(&[0x81, 0, 0, 42, 0x86, 0xdd, 0x60, 0, 0, 0]);
    f.extend_from_slice(&(l4.len() as u16).to_be_bytes());
    f.extend_from_slice(&[next, 255]);
    f.extend_from_slice(&src.octets());
    f.extend_from_slice(&dst.octets());
    f.extend_from_slice(&l4);
    f
}

/// IPv6 for IPoE subscribers (`ipoe.dhcp6`) as Wireshark sees it: a Router
/// Solicitation and our Router Advertisement over Ethernet (M and O flags, Source
/// Link-Layer Address, no Prefix Information), a Neighbor Solicitation for our
/// link-local address and the Neighbor Advertisement with the Target Link-Layer
/// Address, a DHCPv6 Solicit with IA_NA, IA_PD and Rapid Commit and our Reply, all
/// on a C-VLAN: no frame malformed or flagged.
#[test]
fn ipv6_over_ipoe_dissects_cleanly() {
    use dataplane::proto::dhcp6::{opt, Duid, Ia, Message, MessageType, Repr};
    use std::net::Ipv6Addr;
    let cfg = Config {
        auth: AuthProto::Pap,
        auth_fallback: None,
        ra_managed: true,
        ra_other: true,
        dns6: vec!["2001:db8::53".parse().expect("addr")],
        ipoe: Some(vbng::config::IpoeSection {
            authorize: false,
            dhcp6: true,
            ..vbng::config::IpoeSection::default()
        }),
        dhcp6: Some(vbng::dhcp6::Dhcp6Config {
            address_pools: vec![vbng::dhcp6::AddrPoolConfig {
                name: "na".into(),
                first: "2001:db8:100::10".parse().expect("addr"),
                last: "2001:db8:100::1f".parse().expect("addr"),
            }],
            prefix_pools: vec![vbng::dhcp6::PrefixPoolConfig {
                name: "pd".into(),
                prefix: "2001:db8:8000::/40".parse().expect("prefix"),
                len: 56,
            }],
            dns: vec!["2001:db8::53".parse().expect("addr")],
            ..Default::default()
        }),
        ..Config::default()
    };
    let counters = SessionCounters::new(16);
    let mut cp =
        ControlPlane::new(&cfg, 16, counters, Rng::from_seed([4; 32])).expect("control plane");
    let mac = [2, 0x1e, 0, 0, 0, 6];
    let ll = vbng::dhcp6::wire::link_local(dataplane::proto::ethernet::MacAddr(mac));
    let ours = vbng::dhcp6::wire::link_local(dataplane::proto::ethernet::MacAddr(cp.mac()));
    let mut frames = Vec::new();
    let mut send = |cp: &mut ControlPlane, f: Vec<u8>, now: u64| {
        cp.input(0, &f, now);
        frames.push(f);
        frames.extend(cp.take_tx().into_iter().map(|(_, f)| f));
    };
    let all_routers: Ipv6Addr = "ff02::2".parse().expect("addr");
    let rs = ipoe6_frame(
        mac,
        [0x33, 0x33, 0, 0, 0, 2],
        ll,
        all_routers,
        58,
        &[133, 0, 0, 0, 0, 0, 0, 0],
    );
    send(&mut cp, rs, 10);
    let o = ours.octets();
    let sn = Ipv6Addr::new(
        0xff02,
        0,
        0,
        0,
        0,
        1,
        0xff00 | u16::from(o[13]),
        u16::from_be_bytes([o[14], o[15]]),
    );
    let mut ns = vec![135, 0, 0, 0, 0, 0, 0, 0];
    ns.extend_from_slice(&o);
    ns.extend_from_slice(&[1, 1]);
    ns.extend_from_slice(&mac);
    send(
        &mut cp,
        ipoe6_frame(
            mac,
            [0x33, 0x33, 0xff, o[13], o[14], o[15]],
            ll,
            sn,
            58,
            &ns,
        ),
        20,
    );
    let solicit = Message {
        client_id: Some(Duid::ll(mac)),
        ia_na: vec![Ia::new(1, 0, 0)],
        ia_pd: vec![Ia::new(2, 0, 0)],
        rapid_commit: true,
        oro: Some(vec![opt::DNS_SERVERS]),
        elapsed_time: Some(0),
        ..Message::new(MessageType::Solicit, 0x0077_8899)
    };
    let mut m = Vec::new();
    Repr::Message(solicit).emit(&mut m).expect("emit");
    let mut udp = vec![0x02, 0x22, 0x02, 0x23];
    udp.extend_from_slice(&((8 + m.len()) as u16).to_be_bytes());
    udp.extend_from_slice(&[0, 0]);
    udp.extend_from_slice(&m);
    let servers: Ipv6Addr = "ff02::1:2".parse().expect("addr");
    send(
        &mut cp,
        ipoe6_frame(mac, [0x33, 0x33, 0, 1, 0, 2], ll, servers, 17, &udp),
        30,
    );
    assert_eq!(cp.session_count(), 1, "an IPv6-only IPoE session");

    let path = std::env::temp_dir().join(format!("vbng-ipoe6-{}.pcap", std::process::id()));
    std::fs::write(&path, pcap(&frames)).expect("write pcap");
    let bad = tshark(
        &path,
        "_ws.malformed || _ws.expert.severity >= 0x00600000",
        &[],
    );
    let ra = tshark(
        &path,
        "vlan && icmpv6.type == 134",
        &[
            "ipv6.src",
            "icmpv6.nd.ra.flag.m",
            "icmpv6.nd.ra.flag.o",
            "icmpv6.opt.linkaddr",
            "icmpv6.opt.prefix",
            "icmpv6.checksum.status",
        ],
    );
    let na = tshark(
        &path,
        "vlan && icmpv6.type == 136",
        &["icmpv6.nd.na.target_address", "icmpv6.opt.linkaddr"],
    );
    let reply = tshark(
        &path,
        "vlan && dhcpv6.msgtype == 7",
        &[
            "ipv6.src",
            "dhcpv6.iaaddr.ip",
            "dhcpv6.iaprefix.pref_addr",
            "udp.checksum.status",
        ],
    );
    let _ = std::fs::remove_file(&path);
    assert!(bad.trim().is_empty(), "tshark flags frames:\n{bad}");
    let our_mac = cp.mac().map(|b| format!("{b:02x}")).join(":");
    // The solicited RA, and the one sent when the binding was made.
    assert_eq!(ra.trim().lines().count(), 2, "{ra}");
    let ra: Vec<&str> = ra.lines().next().unwrap_or("").split('\t').collect();
    assert_eq!(ra.len(), 6, "{ra:?}");
    assert_eq!(ra[0], ours.to_string());
    assert_eq!((ra[1], ra[2]), ("1", "1"), "M and O flags: {ra:?}");
    assert_eq!(ra[3], our_mac, "Source Link-Layer Address: {ra:?}");
    assert_eq!(ra[4], "", "no Prefix Information on IPoE: {ra:?}");
    assert_eq!(ra[5], "1", "checksum good: {ra:?}");
    assert_eq!(
        na.trim(),
        format!("{ours}\t{our_mac}"),
        "NA with the Target Link-Layer Address"
    );
    let reply: Vec<&str> = reply.trim().split('\t').collect();
    assert_eq!(reply[0], ours.to_string(), "{reply:?}");
    assert!(reply[1].starts_with("2001:db8:100::1"), "{reply:?}");
    assert!(reply[2].starts_with("2001:db8:8"), "{reply:?}");
    assert_eq!(reply[3], "1", "UDP checksum good: {reply:?}");
}
