//! The key server's metrics in the Prometheus text format (`GET /metrics`).

use crate::prelude::*;
use crate::server::Stats;
use core::fmt::Write;

/// Prometheus exposition of `s`.
pub fn render(s: &Stats) -> String {
    let mut o = String::new();
    let mut m = |name: &str, kind: &str, help: &str, v: u64| {
        let _ = writeln!(o, "# HELP keyserver_{name} {help}");
        let _ = writeln!(o, "# TYPE keyserver_{name} {kind}");
        let _ = writeln!(o, "keyserver_{name} {v}");
    };
    m("cpes", "gauge", "CPEs configured and not revoked", s.cpes);
    m("cpes_online", "gauge", "CPEs with an IKE SA", s.online);
    m(
        "cpes_served",
        "gauge",
        "CPEs holding their full key state",
        s.served,
    );
    m("groups", "gauge", "Site groups", s.groups);
    m("pairs", "gauge", "CPE-to-CPE tunnels keyed", s.pairs);
    m(
        "rekeys_total",
        "counter",
        "Tunnel key rotations completed",
        s.rekeys,
    );
    m(
        "rekeys_in_progress",
        "gauge",
        "Tunnel key rotations under way",
        s.rekeys_in_progress,
    );
    m(
        "revocations_total",
        "counter",
        "CPEs revoked",
        s.revocations,
    );
    m(
        "revocations_pending",
        "gauge",
        "Revocations not yet acknowledged by every peer",
        s.revocations_pending,
    );
    m(
        "updates_sent_total",
        "counter",
        "Key updates sent",
        s.updates_sent,
    );
    m(
        "updates_acked_total",
        "counter",
        "Key updates acknowledged",
        s.updates_acked,
    );
    m(
        "auth_failures_total",
        "counter",
        "IKE_AUTH failures",
        s.auth_failures,
    );
    m(
        "journal_writes_total",
        "counter",
        "Journal snapshots written",
        s.journal_writes,
    );
    m(
        "journal_errors_total",
        "counter",
        "Journal writes that failed",
        s.journal_errors,
    );
    m(
        "liveness_checks_total",
        "counter",
        "Liveness checks sent (empty INFORMATIONAL, RFC 7296 section 1.4)",
        s.liveness_checks,
    );
    m(
        "liveness_missed_total",
        "counter",
        "Liveness intervals a CPE left its outstanding request unanswered",
        s.liveness_missed,
    );
    m(
        "cpes_marked_down_total",
        "counter",
        "CPEs marked down after too many missed liveness checks",
        s.cpes_marked_down,
    );
    m(
        "cpes_down",
        "gauge",
        "CPEs down now (marked down, not authenticated since)",
        s.cpes_down,
    );
    m(
        "peer_drops_total",
        "counter",
        "Pairs whose surviving end was told to drop its SAs because the other end is down",
        s.peer_drops,
    );
    o
}

#[cfg(test)]
mod tests {
    #[test]
    fn names_every_value() {
        let s = crate::server::Stats {
            cpes: 3,
            rekeys: 9,
            ..Default::default()
        };
        let t = super::render(&s);
        assert!(t.contains("keyserver_cpes 3\n"));
        assert!(t.contains("keyserver_rekeys_total 9\n"));
        assert_eq!(t.lines().filter(|l| !l.starts_with('#')).count(), 19);
    }
}
