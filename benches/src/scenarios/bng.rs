//! `bng-up` and `bng-down`: the vBNG fast path with 10k PPPoE sessions brought up by
//! the emulated subscribers of `pktgen::subscribers::lab` (discovery, LCP, PAP,
//! IPCP), then per-subscriber traffic upstream (PPPoE decapsulation, anti-spoofing,
//! routing to the core) or downstream (PPPoE encapsulation towards the subscriber).
//! `bng-up-ipoe` is `bng-up` with 10k IPoE subscribers instead (DHCPv4 against the
//! vBNG's `[ipoe]` server, then plain IPv4 over Ethernet from each subscriber's MAC
//! and VLANs: session lookup without PPPoE, anti-spoofing, routing to the core).
//! Only the BNG's own loop (receive, stages, transmit) is timed by the lab; each
//! traffic phase runs `--seconds` (`bng-down` runs an upstream phase first, as long).
//! `mpps_per_core` is the median over the BNG's loop steps that received packets of
//! its cost per packet; `mpps_total` is from all its time.

use crate::{Params, PktSize, Report};
use pktgen::subscribers::lab::{imix, run, LabConfig, TrafficReport};
use pktgen::subscribers::AccessPlan;
use std::time::Duration;

const SESSIONS: u32 = 10_000;

/// The lab with `access` subscribers; each traffic phase runs `--seconds` (the
/// downstream one only when `downstream`).
fn lab_with(
    p: &Params,
    access: AccessPlan,
    downstream: bool,
) -> anyhow::Result<pktgen::subscribers::lab::LabReport> {
    let frame_sizes = match p.pkt_size {
        PktSize::Imix => imix(),
        PktSize::Fixed(n) => vec![n],
    };
    let cfg = LabConfig {
        sessions: SESSIONS,
        frame_sizes,
        duration: Some(Duration::from_secs_f64(p.seconds)),
        downstream,
        setup_timeout: Duration::from_secs(120),
        access,
        ..LabConfig::default()
    };
    let r = run(&cfg, |_| {})?;
    anyhow::ensure!(
        r.sessions_established == SESSIONS,
        "only {} of {SESSIONS} sessions came up (failures by phase: {})",
        r.sessions_established,
        r.setup
            .failed_by_phase
            .iter()
            .map(|(k, v)| format!("{k} {v}"))
            .collect::<Vec<_>>()
            .join(", ")
    );
    Ok(r)
}

fn report(
    name: &str,
    p: &Params,
    t: &TrafficReport,
    r: &pktgen::subscribers::lab::LabReport,
) -> Report {
    let mut extra = serde_json::Map::new();
    extra.insert("sessions".into(), r.sessions_established.into());
    extra.insert("setup_rate_per_s".into(), r.setup_rate_per_s.into());
    extra.insert("setup_p99_ms".into(), r.setup_p99_ms.into());
    extra.insert("plr".into(), t.plr.into());
    extra.insert("ns_per_packet".into(), t.bng_ns_per_packet.into());
    extra.insert("traffic_seconds".into(), t.duration_s.into());
    let hz = crate::tsc_hz(20);
    let median = t.bng_mpps_per_core_median.unwrap_or(f64::NAN);
    let (mpps, headline, clock) = crate::headline(median, t.bng_mpps_per_core, false);
    Report {
        scenario: name.into(),
        pkt_size: p.pkt_size.label(),
        packets: t.received,
        mpps_per_core: mpps,
        mpps_median_burst: median,
        mpps_total: t.bng_mpps_per_core,
        headline,
        clock,
        gbps_per_core: mpps * (t.mean_frame + 4.0) * 8.0 / 1e3,
        cycles_per_packet: hz / mpps / 1e6,
        drops: t.sent.saturating_sub(t.received),
        extra,
        workers: 1,
        per_worker: Vec::new(),
    }
}

pub fn bng_up(p: &Params) -> anyhow::Result<Report> {
    let r = lab_with(p, AccessPlan::Pppoe, false)?;
    Ok(report("bng-up", p, &r.upstream, &r))
}

pub fn bng_down(p: &Params) -> anyhow::Result<Report> {
    let r = lab_with(p, AccessPlan::Pppoe, true)?;
    let d = r
        .downstream
        .clone()
        .ok_or_else(|| anyhow::anyhow!("the lab ran no downstream phase"))?;
    Ok(report("bng-down", p, &d, &r))
}

pub fn bng_up_ipoe(p: &Params) -> anyhow::Result<Report> {
    let r = lab_with(p, AccessPlan::Ipoe, false)?;
    Ok(report("bng-up-ipoe", p, &r.upstream, &r))
}
