//! Prometheus text exposition (format 0.0.4) of the vBNG's control-plane, discovery,
//! RADIUS and fast-path counters, and the `show sessions` table.

use crate::control::ControlPlane;
use alloc::string::String;
use core::fmt::Write;
use dataplane::metrics::{Metric, Prom};

/// Sessions in the table (the `sessions` KPI of the vBNG package).
pub const SESSIONS: Metric = Metric {
    name: "vbng_sessions",
    help: "Sessions in the table",
    kind: "gauge",
};
/// Authentication verdicts (`result` label).
pub const AUTH: Metric = Metric {
    name: "vbng_auth_total",
    help: "Authentication verdicts",
    kind: "counter",
};
/// 1 while the vBNG is draining (the `drain` operation): no new session is accepted.
pub const DRAINING: Metric = Metric {
    name: "vbng_draining",
    help: "1 while draining: new sessions are refused, existing ones stay",
    kind: "gauge",
};
use dataplane::stage::NodeStats;

/// Render all counters.
pub fn prometheus<'a>(cp: &ControlPlane, nodes: impl Iterator<Item = &'a NodeStats>) -> String {
    let mut p = Prom::new();
    let s = cp.stats;
    p.metric(&SESSIONS, &[], cp.session_count() as u64);
    p.metric(&DRAINING, &[], u64::from(cp.draining()));
    p.gauge(
        "vbng_sessions_half_open",
        "Sessions past PADS and not yet in the PPP Network phase",
        &[],
        f64::from(cp.half_open_count()),
    );
    for (name, v) in [
        ("created", s.sessions_created),
        ("up", s.sessions_up),
        ("ended", s.sessions_ended),
        ("stale_replaced", s.stale_replaced),
    ] {
        p.counter(
            "vbng_session_events_total",
            "Session lifecycle events",
            &[("event", name)],
            v,
        );
    }
    for (name, v) in [
        ("accept", s.auth_accept),
        ("reject", s.auth_reject),
        ("timeout", s.aaa_timeout),
    ] {
        p.metric(&AUTH, &[("result", name)], v);
    }
    for (name, v) in [
        ("malformed", s.malformed),
        ("no_session", s.no_session),
        ("pool_exhausted", s.pool_exhausted),
        ("table_full", s.table_full),
        ("not_for_us", s.not_for_us),
        ("half_open_mac", s.half_open_mac),
        ("half_open_line", s.half_open_line),
        ("half_open_global", s.half_open_global),
        ("half_open_expired", s.half_open_expired),
        ("framed_ip_invalid", s.framed_ip_invalid),
        ("framed_ip_in_use", s.framed_ip_in_use),
        ("framed_ipv6_refused", s.framed_ipv6_refused),
        ("ipoe_no_username", s.ipoe_no_username),
        ("ipoe_arp_ignored", s.ipoe_arp_ignored),
    ] {
        p.counter(
            "vbng_control_drops_total",
            "Control-plane drops by reason",
            &[("reason", name)],
            v,
        );
    }
    for (name, v) in [
        ("coa", s.coa),
        ("disconnect", s.disconnect),
        ("rejected", s.dynauth_rejected),
    ] {
        p.counter(
            "vbng_dynauth_total",
            "RFC 5176 requests",
            &[("kind", name)],
            v,
        );
    }
    for (name, v) in [
        ("ra_sent", s.ra_sent),
        ("rs_received", s.rs_received),
        ("rs_rate_limited", s.rs_rate_limited),
        ("na_sent", s.na_sent),
        ("echo_replies", s.echo6_replies),
        ("dropped", s.ipv6_dropped),
        ("pool6_exhausted", s.pool6_exhausted),
    ] {
        p.counter(
            "vbng_ipv6_nd_total",
            "IPv6 over PPP: Neighbor Discovery (RFC 4861) and prefix pool events",
            &[("kind", name)],
            v,
        );
    }
    p.gauge(
        "vbng_ipv6_sessions",
        "Sessions with IPv6CP open and a /64 routed",
        &[],
        cp.ipv6_session_count() as f64,
    );
    let d = cp.discovery_stats();
    for (name, v) in [
        ("padi", d.padi),
        ("pado", d.pado),
        ("padr", d.padr),
        ("padt", d.padt),
        ("padi_rate_mac", d.padi_rate_mac),
        ("padi_rate_port", d.padi_rate_port),
        ("bad_cookie", d.bad_cookie),
        ("bad_service", d.bad_service),
        ("malformed", d.malformed),
        ("unexpected", d.unexpected),
    ] {
        p.counter(
            "vbng_pppoe_discovery_total",
            "PPPoE discovery packets and drops",
            &[("kind", name)],
            v,
        );
    }
    if let Some(r) = cp.radius_stats() {
        for (name, v) in [
            ("requests", r.requests),
            ("retransmits", r.retransmits),
            ("failovers", r.failovers),
            ("timeouts", r.timeouts),
            ("bad_responses", r.bad_responses),
            (
                "missing_message_authenticator",
                r.missing_message_authenticator,
            ),
            ("bad_message_authenticator", r.bad_message_authenticator),
            ("acct_queued", r.acct_queued),
            ("acct_acked", r.acct_acked),
            ("acct_retry_rounds", r.acct_retry_rounds),
            ("acct_overflow", r.acct_overflow),
            ("acct_given_up", r.acct_given_up),
            ("acct_superseded", r.acct_superseded),
        ] {
            p.counter(
                "vbng_radius_total",
                "RADIUS client events",
                &[("kind", name)],
                v,
            );
        }
    }
    if let Some(d) = cp.dhcp_stats() {
        p.gauge(
            "vbng_ipoe_sessions",
            "IPoE sessions with a bound DHCP lease",
            &[],
            cp.ipoe_session_count() as f64,
        );
        dhcp_families(
            &mut p,
            ["vbng_dhcp4_messages_total", "vbng_dhcp4_drops_total"],
            [
                "DHCPv4 messages by direction and type (RFC 2132 option 53)",
                "DHCPv4 messages dropped or not answered, by reason",
            ],
            (d.rx_by_type(), d.tx_by_type()),
            d.drops_by_reason(),
        );
        for (dir, v) in [
            ("to_server", cp.stats.relay_to_server),
            ("to_client", cp.stats.relay_to_client),
            ("dropped", cp.stats.relay_dropped),
        ] {
            p.counter(
                "vbng_dhcp4_relay_total",
                "DHCPv4 relay agent (RFC 3046): messages relayed, and dropped",
                &[("direction", dir)],
                v,
            );
        }
        p.counter(
            "vbng_ipoe_arp_replies_total",
            "ARP replies for the IPoE gateway and subnet (proxy ARP)",
            &[],
            cp.stats.ipoe_arp_replies,
        );
        if let Some(s) = cp.dhcp_server() {
            for (name, v) in [
                ("leases", s.lease_count()),
                ("offers", s.offer_count()),
                ("quarantined", s.quarantined()),
            ] {
                p.gauge(
                    "vbng_dhcp4_bindings",
                    "DHCPv4 server state: leases bound, offers held, declined addresses held out",
                    &[("kind", name)],
                    v as f64,
                );
            }
        }
    }
    if let Some(d) = cp.dhcp6_stats() {
        p.gauge(
            "vbng_delegated_prefixes",
            "Sessions with a DHCPv6 delegated prefix routed (IA_PD)",
            &[],
            cp.delegated_prefix_count() as f64,
        );
        dhcp_families(
            &mut p,
            ["vbng_dhcp6_messages_total", "vbng_dhcp6_drops_total"],
            [
                "DHCPv6 messages by direction and type (RFC 8415 §7.3)",
                "DHCPv6 messages dropped or not answered, by reason",
            ],
            (d.rx_by_type(), d.tx_by_type()),
            d.drops_by_reason(),
        );
    }
    p.nodes("0", nodes);
    p.finish()
}

/// A DHCP server's message counts by direction and type, and its drops by reason
/// (`names`/`help`: the two families).
fn dhcp_families<'a>(
    p: &mut Prom,
    names: [&str; 2],
    help: [&str; 2],
    (rx, tx): (
        impl Iterator<Item = (&'a str, u64)>,
        impl Iterator<Item = (&'a str, u64)>,
    ),
    drops: impl Iterator<Item = (&'a str, u64)>,
) {
    for (t, v) in rx {
        p.counter(names[0], help[0], &[("direction", "rx"), ("type", t)], v);
    }
    for (t, v) in tx {
        p.counter(names[0], help[0], &[("direction", "tx"), ("type", t)], v);
    }
    for (r, v) in drops {
        p.counter(names[1], help[1], &[("reason", r)], v);
    }
}

fn ip(a: u32) -> core::net::Ipv4Addr {
    core::net::Ipv4Addr::from(a)
}

/// `show sessions`.
pub fn show_sessions(cp: &ControlPlane) -> String {
    let mut s = String::new();
    let _ = writeln!(
        s,
        "{:>6} {:<17} {:>5} {:>5} {:>6} {:<16} {:<6} {:<15} {:<24} {:>12} {:>12} {:>12} {:>12}",
        "idx",
        "mac",
        "svlan",
        "cvlan",
        "sid",
        "user",
        "phase",
        "ip",
        "ipv6-prefix",
        "up-bps",
        "down-bps",
        "up-bytes",
        "down-bytes"
    );
    for x in cp.sessions() {
        let m = x.key.mac;
        let _ = writeln!(
            s,
            "{:>6} {:02x}:{:02x}:{:02x}:{:02x}:{:02x}:{:02x} {:>5} {:>5} {:>6} {:<16} {:<6} {:<15} {:<24} {:>12} {:>12} {:>12} {:>12}",
            x.idx,
            m[0],
            m[1],
            m[2],
            m[3],
            m[4],
            m[5],
            x.key.vlans.svlan,
            x.key.vlans.cvlan,
            x.sid,
            x.user,
            x.phase,
            ip(x.ip),
            if x.ipv6_prefix == 0 {
                String::from("-")
            } else {
                alloc::format!("{}", crate::pool6::Prefix64(x.ipv6_prefix))
            },
            x.rate.0,
            x.rate.1,
            x.counters.0,
            x.counters.2
        );
    }
    s
}

/// Per-session series (one line per session: large at 100k sessions, so not part of
/// [`prometheus`]; the binary serves them at `GET /metrics?sessions`).
pub fn prometheus_sessions(cp: &ControlPlane) -> String {
    let mut p = Prom::new();
    for x in cp.sessions().iter().filter(|x| x.ipv6_prefix != 0) {
        let prefix = alloc::format!("{}", crate::pool6::Prefix64(x.ipv6_prefix));
        p.gauge(
            "vbng_session_ipv6_prefix_info",
            "The /64 delegated to a session (1 = routed, 0 = allocated, IPv6CP not open)",
            &[("session", x.acct_id.as_str()), ("prefix", prefix.as_str())],
            if x.ipv6_up { 1.0 } else { 0.0 },
        );
    }
    p.finish()
}
