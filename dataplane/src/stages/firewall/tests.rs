//! Tests of the firewall: rule order and counters, the TCP state machine (RFC 9293
//! §3.3.2), pseudo-connections, related ICMP errors (RFC 1191) and the classifier
//! against a linear scan.

use super::*;

#[test]
fn config_checks_ports_on_icmp_rules_and_sizes() {
    let icmp = |sport: Option<&str>, dport: Option<&str>| FirewallConfig {
        rules: alloc::vec![RuleConfig {
            action: Action::Allow,
            proto: Some("icmp".into()),
            sport: sport.map(Into::into),
            dport: dport.map(Into::into),
            ..RuleConfig::default()
        }],
        ..FirewallConfig::default()
    };
    for c in [icmp(None, Some("22")), icmp(Some("1-2"), None)] {
        let e = c.validate().unwrap_err();
        assert_eq!(e, FwConfigError::PortsWithoutPorts(0));
        let msg = alloc::format!("{e}");
        assert!(msg.starts_with("rules[0]: sport/dport"), "{msg}");
        assert!(!msg.contains("firewall"), "{msg}");
        assert!(Firewall::new(&c).is_err());
    }
    assert!(icmp(None, None).validate().is_ok());
    let huge = FirewallConfig {
        max_connections: 1 << 28,
        ..FirewallConfig::default()
    };
    assert_eq!(
        huge.validate(),
        Err(FwConfigError::BadLimit("max_connections (1..=16777216)"))
    );
}
use etherparse::PacketBuilder;

const SEC: u64 = 1_000_000_000;

fn tcp(src: [u8; 4], sp: u16, dst: [u8; 4], dp: u16, flags: &str) -> Vec<u8> {
    let mut b = PacketBuilder::ethernet2([2; 6], [4; 6])
        .ipv4(src, dst, 64)
        .tcp(sp, dp, 1, 1000);
    for f in flags.chars() {
        b = match f {
            'S' => b.syn(),
            'A' => b.ack(1),
            'F' => b.fin(),
            'R' => b.rst(),
            _ => b,
        };
    }
    let mut v = Vec::new();
    b.write(&mut v, &[]).unwrap();
    v
}

fn udp(src: [u8; 4], sp: u16, dst: [u8; 4], dp: u16) -> Vec<u8> {
    let b = PacketBuilder::ethernet2([2; 6], [4; 6])
        .ipv4(src, dst, 64)
        .udp(sp, dp);
    let mut v = Vec::new();
    b.write(&mut v, b"x").unwrap();
    v
}

fn rule(
    action: Action,
    src: Option<&str>,
    dst: Option<&str>,
    proto: Option<&str>,
    dport: Option<&str>,
) -> RuleConfig {
    RuleConfig {
        action,
        src: src.map(String::from),
        dst: dst.map(String::from),
        proto: proto.map(String::from),
        sport: None,
        dport: dport.map(String::from),
        in_port: None,
    }
}

fn fw(rules: Vec<RuleConfig>) -> Firewall {
    Firewall::new(&FirewallConfig {
        rules,
        max_connections: 1024,
        ..FirewallConfig::default()
    })
    .unwrap()
}

const LAN: [u8; 4] = [10, 0, 0, 5];
const WEB: [u8; 4] = [192, 0, 2, 80];

#[test]
fn ordered_rules_first_match_and_counters() {
    let mut f = fw(vec![
        rule(
            Action::Deny,
            None,
            Some("192.0.2.0/24"),
            Some("tcp"),
            Some("22"),
        ),
        rule(
            Action::Allow,
            Some("10.0.0.0/8"),
            None,
            Some("tcp"),
            Some("1-1023"),
        ),
        rule(Action::Allow, Some("10.0.0.0/8"), None, Some("udp"), None),
    ]);
    assert_eq!(
        f.decide(&tcp(LAN, 4000, WEB, 22, "S"), 0, 1),
        FirewallDrop::RuleDeny.into()
    );
    assert_eq!(f.decide(&tcp(LAN, 4000, WEB, 443, "S"), 0, 1), Next::Keep);
    assert_eq!(
        f.decide(&tcp(LAN, 4000, WEB, 8080, "S"), 0, 1),
        FirewallDrop::DefaultDeny.into()
    );
    assert_eq!(f.decide(&udp(LAN, 5353, WEB, 53), 0, 1), Next::Keep);
    assert_eq!(
        f.decide(&udp([172, 16, 0, 1], 5353, WEB, 53), 0, 1),
        FirewallDrop::DefaultDeny.into()
    );
    let c = f.rule_counters();
    assert_eq!((c[0].packets, c[1].packets, c[2].packets), (1, 1, 1));
    assert!(c[1].bytes >= 54);
}

#[test]
fn established_replies_pass_and_tcp_states() {
    let mut f = fw(vec![rule(
        Action::Allow,
        Some("10.0.0.0/8"),
        None,
        Some("tcp"),
        None,
    )]);
    let now = 100;
    // Unsolicited inbound: no rule allows it.
    assert_ne!(
        f.decide(&tcp(WEB, 443, LAN, 4000, "SA"), 1, now),
        Next::Keep
    );
    // A non-SYN opening is refused even if the rule allows.
    assert_eq!(
        f.decide(&tcp(LAN, 4000, WEB, 443, "A"), 0, now),
        FirewallDrop::TcpNoConn.into()
    );
    assert_eq!(f.decide(&tcp(LAN, 4000, WEB, 443, "S"), 0, now), Next::Keep);
    assert_eq!(
        f.decide(&tcp(WEB, 443, LAN, 4000, "SA"), 1, now),
        Next::Keep
    );
    assert_eq!(f.decide(&tcp(LAN, 4000, WEB, 443, "A"), 0, now), Next::Keep);
    assert_eq!(
        f.connections().next().unwrap().state,
        ConnState::Established
    );
    assert_eq!(
        f.decide(&tcp(WEB, 443, LAN, 4000, "FA"), 1, now),
        Next::Keep
    );
    assert_eq!(f.connections().next().unwrap().state, ConnState::Closing);
    assert_eq!(
        f.decide(&tcp(LAN, 4000, WEB, 443, "FA"), 0, now),
        Next::Keep
    );
    assert_eq!(f.connections().next().unwrap().state, ConnState::TimeWait);
    // Time-wait ends after 120 s.
    f.expire((u64::from(now) << 20) + 121 * SEC, 1 << 20);
    assert_eq!(f.connection_count(), 0);
    assert_ne!(f.decide(&tcp(WEB, 443, LAN, 4000, "A"), 1, now), Next::Keep);
}

#[test]
fn udp_and_icmp_pseudo_connections_expire() {
    let mut f = fw(vec![rule(
        Action::Allow,
        Some("10.0.0.0/8"),
        None,
        None,
        None,
    )]);
    assert_eq!(f.decide(&udp(LAN, 5000, WEB, 53), 0, 0), Next::Keep);
    assert_eq!(f.decide(&udp(WEB, 53, LAN, 5000), 1, 10), Next::Keep);
    assert_eq!(
        f.decide(&udp(WEB, 53, LAN, 5001), 1, 10),
        FirewallDrop::DefaultDeny.into()
    );
    let b = PacketBuilder::ethernet2([2; 6], [4; 6])
        .ipv4(LAN, WEB, 64)
        .icmpv4_echo_request(9, 1);
    let mut ping = Vec::new();
    b.write(&mut ping, b"abc").unwrap();
    let b = PacketBuilder::ethernet2([2; 6], [4; 6])
        .ipv4(WEB, LAN, 64)
        .icmpv4_echo_reply(9, 1);
    let mut pong = Vec::new();
    b.write(&mut pong, b"abc").unwrap();
    assert_eq!(f.decide(&ping, 0, 0), Next::Keep);
    assert_eq!(f.decide(&pong, 1, 0), Next::Keep);
    assert_eq!(f.connection_count(), 2);
    f.expire(200 * SEC, 1 << 20);
    assert_eq!(f.connection_count(), 0);
    assert_eq!(
        f.decide(&udp(WEB, 53, LAN, 5000), 1, 0),
        FirewallDrop::DefaultDeny.into()
    );
}

#[test]
fn icmp_errors_related_to_a_connection_pass() {
    let mut f = fw(vec![rule(
        Action::Allow,
        Some("10.0.0.0/8"),
        None,
        None,
        None,
    )]);
    let out = udp(LAN, 5000, WEB, 53);
    assert_eq!(f.decide(&out, 0, 0), Next::Keep);
    let err = |quoted: &[u8]| {
        let mut buf = [0u8; 200];
        let n = crate::proto::icmpv4::build_error(
            &mut buf,
            &quoted[14..],
            Ipv4Addr::new(203, 0, 113, 1),
            64,
            crate::proto::icmpv4::ErrorKind::DstUnreachable {
                code: 4,
                next_hop_mtu: 1400,
            },
            crate::proto::icmpv4::QuoteLimit::HeaderPlus8,
        )
        .unwrap();
        let mut v = quoted[..14].to_vec();
        v.extend_from_slice(&buf[..n]);
        v
    };
    assert_eq!(f.decide(&err(&out), 1, 0), Next::Keep);
    assert_eq!(f.stats.related, 1);
    // An error about a flow nobody opened meets the rules (default deny).
    let stray = udp(LAN, 5999, WEB, 53);
    assert_eq!(
        f.decide(&err(&stray), 1, 0),
        FirewallDrop::DefaultDeny.into()
    );
}

#[test]
fn table_full_is_a_counted_drop() {
    let mut f = Firewall::new(&FirewallConfig {
        rules: vec![rule(Action::Allow, None, None, None, None)],
        max_connections: 4,
        ..FirewallConfig::default()
    })
    .unwrap();
    for p in 0..4 {
        assert_eq!(f.decide(&udp(LAN, 1000 + p, WEB, 53), 0, 0), Next::Keep);
    }
    assert_eq!(
        f.decide(&udp(LAN, 2000, WEB, 53), 0, 0),
        FirewallDrop::TableFull.into()
    );
    assert_eq!(f.decide(&udp(WEB, 53, LAN, 1000), 1, 0), Next::Keep);
}

#[test]
fn classifier_matches_linear_scan() {
    // 300 random rules; the bit-vector classifier agrees with first-match scan.
    let mut x: u64 = 42;
    let mut rnd = || {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        x
    };
    let mut rules = Vec::new();
    for _ in 0..300 {
        let r = rnd();
        let len = (r % 33) as u32;
        let mask = if len == 0 { 0 } else { u32::MAX << (32 - len) };
        let a = (rnd() as u32) & mask & 0x0f0f_ffff;
        let p1 = (rnd() % 1024) as u32;
        rules.push(Rule {
            action: if r & 1 == 0 {
                Action::Allow
            } else {
                Action::Deny
            },
            src: (a, a | !mask),
            dst: (0, u32::MAX),
            proto: if r & 2 == 0 { (6, 6) } else { (0, 255) },
            sport: (0, 65535),
            dport: (p1, p1 + (rnd() % 2000) as u32),
            in_port: (0, 65535),
        });
    }
    let set = RuleSet::new(rules.clone());
    for _ in 0..20000 {
        let src = (rnd() as u32) & 0x0f0f_ffff;
        let proto = if rnd() & 1 == 0 { 6 } else { 17 };
        let dport = (rnd() % 3000) as u16;
        let want = rules.iter().position(|r| {
            (r.src.0..=r.src.1).contains(&src)
                && (r.proto.0..=r.proto.1).contains(&u32::from(proto))
                && (r.dport.0..=r.dport.1).contains(&u32::from(dport))
        });
        assert_eq!(set.classify(src, 1, proto, 9, dport, 0), want);
    }
}

#[test]
fn config_errors() {
    let bad = FirewallConfig {
        rules: vec![RuleConfig {
            dport: Some("90-80".into()),
            ..RuleConfig::default()
        }],
        ..FirewallConfig::default()
    };
    assert_eq!(
        Firewall::new(&bad).err(),
        Some(FwConfigError::BadRule(0, "dport"))
    );
}

#[test]
fn rule_swap_ends_denied_connections_and_keeps_the_rest() {
    let allow_udp = rule(Action::Allow, Some("10.0.0.0/8"), None, Some("udp"), None);
    let mut f = fw(vec![allow_udp.clone()]);
    let other: [u8; 4] = [198, 51, 100, 9];
    // Two tracked flows, from ingress port 0.
    assert_eq!(f.decide(&udp(LAN, 5000, WEB, 53), 0, 1), Next::Keep);
    assert_eq!(f.decide(&udp(LAN, 5001, other, 53), 0, 1), Next::Keep);
    assert_eq!(f.connection_count(), 2);
    // New rules: WEB denied first; the flow to it ends, the other stays tracked.
    let mut sw = RuleSwap::new(&FirewallConfig {
        rules: vec![
            rule(Action::Deny, None, Some("192.0.2.80"), None, None),
            allow_udp,
        ],
        ..FirewallConfig::default()
    })
    .unwrap();
    f.swap_rules(&mut sw);
    assert_eq!(sw.ended(), 1);
    assert_eq!(f.connection_count(), 1);
    assert_eq!(
        f.decide(&udp(LAN, 5000, WEB, 53), 0, 2),
        FirewallDrop::RuleDeny.into()
    );
    assert_eq!(f.decide(&udp(LAN, 5001, other, 53), 0, 2), Next::Keep);
    // Its reply still passes as established (rule 1 now allows it).
    assert_eq!(f.decide(&udp(other, 53, LAN, 5001), 1, 2), Next::Keep);
    let c = f.rule_counters();
    assert_eq!((c.len(), c[0].packets), (2, 1));
    // The old rules came back to be freed off the worker; a bad set is refused.
    assert!(RuleSwap::new(&FirewallConfig {
        rules: vec![rule(Action::Deny, None, Some("300.1.1.1"), None, None)],
        ..FirewallConfig::default()
    })
    .is_err());
}
