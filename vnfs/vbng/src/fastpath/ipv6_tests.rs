//! Tests of the IPv6 fast path.

use super::super::{FastPathConfig, ERRORS};
use super::*;
use crate::control::SessionCounters;
use crate::pppoe::AccessKey;
use alloc::sync::Arc;
use crossbeam_queue::ArrayQueue;
use dataplane::batch::{Batch, Out};
use dataplane::buf::Pool;
use dataplane::proto::ethernet::Vlans;
use dataplane::stage::{NodeStats, Stage};

const PFX: u64 = 0x2001_0db8_0100_0005;

fn ipv6(src: u128, dst: u128, hop: u8, next: u8, payload: usize) -> Vec<u8> {
    let mut v = alloc::vec![0x60, 0, 0, 0];
    v.extend_from_slice(&(payload as u16).to_be_bytes());
    v.extend_from_slice(&[next, hop]);
    v.extend_from_slice(&src.to_be_bytes());
    v.extend_from_slice(&dst.to_be_bytes());
    v.extend(core::iter::repeat_n(0xab, payload));
    v
}

fn host() -> u128 {
    (u128::from(PFX) << 64) | 0x1234
}
const REMOTE: u128 = 0x2001_0db8_ffff_0000_0000_0000_0000_0001;

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
    fp.apply(
        FibUpdate::Add6 {
            idx: 3,
            prefix: PFX,
            router_iid: 0x77,
        },
        0,
    );
    (fp, key, c)
}

fn up_frame(key: &AccessKey, sid: u16, ip: &[u8]) -> Vec<u8> {
    let mut f = alloc::vec![2, 0, 0, 0, 0, 0xa];
    f.extend_from_slice(&key.mac);
    f.extend_from_slice(&[0x88, 0xa8, 0, 10, 0x81, 0, 0, 20, 0x88, 0x64, 0x11, 0]);
    f.extend_from_slice(&sid.to_be_bytes());
    f.extend_from_slice(&((ip.len() + 2) as u16).to_be_bytes());
    f.extend_from_slice(&[0, 0x57]);
    f.extend_from_slice(ip);
    f
}

fn down_frame(ip: &[u8]) -> Vec<u8> {
    let mut f = alloc::vec![2, 0, 0, 0, 0, 0xc, 2, 0, 0, 0, 0, 0xd, 0x86, 0xdd];
    f.extend_from_slice(ip);
    f
}

fn run(fp: &mut FastPath, port: u16, frames: &[Vec<u8>]) -> (Out, NodeStats) {
    let pool = Pool::new(256).unwrap();
    let mut out = Out::new(2, pool.cache());
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

/// A Neighbor Solicitation from the core router for `target`, with a Source
/// Link-Layer Address option (from `src`, or from `::` for DAD without one).
fn ns_frame(src: u128, target: u128) -> Vec<u8> {
    let dst = 0xff02_0000_0000_0000_0000_0001_ff00_0000u128 | (target & 0xff_ffff);
    let mut icmp = alloc::vec![135u8, 0, 0, 0, 0, 0, 0, 0];
    icmp.extend_from_slice(&target.to_be_bytes());
    if src != 0 {
        icmp.extend_from_slice(&[1, 1, 2, 0, 0, 0, 0, 0xd]);
    }
    let mut ip = ipv6(src, dst, 255, 58, 0);
    ip[4..6].copy_from_slice(&(icmp.len() as u16).to_be_bytes());
    icmpv6::Packet::new_unchecked(&mut icmp[..])
        .fill_checksum(&Ipv6Addr::from(src), &Ipv6Addr::from(dst));
    ip.extend_from_slice(&icmp);
    let mut f = alloc::vec![0x33, 0x33, 0xff, 0, 0, 0];
    f[3..6].copy_from_slice(&dst.to_be_bytes()[13..16]);
    f.extend_from_slice(&[2, 0, 0, 0, 0, 0xd, 0x86, 0xdd]);
    f.extend_from_slice(&ip);
    f
}

fn frames_of(b: &Batch) -> Vec<Vec<u8>> {
    b.iter().map(|p| p.data().to_vec()).collect()
}

#[test]
fn ipv6_gateway_resolved_by_nd_before_upstream_forwarding() {
    let (fp, key, _) = setup((0, 0));
    let core6 = Ipv6Addr::from(0x2001_0db8_c0de_0000_0000_0000_0000_0001u128);
    let gw6 = 0xfe80_0000_0000_0000_0000_0000_0000_00d0u128;
    let link = Arc::new(
        crate::corelink::CoreLink::new(core::net::Ipv4Addr::new(198, 51, 100, 1), 24, None)
            .with_gateway6(core6, Some(Ipv6Addr::from(gw6))),
    );
    let mut fp = fp.with_core_ip6(Some(core6)).with_core_link(link.clone());
    let up = up_frame(&key, 0x55, &ipv6(host(), REMOTE, 64, 17, 20));
    // Unresolved: dropped, and a solicitation goes out to the solicited-node group.
    let (out, node) = run(&mut fp, 0, core::slice::from_ref(&up));
    assert_eq!(node.drops[E_UNRESOLVED as usize], 1);
    let ns = frames_of(&out.ports[1]);
    assert_eq!(ns.len(), 1);
    let f = &ns[0];
    assert_eq!(&f[0..6], &[0x33, 0x33, 0xff, 0, 0, 0xd0]);
    let ip = &f[14..];
    assert_eq!((ip[6], ip[7], ip[40]), (58, 255, 135));
    let (s, d) = (u128_at(ip, 8), u128_at(ip, 24));
    assert_eq!(Ipv6Addr::from(s), core6);
    assert_eq!(d, 0xff02_0000_0000_0000_0000_0001_ff00_00d0);
    let icmp = icmpv6::Packet::new_checked(&ip[40..]).unwrap();
    assert!(icmp.verify_checksum(&Ipv6Addr::from(s), &Ipv6Addr::from(d)));
    assert_eq!(u128_at(ip, 48), gw6);
    assert_eq!(&ip[64..72], &[1, 1, 2, 0, 0, 0, 0, 0xc]);
    // The gateway's advertisement (Target Link-Layer Address 02:..:d0).
    let mut na = alloc::vec![136u8, 0, 0, 0, 0xc0, 0, 0, 0];
    na.extend_from_slice(&gw6.to_be_bytes());
    na.extend_from_slice(&[2, 1, 2, 0, 0, 0, 0, 0xd0]);
    let c6 = u128::from(core6);
    icmpv6::Packet::new_unchecked(&mut na[..]).fill_checksum(&Ipv6Addr::from(gw6), &core6);
    let mut na_ip = ipv6(gw6, c6, 255, 58, 0);
    na_ip[4..6].copy_from_slice(&(na.len() as u16).to_be_bytes());
    na_ip.extend_from_slice(&na);
    let (_, node) = run(&mut fp, 1, &[down_frame(&na_ip)]);
    assert_eq!(node.drops[E_ND_CONSUMED as usize], 1);
    assert_eq!(
        link.stats
            .learned6
            .load(core::sync::atomic::Ordering::Relaxed),
        1
    );
    // Now upstream IPv6 goes to the gateway's MAC.
    let (out, _) = run(&mut fp, 0, &[up]);
    let fwd = frames_of(&out.ports[1]);
    assert_eq!(fwd.len(), 1);
    assert_eq!(&fwd[0][0..6], &[2, 0, 0, 0, 0, 0xd0]);
    assert_eq!(&fwd[0][12..14], &[0x86, 0xdd]);
}

#[test]
fn core_neighbor_solicitations_get_advertisements() {
    let core6 = 0x2001_0db8_c0de_0000_0000_0000_0000_0001u128;
    let (fp, _, _) = setup((0, 0));
    let mut fp = fp.with_core_ip6(Some(Ipv6Addr::from(core6)));
    // fe80:: + modified EUI-64 of 02:00:00:00:00:0c
    let ll = 0xfe80_0000_0000_0000_0000_00ff_fe00_000cu128;
    let router = 0xfe80_0000_0000_0000_0000_0000_0000_00d0u128;
    let mut bad = ns_frame(router, core6);
    let last = bad.len() - 1;
    bad[last] ^= 1; // checksum no longer matches
    let frames = [
        ns_frame(router, core6),
        ns_frame(router, ll),
        ns_frame(0, core6),
        ns_frame(router, REMOTE),
        bad,
    ];
    let (out, node) = run(&mut fp, 1, &frames);
    let na = frames_of(&out.ports[1]);
    assert_eq!(na.len(), 3, "three advertisements");
    for (i, f) in na.iter().enumerate() {
        assert_eq!(&f[6..12], &[2, 0, 0, 0, 0, 0xc]);
        let ip = &f[14..];
        assert_eq!(ip[6], 58);
        assert_eq!(ip[7], 255);
        let (src, dst) = (u128_at(ip, 8), u128_at(ip, 24));
        let icmp = icmpv6::Packet::new_checked(&ip[40..]).unwrap();
        assert_eq!(icmp.msg_type(), 136);
        assert!(icmp.verify_checksum(&Ipv6Addr::from(src), &Ipv6Addr::from(dst)));
        assert_eq!(&ip[40 + 24..40 + 32], &[2, 1, 2, 0, 0, 0, 0, 0xc]);
        if i == 2 {
            // DAD: to all-nodes, not solicited
            assert_eq!(dst, 0xff02_0000_0000_0000_0000_0000_0000_0001);
            assert_eq!(&f[0..6], &[0x33, 0x33, 0, 0, 0, 1]);
            assert_eq!(ip[44], 0xa0);
        } else {
            assert_eq!(dst, router);
            assert_eq!(&f[0..6], &[2, 0, 0, 0, 0, 0xd]);
            assert_eq!(ip[44], 0xe0);
            assert_eq!(src, if i == 0 { core6 } else { ll });
        }
    }
    assert_eq!(node.drops[E_LOCAL as usize], 1, "NS for someone else");
    assert_eq!(node.drops[E_MALFORMED as usize], 1, "bad checksum");
    assert_eq!(
        fp.stats
            .core_na_sent
            .load(core::sync::atomic::Ordering::Relaxed),
        3
    );
}

#[test]
fn upstream_forwards_own_prefix_and_drops_the_rest() {
    let (mut fp, key, c) = setup((0, 0));
    let good = ipv6(host(), REMOTE, 64, 17, 20);
    let mut padded = up_frame(&key, 0x55, &good);
    padded.extend_from_slice(&[0; 7]);
    let spoof = ipv6(REMOTE, REMOTE, 64, 17, 20);
    let expiring = ipv6(host(), REMOTE, 1, 17, 20);
    let rs = ipv6(crate::nd::link_local(7), crate::nd::ALL_ROUTERS, 255, 58, 8);
    let mut rs = up_frame(&key, 0x55, &rs);
    let at = rs.len() - 8;
    rs[at] = 133;
    let mut truncated = up_frame(&key, 0x55, &good);
    truncated.truncate(30 + 39);
    let mut bad_len = up_frame(&key, 0x55, &good);
    bad_len[30 + 4] = 0xff; // payload length past the frame
    let mut v4_in_v6 = up_frame(&key, 0x55, &good);
    v4_in_v6[30] = 0x45;
    let frames = alloc::vec![
        padded,
        up_frame(&key, 0x55, &spoof),
        up_frame(&key, 0x56, &good),
        up_frame(&key, 0x55, &expiring),
        rs,
        truncated,
        bad_len,
        v4_in_v6,
    ];
    let (out, node) = run(&mut fp, 0, &frames);
    assert_eq!(out.ports[1].len(), 1);
    let d = out.ports[1].iter().next().unwrap().data();
    assert_eq!(&d[0..6], &[2, 0, 0, 0, 0, 0xd]);
    assert_eq!(&d[6..12], &[2, 0, 0, 0, 0, 0xc]);
    assert_eq!(&d[12..14], &[0x86, 0xdd]);
    assert_eq!(d.len(), 14 + good.len(), "padding trimmed");
    assert_eq!(d[14 + 7], 63);
    assert_eq!(&d[14 + 8..], &good[8..]);
    assert_eq!(node.drops[E_SPOOF as usize], 1);
    assert_eq!(node.drops[E_NO_SESSION as usize], 1);
    assert_eq!(node.drops[E_TTL as usize], 1);
    assert_eq!(node.drops[E_MALFORMED as usize], 3);
    assert_eq!(out.punt.len(), 1, "the RS goes to the control plane");
    // The expired packet earned an ICMPv6 Time Exceeded back inside the session,
    // from the BNG's link-local address, quoting the packet.
    assert_eq!(out.ports[0].len(), 1);
    let te = out.ports[0].iter().next().unwrap().data();
    assert_eq!(&te[0..6], &key.mac);
    assert_eq!(
        &te[12..22],
        &[0x88, 0xa8, 0, 10, 0x81, 0, 0, 20, 0x88, 0x64]
    );
    assert_eq!(&te[24..26], &[0, 0x55]);
    assert_eq!(
        usize::from(u16::from_be_bytes([te[26], te[27]])),
        te.len() - 28
    );
    assert_eq!(&te[28..30], &[0, 0x57]);
    let ip = &te[30..];
    assert_eq!(u128_at(ip, 8), crate::nd::link_local(0x77));
    assert_eq!(u128_at(ip, 24), host());
    assert_eq!((ip[6], ip[40], ip[41]), (58, 3, 0));
    assert_eq!(&ip[48..], &expiring[..]);
    let icmp = icmpv6::Packet::new_checked(&ip[40..]).unwrap();
    assert!(icmp.verify_checksum(
        &Ipv6Addr::from(crate::nd::link_local(0x77)),
        &Ipv6Addr::from(host())
    ));
    assert_eq!(c.get(3), (good.len() as u64, 1, 0, 0));
}

#[test]
fn upstream_without_prefix_is_not_forwarded() {
    let (mut fp, key, _) = setup((0, 0));
    fp.apply(
        FibUpdate::Remove6 {
            idx: 3,
            prefix: PFX,
        },
        0,
    );
    assert_eq!(fp.prefixes6(), 0);
    let good = ipv6(host(), REMOTE, 64, 17, 20);
    let (out, node) = run(&mut fp, 0, &[up_frame(&key, 0x55, &good)]);
    assert_eq!(out.ports[1].len(), 0);
    assert_eq!(node.drops[E_IPV6 as usize], 1);
}

#[test]
fn downstream_encap_unknown_prefix_hop_limit_mtu_policer() {
    let (mut fp, key, c) = setup((0, 8_000_000));
    let ip = ipv6(REMOTE, host() ^ 0xffff, 64, 17, 1000);
    let unknown = ipv6(REMOTE, REMOTE, 64, 17, 100);
    let expiring = ipv6(REMOTE, host(), 1, 17, 100);
    let big = ipv6(REMOTE, host(), 64, 17, 1460);
    let mut short = down_frame(&ip);
    short.truncate(50);
    let (out, node) = run(
        &mut fp,
        1,
        &[
            down_frame(&ip),
            down_frame(&unknown),
            down_frame(&expiring),
            down_frame(&big),
            short,
        ],
    );
    assert_eq!(out.ports[0].len(), 1);
    let d = out.ports[0].iter().next().unwrap().data();
    assert_eq!(&d[0..6], &key.mac);
    assert_eq!(&d[12..22], &[0x88, 0xa8, 0, 10, 0x81, 0, 0, 20, 0x88, 0x64]);
    let plen = (ip.len() + 2) as u16;
    assert_eq!(&d[22..26], &[0x11, 0, 0, 0x55]);
    assert_eq!(&d[26..28], &plen.to_be_bytes());
    assert_eq!(&d[28..30], &[0, 0x57]);
    assert_eq!(d[30 + 7], 63);
    assert_eq!(d.len(), 30 + ip.len());
    assert_eq!(node.drops[E_NO_ROUTE as usize], 1);
    assert_eq!(node.drops[E_TTL as usize], 1);
    assert_eq!(node.drops[E_TOO_BIG as usize], 1);
    assert_eq!(node.drops[E_MALFORMED as usize], 1);
    assert_eq!(c.get(3), (0, 0, ip.len() as u64, 1));
    // The downstream policer (8 Mbit/s, 64 KiB burst) covers IPv6 too.
    let frames: Vec<Vec<u8>> = (0..100).map(|_| down_frame(&ip)).collect();
    let (out, node) = run(&mut fp, 1, &frames);
    assert!(out.ports[0].len() < 70, "{}", out.ports[0].len());
    assert!(node.drops[E_POLICE_DOWN as usize] > 30);
}

#[test]
fn downstream_errors_go_back_to_the_core_sender() {
    let (fp, _, _) = setup((0, 0));
    let core6: Ipv6Addr = "2001:db8:ffff::b".parse().unwrap();
    let mut fp = fp.with_core_ip6(Some(core6));
    let expiring = ipv6(REMOTE, host(), 1, 17, 100);
    let big = ipv6(REMOTE, host(), 64, 17, 1460);
    let (out, node) = run(&mut fp, 1, &[down_frame(&expiring), down_frame(&big)]);
    assert_eq!(out.ports[0].len(), 0);
    assert_eq!(node.drops[E_TTL as usize], 1);
    assert_eq!(node.drops[E_TOO_BIG as usize], 1);
    let errs: Vec<&[u8]> = out.ports[1].iter().map(|p| p.data()).collect();
    assert_eq!(errs.len(), 2);
    for (e, (ty, rest, quoted)) in errs.iter().zip([(3u8, 0u32, &expiring), (2, 1492, &big)]) {
        assert_eq!(
            &e[0..6],
            &[2, 0, 0, 0, 0, 0xd],
            "to the router that sent it"
        );
        assert_eq!(&e[6..12], &[2, 0, 0, 0, 0, 0xc]);
        assert_eq!(&e[12..14], &[0x86, 0xdd]);
        let ip = &e[14..];
        assert_eq!(u128_at(ip, 8), u128::from(core6));
        assert_eq!(u128_at(ip, 24), REMOTE);
        assert_eq!((ip[40], ip[41]), (ty, 0));
        assert_eq!(u32::from_be_bytes([ip[44], ip[45], ip[46], ip[47]]), rest);
        assert_eq!(&ip[48..56], &quoted[..8]);
        // RFC 4443 §2.4(c): the error fits the minimum MTU.
        assert!(ip.len() <= 1280);
        let icmp = icmpv6::Packet::new_checked(&ip[40..]).unwrap();
        assert!(icmp.verify_checksum(&core6, &Ipv6Addr::from(REMOTE)));
    }
}

#[test]
fn updates_replace_and_remove_prefixes() {
    let (mut fp, _, _) = setup((0, 0));
    fp.apply(
        FibUpdate::Add6 {
            idx: 3,
            prefix: PFX + 1,
            router_iid: 0x77,
        },
        0,
    );
    assert_eq!(fp.prefixes6(), 1);
    // A stale remove (old prefix) leaves the new one alone.
    fp.apply(
        FibUpdate::Remove6 {
            idx: 3,
            prefix: PFX,
        },
        0,
    );
    assert_eq!(fp.prefixes6(), 1);
    fp.apply(
        FibUpdate::Remove6 {
            idx: 3,
            prefix: PFX + 1,
        },
        0,
    );
    assert_eq!(fp.prefixes6(), 0);
    // Out-of-range slots are ignored.
    fp.apply(
        FibUpdate::Add6 {
            idx: 99,
            prefix: PFX,
            router_iid: 0x77,
        },
        0,
    );
    assert_eq!(fp.prefixes6(), 0);
}

proptest::proptest! {
    #[test]
    fn arbitrary_frames_never_panic(
        body in proptest::collection::vec(proptest::num::u8::ANY, 0..120),
        cut in 0usize..200,
    ) {
        let (mut fp, key, _) = setup((1_000_000, 1_000_000));
        let mut up = up_frame(&key, 0x55, &body);
        up.truncate(cut.max(1));
        let mut down = down_frame(&body);
        down.truncate(cut.max(1));
        let mut claimed = up_frame(&key, 0x55, &ipv6(host(), REMOTE, 64, 17, 0));
        claimed.extend_from_slice(&body);
        let _ = run(&mut fp, 0, &[up, claimed]);
        let _ = run(&mut fp, 1, &[down]);
    }
}

/// Issue 15 item 7: IPCP down (`Down4`) stops IPv4 both ways and leaves the session's
/// IPv6 forwarding; Router Advertisements and other link-scope control from the core
/// routers are counted as core-link control, not as `no-route`.
#[test]
fn ipv4_down_keeps_ipv6_and_core_control_is_not_no_route() {
    use super::super::E_IPV4_DOWN;
    let (mut fp, key, _) = setup((0, 0));
    fp.apply(
        FibUpdate::Down4 {
            idx: 3,
            ip: 0x6440_0005,
        },
        0,
    );
    let mut v4 = alloc::vec![0x45, 0, 0, 28, 0, 0, 0, 0, 64, 17, 0, 0];
    v4.extend_from_slice(&[100, 64, 0, 5, 198, 51, 100, 1]);
    v4.extend_from_slice(&[0; 8]);
    let mut v4_up = up_frame(&key, 0x55, &v4);
    let at = v4_up.len() - v4.len() - 2;
    v4_up[at..at + 2].copy_from_slice(&[0, 0x21]);
    let mut zero_src = v4_up.clone();
    zero_src[30 + 12..30 + 16].copy_from_slice(&[0; 4]);
    let good = ipv6(host(), REMOTE, 64, 17, 20);
    let (out, node) = run(&mut fp, 0, &[v4_up, zero_src, up_frame(&key, 0x55, &good)]);
    assert_eq!(
        node.drops[E_IPV4_DOWN as usize], 2,
        "IPv4 (even from 0.0.0.0) stops"
    );
    assert_eq!(out.ports[1].len(), 1, "IPv6 still goes up");
    // Downstream: IPv4 to the old address has no route; IPv6 still goes down.
    let mut v4_down = alloc::vec![2, 0, 0, 0, 0, 0xc, 2, 0, 0, 0, 0, 0xd, 0x08, 0];
    let mut ip4 = alloc::vec![0x45, 0, 0, 28, 0, 0, 0, 0, 64, 17, 0, 0];
    ip4.extend_from_slice(&[198, 51, 100, 1, 100, 64, 0, 5]);
    ip4.extend_from_slice(&[0; 8]);
    let c = dataplane::proto::checksum::internet(&ip4[..20]);
    ip4[10..12].copy_from_slice(&c.to_be_bytes());
    v4_down.extend_from_slice(&ip4);
    let ra = {
        let mut ip = ipv6(crate::nd::link_local(9), crate::nd::ALL_NODES, 255, 58, 16);
        ip[40] = 134;
        down_frame(&ip)
    };
    let to_ll = down_frame(&ipv6(REMOTE, crate::nd::link_local(5), 64, 17, 8));
    let unknown = down_frame(&ipv6(REMOTE, REMOTE, 64, 17, 8));
    let (out, node) = run(
        &mut fp,
        1,
        &[
            v4_down,
            down_frame(&ipv6(REMOTE, host(), 64, 17, 20)),
            ra,
            to_ll,
            unknown,
        ],
    );
    assert_eq!(out.ports[0].len(), 1, "IPv6 still goes down");
    assert_eq!(node.drops[E_CORE_CONTROL as usize], 2);
    assert_eq!(
        node.drops[E_NO_ROUTE as usize], 2,
        "IPv4 to the old address, unknown /64"
    );
}

/// Issue 15 item 4: a delegated prefix (DHCPv6 IA_PD) routes to its session
/// downstream, passes anti-spoofing upstream, and goes with `RemovePd`.
#[test]
fn delegated_prefix_routes_both_ways() {
    let (fp, key, _) = setup((0, 0));
    let mut fp = fp.with_prefix_delegation(56);
    const PD: u64 = 0x2001_0db8_0200_0100; // 2001:db8:200:100::/56
                                           // Another length than the configured one is not installed.
    fp.apply(
        FibUpdate::AddPd {
            idx: 3,
            prefix: PD,
            len: 48,
        },
        0,
    );
    assert_eq!(fp.delegated_prefixes(), 0);
    fp.apply(
        FibUpdate::AddPd {
            idx: 3,
            prefix: PD,
            len: 56,
        },
        0,
    );
    assert_eq!(fp.delegated_prefixes(), 1);
    let lan_host = (u128::from(PD | 0xab) << 64) | 1; // 2001:db8:200:1ab::1
    let down = down_frame(&ipv6(REMOTE, lan_host, 64, 17, 20));
    let (out, _) = run(&mut fp, 1, core::slice::from_ref(&down));
    assert_eq!(out.ports[0].len(), 1, "to the session's line");
    let up_ok = up_frame(&key, 0x55, &ipv6(lan_host, REMOTE, 64, 17, 20));
    let outside = (u128::from(0x2001_0db8_0200_0200u64) << 64) | 1;
    let up_bad = up_frame(&key, 0x55, &ipv6(outside, REMOTE, 64, 17, 20));
    let (out, node) = run(&mut fp, 0, &[up_ok, up_bad]);
    assert_eq!(out.ports[1].len(), 1);
    assert_eq!(node.drops[E_SPOOF as usize], 1);
    fp.apply(FibUpdate::RemovePd { idx: 3, prefix: PD }, 0);
    let (out, node) = run(&mut fp, 1, &[down]);
    assert_eq!(out.ports[0].len(), 0);
    assert_eq!(node.drops[E_NO_ROUTE as usize], 1);
}

/// Issue 15 items 4/5: an IPoE subscriber's DHCPv6 IA_NA /128 routes to its line
/// downstream (Ethernet 0x86DD with its VLANs), is the only source besides its
/// delegated prefix it may use upstream, and its link-local, multicast and ND
/// traffic is punted to the control plane.
#[test]
fn ipoe_address_and_prefix_route_both_ways() {
    let (fp, _, _) = setup((0, 0));
    let mut fp = fp
        .with_ipoe(Some(core::net::Ipv4Addr::new(100, 72, 0, 1)))
        .with_prefix_delegation(56)
        .with_ipoe6(true);
    let line = AccessKey {
        port: 0,
        mac: [2, 9, 9, 9, 9, 9],
        vlans: Vlans {
            svlan: 0,
            cvlan: 33,
        },
    };
    fp.apply(
        FibUpdate::Add {
            idx: 5,
            key: line,
            sid: 0,
            ip: 0,
            rate: (0, 0),
            mtu: 1500,
        },
        0,
    );
    const NA: u128 = 0x2001_0db8_0100_0000_0000_0000_0000_1000;
    const PD: u64 = 0x2001_0db8_0200_0100;
    fp.apply(
        FibUpdate::AddAddr6 {
            idx: 5,
            addr: NA,
            router_iid: 0x99,
        },
        0,
    );
    fp.apply(
        FibUpdate::AddPd {
            idx: 5,
            prefix: PD,
            len: 56,
        },
        0,
    );
    assert_eq!(fp.addresses6(), 1);
    let eth_up = |ip: &[u8]| {
        let mut f = alloc::vec![2, 0, 0, 0, 0, 0xa];
        f.extend_from_slice(&line.mac);
        f.extend_from_slice(&[0x81, 0, 0, 33, 0x86, 0xdd]);
        f.extend_from_slice(ip);
        f
    };
    // Downstream to the address: one C-VLAN tag, IPv6, hop limit decremented.
    let down = down_frame(&ipv6(REMOTE, NA, 64, 17, 20));
    let (out, _) = run(&mut fp, 1, core::slice::from_ref(&down));
    let d: Vec<Vec<u8>> = out.ports[0].iter().map(|p| p.data().to_vec()).collect();
    assert_eq!(d.len(), 1, "to the subscriber's line");
    assert_eq!(&d[0][0..6], &line.mac);
    assert_eq!(&d[0][12..18], &[0x81, 0, 0, 33, 0x86, 0xdd]);
    assert_eq!(d[0][18 + 7], 63);
    // Another address of the same /64 belongs to nobody.
    let (out, node) = run(&mut fp, 1, &[down_frame(&ipv6(REMOTE, NA + 1, 64, 17, 20))]);
    assert_eq!(out.ports[0].len(), 0);
    assert_eq!(node.drops[E_NO_ROUTE as usize], 1);
    // Upstream: from the address and from the prefix pass, re-framed untagged to
    // the core; another source is spoofed; link-local and ND are punted.
    let lan = (u128::from(PD | 0x01) << 64) | 1;
    let ll = 0xfe80_0000_0000_0000_0009_09ff_fe09_0909u128;
    let mut rs = ipv6(ll, crate::nd::ALL_ROUTERS, 255, 58, 8);
    rs[40] = 133;
    let frames = [
        eth_up(&ipv6(NA, REMOTE, 64, 17, 20)),
        eth_up(&ipv6(lan, REMOTE, 64, 17, 20)),
        eth_up(&ipv6(NA + 1, REMOTE, 64, 17, 20)),
        eth_up(&rs),
    ];
    let (out, node) = run(&mut fp, 0, &frames);
    let up: Vec<Vec<u8>> = out.ports[1].iter().map(|p| p.data().to_vec()).collect();
    assert_eq!(up.len(), 2);
    assert_eq!(&up[0][12..14], &[0x86, 0xdd]);
    assert_eq!(up[0][14 + 7], 63);
    assert_eq!(node.drops[E_SPOOF as usize], 1);
    assert_eq!(out.punt.len(), 1, "the Router Solicitation");
    // Withdrawn: no longer routed, and no longer a valid source.
    fp.apply(FibUpdate::RemoveAddr6 { idx: 5, addr: NA }, 0);
    assert_eq!(fp.addresses6(), 0);
    let (out, _) = run(&mut fp, 1, &[down]);
    assert_eq!(out.ports[0].len(), 0);
    let (_, node) = run(&mut fp, 0, &[eth_up(&ipv6(NA, REMOTE, 64, 17, 20))]);
    assert_eq!(node.drops[E_SPOOF as usize], 1);
}
