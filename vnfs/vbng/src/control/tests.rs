//! Tests of the control plane.

use super::*;
use crate::config::UserConfig;
use crate::lcp::AuthProto;
use alloc::string::ToString;
// The subscriber emulator (a dev-dependency) links the non-test copy of this crate:
// its parameter types come from `emu`; frames, phases and addresses cross as data.
use pktgen::subscribers::client::params as emu;
use pktgen::subscribers::client::{ClientParams, ClientPhase, Subscriber};

pub(crate) fn cp(cfg: &Config) -> ControlPlane {
    ControlPlane::new(
        cfg,
        1024,
        SessionCounters::new(1024),
        Rng::from_seed([9; 32]),
    )
    .unwrap()
}

pub(crate) fn sub(i: u32, user: &str, pw: &str, auth: AuthProto) -> Subscriber {
    let auth = match auth {
        AuthProto::Pap => emu::AuthProto::Pap,
        AuthProto::Chap => emu::AuthProto::Chap,
    };
    Subscriber::new(ClientParams {
        mac: [2, 0, 0, (i >> 16) as u8, (i >> 8) as u8, i as u8],
        vlans: emu::Vlans {
            svlan: 100 + (i % 3) as u16,
            cvlan: (i % 4000) as u16 + 1,
        },
        user: user.as_bytes().to_vec(),
        password: pw.as_bytes().to_vec(),
        accept_auth: [Some(auth), None],
        service_name: Vec::new(),
        host_uniq: Some(i.to_be_bytes().to_vec()),
        max_payload: Some(1500),
        timers: emu::Timers::default(),
        ipv6cp: true,
        magic: 0x1000 + i,
        discovery_tries: 3,
    })
}

/// Deliver frames both ways until quiet.
pub(crate) fn run(c: &mut ControlPlane, subs: &mut [Subscriber], now: u64, mut up: Vec<Vec<u8>>) {
    for _ in 0..50 {
        for f in up.drain(..) {
            c.input(0, &f, now);
        }
        c.poll(now);
        let tx = c.take_tx();
        if tx.is_empty() {
            break;
        }
        for (_, f) in tx {
            let dst = [f[0], f[1], f[2], f[3], f[4], f[5]];
            for s in subs.iter_mut().filter(|s| s.params().mac == dst) {
                s.input(&f, now, &mut up);
            }
        }
    }
}

fn cfg_with_users(auth: AuthProto) -> Config {
    Config {
        auth,
        auth_fallback: None,
        ipv6cp: true,
        users: alloc::vec![
            UserConfig {
                name: "alice".to_string(),
                password: "pw".into(),
                ip: None,
                rate: Some("1M/5M".to_string())
            },
            UserConfig {
                name: "bob".to_string(),
                password: "pw2".into(),
                ip: Some(core::net::Ipv4Addr::new(100, 64, 9, 9)),
                rate: None
            },
        ],
        ..Config::default()
    }
}

#[test]
fn control_stats_fields_name_every_counter() {
    // Each field a distinct value: a field left out of `fields()` (or listed
    // twice) shows up as a missing or repeated value.
    let s = ControlStats {
        sessions_created: 1,
        sessions_up: 2,
        sessions_ended: 3,
        auth_accept: 4,
        auth_reject: 5,
        aaa_timeout: 6,
        malformed: 7,
        no_session: 8,
        pool_exhausted: 9,
        table_full: 10,
        coa: 11,
        disconnect: 12,
        dynauth_rejected: 13,
        pool6_exhausted: 14,
        ra_sent: 15,
        rs_received: 16,
        rs_rate_limited: 17,
        na_sent: 18,
        echo6_replies: 19,
        ipv6_dropped: 20,
        not_for_us: 21,
        half_open_mac: 22,
        half_open_line: 23,
        half_open_global: 24,
        half_open_expired: 25,
        framed_ip_invalid: 26,
        framed_ip_in_use: 27,
        framed_ipv6_refused: 28,
        stale_replaced: 29,
        ipoe_no_username: 30,
        ipoe_arp_replies: 31,
        ipoe_arp_ignored: 32,
        relay_to_server: 33,
        relay_to_client: 34,
        relay_dropped: 35,
        dhcp6_fixed_refused: 36,
        off_share: 37,
    };
    let dbg = alloc::format!("{s:?}");
    let mut seen: Vec<u64> = s.fields().iter().map(|f| f.1).collect();
    for (name, v) in s.fields() {
        assert!(
            dbg.contains(&alloc::format!("{name}: {v},"))
                || dbg.contains(&alloc::format!("{name}: {v} }}")),
            "{name}"
        );
    }
    seen.sort_unstable();
    assert_eq!(seen, (1..=37).collect::<Vec<u64>>());
}

#[test]
fn pap_and_chap_sessions_come_up_and_go_down() {
    for auth in [AuthProto::Pap, AuthProto::Chap] {
        let mut c = cp(&cfg_with_users(auth));
        let mut subs = alloc::vec![
            sub(1, "alice", "pw", auth),
            sub(2, "bob", "pw2", auth),
            sub(3, "alice", "wrong", auth)
        ];
        let mut up = Vec::new();
        for s in subs.iter_mut() {
            s.start(0, &mut up);
        }
        run(&mut c, &mut subs, 0, up);
        assert_eq!(subs[0].phase, ClientPhase::Up, "{auth:?}");
        assert_eq!(subs[1].phase, ClientPhase::Up);
        assert_eq!(subs[1].ip, 0x6440_0909);
        assert_eq!(subs[0].gateway, 0x6440_0001);
        assert_eq!(subs[2].failed, Some(ClientPhase::Auth));
        let fib = c.take_fib();
        assert_eq!(fib.len(), 2);
        assert!(matches!(
            fib[0],
            FibUpdate::Add {
                rate: (1_000_000, 5_000_000),
                ..
            }
        ));
        assert_eq!(c.stats.auth_reject, 1);
        assert_eq!(c.session_count(), 2);
        // Subscriber 1 hangs up with PADT.
        let mut up = Vec::new();
        subs[0].terminate(&mut up);
        run(&mut c, &mut subs, 10, up);
        assert_eq!(c.session_count(), 1);
        assert!(matches!(c.take_fib()[..], [FibUpdate::Remove { .. }]));
    }
}

#[test]
fn hostile_input_does_not_disturb_other_sessions() {
    let mut c = cp(&cfg_with_users(AuthProto::Pap));
    let mut subs = alloc::vec![sub(1, "alice", "pw", AuthProto::Pap)];
    let mut up = Vec::new();
    subs[0].start(0, &mut up);
    run(&mut c, &mut subs, 0, up);
    assert_eq!(subs[0].phase, ClientPhase::Up);
    let good = subs[0].session_frame(&[0xc0, 0x21, 9, 1, 0, 8, 0, 0, 0, 1]);
    // Garbage after the PPPoE header, bad LCP, truncated frames, PADI flood from one MAC.
    let mut bad: Vec<Vec<u8>> = alloc::vec![
        subs[0].session_frame(&[0xc0]),
        subs[0].session_frame(&[0xc0, 0x21, 1, 1, 0, 200]),
        subs[0].session_frame(&[0xc0, 0x21, 1, 1, 0, 6, 1, 0]),
        good[..20].to_vec(),
    ];
    let mut flood = sub(77, "x", "y", AuthProto::Pap);
    for _ in 0..1000 {
        flood.start(0, &mut bad);
    }
    for f in &bad {
        c.input(0, f, 1);
    }
    assert!(c.discovery_stats().padi_rate_mac >= 990);
    assert_eq!(c.session_count(), 1);
    // The established session still answers an echo.
    c.take_tx();
    c.input(0, &good, 2);
    let tx = c.take_tx();
    assert_eq!(tx.len(), 1);
    assert_eq!(&tx[0].1[28..30], &[0xc0, 0x21]);
}

#[test]
fn retransmitted_padr_gets_the_same_session() {
    let mut c = cp(&cfg_with_users(AuthProto::Pap));
    let mut s = sub(5, "alice", "pw", AuthProto::Pap);
    let mut up = Vec::new();
    s.start(0, &mut up);
    c.input(0, &up[0], 0);
    let pado = c.take_tx();
    up.clear();
    s.input(&pado[0].1, 0, &mut up);
    let padr = up[0].clone();
    c.input(0, &padr, 0);
    let first = c.take_tx();
    // The PADS is "lost"; the host retransmits its PADR.
    c.input(0, &padr, 1000);
    let again = c.take_tx();
    assert_eq!(c.session_count(), 1);
    assert_eq!(c.stats.sessions_created, 1);
    assert_eq!(first[0].1, again[0].1, "the same PADS is resent");
}

/// Issue 15 item 7: a CPE that restarts without a PADT discovers again with the same
/// MAC, VLANs and Host-Uniq. Its PADR must get a new session id (RFC 2516 §5.4), not
/// the old session's PADS; the stale session ends once, with its address withdrawn.
#[test]
fn padr_after_restart_gets_a_new_session_and_clears_the_stale_one() {
    let mut c = cp(&cfg_with_users(AuthProto::Pap));
    let mut subs = alloc::vec![sub(5, "alice", "pw", AuthProto::Pap)];
    let mut up = Vec::new();
    subs[0].start(0, &mut up);
    run(&mut c, &mut subs, 0, up);
    assert_eq!(subs[0].phase, ClientPhase::Up);
    let (old_sid, old_ip) = (subs[0].sid, subs[0].ip);
    let fib = c.take_fib();
    assert!(matches!(fib[..], [FibUpdate::Add { .. }]), "{fib:?}");
    // The CPE reboots: a fresh client with the same identity, no PADT.
    subs[0] = sub(5, "alice", "pw", AuthProto::Pap);
    let mut up = Vec::new();
    subs[0].start(1000, &mut up);
    run(&mut c, &mut subs, 1000, up);
    assert_eq!(subs[0].phase, ClientPhase::Up);
    assert_ne!(subs[0].sid, old_sid, "a new PADR gets a new session id");
    assert_eq!(c.stats.stale_replaced, 1);
    assert_eq!(c.stats.sessions_created, 2);
    assert_eq!(c.stats.sessions_up, 2);
    assert_eq!(c.stats.sessions_ended, 1);
    assert_eq!(c.session_count(), 1);
    let fib = c.take_fib();
    assert!(
        matches!(
            fib[..],
            [FibUpdate::Remove { sid, ip, .. }, FibUpdate::Add { sid: new, .. }]
                if sid == old_sid && ip == old_ip && new == subs[0].sid
        ),
        "{fib:?}"
    );
    // The new session answers on its own id; the old id is gone.
    let info = c.sessions();
    assert_eq!(info.len(), 1);
}

#[test]
fn ipv6cp_down_withdraws_the_prefix_and_keeps_ipv4() {
    let mut cfg = cfg_with_users(AuthProto::Pap);
    cfg.pools6 = alloc::vec![crate::config::Pool6Config {
        name: "v6".to_string(),
        prefix: "2001:db8:100::/40".parse().unwrap(),
    }];
    let mut c = cp(&cfg);
    let mut subs = alloc::vec![sub(1, "alice", "pw", AuthProto::Pap)];
    let mut up = Vec::new();
    subs[0].start(0, &mut up);
    run(&mut c, &mut subs, 0, up);
    assert_eq!(subs[0].phase, ClientPhase::Up);
    let prefix = (subs[0].ipv6 >> 64) as u64;
    assert_ne!(prefix, 0);
    let _ = c.take_fib();
    // The subscriber closes IPv6CP only (Terminate-Request, RFC 1661 §5.5).
    let f = subs[0].session_frame(&[0x80, 0x57, 5, 0x42, 0, 4]);
    c.input(0, &f, 10);
    c.poll(10);
    let fib = c.take_fib();
    assert!(
        fib.iter()
            .any(|u| matches!(u, FibUpdate::Remove6 { prefix: p, .. } if *p == prefix)),
        "{fib:?}"
    );
    assert!(
        !fib.iter().any(|u| matches!(u, FibUpdate::Remove { .. })),
        "IPv4 stays: {fib:?}"
    );
    let info = c.sessions();
    assert!(!info[0].ipv6_up);
    assert_eq!(info[0].ipv6_prefix, prefix, "the /64 stays allocated");
    assert_eq!(c.session_count(), 1);
    assert_eq!(c.ipv6_session_count(), 0);
}

/// Issue 15 item 7: closing IPCP while IPv6CP is up must leave the link and IPv6
/// running (RFC 1661 §3.7); IPCP opening again routes the same address; closing the
/// last NCP ends the link.
#[test]
fn ipcp_down_keeps_ipv6_and_the_link() {
    let mut cfg = cfg_with_users(AuthProto::Pap);
    cfg.pools6 = alloc::vec![crate::config::Pool6Config {
        name: "v6".to_string(),
        prefix: "2001:db8:100::/40".parse().unwrap(),
    }];
    let mut c = cp(&cfg);
    let mut subs = alloc::vec![sub(1, "alice", "pw", AuthProto::Pap)];
    let mut up = Vec::new();
    subs[0].start(0, &mut up);
    run(&mut c, &mut subs, 0, up);
    assert_eq!(subs[0].phase, ClientPhase::Up);
    let ip = subs[0].ip;
    assert_ne!((subs[0].ipv6 >> 64) as u64, 0);
    let _ = c.take_fib();
    // The subscriber closes IPCP only (Terminate-Request, RFC 1661 §5.5).
    let f = subs[0].session_frame(&[0x80, 0x21, 5, 0x42, 0, 4]);
    c.input(0, &f, 10);
    c.poll(10);
    let tx = c.take_tx();
    // IPCP Terminate-Ack, and no LCP Terminate-Request.
    assert!(
        tx.iter().any(|(_, f)| f[28..31] == [0x80, 0x21, 6]),
        "{tx:?}"
    );
    assert!(
        !tx.iter().any(|(_, f)| f[28..31] == [0xc0, 0x21, 5]),
        "{tx:?}"
    );
    let fib = c.take_fib();
    assert_eq!(fib, alloc::vec![FibUpdate::Down4 { idx: 0, ip }]);
    assert_eq!(c.session_count(), 1);
    assert_eq!(c.ipv6_session_count(), 1, "IPv6 stays");
    assert_eq!(c.stats.sessions_ended, 0);
    // IPCP opens again: the same address is routed to the same session.
    let mut up = Vec::new();
    let req = [
        0x80,
        0x21,
        1,
        0x43,
        0,
        10,
        3,
        6,
        (ip >> 24) as u8,
        (ip >> 16) as u8,
        (ip >> 8) as u8,
        ip as u8,
    ];
    up.push(subs[0].session_frame(&req));
    // IPCP leaves Stopping when its restart timer runs out (RFC 1661 §4.1).
    c.poll(20_000);
    assert_eq!(c.session_count(), 1);
    run(&mut c, &mut subs, 20_000, up);
    let fib = c.take_fib();
    assert!(
        matches!(fib[..], [FibUpdate::Add { ip: a, idx: 0, .. }] if a == ip),
        "{fib:?}"
    );
    assert_eq!(c.stats.sessions_up, 1, "one session, up once");
    // Both NCPs closed: the link has no use left and is terminated by us.
    c.input(
        0,
        &subs[0].session_frame(&[0x80, 0x21, 5, 0x44, 0, 4]),
        30_000,
    );
    c.input(
        0,
        &subs[0].session_frame(&[0x80, 0x57, 5, 0x45, 0, 4]),
        30_000,
    );
    c.poll(60_000);
    let tx = c.take_tx();
    assert!(
        tx.iter().any(|(_, f)| f[28..31] == [0xc0, 0x21, 5]),
        "{tx:?}"
    );
}

#[test]
fn dual_stack_session_gets_a_prefix_by_ra() {
    let mut cfg = cfg_with_users(AuthProto::Pap);
    cfg.pools6 = alloc::vec![crate::config::Pool6Config {
        name: "v6".to_string(),
        prefix: "2001:db8:100::/40".parse().unwrap(),
    }];
    cfg.dns6 = alloc::vec!["2001:db8::53".parse().unwrap()];
    let mut c = cp(&cfg);
    let mut subs = alloc::vec![
        sub(1, "alice", "pw", AuthProto::Pap),
        sub(2, "bob", "pw2", AuthProto::Pap)
    ];
    let mut up = Vec::new();
    for s in subs.iter_mut() {
        s.start(0, &mut up);
    }
    run(&mut c, &mut subs, 0, up);
    let mut prefixes = Vec::new();
    for s in &subs {
        assert_eq!(s.phase, ClientPhase::Up);
        let iid = s.interface_id().expect("IPv6CP open");
        assert_ne!(s.ipv6, 0, "SLAAC address formed from the RA");
        assert_eq!(s.ipv6 as u64, iid, "address = prefix + IPv6CP identifier");
        assert_eq!((s.ipv6 >> 88) as u64, 0x20_010d_b801, "from the pool");
        assert_eq!(s.ipv6_dns, 0x2001_0db8_0000_0000_0000_0000_0000_0053);
        assert!(crate::nd::is_link_local(s.ipv6_router));
        prefixes.push((s.ipv6 >> 64) as u64);
    }
    assert_ne!(prefixes[0], prefixes[1]);
    let fib = c.take_fib();
    for p in &prefixes {
        assert!(
            fib.iter()
                .any(|u| matches!(u, FibUpdate::Add6 { prefix, .. } if prefix == p)),
            "{fib:?}"
        );
    }
    let info = c.sessions();
    assert!(info.iter().all(|i| i.ipv6_up && i.ipv6_prefix != 0));
    let shown = crate::metrics::show_sessions(&c);
    let p0 = Prefix64(prefixes[0]).to_string();
    assert!(shown.contains(&p0), "{shown}");
    let prom = crate::metrics::prometheus(&c, core::iter::empty());
    assert!(prom.contains("vbng_ipv6_sessions 2"), "{prom}");
    assert!(
        !prom.contains("vbng_session_ipv6_prefix_info"),
        "per-session series are opt-in"
    );
    let per = crate::metrics::prometheus_sessions(&c);
    assert!(per.contains(&alloc::format!("prefix=\"{p0}\"")), "{per}");
    assert!(c.stats.ra_sent >= 2);
    // A Neighbor Solicitation for the BNG's link-local address gets an NA (no
    // link-layer address options on PPP); other targets are ignored.
    let router = subs[0].ipv6_router;
    let ns = |target: u128| {
        let mut m = alloc::vec![135u8, 0, 0, 0, 0, 0, 0, 0];
        m.extend_from_slice(&target.to_be_bytes());
        let (src, dst) = (subs[0].ipv6, router);
        dataplane::proto::icmpv6::Packet::new_unchecked(&mut m[..]).fill_checksum(
            &core::net::Ipv6Addr::from(src),
            &core::net::Ipv6Addr::from(dst),
        );
        let mut f = alloc::vec![0x00, 0x57, 0x60, 0, 0, 0, 0, 24, 58, 255];
        f.extend_from_slice(&src.to_be_bytes());
        f.extend_from_slice(&dst.to_be_bytes());
        f.extend_from_slice(&m);
        subs[0].session_frame(&f)
    };
    c.input(0, &ns(router), 5);
    let tx = c.take_tx();
    assert_eq!(tx.len(), 1);
    let na = &tx[0].1[30..];
    assert_eq!(na[40], 136);
    assert_eq!(u128::from_be_bytes(na[48..64].try_into().unwrap()), router);
    c.input(0, &ns(router ^ 1), 5);
    assert!(c.take_tx().is_empty());
    assert_eq!(c.stats.na_sent, 1);
    // A Router Solicitation flood earns one (unicast) RA a second.
    let iid = subs[0].interface_id().unwrap();
    let mut rs = Vec::new();
    crate::nd::router_solicitation(iid, &mut rs);
    let rs = subs[0].session_frame(&rs);
    let limited = c.stats.rs_rate_limited;
    for t in [2000, 2001, 2002, 2500, 3010] {
        c.input(0, &rs, t);
    }
    let tx = c.take_tx();
    assert_eq!(tx.len(), 2, "at t=2000 and t=3010");
    for (_, f) in &tx {
        let ip = &f[30..];
        assert_eq!(ip[40], 134);
        assert_eq!(
            u128::from_be_bytes(ip[24..40].try_into().unwrap()),
            crate::nd::link_local(iid),
            "unicast to the soliciting host"
        );
    }
    assert_eq!(c.stats.rs_rate_limited - limited, 3);
    // Disconnect-Request identifying the session by Framed-IPv6-Prefix (RFC 5176
    // §3): the second subscriber goes, the first stays.
    let mut b = dataplane::proto::radius::Builder::new(
        dataplane::proto::radius::code::DISCONNECT_REQUEST,
        1,
        [0; 16],
    );
    b.attr(
        dataplane::proto::radius::attr::FRAMED_IPV6_PREFIX,
        &radius::ipv6_prefix_value(u128::from(prefixes[1]) << 64, 64),
    );
    let dm = b.clone().finish_request_md5(b"").unwrap();
    // No CoA secret configured: never answered, even when signed with "".
    assert_eq!(c.dynauth(&dm, 3100), None);
    assert_eq!(c.session_count(), 2);
    c.dynauth_secret = radius::Key(b"k".to_vec());
    let dm = b.finish_request_md5(b"k").unwrap();
    let ack = c.dynauth(&dm, 3100).expect("answered");
    assert_eq!(ack[0], dataplane::proto::radius::code::DISCONNECT_ACK);
    assert_eq!(c.session_count(), 1);
    assert!(c.sessions()[0].ipv6_prefix == prefixes[0]);
    c.take_tx();
    // Unsolicited RAs every ra_interval_s.
    let before = c.stats.ra_sent;
    c.poll(604_000);
    assert_eq!(c.stats.ra_sent, before + 1);
    // Hang up: the /64 leaves the fast path and returns to the pool.
    c.take_fib();
    let mut up = Vec::new();
    subs[0].terminate(&mut up);
    run(&mut c, &mut subs, 604_010, up);
    assert!(c
        .take_fib()
        .iter()
        .any(|u| matches!(u, FibUpdate::Remove6 { prefix, .. } if *prefix == prefixes[0])));
    let mut again = alloc::vec![sub(9, "alice", "pw", AuthProto::Pap)];
    let mut up = Vec::new();
    again[0].start(604_020, &mut up);
    run(&mut c, &mut again, 604_020, up);
    assert_eq!(
        (again[0].ipv6 >> 64) as u64,
        prefixes[0],
        "freed prefix reused"
    );
}

#[test]
fn keepalive_failure_ends_session() {
    let mut cfg = cfg_with_users(AuthProto::Pap);
    cfg.keepalive_interval_s = 1;
    cfg.keepalive_failures = 2;
    let mut c = cp(&cfg);
    let mut subs = alloc::vec![sub(1, "alice", "pw", AuthProto::Pap)];
    let mut up = Vec::new();
    subs[0].start(0, &mut up);
    run(&mut c, &mut subs, 0, up);
    c.take_fib();
    // The subscriber vanishes: no more input.
    for t in 1..6 {
        c.poll(t * 1000);
    }
    assert_eq!(c.session_count(), 0);
    assert!(matches!(c.take_fib()[..], [FibUpdate::Remove { .. }]));
}

/// A subscriber at `mac` on line (port 0, `vlans`) sends PADI and, on the PADO,
/// a PADR; it never answers anything after that (a spoofed setup).
fn padr_only(c: &mut ControlPlane, mac: [u8; 6], vlans: Vlans, hu: &[u8], now: u64) {
    let mut s = Subscriber::new(ClientParams {
        mac,
        vlans: emu::Vlans {
            svlan: vlans.svlan,
            cvlan: vlans.cvlan,
        },
        user: b"x".to_vec(),
        password: b"y".to_vec(),
        accept_auth: [Some(emu::AuthProto::Pap), None],
        service_name: Vec::new(),
        host_uniq: Some(hu.to_vec()),
        max_payload: None,
        timers: emu::Timers::default(),
        ipv6cp: false,
        magic: 1,
        discovery_tries: 1,
    });
    let mut up = Vec::new();
    s.start(now, &mut up);
    for f in up.drain(..) {
        c.input(0, &f, now);
    }
    for (_, f) in c.take_tx() {
        s.input(&f, now, &mut up);
    }
    for f in up.drain(..) {
        c.input(0, &f, now);
    }
    c.take_tx();
}

/// Issue 20 item 5: 376 spoofed PADRs filled a 256-slot table and real
/// subscribers got `table_full` for about 10 s.
#[test]
fn spoofed_padr_flood_does_not_lock_out_real_subscribers() {
    let cfg = Config {
        half_open_max: 128,
        ..cfg_with_users(AuthProto::Pap)
    };
    let mut c = ControlPlane::new(
        &cfg,
        256,
        SessionCounters::new(256),
        Rng::from_seed([9; 32]),
    )
    .unwrap();
    let mut rng = Rng::from_seed([4; 32]);
    let line = Vlans { svlan: 7, cvlan: 7 };
    for _ in 0..1000 {
        let mut mac = [0u8; 6];
        rng.fill(&mut mac);
        mac[0] = (mac[0] & 0xfe) | 2;
        padr_only(&mut c, mac, line, &mac, 0);
    }
    assert_eq!(c.half_open_count(), 32, "per-line limit");
    assert!(c.stats.half_open_line >= 900, "{:?}", c.stats);
    assert_eq!(c.stats.table_full, 0);
    // A real subscriber on its own line comes up at once.
    let mut subs = alloc::vec![sub(1, "alice", "pw", AuthProto::Pap)];
    let mut up = Vec::new();
    subs[0].start(10, &mut up);
    run(&mut c, &mut subs, 10, up);
    assert_eq!(subs[0].phase, ClientPhase::Up);
    assert_eq!(
        c.half_open_count(),
        32,
        "the real session is no longer half-open"
    );
    // Many MACs per line, many lines: the global limit holds.
    for i in 0..400u32 {
        let mac = [2, 1, 0, 0, (i >> 8) as u8, i as u8];
        let vlans = Vlans {
            svlan: 8,
            cvlan: 1 + (i / 2) as u16,
        };
        padr_only(&mut c, mac, vlans, &mac, 20);
    }
    assert_eq!(c.half_open_count(), 128);
    assert!(c.stats.half_open_global > 0);
    // Per MAC: Host-Uniq varies, the MAC stays.
    let mut c2 = cp(&cfg_with_users(AuthProto::Pap));
    for i in 0..10u32 {
        // Same MAC and line; a new Host-Uniq per attempt.
        let (mac, line) = ([2, 0, 0, 0, 0, 3], Vlans { svlan: 1, cvlan: 2 });
        padr_only(&mut c2, mac, line, &i.to_be_bytes(), u64::from(i) * 150);
    }
    assert_eq!(c2.half_open_count(), 4);
    assert_eq!(c2.stats.half_open_mac, 6);
    // Half-open sessions expire after half_open_timeout_s; the real one stays.
    c.poll(5_100);
    c.poll(5_200);
    assert_eq!(c.half_open_count(), 0);
    assert_eq!(c.session_count(), 1);
    assert_eq!(c.stats.half_open_expired, 128);
}

/// Issue 20 item 11: a PADI sent unicast to another MAC was answered.
#[test]
fn frames_for_another_mac_are_ignored() {
    let mut c = cp(&cfg_with_users(AuthProto::Pap));
    let mut s = sub(5, "alice", "pw", AuthProto::Pap);
    let mut up = Vec::new();
    s.start(0, &mut up);
    let mut other = up[0].clone();
    assert_eq!(&other[..6], &[0xff; 6], "a PADI is broadcast");
    other[..6].copy_from_slice(&[2, 0x99, 0, 0, 0, 1]);
    c.input(0, &other, 0);
    assert!(c.take_tx().is_empty());
    assert_eq!(c.stats.not_for_us, 1);
    assert_eq!(c.discovery_stats().padi, 0);
    // To our MAC or broadcast: answered.
    c.input(0, &up[0], 0);
    assert_eq!(c.take_tx().len(), 1);
    let mut ours = up[0].clone();
    ours[..6].copy_from_slice(&c.mac());
    c.input(0, &ours, 0);
    assert_eq!(c.take_tx().len(), 1);
    // A session frame broadcast or to another host is not ours either.
    run(&mut c, core::slice::from_mut(&mut s), 0, up);
    assert_eq!(s.phase, ClientPhase::Up);
    let mut echo = s.session_frame(&[0xc0, 0x21, 9, 1, 0, 8, 0, 0, 0, 1]);
    echo[..6].copy_from_slice(&[0xff; 6]);
    c.input(0, &echo, 1);
    assert!(c.take_tx().is_empty());
    assert_eq!(c.stats.not_for_us, 2);
}

/// Issue 20 item 2: two sessions both got 8.8.4.4 (a fixed address outside every
/// pool), and 0.0.0.0 or the BNG's own gateway were accepted.
#[test]
fn fixed_address_held_once_and_martians_reject_the_session() {
    let mut c = cp(&cfg_with_users(AuthProto::Pap));
    for (name, ip) in [("carol", 0x0808_0404), ("zero", 0), ("gw", 0x6440_0001)] {
        c.users.insert(
            name.as_bytes().to_vec(),
            LocalUser {
                password: b"pw".to_vec(),
                ip: Some(ip),
                rate: None,
            },
        );
    }
    let mut subs = alloc::vec![
        sub(1, "carol", "pw", AuthProto::Pap),
        sub(2, "carol", "pw", AuthProto::Pap),
        sub(3, "zero", "pw", AuthProto::Pap),
        sub(4, "gw", "pw", AuthProto::Pap),
    ];
    let mut up = Vec::new();
    for s in subs.iter_mut() {
        s.start(0, &mut up);
    }
    run(&mut c, &mut subs, 0, up);
    let up_ips: Vec<u32> = subs
        .iter()
        .filter(|s| s.phase == ClientPhase::Up)
        .map(|s| s.ip)
        .collect();
    assert_eq!(
        up_ips,
        [0x0808_0404],
        "8.8.4.4 once; 0.0.0.0 and the gateway never"
    );
    assert_eq!(c.stats.framed_ip_in_use, 1);
    assert_eq!(c.stats.framed_ip_invalid, 2);
    // Hang up: the address is free for the next session.
    let mut up = Vec::new();
    subs[0].terminate(&mut up);
    run(&mut c, &mut subs, 10, up);
    let mut again = alloc::vec![sub(9, "carol", "pw", AuthProto::Pap)];
    let mut up = Vec::new();
    again[0].start(20, &mut up);
    run(&mut c, &mut again, 20, up);
    assert_eq!(again[0].phase, ClientPhase::Up);
    assert_eq!(again[0].ip, 0x0808_0404);
}

/// Issue 20 item 10: memory grew under session churn (`setup_ms` only drained by
/// the fuzz harness; superseded timer entries piled up in the heap).
#[test]
fn memory_stays_bounded_under_churn() {
    let slots = 64;
    let mut c = ControlPlane::new(
        &cfg_with_users(AuthProto::Pap),
        slots,
        SessionCounters::new(slots as usize),
        Rng::from_seed([5; 32]),
    )
    .unwrap();
    let mut now = 0;
    let cycle = |c: &mut ControlPlane, i: u32, now: &mut u64| {
        let mut subs = alloc::vec![sub(i, "alice", "pw", AuthProto::Pap)];
        let mut up = Vec::new();
        subs[0].start(*now, &mut up);
        run(c, &mut subs, *now, up);
        assert_eq!(subs[0].phase, ClientPhase::Up, "cycle {i}");
        *now += 5;
        let mut up = Vec::new();
        subs[0].terminate(&mut up);
        run(c, &mut subs, *now, up);
        *now += 5;
        c.take_fib();
    };
    for i in 0..300 {
        cycle(&mut c, i, &mut now);
    }
    let warm = c.memory();
    for i in 300..3000 {
        cycle(&mut c, i, &mut now);
    }
    let m = c.memory();
    assert_eq!(c.session_count(), 0);
    assert!(m.timers <= 4 * slots as usize + 128, "{m:?}");
    assert!(m.setup_ms <= SETUP_RING.next_power_of_two(), "{m:?}");
    for (what, a, b) in [
        ("slots", warm.slots, m.slots),
        ("free", warm.free, m.free),
        ("by_key", warm.by_key, m.by_key),
        ("by_host", warm.by_host, m.by_host),
        ("half_open", warm.half_open, m.half_open),
        ("statics4", warm.statics4, m.statics4),
        ("pools6", warm.pools6, m.pools6),
    ] {
        assert_eq!(a, b, "{what} grew under churn: {warm:?} -> {m:?}");
    }
    assert!(m.largest() <= SETUP_RING.next_power_of_two(), "{m:?}");
    assert_eq!(c.take_setup_ms().len(), SETUP_RING);
}

/// Issue 20 item 6: passwords (the CHAP secrets) appeared in `Debug` output.
#[test]
fn debug_output_redacts_passwords() {
    let cfg = cfg_with_users(AuthProto::Pap);
    let mut c = cp(&cfg);
    let mut subs = alloc::vec![sub(1, "alice", "s3cr3t-pw", AuthProto::Pap)];
    c.users.insert(
        b"alice".to_vec(),
        LocalUser {
            password: b"s3cr3t-pw".to_vec(),
            ip: None,
            rate: None,
        },
    );
    let mut up = Vec::new();
    subs[0].start(0, &mut up);
    run(&mut c, &mut subs, 0, up);
    assert_eq!(subs[0].phase, ClientPhase::Up);
    let creds = crate::auth::Credentials::Pap {
        user: b"alice".to_vec(),
        password: b"s3cr3t-pw".to_vec(),
    };
    for text in [
        alloc::format!("{cfg:?}"),
        alloc::format!("{c:?}"),
        alloc::format!("{creds:?}"),
        alloc::format!("{:?}", subs[0]),
    ] {
        assert!(!text.contains("s3cr3t"), "{text}");
        assert!(!text.contains("\"pw\""), "{text}");
        assert!(!text.contains("[115, 51, 99"), "{text}");
        assert!(text.contains("<redacted>"), "{text}");
    }
}

/// Issue 20 item 7: `max_sessions` 0 was accepted and 2^32 - 1 tried to allocate
/// 137 GB.
#[test]
fn max_sessions_outside_its_limit_is_refused() {
    let cfg = Config::default();
    for n in [0, crate::config::MAX_SESSIONS + 1, u32::MAX] {
        let e = ControlPlane::new(&cfg, n, SessionCounters::new(1), Rng::from_seed([1; 32]))
            .unwrap_err();
        assert!(e.0.contains("max sessions"), "{e}");
    }
}

/// The half-open timeout does not cut a session short while AAA decides (the
/// RADIUS client bounds that with its own timeouts); a stalled LCP is cut.
#[test]
fn half_open_timeout_spares_sessions_waiting_for_aaa() {
    let cfg = Config {
        radius: Some(crate::config::RadiusConfig {
            auth: alloc::vec![crate::config::ServerConfig {
                addr: "127.0.0.1:1812".parse().unwrap(),
                secret: "s".into(),
            }],
            timeout_ms: 4000,
            tries: 2,
            ..Default::default()
        }),
        ..cfg_with_users(AuthProto::Pap)
    };
    let mut c = cp(&cfg);
    let mut subs = alloc::vec![sub(1, "alice", "pw", AuthProto::Pap)];
    let mut up = Vec::new();
    subs[0].start(0, &mut up);
    run(&mut c, &mut subs, 0, up);
    assert_eq!(c.sessions()[0].phase, "aaa");
    assert_eq!(c.half_open_count(), 1);
    // No RADIUS answer: past half_open_timeout_s the session is still there.
    for t in [5_000, 6_000, 7_000] {
        c.poll(t);
    }
    assert_eq!(c.session_count(), 1);
    assert_eq!(c.stats.half_open_expired, 0);
    // The RADIUS client gives up: rejected, slot and half-open count returned.
    for t in (8_000..=30_000).step_by(1000) {
        c.poll(t);
    }
    assert_eq!(c.stats.aaa_timeout, 1);
    assert_eq!(c.session_count(), 0);
    assert_eq!(c.half_open_count(), 0);
    // A subscriber that stalls in LCP is cut at half_open_timeout_s.
    let mut c = cp(&cfg_with_users(AuthProto::Pap));
    padr_only(&mut c, [2, 0, 0, 0, 0, 9], Vlans::default(), b"h", 0);
    assert_eq!(c.session_count(), 1);
    c.poll(4_999);
    assert_eq!(c.session_count(), 1);
    c.poll(5_000);
    assert_eq!(c.session_count(), 0);
    assert_eq!(c.stats.half_open_expired, 1);
}

/// Accounting records survive a restart: a session's Start and Stop are not
/// acknowledged, the control plane is dropped, a new one replays them from the
/// journal with their Acct-Delay-Time, and once acknowledged the journal is empty.
#[cfg(feature = "std")]
#[test]
fn accounting_journal_replayed_after_restart() {
    use crate::acct_journal::AcctJournal;
    use crate::config::{RadiusConfig, ServerConfig};
    use dataplane::proto::radius::{attr, code, Builder, Packet};
    let dir = std::env::temp_dir().join(alloc::format!("vbng-cp-journal-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("acct.journal");
    let srv = |a: &str| ServerConfig {
        addr: a.parse().unwrap(),
        secret: "s".into(),
    };
    let mut cfg = cfg_with_users(AuthProto::Pap);
    cfg.ipv6cp = false;
    cfg.radius = Some(RadiusConfig {
        auth: alloc::vec![srv("127.0.0.1:1812")],
        acct: alloc::vec![srv("127.0.0.1:1813")],
        acct_journal: Some(path.display().to_string()),
        ..RadiusConfig::default()
    });
    let (mut j, r) = AcctJournal::open(&path).unwrap();
    assert!(r.is_empty());
    let mut c = cp(&cfg);
    let mut subs = alloc::vec![sub(1, "alice", "pw", AuthProto::Pap)];
    let mut up = Vec::new();
    subs[0].start(0, &mut up);
    run(&mut c, &mut subs, 0, up);
    let tx = c.take_radius_tx();
    let ar = Packet::new_checked(&tx[0].bytes).unwrap();
    assert_eq!(ar.code(), code::ACCESS_REQUEST);
    let mut b = Builder::new(code::ACCESS_ACCEPT, ar.id(), [0; 16]);
    b.message_authenticator();
    let accept = b.finish_response(b"s", &ar.authenticator()).unwrap();
    c.radius_input(tx[0].channel, tx[0].to, &accept, 10);
    run(&mut c, &mut subs, 10, Vec::new());
    assert_eq!(subs[0].phase, ClientPhase::Up);
    let sid = c.sessions()[0].acct_id.clone();
    let mut up = Vec::new();
    subs[0].terminate(&mut up);
    run(&mut c, &mut subs, 20, up);
    assert_eq!(c.session_count(), 0);
    // Written before anything is sent; the RADIUS server never answers.
    j.write(&c.take_acct_journal()).unwrap();
    let sent = c.take_radius_tx();
    assert_eq!(sent.len(), 2, "Start and Stop sent once");
    drop(c);
    drop(j);
    std::thread::sleep(std::time::Duration::from_millis(1100));
    // "vbng restarted".
    let (mut j, restored) = AcctJournal::open(&path).unwrap();
    assert_eq!(restored.len(), 2);
    let mut c = cp(&cfg);
    c.restore_acct(restored, 0);
    let tx = c.take_radius_tx();
    assert_eq!(tx.len(), 2);
    let mut status = Vec::new();
    for t in &tx {
        let p = Packet::new_checked(&t.bytes).unwrap();
        assert_eq!(p.code(), code::ACCOUNTING_REQUEST);
        assert_eq!(t.to.port(), 1813);
        assert!(dataplane::proto::radius::verify_request_md5(&p, b"s"));
        assert_eq!(p.attr(attr::ACCT_SESSION_ID), Some(sid.as_bytes()));
        assert!(
            p.attr_u32(attr::ACCT_DELAY_TIME).unwrap() >= 1,
            "downtime counted"
        );
        status.push(p.attr_u32(attr::ACCT_STATUS_TYPE).unwrap());
        let b = Builder::new(code::ACCOUNTING_RESPONSE, p.id(), [0; 16]);
        let resp = b.finish_response(b"s", &p.authenticator()).unwrap();
        c.radius_input(t.channel, t.to, &resp, 5);
    }
    assert_eq!(status, [1, 2], "Start then Stop, in order");
    assert_eq!(c.radius_stats().unwrap().acct_acked, 2);
    j.write(&c.take_acct_journal()).unwrap();
    assert_eq!(j.live(), 0);
    drop(j);
    assert!(AcctJournal::open(&path).unwrap().1.is_empty());
    let _ = std::fs::remove_dir_all(&dir);
}

/// A record refused by the queue bound and one given up by the age policy are
/// counted and logged with their Acct-Session-Id and User-Name.
#[test]
fn accounting_drops_counted_and_logged_with_the_session() {
    use crate::config::{RadiusConfig, ServerConfig};
    let srv = |a: &str| ServerConfig {
        addr: a.parse().unwrap(),
        secret: "s".into(),
    };
    let mut cfg = cfg_with_users(AuthProto::Pap);
    cfg.radius = Some(RadiusConfig {
        auth: alloc::vec![srv("127.0.0.1:1812")],
        acct: alloc::vec![srv("127.0.0.1:1813")],
        timeout_ms: 100,
        acct_queue_limit: 1,
        acct_max_age_s: 2,
        ..RadiusConfig::default()
    });
    let mut c = cp(&cfg);
    let rec = |sid: &str| AcctRecord {
        session_id: sid.to_string(),
        user: b"alice".to_vec(),
        ..AcctRecord::default()
    };
    for sid in ["0000000100000001", "0000000200000002"] {
        let req = radius::accounting_request(&LineInfo::default(), AcctStatus::Stop, &rec(sid));
        c.radius.as_mut().unwrap().submit_acct(req, 0);
    }
    c.poll(0);
    let n = c.take_notices();
    assert_eq!(n.len(), 1, "{n:?}");
    assert!(
        n[0].contains("Stop dropped: accounting queue full")
            && n[0].contains("\"0000000200000002\"")
            && n[0].contains("\"alice\""),
        "{n:?}"
    );
    for t in (0..3_000).step_by(50) {
        c.poll(t);
    }
    let n = c.take_notices();
    assert!(
        n.len() == 1
            && n[0].contains("not acknowledged after 2 s")
            && n[0].contains("\"0000000100000001\""),
        "{n:?}"
    );
    let st = c.radius_stats().unwrap();
    assert_eq!((st.acct_overflow, st.acct_given_up), (1, 1));
}

/// Issue 14: with two workers, every PPPoE session takes a slot in the blocks
/// kept for the worker its session id steers to, so each worker's sessions sit
/// together in its tables (the first slots of its blocks, none skipped).
#[test]
fn each_workers_sessions_get_slots_in_its_own_blocks() {
    let mut c = cp(&cfg_with_users(AuthProto::Pap));
    c.set_workers(2);
    let mut subs: Vec<Subscriber> = (1..=100)
        .map(|i| sub(i, "alice", "pw", AuthProto::Pap))
        .collect();
    let mut up = Vec::new();
    for s in subs.iter_mut() {
        s.start(0, &mut up);
    }
    run(&mut c, &mut subs, 0, up);
    let adds: Vec<(u32, u16)> = c
        .take_fib()
        .iter()
        .filter_map(|u| match u {
            FibUpdate::Add { idx, sid, .. } => Some((*idx, *sid)),
            _ => None,
        })
        .collect();
    assert_eq!(adds.len(), 100, "every subscriber up");
    let mut per = [Vec::new(), Vec::new()];
    for &(idx, sid) in &adds {
        let w = crate::steer::sid_owner(sid, 2);
        assert_eq!(
            (idx / slots::BLOCK) % 2,
            u32::from(w),
            "slot {idx} sid {sid}"
        );
        per[usize::from(w)].push(idx);
    }
    for (w, mut got) in per.into_iter().enumerate() {
        assert!(!got.is_empty(), "worker {w} owns some sessions");
        got.sort_unstable();
        let want: Vec<u32> = (0..)
            .filter(|i| (i / slots::BLOCK) % 2 == w as u32)
            .take(got.len())
            .collect();
        assert_eq!(got, want, "worker {w}: the first slots of its blocks");
    }
}
