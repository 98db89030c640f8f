//! The `--netns` lab's report: what FreeRADIUS recorded, the hostile subscriber, the
//! vBNG's own counters (from its `/metrics`), CGNAT checks; printed for people or as
//! one JSON object.

use super::*;

/// What FreeRADIUS recorded (read from its own log and detail files).
#[derive(Debug, Clone, Serialize, Default)]
pub struct RadiusFacts {
    /// `Login OK` lines in the server log (one per Access-Accept).
    pub access_accepts: u64,
    /// `Login incorrect` lines (one per Access-Reject).
    pub access_rejects: u64,
    /// `Acct-Status-Type = Start` records in the detail files.
    pub acct_starts: u64,
    /// `Acct-Status-Type = Stop` records.
    pub acct_stops: u64,
    /// `Acct-Status-Type = Interim-Update` records.
    pub acct_interims: u64,
}

/// The hostile subscriber's outcome.
#[derive(Debug, Clone, Serialize, Default)]
pub struct HostileReport {
    /// Its MAC.
    pub mac: String,
    /// PADIs in its flood.
    pub padi_flood: u64,
    /// Bad frames it sent inside its session (bad LCP, garbage after PPPoE).
    pub garbage_frames: u64,
    /// Whether it reached IPCP Opened (must be false).
    pub came_up: bool,
    /// The phase it failed in.
    pub failed_in: Option<String>,
}

/// The vBNG's own counters (its `/metrics`), for cross-checks.
#[derive(Debug, Clone, Serialize, Default)]
pub struct BngCounters {
    /// Sessions that came up.
    pub sessions_up: u64,
    /// Sessions in the table after teardown.
    pub sessions_after_teardown: u64,
    /// PADIs dropped by the per-MAC rate limit.
    pub padi_rate_limited: u64,
    /// Control frames dropped as malformed.
    pub malformed: u64,
    /// Frames the veth pairs dropped on transmit (peer queue full), all four ends.
    pub veth_tx_dropped: u64,
}

/// `testbed lab bng --netns --json` output: the in-memory lab's fields plus the
/// namespace lab's facts.
#[derive(Debug, Clone, Serialize)]
pub struct NetnsReport {
    /// Same fields as the in-memory lab.
    #[serde(flatten)]
    pub lab: LabReport,
    /// Port type used by the vBNG.
    pub io: String,
    /// FreeRADIUS records (`None` with local users).
    pub radius: Option<RadiusFacts>,
    /// The hostile subscriber (`--hostile`).
    pub hostile: Option<HostileReport>,
    /// The vBNG's counters.
    pub bng: BngCounters,
    /// The capture file (`--capture`).
    pub capture: Option<String>,
    /// Frames our own subscriber/core ports lost on receive (no buffer, ring).
    pub lab_rx_dropped: u64,
    /// Wall time of the whole lab, s.
    pub wall_s: f64,
    /// CGNAT (`--cgnat`): what the core saw and the vBNG's NAT counters.
    pub cgnat: Option<CgnatReport>,
    /// The disaggregated vBNG (`--cups`): the control plane's PFCP counters, the
    /// user planes, `--kill-up`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub cups: Option<CupsNetnsReport>,
}

/// What the core namespace saw of CGNAT traffic, and the vBNG's `nat44` counters.
#[derive(Debug, Clone, Serialize, Default)]
pub struct CgnatReport {
    /// The pool (`--cgnat`).
    pub pool: String,
    /// Upstream frames at the core whose source address is in the pool.
    pub core_src_in_pool: u64,
    /// Upstream frames at the core whose source address is outside the pool (must be
    /// 0: no subscriber address leaks).
    pub core_src_outside_pool: u64,
    /// Distinct (address, port) sources the core saw (one per subscriber flow).
    pub core_flows: u64,
    /// Distinct pool addresses among them.
    pub core_addresses: u64,
    /// The `nat44` node's counters from the vBNG's `/metrics`.
    pub nat: NatCounters,
}

/// The vBNG's `nat44` node counters (`dp_node_*{node="nat44"}` in its `/metrics`).
#[derive(Debug, Clone, Serialize, Default)]
pub struct NatCounters {
    /// Packets that entered the node.
    pub packets: u64,
    /// Packets it dropped (all reasons).
    pub drops: u64,
    /// Sessions in use.
    pub sessions: u64,
    /// Sessions created.
    pub sessions_created: u64,
    /// Mappings in use.
    pub mappings: u64,
    /// Subscribers holding ports.
    pub subscribers: u64,
    /// Port blocks allocated.
    pub blocks: u64,
    /// ICMP errors it sent (exhaustion).
    pub icmp_errors_sent: u64,
}

pub(super) fn print_report(
    args: &BngLabArgs,
    header: &pktgen::meta::Header,
    r: &NetnsReport,
) -> anyhow::Result<()> {
    if args.json {
        println!("{}", header.json(r)?);
        return Ok(());
    }
    let l = &r.lab;
    println!(
        "sessions established   {} / {}",
        l.sessions_established, args.sessions
    );
    println!(
        "setup rate             {:.0} sessions/s",
        l.setup_rate_per_s
    );
    println!(
        "setup latency          p50 {:.1} ms, p99 {:.1} ms",
        l.setup_p50_ms, l.setup_p99_ms
    );
    if !l.setup.failed_by_phase.is_empty() {
        println!(
            "failures by phase      {}",
            crate::lab_bng::join_counts(&l.setup.failed_by_phase)
        );
    }
    let u = &l.upstream;
    println!(
        "upstream               {} sent, {} received, {:.3} Mpps, mean frame {:.0} B",
        u.sent, u.received, u.throughput_mpps, u.mean_frame
    );
    if let Some(d) = &l.downstream {
        println!(
            "downstream             {} sent, {} received, {:.3} Mpps",
            d.sent, d.received, d.throughput_mpps
        );
    }
    println!("packet loss ratio      {:.6}", l.plr);
    println!("sessions after PADT    {}", l.sessions_after_teardown);
    if let Some(f) = &r.radius {
        println!(
            "FreeRADIUS recorded    {} Access-Accept, {} Access-Reject, {} Accounting Start, {} Stop",
            f.access_accepts, f.access_rejects, f.acct_starts, f.acct_stops
        );
    }
    if let Some(h) = &r.hostile {
        println!(
            "hostile subscriber     {}: came up {}, failed in {}",
            h.mac,
            if h.came_up { "yes" } else { "no" },
            h.failed_in.as_deref().unwrap_or("no phase")
        );
    }
    if let Some(c) = &r.cgnat {
        println!(
            "cgnat {:<16} core saw {} frames from the pool, {} from outside it; {} flows on {} addresses",
            c.pool, c.core_src_in_pool, c.core_src_outside_pool, c.core_flows, c.core_addresses
        );
        println!(
            "nat44                  {} packets, {} drops, {} sessions created, {} subscribers, {} blocks",
            c.nat.packets, c.nat.drops, c.nat.sessions_created, c.nat.subscribers, c.nat.blocks
        );
    }
    if let Some(c) = &r.cups {
        println!(
            "PFCP (control plane)   {} user planes, {} associations, {} sessions established, {} deleted, {} usage reports",
            c.ups,
            c.cp.get("associations").copied().unwrap_or(0),
            c.cp.get("established").copied().unwrap_or(0),
            c.cp.get("deleted").copied().unwrap_or(0),
            c.cp.get("reports").copied().unwrap_or(0),
        );
        let kib =
            |k: Option<u64>| k.map_or("-".to_string(), |k| format!("{:.1} MiB", k as f64 / 1024.0));
        println!("vbng-cp                peak RSS {}", kib(c.cp_rss_peak_kib));
        for (n, u) in c.per_up.iter().enumerate() {
            println!(
                "vbng-up {n:<2} {:<12} {} sessions after setup, peak RSS {}{}",
                u.addr,
                u.sessions_after_setup,
                kib(u.rss_peak_kib),
                if u.killed { ", killed" } else { "" }
            );
        }
        if let Some(k) = &c.kill {
            println!(
                "killed user plane {}    {} sessions on it, {} cleared by vbng-cp in {} ms, {} Lost-Service Accounting-Stops; others {} before, {} after",
                k.up,
                k.sessions_on_up,
                k.sessions_cleared,
                k.detect_ms,
                k.acct_stops_lost_service.map_or("-".to_string(), |n| n.to_string()),
                k.other_sessions_before,
                k.other_sessions_after
            );
            println!(
                "upstream after kill    {} sent, {} received, loss {:.6}",
                k.upstream_after.sent, k.upstream_after.received, k.upstream_after.plr
            );
        }
    }
    if let Some(k) = r.lab.rss_peak_kib {
        println!("BNG peak RSS           {:.1} MiB", k as f64 / 1024.0);
    }
    if let Some(c) = &r.capture {
        println!("capture                {c}");
    }
    println!("wall time              {:.1} s", r.wall_s);
    Ok(())
}
