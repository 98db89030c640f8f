//! Tests of the IPv4 fast path.

use super::*;
use dataplane::buf::Pool;
use dataplane::proto::checksum;
use dataplane::proto::ethernet::Vlans;

fn ipv4(src: u32, dst: u32, ttl: u8, payload: usize) -> Vec<u8> {
    let len = 20 + payload;
    let mut v = alloc::vec![
        0x45,
        0,
        (len >> 8) as u8,
        len as u8,
        0,
        0,
        0,
        0,
        ttl,
        17,
        0,
        0
    ];
    v.extend_from_slice(&src.to_be_bytes());
    v.extend_from_slice(&dst.to_be_bytes());
    let c = checksum::internet(&v);
    v[10..12].copy_from_slice(&c.to_be_bytes());
    v.extend(core::iter::repeat_n(0xab, payload));
    v
}

fn setup(rate: (u64, u64)) -> (FastPath, AccessKey, Arc<SessionCounters>) {
    let q = Arc::new(ArrayQueue::new(16));
    let c = SessionCounters::new(8);
    let cfg = FastPathConfig {
        access_port: 0,
        core_port: 1,
        access_mac: [2, 0, 0, 0, 0, 0xa],
        core_mac: [2, 0, 0, 0, 0, 0xc],
        core_next_hop: [2, 0, 0, 0, 0, 0xd],
        max_sessions: 8,
    };
    let mut fp = FastPath::new(cfg, q, c.clone());
    let key = AccessKey {
        port: 0,
        mac: [2, 1, 1, 1, 1, 1],
        vlans: Vlans {
            svlan: 10,
            cvlan: 20,
        },
    };
    fp.apply(
        FibUpdate::Add {
            idx: 3,
            key,
            sid: 0x55,
            ip: 0x6440_0005,
            rate,
            mtu: 1492,
        },
        0,
    );
    (fp, key, c)
}

fn up_frame(key: &AccessKey, sid: u16, ip: &[u8]) -> Vec<u8> {
    let mut f = alloc::vec![2, 0, 0, 0, 0, 0xa];
    f.extend_from_slice(&key.mac);
    f.extend_from_slice(&[
        0x88,
        0xa8,
        0,
        10,
        0x81,
        0,
        0,
        20,
        0x88,
        0x64,
        0x11,
        0,
        (sid >> 8) as u8,
        sid as u8,
    ]);
    f.extend_from_slice(&((ip.len() + 2) as u16).to_be_bytes());
    f.extend_from_slice(&[0, 0x21]);
    f.extend_from_slice(ip);
    f
}

fn run(fp: &mut FastPath, port: u16, frames: &[Vec<u8>], now_ns: u64) -> (Out, NodeStats) {
    let pool = Pool::new(64).unwrap();
    let mut out = Out::new(2, pool.cache());
    out.now_ns = now_ns;
    let mut node = NodeStats::new("bng-fastpath", ERRORS);
    let mut b = Batch::new();
    for f in frames {
        let mut p = out.cache.alloc().unwrap();
        p.copy_from(f).unwrap();
        p.meta.port = port;
        b.push(p).unwrap();
    }
    fp.process(&mut b, &mut node, &mut out);
    (out, node)
}

#[test]
fn upstream_decap_antispoof_and_punt() {
    let (mut fp, key, c) = setup((0, 0));
    let good = ipv4(0x6440_0005, 0x0808_0808, 64, 10);
    let spoof = ipv4(0x6440_0006, 0x0808_0808, 64, 10);
    let mut padded = up_frame(&key, 0x55, &good);
    padded.extend_from_slice(&[0; 6]);
    let mut lcp = up_frame(&key, 0x55, &good);
    lcp[28] = 0xc0;
    lcp[29] = 0x21;
    let frames = alloc::vec![
        padded,
        up_frame(&key, 0x55, &spoof),
        up_frame(&key, 0x56, &good),
        lcp,
        alloc::vec![1, 2, 3]
    ];
    let (out, node) = run(&mut fp, 0, &frames, 0);
    assert_eq!(out.ports[1].len(), 1);
    let p = out.ports[1].iter().next().unwrap();
    let d = p.data();
    assert_eq!(&d[0..6], &[2, 0, 0, 0, 0, 0xd]);
    assert_eq!(&d[12..14], &[8, 0]);
    assert_eq!(d.len(), 14 + good.len());
    assert_eq!(d[14 + 8], 63);
    assert!(checksum::verify(&d[14..34]));
    assert_eq!(node.drops[E_SPOOF as usize], 1);
    assert_eq!(node.drops[E_NO_SESSION as usize], 1);
    assert_eq!(node.drops[E_MALFORMED as usize], 1);
    assert_eq!(out.punt.len(), 1);
    assert_eq!(c.get(3), (good.len() as u64, 1, 0, 0));
}

#[test]
fn downstream_encap_and_policer() {
    let (mut fp, key, _) = setup((0, 8_000_000));
    let ip = ipv4(0x0808_0808, 0x6440_0005, 64, 1000);
    let mut f = alloc::vec![2, 0, 0, 0, 0, 0xc, 2, 0, 0, 0, 0, 0xd, 8, 0];
    f.extend_from_slice(&ip);
    let mut other = f.clone();
    other[14 + 19] = 9;
    // 64 KiB burst: 64 packets of 1020 bytes fit; the other 36 are policed.
    let frames: Vec<Vec<u8>> = (0..100)
        .map(|_| f.clone())
        .chain(core::iter::once(other))
        .collect();
    let (out, node) = run(&mut fp, 1, &frames[..64], 0);
    assert_eq!(out.ports[0].len(), 64);
    let d = out.ports[0].iter().next().unwrap().data();
    assert_eq!(&d[0..6], &key.mac);
    assert_eq!(&d[12..22], &[0x88, 0xa8, 0, 10, 0x81, 0, 0, 20, 0x88, 0x64]);
    assert_eq!(
        &d[22..30],
        &[
            0x11,
            0,
            0,
            0x55,
            ((ip.len() + 2) >> 8) as u8,
            (ip.len() + 2) as u8,
            0,
            0x21
        ]
    );
    assert!(checksum::verify(&d[30..50]));
    assert_eq!(node.drops.iter().sum::<u64>(), 0);
    let (out, node) = run(&mut fp, 1, &frames[64..], 0);
    assert_eq!(out.ports[0].len(), 0);
    assert_eq!(node.drops[E_POLICE_DOWN as usize], 36);
    assert_eq!(node.drops[E_NO_ROUTE as usize], 1);
    // A second later, 1 MB of tokens arrived (capped to the burst).
    let (out, _) = run(&mut fp, 1, &frames[..10], 1_000_000_000);
    assert_eq!(out.ports[0].len(), 10);
}

// ---- core link, ICMP, MSS ----

const GW: [u8; 6] = [2, 0, 0, 0, 0, 0xd];
const CORE_IP: [u8; 4] = [198, 51, 100, 1];
const SUB_IP: u32 = 0x6440_0005;

fn setup_local(mtu: u16, mss: MssClamp, burst: u64) -> (FastPath, AccessKey, Arc<CoreLink>) {
    let (fp, key, _) = setup((0, 0));
    let link = Arc::new(CoreLink::new(
        Ipv4Addr::from(CORE_IP),
        24,
        Some(Ipv4Addr::new(198, 51, 100, 254)),
    ));
    let mut fp = fp
        .with_local(LocalConfig {
            gateway: Some(Ipv4Addr::new(100, 64, 0, 1)),
            mss,
            icmp_rate: 0,
            icmp_burst: burst,
        })
        .with_core_link(link.clone());
    fp.apply(
        FibUpdate::Add {
            idx: 3,
            key,
            sid: 0x55,
            ip: SUB_IP,
            rate: (0, 0),
            mtu,
        },
        0,
    );
    (fp, key, link)
}

fn arp(op: u16, sha: [u8; 6], spa: [u8; 4], tpa: [u8; 4]) -> Vec<u8> {
    let mut f = alloc::vec![0xff; 6];
    f.extend_from_slice(&sha);
    f.extend_from_slice(&[8, 6, 0, 1, 8, 0, 6, 4]);
    f.extend_from_slice(&op.to_be_bytes());
    f.extend_from_slice(&sha);
    f.extend_from_slice(&spa);
    f.extend_from_slice(&[0; 6]);
    f.extend_from_slice(&tpa);
    f.extend_from_slice(&[0; 18]); // Ethernet padding to 60 bytes
    f
}

fn core_frame(ip: &[u8]) -> Vec<u8> {
    let mut f = alloc::vec![2, 0, 0, 0, 0, 0xc, 2, 0, 0, 0, 0, 0xd, 8, 0];
    f.extend_from_slice(ip);
    f
}

fn gateway_learned(fp: &mut FastPath) {
    let (_, node) = run(fp, 1, &[arp(2, GW, [198, 51, 100, 254], CORE_IP)], 1);
    assert_eq!(node.drops[E_ARP_CONSUMED as usize], 1);
}

fn frames(b: &Batch) -> Vec<Vec<u8>> {
    b.iter().map(|p| p.data().to_vec()).collect()
}

/// An IPv4 TCP segment with the MSS option `mss` and TCP `flags`, checksums valid.
fn tcp_syn(src: u32, dst: u32, flags: u8, mss: u16) -> Vec<u8> {
    let mut v = ipv4(src, dst, 64, 24);
    v[9] = 6;
    v[10] = 0;
    v[11] = 0;
    let c = checksum::internet(&v[..20]);
    v[10..12].copy_from_slice(&c.to_be_bytes());
    let t = &mut v[20..];
    t.copy_from_slice(&[0; 24]);
    t[0..4].copy_from_slice(&[0x30, 0x39, 0, 80]);
    t[12] = 6 << 4;
    t[13] = flags;
    t[14] = 0xff;
    t[20..24].copy_from_slice(&[2, 4, (mss >> 8) as u8, mss as u8]);
    let ph = checksum::PseudoHeader::V4 {
        src: Ipv4Addr::from(src),
        dst: Ipv4Addr::from(dst),
    };
    dataplane::proto::tcp::Packet::new_checked(&mut v[20..])
        .unwrap()
        .fill_checksum(&ph);
    v
}

fn mss_and_csum(ip: &[u8]) -> (u16, bool) {
    let v = dataplane::proto::ipv4::Packet::new_checked(ip).unwrap();
    let ph = checksum::PseudoHeader::V4 {
        src: v.src_addr(),
        dst: v.dst_addr(),
    };
    let t = dataplane::proto::tcp::Packet::new_checked(v.payload()).unwrap();
    (t.mss().unwrap().unwrap().0, t.verify_checksum(&ph))
}

#[test]
fn core_arp_reply_resolution_and_refresh() {
    let (mut fp, key, link) = setup_local(1492, MssClamp::Auto, 10);
    // Start: the tick asks for the gateway.
    let pool = Pool::new(8).unwrap();
    let mut out = Out::new(2, pool.cache());
    out.now_ns = 1;
    fp.tick(&mut out);
    let req = frames(&out.ports[1]);
    assert_eq!(req.len(), 1);
    assert_eq!(&req[0][0..6], &[0xff; 6]);
    assert_eq!(&req[0][12..14], &[8, 6]);
    assert_eq!(&req[0][20..22], &[0, 1]);
    assert_eq!(&req[0][28..32], &CORE_IP);
    assert_eq!(&req[0][38..42], &[198, 51, 100, 254]);
    out.ports[1].free_all(&mut out.cache);
    // Unresolved: upstream packets are counted drops (no request: one is out).
    let up = up_frame(&key, 0x55, &ipv4(SUB_IP, 0x0808_0808, 64, 10));
    let (out, node) = run(&mut fp, 0, core::slice::from_ref(&up), 2);
    assert_eq!(node.drops[E_UNRESOLVED as usize], 1);
    assert_eq!(out.ports[1].len(), 0);
    // After the retry interval the next packet triggers a request.
    let (out, node) = run(&mut fp, 0, core::slice::from_ref(&up), 2_000_000_000);
    assert_eq!(node.drops[E_UNRESOLVED as usize], 1);
    assert_eq!(frames(&out.ports[1])[0][12..14], [8, 6]);
    // A request for core_ip is answered in place; other ARP is consumed.
    let host = [2, 7, 7, 7, 7, 7];
    let (out, node) = run(
        &mut fp,
        1,
        &[
            arp(1, host, [198, 51, 100, 9], CORE_IP),
            arp(1, host, [198, 51, 100, 9], [198, 51, 100, 2]),
            arp(1, host, [198, 51, 100, 9], CORE_IP)[..30].to_vec(),
        ],
        3,
    );
    let r = frames(&out.ports[1]);
    assert_eq!(r.len(), 1);
    assert_eq!(&r[0][0..6], &host);
    assert_eq!(&r[0][6..12], &[2, 0, 0, 0, 0, 0xc]);
    assert_eq!(&r[0][20..22], &[0, 2]);
    assert_eq!(&r[0][22..28], &[2, 0, 0, 0, 0, 0xc]);
    assert_eq!(&r[0][28..32], &CORE_IP);
    assert_eq!(node.drops[E_ARP_NOT_US as usize], 1);
    assert_eq!(node.drops[E_ARP_MALFORMED as usize], 1);
    assert_eq!(out.punt.len(), 0, "ARP never reaches the control plane");
    // The gateway answers: forwarding uses its MAC.
    gateway_learned(&mut fp);
    assert_eq!(link.gateway_mac(), Some(GW));
    let (out, node) = run(&mut fp, 0, core::slice::from_ref(&up), 4);
    assert_eq!(node.dropped(), 0);
    assert_eq!(&frames(&out.ports[1])[0][0..6], &GW);
    // Before it ages out (3/4 of 300 s), forwarding asks for a refresh.
    let (out, _) = run(&mut fp, 0, &[up], 240_000_000_000);
    let f = frames(&out.ports[1]);
    assert_eq!(f.len(), 2);
    assert!(f.iter().any(|x| x[12..14] == [8, 6]));
    assert!(f.iter().any(|x| x[0..6] == GW && x[12..14] == [8, 0]));
}

#[test]
fn static_next_hop_without_core_link() {
    let (mut fp, key, _) = setup((0, 0));
    let up = up_frame(&key, 0x55, &ipv4(SUB_IP, 0x0808_0808, 64, 10));
    let (out, _) = run(&mut fp, 0, &[up], 0);
    assert_eq!(&frames(&out.ports[1])[0][0..6], &GW);
    let (out, node) = run(&mut fp, 1, &[arp(1, GW, [198, 51, 100, 254], CORE_IP)], 0);
    assert_eq!(node.drops[E_ARP_IGNORED as usize], 1);
    assert_eq!(out.punt.len() + out.ports[1].len(), 0);
    // No gateway address: TTL expiry stays a silent counted drop.
    let ttl1 = up_frame(&key, 0x55, &ipv4(SUB_IP, 0x0808_0808, 1, 10));
    let (out, node) = run(&mut fp, 0, &[ttl1], 0);
    assert_eq!(node.drops[E_TTL as usize], 1);
    assert_eq!(out.ports[0].len(), 0);
    assert_eq!(fp.stats().icmp_no_source.load(Ordering::Relaxed), 1);
}

#[test]
fn time_exceeded_both_directions_rate_limited() {
    let (mut fp, key, _) = setup_local(1492, MssClamp::Auto, 3);
    gateway_learned(&mut fp);
    let off = ipv4(SUB_IP, 0x0808_0808, 1, 100);
    let (out, node) = run(&mut fp, 0, &[up_frame(&key, 0x55, &off)], 5);
    assert_eq!(node.drops[E_TTL as usize], 1);
    let e = frames(&out.ports[0]);
    assert_eq!(e.len(), 1);
    let e = &e[0];
    // Inside the subscriber's session: QinQ, PPPoE sid 0x55, PPP IPv4.
    assert_eq!(&e[0..6], &key.mac);
    assert_eq!(&e[12..14], &[0x88, 0xa8]);
    assert_eq!(&e[20..22], &[0x88, 0x64]);
    assert_eq!(u16::from_be_bytes([e[24], e[25]]), 0x55);
    assert_eq!(&e[28..30], &[0, 0x21]);
    let ip = &e[30..];
    assert_eq!(
        usize::from(u16::from_be_bytes([e[26], e[27]])),
        ip.len() + 2
    );
    assert!(checksum::verify(&ip[..20]));
    assert_eq!(&ip[12..16], &[100, 64, 0, 1]);
    assert_eq!(&ip[16..20], &SUB_IP.to_be_bytes());
    assert_eq!((ip[20], ip[21]), (11, 0));
    assert!(checksum::verify(&ip[20..]));
    assert_eq!(&ip[28..48], &off[..20], "quotes the offending header");
    // Downstream: to the previous hop on the core, from core_ip.
    let down = core_frame(&ipv4(0x0808_0808, SUB_IP, 1, 100));
    let (out, node) = run(&mut fp, 1, core::slice::from_ref(&down), 6);
    assert_eq!(node.drops[E_TTL as usize], 1);
    let e = &frames(&out.ports[1])[0];
    assert_eq!(&e[0..6], &GW);
    assert_eq!(&e[6..12], &[2, 0, 0, 0, 0, 0xc]);
    assert_eq!(&e[26..30], &CORE_IP);
    assert_eq!(&e[30..34], &[8, 8, 8, 8]);
    assert_eq!((e[34], e[35]), (11, 0));
    assert!(checksum::verify(&e[34..]));
    // Burst of 3 with no refill: the third one is the last, the rest suppressed.
    let (out, node) = run(&mut fp, 1, &[down.clone(), down.clone(), down], 7);
    assert_eq!(node.drops[E_TTL as usize], 3);
    assert_eq!(out.ports[1].len(), 1);
    let st = fp.stats();
    assert_eq!(st.icmp_sent.load(Ordering::Relaxed), 3);
    assert_eq!(st.icmp_rate_limited.load(Ordering::Relaxed), 2);
}

#[test]
fn fragmentation_needed_carries_the_session_mtu() {
    let (mut fp, _, _) = setup_local(1480, MssClamp::Auto, 10);
    gateway_learned(&mut fp);
    let mut df = ipv4(0x0808_0808, SUB_IP, 64, 1480);
    df[6] = 0x40;
    df[10] = 0;
    df[11] = 0;
    let c = checksum::internet(&df[..20]);
    df[10..12].copy_from_slice(&c.to_be_bytes());
    let nodf = ipv4(0x0808_0808, SUB_IP, 64, 1480);
    let fits = ipv4(0x0808_0808, SUB_IP, 64, 1460);
    let (out, node) = run(
        &mut fp,
        1,
        &[core_frame(&df), core_frame(&nodf), core_frame(&fits)],
        5,
    );
    assert_eq!(node.drops[E_TOO_BIG as usize], 1, "only the DF datagram");
    let down = frames(&out.ports[0]);
    assert_eq!(
        down.len(),
        3,
        "two fragments of the DF-clear one, then the one that fits"
    );
    // The fragments (RFC 791 §3.2): PPPoE length = PPP protocol + datagram, IP
    // total length within the session MTU, MF on the first only, offsets 0 and
    // 1456 bytes, valid header checksums, TTL decremented.
    let mut payload = 0;
    for (i, f) in down[..2].iter().enumerate() {
        let ip = &f[30..];
        let tl = usize::from(u16::from_be_bytes([ip[2], ip[3]]));
        assert_eq!(tl, f.len() - 30);
        assert!(tl <= 1480);
        assert_eq!(usize::from(u16::from_be_bytes([f[26], f[27]])), tl + 2);
        assert_eq!(&f[28..30], &[0x00, 0x21]);
        let fo = u16::from_be_bytes([ip[6], ip[7]]);
        assert_eq!(fo & 0x2000 != 0, i == 0, "MF");
        assert_eq!(usize::from(fo & 0x1fff) * 8, payload);
        assert_eq!(ip[8], 63);
        assert!(checksum::verify(&ip[..20]));
        payload += tl - 20;
    }
    assert_eq!(payload, 1480);
    assert_eq!(fp.stats.fragments_sent.load(Ordering::Relaxed), 2);
    let e = frames(&out.ports[1]);
    assert_eq!(e.len(), 1, "only the DF datagram gets an error");
    let e = &e[0];
    assert_eq!((e[34], e[35]), (3, 4));
    assert_eq!(u16::from_be_bytes([e[40], e[41]]), 1480);
    assert!(checksum::verify(&e[34..]));
}

#[test]
fn echo_to_gateway_and_core_ip() {
    let (mut fp, key, _) = setup_local(1492, MssClamp::Auto, 10);
    let mut icmp = alloc::vec![8, 0, 0, 0, 0x12, 0x34, 0, 1, 9, 9, 9, 9];
    let c = checksum::internet(&icmp);
    icmp[2..4].copy_from_slice(&c.to_be_bytes());
    let mut ping = ipv4(SUB_IP, 0x6440_0001, 64, icmp.len());
    ping[9] = 1;
    ping[10] = 0;
    ping[11] = 0;
    let c = checksum::internet(&ping[..20]);
    ping[10..12].copy_from_slice(&c.to_be_bytes());
    ping[20..].copy_from_slice(&icmp);
    let udp_to_gw = ipv4(SUB_IP, 0x6440_0001, 64, 8);
    let (out, node) = run(
        &mut fp,
        0,
        &[
            up_frame(&key, 0x55, &ping),
            up_frame(&key, 0x55, &udp_to_gw),
        ],
        5,
    );
    assert_eq!(node.drops[E_LOCAL as usize], 1);
    let r = &frames(&out.ports[0])[0];
    assert_eq!(&r[0..6], &key.mac);
    assert_eq!(&r[6..12], &[2, 0, 0, 0, 0, 0xa]);
    assert_eq!(u16::from_be_bytes([r[24], r[25]]), 0x55);
    let ip = &r[30..];
    assert_eq!(&ip[12..16], &[100, 64, 0, 1]);
    assert_eq!(&ip[16..20], &SUB_IP.to_be_bytes());
    assert_eq!(ip[20], 0);
    assert!(checksum::verify(&ip[..20]) && checksum::verify(&ip[20..]));
    // From the core to core_ip.
    let mut p2 = ping.clone();
    p2[12..16].copy_from_slice(&[8, 8, 8, 8]);
    p2[16..20].copy_from_slice(&CORE_IP);
    p2[10] = 0;
    p2[11] = 0;
    let c = checksum::internet(&p2[..20]);
    p2[10..12].copy_from_slice(&c.to_be_bytes());
    let (out, _) = run(&mut fp, 1, &[core_frame(&p2)], 5);
    let r = &frames(&out.ports[1])[0];
    assert_eq!(&r[0..6], &GW);
    assert_eq!(&r[6..12], &[2, 0, 0, 0, 0, 0xc]);
    assert_eq!(&r[26..30], &CORE_IP);
    assert_eq!(r[34], 0);
    assert_eq!(fp.stats().echo_replies.load(Ordering::Relaxed), 2);
}

#[test]
fn mss_clamped_both_directions_per_session_mtu() {
    for (mtu, mode, want) in [
        (1492, MssClamp::Auto, 1452),
        (1500, MssClamp::Auto, 1460),
        (1492, MssClamp::Fixed(1400), 1400),
        (1492, MssClamp::Off, 1460),
    ] {
        let (mut fp, key, _) = setup_local(mtu, mode, 10);
        gateway_learned(&mut fp);
        let syn = tcp_syn(SUB_IP, 0x0808_0808, 0x02, 1460);
        let (out, _) = run(&mut fp, 0, &[up_frame(&key, 0x55, &syn)], 5);
        let f = &frames(&out.ports[1])[0];
        assert_eq!(mss_and_csum(&f[14..]), (want, true), "{mtu} {mode:?} up");
        let synack = tcp_syn(0x0808_0808, SUB_IP, 0x12, 1460);
        let (out, _) = run(&mut fp, 1, &[core_frame(&synack)], 5);
        let f = &frames(&out.ports[0])[0];
        assert_eq!(mss_and_csum(&f[30..]), (want, true), "{mtu} {mode:?} down");
        // Not a SYN: untouched.
        let ack = tcp_syn(SUB_IP, 0x0808_0808, 0x10, 1460);
        let (out, _) = run(&mut fp, 0, &[up_frame(&key, 0x55, &ack)], 5);
        let f = &frames(&out.ports[1])[0];
        assert_eq!(mss_and_csum(&f[14..]), (1460, true));
    }
}

/// An IPoE frame (RFC 894) from `key`'s MAC with its S-VLAN 10 and C-VLAN 20.
fn ipoe_frame(key: &AccessKey, ethertype: [u8; 2], payload: &[u8]) -> Vec<u8> {
    let mut f = alloc::vec![2, 0, 0, 0, 0, 0xa];
    f.extend_from_slice(&key.mac);
    f.extend_from_slice(&[0x88, 0xa8, 0, 10, 0x81, 0, 0, 20]);
    f.extend_from_slice(&ethertype);
    f.extend_from_slice(payload);
    f
}

/// Issue 15 item 5: IPoE sessions (session id 0) on the same node as PPPoE: session
/// lookup by MAC and VLANs, anti-spoofing, DHCP and ARP to the control plane, and
/// downstream Ethernet + VLAN framing without PPPoE.
#[test]
fn ipoe_upstream_downstream_dhcp_and_arp() {
    let (fp, key, c) = setup((0, 0));
    let mut fp = fp.with_ipoe(Some(Ipv4Addr::new(100, 65, 0, 1)));
    let ipoe = AccessKey {
        mac: [2, 7, 7, 7, 7, 7],
        ..key
    };
    fp.apply(
        FibUpdate::Add {
            idx: 4,
            key: ipoe,
            sid: 0,
            ip: 0x6440_0007,
            rate: (0, 0),
            mtu: 1500,
        },
        0,
    );
    let good = ipv4(0x6440_0007, 0x0808_0808, 64, 10);
    let mut padded = ipoe_frame(&ipoe, [8, 0], &good);
    padded.extend_from_slice(&[0; 12]);
    let spoof = ipoe_frame(&ipoe, [8, 0], &ipv4(0x6440_0005, 0x0808_0808, 64, 10));
    let stranger = AccessKey {
        mac: [2, 9, 9, 9, 9, 9],
        ..key
    };
    let unknown = ipoe_frame(&stranger, [8, 0], &good);
    // A DHCPDISCOVER from a client without a session: UDP 68 -> 67.
    let mut disc = ipv4(0, 0xffff_ffff, 64, 8 + 240);
    disc[9] = 17;
    disc[20..24].copy_from_slice(&[0, 68, 0, 67]);
    let dhcp = ipoe_frame(&stranger, [8, 0], &disc);
    let arp = ipoe_frame(&ipoe, [8, 6], &[0; 28]);
    // PPPoE still works on the same port.
    let pppoe = up_frame(&key, 0x55, &ipv4(0x6440_0005, 0x0808_0808, 64, 10));
    let mut cut = ipoe_frame(&ipoe, [8, 0], &good);
    cut.truncate(22 + 19);
    let (out, node) = run(
        &mut fp,
        0,
        &[padded, spoof, unknown, dhcp, arp, pppoe, cut],
        5,
    );
    assert_eq!(out.punt.len(), 2, "DHCP and ARP go to the control plane");
    assert_eq!(node.drops[E_SPOOF as usize], 1);
    assert_eq!(node.drops[E_NO_SESSION as usize], 1);
    assert_eq!(node.drops[E_MALFORMED as usize], 1);
    let up = frames(&out.ports[1]);
    assert_eq!(up.len(), 2, "the IPoE and the PPPoE datagram");
    let f = &up[0];
    assert_eq!(&f[0..6], &[2, 0, 0, 0, 0, 0xd]);
    assert_eq!(&f[12..14], &[8, 0]);
    assert_eq!(f.len(), 14 + good.len(), "tags and padding gone");
    assert_eq!(f[14 + 8], 63);
    assert!(checksum::verify(&f[14..34]));
    assert_eq!(c.get(4).0, good.len() as u64);
    // Downstream: Ethernet to the subscriber with its tags, no PPPoE.
    let down = ipv4(0x0808_0808, 0x6440_0007, 64, 10);
    let (out, _) = run(&mut fp, 1, &[core_frame(&down)], 6);
    let d = frames(&out.ports[0]);
    assert_eq!(d.len(), 1);
    assert_eq!(&d[0][0..6], &ipoe.mac);
    assert_eq!(&d[0][6..12], &[2, 0, 0, 0, 0, 0xa]);
    assert_eq!(&d[0][12..22], &[0x88, 0xa8, 0, 10, 0x81, 0, 0, 20, 8, 0]);
    assert_eq!(d[0].len(), 22 + down.len());
    assert_eq!(d[0][22 + 8], 63);
    // Without IPoE, plain IPv4 on the access port is not ours.
    let (mut plain, _, _) = setup((0, 0));
    let (_, node) = run(&mut plain, 0, &[ipoe_frame(&ipoe, [8, 0], &good)], 7);
    assert_eq!(node.drops[E_ETHERTYPE as usize], 1);
}

/// Two lines with the same PPPoE session id (RFC 2516 makes an id unique per
/// peer MAC, not per BNG): the session-id index holds one of them, the hash table
/// both; each line's traffic reaches its own session whichever is indexed, also
/// after the indexed one goes away, and a frame from a line with no session is
/// dropped.
#[test]
fn same_session_id_on_two_lines() {
    let (mut fp, key, c) = setup((0, 0));
    let other = AccessKey {
        mac: [2, 1, 1, 1, 1, 2],
        ..key
    };
    fp.apply(
        FibUpdate::Add {
            idx: 5,
            key: other,
            sid: 0x55,
            ip: 0x6440_0007,
            rate: (0, 0),
            mtu: 1492,
        },
        0,
    );
    let a = ipv4(0x6440_0005, 0x0808_0808, 64, 10);
    let b = ipv4(0x6440_0007, 0x0808_0808, 64, 10);
    let stranger = AccessKey {
        mac: [2, 1, 1, 1, 1, 3],
        ..key
    };
    let frames = alloc::vec![
        up_frame(&key, 0x55, &a),
        up_frame(&other, 0x55, &b),
        // line b's address from line a: anti-spoofing still applies
        up_frame(&key, 0x55, &b),
        up_frame(&stranger, 0x55, &a),
    ];
    let (out, node) = run(&mut fp, 0, &frames, 0);
    assert_eq!(out.ports[1].len(), 2);
    assert_eq!(node.drops[E_SPOOF as usize], 1);
    assert_eq!(node.drops[E_NO_SESSION as usize], 1);
    assert_eq!(c.get(3).1, 1);
    assert_eq!(c.get(5).1, 1);
    // the indexed session (the first one added) goes; the other still forwards
    fp.apply(
        FibUpdate::Remove {
            idx: 3,
            key,
            sid: 0x55,
            ip: 0x6440_0005,
        },
        0,
    );
    let frames = alloc::vec![up_frame(&key, 0x55, &a), up_frame(&other, 0x55, &b)];
    let (out, node) = run(&mut fp, 0, &frames, 0);
    assert_eq!(out.ports[1].len(), 1);
    assert_eq!(node.drops[E_NO_SESSION as usize], 1);
    assert_eq!(c.get(5).1, 2);
    // a new session on slot 3 with the same id is found again
    fp.apply(
        FibUpdate::Add {
            idx: 3,
            key,
            sid: 0x55,
            ip: 0x6440_0005,
            rate: (0, 0),
            mtu: 1492,
        },
        0,
    );
    let frames = alloc::vec![up_frame(&key, 0x55, &a), up_frame(&other, 0x55, &b)];
    let (out, _) = run(&mut fp, 0, &frames, 0);
    assert_eq!(out.ports[1].len(), 2);
}

/// Two subscribers whose addresses share their low 16 bits (two pools): the
/// downstream index holds the later one, the hash table both; each address's
/// traffic reaches its own session, also after the indexed one's address goes.
#[test]
fn downstream_addresses_sharing_the_index_entry() {
    let (mut fp, key, c) = setup((0, 0));
    let other = AccessKey {
        mac: [2, 1, 1, 1, 1, 2],
        ..key
    };
    // 100.64.0.5 (slot 3, from `setup`) and 10.99.0.5 (slot 5)
    fp.apply(
        FibUpdate::Add {
            idx: 5,
            key: other,
            sid: 0x66,
            ip: 0x0a63_0005,
            rate: (0, 0),
            mtu: 1492,
        },
        0,
    );
    let down = |dst: u32| {
        let mut f = alloc::vec![2, 0, 0, 0, 0, 0xc, 2, 0, 0, 0, 0, 0xd, 8, 0];
        f.extend_from_slice(&ipv4(0x0808_0808, dst, 64, 10));
        f
    };
    let frames = alloc::vec![down(0x6440_0005), down(0x0a63_0005), down(0x0a64_0005)];
    let (out, node) = run(&mut fp, 1, &frames, 0);
    assert_eq!(out.ports[0].len(), 2);
    assert_eq!(node.drops[E_NO_ROUTE as usize], 1);
    assert_eq!(c.get(3).3, 1);
    assert_eq!(c.get(5).3, 1);
    // the indexed (later) session loses its address; the other still gets traffic
    fp.apply(
        FibUpdate::Down4 {
            idx: 5,
            ip: 0x0a63_0005,
        },
        0,
    );
    let (out, node) = run(&mut fp, 1, &[down(0x6440_0005), down(0x0a63_0005)], 0);
    assert_eq!(out.ports[0].len(), 1);
    assert_eq!(node.drops[E_NO_ROUTE as usize], 1);
    assert_eq!(c.get(3).3, 2);
}

/// A downstream frame from the core to `dst` (untagged IPv4).
fn down_frame(dst: u32) -> Vec<u8> {
    let mut f = alloc::vec![2, 0, 0, 0, 0, 0xc, 2, 0, 0, 0, 0, 0xd, 0x08, 0x00];
    f.extend_from_slice(&ipv4(0x0808_0808, dst, 64, 10));
    f
}

/// The hint of `frame` received on `port`.
fn hint_of(fp: &FastPath, cache: &mut dataplane::buf::PoolCache, frame: &[u8], port: u16) -> u32 {
    let mut p = cache.alloc().unwrap();
    p.copy_from(frame).unwrap();
    p.meta.port = port;
    let h = fp.slot_hint(&p);
    cache.free(p);
    h
}

#[test]
fn slot_hints_name_the_session_a_frame_will_need() {
    let (fp, key, _) = setup((0, 0));
    let pool = Pool::new(16).unwrap();
    let mut c = pool.cache();
    let ip = ipv4(0x6440_0005, 0x0808_0808, 64, 10);
    // PPPoE upstream by session id: the first line; downstream by address: both.
    assert_eq!(hint_of(&fp, &mut c, &up_frame(&key, 0x55, &ip), 0), 3);
    assert_eq!(
        hint_of(&fp, &mut c, &down_frame(0x6440_0005), 1),
        3 | HINT_DOWN
    );
    // Nothing to fetch: an unknown session id or address, a frame on the other
    // port, a discovery frame, a frame cut inside its session id.
    let mut padi = up_frame(&key, 0x55, &ip);
    padi[21] = 0x63;
    let cases = [
        (up_frame(&key, 0x56, &ip), 0),
        (down_frame(0x6440_0006), 1),
        (up_frame(&key, 0x55, &ip), 1),
        (down_frame(0x6440_0005), 0),
        (up_frame(&key, 0x55, &ip)[..25].to_vec(), 0),
        (padi, 0),
    ];
    for (f, port) in &cases {
        assert_eq!(hint_of(&fp, &mut c, f, *port), NO_SLOT);
    }
    // A hint is only a hint: a frame whose index entry names a session it does
    // not belong to is still checked in full (another MAC: dropped), in a batch
    // long enough for the prefetch to run ahead.
    let mut other = key;
    other.mac = [2, 9, 9, 9, 9, 9];
    let stray = up_frame(&other, 0x55, &ip);
    assert_eq!(hint_of(&fp, &mut c, &stray, 0), 3);
    let (mut fp, _, counters) = setup((0, 0));
    let frames: Vec<Vec<u8>> = (0..8)
        .map(|i| {
            if i == 6 {
                stray.clone()
            } else {
                up_frame(&key, 0x55, &ip)
            }
        })
        .collect();
    let (mut out, node) = run(&mut fp, 0, &frames, 0);
    assert_eq!(out.ports[1].len(), 7);
    assert_eq!(node.packets, 8);
    assert_eq!(counters.get(3).1, 7);
    out.ports[1].free_all(&mut out.cache);
}
