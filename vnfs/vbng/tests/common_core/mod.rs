//! Frames and a fast-path set-up shared by the core-link/ICMP/MSS integration tests.
#![allow(dead_code)]

use dataplane::batch::{Batch, Out};
use dataplane::proto::checksum::{self, PseudoHeader};
use dataplane::proto::ethernet::Vlans;
use dataplane::stage::{NodeStats, Stage};
use std::net::Ipv4Addr;
use std::sync::Arc;
use vbng::control::{FibUpdate, SessionCounters};
use vbng::corelink::CoreLink;
use vbng::fastpath::{update_queue, FastPath, FastPathConfig, LocalConfig, ERRORS};
use vbng::mss::MssClamp;
use vbng::pppoe::AccessKey;

pub const ACCESS_MAC: [u8; 6] = [2, 0, 0, 0, 0, 0xa];
pub const CORE_MAC: [u8; 6] = [2, 0, 0, 0, 0, 0xc];
pub const GW_MAC: [u8; 6] = [2, 0, 0, 0, 0, 0xd];
pub const SUB_MAC: [u8; 6] = [2, 1, 1, 1, 1, 1];
pub const HOST_MAC: [u8; 6] = [2, 7, 7, 7, 7, 7];
pub const CORE_IP: [u8; 4] = [198, 51, 100, 1];
pub const CORE_GW: [u8; 4] = [198, 51, 100, 254];
pub const GATEWAY: [u8; 4] = [100, 64, 0, 1];
pub const SUB_IP: [u8; 4] = [100, 64, 0, 5];
pub const REMOTE: [u8; 4] = [203, 0, 113, 80];
pub const SID: u16 = 0x55;

pub fn key() -> AccessKey {
    AccessKey {
        port: 0,
        mac: SUB_MAC,
        vlans: Vlans {
            svlan: 10,
            cvlan: 20,
        },
    }
}

/// A `bng-fastpath` with a core link (ARP for the gateway), our gateway address,
/// MSS clamping `auto`, and one QinQ session of PPP MTU 1492.
pub fn fastpath(icmp_rate: u64, icmp_burst: u64) -> (FastPath, Arc<CoreLink>) {
    let cfg = FastPathConfig {
        access_port: 0,
        core_port: 1,
        access_mac: ACCESS_MAC,
        core_mac: CORE_MAC,
        core_next_hop: [2, 0, 0, 0, 0, 0xee],
        max_sessions: 16,
    };
    let link = Arc::new(CoreLink::new(
        Ipv4Addr::from(CORE_IP),
        24,
        Some(Ipv4Addr::from(CORE_GW)),
    ));
    let mut fp = FastPath::new(cfg, update_queue(16), SessionCounters::new(16))
        .with_local(LocalConfig {
            gateway: Some(Ipv4Addr::from(GATEWAY)),
            mss: MssClamp::Auto,
            icmp_rate,
            icmp_burst,
        })
        .with_core_link(link.clone());
    fp.apply(
        FibUpdate::Add {
            idx: 3,
            key: key(),
            sid: SID,
            ip: u32::from_be_bytes(SUB_IP),
            rate: (0, 0),
            mtu: 1492,
        },
        0,
    );
    (fp, link)
}

/// Run `frames` arriving on `port` through the stage; returns what it sent per port.
pub fn run(
    fp: &mut FastPath,
    out: &mut Out,
    port: u16,
    frames: &[Vec<u8>],
) -> (Vec<Vec<u8>>, Vec<Vec<u8>>, NodeStats) {
    let mut node = NodeStats::new("bng-fastpath", ERRORS);
    let mut b = Batch::new();
    for f in frames {
        let mut p = out.cache.alloc().expect("buffer");
        p.copy_from(f).expect("fits");
        p.meta.port = port;
        b.push(p).expect("room");
    }
    fp.process(&mut b, &mut node, out);
    let mut sent = [Vec::new(), Vec::new()];
    for (i, s) in sent.iter_mut().enumerate() {
        let cache = &mut out.cache;
        out.ports[i].drain(|p| {
            s.push(p.data().to_vec());
            cache.free(p);
        });
    }
    let [a, c] = sent;
    (a, c, node)
}

/// An IPv4 header + `payload` (`proto`, TTL `ttl`, DF when `df`), checksum filled.
pub fn ipv4(src: [u8; 4], dst: [u8; 4], proto: u8, ttl: u8, df: bool, payload: &[u8]) -> Vec<u8> {
    let len = 20 + payload.len();
    let mut v = vec![
        0x45,
        0,
        (len >> 8) as u8,
        len as u8,
        0x12,
        0x34,
        if df { 0x40 } else { 0 },
        0,
        ttl,
        proto,
        0,
        0,
    ];
    v.extend_from_slice(&src);
    v.extend_from_slice(&dst);
    let c = checksum::internet(&v);
    v[10..12].copy_from_slice(&c.to_be_bytes());
    v.extend_from_slice(payload);
    v
}

fn l4_checksum(ip: &mut [u8], proto: u8, at: usize) {
    let src = Ipv4Addr::new(ip[12], ip[13], ip[14], ip[15]);
    let dst = Ipv4Addr::new(ip[16], ip[17], ip[18], ip[19]);
    let seg = &mut ip[20..];
    seg[at] = 0;
    seg[at + 1] = 0;
    let ph = PseudoHeader::V4 { src, dst };
    let sum = checksum::add(
        ph.sum(dataplane::proto::IpProtocol(proto), seg.len() as u32),
        checksum::data(seg),
    );
    let c = !sum;
    let c = if c == 0 && proto == 17 { 0xffff } else { c };
    seg[at..at + 2].copy_from_slice(&c.to_be_bytes());
}

/// A UDP datagram with `n` payload bytes, checksums valid.
pub fn udp(src: [u8; 4], dst: [u8; 4], ttl: u8, df: bool, n: usize) -> Vec<u8> {
    let mut u = vec![0x9c, 0x40, 0x13, 0x89];
    u.extend_from_slice(&((8 + n) as u16).to_be_bytes());
    u.extend_from_slice(&[0, 0]);
    u.extend((0..n).map(|i| i as u8));
    let mut v = ipv4(src, dst, 17, ttl, df, &u);
    l4_checksum(&mut v, 17, 6);
    v
}

/// A TCP segment with `flags` and an MSS option of `mss` (plus SACK-permitted,
/// timestamps, window scale), checksums valid.
pub fn tcp(src: [u8; 4], dst: [u8; 4], flags: u8, mss: u16) -> Vec<u8> {
    let mut t = vec![0x9c, 0x40, 0, 80, 0, 0, 0x10, 0, 0, 0, 0, 0];
    if flags & 0x10 != 0 {
        t[8..12].copy_from_slice(&[0, 0, 0x20, 1]);
    }
    t.push((40 / 4) << 4);
    t.extend_from_slice(&[flags, 0xfa, 0xf0, 0, 0, 0, 0]);
    t.extend_from_slice(&[2, 4, (mss >> 8) as u8, mss as u8]);
    t.extend_from_slice(&[4, 2, 8, 10, 0, 0, 0, 1, 0, 0, 0, 0]);
    t.extend_from_slice(&[1, 3, 3, 7]);
    let mut v = ipv4(src, dst, 6, 64, true, &t);
    l4_checksum(&mut v, 6, 16);
    v
}

/// An ICMP Echo Request with a few payload bytes.
pub fn ping(src: [u8; 4], dst: [u8; 4]) -> Vec<u8> {
    let mut m = vec![8, 0, 0, 0, 0x42, 0x42, 0, 1];
    m.extend_from_slice(b"vbng-ping-0123456789");
    let c = checksum::internet(&m);
    m[2..4].copy_from_slice(&c.to_be_bytes());
    ipv4(src, dst, 1, 64, false, &m)
}

/// The subscriber's QinQ PPPoE session frame carrying `ip`.
pub fn up_frame(ip: &[u8]) -> Vec<u8> {
    let mut f = ACCESS_MAC.to_vec();
    f.extend_from_slice(&SUB_MAC);
    f.extend_from_slice(&[0x88, 0xa8, 0, 10, 0x81, 0, 0, 20, 0x88, 0x64, 0x11, 0]);
    f.extend_from_slice(&SID.to_be_bytes());
    f.extend_from_slice(&((ip.len() + 2) as u16).to_be_bytes());
    f.extend_from_slice(&[0, 0x21]);
    f.extend_from_slice(ip);
    f
}

/// A core frame from the gateway carrying `ip`.
pub fn core_frame(ip: &[u8]) -> Vec<u8> {
    let mut f = CORE_MAC.to_vec();
    f.extend_from_slice(&GW_MAC);
    f.extend_from_slice(&[8, 0]);
    f.extend_from_slice(ip);
    f
}

/// An ARP frame (padded to 60 bytes) on the core link.
pub fn arp(op: u16, sha: [u8; 6], spa: [u8; 4], tpa: [u8; 4]) -> Vec<u8> {
    let mut f = if op == 1 {
        vec![0xff; 6]
    } else {
        CORE_MAC.to_vec()
    };
    f.extend_from_slice(&sha);
    f.extend_from_slice(&[8, 6, 0, 1, 8, 0, 6, 4]);
    f.extend_from_slice(&op.to_be_bytes());
    f.extend_from_slice(&sha);
    f.extend_from_slice(&spa);
    f.extend_from_slice(&if op == 1 { [0; 6] } else { CORE_MAC });
    f.extend_from_slice(&tpa);
    f.resize(60, 0);
    f
}
